/* Lossless tensor codec: byte planes, Huffman and zstd (SPEC section 5).
 *
 * Float elements are rotated left by one bit so that the sign moves below
 * the exponent and the exponent starts the top byte (BF16/F32: the top byte
 * is exactly the exponent), then split into byte planes (all top bytes
 * together, then each lower byte position); other dtypes are split into
 * plain byte planes. A float's exponent plane is Huffman-coded under one
 * of up to four codes per blob (codec/huff.h), in blocks where the scale
 * changes (rows of a matrix) as distances below each segment's maximum
 * (blob version 3), the other planes are
 * zstd-coded, and a plane stays raw when coding does not make it
 * smaller; a blob whose coding does not shrink the input at all stores it
 * raw in one piece. Exact bytes come back for every dtype and every
 * length, including 0.
 *
 * The blob layout is documented in docs/formats.md. */
#ifndef TCZ_LOSSLESS_H
#define TCZ_LOSSLESS_H

#include <stddef.h>

#include "codec/dtype.h"

/* Reusable zstd contexts and scratch space; one per thread. */
typedef struct tcz_lossless_ctx tcz_lossless_ctx;

/* Returns NULL when out of memory. */
tcz_lossless_ctx *tcz_lossless_ctx_create(void);
void tcz_lossless_ctx_free(tcz_lossless_ctx *ctx); /* NULL is fine */

/* Largest blob tcz_lossless_encode can produce for len input bytes. */
size_t tcz_lossless_bound(size_t len);

#define TCZ_LOSSLESS_LEVEL_DEFAULT 3 /* zstd level: import speed */
#define TCZ_LOSSLESS_LEVEL_DENSE 19  /* cold-tier re-encoding */

/* Encodes len bytes of dtype elements. ctx may be NULL (a temporary one is
 * made). level is a zstd level (1..22).
 * Errors: -EINVAL bad dtype, len not a multiple of the element size, or
 * bad level; -ENOBUFS dst_cap < tcz_lossless_bound(len); -ENOMEM. */
int tcz_lossless_encode(tcz_lossless_ctx *ctx, tcz_dtype dt, const void *src,
			size_t len, int level, void *dst, size_t dst_cap,
			size_t *out_len);

/* Decoded size recorded in a blob.
 * Errors: -EBADMSG malformed header. */
int tcz_lossless_decoded_size(const void *src, size_t len, size_t *out);

/* Decodes a blob into exactly dst_len bytes. Never reads outside
 * [src, src+len) nor writes outside [dst, dst+dst_len).
 * Errors: -EBADMSG malformed or corrupt blob; -EINVAL dst_len differs from
 * the decoded size; -ENOMEM. */
int tcz_lossless_decode(tcz_lossless_ctx *ctx, const void *src, size_t len,
			void *dst, size_t dst_len);

/* ---- one block at a time ------------------------------------------------
 * A planes-mode blob is a sequence of blocks, each decodable on its own
 * from the blob's prefix (the header and the plane table) and the block's
 * stored bytes: a reader that wants a few KiB of a chunk fetches and
 * decodes just the blocks under them. */

typedef struct tcz_lossless_block {
	size_t data_off; /* the block's stored planes: blob bytes */
	size_t data_len; /*   [data_off, data_off + data_len) */
	size_t dec_off;	 /* its decoded bytes: [dec_off, dec_off + dec_len) */
	size_t dec_len;	 /*   of the decoded output */
} tcz_lossless_block;

/* Length of the prefix (header + plane table) of the blob whose first len
 * (>= 24) bytes are at src.
 * Errors: -ENOTSUP a raw-mode blob (one piece, no blocks); -EBADMSG
 * malformed header. */
int tcz_lossless_prefix_len(const void *src, size_t len, size_t *out);

/* Where block i of the blob with this prefix (exactly its
 * tcz_lossless_prefix_len bytes, header check verified) lies; *nblocks
 * (may be NULL) gets the number of blocks.
 * Errors: -ENOTSUP raw mode; -EBADMSG malformed prefix; -ERANGE i is not
 * a block (*nblocks is still set). */
int tcz_lossless_block_at(const void *prefix, size_t plen, size_t i,
			  tcz_lossless_block *b, size_t *nblocks);

/* Decodes block i alone: data[0..data_len) are the blob's bytes of the
 * block (tcz_lossless_block_at), dst gets its dec_len bytes. ctx may be
 * NULL. Never reads outside data nor writes outside dst.
 * Errors: as tcz_lossless_block_at; -EINVAL data_len or dst_len is not
 * the block's; -EBADMSG the block does not decode; -ENOMEM. */
int tcz_lossless_decode_block(tcz_lossless_ctx *ctx, const void *prefix,
			      size_t plen, size_t i, const void *data,
			      size_t data_len, void *dst, size_t dst_len);

#endif
