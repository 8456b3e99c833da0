/* The store API: opening and schema checks, reference-counted chunks,
 * visibility at commit, removal, record checksums. */
#include <errno.h>
#include <lmdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zstd.h>

#include "store/record.h"
#include "store/store.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/tcz-unit-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd);
}

static void store_path(char *out, size_t n, const char *sub)
{
	snprintf(out, n, "%s/%s", dir, sub);
}

/* Raw LMDB access, as a different tool (or damage) would do it. */
static void raw_put(const char *store, const char *db, const void *k,
		    size_t kl, const void *v, size_t vl)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_maxreaders(env, 4096);
	mdb_env_set_mapsize(env, 256u << 20); /* not the file's 64 GiB */
	assert_int_equal(mdb_env_open(env, store, MDB_NOTLS, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
	MDB_val kv = {kl, (void *)k}, dv = {vl, (void *)v};
	assert_int_equal(mdb_put(txn, dbi, &kv, &dv, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void open_errors(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s;
	store_path(p, sizeof p, "missing");
	assert_int_equal(tcz_store_open(p, 0, &s), -ENOENT);
	assert_non_null(strstr(tcz_store_errmsg(), "tczfs init"));

	store_path(p, sizeof p, "s1");
	assert_int_equal(tcz_store_open(p, TCZ_STORE_CREATE, &s), 0);
	tcz_store_close(s);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(tcz_store_open(p, TCZ_STORE_RDONLY, &s), 0);
	tcz_store_close(s);

	/* a newer schema version is refused, with a clear message */
	tcz_wbuf w;
	tcz_wb_init(&w);
	tcz_wb_u64(&w, TCZ_SCHEMA_VERSION + 1);
	assert_int_equal(tcz_rec_finish(&w), 0);
	raw_put(p, "meta", "schema", 6, w.p, w.len);
	tcz_wb_free(&w);
	assert_int_equal(tcz_store_open(p, 0, &s), -EPROTONOSUPPORT);
	char want[64];
	snprintf(want, sizeof want, "schema version %u", TCZ_SCHEMA_VERSION + 1);
	assert_non_null(strstr(tcz_store_errmsg(), want));

	/* a file that is not LMDB */
	store_path(p, sizeof p, "junk");
	mkdir(p, 0700);
	char f[160];
	snprintf(f, sizeof f, "%s/data.mdb", p);
	FILE *fp = fopen(f, "w");
	fputs("this is not a database, just some text that is long enough "
	      "to look like a page or two of something else entirely.\n",
	      fp);
	fclose(fp);
	assert_true(tcz_store_open(p, 0, &s) < 0);
	assert_true(strlen(tcz_store_errmsg()) > 0);
}

static void names(void **state)
{
	(void)state;
	assert_true(tcz_model_name_valid("llama-3.1_8B"));
	assert_true(tcz_model_name_valid("a"));
	assert_false(tcz_model_name_valid(""));
	assert_false(tcz_model_name_valid(".hidden"));
	assert_false(tcz_model_name_valid("-x"));
	assert_false(tcz_model_name_valid("a/b"));
	assert_false(tcz_model_name_valid("a b"));
	assert_false(tcz_model_name_valid("asic"));
	assert_false(tcz_model_name_valid("streams"));
	char longname[130];
	memset(longname, 'a', 129);
	longname[129] = 0;
	assert_false(tcz_model_name_valid(longname));
	longname[128] = 0;
	assert_true(tcz_model_name_valid(longname));
}

/* A model of one file holding one blob of the given bytes. */
static int import_blob(tcz_store *s, const char *name, const char *bytes)
{
	tcz_import_tx *tx;
	int rc = tcz_import_begin(s, name, &tx);
	if (rc)
		return rc;
	size_t len = strlen(bytes);
	unsigned char *val;
	size_t vlen;
	tcz_model m = {0};
	tcz_blob b = {0};
	tcz_extent x = {0, len, TCZ_EXT_BLOB, 0};
	tcz_file f = {(char *)"notes.txt", len, TCZ_FILE_SOURCE, 1, &x};
	unsigned char key[TCZ_KEY_LEN];
	/* equal bytes give equal chunks; decoding is not exercised here */
	rc = tcz_chunk_value(TCZ_CODEC_ZSTD, TCZ_DT_U8, (uint32_t)len, bytes,
			     len, &val, &vlen);
	assert_int_equal(rc, 0);
	assert_int_equal(tcz_import_put_chunk(tx, val, vlen, key), 0);
	b.length = len;
	b.chunk_bytes = TCZ_CHUNK_MAX;
	b.n_chunks = 1;
	b.chunks = (unsigned char(*)[TCZ_KEY_LEN])key;
	m.name = (char *)name;
	m.n_blobs = 1;
	m.blobs = &b;
	m.n_files = 1;
	m.files = &f;
	m.source = (char *)"unit";
	m.profile = (char *)"lossless";
	return tcz_import_commit(tx, &m);
}

static size_t count(const char *store, const char *db)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_stat st;
	mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_maxreaders(env, 4096);
	mdb_env_set_mapsize(env, 256u << 20); /* not the file's 64 GiB */
	assert_int_equal(mdb_env_open(env, store, MDB_NOTLS | MDB_RDONLY, 0600),
			 0);
	mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	mdb_dbi_open(txn, db, 0, &dbi);
	mdb_stat(txn, dbi, &st);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return st.ms_entries;
}

static void refcounts(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s;
	store_path(p, sizeof p, "refs");
	assert_int_equal(tcz_store_open(p, TCZ_STORE_CREATE, &s), 0);
	uint64_t g0, g1;
	assert_int_equal(tcz_store_generation(s, &g0), 0);
	assert_int_equal(import_blob(s, "one", "shared content"), 0);
	assert_int_equal(import_blob(s, "two", "shared content"), 0);
	assert_int_equal(import_blob(s, "three", "other content"), 0);
	assert_int_equal(import_blob(s, "two", "again"), -EEXIST);
	assert_int_equal(tcz_store_generation(s, &g1), 0);
	assert_int_equal(g1, g0 + 3);
	tcz_store_close(s);
	assert_int_equal(count(p, "chunks"), 2);
	assert_int_equal(count(p, "refs"), 2);
	assert_int_equal(count(p, "imports"), 0);
	assert_int_equal(count(p, "pending"), 0);

	assert_int_equal(tcz_store_open(p, 0, &s), 0);
	tcz_snap *sn;
	char **nm;
	size_t n;
	assert_int_equal(tcz_snap_begin(s, &sn), 0);
	assert_int_equal(tcz_snap_list(sn, &nm, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(nm[0], "one"); /* sorted */
	assert_string_equal(nm[1], "three");
	tcz_names_free(nm, n);
	/* the view keeps seeing "one" after it is removed */
	assert_int_equal(tcz_store_remove(s, "one"), 0);
	tcz_model *m;
	assert_int_equal(tcz_snap_model(sn, "one", &m), 0);
	assert_int_equal(m->n_files, 1);
	assert_int_equal(m->files[0].size, strlen("shared content"));
	tcz_model_free(m);
	tcz_snap_end(sn);
	assert_int_equal(tcz_store_remove(s, "one"), -ENOENT);
	tcz_store_close(s);
	assert_int_equal(count(p, "chunks"), 2); /* "two" still holds it */
	assert_int_equal(tcz_store_open(p, 0, &s), 0);
	assert_int_equal(tcz_store_remove(s, "two"), 0);
	tcz_store_close(s);
	assert_int_equal(count(p, "chunks"), 1);
	assert_int_equal(count(p, "refs"), 1);
}

/* A flipped bit in a record makes loading it fail with -EIO. */
static void record_checksum(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s;
	store_path(p, sizeof p, "rec");
	assert_int_equal(tcz_store_open(p, TCZ_STORE_CREATE, &s), 0);
	assert_int_equal(import_blob(s, "m", "payload"), 0);
	tcz_snap *sn;
	tcz_model *m;
	assert_int_equal(tcz_snap_begin(s, &sn), 0);
	assert_int_equal(tcz_snap_model(sn, "m", &m), 0);
	tcz_model_free(m);
	tcz_snap_end(sn);
	tcz_store_close(s);

	/* rewrite the model record with one byte changed */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_maxreaders(env, 4096);
	mdb_env_set_mapsize(env, 256u << 20); /* not the file's 64 GiB */
	assert_int_equal(mdb_env_open(env, p, MDB_NOTLS, 0600), 0);
	mdb_txn_begin(env, NULL, 0, &txn);
	mdb_dbi_open(txn, "models", 0, &dbi);
	MDB_val k = {1, "m"}, d;
	assert_int_equal(mdb_get(txn, dbi, &k, &d), 0);
	unsigned char *v = malloc(d.mv_size);
	memcpy(v, d.mv_data, d.mv_size);
	v[20] ^= 1;
	d.mv_data = v;
	assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
	mdb_txn_commit(txn);
	mdb_env_close(env);
	free(v);

	assert_int_equal(tcz_store_open(p, 0, &s), 0);
	assert_int_equal(tcz_snap_begin(s, &sn), 0);
	assert_int_equal(tcz_snap_model(sn, "m", &m), -EIO);
	tcz_snap_end(sn);
	/* and the damaged model can still be removed */
	assert_int_equal(tcz_store_remove(s, "m"), 0);
	tcz_store_close(s);
}

/* A store started with a 1 MiB map takes an import of 6 MiB: the map
 * grows on MDB_MAP_FULL instead of failing. */
static void map_grows(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s;
	store_path(p, sizeof p, "grow");
	setenv("TCZFS_MAPSIZE", "1048576", 1);
	assert_int_equal(tcz_store_open(p, TCZ_STORE_CREATE, &s), 0);
	tcz_import_tx *tx;
	assert_int_equal(tcz_import_begin(s, "big", &tx), 0);
	enum { N = 6 };
	static unsigned char keys[N][TCZ_KEY_LEN];
	unsigned char *payload = malloc(TCZ_CHUNK_MAX);
	uint64_t x = 88172645463325252ull;
	for (int c = 0; c < N; c++) {
		for (size_t i = 0; i < TCZ_CHUNK_MAX; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			payload[i] = (unsigned char)x;
		}
		unsigned char *val;
		size_t vlen;
		assert_int_equal(tcz_chunk_value(TCZ_CODEC_ZSTD, TCZ_DT_U8,
						 TCZ_CHUNK_MAX, payload,
						 TCZ_CHUNK_MAX, &val, &vlen), 0);
		assert_int_equal(tcz_import_put_chunk(tx, val, vlen, keys[c]), 0);
	}
	free(payload);
	tcz_blob b = {(uint64_t)N * TCZ_CHUNK_MAX, TCZ_CHUNK_MAX, N, keys, 0};
	tcz_extent x0 = {0, b.length, TCZ_EXT_BLOB, 0};
	tcz_file f = {(char *)"data.bin", b.length, TCZ_FILE_SOURCE, 1, &x0};
	tcz_model m = {0};
	m.name = (char *)"big";
	m.n_blobs = 1;
	m.blobs = &b;
	m.n_files = 1;
	m.files = &f;
	assert_int_equal(tcz_import_commit(tx, &m), 0);
	tcz_store_close(s);
	unsetenv("TCZFS_MAPSIZE");
	assert_int_equal(count(p, "chunks"), N);
	uint64_t bytes = 0;
	assert_int_equal(tcz_store_open(p, 0, &s), 0);
	assert_int_equal(tcz_store_disk_size(s, &bytes), 0);
	assert_true(bytes > (uint64_t)N * TCZ_CHUNK_MAX);
	tcz_store_close(s);
}

/* Removing a model whose record is damaged where its id is must not
 * touch the model that id (now) names: only the damaged name goes. */
static void rm_damaged_id(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s;
	store_path(p, sizeof p, "rmid");
	assert_int_equal(tcz_store_open(p, TCZ_STORE_CREATE, &s), 0);
	assert_int_equal(import_blob(s, "one", "first content"), 0);
	assert_int_equal(import_blob(s, "two", "second content"), 0);
	tcz_snap *sn;
	uint64_t id1, id2;
	assert_int_equal(tcz_snap_begin(s, &sn), 0);
	assert_int_equal(tcz_snap_model_id(sn, "one", &id1), 0);
	assert_int_equal(tcz_snap_model_id(sn, "two", &id2), 0);
	tcz_snap_end(sn);
	tcz_store_close(s);
	/* two's record now says it is one (the checksum no longer fits) */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_maxreaders(env, 4096);
	mdb_env_set_mapsize(env, 256u << 20);
	assert_int_equal(mdb_env_open(env, p, MDB_NOTLS, 0600), 0);
	mdb_txn_begin(env, NULL, 0, &txn);
	mdb_dbi_open(txn, "models", 0, &dbi);
	MDB_val k = {3, "two"}, d;
	assert_int_equal(mdb_get(txn, dbi, &k, &d), 0);
	unsigned char *v = malloc(d.mv_size);
	memcpy(v, d.mv_data, d.mv_size);
	memcpy(v + 8, &id1, 8); /* little-endian id field */
	d.mv_data = v;
	assert_int_equal(mdb_put(txn, dbi, &k, &d, 0), 0);
	mdb_txn_commit(txn);
	mdb_env_close(env);
	free(v);

	assert_int_equal(tcz_store_open(p, 0, &s), 0);
	assert_int_equal(tcz_store_remove(s, "two"), 0);
	tcz_model *m;
	assert_int_equal(tcz_snap_begin(s, &sn), 0);
	assert_int_equal(tcz_snap_model(sn, "one", &m), 0);
	assert_int_equal(m->files[0].size, strlen("first content"));
	tcz_model_free(m);
	assert_int_equal(tcz_snap_model(sn, "two", &m), -ENOENT);
	tcz_snap_end(sn);
	tcz_store_close(s);
	(void)id2;
}

static void print_problem(void *ud, const char *model, const char *what,
			  const char *problem)
{
	(void)ud;
	fprintf(stderr, "verify: %s: %s: %s\n", model, what, problem);
}

/* A map that cannot grow (no address space) is an error, not a crash,
 * and the store is intact. In a child, whose address space is limited. */
static void map_cannot_grow(void **state)
{
	(void)state;
	char p[128];
	store_path(p, sizeof p, "nogrow");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("TCZFS_MAPSIZE", "4MiB", 1);
		tcz_store *s;
		if (tcz_store_open(p, TCZ_STORE_CREATE, &s))
			_exit(2);
		/* what this process has mapped, plus a little */
		FILE *f = fopen("/proc/self/statm", "r");
		unsigned long pages = 0;
		if (!f || fscanf(f, "%lu", &pages) != 1)
			_exit(3);
		fclose(f);
		struct rlimit rl = {pages * 4096 + (48u << 20),
				    pages * 4096 + (48u << 20)};
		setrlimit(RLIMIT_AS, &rl);
		int rc = 0;
		for (int i = 0; i < 64 && rc == 0; i++) {
			char name[16];
			snprintf(name, sizeof name, "m%d", i);
			tcz_import_tx *tx;
			rc = tcz_import_begin(s, name, &tx);
			static unsigned char key[TCZ_KEY_LEN];
			unsigned char *payload = calloc(1, TCZ_CHUNK_MAX);
			uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
			for (size_t j = 0; payload && j < TCZ_CHUNK_MAX; j++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				payload[j] = (unsigned char)x; /* incompressible */
			}
			unsigned char *val, *z = malloc(ZSTD_compressBound(TCZ_CHUNK_MAX));
			size_t vlen, zl = payload && z ? ZSTD_compress(
						  z, ZSTD_compressBound(TCZ_CHUNK_MAX),
						  payload, TCZ_CHUNK_MAX, 1)
						: 0;
			if (rc == 0 && zl && !ZSTD_isError(zl) &&
			    tcz_chunk_value(TCZ_CODEC_ZSTD, TCZ_DT_U8, TCZ_CHUNK_MAX,
					    z, zl, &val, &vlen) == 0)
				rc = tcz_import_put_chunk(tx, val, vlen, key);
			free(payload);
			free(z);
			if (rc == 0) {
				tcz_blob b = {TCZ_CHUNK_MAX, TCZ_CHUNK_MAX, 1,
					      (unsigned char(*)[16])key, 0};
				tcz_extent x0 = {0, b.length, TCZ_EXT_BLOB, 0};
				tcz_file fl = {(char *)"d.bin", b.length,
					       TCZ_FILE_SOURCE, 1, &x0};
				tcz_model m = {0};
				m.name = name;
				m.n_blobs = 1;
				m.blobs = &b;
				m.n_files = 1;
				m.files = &fl;
				rc = tcz_import_commit(tx, &m);
			} else if (tx) {
				tcz_import_abort(tx);
			}
		}
		tcz_store_close(s);
		if (rc != -ENOSPC && rc != -ENOMEM)
			fprintf(stderr, "child: rc %d: %s\n", rc, tcz_store_errmsg());
		_exit(rc == -ENOSPC || rc == -ENOMEM ? 0 : 4);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st)); /* never a signal */
	assert_int_equal(WEXITSTATUS(st), 0);
	tcz_store *s;
	assert_int_equal(tcz_store_open(p, 0, &s), 0);
	tcz_verify_report rep;
	assert_int_equal(tcz_store_verify(s, NULL, print_problem, NULL, &rep), 0);
	assert_true(rep.models > 0);
	tcz_store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(open_errors),
		cmocka_unit_test(names),
		cmocka_unit_test(refcounts),
		cmocka_unit_test(record_checksum),
		cmocka_unit_test(map_grows),
		cmocka_unit_test(rm_damaged_id),
		cmocka_unit_test(map_cannot_grow),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
