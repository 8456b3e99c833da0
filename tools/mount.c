/* tczfs mount | umount | stat */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>

#include <jansson.h>

#include "fs/fs.h"
#include "tools/cli.h"

static const char mount_help[] =
	"usage: tczfs mount MNT [--store DIR] [-f] [--cache-mb N] [-o OPTS]\n"
	"                       [--log FILE] [--stats-interval S] [--threads N]\n"
	"                       [--hot-mb N] [--hot-score N] [--warm-score N]\n"
	"                       [--no-push]\n"
	"                       [--tier-interval S] [--tier-io-mb-s N]\n"
	"                       [--remote NAME] [--disk-cache-gb G]\n"
	"                       [--remote-timeout S]\n"
	"Mounts the store at MNT (an empty directory): every model becomes\n"
	"MNT/<model>/ with model.safetensors (byte-identical for lossless\n"
	"models), its other files and layers/<tensor>.npy (BF16 shown as f32).\n"
	"  -f                 stay in the foreground, log to stderr\n"
	"  --cache-mb N       decoded-chunk cache (default 256)\n"
	"  -o OPTS            more FUSE mount options (e.g. allow_other)\n"
	"  --log FILE         append the daemon's log to FILE (default syslog)\n"
	"  --stats-interval S save access statistics every S seconds (30)\n"
	"  --threads N        FUSE worker threads at most (default 10)\n"
	"  --hot-mb N         hot tensors kept decoded, part of the cache\n"
	"                     (default a quarter of it)\n"
	"  --no-push          a read of a hot file that reaches the daemon does\n"
	"                     not push the file's next MiBs into the kernel's\n"
	"                     page cache (pushing is the default)\n"
	"  --hot-score N, --warm-score N  tier thresholds (512, 64)\n"
	"  --tier-interval S  background tiering every S seconds (600; 0: off):\n"
	"                     cold tensors re-encoded denser (or re-quantized\n"
	"                     for models with 'tczfs tier policy ... precision')\n"
	"  --tier-io-mb-s N   its throttle (32)\n"
	"  --remote NAME      list and serve that remote's models too (see\n"
	"                     'tczfs remote'); a local model of the same name\n"
	"                     wins; new pushes show within seconds\n"
	"  --disk-cache-gb G  the remote's chunks kept in the store, at most\n"
	"                     (default 8; least recently used go first)\n"
	"  --remote-timeout S a read of the remote fails after S seconds\n"
	"                     without an answer (default 5)\n"
	"Unmount with 'tczfs umount MNT'.\n";

int cli_mount(int argc, char **argv)
{
	tcz_fs_opts o = {0};
	uint64_t v, cache_mb = 256, hot_mb = 0;
	int hot_set = 0;
	o.tier_interval = 600;
	o.tier_io_bytes_s = 32u << 20;
	o.disk_cache_bytes = 8ull << 30;
	double gb;
	int c;
	static const struct option lo[] = {
		{"foreground", no_argument, 0, 'f'},
		{"no-push", no_argument, 0, 'P' + 256},
		{"cache-mb", required_argument, 0, 'c'},
		{"log", required_argument, 0, 'L'},
		{"stats-interval", required_argument, 0, 'S'},
		{"threads", required_argument, 0, 'T'},
		{"hot-mb", required_argument, 0, 'H'},
		{"hot-score", required_argument, 0, 'h' + 256},
		{"warm-score", required_argument, 0, 'w' + 256},
		{"tier-interval", required_argument, 0, 'i' + 256},
		{"tier-io-mb-s", required_argument, 0, 'I'},
		{"remote", required_argument, 0, 'r' + 256},
		{"disk-cache-gb", required_argument, 0, 'd' + 256},
		{"remote-timeout", required_argument, 0, 't' + 256},
		{0, 0, 0, 0},
	};
	char opts[2048] = "";
	while ((c = cli_parse_common(argc, argv, mount_help, "fo:", lo)) > 1) {
		switch (c) {
		case 'f':
			o.foreground = 1;
			break;
		case 'c':
			if (cli_u64("--cache-mb", optarg, &cache_mb))
				return 2;
			if (cache_mb < 4 || cache_mb > (1u << 20))
				return cli_usage(mount_help,
						 "--cache-mb must be 4..1048576");
			break;
		case 'o':
			if (strlen(opts) + strlen(optarg) + 2 > sizeof opts)
				return cli_usage(mount_help, "-o: too long");
			if (opts[0])
				strcat(opts, ",");
			strcat(opts, optarg);
			break;
		case 'L':
			o.log_path = optarg;
			break;
		case 'S':
			if (cli_u64("--stats-interval", optarg, &v))
				return 2;
			if (v < 1 || v > 86400)
				return cli_usage(mount_help,
						 "--stats-interval must be 1..86400");
			o.stats_interval = (unsigned)v;
			break;
		case 'T':
			if (cli_u64("--threads", optarg, &v))
				return 2;
			if (v < 1 || v > 256)
				return cli_usage(mount_help,
						 "--threads must be 1..256");
			o.threads = (unsigned)v;
			break;
		case 'P' + 256:
			o.no_push = 1;
			break;
		case 'H':
			if (cli_u64("--hot-mb", optarg, &v))
				return 2;
			hot_mb = v;
			hot_set = 1;
			break;
		case 'h' + 256:
			if (cli_u64("--hot-score", optarg, &o.hot_score))
				return 2;
			break;
		case 'w' + 256:
			if (cli_u64("--warm-score", optarg, &o.warm_score))
				return 2;
			break;
		case 'i' + 256:
			if (cli_u64("--tier-interval", optarg, &v))
				return 2;
			if (v > 86400 * 30)
				return cli_usage(mount_help,
						 "--tier-interval too large");
			o.tier_interval = (unsigned)v;
			break;
		case 'I':
			if (cli_u64("--tier-io-mb-s", optarg, &v))
				return 2;
			o.tier_io_bytes_s = v << 20;
			break;
		case 'r' + 256:
			o.remote = optarg;
			break;
		case 'd' + 256:
			if (cli_double("--disk-cache-gb", optarg, &gb))
				return 2;
			if (!(gb >= 0 && gb <= 1 << 20))
				return cli_usage(mount_help,
						 "--disk-cache-gb must be 0..1048576");
			o.disk_cache_bytes = (uint64_t)(gb * (double)(1ull << 30));
			break;
		case 't' + 256:
			if (cli_u64("--remote-timeout", optarg, &v))
				return 2;
			if (v < 1 || v > 3600)
				return cli_usage(mount_help,
						 "--remote-timeout must be 1..3600");
			o.remote_timeout_ms = (unsigned)v * 1000;
			break;
		}
	}
	if (c != 1)
		return cli_exit;
	if (argc - optind != 1)
		return cli_usage(mount_help, "expected one MNT");
	/* the daemon changes directory to / : absolute paths only */
	char *dir = cli_store_dir ? realpath(cli_store_dir, NULL) : NULL;
	if (!dir) {
		char *d = cli_store_dir ? strdup(cli_store_dir)
					: tcz_store_default_dir();
		if (!d) {
			cli_err("no store directory: give --store DIR");
			return EXIT_FAILURE;
		}
		dir = realpath(d, NULL);
		if (!dir) {
			cli_err("no store at %s (run 'tczfs init')", d);
			free(d);
			return EXIT_FAILURE;
		}
		free(d);
	}
	char *mnt = realpath(argv[optind], NULL);
	if (!mnt) {
		cli_err("mount point %s: %s", argv[optind], strerror(errno));
		free(dir);
		return EXIT_FAILURE;
	}
	char *log = o.log_path ? realpath(o.log_path, NULL) : NULL;
	if (o.log_path && !log) {
		/* a log file that does not exist yet: resolve its directory */
		FILE *f = fopen(o.log_path, "a");
		if (f)
			fclose(f);
		log = realpath(o.log_path, NULL);
	}
	if (o.log_path)
		o.log_path = log;
	o.store_dir = dir;
	o.mountpoint = mnt;
	o.cache_bytes = (size_t)cache_mb << 20;
	if (hot_set && hot_mb > cache_mb / 2)
		return cli_usage(mount_help,
				 "--hot-mb is part of --cache-mb: at most half of it");
	o.hot_bytes = hot_set ? (size_t)hot_mb << 20 : o.cache_bytes / 4;
	if (o.hot_score && o.warm_score > o.hot_score)
		return cli_usage(mount_help, "--warm-score above --hot-score");
	o.fuse_opts = opts;
	char err[1024] = "";
	int rc = tcz_fs_mount(&o, err, sizeof err);
	if (rc)
		cli_err("mount: %s", err[0] ? err : strerror(-rc));
	free(dir);
	free(mnt);
	free(log);
	return rc ? EXIT_FAILURE : 0;
}

/* The form mount(8) uses through mount.fuse (an fstab line of type
 * fuse.tczfs) or /sbin/mount.fuse.tczfs: SOURCE MNT [-o OPTS] [-n -s -v],
 * SOURCE being the store. Our options come as key=value in OPTS; the
 * generic ones go to FUSE, those only mount(8) reads are dropped. */
static const char helper_help[] =
	"usage: tczfs STORE MNT [-o OPTS]   (also mount.fuse.tczfs)\n"
	"The form mount(8) uses for an fstab line such as\n"
	"  /var/lib/tczfs /mnt/models fuse.tczfs ro,remote=fleet,cache_mb=512 0 0\n"
	"OPTS: cache_mb=N, hot_mb=N, remote=NAME, disk_cache_gb=G, log=FILE,\n"
	"remote_timeout=S, "
	"threads=N, stats_interval=S, tier_interval=S, tier_io_mb_s=N, and the\n"
	"FUSE and mount options (ro, rw, allow_other, default_permissions,\n"
	"noatime, nodev, nosuid, ...).\n";

static int is_mount_only(const char *o)
{
	static const char *const only[] = {
		"defaults", "auto", "noauto", "user", "nouser", "users",
		"owner", "_netdev", "nofail", "loop", "sw", "group",
	};
	for (size_t i = 0; i < sizeof only / sizeof only[0]; i++)
		if (strcmp(o, only[i]) == 0)
			return 1;
	return strncmp(o, "x-", 2) == 0 || strncmp(o, "comment=", 8) == 0;
}

static int is_fuse_opt(const char *o)
{
	static const char *const fuse[] = {
		"ro", "rw", "allow_other", "allow_root", "default_permissions",
		"atime", "noatime", "relatime", "norelatime", "strictatime",
		"nodiratime", "dev", "nodev", "suid", "nosuid", "exec",
		"noexec", "sync", "async", "dirsync", "auto_unmount",
	};
	for (size_t i = 0; i < sizeof fuse / sizeof fuse[0]; i++)
		if (strcmp(o, fuse[i]) == 0)
			return 1;
	return strncmp(o, "max_read=", 9) == 0 || strncmp(o, "fsname=", 7) == 0;
}

int cli_mount_helper(int argc, char **argv)
{
	static const struct {
		const char *key, *opt;
	} ours[] = {
		{"cache_mb", "--cache-mb"},     {"hot_mb", "--hot-mb"},
		{"remote", "--remote"},         {"disk_cache_gb", "--disk-cache-gb"},
		{"log", "--log"},               {"threads", "--threads"},
		{"stats_interval", "--stats-interval"},
		{"tier_interval", "--tier-interval"},
		{"tier_io_mb_s", "--tier-io-mb-s"},
		{"hot_score", "--hot-score"},   {"warm_score", "--warm-score"},
		{"remote_timeout", "--remote-timeout"},
	};
	const char *pos[2];
	int npos = 0;
	char *opts = NULL;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(helper_help, stdout);
			return 0;
		}
		const char *ov = !strcmp(argv[i], "-o") && i + 1 < argc ? argv[++i]
				 : !strncmp(argv[i], "-o", 2) && argv[i][2]
					 ? argv[i] + 2
					 : NULL;
		if (ov) {
			size_t have = opts ? strlen(opts) : 0;
			char *n = realloc(opts, have + strlen(ov) + 2);
			if (!n) {
				free(opts);
				cli_err("out of memory");
				return EXIT_FAILURE;
			}
			opts = n;
			sprintf(opts + have, "%s%s", have ? "," : "", ov);
		} else if (!strcmp(argv[i], "-n") || !strcmp(argv[i], "-s") ||
			   !strcmp(argv[i], "-v")) {
			continue; /* no mtab, sloppy, verbose: mount(8)'s */
		} else if (argv[i][0] == '-') {
			free(opts);
			return cli_usage(helper_help, "unknown option");
		} else if (npos < 2) {
			pos[npos++] = argv[i];
		} else {
			free(opts);
			return cli_usage(helper_help, "expected STORE MNT");
		}
	}
	if (npos != 2) {
		free(opts);
		return cli_usage(helper_help, "expected STORE MNT");
	}
	/* argv of 'tczfs mount': two per option at most, MNT, -o FUSE */
	size_t nopt = 1;
	for (const char *p = opts; p && *p; p++)
		nopt += *p == ',';
	char **av = calloc(2 * nopt + 8, sizeof *av);
	char *fuse = calloc(opts ? strlen(opts) + 1 : 1, 1);
	char *work = opts ? strdup(opts) : NULL;
	if (!av || !fuse || (opts && !work)) {
		free(av);
		free(fuse);
		free(work);
		free(opts);
		cli_err("out of memory");
		return EXIT_FAILURE;
	}
	int ac = 0, status = 0;
	av[ac++] = "mount";
	for (char *save = NULL, *o = work ? strtok_r(work, ",", &save) : NULL;
	     o; o = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(o, '=');
		size_t k, kl = eq ? (size_t)(eq - o) : strlen(o);
		for (k = 0; k < sizeof ours / sizeof ours[0]; k++)
			if (strlen(ours[k].key) == kl &&
			    !strncmp(o, ours[k].key, kl))
				break;
		if (k < sizeof ours / sizeof ours[0]) {
			if (!eq || !eq[1]) {
				cli_err("mount option %.*s needs a value",
					(int)kl, o);
				status = 2;
				break;
			}
			av[ac++] = (char *)ours[k].opt;
			av[ac++] = eq + 1;
		} else if (is_fuse_opt(o)) {
			if (fuse[0])
				strcat(fuse, ",");
			strcat(fuse, o);
		} else if (!is_mount_only(o)) {
			cli_err("unknown mount option '%s' (see "
				"'mount.fuse.tczfs --help')",
				o);
			status = 2;
			break;
		}
	}
	if (status == 0) {
		if (fuse[0]) {
			av[ac++] = "-o";
			av[ac++] = fuse;
		}
		av[ac++] = (char *)pos[1];
		cli_store_dir = pos[0];
		status = cli_mount(ac, av);
	}
	free(av);
	free(fuse);
	free(work);
	free(opts);
	return status;
}

static const char umount_help[] =
	"usage: tczfs umount MNT\n"
	"Unmounts a tczfs mount. When files are still open it detaches the\n"
	"mount at once and the daemon exits after the last file is closed.\n";

int cli_umount(int argc, char **argv)
{
	int c = cli_parse_common(argc, argv, umount_help, NULL, NULL);
	if (c != 1)
		return cli_exit;
	if (argc - optind != 1)
		return cli_usage(umount_help, "expected one MNT");
	char err[512] = "";
	int rc = tcz_fs_umount(argv[optind], err, sizeof err);
	if (rc < 0) {
		cli_err("umount: %s", err);
		return EXIT_FAILURE;
	}
	if (rc == 1)
		fprintf(stderr, "tczfs: %s was busy: detached; the daemon exits "
				"when the last open file is closed\n",
			argv[optind]);
	return 0;
}

static const char stat_help[] =
	"usage: tczfs stat PATH [--json]\n"
	"Shows what tczfs knows of a file in a mounted store: its tier, access\n"
	"statistics (reads, bytes, last access), codec, compression ratio and\n"
	"error; for layers/*.npy also the tensor's dtype and shape.\n";

static const char *const keys[] = {
	"tier",      "reads", "bytes_read", "last_access", "codec",
	"ratio",     "rel_error", "max_abs_error", "dtype",  "shape",
	"generation", "decodes",
};
#define N_KEYS (sizeof keys / sizeof keys[0])

int cli_stat(int argc, char **argv)
{
	int js = 0, c;
	static const struct option lo[] = {
		{"json", no_argument, 0, 'J'},
		{0, 0, 0, 0},
	};
	while ((c = cli_parse_common(argc, argv, stat_help, NULL, lo)) > 1)
		js = 1;
	if (c != 1)
		return cli_exit;
	if (argc - optind != 1)
		return cli_usage(stat_help, "expected one PATH");
	const char *path = argv[optind];
	char val[N_KEYS][1024]; /* a shape of 32 dimensions takes ~700 bytes */
	int have[N_KEYS] = {0}, any = 0;
	for (size_t k = 0; k < N_KEYS; k++) {
		char name[64];
		snprintf(name, sizeof name, "user.tczfs.%s", keys[k]);
		ssize_t n = getxattr(path, name, val[k], sizeof val[k] - 1);
		if (n >= 0) {
			val[k][n] = 0;
			have[k] = 1;
			any = 1;
		} else if (errno == ENOENT) {
			cli_err("stat: %s: %s", path, strerror(errno));
			return EXIT_FAILURE;
		}
	}
	if (!any) {
		cli_err("stat: %s is not a model file in a tczfs mount", path);
		return EXIT_FAILURE;
	}
	if (js) {
		json_t *o = json_object();
		json_object_set_new(o, "path", json_string(path));
		for (size_t k = 0; k < N_KEYS; k++) {
			if (!have[k])
				continue;
			char *end;
			double d = strtod(val[k], &end);
			json_object_set_new(o, keys[k],
					    *end || end == val[k]
						    ? json_string(val[k])
						    : json_real(d));
		}
		char *txt = json_dumps(o, JSON_INDENT(2));
		printf("%s\n", txt ? txt : "{}");
		free(txt);
		json_decref(o);
		return 0;
	}
	printf("%-13s %s\n", "path", path);
	for (size_t k = 0; k < N_KEYS; k++) {
		if (!have[k])
			continue;
		if (k == 3) {
			time_t t = (time_t)strtoull(val[k], NULL, 10);
			char ts[64] = "never";
			struct tm tm;
			if (t) {
				localtime_r(&t, &tm);
				strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
			}
			printf("%-13s %s\n", keys[k], ts);
		} else if (k == 2) {
			char b[32];
			cli_size(b, sizeof b, strtoull(val[k], NULL, 10));
			printf("%-13s %s\n", keys[k], b);
		} else {
			printf("%-13s %s\n", keys[k], val[k]);
		}
	}
	return 0;
}
