/* Truncated SVD for the TT codec (internal to codec/, not a public API).
 *
 * Matrices are row-major m x n floats. Two engines: LAPACKE sgesdd (exact,
 * O(m n min(m,n))) and a randomized range finder (Halko, Martinsson, Tropp
 * 2011: Gaussian sketch, power iterations re-orthonormalised by QR, SVD of
 * the small projected matrix), O(m n l) for a sketch of l columns.
 *
 * The randomized engine needs a rank guess and the caller gives a tolerance
 * instead, so it grows the sketch: it starts from max(32, min(m,n)/16)
 * columns (or the rank cap) plus the oversampling, measures the residual
 * ||A - Q Q^T A||_F explicitly, and picks the smallest rank whose residual
 * plus sketched tail meets the tolerance (that sum is the exact error of the
 * returned factors, so the bound stays honest; the rank may exceed the
 * optimum by a little). A rank is accepted only with the full oversampling
 * left above it; otherwise the sketch grows to the rank still needed,
 * predicted by extending a power law fitted to the sketched spectrum. In
 * auto mode it gives up and runs sgesdd once the sketch would exceed
 * min(m,n)/4 columns, where the randomized passes stop being cheaper (one
 * wasted small sketch, ~10% of an sgesdd, on full-rank matrices); in forced
 * mode it keeps growing up to min(m,n), where the sketch spans the whole
 * range and the criterion is always met. */
#ifndef TCZ_SVD_H
#define TCZ_SVD_H

#include <stddef.h>
#include <stdint.h>

/* Auto mode tries the randomized engine only above this min(m, n). */
#define TCZ_SVD_RAND_MIN 512u

typedef struct tcz_svd_opts {
	int randomized;        /* 0 auto, > 0 always, < 0 never */
	uint32_t oversample;   /* extra sketch columns */
	uint32_t power_iters;  /* power iterations */
	uint64_t seed;         /* Gaussian sketch seed */
} tcz_svd_opts;

typedef struct tcz_svd_result {
	float *u;        /* m x rank, orthonormal columns (malloc) */
	float *sv;       /* rank x n, diag(s) V^T (malloc) */
	size_t rank;
	double tail_sq;  /* ||A - u sv||_F^2 as measured from the SVD */
	int randomized;  /* 1 when the randomized engine produced it */
} tcz_svd_result;

/* Rank-truncates a (m x n, row-major): the smallest rank r >= 1 whose
 * discarded part has Frobenius norm <= delta, then min(r, cap) when cap > 0.
 * a may be overwritten. On error res holds no allocation.
 * Errors: -EINVAL m or n is 0 or above INT_MAX; -ENOMEM (also when the
 * dense engine would need a workspace LAPACK cannot index); -EIO LAPACK
 * failed to converge. */
int tcz_svd_truncate(float *a, size_t m, size_t n, double delta, size_t cap,
		     const tcz_svd_opts *o, tcz_svd_result *res);

void tcz_svd_result_free(tcz_svd_result *res);

/* The min(m, n) singular values of a, descending, into s; a is overwritten.
 * Errors: as tcz_svd_truncate. */
int tcz_svd_values(float *a, size_t m, size_t n, float *s);

/* Smallest r in [1, k] with base_sq + sum_{i >= r} s_i^2 <= delta_sq, or 0
 * when even r = k misses it; the tail for r goes to *tail_sq (for r = 0:
 * the tail at k). s is descending. */
size_t tcz_svd_pick_rank(const float *s, size_t k, double base_sq,
			 double delta_sq, double *tail_sq);

#endif
