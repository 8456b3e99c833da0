/* Huffman planes (codec/huff.c): exact round trips, codes within a bit
 * of the entropy, the 11-bit limit on skewed counts, the lone-symbol
 * code, the serialized code's checks, and damaged streams refused
 * without reads or writes outside the buffers (ASan). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/huff.h"

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

/* n symbols, geometric with ratio r from symbol base on */
static void geometric(unsigned char *p, size_t n, double r, unsigned base)
{
	for (size_t i = 0; i < n; i++) {
		unsigned s = 0;
		while ((double)(rnd() >> 11) * 0x1p-53 < r && s < 40)
			s++;
		p[i] = (unsigned char)(base + s);
	}
}

/* Encodes, decodes with both tables into exact-size buffers; returns
 * the coded size. */
static size_t round_trip(const unsigned char *p, size_t n, unsigned bits,
			 tcz_huff_code *c)
{
	uint32_t cnt[256] = {0};
	for (size_t i = 0; i < n; i++)
		cnt[p[i]]++;
	assert_int_equal(tcz_huff_build(cnt, bits, c), 0);
	size_t cap = n * 2 + 64;
	unsigned char *z = malloc(cap);
	assert_non_null(z);
	size_t got = tcz_huff_encode(c, p, n, z, cap);
	assert_true(got >= TCZ_HUFF_STREAM_HDR);
	unsigned char *exact = malloc(got), *out = malloc(n ? n : 1);
	assert_non_null(exact);
	assert_non_null(out);
	memcpy(exact, z, got);
	tcz_huff_dtable *t = malloc(sizeof *t);
	assert_non_null(t);
	for (int multi = 0; multi < 2; multi++) {
		tcz_huff_dtable_build(c, t, multi);
		memset(out, 0xa5, n);
		assert_int_equal(tcz_huff_decode(t, exact, got, out, n), 0);
		assert_memory_equal(out, p, n);
	}
	free(t);
	free(out);
	free(exact);
	free(z);
	return got;
}

static void kraft_complete(const tcz_huff_code *c, unsigned bits)
{
	uint32_t k = 0;
	unsigned present = 0;
	for (unsigned s = 0; s < 256; s++) {
		assert_true(c->len[s] <= bits);
		if (c->len[s]) {
			k += 1u << (TCZ_HUFF_MAX_BITS - c->len[s]);
			present++;
		}
	}
	if (present > 1)
		assert_int_equal(k, 1u << TCZ_HUFF_MAX_BITS);
}

static void round_trips_near_entropy(void **state)
{
	(void)state;
	const size_t ns[] = {1, 2, 3, 4, 5, 17, 1000, 8192, 65536};
	const double rs[] = {0.1, 0.5, 0.7};
	tcz_huff_code c;
	for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
		for (size_t b = 0; b < sizeof rs / sizeof *rs; b++) {
			size_t n = ns[a];
			unsigned char *p = malloc(n);
			assert_non_null(p);
			geometric(p, n, rs[b], 100);
			size_t got = round_trip(p, n, 11, &c);
			kraft_complete(&c, 11);
			/* empirical entropy: a Huffman code is within one
			 * bit per symbol of it; + 4 bytes of stream ends */
			uint32_t cnt[256] = {0};
			for (size_t i = 0; i < n; i++)
				cnt[p[i]]++;
			double h = 0;
			for (unsigned s = 0; s < 256; s++)
				if (cnt[s])
					h -= cnt[s] * log2((double)cnt[s] / n);
			double bytes = (double)(got - TCZ_HUFF_STREAM_HDR);
			assert_true(bytes >= floor(h / 8));
			assert_true(bytes <= (h + n) / 8 + 4);
			free(p);
		}
	/* all 256 values equally often: 8 bits each, exactly */
	unsigned char u[4096];
	for (size_t i = 0; i < sizeof u; i++)
		u[i] = (unsigned char)i;
	assert_int_equal(round_trip(u, sizeof u, 11, &c),
			 TCZ_HUFF_STREAM_HDR + sizeof u);
	assert_int_equal(c.first, 0);
	assert_int_equal(c.last, 255);
	assert_int_equal(c.nsym, 256);
}

/* Counts 1, 1, 2, 3, 5, 8, ... over 22 symbols: the unlimited Huffman
 * code goes 21 deep; a limit of 8 to 11 bits holds, the code stays
 * complete, and the decoder's tables of 2^limit entries decode it. */
static void length_limit(void **state)
{
	(void)state;
	uint32_t f[22] = {1, 1};
	size_t n = 2;
	for (int i = 2; i < 22; i++)
		n += f[i] = f[i - 1] + f[i - 2];
	unsigned char *p = malloc(n);
	assert_non_null(p);
	size_t at = 0;
	for (int i = 0; i < 22; i++)
		for (uint32_t k = 0; k < f[i]; k++)
			p[at++] = (unsigned char)(10 + i);
	assert_int_equal(at, n);
	tcz_huff_code c;
	for (unsigned bits = 8; bits <= TCZ_HUFF_MAX_BITS; bits++) {
		round_trip(p, n, bits, &c);
		kraft_complete(&c, bits);
		unsigned mx = 0;
		for (unsigned s = 0; s < 256; s++)
			mx = c.len[s] > mx ? c.len[s] : mx;
		assert_int_equal(mx, bits); /* 21 without the limit */
		assert_int_equal(c.nsym, 22);
	}
	uint32_t cnt[256] = {1};
	assert_int_equal(tcz_huff_build(cnt, 7, &c), -EINVAL);
	assert_int_equal(tcz_huff_build(cnt, 12, &c), -EINVAL);
	free(p);
}

static void lone_symbol(void **state)
{
	(void)state;
	unsigned char p[1000], z[64], out[1000];
	memset(p, 7, sizeof p);
	tcz_huff_code c;
	assert_int_equal(round_trip(p, sizeof p, 11, &c), TCZ_HUFF_STREAM_HDR);
	assert_int_equal(c.len[7], 0);
	assert_int_equal(tcz_huff_code_size(&c), 3);
	tcz_huff_code_write(&c, z);
	assert_memory_equal(z, "\x07\x07\x00", 3);
	tcz_huff_dtable t;
	tcz_huff_dtable_build(&c, &t, 1);
	/* a lone-symbol code with stream bytes behind it */
	memcpy(z, "\x01\x00\x00\x00\x00\x00\xff", 7);
	assert_int_equal(tcz_huff_decode(&t, z, 7, out, sizeof out), -EBADMSG);
	uint32_t zero[256] = {0};
	assert_int_equal(tcz_huff_build(zero, 11, &c), -EINVAL);
}

static void serialized_code_checks(void **state)
{
	(void)state;
	tcz_huff_code c;
	size_t used;
	/* symbols 3..5 with lengths 1, 2, 2: complete */
	assert_int_equal(tcz_huff_code_read((const unsigned char *)"\x03\x05\x21\x02",
					    4, &c, &used),
			 0);
	assert_int_equal(used, 4);
	assert_int_equal(c.nsym, 3);
	/* canonical (RFC 1951): 3 -> 0, 4 -> 10, 5 -> 11, stored reversed */
	assert_int_equal(c.bits[3], 0);
	assert_int_equal(c.bits[4], 1);
	assert_int_equal(c.bits[5], 3);
	const char *bad[] = {
		"\x03\x05\x22\x02", /* 2, 2, 2: Kraft sum 3/4 */
		"\x03\x05\x11\x01", /* 1, 1, 1: over-full */
		"\x03\x05\x20\x02", /* first symbol absent */
		"\x03\x05\x21\x00", /* last symbol absent */
		"\x03\x05\x21\x12", /* padding nibble not zero */
		"\x03\x05\x2c\x02", /* a length above 11 */
		"\x05\x03\x21\x02", /* first > last */
		"\x04\x04\x01\x00", /* a lone symbol with a length */
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_int_equal(tcz_huff_code_read((const unsigned char *)bad[i],
						    4, &c, &used),
				 -EBADMSG);
	assert_int_equal(tcz_huff_code_read((const unsigned char *)"\x03\x05\x21",
					    3, &c, &used),
			 -EBADMSG); /* truncated */
}

/* Every byte of a coded block flipped in turn, and every shorter length:
 * 0 or -EBADMSG, in bounds; the truncations must all fail. */
static void damaged_streams(void **state)
{
	(void)state;
	enum { N = 3001 };
	unsigned char p[N], z[2 * N], out[N];
	geometric(p, N, 0.6, 120);
	tcz_huff_code c;
	uint32_t cnt[256] = {0};
	for (size_t i = 0; i < N; i++)
		cnt[p[i]]++;
	assert_int_equal(tcz_huff_build(cnt, 11, &c), 0);
	size_t got = tcz_huff_encode(&c, p, N, z, sizeof z);
	assert_true(got > 0);
	tcz_huff_dtable *t = malloc(sizeof *t);
	assert_non_null(t);
	for (int multi = 0; multi < 2; multi++) {
		tcz_huff_dtable_build(&c, t, multi);
		for (size_t l = 0; l < got; l++) {
			unsigned char *x = malloc(l ? l : 1);
			assert_non_null(x);
			memcpy(x, z, l);
			assert_int_equal(tcz_huff_decode(t, x, l, out, N),
					 -EBADMSG);
			free(x);
		}
		unsigned char *x = malloc(got);
		assert_non_null(x);
		for (size_t k = 0; k < got; k++) {
			memcpy(x, z, got);
			x[k] ^= (unsigned char)(1 + rnd() % 255);
			int rc = tcz_huff_decode(t, x, got, out, N);
			assert_true(rc == 0 || rc == -EBADMSG);
		}
		free(x);
	}
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trips_near_entropy),
		cmocka_unit_test(length_limit),
		cmocka_unit_test(lone_symbol),
		cmocka_unit_test(serialized_code_checks),
		cmocka_unit_test(damaged_streams),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
