/* Tiering actions: see tiering.h. */
#include "store/tiering.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/lossless.h"
#include "codec/metrics.h"
#include "codec/quant.h"
#include "store/internal.h"
#include "store/view.h"

#define BATCH_BYTES (64ull << 20) /* tensor bytes per commit */
#define MIN_SIZE 4096u /* as the importer: smaller tensors stay exact */

void tcz_tiering_cfg_default(tcz_tiering_cfg *c)
{
	memset(c, 0, sizeof *c);
	c->th = TCZ_TIER_THRESHOLDS_DEFAULT;
	c->now = tcz_store_now();
	c->warm_bits = 7;
	c->dense_level = TCZ_LOSSLESS_LEVEL_DENSE;
}

tcz_tier tcz_tiering_tier(const tcz_access *a, const tcz_tiering_cfg *c)
{
	if (a->pinned >= 0 && a->pinned <= TCZ_TIER_COLD)
		return (tcz_tier)a->pinned;
	return tcz_tier_of_score(tcz_tier_score(a->reads, a->last_access, c->now),
				 &c->th);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct work {
	tcz_store *s;
	tcz_reader *r;
	tcz_mview *v;
	const tcz_model *m;
	const tcz_tiering_cfg *c;
	tcz_lossless_ctx *lctx;
	unsigned char *chunk; /* a source chunk as stored: decoded */
	unsigned char *val;   /* a stored chunk value (copy) */
	unsigned char *enc;   /* an encoded payload */
	size_t enc_cap;
	unsigned char *dec;   /* values back in the tensor's dtype */
	float *fa, *fb;       /* f32 scratch */
	unsigned char *memo;  /* tensor_bytes: the last source chunk */
	uint32_t memo_t, memo_c;
	int memo_ok;
	uint64_t done;        /* bytes processed (throttle) */
	double t0;
} work;

static int stopped(const work *w)
{
	return w->c->stop && *w->c->stop;
}

/* Keeps the work under the configured rate. */
static void throttle(work *w, uint64_t bytes)
{
	w->done += bytes;
	if (!w->c->io_bytes_s)
		return;
	double want = (double)w->done / (double)w->c->io_bytes_s;
	double late = want - (now_s() - w->t0);
	if (late > 0) {
		struct timespec ts = {(time_t)late,
				      (long)((late - (double)(time_t)late) * 1e9)};
		nanosleep(&ts, NULL);
	}
}

/* Bytes [off, off+len) of tensor t in its dtype, through its chunks. */
static int tensor_bytes(work *w, uint32_t t, uint64_t off, uint32_t len,
			unsigned char *dst)
{
	const tcz_tensor *tn = &w->m->tensors[t];
	while (len) {
		uint32_t ci = (uint32_t)(off / tn->chunk_bytes);
		uint32_t co = (uint32_t)(off % tn->chunk_bytes);
		if (!(w->memo_ok && w->memo_t == t && w->memo_c == ci)) {
			tcz_src s = {TCZ_SRC_TENSOR, t, 0, 0}, x;
			int rc = tcz_view_src_next(w->v, &s, ci, &x);
			if (rc == 0)
				rc = tcz_view_decode(w->r, w->v, &x, w->memo);
			w->memo_ok = rc == 0;
			if (rc)
				return rc == -ENOENT ? -EIO : rc;
			w->memo_t = t;
			w->memo_c = ci;
		}
		uint32_t have = tcz_tensor_chunk_len(tn, ci) - co;
		uint32_t take = have < len ? have : len;
		memcpy(dst, w->memo + co, take);
		dst += take;
		off += take;
		len -= take;
	}
	return 0;
}

static int put(tcz_import_tx *tx, tcz_codec codec, tcz_dtype dt, uint32_t len,
	       const void *payload, size_t plen, unsigned char key[TCZ_KEY_LEN])
{
	unsigned char *val;
	size_t vlen;
	int rc = tcz_chunk_value(codec, dt, len, payload, plen, &val, &vlen);
	if (rc == 0)
		rc = tcz_import_put_chunk(tx, val, vlen, key);
	return rc;
}

/* Encodes len bytes at src at the dense level into w->enc (*plen). */
static int dense_encode(work *w, const tcz_tensor *tn, const unsigned char *src,
			uint32_t len, size_t *plen)
{
	return tcz_lossless_encode(w->lctx, tn->dtype, src, len,
				   w->c->dense_level, w->enc, w->enc_cap, plen);
}

/* w->enc (plen bytes) decoded and compared with src before it is kept. */
static int dense_verify(work *w, const tcz_tensor *tn, uint32_t ci,
			const unsigned char *src, uint32_t len, size_t plen)
{
	int rc = tcz_lossless_decode(w->lctx, w->enc, plen, w->dec, len);
	if (rc || memcmp(w->dec, src, len) != 0)
		return tcz__fail(-EIO, "tensor '%s' chunk %u: the dense "
				       "encoding does not decode to the same "
				       "bytes",
				 tn->name, ci);
	return 0;
}

/* Cost, same chunks: every chunk of tensor t at the dense level; a chunk
 * that does not get smaller is kept as it is (its value put again: the
 * new record references it too). out is the new record. */
static int dense_same_chunks(work *w, tcz_import_tx *tx, uint32_t t,
			     tcz_tensor *out)
{
	const tcz_tensor *tn = &w->m->tensors[t];
	uint64_t stored = 0;
	int rc = 0;
	for (uint32_t ci = 0; rc == 0 && ci < tn->n_chunks; ci++) {
		if (stopped(w))
			return -ECANCELED;
		uint32_t len = tcz_tensor_chunk_len(tn, ci);
		rc = tcz__read_chunk(w->r, tn->chunks[ci], tn->dtype, w->chunk, len);
		if (rc)
			break;
		size_t oldlen;
		const unsigned char *old = tcz__reader_value(w->r, &oldlen);
		memcpy(w->val, old, oldlen);
		size_t plen;
		if ((rc = dense_encode(w, tn, w->chunk, len, &plen)))
			break;
		if (plen + TCZ_CHUNK_HDR < oldlen) {
			if ((rc = dense_verify(w, tn, ci, w->chunk, len, plen)))
				break;
			rc = put(tx, TCZ_CODEC_LOSSLESS, tn->dtype, len, w->enc,
				 plen, out->chunks[ci]);
			stored += plen + TCZ_CHUNK_HDR;
		} else {
			unsigned char *v = malloc(oldlen);
			if (!v) {
				rc = -ENOMEM;
				break;
			}
			memcpy(v, w->val, oldlen);
			rc = tcz_import_put_chunk(tx, v, oldlen, out->chunks[ci]);
			stored += oldlen;
		}
		throttle(w, len);
	}
	out->stored_bytes = stored;
	return rc;
}

/* Cost, longest chunks: tensor t cut again into chunks of cb bytes
 * (TCZ_CHUNK_MAX) at the dense level. Each stored chunk is an LMDB value
 * on overflow pages of its own, whose last page is half empty on
 * average, so fewer, longer chunks hold the same bytes in fewer pages
 * (a 64 MiB BF16 model: 4.0 % of page overhead at 128 KiB chunks, 1.2 %
 * at 1 MiB), while the coding is as dense as before: the planes' blocks
 * and Huffman tables keep their sizes, and so a small read of a cold
 * tensor decodes no more than before (a block, not the chunk). */
static int dense_rechunk(work *w, tcz_import_tx *tx, uint32_t t,
			 uint32_t cb, tcz_tensor *out)
{
	const tcz_tensor *tn = &w->m->tensors[t];
	uint64_t nchunks = (tn->nbytes + cb - 1) / cb;
	unsigned char(*keys)[TCZ_KEY_LEN] = calloc(nchunks, TCZ_KEY_LEN);
	if (!keys)
		return -ENOMEM;
	free(out->chunks);
	out->chunks = keys;
	out->chunk_bytes = cb;
	out->n_chunks = (uint32_t)nchunks;
	uint64_t stored = 0;
	int rc = 0;
	for (uint64_t ci = 0; rc == 0 && ci < nchunks; ci++) {
		if (stopped(w))
			return -ECANCELED;
		uint64_t off = ci * cb;
		uint32_t len = (uint32_t)(tn->nbytes - off < cb ? tn->nbytes - off
								: cb);
		size_t plen;
		rc = tensor_bytes(w, t, off, len, w->chunk);
		if (rc == 0)
			rc = dense_encode(w, tn, w->chunk, len, &plen);
		if (rc == 0)
			rc = dense_verify(w, tn, (uint32_t)ci, w->chunk, len, plen);
		if (rc == 0)
			rc = put(tx, TCZ_CODEC_LOSSLESS, tn->dtype, len, w->enc, plen,
				 keys[ci]);
		if (rc == 0)
			stored += plen + TCZ_CHUNK_HDR;
		throttle(w, len);
	}
	out->stored_bytes = stored;
	return rc;
}

/* Cost: tensor t at the dense level, in the longest chunks when it has
 * several shorter ones, else in its own. out is the new record. */
static int dense_one(work *w, tcz_import_tx *tx, uint32_t t, tcz_tensor *out)
{
	const tcz_tensor *tn = &w->m->tensors[t];
	int rc = tcz__tensor_copy(out, tn);
	if (rc)
		return rc;
	size_t es = tcz_dtype_size(tn->dtype);
	uint32_t cb = (uint32_t)(TCZ_CHUNK_MAX / es * es);
	/* GGUF tensors keep theirs: chunks hold whole ggml blocks */
	if (tn->n_chunks > 1 && tn->chunk_bytes < cb && !tn->qtype)
		rc = dense_rechunk(w, tx, t, cb, out);
	else
		rc = dense_same_chunks(w, tx, t, out);
	out->level = (uint32_t)w->c->dense_level;
	return rc;
}

static uint32_t quant_chunk_bytes(tcz_dtype dt, uint32_t group)
{
	size_t es = tcz_dtype_size(dt);
	return (uint32_t)(TCZ_CHUNK_MAX / es / group * group * es);
}

/* Quantizes tensor t at bits: measures the error against its current
 * values (and, in emit, stores the chunks into out). err_cur: against
 * the current values; *size the stored bytes. */
static int quant_pass(work *w, tcz_import_tx *tx, uint32_t t, unsigned bits,
		      tcz_error *err_cur, uint64_t *size, tcz_tensor *out)
{
	const tcz_tensor *tn = &w->m->tensors[t];
	tcz_quant_params qp = {bits, TCZ_QUANT_GROUP_DEFAULT, TCZ_QUANT_V2};
	qp.group_len = tcz_quant_group(&qp); /* the record says which */
	size_t es = tcz_dtype_size(tn->dtype);
	uint32_t cb = quant_chunk_bytes(tn->dtype, qp.group_len);
	uint64_t nchunks = tn->nbytes ? (tn->nbytes + cb - 1) / cb : 0;
	if (nchunks > UINT32_MAX)
		return -EFBIG;
	tcz_error_acc acc;
	tcz_error_acc_init(&acc);
	uint64_t stored = 0;
	int rc = 0;
	if (out) {
		out->codec = TCZ_CODEC_QUANT;
		out->bits = bits;
		out->group_len = qp.group_len;
		out->chunk_bytes = cb;
		out->n_chunks = (uint32_t)nchunks;
		free(out->chunks);
		out->chunks = calloc(nchunks ? nchunks : 1, TCZ_KEY_LEN);
		if (!out->chunks)
			return -ENOMEM;
	}
	for (uint64_t ci = 0; ci < nchunks && rc == 0; ci++) {
		if (stopped(w))
			return -ECANCELED;
		uint64_t off = ci * cb;
		uint32_t len = (uint32_t)(tn->nbytes - off < cb ? tn->nbytes - off
								: cb);
		size_t n = len / es, plen;
		rc = tensor_bytes(w, t, off, len, w->chunk);
		if (rc == 0)
			rc = tcz_dtype_to_f32(tn->dtype, w->chunk, n, w->fa);
		if (rc == 0)
			rc = tcz_quant_encode(w->fa, n, &qp, w->enc, w->enc_cap, &plen);
		if (rc == 0)
			rc = tcz_quant_decode(w->enc, plen, w->fb, n);
		if (rc)
			break;
		tcz_dtype_from_f32(tn->dtype, w->fb, n, w->dec);
		tcz_error_acc_add(&acc, tn->dtype, w->chunk, w->dec, n);
		stored += plen + TCZ_CHUNK_HDR;
		if (out)
			rc = put(tx, TCZ_CODEC_QUANT, tn->dtype, len, w->enc, plen,
				 out->chunks[ci]);
		throttle(w, len);
	}
	if (rc)
		return rc == -EDOM ? -EDOM : rc;
	if (tcz_error_acc_finish(&acc, err_cur))
		return -EDOM;
	*size = stored;
	return 0;
}

/* Precision: the narrowest width from want up whose error against the
 * imported values (exact from lossless, a bound from quantized values)
 * is within the model's bound and whose size beats the current one.
 * Returns 1 with out filled when it re-encoded, 0 when it kept. */
static int requant_one(work *w, tcz_import_tx *tx, uint32_t t, unsigned want,
		       tcz_tensor *out)
{
	const tcz_tensor *tn = &w->m->tensors[t];
	double bound = w->m->policy_max_error;
	unsigned top = tn->codec == TCZ_CODEC_QUANT ? tn->bits - 1
						   : TCZ_QUANT_BITS_MAX;
	int exact = tn->codec == TCZ_CODEC_LOSSLESS;
	for (unsigned b = want; b <= top; b++) {
		tcz_error e;
		uint64_t size;
		int rc = quant_pass(w, tx, t, b, &e, &size, NULL);
		if (rc == -EDOM)
			return 0; /* NaN/inf: stays as it is */
		if (rc)
			return rc;
		double rel = e.rel_fro, mabs = e.max_abs;
		if (!exact) {
			/* ||W - W'|| <= ||W - Wq|| + ||Wq - W'||, and
			 * ||W|| >= ||Wq|| / (1 + rel(Wq)) */
			rel = tn->rel_error + (1 + tn->rel_error) * e.rel_fro;
			mabs = tn->max_abs + e.max_abs;
		}
		if (!(rel <= bound) || size >= tn->stored_bytes)
			continue;
		if ((rc = tcz__tensor_copy(out, tn)))
			return rc;
		if ((rc = quant_pass(w, tx, t, b, &e, &size, out)))
			return rc;
		out->stored_bytes = size;
		out->rel_error = exact ? e.rel_fro : rel;
		out->max_abs = exact ? e.max_abs : mabs;
		out->tflags = exact ? (tn->tflags & ~TCZ_TENSOR_ERR_BOUND)
				    : (tn->tflags | TCZ_TENSOR_ERR_BOUND);
		out->gen = tn->gen + 1;
		out->mtime = w->c->now;
		return 1;
	}
	return 0;
}

static void work_free(work *w)
{
	tcz_lossless_ctx_free(w->lctx);
	free(w->chunk);
	free(w->val);
	free(w->enc);
	free(w->dec);
	free(w->fa);
	free(w->fb);
	free(w->memo);
}

static int work_init(work *w)
{
	size_t qb = 0; /* the widest blob any width makes for a chunk */
	for (unsigned b = TCZ_QUANT_BITS_MIN; b <= TCZ_QUANT_BITS_MAX; b++) {
		tcz_quant_params qp = {b, TCZ_QUANT_GROUP_DEFAULT, TCZ_QUANT_V2};
		size_t x = tcz_quant_bound(TCZ_CHUNK_MAX / 2, &qp);
		qb = x > qb ? x : qb;
	}
	size_t lb = tcz_lossless_bound(TCZ_CHUNK_MAX);
	w->enc_cap = qb > lb ? qb : lb;
	w->lctx = tcz_lossless_ctx_create();
	w->chunk = malloc(TCZ_CHUNK_MAX);
	w->val = malloc(TCZ_CHUNK_MAX + w->enc_cap + 64);
	w->enc = malloc(w->enc_cap);
	w->dec = malloc(TCZ_CHUNK_MAX);
	w->fa = malloc(TCZ_CHUNK_MAX / 2 * sizeof(float));
	w->fb = malloc(TCZ_CHUNK_MAX / 2 * sizeof(float));
	w->memo = malloc(TCZ_CHUNK_MAX);
	w->t0 = now_s();
	if (!w->lctx || !w->chunk || !w->val || !w->enc || !w->dec || !w->fa ||
	    !w->fb || !w->memo)
		return -ENOMEM;
	return 0;
}

/* Whether tensor t is bytes of some file of m. Tensors that are not
 * (ONNX values decoded from varints: the file keeps its own bytes) only
 * feed layers/, and re-quantizing them would make the two disagree. */
static int in_a_file(const tcz_model *m, uint32_t t)
{
	for (uint32_t f = 0; f < m->n_files; f++)
		for (uint32_t e = 0; e < m->files[f].n_extents; e++)
			if (m->files[f].extents[e].kind == TCZ_EXT_TENSOR &&
			    m->files[f].extents[e].index == t)
				return 1;
	return 0;
}

/* What tensor t of m should become: 0 nothing, 1 dense, 2 re-quantize
 * (*bits the width wanted). */
static int decide(const tcz_model *m, uint32_t t, tcz_tier tier,
		  const tcz_tiering_cfg *c, unsigned *bits)
{
	const tcz_tensor *tn = &m->tensors[t];
	if (tn->nbytes == 0 || tn->codec == TCZ_CODEC_TT)
		return 0;
	if (m->policy == TCZ_POLICY_COST)
		return tier == TCZ_TIER_COLD && tn->codec == TCZ_CODEC_LOSSLESS &&
		       (int)tn->level < c->dense_level;
	if (tier == TCZ_TIER_HOT || !in_a_file(m, t) ||
	    !tcz__lossy_by_default(tn->name, tn->dtype, tn->ndim, tn->shape,
				   tn->numel, MIN_SIZE))
		return 0;
	*bits = tier == TCZ_TIER_COLD ? TCZ_QUANT_BITS_MIN : c->warm_bits;
	if (tn->codec == TCZ_CODEC_QUANT && tn->bits <= *bits)
		return 0; /* never back up */
	return 2;
}

int tcz_tiering_apply(tcz_store *s, const char *name, const tcz_access *acc,
		      const tcz_tiering_cfg *c, tcz_tiering_report *rep)
{
	work w = {0};
	w.s = s;
	w.c = c;
	int rc = work_init(&w);
	tcz_access *own = NULL;
	if (rc == 0)
		rc = tcz_reader_create(s, &w.r);
	uint32_t next = 0, total = 0;
	while (rc == 0) {
		if ((rc = tcz_mview_open(s, name, &w.v)))
			break;
		w.m = tcz_mview_model(w.v);
		w.memo_ok = 0;
		total = w.m->n_tensors;
		if (!acc && !own) {
			/* the stored statistics, once */
			own = calloc(total ? total : 1, sizeof *own);
			tcz_snap *sn = NULL;
			rc = own ? tcz_snap_begin(s, &sn) : -ENOMEM;
			if (rc == 0) {
				int r = tcz_snap_access(sn, w.m->id, total, own);
				if (r && r != -EIO)
					rc = r; /* damaged: zeros */
			}
			tcz_snap_end(sn);
			if (rc)
				break;
		}
		const tcz_access *a = acc ? acc : own;
		uint32_t *idx = calloc(total ? total : 1, sizeof *idx);
		tcz_tensor *rec = calloc(total ? total : 1, sizeof *rec);
		uint32_t n = 0;
		uint64_t batch = 0;
		int bytes_changed = 0;
		tcz_import_tx *tx = NULL;
		if (!idx || !rec)
			rc = -ENOMEM;
		for (; rc == 0 && next < total && batch < BATCH_BYTES; next++) {
			unsigned bits = 0;
			int what = decide(w.m, next, tcz_tiering_tier(&a[next], c), c,
					  &bits);
			if (!what)
				continue;
			if (!tx && (rc = tcz_reencode_begin(s, w.m, &tx)))
				break;
			const tcz_tensor *tn = &w.m->tensors[next];
			if (what == 1) {
				rc = dense_one(&w, tx, next, &rec[n]);
				if (rc == 0 && rep) {
					rep->dense++;
					rep->before += tn->stored_bytes;
					rep->after += rec[n].stored_bytes;
				}
				if (rc == 0)
					idx[n++] = next;
				else
					tcz__tensor_clear(&rec[n]);
			} else {
				rc = requant_one(&w, tx, next, bits, &rec[n]);
				if (rc == 1) {
					if (rep) {
						rep->requant++;
						rep->before += tn->stored_bytes;
						rep->after += rec[n].stored_bytes;
					}
					idx[n++] = next;
					bytes_changed = 1;
					rc = 0;
				} else {
					tcz__tensor_clear(&rec[n]);
					if (rc == 0 && rep)
						rep->kept++;
				}
			}
			batch += tn->nbytes;
			if (c->progress)
				c->progress(c->ud, next + 1, total, w.done);
		}
		if (rc == 0 && tx && n) {
			rc = tcz_reencode_commit(tx, n, idx, rec, bytes_changed);
			if (rc == 0 && rep)
				rep->commits++;
		} else if (tx) {
			tcz_import_abort(tx);
		}
		for (uint32_t i = 0; i < n; i++)
			tcz__tensor_clear(&rec[i]);
		free(idx);
		free(rec);
		tcz_mview_put(w.v);
		w.v = NULL;
		if (next >= total)
			break;
	}
	if (rc == 0 && c->progress)
		c->progress(c->ud, total, total, w.done);
	free(own);
	tcz_reader_free(w.r);
	work_free(&w);
	return rc;
}
