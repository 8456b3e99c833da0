#include "store/safetensors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store/internal.h"

#include "store/store.h"


void tcz_st_free(tcz_st_file *f)
{
	for (size_t i = 0; f->tensors && i < f->n; i++) {
		free(f->tensors[i].name);
		free(f->tensors[i].shape);
	}
	free(f->tensors);
	free(f->metadata);
	memset(f, 0, sizeof *f);
}

/* A JSON integer in [0, 2^63). */
static int get_uint(json_t *v, uint64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int parse_tensor(const char *name, json_t *obj, uint64_t data_len,
			tcz_st_tensor *t, char *err, size_t errlen)
{
	if (!*name)
		return tcz__errf(-EBADMSG, err, errlen, "a tensor has an empty name");
	if (!json_is_object(obj))
		return tcz__errf(-EBADMSG, err, errlen, "tensor '%s': entry is not an object",
			   name);
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		if (strcmp(key, "dtype") && strcmp(key, "shape") &&
		    strcmp(key, "data_offsets"))
			return tcz__errf(-EBADMSG, err, errlen,
				   "tensor '%s': unexpected field '%s'", name,
				   key);
	}
	json_t *dt = json_object_get(obj, "dtype");
	json_t *sh = json_object_get(obj, "shape");
	json_t *off = json_object_get(obj, "data_offsets");
	if (!json_is_string(dt))
		return tcz__errf(-EBADMSG, err, errlen, "tensor '%s': missing or non-string dtype",
			   name);
	if (tcz_dtype_parse(json_string_value(dt), json_string_length(dt),
			    &t->dtype))
		return tcz__errf(-EBADMSG, err, errlen, "tensor '%s': unsupported dtype '%s'",
			   name, json_string_value(dt));
	if (!json_is_array(sh))
		return tcz__errf(-EBADMSG, err, errlen, "tensor '%s': missing or non-array shape",
			   name);
	size_t nd = json_array_size(sh);
	if (nd > TCZ_MAX_DIMS)
		return tcz__errf(-EBADMSG, err, errlen, "tensor '%s': %zu dimensions (at most %u)",
			   name, nd, TCZ_MAX_DIMS);
	t->ndim = (uint32_t)nd;
	t->shape = calloc(nd + 1, sizeof *t->shape);
	if (!t->shape)
		return -ENOMEM;
	uint64_t numel = 1;
	int overflow = 0;
	for (size_t i = 0; i < nd; i++) {
		if (get_uint(json_array_get(sh, i), &t->shape[i]))
			return tcz__errf(-EBADMSG, err, errlen,
				   "tensor '%s': shape[%zu] is not a "
				   "non-negative integer",
				   name, i);
		if (t->shape[i] && numel > UINT64_MAX / t->shape[i])
			overflow = 1;
		else
			numel *= t->shape[i];
	}
	/* a zero dimension makes the product 0 whatever the others are */
	for (size_t i = 0; i < nd; i++)
		if (t->shape[i] == 0)
			numel = 0, overflow = 0;
	uint64_t nbytes;
	size_t es = tcz_dtype_size(t->dtype);
	if (overflow || (numel && numel > UINT64_MAX / es))
		return tcz__errf(-EBADMSG, err, errlen, "tensor '%s': shape size overflows", name);
	nbytes = numel * es;
	t->numel = numel;
	if (!json_is_array(off) || json_array_size(off) != 2 ||
	    get_uint(json_array_get(off, 0), &t->begin) ||
	    get_uint(json_array_get(off, 1), &t->end))
		return tcz__errf(-EBADMSG, err, errlen,
			   "tensor '%s': data_offsets must be [begin, end] "
			   "non-negative integers",
			   name);
	if (t->begin > t->end)
		return tcz__errf(-EBADMSG, err, errlen,
			   "tensor '%s': data_offsets [%llu, %llu] are reversed",
			   name, (unsigned long long)t->begin,
			   (unsigned long long)t->end);
	if (t->end > data_len)
		return tcz__errf(-EBADMSG, err, errlen,
			   "tensor '%s': data_offsets end %llu is past the data "
			   "(%llu bytes; file truncated?)",
			   name, (unsigned long long)t->end,
			   (unsigned long long)data_len);
	if (t->end - t->begin != nbytes)
		return tcz__errf(-EBADMSG, err, errlen,
			   "tensor '%s': data_offsets span %llu bytes but %s x "
			   "shape needs %llu",
			   name, (unsigned long long)(t->end - t->begin),
			   tcz_dtype_name(t->dtype), (unsigned long long)nbytes);
	if (!(t->name = strdup(name)))
		return -ENOMEM;
	return 0;
}

static int by_offset(const void *a, const void *b)
{
	const tcz_st_tensor *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->name, y->name);
}

int tcz_st_parse(const void *buf, size_t len, tcz_st_file *out, char *err,
		 size_t errlen)
{
	const unsigned char *p = buf;
	memset(out, 0, sizeof *out);
	if (len < 8)
		return tcz__errf(-EBADMSG, err, errlen,
			   "%zu bytes: too short for a safetensors header", len);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = (n << 8) | p[i];
	if (n > TCZ_ST_HEADER_MAX)
		return tcz__errf(-EBADMSG, err, errlen,
			   "header length %llu exceeds the 100 MiB limit "
			   "(not a safetensors file?)",
			   (unsigned long long)n);
	if (n > len - 8)
		return tcz__errf(-EBADMSG, err, errlen,
			   "header length %llu exceeds the file size %zu "
			   "(truncated?)",
			   (unsigned long long)n, len);
	if (n < 2 || p[8] != '{')
		return tcz__errf(-EBADMSG, err, errlen, "header is not a JSON object");

	json_error_t je;
	json_t *root = json_loadb((const char *)p + 8, (size_t)n,
				  JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		if (strstr(je.text, "duplicate"))
			return tcz__errf(-EBADMSG, err, errlen, "duplicate tensor name (%s)",
				   je.text);
		return tcz__errf(-EBADMSG, err, errlen, "invalid JSON header: %s (column %d)",
			   je.text, je.column);
	}
	int rc = 0;
	if (!json_is_object(root)) {
		rc = tcz__errf(-EBADMSG, err, errlen, "header is not a JSON object");
		goto out;
	}
	out->header_len = n;
	out->data_offset = 8 + n;
	out->data_len = len - 8 - n;
	size_t count = json_object_size(root);
	out->tensors = calloc(count ? count : 1, sizeof *out->tensors);
	if (!out->tensors) {
		rc = -ENOMEM;
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "__metadata__") == 0) {
			const char *mk;
			json_t *mv;
			if (!json_is_object(v)) {
				rc = tcz__errf(-EBADMSG, err, errlen,
					 "__metadata__ is not an object");
				goto out;
			}
			json_object_foreach(v, mk, mv)
			{
				if (!json_is_string(mv)) {
					rc = tcz__errf(-EBADMSG, err, errlen,
						 "__metadata__ value '%s' is not "
						 "a string",
						 mk);
					goto out;
				}
			}
			out->metadata = json_dumps(v, JSON_COMPACT);
			if (!out->metadata) {
				rc = -ENOMEM;
				goto out;
			}
			continue;
		}
		rc = parse_tensor(key, v, out->data_len, &out->tensors[out->n],
				  err, errlen);
		out->n++; /* the slot owns what parse_tensor allocated */
		if (rc)
			goto out;
	}
	qsort(out->tensors, out->n, sizeof *out->tensors, by_offset);
	uint64_t at = 0;
	for (size_t i = 0; i < out->n; i++) {
		tcz_st_tensor *t = &out->tensors[i];
		if (t->begin < at) {
			rc = tcz__errf(-EBADMSG, err, errlen,
				 "tensor '%s': data_offsets [%llu, %llu] overlap "
				 "tensor '%s'",
				 t->name, (unsigned long long)t->begin,
				 (unsigned long long)t->end,
				 out->tensors[i - 1].name);
			goto out;
		}
		if (t->begin > at) {
			rc = tcz__errf(-EBADMSG, err, errlen,
				 "tensor '%s': %llu unused bytes before its data "
				 "(a hole at offset %llu)",
				 t->name, (unsigned long long)(t->begin - at),
				 (unsigned long long)at);
			goto out;
		}
		at = t->end;
	}
	if (at != out->data_len)
		rc = tcz__errf(-EBADMSG, err, errlen,
			 "%llu bytes after the last tensor's data are not "
			 "covered by any tensor",
			 (unsigned long long)(out->data_len - at));
out:
	json_decref(root);
	if (rc)
		tcz_st_free(out);
	return rc;
}

int tcz_st_build_header(const tcz_st_tensor *t, size_t n,
			const char *metadata, unsigned char **out,
			size_t *len)
{
	json_t *root = json_object();
	int rc = 0;
	if (!root)
		return -ENOMEM;
	if (metadata) {
		json_t *m = json_loads(metadata, 0, NULL);
		if (!json_is_object(m)) {
			json_decref(m);
			json_decref(root);
			return -EINVAL;
		}
		json_object_set_new(root, "__metadata__", m);
	}
	uint64_t at = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *dn = tcz_dtype_name(t[i].dtype);
		json_t *shape = json_array(), *offs = json_array();
		json_t *e = json_object();
		if (!dn) {
			rc = -EINVAL;
		} else if (!shape || !offs || !e) {
			rc = -ENOMEM;
		}
		for (uint32_t d = 0; rc == 0 && d < t[i].ndim; d++)
			json_array_append_new(
				shape, json_integer((json_int_t)t[i].shape[d]));
		uint64_t nb = t[i].numel * tcz_dtype_size(t[i].dtype);
		if (rc == 0) {
			json_array_append_new(offs, json_integer((json_int_t)at));
			json_array_append_new(offs,
					      json_integer((json_int_t)(at + nb)));
			json_object_set_new(e, "dtype", json_string(dn));
			json_object_set_new(e, "shape", shape);
			json_object_set_new(e, "data_offsets", offs);
			if (json_object_set_new(root, t[i].name, e))
				rc = -ENOMEM;
		} else {
			json_decref(shape);
			json_decref(offs);
			json_decref(e);
		}
		at += nb;
	}
	char *text = rc ? NULL : json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (rc)
		return rc;
	if (!text)
		return -ENOMEM;
	size_t tl = strlen(text), padded = (tl + 7) & ~(size_t)7;
	unsigned char *h = malloc(8 + padded);
	if (!h) {
		free(text);
		return -ENOMEM;
	}
	for (int i = 0; i < 8; i++)
		h[i] = (unsigned char)((uint64_t)padded >> (8 * i));
	memcpy(h + 8, text, tl);
	memset(h + 8 + tl, ' ', padded - tl);
	free(text);
	*out = h;
	*len = 8 + padded;
	return 0;
}
