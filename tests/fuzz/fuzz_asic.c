/* libFuzzer target: tcz_asic_check on any bytes (copied to a buffer of
 * their exact size). Fuzz builds skip the two hash comparisons, so inputs
 * reach the tables. The shapes of an image the checker accepts are laid
 * out again on its profile, so tcz_asic_layout_new sees fuzzed shapes
 * too (the checker admits placements the layout would not choose, so
 * only the absence of crashes is asserted there). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/asic.h"

static uint64_t ld64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t ld32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* Re-lays out an accepted image from its entry table. */
static void relayout(const unsigned char *b)
{
	tcz_asic_profile p;
	memset(&p, 0, sizeof p);
	memcpy(p.name, b + 8, 31);
	p.cores = ld32(b + 40);
	p.lanes = ld32(b + 44);
	p.tile_bytes = ld32(b + 48);
	p.sram_bytes = ld64(b + 56);
	p.dtype = (tcz_asic_dtype)b[6];
	uint32_t ne = ld32(b + 52), ns = ld32(b + 64);
	if (ne > 4096)
		return;
	/* string offsets */
	const unsigned char *s = b + 128 + (size_t)104 * ne;
	const unsigned char **names = malloc((ns ? ns : 1) * sizeof(*names));
	uint32_t *lens = malloc((ns ? ns : 1) * sizeof(*lens));
	tcz_asic_matrix *m = malloc((ne ? ne : 1) * sizeof(*m));
	if (!names || !lens || !m)
		goto out;
	for (uint32_t i = 0; i < ns; i++) {
		lens[i] = ld32(s);
		names[i] = s + 4;
		s += 4 + lens[i];
	}
	/* one matrix per (tensor, core): the entries with row0 0 */
	size_t n = 0;
	for (uint32_t i = 0; i < ne; i++) {
		const unsigned char *e = b + 128 + (size_t)104 * i;
		if (ld64(e + 40) != 0)
			continue;
		uint32_t t = ld32(e);
		m[n++] = (tcz_asic_matrix){
			.name = (const char *)names[t],
			.name_len = lens[t],
			.core = ld32(e + 4),
			.r_left = ld64(e + 16),
			.n = ld64(e + 24),
			.r_right = ld64(e + 32),
		};
	}
	tcz_asic_layout *l = NULL;
	if (tcz_asic_layout_new(&p, m, n, &l, NULL, 0) == 0) {
		if (l->image_bytes < l->data_offset)
			abort();
		tcz_asic_layout_free(l);
	}
out:
	free(names);
	free(lens);
	free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);
	char err[256];
	if (tcz_asic_check(buf, size, err, sizeof err) == 0)
		relayout(buf);
	else if (!memchr(err, 0, sizeof err))
		abort(); /* the message is always terminated */
	free(buf);
	return 0;
}
