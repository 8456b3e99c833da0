/* Lossless codec: exact round trips for every dtype and length, the blob
 * layout of docs/formats.md checked byte by byte (planes decoded
 * with libzstd directly, the header check recomputed here), entropy bounds
 * on synthetic data, real-model ratios, and malformed blobs. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "codec/dtype.h"
#include "codec/lossless.h"
#include "tests/unit/testutil_models.h"

#define HDR 24 /* fixed header size, from the format document */
#define ENTRY 5

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

static double gauss(void)
{
	double u = ((double)(rnd() >> 11) + 0.5) * 0x1p-53;
	double v = ((double)(rnd() >> 11) + 0.5) * 0x1p-53;
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void set32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void set64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* FNV-1a 32 as the format document states it. */
static uint32_t fnv(const unsigned char *p, size_t n, uint32_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static size_t table_len(const unsigned char *b)
{
	if (b[6] != 1)
		return 0;
	size_t es = tcz_dtype_size((tcz_dtype)b[5]);
	uint64_t L = le64(b + 8), B = le32(b + 16);
	return (size_t)((L + B - 1) / B) * es * ENTRY;
}

/* Version 2: the Huffman codes after the plane table: their count, then
 * each as first, last and a nibble per symbol in between. */
static size_t sec_len(const unsigned char *b)
{
	if (b[4] < 2 || b[6] != 1 || !le32(b + 16))
		return 0;
	size_t at = HDR + table_len(b), start = at;
	unsigned k = b[at++];
	while (k--)
		at += 2 + ((size_t)(b[at + 1] - b[at]) + 2) / 2;
	return at - start;
}

/* Recomputes the header check (over the n bytes after the header: the
 * plane table, and in versions 2 and 3 the codes) after a deliberate edit, so
 * that the structural validation behind it is what gets tested. */
static void reseal(unsigned char *b, size_t n)
{
	set32(b + 20, fnv(b + HDR, n, fnv(b, 20, 2166136261u)));
}

/* Bit patterns of float specials for an es-byte float type. */
static uint64_t inf_bits(tcz_dtype dt)
{
	switch (dt) {
	case TCZ_DT_F16:
		return 0x7c00;
	case TCZ_DT_BF16:
		return 0x7f80;
	case TCZ_DT_F32:
		return 0x7f800000;
	default:
		return 0x7ff0000000000000ull;
	}
}

static void put_elem(unsigned char *p, size_t es, uint64_t v)
{
	for (size_t b = 0; b < es; b++)
		p[b] = (unsigned char)(v >> (8 * b));
}

/* NaN, infinities, subnormals, -0 and 0 put among n floats of dt, one
 * every 1..gap elements */
static void put_specials(tcz_dtype dt, unsigned char *p, size_t n,
			 unsigned gap)
{
	size_t es = tcz_dtype_size(dt);
	uint64_t sign = 1ull << (8 * es - 1);
	uint64_t all = es == 8 ? ~0ull : (1ull << (8 * es)) - 1;
	const uint64_t special[] = {
		inf_bits(dt), inf_bits(dt) | sign, all /* NaN */,
		inf_bits(dt) | 1 /* signalling NaN */, 1, sign | 1,
		sign /* -0 */, 0};
	for (size_t i = 0; i < n; i += 1 + rnd() % gap)
		put_elem(p + i * es, es, special[rnd() % 8]);
}

/* n elements of dt: weights-like floats with NaN/inf/subnormals/-0 mixed
 * in, or smallish integers with an occasional full-width one. */
static void fill(tcz_dtype dt, unsigned char *p, size_t n)
{
	size_t es = tcz_dtype_size(dt);
	uint64_t all = es == 8 ? ~0ull : (1ull << (8 * es)) - 1;

	if (tcz_dtype_is_float(dt)) {
		float f[256];
		for (size_t i = 0; i < n; i += 256) {
			size_t k = n - i < 256 ? n - i : 256;
			for (size_t j = 0; j < k; j++)
				f[j] = (float)(0.02 * gauss());
			assert_int_equal(tcz_dtype_from_f32(dt, f, k,
							     p + i * es),
					 0);
		}
		put_specials(dt, p, n, 97);
	} else {
		for (size_t i = 0; i < n; i++) {
			uint64_t v = rnd() % 3000;
			if (dt == TCZ_DT_BOOL)
				v &= 1;
			else if (rnd() % 50 == 0)
				v = rnd();
			else if ((dt == TCZ_DT_I8 || dt == TCZ_DT_I16 ||
				  dt == TCZ_DT_I32 || dt == TCZ_DT_I64) &&
				 (rnd() & 1))
				v = (uint64_t)-(int64_t)v;
			put_elem(p + i * es, es, v & all);
		}
	}
}

/* Encodes, checks the size bound and decodes into an exact-size buffer. */
static size_t round_trip(tcz_lossless_ctx *ctx, tcz_dtype dt,
			 const unsigned char *src, size_t len, int level)
{
	size_t cap = tcz_lossless_bound(len), got = 0, dlen = 1;
	unsigned char *blob = malloc(cap);
	unsigned char *out = malloc(len ? len : 1);
	assert_non_null(blob);
	assert_non_null(out);
	assert_true(cap >= len);
	assert_int_equal(tcz_lossless_encode(ctx, dt, src, len, level, blob,
					     cap, &got),
			 0);
	assert_true(got <= len + HDR);
	assert_int_equal(tcz_lossless_decoded_size(blob, got, &dlen), 0);
	assert_int_equal(dlen, len);
	/* exact-size copy: ASan sees any read past the blob */
	unsigned char *exact = malloc(got);
	assert_non_null(exact);
	memcpy(exact, blob, got);
	memset(out, 0xa5, len);
	assert_int_equal(tcz_lossless_decode(ctx, exact, got, out, len), 0);
	assert_memory_equal(out, src, len);
	free(exact);
	free(out);
	free(blob);
	return got;
}

static void all_dtypes_all_lengths(void **state)
{
	(void)state;
	tcz_lossless_ctx *ctx = tcz_lossless_ctx_create();
	assert_non_null(ctx);
	for (int d = 0; d < TCZ_DT_COUNT; d++) {
		tcz_dtype dt = (tcz_dtype)d;
		size_t es = tcz_dtype_size(dt);
		const size_t counts[] = {0, 1, 2, 3, 15, 17, 1000,
					 (1u << 20) / es + 3};
		for (size_t c = 0; c < sizeof(counts) / sizeof(*counts); c++) {
			size_t n = counts[c];
			unsigned char *p = malloc(n * es + 1);
			assert_non_null(p);
			fill(dt, p, n);
			/* one ctx shared by all dtypes, NULL now and then */
			round_trip(c % 3 == 2 ? NULL : ctx, dt, p, n * es,
				   TCZ_LOSSLESS_LEVEL_DEFAULT);
			free(p);
		}
	}
	tcz_lossless_ctx_free(ctx);
}

static void other_levels(void **state)
{
	(void)state;
	const tcz_dtype dts[] = {TCZ_DT_BF16, TCZ_DT_F32, TCZ_DT_I64,
				 TCZ_DT_U8};
	const int levels[] = {1, 6, TCZ_LOSSLESS_LEVEL_DENSE};
	for (size_t i = 0; i < 4; i++) {
		size_t n = 40000, es = tcz_dtype_size(dts[i]);
		unsigned char *p = malloc(n * es);
		assert_non_null(p);
		fill(dts[i], p, n);
		for (size_t l = 0; l < 3; l++)
			round_trip(NULL, dts[i], p, n * es, levels[l]);
		free(p);
	}
}

/* Uniform random bytes cannot be compressed: the blob is the raw one,
 * exactly as the format document lays it out. */
static void random_data_goes_raw(void **state)
{
	(void)state;
	const tcz_dtype dts[] = {TCZ_DT_U8, TCZ_DT_BF16, TCZ_DT_F32,
				 TCZ_DT_F64};
	for (size_t i = 0; i < 4; i++) {
		size_t len = (1u << 20) + 8 * i;
		unsigned char *p = malloc(len), *b = malloc(len + HDR);
		size_t got;
		assert_non_null(p);
		assert_non_null(b);
		for (size_t k = 0; k < len; k++)
			p[k] = (unsigned char)(rnd() >> 56);
		assert_int_equal(tcz_lossless_encode(NULL, dts[i], p, len, 3,
						     b, len + HDR, &got),
				 0);
		assert_int_equal(got, len + HDR);
		assert_memory_equal(b, "TCZL", 4);
		assert_int_equal(b[4], 1);
		assert_int_equal(b[5], dts[i]);
		assert_int_equal(b[6], 0);
		assert_int_equal(b[7], 0);
		assert_int_equal(le64(b + 8), len);
		assert_int_equal(le32(b + 16), 0);
		assert_int_equal(le32(b + 20), fnv(b, 20, 2166136261u));
		assert_memory_equal(b + HDR, p, len);
		round_trip(NULL, dts[i], p, len, 3);
		free(p);
		free(b);
	}
}

static void empty_input(void **state)
{
	(void)state;
	unsigned char b[HDR];
	size_t got = 0, d = 7;
	assert_int_equal(tcz_lossless_bound(0), HDR);
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_F32, NULL, 0, 3, b,
					     sizeof(b), &got),
			 0);
	assert_int_equal(got, HDR);
	assert_int_equal(tcz_lossless_decoded_size(b, got, &d), 0);
	assert_int_equal(d, 0);
	assert_int_equal(tcz_lossless_decode(NULL, b, got, NULL, 0), 0);
}

/* BF16 -2.0 (0xc000) and 1.0 (0x3f80) alternating. Rotated left by one:
 * 0x8001 and 0x7f00, so the exponent plane is 80 7f 80 7f ... and the
 * low plane 01 00 01 00 ...; both are decoded here with libzstd alone. */
static void planes_layout_by_hand(void **state)
{
	(void)state;
	const size_t n = 4096;
	unsigned char src[2 * 4096], blob[2 * 4096 + HDR], plane[4096];
	size_t got;
	for (size_t i = 0; i < n; i++)
		put_elem(src + 2 * i, 2, i % 2 ? 0x3f80 : 0xc000);
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_BF16, src, 2 * n, 3,
					     blob, sizeof(blob), &got),
			 0);
	assert_memory_equal(blob, "TCZL", 4);
	assert_int_equal(blob[4], 1);
	assert_int_equal(blob[5], TCZ_DT_BF16);
	assert_int_equal(blob[6], 1);
	assert_int_equal(blob[7], 1);
	assert_int_equal(le64(blob + 8), 2 * n);
	uint32_t B = le32(blob + 16);
	assert_true(B >= 2 * n && B % 2 == 0); /* one block */
	assert_int_equal(le32(blob + 20),
			 fnv(blob + HDR, 2 * ENTRY,
			     fnv(blob, 20, 2166136261u)));
	size_t pos = HDR + 2 * ENTRY;
	for (int j = 0; j < 2; j++) {
		const unsigned char *e = blob + HDR + j * ENTRY;
		size_t z = le32(e + 1);
		assert_int_equal(e[0], 1); /* zstd: constant-ish planes */
		assert_true(z < 100);
		size_t r = ZSTD_decompress(plane, sizeof(plane), blob + pos, z);
		assert_false(ZSTD_isError(r));
		assert_int_equal(r, n);
		for (size_t i = 0; i < n; i++) {
			unsigned want = j == 0 ? (i % 2 ? 0x7f : 0x80)
					       : (i % 2 ? 0x00 : 0x01);
			assert_int_equal(plane[i], want);
		}
		pos += z;
	}
	assert_int_equal(pos, got);
}

/* n BF16 values for the layouts by hand: exponent 127 at every fourth
 * value and 126 elsewhere, or with alternate, 119 and 118 in every odd
 * segment of 256; random signs and mantissas, whose rotated low byte
 * (mantissa << 1 | sign) goes to lo[i] when lo is given. */
static void layout_values(unsigned char *src, unsigned char *lo, size_t n,
			  int alternate)
{
	for (size_t i = 0; i < n; i++) {
		unsigned top = alternate && (i / 256) % 2 ? 119 : 127;
		unsigned e = i % 4 == 3 ? top : top - 1;
		unsigned sm = (unsigned)rnd() & 0xff;
		put_elem(src + 2 * i, 2, (sm & 1) << 15 | e << 7 | sm >> 1);
		if (lo)
			lo[i] = (unsigned char)sm;
	}
}

/* Seals the expected prefix want (wlen bytes, the check over the checked
 * bytes after the header), then: the blob is want, then the n raw low
 * bytes lo, and it decodes to src. */
static void expect_layout(unsigned char *want, size_t wlen, size_t checked,
			  const unsigned char *blob, size_t got,
			  const unsigned char *lo, const unsigned char *src,
			  size_t n)
{
	unsigned char *out = malloc(2 * n);
	assert_non_null(out);
	set32(want + 20, fnv(want + HDR, checked, fnv(want, 20, 2166136261u)));
	assert_int_equal(got, wlen + n);
	assert_memory_equal(blob, want, wlen);
	assert_memory_equal(blob + wlen, lo, n);
	assert_int_equal(tcz_lossless_decode(NULL, blob, got, out, 2 * n), 0);
	assert_memory_equal(out, src, 2 * n);
	free(out);
}

/* Version 2 byte by byte, derived from docs/formats.md: 4096 BF16 values
 * whose exponent is 126, 126, 126, 127 over and over, sign and mantissa
 * random (a raw plane). Two symbols get one bit each, 126 the code 0 and
 * 127 the code 1 (canonical order); each of the four streams holds 1024
 * symbols, i.e. 128 bytes of 0b10001000, the first symbol lowest. */
static void huffman_layout_by_hand(void **state)
{
	(void)state;
	enum { N = 4096 };
	unsigned char src[2 * N], blob[2 * N + HDR], lo[N];
	size_t got;
	layout_values(src, lo, N, 0);
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_BF16, src, 2 * N, 3,
					     blob, sizeof blob, &got),
			 0);
	unsigned char want[HDR + 2 * ENTRY + 4 + 518];
	memcpy(want, "TCZL\x02\x0a\x01\x01", 8);
	set64(want + 8, 2 * N);
	set32(want + 16, 16384);
	unsigned char *t = want + HDR;
	t[0] = 2; /* Huffman, code 0 */
	set32(t + 1, 518);
	t[5] = 0; /* raw */
	set32(t + 6, N);
	memcpy(t + 10, "\x01\x7e\x7f\x11", 4); /* one code, 126..127, 1 1 */
	unsigned char *pl = t + 14;
	memcpy(pl, "\x80\x00\x80\x00\x80\x00", 6); /* streams of 128 B */
	memset(pl + 6, 0x88, 512);
	expect_layout(want, sizeof want, 2 * ENTRY + 4, blob, got, lo, src, N);
}

static unsigned char *dup_blob(const unsigned char *b, size_t len);
static int try_decode(const unsigned char *b, size_t len, size_t dst_len);

/* The pattern of shifted_layout_by_hand over 17 segments: 17 maxima of 4
 * bits leave 4 padding bits, which must be zero. */
static void shifted_padding(void)
{
	enum { N = 17 * 256 };
	unsigned char src[2 * N], blob[2 * N + HDR];
	size_t got, plen;
	layout_values(src, NULL, N, 1);
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_BF16, src, 2 * N, 3,
					     blob, sizeof blob, &got),
			 0);
	assert_int_equal(blob[4], 3);
	assert_int_equal(tcz_lossless_prefix_len(blob, got, &plen), 0);
	const unsigned char *pl = blob + plen; /* block 0, plane 0 */
	assert_memory_equal(pl, "\x08\x77\x04", 3);
	assert_int_equal(pl[3 + 8], 0x08); /* the 17th maximum, 4 bits */
	assert_int_equal(try_decode(blob, got, 2 * N), 0);
	unsigned char *c = dup_blob(blob, got);
	c[plen + 3 + 8] |= 0x80;
	assert_int_equal(try_decode(c, got, 2 * N), -EBADMSG);
	free(c);
}

/* Version 3 by hand (docs/formats.md, "A shifted plane"): 16 segments of
 * 256 BF16 values whose exponents alternate between {126, 127} and
 * {118, 119} (the larger one at every fourth value). Order 0 needs 1.81
 * bits per exponent; below each segment's maximum (127 or 119) every
 * value is 0 or 1 away, one bit each, plus 4 bits of maximum per
 * segment. */
static void shifted_layout_by_hand(void **state)
{
	(void)state;
	shifted_padding();
	enum { N = 4096, Z = 3 + 8 + 6 + 512 };
	unsigned char src[2 * N], blob[2 * N + HDR], lo[N];
	size_t got;
	layout_values(src, lo, N, 1);
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_BF16, src, 2 * N, 3,
					     blob, sizeof blob, &got),
			 0);
	unsigned char want[HDR + 2 * ENTRY + 4 + Z];
	memcpy(want, "TCZL\x03\x0a\x01\x01", 8);
	set64(want + 8, 2 * N);
	set32(want + 16, 16384);
	unsigned char *t = want + HDR;
	t[0] = 6; /* shifted, code 0 */
	set32(t + 1, Z);
	t[5] = 0; /* raw */
	set32(t + 6, N);
	memcpy(t + 10, "\x01\x00\x01\x11", 4); /* one code, 0..1, 1 1 */
	unsigned char *pl = t + 14;
	memcpy(pl, "\x08\x77\x04", 3); /* s = 8, least maximum 119, w = 4 */
	memset(pl + 3, 0x08, 8);	   /* maxima 119 + 8, 119 + 0, ... */
	memcpy(pl + 11, "\x80\x00\x80\x00\x80\x00", 6);
	memset(pl + 17, 0x77, 512); /* distances 1 1 1 0, LSB first */
	expect_layout(want, sizeof want, 2 * ENTRY + 4, blob, got, lo, src, N);
	/* what the decoder refuses in the plane (not under the header's
	 * check): s = 9 with w = 8 (8 maxima in the same 8 bytes: the streams
	 * stay in place, so only the range check can refuse it), w = 9 (18
	 * bytes of maxima), a maximum above 255, a distance above its maximum
	 * (least 0: the odd segments' maxima are 0), maxima of another
	 * length (w = 0, 8) */
	const struct {
		size_t at;
		unsigned char v, at2, v2;
	} bad[] = {{0, 9, 2, 8},	{2, 9, 0, 8}, {1, 250, 1, 250},
		   {1, 0, 1, 0},	{2, 0, 2, 0}, {2, 8, 2, 8}};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		unsigned char *c = dup_blob(blob, got);
		size_t at = sizeof want - Z;
		c[at + bad[i].at] = bad[i].v;
		c[at + bad[i].at2] = bad[i].v2;
		assert_int_equal(try_decode(c, got, 2 * N), -EBADMSG);
		free(c);
	}
}

/* A version-1 blob (what stores written before version 2 hold) still
 * decodes, whole and block by block: built here from the format, the
 * exponent plane coded with libzstd directly. */
static void version1_still_decodes(void **state)
{
	(void)state;
	enum { N = 8192 + 1000 }; /* two blocks, the second short */
	unsigned char src[2 * N], out[2 * N], pl[2][N];
	fill(TCZ_DT_BF16, src, N);
	size_t cap = 2 * N + 1024, pos, z[2][2];
	unsigned char *blob = malloc(cap);
	assert_non_null(blob);
	memcpy(blob, "TCZL\x01\x0a\x01\x01", 8);
	set64(blob + 8, 2 * N);
	set32(blob + 16, 16384);
	pos = HDR + 2 * 2 * ENTRY;
	for (size_t b = 0; b < 2; b++) {
		size_t n = b ? N - 8192 : 8192;
		for (size_t i = 0; i < n; i++) {
			unsigned x = src[2 * (8192 * b + i)] |
				     src[2 * (8192 * b + i) + 1] << 8;
			x = (x << 1 | x >> 15) & 0xffff;
			pl[0][i] = (unsigned char)(x >> 8);
			pl[1][i] = (unsigned char)x;
		}
		z[b][0] = ZSTD_compress(blob + pos, cap - pos, pl[0], n, 3);
		assert_false(ZSTD_isError(z[b][0]));
		assert_true(z[b][0] < n);
		pos += z[b][0];
		memcpy(blob + pos, pl[1], n);
		z[b][1] = n;
		pos += n;
		for (size_t j = 0; j < 2; j++) {
			unsigned char *e = blob + HDR + (2 * b + j) * ENTRY;
			e[0] = j == 0 ? 1 : 0;
			set32(e + 1, (uint32_t)z[b][j]);
		}
	}
	set32(blob + 20, fnv(blob + HDR, 4 * ENTRY, fnv(blob, 20, 2166136261u)));
	assert_int_equal(tcz_lossless_decode(NULL, blob, pos, out, 2 * N), 0);
	assert_memory_equal(out, src, 2 * N);
	size_t plen;
	assert_int_equal(tcz_lossless_prefix_len(blob, pos, &plen), 0);
	assert_int_equal(plen, HDR + 4 * ENTRY);
	tcz_lossless_block bl;
	assert_int_equal(tcz_lossless_block_at(blob, plen, 1, &bl, NULL), 0);
	memset(out, 0, sizeof out);
	assert_int_equal(tcz_lossless_decode_block(NULL, blob, plen, 1,
						   blob + bl.data_off,
						   bl.data_len, out, bl.dec_len),
			 0);
	assert_memory_equal(out, src + 16384, bl.dec_len);
	free(blob);
}

/* BF16 with a fair coin for the exponent (120/121) and uniform sign and
 * mantissa: 9 bits of entropy per 16, so the ratio is at most 16/9; a
 * two-symbol Huffman code spends exactly 1 bit, so it should come close. */
static void entropy_bound_bf16(void **state)
{
	(void)state;
	const size_t n = 1u << 19;
	unsigned char *p = malloc(2 * n);
	assert_non_null(p);
	for (size_t i = 0; i < n; i++) {
		uint64_t r = rnd();
		uint64_t e = 120 + (r & 1), s = (r >> 1) & 1, m = (r >> 2) & 0x7f;
		put_elem(p + 2 * i, 2, s << 15 | e << 7 | m);
	}
	double ratio = 0;
	size_t tot = 0;
	for (size_t off = 0; off < 2 * n; off += 1u << 20)
		tot += round_trip(NULL, TCZ_DT_BF16, p + off, 1u << 20, 3);
	ratio = (double)(2 * n) / (double)tot;
	assert_true(ratio <= 16.0 / 9.0);
	assert_true(ratio >= 1.74);
	free(p);
}

/* A 4 KiB pattern of weights repeated over 1 MiB: period 1/256 of the
 * data, so a coder that finds the repeats in every plane gets far beyond
 * what literal coding of the exponents alone allows (about 11x). */
static void repeats_are_found(void **state)
{
	(void)state;
	const size_t len = 1u << 20;
	unsigned char *p = malloc(len);
	assert_non_null(p);
	fill(TCZ_DT_F32, p, 1024);
	for (size_t off = 4096; off < len; off += 4096)
		memcpy(p + off, p, 4096);
	size_t got = round_trip(NULL, TCZ_DT_F32, p, len, 3);
	assert_true(got * 50 < len);
	free(p);
}

/* Weights whose scale changes every run of 256 values (rows) in the
 * first half and every 16 (kernels) in the second, by up to 2^-7: what
 * version 3's shifted planes are for. Specials sparser than fill()'s (a
 * NaN makes its segment's maximum 255). */
static void fill_scaled(tcz_dtype dt, unsigned char *p, size_t n)
{
	size_t es = tcz_dtype_size(dt);
	float f[16], scale = 1;
	for (size_t i = 0; i < n; i += 16) {
		size_t run = i < n / 2 ? 256 : 16, k = n - i < 16 ? n - i : 16;
		if (i % run == 0)
			scale = 1.0f / (float)(1u << (rnd() % 8));
		for (size_t j = 0; j < k; j++)
			f[j] = (float)(0.02 * gauss()) * scale;
		assert_int_equal(tcz_dtype_from_f32(dt, f, k, p + i * es), 0);
	}
	put_specials(dt, p, n, 2000);
}

/* docs/formats.md: short blocks of 16 KiB (es > 1), each decodable alone
 * from the blob's prefix and its own stored bytes, tiling the blob. */
static void blocks_one_at_a_time(void **state)
{
	(void)state;
	const tcz_dtype dts[] = {TCZ_DT_BF16, TCZ_DT_F16, TCZ_DT_F32,
				 TCZ_DT_F64, TCZ_DT_I32, TCZ_DT_BF16,
				 TCZ_DT_F16,  TCZ_DT_F32, TCZ_DT_F64};
	for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
		tcz_dtype dt = dts[d];
		int scaled = d > 4; /* the second round: version 3 */
		size_t es = tcz_dtype_size(dt);
		size_t len = (131072 + 3000) / es * es; /* a short last block */
		unsigned char *src = malloc(len), *blob = malloc(len + HDR);
		unsigned char *out = malloc(16384);
		assert_non_null(src);
		assert_non_null(blob);
		assert_non_null(out);
		if (scaled)
			fill_scaled(dt, src, len / es);
		else
			fill(dt, src, len / es);
		if (es == 8) /* f32-exact doubles have zero low planes, and
			      * constant planes earn long blocks: noise */
			for (size_t i = 0; i < len; i += 8)
				src[i] ^= (unsigned char)rnd();
		size_t got, plen, nb;
		assert_int_equal(tcz_lossless_encode(NULL, dt, src, len, 3,
						     blob, len + HDR, &got),
				 0);
		assert_int_equal(blob[6], 1); /* planes */
		assert_int_equal(le32(blob + 16), 16384 / es * es);
		size_t want_nb = (len + 16383) / 16384;
		assert_int_equal(tcz_lossless_prefix_len(blob, got, &plen), 0);
		/* floats: version 2, the exponent plane's code after the
		 * plane table; 3 when the scale moves inside blocks */
		assert_int_equal(blob[4], scaled			? 3
					  : tcz_dtype_is_float(dt) ? 2
								   : 1);
		assert_int_equal(plen, HDR + want_nb * es * ENTRY + sec_len(blob));
		/* the prefix alone, exactly sized: ASan sees any over-read */
		unsigned char *pre = malloc(plen);
		assert_non_null(pre);
		memcpy(pre, blob, plen);
		size_t at = plen;
		for (size_t i = 0; i < want_nb; i++) {
			tcz_lossless_block b;
			assert_int_equal(tcz_lossless_block_at(pre, plen, i, &b,
							       &nb),
					 0);
			assert_int_equal(nb, want_nb);
			assert_int_equal(b.data_off, at);
			assert_int_equal(b.dec_off, i * 16384);
			assert_int_equal(b.dec_len, i + 1 < nb ? 16384
							       : len - i * 16384);
			unsigned char *data = malloc(b.data_len);
			assert_non_null(data);
			memcpy(data, blob + b.data_off, b.data_len);
			memset(out, 0x5a, b.dec_len);
			assert_int_equal(tcz_lossless_decode_block(
						 NULL, pre, plen, i, data,
						 b.data_len, out, b.dec_len),
					 0);
			assert_memory_equal(out, src + b.dec_off, b.dec_len);
			assert_int_equal(tcz_lossless_decode_block(
						 NULL, pre, plen, i, data,
						 b.data_len - 1, out, b.dec_len),
					 -EINVAL);
			assert_int_equal(tcz_lossless_decode_block(
						 NULL, pre, plen, i, data,
						 b.data_len, out, b.dec_len - es),
					 -EINVAL);
			free(data);
			at += b.data_len;
		}
		assert_int_equal(at, got); /* the blocks tile the blob */
		tcz_lossless_block b;
		assert_int_equal(tcz_lossless_block_at(pre, plen, want_nb, &b,
						       &nb),
				 -ERANGE);
		assert_int_equal(tcz_lossless_block_at(pre, plen - 1, 0, &b,
						       NULL),
				 -EBADMSG);
		for (size_t k = 0; k < plen; k += 7) { /* header check */
			pre[k] ^= 0x10;
			assert_true(tcz_lossless_block_at(pre, plen, 0, &b,
							  NULL) < 0);
			pre[k] ^= 0x10;
		}
		free(pre);
		free(out);
		free(blob);
		free(src);
	}
	/* a raw blob has no blocks */
	unsigned char r[64];
	size_t got, plen;
	for (size_t i = 0; i < 64; i++)
		r[i] = (unsigned char)rnd();
	unsigned char rb[64 + HDR];
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_U8, r, 64, 3, rb,
					     sizeof rb, &got),
			 0);
	assert_int_equal(rb[6], 0);
	assert_int_equal(tcz_lossless_prefix_len(rb, got, &plen), -ENOTSUP);
}

static void bad_arguments(void **state)
{
	(void)state;
	unsigned char src[64] = {0}, b[64 + HDR];
	size_t got;
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_COUNT, src, 8, 3, b,
					     sizeof(b), &got),
			 -EINVAL);
	assert_int_equal(tcz_lossless_encode(NULL, (tcz_dtype)-1, src, 8, 3,
					     b, sizeof(b), &got),
			 -EINVAL);
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_F32, src, 6, 3, b,
					     sizeof(b), &got),
			 -EINVAL);
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_F64, src, 12, 3, b,
					     sizeof(b), &got),
			 -EINVAL);
	const int bad_levels[] = {0, -1, 23, 1000};
	for (int i = 0; i < 4; i++)
		assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_U8, src, 8,
						     bad_levels[i], b,
						     sizeof(b), &got),
				 -EINVAL);
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_U8, src, 64, 3, b,
					     64 + HDR - 1, &got),
			 -ENOBUFS);
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_U8, src, 64, 22, b,
					     64 + HDR, &got),
			 0);
}

static unsigned char *dup_blob(const unsigned char *b, size_t len)
{
	unsigned char *c = malloc(len ? len : 1);
	assert_non_null(c);
	if (len)
		memcpy(c, b, len);
	return c;
}

static int try_decode(const unsigned char *b, size_t len, size_t dst_len)
{
	unsigned char *c = dup_blob(b, len);
	unsigned char *out = malloc(dst_len ? dst_len : 1);
	size_t d;
	assert_non_null(out);
	int rs = tcz_lossless_decoded_size(c, len, &d);
	int rc = tcz_lossless_decode(NULL, c, len, out, dst_len);
	if (rs != 0)
		assert_int_equal(rs, rc);
	free(out);
	free(c);
	return rc;
}

/* A small planes-mode blob (one block) with a zstd and a raw plane. */
static unsigned char *small_blob(size_t *len, size_t *dlen)
{
	const size_t n = 3000;
	unsigned char src[2 * 3000];
	fill(TCZ_DT_BF16, src, n);
	unsigned char *b = malloc(tcz_lossless_bound(2 * n));
	assert_non_null(b);
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_BF16, src, 2 * n, 3,
					     b, tcz_lossless_bound(2 * n), len),
			 0);
	assert_int_equal(b[6], 1);
	*dlen = 2 * n;
	return b;
}

static void truncated_and_extended(void **state)
{
	(void)state;
	size_t len, dlen;
	unsigned char *b = small_blob(&len, &dlen);
	for (size_t l = 0; l < len; l++)
		assert_int_equal(try_decode(b, l, dlen), -EBADMSG);
	unsigned char *x = malloc(len + 1);
	assert_non_null(x);
	memcpy(x, b, len);
	x[len] = 0;
	assert_int_equal(try_decode(x, len + 1, dlen), -EBADMSG);
	free(x);

	/* the raw form too */
	unsigned char raw[100 + HDR];
	unsigned char src[100];
	size_t rl;
	for (int i = 0; i < 100; i++)
		src[i] = (unsigned char)(rnd() >> 56);
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_U8, src, 100, 3,
					     raw, sizeof(raw), &rl),
			 0);
	assert_int_equal(rl, 100 + HDR);
	for (size_t l = 0; l < rl; l++)
		assert_int_equal(try_decode(raw, l, 100), -EBADMSG);
	assert_int_equal(try_decode(raw, rl, 100), 0);
	assert_int_equal(tcz_lossless_decode(NULL, NULL, 0, NULL, 0),
			 -EBADMSG);
	free(b);
}

/* Every single-byte change in the header or the table is caught. */
static void flipped_header_bytes(void **state)
{
	(void)state;
	size_t len, dlen;
	unsigned char *b = small_blob(&len, &dlen);
	size_t meta = HDR + table_len(b);
	assert_true(meta < len);
	const unsigned char masks[] = {0x01, 0x80, 0xff, 0x10};
	for (size_t i = 0; i < meta; i++) {
		for (size_t m = 0; m < 4; m++) {
			b[i] ^= masks[m];
			assert_int_equal(try_decode(b, len, dlen), -EBADMSG);
			b[i] ^= masks[m];
		}
	}
	/* damage inside coded data: an error or some bytes, never a crash */
	for (size_t i = meta; i < len; i++) {
		b[i] ^= 0x5a;
		int rc = try_decode(b, len, dlen);
		assert_true(rc == 0 || rc == -EBADMSG);
		b[i] ^= 0x5a;
	}
	assert_int_equal(try_decode(b, len, dlen), 0);
	free(b);
}

static void wrong_decoded_length(void **state)
{
	(void)state;
	size_t len, dlen;
	unsigned char *b = small_blob(&len, &dlen);
	assert_int_equal(try_decode(b, len, dlen - 2), -EINVAL);
	assert_int_equal(try_decode(b, len, dlen + 2), -EINVAL);
	assert_int_equal(try_decode(b, len, 0), -EINVAL);
	/* a resealed header claiming a different length no longer tiles */
	size_t ck = table_len(b) + sec_len(b);
	unsigned char *c = dup_blob(b, len);
	set64(c + 8, dlen + 2);
	reseal(c, ck);
	assert_int_equal(try_decode(c, len, dlen + 2), -EBADMSG);
	set64(c + 8, dlen + 1); /* not a whole element */
	reseal(c, ck);
	assert_int_equal(try_decode(c, len, dlen + 1), -EBADMSG);
	free(c);
	free(b);
}

/* Structural errors behind a valid check (resealed after the edit). */
static void resealed_mutations(void **state)
{
	(void)state;
	size_t len, dlen;
	unsigned char *b = small_blob(&len, &dlen);
	size_t tl = table_len(b), ck = tl + sec_len(b);
	size_t nent = tl / ENTRY;
	unsigned char *c;
	int zi = -1, ri = -1;
	for (size_t k = 0; k < nent; k++) {
		unsigned char m = b[HDR + k * ENTRY];
		if ((m == 1 || m == 2) && zi < 0)
			zi = (int)k;
		if (m == 0 && ri < 0)
			ri = (int)k;
	}
	assert_true(zi >= 0 && ri >= 0); /* exponents coded, mantissas raw */
	assert_int_equal(b[4], 2);	 /* under the blob's Huffman code */
	assert_int_equal(b[HDR + (size_t)zi * ENTRY], 2);
	assert_int_equal(b[HDR + tl], 1); /* one code: first, last, nibbles */
	size_t sec = HDR + tl + 1;

	struct {
		size_t off;
		unsigned char v;
	} bytes[] = {
		{4, 4},			/* version */
		{HDR + (size_t)zi * ENTRY, 6}, /* shifted plane in version 2 */
		{4, 1},			/* Huffman planes in version 1 */
		{5, TCZ_DT_COUNT},	/* dtype */
		{5, TCZ_DT_U16},	/* rotation on an integer dtype */
		{5, TCZ_DT_F32},	/* other element size */
		{6, 2},			/* mode */
		{6, 0},			/* raw mode with a table */
		{7, 2},			/* transform */
		{HDR + (size_t)zi * ENTRY, 3}, /* method */
		{HDR + (size_t)zi * ENTRY, 0}, /* zstd plane called raw */
		{HDR + (size_t)ri * ENTRY, 1}, /* raw plane called zstd */
	};
	for (size_t i = 0; i < sizeof(bytes) / sizeof(*bytes); i++) {
		c = dup_blob(b, len);
		c[bytes[i].off] = bytes[i].v;
		reseal(c, c[4] == 1 ? tl : ck);
		assert_int_equal(try_decode(c, len, dlen), -EBADMSG);
		if (bytes[i].v == 6) { /* refused by the parse alone */
			size_t ds;
			assert_int_equal(tcz_lossless_decoded_size(c, len, &ds),
					 -EBADMSG);
		}
		free(c);
	}
	/* the code: a length above 11, lengths that are not a complete
	 * code (one length raised: Kraft sum below 1), the first symbol
	 * absent, first > last; the nibbles' count stays the same */
	for (int k = 0; k < 4; k++) {
		c = dup_blob(b, len);
		unsigned char *nib = c + sec + 2;
		if (k == 0)
			nib[0] = (unsigned char)((nib[0] & 0xf0) | 12);
		else if (k == 1)
			nib[0] = (unsigned char)((nib[0] & 0xf0) |
						 ((nib[0] & 15) + 1));
		else if (k == 2)
			nib[0] &= 0xf0;
		else
			c[sec] = 1, c[sec + 1] = 0;
		reseal(c, ck);
		assert_int_equal(try_decode(c, len, dlen), -EBADMSG);
		free(c);
	}
	const uint32_t blocks[] = {0, 3, (1u << 24) + 2, 0xffffffffu};
	for (size_t i = 0; i < 4; i++) {
		c = dup_blob(b, len);
		set32(c + 16, blocks[i]);
		reseal(c, ck);
		assert_int_equal(try_decode(c, len, dlen), -EBADMSG);
		free(c);
	}
	/* lengths: raw != n, coded == 0, coded one longer (a trailing byte
	 * behind the last stream, blob extended to keep the tiling) */
	c = dup_blob(b, len);
	set32(c + HDR + (size_t)ri * ENTRY + 1,
	      le32(c + HDR + (size_t)ri * ENTRY + 1) - 1);
	reseal(c, ck);
	assert_int_equal(try_decode(c, len - 1, dlen), -EBADMSG);
	free(c);
	c = dup_blob(b, len);
	set32(c + HDR + (size_t)zi * ENTRY + 1, 0);
	reseal(c, ck);
	assert_int_equal(try_decode(c, len, dlen), -EBADMSG);
	free(c);
	size_t zoff = HDR + tl + sec_len(b);
	for (int k = 0; k < zi; k++)
		zoff += le32(b + HDR + (size_t)k * ENTRY + 1);
	size_t zlen = le32(b + HDR + (size_t)zi * ENTRY + 1);
	c = malloc(len + 1);
	assert_non_null(c);
	memcpy(c, b, zoff + zlen);
	c[zoff + zlen] = 0x00;
	memcpy(c + zoff + zlen + 1, b + zoff + zlen, len - zoff - zlen);
	set32(c + HDR + (size_t)zi * ENTRY + 1, (uint32_t)zlen + 1);
	reseal(c, ck);
	assert_int_equal(try_decode(c, len + 1, dlen), -EBADMSG);
	free(c);
	/* stream lengths destroyed */
	c = dup_blob(b, len);
	c[zoff] ^= 0xff;
	assert_int_equal(try_decode(c, len, dlen), -EBADMSG);
	free(c);
	/* raw mode with a block length or a transform */
	unsigned char raw[8 + HDR], src[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	size_t rl;
	assert_int_equal(tcz_lossless_encode(NULL, TCZ_DT_F32, src, 8, 3, raw,
					     sizeof(raw), &rl),
			 0);
	assert_int_equal(raw[6], 0);
	raw[7] = 1;
	reseal(raw, 0);
	assert_int_equal(try_decode(raw, rl, 8), -EBADMSG);
	raw[7] = 0;
	set32(raw + 16, 8);
	reseal(raw, 0);
	assert_int_equal(try_decode(raw, rl, 8), -EBADMSG);
	set32(raw + 16, 0);
	reseal(raw, 0);
	assert_int_equal(try_decode(raw, rl, 8), 0);
	free(b);
}

static void garbage(void **state)
{
	(void)state;
	unsigned char g[300];
	for (int t = 0; t < 2000; t++) {
		size_t len = rnd() % sizeof(g);
		for (size_t i = 0; i < len; i++)
			g[i] = (unsigned char)(rnd() >> 56);
		if (t & 1 && len >= 8) {
			memcpy(g, "TCZL", 4);
			g[4] = 1;
			g[5] = (unsigned char)(rnd() % TCZ_DT_COUNT);
			g[6] = (unsigned char)(rnd() & 1);
			g[7] = 0;
		}
		int rc = try_decode(g, len, rnd() % 64);
		assert_true(rc == -EBADMSG || rc == -EINVAL);
	}
}

static int load_model(const char *file, tcz_dtype dt, unsigned char **out,
		      size_t *len)
{
	const char *dir = tu_models_dir();
	if (!dir)
		return -ENOENT;
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	tu_tensor *t;
	size_t nt, total = 0, es = tcz_dtype_size(dt);
	int rc = tu_load_safetensors(path, &t, &nt);
	if (rc)
		return rc;
	for (size_t i = 0; i < nt; i++)
		total += t[i].n;
	unsigned char *p = malloc(total * es);
	assert_non_null(p);
	size_t at = 0;
	/* back to the file's dtype: widening was exact, so this is too */
	for (size_t i = 0; i < nt; i++) {
		assert_int_equal(tcz_dtype_from_f32(dt, t[i].data, t[i].n,
						     p + at),
				 0);
		at += t[i].n * es;
	}
	tu_free_tensors(t, nt);
	*out = p;
	*len = at;
	return 0;
}

/* Chunks of 1 MiB as the store uses them; returns the ratio, and the
 * ratio of plain zstd at the same level on the same chunks. */
static double model_ratio(const char *file, tcz_dtype dt, double *plain)
{
	unsigned char *p;
	size_t len;
	int rc = load_model(file, dt, &p, &len);
	if (rc == -ENOENT)
		return 0;
	assert_int_equal(rc, 0);
	tcz_lossless_ctx *ctx = tcz_lossless_ctx_create();
	size_t tot = 0, ztot = 0, zcap = ZSTD_compressBound(1u << 20);
	unsigned char *z = malloc(zcap);
	assert_non_null(z);
	for (size_t off = 0; off < len; off += 1u << 20) {
		size_t l = len - off < (1u << 20) ? len - off : (1u << 20);
		tot += round_trip(ctx, dt, p + off, l,
				  TCZ_LOSSLESS_LEVEL_DEFAULT);
		size_t r = ZSTD_compress(z, zcap, p + off, l,
					 TCZ_LOSSLESS_LEVEL_DEFAULT);
		assert_false(ZSTD_isError(r));
		ztot += r;
	}
	tcz_lossless_ctx_free(ctx);
	free(z);
	free(p);
	*plain = (double)len / (double)ztot;
	return (double)len / (double)tot;
}

static void real_models(void **state)
{
	(void)state;
	assert_non_null(tu_models_dir());
	const struct {
		const char *file;
		tcz_dtype dt;
		double min;
	} m[] = {
		{"retsim.bf16.safetensors", TCZ_DT_BF16, 1.40},
		{"retsim.f32.safetensors", TCZ_DT_F32, 1.15},
		{"retsim.f16.safetensors", TCZ_DT_F16, 1.0},
		{"stories260K.bf16.safetensors", TCZ_DT_BF16, 1.0},
		{"stories260K.f32.safetensors", TCZ_DT_F32, 1.0},
		{"silero_vad_16k.f32.safetensors", TCZ_DT_F32, 1.0},
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(*m); i++) {
		double plain = 0, r = model_ratio(m[i].file, m[i].dt, &plain);
		if (r == 0)
			continue; /* that file is absent */
		print_message("%-32s %.4fx (plain zstd %.4fx)\n", m[i].file, r,
			      plain);
		assert_true(r >= m[i].min);
		assert_true(r > plain);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(all_dtypes_all_lengths),
		cmocka_unit_test(other_levels),
		cmocka_unit_test(random_data_goes_raw),
		cmocka_unit_test(empty_input),
		cmocka_unit_test(planes_layout_by_hand),
		cmocka_unit_test(huffman_layout_by_hand),
		cmocka_unit_test(shifted_layout_by_hand),
		cmocka_unit_test(version1_still_decodes),
		cmocka_unit_test(entropy_bound_bf16),
		cmocka_unit_test(repeats_are_found),
		cmocka_unit_test(blocks_one_at_a_time),
		cmocka_unit_test(bad_arguments),
		cmocka_unit_test(truncated_and_extended),
		cmocka_unit_test(flipped_header_bytes),
		cmocka_unit_test(wrong_decoded_length),
		cmocka_unit_test(resealed_mutations),
		cmocka_unit_test(garbage),
	};
	const struct CMUnitTest models[] = {
		cmocka_unit_test(real_models),
	};
	return tu_main(argc, argv, tests, sizeof tests / sizeof tests[0], models,
		       sizeof models / sizeof models[0]);
}
