#include "tests/unit/testutil_models.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "codec/dtype.h"

const char *tu_models_dir(void)
{
	const char *d = getenv("TCZ_MODELS_DIR");
	struct stat st;
	if (!d || !*d || stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
		return NULL;
	return d;
}

static int read_file(const char *path, unsigned char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	int rc = 0;
	long sz;
	if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		rc = -EIO;
		goto out;
	}
	*buf = malloc(sz ? (size_t)sz : 1);
	if (!*buf) {
		rc = -ENOMEM;
		goto out;
	}
	if (fread(*buf, 1, (size_t)sz, f) != (size_t)sz) {
		free(*buf);
		rc = -EIO;
		goto out;
	}
	*len = (size_t)sz;
out:
	fclose(f);
	return rc;
}

struct ent {
	const char *name;
	json_t *v;
	size_t begin;
};

static int by_offset(const void *a, const void *b)
{
	const struct ent *x = a, *y = b;
	return (x->begin > y->begin) - (x->begin < y->begin);
}

/* Fills t from one header entry; returns 1 when the dtype is not a float
 * one (skipped), 0 when loaded, -errno otherwise. */
static int load_one(const struct ent *e, const unsigned char *data,
		    size_t data_len, tu_tensor *t)
{
	json_t *dt = json_object_get(e->v, "dtype");
	json_t *shape = json_object_get(e->v, "shape");
	json_t *offs = json_object_get(e->v, "data_offsets");
	tcz_dtype d;

	if (!json_is_string(dt) || !json_is_array(shape) ||
	    !json_is_array(offs) || json_array_size(offs) != 2 ||
	    json_array_size(shape) > 8)
		return -EINVAL;
	if (tcz_dtype_parse(json_string_value(dt), json_string_length(dt),
			    &d) != 0)
		return -EINVAL;
	if (!tcz_dtype_is_float(d) || d == TCZ_DT_F64)
		return 1;
	json_int_t b = json_integer_value(json_array_get(offs, 0));
	json_int_t en = json_integer_value(json_array_get(offs, 1));
	if (!json_is_integer(json_array_get(offs, 0)) ||
	    !json_is_integer(json_array_get(offs, 1)) || b < 0 || en < b ||
	    (uint64_t)en > data_len)
		return -EINVAL;
	size_t n = 1;
	t->ndim = json_array_size(shape);
	for (size_t i = 0; i < t->ndim; i++) {
		json_t *s = json_array_get(shape, i);
		if (!json_is_integer(s) || json_integer_value(s) < 0)
			return -EINVAL;
		t->shape[i] = (size_t)json_integer_value(s);
		if (t->shape[i] && n > SIZE_MAX / t->shape[i])
			return -EINVAL;
		n *= t->shape[i];
	}
	if ((size_t)(en - b) / tcz_dtype_size(d) != n ||
	    (size_t)(en - b) % tcz_dtype_size(d))
		return -EINVAL;
	t->n = n;
	t->name = strdup(e->name);
	t->data = malloc(n ? n * sizeof(float) : 1);
	if (!t->name || !t->data)
		return -ENOMEM;
	return tcz_dtype_to_f32(d, data + b, n, t->data);
}

int tu_load_safetensors(const char *path, tu_tensor **out, size_t *count)
{
	unsigned char *buf = NULL;
	size_t len = 0, nent = 0, nt = 0;
	struct ent *ents = NULL;
	tu_tensor *ts = NULL;
	json_t *root = NULL;
	int rc = read_file(path, &buf, &len);
	if (rc)
		return rc;

	uint64_t hlen = 0;
	for (int i = 0; i < 8 && (size_t)i < len; i++)
		hlen |= (uint64_t)buf[i] << (8 * i);
	if (len < 8 || hlen > len - 8) {
		rc = -EINVAL;
		goto out;
	}
	root = json_loadb((const char *)buf + 8, (size_t)hlen, 0, NULL);
	if (!json_is_object(root)) {
		rc = -EINVAL;
		goto out;
	}
	ents = calloc(json_object_size(root) + 1, sizeof(*ents));
	ts = calloc(json_object_size(root) + 1, sizeof(*ts));
	if (!ents || !ts) {
		rc = -ENOMEM;
		goto out;
	}
	const char *key;
	json_t *val;
	json_object_foreach(root, key, val)
	{
		if (strcmp(key, "__metadata__") == 0)
			continue;
		json_t *offs = json_object_get(val, "data_offsets");
		ents[nent].name = key;
		ents[nent].v = val;
		ents[nent].begin =
			(size_t)json_integer_value(json_array_get(offs, 0));
		nent++;
	}
	qsort(ents, nent, sizeof(*ents), by_offset);
	for (size_t i = 0; i < nent; i++) {
		rc = load_one(&ents[i], buf + 8 + hlen, len - 8 - (size_t)hlen,
			      &ts[nt]);
		if (rc < 0) {
			nt++; /* free what it allocated */
			goto out;
		}
		if (rc == 0)
			nt++;
		rc = 0;
	}
	*out = ts;
	*count = nt;
	ts = NULL;
out:
	if (ts)
		tu_free_tensors(ts, nt);
	free(ents);
	json_decref(root);
	free(buf);
	return rc;
}

void tu_free_tensors(tu_tensor *t, size_t count)
{
	if (!t)
		return;
	for (size_t i = 0; i < count; i++) {
		free(t[i].name);
		free(t[i].data);
	}
	free(t);
}
