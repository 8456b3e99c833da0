/* tczfs: the command line. A thin layer over store/ (and fs/ for mount):
 * option parsing, messages, exit codes. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "store/import.h"
#include "store/store.h"
#include "tools/cli.h"

const char *cli_store_dir; /* --store, else $TCZFS_STORE / default */

void cli_err(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("tczfs: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* The store directory: --store, $TCZFS_STORE, XDG default. */
static char *store_dir(void)
{
	if (cli_store_dir)
		return strdup(cli_store_dir);
	char *d = tcz_store_default_dir();
	if (!d)
		cli_err("no store directory: give --store DIR or set "
			"TCZFS_STORE");
	return d;
}

int cli_open_store(unsigned flags, tcz_store **s)
{
	char *dir = store_dir();
	if (!dir)
		return EXIT_FAILURE;
	int rc = tcz_store_open(dir, flags, s);
	if (rc) {
		const char *m = tcz_store_errmsg();
		if (m[0])
			cli_err("%s", m);
		else
			cli_err("cannot open store %s: %s", dir, strerror(-rc));
	}
	free(dir);
	return rc ? EXIT_FAILURE : 0;
}

void cli_size(char *buf, size_t n, uint64_t bytes)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int i = 0;
	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, n, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, n, "%.1f %s", v, u[i]);
}

/* Parses a whole non-negative number, or fails with a message. */
int cli_u64(const char *opt, const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-') {
		cli_err("%s: '%s' is not a non-negative integer", opt, s);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_double(const char *opt, const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0)) {
		cli_err("%s: '%s' is not a non-negative number", opt, s);
		return -1;
	}
	*out = v;
	return 0;
}

/* ---- init --------------------------------------------------------------- */

static const char init_help[] =
	"usage: tczfs init [--store DIR]\n"
	"Creates an empty store (directory 0700, files 0600). Running it on an\n"
	"existing store only checks that it can be opened.\n";

static int cmd_init(int argc, char **argv)
{
	if (cli_parse_common(argc, argv, init_help, NULL, NULL) != 1)
		return cli_exit;
	if (optind != argc)
		return cli_usage(init_help, "unexpected argument");
	char *dir = store_dir();
	if (!dir)
		return EXIT_FAILURE;
	struct stat st;
	char path[4200];
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	int existed = stat(path, &st) == 0;
	tcz_store *s;
	int rc = tcz_store_open(dir, TCZ_STORE_CREATE, &s);
	if (rc) {
		cli_err("%s", tcz_store_errmsg()[0] ? tcz_store_errmsg()
						    : strerror(-rc));
		free(dir);
		return EXIT_FAILURE;
	}
	tcz_store_close(s);
	printf("%s store at %s\n", existed ? "existing" : "initialised", dir);
	free(dir);
	return 0;
}

/* ---- import ------------------------------------------------------------- */

static const char import_help[] =
	"usage: tczfs import SRC... [options]\n"
	"Imports a .safetensors file, a model directory (*.safetensors shards,\n"
	"model.safetensors.index.json, config and tokenizer files) or .npy\n"
	"files as one model. The store is created when missing.\n"
	"  --name NAME        model name (default: from SRC)\n"
	"  --profile lossless exact bytes back (the default)\n"
	"  --max-error E      per tensor the smallest of TT, quantization at\n"
	"                     8..3 bits and lossless whose relative error <= E\n"
	"  --bits B           groupwise quantization with B bits (3-8)\n"
	"  --group G          quantization sub-block length (default 16; 32 at 8 bits)\n"
	"  --tt               tensor-train for the selected tensors\n"
	"  --eps E            TT relative error target (default 0.01)\n"
	"  --max-rank R       TT rank cap (default none)\n"
	"  --include RE       only tensors matching RE (POSIX ERE) may be lossy\n"
	"  --exclude RE       tensors matching RE stay lossless\n"
	"  --min-size N       tensors under N values stay lossless (4096)\n"
	"  --jobs N           encoding threads (default: CPUs)\n"
	"  --level L          zstd level of lossless chunks (default 3)\n"
	"  --chunk-kib K      lossless chunk size, 16..1024 KiB (default 128):\n"
	"                     a random read decodes one chunk\n"
	"  --quiet            no progress bar\n"
	"  --store DIR        the store (default $TCZFS_STORE or\n"
	"                     ~/.local/share/tczfs)\n"
	"Norms, biases and 1-D tensors stay lossless unless --include names\n"
	"them. Interrupting an import leaves no partial model.\n";

static void import_note(void *ud, const char *msg)
{
	int *shown = ud;
	if (++*shown <= 20)
		fprintf(stderr, "tczfs: import: note: %s\n", msg);
}

static void on_signal(int sig)
{
	tcz_import_cancel();
	signal(sig, SIG_DFL); /* a second ^C kills at once */
}

static int cmd_import(int argc, char **argv)
{
	tcz_import_opts o;
	tcz_import_opts_default(&o);
	int quiet = 0, set = 0;
	uint64_t v;
	static const struct option lo[] = {
		{"name", required_argument, 0, 'n'},
		{"profile", required_argument, 0, 'p'},
		{"max-error", required_argument, 0, 'e'},
		{"bits", required_argument, 0, 'b'},
		{"group", required_argument, 0, 'g'},
		{"tt", no_argument, 0, 't'},
		{"eps", required_argument, 0, 'E'},
		{"max-rank", required_argument, 0, 'r'},
		{"include", required_argument, 0, 'i'},
		{"exclude", required_argument, 0, 'x'},
		{"min-size", required_argument, 0, 'm'},
		{"jobs", required_argument, 0, 'j'},
		{"level", required_argument, 0, 'l'},
		{"chunk-kib", required_argument, 0, 'K'},
		{"quiet", no_argument, 0, 'q'},
		{0, 0, 0, 0},
	};
	int c;
	while ((c = cli_parse_common(argc, argv, import_help, NULL, lo)) > 1) {
		switch (c) {
		case 'n':
			o.name = optarg;
			break;
		case 'p':
			if (strcmp(optarg, "lossless") != 0)
				return cli_usage(import_help,
						 "--profile: only 'lossless'; use "
						 "--max-error, --bits or --tt");
			o.profile = TCZ_PROFILE_LOSSLESS;
			set++;
			break;
		case 'e':
			if (cli_double("--max-error", optarg, &o.max_error))
				return 2;
			o.profile = TCZ_PROFILE_MAX_ERROR;
			set++;
			break;
		case 'b':
			if (cli_u64("--bits", optarg, &v))
				return 2;
			if (v < 3 || v > 8)
				return cli_usage(import_help,
						 "--bits must be between 3 and 8");
			o.bits = (unsigned)v;
			o.profile = TCZ_PROFILE_BITS;
			set++;
			break;
		case 'g':
			if (cli_u64("--group", optarg, &v))
				return 2;
			if (v < 1 || v > 65536)
				return cli_usage(import_help,
						 "--group must be 1..65536");
			o.group_len = (uint32_t)v;
			break;
		case 't':
			o.profile = TCZ_PROFILE_TT;
			set++;
			break;
		case 'E':
			if (cli_double("--eps", optarg, &o.tt_eps))
				return 2;
			break;
		case 'r':
			if (cli_u64("--max-rank", optarg, &v))
				return 2;
			if (v > UINT32_MAX)
				return cli_usage(import_help, "--max-rank too large");
			o.tt_max_rank = (uint32_t)v;
			break;
		case 'i':
			o.include = optarg;
			break;
		case 'x':
			o.exclude = optarg;
			break;
		case 'm':
			if (cli_u64("--min-size", optarg, &o.min_size))
				return 2;
			break;
		case 'j':
			if (cli_u64("--jobs", optarg, &v))
				return 2;
			if (v < 1 || v > 256)
				return cli_usage(import_help, "--jobs must be 1..256");
			o.jobs = (unsigned)v;
			break;
		case 'l':
			if (cli_u64("--level", optarg, &v))
				return 2;
			if (v < 1 || v > 22)
				return cli_usage(import_help, "--level must be 1..22");
			o.level = (int)v;
			break;
		case 'K':
			if (cli_u64("--chunk-kib", optarg, &v))
				return 2;
			o.chunk_kib = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
			break;
		case 'q':
			quiet = 1;
			break;
		}
	}
	if (c != 1)
		return cli_exit;
	if (set > 1)
		return cli_usage(import_help,
				 "choose one of --profile, --max-error, --bits, "
				 "--tt");
	if (optind >= argc)
		return cli_usage(import_help, "missing SRC");
	o.progress = !quiet && isatty(STDOUT_FILENO);
	int notes_shown = 0;
	o.note = import_note;
	o.note_ud = &notes_shown;

	char *dir = store_dir();
	if (!dir)
		return EXIT_FAILURE;
	tcz_store *s;
	int rc = tcz_store_open(dir, 0, &s);
	if (rc == -ENOENT) {
		rc = tcz_store_open(dir, TCZ_STORE_CREATE, &s);
		if (rc == 0)
			fprintf(stderr, "tczfs: created store %s\n", dir);
	}
	if (rc) {
		cli_err("%s", tcz_store_errmsg()[0] ? tcz_store_errmsg()
						    : strerror(-rc));
		free(dir);
		return EXIT_FAILURE;
	}
	free(dir);

	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	tcz_import_result res;
	char err[1024];
	rc = tcz_import(s, (const char *const *)argv + optind,
			(size_t)(argc - optind), &o, &res, err, sizeof err);
	tcz_store_close(s);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (rc) {
		cli_err("import: %s", err[0] ? err : strerror(-rc));
		return rc == -EINTR ? 130 : EXIT_FAILURE;
	}
	if (res.notes > 20)
		fprintf(stderr, "tczfs: import: note: %u more like these\n",
			res.notes - 20);
	char a[32], b[32];
	cli_size(a, sizeof a, res.source_bytes);
	cli_size(b, sizeof b, res.stored_bytes);
	printf("imported %s: %u tensors (%u lossy), %u files, %s -> %s "
	       "(%.3fx)",
	       res.name, res.tensors, res.lossy_tensors, res.files, a, b,
	       res.stored_bytes ? (double)res.source_bytes / res.stored_bytes
				: 0.0);
	if (res.lossy_tensors)
		printf(", max relative error %.3g", res.max_rel_error);
	printf(", %.2f s (%.0f MB/s)\n", res.seconds,
	       res.seconds > 0 ? res.source_bytes / 1e6 / res.seconds : 0.0);
	return 0;
}

/* ---- ls ------------------------------------------------------------------ */

static const char ls_help[] =
	"usage: tczfs ls [-l] [--json] [--store DIR]\n"
	"Lists the models in the store; -l adds sizes, ratio and import time.\n";

static int cmd_ls(int argc, char **argv)
{
	int lng = 0, js = 0, c;
	static const struct option lo[] = {
		{"long", no_argument, 0, 'l'},
		{"json", no_argument, 0, 'J'},
		{0, 0, 0, 0},
	};
	while ((c = cli_parse_common(argc, argv, ls_help, "l", lo)) > 1)
		c == 'l' ? (lng = 1) : (js = 1);
	if (c != 1)
		return cli_exit;
	if (optind != argc)
		return cli_usage(ls_help, "unexpected argument");
	tcz_store *s;
	if (cli_open_store(TCZ_STORE_RDONLY, &s))
		return EXIT_FAILURE;
	tcz_snap *sn = NULL;
	char **names = NULL;
	size_t n = 0;
	int rc = tcz_snap_begin(s, &sn);
	if (rc == 0)
		rc = tcz_snap_list(sn, &names, &n);
	json_t *arr = js ? json_array() : NULL;
	if (rc == 0 && lng && !js)
		printf("%-32s %8s %10s %10s %8s %-8s %s\n", "MODEL", "TENSORS",
		       "SOURCE", "STORED", "RATIO", "KIND", "IMPORTED");
	int bad = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!lng && !js) {
			printf("%s\n", names[i]);
			continue;
		}
		tcz_model *m;
		int r = tcz_snap_model(sn, names[i], &m);
		if (r == -ENOMEM) {
			rc = r;
			break;
		}
		if (r) {
			/* the others are listed; this one says what is wrong */
			cli_err("ls: %s", tcz_store_errmsg());
			bad = 1;
			continue;
		}
		double ratio = m->stored_bytes
				       ? (double)m->source_bytes / m->stored_bytes
				       : 0;
		const char *kind = m->flags & TCZ_MODEL_LOSSY ? "lossy"
							      : "lossless";
		if (js) {
			json_array_append_new(
				arr,
				json_pack("{s:s, s:I, s:I, s:I, s:f, s:s, s:I}",
					  "name", m->name, "tensors",
					  (json_int_t)m->n_tensors, "source_bytes",
					  (json_int_t)m->source_bytes,
					  "stored_bytes",
					  (json_int_t)m->stored_bytes, "ratio",
					  ratio, "kind", kind, "imported",
					  (json_int_t)m->import_time));
		} else {
			char a[32], b[32], t[32];
			time_t it = (time_t)m->import_time;
			struct tm tm;
			localtime_r(&it, &tm);
			strftime(t, sizeof t, "%Y-%m-%d %H:%M", &tm);
			cli_size(a, sizeof a, m->source_bytes);
			cli_size(b, sizeof b, m->stored_bytes);
			printf("%-32s %8u %10s %10s %7.3fx %-8s %s\n", m->name,
			       m->n_tensors, a, b, ratio, kind, t);
		}
		tcz_model_free(m);
	}
	if (js && rc == 0 && !bad) {
		char *txt = json_dumps(arr, JSON_INDENT(2));
		if (txt)
			printf("%s\n", txt);
		free(txt);
	}
	json_decref(arr);
	tcz_names_free(names, n);
	tcz_snap_end(sn);
	tcz_store_close(s);
	if (rc)
		cli_err("ls: %s", tcz_store_errmsg()[0] ? tcz_store_errmsg()
						       : strerror(-rc));
	return rc || bad ? EXIT_FAILURE : 0;
}

/* ---- rm ------------------------------------------------------------------ */

static const char rm_help[] =
	"usage: tczfs rm MODEL... [--store DIR]\n"
	"Removes models; chunks no other model shares are freed. A mounted\n"
	"filesystem drops the model at once; files already open keep reading.\n";

static int cmd_rm(int argc, char **argv)
{
	int c = cli_parse_common(argc, argv, rm_help, NULL, NULL);
	if (c != 1)
		return cli_exit;
	if (optind >= argc)
		return cli_usage(rm_help, "missing MODEL");
	tcz_store *s;
	if (cli_open_store(0, &s))
		return EXIT_FAILURE;
	int status = 0;
	for (int i = optind; i < argc; i++) {
		int rc = tcz_store_remove(s, argv[i]);
		if (rc) {
			cli_err("rm: %s", tcz_store_errmsg()[0] ? tcz_store_errmsg()
							       : strerror(-rc));
			status = EXIT_FAILURE;
		}
	}
	tcz_store_close(s);
	return status;
}

/* ---- verify -------------------------------------------------------------- */

static const char verify_help[] =
	"usage: tczfs verify [MODEL] [--store DIR]\n"
	"Decodes every chunk of MODEL (or of all models), checks checksums and\n"
	"reference counts, and prints one line per problem. Without MODEL it\n"
	"also checks every stream: records, index, segments and totals. Exit\n"
	"status 1 when anything is wrong.\n";

static void verify_cb(void *ud, const char *model, const char *what,
		      const char *problem)
{
	(void)ud;
	printf("BAD %s: %s: %s\n", model, what, problem);
}

static int cmd_verify(int argc, char **argv)
{
	int c = cli_parse_common(argc, argv, verify_help, NULL, NULL);
	if (c != 1)
		return cli_exit;
	if (argc - optind > 1)
		return cli_usage(verify_help, "at most one MODEL");
	tcz_store *s;
	if (cli_open_store(TCZ_STORE_RDONLY, &s))
		return EXIT_FAILURE;
	tcz_verify_report rep;
	const char *name = optind < argc ? argv[optind] : NULL;
	int rc = tcz_store_verify(s, name, verify_cb, NULL, &rep);
	tcz_store_close(s);
	if (rc && rc != -EIO) {
		cli_err("verify: %s", tcz_store_errmsg()[0] ? tcz_store_errmsg()
							   : strerror(-rc));
		return EXIT_FAILURE;
	}
	char b[32];
	cli_size(b, sizeof b, rep.bytes);
	printf("verified %llu models, %llu tensors, %llu chunks (%s)",
	       (unsigned long long)rep.models, (unsigned long long)rep.tensors,
	       (unsigned long long)rep.chunks, b);
	if (rep.streams)
		printf(", %llu streams (%llu segments)",
		       (unsigned long long)rep.streams,
		       (unsigned long long)rep.segments);
	printf(": %s\n", rep.bad ? "PROBLEMS FOUND" : "ok");
	if (rep.bad)
		printf("%llu problem(s)\n", (unsigned long long)rep.bad);
	return rep.bad ? EXIT_FAILURE : 0;
}

/* ---- dispatch ------------------------------------------------------------- */

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *what;
} cmds[] = {
	{"init", cmd_init, "create a store"},
	{"import", cmd_import, "import a model (safetensors, directory, .npy)"},
	{"ls", cmd_ls, "list models"},
	{"info", cli_info, "show a model's tensors, codecs and errors"},
	{"export", cli_export, "write a model's files back out"},
	{"cat", cli_cat, "write a file of the tree to stdout, no mount"},
	{"rm", cmd_rm, "remove models"},
	{"verify", cmd_verify, "check every stored value"},
	{"mount", cli_mount, "mount the store: models as directories"},
	{"umount", cli_umount, "unmount"},
	{"stat", cli_stat, "tier, accesses, codec, ratio, error of a file"},
	{"tier", cli_tier, "tiers of a model's tensors: ls, pin, policy, run"},
	{"asic", cli_asic, "device images of a model; device profiles; check"},
	{"stream", cli_stream,
	 "temporal tensor streams: create, push, cat, ls, info, rm, tier"},
	{"remote", cli_remote, "remotes (Ceph RADOS): add, ls, rm, models, gc"},
	{"push", cli_push, "upload a model to a remote"},
	{"pull", cli_pull, "copy a model from a remote into the store"},
};

static void main_help(FILE *f)
{
	fprintf(f, "usage: tczfs [--store DIR] COMMAND [ARGS]\n"
		   "tczfs stores neural-network models compressed.\n\n"
		   "commands:\n");
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].what);
	fprintf(f, "\n'tczfs COMMAND --help' describes each. The store is "
		   "--store DIR, else\n$TCZFS_STORE, else "
		   "${XDG_DATA_HOME:-~/.local/share}/tczfs.\n"
		   "'tczfs STORE MNT -o OPTS' (also mount.fuse.tczfs) is the form\n"
		   "mount(8) uses for fstab lines of type fuse.tczfs; add --help.\n"
		   "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

int main(int argc, char **argv)
{
	/* mount(8) runs /sbin/mount.fuse.tczfs (or mount.fuse runs
	 * 'tczfs STORE MNT -o OPTS') for an fstab line of type fuse.tczfs */
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (!strcmp(base, "mount.fuse.tczfs") || !strcmp(base, "mount.tczfs"))
		return cli_mount_helper(argc - 1, argv + 1);
	if (argc >= 3 && argv[1][0] != '-' && strchr(argv[1], '/'))
		return cli_mount_helper(argc - 1, argv + 1);
	int i = 1;
	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			main_help(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--version")) {
			printf("tczfs %s\n", TCZFS_VERSION);
			return 0;
		}
		if (!strcmp(argv[i], "--store") && i + 1 < argc) {
			cli_store_dir = argv[i + 1];
			i += 2;
			continue;
		}
		if (!strncmp(argv[i], "--store=", 8)) {
			cli_store_dir = argv[i] + 8;
			i++;
			continue;
		}
		cli_err("unknown option '%s' (see tczfs --help)", argv[i]);
		return 2;
	}
	if (i >= argc) {
		main_help(stderr);
		return 2;
	}
	for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
		if (!strcmp(argv[i], cmds[k].name))
			return cmds[k].fn(argc - i, argv + i);
	cli_err("unknown command '%s' (see tczfs --help)", argv[i]);
	return 2;
}
