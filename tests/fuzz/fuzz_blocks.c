/* libFuzzer target for the block index record (store/blocks.c): any
 * input is accepted or refused, never read outside; an accepted record's
 * blocks all parse and tile [prefix end, ...) without overlap. The first
 * byte picks the dtype the reader expects, the next four the chunk's
 * decoded length; the record follows, its last 8 bytes replaced by the
 * XXH3-64 of the others (a fuzzer cannot forge it, and the parser behind
 * the check is what is fuzzed). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "codec/lossless.h"
#include "store/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5)
		return 0;
	tcz_dtype dt = (tcz_dtype)(data[0] % TCZ_DT_COUNT);
	uint32_t clen = (uint32_t)data[1] | (uint32_t)data[2] << 8 |
			(uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
	size_t n = size - 5;
	unsigned char *rec = malloc(n ? n : 1); /* exact size for ASan */
	if (!rec)
		return 0;
	memcpy(rec, data + 5, n);
	if (n >= 8) {
		uint64_t h = XXH3_64bits(rec, n - 8);
		for (int i = 0; i < 8; i++)
			rec[n - 8 + i] = (unsigned char)(h >> (8 * i));
	}
	size_t plen, nb;
	if (tcz__blocks_check(rec, n, dt, clen, &plen, &nb)) {
		size_t at = 0, end = 0;
		for (size_t i = 0; i < nb; i++) {
			tcz_lossless_block b;
			if (tcz_lossless_block_at(rec + 12, plen, i, &b, NULL) ||
			    (i && b.data_off != end) || b.dec_off != at)
				abort();
			end = b.data_off + b.data_len;
			at += b.dec_len;
		}
		if (at != clen)
			abort();
	}
	free(rec);
	return 0;
}
