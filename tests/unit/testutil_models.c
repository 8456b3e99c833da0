#include "testutil_models.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "codec/half.h"

const char *tu_models_dir(void)
{
	const char *d = getenv("TCZ_MODELS_DIR");
	struct stat st;
	if (!d || !*d || stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
		return NULL;
	return d;
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

static int read_all(const char *path, unsigned char **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -errno;
	int r = 0;
	long sz;
	if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		r = -EIO;
		goto out;
	}
	*buf = malloc(sz ? (size_t)sz : 1);
	if (!*buf) {
		r = -ENOMEM;
		goto out;
	}
	if (fread(*buf, 1, (size_t)sz, f) != (size_t)sz) {
		free(*buf);
		r = -EIO;
		goto out;
	}
	*len = (size_t)sz;
out:
	fclose(f);
	return r;
}

/* One tensor entry; 1 when it is not a float tensor (skipped). */
static int load_one(const char *name, json_t *v, const unsigned char *data,
		    size_t data_len, tu_tensor *t)
{
	const char *dt = json_string_value(json_object_get(v, "dtype"));
	json_t *shape = json_object_get(v, "shape");
	json_t *offs = json_object_get(v, "data_offsets");
	if (!dt || !json_is_array(shape) || !json_is_array(offs) ||
	    json_array_size(offs) != 2 || json_array_size(shape) > 8)
		return -EBADMSG;
	size_t es;
	if (strcmp(dt, "F32") == 0)
		es = 4;
	else if (strcmp(dt, "F16") == 0 || strcmp(dt, "BF16") == 0)
		es = 2;
	else
		return 1;
	json_int_t b = json_integer_value(json_array_get(offs, 0));
	json_int_t e = json_integer_value(json_array_get(offs, 1));
	if (b < 0 || e < b || (uint64_t)e > data_len)
		return -EBADMSG;
	size_t n = 1;
	memset(t, 0, sizeof(*t));
	t->ndim = json_array_size(shape);
	for (size_t i = 0; i < t->ndim; i++) {
		json_int_t d = json_integer_value(json_array_get(shape, i));
		if (d < 0 || (d && n > SIZE_MAX / (size_t)d))
			return -EBADMSG;
		t->shape[i] = (size_t)d;
		n *= (size_t)d;
	}
	if (n > SIZE_MAX / es || (size_t)(e - b) != n * es)
		return -EBADMSG;
	t->n = n;
	t->name = strdup(name);
	t->data = malloc(n ? n * sizeof(float) : 1);
	if (!t->name || !t->data) {
		free(t->name);
		free(t->data);
		return -ENOMEM;
	}
	const unsigned char *p = data + b;
	if (es == 4)
		memcpy(t->data, p, n * 4);
	else if (dt[0] == 'F')
		tcz_f16_to_f32_n(p, t->data, n);
	else
		tcz_bf16_to_f32_n(p, t->data, n);
	return 0;
}

int tu_load_safetensors(const char *path, tu_tensor **out, size_t *count)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	int r = read_all(path, &buf, &len);
	if (r)
		return r;
	uint64_t hl;
	json_t *root = NULL;
	tu_tensor *t = NULL;
	size_t k = 0;
	if (len < 8) {
		r = -EBADMSG;
		goto out;
	}
	memcpy(&hl, buf, 8);
	if (hl > len - 8) {
		r = -EBADMSG;
		goto out;
	}
	root = json_loadb((const char *)buf + 8, (size_t)hl, 0, NULL);
	if (!json_is_object(root)) {
		r = -EBADMSG;
		goto out;
	}
	t = calloc(json_object_size(root) + 1, sizeof(*t));
	if (!t) {
		r = -ENOMEM;
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		if (strcmp(key, "__metadata__") == 0)
			continue;
		r = load_one(key, v, buf + 8 + hl, len - 8 - (size_t)hl, &t[k]);
		if (r < 0)
			goto out;
		if (r == 0)
			k++;
		r = 0;
	}
out:
	if (r) {
		tu_free_tensors(t, k);
	} else {
		*out = t;
		*count = k;
	}
	json_decref(root);
	free(buf);
	return r;
}

int tu_main(int argc, char **argv, const struct CMUnitTest *synthetic,
	    size_t n_synthetic, const struct CMUnitTest *models,
	    size_t n_models)
{
	if (argc > 1 && strcmp(argv[1], "models") == 0) {
		if (!tu_models_dir()) {
			printf("SKIP: no real models (TCZ_MODELS_DIR=%s)\n",
			       getenv("TCZ_MODELS_DIR") ? getenv("TCZ_MODELS_DIR")
							: "");
			return 77;
		}
		return _cmocka_run_group_tests("models", models, n_models, NULL,
					       NULL);
	}
	return _cmocka_run_group_tests("synthetic", synthetic, n_synthetic,
				       NULL, NULL);
}
