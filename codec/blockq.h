/* Lossless coder for runs of whole blocks of one ggml block-quantized type
 * (GGUF Q-type tensors, stored exactly).
 *
 * Each block is cut into its fields (f16 scales byte by byte, sub-block
 * scales, high bits, packed quants), every field gathered over all blocks
 * into a plane, and each plane zstd-coded or kept raw. Per call the
 * smallest of three blobs is kept: planes, one zstd frame of the bytes as
 * they are, or the bytes raw. Exact bytes come back for any input of whole
 * blocks, including none.
 *
 * The blob layout (versioned, self-describing) and each type's planes are
 * documented in docs/draft-gguf.md. */
#ifndef TCZ_BLOCKQ_H
#define TCZ_BLOCKQ_H

#include <stddef.h>
#include <stdint.h>

/* Reusable zstd contexts and scratch space; one per thread. */
typedef struct tcz_blockq_ctx tcz_blockq_ctx;

/* Returns NULL when out of memory. */
tcz_blockq_ctx *tcz_blockq_ctx_create(void);
void tcz_blockq_ctx_free(tcz_blockq_ctx *ctx); /* NULL is fine */

/* Largest blob tcz_blockq_encode can produce for n_blocks blocks of
 * `type`; 0 when the type is not a block type or the size overflows. */
size_t tcz_blockq_bound(uint32_t type, size_t n_blocks);

/* Encodes n_blocks blocks of ggml type `type` (tcz_ggml_is_block) at src
 * (n_blocks * block_bytes bytes). ctx may be NULL (a temporary one is
 * made). level is a zstd level (1..22).
 * Errors: -EINVAL not a block type, bad level, NULL pointers;
 * -ENOBUFS dst_cap < tcz_blockq_bound(type, n_blocks); -ENOMEM. */
int tcz_blockq_encode(tcz_blockq_ctx *ctx, uint32_t type, const void *src,
		      size_t n_blocks, int level, void *dst, size_t dst_cap,
		      size_t *out_len);

/* Modes of a blob; tcz_blockq_encode keeps the smallest. */
enum {
	TCZ_BLOCKQ_RAW = 0,
	TCZ_BLOCKQ_ZSTD = 1,
	TCZ_BLOCKQ_PLANES = 2,
	TCZ_BLOCKQ_BEST = -1
};

/* Extra room a forced mode may need past tcz_blockq_bound. */
#define TCZ_BLOCKQ_FORCE_SLACK 96u

/* tcz_blockq_encode with the mode chosen by the caller (for tests and
 * measurements): TCZ_BLOCKQ_BEST is tcz_blockq_encode; a forced mode
 * writes that mode whatever its size (planes and zstd need n_blocks > 0;
 * a forced planes blob keeps each plane raw unless zstd shrinks it), and
 * needs dst_cap >= tcz_blockq_bound + TCZ_BLOCKQ_FORCE_SLACK, plus the
 * zstd bound's margin for TCZ_BLOCKQ_ZSTD (ZSTD_compressBound).
 * Errors: those of tcz_blockq_encode; -EINVAL a bad mode. */
int tcz_blockq_encode_mode(tcz_blockq_ctx *ctx, uint32_t type,
			   const void *src, size_t n_blocks, int level,
			   int mode, void *dst, size_t dst_cap,
			   size_t *out_len);

/* The type and block count a blob records, and its decoded size in bytes.
 * Any of the out pointers may be NULL.
 * Errors: -EBADMSG malformed header or lengths that disagree with len. */
int tcz_blockq_peek(const void *src, size_t len, uint32_t *type,
		    uint64_t *n_blocks, size_t *decoded_len);

/* Decodes a blob into exactly dst_len bytes. Never reads outside
 * [src, src+len) nor writes outside [dst, dst+dst_len).
 * Errors: -EBADMSG malformed or corrupt blob; -EINVAL dst_len differs
 * from the decoded size; -ENOMEM. */
int tcz_blockq_decode(tcz_blockq_ctx *ctx, const void *src, size_t len,
		      void *dst, size_t dst_len);

#endif
