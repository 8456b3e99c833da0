/* ONNX models as import sources: the weight tensors whose bytes lie in
 * the file as they are (raw_data, packed float_data, external data) become
 * extents of the model file or of its data files; everything else (the
 * protobuf framing, non-weight tensors, varint-coded values) is kept
 * verbatim, so the files come back byte for byte. Tensors whose values
 * are not stored as plain bytes (varints, unpacked or split floats) are
 * decoded for layers/ and kept exact. */
#include "store/source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store/internal.h"

typedef struct span {
	uint64_t off, len;
	size_t tensor; /* src tensor index */
} span;

static int span_cmp(const void *a, const void *b)
{
	const span *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Extents covering [0, size): the spans (sorted, not overlapping) as
 * tensor data, the bytes between them verbatim. */
static int make_extents(src_file *f, span *sp, size_t n, char *err,
			size_t errlen)
{
	qsort(sp, n, sizeof *sp, span_cmp);
	f->ext = calloc(2 * n + 1, sizeof *f->ext);
	if (!f->ext)
		return -ENOMEM;
	uint64_t at = 0;
	for (size_t k = 0; k < n; k++) {
		if (sp[k].off < at || sp[k].off + sp[k].len > f->size)
			return tcz__errf(-EBADMSG, err, errlen,
					 "%s: tensor data ranges overlap", f->path);
		if (sp[k].off > at)
			f->ext[f->n_ext++] = (src_ext){at, sp[k].off - at, -1};
		f->ext[f->n_ext++] = (src_ext){sp[k].off, sp[k].len,
					       (int64_t)sp[k].tensor};
		at = sp[k].off + sp[k].len;
	}
	if (at < f->size)
		f->ext[f->n_ext++] = (src_ext){at, f->size - at, -1};
	return 0;
}

/* The src file holding external data file fi of model file i, found among
 * the directory's files or added. */
static int data_file(src_set *s, size_t i, size_t fi, size_t *out, char *err,
		     size_t errlen)
{
	const char *loc = s->files[i].onnx.files[fi].location;
	char path[8192];
	const char *slash = strrchr(s->files[i].path, '/');
	int dl = slash ? (int)(slash - s->files[i].path) : 1;
	snprintf(path, sizeof path, "%.*s/%s", dl,
		 slash ? s->files[i].path : ".", loc);
	/* the file's name in the model directory: beside the model file */
	char name[8192];
	const char *mslash = strrchr(s->files[i].name, '/');
	snprintf(name, sizeof name, "%.*s%s",
		 mslash ? (int)(mslash - s->files[i].name + 1) : 0,
		 s->files[i].name, loc);
	for (size_t k = 0; k < s->n_files; k++) {
		if (strcmp(s->files[k].name, name) != 0)
			continue;
		if (s->files[k].kind != SRC_AUX)
			return tcz__errf(-EBADMSG, err, errlen,
					 "%s: external data file '%s' is %s",
					 s->files[i].path, loc,
					 s->files[k].kind == SRC_ONNX_DATA
						 ? "used by another model file too"
						 : "itself a model file");
		s->files[k].kind = SRC_ONNX_DATA;
		*out = k;
		return 0;
	}
	/* in a subdirectory the scan skipped: say what is taken from it */
	size_t cl = strcspn(loc, "/");
	for (size_t k = 0; k < s->n_skipped && loc[cl]; k++)
		if (strncmp(s->skipped[k], loc, cl) == 0 &&
		    s->skipped[k][cl] == ' ') {
			char *w = NULL;
			if (asprintf(&w, "the rest of %.*s/ (only ONNX external "
					 "data is taken from it)",
				     (int)cl, loc) < 0)
				return -ENOMEM;
			free(s->skipped[k]);
			s->skipped[k] = w;
		}
	int rc = src_add_file(s, path, name, SRC_ONNX_DATA);
	if (rc)
		return rc;
	*out = s->n_files - 1;
	return 0;
}

static char *onnx_meta(const tcz_onnx_model *m)
{
	json_t *o = json_object(), *ops = json_array(), *files = json_array(),
	       *c = json_object();
	if (!o || !ops || !files || !c) {
		json_decref(o);
		json_decref(ops);
		json_decref(files);
		json_decref(c);
		return NULL;
	}
	json_object_set_new(o, "ir_version", json_integer(m->ir_version));
	json_object_set_new(o, "model_version", json_integer(m->model_version));
	json_object_set_new(o, "producer_name", json_string(m->producer_name));
	json_object_set_new(o, "producer_version",
			    json_string(m->producer_version));
	json_object_set_new(o, "domain", json_string(m->domain));
	for (size_t k = 0; k < m->n_opsets; k++)
		json_array_append_new(
			ops, json_pack("{s:s?,s:I}", "domain", m->opsets[k].domain,
				       "version", (json_int_t)m->opsets[k].version));
	json_object_set_new(o, "opsets", ops);
	json_object_set_new(o, "tensors", json_integer((json_int_t)m->n_tensors));
	const tcz_onnx_counts *n = &m->count;
	struct {
		const char *k;
		size_t v;
	} cs[] = {{"initializer", n->initializer}, {"sparse_initializer", n->sparse_init},
		  {"constant", n->constant},	     {"attribute", n->attribute},
		  {"in_subgraphs", n->subgraph},     {"in_functions", n->function},
		  {"in_training", n->training},      {"external", n->external},
		  {"not_weights", n->not_weight}};
	for (size_t k = 0; k < sizeof cs / sizeof *cs; k++)
		json_object_set_new(c, cs[k].k, json_integer((json_int_t)cs[k].v));
	json_object_set_new(o, "counts", c);
	for (size_t k = 0; k < m->n_files; k++)
		json_array_append_new(files, json_string(m->files[k].location));
	json_object_set_new(o, "external_files", files);
	json_object_set_new(o, "inline_bytes", json_integer((json_int_t)m->inline_bytes));
	json_object_set_new(o, "external_bytes",
			    json_integer((json_int_t)m->external_bytes));
	char *txt = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return txt;
}

int src_onnx(src_set *s, size_t i, char *err, size_t errlen)
{
	char msg[512];
	src_file *f = &s->files[i];
	int rc = tcz_onnx_parse(f->map, f->size, &f->onnx, msg, sizeof msg);
	if (rc == 0)
		rc = tcz_onnx_check_external(&f->onnx, f->path, 0, msg, sizeof msg);
	if (rc)
		return rc == -EBADMSG ? tcz__errf(rc, err, errlen, "%s: %s",
						  f->path, msg)
				      : rc;
	const tcz_onnx_model *om = &f->onnx;
	size_t *dfile = calloc(om->n_files + 1, sizeof *dfile);
	span *sp = calloc(om->n_tensors + 1, sizeof *sp);
	span *xs = calloc(om->n_tensors + 1, sizeof *xs);
	size_t nsp = 0;
	if (!dfile || !sp || !xs) {
		rc = -ENOMEM;
		goto out;
	}
	/* adding data files moves s->files: om and f are taken again after */
	for (size_t k = 0; k < s->files[i].onnx.n_files && rc == 0; k++) {
		rc = data_file(s, i, k, &dfile[k], err, errlen);
		if (rc == 0 && !s->files[dfile[k]].map)
			rc = src_map(&s->files[dfile[k]], err, errlen);
		if (rc == 0 &&
		    s->files[dfile[k]].size != s->files[i].onnx.files[k].size)
			rc = tcz__errf(-EBADMSG, err, errlen,
				       "%s: changed while it was read",
				       s->files[dfile[k]].path);
	}
	f = &s->files[i];
	om = &f->onnx;
	for (size_t k = 0; k < om->n_tensors && rc == 0; k++) {
		const tcz_onnx_tensor *ot = &om->tensors[k];
		if (!ot->weight)
			continue; /* its bytes stay in the framing */
		src_tensor *t = src_new_tensor(s);
		if (!t) {
			rc = -ENOMEM;
			break;
		}
		size_t ti = s->n_tensors - 1;
		t->name = ot->name;
		t->dtype = ot->dtype;
		t->ndim = ot->ndim;
		t->shape = ot->dims;
		t->numel = ot->numel;
		t->nbytes = ot->nbytes;
		t->file = (uint32_t)i;
		if (ot->kind == TCZ_ONNX_EXTERNAL) {
			src_file *df = &s->files[dfile[ot->file]];
			t->file = (uint32_t)dfile[ot->file];
			t->data = df->map + ot->ext_off;
			continue;
		}
		if ((ot->kind == TCZ_ONNX_RAW || ot->kind == TCZ_ONNX_PACKED) &&
		    ot->n_ranges == 1 && ot->ranges[0].len == ot->nbytes) {
			t->data = f->map + ot->ranges[0].off;
			if (ot->nbytes)
				sp[nsp++] = (span){ot->ranges[0].off, ot->nbytes, ti};
			continue;
		}
		/* not plain bytes in one place: decoded, its ranges kept
		 * verbatim in the framing */
		t->owned = malloc(ot->nbytes ? ot->nbytes : 1);
		if (!t->owned) {
			rc = -ENOMEM;
			break;
		}
		t->data = t->owned;
		if (ot->nbytes &&
		    (rc = tcz_onnx_decode_values(ot, f->map, f->size, t->owned)))
			rc = tcz__errf(-EBADMSG, err, errlen,
				       "%s: tensor '%s': values cannot be decoded",
				       f->path, ot->name);
	}
	if (rc == 0)
		rc = make_extents(&s->files[i], sp, nsp, err, errlen);
	/* each data file: its weight tensors' ranges */
	for (size_t k = 0; k < om->n_files && rc == 0; k++) {
		size_t nx = 0;
		for (size_t ti = 0; ti < s->n_tensors; ti++) {
			const src_tensor *t = &s->tensors[ti];
			if (t->file == dfile[k] && t->nbytes)
				xs[nx++] = (span){(uint64_t)(t->data -
							     s->files[dfile[k]].map),
						  t->nbytes, ti};
		}
		rc = make_extents(&s->files[dfile[k]], xs, nx, err, errlen);
	}
	if (rc == 0) {
		int first = 1;
		for (size_t k = 0; k < i; k++)
			first &= s->files[k].kind != SRC_ONNX;
		char key[320];
		snprintf(key, sizeof key, "onnx%s%s", first ? "" : ":",
			 first ? "" : s->files[i].name);
		char *meta = onnx_meta(&s->files[i].onnx);
		rc = meta ? src_meta_add(s, key, meta) : -ENOMEM;
	}
out:
	free(dfile);
	free(sp);
	free(xs);
	return rc;
}
