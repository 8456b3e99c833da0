/* Tensor-train decomposition (TT-SVD, Oseledets 2011), SPEC section 5.
 *
 * A tensor of d >= 2 modes n_1..n_d (row-major, last index fastest) is
 * approximated by cores G_k of shape [r_{k-1}, n_k, r_k], r_0 = r_d = 1.
 * Each unfolding's rank is the smallest r whose discarded singular tail has
 * norm <= delta = eps / sqrt(d-1) * ||A||_F, capped by max_rank; then
 * ||A - TT||_F <= eps * ||A||_F unless the cap bit. d = 2 is truncated SVD.
 * SVDs use LAPACKE sgesdd, or a randomized SVD (cblas_sgemm + QR) for large
 * unfoldings; reconstruction is a chain of cblas_sgemm. */
#ifndef TCZ_TT_H
#define TCZ_TT_H

#include <stddef.h>
#include <stdint.h>

#define TCZ_TT_MAX_ORDER 16u

typedef struct tcz_tt tcz_tt;

typedef struct tcz_tt_params {
	double eps;         /* relative Frobenius target, >= 0 */
	uint32_t max_rank;  /* 0 = no cap */
	int randomized;     /* 0 auto (large unfoldings), 1 always, -1 never */
	uint32_t oversample; /* randomized SVD: extra columns (default 10) */
	uint32_t power_iters; /* randomized SVD: power iterations (default 2) */
	uint64_t seed;       /* randomized SVD: deterministic seed */
} tcz_tt_params;

void tcz_tt_params_default(tcz_tt_params *p); /* eps 1e-3, no cap, auto */

/* Decomposes a (numel = prod(modes) floats). p NULL means the defaults;
 * oversample and power_iters are used as given (0 is 0).
 * Errors: -EINVAL d < 2 or > TCZ_TT_MAX_ORDER, a zero mode, a product that
 * overflows size_t, eps < 0 or not finite, an unfolding side above INT_MAX
 * (LAPACK's index); -EDOM a NaN/inf in a (or values so large that the
 * factors overflow float); -ENOMEM (also for an sgesdd
 * above min(m, n) = 16384); -EIO LAPACK reported failure. */
int tcz_tt_decompose(const float *a, unsigned d, const size_t *modes,
		     const tcz_tt_params *p, tcz_tt **out);

/* Builds a TT from cores (copied). ranks has d+1 entries, ranks[0] =
 * ranks[d] = 1; cores[k] holds ranks[k]*modes[k]*ranks[k+1] floats.
 * Errors: -EINVAL bad order, zero mode or rank, rank ends != 1, overflow
 * (including a core row modes[k]*ranks[k+1] or a rank above INT_MAX, the
 * cblas index), a NULL core; -EDOM a NaN/inf in a core; -ENOMEM. */
int tcz_tt_from_cores(unsigned d, const size_t *modes, const size_t *ranks,
		      const float *const *cores, tcz_tt **out);

/* Like tcz_tt_from_cores, but the cores are borrowed, not copied: they
 * must outlive the result, and are not checked for NaN/inf (see
 * tcz_tt_cores_finite). For readers whose cores live in a shared cache.
 * Errors: as tcz_tt_from_cores but -EDOM. */
int tcz_tt_wrap(unsigned d, const size_t *modes, const size_t *ranks,
		const float *const *cores, tcz_tt **out);

/* True when the n floats at a are all finite. */
int tcz_tt_cores_finite(const float *a, size_t n);

void tcz_tt_free(tcz_tt *tt); /* NULL is fine (borrowed cores stay) */

unsigned tcz_tt_order(const tcz_tt *tt);
size_t tcz_tt_mode(const tcz_tt *tt, unsigned k);  /* k < d */
size_t tcz_tt_rank(const tcz_tt *tt, unsigned k);  /* k <= d */
const float *tcz_tt_core(const tcz_tt *tt, unsigned k); /* [r_k, n_k, r_k+1] */
size_t tcz_tt_numel(const tcz_tt *tt);
size_t tcz_tt_param_count(const tcz_tt *tt); /* sum of core sizes */
double tcz_tt_ratio(const tcz_tt *tt);       /* numel / param_count */
/* Upper bound on ||A - TT||_F / ||A||_F from the discarded singular values
 * (exact for d = 2 with a full SVD), float rounding (~1e-6) aside. NaN
 * for a TT built by tcz_tt_from_cores (unknown). */
double tcz_tt_error_bound(const tcz_tt *tt);

/* Full reconstruction into out[numel].
 * Errors: -ENOMEM. */
int tcz_tt_reconstruct(const tcz_tt *tt, float *out);

/* Reconstructs the row-major elements [first, first+count) into out; work
 * is proportional to count (plus one core row per boundary), not numel.
 * Errors: -EINVAL range outside the tensor; -ENOMEM. */
int tcz_tt_reconstruct_range(const tcz_tt *tt, size_t first, size_t count,
			     float *out);

/* For an m x n matrix: the rank truncated SVD at eps needs (with the cap),
 * its relative error and its parameter count r*(m+n), from singular values
 * only (cheaper than a full decomposition: used to skip TT when it cannot
 * beat another encoding).
 * Errors: as tcz_tt_decompose. */
int tcz_tt_svd_estimate(const float *a, size_t m, size_t n, double eps,
			uint32_t max_rank, size_t *rank, double *rel_err,
			size_t *params);

/* Sets how many threads BLAS/LAPACK calls may use, process-wide. Callers
 * that run their own threads (an importer with --jobs, the FUSE daemon)
 * set 1: OpenBLAS threads spin while they wait and starve those threads. */
void tcz_tt_blas_threads(int n);

#endif
