/* Device images (codec/asic.h): the worked example of docs/formats.md
 * byte by byte, the corpus images the Python writer made, placement
 * (never over SRAM, balanced, splits, spills, a model too large),
 * determinism, the f16/i8 error bounds, piecewise reads, and the checker
 * against flipped bytes, truncation and the malformed corpus. */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/asic.h"
#include "codec/half.h"

static uint64_t rng = 12345;

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

static uint64_t below(uint64_t n)
{
	return next() % n;
}

/* A model: matrices and their values (row-major, r_left*n x r_right). */
typedef struct model {
	size_t n;
	tcz_asic_matrix m[512];
	float *v[512];
	char names[512][24];
	/* fetch statistics */
	uint64_t calls, max_floats;
} model;

static void add(model *md, const char *name, uint32_t core, uint64_t rl,
		uint64_t n, uint64_t rr, const float *vals)
{
	size_t i = md->n++;
	assert_true(i < 512);
	snprintf(md->names[i], sizeof md->names[i], "%s", name);
	md->m[i] = (tcz_asic_matrix){
		.name = md->names[i],
		.name_len = strlen(md->names[i]),
		.core = core,
		.r_left = rl,
		.n = n,
		.r_right = rr,
	};
	size_t cnt = (size_t)(rl * n * rr);
	md->v[i] = malloc((cnt ? cnt : 1) * sizeof(float));
	assert_non_null(md->v[i]);
	for (size_t k = 0; k < cnt; k++)
		md->v[i][k] = vals ? vals[k] : (float)gauss();
}

static void model_free(model *md)
{
	for (size_t i = 0; i < md->n; i++)
		free(md->v[i]);
	md->n = 0;
}

static int fetch(void *ctx, size_t matrix, uint64_t row0, uint64_t nrows,
		 float *out)
{
	model *md = ctx;
	const tcz_asic_matrix *m = &md->m[matrix];
	assert_true(matrix < md->n);
	assert_true(row0 + nrows <= m->r_left * m->n);
	md->calls++;
	if (nrows * m->r_right > md->max_floats)
		md->max_floats = nrows * m->r_right;
	memcpy(out, md->v[matrix] + row0 * m->r_right,
	       (size_t)(nrows * m->r_right) * sizeof(float));
	return 0;
}

static tcz_asic_profile prof(const char *name, uint32_t cores, uint64_t sram,
			     uint32_t tile, uint32_t lanes, tcz_asic_dtype dt)
{
	tcz_asic_profile p;
	memset(&p, 0, sizeof p);
	snprintf(p.name, sizeof p.name, "%s", name);
	p.cores = cores;
	p.sram_bytes = sram;
	p.tile_bytes = tile;
	p.lanes = lanes;
	p.dtype = dt;
	return p;
}

/* Lays out and writes the whole image (malloc'd); checks it. */
static unsigned char *image(const tcz_asic_profile *p, model *md,
			    tcz_asic_layout **lo)
{
	tcz_asic_layout *l = NULL;
	char err[256] = "";
	int rc = tcz_asic_layout_new(p, md->m, md->n, &l, err, sizeof err);
	if (rc)
		fail_msg("layout: %d %s", rc, err);
	uint64_t sum;
	assert_int_equal(tcz_asic_checksum(l, fetch, md, &sum), 0);
	tcz_asic_set_checksum(l, sum);
	unsigned char *img = malloc((size_t)l->image_bytes);
	assert_non_null(img);
	assert_int_equal(tcz_asic_read(l, 0, (size_t)l->image_bytes, img, fetch,
				       md), 0);
	rc = tcz_asic_check(img, (size_t)l->image_bytes, err, sizeof err);
	if (rc)
		fail_msg("check: %d %s", rc, err);
	if (lo)
		*lo = l;
	else
		tcz_asic_layout_free(l);
	return img;
}

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc((size_t)n + 1);
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return b;
}

static int check_copy(const unsigned char *b, size_t len, char *err,
		      size_t errlen)
{
	unsigned char *c = malloc(len ? len : 1);
	assert_non_null(c);
	if (len)
		memcpy(c, b, len);
	int rc = tcz_asic_check(c, len, err, errlen);
	free(c);
	return rc;
}

/* ---- profiles ---- */

static void profiles(void **state)
{
	(void)state;
	tcz_asic_profile p;
	char err[256];
	tcz_asic_profile_newport(&p);
	assert_string_equal(p.name, "newport");
	assert_int_equal(p.cores, 256);
	assert_int_equal(p.sram_bytes, 8u << 20);
	assert_int_equal(p.tile_bytes, 64);
	assert_int_equal(p.lanes, 16);
	assert_int_equal(p.dtype, TCZ_ASIC_F32);
	assert_int_equal(tcz_asic_profile_check(&p, err, sizeof err), 0);
	assert_int_equal(tcz_asic_profile_check(&p, NULL, 0), 0);

	tcz_asic_dtype dt;
	assert_int_equal(tcz_asic_dtype_parse("i8", &dt), 0);
	assert_int_equal(dt, TCZ_ASIC_I8);
	assert_int_equal(tcz_asic_dtype_parse("f16", &dt), 0);
	assert_int_equal(dt, TCZ_ASIC_F16);
	assert_int_equal(tcz_asic_dtype_parse("f32", &dt), 0);
	assert_int_equal(dt, TCZ_ASIC_F32);
	assert_int_equal(tcz_asic_dtype_parse("bf16", &dt), -EINVAL);
	assert_int_equal(tcz_asic_dtype_parse(NULL, &dt), -EINVAL);
	assert_int_equal(tcz_asic_dtype_size(TCZ_ASIC_F16), 2);
	assert_int_equal(tcz_asic_dtype_size((tcz_asic_dtype)7), 0);
	assert_null(tcz_asic_dtype_name((tcz_asic_dtype)7));

	static const struct {
		const char *name;
		uint32_t cores;
		uint64_t sram;
		uint32_t tile, lanes;
		int dt;
		const char *want;
	} bad[] = {
		{"", 1, 64, 64, 16, 0, "empty name"},
		{"a b", 1, 64, 64, 16, 0, "the name must be"},
		{".x", 1, 64, 64, 16, 0, "the name must be"},
		{"x", 0, 64, 64, 16, 0, "zero cores"},
		{"x", 65537, 64, 64, 16, 0, "65537 cores, more than 65536"},
		{"x", 1, 0, 64, 16, 0, "zero SRAM bytes"},
		{"x", 1, (uint64_t)1 << 41, 64, 16, 0, "more than 1 TiB"},
		{"x", 1, 100, 64, 16, 0, "not a whole number of 64-byte"},
		{"x", 1, 64, 0, 16, 0, "zero tile bytes"},
		{"x", 1, 1 << 22, 1 << 21, 1, 0, "more than 1 MiB"},
		{"x", 1, 64, 64, 0, 0, "zero SIMD lanes"},
		{"x", 1, 64, 64, 5000, 0, "5000 SIMD lanes"},
		{"x", 1, 66, 33, 1, 1, "33 bytes is not a multiple of the f16"},
		{"x", 1, 64, 62, 1, 0, "not a multiple of the f32 element"},
		{"x", 1, 96, 48, 16, 0, "16 lanes x 4 bytes (f32) = 64 bytes "
					"does not divide the tile (48 bytes)"},
		{"x", 1, 64, 64, 3, 2, "3 lanes x 1 bytes (i8)"},
		{"x", 1, 64, 64, 16, 3, "unknown dtype 3"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		p = prof(bad[i].name, bad[i].cores, bad[i].sram, bad[i].tile,
			 bad[i].lanes, (tcz_asic_dtype)bad[i].dt);
		err[0] = 0;
		assert_int_equal(tcz_asic_profile_check(&p, err, sizeof err),
				 -EINVAL);
		if (!strstr(err, bad[i].want))
			fail_msg("case %zu: '%s' lacks '%s'", i, err,
				 bad[i].want);
		assert_null(strchr(err, '\n'));
	}
	/* 31 bytes is the longest name; a full buffer has no NUL */
	p = prof("x", 1, 64, 64, 16, 0);
	memset(p.name, 'n', sizeof p.name);
	assert_int_equal(tcz_asic_profile_check(&p, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "longer than 31"));
	p.name[31] = 0;
	assert_int_equal(tcz_asic_profile_check(&p, err, sizeof err), 0);
	/* lanes x es dividing the tile: 8 f16 lanes in 16-byte tiles */
	p = prof("ok", 1, 32, 16, 8, TCZ_ASIC_F16);
	assert_int_equal(tcz_asic_profile_check(&p, err, sizeof err), 0);
}

static void dense_matrix(void **state)
{
	(void)state;
	uint64_t r, c;
	assert_int_equal(tcz_asic_dense_matrix(0, NULL, &r, &c), 0);
	assert_int_equal(r, 1);
	assert_int_equal(c, 1);
	uint64_t s1[] = {7};
	assert_int_equal(tcz_asic_dense_matrix(1, s1, &r, &c), 0);
	assert_int_equal(r, 1);
	assert_int_equal(c, 7);
	uint64_t s3[] = {2, 3, 4};
	assert_int_equal(tcz_asic_dense_matrix(3, s3, &r, &c), 0);
	assert_int_equal(r, 2);
	assert_int_equal(c, 12);
	uint64_t s0[] = {0, 5};
	assert_int_equal(tcz_asic_dense_matrix(2, s0, &r, &c), 0);
	assert_int_equal(r, 0);
	assert_int_equal(c, 5);
	uint64_t big[] = {(uint64_t)1 << 31, (uint64_t)1 << 31};
	assert_int_equal(tcz_asic_dense_matrix(2, big, &r, &c), 0);
	big[0] <<= 1; /* 2^63 values */
	assert_int_equal(tcz_asic_dense_matrix(2, big, &r, &c), -EOVERFLOW);
	uint64_t huge[] = {(uint64_t)1 << 32, (uint64_t)1 << 31, 2};
	assert_int_equal(tcz_asic_dense_matrix(3, huge, &r, &c), -EOVERFLOW);
	uint64_t zero_huge[] = {0, (uint64_t)1 << 62, 8};
	assert_int_equal(tcz_asic_dense_matrix(3, zero_huge, &r, &c),
			 -EOVERFLOW);
}

/* ---- the worked example ---- */

static const float A[15] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
			    11, 12, 13, 14, 15};
static const float B0[6] = {0.5f, -1, 2, 0.25f, -3, 4};
static const float B1[8] = {1, -2, 3, -4, 0.5f, -0.5f, 8, 16};

static void tiny_model(model *md)
{
	memset(md, 0, sizeof(*md));
	add(md, "a", 0, 1, 3, 5, A);
	add(md, "b", 0, 1, 3, 2, B0);
	add(md, "b", 1, 2, 4, 1, B1);
}

#define U32(x) (x) & 0xff, ((x) >> 8) & 0xff, ((x) >> 16) & 0xff, \
	((x) >> 24) & 0xff
#define U64(x) U32((x) & 0xffffffffu), U32(((uint64_t)(x) >> 32) & 0xffffffffu)

/* Written from docs/formats.md; the two hashes are XXH3-64 values
 * computed by Python's xxhash over these bytes. */
static const unsigned char tiny_head[128] = {
	'T', 'C', 'Z', 'A', 1, 0, 0, 0,               /* magic, v1, f32 */
	't', 'i', 'n', 'y', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* name[32] */
	U32(2), U32(4), U32(32), U32(3),   /* cores, lanes, tile, entries */
	U64(256),                          /* SRAM per core */
	U32(2), U32(10),                   /* strings, string bytes */
	U64(480), U64(288),                /* data offset, data bytes */
	U32(2),                            /* used cores */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	U64(0xda367ef7124f5c27u),          /* header check */
	U64(0x78cd46570a76122du),          /* checksum */
};

/* tensor, core, d, device core, r_left, n, r_right, row0, rows, pitch,
 * g, reserved, SRAM offset, file offset, length, scale offset */
static const unsigned char tiny_entries[3 * 104] = {
	U32(1), U32(1), U32(2), U32(0), U64(2), U64(4), U64(1), U64(0),
	U64(8), U64(16), U32(2), U32(0), U64(0), U64(480), U64(128), U64(0),
	U32(0), U32(0), U32(1), U32(1), U64(1), U64(3), U64(5), U64(0),
	U64(3), U64(32), U32(1), U32(0), U64(0), U64(608), U64(96), U64(0),
	U32(1), U32(0), U32(2), U32(1), U64(1), U64(3), U64(2), U64(0),
	U64(3), U64(16), U32(2), U32(0), U64(96), U64(704), U64(64), U64(0),
};

static const unsigned char tiny_strings[10] = {U32(1), 'a', U32(1), 'b'};

/* the data as floats: core 0 holds b/1 (8 rows of 4), core 1 a (3 rows
 * of 8) then b/0 (3 rows of 4, then a zero row to the tile boundary) */
static const float tiny_data[72] = {
	1, 0, 0, 0, -2, 0, 0, 0, 3, 0, 0, 0, -4, 0, 0, 0,
	0.5f, 0, 0, 0, -0.5f, 0, 0, 0, 8, 0, 0, 0, 16, 0, 0, 0,
	1, 2, 3, 4, 5, 0, 0, 0, 6, 7, 8, 9, 10, 0, 0, 0,
	11, 12, 13, 14, 15, 0, 0, 0,
	0.5f, -1, 0, 0, 2, 0.25f, 0, 0, -3, 4, 0, 0, 0, 0, 0, 0,
};

static void golden(void **state)
{
	(void)state;
	model md;
	tiny_model(&md);
	tcz_asic_profile p = prof("tiny", 2, 256, 32, 4, TCZ_ASIC_F32);
	tcz_asic_layout *l;
	char err[256];
	assert_int_equal(tcz_asic_layout_new(&p, md.m, md.n, &l, err,
					     sizeof err), 0);
	assert_int_equal(l->nentries, 3);
	assert_int_equal(l->nplaced, 3);
	assert_int_equal(l->nnames, 2);
	assert_int_equal(l->data_offset, 480);
	assert_int_equal(l->data_bytes, 288);
	assert_int_equal(l->image_bytes, 768);
	assert_int_equal(l->used_cores, 2);
	assert_int_equal(l->core_bytes[0], 128);
	assert_int_equal(l->core_bytes[1], 160);
	assert_int_equal(l->core_blocks[1], 2);
	assert_int_equal(l->max_core_bytes, 160);
	assert_true(fabs(l->imbalance - 160.0 / 144) < 1e-15);
	assert_int_equal(l->entries[0].matrix, 2); /* b/1 */
	assert_int_equal(l->entries[1].matrix, 0);
	assert_int_equal(l->entries[2].matrix, 1);
	assert_memory_equal(l->names[1].s, "b", 1);

	/* the prefix, checksum still 0 */
	unsigned char want[128];
	memcpy(want, tiny_head, 128);
	memset(want + 120, 0, 8);
	assert_memory_equal(l->prefix, want, 128);
	assert_memory_equal(l->prefix + 128, tiny_entries, sizeof tiny_entries);
	assert_memory_equal(l->prefix + 440, tiny_strings, 10);
	for (int i = 450; i < 480; i++)
		assert_int_equal(l->prefix[i], 0);

	uint64_t sum;
	assert_int_equal(tcz_asic_checksum(l, fetch, &md, &sum), 0);
	assert_int_equal(sum, 0x78cd46570a76122du);
	tcz_asic_set_checksum(l, sum);
	unsigned char img[768];
	assert_int_equal(tcz_asic_read(l, 0, sizeof img, img, fetch, &md), 0);
	assert_memory_equal(img, tiny_head, 128);
	assert_memory_equal(img + 480, tiny_data, sizeof tiny_data);
	assert_int_equal(tcz_asic_check(img, sizeof img, err, sizeof err), 0);

	/* every range reads as the same bytes as the whole */
	for (size_t off = 0; off <= sizeof img; off += 7)
		for (size_t len = 0; off + len <= sizeof img; len += 13) {
			unsigned char part[768];
			assert_int_equal(tcz_asic_read(l, off, len, part, fetch,
						       &md), 0);
			assert_memory_equal(part, img + off, len);
		}
	unsigned char one;
	assert_int_equal(tcz_asic_read(l, 768, 1, &one, fetch, &md), -EINVAL);
	assert_int_equal(tcz_asic_read(l, 769, 0, &one, fetch, &md), -EINVAL);
	assert_int_equal(tcz_asic_read(l, 768, 0, &one, fetch, &md), 0);

	/* the same bytes the Python corpus writer made */
	const char *dir = getenv("TCZ_CORPUS_DIR");
	if (dir) {
		char path[4096];
		size_t len;
		snprintf(path, sizeof path, "%s/asic/valid-tiny-f32.img", dir);
		unsigned char *c = slurp(path, &len);
		assert_non_null(c);
		assert_int_equal(len, sizeof img);
		assert_memory_equal(c, img, len);
		free(c);
	}

	/* layout.json */
	json_t *j = tcz_asic_layout_json(l);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "format")),
			    "tczfs-asic");
	json_t *pj = json_object_get(j, "profile");
	assert_string_equal(json_string_value(json_object_get(pj, "name")),
			    "tiny");
	assert_string_equal(json_string_value(json_object_get(pj, "dtype")),
			    "f32");
	assert_int_equal(json_integer_value(json_object_get(j, "image_bytes")),
			 768);
	json_t *bl = json_object_get(j, "blocks");
	assert_int_equal(json_array_size(bl), 3);
	json_t *b2 = json_array_get(bl, 2);
	assert_string_equal(json_string_value(json_object_get(b2, "tensor")),
			    "b");
	assert_int_equal(json_integer_value(json_object_get(b2, "device_core")),
			 1);
	assert_int_equal(json_integer_value(json_object_get(b2, "sram_offset")),
			 96);
	assert_int_equal(json_integer_value(json_object_get(b2, "packed_cols")),
			 4);
	assert_null(json_object_get(b2, "scale_offset"));
	json_t *cb = json_object_get(j, "core_bytes");
	assert_int_equal(json_integer_value(json_array_get(cb, 1)), 160);
	assert_true(fabs(json_real_value(json_object_get(j, "imbalance")) -
			 160.0 / 144) < 1e-15);
	char *text = json_dumps(j, JSON_COMPACT);
	assert_non_null(text);
	assert_non_null(strstr(text, "\"blocks\":[{\"entry\":0,\"tensor\":\"b\""));
	free(text);
	json_decref(j);
	tcz_asic_layout_free(l);
	model_free(&md);
}

/* The C layout writes the corpus's valid images (made by the Python
 * writer from the documentation) byte for byte. */
static void corpus_valid(void **state)
{
	(void)state;
	const char *dir = getenv("TCZ_CORPUS_DIR");
	assert_non_null(dir);
	static const char *files[] = {"valid-tiny-f32.img", "valid-tiny-f16.img",
				      "valid-tiny-i8.img", "valid-empty.img",
				      "valid-split.img"};
	for (int k = 0; k < 5; k++) {
		model md;
		tcz_asic_dtype dt = k == 1 ? TCZ_ASIC_F16
				    : k == 2 ? TCZ_ASIC_I8
					     : TCZ_ASIC_F32;
		memset(&md, 0, sizeof md);
		if (k == 4) {
			float c[60];
			for (int i = 0; i < 60; i++)
				c[i] = (float)i * 0.25f - 7;
			add(&md, "c", 0, 1, 12, 5, c);
		} else {
			tiny_model(&md);
			if (k == 3)
				add(&md, "e", 0, 1, 0, 4, NULL);
		}
		tcz_asic_profile p = prof("tiny", 2, 256, 32, 4, dt);
		tcz_asic_layout *l;
		unsigned char *img = image(&p, &md, &l);
		char path[4096];
		size_t len;
		snprintf(path, sizeof path, "%s/asic/%s", dir, files[k]);
		unsigned char *c = slurp(path, &len);
		assert_non_null(c);
		if (len != l->image_bytes || memcmp(c, img, len))
			fail_msg("%s differs from the C layout's image", files[k]);
		free(c);
		free(img);
		tcz_asic_layout_free(l);
		model_free(&md);
	}
}

/* i8: the worked example's first tile row, by hand. */
static void i8_example(void **state)
{
	(void)state;
	model md;
	tiny_model(&md);
	tcz_asic_profile p = prof("tiny", 2, 256, 32, 4, TCZ_ASIC_I8);
	tcz_asic_layout *l;
	unsigned char *img = image(&p, &md, &l);
	assert_int_equal(l->entries[0].matrix, 0); /* a, on core 0 */
	assert_int_equal(l->entries[0].pitch, 8);
	assert_int_equal(l->entries[0].tile_rows, 4);
	assert_int_equal(l->entries[0].scale_offset, 32);
	assert_int_equal(l->entries[0].length, 64);
	const unsigned char rows[24] = {
		0x08, 0x11, 0x19, 0x22, 0x2a, 0, 0, 0,
		0x33, 0x3b, 0x44, 0x4c, 0x55, 0, 0, 0,
		0x5d, 0x66, 0x6e, 0x77, 0x7f, 0, 0, 0,
	};
	assert_memory_equal(img + 480, rows, 24);
	float s;
	memcpy(&s, img + 480 + 32, 4);
	assert_true(s == 15.0f / 127.0f);
	free(img);
	tcz_asic_layout_free(l);
	model_free(&md);
}

/* ---- placement ---- */

static void check_placement(const tcz_asic_layout *l)
{
	const tcz_asic_profile *p = &l->profile;
	uint64_t *end = calloc(p->cores, sizeof(*end));
	assert_non_null(end);
	for (uint32_t i = 0; i < l->nplaced; i++) {
		const tcz_asic_entry *e = &l->entries[i];
		assert_true(e->device_core < p->cores);
		assert_int_equal(e->sram_offset, end[e->device_core]);
		assert_int_equal(e->sram_offset % p->tile_bytes, 0);
		assert_int_equal(e->file_offset % p->tile_bytes, 0);
		assert_int_equal(e->length % p->tile_bytes, 0);
		end[e->device_core] += e->length;
		assert_true(end[e->device_core] <= p->sram_bytes);
	}
	for (uint32_t c = 0; c < p->cores; c++)
		assert_int_equal(end[c], l->core_bytes[c]);
	free(end);
}

/* Random models with >= 4x more blocks than cores: never over SRAM,
 * imbalance <= 1.10, and the image is valid. */
static void balance(void **state)
{
	(void)state;
	for (int seed = 1; seed <= 12; seed++) {
		rng = 1000 + seed;
		uint32_t cores = 2 + (uint32_t)below(30);
		tcz_asic_dtype dt = (tcz_asic_dtype)(seed % 3);
		tcz_asic_profile p = prof("rand", cores, 1 << 20, 64, 16, dt);
		if (dt == TCZ_ASIC_I8)
			p.lanes = 32; /* 32 x 1 byte divides 64 */
		model md;
		memset(&md, 0, sizeof md);
		size_t n = 4 * cores + below(4 * cores);
		for (size_t i = 0; i < n; i++) {
			char name[24];
			snprintf(name, sizeof name, "t%03zu", i);
			add(&md, name, 0, 1, 1 + below(48), 1 + below(96),
			    NULL);
		}
		tcz_asic_layout *l;
		unsigned char *img = image(&p, &md, &l);
		check_placement(l);
		assert_true(l->nentries >= 4 * cores);
		if (l->imbalance > 1.10)
			fail_msg("seed %d: %u cores, %u blocks: imbalance %.4f",
				 seed, cores, l->nentries, l->imbalance);
		free(img);
		tcz_asic_layout_free(l);
		model_free(&md);
	}
}

/* A block larger than one core's SRAM is split by tile rows over cores;
 * the rows read back. */
static void split_large(void **state)
{
	(void)state;
	rng = 99;
	/* 8 cores of 4 KiB; a 100 x 20 f32 matrix: pitch 128 (32 values),
	 * 12800 bytes: 4 blocks of 25 rows (3200 bytes) */
	tcz_asic_profile p = prof("s", 8, 4096, 64, 16, TCZ_ASIC_F32);
	model md;
	memset(&md, 0, sizeof md);
	add(&md, "big", 0, 1, 100, 20, NULL);
	add(&md, "small", 0, 1, 2, 3, NULL);
	tcz_asic_layout *l;
	unsigned char *img = image(&p, &md, &l);
	check_placement(l);
	assert_int_equal(l->nentries, 5);
	int seen[8] = {0};
	uint64_t rows = 0;
	for (uint32_t i = 0; i < l->nentries; i++) {
		const tcz_asic_entry *e = &l->entries[i];
		if (e->matrix != 0)
			continue;
		assert_int_equal(e->rows, 25);
		assert_int_equal(e->length, 3200);
		assert_false(seen[e->device_core]++);
		rows += e->rows;
		for (uint64_t r = 0; r < e->rows; r++)
			assert_memory_equal(img + e->file_offset + r * 128,
					    md.v[0] + (e->row0 + r) * 20, 80);
	}
	assert_int_equal(rows, 100);
	free(img);
	tcz_asic_layout_free(l);
	model_free(&md);

	/* i8, tile rows of several rows: 64-byte tiles, 16 lanes, a
	 * 30-value row has pitch 32, g = 2; 101 rows make 51 tile rows */
	p = prof("s", 4, 1024, 64, 16, TCZ_ASIC_I8);
	memset(&md, 0, sizeof md);
	add(&md, "q", 0, 1, 101, 30, NULL);
	img = image(&p, &md, &l);
	check_placement(l);
	rows = 0;
	for (uint32_t i = 0; i < l->nentries; i++) {
		const tcz_asic_entry *e = &l->entries[i];
		assert_int_equal(e->tile_rows, 2);
		assert_int_equal(e->row0 % 2, 0);
		assert_true(e->length <= 1024);
		rows += e->rows;
	}
	assert_int_equal(rows, 101);
	assert_true(l->nentries >= 4);
	free(img);
	tcz_asic_layout_free(l);
	model_free(&md);
}

/* Blocks that fit the device but no core whole spill over cores. */
static void spill(void **state)
{
	(void)state;
	rng = 7;
	/* 2 cores of 1 KiB; three 10 x 16 f32 matrices of 640 bytes each:
	 * 1920 <= 2048, but two never share a core whole */
	tcz_asic_profile p = prof("sp", 2, 1024, 64, 16, TCZ_ASIC_F32);
	model md;
	memset(&md, 0, sizeof md);
	add(&md, "x", 0, 1, 10, 16, NULL);
	add(&md, "y", 0, 1, 10, 16, NULL);
	add(&md, "z", 0, 1, 10, 16, NULL);
	tcz_asic_layout *l;
	unsigned char *img = image(&p, &md, &l);
	check_placement(l);
	assert_int_equal(l->nentries, 4); /* z is cut in two */
	assert_int_equal(l->core_bytes[0], 1024);
	assert_int_equal(l->core_bytes[1], 896);
	free(img);
	tcz_asic_layout_free(l);
	model_free(&md);
}

static void too_large(void **state)
{
	(void)state;
	tcz_asic_profile p = prof("small", 4, 4096, 64, 16, TCZ_ASIC_F32);
	model md;
	memset(&md, 0, sizeof md);
	add(&md, "w", 0, 1, 200, 16, NULL); /* 12800 bytes */
	add(&md, "v", 0, 1, 100, 16, NULL); /* 6400 */
	tcz_asic_layout *l = NULL;
	char err[512];
	assert_int_equal(tcz_asic_layout_new(&p, md.m, md.n, &l, err,
					     sizeof err), -ENOSPC);
	assert_null(l);
	/* 19200 needed, 16384 on the device */
	if (!strstr(err, "device 'small'") || !strstr(err, "19200 bytes") ||
	    !strstr(err, "16384 bytes") || !strstr(err, "2816 bytes (2.8 KiB) missing"))
		fail_msg("message: %s", err);
	assert_null(strchr(err, '\n'));
	model_free(&md);

	/* one matrix alone beyond the device (shapes only: no values) */
	memset(&md, 0, sizeof md);
	md.n = 1;
	md.m[0] = (tcz_asic_matrix){.name = "huge", .name_len = 4,
				    .r_left = 1, .n = (uint64_t)1 << 50,
				    .r_right = 1000};
	assert_int_equal(tcz_asic_layout_new(&p, md.m, 1, &l, err, sizeof err),
			 -ENOSPC);
	assert_non_null(strstr(err, "alone needs"));

	/* a row that no core holds */
	md.m[0].n = 2;
	md.m[0].r_right = 2000; /* pitch 8000 > 4096 */
	assert_int_equal(tcz_asic_layout_new(&p, md.m, 1, &l, err, sizeof err),
			 -ENOSPC);
	assert_non_null(strstr(err, "does not fit a core's SRAM"));

	/* space left on every core but each below one row */
	p = prof("frag", 2, 1024, 64, 16, TCZ_ASIC_F32);
	memset(&md, 0, sizeof md);
	add(&md, "r", 0, 1, 3, 96, NULL);  /* 3 rows of 384 bytes */
	add(&md, "s", 0, 1, 2, 96, NULL);  /* 2 rows */
	add(&md, "t", 0, 1, 1, 96, NULL);  /* 1 row: 2304 > 2048 anyway */
	assert_int_equal(tcz_asic_layout_new(&p, md.m, md.n, &l, err,
					     sizeof err), -ENOSPC);
	assert_non_null(strstr(err, "missing"));
	model_free(&md);
	memset(&md, 0, sizeof md);
	add(&md, "r", 0, 1, 2, 96, NULL);  /* 768 */
	add(&md, "s", 0, 1, 2, 96, NULL);  /* 768: 1536 <= 2048 */
	add(&md, "t", 0, 1, 1, 96, NULL);  /* 384: 1920 <= 2048 */
	assert_int_equal(tcz_asic_layout_new(&p, md.m, md.n, &l, err,
					     sizeof err), -ENOSPC);
	/* r and s take one core each, 256 bytes are left on each: no row */
	if (!strstr(err, "384 bytes fit no core") || !strstr(err, "'t'"))
		fail_msg("message: %s", err);
	model_free(&md);
}

static void bad_inputs(void **state)
{
	(void)state;
	tcz_asic_profile p = prof("x", 4, 4096, 64, 16, TCZ_ASIC_F32);
	tcz_asic_layout *l = NULL;
	char err[256];
	static const struct {
		tcz_asic_matrix m[3];
		size_t n;
		const char *want;
	} bad[] = {
		{{{"", 0, 0, 1, 2, 2}}, 1, "empty tensor name"},
		{{{"\xc3(", 2, 0, 1, 2, 2}}, 1, "not valid UTF-8"},
		{{{"a", 1, 0, 1, 2, 2}, {"a", 1, 0, 1, 2, 2}}, 2,
		 "core 0 given twice"},
		{{{"a", 1, 0, 1, 2, 2}, {"a", 1, 2, 2, 2, 1}}, 2,
		 "core 1 missing"},
		{{{"a", 1, 0, 2, 2, 2}}, 1, "a dense matrix has r_left 1"},
		{{{"a", 1, 0, 1, 2, 3}, {"a", 1, 1, 2, 2, 1}}, 2,
		 "core 0 has r_right 3 but core 1 has r_left 2"},
		{{{"a", 1, 0, 2, 2, 2}, {"a", 1, 1, 2, 2, 1}}, 2,
		 "TT core 0 has r_left 2"},
		{{{"a", 1, 0, 1, 2, 2}, {"a", 1, 1, 2, 2, 2}}, 2,
		 "the last TT core has r_right 2"},
		{{{"a", 1, 0, 1, 0, 2}, {"a", 1, 1, 2, 2, 1}}, 2,
		 "no zero dimension"},
		{{{"a", 1, 0, 1, (uint64_t)1 << 60, 1}}, 1, "overflows"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		err[0] = 0;
		int rc = tcz_asic_layout_new(&p, bad[i].m, bad[i].n, &l, err,
					     sizeof err);
		if (rc != -EINVAL || !strstr(err, bad[i].want))
			fail_msg("case %zu: %d '%s', want '%s'", i, rc, err,
				 bad[i].want);
	}
	/* 17 cores */
	tcz_asic_matrix m17[17];
	for (uint32_t k = 0; k < 17; k++)
		m17[k] = (tcz_asic_matrix){"t", 1, k, 1, 2, 1};
	assert_int_equal(tcz_asic_layout_new(&p, m17, 17, &l, err, sizeof err),
			 -EINVAL);
	assert_non_null(strstr(err, "17 cores, more than 16"));
	/* a bad profile */
	p.cores = 0;
	assert_int_equal(tcz_asic_layout_new(&p, m17, 1, &l, err, sizeof err),
			 -EINVAL);
	assert_non_null(strstr(err, "zero cores"));
	/* names are shown escaped, on one line */
	p.cores = 4;
	tcz_asic_matrix nl = {"a\nb", 3, 0, 2, 2, 2};
	assert_int_equal(tcz_asic_layout_new(&p, &nl, 1, &l, err, sizeof err),
			 -EINVAL);
	assert_non_null(strstr(err, "'a\\x0ab'"));
	assert_null(l);

	/* no matrix at all is a valid (empty) image */
	assert_int_equal(tcz_asic_layout_new(&p, NULL, 0, &l, err, sizeof err),
			 0);
	assert_int_equal(l->image_bytes, 128);
	assert_int_equal(l->data_bytes, 0);
	assert_true(l->imbalance == 1.0);
	model md;
	memset(&md, 0, sizeof md);
	uint64_t sum;
	assert_int_equal(tcz_asic_checksum(l, fetch, &md, &sum), 0);
	tcz_asic_set_checksum(l, sum);
	assert_int_equal(tcz_asic_check(l->prefix, 128, err, sizeof err), 0);
	tcz_asic_layout_free(l);
	tcz_asic_layout_free(NULL);
}

/* ---- determinism ---- */

static void determinism(void **state)
{
	(void)state;
	rng = 4242;
	model md;
	memset(&md, 0, sizeof md);
	for (int i = 0; i < 40; i++) {
		char name[24];
		snprintf(name, sizeof name, "layer.%d.w", i);
		add(&md, name, 0, 1, 1 + below(40), 1 + below(70), NULL);
	}
	/* a 3-core TT and an empty tensor */
	add(&md, "tt", 0, 1, 6, 3, NULL);
	add(&md, "tt", 1, 3, 5, 2, NULL);
	add(&md, "tt", 2, 2, 4, 1, NULL);
	add(&md, "empty", 0, 1, 0, 9, NULL);
	for (int dt = 0; dt < 3; dt++) {
		tcz_asic_profile p = prof("det", 5, 64 << 10, 64, 16,
					  (tcz_asic_dtype)dt);
		if (dt == TCZ_ASIC_I8)
			p.lanes = 64;
		tcz_asic_layout *l1, *l2;
		unsigned char *a = image(&p, &md, &l1);
		unsigned char *b = image(&p, &md, &l2);
		assert_int_equal(l1->image_bytes, l2->image_bytes);
		assert_memory_equal(a, b, (size_t)l1->image_bytes);
		free(b);
		tcz_asic_layout_free(l2);

		/* the same set in another order: the same image */
		model sh;
		memset(&sh, 0, sizeof sh);
		size_t perm[512];
		for (size_t i = 0; i < md.n; i++)
			perm[i] = i;
		for (size_t i = md.n - 1; i > 0; i--) {
			size_t j = below(i + 1), t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		for (size_t i = 0; i < md.n; i++) {
			const tcz_asic_matrix *m = &md.m[perm[i]];
			add(&sh, md.names[perm[i]], m->core, m->r_left, m->n,
			    m->r_right, md.v[perm[i]]);
		}
		b = image(&p, &sh, &l2);
		assert_int_equal(l1->image_bytes, l2->image_bytes);
		assert_memory_equal(a, b, (size_t)l1->image_bytes);
		json_t *ja = tcz_asic_layout_json(l1);
		json_t *jb = tcz_asic_layout_json(l2);
		char *j1 = json_dumps(ja, 0), *j2 = json_dumps(jb, 0);
		assert_non_null(j1);
		assert_non_null(j2);
		assert_string_equal(j1, j2);
		free(j2);
		free(j1);
		json_decref(ja);
		json_decref(jb);
		/* the entries name the caller's own indices */
		for (uint32_t i = 0; i < l2->nentries; i++)
			assert_int_equal(perm[l2->entries[i].matrix],
					 l1->entries[i].matrix);
		free(a);
		free(b);
		tcz_asic_layout_free(l1);
		tcz_asic_layout_free(l2);
		model_free(&sh);
	}
	model_free(&md);
}

/* ---- quantization bounds ---- */

/* Decodes value c of row r of placed entry e from the image. */
static double decoded(const unsigned char *img, const tcz_asic_layout *l,
		      const tcz_asic_entry *e, uint64_t r, uint64_t c)
{
	const unsigned char *d = img + e->file_offset;
	float s = 1;
	if (l->profile.dtype != TCZ_ASIC_F32)
		memcpy(&s, d + e->scale_offset + 4 * (r / e->tile_rows), 4);
	switch (l->profile.dtype) {
	case TCZ_ASIC_F32: {
		float v;
		memcpy(&v, d + r * e->pitch + 4 * c, 4);
		return v;
	}
	case TCZ_ASIC_F16: {
		uint16_t h;
		memcpy(&h, d + r * e->pitch + 2 * c, 2);
		return (double)tcz_f16_to_f32(h) * s;
	}
	case TCZ_ASIC_I8:
		return (double)(signed char)d[r * e->pitch + c] * s;
	}
	return NAN;
}

/* Every value within the documented bound of its tile row. */
static void quant_bounds(void **state)
{
	(void)state;
	rng = 31337;
	/* magnitudes from tiny to huge, zero rows, exact powers of two */
	static const double mags[] = {1e-38, 1e-30, 3e-8, 1e-3, 0.02, 1,
				      7.5, 1e4, 6e4, 1e30, 3e38};
	for (int dt = 1; dt < 3; dt++) {
		tcz_asic_profile p = prof("q", 8, 1 << 20, 64, 16,
					  (tcz_asic_dtype)dt);
		model md;
		memset(&md, 0, sizeof md);
		for (size_t k = 0; k < sizeof(mags) / sizeof(*mags); k++) {
			char name[24];
			snprintf(name, sizeof name, "m%02zu", k);
			add(&md, name, 0, 1, 37, 23, NULL);
			for (size_t i = 0; i < 37 * 23; i++) {
				double v = gauss() * mags[k];
				if (v > 3.4e38)
					v = 3.4e38;
				if (v < -3.4e38)
					v = -3.4e38;
				md.v[md.n - 1][i] = (float)v;
			}
		}
		/* zeros, one spike, subnormals */
		add(&md, "zero", 0, 1, 5, 17, NULL);
		memset(md.v[md.n - 1], 0, 5 * 17 * sizeof(float));
		add(&md, "spike", 0, 1, 5, 17, NULL);
		for (int i = 0; i < 85; i++)
			md.v[md.n - 1][i] = i == 40 ? 1e6f : 1e-3f * (float)i;
		add(&md, "sub", 0, 1, 4, 8, NULL);
		for (int i = 0; i < 32; i++)
			md.v[md.n - 1][i] = (float)(i - 16) * 1e-44f;
		tcz_asic_layout *l;
		unsigned char *img = image(&p, &md, &l);
		double worst = 0;
		for (uint32_t i = 0; i < l->nplaced; i++) {
			const tcz_asic_entry *e = &l->entries[i];
			const float *v = md.v[e->matrix];
			uint64_t g = e->tile_rows, cols = e->r_right;
			for (uint64_t r0 = 0; r0 < e->rows; r0 += g) {
				uint64_t nr = e->rows - r0 < g ? e->rows - r0 : g;
				double m = 0;
				for (uint64_t k = 0; k < nr * cols; k++)
					m = fmax(m, fabs((double)v[(e->row0 + r0) *
								   cols + k]));
				float s;
				memcpy(&s, img + e->file_offset +
						   e->scale_offset + 4 * (r0 / g),
				       4);
				for (uint64_t r = r0; r < r0 + nr; r++)
					for (uint64_t c = 0; c < cols; c++) {
						double x = v[(e->row0 + r) * cols + c];
						double y = decoded(img, l, e, r, c);
						double bound =
							dt == TCZ_ASIC_I8
								? s * (0.5 + 0x1p-16) + 0x1p-118
								: 0x1p-11 * fabs(x) +
									  0x1p-38 * m + 0x1p-148;
						double err = fabs(x - y);
						if (err > bound)
							fail_msg("%s %s row %" PRIu64
								 ": %g -> %g, bound %g",
								 tcz_asic_dtype_name(p.dtype),
								 md.names[e->matrix],
								 e->row0 + r, x, y, bound);
						if (m > 0)
							worst = fmax(worst, err / m);
					}
				if (dt == TCZ_ASIC_I8)
					assert_true(m == 0 ? s == 0
							   : s >= 0x1p-149f);
				else
					assert_true(m == 0 ? s == 1 : s > 0);
			}
		}
		print_message("%s: worst error / max|row| %.3g\n",
			      tcz_asic_dtype_name(p.dtype), worst);
		free(img);
		tcz_asic_layout_free(l);
		model_free(&md);
	}
}

/* NaN and infinity: i8 gives 0 and +-127, f16 keeps them; neither
 * counts for the scale. */
static void non_finite(void **state)
{
	(void)state;
	const float v[8] = {NAN, INFINITY, -INFINITY, 2, -1, 0, 0.5f, 0};
	for (int dt = 1; dt < 3; dt++) {
		tcz_asic_profile p = prof("nf", 1, 1024, 16, 8,
					  (tcz_asic_dtype)dt);
		model md;
		memset(&md, 0, sizeof md);
		add(&md, "x", 0, 1, 1, 8, v);
		tcz_asic_layout *l;
		unsigned char *img = image(&p, &md, &l);
		const tcz_asic_entry *e = &l->entries[0];
		float s;
		memcpy(&s, img + e->file_offset + e->scale_offset, 4);
		if (dt == TCZ_ASIC_I8) {
			assert_true(s == 2.0f / 127.0f);
			const signed char *q =
				(const signed char *)img + e->file_offset;
			assert_int_equal(q[0], 0);
			assert_int_equal(q[1], 127);
			assert_int_equal(q[2], -127);
			assert_int_equal(q[3], 127);
		} else {
			assert_true(s == 0x1p-13f); /* 2^1 <= 2 < 2^2: e = 2 */
			double y = decoded(img, l, e, 0, 0);
			assert_true(isnan(y));
			assert_true(isinf(decoded(img, l, e, 0, 1)));
			assert_true(decoded(img, l, e, 0, 2) < 0);
			assert_true(decoded(img, l, e, 0, 3) == 2.0);
		}
		free(img);
		tcz_asic_layout_free(l);
		model_free(&md);
	}
}

/* i8 codes are clamp(rint(v / s), -127, 127) exactly, ties to even, in
 * the vectorized loop as in its tail. */
static void i8_codes_exact(void **state)
{
	(void)state;
	enum { C = 100 };
	float v[3 * C];
	rng = 2024;
	/* row 0: max 127 makes s = 1, so k + 0.5 are exact ties */
	for (int c = 0; c < C; c++)
		v[c] = (float)((c % 50) - 25) + 0.5f;
	v[0] = 127;
	v[1] = NAN;
	v[2] = INFINITY; /* counts as 127, not for the scale */
	v[3] = -INFINITY;
	v[4] = 126.5f;
	v[5] = -126.5f;
	v[6] = -0.0f;
	v[20] = 0.49999997f;
	for (int c = 0; c < C; c++)
		v[C + c] = (float)gauss();
	for (int c = 0; c < C; c++)
		v[2 * C + c] = (float)(c - 50) * 1e-42f;
	tcz_asic_profile p = prof("i8", 1, 4096, 64, 64, TCZ_ASIC_I8);
	model md;
	memset(&md, 0, sizeof md);
	add(&md, "x", 0, 1, 3, C, v);
	tcz_asic_layout *l;
	unsigned char *img = image(&p, &md, &l);
	const tcz_asic_entry *e = &l->entries[0];
	assert_int_equal(e->tile_rows, 1);
	for (int r = 0; r < 3; r++) {
		float sc;
		memcpy(&sc, img + e->file_offset + e->scale_offset + 4 * r, 4);
		if (r == 0)
			assert_true(sc == 1.0f);
		for (int c = 0; c < C; c++) {
			float t = v[r * C + c] / sc;
			int want = t != t ? 0 : t >= 127 ? 127 : t <= -127 ? -127
					 : (int)rintf(t);
			int got = (signed char)img[e->file_offset + r * e->pitch + c];
			if (got != want)
				fail_msg("row %d col %d: %g / %g: %d, want %d", r, c,
					 (double)v[r * C + c], (double)sc, got, want);
		}
	}
	assert_int_equal((signed char)img[e->file_offset + 7], -18); /* -17.5 */
	assert_int_equal((signed char)img[e->file_offset + 8], -16); /* -16.5 */
	free(img);
	tcz_asic_layout_free(l);
	model_free(&md);
}

/* ---- piecewise reads and the packing calls ---- */

static void read_ranges(void **state)
{
	(void)state;
	rng = 555;
	for (int dt = 0; dt < 3; dt++) {
		/* 4-row tile rows for f16/i8 (pitch 16 in 64-byte tiles) and
		 * blocks split over cores */
		tcz_asic_profile p = prof("rr", 6, 8192, 64, 8,
					  (tcz_asic_dtype)dt);
		model md;
		memset(&md, 0, sizeof md);
		add(&md, "big", 0, 1, 333, 8, NULL);
		add(&md, "wide", 0, 1, 2, 40000, NULL); /* rows of 160 KB */
		add(&md, "tt", 0, 1, 7, 3, NULL);
		add(&md, "tt", 1, 3, 9, 1, NULL);
		p.sram_bytes = 1 << 18;
		tcz_asic_layout *l;
		unsigned char *img = image(&p, &md, &l);
		size_t n = (size_t)l->image_bytes;
		unsigned char *part = malloc(n);
		assert_non_null(part);
		for (int t = 0; t < 300; t++) {
			size_t off = below(n + 1);
			size_t len = below(t % 3 ? 300 : n - off + 1);
			if (len > n - off)
				len = n - off;
			md.max_floats = 0;
			assert_int_equal(tcz_asic_read(l, off, len, part, fetch,
						       &md), 0);
			assert_memory_equal(part, img + off, len);
			/* at most 1 MiB of f32 rows at a time */
			assert_true(md.max_floats * 4 <= (1u << 20));
		}
		free(part);
		free(img);
		tcz_asic_layout_free(l);
		model_free(&md);
	}
}

static int failing_fetch(void *ctx, size_t matrix, uint64_t row0,
			 uint64_t nrows, float *out)
{
	(void)ctx, (void)matrix, (void)row0, (void)nrows, (void)out;
	return -EIO;
}

static void pack_calls(void **state)
{
	(void)state;
	model md;
	tiny_model(&md);
	tcz_asic_profile p = prof("tiny", 2, 256, 32, 4, TCZ_ASIC_I8);
	tcz_asic_layout *l;
	char err[128];
	assert_int_equal(tcz_asic_layout_new(&p, md.m, md.n, &l, err,
					     sizeof err), 0);
	unsigned char buf[256];
	float rows[40] = {0};
	/* entry 1 is b/1: 8 rows, g = 8 */
	assert_int_equal(l->entries[1].tile_rows, 8);
	assert_int_equal(tcz_asic_pack_rows(l, 1, 0, 8, B1, buf), 0);
	assert_int_equal(tcz_asic_pack_rows(l, 1, 0, 4, rows, buf), -EINVAL);
	assert_int_equal(tcz_asic_pack_rows(l, 1, 1, 7, rows, buf), -EINVAL);
	assert_int_equal(tcz_asic_pack_rows(l, 1, 0, 9, rows, buf), -EINVAL);
	assert_int_equal(tcz_asic_pack_rows(l, 3, 0, 1, rows, buf), -EINVAL);
	assert_int_equal(tcz_asic_pack_scales(l, 1, 0, 8, B1, buf), 0);
	float s;
	memcpy(&s, buf, 4);
	assert_true(s == 16.0f / 127.0f);
	assert_int_equal(tcz_asic_pack_scales(l, 1, 0, 3, rows, buf), -EINVAL);
	/* a failing fetch fails the read and the checksum */
	uint64_t sum;
	static unsigned char whole[1024];
	assert_true(l->image_bytes <= sizeof whole);
	assert_int_equal(tcz_asic_read(l, 0, (size_t)l->image_bytes, whole,
				       failing_fetch, NULL), -EIO);
	/* the prefix needs no row */
	assert_int_equal(tcz_asic_read(l, 0, 100, whole, failing_fetch, NULL),
			 0);
	assert_int_equal(tcz_asic_checksum(l, failing_fetch, NULL, &sum), -EIO);
	tcz_asic_layout_free(l);

	p.dtype = TCZ_ASIC_F32;
	assert_int_equal(tcz_asic_layout_new(&p, md.m, md.n, &l, err,
					     sizeof err), 0);
	/* f32: any rows */
	assert_int_equal(tcz_asic_pack_rows(l, 0, 3, 2, B1 + 3, buf), 0);
	float f[8];
	memcpy(f, buf, 32);
	assert_true(f[0] == -4 && f[1] == 0 && f[4] == 0.5f);
	assert_int_equal(tcz_asic_pack_scales(l, 0, 0, 8, B1, buf), -EINVAL);
	tcz_asic_layout_free(l);
	model_free(&md);
}

/* ---- the checker ---- */

/* Any single flipped byte of the worked example is refused. */
static void flipped(void **state)
{
	(void)state;
	static const char *files[] = {"valid-tiny-f32.img", "valid-tiny-i8.img",
				      "valid-empty.img"};
	const char *dir = getenv("TCZ_CORPUS_DIR");
	assert_non_null(dir);
	for (int k = 0; k < 3; k++) {
		char path[4096], err[256];
		size_t len;
		snprintf(path, sizeof path, "%s/asic/%s", dir, files[k]);
		unsigned char *b = slurp(path, &len);
		assert_non_null(b);
		assert_int_equal(check_copy(b, len, err, sizeof err), 0);
		for (size_t i = 0; i < len; i++)
			for (int bit = 0; bit < 8; bit += 7) {
				b[i] ^= (unsigned char)(1u << bit);
				int rc = check_copy(b, len, err, sizeof err);
				if (rc == 0)
					fail_msg("%s: byte %zu bit %d accepted",
						 files[k], i, bit);
				if (i >= 128 && !strstr(err, "checksum mismatch"))
					fail_msg("%s: byte %zu: %s", files[k], i,
						 err);
				b[i] ^= (unsigned char)(1u << bit);
			}
		free(b);
	}
}

static void truncated(void **state)
{
	(void)state;
	const char *dir = getenv("TCZ_CORPUS_DIR");
	assert_non_null(dir);
	char path[4096], err[256];
	size_t len;
	snprintf(path, sizeof path, "%s/asic/valid-tiny-f16.img", dir);
	unsigned char *b = slurp(path, &len);
	assert_non_null(b);
	for (size_t n = 0; n < len; n++) {
		err[0] = 0;
		assert_int_equal(check_copy(b, n, err, sizeof err), -EBADMSG);
		if (n >= 4 && !strstr(err, "truncated"))
			fail_msg("%zu bytes: %s", n, err);
	}
	assert_int_equal(tcz_asic_check(NULL, 0, err, sizeof err), -EBADMSG);
	assert_int_equal(tcz_asic_check(NULL, 5, NULL, 0), -EBADMSG);
	free(b);
}

/* Every corpus image is refused with the message EXPECT names (valid
 * ones accepted). */
static void corpus(void **state)
{
	(void)state;
	const char *dir = getenv("TCZ_CORPUS_DIR");
	assert_non_null(dir);
	char path[4096], line[512];
	snprintf(path, sizeof path, "%s/asic/EXPECT", dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	int cases = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *tab = strchr(line, '\t');
		assert_non_null(tab);
		*tab = 0;
		const char *want = tab + 1;
		snprintf(path, sizeof path, "%s/asic/%s", dir, line);
		size_t len = 0;
		unsigned char *buf = slurp(path, &len);
		assert_non_null(buf);
		char err[512] = "";
		int rc = check_copy(buf, len, err, sizeof err);
		if (strcmp(want, "ok") == 0) {
			if (rc)
				fail_msg("%s: refused: %s", line, err);
		} else {
			int ver = strstr(want, "format version") != NULL;
			if (rc != (ver ? -EPROTONOSUPPORT : -EBADMSG))
				fail_msg("%s: rc %d (%s)", line, rc, err);
			if (!strstr(err, want))
				fail_msg("%s: message '%s' lacks '%s'", line, err,
					 want);
			if (strchr(err, '\n'))
				fail_msg("%s: message on several lines", line);
		}
		free(buf);
		cases++;
	}
	fclose(f);
	assert_true(cases >= 80);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(profiles),
		cmocka_unit_test(dense_matrix),
		cmocka_unit_test(golden),
		cmocka_unit_test(corpus_valid),
		cmocka_unit_test(i8_example),
		cmocka_unit_test(balance),
		cmocka_unit_test(split_large),
		cmocka_unit_test(spill),
		cmocka_unit_test(too_large),
		cmocka_unit_test(bad_inputs),
		cmocka_unit_test(determinism),
		cmocka_unit_test(quant_bounds),
		cmocka_unit_test(non_finite),
		cmocka_unit_test(i8_codes_exact),
		cmocka_unit_test(read_ranges),
		cmocka_unit_test(pack_calls),
		cmocka_unit_test(flipped),
		cmocka_unit_test(truncated),
		cmocka_unit_test(corpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
