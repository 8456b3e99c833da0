/* libFuzzer target for the block-quantized decoder: any input must give 0
 * or a negative errno, never a read or write outside the buffers. Inputs
 * that decode are re-encoded in every mode to check the round trip on
 * arbitrary blocks too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/blockq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static tcz_blockq_ctx *ctx;
	uint32_t type;
	uint64_t n;
	size_t dlen;

	if (!ctx && !(ctx = tcz_blockq_ctx_create()))
		return 0;
	if (tcz_blockq_peek(data, size, &type, &n, &dlen) != 0 ||
	    dlen > (16u << 20))
		return 0;
	unsigned char *out = malloc(dlen ? dlen : 1);
	if (!out)
		return 0;
	if (tcz_blockq_decode(ctx, data, size, out, dlen) == 0) {
		/* room for any mode: the bound, the slack and zstd's margin */
		size_t cap = tcz_blockq_bound(type, (size_t)n) + (dlen >> 7) +
			     1024;
		unsigned char *blob = malloc(cap), *back = malloc(dlen + 1);
		for (int mode = -1; blob && back && mode <= 2; mode++) {
			size_t got;
			if (mode > 0 && n == 0)
				continue;
			if (tcz_blockq_encode_mode(ctx, type, out, (size_t)n, 1,
						   mode, blob, cap, &got) != 0 ||
			    tcz_blockq_decode(NULL, blob, got, back, dlen) != 0 ||
			    memcmp(back, out, dlen) != 0)
				abort();
		}
		free(blob);
		free(back);
	}
	free(out);
	return 0;
}
