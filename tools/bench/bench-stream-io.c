/* bench-stream-io: the store-side figures of tools/bench/bench-stream.
 * A benchmark, not a test: it prints and never fails on a figure.
 *
 *   bench-stream-io STORE NAME read [READS]
 *       latency of reading one random frame (index seek, copy of its
 *       segment, checksum, decode) with a fresh reader each time, and of
 *       decoding a frame of the segment the reader holds: p50, p99, mean
 *   bench-stream-io STORE NAME append TIER FRAMES
 *       ns per frame through the writer (the streaming compressor and
 *       the segment encoding, no commit) at a pinned tier, frames like
 *       bench-stream's trace; then the group commit
 *   bench-stream-io STORE NAME commits FRAMES EVERY
 *       frames appended with a flush (durable commit) every EVERY frames:
 *       frames/s and commits/s, what fsync-heavy writers get */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/stream.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench-stream-io: %s: %s (%s)\n", what, strerror(-rc),
		tcz_store_errmsg());
	exit(1);
}

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static void percentiles(const char *what, double *t, size_t n)
{
	qsort(t, n, sizeof *t, cmp);
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += t[i];
	printf("%-44s p50 %8.1f us  p99 %8.1f us  mean %8.1f us  (%zu)\n", what,
	       t[n / 2] * 1e6, t[n * 99 / 100] * 1e6, sum / n * 1e6, n);
}

static int bench_read(tcz_store *s, const char *name, size_t reads)
{
	tcz_stream_reader *r;
	int rc = tcz_stream_reader_open(s, name, &r);
	if (rc)
		die("open", rc);
	uint64_t n = tcz_stream_reader_frames(r);
	uint32_t dim = tcz_stream_reader_dim(r);
	tcz_stream_reader_close(r);
	if (!n)
		die("no frames", -ENOENT);
	float *out = malloc(dim * sizeof *out);
	double *t = malloc(reads * sizeof *t);
	double sink = 0;
	for (size_t i = 0; i < reads; i++) {
		uint64_t k = rnd() % n;
		double t0 = now();
		if ((rc = tcz_stream_reader_open(s, name, &r)) ||
		    (rc = tcz_stream_read(r, k, k + 1, out)))
			die("read", rc);
		t[i] = now() - t0;
		sink += out[k % dim];
		tcz_stream_reader_close(r);
	}
	percentiles("random frame, new reader (lookup+copy+decode)", t, reads);
	if ((rc = tcz_stream_reader_open(s, name, &r)))
		die("open", rc);
	for (size_t i = 0; i < reads; i++) {
		uint64_t k = rnd() % n;
		double t0 = now();
		if ((rc = tcz_stream_read(r, k, k + 1, out)))
			die("read", rc);
		t[i] = now() - t0;
		sink += out[0];
	}
	percentiles("random frame, one reader (its last segment kept)", t, reads);
	/* frames of the segment the reader holds: the decode alone */
	uint64_t base = n / 2;
	if ((rc = tcz_stream_read(r, base, base + 1, out)))
		die("read", rc);
	tcz_stream_info info;
	tcz_stream_reader_refresh(r, &info);
	const size_t reps = 20000;
	double t0 = now();
	for (size_t i = 0; i < reps; i++) {
		if ((rc = tcz_stream_read(r, base, base + 1, out)))
			die("read", rc);
		sink += out[i % dim];
	}
	printf("%-44s %8.0f ns per frame of %u values\n",
	       "decode, frame of the kept segment", (now() - t0) / reps * 1e9, dim);
	tcz_stream_reader_close(r);
	free(out);
	free(t);
	return sink == 12345.678 ? 1 : 0;
}

/* frame f of the trace: a slowly drifting tensor (bench-stream's) */
static void trace_frame(uint64_t f, uint32_t dim, const float *base, float *out)
{
	double a = 1.0 + 0.3 * sin(2 * M_PI * (double)f / 36000.0);
	for (uint32_t i = 0; i < dim; i++)
		out[i] = (float)(a * base[i] +
				 0.02 * sin(0.001 * (double)f * (1 + i % 7) + i));
}

static int bench_append(tcz_store *s, const char *name, const char *tier,
			uint64_t frames)
{
	tcz_tier t;
	int rc;
	if (tcz_tier_parse(tier, &t))
		die("tier", -EINVAL);
	if ((rc = tcz_stream_set_tier(s, name, (int32_t)t)))
		die("tier", rc);
	tcz_stream_info info;
	if ((rc = tcz_stream_stat(s, name, &info)))
		die("stat", rc);
	uint32_t dim = info.params.dim;
	float *base = malloc(dim * sizeof *base), *v = malloc(frames * dim * sizeof *v);
	for (uint32_t i = 0; i < dim; i++)
		base[i] = (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2 - 1);
	for (uint64_t f = 0; f < frames; f++)
		trace_frame(f, dim, base, v + f * dim);
	/* five runs, each through a writer of its own (timestamps go on) */
	double per[5], commit_ms = 0;
	for (int run = 0; run < 5; run++) {
		tcz_stream_writer *w;
		if ((rc = tcz_stream_writer_open(s, name, &w)))
			die("writer", rc);
		uint64_t ts0 = (uint64_t)run * frames * 100;
		double t0 = now();
		for (uint64_t f = 0; f < frames; f++)
			if ((rc = tcz_stream_writer_append(w, v + f * dim, 1,
							   ts0 + f * 100, 0)))
				die("append", rc);
		double t1 = now();
		if ((rc = tcz_stream_writer_flush(w)))
			die("flush", rc);
		commit_ms += (now() - t1) * 1e3 / 5;
		tcz_stream_writer_close(w, NULL);
		per[run] = (t1 - t0) / frames * 1e9;
	}
	qsort(per, 5, sizeof *per, cmp);
	tcz_stream_stat(s, name, &info);
	printf("%-5s append %6.0f ns per frame (best %4.0f); group commit of %llu "
	       "segments %.1f ms; %.3fx\n",
	       tier, per[2], per[0],
	       (unsigned long long)(info.segments / 5), commit_ms,
	       tcz_stream_ratio(&info));
	free(base);
	free(v);
	return 0;
}

static int bench_commits(tcz_store *s, const char *name, uint64_t frames,
			 uint64_t every)
{
	tcz_stream_info info;
	int rc = tcz_stream_stat(s, name, &info);
	if (rc)
		die("stat", rc);
	uint32_t dim = info.params.dim;
	float *v = malloc(dim * sizeof *v);
	for (uint32_t i = 0; i < dim; i++)
		v[i] = (float)sin(i);
	tcz_stream_writer *w;
	if ((rc = tcz_stream_writer_open(s, name, &w)))
		die("writer", rc);
	double t0 = now();
	for (uint64_t f = 0; f < frames; f++) {
		if ((rc = tcz_stream_writer_append(w, v, 1, f, 0)))
			die("append", rc);
		if ((f + 1) % every == 0 && (rc = tcz_stream_writer_flush(w)))
			die("flush", rc);
	}
	double t = now() - t0;
	tcz_stream_writer_close(w, NULL);
	printf("flush every %4llu frames: %8.0f frames/s, %6.0f commits/s, "
	       "%6.1f MB/s of f32\n",
	       (unsigned long long)every, frames / t, frames / every / t,
	       frames * dim * 4 / t / 1e6);
	free(v);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: bench-stream-io STORE NAME read [READS] | "
				"append TIER FRAMES | commits FRAMES EVERY\n");
		return 2;
	}
	tcz_store *s;
	int rc = tcz_store_open(argv[1], 0, &s);
	if (rc)
		die("open store", rc);
	if (!strcmp(argv[3], "read"))
		rc = bench_read(s, argv[2], argc > 4 ? strtoull(argv[4], NULL, 10) : 2000);
	else if (!strcmp(argv[3], "append") && argc == 6)
		rc = bench_append(s, argv[2], argv[4], strtoull(argv[5], NULL, 10));
	else if (!strcmp(argv[3], "commits") && argc == 6)
		rc = bench_commits(s, argv[2], strtoull(argv[4], NULL, 10),
				   strtoull(argv[5], NULL, 10));
	else
		rc = 2;
	tcz_store_close(s);
	return rc;
}
