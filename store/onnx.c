/* ONNX ModelProto parser: the protobuf wire format read by hand, strictly.
 * Field numbers are those of onnx.proto (public); docs/draft-onnx.md says
 * what is accepted and what is listed. */
#include "store/onnx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* ---- ONNX data types ------------------------------------------------ */

static const struct otype {
	const char *name;
	tcz_dtype dt;  /* TCZ_DT_COUNT: not a weight tensor */
	uint8_t bits;  /* bits of one element in raw_data; 0: no raw_data */
	uint8_t field; /* the typed field that may hold the values */
	uint8_t per;   /* values per element there; 0: one per two elements */
} otypes[TCZ_ONNX_TYPE_MAX + 1] = {
	[1] = {"FLOAT", TCZ_DT_F32, 32, 4, 1},
	[2] = {"UINT8", TCZ_DT_U8, 8, 5, 1},
	[3] = {"INT8", TCZ_DT_I8, 8, 5, 1},
	[4] = {"UINT16", TCZ_DT_U16, 16, 5, 1},
	[5] = {"INT16", TCZ_DT_I16, 16, 5, 1},
	[6] = {"INT32", TCZ_DT_I32, 32, 5, 1},
	[7] = {"INT64", TCZ_DT_I64, 64, 7, 1},
	[8] = {"STRING", TCZ_DT_COUNT, 0, 6, 1},
	[9] = {"BOOL", TCZ_DT_BOOL, 8, 5, 1},
	[10] = {"FLOAT16", TCZ_DT_F16, 16, 5, 1},
	[11] = {"DOUBLE", TCZ_DT_F64, 64, 10, 1},
	[12] = {"UINT32", TCZ_DT_U32, 32, 11, 1},
	[13] = {"UINT64", TCZ_DT_U64, 64, 11, 1},
	[14] = {"COMPLEX64", TCZ_DT_COUNT, 64, 4, 2},
	[15] = {"COMPLEX128", TCZ_DT_COUNT, 128, 10, 2},
	[16] = {"BFLOAT16", TCZ_DT_BF16, 16, 5, 1},
	[17] = {"FLOAT8E4M3FN", TCZ_DT_COUNT, 8, 5, 1},
	[18] = {"FLOAT8E4M3FNUZ", TCZ_DT_COUNT, 8, 5, 1},
	[19] = {"FLOAT8E5M2", TCZ_DT_COUNT, 8, 5, 1},
	[20] = {"FLOAT8E5M2FNUZ", TCZ_DT_COUNT, 8, 5, 1},
	[21] = {"UINT4", TCZ_DT_COUNT, 4, 5, 0},
	[22] = {"INT4", TCZ_DT_COUNT, 4, 5, 0},
	[23] = {"FLOAT4E2M1", TCZ_DT_COUNT, 4, 5, 0},
	[24] = {"FLOAT8E8M0", TCZ_DT_COUNT, 8, 5, 1},
};

const char *tcz_onnx_type_name(int32_t onnx_type)
{
	if (onnx_type < 1 || onnx_type > TCZ_ONNX_TYPE_MAX)
		return "?";
	return otypes[onnx_type].name;
}

/* The range of an int32_data value of this type (the type's own range;
 * float16/bfloat16 and 8-bit floats are their bit patterns). */
static void int32_range(int32_t type, int64_t *lo, int64_t *hi)
{
	switch (type) {
	case TCZ_ONNX_INT32:
		*lo = INT32_MIN, *hi = INT32_MAX;
		break;
	case TCZ_ONNX_INT16:
		*lo = INT16_MIN, *hi = INT16_MAX;
		break;
	case TCZ_ONNX_INT8:
		*lo = INT8_MIN, *hi = INT8_MAX;
		break;
	case TCZ_ONNX_UINT16:
	case TCZ_ONNX_FLOAT16:
	case TCZ_ONNX_BFLOAT16:
		*lo = 0, *hi = UINT16_MAX;
		break;
	case TCZ_ONNX_BOOL:
		*lo = 0, *hi = 1;
		break;
	default: /* UINT8, float8, 4-bit pairs: a byte */
		*lo = 0, *hi = UINT8_MAX;
		break;
	}
}

static const char *const data_field_names[12] = {
	[4] = "float_data", [5] = "int32_data", [6] = "string_data",
	[7] = "int64_data", [9] = "raw_data", [10] = "double_data",
	[11] = "uint64_data",
};

/* ---- small helpers --------------------------------------------------- */

/* A short printable form of s[n] for messages: control bytes escaped,
 * long names cut. */
static const char *shown(char *buf, size_t cap, const char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 8 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (o >= 96) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (ch < 0x20 || ch == 0x7f || ch == '\'' || ch == '\\')
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
		else
			buf[o++] = (char)ch;
	}
	buf[o] = 0;
	return buf;
}

#define SHOWN(buf, s) shown(buf, sizeof buf, (s), strlen(s))

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* A set of strings (not owned) with a value each. */
typedef struct smap {
	const char **keys;
	size_t *vals;
	size_t cap, n;
} smap;

static size_t *smap_get(const smap *m, const char *k)
{
	if (!m->cap)
		return NULL;
	for (size_t i = fnv(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->keys[i])
			return NULL;
		if (strcmp(m->keys[i], k) == 0)
			return &m->vals[i];
	}
}

/* Adds k (not present). Errors: -ENOMEM. */
static int smap_put(smap *m, const char *k, size_t v)
{
	if ((m->n + 1) * 2 > m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 64;
		const char **nk = calloc(nc, sizeof *nk);
		size_t *nv = calloc(nc, sizeof *nv);
		if (!nk || !nv) {
			free(nk);
			free(nv);
			return -ENOMEM;
		}
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->keys[i])
				continue;
			size_t j = fnv(m->keys[i]) & (nc - 1);
			while (nk[j])
				j = (j + 1) & (nc - 1);
			nk[j] = m->keys[i];
			nv[j] = m->vals[i];
		}
		free(m->keys);
		free(m->vals);
		m->keys = nk;
		m->vals = nv;
		m->cap = nc;
	}
	size_t i = fnv(k) & (m->cap - 1);
	while (m->keys[i])
		i = (i + 1) & (m->cap - 1);
	m->keys[i] = k;
	m->vals[i] = v;
	m->n++;
	return 0;
}

static void smap_free(smap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof *m);
}

/* Grows *p (elements of size sz) to hold n + 1. Errors: -ENOMEM. */
static int grow(void *p, size_t *cap, size_t n, size_t sz)
{
	if (n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 8;
	if (nc > SIZE_MAX / sz)
		return -ENOMEM;
	void *q = realloc(*(void **)p, nc * sz);
	if (!q)
		return -ENOMEM;
	*(void **)p = q;
	*cap = nc;
	return 0;
}

/* Reads a varint at b[*pos], below end. 0, or -1 truncated, -2 longer
 * than 10 bytes, -3 above 2^64 - 1. */
static int varint(const uint8_t *b, size_t *pos, size_t end, uint64_t *v)
{
	uint64_t x = 0;
	size_t p = *pos;
	for (unsigned i = 0;; i++) {
		if (p >= end)
			return -1;
		uint8_t byte = b[p++];
		if (i == 9) {
			if (byte & 0x80)
				return -2;
			if (byte > 1)
				return -3;
		}
		x |= (uint64_t)(byte & 0x7f) << (7 * i);
		if (!(byte & 0x80))
			break;
	}
	*v = x;
	*pos = p;
	return 0;
}

static unsigned varint_size(uint64_t v)
{
	unsigned n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static bool is_int32(uint64_t v)
{
	return v <= INT32_MAX || v >= (uint64_t)(int64_t)INT32_MIN;
}

/* ---- the parser state ------------------------------------------------- */

typedef struct frame {
	const struct frame *up;
	char label[320]; /* "tensor 'x'", "node 'n' attribute 'a'", ... */
} frame;

typedef struct pctx {
	const uint8_t *b;
	size_t len;
	tcz_onnx_model *m;
	char *err;
	size_t errlen;
	unsigned depth;
	const frame *top;
	size_t cap_tensors, cap_files, cap_opsets;
	smap files; /* location -> index */
	uint64_t extra_ranges, max_extra_ranges;
	uint64_t name_bytes, max_name_bytes;
	bool in_function, in_training;
} pctx;

static int fail(pctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(pctx *c, const char *fmt, ...)
{
	if (c->err && c->errlen) {
		int n = snprintf(c->err, c->errlen, "%s: ",
				 c->top ? c->top->label : "model");
		if (n >= 0 && (size_t)n < c->errlen) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return -EBADMSG;
}

static void push(pctx *c, frame *f, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void push(pctx *c, frame *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->label, sizeof f->label, fmt, ap);
	va_end(ap);
	f->up = c->top;
	c->top = f;
}

static void pop(pctx *c, const frame *f)
{
	c->top = f->up;
}

static int enter(pctx *c)
{
	if (++c->depth > TCZ_ONNX_MAX_DEPTH)
		return fail(c, "messages nested deeper than %u levels",
			    TCZ_ONNX_MAX_DEPTH);
	return 0;
}

/* One field of a message. */
typedef struct fld {
	uint32_t num;
	unsigned wt;
	size_t at;    /* the tag */
	size_t off;   /* the value (VARINT, I32, I64) or the payload (LEN) */
	uint64_t len; /* bytes at off */
	uint64_t v;   /* VARINT value; I32 / I64 little-endian value */
} fld;

static int varint_fail(pctx *c, int r, size_t at, const char *what)
{
	switch (r) {
	case -1:
		return fail(c, "%s: varint at byte %zu runs past the end of "
			    "the enclosing message", what, at);
	case -2:
		return fail(c, "%s: varint at byte %zu is longer than 10 bytes",
			    what, at);
	default:
		return fail(c, "%s: varint at byte %zu overflows 64 bits", what,
			    at);
	}
}

/* The next field of the message ending at end: 1, 0 at its end, or an
 * error. Checks the tag, the wire type and that the value fits. */
static int next_field(pctx *c, size_t *pos, size_t end, fld *f)
{
	if (*pos >= end)
		return 0;
	uint64_t tag;
	f->at = *pos;
	int r = varint(c->b, pos, end, &tag);
	if (r)
		return varint_fail(c, r, f->at, "field tag");
	if (tag > UINT32_MAX)
		return fail(c, "field tag %llu at byte %zu overflows 32 bits",
			    (unsigned long long)tag, f->at);
	f->num = (uint32_t)(tag >> 3);
	f->wt = (unsigned)(tag & 7);
	if (f->num == 0)
		return fail(c, "field number 0 at byte %zu", f->at);
	char what[48];
	snprintf(what, sizeof what, "field %u", f->num);
	switch (f->wt) {
	case WT_VARINT:
		f->off = *pos;
		r = varint(c->b, pos, end, &f->v);
		if (r)
			return varint_fail(c, r, f->off, what);
		f->len = *pos - f->off;
		return 1;
	case WT_I64:
	case WT_I32: {
		size_t n = f->wt == WT_I64 ? 8 : 4;
		if (end - *pos < n)
			return fail(c, "%s: %zu-byte value at byte %zu runs past "
				    "the end of the enclosing message", what, n,
				    *pos);
		f->off = *pos;
		f->len = n;
		f->v = 0;
		for (size_t i = 0; i < n; i++)
			f->v |= (uint64_t)c->b[*pos + i] << (8 * i);
		*pos += n;
		return 1;
	}
	case WT_LEN: {
		size_t lat = *pos;
		uint64_t l;
		r = varint(c->b, pos, end, &l);
		if (r)
			return varint_fail(c, r, lat, what);
		if (l > end - *pos)
			return fail(c, "%s: length %llu at byte %zu runs past the "
				    "end of the enclosing message (%zu bytes "
				    "left)", what, (unsigned long long)l, lat,
				    end - *pos);
		f->off = *pos;
		f->len = l;
		*pos += (size_t)l;
		return 1;
	}
	case 3:
	case 4:
		return fail(c, "%s at byte %zu: groups (wire type %u) are not "
			    "supported", what, f->at, f->wt);
	default:
		return fail(c, "%s at byte %zu: invalid wire type %u", what,
			    f->at, f->wt);
	}
}

static const char *wt_name(unsigned wt)
{
	switch (wt) {
	case WT_VARINT:
		return "varint";
	case WT_I64:
		return "fixed64";
	case WT_LEN:
		return "length-delimited";
	default:
		return "fixed32";
	}
}

/* The field has wire type a (or b, when b >= 0). */
static int want(pctx *c, const fld *f, const char *name, unsigned a, int b)
{
	if (f->wt == a || (b >= 0 && f->wt == (unsigned)b))
		return 0;
	return fail(c, "field %u (%s) at byte %zu is %s, expected %s%s%s",
		    f->num, name, f->at, wt_name(f->wt), wt_name(a),
		    b >= 0 ? " or " : "", b >= 0 ? wt_name((unsigned)b) : "");
}

/* A singular field (number < 64) seen once only. */
static int once(pctx *c, uint64_t *seen, const fld *f, const char *name)
{
	uint64_t bit = f->num < 64 ? 1ull << f->num : 0;
	if (*seen & bit)
		return fail(c, "field %u (%s) appears twice (at byte %zu)",
			    f->num, name, f->at);
	*seen |= bit;
	return 0;
}

static int want_once(pctx *c, uint64_t *seen, const fld *f,
		     const char *name, unsigned wt)
{
	int rc = want(c, f, name, wt, -1);
	return rc ? rc : once(c, seen, f, name);
}

/* A varint value of an int32 / enum field. */
static int want_int32(pctx *c, const fld *f, const char *name)
{
	if (!is_int32(f->v))
		return fail(c, "field %u (%s): value %llu at byte %zu overflows "
			    "int32", f->num, name, (unsigned long long)f->v,
			    f->off);
	return 0;
}

/* A copy of a string field (no NUL byte inside). Errors: -EBADMSG, -ENOMEM. */
static int get_str(pctx *c, const fld *f, const char *name, char **out)
{
	if (memchr(c->b + f->off, 0, (size_t)f->len))
		return fail(c, "%s at byte %zu contains a NUL byte", name,
			    f->off);
	char *s = malloc((size_t)f->len + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, c->b + f->off, (size_t)f->len);
	s[f->len] = 0;
	free(*out);
	*out = s;
	return 0;
}

/* Silent look-up of the first LEN field num of a message (names for
 * messages and generated names; the full parse checks the bytes). */
static bool peek(const uint8_t *b, size_t pos, size_t end, uint32_t num,
		 size_t *off, size_t *len)
{
	while (pos < end) {
		uint64_t tag, v;
		if (varint(b, &pos, end, &tag) || tag > UINT32_MAX)
			return false;
		unsigned wt = (unsigned)(tag & 7);
		switch (wt) {
		case WT_VARINT:
			if (varint(b, &pos, end, &v))
				return false;
			break;
		case WT_I64:
		case WT_I32: {
			size_t n = wt == WT_I64 ? 8 : 4;
			if (end - pos < n)
				return false;
			pos += n;
			break;
		}
		case WT_LEN:
			if (varint(b, &pos, end, &v) || v > end - pos)
				return false;
			if ((tag >> 3) == num) {
				*off = pos;
				*len = (size_t)v;
				return true;
			}
			pos += (size_t)v;
			break;
		default:
			return false;
		}
	}
	return false;
}

/* The peeked string field num as a C string in buf (cut to cap - 1 bytes;
 * "" when absent or holding a NUL). */
static const char *peek_str(pctx *c, size_t off, size_t end, uint32_t num,
			    char *buf, size_t cap, size_t *full_len)
{
	size_t o, l;
	buf[0] = 0;
	*full_len = 0;
	if (!peek(c->b, off, end, num, &o, &l) || memchr(c->b + o, 0, l))
		return buf;
	*full_len = l;
	if (l >= cap)
		l = cap - 1;
	memcpy(buf, c->b + o, l);
	buf[l] = 0;
	return buf;
}

/* Walks a message's fields, checking each is well formed; the contents
 * of its length-delimited fields are not interpreted. */
static int skim(pctx *c, size_t off, size_t end)
{
	int rc = enter(c);
	fld f;
	while (rc == 0 && (rc = next_field(c, &off, end, &f)) == 1)
		rc = 0;
	c->depth--;
	return rc < 0 ? rc : 0;
}

/* Validates the varints of a packed payload; *n counts them. */
static int packed_varints(pctx *c, const fld *f, const char *name,
			  uint64_t *n)
{
	size_t p = f->off, end = f->off + (size_t)f->len;
	*n = 0;
	while (p < end) {
		uint64_t v;
		size_t at = p;
		int r = varint(c->b, &p, end, &v);
		if (r)
			return varint_fail(c, r, at, name);
		(*n)++;
	}
	return 0;
}

/* malloc'd printf, NULL in *out when longer than TCZ_ONNX_NAME_MAX.
 * Errors: -ENOMEM. */
static int mkname(char **out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int mkname(char **out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	*out = NULL;
	if (n < 0 || (size_t)n > TCZ_ONNX_NAME_MAX)
		return 0;
	char *s = malloc((size_t)n + 1);
	if (!s)
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	*out = s;
	return 0;
}

/* ---- TensorProto ------------------------------------------------------ */

typedef struct site {
	tcz_onnx_where where;
	tcz_onnx_part part;
	uint32_t depth;
	const char *cand;  /* the name when the TensorProto has none; NULL:
			    * it would be too long */
	const char *where_s; /* for messages about an unnamed tensor */
} site;

static int add_range(pctx *c, tcz_onnx_tensor *t, size_t *cap, uint64_t off,
		     uint64_t len, uint64_t first, uint64_t count, bool tagged)
{
	if (t->n_ranges) {
		if (++c->extra_ranges > c->max_extra_ranges)
			return fail(c, "values split into more pieces than the "
				    "file size allows (%llu)",
				    (unsigned long long)c->max_extra_ranges);
	}
	if (grow(&t->ranges, cap, t->n_ranges, sizeof *t->ranges))
		return -ENOMEM;
	t->ranges[t->n_ranges++] = (tcz_onnx_range){off, len, first, count,
						     tagged};
	return 0;
}

/* One element of an unpacked repeated field (value at f->off): extends a
 * tagged run when its 1-byte tag directly follows the previous one. */
static int add_unpacked(pctx *c, tcz_onnx_tensor *t, size_t *cap,
			const fld *f, uint64_t first)
{
	bool short_tag = f->off - f->at == 1;
	if (short_tag && t->n_ranges) {
		tcz_onnx_range *r = &t->ranges[t->n_ranges - 1];
		if (r->tagged && r->off + r->len == f->at) {
			r->len += 1 + f->len;
			r->count++;
			return 0;
		}
	}
	if (short_tag)
		return add_range(c, t, cap, f->at, 1 + f->len, first, 1, true);
	return add_range(c, t, cap, f->off, f->len, first, 1, false);
}

/* A decimal offset or length of external_data. */
static bool decimal(const char *s, uint64_t *v)
{
	uint64_t x = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (x > ((uint64_t)INT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	*v = x;
	return true;
}

/* The normalized form of a relative location; refuses what could leave
 * the model directory. */
static int norm_location(pctx *c, const char *loc, char **out)
{
	char sb[128];
	size_t n = strlen(loc);
	if (n == 0)
		return fail(c, "external_data location is empty");
	if (loc[0] == '/')
		return fail(c, "external_data location '%s' is an absolute "
			    "path", SHOWN(sb, loc));
	if (loc[n - 1] == '/')
		return fail(c, "external_data location '%s' ends with '/'",
			    SHOWN(sb, loc));
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)loc[i] < 0x20 || loc[i] == 0x7f)
			return fail(c, "external_data location '%s' holds a "
				    "control character", SHOWN(sb, loc));
	char *s = malloc(n + 1);
	if (!s)
		return -ENOMEM;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && loc[j] != '/')
			j++;
		size_t cl = j - i;
		if (cl == 2 && loc[i] == '.' && loc[i + 1] == '.') {
			free(s);
			return fail(c, "external_data location '%s' escapes the "
				    "model directory ('..')", SHOWN(sb, loc));
		}
		if (cl && !(cl == 1 && loc[i] == '.')) {
			if (o)
				s[o++] = '/';
			memcpy(s + o, loc + i, cl);
			o += cl;
		}
		i = j + 1;
	}
	s[o] = 0;
	if (o == 0) {
		free(s);
		return fail(c, "external_data location '%s' names no file",
			    SHOWN(sb, loc));
	}
	*out = s;
	return 0;
}

/* The index of the external file named loc (taken over or freed). */
static int file_index(pctx *c, char *loc, size_t *idx)
{
	size_t *v = smap_get(&c->files, loc);
	if (v) {
		free(loc);
		*idx = *v;
		c->m->files[*idx].n_tensors++;
		return 0;
	}
	tcz_onnx_model *m = c->m;
	if (grow(&m->files, &c->cap_files, m->n_files, sizeof *m->files)) {
		free(loc);
		return -ENOMEM;
	}
	*idx = m->n_files;
	m->files[m->n_files++] = (tcz_onnx_file){loc, 1, 0};
	return smap_put(&c->files, loc, *idx);
}

typedef struct ext {
	char *location;
	uint64_t offset, length;
	bool has_offset, has_length, has_checksum, has_basepath;
	size_t n_entries;
} ext;

/* One StringStringEntryProto of external_data. */
static int parse_ext_entry(pctx *c, size_t off, size_t end, ext *e)
{
	int rc = enter(c);
	char *key = NULL, *value = NULL;
	uint64_t seen = 0;
	fld f;
	while (rc == 0 && (rc = next_field(c, &off, end, &f)) == 1) {
		rc = 0;
		if (f.num == 1 || f.num == 2) {
			const char *nm = f.num == 1 ? "key" : "value";
			rc = want_once(c, &seen, &f, nm, WT_LEN);
			if (rc == 0)
				rc = get_str(c, &f, f.num == 1
						     ? "external_data key"
						     : "external_data value",
					     f.num == 1 ? &key : &value);
		}
	}
	if (rc < 0)
		goto out;
	rc = 0;
	char kb[128], vb[128];
	const char *k = key ? key : "", *v = value ? value : "";
	bool *flag = NULL;
	uint64_t *num = NULL;
	if (strcmp(k, "location") == 0) {
		if (e->location) {
			rc = fail(c, "external_data key 'location' given twice");
			goto out;
		}
		e->location = value ? value : strdup("");
		value = NULL;
		if (!e->location)
			rc = -ENOMEM;
		goto out;
	} else if (strcmp(k, "offset") == 0) {
		flag = &e->has_offset, num = &e->offset;
	} else if (strcmp(k, "length") == 0) {
		flag = &e->has_length, num = &e->length;
	} else if (strcmp(k, "checksum") == 0) {
		flag = &e->has_checksum;
	} else if (strcmp(k, "basepath") == 0) {
		flag = &e->has_basepath;
	} else {
		rc = fail(c, "unknown external_data key '%s'", SHOWN(kb, k));
		goto out;
	}
	if (*flag) {
		rc = fail(c, "external_data key '%s' given twice", k);
		goto out;
	}
	*flag = true;
	if (num && !decimal(v, num))
		rc = fail(c, "external_data %s '%s' is not a decimal number "
			  "below 2^63", k, SHOWN(vb, v));
out:
	free(key);
	free(value);
	c->depth--;
	return rc;
}

static tcz_onnx_tensor *new_tensor(pctx *c)
{
	tcz_onnx_model *m = c->m;
	if (grow(&m->tensors, &c->cap_tensors, m->n_tensors,
		 sizeof *m->tensors))
		return NULL;
	tcz_onnx_tensor *t = &m->tensors[m->n_tensors++];
	memset(t, 0, sizeof *t);
	t->dtype = TCZ_DT_COUNT;
	t->canonical = true;
	return t;
}

/* A dims value (varint) appended to *dims. */
static int add_dim(pctx *c, uint64_t **dims, uint32_t *nd, uint64_t v,
		   size_t at)
{
	if (*nd >= TCZ_ONNX_MAX_DIMS)
		return fail(c, "more than %u dims", TCZ_ONNX_MAX_DIMS);
	if (v > INT64_MAX)
		return fail(c, "dims[%u] at byte %zu is negative (%lld)", *nd,
			    at, (long long)v);
	if (!*dims) {
		*dims = calloc(TCZ_ONNX_MAX_DIMS, sizeof **dims);
		if (!*dims)
			return -ENOMEM;
	}
	(*dims)[(*nd)++] = v;
	return 0;
}

/* dims from a field 'dims' (packed or not). */
static int read_dims(pctx *c, const fld *f, uint64_t **dims, uint32_t *nd)
{
	int rc = want(c, f, "dims", WT_VARINT, WT_LEN);
	if (rc)
		return rc;
	if (f->wt == WT_VARINT)
		return add_dim(c, dims, nd, f->v, f->off);
	size_t p = f->off, end = f->off + (size_t)f->len;
	while (p < end) {
		uint64_t v;
		size_t at = p;
		int r = varint(c->b, &p, end, &v);
		if (r)
			return varint_fail(c, r, at, "dims");
		if ((rc = add_dim(c, dims, nd, v, at)))
			return rc;
	}
	return 0;
}

/* The element count of dims; fails on an overflow. Counts above 2^59 are
 * refused so that 16 bytes per element still fit in an int64. */
static int numel_of(pctx *c, const uint64_t *dims, uint32_t nd, uint64_t *out)
{
	uint64_t n = 1;
	bool over = false;
	for (uint32_t i = 0; i < nd; i++) {
		if (dims[i] == 0) {
			*out = 0;
			return 0;
		}
		if (n > (1ull << 59) / dims[i])
			over = true;
		else
			n *= dims[i];
	}
	if (over || n > (1ull << 59))
		return fail(c, "dims give more than 2^59 elements");
	*out = n;
	return 0;
}

static void dims_str(char *buf, size_t cap, const uint64_t *d, uint32_t nd)
{
	size_t o = (size_t)snprintf(buf, cap, "[");
	for (uint32_t i = 0; i < nd && o < cap; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s%llu", i ? "," : "",
				      (unsigned long long)d[i]);
	if (o < cap)
		snprintf(buf + o, cap - o, "]");
}

/* Decodes element value i of range r (tagged: skipping the tag). */
static size_t range_end(const tcz_onnx_range *r)
{
	return (size_t)(r->off + r->len);
}

/* Checks the varints of the tensor's ranges: count, the field's type
 * (int32), the dtype's range; sets canonical. */
static int check_varints(pctx *c, tcz_onnx_tensor *t, uint64_t *count)
{
	int64_t lo = 0, hi = 0;
	bool i32 = t->field == 5, u32 = t->onnx_type == TCZ_ONNX_UINT32;
	if (i32)
		int32_range(t->onnx_type, &lo, &hi);
	*count = 0;
	for (size_t k = 0; k < t->n_ranges; k++) {
		const tcz_onnx_range *r = &t->ranges[k];
		size_t p = (size_t)r->off, end = range_end(r);
		while (p < end) {
			if (r->tagged)
				p++;
			uint64_t v;
			size_t at = p;
			if (varint(c->b, &p, end, &v))
				return fail(c, "%s: bad varint at byte %zu",
					    data_field_names[t->field], at);
			if (p - at != varint_size(v))
				t->canonical = false;
			if (i32) {
				if (!is_int32(v))
					return fail(c, "int32_data value %llu "
						    "at byte %zu overflows "
						    "int32",
						    (unsigned long long)v, at);
				int64_t s = (int64_t)v;
				if (s < lo || s > hi)
					return fail(c, "int32_data value %lld "
						    "at byte %zu is out of "
						    "range for %s",
						    (long long)s, at,
						    tcz_onnx_type_name(
							    t->onnx_type));
			} else if (u32 && v > UINT32_MAX) {
				return fail(c, "uint64_data value %llu at byte "
					    "%zu is out of range for UINT32",
					    (unsigned long long)v, at);
			}
			(*count)++;
		}
	}
	return 0;
}

static int parse_tensor(pctx *c, size_t off, size_t end, const site *s,
			size_t *index)
{
	char nb[128], lb[128];
	size_t full;
	const char *pn = peek_str(c, off, end, 8, lb, sizeof lb, &full);
	frame fr;
	(void)full;
	if (*pn)
		push(c, &fr, "tensor '%s'", SHOWN(nb, pn));
	else if (s->cand)
		push(c, &fr, "tensor '%s' (unnamed)", SHOWN(nb, s->cand));
	else
		push(c, &fr, "unnamed tensor in %s", s->where_s);
	int rc = enter(c);
	if (rc) {
		pop(c, &fr);
		return rc;
	}
	tcz_onnx_tensor *t = new_tensor(c);
	if (!t) {
		pop(c, &fr);
		return -ENOMEM;
	}
	*index = c->m->n_tensors - 1;
	t->where = s->where;
	t->part = s->part;
	t->depth = s->depth;
	t->in_function = c->in_function;
	t->in_training = c->in_training;
	t->proto_off = off;
	t->proto_len = end - off;
	if (!(t->proto_name = strdup("")))
		return -ENOMEM;

	uint64_t seen = 0, nvals = 0, nstrings = 0;
	int64_t data_type = 0, location = 0;
	size_t cap = 0;
	ext e = {0};
	fld f;
	while ((rc = next_field(c, &off, end, &f)) == 1) {
		rc = 0;
		uint32_t n = f.num;
		bool data = n == 4 || n == 5 || n == 6 || n == 7 || n == 9 ||
			    n == 10 || n == 11;
		if (data) {
			if (t->field && t->field != n) {
				rc = fail(c, "has both %s and %s",
					  data_field_names[t->field],
					  data_field_names[n]);
				break;
			}
			t->field = n;
		}
		switch (n) {
		case 1:
			rc = read_dims(c, &f, &t->dims, &t->ndim);
			break;
		case 2:
			if (!(rc = want_once(c, &seen, &f, "data_type",
					     WT_VARINT)) &&
			    !(rc = want_int32(c, &f, "data_type")))
				data_type = (int32_t)f.v;
			break;
		case 3:
			rc = fail(c, "field 3 (segment): segmented tensors are "
				  "not supported");
			break;
		case 4:
		case 10: {
			unsigned w = n == 4 ? 4 : 8;
			const char *nm = data_field_names[n];
			rc = want(c, &f, nm, n == 4 ? WT_I32 : WT_I64, WT_LEN);
			if (rc)
				break;
			if (f.wt != WT_LEN) {
				rc = add_unpacked(c, t, &cap, &f, nvals);
				nvals++;
			} else if (f.len % w) {
				rc = fail(c, "%s: packed length %llu at byte "
					  "%zu is not a multiple of %u", nm,
					  (unsigned long long)f.len, f.off, w);
			} else if (f.len) {
				rc = add_range(c, t, &cap, f.off, f.len, nvals,
					       f.len / w, false);
				nvals += f.len / w;
			}
			break;
		}
		case 5:
		case 7:
		case 11: {
			const char *nm = data_field_names[n];
			rc = want(c, &f, nm, WT_VARINT, WT_LEN);
			if (rc)
				break;
			if (f.wt == WT_VARINT) {
				rc = add_unpacked(c, t, &cap, &f, nvals);
				nvals++;
			} else if (f.len) {
				uint64_t k;
				rc = packed_varints(c, &f, nm, &k);
				if (rc == 0)
					rc = add_range(c, t, &cap, f.off, f.len,
						       nvals, k, false);
				nvals += k;
			}
			break;
		}
		case 6:
			rc = want(c, &f, "string_data", WT_LEN, -1);
			nstrings++;
			break;
		case 8:
			if (!(rc = want_once(c, &seen, &f, "name", WT_LEN)))
				rc = get_str(c, &f, "name", &t->proto_name);
			break;
		case 9:
			if (!(rc = want_once(c, &seen, &f, "raw_data", WT_LEN)))
				rc = add_range(c, t, &cap, f.off, f.len, 0, 0,
					       false);
			break;
		case 12:
			rc = want_once(c, &seen, &f, "doc_string", WT_LEN);
			break;
		case 13:
			if (!(rc = want(c, &f, "external_data", WT_LEN, -1))) {
				rc = parse_ext_entry(c, f.off,
						     f.off + (size_t)f.len, &e);
				e.n_entries++;
			}
			break;
		case 14:
			if (!(rc = want_once(c, &seen, &f, "data_location",
					     WT_VARINT)) &&
			    !(rc = want_int32(c, &f, "data_location")))
				location = (int32_t)f.v;
			break;
		default: /* unknown (metadata_props, later fields): skipped */
			break;
		}
		if (rc)
			break;
	}
	if (rc < 0)
		goto out;
	rc = 0;

	/* the type */
	if (!(seen & (1u << 2))) {
		rc = fail(c, "no data_type");
		goto out;
	}
	if (data_type < 1 || data_type > TCZ_ONNX_TYPE_MAX) {
		rc = fail(c, "unknown data_type %lld", (long long)data_type);
		goto out;
	}
	const struct otype *ot = &otypes[data_type];
	t->onnx_type = (int32_t)data_type;
	t->dtype = ot->dt;
	t->weight = ot->dt != TCZ_DT_COUNT;
	if ((rc = numel_of(c, t->dims, t->ndim, &t->numel)))
		goto out;
	uint64_t raw_bytes = ot->bits == 4 ? (t->numel + 1) / 2
					   : t->numel * (ot->bits / 8);
	t->nbytes = raw_bytes;
	char db[400];
	dims_str(db, sizeof db, t->dims, t->ndim);

	if (location != 0 && location != 1) {
		rc = fail(c, "unknown data_location %lld", (long long)location);
		goto out;
	}
	if (location == 1) {
		if (t->field || nvals || nstrings) {
			rc = fail(c, "data_location is EXTERNAL but the tensor "
				  "also holds %s",
				  data_field_names[t->field ? t->field : 6]);
			goto out;
		}
		if (data_type == TCZ_ONNX_STRING) {
			rc = fail(c, "a STRING tensor cannot be external");
			goto out;
		}
		if (!e.location) {
			rc = fail(c, "external_data has no location");
			goto out;
		}
		if (e.has_length && e.length != raw_bytes) {
			rc = fail(c, "external_data length %llu but %s %s needs "
				  "%llu bytes", (unsigned long long)e.length,
				  ot->name, db, (unsigned long long)raw_bytes);
			goto out;
		}
		if (e.offset > (uint64_t)INT64_MAX - raw_bytes) {
			rc = fail(c, "external_data offset %llu + length "
				  "overflows", (unsigned long long)e.offset);
			goto out;
		}
		char *norm = NULL;
		if ((rc = norm_location(c, e.location, &norm)))
			goto out;
		if ((rc = file_index(c, norm, &t->file)))
			goto out;
		t->kind = TCZ_ONNX_EXTERNAL;
		t->field = 0;
		t->ext_off = e.offset;
		t->ext_len = raw_bytes;
		t->ext_has_length = e.has_length;
		goto out;
	}
	if (e.n_entries) {
		rc = fail(c, "external_data entries but data_location is not "
			  "EXTERNAL");
		goto out;
	}

	/* inline data */
	if (t->field == 0) {
		if (t->numel) {
			rc = fail(c, "no data for %s %s (%llu elements)",
				  ot->name, db, (unsigned long long)t->numel);
			goto out;
		}
		t->kind = TCZ_ONNX_EMPTY;
		goto out;
	}
	if (t->field == 9) {
		if (data_type == TCZ_ONNX_STRING) {
			rc = fail(c, "raw_data in a STRING tensor");
			goto out;
		}
		if (t->ranges[0].len != raw_bytes) {
			rc = fail(c, "raw_data has %llu bytes but %s %s needs "
				  "%llu", (unsigned long long)t->ranges[0].len,
				  ot->name, db, (unsigned long long)raw_bytes);
			goto out;
		}
		t->ranges[0].count = t->numel;
		t->kind = TCZ_ONNX_RAW;
	} else {
		if (t->field != ot->field) {
			rc = fail(c, "%s cannot hold %s values",
				  data_field_names[t->field], ot->name);
			goto out;
		}
		uint64_t want_n = ot->per ? t->numel * ot->per
					  : (t->numel + 1) / 2;
		uint64_t got = nvals;
		if (t->field == 6) {
			got = nstrings;
			t->kind = TCZ_ONNX_STRING_DATA;
		} else if (t->field == 4 || t->field == 10) {
			t->kind = TCZ_ONNX_PACKED;
			for (size_t k = 0; k < t->n_ranges; k++)
				if (t->ranges[k].tagged)
					t->kind = TCZ_ONNX_UNPACKED;
		} else {
			t->kind = TCZ_ONNX_VARINT;
			if ((rc = check_varints(c, t, &got)))
				goto out;
		}
		if (got != want_n) {
			rc = fail(c, "%s holds %llu values but %s %s needs %llu",
				  data_field_names[t->field],
				  (unsigned long long)got, ot->name, db,
				  (unsigned long long)want_n);
			goto out;
		}
	}
	if (t->numel == 0 || t->kind == TCZ_ONNX_STRING_DATA) {
		if (t->numel == 0)
			t->kind = TCZ_ONNX_EMPTY;
		free(t->ranges);
		t->ranges = NULL;
		t->n_ranges = 0;
	}
out:
	if (rc == 0 && !t->proto_name[0]) {
		if (!s->cand)
			rc = fail(c, "its generated name would be longer than %u "
				  "bytes (names of enclosing nodes too long)",
				  TCZ_ONNX_NAME_MAX);
		else if (!(t->name = strdup(s->cand)))
			rc = -ENOMEM;
		else
			c->name_bytes += strlen(s->cand) + 1;
	}
	if (rc == 0 && c->name_bytes > c->max_name_bytes)
		rc = fail(c, "generated names take more than %llu bytes "
			  "(names of enclosing nodes too long)",
			  (unsigned long long)c->max_name_bytes);
	free(e.location);
	c->depth--;
	pop(c, &fr);
	return rc;
}

/* ---- SparseTensorProto ------------------------------------------------ */

static int parse_sparse(pctx *c, size_t off, size_t end, const site *s)
{
	/* the name: values.name, else the place */
	char vn[TCZ_ONNX_NAME_MAX + 1], nb[128];
	size_t vo, vl, full = 0;
	vn[0] = 0;
	if (peek(c->b, off, end, 1, &vo, &vl))
		peek_str(c, vo, vo + vl, 8, vn, sizeof vn, &full);
	if (full > TCZ_ONNX_NAME_MAX)
		vn[0] = 0; /* cut: use the place instead */
	const char *base = vn[0] ? vn : s->cand;
	frame fr;
	if (base)
		push(c, &fr, "sparse tensor '%s'", SHOWN(nb, base));
	else
		push(c, &fr, "sparse tensor in %s", s->where_s);
	int rc = enter(c);
	if (rc) {
		pop(c, &fr);
		return rc;
	}
	char *ind = NULL;
	uint64_t seen = 0, *dims = NULL;
	uint32_t nd = 0;
	if (base && (rc = mkname(&ind, "%s:indices", base)))
		goto out;
	site sv = *s, si = *s;
	sv.part = TCZ_ONNX_SPARSE_VALUES;
	sv.cand = base;
	si.part = TCZ_ONNX_SPARSE_INDICES;
	si.cand = ind;
	size_t iv = SIZE_MAX, ii = SIZE_MAX;
	fld f;
	while ((rc = next_field(c, &off, end, &f)) == 1) {
		rc = 0;
		if (f.num == 1) {
			if (!(rc = want_once(c, &seen, &f, "values", WT_LEN)))
				rc = parse_tensor(c, f.off, f.off + (size_t)f.len,
						  &sv, &iv);
		} else if (f.num == 2) {
			if (!(rc = want_once(c, &seen, &f, "indices", WT_LEN)))
				rc = parse_tensor(c, f.off, f.off + (size_t)f.len,
						  &si, &ii);
		} else if (f.num == 3) {
			rc = read_dims(c, &f, &dims, &nd);
		}
		if (rc)
			break;
	}
	if (rc < 0)
		goto out;
	rc = 0;
	uint64_t dense;
	if (iv == SIZE_MAX) {
		rc = fail(c, "no values");
	} else if (ii == SIZE_MAX) {
		rc = fail(c, "no indices");
	} else if (nd == 0) {
		rc = fail(c, "no dims");
	} else if (!(rc = numel_of(c, dims, nd, &dense))) {
		const tcz_onnx_tensor *v = &c->m->tensors[iv];
		const tcz_onnx_tensor *x = &c->m->tensors[ii];
		if (v->ndim != 1)
			rc = fail(c, "values have %u dims, not 1", v->ndim);
		else if (v->dims[0] > dense)
			rc = fail(c, "%llu values but the dense shape holds "
				  "%llu", (unsigned long long)v->dims[0],
				  (unsigned long long)dense);
		else if (x->onnx_type != TCZ_ONNX_INT64)
			rc = fail(c, "indices are %s, not INT64",
				  tcz_onnx_type_name(x->onnx_type));
		else if (!((x->ndim == 1 && x->dims[0] == v->dims[0]) ||
			   (x->ndim == 2 && x->dims[0] == v->dims[0] &&
			    x->dims[1] == nd)))
			rc = fail(c, "indices shape is neither [%llu] nor "
				  "[%llu,%u]", (unsigned long long)v->dims[0],
				  (unsigned long long)v->dims[0], nd);
	}
out:
	free(dims);
	free(ind);
	c->depth--;
	pop(c, &fr);
	return rc;
}

/* ---- graphs, nodes, attributes ---------------------------------------- */

static int parse_graph(pctx *c, size_t off, size_t end, const char *place,
		       uint32_t depth);

/* AttributeProto.type -> the field holding its value. */
static const uint8_t attr_field[15] = {
	[1] = 2, [2] = 3, [3] = 4, [4] = 5, [5] = 6, [6] = 7, [7] = 8,
	[8] = 9, [9] = 10, [10] = 11, [11] = 22, [12] = 23, [13] = 14,
	[14] = 15,
};

static const char *attr_field_name(uint32_t n)
{
	switch (n) {
	case 2: return "f";
	case 3: return "i";
	case 4: return "s";
	case 5: return "t";
	case 6: return "g";
	case 7: return "floats";
	case 8: return "ints";
	case 9: return "strings";
	case 10: return "tensors";
	case 11: return "graphs";
	case 14: return "tp";
	case 15: return "type_protos";
	case 22: return "sparse_tensor";
	case 23: return "sparse_tensors";
	default: return NULL;
	}
}

/* nodeid: the node's name or "#index"; NULL for a function's attribute
 * defaults ("default"). */
static int parse_attribute(pctx *c, size_t off, size_t end, const char *place,
			   uint32_t depth, const char *nodeid,
			   const char *nodelab, bool constant, size_t aidx)
{
	char an[256], nb[128];
	size_t full;
	peek_str(c, off, end, 1, an, sizeof an, &full);
	frame fr;
	if (!an[0]) {
		push(c, &fr, "%s", nodelab);
		int r = fail(c, "attribute #%zu has no name", aidx);
		pop(c, &fr);
		return r;
	}
	push(c, &fr, "%s attribute '%s'", nodelab, SHOWN(nb, an));
	int rc = enter(c);
	if (rc) {
		pop(c, &fr);
		return rc;
	}
	/* the attribute's name in full, for generated names */
	char *aname = NULL, *prefix = NULL;
	size_t ao, al;
	peek(c->b, off, end, 1, &ao, &al);
	if (place && al <= TCZ_ONNX_NAME_MAX) {
		rc = mkname(&prefix, "%s%s:%.*s", place, nodeid, (int)al,
			    (const char *)c->b + ao);
		if (rc)
			goto out;
	}
	aname = strndup((const char *)c->b + ao, al);
	if (!aname) {
		rc = -ENOMEM;
		goto out;
	}
	uint64_t seen = 0, type = 0;
	uint32_t present = 0; /* value fields, by attr_field index */
	size_t nt = 0, ng = 0, ns = 0;
	fld f;
	while ((rc = next_field(c, &off, end, &f)) == 1) {
		rc = 0;
		size_t fe = f.off + (size_t)f.len;
		const char *fname = attr_field_name(f.num);
		if (fname) {
			for (unsigned k = 1; k < 15; k++)
				if (attr_field[k] == f.num)
					present |= 1u << k;
		}
		switch (f.num) {
		case 1:
			if (!(rc = want_once(c, &seen, &f, "name", WT_LEN)))
				rc = memchr(c->b + f.off, 0, (size_t)f.len)
					     ? fail(c, "name contains a NUL "
						    "byte")
					     : 0;
			break;
		case 13:
			rc = want_once(c, &seen, &f, "doc_string", WT_LEN);
			break;
		case 21:
			rc = want_once(c, &seen, &f, "ref_attr_name", WT_LEN);
			break;
		case 20:
			if (!(rc = want_once(c, &seen, &f, "type", WT_VARINT)))
				rc = want_int32(c, &f, "type");
			type = f.v;
			break;
		case 2:
			rc = want_once(c, &seen, &f, fname, WT_I32);
			break;
		case 3:
			rc = want_once(c, &seen, &f, fname, WT_VARINT);
			break;
		case 4:
			rc = want_once(c, &seen, &f, fname, WT_LEN);
			break;
		case 14:
			if (!(rc = want_once(c, &seen, &f, fname, WT_LEN)))
				rc = skim(c, f.off, fe);
			break;
		case 15:
			if (!(rc = want(c, &f, fname, WT_LEN, -1)))
				rc = skim(c, f.off, fe);
			break;
		case 7:
			rc = want(c, &f, fname, WT_I32, WT_LEN);
			if (rc == 0 && f.wt == WT_LEN && f.len % 4)
				rc = fail(c, "floats: packed length %llu is "
					  "not a multiple of 4",
					  (unsigned long long)f.len);
			break;
		case 8: {
			uint64_t k;
			rc = want(c, &f, fname, WT_VARINT, WT_LEN);
			if (rc == 0 && f.wt == WT_LEN)
				rc = packed_varints(c, &f, "ints", &k);
			break;
		}
		case 9:
			rc = want(c, &f, fname, WT_LEN, -1);
			break;
		case 5:
		case 10:
		case 22:
		case 23: {
			bool sparse = f.num >= 22, many = f.num == 10 ||
							  f.num == 23;
			if (many)
				rc = want(c, &f, fname, WT_LEN, -1);
			else
				rc = want_once(c, &seen, &f, fname, WT_LEN);
			if (rc)
				break;
			site s = {
				.where = TCZ_ONNX_ATTRIBUTE,
				.part = TCZ_ONNX_DENSE,
				.depth = depth,
				.where_s = fr.label,
			};
			if (constant && !many &&
			    strcmp(aname, sparse ? "sparse_value" : "value") == 0)
				s.where = TCZ_ONNX_CONSTANT;
			char *cand = NULL;
			size_t k = f.num == 10 ? nt++ : f.num == 23 ? ns++ : 0;
			if (prefix) {
				rc = many ? mkname(&cand, "%s[%zu]", prefix, k)
					  : mkname(&cand, "%s", prefix);
				if (rc)
					break;
			}
			s.cand = cand;
			size_t idx;
			if (sparse)
				rc = parse_sparse(c, f.off, fe, &s);
			else
				rc = parse_tensor(c, f.off, fe, &s, &idx);
			free(cand);
			break;
		}
		case 6:
		case 11: {
			bool many = f.num == 11;
			if (many)
				rc = want(c, &f, fname, WT_LEN, -1);
			else
				rc = want_once(c, &seen, &f, fname, WT_LEN);
			if (rc)
				break;
			char *sub = NULL;
			if (prefix) {
				rc = many ? mkname(&sub, "%s[%zu]/", prefix,
						   ng++)
					  : mkname(&sub, "%s/", prefix);
				if (rc)
					break;
			}
			rc = parse_graph(c, f.off, fe, sub, depth + 1);
			free(sub);
			break;
		}
		default:
			break;
		}
		if (rc)
			break;
	}
	if (rc < 0)
		goto out;
	rc = 0;
	if (type > 14) {
		rc = fail(c, "unknown attribute type %lld", (long long)type);
	} else if (type) {
		for (unsigned k = 1; k < 15; k++)
			if ((present & (1u << k)) && k != type) {
				rc = fail(c, "type %llu but holds field %u (%s)",
					  (unsigned long long)type,
					  attr_field[k],
					  attr_field_name(attr_field[k]));
				break;
			}
	}
out:
	free(prefix);
	free(aname);
	c->depth--;
	pop(c, &fr);
	return rc;
}

static bool field_is(pctx *c, size_t off, size_t len, const char *s)
{
	return len == strlen(s) && memcmp(c->b + off, s, len) == 0;
}

static int parse_node(pctx *c, size_t off, size_t end, const char *place,
		      uint32_t depth, size_t idx)
{
	char nn[256], op[128], nb[128], ob[64];
	size_t nfull, ofull;
	peek_str(c, off, end, 3, nn, sizeof nn, &nfull);
	peek_str(c, off, end, 4, op, sizeof op, &ofull);
	frame fr;
	if (nn[0])
		push(c, &fr, "node '%s' (%s)", SHOWN(nb, nn), SHOWN(ob, op));
	else
		push(c, &fr, "node #%zu (%s) of graph '%s'", idx, SHOWN(ob, op),
		     place ? (place[0] ? place : "main") : "...");
	int rc = enter(c);
	if (rc) {
		pop(c, &fr);
		return rc;
	}
	size_t no = 0, nl = 0, doff = 0, dl = 0;
	peek(c->b, off, end, 3, &no, &nl);
	bool dom = peek(c->b, off, end, 7, &doff, &dl);
	bool constant = ofull == 8 && strcmp(op, "Constant") == 0 &&
			(!dom || dl == 0 || field_is(c, doff, dl, "ai.onnx"));
	char *nodeid = NULL;
	if (nl && nl <= TCZ_ONNX_NAME_MAX && !memchr(c->b + no, 0, nl))
		nodeid = strndup((const char *)c->b + no, nl);
	else
		rc = mkname(&nodeid, "#%zu", idx);
	if (rc == 0 && !nodeid)
		rc = -ENOMEM;
	uint64_t seen = 0;
	size_t aidx = 0;
	fld f;
	while (rc == 0 && (rc = next_field(c, &off, end, &f)) == 1) {
		rc = 0;
		switch (f.num) {
		case 1:
		case 2:
			rc = want(c, &f, f.num == 1 ? "input" : "output", WT_LEN,
				  -1);
			break;
		case 3:
			if (!(rc = want_once(c, &seen, &f, "name", WT_LEN)) &&
			    memchr(c->b + f.off, 0, (size_t)f.len))
				rc = fail(c, "name contains a NUL byte");
			break;
		case 4:
			rc = want_once(c, &seen, &f, "op_type", WT_LEN);
			break;
		case 5:
			if (!(rc = want(c, &f, "attribute", WT_LEN, -1)))
				rc = parse_attribute(c, f.off,
						     f.off + (size_t)f.len,
						     place, depth, nodeid,
						     fr.label, constant, aidx++);
			break;
		case 6:
			rc = want_once(c, &seen, &f, "doc_string", WT_LEN);
			break;
		case 7:
			rc = want_once(c, &seen, &f, "domain", WT_LEN);
			break;
		case 8:
			rc = want_once(c, &seen, &f, "overload", WT_LEN);
			break;
		case 9:
		case 10:
			if (!(rc = want(c, &f, f.num == 9 ? "metadata_props"
							   : "device_configurations",
					WT_LEN, -1)))
				rc = skim(c, f.off, f.off + (size_t)f.len);
			break;
		default:
			break;
		}
	}
	if (rc > 0)
		rc = 0;
	free(nodeid);
	c->depth--;
	pop(c, &fr);
	return rc;
}

/* place: prefix of generated names ("" for a top-level graph, ends with
 * '/' otherwise); NULL when too long. */
static int parse_graph(pctx *c, size_t off, size_t end, const char *place,
		       uint32_t depth)
{
	char gn[128], nb[128];
	size_t full;
	peek_str(c, off, end, 2, gn, sizeof gn, &full);
	frame fr;
	if (gn[0])
		push(c, &fr, "graph '%s'", SHOWN(nb, gn));
	else
		push(c, &fr, "graph '%s'",
		     place ? (place[0] ? SHOWN(nb, place) : "main") : "...");
	int rc = enter(c);
	if (rc) {
		pop(c, &fr);
		return rc;
	}
	uint64_t seen = 0;
	size_t nodes = 0, inits = 0, sparse = 0;
	fld f;
	while ((rc = next_field(c, &off, end, &f)) == 1) {
		rc = 0;
		size_t fe = f.off + (size_t)f.len;
		switch (f.num) {
		case 1:
			if (!(rc = want(c, &f, "node", WT_LEN, -1)))
				rc = parse_node(c, f.off, fe, place, depth,
						nodes++);
			break;
		case 2:
			rc = want_once(c, &seen, &f, "name", WT_LEN);
			break;
		case 5:
		case 15: {
			bool sp = f.num == 15;
			if ((rc = want(c, &f, sp ? "sparse_initializer"
						 : "initializer",
				       WT_LEN, -1)))
				break;
			char *cand = NULL;
			if (place &&
			    (rc = mkname(&cand, "%s%s[%zu]", place,
					 sp ? "sparse_initializer"
					    : "initializer",
					 sp ? sparse : inits)))
				break;
			sp ? sparse++ : inits++;
			site s = {
				.where = sp ? TCZ_ONNX_SPARSE_INIT
					    : TCZ_ONNX_INITIALIZER,
				.part = TCZ_ONNX_DENSE,
				.depth = depth,
				.cand = cand,
				.where_s = fr.label,
			};
			size_t idx;
			rc = sp ? parse_sparse(c, f.off, fe, &s)
				: parse_tensor(c, f.off, fe, &s, &idx);
			free(cand);
			break;
		}
		case 10:
			rc = want_once(c, &seen, &f, "doc_string", WT_LEN);
			break;
		case 11:
		case 12:
		case 13:
		case 14:
		case 16:
			if (!(rc = want(c, &f, "value info", WT_LEN, -1)))
				rc = skim(c, f.off, fe);
			break;
		default:
			break;
		}
		if (rc)
			break;
	}
	if (rc > 0)
		rc = 0;
	c->depth--;
	pop(c, &fr);
	return rc;
}

/* ---- functions, training, the model ----------------------------------- */

static int parse_opset(pctx *c, size_t off, size_t end, bool keep)
{
	int rc = enter(c);
	if (rc)
		return rc;
	uint64_t seen = 0;
	char *domain = NULL;
	int64_t version = 0;
	fld f;
	while ((rc = next_field(c, &off, end, &f)) == 1) {
		rc = 0;
		if (f.num == 1) {
			if (!(rc = want_once(c, &seen, &f, "opset domain",
					     WT_LEN)))
				rc = get_str(c, &f, "opset domain", &domain);
		} else if (f.num == 2) {
			rc = want_once(c, &seen, &f, "opset version",
				       WT_VARINT);
			version = (int64_t)f.v;
		}
		if (rc)
			break;
	}
	if (rc > 0)
		rc = 0;
	if (rc == 0 && keep) {
		tcz_onnx_model *m = c->m;
		if (!domain && !(domain = strdup("")))
			rc = -ENOMEM;
		else if (grow(&m->opsets, &c->cap_opsets, m->n_opsets,
			      sizeof *m->opsets))
			rc = -ENOMEM;
		if (rc == 0) {
			m->opsets[m->n_opsets++] =
				(tcz_onnx_opset){domain, version};
			domain = NULL;
		}
	}
	free(domain);
	c->depth--;
	return rc;
}

static int parse_function(pctx *c, size_t off, size_t end, size_t k)
{
	char fn[128], nb[128];
	size_t full, no = 0, nl = 0, dlo = 0, dll = 0;
	peek_str(c, off, end, 1, fn, sizeof fn, &full);
	frame fr;
	if (fn[0])
		push(c, &fr, "function '%s'", SHOWN(nb, fn));
	else
		push(c, &fr, "function #%zu", k);
	int rc = enter(c);
	if (rc) {
		pop(c, &fr);
		return rc;
	}
	bool had_name = peek(c->b, off, end, 1, &no, &nl) && nl;
	bool had_dom = peek(c->b, off, end, 10, &dlo, &dll) && dll;
	char *place = NULL;
	if (had_name && nl + dll <= TCZ_ONNX_NAME_MAX)
		rc = mkname(&place, "function:%.*s%s%.*s/", (int)dll,
			    had_dom ? (const char *)c->b + dlo : "",
			    had_dom ? ":" : "", (int)nl,
			    (const char *)c->b + no);
	else if (!had_name)
		rc = mkname(&place, "function[%zu]/", k);
	bool was = c->in_function;
	c->in_function = true;
	uint64_t seen = 0;
	size_t nodes = 0, attrs = 0;
	fld f;
	while (rc == 0 && (rc = next_field(c, &off, end, &f)) == 1) {
		rc = 0;
		size_t fe = f.off + (size_t)f.len;
		switch (f.num) {
		case 1:
		case 8:
		case 10:
		case 13:
			if (!(rc = want_once(c, &seen, &f,
					     f.num == 1    ? "name"
					     : f.num == 8  ? "doc_string"
					     : f.num == 10 ? "domain"
							   : "overload",
					     WT_LEN)) &&
			    memchr(c->b + f.off, 0, (size_t)f.len))
				rc = fail(c, "field %u contains a NUL byte",
					  f.num);
			break;
		case 4:
		case 5:
		case 6:
			rc = want(c, &f, "string", WT_LEN, -1);
			break;
		case 7:
			if (!(rc = want(c, &f, "node", WT_LEN, -1)))
				rc = parse_node(c, f.off, fe, place, 0, nodes++);
			break;
		case 9:
			if (!(rc = want(c, &f, "opset_import", WT_LEN, -1)))
				rc = parse_opset(c, f.off, fe, false);
			break;
		case 11:
			if (!(rc = want(c, &f, "attribute_proto", WT_LEN, -1)))
				rc = parse_attribute(c, f.off, fe, place, 0,
						     "default", fr.label, false,
						     attrs++);
			break;
		case 12:
		case 14:
			if (!(rc = want(c, &f, "value_info", WT_LEN, -1)))
				rc = skim(c, f.off, fe);
			break;
		default:
			break;
		}
	}
	if (rc > 0)
		rc = 0;
	c->in_function = was;
	free(place);
	c->depth--;
	pop(c, &fr);
	return rc;
}

static int parse_training(pctx *c, size_t off, size_t end, size_t k)
{
	frame fr;
	push(c, &fr, "training_info #%zu", k);
	int rc = enter(c);
	if (rc) {
		pop(c, &fr);
		return rc;
	}
	bool was = c->in_training;
	c->in_training = true;
	uint64_t seen = 0;
	fld f;
	while ((rc = next_field(c, &off, end, &f)) == 1) {
		rc = 0;
		size_t fe = f.off + (size_t)f.len;
		if (f.num == 1 || f.num == 2) {
			const char *nm = f.num == 1 ? "initialization"
						    : "algorithm";
			if ((rc = want_once(c, &seen, &f, nm, WT_LEN)))
				break;
			char *place = NULL;
			if ((rc = mkname(&place, "training_info[%zu].%s/", k,
					 nm)))
				break;
			rc = parse_graph(c, f.off, fe, place, 0);
			free(place);
		} else if (f.num == 3 || f.num == 4) {
			if (!(rc = want(c, &f, "binding", WT_LEN, -1)))
				rc = skim(c, f.off, fe);
		}
		if (rc)
			break;
	}
	if (rc > 0)
		rc = 0;
	c->in_training = was;
	c->depth--;
	pop(c, &fr);
	return rc;
}

static int parse_model(pctx *c)
{
	tcz_onnx_model *m = c->m;
	int rc = enter(c);
	uint64_t seen = 0;
	size_t pos = 0, nfun = 0, ntrain = 0;
	fld f;
	while (rc == 0 && (rc = next_field(c, &pos, c->len, &f)) == 1) {
		rc = 0;
		size_t fe = f.off + (size_t)f.len;
		switch (f.num) {
		case 1:
			rc = want_once(c, &seen, &f, "ir_version", WT_VARINT);
			m->ir_version = (int64_t)f.v;
			break;
		case 5:
			rc = want_once(c, &seen, &f, "model_version", WT_VARINT);
			m->model_version = (int64_t)f.v;
			break;
		case 2:
			if (!(rc = want_once(c, &seen, &f, "producer_name",
					     WT_LEN)))
				rc = get_str(c, &f, "producer_name",
					     &m->producer_name);
			break;
		case 3:
			if (!(rc = want_once(c, &seen, &f, "producer_version",
					     WT_LEN)))
				rc = get_str(c, &f, "producer_version",
					     &m->producer_version);
			break;
		case 4:
			if (!(rc = want_once(c, &seen, &f, "domain", WT_LEN)))
				rc = get_str(c, &f, "domain", &m->domain);
			break;
		case 6:
			rc = want_once(c, &seen, &f, "doc_string", WT_LEN);
			break;
		case 7:
			if (!(rc = want_once(c, &seen, &f, "graph", WT_LEN)))
				rc = parse_graph(c, f.off, fe, "", 0);
			break;
		case 8:
			if (!(rc = want(c, &f, "opset_import", WT_LEN, -1)))
				rc = parse_opset(c, f.off, fe, true);
			break;
		case 14:
			if (!(rc = want(c, &f, "metadata_props", WT_LEN, -1)))
				rc = skim(c, f.off, fe);
			break;
		case 20:
			if (!(rc = want(c, &f, "training_info", WT_LEN, -1)))
				rc = parse_training(c, f.off, fe, ntrain++);
			break;
		case 25:
			if (!(rc = want(c, &f, "functions", WT_LEN, -1)))
				rc = parse_function(c, f.off, fe, nfun++);
			break;
		default:
			break;
		}
	}
	if (rc < 0)
		return rc;
	if (!(seen & (1u << 1)))
		return fail(c, "no ir_version (not an ONNX model?)");
	if (m->ir_version < 1)
		return fail(c, "ir_version %lld is not positive",
			    (long long)m->ir_version);
	if (!(seen & (1u << 7)))
		return fail(c, "no graph (not an ONNX model?)");
	c->depth--;
	return 0;
}

/* Unique names: TensorProto names first (the first of duplicates keeps
 * it), then in file order the others take their candidate, or it with
 * "~2", "~3", ... appended. */
static int finish_names(pctx *c)
{
	tcz_onnx_model *m = c->m;
	smap names = {0}, bases = {0};
	char **cands = calloc(m->n_tensors + 1, sizeof *cands);
	int rc = cands ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < m->n_tensors; i++) {
		tcz_onnx_tensor *t = &m->tensors[i];
		cands[i] = t->name; /* NULL for named tensors */
		t->name = NULL;
		if (t->proto_name[0] && !smap_get(&names, t->proto_name)) {
			if (!(t->name = strdup(t->proto_name)))
				rc = -ENOMEM;
			else
				rc = smap_put(&names, t->name, i);
		}
	}
	for (size_t i = 0; rc == 0 && i < m->n_tensors; i++) {
		tcz_onnx_tensor *t = &m->tensors[i];
		if (t->name)
			continue;
		const char *base = t->proto_name[0] ? t->proto_name : cands[i];
		t->generated = true;
		size_t *last = smap_get(&bases, base);
		size_t k = last ? *last : 1;
		char *s = NULL;
		if (!last && !smap_get(&names, base)) {
			s = strdup(base);
		} else {
			size_t bl = strlen(base);
			s = malloc(bl + 24);
			for (; s;) {
				snprintf(s, bl + 24, "%s~%zu", base, ++k);
				if (!smap_get(&names, s))
					break;
			}
		}
		if (!s) {
			rc = -ENOMEM;
			break;
		}
		c->name_bytes += strlen(s) + 1;
		if (c->name_bytes > c->max_name_bytes) {
			free(s);
			c->top = NULL;
			char nb[128];
			rc = fail(c, "tensor '%s': generated names take more "
				  "than %llu bytes", SHOWN(nb, base),
				  (unsigned long long)c->max_name_bytes);
			break;
		}
		t->name = s;
		if ((rc = smap_put(&names, s, i)))
			break;
		if (last)
			*last = k;
		else
			rc = smap_put(&bases, base, k);
	}
	/* bases point into cands and proto names: free cands last */
	smap_free(&names);
	smap_free(&bases);
	for (size_t i = 0; cands && i < m->n_tensors; i++)
		free(cands[i]);
	free(cands);
	return rc;
}

void tcz_onnx_free(tcz_onnx_model *m)
{
	for (size_t i = 0; m->tensors && i < m->n_tensors; i++) {
		free(m->tensors[i].name);
		free(m->tensors[i].proto_name);
		free(m->tensors[i].dims);
		free(m->tensors[i].ranges);
	}
	free(m->tensors);
	for (size_t i = 0; m->opsets && i < m->n_opsets; i++)
		free(m->opsets[i].domain);
	free(m->opsets);
	for (size_t i = 0; m->files && i < m->n_files; i++)
		free(m->files[i].location);
	free(m->files);
	free(m->producer_name);
	free(m->producer_version);
	free(m->domain);
	memset(m, 0, sizeof *m);
}

int tcz_onnx_parse(const void *buf, size_t len, tcz_onnx_model *out,
		   char *err, size_t errlen)
{
	memset(out, 0, sizeof *out);
	if (err && errlen)
		err[0] = 0;
	pctx c = {
		.b = buf,
		.len = len,
		.m = out,
		.err = err,
		.errlen = errlen,
		.max_extra_ranges = len / 32 + 1024,
		.max_name_bytes = (uint64_t)len * 8 + (1u << 20),
	};
	int rc = len ? parse_model(&c)
		     : fail(&c, "empty file (not an ONNX model)");
	if (rc == 0)
		rc = finish_names(&c);
	if (rc == 0 && !(out->producer_name = out->producer_name
						  ? out->producer_name
						  : strdup("")))
		rc = -ENOMEM;
	if (rc == 0 && !(out->producer_version = out->producer_version
						     ? out->producer_version
						     : strdup("")))
		rc = -ENOMEM;
	if (rc == 0 && !(out->domain = out->domain ? out->domain : strdup("")))
		rc = -ENOMEM;
	for (size_t i = 0; rc == 0 && i < out->n_tensors; i++) {
		const tcz_onnx_tensor *t = &out->tensors[i];
		tcz_onnx_counts *n = &out->count;
		switch (t->where) {
		case TCZ_ONNX_INITIALIZER:
			n->initializer++;
			break;
		case TCZ_ONNX_SPARSE_INIT:
			n->sparse_init++;
			break;
		case TCZ_ONNX_CONSTANT:
			n->constant++;
			break;
		case TCZ_ONNX_ATTRIBUTE:
			n->attribute++;
			break;
		}
		n->subgraph += t->depth > 0;
		n->function += t->in_function;
		n->training += t->in_training;
		n->external += t->kind == TCZ_ONNX_EXTERNAL;
		n->not_weight += !t->weight;
		if (!t->weight)
			continue;
		for (size_t k = 0; k < t->n_ranges; k++)
			out->inline_bytes += t->ranges[k].len;
		if (t->kind == TCZ_ONNX_EXTERNAL)
			out->external_bytes += t->ext_len;
	}
	/* payloads lie in the file, one after the other: the total cannot
	 * exceed it (a check of the parser itself) */
	if (rc == 0 && out->inline_bytes > len)
		rc = fail(&c, "tensor payloads exceed the file size");
	smap_free(&c.files);
	if (rc)
		tcz_onnx_free(out);
	return rc;
}

/* ---- values ------------------------------------------------------------ */

static bool signed_type(int32_t type)
{
	return type == TCZ_ONNX_INT8 || type == TCZ_ONNX_INT16 ||
	       type == TCZ_ONNX_INT32 || type == TCZ_ONNX_INT64;
}

static int check_ranges(const tcz_onnx_tensor *t, size_t file_len)
{
	if (!t->weight || t->kind == TCZ_ONNX_EXTERNAL ||
	    t->kind == TCZ_ONNX_STRING_DATA)
		return -EINVAL;
	for (size_t k = 0; k < t->n_ranges; k++)
		if (t->ranges[k].off > file_len ||
		    t->ranges[k].len > file_len - t->ranges[k].off)
			return -EINVAL;
	return 0;
}

int tcz_onnx_decode_values(const tcz_onnx_tensor *t, const void *file,
			   size_t file_len, void *dst)
{
	int rc = check_ranges(t, file_len);
	if (rc)
		return rc;
	const uint8_t *b = file;
	uint8_t *o = dst;
	size_t es = tcz_dtype_size(t->dtype);
	uint64_t done = 0;
	for (size_t k = 0; k < t->n_ranges; k++) {
		const tcz_onnx_range *r = &t->ranges[k];
		if (r->first != done || r->count > t->numel - done)
			return -EBADMSG;
		if (t->kind == TCZ_ONNX_RAW || t->kind == TCZ_ONNX_PACKED) {
			if (r->len != r->count * es)
				return -EBADMSG;
			memcpy(o + done * es, b + r->off, (size_t)r->len);
			done += r->count;
			continue;
		}
		size_t p = (size_t)r->off, end = (size_t)(r->off + r->len);
		uint64_t n = 0;
		while (p < end && n < r->count) {
			if (r->tagged)
				p++;
			uint64_t v = 0;
			if (t->kind == TCZ_ONNX_UNPACKED) {
				if (end - p < es)
					return -EBADMSG;
				memcpy(o + (done + n) * es, b + p, es);
				p += es;
			} else {
				if (varint(b, &p, end, &v))
					return -EBADMSG;
				for (size_t i = 0; i < es; i++)
					o[(done + n) * es + i] =
						(uint8_t)(v >> (8 * i));
			}
			n++;
		}
		if (p != end || n != r->count)
			return -EBADMSG;
		done += n;
	}
	return done == (t->kind == TCZ_ONNX_EMPTY ? 0 : t->numel) ? 0
								   : -EBADMSG;
}

int tcz_onnx_encode_range(const tcz_onnx_tensor *t, size_t r,
			  const void *values, void *dst)
{
	if (!t->weight || r >= t->n_ranges)
		return -EINVAL;
	const tcz_onnx_range *g = &t->ranges[r];
	size_t es = tcz_dtype_size(t->dtype);
	const uint8_t *in = (const uint8_t *)values + g->first * es;
	uint8_t *o = dst;
	if (t->kind == TCZ_ONNX_RAW || t->kind == TCZ_ONNX_PACKED) {
		if (g->len != g->count * es)
			return -ERANGE;
		memcpy(o, in, (size_t)g->len);
		return 0;
	}
	if (t->kind != TCZ_ONNX_VARINT && t->kind != TCZ_ONNX_UNPACKED)
		return -EINVAL;
	uint8_t tag = (uint8_t)(t->field << 3 |
				(t->kind == TCZ_ONNX_UNPACKED
					 ? (es == 4 ? WT_I32 : WT_I64)
					 : WT_VARINT));
	bool sgn = signed_type(t->onnx_type);
	/* the size first: nothing is written unless it fits exactly */
	for (int pass = 0; pass < 2; pass++) {
		uint64_t n = 0;
		for (uint64_t i = 0; i < g->count; i++) {
			if (g->tagged) {
				if (pass)
					o[n] = tag;
				n++;
			}
			const uint8_t *e = in + i * es;
			if (t->kind == TCZ_ONNX_UNPACKED) {
				if (pass)
					memcpy(o + n, e, es);
				n += es;
				continue;
			}
			uint64_t v = 0;
			for (size_t k = 0; k < es; k++)
				v |= (uint64_t)e[k] << (8 * k);
			if (sgn && es < 8 && (v >> (8 * es - 1)) & 1)
				v |= ~0ull << (8 * es);
			if (pass) {
				while (v >= 0x80) {
					o[n++] = (uint8_t)(v | 0x80);
					v >>= 7;
				}
				o[n++] = (uint8_t)v;
			} else {
				n += varint_size(v);
			}
		}
		if (!pass && n != g->len)
			return -ERANGE;
	}
	return 0;
}

/* ---- external files ----------------------------------------------------- */

static int by_file_off(const void *a, const void *b)
{
	const tcz_onnx_tensor *x = *(const tcz_onnx_tensor *const *)a;
	const tcz_onnx_tensor *y = *(const tcz_onnx_tensor *const *)b;
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	if (x->ext_off != y->ext_off)
		return x->ext_off < y->ext_off ? -1 : 1;
	if (x->ext_len != y->ext_len)
		return x->ext_len < y->ext_len ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int ext_err(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int ext_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Looks up location below dfd: st of the file. Errors: a message. */
static int stat_below(int dfd, const char *loc, bool nofollow,
		      struct stat *st, const char **why)
{
	char *dup = strdup(loc);
	if (!dup)
		return -ENOMEM;
	int cur = dfd, rc = 0;
	char *p = dup;
	for (;;) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = 0;
		int r = fstatat(cur, p, st, nofollow ? AT_SYMLINK_NOFOLLOW : 0);
		if (r != 0) {
			*why = strerror(errno);
			rc = -EBADMSG;
			break;
		}
		if (S_ISLNK(st->st_mode)) {
			*why = "a symbolic link on the way (refused)";
			rc = -EBADMSG;
			break;
		}
		if (!slash) {
			if (!S_ISREG(st->st_mode)) {
				*why = "not a regular file";
				rc = -EBADMSG;
			}
			break;
		}
		if (!S_ISDIR(st->st_mode)) {
			*why = "a component is not a directory";
			rc = -EBADMSG;
			break;
		}
		int nfd = openat(cur, p, O_PATH | O_DIRECTORY | O_CLOEXEC |
					      (nofollow ? O_NOFOLLOW : 0));
		if (nfd < 0) {
			*why = strerror(errno);
			rc = -EBADMSG;
			break;
		}
		if (cur != dfd)
			close(cur);
		cur = nfd;
		p = slash + 1;
	}
	if (cur != dfd)
		close(cur);
	free(dup);
	return rc;
}

int tcz_onnx_check_external(tcz_onnx_model *m, const char *model_path,
			    unsigned flags, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = 0;
	if (!m->n_files)
		return 0;
	char *dir = strdup(model_path);
	if (!dir)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		int e = errno;
		int rc = ext_err(err, errlen, -e, "%s: %s", dir, strerror(e));
		free(dir);
		return rc;
	}
	free(dir);
	struct stat mst;
	bool have_model = stat(model_path, &mst) == 0;
	const tcz_onnx_tensor **ts = NULL;
	int rc = 0;
	char nb[128], lb[128];
	for (size_t i = 0; i < m->n_files && rc == 0; i++) {
		struct stat st;
		const char *why = NULL;
		rc = stat_below(dfd, m->files[i].location,
				flags & TCZ_ONNX_NOFOLLOW, &st, &why);
		if (rc == 0 && have_model && st.st_dev == mst.st_dev &&
		    st.st_ino == mst.st_ino) {
			rc = -EBADMSG;
			why = "it is the model file itself";
		}
		if (rc == -EBADMSG) {
			const char *who = "?"; /* the first tensor in the file */
			for (size_t k = 0; k < m->n_tensors; k++)
				if (m->tensors[k].kind == TCZ_ONNX_EXTERNAL &&
				    m->tensors[k].file == i) {
					who = m->tensors[k].name;
					break;
				}
			rc = ext_err(err, errlen, rc,
				     "external data file '%s' of tensor '%s': "
				     "%s", SHOWN(lb, m->files[i].location),
				     SHOWN(nb, who), why);
		}
		if (rc == 0)
			m->files[i].size = (uint64_t)st.st_size;
	}
	close(dfd);
	if (rc)
		return rc;
	size_t n = 0;
	ts = malloc((m->n_tensors + 1) * sizeof *ts);
	if (!ts)
		return -ENOMEM;
	for (size_t k = 0; k < m->n_tensors; k++)
		if (m->tensors[k].kind == TCZ_ONNX_EXTERNAL)
			ts[n++] = &m->tensors[k];
	qsort(ts, n, sizeof *ts, by_file_off);
	const tcz_onnx_tensor *prev = NULL;
	for (size_t k = 0; k < n && rc == 0; k++) {
		const tcz_onnx_tensor *t = ts[k];
		const tcz_onnx_file *f = &m->files[t->file];
		SHOWN(nb, t->name);
		SHOWN(lb, f->location);
		if (t->ext_off > f->size || t->ext_len > f->size - t->ext_off) {
			rc = ext_err(err, errlen, -EBADMSG,
				     "tensor '%s': external range [%llu, %llu) "
				     "is past the end of '%s' (%llu bytes)", nb,
				     (unsigned long long)t->ext_off,
				     (unsigned long long)(t->ext_off + t->ext_len),
				     lb, (unsigned long long)f->size);
		} else if (!t->ext_has_length &&
			   f->size - t->ext_off != t->ext_len) {
			rc = ext_err(err, errlen, -EBADMSG,
				     "tensor '%s': external_data has no length "
				     "and '%s' has %llu bytes after offset "
				     "%llu, the tensor needs %llu", nb, lb,
				     (unsigned long long)(f->size - t->ext_off),
				     (unsigned long long)t->ext_off,
				     (unsigned long long)t->ext_len);
		} else if (t->ext_len) {
			if (prev && prev->file == t->file &&
			    t->ext_off < prev->ext_off + prev->ext_len) {
				char pb[128];
				rc = ext_err(err, errlen, -EBADMSG,
					     "tensor '%s': external range [%llu, "
					     "%llu) of '%s' overlaps tensor "
					     "'%s'", nb,
					     (unsigned long long)t->ext_off,
					     (unsigned long long)(t->ext_off +
								  t->ext_len),
					     lb, SHOWN(pb, prev->name));
			}
			if (!prev || prev->file != t->file ||
			    t->ext_off + t->ext_len >
				    prev->ext_off + prev->ext_len)
				prev = t;
		}
	}
	free(ts);
	return rc;
}
