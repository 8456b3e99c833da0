/* tczfs stream create | ls | info | rm | push | cat | tier */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "codec/half.h"
#include "store/npy.h"
#include "store/stream.h"
#include "tools/cli.h"

static const char stream_help[] =
	"usage: tczfs stream create NAME --dim N [--group G] [--warm-bits 7|5]\n"
	"                    [--drift-pct-q8 D] [--segment-frames F]\n"
	"       tczfs stream ls [-l] [--json]\n"
	"       tczfs stream info NAME [--json]\n"
	"       tczfs stream rm NAME...\n"
	"       tczfs stream push NAME FILE|- [--ts MS] [--interval-ms MS]\n"
	"       tczfs stream cat NAME [--from TS] [--to TS] [--frames A:B]\n"
	"                    [--format raw|npy] [-o FILE]\n"
	"       tczfs stream tier NAME hot|warm|cold|auto\n"
	"A stream is an append-only sequence of frames of N float32 values with\n"
	"millisecond timestamps, stored as TQTC segments (groupwise quantized,\n"
	"one set of f16 scales per segment; SPEC 6). Bits per segment follow\n"
	"the stream's tier when it is encoded: hot 8, warm 7 (or --warm-bits 5),\n"
	"cold 3; 'tczfs tier run' re-encodes a cold stream's segments to 3 bits.\n"
	"create  --dim N values per frame; --group G values per scale (64);\n"
	"        --drift-pct-q8 D: a frame whose group maximum passes the\n"
	"        segment's scale x qmax x (1 + D/256) starts a new segment (26);\n"
	"        --segment-frames F frames per segment at most (0: 1 MiB of f32)\n"
	"push    appends FILE (or standard input): raw little-endian float32,\n"
	"        whole frames, or a .npy of shape [F, N] (or [N]) float32 or\n"
	"        float16 (bfloat16 data given as float32). Frame i gets timestamp\n"
	"        --ts + i * --interval-ms (default: now, interval 0). The input is\n"
	"        checked whole first: bad input stores nothing.\n"
	"cat     writes frames as float32 (raw, or --format npy [F, N]) to\n"
	"        standard output or -o FILE: all, those with --from <= timestamp\n"
	"        <= --to, and/or --frames A:B (frames A to B-1; A: and :B too)\n"
	"tier    pins the stream's tier (auto: follow the access score)\n"
	"info    frames, segments and bits per segment, stored bytes, ratio vs\n"
	"        float32, first and last timestamp, tier (--json: every segment)\n";

/* ---- helpers --------------------------------------------------------------- */

static const char *msg(int rc)
{
	return tcz_store_errmsg()[0] ? tcz_store_errmsg() : strerror(-rc);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void ts_text(uint64_t ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char d[32];
	localtime_r(&t, &tm);
	strftime(d, sizeof d, "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf, n, "%llu (%s.%03u)", (unsigned long long)ms, d,
		 (unsigned)(ms % 1000));
}

static const char *tier_text(const tcz_stream_info *i)
{
	return tcz_tier_name(i->tier);
}

/* ---- create ----------------------------------------------------------------- */

static int cmd_create(int argc, char **argv)
{
	static const struct option lo[] = {
		{"dim", required_argument, 0, 'd'},
		{"group", required_argument, 0, 'g'},
		{"warm-bits", required_argument, 0, 'w'},
		{"drift-pct-q8", required_argument, 0, 'D'},
		{"segment-frames", required_argument, 0, 'F'},
		{0, 0, 0, 0},
	};
	tcz_stream_params p;
	tcz_stream_params_default(&p);
	int have_dim = 0, c;
	uint64_t v;
	while ((c = cli_parse_common(argc, argv, stream_help, NULL, lo)) > 1) {
		if (cli_u64(c == 'd' ? "--dim" : c == 'g' ? "--group"
				   : c == 'w' ? "--warm-bits"
				   : c == 'D' ? "--drift-pct-q8"
					      : "--segment-frames",
			    optarg, &v))
			return 2;
		if (v > UINT32_MAX)
			return cli_usage(stream_help, "stream create: value too large");
		switch (c) {
		case 'd': p.dim = (uint32_t)v, have_dim = 1; break;
		case 'g': p.group_len = (uint32_t)v; break;
		case 'w':
			if (v != 7 && v != 5)
				return cli_usage(stream_help, "--warm-bits is 7 or 5");
			p.warm_bits = (uint32_t)v;
			break;
		case 'D': p.drift_pct_q8 = (uint32_t)v; break;
		case 'F': p.segment_frames = (uint32_t)v; break;
		}
	}
	if (c != 1)
		return cli_exit;
	if (argc - optind != 1)
		return cli_usage(stream_help, "stream create: expected one NAME");
	if (!have_dim)
		return cli_usage(stream_help, "stream create: --dim N is required");
	tcz_store *s;
	if (cli_open_store(0, &s))
		return EXIT_FAILURE;
	uint64_t id;
	int rc = tcz_stream_create(s, argv[optind], &p, &id);
	tcz_store_close(s);
	if (rc) {
		cli_err("stream create: %s", msg(rc));
		return EXIT_FAILURE;
	}
	printf("created stream %s: %u values per frame, groups of %u, warm %u "
	       "bits\n",
	       argv[optind], p.dim, p.group_len, p.warm_bits);
	return 0;
}

/* ---- ls, info ------------------------------------------------------------------ */

static json_t *info_json(const char *name, const tcz_stream_info *i)
{
	json_t *w = json_object();
	for (int k = 0; k < 4; k++) {
		if (!i->width[k].segments)
			continue;
		char b[8];
		snprintf(b, sizeof b, "%u", tcz_stream_width_bits(k));
		json_object_set_new(
			w, b,
			json_pack("{s:I, s:I, s:I}", "segments",
				  (json_int_t)i->width[k].segments, "frames",
				  (json_int_t)i->width[k].frames, "bytes",
				  (json_int_t)i->width[k].bytes));
	}
	json_t *o = json_pack(
		"{s:s, s:I, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I, "
		"s:f, s:s, s:b, s:I, s:I, s:I, s:I, s:o}",
		"name", name, "id", (json_int_t)i->id, "dim", (int)i->params.dim,
		"group", (int)i->params.group_len, "warm_bits",
		(int)i->params.warm_bits, "drift_pct_q8", (int)i->params.drift_pct_q8,
		"segment_frames", (int)i->params.segment_frames, "created",
		(json_int_t)i->created, "frames", (json_int_t)i->frames, "segments",
		(json_int_t)i->segments, "stored_bytes", (json_int_t)i->stored_bytes,
		"overhead_bytes", (json_int_t)i->overhead_bytes, "f32_bytes",
		(json_int_t)(i->frames * i->params.dim * 4), "ratio",
		tcz_stream_ratio(i), "tier", tier_text(i), "pinned", i->pinned >= 0,
		"accesses", (json_int_t)i->accesses, "last_access",
		(json_int_t)i->last_access, "version", (json_int_t)i->version,
		"data_rev", (json_int_t)i->data_rev, "by_bits", w);
	if (i->frames) {
		json_object_set_new(o, "first_ts", json_integer((json_int_t)i->first_ts));
		json_object_set_new(o, "last_ts", json_integer((json_int_t)i->last_ts));
	} else {
		json_object_set_new(o, "first_ts", json_null());
		json_object_set_new(o, "last_ts", json_null());
	}
	return o;
}

static int cmd_ls(int argc, char **argv)
{
	static const struct option lo[] = {
		{"long", no_argument, 0, 'l'},
		{"json", no_argument, 0, 'J'},
		{0, 0, 0, 0},
	};
	int lng = 0, js = 0, c;
	while ((c = cli_parse_common(argc, argv, stream_help, "l", lo)) > 1)
		c == 'l' ? (lng = 1) : (js = 1);
	if (c != 1)
		return cli_exit;
	if (optind != argc)
		return cli_usage(stream_help, "stream ls: unexpected argument");
	tcz_store *s;
	if (cli_open_store(TCZ_STORE_RDONLY, &s))
		return EXIT_FAILURE;
	char **names = NULL;
	size_t n = 0;
	int rc = tcz_stream_list(s, &names, &n), bad = 0;
	json_t *arr = json_array();
	if (rc == 0 && lng && !js)
		printf("%-32s %8s %10s %8s %10s %8s %-5s\n", "STREAM", "DIM",
		       "FRAMES", "SEGMENTS", "STORED", "RATIO", "TIER");
	for (size_t k = 0; rc == 0 && k < n; k++) {
		if (!lng && !js) {
			printf("%s\n", names[k]);
			continue;
		}
		tcz_stream_info i;
		int r = tcz_stream_stat(s, names[k], &i);
		if (r) {
			cli_err("stream ls: %s", msg(r));
			bad = 1;
			continue;
		}
		if (js) {
			json_array_append_new(arr, info_json(names[k], &i));
			continue;
		}
		char b[32];
		cli_size(b, sizeof b, i.stored_bytes);
		printf("%-32s %8u %10llu %8llu %10s %7.3fx %-5s\n", names[k],
		       i.params.dim, (unsigned long long)i.frames,
		       (unsigned long long)i.segments, b, tcz_stream_ratio(&i),
		       tier_text(&i));
	}
	if (rc == 0 && js && !bad) {
		char *t = json_dumps(arr, JSON_INDENT(2));
		printf("%s\n", t ? t : "[]");
		free(t);
	}
	json_decref(arr);
	tcz_names_free(names, n);
	tcz_store_close(s);
	if (rc)
		cli_err("stream ls: %s", msg(rc));
	return rc || bad ? EXIT_FAILURE : 0;
}

static int cmd_info(int argc, char **argv)
{
	static const struct option lo[] = {
		{"json", no_argument, 0, 'J'},
		{0, 0, 0, 0},
	};
	int js = 0, c;
	while ((c = cli_parse_common(argc, argv, stream_help, NULL, lo)) > 1)
		js = 1;
	if (c != 1)
		return cli_exit;
	if (argc - optind != 1)
		return cli_usage(stream_help, "stream info: expected one NAME");
	const char *name = argv[optind];
	tcz_store *s;
	if (cli_open_store(TCZ_STORE_RDONLY, &s))
		return EXIT_FAILURE;
	tcz_stream_info i;
	tcz_stream_seg *segs = NULL;
	size_t n = 0;
	int rc = tcz_stream_stat(s, name, &i);
	if (rc == 0)
		rc = tcz_stream_segments(s, name, &segs, &n);
	tcz_store_close(s);
	if (rc) {
		cli_err("stream info: %s", msg(rc));
		return EXIT_FAILURE;
	}
	if (js) {
		json_t *o = info_json(name, &i), *arr = json_array();
		for (size_t k = 0; k < n; k++)
			json_array_append_new(
				arr, json_pack("{s:I, s:i, s:i, s:I, s:I, s:I}",
					       "first_frame",
					       (json_int_t)segs[k].first_frame,
					       "frames", (int)segs[k].frames, "bits",
					       (int)segs[k].bits, "start_ts",
					       (json_int_t)segs[k].start_ts, "end_ts",
					       (json_int_t)segs[k].end_ts, "bytes",
					       (json_int_t)segs[k].bytes));
		json_object_set_new(o, "segment_list", arr);
		char *t = json_dumps(o, JSON_INDENT(2));
		printf("%s\n", t ? t : "{}");
		free(t);
		json_decref(o);
		free(segs);
		return 0;
	}
	char a[32], b[32], f1[64], f2[64];
	cli_size(a, sizeof a, i.frames * i.params.dim * 4);
	cli_size(b, sizeof b, i.stored_bytes);
	printf("stream      %s (id %llu)\n", name, (unsigned long long)i.id);
	printf("frames      %llu of %u float32 values (%s)\n",
	       (unsigned long long)i.frames, i.params.dim, a);
	printf("encoding    TQTC, groups of %u, warm %u bits, drift %u/256, ",
	       i.params.group_len, i.params.warm_bits, i.params.drift_pct_q8);
	if (i.params.segment_frames)
		printf("at most %u frames per segment\n", i.params.segment_frames);
	else
		printf("segments up to 1 MiB of float32\n");
	printf("segments    %llu\n", (unsigned long long)i.segments);
	for (int k = 3; k >= 0; k--) {
		if (!i.width[k].segments)
			continue;
		char w[32];
		cli_size(w, sizeof w, i.width[k].bytes);
		printf("  %u bits    %llu segments, %llu frames, %s\n",
		       tcz_stream_width_bits(k),
		       (unsigned long long)i.width[k].segments,
		       (unsigned long long)i.width[k].frames, w);
	}
	cli_size(a, sizeof a, i.overhead_bytes);
	printf("stored      %s (%.3fx vs float32; index and checksums %s more)\n",
	       b, tcz_stream_ratio(&i), a);
	if (i.frames) {
		ts_text(i.first_ts, f1, sizeof f1);
		ts_text(i.last_ts, f2, sizeof f2);
		printf("first ts    %s\nlast ts     %s\n", f1, f2);
	}
	printf("tier        %s%s, %llu accesses\n", tier_text(&i),
	       i.pinned >= 0 ? " (pinned)" : "", (unsigned long long)i.accesses);
	free(segs);
	return 0;
}

static int cmd_rm(int argc, char **argv)
{
	int c = cli_parse_common(argc, argv, stream_help, NULL, NULL);
	if (c != 1)
		return cli_exit;
	if (optind >= argc)
		return cli_usage(stream_help, "stream rm: missing NAME");
	tcz_store *s;
	if (cli_open_store(0, &s))
		return EXIT_FAILURE;
	int status = 0;
	for (int k = optind; k < argc; k++) {
		int rc = tcz_stream_remove(s, argv[k]);
		if (rc) {
			cli_err("stream rm: %s", msg(rc));
			status = EXIT_FAILURE;
		}
	}
	tcz_store_close(s);
	return status;
}

static int cmd_tier(int argc, char **argv)
{
	int c = cli_parse_common(argc, argv, stream_help, NULL, NULL);
	if (c != 1)
		return cli_exit;
	if (argc - optind != 2)
		return cli_usage(stream_help, "stream tier: expected NAME TIER");
	const char *t = argv[optind + 1];
	int32_t tier = -1;
	tcz_tier tv;
	if (strcmp(t, "auto") != 0) {
		if (tcz_tier_parse(t, &tv))
			return cli_usage(stream_help,
					 "stream tier: TIER is hot, warm, cold or auto");
		tier = (int32_t)tv;
	}
	tcz_store *s;
	if (cli_open_store(0, &s))
		return EXIT_FAILURE;
	int rc = tcz_stream_set_tier(s, argv[optind], tier);
	tcz_store_close(s);
	if (rc) {
		cli_err("stream tier: %s", msg(rc));
		return EXIT_FAILURE;
	}
	printf("%s: %s\n", argv[optind], tier < 0 ? "tier follows the score"
						   : t);
	return 0;
}

/* ---- push ------------------------------------------------------------------------- */

/* The input, whole: mapped when it is a regular file, read otherwise. */
typedef struct input {
	const unsigned char *p;
	size_t len;
	void *map;
	unsigned char *heap;
} input;

static int input_open(const char *path, input *in, char *err, size_t n)
{
	memset(in, 0, sizeof *in);
	int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC)
				   : STDIN_FILENO;
	if (fd < 0) {
		snprintf(err, n, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		in->len = (size_t)st.st_size;
		if (in->len) {
			in->map = mmap(NULL, in->len, PROT_READ, MAP_PRIVATE, fd, 0);
			if (in->map == MAP_FAILED) {
				in->map = NULL;
				snprintf(err, n, "%s: %s", path, strerror(errno));
				if (fd != STDIN_FILENO)
					close(fd);
				return -1;
			}
			in->p = in->map;
		}
	} else {
		size_t cap = 1 << 20;
		in->heap = malloc(cap);
		for (ssize_t k = 1; in->heap && k > 0;) {
			if (in->len == cap) {
				unsigned char *nh = realloc(in->heap, cap * 2);
				if (!nh)
					break;
				in->heap = nh;
				cap *= 2;
			}
			k = read(fd, in->heap + in->len, cap - in->len);
			if (k < 0 && errno == EINTR)
				k = 1;
			else if (k < 0) {
				snprintf(err, n, "%s: %s", path, strerror(errno));
				free(in->heap);
				in->heap = NULL;
				return -1;
			} else
				in->len += (size_t)k;
		}
		if (!in->heap) {
			snprintf(err, n, "%s: out of memory", path);
			return -1;
		}
		in->p = in->heap;
	}
	if (fd != STDIN_FILENO)
		close(fd);
	return 0;
}

static void input_close(input *in)
{
	if (in->map)
		munmap(in->map, in->len);
	free(in->heap);
}

/* The frames of the input: data, count and element size (4 f32, 2 f16). */
typedef struct frames_in {
	const unsigned char *data;
	uint64_t count;
	unsigned es;
} frames_in;

static int find_frames(const char *path, const input *in, uint32_t dim,
		       frames_in *f, char *err, size_t n)
{
	size_t fb = (size_t)dim * 4;
	if (in->len >= 6 && memcmp(in->p, "\x93NUMPY", 6) == 0) {
		tcz_npy_info ni;
		char why[256];
		if (tcz_npy_parse(in->p, in->len, &ni, why, sizeof why)) {
			snprintf(err, n, "%s: %s", path, why);
			return -1;
		}
		if (ni.dtype != TCZ_DT_F32 && ni.dtype != TCZ_DT_F16) {
			snprintf(err, n, "%s: dtype %s (float32 or float16 only; "
					 "bfloat16 data as float32)",
				 path, tcz_dtype_name(ni.dtype));
			return -1;
		}
		uint64_t width = ni.ndim == 2 ? ni.shape[1] : ni.ndim == 1 ? ni.shape[0] : 0;
		if (width != dim || ni.ndim < 1 || ni.ndim > 2) {
			char sh[96] = "[";
			for (uint32_t k = 0; k < ni.ndim && k < 4; k++)
				snprintf(sh + strlen(sh), sizeof sh - strlen(sh),
					 "%s%llu", k ? ", " : "",
					 (unsigned long long)ni.shape[k]);
			strcat(sh, "]");
			snprintf(err, n,
				 "%s: shape %s is not [frames, %u] (the stream's "
				 "frame length)",
				 path, sh, dim);
			return -1;
		}
		f->data = in->p + ni.data_offset;
		f->count = ni.ndim == 2 ? ni.shape[0] : 1;
		f->es = ni.dtype == TCZ_DT_F32 ? 4 : 2;
		return 0;
	}
	if (in->len % fb) {
		snprintf(err, n,
			 "%s: %zu bytes is not a whole number of frames of %u "
			 "float32 values (%zu bytes each)",
			 path, in->len, dim, fb);
		return -1;
	}
	f->data = in->p;
	f->count = in->len / fb;
	f->es = 4;
	return 0;
}

/* The index of the first frame holding a NaN or an infinity, or count. */
static uint64_t first_bad(const frames_in *f, uint32_t dim)
{
	size_t vals = (size_t)dim;
	for (uint64_t k = 0; k < f->count; k++) {
		const unsigned char *p = f->data + k * vals * f->es;
		for (size_t i = 0; i < vals; i++) {
			if (f->es == 4) {
				uint32_t b;
				memcpy(&b, p + 4 * i, 4);
				if ((b & 0x7f800000u) == 0x7f800000u)
					return k;
			} else {
				uint16_t h;
				memcpy(&h, p + 2 * i, 2);
				if ((h & 0x7c00u) == 0x7c00u)
					return k;
			}
		}
	}
	return f->count;
}

#define PUSH_BATCH_BYTES (4u << 20)   /* f32 appended per call */
#define PUSH_COMMIT_BYTES (64u << 20) /* encoded bytes per commit */

static int cmd_push(int argc, char **argv)
{
	static const struct option lo[] = {
		{"ts", required_argument, 0, 't'},
		{"interval-ms", required_argument, 0, 'i'},
		{0, 0, 0, 0},
	};
	uint64_t ts = 0, step = 0;
	int have_ts = 0, c;
	while ((c = cli_parse_common(argc, argv, stream_help, NULL, lo)) > 1) {
		if (cli_u64(c == 't' ? "--ts" : "--interval-ms", optarg,
			    c == 't' ? &ts : &step))
			return 2;
		have_ts |= c == 't';
	}
	if (c != 1)
		return cli_exit;
	if (argc - optind != 2)
		return cli_usage(stream_help, "stream push: expected NAME FILE");
	const char *name = argv[optind], *path = argv[optind + 1];
	tcz_store *s;
	if (cli_open_store(0, &s))
		return EXIT_FAILURE;
	tcz_stream_writer *w = NULL;
	tcz_stream_info info;
	input in = {0};
	char err[512];
	int rc = tcz_stream_stat(s, name, &info);
	if (rc == 0)
		rc = tcz_stream_writer_open(s, name, &w);
	if (rc) {
		cli_err("stream push: %s", msg(rc));
		tcz_store_close(s);
		return EXIT_FAILURE;
	}
	uint32_t dim = info.params.dim;
	frames_in f;
	if (input_open(path, &in, err, sizeof err) ||
	    find_frames(path, &in, dim, &f, err, sizeof err)) {
		cli_err("stream push: %s", err);
		goto fail;
	}
	uint64_t bad = first_bad(&f, dim);
	if (bad < f.count) {
		cli_err("stream push: %s: frame %llu holds a NaN or an infinity",
			path, (unsigned long long)bad);
		goto fail;
	}
	tcz_stream_writer_state st;
	tcz_stream_writer_get_state(w, &st);
	if (!have_ts) {
		/* now, but never before the last frame */
		ts = now_ms();
		if (ts < st.last_ts)
			ts = st.last_ts;
	}
	if (f.count && step && f.count - 1 > (UINT64_MAX - ts) / step) {
		cli_err("stream push: the timestamps overflow");
		goto fail;
	}
	uint64_t first = st.committed;
	size_t per = PUSH_BATCH_BYTES / ((size_t)dim * 4);
	if (!per)
		per = 1;
	float *batch = malloc(per * dim * sizeof *batch);
	if (!batch) {
		cli_err("stream push: out of memory");
		goto fail;
	}
	for (uint64_t k = 0; k < f.count && rc == 0; k += per) {
		size_t m = f.count - k < per ? (size_t)(f.count - k) : per;
		const unsigned char *src = f.data + k * dim * f.es;
		if (f.es == 2)
			tcz_f16_to_f32_n(src, batch, m * dim);
		else
			memcpy(batch, src, m * dim * sizeof *batch);
		rc = tcz_stream_writer_append(w, batch, m, ts + k * step, step);
		tcz_stream_writer_get_state(w, &st);
		if (rc == 0 && st.pending_bytes >= PUSH_COMMIT_BYTES)
			rc = tcz_stream_writer_commit(w);
	}
	free(batch);
	if (rc == 0)
		rc = tcz_stream_writer_flush(w);
	if (rc) {
		tcz_stream_writer_get_state(w, &st);
		if (st.committed > first)
			cli_err("stream push: %s (%llu frames of this push stored)",
				msg(rc), (unsigned long long)(st.committed - first));
		else
			cli_err("stream push: %s", msg(rc));
		goto fail;
	}
	tcz_stream_writer_close(w, NULL);
	input_close(&in);
	rc = tcz_stream_stat(s, name, &info);
	tcz_store_close(s);
	if (rc) {
		cli_err("stream push: %s", msg(rc));
		return EXIT_FAILURE;
	}
	char b[32];
	cli_size(b, sizeof b, info.stored_bytes);
	printf("pushed %llu frames to %s: frames %llu..%llu, %llu in %llu "
	       "segments, %s (%.3fx)\n",
	       (unsigned long long)f.count, name, (unsigned long long)first,
	       (unsigned long long)(first + f.count) - (f.count > 0),
	       (unsigned long long)info.frames,
	       (unsigned long long)info.segments, b, tcz_stream_ratio(&info));
	return 0;
fail:
	tcz_stream_writer_discard(w);
	input_close(&in);
	tcz_store_close(s);
	return EXIT_FAILURE;
}

/* ---- cat -------------------------------------------------------------------------- */

/* A:B, A:, :B or A (one frame). */
static int parse_range(const char *t, uint64_t *a, uint64_t *b)
{
	const char *colon = strchr(t, ':');
	char x[32] = "", y[32] = "";
	if (!colon) {
		if (cli_u64("--frames", t, a))
			return -1;
		*b = *a + 1;
		return 0;
	}
	size_t n = (size_t)(colon - t);
	if (n >= sizeof x || strlen(colon + 1) >= sizeof y)
		return -1;
	memcpy(x, t, n);
	strcpy(y, colon + 1);
	*a = 0;
	*b = UINT64_MAX;
	if (x[0] && cli_u64("--frames", x, a))
		return -1;
	if (y[0] && cli_u64("--frames", y, b))
		return -1;
	return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
	const unsigned char *b = p;
	while (n) {
		ssize_t k = write(fd, b, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

static int cmd_cat(int argc, char **argv)
{
	static const struct option lo[] = {
		{"from", required_argument, 0, 'f'},
		{"to", required_argument, 0, 't'},
		{"frames", required_argument, 0, 'r'},
		{"format", required_argument, 0, 'F'},
		{"output", required_argument, 0, 'o'},
		{0, 0, 0, 0},
	};
	uint64_t from = 0, to = UINT64_MAX, fa = 0, fb = UINT64_MAX;
	int npy = 0, c;
	const char *out = NULL;
	while ((c = cli_parse_common(argc, argv, stream_help, "o:", lo)) > 1) {
		switch (c) {
		case 'f':
			if (cli_u64("--from", optarg, &from))
				return 2;
			break;
		case 't':
			if (cli_u64("--to", optarg, &to))
				return 2;
			break;
		case 'r':
			if (parse_range(optarg, &fa, &fb))
				return cli_usage(stream_help,
						 "--frames is A:B, A:, :B or A");
			break;
		case 'F':
			if (strcmp(optarg, "raw") && strcmp(optarg, "npy"))
				return cli_usage(stream_help, "--format is raw or npy");
			npy = optarg[0] == 'n';
			break;
		case 'o':
			out = optarg;
			break;
		}
	}
	if (c != 1)
		return cli_exit;
	if (argc - optind != 1)
		return cli_usage(stream_help, "stream cat: expected one NAME");
	const char *name = argv[optind];
	tcz_store *s;
	if (cli_open_store(TCZ_STORE_RDONLY, &s))
		return EXIT_FAILURE;
	tcz_stream_reader *r = NULL;
	int rc = tcz_stream_reader_open(s, name, &r);
	uint64_t a = 0, b = 0;
	if (rc == 0) {
		b = tcz_stream_reader_frames(r);
		if (from > 0 || to < UINT64_MAX)
			rc = tcz_stream_find_time(r, from, to, &a, &b);
	}
	if (rc) {
		cli_err("stream cat: %s", msg(rc));
		tcz_stream_reader_close(r);
		tcz_store_close(s);
		return EXIT_FAILURE;
	}
	if (fa > a)
		a = fa;
	if (fb < b)
		b = fb;
	if (a > b)
		a = b;
	uint32_t dim = tcz_stream_reader_dim(r);
	int fd = STDOUT_FILENO;
	if (out && (fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			      0644)) < 0) {
		cli_err("stream cat: %s: %s", out, strerror(errno));
		tcz_stream_reader_close(r);
		tcz_store_close(s);
		return EXIT_FAILURE;
	}
	if (npy) {
		char h[256];
		size_t hl;
		rc = tcz_stream_npy_header(b - a, dim, h, sizeof h, &hl);
		if (rc == 0)
			rc = write_all(fd, h, hl);
	}
	size_t per = (1u << 20) / ((size_t)dim * 4);
	if (!per)
		per = 1;
	float *buf = malloc(per * dim * sizeof *buf);
	if (!buf)
		rc = -ENOMEM;
	for (uint64_t k = a; rc == 0 && k < b; k += per) {
		uint64_t m = b - k < per ? b - k : per;
		if ((rc = tcz_stream_read(r, k, k + m, buf)) == 0)
			rc = write_all(fd, buf, m * dim * sizeof *buf);
	}
	free(buf);
	if (out && close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc)
		cli_err("stream cat: %s: %s", out ? out : name, msg(rc));
	tcz_stream_reader_close(r);
	tcz_store_close(s);
	return rc ? EXIT_FAILURE : 0;
}

/* ---- dispatch ------------------------------------------------------------------------ */

int cli_stream(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(stream_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} subs[] = {
		{"create", cmd_create}, {"ls", cmd_ls},     {"info", cmd_info},
		{"rm", cmd_rm},         {"push", cmd_push}, {"cat", cmd_cat},
		{"tier", cmd_tier},
	};
	for (size_t k = 0; k < sizeof subs / sizeof subs[0]; k++)
		if (!strcmp(argv[1], subs[k].name))
			return subs[k].fn(argc - 1, argv + 1);
	return cli_usage(stream_help,
			 "stream: create, ls, info, rm, push, cat or tier");
}
