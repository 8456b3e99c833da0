/* libFuzzer target for the lossless decoder: any input must give 0 or a
 * negative errno, never a read or write outside the buffers. Inputs that
 * decode are re-encoded to check the round trip on arbitrary data too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/lossless.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static tcz_lossless_ctx *ctx;
	size_t dlen;

	if (!ctx && !(ctx = tcz_lossless_ctx_create()))
		return 0;
	if (tcz_lossless_decoded_size(data, size, &dlen) != 0 ||
	    dlen > (64u << 20))
		return 0;
	unsigned char *out = malloc(dlen ? dlen : 1);
	if (!out)
		return 0;
	if (tcz_lossless_decode(ctx, data, size, out, dlen) == 0 &&
	    size >= 6 && data[5] < TCZ_DT_COUNT) {
		size_t cap = tcz_lossless_bound(dlen), got;
		unsigned char *blob = malloc(cap), *back = malloc(dlen + 1);
		if (blob && back &&
		    tcz_lossless_encode(ctx, (tcz_dtype)data[5], out, dlen, 1,
					blob, cap, &got) == 0 &&
		    (tcz_lossless_decode(NULL, blob, got, back, dlen) != 0 ||
		     memcmp(back, out, dlen) != 0))
			abort();
		free(blob);
		free(back);
	}
	free(out);
	return 0;
}
