/* Groupwise quantization of f32 weights (SPEC section 5): the quant blob,
 * a self-describing payload whose layouts are versioned and documented in
 * docs/formats.md. Every version ever written keeps decoding.
 *
 * Version 1, flat and symmetric (TQTC's rule): per group of group_len
 * values qmax = 2^(B-1)-1, scale = max|v|/qmax rounded to f16,
 * q = clamp(round(v/scale), -qmax, qmax), stored as u = q + qmax in a
 * tcz_bitpack bitstream; v' = q * scale. When some group's scale is not
 * representable in f16 (overflows to inf, or a nonzero scale that f16
 * would flush to zero or to a subnormal whose relative error exceeds
 * f16's normal precision) the whole blob uses f32 scales, flagged in its
 * header. A group of zeros has scale 0 and decodes to zeros.
 *
 * Version 2 (the default), sub-blocks under super-blocks: sub-blocks of
 * group_len values, K of them per super-block (K = 512 / group_len, at
 * least 1); each super-block has a bf16 super-scale d, each sub-block a
 * 6-bit code c, its step s = d * c. All 2^B codes are levels:
 * v' = (u - (2^(B-1) - 1/2)) * s, u in 0 .. 2^B - 1. The encoder searches
 * the steps for the least squared error, so it clips a few extremes
 * where that pays. Group 16 (group 32 at 8 bits) makes B + 0.41 (8.22)
 * bits per value, below GGUF's nearest block types. */
#ifndef TCZ_QUANT_H
#define TCZ_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* group_len 0: the layout's own group for the width (tcz_quant_group) */
#define TCZ_QUANT_GROUP_DEFAULT 0u
#define TCZ_QUANT_V1_GROUP 64u /* version 1's default group */
#define TCZ_QUANT_BITS_MIN 3u
#define TCZ_QUANT_BITS_MAX 8u
#define TCZ_QUANT_V1 1u
#define TCZ_QUANT_V2 2u

typedef struct tcz_quant_params {
	unsigned bits;      /* 3..8 */
	uint32_t group_len; /* >= 1, or TCZ_QUANT_GROUP_DEFAULT */
	unsigned version;   /* TCZ_QUANT_V1 or _V2; 0 means TCZ_QUANT_V2 */
} tcz_quant_params;

/* The group length p stands for (its own, or the default of its version
 * for its width: 64 for version 1; 32 at 8 bits, else 16, for version 2);
 * 0 when p is invalid. */
uint32_t tcz_quant_group(const tcz_quant_params *p);

/* Largest blob tcz_quant_encode can produce for n values (version 1: f32
 * scales included); 0 when the parameters are invalid or the size
 * overflows. */
size_t tcz_quant_bound(size_t n, const tcz_quant_params *p);

/* Quantizes n finite f32 values into dst, in the layout p->version asks
 * for. Version 2 may clip values above 2^(122-B) in magnitude (it keeps
 * every decoded value finite).
 * Errors: -EINVAL bad parameters; -EDOM a NaN or infinity in src;
 * -ENOBUFS dst_cap too small (tcz_quant_bound is always enough). */
int tcz_quant_encode(const float *src, size_t n, const tcz_quant_params *p,
		     void *dst, size_t dst_cap, size_t *out_len);

/* Reads a blob's parameters (bits, its actual group length, version) and
 * value count without decoding.
 * Errors: -EBADMSG when the header is malformed or lengths disagree with
 * len (the same validation tcz_quant_decode does). */
int tcz_quant_peek(const void *src, size_t len, tcz_quant_params *p,
		   size_t *n);

/* Decodes a blob into exactly n f32 values. Never reads outside
 * [src, src+len).
 * Errors: -EBADMSG malformed blob; -EINVAL n differs from the blob's. */
int tcz_quant_decode(const void *src, size_t len, float *dst, size_t n);

/* Decodes values [first, first+count) of a blob into dst[count]; first
 * must start a group. Never reads outside [src, src+len).
 * Errors: -EBADMSG malformed blob; -EINVAL a range outside the blob or
 * not starting a group. */
int tcz_quant_decode_range(const void *src, size_t len, size_t first,
			   size_t count, float *dst);

/* Encoded size in bytes for n values without building it (version 1:
 * with f16 scales); 0 on invalid parameters. */
size_t tcz_quant_size(size_t n, const tcz_quant_params *p);

#endif
