/* Test helper: holds an LMDB write transaction on a store, as another
 * program writing to it would, until told to let go.
 * usage: hold_write STORE READY DONE SECONDS
 * Begins a write transaction (and writes into it, so it is a real one),
 * creates the file READY, then waits for the file DONE to appear, at most
 * SECONDS. Exits 0 when DONE appeared while it held the transaction, 3
 * when it gave up waiting (the transaction is aborted either way). */
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: hold_write STORE READY DONE SECONDS\n");
		return 2;
	}
	double limit = atof(argv[4]);
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	int rc = mdb_env_create(&env);
	mdb_env_set_maxdbs(env, 16);
	mdb_env_set_maxreaders(env, 4096);
	mdb_env_set_mapsize(env, 1ull << 34);
	if (rc || (rc = mdb_env_open(env, argv[1], MDB_NOTLS, 0600)) ||
	    (rc = mdb_txn_begin(env, NULL, 0, &txn)) ||
	    (rc = mdb_dbi_open(txn, "meta", 0, &dbi))) {
		fprintf(stderr, "hold_write: %s\n", mdb_strerror(rc));
		return 1;
	}
	MDB_val k = {11, "hold_write."}, d = {1, "x"};
	if ((rc = mdb_put(txn, dbi, &k, &d, 0))) {
		fprintf(stderr, "hold_write: %s\n", mdb_strerror(rc));
		return 1;
	}
	int fd = open(argv[2], O_WRONLY | O_CREAT, 0644);
	if (fd >= 0)
		close(fd);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int done = 0;
	for (;;) {
		if (access(argv[3], F_OK) == 0) {
			done = 1;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((double)(t.tv_sec - t0.tv_sec) +
			    (t.tv_nsec - t0.tv_nsec) / 1e9 >
		    limit)
			break;
		usleep(10000);
	}
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return done ? 0 : 3;
}
