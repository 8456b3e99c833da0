/* Access statistics records: model id . tensor index -> reads, bytes,
 * last access, pinned tier. */
#include <errno.h>
#include <string.h>

#include "store/internal.h"

int tcz_snap_access(tcz_snap *sn, uint64_t model_id, uint32_t n,
		    tcz_access *out)
{
	for (uint32_t i = 0; i < n; i++)
		out[i] = (tcz_access){0, 0, 0, -1};
	unsigned char k0[12];
	tcz__key_id_idx(k0, model_id, 0);
	MDB_cursor *c;
	int bad = 0;
	int rc = mdb_cursor_open(sn->txn, sn->s->stats, &c);
	if (rc == 0) {
		MDB_val k = {12, k0}, d;
		for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0;
		     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
			const unsigned char *kp = k.mv_data;
			if (k.mv_size != 12 || tcz_get_be64(kp) != model_id)
				break;
			uint32_t i = tcz_get_be32(kp + 8);
			tcz_rbuf r;
			if (i >= n)
				continue;
			if (tcz_rec_open(&r, d.mv_data, d.mv_size)) {
				bad = 1;
				continue;
			}
			tcz_access a;
			a.reads = tcz_rb_u64(&r);
			a.bytes = tcz_rb_u64(&r);
			a.last_access = tcz_rb_u64(&r);
			a.pinned = (int32_t)tcz_rb_u32(&r);
			if (tcz_rb_end(&r) || a.pinned < -1 || a.pinned > 2)
				bad = 1;
			else
				out[i] = a;
		}
		mdb_cursor_close(c);
	}
	if (rc && rc != MDB_NOTFOUND)
		return tcz__mdb_err(rc);
	return bad ? -EIO : 0;
}

static int get_rec(const MDB_val *d, tcz_access *a)
{
	tcz_rbuf r;
	if (tcz_rec_open(&r, d->mv_data, d->mv_size))
		return -EIO;
	a->reads = tcz_rb_u64(&r);
	a->bytes = tcz_rb_u64(&r);
	a->last_access = tcz_rb_u64(&r);
	a->pinned = (int32_t)tcz_rb_u32(&r);
	if (tcz_rb_end(&r) || a->pinned < -1 || a->pinned > 2)
		return -EBADMSG;
	return 0;
}

static int put_rec(tcz_store *s, MDB_txn *txn, MDB_val *k, const tcz_access *a)
{
	tcz_wbuf w;
	tcz_wb_init(&w);
	tcz_wb_u64(&w, a->reads);
	tcz_wb_u64(&w, a->bytes);
	tcz_wb_u64(&w, a->last_access);
	tcz_wb_u32(&w, (uint32_t)a->pinned);
	int rc = tcz_rec_finish(&w);
	MDB_val dv = {w.len, w.p};
	if (rc == 0)
		rc = tcz__mdb_err(mdb_put(txn, s->stats, k, &dv, 0));
	tcz_wb_free(&w);
	return rc;
}

typedef struct add_arg {
	tcz_store *s;
	uint64_t id;
	const uint32_t *idx;
	const uint64_t *reads, *bytes, *last;
	size_t n;
	tcz_access *totals;
} add_arg;

static int add_fn(void *arg, MDB_txn *txn)
{
	add_arg *a = arg;
	int rc = 0;
	for (size_t i = 0; i < a->n && rc == 0; i++) {
		unsigned char k[12];
		tcz__key_id_idx(k, a->id, a->idx[i]);
		MDB_val kv = {12, k}, d;
		tcz_access cur = {0, 0, 0, -1};
		/* the tensor record exists only while the model does */
		if (mdb_get(txn, a->s->tensors, &kv, &d) != 0) {
			if (a->totals)
				a->totals[i] = cur;
			continue;
		}
		/* a damaged record restarts from the deltas, unpinned */
		if (mdb_get(txn, a->s->stats, &kv, &d) == 0 && get_rec(&d, &cur))
			cur = (tcz_access){0, 0, 0, -1};
		cur.reads += a->reads[i];
		cur.bytes += a->bytes[i];
		if (a->last[i] > cur.last_access)
			cur.last_access = a->last[i];
		rc = put_rec(a->s, txn, &kv, &cur);
		if (a->totals)
			a->totals[i] = cur;
	}
	return rc;
}

int tcz_store_add_access(tcz_store *s, uint64_t model_id, const uint32_t *idx,
			 const uint64_t *reads, const uint64_t *bytes,
			 const uint64_t *last, size_t n, tcz_access *totals)
{
	add_arg a = {s, model_id, idx, reads, bytes, last, n, totals};
	return tcz__write(s, add_fn, &a);
}

typedef struct pin_arg {
	tcz_store *s;
	uint64_t id;
	const uint32_t *idx;
	size_t n;
	int32_t pinned;
} pin_arg;

static int pin_fn(void *arg, MDB_txn *txn)
{
	pin_arg *a = arg;
	int rc = 0;
	for (size_t i = 0; i < a->n && rc == 0; i++) {
		unsigned char k[12];
		tcz__key_id_idx(k, a->id, a->idx[i]);
		MDB_val kv = {12, k}, d;
		if (mdb_get(txn, a->s->tensors, &kv, &d) != 0)
			return tcz__fail(-ENOENT, "no tensor %u in model %llu",
					 a->idx[i], (unsigned long long)a->id);
		tcz_access cur = {0, 0, 0, -1};
		if (mdb_get(txn, a->s->stats, &kv, &d) == 0 && get_rec(&d, &cur))
			cur = (tcz_access){0, 0, 0, -1};
		cur.pinned = a->pinned;
		rc = put_rec(a->s, txn, &kv, &cur);
	}
	return rc;
}

int tcz_store_set_pin(tcz_store *s, uint64_t model_id, const uint32_t *idx,
		      size_t n, int32_t pinned)
{
	if (pinned < -1 || pinned > TCZ_TIER_COLD)
		return -EINVAL;
	pin_arg a = {s, model_id, idx, n, pinned};
	return tcz__write(s, pin_fn, &a);
}
