/* Shared internals of the store module; not a public header. */
#ifndef TCZ_STORE_INTERNAL_H
#define TCZ_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>

#include "store/record.h"
#include "store/store.h"

struct tcz_store {
	MDB_env *env;
	MDB_dbi meta, models, tensors, aux, chunks, refs, ttcores, stats,
		imports, pending, segments;
	unsigned flags;
	char *dir;
	/* Guards mapsize changes against transactions starting or running
	 * in this process: LMDB may only remap with none active. */
	pthread_mutex_t map_lock;
	unsigned open_txns; /* guarded by map_lock */
	/* Where LMDB mapped data.mdb (LMDB does not say): found in
	 * /proc/self/maps, refreshed when a value falls outside. */
	const char *map_lo, *map_hi; /* guarded by map_lock */
	uint64_t map_off;            /* guarded by map_lock */
};

struct tcz_snap {
	tcz_store *s;
	MDB_txn *txn;
	uint64_t gen;
	/* Serialises LMDB calls on txn: a read transaction may serve many
	 * threads, one call at a time; decoding happens outside. */
	pthread_mutex_t lock;
};

/* Sets this thread's one-line message (printf format) and returns err. */
int tcz__fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Formats a one-line message into err[errlen] (when err is not NULL) and
 * returns rc: the error reporting of the parsers and the importer. */
int tcz__errf(int rc, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* LMDB result -> 0 or negative errno. */
int tcz__mdb_err(int rc);

/* Begins a transaction, adopting a map grown by another process when no
 * other transaction of this process is open. */
int tcz__txn_begin(tcz_store *s, unsigned flags, MDB_txn **txn);
int tcz__txn_commit(tcz_store *s, MDB_txn *txn);
void tcz__txn_abort(tcz_store *s, MDB_txn *txn);

/* Doubles the map after MDB_MAP_FULL (no transaction may be open).
 * Errors: -ENOSPC the map cannot grow (transactions open / at the limit). */
int tcz__grow_map(tcz_store *s);

/* The offset in data.mdb of the mapped bytes [p, p+n), or -1 when they
 * are not in the file's mapping. */
int64_t tcz__map_offset(tcz_store *s, const void *p, size_t n);

/* meta helpers: values are checksummed records holding one u64. */
int tcz__meta_get(tcz_store *s, MDB_txn *txn, const char *k, uint64_t *v);
int tcz__meta_put(tcz_store *s, MDB_txn *txn, const char *k, uint64_t v);
int tcz__bump_generation(tcz_store *s, MDB_txn *txn);

/* Record (de)serialisation, records.c */
int tcz__model_encode(const tcz_model *m, tcz_wbuf *w);
int tcz__model_decode(const void *p, size_t n, tcz_model *m);
int tcz__tensor_encode(const tcz_tensor *t, tcz_wbuf *w);
int tcz__tensor_decode(const void *p, size_t n, tcz_tensor *t);
int tcz__blob_encode(const tcz_blob *b, tcz_wbuf *w);
int tcz__blob_decode(const void *p, size_t n, tcz_blob *b);
/* Cross-checks files' extents against tensors and blobs after loading. */
int tcz__model_check(const tcz_model *m);
void tcz__tensor_clear(tcz_tensor *t);
void tcz__blob_clear(tcz_blob *b);

/* Key helpers: id . idx (. idx) big-endian. */
static inline void tcz__key_id(unsigned char k[8], uint64_t id)
{
	tcz_be64(k, id);
}

static inline void tcz__key_id_idx(unsigned char k[12], uint64_t id,
				   uint32_t idx)
{
	tcz_be64(k, id);
	tcz_be32(k + 8, idx);
}

/* Deletes every key of db that starts with the 8-byte id prefix. */
int tcz__del_prefix(MDB_txn *txn, MDB_dbi db, uint64_t id);

/* Drops one reference to chunk key, deleting it at zero. */
int tcz__decref(tcz_store *s, MDB_txn *txn, const unsigned char *key);

/* Chunk value header (chunk.c) */
#define TCZ_CHUNK_MAGIC 0x314b4354u /* "TCK1" */
#define TCZ_CHUNK_HDR 12u

typedef struct tcz_chunk_hdr {
	tcz_codec codec;
	tcz_dtype dtype;
	uint32_t decoded_len;
	const unsigned char *payload;
	size_t plen;
} tcz_chunk_hdr;

/* Errors: -EBADMSG malformed header. */
int tcz__chunk_parse(const void *val, size_t len, tcz_chunk_hdr *h);
void tcz__chunk_key(const void *val, size_t len,
		    unsigned char key[TCZ_KEY_LEN]);

#endif
