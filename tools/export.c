/* tczfs export MODEL -o OUT [--file NAME] [--force] */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/view.h"
#include "tools/cli.h"

static const char export_help[] =
	"usage: tczfs export MODEL -o OUT [--file NAME] [--force] [--store DIR]\n"
	"Writes a model back out. A model imported from a file becomes the\n"
	"file OUT (its model.safetensors); one imported from a directory\n"
	"becomes the directory OUT with every file it had. --file NAME writes\n"
	"just that file of the model directory (e.g. the merged\n"
	"model.safetensors of a sharded model) to OUT. A lossless model comes\n"
	"back byte-identical. --file also takes layers/<tensor>.npy. Existing\n"
	"output is kept unless --force.\n";

#define STEP (8u << 20)

/* Writes file f of the view to fd; a failure names the damaged part. */
int cli_copy_file(tcz_reader *r, const tcz_mview *v, uint32_t f, int fd,
		  const char *out_name)
{
	const tcz_model *m = tcz_mview_model(v);
	const tcz_vfile *vf = tcz_mview_file(v, f);
	unsigned char *buf = malloc(STEP);
	int rc = buf ? 0 : -ENOMEM;
	uint64_t off = 0;
	while (rc == 0 && off < vf->size) {
		size_t got;
		tcz_src bad = {UINT32_MAX, 0, 0, 0};
		rc = tcz_view_read(r, v, f, off, STEP, buf, &got, &bad);
		if (rc) {
			char what[400] = "read";
			if (bad.kind != UINT32_MAX)
				tcz_view_src_describe(v, &bad, what, sizeof what);
			cli_err("%s/%s%s: %s: %s", m->name,
				vf->dir == TCZ_VDIR_LAYERS ? "layers/" : "",
				vf->name, what,
				rc == -EIO ? "stored data is corrupt (checksum "
					     "mismatch)"
				: rc == -EBADMSG ? "stored data does not decode"
				: rc == -ENODATA ? "stored data is missing"
						 : strerror(-rc));
			break;
		}
		for (size_t done = 0; done < got;) {
			ssize_t w = write(fd, buf + done, got - done);
			if (w < 0) {
				if (errno == EINTR)
					continue;
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

/* Writes file f of the view to path through a temporary name, renamed at
 * the end so a failed export leaves nothing half-written. */
static int write_one(tcz_reader *r, const tcz_mview *v, uint32_t f,
		     const char *path, int force)
{
	struct stat st;
	if (!force && lstat(path, &st) == 0) {
		cli_err("export: %s exists (use --force to overwrite)", path);
		return -EEXIST;
	}
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tczfs-tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		cli_err("export: %s: %s", tmp, strerror(errno));
		return -errno;
	}
	int rc = cli_copy_file(r, v, f, fd, path);
	if (rc == 0 && fsync(fd) != 0) {
		rc = -errno;
		cli_err("export: %s: %s", path, strerror(errno));
	}
	if (close(fd) != 0 && rc == 0) {
		rc = -errno;
		cli_err("export: %s: %s", path, strerror(errno));
	}
	if (rc == 0 && rename(tmp, path) != 0) {
		rc = -errno;
		cli_err("export: %s: %s", path, strerror(errno));
	}
	if (rc)
		unlink(tmp);
	return rc;
}

int cli_export(int argc, char **argv)
{
	const char *out = NULL, *file = NULL;
	int force = 0, c;
	static const struct option lo[] = {
		{"output", required_argument, 0, 'o'},
		{"file", required_argument, 0, 'F'},
		{"force", no_argument, 0, 'f'},
		{0, 0, 0, 0},
	};
	while ((c = cli_parse_common(argc, argv, export_help, "o:f", lo)) > 1) {
		if (c == 'o')
			out = optarg;
		else if (c == 'F')
			file = optarg;
		else
			force = 1;
	}
	if (c != 1)
		return cli_exit;
	if (argc - optind != 1)
		return cli_usage(export_help, "expected one MODEL");
	if (!out)
		return cli_usage(export_help, "missing -o OUT");
	tcz_store *s;
	if (cli_open_store(TCZ_STORE_RDONLY, &s))
		return EXIT_FAILURE;
	tcz_mview *v = NULL;
	tcz_reader *r = NULL;
	int rc = tcz_reader_create(s, &r);
	if (rc == 0) {
		rc = tcz_mview_open(s, argv[optind], &v);
		if (rc == -ENOENT)
			cli_err("export: no model named %s", argv[optind]);
		else if (rc)
			cli_err("export: %s", tcz_store_errmsg()[0]
						      ? tcz_store_errmsg()
						      : strerror(-rc));
	}
	const tcz_model *m = v ? tcz_mview_model(v) : NULL;
	if (rc == 0 && file) {
		uint32_t f;
		rc = tcz_mview_path(v, file, &f);
		if (rc) {
			cli_err("export: model %s has no file %s", m->name, file);
			rc = -ENOENT;
		} else {
			rc = write_one(r, v, f, out, force);
		}
	} else if (rc == 0 && !(m->flags & TCZ_MODEL_FROM_DIR)) {
		uint32_t f;
		rc = tcz_mview_lookup(v, TCZ_VDIR_MODEL, "model.safetensors", &f);
		if (rc)
			cli_err("export: model %s has no model.safetensors",
				m->name);
		else
			rc = write_one(r, v, f, out, force);
	} else if (rc == 0) {
		if (mkdir(out, 0755) != 0 && !(errno == EEXIST && force)) {
			cli_err("export: %s: %s%s", out, strerror(errno),
				errno == EEXIST ? " (use --force)" : "");
			rc = -errno;
		}
		for (uint32_t f = 0; rc == 0 && f < m->n_files; f++) {
			if (!(m->files[f].flags & TCZ_FILE_SOURCE))
				continue;
			char path[4200];
			snprintf(path, sizeof path, "%s/%s", out, m->files[f].name);
			/* model files come first in the view, in model order */
			rc = write_one(r, v, f, path, force);
		}
	}
	tcz_mview_put(v);
	tcz_reader_free(r);
	tcz_store_close(s);
	return rc ? EXIT_FAILURE : 0;
}
