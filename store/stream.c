/* Streams: their records, creation, removal, listing, statistics and
 * pins. The writer is in stream_write.c, the reader in stream_read.c,
 * tiering in stream_tier.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/grow.h"
#include "store/npy.h"
#include "store/stream_int.h"

/* ---- records ------------------------------------------------------------- */

void tcz_stream_params_default(tcz_stream_params *p)
{
	*p = (tcz_stream_params){
		.dim = 0,
		.group_len = 64,
		.warm_bits = 7,
		.drift_pct_q8 = 26,
		.segment_frames = 0,
	};
}

int tcz_stream_name_valid(const char *name)
{
	return tcz_model_name_valid(name);
}

unsigned tcz_stream_width_bits(int i)
{
	return i >= 0 && i < 4 ? tcz__slot_bits(i) : 0;
}

/* Why p is not acceptable, or NULL. */
static const char *params_bad(const tcz_stream_params *p)
{
	if (p->dim < 1 || p->dim > TCZ_STREAM_DIM_MAX)
		return "the frame length (--dim) must be 1..16777216";
	if (p->group_len < 1 || p->group_len > TCZ_STREAM_GROUP_MAX)
		return "the group length must be 1..65536";
	if (p->warm_bits != 7 && p->warm_bits != 5)
		return "the warm width must be 7 or 5 bits";
	if (p->drift_pct_q8 > TCZ_STREAM_DRIFT_MAX)
		return "the drift margin must be 0..65535 (1/256ths)";
	if ((uint64_t)p->segment_frames * p->dim * 4 > TCZ_STREAM_SEG_BYTES_MAX)
		return "a segment of that many frames would pass 64 MiB of f32";
	return NULL;
}

int tcz__srec_encode(const tcz__srec *r, tcz_wbuf *w)
{
	tcz_wb_u32(w, TCZ__STREAM_MAGIC);
	tcz_wb_u32(w, TCZ__STREAM_VERSION);
	tcz_wb_u64(w, r->id);
	tcz_wb_u64(w, r->created);
	tcz_wb_u32(w, r->p.dim);
	tcz_wb_u32(w, r->p.group_len);
	tcz_wb_u32(w, r->p.warm_bits);
	tcz_wb_u32(w, r->p.drift_pct_q8);
	tcz_wb_u32(w, r->p.segment_frames);
	tcz_wb_u64(w, r->frames);
	tcz_wb_u64(w, r->segments);
	tcz_wb_u64(w, r->stored_bytes);
	tcz_wb_u64(w, r->overhead_bytes);
	tcz_wb_u64(w, r->first_ts);
	tcz_wb_u64(w, r->last_ts);
	tcz_wb_u64(w, r->version);
	tcz_wb_u64(w, r->data_rev);
	for (int i = 0; i < 4; i++) {
		tcz_wb_u64(w, r->width[i].segments);
		tcz_wb_u64(w, r->width[i].frames);
		tcz_wb_u64(w, r->width[i].bytes);
	}
	return tcz_rec_finish(w);
}

int tcz__srec_id(const void *p, size_t n, uint64_t *id)
{
	const unsigned char *b = p;
	if (n < 16 + 8)
		return -EBADMSG;
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | b[8 + i];
	*id = v;
	return 0;
}

int tcz__srec_decode(const void *p, size_t n, tcz__srec *r)
{
	tcz_rbuf b;
	if (tcz_rec_open(&b, p, n))
		return -EIO;
	memset(r, 0, sizeof *r);
	if (tcz_rb_u32(&b) != TCZ__STREAM_MAGIC ||
	    tcz_rb_u32(&b) != TCZ__STREAM_VERSION)
		return -EBADMSG;
	r->id = tcz_rb_u64(&b);
	r->created = tcz_rb_u64(&b);
	r->p.dim = tcz_rb_u32(&b);
	r->p.group_len = tcz_rb_u32(&b);
	r->p.warm_bits = tcz_rb_u32(&b);
	r->p.drift_pct_q8 = tcz_rb_u32(&b);
	r->p.segment_frames = tcz_rb_u32(&b);
	r->frames = tcz_rb_u64(&b);
	r->segments = tcz_rb_u64(&b);
	r->stored_bytes = tcz_rb_u64(&b);
	r->overhead_bytes = tcz_rb_u64(&b);
	r->first_ts = tcz_rb_u64(&b);
	r->last_ts = tcz_rb_u64(&b);
	r->version = tcz_rb_u64(&b);
	r->data_rev = tcz_rb_u64(&b);
	uint64_t seg = 0, fr = 0, by = 0;
	for (int i = 0; i < 4; i++) {
		r->width[i].segments = tcz_rb_u64(&b);
		r->width[i].frames = tcz_rb_u64(&b);
		r->width[i].bytes = tcz_rb_u64(&b);
		seg += r->width[i].segments;
		fr += r->width[i].frames;
		by += r->width[i].bytes;
	}
	if (tcz_rb_end(&b) || params_bad(&r->p) || seg != r->segments ||
	    fr != r->frames || by != r->stored_bytes ||
	    (r->frames == 0) != (r->segments == 0) ||
	    r->segments > r->frames || r->first_ts > r->last_ts)
		return -EBADMSG;
	return 0;
}

/* LEB128: 7 bits a byte, low bits first. */
static void put_uleb(tcz_wbuf *w, uint64_t v)
{
	unsigned char b[10];
	size_t n = 0;
	do {
		b[n] = (unsigned char)(v & 0x7f);
		v >>= 7;
		if (v)
			b[n] |= 0x80;
		n++;
	} while (v);
	tcz_wb_bytes(w, b, n);
}

/* Reads one LEB128 value at *at of p[n]. Errors: -EBADMSG truncated, or
 * more than 64 bits. */
static int get_uleb(const unsigned char *p, size_t n, size_t *at, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned shift = 0; shift < 70; shift += 7) {
		if (*at >= n)
			return -EBADMSG;
		unsigned char c = p[(*at)++];
		uint64_t part = c & 0x7fu;
		if (shift == 63 && part > 1)
			return -EBADMSG;
		x |= part << shift;
		if (!(c & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -EBADMSG;
}

int tcz__sidx_encode(const uint64_t *ts, uint32_t frames, unsigned bits,
		     uint32_t seg_len, tcz_wbuf *w)
{
	uint64_t step = frames > 1 ? ts[1] - ts[0] : 0;
	int regular = 1;
	for (uint32_t i = 1; i < frames && regular; i++)
		regular = ts[i] - ts[i - 1] == step;
	tcz_wb_u64(w, ts[0]);
	tcz_wb_u64(w, ts[frames - 1]);
	tcz_wb_u32(w, frames);
	tcz_wb_u8(w, (uint8_t)bits);
	tcz_wb_u32(w, seg_len);
	if (regular) {
		/* the common case (pushes at an interval): 8 bytes, not a
		 * list */
		tcz_wb_u8(w, TCZ__TS_REGULAR);
		tcz_wb_u64(w, step);
	} else {
		tcz_wbuf d;
		tcz_wb_init(&d);
		for (uint32_t i = 1; i < frames; i++)
			put_uleb(&d, ts[i] - ts[i - 1]);
		tcz_wb_u8(w, TCZ__TS_LISTED);
		if (d.err)
			w->err = d.err;
		tcz_wb_u32(w, (uint32_t)d.len);
		tcz_wb_bytes(w, d.p, d.len);
		tcz_wb_free(&d);
	}
	return tcz_rec_finish(w);
}

int tcz__sidx_reencode(const tcz__sidx *x, unsigned bits, uint32_t seg_len,
		       tcz_wbuf *w)
{
	tcz_wb_u64(w, x->start_ts);
	tcz_wb_u64(w, x->end_ts);
	tcz_wb_u32(w, x->frames);
	tcz_wb_u8(w, (uint8_t)bits);
	tcz_wb_u32(w, seg_len);
	tcz_wb_u8(w, (uint8_t)x->ts_kind);
	if (x->ts_kind == TCZ__TS_REGULAR) {
		tcz_wb_u64(w, x->step);
	} else {
		tcz_wb_u32(w, x->dlen);
		tcz_wb_bytes(w, x->deltas, x->dlen);
	}
	return tcz_rec_finish(w);
}

int tcz__sidx_decode(const void *p, size_t n, tcz__sidx *x)
{
	tcz_rbuf b;
	if (tcz_rec_open(&b, p, n))
		return -EIO;
	memset(x, 0, sizeof *x);
	x->rec_len = n;
	x->start_ts = tcz_rb_u64(&b);
	x->end_ts = tcz_rb_u64(&b);
	x->frames = tcz_rb_u32(&b);
	x->bits = tcz_rb_u8(&b);
	x->seg_len = tcz_rb_u32(&b);
	x->ts_kind = tcz_rb_u8(&b);
	if (b.err || x->frames == 0 || tcz__width_slot(x->bits) < 0 ||
	    x->end_ts < x->start_ts)
		return -EBADMSG;
	uint64_t span = x->end_ts - x->start_ts;
	if (x->ts_kind == TCZ__TS_REGULAR) {
		x->step = tcz_rb_u64(&b);
		uint64_t k = x->frames - 1;
		if (tcz_rb_end(&b) || (k == 0 && (span || x->step)) ||
		    (k && (x->step > span / k || x->step * k != span)))
			return -EBADMSG;
		return 0;
	}
	if (x->ts_kind != TCZ__TS_LISTED)
		return -EBADMSG;
	x->dlen = tcz_rb_u32(&b);
	x->deltas = tcz_rb_bytes(&b, x->dlen);
	if (!x->deltas || tcz_rb_end(&b))
		return -EBADMSG;
	size_t at = 0;
	uint64_t sum = 0;
	for (uint32_t i = 1; i < x->frames; i++) {
		uint64_t d;
		if (get_uleb(x->deltas, x->dlen, &at, &d) || d > span - sum)
			return -EBADMSG;
		sum += d;
	}
	return at == x->dlen && sum == span ? 0 : -EBADMSG;
}

void tcz__sidx_ts(const tcz__sidx *x, uint32_t a, uint32_t b, uint64_t *out)
{
	if (x->ts_kind == TCZ__TS_REGULAR) {
		for (uint32_t i = a; i < b; i++)
			out[i - a] = x->start_ts + (uint64_t)i * x->step;
		return;
	}
	uint64_t t = x->start_ts;
	size_t at = 0;
	for (uint32_t i = 0; i < b; i++) {
		uint64_t d = 0;
		if (i > 0)
			get_uleb(x->deltas, x->dlen, &at, &d); /* checked */
		t += d;
		if (i >= a)
			out[i - a] = t;
	}
}

/* ---- table helpers ----------------------------------------------------------- */

int tcz__stream_get(tcz_store *s, MDB_txn *txn, const char *name,
		    tcz__srec *r)
{
	if (!s->has_streams)
		return -ENOENT;
	MDB_val k = {strlen(name), (void *)name}, d;
	int rc = mdb_get(txn, s->streams, &k, &d);
	if (rc)
		return tcz__mdb_err(rc);
	rc = tcz__srec_decode(d.mv_data, d.mv_size, r);
	if (rc)
		return tcz__fail(rc, "stream %s: its record is %s", name,
				 rc == -EIO ? "damaged (checksum mismatch)"
					    : "malformed");
	return 0;
}

int tcz__stream_put(tcz_store *s, MDB_txn *txn, const char *name,
		    const tcz__srec *r)
{
	tcz_wbuf w;
	tcz_wb_init(&w);
	int rc = tcz__srec_encode(r, &w);
	if (rc == 0) {
		MDB_val k = {strlen(name), (void *)name}, d = {w.len, w.p};
		rc = tcz__mdb_err(mdb_put(txn, s->streams, &k, &d, 0));
	}
	tcz_wb_free(&w);
	return rc;
}

void tcz__sstat_get(tcz_store *s, MDB_txn *txn, uint64_t id, tcz_access *a)
{
	*a = (tcz_access){0, 0, 0, -1};
	unsigned char kb[8];
	tcz_be64(kb, id);
	MDB_val k = {8, kb}, d;
	tcz_rbuf r;
	if (!s->has_streams || mdb_get(txn, s->sstats, &k, &d) ||
	    tcz_rec_open(&r, d.mv_data, d.mv_size))
		return; /* none, or damaged: statistics restart */
	tcz_access x;
	x.reads = tcz_rb_u64(&r);
	x.bytes = tcz_rb_u64(&r);
	x.last_access = tcz_rb_u64(&r);
	x.pinned = (int32_t)tcz_rb_u32(&r);
	if (tcz_rb_end(&r) == 0 && x.pinned >= -1 && x.pinned <= TCZ_TIER_COLD)
		*a = x;
}

int tcz__sstat_put(tcz_store *s, MDB_txn *txn, uint64_t id,
		   const tcz_access *a)
{
	tcz_wbuf w;
	tcz_wb_init(&w);
	tcz_wb_u64(&w, a->reads);
	tcz_wb_u64(&w, a->bytes);
	tcz_wb_u64(&w, a->last_access);
	tcz_wb_u32(&w, (uint32_t)a->pinned);
	int rc = tcz_rec_finish(&w);
	unsigned char kb[8];
	tcz_be64(kb, id);
	MDB_val k = {8, kb}, d = {w.len, w.p};
	if (rc == 0)
		rc = tcz__mdb_err(mdb_put(txn, s->sstats, &k, &d, 0));
	tcz_wb_free(&w);
	return rc;
}

int tcz__stream_gen_bump(tcz_store *s, MDB_txn *txn)
{
	uint64_t g = 0;
	int rc = tcz__meta_get(s, txn, "stream_generation", &g);
	if (rc == -EIO) /* a change counter: restart past what readers hold */
		g = (uint64_t)time(NULL) << 20, rc = 0;
	if (rc && rc != -ENOENT)
		return rc;
	return tcz__meta_put(s, txn, "stream_generation", g + 1);
}

static uint64_t last_key_id(MDB_txn *txn, MDB_dbi db)
{
	MDB_cursor *c;
	MDB_val k, d;
	uint64_t id = 0;
	if (mdb_cursor_open(txn, db, &c))
		return 0;
	if (mdb_cursor_get(c, &k, &d, MDB_LAST) == 0 && k.mv_size >= 8)
		id = tcz_get_be64(k.mv_data);
	mdb_cursor_close(c);
	return id;
}

uint64_t tcz__stream_max_id(tcz_store *s, MDB_txn *txn)
{
	if (!s->has_streams)
		return 0;
	uint64_t top = 0, v;
	MDB_dbi keyed[] = {s->sindex, s->segments, s->sstats};
	for (size_t i = 0; i < 3; i++)
		if ((v = last_key_id(txn, keyed[i])) > top)
			top = v;
	MDB_cursor *c;
	MDB_val k, d;
	if (mdb_cursor_open(txn, s->streams, &c) == 0) {
		for (int rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT))
			if (tcz__srec_id(d.mv_data, d.mv_size, &v) == 0 && v > top)
				top = v;
		mdb_cursor_close(c);
	}
	return top;
}

tcz_tier tcz__stream_tier(const tcz_access *a, const tcz_tier_thresholds *th,
			  uint64_t now)
{
	if (a->pinned >= 0 && a->pinned <= TCZ_TIER_COLD)
		return (tcz_tier)a->pinned;
	return tcz_tier_of_score(tcz_tier_score(a->reads, a->last_access, now),
				 th);
}

/* ---- create, remove -------------------------------------------------------- */

typedef struct create_arg {
	tcz_store *s;
	const char *name;
	const tcz_stream_params *p;
	uint64_t id;
} create_arg;

static int create_fn(void *arg, MDB_txn *txn)
{
	create_arg *a = arg;
	tcz__srec r;
	int rc = tcz__stream_get(a->s, txn, a->name, &r);
	if (rc == 0 || rc == -EIO || rc == -EBADMSG)
		return tcz__fail(-EEXIST, "stream %s already exists", a->name);
	if (rc != -ENOENT)
		return rc;
	memset(&r, 0, sizeof r);
	if ((rc = tcz__next_id(a->s, txn, &r.id)))
		return rc;
	r.created = (uint64_t)time(NULL);
	r.p = *a->p;
	r.version = 1;
	a->id = r.id;
	if ((rc = tcz__stream_put(a->s, txn, a->name, &r)))
		return rc;
	return tcz__stream_gen_bump(a->s, txn);
}

int tcz_stream_create(tcz_store *s, const char *name,
		      const tcz_stream_params *p, uint64_t *id)
{
	if (!tcz_stream_name_valid(name))
		return tcz__fail(-EINVAL,
				 "invalid stream name '%s' (letters, digits, "
				 "'.', '_', '-'; first a letter or digit; at "
				 "most 128; not asic or streams)",
				 name);
	const char *bad = params_bad(p);
	if (bad)
		return tcz__fail(-EINVAL, "stream %s: %s", name, bad);
	if (s->flags & TCZ_STORE_RDONLY)
		return tcz__fail(-EROFS, "store %s is open read-only", s->dir);
	create_arg a = {s, name, p, 0};
	int rc = tcz__write(s, create_fn, &a);
	if (rc == 0 && id)
		*id = a.id;
	return rc;
}

typedef struct name_arg {
	tcz_store *s;
	const char *name;
	int32_t tier;
	uint64_t id, reads, bytes, last;
} name_arg;

static int remove_fn(void *arg, MDB_txn *txn)
{
	name_arg *a = arg;
	tcz_store *s = a->s;
	tcz__srec r;
	int rc = tcz__stream_get(s, txn, a->name, &r);
	if (rc == -ENOENT)
		return tcz__fail(-ENOENT, "no stream named %s", a->name);
	MDB_val k = {strlen(a->name), (void *)a->name};
	if (rc == -EIO || rc == -EBADMSG) {
		/* a damaged record's id cannot be trusted (it may name
		 * another stream): only the name goes, verify reports what
		 * is left under the real id */
		rc = tcz__mdb_err(mdb_del(txn, s->streams, &k, NULL));
		return rc ? rc : tcz__stream_gen_bump(s, txn);
	}
	if (rc)
		return rc;
	unsigned char kb[8];
	tcz_be64(kb, r.id);
	MDB_val sk = {8, kb};
	if ((rc = tcz__del_prefix(txn, s->sindex, r.id)) ||
	    (rc = tcz__del_prefix(txn, s->segments, r.id)))
		return rc;
	rc = mdb_del(txn, s->sstats, &sk, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return tcz__mdb_err(rc);
	if ((rc = tcz__mdb_err(mdb_del(txn, s->streams, &k, NULL))))
		return rc;
	return tcz__stream_gen_bump(s, txn);
}

int tcz_stream_remove(tcz_store *s, const char *name)
{
	if (s->flags & TCZ_STORE_RDONLY)
		return tcz__fail(-EROFS, "store %s is open read-only", s->dir);
	name_arg a = {.s = s, .name = name};
	return tcz__write(s, remove_fn, &a);
}

/* ---- listing, statistics ---------------------------------------------------- */

int tcz_stream_list(tcz_store *s, char ***names, size_t *count)
{
	*names = NULL;
	*count = 0;
	if (!s->has_streams)
		return 0;
	MDB_txn *txn = NULL;
	int rc = tcz__rtxn_begin(s, &txn);
	if (rc)
		return rc;
	MDB_cursor *c;
	char **v = NULL;
	size_t n = 0, cap = 0;
	if ((rc = mdb_cursor_open(txn, s->streams, &c)) == 0) {
		MDB_val k, d;
		int m;
		for (m = mdb_cursor_get(c, &k, &d, MDB_FIRST); m == 0;
		     m = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
			if (tcz__grow(&v, &cap, n, sizeof *v, 16) ||
			    !(v[n] = strndup(k.mv_data, k.mv_size))) {
				rc = -ENOMEM;
				break;
			}
			n++;
		}
		if (rc == 0 && m != MDB_NOTFOUND)
			rc = tcz__mdb_err(m);
		mdb_cursor_close(c);
	} else {
		rc = tcz__mdb_err(rc);
	}
	tcz__rtxn_end(s, txn, 0);
	if (rc) {
		tcz_names_free(v, n);
		return rc;
	}
	*names = v;
	*count = n;
	return 0;
}

static void info_from(const tcz__srec *r, tcz_stream_info *out)
{
	memset(out, 0, sizeof *out);
	out->id = r->id;
	out->params = r->p;
	out->created = r->created;
	out->frames = r->frames;
	out->segments = r->segments;
	out->stored_bytes = r->stored_bytes;
	out->overhead_bytes = r->overhead_bytes;
	out->first_ts = r->first_ts;
	out->last_ts = r->last_ts;
	out->version = r->version;
	out->data_rev = r->data_rev;
	memcpy(out->width, r->width, sizeof out->width);
	out->pinned = -1;
}

int tcz__stream_info(tcz_store *s, MDB_txn *txn, const char *name,
		     tcz_stream_info *out)
{
	tcz__srec r;
	int rc = tcz__stream_get(s, txn, name, &r);
	if (rc == -ENOENT)
		return tcz__fail(-ENOENT, "no stream named %s", name);
	if (rc)
		return rc;
	info_from(&r, out);
	return 0;
}

int tcz_stream_stat(tcz_store *s, const char *name, tcz_stream_info *out)
{
	MDB_txn *txn = NULL;
	int rc = tcz__rtxn_begin(s, &txn);
	if (rc)
		return rc;
	rc = tcz__stream_info(s, txn, name, out);
	tcz_access a = {0, 0, 0, -1};
	if (rc == 0)
		tcz__sstat_get(s, txn, out->id, &a);
	tcz__rtxn_end(s, txn, 0);
	if (rc)
		return rc;
	tcz_tier_thresholds th = TCZ_TIER_THRESHOLDS_DEFAULT;
	out->pinned = a.pinned;
	out->accesses = a.reads;
	out->bytes_read = a.bytes;
	out->last_access = a.last_access;
	out->tier = tcz__stream_tier(&a, &th, tcz_store_now());
	return 0;
}

double tcz_stream_ratio(const tcz_stream_info *i)
{
	if (!i->frames || !i->stored_bytes)
		return 0;
	return (double)i->frames * i->params.dim * 4.0 / (double)i->stored_bytes;
}

int tcz_stream_segments(tcz_store *s, const char *name,
			tcz_stream_seg **out, size_t *count)
{
	*out = NULL;
	*count = 0;
	MDB_txn *txn = NULL;
	int rc = tcz__rtxn_begin(s, &txn);
	if (rc)
		return rc;
	tcz_stream_info info;
	rc = tcz__stream_info(s, txn, name, &info);
	tcz_stream_seg *v = NULL;
	size_t n = 0, cap = 0;
	MDB_cursor *c = NULL;
	if (rc == 0 && (rc = tcz__mdb_err(mdb_cursor_open(txn, s->sindex, &c))))
		c = NULL;
	if (rc == 0) {
		unsigned char k0[TCZ__SIDX_KEY];
		tcz__sidx_key(k0, info.id, 0);
		MDB_val k = {sizeof k0, k0}, d;
		int m;
		for (m = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); m == 0;
		     m = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
			if (k.mv_size != TCZ__SIDX_KEY ||
			    tcz_get_be64(k.mv_data) != info.id)
				break;
			tcz__sidx x;
			if (tcz__sidx_decode(d.mv_data, d.mv_size, &x)) {
				rc = tcz__fail(-EIO,
					       "stream %s: the index record of "
					       "frame %llu is damaged",
					       name,
					       (unsigned long long)tcz_get_be64(
						       (const unsigned char *)k.mv_data +
						       8));
				break;
			}
			if (tcz__grow(&v, &cap, n, sizeof *v, 64)) {
				rc = -ENOMEM;
				break;
			}
			v[n++] = (tcz_stream_seg){
				.first_frame = tcz_get_be64(
					(const unsigned char *)k.mv_data + 8),
				.frames = x.frames,
				.bits = x.bits,
				.start_ts = x.start_ts,
				.end_ts = x.end_ts,
				.bytes = x.seg_len,
			};
		}
		if (rc == 0 && m && m != MDB_NOTFOUND)
			rc = tcz__mdb_err(m);
	}
	if (c)
		mdb_cursor_close(c);
	tcz__rtxn_end(s, txn, 0);
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*count = n;
	return 0;
}

static int tier_fn(void *arg, MDB_txn *txn)
{
	name_arg *a = arg;
	tcz__srec r;
	int rc = tcz__stream_get(a->s, txn, a->name, &r);
	if (rc == -ENOENT)
		return tcz__fail(-ENOENT, "no stream named %s", a->name);
	if (rc)
		return rc;
	tcz_access acc;
	tcz__sstat_get(a->s, txn, r.id, &acc);
	acc.pinned = a->tier;
	if ((rc = tcz__sstat_put(a->s, txn, r.id, &acc)))
		return rc;
	return tcz__stream_gen_bump(a->s, txn);
}

int tcz_stream_set_tier(tcz_store *s, const char *name, int32_t tier)
{
	if (tier < -1 || tier > TCZ_TIER_COLD)
		return -EINVAL;
	if (s->flags & TCZ_STORE_RDONLY)
		return tcz__fail(-EROFS, "store %s is open read-only", s->dir);
	name_arg a = {.s = s, .name = name, .tier = tier};
	return tcz__write(s, tier_fn, &a);
}

static int access_fn(void *arg, MDB_txn *txn)
{
	name_arg *a = arg;
	tcz__srec r;
	int rc = tcz__stream_get(a->s, txn, a->name, &r);
	if (rc == -ENOENT || (rc == 0 && a->id && r.id != a->id))
		return 0; /* gone: nothing to count */
	if (rc)
		return rc;
	tcz_access acc;
	tcz__sstat_get(a->s, txn, r.id, &acc);
	acc.reads += a->reads;
	acc.bytes += a->bytes;
	if (a->last > acc.last_access)
		acc.last_access = a->last;
	return tcz__sstat_put(a->s, txn, r.id, &acc);
}

int tcz_stream_add_access(tcz_store *s, const char *name, uint64_t id,
			  uint64_t reads, uint64_t bytes, uint64_t last)
{
	if (s->flags & TCZ_STORE_RDONLY)
		return tcz__fail(-EROFS, "store %s is open read-only", s->dir);
	name_arg a = {.s = s, .name = name, .id = id, .reads = reads,
		      .bytes = bytes, .last = last};
	return tcz__write(s, access_fn, &a);
}

int tcz_stream_generation(tcz_store *s, uint64_t *gen)
{
	MDB_txn *txn = NULL;
	int rc = tcz__rtxn_begin(s, &txn);
	if (rc)
		return rc;
	rc = tcz__meta_get(s, txn, "stream_generation", gen);
	tcz__rtxn_end(s, txn, 0);
	if (rc == -ENOENT) {
		*gen = 0;
		rc = 0;
	}
	return rc;
}

int tcz_stream_npy_header(uint64_t frames, uint32_t dim, char *out,
			  size_t cap, size_t *len)
{
	uint64_t shape[2] = {frames, dim};
	return tcz_npy_header(TCZ_DT_F32, 2, shape, out, cap, len);
}
