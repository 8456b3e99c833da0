/* The stream writer: frames go through the TQTC streaming compressor
 * (codec/tqtc.h), finished segments wait in memory, and a commit writes
 * all of them, their index records and the stream's new totals in one
 * write transaction. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "codec/tqtc.h"
#include "store/grow.h"
#include "store/stream_int.h"

typedef struct pend {
	uint64_t first; /* first frame */
	tcz_tqtc_segment seg;
	int ready;        /* seg.data ends in its checksum; idx encoded */
	tcz_wbuf idx;     /* its index record */
} pend;

struct tcz_stream_writer {
	tcz_store *s;
	char *name;
	uint64_t id;
	tcz_stream_params p;
	size_t frame_bytes;
	int lock_fd; /* holds the OFD write lock on byte id of tczfs.lock */
	tcz_tqtc_enc *enc;
	tcz_tier_thresholds th;
	tcz_tier tier;

	uint64_t committed; /* frames in the store */
	uint64_t next;      /* frames appended (committed + buffered) */
	int have_last;
	uint64_t last_ts;
	/* timestamps of the buffered frames: ts[f - committed] */
	uint64_t *ts;
	size_t ts_cap;
	/* finished segments waiting for a commit, in frame order; the open
	 * segment (in enc) begins at committed + pend_frames */
	pend *pend;
	size_t n_pend, cap_pend;
	uint64_t pend_frames, pend_bytes;
	/* tcz_stream_writer_write: the bytes of a partial frame */
	unsigned char *part;
	size_t part_len;
	float *frame; /* one frame of scratch */
};

static unsigned tier_bits(const tcz_stream_writer *w, tcz_tier t)
{
	return t == TCZ_TIER_HOT ? 8 : t == TCZ_TIER_WARM ? w->p.warm_bits : 3;
}

/* The exclusive lock of the stream's writer: an OFD lock on byte id of
 * tczfs.lock (ids are never 0, the writer gate's byte, and a stream's id
 * is nobody's pin: pins are model ids), on a descriptor of its own so
 * that two writers of one process exclude each other too, and dropped by
 * the kernel when the process dies. */
static int lock_stream(tcz_store *s, uint64_t id, int *fd_out)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/tczfs.lock", s->dir);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct flock fl = {0};
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)id;
	fl.l_len = 1;
	while (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
		int e = errno;
		if (e == EINTR)
			continue;
		close(fd);
		return e == EAGAIN || e == EACCES ? -EBUSY : -e;
	}
	*fd_out = fd;
	return 0;
}

static void pend_free(pend *p)
{
	free(p->seg.data);
	tcz_wb_free(&p->idx);
}

void tcz_stream_writer_discard(tcz_stream_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_pend; i++)
		pend_free(&w->pend[i]);
	free(w->pend);
	tcz_tqtc_enc_free(w->enc);
	if (w->lock_fd >= 0)
		close(w->lock_fd);
	free(w->ts);
	free(w->part);
	free(w->frame);
	free(w->name);
	free(w);
}

/* The stream's record and statistics in a read transaction. */
static int read_rec(tcz_store *s, const char *name, tcz__srec *r,
		    tcz_access *a)
{
	MDB_txn *txn = NULL;
	int rc = tcz__rtxn_begin(s, &txn);
	if (rc)
		return rc;
	rc = tcz__stream_get(s, txn, name, r);
	if (rc == 0)
		tcz__sstat_get(s, txn, r->id, a);
	tcz__rtxn_end(s, txn, 0);
	if (rc == -ENOENT)
		return tcz__fail(-ENOENT, "no stream named %s", name);
	return rc;
}

static void set_tier(tcz_stream_writer *w, const tcz_access *a)
{
	w->tier = tcz__stream_tier(a, &w->th, tcz_store_now());
	tcz_tqtc_enc_pin(w->enc, (int)w->tier);
}

int tcz_stream_writer_open(tcz_store *s, const char *name,
			   tcz_stream_writer **out)
{
	*out = NULL;
	if (s->flags & TCZ_STORE_RDONLY)
		return tcz__fail(-EROFS, "store %s is open read-only", s->dir);
	tcz__srec r;
	tcz_access a;
	int rc = read_rec(s, name, &r, &a);
	if (rc)
		return rc;
	tcz_stream_writer *w = calloc(1, sizeof *w);
	if (!w || !(w->name = strdup(name))) {
		free(w);
		return -ENOMEM;
	}
	w->s = s;
	w->lock_fd = -1;
	w->th = TCZ_TIER_THRESHOLDS_DEFAULT;
	if ((rc = lock_stream(s, r.id, &w->lock_fd))) {
		tcz_stream_writer_discard(w);
		if (rc == -EBUSY)
			return tcz__fail(-EBUSY,
					 "stream %s is being written by another "
					 "writer",
					 name);
		return tcz__fail(rc, "stream %s: cannot lock it: %s", name,
				 strerror(-rc));
	}
	/* read again under the lock: a writer that was committing may have
	 * moved the frame count since */
	uint64_t id = r.id;
	if ((rc = read_rec(s, name, &r, &a)) || r.id != id) {
		tcz_stream_writer_discard(w);
		return rc ? rc : tcz__fail(-ENOENT, "no stream named %s", name);
	}
	w->id = r.id;
	w->p = r.p;
	w->frame_bytes = (size_t)r.p.dim * sizeof(float);
	w->committed = w->next = r.frames;
	w->have_last = r.frames > 0;
	w->last_ts = r.last_ts;

	tcz_tqtc_policy pol;
	tcz_tqtc_policy_default(&pol);
	pol.group_len = r.p.group_len;
	pol.drift_pct_q8 = r.p.drift_pct_q8;
	pol.warm_bits = r.p.warm_bits;
	pol.max_frames = r.p.segment_frames; /* 0: 1 MiB of f32, as ours */
	rc = tcz_tqtc_enc_create(r.p.dim, &pol, &w->enc);
	if (rc == 0) {
		w->frame = malloc(w->frame_bytes);
		w->part = malloc(w->frame_bytes);
		if (!w->frame || !w->part)
			rc = -ENOMEM;
	}
	if (rc) {
		tcz_stream_writer_discard(w);
		return rc;
	}
	/* this writer's first commit counts as an access (see commit_fn):
	 * the width of its first segment is the one that access gives */
	a.reads++;
	a.last_access = tcz_store_now();
	set_tier(w, &a);
	*out = w;
	return 0;
}

void tcz_stream_writer_set_thresholds(tcz_stream_writer *w,
				      const tcz_tier_thresholds *th)
{
	w->th = *th;
}

static int frame_finite(const float *f, size_t n)
{
	/* no early exit: the loop vectorizes, and bad frames are rare */
	uint32_t bad = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t b;
		memcpy(&b, &f[i], 4);
		bad |= (b & 0x7f800000u) == 0x7f800000u;
	}
	return !bad;
}

/* Room for one more buffered frame and one more finished segment, so
 * that nothing can fail after the compressor took a frame. */
static int reserve(tcz_stream_writer *w)
{
	size_t buffered = (size_t)(w->next - w->committed);
	if (tcz__grow(&w->ts, &w->ts_cap, buffered, sizeof *w->ts, 256) ||
	    tcz__grow(&w->pend, &w->cap_pend, w->n_pend, sizeof *w->pend, 8))
		return -ENOMEM;
	return 0;
}

static void take_segment(tcz_stream_writer *w, const tcz_tqtc_segment *seg)
{
	pend *p = &w->pend[w->n_pend++];
	memset(p, 0, sizeof *p);
	p->first = w->committed + w->pend_frames;
	p->seg = *seg;
	w->pend_frames += seg->frame_count;
	w->pend_bytes += seg->len;
}

/* One frame, already checked (finite, timestamp in order). */
static int push(tcz_stream_writer *w, const float *frame, uint64_t ts)
{
	int rc = reserve(w);
	if (rc)
		return rc;
	tcz_tqtc_segment seg;
	int have = 0;
	if ((rc = tcz_tqtc_enc_push(w->enc, ts, frame, &seg, &have)))
		return rc;
	if (have)
		take_segment(w, &seg);
	w->ts[w->next - w->committed] = ts;
	w->next++;
	w->last_ts = ts;
	w->have_last = 1;
	return 0;
}

static int ts_ok(tcz_stream_writer *w, uint64_t ts)
{
	if (w->have_last && ts < w->last_ts)
		return tcz__fail(-EINVAL,
				 "stream %s: timestamp %llu is earlier than the "
				 "last frame's (%llu)",
				 w->name, (unsigned long long)ts,
				 (unsigned long long)w->last_ts);
	return 0;
}

int tcz_stream_writer_append(tcz_stream_writer *w, const float *frames,
			     size_t n, uint64_t ts, uint64_t step)
{
	if (w->part_len)
		return tcz__fail(-EINVAL,
				 "stream %s: a partial frame is pending", w->name);
	if (n == 0)
		return 0;
	int rc = ts_ok(w, ts);
	if (rc)
		return rc;
	if (step && (uint64_t)(n - 1) > (UINT64_MAX - ts) / step)
		return tcz__fail(-EINVAL, "stream %s: timestamps overflow",
				 w->name);
	for (size_t f = 0; f < n; f++)
		if (!frame_finite(frames + f * w->p.dim, w->p.dim))
			return tcz__fail(-EDOM,
					 "stream %s: frame %zu holds a NaN or an "
					 "infinity",
					 w->name, f);
	for (size_t f = 0; f < n; f++)
		if ((rc = push(w, frames + f * w->p.dim, ts + f * step)))
			return rc;
	return 0;
}

int tcz_stream_writer_write(tcz_stream_writer *w, const void *buf,
			    size_t len, uint64_t ts)
{
	const unsigned char *b = buf;
	size_t fb = w->frame_bytes;
	if (w->part_len + len < fb) {
		memcpy(w->part + w->part_len, b, len);
		w->part_len += len;
		return 0;
	}
	int rc = ts_ok(w, ts);
	if (rc)
		return rc;
	/* frame k of this call starts at byte k*fb - part_len of buf (the
	 * first one completes the pending part); checked all before any is
	 * taken */
	size_t total = w->part_len + len, n = total / fb;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t k = 0; k < n; k++) {
			if (k == 0 && w->part_len) {
				memcpy(w->frame, w->part, w->part_len);
				memcpy((unsigned char *)w->frame + w->part_len, b,
				       fb - w->part_len);
			} else {
				memcpy(w->frame, b + k * fb - w->part_len, fb);
			}
			if (pass == 0 && !frame_finite(w->frame, w->p.dim))
				return tcz__fail(-EDOM,
						 "stream %s: frame %llu holds a "
						 "NaN or an infinity",
						 w->name,
						 (unsigned long long)(w->next + k));
			if (pass == 1 && (rc = push(w, w->frame, ts))) {
				/* frames before it are in: the rest is not
				 * taken, neither is the tail */
				w->part_len = 0;
				return rc;
			}
		}
	}
	size_t rest = total - n * fb;
	memcpy(w->part, b + len - rest, rest);
	w->part_len = rest;
	return 0;
}

/* Checksums the segment and encodes its index record, once. */
static int prepare(tcz_stream_writer *w, pend *p)
{
	if (p->ready)
		return 0;
	uint64_t h = XXH3_64bits(p->seg.data, p->seg.len);
	unsigned char *d = realloc(p->seg.data, p->seg.len + 8);
	if (!d)
		return -ENOMEM;
	p->seg.data = d;
	for (int i = 0; i < 8; i++)
		d[p->seg.len + (size_t)i] = (unsigned char)(h >> (8 * i));
	tcz_wb_init(&p->idx);
	int rc = tcz__sidx_encode(w->ts + (p->first - w->committed),
				  p->seg.frame_count, p->seg.bits,
				  (uint32_t)p->seg.len, &p->idx);
	if (rc) {
		/* done again next time: the checksum lands where it is */
		tcz_wb_free(&p->idx);
		return rc;
	}
	p->ready = 1;
	return 0;
}

typedef struct commit_arg {
	tcz_stream_writer *w;
	uint64_t now;
	tcz_access acc; /* the statistics as committed */
} commit_arg;

static int commit_fn(void *arg, MDB_txn *txn)
{
	commit_arg *a = arg;
	tcz_stream_writer *w = a->w;
	tcz_store *s = w->s;
	tcz__srec r;
	int rc = tcz__stream_get(s, txn, w->name, &r);
	if (rc == -ENOENT || (rc == 0 && r.id != w->id))
		return tcz__fail(-ENOENT, "stream %s was removed", w->name);
	if (rc)
		return rc;
	if (r.frames != w->committed)
		return tcz__fail(-EIO,
				 "stream %s holds %llu frames, its writer "
				 "expected %llu",
				 w->name, (unsigned long long)r.frames,
				 (unsigned long long)w->committed);
	for (size_t i = 0; i < w->n_pend; i++) {
		const pend *p = &w->pend[i];
		unsigned char sk[TCZ__SEG_KEY], ik[TCZ__SIDX_KEY];
		tcz__seg_key(sk, w->id, p->seg.start_ts, p->seg.end_ts, p->first);
		tcz__sidx_key(ik, w->id, p->first);
		MDB_val k1 = {sizeof sk, sk}, d1 = {p->seg.len + 8, p->seg.data};
		MDB_val k2 = {sizeof ik, ik}, d2 = {p->idx.len, p->idx.p};
		if ((rc = tcz__mdb_err(mdb_put(txn, s->segments, &k1, &d1, 0))) ||
		    (rc = tcz__mdb_err(mdb_put(txn, s->sindex, &k2, &d2, 0))))
			return rc;
		if (r.frames == 0)
			r.first_ts = p->seg.start_ts;
		r.last_ts = p->seg.end_ts;
		r.frames += p->seg.frame_count;
		r.segments++;
		r.stored_bytes += p->seg.len;
		r.overhead_bytes += p->idx.len + 8;
		int slot = tcz__width_slot(p->seg.bits);
		r.width[slot].segments++;
		r.width[slot].frames += p->seg.frame_count;
		r.width[slot].bytes += p->seg.len;
	}
	r.version++;
	/* a commit is an access: a stream being written is in use, and a
	 * new stream starts hot rather than at the cold width */
	tcz__sstat_get(s, txn, w->id, &a->acc);
	a->acc.reads++;
	if (a->now > a->acc.last_access)
		a->acc.last_access = a->now;
	if ((rc = tcz__sstat_put(s, txn, w->id, &a->acc)) ||
	    (rc = tcz__stream_put(s, txn, w->name, &r)))
		return rc;
	return tcz__stream_gen_bump(s, txn);
}

static int commit(tcz_stream_writer *w)
{
	if (!w->n_pend)
		return 0;
	int rc;
	for (size_t i = 0; i < w->n_pend; i++)
		if ((rc = prepare(w, &w->pend[i])))
			return rc;
	commit_arg a = {w, tcz_store_now(), {0, 0, 0, -1}};
	if ((rc = tcz__write(w->s, commit_fn, &a)))
		return rc;
	for (size_t i = 0; i < w->n_pend; i++)
		pend_free(&w->pend[i]);
	w->n_pend = 0;
	w->committed += w->pend_frames;
	size_t left = (size_t)(w->next - w->committed);
	memmove(w->ts, w->ts + w->pend_frames, left * sizeof *w->ts);
	w->pend_frames = w->pend_bytes = 0;
	/* a pin or a score changed since: new segments take it */
	set_tier(w, &a.acc);
	return 0;
}

int tcz_stream_writer_commit(tcz_stream_writer *w)
{
	return commit(w);
}

int tcz_stream_writer_flush(tcz_stream_writer *w)
{
	int rc = reserve(w);
	if (rc)
		return rc;
	tcz_tqtc_segment seg;
	int have = 0;
	if ((rc = tcz_tqtc_enc_flush(w->enc, &seg, &have)))
		return rc;
	if (have)
		take_segment(w, &seg);
	return commit(w);
}

void tcz_stream_writer_get_state(const tcz_stream_writer *w,
				 tcz_stream_writer_state *st)
{
	*st = (tcz_stream_writer_state){
		.committed = w->committed,
		.buffered = w->next - w->committed,
		.pending_bytes = w->pend_bytes,
		.partial = w->part_len,
		.bits = tier_bits(w, w->tier),
		.tier = w->tier,
		.last_ts = w->have_last ? w->last_ts : 0,
	};
}

int tcz_stream_writer_close(tcz_stream_writer *w, size_t *dropped)
{
	if (!w) {
		if (dropped)
			*dropped = 0;
		return 0;
	}
	int rc = tcz_stream_writer_flush(w);
	if (dropped)
		*dropped = w->part_len;
	tcz_stream_writer_discard(w);
	return rc;
}
