/* libFuzzer target: the records a remote's objects hold (manifest,
 * index, lease, touch stamps). The first byte picks the decoder; the
 * rest, with a correct XXH3-64 trailer appended (else nearly every input
 * would stop at the checksum), is decoded from a buffer of its exact
 * size. A decoded index is re-encoded and decoded again: the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "store/remote_int.h"

static unsigned char *sealed(const uint8_t *p, size_t n, int keep, size_t *len)
{
	unsigned char *b = malloc(n + 8);
	if (!b)
		return NULL;
	memcpy(b, p, n);
	if (keep) { /* the input's own trailer: checksum failures too */
		*len = n;
		return b;
	}
	uint64_t h = XXH3_64bits(b, n);
	for (int i = 0; i < 8; i++)
		b[n + (size_t)i] = (unsigned char)(h >> (8 * i));
	*len = n + 8;
	return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned sel = data[0];
	size_t len;
	unsigned char *b = sealed(data + 1, size - 1, sel & 0x80, &len);
	if (!b)
		return 0;
	switch (sel & 3) {
	case 0: {
		tcz_rmodel *m = NULL;
		/* the name the seeds were pushed under; others are refused
		 * early, which is covered as well */
		if (tcz__manifest_decode("m", b, len, 1ull << 63, &m) == 0) {
			const tcz_model *md = tcz_rmodel_model(m);
			if (!md || strcmp(md->name, "m") != 0)
				abort();
		}
		tcz_rmodel_free(m);
		break;
	}
	case 1: {
		tcz_rindex *ix = NULL;
		if (tcz__index_decode(b, len, &ix) == 0) {
			tcz_wbuf w;
			tcz_wb_init(&w);
			if (tcz__index_encode(ix, &w) == 0 && !w.err) {
				tcz_rindex *again = NULL;
				if (tcz__index_decode(w.p, w.len, &again) != 0 ||
				    again->n != ix->n ||
				    again->generation != ix->generation)
					abort();
				for (size_t i = 0; i < ix->n; i++)
					if (strcmp(again->e[i].name, ix->e[i].name))
						abort();
				tcz_rindex_free(again);
			}
			tcz_wb_free(&w);
			for (size_t i = 0; i < ix->n; i++)
				if (tcz__index_find(ix, ix->e[i].name) != (long)i)
					abort();
		}
		tcz_rindex_free(ix);
		break;
	}
	case 2: {
		uint64_t ms;
		tcz__lease_decode(b, len, &ms);
		break;
	}
	default: {
		uint64_t ms;
		tcz__stamp_ms((const char *)data + 1, size - 1, &ms);
		break;
	}
	}
	free(b);
	return 0;
}
