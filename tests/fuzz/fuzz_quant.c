/* libFuzzer target: quant blob peek and decode. The input is copied to a
 * buffer of its exact size; peek and decode must agree. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/quant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);
	tcz_quant_params p;
	size_t n;
	int r = tcz_quant_peek(buf, size, &p, &n);
	if (r == 0 && n <= (1u << 22)) {
		float *out = malloc((n + 1) * sizeof(float));
		if (out) {
			if (tcz_quant_decode(buf, size, out, n) != 0)
				abort();
			if (tcz_quant_decode(buf, size, out, n + 1) != -EINVAL)
				abort();
			free(out);
		}
	} else if (r != 0) {
		float out[4];
		if (tcz_quant_decode(buf, size, out, 4) != r)
			abort();
	}
	free(buf);
	return 0;
}
