/* TT-SVD against independent references: tensors built in double from
 * known cores (naive contraction, not the library's sgemm chain), singular
 * values from a one-sided Jacobi SVD in double written here, and the
 * closed-form guarantees of TT-SVD (error <= eps, left-orthonormal cores,
 * rank bounds from the unfolding sizes). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/metrics.h"
#include "codec/svd.h"
#include "codec/tt.h"

/* ---- test-side helpers ---- */

/* Relative error that float arithmetic alone leaves in a d <= 4 TT. */
#define FLOAT_FLOOR 5e-6

static uint64_t rng_state;

static void rng_init(uint64_t seed)
{
	rng_state = seed * 0x9e3779b97f4a7c15u + 1;
}

static uint64_t rng_u64(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1du;
}

static double rng_unit(void) /* (0, 1) */
{
	return ((rng_u64() >> 11) + 0.5) * 0x1p-53;
}

static double rng_gauss(void)
{
	return sqrt(-2.0 * log(rng_unit())) * cos(6.283185307179586 * rng_unit());
}

static size_t rng_below(size_t n)
{
	return (size_t)(rng_u64() % n);
}

static float *gauss_f32(size_t n)
{
	float *x = malloc(n * sizeof *x);
	assert_non_null(x);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)rng_gauss();
	return x;
}

static size_t prod(const size_t *v, size_t n)
{
	size_t p = 1;
	for (size_t i = 0; i < n; i++)
		p *= v[i];
	return p;
}

/* Element of a TT by contracting the core slices one by one in double. */
static double naive_elem(unsigned d, const size_t *modes, const size_t *ranks,
			 float *const *cores, size_t e)
{
	size_t idx[TCZ_TT_MAX_ORDER];
	double v[64], w[64];
	for (unsigned k = d; k-- > 0;) {
		idx[k] = e % modes[k];
		e /= modes[k];
	}
	v[0] = 1.0;
	for (unsigned k = 0; k < d; k++) {
		size_t r0 = ranks[k], r1 = ranks[k + 1], n = modes[k];
		for (size_t b = 0; b < r1; b++) {
			double s = 0.0;
			for (size_t a = 0; a < r0; a++)
				s += v[a] * cores[k][(a * n + idx[k]) * r1 + b];
			w[b] = s;
		}
		memcpy(v, w, r1 * sizeof *v);
	}
	return v[0];
}

static float *naive_full(unsigned d, const size_t *modes, const size_t *ranks,
			 float *const *cores)
{
	size_t n = prod(modes, d);
	float *t = malloc(n * sizeof *t);
	assert_non_null(t);
	for (size_t e = 0; e < n; e++)
		t[e] = (float)naive_elem(d, modes, ranks, cores, e);
	return t;
}

static void random_cores(unsigned d, const size_t *modes, const size_t *ranks,
			 float **cores)
{
	for (unsigned k = 0; k < d; k++)
		cores[k] = gauss_f32(ranks[k] * modes[k] * ranks[k + 1]);
}

static void free_cores(unsigned d, float **cores)
{
	for (unsigned k = 0; k < d; k++)
		free(cores[k]);
}

static int cmp_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* Singular values of a row-major m x n float matrix, descending, by
 * one-sided Jacobi (Hestenes) in double on the taller orientation. */
static void jacobi_sv(const float *a, size_t m, size_t n, double *s)
{
	size_t rows = m >= n ? m : n, cols = m >= n ? n : m;
	double *x = malloc(rows * cols * sizeof *x); /* column-major */
	assert_non_null(x);
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++) {
			if (m >= n)
				x[j * rows + i] = a[i * n + j];
			else
				x[i * rows + j] = a[i * n + j];
		}
	for (int sweep = 0; sweep < 60; sweep++) {
		double off = 0.0;
		for (size_t p = 0; p + 1 < cols; p++)
			for (size_t q = p + 1; q < cols; q++) {
				double *xp = x + p * rows, *xq = x + q * rows;
				double al = 0, be = 0, ga = 0;
				for (size_t i = 0; i < rows; i++) {
					al += xp[i] * xp[i];
					be += xq[i] * xq[i];
					ga += xp[i] * xq[i];
				}
				if (ga == 0.0)
					continue;
				double c = fabs(ga) / sqrt(al * be);
				if (c > off)
					off = c;
				if (c < 1e-15)
					continue;
				double zeta = (be - al) / (2.0 * ga);
				double t = (zeta >= 0 ? 1.0 : -1.0) /
					   (fabs(zeta) + sqrt(1.0 + zeta * zeta));
				double cs = 1.0 / sqrt(1.0 + t * t), sn = cs * t;
				for (size_t i = 0; i < rows; i++) {
					double u = xp[i], v = xq[i];
					xp[i] = cs * u - sn * v;
					xq[i] = sn * u + cs * v;
				}
			}
		if (off < 1e-15)
			break;
	}
	for (size_t j = 0; j < cols; j++) {
		double acc = 0.0;
		for (size_t i = 0; i < rows; i++)
			acc += x[j * rows + i] * x[j * rows + i];
		s[j] = sqrt(acc);
	}
	qsort(s, cols, sizeof *s, cmp_desc);
	free(x);
}

/* Smallest r >= 1 with sqrt(sum_{i>=r} s_i^2) <= delta; tail into *tail. */
static size_t ref_rank(const double *s, size_t k, double delta, double *tail)
{
	for (size_t r = 1; r <= k; r++) {
		double t = 0.0;
		for (size_t i = r; i < k; i++)
			t += s[i] * s[i];
		if (sqrt(t) <= delta) {
			*tail = sqrt(t);
			return r;
		}
	}
	*tail = 0.0;
	return k;
}

static double ref_tail(const double *s, size_t k, size_t r)
{
	double t = 0.0;
	for (size_t i = r; i < k; i++)
		t += s[i] * s[i];
	return sqrt(t);
}

static double fro(const float *a, size_t n)
{
	double acc = 0.0;
	for (size_t i = 0; i < n; i++)
		acc += (double)a[i] * a[i];
	return sqrt(acc);
}

static double rel_err(const float *ref, const tcz_tt *tt)
{
	size_t n = tcz_tt_numel(tt);
	float *rec = malloc(n * sizeof *rec);
	tcz_error e;
	assert_non_null(rec);
	assert_int_equal(tcz_tt_reconstruct(tt, rec), 0);
	assert_int_equal(tcz_error_f32(ref, rec, n, &e), 0);
	free(rec);
	return e.rel_fro;
}

static tcz_tt_params params_eps(double eps)
{
	tcz_tt_params p;
	tcz_tt_params_default(&p);
	p.eps = eps;
	return p;
}

/* ---- tests ---- */

/* TT-SVD leaves cores 0..d-2 left-orthonormal: each reshaped to
 * (r_k n_k) x r_{k+1} has orthonormal columns. */
static void assert_left_orthonormal(const tcz_tt *tt)
{
	for (unsigned k = 0; k + 1 < tcz_tt_order(tt); k++) {
		size_t rows = tcz_tt_rank(tt, k) * tcz_tt_mode(tt, k);
		size_t r = tcz_tt_rank(tt, k + 1);
		const float *g = tcz_tt_core(tt, k);
		for (size_t a = 0; a < r; a++)
			for (size_t b = 0; b < r; b++) {
				double dot = 0.0;
				for (size_t i = 0; i < rows; i++)
					dot += (double)g[i * r + a] * g[i * r + b];
				assert_true(fabs(dot - (a == b)) < 1e-4);
			}
	}
}

static void exact_tt_recovered(void **state)
{
	(void)state;
	const size_t modes[] = {8, 9, 10, 7}, ranks[] = {1, 3, 4, 2, 1};
	float *cores[4];
	rng_init(1);
	random_cores(4, modes, ranks, cores);
	float *a = naive_full(4, modes, ranks, cores);

	tcz_tt_params p = params_eps(1e-4);
	tcz_tt *tt;
	assert_int_equal(tcz_tt_decompose(a, 4, modes, &p, &tt), 0);
	assert_int_equal(tcz_tt_order(tt), 4);
	for (unsigned k = 0; k <= 4; k++)
		assert_int_equal(tcz_tt_rank(tt, k), ranks[k]);
	for (unsigned k = 0; k < 4; k++)
		assert_int_equal(tcz_tt_mode(tt, k), modes[k]);
	assert_int_equal(tcz_tt_numel(tt), 5040);
	/* 1*8*3 + 3*9*4 + 4*10*2 + 2*7*1 */
	assert_int_equal(tcz_tt_param_count(tt), 226);
	assert_true(fabs(tcz_tt_ratio(tt) - 5040.0 / 226.0) < 1e-12);
	assert_true(rel_err(a, tt) < 1e-5);
	assert_true(tcz_tt_error_bound(tt) <= 1e-4);
	assert_left_orthonormal(tt);

	/* Forcing the randomized engine gives the same ranks. */
	p.randomized = 1;
	tcz_tt *tr;
	assert_int_equal(tcz_tt_decompose(a, 4, modes, &p, &tr), 0);
	for (unsigned k = 0; k <= 4; k++)
		assert_int_equal(tcz_tt_rank(tr, k), ranks[k]);
	assert_true(rel_err(a, tr) < 1e-5);

	tcz_tt_free(tr);
	tcz_tt_free(tt);

	/* The same near both ends of the float range. */
	static const float scales[] = {1e36f, 1e-34f};
	size_t n = prod(modes, 4);
	float *b = malloc(n * sizeof *b);
	assert_non_null(b);
	for (int si = 0; si < 2; si++) {
		for (size_t i = 0; i < n; i++)
			b[i] = a[i] * scales[si];
		p.randomized = si ? 1 : -1;
		assert_int_equal(tcz_tt_decompose(b, 4, modes, &p, &tt), 0);
		for (unsigned k = 0; k <= 4; k++)
			assert_int_equal(tcz_tt_rank(tt, k), ranks[k]);
		assert_true(rel_err(b, tt) < 1e-5);
		size_t r;
		double e;
		assert_int_equal(tcz_tt_svd_estimate(b, 8, 630, 1e-4, 0, &r, &e,
						     NULL), 0);
		assert_int_equal(r, 3);
		tcz_tt_free(tt);
	}
	free(b);
	free(a);
	free_cores(4, cores);
}

static void gaussian_error_within_eps(void **state)
{
	(void)state;
	static const struct {
		unsigned d;
		size_t modes[4];
	} shapes[] = {
		{2, {40, 50}},
		{2, {64, 9}},
		{3, {12, 10, 14}},
		{4, {6, 7, 5, 8}},
	};
	static const double eps[] = {0.5, 0.2, 0.05, 1e-2, 1e-3};
	rng_init(2);
	for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
		unsigned d = shapes[si].d;
		const size_t *modes = shapes[si].modes;
		size_t n = prod(modes, d);
		float *a = gauss_f32(n);
		double norm = fro(a, n);
		/* First unfolding's singular values, for its rank. */
		size_t m0 = modes[0], n0 = n / modes[0];
		size_t k0 = m0 < n0 ? m0 : n0;
		double *s = malloc(k0 * sizeof *s);
		assert_non_null(s);
		jacobi_sv(a, m0, n0, s);

		for (size_t ei = 0; ei < sizeof eps / sizeof *eps; ei++) {
			tcz_tt_params p = params_eps(eps[ei]);
			tcz_tt *tt;
			assert_int_equal(tcz_tt_decompose(a, d, modes, &p, &tt),
					 0);
			double err = rel_err(a, tt);
			double bound = tcz_tt_error_bound(tt);
			/* FLOAT_FLOOR: rounding of the float SVDs and of the
			 * reconstruction, which the bound does not model. */
			assert_true(err <= eps[ei] * (1 + 1e-4) + FLOAT_FLOOR);
			assert_true(bound <= eps[ei] * (1 + 1e-9));
			assert_true(err <= bound * (1 + 1e-3) + FLOAT_FLOOR);
			/* Ranks never exceed the unfolding sizes. */
			for (unsigned k = 1; k < d; k++) {
				size_t left = prod(modes, k);
				size_t right = n / left;
				size_t r = tcz_tt_rank(tt, k);
				assert_true(r >= 1 && r <= left && r <= right);
				assert_true(r <= tcz_tt_rank(tt, k - 1) *
						     modes[k - 1]);
			}
			double tail;
			size_t r1 = ref_rank(s, k0, eps[ei] / sqrt(d - 1.0) *
							   norm, &tail);
			assert_int_equal(tcz_tt_rank(tt, 1), r1);
			size_t pc = 0;
			for (unsigned k = 0; k < d; k++)
				pc += tcz_tt_rank(tt, k) * modes[k] *
				      tcz_tt_rank(tt, k + 1);
			assert_int_equal(tcz_tt_param_count(tt), pc);
			assert_left_orthonormal(tt);
			tcz_tt_free(tt);
		}
		free(s);
		free(a);
	}
}

static void max_rank_honoured(void **state)
{
	(void)state;
	const size_t modes[] = {10, 12, 9, 11};
	rng_init(3);
	size_t n = prod(modes, 4);
	float *a = gauss_f32(n);
	tcz_tt_params p = params_eps(1e-3);
	p.max_rank = 4;
	tcz_tt *tt;
	assert_int_equal(tcz_tt_decompose(a, 4, modes, &p, &tt), 0);
	/* Gaussian data needs full rank at 1e-3, so the cap binds. */
	for (unsigned k = 1; k < 4; k++)
		assert_int_equal(tcz_tt_rank(tt, k), 4);
	double err = rel_err(a, tt);
	assert_true(tcz_tt_error_bound(tt) > 1e-3);
	assert_true(err <= tcz_tt_error_bound(tt) * (1 + 1e-3) + 1e-6);
	assert_true(err > 0.5); /* 4 of ~100 directions keep little */
	tcz_tt_free(tt);
	free(a);

	/* d = 2: the capped error is the Eckart-Young tail at the cap. */
	const size_t mm[] = {30, 40};
	a = gauss_f32(1200);
	double s[30], norm = fro(a, 1200);
	jacobi_sv(a, 30, 40, s);
	p.max_rank = 5;
	assert_int_equal(tcz_tt_decompose(a, 2, mm, &p, &tt), 0);
	assert_int_equal(tcz_tt_rank(tt, 1), 5);
	double want = ref_tail(s, 30, 5) / norm;
	assert_true(fabs(rel_err(a, tt) - want) <= 1e-4 * want);
	assert_true(fabs(tcz_tt_error_bound(tt) - want) <= 1e-4 * want);
	size_t r, params;
	double est;
	assert_int_equal(tcz_tt_svd_estimate(a, 30, 40, 1e-3, 5, &r, &est,
					     &params), 0);
	assert_int_equal(r, 5);
	assert_int_equal(params, 5 * 70);
	assert_true(fabs(est - want) <= 1e-4 * want);
	tcz_tt_free(tt);
	free(a);
}

static void d2_matches_truncated_svd(void **state)
{
	(void)state;
	const size_t m = 30, n = 45, mn[] = {30, 45};
	rng_init(4);
	/* Gaussian, and one with a geometric spectrum (columns scaled). */
	for (int kind = 0; kind < 2; kind++) {
		float *a = gauss_f32(m * n);
		if (kind)
			for (size_t i = 0; i < m * n; i++)
				a[i] *= (float)pow(0.8, (double)(i % n));
		double s[30], norm = fro(a, m * n);
		jacobi_sv(a, m, n, s);
		static const double eps[] = {0.6, 0.3, 0.1, 0.03, 0.01};
		for (size_t ei = 0; ei < 5; ei++) {
			double tail;
			size_t want = ref_rank(s, m, eps[ei] * norm, &tail);
			double want_err = tail / norm;
			tcz_tt_params p = params_eps(eps[ei]);
			tcz_tt *tt;
			assert_int_equal(tcz_tt_decompose(a, 2, mn, &p, &tt), 0);
			assert_int_equal(tcz_tt_rank(tt, 1), want);
			double err = rel_err(a, tt);
			/* + 1e-6: float rounding when nothing is dropped */
			assert_true(fabs(err - want_err) <=
				    1e-4 * want_err + 1e-6);
			assert_true(fabs(tcz_tt_error_bound(tt) - want_err) <=
				    1e-4 * want_err + 1e-6);
			assert_int_equal(tcz_tt_param_count(tt),
					 want * (m + n));

			size_t r, params;
			double est;
			assert_int_equal(tcz_tt_svd_estimate(a, m, n, eps[ei], 0,
							     &r, &est, &params),
					 0);
			assert_int_equal(r, want);
			assert_int_equal(params, want * (m + n));
			assert_true(fabs(est - want_err) <=
				    1e-4 * want_err + 1e-6);
			/* The transposed matrix has the same spectrum. */
			float *at = malloc(m * n * sizeof *at);
			assert_non_null(at);
			for (size_t i = 0; i < m; i++)
				for (size_t j = 0; j < n; j++)
					at[j * m + i] = a[i * n + j];
			assert_int_equal(tcz_tt_svd_estimate(at, n, m, eps[ei], 0,
							     &r, &est, NULL),
					 0);
			assert_int_equal(r, want);
			free(at);
			tcz_tt_free(tt);
		}
		free(a);
	}
}

static void bad_shapes_rejected(void **state)
{
	(void)state;
	float a[64] = {0};
	tcz_tt *tt = (tcz_tt *)&tt; /* must be reset to NULL on error */
	tcz_tt_params p = params_eps(1e-2);
	const size_t m4[] = {4, 4, 4}, m0[] = {4, 0, 4};
	const size_t big[] = {(SIZE_MAX >> 1) + 1, 2};
	const size_t big2[] = {(size_t)1 << 31, (size_t)1 << 31};
	const size_t m17[17] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

	assert_int_equal(tcz_tt_decompose(a, 0, m4, &p, &tt), -EINVAL);
	assert_null(tt);
	assert_int_equal(tcz_tt_decompose(a, 1, m4, &p, &tt), -EINVAL);
	assert_int_equal(tcz_tt_decompose(a, 17, m17, &p, &tt), -EINVAL);
	assert_int_equal(tcz_tt_decompose(a, 3, m0, &p, &tt), -EINVAL);
	/* Validation happens before a is read: a is far too small here. */
	assert_int_equal(tcz_tt_decompose(a, 2, big, &p, &tt), -EINVAL);
	assert_int_equal(tcz_tt_decompose(a, 2, big2, &p, &tt), -EINVAL);
	assert_int_equal(tcz_tt_decompose(a, 3, NULL, &p, &tt), -EINVAL);
	assert_int_equal(tcz_tt_decompose(NULL, 3, m4, &p, &tt), -EINVAL);
	assert_int_equal(tcz_tt_decompose(a, 3, m4, &p, NULL), -EINVAL);
	p.eps = NAN;
	assert_int_equal(tcz_tt_decompose(a, 3, m4, &p, &tt), -EINVAL);
	p.eps = -1e-3;
	assert_int_equal(tcz_tt_decompose(a, 3, m4, &p, &tt), -EINVAL);
	p.eps = INFINITY;
	assert_int_equal(tcz_tt_decompose(a, 3, m4, &p, &tt), -EINVAL);
	p.eps = 1e-2;
	a[37] = NAN;
	assert_int_equal(tcz_tt_decompose(a, 3, m4, &p, &tt), -EDOM);
	a[37] = -INFINITY;
	assert_int_equal(tcz_tt_decompose(a, 3, m4, &p, &tt), -EDOM);
	/* Finite, but the singular values overflow float. */
	for (int i = 0; i < 64; i++)
		a[i] = 3e38f;
	assert_int_equal(tcz_tt_decompose(a, 3, m4, &p, &tt), -EDOM);
	memset(a, 0, sizeof a);
	assert_null(tt);

	size_t r;
	double e;
	a[37] = NAN;
	assert_int_equal(tcz_tt_svd_estimate(a, 8, 8, 1e-2, 0, &r, &e, NULL),
			 -EDOM);
	a[37] = 0;
	assert_int_equal(tcz_tt_svd_estimate(a, 0, 8, 1e-2, 0, &r, &e, NULL),
			 -EINVAL);
	assert_int_equal(tcz_tt_svd_estimate(a, SIZE_MAX / 2, 4, 1e-2, 0, &r,
					     &e, NULL), -EINVAL);
	assert_int_equal(tcz_tt_svd_estimate(a, 8, 8, NAN, 0, &r, &e, NULL),
			 -EINVAL);

	/* Zero tensor: rank 1, exact, bound 0; a 1-sized mode is fine. */
	const size_t m1[] = {4, 1, 16};
	assert_int_equal(tcz_tt_decompose(a, 3, m1, &p, &tt), 0);
	assert_int_equal(tcz_tt_rank(tt, 1), 1);
	assert_int_equal(tcz_tt_rank(tt, 2), 1);
	assert_true(tcz_tt_error_bound(tt) == 0.0);
	float rec[64];
	assert_int_equal(tcz_tt_reconstruct(tt, rec), 0);
	for (int i = 0; i < 64; i++)
		assert_true(rec[i] == 0.0f);
	tcz_tt_free(tt);
	tcz_tt_free(NULL);

	/* The SVD engine refuses sides LAPACK's int cannot index, before
	 * reading anything. */
	tcz_svd_result res;
	float sv[4];
	assert_int_equal(tcz_svd_truncate(a, (size_t)INT_MAX + 1, 1, 0.0, 0,
					  NULL, &res), -EINVAL);
	assert_null(res.u);
	assert_int_equal(tcz_svd_truncate(a, 0, 4, 0.0, 0, NULL, &res),
			 -EINVAL);
	assert_int_equal(tcz_svd_values(a, 1, (size_t)INT_MAX + 1, sv),
			 -EINVAL);
}

/* Vectors as 1 x n / n x 1 and 1-sized inner modes: exact at rank 1. */
static void degenerate_modes(void **state)
{
	(void)state;
	static const size_t shapes[][3] = {
		{1, 7, 0}, {7, 1, 0}, {1, 1, 0}, {5, 1, 6}, {1, 9, 1},
	};
	rng_init(10);
	for (size_t i = 0; i < 5; i++) {
		unsigned d = shapes[i][2] ? 3 : 2;
		size_t n = prod(shapes[i], d);
		float *a = gauss_f32(n);
		tcz_tt *tt;
		/* NULL params: the defaults (eps 1e-3) */
		assert_int_equal(tcz_tt_decompose(a, d, shapes[i], NULL, &tt),
				 0);
		for (unsigned k = 0; k <= d; k++) {
			size_t left = prod(shapes[i], k);
			size_t right = n / left;
			assert_true(tcz_tt_rank(tt, k) <=
				    (left < right ? left : right));
		}
		assert_true(rel_err(a, tt) < 1e-6);
		tcz_tt_free(tt);
		free(a);
	}
}

static void from_cores_validates(void **state)
{
	(void)state;
	const size_t modes[] = {3, 4, 5}, ranks[] = {1, 2, 3, 1};
	float *cores[3];
	rng_init(5);
	random_cores(3, modes, ranks, cores);
	const float *cc[3] = {cores[0], cores[1], cores[2]};
	tcz_tt *tt = (tcz_tt *)&tt;

	assert_int_equal(tcz_tt_from_cores(3, modes, ranks, cc, &tt), 0);
	assert_int_equal(tcz_tt_param_count(tt), 6 + 24 + 15);
	assert_true(isnan(tcz_tt_error_bound(tt)));
	assert_int_equal(tcz_tt_mode(tt, 3), 0);
	assert_int_equal(tcz_tt_rank(tt, 3), 1);
	assert_int_equal(tcz_tt_rank(tt, 4), 0);
	assert_null(tcz_tt_core(tt, 3));
	/* Copied, not borrowed. */
	assert_ptr_not_equal(tcz_tt_core(tt, 1), cores[1]);
	assert_memory_equal(tcz_tt_core(tt, 1), cores[1], 24 * sizeof(float));
	float *ref = naive_full(3, modes, ranks, cores);
	float rec[60];
	assert_int_equal(tcz_tt_reconstruct(tt, rec), 0);
	for (int i = 0; i < 60; i++)
		assert_true(fabsf(rec[i] - ref[i]) <= 1e-5f * (1 + fabsf(ref[i])));
	tcz_tt_free(tt);
	free(ref);

	size_t r[4];
	memcpy(r, ranks, sizeof r);
	const size_t m0[] = {3, 0, 5};
	assert_int_equal(tcz_tt_from_cores(1, modes, ranks, cc, &tt), -EINVAL);
	assert_null(tt);
	assert_int_equal(tcz_tt_from_cores(17, modes, ranks, cc, &tt), -EINVAL);
	assert_int_equal(tcz_tt_from_cores(3, m0, ranks, cc, &tt), -EINVAL);
	assert_int_equal(tcz_tt_from_cores(3, NULL, ranks, cc, &tt), -EINVAL);
	assert_int_equal(tcz_tt_from_cores(3, modes, NULL, cc, &tt), -EINVAL);
	assert_int_equal(tcz_tt_from_cores(3, modes, ranks, NULL, &tt),
			 -EINVAL);
	r[0] = 2;
	assert_int_equal(tcz_tt_from_cores(3, modes, r, cc, &tt), -EINVAL);
	r[0] = 1;
	r[3] = 2;
	assert_int_equal(tcz_tt_from_cores(3, modes, r, cc, &tt), -EINVAL);
	r[3] = 1;
	r[2] = 0;
	assert_int_equal(tcz_tt_from_cores(3, modes, r, cc, &tt), -EINVAL);
	/* Core sizes that overflow, or a core row cblas cannot index. */
	r[2] = SIZE_MAX / 4;
	assert_int_equal(tcz_tt_from_cores(3, modes, r, cc, &tt), -EINVAL);
	r[2] = (size_t)1 << 30;
	assert_int_equal(tcz_tt_from_cores(3, modes, r, cc, &tt), -EINVAL);
	r[2] = 3;
	const float *cn[3] = {cores[0], NULL, cores[2]};
	assert_int_equal(tcz_tt_from_cores(3, modes, r, cn, &tt), -EINVAL);
	cores[2][14] = NAN;
	assert_int_equal(tcz_tt_from_cores(3, modes, r, cc, &tt), -EDOM);
	cores[2][14] = INFINITY;
	assert_int_equal(tcz_tt_from_cores(3, modes, r, cc, &tt), -EDOM);
	assert_null(tt);
	free_cores(3, cores);
}

static void check_ranges(const tcz_tt *tt, const float *full, int trials)
{
	size_t n = tcz_tt_numel(tt);
	size_t last = tcz_tt_mode(tt, tcz_tt_order(tt) - 1);
	double maxabs = 0.0;
	for (size_t i = 0; i < n; i++)
		if (fabs(full[i]) > maxabs)
			maxabs = fabs(full[i]);
	float *buf = malloc((n + 1) * sizeof *buf);
	assert_non_null(buf);
	for (int t = 0; t < trials; t++) {
		size_t first, count;
		switch (t % 5) {
		case 0: /* empty */
			first = rng_below(n + 1);
			count = 0;
			break;
		case 1: /* single */
			first = rng_below(n);
			count = 1;
			break;
		case 2: /* within or just across a row end */
			first = rng_below(n);
			count = 1 + rng_below(2 * last);
			break;
		case 3: /* several rows, starting mid-row */
			first = rng_below(n);
			count = 1 + rng_below(7 * last + 3);
			break;
		default: /* anything */
			first = rng_below(n);
			count = 1 + rng_below(n);
			break;
		}
		if (count > n - first)
			count = n - first;
		buf[count] = 12345.0f; /* guard */
		assert_int_equal(tcz_tt_reconstruct_range(tt, first, count, buf),
				 0);
		assert_true(buf[count] == 12345.0f);
		for (size_t i = 0; i < count; i++)
			assert_true(fabs(buf[i] - full[first + i]) <=
				    1e-5 * maxabs);
	}
	assert_int_equal(tcz_tt_reconstruct_range(tt, 0, n, buf), 0);
	for (size_t i = 0; i < n; i++)
		assert_true(fabs(buf[i] - full[i]) <= 1e-5 * maxabs);
	free(buf);
}

static void range_matches_full(void **state)
{
	(void)state;
	static const struct {
		unsigned d;
		size_t modes[5], ranks[6];
	} cases[] = {
		{4, {5, 7, 3, 11}, {1, 3, 5, 2, 1}},
		{2, {13, 17}, {1, 4, 1}},
		{3, {2, 300, 3}, {1, 2, 3, 1}},
		/* 120000 elements: the reconstruction runs in chunks */
		{3, {40, 50, 60}, {1, 4, 6, 1}},
		{5, {3, 4, 2, 5, 3}, {1, 3, 7, 4, 2, 1}},
	};
	rng_init(6);
	for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
		unsigned d = cases[ci].d;
		const size_t *modes = cases[ci].modes, *ranks = cases[ci].ranks;
		float *cores[5];
		random_cores(d, modes, ranks, cores);
		const float *cc[5] = {cores[0], cores[1], cores[2], cores[3],
				      cores[4]};
		tcz_tt *tt;
		assert_int_equal(tcz_tt_from_cores(d, modes, ranks, cc, &tt), 0);
		size_t n = tcz_tt_numel(tt);
		float *ref = naive_full(d, modes, ranks, cores);
		float *full = malloc(n * sizeof *full);
		assert_non_null(full);
		assert_int_equal(tcz_tt_reconstruct(tt, full), 0);
		double maxabs = 0.0;
		for (size_t i = 0; i < n; i++)
			if (fabs(ref[i]) > maxabs)
				maxabs = fabs(ref[i]);
		for (size_t i = 0; i < n; i++)
			assert_true(fabs(full[i] - ref[i]) <= 1e-5 * maxabs);
		check_ranges(tt, full, 400);

		float x;
		assert_int_equal(tcz_tt_reconstruct_range(tt, n, 0, &x), 0);
		assert_int_equal(tcz_tt_reconstruct_range(tt, n, 1, &x),
				 -EINVAL);
		assert_int_equal(tcz_tt_reconstruct_range(tt, 1, n, &x),
				 -EINVAL);
		assert_int_equal(tcz_tt_reconstruct_range(tt, SIZE_MAX, 2, &x),
				 -EINVAL);
		assert_int_equal(tcz_tt_reconstruct_range(NULL, 0, 1, &x),
				 -EINVAL);
		tcz_tt_free(tt);
		free(full);
		free(ref);
		free_cores(d, cores);
	}
}

/* A 1.5e10-element TT: a small range must not cost numel. */
static void range_work_is_local(void **state)
{
	(void)state;
	const size_t modes[] = {100000, 3000, 50}, ranks[] = {1, 2, 3, 1};
	float *cores[3];
	rng_init(7);
	random_cores(3, modes, ranks, cores);
	const float *cc[3] = {cores[0], cores[1], cores[2]};
	tcz_tt *tt;
	assert_int_equal(tcz_tt_from_cores(3, modes, ranks, cc, &tt), 0);
	size_t n = tcz_tt_numel(tt);
	assert_int_equal(n, (size_t)15000000000u);
	const size_t starts[] = {0, 7777777777u, n - 1000, 12345 * 150000u + 49};
	float buf[1000];
	for (int t = 0; t < 4; t++) {
		size_t first = starts[t], count = t == 2 ? 1000 : 777;
		assert_int_equal(tcz_tt_reconstruct_range(tt, first, count, buf),
				 0);
		for (size_t i = 0; i < count; i++) {
			double want = naive_elem(3, modes, ranks, cores,
						 first + i);
			assert_true(fabs(buf[i] - want) <=
				    1e-5 * (1 + fabs(want)));
		}
	}
	tcz_tt_free(tt);
	free_cores(3, cores);
}

/* 600 x 800 of rank 20 plus noise of relative norm 1e-4. */
static float *low_rank_matrix(size_t m, size_t n, size_t rank, double noise,
			      double *noise_rel)
{
	float *x = gauss_f32(m * rank), *y = gauss_f32(rank * n);
	double *a = malloc(m * n * sizeof *a), *e = malloc(m * n * sizeof *e);
	float *out = malloc(m * n * sizeof *out);
	assert_true(a && e && out);
	double an = 0.0, en = 0.0;
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++) {
			double s = 0.0;
			for (size_t k = 0; k < rank; k++)
				s += (double)x[i * rank + k] * y[k * n + j];
			a[i * n + j] = s;
			an += s * s;
		}
	for (size_t i = 0; i < m * n; i++) {
		e[i] = rng_gauss();
		en += e[i] * e[i];
	}
	double scale = noise * sqrt(an / en);
	for (size_t i = 0; i < m * n; i++)
		out[i] = (float)(a[i] + scale * e[i]);
	double tn = 0.0, nn = 0.0;
	for (size_t i = 0; i < m * n; i++) {
		double ei = out[i] - a[i]; /* the noise as stored in float */
		tn += (double)out[i] * out[i];
		nn += ei * ei;
	}
	*noise_rel = sqrt(nn / tn);
	free(x);
	free(y);
	free(a);
	free(e);
	return out;
}

static void randomized_low_rank(void **state)
{
	(void)state;
	const size_t m = 600, n = 800, mn[] = {600, 800};
	double nrel;
	rng_init(8);
	float *a = low_rank_matrix(m, n, 20, 1e-4, &nrel);

	/* Through the TT API, forced. Removing noise from 20 of 600
	 * directions leaves about sqrt(1 - 20/600 - 20/800) of it. */
	tcz_tt_params p = params_eps(1e-3);
	p.randomized = 1;
	tcz_tt *tt;
	assert_int_equal(tcz_tt_decompose(a, 2, mn, &p, &tt), 0);
	assert_int_equal(tcz_tt_rank(tt, 1), 20);
	double err = rel_err(a, tt);
	assert_true(err >= 0.9 * nrel && err <= 1.01 * nrel);
	assert_true(fabs(tcz_tt_error_bound(tt) - err) <= 0.01 * err);
	tcz_tt_free(tt);

	/* The engine itself: auto picks randomized above 512, forced and
	 * never agree on the rank. */
	double delta = 1e-3 * fro(a, m * n);
	for (int mode = -1; mode <= 1; mode++) {
		tcz_svd_opts o = {mode, 10, 2, 99};
		tcz_svd_result res;
		float *c = malloc(m * n * sizeof *c);
		assert_non_null(c);
		memcpy(c, a, m * n * sizeof *c);
		assert_int_equal(tcz_svd_truncate(c, m, n, delta, 0, &o, &res),
				 0);
		assert_int_equal(res.rank, 20);
		assert_int_equal(res.randomized, mode >= 0);
		assert_true(sqrt(res.tail_sq) <= delta);
		tcz_svd_result_free(&res);
		free(c);
	}
	free(a);
}

/* The sketch has to grow: rank 150 is beyond the first guess. And on a
 * full-rank matrix auto mode gives up and falls back to sgesdd. */
static void randomized_grows_and_falls_back(void **state)
{
	(void)state;
	const size_t m = 600, n = 800;
	double nrel;
	rng_init(9);
	float *a = low_rank_matrix(m, n, 150, 1e-5, &nrel);
	double delta = 1e-3 * fro(a, m * n);
	tcz_svd_opts o = {1, 10, 2, 5};
	tcz_svd_result res;
	float *c = malloc(m * n * sizeof *c);
	assert_non_null(c);
	memcpy(c, a, m * n * sizeof *c);
	assert_int_equal(tcz_svd_truncate(c, m, n, delta, 0, &o, &res), 0);
	assert_int_equal(res.rank, 150);
	assert_int_equal(res.randomized, 1);
	tcz_svd_result_free(&res);
	free(a);

	a = gauss_f32(m * n);
	memcpy(c, a, m * n * sizeof *c);
	delta = 1e-2 * fro(a, m * n);
	o.randomized = 0;
	assert_int_equal(tcz_svd_truncate(c, m, n, delta, 0, &o, &res), 0);
	assert_int_equal(res.randomized, 0);
	assert_true(res.rank > 500);
	tcz_svd_result_free(&res);

	/* With a cap the sketch is cap + oversample: randomized again. */
	memcpy(c, a, m * n * sizeof *c);
	assert_int_equal(tcz_svd_truncate(c, m, n, delta, 16, &o, &res), 0);
	assert_int_equal(res.randomized, 1);
	assert_int_equal(res.rank, 16);
	free(c);
	/* Against the optimum from the dense engine (Eckart-Young): a
	 * randomized rank-16 approximation is at most a little worse. */
	size_t r16;
	double opt;
	assert_int_equal(tcz_tt_svd_estimate(a, m, n, 0.0, 16, &r16, &opt,
					     NULL), 0);
	assert_int_equal(r16, 16);
	opt *= fro(a, m * n);
	assert_true(sqrt(res.tail_sq) >= opt * (1 - 1e-5));
	assert_true(sqrt(res.tail_sq) <= opt * 1.01);
	tcz_svd_result_free(&res);
	free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(exact_tt_recovered),
		cmocka_unit_test(gaussian_error_within_eps),
		cmocka_unit_test(max_rank_honoured),
		cmocka_unit_test(d2_matches_truncated_svd),
		cmocka_unit_test(bad_shapes_rejected),
		cmocka_unit_test(degenerate_modes),
		cmocka_unit_test(from_cores_validates),
		cmocka_unit_test(range_matches_full),
		cmocka_unit_test(range_work_is_local),
		cmocka_unit_test(randomized_low_rank),
		cmocka_unit_test(randomized_grows_and_falls_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
