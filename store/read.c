/* Read side: views, model loading, chunk verification and decoding, and
 * reading byte ranges of a model's files. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "codec/lossless.h"
#include "codec/quant.h"
#include "codec/tt.h"
#include "store/internal.h"

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
	if (magic != TCZ_CHUNK_MAGIC || p[4] > TCZ_CODEC_ZSTD ||
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

/* ---- views ------------------------------------------------------------- */

int tcz_snap_begin(tcz_store *s, tcz_snap **out)
{
	tcz_snap *sn = calloc(1, sizeof *sn);
	if (!sn)
		return -ENOMEM;
	sn->s = s;
	pthread_mutex_init(&sn->lock, NULL);
	int rc = tcz__txn_begin(s, MDB_RDONLY, &sn->txn);
	if (rc == 0) {
		rc = tcz__meta_get(s, sn->txn, "generation", &sn->gen);
		if (rc)
			tcz__txn_abort(s, sn->txn);
	}
	if (rc) {
		pthread_mutex_destroy(&sn->lock);
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
	tcz__txn_abort(sn->s, sn->txn);
	pthread_mutex_destroy(&sn->lock);
	free(sn);
}

uint64_t tcz_snap_generation(const tcz_snap *sn)
{
	return sn->gen;
}

void tcz_names_free(char **names, size_t count)
{
	for (size_t i = 0; names && i < count; i++)
		free(names[i]);
	free(names);
}

static int snap_list(tcz_snap *sn, char ***names, size_t *count)
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
			char **nv = realloc(v, cap * sizeof *v);
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

int tcz_snap_list(tcz_snap *sn, char ***names, size_t *count)
{
	pthread_mutex_lock(&sn->lock);
	int rc = snap_list(sn, names, count);
	pthread_mutex_unlock(&sn->lock);
	return rc;
}

static int snap_model_id(tcz_snap *sn, const char *name, uint64_t *id)
{
	MDB_val k = {strlen(name), (void *)name}, d;
	int rc = mdb_get(sn->txn, sn->s->models, &k, &d);
	if (rc)
		return tcz__mdb_err(rc);
	/* the id is the third field: magic, version, id */
	tcz_rbuf r;
	if (tcz_rec_open(&r, d.mv_data, d.mv_size))
		return -EIO;
	tcz_rb_u32(&r);
	tcz_rb_u32(&r);
	*id = tcz_rb_u64(&r);
	return r.err ? -EBADMSG : 0;
}

int tcz_snap_model_id(tcz_snap *sn, const char *name, uint64_t *id)
{
	pthread_mutex_lock(&sn->lock);
	int rc = snap_model_id(sn, name, id);
	pthread_mutex_unlock(&sn->lock);
	return rc;
}

/* Loads the records of table db under model id into an array, decoding
 * each with dec; the keys must be the dense indexes 0..count-1. */
static int load_indexed(tcz_snap *sn, MDB_dbi db, uint64_t id, uint32_t count,
			size_t elem, void *arr,
			int (*dec)(const void *, size_t, void *))
{
	MDB_cursor *c;
	unsigned char k0[12];
	tcz__key_id_idx(k0, id, 0);
	int rc = mdb_cursor_open(sn->txn, db, &c);
	if (rc)
		return tcz__mdb_err(rc);
	MDB_val k = {12, k0}, d;
	uint32_t i = 0;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	     rc == 0 && i < count; rc = mdb_cursor_get(c, &k, &d, MDB_NEXT), i++) {
		const unsigned char *kp = k.mv_data;
		if (k.mv_size != 12 || tcz_get_be64(kp) != id ||
		    tcz_get_be32(kp + 8) != i) {
			rc = -EBADMSG;
			break;
		}
		if ((rc = dec(d.mv_data, d.mv_size, (char *)arr + i * elem)))
			break;
	}
	mdb_cursor_close(c);
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

static int snap_model(tcz_snap *sn, const char *name, tcz_model **out)
{
	MDB_val k = {strlen(name), (void *)name}, d;
	int rc = mdb_get(sn->txn, sn->s->models, &k, &d);
	if (rc)
		return tcz__mdb_err(rc);
	tcz_model *m = calloc(1, sizeof *m);
	if (!m || !(m->name = strdup(name))) {
		free(m);
		return -ENOMEM;
	}
	rc = tcz__model_decode(d.mv_data, d.mv_size, m);
	if (rc == 0) {
		uint32_t nt = m->n_tensors, nb = m->n_blobs;
		m->tensors = calloc(nt ? nt : 1, sizeof *m->tensors);
		m->blobs = calloc(nb ? nb : 1, sizeof *m->blobs);
		if (!m->tensors || !m->blobs) {
			rc = -ENOMEM;
		} else {
			rc = load_indexed(sn, sn->s->tensors, m->id, nt,
					  sizeof *m->tensors, m->tensors,
					  dec_tensor);
			if (rc == 0)
				rc = load_indexed(sn, sn->s->aux, m->id, nb,
						  sizeof *m->blobs, m->blobs,
						  dec_blob);
		}
	}
	if (rc == 0)
		rc = tcz__model_check(m);
	if (rc) {
		if (!m->tensors)
			m->n_tensors = 0;
		if (!m->blobs)
			m->n_blobs = 0;
		tcz_model_free(m);
		if (rc == -EIO || rc == -EBADMSG)
			tcz__fail(rc, "model %s: %s record", name,
				  rc == -EIO ? "corrupt (checksum)"
					     : "malformed");
		return rc;
	}
	*out = m;
	return 0;
}

int tcz_snap_model(tcz_snap *sn, const char *name, tcz_model **out)
{
	pthread_mutex_lock(&sn->lock);
	int rc = snap_model(sn, name, out);
	pthread_mutex_unlock(&sn->lock);
	return rc;
}

static int snap_tt(tcz_snap *sn, const tcz_model *m, uint32_t t,
		   struct tcz_tt **out);

int tcz_snap_tt(tcz_snap *sn, const tcz_model *m, uint32_t t,
		struct tcz_tt **out)
{
	pthread_mutex_lock(&sn->lock);
	int rc = snap_tt(sn, m, t, out);
	pthread_mutex_unlock(&sn->lock);
	return rc;
}

static int snap_tt(tcz_snap *sn, const tcz_model *m, uint32_t t,
		   struct tcz_tt **out)
{
	const tcz_tensor *tn = &m->tensors[t];
	unsigned d = tn->tt_order;
	if (tn->codec != TCZ_CODEC_TT || d < 2 || d > TCZ_TT_MAX_ORDER)
		return -EINVAL;
	const float *cores[TCZ_TT_MAX_ORDER];
	float *copies[TCZ_TT_MAX_ORDER] = {0};
	size_t modes[TCZ_TT_MAX_ORDER], ranks[TCZ_TT_MAX_ORDER + 1];
	int rc = 0;
	for (unsigned k = 0; k <= d; k++)
		ranks[k] = (size_t)tn->tt_ranks[k];
	for (unsigned k = 0; k < d && rc == 0; k++) {
		unsigned char key[16];
		tcz__key_id_idx(key, m->id, t);
		tcz_be32(key + 12, k);
		MDB_val kv = {16, key}, dv;
		modes[k] = (size_t)tn->tt_modes[k];
		rc = mdb_get(sn->txn, sn->s->ttcores, &kv, &dv);
		if (rc) {
			rc = tcz__mdb_err(rc);
			break;
		}
		tcz_rbuf r;
		if (tcz_rec_open(&r, dv.mv_data, dv.mv_size)) {
			rc = -EIO;
			break;
		}
		uint64_t rl = tcz_rb_u32(&r), n = tcz_rb_u32(&r),
			 rr = tcz_rb_u32(&r);
		uint64_t cnt;
		if (rl != ranks[k] || n != modes[k] || rr != ranks[k + 1] ||
		    __builtin_mul_overflow(rl * n, rr, &cnt) ||
		    cnt != (r.len - r.off) / 4 || (r.len - r.off) % 4) {
			rc = -EBADMSG;
			break;
		}
		/* values in the map are only 1-aligned within the record */
		size_t bytes = (size_t)cnt * 4;
		copies[k] = malloc(bytes ? bytes : 1);
		if (!copies[k]) {
			rc = -ENOMEM;
			break;
		}
		memcpy(copies[k], tcz_rb_bytes(&r, bytes), bytes);
		cores[k] = copies[k];
	}
	if (rc == 0)
		rc = tcz_tt_from_cores(d, modes, ranks, cores, out);
	for (unsigned k = 0; k < d; k++)
		free(copies[k]);
	return rc == -EINVAL ? -EBADMSG : rc;
}

/* ---- decoding ---------------------------------------------------------- */

struct tcz_reader {
	tcz_lossless_ctx *lctx;
	ZSTD_DCtx *zctx;
	/* allocated on first use: a daemon has a reader per thread and most
	 * never decode quantized or TT data, nor read partial chunks */
	float *f32;         /* TCZ_CHUNK_MAX / 2 floats: a chunk as f32 */
	unsigned char *buf; /* one decoded chunk for partial reads */
	unsigned char *val; /* a stored chunk value, read from the file */
	size_t val_cap;
	struct tcz_tt *tt;  /* last TT used, for (tt_model, tt_tensor) */
	uint64_t tt_model;
	uint32_t tt_tensor;
};

int tcz_reader_create(tcz_reader **out)
{
	tcz_reader *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
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
	tcz_lossless_ctx_free(r->lctx);
	ZSTD_freeDCtx(r->zctx);
	tcz_tt_free(r->tt);
	free(r->f32);
	free(r->buf);
	free(r->val);
	free(r);
}

static int need_f32(tcz_reader *r)
{
	if (!r->f32)
		r->f32 = malloc((TCZ_CHUNK_MAX / 2) * sizeof(float));
	return r->f32 ? 0 : -ENOMEM;
}

/* Decodes a verified chunk value into dst[len] of dtype dt. */
static int decode_value(tcz_reader *r, const void *val, size_t vlen,
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
		if (!tcz_dtype_is_float(dt) || len % es || n > TCZ_CHUNK_MAX / 2)
			return -EBADMSG;
		int rc = need_f32(r);
		if (rc)
			return rc;
		rc = tcz_quant_decode(h.payload, h.plen, r->f32, n);
		if (rc)
			return rc == -EINVAL ? -EBADMSG : rc;
		return tcz_dtype_from_f32(dt, r->f32, n, dst);
	}
	case TCZ_CODEC_ZSTD: {
		size_t got = ZSTD_decompressDCtx(r->zctx, dst, len, h.payload,
						 h.plen);
		if (ZSTD_isError(got) || got != len)
			return -EBADMSG;
		return 0;
	}
	default:
		return -EBADMSG;
	}
}

/* Copies the value of chunk key into r->val and checks it against the key.
 * The value is read with pread() from the data file at its place in the
 * map rather than through the map: no page of it enters this process's
 * address space (a reader of a large store would otherwise hold every page
 * it touched), and the hash is checked on the very bytes decoded. */
static int copy_value(tcz_reader *r, tcz_snap *sn, const unsigned char *key,
		      size_t *vlen)
{
	MDB_val k = {TCZ_KEY_LEN, (void *)key}, d;
	int fd = -1;
	pthread_mutex_lock(&sn->lock);
	int rc = mdb_get(sn->txn, sn->s->chunks, &k, &d);
	pthread_mutex_unlock(&sn->lock);
	if (rc == 0)
		mdb_env_get_fd(sn->s->env, &fd);
	if (rc)
		return rc == MDB_NOTFOUND ? -EIO /* a record points at it */
					  : tcz__mdb_err(rc);
	if (d.mv_size > r->val_cap) {
		unsigned char *nv = realloc(r->val, d.mv_size);
		if (!nv)
			return -ENOMEM;
		r->val = nv;
		r->val_cap = d.mv_size;
	}
	int64_t off = fd >= 0 ? tcz__map_offset(sn->s, d.mv_data, d.mv_size) : -1;
	if (off >= 0) {
		for (size_t got = 0; got < d.mv_size;) {
			ssize_t n = pread(fd, r->val + got, d.mv_size - got,
					  off + (off_t)got);
			if (n <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				return -EIO;
			}
			got += (size_t)n;
		}
	} else {
		memcpy(r->val, d.mv_data, d.mv_size); /* not in the map */
	}
	unsigned char got[TCZ_KEY_LEN];
	tcz__chunk_key(r->val, d.mv_size, got);
	if (memcmp(got, key, TCZ_KEY_LEN) != 0)
		return -EIO;
	*vlen = d.mv_size;
	return 0;
}

static int read_keyed(tcz_reader *r, tcz_snap *sn,
		      const unsigned char *key, tcz_dtype dt, void *dst,
		      uint32_t len)
{
	size_t vlen;
	int rc = copy_value(r, sn, key, &vlen);
	if (rc)
		return rc;
	return decode_value(r, r->val, vlen, dt, dst, len);
}

int tcz_read_tensor_chunk(tcz_reader *r, tcz_snap *sn, const tcz_model *m,
			  uint32_t t, uint32_t ci, void *dst)
{
	if (t >= m->n_tensors)
		return -EINVAL;
	const tcz_tensor *tn = &m->tensors[t];
	if (ci >= tcz_tensor_chunk_count(tn))
		return -EINVAL;
	uint32_t len = tcz_tensor_chunk_len(tn, ci);
	if (tn->codec != TCZ_CODEC_TT)
		return read_keyed(r, sn, tn->chunks[ci], tn->dtype, dst, len);

	if (!r->tt || r->tt_model != m->id || r->tt_tensor != t) {
		tcz_tt_free(r->tt);
		r->tt = NULL;
		int rc = tcz_snap_tt(sn, m, t, &r->tt);
		if (rc)
			return rc;
		r->tt_model = m->id;
		r->tt_tensor = t;
	}
	size_t es = tcz_dtype_size(tn->dtype);
	size_t first = (size_t)ci * (tn->chunk_bytes / es), n = len / es;
	if (n > TCZ_CHUNK_MAX / 2)
		return -EBADMSG;
	int rc = need_f32(r);
	if (rc)
		return rc;
	rc = tcz_tt_reconstruct_range(r->tt, first, n, r->f32);
	if (rc)
		return rc;
	return tcz_dtype_from_f32(tn->dtype, r->f32, n, dst);
}

int tcz_read_blob_chunk(tcz_reader *r, tcz_snap *sn, const tcz_model *m,
			uint32_t b, uint32_t ci, void *dst)
{
	if (b >= m->n_blobs || ci >= m->blobs[b].n_chunks)
		return -EINVAL;
	const tcz_blob *bl = &m->blobs[b];
	uint64_t left = bl->length - (uint64_t)ci * bl->chunk_bytes;
	uint32_t len = left < bl->chunk_bytes ? (uint32_t)left : bl->chunk_bytes;
	return read_keyed(r, sn, bl->chunks[ci], TCZ_DT_U8, dst, len);
}

/* Index of the extent holding offset off (off < f->size). */
static uint32_t find_extent(const tcz_file *f, uint64_t off)
{
	uint32_t lo = 0, hi = f->n_extents;
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (f->extents[mid].offset <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

int tcz_read_file(tcz_reader *r, tcz_snap *sn, const tcz_model *m,
		  uint32_t f, uint64_t off, size_t len, void *buf,
		  size_t *got)
{
	*got = 0;
	if (f >= m->n_files)
		return -EINVAL;
	const tcz_file *fl = &m->files[f];
	if (off >= fl->size)
		return 0;
	if (len > fl->size - off)
		len = (size_t)(fl->size - off);
	unsigned char *out = buf;
	uint32_t e = find_extent(fl, off);
	while (len > 0) {
		/* zero-length extents (empty tensors) hold no bytes */
		while (off >= fl->extents[e].offset + fl->extents[e].length)
			e++;
		const tcz_extent *x = &fl->extents[e];
		uint64_t in = off - x->offset;
		uint32_t cb, clen, ci;
		if (x->kind == TCZ_EXT_TENSOR) {
			const tcz_tensor *tn = &m->tensors[x->index];
			cb = tn->chunk_bytes;
			ci = (uint32_t)(in / cb);
			clen = tcz_tensor_chunk_len(tn, ci);
		} else {
			const tcz_blob *bl = &m->blobs[x->index];
			cb = bl->chunk_bytes;
			ci = (uint32_t)(in / cb);
			uint64_t left = bl->length - (uint64_t)ci * cb;
			clen = left < cb ? (uint32_t)left : cb;
		}
		uint32_t coff = (uint32_t)(in - (uint64_t)ci * cb);
		size_t take = clen - coff < len ? clen - coff : len;
		/* whole chunks decode straight into the caller's buffer */
		unsigned char *dst = (coff == 0 && take == clen) ? out : r->buf;
		if (!dst && !(dst = r->buf = malloc(TCZ_CHUNK_MAX)))
			return -ENOMEM;
		int rc = x->kind == TCZ_EXT_TENSOR
				 ? tcz_read_tensor_chunk(r, sn, m, x->index, ci,
							 dst)
				 : tcz_read_blob_chunk(r, sn, m, x->index, ci,
						       dst);
		if (rc)
			return rc;
		if (dst != out)
			memcpy(out, r->buf + coff, take);
		out += take;
		off += take;
		len -= take;
		*got += take;
	}
	return 0;
}
