/* The read path: byte range -> the view's pieces -> decoded sources from
 * the cache -> one reply. Plus prefetching. No lock is held while a
 * source is fetched or decoded (the cache fills entries outside its
 * locks; the store reads values in short transactions). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>

#include "fs/internal.h"

/* Look-ahead of a sequential reader, in bytes (whatever the chunk size),
 * and the cache budget each byte of it needs */
#define PF_AHEAD_BYTES (4u << 20)
/* A remote model's chunks come over the network: further ahead, so that
 * several fetches are in flight behind one sequential reader */
#define PF_AHEAD_REMOTE (16u << 20)
#define PF_BUDGET_PER_BYTE 32u
/* Below this budget nothing is prefetched: the kernel's readahead window
 * (16 MiB) alone fills such a cache, and chunks decoded early are evicted
 * before they are read. */
#define PF_MIN_CACHE (64u << 20)
#define PF_QUEUE 128 /* pending prefetch jobs at most (more are dropped) */
#define IOV_MAX_PIECES 64
/* Reads up to this size outside a sequential run fetch and decode only
 * the blocks of a chunk under them (tcz_view_decode_part): a cold 4 KiB
 * read then preads ~11 KiB and decodes 16 KiB instead of the ~87 KiB and
 * 128 KiB of a whole BF16 chunk. Larger reads decode whole chunks into
 * the cache, where the rest of them is likely wanted next. */
#define PART_MAX (32u << 10)
/* A prefetch that waited longer than this is dropped: the reader it was
 * for has decoded the chunk itself by now, and decoding it again would
 * only push useful chunks out of the cache. */
#define PF_STALE_NS 20000000ull
/* A remote model's look-ahead waits behind fetches of several ms each:
 * dropping it after 20 ms would leave the reader to fetch alone. */
#define PF_STALE_REMOTE_NS 2000000000ull

/* ---- sources ------------------------------------------------------------- */

typedef struct fill_arg {
	tczfs *fs;
	const fs_model *fm;
	const tcz_src *src;
} fill_arg;

static int fill(void *arg, void *dst, size_t len)
{
	(void)len;
	fill_arg *a = arg;
	tcz_reader *r = fs_reader(a->fs);
	if (!r)
		return -ENOMEM;
	if (a->src->kind == TCZ_SRC_TENSOR) /* for user.tczfs.decodes */
		atomic_fetch_add((atomic_uint_fast64_t *)&a->fm->st[a->src->index]
					 .decodes,
				 1);
	return tcz_view_decode(r, a->fm->v, a->src, dst);
}

int fs_get_src(tczfs *fs, const fs_model *fm, const tcz_src *s,
	       tcz_cache_entry **e)
{
	unsigned char key[TCZ_KEY_LEN];
	tcz_view_src_key(fm->v, s, key);
	fill_arg a = {fs, fm, s};
	return tcz_cache_get(fs->cache, key, s->len, fill, &a, e);
}

/* ---- prefetching ------------------------------------------------------- */

static void prefetch_src(tczfs *fs, const fs_model *fm, const tcz_src *s)
{
	unsigned char key[TCZ_KEY_LEN];
	tcz_view_src_key(fm->v, s, key);
	fill_arg a = {fs, fm, s};
	tcz_cache_prefetch(fs->cache, key, s->len, fill, &a);
}

static void prefetch(tczfs *fs, fs_model *fm, const tcz_src *s)
{
	unsigned char key[TCZ_KEY_LEN];
	if (fs->opts.cache_bytes < PF_MIN_CACHE)
		return;
	tcz_view_src_key(fm->v, s, key);
	if (tcz_cache_has(fs->cache, key))
		return;
	pthread_mutex_lock(&fs->pflock);
	if (fs->pf_len < fs->pf_cap && !fs->pf_stop) {
		prefetch_job *j = &fs->pfq[(fs->pf_head + fs->pf_len) % fs->pf_cap];
		j->fm = fs_model_ref(fm);
		j->src = *s;
		j->queued_ns = fs_mono_ns();
		fs->pf_len++;
		pthread_cond_signal(&fs->pfcond);
	}
	pthread_mutex_unlock(&fs->pflock);
}

static void *prefetcher(void *arg)
{
	tczfs *fs = arg;
	for (;;) {
		pthread_mutex_lock(&fs->pflock);
		while (!fs->pf_len && !fs->pf_stop)
			pthread_cond_wait(&fs->pfcond, &fs->pflock);
		if (fs->pf_stop) {
			pthread_mutex_unlock(&fs->pflock);
			break;
		}
		prefetch_job j = fs->pfq[fs->pf_head];
		fs->pf_head = (fs->pf_head + 1) % fs->pf_cap;
		fs->pf_len--;
		pthread_mutex_unlock(&fs->pflock);
		/* errors surface when a reader asks for the chunk itself */
		uint64_t stale = j.fm->remote ? PF_STALE_REMOTE_NS : PF_STALE_NS;
		if (fs_mono_ns() - j.queued_ns < stale)
			prefetch_src(fs, j.fm, &j.src);
		fs_model_put(fs, j.fm);
	}
	tcz_reader_free(pthread_getspecific(fs->reader_key));
	pthread_setspecific(fs->reader_key, NULL);
	return NULL;
}

int fs_prefetch_start(tczfs *fs, unsigned threads)
{
	fs->pf_cap = PF_QUEUE;
	fs->pfq = calloc(fs->pf_cap, sizeof *fs->pfq);
	fs->pf_threads = calloc(threads ? threads : 1, sizeof *fs->pf_threads);
	if (!fs->pfq || !fs->pf_threads)
		return -ENOMEM;
	for (; fs->pf_count < threads; fs->pf_count++)
		if (pthread_create(&fs->pf_threads[fs->pf_count], NULL,
				   prefetcher, fs))
			break;
	return 0;
}

void fs_prefetch_stop(tczfs *fs)
{
	pthread_mutex_lock(&fs->pflock);
	fs->pf_stop = 1;
	pthread_cond_broadcast(&fs->pfcond);
	pthread_mutex_unlock(&fs->pflock);
	for (unsigned i = 0; i < fs->pf_count; i++)
		pthread_join(fs->pf_threads[i], NULL);
	while (fs->pf_len) { /* jobs nobody will run */
		fs_model_put(fs, fs->pfq[fs->pf_head].fm);
		fs->pf_head = (fs->pf_head + 1) % fs->pf_cap;
		fs->pf_len--;
	}
	free(fs->pfq);
	free(fs->pf_threads);
	fs->pfq = NULL;
	fs->pf_threads = NULL;
	fs->pf_count = 0;
}

/* ---- the read --------------------------------------------------------- */

static int is_src(const tcz_piece *p)
{
	return p->kind == TCZ_PIECE_CHUNK || p->kind == TCZ_PIECE_WIDEN ||
	       p->kind == TCZ_PIECE_DEQUANT;
}

static int same_src(const tcz_piece *a, const tcz_piece *b)
{
	return a->src.kind == b->src.kind && a->src.index == b->src.index &&
	       a->src.chunk == b->src.chunk;
}

static void record(fs_model *fm, const tcz_pieces *l)
{
	uint64_t now = tcz_store_now();
	int64_t last_t = -1;
	for (size_t i = 0; i < l->n; i++) {
		const tcz_piece *p = &l->p[i];
		if (!is_src(p) || p->src.kind != TCZ_SRC_TENSOR)
			continue;
		fs_tstat *s = &fm->st[p->src.index];
		if ((int64_t)p->src.index != last_t) {
			atomic_fetch_add(&s->reads, 1);
			atomic_store(&s->last, now);
			last_t = p->src.index;
		}
		atomic_fetch_add(&s->bytes, p->len);
	}
}

static void log_failure(tczfs *fs, const fs_model *fm, uint32_t file,
			uint64_t off, const tcz_piece *p, int rc)
{
	char what[400];
	char path[600];
	tcz_mview_file_path(fm->v, file, path, sizeof path);
	tcz_view_src_describe(fm->v, &p->src, what, sizeof what);
	fs_log(fs, LOG_ERR, "%s/%s: read at offset %llu failed: %s is %s",
	       fm->name, path,
	       (unsigned long long)off, what,
	       rc == -EIO	  ? "corrupt or unreadable (checksum mismatch or "
				    "I/O error)"
	       : rc == -ENODATA ? "missing from the store"
	       : rc == -ETIMEDOUT ? "on the remote, which did not answer in "
				    "time"
				  : "corrupt (does not decode)");
}

typedef struct part_arg {
	tczfs *fs;
	const fs_model *fm;
	const tcz_src *src;
	uint32_t off;
} part_arg;

static int part_fill(void *arg, void *dst, size_t len)
{
	part_arg *a = arg;
	tcz_reader *r = fs_reader(a->fs);
	if (!r)
		return -ENOMEM;
	atomic_fetch_add((atomic_uint_fast64_t *)&a->fm->st[a->src->index]
				 .decodes,
			 1);
	return tcz_view_decode_part(r, a->fm->v, a->src, a->off, (uint32_t)len,
				    dst);
}

/* The cache key of blocks [off, off+len) of a chunk: the chunk's key with
 * the span folded into its last 8 bytes (and a bit no chunk offset sets),
 * so the span is cached apart from the whole chunk and from other spans. */
static void span_key(unsigned char key[TCZ_KEY_LEN], uint32_t off,
		     uint32_t len)
{
	uint64_t x = ((uint64_t)off << 32 | len) ^ 0x8000000000000000ull;
	for (int i = 0; i < 8; i++)
		key[8 + i] ^= (unsigned char)(x >> (8 * i));
}

/* Part reads of chunk key lately, this one counted (1 to 3: three or
 * more say 3). A slot keeps a key's hash in its high bits and the count
 * in the low two; lock-free, a lost or false count only costs a decode. */
static unsigned touched_count(tczfs *fs, const unsigned char *key)
{
	uint64_t h;
	memcpy(&h, key, 8);
	h = (h & ~3ull) | 4; /* never 0, the empty slot */
	_Atomic uint64_t *slot = &fs->touched[(h >> 3) % FS_TOUCHED];
	uint64_t old = atomic_load_explicit(slot, memory_order_relaxed), nw;
	do {
		unsigned n = (old & ~3ull) == h ? (unsigned)(old & 3) : 0;
		nw = h | (n < 3 ? n + 1 : 3);
	} while (!atomic_compare_exchange_weak_explicit(
		slot, &old, nw, memory_order_relaxed, memory_order_relaxed));
	return (unsigned)(nw & 3);
}

/* Whether a chunk read in parts now is to be decoded whole behind the
 * read: at its third part read, or at its second once its tensor has had
 * as many part reads as it has chunks. A random reader dense in a
 * tensor (2000 reads of a 64 MiB tensor: 4 per chunk) then reads its
 * chunks from the cache soon, while one spread over a large file (about
 * 1 read per chunk) seldom pays for a whole chunk: decoding whole at
 * every second read, as before, gave a quarter of its chunks a decode
 * that was rarely read again, and raised its p50 (docs/PERFORMANCE.md). */
static int whole_behind(tczfs *fs, fs_model *fm, const tcz_src *s,
			const unsigned char *key)
{
	unsigned n = touched_count(fs, key);
	if (s->kind != TCZ_SRC_TENSOR)
		return n >= 3;
	uint64_t reads = atomic_fetch_add_explicit(&fm->st[s->index].part_reads,
						   1, memory_order_relaxed) + 1;
	uint32_t chunks = tcz_tensor_chunk_count(&fm->m->tensors[s->index]);
	return n >= 3 || (n == 2 && reads >= chunks);
}

/* Serves a small read outside a sequential run: pieces of chunks not in
 * the cache come from the blocks under them alone, which are cached as a
 * span of their own (a random reader that comes back finds them).
 * Returns 1 when it replied, 0 when the read is for the usual path. */
static int part_read(tczfs *fs, fuse_req_t req, fs_file *f,
		     const tcz_pieces *l, uint64_t off, size_t size)
{
	fs_model *fm = f->fm;
	int any = 0;
	for (size_t i = 0; i < l->n; i++) {
		const tcz_piece *p = &l->p[i];
		if (p->kind == TCZ_PIECE_WIDEN || p->kind == TCZ_PIECE_DEQUANT)
			return 0;
		any |= p->kind == TCZ_PIECE_CHUNK;
	}
	tcz_reader *r = any && !fm->remote ? fs_reader(fs) : NULL;
	unsigned char *buf = r ? malloc(size) : NULL;
	if (!buf)
		return 0;
	size_t at = 0, failed = 0;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < l->n; i++) {
		const tcz_piece *p = &l->p[i];
		unsigned char *to = buf + at;
		at += p->len;
		if (p->kind != TCZ_PIECE_CHUNK) {
			tcz_piece_copy(p, NULL, to);
			continue;
		}
		failed = i;
		unsigned char key[TCZ_KEY_LEN];
		uint32_t so = 0, sl = 0;
		tcz_view_src_key(fm->v, &p->src, key);
		rc = tcz_cache_has(fs->cache, key)
			     ? -ENOTSUP
			     : tcz_view_part_span(r, fm->v, &p->src, p->off,
						  p->len, &so, &sl);
		if (rc == 0 && p->src.kind == TCZ_SRC_TENSOR)
			fs_warm_tensor(fs, fm, p->src.index);
		if (rc == 0 && whole_behind(fs, fm, &p->src, key))
			/* the chunk is likely read on: decoded whole behind
			 * this read */
			prefetch(fs, fm, &p->src);
		if (rc == 0) {
			part_arg a = {fs, fm, &p->src, so};
			tcz_cache_entry *e;
			span_key(key, so, sl);
			if ((rc = tcz_cache_get(fs->cache, key, sl, part_fill, &a,
						&e)) == 0) {
				memcpy(to,
				       (const unsigned char *)tcz_cache_data(e) +
					       (p->off - so),
				       p->len);
				tcz_cache_release(fs->cache, e);
			}
		}
		if (rc == -ENOTSUP) { /* whole, through the cache */
			tcz_cache_entry *e;
			if ((rc = fs_get_src(fs, fm, &p->src, &e)) == 0) {
				tcz_piece_copy(p, tcz_cache_data(e), to);
				tcz_cache_release(fs->cache, e);
			}
		}
	}
	if (rc) {
		if (rc == -EIO || rc == -EBADMSG || rc == -ENODATA ||
		    rc == -ETIMEDOUT)
			log_failure(fs, fm, f->file, off, &l->p[failed], rc);
		fuse_reply_err(req, rc == -ENOMEM ? ENOMEM : EIO);
	} else {
		fuse_reply_buf(req, (const char *)buf, size);
		record(fm, l);
	}
	free(buf);
	return 1;
}

int fs_read_range(tczfs *fs, fs_model *fm, uint32_t file, uint64_t off,
		  size_t len, void *dst)
{
	tcz_pieces l = {0};
	int rc = tcz_view_map(fm->v, file, off, len, &l);
	size_t at = 0;
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		tcz_cache_entry *e = NULL;
		if (is_src(&l.p[i]) && (rc = fs_get_src(fs, fm, &l.p[i].src, &e)) != 0)
			break;
		tcz_piece_copy(&l.p[i], e ? tcz_cache_data(e) : NULL,
			       (unsigned char *)dst + at);
		at += l.p[i].len;
		if (e)
			tcz_cache_release(fs->cache, e);
	}
	/* not counted as reads of the tensors: an image's checksum pass
	 * reads everything once, which would make every tensor hot */
	tcz_pieces_free(&l);
	return rc ? rc : at == len ? 0 : -EIO;
}

void fs_read(tczfs *fs, fuse_req_t req, fs_file *f, size_t size, uint64_t off)
{
	atomic_store_explicit(&fs->last_read_ns, fs_mono_ns(),
			      memory_order_relaxed);
	fs_model *fm = f->fm;
	const tcz_vfile *vf = tcz_mview_file(fm->v, f->file);
	if (off >= vf->size || size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > vf->size - off)
		size = (size_t)(vf->size - off);
	tcz_pieces l = {0};
	int rc = tcz_view_map(fm->v, f->file, off, size, &l);
	pthread_mutex_lock(&f->lock);
	int seq = off == f->next_off;
	f->seq = seq ? f->seq + 1 : 0;
	f->next_off = off + size;
	unsigned runs = f->seq;
	pthread_mutex_unlock(&f->lock);
	if (rc == 0 && runs == 0 && size <= PART_MAX &&
	    part_read(fs, req, f, &l, off, size)) {
		fs_push_note(fs, f, &l, off, size, runs);
		tcz_pieces_free(&l);
		return;
	}

	/* Sources beyond the second of a large read decode in parallel; a
	 * read of two (a 1 MiB request off the chunk grid) is served here,
	 * concurrent requests keep the other threads busy. */
	size_t distinct = 0;
	for (size_t i = 0; i < l.n; i++)
		distinct += is_src(&l.p[i]) &&
			    (i == 0 || !is_src(&l.p[i - 1]) ||
			     !same_src(&l.p[i], &l.p[i - 1]));
	for (size_t i = 1; rc == 0 && distinct > 2 && i < l.n; i++)
		if (is_src(&l.p[i]) &&
		    (!is_src(&l.p[i - 1]) || !same_src(&l.p[i], &l.p[i - 1])))
			prefetch(fs, fm, &l.p[i].src);
	tcz_cache_entry **ents = calloc(l.n ? l.n : 1, sizeof *ents);
	if (!ents)
		rc = -ENOMEM;
	size_t failed = 0;
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		if (!is_src(&l.p[i]))
			continue;
		rc = fs_get_src(fs, fm, &l.p[i].src, &ents[i]);
		failed = i;
	}
	if (rc == -EIO && part_read(fs, req, f, &l, off, size)) {
		/* a chunk failed its check: its blocks, each checked on its
		 * own, answer the read unless it touches the damaged one(s),
		 * so EIO stays with exactly the reads that touch the damage
		 * (part_read replied and logged) */
	} else if (rc) {
		if (rc == -EIO || rc == -EBADMSG || rc == -ENODATA ||
		    rc == -ETIMEDOUT)
			log_failure(fs, fm, f->file, off, &l.p[failed], rc);
		fuse_reply_err(req, rc == -ENOMEM ? ENOMEM : EIO);
	} else {
		int widen = 0;
		for (size_t i = 0; i < l.n; i++)
			widen |= l.p[i].kind == TCZ_PIECE_WIDEN ||
				 l.p[i].kind == TCZ_PIECE_DEQUANT ||
				 l.p[i].kind == TCZ_PIECE_ZERO;
		if (!widen && l.n <= IOV_MAX_PIECES) {
			/* straight from the cache to the kernel */
			struct iovec iov[IOV_MAX_PIECES];
			for (size_t i = 0; i < l.n; i++) {
				const tcz_piece *p = &l.p[i];
				iov[i].iov_base =
					(void *)(p->kind == TCZ_PIECE_BYTES
							 ? p->mem
							 : (const char *)tcz_cache_data(
								   ents[i]) +
								   p->off);
				iov[i].iov_len = p->len;
			}
			fuse_reply_iov(req, iov, (int)l.n);
		} else {
			unsigned char *buf = malloc(size);
			size_t at = 0;
			for (size_t i = 0; buf && i < l.n; i++) {
				tcz_piece_copy(&l.p[i],
					       ents[i] ? tcz_cache_data(ents[i]) : NULL,
					       buf + at);
				at += l.p[i].len;
			}
			if (buf)
				fuse_reply_buf(req, (const char *)buf, size);
			else
				fuse_reply_err(req, ENOMEM);
			free(buf);
		}
		record(fm, &l);
	}
	for (size_t i = 0; ents && i < l.n; i++) {
		if (!ents[i])
			continue;
		/* what a reader had of a chunk: one read through it whole
		 * (sequential, mmap readahead) drops it (store/cache.h) */
		if (rc == 0 && l.p[i].kind == TCZ_PIECE_CHUNK)
			tcz_cache_release_served(fs->cache, ents[i], l.p[i].len);
		else
			tcz_cache_release(fs->cache, ents[i]);
	}
	free(ents);

	/* A sequential reader gets the next chunks of its tensor decoded
	 * ahead; it stops at the tensor's end. The kernel's readahead already
	 * keeps buffered readers busy, so the look-ahead is for the others
	 * (mmap, direct readers) and scales with the cache: decoding far
	 * ahead into a small cache evicts what in-flight reads still need
	 * (measured: a 32 MiB cache decoded half the chunks twice). */
	uint64_t ahead_b = fs->opts.cache_bytes / PF_BUDGET_PER_BYTE;
	if (ahead_b > (fm->remote ? PF_AHEAD_REMOTE : PF_AHEAD_BYTES))
		ahead_b = fm->remote ? PF_AHEAD_REMOTE : PF_AHEAD_BYTES;
	uint32_t clen = l.n && is_src(&l.p[l.n - 1]) ? l.p[l.n - 1].src.len : 0;
	uint32_t ahead = clen ? (uint32_t)(ahead_b / clen) : 0;
	if (rc == 0 && runs >= 1 && l.n && is_src(&l.p[l.n - 1])) {
		tcz_src nx;
		for (uint32_t k = 1; k <= ahead; k++)
			if (tcz_view_src_next(fm->v, &l.p[l.n - 1].src, k, &nx) == 0)
				prefetch(fs, fm, &nx);
	}
	if (rc == 0)
		fs_push_note(fs, f, &l, off, size, runs);
	tcz_pieces_free(&l);
}
