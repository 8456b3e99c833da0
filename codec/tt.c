#include "codec/tt.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/svd.h"

/* Scratch for reconstruction is kept under this many floats by shrinking
 * the chunk of elements done per pass. */
#define RECON_SCRATCH_MAX ((size_t)1 << 18) /* 1 MiB: readers run it per chunk */
#define RECON_CHUNK ((size_t)1 << 16)

struct tcz_tt {
	unsigned d;
	size_t modes[TCZ_TT_MAX_ORDER];
	size_t ranks[TCZ_TT_MAX_ORDER + 1];
	float *cores[TCZ_TT_MAX_ORDER];
	size_t numel;
	size_t params;
	double err_bound; /* NaN when unknown (built from cores) */
	int borrowed;     /* cores belong to the caller (tcz_tt_wrap) */
};

void tcz_tt_params_default(tcz_tt_params *p)
{
	*p = (tcz_tt_params){
		.eps = 1e-3,
		.max_rank = 0,
		.randomized = 0,
		.oversample = 10,
		.power_iters = 2,
		.seed = 0x5454u,
	};
}

static int mul_ok(size_t a, size_t b, size_t *out)
{
	if (b && a > SIZE_MAX / b)
		return 0;
	*out = a * b;
	return 1;
}

/* Order and modes; numel must also be addressable in bytes as floats. */
static int check_modes(unsigned d, const size_t *modes, size_t *numel)
{
	size_t n = 1;
	if (d < 2 || d > TCZ_TT_MAX_ORDER || !modes)
		return -EINVAL;
	for (unsigned k = 0; k < d; k++) {
		if (modes[k] == 0 || !mul_ok(n, modes[k], &n))
			return -EINVAL;
	}
	if (n > SIZE_MAX / sizeof(float))
		return -EINVAL;
	*numel = n;
	return 0;
}

/* Ranks, and sizes: each core row (n_k * r_{k+1} floats) and r_k must fit
 * the int that cblas takes as a dimension. */
static int check_ranks(unsigned d, const size_t *modes, const size_t *ranks,
		       size_t *params)
{
	size_t total = 0;
	if (!ranks || ranks[0] != 1 || ranks[d] != 1)
		return -EINVAL;
	for (unsigned k = 0; k < d; k++) {
		size_t row, size;
		if (ranks[k] == 0 || ranks[k + 1] == 0 || ranks[k] > INT_MAX)
			return -EINVAL;
		if (!mul_ok(modes[k], ranks[k + 1], &row) || row > INT_MAX)
			return -EINVAL;
		if (!mul_ok(ranks[k], row, &size) ||
		    size > SIZE_MAX / sizeof(float) ||
		    total > SIZE_MAX / sizeof(float) - size)
			return -EINVAL;
		total += size;
	}
	*params = total;
	return 0;
}

static size_t core_size(const tcz_tt *tt, unsigned k)
{
	return tt->ranks[k] * tt->modes[k] * tt->ranks[k + 1];
}

void tcz_tt_free(tcz_tt *tt)
{
	if (!tt)
		return;
	for (unsigned k = 0; k < tt->d && !tt->borrowed; k++)
		free(tt->cores[k]);
	free(tt);
}

/* Sum of squares in double, or -1 when a value is not finite. */
static double sum_sq(const float *a, size_t n)
{
	double acc = 0.0;
	for (size_t i = 0; i < n;) {
		size_t end = i + 4096 < n ? i + 4096 : n;
		double part = 0.0;
		for (; i < end; i++) {
			if (!isfinite(a[i]))
				return -1.0;
			part += (double)a[i] * a[i];
		}
		acc += part;
	}
	return acc;
}

/* Copies a into c scaled by a power of two (exact) so that max|c| lies in
 * [0.5, 1): LAPACK and the sketches then never overflow or underflow on
 * data near the ends of the float range. Returns the exponent e with
 * a = c * 2^e. */
static int copy_scaled(const float *a, size_t n, float *c)
{
	float mx = 0.0f;
	int e = 0;
	for (size_t i = 0; i < n; i++)
		if (fabsf(a[i]) > mx)
			mx = fabsf(a[i]);
	if (mx == 0.0f) {
		memcpy(c, a, n * sizeof *c);
		return 0;
	}
	(void)frexp(mx, &e);
	double f = ldexp(1.0, -e);
	for (size_t i = 0; i < n; i++)
		c[i] = (float)(a[i] * f);
	return e;
}

int tcz_tt_decompose(const float *a, unsigned d, const size_t *modes,
		     const tcz_tt_params *p, tcz_tt **out)
{
	tcz_tt_params dp;
	size_t numel;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!p) {
		tcz_tt_params_default(&dp);
		p = &dp;
	}
	if ((rc = check_modes(d, modes, &numel)))
		return rc;
	if (!a || !isfinite(p->eps) || p->eps < 0.0)
		return -EINVAL;
	if (sum_sq(a, numel) < 0.0)
		return -EDOM;

	tcz_tt *tt = calloc(1, sizeof *tt);
	float *c = malloc(numel * sizeof *c);
	if (!tt || !c) {
		free(tt);
		free(c);
		return -ENOMEM;
	}
	int scale_exp = copy_scaled(a, numel, c);
	double norm = sqrt(sum_sq(c, numel));
	/* Oseledets: per-unfolding tails of delta sum in squares to at most
	 * eps^2 ||A||^2 over the d - 1 truncations. */
	double delta = p->eps / sqrt((double)(d - 1)) * norm;
	tt->d = d;
	tt->numel = numel;
	memcpy(tt->modes, modes, d * sizeof *modes);
	tt->ranks[0] = 1;

	double tail_sq = 0.0;
	size_t rest = numel; /* columns of c: modes k.. of the remainder */
	for (unsigned k = 0; k + 1 < d; k++) {
		tcz_svd_opts o = {
			.randomized = p->randomized,
			.oversample = p->oversample,
			.power_iters = p->power_iters,
			.seed = p->seed + (uint64_t)k * 0x9e3779b97f4a7c15u,
		};
		tcz_svd_result res;
		size_t m = tt->ranks[k] * modes[k]; /* <= prefix product */
		size_t n = rest / modes[k];
		rc = tcz_svd_truncate(c, m, n, delta, p->max_rank, &o, &res);
		free(c);
		c = NULL;
		if (rc)
			goto fail;
		tt->cores[k] = res.u; /* m x r = [r_k, n_k, r_{k+1}] */
		tt->ranks[k + 1] = res.rank;
		tail_sq += res.tail_sq;
		c = res.sv; /* r x n: the remainder, unfolded next round */
		rest = n;
	}
	tt->cores[d - 1] = c; /* [r_{d-1}, n_d, 1] */
	tt->ranks[d] = 1;
	if (scale_exp) { /* undo the scaling on the unorthogonal core */
		double f = ldexp(1.0, scale_exp);
		for (size_t i = 0; i < tt->ranks[d - 1] * modes[d - 1]; i++)
			c[i] = (float)(c[i] * f);
	}
	rc = check_ranks(d, modes, tt->ranks, &tt->params);
	if (rc)
		goto fail;
	/* Input near FLT_MAX can leave a last core beyond float range; never
	 * hand back cores that reconstruct to inf. */
	for (unsigned k = 0; k < d; k++)
		if (sum_sq(tt->cores[k], core_size(tt, k)) < 0.0) {
			rc = -EDOM;
			goto fail;
		}
	tt->err_bound = norm > 0.0 ? sqrt(tail_sq) / norm : 0.0;
	*out = tt;
	return 0;
fail:
	tcz_tt_free(tt);
	return rc;
}

/* A TT of the given shape with no cores yet, validated. */
static int tt_shell(unsigned d, const size_t *modes, const size_t *ranks,
		    const float *const *cores, tcz_tt **out)
{
	size_t numel, params;
	int rc;
	if (!out)
		return -EINVAL;
	*out = NULL;
	if ((rc = check_modes(d, modes, &numel)) ||
	    (rc = check_ranks(d, modes, ranks, &params)))
		return rc;
	if (!cores)
		return -EINVAL;
	for (unsigned k = 0; k < d; k++)
		if (!cores[k])
			return -EINVAL;
	tcz_tt *tt = calloc(1, sizeof *tt);
	if (!tt)
		return -ENOMEM;
	tt->d = d;
	tt->numel = numel;
	tt->params = params;
	tt->err_bound = NAN;
	memcpy(tt->modes, modes, d * sizeof *modes);
	memcpy(tt->ranks, ranks, (d + 1) * sizeof *ranks);
	*out = tt;
	return 0;
}

int tcz_tt_from_cores(unsigned d, const size_t *modes, const size_t *ranks,
		      const float *const *cores, tcz_tt **out)
{
	tcz_tt *tt;
	if (!out)
		return -EINVAL;
	int rc = tt_shell(d, modes, ranks, cores, out);
	if (rc)
		return rc;
	tt = *out;
	*out = NULL;
	for (unsigned k = 0; k < d; k++) {
		size_t sz = core_size(tt, k);
		if (sum_sq(cores[k], sz) < 0.0) {
			rc = -EDOM;
			goto fail;
		}
		tt->cores[k] = malloc(sz * sizeof(float));
		if (!tt->cores[k]) {
			rc = -ENOMEM;
			goto fail;
		}
		memcpy(tt->cores[k], cores[k], sz * sizeof(float));
	}
	*out = tt;
	return 0;
fail:
	tcz_tt_free(tt);
	return rc;
}

int tcz_tt_wrap(unsigned d, const size_t *modes, const size_t *ranks,
		const float *const *cores, tcz_tt **out)
{
	int rc = tt_shell(d, modes, ranks, cores, out);
	if (rc)
		return rc;
	(*out)->borrowed = 1;
	for (unsigned k = 0; k < d; k++)
		(*out)->cores[k] = (float *)cores[k];
	return 0;
}

int tcz_tt_cores_finite(const float *a, size_t n)
{
	return sum_sq(a, n) >= 0.0;
}

unsigned tcz_tt_order(const tcz_tt *tt)
{
	return tt ? tt->d : 0;
}

size_t tcz_tt_mode(const tcz_tt *tt, unsigned k)
{
	return tt && k < tt->d ? tt->modes[k] : 0;
}

size_t tcz_tt_rank(const tcz_tt *tt, unsigned k)
{
	return tt && k <= tt->d ? tt->ranks[k] : 0;
}

const float *tcz_tt_core(const tcz_tt *tt, unsigned k)
{
	return tt && k < tt->d ? tt->cores[k] : NULL;
}

size_t tcz_tt_numel(const tcz_tt *tt)
{
	return tt ? tt->numel : 0;
}

size_t tcz_tt_param_count(const tcz_tt *tt)
{
	return tt ? tt->params : 0;
}

double tcz_tt_ratio(const tcz_tt *tt)
{
	return tt && tt->params ? (double)tt->numel / (double)tt->params : 0.0;
}

double tcz_tt_error_bound(const tcz_tt *tt)
{
	return tt ? tt->err_bound : NAN;
}

/* out (rows x cols, leading dimension ldo) = par (rows x rp) * g (rp x
 * cols, leading dimension ld). Every output element sums its rp products
 * in index order, whatever the rows, the alignment or the thread count:
 * a reconstructed element is the same float in every reader (and equal to
 * what the importer measured its error on). BLAS kernels reorder sums by
 * shape and alignment, so they are not used here. Four rows at a time
 * share each load of g. */
static void rows_times(const float *par, size_t rp, size_t rows,
		       const float *g, size_t ld, size_t cols, float *out,
		       size_t ldo)
{
	size_t i = 0;
	for (; i + 4 <= rows; i += 4) {
		const float *p0 = par + i * rp, *p1 = p0 + rp, *p2 = p1 + rp,
			    *p3 = p2 + rp;
		float *o0 = out + i * ldo, *o1 = o0 + ldo, *o2 = o1 + ldo,
		      *o3 = o2 + ldo;
		for (size_t j = 0; j < cols; j++)
			o0[j] = o1[j] = o2[j] = o3[j] = 0.0f;
		for (size_t r = 0; r < rp; r++) {
			const float *gr = g + r * ld;
			const float a0 = p0[r], a1 = p1[r], a2 = p2[r], a3 = p3[r];
			for (size_t j = 0; j < cols; j++) {
				float v = gr[j];
				o0[j] += a0 * v;
				o1[j] += a1 * v;
				o2[j] += a2 * v;
				o3[j] += a3 * v;
			}
		}
	}
	for (; i < rows; i++) {
		const float *p = par + i * rp;
		float *o = out + i * ldo;
		for (size_t j = 0; j < cols; j++)
			o[j] = 0.0f;
		for (size_t r = 0; r < rp; r++) {
			const float *gr = g + r * ld;
			const float a = p[r];
			for (size_t j = 0; j < cols; j++)
				o[j] += a * gr[j];
		}
	}
}

/* Level-k prefixes [c0, c1] (inclusive) from their parents. par holds the
 * parent rows from c0 / n on, rp floats each; the core is the row-major
 * rp x (n * rn) matrix. The first and last parents may need only some of
 * their n children, so they are done alone over just those columns; the
 * parents between need all children. The result is (c1 - c0 + 1) rows of
 * rn floats. */
static void expand(const float *par, size_t rp, const float *core, size_t n,
		   size_t rn, size_t c0, size_t c1, float *out)
{
	size_t ld = n * rn;
	size_t q0 = c0 / n, q1 = c1 / n;
	size_t j0 = c0 % n, j1 = c1 % n;

	if (q0 == q1) {
		rows_times(par, rp, 1, core + j0 * rn, ld, (j1 - j0 + 1) * rn,
			   out, 0);
		return;
	}
	rows_times(par, rp, 1, core + j0 * rn, ld, (n - j0) * rn, out, 0);
	out += (n - j0) * rn;
	size_t mid = q1 - q0 - 1;
	if (mid) {
		rows_times(par + rp, rp, mid, core, ld, ld, out, ld);
		out += mid * ld;
	}
	rows_times(par + (q1 - q0) * rp, rp, 1, core, ld, (j1 + 1) * rn, out, 0);
}

/* Rows a run of e elements can touch at a level of stride s, at most. */
static size_t rows_bound(size_t e, size_t s, size_t prefix)
{
	size_t r = (e - 1) / s + 2;
	return r < prefix ? r : prefix;
}

int tcz_tt_reconstruct_range(const tcz_tt *tt, size_t first, size_t count,
			     float *out)
{
	if (!tt || count > tt->numel || first > tt->numel - count)
		return -EINVAL;
	if (count == 0)
		return 0;
	if (!out)
		return -EINVAL;

	const unsigned d = tt->d;
	/* Level k (1..d) indexes prefixes over modes 0..k-1; element e lies
	 * under prefix e / stride[k] of that level. */
	size_t stride[TCZ_TT_MAX_ORDER + 1], prefix[TCZ_TT_MAX_ORDER + 1];
	stride[d] = 1;
	for (unsigned k = d; k > 0; k--)
		stride[k - 1] = stride[k] * tt->modes[k - 1];
	prefix[0] = 1;
	for (unsigned k = 1; k <= d; k++)
		prefix[k] = prefix[k - 1] * tt->modes[k - 1];

	/* Levels 2..d-1 need scratch; level 1 is a slice of the first core
	 * (r_0 = 1) and level d is the output itself. */
	size_t chunk = RECON_CHUNK, total;
	size_t off[TCZ_TT_MAX_ORDER + 1];
	for (;;) {
		total = 0;
		for (unsigned k = 2; k < d; k++) {
			off[k] = total;
			total += rows_bound(chunk, stride[k], prefix[k]) *
				 tt->ranks[k];
		}
		if (total <= RECON_SCRATCH_MAX || chunk == 1)
			break;
		chunk /= 2;
	}
	float *scratch = NULL;
	if (total) {
		scratch = malloc(total * sizeof *scratch);
		if (!scratch)
			return -ENOMEM;
	}

	const size_t end = first + count;
	for (size_t e0 = first; e0 < end; e0 += chunk) {
		size_t e1 = (end - e0 > chunk ? e0 + chunk : end) - 1;
		const float *par = tt->cores[0] +
				   e0 / stride[1] * tt->ranks[1];
		for (unsigned k = 2; k <= d; k++) {
			float *dst = k == d ? out + (e0 - first)
					    : scratch + off[k];
			expand(par, tt->ranks[k - 1], tt->cores[k - 1],
			       tt->modes[k - 1], tt->ranks[k], e0 / stride[k],
			       e1 / stride[k], dst);
			par = dst;
		}
	}
	free(scratch);
	return 0;
}

int tcz_tt_reconstruct(const tcz_tt *tt, float *out)
{
	if (!tt)
		return -EINVAL;
	return tcz_tt_reconstruct_range(tt, 0, tt->numel, out);
}

int tcz_tt_svd_estimate(const float *a, size_t m, size_t n, double eps,
			uint32_t max_rank, size_t *rank, double *rel_err,
			size_t *params)
{
	size_t numel;
	if (!a || m == 0 || n == 0 || !mul_ok(m, n, &numel) ||
	    numel > SIZE_MAX / sizeof(float) || !isfinite(eps) || eps < 0.0)
		return -EINVAL;
	if (sum_sq(a, numel) < 0.0)
		return -EDOM;

	size_t k = m < n ? m : n;
	float *c = malloc(numel * sizeof *c);
	float *s = malloc(k * sizeof *s);
	int rc = -ENOMEM;
	if (!c || !s)
		goto out;
	(void)copy_scaled(a, numel, c); /* the ratios are scale-free */
	double norm_sq = sum_sq(c, numel);
	rc = tcz_svd_values(c, m, n, s);
	if (rc)
		goto out;

	double norm = sqrt(norm_sq), tail;
	size_t r = tcz_svd_pick_rank(s, k, 0.0, eps * eps * norm_sq, &tail);
	if (r == 0)
		r = k;
	if (max_rank && r > max_rank) {
		r = max_rank;
		tail = 0.0;
		for (size_t i = k; i > r; i--)
			tail += (double)s[i - 1] * s[i - 1];
	}
	if (rank)
		*rank = r;
	if (rel_err)
		*rel_err = norm > 0.0 ? sqrt(tail) / norm : 0.0;
	if (params)
		*params = r * (m + n);
out:
	free(c);
	free(s);
	return rc;
}

void tcz_tt_blas_threads(int n)
{
	openblas_set_num_threads(n > 0 ? n : 1);
}
