/* GGUF files as import sources: their tensors (plain types as NumPy
 * arrays, block types as their blocks with the logical shape beside), the
 * extents that rebuild the file exactly, and what `tczfs info` shows. */
#include "store/source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec/ggml.h"
#include "store/internal.h"

/* {"version", "alignment", "tensors", "architecture", ..., "types":
 * {"Q4_0": n, ...}, "kv": {...}} */
static char *gguf_meta(const src_file *f)
{
	const tcz_gguf_file *g = &f->gguf;
	tcz_gguf_info gi;
	tcz_gguf_get_info(g, &gi);
	json_t *o = json_object(), *types = json_object();
	json_t *kv = tcz_gguf_kv_json(g, f->map, f->size);
	if (!o || !types || !kv)
		goto fail;
	json_object_set_new(o, "version", json_integer(g->version));
	json_object_set_new(o, "alignment", json_integer(g->alignment));
	json_object_set_new(o, "tensors", json_integer((json_int_t)g->n_tensors));
	if (gi.architecture)
		json_object_set_new(o, "architecture",
				    json_stringn(gi.architecture,
						 gi.architecture_len));
	struct {
		const char *key;
		int64_t v;
	} ints[] = {{"context_length", gi.context_length},
		    {"embedding_length", gi.embedding_length},
		    {"block_count", gi.block_count},
		    {"vocab_size", gi.vocab_size},
		    {"file_type", gi.file_type}};
	for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
		if (ints[i].v >= 0)
			json_object_set_new(o, ints[i].key, json_integer(ints[i].v));
	for (size_t k = 0; k < g->n_tensors; k++) {
		tcz_ggml_info ti;
		if (tcz_ggml_type(g->tensors[k].type, &ti))
			continue; /* the parser refuses unknown types */
		json_t *n = json_object_get(types, ti.name);
		json_object_set_new(types, ti.name,
				    json_integer(n ? json_integer_value(n) + 1 : 1));
	}
	json_object_set_new(o, "types", types);
	types = NULL;
	json_object_set_new(o, "kv", kv);
	kv = NULL;
	char *txt = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return txt;
fail:
	json_decref(o);
	json_decref(types);
	json_decref(kv);
	return NULL;
}

int src_gguf(src_set *s, size_t i, char *err, size_t errlen)
{
	char msg[512];
	src_file *f = &s->files[i];
	int rc = tcz_gguf_parse(f->map, f->size, &f->gguf, msg, sizeof msg);
	if (rc)
		return rc == -EBADMSG ? tcz__errf(rc, err, errlen, "%s: %s",
						  f->path, msg)
				      : rc;
	size_t base = s->n_tensors;
	for (size_t k = 0; k < f->gguf.n_tensors; k++) {
		const tcz_gguf_tensor *g = &f->gguf.tensors[k];
		tcz_ggml_info gi;
		if (tcz_ggml_type(g->type, &gi))
			return tcz__errf(-EBADMSG, err, errlen,
					 "%s: tensor '%s': unknown type %u",
					 f->path, g->name, g->type);
		src_tensor *t = src_new_tensor(s);
		if (!t)
			return -ENOMEM;
		f = &s->files[i];
		t->name = g->name;
		t->nbytes = g->nbytes;
		t->data = f->map + f->gguf.data_offset + g->offset;
		t->file = (uint32_t)i;
		/* GGUF lists the fastest-varying dim first; NumPy last */
		uint64_t shape[TCZ_GGUF_MAX_DIMS];
		for (uint32_t d = 0; d < g->n_dims; d++)
			shape[d] = g->dims[g->n_dims - 1 - d];
		if (gi.dtype >= 0) {
			t->dtype = (tcz_dtype)gi.dtype;
			t->ndim = g->n_dims;
			t->numel = g->numel;
			memcpy(t->qshape, shape, g->n_dims * sizeof *shape);
		} else {
			t->dtype = TCZ_DT_U8;
			t->ndim = 1;
			t->numel = g->nbytes;
			t->one_dim = g->nbytes;
			t->qtype = g->type + 1;
			t->qndim = g->n_dims;
			memcpy(t->qshape, shape, g->n_dims * sizeof *shape);
		}
		/* t->shape is set once the tensor array stops moving */
	}
	tcz_gguf_extent *x = NULL;
	size_t nx = 0;
	if ((rc = tcz_gguf_extents(&f->gguf, &x, &nx)) != 0)
		return rc;
	f->ext = calloc(nx ? nx : 1, sizeof *f->ext);
	if (!f->ext) {
		free(x);
		return -ENOMEM;
	}
	for (size_t k = 0; k < nx; k++)
		f->ext[f->n_ext++] = (src_ext){
			x[k].offset, x[k].length,
			x[k].kind == TCZ_GGUF_EXT_TENSOR ? (int64_t)(base + x[k].tensor)
							 : -1};
	free(x);
	/* "gguf" for the first GGUF file of a model, "gguf:<name>" after */
	int first = 1;
	for (size_t k = 0; k < i; k++)
		first &= s->files[k].kind != SRC_GGUF;
	char key[320];
	snprintf(key, sizeof key, "gguf%s%s", first ? "" : ":",
		 first ? "" : f->name);
	char *meta = gguf_meta(f);
	if (!meta)
		return -ENOMEM;
	return src_meta_add(s, key, meta);
}
