/* Groupwise quantization against its closed-form rules: the stored scale
 * is f16(max|v|/qmax) (or f32 when f16 cannot hold it), every decoded
 * value is an integer multiple q*s with |q| <= qmax and |v - v'| <= s/2
 * (plus float slack), the blob size follows docs/formats.md, a blob
 * written by hand decodes, malformed blobs are refused, and real weights
 * meet the error figures; the same for version 2 (sub-blocks under
 * super-scales, docs/formats.md), against a decoder written from the
 * document, and version-1 payloads still decode. */
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/half.h"
#include "codec/metrics.h"
#include "codec/quant.h"
#include "testutil_models.h"

#define HDR 20u

static uint64_t rng = 12345;

static uint64_t next(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static double uniform(void) /* [0, 1) */
{
	return (double)(next() >> 11) * 0x1p-53;
}

static double gauss(void)
{
	double u = uniform() + 0x1p-60, v = uniform();
	return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static size_t ceil_div(size_t a, size_t b)
{
	return a / b + (a % b != 0);
}

/* docs/formats.md: header 20 + S scales of w bytes + codes */
static size_t want_size(size_t n, unsigned bits, uint32_t g, size_t w)
{
	return HDR + w * ceil_div(n, g) + ceil_div(n * bits, 8);
}

static float scale_in_blob(const unsigned char *b, size_t g)
{
	if (b[6] & 1) {
		float s;
		memcpy(&s, b + HDR + 4 * g, 4);
		return s;
	}
	return tcz_f16_to_f32((uint16_t)(b[HDR + 2 * g] |
					 (b[HDR + 2 * g + 1] << 8)));
}

/* Encodes, decodes and checks every element against the closed-form
 * rules. Returns the blob's f32 flag. */
static int check_roundtrip(const float *v, size_t n, unsigned bits,
			   uint32_t glen)
{
	tcz_quant_params p = {bits, glen, TCZ_QUANT_V1};
	size_t cap = tcz_quant_bound(n, &p), len = 0;
	assert_int_equal(cap, want_size(n, bits, glen, 4));
	assert_int_equal(tcz_quant_size(n, &p), want_size(n, bits, glen, 2));
	unsigned char *blob = malloc(cap);
	assert_non_null(blob);
	assert_int_equal(tcz_quant_encode(v, n, &p, blob, cap, &len), 0);
	int f32 = blob[6] & 1;
	assert_int_equal(len, want_size(n, bits, glen, f32 ? 4 : 2));

	/* decode from a buffer of exactly len bytes */
	unsigned char *exact = malloc(len);
	float *out = malloc((n ? n : 1) * sizeof(float));
	assert_true(exact && out);
	memcpy(exact, blob, len);
	tcz_quant_params q;
	size_t qn;
	assert_int_equal(tcz_quant_peek(exact, len, &q, &qn), 0);
	assert_int_equal(q.bits, bits);
	assert_int_equal(q.group_len, glen);
	assert_int_equal(qn, n);
	assert_int_equal(tcz_quant_decode(exact, len, out, n), 0);

	const double qmax = (double)((1u << (bits - 1)) - 1);
	for (size_t g = 0; g * glen < n; g++) {
		size_t a = g * glen, e = a + glen < n ? a + glen : n;
		float m = 0;
		for (size_t i = a; i < e; i++)
			m = fabsf(v[i]) > m ? fabsf(v[i]) : m;
		float s = scale_in_blob(exact, g);
		/* the scale rule, with f32's own rounding of max/qmax */
		float s32 = m / (float)qmax;
		if (f32)
			assert_true(s == s32 || (s32 == 0 && m > 0));
		else
			assert_true(s == tcz_f16_to_f32(tcz_f32_to_f16(s32)));
		for (size_t i = a; i < e; i++) {
			if (s == 0) {
				assert_true(out[i] == 0);
				continue;
			}
			double qv = (double)out[i] / s;
			if (fabs(qv - nearbyint(qv)) > 1e-4 ||
			    fabs(nearbyint(qv)) > qmax)
				fail_msg("v'[%zu] = %g is not q*%g", i,
					 (double)out[i], (double)s);
			double err = fabs((double)v[i] - out[i]);
			if (err > s * (0.5 + 0x1p-14))
				fail_msg("bits %u G %u: |v - v'| = %g > s/2 = %g at %zu",
					 bits, glen, err, s / 2.0, i);
		}
	}
	free(out);
	free(exact);
	free(blob);
	return f32;
}

static void error_bound_random(void **state)
{
	(void)state;
	static const uint32_t groups[] = {1, 7, 64, 100, 1000};
	static const size_t ns[] = {0, 1, 63, 64, 65, 1000, 4099};
	float *v = malloc(4099 * sizeof(float));
	assert_non_null(v);
	for (unsigned bits = 3; bits <= 8; bits++)
		for (size_t gi = 0; gi < 5; gi++)
			for (size_t ni = 0; ni < 7; ni++) {
				size_t n = ns[ni];
				for (size_t i = 0; i < n; i++) {
					double x = gauss() * 0.05;
					if (next() % 97 == 0) /* outliers */
						x *= 40;
					v[i] = (float)x;
				}
				/* tiny groups may need f32 scales: either
				 * way the rules are checked */
				check_roundtrip(v, n, bits, groups[gi]);
			}
	free(v);
}

/* Exact multiples of the scale come back exactly; midpoints stay within
 * half a step; the maximum maps to +-qmax. */
static void exact_and_extremes(void **state)
{
	(void)state;
	float v[64];
	for (unsigned bits = 3; bits <= 8; bits++) {
		int qmax = (1 << (bits - 1)) - 1;
		for (int i = 0; i < 64; i++)
			v[i] = (float)((i * 7) % (2 * qmax + 1) - qmax) * 0.125f;
		v[5] = (float)qmax * 0.125f;
		check_roundtrip(v, 64, bits, 64);
		tcz_quant_params p = {bits, 64, TCZ_QUANT_V1};
		unsigned char blob[20 + 2 + 64];
		size_t len;
		float out[64];
		assert_int_equal(tcz_quant_encode(v, 64, &p, blob, sizeof(blob),
						  &len), 0);
		assert_int_equal(tcz_quant_decode(blob, len, out, 64), 0);
		assert_memory_equal(out, v, sizeof(v));
	}
}

static void zero_groups(void **state)
{
	(void)state;
	float v[200];
	for (int i = 0; i < 200; i++)
		v[i] = (i >= 64 && i < 128) ? 0.0f : (float)sin(i) * 3;
	v[150] = -0.0f;
	check_roundtrip(v, 200, 4, 64);
	tcz_quant_params p = {4, 64, TCZ_QUANT_V1};
	unsigned char blob[20 + 8 + 100];
	size_t len;
	float out[200];
	assert_int_equal(tcz_quant_encode(v, 200, &p, blob, sizeof(blob), &len), 0);
	assert_int_equal(blob[HDR + 2] | blob[HDR + 3], 0); /* scale of group 1 */
	assert_int_equal(tcz_quant_decode(blob, len, out, 200), 0);
	for (int i = 64; i < 128; i++)
		assert_true(out[i] == 0);
	/* all zeros */
	memset(v, 0, sizeof(v));
	check_roundtrip(v, 200, 8, 64);
}

/* f16 cannot hold the scale: too large, too small, or a coarse subnormal.
 * An exactly representable subnormal scale stays f16. */
static void f32_fallback(void **state)
{
	(void)state;
	float v[130];
	for (int i = 0; i < 130; i++)
		v[i] = (float)cos(i * 0.37) * 0.5f;
	assert_int_equal(check_roundtrip(v, 130, 8, 64), 0);

	v[70] = 1e6f * 65504.0f; /* scale ~5.2e8 > 65504 */
	assert_int_equal(check_roundtrip(v, 130, 8, 64), 1);
	for (unsigned bits = 3; bits <= 8; bits++)
		assert_int_equal(check_roundtrip(v, 130, bits, 7), 1);

	for (int i = 0; i < 130; i++)
		v[i] = (float)cos(i * 0.37) * 0.5f;
	for (int i = 64; i < 128; i++) /* scale ~8e-12 flushes to 0 in f16 */
		v[i] = (float)(1e-9 * sin(i));
	v[100] = 1e-9f;
	assert_int_equal(check_roundtrip(v, 130, 8, 64), 1);
	assert_int_equal(check_roundtrip(v, 130, 3, 64), 1);

	/* scale 2^-20 = 16 * 2^-24 is an exact f16 subnormal */
	for (int i = 0; i < 64; i++)
		v[i] = (float)((i % 255) - 127) * 0x1p-20f;
	v[3] = 127 * 0x1p-20f;
	assert_int_equal(check_roundtrip(v, 64, 8, 64), 0);
	/* 1.1 * 2^-20 as a subnormal f16 (16 units of 2^-24 + ~1.6) errs by
	 * far more than 2^-11 relative */
	v[3] = 127 * 1.1f * 0x1p-20f;
	assert_int_equal(check_roundtrip(v, 64, 8, 64), 1);

	/* the f16-sized buffer is then too small */
	tcz_quant_params p = {8, 64, TCZ_QUANT_V1};
	size_t len;
	unsigned char blob[20 + 2 + 64];
	assert_int_equal(tcz_quant_encode(v, 64, &p, blob, sizeof(blob), &len),
			 -ENOBUFS);
}

static void bad_arguments(void **state)
{
	(void)state;
	float v[10] = {1, 2, 3};
	unsigned char blob[128];
	size_t len;
	tcz_quant_params p = {2, 64, TCZ_QUANT_V1};
	assert_int_equal(tcz_quant_encode(v, 10, &p, blob, 128, &len), -EINVAL);
	assert_int_equal(tcz_quant_bound(10, &p), 0);
	assert_int_equal(tcz_quant_size(10, &p), 0);
	p.bits = 9;
	assert_int_equal(tcz_quant_encode(v, 10, &p, blob, 128, &len), -EINVAL);
	p = (tcz_quant_params){8, 64, 3}; /* no version 3 */
	assert_int_equal(tcz_quant_encode(v, 10, &p, blob, 128, &len), -EINVAL);
	assert_int_equal(tcz_quant_size(10, &p), 0);
	assert_int_equal(tcz_quant_group(&p), 0);
	/* group 0 is version 1's default, 64: one f16 scale */
	p = (tcz_quant_params){8, 0, TCZ_QUANT_V1};
	assert_int_equal(tcz_quant_group(&p), 64);
	assert_int_equal(tcz_quant_size(10, &p), 20 + 2 + 10);
	p = (tcz_quant_params){8, 4, TCZ_QUANT_V1};
	assert_int_equal(tcz_quant_encode(v, 10, &p, blob, 20 + 6 + 9, &len),
			 -ENOBUFS);
	assert_int_equal(tcz_quant_encode(v, 10, &p, blob, 20 + 6 + 10, &len), 0);
	v[7] = NAN;
	assert_int_equal(tcz_quant_encode(v, 10, &p, blob, 128, &len), -EDOM);
	v[7] = -INFINITY;
	assert_int_equal(tcz_quant_encode(v, 10, &p, blob, 128, &len), -EDOM);
	assert_int_equal(tcz_quant_bound(SIZE_MAX, &p), 0);
}

/* A blob written out by hand from docs/formats.md: n = 5, G = 4,
 * 4 bits (qmax 7). Group 0 {7, -3, 0, 1.2}: scale 1 (f16 0x3c00), q {7,
 * -3, 0, 1}, u {14, 4, 7, 8}. Group 1 {-1.75}: scale 0.25 (0x3400), q -7,
 * u 0. Codes LSB first: 0x4e, 0x87, 0x00 (20 bits). */
static const unsigned char golden[27] = {
	0x54, 0x43, 0x5a, 0x51,                         /* "TCZQ" */
	0x01, 0x04, 0x00, 0x00,                         /* v1, 4 bits */
	0x04, 0x00, 0x00, 0x00,                         /* group_len 4 */
	0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* n 5 */
	0x00, 0x3c, 0x00, 0x34,                         /* scales */
	0x4e, 0x87, 0x00,                               /* codes */
};

static void golden_blob(void **state)
{
	(void)state;
	const float v[5] = {7, -3, 0, 1.2f, -1.75f};
	const float want[5] = {7, -3, 0, 1, -1.75f};
	unsigned char blob[64];
	size_t len;
	tcz_quant_params p = {4, 4, TCZ_QUANT_V1};
	assert_int_equal(tcz_quant_encode(v, 5, &p, blob, sizeof(blob), &len), 0);
	assert_int_equal(len, sizeof(golden));
	assert_memory_equal(blob, golden, sizeof(golden));
	float out[5];
	assert_int_equal(tcz_quant_decode(golden, sizeof(golden), out, 5), 0);
	assert_memory_equal(out, want, sizeof(want));
	assert_int_equal(tcz_quant_decode(golden, sizeof(golden), out, 4), -EINVAL);
}

static int decode_copy(const unsigned char *b, size_t len)
{
	unsigned char *c = malloc(len ? len : 1);
	float out[64];
	assert_non_null(c);
	memcpy(c, b, len);
	int r = tcz_quant_decode(c, len, out, 5);
	tcz_quant_params p;
	size_t n;
	int rp = tcz_quant_peek(c, len, &p, &n);
	assert_int_equal(r < 0 ? r : 0, rp < 0 ? rp : 0);
	free(c);
	return r;
}

static void malformed(void **state)
{
	(void)state;
	unsigned char b[64];
	assert_int_equal(decode_copy(golden, sizeof(golden)), 0);
	for (size_t len = 0; len < sizeof(golden); len++)
		assert_int_equal(decode_copy(golden, len), -EBADMSG);
	memcpy(b, golden, sizeof(golden));
	b[27] = 0;
	assert_int_equal(decode_copy(b, 28), -EBADMSG); /* trailing byte */

	static const struct {
		size_t off;
		unsigned char val;
	} bad[] = {
		{0, 0x55},  /* magic */
		{3, 0x52},  /* magic */
		{4, 0x02},  /* version */
		{4, 0x00},  /* version */
		{5, 2},     /* bits below 3 */
		{5, 9},     /* bits above 8 */
		{5, 3},     /* 3 bits: codes would be 2 bytes */
		{6, 0x02},  /* unknown flag */
		{6, 0x01},  /* f32 scales: lengths disagree */
		{7, 1},     /* reserved */
		{8, 0},     /* group_len 0 */
		{8, 5},     /* group_len 5: one scale, not two */
		{12, 4},    /* n 4 */
		{12, 7},    /* n 7: codes would be 4 bytes */
		{19, 0x80}, /* n 2^63 + 5 */
		{21, 0xfc}, /* scale 0x3c00 -> 0xfc00 = -inf */
		{23, 0xb4}, /* scale -0.25 */
		{21, 0x7e}, /* NaN scale */
		{26, 0x10}, /* nonzero padding bit after the 20 code bits */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		memcpy(b, golden, sizeof(golden));
		b[bad[i].off] = bad[i].val;
		if (decode_copy(b, sizeof(golden)) != -EBADMSG)
			fail_msg("byte %zu = %#x accepted", bad[i].off, bad[i].val);
	}
	/* group_len 0xffffffff and n 2^64-1: sizes must not wrap */
	memcpy(b, golden, sizeof(golden));
	memset(b + 8, 0xff, 12);
	assert_int_equal(decode_copy(b, sizeof(golden)), -EBADMSG);
	assert_int_equal(tcz_quant_peek(NULL, 0, NULL, NULL), -EBADMSG);
}

/* ---- version 1, an old payload ------------------------------------------ */

/* A second version-1 blob derived by hand from docs/formats.md, with f32
 * scales: n = 3, G = 2, 3 bits (qmax 3), flag bit 0. Group 0 {3*2^20,
 * -2^20}: max/qmax = 2^20 overflows f16, so the blob keeps f32 scales
 * (0x49800000); q {3, -1}, u {6, 2}. Group 1 {1.5}: scale 0.5 (0x3f000000),
 * q 3, u 6. Codes LSB first, 9 bits: 0x96, 0x01. */
static const unsigned char golden_v1_f32[30] = {
	0x54, 0x43, 0x5a, 0x51, 0x01, 0x03, 0x01, 0x00,
	0x02, 0x00, 0x00, 0x00,
	0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x80, 0x49, 0x00, 0x00, 0x00, 0x3f,
	0x96, 0x01,
};

/* Stores written before version 2 hold version-1 payloads: they decode to
 * the documented values, whole and from a group, and peek says version 1.
 * The version-1 encoder, still available, writes them byte for byte. */
static void v1_still_decodes(void **state)
{
	(void)state;
	const float want[3] = {3 * 1048576.0f, -1048576.0f, 1.5f};
	float out[3];
	tcz_quant_params q;
	size_t n;
	assert_int_equal(tcz_quant_peek(golden_v1_f32, sizeof golden_v1_f32, &q,
					&n), 0);
	assert_int_equal(q.version, TCZ_QUANT_V1);
	assert_int_equal(q.bits, 3);
	assert_int_equal(q.group_len, 2);
	assert_int_equal(n, 3);
	assert_int_equal(tcz_quant_decode(golden_v1_f32, sizeof golden_v1_f32,
					  out, 3), 0);
	assert_memory_equal(out, want, sizeof want);
	assert_int_equal(tcz_quant_decode_range(golden_v1_f32,
						sizeof golden_v1_f32, 2, 1, out),
			 0);
	assert_true(out[0] == 1.5f);
	assert_int_equal(tcz_quant_peek(golden, sizeof golden, &q, &n), 0);
	assert_int_equal(q.version, TCZ_QUANT_V1);

	unsigned char blob[64];
	size_t len;
	tcz_quant_params p = {3, 2, TCZ_QUANT_V1};
	assert_int_equal(tcz_quant_encode(want, 3, &p, blob, sizeof blob, &len), 0);
	assert_int_equal(len, sizeof golden_v1_f32);
	assert_memory_equal(blob, golden_v1_f32, len);
}

/* ---- version 2 ------------------------------------------------------------ */

#define HDR2 24u

/* docs/formats.md, version 2, example 1: the encoder's output for values
 * that sit on their grids. */
static const unsigned char golden_v2[31] = {
	0x54, 0x43, 0x5a, 0x51, 0x02, 0x04, 0x00, 0x06, /* v2, 4 bits, F 6 */
	0x04, 0x00, 0x00, 0x00,                         /* G 4 */
	0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* n 6 */
	0x00, 0x01, 0x00, 0x00,                         /* K 256 */
	0x80, 0x3c,                                     /* d = 1/64 */
	0x9f, 0x0a,                                     /* codes 31, 42 */
	0xb0, 0xf8, 0xb0,                               /* u 0 11 8 15 0 11 */
};
static const float golden_v2_values[6] = {-3.875f, 1.453125f, 0, 3.390625f,
					  1.25f, -0.46875f};

/* Example 2, written by hand: K = 1 (two super-blocks), F = 7, a negative
 * step, a short last sub-block, padding bits in both streams. */
static const unsigned char golden_v2b[32] = {
	0x54, 0x43, 0x5a, 0x51, 0x02, 0x03, 0x00, 0x07, /* v2, 3 bits, F 7 */
	0x02, 0x00, 0x00, 0x00,                         /* G 2 */
	0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* n 3 */
	0x01, 0x00, 0x00, 0x00,                         /* K 1 */
	0x00, 0x3f, 0x00, 0x40,                         /* d 0.5, 2 */
	0x83, 0x22,                                     /* codes 3, 64+5 */
	0x78, 0x00,                                     /* u 0 7 1 */
};
static const float golden_v2b_values[3] = {-6, 4.5f, 30};

static void golden_v2_blobs(void **state)
{
	(void)state;
	float out[6];
	tcz_quant_params q;
	size_t n;
	assert_int_equal(tcz_quant_peek(golden_v2, sizeof golden_v2, &q, &n), 0);
	assert_int_equal(q.version, TCZ_QUANT_V2);
	assert_int_equal(q.bits, 4);
	assert_int_equal(q.group_len, 4);
	assert_int_equal(n, 6);
	assert_int_equal(tcz_quant_decode(golden_v2, sizeof golden_v2, out, 6), 0);
	assert_memory_equal(out, golden_v2_values, sizeof golden_v2_values);
	assert_int_equal(tcz_quant_decode(golden_v2, sizeof golden_v2, out, 5),
			 -EINVAL);
	assert_int_equal(tcz_quant_decode_range(golden_v2, sizeof golden_v2, 4,
						2, out), 0);
	assert_memory_equal(out, golden_v2_values + 4, 2 * sizeof(float));
	assert_int_equal(tcz_quant_decode_range(golden_v2, sizeof golden_v2, 2,
						2, out), -EINVAL);

	/* the encoder writes example 1 byte for byte */
	unsigned char blob[64];
	size_t len;
	tcz_quant_params p = {4, 4, TCZ_QUANT_V2};
	assert_int_equal(tcz_quant_size(6, &p), sizeof golden_v2);
	assert_int_equal(tcz_quant_encode(golden_v2_values, 6, &p, blob,
					  sizeof blob, &len), 0);
	assert_int_equal(len, sizeof golden_v2);
	assert_memory_equal(blob, golden_v2, len);
	p.version = 0; /* the default is version 2 */
	assert_int_equal(tcz_quant_encode(golden_v2_values, 6, &p, blob,
					  sizeof blob, &len), 0);
	assert_memory_equal(blob, golden_v2, len);

	assert_int_equal(tcz_quant_decode(golden_v2b, sizeof golden_v2b, out, 3),
			 0);
	assert_memory_equal(out, golden_v2b_values, sizeof golden_v2b_values);
	assert_int_equal(tcz_quant_decode_range(golden_v2b, sizeof golden_v2b, 2,
						1, out), 0);
	assert_true(out[0] == 30);
}

static int decode2_copy(const unsigned char *b, size_t len, size_t n)
{
	unsigned char *c = malloc(len ? len : 1);
	float out[64];
	assert_non_null(c);
	memcpy(c, b, len);
	int r = tcz_quant_decode(c, len, out, n);
	int rp = tcz_quant_peek(c, len, NULL, NULL);
	assert_int_equal(r < 0 && r != -EINVAL ? r : 0, rp < 0 ? rp : 0);
	free(c);
	return r;
}

static void malformed_v2(void **state)
{
	(void)state;
	unsigned char b[64];
	assert_int_equal(decode2_copy(golden_v2, sizeof golden_v2, 6), 0);
	for (size_t len = 0; len < sizeof golden_v2; len++)
		assert_int_equal(decode2_copy(golden_v2, len, 6), -EBADMSG);
	memcpy(b, golden_v2, sizeof golden_v2);
	b[sizeof golden_v2] = 0;
	assert_int_equal(decode2_copy(b, sizeof golden_v2 + 1, 6), -EBADMSG);

	static const struct {
		size_t off;
		unsigned char val;
	} bad[] = {
		{4, 0x03},  /* version 3 */
		{6, 0x01},  /* flags */
		{7, 1},     /* F below 2 */
		{7, 9},     /* F above 8 */
		{7, 5},     /* F 5: 10 bits, still 2 bytes, but 0x0a's bit 3 is
			     * now padding */
		{7, 16},    /* F 16 */
		{8, 0},     /* G 0 */
		{8, 2},     /* G 2: three sub-blocks */
		{12, 7},    /* n 7 */
		{19, 0x80}, /* n 2^63 + 6 */
		{21, 0},    /* K 0 */
		{25, 0xbc}, /* super-scale -1/64 */
		{25, 0x7f}, /* super-scale NaN (0x7f80 is infinity) */
		{25, 0x7b}, /* super-scale 2^119, 0x7b80: the first refused for
			     * B 4, F 6 */
		{27, 0x1a}, /* a padding bit after the 12 step-code bits */
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		memcpy(b, golden_v2, sizeof golden_v2);
		b[bad[i].off] = bad[i].val;
		if (decode2_copy(b, sizeof golden_v2, 6) != -EBADMSG)
			fail_msg("byte %zu = %#x accepted", bad[i].off, bad[i].val);
	}
	/* 0x7b7f, just below the limit, is a valid super-scale */
	memcpy(b, golden_v2, sizeof golden_v2);
	b[24] = 0x7f;
	b[25] = 0x7b;
	assert_int_equal(decode2_copy(b, sizeof golden_v2, 6), 0);
	float out[6];
	assert_int_equal(tcz_quant_decode(b, sizeof golden_v2, out, 6), 0);
	for (int i = 0; i < 6; i++)
		assert_true(isfinite(out[i]));
	/* F 5 keeps the size (10 bits, 2 bytes): valid, other steps */
	memcpy(b, golden_v2, sizeof golden_v2);
	b[7] = 5;
	b[27] = 0;
	assert_int_equal(decode2_copy(b, sizeof golden_v2, 6), 0);
	/* a padding bit in the codes of example 2 (9 of 16 bits used) */
	memcpy(b, golden_v2b, sizeof golden_v2b);
	b[31] = 0x02;
	assert_int_equal(decode2_copy(b, sizeof golden_v2b, 3), -EBADMSG);
	memcpy(b, golden_v2b, sizeof golden_v2b);
	b[29] = 0x62; /* a padding bit after the 14 step-code bits */
	assert_int_equal(decode2_copy(b, sizeof golden_v2b, 3), -EBADMSG);
	memcpy(b, golden_v2b, sizeof golden_v2b);
	b[27] = 0xff; /* second super-scale negative NaN */
	assert_int_equal(decode2_copy(b, sizeof golden_v2b, 3), -EBADMSG);
	/* G, n, K huge: sizes must not wrap */
	memcpy(b, golden_v2, sizeof golden_v2);
	memset(b + 8, 0xff, 16);
	assert_int_equal(decode2_copy(b, sizeof golden_v2, 6), -EBADMSG);
	memcpy(b, golden_v2, sizeof golden_v2);
	memset(b + 12, 0xff, 8);
	b[8] = 1;
	assert_int_equal(decode2_copy(b, sizeof golden_v2, 6), -EBADMSG);
}

/* A decoder written from docs/formats.md alone, value by value, to pin the
 * codec's output to the document bit for bit. */
static void doc_decode_v2(const unsigned char *b, size_t len, float *out)
{
	uint32_t glen, k;
	uint64_t n;
	memcpy(&glen, b + 8, 4);
	memcpy(&n, b + 12, 8);
	memcpy(&k, b + 20, 4);
	unsigned bits = b[5], f = b[7];
	size_t subs = ceil_div(n, glen), supers = ceil_div(subs, k);
	const unsigned char *sup = b + HDR2, *sub = sup + 2 * supers;
	const unsigned char *codes = sub + ceil_div(subs * f, 8);
	assert_int_equal(len, HDR2 + 2 * supers + ceil_div(subs * f, 8) +
				      ceil_div(n * bits, 8));
	for (size_t i = 0; i < n; i++) {
		size_t j = i / glen, g = j / k;
		unsigned c = 0, u = 0;
		for (unsigned t = 0; t < f; t++) /* one bit at a time */
			c |= (unsigned)((sub[(j * f + t) / 8] >> ((j * f + t) % 8)) & 1)
			     << t;
		for (unsigned t = 0; t < bits; t++)
			u |= (unsigned)((codes[(i * bits + t) / 8] >>
					 ((i * bits + t) % 8)) & 1) << t;
		float d = tcz_bf16_to_f32((uint16_t)(sup[2 * g] | sup[2 * g + 1] << 8));
		float s = d * (float)(c & ((1u << (f - 1)) - 1));
		if (c >> (f - 1))
			s = -s;
		out[i] = ((float)u - (float)(1u << (bits - 1))) * s;
	}
}

/* Encodes v2, checks the documented size, that decode agrees bit for bit
 * with the document's decoder and with decode_range from every sub-block,
 * and that only extremes move further than half a step. Returns the
 * relative Frobenius error. */
static double check_v2(const float *v, size_t n, unsigned bits, uint32_t glen)
{
	tcz_quant_params p = {bits, glen, TCZ_QUANT_V2};
	uint32_t g = tcz_quant_group(&p);
	assert_int_equal(g, glen ? glen : (bits == 8 ? 32u : 16u));
	size_t k = g >= 1024 ? 1 : 1024 / g, f = bits <= 4 ? 6 : 7;
	size_t subs = ceil_div(n, g);
	size_t want = HDR2 + 2 * ceil_div(subs, k) + ceil_div(subs * f, 8) +
		      ceil_div(n * bits, 8);
	assert_int_equal(tcz_quant_size(n, &p), want);
	assert_int_equal(tcz_quant_bound(n, &p), want);
	unsigned char *blob = malloc(want);
	float *out = malloc((n ? n : 1) * sizeof(float));
	float *ref = malloc((n ? n : 1) * sizeof(float));
	float *part = malloc((n ? n : 1) * sizeof(float));
	assert_true(blob && out && ref && part);
	size_t len;
	assert_int_equal(tcz_quant_encode(v, n, &p, blob, want - 1, &len),
			 want ? -ENOBUFS : 0);
	assert_int_equal(tcz_quant_encode(v, n, &p, blob, want, &len), 0);
	assert_int_equal(len, want);
	assert_int_equal(blob[4], 2);
	assert_int_equal(blob[7], f);
	tcz_quant_params q;
	size_t qn;
	assert_int_equal(tcz_quant_peek(blob, len, &q, &qn), 0);
	assert_int_equal(q.bits, bits);
	assert_int_equal(q.group_len, g);
	assert_int_equal(q.version, TCZ_QUANT_V2);
	assert_int_equal(qn, n);
	assert_int_equal(tcz_quant_decode(blob, len, out, n), 0);
	doc_decode_v2(blob, len, ref);
	if (n)
		assert_memory_equal(out, ref, n * sizeof(float));
	for (size_t first = 0; first < n; first += g * (subs > 40 ? 7 : 1)) {
		size_t cnt = n - first;
		assert_int_equal(tcz_quant_decode_range(blob, len, first, cnt,
							part), 0);
		assert_memory_equal(part, out + first, cnt * sizeof(float));
	}
	/* per sub-block: the step s from the decoded values' grid; a value
	 * inside the grid's span is within s/2 of its code, one outside it
	 * decodes to the nearest end */
	const double h = (double)(1u << (bits - 1));
	double e2 = 0, x2 = 0;
	for (size_t j = 0; j < subs; j++) {
		size_t a = j * g, e = a + g < n ? a + g : n;
		uint32_t k2 = (uint32_t)k;
		(void)k2;
		unsigned fb = (unsigned)f;
		const unsigned char *sub = blob + HDR2 + 2 * ceil_div(subs, k);
		unsigned c = 0;
		for (unsigned t = 0; t < fb; t++)
			c |= (unsigned)((sub[(j * fb + t) / 8] >> ((j * fb + t) % 8)) &
					1) << t;
		size_t sg = j / k;
		float d = tcz_bf16_to_f32((uint16_t)(blob[HDR2 + 2 * sg] |
						     blob[HDR2 + 2 * sg + 1] << 8));
		double s = (double)d * (double)(c & ((1u << (fb - 1)) - 1));
		if (c >> (fb - 1))
			s = -s;
		double lo = s >= 0 ? -h * s : (h - 1) * s;
		double hi = s >= 0 ? (h - 1) * s : -h * s;
		for (size_t i = a; i < e; i++) {
			double x = v[i], y = out[i];
			e2 += (x - y) * (x - y);
			x2 += x * x;
			if (s == 0) {
				assert_true(y == 0);
				continue;
			}
			if (x < lo)
				assert_true(y == lo);
			else if (x > hi)
				assert_true(y == hi);
			else if (fabs(x - y) > fabs(s) * (0.5 + 0x1p-14))
				fail_msg("bits %u G %u: |v - v'| = %g > |s|/2 = %g at %zu",
					 bits, g, fabs(x - y), fabs(s) / 2, i);
		}
	}
	free(blob);
	free(out);
	free(ref);
	free(part);
	return x2 > 0 ? sqrt(e2 / x2) : 0;
}

static void v2_random(void **state)
{
	(void)state;
	static const uint32_t groups[] = {0, 1, 7, 16, 32, 100, 1000, 2048};
	static const size_t ns[] = {0, 1, 15, 16, 17, 1023, 1024, 1025, 5000};
	float *v = malloc(5000 * sizeof(float));
	assert_non_null(v);
	for (unsigned bits = 3; bits <= 8; bits++)
		for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++)
			for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
				size_t n = ns[ni];
				for (size_t i = 0; i < n; i++) {
					double x = gauss() * 0.05;
					if (next() % 97 == 0) /* outliers */
						x *= 40;
					if (next() % 13 == 0) /* exact zeros */
						x = 0;
					v[i] = (float)x;
				}
				check_v2(v, n, bits, groups[gi]);
			}
	free(v);
}

/* Version 2 against version 1 at the same width on Gaussian weights with
 * outliers: lower error at every width (the point of it). */
static void v2_beats_v1(void **state)
{
	(void)state;
	const size_t n = 1 << 16;
	float *v = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
	unsigned char *blob = malloc(2 * n + 4096);
	assert_true(v && out && blob);
	for (size_t i = 0; i < n; i++)
		v[i] = (float)(gauss() * 0.02 * (next() % 1000 == 0 ? 8 : 1));
	for (unsigned bits = 3; bits <= 8; bits++) {
		double e2 = check_v2(v, n, bits, 0);
		tcz_quant_params p = {bits, 0, TCZ_QUANT_V1};
		size_t len;
		assert_int_equal(tcz_quant_encode(v, n, &p, blob, 2 * n + 4096,
						  &len), 0);
		assert_int_equal(tcz_quant_decode(blob, len, out, n), 0);
		tcz_error e1;
		assert_int_equal(tcz_error_f32(v, out, n, &e1), 0);
		print_message("  %u bits: version 1 %.3f %%, version 2 %.3f %%\n",
			      bits, 100 * e1.rel_fro, 100 * e2);
		assert_true(e2 < e1.rel_fro);
	}
	free(v);
	free(out);
	free(blob);
}

/* Zero sub-blocks, a zero super-block, one value among zeros, values near
 * the f32 limits: all decode finite, zeros exactly. */
static void v2_edges(void **state)
{
	(void)state;
	float v[3000];
	memset(v, 0, sizeof v);
	for (unsigned bits = 3; bits <= 8; bits++) {
		check_v2(v, 3000, bits, 0); /* all zeros: super-scales 0 */
		unsigned char blob[4096];
		size_t len;
		float out[3000];
		tcz_quant_params p = {bits, 0, TCZ_QUANT_V2};
		assert_int_equal(tcz_quant_encode(v, 3000, &p, blob, sizeof blob,
						  &len), 0);
		assert_int_equal(blob[HDR2] | blob[HDR2 + 1], 0);
		assert_int_equal(tcz_quant_decode(blob, len, out, 3000), 0);
		for (int i = 0; i < 3000; i++)
			assert_true(out[i] == 0 && !signbit(out[i]));
	}
	/* zeros next to values: the zero sub-blocks decode to 0 */
	for (int i = 0; i < 3000; i++)
		v[i] = (i / 16) % 3 ? (float)sin(i) : 0;
	for (unsigned bits = 3; bits <= 8; bits++) {
		check_v2(v, 3000, bits, 16);
		unsigned char blob[4096];
		size_t len;
		float out[3000];
		tcz_quant_params p = {bits, 16, TCZ_QUANT_V2};
		assert_int_equal(tcz_quant_encode(v, 3000, &p, blob, sizeof blob,
						  &len), 0);
		assert_int_equal(tcz_quant_decode(blob, len, out, 3000), 0);
		for (int i = 0; i < 3000; i++)
			if ((i / 16) % 3 == 0)
				assert_true(out[i] == 0);
	}
	/* huge and tiny magnitudes, and both together in one super-block */
	static const float scales[] = {3e38f, 1e30f, 1e-30f, 1e-38f, 1e-44f};
	for (size_t si = 0; si < sizeof scales / sizeof *scales; si++)
		for (unsigned bits = 3; bits <= 8; bits++) {
			for (int i = 0; i < 1100; i++)
				v[i] = (float)(cos(i * 0.7) * scales[si]);
			v[5] = scales[si] > 1 ? FLT_MAX : -FLT_TRUE_MIN;
			unsigned char blob[4096];
			size_t len;
			float out[1100];
			tcz_quant_params p = {bits, 0, TCZ_QUANT_V2};
			assert_int_equal(tcz_quant_encode(v, 1100, &p, blob,
							  sizeof blob, &len), 0);
			assert_int_equal(tcz_quant_decode(blob, len, out, 1100), 0);
			float ref[1100];
			doc_decode_v2(blob, len, ref);
			assert_memory_equal(out, ref, sizeof out);
			for (int i = 0; i < 1100; i++)
				assert_true(isfinite(out[i]));
		}
	for (int i = 0; i < 1100; i++)
		v[i] = i % 64 ? 1e-6f * (float)sin(i) : 1e6f;
	check_v2(v, 1100, 8, 0);
	/* NaN and infinity are refused */
	float w[40] = {1, 2, 3};
	unsigned char blob[256];
	size_t len;
	tcz_quant_params p = {8, 0, TCZ_QUANT_V2};
	w[33] = NAN;
	assert_int_equal(tcz_quant_encode(w, 40, &p, blob, sizeof blob, &len),
			 -EDOM);
	w[33] = INFINITY;
	assert_int_equal(tcz_quant_encode(w, 40, &p, blob, sizeof blob, &len),
			 -EDOM);
	p = (tcz_quant_params){2, 0, TCZ_QUANT_V2};
	assert_int_equal(tcz_quant_encode(w, 4, &p, blob, sizeof blob, &len),
			 -EINVAL);
	assert_int_equal(tcz_quant_group(&p), 0);
}

/* Mean relative Frobenius error over retsim.f32's six tensors of >= 4096
 * values, bits 3..8, from an independent Python implementation of the
 * SPEC rule (pure Python floats, struct's f16 rounding, round-half-even).
 * models/README.md quotes slightly lower figures (0.69 % at 8 bits); per
 * tensor the Python reference gives 0.55 .. 1.10 % at 8 bits. */
static const double retsim_ref[9] = {0, 0, 0, 28.8397, 13.0268, 6.1308,
				     2.9713, 1.4613, 0.7259};

/* Issue 13's goals for version 2 on retsim.f32's weight matrices, against
 * GGUF's figures on the same tensors (tools/bench/bench-codec): at 8 bits
 * mean <= 0.62 % and worst <= 0.86 % (Q8_0: 0.620 % / 0.858 % at 8.5 bpw)
 * at <= 8.25 bits per weight; at 4 bits a mean below Q4_0's 9.839 % at
 * <= 4.5 bpw; at every width below version 1's error. */
static void retsim_v2(const tu_tensor *t, size_t count)
{
	for (unsigned bits = 8; bits >= 3; bits--) {
		double sum = 0, worst = 0;
		uint64_t bytes = 0, values = 0;
		int used = 0;
		for (size_t k = 0; k < count; k++) {
			if (t[k].n < 4096)
				continue;
			used++;
			tcz_quant_params p = {bits, 0, TCZ_QUANT_V2};
			size_t cap = tcz_quant_bound(t[k].n, &p), len;
			unsigned char *blob = malloc(cap);
			float *out = malloc(t[k].n * sizeof(float));
			assert_true(blob && out);
			assert_int_equal(tcz_quant_encode(t[k].data, t[k].n, &p,
							  blob, cap, &len), 0);
			assert_int_equal(tcz_quant_decode(blob, len, out, t[k].n),
					 0);
			tcz_error e;
			assert_int_equal(tcz_error_f32(t[k].data, out, t[k].n, &e),
					 0);
			sum += e.rel_fro;
			worst = e.rel_fro > worst ? e.rel_fro : worst;
			bytes += len;
			values += t[k].n;
			free(blob);
			free(out);
		}
		double mean = sum / used, bpw = 8.0 * (double)bytes / (double)values;
		print_message("retsim.f32 version 2, %u bits: %.3f bpw, mean %.3f %%, "
			      "worst %.3f %%\n", bits, bpw, 100 * mean, 100 * worst);
		assert_true(100 * mean < retsim_ref[bits]);
		if (bits == 8)
			assert_true(mean <= 0.0062 && worst <= 0.0086 && bpw <= 8.25);
		if (bits == 4)
			assert_true(mean < 0.09839 && bpw <= 4.5);
	}
}

/* Real weights: at 8 bits the relative Frobenius error of each model's
 * weights (tensors >= 4096 values, together) is below 1 %, and so is the
 * mean over its tensors. A few single tensors exceed 1 % under the SPEC
 * rule itself (retsim gau_layers.1.proj2.weight 1.10 %, silero conv3 and
 * conv4 1.27 % and 1.53 %: outlier-heavy groups), so per tensor the limit
 * is 2 %; those above 1 % are listed. Per-bit means are printed. */
static void real_models(void **state)
{
	(void)state;
	const char *dir = tu_models_dir();
	assert_non_null(dir);
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	int files = 0, retsim = 0;
	while ((de = readdir(d)) != NULL) {
		size_t nl = strlen(de->d_name);
		if (nl < 12 || strcmp(de->d_name + nl - 12, ".safetensors"))
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		tu_tensor *t;
		size_t count;
		assert_int_equal(tu_load_safetensors(path, &t, &count), 0);
		files++;
		double sum[9] = {0};
		int used = 0;
		tcz_error_acc whole; /* the model's error at 8 bits */
		tcz_error_acc_init(&whole);
		for (size_t k = 0; k < count; k++) {
			if (t[k].n < 4096)
				continue;
			used++;
			float *out = malloc(t[k].n * sizeof(float));
			assert_non_null(out);
			for (unsigned bits = 3; bits <= 8; bits++) {
				tcz_quant_params p = {bits, 0, TCZ_QUANT_V1};
				size_t cap = tcz_quant_bound(t[k].n, &p), len;
				unsigned char *blob = malloc(cap);
				assert_non_null(blob);
				assert_int_equal(tcz_quant_encode(t[k].data, t[k].n,
								  &p, blob, cap, &len), 0);
				assert_int_equal(tcz_quant_decode(blob, len, out,
								  t[k].n), 0);
				tcz_error e;
				assert_int_equal(tcz_error_f32(t[k].data, out,
							       t[k].n, &e), 0);
				sum[bits] += e.rel_fro;
				if (bits == 8)
					tcz_error_acc_add_f32(&whole, t[k].data,
							      out, t[k].n);
				if (bits == 8 && e.rel_fro >= 0.01)
					print_message("  note: %s %s %.3f %% at 8 bits\n",
						      de->d_name, t[k].name,
						      100 * e.rel_fro);
				if (bits == 8 && e.rel_fro >= 0.02)
					fail_msg("%s %s: 8-bit error %.3f %%",
						 de->d_name, t[k].name,
						 100 * e.rel_fro);
				free(blob);
			}
			free(out);
		}
		print_message("%-31s %2d tensors, mean rel. error:", de->d_name,
			      used);
		for (unsigned bits = 8; bits >= 3; bits--)
			print_message(" %u:%.2f%%", bits,
				      used ? 100 * sum[bits] / used : 0.0);
		print_message("\n");
		if (used) {
			/* the criterion: the relative Frobenius
			 * error of the model's weights at 8 bits < 1 % */
			tcz_error me;
			assert_int_equal(tcz_error_acc_finish(&whole, &me), 0);
			print_message("%-31s model rel. error at 8 bits %.3f%%\n",
				      de->d_name, 100 * me.rel_fro);
			assert_true(me.rel_fro < 0.01);
			assert_true(sum[8] / used < 0.01);
		}
		if (strcmp(de->d_name, "retsim.f32.safetensors") == 0) {
			retsim = 1;
			assert_int_equal(used, 6);
			for (unsigned bits = 3; bits <= 8; bits++)
				assert_true(fabs(100 * sum[bits] / used -
						 retsim_ref[bits]) < 0.001);
			retsim_v2(t, count);
		}
		tu_free_tensors(t, count);
	}
	closedir(d);
	assert_true(files > 0);
	if (!retsim)
		print_message("retsim.f32.safetensors absent: reference not checked\n");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(error_bound_random),
		cmocka_unit_test(exact_and_extremes),
		cmocka_unit_test(zero_groups),
		cmocka_unit_test(f32_fallback),
		cmocka_unit_test(bad_arguments),
		cmocka_unit_test(golden_blob),
		cmocka_unit_test(malformed),
		cmocka_unit_test(v1_still_decodes),
		cmocka_unit_test(golden_v2_blobs),
		cmocka_unit_test(malformed_v2),
		cmocka_unit_test(v2_random),
		cmocka_unit_test(v2_beats_v1),
		cmocka_unit_test(v2_edges),
	};
	const struct CMUnitTest models[] = {
		cmocka_unit_test(real_models),
	};
	return tu_main(argc, argv, tests, sizeof tests / sizeof tests[0], models,
		       sizeof models / sizeof models[0]);
}
