/* Test helper: damages one record of any table of a store through LMDB, the
 * way a bad sector or a stray write would, and builds stores that are not
 * tczfs stores.
 *
 * usage: corrupt_record STORE TABLE N [BYTE]
 *            flips one byte (XOR 0x40) of the value of the N-th entry (key
 *            order, from 0) of TABLE, at offset BYTE of the value (default:
 *            the middle); prints the entry's key in hex
 *        corrupt_record STORE --keys TABLE
 *            prints every key of TABLE in hex, one per line, in key order
 *        corrupt_record --foreign DIR
 *            creates in DIR a valid LMDB environment holding one unrelated
 *            table ("foo") with one entry
 * Exit status 1 (with a message) when the table or the entry does not
 * exist, 2 on a usage error. */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
	"usage: corrupt_record STORE TABLE N [BYTE]\n"
	"       corrupt_record STORE --keys TABLE\n"
	"       corrupt_record --foreign DIR\n";

static int die(const char *what, int rc)
{
	fprintf(stderr, "corrupt_record: %s: %s\n", what, mdb_strerror(rc));
	return 1;
}

static int parse_ulong(const char *s, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

static void print_hex(const MDB_val *k)
{
	const unsigned char *p = k->mv_data;
	for (size_t i = 0; i < k->mv_size; i++)
		printf("%02x", p[i]);
	printf("\n");
}

/* Opens DIR as an LMDB environment (creating the files if asked) and
 * starts a transaction. */
static int open_env(const char *dir, unsigned txn_flags, MDB_env **env,
		    MDB_txn **txn)
{
	int rc = mdb_env_create(env);
	if (rc)
		return die(dir, rc);
	mdb_env_set_maxdbs(*env, 16);
	mdb_env_set_maxreaders(*env, 4096);
	mdb_env_set_mapsize(*env, 1ull << 30);
	if ((rc = mdb_env_open(*env, dir, MDB_NOTLS, 0600))) {
		mdb_env_close(*env);
		return die(dir, rc);
	}
	if ((rc = mdb_txn_begin(*env, NULL, txn_flags, txn))) {
		mdb_env_close(*env);
		return die(dir, rc);
	}
	return 0;
}

static int open_table(MDB_env *env, MDB_txn *txn, const char *table,
		      MDB_dbi *dbi)
{
	int rc = mdb_dbi_open(txn, table, 0, dbi);
	if (rc == 0)
		return 0;
	if (rc == MDB_NOTFOUND)
		fprintf(stderr, "corrupt_record: no table '%s'\n", table);
	else
		die(table, rc);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return 1;
}

static int list_keys(const char *dir, const char *table)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *c;
	MDB_val k, d;
	if (open_env(dir, MDB_RDONLY, &env, &txn) ||
	    open_table(env, txn, table, &dbi))
		return 1;
	int rc = mdb_cursor_open(txn, dbi, &c);
	if (rc) {
		mdb_txn_abort(txn);
		mdb_env_close(env);
		return die(table, rc);
	}
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT))
		print_hex(&k);
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	if (rc != MDB_NOTFOUND)
		return die(table, rc);
	return 0;
}

static int flip(const char *dir, const char *table, unsigned long nth,
		const char *byte_arg)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *c;
	MDB_val k, d;
	if (open_env(dir, 0, &env, &txn) || open_table(env, txn, table, &dbi))
		return 1;
	int rc = mdb_cursor_open(txn, dbi, &c);
	if (rc)
		goto mdb_fail;
	rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
	for (unsigned long i = 0; rc == 0 && i < nth; i++)
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	if (rc == MDB_NOTFOUND) {
		fprintf(stderr, "corrupt_record: table '%s' has no entry %lu\n",
			table, nth);
		mdb_cursor_close(c);
		mdb_txn_abort(txn);
		mdb_env_close(env);
		return 1;
	}
	if (rc) {
		mdb_cursor_close(c);
		goto mdb_fail;
	}
	unsigned long off = d.mv_size / 2;
	if (byte_arg && parse_ulong(byte_arg, &off)) {
		fprintf(stderr, "corrupt_record: bad BYTE '%s'\n", byte_arg);
		mdb_cursor_close(c);
		mdb_txn_abort(txn);
		mdb_env_close(env);
		return 2;
	}
	if (off >= d.mv_size) {
		fprintf(stderr,
			"corrupt_record: entry %lu of '%s' has %zu bytes, no "
			"byte %lu\n",
			nth, table, d.mv_size, off);
		mdb_cursor_close(c);
		mdb_txn_abort(txn);
		mdb_env_close(env);
		return 1;
	}
	/* copy both out of the map before writing */
	MDB_val kv = {k.mv_size, malloc(k.mv_size ? k.mv_size : 1)};
	MDB_val dv = {d.mv_size, malloc(d.mv_size ? d.mv_size : 1)};
	if (!kv.mv_data || !dv.mv_data) {
		free(kv.mv_data);
		free(dv.mv_data);
		mdb_cursor_close(c);
		rc = ENOMEM;
		goto mdb_fail;
	}
	memcpy(kv.mv_data, k.mv_data, k.mv_size);
	memcpy(dv.mv_data, d.mv_data, d.mv_size);
	((unsigned char *)dv.mv_data)[off] ^= 0x40;
	mdb_cursor_close(c);
	if ((rc = mdb_put(txn, dbi, &kv, &dv, 0))) {
		free(kv.mv_data);
		free(dv.mv_data);
		goto mdb_fail;
	}
	if ((rc = mdb_txn_commit(txn))) {
		free(kv.mv_data);
		free(dv.mv_data);
		mdb_env_close(env);
		return die("commit", rc);
	}
	print_hex(&kv);
	free(kv.mv_data);
	free(dv.mv_data);
	mdb_env_close(env);
	return 0;
mdb_fail:
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return die(table, rc);
}

static int foreign(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	if (mkdir(dir, 0700) && errno != EEXIST) {
		fprintf(stderr, "corrupt_record: %s: %s\n", dir,
			strerror(errno));
		return 1;
	}
	if (open_env(dir, 0, &env, &txn))
		return 1;
	static char kb[] = "bar", db[] = "not a model";
	MDB_val k = {sizeof kb - 1, kb}, d = {sizeof db, db};
	int rc = mdb_dbi_open(txn, "foo", MDB_CREATE, &dbi);
	if (rc == 0)
		rc = mdb_put(txn, dbi, &k, &d, 0);
	if (rc) {
		mdb_txn_abort(txn);
		mdb_env_close(env);
		return die(dir, rc);
	}
	rc = mdb_txn_commit(txn);
	mdb_env_close(env);
	return rc ? die(dir, rc) : 0;
}

int main(int argc, char **argv)
{
	unsigned long nth;
	if (argc == 3 && !strcmp(argv[1], "--foreign"))
		return foreign(argv[2]);
	if (argc == 4 && !strcmp(argv[2], "--keys"))
		return list_keys(argv[1], argv[3]);
	if ((argc == 4 || argc == 5) && argv[2][0] != '-') {
		if (parse_ulong(argv[3], &nth)) {
			fprintf(stderr, "corrupt_record: bad N '%s'\n", argv[3]);
			return 2;
		}
		return flip(argv[1], argv[2], nth, argc == 5 ? argv[4] : NULL);
	}
	fputs(usage, stderr);
	return 2;
}
