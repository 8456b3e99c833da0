/* Test helper: flips one byte of a stored chunk, through LMDB, the way a
 * bad sector or a stray write would. usage: corrupt_chunk STORE [N]
 * (the N-th chunk in key order, default 0). Prints the chunk's key. */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: corrupt_chunk STORE [N]\n");
		return 2;
	}
	long nth = argc > 2 ? atol(argv[2]) : 0;
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *c;
	MDB_val k, d;
	int rc = mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_maxreaders(env, 4096);
	mdb_env_set_mapsize(env, 1ull << 30);
	if (rc || (rc = mdb_env_open(env, argv[1], MDB_NOTLS, 0600)) ||
	    (rc = mdb_txn_begin(env, NULL, 0, &txn)) ||
	    (rc = mdb_dbi_open(txn, "chunks", 0, &dbi)) ||
	    (rc = mdb_cursor_open(txn, dbi, &c))) {
		fprintf(stderr, "corrupt_chunk: %s\n", mdb_strerror(rc));
		return 1;
	}
	rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
	for (long i = 0; rc == 0 && i < nth; i++)
		rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
	if (rc) {
		fprintf(stderr, "corrupt_chunk: no chunk %ld\n", nth);
		return 1;
	}
	unsigned char key[16];
	memcpy(key, k.mv_data, 16);
	unsigned char *v = malloc(d.mv_size);
	memcpy(v, d.mv_data, d.mv_size);
	v[d.mv_size / 2] ^= 0x40;
	MDB_val kv = {16, key}, dv = {d.mv_size, v};
	mdb_cursor_close(c);
	if ((rc = mdb_put(txn, dbi, &kv, &dv, 0)) || (rc = mdb_txn_commit(txn))) {
		fprintf(stderr, "corrupt_chunk: %s\n", mdb_strerror(rc));
		return 1;
	}
	for (int i = 0; i < 16; i++)
		printf("%02x", key[i]);
	printf("\n");
	free(v);
	mdb_env_close(env);
	return 0;
}
