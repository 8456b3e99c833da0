/* Bit-packing: the fast paths against the one-bit-at-a-time reference on
 * random data of many lengths for every width, a few streams written out
 * by hand from the bit-order rule, and the error contract. Buffers are
 * allocated at their exact size so ASan catches any access past them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/bitpack.h"

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static const size_t lengths[] = {0,  1,  2,   3,   5,   7,    8,    9,
				 15, 16, 17,  31,  33,  63,   64,   65,
				 99, 127, 1000, 1023, 1031, 4096, 65537};

static void size_formula(void **state)
{
	(void)state;
	for (unsigned b = 1; b <= 8; b++)
		for (size_t i = 0; i < sizeof(lengths) / sizeof(*lengths); i++) {
			uint64_t n = lengths[i];
			assert_int_equal(tcz_bitpack_size(n, b), (n * b + 7) / 8);
		}
	assert_int_equal(tcz_bitpack_size(10, 0), 0);
	assert_int_equal(tcz_bitpack_size(10, 9), 0);
	/* no overflow at the top of size_t: 8-bit codes are one byte each */
	assert_int_equal(tcz_bitpack_size(SIZE_MAX, 8), SIZE_MAX);
	assert_int_equal(tcz_bitpack_size(SIZE_MAX, 1), SIZE_MAX / 8 + 1);
}

static void fast_matches_reference(void **state)
{
	(void)state;
	for (unsigned b = 1; b <= 8; b++) {
		for (size_t li = 0; li < sizeof(lengths) / sizeof(*lengths);
		     li++) {
			size_t n = lengths[li], len = tcz_bitpack_size(n, b);
			uint8_t *codes = malloc(n + 1), *back = malloc(n + 1);
			unsigned char *fast = malloc(len + 1);
			unsigned char *ref = malloc(len + 1);
			assert_true(codes && back && fast && ref);
			for (size_t i = 0; i < n; i++)
				codes[i] = (uint8_t)(next() & ((1u << b) - 1));
			/* garbage first: every byte must be written */
			memset(fast, 0xa5, len + 1);
			memset(ref, 0x5a, len + 1);
			assert_int_equal(tcz_bitpack_pack(codes, n, b, fast, len), 0);
			assert_int_equal(tcz_bitpack_pack_ref(codes, n, b, ref, len), 0);
			assert_memory_equal(fast, ref, len);
			assert_int_equal(fast[len], 0xa5); /* nothing past it */
			if ((n * b) % 8)
				assert_int_equal(fast[len - 1] >> ((n * b) % 8), 0);

			memset(back, 0xee, n + 1);
			assert_int_equal(tcz_bitpack_unpack(fast, len, n, b, back), 0);
			assert_memory_equal(back, codes, n);
			assert_int_equal(back[n], 0xee);
			memset(back, 0xee, n + 1);
			assert_int_equal(tcz_bitpack_unpack_ref(ref, len, n, b, back), 0);
			assert_memory_equal(back, codes, n);

			/* arbitrary streams (random padding bits included)
			 * unpack alike, from a buffer of exactly len bytes */
			unsigned char *raw = malloc(len ? len : 1);
			assert_non_null(raw);
			for (size_t i = 0; i < len; i++)
				raw[i] = (unsigned char)next();
			assert_int_equal(tcz_bitpack_unpack(raw, len, n, b, back), 0);
			assert_int_equal(tcz_bitpack_unpack_ref(raw, len, n, b, codes), 0);
			assert_memory_equal(back, codes, n);
			free(raw);
			free(codes);
			free(back);
			free(fast);
			free(ref);
		}
	}
}

/* Streams derived by hand: code i occupies bits [i*B, (i+1)*B), LSB
 * first. */
static void hand_streams(void **state)
{
	(void)state;
	unsigned char out[8];
	/* 3 bits: 1,2,3,4,5,6,7,0 -> 0x1f58d1 (1 + 2<<3 + 3<<6 + ... + 7<<18) */
	const uint8_t c3[8] = {1, 2, 3, 4, 5, 6, 7, 0};
	const unsigned char s3[3] = {0xd1, 0x58, 0x1f};
	assert_int_equal(tcz_bitpack_pack(c3, 8, 3, out, 3), 0);
	assert_memory_equal(out, s3, 3);
	/* 5 bits: 31, 1, 16 -> 11111 10000 00001 = 0x403f in 15 bits */
	const uint8_t c5[3] = {31, 1, 16};
	const unsigned char s5[2] = {0x3f, 0x40};
	assert_int_equal(tcz_bitpack_pack(c5, 3, 5, out, 2), 0);
	assert_memory_equal(out, s5, 2);
	/* 7 bits: 0x7f, 0x01 -> bits 0-6 set, bit 7 set -> 0xff, 0x00 */
	const uint8_t c7[2] = {0x7f, 0x01};
	const unsigned char s7[2] = {0xff, 0x00};
	assert_int_equal(tcz_bitpack_pack(c7, 2, 7, out, 2), 0);
	assert_memory_equal(out, s7, 2);
	/* 4 bits: low nibble first */
	const uint8_t c4[3] = {0x1, 0xf, 0x7};
	const unsigned char s4[2] = {0xf1, 0x07};
	assert_int_equal(tcz_bitpack_pack(c4, 3, 4, out, 2), 0);
	assert_memory_equal(out, s4, 2);
	/* 1 bit: 1,0,1,1,0,0,0,0,1 -> 0x0d, 0x01 */
	const uint8_t c1[9] = {1, 0, 1, 1, 0, 0, 0, 0, 1};
	const unsigned char s1[2] = {0x0d, 0x01};
	assert_int_equal(tcz_bitpack_pack(c1, 9, 1, out, 2), 0);
	assert_memory_equal(out, s1, 2);
	uint8_t back[9];
	assert_int_equal(tcz_bitpack_unpack(s1, 2, 9, 1, back), 0);
	assert_memory_equal(back, c1, 9);
	assert_int_equal(tcz_bitpack_unpack(s3, 3, 8, 3, back), 0);
	assert_memory_equal(back, c3, 8);
}

static void errors(void **state)
{
	(void)state;
	uint8_t codes[16] = {0}, back[16];
	unsigned char buf[16];
	for (int ref = 0; ref < 2; ref++) {
		int (*pack)(const uint8_t *, size_t, unsigned, void *, size_t) =
			ref ? tcz_bitpack_pack_ref : tcz_bitpack_pack;
		int (*unpack)(const void *, size_t, size_t, unsigned, uint8_t *) =
			ref ? tcz_bitpack_unpack_ref : tcz_bitpack_unpack;
		assert_int_equal(pack(codes, 16, 0, buf, 16), -EINVAL);
		assert_int_equal(pack(codes, 16, 9, buf, 16), -EINVAL);
		assert_int_equal(unpack(buf, 16, 16, 0, back), -EINVAL);
		assert_int_equal(unpack(buf, 16, 16, 9, back), -EINVAL);
		/* 16 codes of 5 bits need 10 bytes */
		assert_int_equal(pack(codes, 16, 5, buf, 9), -ENOBUFS);
		assert_int_equal(unpack(buf, 9, 16, 5, back), -EMSGSIZE);
		assert_int_equal(pack(codes, 16, 5, buf, 10), 0);
		for (unsigned b = 1; b < 8; b++) {
			codes[13] = (uint8_t)(1u << b);
			assert_int_equal(pack(codes, 16, b, buf, 16), -ERANGE);
			codes[13] = 0;
			/* in the tail, past the last full block of 8 */
			codes[14] = (uint8_t)(1u << b);
			assert_int_equal(pack(codes, 15, b, buf, 16), -ERANGE);
			codes[14] = 0;
		}
		assert_int_equal(pack(NULL, 0, 3, NULL, 0), 0);
		assert_int_equal(unpack(NULL, 0, 0, 3, NULL), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(size_formula),
		cmocka_unit_test(fast_matches_reference),
		cmocka_unit_test(hand_streams),
		cmocka_unit_test(errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
