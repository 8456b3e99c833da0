/* Streams through the store API (store/stream.h): creation rules and ids,
 * widths per tier and the SPEC 6 bounds, drift, a stored stream that does
 * not depend on how frames were handed over, visibility at commit, time
 * ranges, the single writer, removal under readers, re-encoding of a cold
 * stream, verify, damage, a store without stream tables, and a reader
 * running against a writer (run under ThreadSanitizer by tools/test). */
#include <errno.h>
#include <lmdb.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "codec/half.h"
#include "store/stream.h"

static char dir[64];
static int n_store;

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/tcz-unit-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd);
}

/* A new store of its own for each test. */
static tcz_store *new_store(char *path, size_t n)
{
	snprintf(path, n, "%s/s%d", dir, n_store++);
	tcz_store *s;
	assert_int_equal(tcz_store_open(path, TCZ_STORE_CREATE, &s), 0);
	return s;
}

static void print_problem(void *ud, const char *model, const char *what,
			  const char *problem)
{
	int *count = ud;
	if (count)
		(*count)++;
	fprintf(stderr, "verify: %s: %s: %s\n", model, what, problem);
}

static int verify_problems(tcz_store *s)
{
	tcz_verify_report rep;
	int count = 0;
	int rc = tcz_store_verify(s, NULL, print_problem, &count, &rep);
	assert_true(rc == 0 || rc == -EIO);
	assert_int_equal(rc == -EIO, count > 0);
	return count;
}

static uint64_t rng = 88172645463325252ull;

static float uniform(void) /* [-1, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

/* frames of dim values in [-1, 1) whose every group reaches exactly 1.0
 * in every frame, so that nothing drifts */
static float *frames_uniform(uint64_t f, uint32_t dim, uint32_t g)
{
	float *v = malloc(f * dim * sizeof *v);
	assert_non_null(v);
	for (uint64_t i = 0; i < f * dim; i++)
		v[i] = uniform();
	for (uint64_t k = 0; k < f; k++)
		for (uint32_t i = 0; i < dim; i += g)
			v[k * dim + i] = 1.0f;
	return v;
}

static tcz_stream_params params(uint32_t dim, uint32_t seg_frames)
{
	tcz_stream_params p;
	tcz_stream_params_default(&p);
	p.dim = dim;
	p.segment_frames = seg_frames;
	return p;
}

static void push_all(tcz_store *s, const char *name, const float *v,
		     size_t n, uint64_t ts, uint64_t step)
{
	tcz_stream_writer *w;
	assert_int_equal(tcz_stream_writer_open(s, name, &w), 0);
	assert_int_equal(tcz_stream_writer_append(w, v, n, ts, step), 0);
	assert_int_equal(tcz_stream_writer_close(w, NULL), 0);
}

static float *read_all(tcz_store *s, const char *name, uint64_t *n)
{
	tcz_stream_reader *r;
	assert_int_equal(tcz_stream_reader_open(s, name, &r), 0);
	*n = tcz_stream_reader_frames(r);
	uint32_t dim = tcz_stream_reader_dim(r);
	float *out = malloc((*n ? *n : 1) * dim * sizeof *out);
	assert_non_null(out);
	assert_int_equal(tcz_stream_read(r, 0, *n, out), 0);
	tcz_stream_reader_close(r);
	return out;
}

/* max over frames of max|v - v'| / max|v| */
static double max_rel(const float *a, const float *b, uint64_t f, uint32_t dim)
{
	double worst = 0;
	for (uint64_t k = 0; k < f; k++) {
		double m = 0, e = 0;
		for (uint32_t i = 0; i < dim; i++) {
			double x = fabs(a[k * dim + i]);
			double d = fabs((double)a[k * dim + i] - b[k * dim + i]);
			m = x > m ? x : m;
			e = d > e ? d : e;
		}
		if (m > 0 && e / m > worst)
			worst = e / m;
	}
	return worst;
}

/* ---- the tests -------------------------------------------------------------- */

static void create_rules(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s = new_store(p, sizeof p);
	tcz_stream_params ok = params(512, 0), bad;
	uint64_t id1, id2, id3;
	assert_int_equal(tcz_stream_create(s, "a/b", &ok, NULL), -EINVAL);
	assert_int_equal(tcz_stream_create(s, "streams", &ok, NULL), -EINVAL);
	assert_int_equal(tcz_stream_create(s, "", &ok, NULL), -EINVAL);
	bad = ok, bad.dim = 0;
	assert_int_equal(tcz_stream_create(s, "x", &bad, NULL), -EINVAL);
	assert_non_null(strstr(tcz_store_errmsg(), "--dim"));
	bad = ok, bad.warm_bits = 6;
	assert_int_equal(tcz_stream_create(s, "x", &bad, NULL), -EINVAL);
	bad = ok, bad.group_len = 0;
	assert_int_equal(tcz_stream_create(s, "x", &bad, NULL), -EINVAL);
	bad = ok, bad.segment_frames = 1u << 20;
	assert_int_equal(tcz_stream_create(s, "x", &bad, NULL), -EINVAL);
	char **names;
	size_t n;
	assert_int_equal(tcz_stream_list(s, &names, &n), 0);
	assert_int_equal(n, 0);
	tcz_names_free(names, n);

	assert_int_equal(tcz_stream_create(s, "b", &ok, &id1), 0);
	assert_int_equal(tcz_stream_create(s, "a", &ok, &id2), 0);
	assert_int_equal(tcz_stream_create(s, "a", &ok, NULL), -EEXIST);
	assert_true(id2 > id1);
	assert_int_equal(tcz_stream_list(s, &names, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "a");
	assert_string_equal(names[1], "b");
	tcz_names_free(names, n);
	tcz_stream_info info;
	assert_int_equal(tcz_stream_stat(s, "a", &info), 0);
	assert_int_equal(info.id, id2);
	assert_int_equal(info.params.dim, 512);
	assert_int_equal(info.params.group_len, 64);
	assert_int_equal(info.params.warm_bits, 7);
	assert_int_equal(info.params.drift_pct_q8, 26);
	assert_int_equal(info.frames, 0);
	assert_int_equal(info.pinned, -1);
	assert_int_equal(tcz_stream_stat(s, "nope", &info), -ENOENT);
	/* ids are never reused: a removed name comes back with a new id */
	uint64_t g0, g1;
	assert_int_equal(tcz_stream_generation(s, &g0), 0);
	assert_int_equal(tcz_stream_remove(s, "a"), 0);
	assert_int_equal(tcz_stream_generation(s, &g1), 0);
	assert_true(g1 > g0);
	assert_int_equal(tcz_stream_remove(s, "a"), -ENOENT);
	assert_int_equal(tcz_stream_create(s, "a", &ok, &id3), 0);
	assert_true(id3 > id2);
	char hdr[256];
	size_t hl;
	assert_int_equal(tcz_stream_npy_header(100, 512, hdr, sizeof hdr, &hl), 0);
	assert_int_equal(hl % 64, 0);
	assert_non_null(memmem(hdr, hl, "'shape': (100, 512)", 19));
	assert_int_equal(verify_problems(s), 0);
	tcz_store_close(s);
}

/* SPEC 6 acceptance at the API: N 512, G 64, 100 frames per segment,
 * pinned per tier: the sizes and the error bounds. */
static void widths(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s = new_store(p, sizeof p);
	struct {
		const char *name;
		int32_t tier;
		uint32_t warm;
		unsigned bits;
		double ratio, err;
	} t[] = {
		{"hot", TCZ_TIER_HOT, 7, 8, 3.99, 0.008},
		{"warm", TCZ_TIER_WARM, 7, 7, 4.56, 0.016},
		{"warm5", TCZ_TIER_WARM, 5, 5, 6.38, 0.065},
		{"cold", TCZ_TIER_COLD, 7, 3, 10.63, 0.30},
	};
	float *v = frames_uniform(300, 512, 64);
	for (size_t i = 0; i < 4; i++) {
		tcz_stream_params pr = params(512, 100);
		pr.warm_bits = t[i].warm;
		assert_int_equal(tcz_stream_create(s, t[i].name, &pr, NULL), 0);
		assert_int_equal(tcz_stream_set_tier(s, t[i].name, t[i].tier), 0);
		push_all(s, t[i].name, v, 300, 1000, 100);
		tcz_stream_info info;
		assert_int_equal(tcz_stream_stat(s, t[i].name, &info), 0);
		assert_int_equal(info.frames, 300);
		assert_int_equal(info.segments, 3);
		assert_int_equal(info.tier, (tcz_tier)t[i].tier);
		assert_int_equal(info.first_ts, 1000);
		assert_int_equal(info.last_ts, 1000 + 299 * 100);
		int slot = t[i].bits == 8 ? 3 : t[i].bits == 7 ? 2 : t[i].bits == 5 ? 1 : 0;
		assert_int_equal(info.width[slot].segments, 3);
		/* 26 + 2 * 8 + 512 * 100 * B / 8 bytes per segment */
		assert_int_equal(info.stored_bytes, 3 * (42 + 6400 * t[i].bits));
		assert_true(tcz_stream_ratio(&info) >= t[i].ratio);
		tcz_stream_seg *segs;
		size_t n;
		assert_int_equal(tcz_stream_segments(s, t[i].name, &segs, &n), 0);
		assert_int_equal(n, 3);
		for (size_t k = 0; k < n; k++) {
			assert_int_equal(segs[k].first_frame, 100 * k);
			assert_int_equal(segs[k].frames, 100);
			assert_int_equal(segs[k].bits, t[i].bits);
			assert_int_equal(segs[k].start_ts, 1000 + 10000 * k);
		}
		free(segs);
		uint64_t got;
		float *back = read_all(s, t[i].name, &got);
		assert_int_equal(got, 300);
		double e = max_rel(v, back, 300, 512);
		fprintf(stderr, "%-5s %u bits: ratio %.3fx, max error %.3f %%\n",
			t[i].name, t[i].bits, tcz_stream_ratio(&info), e * 100);
		assert_true(e < t[i].err);
		free(back);
	}
	free(v);
	assert_int_equal(verify_problems(s), 0);
	tcz_store_close(s);
}

/* Drift exactly as SPEC 6 says, with hand-built frames: 8 bits, one
 * group of 4, qmax 127; the opening frame's max 1.0 gives the scale
 * f16(1/127) and the bound f16(1/127) * 127 * (1 + 26/256). */
static void drift(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s = new_store(p, sizeof p);
	tcz_stream_params pr = params(4, 0);
	pr.group_len = 4;
	assert_int_equal(tcz_stream_create(s, "d", &pr, NULL), 0);
	assert_int_equal(tcz_stream_set_tier(s, "d", TCZ_TIER_HOT), 0);
	double bound = (double)tcz_f16_to_f32(tcz_f32_to_f16(1.0f / 127)) * 127 *
		       (1 + 26.0 / 256);
	float below = (float)bound, above;
	if ((double)below > bound)
		below = nextafterf(below, 0);
	above = nextafterf(below, 2);
	assert_true((double)below <= bound && (double)above > bound);
	float f[][4] = {
		{1.0f, 0.5f, -0.25f, 0},   /* opens segment 1 */
		{below, 0.1f, 0, 0},       /* at the bound: stays */
		{-below, 0, 0, 0.9f},      /* |v| counts: stays */
		{0.2f, above, 0, 0},       /* past it: segment 2 (max above) */
		{0.1f, 0, 0, 0},           /* smaller: stays */
		{above * 1.05f, 0, 0, 0},  /* below this segment's bound: stays */
		{above * 1.2f, 0, 0, 0},   /* past it: segment 3 */
		{0, 0, 0, 0},              /* zeros: stays */
	};
	push_all(s, "d", &f[0][0], 8, 0, 1);
	tcz_stream_seg *segs;
	size_t n;
	assert_int_equal(tcz_stream_segments(s, "d", &segs, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(segs[0].frames, 3);
	assert_int_equal(segs[1].first_frame, 3);
	assert_int_equal(segs[1].frames, 3);
	assert_int_equal(segs[2].first_frame, 6);
	assert_int_equal(segs[2].frames, 2);
	free(segs);
	/* a zero group in the opening frame: any nonzero value later starts
	 * a new segment */
	assert_int_equal(tcz_stream_create(s, "z", &pr, NULL), 0);
	float g[][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}, {1e-30f, 0, 0, 0}};
	push_all(s, "z", &g[0][0], 3, 0, 1);
	assert_int_equal(tcz_stream_segments(s, "z", &segs, &n), 0);
	assert_int_equal(n, 2);
	free(segs);
	tcz_store_close(s);
}

/* The whole stored stream: every segment's frames, width, timestamps and
 * its decoded bytes. */
typedef struct dump {
	tcz_stream_seg *segs;
	size_t n;
	float *v;
	uint64_t frames;
	uint64_t *ts;
} dump;

static void dump_of(tcz_store *s, const char *name, dump *d)
{
	assert_int_equal(tcz_stream_segments(s, name, &d->segs, &d->n), 0);
	d->v = read_all(s, name, &d->frames);
	tcz_stream_reader *r;
	assert_int_equal(tcz_stream_reader_open(s, name, &r), 0);
	d->ts = malloc((d->frames + 1) * sizeof *d->ts);
	assert_int_equal(tcz_stream_read_ts(r, 0, d->frames, d->ts), 0);
	tcz_stream_reader_close(r);
}

static void dump_same(const dump *a, const dump *b, uint32_t dim)
{
	assert_int_equal(a->n, b->n);
	assert_int_equal(a->frames, b->frames);
	assert_memory_equal(a->segs, b->segs, a->n * sizeof *a->segs);
	assert_memory_equal(a->v, b->v, a->frames * dim * sizeof(float));
	assert_memory_equal(a->ts, b->ts, a->frames * sizeof *a->ts);
}

static void dump_free(dump *d)
{
	free(d->segs);
	free(d->v);
	free(d->ts);
}

/* Frames given one at a time, 7 at a time, as 1.5 + 0.5 frames of bytes,
 * with commits in between: the same stored stream. */
static void same_whatever_the_pieces(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s = new_store(p, sizeof p);
	const uint32_t dim = 96, F = 60;
	float *v = frames_uniform(F, dim, 64);
	/* a frame that drifts, so that segments end there too */
	for (uint32_t i = 0; i < dim; i++)
		v[30 * dim + i] *= 3;
	const char *names[] = {"one", "seven", "halves", "commits"};
	for (int k = 0; k < 4; k++) {
		tcz_stream_params pr = params(dim, 16);
		assert_int_equal(tcz_stream_create(s, names[k], &pr, NULL), 0);
		assert_int_equal(tcz_stream_set_tier(s, names[k], TCZ_TIER_WARM), 0);
		tcz_stream_writer *w;
		assert_int_equal(tcz_stream_writer_open(s, names[k], &w), 0);
		size_t fb = dim * 4;
		const unsigned char *b = (const unsigned char *)v;
		switch (k) {
		case 0:
			for (uint32_t f = 0; f < F; f++)
				assert_int_equal(tcz_stream_writer_append(
							 w, v + f * dim, 1, 5000, 0),
						 0);
			break;
		case 1:
			for (uint32_t f = 0; f < F; f += 7) {
				uint32_t m = F - f < 7 ? F - f : 7;
				assert_int_equal(tcz_stream_writer_append(
							 w, v + f * dim, m, 5000, 0),
						 0);
			}
			break;
		case 2:
			for (uint32_t f = 0; f < F; f += 2) {
				assert_int_equal(tcz_stream_writer_write(
							 w, b + f * fb, fb + fb / 2, 5000),
						 0);
				tcz_stream_writer_state st;
				tcz_stream_writer_get_state(w, &st);
				assert_int_equal(st.partial, fb / 2);
				/* a whole frame cannot pass a partial one */
				assert_int_equal(tcz_stream_writer_append(
							 w, v, 1, 5000, 0),
						 -EINVAL);
				assert_int_equal(tcz_stream_writer_write(
							 w, b + f * fb + fb + fb / 2,
							 fb / 2, 5000),
						 0);
			}
			break;
		case 3:
			for (uint32_t f = 0; f < F; f += 5) {
				assert_int_equal(tcz_stream_writer_append(
							 w, v + f * dim, 5, 5000, 0),
						 0);
				assert_int_equal(tcz_stream_writer_commit(w), 0);
			}
			break;
		}
		size_t dropped = 1;
		assert_int_equal(tcz_stream_writer_close(w, &dropped), 0);
		assert_int_equal(dropped, 0);
	}
	dump d[4];
	for (int k = 0; k < 4; k++)
		dump_of(s, names[k], &d[k]);
	assert_int_equal(d[0].frames, F);
	/* 16-frame segments, and the drift of frame 30 */
	assert_int_equal(d[0].n, 4);
	assert_int_equal(d[0].segs[2].first_frame, 30);
	for (int k = 1; k < 4; k++)
		dump_same(&d[0], &d[k], dim);
	for (int k = 0; k < 4; k++)
		dump_free(&d[k]);
	free(v);
	assert_int_equal(verify_problems(s), 0);
	tcz_store_close(s);
}

/* Nothing is visible before a commit; a commit leaves the open segment
 * open; flush commits everything; bad frames change nothing. */
static void visibility(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s = new_store(p, sizeof p);
	const uint32_t dim = 8;
	tcz_stream_params pr = params(dim, 4);
	assert_int_equal(tcz_stream_create(s, "v", &pr, NULL), 0);
	float *v = frames_uniform(10, dim, 64);
	tcz_stream_writer *w;
	tcz_stream_reader *r;
	assert_int_equal(tcz_stream_writer_open(s, "v", &w), 0);
	assert_int_equal(tcz_stream_reader_open(s, "v", &r), 0);
	tcz_stream_writer *w2;
	assert_int_equal(tcz_stream_writer_open(s, "v", &w2), -EBUSY);
	assert_int_equal(tcz_stream_writer_append(w, v, 6, 100, 10), 0);
	assert_int_equal(tcz_stream_reader_refresh(r, NULL), 0);
	assert_int_equal(tcz_stream_reader_frames(r), 0);
	assert_int_equal(tcz_stream_writer_commit(w), 0); /* the 4 finished */
	assert_int_equal(tcz_stream_reader_refresh(r, NULL), 0);
	assert_int_equal(tcz_stream_reader_frames(r), 4);
	float out[8 * dim];
	assert_int_equal(tcz_stream_read(r, 0, 5, out), -ERANGE);
	assert_int_equal(tcz_stream_read(r, 3, 4, out), 0);
	/* bad input: nothing of the call taken */
	float nan[2 * 8];
	memcpy(nan, v, sizeof nan);
	nan[11] = NAN;
	assert_int_equal(tcz_stream_writer_append(w, nan, 2, 200, 0), -EDOM);
	nan[11] = INFINITY;
	assert_int_equal(tcz_stream_writer_write(w, nan, sizeof nan, 200), -EDOM);
	assert_int_equal(tcz_stream_writer_append(w, v, 1, 99, 0), -EINVAL);
	assert_int_equal(tcz_stream_writer_append(w, v, 3, UINT64_MAX - 1, 1),
			 -EINVAL);
	tcz_stream_writer_state st;
	tcz_stream_writer_get_state(w, &st);
	assert_int_equal(st.committed, 4);
	assert_int_equal(st.buffered, 2);
	assert_int_equal(st.bits, 8); /* a new stream is hot */
	assert_int_equal(tcz_stream_writer_flush(w), 0);
	assert_int_equal(tcz_stream_reader_refresh(r, NULL), 0);
	assert_int_equal(tcz_stream_reader_frames(r), 6);
	/* a partial frame left at close is dropped and said so */
	assert_int_equal(tcz_stream_writer_write(w, v, 9, 300), 0);
	size_t dropped;
	assert_int_equal(tcz_stream_writer_close(w, &dropped), 0);
	assert_int_equal(dropped, 9);
	/* the next writer continues after the committed frames */
	assert_int_equal(tcz_stream_writer_open(s, "v", &w), 0);
	assert_int_equal(tcz_stream_writer_append(w, v, 1, 50, 0), -EINVAL);
	assert_int_equal(tcz_stream_writer_append(w, v + 6 * dim, 4, 300, 0), 0);
	tcz_stream_writer_discard(w); /* never committed */
	assert_int_equal(tcz_stream_reader_refresh(r, NULL), 0);
	assert_int_equal(tcz_stream_reader_frames(r), 6);
	/* byte reads at any offset are the frames' bytes */
	float all[6 * 8];
	assert_int_equal(tcz_stream_read(r, 0, 6, all), 0);
	unsigned char bytes[6 * 8 * 4 + 8];
	size_t got;
	assert_int_equal(tcz_stream_pread(r, bytes + 1, 100, 13, &got), 0);
	assert_int_equal(got, 100);
	assert_memory_equal(bytes + 1, (unsigned char *)all + 13, 100);
	assert_int_equal(tcz_stream_pread(r, bytes, sizeof bytes, 0, &got), 0);
	assert_int_equal(got, sizeof all);
	assert_memory_equal(bytes, all, sizeof all);
	assert_int_equal(tcz_stream_pread(r, bytes, 8, sizeof all, &got), 0);
	assert_int_equal(got, 0);
	tcz_stream_reader_close(r);
	free(v);
	assert_int_equal(verify_problems(s), 0);
	tcz_store_close(s);
}

/* Time ranges are exact: frames at equal timestamps across segment
 * boundaries, irregular timestamps, empty ranges. */
static void time_ranges(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s = new_store(p, sizeof p);
	const uint32_t dim = 4;
	tcz_stream_params pr = params(dim, 3);
	assert_int_equal(tcz_stream_create(s, "t", &pr, NULL), 0);
	uint64_t ts[] = {10, 10, 20, 20, 20, 20, 25, 40, 41, 41, 100, 1000, 1000};
	size_t n = sizeof ts / sizeof ts[0];
	float *v = frames_uniform(n, dim, 64);
	tcz_stream_writer *w;
	assert_int_equal(tcz_stream_writer_open(s, "t", &w), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(tcz_stream_writer_append(w, v + i * dim, 1, ts[i], 0),
				 0);
	assert_int_equal(tcz_stream_writer_close(w, NULL), 0);
	tcz_stream_reader *r;
	assert_int_equal(tcz_stream_reader_open(s, "t", &r), 0);
	uint64_t back[16];
	assert_int_equal(tcz_stream_read_ts(r, 0, n, back), 0);
	assert_memory_equal(back, ts, sizeof ts);
	uint64_t probes[] = {0, 9, 10, 11, 19, 20, 21, 25, 26, 40, 41, 42, 99,
			     100, 101, 999, 1000, 1001, UINT64_MAX};
	size_t np = sizeof probes / sizeof probes[0];
	for (size_t i = 0; i < np; i++) {
		for (size_t j = 0; j < np; j++) {
			uint64_t from = probes[i], to = probes[j], a, b;
			assert_int_equal(tcz_stream_find_time(r, from, to, &a, &b), 0);
			uint64_t ea = n, eb = 0;
			for (size_t k = 0; k < n; k++) {
				if (ts[k] >= from && ts[k] <= to) {
					ea = k < ea ? k : ea;
					eb = k + 1;
				}
			}
			if (eb == 0)
				ea = eb = a; /* empty: only a == b matters */
			if (a != ea || b != eb)
				fail_msg("[%llu, %llu]: got [%llu, %llu), want "
					 "[%llu, %llu)",
					 (unsigned long long)from,
					 (unsigned long long)to,
					 (unsigned long long)a, (unsigned long long)b,
					 (unsigned long long)ea,
					 (unsigned long long)eb);
		}
	}
	tcz_stream_reader_close(r);
	free(v);
	assert_int_equal(verify_problems(s), 0);
	tcz_store_close(s);
}

/* Removal: readers get -ENOENT (or what they had fetched), the writer's
 * commit -ENOENT, nothing of the stream is left. */
static void removal(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s = new_store(p, sizeof p);
	tcz_stream_params pr = params(16, 4);
	assert_int_equal(tcz_stream_create(s, "r", &pr, NULL), 0);
	float *v = frames_uniform(12, 16, 64);
	push_all(s, "r", v, 8, 1, 1);
	tcz_stream_reader *rd;
	tcz_stream_writer *w;
	assert_int_equal(tcz_stream_reader_open(s, "r", &rd), 0);
	assert_int_equal(tcz_stream_writer_open(s, "r", &w), 0);
	float out[16];
	assert_int_equal(tcz_stream_read(rd, 0, 1, out), 0); /* segment 0 in */
	assert_int_equal(tcz_stream_writer_append(w, v + 8 * 16, 4, 9, 1), 0);
	assert_int_equal(tcz_stream_remove(s, "r"), 0);
	assert_int_equal(tcz_stream_read(rd, 1, 2, out), 0); /* fetched before */
	assert_int_equal(tcz_stream_read(rd, 5, 6, out), -ENOENT);
	assert_int_equal(tcz_stream_reader_refresh(rd, NULL), -ENOENT);
	assert_int_equal(tcz_stream_writer_flush(w), -ENOENT);
	/* a new stream of the same name is another stream */
	assert_int_equal(tcz_stream_create(s, "r", &pr, NULL), 0);
	assert_int_equal(tcz_stream_writer_flush(w), -ENOENT);
	tcz_stream_writer_discard(w);
	assert_int_equal(tcz_stream_reader_refresh(rd, NULL), -ENOENT);
	tcz_stream_reader_close(rd);
	assert_int_equal(tcz_stream_remove(s, "r"), 0);
	/* nothing left in any table: verify sees no orphan */
	assert_int_equal(verify_problems(s), 0);
	tcz_verify_report rep;
	assert_int_equal(tcz_store_verify(s, NULL, NULL, NULL, &rep), 0);
	assert_int_equal(rep.streams, 0);
	assert_int_equal(rep.segments, 0);
	free(v);
	tcz_store_close(s);
}

/* A cold stream's segments are re-encoded to 3 bits, never back up; a
 * reader that had the old segment keeps reading it, one that refreshes
 * gets the new one; errors within the 3-bit bound; hot streams stay. */
static void tiering(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s = new_store(p, sizeof p);
	tcz_stream_params pr = params(512, 100);
	float *v = frames_uniform(250, 512, 64);
	assert_int_equal(tcz_stream_create(s, "c", &pr, NULL), 0);
	assert_int_equal(tcz_stream_create(s, "h", &pr, NULL), 0);
	assert_int_equal(tcz_stream_set_tier(s, "c", TCZ_TIER_HOT), 0);
	assert_int_equal(tcz_stream_set_tier(s, "h", TCZ_TIER_HOT), 0);
	push_all(s, "c", v, 250, 0, 100);
	push_all(s, "h", v, 250, 0, 100);
	tcz_stream_info before, after;
	assert_int_equal(tcz_stream_stat(s, "c", &before), 0);
	assert_int_equal(before.width[3].segments, 3);
	tcz_stream_reader *old;
	assert_int_equal(tcz_stream_reader_open(s, "c", &old), 0);
	float f0[512], f1[512];
	assert_int_equal(tcz_stream_read(old, 10, 11, f0), 0);

	assert_int_equal(tcz_stream_set_tier(s, "c", TCZ_TIER_COLD), 0);
	tcz_tiering_cfg cfg;
	tcz_tiering_cfg_default(&cfg);
	tcz_stream_tier_report rep = {0};
	assert_int_equal(tcz_stream_tier_apply(s, NULL, &cfg, &rep), 0);
	assert_int_equal(rep.streams, 2);
	assert_int_equal(rep.cold, 1);
	assert_int_equal(rep.segments, 3);
	assert_true(rep.after * 2 < rep.before);
	assert_int_equal(tcz_stream_stat(s, "c", &after), 0);
	assert_int_equal(after.width[0].segments, 3);
	assert_int_equal(after.width[0].frames, 250);
	assert_int_equal(after.frames, 250);
	assert_true(after.data_rev > before.data_rev);
	assert_int_equal(after.stored_bytes, rep.after);
	tcz_stream_seg *segs;
	size_t n;
	assert_int_equal(tcz_stream_segments(s, "c", &segs, &n), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(segs[i].bits, 3);
	free(segs);
	/* the reader that had segment 0 reads it whole, as it was */
	assert_int_equal(tcz_stream_read(old, 10, 11, f1), 0);
	assert_memory_equal(f0, f1, sizeof f0);
	assert_int_equal(tcz_stream_reader_refresh(old, NULL), 0);
	assert_int_equal(tcz_stream_read(old, 10, 11, f1), 0);
	assert_memory_not_equal(f0, f1, sizeof f0);
	tcz_stream_reader_close(old);
	uint64_t got;
	float *back = read_all(s, "c", &got);
	double e = max_rel(v, back, 250, 512);
	fprintf(stderr, "re-encoded 8 -> 3 bits: max error %.2f %%\n", e * 100);
	assert_true(e < 0.30);
	free(back);
	assert_int_equal(tcz_stream_stat(s, "h", &after), 0);
	assert_int_equal(after.width[3].segments, 3);
	/* again: nothing more to do (never back up, never twice) */
	memset(&rep, 0, sizeof rep);
	assert_int_equal(tcz_stream_tier_apply(s, "c", &cfg, &rep), 0);
	assert_int_equal(rep.segments, 0);
	assert_int_equal(tcz_stream_tier_apply(s, "nope", &cfg, &rep), -ENOENT);
	/* a writer of the cold stream encodes at 3 bits from then on */
	tcz_stream_writer *w;
	assert_int_equal(tcz_stream_writer_open(s, "c", &w), 0);
	tcz_stream_writer_state st;
	tcz_stream_writer_get_state(w, &st);
	assert_int_equal(st.bits, 3);
	assert_int_equal(tcz_stream_writer_append(w, v, 10, 1000000, 0), 0);
	assert_int_equal(tcz_stream_writer_close(w, NULL), 0);
	assert_int_equal(tcz_stream_stat(s, "c", &after), 0);
	assert_int_equal(after.width[0].segments, 4);
	assert_int_equal(verify_problems(s), 0);
	free(v);
	tcz_store_close(s);
}

/* Raw LMDB access, as damage or another tool would do it. */
static void raw_damage(const char *store, const char *db, size_t keylen,
		       size_t at)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *c;
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 32);
	mdb_env_set_maxreaders(env, 4096);
	mdb_env_set_mapsize(env, 256u << 20);
	assert_int_equal(mdb_env_open(env, store, MDB_NOTLS, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
	assert_int_equal(mdb_cursor_open(txn, dbi, &c), 0);
	MDB_val k, d;
	assert_int_equal(mdb_cursor_get(c, &k, &d, MDB_FIRST), 0);
	assert_int_equal(k.mv_size, keylen);
	unsigned char key[64], *val = malloc(d.mv_size);
	memcpy(key, k.mv_data, k.mv_size);
	memcpy(val, d.mv_data, d.mv_size);
	val[at] ^= 0x40;
	MDB_val nk = {keylen, key}, nd = {d.mv_size, val};
	mdb_cursor_close(c);
	assert_int_equal(mdb_put(txn, dbi, &nk, &nd, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	free(val);
}

static void raw_drop_stream_tables(const char *store)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 32);
	mdb_env_set_mapsize(env, 256u << 20);
	assert_int_equal(mdb_env_open(env, store, MDB_NOTLS, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	const char *t[] = {"streams", "sindex", "sstats"};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(mdb_dbi_open(txn, t[i], 0, &dbi), 0);
		assert_int_equal(mdb_drop(txn, dbi, 1), 0);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* A damaged segment is -EIO for exactly the frames it holds and a
 * problem for verify; a damaged stream record is one too. */
static void damage(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s = new_store(p, sizeof p);
	tcz_stream_params pr = params(32, 4);
	float *v = frames_uniform(8, 32, 64);
	assert_int_equal(tcz_stream_create(s, "x", &pr, NULL), 0);
	push_all(s, "x", v, 8, 0, 1);
	tcz_store_close(s);
	raw_damage(p, "segments", 32, 40); /* the first segment's codes */
	assert_int_equal(tcz_store_open(p, 0, &s), 0);
	tcz_stream_reader *r;
	assert_int_equal(tcz_stream_reader_open(s, "x", &r), 0);
	float out[4 * 32];
	assert_int_equal(tcz_stream_read(r, 0, 1, out), -EIO);
	assert_non_null(strstr(tcz_store_errmsg(), "damaged"));
	assert_int_equal(tcz_stream_read(r, 4, 8, out), 0);
	tcz_stream_reader_close(r);
	assert_int_equal(verify_problems(s), 1);
	tcz_store_close(s);
	raw_damage(p, "streams", 1, 30);
	assert_int_equal(tcz_store_open(p, 0, &s), 0);
	tcz_stream_info info;
	assert_int_equal(tcz_stream_stat(s, "x", &info), -EIO);
	assert_true(verify_problems(s) >= 2);
	/* a damaged stream can still be removed: its name goes, verify
	 * names what is left */
	assert_int_equal(tcz_stream_remove(s, "x"), 0);
	assert_int_equal(tcz_stream_stat(s, "x", &info), -ENOENT);
	tcz_store_close(s);
	free(v);
}

/* A store made before streams: read-only, it holds no stream; the first
 * writable open adds the tables (no schema change). */
static void store_without_tables(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s = new_store(p, sizeof p);
	tcz_store_close(s);
	raw_drop_stream_tables(p);
	assert_int_equal(tcz_store_open(p, TCZ_STORE_RDONLY, &s), 0);
	char **names;
	size_t n = 1;
	assert_int_equal(tcz_stream_list(s, &names, &n), 0);
	assert_int_equal(n, 0);
	tcz_stream_info info;
	assert_int_equal(tcz_stream_stat(s, "streams", &info), -ENOENT);
	assert_int_equal(tcz_stream_stat(s, "meta", &info), -ENOENT);
	tcz_stream_reader *r;
	assert_int_equal(tcz_stream_reader_open(s, "meta", &r), -ENOENT);
	tcz_stream_params pr = params(4, 0);
	assert_int_equal(tcz_stream_create(s, "a", &pr, NULL), -EROFS);
	assert_int_equal(verify_problems(s), 0);
	tcz_store_close(s);
	assert_int_equal(tcz_store_open(p, 0, &s), 0);
	assert_int_equal(tcz_stream_create(s, "a", &pr, NULL), 0);
	tcz_store_close(s);
	assert_int_equal(tcz_store_open(p, TCZ_STORE_RDONLY, &s), 0);
	assert_int_equal(tcz_stream_stat(s, "a", &info), 0);
	tcz_store_close(s);
}

/* ---- a reader against a writer ------------------------------------------------- */

#define C_DIM 256u
#define C_GROUP 64u
#define C_FRAMES 1500u

/* Frame f: every group's value 0 is 1.0 (its max: no drift), value 1 is
 * q/127 with q = f % 200 - 100, which 8 bits keep exactly as code q; so a
 * frame read back says which frame it is, in every group. */
static void c_frame(uint32_t f, float *out)
{
	for (uint32_t i = 0; i < C_DIM; i++)
		out[i] = (float)((i * 7 + f) % 13) / 16.0f;
	for (uint32_t g = 0; g < C_DIM; g += C_GROUP) {
		out[g] = 1.0f;
		out[g + 1] = (float)((int)(f % 200) - 100) / 127.0f;
	}
}

static int c_which(const float *in)
{
	int q0 = -1000;
	for (uint32_t g = 0; g < C_DIM; g += C_GROUP) {
		double s = in[g] / 127.0;
		int q = (int)lrint(in[g + 1] / s);
		if (q0 != -1000 && q != q0)
			return -1000; /* groups of different frames: torn */
		q0 = q;
	}
	return q0;
}

typedef struct c_arg {
	tcz_store *s; /* shared by the threads (LMDB: one environment per
		       * process; other processes: tests/integration) */
	_Atomic int done, failed;
	_Atomic uint64_t committed;
	uint64_t reads, frames_checked;
	char why[2][256]; /* 0 writer, 1 reader: cmocka asserts only in the
			   * test's own thread */
} c_arg;

#define CHECK(a, who, cond, ...)                                            \
	do {                                                                \
		if (!(cond)) {                                              \
			snprintf((a)->why[who], sizeof (a)->why[who],       \
				 __VA_ARGS__);                              \
			(a)->failed = 1;                                    \
			goto out;                                           \
		}                                                           \
	} while (0)

static void *c_writer(void *arg)
{
	c_arg *a = arg;
	tcz_store *s = a->s;
	tcz_stream_writer *w = NULL;
	int rc = tcz_stream_writer_open(s, "c", &w);
	CHECK(a, 0, rc == 0, "writer: %d", rc);
	float f[C_DIM * 3];
	for (uint32_t k = 0; k < C_FRAMES && !a->failed; k += 3) {
		for (uint32_t j = 0; j < 3; j++)
			c_frame(k + j, f + j * C_DIM);
		/* bytes cut at odd places, as a file system's writes */
		const unsigned char *b = (const unsigned char *)f;
		size_t cut = (k * 37) % (sizeof f - 1) + 1;
		rc = tcz_stream_writer_write(w, b, cut, k);
		CHECK(a, 0, rc == 0, "write: %d", rc);
		rc = tcz_stream_writer_write(w, b + cut, sizeof f - cut, k);
		CHECK(a, 0, rc == 0, "write: %d", rc);
		if (k % 30 == 0)
			rc = tcz_stream_writer_flush(w);
		else if (k % 7 == 0)
			rc = tcz_stream_writer_commit(w);
		CHECK(a, 0, rc == 0, "commit: %d", rc);
		tcz_stream_writer_state st;
		tcz_stream_writer_get_state(w, &st);
		a->committed = st.committed;
	}
	rc = tcz_stream_writer_close(w, NULL);
	w = NULL;
	CHECK(a, 0, rc == 0, "close: %d", rc);
	a->committed = C_FRAMES;
out:
	tcz_stream_writer_discard(w);
	a->done = 1;
	return NULL;
}

static void *c_reader(void *arg)
{
	c_arg *a = arg;
	tcz_stream_reader *r = NULL;
	float *buf = malloc(C_FRAMES * C_DIM * sizeof *buf);
	uint64_t seen = 0;
	int rc = tcz_stream_reader_open(a->s, "c", &r);
	CHECK(a, 1, rc == 0, "reader: %d", rc);
	for (int last = 0; !last && !a->failed;) {
		last = a->done;
		uint64_t before = a->committed;
		rc = tcz_stream_reader_refresh(r, NULL);
		CHECK(a, 1, rc == 0, "refresh: %d", rc);
		uint64_t n = tcz_stream_reader_frames(r);
		CHECK(a, 1, n >= seen, "frames went back: %llu after %llu",
		      (unsigned long long)n, (unsigned long long)seen);
		CHECK(a, 1, n >= before, "%llu frames committed, %llu seen",
		      (unsigned long long)before, (unsigned long long)n);
		seen = n;
		if (!n)
			continue;
		uint64_t x = (uint64_t)rand() % n, y = (uint64_t)rand() % n;
		uint64_t lo = x < y ? x : y, hi = (x < y ? y : x) + 1;
		if (hi - lo > 64)
			lo = hi - 64;
		rc = tcz_stream_read(r, lo, hi, buf);
		CHECK(a, 1, rc == 0, "read [%llu, %llu): %d", (unsigned long long)lo,
		      (unsigned long long)hi, rc);
		for (uint64_t f = lo; f < hi; f++) {
			int q = c_which(buf + (f - lo) * C_DIM);
			CHECK(a, 1, q == (int)(f % 200) - 100, "frame %llu read as %d",
			      (unsigned long long)f, q);
			a->frames_checked++;
		}
		a->reads++;
	}
	CHECK(a, 1, a->failed || seen == C_FRAMES, "saw %llu frames at the end",
	      (unsigned long long)seen);
out:
	free(buf);
	tcz_stream_reader_close(r);
	return NULL;
}

static void concurrent(void **state)
{
	(void)state;
	char p[128];
	tcz_store *s = new_store(p, sizeof p);
	tcz_stream_params pr = params(C_DIM, 25);
	assert_int_equal(tcz_stream_create(s, "c", &pr, NULL), 0);
	assert_int_equal(tcz_stream_set_tier(s, "c", TCZ_TIER_HOT), 0);
	c_arg a = {.s = s};
	pthread_t tw, tr;
	assert_int_equal(pthread_create(&tr, NULL, c_reader, &a), 0);
	assert_int_equal(pthread_create(&tw, NULL, c_writer, &a), 0);
	pthread_join(tw, NULL);
	pthread_join(tr, NULL);
	if (a.failed)
		fail_msg("writer: %s; reader: %s", a.why[0], a.why[1]);
	fprintf(stderr, "reader: %llu reads, %llu frames checked\n",
		(unsigned long long)a.reads, (unsigned long long)a.frames_checked);
	assert_true(a.reads > 0);
	assert_int_equal(verify_problems(s), 0);
	tcz_store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(create_rules),
		cmocka_unit_test(widths),
		cmocka_unit_test(drift),
		cmocka_unit_test(same_whatever_the_pieces),
		cmocka_unit_test(visibility),
		cmocka_unit_test(time_ranges),
		cmocka_unit_test(removal),
		cmocka_unit_test(tiering),
		cmocka_unit_test(damage),
		cmocka_unit_test(store_without_tables),
		cmocka_unit_test(concurrent),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
