/* libFuzzer target: quant blob peek and decode, versions 1 and 2. The
 * input is copied to a buffer of its exact size; peek and decode must
 * agree, and decoding from any group that decode_range accepts must give
 * the same values as the whole decode (bit for bit). Seeds:
 * tests/fuzz/seeds/quant (the examples of docs/formats.md). */
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
		if (p.version != TCZ_QUANT_V1 && p.version != TCZ_QUANT_V2)
			abort();
		float *out = malloc((n + 1) * sizeof(float));
		float *part = malloc((n + 1) * sizeof(float));
		if (out && part) {
			if (tcz_quant_decode(buf, size, out, n) != 0)
				abort();
			if (tcz_quant_decode(buf, size, out, n + 1) != -EINVAL)
				abort();
			/* the last whole group onwards, and a misaligned start */
			size_t g = p.group_len, first = n ? (n - 1) / g * g : 0;
			if (tcz_quant_decode_range(buf, size, first, n - first,
						   part) != 0 ||
			    memcmp(part, out + first, (n - first) * sizeof(float)))
				abort();
			if (g > 1 && n > 1 &&
			    tcz_quant_decode_range(buf, size, 1, n - 1, part) !=
				    -EINVAL)
				abort();
		}
		free(out);
		free(part);
	} else if (r != 0) {
		float out[4];
		if (tcz_quant_decode(buf, size, out, 4) != r)
			abort();
	}
	free(buf);
	return 0;
}
