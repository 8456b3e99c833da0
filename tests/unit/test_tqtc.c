/* TQTC segments and the streaming compressor: segments written out by
 * hand from the SPEC section 6 table, the SPEC acceptance figures, the
 * drift rule on both sides of its threshold, tier changes, and malformed
 * segments (exact-size buffers, so ASan sees any read past them). */
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
#include "codec/tqtc.h"

static uint64_t rng = 777;

static uint64_t next(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static double uniform(void)
{
	return (double)(next() >> 11) * 0x1p-53;
}

static double gauss(void)
{
	double u = uniform() + 0x1p-60, v = uniform();
	return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static tcz_tqtc_enc *make_enc(uint32_t n, uint32_t g, uint32_t max_frames)
{
	tcz_tqtc_policy p;
	tcz_tqtc_policy_default(&p);
	p.group_len = g;
	p.max_frames = max_frames;
	tcz_tqtc_enc *e = NULL;
	assert_int_equal(tcz_tqtc_enc_create(n, &p, &e), 0);
	tcz_tqtc_enc_pin(e, TCZ_TIER_HOT);
	return e;
}

/* Parses a copy of exactly len bytes (so ASan bounds every read). */
static int parse_copy(const unsigned char *b, size_t len)
{
	unsigned char *c = malloc(len ? len : 1);
	assert_non_null(c);
	if (len)
		memcpy(c, b, len);
	tcz_tqtc_view v;
	int r = tcz_tqtc_parse(c, len, &v);
	free(c);
	return r;
}

static void size_formula(void **state)
{
	(void)state;
	static const uint32_t ns[] = {1, 3, 63, 64, 65, 512, 1000};
	static const uint32_t gs[] = {1, 2, 64, 100};
	static const uint32_t fs[] = {1, 2, 7, 100};
	for (unsigned b = 1; b <= 8; b++)
		for (int i = 0; i < 7; i++)
			for (int j = 0; j < 4; j++)
				for (int k = 0; k < 4; k++) {
					uint64_t n = ns[i], g = gs[j], f = fs[k];
					uint64_t want = 26 + 2 * ((n + g - 1) / g) +
							(n * f * b + 7) / 8;
					assert_int_equal(tcz_tqtc_size(ns[i], gs[j],
								       fs[k], b),
							 want);
				}
	assert_int_equal(tcz_tqtc_size(0, 64, 1, 8), 0);
	assert_int_equal(tcz_tqtc_size(64, 0, 1, 8), 0);
	assert_int_equal(tcz_tqtc_size(64, 64, 0, 8), 0);
	assert_int_equal(tcz_tqtc_size(64, 64, 1, 0), 0);
	assert_int_equal(tcz_tqtc_size(64, 64, 1, 9), 0);
	/* data_len is a u32: 2^16 * 2^16 8-bit codes do not fit, one less
	 * frame does */
	assert_int_equal(tcz_tqtc_size(65536, 65536, 65536, 8), 0);
	assert_int_equal(tcz_tqtc_size(65536, 65536, 65535, 8),
			 26 + 2 + (size_t)65536 * 65535);
}

/* N = 4, G = 2, 8 bits (qmax 127), 2 frames, derived by hand:
 *   group 0 max|v| 63.5  -> scale 0.5  (f16 0x3800)
 *   group 1 max|v| 31.75 -> scale 0.25 (f16 0x3400)
 *   frame 0 {63.5, -1, 0.25, -31.75}: q {127, -2, 1, -127},
 *           u = q + 127 {254, 125, 128, 0} = fe 7d 80 00
 *   frame 1 {-10, 2.5, 3, 31}: q {-20, 5, 12, 124} = 6b 84 8b fb
 *   data_len = ceil(4*2*8/8) = 8, total 26 + 2*2 + 8 = 38 */
static const float g8_frames[8] = {63.5f, -1, 0.25f, -31.75f,
				   -10, 2.5f, 3, 31};
static const unsigned char g8[38] = {
	0x54, 0x51, 0x54, 0x43, /* magic 0x43545154 */
	0x01,                   /* version */
	0x08,                   /* bits */
	0x02, 0x00, 0x00, 0x00, /* group_len */
	0x04, 0x00, 0x00, 0x00, /* tensor_len */
	0x02, 0x00, 0x00, 0x00, /* frame_count */
	0x02, 0x00, 0x00, 0x00, /* scale_count */
	0x00, 0x38, 0x00, 0x34, /* scales 0.5, 0.25 */
	0x08, 0x00, 0x00, 0x00, /* data_len */
	0xfe, 0x7d, 0x80, 0x00, 0x6b, 0x84, 0x8b, 0xfb,
};

/* N = 3, G = 2, 3 bits (qmax 3), 2 frames: frame 1 starts at bit 9.
 *   group 0 max 3 -> scale 1 (0x3c00); group 1 max 1.5 -> 0.5 (0x3800)
 *   frame 0 {3, -1, -1.5}: q {3, -1, -3}, u {6, 2, 0}
 *   frame 1 {-2, 0, 0.5}: q {-2, 0, 1}, u {1, 3, 4}
 *   bits LSB first: 6 | 2<<3 | 0<<6 | 1<<9 | 3<<12 | 4<<15 = 0x23216,
 *   18 bits -> 16 32 02 */
static const float g3_frames[6] = {3, -1, -1.5f, -2, 0, 0.5f};
static const unsigned char g3[33] = {
	0x54, 0x51, 0x54, 0x43, 0x01, 0x03,
	0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
	0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
	0x00, 0x3c, 0x00, 0x38,
	0x03, 0x00, 0x00, 0x00,
	0x16, 0x32, 0x02,
};

static void check_golden(const float *frames, uint32_t n, uint32_t g,
			 unsigned bits, const unsigned char *want, size_t len)
{
	unsigned char buf[64];
	size_t out_len = 0;
	assert_int_equal(tcz_tqtc_size(n, g, 2, bits), len);
	assert_int_equal(tcz_tqtc_encode(frames, n, 2, g, bits, NULL, buf,
					 len, &out_len), 0);
	assert_int_equal(out_len, len);
	assert_memory_equal(buf, want, len);

	/* decoding the hand-written bytes gives the values back exactly */
	unsigned char *c = malloc(len);
	assert_non_null(c);
	memcpy(c, want, len);
	tcz_tqtc_view v;
	assert_int_equal(tcz_tqtc_parse(c, len, &v), 0);
	assert_int_equal(v.bits, bits);
	assert_int_equal(v.group_len, g);
	assert_int_equal(v.tensor_len, n);
	assert_int_equal(v.frame_count, 2);
	assert_ptr_equal(v.scales, c + 22);
	float out[8];
	assert_int_equal(tcz_tqtc_decode(&v, out), 0);
	assert_memory_equal(out, frames, 2 * n * sizeof(float));
	assert_int_equal(tcz_tqtc_decode_frame(&v, 1, out), 0);
	assert_memory_equal(out, frames + n, n * sizeof(float));
	assert_int_equal(tcz_tqtc_decode_frame(&v, 2, out), -EINVAL);
	free(c);

	/* the compressor writes the same segment */
	tcz_tqtc_enc *e = make_enc(n, g, 0);
	if (bits == 3)
		tcz_tqtc_enc_pin(e, TCZ_TIER_COLD);
	tcz_tqtc_segment s;
	int have;
	assert_int_equal(tcz_tqtc_enc_push(e, 5, frames, &s, &have), 0);
	assert_int_equal(have, 0);
	assert_int_equal(tcz_tqtc_enc_push(e, 9, frames + n, &s, &have), 0);
	assert_int_equal(have, 0);
	assert_int_equal(tcz_tqtc_enc_flush(e, &s, &have), 0);
	assert_int_equal(have, 1);
	assert_int_equal(s.len, len);
	assert_memory_equal(s.data, want, len);
	assert_int_equal(s.start_ts, 5);
	assert_int_equal(s.end_ts, 9);
	assert_int_equal(s.frame_count, 2);
	assert_int_equal(s.bits, bits);
	free(s.data);
	assert_int_equal(tcz_tqtc_enc_flush(e, &s, &have), 0);
	assert_int_equal(have, 0);
	tcz_tqtc_enc_free(e);
}

static void golden_segments(void **state)
{
	(void)state;
	check_golden(g8_frames, 4, 2, 8, g8, sizeof(g8));
	check_golden(g3_frames, 3, 2, 3, g3, sizeof(g3));
}

static void malformed(void **state)
{
	(void)state;
	unsigned char b[64];
	assert_int_equal(parse_copy(g8, sizeof(g8)), 0);
	for (size_t len = 0; len < sizeof(g8); len++)
		assert_int_equal(parse_copy(g8, len), -EBADMSG);
	memcpy(b, g8, sizeof(g8));
	b[38] = 0;
	assert_int_equal(parse_copy(b, 39), -EBADMSG);

	static const struct {
		size_t off;
		unsigned char val;
		int err;
	} bad[] = {
		{0, 0x55, -EBADMSG},         /* magic */
		{3, 0x44, -EBADMSG},         /* magic */
		{4, 0x02, -EPROTONOSUPPORT}, /* version 2 */
		{4, 0x00, -EPROTONOSUPPORT}, /* version 0 */
		{5, 4, -EBADMSG},            /* bits 4 */
		{5, 0, -EBADMSG},            /* bits 0 */
		{5, 7, -EBADMSG},            /* 7 bits: data_len would be 7 */
		{6, 0, -EBADMSG},            /* group_len 0 */
		{6, 4, -EBADMSG},            /* group_len 4: S would be 1 */
		{10, 0, -EBADMSG},           /* tensor_len 0 */
		{10, 3, -EBADMSG},           /* tensor_len 3: data_len 6 */
		{14, 0, -EBADMSG},           /* frame_count 0 */
		{14, 3, -EBADMSG},           /* frame_count 3: data_len 12 */
		{18, 3, -EBADMSG},           /* scale_count 3 */
		{21, 0x80, -EBADMSG},        /* scale_count 2^31 + 2 */
		{26, 7, -EBADMSG},           /* data_len 7 */
		{26, 9, -EBADMSG},           /* data_len 9 */
		{29, 0x01, -EBADMSG},        /* data_len 2^24 + 8 */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		memcpy(b, g8, sizeof(g8));
		b[bad[i].off] = bad[i].val;
		int r = parse_copy(b, sizeof(g8));
		if (r != bad[i].err)
			fail_msg("byte %zu = %#x: %d, want %d", bad[i].off,
				 bad[i].val, r, bad[i].err);
	}
	/* a short buffer with a good magic and a bad version still names
	 * the version */
	memcpy(b, g8, 5);
	b[4] = 9;
	assert_int_equal(parse_copy(b, 5), -EPROTONOSUPPORT);
	/* consistent header for a huge segment, short buffer */
	memcpy(b, g8, sizeof(g8));
	memset(b + 10, 0xff, 4); /* N = 2^32-1, S = 2^31 */
	b[18] = 0x00, b[19] = 0x00, b[20] = 0x00, b[21] = 0x80;
	assert_int_equal(parse_copy(b, sizeof(g8)), -EBADMSG);
	assert_int_equal(parse_copy(NULL, 0), -EBADMSG);
}

static void encode_errors(void **state)
{
	(void)state;
	float fr[8];
	memcpy(fr, g8_frames, sizeof(fr));
	unsigned char buf[64];
	size_t len;
	for (unsigned b = 0; b <= 9; b++)
		if (b != 3 && b != 5 && b != 7 && b != 8)
			assert_int_equal(tcz_tqtc_encode(fr, 4, 2, 2, b, NULL, buf,
							 64, &len), -EINVAL);
	assert_int_equal(tcz_tqtc_encode(fr, 0, 2, 2, 8, NULL, buf, 64, &len),
			 -EINVAL);
	assert_int_equal(tcz_tqtc_encode(fr, 4, 0, 2, 8, NULL, buf, 64, &len),
			 -EINVAL);
	assert_int_equal(tcz_tqtc_encode(fr, 4, 2, 0, 8, NULL, buf, 64, &len),
			 -EINVAL);
	assert_int_equal(tcz_tqtc_encode(fr, 4, 2, 2, 8, NULL, buf, 37, &len),
			 -ENOBUFS);
	fr[6] = NAN;
	assert_int_equal(tcz_tqtc_encode(fr, 4, 2, 2, 8, NULL, buf, 64, &len),
			 -EDOM);
	fr[6] = INFINITY;
	assert_int_equal(tcz_tqtc_encode(fr, 4, 2, 2, 8, NULL, buf, 64, &len),
			 -EDOM);
	/* given scales: used as they are, values beyond them clamp;
	 * non-finite or negative ones are refused */
	memcpy(fr, g8_frames, sizeof(fr));
	uint16_t sc[2] = {0x3400, 0x3400}; /* 0.25 each */
	assert_int_equal(tcz_tqtc_encode(fr, 4, 2, 2, 8, sc, buf, 64, &len), 0);
	tcz_tqtc_view v;
	float out[8];
	assert_int_equal(tcz_tqtc_parse(buf, len, &v), 0);
	assert_int_equal(tcz_tqtc_decode(&v, out), 0);
	const float want[8] = {31.75f, -1, 0.25f, -31.75f, -10, 2.5f, 3, 31};
	assert_memory_equal(out, want, sizeof(want));
	sc[1] = 0x7c00;
	assert_int_equal(tcz_tqtc_encode(fr, 4, 2, 2, 8, sc, buf, 64, &len),
			 -EINVAL);
	sc[1] = 0xb400;
	assert_int_equal(tcz_tqtc_encode(fr, 4, 2, 2, 8, sc, buf, 64, &len),
			 -EINVAL);
}

/* Smooth frames around a fixed pattern (seeded), scaled by a few percent
 * and with a little noise: their group maxima stay well inside the drift
 * margin. */
static void smooth_frames(float *fr, uint32_t n, uint32_t frames)
{
	double p1 = uniform() * 6.283, p2 = uniform() * 6.283;
	for (uint32_t f = 0; f < frames; f++) {
		double amp = 1 + 0.03 * sin(0.21 * f);
		for (uint32_t i = 0; i < n; i++) {
			double base = sin(6.283 * i / 97 + p1) +
				      0.5 * sin(6.283 * i / 23 + p2);
			fr[(size_t)f * n + i] =
				(float)(amp * base + 0.02 * gauss());
		}
	}
}

/* SPEC section 6 acceptance: N = 512, G = 64, 100 frames. */
static void acceptance(void **state)
{
	(void)state;
	enum { N = 512, F = 100 };
	static const unsigned bits[4] = {8, 7, 5, 3};
	static const double min_ratio[4] = {3.99, 4.56, 6.38, 10.63};
	static const double max_err[4] = {0.008, 0.016, 0.065, 0.30};
	float *fr = malloc(sizeof(float) * N * F);
	float *out = malloc(sizeof(float) * N * F);
	assert_true(fr && out);
	smooth_frames(fr, N, F);

	for (int k = 0; k < 4; k++) {
		tcz_tqtc_policy p;
		tcz_tqtc_policy_default(&p);
		p.warm_bits = bits[k] == 5 ? 5 : 7;
		tcz_tqtc_enc *e;
		assert_int_equal(tcz_tqtc_enc_create(N, &p, &e), 0);
		tcz_tqtc_enc_pin(e, bits[k] == 8 ? TCZ_TIER_HOT
				 : bits[k] == 3 ? TCZ_TIER_COLD
						: TCZ_TIER_WARM);
		tcz_tqtc_segment s;
		int have;
		for (uint32_t f = 0; f < F; f++) {
			assert_int_equal(tcz_tqtc_enc_push(e, 1000 + f,
							   fr + (size_t)f * N,
							   &s, &have), 0);
			assert_int_equal(have, 0); /* one segment, no drift */
		}
		assert_int_equal(tcz_tqtc_enc_flush(e, &s, &have), 0);
		assert_int_equal(have, 1);
		assert_int_equal(s.bits, bits[k]);
		assert_int_equal(s.frame_count, F);
		assert_int_equal(s.len, 26 + 2 * 8 + N * F * bits[k] / 8);
		double ratio = (double)N * F * 4 / (double)s.len;

		tcz_tqtc_view v;
		assert_int_equal(tcz_tqtc_parse(s.data, s.len, &v), 0);
		assert_int_equal(tcz_tqtc_decode(&v, out), 0);
		double worst = 0;
		for (uint32_t f = 0; f < F; f++) {
			double m = 0, err = 0;
			for (uint32_t i = 0; i < N; i++) {
				size_t at = (size_t)f * N + i;
				m = fmax(m, fabs(fr[at]));
				err = fmax(err, fabs((double)fr[at] - out[at]));
			}
			worst = fmax(worst, err / m);
		}
		print_message("%u bits: %.3fx, max error/max|v| %.3f %%\n",
			      bits[k], ratio, 100 * worst);
		assert_true(ratio >= min_ratio[k]);
		assert_true(worst < max_err[k]);
		free(s.data);
		tcz_tqtc_enc_free(e);
	}
	free(fr);
	free(out);
}

/* Drift: a new segment exactly when max|v| > f16(scale)*qmax*(1+d/256),
 * scale being the group's scale from the segment's first frame. */
static void drift_threshold(void **state)
{
	(void)state;
	enum { N = 128 };
	/* Group 0's opening max m0 = 126.93798828125 = 0x3bff's value
	 * (0.99951171875) * 127, so its f16 scale is 0x3bff exactly. The
	 * bound, 0.99951171875 * 127 * 282/256, is exact in double and not
	 * an f32 (26 significant bits). */
	const double s = 0.99951171875;
	const double bound = s * 127 * (1 + 26.0 / 256);
	float below = (float)bound, above;
	if ((double)below > bound)
		below = nextafterf(below, 0);
	above = nextafterf(below, INFINITY);
	assert_true((double)below < bound && (double)above > bound);

	float fr[N];
	for (int i = 0; i < N; i++)
		fr[i] = (float)sin(i * 0.3) * 0.5f;
	fr[10] = (float)(s * 127);
	fr[70] = -1.0f; /* group 1 */

	tcz_tqtc_enc *e = make_enc(N, 64, 0);
	tcz_tqtc_segment seg;
	int have;
	assert_int_equal(tcz_tqtc_enc_push(e, 1, fr, &seg, &have), 0);
	assert_int_equal(have, 0);
	fr[10] = -below; /* sign does not matter */
	assert_int_equal(tcz_tqtc_enc_push(e, 2, fr, &seg, &have), 0);
	assert_int_equal(have, 0);
	fr[10] = above;
	assert_int_equal(tcz_tqtc_enc_push(e, 3, fr, &seg, &have), 0);
	assert_int_equal(have, 1);
	assert_int_equal(seg.frame_count, 2);
	assert_int_equal(seg.start_ts, 1);
	assert_int_equal(seg.end_ts, 2);
	/* the finished segment's scale covers its frames: f16(below/127) */
	tcz_tqtc_view v;
	assert_int_equal(tcz_tqtc_parse(seg.data, seg.len, &v), 0);
	uint16_t h = (uint16_t)(v.scales[0] | (v.scales[1] << 8));
	assert_int_equal(h, tcz_f32_to_f16(below / 127.0f));
	free(seg.data);

	/* The new segment opened with `above` and group 1 at 1.0, so group
	 * 1's bound is f16(1/127) * 127 * 1.1015625 ~ 1.1015; it stays the
	 * opening frame's when a later frame raises the group's maximum. */
	fr[70] = -1.10f;
	assert_int_equal(tcz_tqtc_enc_push(e, 4, fr, &seg, &have), 0);
	assert_int_equal(have, 0);
	fr[70] = -1.12f;
	assert_int_equal(tcz_tqtc_enc_push(e, 5, fr, &seg, &have), 0);
	assert_int_equal(have, 1);
	assert_int_equal(seg.frame_count, 2);
	assert_int_equal(seg.start_ts, 3);
	assert_int_equal(seg.end_ts, 4);
	free(seg.data);
	tcz_tqtc_enc_free(e);

	/* A bound that is an f32: 63.5 opens with scale 0.5 exactly, bound
	 * 0.5 * 127 * 1.1015625 = 69.94921875. Equal is not above. */
	e = make_enc(N, 64, 0);
	fr[10] = 63.5f;
	fr[70] = -1.0f;
	assert_int_equal(tcz_tqtc_enc_push(e, 1, fr, &seg, &have), 0);
	fr[10] = 69.94921875f;
	assert_int_equal(tcz_tqtc_enc_push(e, 2, fr, &seg, &have), 0);
	assert_int_equal(have, 0);
	fr[10] = nextafterf(69.94921875f, INFINITY);
	assert_int_equal(tcz_tqtc_enc_push(e, 3, fr, &seg, &have), 0);
	assert_int_equal(have, 1);
	assert_int_equal(seg.frame_count, 2);
	free(seg.data);
	tcz_tqtc_enc_free(e);
}

static void tier_changes(void **state)
{
	(void)state;
	enum { N = 64 };
	float fr[N];
	for (int i = 0; i < N; i++)
		fr[i] = (float)cos(i) * 0.1f;
	tcz_tqtc_enc *e;
	assert_int_equal(tcz_tqtc_enc_create(N, NULL, &e), 0);
	tcz_tqtc_segment s;
	int have;

	/* no access at all: score 0, cold */
	assert_int_equal(tcz_tqtc_enc_tier(e), TCZ_TIER_COLD);
	/* score = 1 * 1024 / (1000 - 999 + 1) = 512: hot */
	tcz_tqtc_enc_set_access(e, 1, 999, 1000);
	assert_int_equal(tcz_tqtc_enc_tier(e), TCZ_TIER_HOT);
	assert_int_equal(tcz_tqtc_enc_push(e, 1, fr, &s, &have), 0);
	assert_int_equal(have, 0);
	/* 1024 / 3 = 341: warm, 7 bits from the next frame on */
	tcz_tqtc_enc_set_access(e, 1, 998, 1000);
	assert_int_equal(tcz_tqtc_enc_tier(e), TCZ_TIER_WARM);
	assert_int_equal(tcz_tqtc_enc_push(e, 2, fr, &s, &have), 0);
	assert_int_equal(have, 1);
	assert_int_equal(s.bits, 8);
	assert_int_equal(s.frame_count, 1);
	free(s.data);
	/* 1024 / 16 = 64: still warm, same segment */
	tcz_tqtc_enc_set_access(e, 1, 985, 1000);
	assert_int_equal(tcz_tqtc_enc_push(e, 3, fr, &s, &have), 0);
	assert_int_equal(have, 0);
	/* 1024 / 17 = 60: cold */
	tcz_tqtc_enc_set_access(e, 1, 984, 1000);
	assert_int_equal(tcz_tqtc_enc_tier(e), TCZ_TIER_COLD);
	assert_int_equal(tcz_tqtc_enc_push(e, 4, fr, &s, &have), 0);
	assert_int_equal(have, 1);
	assert_int_equal(s.bits, 7);
	assert_int_equal(s.frame_count, 2);
	free(s.data);
	/* a pin overrides the score, unpinning returns to it */
	tcz_tqtc_enc_pin(e, TCZ_TIER_HOT);
	assert_int_equal(tcz_tqtc_enc_push(e, 5, fr, &s, &have), 0);
	assert_int_equal(have, 1);
	assert_int_equal(s.bits, 3);
	free(s.data);
	tcz_tqtc_enc_pin(e, -1);
	assert_int_equal(tcz_tqtc_enc_tier(e), TCZ_TIER_COLD);
	/* touch: one more access now -> 2 * 1024 / 1: hot */
	tcz_tqtc_enc_touch(e, 2000);
	assert_int_equal(tcz_tqtc_enc_tier(e), TCZ_TIER_HOT);
	assert_int_equal(tcz_tqtc_enc_push(e, 6, fr, &s, &have), 0);
	assert_int_equal(have, 0); /* still 8 bits, as the pinned segment */
	assert_int_equal(tcz_tqtc_enc_flush(e, &s, &have), 0);
	assert_int_equal(s.bits, 8);
	assert_int_equal(s.frame_count, 2);
	free(s.data);
	tcz_tqtc_enc_free(e);

	/* warm at 5 bits when so configured */
	tcz_tqtc_policy p;
	tcz_tqtc_policy_default(&p);
	p.warm_bits = 5;
	assert_int_equal(tcz_tqtc_enc_create(N, &p, &e), 0);
	tcz_tqtc_enc_pin(e, TCZ_TIER_WARM);
	assert_int_equal(tcz_tqtc_enc_push(e, 1, fr, &s, &have), 0);
	assert_int_equal(tcz_tqtc_enc_flush(e, &s, &have), 0);
	assert_int_equal(s.bits, 5);
	free(s.data);
	tcz_tqtc_enc_free(e);
}

static void state_on_error(void **state)
{
	(void)state;
	enum { N = 8 };
	float a[N], b[N], bad[N], out[2 * N];
	for (int i = 0; i < N; i++) {
		a[i] = (float)i * 0.5f - 2;
		b[i] = (float)i * -0.25f + 1;
		bad[i] = 100; /* would drift if taken in */
	}
	tcz_tqtc_enc *e = make_enc(N, 4, 0);
	tcz_tqtc_segment s;
	int have = 7;
	assert_int_equal(tcz_tqtc_enc_push(e, 10, a, &s, &have), 0);
	assert_int_equal(tcz_tqtc_enc_push(e, 9, bad, &s, &have), -EINVAL);
	bad[3] = NAN;
	assert_int_equal(tcz_tqtc_enc_push(e, 11, bad, &s, &have), -EDOM);
	/* equal timestamps are fine */
	assert_int_equal(tcz_tqtc_enc_push(e, 10, b, &s, &have), 0);
	assert_int_equal(have, 0);

	/* peek does not finish the segment */
	assert_int_equal(tcz_tqtc_enc_peek(e, &s, &have), 0);
	assert_int_equal(have, 1);
	tcz_tqtc_segment s2;
	assert_int_equal(tcz_tqtc_enc_flush(e, &s2, &have), 0);
	assert_int_equal(have, 1);
	assert_int_equal(s.len, s2.len);
	assert_memory_equal(s.data, s2.data, s.len);
	assert_int_equal(s2.frame_count, 2);
	assert_int_equal(s2.start_ts, 10);
	assert_int_equal(s2.end_ts, 10);
	tcz_tqtc_view v;
	assert_int_equal(tcz_tqtc_parse(s2.data, s2.len, &v), 0);
	assert_int_equal(tcz_tqtc_decode(&v, out), 0);
	for (int i = 0; i < N; i++) {
		assert_true(fabsf(out[i] - a[i]) <= 2.0f / 127 / 2 * 1.01f);
		assert_true(fabsf(out[N + i] - b[i]) <= 2.0f / 127 / 2 * 1.01f);
	}
	free(s.data);
	free(s2.data);
	assert_int_equal(tcz_tqtc_enc_peek(e, &s, &have), 0);
	assert_int_equal(have, 0);
	/* after a flush, timestamps still may not go back */
	assert_int_equal(tcz_tqtc_enc_push(e, 9, a, &s, &have), -EINVAL);
	tcz_tqtc_enc_free(e);
	tcz_tqtc_enc_free(NULL);

	tcz_tqtc_policy p;
	tcz_tqtc_policy_default(&p);
	assert_int_equal(tcz_tqtc_enc_create(0, &p, &e), -EINVAL);
	p.hot_bits = 4;
	assert_int_equal(tcz_tqtc_enc_create(8, &p, &e), -EINVAL);
	tcz_tqtc_policy_default(&p);
	p.group_len = 0;
	assert_int_equal(tcz_tqtc_enc_create(8, &p, &e), -EINVAL);
}

static void full_segments(void **state)
{
	(void)state;
	enum { N = 512 };
	float fr[N];
	for (int i = 0; i < N; i++)
		fr[i] = (float)sin(i * 0.1);
	tcz_tqtc_segment s;
	int have;

	tcz_tqtc_enc *e = make_enc(N, 64, 3);
	uint32_t sizes[8], count = 0;
	for (uint64_t t = 0; t < 7; t++) {
		assert_int_equal(tcz_tqtc_enc_push(e, t, fr, &s, &have), 0);
		if (have) {
			assert_int_equal(s.start_ts, t - 3);
			assert_int_equal(s.end_ts, t - 1);
			sizes[count++] = s.frame_count;
			free(s.data);
		}
	}
	assert_int_equal(tcz_tqtc_enc_flush(e, &s, &have), 0);
	sizes[count++] = s.frame_count;
	free(s.data);
	assert_int_equal(count, 3);
	assert_int_equal(sizes[0], 3);
	assert_int_equal(sizes[1], 3);
	assert_int_equal(sizes[2], 1);
	tcz_tqtc_enc_free(e);

	/* default: 1 MiB of decoded f32 = 512 frames of 512 values */
	e = make_enc(N, 64, 0);
	for (uint64_t t = 0; t < 513; t++) {
		assert_int_equal(tcz_tqtc_enc_push(e, t, fr, &s, &have), 0);
		assert_int_equal(have, t == 512);
	}
	assert_int_equal(s.frame_count, 512);
	free(s.data);
	tcz_tqtc_enc_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(size_formula),
		cmocka_unit_test(golden_segments),
		cmocka_unit_test(malformed),
		cmocka_unit_test(encode_errors),
		cmocka_unit_test(acceptance),
		cmocka_unit_test(drift_threshold),
		cmocka_unit_test(tier_changes),
		cmocka_unit_test(state_on_error),
		cmocka_unit_test(full_segments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
