/* tczfs tier ls | pin | policy | run */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "store/stream.h"
#include "store/tiering.h"
#include "store/view.h"
#include "tools/cli.h"

static const char tier_help[] =
	"usage: tczfs tier ls MODEL [--json]\n"
	"       tczfs tier pin PATH hot|warm|cold|auto\n"
	"       tczfs tier policy MODEL cost|precision [--max-error E]\n"
	"       tczfs tier run [MODEL] [--hot-score N] [--warm-score N]\n"
	"                      [--warm-bits 7|5] [--io-mb-s N] [--quiet]\n"
	"Tiers follow access statistics (SPEC 7): score = reads * 1024 /\n"
	"(now - last access + 1); hot at >= 512, warm at >= 64, else cold.\n"
	"ls shows each tensor's tier, pin, score, reads, codec, stored bytes\n"
	"and generation, and totals per tier. pin fixes the tier of a tensor\n"
	"file (MNT/MODEL/layers/T.npy in a mount, or MODEL/layers/T.npy in\n"
	"the store) or of every tensor of a model file; auto unpins. policy\n"
	"cost (the default) re-encodes cold tensors into a denser lossless\n"
	"form, the bytes never change; precision re-quantizes cold tensors to\n"
	"3 bits and warm ones to 7 (or --warm-bits 5) where the error against\n"
	"the imported values stays within --max-error. run applies the\n"
	"policies now, without a mount (a mounted daemon does it itself), to\n"
	"models and to streams (a cold stream's segments go to 3 bits; pin a\n"
	"stream's tier with 'tczfs stream tier NAME TIER').\n"
	"TCZFS_NOW (seconds, or @FILE) replaces the clock, for tests.\n";

static int cfg_opts(int argc, char **argv, tcz_tiering_cfg *c, int *quiet,
		    int *json, double *max_error)
{
	static const struct option lo[] = {
		{"hot-score", required_argument, 0, 'H'},
		{"warm-score", required_argument, 0, 'W'},
		{"warm-bits", required_argument, 0, 'b'},
		{"io-mb-s", required_argument, 0, 'I'},
		{"max-error", required_argument, 0, 'e'},
		{"quiet", no_argument, 0, 'q'},
		{"json", no_argument, 0, 'J'},
		{0, 0, 0, 0},
	};
	int o;
	uint64_t v;
	while ((o = cli_parse_common(argc, argv, tier_help, NULL, lo)) > 1) {
		switch (o) {
		case 'H':
			if (cli_u64("--hot-score", optarg, &v))
				return 2;
			c->th.hot_min = v;
			break;
		case 'W':
			if (cli_u64("--warm-score", optarg, &v))
				return 2;
			c->th.warm_min = v;
			break;
		case 'b':
			if (cli_u64("--warm-bits", optarg, &v))
				return 2;
			if (v != 7 && v != 5)
				return cli_usage(tier_help, "--warm-bits is 7 or 5");
			c->warm_bits = (unsigned)v;
			break;
		case 'I':
			if (cli_u64("--io-mb-s", optarg, &v))
				return 2;
			c->io_bytes_s = v << 20;
			break;
		case 'e':
			if (cli_double("--max-error", optarg, max_error))
				return 2;
			break;
		case 'q':
			*quiet = 1;
			break;
		case 'J':
			*json = 1;
			break;
		}
	}
	if (o != 1)
		return cli_exit ? cli_exit : -1;
	if (c->th.warm_min > c->th.hot_min)
		return cli_usage(tier_help, "--warm-score above --hot-score");
	return 0;
}

static void codec_of(const tcz_tensor *t, char *buf, size_t n)
{
	if (t->codec == TCZ_CODEC_QUANT)
		snprintf(buf, n, "quant%u", t->bits);
	else if (t->codec == TCZ_CODEC_LOSSLESS)
		snprintf(buf, n, "lossless/z%u", t->level);
	else
		snprintf(buf, n, "%s", tcz_codec_name(t->codec));
}

static int tier_ls(tcz_store *s, const char *name, const tcz_tiering_cfg *c,
		   int json)
{
	tcz_snap *sn = NULL;
	tcz_model *m = NULL;
	tcz_access *a = NULL;
	int rc = tcz_snap_begin(s, &sn);
	if (rc == 0)
		rc = tcz_snap_model(sn, name, &m);
	if (rc == 0) {
		a = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *a);
		rc = a ? tcz_snap_access(sn, m->id, m->n_tensors, a) : -ENOMEM;
		if (rc == -EIO) {
			cli_err("tier ls: %s: some access statistics are damaged "
				"(shown as zero)",
				name);
			rc = 0;
		}
	}
	tcz_snap_end(sn);
	if (rc) {
		cli_err("tier ls: %s", rc == -ENOENT ? "no such model"
				       : tcz_store_errmsg()[0] ? tcz_store_errmsg()
							       : strerror(-rc));
		tcz_model_free(m);
		free(a);
		return EXIT_FAILURE;
	}
	uint64_t cnt[3] = {0}, bytes[3] = {0};
	json_t *arr = json ? json_array() : NULL;
	if (!json)
		printf("%-44s %-5s %-3s %10s %8s %-20s %-14s %12s %4s\n", "TENSOR",
		       "TIER", "PIN", "SCORE", "READS", "LAST ACCESS", "CODEC",
		       "STORED", "GEN");
	for (uint32_t t = 0; t < m->n_tensors; t++) {
		const tcz_tensor *tn = &m->tensors[t];
		tcz_tier tier = tcz_tiering_tier(&a[t], c);
		uint64_t score = tcz_tier_score(a[t].reads, a[t].last_access, c->now);
		cnt[tier]++;
		bytes[tier] += tn->stored_bytes;
		char co[32], la[32] = "never";
		codec_of(tn, co, sizeof co);
		if (a[t].last_access) {
			time_t lt = (time_t)a[t].last_access;
			struct tm tm;
			localtime_r(&lt, &tm);
			strftime(la, sizeof la, "%Y-%m-%d %H:%M:%S", &tm);
		}
		if (json) {
			json_array_append_new(
				arr,
				json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:s, s:I, "
					  "s:I}",
					  "name", tn->name, "tier", tcz_tier_name(tier),
					  "pinned", a[t].pinned >= 0, "score",
					  (json_int_t)score, "reads",
					  (json_int_t)a[t].reads, "bytes_read",
					  (json_int_t)a[t].bytes, "last_access",
					  (json_int_t)a[t].last_access, "codec", co,
					  "stored_bytes", (json_int_t)tn->stored_bytes,
					  "generation", (json_int_t)tn->gen));
		} else {
			printf("%-44.44s %-5s %-3s %10llu %8llu %-20s %-14s %12llu %4u\n",
			       tn->name, tcz_tier_name(tier),
			       a[t].pinned >= 0 ? "yes" : "-",
			       (unsigned long long)score,
			       (unsigned long long)a[t].reads, la, co,
			       (unsigned long long)tn->stored_bytes, tn->gen);
		}
	}
	if (json) {
		json_t *tot = json_object();
		for (int k = 0; k < 3; k++)
			json_object_set_new(tot, tcz_tier_name((tcz_tier)k),
					    json_pack("{s:I, s:I}", "tensors",
						      (json_int_t)cnt[k],
						      "stored_bytes",
						      (json_int_t)bytes[k]));
		json_t *o = json_pack("{s:s, s:s, s:f, s:I, s:o, s:o}", "model",
				      m->name, "policy",
				      m->policy == TCZ_POLICY_PRECISION ? "precision"
									: "cost",
				      "max_error", m->policy_max_error, "now",
				      (json_int_t)c->now, "tensors", arr, "totals",
				      tot);
		char *txt = json_dumps(o, JSON_INDENT(2));
		printf("%s\n", txt ? txt : "{}");
		free(txt);
		json_decref(o);
	} else {
		printf("\npolicy %s", m->policy == TCZ_POLICY_PRECISION ? "precision"
									: "cost");
		if (m->policy == TCZ_POLICY_PRECISION)
			printf(" (max error %g)", m->policy_max_error);
		printf("\n");
		for (int k = 0; k < 3; k++) {
			char b[32];
			cli_size(b, sizeof b, bytes[k]);
			printf("%-5s %6llu tensors, %s\n", tcz_tier_name((tcz_tier)k),
			       (unsigned long long)cnt[k], b);
		}
	}
	tcz_model_free(m);
	free(a);
	return 0;
}

/* The tensors a file of the tree holds, through the store. */
static int pin_store(const char *path, int32_t tier)
{
	tcz_store *s;
	if (cli_open_store(0, &s))
		return EXIT_FAILURE;
	tcz_mview *v = NULL;
	uint32_t f;
	int rc = tcz_view_open_path(s, path, &v, &f);
	uint32_t *idx = NULL, n = 0;
	if (rc == 0) {
		const tcz_model *m = tcz_mview_model(v);
		const tcz_vfile *vf = tcz_mview_file(v, f);
		idx = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *idx);
		if (!idx)
			rc = -ENOMEM;
		else if (vf->kind == TCZ_VF_NPY)
			idx[n++] = vf->index;
		else
			for (uint32_t e = 0; e < m->files[vf->index].n_extents; e++)
				if (m->files[vf->index].extents[e].kind ==
				    TCZ_EXT_TENSOR)
					idx[n++] = m->files[vf->index].extents[e].index;
		if (rc == 0 && n == 0) {
			cli_err("tier pin: %s holds no tensor", path);
			free(idx);
			tcz_mview_put(v);
			tcz_store_close(s);
			return EXIT_FAILURE;
		}
		if (rc == 0)
			rc = tcz_store_set_pin(s, m->id, idx, n, tier);
	}
	if (rc)
		cli_err("tier pin: %s", tcz_store_errmsg()[0] ? tcz_store_errmsg()
							     : strerror(-rc));
	else
		printf("%s: %u tensor(s) %s%s\n", path, n,
		       tier < 0 ? "unpinned" : "pinned ",
		       tier < 0 ? "" : tcz_tier_name((tcz_tier)tier));
	free(idx);
	tcz_mview_put(v);
	tcz_store_close(s);
	return rc ? EXIT_FAILURE : 0;
}

static void run_progress(void *ud, uint32_t done, uint32_t total, uint64_t bytes)
{
	const char *name = ud;
	fprintf(stdout, "\r%s: %u/%u tensors, %.1f MB processed ", name, done,
		total, bytes / 1e6);
	if (done == total)
		fputc('\n', stdout);
	fflush(stdout);
}

static int tier_run(tcz_store *s, const char *only, tcz_tiering_cfg *c,
		    int quiet)
{
	char **names = NULL;
	size_t n = 0;
	tcz_snap *sn = NULL;
	int rc = tcz_snap_begin(s, &sn);
	if (rc == 0)
		rc = tcz_snap_list(sn, &names, &n);
	tcz_snap_end(sn);
	if (rc) {
		cli_err("tier run: %s", tcz_store_errmsg());
		return EXIT_FAILURE;
	}
	int status = 0, found = !only;
	for (size_t i = 0; i < n; i++) {
		if (only && strcmp(names[i], only) != 0)
			continue;
		found = 1;
		tcz_tiering_report rep = {0};
		c->progress = !quiet && isatty(STDOUT_FILENO) ? run_progress : NULL;
		c->ud = names[i];
		int r = tcz_tiering_apply(s, names[i], NULL, c, &rep);
		if (r) {
			cli_err("tier run: %s: %s", names[i],
				tcz_store_errmsg()[0] ? tcz_store_errmsg()
						      : strerror(-r));
			status = EXIT_FAILURE;
			continue;
		}
		char a[32], b[32];
		cli_size(a, sizeof a, rep.before);
		cli_size(b, sizeof b, rep.after);
		printf("%s: %u re-encoded denser, %u re-quantized, %u kept; "
		       "%s -> %s\n",
		       names[i], rep.dense, rep.requant, rep.kept, a, b);
	}
	tcz_names_free(names, n);
	/* streams: precision tiering always (SPEC 7); a name may be a model,
	 * a stream or both (their namespaces are apart) */
	tcz_stream_info si;
	if (!only || tcz_stream_stat(s, only, &si) == 0) {
		found = 1;
		tcz_stream_tier_report rep = {0};
		int r = tcz_stream_tier_apply(s, only, c, &rep);
		if (r) {
			cli_err("tier run: streams: %s",
				tcz_store_errmsg()[0] ? tcz_store_errmsg()
						      : strerror(-r));
			status = EXIT_FAILURE;
		}
		if (rep.streams) {
			char a[32], b[32];
			cli_size(a, sizeof a, rep.before);
			cli_size(b, sizeof b, rep.after);
			printf("streams: %u looked at, %u cold, %u segments "
			       "re-encoded to 3 bits; %s -> %s\n",
			       rep.streams, rep.cold, rep.segments, a, b);
		}
	}
	if (!found) {
		cli_err("tier run: no model or stream named %s", only);
		status = EXIT_FAILURE;
	}
	/* the replaced encodings are released now that nothing here reads
	 * them (a mount still reading them keeps them until it lets go) */
	tcz_store_collect(s, NULL);
	return status;
}

int cli_tier(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(tier_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	tcz_tiering_cfg c;
	tcz_tiering_cfg_default(&c);
	int quiet = 0, json = 0;
	double max_error = -1;
	int rc = cfg_opts(argc - 1, argv + 1, &c, &quiet, &json, &max_error);
	if (rc)
		return rc < 0 ? 0 : rc;
	int left = argc - 1 - optind;
	char **args = argv + 1 + optind;
	if (!strcmp(sub, "ls")) {
		if (left != 1)
			return cli_usage(tier_help, "tier ls: expected one MODEL");
		tcz_store *s;
		if (cli_open_store(TCZ_STORE_RDONLY, &s))
			return EXIT_FAILURE;
		rc = tier_ls(s, args[0], &c, json);
		tcz_store_close(s);
		return rc;
	}
	if (!strcmp(sub, "pin")) {
		if (left != 2)
			return cli_usage(tier_help, "tier pin: expected PATH TIER");
		tcz_tier t;
		int32_t tier = -1;
		if (strcmp(args[1], "auto") != 0) {
			if (tcz_tier_parse(args[1], &t))
				return cli_usage(tier_help,
						 "tier pin: TIER is hot, warm, cold "
						 "or auto");
			tier = (int32_t)t;
		}
		/* a file in a mount: through its daemon (which saves it) */
		char probe[8];
		struct stat st;
		if (stat(args[0], &st) == 0 &&
		    getxattr(args[0], "user.tczfs.codec", probe, sizeof probe) >= 0) {
			if (setxattr(args[0], "user.tczfs.tier", args[1],
				     strlen(args[1]), 0) != 0) {
				cli_err("tier pin: %s: %s", args[0], strerror(errno));
				return EXIT_FAILURE;
			}
			printf("%s: pinned %s\n", args[0], args[1]);
			return 0;
		}
		return pin_store(args[0], tier);
	}
	if (!strcmp(sub, "policy")) {
		if (left != 2)
			return cli_usage(tier_help,
					 "tier policy: expected MODEL cost|precision");
		tcz_policy p;
		if (!strcmp(args[1], "cost"))
			p = TCZ_POLICY_COST;
		else if (!strcmp(args[1], "precision"))
			p = TCZ_POLICY_PRECISION;
		else
			return cli_usage(tier_help,
					 "tier policy: cost or precision");
		if (p == TCZ_POLICY_PRECISION && max_error < 0)
			return cli_usage(tier_help,
					 "tier policy precision needs --max-error E");
		tcz_store *s;
		if (cli_open_store(0, &s))
			return EXIT_FAILURE;
		rc = tcz_store_set_policy(s, args[0], p, max_error < 0 ? 0 : max_error);
		if (rc)
			cli_err("tier policy: %s", tcz_store_errmsg()[0]
							   ? tcz_store_errmsg()
							   : strerror(-rc));
		tcz_store_close(s);
		return rc ? EXIT_FAILURE : 0;
	}
	if (!strcmp(sub, "run")) {
		if (left > 1)
			return cli_usage(tier_help, "tier run: at most one MODEL");
		tcz_store *s;
		if (cli_open_store(0, &s))
			return EXIT_FAILURE;
		rc = tier_run(s, left ? args[0] : NULL, &c, quiet);
		tcz_store_close(s);
		return rc;
	}
	return cli_usage(tier_help, "tier: ls, pin, policy or run");
}
