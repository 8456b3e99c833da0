/* Model views: files, sizes and pieces derived by hand from the formats;
 * reads equal the source bytes; a removed model's chunks stay while a
 * view pins it and go after; many threads reading through views and one
 * cache while another removes, imports and saves statistics get the
 * right bytes (run under ThreadSanitizer by tools/test); loading a
 * tensor's index brings its index pages into the page cache, not its
 * values. */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <fcntl.h>

#include <cmocka.h>
#include <xxhash.h>

#include "codec/half.h"
#include "store/cache.h"
#include "store/import.h"
#include "store/store.h"
#include "store/view.h"

static char dir[64];

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

/* A safetensors file: F32 "a" [600, 700] (2 chunks), BF16 "b" [1000, 300]
 * (widened in .npy), I64 "c" [5], and a rank-3 F32 "lr" [400, 500] for TT.
 * Returns the file's bytes (malloc'd). */
static unsigned char *write_model(const char *path, size_t *len, int lowrank)
{
	static const char *hdr_full =
		"{\"a\":{\"dtype\":\"F32\",\"shape\":[600,700],\"data_offsets\":[0,1680000]},"
		"\"b\":{\"dtype\":\"BF16\",\"shape\":[1000,300],\"data_offsets\":[1680000,2280000]},"
		"\"c\":{\"dtype\":\"I64\",\"shape\":[5],\"data_offsets\":[2280000,2280040]}}";
	static const char *hdr_lr =
		"{\"lr\":{\"dtype\":\"F32\",\"shape\":[400,500],\"data_offsets\":[0,800000]}}";
	const char *h = lowrank ? hdr_lr : hdr_full;
	size_t hl = strlen(h), pad = (8 - hl % 8) % 8;
	size_t data = lowrank ? 800000 : 2280040;
	*len = 8 + hl + pad + data;
	unsigned char *b = malloc(*len);
	uint64_t n = hl + pad;
	memcpy(b, &n, 8);
	memcpy(b + 8, h, hl);
	memset(b + 8 + hl, ' ', pad);
	unsigned char *d = b + 8 + hl + pad;
	if (lowrank) {
		float u[400][3], v[3][500];
		for (int i = 0; i < 400; i++)
			for (int k = 0; k < 3; k++)
				u[i][k] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
		for (int k = 0; k < 3; k++)
			for (int j = 0; j < 500; j++)
				v[k][j] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
		for (int i = 0; i < 400; i++)
			for (int j = 0; j < 500; j++) {
				float s = u[i][0] * v[0][j] + u[i][1] * v[1][j] +
					  u[i][2] * v[2][j];
				memcpy(d + 4 * (500 * i + j), &s, 4);
			}
	} else {
		for (size_t i = 0; i < 600 * 700; i++) {
			float f = (float)((int)(rnd() % 20001) - 10000) / 7777.0f;
			memcpy(d + 4 * i, &f, 4);
		}
		for (size_t i = 0; i < 1000 * 300; i++) {
			uint16_t x = tcz_f32_to_bf16((float)((int)(rnd() % 2001) - 1000) /
						     300.0f);
			memcpy(d + 1680000 + 2 * i, &x, 2);
		}
		for (int64_t i = 0; i < 5; i++)
			memcpy(d + 2280000 + 8 * i, &i, 8);
	}
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, *len, f), *len);
	fclose(f);
	return b;
}

static unsigned char *src, *src_lr;
static size_t src_len, src_lr_len;

static void import(tcz_store *s, const char *name, const char *path, int tt)
{
	tcz_import_opts o;
	tcz_import_opts_default(&o);
	o.chunk_kib = 1024; /* the pieces below count 1 MiB chunks */
	o.name = name;
	o.jobs = 1;
	if (tt) {
		o.profile = TCZ_PROFILE_TT;
		o.tt_eps = 1e-4;
	}
	tcz_import_result res;
	char err[512];
	const char *srcs[] = {path};
	int rc = tcz_import(s, srcs, 1, &o, &res, err, sizeof err);
	if (rc)
		fprintf(stderr, "import: %s\n", err);
	assert_int_equal(rc, 0);
}

static char path_m[128], path_lr[128], store_dir[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/tcz-view-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path_m, sizeof path_m, "%s/m.safetensors", dir);
	snprintf(path_lr, sizeof path_lr, "%s/lr.safetensors", dir);
	snprintf(store_dir, sizeof store_dir, "%s/store", dir);
	src = write_model(path_m, &src_len, 0);
	src_lr = write_model(path_lr, &src_lr_len, 1);
	tcz_store *s;
	if (tcz_store_open(store_dir, TCZ_STORE_CREATE, &s))
		return -1;
	import(s, "m", path_m, 0);
	import(s, "lr", path_lr, 1);
	tcz_store_close(s);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(src);
	free(src_lr);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd);
}

/* The files of m, by hand: the container, then one .npy per tensor whose
 * size is its 64-aligned header plus the data in the .npy dtype. */
static void files_and_sizes(void **state)
{
	(void)state;
	tcz_store *s;
	tcz_mview *v;
	assert_int_equal(tcz_store_open(store_dir, TCZ_STORE_RDONLY, &s), 0);
	assert_int_equal(tcz_mview_open(s, "m", &v), 0);
	assert_int_equal(tcz_mview_nfiles(v), 4);
	assert_int_equal(tcz_mview_dir_count(v, TCZ_VDIR_MODEL), 1);
	assert_int_equal(tcz_mview_dir_count(v, TCZ_VDIR_LAYERS), 3);
	uint32_t i;
	assert_int_equal(tcz_mview_path(v, "model.safetensors", &i), 0);
	assert_int_equal(tcz_mview_file(v, i)->size, src_len);
	assert_int_equal(tcz_mview_file(v, i)->kind, TCZ_VF_CONTAINER);
	/* a.npy: the header "{'descr': '<f4', 'fortran_order': False,
	 * 'shape': (600, 700), }" with magic, version and length is 128
	 * bytes padded; data 600*700*4 */
	assert_int_equal(tcz_mview_path(v, "layers/a.npy", &i), 0);
	assert_int_equal(tcz_mview_file(v, i)->size, 128 + 1680000);
	assert_int_equal(tcz_mview_path(v, "layers/b.npy", &i), 0);
	assert_int_equal(tcz_mview_file(v, i)->size, 128 + 1000 * 300 * 4);
	assert_int_equal(tcz_mview_path(v, "layers/c.npy", &i), 0);
	assert_int_equal(tcz_mview_file(v, i)->size, 128 + 40);
	assert_int_equal(tcz_mview_path(v, "layers", &i), -EISDIR);
	assert_int_equal(tcz_mview_path(v, "nope", &i), -ENOENT);
	assert_int_equal(tcz_mview_path(v, "layers/nope.npy", &i), -ENOENT);
	/* sorted listing */
	assert_string_equal(
		tcz_mview_file(v, tcz_mview_dir_file(v, TCZ_VDIR_LAYERS, 0))->name,
		"a.npy");
	assert_string_equal(
		tcz_mview_file(v, tcz_mview_dir_file(v, TCZ_VDIR_LAYERS, 2))->name,
		"c.npy");

	/* pieces of b.npy [100, 100 + 3 MiB): header bytes, then widened
	 * slices of b's one chunk (600000 bytes -> 1200000 as f32) */
	tcz_pieces l = {0};
	assert_int_equal(tcz_mview_path(v, "layers/b.npy", &i), 0);
	assert_int_equal(tcz_view_map(v, i, 100, 3u << 20, &l), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.p[0].kind, TCZ_PIECE_BYTES);
	assert_int_equal(l.p[0].len, 28);
	assert_int_equal(l.p[1].kind, TCZ_PIECE_WIDEN);
	assert_int_equal(l.p[1].off, 0);
	assert_int_equal(l.p[1].len, 1200000); /* clipped at the end */
	assert_int_equal(l.p[1].src.len, 600000);
	tcz_pieces_free(&l);
	/* the container across a's chunk boundary: a's chunks are 1 MiB */
	uint64_t a0 = src_len - 2280040; /* a starts after the header */
	assert_int_equal(tcz_mview_path(v, "model.safetensors", &i), 0);
	assert_int_equal(tcz_view_map(v, i, a0 + (1u << 20) - 10, 20, &l), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.p[0].src.chunk, 0);
	assert_int_equal(l.p[0].off, (1u << 20) - 10);
	assert_int_equal(l.p[1].src.chunk, 1);
	assert_int_equal(l.p[1].off, 0);
	assert_int_equal(l.p[1].len, 10);
	tcz_pieces_free(&l);
	/* nothing at or past the end */
	assert_int_equal(tcz_view_map(v, i, src_len, 10, &l), 0);
	assert_int_equal(l.n, 0);
	tcz_mview_put(v);
	assert_int_equal(tcz_mview_open(s, "nope", &v), -ENOENT);
	tcz_store_close(s);
}

/* Random ranges read through a view equal the source; .npy data is the
 * source tensor (BF16 widened exactly). */
static void reads_match(void **state)
{
	(void)state;
	tcz_store *s;
	tcz_mview *v;
	tcz_reader *r;
	assert_int_equal(tcz_store_open(store_dir, TCZ_STORE_RDONLY, &s), 0);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	uint32_t f;
	assert_int_equal(tcz_view_open_path(s, "m/model.safetensors", &v, &f), 0);
	unsigned char *buf = malloc(3u << 20);
	for (int k = 0; k < 200; k++) {
		uint64_t off = rnd() % (src_len + 10);
		size_t len = 1 + rnd() % (k % 3 ? 5000 : 2u << 20), got;
		assert_int_equal(tcz_view_read(r, v, f, off, len, buf, &got, NULL),
				 0);
		size_t want = off >= src_len ? 0
			      : len < src_len - off ? len
						    : src_len - off;
		assert_int_equal(got, want);
		assert_memory_equal(buf, src + off, got);
	}
	tcz_mview_put(v);
	assert_int_equal(tcz_view_open_path(s, "m/layers/b.npy", &v, &f), 0);
	size_t got;
	assert_int_equal(tcz_view_read(r, v, f, 128, 1200000, buf, &got, NULL), 0);
	assert_int_equal(got, 1200000);
	const unsigned char *b16 = src + (src_len - 2280040) + 1680000;
	for (size_t i = 0; i < 300000; i += 997) {
		uint16_t x;
		float want, have;
		memcpy(&x, b16 + 2 * i, 2);
		want = tcz_bf16_to_f32(x);
		memcpy(&have, buf + 4 * i, 4);
		assert_true(memcmp(&want, &have, 4) == 0);
	}
	tcz_mview_put(v);
	assert_int_equal(tcz_view_open_path(s, "m/layers/x.npy", &v, &f), -ENOENT);
	assert_int_equal(tcz_view_open_path(s, "asic/m/x.img", &v, &f), -ENOENT);
	assert_int_equal(tcz_view_open_path(s, "m", &v, &f), -EISDIR);
	free(buf);
	tcz_reader_free(r);
	tcz_store_close(s);
}

/* The store's LMDB environment opened directly (flags: MDB_NOTLS, and
 * MDB_RDONLY to read), for checks and damage below tczfs. */
static MDB_env *raw_env(const char *path, unsigned flags)
{
	MDB_env *env;
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 32);
	mdb_env_set_maxreaders(env, 4096);
	mdb_env_set_mapsize(env, 1u << 30);
	assert_int_equal(mdb_env_open(env, path, flags, 0600), 0);
	return env;
}

static size_t count(const char *table)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_stat st;
	env = raw_env(store_dir, MDB_NOTLS | MDB_RDONLY);
	mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	assert_int_equal(mdb_dbi_open(txn, table, 0, &dbi), 0);
	mdb_stat(txn, dbi, &st);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return st.ms_entries;
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

/* Flips byte at of table's value under key, through LMDB (a stray write). */
static void damage(const char *sdir, const char *table,
		   const unsigned char *key, size_t at)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {16, (void *)key}, d;
	env = raw_env(sdir, MDB_NOTLS);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, table, 0, &dbi), 0);
	assert_int_equal(mdb_get(txn, dbi, &k, &d), 0);
	unsigned char *v = malloc(d.mv_size);
	memcpy(v, d.mv_data, d.mv_size);
	assert_true(at < d.mv_size);
	v[at] ^= 0x40;
	d.mv_data = v;
	assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	free(v);
}

static void problem_seen(void *ud, const char *model, const char *what,
			 const char *problem)
{
	(void)model;
	(void)what;
	snprintf(ud, 256, "%s", problem);
}

/* One block of an index record, from its layout (docs/formats.md). */
typedef struct bspan {
	size_t val_off, val_len; /* its stored bytes in the chunk value */
	size_t dec_off, dec_len;
} bspan;

/* The block index, against docs/formats.md: every record's prefix is its
 * chunk's blob prefix, its hashes the XXH3-64 of the value's block
 * bytes, which tile the value; small reads through it equal the source;
 * a damaged block fails exactly the reads under it; a damaged record
 * sends reads to the whole chunk, which verifies it. */
static void block_index(void **state)
{
	(void)state;
	char sdir[160];
	snprintf(sdir, sizeof sdir, "%s/bstore", dir);
	tcz_store *s;
	assert_int_equal(tcz_store_open(sdir, TCZ_STORE_CREATE, &s), 0);
	import(s, "m", path_m, 0);
	tcz_store_close(s);

	/* the records, checked by hand; the first one's blocks kept */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi bdb, cdb;
	MDB_cursor *c;
	MDB_val k, d, cv;
	env = raw_env(sdir, MDB_NOTLS | MDB_RDONLY);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "blocks", 0, &bdb), 0);
	assert_int_equal(mdb_dbi_open(txn, "chunks", 0, &cdb), 0);
	assert_int_equal(mdb_cursor_open(txn, bdb, &c), 0);
	size_t nrec = 0, nb0 = 0, plen0 = 0;
	unsigned char key0[16];
	bspan sp[80];
	while (mdb_cursor_get(c, &k, &d, nrec ? MDB_NEXT : MDB_FIRST) == 0) {
		const unsigned char *r = d.mv_data;
		size_t rl = d.mv_size;
		assert_int_equal(k.mv_size, 16);
		assert_int_equal(le32(r), 0x4249435au); /* "ZCIB" */
		assert_int_equal(r[4], 1);
		assert_int_equal(r[6] | r[7], 0);
		assert_int_equal(le64(r + rl - 8), XXH3_64bits(r, rl - 8));
		size_t plen = le32(r + 8);
		const unsigned char *pre = r + 12;
		assert_int_equal(mdb_get(txn, cdb, &k, &cv), 0);
		const unsigned char *val = cv.mv_data;
		/* chunk header (12 bytes), then the blob: its prefix */
		assert_memory_equal(val + 12, pre, plen);
		assert_memory_equal(pre, "TCZL", 4);
		assert_int_equal(pre[5], r[5]);
		size_t es = r[5] == TCZ_DT_F32 ? 4 : 2;
		uint64_t dlen = le64(pre + 8);
		uint32_t B = le32(pre + 16);
		size_t nb = (size_t)((dlen + B - 1) / B);
		assert_true(nb >= 2);
		/* floats: a version-2 blob, whose prefix ends with the
		 * exponent plane's codes (a count; first, last, a nibble
		 * per symbol each) */
		assert_int_equal(pre[4], 2);
		size_t at = 24 + 5 * nb * es;
		unsigned ncodes = pre[at++];
		assert_true(ncodes >= 1 && ncodes <= 4);
		while (ncodes--)
			at += 2 + ((size_t)(pre[at + 1] - pre[at]) + 2) / 2;
		assert_int_equal(plen, at);
		assert_int_equal(rl, 12 + plen + 8 * nb + 8);
		size_t pos = 12 + plen;
		for (size_t i = 0; i < nb; i++) {
			size_t bl = 0;
			for (size_t j = 0; j < es; j++)
				bl += le32(pre + 24 + 5 * (i * es + j) + 1);
			assert_int_equal(le64(r + 12 + plen + 8 * i),
					 XXH3_64bits(val + pos, bl));
			if (!nrec && i < 80)
				sp[i] = (bspan){pos, bl, i * B,
						i + 1 < nb ? B : dlen - i * B};
			pos += bl;
		}
		assert_int_equal(pos, cv.mv_size);
		if (!nrec) {
			memcpy(key0, k.mv_data, 16);
			nb0 = nb < 80 ? nb : 80;
			plen0 = plen;
		}
		nrec++;
	}
	(void)plen0;
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	assert_true(nrec >= 1);

	/* small reads of every chunk piece: the source's bytes */
	tcz_mview *v;
	tcz_reader *r;
	uint32_t f;
	assert_int_equal(tcz_store_open(sdir, TCZ_STORE_RDONLY, &s), 0);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_view_open_path(s, "m/model.safetensors", &v, &f), 0);
	unsigned char *buf = malloc(1u << 20);
	size_t parts = 0;
	for (int n = 0; n < 400; n++) {
		uint64_t off = rnd() % src_len;
		size_t len = 1 + rnd() % 20000;
		tcz_pieces l = {0};
		assert_int_equal(tcz_view_map(v, f, off, len, &l), 0);
		uint64_t at = off;
		for (size_t i = 0; i < l.n; i++) {
			const tcz_piece *p = &l.p[i];
			if (p->kind == TCZ_PIECE_CHUNK) {
				int rc = tcz_view_decode_part(r, v, &p->src, p->off,
							      p->len, buf);
				assert_true(rc == 0 || rc == -ENOTSUP);
				if (rc == 0) {
					assert_memory_equal(buf, src + at, p->len);
					parts++;
				}
			}
			at += p->len;
		}
		tcz_pieces_free(&l);
	}
	assert_true(parts > 0);

	/* the source of the first record's chunk */
	tcz_pieces l = {0};
	tcz_src cs = {0};
	uint64_t cs_at = 0;
	int found = 0;
	assert_int_equal(tcz_view_map(v, f, 0, src_len, &l), 0);
	for (size_t i = 0, at = 0; i < l.n; at += l.p[i].len, i++) {
		unsigned char kk[16];
		if (l.p[i].kind != TCZ_PIECE_CHUNK)
			continue;
		tcz_view_src_key(v, &l.p[i].src, kk);
		if (!found && memcmp(kk, key0, 16) == 0) {
			cs = l.p[i].src;
			cs_at = at - l.p[i].off;
			found = 1;
		}
	}
	tcz_pieces_free(&l);
	assert_true(found);
	tcz_mview_put(v);
	tcz_reader_free(r);
	tcz_store_close(s);

	/* a damaged byte in block 1: reads under it fail, block 0 reads on */
	damage(sdir, "chunks", key0, sp[1].val_off + sp[1].val_len / 2);
	assert_int_equal(tcz_store_open(sdir, TCZ_STORE_RDONLY, &s), 0);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_view_open_path(s, "m/model.safetensors", &v, &f), 0);
	assert_int_equal(tcz_view_decode_part(r, v, &cs, (uint32_t)sp[1].dec_off + 8,
					      100, buf),
			 -EIO);
	assert_int_equal(tcz_view_decode_part(r, v, &cs, (uint32_t)sp[0].dec_off,
					      (uint32_t)(sp[1].dec_off + 1), buf),
			 -EIO); /* spans into block 1 */
	for (size_t i = 0; i < nb0; i++) {
		if (i == 1)
			continue;
		assert_int_equal(tcz_view_decode_part(r, v, &cs,
						      (uint32_t)sp[i].dec_off,
						      (uint32_t)sp[i].dec_len, buf),
				 0);
		assert_memory_equal(buf, src + cs_at + sp[i].dec_off,
				    sp[i].dec_len);
	}
	unsigned char *whole = malloc(cs.len);
	assert_int_equal(tcz_view_decode(r, v, &cs, whole), -EIO);
	tcz_mview_put(v);
	tcz_reader_free(r);
	tcz_store_close(s);

	/* a damaged record is not trusted: the whole chunk is read instead,
	 * and verify reports the record (the chunk, undamaged again, is not) */
	damage(sdir, "chunks", key0, sp[1].val_off + sp[1].val_len / 2);
	damage(sdir, "blocks", key0, 12 + 30);
	assert_int_equal(tcz_store_open(sdir, TCZ_STORE_RDONLY, &s), 0);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_view_open_path(s, "m/model.safetensors", &v, &f), 0);
	assert_int_equal(tcz_view_decode_part(r, v, &cs, (uint32_t)sp[0].dec_off,
					      100, buf),
			 -ENOTSUP);
	assert_int_equal(tcz_view_decode(r, v, &cs, whole), 0);
	assert_memory_equal(whole, src + cs_at, cs.len);
	char seen[256] = "";
	tcz_verify_report rep;
	assert_int_equal(tcz_store_verify(s, NULL, problem_seen, seen, &rep),
			 -EIO);
	assert_int_equal(rep.bad, 1);
	assert_non_null(strstr(seen, "block index record is damaged"));
	tcz_mview_put(v);
	tcz_reader_free(r);
	tcz_store_close(s);

	/* a store from before the block index (no `blocks` table): read-only
	 * it reads every chunk whole; a writable open adds the table, empty */
	MDB_dbi dbi;
	env = raw_env(sdir, MDB_NOTLS);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "blocks", 0, &dbi), 0);
	assert_int_equal(mdb_drop(txn, dbi, 1), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	for (int rw = 0; rw < 2; rw++) {
		assert_int_equal(tcz_store_open(sdir, rw ? 0 : TCZ_STORE_RDONLY,
						&s),
				 0);
		assert_int_equal(tcz_reader_create(s, &r), 0);
		assert_int_equal(tcz_view_open_path(s, "m/model.safetensors",
						    &v, &f),
				 0);
		assert_int_equal(tcz_view_decode_part(r, v, &cs, 0, 100, buf),
				 -ENOTSUP);
		assert_int_equal(tcz_view_decode(r, v, &cs, whole), 0);
		assert_memory_equal(whole, src + cs_at, cs.len);
		tcz_mview_put(v);
		tcz_reader_free(r);
		tcz_store_close(s);
	}
	/* created by the writable open, empty */
	MDB_stat st;
	env = raw_env(sdir, MDB_NOTLS | MDB_RDONLY);
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "blocks", 0, &dbi), 0);
	assert_int_equal(mdb_stat(txn, dbi, &st), 0);
	assert_int_equal(st.ms_entries, 0);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	free(whole);
	free(buf);
}

/* A removed model keeps its chunks while a view pins it: reads go on;
 * when the last view goes, the next collection releases them. */
static void pinned_removal(void **state)
{
	(void)state;
	tcz_store *s;
	tcz_mview *v;
	tcz_reader *r;
	assert_int_equal(tcz_store_open(store_dir, 0, &s), 0);
	size_t before = count("chunks");
	/* lr's bytes stored losslessly: chunks no other model has */
	import(s, "gone", path_lr, 0);
	size_t with = count("chunks");
	assert_true(with > before);
	assert_int_equal(tcz_mview_open(s, "gone", &v), 0);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_store_remove(s, "gone"), 0);
	tcz_mview *v2;
	assert_int_equal(tcz_mview_open(s, "gone", &v2), -ENOENT);
	assert_true(count("dropped") >= 1); /* its chunks; its TT cores */
	assert_int_equal(count("chunks"), with); /* pinned by v */
	unsigned n = 9;
	assert_int_equal(tcz_store_collect(s, &n), 0);
	assert_int_equal(n, 0);
	uint32_t f;
	assert_int_equal(tcz_mview_path(v, "model.safetensors", &f), 0);
	unsigned char *buf = malloc(src_lr_len);
	size_t got;
	assert_int_equal(tcz_view_read(r, v, f, 0, src_lr_len, buf, &got, NULL), 0);
	assert_int_equal(got, src_lr_len);
	assert_memory_equal(buf, src_lr, src_lr_len);
	free(buf);
	tcz_verify_report rep;
	assert_int_equal(tcz_store_verify(s, NULL, NULL, NULL, &rep), 0);
	tcz_mview_put(v);
	assert_int_equal(tcz_store_collect(s, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(count("dropped"), 0);
	assert_int_equal(count("chunks"), before);
	assert_int_equal(tcz_store_verify(s, NULL, NULL, NULL, &rep), 0);
	tcz_reader_free(r);
	tcz_store_close(s);
}

/* ---- many readers, one cache, a writer ----------------------------------- */

typedef struct ctx {
	tcz_store *s;
	tcz_cache *cache;
	const unsigned char *tt_ref; /* lr.npy as one thread reads it */
	size_t tt_len;
	int stop;
	pthread_mutex_t lock; /* guards stop */
	int bad;
} ctx;

typedef struct fill_arg {
	tcz_reader *r;
	const tcz_mview *v;
	const tcz_src *s;
} fill_arg;

static int fill(void *arg, void *dst, size_t len)
{
	(void)len;
	fill_arg *a = arg;
	return tcz_view_decode(a->r, a->v, a->s, dst);
}

/* Reads range [off, off+len) of file f through the cache, as the daemon
 * does, into out. */
static int cached_read(ctx *c, tcz_reader *r, tcz_mview *v, uint32_t f,
		       uint64_t off, size_t len, unsigned char *out)
{
	tcz_pieces l = {0};
	int rc = tcz_view_map(v, f, off, len, &l);
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		tcz_piece *p = &l.p[i];
		tcz_cache_entry *e = NULL;
		if (p->kind == TCZ_PIECE_CHUNK || p->kind == TCZ_PIECE_WIDEN ||
		    p->kind == TCZ_PIECE_DEQUANT) {
			unsigned char key[TCZ_KEY_LEN];
			tcz_view_src_key(v, &p->src, key);
			fill_arg a = {r, v, &p->src};
			rc = tcz_cache_get(c->cache, key, p->src.len, fill, &a, &e);
			if (rc)
				break;
		}
		tcz_piece_copy(p, e ? tcz_cache_data(e) : NULL, out);
		out += p->len;
		if (e)
			tcz_cache_release(c->cache, e);
	}
	tcz_pieces_free(&l);
	return rc;
}

static int stopped(ctx *c)
{
	pthread_mutex_lock(&c->lock);
	int s = c->stop;
	pthread_mutex_unlock(&c->lock);
	return s;
}

static void *reader_thread(void *arg)
{
	ctx *c = arg;
	tcz_reader *r;
	if (tcz_reader_create(c->s, &r))
		return (void *)1;
	tcz_reader_set_cache(r, c->cache);
	unsigned char *buf = malloc(1u << 20);
	uint64_t seed = (uint64_t)(uintptr_t)&r;
	int bad = 0;
	for (int k = 0; !bad && !stopped(c) && k < 400; k++) {
		seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
		int tt = seed % 3 == 0;
		tcz_mview *v;
		uint32_t f;
		if (tcz_view_open_path(c->s, tt ? "lr/layers/lr.npy"
						: "m/model.safetensors",
				       &v, &f)) {
			bad = 1;
			break;
		}
		size_t total = tt ? c->tt_len : src_len;
		uint64_t off = (seed >> 8) % total;
		size_t len = 1 + (seed >> 32) % (1u << 20);
		if (len > total - off)
			len = total - off;
		if (cached_read(c, r, v, f, off, len, buf) ||
		    memcmp(buf, (tt ? c->tt_ref : src) + off, len) != 0)
			bad = 1;
		tcz_mview_put(v);
	}
	free(buf);
	tcz_reader_free(r);
	return bad ? (void *)1 : NULL;
}

static void *writer_thread(void *arg)
{
	ctx *c = arg;
	int bad = 0;
	for (int k = 0; !bad && k < 6; k++) {
		tcz_import_opts o;
		tcz_import_opts_default(&o);
		o.name = "churn";
		o.jobs = 1;
		tcz_import_result res;
		char err[512];
		const char *srcs[] = {path_m};
		uint32_t idx[2] = {0, 1};
		uint64_t reads[2] = {1, 2}, bytes[2] = {10, 20}, last[2] = {5, 6};
		unsigned n;
		if (tcz_import(c->s, srcs, 1, &o, &res, err, sizeof err) ||
		    tcz_store_add_access(c->s, 1, idx, reads, bytes, last, 2,
					 NULL) ||
		    tcz_store_remove(c->s, "churn") ||
		    tcz_store_collect(c->s, &n))
			bad = 1;
	}
	pthread_mutex_lock(&c->lock);
	c->stop = 1;
	pthread_mutex_unlock(&c->lock);
	return bad ? (void *)1 : NULL;
}

static void concurrent_readers(void **state)
{
	(void)state;
	ctx c = {0};
	pthread_mutex_init(&c.lock, NULL);
	assert_int_equal(tcz_store_open(store_dir, 0, &c.s), 0);
	assert_int_equal(tcz_cache_create(4u << 20, &c.cache), 0); /* evicts */
	/* the reference TT bytes, from one reader without a cache */
	tcz_reader *r;
	tcz_mview *v;
	uint32_t f;
	assert_int_equal(tcz_reader_create(c.s, &r), 0);
	assert_int_equal(tcz_view_open_path(c.s, "lr/layers/lr.npy", &v, &f), 0);
	c.tt_len = tcz_mview_file(v, f)->size;
	unsigned char *ref = malloc(c.tt_len);
	size_t got;
	assert_int_equal(tcz_view_read(r, v, f, 0, c.tt_len, ref, &got, NULL), 0);
	c.tt_ref = ref;
	tcz_mview_put(v);
	tcz_reader_free(r);

	enum { N = 6 };
	pthread_t th[N + 1];
	for (int i = 0; i < N; i++)
		assert_int_equal(pthread_create(&th[i], NULL, reader_thread, &c), 0);
	assert_int_equal(pthread_create(&th[N], NULL, writer_thread, &c), 0);
	for (int i = 0; i <= N; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		assert_null(ret);
	}
	tcz_cache_free(c.cache);
	tcz_verify_report rep;
	assert_int_equal(tcz_store_verify(c.s, NULL, NULL, NULL, &rep), 0);
	tcz_store_close(c.s);
	free(ref);
	pthread_mutex_destroy(&c.lock);
}

/* Page numbers of data.mdb (4 KiB pages) */
typedef struct pageset {
	size_t n, cap;
	size_t *pg;
} pageset;

static void ps_add(pageset *ps, size_t pg)
{
	for (size_t i = 0; i < ps->n; i++)
		if (ps->pg[i] == pg)
			return;
	if (ps->n == ps->cap) {
		ps->cap = ps->cap ? 2 * ps->cap : 64;
		ps->pg = realloc(ps->pg, ps->cap * sizeof *ps->pg);
		assert_non_null(ps->pg);
	}
	ps->pg[ps->n++] = pg;
}

/* How many of ps's pages of file path are in the page cache */
static size_t resident(const char *path, const pageset *ps)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	off_t size = lseek(fd, 0, SEEK_END);
	void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(m != MAP_FAILED);
	size_t np = ((size_t)size + 4095) / 4096;
	unsigned char *vec = malloc(np);
	assert_int_equal(mincore(m, (size_t)size, vec), 0);
	size_t in = 0;
	for (size_t i = 0; i < ps->n; i++)
		in += ps->pg[i] < np && (vec[ps->pg[i]] & 1);
	free(vec);
	munmap(m, (size_t)size);
	close(fd);
	return in;
}

/* Where this process maps file path from offset 0 (LMDB's map) */
static const char *map_base(const char *path)
{
	FILE *f = fopen("/proc/self/maps", "r");
	assert_non_null(f);
	char line[1024];
	const char *base = NULL;
	while (!base && fgets(line, sizeof line, f)) {
		unsigned long lo, off;
		size_t n = strlen(line);
		if (n && line[n - 1] == '\n')
			line[--n] = 0;
		if (n > strlen(path) && strcmp(line + n - strlen(path), path) == 0 &&
		    sscanf(line, "%lx-%*x %*s %lx", &lo, &off) == 2 && off == 0)
			base = (const char *)lo;
	}
	fclose(f);
	assert_non_null(base);
	return base;
}

/* Loading a model's index (tcz_view_index_warm) brings the leaf pages of
 * its block index records and chunk table entries into the page cache and
 * none of the chunk values' pages. Which page holds what is found with
 * LMDB itself: a record's data and a key point into their leaf. */
static void index_warm(void **state)
{
	(void)state;
	char sdir[160], data[200];
	snprintf(sdir, sizeof sdir, "%s/wstore", dir);
	snprintf(data, sizeof data, "%s/data.mdb", sdir);
	tcz_store *s;
	assert_int_equal(tcz_store_open(sdir, TCZ_STORE_CREATE, &s), 0);
	tcz_import_opts o;
	tcz_import_opts_default(&o);
	o.chunk_kib = 32; /* 71 chunks of two 16 KiB blocks */
	o.name = "m";
	o.jobs = 1;
	tcz_import_result res;
	char err[512];
	const char *srcs[] = {path_m};
	assert_int_equal(tcz_import(s, srcs, 1, &o, &res, err, sizeof err), 0);
	tcz_store_close(s);

	pageset leaves = {0}, values = {0};
	MDB_env *env = raw_env(sdir, MDB_NOTLS | MDB_RDONLY);
	MDB_stat st;
	assert_int_equal(mdb_env_stat(env, &st), 0);
	assert_int_equal(st.ms_psize, 4096);
	const char *base = map_base(data);
	MDB_txn *txn;
	MDB_dbi bdb, cdb;
	MDB_cursor *c;
	MDB_val k, d;
	assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "blocks", 0, &bdb), 0);
	assert_int_equal(mdb_dbi_open(txn, "chunks", 0, &cdb), 0);
	size_t nrec = 0;
	assert_int_equal(mdb_cursor_open(txn, bdb, &c), 0);
	for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &d, op) == 0; op = MDB_NEXT) {
		ps_add(&leaves, (size_t)((const char *)d.mv_data - base) / 4096);
		nrec++;
	}
	mdb_cursor_close(c);
	assert_int_equal(mdb_cursor_open(txn, cdb, &c), 0);
	for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &d, op) == 0; op = MDB_NEXT) {
		ps_add(&leaves, (size_t)((const char *)k.mv_data - base) / 4096);
		size_t first = (size_t)((const char *)d.mv_data - base) / 4096;
		size_t last = (size_t)((const char *)d.mv_data + d.mv_size - 1 -
				       base) / 4096;
		for (size_t pg = first; pg <= last; pg++)
			ps_add(&values, pg);
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	assert_true(nrec >= 60);
	assert_true(leaves.n >= 2);

	/* out of the page cache (mapped nowhere now) */
	int fd = open(data, O_RDONLY);
	assert_true(fd >= 0);
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);

	tcz_mview *v;
	tcz_reader *r;
	uint32_t f;
	assert_int_equal(tcz_store_open(sdir, TCZ_STORE_RDONLY, &s), 0);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_view_open_path(s, "m/model.safetensors", &v, &f), 0);
	size_t l0 = resident(data, &leaves), v0 = resident(data, &values);
	if (l0 == leaves.n) {
		tcz_mview_put(v);
		tcz_reader_free(r);
		tcz_store_close(s);
		free(leaves.pg);
		free(values.pg);
		fprintf(stderr, "index_warm: the page cache keeps %s (tmpfs?)\n",
			data);
		skip();
	}
	const tcz_model *m = tcz_mview_model(v);
	for (uint32_t t = 0; t < m->n_tensors; t++)
		assert_int_equal(tcz_view_index_warm(r, v, t, 0, UINT32_MAX), 0);
	/* nothing to do: past the tensors, past a tensor's chunks */
	assert_int_equal(tcz_view_index_warm(r, v, m->n_tensors, 0, 4), 0);
	assert_int_equal(tcz_view_index_warm(r, v, 0, 1u << 30, 4), 0);
	assert_int_equal(resident(data, &leaves), leaves.n);
	assert_int_equal(resident(data, &values), v0);

	tcz_mview_put(v);
	tcz_reader_free(r);
	tcz_store_close(s);
	free(leaves.pg);
	free(values.pg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(files_and_sizes),
		cmocka_unit_test(reads_match),
		cmocka_unit_test(block_index),
		cmocka_unit_test(index_warm),
		cmocka_unit_test(pinned_removal),
		cmocka_unit_test(concurrent_readers),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
