/* Precision tiering of streams (SPEC 7): a cold stream's segments are
 * re-encoded at the cold width, one write transaction per segment, under
 * the segment's own key, so that a reader reads the old value or the new
 * one, whole, and the index never points at a segment that is not there.
 * The decoding and encoding happen outside the transaction. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "codec/tqtc.h"
#include "store/stream_int.h"

#define COLD_BITS 3u

typedef struct swap_arg {
	tcz_store *s;
	const char *name;
	uint64_t id;
	const tcz_stream_seg *seg; /* as listed: what is replaced */
	const unsigned char *val;  /* new segment + checksum */
	size_t len;                /* TQTC bytes of it */
	int skipped;               /* it changed meanwhile: left alone */
} swap_arg;

static int swap_fn(void *arg, MDB_txn *txn)
{
	swap_arg *a = arg;
	tcz_store *s = a->s;
	a->skipped = 0;
	tcz__srec r;
	int rc = tcz__stream_get(s, txn, a->name, &r);
	if (rc == -ENOENT || (rc == 0 && r.id != a->id)) {
		a->skipped = 1; /* removed meanwhile */
		return 0;
	}
	if (rc)
		return rc;
	unsigned char ik[TCZ__SIDX_KEY];
	tcz__sidx_key(ik, a->id, a->seg->first_frame);
	MDB_val k = {sizeof ik, ik}, d;
	tcz__sidx x;
	if (mdb_get(txn, s->sindex, &k, &d) ||
	    tcz__sidx_decode(d.mv_data, d.mv_size, &x) ||
	    x.bits != a->seg->bits || x.seg_len != a->seg->bytes) {
		a->skipped = 1; /* another tierer was faster */
		return 0;
	}
	tcz_wbuf w;
	tcz_wb_init(&w);
	if ((rc = tcz__sidx_reencode(&x, COLD_BITS, (uint32_t)a->len, &w)) == 0) {
		unsigned char sk[TCZ__SEG_KEY];
		tcz__seg_key(sk, a->id, x.start_ts, x.end_ts, a->seg->first_frame);
		MDB_val k1 = {sizeof sk, sk}, d1 = {a->len + 8, (void *)a->val};
		MDB_val d2 = {w.len, w.p};
		size_t old_idx = x.rec_len; /* x aliases d: read it first */
		if ((rc = tcz__mdb_err(mdb_put(txn, s->segments, &k1, &d1, 0))) ==
			    0 &&
		    (rc = tcz__mdb_err(mdb_put(txn, s->sindex, &k, &d2, 0))) == 0) {
			int from = tcz__width_slot(a->seg->bits);
			int to = tcz__width_slot(COLD_BITS);
			r.width[from].segments--;
			r.width[from].frames -= a->seg->frames;
			r.width[from].bytes -= a->seg->bytes;
			r.width[to].segments++;
			r.width[to].frames += a->seg->frames;
			r.width[to].bytes += a->len;
			r.stored_bytes = r.stored_bytes - a->seg->bytes + a->len;
			r.overhead_bytes = r.overhead_bytes - old_idx + w.len;
			r.data_rev++;
			r.version++;
			if ((rc = tcz__stream_put(s, txn, a->name, &r)) == 0)
				rc = tcz__stream_gen_bump(s, txn);
		}
	}
	tcz_wb_free(&w);
	return rc;
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct work {
	const tcz_tiering_cfg *c;
	float *f;
	size_t f_cap;
	unsigned char *enc;
	size_t enc_cap;
	uint64_t done;
	double t0;
} work;

static void throttle(work *w, uint64_t bytes)
{
	w->done += bytes;
	if (!w->c->io_bytes_s)
		return;
	double late = (double)w->done / (double)w->c->io_bytes_s - (mono() - w->t0);
	if (late > 0) {
		struct timespec ts = {(time_t)late,
				      (long)((late - (double)(time_t)late) * 1e9)};
		nanosleep(&ts, NULL);
	}
}

/* Re-encodes one segment. Returns 1 when it was replaced, 0 when it was
 * left (changed or removed meanwhile), or an error. */
static int reencode(tcz_store *s, work *w, tcz_stream_reader *rd,
		    const char *name, const tcz_stream_info *info,
		    const tcz_stream_seg *seg)
{
	uint32_t n = info->params.dim;
	size_t vals = (size_t)seg->frames * n;
	if (vals > w->f_cap) {
		float *nf = realloc(w->f, vals * sizeof *nf);
		if (!nf)
			return -ENOMEM;
		w->f = nf;
		w->f_cap = vals;
	}
	size_t size = tcz_tqtc_size(n, info->params.group_len, seg->frames,
				    COLD_BITS);
	if (size + 8 > w->enc_cap) {
		unsigned char *ne = realloc(w->enc, size + 8);
		if (!ne)
			return -ENOMEM;
		w->enc = ne;
		w->enc_cap = size + 8;
	}
	int rc = tcz_stream_read(rd, seg->first_frame,
				 seg->first_frame + seg->frames, w->f);
	if (rc == -ERANGE || rc == -ENOENT)
		return 0; /* removed meanwhile */
	if (rc)
		return rc;
	size_t len;
	/* scales from the decoded values' own maxima: every value is
	 * representable, nothing clamps */
	if ((rc = tcz_tqtc_encode(w->f, n, seg->frames, info->params.group_len,
				  COLD_BITS, NULL, w->enc, w->enc_cap, &len)))
		return rc == -EDOM ? -EIO : rc;
	uint64_t h = XXH3_64bits(w->enc, len);
	for (int i = 0; i < 8; i++)
		w->enc[len + (size_t)i] = (unsigned char)(h >> (8 * i));
	swap_arg a = {s, name, info->id, seg, w->enc, len, 0};
	if ((rc = tcz__write(s, swap_fn, &a)))
		return rc;
	throttle(w, (uint64_t)vals * 4);
	return a.skipped ? 0 : 1;
}

static int one_stream(tcz_store *s, work *w, const char *name,
		      tcz_stream_tier_report *rep)
{
	const tcz_tiering_cfg *c = w->c;
	tcz_stream_info info;
	int rc = tcz_stream_stat(s, name, &info);
	if (rc)
		return rc;
	tcz_access a = {info.accesses, info.bytes_read, info.last_access,
			info.pinned};
	rep->streams++;
	if (tcz__stream_tier(&a, &c->th, c->now) != TCZ_TIER_COLD)
		return 0;
	rep->cold++;
	if (info.segments == info.width[tcz__width_slot(COLD_BITS)].segments)
		return 0; /* all at the cold width already */
	tcz_stream_seg *segs = NULL;
	size_t n = 0;
	tcz_stream_reader *rd = NULL;
	if ((rc = tcz_stream_segments(s, name, &segs, &n)) == 0)
		rc = tcz_stream_reader_open(s, name, &rd);
	int damaged = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (segs[i].bits <= COLD_BITS)
			continue; /* never back up */
		if (c->stop && *c->stop) {
			rc = -ECANCELED;
			break;
		}
		int r = reencode(s, w, rd, name, &info, &segs[i]);
		if (r == 1) {
			rep->segments++;
			rep->before += segs[i].bytes;
			rep->after += tcz_tqtc_size(info.params.dim,
						    info.params.group_len,
						    segs[i].frames, COLD_BITS);
		} else if (r == -EIO) {
			damaged = 1; /* verify names it; the others still go */
		} else if (r < 0) {
			rc = r;
		}
	}
	tcz_stream_reader_close(rd);
	free(segs);
	if (rc == -ENOENT)
		rc = 0; /* removed meanwhile */
	return rc ? rc : damaged ? -EIO : 0;
}

int tcz_stream_tier_apply(tcz_store *s, const char *name,
			  const tcz_tiering_cfg *c, tcz_stream_tier_report *rep)
{
	tcz_stream_tier_report own = {0};
	if (!rep)
		rep = &own;
	work w = {.c = c, .t0 = mono()};
	int rc = 0;
	if (name) {
		rc = one_stream(s, &w, name, rep);
	} else {
		char **names = NULL;
		size_t n = 0;
		rc = tcz_stream_list(s, &names, &n);
		int damaged = 0;
		for (size_t i = 0; rc == 0 && i < n; i++) {
			int r = one_stream(s, &w, names[i], rep);
			if (r == -EIO || r == -EBADMSG)
				damaged = 1;
			else if (r && r != -ENOENT)
				rc = r;
		}
		tcz_names_free(names, n);
		if (rc == 0 && damaged)
			rc = -EIO;
	}
	free(w.f);
	free(w.enc);
	return rc;
}
