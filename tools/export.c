/* tczfs export MODEL -o OUT [--file NAME] [--force] */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/cli.h"

static const char export_help[] =
	"usage: tczfs export MODEL -o OUT [--file NAME] [--force] [--store DIR]\n"
	"Writes a model back out. A model imported from a file becomes the\n"
	"file OUT (its model.safetensors); one imported from a directory\n"
	"becomes the directory OUT with every file it had. --file NAME writes\n"
	"just that file of the model directory (e.g. the merged\n"
	"model.safetensors of a sharded model) to OUT. A lossless model comes\n"
	"back byte-identical. Existing output is kept unless --force.\n";

#define STEP (8u << 20)

/* Writes file f of m to path through a temporary name, renamed at the end
 * so a failed export leaves nothing half-written. */
static int write_one(tcz_snap *sn, tcz_reader *r, const tcz_model *m,
		     uint32_t f, const char *path, int force)
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
	unsigned char *buf = malloc(STEP);
	int rc = buf ? 0 : -ENOMEM;
	uint64_t off = 0, size = m->files[f].size;
	while (rc == 0 && off < size) {
		size_t got;
		rc = tcz_read_file(r, sn, m, f, off, STEP, buf, &got);
		if (rc) {
			cli_err("export: %s/%s at offset %llu: %s", m->name,
				m->files[f].name, (unsigned long long)off,
				rc == -EIO ? "stored data is corrupt (checksum "
					     "mismatch)"
					   : strerror(-rc));
			break;
		}
		for (size_t done = 0; done < got;) {
			ssize_t w = write(fd, buf + done, got - done);
			if (w < 0) {
				rc = -errno;
				cli_err("export: %s: %s", path, strerror(errno));
				break;
			}
			done += (size_t)w;
		}
		off += got;
	}
	free(buf);
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
	tcz_snap *sn = NULL;
	tcz_reader *r = NULL;
	tcz_model *m = NULL;
	int rc = tcz_snap_begin(s, &sn);
	if (rc == 0)
		rc = tcz_reader_create(&r);
	if (rc == 0) {
		rc = tcz_snap_model(sn, argv[optind], &m);
		if (rc == -ENOENT)
			cli_err("export: no model named %s", argv[optind]);
		else if (rc)
			cli_err("export: %s", tcz_store_errmsg());
	}
	if (rc == 0 && file) {
		uint32_t f = 0;
		while (f < m->n_files && strcmp(m->files[f].name, file) != 0)
			f++;
		if (f == m->n_files) {
			cli_err("export: model %s has no file %s", m->name, file);
			rc = -ENOENT;
		} else {
			rc = write_one(sn, r, m, f, out, force);
		}
	} else if (rc == 0 && !(m->flags & TCZ_MODEL_FROM_DIR)) {
		uint32_t f = 0;
		while (f < m->n_files && strcmp(m->files[f].name,
						"model.safetensors") != 0)
			f++;
		rc = f < m->n_files ? write_one(sn, r, m, f, out, force) : -ENOENT;
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
			rc = write_one(sn, r, m, f, path, force);
		}
	}
	tcz_model_free(m);
	tcz_reader_free(r);
	tcz_snap_end(sn);
	tcz_store_close(s);
	return rc ? EXIT_FAILURE : 0;
}
