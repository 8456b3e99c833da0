#include "codec/bitpack.h"

#include <errno.h>
#include <string.h>

/* The build refuses big-endian hosts, so a uint64_t copied to or from
 * memory is the little-endian bitstream word we want. */

size_t tcz_bitpack_size(size_t n, unsigned bits)
{
	if (bits < 1 || bits > 8)
		return 0;
	/* (n/8)*bits <= n, so this cannot overflow for any n */
	return (n / 8) * bits + ((n % 8) * bits + 7) / 8;
}

/* Eight codes fill exactly `bits` bytes, so every block of 8 starts on a
 * byte boundary: merge the block into the low 8*bits bits of a 64-bit word
 * and store the word's low `bits` bytes. Always inlined with a constant
 * `bits` (every width gets its own loop: 4 bits is the nibble case), so
 * the shifts, masks and memcpy lengths are immediates. */
static inline __attribute__((always_inline)) int
pack_b(const uint8_t *c, size_t n, unsigned bits, unsigned char *d)
{
	size_t i = 0;
	unsigned seen = 0;

	if (bits == 8) {
		memcpy(d, c, n);
		return 0;
	}
	/* SWAR: the 8 codes of a block, one per byte of a word, are merged
	 * pairwise into 16-, 32- and then 64-bit fields. */
	uint64_t wide = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, c + i, 8);
		wide |= w;
		w = (w & 0x00ff00ff00ff00ffu) |
		    ((w & 0xff00ff00ff00ff00u) >> (8 - bits));
		w = (w & 0x0000ffff0000ffffu) |
		    ((w & 0xffff0000ffff0000u) >> (16 - 2 * bits));
		w = (w & 0xffffffffu) | ((w >> 32) << (4 * bits));
		memcpy(d, &w, bits);
		d += bits;
	}
	if (wide & ~(((1u << bits) - 1) * 0x0101010101010101u))
		return -ERANGE;
	if (i < n) {
		uint64_t acc = 0;
		size_t rem = n - i;
		for (unsigned k = 0; k < rem; k++) {
			seen |= c[i + k];
			acc |= (uint64_t)c[i + k] << (k * bits);
		}
		memcpy(d, &acc, (rem * bits + 7) / 8);
	}
	return (seen >> bits) ? -ERANGE : 0;
}

/* The inverse of the merge in pack_b: the low 8*bits bits of w, split
 * into 8 codes, one per byte (halves, then quarters, then eighths). */
static inline __attribute__((always_inline)) uint64_t
spread8(uint64_t w, unsigned bits)
{
	const uint64_t m4 = (1ull << (4 * bits)) - 1;
	const uint64_t m2 = ((1ull << (2 * bits)) - 1) * 0x0000000100000001u;
	const uint64_t m1 = ((1ull << bits) - 1) * 0x0001000100010001u;
	w = (w & m4) | (((w >> (4 * bits)) & m4) << 32);
	w = (w & m2) | (((w >> (2 * bits)) & m2) << 16);
	w = (w & m1) | (((w >> bits) & m1) << 8);
	return w;
}

static inline __attribute__((always_inline)) void
unpack_b(const unsigned char *s, size_t n, unsigned bits, uint8_t *c)
{
	const uint64_t mask = (1u << bits) - 1;
	size_t i = 0;

	if (bits == 8) {
		memcpy(c, s, n);
		return;
	}
	/* While at least 8 bytes remain a full-word load is in bounds and
	 * cheaper than a `bits`-byte one; the excess bytes are ignored. */
	size_t full = n / 8, len = tcz_bitpack_size(n, bits);
	size_t wide = len >= 8 ? (len - 8) / bits + 1 : 0;
	if (wide > full)
		wide = full;
	for (size_t b = 0; b < wide; b++, i += 8) {
		uint64_t w;
		memcpy(&w, s, 8);
		s += bits;
		w = spread8(w, bits);
		memcpy(c + i, &w, 8);
	}
	for (; i + 8 <= n; i += 8) {
		uint64_t w = 0;
		memcpy(&w, s, bits);
		s += bits;
		w = spread8(w, bits);
		memcpy(c + i, &w, 8);
	}
	if (i < n) {
		uint64_t acc = 0;
		size_t rem = n - i;
		memcpy(&acc, s, (rem * bits + 7) / 8);
		for (unsigned k = 0; k < rem; k++)
			c[i + k] = (uint8_t)((acc >> (k * bits)) & mask);
	}
}

int tcz_bitpack_pack(const uint8_t *codes, size_t n, unsigned bits,
		     void *dst, size_t dst_len)
{
	if (bits < 1 || bits > 8)
		return -EINVAL;
	if (dst_len < tcz_bitpack_size(n, bits))
		return -ENOBUFS;
	if (n == 0)
		return 0;
	switch (bits) {
	case 1: return pack_b(codes, n, 1, dst);
	case 2: return pack_b(codes, n, 2, dst);
	case 3: return pack_b(codes, n, 3, dst);
	case 4: return pack_b(codes, n, 4, dst);
	case 5: return pack_b(codes, n, 5, dst);
	case 6: return pack_b(codes, n, 6, dst);
	case 7: return pack_b(codes, n, 7, dst);
	default: return pack_b(codes, n, 8, dst);
	}
}

int tcz_bitpack_unpack(const void *src, size_t src_len, size_t n,
		       unsigned bits, uint8_t *codes)
{
	if (bits < 1 || bits > 8)
		return -EINVAL;
	if (src_len < tcz_bitpack_size(n, bits))
		return -EMSGSIZE;
	if (n == 0)
		return 0;
	switch (bits) {
	case 1: unpack_b(src, n, 1, codes); break;
	case 2: unpack_b(src, n, 2, codes); break;
	case 3: unpack_b(src, n, 3, codes); break;
	case 4: unpack_b(src, n, 4, codes); break;
	case 5: unpack_b(src, n, 5, codes); break;
	case 6: unpack_b(src, n, 6, codes); break;
	case 7: unpack_b(src, n, 7, codes); break;
	default: unpack_b(src, n, 8, codes); break;
	}
	return 0;
}

int tcz_bitpack_pack_ref(const uint8_t *codes, size_t n, unsigned bits,
			 void *dst, size_t dst_len)
{
	if (bits < 1 || bits > 8)
		return -EINVAL;
	size_t len = tcz_bitpack_size(n, bits);
	if (dst_len < len)
		return -ENOBUFS;
	unsigned char *d = dst;
	if (len)
		memset(d, 0, len);
	for (size_t i = 0; i < n; i++) {
		if (codes[i] >> bits)
			return -ERANGE;
		for (unsigned b = 0; b < bits; b++) {
			size_t pos = i * bits + b;
			if ((codes[i] >> b) & 1)
				d[pos / 8] |= (unsigned char)(1u << (pos % 8));
		}
	}
	return 0;
}

int tcz_bitpack_unpack_ref(const void *src, size_t src_len, size_t n,
			   unsigned bits, uint8_t *codes)
{
	if (bits < 1 || bits > 8)
		return -EINVAL;
	if (src_len < tcz_bitpack_size(n, bits))
		return -EMSGSIZE;
	const unsigned char *s = src;
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;
		for (unsigned b = 0; b < bits; b++) {
			size_t pos = i * bits + b;
			v |= (unsigned)((s[pos / 8] >> (pos % 8)) & 1) << b;
		}
		codes[i] = (uint8_t)v;
	}
	return 0;
}
