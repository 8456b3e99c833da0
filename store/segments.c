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

struct put_arg {
	tcz_store *s;
	const unsigned char *key;
	const tcz_wbuf *w;
};

static int put_fn(void *arg, MDB_txn *txn)
{
	struct put_arg *a = arg;
	MDB_val kv = {24, (void *)a->key}, dv = {a->w->len, a->w->p};
	return tcz__mdb_err(mdb_put(txn, a->s->segments, &kv, &dv, 0));
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
	struct put_arg pa = {s, k, &w};
	if (rc == 0)
		rc = tcz__write(s, put_fn, &pa);
	tcz_wb_free(&w);
	return rc;
}

int tcz_snap_segments(tcz_snap *sn, uint64_t stream, uint64_t from_ts,
		      tcz_segment_cb cb, void *ud)
{
	unsigned char k0[24];
	seg_key(k0, stream, 0, 0);
	MDB_cursor *c;
	int rc = mdb_cursor_open(sn->txn, sn->s->segments, &c);
	if (rc)
		return tcz__mdb_err(rc);
	MDB_val k = {24, k0}, d;
	for (int op = MDB_SET_RANGE;; op = MDB_NEXT) {
		rc = mdb_cursor_get(c, &k, &d, (MDB_cursor_op)op);
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
	mdb_cursor_close(c);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	return rc > 0 ? tcz__mdb_err(rc) : rc;
}
