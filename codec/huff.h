/* Canonical Huffman codes over bytes, at most 11 bits per symbol, coded in
 * four interleaved streams (docs/formats.md, "Huffman planes").
 *
 * The lossless codec codes the exponent plane of float chunks with one
 * code per chunk: zstd's literal coder rebuilds a table for every 8 KiB it
 * decodes, which at 16 KiB blocks was a third of the exponent decode time,
 * and its table headers cost more than one shared code per chunk. Pure
 * computation, no allocation. */
#ifndef TCZ_HUFF_H
#define TCZ_HUFF_H
#include <stddef.h>
#include <stdint.h>

#define TCZ_HUFF_MAX_BITS 11
#define TCZ_HUFF_STREAM_HDR 6 /* three u16 stream lengths */

/* A code: the bit length of each byte value (0: absent). One present
 * symbol gets length 0 and costs no bits. */
typedef struct tcz_huff_code {
	uint8_t len[256];
	uint16_t bits[256]; /* code, bit-reversed: first bit lowest */
	uint8_t first, last; /* present symbols lie in [first, last] */
	uint16_t nsym;	     /* number of present symbols, >= 1 */
} tcz_huff_code;

/* Decoding tables built from a code (13 KiB; build once per code). */
typedef struct tcz_huff_dtable {
	uint16_t one[1u << TCZ_HUFF_MAX_BITS];	 /* symbol | length << 8 */
	uint32_t multi[1u << TCZ_HUFF_MAX_BITS]; /* bits | count << 6 |
						    symbols << 8 */
	uint8_t single;	   /* 1: one symbol, no bits */
	uint8_t sym;	   /* that symbol */
	uint8_t has_multi; /* multi is built */
	uint8_t bits;	   /* longest code: the tables' index bits */
	uint16_t mask;	   /* 2^bits - 1 */
	uint16_t nsym;	   /* the present symbols by code length: */
	uint8_t lsym[256], llen[256];
	uint16_t lcode[256];
} tcz_huff_dtable;

/* A Huffman code for these symbol counts (at least one non-zero), no
 * code longer than max_bits (8..11: 8 bits always suffice for 256
 * symbols). Errors: -EINVAL all counts are zero, or max_bits. */
int tcz_huff_build(const uint32_t counts[256], unsigned max_bits,
		   tcz_huff_code *c);

/* Bytes of the serialized code (first, last, 4-bit lengths). */
size_t tcz_huff_code_size(const tcz_huff_code *c);
/* Writes the serialized code (tcz_huff_code_size bytes) to dst. */
void tcz_huff_code_write(const tcz_huff_code *c, unsigned char *dst);
/* Reads a serialized code from the len bytes at src; *used gets its size.
 * Errors: -EBADMSG truncated, a length above 11, or lengths that do not
 * form a complete prefix code. */
int tcz_huff_code_read(const unsigned char *src, size_t len, tcz_huff_code *c,
		       size_t *used);
/* The same checks without building the code. Errors: as above. */
int tcz_huff_code_check(const unsigned char *src, size_t len, size_t *used);

/* Codes n symbols, every one present in c, into dst (cap bytes); returns
 * the coded size, or 0 when it does not fit cap or a stream's u16
 * length. */
size_t tcz_huff_encode(const tcz_huff_code *c, const unsigned char *sym,
		       size_t n, unsigned char *dst, size_t cap);

/* Builds the one-symbol table, and the multi-symbol one if multi: that
 * takes ~4x longer and pays from ~16 Ki symbols decoded on. */
void tcz_huff_dtable_build(const tcz_huff_code *c, tcz_huff_dtable *t,
			   int multi);
/* Adds the multi-symbol table to a built one (nothing if it has it). */
void tcz_huff_dtable_multi(tcz_huff_dtable *t);
/* Decodes exactly n symbols from the z bytes at src into dst. Never reads
 * outside [src, src+z) nor writes outside [dst, dst+n).
 * Errors: -EBADMSG the streams do not hold exactly n symbols of this
 * code (lengths, overrun, trailing bytes or non-zero padding bits). */
int tcz_huff_decode(const tcz_huff_dtable *t, const unsigned char *src,
		    size_t z, unsigned char *dst, size_t n);
#endif
