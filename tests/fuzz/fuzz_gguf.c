/* libFuzzer: the GGUF parser on arbitrary files. What parses must be
 * consistent: extents tiling the file, tensor data inside it, and a KV
 * JSON object with one member per KV. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "store/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tcz_gguf_file g;
	char err[256];
	if (tcz_gguf_parse(data, size, &g, err, sizeof err) != 0)
		return 0;
	tcz_gguf_extent *e;
	size_t n;
	if (tcz_gguf_extents(&g, &e, &n) == 0) {
		uint64_t at = 0;
		for (size_t i = 0; i < n; i++) {
			if (e[i].offset != at || !e[i].length)
				abort();
			at += e[i].length;
		}
		if (at != size)
			abort();
		free(e);
	}
	for (size_t i = 0; i < g.n_tensors; i++)
		if (g.data_offset + g.tensors[i].offset + g.tensors[i].nbytes >
		    size)
			abort();
	json_t *j = tcz_gguf_kv_json(&g, data, size);
	if (j && json_object_size(j) != g.n_kv)
		abort();
	json_decref(j);
	tcz_gguf_info in;
	tcz_gguf_get_info(&g, &in);
	tcz_gguf_free(&g);
	return 0;
}
