/* streams/: the store's temporal streams (SPEC 6) as files.
 *
 * streams/<name> holds the stream's committed frames decoded to
 * little-endian f32 and takes appends; streams/<name>.npy is a read-only
 * NumPy view [frames, N] float32 of the same frames. Nothing about a
 * stream is cached here but its name and id (inode numbers derive from
 * the id) and access counts not saved yet: lookups, listings and getattr
 * ask the store every time, so streams that the command line creates,
 * removes or appends to show at once, and sizes grow as frames arrive.
 *
 * Locks: the table's mutex guards the table only; an open file's mutex
 * hands out its reader and its writer side and is never held across a
 * store call. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>

#include "fs/internal.h"
#include "store/stream.h"

/* Finished segments are committed by the write that finds this many
 * encoded bytes waiting, or that comes COMMIT_MS after the last commit:
 * a writer that never calls fsync() still shows its frames to readers
 * and does not hold much in memory. The open segment waits for its end
 * or a flush (so the segmentation does not depend on the timing). */
#define COMMIT_BYTES (1u << 20)
#define COMMIT_MS 1000u
#define NPY_HDR_CAP 256 /* tcz_stream_npy_header: always enough */

/* A stream seen by a lookup or a listing. The name of an id never
 * changes (a stream created again gets a new id), so entries are never
 * changed but for their counters, and never freed before unmount: nodes
 * and open files point at them. */
struct fs_sent {
	uint64_t id;
	char *name;
	/* reads not saved yet (fs_streams_save), and the last (unix s) */
	atomic_uint_fast64_t reads, bytes, last;
	uint64_t data_rev; /* last seen (guarded by the table's lock) */
};

struct fs_streams {
	pthread_mutex_t lock; /* guards ents, n, cap, gen, gen_ok and every
			       * fs_sent.data_rev */
	fs_sent **ents;       /* sorted by id */
	size_t n, cap;
	uint64_t gen; /* the stream generation fs_streams_check last saw */
	int gen_ok;
};

/* An open stream file. */
typedef struct fs_sfile {
	fs_sent *e;
	int npy, writable, append;
	pthread_mutex_t lock; /* guards idle, busy */
	pthread_cond_t cond;  /* busy went to 0 */
	tcz_stream_reader *idle; /* a reader no request is using */
	/* the writer side, owned by the request that set busy: */
	int busy;
	tcz_stream_writer *w; /* NULL after a flush until the next write */
	unsigned char *part;  /* a partial frame waiting for its rest */
	size_t part_len, frame_bytes;
	uint64_t end;     /* the offset the next write must start at */
	int werr;         /* a commit that failed after its write returned */
	uint64_t commit_ms; /* the last commit (monotonic ms) */
	atomic_int gone_logged;
} fs_sfile;

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *msg(int rc)
{
	return tcz_store_errmsg()[0] ? tcz_store_errmsg() : strerror(-rc);
}

static fuse_ino_t ino_of(const fs_sent *e, int npy)
{
	return ino_make(e->id, npy ? LOCAL_STREAM_NPY : LOCAL_STREAM_DATA);
}

/* ---- the table ---------------------------------------------------------- */

int fs_streams_init(tczfs *fs)
{
	fs_streams *t = calloc(1, sizeof *t);
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	fs->streams = t;
	/* -o ro: the kernel refuses writes itself; the modes say so too */
	const char *o = fs->opts.fuse_opts ? fs->opts.fuse_opts : "";
	while (*o) {
		size_t l = strcspn(o, ",");
		if (l == 2 && strncmp(o, "ro", 2) == 0)
			fs->ro = 1;
		o += l + (o[l] == ',');
	}
	return 0;
}

void fs_streams_free(tczfs *fs)
{
	fs_streams *t = fs->streams;
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->ents[i]->name);
		free(t->ents[i]);
	}
	free(t->ents);
	pthread_mutex_destroy(&t->lock);
	free(t);
	fs->streams = NULL;
}

/* Index of the first entry with id >= id. Called with the lock. */
static size_t pos_of(const fs_streams *t, uint64_t id)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (t->ents[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

fs_sent *fs_stream_by_id(tczfs *fs, uint64_t id)
{
	fs_streams *t = fs->streams;
	fs_sent *e = NULL;
	pthread_mutex_lock(&t->lock);
	size_t p = pos_of(t, id);
	if (p < t->n && t->ents[p]->id == id)
		e = t->ents[p];
	pthread_mutex_unlock(&t->lock);
	return e;
}

/* Room for one more entry. Called with the lock. */
static int grow(fs_streams *t)
{
	size_t cap = t->cap ? t->cap * 2 : 16;
	fs_sent **v = realloc(t->ents, cap * sizeof *v);
	if (!v)
		return -ENOMEM;
	t->ents = v;
	t->cap = cap;
	return 0;
}

/* The entry of the stream i describes (name), added if new; NULL when
 * out of memory. */
static fs_sent *intern(tczfs *fs, const char *name, const tcz_stream_info *i)
{
	fs_sent *e = fs_stream_by_id(fs, i->id);
	if (e)
		return e;
	fs_sent *ne = calloc(1, sizeof *ne);
	if (!ne || !(ne->name = strdup(name))) {
		free(ne);
		return NULL;
	}
	ne->id = i->id;
	ne->data_rev = i->data_rev;
	fs_streams *t = fs->streams;
	pthread_mutex_lock(&t->lock);
	size_t p = pos_of(t, i->id);
	if (p < t->n && t->ents[p]->id == i->id) {
		e = t->ents[p]; /* another thread was first */
	} else if (t->n < t->cap || grow(t) == 0) {
		memmove(t->ents + p + 1, t->ents + p,
			(t->n - p) * sizeof *t->ents);
		t->ents[p] = e = ne;
		t->n++;
		ne = NULL;
	}
	pthread_mutex_unlock(&t->lock);
	if (ne) {
		free(ne->name);
		free(ne);
	}
	return e;
}

/* The entries as they are now (the table only grows); free() the list. */
static fs_sent **entries(tczfs *fs, size_t *n)
{
	fs_streams *t = fs->streams;
	pthread_mutex_lock(&t->lock);
	fs_sent **v = malloc((t->n ? t->n : 1) * sizeof *v);
	*n = v ? t->n : 0;
	if (v && t->n) /* ents is NULL before the first stream */
		memcpy(v, t->ents, t->n * sizeof *v);
	pthread_mutex_unlock(&t->lock);
	return v;
}

/* The stream behind e now. Errors: -ENOENT removed (or replaced by
 * another of its name); -EIO, -EBADMSG, -ENOMEM (logged). */
static int stat_of(tczfs *fs, const fs_sent *e, tcz_stream_info *i)
{
	int rc = tcz_stream_stat(fs->store, e->name, i);
	if (rc == 0 && i->id != e->id)
		rc = -ENOENT;
	if (rc && rc != -ENOENT)
		fs_log(fs, LOG_ERR, "streams/%s: %s", e->name, msg(rc));
	return rc;
}

static int errno_of(int rc)
{
	return rc == -ENOENT || rc == -ENOMEM || rc == -ENOSPC ||
			       rc == -EROFS || rc == -EBUSY || rc == -EINVAL
		       ? -rc
		       : EIO;
}

/* ---- attributes ------------------------------------------------------------ */

static uint64_t header_len(uint64_t frames, uint32_t dim)
{
	char h[NPY_HDR_CAP];
	size_t len = 0;
	tcz_stream_npy_header(frames, dim, h, sizeof h, &len);
	return len;
}

static void fill(tczfs *fs, const fs_sent *e, int npy,
		 const tcz_stream_info *i, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino_of(e, npy);
	st->st_mode = S_IFREG | (npy || fs->ro ? 0444 : 0644);
	st->st_nlink = 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 1 << 20;
	uint64_t size = i->frames * i->params.dim * 4;
	if (npy)
		size += header_len(i->frames, i->params.dim);
	st->st_size = (off_t)size;
	st->st_blocks = (st->st_size + 511) / 512;
	/* the last frame's time: a size change the kernel sees with it */
	if (i->frames) {
		st->st_mtim.tv_sec = (time_t)(i->last_ts / 1000);
		st->st_mtim.tv_nsec = (long)(i->last_ts % 1000) * 1000000;
	} else {
		st->st_mtim.tv_sec = (time_t)i->created;
	}
	st->st_ctim = st->st_atim = st->st_mtim;
}

static void reply_entry(tczfs *fs, fuse_req_t req, const fs_sent *e, int npy,
			const tcz_stream_info *i)
{
	struct fuse_entry_param p;
	memset(&p, 0, sizeof p);
	p.ino = ino_of(e, npy);
	/* timeouts 0: frames arrive, streams come and go, through other
	 * processes than the kernel sees */
	p.attr_timeout = p.entry_timeout = 0;
	fill(fs, e, npy, i, &p.attr);
	fuse_reply_entry(req, &p);
}

void fs_stream_lookup(tczfs *fs, fuse_req_t req, const char *name)
{
	tcz_stream_info i;
	char base[260];
	const char *sname = name;
	int npy = 0;
	int rc = tcz_stream_name_valid(name)
			 ? tcz_stream_stat(fs->store, name, &i)
			 : -ENOENT;
	/* a stream called x.npy takes that name before the view of x */
	size_t l = strlen(name);
	if (rc == -ENOENT && l > 4 && l - 4 < sizeof base &&
	    strcmp(name + l - 4, ".npy") == 0) {
		memcpy(base, name, l - 4);
		base[l - 4] = 0;
		sname = base;
		npy = 1;
		rc = tcz_stream_name_valid(base)
			     ? tcz_stream_stat(fs->store, base, &i)
			     : -ENOENT;
	}
	if (rc && rc != -ENOENT)
		fs_log(fs, LOG_ERR, "streams/%s: %s", sname, msg(rc));
	fs_sent *e = rc ? NULL : intern(fs, sname, &i);
	if (!rc && !e)
		rc = -ENOMEM;
	if (rc)
		fuse_reply_err(req, errno_of(rc));
	else
		reply_entry(fs, req, e, npy, &i);
}

void fs_stream_getattr(tczfs *fs, fuse_req_t req, fs_sent *e, int npy)
{
	tcz_stream_info i;
	int rc = stat_of(fs, e, &i);
	if (rc) {
		fuse_reply_err(req, errno_of(rc));
		return;
	}
	struct stat st;
	fill(fs, e, npy, &i, &st);
	fuse_reply_attr(req, &st, 0);
}

static int has_name(char **names, size_t n, const char *name)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(names[mid], name);
		if (c == 0)
			return 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

int fs_stream_readdir(tczfs *fs,
		      int (*add)(void *ctx, const char *name, fuse_ino_t ino),
		      void *ctx)
{
	char **names = NULL;
	size_t n = 0;
	int rc = tcz_stream_list(fs->store, &names, &n);
	if (rc) {
		fs_log(fs, LOG_ERR, "streams/: cannot list the streams: %s",
		       msg(rc));
		return rc == -ENOMEM ? rc : -EIO;
	}
	for (size_t k = 0; rc == 0 && k < n; k++) {
		tcz_stream_info i;
		int r = tcz_stream_stat(fs->store, names[k], &i);
		if (r == -ENOENT)
			continue; /* removed meanwhile */
		if (r) {
			fs_log(fs, LOG_ERR, "streams/%s: %s", names[k], msg(r));
			continue; /* the others are still listed */
		}
		fs_sent *e = intern(fs, names[k], &i);
		if (!e) {
			rc = -ENOMEM;
			break;
		}
		char npy[140];
		snprintf(npy, sizeof npy, "%s.npy", names[k]);
		rc = add(ctx, names[k], ino_of(e, 0));
		if (rc == 0 && !has_name(names, n, npy))
			rc = add(ctx, npy, ino_of(e, 1));
	}
	tcz_names_free(names, n);
	return rc;
}

/* ---- open files ------------------------------------------------------------ */

static void log_drop(tczfs *fs, fs_sfile *f)
{
	if (f->part_len)
		fs_log(fs, LOG_WARNING,
		       "streams/%s: %zu bytes of a partial frame (%zu bytes a "
		       "frame) dropped at close",
		       f->e->name, f->part_len, f->frame_bytes);
	f->part_len = 0;
}

static void sfile_free(tczfs *fs, void *p)
{
	fs_sfile *f = p;
	if (f->w) {
		int rc = tcz_stream_writer_close(f->w, NULL);
		if (rc)
			fs_log(fs, LOG_ERR,
			       "streams/%s: frames written since the last fsync "
			       "are lost: %s",
			       f->e->name, msg(rc));
	}
	log_drop(fs, f);
	tcz_stream_reader_close(f->idle);
	free(f->part);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	free(f);
}

/* Opens f's writer: the stream's frames go on from its committed ones.
 * Errors: as tcz_stream_writer_open (logged, but for -ENOMEM). */
static int writer_open(tczfs *fs, fs_sfile *f)
{
	int rc = tcz_stream_writer_open(fs->store, f->e->name, &f->w);
	if (rc == -EBUSY)
		fs_log(fs, LOG_WARNING,
		       "streams/%s: refused a writer: another open file or "
		       "process is writing the stream (EBUSY)",
		       f->e->name);
	else if (rc && rc != -ENOMEM)
		fs_log(fs, LOG_ERR, "streams/%s: cannot write: %s", f->e->name,
		       msg(rc));
	if (rc)
		return rc;
	tcz_stream_writer_set_thresholds(f->w, &fs->th);
	tcz_stream_writer_state st;
	tcz_stream_writer_get_state(f->w, &st);
	f->end = st.committed * f->frame_bytes + f->part_len;
	f->commit_ms = fs_mono_ms();
	return 0;
}

void fs_stream_open(tczfs *fs, fuse_req_t req, fs_sent *e, int npy,
		    struct fuse_file_info *fi)
{
	int wr = (fi->flags & O_ACCMODE) != O_RDONLY;
	if (wr && (npy || fs->ro)) {
		fuse_reply_err(req, fs->ro ? EROFS : EACCES);
		return;
	}
	tcz_stream_info i;
	int rc = stat_of(fs, e, &i);
	if (rc) {
		fuse_reply_err(req, errno_of(rc));
		return;
	}
	/* streams are append-only: O_TRUNC of an empty one is harmless */
	if ((fi->flags & O_TRUNC) && i.frames) {
		fuse_reply_err(req, EPERM);
		return;
	}
	fs_sfile *f = calloc(1, sizeof *f);
	if (f) {
		f->frame_bytes = (size_t)i.params.dim * 4;
		f->part = malloc(f->frame_bytes);
	}
	if (!f || !f->part) {
		if (f)
			free(f);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	f->e = e;
	f->npy = npy;
	f->writable = wr;
	f->append = (fi->flags & O_APPEND) != 0;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	/* the writer now, so that a second one is refused at open */
	if (wr && (rc = writer_open(fs, f)) != 0) {
		sfile_free(fs, f);
		fuse_reply_err(req, errno_of(rc));
		return;
	}
	if (!(fi->fh = fs_handle_new(fs, FS_H_STREAM, f, sfile_free))) {
		sfile_free(fs, f);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* writes go to the daemon, never into the page cache: the cache
	 * would hold the values written, not the decoded ones. Readers use
	 * the page cache (mmap works); the kernel drops it when the size
	 * changes and at open, fs_streams_check when values change. */
	fi->direct_io = wr;
	fi->keep_cache = 0;
	if (fuse_reply_open(req, fi) == -ENOENT)
		fs_handle_close(fs, fi->fh); /* interrupted: no release comes */
}

/* A reader for one request: the file's own, or one of its own when
 * another request of the file has that one. */
static int reader_take(tczfs *fs, fs_sfile *f, tcz_stream_reader **out)
{
	pthread_mutex_lock(&f->lock);
	tcz_stream_reader *r = f->idle;
	f->idle = NULL;
	pthread_mutex_unlock(&f->lock);
	if (!r) {
		tcz_stream_info i;
		int rc = tcz_stream_reader_open(fs->store, f->e->name, &r);
		if (rc == 0 && (rc = tcz_stream_reader_refresh(r, &i)) == 0 &&
		    i.id != f->e->id)
			rc = -ENOENT; /* another stream has the name now */
		if (rc) {
			tcz_stream_reader_close(r);
			return rc;
		}
	}
	*out = r;
	return 0;
}

static void reader_give(fs_sfile *f, tcz_stream_reader *r)
{
	pthread_mutex_lock(&f->lock);
	if (!f->idle) {
		f->idle = r;
		r = NULL;
	}
	pthread_mutex_unlock(&f->lock);
	tcz_stream_reader_close(r);
}

/* An error of a read or write of f, as the reply's errno; logged once
 * for a removed stream, always for damage. */
static int read_errno(tczfs *fs, fs_sfile *f, int rc, uint64_t off,
		      size_t size)
{
	if (rc == -ENOENT) {
		if (!atomic_exchange(&f->gone_logged, 1))
			fs_log(fs, LOG_INFO,
			       "streams/%s was removed while open: its reads "
			       "fail with ESTALE",
			       f->e->name);
		return ESTALE;
	}
	if (rc == -ENOMEM)
		return ENOMEM;
	fs_log(fs, LOG_ERR, "streams/%s%s: read of bytes %llu+%zu: %s",
	       f->e->name, f->npy ? ".npy" : "", (unsigned long long)off, size,
	       msg(rc));
	return EIO;
}

void fs_stream_read(tczfs *fs, fuse_req_t req, size_t size, uint64_t off,
		    struct fuse_file_info *fi)
{
	fs_sfile *f = fs_handle_get(fs, fi->fh, FS_H_STREAM);
	if (!f) {
		fuse_reply_err(req, EBADF);
		return;
	}
	tcz_stream_reader *r = NULL;
	unsigned char *buf = NULL;
	int rc = reader_take(fs, f, &r);
	uint64_t fb = f->frame_bytes, frames = r ? tcz_stream_reader_frames(r) : 0;
	uint32_t dim = r ? tcz_stream_reader_dim(r) : 0;
	uint64_t hlen = f->npy ? header_len(frames, dim) : 0;
	/* the frame count of the last refresh, taken again when the read
	 * goes past it, and for every read of the .npy header (its shape
	 * is the count now) */
	if (rc == 0 && (off + size > hlen + frames * fb || (f->npy && off < hlen))) {
		rc = tcz_stream_reader_refresh(r, NULL);
		frames = tcz_stream_reader_frames(r);
		hlen = f->npy ? header_len(frames, dim) : 0;
	}
	uint64_t total = hlen + frames * fb;
	size_t n = rc == 0 && off < total
			   ? (size_t)(size < total - off ? size : total - off)
			   : 0;
	if (rc == 0 && n && !(buf = malloc(n)))
		rc = -ENOMEM;
	size_t at = 0;
	if (rc == 0 && n && off < hlen) {
		char h[NPY_HDR_CAP];
		size_t hl = 0;
		tcz_stream_npy_header(frames, dim, h, sizeof h, &hl);
		at = (size_t)(hlen - off < n ? hlen - off : n);
		memcpy(buf, h + off, at);
	}
	size_t got = 0;
	if (rc == 0 && at < n)
		rc = tcz_stream_pread(r, buf + at, n - at, off + at - hlen, &got);
	if (rc) {
		fuse_reply_err(req, read_errno(fs, f, rc, off, size));
	} else {
		fuse_reply_buf(req, (const char *)buf, at + got);
		/* counted here, saved by the maintenance thread: a read never
		 * waits for the store's writer */
		atomic_fetch_add(&f->e->reads, 1);
		atomic_fetch_add(&f->e->bytes, at + got);
		atomic_store(&f->e->last, tcz_store_now());
	}
	free(buf);
	if (r)
		reader_give(f, r);
	fs_handle_put(fs, fi->fh);
}

/* The writer side of f for one request: waits for another request of
 * the same file (writes of one file are ordered anyway) without holding
 * a lock. */
static void own(fs_sfile *f)
{
	pthread_mutex_lock(&f->lock);
	while (f->busy)
		pthread_cond_wait(&f->cond, &f->lock);
	f->busy = 1;
	pthread_mutex_unlock(&f->lock);
}

static void disown(fs_sfile *f)
{
	pthread_mutex_lock(&f->lock);
	f->busy = 0;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

/* Appends buf[size] written at off. Called owning the writer side. */
static int append(tczfs *fs, fs_sfile *f, const char *buf, size_t size,
		  uint64_t off)
{
	int rc;
	if (!f->w && (rc = writer_open(fs, f)) != 0)
		return rc;
	/* EINVAL, not ESPIPE: the file is seekable, reads go anywhere */
	if (!f->append && off != f->end)
		return -EINVAL;
	size_t fb = f->frame_bytes;
	if (f->part_len + size < fb) { /* still no whole frame */
		memcpy(f->part + f->part_len, buf, size);
		f->part_len += size;
		f->end += size;
		return 0;
	}
	size_t whole = (f->part_len + size) / fb * fb;
	size_t tail = f->part_len + size - whole;
	const char *src = buf;
	char *tmp = NULL;
	if (f->part_len) { /* the waiting part first */
		if (!(tmp = malloc(whole)))
			return -ENOMEM;
		memcpy(tmp, f->part, f->part_len);
		memcpy(tmp + f->part_len, buf, whole - f->part_len);
		src = tmp;
	}
	tcz_stream_writer_state st;
	tcz_stream_writer_get_state(f->w, &st);
	/* the wall clock, but never before the last frame (a clock set
	 * back): every frame of this write gets the same time, so that
	 * times stay the clock's however many frames a write holds */
	uint64_t ts = wall_ms();
	if (ts < st.last_ts)
		ts = st.last_ts;
	rc = tcz_stream_writer_write(f->w, src, whole, ts);
	free(tmp);
	if (rc == -ENOMEM) {
		/* the frames before the one that failed are in */
		tcz_stream_writer_get_state(f->w, &st);
		f->part_len = 0;
		f->end = (st.committed + st.buffered) * fb;
		fs_log(fs, LOG_ERR,
		       "streams/%s: out of memory in a write: the file ends at "
		       "byte %llu now",
		       f->e->name, (unsigned long long)f->end);
		return rc;
	}
	if (rc == -EDOM) {
		fs_log(fs, LOG_WARNING, "streams/%s: write refused: %s",
		       f->e->name, msg(rc));
		return -EINVAL;
	}
	if (rc)
		return rc;
	memcpy(f->part, buf + size - tail, tail);
	f->part_len = tail;
	f->end += size;
	tcz_stream_writer_get_state(f->w, &st);
	uint64_t now = fs_mono_ms();
	if (st.pending_bytes >= COMMIT_BYTES ||
	    (st.pending_bytes && now - f->commit_ms >= COMMIT_MS)) {
		f->commit_ms = now;
		/* the write succeeded whatever this does: a failure is
		 * retried by the next commit and reported by fsync/close */
		if ((rc = tcz_stream_writer_commit(f->w)) != 0) {
			fs_log(fs, LOG_WARNING, "streams/%s: commit failed: %s",
			       f->e->name, msg(rc));
			f->werr = rc;
		}
	}
	return 0;
}

void fs_stream_write(tczfs *fs, fuse_req_t req, const char *buf, size_t size,
		     uint64_t off, struct fuse_file_info *fi)
{
	fs_sfile *f = fs_handle_get(fs, fi->fh, FS_H_STREAM);
	if (!f || !f->writable) {
		if (f)
			fs_handle_put(fs, fi->fh);
		fuse_reply_err(req, EBADF);
		return;
	}
	own(f);
	int rc = append(fs, f, buf, size, off);
	disown(f);
	if (rc)
		fuse_reply_err(req, errno_of(rc));
	else
		fuse_reply_write(req, size);
	fs_handle_put(fs, fi->fh);
}

/* fsync(): every whole frame written is committed (durable) on return.
 * close() (flush) does the same and gives the stream's writer up, so
 * that another writer may start at once; a later write through the same
 * open file takes it again. A partial frame stays with the open file
 * until release. */
void fs_stream_sync(tczfs *fs, fuse_req_t req, struct fuse_file_info *fi,
		    int closing)
{
	fs_sfile *f = fs_handle_get(fs, fi->fh, FS_H_STREAM);
	if (!f) {
		fuse_reply_err(req, 0); /* not a stream: nothing to do */
		return;
	}
	own(f);
	int rc = f->w ? tcz_stream_writer_flush(f->w) : 0;
	if (rc)
		fs_log(fs, LOG_ERR, "streams/%s: %s failed: %s", f->e->name,
		       closing ? "close" : "fsync", msg(rc));
	else if (f->werr)
		rc = f->werr; /* the failed commit was retried: say it once */
	f->werr = 0;
	if (rc == 0 && f->w && closing) {
		tcz_stream_writer_close(f->w, NULL); /* nothing left to commit */
		f->w = NULL;
	}
	disown(f);
	fuse_reply_err(req, rc ? errno_of(rc) : 0);
	fs_handle_put(fs, fi->fh);
}

void fs_stream_setattr(tczfs *fs, fuse_req_t req, fs_sent *e, int npy,
		       const struct stat *attr, int to_set)
{
	tcz_stream_info i;
	int rc = stat_of(fs, e, &i);
	if (rc) {
		fuse_reply_err(req, errno_of(rc));
		return;
	}
	struct stat st;
	fill(fs, e, npy, &i, &st);
	/* truncate(2) sets times along with the size: those are ignored */
	const int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
			  FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW |
			  FUSE_SET_ATTR_CTIME;
	if (!(to_set & FUSE_SET_ATTR_SIZE) ||
	    (to_set & ~(FUSE_SET_ATTR_SIZE | times)) ||
	    attr->st_size != st.st_size) {
		/* append-only: a size other than the size is refused */
		fuse_reply_err(req, EPERM);
		return;
	}
	fuse_reply_attr(req, &st, 0);
}

/* ---- extended attributes ------------------------------------------------ */

static const char *const sx_names[] = {
	"user.tczfs.dim",  "user.tczfs.frames", "user.tczfs.segments",
	"user.tczfs.ratio", "user.tczfs.tier",  "user.tczfs.bits",
};
#define N_SX (sizeof sx_names / sizeof sx_names[0])

/* The tier now: the pin, else the score over the saved reads and this
 * daemon's unsaved ones (as model files count theirs). */
static tcz_tier tier_of(tczfs *fs, const fs_sent *e, const tcz_stream_info *i)
{
	if (i->pinned >= 0 && i->pinned <= TCZ_TIER_COLD)
		return (tcz_tier)i->pinned;
	uint64_t last = atomic_load(&e->last);
	if (i->last_access > last)
		last = i->last_access;
	uint64_t score = tcz_tier_score(i->accesses + atomic_load(&e->reads),
					last, tcz_store_now());
	return tcz_tier_of_score(score, &fs->th);
}

static int sx_value(tczfs *fs, const fs_sent *e, const tcz_stream_info *i,
		    size_t k, char *buf, size_t cap)
{
	switch (k) {
	case 0:
		return snprintf(buf, cap, "%u", i->params.dim);
	case 1:
		return snprintf(buf, cap, "%llu", (unsigned long long)i->frames);
	case 2:
		return snprintf(buf, cap, "%llu", (unsigned long long)i->segments);
	case 3: /* as model files: f32 bytes over stored segment bytes */
		return snprintf(buf, cap, "%.4f", tcz_stream_ratio(i));
	case 4:
		return snprintf(buf, cap, "%s", tcz_tier_name(tier_of(fs, e, i)));
	case 5: {
		/* the widths the segments are stored at, ascending; without
		 * segments, the width the tier gives new frames */
		int o = 0;
		for (int w = 0; w < 4 && o < (int)cap; w++)
			if (i->width[w].segments)
				o += snprintf(buf + o, cap - (size_t)o, "%s%u",
					      o ? "," : "", tcz_stream_width_bits(w));
		if (o == 0) {
			tcz_tier t = tier_of(fs, e, i);
			o = snprintf(buf, cap, "%u",
				     t == TCZ_TIER_HOT    ? 8u
				     : t == TCZ_TIER_WARM ? i->params.warm_bits
							  : 3u);
		}
		return o;
	}
	}
	return -ENODATA;
}

int fs_stream_getxattr(tczfs *fs, fs_sent *e, const char *name, char *buf,
		       size_t cap)
{
	size_t k = 0;
	while (k < N_SX && strcmp(name, sx_names[k]) != 0)
		k++;
	if (k == N_SX)
		return -ENODATA;
	tcz_stream_info i;
	int rc = stat_of(fs, e, &i);
	if (rc)
		return -errno_of(rc);
	return sx_value(fs, e, &i, k, buf, cap);
}

int fs_stream_listxattr(tczfs *fs, fs_sent *e, char *list, size_t cap)
{
	(void)fs;
	(void)e;
	size_t len = 0;
	for (size_t k = 0; k < N_SX; k++) {
		size_t l = strlen(sx_names[k]) + 1;
		if (len + l > cap)
			return -E2BIG;
		memcpy(list + len, sx_names[k], l);
		len += l;
	}
	return (int)len;
}

/* user.tczfs.tier = hot|warm|cold|auto pins the stream's tier, as
 * `tczfs stream tier` does: segments started from then on take it. */
int fs_stream_setxattr(tczfs *fs, fs_sent *e, const char *name,
		       const char *value, size_t size)
{
	if (strcmp(name, "user.tczfs.tier") != 0)
		return strncmp(name, "user.tczfs.", 11) == 0 ? -EPERM : -ENOTSUP;
	if (fs->ro)
		return -EROFS;
	char v[8];
	if (size == 0 || size >= sizeof v)
		return -EINVAL;
	memcpy(v, value, size);
	v[size] = 0;
	if (v[size - 1] == '\n')
		v[size - 1] = 0;
	int32_t pin = -1;
	tcz_tier t;
	if (strcmp(v, "auto") != 0) {
		if (tcz_tier_parse(v, &t))
			return -EINVAL;
		pin = (int32_t)t;
	}
	tcz_stream_info i;
	int rc = stat_of(fs, e, &i);
	if (rc == 0 && (rc = tcz_stream_set_tier(fs->store, e->name, pin)) != 0)
		fs_log(fs, LOG_ERR, "streams/%s: cannot pin its tier: %s", e->name,
		       msg(rc));
	return rc ? -errno_of(rc) : 0;
}

/* ---- the maintenance thread's part ---------------------------------------- */

void fs_streams_save(tczfs *fs)
{
	size_t n;
	fs_sent **v = entries(fs, &n);
	int warned = 0;
	for (size_t k = 0; v && k < n; k++) {
		fs_sent *e = v[k];
		uint64_t r = atomic_exchange(&e->reads, 0);
		uint64_t b = atomic_exchange(&e->bytes, 0);
		if (!r && !b)
			continue;
		/* the id: nothing is counted for a stream removed since */
		int rc = tcz_stream_add_access(fs->store, e->name, e->id, r, b,
					       atomic_load(&e->last));
		if (rc) { /* counted again next time */
			atomic_fetch_add(&e->reads, r);
			atomic_fetch_add(&e->bytes, b);
			if (!warned++)
				fs_log(fs, LOG_WARNING,
				       "cannot save access statistics of "
				       "streams/%s: %s",
				       e->name, msg(rc));
		}
	}
	free(v);
}

/* A re-encoding changes the values of frames without changing the size:
 * pages the kernel cached then hold the old values until dropped. */
void fs_streams_check(tczfs *fs)
{
	fs_streams *t = fs->streams;
	uint64_t g;
	if (tcz_stream_generation(fs->store, &g) != 0)
		return;
	pthread_mutex_lock(&t->lock);
	int same = t->gen_ok && t->gen == g;
	pthread_mutex_unlock(&t->lock);
	if (same)
		return;
	size_t n;
	fs_sent **v = entries(fs, &n);
	if (!v)
		return;
	for (size_t k = 0; k < n; k++) {
		tcz_stream_info i;
		if (tcz_stream_stat(fs->store, v[k]->name, &i) != 0 ||
		    i.id != v[k]->id)
			continue;
		pthread_mutex_lock(&t->lock);
		int changed = v[k]->data_rev != i.data_rev;
		v[k]->data_rev = i.data_rev;
		pthread_mutex_unlock(&t->lock);
		if (changed && fs->se) {
			fuse_lowlevel_notify_inval_inode(fs->se, ino_of(v[k], 0), 0, 0);
			fuse_lowlevel_notify_inval_inode(fs->se, ino_of(v[k], 1), 0, 0);
		}
	}
	free(v);
	pthread_mutex_lock(&t->lock);
	t->gen = g;
	t->gen_ok = 1;
	pthread_mutex_unlock(&t->lock);
}
