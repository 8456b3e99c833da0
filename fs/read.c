/* The read path: byte range -> pieces (header bytes, chunk slices) ->
 * decoded chunks from the cache -> one reply. Plus prefetching. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>

#include <xxhash.h>

#include "codec/half.h"
#include "fs/internal.h"

#define PF_AHEAD 4   /* chunks prefetched ahead of a sequential reader */
#define PF_PER_CHUNK (32u << 20) /* cache budget per chunk of look-ahead */
/* Below this budget nothing is prefetched: the kernel's readahead window
 * (16 MiB) alone fills such a cache, and chunks decoded early are evicted
 * before they are read. */
#define PF_MIN_CACHE (64u << 20)
#define PF_QUEUE 128 /* pending prefetch jobs at most (more are dropped) */
#define IOV_MAX_PIECES 64
/* A prefetch that waited longer than this is dropped: the reader it was
 * for has decoded the chunk itself by now, and decoding it again would
 * only push useful chunks out of the cache. */
#define PF_STALE_NS 20000000ull

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- chunks -------------------------------------------------------------- */

static tcz_reader *thread_reader(tczfs *fs)
{
	tcz_reader *r = pthread_getspecific(fs->reader_key);
	if (!r && tcz_reader_create(&r) == 0)
		pthread_setspecific(fs->reader_key, r);
	return r;
}

typedef struct fill_arg {
	tczfs *fs;
	fs_view *view;
	const fs_model *fm;
	int blob;
	uint32_t index, chunk;
} fill_arg;

static int fill_chunk(void *arg, void *dst, size_t len)
{
	(void)len;
	fill_arg *a = arg;
	tcz_reader *r = thread_reader(a->fs);
	if (!r)
		return -ENOMEM;
	if (a->blob)
		return tcz_read_blob_chunk(r, a->view->sn, a->fm->m, a->index,
					   a->chunk, dst);
	return tcz_read_tensor_chunk(r, a->view->sn, a->fm->m, a->index,
				     a->chunk, dst);
}

static uint32_t chunk_len(const fs_model *fm, int blob, uint32_t index,
			  uint32_t chunk)
{
	if (!blob)
		return tcz_tensor_chunk_len(&fm->m->tensors[index], chunk);
	const tcz_blob *b = &fm->m->blobs[index];
	uint64_t left = b->length - (uint64_t)chunk * b->chunk_bytes;
	return left < b->chunk_bytes ? (uint32_t)left : b->chunk_bytes;
}

static uint32_t chunk_count(const fs_model *fm, int blob, uint32_t index)
{
	return blob ? fm->m->blobs[index].n_chunks
		    : tcz_tensor_chunk_count(&fm->m->tensors[index]);
}

/* The cache key: a stored chunk's content key, which identical chunks of
 * different models share; TT chunks are computed, so they get a name. */
static void chunk_key(const fs_model *fm, int blob, uint32_t index,
		      uint32_t chunk, unsigned char key[16])
{
	if (blob) {
		memcpy(key, fm->m->blobs[index].chunks[chunk], 16);
		return;
	}
	const tcz_tensor *t = &fm->m->tensors[index];
	if (t->codec != TCZ_CODEC_TT) {
		memcpy(key, t->chunks[chunk], 16);
		return;
	}
	uint64_t in[3] = {0x7474636875636bull /* "ttchunk" */, fm->id,
			  ((uint64_t)index << 32) | chunk};
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits(in, sizeof in));
	memcpy(key, c.digest, 16);
}

static int get_chunk(tczfs *fs, fs_view *v, const fs_model *fm, int blob,
		     uint32_t index, uint32_t chunk, tcz_cache_entry **e)
{
	unsigned char key[16];
	chunk_key(fm, blob, index, chunk, key);
	fill_arg a = {fs, v, fm, blob, index, chunk};
	return tcz_cache_get(fs->cache, key, chunk_len(fm, blob, index, chunk),
			     fill_chunk, &a, e);
}

/* ---- prefetching ------------------------------------------------------- */

static void prefetch(tczfs *fs, fs_view *v, fs_model *fm, int blob,
		     uint32_t index, uint32_t chunk)
{
	unsigned char key[16];
	if (fs->opts.cache_bytes < PF_MIN_CACHE ||
	    chunk >= chunk_count(fm, blob, index))
		return;
	chunk_key(fm, blob, index, chunk, key);
	if (tcz_cache_has(fs->cache, key))
		return;
	pthread_mutex_lock(&fs->pflock);
	if (fs->pf_len < fs->pf_cap && !fs->pf_stop) {
		prefetch_job *j = &fs->pfq[(fs->pf_head + fs->pf_len) % fs->pf_cap];
		j->fm = fm;
		j->view = v;
		j->blob = blob;
		j->index = index;
		j->chunk = chunk;
		j->queued_ns = mono_ns();
		atomic_fetch_add(&fm->refs, 1);
		atomic_fetch_add(&v->refs, 1);
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
		tcz_cache_entry *e;
		/* errors surface when a reader asks for the chunk itself */
		if (mono_ns() - j.queued_ns < PF_STALE_NS &&
		    get_chunk(fs, j.view, j.fm, j.blob, j.index, j.chunk, &e) == 0)
			tcz_cache_release(fs->cache, e);
		fs_view_put(fs, j.view);
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
		prefetch_job *j = &fs->pfq[fs->pf_head];
		fs_view_put(fs, j->view);
		fs_model_put(fs, j->fm);
		fs->pf_head = (fs->pf_head + 1) % fs->pf_cap;
		fs->pf_len--;
	}
	free(fs->pfq);
	free(fs->pf_threads);
	fs->pfq = NULL;
	fs->pf_threads = NULL;
	fs->pf_count = 0;
}

/* ---- pieces ------------------------------------------------------------ */

typedef struct piece {
	const void *mem; /* header bytes, else a chunk slice */
	int blob, widen; /* widen: BF16 chunk presented as f32 */
	uint32_t index, chunk;
	uint32_t coff, len; /* within the (widened) chunk */
	tcz_cache_entry *e;
} piece;

typedef struct plist {
	piece *p;
	size_t n, cap;
} plist;

static int add(plist *l, piece pc)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		piece *np = realloc(l->p, cap * sizeof *np);
		if (!np)
			return -ENOMEM;
		l->p = np;
		l->cap = cap;
	}
	l->p[l->n++] = pc;
	return 0;
}

/* Pieces of a model file (container or aux) for [off, off+len). */
static int map_model_file(const fs_model *fm, uint32_t f, uint64_t off,
			  uint64_t len, plist *l)
{
	const tcz_file *fl = &fm->m->files[f];
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
		int blob = x->kind == TCZ_EXT_BLOB;
		uint32_t cb = blob ? fm->m->blobs[x->index].chunk_bytes
				   : fm->m->tensors[x->index].chunk_bytes;
		while (len > 0 && off < x->offset + x->length) {
			uint64_t in = off - x->offset;
			uint32_t ci = (uint32_t)(in / cb);
			uint32_t coff = (uint32_t)(in % cb);
			uint32_t clen = chunk_len(fm, blob, x->index, ci);
			uint32_t take = clen - coff < len ? clen - coff
							  : (uint32_t)len;
			piece pc = {NULL, blob, 0, x->index, ci, coff, take, NULL};
			if (add(l, pc))
				return -ENOMEM;
			off += take;
			len -= take;
		}
	}
	return 0;
}

/* Pieces of layers/<tensor>.npy: the header, then the data in the npy
 * dtype (BF16 chunks widened to f32: each chunk counts twice its bytes). */
static int map_npy(const fs_model *fm, uint32_t t, uint64_t off, uint64_t len,
		   plist *l)
{
	uint32_t hl = fm->npy_hlen[t];
	if (off < hl) {
		uint32_t take = hl - (uint32_t)off < len ? hl - (uint32_t)off
							 : (uint32_t)len;
		piece pc = {fm->npy_hdr[t] + off, 0, 0, t, 0, 0, take, NULL};
		if (add(l, pc))
			return -ENOMEM;
		off += take;
		len -= take;
	}
	const tcz_tensor *tn = &fm->m->tensors[t];
	int widen = tn->dtype == TCZ_DT_BF16;
	uint64_t cb = (uint64_t)tn->chunk_bytes * (widen ? 2 : 1);
	while (len > 0) {
		uint64_t d = off - hl;
		uint32_t ci = (uint32_t)(d / cb), coff = (uint32_t)(d % cb);
		uint32_t clen = tcz_tensor_chunk_len(tn, ci) * (widen ? 2 : 1);
		uint32_t take = clen - coff < len ? clen - coff : (uint32_t)len;
		piece pc = {NULL, 0, widen, t, ci, coff, take, NULL};
		if (add(l, pc))
			return -ENOMEM;
		off += take;
		len -= take;
	}
	return 0;
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

/* ---- the read --------------------------------------------------------- */

/* The view a read of f uses: its own, moved to the newest one when there
 * is a newer one and its model is still there (so old snapshots are let
 * go), kept when the model was removed (open files read on). */
static fs_view *file_view(tczfs *fs, fs_file *f)
{
	pthread_mutex_lock(&f->lock);
	const fs_view *mine = f->view; /* compared, never dereferenced */
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_lock(&fs->lock);
	int stale = fs->view != mine;
	pthread_mutex_unlock(&fs->lock);
	if (stale) {
		fs_view *cur = fs_view_get(fs, 0);
		if (!atomic_load(&f->fm->gone)) {
			pthread_mutex_lock(&f->lock);
			fs_view *old = f->view;
			f->view = cur;
			pthread_mutex_unlock(&f->lock);
			fs_view_put(fs, old);
		} else {
			fs_view_put(fs, cur);
		}
	}
	pthread_mutex_lock(&f->lock);
	fs_view *v = f->view;
	atomic_fetch_add(&v->refs, 1);
	pthread_mutex_unlock(&f->lock);
	return v;
}

static void record(fs_model *fm, const plist *l)
{
	uint64_t now = (uint64_t)time(NULL);
	int64_t last_t = -1;
	for (size_t i = 0; i < l->n; i++) {
		const piece *p = &l->p[i];
		if (p->mem || p->blob)
			continue;
		fs_tstat *s = &fm->st[p->index];
		if ((int64_t)p->index != last_t) {
			atomic_fetch_add(&s->reads, 1);
			atomic_store(&s->last, now);
			atomic_store(&s->dirty, 1);
			last_t = p->index;
		}
		atomic_fetch_add(&s->bytes, p->len);
	}
}

static const char *file_name(const fs_file *f)
{
	return f->kind == FILE_NPY ? f->fm->npy_name[f->index]
				   : f->fm->m->files[f->index].name;
}

void fs_read(tczfs *fs, fuse_req_t req, fs_file *f, size_t size, uint64_t off)
{
	fs_model *fm = f->fm;
	uint64_t fsize = f->kind == FILE_NPY ? fm->npy_size[f->index]
					     : fm->m->files[f->index].size;
	if (off >= fsize || size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > fsize - off)
		size = (size_t)(fsize - off);
	plist l = {0};
	int rc = f->kind == FILE_NPY ? map_npy(fm, f->index, off, size, &l)
				     : map_model_file(fm, f->index, off, size, &l);
	fs_view *v = file_view(fs, f);
	/* Once replied to, the kernel may release f while this thread still
	 * runs: everything needed from f is taken now, and the model is held
	 * by a reference of this read's own. */
	atomic_fetch_add(&fm->refs, 1);
	const char *fname = file_name(f);
	pthread_mutex_lock(&f->lock);
	int seq = off == f->next_off;
	f->seq = seq ? f->seq + 1 : 0;
	f->next_off = off + size;
	unsigned runs = f->seq;
	pthread_mutex_unlock(&f->lock);

	/* Chunks beyond the second of a large read decode in parallel; a
	 * read of two chunks (a 1 MiB request off the chunk grid) is served
	 * here, concurrent requests keep the other threads busy. */
	size_t distinct = 0;
	for (size_t i = 0; i < l.n; i++)
		distinct += !l.p[i].mem &&
			    (i == 0 || l.p[i].chunk != l.p[i - 1].chunk ||
			     l.p[i].index != l.p[i - 1].index ||
			     l.p[i].blob != l.p[i - 1].blob);
	for (size_t i = 1; rc == 0 && distinct > 2 && i < l.n; i++)
		if (!l.p[i].mem && (l.p[i].chunk != l.p[i - 1].chunk ||
				    l.p[i].index != l.p[i - 1].index ||
				    l.p[i].blob != l.p[i - 1].blob))
			prefetch(fs, v, fm, l.p[i].blob, l.p[i].index,
				 l.p[i].chunk);
	size_t failed = 0;
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		piece *p = &l.p[i];
		if (p->mem)
			continue;
		rc = get_chunk(fs, v, fm, p->blob, p->index, p->chunk, &p->e);
		failed = i;
	}
	if (rc) {
		const piece *p = &l.p[failed];
		if (rc == -EIO || rc == -EBADMSG)
			fs_log(fs, LOG_ERR,
			       "%s/%s: read at offset %llu failed: %s %s chunk %u "
			       "is corrupt (%s)",
			       fm->name, fname, (unsigned long long)off,
			       p->blob ? "file part" : "tensor",
			       p->blob ? "" : fm->m->tensors[p->index].name,
			       p->chunk,
			       rc == -EIO ? "checksum mismatch" : "does not decode");
		fuse_reply_err(req, rc == -ENOMEM ? ENOMEM : EIO);
	} else {
		int widen = 0;
		for (size_t i = 0; i < l.n; i++)
			widen |= l.p[i].widen;
		if (!widen && l.n <= IOV_MAX_PIECES) {
			/* straight from the cache to the kernel */
			struct iovec iov[IOV_MAX_PIECES];
			for (size_t i = 0; i < l.n; i++) {
				const piece *p = &l.p[i];
				iov[i].iov_base = (void *)(p->mem
					? p->mem
					: (const char *)tcz_cache_data(p->e) + p->coff);
				iov[i].iov_len = p->len;
			}
			fuse_reply_iov(req, iov, (int)l.n);
		} else {
			unsigned char *buf = malloc(size);
			size_t at = 0;
			for (size_t i = 0; buf && i < l.n; i++) {
				const piece *p = &l.p[i];
				if (p->mem)
					memcpy(buf + at, p->mem, p->len);
				else if (p->widen)
					widen_copy(buf + at, tcz_cache_data(p->e),
						   p->coff, p->len);
				else
					memcpy(buf + at,
					       (const char *)tcz_cache_data(p->e) +
						       p->coff,
					       p->len);
				at += p->len;
			}
			if (buf)
				fuse_reply_buf(req, (const char *)buf, size);
			else
				fuse_reply_err(req, ENOMEM);
			free(buf);
		}
		record(fm, &l);
	}
	for (size_t i = 0; i < l.n; i++)
		if (l.p[i].e)
			tcz_cache_release(fs->cache, l.p[i].e);

	/* A sequential reader gets the next chunks of its tensor decoded
	 * ahead; it stops at the tensor's end. The kernel's readahead already
	 * keeps buffered readers busy, so the look-ahead is for the others
	 * (mmap, direct readers) and scales with the cache: decoding far
	 * ahead into a small cache evicts what in-flight reads still need
	 * (measured: a 32 MiB cache decoded half the chunks twice). */
	uint32_t ahead = (uint32_t)(fs->opts.cache_bytes / PF_PER_CHUNK);
	if (ahead > PF_AHEAD)
		ahead = PF_AHEAD;
	if (rc == 0 && runs >= 1 && l.n) {
		const piece *p = &l.p[l.n - 1];
		if (!p->mem)
			for (uint32_t k = 1; k <= ahead; k++)
				prefetch(fs, v, fm, p->blob, p->index, p->chunk + k);
	}
	fs_view_put(fs, v);
	fs_model_put(fs, fm);
	free(l.p);
}
