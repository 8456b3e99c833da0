/* TQTC segments of temporal streams: (stream, start, end) -> segment. */
#include <errno.h>
#include <string.h>

#include <xxhash.h>

#include "codec/tqtc.h"
#include "store/internal.h"

static void seg_key(unsigned char k[24], uint64_t stream, uint64_t a,
		    uint64_t b)
{
	tcz_be64(k, stream);
	tcz_be64(k + 8, a);
	tcz_be64(k + 16, b);
}

int tcz_store_put_segment(tcz_store *s, uint64_t stream, uint64_t start_ts,
			  uint64_t end_ts, const void *seg, size_t len)
{
	if (s->flags & TCZ_STORE_RDONLY)
		return -EROFS;
	if (start_ts > end_ts)
		return -EINVAL;
	tcz_tqtc_view v;
	if (tcz_tqtc_parse(seg, len, &v) != 0)
		return -EBADMSG;
	tcz_wbuf w;
	tcz_wb_init(&w);
	tcz_wb_bytes(&w, seg, len);
	int rc = tcz_rec_finish(&w);
	unsigned char k[24];
	seg_key(k, stream, start_ts, end_ts);
	for (int attempt = 0; rc == 0; attempt++) {
		MDB_txn *txn;
		if ((rc = tcz__txn_begin(s, 0, &txn)))
			break;
		MDB_val kv = {24, k}, dv = {w.len, w.p};
		rc = tcz__mdb_err(mdb_put(txn, s->segments, &kv, &dv, 0));
		if (rc == 0) {
			rc = tcz__txn_commit(s, txn);
			break;
		}
		tcz__txn_abort(s, txn);
		if (rc != -ENOSPC || attempt >= 8 || tcz__grow_map(s) != 0)
			break;
		rc = 0; /* grown: once more */
	}
	tcz_wb_free(&w);
	return rc;
}

int tcz_snap_segments(tcz_snap *sn, uint64_t stream, uint64_t from_ts,
		      tcz_segment_cb cb, void *ud)
{
	unsigned char k0[24];
	seg_key(k0, stream, 0, 0);
	MDB_cursor *c;
	pthread_mutex_lock(&sn->lock);
	int rc = mdb_cursor_open(sn->txn, sn->s->segments, &c);
	pthread_mutex_unlock(&sn->lock);
	if (rc)
		return tcz__mdb_err(rc);
	MDB_val k = {24, k0}, d;
	for (int op = MDB_SET_RANGE;; op = MDB_NEXT) {
		pthread_mutex_lock(&sn->lock);
		rc = mdb_cursor_get(c, &k, &d, (MDB_cursor_op)op);
		pthread_mutex_unlock(&sn->lock);
		if (rc)
			break;
		const unsigned char *kp = k.mv_data;
		if (k.mv_size != 24 || tcz_get_be64(kp) != stream)
			break;
		uint64_t a = tcz_get_be64(kp + 8), b = tcz_get_be64(kp + 16);
		if (b < from_ts)
			continue;
		tcz_rbuf r;
		if (tcz_rec_open(&r, d.mv_data, d.mv_size)) {
			rc = -EIO;
			break;
		}
		if ((rc = cb(ud, a, b, r.p, r.len)) != 0)
			break;
	}
	pthread_mutex_lock(&sn->lock);
	mdb_cursor_close(c);
	pthread_mutex_unlock(&sn->lock);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	return rc > 0 ? tcz__mdb_err(rc) : rc;
}
