/* ggml types: the size table for every type (written out here from the
 * block definitions, not taken from codec/ggml.c), the size formula and
 * its rejections, and every dequantizer against blocks built by hand with
 * the expected floats worked out in the comments. f16 constants: 0x3c00
 * = 1, 0x3800 = 0.5, 0x3400 = 0.25, 0x4000 = 2, 0xbc00 = -1. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "codec/ggml.h"

static void put16(unsigned char *b, size_t off, uint16_t v)
{
	b[off] = (unsigned char)v;
	b[off + 1] = (unsigned char)(v >> 8);
}

static void eq(float got, float want)
{
	if (got != want && !(isnan(got) && isnan(want)))
		fail_msg("got %.9g, want %.9g", (double)got, (double)want);
}

/* Every type of the GGUF specification (and ggml.h after it), with its
 * block: elements and bytes, from the struct definitions. */
static void type_table(void **state)
{
	(void)state;
	static const struct {
		uint32_t id;
		const char *name;
		uint32_t be, bb;
	} want[] = {
		{0, "F32", 1, 4},	  {1, "F16", 1, 2},
		{2, "Q4_0", 32, 2 + 16},  {3, "Q4_1", 32, 4 + 16},
		{6, "Q5_0", 32, 2 + 4 + 16}, {7, "Q5_1", 32, 4 + 4 + 16},
		{8, "Q8_0", 32, 2 + 32},  {9, "Q8_1", 32, 4 + 32},
		{10, "Q2_K", 256, 16 + 64 + 4},
		{11, "Q3_K", 256, 32 + 64 + 12 + 2},
		{12, "Q4_K", 256, 4 + 12 + 128},
		{13, "Q5_K", 256, 4 + 12 + 32 + 128},
		{14, "Q6_K", 256, 128 + 64 + 16 + 2},
		{15, "Q8_K", 256, 4 + 256 + 32},
		{16, "IQ2_XXS", 256, 2 + 64}, {17, "IQ2_XS", 256, 2 + 64 + 8},
		{18, "IQ3_XXS", 256, 2 + 96}, {19, "IQ1_S", 256, 2 + 32 + 16},
		{20, "IQ4_NL", 32, 2 + 16},
		{21, "IQ3_S", 256, 2 + 64 + 8 + 32 + 4},
		{22, "IQ2_S", 256, 2 + 64 + 8 + 8},
		{23, "IQ4_XS", 256, 2 + 2 + 4 + 128},
		{24, "I8", 1, 1},	  {25, "I16", 1, 2},
		{26, "I32", 1, 4},	  {27, "I64", 1, 8},
		{28, "F64", 1, 8},	  {29, "IQ1_M", 256, 32 + 16 + 8},
		{30, "BF16", 1, 2},	  {34, "TQ1_0", 256, 48 + 4 + 2},
		{35, "TQ2_0", 256, 64 + 2}, {39, "MXFP4", 32, 1 + 16},
		{40, "NVFP4", 64, 4 + 32}, {41, "Q1_0", 128, 2 + 16},
	};
	size_t known = 0;
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		tcz_ggml_info t;
		assert_int_equal(tcz_ggml_type(want[i].id, &t), 0);
		assert_string_equal(t.name, want[i].name);
		assert_int_equal(t.block_elems, want[i].be);
		assert_int_equal(t.block_bytes, want[i].bb);
		assert_int_equal(tcz_ggml_is_block(want[i].id), want[i].be > 1);
		assert_int_equal(t.dtype >= 0, want[i].be == 1);
	}
	/* nothing else is known: the removed ids and everything past 41 */
	for (uint32_t id = 0; id < 200; id++) {
		tcz_ggml_info t;
		if (tcz_ggml_type(id, &t) == 0)
			known++;
	}
	assert_int_equal(known, sizeof want / sizeof want[0]);
	static const uint32_t removed[] = {4, 5, 31, 32, 33, 36, 37, 38, 42,
					   0xffffffffu};
	for (size_t i = 0; i < sizeof removed / sizeof removed[0]; i++) {
		tcz_ggml_info t = {0};
		assert_int_equal(tcz_ggml_type(removed[i], &t), -EINVAL);
		assert_null(t.name);
		assert_false(tcz_ggml_is_block(removed[i]));
	}
}

static void sizes(void **state)
{
	(void)state;
	uint64_t n = 7;
	uint64_t d2[2] = {64, 3};
	/* Q4_0: 64 / 32 = 2 blocks of 18 bytes per row, 3 rows: 108 */
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_Q4_0, d2, 2, &n), 0);
	assert_int_equal(n, 108);
	/* Q6_K 256 x 2 x 2: 1 block of 210 per row, 4 rows: 840 */
	uint64_t d3[3] = {256, 2, 2};
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_Q6_K, d3, 3, &n), 0);
	assert_int_equal(n, 840);
	/* F32 [5, 7]: 140; BF16 [3]: 6 */
	uint64_t f[2] = {5, 7};
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_F32, f, 2, &n), 0);
	assert_int_equal(n, 140);
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_BF16, f, 1, &n), 0);
	assert_int_equal(n, 10);
	/* a row that is not whole blocks */
	uint64_t bad[2] = {33, 2};
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_Q8_0, bad, 2, &n), -EINVAL);
	uint64_t bad_k[1] = {128};
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_Q4_K, bad_k, 1, &n),
			 -EINVAL);
	/* a zero dim gives 0, even with huge other dims */
	uint64_t z[3] = {32, 0, UINT64_MAX};
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_Q8_0, z, 3, &n), 0);
	assert_int_equal(n, 0);
	/* element count past 2^63 - 1 */
	uint64_t o1[2] = {1ull << 32, 1ull << 31};
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_I8, o1, 2, &n), -EOVERFLOW);
	/* elements fit, bytes do not: 2^61 F32 = 2^63 bytes */
	uint64_t o2[1] = {1ull << 61};
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_F32, o2, 1, &n), -EOVERFLOW);
	/* Q8_0: 2^32 x 2040109465 = 8.76e18 elements fit in 2^63 - 1, but
	 * 2^27 blocks of 34 bytes per row x 2040109465 rows = 9.31e18 bytes
	 * do not */
	uint64_t o3[2] = {1ull << 32, 2040109465};
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_Q8_0, o3, 2, &n),
			 -EOVERFLOW);
	/* the largest that fits: 2^62 - 1 bytes of I8 */
	uint64_t ok[1] = {(1ull << 62) - 1};
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_I8, ok, 1, &n), 0);
	assert_int_equal(n, (1ull << 62) - 1);
	/* scalars: plain types only; unknown types */
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_F64, NULL, 0, &n), 0);
	assert_int_equal(n, 8);
	assert_int_equal(tcz_ggml_nbytes(TCZ_GGML_Q4_0, NULL, 0, &n), -EINVAL);
	assert_int_equal(tcz_ggml_nbytes(4, d2, 2, &n), -EINVAL);
	assert_int_equal(tcz_ggml_nbytes(99, d2, 2, &n), -EINVAL);
}

static void which_dequantize(void **state)
{
	(void)state;
	float y[256];
	unsigned char b[400] = {0};
	assert_true(tcz_ggml_can_dequantize(TCZ_GGML_Q8_0));
	assert_true(tcz_ggml_can_dequantize(TCZ_GGML_BF16));
	assert_false(tcz_ggml_can_dequantize(TCZ_GGML_IQ2_XXS));
	assert_false(tcz_ggml_can_dequantize(TCZ_GGML_I32));
	assert_false(tcz_ggml_can_dequantize(4));
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_IQ2_XXS, b, 1, y),
			 -ENOTSUP);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_F64, b, 1, y), -ENOTSUP);
	assert_int_equal(tcz_ggml_dequantize(5, b, 1, y), -EINVAL);
	assert_int_equal(tcz_ggml_dequantize(1000, b, 1, y), -EINVAL);
	/* zero blocks write nothing */
	y[0] = 42;
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q4_K, b, 0, y), 0);
	eq(y[0], 42);
}

static void plain_types(void **state)
{
	(void)state;
	float y[3];
	/* F16 0x3c00 = 1, 0xc000 = -2, 0x7c00 = +inf */
	unsigned char h[6] = {0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c};
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_F16, h, 3, y), 0);
	eq(y[0], 1), eq(y[1], -2), eq(y[2], INFINITY);
	/* BF16 0x3f80 = 1, 0x4049 = 3.140625, 0x8000 = -0 */
	unsigned char bf[6] = {0x80, 0x3f, 0x49, 0x40, 0x00, 0x80};
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_BF16, bf, 3, y), 0);
	eq(y[0], 1), eq(y[1], 3.140625f), eq(y[2], -0.0f);
	assert_true(signbit(y[2]));
	/* F32 1.5 = 0x3fc00000 */
	unsigned char f[4] = {0x00, 0x00, 0xc0, 0x3f};
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_F32, f, 1, y), 0);
	eq(y[0], 1.5f);
}

/* qs[j] = j | (15 - j) << 4, the nibble pattern of several tests below */
static void nibbles(unsigned char *qs)
{
	for (int j = 0; j < 16; j++)
		qs[j] = (unsigned char)(j | (15 - j) << 4);
}

static void q4_0(void **state)
{
	(void)state;
	unsigned char b[2 * 18];
	float y[64];
	/* block 0: d = 0.5; y[j] = (j - 8) * 0.5, y[16 + j] = (7 - j) * 0.5 */
	put16(b, 0, 0x3800);
	nibbles(b + 2);
	/* block 1: d = -1, all bytes 0xff: (15 - 8) * -1 = -7 */
	put16(b, 18, 0xbc00);
	memset(b + 20, 0xff, 16);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q4_0, b, 2, y), 0);
	eq(y[0], -4);	/* (0 - 8) * 0.5 */
	eq(y[9], 0.5);	/* (9 - 8) * 0.5 */
	eq(y[15], 3.5); /* (15 - 8) * 0.5 */
	eq(y[16], 3.5); /* high nibble of byte 0 is 15: (15 - 8) * 0.5 */
	eq(y[31], -4);	/* high nibble of byte 15 is 0 */
	for (int j = 0; j < 32; j++)
		eq(y[32 + j], -7);
}

static void q4_1(void **state)
{
	(void)state;
	unsigned char b[20];
	float y[32];
	/* d = 0.5, m = -1: y[j] = j * 0.5 - 1, y[16 + j] = (15 - j) * 0.5 - 1 */
	put16(b, 0, 0x3800);
	put16(b, 2, 0xbc00);
	nibbles(b + 4);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q4_1, b, 1, y), 0);
	eq(y[0], -1);	/* 0 * 0.5 - 1 */
	eq(y[5], 1.5);	/* 5 * 0.5 - 1 */
	eq(y[15], 6.5); /* 15 * 0.5 - 1 */
	eq(y[16], 6.5); /* 15 * 0.5 - 1 */
	eq(y[31], -1);	/* 0 * 0.5 - 1 */
}

static void q5_0(void **state)
{
	(void)state;
	unsigned char b[22];
	float y[32];
	/* d = 1; qh = 0xffff5555: the fifth bit is set for the even j < 16
	 * and for every j >= 16 */
	put16(b, 0, 0x3c00);
	b[2] = 0x55, b[3] = 0x55, b[4] = 0xff, b[5] = 0xff;
	nibbles(b + 6);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q5_0, b, 1, y), 0);
	eq(y[0], 0);	/* (0 | 16) - 16 */
	eq(y[1], -15);	/* (1 | 0) - 16 */
	eq(y[6], 6);	/* (6 | 16) - 16 */
	eq(y[15], -1);	/* (15 | 0) - 16 */
	eq(y[16], 15);	/* (15 | 16) - 16 */
	eq(y[31], 0);	/* (0 | 16) - 16 */
}

static void q5_1(void **state)
{
	(void)state;
	unsigned char b[24];
	float y[32];
	/* d = 0.25, m = 2, qh = 0x0000ffff (fifth bit on the first 16),
	 * qs[j] = j | j << 4 */
	put16(b, 0, 0x3400);
	put16(b, 2, 0x4000);
	b[4] = 0xff, b[5] = 0xff, b[6] = 0, b[7] = 0;
	for (int j = 0; j < 16; j++)
		b[8 + j] = (unsigned char)(j | j << 4);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q5_1, b, 1, y), 0);
	eq(y[0], 6);	 /* 16 * 0.25 + 2 */
	eq(y[3], 6.75);	 /* 19 * 0.25 + 2 */
	eq(y[15], 9.75); /* 31 * 0.25 + 2 */
	eq(y[16], 2);	 /* 0 * 0.25 + 2 */
	eq(y[31], 5.75); /* 15 * 0.25 + 2 */
}

static void q8_0_and_q8_1(void **state)
{
	(void)state;
	unsigned char b[36];
	float y[32];
	/* Q8_0: d = 0.5, q[j] = j - 16, q[0] = -128 */
	put16(b, 0, 0x3800);
	for (int j = 0; j < 32; j++)
		b[2 + j] = (unsigned char)(j - 16);
	b[2] = 0x80;
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q8_0, b, 1, y), 0);
	eq(y[0], -64);	/* -128 * 0.5 */
	eq(y[1], -7.5); /* -15 * 0.5 */
	eq(y[16], 0);
	eq(y[31], 7.5); /* 15 * 0.5 */
	/* Q8_1: d = 2, s = 0x1234 (ignored), q[j] = j - 16 */
	put16(b, 0, 0x4000);
	put16(b, 2, 0x1234);
	for (int j = 0; j < 32; j++)
		b[4 + j] = (unsigned char)(j - 16);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q8_1, b, 1, y), 0);
	eq(y[0], -32); /* -16 * 2 */
	eq(y[31], 30); /* 15 * 2 */
}

static void q2_k(void **state)
{
	(void)state;
	unsigned char b[84];
	float y[256];
	/* scales[s] = s | (15 - s) << 4: scale s, min 15 - s; qs all 0xe4
	 * (the 2-bit field at shift 2j holds j), except qs[16 + 3] = 0x1b
	 * (fields 3, 2, 1, 0); d = 1, dmin = 0.5.
	 * Element 128h + 32j + 16k + l: sub-block s = 8h + 2j + k,
	 * y = (1 * s) * q - 0.5 * (15 - s). */
	for (int s = 0; s < 16; s++)
		b[s] = (unsigned char)(s | (15 - s) << 4);
	memset(b + 16, 0xe4, 64);
	b[16 + 16 + 3] = 0x1b;
	put16(b, 80, 0x3c00);
	put16(b, 82, 0x3800);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q2_K, b, 1, y), 0);
	eq(y[0], -7.5);	   /* s 0, q 0: 0 - 7.5 */
	eq(y[16], -7);	   /* s 1, q 0: 0 - 0.5 * 14 */
	eq(y[40], -4.5);   /* h0 j1 k0: s 2, q 1: 2 - 0.5 * 13 */
	eq(y[245], 45);	   /* h1 j3 k1: s 15, q 3: 45 - 0 */
	eq(y[19], -4);	   /* qs[19] = 0x1b, j 0: s 1, q 3: 3 - 7 */
	eq(y[51], 0);	   /* j 1: s 3, q 2: 6 - 6 */
	eq(y[83], 0);	   /* j 2: s 5, q 1: 5 - 5 */
	eq(y[115], -4);	   /* j 3: s 7, q 0: 0 - 4 */
	eq(y[128 + 64], 22.5); /* h1 j2 k0: s 12, q 2: 24 - 0.5 * 3 */
}

static void q3_k(void **state)
{
	(void)state;
	unsigned char b[110];
	float y[256];
	/* hmask all 0xff but hmask[3] = 0 (elements with 16k + l = 3 lose
	 * 4); qs all 0xe4 (field j = j); scales coding scale s = s - 8,
	 * i.e. raw 6-bit value s + 24: low nibbles 8..15 then 0..7, so
	 * bytes 0..7 are (8 + i) | i << 4; top bits 1, 1, 2, 2 for s / 4 =
	 * 0..3, so bytes 8..11 are 1 | 1 << 2 | 2 << 4 | 2 << 6 = 0xa5;
	 * d = 0.5. Element 128h + 32j + 16k + l: s = 8h + 2j + k,
	 * y = (0.5 * (s - 8)) * q. */
	memset(b, 0xff, 32);
	b[3] = 0;
	memset(b + 32, 0xe4, 64);
	for (int i = 0; i < 8; i++)
		b[96 + i] = (unsigned char)((8 + i) | i << 4);
	for (int i = 0; i < 4; i++)
		b[104 + i] = 0xa5;
	put16(b, 108, 0x3800);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q3_K, b, 1, y), 0);
	eq(y[0], 0);	   /* s 0: -4 * 0 */
	eq(y[3], 16);	   /* s 0, q 0 - 4: -4 * -4 */
	eq(y[81], -3);	   /* h0 j2 k1: s 5, -1.5 * 2 */
	eq(y[249], 10.5);  /* h1 j3 k1: s 15, 3.5 * 3 */
	eq(y[163], -3);	   /* h1 j1 k0 l3: s 10, 1 * (1 - 4) */
	eq(y[144], 0);	   /* h1 j0 k1: s 9, 0.5 * 0 */
	eq(y[64 + 16 + 2], -3); /* h0 j2 k1 l2: s 5, -1.5 * 2 */
	eq(y[128 + 32 * 3], 9); /* h1 j3 k0: s 14, 3 * 3 */
}

static void q4_k_scales(unsigned char *s)
{
	/* sub-block j: scale 9j (0 9 18 27 36 45 54 63), min 63 - 9j
	 * (63 54 45 36 27 18 9 0), packed as the format's 12 bytes:
	 * j < 4: s[j] = scale | (scale of j+4 >> 4) << 6,
	 *        s[j+4] = min | (min of j+4 >> 4) << 6;
	 * j >= 4: s[j+4] = (scale & 15) | (min & 15) << 4 */
	static const unsigned char k[12] = {0x80, 0x89, 0xd2, 0xdb,
					    0x7f, 0x76, 0x2d, 0x24,
					    0xb4, 0x2d, 0x96, 0x0f};
	memcpy(s, k, 12);
}

static void q4_k(void **state)
{
	(void)state;
	unsigned char b[144];
	float y[256];
	/* d = 0.5, dmin = 0.25; qs[32c + l] = (l % 16) | (15 - l % 16) << 4.
	 * y[64c + l] = (0.5 * sc(2c)) * (l % 16) - 0.25 * m(2c),
	 * y[64c + 32 + l] = (0.5 * sc(2c+1)) * (15 - l % 16) - 0.25 * m(2c+1) */
	put16(b, 0, 0x3800);
	put16(b, 2, 0x3400);
	q4_k_scales(b + 4);
	for (int i = 0; i < 128; i++)
		b[16 + i] = (unsigned char)((i % 16) | (15 - i % 16) << 4);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q4_K, b, 1, y), 0);
	eq(y[0], -15.75);   /* j 0: 0 * 0 - 0.25 * 63 */
	eq(y[69], 33.75);   /* j 2, l 5: 9 * 5 - 0.25 * 45 */
	eq(y[180], 243);    /* j 5, l 20: 22.5 * (15 - 4) - 0.25 * 18 */
	eq(y[255], 0);	    /* j 7, l 31: 31.5 * 0 - 0 */
	eq(y[207], 402.75); /* j 6, l 15: 27 * 15 - 0.25 * 9 */
	eq(y[32 + 1], 49.5); /* j 1, l 1: 4.5 * 14 - 0.25 * 54 */
}

static void q5_k(void **state)
{
	(void)state;
	unsigned char b[176];
	float y[256];
	/* as Q4_K plus qh[l] = 0xaa (the fifth bit on sub-blocks 1, 3, 5,
	 * 7), qh[7] = 0x01 (only sub-block 0): y = (0.5 sc) * (nibble + 16
	 * bit) - 0.25 m, bit = qh[l] >> (2c + k) & 1 */
	put16(b, 0, 0x3800);
	put16(b, 2, 0x3400);
	q4_k_scales(b + 4);
	memset(b + 16, 0xaa, 32);
	b[16 + 7] = 0x01;
	for (int i = 0; i < 128; i++)
		b[48 + i] = (unsigned char)((i % 16) | (15 - i % 16) << 4);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q5_K, b, 1, y), 0);
	eq(y[0], -15.75); /* j 0: 0 * 0 - 15.75 */
	eq(y[39], 22.5);  /* j 1, l 7, bit 0: 4.5 * 8 - 13.5 */
	eq(y[38], 99);	  /* j 1, l 6, bit 1: 4.5 * (9 + 16) - 13.5 */
	eq(y[180], 603);  /* j 5, l 20, bit 1: 22.5 * (11 + 16) - 4.5 */
	eq(y[207], 402.75); /* j 6, l 15, bit 0: 27 * 15 - 2.25 */
	eq(y[71], 51.75); /* j 2, l 7, qh[7] bit 2 = 0: 9 * 7 - 11.25 */
}

static void q6_k(void **state)
{
	(void)state;
	unsigned char b[210];
	float y[256];
	/* ql all 0x21 (low nibble 1, high 2), qh all 0xe4 (field r = r),
	 * except ql[64 + 32 + 5] = 0xf0; scales[s] = s - 8; d = 0.5.
	 * Element 128h + 32r + l: nibble 1 (r < 2) or 2, q = (nibble |
	 * r << 4) - 32 = -31, -15, 2, 18 for r = 0..3; scale 8h + 2r + l/16
	 * - 8; y = (0.5 * scale) * q. */
	memset(b, 0x21, 128);
	b[64 + 32 + 5] = 0xf0;
	memset(b + 128, 0xe4, 64);
	for (int s = 0; s < 16; s++)
		b[192 + s] = (unsigned char)(s - 8);
	put16(b, 208, 0x3800);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q6_K, b, 1, y), 0);
	eq(y[0], 124);	  /* scale -8: -4 * -31 */
	eq(y[49], 37.5);  /* r 1, l 17: scale -5: -2.5 * -15 */
	eq(y[67], -4);	  /* r 2, l 3: scale -4: -2 * 2 */
	eq(y[255], 63);	  /* h1 r3 l31: scale 7: 3.5 * 18 */
	eq(y[165], -16);  /* h1 r1 l5: nibble 0, q 16 - 32: scale 2: 1 * -16 */
	eq(y[229], 93);	  /* h1 r3 l5: nibble 15, q 63 - 32: scale 6: 3 * 31 */
}

static void q8_k(void **state)
{
	(void)state;
	unsigned char b[292];
	float y[256];
	/* f32 d = 0.25 (0x3e800000), q[j] = j - 128, bsums anything */
	b[0] = 0, b[1] = 0, b[2] = 0x80, b[3] = 0x3e;
	for (int j = 0; j < 256; j++)
		b[4 + j] = (unsigned char)(j + 128);
	memset(b + 260, 0x5a, 32);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_Q8_K, b, 1, y), 0);
	eq(y[0], -32);	  /* -128 * 0.25 */
	eq(y[128], 0);
	eq(y[255], 31.75); /* 127 * 0.25 */
}

static void iq4_nl_and_mxfp4(void **state)
{
	(void)state;
	unsigned char b[2 * 18];
	float y[64];
	/* IQ4_NL: d = 0.5, table {-127 -104 -83 -65 -49 -35 -22 -10 1 13 25
	 * 38 53 69 89 113}, nibbles j | (15 - j) << 4 */
	put16(b, 0, 0x3800);
	nibbles(b + 2);
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_IQ4_NL, b, 1, y), 0);
	eq(y[0], -63.5); /* 0.5 * -127 */
	eq(y[8], 0.5);	 /* 0.5 * 1 */
	eq(y[16], 56.5); /* 0.5 * 113 */
	eq(y[31], -63.5);
	/* MXFP4: e = 130, d = 2^(130 - 128) = 4, table {0 1 2 3 4 6 8 12 0
	 * -1 -2 -3 -4 -6 -8 -12}; block 1: e = 0, d = 2^-128, byte 0 = 7 */
	b[0] = 130;
	nibbles(b + 1);
	memset(b + 17, 0, 17);
	b[18] = 7;
	assert_int_equal(tcz_ggml_dequantize(TCZ_GGML_MXFP4, b, 2, y), 0);
	eq(y[5], 24);	/* 6 * 4 */
	eq(y[7], 48);	/* 12 * 4 */
	eq(y[8], 0);	/* 0 * 4 */
	eq(y[16], -48); /* -12 * 4 */
	eq(y[31], 0);	/* code 0 */
	eq(y[32], ldexpf(12, -128)); /* 12 * 2^-128 */
	eq(y[48], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(type_table),
		cmocka_unit_test(sizes),
		cmocka_unit_test(which_dequantize),
		cmocka_unit_test(plain_types),
		cmocka_unit_test(q4_0),
		cmocka_unit_test(q4_1),
		cmocka_unit_test(q5_0),
		cmocka_unit_test(q5_1),
		cmocka_unit_test(q8_0_and_q8_1),
		cmocka_unit_test(q2_k),
		cmocka_unit_test(q3_k),
		cmocka_unit_test(q4_k),
		cmocka_unit_test(q5_k),
		cmocka_unit_test(q6_k),
		cmocka_unit_test(q8_k),
		cmocka_unit_test(iq4_nl_and_mxfp4),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
