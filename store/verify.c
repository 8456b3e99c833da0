/* tcz_store_verify: check every record and decode every value.
 *
 * Two passes. The records pass reads, in one snapshot, every table that
 * holds references (tensor and blob records, pending imports, dropped
 * contents) and compares them with the reference counts and the chunks;
 * it also checks meta, statistics and streams (records, index, segments).
 * The decode pass then opens each model (pinned) and decodes every
 * chunk. Each problem is reported once, naming the model and the tensor
 * or file it hurts: a record that cannot be read makes the counts of the
 * chunks it would reference unknowable, so those are not reported as
 * surplus. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/grow.h"
#include "codec/tqtc.h"
#include "store/internal.h"
#include "store/stream_int.h"
#include "store/view.h"

/* Open-addressing set of chunk keys with a count and a first owner. */
typedef struct owner {
	uint64_t model; /* model id */
	uint32_t index; /* tensor index, or blob index | 1 << 31 */
} owner;

typedef struct keyset {
	unsigned char (*keys)[TCZ_KEY_LEN];
	uint64_t *counts;
	owner *owners;
	size_t cap, n;
} keyset;

#define BLOB_BIT 0x80000000u
#define NO_OWNER UINT64_MAX

static uint64_t key_hash(const unsigned char *k)
{
	uint64_t h;
	memcpy(&h, k, 8); /* keys are already uniform hashes */
	return h;
}

static void ks_free(keyset *ks)
{
	free(ks->keys);
	free(ks->counts);
	free(ks->owners);
}

static int ks_grow(keyset *ks)
{
	size_t cap = ks->cap ? ks->cap * 2 : 1024;
	keyset n = {calloc(cap, TCZ_KEY_LEN), calloc(cap, sizeof(uint64_t)),
		    calloc(cap, sizeof(owner)), cap, 0};
	if (!n.keys || !n.counts || !n.owners) {
		ks_free(&n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ks->cap; i++) {
		if (!ks->counts[i])
			continue;
		size_t j = key_hash(ks->keys[i]) & (cap - 1);
		while (n.counts[j])
			j = (j + 1) & (cap - 1);
		memcpy(n.keys[j], ks->keys[i], TCZ_KEY_LEN);
		n.counts[j] = ks->counts[i];
		n.owners[j] = ks->owners[i];
		n.n++;
	}
	ks_free(ks);
	*ks = n;
	return 0;
}

static size_t ks_find(const keyset *ks, const unsigned char *k, int *found)
{
	size_t j = key_hash(k) & (ks->cap - 1);
	while (ks->counts[j]) {
		if (memcmp(ks->keys[j], k, TCZ_KEY_LEN) == 0) {
			*found = 1;
			return j;
		}
		j = (j + 1) & (ks->cap - 1);
	}
	*found = 0;
	return j;
}

static int ks_add(keyset *ks, const unsigned char *k, owner o)
{
	if ((ks->n + 1) * 2 > ks->cap && ks_grow(ks))
		return -ENOMEM;
	int found;
	size_t j = ks_find(ks, k, &found);
	if (!found) {
		memcpy(ks->keys[j], k, TCZ_KEY_LEN);
		ks->owners[j] = o;
		ks->n++;
	}
	ks->counts[j]++;
	return 0;
}

static const uint64_t *ks_get(const keyset *ks, const unsigned char *k,
			      const owner **o)
{
	if (!ks->cap)
		return NULL;
	int found;
	size_t j = ks_find(ks, k, &found);
	if (!found)
		return NULL;
	if (o)
		*o = &ks->owners[j];
	return &ks->counts[j];
}

/* model id -> name, from the models table */
typedef struct idname {
	uint64_t id;
	char *name;
} idname;

typedef struct vctx {
	tcz_store *s;
	tcz_verify_cb cb;
	void *ud;
	tcz_verify_report *rep;
	keyset refs;
	idname *models;
	size_t n_models;
	int uncertain; /* some reference holder could not be read */
	int bad_model_records; /* ids of those cannot be trusted */
	keyset reported; /* damaged chunks already reported */
	MDB_txn *txn;
	uint64_t next_id; /* the id counter, 0 when unreadable */
} vctx;

static void report(vctx *v, const char *model, const char *what,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void report(vctx *v, const char *model, const char *what,
		   const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	v->rep->bad++;
	if (v->cb)
		v->cb(v->ud, model, what, msg);
}

static const char *why(int rc)
{
	switch (rc) {
	case -EIO:
		return "checksum mismatch";
	case -EBADMSG:
		return "does not decode";
	case -ENOENT:
	case -ENODATA:
		return "missing";
	default:
		return strerror(-rc);
	}
}

static void key_hex(const unsigned char *k, char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", k[i]);
}

static const char *model_name(const vctx *v, uint64_t id)
{
	for (size_t i = 0; i < v->n_models; i++)
		if (v->models[i].id == id)
			return v->models[i].name;
	return NULL;
}

/* "tensor 'w'" or "tensor 3" of model id, as the tensors table says. */
static void tensor_what(vctx *v, uint64_t id, uint32_t t, char *buf, size_t n)
{
	unsigned char k[12];
	tcz__key_id_idx(k, id, t);
	MDB_val kv = {12, k}, d;
	char *name = NULL;
	if (mdb_get(v->txn, v->s->tensors, &kv, &d) == 0)
		name = tcz__tensor_record_name(d.mv_data, d.mv_size);
	if (name)
		snprintf(buf, n, "tensor '%s'", name);
	else
		snprintf(buf, n, "tensor %u", t);
	free(name);
}

/* ---- the records pass ---------------------------------------------------- */

static int scan_models(vctx *v)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(v->txn, v->s->models, &c);
	if (rc)
		return tcz__mdb_err(rc);
	MDB_val k, d;
	size_t cap = 0;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		uint64_t id, rev;
		if (tcz__model_record_id(d.mv_data, d.mv_size, &id))
			id = NO_OWNER;
		if (tcz__model_record_rev(d.mv_data, d.mv_size, &id, &rev) &&
		    tcz__model_record_id(d.mv_data, d.mv_size, &id) == 0)
			v->bad_model_records++;
		if (tcz__grow(&v->models, &cap, v->n_models, sizeof *v->models,
			      16)) {
			mdb_cursor_close(c);
			return -ENOMEM;
		}
		v->models[v->n_models].id = id;
		v->models[v->n_models].name = strndup(k.mv_data, k.mv_size);
		if (!v->models[v->n_models].name) {
			mdb_cursor_close(c);
			return -ENOMEM;
		}
		v->n_models++;
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : tcz__mdb_err(rc);
}

/* Counts the references of every record of a tensors or aux table. */
static int scan_holders(vctx *v, MDB_dbi db, int blobs)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(v->txn, db, &c);
	if (rc)
		return tcz__mdb_err(rc);
	MDB_val k, d;
	uint64_t orphan = NO_OWNER;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 12) {
			report(v, "-", blobs ? "aux table" : "tensors table",
			       "a key of %zu bytes", k.mv_size);
			continue;
		}
		uint64_t id = tcz_get_be64(k.mv_data);
		uint32_t idx = tcz_get_be32((const unsigned char *)k.mv_data + 8);
		const char *mname = model_name(v, id);
		if (!mname) {
			/* a damaged model record (reported) may hold the id
			 * these records are under */
			if (id != orphan && !v->bad_model_records) {
				char what[64];
				snprintf(what, sizeof what, "model id %llu",
					 (unsigned long long)id);
				report(v, "-", what,
				       "%s records of no model (left behind)",
				       blobs ? "blob" : "tensor");
				orphan = id;
			}
			v->uncertain = 1;
			continue;
		}
		tcz_tensor t;
		tcz_blob b;
		int r = blobs ? tcz__blob_decode(d.mv_data, d.mv_size, &b)
			      : tcz__tensor_decode(d.mv_data, d.mv_size, &t);
		if (r == -ENOMEM) {
			mdb_cursor_close(c);
			return r;
		}
		if (r) {
			/* reported by the model's load below, once */
			v->uncertain = 1;
			if (blobs)
				tcz__blob_clear(&b);
			else
				tcz__tensor_clear(&t);
			continue;
		}
		uint32_t n = blobs ? b.n_chunks : t.n_chunks;
		unsigned char(*keys)[TCZ_KEY_LEN] = blobs ? b.chunks : t.chunks;
		owner o = {id, blobs ? idx | BLOB_BIT : idx};
		for (uint32_t i = 0; i < n && r == 0; i++)
			r = ks_add(&v->refs, keys[i], o);
		if (blobs)
			tcz__blob_clear(&b);
		else
			tcz__tensor_clear(&t);
		if (r) {
			mdb_cursor_close(c);
			return r;
		}
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : tcz__mdb_err(rc);
}

/* References held by imports in progress (pending) or by removed models
 * still read somewhere (dropped): records of chunk keys. */
static int scan_lists(vctx *v, MDB_dbi db, int dropped)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(v->txn, db, &c);
	if (rc)
		return tcz__mdb_err(rc);
	MDB_val k, d;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		tcz_rbuf r;
		const unsigned char *keys;
		size_t n;
		if (tcz_rec_open(&r, d.mv_data, d.mv_size)) {
			report(v, "-", dropped ? "removed model's chunk list"
					       : "import's chunk list",
			       "damaged (checksum mismatch)");
			v->uncertain = 1;
			continue;
		}
		if (dropped) {
			tcz_rb_u32(&r);
			n = tcz_rb_u32(&r);
			keys = tcz_rb_bytes(&r, n * TCZ_KEY_LEN);
			if (!keys || tcz_rb_end(&r)) {
				v->uncertain = 1;
				continue;
			}
		} else {
			if (r.len % TCZ_KEY_LEN) {
				v->uncertain = 1;
				continue;
			}
			keys = r.p;
			n = r.len / TCZ_KEY_LEN;
		}
		owner o = {NO_OWNER, 0};
		for (size_t i = 0; i < n; i++)
			if (ks_add(&v->refs, keys + i * TCZ_KEY_LEN, o)) {
				mdb_cursor_close(c);
				return -ENOMEM;
			}
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : tcz__mdb_err(rc);
}

/* The chunk's first holder, for a message: "tensor 'w' chunk" etc. */
static void holder(vctx *v, const owner *o, const char **model, char *what,
		   size_t n, const char *hex)
{
	*model = "-";
	if (!o || o->model == NO_OWNER) {
		snprintf(what, n, "chunk %s", hex);
		return;
	}
	const char *mn = model_name(v, o->model);
	*model = mn ? mn : "-";
	if (o->index & BLOB_BIT) {
		snprintf(what, n, "file part %u (chunk %s)", o->index & ~BLOB_BIT,
			 hex);
		return;
	}
	char t[300];
	tensor_what(v, o->model, o->index, t, sizeof t);
	snprintf(what, n, "%s (chunk %s)", t, hex);
}

/* The block index (blocks.c) against the chunks: a record of no chunk is
 * a leak, a record that is not its chunk's is damaged (reads do not trust
 * it and read the chunk whole; a damaged chunk is reported on its own). */
static int check_block_index(vctx *v)
{
	MDB_cursor *c;
	MDB_val k, d, cv;
	char hex[33];
	if (!v->s->has_blocks)
		return 0;
	int rc = mdb_cursor_open(v->txn, v->s->blocks, &c);
	if (rc)
		return tcz__mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != TCZ_KEY_LEN) {
			report(v, "-", "block index", "a record with a %zu-byte key",
			       k.mv_size);
			continue;
		}
		key_hex(k.mv_data, hex);
		if (mdb_get(v->txn, v->s->chunks, &k, &cv) != 0) {
			if (!v->uncertain)
				report(v, "-", hex,
				       "block index record of no chunk");
			continue;
		}
		unsigned char got[TCZ_KEY_LEN];
		tcz__chunk_key(cv.mv_data, cv.mv_size, got);
		if (memcmp(got, k.mv_data, TCZ_KEY_LEN) != 0)
			continue; /* the chunk itself is damaged: said there */
		int m = tcz__blocks_matches(d.mv_data, d.mv_size, cv.mv_data,
					    cv.mv_size);
		if (m < 0) {
			mdb_cursor_close(c);
			return m;
		}
		if (!m)
			report(v, "-", hex,
			       "its block index record is damaged (small reads "
			       "read the chunk whole)");
	}
	mdb_cursor_close(c);
	return 0;
}

static int check_refs(vctx *v)
{
	MDB_cursor *c;
	MDB_val k, d;
	char hex[33], what[400];
	const char *mname;
	int rc;
	if ((rc = mdb_cursor_open(v->txn, v->s->refs, &c)))
		return tcz__mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 16) {
			report(v, "-", "refs table", "a key of %zu bytes",
			       k.mv_size);
			continue;
		}
		key_hex(k.mv_data, hex);
		const owner *o = NULL;
		const uint64_t *want = ks_get(&v->refs, k.mv_data, &o);
		uint64_t w = want ? *want : 0;
		tcz_rbuf r;
		if (tcz_rec_open(&r, d.mv_data, d.mv_size)) {
			holder(v, o, &mname, what, sizeof what, hex);
			report(v, mname, what,
			       "its reference count record is damaged "
			       "(checksum mismatch)");
			continue;
		}
		uint64_t have = tcz_rb_u64(&r);
		if (have < w || (have > w && !v->uncertain)) {
			holder(v, o, &mname, what, sizeof what, hex);
			report(v, mname, what,
			       "reference count %llu, referenced %llu times%s",
			       (unsigned long long)have, (unsigned long long)w,
			       have < w ? " (removing a model could lose it)"
					: "");
		}
	}
	mdb_cursor_close(c);

	if ((rc = mdb_cursor_open(v->txn, v->s->chunks, &c)))
		return tcz__mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 16 || v->uncertain ||
		    ks_get(&v->refs, k.mv_data, NULL))
			continue;
		key_hex(k.mv_data, hex);
		report(v, "-", hex, "chunk referenced by no model");
	}
	mdb_cursor_close(c);
	return check_block_index(v);
}

static void check_meta(vctx *v)
{
	static const char *const keys[] = {"schema", "next_id", "generation"};
	uint64_t val[3] = {0};
	for (int i = 0; i < 3; i++) {
		int rc = tcz__meta_get(v->s, v->txn, keys[i], &val[i]);
		if (rc) {
			char what[64];
			snprintf(what, sizeof what, "meta record '%s'", keys[i]);
			report(v, "-", what, "%s",
			       rc == -ENOENT ? "missing" : "damaged");
		}
	}
	uint64_t sg;
	if (tcz__meta_get(v->s, v->txn, "stream_generation", &sg) == -EIO)
		report(v, "-", "meta record 'stream_generation'", "damaged");
	v->next_id = val[1];
	for (size_t i = 0; val[1] && i < v->n_models; i++)
		if (v->models[i].id != NO_OWNER && v->models[i].id >= val[1])
			report(v, v->models[i].name, "model record",
			       "id %llu is not below the next id %llu",
			       (unsigned long long)v->models[i].id,
			       (unsigned long long)val[1]);
}

static void check_stats(vctx *v, const char *only)
{
	MDB_cursor *c;
	if (mdb_cursor_open(v->txn, v->s->stats, &c))
		return;
	MDB_val k, d;
	for (int rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		tcz_rbuf r;
		if (k.mv_size == 12 && tcz_rec_open(&r, d.mv_data, d.mv_size) == 0)
			continue;
		uint64_t id = k.mv_size == 12 ? tcz_get_be64(k.mv_data) : 0;
		const char *mn = model_name(v, id);
		if (only && (!mn || strcmp(mn, only) != 0))
			continue;
		char what[320];
		if (k.mv_size == 12)
			tensor_what(v, id, tcz_get_be32((const unsigned char *)
								k.mv_data + 8),
				    what, sizeof what);
		else
			snprintf(what, sizeof what, "statistics");
		report(v, mn ? mn : "-", what,
		       "its access statistics record is damaged (it is "
		       "reset at the next save)");
	}
	mdb_cursor_close(c);
}

/* ---- streams --------------------------------------------------------------- */

typedef struct vstream {
	uint64_t id;
	char *name;
	int ok;          /* its record decoded */
	tcz__srec r;
	uint64_t next;   /* the index's next first frame */
	tcz__srec seen;  /* totals counted from the index */
} vstream;

static int vs_cmp(const void *a, const void *b)
{
	const vstream *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

static vstream *vs_find(vstream *v, size_t n, uint64_t id)
{
	vstream key = {.id = id};
	return n ? bsearch(&key, v, n, sizeof *v, vs_cmp) : NULL;
}

static void stream_what(char *buf, size_t n, const char *what, uint64_t a,
			uint64_t b)
{
	if (b > a)
		snprintf(buf, n, "%s of frames %llu..%llu", what,
			 (unsigned long long)a, (unsigned long long)(b - 1));
	else
		snprintf(buf, n, "%s of frame %llu", what, (unsigned long long)a);
}

/* One index record and the segment it points at. */
static void check_segment(vctx *v, vstream *st, uint64_t first,
			  const MDB_val *d)
{
	char what[160];
	tcz__sidx x;
	const char *who = st->name;
	if (first != st->next) {
		stream_what(what, sizeof what, "index", st->next, first);
		report(v, who, what, "no segment holds these frames");
	}
	int rc = tcz__sidx_decode(d->mv_data, d->mv_size, &x);
	if (rc) {
		stream_what(what, sizeof what, "index record", first, first);
		report(v, who, what, "%s", rc == -EIO ? "damaged (checksum mismatch)"
						       : "malformed");
		st->next = UINT64_MAX; /* its frames are unknown: no gap report */
		return;
	}
	stream_what(what, sizeof what, "segment", first, first + x.frames);
	st->next = first + x.frames;
	unsigned char sk[TCZ__SEG_KEY];
	tcz__seg_key(sk, st->id, x.start_ts, x.end_ts, first);
	MDB_val k = {sizeof sk, sk}, sv;
	tcz_rbuf rb;
	tcz_tqtc_view tv;
	if (mdb_get(v->txn, v->s->segments, &k, &sv)) {
		report(v, who, what, "missing");
	} else if (tcz_rec_open(&rb, sv.mv_data, sv.mv_size)) {
		report(v, who, what, "damaged (checksum mismatch)");
	} else if (tcz_tqtc_parse(sv.mv_data, sv.mv_size - 8, &tv)) {
		report(v, who, what, "not a valid TQTC segment");
	} else if (st->ok && (tv.tensor_len != st->r.p.dim ||
			      tv.group_len != st->r.p.group_len ||
			      tv.frame_count != x.frames || tv.bits != x.bits ||
			      sv.mv_size - 8 != x.seg_len)) {
		report(v, who, what, "does not match its index record or the "
				     "stream (%u x %u values, %u bits, %zu bytes)",
		       tv.frame_count, tv.tensor_len, tv.bits, sv.mv_size - 8);
	}
	v->rep->segments++;
	tcz__srec *t = &st->seen;
	if (t->frames == 0)
		t->first_ts = x.start_ts;
	t->last_ts = x.end_ts;
	t->frames += x.frames;
	t->segments++;
	t->stored_bytes += x.seg_len;
	t->overhead_bytes += x.rec_len + 8;
	int w = tcz__width_slot(x.bits);
	t->width[w].segments++;
	t->width[w].frames += x.frames;
	t->width[w].bytes += x.seg_len;
}

/* The totals a stream record states against what its index holds. */
static void check_totals(vctx *v, const vstream *st)
{
	if (!st->ok || st->next == UINT64_MAX)
		return;
	const tcz__srec *r = &st->r, *t = &st->seen;
	int same = r->frames == t->frames && r->segments == t->segments &&
		   r->stored_bytes == t->stored_bytes &&
		   r->overhead_bytes == t->overhead_bytes &&
		   memcmp(r->width, t->width, sizeof r->width) == 0 &&
		   (!r->frames ||
		    (r->first_ts == t->first_ts && r->last_ts == t->last_ts));
	if (!same)
		report(v, st->name, "stream record",
		       "states %llu frames in %llu segments (%llu bytes); the "
		       "index holds %llu frames in %llu segments (%llu bytes)",
		       (unsigned long long)r->frames,
		       (unsigned long long)r->segments,
		       (unsigned long long)r->stored_bytes,
		       (unsigned long long)t->frames,
		       (unsigned long long)t->segments,
		       (unsigned long long)t->stored_bytes);
}

/* Stream records, their index, their segments and statistics: every
 * record's checksum, the index contiguous from frame 0, every segment
 * present, valid and as its index record says, the totals, and nothing
 * that belongs to no stream. */
static int check_streams(vctx *v, uint64_t next_id)
{
	tcz_store *s = v->s;
	if (!s->has_streams)
		return 0;
	vstream *st = NULL;
	size_t n = 0, cap = 0;
	MDB_cursor *c;
	MDB_val k, d;
	int rc = mdb_cursor_open(v->txn, s->streams, &c);
	if (rc)
		return tcz__mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		vstream e = {0};
		if (!(e.name = strndup(k.mv_data, k.mv_size)) ||
		    tcz__grow(&st, &cap, n, sizeof *st, 16)) {
			free(e.name);
			rc = ENOMEM;
			break;
		}
		int r = tcz__srec_decode(d.mv_data, d.mv_size, &e.r);
		e.ok = r == 0;
		if (r)
			report(v, e.name, "stream record", "%s",
			       r == -EIO ? "damaged (checksum mismatch)"
					 : "malformed");
		if (tcz__srec_id(d.mv_data, d.mv_size, &e.id))
			e.id = 0;
		if (e.ok && next_id && e.id >= next_id)
			report(v, e.name, "stream record",
			       "id %llu is not below the next id %llu",
			       (unsigned long long)e.id,
			       (unsigned long long)next_id);
		st[n++] = e;
	}
	mdb_cursor_close(c);
	if (rc != MDB_NOTFOUND) {
		for (size_t i = 0; i < n; i++)
			free(st[i].name);
		free(st);
		return rc == ENOMEM ? -ENOMEM : tcz__mdb_err(rc);
	}
	if (n)
		qsort(st, n, sizeof *st, vs_cmp);
	v->rep->streams += n;

	char what[96];
	/* the index, stream after stream, first frame after first frame */
	if (mdb_cursor_open(v->txn, s->sindex, &c) == 0) {
		vstream *cur = NULL;
		for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
			uint64_t id = k.mv_size == TCZ__SIDX_KEY
					      ? tcz_get_be64(k.mv_data)
					      : 0;
			vstream *e = id ? vs_find(st, n, id) : NULL;
			if (!e) {
				snprintf(what, sizeof what, "stream %llu index",
					 (unsigned long long)id);
				report(v, "-", what, "a record of no stream");
				continue;
			}
			if (e != cur && cur)
				check_totals(v, cur);
			cur = e;
			check_segment(v, e, tcz_get_be64((const unsigned char *)
								 k.mv_data + 8),
				      &d);
		}
		if (cur)
			check_totals(v, cur);
		mdb_cursor_close(c);
	}
	for (size_t i = 0; i < n; i++)
		if (st[i].ok && st[i].r.frames && !st[i].seen.segments)
			report(v, st[i].name, "index", "holds none of its %llu frames",
			       (unsigned long long)st[i].r.frames);
	/* segments no index record points at */
	if (mdb_cursor_open(v->txn, s->segments, &c) == 0) {
		for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
			const unsigned char *kp = k.mv_data;
			uint64_t id = k.mv_size >= 8 ? tcz_get_be64(kp) : 0;
			vstream *e = vs_find(st, n, id);
			int held = 0;
			if (e && k.mv_size == TCZ__SEG_KEY) {
				unsigned char ik[TCZ__SIDX_KEY];
				tcz__sidx_key(ik, id, tcz_get_be64(kp + 24));
				MDB_val ikv = {sizeof ik, ik}, id_val;
				tcz__sidx x;
				held = mdb_get(v->txn, s->sindex, &ikv, &id_val) == 0 &&
				       (tcz__sidx_decode(id_val.mv_data,
							 id_val.mv_size, &x) != 0 ||
					(x.start_ts == tcz_get_be64(kp + 8) &&
					 x.end_ts == tcz_get_be64(kp + 16)));
			}
			if (held)
				continue;
			snprintf(what, sizeof what, "stream %llu segment",
				 (unsigned long long)id);
			report(v, e ? e->name : "-", what,
			       "a segment no index record points at");
		}
		mdb_cursor_close(c);
	}
	if (mdb_cursor_open(v->txn, s->sstats, &c) == 0) {
		for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
			uint64_t id = k.mv_size == 8 ? tcz_get_be64(k.mv_data) : 0;
			vstream *e = vs_find(st, n, id);
			tcz_rbuf rb;
			if (!e)
				report(v, "-", "stream statistics",
				       "a record of no stream");
			else if (tcz_rec_open(&rb, d.mv_data, d.mv_size))
				report(v, e->name, "stream statistics",
				       "damaged (they restart at the next save)");
		}
		mdb_cursor_close(c);
	}
	for (size_t i = 0; i < n; i++)
		free(st[i].name);
	free(st);
	return 0;
}

/* The reference count records of one model's chunks are readable (what
 * `verify MODEL` can check without counting the whole store). */
static void check_model_refs(vctx *v, const tcz_model *m)
{
	char hex[33], what[400];
	for (uint32_t kind = 0; kind < 2; kind++) {
		uint32_t count = kind == 0 ? m->n_tensors : m->n_blobs;
		for (uint32_t i = 0; i < count; i++) {
			uint32_t nc = kind == 0 ? m->tensors[i].n_chunks
						: m->blobs[i].n_chunks;
			const unsigned char(*keys)[TCZ_KEY_LEN] =
				kind == 0 ? (const unsigned char(*)[16])m->tensors[i].chunks
					  : (const unsigned char(*)[16])m->blobs[i].chunks;
			for (uint32_t c = 0; c < nc; c++) {
				MDB_val k = {TCZ_KEY_LEN, (void *)keys[c]}, d;
				tcz_rbuf r;
				int rc = mdb_get(v->txn, v->s->refs, &k, &d);
				if (rc == 0 && tcz_rec_open(&r, d.mv_data, d.mv_size) == 0)
					continue;
				key_hex(keys[c], hex);
				if (kind == 0)
					snprintf(what, sizeof what,
						 "tensor '%s' chunk %u (chunk %s)",
						 m->tensors[i].name, c, hex);
				else
					snprintf(what, sizeof what,
						 "file part %u (chunk %s)", i, hex);
				report(v, m->name, what,
				       rc ? "its reference count record is missing"
					  : "its reference count record is damaged "
					    "(checksum mismatch)");
			}
		}
	}
}

/* Which models load; each that does not is reported once. */
static int check_models(vctx *v, const char *only, char ***ok, size_t *n_ok)
{
	char **names = calloc(v->n_models + 1, sizeof *names);
	size_t n = 0;
	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < v->n_models; i++) {
		const char *name = v->models[i].name;
		if (only && strcmp(name, only) != 0)
			continue;
		tcz_model *m = NULL;
		tcz_load_err le = {0};
		int rc = tcz__load_model(v->s, v->txn, name, &m, &le);
		if (rc == -ENOMEM) {
			tcz_names_free(names, n);
			return rc;
		}
		if (rc) {
			char what[400];
			if (le.indexed && strcmp(le.what, "tensor record") == 0) {
				char t[320];
				tensor_what(v, v->models[i].id, le.index, t,
					    sizeof t);
				snprintf(what, sizeof what, "%s record", t);
			} else if (le.indexed) {
				snprintf(what, sizeof what, "%s %u", le.what,
					 le.index);
			} else {
				snprintf(what, sizeof what, "%s", le.what);
			}
			report(v, name, what, "%s",
			       rc == -EIO ? "damaged (checksum mismatch)"
					  : "malformed");
			v->uncertain = 1;
			continue;
		}
		v->rep->models++;
		if (only)
			check_model_refs(v, m);
		tcz_model_free(m);
		if (!(names[n++] = strdup(name))) {
			tcz_names_free(names, n);
			return -ENOMEM;
		}
	}
	*ok = names;
	*n_ok = n;
	return 0;
}

/* ---- the decode pass ----------------------------------------------------- */

static int decode_model(vctx *v, tcz_reader *r, const char *name)
{
	tcz_mview *mv;
	int rc = tcz_mview_open(v->s, name, &mv);
	if (rc == -ENOENT)
		return 0; /* removed meanwhile */
	if (rc)
		return rc == -ENOMEM ? rc : 0; /* reported by the records pass */
	const tcz_model *m = tcz_mview_model(mv);
	unsigned char *buf = malloc(TCZ_CHUNK_MAX);
	if (!buf) {
		tcz_mview_put(mv);
		return -ENOMEM;
	}
	char what[400];
	rc = 0;
	for (uint32_t kind = 0; kind < 2 && rc == 0; kind++) {
		uint32_t count = kind == TCZ_SRC_TENSOR ? m->n_tensors : m->n_blobs;
		for (uint32_t i = 0; i < count && rc == 0; i++) {
			tcz_src s0 = {kind, i, 0, 0}, s;
			uint32_t nc = kind == TCZ_SRC_TENSOR
					      ? tcz_tensor_chunk_count(&m->tensors[i])
					      : m->blobs[i].n_chunks;
			int tt = kind == TCZ_SRC_TENSOR &&
				 m->tensors[i].codec == TCZ_CODEC_TT;
			if (kind == TCZ_SRC_TENSOR)
				v->rep->tensors++;
			for (uint32_t c = 0; c < nc; c++) {
				if (tcz_view_src_next(mv, &s0, c, &s) != 0)
					break;
				int e = tcz_view_decode(r, mv, &s, buf);
				if (e == -ENOMEM) {
					rc = e;
					break;
				}
				if (e) {
					/* a chunk shared by several tensors or
					 * models: its damage is reported once */
					unsigned char key[TCZ_KEY_LEN];
					tcz_view_src_key(mv, &s, key);
					if (!tt && ks_get(&v->reported, key, NULL))
						continue;
					owner none = {NO_OWNER, 0};
					if (!tt && ks_add(&v->reported, key, none)) {
						rc = -ENOMEM;
						break;
					}
					tcz_src f = {kind, i, c, 0};
					tcz_view_src_describe(mv, &f, what,
							      sizeof what);
					report(v, name, what, "%s", why(e));
					if (tt)
						break; /* the cores: once */
					continue;
				}
				v->rep->chunks++;
				if (kind == TCZ_SRC_TENSOR)
					v->rep->bytes += tcz_tensor_chunk_len(
						&m->tensors[i], c);
			}
		}
	}
	free(buf);
	tcz_mview_put(mv);
	return rc;
}

int tcz_store_verify(tcz_store *s, const char *name, tcz_verify_cb cb,
		     void *ud, tcz_verify_report *rep)
{
	memset(rep, 0, sizeof *rep);
	vctx v = {0};
	v.s = s;
	v.cb = cb;
	v.ud = ud;
	v.rep = rep;
	char **ok = NULL;
	size_t n_ok = 0;
	tcz_reader *r = NULL;
	int rc = tcz__rtxn_begin(s, &v.txn);
	if (rc)
		return rc;
	rc = scan_models(&v);
	if (rc == 0 && name) {
		int found = 0;
		for (size_t i = 0; i < v.n_models; i++)
			found |= strcmp(v.models[i].name, name) == 0;
		if (!found)
			rc = tcz__fail(-ENOENT, "no model named %s", name);
	}
	if (rc == 0)
		rc = check_models(&v, name, &ok, &n_ok);
	if (rc == 0 && !name) {
		check_meta(&v);
		if ((rc = scan_holders(&v, s->tensors, 0)) == 0 &&
		    (rc = scan_holders(&v, s->aux, 1)) == 0 &&
		    (rc = scan_lists(&v, s->pending, 0)) == 0 &&
		    (!s->has_dropped || (rc = scan_lists(&v, s->dropped, 1)) == 0))
			rc = check_refs(&v);
		if (rc == 0)
			rc = check_streams(&v, v.next_id);
	}
	if (rc == 0)
		check_stats(&v, name);
	tcz__rtxn_end(s, v.txn, 0);
	v.txn = NULL;

	if (rc == 0)
		rc = tcz_reader_create(s, &r);
	for (size_t i = 0; rc == 0 && i < n_ok; i++)
		rc = decode_model(&v, r, ok[i]);
	if (rc == 0 && rep->bad)
		rc = -EIO;
	tcz_reader_free(r);
	tcz_names_free(ok, n_ok);
	for (size_t i = 0; i < v.n_models; i++)
		free(v.models[i].name);
	free(v.models);
	ks_free(&v.refs);
	ks_free(&v.reported);
	return rc;
}
