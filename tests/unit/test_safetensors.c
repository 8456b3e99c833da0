/* The safetensors parser against the regression corpus: every malformed
 * file is refused with the message EXPECT names; valid ones parse to the
 * offsets their headers state. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/safetensors.h"

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc((size_t)n + 1);
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return b;
}

static void corpus(void **state)
{
	(void)state;
	const char *dir = getenv("TCZ_CORPUS_DIR");
	assert_non_null(dir);
	char path[4096], line[512];
	snprintf(path, sizeof path, "%s/safetensors/EXPECT", dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	int cases = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *tab = strchr(line, '\t');
		assert_non_null(tab);
		*tab = 0;
		const char *want = tab + 1;
		snprintf(path, sizeof path, "%s/safetensors/%s", dir, line);
		size_t len = 0;
		unsigned char *buf = slurp(path, &len);
		assert_non_null(buf);
		tcz_st_file st;
		char err[512] = "";
		int rc = tcz_st_parse(buf, len, &st, err, sizeof err);
		if (strcmp(want, "ok") == 0) {
			if (rc)
				fail_msg("%s: refused: %s", line, err);
			tcz_st_free(&st);
		} else {
			if (rc != -EBADMSG)
				fail_msg("%s: accepted (rc %d)", line, rc);
			if (!strstr(err, want))
				fail_msg("%s: message '%s' lacks '%s'", line, err,
					 want);
		}
		free(buf);
		cases++;
	}
	fclose(f);
	assert_true(cases >= 25);
}

static void valid_fields(void **state)
{
	(void)state;
	/* header from the spec's example shape: b after a in the data */
	const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
			"\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
			"\"data_offsets\":[4,8]},"
			"\"a\":{\"dtype\":\"BF16\",\"shape\":[1,2],"
			"\"data_offsets\":[0,4]}}";
	size_t hl = strlen(h);
	unsigned char buf[512];
	memset(buf, 0, sizeof buf);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)(hl >> (8 * i));
	memcpy(buf + 8, h, hl);
	tcz_st_file st;
	char err[256];
	assert_int_equal(tcz_st_parse(buf, 8 + hl + 8, &st, err, sizeof err), 0);
	assert_int_equal(st.n, 2);
	assert_int_equal(st.header_len, hl);
	assert_int_equal(st.data_offset, 8 + hl);
	assert_int_equal(st.data_len, 8);
	assert_string_equal(st.tensors[0].name, "a");
	assert_int_equal(st.tensors[0].dtype, TCZ_DT_BF16);
	assert_int_equal(st.tensors[0].ndim, 2);
	assert_int_equal(st.tensors[0].numel, 2);
	assert_string_equal(st.tensors[1].name, "b");
	assert_int_equal(st.tensors[1].begin, 4);
	assert_string_equal(st.metadata, "{\"format\":\"pt\"}");
	tcz_st_free(&st);
}

/* A built header parses back to the same tensors with contiguous offsets
 * and its length is padded to 8 as the safetensors writer does. */
static void build_round_trip(void **state)
{
	(void)state;
	uint64_t s1[2] = {3, 5}, s2[1] = {7};
	tcz_st_tensor t[2] = {
		{.name = "w\"x/é", .dtype = TCZ_DT_F16, .ndim = 2, .shape = s1,
		 .numel = 15},
		{.name = "b", .dtype = TCZ_DT_I64, .ndim = 1, .shape = s2,
		 .numel = 7},
	};
	unsigned char *h;
	size_t hl;
	assert_int_equal(tcz_st_build_header(t, 2, "{\"k\":\"v\"}", &h, &hl), 0);
	assert_int_equal((hl - 8) % 8, 0);
	size_t data = 15 * 2 + 7 * 8;
	unsigned char *file = calloc(1, hl + data);
	memcpy(file, h, hl);
	tcz_st_file st;
	char err[256];
	int rc = tcz_st_parse(file, hl + data, &st, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_int_equal(st.n, 2);
	assert_string_equal(st.tensors[0].name, "w\"x/é");
	assert_int_equal(st.tensors[0].end, 30);
	assert_int_equal(st.tensors[1].begin, 30);
	assert_int_equal(st.tensors[1].end, data);
	tcz_st_free(&st);
	free(file);
	free(h);
}

/* Truncating a valid file anywhere never crashes and never parses as
 * something else. */
static void every_truncation(void **state)
{
	(void)state;
	const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
			"\"data_offsets\":[0,8]}}";
	size_t hl = strlen(h), len = 8 + hl + 8;
	unsigned char *buf = calloc(1, len);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)(hl >> (8 * i));
	memcpy(buf + 8, h, hl);
	for (size_t cut = 0; cut < len; cut++) {
		unsigned char *c = malloc(cut ? cut : 1);
		memcpy(c, buf, cut);
		tcz_st_file st;
		char err[256];
		assert_int_equal(tcz_st_parse(c, cut, &st, err, sizeof err),
				 -EBADMSG);
		free(c);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(corpus),
		cmocka_unit_test(valid_fields),
		cmocka_unit_test(build_round_trip),
		cmocka_unit_test(every_truncation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
