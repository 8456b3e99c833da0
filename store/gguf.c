/* GGUF parser: every length, count, type and offset of an untrusted file
 * is checked before it is used; reads never leave the buffer. Work is
 * linear in the file size: every counted item takes at least one byte,
 * and counts are checked against the bytes left before anything loops on
 * them or allocates for them. */
#include "store/gguf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/ggml.h"
#include "store/internal.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_HDR 24
#define MIN_KV 13 /* key length 8, type 4, 1 value byte */
#define MIN_TI 24 /* name length 8, n_dims 4, type 4, offset 8 */

static const struct {
	const char *name;
	uint32_t size; /* fixed size, 0 for string and array */
} vtypes[TCZ_GGUF_VTYPE_COUNT] = {
	[TCZ_GGUF_U8] = {"uint8", 1},	 [TCZ_GGUF_I8] = {"int8", 1},
	[TCZ_GGUF_U16] = {"uint16", 2},	 [TCZ_GGUF_I16] = {"int16", 2},
	[TCZ_GGUF_U32] = {"uint32", 4},	 [TCZ_GGUF_I32] = {"int32", 4},
	[TCZ_GGUF_F32] = {"float32", 4}, [TCZ_GGUF_BOOL] = {"bool", 1},
	[TCZ_GGUF_STRING] = {"string", 0}, [TCZ_GGUF_ARRAY] = {"array", 0},
	[TCZ_GGUF_U64] = {"uint64", 8},	 [TCZ_GGUF_I64] = {"int64", 8},
	[TCZ_GGUF_F64] = {"float64", 8},
};

const char *tcz_gguf_vtype_name(uint32_t t)
{
	return t < TCZ_GGUF_VTYPE_COUNT ? vtypes[t].name : NULL;
}

/* ---- reading -------------------------------------------------------------- */

typedef struct {
	const unsigned char *p;
	size_t len, pos;
} rd;

static size_t left(const rd *r)
{
	return r->len - r->pos;
}

static uint64_t le(const unsigned char *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Reads an n-byte little-endian unsigned integer; -1 when cut short. */
static int get(rd *r, unsigned n, uint64_t *v)
{
	if (left(r) < n)
		return -1;
	*v = le(r->p + r->pos, n);
	r->pos += n;
	return 0;
}

static int get32(rd *r, uint32_t *v)
{
	uint64_t x;
	if (get(r, 4, &x))
		return -1;
	*v = (uint32_t)x;
	return 0;
}

/* A string: u64 length, bytes. 1 when the length is cut short, 2 when
 * the bytes run past the end (*n says how many were claimed). */
static int get_str(rd *r, const unsigned char **s, uint64_t *n)
{
	if (get(r, 8, n))
		return 1;
	if (*n > left(r))
		return 2;
	*s = r->p + r->pos;
	r->pos += (size_t)*n;
	return 0;
}

/* A name fit for a one-line message: control bytes and backslashes
 * escaped, cut to 64 bytes. */
static const char *show(const void *s, size_t n, char *buf, size_t cap)
{
	const unsigned char *p = s;
	size_t o = 0, i;
	for (i = 0; i < n && o + 8 < cap && i < 64; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\')
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", p[i]);
		else
			buf[o++] = (char)p[i];
	}
	if (i < n && o + 4 < cap)
		o += (size_t)snprintf(buf + o, cap - o, "...");
	buf[o] = 0;
	return buf;
}

/* ---- values ----------------------------------------------------------------- */

typedef struct {
	char *err;
	size_t errlen;
	const char *what; /* "key 'x'" */
} ectx;

#define FAIL(e, ...) tcz__errf(-EBADMSG, (e)->err, (e)->errlen, __VA_ARGS__)

/* Validates (and skips) one value of type t; depth counts the arrays it
 * is inside. Scalars and strings of the top level go into kv. */
static int value(rd *r, uint32_t t, unsigned depth, const ectx *e,
		 tcz_gguf_kv *kv)
{
	uint64_t x;
	if (t >= TCZ_GGUF_VTYPE_COUNT)
		return FAIL(e, "%s: unknown value type %u", e->what, t);
	if (t == TCZ_GGUF_STRING) {
		const unsigned char *s;
		uint64_t n;
		int rc = get_str(r, &s, &n);
		if (rc == 1)
			return FAIL(e, "%s: string length cut short (file "
				       "truncated)", e->what);
		if (rc == 2)
			return FAIL(e, "%s: string length %llu runs past the "
				       "end of the file", e->what,
				    (unsigned long long)n);
		if (kv) {
			kv->str = (const char *)s;
			kv->str_len = n;
		}
		return 0;
	}
	if (t != TCZ_GGUF_ARRAY) {
		unsigned sz = vtypes[t].size;
		if (get(r, sz, &x))
			return FAIL(e, "%s: %s value cut short (file "
				       "truncated)", e->what, vtypes[t].name);
		if (t == TCZ_GGUF_BOOL && x > 1)
			return FAIL(e, "%s: bool value %llu is not 0 or 1",
				    e->what, (unsigned long long)x);
		if (kv) {
			if (t == TCZ_GGUF_F32) {
				float f;
				uint32_t u = (uint32_t)x;
				memcpy(&f, &u, 4);
				kv->v.f = f;
			} else if (t == TCZ_GGUF_F64) {
				memcpy(&kv->v.f, &x, 8);
			} else if (t == TCZ_GGUF_I8 || t == TCZ_GGUF_I16 ||
				   t == TCZ_GGUF_I32 || t == TCZ_GGUF_I64) {
				unsigned sh = 64 - 8 * sz;
				kv->v.i = (int64_t)(x << sh) >> sh;
			} else {
				kv->v.u = x;
			}
		}
		return 0;
	}
	if (depth + 1 > TCZ_GGUF_MAX_DEPTH)
		return FAIL(e, "%s: arrays nested deeper than %u", e->what,
			    TCZ_GGUF_MAX_DEPTH);
	uint32_t et;
	uint64_t n;
	if (get32(r, &et) || get(r, 8, &n))
		return FAIL(e, "%s: array header cut short (file truncated)",
			    e->what);
	if (et >= TCZ_GGUF_VTYPE_COUNT)
		return FAIL(e, "%s: unknown array element type %u", e->what,
			    et);
	if (kv) {
		kv->arr_type = et;
		kv->arr_len = n;
	}
	/* every element takes at least this many bytes */
	uint64_t min = vtypes[et].size ? vtypes[et].size
		       : et == TCZ_GGUF_STRING ? 8 : 12;
	if (n > left(r) / min)
		return FAIL(e, "%s: array of %llu %s runs past the end of the "
			       "file", e->what, (unsigned long long)n,
			    vtypes[et].name);
	if (vtypes[et].size && et != TCZ_GGUF_BOOL) {
		r->pos += (size_t)(n * min);
		return 0;
	}
	for (uint64_t i = 0; i < n; i++) {
		int rc = value(r, et, depth + 1, e, NULL);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- the parser ------------------------------------------------------------- */

void tcz_gguf_free(tcz_gguf_file *f)
{
	for (size_t i = 0; f->kv && i < f->n_kv; i++)
		free(f->kv[i].key);
	for (size_t i = 0; f->tensors && i < f->n_tensors; i++)
		free(f->tensors[i].name);
	free(f->kv);
	free(f->tensors);
	memset(f, 0, sizeof *f);
}

static char *dup_bytes(const unsigned char *s, uint64_t n)
{
	char *d = malloc((size_t)n + 1);
	if (d) {
		memcpy(d, s, (size_t)n);
		d[n] = 0;
	}
	return d;
}

/* Room for one more item in *arr (zeroed), doubling: a count the file
 * states is never trusted for an allocation, only items actually read. */
static int reserve(void **arr, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? 2 * *cap : 16;
	void *p = realloc(*arr, c * elem);
	if (!p)
		return -ENOMEM;
	memset((char *)p + *cap * elem, 0, (c - *cap) * elem);
	*arr = p;
	*cap = c;
	return 0;
}

static int parse_kvs(rd *r, tcz_gguf_file *f, uint64_t nk, char *err,
		     size_t errlen)
{
	char what[400], nb[300];
	ectx e = {err, errlen, what};
	size_t cap = 0;

	for (size_t i = 0; i < nk; i++) {
		if (reserve((void **)&f->kv, &cap, i, sizeof *f->kv))
			return -ENOMEM;
		f->n_kv = i + 1; /* the slot owns what is parsed into it */
		tcz_gguf_kv *kv = &f->kv[i];
		const unsigned char *k;
		uint64_t kn;
		int rc = get_str(r, &k, &kn);
		if (rc == 1)
			return FAIL(&e, "KV %zu: key length cut short (file "
					"truncated)", i);
		if (rc == 2)
			return FAIL(&e, "KV %zu: key length %llu runs past the "
					"end of the file", i,
				    (unsigned long long)kn);
		if (kn == 0)
			return FAIL(&e, "KV %zu: empty key", i);
		if (kn > TCZ_GGUF_KEY_MAX)
			return FAIL(&e, "KV %zu: key of %llu bytes (at most %u)",
				    i, (unsigned long long)kn, TCZ_GGUF_KEY_MAX);
		for (uint64_t j = 0; j < kn; j++)
			if (k[j] < 0x20 || k[j] > 0x7e)
				return FAIL(&e, "KV %zu: key '%s' is not "
						"printable ASCII", i,
					    show(k, (size_t)kn, nb, sizeof nb));
		snprintf(what, sizeof what, "key '%s'",
			 show(k, (size_t)kn, nb, sizeof nb));
		if (!(kv->key = dup_bytes(k, kn)))
			return -ENOMEM;
		if (get32(r, &kv->type))
			return FAIL(&e, "%s: value type cut short (file "
					"truncated)", what);
		kv->offset = r->pos;
		if ((rc = value(r, kv->type, 0, &e, kv)))
			return rc;
		kv->size = r->pos - kv->offset;
	}
	return 0;
}

static int by_key(const void *a, const void *b)
{
	const tcz_gguf_kv *const *x = a, *const *y = b;
	return strcmp((*x)->key, (*y)->key);
}

static int by_name(const void *a, const void *b)
{
	const tcz_gguf_tensor *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

static int by_offset(const void *a, const void *b)
{
	const tcz_gguf_tensor *x = a, *y = b;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x->info_index < y->info_index ? -1 : 1;
}

/* Duplicate keys and tensor names, through sorted pointer arrays. */
static int check_dups(const tcz_gguf_file *f, char *err, size_t errlen)
{
	size_t n = f->n_kv > f->n_tensors ? f->n_kv : f->n_tensors;
	const void **p = malloc((n ? n : 1) * sizeof *p);
	char nb[300];
	int rc = 0;

	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < f->n_kv; i++)
		p[i] = &f->kv[i];
	qsort(p, f->n_kv, sizeof *p, by_key);
	for (size_t i = 1; i < f->n_kv && !rc; i++) {
		const tcz_gguf_kv *a = p[i - 1], *b = p[i];
		if (!strcmp(a->key, b->key))
			rc = tcz__errf(-EBADMSG, err, errlen,
				       "duplicate key '%s'", a->key);
	}
	for (size_t i = 0; i < f->n_tensors && !rc; i++)
		p[i] = &f->tensors[i];
	if (!rc)
		qsort(p, f->n_tensors, sizeof *p, by_name);
	for (size_t i = 1; i < f->n_tensors && !rc; i++) {
		const tcz_gguf_tensor *a = p[i - 1], *b = p[i];
		if (!strcmp(a->name, b->name))
			rc = tcz__errf(-EBADMSG, err, errlen,
				       "duplicate tensor name '%s'",
				       show(a->name, strlen(a->name), nb,
					    sizeof nb));
	}
	free(p);
	return rc;
}

static int parse_alignment(tcz_gguf_file *f, char *err, size_t errlen)
{
	const tcz_gguf_kv *kv = tcz_gguf_find(f, "general.alignment");
	f->alignment = TCZ_GGUF_DEFAULT_ALIGN;
	if (!kv)
		return 0;
	if (kv->type != TCZ_GGUF_U32)
		return tcz__errf(-EBADMSG, err, errlen,
				 "key 'general.alignment': type %s, expected "
				 "uint32", tcz_gguf_vtype_name(kv->type));
	uint64_t a = kv->v.u;
	if (a == 0 || (a & (a - 1)))
		return tcz__errf(-EBADMSG, err, errlen,
				 "key 'general.alignment': %llu is not a power "
				 "of two", (unsigned long long)a);
	f->alignment = (uint32_t)a;
	return 0;
}

static int parse_tensor(rd *r, size_t i, tcz_gguf_tensor *t, char *err,
			size_t errlen)
{
	char nb[300];
	const unsigned char *s;
	uint64_t n;
	int rc = get_str(r, &s, &n);
	tcz_ggml_info gi;

	t->info_index = i;
	if (rc == 1)
		return tcz__errf(-EBADMSG, err, errlen,
				 "tensor %zu: name length cut short (file "
				 "truncated)", i);
	if (rc == 2)
		return tcz__errf(-EBADMSG, err, errlen,
				 "tensor %zu: name length %llu runs past the "
				 "end of the file", i, (unsigned long long)n);
	if (n == 0)
		return tcz__errf(-EBADMSG, err, errlen,
				 "tensor %zu: empty name", i);
	const char *nm = show(s, (size_t)n, nb, sizeof nb);
	if (n > TCZ_GGUF_NAME_MAX)
		return tcz__errf(-EBADMSG, err, errlen,
				 "tensor '%s': name of %llu bytes (at most %u)",
				 nm, (unsigned long long)n, TCZ_GGUF_NAME_MAX);
	if (memchr(s, 0, (size_t)n))
		return tcz__errf(-EBADMSG, err, errlen,
				 "tensor '%s': name holds a NUL byte", nm);
	if (!(t->name = dup_bytes(s, n)))
		return -ENOMEM;
	if (get32(r, &t->n_dims))
		goto short_info;
	if (t->n_dims == 0 || t->n_dims > TCZ_GGUF_MAX_DIMS)
		return tcz__errf(-EBADMSG, err, errlen,
				 "tensor '%s': %u dimensions (1 to %u "
				 "supported)", nm, t->n_dims, TCZ_GGUF_MAX_DIMS);
	for (uint32_t d = 0; d < TCZ_GGUF_MAX_DIMS; d++)
		t->dims[d] = 1;
	for (uint32_t d = 0; d < t->n_dims; d++) {
		if (get(r, 8, &t->dims[d]))
			goto short_info;
		if (t->dims[d] == 0)
			return tcz__errf(-EBADMSG, err, errlen,
					 "tensor '%s': dims[%u] is 0", nm, d);
	}
	if (get32(r, &t->type) || get(r, 8, &t->offset))
		goto short_info;
	if (tcz_ggml_type(t->type, &gi))
		return tcz__errf(-EBADMSG, err, errlen,
				 "tensor '%s': unknown ggml type %u%s", nm,
				 t->type,
				 t->type == 4 || t->type == 5 ||
						 (t->type >= 31 && t->type <= 38 &&
						  t->type != 34 && t->type != 35)
					 ? " (removed from ggml)"
					 : "");
	rc = tcz_ggml_nbytes(t->type, t->dims, t->n_dims, &t->nbytes);
	if (rc == -EOVERFLOW)
		return tcz__errf(-EBADMSG, err, errlen,
				 "tensor '%s': dims product overflows", nm);
	if (rc)
		return tcz__errf(-EBADMSG, err, errlen,
				 "tensor '%s': row of %llu elements is not a "
				 "multiple of the %s block size %u", nm,
				 (unsigned long long)t->dims[0], gi.name,
				 gi.block_elems);
	t->numel = 1;
	for (uint32_t d = 0; d < t->n_dims; d++)
		t->numel *= t->dims[d]; /* checked by tcz_ggml_nbytes */
	return 0;
short_info:
	return tcz__errf(-EBADMSG, err, errlen,
			 "tensor '%s': info cut short (file truncated)", nm);
}

/* Offsets: aligned, inside the data section, no overlap, and no hole of
 * a whole alignment unit or more (writers pad each tensor to the
 * alignment and nothing else), no more than padding after the last. */
static int check_layout(tcz_gguf_file *f, char *err, size_t errlen)
{
	char nb[300], ob[300];
	uint64_t data_len = f->file_size > f->data_offset
				    ? f->file_size - f->data_offset
				    : 0;
	uint64_t at = 0;

	for (size_t i = 0; i < f->n_tensors; i++) {
		tcz_gguf_tensor *t = &f->tensors[i];
		const char *nm = show(t->name, strlen(t->name), nb, sizeof nb);
		if (t->offset % f->alignment)
			return tcz__errf(-EBADMSG, err, errlen,
					 "tensor '%s': offset %llu is not a "
					 "multiple of the alignment %u", nm,
					 (unsigned long long)t->offset,
					 f->alignment);
		if (t->offset > data_len || t->nbytes > data_len - t->offset)
			return tcz__errf(-EBADMSG, err, errlen,
					 "tensor '%s': data [%llu, +%llu) runs "
					 "past the end of the data section "
					 "(%llu bytes; file truncated?)", nm,
					 (unsigned long long)t->offset,
					 (unsigned long long)t->nbytes,
					 (unsigned long long)data_len);
	}
	if (f->n_tensors)
		qsort(f->tensors, f->n_tensors, sizeof *f->tensors, by_offset);
	for (size_t i = 0; i < f->n_tensors; i++) {
		tcz_gguf_tensor *t = &f->tensors[i];
		const char *nm = show(t->name, strlen(t->name), nb, sizeof nb);
		if (t->offset < at) {
			const tcz_gguf_tensor *p = &f->tensors[i - 1];
			return tcz__errf(-EBADMSG, err, errlen,
					 "tensor '%s': data [%llu, %llu) "
					 "overlaps tensor '%s' [%llu, %llu)", nm,
					 (unsigned long long)t->offset,
					 (unsigned long long)(t->offset +
							      t->nbytes),
					 show(p->name, strlen(p->name), ob,
					      sizeof ob),
					 (unsigned long long)p->offset,
					 (unsigned long long)(p->offset +
							      p->nbytes));
		}
		if (t->offset - at >= f->alignment)
			return tcz__errf(-EBADMSG, err, errlen,
					 "tensor '%s': %llu unused bytes before "
					 "its data (a hole at data offset "
					 "%llu)", nm,
					 (unsigned long long)(t->offset - at),
					 (unsigned long long)at);
		at = t->offset + t->nbytes;
	}
	uint64_t end = f->n_tensors ? f->data_offset + at : f->header_len;
	if (f->file_size - end >= f->alignment)
		return tcz__errf(-EBADMSG, err, errlen,
				 "%llu bytes after the %s (more than the "
				 "alignment padding)",
				 (unsigned long long)(f->file_size - end),
				 f->n_tensors ? "last tensor's data"
					      : "tensor infos");
	return 0;
}

static int parse_header(rd *r, tcz_gguf_file *f, uint64_t *n_tensors,
			uint64_t *n_kv, char *err, size_t errlen)
{
	const unsigned char *p = r->p;
	size_t len = r->len;
	uint64_t x;

	if (len < 4)
		return tcz__errf(-EBADMSG, err, errlen,
				 "%zu bytes: too short for a GGUF header", len);
	if (memcmp(p, GGUF_MAGIC, 4))
		return tcz__errf(-EBADMSG, err, errlen,
				 "bad magic %02x %02x %02x %02x (not a GGUF "
				 "file)", p[0], p[1], p[2], p[3]);
	if (len < GGUF_HDR)
		return tcz__errf(-EBADMSG, err, errlen,
				 "header cut short: %zu bytes, a GGUF header "
				 "takes %d", len, GGUF_HDR);
	r->pos = 4;
	get32(r, &f->version);
	if (f->version == 1)
		return tcz__errf(-EBADMSG, err, errlen,
				 "GGUF version 1 is not supported (only "
				 "versions 2 and 3; convert the file with a "
				 "current llama.cpp)");
	if (f->version == 0x02000000u || f->version == 0x03000000u)
		return tcz__errf(-EBADMSG, err, errlen,
				 "big-endian GGUF is not supported");
	if (f->version != 2 && f->version != 3)
		return tcz__errf(-EBADMSG, err, errlen,
				 "unsupported GGUF version %u (only 2 and 3)",
				 f->version);
	get(r, 8, n_tensors);
	get(r, 8, n_kv);
	x = left(r);
	if (*n_kv > x / MIN_KV)
		return tcz__errf(-EBADMSG, err, errlen,
				 "KV count %llu exceeds what a %zu-byte file "
				 "can hold", (unsigned long long)*n_kv, len);
	if (*n_tensors > x / MIN_TI)
		return tcz__errf(-EBADMSG, err, errlen,
				 "tensor count %llu exceeds what a %zu-byte "
				 "file can hold",
				 (unsigned long long)*n_tensors, len);
	return 0;
}

int tcz_gguf_parse(const void *buf, size_t len, tcz_gguf_file *out,
		   char *err, size_t errlen)
{
	rd r = {buf, len, 0};
	uint64_t nt = 0, nk = 0;
	int rc;

	memset(out, 0, sizeof *out);
	if (!buf)
		len = r.len = 0;
	if ((rc = parse_header(&r, out, &nt, &nk, err, errlen)))
		return rc;
	out->file_size = len;
	if ((rc = parse_kvs(&r, out, nk, err, errlen)) ||
	    (rc = parse_alignment(out, err, errlen)))
		goto fail;
	size_t cap = 0;
	for (size_t i = 0; i < nt; i++) {
		if (reserve((void **)&out->tensors, &cap, i,
			    sizeof *out->tensors)) {
			rc = -ENOMEM;
			goto fail;
		}
		out->n_tensors = i + 1;
		if ((rc = parse_tensor(&r, i, &out->tensors[i], err, errlen)))
			goto fail;
	}
	out->header_len = r.pos;
	out->data_offset = (r.pos + out->alignment - 1) /
			   out->alignment * out->alignment;
	if ((rc = check_dups(out, err, errlen)) ||
	    (rc = check_layout(out, err, errlen)))
		goto fail;
	return 0;
fail:
	tcz_gguf_free(out);
	return rc;
}

/* ---- queries ------------------------------------------------------------------ */

const tcz_gguf_kv *tcz_gguf_find(const tcz_gguf_file *f, const char *key)
{
	for (size_t i = 0; i < f->n_kv; i++)
		if (!strcmp(f->kv[i].key, key))
			return &f->kv[i];
	return NULL;
}

static int64_t int_value(const tcz_gguf_kv *kv)
{
	if (!kv)
		return -1;
	switch (kv->type) {
	case TCZ_GGUF_U8:
	case TCZ_GGUF_U16:
	case TCZ_GGUF_U32:
	case TCZ_GGUF_U64:
		return kv->v.u > INT64_MAX ? -1 : (int64_t)kv->v.u;
	case TCZ_GGUF_I8:
	case TCZ_GGUF_I16:
	case TCZ_GGUF_I32:
	case TCZ_GGUF_I64:
		return kv->v.i;
	}
	return -1;
}

static int64_t arch_int(const tcz_gguf_file *f, const tcz_gguf_info *in,
			const char *suffix)
{
	char key[320];
	if (!in->architecture || in->architecture_len > 256)
		return -1;
	snprintf(key, sizeof key, "%.*s.%s", (int)in->architecture_len,
		 in->architecture, suffix);
	return int_value(tcz_gguf_find(f, key));
}

void tcz_gguf_get_info(const tcz_gguf_file *f, tcz_gguf_info *out)
{
	const tcz_gguf_kv *a = tcz_gguf_find(f, "general.architecture");
	const tcz_gguf_kv *tok = tcz_gguf_find(f, "tokenizer.ggml.tokens");

	memset(out, 0, sizeof *out);
	if (a && a->type == TCZ_GGUF_STRING) {
		out->architecture = a->str;
		out->architecture_len = (size_t)a->str_len;
	}
	out->context_length = arch_int(f, out, "context_length");
	out->embedding_length = arch_int(f, out, "embedding_length");
	out->block_count = arch_int(f, out, "block_count");
	out->vocab_size = tok && tok->type == TCZ_GGUF_ARRAY &&
					  tok->arr_len <= INT64_MAX
				  ? (int64_t)tok->arr_len
				  : -1;
	out->file_type = int_value(tcz_gguf_find(f, "general.file_type"));
}

/* ---- JSON ---------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n), 0 when invalid
 * (overlong forms, surrogates and values above U+10FFFF are). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	unsigned lo = 0x80, hi = 0xbf;
	size_t k;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		k = 2;
	else if (c >= 0xe0 && c <= 0xef)
		k = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
	else if (c >= 0xf0 && c <= 0xf4)
		k = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
	else
		return 0;
	if (n < k || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t m = 2; m < k; m++)
		if ((s[m] & 0xc0) != 0x80)
			return 0;
	return k;
}

/* A JSON string of n bytes, invalid UTF-8 replaced by U+FFFD. */
static json_t *jstring(const unsigned char *s, size_t n)
{
	size_t i, k;
	for (i = 0; i < n && (k = utf8_len(s + i, n - i)); i += k)
		;
	if (i == n)
		return json_stringn((const char *)s, n);
	char *b = malloc(3 * n + 1);
	size_t o = 0;
	if (!b)
		return NULL;
	for (i = 0; i < n;) {
		k = utf8_len(s + i, n - i);
		if (k) {
			memcpy(b + o, s + i, k);
			o += k;
			i += k;
		} else {
			memcpy(b + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	json_t *j = json_stringn(b, o);
	free(b);
	return j;
}

static json_t *jfloat(double d)
{
	return isfinite(d) ? json_real(d) : json_null();
}

static json_t *jvalue(rd *r, uint32_t t, unsigned depth);

static json_t *jarray(rd *r, unsigned depth)
{
	uint32_t et;
	uint64_t n;
	if (depth >= TCZ_GGUF_MAX_DEPTH || get32(r, &et) || get(r, 8, &n) ||
	    et >= TCZ_GGUF_VTYPE_COUNT)
		return NULL;
	json_t *arr = json_array();
	int big = n > TCZ_GGUF_JSON_ARRAY_MAX;
	for (uint64_t i = 0; arr && i < n; i++) {
		if (big && i >= TCZ_GGUF_JSON_FIRST &&
		    et != TCZ_GGUF_STRING && et != TCZ_GGUF_ARRAY) {
			/* fixed-size elements: skip the rest at once */
			uint64_t skip = (n - i) * vtypes[et].size;
			if (skip > left(r))
				break;
			r->pos += (size_t)skip;
			break;
		}
		json_t *v = jvalue(r, et, depth + 1);
		if (!v) {
			json_decref(arr);
			return NULL;
		}
		if (big && i >= TCZ_GGUF_JSON_FIRST)
			json_decref(v);
		else if (json_array_append_new(arr, v))
			arr = (json_decref(arr), NULL);
	}
	if (!arr || !big)
		return arr;
	json_t *o = json_object();
	if (o && !json_object_set_new(o, "type",
				      json_string(vtypes[et].name)) &&
	    !json_object_set_new(o, "length", json_integer((json_int_t)n)) &&
	    !json_object_set_new(o, "first", arr))
		return o;
	json_decref(o);
	return NULL;
}

static json_t *jvalue(rd *r, uint32_t t, unsigned depth)
{
	uint64_t x;
	const unsigned char *s;
	char dec[24];

	switch (t) {
	case TCZ_GGUF_STRING:
		return get_str(r, &s, &x) ? NULL : jstring(s, (size_t)x);
	case TCZ_GGUF_ARRAY:
		return jarray(r, depth);
	}
	if (t >= TCZ_GGUF_VTYPE_COUNT || get(r, vtypes[t].size, &x))
		return NULL;
	switch (t) {
	case TCZ_GGUF_BOOL:
		return json_boolean(x);
	case TCZ_GGUF_F32: {
		float f;
		uint32_t u = (uint32_t)x;
		memcpy(&f, &u, 4);
		return jfloat(f);
	}
	case TCZ_GGUF_F64: {
		double d;
		memcpy(&d, &x, 8);
		return jfloat(d);
	}
	case TCZ_GGUF_I8:
	case TCZ_GGUF_I16:
	case TCZ_GGUF_I32:
	case TCZ_GGUF_I64: {
		unsigned sh = 64 - 8 * vtypes[t].size;
		return json_integer((json_int_t)((int64_t)(x << sh) >> sh));
	}
	}
	if (x > INT64_MAX) {
		snprintf(dec, sizeof dec, "%llu", (unsigned long long)x);
		return json_string(dec);
	}
	return json_integer((json_int_t)x);
}

json_t *tcz_gguf_kv_json(const tcz_gguf_file *f, const void *buf,
			 size_t len)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < f->n_kv; i++) {
		const tcz_gguf_kv *kv = &f->kv[i];
		if (kv->offset > len || kv->size > len - kv->offset)
			return json_decref(o), NULL;
		rd r = {buf, (size_t)(kv->offset + kv->size),
			(size_t)kv->offset};
		json_t *v = jvalue(&r, kv->type, 0);
		if (!v || json_object_set_new(o, kv->key, v))
			return json_decref(o), NULL;
	}
	return o;
}

/* ---- extents ------------------------------------------------------------------- */

int tcz_gguf_extents(const tcz_gguf_file *f, tcz_gguf_extent **out,
		     size_t *n)
{
	tcz_gguf_extent *e = calloc(2 * f->n_tensors + 2, sizeof *e);
	size_t k = 0;
	uint64_t at = 0;

	if (!e)
		return -ENOMEM;
	for (size_t i = 0; i < f->n_tensors; i++) {
		const tcz_gguf_tensor *t = &f->tensors[i];
		uint64_t off = f->data_offset + t->offset;
		if (off > at)
			e[k++] = (tcz_gguf_extent){at, off - at,
						   TCZ_GGUF_EXT_BYTES, 0};
		e[k++] = (tcz_gguf_extent){off, t->nbytes, TCZ_GGUF_EXT_TENSOR,
					   i};
		at = off + t->nbytes;
	}
	if (f->file_size > at)
		e[k++] = (tcz_gguf_extent){at, f->file_size - at,
					   TCZ_GGUF_EXT_BYTES, 0};
	*out = e;
	*n = k;
	return 0;
}
