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
	pthread_mutex_lock(&sn->lock);
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
	pthread_mutex_unlock(&sn->lock);
	if (rc && rc != MDB_NOTFOUND)
		return tcz__mdb_err(rc);
	return bad ? -EIO : 0;
}

int tcz_store_put_access(tcz_store *s, uint64_t model_id,
			 const uint32_t *idx, const tcz_access *a, size_t n)
{
	if (s->flags & TCZ_STORE_RDONLY)
		return -EROFS;
	MDB_txn *txn;
	int rc = tcz__txn_begin(s, 0, &txn);
	if (rc)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		unsigned char k[12];
		tcz__key_id_idx(k, model_id, idx[i]);
		MDB_val kv = {12, k}, d;
		/* the tensor record exists only while the model does */
		if (mdb_get(txn, s->tensors, &kv, &d) != 0)
			continue;
		tcz_wbuf w;
		tcz_wb_init(&w);
		tcz_wb_u64(&w, a[i].reads);
		tcz_wb_u64(&w, a[i].bytes);
		tcz_wb_u64(&w, a[i].last_access);
		tcz_wb_u32(&w, (uint32_t)a[i].pinned);
		rc = tcz_rec_finish(&w);
		MDB_val dv = {w.len, w.p};
		if (rc == 0)
			rc = tcz__mdb_err(mdb_put(txn, s->stats, &kv, &dv, 0));
		tcz_wb_free(&w);
	}
	if (rc) {
		tcz__txn_abort(s, txn);
		return rc;
	}
	return tcz__txn_commit(s, txn);
}
