/* Hot files into the kernel's page cache.
 *
 * A hot tensor's chunks sit decoded in the hot set, yet each read of them
 * still costs a FUSE round trip: request, wake-up, a copy into the page
 * cache, reply (bench-tier: 27 us p50, 0.33x tmpfs sequential). So when
 * a read of hot bytes reaches the daemon (which means the kernel does
 * not hold those pages), the pusher thread writes the 1 MiB window under
 * it (a random reader's second read there) or, for a sequential reader,
 * that window and the 16 ahead straight into the file's page cache with
 * FUSE_NOTIFY_STORE (the kernel copies them into the pages and marks them
 * up to date): the reader's next reads are page-cache hits, with no
 * request at all. Only bytes whose source is hot (or the view's own
 * header bytes around them) are pushed; a window of warm or cold
 * tensors is left to the usual read path. File contents behind an inode
 * never change (inode numbers are per bytes identity), so a pushed page
 * is never stale.
 *
 * The message is written on a dup of the session's /dev/fuse descriptor
 * (one writev of header + data straight from the cache buffers: libfuse's
 * fuse_lowlevel_notify_store copies a multi-buffer vector into one
 * buffer first). A push can wait in the kernel for a page that a queued
 * read holds; so the pusher is stopped while the FUSE workers still
 * answer reads (daemon.c's stopper, on a signal) or once the connection
 * is gone, never in between. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>

#include "fs/internal.h"

#define PUSH_WIN (1u << 20) /* bytes a job pushes */
#define PUSH_AHEAD 16       /* windows pushed past a read: 16 MiB */
#define PUSH_QUEUE 64       /* pending jobs at most (more are dropped) */
#define PUSH_SLOTS 4096     /* windows remembered, by hash */
#define PUSH_PIECES 256     /* pieces of one window at most */
/* A read of a window pushed less than RACE_MS ago was on its way before
 * the push: nothing to do. One that comes later means the kernel dropped
 * the pages (memory pressure, drop_caches): pushed again, and the windows
 * ahead with it. Windows ahead are pushed at most every TTL_MS. A random
 * reader's window is pushed on its second read within SEEN_MS: one that
 * reads a large file sparsely would not come back to the pages. */
#define RACE_MS 20u
#define TTL_MS 1000u
#define SEEN_MS 10000u
/* a slot: key tag | SEEN (read, not pushed) | ms, wrapping after 17 min */
#define TIME_BITS 20
#define TIME_MASK ((1ull << TIME_BITS) - 1)
#define SEEN (1ull << TIME_BITS)
#define TAG_MASK (~((SEEN << 1) - 1))

typedef struct push_job {
	fs_model *fm; /* a reference of the job's own */
	uint32_t file;
	uint64_t win;
} push_job;

struct fs_push {
	int fd; /* a dup of the session's descriptor */
	pthread_t thread;
	int started;
	pthread_mutex_t lock; /* guards q, head, len, stop; with cond */
	pthread_cond_t cond;
	push_job q[PUSH_QUEUE];
	size_t head, len;
	int stop;
	/* windows queued lately: a key tag and the ms it was queued at;
	 * lock-free, a lost or false entry only costs a push or a read */
	_Atomic uint64_t slot[PUSH_SLOTS];
	atomic_uint_fast64_t pushed_bytes; /* for the log at the end */
	/* the pusher's own: at most rate bytes a second, so a reader whose
	 * pages the kernel keeps dropping (memory pressure, DONTNEED) does
	 * not have whole files pushed again and again at full speed */
	uint64_t rate, sec, sec_bytes;
	long page;
	unsigned char *scratch; /* PUSH_WIN: a window's computed pieces */
};

static uint64_t win_key(const fs_model *fm, uint32_t file, uint64_t w)
{
	uint64_t h = fm->iid * 0x9e3779b97f4a7c15ull ^
		     ((uint64_t)file << 40 ^ w) * 0xc2b2ae3d27d4eb4full;
	h ^= h >> 29;
	return h * 0xbf58476d1ce4e5b9ull;
}

/* 0: nothing known of the window; else 1 + the age in ms of what the
 * slot holds, with *seen set when it was only read, not pushed */
static uint64_t win_age(fs_push *p, uint64_t key, uint64_t now, int *seen)
{
	uint64_t v = atomic_load_explicit(&p->slot[key % PUSH_SLOTS],
					  memory_order_relaxed);
	*seen = (v & SEEN) != 0;
	if (!v || (v ^ key) & TAG_MASK)
		return 0;
	return 1 + ((now - v) & TIME_MASK);
}

static void win_mark(fs_push *p, uint64_t key, uint64_t now, uint64_t flag)
{
	/* never 0, which means empty */
	uint64_t v = (key & TAG_MASK) | flag | (now & TIME_MASK);
	atomic_store_explicit(&p->slot[key % PUSH_SLOTS], v ? v : 1,
			      memory_order_relaxed);
}

static int enqueue(fs_push *p, fs_model *fm, uint32_t file, uint64_t w,
		   uint64_t key, uint64_t now)
{
	int ok = 0;
	pthread_mutex_lock(&p->lock);
	if (p->len < PUSH_QUEUE && !p->stop) {
		push_job *j = &p->q[(p->head + p->len) % PUSH_QUEUE];
		j->fm = fs_model_ref(fm);
		j->file = file;
		j->win = w;
		p->len++;
		pthread_cond_signal(&p->cond);
		ok = 1;
	}
	pthread_mutex_unlock(&p->lock);
	if (ok)
		win_mark(p, key, now, 0);
	return ok;
}

static int hot_piece(const fs_model *fm, const tcz_piece *q)
{
	return (q->kind == TCZ_PIECE_CHUNK || q->kind == TCZ_PIECE_WIDEN ||
		q->kind == TCZ_PIECE_DEQUANT) &&
	       q->src.kind == TCZ_SRC_TENSOR &&
	       atomic_load_explicit(&fm->st[q->src.index].hot,
				    memory_order_relaxed);
}

void fs_push_note(tczfs *fs, fs_file *f, const tcz_pieces *l, uint64_t off,
		  size_t size, unsigned runs)
{
	fs_push *p = fs->push;
	if (!p || !size)
		return;
	int hot = 0;
	for (size_t i = 0; i < l->n && !hot; i++)
		hot = hot_piece(f->fm, &l->p[i]);
	if (!hot)
		return;
	uint64_t fsize = tcz_mview_file(f->fm->v, f->file)->size;
	uint64_t now = fs_mono_ms();
	uint64_t w0 = off / PUSH_WIN, wl = (off + size - 1) / PUSH_WIN;
	int evicted = 0;
	int seen;
	for (uint64_t w = w0; w <= wl; w++) {
		uint64_t key = win_key(f->fm, f->file, w);
		uint64_t age = win_age(p, key, now, &seen);
		if (!runs && (!age || (seen && age - 1 >= SEEN_MS))) {
			win_mark(p, key, now, SEEN); /* a first read */
			continue;
		}
		if (!seen && age && age - 1 < RACE_MS)
			continue;
		evicted |= age && !seen;
		enqueue(p, f->fm, f->file, w, key, now);
	}
	/* ahead only of a sequential reader: with a random one of a large
	 * file, every read of a hot tensor pushed 17 MiB that was not read
	 * again, and its misses elsewhere waited behind those copies */
	uint64_t ahead = runs ? PUSH_AHEAD : 0;
	for (uint64_t w = wl + 1; w <= wl + ahead && w * PUSH_WIN < fsize;
	     w++) {
		uint64_t key = win_key(f->fm, f->file, w);
		uint64_t age = win_age(p, key, now, &seen);
		if (!seen && age && age - 1 < (evicted ? RACE_MS : TTL_MS))
			continue;
		if (!enqueue(p, f->fm, f->file, w, key, now))
			break;
	}
}

/* FUSE_NOTIFY_STORE of bytes [off, off+len) from iov[0..n) (whose
 * lengths add up to len), trimmed to whole pages: the kernel marks a page
 * up to date only when the message covers it from its start to its end
 * (or to the end of the file). Sent in messages of at most PUSH_MSG: a
 * read that misses meanwhile waited for the message in flight (measured:
 * ~600 us behind each 1 MiB one). */
#define PUSH_MSG (64u << 10)

static void store(fs_push *p, fuse_ino_t ino, uint64_t off, uint64_t fsize,
		  struct iovec *iov, int n, uint64_t len)
{
	uint64_t pg = (uint64_t)p->page;
	uint64_t a = (off + pg - 1) / pg * pg, e = off + len;
	if (e != fsize)
		e = e / pg * pg;
	if (a >= e)
		return;
	uint64_t skip = a - off;
	int i = 0;
	while (skip && skip >= iov[i].iov_len)
		skip -= iov[i++].iov_len;
	size_t in = (size_t)skip; /* bytes of iov[i] already sent */
	for (uint64_t at = a; at < e && i < n;) {
		uint64_t keep = e - at < PUSH_MSG ? e - at : PUSH_MSG;
		struct fuse_out_header oh = {0};
		struct fuse_notify_store_out so = {0};
		struct iovec out[PUSH_PIECES + 2];
		out[0] = (struct iovec){&oh, sizeof oh};
		out[1] = (struct iovec){&so, sizeof so};
		int k = 2;
		for (uint64_t left = keep; left && i < n;) {
			size_t avail = iov[i].iov_len - in;
			size_t take = avail < left ? avail : (size_t)left;
			out[k++] = (struct iovec){(char *)iov[i].iov_base + in, take};
			left -= take;
			in += take;
			if (in == iov[i].iov_len) {
				i++;
				in = 0;
			}
		}
		oh.len = (uint32_t)(sizeof oh + sizeof so + keep);
		oh.error = FUSE_NOTIFY_STORE;
		so.nodeid = ino;
		so.offset = at;
		so.size = (uint32_t)keep;
		/* ENOENT: the kernel forgot the inode; ENODEV: unmounted.
		 * Either way the reads go the usual way. */
		if (writev(p->fd, out, k) != (ssize_t)oh.len)
			return;
		atomic_fetch_add_explicit(&p->pushed_bytes, keep,
					  memory_order_relaxed);
		at += keep;
	}
}

static void push_window(tczfs *fs, fs_push *p, const push_job *j)
{
	fs_model *fm = j->fm;
	uint64_t fsize = tcz_mview_file(fm->v, j->file)->size;
	uint64_t start = j->win * PUSH_WIN;
	if (start >= fsize)
		return;
	uint64_t len = fsize - start < PUSH_WIN ? fsize - start : PUSH_WIN;
	tcz_pieces l = {0};
	if (tcz_view_map(fm->v, j->file, start, len, &l) || l.n > PUSH_PIECES) {
		tcz_pieces_free(&l);
		return;
	}
	fuse_ino_t ino = ino_make(fm->iid, LOCAL_FILE0 + j->file);
	struct iovec iov[PUSH_PIECES];
	tcz_cache_entry *ents[PUSH_PIECES];
	int n = 0, hot = 0;
	uint64_t run_off = start, run_len = 0, at = start;
	static const unsigned char zeros[4096];
	for (size_t i = 0; i <= l.n; i++) {
		const tcz_piece *q = i < l.n ? &l.p[i] : NULL;
		tcz_cache_entry *e = NULL;
		int ok = 0;
		if (q && q->kind == TCZ_PIECE_BYTES) {
			iov[n] = (struct iovec){(void *)q->mem, q->len};
			ok = 1;
		} else if (q && q->kind == TCZ_PIECE_ZERO && q->len <= sizeof zeros) {
			iov[n] = (struct iovec){(void *)zeros, q->len};
			ok = 1;
		} else if (q && hot_piece(fm, q)) {
			unsigned char key[TCZ_KEY_LEN];
			tcz_view_src_key(fm->v, &q->src, key);
			/* held by the hot set: a look-up, no decoding (one that
			 * was let go meanwhile is decoded, as a read would) */
			if (tcz_cache_has(fs->cache, key) &&
			    fs_get_src(fs, fm, &q->src, &e) == 0) {
				if (q->kind == TCZ_PIECE_CHUNK) {
					iov[n] = (struct iovec){
						(char *)tcz_cache_data(e) + q->off,
						q->len};
				} else { /* widened or dequantized: computed */
					unsigned char *to = p->scratch + (at - start);
					tcz_piece_copy(q, tcz_cache_data(e), to);
					iov[n] = (struct iovec){to, q->len};
				}
				ok = 1;
				hot = 1;
			}
		}
		if (ok) {
			ents[n++] = e;
			run_len += q->len;
		} else {
			if (hot && n)
				store(p, ino, run_off, fsize, iov, n, run_len);
			for (int k = 0; k < n; k++)
				if (ents[k])
					tcz_cache_release(fs->cache, ents[k]);
			n = 0;
			hot = 0;
			run_len = 0;
			run_off = at + (q ? q->len : 0);
		}
		if (q)
			at += q->len;
	}
	tcz_pieces_free(&l);
}

static void *pusher(void *arg)
{
	tczfs *fs = arg;
	fs_push *p = fs->push;
	/* behind the FUSE workers. Not SCHED_IDLE: starved while it holds
	 * a page a reader waits for, it made misses wait milliseconds */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (!p->len && !p->stop)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		push_job j = p->q[p->head];
		p->head = (p->head + 1) % PUSH_QUEUE;
		p->len--;
		pthread_mutex_unlock(&p->lock);
		uint64_t sec = fs_mono_s();
		if (sec != p->sec) {
			p->sec = sec;
			p->sec_bytes = 0;
		}
		if (p->sec_bytes < p->rate) { /* else dropped: read as usual */
			push_window(fs, p, &j);
			p->sec_bytes += PUSH_WIN;
		}
		fs_model_put(fs, j.fm);
	}
	tcz_reader_free(pthread_getspecific(fs->reader_key));
	pthread_setspecific(fs->reader_key, NULL);
	return NULL;
}

int fs_push_start(tczfs *fs)
{
	if (!fs->hot_budget || !fs->se)
		return 0; /* nothing is ever hot */
	if (fs->opts.no_push)
		return 0;
	fs_push *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	p->page = sysconf(_SC_PAGESIZE);
	if (p->page <= 0)
		p->page = 4096;
	/* the hot set twice a second, 64 MiB/s at least */
	p->rate = 2 * (uint64_t)fs->hot_budget;
	if (p->rate < (64u << 20))
		p->rate = 64u << 20;
	if (!(p->scratch = malloc(PUSH_WIN))) {
		free(p);
		return -ENOMEM;
	}
	p->fd = fcntl(fuse_session_fd(fs->se), F_DUPFD_CLOEXEC, 3);
	if (p->fd < 0) {
		free(p->scratch);
		free(p);
		return 0; /* served the usual way */
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	fs->push = p;
	if (pthread_create(&p->thread, NULL, pusher, fs) == 0)
		p->started = 1;
	return 0;
}

void fs_push_stop(tczfs *fs, int join)
{
	fs_push *p = fs->push;
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	/* only while the FUSE workers run or the connection is gone: a push
	 * can wait for a page that a queued read holds (daemon.c, stopper) */
	if (join && p->started) {
		pthread_join(p->thread, NULL);
		p->started = 0;
	}
}

void fs_push_free(tczfs *fs)
{
	fs_push *p = fs->push;
	if (!p)
		return;
	fs_push_stop(fs, 1);
	while (p->len) { /* jobs nobody will run */
		fs_model_put(fs, p->q[p->head].fm);
		p->head = (p->head + 1) % PUSH_QUEUE;
		p->len--;
	}
	fs_log(fs, LOG_INFO, "pushed %llu MiB of hot files into the page cache",
	       (unsigned long long)(atomic_load(&p->pushed_bytes) >> 20));
	close(p->fd);
	free(p->scratch);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
	fs->push = NULL;
}
