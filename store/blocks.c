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
#include "store/reader.h"

#define BI_MAGIC 0x4249435au /* "ZCIB" read as a little-endian u32 */
#define BI_VERSION 1
#define BI_HDR 12 /* magic, version, dtype, 2 zero bytes, prefix length */

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* The record of chunk value val (malloc'd into *out), or *out = NULL
 * when the value has nothing to index. Errors: -ENOMEM. */
static int build_record(const void *val, size_t len, unsigned char **out,
			size_t *out_len)
{
	tcz_chunk_hdr h;
	size_t plen, nb;
	tcz_lossless_block b;
	*out = NULL;
	if (tcz__chunk_parse(val, len, &h) ||
	    h.codec != TCZ_CODEC_LOSSLESS ||
	    tcz_lossless_prefix_len(h.payload, h.plen, &plen) ||
	    plen > h.plen ||
	    tcz_lossless_block_at(h.payload, plen, 0, &b, &nb) || nb < 2)
		return 0; /* nothing to index: the chunk is read whole */
	size_t rlen = BI_HDR + plen + 8 * nb + 8;
	unsigned char *rec = malloc(rlen);
	if (!rec)
		return -ENOMEM;
	put32(rec, BI_MAGIC);
	rec[4] = BI_VERSION;
	rec[5] = (unsigned char)h.dtype;
	rec[6] = rec[7] = 0;
	put32(rec + 8, (uint32_t)plen);
	memcpy(rec + BI_HDR, h.payload, plen);
	unsigned char *hp = rec + BI_HDR + plen;
	for (size_t i = 0; i < nb; i++, hp += 8) {
		if (tcz_lossless_block_at(h.payload, plen, i, &b, NULL) ||
		    b.data_off + b.data_len > h.plen) {
			free(rec);
			return 0; /* not a well-formed blob: not indexed */
		}
		put64(hp, XXH3_64bits(h.payload + b.data_off, b.data_len));
	}
	put64(hp, XXH3_64bits(rec, rlen - 8));
	*out = rec;
	*out_len = rlen;
	return 0;
}

int tcz__blocks_put(tcz_store *s, MDB_txn *txn, const unsigned char *key,
		    const void *val, size_t len)
{
	unsigned char *rec;
	size_t rlen;
	if (!s->has_blocks)
		return 0;
	int rc = build_record(val, len, &rec, &rlen);
	if (rc || !rec)
		return rc;
	MDB_val k = {TCZ_KEY_LEN, (void *)key}, d = {rlen, rec};
	rc = mdb_put(txn, s->blocks, &k, &d, 0);
	free(rec);
	return rc ? tcz__mdb_err(rc) : 0;
}

int tcz__blocks_matches(const void *rec, size_t rlen, const void *val,
			size_t len)
{
	unsigned char *want;
	size_t wlen;
	if (build_record(val, len, &want, &wlen))
		return -ENOMEM;
	int same = want && wlen == rlen && memcmp(want, rec, rlen) == 0;
	free(want);
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

/* Fuzzers cannot forge the hash; let them past it (the libFuzzer
 * convention, never defined in a real build). */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define HASH_OK(got, want) ((void)(got), (void)(want), 1)
#else
#define HASH_OK(got, want) ((got) == (want))
#endif

int tcz__blocks_check(const unsigned char *rec, size_t rlen, tcz_dtype dt,
		      uint32_t chunk_len, size_t *plen, size_t *nb)
{
	if (rlen < BI_HDR + 8 || get32(rec) != BI_MAGIC ||
	    rec[4] != BI_VERSION || rec[5] != (unsigned char)dt || rec[6] ||
	    rec[7] || !HASH_OK(get64(rec + rlen - 8), XXH3_64bits(rec, rlen - 8)))
		return 0;
	*plen = get32(rec + 8);
	tcz_lossless_block b;
	if (*plen > rlen - BI_HDR - 8 ||
	    tcz_lossless_block_at(rec + BI_HDR, *plen, 0, &b, nb) ||
	    rlen != BI_HDR + *plen + 8 * *nb + 8)
		return 0;
	if (tcz_lossless_block_at(rec + BI_HDR, *plen, *nb - 1, &b, NULL) ||
	    b.dec_off + b.dec_len != chunk_len)
		return 0;
	return 1;
}

int tcz__chunk_part_span(tcz_reader *r, const unsigned char *key,
			 tcz_dtype dt, uint32_t chunk_len, uint32_t off,
			 uint32_t len, uint32_t *span_off, uint32_t *span_len)
{
	tcz_store *s = r->s;
	if (!s->has_blocks || !len || off > chunk_len || len > chunk_len - off)
		return -ENOTSUP;
	int rc = tcz__rtxn_begin(s, &r->txn);
	if (rc)
		return rc;
	MDB_val k = {TCZ_KEY_LEN, (void *)key}, d;
	rc = mdb_get(r->txn, s->blocks, &k, &d);
	if (rc == 0 && (rc = grow(&r->bidx, &r->bidx_cap, d.mv_size)) == 0) {
		memcpy(r->bidx, d.mv_data, d.mv_size);
		r->bidx_len = d.mv_size;
	}
	pthread_rwlock_unlock(&s->map_lock);
	mdb_txn_reset(r->txn);
	size_t plen, nb;
	if (rc || !tcz__blocks_check(r->bidx, r->bidx_len, dt, chunk_len,
				     &plen, &nb))
		return rc == ENOMEM ? -ENOMEM : -ENOTSUP;
	const unsigned char *pre = r->bidx + BI_HDR;
	tcz_lossless_block b0, b1;
	if (tcz_lossless_block_at(pre, plen, 0, &b0, NULL) ||
	    tcz_lossless_block_at(pre, plen, off / b0.dec_len, &b0, NULL) ||
	    tcz_lossless_block_at(pre, plen, (off + len - 1) / b0.dec_len, &b1,
				  NULL))
		return -ENOTSUP;
	*span_off = (uint32_t)b0.dec_off;
	*span_len = (uint32_t)(b1.dec_off + b1.dec_len - b0.dec_off);
	return 0;
}

int tcz__read_chunk_part(tcz_reader *r, const unsigned char *key,
			 tcz_dtype dt, uint32_t chunk_len, uint32_t off,
			 uint32_t len, void *dst)
{
	tcz_store *s = r->s;
	if (!s->has_blocks || !len || off > chunk_len || len > chunk_len - off)
		return -ENOTSUP;
	int rc = tcz__rtxn_begin(s, &r->txn);
	if (rc)
		return rc;
	MDB_val k = {TCZ_KEY_LEN, (void *)key}, d, v;
	int64_t voff = -1;
	size_t vlen = 0;
	rc = mdb_get(r->txn, s->blocks, &k, &d);
	if (rc == 0 && (rc = grow(&r->bidx, &r->bidx_cap, d.mv_size)) == 0) {
		memcpy(r->bidx, d.mv_data, d.mv_size);
		r->bidx_len = d.mv_size;
		/* the value's place in data.mdb: a pointer, its pages are
		 * not touched here */
		rc = mdb_get(r->txn, s->chunks, &k, &v);
		if (rc == 0) {
			voff = tcz__map_offset(s, v.mv_data, v.mv_size);
			vlen = v.mv_size;
		}
	}
	pthread_rwlock_unlock(&s->map_lock);
	size_t plen, nb;
	if (rc || voff < 0 ||
	    !tcz__blocks_check(r->bidx, r->bidx_len, dt, chunk_len, &plen,
			       &nb)) {
		mdb_txn_reset(r->txn);
		/* no index, or not one to trust: the whole chunk, verified */
		return rc == ENOMEM ? -ENOMEM : -ENOTSUP;
	}
	const unsigned char *pre = r->bidx + BI_HDR;
	tcz_lossless_block b0, b1;
	size_t bl = 0;
	rc = tcz_lossless_block_at(pre, plen, 0, &b0, NULL);
	if (rc == 0)
		bl = b0.dec_len; /* every block but the last */
	size_t i0 = off / bl, i1 = (off + len - 1) / bl;
	if (rc == 0 && ((rc = tcz_lossless_block_at(pre, plen, i0, &b0, NULL)) ||
			(rc = tcz_lossless_block_at(pre, plen, i1, &b1, NULL))))
		rc = -EBADMSG;
	size_t from = TCZ_CHUNK_HDR + b0.data_off;
	size_t n = rc ? 0 : b1.data_off + b1.data_len - b0.data_off;
	if (rc == 0 && (from > vlen || n > vlen - from))
		rc = -EBADMSG; /* an index that does not fit its value */
	if (rc == 0)
		rc = grow(&r->part, &r->part_cap, n + bl);
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
	if (rc == -EBADMSG)
		return -ENOTSUP; /* the whole chunk tells what is wrong */
	if (rc)
		return rc;

	/* each block against its hash, then decoded: straight into dst when
	 * the read covers it, through the scratch after the bytes otherwise */
	const unsigned char *hashes = pre + plen;
	unsigned char *out = dst, *scratch = r->part + n;
	for (size_t i = i0; i <= i1; i++) {
		tcz_lossless_block b;
		if ((rc = tcz_lossless_block_at(pre, plen, i, &b, NULL)))
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
