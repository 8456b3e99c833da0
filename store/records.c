/* Serialisation of model, tensor and blob records, with validation: a
 * record that parses is internally consistent (sizes, chunk counts,
 * extents), so readers can index with it without further checks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

#define MODEL_MAGIC 0x444f4d54u  /* "TMOD" */
#define TENSOR_MAGIC 0x4e455454u /* "TTEN": version 1, read only */
#define TENSOR_MAGIC2 0x32455454u /* "TTE2": + generation, flags, mtime */
#define BLOB_MAGIC 0x424c4254u   /* "TBLB" */

const char *tcz_codec_name(tcz_codec c)
{
	switch (c) {
	case TCZ_CODEC_LOSSLESS:
		return "lossless";
	case TCZ_CODEC_QUANT:
		return "quant";
	case TCZ_CODEC_TT:
		return "tt";
	case TCZ_CODEC_ZSTD:
		return "zstd";
	}
	return "?";
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

uint32_t tcz_tensor_chunk_count(const tcz_tensor *t)
{
	if (t->codec != TCZ_CODEC_TT)
		return t->n_chunks;
	return t->chunk_bytes ? (uint32_t)ceil_div(t->nbytes, t->chunk_bytes)
			      : 0;
}

uint32_t tcz_tensor_chunk_len(const tcz_tensor *t, uint32_t ci)
{
	uint64_t start = (uint64_t)ci * t->chunk_bytes;
	if (start >= t->nbytes)
		return 0;
	uint64_t left = t->nbytes - start;
	return left < t->chunk_bytes ? (uint32_t)left : t->chunk_bytes;
}

void tcz__tensor_clear(tcz_tensor *t)
{
	free(t->name);
	free(t->shape);
	free(t->tt_modes);
	free(t->tt_ranks);
	free(t->chunks);
	memset(t, 0, sizeof *t);
}

int tcz__tensor_copy(tcz_tensor *dst, const tcz_tensor *src)
{
	*dst = *src;
	dst->name = strdup(src->name);
	dst->shape = calloc(src->ndim + 1, sizeof *dst->shape);
	dst->tt_modes = dst->tt_ranks = NULL;
	dst->chunks = malloc(src->n_chunks ? (size_t)src->n_chunks * TCZ_KEY_LEN : 1);
	if (src->tt_order) {
		dst->tt_modes = calloc(src->tt_order, sizeof *dst->tt_modes);
		dst->tt_ranks = calloc(src->tt_order + 1, sizeof *dst->tt_ranks);
	}
	if (!dst->name || !dst->shape || !dst->chunks ||
	    (src->tt_order && (!dst->tt_modes || !dst->tt_ranks))) {
		tcz__tensor_clear(dst);
		return -ENOMEM;
	}
	memcpy(dst->shape, src->shape, src->ndim * sizeof *dst->shape);
	memcpy(dst->chunks, src->chunks, (size_t)src->n_chunks * TCZ_KEY_LEN);
	if (src->tt_order) {
		memcpy(dst->tt_modes, src->tt_modes,
		       src->tt_order * sizeof *dst->tt_modes);
		memcpy(dst->tt_ranks, src->tt_ranks,
		       (src->tt_order + 1) * sizeof *dst->tt_ranks);
	}
	return 0;
}

void tcz__blob_clear(tcz_blob *b)
{
	free(b->chunks);
	memset(b, 0, sizeof *b);
}

void tcz_model_free(tcz_model *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->n_tensors && m->tensors; i++)
		tcz__tensor_clear(&m->tensors[i]);
	for (uint32_t i = 0; i < m->n_blobs && m->blobs; i++)
		tcz__blob_clear(&m->blobs[i]);
	for (uint32_t i = 0; i < m->n_files && m->files; i++) {
		free(m->files[i].name);
		free(m->files[i].extents);
	}
	free(m->tensors);
	free(m->blobs);
	free(m->files);
	free(m->name);
	free(m->source);
	free(m->profile);
	free(m);
}

int tcz__model_encode(const tcz_model *m, tcz_wbuf *w)
{
	tcz_wb_u32(w, MODEL_MAGIC);
	tcz_wb_u32(w, 2);
	tcz_wb_u64(w, m->id);
	tcz_wb_u64(w, m->import_time);
	tcz_wb_u32(w, m->flags);
	tcz_wb_str(w, m->source ? m->source : "");
	tcz_wb_str(w, m->profile ? m->profile : "");
	tcz_wb_u64(w, m->source_bytes);
	tcz_wb_u64(w, m->stored_bytes);
	tcz_wb_u32(w, m->n_tensors);
	tcz_wb_u32(w, m->n_blobs);
	tcz_wb_u32(w, m->n_files);
	for (uint32_t i = 0; i < m->n_files; i++) {
		const tcz_file *f = &m->files[i];
		tcz_wb_str(w, f->name);
		tcz_wb_u64(w, f->size);
		tcz_wb_u32(w, f->flags);
		tcz_wb_u32(w, f->n_extents);
		for (uint32_t e = 0; e < f->n_extents; e++) {
			tcz_wb_u64(w, f->extents[e].offset);
			tcz_wb_u64(w, f->extents[e].length);
			tcz_wb_u32(w, f->extents[e].kind);
			tcz_wb_u32(w, f->extents[e].index);
		}
	}
	/* version 2 */
	tcz_wb_u64(w, m->rev ? m->rev : m->id);
	tcz_wb_u64(w, m->iid ? m->iid : m->id);
	tcz_wb_u32(w, (uint32_t)m->policy);
	tcz_wb_f64(w, m->policy_max_error);
	return tcz_rec_finish(w);
}

int tcz__model_decode(const void *p, size_t n, tcz_model *m)
{
	tcz_rbuf r;
	if (tcz_rec_open(&r, p, n))
		return -EIO;
	uint32_t magic = tcz_rb_u32(&r), version = tcz_rb_u32(&r);
	if (magic != MODEL_MAGIC || version < 1 || version > 2)
		return -EBADMSG;
	m->id = tcz_rb_u64(&r);
	m->import_time = tcz_rb_u64(&r);
	m->flags = tcz_rb_u32(&r);
	m->source = tcz_rb_strdup(&r);
	m->profile = tcz_rb_strdup(&r);
	m->source_bytes = tcz_rb_u64(&r);
	m->stored_bytes = tcz_rb_u64(&r);
	uint32_t nt = tcz_rb_u32(&r), nb = tcz_rb_u32(&r), nf = tcz_rb_u32(&r);
	if (r.err)
		return r.err;
	/* every file needs at least 28 bytes: bound counts by the record */
	if (nf > (r.len - r.off) / 28)
		return -EBADMSG;
	m->files = calloc(nf ? nf : 1, sizeof *m->files);
	if (!m->files)
		return -ENOMEM;
	m->n_files = nf;
	m->n_tensors = nt;
	m->n_blobs = nb;
	for (uint32_t i = 0; i < nf && !r.err; i++) {
		tcz_file *f = &m->files[i];
		f->name = tcz_rb_strdup(&r);
		f->size = tcz_rb_u64(&r);
		f->flags = tcz_rb_u32(&r);
		f->n_extents = tcz_rb_u32(&r);
		if (r.err || f->n_extents > (r.len - r.off) / 24)
			return -EBADMSG;
		f->extents = calloc(f->n_extents ? f->n_extents : 1,
				    sizeof *f->extents);
		if (!f->extents)
			return -ENOMEM;
		for (uint32_t e = 0; e < f->n_extents; e++) {
			f->extents[e].offset = tcz_rb_u64(&r);
			f->extents[e].length = tcz_rb_u64(&r);
			f->extents[e].kind = tcz_rb_u32(&r);
			f->extents[e].index = tcz_rb_u32(&r);
		}
	}
	m->rev = m->iid = m->id;
	m->policy = TCZ_POLICY_COST;
	m->policy_max_error = 0;
	if (version >= 2) {
		m->rev = tcz_rb_u64(&r);
		m->iid = tcz_rb_u64(&r);
		uint32_t pol = tcz_rb_u32(&r);
		m->policy_max_error = tcz_rb_f64(&r);
		if (pol > TCZ_POLICY_PRECISION || !m->rev || !m->iid ||
		    !(m->policy_max_error >= 0))
			return -EBADMSG;
		m->policy = (tcz_policy)pol;
	}
	return tcz_rb_end(&r);
}

static void wb_keys(tcz_wbuf *w, uint32_t n, unsigned char (*k)[TCZ_KEY_LEN])
{
	tcz_wb_u32(w, n);
	if (n)
		tcz_wb_bytes(w, k, (size_t)n * TCZ_KEY_LEN);
}

static int rb_keys(tcz_rbuf *r, uint32_t *n, unsigned char (**k)[TCZ_KEY_LEN])
{
	*n = tcz_rb_u32(r);
	const void *p = tcz_rb_bytes(r, (size_t)*n * TCZ_KEY_LEN);
	if (!p)
		return -EBADMSG;
	*k = malloc(*n ? (size_t)*n * TCZ_KEY_LEN : 1);
	if (!*k)
		return -ENOMEM;
	memcpy(*k, p, (size_t)*n * TCZ_KEY_LEN);
	return 0;
}

int tcz__tensor_encode(const tcz_tensor *t, tcz_wbuf *w)
{
	tcz_wb_u32(w, TENSOR_MAGIC2);
	tcz_wb_str(w, t->name);
	tcz_wb_u8(w, (uint8_t)t->dtype);
	tcz_wb_u32(w, t->ndim);
	for (uint32_t i = 0; i < t->ndim; i++)
		tcz_wb_u64(w, t->shape[i]);
	tcz_wb_u8(w, (uint8_t)t->codec);
	tcz_wb_u32(w, t->bits);
	tcz_wb_u32(w, t->group_len);
	tcz_wb_u32(w, t->tt_order);
	for (uint32_t i = 0; i < t->tt_order; i++)
		tcz_wb_u64(w, t->tt_modes[i]);
	for (uint32_t i = 0; t->tt_order && i <= t->tt_order; i++)
		tcz_wb_u64(w, t->tt_ranks[i]);
	tcz_wb_u32(w, t->level);
	tcz_wb_u32(w, t->chunk_bytes);
	wb_keys(w, t->n_chunks, t->chunks);
	tcz_wb_u64(w, t->stored_bytes);
	tcz_wb_f64(w, t->rel_error);
	tcz_wb_f64(w, t->max_abs);
	tcz_wb_u32(w, t->gen);
	tcz_wb_u32(w, t->tflags);
	tcz_wb_u64(w, t->mtime);
	return tcz_rec_finish(w);
}

static int mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
	if (a && b > UINT64_MAX / a)
		return 0;
	*out = a * b;
	return 1;
}

int tcz__tensor_decode(const void *p, size_t n, tcz_tensor *t)
{
	tcz_rbuf r;
	memset(t, 0, sizeof *t);
	if (tcz_rec_open(&r, p, n))
		return -EIO;
	uint32_t magic = tcz_rb_u32(&r);
	if (magic != TENSOR_MAGIC && magic != TENSOR_MAGIC2)
		return -EBADMSG;
	t->name = tcz_rb_strdup(&r);
	t->dtype = (tcz_dtype)tcz_rb_u8(&r);
	t->ndim = tcz_rb_u32(&r);
	if (r.err || t->ndim > TCZ_MAX_DIMS || tcz_dtype_size(t->dtype) == 0)
		return -EBADMSG;
	t->shape = calloc(t->ndim + 1, sizeof *t->shape);
	if (!t->shape)
		return -ENOMEM;
	uint64_t numel = 1;
	for (uint32_t i = 0; i < t->ndim; i++) {
		t->shape[i] = tcz_rb_u64(&r);
		if (!mul_ok(numel, t->shape[i], &numel))
			return -EBADMSG;
	}
	t->numel = numel;
	if (!mul_ok(numel, tcz_dtype_size(t->dtype), &t->nbytes))
		return -EBADMSG;
	t->codec = (tcz_codec)tcz_rb_u8(&r);
	t->bits = tcz_rb_u32(&r);
	t->group_len = tcz_rb_u32(&r);
	t->tt_order = tcz_rb_u32(&r);
	if (r.err || t->tt_order > 64)
		return -EBADMSG;
	if (t->tt_order) {
		t->tt_modes = calloc(t->tt_order, sizeof *t->tt_modes);
		t->tt_ranks = calloc(t->tt_order + 1, sizeof *t->tt_ranks);
		if (!t->tt_modes || !t->tt_ranks)
			return -ENOMEM;
		uint64_t prod = 1;
		for (uint32_t i = 0; i < t->tt_order; i++) {
			t->tt_modes[i] = tcz_rb_u64(&r);
			if (!mul_ok(prod, t->tt_modes[i], &prod))
				return -EBADMSG;
		}
		for (uint32_t i = 0; i <= t->tt_order; i++)
			t->tt_ranks[i] = tcz_rb_u64(&r);
		if (prod != numel)
			return -EBADMSG;
	}
	t->level = tcz_rb_u32(&r);
	t->chunk_bytes = tcz_rb_u32(&r);
	int rc = rb_keys(&r, &t->n_chunks, &t->chunks);
	if (rc)
		return rc;
	t->stored_bytes = tcz_rb_u64(&r);
	t->rel_error = tcz_rb_f64(&r);
	t->max_abs = tcz_rb_f64(&r);
	if (magic == TENSOR_MAGIC2) {
		t->gen = tcz_rb_u32(&r);
		t->tflags = tcz_rb_u32(&r);
		t->mtime = tcz_rb_u64(&r);
		if (t->tflags & ~TCZ_TENSOR_ERR_BOUND)
			return -EBADMSG;
	}
	if ((rc = tcz_rb_end(&r)) != 0)
		return rc;

	/* consistency: the readers index with these without checking */
	size_t es = tcz_dtype_size(t->dtype);
	if (t->codec > TCZ_CODEC_TT || t->chunk_bytes > TCZ_CHUNK_MAX ||
	    (t->nbytes && (t->chunk_bytes == 0 || t->chunk_bytes % es)))
		return -EBADMSG;
	uint64_t want = t->nbytes ? ceil_div(t->nbytes, t->chunk_bytes) : 0;
	if (t->codec == TCZ_CODEC_TT) {
		if (t->tt_order < 2 || t->n_chunks != 0 ||
		    !tcz_dtype_is_float(t->dtype))
			return -EBADMSG;
	} else if (t->n_chunks != want || t->tt_order != 0) {
		return -EBADMSG;
	}
	if (t->codec == TCZ_CODEC_QUANT &&
	    (!tcz_dtype_is_float(t->dtype) || t->group_len == 0 ||
	     (t->chunk_bytes / es) % t->group_len))
		return -EBADMSG;
	return 0;
}

int tcz__blob_encode(const tcz_blob *b, tcz_wbuf *w)
{
	tcz_wb_u32(w, BLOB_MAGIC);
	tcz_wb_u64(w, b->length);
	tcz_wb_u32(w, b->chunk_bytes);
	wb_keys(w, b->n_chunks, b->chunks);
	tcz_wb_u64(w, b->stored_bytes);
	return tcz_rec_finish(w);
}

int tcz__blob_decode(const void *p, size_t n, tcz_blob *b)
{
	tcz_rbuf r;
	memset(b, 0, sizeof *b);
	if (tcz_rec_open(&r, p, n))
		return -EIO;
	if (tcz_rb_u32(&r) != BLOB_MAGIC)
		return -EBADMSG;
	b->length = tcz_rb_u64(&r);
	b->chunk_bytes = tcz_rb_u32(&r);
	int rc = rb_keys(&r, &b->n_chunks, &b->chunks);
	if (rc)
		return rc;
	b->stored_bytes = tcz_rb_u64(&r);
	if ((rc = tcz_rb_end(&r)) != 0)
		return rc;
	if (b->chunk_bytes > TCZ_CHUNK_MAX ||
	    (b->length && b->chunk_bytes == 0) ||
	    b->n_chunks != (b->length ? ceil_div(b->length, b->chunk_bytes)
				      : 0))
		return -EBADMSG;
	return 0;
}

char *tcz__tensor_record_name(const void *p, size_t n)
{
	tcz_rbuf r = {p, n >= 8 ? n - 8 : 0, 0, 0};
	uint32_t magic = tcz_rb_u32(&r);
	if (magic != TENSOR_MAGIC && magic != TENSOR_MAGIC2)
		return NULL;
	char *name = tcz_rb_strdup(&r);
	if (!name)
		return NULL;
	for (const char *c = name; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f) {
			free(name);
			return NULL;
		}
	return name;
}

int tcz__model_record_id(const void *p, size_t n, uint64_t *id)
{
	const unsigned char *b = p;
	if (n < 16 + 8)
		return -EBADMSG;
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | b[8 + i];
	*id = v;
	return 0;
}

int tcz__model_record_ident(const void *p, size_t n, uint64_t *id,
			    uint64_t *rev, uint64_t *iid)
{
	tcz_model m = {0};
	int rc = tcz__model_decode(p, n, &m);
	*id = m.id;
	*rev = m.rev;
	if (iid)
		*iid = m.iid;
	tcz__model_record_clear(&m);
	return rc;
}

int tcz__model_record_rev(const void *p, size_t n, uint64_t *id,
			  uint64_t *rev)
{
	return tcz__model_record_ident(p, n, id, rev, NULL);
}

void tcz__model_record_clear(tcz_model *m)
{
	for (uint32_t i = 0; i < m->n_files && m->files; i++) {
		free(m->files[i].name);
		free(m->files[i].extents);
	}
	free(m->files);
	free(m->source);
	free(m->profile);
	m->files = NULL;
	m->source = m->profile = NULL;
	m->n_files = 0;
}

int tcz__model_check(const tcz_model *m)
{
	for (uint32_t i = 0; i < m->n_files; i++) {
		const tcz_file *f = &m->files[i];
		uint64_t off = 0;
		if (!f->name || !*f->name)
			return -EBADMSG;
		for (uint32_t e = 0; e < f->n_extents; e++) {
			const tcz_extent *x = &f->extents[e];
			uint64_t len;
			if (x->offset != off)
				return -EBADMSG;
			if (x->kind == TCZ_EXT_TENSOR && x->index < m->n_tensors)
				len = m->tensors[x->index].nbytes;
			else if (x->kind == TCZ_EXT_BLOB && x->index < m->n_blobs)
				len = m->blobs[x->index].length;
			else
				return -EBADMSG;
			if (x->length != len || off + len < off)
				return -EBADMSG;
			off += len;
		}
		if (off != f->size)
			return -EBADMSG;
	}
	return 0;
}
