/* tczfs asic MODEL [--device NAME] -o FILE | profile add|ls|rm | check FILE */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "store/aview.h"
#include "tools/cli.h"

static const char asic_help[] =
	"usage: tczfs asic MODEL [--device NAME] [--layout] -o FILE\n"
	"       tczfs asic profile add NAME --cores N --sram-kib K --tile-bytes B\n"
	"                              --lanes L [--dtype f32|f16|i8]\n"
	"       tczfs asic profile ls [--json]\n"
	"       tczfs asic profile rm NAME\n"
	"       tczfs asic check FILE...\n"
	"Device images (SPEC 8): MODEL's matrices tiled, packed and placed on\n"
	"the cores of a device, the bytes a mount shows as\n"
	"asic/MODEL/DEVICE.img (--layout: its layout.json). The device is a\n"
	"profile: the built-in newport (256 cores, 8 MiB SRAM each, 64-byte\n"
	"tiles, 16 lanes, f32) or one added with 'profile add'. check\n"
	"validates images (header, tables, bounds, padding, checksum).\n"
	"Format: docs/formats.md.\n";

#define STEP (8u << 20)

int cli_asic_copy(tcz_reader *r, tcz_aview *a, uint32_t f, int fd,
		  const char *out_name)
{
	const tcz_afile *af = tcz_aview_file(a, f);
	unsigned char *buf = malloc(STEP);
	int rc = buf ? 0 : -ENOMEM;
	for (uint64_t off = 0; rc == 0 && off < af->size;) {
		size_t got;
		rc = tcz_aview_read(a, f, off, STEP, buf, &got, r, NULL, NULL);
		if (rc) {
			cli_err("asic/%s/%s: %s",
				tcz_mview_model(tcz_aview_model(a))->name, af->name,
				rc == -EIO	  ? "stored data is corrupt (checksum "
						    "mismatch)"
				: rc == -EBADMSG ? "stored data does not decode"
				: rc == -ENODATA ? "stored data is missing"
						 : strerror(-rc));
			break;
		}
		for (size_t done = 0; done < got;) {
			ssize_t w = write(fd, buf + done, got - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = -errno;
				cli_err("%s: %s", out_name, strerror(errno));
				break;
			}
			done += (size_t)w;
		}
		off += got;
	}
	free(buf);
	return rc;
}

int cli_asic_open(tcz_store *s, const char *model, tcz_aview **out)
{
	tcz_mview *v = NULL;
	tcz_dprofile *p = NULL;
	size_t np = 0;
	int rc = tcz_mview_open(s, model, &v);
	if (rc == -ENOENT)
		cli_err("no model named %s", model);
	else if (rc)
		cli_err("%s", tcz_store_errmsg()[0] ? tcz_store_errmsg()
						    : strerror(-rc));
	if (rc == 0 && (rc = tcz_store_profiles(s, &p, &np)) != 0)
		cli_err("%s", tcz_store_errmsg()[0] ? tcz_store_errmsg()
						    : strerror(-rc));
	if (rc == 0 && (rc = tcz_aview_open(v, p, np, out)) != 0)
		cli_err("%s", strerror(-rc));
	free(p);
	tcz_mview_put(v);
	return rc;
}

/* Opens the store for writing when it can (to keep image checksums),
 * else read-only. */
static int open_store(tcz_store **s)
{
	char *dir = cli_store_dir ? strdup(cli_store_dir) : tcz_store_default_dir();
	int rc = dir ? tcz_store_open(dir, 0, s) : -ENOENT;
	free(dir);
	return rc == 0 ? 0 : cli_open_store(TCZ_STORE_RDONLY, s);
}

static int image_cmd(int argc, char **argv)
{
	const char *out = NULL, *dev = TCZ_PROFILE_DEFAULT;
	int layout = 0, c;
	static const struct option lo[] = {
		{"output", required_argument, 0, 'o'},
		{"device", required_argument, 0, 'd'},
		{"layout", no_argument, 0, 'L'},
		{0, 0, 0, 0},
	};
	while ((c = cli_parse_common(argc, argv, asic_help, "o:", lo)) > 1) {
		if (c == 'o')
			out = optarg;
		else if (c == 'd')
			dev = optarg;
		else
			layout = 1;
	}
	if (c != 1)
		return cli_exit;
	if (argc - optind != 1)
		return cli_usage(asic_help, "expected one MODEL");
	if (!out)
		return cli_usage(asic_help, "missing -o FILE");
	tcz_store *s;
	if (open_store(&s))
		return EXIT_FAILURE;
	tcz_aview *a = NULL;
	tcz_reader *r = NULL;
	uint32_t f = 0;
	int rc = cli_asic_open(s, argv[optind], &a);
	if (rc == 0) {
		rc = tcz_aview_image(a, dev, &f);
		for (size_t k = 0; k < tcz_aview_nprofiles(a); k++)
			if (rc == -ENOSPC &&
			    strcmp(tcz_aview_profile(a, k)->p.name, dev) == 0)
				cli_err("asic: model %s: %s", argv[optind],
					tcz_aview_refusal(a, k));
		if (rc == -ENOENT)
			cli_err("asic: no device profile named %s (see 'tczfs "
				"asic profile ls')",
				dev);
	}
	if (rc == 0 && layout) {
		char name[64];
		if (strcmp(dev, TCZ_PROFILE_DEFAULT) == 0)
			snprintf(name, sizeof name, "layout.json");
		else
			snprintf(name, sizeof name, "%s.layout.json", dev);
		rc = tcz_aview_lookup(a, name, &f);
	}
	if (rc == 0)
		rc = tcz_reader_create(s, &r);
	if (rc == 0) {
		char tmp[4200];
		snprintf(tmp, sizeof tmp, "%s.tczfs-tmp.%ld", out, (long)getpid());
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			rc = -errno;
			cli_err("asic: %s: %s", tmp, strerror(errno));
		} else {
			rc = cli_asic_copy(r, a, f, fd, out);
			if (close(fd) != 0 && rc == 0) {
				rc = -errno;
				cli_err("asic: %s: %s", out, strerror(errno));
			}
			if (rc == 0 && rename(tmp, out) != 0) {
				rc = -errno;
				cli_err("asic: %s: %s", out, strerror(errno));
			}
			if (rc)
				unlink(tmp);
		}
	}
	if (rc == 0)
		tcz_aview_save(a, s); /* the next read needs no checksum pass */
	tcz_reader_free(r);
	tcz_aview_put(a);
	tcz_store_close(s);
	return rc ? EXIT_FAILURE : 0;
}

static int profile_cmd(int argc, char **argv)
{
	if (argc < 2)
		return cli_usage(asic_help, "profile: expected add, ls or rm");
	const char *sub = argv[1];
	argc--;
	argv++;
	int c, js = 0;
	tcz_asic_profile p;
	memset(&p, 0, sizeof p);
	p.dtype = TCZ_ASIC_F32;
	uint64_t v, kib = 0;
	int have = 0;
	static const struct option lo[] = {
		{"cores", required_argument, 0, 'c'},
		{"sram-kib", required_argument, 0, 'k'},
		{"tile-bytes", required_argument, 0, 't'},
		{"lanes", required_argument, 0, 'l'},
		{"dtype", required_argument, 0, 'D'},
		{"json", no_argument, 0, 'J'},
		{0, 0, 0, 0},
	};
	while ((c = cli_parse_common(argc, argv, asic_help, NULL, lo)) > 1) {
		if (c == 'J') {
			js = 1;
			continue;
		}
		if (c == 'D') {
			if (tcz_asic_dtype_parse(optarg, &p.dtype))
				return cli_usage(asic_help, "--dtype: f32, f16 or i8");
			continue;
		}
		if (cli_u64(c == 'c' ? "--cores" : c == 'k' ? "--sram-kib"
				  : c == 't' ? "--tile-bytes" : "--lanes",
			    optarg, &v))
			return 2;
		if (v > UINT32_MAX && c != 'k')
			v = UINT32_MAX; /* refused by the profile check */
		if (c == 'c')
			p.cores = (uint32_t)v, have |= 1;
		else if (c == 'k')
			kib = v, have |= 2;
		else if (c == 't')
			p.tile_bytes = (uint32_t)v, have |= 4;
		else
			p.lanes = (uint32_t)v, have |= 8;
	}
	if (c != 1)
		return cli_exit;
	tcz_store *s;
	if (strcmp(sub, "ls") == 0) {
		if (argc - optind != 0)
			return cli_usage(asic_help, "profile ls takes no argument");
		if (cli_open_store(TCZ_STORE_RDONLY, &s))
			return EXIT_FAILURE;
		tcz_dprofile *l;
		size_t n;
		int rc = tcz_store_profiles(s, &l, &n);
		tcz_store_close(s);
		if (rc) {
			cli_err("asic: %s", tcz_store_errmsg());
			return EXIT_FAILURE;
		}
		json_t *arr = js ? json_array() : NULL;
		if (!js)
			printf("%-20s %7s %12s %6s %6s %5s\n", "NAME", "CORES",
			       "SRAM/CORE", "TILE", "LANES", "DTYPE");
		for (size_t i = 0; i < n; i++) {
			const tcz_asic_profile *q = &l[i].p;
			if (js) {
				json_array_append_new(
					arr, json_pack("{s:s,s:I,s:I,s:I,s:I,s:s,s:b}",
						       "name", q->name, "cores",
						       (json_int_t)q->cores, "sram_bytes",
						       (json_int_t)q->sram_bytes,
						       "tile_bytes", (json_int_t)q->tile_bytes,
						       "lanes", (json_int_t)q->lanes, "dtype",
						       tcz_asic_dtype_name(q->dtype),
						       "builtin", i == 0));
				continue;
			}
			char sz[32];
			cli_size(sz, sizeof sz, q->sram_bytes);
			printf("%-20s %7u %12s %6u %6u %5s%s\n", q->name, q->cores, sz,
			       q->tile_bytes, q->lanes, tcz_asic_dtype_name(q->dtype),
			       i == 0 ? "  (built in)" : "");
		}
		if (js) {
			char *t = json_dumps(arr, JSON_INDENT(2));
			if (t)
				printf("%s\n", t);
			free(t);
			json_decref(arr);
		}
		free(l);
		return 0;
	}
	if (strcmp(sub, "add") != 0 && strcmp(sub, "rm") != 0)
		return cli_usage(asic_help, "profile: expected add, ls or rm");
	if (argc - optind != 1)
		return cli_usage(asic_help, "expected one profile NAME");
	const char *name = argv[optind];
	if (strlen(name) > TCZ_ASIC_NAME_MAX) {
		cli_err("asic: profile name '%s' is longer than %u bytes", name,
			TCZ_ASIC_NAME_MAX);
		return EXIT_FAILURE;
	}
	int rc;
	if (strcmp(sub, "add") == 0) {
		if (have != 15)
			return cli_usage(asic_help, "profile add needs --cores, "
						    "--sram-kib, --tile-bytes and "
						    "--lanes");
		if (kib > UINT64_MAX / 1024)
			kib = UINT64_MAX / 1024;
		p.sram_bytes = kib * 1024;
		memcpy(p.name, name, strlen(name) + 1);
		char err[256] = "";
		/* the profile's own rules first: no store needed to refuse */
		if (tcz_asic_profile_check(&p, err, sizeof err)) {
			cli_err("asic: profile %s: %s", name, err);
			return EXIT_FAILURE;
		}
		if (cli_open_store(0, &s))
			return EXIT_FAILURE;
		rc = tcz_store_profile_add(s, &p, err, sizeof err);
		if (rc)
			cli_err("asic: profile %s: %s", name, err);
	} else {
		if (cli_open_store(0, &s))
			return EXIT_FAILURE;
		rc = tcz_store_profile_rm(s, name);
		if (rc)
			cli_err("asic: %s", tcz_store_errmsg());
	}
	tcz_store_close(s);
	return rc ? EXIT_FAILURE : 0;
}

static int check_cmd(int argc, char **argv)
{
	int c;
	static const struct option lo[] = {{0, 0, 0, 0}};
	while ((c = cli_parse_common(argc, argv, asic_help, NULL, lo)) > 1)
		;
	if (c != 1)
		return cli_exit;
	if (argc - optind < 1)
		return cli_usage(asic_help, "check: expected FILE...");
	int bad = 0;
	for (int i = optind; i < argc; i++) {
		const char *path = argv[i];
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
			cli_err("%s: %s", path, fd < 0 ? strerror(errno)
							: "not a regular file");
			if (fd >= 0)
				close(fd);
			bad = 1;
			continue;
		}
		size_t len = (size_t)st.st_size;
		void *m = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
		close(fd);
		if (len && m == MAP_FAILED) {
			cli_err("%s: %s", path, strerror(errno));
			bad = 1;
			continue;
		}
		char err[512] = "";
		int rc = tcz_asic_check(len ? m : "", len, err, sizeof err);
		if (rc) {
			cli_err("%s: %s", path, err[0] ? err : strerror(-rc));
			bad = 1;
		} else {
			printf("%s: ok\n", path);
		}
		if (len)
			munmap(m, len);
	}
	return bad ? EXIT_FAILURE : 0;
}

int cli_asic(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "profile") == 0)
		return profile_cmd(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "check") == 0)
		return check_cmd(argc - 1, argv + 1);
	return image_cmd(argc, argv);
}
