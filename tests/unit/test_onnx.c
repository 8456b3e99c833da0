/* The ONNX parser (store/onnx.h):
 * - hand-built protobuf bytes for every validation rule, unpacked and
 *   non-canonical encodings, decoding and re-encoding values, external
 *   data checked against a directory, truncations;
 * - the malformed corpus tests/corpus/onnx (EXPECT);
 * - "generated": models written by python3-onnx (tests/tools/make_onnx.py),
 *   every tensor compared with what onnx.numpy_helper.to_array reads;
 * - "models": the real silero_vad_16k_op15.onnx against its listing
 *   (tests/unit/data, written by tests/tools/onnx_tensors.py). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "store/onnx.h"
#include "tests/unit/sha256.h"
#include "tests/unit/testutil_models.h"

/* ---- protobuf bytes by hand ------------------------------------------- */

typedef struct pb {
	uint8_t *b;
	size_t n, cap;
} pb;

static void pb_raw(pb *p, const void *d, size_t n)
{
	if (p->n + n + 1 > p->cap) {
		p->cap = (p->n + n + 1) * 2;
		p->b = realloc(p->b, p->cap);
		assert_non_null(p->b);
	}
	if (n)
		memcpy(p->b + p->n, d, n);
	p->n += n;
}

static void pb_byte(pb *p, uint8_t v)
{
	pb_raw(p, &v, 1);
}

static void pb_varint(pb *p, uint64_t v)
{
	while (v >= 0x80) {
		pb_byte(p, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	pb_byte(p, (uint8_t)v);
}

static void pb_tag(pb *p, uint32_t num, unsigned wt)
{
	pb_varint(p, (uint64_t)num << 3 | wt);
}

static void pb_int(pb *p, uint32_t num, uint64_t v) /* varint field */
{
	pb_tag(p, num, 0);
	pb_varint(p, v);
}

static void pb_bytes(pb *p, uint32_t num, const void *d, size_t n)
{
	pb_tag(p, num, 2);
	pb_varint(p, n);
	pb_raw(p, d, n);
}

static void pb_str(pb *p, uint32_t num, const char *s)
{
	pb_bytes(p, num, s, strlen(s));
}

/* Appends sub as field num and frees it. */
static void pb_msg(pb *p, uint32_t num, pb *sub)
{
	pb_bytes(p, num, sub->b, sub->n);
	free(sub->b);
	memset(sub, 0, sizeof *sub);
}

static void pb_free(pb *p)
{
	free(p->b);
	memset(p, 0, sizeof *p);
}

/* A TensorProto: name, FLOAT (or type), dims, raw_data of n bytes. */
static pb t_raw(const char *name, int type, const uint64_t *dims, int nd,
		const void *raw, size_t n)
{
	pb t = {0};
	for (int i = 0; i < nd; i++)
		pb_int(&t, 1, dims[i]);
	pb_int(&t, 2, (uint64_t)type);
	if (name)
		pb_str(&t, 8, name);
	if (raw)
		pb_bytes(&t, 9, raw, n);
	return t;
}

static pb t_f32(const char *name, uint64_t n)
{
	float v[64] = {0};
	for (uint64_t i = 0; i < n && i < 64; i++)
		v[i] = (float)i + 0.5f;
	return t_raw(name, 1, &n, 1, v, n * 4);
}

/* A model (ir 8, opset 15) around graph g (freed). */
static pb model_of(pb *g)
{
	pb m = {0}, o = {0};
	pb_int(&m, 1, 8);
	pb_str(&m, 2, "hand");
	pb_str(&o, 1, "");
	pb_int(&o, 2, 15);
	pb_msg(&m, 8, &o);
	pb_msg(&m, 7, g);
	return m;
}

/* A model whose graph has tensor t (freed) as its initializer. */
static pb model_init(pb *t)
{
	pb g = {0};
	pb_str(&g, 2, "g");
	pb_msg(&g, 5, t);
	return model_of(&g);
}

/* A Constant node named name with attribute value = t (freed). */
static pb constant(const char *name, pb *t)
{
	pb n = {0}, a = {0};
	pb_str(&n, 2, "out");
	if (name)
		pb_str(&n, 3, name);
	pb_str(&n, 4, "Constant");
	pb_str(&a, 1, "value");
	pb_msg(&a, 5, t);
	pb_int(&a, 20, 4);
	pb_msg(&n, 5, &a);
	return n;
}

static int parse(const pb *m, tcz_onnx_model *out, char *err, size_t el)
{
	return tcz_onnx_parse(m->b, m->n, out, err, el);
}

/* m (freed) is refused with a message holding want. */
static void refused_(pb *m, const char *want, int line)
{
	tcz_onnx_model om;
	char err[512] = "";
	int rc = parse(m, &om, err, sizeof err);
	if (rc == 0) {
		tcz_onnx_free(&om);
		fail_msg("line %d: accepted, wanted '%s'", line, want);
	}
	if (rc != -EBADMSG)
		fail_msg("line %d: rc %d", line, rc);
	if (!strstr(err, want))
		fail_msg("line %d: message '%s' lacks '%s'", line, err, want);
	if (strchr(err, '\n'))
		fail_msg("line %d: message '%s' is not one line", line, err);
	pb_free(m);
}
#define refused(m, want) refused_(m, want, __LINE__)

static void accepted_(pb *m, tcz_onnx_model *om, int line)
{
	char err[512] = "";
	int rc = parse(m, om, err, sizeof err);
	if (rc)
		fail_msg("line %d: refused (%d): %s", line, rc, err);
}
#define accepted(m, om) accepted_(m, om, __LINE__)

/* ---- hand-built cases ----------------------------------------------------- */

static void minimal_model(void **state)
{
	(void)state;
	pb t = t_f32("w", 4), m = model_init(&t);
	tcz_onnx_model om;
	accepted(&m, &om);
	assert_int_equal(om.ir_version, 8);
	assert_string_equal(om.producer_name, "hand");
	assert_string_equal(om.producer_version, "");
	assert_int_equal(om.n_opsets, 1);
	assert_string_equal(om.opsets[0].domain, "");
	assert_int_equal(om.opsets[0].version, 15);
	assert_int_equal(om.n_tensors, 1);
	const tcz_onnx_tensor *w = &om.tensors[0];
	assert_string_equal(w->name, "w");
	assert_false(w->generated);
	assert_int_equal(w->onnx_type, TCZ_ONNX_FLOAT);
	assert_int_equal(w->dtype, TCZ_DT_F32);
	assert_true(w->weight);
	assert_int_equal(w->ndim, 1);
	assert_int_equal(w->dims[0], 4);
	assert_int_equal(w->numel, 4);
	assert_int_equal(w->nbytes, 16);
	assert_int_equal(w->kind, TCZ_ONNX_RAW);
	assert_int_equal(w->field, 9);
	assert_int_equal(w->n_ranges, 1);
	assert_int_equal(w->ranges[0].len, 16);
	float want[4] = {0.5f, 1.5f, 2.5f, 3.5f}, got[4];
	assert_memory_equal(m.b + w->ranges[0].off, want, 16);
	assert_int_equal(tcz_onnx_decode_values(w, m.b, m.n, got), 0);
	assert_memory_equal(got, want, 16);
	/* the TensorProto's bytes hold the range */
	assert_true(w->proto_off <= w->ranges[0].off);
	assert_true(w->ranges[0].off + 16 <= w->proto_off + w->proto_len);
	assert_int_equal(om.count.initializer, 1);
	assert_int_equal(om.inline_bytes, 16);
	tcz_onnx_free(&om);
	pb_free(&m);
}

static void framing_rules(void **state)
{
	(void)state;
	pb m = {0};
	refused(&m, "empty file");

	/* a varint longer than 10 bytes, one overflowing 64 bits */
	m = (pb){0};
	pb_tag(&m, 1, 0);
	for (int i = 0; i < 10; i++)
		pb_byte(&m, 0x80);
	pb_byte(&m, 0);
	refused(&m, "longer than 10 bytes");
	m = (pb){0};
	pb_tag(&m, 1, 0);
	for (int i = 0; i < 9; i++)
		pb_byte(&m, 0xff);
	pb_byte(&m, 0x02);
	refused(&m, "overflows 64 bits");
	/* truncated varint, a tag above 32 bits, field number 0 */
	m = (pb){0};
	pb_tag(&m, 1, 0);
	pb_byte(&m, 0x80);
	refused(&m, "runs past the end");
	m = (pb){0};
	pb_varint(&m, 1ull << 35);
	refused(&m, "overflows 32 bits");
	m = (pb){0};
	pb_int(&m, 0, 1);
	refused(&m, "field number 0");
	/* groups, invalid wire types, a fixed32 past the end */
	m = (pb){0};
	pb_tag(&m, 9, 3);
	refused(&m, "groups (wire type 3)");
	m = (pb){0};
	pb_tag(&m, 9, 4);
	refused(&m, "groups (wire type 4)");
	m = (pb){0};
	pb_tag(&m, 9, 6);
	refused(&m, "invalid wire type 6");
	m = (pb){0};
	pb_tag(&m, 9, 5);
	pb_byte(&m, 1);
	refused(&m, "4-byte value");
	/* a length past the end of the file, then past the end of the
	 * enclosing message (but inside the file) */
	m = (pb){0};
	pb_int(&m, 1, 8);
	pb_tag(&m, 7, 2);
	pb_varint(&m, 100);
	pb_byte(&m, 0);
	refused(&m, "length 100");
	pb t = t_f32("w", 1);
	t.n -= 4;  /* the raw_data's length says 4, the tensor ends here */
	pb g = {0};
	pb_msg(&g, 5, &t);
	pb_raw(&g, "\0\0\0\0", 4);
	m = model_of(&g);
	refused(&m, "tensor 'w': field 9: length 4");
	/* wire types that do not match the field */
	m = (pb){0};
	pb_int(&m, 1, 8);
	pb_int(&m, 7, 3);
	refused(&m, "field 7 (graph) at byte 2 is varint, expected "
		    "length-delimited");
	t = (pb){0};
	pb_int(&t, 1, 4);
	pb_str(&t, 2, "x");
	m = model_init(&t);
	refused(&m, "field 2 (data_type)");
	t = (pb){0};
	pb_int(&t, 2, 1);
	pb_tag(&t, 4, 1); /* float_data as fixed64 */
	pb_raw(&t, "\0\0\0\0\0\0\0\0", 8);
	m = model_init(&t);
	refused(&m, "expected fixed32 or length-delimited");
	/* a singular field twice */
	t = t_f32("w", 1);
	pb_bytes(&t, 9, "abcd", 4);
	m = model_init(&t);
	refused(&m, "tensor 'w': field 9 (raw_data) appears twice");
	g = (pb){0};
	m = model_of(&g);
	g = (pb){0};
	pb_msg(&m, 7, &g);
	refused(&m, "field 7 (graph) appears twice");
	/* no graph, no ir_version, ir_version 0 */
	m = (pb){0};
	pb_int(&m, 1, 8);
	refused(&m, "no graph");
	m = (pb){0};
	g = (pb){0};
	pb_msg(&m, 7, &g);
	refused(&m, "no ir_version");
	m = (pb){0};
	pb_int(&m, 1, 0);
	g = (pb){0};
	pb_msg(&m, 7, &g);
	refused(&m, "ir_version 0 is not positive");
	/* unknown fields are skipped, but must be well formed */
	g = (pb){0};
	pb_str(&g, 99, "anything");
	pb_int(&g, 98, 5);
	pb_tag(&g, 97, 1);
	pb_raw(&g, "12345678", 8);
	t = t_f32("w", 2);
	pb_str(&t, 1000, "unknown");
	pb_msg(&g, 5, &t);
	m = model_of(&g);
	pb_int(&m, 536870911, 1); /* the largest field number */
	tcz_onnx_model om;
	accepted(&m, &om);
	assert_int_equal(om.n_tensors, 1);
	tcz_onnx_free(&om);
	pb_free(&m);
	g = (pb){0};
	pb_tag(&g, 99, 2);
	pb_varint(&g, 50);
	m = model_of(&g);
	refused(&m, "field 99: length 50");
}

/* Subgraphs 40 deep: past 64 nested messages. */
static void depth_limit(void **state)
{
	(void)state;
	for (int levels = 10; levels <= 40; levels += 30) {
		pb g = {0};
		pb t = t_f32(NULL, 1);
		pb n = constant(NULL, &t);
		pb_msg(&g, 1, &n);
		for (int i = 0; i < levels; i++) {
			pb a = {0}, node = {0}, outer = {0};
			pb_str(&a, 1, "then_branch");
			pb_msg(&a, 6, &g);
			pb_str(&node, 4, "If");
			pb_msg(&node, 5, &a);
			pb_msg(&outer, 1, &node);
			g = outer;
		}
		pb m = model_of(&g);
		if (levels == 10) {
			tcz_onnx_model om;
			accepted(&m, &om);
			assert_int_equal(om.n_tensors, 1);
			assert_int_equal(om.tensors[0].depth, 10);
			assert_int_equal(om.count.subgraph, 1);
			assert_non_null(strstr(om.tensors[0].name,
					       "#0:then_branch/#0:then_branch/"));
			tcz_onnx_free(&om);
			pb_free(&m);
		} else {
			refused(&m, "nested deeper than 64");
		}
	}
}

static void tensor_rules(void **state)
{
	(void)state;
	uint64_t d4 = 4, dneg = (uint64_t)-3, big[2] = {1ull << 40, 1ull << 40};
	float f[4] = {1, 2, 3, 4};
	pb t, m;

	t = t_raw("w", 1, &dneg, 1, f, 16);
	m = model_init(&t);
	refused(&m, "tensor 'w': dims[0] at byte");
	t = t_raw("w", 1, big, 2, f, 16);
	m = model_init(&t);
	refused(&m, "tensor 'w': dims give more than 2^59 elements");
	t = (pb){0};
	for (int i = 0; i < 33; i++)
		pb_int(&t, 1, 1);
	pb_int(&t, 2, 1);
	pb_str(&t, 8, "w");
	m = model_init(&t);
	refused(&m, "tensor 'w': more than 32 dims");
	t = (pb){0};
	pb_int(&t, 1, 4);
	pb_str(&t, 8, "w");
	pb_bytes(&t, 9, f, 16);
	m = model_init(&t);
	refused(&m, "tensor 'w': no data_type");
	t = t_raw("w", 99, &d4, 1, f, 16);
	m = model_init(&t);
	refused(&m, "tensor 'w': unknown data_type 99");
	t = t_raw("w", 0, &d4, 1, f, 16);
	m = model_init(&t);
	refused(&m, "unknown data_type 0");
	t = (pb){0};
	pb_int(&t, 2, 1ull << 32);
	m = model_init(&t);
	refused(&m, "value 4294967296 at byte");
	t = t_raw("w", 1, &d4, 1, f, 12);
	m = model_init(&t);
	refused(&m, "tensor 'w': raw_data has 12 bytes but FLOAT [4] needs 16");
	t = t_raw("w", 7, &d4, 1, f, 16);
	m = model_init(&t);
	refused(&m, "raw_data has 16 bytes but INT64 [4] needs 32");
	t = t_raw("w", 1, &d4, 1, NULL, 0);
	m = model_init(&t);
	refused(&m, "tensor 'w': no data for FLOAT [4] (4 elements)");
	t = t_raw("w", 8, &d4, 1, "abcd", 4);
	m = model_init(&t);
	refused(&m, "raw_data in a STRING tensor");
	/* typed fields */
	t = t_raw("w", 1, &d4, 1, NULL, 0);
	pb_bytes(&t, 4, f, 12);
	m = model_init(&t);
	refused(&m, "float_data holds 3 values but FLOAT [4] needs 4");
	t = t_raw("w", 1, &d4, 1, NULL, 0);
	pb_bytes(&t, 4, f, 14);
	m = model_init(&t);
	refused(&m, "float_data: packed length 14 at byte");
	t = t_raw("w", 11, &d4, 1, NULL, 0);
	pb_bytes(&t, 10, f, 12);
	m = model_init(&t);
	refused(&m, "double_data: packed length 12");
	t = t_raw("w", 7, &d4, 1, NULL, 0);
	pb_bytes(&t, 4, f, 16);
	m = model_init(&t);
	refused(&m, "float_data cannot hold INT64 values");
	t = t_raw("w", 1, &d4, 1, f, 16);
	pb_bytes(&t, 4, f, 16);
	m = model_init(&t);
	refused(&m, "tensor 'w': has both raw_data and float_data");
	t = t_raw("w", 3, &d4, 1, NULL, 0); /* INT8 */
	pb_int(&t, 5, 1);
	pb_int(&t, 5, 2);
	pb_int(&t, 5, 128);
	pb_int(&t, 5, 4);
	m = model_init(&t);
	refused(&m, "int32_data value 128 at byte");
	t = t_raw("w", 3, &d4, 1, NULL, 0);
	for (int i = 0; i < 4; i++)
		pb_int(&t, 5, (uint64_t)-129);
	m = model_init(&t);
	refused(&m, "int32_data value -129 at byte");
	t = t_raw("w", 6, &d4, 1, NULL, 0); /* INT32: a 5-byte -1 */
	for (int i = 0; i < 4; i++)
		pb_int(&t, 5, 0xffffffffull);
	m = model_init(&t);
	refused(&m, "overflows int32");
	t = t_raw("w", 9, &d4, 1, NULL, 0); /* BOOL */
	for (int i = 0; i < 4; i++)
		pb_int(&t, 5, (uint64_t)i);
	m = model_init(&t);
	refused(&m, "int32_data value 2 at byte");
	t = t_raw("w", 12, &d4, 1, NULL, 0); /* UINT32 */
	for (int i = 0; i < 4; i++)
		pb_int(&t, 11, 1ull << 32);
	m = model_init(&t);
	refused(&m, "out of range for UINT32");
	t = t_raw("w", 7, &d4, 1, NULL, 0);
	pb_bytes(&t, 7, "\x01\x02\x80", 3); /* a cut varint in a packed run */
	m = model_init(&t);
	refused(&m, "int64_data: varint at byte");
	t = t_raw("w", 7, &d4, 1, NULL, 0);
	pb_bytes(&t, 7, "\x01\x02\x03", 3);
	m = model_init(&t);
	refused(&m, "int64_data holds 3 values but INT64 [4] needs 4");
	t = t_raw("w", 1, &d4, 1, f, 16);
	pb_int(&t, 3, 0);
	m = model_init(&t);
	refused(&m, "segmented tensors are not supported");
	t = t_raw(NULL, 1, &d4, 1, f, 16);
	pb_bytes(&t, 8, "w\0x", 3);
	m = model_init(&t);
	refused(&m, "name at byte");
	t = t_raw("w", 1, &d4, 1, f, 16);
	pb_int(&t, 14, 2);
	m = model_init(&t);
	refused(&m, "unknown data_location 2");
}

/* An external tensor w of FLOAT [4] with the given entries (k, v pairs,
 * NULL-terminated), data_location EXTERNAL unless loc0. */
static pb t_ext(const char *name, int loc, ...)
{
	uint64_t d4 = 4;
	pb t = t_raw(name, 1, &d4, 1, NULL, 0);
	va_list ap;
	va_start(ap, loc);
	for (;;) {
		const char *k = va_arg(ap, const char *);
		if (!k)
			break;
		const char *v = va_arg(ap, const char *);
		pb e = {0};
		pb_str(&e, 1, k);
		if (v)
			pb_str(&e, 2, v);
		pb_msg(&t, 13, &e);
	}
	va_end(ap);
	if (loc)
		pb_int(&t, 14, 1);
	return t;
}

static void external_rules(void **state)
{
	(void)state;
	pb t, m;
	tcz_onnx_model om;
	t = t_ext("w", 1, "location", "sub/./w.data", "offset", "8", "length",
		  "16", "checksum", "x", NULL);
	m = model_init(&t);
	accepted(&m, &om);
	assert_int_equal(om.n_files, 1);
	assert_string_equal(om.files[0].location, "sub/w.data");
	assert_int_equal(om.tensors[0].kind, TCZ_ONNX_EXTERNAL);
	assert_int_equal(om.tensors[0].ext_off, 8);
	assert_int_equal(om.tensors[0].ext_len, 16);
	assert_true(om.tensors[0].ext_has_length);
	assert_int_equal(om.count.external, 1);
	assert_int_equal(om.external_bytes, 16);
	assert_int_equal(om.tensors[0].n_ranges, 0);
	tcz_onnx_free(&om);
	pb_free(&m);

	static const struct {
		const char *loc, *want;
	} locs[] = {
		{"../x", "escapes the model directory"},
		{"a/../../x", "escapes the model directory"},
		{"a/..", "escapes the model directory"},
		{"/etc/passwd", "is an absolute path"},
		{"", "location is empty"},
		{".", "names no file"},
		{"./", "ends with '/'"},
		{"w\n.data", "control character"},
	};
	for (size_t i = 0; i < sizeof locs / sizeof locs[0]; i++) {
		t = t_ext("w", 1, "location", locs[i].loc, NULL);
		m = model_init(&t);
		refused(&m, locs[i].want);
	}
	t = t_ext("w", 1, "offset", "0", NULL);
	m = model_init(&t);
	refused(&m, "tensor 'w': external_data has no location");
	t = t_ext("w", 1, "location", "w.data", "offset", "12a", NULL);
	m = model_init(&t);
	refused(&m, "external_data offset '12a' is not a decimal");
	t = t_ext("w", 1, "location", "w.data", "offset", "-1", NULL);
	m = model_init(&t);
	refused(&m, "is not a decimal");
	t = t_ext("w", 1, "location", "w.data", "length", "", NULL);
	m = model_init(&t);
	refused(&m, "external_data length '' is not a decimal");
	t = t_ext("w", 1, "location", "w.data", "offset",
		  "99999999999999999999", NULL);
	m = model_init(&t);
	refused(&m, "below 2^63");
	t = t_ext("w", 1, "location", "w.data", "length", "12", NULL);
	m = model_init(&t);
	refused(&m, "external_data length 12 but FLOAT [4] needs 16 bytes");
	t = t_ext("w", 1, "location", "w.data", "offset", "9223372036854775800",
		  NULL);
	m = model_init(&t);
	refused(&m, "overflows");
	t = t_ext("w", 1, "location", "w.data", "colour", "red", NULL);
	m = model_init(&t);
	refused(&m, "unknown external_data key 'colour'");
	t = t_ext("w", 1, "location", "w.data", "location", "v.data", NULL);
	m = model_init(&t);
	refused(&m, "key 'location' given twice");
	t = t_ext("w", 1, "location", "w.data", "offset", "0", "offset", "0",
		  NULL);
	m = model_init(&t);
	refused(&m, "key 'offset' given twice");
	t = t_ext("w", 0, "location", "w.data", NULL);
	m = model_init(&t);
	refused(&m, "external_data entries but data_location is not EXTERNAL");
	t = t_ext("w", 1, "location", "w.data", NULL);
	pb_bytes(&t, 9, "0123456789abcdef", 16);
	m = model_init(&t);
	refused(&m, "data_location is EXTERNAL but the tensor also holds "
		    "raw_data");
	uint64_t d1 = 1;
	t = t_raw("s", 8, &d1, 1, NULL, 0);
	pb_str(&t, 6, "x");
	pb b = {0};
	pb_str(&b, 1, "location");
	pb_str(&b, 2, "s.data");
	pb_msg(&t, 13, &b);
	pb_int(&t, 14, 1);
	m = model_init(&t);
	refused(&m, "holds string_data");
}

/* A sparse tensor: values (FLOAT [nv] or 2-D), indices INT64 with dims
 * idims, dense dims dd. */
static pb sparse_of(int nv, int values_2d, const uint64_t *idims, int nid,
		    int itype, const uint64_t *dd, int nd, int with_v,
		    int with_i)
{
	pb s = {0};
	if (with_v) {
		uint64_t vd[2] = {(uint64_t)nv, 1};
		float f[8] = {1, 2, 3, 4, 5, 6, 7, 8};
		pb v = t_raw("sv", 1, vd, values_2d ? 2 : 1, f, (size_t)nv * 4);
		pb_msg(&s, 1, &v);
	}
	if (with_i) {
		int64_t ix[16] = {0, 1, 2, 3, 4, 5, 6, 7};
		uint64_t n = 1;
		for (int i = 0; i < nid; i++)
			n *= idims[i];
		pb ind = t_raw(NULL, itype, idims, nid, ix, n * 8);
		pb_msg(&s, 2, &ind);
	}
	for (int i = 0; i < nd; i++)
		pb_int(&s, 3, dd[i]);
	return s;
}

static pb model_sparse(pb *s)
{
	pb g = {0};
	pb_msg(&g, 15, s);
	return model_of(&g);
}

static void sparse_rules(void **state)
{
	(void)state;
	uint64_t i3 = 3, i32d[2] = {3, 2}, dd[2] = {4, 4}, d1 = 2;
	pb s = sparse_of(3, 0, &i3, 1, 7, dd, 2, 1, 1), m = model_sparse(&s);
	tcz_onnx_model om;
	accepted(&m, &om);
	assert_int_equal(om.n_tensors, 2);
	assert_string_equal(om.tensors[0].name, "sv");
	assert_int_equal(om.tensors[0].part, TCZ_ONNX_SPARSE_VALUES);
	assert_string_equal(om.tensors[1].name, "sv:indices");
	assert_true(om.tensors[1].generated);
	assert_int_equal(om.tensors[1].part, TCZ_ONNX_SPARSE_INDICES);
	assert_int_equal(om.tensors[1].where, TCZ_ONNX_SPARSE_INIT);
	assert_int_equal(om.count.sparse_init, 2);
	tcz_onnx_free(&om);
	pb_free(&m);
	s = sparse_of(3, 0, i32d, 2, 7, dd, 2, 1, 1);
	m = model_sparse(&s);
	accepted(&m, &om);
	tcz_onnx_free(&om);
	pb_free(&m);

	s = sparse_of(3, 0, &i3, 1, 7, dd, 2, 0, 1);
	m = model_sparse(&s);
	refused(&m, "sparse tensor 'sparse_initializer[0]': no values");
	s = sparse_of(3, 0, &i3, 1, 7, dd, 2, 1, 0);
	m = model_sparse(&s);
	refused(&m, "sparse tensor 'sv': no indices");
	s = sparse_of(3, 0, &i3, 1, 7, dd, 0, 1, 1);
	m = model_sparse(&s);
	refused(&m, "sparse tensor 'sv': no dims");
	s = sparse_of(3, 0, &i3, 1, 6, dd, 2, 1, 1);
	m = model_sparse(&s);
	refused(&m, "raw_data has 24 bytes but INT32 [3] needs 12");
	s = sparse_of(3, 1, &i3, 1, 7, dd, 2, 1, 1);
	m = model_sparse(&s);
	refused(&m, "values have 2 dims, not 1");
	s = sparse_of(2, 0, &i3, 1, 7, dd, 2, 1, 1);
	m = model_sparse(&s);
	refused(&m, "indices shape is neither [2] nor [2,2]");
	s = sparse_of(3, 0, &i3, 1, 7, &d1, 1, 1, 1);
	m = model_sparse(&s);
	refused(&m, "3 values but the dense shape holds 2");
	/* indices of another type */
	pb v = t_f32("sv", 1), ind = {0};
	int32_t ix = 0;
	uint64_t one = 1;
	ind = t_raw(NULL, 6, &one, 1, &ix, 4);
	s = (pb){0};
	pb_msg(&s, 1, &v);
	pb_msg(&s, 2, &ind);
	pb_int(&s, 3, 4);
	m = model_sparse(&s);
	refused(&m, "indices are INT32, not INT64");
}

static void attribute_rules(void **state)
{
	(void)state;
	pb t = t_f32(NULL, 2), n = constant("c", &t), g = {0}, m;
	pb_msg(&g, 1, &n);
	m = model_of(&g);
	tcz_onnx_model om;
	accepted(&m, &om);
	assert_string_equal(om.tensors[0].name, "c:value");
	assert_true(om.tensors[0].generated);
	assert_string_equal(om.tensors[0].proto_name, "");
	assert_int_equal(om.tensors[0].where, TCZ_ONNX_CONSTANT);
	assert_int_equal(om.count.constant, 1);
	tcz_onnx_free(&om);
	pb_free(&m);

	/* an unnamed tensor's problem names its node and attribute */
	float f[4] = {0};
	uint64_t d4 = 4;
	t = t_raw(NULL, 1, &d4, 1, f, 8);
	n = constant("/enc/Constant_3", &t);
	g = (pb){0};
	pb_msg(&g, 1, &n);
	m = model_of(&g);
	refused(&m, "tensor '/enc/Constant_3:value' (unnamed): raw_data has 8");

	pb a = {0};
	n = (pb){0};
	pb_str(&n, 4, "Relu");
	pb_int(&a, 3, 1);
	pb_msg(&n, 5, &a);
	g = (pb){0};
	pb_msg(&g, 1, &n);
	m = model_of(&g);
	refused(&m, "node #0 (Relu) of graph 'main': attribute #0 has no name");
	/* type FLOAT but a tensor in it; an unknown type */
	t = t_f32(NULL, 2);
	a = (pb){0};
	pb_str(&a, 1, "alpha");
	pb_msg(&a, 5, &t);
	pb_int(&a, 20, 1);
	n = (pb){0};
	pb_str(&n, 3, "r");
	pb_str(&n, 4, "Relu");
	pb_msg(&n, 5, &a);
	g = (pb){0};
	pb_msg(&g, 1, &n);
	m = model_of(&g);
	refused(&m, "node 'r' (Relu) attribute 'alpha': type 1 but holds "
		    "field 5 (t)");
	a = (pb){0};
	pb_str(&a, 1, "alpha");
	pb_int(&a, 20, 99);
	n = (pb){0};
	pb_str(&n, 4, "Relu");
	pb_msg(&n, 5, &a);
	g = (pb){0};
	pb_msg(&g, 1, &n);
	m = model_of(&g);
	refused(&m, "unknown attribute type 99");
	/* attribute f as a varint */
	a = (pb){0};
	pb_str(&a, 1, "alpha");
	pb_int(&a, 2, 1);
	n = (pb){0};
	pb_str(&n, 4, "Relu");
	pb_msg(&n, 5, &a);
	g = (pb){0};
	pb_msg(&g, 1, &n);
	m = model_of(&g);
	refused(&m, "field 2 (f) at byte");
	/* a node name too long for generated names: its index instead */
	char *longname = malloc(TCZ_ONNX_NAME_MAX + 10);
	memset(longname, 'n', TCZ_ONNX_NAME_MAX + 9);
	longname[TCZ_ONNX_NAME_MAX + 9] = 0;
	t = t_f32(NULL, 2);
	n = constant(longname, &t);
	g = (pb){0};
	pb_msg(&g, 1, &n);
	m = model_of(&g);
	accepted(&m, &om);
	assert_string_equal(om.tensors[0].name, "#0:value");
	tcz_onnx_free(&om);
	pb_free(&m);
	/* names of nested nodes that add up past the limit */
	longname[1000] = 0;
	g = (pb){0};
	t = t_f32(NULL, 1);
	n = constant(NULL, &t);
	pb_msg(&g, 1, &n);
	for (int i = 0; i < 5; i++) {
		pb at = {0}, node = {0}, outer = {0};
		pb_str(&at, 1, "then_branch");
		pb_msg(&at, 6, &g);
		pb_str(&node, 3, longname);
		pb_str(&node, 4, "If");
		pb_msg(&node, 5, &at);
		pb_msg(&outer, 1, &node);
		g = outer;
	}
	m = model_of(&g);
	refused(&m, "generated name would be longer than 4096 bytes");
	/* ... which is fine when the tensor has a name */
	g = (pb){0};
	t = t_f32("named", 1);
	n = constant(NULL, &t);
	pb_msg(&g, 1, &n);
	for (int i = 0; i < 5; i++) {
		pb at = {0}, node = {0}, outer = {0};
		pb_str(&at, 1, "then_branch");
		pb_msg(&at, 6, &g);
		pb_str(&node, 3, longname);
		pb_str(&node, 4, "If");
		pb_msg(&node, 5, &at);
		pb_msg(&outer, 1, &node);
		g = outer;
	}
	m = model_of(&g);
	accepted(&m, &om);
	assert_string_equal(om.tensors[0].name, "named");
	assert_int_equal(om.tensors[0].depth, 5);
	tcz_onnx_free(&om);
	pb_free(&m);
	free(longname);
}

/* Unpacked and mixed encodings; decode, canonical re-encoding. */
static void value_encodings(void **state)
{
	(void)state;
	uint64_t d5 = 5, d3 = 3, d2 = 2;
	/* INT8 in int32_data: two packed runs and three unpacked values,
	 * one with a 2-byte tag */
	pb t = t_raw("i8", 3, &d5, 1, NULL, 0);
	pb run = {0};
	pb_varint(&run, (uint64_t)-1);
	pb_varint(&run, 127);
	pb_msg(&t, 5, &run);
	pb_int(&t, 5, (uint64_t)-128);
	pb_int(&t, 5, 0);
	pb_byte(&t, 0xa8); /* field 5, varint, as a 2-byte tag */
	pb_byte(&t, 0x00);
	pb_varint(&t, 5);
	pb m = model_init(&t);
	tcz_onnx_model om;
	accepted(&m, &om);
	const tcz_onnx_tensor *x = &om.tensors[0];
	assert_int_equal(x->kind, TCZ_ONNX_VARINT);
	assert_int_equal(x->field, 5);
	assert_int_equal(x->n_ranges, 3);
	assert_false(x->ranges[0].tagged);
	assert_true(x->ranges[1].tagged);
	assert_int_equal(x->ranges[1].count, 2);
	assert_int_equal(x->ranges[1].len, 1 + 10 + 1 + 1);
	assert_false(x->ranges[2].tagged);
	assert_int_equal(x->ranges[2].first, 4);
	assert_true(x->canonical);
	int8_t want[5] = {-1, 127, -128, 0, 5}, got[5];
	assert_int_equal(tcz_onnx_decode_values(x, m.b, m.n, got), 0);
	assert_memory_equal(got, want, 5);
	for (size_t r = 0; r < x->n_ranges; r++) {
		uint8_t out[64];
		assert_int_equal(tcz_onnx_encode_range(x, r, want, out), 0);
		assert_memory_equal(out, m.b + x->ranges[r].off,
				    x->ranges[r].len);
	}
	/* other values do not fit the same bytes */
	int8_t other[5] = {1, 127, -128, 0, 5};
	uint8_t out[64];
	assert_int_equal(tcz_onnx_encode_range(x, 0, other, out), -ERANGE);
	tcz_onnx_free(&om);
	pb_free(&m);

	/* float_data unpacked: UNPACKED, tags in the range */
	t = t_raw("f", 1, &d3, 1, NULL, 0);
	float fv[3] = {1.5f, -2.0f, 3.25f};
	for (int i = 0; i < 3; i++) {
		pb_tag(&t, 4, 5);
		pb_raw(&t, &fv[i], 4);
	}
	m = model_init(&t);
	accepted(&m, &om);
	x = &om.tensors[0];
	assert_int_equal(x->kind, TCZ_ONNX_UNPACKED);
	assert_int_equal(x->n_ranges, 1);
	assert_int_equal(x->ranges[0].len, 15);
	float fg[3];
	assert_int_equal(tcz_onnx_decode_values(x, m.b, m.n, fg), 0);
	assert_memory_equal(fg, fv, 12);
	assert_int_equal(tcz_onnx_encode_range(x, 0, fv, out), 0);
	assert_memory_equal(out, m.b + x->ranges[0].off, 15);
	tcz_onnx_free(&om);
	pb_free(&m);

	/* double_data in two packed runs: PACKED, concatenated */
	t = t_raw("d", 11, &d3, 1, NULL, 0);
	double dv[3] = {1e300, -0.0, 2.5};
	pb_bytes(&t, 10, dv, 16);
	pb_bytes(&t, 10, dv + 2, 8);
	m = model_init(&t);
	accepted(&m, &om);
	x = &om.tensors[0];
	assert_int_equal(x->kind, TCZ_ONNX_PACKED);
	assert_int_equal(x->n_ranges, 2);
	double dg[3];
	assert_int_equal(tcz_onnx_decode_values(x, m.b, m.n, dg), 0);
	assert_memory_equal(dg, dv, 24);
	tcz_onnx_free(&om);
	pb_free(&m);

	/* a non-canonical varint: decoded, not canonical, kept verbatim */
	t = t_raw("i", 7, &d2, 1, NULL, 0);
	pb_bytes(&t, 7, "\x81\x00\x02", 3);
	m = model_init(&t);
	accepted(&m, &om);
	x = &om.tensors[0];
	assert_false(x->canonical);
	int64_t ig[2], iw[2] = {1, 2};
	assert_int_equal(tcz_onnx_decode_values(x, m.b, m.n, ig), 0);
	assert_memory_equal(ig, iw, 16);
	assert_int_equal(tcz_onnx_encode_range(x, 0, iw, out), -ERANGE);
	tcz_onnx_free(&om);
	pb_free(&m);

	/* F16 / BF16 / BOOL / UINT32 / UINT64 widened in varint fields */
	t = t_raw("h", 10, &d2, 1, NULL, 0);
	pb_int(&t, 5, 0x3c00);
	pb_int(&t, 5, 0xfbff);
	m = model_init(&t);
	accepted(&m, &om);
	uint16_t hg[2], hw[2] = {0x3c00, 0xfbff};
	assert_int_equal(om.tensors[0].dtype, TCZ_DT_F16);
	assert_int_equal(tcz_onnx_decode_values(&om.tensors[0], m.b, m.n, hg),
			 0);
	assert_memory_equal(hg, hw, 4);
	tcz_onnx_free(&om);
	pb_free(&m);
	t = t_raw("u", 13, &d2, 1, NULL, 0);
	pb_int(&t, 11, UINT64_MAX);
	pb_int(&t, 11, 7);
	m = model_init(&t);
	accepted(&m, &om);
	uint64_t ug[2], uw[2] = {UINT64_MAX, 7};
	assert_int_equal(tcz_onnx_decode_values(&om.tensors[0], m.b, m.n, ug),
			 0);
	assert_memory_equal(ug, uw, 16);
	tcz_onnx_free(&om);
	pb_free(&m);

	/* empty tensors: EMPTY, no ranges, decode writes nothing */
	uint64_t d0[2] = {0, 3};
	t = t_raw("e", 1, d0, 2, "", 0);
	m = model_init(&t);
	accepted(&m, &om);
	assert_int_equal(om.tensors[0].kind, TCZ_ONNX_EMPTY);
	assert_int_equal(om.tensors[0].n_ranges, 0);
	assert_int_equal(om.tensors[0].numel, 0);
	assert_int_equal(tcz_onnx_decode_values(&om.tensors[0], m.b, m.n, NULL),
			 0);
	tcz_onnx_free(&om);
	pb_free(&m);

	/* non-weight types are listed, not decoded */
	t = t_raw("c", 14, &d2, 1, NULL, 0);
	pb_bytes(&t, 4, "0123456789abcdef", 16);
	m = model_init(&t);
	accepted(&m, &om);
	assert_false(om.tensors[0].weight);
	assert_int_equal(om.tensors[0].dtype, TCZ_DT_COUNT);
	assert_int_equal(om.count.not_weight, 1);
	assert_int_equal(om.inline_bytes, 0);
	char junk[16];
	assert_int_equal(tcz_onnx_decode_values(&om.tensors[0], m.b, m.n, junk),
			 -EINVAL);
	tcz_onnx_free(&om);
	pb_free(&m);
}

/* Names: unnamed, duplicate, TENSORS, a candidate equal to a real name. */
static void names(void **state)
{
	(void)state;
	pb g = {0};
	pb_str(&g, 2, "g");
	pb t = t_f32(NULL, 1);
	pb n = constant(NULL, &t); /* node #0: "#0:value" */
	pb_msg(&g, 1, &n);
	t = t_f32("#0:value", 1); /* a real name equal to that */
	pb_msg(&g, 5, &t);
	t = t_f32("dup", 1);
	pb_msg(&g, 5, &t);
	t = t_f32("dup", 1);
	pb_msg(&g, 5, &t);
	t = t_f32("dup~2", 1);
	pb_msg(&g, 5, &t);
	t = t_f32(NULL, 1);
	pb_msg(&g, 5, &t);
	pb a = {0};
	pb_str(&a, 1, "tabs");
	t = t_f32(NULL, 1);
	pb_msg(&a, 10, &t);
	t = t_f32(NULL, 1);
	pb_msg(&a, 10, &t);
	pb_int(&a, 20, 9);
	n = (pb){0};
	pb_str(&n, 3, "custom");
	pb_str(&n, 4, "Custom");
	pb_msg(&n, 5, &a);
	pb_msg(&g, 1, &n);
	pb m = model_of(&g);
	tcz_onnx_model om;
	accepted(&m, &om);
	static const char *want[] = {"#0:value~2", "#0:value", "dup", "dup~3",
				     "dup~2", "initializer[4]",
				     "custom:tabs[0]", "custom:tabs[1]"};
	assert_int_equal(om.n_tensors, 8);
	for (size_t i = 0; i < 8; i++)
		assert_string_equal(om.tensors[i].name, want[i]);
	assert_true(om.tensors[3].generated);
	assert_false(om.tensors[4].generated);
	assert_int_equal(om.tensors[6].where, TCZ_ONNX_ATTRIBUTE);
	/* file order */
	for (size_t i = 1; i < om.n_tensors; i++)
		assert_true(om.tensors[i].proto_off > om.tensors[i - 1].proto_off);
	tcz_onnx_free(&om);
	pb_free(&m);
}

/* Cutting a valid model anywhere never crashes; what parses stays in
 * the cut bytes. */
static void every_truncation(void **state)
{
	(void)state;
	pb g = {0};
	pb t = t_f32(NULL, 3), n = constant("c", &t);
	pb_msg(&g, 1, &n);
	t = t_f32("w", 4);
	pb_msg(&g, 5, &t);
	uint64_t s3 = 3, dd = 8;
	pb s = sparse_of(3, 0, &s3, 1, 7, &dd, 1, 1, 1);
	pb_msg(&g, 15, &s);
	pb m = model_of(&g);
	for (size_t cut = 0; cut <= m.n; cut++) {
		uint8_t *c = malloc(cut ? cut : 1);
		memcpy(c, m.b, cut);
		tcz_onnx_model om;
		char err[256];
		int rc = tcz_onnx_parse(c, cut, &om, err, sizeof err);
		if (rc == 0) {
			for (size_t i = 0; i < om.n_tensors; i++)
				for (size_t r = 0; r < om.tensors[i].n_ranges;
				     r++)
					assert_true(om.tensors[i].ranges[r].off +
							    om.tensors[i]
								    .ranges[r]
								    .len <=
						    cut);
			tcz_onnx_free(&om);
		} else {
			assert_int_equal(rc, -EBADMSG);
			assert_true(err[0]);
		}
		free(c);
	}
	pb_free(&m);
}

/* ---- external files against a directory ------------------------------- */

static void write_file(const char *dir, const char *name, size_t n)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "wb");
	assert_non_null(f);
	for (size_t i = 0; i < n; i++)
		fputc((int)(i & 0xff), f);
	fclose(f);
}

/* The model of external tensors (location, offset, length or NULL) is
 * checked in dir: NULL want means accepted. */
static void ext_case_(const char *dir, unsigned flags, const char *want,
		      int line, ...)
{
	pb g = {0};
	va_list ap;
	va_start(ap, line);
	for (int i = 0;; i++) {
		const char *loc = va_arg(ap, const char *);
		if (!loc)
			break;
		const char *off = va_arg(ap, const char *);
		const char *len = va_arg(ap, const char *);
		char name[16];
		snprintf(name, sizeof name, "t%d", i);
		pb t = len ? t_ext(name, 1, "location", loc, "offset", off,
				   "length", len, NULL)
			   : t_ext(name, 1, "location", loc, "offset", off,
				   NULL);
		pb_msg(&g, 5, &t);
	}
	va_end(ap);
	pb m = model_of(&g);
	tcz_onnx_model om;
	accepted(&m, &om);
	char path[4096], err[512] = "";
	snprintf(path, sizeof path, "%s/model.onnx", dir);
	int rc = tcz_onnx_check_external(&om, path, flags, err, sizeof err);
	if (!want && rc)
		fail_msg("line %d: refused: %s", line, err);
	if (want && rc != -EBADMSG)
		fail_msg("line %d: rc %d, wanted '%s'", line, rc, want);
	if (want && !strstr(err, want))
		fail_msg("line %d: message '%s' lacks '%s'", line, err, want);
	tcz_onnx_free(&om);
	pb_free(&m);
}
#define ext_case(dir, flags, want, ...) \
	ext_case_(dir, flags, want, __LINE__, __VA_ARGS__, NULL)

static void external_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/tcz-onnx-XXXXXX", p[4096], q[4096];
	assert_non_null(mkdtemp(dir));
	write_file(dir, "model.onnx", 10);
	write_file(dir, "a.data", 100);
	snprintf(p, sizeof p, "%s/sub", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	write_file(dir, "sub/b.data", 32);
	snprintf(p, sizeof p, "%s/link.data", dir);
	assert_int_equal(symlink("a.data", p), 0);
	snprintf(p, sizeof p, "%s/sub.link", dir);
	assert_int_equal(symlink("sub", p), 0);

	ext_case(dir, 0, NULL, "a.data", "0", "16", "a.data", "16", "16",
		 "sub/b.data", "16", NULL, "./sub//b.data", "0", "16");
	ext_case(dir, 0, NULL, "a.data", "84", NULL);
	ext_case(dir, 0, "is past the end of 'a.data' (100 bytes)", "a.data",
		 "90", "16");
	ext_case(dir, 0, "has no length and 'a.data' has 20 bytes after offset "
			 "80, the tensor needs 16", "a.data", "80", NULL);
	ext_case(dir, 0, "tensor 't1': external range [8, 24) of 'a.data' "
			 "overlaps tensor 't0'", "a.data", "0", "16", "a.data",
		 "8", "16");
	ext_case(dir, 0, "overlaps", "sub/b.data", "0", "16", "a.data", "0",
		 "16", "sub/b.data", "15", "16");
	ext_case(dir, 0, "external data file 'missing.data' of tensor 't0': No "
			 "such file", "missing.data", "0", "16");
	ext_case(dir, 0, "'sub' of tensor 't0': not a regular file", "sub", "0",
		 "16");
	ext_case(dir, 0, "a component is not a directory", "a.data/x", "0",
		 "16");
	ext_case(dir, 0, "is the model file itself", "model.onnx", "0", "16");
	ext_case(dir, 0, NULL, "link.data", "0", "16", "sub.link/b.data", "16",
		 "16");
	ext_case(dir, TCZ_ONNX_NOFOLLOW, "symbolic link", "link.data", "0",
		 "16");
	ext_case(dir, TCZ_ONNX_NOFOLLOW, "symbolic link", "sub.link/b.data",
		 "0", "16");

	const char *rm[] = {"link.data", "sub.link", "sub/b.data", "sub",
			    "a.data", "model.onnx"};
	for (size_t i = 0; i < sizeof rm / sizeof rm[0]; i++) {
		snprintf(q, sizeof q, "%s/%s", dir, rm[i]);
		assert_int_equal(remove(q), 0);
	}
	assert_int_equal(rmdir(dir), 0);
}

/* ---- files: corpus, generated models, the real model ------------------- */

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
	snprintf(path, sizeof path, "%s/onnx/EXPECT", dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	int cases = 0, ok = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *tab = strchr(line, '\t');
		assert_non_null(tab);
		*tab = 0;
		const char *want = tab + 1;
		snprintf(path, sizeof path, "%s/onnx/%s", dir, line);
		size_t len = 0;
		unsigned char *buf = slurp(path, &len);
		if (!buf)
			fail_msg("%s: cannot read", path);
		tcz_onnx_model om;
		char err[512] = "";
		int rc = tcz_onnx_parse(buf, len, &om, err, sizeof err);
		if (rc == 0 && strcmp(want, "ok") != 0) {
			/* a problem only the external files show */
			rc = tcz_onnx_check_external(&om, path, 0, err,
						     sizeof err);
			tcz_onnx_free(&om);
		} else if (rc == 0) {
			rc = tcz_onnx_check_external(&om, path, 0, err,
						     sizeof err);
			tcz_onnx_free(&om);
			if (rc)
				fail_msg("%s: external data refused: %s", line,
					 err);
			ok++;
		}
		if (strcmp(want, "ok") == 0) {
			if (rc)
				fail_msg("%s: refused: %s", line, err);
		} else {
			if (rc != -EBADMSG)
				fail_msg("%s: accepted (rc %d)", line, rc);
			if (!strstr(err, want))
				fail_msg("%s: message '%s' lacks '%s'", line,
					 err, want);
		}
		free(buf);
		cases++;
	}
	fclose(f);
	assert_true(cases >= 30);
	assert_true(ok >= 3);
}

static const char *where_name(tcz_onnx_where w)
{
	static const char *n[] = {"initializer", "sparse_init", "constant",
				  "attribute"};
	return n[w];
}

static const char *part_name(tcz_onnx_part p)
{
	static const char *n[] = {"dense", "sparse_values", "sparse_indices"};
	return n[p];
}

static const char *field_name(uint32_t f)
{
	switch (f) {
	case 9: return "raw_data";
	case 4: return "float_data";
	case 5: return "int32_data";
	case 6: return "string_data";
	case 7: return "int64_data";
	case 10: return "double_data";
	case 11: return "uint64_data";
	default: return NULL;
	}
}

/* The parse of model_path equals the listing json_path: every tensor, in
 * order, its name, type, dims, place, and the sha256 of its bytes. */
static void compare_listing(const char *model_path, const char *json_path,
			    tcz_onnx_model *om)
{
	size_t len;
	unsigned char *buf = slurp(model_path, &len);
	if (!buf)
		fail_msg("%s: cannot read", model_path);
	char err[512] = "";
	int rc = tcz_onnx_parse(buf, len, om, err, sizeof err);
	if (rc)
		fail_msg("%s: %s", model_path, err);
	rc = tcz_onnx_check_external(om, model_path, TCZ_ONNX_NOFOLLOW, err,
				     sizeof err);
	if (rc)
		fail_msg("%s: %s", model_path, err);
	json_error_t je;
	json_t *doc = json_load_file(json_path, 0, &je);
	if (!doc)
		fail_msg("%s: %s", json_path, je.text);
	assert_int_equal(om->ir_version,
			 json_integer_value(json_object_get(doc, "ir_version")));
	assert_string_equal(om->producer_name,
			    json_string_value(json_object_get(doc,
							      "producer_name")));
	assert_string_equal(om->producer_version,
			    json_string_value(json_object_get(
				    doc, "producer_version")));
	json_t *ops = json_object_get(doc, "opsets");
	assert_int_equal(om->n_opsets, json_array_size(ops));
	for (size_t i = 0; i < om->n_opsets; i++) {
		json_t *o = json_array_get(ops, i);
		assert_string_equal(om->opsets[i].domain,
				    json_string_value(json_array_get(o, 0)));
		assert_int_equal(om->opsets[i].version,
				 json_integer_value(json_array_get(o, 1)));
	}
	json_t *ts = json_object_get(doc, "tensors");
	if (om->n_tensors != json_array_size(ts))
		fail_msg("%s: %zu tensors, python lists %zu", model_path,
			 om->n_tensors, json_array_size(ts));
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", model_path);
	char *slash = strrchr(dir, '/');
	*slash = 0;
	uint64_t last_end = 0;
	for (size_t i = 0; i < om->n_tensors; i++) {
		const tcz_onnx_tensor *t = &om->tensors[i];
		json_t *e = json_array_get(ts, i);
		const char *jn = json_string_value(json_object_get(e, "name"));
		if (strcmp(t->name, jn) != 0)
			fail_msg("%s: tensor %zu is '%s', python says '%s'",
				 model_path, i, t->name, jn);
		assert_string_equal(t->proto_name,
				    json_string_value(
					    json_object_get(e, "proto_name")));
		assert_int_equal(t->generated,
				 strcmp(t->name, t->proto_name) != 0);
		assert_int_equal(t->onnx_type, json_integer_value(json_object_get(
						       e, "onnx_type")));
		const char *jd = json_string_value(json_object_get(e, "dtype"));
		if (jd)
			assert_string_equal(tcz_dtype_name(t->dtype), jd);
		assert_int_equal(t->weight, jd != NULL);
		json_t *dims = json_object_get(e, "dims");
		assert_int_equal(t->ndim, json_array_size(dims));
		uint64_t numel = 1;
		for (size_t k = 0; k < t->ndim; k++) {
			assert_int_equal(t->dims[k], json_integer_value(
							     json_array_get(dims, k)));
			numel *= t->dims[k];
		}
		assert_int_equal(t->numel, numel);
		assert_string_equal(where_name(t->where),
				    json_string_value(json_object_get(e, "where")));
		assert_string_equal(part_name(t->part),
				    json_string_value(json_object_get(e, "part")));
		assert_int_equal(t->depth,
				 json_integer_value(json_object_get(e, "depth")));
		assert_int_equal(t->in_function,
				 json_is_true(json_object_get(e, "in_function")));
		assert_int_equal(t->in_training,
				 json_is_true(json_object_get(e, "in_training")));
		const char *jf = json_string_value(json_object_get(e, "field"));
		if (jf && strcmp(jf, "external") == 0) {
			assert_int_equal(t->kind, TCZ_ONNX_EXTERNAL);
			assert_string_equal(om->files[t->file].location,
					    json_string_value(json_object_get(
						    e, "location")));
			assert_int_equal(t->ext_off,
					 json_integer_value(json_object_get(
						 e, "offset")));
		} else if (jf) {
			assert_string_equal(field_name(t->field), jf);
		} else {
			assert_int_equal(t->field, 0);
		}
		/* ranges: in the TensorProto, in file order, no overlap */
		for (size_t r = 0; r < t->n_ranges; r++) {
			const tcz_onnx_range *g = &t->ranges[r];
			assert_true(g->off >= last_end);
			assert_true(g->off >= t->proto_off);
			assert_true(g->off + g->len <= t->proto_off + t->proto_len);
			last_end = g->off + g->len;
		}
		if (!t->weight)
			continue;
		unsigned char *v = malloc(t->nbytes + 1);
		assert_non_null(v);
		if (t->kind == TCZ_ONNX_EXTERNAL) {
			char p[8192];
			size_t fl;
			snprintf(p, sizeof p, "%s/%s", dir,
				 om->files[t->file].location);
			unsigned char *fb = slurp(p, &fl);
			assert_non_null(fb);
			assert_true(t->ext_off + t->ext_len <= fl);
			memcpy(v, fb + t->ext_off, t->nbytes);
			free(fb);
		} else {
			assert_int_equal(tcz_onnx_decode_values(t, buf, len, v), 0);
			/* a lossless rebuild gives every range back */
			for (size_t r = 0; t->canonical && r < t->n_ranges; r++) {
				unsigned char *o = malloc(t->ranges[r].len + 1);
				assert_int_equal(tcz_onnx_encode_range(t, r, v, o),
						 0);
				assert_memory_equal(o, buf + t->ranges[r].off,
						    t->ranges[r].len);
				free(o);
			}
		}
		char hex[65];
		tu_sha256_hex(v, t->nbytes, hex);
		const char *js = json_string_value(json_object_get(e, "sha256"));
		if (strcmp(hex, js) != 0)
			fail_msg("%s: tensor '%s': sha256 %s, python %s",
				 model_path, t->name, hex, js);
		free(v);
	}
	json_decref(doc);
	free(buf);
}

static void sha256_known(void **state)
{
	(void)state;
	char hex[65];
	tu_sha256_hex("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb924"
				 "27ae41e4649b934ca495991b7852b855");
	tu_sha256_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
				 "b00361a396177a9cb410ff61f20015ad");
	char m[1000];
	memset(m, 'a', sizeof m);
	tu_sha256_hex(m, 56, hex); /* padding spills into a second block */
	assert_string_equal(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f"
				 "590ce20f1bde7090ef7970686ec6738a");
}

static char gen_dir[] = "/tmp/tcz-onnx-gen-XXXXXX";

static int gen_setup(void **state)
{
	(void)state;
	const char *tests = getenv("TCZ_TESTS_DIR");
	const char *py = getenv("TCZ_PYTHON");
	if (!tests || !mkdtemp(gen_dir))
		return -1;
	char cmd[8192];
	snprintf(cmd, sizeof cmd, "'%s' '%s/tools/make_onnx.py' '%s'",
		 py ? py : "/usr/bin/python3", tests, gen_dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int gen_teardown(void **state)
{
	(void)state;
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", gen_dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void generated(void **state)
{
	(void)state;
	char path[4096], line[256], jp[4096];
	snprintf(path, sizeof path, "%s/MANIFEST", gen_dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		snprintf(path, sizeof path, "%s/%s.onnx", gen_dir, line);
		snprintf(jp, sizeof jp, "%s/%s.json", gen_dir, line);
		tcz_onnx_model om;
		compare_listing(path, jp, &om);
		if (strcmp(line, "ext_one") == 0) {
			assert_int_equal(om.n_files, 1);
			assert_int_equal(om.count.external, 4);
		} else if (strcmp(line, "ext_two") == 0) {
			assert_int_equal(om.n_files, 2);
			assert_string_equal(om.files[1].location,
					    "weights/ext_two_b.data");
			assert_int_equal(om.files[1].n_tensors, 2);
		} else if (strcmp(line, "float_data") == 0) {
			assert_int_equal(om.tensors[1].kind, TCZ_ONNX_PACKED);
			assert_int_equal(om.tensors[3].kind, TCZ_ONNX_VARINT);
		} else if (strcmp(line, "nested") == 0) {
			assert_int_equal(om.count.subgraph, 7);
		} else if (strcmp(line, "function") == 0) {
			assert_int_equal(om.count.function, 1);
			assert_int_equal(om.count.training, 1);
		}
		tcz_onnx_free(&om);
		n++;
	}
	fclose(f);
	assert_true(n >= 8);
}

static void real_model(void **state)
{
	(void)state;
	const char *dir = tu_models_dir(), *tests = getenv("TCZ_TESTS_DIR");
	assert_non_null(dir);
	assert_non_null(tests);
	char path[4096], jp[4096];
	snprintf(path, sizeof path, "%s/silero_vad_16k_op15.onnx", dir);
	snprintf(jp, sizeof jp, "%s/unit/data/silero_vad_16k_op15.json", tests);
	tcz_onnx_model om;
	compare_listing(path, jp, &om);
	assert_int_equal(om.n_tensors, 177);
	assert_int_equal(om.count.initializer, 15);
	assert_int_equal(om.count.constant, 160);
	assert_int_equal(om.count.attribute, 2); /* ConstantOfShape values */
	assert_int_equal(om.count.subgraph, 112);
	assert_int_equal(om.count.external, 0);
	assert_int_equal(om.count.not_weight, 0);
	tcz_onnx_free(&om);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(minimal_model),
		cmocka_unit_test(framing_rules),
		cmocka_unit_test(depth_limit),
		cmocka_unit_test(tensor_rules),
		cmocka_unit_test(external_rules),
		cmocka_unit_test(sparse_rules),
		cmocka_unit_test(attribute_rules),
		cmocka_unit_test(value_encodings),
		cmocka_unit_test(names),
		cmocka_unit_test(every_truncation),
		cmocka_unit_test(external_files),
		cmocka_unit_test(corpus),
		cmocka_unit_test(sha256_known),
	};
	const struct CMUnitTest models[] = {
		cmocka_unit_test(real_model),
	};
	if (argc > 1 && strcmp(argv[1], "generated") == 0) {
		/* python3-onnx writes the models: SKIP without it */
		const char *py = getenv("TCZ_PYTHON");
		char cmd[4096];
		snprintf(cmd, sizeof cmd, "'%s' -c 'import onnx' 2>/dev/null",
			 py ? py : "/usr/bin/python3");
		if (system(cmd) != 0) {
			fprintf(stderr, "python3-onnx is missing: SKIP\n");
			return 77;
		}
		const struct CMUnitTest gen[] = {
			cmocka_unit_test(generated),
		};
		return cmocka_run_group_tests(gen, gen_setup, gen_teardown);
	}
	return tu_main(argc, argv, tests, sizeof tests / sizeof tests[0], models,
		       sizeof models / sizeof models[0]);
}
