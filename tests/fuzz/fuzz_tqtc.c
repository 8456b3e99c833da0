/* libFuzzer target: TQTC parse, then decode of every frame and of the
 * whole segment. The input is copied to a buffer of its exact size. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/tqtc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);
	tcz_tqtc_view v;
	if (tcz_tqtc_parse(buf, size, &v) == 0) {
		uint64_t total = (uint64_t)v.tensor_len * v.frame_count;
		/* a valid header can describe 4 GiB of output: bound it */
		if (total <= (1u << 22)) {
			float *out = malloc(total * sizeof(float));
			if (out) {
				tcz_tqtc_decode(&v, out);
				for (uint32_t f = 0; f < v.frame_count; f++)
					tcz_tqtc_decode_frame(&v, f, out);
				if (tcz_tqtc_decode_frame(&v, v.frame_count, out) == 0)
					abort();
				free(out);
			}
		}
	}
	free(buf);
	return 0;
}
