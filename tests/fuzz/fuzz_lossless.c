/* libFuzzer target for the lossless decoder: any input must give 0 or a
 * negative errno, never a read or write outside the buffers. Inputs that
 * decode are re-encoded to check the round trip on arbitrary data too,
 * and each of their blocks decoded alone (tcz_lossless_decode_block) must
 * give the same bytes as the whole decode; blocks of inputs that do not
 * decode whole are decoded alone as well, for the bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/lossless.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes every block of the blob alone (at most 64); with whole, their
 * bytes must be whole's. */
static void blocks(tcz_lossless_ctx *ctx, const uint8_t *data, size_t size,
		   const unsigned char *whole)
{
	size_t plen, nb;
	tcz_lossless_block b;
	if (tcz_lossless_prefix_len(data, size, &plen) || plen > size ||
	    tcz_lossless_block_at(data, plen, 0, &b, &nb))
		return;
	for (size_t i = 0; i < nb && i < 64; i++) {
		if (tcz_lossless_block_at(data, plen, i, &b, NULL) != 0)
			abort(); /* block 0 parsed: every block must */
		if (b.data_off > size || b.data_len > size - b.data_off ||
		    b.dec_len > (16u << 20))
			return;
		unsigned char *in = malloc(b.data_len ? b.data_len : 1);
		unsigned char *out = malloc(b.dec_len ? b.dec_len : 1);
		if (in && out) {
			/* exact-size copies: ASan sees any over-read */
			memcpy(in, data + b.data_off, b.data_len);
			int rc = tcz_lossless_decode_block(ctx, data, plen, i, in,
							   b.data_len, out,
							   b.dec_len);
			if (whole && (rc != 0 || memcmp(out, whole + b.dec_off,
							b.dec_len) != 0))
				abort();
		}
		free(in);
		free(out);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static tcz_lossless_ctx *ctx;
	size_t dlen;

	if (!ctx && !(ctx = tcz_lossless_ctx_create()))
		return 0;
	if (tcz_lossless_decoded_size(data, size, &dlen) != 0 ||
	    dlen > (64u << 20)) {
		blocks(ctx, data, size, NULL);
		return 0;
	}
	unsigned char *out = malloc(dlen ? dlen : 1);
	if (!out)
		return 0;
	if (tcz_lossless_decode(ctx, data, size, out, dlen) == 0 &&
	    size >= 6 && data[5] < TCZ_DT_COUNT) {
		blocks(ctx, data, size, out);
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
