/* Read side: snapshots of the records, model loading, readers that fetch
 * values with pread in short transactions, chunk verification and
 * decoding. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "codec/blockq.h"
#include "codec/lossless.h"
#include "codec/quant.h"
#include "codec/tt.h"
#include "store/cache.h"
#include "store/internal.h"
#include "store/reader.h"

/* f32 scratch of a reader: a quantized chunk is decoded through it in
 * steps of this many values when its dtype is not f32 (64 KiB a reader:
 * every FUSE worker has one) */
#define F32_STEP 16384u

/* ---- chunks ------------------------------------------------------------ */

void tcz__chunk_key(const void *val, size_t len,
		    unsigned char key[TCZ_KEY_LEN])
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits(val, len));
	memcpy(key, c.digest, TCZ_KEY_LEN);
}

int tcz__chunk_parse(const void *val, size_t len, tcz_chunk_hdr *h)
{
	const unsigned char *p = val;
	if (len < TCZ_CHUNK_HDR)
		return -EBADMSG;
	uint32_t magic = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
			 (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	if (magic != TCZ_CHUNK_MAGIC || p[4] > TCZ_CODEC_BLOCKQ ||
	    p[5] >= TCZ_DT_COUNT || p[6] || p[7])
		return -EBADMSG;
	h->codec = (tcz_codec)p[4];
	h->dtype = (tcz_dtype)p[5];
	h->decoded_len = (uint32_t)p[8] | (uint32_t)p[9] << 8 |
			 (uint32_t)p[10] << 16 | (uint32_t)p[11] << 24;
	h->payload = p + TCZ_CHUNK_HDR;
	h->plen = len - TCZ_CHUNK_HDR;
	if (h->decoded_len > TCZ_CHUNK_MAX)
		return -EBADMSG;
	return 0;
}

int tcz_chunk_value(tcz_codec c, tcz_dtype dt, uint32_t decoded_len,
		    const void *payload, size_t plen, unsigned char **val,
		    size_t *vlen)
{
	unsigned char *v = malloc(TCZ_CHUNK_HDR + plen);
	if (!v)
		return -ENOMEM;
	uint32_t m = TCZ_CHUNK_MAGIC;
	for (int i = 0; i < 4; i++) {
		v[i] = (unsigned char)(m >> (8 * i));
		v[8 + i] = (unsigned char)(decoded_len >> (8 * i));
	}
	v[4] = (unsigned char)c;
	v[5] = (unsigned char)dt;
	v[6] = v[7] = 0;
	memcpy(v + TCZ_CHUNK_HDR, payload, plen);
	*val = v;
	*vlen = TCZ_CHUNK_HDR + plen;
	return 0;
}

/* ---- snapshots of the records ------------------------------------------ */

int tcz_snap_begin(tcz_store *s, tcz_snap **out)
{
	tcz_snap *sn = calloc(1, sizeof *sn);
	if (!sn)
		return -ENOMEM;
	sn->s = s;
	int rc = tcz__rtxn_begin(s, &sn->txn);
	if (rc) {
		free(sn);
		return rc;
	}
	*out = sn;
	return 0;
}

void tcz_snap_end(tcz_snap *sn)
{
	if (!sn)
		return;
	tcz__rtxn_end(sn->s, sn->txn, 0);
	free(sn);
}

int tcz_snap_generation(tcz_snap *sn, uint64_t *gen)
{
	return tcz__meta_get(sn->s, sn->txn, "generation", gen);
}

void tcz_names_free(char **names, size_t count)
{
	for (size_t i = 0; names && i < count; i++)
		free(names[i]);
	free(names);
}

int tcz_snap_list(tcz_snap *sn, char ***names, size_t *count)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(sn->txn, sn->s->models, &c);
	if (rc)
		return tcz__mdb_err(rc);
	char **v = NULL;
	size_t n = 0, cap = 0;
	MDB_val k, d;
	int err = 0;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			char **nv = realloc(v, cap * sizeof *nv);
			if (!nv) {
				err = -ENOMEM;
				break;
			}
			v = nv;
		}
		if (!(v[n] = strndup(k.mv_data, k.mv_size))) {
			err = -ENOMEM;
			break;
		}
		n++;
	}
	mdb_cursor_close(c);
	if (!err && rc != MDB_NOTFOUND)
		err = tcz__mdb_err(rc);
	if (err) {
		tcz_names_free(v, n);
		return err;
	}
	*names = v;
	*count = n;
	return 0;
}

int tcz_snap_model_id(tcz_snap *sn, const char *name, uint64_t *id)
{
	MDB_val k = {strlen(name), (void *)name}, d;
	int rc = mdb_get(sn->txn, sn->s->models, &k, &d);
	if (rc)
		return tcz__mdb_err(rc);
	tcz_rbuf r;
	if (tcz_rec_open(&r, d.mv_data, d.mv_size))
		return tcz__fail(-EIO, "model %s: its record is damaged "
				       "(checksum mismatch)",
				 name);
	return tcz__model_record_id(d.mv_data, d.mv_size, id);
}

int tcz_snap_model_ident(tcz_snap *sn, const char *name, uint64_t *id,
			 uint64_t *rev, uint64_t *iid)
{
	MDB_val k = {strlen(name), (void *)name}, d;
	int rc = mdb_get(sn->txn, sn->s->models, &k, &d);
	if (rc)
		return tcz__mdb_err(rc);
	return tcz__model_record_ident(d.mv_data, d.mv_size, id, rev, iid);
}

/* Loads the records of table db under model id into an array, decoding
 * each with dec; the keys must be the dense indexes 0..count-1. *bad
 * receives the index of a record that failed. */
static int load_indexed(MDB_txn *txn, MDB_dbi db, uint64_t id,
			uint32_t count, size_t elem, void *arr,
			int (*dec)(const void *, size_t, void *), uint32_t *bad)
{
	MDB_cursor *c;
	unsigned char k0[12];
	tcz__key_id_idx(k0, id, 0);
	int rc = mdb_cursor_open(txn, db, &c);
	if (rc)
		return tcz__mdb_err(rc);
	MDB_val k = {12, k0}, d;
	uint32_t i = 0;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	     rc == 0 && i < count; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT), i++) {
		const unsigned char *kp = k.mv_data;
		*bad = i;
		if (k.mv_size != 12 || tcz_get_be64(kp) != id ||
		    tcz_get_be32(kp + 8) != i) {
			rc = -EBADMSG;
			break;
		}
		if ((rc = dec(d.mv_data, d.mv_size, (char *)arr + i * elem)))
			break;
	}
	mdb_cursor_close(c);
	*bad = i;
	if (rc == MDB_NOTFOUND || (rc == 0 && i == count))
		rc = i == count ? 0 : -EBADMSG;
	else if (rc > 0)
		rc = tcz__mdb_err(rc);
	return rc;
}

static int dec_tensor(const void *p, size_t n, void *out)
{
	return tcz__tensor_decode(p, n, out);
}

static int dec_blob(const void *p, size_t n, void *out)
{
	return tcz__blob_decode(p, n, out);
}

int tcz__load_model(tcz_store *s, MDB_txn *txn, const char *name,
		    tcz_model **out, tcz_load_err *le)
{
	MDB_val k = {strlen(name), (void *)name}, d;
	int rc = mdb_get(txn, s->models, &k, &d);
	if (rc)
		return tcz__mdb_err(rc);
	tcz_model *m = calloc(1, sizeof *m);
	if (!m || !(m->name = strdup(name))) {
		free(m);
		return -ENOMEM;
	}
	const char *what = "model record";
	uint32_t bad = 0;
	rc = tcz__model_decode(d.mv_data, d.mv_size, m);
	if (rc == 0) {
		uint32_t nt = m->n_tensors, nb = m->n_blobs;
		m->tensors = calloc(nt ? nt : 1, sizeof *m->tensors);
		m->blobs = calloc(nb ? nb : 1, sizeof *m->blobs);
		if (!m->tensors || !m->blobs) {
			rc = -ENOMEM;
		} else {
			what = "tensor record";
			rc = load_indexed(txn, s->tensors, m->id, nt,
					  sizeof *m->tensors, m->tensors,
					  dec_tensor, &bad);
			if (rc == 0) {
				what = "blob record";
				rc = load_indexed(txn, s->aux, m->id, nb,
						  sizeof *m->blobs, m->blobs,
						  dec_blob, &bad);
			}
		}
	}
	if (rc == 0) {
		what = "file table";
		rc = tcz__model_check(m);
	}
	if (rc) {
		if (!m->tensors)
			m->n_tensors = 0;
		if (!m->blobs)
			m->n_blobs = 0;
		tcz_model_free(m);
		int indexed = strcmp(what, "tensor record") == 0 ||
			      strcmp(what, "blob record") == 0;
		if (le)
			*le = (tcz_load_err){what, indexed, bad};
		if (rc == -EIO || rc == -EBADMSG) {
			char idx[32] = "";
			if (indexed)
				snprintf(idx, sizeof idx, " %u", bad);
			tcz__fail(rc, "model %s: %s%s is %s", name, what, idx,
				  rc == -EIO ? "damaged (checksum mismatch)"
					     : "malformed");
		}
		return rc;
	}
	*out = m;
	return 0;
}

int tcz_snap_model(tcz_snap *sn, const char *name, tcz_model **out)
{
	return tcz__load_model(sn->s, sn->txn, name, out, NULL);
}

/* ---- readers ----------------------------------------------------------- */

int tcz_reader_create(tcz_store *s, tcz_reader **out)
{
	tcz_reader *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	r->s = s;
	r->lctx = tcz_lossless_ctx_create();
	r->zctx = ZSTD_createDCtx();
	if (!r->lctx || !r->zctx) {
		tcz_reader_free(r);
		return -ENOMEM;
	}
	*out = r;
	return 0;
}

void tcz_reader_free(tcz_reader *r)
{
	if (!r)
		return;
	if (r->txn) {
		/* a reset handle: abort frees it and its reader slot */
		mdb_txn_abort(r->txn);
	}
	tcz_lossless_ctx_free(r->lctx);
	tcz_blockq_ctx_free(r->bctx);
	ZSTD_freeDCtx(r->zctx);
	tcz_tt_free(r->tt);
	free(r->tt_mem);
	free(r->f32);
	free(r->val);
	free(r->memo);
	free(r->bidx);
	free(r->part);
	free(r);
}

void tcz_reader_set_cache(tcz_reader *r, struct tcz_cache *c)
{
	r->cache = c;
}

int tcz__reader_f32(tcz_reader *r, size_t n, float **out)
{
	if (n > r->f32_cap) {
		float *nf = realloc(r->f32, n * sizeof *nf);
		if (!nf)
			return -ENOMEM;
		r->f32 = nf;
		r->f32_cap = n;
	}
	*out = r->f32;
	return 0;
}

/* pread of n bytes at off, whole or -EIO. */
static int pread_all(int fd, void *dst, size_t n, uint64_t off)
{
	unsigned char *out = dst;
	for (size_t got = 0; got < n;) {
		ssize_t k = pread(fd, out + got, n - got, (off_t)(off + got));
		if (k <= 0) {
			if (k < 0 && errno == EINTR)
				continue;
			return -EIO;
		}
		got += (size_t)k;
	}
	return 0;
}

int tcz__fetch(tcz_reader *r, MDB_dbi db, const void *key, size_t klen,
	       const unsigned char **out, size_t *len)
{
	tcz_store *s = r->s;
	int rc = tcz__rtxn_begin(s, &r->txn);
	if (rc)
		return rc;
	MDB_val k = {klen, (void *)key}, d;
	rc = mdb_get(r->txn, db, &k, &d);
	if (rc == 0 && d.mv_size > r->val_cap) {
		size_t cap = d.mv_size + (d.mv_size >> 3);
		unsigned char *nv = realloc(r->val, cap);
		if (!nv)
			rc = ENOMEM;
		else {
			r->val = nv;
			r->val_cap = cap;
		}
	}
	int64_t off = -1;
	if (rc == 0 && (off = tcz__map_offset(s, d.mv_data, d.mv_size)) < 0)
		memcpy(r->val, d.mv_data, d.mv_size); /* not in the file map */
	/* The map is not touched again: map_lock goes before the I/O (a
	 * remap may run meanwhile), while the transaction stays open across
	 * the pread, keeping writers from reusing the value's pages until
	 * the copy is made. Ending a read transaction touches only the lock
	 * file's reader slot, never the map. */
	pthread_rwlock_unlock(&s->map_lock);
	if (rc == 0 && off >= 0)
		rc = pread_all(s->data_fd, r->val, d.mv_size, (uint64_t)off) ? EIO : 0;
	mdb_txn_reset(r->txn);
	if (rc)
		return rc == ENOMEM ? -ENOMEM : tcz__mdb_err(rc);
	*out = r->val;
	*len = r->val_len = d.mv_size;
	return 0;
}

const unsigned char *tcz__reader_value(const tcz_reader *r, size_t *len)
{
	*len = r->val_len;
	return r->val;
}

int tcz__decode_value(tcz_reader *r, const unsigned char *val, size_t vlen,
			tcz_dtype dt, void *dst, uint32_t len)
{
	tcz_chunk_hdr h;
	if (tcz__chunk_parse(val, vlen, &h) || h.decoded_len != len ||
	    h.dtype != dt)
		return -EBADMSG;
	switch (h.codec) {
	case TCZ_CODEC_LOSSLESS:
		return tcz_lossless_decode(r->lctx, h.payload, h.plen, dst, len);
	case TCZ_CODEC_QUANT: {
		size_t es = tcz_dtype_size(dt), n = len / es;
		if (!tcz_dtype_is_float(dt) || len % es)
			return -EBADMSG;
		tcz_quant_params qp;
		size_t qn;
		int rc = tcz_quant_peek(h.payload, h.plen, &qp, &qn);
		if (rc || qn != n)
			return -EBADMSG;
		if (dt == TCZ_DT_F32 && ((uintptr_t)dst & 3) == 0)
			return tcz_quant_decode(h.payload, h.plen, dst, n) ? -EBADMSG
									   : 0;
		/* other dtypes through a bounded f32 scratch, whole groups
		 * at a time */
		size_t step = qp.group_len >= F32_STEP
				      ? qp.group_len
				      : F32_STEP / qp.group_len * qp.group_len;
		float *f;
		if ((rc = tcz__reader_f32(r, step, &f)))
			return rc;
		for (size_t at = 0; at < n; at += step) {
			size_t cnt = n - at < step ? n - at : step;
			if (tcz_quant_decode_range(h.payload, h.plen, at, cnt, f))
				return -EBADMSG;
			tcz_dtype_from_f32(dt, f, cnt,
					   (unsigned char *)dst + at * es);
		}
		return 0;
	}
	case TCZ_CODEC_ZSTD: {
		size_t got = ZSTD_decompressDCtx(r->zctx, dst, len, h.payload,
						 h.plen);
		if (ZSTD_isError(got) || got != len)
			return -EBADMSG;
		return 0;
	}
	case TCZ_CODEC_BLOCKQ:
		if (!r->bctx && !(r->bctx = tcz_blockq_ctx_create()))
			return -ENOMEM;
		return tcz_blockq_decode(r->bctx, h.payload, h.plen, dst, len)
			       ? -EBADMSG
			       : 0;
	default:
		return -EBADMSG;
	}
}

int tcz__read_chunk(tcz_reader *r, const unsigned char *key, tcz_dtype dt,
		    void *dst, uint32_t len)
{
	const unsigned char *val;
	size_t vlen;
	int rc = tcz__fetch(r, r->s->chunks, key, TCZ_KEY_LEN, &val, &vlen);
	if (rc == -ENOENT)
		return -ENODATA; /* a record points at it: it is missing */
	if (rc)
		return rc;
	unsigned char got[TCZ_KEY_LEN];
	tcz__chunk_key(val, vlen, got);
	if (memcmp(got, key, TCZ_KEY_LEN) != 0)
		return -EIO;
	return tcz__decode_value(r, val, vlen, dt, dst, len);
}
