/* Views: which bytes every file of the mounted tree holds. No FUSE here:
 * the daemon (fs/) maps inodes and requests onto views, and `tczfs cat`
 * and `tczfs export` read the same files through them.
 *
 * A model view is one model's immutable content, loaded once: its files
 * (the model directory's container and auxiliary files, and
 * layers/<tensor>.npy), each with an exact size known without decoding.
 * A view holds no LMDB transaction; it pins the model's content instead
 * (store.h), so a removal leaves every chunk it needs in the store until
 * the last view of it, in any process, is gone.
 *
 * A byte range of a file maps to pieces: literal bytes (headers), zeros,
 * and slices of decodable sources of at most TCZ_CHUNK_MAX bytes (a
 * tensor's or blob's chunk, or a BF16 chunk presented as f32). A source
 * has a 16-byte cache key: a stored chunk's content key (shared by every
 * model holding the same bytes), or a name derived from the content for
 * computed ones (TT chunks). Container formats describe themselves as
 * extents of the model record, so safetensors, GGUF and ONNX files differ
 * only in their parsers.
 *
 * Thread safety: a view may be shared by threads (it is immutable); a
 * tcz_reader belongs to one thread. */
#ifndef TCZ_VIEW_H
#define TCZ_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

typedef struct tcz_mview tcz_mview;

/* Directories of a model's tree: the model directory, layers/, then the
 * subdirectories the model's files sit in (an ONNX model's external data
 * under weights/, say), each with its parent. */
#define TCZ_VDIR_MODEL 0u  /* <model>/ */
#define TCZ_VDIR_LAYERS 1u /* <model>/layers/ */

typedef struct tcz_vdir {
	const char *name; /* within its parent ("" for the model directory) */
	uint32_t parent;  /* the model directory is its own parent */
} tcz_vdir;

typedef enum tcz_vkind {
	TCZ_VF_CONTAINER = 0, /* a model file holding tensors (safetensors) */
	TCZ_VF_AUX = 1,       /* an auxiliary file, bytes stored verbatim */
	TCZ_VF_NPY = 2,       /* layers/<tensor>.npy */
} tcz_vkind;

typedef struct tcz_vfile {
	const char *name; /* within its directory */
	uint32_t dir;     /* the directory holding it */
	tcz_vkind kind;
	uint32_t index;   /* the model's file index, or the tensor's (NPY) */
	uint64_t size;    /* exact */
	uint64_t mtime;   /* when its bytes last changed: the import, or the
			   * latest re-encoding that changed values */
	uint32_t gen;     /* bytes generation (the largest of its tensors') */
} tcz_vfile;

/* Opens the current content of model name.
 * Errors: -ENOENT no such model; -EIO / -EBADMSG a damaged record (the
 * message names it); -EAGAIN; -ENOMEM. */
int tcz_mview_open(tcz_store *s, const char *name, tcz_mview **out);
tcz_mview *tcz_mview_ref(tcz_mview *v);
void tcz_mview_put(tcz_mview *v); /* NULL is fine */

const tcz_model *tcz_mview_model(const tcz_mview *v);
/* The pinned content revision (the model's rev): a source's identity is
 * (revision, source). */
uint64_t tcz_mview_content(const tcz_mview *v);

uint32_t tcz_mview_nfiles(const tcz_mview *v);
const tcz_vfile *tcz_mview_file(const tcz_mview *v, uint32_t i);
uint32_t tcz_mview_ndirs(const tcz_mview *v);
const tcz_vdir *tcz_mview_dir(const tcz_mview *v, uint32_t d);
/* The files of directory dir, in name order: the k-th's index. */
uint32_t tcz_mview_dir_count(const tcz_mview *v, uint32_t dir);
uint32_t tcz_mview_dir_file(const tcz_mview *v, uint32_t dir, uint32_t k);
/* Its subdirectories, in name order: the k-th's directory index. */
uint32_t tcz_mview_subdir_count(const tcz_mview *v, uint32_t dir);
uint32_t tcz_mview_subdir(const tcz_mview *v, uint32_t dir, uint32_t k);
/* A file of directory dir. Errors: -ENOENT. */
int tcz_mview_lookup(const tcz_mview *v, uint32_t dir, const char *name,
		     uint32_t *i);
/* A subdirectory of directory dir. Errors: -ENOENT. */
int tcz_mview_lookup_dir(const tcz_mview *v, uint32_t dir, const char *name,
			 uint32_t *d);
/* A path inside the model directory ("model.safetensors",
 * "layers/w.npy", "weights/a.data"). Errors: -ENOENT; -EISDIR a
 * directory. */
int tcz_mview_path(const tcz_mview *v, const char *path, uint32_t *i);
/* The path of file i below the model directory, into buf[n]. */
void tcz_mview_file_path(const tcz_mview *v, uint32_t i, char *buf, size_t n);

/* ---- pieces ------------------------------------------------------------- */

typedef enum tcz_src_kind {
	TCZ_SRC_TENSOR = 0, /* chunk of a tensor in its own dtype */
	TCZ_SRC_BLOB = 1,   /* chunk of a blob (headers, aux files) */
} tcz_src_kind;

typedef struct tcz_src {
	uint32_t kind, index, chunk;
	uint32_t len; /* decoded bytes */
} tcz_src;

typedef enum tcz_piece_kind {
	TCZ_PIECE_BYTES = 0, /* mem[0..len) */
	TCZ_PIECE_ZERO = 1,  /* len zero bytes */
	TCZ_PIECE_CHUNK = 2, /* bytes [off, off+len) of the decoded source */
	TCZ_PIECE_WIDEN = 3, /* bytes [off, off+len) of a BF16 source widened
			      * to f32 (offsets count f32 bytes) */
	TCZ_PIECE_DEQUANT = 4, /* bytes [off, off+len) of a source of GGUF
				* blocks of ggml type qtype, dequantized to
				* f32 (offsets count f32 bytes) */
} tcz_piece_kind;

typedef struct tcz_piece {
	tcz_piece_kind kind;
	uint32_t qtype;  /* DEQUANT: the ggml type */
	const void *mem; /* BYTES: owned by the view */
	tcz_src src;     /* CHUNK, WIDEN */
	uint32_t off, len;
} tcz_piece;

typedef struct tcz_pieces {
	tcz_piece *p;
	size_t n, cap;
} tcz_pieces;

void tcz_pieces_free(tcz_pieces *l); /* the array; l itself is the caller's */

/* Appends to l the pieces of bytes [off, off+len) of file i, clipped to
 * its size (nothing at or past the end). Errors: -EINVAL bad file;
 * -ENOMEM. */
int tcz_view_map(const tcz_mview *v, uint32_t i, uint64_t off, uint64_t len,
		 tcz_pieces *l);

/* The cache key of a source. */
void tcz_view_src_key(const tcz_mview *v, const tcz_src *s,
		      unsigned char key[TCZ_KEY_LEN]);

/* The source k chunks after s in the same tensor or blob.
 * Errors: -ENOENT past its end. */
int tcz_view_src_next(const tcz_mview *v, const tcz_src *s, uint32_t k,
		      tcz_src *out);

/* "tensor 'w' chunk 3" or "file 'config.json' chunk 0": for messages. */
void tcz_view_src_describe(const tcz_mview *v, const tcz_src *s, char *buf,
			   size_t n);

/* Bytes [off, off+len) of source s into dst, fetching and decoding only
 * the blocks of its chunk under them (a small read of a lossless chunk of
 * the local store; see the block index in docs/formats.md), each block
 * checked against its hash.
 * Errors: -ENOTSUP the source is not read in parts (a TT, lossy or
 * remote source, a chunk without an index): use tcz_view_decode; -EIO a
 * block fails its check (or a read error); -EBADMSG it does not decode;
 * -ENOMEM. */
int tcz_view_decode_part(tcz_reader *r, const tcz_mview *v, const tcz_src *s,
			 uint32_t off, uint32_t len, void *dst);

/* Loads the store's index of chunks [first, first+n) of tensor t (their
 * block index records and chunk table entries, not their values) into
 * memory, so that a small read of one of them then waits for its data
 * alone: a cold part read otherwise faults in a leaf of each table
 * before its pread, three disk waits in a row. Chunks beyond the
 * tensor's are ignored; a tensor not read in parts (lossy, TT, a remote
 * or a source model) is nothing to do. Errors: the store's (-EIO a lost
 * map). */
int tcz_view_index_warm(tcz_reader *r, const tcz_mview *v, uint32_t t,
			uint32_t first, uint32_t n);

/* The whole blocks of source s that cover [off, off+len): its decoded
 * bytes [*span_off, *span_off + *span_len), what a reader caches after a
 * part read (tcz_view_decode_part of the span decodes exactly them).
 * Errors: as tcz_view_decode_part. */
int tcz_view_part_span(tcz_reader *r, const tcz_mview *v, const tcz_src *s,
		       uint32_t off, uint32_t len, uint32_t *span_off,
		       uint32_t *span_len);

/* Decodes source s into dst (s->len bytes), verifying every stored value
 * on the way. Errors: -EIO a checksum mismatch (or a read error);
 * -ENODATA a value the records name is missing; -EBADMSG a value that
 * does not decode; -EINVAL bad source; -ENOMEM. */
int tcz_view_decode(tcz_reader *r, const tcz_mview *v, const tcz_src *s,
		    void *dst);

/* Copies piece p to dst (p->len bytes); chunk is the decoded source for
 * CHUNK and WIDEN pieces, unused otherwise. */
void tcz_piece_copy(const tcz_piece *p, const void *chunk, void *dst);

/* Reads bytes [off, off+len) of file i into buf, decoding each source
 * once (consecutive calls reuse a source that straddles them); *got is
 * the count (short only at the end of the file). On failure, *bad (may
 * be NULL) receives the source that failed.
 * Errors: as tcz_view_decode. */
int tcz_view_read(tcz_reader *r, const tcz_mview *v, uint32_t i, uint64_t off,
		  size_t len, void *buf, size_t *got, tcz_src *bad);

/* A TT tensor's cores as stored, concatenated (core k after cores
 * 0..k-1), tcz_view_tt_floats(v, t) floats (0 for another codec), each
 * record's checksum and shape checked.
 * Errors: -EINVAL not a TT tensor; as tcz_view_decode. */
size_t tcz_view_tt_floats(const tcz_mview *v, uint32_t t);
int tcz_view_tt_cores(tcz_reader *r, const tcz_mview *v, uint32_t t,
		      float *dst);

/* The layers/ file of tensor t, UINT32_MAX when it has none. */
uint32_t tcz_mview_npy_file(const tcz_mview *v, uint32_t t);

/* Opens "MODEL/PATH" (a path of the mounted tree below its root).
 * Errors: -ENOENT no such model or file (the message says which);
 * -EISDIR a directory; -EINVAL a malformed path; as tcz_mview_open. */
int tcz_view_open_path(tcz_store *s, const char *path, tcz_mview **v,
		       uint32_t *file);

#endif
