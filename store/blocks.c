/* The block index: for each lossless chunk of several blocks, where in
 * its value each block's stored bytes lie and their XXH3-64, so that a
 * small read fetches and decodes one ~16 KiB block of a chunk instead of
 * the whole value (a cold 4 KiB read was a pread of the ~87 KiB value and
 * a decode of 128 KiB). Layout: docs/formats.md, "Block index".
 *
 * The index is derived data: written with the chunk, deleted with it,
 * never trusted beyond its own check. A missing or damaged record, or one
 * that does not match the reader's expectations, sends the read down the
 * whole-chunk path, which verifies the chunk against its key as before. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "codec/lossless.h"
#include "store/internal.h"
#include "store/record.h"
#include "store/reader.h"

#define BI_MAGIC 0x4249435au /* "ZCIB" read as a little-endian u32 */
#define BI_VERSION 1
#define BI_HDR 12 /* magic, version, dtype, 2 zero bytes, prefix length */

/* The record of chunk value val, a store record (store/record.h: its
 * fields, then their XXH3-64), into w; w->len stays 0 when the value has
 * nothing to index. Errors: -ENOMEM. */
static int build_record(const void *val, size_t len, tcz_wbuf *w)
{
	tcz_chunk_hdr h;
	size_t plen, nb;
	tcz_lossless_block b;
	tcz_wb_init(w);
	if (tcz__chunk_parse(val, len, &h) ||
	    h.codec != TCZ_CODEC_LOSSLESS ||
	    tcz_lossless_prefix_len(h.payload, h.plen, &plen) ||
	    plen > h.plen ||
	    tcz_lossless_block_at(h.payload, plen, 0, &b, &nb) || nb < 2)
		return 0; /* nothing to index: the chunk is read whole */
	tcz_wb_u32(w, BI_MAGIC);
	tcz_wb_u8(w, BI_VERSION);
	tcz_wb_u8(w, (uint8_t)h.dtype);
	tcz_wb_u8(w, 0);
	tcz_wb_u8(w, 0);
	tcz_wb_u32(w, (uint32_t)plen);
	tcz_wb_bytes(w, h.payload, plen);
	for (size_t i = 0; i < nb; i++) {
		if (tcz_lossless_block_at(h.payload, plen, i, &b, NULL) ||
		    b.data_off + b.data_len > h.plen) {
			tcz_wb_free(w);
			tcz_wb_init(w);
			return 0; /* not a well-formed blob: not indexed */
		}
		tcz_wb_u64(w, XXH3_64bits(h.payload + b.data_off, b.data_len));
	}
	int rc = tcz_rec_finish(w);
	if (rc)
		tcz_wb_free(w);
	return rc;
}

int tcz__blocks_put(tcz_store *s, MDB_txn *txn, const unsigned char *key,
		    const void *val, size_t len)
{
	tcz_wbuf w;
	if (!s->has_blocks)
		return 0;
	int rc = build_record(val, len, &w);
	if (rc || !w.len)
		return rc;
	MDB_val k = {TCZ_KEY_LEN, (void *)key}, d = {w.len, w.p};
	rc = mdb_put(txn, s->blocks, &k, &d, 0);
	tcz_wb_free(&w);
	return rc ? tcz__mdb_err(rc) : 0;
}

int tcz__blocks_matches(const void *rec, size_t rlen, const void *val,
			size_t len)
{
	tcz_wbuf w;
	if (build_record(val, len, &w))
		return -ENOMEM;
	int same = w.len && w.len == rlen && memcmp(w.p, rec, rlen) == 0;
	tcz_wb_free(&w);
	return same;
}

int tcz__blocks_del(tcz_store *s, MDB_txn *txn, const unsigned char *key)
{
	if (!s->has_blocks)
		return 0;
	MDB_val k = {TCZ_KEY_LEN, (void *)key};
	int rc = mdb_del(txn, s->blocks, &k, NULL);
	return rc && rc != MDB_NOTFOUND ? tcz__mdb_err(rc) : 0;
}

static int grow(unsigned char **p, size_t *cap, size_t need)
{
	if (*cap >= need)
		return 0;
	unsigned char *n = realloc(*p, need);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = need;
	return 0;
}

int tcz__blocks_check(const unsigned char *rec, size_t rlen, tcz_dtype dt,
		      uint32_t chunk_len, size_t *plen, size_t *nb)
{
	tcz_rbuf r;
	if (tcz_rec_open(&r, rec, rlen) || tcz_rb_u32(&r) != BI_MAGIC ||
	    tcz_rb_u8(&r) != BI_VERSION || tcz_rb_u8(&r) != (uint8_t)dt ||
	    tcz_rb_u8(&r) || tcz_rb_u8(&r))
		return 0;
	*plen = tcz_rb_u32(&r);
	const unsigned char *pre = tcz_rb_bytes(&r, *plen);
	tcz_lossless_block b;
	if (!pre || tcz_lossless_block_at(pre, *plen, 0, &b, nb) ||
	    !tcz_rb_bytes(&r, 8 * *nb) || tcz_rb_end(&r))
		return 0;
	if (tcz_lossless_block_at(pre, *plen, *nb - 1, &b, NULL) ||
	    b.dec_off + b.dec_len != chunk_len)
		return 0;
	return 1;
}

/* A part read's look-up: chunk key's index record into r->bidx, checked
 * (*plen, *nb as tcz__blocks_check), and with voff the value's place in
 * data.mdb (*voff, *vlen: a pointer, its pages are not touched). With
 * voff the read transaction stays open (the caller preads under it and
 * resets it), without it is reset here. Errors: -ENOTSUP no usable
 * record (read the chunk whole, which verifies it); -ENOMEM; the
 * store's. */
static int look_up(tcz_reader *r, const unsigned char *key, tcz_dtype dt,
		   uint32_t chunk_len, size_t *plen, size_t *nb, int64_t *voff,
		   size_t *vlen)
{
	tcz_store *s = r->s;
	if (!s->has_blocks)
		return -ENOTSUP;
	int rc = tcz__rtxn_begin(s, &r->txn);
	if (rc)
		return rc;
	MDB_val k = {TCZ_KEY_LEN, (void *)key}, d, v;
	rc = mdb_get(r->txn, s->blocks, &k, &d);
	if (rc == 0 && (rc = grow(&r->bidx, &r->bidx_cap, d.mv_size)) == 0) {
		memcpy(r->bidx, d.mv_data, d.mv_size);
		r->bidx_len = d.mv_size;
		if (voff && (rc = mdb_get(r->txn, s->chunks, &k, &v)) == 0) {
			*voff = tcz__map_offset(s, v.mv_data, v.mv_size);
			*vlen = v.mv_size;
		}
	}
	pthread_rwlock_unlock(&s->map_lock);
	if (rc || (voff && *voff < 0) ||
	    !tcz__blocks_check(r->bidx, r->bidx_len, dt, chunk_len, plen, nb))
		rc = rc == ENOMEM ? -ENOMEM : -ENOTSUP;
	if (rc || !voff)
		mdb_txn_reset(r->txn);
	return rc;
}

/* The blocks i0 .. i1 (b0, b1) under [off, off+len) of a record's
 * prefix: every block but the last is as long as the first. */
static int span(const unsigned char *pre, size_t plen, uint32_t off,
		uint32_t len, size_t *i0, size_t *i1, tcz_lossless_block *b0,
		tcz_lossless_block *b1)
{
	if (tcz_lossless_block_at(pre, plen, 0, b0, NULL))
		return -ENOTSUP;
	*i0 = off / b0->dec_len;
	*i1 = (off + len - 1) / b0->dec_len;
	if (tcz_lossless_block_at(pre, plen, *i0, b0, NULL) ||
	    tcz_lossless_block_at(pre, plen, *i1, b1, NULL))
		return -ENOTSUP;
	return 0;
}

static int bad_range(uint32_t chunk_len, uint32_t off, uint32_t len)
{
	return !len || off > chunk_len || len > chunk_len - off;
}

int tcz__chunk_part_span(tcz_reader *r, const unsigned char *key,
			 tcz_dtype dt, uint32_t chunk_len, uint32_t off,
			 uint32_t len, uint32_t *span_off, uint32_t *span_len)
{
	size_t plen, nb, i0, i1;
	tcz_lossless_block b0, b1;
	if (bad_range(chunk_len, off, len))
		return -ENOTSUP;
	int rc = look_up(r, key, dt, chunk_len, &plen, &nb, NULL, NULL);
	if (rc ||
	    (rc = span(r->bidx + BI_HDR, plen, off, len, &i0, &i1, &b0, &b1)))
		return rc;
	*span_off = (uint32_t)b0.dec_off;
	*span_len = (uint32_t)(b1.dec_off + b1.dec_len - b0.dec_off);
	return 0;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

int tcz__read_chunk_part(tcz_reader *r, const unsigned char *key,
			 tcz_dtype dt, uint32_t chunk_len, uint32_t off,
			 uint32_t len, void *dst)
{
	tcz_store *s = r->s;
	size_t plen, nb, vlen = 0, i0 = 0, i1 = 0;
	int64_t voff = -1;
	if (bad_range(chunk_len, off, len))
		return -ENOTSUP;
	int rc = look_up(r, key, dt, chunk_len, &plen, &nb, &voff, &vlen);
	if (rc)
		return rc;
	const unsigned char *pre = r->bidx + BI_HDR;
	tcz_lossless_block b0, b1;
	rc = span(pre, plen, off, len, &i0, &i1, &b0, &b1);
	size_t from = TCZ_CHUNK_HDR + b0.data_off;
	size_t n = rc ? 0 : b1.data_off + b1.data_len - b0.data_off;
	if (rc == 0 && (from > vlen || n > vlen - from))
		rc = -ENOTSUP; /* an index that does not fit its value */
	if (rc == 0) /* the bytes, then a block's decoding (b0 is full size) */
		rc = grow(&r->part, &r->part_cap, n + b0.dec_len);
	if (rc == 0) {
		/* the transaction keeps the value's pages from reuse until
		 * the copy is made, as in tcz__fetch */
		unsigned char *p = r->part;
		for (size_t got = 0; rc == 0 && got < n;) {
			ssize_t g = pread(s->rand_fd >= 0 ? s->rand_fd
							  : s->data_fd,
					  p + got, n - got,
					  (off_t)((uint64_t)voff + from + got));
			if (g > 0)
				got += (size_t)g;
			else if (g == 0 || errno != EINTR)
				rc = -EIO;
		}
	}
	mdb_txn_reset(r->txn);
	if (rc) /* -ENOTSUP: the whole chunk tells what is wrong */
		return rc;

	/* each block against its hash, then decoded: straight into dst when
	 * the read covers it, through the scratch after the bytes otherwise */
	const unsigned char *hashes = pre + plen;
	unsigned char *out = dst, *scratch = r->part + n;
	for (size_t i = i0; i <= i1; i++) {
		tcz_lossless_block b;
		if (tcz_lossless_block_at(pre, plen, i, &b, NULL))
			return -ENOTSUP;
		const unsigned char *data = r->part + (b.data_off - b0.data_off);
		if (XXH3_64bits(data, b.data_len) != get64(hashes + 8 * i))
			return -EIO;
		size_t lo = off > b.dec_off ? off : b.dec_off;
		size_t hi = off + len < b.dec_off + b.dec_len ? off + len
							      : b.dec_off + b.dec_len;
		int whole = lo == b.dec_off && hi == b.dec_off + b.dec_len;
		unsigned char *to = whole ? out + (lo - off) : scratch;
		rc = tcz_lossless_decode_block(r->lctx, pre, plen, i, data,
					       b.data_len, to, b.dec_len);
		if (rc)
			return rc == -ENOMEM ? -ENOMEM : -EBADMSG;
		if (!whole)
			memcpy(out + (lo - off), scratch + (lo - b.dec_off),
			       hi - lo);
	}
	return 0;
}

/* Keys looked up per read transaction: each transaction holds the map
 * lock shared, which a store growing its file waits for. */
#define WARM_PER_TXN 16

int tcz__blocks_warm(tcz_reader *r, const unsigned char *keys, size_t n)
{
	tcz_store *s = r->s;
	if (!s->has_blocks)
		return 0;
	volatile unsigned char sink = 0;
	for (size_t i = 0; i < n;) {
		int rc = tcz__rtxn_begin(s, &r->txn);
		if (rc)
			return rc;
		for (size_t end = i + WARM_PER_TXN < n ? i + WARM_PER_TXN : n;
		     i < end; i++) {
			MDB_val k = {TCZ_KEY_LEN,
				     (void *)(keys + i * TCZ_KEY_LEN)},
				d;
			/* the record is inline in its leaf, the chunk a
			 * pointer to its overflow pages, which stay on disk */
			if (mdb_get(r->txn, s->blocks, &k, &d) == 0 && d.mv_size)
				sink ^= *(const unsigned char *)d.mv_data;
			mdb_get(r->txn, s->chunks, &k, &d);
		}
		pthread_rwlock_unlock(&s->map_lock);
		mdb_txn_reset(r->txn);
	}
	(void)sink;
	return 0;
}
