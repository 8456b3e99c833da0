/* Remotes: a store's models kept in a distributed object store (Ceph
 * RADOS), so that many hosts share them. Each host keeps its own LMDB
 * store as index and bounded cache; the remote holds content-addressed
 * objects.
 *
 * Objects, in pool POOL and namespace NS of the remote's URL:
 *   c.<sha256 hex>  a chunk: exactly the bytes of a store's chunk value
 *                   (the `chunks` table's value: header + compressed
 *                   payload) or of a TT core record (`ttcores` value),
 *                   named by the SHA-256 of those bytes. Immutable.
 *                   xattr tczfs.t: the last push that needed it (gc).
 *   m.<model>       a model's manifest: its model, tensor and blob
 *                   records, its TT cores' objects, and for every chunk
 *                   key (XXH3-128, the local key) its SHA-256 and
 *                   length. Written after every object it names.
 *   tczfs.index     the models: name -> SHA-256 and length of its
 *                   manifest, plus a generation raised by every change.
 *                   Written after the manifest; what a host sees.
 *   l.<host>.<pid>.<nonce>  a push in progress (lease), for gc.
 * Formats: docs/formats.md, "Remotes".
 *
 * Every object fetched is checked against its name (SHA-256) and its
 * length before anything uses it, then by the store's own checks (the
 * chunk key, the record checksums). A mismatch is -EIO, never data.
 *
 * Timeouts: every network operation of a tcz_remote ends within its
 * timeout (librados' client mount and OSD/monitor op timeouts, and a
 * backstop of our own for aio fetches): -ETIMEDOUT, never a hang. No
 * lock of the store (LMDB transaction, writer gate, mutex) is held
 * across network I/O; a model view's pin may be.
 *
 * Functions return 0 or a negative errno; tcz_store_errmsg() gives one
 * line about the calling thread's last failure. Built without librados
 * (meson -Drados=disabled, or librados-dev missing), tcz_remote_connect
 * fails with -ENOTSUP and a message saying so; URL parsing, the
 * `remotes` table and the chunk cache work either way. */
#ifndef TCZ_REMOTE_H
#define TCZ_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define TCZ_SHA256_LEN 32u
#define TCZ_REMOTE_NAME_MAX 64u
#define TCZ_REMOTE_TIMEOUT_MS 10000u /* default network timeout */

/* Whether this build has librados (tcz_remote_connect can work). */
int tcz_remote_available(void);

/* ---- URLs --------------------------------------------------------------- */

/* rados://POOL[?conf=PATH&id=CLIENT&namespace=NS], values %XX-decoded.
 * Empty strings for what the URL does not give: Ceph's defaults then
 * apply (CEPH_CONF or /etc/ceph/ceph.conf, client.admin, no namespace). */
typedef struct tcz_remote_url {
	char pool[128];  /* [A-Za-z0-9._-]+ */
	char conf[4096]; /* a path */
	char id[64];     /* client id without "client.": [A-Za-z0-9._-]+ */
	char ns[256];    /* any bytes but NUL and control characters */
} tcz_remote_url;

/* Parses url. Errors: -EINVAL with a one-line reason in err[errlen]
 * (an unknown scheme or parameter, a parameter given twice, an empty or
 * invalid pool or id, a malformed %XX, a value too long). */
int tcz_remote_url_parse(const char *url, tcz_remote_url *out, char *err,
			 size_t errlen);

/* True when name is a valid remote name: [A-Za-z0-9][A-Za-z0-9._-]{0,63}. */
int tcz_remote_name_valid(const char *name);

/* ---- the store's remotes (table `remotes`) ----------------------------- */

/* The table is created by the first writable open of a store that lacks
 * it (the schema version stays 2); a read-only open of such a store sees
 * no remotes. */
typedef struct tcz_remote_def {
	char *name;
	char *url;
} tcz_remote_def;

/* Adds remote name with url (checked with tcz_remote_url_parse; nothing
 * is contacted). Errors: -EINVAL bad name or URL; -EEXIST; -EROFS;
 * -ENOSPC, -EIO. */
int tcz_store_remote_add(tcz_store *s, const char *name, const char *url);
/* Errors: -ENOENT no such remote; -EROFS; -ENOSPC, -EIO. */
int tcz_store_remote_rm(tcz_store *s, const char *name);
/* All remotes sorted by name (*n may be 0). Free with tcz_remote_defs_free.
 * Errors: -EIO a damaged record (the message names it); -ENOMEM. */
int tcz_store_remotes(tcz_store *s, tcz_remote_def **out, size_t *n);
void tcz_remote_defs_free(tcz_remote_def *d, size_t n);
/* The URL of remote name (malloc'd). Errors: -ENOENT, -EIO, -ENOMEM. */
int tcz_store_remote_url(tcz_store *s, const char *name, char **url);

/* ---- connecting --------------------------------------------------------- */

typedef struct tcz_remote tcz_remote;

/* Connects to url (a tcz_remote_url), with timeout_ms for every network
 * operation from now on (0: TCZ_REMOTE_TIMEOUT_MS): connecting, each
 * object operation, each fetch. The pool must exist.
 * Errors: -ENOTSUP built without librados; -EINVAL bad URL; -ENOENT no
 * such pool or config file; -ETIMEDOUT the cluster did not answer in
 * time; -EACCES refused (keyring, caps); -ENOMEM; -EIO. The message
 * names the remote and the cause. A tcz_remote may be used by several
 * threads at once. */
int tcz_remote_connect(const char *url, unsigned timeout_ms,
		       tcz_remote **out);
void tcz_remote_close(tcz_remote *r); /* NULL is fine; waits for its aio */

/* The object name of a chunk ("c." + 64 lower-case hex digits + NUL). */
#define TCZ_REMOTE_OID_MAX 68u
void tcz_remote_chunk_oid(const unsigned char sha[TCZ_SHA256_LEN],
			  char out[TCZ_REMOTE_OID_MAX]);

/* SHA-256 of p[0..n) (OpenSSL libcrypto; all zeros when built without). */
void tcz_sha256(const void *p, size_t n, unsigned char out[TCZ_SHA256_LEN]);

/* ---- fetching chunks ---------------------------------------------------- */

/* Reads chunk object sha, which must be exactly len bytes, into buf[len],
 * and checks its SHA-256. buf holds those exact bytes on success only.
 * Errors: -ENOENT no such object; -EIO the object's length or hash is not
 * what its name says (corrupt or truncated); -ETIMEDOUT the cluster did
 * not answer within the remote's timeout; -EINVAL len 0 or above 64 MiB;
 * -ENOMEM. Never waits longer than the timeout (plus a second). */
int tcz_remote_fetch_chunk(tcz_remote *r, const unsigned char sha[TCZ_SHA256_LEN],
			   uint32_t len, void *buf);

/* The same, asynchronous, so that several fetches are in flight: start
 * returns at once, buf must stay valid until wait returns. wait returns
 * what tcz_remote_fetch_chunk would have and frees f (every started fetch
 * must be waited for, once). done says without blocking whether wait
 * would return at once. A fetch whose cluster does not answer is
 * cancelled after the timeout: wait then returns -ETIMEDOUT.
 * Errors of start: -EINVAL, -ENOMEM, -ESHUTDOWN the remote is closing. */
typedef struct tcz_rfetch tcz_rfetch;
int tcz_remote_fetch_start(tcz_remote *r, const unsigned char sha[TCZ_SHA256_LEN],
			   uint32_t len, void *buf, tcz_rfetch **out);
int tcz_remote_fetch_done(const tcz_rfetch *f);
int tcz_remote_fetch_wait(tcz_rfetch *f);

/* ---- the index ---------------------------------------------------------- */

typedef struct tcz_rindex_entry {
	char *name;
	unsigned char manifest_sha[TCZ_SHA256_LEN];
	uint64_t manifest_len;
	uint64_t push_time;    /* unix ms of the push that wrote it */
	uint64_t source_bytes; /* the model's, as imported */
	uint64_t stored_bytes; /* sum of its objects' lengths, once each */
	uint32_t n_objects;    /* distinct chunk objects it names */
} tcz_rindex_entry;

typedef struct tcz_rindex {
	uint64_t generation; /* raised by every push or drop; 0 when empty */
	size_t n;
	tcz_rindex_entry *e; /* sorted by name */
} tcz_rindex;

/* Reads the index (one small object): a remote nobody pushed to has an
 * empty index of generation 0. Polling it is how a host sees new models.
 * Errors: -EIO damaged (checksum); -ETIMEDOUT; -ENOMEM. */
int tcz_remote_index(tcz_remote *r, tcz_rindex **out);
void tcz_rindex_free(tcz_rindex *ix); /* NULL is fine */

/* ---- remote models without copying their chunks ------------------------- */

/* A remote model's manifest, verified against the index (SHA-256) and
 * decoded: its records as a tcz_model, and where each chunk is. */
typedef struct tcz_rmodel tcz_rmodel;

/* Errors: -ENOENT no model of that name in the index; -EIO the manifest
 * does not match the index or is malformed (after retries, in case a push
 * replaced it meanwhile); -ETIMEDOUT; -ENOMEM. */
int tcz_remote_model_open(tcz_remote *r, const char *name, tcz_rmodel **out);
void tcz_rmodel_free(tcz_rmodel *m); /* NULL is fine */

/* The model's records. id, rev and iid are not the pushing store's but
 * a value derived from the manifest's SHA-256 with bit 63 set, so they
 * never collide with a local model's (whose ids count up from 1) and
 * stay the same on every host for the same manifest. */
const tcz_model *tcz_rmodel_model(const tcz_rmodel *m);
/* That value for the manifest whose SHA-256 is sha (what an index entry
 * names): a mount knows a model's identity before loading it. */
uint64_t tcz_remote_ident(const unsigned char sha[TCZ_SHA256_LEN]);
const unsigned char *tcz_rmodel_manifest_sha(const tcz_rmodel *m);

/* The object holding chunk key (a key of a tensor or blob record).
 * Errors: -ENOENT the manifest does not name it. */
int tcz_rmodel_chunk(const tcz_rmodel *m, const unsigned char key[TCZ_KEY_LEN],
		     unsigned char sha[TCZ_SHA256_LEN], uint32_t *len);
/* The object holding TT core k of tensor t (the `ttcores` record: u32
 * r_left, n, r_right, f32 data, XXH3-64). Errors: -ENOENT. */
int tcz_rmodel_ttcore(const tcz_rmodel *m, uint32_t t, uint32_t k,
		      unsigned char sha[TCZ_SHA256_LEN], uint32_t *len);
/* Every distinct object of the model: chunks first (sorted by key), then
 * TT cores. */
uint32_t tcz_rmodel_nobjects(const tcz_rmodel *m);
void tcz_rmodel_object(const tcz_rmodel *m, uint32_t i,
		       unsigned char sha[TCZ_SHA256_LEN], uint32_t *len);

/* ---- push, pull, drop, gc ---------------------------------------------- */

typedef struct tcz_xfer_progress {
	uint64_t objects, objects_total; /* done / to do */
	uint64_t bytes, bytes_total;     /* of the objects done / all */
	uint64_t bytes_moved;            /* sent (push) or fetched (pull) */
	uint64_t skipped;                /* objects already there */
	double seconds;
} tcz_xfer_progress;

typedef struct tcz_xfer_opts {
	unsigned jobs; /* operations in flight (0: 8) */
	/* called from the calling thread, at most every 100 ms and once at
	 * the end (may be NULL) */
	void (*progress)(void *ud, const tcz_xfer_progress *p);
	void *ud;
} tcz_xfer_opts;

/* Uploads local model name: every object the remote lacks (each present
 * one is stat'ed and its lease refreshed, not sent), then its manifest,
 * then its index entry. Interrupted at any point (SIGKILL included), it
 * can be run again and completes; until the index names it, no host
 * sees the model, and then it sees all of it. Pushes of the same model
 * from several hosts at once are safe (the last index update wins; each
 * manifest names only objects present). *st (may be NULL) receives the
 * final figures.
 * Errors: -ENOENT no local model; -EIO a local value is damaged, or the
 * remote failed; -ETIMEDOUT; -EFBIG the manifest exceeds the cluster's
 * object size limit; -ENOMEM. */
int tcz_remote_push(tcz_store *s, tcz_remote *r, const char *name,
		    const tcz_xfer_opts *o, tcz_xfer_progress *st);

/* Copies remote model name into the local store: objects the local store
 * or its chunk cache holds are not fetched; every fetched object is
 * checked (SHA-256 and length against the manifest, the chunk key, the
 * chunk header, and decoded once). The model appears in one transaction
 * when everything is there; on any failure the store is left as it was.
 * Errors: -EEXIST a local model of that name exists; -ENOENT no remote
 * model of that name; -EIO an object is corrupt (the message names it:
 * "hash mismatch"); -ETIMEDOUT; -EROFS; -ENOSPC; -ENOMEM. */
int tcz_remote_pull(tcz_store *s, tcz_remote *r, const char *name,
		    const tcz_xfer_opts *o, tcz_xfer_progress *st);

/* Removes model name from the index, then its manifest; its objects go
 * at a later gc. Errors: -ENOENT; -ETIMEDOUT; -EIO. */
int tcz_remote_drop(tcz_remote *r, const char *name);

typedef struct tcz_gc_opts {
	uint64_t grace_s; /* keep unreferenced objects touched this recently */
	int dry_run;      /* list, delete nothing */
	/* each object deleted (or, dry run, that would be); may be NULL */
	void (*each)(void *ud, const char *oid, uint64_t len);
	void *ud;
} tcz_gc_opts;

typedef struct tcz_gc_stats {
	uint64_t objects;     /* chunk objects seen */
	uint64_t referenced;  /* named by some manifest */
	uint64_t deleted, deleted_bytes; /* (dry run: would be) */
	uint64_t young;       /* unreferenced but within grace or a lease */
	uint64_t raced;       /* touched by a push while gc looked: kept */
	uint64_t leases, dead_leases;
	uint64_t manifests_deleted; /* not indexed, untouched since the cutoff */
} tcz_gc_stats;

/* Deletes manifests the index does not name (replaced by a later push,
 * or dropped) and chunk objects that no remaining manifest names, when no
 * push touched them since the cutoff: now - grace, or earlier, the start
 * of the oldest push still running (a lease renewed within max(grace,
 * 60 s)). Each delete is conditional on the object's tczfs.t xattr being
 * what gc read, so a push that touches it meanwhile keeps it. Objects no
 * push wrote (no tczfs.t) are never deleted. Dead leases are removed
 * first; a manifest that cannot be read stops gc before it deletes any
 * chunk.
 * Errors: -EIO a damaged manifest; -ETIMEDOUT; -ENOMEM. */
int tcz_remote_gc(tcz_remote *r, const tcz_gc_opts *o, tcz_gc_stats *st);

/* ---- the local chunk cache (tables rcache, rcmeta, rclru) --------------- */

/* Remote chunks a host read are kept in its store, up to a capacity in
 * bytes, least recently used evicted first. Only values put here are
 * cached or evicted: chunks of local models live in `chunks` and are
 * never touched (a put of a key `chunks` holds is a no-op). Values are
 * chunk values (TT cores are not cached) checked against their key when read.
 *
 * Recency is a logical clock stored in the store (one tick per use,
 * shared by every process), so eviction order is exact across processes
 * and restarts. Uses noted by get are kept in memory and written with
 * the next put, flush or close (a crash loses only recency). */
typedef struct tcz_rcache tcz_rcache;

/* capacity 0: nothing is kept. Errors: -EROFS a read-only store (gets
 * still work; puts are refused); -ENOMEM. */
int tcz_rcache_open(tcz_store *s, uint64_t capacity, tcz_rcache **out);
void tcz_rcache_close(tcz_rcache *c); /* flushes; NULL is fine */
void tcz_rcache_set_capacity(tcz_rcache *c, uint64_t capacity);

/* The cached value of key, in r's buffer until r's next read (*val,
 * *len); verified against the key (XXH3-128 of the value).
 * Errors: -ENOENT not cached; -EIO the cached value is damaged (it is
 * dropped at the next flush: fetch it again); -ENOMEM. */
int tcz_rcache_get(tcz_rcache *c, tcz_reader *r,
		   const unsigned char key[TCZ_KEY_LEN],
		   const unsigned char **val, size_t *len);

/* Stores val[len] under key (which must be its XXH3-128: checked),
 * evicting least recently used entries until it fits. A key already
 * cached is only marked used. Errors: -EINVAL key mismatch; -EFBIG len
 * exceeds the capacity (nothing stored); -EROFS; -ENOSPC, -EIO; deferred
 * (tcz_rcache_defer): -EAGAIN the queue is full, -ENOMEM. */
int tcz_rcache_put(tcz_rcache *c, const unsigned char key[TCZ_KEY_LEN],
		   const void *val, size_t len);

/* Evicts least recently used entries until at most target bytes are
 * cached; *freed (may be NULL) receives the bytes freed.
 * Errors: -EROFS, -ENOSPC, -EIO. */
int tcz_rcache_evict(tcz_rcache *c, uint64_t target, uint64_t *freed);

/* Writes the uses noted by get and the deferred puts, in one
 * transaction; returns 0 at once while another flush is writing (the
 * next one takes what came meanwhile). Deferred values are dropped from
 * memory whether or not the write succeeded (a cache: a failed write
 * costs a fetch later). Errors: -EROFS, -ENOSPC, -EIO. */
int tcz_rcache_flush(tcz_rcache *c);

/* From now on, puts keep a copy in memory (max_bytes in all; 0: puts
 * write at once again) for the next flush to write, so a reader that
 * fetched a chunk never waits for the store's write lock; gets find the
 * queued values. A put beyond max_bytes returns -EAGAIN, nothing kept. */
void tcz_rcache_defer(tcz_rcache *c, uint64_t max_bytes);
/* fn(ud) is called (no lock held, from the putting thread) after a
 * deferred put leaves a quarter of max_bytes or more queued: the owner
 * of the flushes should flush soon. NULL: no calls. */
void tcz_rcache_on_fill(tcz_rcache *c, void (*fn)(void *ud), void *ud);

/* Bytes and entries cached (as of the last committed write). */
int tcz_rcache_usage(tcz_rcache *c, uint64_t *bytes, uint64_t *entries);

/* ---- views of remote models ---------------------------------------------- */

struct tcz_mview;
/* Opens remote model name as a model view (store/view.h) whose sources
 * decode from chunks fetched on demand: from the local `chunks` table
 * when a local model shares them, else from cache c (may be NULL), else
 * from the remote (checked, then put into c). Files, sizes, pieces and
 * cache keys are those of a local view of the same model; a read whose
 * chunk cannot be had fails with tcz_view_decode's -EIO (corrupt) or
 * -ETIMEDOUT (the remote did not answer in time). The view holds r and c:
 * both must outlive it. No pin is held (nothing local to keep).
 * Errors: as tcz_remote_model_open; -ENOMEM. */
int tcz_remote_mview_open(tcz_store *s, tcz_remote *r, tcz_rcache *c,
			  const char *name, struct tcz_mview **out);

#endif
