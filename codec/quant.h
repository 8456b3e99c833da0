/* Groupwise symmetric quantization (SPEC section 5).
 *
 * Per group of group_len values: qmax = 2^(B-1)-1, scale = max|v|/qmax
 * rounded to f16, q = clamp(round(v/scale), -qmax, qmax), stored as
 * u = q + qmax in a tcz_bitpack bitstream. Decoding gives v' = q * scale.
 * When some group's scale is not representable in f16 (overflows to inf,
 * or a nonzero scale that f16 would flush to zero or to a subnormal whose
 * relative error exceeds f16's normal precision) the whole blob uses f32
 * scales, flagged in its header. A group of zeros has scale 0 and decodes
 * to zeros.
 *
 * A quantized blob (all little-endian) is self-describing; its layout is
 * documented in docs/formats.md. */
#ifndef TCZ_QUANT_H
#define TCZ_QUANT_H

#include <stddef.h>
#include <stdint.h>

#define TCZ_QUANT_GROUP_DEFAULT 64u
#define TCZ_QUANT_BITS_MIN 3u
#define TCZ_QUANT_BITS_MAX 8u

typedef struct tcz_quant_params {
	unsigned bits;      /* 3..8 */
	uint32_t group_len; /* >= 1; TCZ_QUANT_GROUP_DEFAULT usually */
} tcz_quant_params;

/* Largest blob tcz_quant_encode can produce for n values (f32 scales
 * included); 0 when the parameters are invalid or the size overflows. */
size_t tcz_quant_bound(size_t n, const tcz_quant_params *p);

/* Quantizes n finite f32 values into dst.
 * Errors: -EINVAL bad parameters; -EDOM a NaN or infinity in src;
 * -ENOBUFS dst_cap too small (tcz_quant_bound is always enough). */
int tcz_quant_encode(const float *src, size_t n, const tcz_quant_params *p,
		     void *dst, size_t dst_cap, size_t *out_len);

/* Reads a blob's parameters and value count without decoding.
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

/* Encoded size in bytes for n values, f16 scales, without building it
 * (header + scales + packed codes); 0 on invalid parameters. */
size_t tcz_quant_size(size_t n, const tcz_quant_params *p);

#endif
