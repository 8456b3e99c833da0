/* Lossless tensor codec: byte planes + zstd (SPEC section 5).
 *
 * Float elements are rotated left by one bit so that the sign moves below
 * the exponent and the exponent starts the top byte (BF16/F32: the top byte
 * is exactly the exponent), then split into byte planes (all top bytes
 * together, then each lower byte position); other dtypes are split into
 * plain byte planes. Each plane is zstd-coded, or kept raw when coding does
 * not make it smaller; a blob whose coding does not shrink the input at all
 * stores it raw in one piece. Exact bytes come back for every dtype and
 * every length, including 0.
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

#endif
