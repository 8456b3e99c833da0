/* Packing of B-bit codes (1 <= B <= 8) into a little-endian bitstream:
 * code i occupies bits [i*B, (i+1)*B) of the stream, least significant bit
 * first, no padding between codes; the last byte's unused high bits are 0.
 * (SPEC section 5: a 64-bit accumulator filled from the low end.)
 * Packed size is ceil(n*B/8) bytes. */
#ifndef TCZ_BITPACK_H
#define TCZ_BITPACK_H

#include <stddef.h>
#include <stdint.h>

/* ceil(n*bits/8); 0 when bits is outside 1..8 or the size overflows. */
size_t tcz_bitpack_size(size_t n, unsigned bits);

/* Packs n codes, each < 2^bits, into dst (dst_len >= tcz_bitpack_size).
 * Uses a fast path for 3, 4, 5, 7 and 8 bits.
 * Errors: -EINVAL bits outside 1..8; -ENOBUFS dst too small; -ERANGE a
 * code does not fit in `bits` (dst contents are then unspecified). */
int tcz_bitpack_pack(const uint8_t *codes, size_t n, unsigned bits,
		     void *dst, size_t dst_len);

/* Unpacks n codes from src (src_len >= tcz_bitpack_size). Never reads
 * past src + tcz_bitpack_size(n, bits).
 * Errors: -EINVAL bits outside 1..8; -EMSGSIZE src too short. */
int tcz_bitpack_unpack(const void *src, size_t src_len, size_t n,
		       unsigned bits, uint8_t *codes);

/* Reference scalar implementations (one bit at a time) with the same
 * contract; the tests compare the fast paths against them. */
int tcz_bitpack_pack_ref(const uint8_t *codes, size_t n, unsigned bits,
			 void *dst, size_t dst_len);
int tcz_bitpack_unpack_ref(const void *src, size_t src_len, size_t n,
			   unsigned bits, uint8_t *codes);

#endif
