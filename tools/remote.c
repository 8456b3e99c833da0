/* tczfs remote add|ls|rm|models|gc|drop, tczfs push, tczfs pull: the
 * command line of store/remote.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "store/remote.h"
#include "tools/cli.h"

static const char remote_help[] =
	"usage: tczfs remote add NAME URL | ls [--json] | rm NAME |\n"
	"       models NAME [--json] | gc NAME [--grace 1h] [--dry-run] |\n"
	"       drop NAME MODEL\n"
	"A remote is a Ceph RADOS pool other hosts share models through:\n"
	"  add NAME URL   URL = rados://POOL[?conf=PATH&id=CLIENT&namespace=NS]\n"
	"                 (Ceph's config and keyring from their usual places\n"
	"                 when not given; nothing is contacted)\n"
	"  ls             the remotes of this store\n"
	"  rm NAME        forget a remote (its objects stay in the pool)\n"
	"  models NAME    the models pushed to it\n"
	"  gc NAME        delete objects no model needs any more; never one\n"
	"                 a push in progress may need: --grace D keeps what a\n"
	"                 push touched within D (1h; 90s, 30m, 2d, or seconds)\n"
	"                 and whatever a running push touched; --dry-run lists\n"
	"  drop NAME MODEL  remove MODEL from the remote (gc frees its objects)\n"
	"  --timeout S    network timeout in seconds (10)\n"
	"See also tczfs push, tczfs pull.\n";

static const char push_help[] =
	"usage: tczfs push MODEL [--remote NAME] [--jobs N] [--timeout S] [--quiet]\n"
	"Uploads a local model to a remote: its chunks as objects named by the\n"
	"SHA-256 of their bytes (those already there are not sent again), then\n"
	"its manifest, then its index entry, so no host sees a partial model.\n"
	"An interrupted push can be run again and completes.\n"
	"  --remote NAME  the remote (default: the only one)\n"
	"  --jobs N       operations in flight (8)\n"
	"  --timeout S    network timeout in seconds (10)\n"
	"  --quiet        no progress bar\n";

static const char pull_help[] =
	"usage: tczfs pull MODEL [--remote NAME] [--jobs N] [--timeout S] [--quiet]\n"
	"Copies a model from a remote into the local store, every object\n"
	"checked against its name and by the store's own checks. The model\n"
	"appears when complete; on any failure the store is unchanged.\n"
	"  --remote NAME  the remote (default: the only one)\n"
	"  --jobs N       fetches in flight (8)\n"
	"  --timeout S    network timeout in seconds (10)\n"
	"  --quiet        no progress bar\n";

/* "90", "90s", "30m", "1h", "2d" -> seconds; -1 when malformed. */
static int parse_duration(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !(v >= 0) || v > 1e12)
		return -1;
	double mul = 1;
	if (*end) {
		switch (*end) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		default: return -1;
		}
		if (end[1])
			return -1;
	}
	*out = (uint64_t)(v * mul + 0.5);
	return 0;
}

static int parse_timeout(const char *s, unsigned *ms)
{
	double v;
	if (cli_double("--timeout", s, &v))
		return -1;
	if (v < 0.1 || v > 3600) {
		cli_err("--timeout: between 0.1 and 3600 seconds");
		return -1;
	}
	*ms = (unsigned)(v * 1000 + 0.5);
	return 0;
}

static const char *msg(int rc)
{
	const char *m = tcz_store_errmsg();
	return m[0] ? m : strerror(-rc);
}

/* Connects to remote name of store s (the only one when name is NULL). */
static int open_remote(tcz_store *s, const char *name, unsigned timeout_ms,
		       const char *cmd, tcz_remote **out, char **used)
{
	*out = NULL;
	char *url = NULL;
	int rc;
	if (!tcz_remote_available()) {
		tcz_remote_connect("rados://x", 0, out); /* sets the message */
		cli_err("%s: %s", cmd, tcz_store_errmsg());
		return -ENOTSUP;
	}
	if (name) {
		rc = tcz_store_remote_url(s, name, &url);
		if (rc) {
			cli_err("%s: %s", cmd, msg(rc));
			return rc;
		}
		*used = strdup(name);
	} else {
		tcz_remote_def *d;
		size_t n;
		rc = tcz_store_remotes(s, &d, &n);
		if (rc) {
			cli_err("%s: %s", cmd, msg(rc));
			return rc;
		}
		if (n != 1) {
			cli_err("%s: %s", cmd,
				n ? "this store has several remotes: give "
				    "--remote NAME"
				  : "this store has no remote (tczfs remote add "
				    "NAME URL)");
			tcz_remote_defs_free(d, n);
			return -EINVAL;
		}
		url = strdup(d[0].url);
		*used = strdup(d[0].name);
		tcz_remote_defs_free(d, n);
	}
	if (!url || !*used) {
		free(url);
		cli_err("%s: out of memory", cmd);
		return -ENOMEM;
	}
	rc = tcz_remote_connect(url, timeout_ms, out);
	free(url);
	if (rc)
		cli_err("%s: %s", cmd, msg(rc));
	return rc;
}

/* ---- progress ------------------------------------------------------------ */

static void progress(void *ud, const tcz_xfer_progress *p)
{
	const char *verb = ud;
	int width = 30, fill = p->objects_total
				       ? (int)(width * (double)p->objects /
					       p->objects_total)
				       : width;
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = 0;
	double mbs = p->seconds > 0 ? p->bytes / 1e6 / p->seconds : 0;
	double left = p->objects && p->objects < p->objects_total
			      ? p->seconds * (double)(p->objects_total - p->objects) /
					p->objects
			      : 0;
	printf("\r[%s] %llu/%llu objects  %.1f MB  %s %.1f MB  %.1f MB/s  "
	       "ETA %.0fs ",
	       bar, (unsigned long long)p->objects,
	       (unsigned long long)p->objects_total, p->bytes / 1e6, verb,
	       p->bytes_moved / 1e6, mbs, left);
	if (p->objects == p->objects_total)
		printf("\n");
	fflush(stdout);
}

/* ---- push / pull ---------------------------------------------------------- */

static int xfer_cmd(int argc, char **argv, int is_push)
{
	const char *help = is_push ? push_help : pull_help;
	const char *cmd = is_push ? "push" : "pull";
	const char *remote = NULL;
	unsigned timeout_ms = 0;
	int quiet = 0, c;
	uint64_t v;
	tcz_xfer_opts o = {0};
	static const struct option lo[] = {
		{"remote", required_argument, 0, 'r'},
		{"jobs", required_argument, 0, 'j'},
		{"timeout", required_argument, 0, 't'},
		{"quiet", no_argument, 0, 'q'},
		{0, 0, 0, 0},
	};
	while ((c = cli_parse_common(argc, argv, help, NULL, lo)) > 1) {
		switch (c) {
		case 'r':
			remote = optarg;
			break;
		case 'j':
			if (cli_u64("--jobs", optarg, &v))
				return 2;
			if (v < 1 || v > 256)
				return cli_usage(help, "--jobs must be 1..256");
			o.jobs = (unsigned)v;
			break;
		case 't':
			if (parse_timeout(optarg, &timeout_ms))
				return 2;
			break;
		case 'q':
			quiet = 1;
			break;
		}
	}
	if (c != 1)
		return cli_exit;
	if (argc - optind != 1)
		return cli_usage(help, "give one MODEL");
	const char *model = argv[optind];
	if (!tcz_model_name_valid(model)) {
		cli_err("%s: invalid model name '%s'", cmd, model);
		return EXIT_FAILURE;
	}
	if (!quiet && isatty(STDOUT_FILENO)) {
		o.progress = progress;
		o.ud = (void *)(is_push ? "sent" : "fetched");
	}
	tcz_store *s;
	/* a push only reads the local store */
	if (cli_open_store(is_push ? TCZ_STORE_RDONLY : 0, &s))
		return EXIT_FAILURE;
	tcz_remote *r = NULL;
	char *used = NULL;
	int rc = open_remote(s, remote, timeout_ms, cmd, &r, &used);
	if (rc) {
		free(used);
		tcz_store_close(s);
		return EXIT_FAILURE;
	}
	tcz_xfer_progress st;
	rc = is_push ? tcz_remote_push(s, r, model, &o, &st)
		     : tcz_remote_pull(s, r, model, &o, &st);
	if (rc) {
		if (o.progress)
			printf("\n");
		cli_err("%s %s: %s", cmd, model, msg(rc));
	} else {
		char a[32], b[32];
		cli_size(a, sizeof a, st.bytes);
		cli_size(b, sizeof b, st.bytes_moved);
		printf("%s %s %s %s: %llu objects (%s), %llu already there, "
		       "%s %s in %.2f s (%.1f MB/s)\n",
		       is_push ? "pushed" : "pulled", model,
		       is_push ? "to" : "from", used,
		       (unsigned long long)st.objects, a,
		       (unsigned long long)st.skipped, b,
		       is_push ? "sent" : "fetched", st.seconds,
		       st.seconds > 0 ? st.bytes_moved / 1e6 / st.seconds : 0.0);
	}
	free(used);
	tcz_remote_close(r);
	tcz_store_close(s);
	return rc ? EXIT_FAILURE : 0;
}

int cli_push(int argc, char **argv)
{
	return xfer_cmd(argc, argv, 1);
}

int cli_pull(int argc, char **argv)
{
	return xfer_cmd(argc, argv, 0);
}

/* ---- remote ---------------------------------------------------------------- */

static void gc_each(void *ud, const char *oid, uint64_t len)
{
	const int *dry = ud;
	printf("%s %s %llu\n", *dry ? "would delete" : "deleted", oid,
	       (unsigned long long)len);
}

static int remote_models(tcz_store *s, const char *name, unsigned tmo,
			 int js)
{
	tcz_remote *r;
	char *used = NULL;
	if (open_remote(s, name, tmo, "remote models", &r, &used)) {
		free(used);
		return EXIT_FAILURE;
	}
	free(used);
	tcz_rindex *ix;
	int rc = tcz_remote_index(r, &ix);
	tcz_remote_close(r);
	if (rc) {
		cli_err("remote models: %s", msg(rc));
		return EXIT_FAILURE;
	}
	json_t *arr = js ? json_array() : NULL;
	if (!js && ix->n)
		printf("%-32s %10s %10s %8s  %s\n", "MODEL", "SOURCE", "STORED",
		       "OBJECTS", "PUSHED");
	for (size_t i = 0; i < ix->n; i++) {
		const tcz_rindex_entry *e = &ix->e[i];
		if (js) {
			char hex[2 * TCZ_SHA256_LEN + 1];
			for (unsigned k = 0; k < TCZ_SHA256_LEN; k++)
				snprintf(hex + 2 * k, 3, "%02x", e->manifest_sha[k]);
			json_array_append_new(
				arr, json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}",
					       "name", e->name, "source_bytes",
					       (json_int_t)e->source_bytes,
					       "stored_bytes",
					       (json_int_t)e->stored_bytes, "objects",
					       (json_int_t)e->n_objects, "pushed_ms",
					       (json_int_t)e->push_time, "manifest",
					       hex));
			continue;
		}
		char a[32], b[32], t[32];
		time_t pt = (time_t)(e->push_time / 1000);
		struct tm tm;
		localtime_r(&pt, &tm);
		strftime(t, sizeof t, "%Y-%m-%d %H:%M:%S", &tm);
		cli_size(a, sizeof a, e->source_bytes);
		cli_size(b, sizeof b, e->stored_bytes);
		printf("%-32s %10s %10s %8u  %s\n", e->name, a, b, e->n_objects, t);
	}
	if (js) {
		json_t *o = json_pack("{s:I, s:o}", "generation",
				      (json_int_t)ix->generation, "models", arr);
		char *txt = json_dumps(o, JSON_INDENT(2));
		if (txt)
			printf("%s\n", txt);
		free(txt);
		json_decref(o);
	}
	tcz_rindex_free(ix);
	return 0;
}

int cli_remote(int argc, char **argv)
{
	int js = 0, dry = 0, c;
	uint64_t grace = 3600;
	unsigned tmo = 0;
	static const struct option lo[] = {
		{"json", no_argument, 0, 'J'},
		{"grace", required_argument, 0, 'g'},
		{"dry-run", no_argument, 0, 'n'},
		{"timeout", required_argument, 0, 't'},
		{0, 0, 0, 0},
	};
	while ((c = cli_parse_common(argc, argv, remote_help, NULL, lo)) > 1) {
		switch (c) {
		case 'J':
			js = 1;
			break;
		case 'g':
			if (parse_duration(optarg, &grace))
				return cli_usage(remote_help,
						 "--grace: a duration like 90s, "
						 "30m, 1h, 2d");
			break;
		case 'n':
			dry = 1;
			break;
		case 't':
			if (parse_timeout(optarg, &tmo))
				return 2;
			break;
		}
	}
	if (c != 1)
		return cli_exit;
	int nargs = argc - optind;
	if (nargs < 1)
		return cli_usage(remote_help, "missing subcommand");
	const char *sub = argv[optind];
	char **a = argv + optind + 1;
	nargs--;
	tcz_store *s;
	int rc;
	if (!strcmp(sub, "add")) {
		if (nargs != 2)
			return cli_usage(remote_help, "remote add NAME URL");
		/* mounts run from / : a relative conf= would not be found */
		tcz_remote_url u;
		char why[256];
		if (tcz_remote_url_parse(a[1], &u, why, sizeof why) == 0 &&
		    u.conf[0] && u.conf[0] != '/') {
			cli_err("remote add: conf=%s: give an absolute path (a "
				"mount reads it from /)",
				u.conf);
			return EXIT_FAILURE;
		}
		if (cli_open_store(0, &s))
			return EXIT_FAILURE;
		rc = tcz_store_remote_add(s, a[0], a[1]);
		tcz_store_close(s);
		if (rc) {
			cli_err("remote add: %s", msg(rc));
			return EXIT_FAILURE;
		}
		return 0;
	}
	if (!strcmp(sub, "rm")) {
		if (nargs != 1)
			return cli_usage(remote_help, "remote rm NAME");
		if (cli_open_store(0, &s))
			return EXIT_FAILURE;
		rc = tcz_store_remote_rm(s, a[0]);
		tcz_store_close(s);
		if (rc) {
			cli_err("remote rm: %s", msg(rc));
			return EXIT_FAILURE;
		}
		return 0;
	}
	if (!strcmp(sub, "ls")) {
		if (nargs != 0)
			return cli_usage(remote_help, "remote ls [--json]");
		if (cli_open_store(TCZ_STORE_RDONLY, &s))
			return EXIT_FAILURE;
		tcz_remote_def *d;
		size_t n;
		rc = tcz_store_remotes(s, &d, &n);
		tcz_store_close(s);
		if (rc) {
			cli_err("remote ls: %s", msg(rc));
			return EXIT_FAILURE;
		}
		json_t *arr = js ? json_array() : NULL;
		for (size_t i = 0; i < n; i++) {
			if (js)
				json_array_append_new(arr,
						      json_pack("{s:s, s:s}", "name",
								d[i].name, "url",
								d[i].url));
			else
				printf("%-16s %s\n", d[i].name, d[i].url);
		}
		if (js) {
			char *txt = json_dumps(arr, JSON_INDENT(2));
			if (txt)
				printf("%s\n", txt);
			free(txt);
			json_decref(arr);
		}
		tcz_remote_defs_free(d, n);
		return 0;
	}
	if (!strcmp(sub, "models")) {
		if (nargs > 1)
			return cli_usage(remote_help, "remote models NAME [--json]");
		if (cli_open_store(TCZ_STORE_RDONLY, &s))
			return EXIT_FAILURE;
		rc = remote_models(s, nargs ? a[0] : NULL, tmo, js);
		tcz_store_close(s);
		return rc;
	}
	if (!strcmp(sub, "gc") || !strcmp(sub, "drop")) {
		int is_gc = sub[0] == 'g';
		if (is_gc ? nargs > 1 : nargs != 2)
			return cli_usage(remote_help,
					 is_gc ? "remote gc NAME [--grace D] "
						 "[--dry-run]"
					       : "remote drop NAME MODEL");
		if (cli_open_store(TCZ_STORE_RDONLY, &s))
			return EXIT_FAILURE;
		tcz_remote *r;
		char *used = NULL;
		const char *cmd = is_gc ? "remote gc" : "remote drop";
		rc = open_remote(s, nargs ? a[0] : NULL, tmo, cmd, &r, &used);
		tcz_store_close(s);
		free(used);
		if (rc)
			return EXIT_FAILURE;
		if (!is_gc) {
			rc = tcz_remote_drop(r, a[1]);
			tcz_remote_close(r);
			if (rc) {
				cli_err("remote drop: %s", msg(rc));
				return EXIT_FAILURE;
			}
			return 0;
		}
		tcz_gc_opts o = {grace, dry, gc_each, &dry};
		tcz_gc_stats st;
		rc = tcz_remote_gc(r, &o, &st);
		tcz_remote_close(r);
		if (rc) {
			cli_err("remote gc: %s", msg(rc));
			return EXIT_FAILURE;
		}
		char b[32];
		cli_size(b, sizeof b, st.deleted_bytes);
		printf("%s: %llu chunk objects, %llu referenced, %llu %s (%s), "
		       "%llu kept for pushes in progress or within grace, %llu "
		       "touched meanwhile; %llu replaced or dropped manifests %s; "
		       "%llu leases (%llu dead)\n",
		       dry ? "gc dry run" : "gc", (unsigned long long)st.objects,
		       (unsigned long long)st.referenced,
		       (unsigned long long)st.deleted,
		       dry ? "would be deleted" : "deleted", b,
		       (unsigned long long)st.young, (unsigned long long)st.raced,
		       (unsigned long long)st.manifests_deleted,
		       dry ? "would be deleted" : "deleted",
		       (unsigned long long)st.leases,
		       (unsigned long long)st.dead_leases);
		return 0;
	}
	return cli_usage(remote_help, "unknown remote subcommand");
}
