/* tczfs info MODEL [--json] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "codec/ggml.h"
#include "tools/cli.h"

static const char info_help[] =
	"usage: tczfs info MODEL [--json] [--store DIR]\n"
	"Shows a model's files and, per tensor: name, dtype, shape, codec,\n"
	"compression ratio and the relative error measured at import (in the\n"
	"tensor's own dtype); then the totals. GGUF and ONNX models also show\n"
	"what the file says of itself (architecture, tensor types; producer,\n"
	"opsets); --json has every GGUF key-value pair.\n";

static void codec_text(const tcz_tensor *t, char *buf, size_t n)
{
	switch (t->codec) {
	case TCZ_CODEC_QUANT:
		snprintf(buf, n, "quant%u/g%u", t->bits, t->group_len);
		break;
	case TCZ_CODEC_TT: {
		int k = snprintf(buf, n, "tt r=");
		for (uint32_t i = 1; i < t->tt_order && k < (int)n; i++)
			k += snprintf(buf + k, n - (size_t)k, "%s%llu",
				      i > 1 ? "," : "",
				      (unsigned long long)t->tt_ranks[i]);
		break;
	}
	default:
		snprintf(buf, n, "%s", tcz_codec_name(t->codec));
	}
}

/* A GGUF block tensor shows its ggml type and logical shape. */
static const char *dtype_text(const tcz_tensor *t)
{
	tcz_ggml_info gi;
	if (t->qtype && tcz_ggml_type(t->qtype - 1, &gi) == 0)
		return gi.name;
	return tcz_dtype_name(t->dtype);
}

static void shape_text(const tcz_tensor *t, char *buf, size_t n)
{
	uint32_t nd = t->qtype ? t->qndim : t->ndim;
	const uint64_t *sh = t->qtype ? t->qshape : t->shape;
	int k = snprintf(buf, n, "[");
	for (uint32_t i = 0; i < nd && k < (int)n; i++)
		k += snprintf(buf + k, n - (size_t)k, "%s%llu", i ? ", " : "",
			      (unsigned long long)sh[i]);
	if (k < (int)n)
		snprintf(buf + k, n - (size_t)k, "]");
}

static double ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0.0;
}

static json_t *model_json(const tcz_model *m)
{
	json_t *files = json_array(), *tensors = json_array();
	for (uint32_t i = 0; i < m->n_files; i++)
		json_array_append_new(
			files, json_pack("{s:s, s:I, s:b}", "name",
					 m->files[i].name, "size",
					 (json_int_t)m->files[i].size, "source",
					 (m->files[i].flags & TCZ_FILE_SOURCE) != 0));
	for (uint32_t i = 0; i < m->n_tensors; i++) {
		const tcz_tensor *t = &m->tensors[i];
		json_t *shape = json_array();
		for (uint32_t d = 0; d < t->ndim; d++)
			json_array_append_new(shape,
					      json_integer((json_int_t)t->shape[d]));
		json_t *o = json_pack(
			"{s:s, s:s, s:o, s:s, s:I, s:I, s:f, s:f, s:f}", "name",
			t->name, "dtype", tcz_dtype_name(t->dtype), "shape", shape,
			"codec", tcz_codec_name(t->codec), "bytes",
			(json_int_t)t->nbytes, "stored_bytes",
			(json_int_t)t->stored_bytes, "ratio",
			ratio(t->nbytes, t->stored_bytes), "rel_error",
			t->rel_error, "max_abs_error", t->max_abs);
		if (t->codec != TCZ_CODEC_TT) { /* TT cores are no chunks */
			json_object_set_new(o, "chunk_bytes",
					    json_integer(t->chunk_bytes));
			json_object_set_new(o, "chunks", json_integer(t->n_chunks));
		}
		if (t->codec == TCZ_CODEC_QUANT) {
			json_object_set_new(o, "bits", json_integer(t->bits));
			json_object_set_new(o, "group", json_integer(t->group_len));
		}
		if (t->qtype) {
			json_t *q = json_array();
			for (uint32_t d = 0; d < t->qndim; d++)
				json_array_append_new(
					q, json_integer((json_int_t)t->qshape[d]));
			json_object_set_new(o, "ggml_type",
					    json_string(dtype_text(t)));
			json_object_set_new(o, "logical_shape", q);
		}
		if (t->codec == TCZ_CODEC_TT) {
			json_t *r = json_array();
			for (uint32_t k = 0; k <= t->tt_order; k++)
				json_array_append_new(
					r, json_integer((json_int_t)t->tt_ranks[k]));
			json_object_set_new(o, "tt_ranks", r);
		}
		json_array_append_new(tensors, o);
	}
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:b, s:I, s:I, s:f, s:o, s:o}",
			      "name", m->name, "source", m->source, "profile",
			      m->profile, "imported", (json_int_t)m->import_time,
			      "lossless", !(m->flags & TCZ_MODEL_LOSSY),
			      "source_bytes", (json_int_t)m->source_bytes,
			      "stored_bytes", (json_int_t)m->stored_bytes, "ratio",
			      ratio(m->source_bytes, m->stored_bytes), "files",
			      files, "tensors", tensors);
	json_t *meta = m->meta ? json_loads(m->meta, 0, NULL) : NULL;
	if (o && meta)
		json_object_set_new(o, "format", meta);
	else
		json_decref(meta);
	return o;
}

static const char *jstr(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

/* One line per source container: what it says of itself. */
static void print_format(const tcz_model *m)
{
	json_t *meta = m->meta ? json_loads(m->meta, 0, NULL) : NULL;
	const char *key;
	json_t *v;
	json_object_foreach(meta, key, v)
	{
		char line[1024];
		int k = 0;
		if (strncmp(key, "gguf", 4) == 0) {
			k = snprintf(line, sizeof line, "GGUF v%lld",
				     (long long)json_integer_value(
					     json_object_get(v, "version")));
			if (json_object_get(v, "architecture"))
				k += snprintf(line + k, sizeof line - (size_t)k,
					      ", %s", jstr(v, "architecture"));
			static const char *const ints[][2] = {
				{"context_length", "context"},
				{"embedding_length", "embedding"},
				{"block_count", "blocks"},
				{"vocab_size", "vocab"}};
			for (size_t i = 0; i < 4; i++) {
				json_t *n = json_object_get(v, ints[i][0]);
				if (json_is_integer(n) && k < (int)sizeof line)
					k += snprintf(line + k, sizeof line - (size_t)k,
						      ", %s %lld", ints[i][1],
						      (long long)json_integer_value(n));
			}
			const char *tn;
			json_t *cnt;
			int first = 1;
			json_object_foreach(json_object_get(v, "types"), tn, cnt)
			{
				if (k >= (int)sizeof line)
					break;
				k += snprintf(line + k, sizeof line - (size_t)k,
					      "%s%s x%lld", first ? "; tensors " : ", ",
					      tn, (long long)json_integer_value(cnt));
				first = 0;
			}
		} else if (strncmp(key, "onnx", 4) == 0) {
			k = snprintf(line, sizeof line, "ONNX ir %lld",
				     (long long)json_integer_value(
					     json_object_get(v, "ir_version")));
			if (*jstr(v, "producer_name"))
				k += snprintf(line + k, sizeof line - (size_t)k,
					      ", from %s %s", jstr(v, "producer_name"),
					      jstr(v, "producer_version"));
			size_t i;
			json_t *op;
			json_array_foreach(json_object_get(v, "opsets"), i, op)
			{
				if (k >= (int)sizeof line)
					break;
				const char *d = jstr(op, "domain");
				k += snprintf(line + k, sizeof line - (size_t)k,
					      "%s%s %lld", i ? ", " : ", opset ",
					      *d ? d : "ai.onnx",
					      (long long)json_integer_value(
						      json_object_get(op, "version")));
			}
			json_t *c = json_object_get(v, "counts");
			if (k < (int)sizeof line)
				snprintf(line + k, sizeof line - (size_t)k,
					 "; %lld tensors (%lld initializers, %lld "
					 "constants, %lld external)",
					 (long long)json_integer_value(
						 json_object_get(v, "tensors")),
					 (long long)json_integer_value(
						 json_object_get(c, "initializer")),
					 (long long)json_integer_value(
						 json_object_get(c, "constant")),
					 (long long)json_integer_value(
						 json_object_get(c, "external")));
		} else {
			continue;
		}
		const char *colon = strchr(key, ':');
		printf("format    %s%s%s\n", colon ? colon + 1 : "",
		       colon ? ": " : "", line);
	}
	json_decref(meta);
}

static void print_model(const tcz_model *m)
{
	char a[32], b[32], t[64];
	time_t it = (time_t)m->import_time;
	struct tm tm;
	localtime_r(&it, &tm);
	strftime(t, sizeof t, "%Y-%m-%d %H:%M:%S", &tm);
	uint64_t values = 0, tb = 0, ts = 0;
	double maxrel = 0, maxabs = 0;
	size_t w = 6;
	for (uint32_t i = 0; i < m->n_tensors; i++) {
		const tcz_tensor *tn = &m->tensors[i];
		values += tn->numel;
		tb += tn->nbytes;
		ts += tn->stored_bytes;
		if (tn->rel_error > maxrel)
			maxrel = tn->rel_error;
		if (tn->max_abs > maxabs)
			maxabs = tn->max_abs;
		if (strlen(tn->name) > w)
			w = strlen(tn->name);
	}
	if (w > 60)
		w = 60;
	printf("model     %s\n", m->name);
	printf("source    %s\n", m->source);
	printf("imported  %s\n", t);
	printf("profile   %s (%s)\n", m->profile,
	       m->flags & TCZ_MODEL_LOSSY ? "lossy" : "lossless");
	for (uint32_t i = 0; i < m->n_files; i++) {
		cli_size(a, sizeof a, m->files[i].size);
		printf("%-9s %s (%s)\n", i ? "" : "files", m->files[i].name, a);
	}
	print_format(m);
	printf("\n%-*s  %-7s %-20s %-14s %8s %10s\n", (int)w, "TENSOR", "DTYPE",
	       "SHAPE", "CODEC", "RATIO", "REL.ERROR");
	for (uint32_t i = 0; i < m->n_tensors; i++) {
		const tcz_tensor *tn = &m->tensors[i];
		char sh[64], co[40];
		shape_text(tn, sh, sizeof sh);
		codec_text(tn, co, sizeof co);
		printf("%-*.*s  %-7s %-20s %-14s %7.3fx %10.3g\n", (int)w, (int)w,
		       tn->name, dtype_text(tn), sh, co,
		       ratio(tn->nbytes, tn->stored_bytes), tn->rel_error);
	}
	cli_size(a, sizeof a, tb);
	cli_size(b, sizeof b, ts);
	printf("\ntotal     %u tensors, %llu values, %s -> %s (%.3fx)\n",
	       m->n_tensors, (unsigned long long)values, a, b, ratio(tb, ts));
	cli_size(a, sizeof a, m->source_bytes);
	cli_size(b, sizeof b, m->stored_bytes);
	printf("files     %s -> %s (%.3fx, headers and aux files included)\n",
	       a, b, ratio(m->source_bytes, m->stored_bytes));
	printf("error     max relative %.3g, max absolute %.3g\n", maxrel,
	       maxabs);
}

int cli_info(int argc, char **argv)
{
	int js = 0, c;
	static const struct option lo[] = {
		{"json", no_argument, 0, 'J'},
		{0, 0, 0, 0},
	};
	while ((c = cli_parse_common(argc, argv, info_help, NULL, lo)) > 1)
		js = 1;
	if (c != 1)
		return cli_exit;
	if (argc - optind != 1)
		return cli_usage(info_help, "expected one MODEL");
	tcz_store *s;
	if (cli_open_store(TCZ_STORE_RDONLY, &s))
		return EXIT_FAILURE;
	tcz_snap *sn;
	tcz_model *m = NULL;
	int rc = tcz_snap_begin(s, &sn);
	if (rc == 0) {
		rc = tcz_snap_model(sn, argv[optind], &m);
		tcz_snap_end(sn);
	}
	tcz_store_close(s);
	if (rc) {
		if (rc == -ENOENT)
			cli_err("info: no model named %s", argv[optind]);
		else
			cli_err("info: %s", tcz_store_errmsg()[0]
						    ? tcz_store_errmsg()
						    : strerror(-rc));
		return EXIT_FAILURE;
	}
	if (js) {
		json_t *o = model_json(m);
		char *txt = json_dumps(o, JSON_INDENT(2));
		if (txt)
			printf("%s\n", txt);
		free(txt);
		json_decref(o);
	} else {
		print_model(m);
	}
	tcz_model_free(m);
	return 0;
}
