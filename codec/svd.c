#include "codec/svd.h"

#include <cblas.h>
#include <errno.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Above this min(m, n) sgesdd's workspace (about 4 k^2 floats, indexed by
 * a 32-bit lapack_int) is both too large to allocate sensibly and close to
 * overflowing its index. */
#define DENSE_MAX 16384u

/* Residual rows are formed this many floats at a time. */
#define RESID_BLOCK ((size_t)1 << 20)

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

static int lapack_err(lapack_int info)
{
	if (info == 0)
		return 0;
	if (info == LAPACK_WORK_MEMORY_ERROR ||
	    info == LAPACK_TRANSPOSE_MEMORY_ERROR)
		return -ENOMEM;
	return -EIO;
}

static int dims_ok(size_t m, size_t n)
{
	return m > 0 && n > 0 && m <= INT_MAX && n <= INT_MAX;
}

/* A row-major m x n matrix is the column-major n x m matrix A^T = V S U^T,
 * so a column-major call on the same memory hands back V^T (row-major
 * k x n) as its "U" and U (row-major m x k) as its "VT", without the
 * transposed copies LAPACKE's row-major wrapper would make. */
static int dense_svd(float *a, size_t m, size_t n, float *s, float *u,
		     float *vt)
{
	size_t k = min_sz(m, n);
	lapack_int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', (lapack_int)n,
					 (lapack_int)m, a, (lapack_int)n, s,
					 vt, (lapack_int)n, u, (lapack_int)k);
	return lapack_err(info);
}

static double tail_at(const float *s, size_t k, double base_sq, size_t r)
{
	double t = base_sq;
	for (size_t i = k; i > r; i--)
		t += (double)s[i - 1] * s[i - 1];
	return t;
}

size_t tcz_svd_pick_rank(const float *s, size_t k, double base_sq,
			 double delta_sq, double *tail_sq)
{
	/* From the smallest value up: the tail only grows, and adding small
	 * terms first keeps the double sum accurate. */
	double t = base_sq;
	size_t r = k;

	if (!(t <= delta_sq)) {
		*tail_sq = t;
		return 0;
	}
	while (r > 1) {
		double v = s[r - 1];
		double nt = t + v * v;
		if (nt > delta_sq)
			break;
		t = nt;
		r--;
	}
	*tail_sq = t;
	return r;
}

/* Keeps the first r of k columns of a row-major m x k matrix, in place. */
static float *keep_columns(float *u, size_t m, size_t k, size_t r)
{
	if (r < k) {
		for (size_t i = 1; i < m; i++)
			memmove(u + i * r, u + i * k, r * sizeof *u);
		float *t = realloc(u, m * r * sizeof *u);
		if (t) /* a failed shrink leaves the larger block valid */
			u = t;
	}
	return u;
}

/* Scales the first r rows of a row-major k x n matrix by s and drops the
 * rest, in place. */
static float *scale_rows(float *vt, size_t n, const float *s, size_t r)
{
	for (size_t i = 0; i < r; i++) {
		float si = s[i];
		for (size_t j = 0; j < n; j++)
			vt[i * n + j] *= si;
	}
	float *t = realloc(vt, r * n * sizeof *vt);
	return t ? t : vt;
}

static int trunc_dense(float *a, size_t m, size_t n, double delta_sq,
		       size_t cap, tcz_svd_result *res)
{
	size_t k = min_sz(m, n);
	if (k > DENSE_MAX)
		return -ENOMEM;
	float *s = malloc(k * sizeof *s);
	float *u = malloc(m * k * sizeof *u);
	float *vt = malloc(k * n * sizeof *vt);
	int rc = -ENOMEM;
	if (!s || !u || !vt)
		goto fail;
	rc = dense_svd(a, m, n, s, u, vt);
	if (rc)
		goto fail;

	double tail;
	size_t r = tcz_svd_pick_rank(s, k, 0.0, delta_sq, &tail);
	if (r == 0) /* delta_sq < 0 cannot happen; keep everything */
		r = k;
	if (cap && r > cap) {
		r = cap;
		tail = tail_at(s, k, 0.0, r);
	}
	res->u = keep_columns(u, m, k, r);
	res->sv = scale_rows(vt, n, s, r);
	res->rank = r;
	res->tail_sq = tail;
	res->randomized = 0;
	free(s);
	return 0;
fail:
	free(s);
	free(u);
	free(vt);
	return rc;
}

/* xoshiro256** seeded through splitmix64: a small deterministic generator
 * so sketches are reproducible from the caller's seed. */
typedef struct rng {
	uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static void rng_seed(rng *g, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		g->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *g)
{
	uint64_t *s = g->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

/* Standard normal samples by Box-Muller; u1 is in (0, 1] so log is finite. */
static void gaussian_fill(rng *g, float *x, size_t n)
{
	for (size_t i = 0; i < n; i += 2) {
		double u1 = ((rng_next(g) >> 11) + 1) * 0x1p-53;
		double u2 = (rng_next(g) >> 11) * 0x1p-53;
		double rad = sqrt(-2.0 * log(u1));
		x[i] = (float)(rad * cos(2.0 * M_PI * u2));
		if (i + 1 < n)
			x[i + 1] = (float)(rad * sin(2.0 * M_PI * u2));
	}
}

/* Replaces the column-major rows x l matrix y by an orthonormal basis of
 * its range (Householder QR, explicit Q). rows >= l. */
static int orthonormalise(float *y, size_t rows, size_t l, float *tau)
{
	lapack_int info = LAPACKE_sgeqrf(LAPACK_COL_MAJOR, (lapack_int)rows,
					 (lapack_int)l, y, (lapack_int)rows,
					 tau);
	if (info)
		return lapack_err(info);
	info = LAPACKE_sorgqr(LAPACK_COL_MAJOR, (lapack_int)rows,
			      (lapack_int)l, (lapack_int)l, y,
			      (lapack_int)rows, tau);
	return lapack_err(info);
}

/* One sketch of l columns. The row-major m x n matrix a is used as the
 * column-major n x m matrix At = A^T (ld n), so A x = At^T x.
 * Out: q (column-major m x l, orthonormal), w holds B = Q^T A (row-major
 * l x n, i.e. column-major n x l B^T), *res_sq = ||A - Q B||_F^2 formed
 * explicitly: subtracting ||B||^2 from ||A||^2 would cancel catastrophically
 * exactly when the residual is small, which is the case that matters. */
static int sketch(const float *a, size_t m, size_t n, size_t l,
		  unsigned power_iters, rng *g, float *q, float *w,
		  float *tau, double *res_sq)
{
	int rc;
	const int im = (int)m, in = (int)n, il = (int)l;

	gaussian_fill(g, w, n * l);
	cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, im, il, in, 1.0f,
		    a, in, w, in, 0.0f, q, im);
	if ((rc = orthonormalise(q, m, l, tau)))
		return rc;
	for (unsigned it = 0; it < power_iters; it++) {
		cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, in, il,
			    im, 1.0f, a, in, q, im, 0.0f, w, in);
		if ((rc = orthonormalise(w, n, l, tau)))
			return rc;
		cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, im, il,
			    in, 1.0f, a, in, w, in, 0.0f, q, im);
		if ((rc = orthonormalise(q, m, l, tau)))
			return rc;
	}
	cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, in, il, im,
		    1.0f, a, in, q, im, 0.0f, w, in);

	size_t rows = RESID_BLOCK / n;
	if (rows == 0)
		rows = 1;
	if (rows > m)
		rows = m;
	float *blk = malloc(rows * n * sizeof *blk);
	if (!blk)
		return -ENOMEM;
	double acc = 0.0;
	for (size_t i0 = 0; i0 < m; i0 += rows) {
		size_t nr = min_sz(rows, m - i0);
		memcpy(blk, a + i0 * n, nr * n * sizeof *blk);
		/* Q's rows i0.. as a row-major l x m view, transposed. */
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nr,
			    in, il, -1.0f, q + i0, im, w, in, 1.0f, blk, in);
		double part = 0.0;
		for (size_t j = 0; j < nr * n; j++)
			part += (double)blk[j] * blk[j];
		acc += part;
	}
	free(blk);
	*res_sq = acc;
	return 0;
}

/* Rank needed when the sketch of l values s missed the tolerance by
 * `missing` (squared). Assumes the spectrum beyond the sketch continues the
 * power law s_i ~ i^-alpha fitted between the quarter point and the last
 * well-estimated value (index l - p); alpha = 0 (flat) gives the hard lower
 * bound l + missing / s_l^2. Returns at most kmin. */
static size_t predict_rank(const float *s, size_t l, size_t p, size_t kmin,
			   double missing)
{
	size_t b = l > p ? l - p : l; /* 1-based fit points a < b */
	size_t a = l / 4 ? l / 4 : 1;
	double sb = s[b - 1], alpha = 0.0;
	if (sb <= 0.0)
		return kmin;
	if (b > a && s[a - 1] > sb) {
		alpha = log(s[a - 1] / sb) / log((double)b / (double)a);
		if (alpha > 4.0)
			alpha = 4.0;
	}
	double acc = 0.0;
	size_t i = l;
	while (acc < missing && i < kmin) {
		i++;
		double v = sb * pow((double)i / (double)b, -alpha);
		acc += v * v;
	}
	return i;
}

/* Returns 0 with res filled, 1 when auto mode gives up (a untouched, the
 * caller runs sgesdd), or a negative errno. */
static int trunc_random(const float *a, size_t m, size_t n, double delta_sq,
			size_t cap, const tcz_svd_opts *o, tcz_svd_result *res)
{
	const size_t kmin = min_sz(m, n);
	const int forced = o->randomized > 0;
	const size_t p = o->oversample;
	const size_t limit = forced ? kmin : kmin / 4;
	size_t k = kmin / 16 > 32 ? kmin / 16 : 32;
	rng g;

	if (cap && cap < k)
		k = cap;
	rng_seed(&g, o->seed);
	for (;;) {
		size_t l = k + p < kmin ? k + p : kmin;
		if (!forced && l > limit)
			return 1;

		float *q = malloc(m * l * sizeof *q);
		float *w = malloc(n * l * sizeof *w);
		float *tau = malloc(l * sizeof *tau);
		float *s = malloc(l * sizeof *s);
		float *ub = malloc(l * l * sizeof *ub);
		float *vt = malloc(l * n * sizeof *vt);
		double res_sq = 0.0;
		int rc = -ENOMEM;
		if (!q || !w || !tau || !s || !ub || !vt)
			goto out;
		rc = sketch(a, m, n, l, o->power_iters, &g, q, w, tau, &res_sq);
		if (rc)
			goto out;
		rc = dense_svd(w, l, n, s, ub, vt);
		if (rc)
			goto out;

		double tail;
		size_t need = tcz_svd_pick_rank(s, l, res_sq, delta_sq, &tail);
		size_t r = 0;
		if (l == kmin) {
			/* The sketch spans the whole range: what is left is
			 * float noise, which eps = 0 cannot absorb. */
			r = need ? need : l;
			if (cap && r > cap)
				r = cap;
		} else if (cap && (need == 0 || need > cap)) {
			if (cap + p <= l)
				r = cap;
		} else if (need + p <= l) {
			/* Enough oversampling left that the estimate of
			 * the last kept directions is trustworthy. */
			r = need;
		}
		if (r) {
			tail = tail_at(s, l, res_sq, r);
			res->u = malloc(m * r * sizeof *res->u);
			if (!res->u) {
				rc = -ENOMEM;
				goto out;
			}
			/* U = Q Ub[:, :r]; Q column-major is a row-major
			 * l x m matrix, used transposed. */
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans,
				    (int)m, (int)r, (int)l, 1.0f, q, (int)m,
				    ub, (int)l, 0.0f, res->u, (int)r);
			res->sv = scale_rows(vt, n, s, r);
			vt = NULL;
			res->rank = r;
			res->tail_sq = tail;
			res->randomized = 1;
			rc = 0;
			goto out;
		}

		/* Grow to the predicted need plus an eighth. */
		size_t next;
		if (need) {
			next = need + need / 8;
		} else {
			next = predict_rank(s, l, p, kmin, res_sq - delta_sq);
			next += next / 8;
		}
		if (next < k + k / 2)
			next = k + k / 2;
		if (next > kmin)
			next = kmin;
		if (cap && next > cap)
			next = cap;
		if (next <= k)
			next = k + 1;
		k = next;
		rc = 2; /* retry */
out:
		free(q);
		free(w);
		free(tau);
		free(s);
		free(ub);
		free(vt);
		if (rc != 2)
			return rc;
	}
}

int tcz_svd_truncate(float *a, size_t m, size_t n, double delta, size_t cap,
		     const tcz_svd_opts *o, tcz_svd_result *res)
{
	static const tcz_svd_opts dflt = {0, 10, 2, 0};
	if (!o)
		o = &dflt;
	*res = (tcz_svd_result){0};
	if (!dims_ok(m, n))
		return -EINVAL;

	double delta_sq = delta * delta;
	size_t kmin = min_sz(m, n);
	int try_rand = o->randomized > 0 ||
		       (o->randomized == 0 && kmin > TCZ_SVD_RAND_MIN);
	if (try_rand) {
		int rc = trunc_random(a, m, n, delta_sq, cap, o, res);
		if (rc <= 0)
			return rc;
	}
	return trunc_dense(a, m, n, delta_sq, cap, res);
}

void tcz_svd_result_free(tcz_svd_result *res)
{
	if (!res)
		return;
	free(res->u);
	free(res->sv);
	*res = (tcz_svd_result){0};
}

int tcz_svd_values(float *a, size_t m, size_t n, float *s)
{
	if (!dims_ok(m, n))
		return -EINVAL;
	lapack_int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)n,
					 (lapack_int)m, a, (lapack_int)n, s,
					 NULL, 1, NULL, 1);
	return lapack_err(info);
}
