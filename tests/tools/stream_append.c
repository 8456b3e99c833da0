/* stream_append STORE NAME EVERY TOTAL PROGRESS: appends frames of a
 * known pattern to stream NAME (its dim from the store) through the
 * writer, flushing every EVERY frames and then writing the number of
 * committed frames into the file PROGRESS (replaced whole, by rename),
 * until TOTAL frames; for tests that kill it on the way.
 *
 * Frame f, value i: 1.0 at the start of every group of 64 (so nothing
 * drifts), else ((i * 31 + f * 17) % 255 - 127) / 127 * 0.9 in float32;
 * tests/integration/stream.sh computes the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/stream.h"

static void frame(uint64_t f, uint32_t dim, float *out)
{
	for (uint32_t i = 0; i < dim; i++)
		out[i] = i % 64 == 0 ? 1.0f
				     : (float)((int)((i * 31 + f * 17) % 255) - 127) /
					       127.0f * 0.9f;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: stream_append STORE NAME EVERY TOTAL "
				"PROGRESS\n");
		return 2;
	}
	uint64_t every = strtoull(argv[3], NULL, 10);
	uint64_t total = strtoull(argv[4], NULL, 10);
	tcz_store *s;
	tcz_stream_writer *w;
	tcz_stream_info info;
	if (tcz_store_open(argv[1], 0, &s) || tcz_stream_stat(s, argv[2], &info) ||
	    tcz_stream_writer_open(s, argv[2], &w)) {
		fprintf(stderr, "stream_append: %s\n", tcz_store_errmsg());
		return 1;
	}
	uint32_t dim = info.params.dim;
	float *v = malloc((size_t)dim * sizeof *v);
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", argv[5]);
	tcz_stream_writer_state st;
	tcz_stream_writer_get_state(w, &st);
	for (uint64_t f = st.committed; f < total; f++) {
		frame(f, dim, v);
		if (tcz_stream_writer_append(w, v, 1, 1000 + f, 0))
			return fprintf(stderr, "stream_append: %s\n",
				       tcz_store_errmsg()),
			       1;
		if ((f + 1) % every)
			continue;
		if (tcz_stream_writer_flush(w))
			return fprintf(stderr, "stream_append: %s\n",
				       tcz_store_errmsg()),
			       1;
		tcz_stream_writer_get_state(w, &st);
		FILE *p = fopen(tmp, "w");
		if (!p || fprintf(p, "%llu\n", (unsigned long long)st.committed) < 0 ||
		    fclose(p) || rename(tmp, argv[5]))
			return perror("stream_append: progress"), 1;
	}
	int rc = tcz_stream_writer_close(w, NULL);
	free(v);
	tcz_store_close(s);
	return rc ? 1 : 0;
}
