/* Model views: a model's files, their sizes, byte ranges as pieces, and
 * the decoding of sources. */
#include "store/view.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "codec/ggml.h"
#include "codec/half.h"
#include "codec/tt.h"
#include "store/cache.h"
#include "store/grow.h"
#include "store/internal.h"
#include "store/names.h"
#include "store/npy.h"
#include "store/reader.h"

#define OPEN_ATTEMPTS 8

struct tcz_mview {
	tcz_store *s;
	atomic_uint refs;
	tcz_model *m;
	uint64_t content;   /* the pinned revision */
	uint64_t pinned_id; /* the pinned model id */
	uint32_t nfiles;
	tcz_vfile *files;
	char **names;            /* owned names: per file */
	unsigned char **npy_hdr; /* per tensor */
	uint32_t *npy_hlen;
	uint32_t ndirs;
	tcz_vdir *dirs;
	char **dir_names;        /* owned */
	uint32_t **order;        /* per dir: its file indexes by name */
	uint32_t *count;
	uint32_t **sub;          /* per dir: its subdirectories by name */
	uint32_t *nsub;
	/* a remote model's: values come from there, nothing is pinned */
	const tcz__vsource *src;
	void *src_ud;
};

/* ---- building ----------------------------------------------------------- */

static void unpin2(tcz_store *s, uint64_t id, uint64_t rev);

static void view_free(tcz_mview *v)
{
	if (!v)
		return;
	uint32_t nt = v->m ? v->m->n_tensors : 0;
	for (uint32_t t = 0; v->npy_hdr && t < nt; t++)
		free(v->npy_hdr[t]);
	for (uint32_t f = 0; v->names && f < v->nfiles; f++)
		free(v->names[f]);
	for (uint32_t d = 0; d < v->ndirs; d++) {
		if (v->dir_names)
			free(v->dir_names[d]);
		if (v->order)
			free(v->order[d]);
		if (v->sub)
			free(v->sub[d]);
	}
	free(v->names);
	free(v->npy_hdr);
	free(v->npy_hlen);
	free(v->files);
	free(v->dirs);
	free(v->dir_names);
	free(v->order);
	free(v->count);
	free(v->sub);
	free(v->nsub);
	tcz_model_free(v->m);
	if (v->src)
		v->src->release(v->src_ud);
	else if (v->content)
		unpin2(v->s, v->pinned_id, v->content);
	free(v);
}

static const tcz_mview *sort_view; /* qsort has no context argument */
static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;

static int by_name(const void *a, const void *b)
{
	return strcmp(sort_view->files[*(const uint32_t *)a].name,
		      sort_view->files[*(const uint32_t *)b].name);
}

static int by_dir_name(const void *a, const void *b)
{
	return strcmp(sort_view->dirs[*(const uint32_t *)a].name,
		      sort_view->dirs[*(const uint32_t *)b].name);
}

static int has_tensor(const tcz_file *f)
{
	for (uint32_t e = 0; e < f->n_extents; e++)
		if (f->extents[e].kind == TCZ_EXT_TENSOR)
			return 1;
	return 0;
}

/* The directory path (below the model directory) of dir d, and the
 * index of directory "path" under parent, made when missing. */
static int dir_get(tcz_mview *v, uint32_t parent, const char *name, size_t len,
		   uint32_t *out)
{
	for (uint32_t d = 2; d < v->ndirs; d++)
		if (v->dirs[d].parent == parent &&
		    strlen(v->dirs[d].name) == len &&
		    memcmp(v->dirs[d].name, name, len) == 0) {
			*out = d;
			return 0;
		}
	tcz_vdir *nd = realloc(v->dirs, (v->ndirs + 1) * sizeof *nd);
	if (!nd)
		return -ENOMEM;
	v->dirs = nd;
	char **nn = realloc(v->dir_names, (v->ndirs + 1) * sizeof *nn);
	if (!nn)
		return -ENOMEM;
	v->dir_names = nn;
	if (!(nn[v->ndirs] = strndup(name, len)))
		return -ENOMEM;
	nd[v->ndirs] = (tcz_vdir){nn[v->ndirs], parent};
	*out = v->ndirs++;
	return 0;
}

/* The directory of a model file named "a/b/c" (made as needed) and the
 * offset of its base name. */
static int place(tcz_mview *v, const char *path, uint32_t *dir, size_t *base)
{
	uint32_t d = TCZ_VDIR_MODEL;
	const char *p = path, *slash;
	while ((slash = strchr(p, '/')) != NULL) {
		int rc = dir_get(v, d, p, (size_t)(slash - p), &d);
		if (rc)
			return rc;
		p = slash + 1;
	}
	*dir = d;
	*base = (size_t)(p - path);
	return 0;
}

static int build(tcz_mview *v)
{
	const tcz_model *m = v->m;
	uint32_t nt = m->n_tensors, nf = m->n_files;
	v->files = calloc(nf + nt + 1, sizeof *v->files);
	v->names = calloc(nf + nt + 1, sizeof *v->names);
	v->npy_hdr = calloc(nt ? nt : 1, sizeof *v->npy_hdr);
	v->npy_hlen = calloc(nt ? nt : 1, sizeof *v->npy_hlen);
	v->dirs = calloc(2, sizeof *v->dirs);
	v->dir_names = calloc(2, sizeof *v->dir_names);
	if (!v->files || !v->names || !v->npy_hdr || !v->npy_hlen || !v->dirs ||
	    !v->dir_names)
		return -ENOMEM;
	v->ndirs = 2;
	v->dirs[0] = (tcz_vdir){"", TCZ_VDIR_MODEL};
	v->dirs[1] = (tcz_vdir){"layers", TCZ_VDIR_MODEL};
	for (uint32_t f = 0; f < nf; f++) {
		tcz_vfile *vf = &v->files[v->nfiles];
		size_t base;
		int rc = place(v, m->files[f].name, &vf->dir, &base);
		if (rc)
			return rc;
		vf->name = m->files[f].name + base;
		vf->kind = has_tensor(&m->files[f]) ? TCZ_VF_CONTAINER : TCZ_VF_AUX;
		vf->index = f;
		vf->size = m->files[f].size;
		vf->mtime = m->import_time;
		for (uint32_t e = 0; e < m->files[f].n_extents; e++) {
			const tcz_extent *x = &m->files[f].extents[e];
			if (x->kind != TCZ_EXT_TENSOR)
				continue;
			const tcz_tensor *tn = &m->tensors[x->index];
			if (tn->mtime > vf->mtime)
				vf->mtime = tn->mtime;
			if (tn->gen > vf->gen)
				vf->gen = tn->gen;
		}
		v->nfiles++;
	}
	for (uint32_t t = 0; t < nt; t++) {
		const tcz_tensor *tn = &m->tensors[t];
		/* a GGUF block type without a dequantizer has no .npy */
		if (tn->qtype && !tcz_ggml_can_dequantize(tn->qtype - 1))
			continue;
		char name[TCZ_FILE_NAME_MAX + 1], hdr[1024];
		size_t hl;
		tcz_npy_file_name(tn->name, name);
		int rc = tn->qtype ? tcz_npy_header(TCZ_DT_F32, tn->qndim, tn->qshape,
						    hdr, sizeof hdr, &hl)
				   : tcz_npy_header(tn->dtype, tn->ndim, tn->shape,
						    hdr, sizeof hdr, &hl);
		if (rc)
			return rc;
		tcz_vfile *vf = &v->files[v->nfiles];
		v->names[v->nfiles] = strdup(name);
		v->npy_hdr[t] = malloc(hl);
		if (!v->names[v->nfiles] || !v->npy_hdr[t])
			return -ENOMEM;
		memcpy(v->npy_hdr[t], hdr, hl);
		v->npy_hlen[t] = (uint32_t)hl;
		vf->name = v->names[v->nfiles];
		vf->dir = TCZ_VDIR_LAYERS;
		vf->kind = TCZ_VF_NPY;
		vf->index = t;
		/* numel fits: nbytes did, and .npy elements are at most twice
		 * as wide (BF16 -> f32) as the stored ones but for blocks,
		 * whose element count the record's shape validated */
		uint64_t numel = 1;
		for (uint32_t i = 0; tn->qtype && i < tn->qndim; i++)
			numel *= tn->qshape[i];
		vf->size = hl + (tn->qtype ? numel * 4
					   : tn->numel * tcz_dtype_size(
								 tcz_npy_dtype(tn->dtype)));
		vf->mtime = tn->mtime > m->import_time ? tn->mtime : m->import_time;
		vf->gen = tn->gen;
		v->nfiles++;
	}
	v->order = calloc(v->ndirs, sizeof *v->order);
	v->count = calloc(v->ndirs, sizeof *v->count);
	v->sub = calloc(v->ndirs, sizeof *v->sub);
	v->nsub = calloc(v->ndirs, sizeof *v->nsub);
	if (!v->order || !v->count || !v->sub || !v->nsub)
		return -ENOMEM;
	for (uint32_t d = 0; d < v->ndirs; d++) {
		v->order[d] = calloc(v->nfiles + 1, sizeof(uint32_t));
		v->sub[d] = calloc(v->ndirs, sizeof(uint32_t));
		if (!v->order[d] || !v->sub[d])
			return -ENOMEM;
	}
	for (uint32_t i = 0; i < v->nfiles; i++) {
		uint32_t d = v->files[i].dir;
		v->order[d][v->count[d]++] = i;
	}
	for (uint32_t d = 1; d < v->ndirs; d++) {
		uint32_t p = v->dirs[d].parent;
		v->sub[p][v->nsub[p]++] = d;
	}
	pthread_mutex_lock(&sort_lock);
	sort_view = v;
	for (uint32_t d = 0; d < v->ndirs; d++) {
		qsort(v->order[d], v->count[d], sizeof(uint32_t), by_name);
		qsort(v->sub[d], v->nsub[d], sizeof(uint32_t), by_dir_name);
	}
	pthread_mutex_unlock(&sort_lock);
	return 0;
}

/* The (id, rev) of the model record of name, in a short transaction. */
static int model_rev(tcz_store *s, MDB_txn **txn, const char *name,
		     uint64_t *id, uint64_t *rev)
{
	int rc = tcz__rtxn_begin(s, txn);
	if (rc)
		return rc;
	MDB_val k = {strlen(name), (void *)name}, d;
	rc = mdb_get(*txn, s->models, &k, &d);
	if (rc == 0)
		rc = tcz__model_record_rev(d.mv_data, d.mv_size, id, rev);
	else
		rc = tcz__mdb_err(rc);
	tcz__rtxn_end(s, *txn, 1);
	return rc;
}

static void unpin2(tcz_store *s, uint64_t id, uint64_t rev)
{
	tcz__unpin(s, id);
	tcz__unpin(s, rev);
}

int tcz_mview_open(tcz_store *s, const char *name, tcz_mview **out)
{
	*out = NULL;
	MDB_txn *txn = NULL;
	int rc = -ENOENT;
	for (int attempt = 0; attempt < OPEN_ATTEMPTS; attempt++) {
		/* load, pin, then check the record still names what was
		 * loaded: once pinned, that content stays in the store
		 * however the model changes. The revision pins its chunks;
		 * the id pins what all revisions share (TT cores). */
		tcz_model *m = NULL;
		rc = tcz__rtxn_begin(s, &txn);
		if (rc == 0) {
			rc = tcz__load_model(s, txn, name, &m, NULL);
			tcz__rtxn_end(s, txn, 1);
		}
		if (rc)
			break;
		uint64_t id = m->id, rev = m->rev;
		rc = tcz__pin(s, id);
		if (rc == 0 && (rc = tcz__pin(s, rev)) != 0)
			tcz__unpin(s, id);
		if (rc) {
			tcz_model_free(m);
			if (rc == -ENOENT)
				continue; /* being released: the name moved on */
			break;
		}
		uint64_t id2 = 0, rev2 = 0;
		rc = model_rev(s, &txn, name, &id2, &rev2);
		if (rc == 0 && (id2 != id || rev2 != rev)) {
			/* re-encoded, or removed and imported again */
			tcz_model_free(m);
			unpin2(s, id, rev);
			rc = -ENOENT;
			continue;
		}
		if (rc) {
			tcz_model_free(m);
			unpin2(s, id, rev);
			break;
		}
		tcz_mview *v = calloc(1, sizeof *v);
		if (!v) {
			tcz_model_free(m);
			unpin2(s, id, rev);
			rc = -ENOMEM;
			break;
		}
		v->s = s;
		v->m = m;
		v->content = rev;
		v->pinned_id = id;
		atomic_init(&v->refs, 1);
		if ((rc = build(v))) {
			view_free(v);
			break;
		}
		*out = v;
		break;
	}
	if (txn)
		mdb_txn_abort(txn); /* a reset handle */
	if (rc == -ENOENT)
		tcz__fail(rc, "no model named %s", name);
	return rc;
}

int tcz__mview_open_model(tcz_store *s, tcz_model *m, const tcz__vsource *src,
			  void *ud, tcz_mview **out)
{
	*out = NULL;
	tcz_mview *v = calloc(1, sizeof *v);
	if (!v) {
		tcz_model_free(m);
		src->release(ud);
		return -ENOMEM;
	}
	v->s = s;
	v->m = m;
	v->content = m->rev;
	v->pinned_id = m->id;
	v->src = src;
	v->src_ud = ud;
	atomic_init(&v->refs, 1);
	int rc = build(v);
	if (rc) {
		view_free(v);
		return rc;
	}
	*out = v;
	return 0;
}

tcz_mview *tcz_mview_ref(tcz_mview *v)
{
	atomic_fetch_add(&v->refs, 1);
	return v;
}

void tcz_mview_put(tcz_mview *v)
{
	if (v && atomic_fetch_sub(&v->refs, 1) == 1)
		view_free(v);
}

const tcz_model *tcz_mview_model(const tcz_mview *v)
{
	return v->m;
}

uint64_t tcz_mview_content(const tcz_mview *v)
{
	return v->content;
}

uint32_t tcz_mview_nfiles(const tcz_mview *v)
{
	return v->nfiles;
}

const tcz_vfile *tcz_mview_file(const tcz_mview *v, uint32_t i)
{
	return i < v->nfiles ? &v->files[i] : NULL;
}

uint32_t tcz_mview_ndirs(const tcz_mview *v)
{
	return v->ndirs;
}

const tcz_vdir *tcz_mview_dir(const tcz_mview *v, uint32_t d)
{
	return d < v->ndirs ? &v->dirs[d] : NULL;
}

uint32_t tcz_mview_dir_count(const tcz_mview *v, uint32_t dir)
{
	return dir < v->ndirs ? v->count[dir] : 0;
}

uint32_t tcz_mview_dir_file(const tcz_mview *v, uint32_t dir, uint32_t k)
{
	return v->order[dir][k];
}

uint32_t tcz_mview_subdir_count(const tcz_mview *v, uint32_t dir)
{
	return dir < v->ndirs ? v->nsub[dir] : 0;
}

uint32_t tcz_mview_subdir(const tcz_mview *v, uint32_t dir, uint32_t k)
{
	return v->sub[dir][k];
}

int tcz_mview_lookup_dir(const tcz_mview *v, uint32_t dir, const char *name,
			 uint32_t *d)
{
	for (uint32_t k = 0; dir < v->ndirs && k < v->nsub[dir]; k++)
		if (strcmp(v->dirs[v->sub[dir][k]].name, name) == 0) {
			*d = v->sub[dir][k];
			return 0;
		}
	return -ENOENT;
}

void tcz_mview_file_path(const tcz_mview *v, uint32_t i, char *buf, size_t n)
{
	/* the chain of directories, outermost first */
	uint32_t chain[64], k = 0;
	for (uint32_t d = v->files[i].dir; d != TCZ_VDIR_MODEL && k < 64;
	     d = v->dirs[d].parent)
		chain[k++] = d;
	size_t at = 0;
	buf[0] = 0;
	while (k-- > 0 && at < n)
		at += (size_t)snprintf(buf + at, n - at, "%s/",
				       v->dirs[chain[k]].name);
	if (at < n)
		snprintf(buf + at, n - at, "%s", v->files[i].name);
}

int tcz_mview_lookup(const tcz_mview *v, uint32_t dir, const char *name,
		     uint32_t *i)
{
	if (dir >= v->ndirs)
		return -ENOENT;
	uint32_t lo = 0, hi = v->count[dir];
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint32_t f = v->order[dir][mid];
		int c = strcmp(v->files[f].name, name);
		if (c == 0) {
			*i = f;
			return 0;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

int tcz_mview_path(const tcz_mview *v, const char *path, uint32_t *i)
{
	uint32_t d = TCZ_VDIR_MODEL;
	char part[TCZ_FILE_NAME_MAX + 1];
	for (;;) {
		while (*path == '/')
			path++;
		if (!*path)
			return -EISDIR;
		const char *slash = strchr(path, '/');
		size_t len = slash ? (size_t)(slash - path) : strlen(path);
		if (len > TCZ_FILE_NAME_MAX)
			return -ENOENT;
		memcpy(part, path, len);
		part[len] = 0;
		const char *rest = slash ? slash + 1 : "";
		while (*rest == '/')
			rest++;
		if (!*rest) {
			if (tcz_mview_lookup(v, d, part, i) == 0)
				return 0;
			return tcz_mview_lookup_dir(v, d, part, &d) == 0 ? -EISDIR
									 : -ENOENT;
		}
		if (tcz_mview_lookup_dir(v, d, part, &d))
			return -ENOENT;
		path = rest;
	}
}

/* ---- sources ------------------------------------------------------------ */

static uint32_t blob_chunk_len(const tcz_blob *b, uint32_t ci)
{
	uint64_t left = b->length - (uint64_t)ci * b->chunk_bytes;
	return left < b->chunk_bytes ? (uint32_t)left : b->chunk_bytes;
}

static uint32_t src_count(const tcz_mview *v, const tcz_src *s)
{
	if (s->kind == TCZ_SRC_BLOB)
		return s->index < v->m->n_blobs ? v->m->blobs[s->index].n_chunks
						: 0;
	return s->index < v->m->n_tensors
		       ? tcz_tensor_chunk_count(&v->m->tensors[s->index])
		       : 0;
}

static void make_src(const tcz_mview *v, uint32_t kind, uint32_t index,
		     uint32_t chunk, tcz_src *out)
{
	out->kind = kind;
	out->index = index;
	out->chunk = chunk;
	out->len = kind == TCZ_SRC_BLOB
			   ? blob_chunk_len(&v->m->blobs[index], chunk)
			   : tcz_tensor_chunk_len(&v->m->tensors[index], chunk);
}

int tcz_view_src_next(const tcz_mview *v, const tcz_src *s, uint32_t k,
		      tcz_src *out)
{
	uint64_t c = (uint64_t)s->chunk + k;
	if (c >= src_count(v, s))
		return -ENOENT;
	make_src(v, s->kind, s->index, (uint32_t)c, out);
	return 0;
}

/* A name for computed content: never a content key (those are hashes of
 * chunk values starting with "TCK1"), unique per content id. */
static void derived_key(const char *tag, uint64_t content, uint32_t a,
			uint32_t b, unsigned char key[TCZ_KEY_LEN])
{
	unsigned char in[40];
	size_t tl = strlen(tag);
	memcpy(in, tag, tl);
	tcz_be64(in + tl, content);
	tcz_be32(in + tl + 8, a);
	tcz_be32(in + tl + 12, b);
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits(in, tl + 16));
	memcpy(key, c.digest, TCZ_KEY_LEN);
}

void tcz_view_src_key(const tcz_mview *v, const tcz_src *s,
		      unsigned char key[TCZ_KEY_LEN])
{
	if (s->kind == TCZ_SRC_BLOB) {
		memcpy(key, v->m->blobs[s->index].chunks[s->chunk], TCZ_KEY_LEN);
		return;
	}
	const tcz_tensor *t = &v->m->tensors[s->index];
	if (t->codec != TCZ_CODEC_TT) {
		memcpy(key, t->chunks[s->chunk], TCZ_KEY_LEN);
		return;
	}
	derived_key("tczfs:tt-chunk", v->content, s->index, s->chunk, key);
}

void tcz_view_src_describe(const tcz_mview *v, const tcz_src *s, char *buf,
			   size_t n)
{
	if (s->kind == TCZ_SRC_TENSOR && s->index < v->m->n_tensors) {
		const tcz_tensor *t = &v->m->tensors[s->index];
		if (t->codec == TCZ_CODEC_TT)
			snprintf(buf, n, "tensor '%s' (TT cores, chunk %u)",
				 t->name, s->chunk);
		else
			snprintf(buf, n, "tensor '%s' chunk %u", t->name,
				 s->chunk);
		return;
	}
	/* a blob: name the file it belongs to */
	const char *fname = "?";
	for (uint32_t f = 0; f < v->m->n_files; f++)
		for (uint32_t e = 0; e < v->m->files[f].n_extents; e++)
			if (v->m->files[f].extents[e].kind == TCZ_EXT_BLOB &&
			    v->m->files[f].extents[e].index == s->index)
				fname = v->m->files[f].name;
	snprintf(buf, n, "file '%s' part %u", fname, s->chunk);
}

/* ---- mapping ------------------------------------------------------------ */

static int add(tcz_pieces *l, const tcz_piece *p)
{
	if (tcz__grow(&l->p, &l->cap, l->n, sizeof *l->p, 8))
		return -ENOMEM;
	l->p[l->n++] = *p;
	return 0;
}

void tcz_pieces_free(tcz_pieces *l)
{
	free(l->p);
	l->p = NULL;
	l->n = l->cap = 0;
}

static int map_extents(const tcz_mview *v, const tcz_file *fl, uint64_t off,
		       uint64_t len, tcz_pieces *l)
{
	uint32_t lo = 0, hi = fl->n_extents;
	while (hi - lo > 1) { /* the extent holding off */
		uint32_t mid = lo + (hi - lo) / 2;
		if (fl->extents[mid].offset <= off)
			lo = mid;
		else
			hi = mid;
	}
	for (uint32_t e = lo; len > 0 && e < fl->n_extents; e++) {
		const tcz_extent *x = &fl->extents[e];
		if (off >= x->offset + x->length)
			continue; /* empty tensors */
		uint32_t kind = x->kind == TCZ_EXT_BLOB ? TCZ_SRC_BLOB
							: TCZ_SRC_TENSOR;
		uint32_t cb = kind == TCZ_SRC_BLOB
				      ? v->m->blobs[x->index].chunk_bytes
				      : v->m->tensors[x->index].chunk_bytes;
		while (len > 0 && off < x->offset + x->length) {
			uint64_t in = off - x->offset;
			tcz_piece p = {TCZ_PIECE_CHUNK, 0, NULL, {0}, 0, 0};
			make_src(v, kind, x->index, (uint32_t)(in / cb), &p.src);
			p.off = (uint32_t)(in % cb);
			p.len = p.src.len - p.off < len ? p.src.len - p.off
							: (uint32_t)len;
			if (add(l, &p))
				return -ENOMEM;
			off += p.len;
			len -= p.len;
		}
	}
	return 0;
}

static int map_npy(const tcz_mview *v, uint32_t t, uint64_t off, uint64_t len,
		   tcz_pieces *l)
{
	uint32_t hl = v->npy_hlen[t];
	if (off < hl) {
		tcz_piece p = {TCZ_PIECE_BYTES, 0, v->npy_hdr[t] + off, {0}, 0, 0};
		p.len = hl - (uint32_t)off < len ? hl - (uint32_t)off
						 : (uint32_t)len;
		if (add(l, &p))
			return -ENOMEM;
		off += p.len;
		len -= p.len;
	}
	const tcz_tensor *tn = &v->m->tensors[t];
	/* the .npy bytes of a stored chunk: as many (CHUNK), twice as many
	 * (BF16 widened), or for GGUF blocks 4 per element */
	uint64_t num = 1, den = 1;
	tcz_piece_kind kind = TCZ_PIECE_CHUNK;
	if (tn->qtype) {
		tcz_ggml_info gi;
		tcz_ggml_type(tn->qtype - 1, &gi);
		kind = TCZ_PIECE_DEQUANT;
		num = (uint64_t)gi.block_elems * 4;
		den = gi.block_bytes;
	} else if (tn->dtype == TCZ_DT_BF16) {
		kind = TCZ_PIECE_WIDEN;
		num = 2;
	}
	uint64_t cb = (uint64_t)tn->chunk_bytes * num / den;
	while (len > 0) {
		uint64_t d = off - hl;
		tcz_piece p = {kind, tn->qtype ? tn->qtype - 1 : 0, NULL, {0}, 0, 0};
		make_src(v, TCZ_SRC_TENSOR, t, (uint32_t)(d / cb), &p.src);
		uint32_t clen = (uint32_t)((uint64_t)p.src.len * num / den);
		p.off = (uint32_t)(d % cb);
		p.len = clen - p.off < len ? clen - p.off : (uint32_t)len;
		if (add(l, &p))
			return -ENOMEM;
		off += p.len;
		len -= p.len;
	}
	return 0;
}

int tcz_view_map(const tcz_mview *v, uint32_t i, uint64_t off, uint64_t len,
		 tcz_pieces *l)
{
	if (i >= v->nfiles)
		return -EINVAL;
	const tcz_vfile *f = &v->files[i];
	if (off >= f->size || len == 0)
		return 0;
	if (len > f->size - off)
		len = f->size - off;
	if (f->kind == TCZ_VF_NPY)
		return map_npy(v, f->index, off, len, l);
	return map_extents(v, &v->m->files[f->index], off, len, l);
}

/* Copies widened bytes [coff, coff+len) of a BF16 chunk to dst. */
static void widen_copy(unsigned char *dst, const unsigned char *src,
		       uint32_t coff, uint32_t len)
{
	float tmp[256];
	uint32_t e = coff / 4, end = coff + len;
	uint32_t skip = coff % 4;
	while (coff < end) {
		uint32_t n = (end - e * 4 + 3) / 4;
		if (n > 256)
			n = 256;
		tcz_bf16_to_f32_n(src + 2 * (size_t)e, tmp, n);
		uint32_t avail = n * 4 - skip;
		uint32_t take = end - coff < avail ? end - coff : avail;
		memcpy(dst, (unsigned char *)tmp + skip, take);
		dst += take;
		coff += take;
		e += n;
		skip = 0;
	}
}

/* Copies f32 bytes [coff, coff+len) of GGUF blocks of type qtype,
 * dequantized, to dst: whole blocks at a time through a small buffer. */
static void dequant_copy(unsigned char *dst, const unsigned char *src,
			 uint32_t qtype, uint32_t coff, uint32_t len)
{
	tcz_ggml_info gi;
	tcz_ggml_type(qtype, &gi);
	float tmp[2048];
	uint32_t per = (uint32_t)(sizeof tmp / sizeof tmp[0]) / gi.block_elems;
	if (per == 0)
		per = 1; /* blocks hold at most 256 values */
	uint32_t bbytes = gi.block_elems * 4; /* f32 bytes of a block */
	uint32_t b = coff / bbytes, end = coff + len;
	while (coff < end) {
		uint32_t nb = (end - b * bbytes + bbytes - 1) / bbytes;
		if (nb > per)
			nb = per;
		tcz_ggml_dequantize(qtype, src + (size_t)b * gi.block_bytes, nb, tmp);
		uint32_t skip = coff - b * bbytes;
		uint32_t avail = nb * bbytes - skip;
		uint32_t take = end - coff < avail ? end - coff : avail;
		memcpy(dst, (unsigned char *)tmp + skip, take);
		dst += take;
		coff += take;
		b += nb;
	}
}

void tcz_piece_copy(const tcz_piece *p, const void *chunk, void *dst)
{
	switch (p->kind) {
	case TCZ_PIECE_BYTES:
		memcpy(dst, p->mem, p->len);
		break;
	case TCZ_PIECE_ZERO:
		memset(dst, 0, p->len);
		break;
	case TCZ_PIECE_CHUNK:
		memcpy(dst, (const unsigned char *)chunk + p->off, p->len);
		break;
	case TCZ_PIECE_WIDEN:
		widen_copy(dst, chunk, p->off, p->len);
		break;
	case TCZ_PIECE_DEQUANT:
		dequant_copy(dst, chunk, p->qtype, p->off, p->len);
		break;
	}
}

/* ---- decoding ----------------------------------------------------------- */

/* Where core k of tensor t starts in a cores buffer, in floats. */
static size_t core_off(const tcz_tensor *t, unsigned k)
{
	size_t off = 0;
	for (unsigned j = 0; j < k; j++)
		off += (size_t)(t->tt_ranks[j] * t->tt_modes[j] * t->tt_ranks[j + 1]);
	return off;
}

/* Loads tensor t's cores into dst (core_off(t, d) floats), each record's
 * checksum and shape checked. */
static int load_cores(tcz_reader *r, const tcz_mview *v, uint32_t t,
		      float *dst)
{
	const tcz_tensor *tn = &v->m->tensors[t];
	for (unsigned k = 0; k < tn->tt_order; k++) {
		unsigned char key[16];
		tcz__key_id_idx(key, v->m->id, t);
		tcz_be32(key + 12, k);
		const unsigned char *val;
		size_t vlen;
		int rc = v->src ? v->src->get(v->src_ud, r, NULL, 1, t, k, &val,
					      &vlen)
				: tcz__fetch(r, r->s->ttcores, key, 16, &val, &vlen);
		if (rc == -ENOENT)
			return -ENODATA;
		if (rc)
			return rc;
		tcz_rbuf rb;
		if (tcz_rec_open(&rb, val, vlen))
			return -EIO;
		uint64_t rl = tcz_rb_u32(&rb), n = tcz_rb_u32(&rb),
			 rr = tcz_rb_u32(&rb);
		size_t cnt = (size_t)(tn->tt_ranks[k] * tn->tt_modes[k] *
				      tn->tt_ranks[k + 1]);
		if (rl != tn->tt_ranks[k] || n != tn->tt_modes[k] ||
		    rr != tn->tt_ranks[k + 1] || rb.len - rb.off != cnt * 4)
			return -EBADMSG;
		memcpy(dst + core_off(tn, k), tcz_rb_bytes(&rb, cnt * 4), cnt * 4);
	}
	return tcz_tt_cores_finite(dst, core_off(tn, tn->tt_order)) ? 0
								    : -EBADMSG;
}

static int wrap_cores(const tcz_tensor *tn, const float *mem, tcz_tt **out)
{
	size_t modes[TCZ_TT_MAX_ORDER], ranks[TCZ_TT_MAX_ORDER + 1];
	const float *cores[TCZ_TT_MAX_ORDER];
	if (tn->tt_order < 2 || tn->tt_order > TCZ_TT_MAX_ORDER)
		return -EBADMSG;
	for (unsigned k = 0; k <= tn->tt_order; k++)
		ranks[k] = (size_t)tn->tt_ranks[k];
	for (unsigned k = 0; k < tn->tt_order; k++) {
		modes[k] = (size_t)tn->tt_modes[k];
		cores[k] = mem + core_off(tn, k);
	}
	int rc = tcz_tt_wrap(tn->tt_order, modes, ranks, cores, out);
	return rc == -EINVAL ? -EBADMSG : rc;
}

typedef struct cores_arg {
	tcz_reader *r;
	const tcz_mview *v;
	uint32_t t;
} cores_arg;

static int fill_cores(void *arg, void *dst, size_t len)
{
	cores_arg *a = arg;
	(void)len;
	return load_cores(a->r, a->v, a->t, dst);
}

/* Reconstructs TT chunk s into dst: cores from the shared cache when the
 * reader has one (an entry within its budget, pinned meanwhile), else
 * the reader's private copy of the last tensor's. */
static int decode_tt(tcz_reader *r, const tcz_mview *v, const tcz_src *s,
		     void *dst)
{
	const tcz_tensor *tn = &v->m->tensors[s->index];
	/* the record's ranks and modes are validated: products fit */
	size_t floats = core_off(tn, tn->tt_order);
	if (floats == 0 || floats > SIZE_MAX / 8)
		return -EBADMSG;
	tcz_cache_entry *e = NULL;
	const float *mem;
	tcz_tt *tt = NULL;
	int rc;
	if (r->cache) {
		unsigned char key[TCZ_KEY_LEN];
		derived_key("tczfs:tt-cores", v->content, s->index, 0, key);
		cores_arg a = {r, v, s->index};
		rc = tcz_cache_get(r->cache, key, floats * 4, fill_cores, &a, &e);
		if (rc)
			return rc;
		mem = tcz_cache_data(e);
		rc = wrap_cores(tn, mem, &tt);
	} else {
		if (!r->tt || r->tt_id != v->content || r->tt_tensor != s->index) {
			tcz_tt_free(r->tt);
			free(r->tt_mem);
			r->tt = NULL;
			r->tt_mem = malloc(floats * 4);
			if (!r->tt_mem)
				return -ENOMEM;
			rc = load_cores(r, v, s->index, r->tt_mem);
			if (rc == 0)
				rc = wrap_cores(tn, r->tt_mem, &r->tt);
			if (rc) {
				free(r->tt_mem);
				r->tt_mem = NULL;
				return rc;
			}
			r->tt_id = v->content;
			r->tt_tensor = s->index;
		}
		tt = r->tt;
		rc = 0;
	}
	size_t es = tcz_dtype_size(tn->dtype);
	size_t first = (size_t)s->chunk * (tn->chunk_bytes / es);
	size_t n = s->len / es;
	if (rc == 0 && tn->dtype == TCZ_DT_F32 && ((uintptr_t)dst & 3) == 0) {
		rc = tcz_tt_reconstruct_range(tt, first, n, dst);
	} else if (rc == 0) {
		size_t step = 65536;
		float *f;
		rc = tcz__reader_f32(r, step, &f);
		for (size_t at = 0; rc == 0 && at < n; at += step) {
			size_t cnt = n - at < step ? n - at : step;
			rc = tcz_tt_reconstruct_range(tt, first + at, cnt, f);
			if (rc == 0)
				rc = tcz_dtype_from_f32(tn->dtype, f, cnt,
							(unsigned char *)dst +
								at * es);
		}
	}
	if (e) {
		tcz_tt_free(tt);
		tcz_cache_release(r->cache, e);
	}
	return rc == -EINVAL ? -EBADMSG : rc;
}

int tcz_view_decode(tcz_reader *r, const tcz_mview *v, const tcz_src *s,
		    void *dst)
{
	if (s->chunk >= src_count(v, s))
		return -EINVAL;
	if (v->src && (s->kind == TCZ_SRC_BLOB ||
		       v->m->tensors[s->index].codec != TCZ_CODEC_TT)) {
		const unsigned char *key =
			s->kind == TCZ_SRC_BLOB
				? v->m->blobs[s->index].chunks[s->chunk]
				: v->m->tensors[s->index].chunks[s->chunk];
		tcz_dtype dt = s->kind == TCZ_SRC_BLOB
				       ? TCZ_DT_U8
				       : v->m->tensors[s->index].dtype;
		const unsigned char *val;
		size_t vlen;
		int rc = v->src->get(v->src_ud, r, key, 0, 0, 0, &val, &vlen);
		return rc ? rc : tcz__decode_value(r, val, vlen, dt, dst, s->len);
	}
	if (s->kind == TCZ_SRC_BLOB)
		return tcz__read_chunk(r, v->m->blobs[s->index].chunks[s->chunk],
				       TCZ_DT_U8, dst, s->len);
	const tcz_tensor *tn = &v->m->tensors[s->index];
	if (tn->codec == TCZ_CODEC_TT)
		return decode_tt(r, v, s, dst);
	return tcz__read_chunk(r, tn->chunks[s->chunk], tn->dtype, dst, s->len);
}

/* The tensor of a source read in parts, or NULL. */
static const tcz_tensor *part_tensor(const tcz_mview *v, const tcz_src *s)
{
	if (v->src || s->kind != TCZ_SRC_TENSOR || s->chunk >= src_count(v, s))
		return NULL;
	const tcz_tensor *tn = &v->m->tensors[s->index];
	return tn->codec == TCZ_CODEC_LOSSLESS ? tn : NULL;
}

int tcz_view_part_span(tcz_reader *r, const tcz_mview *v, const tcz_src *s,
		       uint32_t off, uint32_t len, uint32_t *span_off,
		       uint32_t *span_len)
{
	const tcz_tensor *tn = part_tensor(v, s);
	if (!tn)
		return -ENOTSUP;
	return tcz__chunk_part_span(r, tn->chunks[s->chunk], tn->dtype, s->len,
				    off, len, span_off, span_len);
}

int tcz_view_decode_part(tcz_reader *r, const tcz_mview *v, const tcz_src *s,
			 uint32_t off, uint32_t len, void *dst)
{
	const tcz_tensor *tn = part_tensor(v, s);
	if (!tn)
		return -ENOTSUP;
	return tcz__read_chunk_part(r, tn->chunks[s->chunk], tn->dtype, s->len,
				    off, len, dst);
}

int tcz_view_index_warm(tcz_reader *r, const tcz_mview *v, uint32_t t,
			uint32_t first, uint32_t n)
{
	tcz_src s = {.kind = TCZ_SRC_TENSOR, .index = t, .chunk = first};
	const tcz_tensor *tn = part_tensor(v, &s);
	if (!tn)
		return 0;
	uint32_t count = src_count(v, &s);
	if (n > count - first)
		n = count - first;
	return tcz__blocks_warm(r, tn->chunks[first], n);
}

static int same_src(const tcz_src *a, const tcz_src *b)
{
	return a->kind == b->kind && a->index == b->index && a->chunk == b->chunk;
}

int tcz_view_read(tcz_reader *r, const tcz_mview *v, uint32_t i, uint64_t off,
		  size_t len, void *buf, size_t *got, tcz_src *bad)
{
	*got = 0;
	tcz_pieces l = {0};
	int rc = tcz_view_map(v, i, off, len, &l);
	unsigned char *out = buf;
	for (size_t k = 0; rc == 0 && k < l.n; k++) {
		const tcz_piece *p = &l.p[k];
		const void *chunk = NULL;
		if (p->kind == TCZ_PIECE_CHUNK || p->kind == TCZ_PIECE_WIDEN ||
		    p->kind == TCZ_PIECE_DEQUANT) {
			int memo = r->memo_ok && r->memo_id == v->content &&
				   same_src(&r->memo_src, &p->src);
			if (!memo && p->kind == TCZ_PIECE_CHUNK && p->off == 0 &&
			    p->len == p->src.len) {
				/* a whole chunk decodes in place */
				rc = tcz_view_decode(r, v, &p->src, out);
				if (rc && bad)
					*bad = p->src;
				out += p->len;
				*got += p->len;
				continue;
			}
			if (!memo) {
				if (!r->memo && !(r->memo = malloc(TCZ_CHUNK_MAX))) {
					rc = -ENOMEM;
					break;
				}
				r->memo_ok = 0;
				rc = tcz_view_decode(r, v, &p->src, r->memo);
				if (rc) {
					if (bad)
						*bad = p->src;
					break;
				}
				r->memo_ok = 1;
				r->memo_id = v->content;
				r->memo_src = p->src;
			}
			chunk = r->memo;
		}
		tcz_piece_copy(p, chunk, out);
		out += p->len;
		*got += p->len;
	}
	if (rc)
		*got = 0;
	tcz_pieces_free(&l);
	return rc;
}

int tcz_view_open_path(tcz_store *s, const char *path, tcz_mview **v,
		       uint32_t *file)
{
	*v = NULL;
	while (*path == '/')
		path++;
	const char *slash = strchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : strlen(path);
	char name[TCZ_NAME_MAX + 1];
	if (n == 0 || n > TCZ_NAME_MAX)
		return tcz__fail(-EINVAL, "'%s' is not a path of the tree "
					  "(MODEL/FILE)",
				 path);
	memcpy(name, path, n);
	name[n] = 0;
	if (!slash || !slash[1])
		return tcz__fail(-EISDIR, "%s is a directory", path);
	if (strcmp(name, "asic") == 0 || strcmp(name, "streams") == 0)
		return tcz__fail(-ENOENT, "no file %s (%s/ holds nothing yet)",
				 path, name);
	int rc = tcz_mview_open(s, name, v);
	if (rc)
		return rc;
	rc = tcz_mview_path(*v, slash + 1, file);
	if (rc) {
		tcz_mview_put(*v);
		*v = NULL;
		if (rc == -EISDIR)
			return tcz__fail(rc, "%s is a directory", path);
		return tcz__fail(rc, "model %s has no file %s", name, slash + 1);
	}
	return 0;
}

/* ---- for other views (asic images) -------------------------------------- */

size_t tcz_view_tt_floats(const tcz_mview *v, uint32_t t)
{
	const tcz_tensor *tn = &v->m->tensors[t];
	return tn->codec == TCZ_CODEC_TT ? core_off(tn, tn->tt_order) : 0;
}

int tcz_view_tt_cores(tcz_reader *r, const tcz_mview *v, uint32_t t,
		      float *dst)
{
	if (t >= v->m->n_tensors || v->m->tensors[t].codec != TCZ_CODEC_TT)
		return -EINVAL;
	return load_cores(r, v, t, dst);
}

uint32_t tcz_mview_npy_file(const tcz_mview *v, uint32_t t)
{
	for (uint32_t f = 0; f < v->nfiles; f++)
		if (v->files[f].kind == TCZ_VF_NPY && v->files[f].index == t)
			return f;
	return UINT32_MAX;
}

tcz_store *tcz__mview_store(const tcz_mview *v)
{
	return v->s;
}
