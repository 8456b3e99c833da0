/* The import engine: per-tensor encoding choice, parallel encoding, one
 * writer thread feeding the store, progress. */
#include "store/import.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zstd.h>

#include "codec/blockq.h"
#include "codec/ggml.h"
#include "codec/lossless.h"
#include "codec/metrics.h"
#include "codec/quant.h"
#include "codec/tt.h"
#include "store/internal.h"
#include "store/source.h"

#define BLOB_LEVEL 12 /* aux files and headers: small, read rarely */
#define TT_MAX_NUMEL (64ull << 20) /* TT needs the whole tensor as f32 */

static volatile sig_atomic_t cancelled;

void tcz_import_cancel(void)
{
	cancelled = 1;
}

void tcz_import_opts_default(tcz_import_opts *o)
{
	memset(o, 0, sizeof *o);
	o->profile = TCZ_PROFILE_LOSSLESS;
	o->group_len = TCZ_QUANT_GROUP_DEFAULT;
	o->bits = 8;
	o->tt_eps = 1e-2;
	o->min_size = 4096;
	o->level = TCZ_LOSSLESS_LEVEL_DEFAULT;
	/* Lossless chunks decode on their own, so a random read pays for
	 * the whole chunk it lands in. Measured on retsim.bf16 and a
	 * generated BF16 model (docs/PERFORMANCE.md): 128 KiB chunks lose
	 * 0.03 % of the ratio of 1 MiB ones and decode in a ninth of the
	 * time (55 us instead of 470-620 us, one thread); 64 KiB lose 0.1 %. */
	o->chunk_kib = 128;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the queue from encoders to the writer ---------------------------- */

typedef struct qitem {
	int is_core;
	uint32_t t, idx; /* tensor, chunk or core index */
	unsigned char *val;
	size_t vlen;
	uint64_t rl, n, rr; /* core shape */
	float *core;
	uint64_t decoded; /* source bytes this item accounts for */
} qitem;

typedef struct job {
	/* read-only while workers run */
	const src_set *src;
	const tcz_import_opts *o;
	tcz_model *m;
	regex_t inc, exc;
	int has_inc, has_exc;

	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t not_full, not_empty;
	qitem *q;
	size_t qcap, qhead, qlen;
	uint32_t next_tensor;
	unsigned running; /* workers not yet finished */
	int err;
	char msg[512];
	uint32_t tensors_done;
	uint32_t notes;
} job;

static void job_fail(job *j, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void job_fail(job *j, int rc, const char *fmt, ...)
{
	pthread_mutex_lock(&j->lock);
	if (!j->err) {
		j->err = rc;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(j->msg, sizeof j->msg, fmt, ap);
		va_end(ap);
	}
	pthread_cond_broadcast(&j->not_full);
	pthread_cond_broadcast(&j->not_empty);
	pthread_mutex_unlock(&j->lock);
}

/* Waits on cond for at most 100 ms: the cancel flag is set from a signal
 * handler, which cannot signal a condition variable. */
static void wait_a_while(pthread_cond_t *cond, pthread_mutex_t *lock)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 100000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cond, lock, &ts);
}

/* Hands an item to the writer; waits while the queue is full. */
static int push(job *j, qitem *it)
{
	pthread_mutex_lock(&j->lock);
	while (j->qlen == j->qcap && !j->err && !cancelled)
		wait_a_while(&j->not_full, &j->lock);
	int rc = j->err ? j->err : cancelled ? -EINTR : 0;
	if (rc == 0) {
		j->q[(j->qhead + j->qlen) % j->qcap] = *it;
		j->qlen++;
		pthread_cond_signal(&j->not_empty);
	}
	pthread_mutex_unlock(&j->lock);
	if (rc) {
		free(it->val);
		free(it->core);
	}
	return rc;
}

/* ---- per-thread encoding state ---------------------------------------- */

typedef struct enc {
	tcz_lossless_ctx *lctx;
	tcz_blockq_ctx *bctx; /* made on first use */
	float *a, *b;       /* a chunk as f32: source and decoded */
	unsigned char *out; /* an encoded chunk */
	size_t out_cap;
	unsigned char *dec; /* a decoded chunk in the original dtype */
} enc;

static void enc_free(enc *e)
{
	tcz_lossless_ctx_free(e->lctx);
	tcz_blockq_ctx_free(e->bctx);
	free(e->a);
	free(e->b);
	free(e->out);
	free(e->dec);
	memset(e, 0, sizeof *e);
}

static int enc_init(enc *e, uint32_t group_len)
{
	memset(e, 0, sizeof *e);
	size_t qb = 0; /* the widest blob any width makes for a chunk */
	for (unsigned b = TCZ_QUANT_BITS_MIN; b <= TCZ_QUANT_BITS_MAX; b++) {
		tcz_quant_params qp = {b, group_len, TCZ_QUANT_V2};
		size_t x = tcz_quant_bound(TCZ_CHUNK_MAX / 2, &qp);
		qb = x > qb ? x : qb;
	}
	size_t lb = tcz_lossless_bound(TCZ_CHUNK_MAX);
	size_t zb = ZSTD_compressBound(TCZ_CHUNK_MAX);
	e->out_cap = qb > lb ? qb : lb;
	if (zb > e->out_cap)
		e->out_cap = zb;
	e->lctx = tcz_lossless_ctx_create();
	e->a = malloc(TCZ_CHUNK_MAX / 2 * sizeof(float));
	e->b = malloc(TCZ_CHUNK_MAX / 2 * sizeof(float));
	e->out = malloc(e->out_cap);
	e->dec = malloc(TCZ_CHUNK_MAX);
	if (!e->lctx || !e->a || !e->b || !e->out || !e->dec) {
		enc_free(e);
		return -ENOMEM;
	}
	return 0;
}

static int emit_chunk(job *j, uint32_t t, uint32_t ci, tcz_codec c,
		      tcz_dtype dt, uint32_t dlen, const void *payload,
		      size_t plen)
{
	qitem it = {0};
	int rc = tcz_chunk_value(c, dt, dlen, payload, plen, &it.val, &it.vlen);
	if (rc)
		return rc;
	it.t = t;
	it.idx = ci;
	it.decoded = dlen;
	return push(j, &it);
}

/* ---- the codecs, chunk by chunk ----------------------------------------- */

static uint32_t lossless_chunk_bytes(const tcz_import_opts *o, tcz_dtype dt)
{
	size_t es = tcz_dtype_size(dt);
	return (uint32_t)(((size_t)o->chunk_kib << 10) / es * es);
}

static uint32_t quant_chunk_bytes(tcz_dtype dt, uint32_t group)
{
	size_t es = tcz_dtype_size(dt);
	size_t elems = TCZ_CHUNK_MAX / es / group * group;
	return (uint32_t)(elems * es);
}

static int alloc_chunks(tcz_tensor *tn)
{
	uint64_t n = tn->nbytes ? (tn->nbytes + tn->chunk_bytes - 1) /
					  tn->chunk_bytes
				: 0;
	if (n > UINT32_MAX)
		return -EFBIG;
	tn->n_chunks = (uint32_t)n;
	tn->chunks = calloc(n ? n : 1, TCZ_KEY_LEN);
	return tn->chunks ? 0 : -ENOMEM;
}

/* GGUF block types: whole blocks per chunk, coded field by field. */
static int encode_blockq(job *j, enc *e, uint32_t t, const src_tensor *st)
{
	tcz_tensor *tn = &j->m->tensors[t];
	tcz_ggml_info gi;
	int rc = tcz_ggml_type(st->qtype - 1, &gi);
	if (rc)
		return rc;
	tn->codec = TCZ_CODEC_BLOCKQ;
	tn->level = (uint32_t)j->o->level;
	tn->chunk_bytes = TCZ_CHUNK_MAX / gi.block_bytes * gi.block_bytes;
	tn->rel_error = tn->max_abs = 0;
	size_t bound = tcz_blockq_bound(st->qtype - 1,
					tn->chunk_bytes / gi.block_bytes);
	if (bound > e->out_cap) {
		unsigned char *o = realloc(e->out, bound);
		if (!o)
			return -ENOMEM;
		e->out = o;
		e->out_cap = bound;
	}
	if (!e->bctx && !(e->bctx = tcz_blockq_ctx_create()))
		return -ENOMEM;
	if ((rc = alloc_chunks(tn)) != 0)
		return rc;
	uint64_t stored = 0;
	for (uint32_t ci = 0; ci < tn->n_chunks && rc == 0; ci++) {
		uint32_t len = tcz_tensor_chunk_len(tn, ci);
		size_t plen;
		rc = tcz_blockq_encode(e->bctx, st->qtype - 1,
				       st->data + (uint64_t)ci * tn->chunk_bytes,
				       len / gi.block_bytes, j->o->level, e->out,
				       e->out_cap, &plen);
		if (rc == 0)
			rc = emit_chunk(j, t, ci, TCZ_CODEC_BLOCKQ, TCZ_DT_U8, len,
					e->out, plen);
		stored += plen + 12;
	}
	tn->stored_bytes = stored;
	return rc;
}

static int encode_lossless(job *j, enc *e, uint32_t t, const src_tensor *st)
{
	if (st->qtype)
		return encode_blockq(j, e, t, st);
	tcz_tensor *tn = &j->m->tensors[t];
	tn->codec = TCZ_CODEC_LOSSLESS;
	tn->level = (uint32_t)j->o->level;
	tn->chunk_bytes = lossless_chunk_bytes(j->o, st->dtype);
	tn->rel_error = tn->max_abs = 0;
	int rc = alloc_chunks(tn);
	uint64_t stored = 0;
	for (uint32_t ci = 0; ci < tn->n_chunks && rc == 0; ci++) {
		uint32_t len = tcz_tensor_chunk_len(tn, ci);
		size_t plen;
		rc = tcz_lossless_encode(e->lctx, st->dtype,
					 st->data + (uint64_t)ci * tn->chunk_bytes,
					 len, j->o->level, e->out, e->out_cap,
					 &plen);
		if (rc == 0)
			rc = emit_chunk(j, t, ci, TCZ_CODEC_LOSSLESS, st->dtype,
					len, e->out, plen);
		stored += plen + 12;
	}
	tn->stored_bytes = stored;
	return rc;
}

/* Quantizes at `bits`, measuring the error in the original dtype; emits
 * the chunks when emit is set, else only measures. */
static int quant_pass(job *j, enc *e, uint32_t t, const src_tensor *st,
		      unsigned bits, int emit, tcz_error *err_out,
		      uint64_t *size_out)
{
	tcz_tensor *tn = &j->m->tensors[t];
	tcz_quant_params qp = {bits, j->o->group_len, TCZ_QUANT_V2};
	qp.group_len = tcz_quant_group(&qp); /* the record says which */
	size_t es = tcz_dtype_size(st->dtype);
	uint32_t cb = quant_chunk_bytes(st->dtype, qp.group_len);
	uint64_t nchunks = st->nbytes ? (st->nbytes + cb - 1) / cb : 0;
	tcz_error_acc acc;
	tcz_error_acc_init(&acc);
	uint64_t stored = 0;
	int rc = 0;
	if (emit) {
		tn->codec = TCZ_CODEC_QUANT;
		tn->bits = bits;
		tn->group_len = qp.group_len;
		tn->chunk_bytes = cb;
		if ((rc = alloc_chunks(tn)))
			return rc;
	}
	for (uint64_t ci = 0; ci < nchunks && rc == 0; ci++) {
		if (cancelled)
			return -EINTR;
		uint64_t off = ci * cb;
		uint32_t len = (uint32_t)(st->nbytes - off < cb ? st->nbytes - off
								: cb);
		size_t n = len / es, plen;
		const unsigned char *src = st->data + off;
		tcz_dtype_to_f32(st->dtype, src, n, e->a);
		rc = tcz_quant_encode(e->a, n, &qp, e->out, e->out_cap, &plen);
		if (rc == 0)
			rc = tcz_quant_decode(e->out, plen, e->b, n);
		if (rc)
			break;
		tcz_dtype_from_f32(st->dtype, e->b, n, e->dec);
		tcz_error_acc_add(&acc, st->dtype, src, e->dec, n);
		stored += plen + 12;
		if (emit)
			rc = emit_chunk(j, t, (uint32_t)ci, TCZ_CODEC_QUANT,
					st->dtype, len, e->out, plen);
	}
	if (rc)
		return rc;
	if (tcz_error_acc_finish(&acc, err_out))
		return -EDOM;
	*size_out = stored;
	if (emit) {
		tn->stored_bytes = stored;
		tn->rel_error = err_out->rel_fro;
		tn->max_abs = err_out->max_abs;
	}
	return 0;
}

/* TT over the tensor's own shape (size-1 modes dropped), its error measured
 * in the original dtype. -ERANGE when the truncation alone already exceeds
 * bound (bound < 0: no bound), without reconstructing. */
static int tt_try(job *j, enc *e, const src_tensor *st, double eps,
		  uint32_t max_rank, double bound, tcz_tt **tt_out,
		  tcz_error *err_out)
{
	(void)e;
	size_t modes[TCZ_TT_MAX_ORDER];
	unsigned d = 0;
	*tt_out = NULL;
	for (uint32_t i = 0; i < st->ndim; i++) {
		if (st->shape[i] == 1)
			continue;
		if (d == TCZ_TT_MAX_ORDER)
			return -EINVAL;
		modes[d++] = (size_t)st->shape[i];
	}
	if (d < 2 || st->numel > TT_MAX_NUMEL)
		return -EINVAL;
	float *a = malloc(st->numel * sizeof(float));
	float *r = malloc(st->numel * sizeof(float));
	unsigned char *dec = malloc(st->nbytes);
	int rc = -ENOMEM;
	if (a && r && dec) {
		tcz_tt_params p;
		tcz_tt_params_default(&p);
		p.eps = eps;
		p.max_rank = max_rank;
		/* with a bound to meet under a rank cap, one randomized sketch
		 * of cap + oversampling columns decides; a full SVD would not
		 * change the answer, only its cost */
		if (bound >= 0 && max_rank)
			p.randomized = 1;
		tcz_dtype_to_f32(st->dtype, st->data, st->numel, a);
		rc = tcz_tt_decompose(a, d, modes, &p, tt_out);
		/* the bound is the truncation's error in f32; the dtype can
		 * only add to it, so a bound above the target ends it here */
		if (rc == 0 && bound >= 0 && tcz_tt_error_bound(*tt_out) > bound)
			rc = -ERANGE;
		if (rc == 0)
			rc = tcz_tt_reconstruct(*tt_out, r);
		if (rc == 0) {
			tcz_error_acc acc;
			tcz_error_acc_init(&acc);
			tcz_dtype_from_f32(st->dtype, r, st->numel, dec);
			tcz_error_acc_add(&acc, st->dtype, st->data, dec,
					  st->numel);
			if (tcz_error_acc_finish(&acc, err_out))
				rc = -EDOM;
		}
	}
	if (rc) {
		tcz_tt_free(*tt_out);
		*tt_out = NULL;
	}
	free(a);
	free(r);
	free(dec);
	(void)j;
	return rc;
}

/* Bytes the cores of tt take in the store (f32 values and a record
 * header each), as emit_tt counts them. */
static uint64_t tt_stored_bytes(const tcz_tt *tt)
{
	return (uint64_t)tcz_tt_param_count(tt) * sizeof(float) +
	       20u * tcz_tt_order(tt);
}

/* The lossless encoding's size, measured without storing it. */
static int lossless_size(job *j, enc *e, const src_tensor *st, uint64_t *out)
{
	uint32_t cb = lossless_chunk_bytes(j->o, st->dtype);
	uint64_t total = 0;
	for (uint64_t off = 0; off < st->nbytes; off += cb) {
		size_t len = st->nbytes - off < cb ? (size_t)(st->nbytes - off) : cb;
		size_t plen;
		int rc = tcz_lossless_encode(e->lctx, st->dtype, st->data + off, len,
					     j->o->level, e->out, e->out_cap, &plen);
		if (rc)
			return rc;
		total += plen + 12;
	}
	*out = total;
	return 0;
}

static void note(job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A per-tensor remark for the user (the option's note callback). */
static void note(job *j, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&j->lock);
	j->notes++;
	if (j->o->note)
		j->o->note(j->o->note_ud, msg);
	pthread_mutex_unlock(&j->lock);
}

static int emit_tt(job *j, uint32_t t, const src_tensor *st, tcz_tt *tt,
		   const tcz_error *err)
{
	tcz_tensor *tn = &j->m->tensors[t];
	unsigned d = tcz_tt_order(tt);
	tn->codec = TCZ_CODEC_TT;
	tn->tt_order = d;
	tn->tt_modes = calloc(d, sizeof *tn->tt_modes);
	tn->tt_ranks = calloc(d + 1, sizeof *tn->tt_ranks);
	if (!tn->tt_modes || !tn->tt_ranks)
		return -ENOMEM;
	size_t es = tcz_dtype_size(st->dtype);
	tn->chunk_bytes = (uint32_t)(TCZ_CHUNK_MAX / es * es);
	tn->n_chunks = 0;
	tn->rel_error = err->rel_fro;
	tn->max_abs = err->max_abs;
	tn->stored_bytes = 0;
	for (unsigned k = 0; k <= d; k++)
		tn->tt_ranks[k] = tcz_tt_rank(tt, k);
	int rc = 0;
	for (unsigned k = 0; k < d && rc == 0; k++) {
		tn->tt_modes[k] = tcz_tt_mode(tt, k);
		qitem it = {0};
		it.is_core = 1;
		it.t = t;
		it.idx = k;
		it.rl = tn->tt_ranks[k];
		it.n = tn->tt_modes[k];
		it.rr = tn->tt_ranks[k + 1];
		size_t cnt = (size_t)(it.rl * it.n * it.rr);
		it.core = malloc(cnt * sizeof(float) + 1);
		if (!it.core)
			return -ENOMEM;
		memcpy(it.core, tcz_tt_core(tt, k), cnt * sizeof(float));
		it.decoded = k + 1 == d ? st->nbytes : 0;
		tn->stored_bytes += cnt * sizeof(float) + 20;
		rc = push(j, &it);
	}
	return rc;
}

/* True when every value of float tensor st is finite. */
static int all_finite(enc *e, const src_tensor *st)
{
	size_t es = tcz_dtype_size(st->dtype), per = TCZ_CHUNK_MAX / 2;
	for (uint64_t at = 0; at < st->numel; at += per) {
		size_t n = st->numel - at < per ? (size_t)(st->numel - at) : per;
		tcz_dtype_to_f32(st->dtype, st->data + at * es, n, e->a);
		for (size_t i = 0; i < n; i++)
			if (!isfinite(e->a[i]))
				return 0;
	}
	return 1;
}

/* May tensor st be stored lossy under the options? */
static int lossy_allowed(const job *j, const src_tensor *st)
{
	/* decoded values (ONNX varints) are not the file's bytes: a lossy
	 * code would make layers/ and the file disagree */
	if (!tcz_dtype_is_float(st->dtype) || st->numel == 0 || st->owned ||
	    st->qtype)
		return 0;
	if (j->has_exc && regexec(&j->exc, st->name, 0, NULL, 0) == 0)
		return 0;
	if (j->has_inc)
		return regexec(&j->inc, st->name, 0, NULL, 0) == 0;
	return tcz__lossy_by_default(st->name, st->dtype, st->ndim, st->shape,
				     st->numel, j->o->min_size);
}

int tcz__lossy_by_default(const char *name, tcz_dtype dt, uint32_t ndim,
			  const uint64_t *shape, uint64_t numel,
			  uint64_t min_size)
{
	if (!tcz_dtype_is_float(dt) || numel == 0 || numel < min_size)
		return 0;
	unsigned big = 0; /* dimensions > 1: 1-D tensors are norms/biases */
	for (uint32_t i = 0; i < ndim; i++)
		big += shape[i] > 1;
	if (big < 2)
		return 0;
	char low[512];
	size_t n = strlen(name);
	if (n >= sizeof low)
		n = sizeof low - 1;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32
								  : name[i]);
	low[n] = 0;
	return !strstr(low, "norm") && !strstr(low, "bias");
}

static int encode_tensor(job *j, enc *e, uint32_t t)
{
	const src_tensor *st = &j->src->tensors[t];
	const tcz_import_opts *o = j->o;
	tcz_error err;
	uint64_t size;
	int rc;
	if (o->profile == TCZ_PROFILE_LOSSLESS || !lossy_allowed(j, st))
		return encode_lossless(j, e, t, st);

	if (o->profile == TCZ_PROFILE_BITS) {
		/* NaN/inf make quantization meaningless; checked first, as
		 * chunks emitted before one would be left behind */
		if (!all_finite(e, st))
			return encode_lossless(j, e, t, st);
		return quant_pass(j, e, t, st, o->bits, 1, &err, &size);
	}
	if (o->profile == TCZ_PROFILE_TT) {
		tcz_tt *tt;
		rc = tt_try(j, e, st, o->tt_eps, o->tt_max_rank, -1, &tt, &err);
		if (rc == -EINVAL || rc == -EDOM)
			return encode_lossless(j, e, t, st);
		/* TT only where it is smaller than the exact encoding: near
		 * full-rank weights give cores larger than the tensor */
		uint64_t tt_bytes = 0, ll_bytes = 0;
		if (rc == 0) {
			tt_bytes = tt_stored_bytes(tt);
			rc = tt_bytes < st->nbytes ? lossless_size(j, e, st, &ll_bytes)
						   : 0;
		}
		if (rc == 0 && (tt_bytes >= st->nbytes || tt_bytes >= ll_bytes)) {
			tcz_tt_free(tt);
			note(j, "tensor '%s': TT at eps %g takes %llu bytes, not "
				"less than lossless (%llu); stored lossless",
			     st->name, o->tt_eps, (unsigned long long)tt_bytes,
			     (unsigned long long)(ll_bytes ? ll_bytes : st->nbytes));
			return encode_lossless(j, e, t, st);
		}
		if (rc == 0)
			rc = emit_tt(j, t, st, tt, &err);
		tcz_tt_free(tt);
		return rc;
	}

	/* MAX_ERROR: the smallest encoding whose measured error meets the
	 * bound. Fewer bits are smaller, so walk down from 8 while the bound
	 * holds; then TT only if it beats that size. */
	unsigned best_bits = 0;
	uint64_t best_size = st->nbytes; /* lossless is at most about this */
	for (unsigned b = TCZ_QUANT_BITS_MAX; b >= TCZ_QUANT_BITS_MIN; b--) {
		rc = quant_pass(j, e, t, st, b, 0, &err, &size);
		if (rc == -EDOM)
			return encode_lossless(j, e, t, st);
		if (rc)
			return rc;
		if (err.rel_fro > o->max_error)
			break;
		best_bits = b;
		best_size = size;
	}
	/* TT pays 4 bytes per parameter; cap the rank so it can only win */
	size_t m = 0, rest = 1;
	for (uint32_t i = 0; i < st->ndim; i++) {
		if (st->shape[i] == 1)
			continue;
		if (!m)
			m = (size_t)st->shape[i];
		else
			rest *= (size_t)st->shape[i];
	}
	uint64_t cap = m && rest > 1 ? best_size / (4 * (m + rest)) : 0;
	if (o->tt_max_rank && cap > o->tt_max_rank)
		cap = o->tt_max_rank;
	if (cap >= 1 && st->numel <= TT_MAX_NUMEL) {
		tcz_tt *tt = NULL;
		tcz_error terr;
		rc = tt_try(j, e, st, o->max_error * 0.9, (uint32_t)cap,
			    o->max_error, &tt, &terr);
		if (rc == 0 && terr.rel_fro <= o->max_error &&
		    tcz_tt_param_count(tt) * 4 < best_size) {
			rc = emit_tt(j, t, st, tt, &terr);
			tcz_tt_free(tt);
			return rc;
		}
		tcz_tt_free(tt);
		if (rc && rc != -EINVAL && rc != -EDOM && rc != -EIO &&
		    rc != -ERANGE)
			return rc;
	}
	if (best_bits)
		return quant_pass(j, e, t, st, best_bits, 1, &err, &size);
	return encode_lossless(j, e, t, st);
}

static void *worker(void *arg)
{
	job *j = arg;
	enc e;
	int rc = enc_init(&e, j->o->group_len);
	if (rc)
		job_fail(j, rc, "out of memory");
	for (;;) {
		pthread_mutex_lock(&j->lock);
		uint32_t t = j->next_tensor;
		int stop = rc || j->err || cancelled ||
			   t >= j->src->n_tensors;
		if (!stop)
			j->next_tensor++;
		pthread_mutex_unlock(&j->lock);
		if (stop)
			break;
		rc = encode_tensor(j, &e, t);
		if (rc && rc != -EINTR)
			job_fail(j, rc, "tensor '%s': %s",
				 j->src->tensors[t].name,
				 rc == -EDOM ? "values are not finite"
					     : strerror(-rc));
		if (rc)
			break;
		pthread_mutex_lock(&j->lock);
		j->tensors_done++;
		pthread_mutex_unlock(&j->lock);
	}
	enc_free(&e);
	pthread_mutex_lock(&j->lock);
	j->running--;
	pthread_cond_broadcast(&j->not_empty);
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

/* ---- model assembly ------------------------------------------------------ */

/* Stores a byte range as a zstd-coded blob. */
static int put_blob(tcz_import_tx *tx, tcz_blob *b, const unsigned char *p,
		    uint64_t len, ZSTD_CCtx *z, unsigned char *out,
		    size_t cap)
{
	b->length = len;
	b->chunk_bytes = TCZ_CHUNK_MAX;
	uint64_t n = (len + TCZ_CHUNK_MAX - 1) / TCZ_CHUNK_MAX;
	b->n_chunks = (uint32_t)n;
	b->chunks = calloc(n ? n : 1, TCZ_KEY_LEN);
	if (!b->chunks)
		return -ENOMEM;
	ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, BLOB_LEVEL);
	ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
	for (uint64_t c = 0; c < n; c++) {
		uint64_t off = c * TCZ_CHUNK_MAX;
		size_t l = (size_t)(len - off < TCZ_CHUNK_MAX ? len - off
							      : TCZ_CHUNK_MAX);
		size_t z_len = ZSTD_compress2(z, out, cap, p + off, l);
		if (ZSTD_isError(z_len))
			return -EIO;
		unsigned char *val;
		size_t vlen;
		int rc = tcz_chunk_value(TCZ_CODEC_ZSTD, TCZ_DT_U8, (uint32_t)l,
					 out, z_len, &val, &vlen);
		if (rc == 0)
			rc = tcz_import_put_chunk(tx, val, vlen, b->chunks[c]);
		if (rc)
			return rc;
		b->stored_bytes += vlen;
	}
	return 0;
}

static int add_file(tcz_model *m, const char *name, uint32_t flags,
		    uint32_t n_ext)
{
	tcz_file *f = &m->files[m->n_files];
	f->name = strdup(name);
	f->flags = flags;
	f->extents = calloc(n_ext ? n_ext : 1, sizeof *f->extents);
	m->n_files++;
	return f->name && f->extents ? 0 : -ENOMEM;
}

static void add_extent(tcz_file *f, uint32_t kind, uint32_t index,
		       uint64_t len)
{
	tcz_extent *x = &f->extents[f->n_extents++];
	x->offset = f->size;
	x->length = len;
	x->kind = kind;
	x->index = index;
	f->size += len;
}

/* The file flags of a source file kind. */
static uint32_t file_flags(src_kind k)
{
	switch (k) {
	case SRC_SAFETENSORS:
		return TCZ_FILE_SOURCE | TCZ_FILE_SAFETENSORS;
	case SRC_GGUF:
		return TCZ_FILE_SOURCE | TCZ_FILE_GGUF;
	case SRC_ONNX:
		return TCZ_FILE_SOURCE | TCZ_FILE_ONNX;
	case SRC_ONNX_DATA:
		return TCZ_FILE_SOURCE | TCZ_FILE_ONNX_DATA;
	default:
		return TCZ_FILE_SOURCE;
	}
}

/* Model file names are paths below the model directory: no empty, "."
 * or ".." component, nothing under layers/, no name both a file and a
 * directory, none twice. */
static int check_names(const tcz_model *m, char *err, size_t errlen)
{
	for (uint32_t i = 0; i < m->n_files; i++) {
		const char *n = m->files[i].name;
		size_t len = strlen(n);
		if (strcmp(n, "layers") == 0 || strncmp(n, "layers/", 7) == 0) {
			snprintf(err, errlen,
				 "a file named '%s' cannot be imported (the model "
				 "directory's layers/ holds the tensors)",
				 n);
			return -EBADMSG;
		}
		for (const char *c = n;; c = strchr(c, '/') + 1) {
			size_t cl = strcspn(c, "/");
			if (cl == 0 || (cl == 1 && c[0] == '.') ||
			    (cl == 2 && c[0] == '.' && c[1] == '.') || cl > 255) {
				snprintf(err, errlen, "file name '%s' is not a "
						      "usable path in the model "
						      "directory", n);
				return -EBADMSG;
			}
			if (!c[cl])
				break;
		}
		for (uint32_t k = 0; k < i; k++) {
			const char *o = m->files[k].name;
			size_t ol = strlen(o);
			if (strcmp(n, o) == 0 ||
			    (ol < len && strncmp(n, o, ol) == 0 && n[ol] == '/') ||
			    (len < ol && strncmp(o, n, len) == 0 && o[len] == '/')) {
				snprintf(err, errlen,
					 "file name '%s' is used twice in the "
					 "model directory",
					 strcmp(n, o) == 0 ? n : len < ol ? n : o);
				return -EBADMSG;
			}
		}
	}
	return 0;
}

/* Builds the model skeleton: tensors (names, shapes), files and their
 * extents, and stores every blob (headers, framing, aux files, a merged
 * header). */
static int assemble(tcz_import_tx *tx, const src_set *src, tcz_model *m,
		    char *err, size_t errlen)
{
	size_t shards = 0, has_model_st = 0, n_blobs = 2;
	for (size_t i = 0; i < src->n_files; i++) {
		const src_file *f = &src->files[i];
		if (f->kind == SRC_SAFETENSORS) {
			shards++;
			has_model_st |= strcmp(f->name, "model.safetensors") == 0;
		}
		n_blobs += f->kind == SRC_AUX ? 1 : f->n_ext;
	}
	int npy = src->n_files && src->files[0].kind == SRC_NPY;
	/* a merged model.safetensors unless one already is the model */
	int merged = npy || (shards >= 1 && !has_model_st);
	m->n_tensors = (uint32_t)src->n_tensors;
	m->tensors = calloc(src->n_tensors ? src->n_tensors : 1,
			    sizeof *m->tensors);
	m->blobs = calloc(n_blobs, sizeof *m->blobs);
	m->files = calloc(src->n_files + 2, sizeof *m->files);
	if (!m->tensors || !m->blobs || !m->files)
		return -ENOMEM;
	if (src->meta && !(m->meta = strdup(src->meta)))
		return -ENOMEM;
	for (size_t i = 0; i < src->n_tensors; i++) {
		const src_tensor *st = &src->tensors[i];
		tcz_tensor *tn = &m->tensors[i];
		tn->name = strdup(st->name);
		tn->shape = calloc(st->ndim + 1, sizeof *tn->shape);
		if (!tn->name || !tn->shape)
			return -ENOMEM;
		memcpy(tn->shape, st->shape, st->ndim * sizeof *tn->shape);
		tn->ndim = st->ndim;
		tn->dtype = st->dtype;
		tn->numel = st->numel;
		tn->nbytes = st->nbytes;
		if (st->qtype) {
			tn->qtype = st->qtype;
			tn->qndim = st->qndim;
			tn->qshape = calloc(st->qndim + 1, sizeof *tn->qshape);
			if (!tn->qshape)
				return -ENOMEM;
			memcpy(tn->qshape, st->qshape, st->qndim * sizeof *tn->qshape);
		}
	}

	ZSTD_CCtx *z = ZSTD_createCCtx();
	size_t cap = ZSTD_compressBound(TCZ_CHUNK_MAX);
	unsigned char *out = malloc(cap);
	int rc = z && out ? 0 : -ENOMEM;
	for (size_t i = 0; i < src->n_files && rc == 0; i++) {
		const src_file *f = &src->files[i];
		if (f->kind == SRC_NPY)
			continue;
		if (f->kind == SRC_AUX) {
			uint32_t b = m->n_blobs++;
			rc = put_blob(tx, &m->blobs[b], f->map, f->size, z, out,
				      cap);
			if (rc == 0)
				rc = add_file(m, f->name, TCZ_FILE_SOURCE, 1);
			if (rc == 0)
				add_extent(&m->files[m->n_files - 1],
					   TCZ_EXT_BLOB, b, f->size);
			continue;
		}
		/* a container: its extents, framing stored verbatim */
		rc = add_file(m, f->name, file_flags(f->kind), (uint32_t)f->n_ext);
		tcz_file *mf = &m->files[m->n_files - 1];
		for (size_t e = 0; e < f->n_ext && rc == 0; e++) {
			const src_ext *x = &f->ext[e];
			if (x->tensor >= 0) {
				add_extent(mf, TCZ_EXT_TENSOR, (uint32_t)x->tensor,
					   x->length);
				continue;
			}
			uint32_t b = m->n_blobs++;
			rc = put_blob(tx, &m->blobs[b], f->map + x->offset,
				      x->length, z, out, cap);
			if (rc == 0)
				add_extent(mf, TCZ_EXT_BLOB, b, x->length);
		}
		if (rc == 0 && mf->size != f->size)
			rc = -EIO; /* the parsers cover their files exactly */
	}
	if (rc == 0 && merged && shards == 1 && !npy) {
		/* one shard under another name: model.safetensors is the same
		 * bytes, so it shares the shard's extents */
		tcz_file *sf = NULL;
		for (uint32_t i = 0; i < m->n_files; i++)
			if (m->files[i].flags & TCZ_FILE_SAFETENSORS)
				sf = &m->files[i];
		rc = add_file(m, "model.safetensors", TCZ_FILE_SAFETENSORS,
			      sf->n_extents);
		if (rc == 0) {
			tcz_file *mf = &m->files[m->n_files - 1];
			for (uint32_t e = 0; e < sf->n_extents; e++)
				add_extent(mf, sf->extents[e].kind,
					   sf->extents[e].index,
					   sf->extents[e].length);
		}
	} else if (rc == 0 && merged) {
		/* the safetensors tensors (shards or .npy files) as one file */
		tcz_st_tensor *list = calloc(src->n_tensors + 1, sizeof *list);
		uint32_t *which = calloc(src->n_tensors + 1, sizeof *which);
		size_t nl = 0;
		unsigned char *hdr = NULL;
		size_t hlen = 0;
		const char *meta = NULL;
		for (size_t i = 0; i < src->n_files && !meta; i++)
			if (src->files[i].kind == SRC_SAFETENSORS)
				meta = src->files[i].st.metadata;
		if (!list || !which)
			rc = -ENOMEM;
		for (size_t i = 0; rc == 0 && i < src->n_tensors; i++) {
			const src_tensor *st = &src->tensors[i];
			src_kind k = src->files[st->file].kind;
			if (k != SRC_SAFETENSORS && k != SRC_NPY)
				continue;
			list[nl].name = (char *)st->name;
			list[nl].dtype = st->dtype;
			list[nl].ndim = st->ndim;
			list[nl].shape = (uint64_t *)st->shape;
			list[nl].numel = st->numel;
			which[nl++] = (uint32_t)i;
		}
		if (rc == 0)
			rc = tcz_st_build_header(list, nl, meta, &hdr, &hlen);
		free(list);
		uint32_t b = m->n_blobs;
		if (rc == 0) {
			m->n_blobs++;
			rc = put_blob(tx, &m->blobs[b], hdr, hlen, z, out, cap);
		}
		free(hdr);
		if (rc == 0)
			rc = add_file(m, "model.safetensors", TCZ_FILE_SAFETENSORS,
				      (uint32_t)nl + 1);
		if (rc == 0) {
			tcz_file *mf = &m->files[m->n_files - 1];
			add_extent(mf, TCZ_EXT_BLOB, b, hlen);
			for (size_t k = 0; k < nl; k++)
				add_extent(mf, TCZ_EXT_TENSOR, which[k],
					   m->tensors[which[k]].nbytes);
		}
		free(which);
	}
	if (rc == 0)
		rc = check_names(m, err, errlen);
	ZSTD_freeCCtx(z);
	free(out);
	return rc;
}

/* ---- the writer ----------------------------------------------------------- */

static void progress(const job *j, uint32_t tensors, uint64_t done,
		     uint64_t total, double t0, int final)
{
	double el = now_s() - t0;
	double mbs = el > 0 ? done / 1e6 / el : 0;
	double eta = mbs > 0 ? (total - done) / 1e6 / mbs : 0;
	int width = 30, fill = total ? (int)(width * (double)done / total) : width;
	char bar[64];
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = 0;
	printf("\r[%s] %u/%zu tensors  %.1f/%.1f MB  %.1f MB/s  ETA %.0fs ",
	       bar, tensors, j->src->n_tensors, done / 1e6, total / 1e6,
	       mbs, final ? 0.0 : eta);
	if (final)
		printf("\n");
	fflush(stdout);
}

static int write_all(job *j, tcz_import_tx *tx, uint64_t total)
{
	double t0 = now_s(), last = 0;
	uint64_t done = 0;
	int rc = 0;
	for (;;) {
		pthread_mutex_lock(&j->lock);
		while (j->qlen == 0 && j->running && !j->err && !cancelled)
			wait_a_while(&j->not_empty, &j->lock);
		if (j->err || cancelled || (j->qlen == 0 && !j->running)) {
			rc = j->err ? j->err : cancelled ? -EINTR : 0;
			pthread_mutex_unlock(&j->lock);
			break;
		}
		qitem it = j->q[j->qhead];
		uint32_t tensors = j->tensors_done;
		j->qhead = (j->qhead + 1) % j->qcap;
		j->qlen--;
		pthread_cond_signal(&j->not_full);
		pthread_mutex_unlock(&j->lock);

		if (it.is_core) {
			rc = tcz_import_put_ttcore(tx, it.t, it.idx, it.rl, it.n,
						   it.rr, it.core);
			free(it.core);
		} else {
			rc = tcz_import_put_chunk(
				tx, it.val, it.vlen,
				j->m->tensors[it.t].chunks[it.idx]);
		}
		if (rc) {
			job_fail(j, rc, "writing to the store: %s",
				 tcz_store_errmsg()[0] ? tcz_store_errmsg()
						       : strerror(-rc));
			break;
		}
		done += it.decoded;
		if (j->o->progress && now_s() - last > 0.1) {
			last = now_s();
			progress(j, tensors, done, total, t0, 0);
		}
	}
	if (j->o->progress && rc == 0)
		progress(j, j->tensors_done, total, total, t0, 1);
	return rc;
}

static void drain(job *j)
{
	while (j->qlen) {
		qitem *it = &j->q[j->qhead];
		free(it->val);
		free(it->core);
		j->qhead = (j->qhead + 1) % j->qcap;
		j->qlen--;
	}
}

static char *profile_text(const tcz_import_opts *o)
{
	char buf[256];
	switch (o->profile) {
	case TCZ_PROFILE_MAX_ERROR:
		snprintf(buf, sizeof buf, "max-error %g", o->max_error);
		break;
	case TCZ_PROFILE_BITS:
		snprintf(buf, sizeof buf, "bits %u group %u", o->bits,
			 tcz_quant_group(&(tcz_quant_params){
				 o->bits, o->group_len, TCZ_QUANT_V2}));
		break;
	case TCZ_PROFILE_TT:
		snprintf(buf, sizeof buf, "tt eps %g max-rank %u", o->tt_eps,
			 o->tt_max_rank);
		break;
	default:
		snprintf(buf, sizeof buf, "lossless");
	}
	return strdup(buf);
}

static int check_opts(const tcz_import_opts *o, job *j, char *err,
		      size_t errlen)
{
	if (o->profile == TCZ_PROFILE_BITS &&
	    (o->bits < TCZ_QUANT_BITS_MIN || o->bits > TCZ_QUANT_BITS_MAX)) {
		snprintf(err, errlen, "--bits must be between 3 and 8");
		return -EINVAL;
	}
	if (o->profile == TCZ_PROFILE_MAX_ERROR &&
	    !(o->max_error >= 0 && o->max_error < 1e6)) {
		snprintf(err, errlen, "--max-error must be a number >= 0");
		return -EINVAL;
	}
	if (o->profile == TCZ_PROFILE_TT && !(o->tt_eps >= 0 && o->tt_eps < 1e6)) {
		snprintf(err, errlen, "--eps must be a number >= 0");
		return -EINVAL;
	}
	if (o->group_len > (1u << 16)) { /* 0: the width's default */
		snprintf(err, errlen, "group length must be 1..65536");
		return -EINVAL;
	}
	if (o->chunk_kib < 16 || o->chunk_kib > (TCZ_CHUNK_MAX >> 10)) {
		snprintf(err, errlen, "--chunk-kib must be 16..%u",
			 TCZ_CHUNK_MAX >> 10);
		return -EINVAL;
	}
	if (o->level < 1 || o->level > ZSTD_maxCLevel()) {
		snprintf(err, errlen, "zstd level must be 1..%d", ZSTD_maxCLevel());
		return -EINVAL;
	}
	if (o->include && regcomp(&j->inc, o->include, REG_EXTENDED | REG_NOSUB)) {
		snprintf(err, errlen, "--include: invalid regular expression '%s'",
			 o->include);
		return -EINVAL;
	}
	j->has_inc = o->include != NULL;
	if (o->exclude && regcomp(&j->exc, o->exclude, REG_EXTENDED | REG_NOSUB)) {
		snprintf(err, errlen, "--exclude: invalid regular expression '%s'",
			 o->exclude);
		return -EINVAL;
	}
	j->has_exc = o->exclude != NULL;
	return 0;
}

int tcz_import(tcz_store *s, const char *const *srcs, size_t n,
	       const tcz_import_opts *o, tcz_import_result *res, char *err,
	       size_t errlen)
{
	double t0 = now_s();
	job j;
	memset(&j, 0, sizeof j);
	memset(res, 0, sizeof *res);
	err[0] = 0;
	cancelled = 0;
	src_set src;
	int rc = check_opts(o, &j, err, errlen);
	if (rc)
		goto out_regex;
	rc = src_open(srcs, n, &src, err, errlen);
	if (rc)
		goto out_regex;
	const char *name = o->name ? o->name : src.default_name;
	if (!tcz_model_name_valid(name)) {
		snprintf(err, errlen,
			 "'%s' is not a valid model name; choose one with "
			 "--name (letters, digits, '.', '_', '-')",
			 name);
		rc = -EINVAL;
		goto out_src;
	}
	for (size_t i = 0; i < src.n_skipped; i++)
		fprintf(stderr, "tczfs: import: skipping %s\n", src.skipped[i]);

	tcz_import_tx *tx;
	rc = tcz_import_begin(s, name, &tx);
	if (rc) {
		snprintf(err, errlen, "%s", tcz_store_errmsg());
		goto out_src;
	}
	tcz_model *m = calloc(1, sizeof *m);
	if (!m) {
		tcz_import_abort(tx);
		rc = -ENOMEM;
		goto out_src;
	}
	m->name = strdup(name);
	m->source = realpath(srcs[0], NULL);
	m->profile = profile_text(o);
	m->import_time = (uint64_t)time(NULL);
	m->source_bytes = src.total_bytes;
	m->flags = src.from_dir ? TCZ_MODEL_FROM_DIR : 0;
	rc = m->name && m->profile ? assemble(tx, &src, m, err, errlen) : -ENOMEM;

	/* encode */
	unsigned jobs = o->jobs;
	if (jobs == 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		jobs = c > 0 ? (unsigned)c : 1;
	}
	if (jobs > 256)
		jobs = 256;
	tcz_tt_blas_threads(1); /* the jobs are the parallelism */
	pthread_t *th = calloc(jobs, sizeof *th);
	j.src = &src;
	j.o = o;
	j.m = m;
	j.qcap = 2 * jobs + 2;
	j.q = calloc(j.qcap, sizeof *j.q);
	pthread_mutex_init(&j.lock, NULL);
	pthread_cond_init(&j.not_full, NULL);
	pthread_cond_init(&j.not_empty, NULL);
	unsigned started = 0;
	if (rc == 0 && (!th || !j.q))
		rc = -ENOMEM;
	uint64_t total = 0;
	for (size_t i = 0; i < src.n_tensors; i++)
		total += src.tensors[i].nbytes;
	if (rc == 0) {
		/* counted before each start: a worker with nothing to do may
		 * finish (and count itself out) before the next one starts */
		for (; started < jobs; started++) {
			pthread_mutex_lock(&j.lock);
			j.running++;
			pthread_mutex_unlock(&j.lock);
			if (pthread_create(&th[started], NULL, worker, &j)) {
				pthread_mutex_lock(&j.lock);
				j.running--;
				pthread_mutex_unlock(&j.lock);
				break;
			}
		}
		if (started == 0)
			rc = -EAGAIN;
		else
			rc = write_all(&j, tx, total);
	}
	if (rc)
		job_fail(&j, rc, "%s", strerror(-rc));
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	drain(&j);
	if (rc == 0 && j.err)
		rc = j.err;
	if (rc == 0 && cancelled)
		rc = -EINTR;

	if (rc == 0) {
		for (uint32_t i = 0; i < m->n_tensors; i++) {
			const tcz_tensor *tn = &m->tensors[i];
			m->stored_bytes += tn->stored_bytes;
			if (!tcz_codec_exact(tn->codec))
				res->lossy_tensors++;
			if (tn->rel_error > res->max_rel_error)
				res->max_rel_error = tn->rel_error;
		}
		for (uint32_t i = 0; i < m->n_blobs; i++)
			m->stored_bytes += m->blobs[i].stored_bytes;
		if (res->lossy_tensors)
			m->flags |= TCZ_MODEL_LOSSY;
		rc = tcz_import_commit(tx, m);
		if (rc)
			snprintf(err, errlen, "%s", tcz_store_errmsg());
	} else {
		tcz_import_abort(tx);
		if (!err[0]) {
			if (rc == -EINTR)
				snprintf(err, errlen, "interrupted; nothing was "
						      "imported");
			else
				snprintf(err, errlen, "%s",
					 j.msg[0] ? j.msg : strerror(-rc));
		}
	}
	if (rc == 0) {
		snprintf(res->name, sizeof res->name, "%s", name);
		res->tensors = m->n_tensors;
		res->files = m->n_files;
		res->source_bytes = m->source_bytes;
		res->stored_bytes = m->stored_bytes;
		res->notes = j.notes;
		res->seconds = now_s() - t0;
	}
	pthread_mutex_destroy(&j.lock);
	pthread_cond_destroy(&j.not_full);
	pthread_cond_destroy(&j.not_empty);
	free(j.q);
	free(th);
	tcz_model_free(m);
out_src:
	src_close(&src);
out_regex:
	if (j.has_inc)
		regfree(&j.inc);
	if (j.has_exc)
		regfree(&j.exc);
	return rc;
}
