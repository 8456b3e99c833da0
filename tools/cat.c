/* tczfs cat MODEL/PATH: any file of the mounted tree, without a mount. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/aview.h"
#include "store/view.h"
#include "tools/cli.h"

static const char cat_help[] =
	"usage: tczfs cat MODEL/PATH [-o FILE] [--store DIR]\n"
	"Writes a file of the tree a mount shows (below its root) to standard\n"
	"output or FILE, decoding it as the mount would, without mounting:\n"
	"MODEL/model.safetensors, MODEL/layers/<tensor>.npy, MODEL/config.json,\n"
	"asic/MODEL/newport.img, asic/MODEL/layout.json.\n"
	"A damaged part stops it with a message naming the tensor.\n";

static int open_out(const char *out, int *fd)
{
	*fd = STDOUT_FILENO;
	if (!out)
		return 0;
	*fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (*fd >= 0)
		return 0;
	cli_err("cat: %s: %s", out, strerror(errno));
	return -errno;
}

/* asic/MODEL/FILE */
static int cat_asic(const char *path, const char *out)
{
	const char *slash = strchr(path, '/');
	char model[256];
	if (!slash || slash == path || (size_t)(slash - path) >= sizeof model ||
	    !slash[1] || strchr(slash + 1, '/')) {
		cli_err("cat: asic/%s: expected asic/MODEL/FILE", path);
		return EXIT_FAILURE;
	}
	memcpy(model, path, (size_t)(slash - path));
	model[slash - path] = 0;
	tcz_store *s;
	if (cli_open_store(TCZ_STORE_RDONLY, &s))
		return EXIT_FAILURE;
	tcz_aview *a = NULL;
	tcz_reader *r = NULL;
	uint32_t f;
	int rc = cli_asic_open(s, model, &a);
	if (rc == 0 && (rc = tcz_aview_lookup(a, slash + 1, &f)) != 0)
		cli_err("cat: asic/%s has no file %s", model, slash + 1);
	int fd = -1;
	if (rc == 0)
		rc = tcz_reader_create(s, &r);
	if (rc == 0)
		rc = open_out(out, &fd);
	if (rc == 0) {
		rc = cli_asic_copy(r, a, f, fd, out ? out : "standard output");
		if (out && close(fd) != 0 && rc == 0) {
			rc = -errno;
			cli_err("cat: %s: %s", out, strerror(errno));
		}
	}
	tcz_reader_free(r);
	tcz_aview_put(a);
	tcz_store_close(s);
	return rc ? EXIT_FAILURE : 0;
}

int cli_cat(int argc, char **argv)
{
	const char *out = NULL;
	int c;
	static const struct option lo[] = {
		{"output", required_argument, 0, 'o'},
		{0, 0, 0, 0},
	};
	while ((c = cli_parse_common(argc, argv, cat_help, "o:", lo)) > 1)
		out = optarg;
	if (c != 1)
		return cli_exit;
	if (argc - optind != 1)
		return cli_usage(cat_help, "expected one MODEL/PATH");
	if (strncmp(argv[optind], "asic/", 5) == 0)
		return cat_asic(argv[optind] + 5, out);
	tcz_store *s;
	if (cli_open_store(TCZ_STORE_RDONLY, &s))
		return EXIT_FAILURE;
	tcz_mview *v = NULL;
	tcz_reader *r = NULL;
	uint32_t f;
	int rc = tcz_view_open_path(s, argv[optind], &v, &f);
	if (rc)
		cli_err("cat: %s", tcz_store_errmsg()[0] ? tcz_store_errmsg()
							: strerror(-rc));
	if (rc == 0)
		rc = tcz_reader_create(s, &r);
	int fd = STDOUT_FILENO;
	if (rc == 0 && out) {
		fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			rc = -errno;
			cli_err("cat: %s: %s", out, strerror(errno));
		}
	}
	if (rc == 0) {
		rc = cli_copy_file(r, v, f, fd, out ? out : "standard output");
		if (out && close(fd) != 0 && rc == 0) {
			rc = -errno;
			cli_err("cat: %s: %s", out, strerror(errno));
		}
	}
	tcz_reader_free(r);
	tcz_mview_put(v);
	tcz_store_close(s);
	return rc ? EXIT_FAILURE : 0;
}
