/* libFuzzer: the safetensors header parser on arbitrary files, and the
 * header builder on what parses (it must parse back identically). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tcz_st_file st;
	char err[256];
	if (tcz_st_parse(data, size, &st, err, sizeof err) != 0)
		return 0;
	unsigned char *h;
	size_t hl;
	if (tcz_st_build_header(st.tensors, st.n, st.metadata, &h, &hl) == 0) {
		unsigned char *file = calloc(1, hl + st.data_len + 1);
		if (file) {
			memcpy(file, h, hl);
			tcz_st_file again;
			if (tcz_st_parse(file, hl + st.data_len, &again, err,
					 sizeof err) != 0 ||
			    again.n != st.n)
				abort();
			tcz_st_free(&again);
			free(file);
		}
		free(h);
	}
	tcz_st_free(&st);
	return 0;
}
