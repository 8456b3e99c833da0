/* The GGUF parser against the regression corpus (every malformed file
 * refused with the message EXPECT names, valid ones parsed), the fields of
 * generated files, truncations and random damage, and (models)
 * ../shared/models/stories260K.gguf and Q8_0 / Q4_0 / realigned copies
 * written by tests/tools/gguf_write.py, compared with what that
 * independent Python reader finds and with stories260K.f32.safetensors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "codec/ggml.h"
#include "store/gguf.h"
#include "tests/unit/testutil_models.h"

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

static unsigned char *corpus_file(const char *name, size_t *len)
{
	char path[4096];
	const char *dir = getenv("TCZ_CORPUS_DIR");
	assert_non_null(dir);
	snprintf(path, sizeof path, "%s/gguf/%s", dir, name);
	unsigned char *b = slurp(path, len);
	if (!b)
		fail_msg("cannot read %s", path);
	return b;
}

/* The extents tile the file and name each tensor's data once. */
static void check_extents(const tcz_gguf_file *f)
{
	tcz_gguf_extent *e;
	size_t n, tensors = 0;
	uint64_t at = 0;
	assert_int_equal(tcz_gguf_extents(f, &e, &n), 0);
	assert_true(n <= 2 * f->n_tensors + 2);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(e[i].offset, at);
		assert_true(e[i].length > 0);
		if (e[i].kind == TCZ_GGUF_EXT_TENSOR) {
			const tcz_gguf_tensor *t = &f->tensors[e[i].tensor];
			assert_int_equal(e[i].tensor, tensors);
			assert_int_equal(e[i].offset, f->data_offset + t->offset);
			assert_int_equal(e[i].length, t->nbytes);
			tensors++;
		} else {
			assert_int_equal(e[i].kind, TCZ_GGUF_EXT_BYTES);
		}
		at += e[i].length;
	}
	assert_int_equal(at, f->file_size);
	assert_int_equal(tensors, f->n_tensors);
	free(e);
}

static void corpus(void **state)
{
	(void)state;
	const char *dir = getenv("TCZ_CORPUS_DIR");
	assert_non_null(dir);
	char path[4096], line[512];
	snprintf(path, sizeof path, "%s/gguf/EXPECT", dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	int cases = 0, valid = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *tab = strchr(line, '\t');
		assert_non_null(tab);
		*tab = 0;
		const char *want = tab + 1;
		size_t len = 0;
		unsigned char *buf = corpus_file(line, &len);
		tcz_gguf_file g;
		char err[512] = "";
		int rc = tcz_gguf_parse(buf, len, &g, err, sizeof err);
		if (strcmp(want, "ok") == 0) {
			if (rc)
				fail_msg("%s: refused: %s", line, err);
			check_extents(&g);
			json_t *j = tcz_gguf_kv_json(&g, buf, len);
			assert_non_null(j);
			assert_int_equal(json_object_size(j), g.n_kv);
			json_decref(j);
			tcz_gguf_free(&g);
			valid++;
		} else {
			if (rc != -EBADMSG)
				fail_msg("%s: accepted (rc %d)", line, rc);
			if (!strstr(err, want))
				fail_msg("%s: message '%s' lacks '%s'", line, err,
					 want);
			if (strchr(err, '\n'))
				fail_msg("%s: message of several lines", line);
			assert_null(g.tensors);
			assert_null(g.kv);
		}
		free(buf);
		cases++;
	}
	fclose(f);
	assert_true(cases >= 55);
	assert_true(valid >= 8);
}

static void custom_alignment_fields(void **state)
{
	(void)state;
	size_t len;
	unsigned char *buf = corpus_file("valid-custom-align.gguf", &len);
	tcz_gguf_file g;
	char err[256];
	assert_int_equal(tcz_gguf_parse(buf, len, &g, err, sizeof err), 0);
	assert_int_equal(g.version, 3);
	assert_int_equal(g.alignment, 64);
	assert_int_equal(g.n_kv, 2);
	assert_int_equal(g.n_tensors, 2);
	/* header 24, KV general.alignment: 8 + 17 + 4 + 4 = 33, KV
	 * general.name: 8 + 12 + 4 + 8 + 3 = 35, tensor a: 8 + 1 + 4 + 8 +
	 * 4 + 8 = 33, b: 8 + 1 + 4 + 16 + 4 + 8 = 41: 166, padded to 192 */
	assert_int_equal(g.header_len, 166);
	assert_int_equal(g.data_offset, 192);
	assert_string_equal(g.tensors[0].name, "a");
	assert_int_equal(g.tensors[0].offset, 0);
	assert_int_equal(g.tensors[0].nbytes, 12);
	assert_string_equal(g.tensors[1].name, "b");
	assert_int_equal(g.tensors[1].offset, 64);
	assert_int_equal(g.tensors[1].n_dims, 2);
	assert_int_equal(g.tensors[1].dims[0], 5);
	assert_int_equal(g.tensors[1].dims[1], 1);
	assert_int_equal(g.tensors[1].dims[2], 1);
	assert_int_equal(g.tensors[1].numel, 5);
	/* b's 20 bytes are padded to 64: the file ends at 192 + 64 + 64 */
	assert_int_equal(g.file_size, 320);
	tcz_gguf_extent *e;
	size_t n;
	assert_int_equal(tcz_gguf_extents(&g, &e, &n), 0);
	assert_int_equal(n, 5);
	uint64_t want[5][3] = {{0, 192, 0},
			       {192, 12, 1},
			       {204, 52, 0},
			       {256, 20, 1},
			       {276, 44, 0}};
	for (int i = 0; i < 5; i++) {
		assert_int_equal(e[i].offset, want[i][0]);
		assert_int_equal(e[i].length, want[i][1]);
		assert_int_equal(e[i].kind, (int)want[i][2]);
	}
	free(e);
	const tcz_gguf_kv *kv = tcz_gguf_find(&g, "general.name");
	assert_non_null(kv);
	assert_int_equal(kv->type, TCZ_GGUF_STRING);
	assert_int_equal(kv->str_len, 3);
	assert_memory_equal(kv->str, "a64", 3);
	assert_null(tcz_gguf_find(&g, "general.nam"));
	tcz_gguf_free(&g);
	free(buf);
}

static void kv_types_and_json(void **state)
{
	(void)state;
	size_t len;
	unsigned char *buf = corpus_file("valid-all-kv-types.gguf", &len);
	tcz_gguf_file g;
	char err[256];
	assert_int_equal(tcz_gguf_parse(buf, len, &g, err, sizeof err), 0);
	assert_int_equal(tcz_gguf_find(&g, "t.i8")->v.i, -128);
	assert_int_equal(tcz_gguf_find(&g, "t.u64")->v.u, UINT64_MAX);
	assert_int_equal(tcz_gguf_find(&g, "t.i64")->v.i, INT64_MIN);
	assert_true(tcz_gguf_find(&g, "t.f64")->v.f == -2.25);
	assert_true(tcz_gguf_find(&g, "t.f32")->v.f == 1.5);
	const tcz_gguf_kv *a = tcz_gguf_find(&g, "t.big");
	assert_int_equal(a->type, TCZ_GGUF_ARRAY);
	assert_int_equal(a->arr_type, TCZ_GGUF_U16);
	assert_int_equal(a->arr_len, 100);
	assert_int_equal(a->size, 4 + 8 + 200);
	json_t *j = tcz_gguf_kv_json(&g, buf, len);
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	const char *want =
		"{\"t.u8\":255,\"t.i8\":-128,\"t.u16\":65535,\"t.i16\":-32768,"
		"\"t.u32\":4294967295,\"t.i32\":-2147483648,\"t.f32\":1.5,"
		"\"t.bool\":true,\"t.string\":\"h\xc3\xa9llo\","
		"\"t.array\":[1,2,3],\"t.u64\":\"18446744073709551615\","
		"\"t.i64\":-9223372036854775808,\"t.f64\":-2.25,"
		"\"t.nested\":[[1,2],[\"x\"]],\"t.empty\":[],"
		"\"t.big\":{\"type\":\"uint16\",\"length\":100,"
		"\"first\":[0,1,2,3,4,5,6,7]}}";
	assert_string_equal(s, want);
	free(s);
	json_decref(j);
	tcz_gguf_info in;
	tcz_gguf_get_info(&g, &in);
	assert_null(in.architecture);
	assert_int_equal(in.context_length, -1);
	assert_int_equal(in.vocab_size, -1);
	tcz_gguf_free(&g);
	free(buf);
}

/* Invalid UTF-8 in a string value comes out as U+FFFD in the JSON. */
static void json_bad_utf8(void **state)
{
	(void)state;
	/* one KV "k": string "a\xffb\xe2\x82" */
	unsigned char f[64] = "GGUF\x03\0\0\0" "\0\0\0\0\0\0\0\0"
			      "\x01\0\0\0\0\0\0\0" "\x01\0\0\0\0\0\0\0" "k"
			      "\x08\0\0\0" "\x05\0\0\0\0\0\0\0" "a\xff" "b\xe2\x82";
	size_t len = 24 + 9 + 4 + 8 + 5;
	tcz_gguf_file g;
	char err[256];
	if (tcz_gguf_parse(f, len, &g, err, sizeof err))
		fail_msg("%s", err);
	json_t *j = tcz_gguf_kv_json(&g, f, len);
	assert_string_equal(json_string_value(json_object_get(j, "k")),
			    "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd");
	json_decref(j);
	tcz_gguf_free(&g);
}

/* Cutting a valid file anywhere before the end of its last tensor's data
 * is refused; cutting trailing padding is not. */
static void every_truncation(void **state)
{
	(void)state;
	static const char *names[] = {"valid-two.gguf", "valid-custom-align.gguf",
				      "valid-all-kv-types.gguf"};
	for (size_t k = 0; k < 3; k++) {
		size_t len;
		unsigned char *buf = corpus_file(names[k], &len);
		tcz_gguf_file g;
		char err[256];
		assert_int_equal(tcz_gguf_parse(buf, len, &g, err, sizeof err), 0);
		uint64_t end = g.n_tensors
				       ? g.data_offset +
						 g.tensors[g.n_tensors - 1].offset +
						 g.tensors[g.n_tensors - 1].nbytes
				       : g.header_len;
		tcz_gguf_free(&g);
		for (size_t cut = 0; cut < len; cut++) {
			unsigned char *c = malloc(cut ? cut : 1);
			memcpy(c, buf, cut);
			int rc = tcz_gguf_parse(c, cut, &g, err, sizeof err);
			if (cut < end)
				assert_int_equal(rc, -EBADMSG);
			else if (rc == 0)
				tcz_gguf_free(&g);
			else
				fail_msg("%s cut at %zu: %s", names[k], cut, err);
			free(c);
		}
		free(buf);
	}
}

/* Random damage: 0 or -EBADMSG, and whatever parses is consistent. */
static void random_damage(void **state)
{
	(void)state;
	static const char *names[] = {"valid-two.gguf", "valid-all-kv-types.gguf",
				      "valid-no-tensors.gguf"};
	uint64_t r = 88172645463325252ull;
	for (size_t k = 0; k < 3; k++) {
		size_t len;
		unsigned char *buf = corpus_file(names[k], &len);
		unsigned char *m = malloc(len);
		for (int it = 0; it < 3000; it++) {
			memcpy(m, buf, len);
			int flips = 1 + it % 4;
			for (int q = 0; q < flips; q++) {
				r ^= r << 13, r ^= r >> 7, r ^= r << 17;
				m[r % len] ^= (unsigned char)(1u << (r >> 40) % 8);
			}
			tcz_gguf_file g;
			char err[256];
			int rc = tcz_gguf_parse(m, len, &g, err, sizeof err);
			if (rc == 0) {
				check_extents(&g);
				json_t *j = tcz_gguf_kv_json(&g, m, len);
				assert_non_null(j);
				json_decref(j);
				tcz_gguf_free(&g);
			} else {
				assert_int_equal(rc, -EBADMSG);
				assert_true(err[0] != 0);
			}
		}
		free(m);
		free(buf);
	}
}

/* ---- the real model and copies of it --------------------------------------- */

static const char *tools_dir(void)
{
	const char *d = getenv("TCZ_TEST_TOOLS");
	assert_non_null(d);
	return d;
}

static void run(const char *cmd)
{
	if (system(cmd) != 0)
		fail_msg("failed: %s", cmd);
}

/* What gguf_write.py dump finds in a file. */
static json_t *python_dump(const char *path)
{
	char cmd[8192];
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/gguf_write.py' dump '%s'",
		 tools_dir(), path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	json_error_t je;
	json_t *j = json_loadf(p, 0, &je);
	int st = pclose(p);
	if (!j || st != 0)
		fail_msg("%s: %s", cmd, j ? "failed" : je.text);
	return j;
}

static const tcz_gguf_tensor *by_name(const tcz_gguf_file *g, const char *n)
{
	for (size_t i = 0; i < g->n_tensors; i++)
		if (!strcmp(g->tensors[i].name, n))
			return &g->tensors[i];
	return NULL;
}

/* Parses path and checks everything against the Python reader. */
static void against_python(const char *path, tcz_gguf_file *g,
			   unsigned char **bufp, size_t *lenp)
{
	size_t len;
	unsigned char *buf = slurp(path, &len);
	char err[512];
	assert_non_null(buf);
	if (tcz_gguf_parse(buf, len, g, err, sizeof err))
		fail_msg("%s: %s", path, err);
	json_t *py = python_dump(path);
	assert_int_equal(g->version,
			 json_integer_value(json_object_get(py, "version")));
	assert_int_equal(g->alignment,
			 json_integer_value(json_object_get(py, "alignment")));
	assert_int_equal(g->header_len,
			 json_integer_value(json_object_get(py, "header_len")));
	assert_int_equal(g->data_offset,
			 json_integer_value(json_object_get(py, "data_offset")));
	json_t *ts = json_object_get(py, "tensors");
	assert_int_equal(json_array_size(ts), g->n_tensors);
	for (size_t i = 0; i < json_array_size(ts); i++) {
		json_t *t = json_array_get(ts, i);
		const tcz_gguf_tensor *c =
			by_name(g, json_string_value(json_object_get(t, "name")));
		assert_non_null(c);
		assert_int_equal(c->info_index, i);
		assert_int_equal(c->type,
				 json_integer_value(json_object_get(t, "type")));
		assert_int_equal(c->offset,
				 json_integer_value(json_object_get(t, "offset")));
		assert_int_equal(c->nbytes,
				 json_integer_value(json_object_get(t, "nbytes")));
		json_t *dims = json_object_get(t, "dims");
		assert_int_equal(json_array_size(dims), c->n_dims);
		for (size_t d = 0; d < c->n_dims; d++)
			assert_int_equal(c->dims[d], json_integer_value(
							     json_array_get(dims, d)));
	}
	json_t *types = json_object_get(py, "kv_types");
	assert_int_equal(json_object_size(types), g->n_kv);
	for (size_t i = 0; i < g->n_kv; i++)
		assert_string_equal(tcz_gguf_vtype_name(g->kv[i].type),
				    json_string_value(
					    json_object_get(types, g->kv[i].key)));
	json_t *mine = tcz_gguf_kv_json(g, buf, len);
	if (!json_equal(mine, json_object_get(py, "kv"))) {
		char *a = json_dumps(mine, JSON_COMPACT);
		fail_msg("%s: KV JSON differs: %.400s", path, a);
	}
	json_decref(mine);
	json_decref(py);
	check_extents(g);
	*bufp = buf;
	*lenp = len;
}

static char tmpdir[] = "/tmp/tcz-gguf-XXXXXX";

static void stories_f32(void **state)
{
	(void)state;
	char path[4096];
	tcz_gguf_file g;
	unsigned char *buf;
	size_t len;
	snprintf(path, sizeof path, "%s/stories260K.gguf", tu_models_dir());
	against_python(path, &g, &buf, &len);
	assert_int_equal(g.n_tensors, 48);
	tcz_gguf_info in;
	tcz_gguf_get_info(&g, &in);
	assert_int_equal(in.architecture_len, 5);
	assert_memory_equal(in.architecture, "llama", 5);
	assert_int_equal(in.context_length, 2048);
	assert_int_equal(in.embedding_length, 64);
	assert_int_equal(in.block_count, 5);
	assert_int_equal(in.vocab_size, 512);
	assert_int_equal(in.file_type, -1);
	/* every tensor's bytes equal the safetensors copy's (GGUF dims are
	 * the reversed shape) */
	snprintf(path, sizeof path, "%s/stories260K.f32.safetensors",
		 tu_models_dir());
	tu_tensor *t;
	size_t nt;
	assert_int_equal(tu_load_safetensors(path, &t, &nt), 0);
	assert_int_equal(nt, 48);
	for (size_t i = 0; i < nt; i++) {
		const tcz_gguf_tensor *c = by_name(&g, t[i].name);
		assert_non_null(c);
		assert_int_equal(c->type, TCZ_GGML_F32);
		assert_int_equal(c->n_dims, t[i].ndim);
		for (size_t d = 0; d < t[i].ndim; d++)
			assert_int_equal(c->dims[d], t[i].shape[t[i].ndim - 1 - d]);
		assert_int_equal(c->nbytes, 4 * t[i].n);
		assert_memory_equal(buf + g.data_offset + c->offset, t[i].data,
				    c->nbytes);
	}
	tu_free_tensors(t, nt);
	tcz_gguf_free(&g);
	free(buf);
}

/* Q8_0, Q4_0 and 128-aligned copies: parsed as Python reads them, and
 * their blocks dequantized bit for bit as NumPy does. */
static void stories_copies(void **state)
{
	(void)state;
	static const struct {
		const char *opt, *file;
		uint32_t type, align;
	} c[] = {{"--quant q8_0", "q8.gguf", TCZ_GGML_Q8_0, 32},
		 {"--quant q4_0 --alignment 64", "q4.gguf", TCZ_GGML_Q4_0, 64},
		 {"--alignment 128", "a128.gguf", TCZ_GGML_F32, 128}};
	assert_non_null(mkdtemp(tmpdir));
	for (size_t k = 0; k < 3; k++) {
		char cmd[16384], path[4096];
		snprintf(path, sizeof path, "%s/%s", tmpdir, c[k].file);
		snprintf(cmd, sizeof cmd,
			 "/usr/bin/python3 '%s/gguf_write.py' convert "
			 "'%s/stories260K.gguf' '%s' %s",
			 tools_dir(), tu_models_dir(), path, c[k].opt);
		run(cmd);
		tcz_gguf_file g;
		unsigned char *buf;
		size_t len;
		against_python(path, &g, &buf, &len);
		assert_int_equal(g.alignment, c[k].align);
		tcz_gguf_info in;
		tcz_gguf_get_info(&g, &in);
		assert_int_equal(in.file_type, c[k].type == TCZ_GGML_Q8_0 ? 7
					       : c[k].type == TCZ_GGML_Q4_0 ? 2
									    : -1);
		size_t quantized = 0;
		for (size_t i = 0; i < g.n_tensors; i++) {
			const tcz_gguf_tensor *t = &g.tensors[i];
			quantized += t->type == c[k].type;
			if (t->type != c[k].type && t->type != TCZ_GGML_F32)
				fail_msg("%s: type %u", t->name, t->type);
		}
		assert_true(quantized >= 20);
		/* two tensors of each file against NumPy */
		static const char *names[] = {"token_embd.weight",
					      "blk.2.attn_q.weight"};
		for (int n = 0; n < 2; n++) {
			const tcz_gguf_tensor *t = by_name(&g, names[n]);
			char out[4200];
			snprintf(out, sizeof out, "%s/%s.f32", tmpdir, names[n]);
			snprintf(cmd, sizeof cmd,
				 "/usr/bin/python3 '%s/gguf_write.py' dequant "
				 "'%s' '%s' '%s'",
				 tools_dir(), path, names[n], out);
			run(cmd);
			size_t fl;
			unsigned char *want = slurp(out, &fl);
			assert_int_equal(fl, 4 * t->numel);
			tcz_ggml_info gi;
			tcz_ggml_type(t->type, &gi);
			float *y = malloc(4 * t->numel);
			assert_int_equal(
				tcz_ggml_dequantize(t->type,
						    buf + g.data_offset + t->offset,
						    t->numel / gi.block_elems, y),
				0);
			assert_memory_equal(y, want, fl);
			free(y);
			free(want);
			unlink(out);
		}
		tcz_gguf_free(&g);
		free(buf);
		unlink(path);
	}
	rmdir(tmpdir);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(corpus),
		cmocka_unit_test(custom_alignment_fields),
		cmocka_unit_test(kv_types_and_json),
		cmocka_unit_test(json_bad_utf8),
		cmocka_unit_test(every_truncation),
		cmocka_unit_test(random_damage),
	};
	const struct CMUnitTest models[] = {
		cmocka_unit_test(stories_f32),
		cmocka_unit_test(stories_copies),
	};
	return tu_main(argc, argv, tests, sizeof tests / sizeof tests[0], models,
		       sizeof models / sizeof models[0]);
}
