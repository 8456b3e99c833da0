/* The FUSE low-level handlers. Each replies exactly once. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>

#include "fs/internal.h"

#define ROOT_TIMEOUT 1.0     /* models come and go */
#define MODEL_TIMEOUT 3600.0 /* a model's content never changes */

static tczfs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* What an inode names, with a model reference when it is in a model. */
typedef struct node {
	enum { N_ROOT, N_ASIC, N_STREAMS, N_DIR, N_FILE, N_ASIC_DIR,
	       N_ASIC_FILE, N_STREAM_FILE, N_STREAM_NPY } kind;
	fs_model *fm;
	tcz_aview *av;  /* N_ASIC_FILE: a reference */
	fs_sent *st;    /* N_STREAM_*: the stream (stream.c) */
	uint32_t index; /* N_FILE: the view's file index; N_DIR: its dir;
			 * N_ASIC_FILE: the asic view's file index */
} node;

static void node_put(tczfs *fs, node *n)
{
	tcz_aview_put(n->av);
	n->av = NULL;
	fs_model_put(fs, n->fm);
	n->fm = NULL;
}

/* A directory of a model: the model's own (0), layers/ (1), the others. */
static uint32_t dir_local(uint32_t d)
{
	return d == TCZ_VDIR_MODEL ? LOCAL_DIR
	       : d == TCZ_VDIR_LAYERS ? LOCAL_LAYERS
				     : LOCAL_SUBDIR0 + d;
}

static int is_stream(const node *n)
{
	return n->kind == N_STREAM_FILE || n->kind == N_STREAM_NPY;
}

static int resolve(tczfs *fs, fuse_ino_t ino, node *n)
{
	n->fm = NULL;
	n->av = NULL;
	n->st = NULL;
	n->index = 0;
	if (ino == INO_ROOT || ino == INO_ASIC || ino == INO_STREAMS) {
		n->kind = ino == INO_ROOT ? N_ROOT
			  : ino == INO_ASIC ? N_ASIC
					    : N_STREAMS;
		return 0;
	}
	uint64_t iid = (uint64_t)ino >> 32;
	uint32_t local = (uint32_t)ino;
	if ((local == LOCAL_STREAM_DATA || local == LOCAL_STREAM_NPY) &&
	    (n->st = fs_stream_by_id(fs, iid)) != NULL) {
		n->kind = local == LOCAL_STREAM_NPY ? N_STREAM_NPY : N_STREAM_FILE;
		return 0;
	}
	fs_model *fm = fs_model_by_iid(fs, iid);
	if (!fm)
		return -ENOENT;
	if (local == LOCAL_DIR || local == LOCAL_LAYERS) {
		n->kind = N_DIR;
		n->index = local == LOCAL_DIR ? TCZ_VDIR_MODEL : TCZ_VDIR_LAYERS;
	} else if (local >= LOCAL_SUBDIR0 &&
		   local - LOCAL_SUBDIR0 < tcz_mview_ndirs(fm->v) &&
		   local - LOCAL_SUBDIR0 > TCZ_VDIR_LAYERS) {
		n->kind = N_DIR;
		n->index = local - LOCAL_SUBDIR0;
	} else if (local >= LOCAL_FILE0 && local < LOCAL_ASIC_DIR &&
		   local - LOCAL_FILE0 < tcz_mview_nfiles(fm->v)) {
		n->kind = N_FILE;
		n->index = local - LOCAL_FILE0;
	} else if (local == LOCAL_ASIC_DIR) {
		n->kind = N_ASIC_DIR;
	} else if (local >= LOCAL_ASIC_FILE0 && local < LOCAL_SUBDIR0) {
		int rc = fs_asic_view(fs, fm, &n->av);
		if (rc == 0 && (rc = fs_asic_file_of(n->av, local, &n->index)))
			tcz_aview_put(n->av);
		if (rc) {
			n->av = NULL;
			fs_model_put(fs, fm);
			return rc;
		}
		n->kind = N_ASIC_FILE;
	} else {
		fs_model_put(fs, fm);
		return -ENOENT;
	}
	n->fm = fm;
	return 0;
}

static void fill_attr(tczfs *fs, fuse_ino_t ino, const node *n,
		      struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 1 << 20;
	uint64_t t = n->fm ? n->fm->m->import_time : fs->mount_time;
	if (n->kind == N_FILE)
		t = tcz_mview_file(n->fm->v, n->index)->mtime;
	st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec =
		(time_t)t;
	switch (n->kind) {
	case N_ROOT:
	case N_ASIC:
	case N_STREAMS:
	case N_ASIC_DIR:
	case N_DIR:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = n->kind == N_ROOT ? 4
			       : n->kind == N_DIR
				       ? 2 + tcz_mview_subdir_count(n->fm->v, n->index)
				       : 2;
		break;
	case N_FILE:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)tcz_mview_file(n->fm->v, n->index)->size;
		break;
	case N_ASIC_FILE:
		/* sizes come from shapes: nothing is decoded here */
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)tcz_aview_file(n->av, n->index)->size;
		break;
	case N_STREAM_FILE:
	case N_STREAM_NPY: /* stream.c: never here */
		break;
	}
	st->st_blocks = (st->st_size + 511) / 512;
}

static void reply_entry(fuse_req_t req, tczfs *fs, fuse_ino_t ino,
			const node *n, double timeout)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof e);
	e.ino = ino;
	e.attr_timeout = timeout;
	e.entry_timeout = timeout;
	fill_attr(fs, ino, n, &e.attr);
	fuse_reply_entry(req, &e);
}

static void tczfs_ll_lookup(fuse_req_t req, fuse_ino_t parent,
			    const char *name)
{
	tczfs *fs = fs_of(req);
	node p, n = {0};
	int rc = resolve(fs, parent, &p);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	fuse_ino_t ino = 0;
	double timeout = MODEL_TIMEOUT;
	if (p.kind == N_STREAMS) {
		fs_stream_lookup(fs, req, name);
		return;
	}
	switch (p.kind) {
	case N_ROOT:
		timeout = ROOT_TIMEOUT;
		if (strcmp(name, "asic") == 0) {
			n.kind = N_ASIC;
			ino = INO_ASIC;
		} else if (strcmp(name, "streams") == 0) {
			n.kind = N_STREAMS;
			ino = INO_STREAMS;
		} else {
			rc = fs_model_by_name(fs, name, &n.fm);
			n.kind = N_DIR;
			n.index = TCZ_VDIR_MODEL;
			if (rc == 0)
				ino = ino_make(n.fm->iid, LOCAL_DIR);
		}
		break;
	case N_ASIC:
		timeout = ROOT_TIMEOUT;
		if ((rc = fs_model_by_name(fs, name, &n.fm)) == 0) {
			n.kind = N_ASIC_DIR;
			ino = ino_make(n.fm->iid, LOCAL_ASIC_DIR);
		}
		break;
	case N_ASIC_DIR:
		timeout = ROOT_TIMEOUT; /* profiles come and go */
		n.fm = p.fm;
		p.fm = NULL;
		if ((rc = fs_asic_view(fs, n.fm, &n.av)) == 0 &&
		    (rc = tcz_aview_lookup(n.av, name, &n.index)) == 0) {
			n.kind = N_ASIC_FILE;
			ino = ino_make(n.fm->iid, fs_asic_local(n.av, n.index));
		}
		break;
	case N_DIR:
		n.fm = p.fm;
		p.fm = NULL;
		if ((rc = tcz_mview_lookup(n.fm->v, p.index, name, &n.index)) == 0) {
			n.kind = N_FILE;
			ino = ino_make(n.fm->iid, LOCAL_FILE0 + n.index);
		} else if ((rc = tcz_mview_lookup_dir(n.fm->v, p.index, name,
						      &n.index)) == 0) {
			n.kind = N_DIR;
			ino = ino_make(n.fm->iid, dir_local(n.index));
		}
		break;
	default:
		rc = p.kind == N_FILE || is_stream(&p) ? -ENOTDIR : -ENOENT;
	}
	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply_entry(req, fs, ino, &n, timeout);
	node_put(fs, &p);
	node_put(fs, &n);
}

static void tczfs_ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	/* inode numbers are computed, not allocated: nothing to drop */
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void tczfs_ll_forget_multi(fuse_req_t req, size_t count,
				  struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

static void tczfs_ll_getattr(fuse_req_t req, fuse_ino_t ino,
			     struct fuse_file_info *fi)
{
	tczfs *fs = fs_of(req);
	node n;
	int rc = resolve(fs, ino, &n);
	fs_file *f = rc == -ENOENT && fi ? fs_handle_get(fs, fi->fh, FS_H_FILE)
					  : NULL;
	if (f) {
		/* fstat of a file whose model moved on: what it reads */
		n.kind = f->av ? N_ASIC_FILE : N_FILE;
		n.fm = fs_model_ref(f->fm);
		n.av = f->av ? tcz_aview_ref(f->av) : NULL;
		n.index = f->file;
		fs_handle_put(fs, fi->fh);
		rc = 0;
	}
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (is_stream(&n)) {
		fs_stream_getattr(fs, req, n.st, n.kind == N_STREAM_NPY);
		return;
	}
	struct stat st;
	fill_attr(fs, ino, &n, &st);
	fuse_reply_attr(req, &st,
			n.kind == N_ROOT || n.kind == N_ASIC ||
					n.kind == N_ASIC_DIR || n.kind == N_ASIC_FILE ||
					(n.kind == N_DIR && n.index == TCZ_VDIR_MODEL)
				? ROOT_TIMEOUT
				: MODEL_TIMEOUT);
	node_put(fs, &n);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Directory listings are built whole and served in slices. */
typedef struct dirbuf {
	char *p;
	size_t len, cap;
} dirbuf;

static int dir_add(fuse_req_t req, dirbuf *b, const char *name,
		   fuse_ino_t ino, mode_t mode)
{
	struct stat st;
	memset(&st, 0, sizeof st);
	st.st_ino = ino;
	st.st_mode = mode;
	size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
	if (b->len + need > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->len + need)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	fuse_add_direntry(req, b->p + b->len, need, name, &st,
			  (off_t)(b->len + need));
	b->len += need;
	return 0;
}

typedef struct stream_dir {
	fuse_req_t req;
	dirbuf *b;
} stream_dir;

static int stream_add(void *ctx, const char *name, fuse_ino_t ino)
{
	stream_dir *d = ctx;
	return dir_add(d->req, d->b, name, ino, S_IFREG);
}

/* Builds the whole listing of directory ino into b. */
static int list_dir(fuse_req_t req, tczfs *fs, fuse_ino_t ino, dirbuf *b)
{
	node n;
	int rc = resolve(fs, ino, &n);
	if (rc)
		return rc;
	fuse_ino_t up = n.kind == N_ASIC_DIR ? INO_ASIC : INO_ROOT;
	if (n.kind == N_DIR && n.index != TCZ_VDIR_MODEL)
		up = ino_make(n.fm->iid,
			      dir_local(tcz_mview_dir(n.fm->v, n.index)->parent));
	if (n.kind == N_FILE || n.kind == N_ASIC_FILE || is_stream(&n)) {
		node_put(fs, &n);
		return -ENOTDIR;
	}
	rc = dir_add(req, b, ".", ino, S_IFDIR) ||
	     dir_add(req, b, "..", up, S_IFDIR);
	switch (rc ? -1 : (int)n.kind) {
	case N_ROOT:
	case N_ASIC: {
		fs_refresh(fs); /* a listing shows what is there now */
		tcz_snap *sn = NULL;
		char **names = NULL;
		size_t cnt = 0;
		rc = tcz_snap_begin(fs->store, &sn);
		if (rc == 0)
			rc = tcz_snap_list(sn, &names, &cnt);
		if (rc == 0 && n.kind == N_ROOT)
			rc = dir_add(req, b, "asic", INO_ASIC, S_IFDIR) ||
			     dir_add(req, b, "streams", INO_STREAMS, S_IFDIR);
		uint32_t local = n.kind == N_ROOT ? LOCAL_DIR : LOCAL_ASIC_DIR;
		for (size_t i = 0; rc == 0 && i < cnt; i++) {
			uint64_t id, rev, iid;
			if (tcz_snap_model_ident(sn, names[i], &id, &rev, &iid) == 0)
				rc = dir_add(req, b, names[i],
					     ino_make(iid, local), S_IFDIR);
		}
		tcz_snap_end(sn);
		/* the remote's models, where no local one has the name */
		char **rn = NULL;
		uint32_t *rid = NULL;
		size_t rcnt = 0;
		if (rc == 0)
			rc = fs_remote_names(fs, &rn, &rid, &rcnt);
		for (size_t i = 0; rc == 0 && i < rcnt; i++)
			if (!bsearch(&rn[i], names, cnt, sizeof *names, name_cmp))
				rc = dir_add(req, b, rn[i],
					     ino_make(rid[i], local), S_IFDIR);
		tcz_names_free(rn, rcnt);
		free(rid);
		tcz_names_free(names, cnt);
		break;
	}
	case N_DIR: {
		uint32_t dir = n.index;
		uint32_t cnt = tcz_mview_dir_count(n.fm->v, dir);
		for (uint32_t k = 0; rc == 0 && k < cnt; k++) {
			uint32_t f = tcz_mview_dir_file(n.fm->v, dir, k);
			rc = dir_add(req, b, tcz_mview_file(n.fm->v, f)->name,
				     ino_make(n.fm->iid, LOCAL_FILE0 + f), S_IFREG);
		}
		cnt = tcz_mview_subdir_count(n.fm->v, dir);
		for (uint32_t k = 0; rc == 0 && k < cnt; k++) {
			uint32_t d = tcz_mview_subdir(n.fm->v, dir, k);
			rc = dir_add(req, b, tcz_mview_dir(n.fm->v, d)->name,
				     ino_make(n.fm->iid, dir_local(d)), S_IFDIR);
		}
		break;
	}
	case N_ASIC_DIR: {
		tcz_aview *a;
		if ((rc = fs_asic_view(fs, n.fm, &a)) != 0)
			break;
		for (uint32_t k = 0; rc == 0 && k < tcz_aview_nfiles(a); k++)
			rc = dir_add(req, b, tcz_aview_file(a, k)->name,
				     ino_make(n.fm->iid, fs_asic_local(a, k)),
				     S_IFREG);
		tcz_aview_put(a);
		break;
	}
	case N_STREAMS: {
		stream_dir d = {req, b};
		rc = fs_stream_readdir(fs, stream_add, &d);
		break;
	}
	default: /* an error above */
		break;
	}
	node_put(fs, &n);
	return rc < 0 ? rc : rc ? -ENOMEM : 0;
}

static void dirbuf_free(tczfs *fs, void *p)
{
	(void)fs;
	dirbuf *b = p;
	free(b->p);
	free(b);
}

/* A listing is made once per opendir and served in slices from it, so
 * the offsets the kernel hands back always fall on entries of the same
 * listing, however the store changes meanwhile. */
static void tczfs_ll_opendir(fuse_req_t req, fuse_ino_t ino,
			     struct fuse_file_info *fi)
{
	tczfs *fs = fs_of(req);
	dirbuf *b = calloc(1, sizeof *b);
	int rc = b ? list_dir(req, fs, ino, b) : -ENOMEM;
	if (rc == 0 && !(fi->fh = fs_handle_new(fs, FS_H_DIR, b, dirbuf_free)))
		rc = -ENOMEM;
	if (rc) {
		if (b)
			dirbuf_free(fs, b);
		fuse_reply_err(req, -rc);
		return;
	}
	if (fuse_reply_open(req, fi) == -ENOENT)
		fs_handle_close(fs, fi->fh); /* interrupted: no release comes */
}

static void tczfs_ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
			     off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	tczfs *fs = fs_of(req);
	const dirbuf *b = fs_handle_get(fs, fi->fh, FS_H_DIR);
	if (!b) {
		fuse_reply_err(req, EBADF);
		return;
	}
	size_t at = (size_t)off, end = at;
	/* whole entries only: each records where the next one starts */
	struct fuse_dirent_hdr {
		uint64_t ino, off;
		uint32_t namelen, type;
	} h;
	while (end + sizeof h <= b->len) {
		memcpy(&h, b->p + end, sizeof h);
		size_t next = (size_t)h.off;
		if (next <= end || next > b->len || next - at > size)
			break;
		end = next;
	}
	if (at < b->len && end == at && off > 0 && size >= b->len - at)
		fuse_reply_err(req, EINVAL); /* not an offset we gave */
	else
		fuse_reply_buf(req, end > at ? b->p + at : NULL, end - at);
	fs_handle_put(fs, fi->fh);
}

static void tczfs_ll_releasedir(fuse_req_t req, fuse_ino_t ino,
				struct fuse_file_info *fi)
{
	(void)ino;
	fs_handle_close(fs_of(req), fi->fh);
	fuse_reply_err(req, 0);
}

static void file_free(tczfs *fs, void *p)
{
	fs_file *f = p;
	tcz_aview_put(f->av);
	fs_model_put(fs, f->fm);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static void tczfs_ll_open(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	tczfs *fs = fs_of(req);
	node n;
	int rc = resolve(fs, ino, &n);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (is_stream(&n)) {
		fs_stream_open(fs, req, n.st, n.kind == N_STREAM_NPY, fi);
		return;
	}
	if (n.kind != N_FILE && n.kind != N_ASIC_FILE) {
		node_put(fs, &n);
		fuse_reply_err(req, EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		node_put(fs, &n);
		fuse_reply_err(req, EROFS);
		return;
	}
	fs_file *f = calloc(1, sizeof *f);
	if (!f) {
		node_put(fs, &n);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* the open file holds the model (its pinned view), not a store
	 * snapshot: it reads that content however long it stays open */
	f->fm = n.fm;
	f->av = n.av;
	f->file = n.index;
	pthread_mutex_init(&f->lock, NULL);
	if (!(fi->fh = fs_handle_new(fs, FS_H_FILE, f, file_free))) {
		file_free(fs, f);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->keep_cache = 1; /* immutable content: page cache stays valid */
	fi->direct_io = 0;  /* shared mmap must work */
	if (fuse_reply_open(req, fi) == -ENOENT)
		fs_handle_close(fs, fi->fh); /* interrupted: no release comes */
}

static void tczfs_ll_read(fuse_req_t req, fuse_ino_t ino, size_t size,
			  off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	tczfs *fs = fs_of(req);
	fs_file *f = fs_handle_get(fs, fi->fh, FS_H_FILE);
	if (!f) {
		fs_stream_read(fs, req, size, (uint64_t)off, fi); /* or EBADF */
		return;
	}
	if (f->av)
		fs_asic_read(fs, req, f, size, (uint64_t)off);
	else
		fs_read(fs, req, f, size, (uint64_t)off);
	fs_handle_put(fs, fi->fh);
}

static void tczfs_ll_release(fuse_req_t req, fuse_ino_t ino,
			     struct fuse_file_info *fi)
{
	(void)ino;
	fs_handle_close(fs_of(req), fi->fh);
	fuse_reply_err(req, 0);
}

/* Only streams/<name> takes writes (model files open read-only). */
static void tczfs_ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
			   size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	fs_stream_write(fs_of(req), req, buf, size, (uint64_t)off, fi);
}

/* Implemented for every file, so that the kernel keeps sending them
 * (an ENOSYS would turn them off for the whole mount). */
static void tczfs_ll_flush(fuse_req_t req, fuse_ino_t ino,
			   struct fuse_file_info *fi)
{
	(void)ino;
	fs_stream_sync(fs_of(req), req, fi, 1);
}

static void tczfs_ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
			   struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync; /* a commit is all or nothing */
	fs_stream_sync(fs_of(req), req, fi, 0);
}

static void tczfs_ll_setattr(fuse_req_t req, fuse_ino_t ino,
			     struct stat *attr, int to_set,
			     struct fuse_file_info *fi)
{
	(void)fi;
	tczfs *fs = fs_of(req);
	node n;
	int rc = resolve(fs, ino, &n);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (is_stream(&n))
		fs_stream_setattr(fs, req, n.st, n.kind == N_STREAM_NPY, attr,
				  to_set);
	else
		fuse_reply_err(req, EROFS); /* models never change this way */
	node_put(fs, &n);
}

/* ---- extended attributes ------------------------------------------------ */

static const char *const xattr_names[] = {
	"user.tczfs.codec",    "user.tczfs.ratio",     "user.tczfs.rel_error",
	"user.tczfs.max_abs_error", "user.tczfs.tier", "user.tczfs.dtype",
	"user.tczfs.shape",    "user.tczfs.reads",     "user.tczfs.bytes_read",
	"user.tczfs.last_access", "user.tczfs.generation", "user.tczfs.decodes",
};
#define N_XATTR (sizeof xattr_names / sizeof xattr_names[0])

/* Value of attribute k of a file, into buf; -ENODATA when it has none. */
static int xattr_value(const tczfs *fs, const node *n, size_t k, char *buf,
		       size_t cap)
{
	const fs_model *fm = n->fm;
	const tcz_model *m = fm->m;
	if (n->kind != N_FILE)
		return -ENODATA;
	const tcz_vfile *vf = tcz_mview_file(fm->v, n->index);
	if (vf->kind == TCZ_VF_NPY) {
		uint32_t ti = vf->index;
		const tcz_tensor *t = &m->tensors[ti];
		const fs_tstat *s = &fm->st[ti];
		switch (k) {
		case 0:
			if (t->codec == TCZ_CODEC_QUANT)
				return snprintf(buf, cap, "quant%u", t->bits);
			return snprintf(buf, cap, "%s", tcz_codec_name(t->codec));
		case 1:
			return snprintf(buf, cap, "%.4f",
					t->stored_bytes ? (double)t->nbytes /
								  t->stored_bytes
							: 0.0);
		case 2:
			return snprintf(buf, cap, "%.6g", t->rel_error);
		case 3:
			return snprintf(buf, cap, "%.6g", t->max_abs);
		case 4:
			return snprintf(buf, cap, "%s", fs_tier_of(fs, fm, ti));
		case 5:
			return snprintf(buf, cap, "%s", tcz_dtype_name(t->dtype));
		case 6: {
			int o = snprintf(buf, cap, "[");
			for (uint32_t d = 0; d < t->ndim && o < (int)cap; d++)
				o += snprintf(buf + o, cap - (size_t)o, "%s%llu",
					      d ? ", " : "",
					      (unsigned long long)t->shape[d]);
			if (o < (int)cap)
				o += snprintf(buf + o, cap - (size_t)o, "]");
			return o;
		}
		case 7:
			return snprintf(buf, cap, "%llu",
					(unsigned long long)fs_stat_reads(fm, ti));
		case 8:
			return snprintf(buf, cap, "%llu",
					(unsigned long long)fs_stat_bytes(fm, ti));
		case 9:
			return snprintf(buf, cap, "%llu",
					(unsigned long long)atomic_load(&s->last));
		case 10:
			return snprintf(buf, cap, "%u", vf->gen);
		case 11:
			return snprintf(buf, cap, "%llu",
					(unsigned long long)atomic_load(&s->decodes));
		}
		return -ENODATA;
	}
	/* a model file: figures over the tensors it holds */
	const tcz_file *f = &m->files[vf->index];
	uint64_t stored = 0, reads = 0, bytes = 0, last = 0, decodes = 0;
	double rel = 0, mabs = 0;
	int codecs = 0, any = 0;
	for (uint32_t e = 0; e < f->n_extents; e++) {
		const tcz_extent *x = &f->extents[e];
		if (x->kind == TCZ_EXT_BLOB) {
			stored += m->blobs[x->index].stored_bytes;
			continue;
		}
		const tcz_tensor *t = &m->tensors[x->index];
		const fs_tstat *s = &fm->st[x->index];
		any = 1;
		stored += t->stored_bytes;
		codecs |= 1 << t->codec;
		if (t->rel_error > rel)
			rel = t->rel_error;
		if (t->max_abs > mabs)
			mabs = t->max_abs;
		reads += fs_stat_reads(fm, x->index);
		bytes += fs_stat_bytes(fm, x->index);
		decodes += atomic_load(&s->decodes);
		uint64_t l = atomic_load(&s->last);
		if (l > last)
			last = l;
	}
	switch (k) {
	case 0:
		if (!any)
			return snprintf(buf, cap, "zstd");
		if ((codecs & (codecs - 1)) == 0)
			return snprintf(buf, cap, "%s",
					tcz_codec_name((tcz_codec)__builtin_ctz(
						(unsigned)codecs)));
		return snprintf(buf, cap, "mixed");
	case 1:
		return snprintf(buf, cap, "%.4f",
				stored ? (double)f->size / stored : 0.0);
	case 2:
		return snprintf(buf, cap, "%.6g", rel);
	case 3:
		return snprintf(buf, cap, "%.6g", mabs);
	case 7:
		return any ? snprintf(buf, cap, "%llu", (unsigned long long)reads)
			   : -ENODATA;
	case 8:
		return any ? snprintf(buf, cap, "%llu", (unsigned long long)bytes)
			   : -ENODATA;
	case 9:
		return any ? snprintf(buf, cap, "%llu", (unsigned long long)last)
			   : -ENODATA;
	case 10:
		return snprintf(buf, cap, "%u", vf->gen);
	case 11:
		return any ? snprintf(buf, cap, "%llu", (unsigned long long)decodes)
			   : -ENODATA;
	}
	return -ENODATA;
}

static void tczfs_ll_getxattr(fuse_req_t req, fuse_ino_t ino,
			      const char *name, size_t size)
{
	tczfs *fs = fs_of(req);
	node n;
	int rc = resolve(fs, ino, &n);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	char buf[1024];
	int len = -ENODATA;
	for (size_t k = 0; k < N_XATTR; k++)
		if (strcmp(name, xattr_names[k]) == 0 && n.fm)
			len = xattr_value(fs, &n, k, buf, sizeof buf);
	if (is_stream(&n))
		len = fs_stream_getxattr(fs, n.st, name, buf, sizeof buf);
	/* snprintf reports what it would have written: never reply with
	 * more than buf holds */
	if (len >= (int)sizeof buf)
		len = -E2BIG;
	if (len < 0)
		fuse_reply_err(req, -len);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)len);
	else if (size < (size_t)len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, (size_t)len);
	node_put(fs, &n);
}

static void tczfs_ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	tczfs *fs = fs_of(req);
	node n;
	int rc = resolve(fs, ino, &n);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	char list[1024], tmp[1024];
	size_t len = 0;
	if (is_stream(&n)) {
		int l = fs_stream_listxattr(fs, n.st, list, sizeof list);
		len = l > 0 ? (size_t)l : 0;
	}
	for (size_t k = 0; n.fm && k < N_XATTR; k++) {
		if (xattr_value(fs, &n, k, tmp, sizeof tmp) < 0)
			continue;
		size_t l = strlen(xattr_names[k]) + 1;
		memcpy(list + len, xattr_names[k], l);
		len += l;
	}
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, list, len);
	node_put(fs, &n);
}

/* user.tczfs.tier = hot|warm|cold|auto pins the tier of a tensor file, or
 * of every tensor of a model file; kept in the store for every daemon. */
static void tczfs_ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			      const char *value, size_t size, int flags)
{
	(void)flags;
	tczfs *fs = fs_of(req);
	node n;
	int rc = resolve(fs, ino, &n);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (is_stream(&n)) {
		fuse_reply_err(req, -fs_stream_setxattr(fs, n.st, name, value, size));
		return;
	}
	if (strcmp(name, "user.tczfs.tier") != 0 || n.kind != N_FILE) {
		node_put(fs, &n);
		fuse_reply_err(req, strncmp(name, "user.tczfs.", 11) == 0 ? EPERM
									   : ENOTSUP);
		return;
	}
	const tcz_vfile *vf = tcz_mview_file(n.fm->v, n.index);
	const tcz_model *m = n.fm->m;
	uint32_t *idx = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *idx), k = 0;
	if (idx && vf->kind == TCZ_VF_NPY) {
		idx[k++] = vf->index;
	} else if (idx) {
		const tcz_file *f = &m->files[vf->index];
		for (uint32_t e = 0; e < f->n_extents; e++)
			if (f->extents[e].kind == TCZ_EXT_TENSOR)
				idx[k++] = f->extents[e].index;
	}
	rc = !idx ? -ENOMEM : k ? fs_pin(fs, n.fm, idx, k, value, size) : -EPERM;
	free(idx);
	fs_model_put(fs, n.fm);
	fuse_reply_err(req, -rc);
}

static void tczfs_ll_removexattr(fuse_req_t req, fuse_ino_t ino,
				 const char *name)
{
	(void)ino;
	fuse_reply_err(req, strncmp(name, "user.tczfs.", 11) == 0 ? EPERM
								   : ENODATA);
}

static void tczfs_ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	tczfs *fs = fs_of(req);
	struct statvfs sv;
	memset(&sv, 0, sizeof sv);
	uint64_t bytes = 0;
	tcz_store_disk_size(fs->store, &bytes);
	sv.f_bsize = sv.f_frsize = 4096;
	sv.f_blocks = bytes / 4096;
	sv.f_namemax = 255;
	sv.f_flag = fs->ro ? ST_RDONLY : 0; /* streams/ takes writes */
	fuse_reply_statfs(req, &sv);
}

static void tczfs_ll_init(void *userdata, struct fuse_conn_info *conn)
{
	tczfs *fs = userdata;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ; /* parallel reads per file */
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA; /* immutable */
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	/* the kernel keeps the smaller of this and the mount's readahead
	 * (raised by the maintenance thread, which waits for this) */
	conn->max_readahead = TCZ_FS_READAHEAD;
	atomic_store(&fs->inited, 1);
}

const struct fuse_lowlevel_ops tczfs_ll_ops = {
	.init = tczfs_ll_init,
	.lookup = tczfs_ll_lookup,
	.forget = tczfs_ll_forget,
	.forget_multi = tczfs_ll_forget_multi,
	.getattr = tczfs_ll_getattr,
	.opendir = tczfs_ll_opendir,
	.readdir = tczfs_ll_readdir,
	.releasedir = tczfs_ll_releasedir,
	.open = tczfs_ll_open,
	.read = tczfs_ll_read,
	.release = tczfs_ll_release,
	.write = tczfs_ll_write,
	.flush = tczfs_ll_flush,
	.fsync = tczfs_ll_fsync,
	.setattr = tczfs_ll_setattr,
	.getxattr = tczfs_ll_getxattr,
	.listxattr = tczfs_ll_listxattr,
	.setxattr = tczfs_ll_setxattr,
	.removexattr = tczfs_ll_removexattr,
	.statfs = tczfs_ll_statfs,
};
