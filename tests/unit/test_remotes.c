/* Remotes without a Ceph cluster (store/remotes.c): URL parsing and remote
 * names, the `remotes` table, the manifest, index and lease formats, and
 * the local cache of remote chunks (rcache). Asserts the contracts of
 * store/remote.h and store/remote_int.h. */
#include <errno.h>
#include <lmdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/record.h"
#include "store/remote.h"
#include "store/remote_int.h"
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

static tcz_store *open_store(const char *sub, unsigned flags)
{
	char p[128];
	tcz_store *s = NULL;
	store_path(p, sizeof p, sub);
	assert_int_equal(tcz_store_open(p, flags, &s), 0);
	return s;
}

/* Raw LMDB access, as damage would do it (the store must be closed: LMDB
 * allows one environment per file and process). */
static void raw_put(const char *sub, const char *db, const void *k, size_t kl,
		    const void *v, size_t vl)
{
	char p[128];
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	store_path(p, sizeof p, sub);
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 32);
	mdb_env_set_maxreaders(env, 4096);
	mdb_env_set_mapsize(env, 256u << 20); /* not the file's 64 GiB */
	assert_int_equal(mdb_env_open(env, p, MDB_NOTLS, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
	MDB_val kv = {kl, (void *)k}, dv = {vl, (void *)v};
	assert_int_equal(mdb_put(txn, dbi, &kv, &dv, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* ---- URLs and names --------------------------------------------------- */

static tcz_remote_url url; /* 4.5 KiB: not on cmocka's stack */

static void parse_ok(const char *s)
{
	char err[256] = "";
	int rc = tcz_remote_url_parse(s, &url, err, sizeof err);
	if (rc)
		fail_msg("'%s' refused: %d %s", s, rc, err);
}

static void parse_bad(const char *s)
{
	char err[256] = "";
	int rc = tcz_remote_url_parse(s, &url, err, sizeof err);
	if (rc != -EINVAL)
		fail_msg("'%s': want -EINVAL, got %d (pool '%s' id '%s' ns '%s')",
			 s, rc, url.pool, url.id, url.ns);
	if (!err[0])
		fail_msg("'%s': refused without a reason", s);
}

/* A URL of prefix, a run of n copies of c, and suffix (malloc'd). */
static char *url_with_run(const char *prefix, char c, size_t n,
			  const char *suffix)
{
	size_t a = strlen(prefix), b = strlen(suffix);
	char *u = malloc(a + n + b + 1);
	assert_non_null(u);
	memcpy(u, prefix, a);
	memset(u + a, c, n);
	memcpy(u + a + n, suffix, b + 1);
	return u;
}

static void url_good(void **state)
{
	(void)state;
	parse_ok("rados://pool");
	assert_string_equal(url.pool, "pool");
	assert_string_equal(url.conf, "");
	assert_string_equal(url.id, "");
	assert_string_equal(url.ns, "");

	parse_ok("rados://pool/"); /* a trailing slash */
	assert_string_equal(url.pool, "pool");

	parse_ok("rados://My.pool_1-x?conf=/etc/ceph/test.conf&id=tczfs"
		 "&namespace=team-a");
	assert_string_equal(url.pool, "My.pool_1-x");
	assert_string_equal(url.conf, "/etc/ceph/test.conf");
	assert_string_equal(url.id, "tczfs");
	assert_string_equal(url.ns, "team-a");

	/* any order, any subset; "client." is not part of the id */
	parse_ok("rados://p?namespace=n&id=client.admin");
	assert_string_equal(url.pool, "p");
	assert_string_equal(url.conf, "");
	assert_string_equal(url.id, "admin");
	assert_string_equal(url.ns, "n");
	parse_ok("rados://p?conf=relative/ceph.conf");
	assert_string_equal(url.conf, "relative/ceph.conf");
	assert_string_equal(url.id, "");

	/* %XX-decoded: the pool, and values with '&', '=', '/', space,
	 * bytes above 0x7f (either case of hex digits) */
	parse_ok("rados://p%41%2d1?conf=/a%20b/c%3dd.conf"
		 "&namespace=x%2Fy%26z%3D%c3%A9");
	assert_string_equal(url.pool, "pA-1");
	assert_string_equal(url.conf, "/a b/c=d.conf");
	assert_string_equal(url.ns, "x/y&z=\xc3\xa9");
	parse_ok("rados://p?id=a%2eb");
	assert_string_equal(url.id, "a.b");
	/* an '=' in a value is the value's */
	parse_ok("rados://p?conf=/x=y");
	assert_string_equal(url.conf, "/x=y");

	/* the longest of each field */
	char *u = url_with_run("rados://", 'p', sizeof url.pool - 1, "");
	parse_ok(u);
	assert_int_equal(strlen(url.pool), sizeof url.pool - 1);
	free(u);
	u = url_with_run("rados://p?id=", 'i', sizeof url.id - 1, "");
	parse_ok(u);
	assert_int_equal(strlen(url.id), sizeof url.id - 1);
	free(u);
	/* "client." is not part of the id's length */
	u = url_with_run("rados://p?id=client.", 'i', sizeof url.id - 1, "");
	parse_ok(u);
	assert_int_equal(strlen(url.id), sizeof url.id - 1);
	assert_int_equal(url.id[0], 'i');
	free(u);
	u = url_with_run("rados://p?namespace=", 'n', sizeof url.ns - 1, "");
	parse_ok(u);
	assert_int_equal(strlen(url.ns), sizeof url.ns - 1);
	free(u);
	u = url_with_run("rados://p?conf=/", 'c', sizeof url.conf - 2, "");
	parse_ok(u);
	assert_int_equal(strlen(url.conf), sizeof url.conf - 1);
	free(u);
	/* escapes count decoded: 127 "%41" are 127 bytes */
	char big[8 + 3 * 127 + 1] = "rados://";
	for (int i = 0; i < 127; i++)
		strcat(big, "%41");
	parse_ok(big);
	assert_int_equal(strlen(url.pool), 127);
}

static void url_bad(void **state)
{
	(void)state;
	/* scheme */
	parse_bad("");
	parse_bad("pool");
	parse_bad("rados:/pool");
	parse_bad("rados:pool");
	parse_bad("ceph://pool");
	parse_bad("http://pool");
	parse_bad(" rados://pool");
	/* the pool: empty, or not [A-Za-z0-9._-]+ (decoded or not) */
	parse_bad("rados://");
	parse_bad("rados:///");
	parse_bad("rados://?id=x");
	parse_bad("rados:///?id=x");
	parse_bad("rados://a/b");
	parse_bad("rados://a//");
	parse_bad("rados://po ol");
	parse_bad("rados://po%20ol");
	parse_bad("rados://p%2Fq");
	parse_bad("rados://p:6789");
	parse_bad("rados://user@p");
	/* parameters: unknown, no value, empty, invalid id */
	parse_bad("rados://p?user=x");
	parse_bad("rados://p?ID=x");
	parse_bad("rados://p?confx=/a");
	parse_bad("rados://p?con=/a");
	parse_bad("rados://p?=x");
	parse_bad("rados://p?conf");
	parse_bad("rados://p?id=a&namespace");
	parse_bad("rados://p?conf=");
	parse_bad("rados://p?id=");
	parse_bad("rados://p?namespace=");
	parse_bad("rados://p?id=client.");
	parse_bad("rados://p?id=a b");
	parse_bad("rados://p?id=a/b");
	parse_bad("rados://p?id=a%2Fb");
	parse_bad("rados://p?id=a:b");
	/* given twice */
	parse_bad("rados://p?id=a&id=b");
	parse_bad("rados://p?id=a&id=a");
	parse_bad("rados://p?conf=/a&conf=/a");
	parse_bad("rados://p?namespace=a&id=b&namespace=c");
	parse_bad("rados://p?id=client.a&id=a");
	/* malformed %XX, NUL and control characters */
	parse_bad("rados://p%");
	parse_bad("rados://p%4");
	parse_bad("rados://p%zz");
	parse_bad("rados://p%4g");
	parse_bad("rados://p?conf=/a%");
	parse_bad("rados://p?conf=/a%2");
	parse_bad("rados://p?conf=/a%x1");
	parse_bad("rados://p?namespace=%g0");
	parse_bad("rados://p?namespace=%%41");
	parse_bad("rados://p?namespace=a%00b");
	parse_bad("rados://p?namespace=a%0ab");
	parse_bad("rados://p?namespace=a%1F");
	parse_bad("rados://p?namespace=a%7f");
	parse_bad("rados://p?conf=/a\nb");
	parse_bad("rados://p?namespace=a\tb");
	/* too long, each field, raw and as escapes */
	char *u = url_with_run("rados://", 'p', sizeof url.pool, "");
	parse_bad(u);
	free(u);
	u = url_with_run("rados://p?id=", 'i', sizeof url.id, "");
	parse_bad(u);
	free(u);
	u = url_with_run("rados://p?id=client.", 'i', sizeof url.id, "");
	parse_bad(u);
	free(u);
	u = url_with_run("rados://p?id=", 'i', 100000, "");
	parse_bad(u);
	free(u);
	u = url_with_run("rados://p?namespace=", 'n', sizeof url.ns, "");
	parse_bad(u);
	free(u);
	u = url_with_run("rados://p?conf=/", 'c', sizeof url.conf - 1, "");
	parse_bad(u);
	free(u);
	u = url_with_run("rados://", 'p', 100000, "?id=x");
	parse_bad(u);
	free(u);
	char big[8 + 3 * 128 + 1] = "rados://";
	for (int i = 0; i < 128; i++)
		strcat(big, "%41");
	parse_bad(big);

	/* the reason fits the buffer given, however small; none is fine */
	char err[8];
	memset(err, 'x', sizeof err);
	assert_int_equal(tcz_remote_url_parse("ceph://a-long-pool-name", &url,
					      err, sizeof err),
			 -EINVAL);
	assert_non_null(memchr(err, 0, sizeof err));
	assert_int_equal(tcz_remote_url_parse("ceph://p", &url, NULL, 0),
			 -EINVAL);
	assert_int_equal(tcz_remote_url_parse("rados://p?x=1", &url, NULL, 0),
			 -EINVAL);
}

static void names(void **state)
{
	(void)state;
	assert_true(tcz_remote_name_valid("origin"));
	assert_true(tcz_remote_name_valid("a"));
	assert_true(tcz_remote_name_valid("7"));
	assert_true(tcz_remote_name_valid("Lab-2.ceph_x"));
	assert_true(tcz_remote_name_valid("a."));
	assert_true(tcz_remote_name_valid("a-"));
	assert_false(tcz_remote_name_valid(""));
	assert_false(tcz_remote_name_valid(".a"));
	assert_false(tcz_remote_name_valid("_a"));
	assert_false(tcz_remote_name_valid("-a"));
	assert_false(tcz_remote_name_valid("a/b"));
	assert_false(tcz_remote_name_valid("a b"));
	assert_false(tcz_remote_name_valid("a:b"));
	assert_false(tcz_remote_name_valid("a\nb"));
	assert_false(tcz_remote_name_valid("\xc3\xa9t\xc3\xa9"));
	char n[TCZ_REMOTE_NAME_MAX + 2];
	memset(n, 'r', sizeof n);
	n[TCZ_REMOTE_NAME_MAX] = 0;
	assert_true(tcz_remote_name_valid(n)); /* 64 */
	n[TCZ_REMOTE_NAME_MAX] = 'r';
	n[TCZ_REMOTE_NAME_MAX + 1] = 0;
	assert_false(tcz_remote_name_valid(n)); /* 65 */
}

/* ---- the remotes table -------------------------------------------------- */

static void remotes_table(void **state)
{
	(void)state;
	tcz_store *s = open_store("rt", TCZ_STORE_CREATE);
	tcz_remote_def *d;
	size_t n;
	char *u;
	assert_int_equal(tcz_store_remotes(s, &d, &n), 0);
	assert_int_equal(n, 0);
	tcz_remote_defs_free(d, n);

	const char *url1 = "rados://tczfs?id=tczfs&namespace=ns%2F1";
	assert_int_equal(tcz_store_remote_add(s, "origin", url1), 0);
	/* duplicates refused, with either URL; the first is kept */
	assert_int_equal(tcz_store_remote_add(s, "origin", url1), -EEXIST);
	assert_int_equal(tcz_store_remote_add(s, "origin", "rados://other"),
			 -EEXIST);
	assert_non_null(strstr(tcz_store_errmsg(), "origin"));
	/* bad names and URLs */
	assert_int_equal(tcz_store_remote_add(s, "", "rados://p"), -EINVAL);
	assert_int_equal(tcz_store_remote_add(s, "-x", "rados://p"), -EINVAL);
	assert_int_equal(tcz_store_remote_add(s, "a/b", "rados://p"), -EINVAL);
	assert_int_equal(tcz_store_remote_add(s, "bad", "ceph://p"), -EINVAL);
	assert_int_equal(tcz_store_remote_add(s, "bad", "rados://p?x=1"),
			 -EINVAL);
	assert_int_equal(tcz_store_remote_add(s, "bad", "rados://"), -EINVAL);
	assert_int_equal(tcz_store_remote_url(s, "bad", &u), -ENOENT);
	assert_null(u);

	assert_int_equal(tcz_store_remote_add(s, "backup", "rados://b"), 0);
	assert_int_equal(tcz_store_remote_add(s, "zz", "rados://z/"), 0);
	assert_int_equal(tcz_store_remotes(s, &d, &n), 0);
	assert_int_equal(n, 3); /* sorted by name */
	assert_string_equal(d[0].name, "backup");
	assert_string_equal(d[0].url, "rados://b");
	assert_string_equal(d[1].name, "origin");
	assert_string_equal(d[1].url, url1);
	assert_string_equal(d[2].name, "zz");
	tcz_remote_defs_free(d, n);
	assert_int_equal(tcz_store_remote_url(s, "origin", &u), 0);
	assert_string_equal(u, url1);
	free(u);

	/* unknown names: -ENOENT, whatever the name (LMDB refuses an empty
	 * key, or one above its 511 bytes, with MDB_BAD_VALSIZE) */
	assert_int_equal(tcz_store_remote_url(s, "nope", &u), -ENOENT);
	assert_null(u);
	assert_int_equal(tcz_store_remote_rm(s, "nope"), -ENOENT);
	assert_int_equal(tcz_store_remote_url(s, "", &u), -ENOENT);
	assert_null(u);
	assert_int_equal(tcz_store_remote_rm(s, ""), -ENOENT);
	char longname[600];
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	assert_int_equal(tcz_store_remote_url(s, longname, &u), -ENOENT);
	assert_int_equal(tcz_store_remote_rm(s, longname), -ENOENT);

	assert_int_equal(tcz_store_remote_rm(s, "zz"), 0);
	assert_int_equal(tcz_store_remote_rm(s, "zz"), -ENOENT);
	assert_int_equal(tcz_store_remote_url(s, "zz", &u), -ENOENT);
	/* a removed name can be added again */
	assert_int_equal(tcz_store_remote_add(s, "zz", "rados://z2"), 0);
	assert_int_equal(tcz_store_remote_rm(s, "zz"), 0);
	tcz_store_close(s);

	/* persistence */
	s = open_store("rt", 0);
	assert_int_equal(tcz_store_remotes(s, &d, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(d[0].name, "backup");
	assert_string_equal(d[1].name, "origin");
	assert_string_equal(d[1].url, url1);
	tcz_remote_defs_free(d, n);
	tcz_store_close(s);

	/* read-only: reads work, writes are refused and change nothing */
	s = open_store("rt", TCZ_STORE_RDONLY);
	assert_int_equal(tcz_store_remotes(s, &d, &n), 0);
	assert_int_equal(n, 2);
	tcz_remote_defs_free(d, n);
	assert_int_equal(tcz_store_remote_url(s, "backup", &u), 0);
	assert_string_equal(u, "rados://b");
	free(u);
	assert_int_equal(tcz_store_remote_add(s, "new", "rados://p"), -EROFS);
	assert_int_equal(tcz_store_remote_rm(s, "backup"), -EROFS);
	int rc = tcz_store_remote_rm(s, "nope");
	assert_true(rc == -EROFS || rc == -ENOENT);
	tcz_store_close(s);
	s = open_store("rt", 0);
	assert_int_equal(tcz_store_remotes(s, &d, &n), 0);
	assert_int_equal(n, 2);
	tcz_remote_defs_free(d, n);
	tcz_store_close(s);

	/* a damaged record is -EIO, never garbage */
	raw_put("rt", "remotes", "broken", 6, "not a record at all", 19);
	s = open_store("rt", 0);
	assert_int_equal(tcz_store_remotes(s, &d, &n), -EIO);
	assert_null(d);
	assert_int_equal(n, 0);
	assert_non_null(strstr(tcz_store_errmsg(), "broken"));
	assert_int_equal(tcz_store_remote_url(s, "broken", &u), -EIO);
	assert_null(u);
	assert_int_equal(tcz_store_remote_url(s, "origin", &u), 0);
	free(u);
	/* and can be removed */
	assert_int_equal(tcz_store_remote_rm(s, "broken"), 0);
	assert_int_equal(tcz_store_remotes(s, &d, &n), 0);
	assert_int_equal(n, 2);
	tcz_remote_defs_free(d, n);
	tcz_store_close(s);
}

/* ---- formats ------------------------------------------------------------ */

/* Decodes every copy of rec[n] with one bit flipped, and every truncation:
 * dec returns 0 or a negative errno. Flips must be -EIO (the checksum);
 * truncations -EIO or -EBADMSG. */
typedef int (*decode_fn)(const void *p, size_t n, void *ud);

static void damage_all(const unsigned char *rec, size_t n, decode_fn dec,
		       void *ud, int flips_eio)
{
	unsigned char *b = malloc(n);
	assert_non_null(b);
	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(b, rec, n);
			b[i] ^= (unsigned char)(1u << bit);
			int rc = dec(b, n, ud);
			if (flips_eio ? rc != -EIO : rc >= 0)
				fail_msg("bit %d of byte %zu of %zu flipped: %d",
					 bit, i, n, rc);
		}
	}
	for (size_t l = 1; l < n; l++) {
		/* an exact copy, so valgrind and ASan see any overread */
		unsigned char *t = malloc(l);
		assert_non_null(t);
		memcpy(t, rec, l);
		int rc = dec(t, l, ud);
		free(t);
		if (rc != -EIO && rc != -EBADMSG)
			fail_msg("truncated to %zu of %zu: %d", l, n, rc);
	}
	free(b);
}

static void fill_sha(unsigned char *sha, unsigned seed)
{
	for (unsigned i = 0; i < TCZ_SHA256_LEN; i++)
		sha[i] = (unsigned char)(seed * 31u + i * 7u);
}

static tcz_rindex *make_index(void)
{
	tcz_rindex *ix = calloc(1, sizeof *ix);
	assert_non_null(ix);
	static const char *nm[] = {"llama", "bert-base", "t5.small"};
	for (unsigned i = 0; i < 3; i++) {
		tcz_rindex_entry e = {0};
		e.name = (char *)nm[i];
		fill_sha(e.manifest_sha, i);
		e.manifest_len = 1000u + i;
		e.push_time = 1700000000000ull + i;
		e.source_bytes = (uint64_t)1 << (33 + i);
		e.stored_bytes = 12345u * (i + 1);
		e.n_objects = 7u + i;
		assert_int_equal(tcz__index_set(ix, &e), 0);
	}
	return ix;
}

static int index_dec(const void *p, size_t n, void *ud)
{
	(void)ud;
	tcz_rindex *ix = (tcz_rindex *)1;
	int rc = tcz__index_decode(p, n, &ix);
	if (rc)
		assert_null(ix);
	tcz_rindex_free(ix);
	return rc;
}

/* An index record with a valid checksum of whatever build writes. */
static void index_raw(tcz_wbuf *w, uint32_t magic, uint32_t version,
		      uint32_t count, const char *const *names, size_t n_names,
		      int trailing)
{
	tcz_wb_init(w);
	tcz_wb_u32(w, magic);
	tcz_wb_u32(w, version);
	tcz_wb_u64(w, 9);
	tcz_wb_u32(w, count);
	for (size_t i = 0; i < n_names; i++) {
		unsigned char sha[TCZ_SHA256_LEN] = {0};
		tcz_wb_str(w, names[i]);
		tcz_wb_bytes(w, sha, sizeof sha);
		for (int k = 0; k < 4; k++)
			tcz_wb_u64(w, 1);
		tcz_wb_u32(w, 1);
	}
	if (trailing)
		tcz_wb_u8(w, 0);
	assert_int_equal(tcz_rec_finish(w), 0);
}

static void index_format(void **state)
{
	(void)state;
	tcz_rindex *ix = make_index();
	/* set keeps the entries sorted and raises the generation */
	assert_int_equal(ix->generation, 3);
	assert_int_equal(ix->n, 3);
	assert_string_equal(ix->e[0].name, "bert-base");
	assert_string_equal(ix->e[1].name, "llama");
	assert_string_equal(ix->e[2].name, "t5.small");
	assert_int_equal(tcz__index_find(ix, "llama"), 1);
	assert_int_equal(tcz__index_find(ix, "t5.small"), 2);
	assert_int_equal(tcz__index_find(ix, "gpt"), -1);
	assert_int_equal(tcz__index_find(ix, ""), -1);
	/* replacing an entry */
	tcz_rindex_entry e = ix->e[1];
	e.name = (char *)"llama";
	e.manifest_len = 4242;
	assert_int_equal(tcz__index_set(ix, &e), 0);
	assert_int_equal(ix->n, 3);
	assert_int_equal(ix->generation, 4);
	assert_int_equal(ix->e[1].manifest_len, 4242);
	assert_int_equal(tcz__index_del(ix, "gpt"), -ENOENT);
	assert_int_equal(ix->generation, 4);

	tcz_wbuf w;
	assert_int_equal(tcz__index_encode(ix, &w), 0);
	tcz_rindex *back;
	assert_int_equal(tcz__index_decode(w.p, w.len, &back), 0);
	assert_int_equal(back->generation, ix->generation);
	assert_int_equal(back->n, ix->n);
	for (size_t i = 0; i < ix->n; i++) {
		const tcz_rindex_entry *a = &ix->e[i], *b = &back->e[i];
		assert_string_equal(a->name, b->name);
		assert_memory_equal(a->manifest_sha, b->manifest_sha,
				    TCZ_SHA256_LEN);
		assert_int_equal(a->manifest_len, b->manifest_len);
		assert_int_equal(a->push_time, b->push_time);
		assert_int_equal(a->source_bytes, b->source_bytes);
		assert_int_equal(a->stored_bytes, b->stored_bytes);
		assert_int_equal(a->n_objects, b->n_objects);
	}
	tcz_rindex_free(back);
	damage_all(w.p, w.len, index_dec, NULL, 1);
	tcz_wb_free(&w);

	/* deleting everything: an empty index that still round-trips */
	assert_int_equal(tcz__index_del(ix, "llama"), 0);
	assert_int_equal(tcz__index_del(ix, "llama"), -ENOENT);
	assert_int_equal(tcz__index_del(ix, "bert-base"), 0);
	assert_int_equal(tcz__index_del(ix, "t5.small"), 0);
	assert_int_equal(ix->n, 0);
	assert_int_equal(ix->generation, 7);
	assert_int_equal(tcz__index_encode(ix, &w), 0);
	assert_int_equal(tcz__index_decode(w.p, w.len, &back), 0);
	assert_int_equal(back->n, 0);
	assert_int_equal(back->generation, 7);
	tcz_rindex_free(back);
	tcz_wb_free(&w);
	tcz_rindex_free(ix);
	tcz_rindex_free(NULL);

	/* no object: the empty index of generation 0 */
	assert_int_equal(tcz__index_decode(NULL, 0, &back), 0);
	assert_int_equal(back->n, 0);
	assert_int_equal(back->generation, 0);
	tcz_rindex_free(back);
	assert_int_equal(index_dec("short", 5, NULL), -EIO);

	/* malformed, with a valid checksum: -EBADMSG */
	static const char *const two[] = {"a", "b"};
	static const char *const unsorted[] = {"b", "a"};
	static const char *const dup[] = {"a", "a"};
	static const char *const badname[] = {"a/b"};
	static const char *const empty[] = {""};
	index_raw(&w, TCZ__INDEX_MAGIC, 1, 2, two, 2, 0);
	assert_int_equal(index_dec(w.p, w.len, NULL), 0); /* the control */
	tcz_wb_free(&w);
	index_raw(&w, TCZ__MANIFEST_MAGIC, 1, 2, two, 2, 0);
	assert_int_equal(index_dec(w.p, w.len, NULL), -EBADMSG);
	tcz_wb_free(&w);
	index_raw(&w, TCZ__INDEX_MAGIC, 2, 2, two, 2, 0);
	assert_int_equal(index_dec(w.p, w.len, NULL), -EBADMSG);
	tcz_wb_free(&w);
	index_raw(&w, TCZ__INDEX_MAGIC, 1, 3, two, 2, 0);
	assert_int_equal(index_dec(w.p, w.len, NULL), -EBADMSG);
	tcz_wb_free(&w);
	index_raw(&w, TCZ__INDEX_MAGIC, 1, 0xffffffffu, two, 2, 0);
	assert_int_equal(index_dec(w.p, w.len, NULL), -EBADMSG);
	tcz_wb_free(&w);
	index_raw(&w, TCZ__INDEX_MAGIC, 1, 1, two, 2, 0); /* one left over */
	assert_int_equal(index_dec(w.p, w.len, NULL), -EBADMSG);
	tcz_wb_free(&w);
	index_raw(&w, TCZ__INDEX_MAGIC, 1, 2, two, 2, 1);
	assert_int_equal(index_dec(w.p, w.len, NULL), -EBADMSG);
	tcz_wb_free(&w);
	index_raw(&w, TCZ__INDEX_MAGIC, 1, 2, unsorted, 2, 0);
	assert_int_equal(index_dec(w.p, w.len, NULL), -EBADMSG);
	tcz_wb_free(&w);
	index_raw(&w, TCZ__INDEX_MAGIC, 1, 2, dup, 2, 0);
	assert_int_equal(index_dec(w.p, w.len, NULL), -EBADMSG);
	tcz_wb_free(&w);
	index_raw(&w, TCZ__INDEX_MAGIC, 1, 1, badname, 1, 0);
	assert_int_equal(index_dec(w.p, w.len, NULL), -EBADMSG);
	tcz_wb_free(&w);
	index_raw(&w, TCZ__INDEX_MAGIC, 1, 1, empty, 1, 0);
	assert_int_equal(index_dec(w.p, w.len, NULL), -EBADMSG);
	tcz_wb_free(&w);
}

static int lease_dec(const void *p, size_t n, void *ud)
{
	uint64_t ms = 0;
	int rc = tcz__lease_decode(p, n, &ms);
	if (rc == 0 && ud)
		assert_int_equal(ms, *(uint64_t *)ud);
	return rc;
}

static void lease_format(void **state)
{
	(void)state;
	tcz_wbuf w;
	uint64_t start = 1712345678901ull, ms = 0;
	assert_int_equal(tcz__lease_encode(start, "host-1", 4242, "llama", &w), 0);
	assert_int_equal(tcz__lease_decode(w.p, w.len, &ms), 0);
	assert_int_equal(ms, start);
	/* the lease's errors are not spelled out: any error, never a crash
	 * nor a wrong start */
	damage_all(w.p, w.len, lease_dec, &start, 0);
	tcz_wb_free(&w);
	assert_true(tcz__lease_decode("", 0, &ms) < 0);
	/* not a lease: an index record */
	tcz_rindex ix = {0};
	assert_int_equal(tcz__index_encode(&ix, &w), 0);
	assert_true(tcz__lease_decode(w.p, w.len, &ms) < 0);
	tcz_wb_free(&w);
	/* a lease cut short before its start time, checksum valid */
	tcz_wb_init(&w);
	tcz_wb_u32(&w, TCZ__LEASE_MAGIC);
	tcz_wb_u32(&w, 1);
	assert_int_equal(tcz_rec_finish(&w), 0);
	assert_true(tcz__lease_decode(w.p, w.len, &ms) < 0);
	tcz_wb_free(&w);

	/* the touch/renew stamps */
	char st[40];
	assert_int_equal(tcz__stamp(st, 0x0123456789abcdefull, 0, 0), 16);
	assert_string_equal(st, "0123456789abcdef");
	assert_int_equal(tcz__stamp_ms(st, 16, &ms), 0);
	assert_int_equal(ms, 0x0123456789abcdefull);
	assert_int_equal(tcz__stamp(st, start, 0xfeedull, 1), 33);
	assert_int_equal(tcz__stamp_ms(st, strlen(st), &ms), 0);
	assert_int_equal(ms, start);
	assert_int_equal(tcz__stamp(st, UINT64_MAX, UINT64_MAX, 1), 33);
	assert_int_equal(tcz__stamp_ms(st, 33, &ms), 0);
	assert_int_equal(ms, UINT64_MAX);
	assert_int_equal(tcz__stamp_ms("0123456789abcde", 15, &ms), -EINVAL);
	assert_int_equal(tcz__stamp_ms("0123456789abcdeF", 16, &ms), -EINVAL);
	assert_int_equal(tcz__stamp_ms("0123456789abcdeg", 16, &ms), -EINVAL);
	assert_int_equal(tcz__stamp_ms(" 123456789abcdef", 16, &ms), -EINVAL);
	assert_int_equal(tcz__stamp_ms("0123456789abcdefx", 17, &ms), -EINVAL);

	unsigned char sha[TCZ_SHA256_LEN];
	char oid[TCZ_REMOTE_OID_MAX];
	for (unsigned i = 0; i < TCZ_SHA256_LEN; i++)
		sha[i] = (unsigned char)(i * 8 + 5);
	tcz_remote_chunk_oid(sha, oid);
	assert_int_equal(strlen(oid), 66);
	assert_memory_equal(oid, "c.050d151d", 10);
	assert_string_equal(oid + 58, "e5edf5fd");
}

/* A model of one file holding one blob of the given bytes, imported;
 * *val (malloc'd) receives its chunk value and key its key. */
static void import_blob(tcz_store *s, const char *name, const char *bytes,
			unsigned char **val, size_t *vlen,
			unsigned char key[TCZ_KEY_LEN])
{
	tcz_import_tx *tx;
	assert_int_equal(tcz_import_begin(s, name, &tx), 0);
	size_t len = strlen(bytes);
	unsigned char *v;
	size_t vl;
	tcz_model m = {0};
	tcz_blob b = {0};
	tcz_extent x = {0, len, TCZ_EXT_BLOB, 0};
	tcz_file f = {(char *)"notes.txt", len, TCZ_FILE_SOURCE, 1, &x};
	assert_int_equal(tcz_chunk_value(TCZ_CODEC_ZSTD, TCZ_DT_U8,
					 (uint32_t)len, bytes, len, &v, &vl),
			 0);
	if (val) {
		*val = malloc(vl);
		assert_non_null(*val);
		memcpy(*val, v, vl);
		*vlen = vl;
	}
	assert_int_equal(tcz_import_put_chunk(tx, v, vl, key), 0);
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
	assert_int_equal(tcz_import_commit(tx, &m), 0);
}

typedef struct mf_ud {
	const char *name;
} mf_ud;

static int manifest_dec(const void *p, size_t n, void *ud)
{
	tcz_rmodel *rm = (tcz_rmodel *)1;
	int rc = tcz__manifest_decode(((mf_ud *)ud)->name, p, n, 1, &rm);
	if (rc)
		assert_null(rm);
	tcz_rmodel_free(rm);
	return rc;
}

static void manifest_format(void **state)
{
	(void)state;
	tcz_store *s = open_store("mf", TCZ_STORE_CREATE);
	unsigned char key[TCZ_KEY_LEN];
	import_blob(s, "notes", "some text that the manifest will describe",
		    NULL, NULL, key);
	tcz_snap *sn;
	tcz_model *m;
	assert_int_equal(tcz_snap_begin(s, &sn), 0);
	assert_int_equal(tcz_snap_model(sn, "notes", &m), 0);
	tcz_snap_end(sn);

	/* the chunk table: the blob's key twice (made distinct), another,
	 * unsorted */
	tcz__mchunk ch[3] = {0};
	memset(ch[0].key, 0xee, TCZ_KEY_LEN);
	fill_sha(ch[0].sha, 1);
	ch[0].len = 77;
	memcpy(ch[1].key, key, TCZ_KEY_LEN);
	fill_sha(ch[1].sha, 2);
	ch[1].len = 88;
	ch[2] = ch[1];
	tcz_wbuf w;
	assert_int_equal(tcz__manifest_encode(m, 1700000000123ull, ch, 3, NULL,
					      0, &w),
			 0);
	tcz_rmodel *rm;
	uint64_t ident = (1ull << 63) | 12345;
	assert_int_equal(tcz__manifest_decode("notes", w.p, w.len, ident, &rm),
			 0);
	const tcz_model *d = tcz_rmodel_model(rm);
	assert_string_equal(d->name, "notes");
	assert_int_equal(d->id, ident);
	assert_int_equal(d->rev, ident);
	assert_int_equal(d->iid, ident);
	assert_int_equal(d->n_blobs, 1);
	assert_int_equal(d->n_tensors, 0);
	assert_int_equal(d->n_files, 1);
	assert_string_equal(d->files[0].name, "notes.txt");
	assert_int_equal(d->blobs[0].length, m->blobs[0].length);
	assert_memory_equal(d->blobs[0].chunks[0], key, TCZ_KEY_LEN);
	assert_int_equal(tcz_rmodel_nobjects(rm), 2);
	unsigned char sha[TCZ_SHA256_LEN], want[TCZ_SHA256_LEN];
	uint32_t len;
	assert_int_equal(tcz_rmodel_chunk(rm, key, sha, &len), 0);
	fill_sha(want, 2);
	assert_memory_equal(sha, want, TCZ_SHA256_LEN);
	assert_int_equal(len, 88);
	unsigned char other[TCZ_KEY_LEN];
	memset(other, 0xee, sizeof other);
	assert_int_equal(tcz_rmodel_chunk(rm, other, sha, &len), 0);
	assert_int_equal(len, 77);
	memset(other, 0x11, sizeof other);
	assert_int_equal(tcz_rmodel_chunk(rm, other, sha, &len), -ENOENT);
	assert_int_equal(tcz_rmodel_ttcore(rm, 0, 0, sha, &len), -ENOENT);
	/* objects: chunks sorted by key */
	memset(other, 0xee, sizeof other);
	int key_first = memcmp(key, other, TCZ_KEY_LEN) < 0;
	tcz_rmodel_object(rm, 0, sha, &len);
	assert_int_equal(len, key_first ? 88 : 77);
	tcz_rmodel_object(rm, 1, sha, &len);
	assert_int_equal(len, key_first ? 77 : 88);
	tcz_rmodel_free(rm);
	tcz_rmodel_free(NULL);

	mf_ud ud = {"notes"};
	damage_all(w.p, w.len, manifest_dec, &ud, 1);
	/* another model's manifest */
	assert_int_equal(tcz__manifest_decode("other", w.p, w.len, 1, &rm),
			 -EBADMSG);
	assert_null(rm);
	tcz_wb_free(&w);

	/* a chunk the blob names missing from the table */
	memset(ch[0].key, 0xee, TCZ_KEY_LEN);
	ch[0].len = 77;
	assert_int_equal(tcz__manifest_encode(m, 1, ch, 1, NULL, 0, &w), 0);
	assert_int_equal(manifest_dec(w.p, w.len, &ud), -EBADMSG);
	tcz_wb_free(&w);
	/* an object of length 0, or above the largest */
	memcpy(ch[0].key, key, TCZ_KEY_LEN);
	ch[0].len = 0;
	assert_int_equal(tcz__manifest_encode(m, 1, ch, 1, NULL, 0, &w), 0);
	assert_int_equal(manifest_dec(w.p, w.len, &ud), -EBADMSG);
	tcz_wb_free(&w);
	ch[0].len = TCZ__OBJ_MAX + 1;
	assert_int_equal(tcz__manifest_encode(m, 1, ch, 1, NULL, 0, &w), 0);
	assert_int_equal(manifest_dec(w.p, w.len, &ud), -EBADMSG);
	tcz_wb_free(&w);
	/* not a manifest: an index */
	tcz_rindex ix = {0};
	assert_int_equal(tcz__index_encode(&ix, &w), 0);
	assert_int_equal(manifest_dec(w.p, w.len, &ud), -EBADMSG);
	tcz_wb_free(&w);
	assert_int_equal(manifest_dec("", 0, &ud), -EIO);

	tcz_model_free(m);
	tcz_store_close(s);
}

/* ---- the chunk cache ------------------------------------------------------ */

#define VLEN 1000u

/* A cacheable value: any bytes, named by their XXH3-128. */
static void mkval(unsigned char *v, size_t n, unsigned seed,
		  unsigned char key[TCZ_KEY_LEN])
{
	for (size_t i = 0; i < n; i++)
		v[i] = (unsigned char)(seed * 131u + i * 17u + (i >> 8));
	tcz__chunk_key(v, n, key);
}

typedef struct cval {
	unsigned char v[VLEN];
	unsigned char k[TCZ_KEY_LEN];
} cval;

static cval vals[8];

static void mkvals(void)
{
	for (unsigned i = 0; i < 8; i++)
		mkval(vals[i].v, VLEN, i + 1, vals[i].k);
}

/* 0 and the value, or the error of get */
static int cget(tcz_rcache *c, tcz_reader *r, const cval *x)
{
	const unsigned char *v = NULL;
	size_t n = 0;
	int rc = tcz_rcache_get(c, r, x->k, &v, &n);
	if (rc == 0) {
		assert_int_equal(n, VLEN);
		assert_memory_equal(v, x->v, VLEN);
	}
	return rc;
}

static void usage_is(tcz_rcache *c, uint64_t bytes, uint64_t entries)
{
	uint64_t b = 1, e = 1;
	assert_int_equal(tcz_rcache_usage(c, &b, &e), 0);
	assert_int_equal(b, bytes);
	assert_int_equal(e, entries);
}

/* get's result, the value unchecked */
static int has(tcz_rcache *c, tcz_reader *r, const unsigned char *key)
{
	const unsigned char *v;
	size_t n;
	return tcz_rcache_get(c, r, key, &v, &n);
}

static void rcache_lru(void **state)
{
	(void)state;
	mkvals();
	cval *A = &vals[0], *B = &vals[1], *C = &vals[2], *D = &vals[3],
	     *E = &vals[4], *F = &vals[5];
	tcz_store *s = open_store("lru", TCZ_STORE_CREATE);
	tcz_reader *r;
	tcz_rcache *c;
	assert_int_equal(tcz_reader_create(s, &r), 0);

	/* room for two: A, B, get A, C: B goes, A stays */
	assert_int_equal(tcz_rcache_open(s, 2 * VLEN + VLEN / 2, &c), 0);
	usage_is(c, 0, 0);
	assert_int_equal(cget(c, r, A), -ENOENT);
	assert_int_equal(tcz_rcache_put(c, A->k, A->v, VLEN), 0);
	usage_is(c, VLEN, 1);
	assert_int_equal(tcz_rcache_put(c, B->k, B->v, VLEN), 0);
	usage_is(c, 2 * VLEN, 2);
	assert_int_equal(cget(c, r, A), 0);
	assert_int_equal(tcz_rcache_put(c, C->k, C->v, VLEN), 0);
	usage_is(c, 2 * VLEN, 2);
	assert_int_equal(cget(c, r, B), -ENOENT);
	assert_int_equal(cget(c, r, A), 0);
	assert_int_equal(cget(c, r, C), 0);
	/* used: A then C (the gets above); D: A goes */
	assert_int_equal(tcz_rcache_put(c, D->k, D->v, VLEN), 0);
	assert_int_equal(cget(c, r, A), -ENOENT);
	assert_int_equal(cget(c, r, C), 0);
	assert_int_equal(cget(c, r, D), 0);
	tcz_rcache_close(c);
	tcz_reader_free(r);
	tcz_store_close(s);

	/* room for three: A, B, C, get A, D: B goes */
	s = open_store("lru3", TCZ_STORE_CREATE);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_rcache_open(s, 3 * VLEN, &c), 0);
	assert_int_equal(tcz_rcache_put(c, A->k, A->v, VLEN), 0);
	assert_int_equal(tcz_rcache_put(c, B->k, B->v, VLEN), 0);
	assert_int_equal(tcz_rcache_put(c, C->k, C->v, VLEN), 0);
	usage_is(c, 3 * VLEN, 3);
	assert_int_equal(cget(c, r, A), 0);
	assert_int_equal(tcz_rcache_put(c, D->k, D->v, VLEN), 0);
	usage_is(c, 3 * VLEN, 3);
	assert_int_equal(cget(c, r, B), -ENOENT);
	/* a close and open of the cache keeps the order */
	tcz_rcache_close(c);
	assert_int_equal(tcz_rcache_open(s, 3 * VLEN, &c), 0);
	usage_is(c, 3 * VLEN, 3);
	assert_int_equal(cget(c, r, A), 0);
	assert_int_equal(cget(c, r, C), 0);
	assert_int_equal(cget(c, r, D), 0);
	assert_int_equal(tcz_rcache_flush(c), 0);
	/* order: A, C, D; a put of a cached value only marks it used */
	assert_int_equal(tcz_rcache_put(c, A->k, A->v, VLEN), 0);
	usage_is(c, 3 * VLEN, 3);
	/* order: C, D, A; E: C goes */
	assert_int_equal(tcz_rcache_put(c, E->k, E->v, VLEN), 0);
	tcz_rcache_close(c);

	/* the order is the store's: across a close of the store too */
	tcz_reader_free(r);
	tcz_store_close(s);
	s = open_store("lru3", 0);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_rcache_open(s, 3 * VLEN, &c), 0);
	usage_is(c, 3 * VLEN, 3);
	/* order: D, A, E; F: D goes */
	assert_int_equal(tcz_rcache_put(c, F->k, F->v, VLEN), 0);
	assert_int_equal(cget(c, r, C), -ENOENT);
	assert_int_equal(cget(c, r, D), -ENOENT);
	assert_int_equal(cget(c, r, A), 0);
	assert_int_equal(cget(c, r, E), 0);
	assert_int_equal(cget(c, r, F), 0);
	usage_is(c, 3 * VLEN, 3);

	/* a smaller capacity: the next put evicts down to it */
	tcz_rcache_set_capacity(c, 2 * VLEN);
	/* order: A, E, F (the gets); B: A and E go */
	assert_int_equal(tcz_rcache_put(c, B->k, B->v, VLEN), 0);
	usage_is(c, 2 * VLEN, 2);
	assert_int_equal(cget(c, r, A), -ENOENT);
	assert_int_equal(cget(c, r, E), -ENOENT);
	assert_int_equal(cget(c, r, F), 0);
	assert_int_equal(cget(c, r, B), 0);

	/* evict to a target, least recently used first */
	uint64_t freed = 1;
	assert_int_equal(tcz_rcache_evict(c, 2 * VLEN, &freed), 0);
	assert_int_equal(freed, 0);
	/* order: F, B; down to one: F goes */
	assert_int_equal(tcz_rcache_evict(c, VLEN, &freed), 0);
	assert_int_equal(freed, VLEN);
	usage_is(c, VLEN, 1);
	assert_int_equal(cget(c, r, F), -ENOENT);
	assert_int_equal(cget(c, r, B), 0);
	assert_int_equal(tcz_rcache_evict(c, 0, &freed), 0);
	assert_int_equal(freed, VLEN);
	usage_is(c, 0, 0);
	assert_int_equal(cget(c, r, B), -ENOENT);
	assert_int_equal(tcz_rcache_evict(c, 0, NULL), 0);
	tcz_rcache_close(c);
	tcz_rcache_close(NULL);
	tcz_reader_free(r);
	tcz_store_close(s);
}

static void rcache_capacity(void **state)
{
	(void)state;
	tcz_store *s = open_store("cap", TCZ_STORE_CREATE);
	tcz_reader *r;
	tcz_rcache *c;
	assert_int_equal(tcz_reader_create(s, &r), 0);
	const uint64_t cap = 10000;
	assert_int_equal(tcz_rcache_open(s, cap, &c), 0);
	enum { N = 60 };
	static unsigned char v[N][3000];
	static unsigned char k[N][TCZ_KEY_LEN];
	size_t len[N];
	for (unsigned i = 0; i < N; i++) {
		len[i] = 1 + (i * 997u) % 3000u;
		mkval(v[i], len[i], 100 + i, k[i]);
		assert_int_equal(tcz_rcache_put(c, k[i], v[i], len[i]), 0);
		uint64_t b, e;
		assert_int_equal(tcz_rcache_usage(c, &b, &e), 0);
		assert_true(b <= cap);
		assert_true(b >= len[i]); /* the newest is always kept */
		/* the counters are what is there: the newest values, as
		 * many as fit */
		uint64_t sum = 0, n = 0;
		for (unsigned j = i + 1; j-- > 0;) {
			const unsigned char *p;
			size_t l;
			int rc = tcz_rcache_get(c, r, k[j], &p, &l);
			if (rc == 0) {
				assert_int_equal(l, len[j]);
				assert_memory_equal(p, v[j], l);
				sum += l;
				n++;
			} else {
				assert_int_equal(rc, -ENOENT);
			}
		}
		assert_int_equal(sum, b);
		assert_int_equal(n, e);
	}
	/* exactly the size of the capacity fits; one more byte does not */
	static unsigned char big[10001];
	unsigned char bk[TCZ_KEY_LEN];
	mkval(big, cap + 1, 7, bk);
	assert_int_equal(tcz_rcache_put(c, bk, big, cap + 1), -EFBIG);
	assert_int_equal(has(c, r, bk), -ENOENT);
	uint64_t b, e;
	assert_int_equal(tcz_rcache_usage(c, &b, &e), 0);
	assert_true(b > 0); /* nothing was evicted for it */
	mkval(big, cap, 7, bk);
	assert_int_equal(tcz_rcache_put(c, bk, big, cap), 0);
	usage_is(c, cap, 1);
	tcz_rcache_close(c);

	/* capacity 0: nothing is kept */
	assert_int_equal(tcz_rcache_open(s, 0, &c), 0);
	mkval(big, 100, 8, bk);
	int rc = tcz_rcache_put(c, bk, big, 100);
	assert_true(rc == 0 || rc == -EFBIG);
	assert_int_equal(has(c, r, bk), -ENOENT);
	tcz_rcache_close(c);
	tcz_reader_free(r);
	tcz_store_close(s);
}

static void rcache_puts(void **state)
{
	(void)state;
	mkvals();
	tcz_store *s = open_store("puts", TCZ_STORE_CREATE);
	tcz_reader *r;
	tcz_rcache *c;
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_rcache_open(s, 1 << 20, &c), 0);

	/* a key that is not the value's: refused, nothing stored */
	assert_int_equal(tcz_rcache_put(c, vals[0].k, vals[1].v, VLEN), -EINVAL);
	assert_int_equal(tcz_rcache_put(c, vals[0].k, vals[0].v, VLEN - 1),
			 -EINVAL);
	usage_is(c, 0, 0);
	assert_int_equal(cget(c, r, &vals[0]), -ENOENT);

	/* a chunk of a local model is in `chunks`: never cached */
	unsigned char *lv, lk[TCZ_KEY_LEN];
	size_t lvl;
	import_blob(s, "local", "the bytes of a local model's blob", &lv, &lvl,
		    lk);
	unsigned char kk[TCZ_KEY_LEN];
	tcz__chunk_key(lv, lvl, kk);
	assert_memory_equal(kk, lk, TCZ_KEY_LEN); /* the store's key */
	assert_int_equal(tcz_rcache_put(c, lk, lv, lvl), 0);
	usage_is(c, 0, 0);
	assert_int_equal(has(c, r, lk), -ENOENT);
	/* and a cached one's second put changes nothing but its use */
	assert_int_equal(tcz_rcache_put(c, vals[0].k, vals[0].v, VLEN), 0);
	assert_int_equal(tcz_rcache_put(c, vals[0].k, vals[0].v, VLEN), 0);
	usage_is(c, VLEN, 1);
	/* deferred, the same: the flush stores neither */
	tcz_rcache_defer(c, 1 << 20);
	assert_int_equal(tcz_rcache_put(c, lk, lv, lvl), 0);
	assert_int_equal(tcz_rcache_put(c, vals[0].k, vals[0].v, VLEN), 0);
	assert_int_equal(tcz_rcache_flush(c), 0);
	usage_is(c, VLEN, 1);
	assert_int_equal(has(c, r, lk), -ENOENT);
	assert_int_equal(cget(c, r, &vals[0]), 0);
	tcz_rcache_close(c);

	/* read-only: gets work, writes are refused */
	tcz_reader_free(r);
	tcz_store_close(s);
	s = open_store("puts", TCZ_STORE_RDONLY);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	c = NULL;
	assert_int_equal(tcz_rcache_open(s, 1 << 20, &c), -EROFS);
	assert_non_null(c);
	usage_is(c, VLEN, 1);
	assert_int_equal(cget(c, r, &vals[0]), 0);
	assert_int_equal(tcz_rcache_put(c, vals[1].k, vals[1].v, VLEN), -EROFS);
	assert_int_equal(tcz_rcache_evict(c, 0, NULL), -EROFS);
	/* deferred puts are puts: refused too */
	tcz_rcache_defer(c, 1 << 20);
	assert_int_equal(tcz_rcache_put(c, vals[1].k, vals[1].v, VLEN), -EROFS);
	assert_int_equal(cget(c, r, &vals[1]), -ENOENT);
	assert_int_equal(cget(c, r, &vals[0]), 0);
	tcz_rcache_close(c); /* its noted use cannot be written: no harm */
	tcz_reader_free(r);
	tcz_store_close(s);
	s = open_store("puts", 0);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_rcache_open(s, 1 << 20, &c), 0);
	usage_is(c, VLEN, 1);
	assert_int_equal(cget(c, r, &vals[1]), -ENOENT);
	tcz_rcache_close(c);
	tcz_reader_free(r);
	tcz_store_close(s);
	free(lv);
}

static void rcache_damaged(void **state)
{
	(void)state;
	mkvals();
	cval *A = &vals[0], *B = &vals[1];
	tcz_store *s = open_store("dmg", TCZ_STORE_CREATE);
	tcz_reader *r;
	tcz_rcache *c;
	assert_int_equal(tcz_rcache_open(s, 1 << 20, &c), 0);
	assert_int_equal(tcz_rcache_put(c, A->k, A->v, VLEN), 0);
	assert_int_equal(tcz_rcache_put(c, B->k, B->v, VLEN), 0);
	tcz_rcache_close(c);
	tcz_store_close(s);

	/* A's value replaced by another of the same length (one flipped
	 * bit), as damage on disk would */
	unsigned char bad[VLEN];
	memcpy(bad, A->v, VLEN);
	bad[VLEN / 2] ^= 0x10;
	raw_put("dmg", "rcache", A->k, TCZ_KEY_LEN, bad, VLEN);

	s = open_store("dmg", 0);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_rcache_open(s, 1 << 20, &c), 0);
	usage_is(c, 2 * VLEN, 2);
	assert_int_equal(cget(c, r, A), -EIO);
	assert_int_equal(cget(c, r, A), -EIO); /* until the flush */
	assert_int_equal(cget(c, r, B), 0);
	assert_int_equal(tcz_rcache_flush(c), 0);
	/* dropped: gone, and counted out */
	assert_int_equal(cget(c, r, A), -ENOENT);
	usage_is(c, VLEN, 1);
	assert_int_equal(cget(c, r, B), 0);
	/* fetched again, it is kept again */
	assert_int_equal(tcz_rcache_put(c, A->k, A->v, VLEN), 0);
	assert_int_equal(cget(c, r, A), 0);
	usage_is(c, 2 * VLEN, 2);
	tcz_rcache_close(c);
	tcz_reader_free(r);
	tcz_store_close(s);

	/* truncated, and damaged with a close that flushes */
	raw_put("dmg", "rcache", B->k, TCZ_KEY_LEN, B->v, VLEN - 1);
	s = open_store("dmg", 0);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_rcache_open(s, 1 << 20, &c), 0);
	assert_int_equal(cget(c, r, B), -EIO);
	tcz_rcache_close(c);
	assert_int_equal(tcz_rcache_open(s, 1 << 20, &c), 0);
	assert_int_equal(cget(c, r, B), -ENOENT);
	assert_int_equal(cget(c, r, A), 0);
	usage_is(c, VLEN, 1);
	tcz_rcache_close(c);
	tcz_reader_free(r);
	tcz_store_close(s);
}

static void rcache_deferred(void **state)
{
	(void)state;
	mkvals();
	cval *A = &vals[0], *B = &vals[1], *C = &vals[2], *D = &vals[3];
	tcz_store *s = open_store("defer", TCZ_STORE_CREATE);
	tcz_reader *r;
	tcz_rcache *c;
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_rcache_open(s, 1 << 20, &c), 0);
	tcz_rcache_defer(c, 2 * VLEN);

	/* puts go to memory: usage is the store's, gets find them */
	assert_int_equal(tcz_rcache_put(c, A->k, A->v, VLEN), 0);
	usage_is(c, 0, 0);
	assert_int_equal(cget(c, r, A), 0);
	/* still checked, still bounded by the capacity */
	assert_int_equal(tcz_rcache_put(c, B->k, A->v, VLEN), -EINVAL);
	tcz_rcache_set_capacity(c, VLEN - 1);
	assert_int_equal(tcz_rcache_put(c, B->k, B->v, VLEN), -EFBIG);
	tcz_rcache_set_capacity(c, 1 << 20);
	assert_int_equal(tcz_rcache_put(c, B->k, B->v, VLEN), 0);
	/* the queue holds two: a third is -EAGAIN, nothing kept */
	assert_int_equal(tcz_rcache_put(c, C->k, C->v, VLEN), -EAGAIN);
	assert_int_equal(cget(c, r, C), -ENOENT);
	assert_int_equal(cget(c, r, B), 0);
	usage_is(c, 0, 0);

	/* flush writes them */
	assert_int_equal(tcz_rcache_flush(c), 0);
	usage_is(c, 2 * VLEN, 2);
	assert_int_equal(cget(c, r, A), 0);
	assert_int_equal(cget(c, r, B), 0);
	/* and empties the queue */
	assert_int_equal(tcz_rcache_put(c, C->k, C->v, VLEN), 0);
	assert_int_equal(tcz_rcache_put(c, D->k, D->v, VLEN), 0);
	assert_int_equal(tcz_rcache_flush(c), 0);
	usage_is(c, 4 * VLEN, 4);
	assert_int_equal(tcz_rcache_flush(c), 0); /* nothing to do */
	usage_is(c, 4 * VLEN, 4);
	tcz_rcache_close(c);

	/* close flushes the queue */
	tcz_reader_free(r);
	tcz_store_close(s);
	s = open_store("defer2", TCZ_STORE_CREATE);
	assert_int_equal(tcz_reader_create(s, &r), 0);
	assert_int_equal(tcz_rcache_open(s, 1 << 20, &c), 0);
	tcz_rcache_defer(c, 1 << 20);
	assert_int_equal(tcz_rcache_put(c, A->k, A->v, VLEN), 0);
	assert_int_equal(tcz_rcache_put(c, B->k, B->v, VLEN), 0);
	tcz_rcache_close(c);
	assert_int_equal(tcz_rcache_open(s, 1 << 20, &c), 0);
	usage_is(c, 2 * VLEN, 2);
	assert_int_equal(cget(c, r, A), 0);
	assert_int_equal(cget(c, r, B), 0);

	/* deferred puts keep the LRU order of their queue: capacity for
	 * two, A and B cached; queue C, get A (noted), flush: B goes */
	tcz_rcache_set_capacity(c, 2 * VLEN);
	assert_int_equal(tcz_rcache_flush(c), 0); /* the gets above */
	tcz_rcache_defer(c, 1 << 20);
	assert_int_equal(cget(c, r, A), 0);
	assert_int_equal(tcz_rcache_put(c, C->k, C->v, VLEN), 0);
	assert_int_equal(tcz_rcache_flush(c), 0);
	usage_is(c, 2 * VLEN, 2);
	assert_int_equal(cget(c, r, B), -ENOENT);
	assert_int_equal(cget(c, r, A), 0);
	assert_int_equal(cget(c, r, C), 0);

	/* defer 0: puts write at once again */
	tcz_rcache_defer(c, 0);
	assert_int_equal(tcz_rcache_put(c, D->k, D->v, VLEN), 0);
	usage_is(c, 2 * VLEN, 2);
	assert_int_equal(cget(c, r, D), 0);
	/* the gets just before noted A, then C: A went */
	assert_int_equal(cget(c, r, A), -ENOENT);
	tcz_rcache_close(c);
	tcz_reader_free(r);
	tcz_store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(url_good),
		cmocka_unit_test(url_bad),
		cmocka_unit_test(names),
		cmocka_unit_test(remotes_table),
		cmocka_unit_test(index_format),
		cmocka_unit_test(lease_format),
		cmocka_unit_test(manifest_format),
		cmocka_unit_test(rcache_lru),
		cmocka_unit_test(rcache_capacity),
		cmocka_unit_test(rcache_puts),
		cmocka_unit_test(rcache_damaged),
		cmocka_unit_test(rcache_deferred),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
