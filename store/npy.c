#include "store/npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

static const struct {
	tcz_dtype dt;
	const char *descr;
} descrs[] = {
	{TCZ_DT_BOOL, "|b1"}, {TCZ_DT_U8, "|u1"},  {TCZ_DT_I8, "|i1"},
	{TCZ_DT_U16, "<u2"},  {TCZ_DT_I16, "<i2"}, {TCZ_DT_U32, "<u4"},
	{TCZ_DT_I32, "<i4"},  {TCZ_DT_U64, "<u8"}, {TCZ_DT_I64, "<i8"},
	{TCZ_DT_F16, "<f2"},  {TCZ_DT_F32, "<f4"}, {TCZ_DT_F64, "<f8"},
};

tcz_dtype tcz_npy_dtype(tcz_dtype dt)
{
	return dt == TCZ_DT_BF16 ? TCZ_DT_F32 : dt;
}

int tcz_npy_header(tcz_dtype dt, uint32_t ndim, const uint64_t *shape,
		   char *out, size_t cap, size_t *len)
{
	const char *descr = NULL;
	tcz_dtype nd = tcz_npy_dtype(dt);
	for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++)
		if (descrs[i].dt == nd)
			descr = descrs[i].descr;
	if (!descr)
		return -EINVAL;
	char dict[900];
	int n = snprintf(dict, sizeof dict,
			 "{'descr': '%s', 'fortran_order': False, 'shape': (",
			 descr);
	for (uint32_t i = 0; i < ndim && n < (int)sizeof dict; i++)
		n += snprintf(dict + n, sizeof dict - (size_t)n, "%llu%s",
			      (unsigned long long)shape[i],
			      ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
	if (n < (int)sizeof dict)
		n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
	if (n >= (int)sizeof dict)
		return -ENOBUFS;
	/* magic(6) + version(2) + u16 length + dict + padding + '\n' */
	size_t total = 10 + (size_t)n + 1;
	total = (total + TCZ_NPY_ALIGN - 1) / TCZ_NPY_ALIGN * TCZ_NPY_ALIGN;
	if (total > cap)
		return -ENOBUFS;
	size_t hl = total - 10;
	memcpy(out, "\x93NUMPY\x01\x00", 8);
	out[8] = (char)(hl & 0xff);
	out[9] = (char)(hl >> 8);
	memcpy(out + 10, dict, (size_t)n);
	memset(out + 10 + n, ' ', hl - (size_t)n - 1);
	out[total - 1] = '\n';
	*len = total;
	return 0;
}


/* A cursor over the header's Python-literal dict. */
typedef struct lex {
	const char *p, *end;
} lex;

static void skip_ws(lex *l)
{
	while (l->p < l->end && (*l->p == ' ' || *l->p == '\t'))
		l->p++;
}

static int eat(lex *l, char c)
{
	skip_ws(l);
	if (l->p < l->end && *l->p == c) {
		l->p++;
		return 1;
	}
	return 0;
}

/* A quoted string without escapes into out[cap]. */
static int quoted(lex *l, char *out, size_t cap)
{
	skip_ws(l);
	if (l->p >= l->end || (*l->p != '\'' && *l->p != '"'))
		return -1;
	char q = *l->p++;
	size_t n = 0;
	while (l->p < l->end && *l->p != q) {
		if (*l->p == '\\' || n + 1 >= cap)
			return -1;
		out[n++] = *l->p++;
	}
	if (l->p >= l->end)
		return -1;
	l->p++;
	out[n] = 0;
	return 0;
}

static int word(lex *l, const char *w)
{
	skip_ws(l);
	size_t n = strlen(w);
	if ((size_t)(l->end - l->p) >= n && memcmp(l->p, w, n) == 0) {
		l->p += n;
		return 1;
	}
	return 0;
}

int tcz_npy_parse(const void *buf, size_t len, tcz_npy_info *out, char *err,
		  size_t errlen)
{
	const unsigned char *b = buf;
	memset(out, 0, sizeof *out);
	if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
		return tcz__errf(-EBADMSG, err, errlen, "not a .npy file (bad magic)");
	size_t hl, hstart;
	if (b[6] == 1 && b[7] == 0) {
		hl = (size_t)b[8] | (size_t)b[9] << 8;
		hstart = 10;
	} else if ((b[6] == 2 || b[6] == 3) && b[7] == 0 && len >= 12) {
		hl = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 |
		     (size_t)b[11] << 24;
		hstart = 12;
	} else {
		return tcz__errf(-EBADMSG, err, errlen, "unsupported .npy version %u.%u", b[6],
			   b[7]);
	}
	if (hl > len - hstart)
		return tcz__errf(-EBADMSG, err, errlen, "header length %zu past end of file", hl);
	lex l = {(const char *)b + hstart, (const char *)b + hstart + hl};
	int have_descr = 0, have_order = 0, have_shape = 0;
	char key[32], descr[32] = "";
	if (!eat(&l, '{'))
		return tcz__errf(-EBADMSG, err, errlen, "header is not a dict");
	while (!eat(&l, '}')) {
		if (quoted(&l, key, sizeof key) || !eat(&l, ':'))
			return tcz__errf(-EBADMSG, err, errlen, "malformed header dict");
		if (strcmp(key, "descr") == 0 && !have_descr) {
			if (quoted(&l, descr, sizeof descr))
				return tcz__errf(-EBADMSG, err, errlen, "descr is not a string");
			have_descr = 1;
		} else if (strcmp(key, "fortran_order") == 0 && !have_order) {
			if (word(&l, "True")) {
				have_order = 2;
			} else if (word(&l, "False")) {
				have_order = 1;
			} else {
				return tcz__errf(-EBADMSG, err, errlen,
					   "fortran_order is not a bool");
			}
		} else if (strcmp(key, "shape") == 0 && !have_shape) {
			if (!eat(&l, '('))
				return tcz__errf(-EBADMSG, err, errlen, "shape is not a tuple");
			while (!eat(&l, ')')) {
				skip_ws(&l);
				uint64_t v = 0;
				const char *s0 = l.p;
				while (l.p < l.end && *l.p >= '0' && *l.p <= '9') {
					unsigned dgt = (unsigned)(*l.p - '0');
					if (v > (UINT64_MAX - dgt) / 10)
						return tcz__errf(-EBADMSG, err, errlen,
							   "shape value too large");
					v = v * 10 + dgt;
					l.p++;
				}
				if (l.p < l.end && *l.p == 'L')
					l.p++;
				if (l.p == s0 || out->ndim >= 32)
					return tcz__errf(-EBADMSG, err, errlen,
						   "malformed shape tuple");
				out->shape[out->ndim++] = v;
				if (!eat(&l, ',')) {
					if (!eat(&l, ')'))
						return tcz__errf(-EBADMSG, err, errlen,
							   "malformed shape tuple");
					break;
				}
			}
			have_shape = 1;
		} else {
			return tcz__errf(-EBADMSG, err, errlen, "unexpected header key '%s'", key);
		}
		if (!eat(&l, ',')) {
			if (!eat(&l, '}'))
				return tcz__errf(-EBADMSG, err, errlen, "malformed header dict");
			break;
		}
	}
	if (!have_descr || !have_order || !have_shape)
		return tcz__errf(-EBADMSG, err, errlen,
			   "header lacks descr, fortran_order or shape");
	int found = 0;
	for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++) {
		if (strcmp(descr, descrs[i].descr) == 0 ||
		    (descr[0] == '<' && descrs[i].descr[0] == '|' &&
		     strcmp(descr + 1, descrs[i].descr + 1) == 0)) {
			out->dtype = descrs[i].dt;
			found = 1;
		}
	}
	if (!found) {
		if (descr[0] == '>')
			return tcz__errf(-EBADMSG, err, errlen,
				   "big-endian arrays ('%s') are not supported",
				   descr);
		return tcz__errf(-EBADMSG, err, errlen, "unsupported dtype '%s'", descr);
	}
	uint64_t numel = 1;
	for (uint32_t i = 0; i < out->ndim; i++) {
		if (out->shape[i] && numel > UINT64_MAX / out->shape[i])
			return tcz__errf(-EBADMSG, err, errlen, "shape size overflows");
		numel *= out->shape[i];
	}
	if (have_order == 2 && out->ndim > 1 && numel > 1)
		return tcz__errf(-EBADMSG, err, errlen,
			   "Fortran-order arrays are not supported");
	size_t es = tcz_dtype_size(out->dtype);
	uint64_t dstart = hstart + hl;
	if (numel > UINT64_MAX / es)
		return tcz__errf(-EBADMSG, err, errlen, "shape size overflows");
	if (len - dstart != numel * es)
		return tcz__errf(-EBADMSG, err, errlen,
			   "data is %llu bytes but dtype x shape needs %llu%s",
			   (unsigned long long)(len - dstart),
			   (unsigned long long)(numel * es),
			   len - dstart < numel * es ? " (truncated?)" : "");
	out->numel = numel;
	out->data_offset = dstart;
	return 0;
}
