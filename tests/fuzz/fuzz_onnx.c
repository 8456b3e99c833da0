/* libFuzzer: the ONNX parser on arbitrary bytes. What parses must hold
 * together: ranges inside the file, in order and disjoint, every inline
 * weight decodes, canonical ranges re-encode to the file's bytes, names
 * are unique. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int by_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tcz_onnx_model m;
	char err[256];
	if (tcz_onnx_parse(data, size, &m, err, sizeof err) != 0) {
		if (!err[0])
			abort();
		return 0;
	}
	uint64_t end = 0;
	const char **names = malloc((m.n_tensors + 1) * sizeof *names);
	if (!names)
		abort();
	for (size_t i = 0; i < m.n_tensors; i++) {
		const tcz_onnx_tensor *t = &m.tensors[i];
		names[i] = t->name;
		if (t->proto_off + t->proto_len > size)
			abort();
		for (size_t r = 0; r < t->n_ranges; r++) {
			const tcz_onnx_range *g = &t->ranges[r];
			if (g->off < end || g->off + g->len > size ||
			    g->off < t->proto_off ||
			    g->off + g->len > t->proto_off + t->proto_len)
				abort();
			end = g->off + g->len;
		}
		if (t->kind == TCZ_ONNX_EXTERNAL && t->file >= m.n_files)
			abort();
		if (!t->weight || t->kind == TCZ_ONNX_EXTERNAL)
			continue;
		if (t->nbytes != t->numel * tcz_dtype_size(t->dtype))
			abort();
		uint8_t *v = malloc(t->nbytes + 1);
		if (!v)
			abort();
		if (tcz_onnx_decode_values(t, data, size, v) != 0)
			abort();
		for (size_t r = 0; r < t->n_ranges; r++) {
			uint8_t *o = malloc(t->ranges[r].len + 1);
			if (!o)
				abort();
			int rc = tcz_onnx_encode_range(t, r, v, o);
			if (t->canonical &&
			    (rc != 0 || memcmp(o, data + t->ranges[r].off,
					       t->ranges[r].len) != 0))
				abort();
			free(o);
		}
		free(v);
	}
	qsort(names, m.n_tensors, sizeof *names, by_name);
	for (size_t i = 1; i < m.n_tensors; i++)
		if (strcmp(names[i - 1], names[i]) == 0)
			abort();
	free(names);
	tcz_onnx_free(&m);
	return 0;
}
