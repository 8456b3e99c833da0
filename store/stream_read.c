/* The stream reader. A frame's segment is found through the index
 * (stream id . first frame, the floor of the frame: one cursor seek), a
 * time through the segments' own keys (stream id . start . end . first
 * frame, which sort by time). Lookups and the copy of a segment happen in
 * one short read transaction, the copy with pread as the model reader's
 * (read.c): no store page stays mapped in the reader, no lock is held
 * while a segment is decoded. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/tqtc.h"
#include "store/stream_int.h"

struct tcz_stream_reader {
	tcz_store *s;
	char *name;
	uint64_t id;
	uint32_t dim;
	uint64_t frames, data_rev; /* as of the last refresh */
	MDB_txn *txn;              /* reset between lookups, renewed */

	/* the segment fetched last */
	int have;
	uint64_t first;
	tcz__sidx x;           /* deltas point into idx */
	unsigned char *idx;    /* its index record */
	size_t idx_cap;
	unsigned char *val;    /* the segment value: TQTC + checksum */
	size_t val_cap;
	tcz_tqtc_view v;
	float *frame;          /* one frame of scratch */
	/* tcz_stream_find_time's: index records apart from the fetched
	 * segment's, and timestamps */
	tcz__sidx fx;
	unsigned char *fidx, *hidx; /* copies: where from and to fall */
	size_t fidx_cap, hidx_cap;
	uint64_t *ts;
	size_t ts_cap;
};

static int refresh(tcz_stream_reader *r, MDB_txn *txn, tcz_stream_info *info)
{
	tcz_stream_info i;
	int rc = tcz__stream_info(r->s, txn, r->name, &i);
	if (rc == 0 && r->id && i.id != r->id)
		rc = tcz__fail(-ENOENT, "stream %s was removed", r->name);
	if (rc)
		return rc;
	if (r->id && i.data_rev != r->data_rev)
		r->have = 0; /* re-encoded: fetch the new segments */
	r->id = i.id;
	r->dim = i.params.dim;
	r->frames = i.frames;
	r->data_rev = i.data_rev;
	if (info)
		*info = i;
	return 0;
}

int tcz_stream_reader_refresh(tcz_stream_reader *r, tcz_stream_info *info)
{
	int rc = tcz__rtxn_begin(r->s, &r->txn);
	if (rc)
		return rc;
	rc = refresh(r, r->txn, info);
	tcz__rtxn_end(r->s, r->txn, 1);
	return rc;
}

void tcz_stream_reader_close(tcz_stream_reader *r)
{
	if (!r)
		return;
	if (r->txn)
		mdb_txn_abort(r->txn); /* a reset handle: frees its slot */
	free(r->name);
	free(r->idx);
	free(r->val);
	free(r->frame);
	free(r->fidx);
	free(r->hidx);
	free(r->ts);
	free(r);
}

int tcz_stream_reader_open(tcz_store *s, const char *name,
			   tcz_stream_reader **out)
{
	*out = NULL;
	tcz_stream_reader *r = calloc(1, sizeof *r);
	if (!r || !(r->name = strdup(name))) {
		free(r);
		return -ENOMEM;
	}
	r->s = s;
	int rc = tcz_stream_reader_refresh(r, NULL);
	if (rc == 0 && !(r->frame = malloc((size_t)r->dim * sizeof(float))))
		rc = -ENOMEM;
	if (rc) {
		tcz_stream_reader_close(r);
		return rc;
	}
	*out = r;
	return 0;
}

uint64_t tcz_stream_reader_frames(const tcz_stream_reader *r)
{
	return r->frames;
}

uint32_t tcz_stream_reader_dim(const tcz_stream_reader *r)
{
	return r->dim;
}

static int grow_buf(unsigned char **p, size_t *cap, size_t n)
{
	if (n <= *cap)
		return 0;
	size_t c = n + (n >> 3);
	unsigned char *np = realloc(*p, c);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = c;
	return 0;
}

/* pread of n bytes at off, whole or -EIO. */
static int pread_all(int fd, void *dst, size_t n, uint64_t off)
{
	unsigned char *o = dst;
	for (size_t got = 0; got < n;) {
		ssize_t k = pread(fd, o + got, n - got, (off_t)(off + got));
		if (k <= 0) {
			if (k < 0 && errno == EINTR)
				continue;
			return -EIO;
		}
		got += (size_t)k;
	}
	return 0;
}

/* Why frame k has no segment: the stream is gone, or its index is
 * damaged (k is below the frame count the reader was given). */
static int missing(tcz_stream_reader *r, MDB_txn *txn, uint64_t k)
{
	tcz__srec rec;
	int rc = tcz__stream_get(r->s, txn, r->name, &rec);
	if (rc == -ENOENT || (rc == 0 && rec.id != r->id))
		return tcz__fail(-ENOENT, "stream %s was removed", r->name);
	if (rc)
		return rc;
	return tcz__fail(-EIO, "stream %s: no segment holds frame %llu (the "
			       "index is damaged)",
			 r->name, (unsigned long long)k);
}

/* The u64 at p, little-endian (index records start with start ts, end
 * ts: the segment key is built from them before the record is checked). */
static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Copies the index record of the segment holding frame k (the last first
 * frame <= k) into r->idx, *len its size. Returns 0, 1 when there is
 * none, or an error. Checked by the caller, after the transaction. */
static int index_floor(tcz_stream_reader *r, MDB_cursor *c, uint64_t k,
		       uint64_t *first, size_t *len)
{
	unsigned char k0[TCZ__SIDX_KEY];
	tcz__sidx_key(k0, r->id, k);
	MDB_val key = {sizeof k0, k0}, d;
	int m = mdb_cursor_get(c, &key, &d, MDB_SET_RANGE);
	if (m == 0 && key.mv_size == TCZ__SIDX_KEY &&
	    memcmp(key.mv_data, k0, TCZ__SIDX_KEY) == 0) {
		/* frame k starts a segment */
	} else {
		m = mdb_cursor_get(c, &key, &d, m == 0 ? MDB_PREV : MDB_LAST);
		if (m == MDB_NOTFOUND)
			return 1;
		if (m)
			return tcz__mdb_err(m);
	}
	if (key.mv_size != TCZ__SIDX_KEY || tcz_get_be64(key.mv_data) != r->id)
		return 1;
	if (d.mv_size < 16 + 8 || grow_buf(&r->idx, &r->idx_cap, d.mv_size))
		return d.mv_size < 16 + 8 ? -EBADMSG : -ENOMEM;
	*first = tcz_get_be64((const unsigned char *)key.mv_data + 8);
	memcpy(r->idx, d.mv_data, d.mv_size);
	*len = d.mv_size;
	return 0;
}

static int damaged_index(tcz_stream_reader *r, uint64_t first)
{
	return tcz__fail(-EIO,
			 "stream %s: the index record of frame %llu is damaged",
			 r->name, (unsigned long long)first);
}

/* Makes the segment holding frame k the reader's: the index lookup and
 * the copies in one read transaction; checks and decoding after it. */
static int locate(tcz_stream_reader *r, uint64_t k)
{
	if (r->have && k >= r->first && k - r->first < r->x.frames)
		return 0;
	r->have = 0;
	tcz_store *s = r->s;
	int rc = tcz__rtxn_begin(s, &r->txn);
	if (rc)
		return rc;
	MDB_cursor *c = NULL;
	uint64_t first = 0;
	size_t ilen = 0;
	int64_t off = -1;
	MDB_val d = {0, NULL};
	rc = tcz__mdb_err(mdb_cursor_open(r->txn, s->sindex, &c));
	if (rc == 0)
		rc = index_floor(r, c, k, &first, &ilen);
	if (c)
		mdb_cursor_close(c);
	if (rc == 0) {
		unsigned char sk[TCZ__SEG_KEY];
		tcz__seg_key(sk, r->id, le64(r->idx), le64(r->idx + 8), first);
		MDB_val key = {sizeof sk, sk};
		int m = mdb_get(r->txn, s->segments, &key, &d);
		if (m == MDB_NOTFOUND)
			rc = 1;
		else if (m)
			rc = tcz__mdb_err(m);
		else if (grow_buf(&r->val, &r->val_cap, d.mv_size))
			rc = -ENOMEM;
		else if ((off = tcz__map_offset(s, d.mv_data, d.mv_size)) < 0)
			memcpy(r->val, d.mv_data, d.mv_size);
	}
	if (rc == 1)
		rc = missing(r, r->txn, k);
	/* as tcz__fetch: the map lock goes before the I/O, the transaction
	 * stays until the copy is made so that its pages are not reused */
	pthread_rwlock_unlock(&s->map_lock);
	if (rc == 0 && off >= 0)
		rc = pread_all(s->data_fd, r->val, d.mv_size, (uint64_t)off);
	mdb_txn_reset(r->txn);
	if (rc == -EBADMSG)
		return damaged_index(r, first);
	if (rc)
		return rc;
	if (tcz__sidx_decode(r->idx, ilen, &r->x))
		return damaged_index(r, first);
	if (k - first >= r->x.frames)
		return tcz__fail(-EIO, "stream %s: no segment holds frame %llu (the "
				       "index is damaged)",
				 r->name, (unsigned long long)k);
	tcz_rbuf rb;
	if (tcz_rec_open(&rb, r->val, d.mv_size) ||
	    tcz_tqtc_parse(r->val, d.mv_size - 8, &r->v) ||
	    r->v.tensor_len != r->dim || r->v.frame_count != r->x.frames ||
	    r->v.bits != r->x.bits)
		return tcz__fail(-EIO,
				 "stream %s: the segment of frames %llu..%llu is "
				 "damaged",
				 r->name, (unsigned long long)first,
				 (unsigned long long)(first + r->x.frames - 1));
	r->first = first;
	r->have = 1;
	return 0;
}

int tcz_stream_read(tcz_stream_reader *r, uint64_t a, uint64_t b, float *out)
{
	if (a > b || b > r->frames)
		return -ERANGE;
	while (a < b) {
		int rc = locate(r, a);
		if (rc)
			return rc;
		uint64_t end = r->first + r->x.frames;
		if (end > b)
			end = b;
		for (uint64_t f = a; f < end; f++, out += r->dim)
			tcz_tqtc_decode_frame(&r->v, (uint32_t)(f - r->first), out);
		a = end;
	}
	return 0;
}

int tcz_stream_pread(tcz_stream_reader *r, void *buf, size_t len,
		     uint64_t off, size_t *got)
{
	uint64_t fb = (uint64_t)r->dim * 4, size = r->frames * fb;
	*got = 0;
	if (off >= size)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	unsigned char *o = buf;
	while (len) {
		uint64_t f = off / fb, in = off % fb;
		int rc;
		if (in == 0 && len >= fb && ((uintptr_t)o & 3) == 0) {
			/* whole frames straight into the buffer */
			if ((rc = locate(r, f)))
				return rc;
			uint64_t n = len / fb, left = r->first + r->x.frames - f;
			if (n > left)
				n = left;
			if ((rc = tcz_stream_read(r, f, f + n, (float *)o)))
				return rc;
			o += n * fb, off += n * fb, len -= (size_t)(n * fb);
			*got += (size_t)(n * fb);
			continue;
		}
		if ((rc = tcz_stream_read(r, f, f + 1, r->frame)))
			return rc;
		size_t take = (size_t)(fb - in) < len ? (size_t)(fb - in) : len;
		memcpy(o, (unsigned char *)r->frame + in, take);
		o += take, off += take, len -= take;
		*got += take;
	}
	return 0;
}

static int seg_ts(tcz_stream_reader *r)
{
	if (r->fx.frames > r->ts_cap) {
		uint64_t *n = realloc(r->ts, r->fx.frames * sizeof *n);
		if (!n)
			return -ENOMEM;
		r->ts = n;
		r->ts_cap = r->fx.frames;
	}
	tcz__sidx_ts(&r->fx, 0, r->fx.frames, r->ts);
	return 0;
}

int tcz_stream_read_ts(tcz_stream_reader *r, uint64_t a, uint64_t b,
		       uint64_t *ts)
{
	if (a > b || b > r->frames)
		return -ERANGE;
	while (a < b) {
		int rc = locate(r, a);
		if (rc)
			return rc;
		uint64_t end = r->first + r->x.frames;
		if (end > b)
			end = b;
		tcz__sidx_ts(&r->x, (uint32_t)(a - r->first),
			     (uint32_t)(end - r->first), ts);
		ts += end - a;
		a = end;
	}
	return 0;
}

typedef struct seg_at {
	int found;
	uint64_t start, end, first;
} seg_at;

/* The segment key at the cursor, if it is one of this stream's. */
static void seg_here(tcz_stream_reader *r, const MDB_val *k, seg_at *out)
{
	const unsigned char *p = k->mv_data;
	out->found = k->mv_size == TCZ__SEG_KEY && tcz_get_be64(p) == r->id;
	if (out->found) {
		out->start = tcz_get_be64(p + 8);
		out->end = tcz_get_be64(p + 16);
		out->first = tcz_get_be64(p + 24);
	}
}

/* The first segment whose key is >= (id, ts) and the one before it. */
static int seg_around(tcz_stream_reader *r, MDB_cursor *c, uint64_t ts,
		      seg_at *at, seg_at *before)
{
	unsigned char k0[TCZ__SEG_KEY];
	tcz__seg_key(k0, r->id, ts, 0, 0);
	MDB_val k = {sizeof k0, k0}, d;
	at->found = before->found = 0;
	int m = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	if (m == 0)
		seg_here(r, &k, at);
	else if (m != MDB_NOTFOUND)
		return tcz__mdb_err(m);
	m = mdb_cursor_get(c, &k, &d, m == 0 ? MDB_PREV : MDB_LAST);
	if (m == 0)
		seg_here(r, &k, before);
	else if (m != MDB_NOTFOUND)
		return tcz__mdb_err(m);
	return 0;
}

/* Copies the index record of the segment starting at frame first into
 * buf (checked after the transaction). */
static int copy_index(tcz_stream_reader *r, uint64_t first, unsigned char **buf,
		      size_t *cap, size_t *len)
{
	unsigned char ik[TCZ__SIDX_KEY];
	tcz__sidx_key(ik, r->id, first);
	MDB_val k = {sizeof ik, ik}, d;
	int m = mdb_get(r->txn, r->s->sindex, &k, &d);
	if (m)
		return m == MDB_NOTFOUND ? missing(r, r->txn, first)
					 : tcz__mdb_err(m);
	if (grow_buf(buf, cap, d.mv_size))
		return -ENOMEM;
	memcpy(*buf, d.mv_data, d.mv_size);
	*len = d.mv_size;
	return 0;
}

/* The timestamps of a copied index record into r->ts. */
static int index_ts(tcz_stream_reader *r, const unsigned char *rec, size_t len,
		    uint64_t first)
{
	if (tcz__sidx_decode(rec, len, &r->fx))
		return damaged_index(r, first);
	return seg_ts(r);
}

int tcz_stream_find_time(tcz_stream_reader *r, uint64_t from, uint64_t to,
			 uint64_t *a, uint64_t *b)
{
	*a = *b = 0;
	if (from > to || !r->frames)
		return 0;
	int rc = tcz__rtxn_begin(r->s, &r->txn);
	if (rc)
		return rc;
	MDB_cursor *c = NULL;
	seg_at at, before, last = {0};
	/* lo_in: the first frame at or after from lies in segment lo_seg,
	 * whose index record is copied to lo_rec; else lo is the answer */
	int lo_in = 0, hi_all = to == UINT64_MAX;
	uint64_t lo = r->frames, lo_seg = 0;
	size_t lo_len = 0, hi_len = 0;
	rc = tcz__mdb_err(mdb_cursor_open(r->txn, r->s->segments, &c));
	/* the first frame at or after from: in the segment before the first
	 * one starting at or after from, if that one ends at or after from
	 * (segments never overlap but may touch, at equal timestamps) */
	if (rc == 0)
		rc = seg_around(r, c, from, &at, &before);
	if (rc == 0) {
		if (before.found && before.end >= from) {
			lo_in = 1;
			lo_seg = before.first;
			rc = copy_index(r, lo_seg, &r->fidx, &r->fidx_cap, &lo_len);
		} else if (at.found) {
			lo = at.first;
		}
	}
	/* one past the last frame at or before to: in the last segment
	 * starting at or before to */
	if (rc == 0 && !hi_all &&
	    (rc = seg_around(r, c, to + 1, &at, &last)) == 0 && last.found)
		rc = copy_index(r, last.first, &r->hidx, &r->hidx_cap, &hi_len);
	if (c)
		mdb_cursor_close(c);
	tcz__rtxn_end(r->s, r->txn, 1);
	if (rc)
		return rc;
	if (lo_in) {
		if ((rc = index_ts(r, r->fidx, lo_len, lo_seg)))
			return rc;
		uint32_t i = 0;
		while (i < r->fx.frames && r->ts[i] < from)
			i++; /* it ends at or after from */
		lo = lo_seg + i;
	}
	uint64_t hi = 0;
	if (hi_all) {
		hi = r->frames;
	} else if (last.found) {
		if ((rc = index_ts(r, r->hidx, hi_len, last.first)))
			return rc;
		uint32_t i = r->fx.frames;
		while (i > 0 && r->ts[i - 1] > to)
			i--; /* it starts at or before to */
		hi = last.first + i;
	}
	if (hi > r->frames)
		hi = r->frames; /* committed after the reader's refresh */
	if (lo > hi)
		lo = hi;
	*a = lo;
	*b = hi;
	return 0;
}
