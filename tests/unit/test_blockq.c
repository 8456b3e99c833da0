/* Block-quantized coder: exact round trips for every block type in every
 * mode on random and realistic blocks of 0..many blocks, the blob layout
 * of docs/draft-gguf.md checked byte by byte on tiny blobs derived by
 * hand, malformed blobs, and (models) real Q8_0 / Q4_0 blocks made from
 * the F32 models in ../shared/models, with what the planes gain over
 * plain zstd -3 / -19 printed. */
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

#include "codec/blockq.h"
#include "codec/ggml.h"
#include "codec/half.h"
#include "tests/unit/testutil_models.h"

#define HDR 24

static uint64_t rng = 0x2545f4914f6cdd1dull;

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

static void set32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* FNV-1a 32 as the format document states it. */
static uint32_t fnv(const unsigned char *p, size_t n, uint32_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static uint32_t check_of(const unsigned char *b, size_t tab_len)
{
	return fnv(b + HDR, tab_len, fnv(b, 20, 2166136261u));
}

static void block_types(uint32_t *out, size_t *n)
{
	*n = 0;
	for (uint32_t id = 0; id < TCZ_GGML_TYPE_LIMIT; id++)
		if (tcz_ggml_is_block(id))
			out[(*n)++] = id;
}

/* Realistic blocks: every f16 field found in the layouts holds a scale
 * near 0.01 (exponent bytes repeat), the rest small quants; built from
 * the type's own dequantizable structure is not needed: only statistics
 * matter here. A random fraction of bytes makes them less regular. */
static void fill_real(uint32_t type, unsigned char *b, size_t n)
{
	tcz_ggml_info t;
	tcz_ggml_type(type, &t);
	for (size_t i = 0; i < n * t.block_bytes; i++)
		b[i] = (unsigned char)(0x77 + (int)(gauss() * 20));
	for (size_t k = 0; k < n; k++) {
		unsigned char *blk = b + k * t.block_bytes;
		uint16_t h = tcz_f32_to_f16((float)(0.01 * (1 + fabs(gauss()))));
		/* the first two bytes are an f16 scale in most formats */
		blk[0] = (unsigned char)h;
		blk[1] = (unsigned char)(h >> 8);
	}
}

static void round_trip(tcz_blockq_ctx *ctx, uint32_t type,
		       const unsigned char *src, size_t n, int mode)
{
	tcz_ggml_info t;
	tcz_ggml_type(type, &t);
	size_t len = n * t.block_bytes;
	size_t cap = tcz_blockq_bound(type, n) + TCZ_BLOCKQ_FORCE_SLACK +
		     ZSTD_compressBound(len) - len;
	unsigned char *blob = malloc(cap), *back = malloc(len + 1);
	size_t got = 0;
	int rc = tcz_blockq_encode_mode(ctx, type, src, n, 3, mode, blob, cap,
					&got);
	if (mode != TCZ_BLOCKQ_BEST && mode != TCZ_BLOCKQ_RAW && n == 0) {
		assert_int_equal(rc, -EINVAL);
		free(blob), free(back);
		return;
	}
	if (rc)
		fail_msg("%s n=%zu mode %d: encode %d", t.name, n, mode, rc);
	if (mode == TCZ_BLOCKQ_BEST)
		assert_true(got <= tcz_blockq_bound(type, n));
	if (mode != TCZ_BLOCKQ_BEST && n)
		assert_int_equal(blob[5], mode);
	uint32_t pt;
	uint64_t pn;
	size_t dl;
	assert_int_equal(tcz_blockq_peek(blob, got, &pt, &pn, &dl), 0);
	assert_int_equal(pt, type);
	assert_int_equal(pn, n);
	assert_int_equal(dl, len);
	memset(back, 0xa5, len + 1);
	rc = tcz_blockq_decode(ctx, blob, got, back, len);
	if (rc)
		fail_msg("%s n=%zu mode %d: decode %d", t.name, n, mode, rc);
	if (memcmp(back, src, len))
		fail_msg("%s n=%zu mode %d: bytes differ", t.name, n, mode);
	assert_int_equal(back[len], 0xa5);
	/* without a context too */
	assert_int_equal(tcz_blockq_decode(NULL, blob, got, back, len), 0);
	assert_memory_equal(back, src, len);
	free(blob);
	free(back);
}

static void every_type_every_mode(void **state)
{
	(void)state;
	static const size_t lens[] = {0, 1, 2, 3, 7, 64, 1000};
	uint32_t types[64];
	size_t nt;
	tcz_blockq_ctx *ctx = tcz_blockq_ctx_create();
	assert_non_null(ctx);
	block_types(types, &nt);
	assert_true(nt >= 25);
	for (size_t i = 0; i < nt; i++) {
		tcz_ggml_info t;
		tcz_ggml_type(types[i], &t);
		for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
			size_t n = lens[l];
			unsigned char *b = malloc(n * t.block_bytes + 1);
			for (int kind = 0; kind < 2; kind++) {
				if (kind == 0)
					for (size_t k = 0; k < n * t.block_bytes; k++)
						b[k] = (unsigned char)rnd();
				else
					fill_real(types[i], b, n);
				for (int mode = TCZ_BLOCKQ_BEST;
				     mode <= TCZ_BLOCKQ_PLANES; mode++)
					round_trip(ctx, types[i], b, n, mode);
			}
			free(b);
		}
	}
	tcz_blockq_ctx_free(ctx);
}

static int cmp_u8(const void *a, const void *b)
{
	return *(const unsigned char *)a - *(const unsigned char *)b;
}

/* In planes mode every byte of a block belongs to exactly one plane: a
 * forced planes blob of one random (incompressible) block keeps every
 * plane raw, the plane lengths add up to the block, and the stored bytes
 * are the block's bytes rearranged. (The round trips above also show
 * that no byte is left out: the decoder would leave it unwritten.) */
static void planes_tile_blocks(void **state)
{
	(void)state;
	uint32_t types[64];
	size_t nt;
	block_types(types, &nt);
	for (size_t i = 0; i < nt; i++) {
		tcz_ggml_info t;
		tcz_ggml_type(types[i], &t);
		unsigned char b[512], blob[1024], sorted[512];
		for (size_t k = 0; k < t.block_bytes; k++)
			b[k] = (unsigned char)rnd();
		size_t got;
		assert_int_equal(tcz_blockq_encode_mode(NULL, types[i], b, 1, 3,
							TCZ_BLOCKQ_PLANES, blob,
							sizeof blob, &got),
				 0);
		unsigned planes = blob[6];
		assert_true(planes >= 2 && planes <= 12);
		size_t sum = 0;
		for (unsigned p = 0; p < planes; p++) {
			assert_int_equal(blob[HDR + 5 * p], 0);
			sum += le32(blob + HDR + 5 * p + 1);
		}
		assert_int_equal(sum, t.block_bytes);
		assert_int_equal(got, HDR + 5 * planes + t.block_bytes);
		memcpy(sorted, blob + HDR + 5 * planes, t.block_bytes);
		qsort(sorted, t.block_bytes, 1, cmp_u8);
		qsort(b, t.block_bytes, 1, cmp_u8);
		assert_memory_equal(sorted, b, t.block_bytes);
	}
}

/* A raw Q8_0 blob of one block and a planes Q4_0 blob of two blocks,
 * written out byte by byte from the format document. */
static void golden_bytes(void **state)
{
	(void)state;
	unsigned char q8[34], blob[256];
	for (int k = 0; k < 34; k++)
		q8[k] = (unsigned char)(k * 7);
	size_t got;
	assert_int_equal(tcz_blockq_encode_mode(NULL, TCZ_GGML_Q8_0, q8, 1, 3,
						TCZ_BLOCKQ_RAW, blob,
						sizeof blob, &got),
			 0);
	unsigned char want[24] = {
		0x54, 0x43, 0x5a, 0x42, /* "TCZB" */
		0x01,			/* version 1 */
		0x00,			/* mode raw */
		0x00,			/* planes: none */
		0x00,			/* reserved */
		0x08, 0x00, 0x00, 0x00, /* ggml type 8, Q8_0 */
		0x01, 0,    0,	  0, 0, 0, 0, 0, /* one block */
	};
	set32(want + 20, fnv(want, 20, 2166136261u));
	assert_int_equal(got, 24 + 34);
	assert_memory_equal(blob, want, 24);
	assert_memory_equal(blob + 24, q8, 34);
	/* the best mode of these 34 bytes is raw too */
	assert_int_equal(tcz_blockq_encode(NULL, TCZ_GGML_Q8_0, q8, 1, 3,
					   blob, sizeof blob, &got),
			 0);
	assert_int_equal(got, 58);
	assert_int_equal(blob[5], 0);

	/* Q4_0 x 2, planes: d.hi (byte 1 of each block), d.lo (byte 0),
	 * qs (bytes 2..17), each stored raw: 2, 2 and 32 bytes */
	unsigned char q4[36];
	for (int k = 0; k < 36; k++)
		q4[k] = (unsigned char)(0x10 + k);
	assert_int_equal(tcz_blockq_encode_mode(NULL, TCZ_GGML_Q4_0, q4, 2, 3,
						TCZ_BLOCKQ_PLANES, blob,
						sizeof blob, &got),
			 0);
	unsigned char w2[24 + 15 + 36] = {
		0x54, 0x43, 0x5a, 0x42, 0x01,
		0x02,			/* mode planes */
		0x03,			/* three planes */
		0x00, 0x02, 0x00, 0x00, 0x00, /* Q4_0 */
		0x02, 0, 0, 0, 0, 0, 0, 0,    /* two blocks */
		0, 0, 0, 0,		/* check, below */
		0x00, 0x02, 0, 0, 0,	/* plane 0 raw, 2 bytes */
		0x00, 0x02, 0, 0, 0,	/* plane 1 raw, 2 bytes */
		0x00, 0x20, 0, 0, 0,	/* plane 2 raw, 32 bytes */
		0x11, 0x23,		/* byte 1 of blocks 0 and 1 */
		0x10, 0x22,		/* byte 0 */
	};
	for (int k = 0; k < 16; k++) {
		w2[24 + 15 + 4 + k] = (unsigned char)(0x12 + k);
		w2[24 + 15 + 4 + 16 + k] = (unsigned char)(0x24 + k);
	}
	set32(w2 + 20, check_of(w2, 15));
	assert_int_equal(got, sizeof w2);
	assert_memory_equal(blob, w2, sizeof w2);

	/* an empty run: a bare raw header */
	assert_int_equal(tcz_blockq_encode(NULL, TCZ_GGML_Q6_K, NULL, 0, 3,
					   blob, sizeof blob, &got),
			 0);
	assert_int_equal(got, 24);
	assert_int_equal(blob[8], 14);
	assert_int_equal(tcz_blockq_decode(NULL, blob, got, NULL, 0), 0);
}

static void bad_arguments(void **state)
{
	(void)state;
	unsigned char b[64] = {0}, blob[256];
	size_t got;
	assert_int_equal(tcz_blockq_bound(TCZ_GGML_F32, 4), 0);
	assert_int_equal(tcz_blockq_bound(4, 4), 0);
	assert_int_equal(tcz_blockq_bound(TCZ_GGML_Q8_0, SIZE_MAX / 8), 0);
	assert_int_equal(tcz_blockq_bound(TCZ_GGML_Q8_0, 2), 24 + 68);
	assert_int_equal(tcz_blockq_encode(NULL, TCZ_GGML_F16, b, 1, 3, blob,
					   sizeof blob, &got),
			 -EINVAL);
	assert_int_equal(tcz_blockq_encode(NULL, TCZ_GGML_Q8_0, b, 1, 0, blob,
					   sizeof blob, &got),
			 -EINVAL);
	assert_int_equal(tcz_blockq_encode(NULL, TCZ_GGML_Q8_0, b, 1, 23, blob,
					   sizeof blob, &got),
			 -EINVAL);
	assert_int_equal(tcz_blockq_encode(NULL, TCZ_GGML_Q8_0, NULL, 1, 3,
					   blob, sizeof blob, &got),
			 -EINVAL);
	assert_int_equal(tcz_blockq_encode(NULL, TCZ_GGML_Q8_0, b, 1, 3, blob,
					   57, &got),
			 -ENOBUFS);
	assert_int_equal(tcz_blockq_encode_mode(NULL, TCZ_GGML_Q8_0, b, 1, 3, 3,
						blob, sizeof blob, &got),
			 -EINVAL);
	assert_int_equal(tcz_blockq_encode_mode(NULL, TCZ_GGML_Q8_0, b, 1, 3,
						TCZ_BLOCKQ_PLANES, blob, 60,
						&got),
			 -ENOBUFS);
	/* a wrong destination length */
	assert_int_equal(tcz_blockq_encode(NULL, TCZ_GGML_Q8_0, b, 1, 3, blob,
					   sizeof blob, &got),
			 0);
	assert_int_equal(tcz_blockq_decode(NULL, blob, got, b, 33), -EINVAL);
	assert_int_equal(tcz_blockq_decode(NULL, blob, got, b, 35), -EINVAL);
}

/* A planes blob of realistic blocks, damaged in many ways. */
static void malformed(void **state)
{
	(void)state;
	enum { N = 200 };
	unsigned char *src = malloc(N * 34), *back = malloc(N * 34);
	size_t cap = tcz_blockq_bound(TCZ_GGML_Q8_0, N), got;
	unsigned char *blob = malloc(cap + 64), *m = malloc(cap + 64);
	fill_real(TCZ_GGML_Q8_0, src, N);
	assert_int_equal(tcz_blockq_encode(NULL, TCZ_GGML_Q8_0, src, N, 3,
					   blob, cap, &got),
			 0);
	assert_int_equal(blob[5], 2); /* planes */
	size_t tab = 15;
	/* every truncation and one byte more */
	for (size_t cut = 0; cut < got; cut++)
		assert_int_equal(tcz_blockq_peek(blob, cut, NULL, NULL, NULL),
				 -EBADMSG);
	memcpy(m, blob, got);
	m[got] = 0;
	assert_int_equal(tcz_blockq_decode(NULL, m, got + 1, back, N * 34),
			 -EBADMSG);
	/* every single byte of the header and table flipped: the check
	 * catches it, or a field check does */
	for (size_t i = 0; i < HDR + tab; i++) {
		memcpy(m, blob, got);
		m[i] ^= 0x40;
		assert_int_equal(tcz_blockq_decode(NULL, m, got, back, N * 34),
				 -EBADMSG);
	}
	/* resealed mutations (the check recomputed): each is refused by a
	 * field check */
	struct {
		size_t at;
		unsigned char v;
	} muts[] = {
		{4, 2},	      /* version 2 */
		{5, 3},	      /* mode 3 */
		{6, 4},	      /* plane count 4 for Q8_0 */
		{7, 1},	      /* reserved */
		{8, 0},	      /* type F32 */
		{8, 4},	      /* removed type */
		{12, 201},    /* block count off by one */
		{19, 0x80},   /* block count huge */
		{HDR, 2},     /* plane 0 method 2 */
		{HDR + 1, 0}, /* plane 0 length changed */
	};
	for (size_t i = 0; i < sizeof muts / sizeof muts[0]; i++) {
		memcpy(m, blob, got);
		m[muts[i].at] = muts[i].v;
		set32(m + 20, check_of(m, m[5] == 2 && m[6] == 3 ? tab : 0));
		int rc = tcz_blockq_decode(NULL, m, got, back, N * 34);
		if (rc != -EBADMSG && rc != -EINVAL)
			fail_msg("mutation %zu: rc %d", i, rc);
	}
	/* raw-method plane whose length is not n * len */
	memcpy(m, blob, got);
	m[HDR] = 0;
	set32(m + 20, check_of(m, tab));
	assert_int_equal(tcz_blockq_decode(NULL, m, got, back, N * 34),
			 -EBADMSG);
	/* zstd data damaged: an error, or (undetectable here) wrong bytes of
	 * the right length, never a crash */
	for (size_t i = HDR + tab; i < got; i += 7) {
		memcpy(m, blob, got);
		m[i] ^= 0xff;
		int rc = tcz_blockq_decode(NULL, m, got, back, N * 34);
		assert_true(rc == 0 || rc == -EBADMSG);
	}
	/* a zstd-mode header over planes data */
	memcpy(m, blob, got);
	m[5] = 1, m[6] = 0;
	set32(m + 20, check_of(m, 0));
	assert_int_equal(tcz_blockq_decode(NULL, m, got, back, N * 34),
			 -EBADMSG);
	/* a raw header whose length disagrees */
	memcpy(m, blob, got);
	m[5] = 0, m[6] = 0;
	set32(m + 20, check_of(m, 0));
	assert_int_equal(tcz_blockq_peek(m, got, NULL, NULL, NULL), -EBADMSG);
	/* garbage never decodes to a crash */
	for (int r = 0; r < 2000; r++) {
		size_t n = rnd() % 200;
		for (size_t k = 0; k < n; k++)
			m[k] = (unsigned char)rnd();
		if (n >= 4)
			set32(m, 0x425a4354u);
		size_t dl;
		if (tcz_blockq_peek(m, n, NULL, NULL, &dl) == 0 && dl <= N * 34)
			(void)tcz_blockq_decode(NULL, m, n, back, dl);
	}
	assert_int_equal(tcz_blockq_peek(NULL, 0, NULL, NULL, NULL), -EBADMSG);
	free(src), free(back), free(blob), free(m);
}

/* ---- real blocks ---------------------------------------------------------- */

static void put_f16(unsigned char *p, float v)
{
	uint16_t h = tcz_f32_to_f16(v);
	p[0] = (unsigned char)h;
	p[1] = (unsigned char)(h >> 8);
}

/* The published reference quantizers (ggml's quantize_row_q8_0_ref /
 * q4_0_ref), for blocks of 32 values. */
static void quant_q8_0(const float *x, unsigned char *b)
{
	float amax = 0;
	for (int j = 0; j < 32; j++)
		amax = fmaxf(amax, fabsf(x[j]));
	float d = amax / 127, id = d ? 1.0f / d : 0.0f;
	put_f16(b, d);
	for (int j = 0; j < 32; j++)
		b[2 + j] = (unsigned char)(int8_t)roundf(x[j] * id);
}

static void quant_q4_0(const float *x, unsigned char *b)
{
	float amax = 0, max = 0;
	for (int j = 0; j < 32; j++)
		if (amax < fabsf(x[j]))
			amax = fabsf(x[j]), max = x[j];
	float d = max / -8, id = d ? 1.0f / d : 0.0f;
	put_f16(b, d);
	for (int j = 0; j < 16; j++) {
		int a = (int)(int8_t)(x[j] * id + 8.5f);
		int c = (int)(int8_t)(x[16 + j] * id + 8.5f);
		b[2 + j] = (unsigned char)((a > 15 ? 15 : a) |
					   (c > 15 ? 15 : c) << 4);
	}
}

static size_t zstd_size(const void *p, size_t n, int level)
{
	size_t cap = ZSTD_compressBound(n);
	void *d = malloc(cap);
	size_t r = ZSTD_compress(d, cap, p, n, level);
	free(d);
	assert_false(ZSTD_isError(r));
	return r;
}

/* Chunks of at most 1 MiB of whole blocks, as the importer will pass. */
static size_t coded_size(tcz_blockq_ctx *ctx, uint32_t type,
			 const unsigned char *b, size_t n, size_t bb, int level,
			 int mode)
{
	size_t per = (1u << 20) / bb, total = 0;
	for (size_t k = 0; k < n; k += per) {
		size_t c = n - k < per ? n - k : per;
		size_t cap = tcz_blockq_bound(type, c) + TCZ_BLOCKQ_FORCE_SLACK +
			     ZSTD_compressBound(c * bb) - c * bb;
		unsigned char *blob = malloc(cap), *back = malloc(c * bb);
		size_t got;
		assert_int_equal(tcz_blockq_encode_mode(ctx, type, b + k * bb, c,
							level, mode, blob, cap,
							&got),
				 0);
		assert_int_equal(tcz_blockq_decode(ctx, blob, got, back, c * bb),
				 0);
		assert_memory_equal(back, b + k * bb, c * bb);
		total += got;
		free(blob), free(back);
	}
	return total;
}

static void real_blocks(void **state)
{
	(void)state;
	static const char *files[] = {"stories260K.f32.safetensors",
				      "retsim.f32.safetensors",
				      "silero_vad_16k.f32.safetensors"};
	const char *dir = tu_models_dir();
	tcz_blockq_ctx *ctx = tcz_blockq_ctx_create();
	assert_non_null(dir);
	printf("%-32s %-5s %9s | %8s %8s %8s | %8s %8s %8s\n", "model", "type",
	       "bytes", "zstd-3", "planes-3", "best-3", "zstd-19", "planes-19",
	       "best-19");
	for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, files[f]);
		tu_tensor *t;
		size_t nt;
		if (tu_load_safetensors(path, &t, &nt))
			fail_msg("cannot load %s", path);
		for (int q = 0; q < 2; q++) {
			uint32_t type = q ? TCZ_GGML_Q4_0 : TCZ_GGML_Q8_0;
			size_t bb = q ? 18 : 34, n = 0;
			for (size_t i = 0; i < nt; i++)
				n += t[i].n / 32;
			unsigned char *b = malloc(n * bb + 1), *p = b;
			/* every tensor's values in runs of 32 (the tail of a
			 * tensor that is not whole blocks is left out) */
			for (size_t i = 0; i < nt; i++)
				for (size_t k = 0; k + 32 <= t[i].n; k += 32) {
					if (q)
						quant_q4_0(t[i].data + k, p);
					else
						quant_q8_0(t[i].data + k, p);
					p += bb;
				}
			size_t len = n * bb;
			size_t z3 = zstd_size(b, len, 3), z19 = zstd_size(b, len, 19);
			size_t p3 = coded_size(ctx, type, b, n, bb, 3,
					       TCZ_BLOCKQ_PLANES);
			size_t p19 = coded_size(ctx, type, b, n, bb, 19,
						TCZ_BLOCKQ_PLANES);
			size_t b3 = coded_size(ctx, type, b, n, bb, 3,
					       TCZ_BLOCKQ_BEST);
			size_t b19 = coded_size(ctx, type, b, n, bb, 19,
						TCZ_BLOCKQ_BEST);
			printf("%-32s %-5s %9zu | %7.4fx %7.4fx %7.4fx | %7.4fx "
			       "%7.4fx %7.4fx\n",
			       files[f], q ? "Q4_0" : "Q8_0", len,
			       (double)len / z3, (double)len / p3,
			       (double)len / b3, (double)len / z19,
			       (double)len / p19, (double)len / b19);
			/* the best is never worse than either candidate
			 * (plus headers of 24 bytes per chunk) */
			assert_true(b3 <= p3 && b19 <= p19);
			assert_true(b3 <= z3 + 24 * (len / (1u << 20) + 1));
			free(b);
		}
		tu_free_tensors(t, nt);
	}
	tcz_blockq_ctx_free(ctx);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_type_every_mode),
		cmocka_unit_test(planes_tile_blocks),
		cmocka_unit_test(golden_bytes),
		cmocka_unit_test(bad_arguments),
		cmocka_unit_test(malformed),
	};
	const struct CMUnitTest models[] = {
		cmocka_unit_test(real_blocks),
	};
	return tu_main(argc, argv, tests, sizeof tests / sizeof tests[0], models,
		       sizeof models / sizeof models[0]);
}
