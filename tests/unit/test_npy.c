/* .npy headers: byte-identical to what numpy.save writes (the literals
 * below are numpy 1.24's output), and strict parsing of imports. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/npy.h"

static void check_header(tcz_dtype dt, uint32_t nd, const uint64_t *shape,
			 const char *dict)
{
	char h[1024], want[256];
	size_t len;
	assert_int_equal(tcz_npy_header(dt, nd, shape, h, sizeof h, &len), 0);
	/* numpy: magic, version 1.0, u16 length, dict, spaces, newline,
	 * total a multiple of 64 */
	assert_int_equal(len, 128);
	assert_memory_equal(h, "\x93NUMPY\x01\x00\x76\x00", 10);
	memset(want, ' ', sizeof want);
	memcpy(want, dict, strlen(dict));
	want[117] = '\n';
	assert_memory_equal(h + 10, want, 118);
}

static void matches_numpy(void **state)
{
	(void)state;
	uint64_t s34[2] = {3, 4}, s5[1] = {5}, s207[3] = {2, 0, 7},
		 s12[2] = {1, 2};
	check_header(TCZ_DT_F32, 2, s34,
		     "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }");
	check_header(TCZ_DT_I64, 1, s5,
		     "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }");
	check_header(TCZ_DT_F16, 0, NULL,
		     "{'descr': '<f2', 'fortran_order': False, 'shape': (), }");
	check_header(TCZ_DT_U8, 3, s207,
		     "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 0, 7), }");
	check_header(TCZ_DT_BOOL, 2, s12,
		     "{'descr': '|b1', 'fortran_order': False, 'shape': (1, 2), }");
	/* BF16 is presented widened to f32 */
	check_header(TCZ_DT_BF16, 2, s34,
		     "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }");
}

static void long_shapes_stay_aligned(void **state)
{
	(void)state;
	uint64_t s[32];
	for (int i = 0; i < 32; i++)
		s[i] = 18446744073709551615ull;
	char h[1024];
	size_t len;
	assert_int_equal(tcz_npy_header(TCZ_DT_F64, 32, s, h, sizeof h, &len), 0);
	assert_int_equal(len % 64, 0);
	assert_int_equal(h[len - 1], '\n');
	assert_int_equal((size_t)(unsigned char)h[8] |
				 (size_t)(unsigned char)h[9] << 8,
			 len - 10);
	assert_int_equal(tcz_npy_header(TCZ_DT_F64, 32, s, h, 100, &len),
			 -ENOBUFS);
}

static size_t make(unsigned char *buf, const char *dict, size_t data)
{
	size_t dl = strlen(dict), hl = (10 + dl + 1 + 63) / 64 * 64 - 10;
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	buf[8] = (unsigned char)hl;
	buf[9] = (unsigned char)(hl >> 8);
	memset(buf + 10, ' ', hl);
	memcpy(buf + 10, dict, dl);
	buf[10 + hl - 1] = '\n';
	memset(buf + 10 + hl, 0, data);
	return 10 + hl + data;
}

static void parse(void **state)
{
	(void)state;
	unsigned char b[4096];
	tcz_npy_info in;
	char err[256];
	size_t n = make(b, "{'descr': '<f4', 'fortran_order': False, "
			   "'shape': (3, 4), }", 48);
	assert_int_equal(tcz_npy_parse(b, n, &in, err, sizeof err), 0);
	assert_int_equal(in.dtype, TCZ_DT_F32);
	assert_int_equal(in.ndim, 2);
	assert_int_equal(in.numel, 12);
	assert_int_equal(in.data_offset, 128);
	/* key order is free, 1-tuples and scalars work */
	n = make(b, "{'shape': (7,), 'fortran_order': False, 'descr': '|u1'}", 7);
	assert_int_equal(tcz_npy_parse(b, n, &in, err, sizeof err), 0);
	assert_int_equal(in.numel, 7);
	n = make(b, "{'descr': '<i2', 'fortran_order': True, 'shape': (), }", 2);
	assert_int_equal(tcz_npy_parse(b, n, &in, err, sizeof err), 0);

	static const struct {
		const char *dict;
		size_t data;
		const char *msg;
	} bad[] = {
		{"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8,
		 "big-endian"},
		{"{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16,
		 "unsupported dtype"},
		{"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16,
		 "Fortran"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 8,
		 "truncated"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 8,
		 "needs 4"},
		{"{'descr': '<f4', 'shape': (1,), }", 4, "lacks"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
		 4, "unexpected"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (a,), }", 4,
		 "shape"},
		{"{'descr': '<f8', 'fortran_order': False, "
		 "'shape': (4294967296, 4294967296), }",
		 0, "overflows"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		n = make(b, bad[i].dict, bad[i].data);
		err[0] = 0;
		assert_int_equal(tcz_npy_parse(b, n, &in, err, sizeof err),
				 -EBADMSG);
		if (!strstr(err, bad[i].msg))
			fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].msg);
	}
	assert_int_equal(tcz_npy_parse("\x93NUMPX", 6, &in, err, sizeof err),
			 -EBADMSG);
	/* every truncation of a valid file fails cleanly */
	n = make(b, "{'descr': '<f4', 'fortran_order': False, "
		    "'shape': (3, 4), }", 48);
	for (size_t cut = 0; cut < n; cut++) {
		unsigned char *c = malloc(cut + 1);
		memcpy(c, b, cut);
		assert_int_equal(tcz_npy_parse(c, cut, &in, err, sizeof err),
				 -EBADMSG);
		free(c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(matches_numpy),
		cmocka_unit_test(long_shapes_stay_aligned),
		cmocka_unit_test(parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
