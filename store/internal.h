/* Shared internals of the store module; not a public header. */
#ifndef TCZ_STORE_INTERNAL_H
#define TCZ_STORE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>

#include "store/record.h"
#include "store/store.h"

/* A write function asked for more map than there is: tcz__write grows
 * the map and runs it again. Never leaves the store module (tcz__write
 * turns it into -ENOSPC when the map cannot grow). */
#define TCZ__EMAPFULL (-0x4d46)

/* Pins held by this process: content id -> count (see pins.c). */
typedef struct tcz_pin {
	uint64_t id;
	unsigned count;
} tcz_pin;

struct tcz_store {
	MDB_env *env;
	MDB_dbi meta, models, tensors, aux, chunks, refs, ttcores, stats,
		imports, pending, segments, dropped, profiles, asicsums,
		streams, sindex, sstats, remotes, rcache, rcmeta, rclru,
		blocks;
	int has_dropped; /* a schema 1 store opened read-only has none */
	/* profiles and asicsums came later in schema 2: a writable open
	 * creates them, a read-only one of an older store finds none */
	int has_asic;
	/* streams, sindex and sstats are open: a store made before streams
	 * existed, opened read-only, has none of them (and reads as holding
	 * no stream); a writable open creates them */
	int has_streams;
	/* remotes and the remote chunk cache (rcache, rcmeta, rclru) came
	 * later in schema 2 too: all four are created together */
	int has_remote;
	/* the block index (blocks.c) came later in schema 2: a writable
	 * open creates it, a read-only open of an older store reads every
	 * chunk whole */
	int has_blocks;
	unsigned flags;
	char *dir;
	int data_fd;  /* LMDB's descriptor of data.mdb: values are pread */
	int rand_fd;  /* data.mdb again, no readahead: block reads; -1 when
		       * it could not be opened (data_fd is used) */
	size_t psize; /* LMDB page size */

	/* Held shared by every transaction of this process while it uses
	 * the map, exclusively to remap it (LMDB may only remap with no
	 * transaction active). Never held while waiting for another
	 * process: writers wait for each other at the gate first. */
	pthread_rwlock_t map_lock;
	/* Where LMDB mapped data.mdb (LMDB does not say): found in
	 * /proc/self/maps at open and after every remap. */
	const char *map_lo, *map_hi; /* guarded by map_lock (set exclusive) */
	int dead; /* a remap failed: LMDB has no map (guarded by map_lock) */
	uint64_t map_off;            /* guarded by map_lock */

	/* One write transaction of this process at a time; taken before
	 * the gate, so threads of this process queue here. */
	pthread_mutex_t write_lock;
	/* tczfs.lock in the store directory: byte 0 is the writer gate
	 * (an exclusive OFD lock every tczfs writer takes before LMDB's
	 * own writer lock), byte id is the pin of content id (shared OFD
	 * locks: the kernel drops them when a process dies). pin_fd holds
	 * this process's pins; gc_fd is another open file description of
	 * the same file, for the gate and for collecting, so that this
	 * process's own pins conflict with its collector. -1 when the
	 * store is read-only and the file cannot be created. */
	int pin_fd, gc_fd;
	pthread_mutex_t pin_lock; /* guards pins, n_pins, cap_pins */
	tcz_pin *pins;
	size_t n_pins, cap_pins;
};

struct tcz_snap {
	tcz_store *s;
	MDB_txn *txn;
};

/* Sets this thread's one-line message (printf format) and returns err. */
int tcz__fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Formats a one-line message into err[errlen] (when err is not NULL) and
 * returns rc: the error reporting of the parsers and the importer. */
int tcz__errf(int rc, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Where a model view's values come from when they are not the local
 * store's (a remote model, store/remote.h): get leaves a value checked
 * against what names it in r's value buffer (*val, *len): chunk key
 * (is_core 0), or TT core k of tensor t (is_core 1, a `ttcores` record).
 * Errors: -ENODATA the model does not name it; -EIO corrupt; -ETIMEDOUT;
 * -ENOMEM. release frees ud with the view. */
typedef struct tcz__vsource {
	int (*get)(void *ud, tcz_reader *r, const unsigned char *key,
		   int is_core, uint32_t t, uint32_t k,
		   const unsigned char **val, size_t *len);
	void (*release)(void *ud);
} tcz__vsource;

/* A model view of model m (taken: freed with the view, or here on
 * failure, as is ud) whose values come from src. It pins nothing: m's
 * ids must not be local content ids (remote ones have bit 63 set).
 * Errors: -ENOMEM, -EBADMSG. */
struct tcz_mview;
int tcz__mview_open_model(tcz_store *s, tcz_model *m, const tcz__vsource *src,
			  void *ud, struct tcz_mview **out);

/* The store a model view reads from (view.c). */
struct tcz_mview;
tcz_store *tcz__mview_store(const struct tcz_mview *v);

/* LMDB result -> 0 or negative errno (MDB_MAP_FULL -> TCZ__EMAPFULL). */
int tcz__mdb_err(int rc);

/* A read transaction: *txn is a handle from an earlier tcz__rtxn_end
 * with keep (renewed), or NULL (a new one). Holds map_lock shared until
 * tcz__rtxn_end, and remaps first when another process grew the data
 * past this process's map.
 * Errors: -EAGAIN the grown map cannot be mapped; -EIO, -ENOMEM. */
int tcz__rtxn_begin(tcz_store *s, MDB_txn **txn);
/* Ends it: reset for reuse when keep, else freed. */
void tcz__rtxn_end(tcz_store *s, MDB_txn *txn, int keep);

/* Runs fn in a write transaction and commits it: through the writer
 * gate, growing the map and running fn again on MDB_MAP_FULL (fn must be
 * repeatable), turning a full disk into -ENOSPC with a message saying
 * the store is intact. fn returns 0 or a negative errno.
 * Errors: -EROFS; what fn returned; -ENOSPC; -EIO. */
int tcz__write(tcz_store *s, int (*fn)(void *, MDB_txn *), void *arg);

/* The offset in data.mdb of the mapped bytes [p, p+n) (the caller holds
 * map_lock), or -1 when they are not in the file's mapping. */
int64_t tcz__map_offset(tcz_store *s, const void *p, size_t n);

/* meta helpers: values are checksummed records holding one u64.
 * Errors: -ENOENT, -EIO damaged (message set). */
int tcz__meta_get(tcz_store *s, MDB_txn *txn, const char *k, uint64_t *v);
int tcz__meta_put(tcz_store *s, MDB_txn *txn, const char *k, uint64_t v);
int tcz__bump_generation(tcz_store *s, MDB_txn *txn);

/* ---- pins and deferred release (pins.c) -------------------------------- */

/* Pins content id for this process (counted): while pinned, chunks that
 * a removal or re-encoding dropped from it stay in the store.
 * Errors: -ENOENT the content is being collected right now (it is
 * gone); -ENOMEM. Without a lock file (read-only media) pins are no-ops:
 * nothing can write there either. */
int tcz__pin(tcz_store *s, uint64_t id);
void tcz__unpin(tcz_store *s, uint64_t id);

/* Records, in txn, that the chunk references keys[0..n) held by content
 * id are to be dropped when no process pins id any more (and, with
 * ttcores, that id's TT cores too).
 * Errors: -ENOMEM, LMDB errors. */
int tcz__drop(tcz_store *s, MDB_txn *txn, uint64_t id,
	      const unsigned char (*keys)[TCZ_KEY_LEN], size_t n, int ttcores);

/* Drops, in their own write transaction, the references of every
 * dropped content that no process pins; *count (may be NULL) receives
 * how many contents were released. Errors: -EROFS, -ENOSPC, -EIO. */
int tcz__collect(tcz_store *s, unsigned *count);

/* ---- records (records.c) ----------------------------------------------- */

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
/* The id stored in a model record, read at its fixed place whatever the
 * checksum says (a damaged model must still be removable).
 * Errors: -EBADMSG too short. */
int tcz__model_record_id(const void *p, size_t n, uint64_t *id);

/* Which record a failed load stopped at (for verify's report). */
typedef struct tcz_load_err {
	const char *what; /* "model record", "tensor record", ... */
	int indexed;      /* index is meaningful */
	uint32_t index;
} tcz_load_err;

/* Frees what tcz__model_decode of a lone model record allocated. */
void tcz__model_record_clear(tcz_model *m);

/* The id, revision and (iid may be NULL) bytes identity of a model
 * record. Errors: -EIO, -EBADMSG, -ENOMEM. */
int tcz__model_record_ident(const void *p, size_t n, uint64_t *id,
			    uint64_t *rev, uint64_t *iid);

/* The id and revision of a model record (its checksum checked).
 * Errors: -EIO, -EBADMSG, -ENOMEM. */
int tcz__model_record_rev(const void *p, size_t n, uint64_t *id,
			  uint64_t *rev);

/* Loads model name's records in txn; le (may be NULL) says which record
 * failed. Errors as tcz_snap_model. */
int tcz__load_model(tcz_store *s, MDB_txn *txn, const char *name,
		    tcz_model **out, tcz_load_err *le);

/* The name in a tensor record, read whatever its checksum says (for
 * naming a damaged one), or NULL. malloc'd. */
char *tcz__tensor_record_name(const void *p, size_t n);

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

/* Takes the next id of the store's counter (meta "next_id") in txn: ids
 * are never reused, models and streams draw from the same counter. A
 * damaged counter is recomputed past every id in use.
 * Errors: -ENOENT no counter; LMDB errors. */
int tcz__next_id(tcz_store *s, MDB_txn *txn, uint64_t *id);

/* Deletes every key of db that starts with the 8-byte id prefix. */
int tcz__del_prefix(MDB_txn *txn, MDB_dbi db, uint64_t id);

/* Drops one reference to chunk key, deleting it at zero. A damaged
 * count keeps the chunk (a leak verify reports, never a loss). */
int tcz__decref(tcz_store *s, MDB_txn *txn, const unsigned char *key);

/* Chunk value header */
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

/* ---- the block index (blocks.c) ----------------------------------------- */

/* Indexes the blocks of a new chunk value (lossless, several blocks; any
 * other value is left alone). Errors: -ENOMEM; LMDB's (the transaction
 * is then to be aborted). */
int tcz__blocks_put(tcz_store *s, MDB_txn *txn, const unsigned char *key,
		    const void *val, size_t len);
/* 1 when rec[0..rlen) is exactly the record of chunk value val, 0 when
 * not (damaged, or the value is), -ENOMEM. */
int tcz__blocks_matches(const void *rec, size_t rlen, const void *val,
			size_t len);
/* Drops chunk key's index record, if any. Errors: LMDB's. */
int tcz__blocks_del(tcz_store *s, MDB_txn *txn, const unsigned char *key);

/* Whether rec[0..rlen) is a well-formed index record (its hash, its
 * fields, a valid blob prefix) for a chunk of chunk_len decoded bytes of
 * dtype dt; then *plen is its prefix length and *nb its number of
 * blocks. */
int tcz__blocks_check(const unsigned char *rec, size_t rlen, tcz_dtype dt,
		      uint32_t chunk_len, size_t *plen, size_t *nb);

/* The whole blocks of chunk key that cover [off, off+len): decoded bytes
 * [*span_off, *span_off + *span_len). Errors: as tcz__read_chunk_part. */
int tcz__chunk_part_span(tcz_reader *r, const unsigned char *key,
			 tcz_dtype dt, uint32_t chunk_len, uint32_t off,
			 uint32_t len, uint32_t *span_off, uint32_t *span_len);

/* Bytes [off, off+len) of chunk key's decoded content (chunk_len bytes
 * of dtype dt) into dst, fetching and decoding only the blocks under
 * them, each checked against its hash.
 * Errors: -ENOTSUP no usable index (a single-block, raw or lossy chunk,
 * a store written before the index, a damaged record): read the chunk
 * whole, which verifies it; -EIO a block does not match its hash or the
 * pread failed; -EBADMSG a block does not decode; -ENOMEM. */
int tcz__read_chunk_part(tcz_reader *r, const unsigned char *key,
			 tcz_dtype dt, uint32_t chunk_len, uint32_t off,
			 uint32_t len, void *dst);

/* Faults in the index pages of the n chunk keys at keys (TCZ_KEY_LEN
 * bytes each, back to back): the leaf of each key's block index record
 * and of its chunk table entry (not the value). A few keys per read
 * transaction. Errors: the store's (-EIO a lost map). */
int tcz__blocks_warm(tcz_reader *r, const unsigned char *keys, size_t n);

/* Whether a tensor may be stored lossy when nothing names it (import.c):
 * float, at least min_size values, two dimensions above 1, and not a norm
 * or a bias by its name. */
int tcz__lossy_by_default(const char *name, tcz_dtype dt, uint32_t ndim,
			  const uint64_t *shape, uint64_t numel,
			  uint64_t min_size);

/* A deep copy of a tensor record. Errors: -ENOMEM (dst cleared). */
int tcz__tensor_copy(tcz_tensor *dst, const tcz_tensor *src);

/* ---- reading values (read.c) -------------------------------------------- */

/* Reads the value of key in table db into the reader's value buffer in a
 * short read transaction; *out points at it until the next call.
 * Errors: -ENOENT no such key; -EIO, -ENOMEM. */
int tcz__fetch(tcz_reader *r, MDB_dbi db, const void *key, size_t klen,
	       const unsigned char **out, size_t *len);

/* Fetches chunk key, checks it against its key and decodes it into
 * dst[len] of dtype dt; the stored value stays in the reader until its
 * next fetch (tcz__reader_value). Errors: -EIO missing or damaged;
 * -EBADMSG does not decode; -ENOMEM. */
int tcz__read_chunk(tcz_reader *r, const unsigned char *key, tcz_dtype dt,
		    void *dst, uint32_t len);

/* Decodes chunk value val[vlen], already checked against its key, into
 * dst[len] of dtype dt. Errors: -EBADMSG does not decode as that;
 * -ENOMEM. */
int tcz__decode_value(tcz_reader *r, const unsigned char *val, size_t vlen,
		      tcz_dtype dt, void *dst, uint32_t len);

/* The last value fetched (a chunk value after tcz__read_chunk). */
const unsigned char *tcz__reader_value(const tcz_reader *r, size_t *len);

/* The reader's f32 scratch of at least n floats. Errors: -ENOMEM. */
int tcz__reader_f32(tcz_reader *r, size_t n, float **out);

#endif
