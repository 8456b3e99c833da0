/* The tczfs store: one LMDB environment holding models, their tensors,
 * chunked payloads, TT cores, auxiliary files and access statistics.
 *
 * Layout (named databases; keys big-endian so they sort numerically):
 *   meta     "schema", "next_id", "generation", "stream_generation" u64
 *   models   model name -> model record (files, blobs, totals)
 *   tensors  model id . tensor index -> tensor record (codec, chunk keys)
 *   aux      model id . blob index -> blob record (aux files, headers)
 *   chunks   XXH3-128 of the value -> chunk value (codec header + payload)
 *   refs     chunk key -> u64 reference count
 *   ttcores  model id . tensor index . core index -> [r_left, n, r_right] + f32
 *   stats    model id . tensor index -> access statistics
 *   imports  import id -> owner of an import in progress (pid, start time)
 *   pending  import id . batch -> chunk keys that import has referenced
 *   dropped  content id . part -> chunk keys released once unpinned
 *   streams  stream name -> stream record (parameters, totals)
 *   sindex   stream id . first frame -> where a segment is, its timestamps
 *   segments stream id . start ts . end ts . first frame -> TQTC segment
 *   sstats   stream id -> access statistics and pinned tier
 * (store/stream.h is the streams' API.)
 * Every record ends in an XXH3-64 checksum; a chunk's key is the XXH3-128
 * of its value, so identical chunks are stored once and every read checks
 * the bytes against the key. A mismatch is -EIO, never wrong bytes.
 *
 * A model becomes visible when its import commits its model record (the
 * last transaction); chunks written before that are listed in `pending`
 * so an interrupted import is rolled back by the next writer.
 *
 * Readers never keep an LMDB snapshot open: a model view (store/view.h)
 * pins the model's content instead, with a shared lock on one byte of
 * tczfs.lock that the kernel drops when its process dies. Removing a model
 * moves its chunk references to `dropped`; they are released by a later
 * writer once no process pins that content (deferred release).
 *
 * Thread safety: a tcz_store may be shared by threads; a tcz_snap and a
 * tcz_reader belong to one thread at a time. Functions return 0 or a
 * negative errno; where a message helps, tcz_store_errmsg() gives one line
 * about the calling thread's last failure. */
#ifndef TCZ_STORE_H
#define TCZ_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/dtype.h"
#include "codec/tier.h"

#define TCZ_SCHEMA_VERSION 2u
#define TCZ_SCHEMA_OLDEST 1u /* older stores are upgraded when opened for writing */
#define TCZ_CHUNK_MAX (1u << 20) /* decoded bytes per chunk at most */
#define TCZ_KEY_LEN 16
#define TCZ_MAX_DIMS 32u
#define TCZ_NAME_MAX 128u

/* The last failure's one-line explanation for this thread ("" if none). */
const char *tcz_store_errmsg(void);

/* ---- opening ---------------------------------------------------------- */

typedef struct tcz_store tcz_store;

#define TCZ_STORE_CREATE 0x1u /* create the directory and databases */
#define TCZ_STORE_RDONLY 0x2u /* no writes (ls, info, export) */
#define TCZ_STORE_DAEMON 0x4u /* long-lived (mount): reserve a 1 TiB map,
			       * as open views keep it from adopting a map
			       * another process grew */

/* Opens the store in directory dir (created 0700 with TCZ_STORE_CREATE,
 * files 0600). The schema version is checked.
 * Errors: -ENOENT no store at dir (and no CREATE); -EPROTONOSUPPORT the
 * store has another schema version; -ENOTDIR, -EACCES, -ENOMEM, -EIO. */
int tcz_store_open(const char *dir, unsigned flags, tcz_store **out);
void tcz_store_close(tcz_store *s); /* NULL is fine */

/* The default store directory: $TCZFS_STORE, else
 * ${XDG_DATA_HOME:-$HOME/.local/share}/tczfs. Returns a malloc'd string or
 * NULL when neither HOME nor the variables are set. */
char *tcz_store_default_dir(void);

/* True when name is a valid model name: [A-Za-z0-9][A-Za-z0-9._-]{0,127},
 * and not "asic" or "streams". */
bool tcz_model_name_valid(const char *name);

/* Size of the store's data file in bytes. */
int tcz_store_disk_size(tcz_store *s, uint64_t *bytes);

/* ---- in-memory model --------------------------------------------------- */

typedef enum tcz_codec {
	TCZ_CODEC_LOSSLESS = 0, /* byte planes + zstd (codec/lossless.h) */
	TCZ_CODEC_QUANT = 1,    /* groupwise quantization (codec/quant.h) */
	TCZ_CODEC_TT = 2,       /* tensor train (codec/tt.h), cores apart */
	TCZ_CODEC_ZSTD = 3,     /* plain zstd frame (aux files, headers) */
	TCZ_CODEC_BLOCKQ = 4,   /* GGUF quantized blocks, planes + zstd
				 * (codec/blockq.h), lossless */
} tcz_codec;

const char *tcz_codec_name(tcz_codec c);
/* True for the codecs that give the stored bytes back exactly. */
static inline int tcz_codec_exact(tcz_codec c)
{
	return c == TCZ_CODEC_LOSSLESS || c == TCZ_CODEC_ZSTD ||
	       c == TCZ_CODEC_BLOCKQ;
}

typedef struct tcz_tensor {
	char *name;
	tcz_dtype dtype;
	uint32_t ndim;
	uint64_t *shape;
	uint64_t numel, nbytes; /* nbytes = numel * dtype size */
	tcz_codec codec;
	uint32_t bits, group_len;       /* quant */
	uint32_t tt_order;              /* tt: cores in the ttcores table */
	uint64_t *tt_modes, *tt_ranks;  /* tt: order and order + 1 entries */
	uint32_t level;                 /* zstd level of lossless chunks */
	uint32_t chunk_bytes;           /* decoded bytes per chunk but last */
	uint32_t n_chunks;              /* 0 for tt (computed on read) */
	unsigned char (*chunks)[TCZ_KEY_LEN];
	uint64_t stored_bytes;          /* encoded size (chunks or cores) */
	double rel_error, max_abs;      /* measured in the original dtype,
					 * against the imported values */
	uint32_t gen;    /* bytes generation: bumped when re-encoding changes
			  * the values served (precision tiering) */
	uint32_t tflags; /* TCZ_TENSOR_* */
	uint64_t mtime;  /* when the served values last changed (unix s);
			  * 0: the import time */
	/* A block-quantized GGUF tensor: its ggml type + 1 (0 for any other
	 * tensor). Its bytes are the blocks (dtype U8, shape [nbytes]); its
	 * logical shape, in NumPy order (GGUF's dims reversed), is qshape. */
	uint32_t qtype;
	uint32_t qndim;
	uint64_t *qshape;
} tcz_tensor;

/* rel_error and max_abs are upper bounds (a re-quantization of values that
 * were already lossy: the imported values are not known any more) */
#define TCZ_TENSOR_ERR_BOUND 0x1u

typedef struct tcz_blob { /* bytes stored verbatim, zstd-coded chunks */
	uint64_t length;
	uint32_t chunk_bytes, n_chunks;
	unsigned char (*chunks)[TCZ_KEY_LEN];
	uint64_t stored_bytes;
} tcz_blob;

typedef enum tcz_extent_kind {
	TCZ_EXT_BLOB = 0,   /* index = blob */
	TCZ_EXT_TENSOR = 1, /* index = tensor, its bytes in the original dtype */
} tcz_extent_kind;

typedef struct tcz_extent {
	uint64_t offset, length; /* within the file */
	uint32_t kind, index;
} tcz_extent;

#define TCZ_FILE_SOURCE 0x1u    /* this file was part of the import source */
#define TCZ_FILE_SAFETENSORS 0x2u
#define TCZ_FILE_GGUF 0x4u
#define TCZ_FILE_ONNX 0x8u      /* a model.onnx */
#define TCZ_FILE_ONNX_DATA 0x10u /* an ONNX model's external data */

typedef struct tcz_file {
	char *name;
	uint64_t size;
	uint32_t flags;
	uint32_t n_extents;
	tcz_extent *extents; /* sorted by offset, contiguous from 0 */
} tcz_file;

#define TCZ_MODEL_LOSSY 0x1u    /* some tensor is not stored exactly */
#define TCZ_MODEL_FROM_DIR 0x2u /* imported from a directory */

/* How tiering may re-encode a model's cold tensors (SPEC 7). */
typedef enum tcz_policy {
	TCZ_POLICY_COST = 0,      /* bytes never change: denser lossless */
	TCZ_POLICY_PRECISION = 1, /* fewer bits within max_error */
} tcz_policy;

typedef struct tcz_model {
	char *name;
	uint64_t id;  /* never reused: the model's identity */
	uint64_t rev; /* content revision: a new id at every re-encode, the
		       * id readers pin (= id at import) */
	uint64_t iid; /* bytes identity: a new id whenever the bytes served
		       * change (precision tiering); inode numbers derive
		       * from it (= id at import) */
	uint64_t import_time; /* unix seconds */
	uint32_t flags;
	tcz_policy policy;
	double policy_max_error; /* precision: per tensor bound */
	/* what the source format says of itself, as JSON text (GGUF's KV
	 * pairs and summary, ONNX's producer and opsets), or NULL */
	char *meta;
	char *source;  /* path given to import */
	char *profile; /* encoding options, human readable */
	uint64_t source_bytes, stored_bytes;
	uint32_t n_tensors, n_blobs, n_files;
	tcz_tensor *tensors;
	tcz_blob *blobs;
	tcz_file *files;
} tcz_model;

void tcz_model_free(tcz_model *m); /* NULL is fine */

/* Number of chunks of a tensor as read (for tt: ceil(nbytes/chunk_bytes)). */
uint32_t tcz_tensor_chunk_count(const tcz_tensor *t);
/* Decoded length of chunk ci. */
uint32_t tcz_tensor_chunk_len(const tcz_tensor *t, uint32_t ci);

/* ---- reading records --------------------------------------------------- */

/* A consistent read-only view of the store's records: one short LMDB read
 * transaction, for one thread. Hold it briefly (a listing, a model load):
 * while it is open, pages freed by writers cannot be reused. Pointers it
 * returns stay valid until tcz_snap_end. Reading file contents goes
 * through model views (store/view.h), which hold no transaction. */
typedef struct tcz_snap tcz_snap;

/* Errors: -EAGAIN the map was grown by another process and cannot be
 * mapped here; -ENOMEM; -EIO. */
int tcz_snap_begin(tcz_store *s, tcz_snap **out);
void tcz_snap_end(tcz_snap *sn); /* NULL is fine */

/* The store generation seen by the view (bumped by every import and rm).
 * Errors: -EIO the meta record is damaged (message set). */
int tcz_snap_generation(tcz_snap *sn, uint64_t *gen);

/* The store's current generation, in a short read transaction. */
int tcz_store_generation(tcz_store *s, uint64_t *gen);

/* Sorted model names. Free with tcz_names_free.
 * Errors: -ENOMEM, -EIO. */
int tcz_snap_list(tcz_snap *sn, char ***names, size_t *count);
void tcz_names_free(char **names, size_t count);

/* Model id of name. Errors: -ENOENT; -EIO corrupt record. */
int tcz_snap_model_id(tcz_snap *sn, const char *name, uint64_t *id);

/* Model name's id, revision and bytes identity (tcz_model).
 * Errors: -ENOENT; -EIO / -EBADMSG a damaged record; -ENOMEM. */
int tcz_snap_model_ident(tcz_snap *sn, const char *name, uint64_t *id,
			 uint64_t *rev, uint64_t *iid);

/* Loads a model's records. Errors: -ENOENT no such model; -EIO a record's
 * checksum failed; -EBADMSG a record is malformed; -ENOMEM. The message
 * names the model and the record. */
int tcz_snap_model(tcz_snap *sn, const char *name, tcz_model **out);

/* Per-thread decoding state (a reusable read transaction, zstd contexts,
 * scratch), bound to one store. */
typedef struct tcz_reader tcz_reader;
int tcz_reader_create(tcz_store *s, tcz_reader **out); /* -ENOMEM */
void tcz_reader_free(tcz_reader *r);                   /* NULL is fine */

/* Decoded TT cores become entries of cache c (shared by threads, within
 * its budget) instead of the reader's private copy. c outlives r. */
struct tcz_cache;
void tcz_reader_set_cache(tcz_reader *r, struct tcz_cache *c);

/* ---- writing ----------------------------------------------------------- */

/* An import in progress. Chunks are written in batches of their own
 * transactions; nothing is visible until tcz_import_commit. */
typedef struct tcz_import_tx tcz_import_tx;

/* Starts importing model `name`, after rolling back imports whose process
 * died. Errors: -EINVAL invalid name; -EEXIST a model of that name exists;
 * -EROFS store opened read-only; -ENOSPC, -EIO, -ENOMEM. */
int tcz_import_begin(tcz_store *s, const char *name, tcz_import_tx **out);

/* Builds a chunk value (header + payload) for codec c. */
int tcz_chunk_value(tcz_codec c, tcz_dtype dt, uint32_t decoded_len,
		    const void *payload, size_t plen, unsigned char **val,
		    size_t *vlen);

/* Adds one reference to a chunk (storing it unless an identical one
 * exists) and returns its key. Takes ownership of val (malloc'd).
 * Errors: -EIO a stored chunk with the same key differs (hash collision,
 * refused); -ENOSPC, -ENOMEM, -EIO from LMDB. */
int tcz_import_put_chunk(tcz_import_tx *tx, unsigned char *val, size_t vlen,
			 unsigned char key[TCZ_KEY_LEN]);

/* Stores TT core k of tensor t: [r_left, n, r_right] floats. */
int tcz_import_put_ttcore(tcz_import_tx *tx, uint32_t t, uint32_t k,
			  uint64_t r_left, uint64_t n, uint64_t r_right,
			  const float *data);

/* Writes the model's records and makes it visible, in one transaction.
 * m->id is set from the import; m->name must equal the begun name.
 * Errors: -EEXIST a model of that name appeared meanwhile; -ENOSPC; -EIO.
 * On error the import is rolled back. The tx is freed in every case. */
int tcz_import_commit(tcz_import_tx *tx, tcz_model *m);

/* Rolls back an import (drops the references it took) and frees tx. */
void tcz_import_abort(tcz_import_tx *tx);

/* Re-encoding tensors of an existing model (tiering): chunks are added
 * with tcz_import_put_chunk as for an import (a crash rolls them back);
 * the commit replaces the tensor records in one transaction, gives the
 * model a new revision (and a new bytes identity when bytes_changed), and
 * leaves the replaced chunks to readers of the old revision (deferred
 * release). m is the model as loaded: the commit fails with -EAGAIN when
 * its revision changed meanwhile.
 * Errors: -EROFS, -ENOENT, -ENOSPC, -EIO, -ENOMEM. */
int tcz_reencode_begin(tcz_store *s, const tcz_model *m, tcz_import_tx **out);
/* tensors[i] is the new record of tensor idx[i]. Frees tx in every case
 * (rolled back on failure). Errors: -EAGAIN the model changed; -ENOENT it
 * was removed; -ENOSPC, -EIO. */
int tcz_reencode_commit(tcz_import_tx *tx, uint32_t n, const uint32_t *idx,
			const tcz_tensor *tensors, int bytes_changed);

/* Removes a model: its records and statistics at once; its chunk
 * references and TT cores are released (chunks no other model references
 * deleted) as soon as no process has it open, by this call or a later
 * writer. Errors: -ENOENT, -EROFS, -ENOSPC, -EIO. */
int tcz_store_remove(tcz_store *s, const char *name);

/* Releases what removals left for readers that are gone; *count (may be
 * NULL) receives how many removed contents were released. Writers call it
 * themselves; a long-lived process calls it now and then.
 * Errors: -EROFS, -ENOSPC, -EIO. */
int tcz_store_collect(tcz_store *s, unsigned *count);

/* Clears reader slots of processes that died holding them (LMDB's
 * mdb_reader_check); done at every open, and now and then by the daemon.
 * *dead (may be NULL) receives how many were cleared. Errors: -EIO. */
int tcz_store_reader_check(tcz_store *s, int *dead);

/* Drops this process's mappings of store pages (they stay in the page
 * cache): a long-lived reader calls it now and then so that the pages
 * its lookups touched do not add up in its resident set. */
void tcz_store_trim(tcz_store *s);

/* Rolls back imports whose owning process is gone; *count (may be NULL)
 * receives how many. Errors: -EROFS, -EIO. */
int tcz_store_recover(tcz_store *s, unsigned *count);

/* ---- access statistics (for tiering) ------------------------------------ */

typedef struct tcz_access {
	uint64_t reads;       /* read requests that touched the tensor */
	uint64_t bytes;       /* bytes of it returned to readers */
	uint64_t last_access; /* unix seconds; 0 = never */
	int32_t pinned;       /* a tcz_tier pinned by the user, or -1 */
} tcz_access;

/* Fills out[0..n) with the stored statistics of tensors 0..n-1 of model
 * id; tensors without a record get zeros and pinned = -1.
 * Errors: -EIO a damaged record (it reads as zeros), -ENOMEM. */
int tcz_snap_access(tcz_snap *sn, uint64_t model_id, uint32_t n,
		    tcz_access *out);

/* Adds reads[i] read requests and bytes[i] bytes to the statistics of
 * tensor idx[i] of model id, and raises its last access to last[i], for
 * i < n, in one transaction: several processes add up. When totals is not
 * NULL it receives the stored statistics after the addition. Nothing is
 * written for a model that no longer exists (totals then read zero). A
 * damaged record restarts from the deltas.
 * Errors: -EROFS, -ENOSPC, -EIO. */
int tcz_store_add_access(tcz_store *s, uint64_t model_id, const uint32_t *idx,
			 const uint64_t *reads, const uint64_t *bytes,
			 const uint64_t *last, size_t n, tcz_access *totals);

/* Sets the pinned tier (a tcz_tier, or -1 for none: tiers follow the
 * score) of tensors idx[0..n) of model id, keeping their counts; every
 * daemon honours it. Errors: -ENOENT no such tensor; -EINVAL; -EROFS,
 * -ENOSPC, -EIO. */
int tcz_store_set_pin(tcz_store *s, uint64_t model_id, const uint32_t *idx,
		      size_t n, int32_t pinned);

/* Sets model name's tiering policy (and the error bound of precision
 * tiering); the model gets a new revision, so daemons reload it.
 * Errors: -ENOENT, -EINVAL, -EROFS, -ENOSPC, -EIO. */
int tcz_store_set_policy(tcz_store *s, const char *name, tcz_policy p,
			 double max_error);

/* Seconds since the epoch as tiering sees them: the time of day, unless
 * TCZFS_NOW is set (a test hook): a number, or @FILE holding one, read
 * again whenever FILE changes. */
uint64_t tcz_store_now(void);

/* ---- streams ----------------------------------------------------------- */

/* Temporal tensor streams and their TQTC segments: store/stream.h. */

/* ---- checking ---------------------------------------------------------- */

typedef struct tcz_verify_report {
	uint64_t models, tensors, chunks, bytes; /* checked */
	uint64_t bad;                            /* problems reported */
	uint64_t streams, segments;              /* checked (whole store) */
} tcz_verify_report;

/* Called once per problem with a one-line description. */
typedef void (*tcz_verify_cb)(void *ud, const char *model, const char *what,
			      const char *problem);

/* Decodes every tensor and blob of model `name` (all models when NULL),
 * checking checksums and that each value decodes to its recorded length;
 * with all models, also checks reference counts against the records.
 * Returns 0 when everything is sound, -EIO when problems were reported.
 * Errors: -ENOENT no such model; -ENOMEM. */
int tcz_store_verify(tcz_store *s, const char *name, tcz_verify_cb cb,
		     void *ud, tcz_verify_report *rep);

#endif
