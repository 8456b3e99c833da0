#include "store/source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "store/internal.h"

#define INDEX_NAME "model.safetensors.index.json"


static int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

/* What a file that is not a regular one is, for messages. */
static const char *file_type(mode_t m)
{
	return S_ISDIR(m)    ? "a directory"
	       : S_ISFIFO(m) ? "a FIFO"
	       : S_ISSOCK(m) ? "a socket"
	       : S_ISCHR(m)  ? "a character device"
	       : S_ISBLK(m)  ? "a block device"
			     : "not a regular file";
}

int src_map(src_file *f, char *err, size_t errlen)
{
	/* looked at before opening: opening a FIFO blocks, a device may act */
	struct stat st;
	if (stat(f->path, &st) != 0)
		return tcz__errf(-errno, err, errlen, "%s: %s", f->path,
				 strerror(errno));
	if (!S_ISREG(st.st_mode))
		return tcz__errf(-EINVAL, err, errlen,
				 "%s: %s, not a regular file; nothing imported",
				 f->path, file_type(st.st_mode));
	/* O_NONBLOCK: if it was swapped for a FIFO since, open still
	 * returns, and fstat tells */
	int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return tcz__errf(-errno, err, errlen, "%s: %s", f->path,
			    strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return tcz__errf(-EINVAL, err, errlen, "%s: not a regular file",
			    f->path);
	}
	f->size = (size_t)st.st_size;
	if (f->size == 0) {
		f->map = (const unsigned char *)"";
		close(fd);
		return 0;
	}
	void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return tcz__errf(-errno, err, errlen, "%s: %s", f->path,
			    strerror(errno));
	madvise(m, f->size, MADV_SEQUENTIAL);
	f->map = m;
	return 0;
}

int src_add_file(src_set *s, const char *path, const char *name,
		 src_kind kind)
{
	src_file *nf = realloc(s->files, (s->n_files + 1) * sizeof *nf);
	if (!nf)
		return -ENOMEM;
	s->files = nf;
	src_file *f = &s->files[s->n_files];
	memset(f, 0, sizeof *f);
	f->path = strdup(path);
	f->name = strdup(name);
	f->kind = kind;
	s->n_files++; /* src_close frees partial entries */
	return f->path && f->name ? 0 : -ENOMEM;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The model name a path suggests: the file name without its extension. */
static char *stem(const char *path, const char *ext)
{
	const char *b = strrchr(path, '/');
	char *s = strdup(b ? b + 1 : path);
	if (s && ext && ends_with(s, ext))
		s[strlen(s) - strlen(ext)] = 0;
	return s;
}

static int scan_dir(src_set *s, const char *dir, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	if (!d)
		return tcz__errf(-errno, err, errlen, "%s: %s", dir, strerror(errno));
	char **names = NULL;
	size_t n = 0;
	int rc = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char **nn = realloc(names, (n + 1) * sizeof *nn);
		if (!nn || !(nn[n] = strdup(e->d_name))) {
			names = nn ? nn : names;
			rc = -ENOMEM;
			break;
		}
		names = nn;
		n++;
	}
	closedir(d);
	if (rc == 0)
		qsort(names, n, sizeof *names, name_cmp); /* stable order */
	for (size_t i = 0; i < n && rc == 0; i++) {
		char path[4096];
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
			char **sk = realloc(s->skipped,
					    (s->n_skipped + 1) * sizeof *sk);
			char what[600];
			snprintf(what, sizeof what, "%s (%s)", names[i],
				 S_ISDIR(st.st_mode) ? "a directory"
						     : "not a regular file");
			if (!sk || !(sk[s->n_skipped] = strdup(what))) {
				s->skipped = sk ? sk : s->skipped;
				rc = -ENOMEM;
				break;
			}
			s->skipped = sk;
			s->n_skipped++;
			continue;
		}
		if (strlen(names[i]) > 255 || strchr(names[i], '\n')) {
			rc = tcz__errf(-EINVAL, err, errlen, "%s: unusable file name",
				  path);
			break;
		}
		rc = src_add_file(s, path, names[i],
				  ends_with(names[i], ".safetensors") ? SRC_SAFETENSORS
				  : ends_with(names[i], ".gguf")      ? SRC_GGUF
				  : ends_with(names[i], ".onnx")      ? SRC_ONNX
								      : SRC_AUX);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* Checks model.safetensors.index.json against the shards: every listed
 * tensor is in the shard it names and every shard tensor is listed. */
static int check_index(src_set *s, const src_file *idx, char *err,
		       size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb((const char *)idx->map, idx->size,
				  JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return tcz__errf(-EBADMSG, err, errlen, "%s: invalid JSON: %s",
			    idx->path, je.text);
	json_t *wm = json_object_get(root, "weight_map");
	int rc = 0;
	size_t listed = 0;
	if (!json_is_object(wm)) {
		rc = tcz__errf(-EBADMSG, err, errlen, "%s: no weight_map object",
			  idx->path);
		goto out;
	}
	const char *tname;
	json_t *v;
	json_object_foreach(wm, tname, v)
	{
		const char *shard = json_string_value(v);
		const src_tensor *hit = NULL;
		for (size_t i = 0; i < s->n_tensors && !hit; i++)
			if (strcmp(s->tensors[i].name, tname) == 0)
				hit = &s->tensors[i];
		if (!shard || !hit) {
			rc = tcz__errf(-EBADMSG, err, errlen,
				  "%s: tensor '%s' is listed but %s", idx->path,
				  tname,
				  shard ? "no shard holds it"
					: "its shard is not a string");
			goto out;
		}
		if (strcmp(s->files[hit->file].name, shard) != 0) {
			rc = tcz__errf(-EBADMSG, err, errlen,
				  "%s: tensor '%s' is listed in %s but stored in "
				  "%s",
				  idx->path, tname, shard,
				  s->files[hit->file].name);
			goto out;
		}
		listed++;
	}
	if (listed != s->n_tensors) {
		for (size_t i = 0; i < s->n_tensors; i++)
			if (!json_object_get(wm, s->tensors[i].name)) {
				rc = tcz__errf(-EBADMSG, err, errlen,
					  "%s: tensor '%s' of %s is not in the "
					  "weight_map",
					  idx->path, s->tensors[i].name,
					  s->files[s->tensors[i].file].name);
				break;
			}
	}
out:
	json_decref(root);
	return rc;
}

static int name_sort(const void *a, const void *b)
{
	const src_tensor *x = *(src_tensor *const *)a,
			 *y = *(src_tensor *const *)b;
	return strcmp(x->name, y->name);
}

src_tensor *src_new_tensor(src_set *s)
{
	if (s->n_tensors == s->cap_tensors) {
		size_t cap = s->cap_tensors ? s->cap_tensors * 2 : 64;
		src_tensor *nt = realloc(s->tensors, cap * sizeof *nt);
		if (!nt)
			return NULL;
		s->tensors = nt;
		s->cap_tensors = cap;
	}
	src_tensor *t = &s->tensors[s->n_tensors++];
	memset(t, 0, sizeof *t);
	return t;
}

int src_meta_add(src_set *s, const char *key, char *json)
{
	/* {"k1": v1, "k2": v2}: the JSON texts are valid, only joined */
	json_t *o = s->meta ? json_loads(s->meta, 0, NULL) : json_object();
	json_t *v = json ? json_loads(json, 0, NULL) : NULL;
	free(json);
	int rc = o && v ? json_object_set_new(o, key, v) : -1;
	if (rc)
		json_decref(v);
	char *txt = o && rc == 0 ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!txt)
		return -ENOMEM;
	free(s->meta);
	s->meta = txt;
	return 0;
}

/* A safetensors file: its header verbatim, then its tensors in order. */
static int src_safetensors(src_set *s, size_t i, char *err, size_t errlen)
{
	char msg[512];
	src_file *f = &s->files[i];
	int rc = tcz_st_parse(f->map, f->size, &f->st, msg, sizeof msg);
	if (rc)
		return rc == -EBADMSG ? tcz__errf(rc, err, errlen, "%s: %s",
						  f->path, msg)
				      : rc;
	f->ext = calloc(f->st.n + 1, sizeof *f->ext);
	if (!f->ext)
		return -ENOMEM;
	f->ext[f->n_ext++] = (src_ext){0, f->st.data_offset, -1};
	for (size_t k = 0; k < f->st.n; k++) {
		const tcz_st_tensor *st = &f->st.tensors[k];
		src_tensor *t = src_new_tensor(s);
		if (!t)
			return -ENOMEM;
		f = &s->files[i];
		t->name = st->name;
		t->dtype = st->dtype;
		t->ndim = st->ndim;
		t->shape = st->shape;
		t->numel = st->numel;
		t->nbytes = st->end - st->begin;
		t->data = f->map + f->st.data_offset + st->begin;
		t->file = (uint32_t)i;
		f->ext[f->n_ext++] = (src_ext){f->st.data_offset + st->begin,
					       t->nbytes,
					       (int64_t)(s->n_tensors - 1)};
	}
	return 0;
}

static int src_npy(src_set *s, size_t i, char *err, size_t errlen)
{
	char msg[512];
	src_file *f = &s->files[i];
	int rc = tcz_npy_parse(f->map, f->size, &f->npy, msg, sizeof msg);
	if (rc)
		return tcz__errf(rc, err, errlen, "%s: %s", f->path, msg);
	char *nm = stem(f->name, ".npy");
	src_tensor *t = nm ? src_new_tensor(s) : NULL;
	if (!t) {
		free(nm);
		return -ENOMEM;
	}
	f = &s->files[i];
	free(f->name);
	f->name = nm; /* the tensor is named after its file */
	t->name = f->name;
	t->dtype = f->npy.dtype;
	t->ndim = f->npy.ndim;
	t->shape = f->npy.shape;
	t->numel = f->npy.numel;
	t->nbytes = f->size - f->npy.data_offset;
	t->data = f->map + f->npy.data_offset;
	t->file = (uint32_t)i;
	return 0;
}

/* Parses every container and .npy file and lists the tensors in model
 * order, refusing duplicate names across files. A parser may add files
 * (an ONNX model's external data): the loop picks them up. */
static int parse_all(src_set *s, char *err, size_t errlen)
{
	for (size_t i = 0; i < s->n_files; i++) {
		src_file *f = &s->files[i];
		int rc = f->map ? 0 : src_map(f, err, errlen);
		if (rc)
			return rc;
		switch (f->kind) {
		case SRC_SAFETENSORS:
			rc = src_safetensors(s, i, err, errlen);
			break;
		case SRC_NPY:
			rc = src_npy(s, i, err, errlen);
			break;
		case SRC_GGUF:
			rc = src_gguf(s, i, err, errlen);
			break;
		case SRC_ONNX:
			rc = src_onnx(s, i, err, errlen);
			break;
		default:
			break;
		}
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < s->n_files; i++)
		s->total_bytes += s->files[i].size;
	/* shapes held in the tensor slots, now that they stay in place */
	for (size_t i = 0; i < s->n_tensors; i++) {
		src_tensor *t = &s->tensors[i];
		if (!t->shape)
			t->shape = t->qtype ? &t->one_dim : t->qshape;
	}
	/* duplicates across files */
	src_tensor **by = malloc((s->n_tensors ? s->n_tensors : 1) * sizeof *by);
	if (!by)
		return -ENOMEM;
	for (size_t i = 0; i < s->n_tensors; i++)
		by[i] = &s->tensors[i];
	qsort(by, s->n_tensors, sizeof *by, name_sort);
	int rc = 0;
	for (size_t i = 1; i < s->n_tensors; i++)
		if (strcmp(by[i]->name, by[i - 1]->name) == 0) {
			rc = tcz__errf(-EBADMSG, err, errlen,
				  "tensor '%s' appears in both %s and %s",
				  by[i]->name, s->files[by[i - 1]->file].path,
				  s->files[by[i]->file].path);
			break;
		}
	free(by);
	return rc;
}

int src_open(const char *const *srcs, size_t n, src_set *out, char *err,
	     size_t errlen)
{
	memset(out, 0, sizeof *out);
	int rc = 0;
	struct stat st;
	if (n == 0)
		return tcz__errf(-EINVAL, err, errlen, "nothing to import");
	if (stat(srcs[0], &st) != 0)
		return tcz__errf(-errno, err, errlen, "%s: %s", srcs[0],
			    strerror(errno));
	for (size_t i = 0; i < n; i++) {
		struct stat si;
		if (stat(srcs[i], &si) != 0)
			return tcz__errf(-errno, err, errlen, "%s: %s", srcs[i],
					 strerror(errno));
		if (!S_ISREG(si.st_mode) && !(i == 0 && S_ISDIR(si.st_mode)))
			return tcz__errf(-EINVAL, err, errlen,
					 "%s: %s, not a regular file or a model "
					 "directory; nothing imported",
					 srcs[i], file_type(si.st_mode));
	}
	if (S_ISDIR(st.st_mode)) {
		if (n > 1)
			return tcz__errf(-EINVAL, err, errlen,
				    "give one directory per import");
		char *clean = strdup(srcs[0]);
		if (!clean)
			return -ENOMEM;
		while (strlen(clean) > 1 && clean[strlen(clean) - 1] == '/')
			clean[strlen(clean) - 1] = 0;
		out->default_name = stem(clean, NULL);
		free(clean);
		out->from_dir = 1;
		rc = scan_dir(out, srcs[0], err, errlen);
		size_t shards = 0;
		for (size_t i = 0; rc == 0 && i < out->n_files; i++)
			shards += out->files[i].kind == SRC_SAFETENSORS ||
				  out->files[i].kind == SRC_GGUF ||
				  out->files[i].kind == SRC_ONNX;
		if (rc == 0 && shards == 0)
			rc = tcz__errf(-EINVAL, err, errlen,
				  "%s: no .safetensors, .gguf or .onnx file in the "
				  "directory",
				  srcs[0]);
	} else if (ends_with(srcs[0], ".safetensors")) {
		if (n > 1)
			return tcz__errf(-EINVAL, err, errlen,
				    "import a sharded model as its directory");
		out->default_name = stem(srcs[0], ".safetensors");
		rc = src_add_file(out, srcs[0], "model.safetensors", SRC_SAFETENSORS);
	} else if (ends_with(srcs[0], ".npy")) {
		out->default_name = stem(srcs[0], ".npy");
		for (size_t i = 0; i < n && rc == 0; i++) {
			if (!ends_with(srcs[i], ".npy"))
				return tcz__errf(-EINVAL, err, errlen,
					    "%s: mix of .npy and other files",
					    srcs[i]);
			const char *b = strrchr(srcs[i], '/');
			rc = src_add_file(out, srcs[i], b ? b + 1 : srcs[i], SRC_NPY);
		}
	} else if (ends_with(srcs[0], ".gguf") || ends_with(srcs[0], ".onnx")) {
		int gguf = ends_with(srcs[0], ".gguf");
		if (n > 1)
			return tcz__errf(-EINVAL, err, errlen,
					 "import one %s file at a time",
					 gguf ? "GGUF" : "ONNX");
		out->default_name = stem(srcs[0], gguf ? ".gguf" : ".onnx");
		rc = src_add_file(out, srcs[0], gguf ? "model.gguf" : "model.onnx",
				  gguf ? SRC_GGUF : SRC_ONNX);
	} else {
		return tcz__errf(-EINVAL, err, errlen,
			    "%s: expected a .safetensors, .gguf or .onnx file, a "
			    "model directory or .npy files",
			    srcs[0]);
	}
	if (rc == 0 && !out->default_name)
		rc = -ENOMEM;
	if (rc == 0)
		rc = parse_all(out, err, errlen);
	for (size_t i = 0; rc == 0 && i < out->n_files; i++)
		if (out->files[i].kind == SRC_AUX &&
		    strcmp(out->files[i].name, INDEX_NAME) == 0)
			rc = check_index(out, &out->files[i], err, errlen);
	if (rc)
		src_close(out);
	return rc;
}

void src_close(src_set *s)
{
	for (size_t i = 0; i < s->n_files; i++) {
		src_file *f = &s->files[i];
		if (f->map && f->size)
			munmap((void *)f->map, f->size);
		if (f->kind == SRC_SAFETENSORS)
			tcz_st_free(&f->st);
		if (f->kind == SRC_GGUF)
			tcz_gguf_free(&f->gguf);
		if (f->kind == SRC_ONNX)
			tcz_onnx_free(&f->onnx);
		free(f->ext);
		free(f->path);
		free(f->name);
	}
	for (size_t i = 0; i < s->n_tensors; i++)
		free(s->tensors[i].owned);
	free(s->meta);
	for (size_t i = 0; i < s->n_skipped; i++)
		free(s->skipped[i]);
	free(s->skipped);
	free(s->files);
	free(s->tensors);
	free(s->default_name);
	memset(s, 0, sizeof *s);
}
