/* The asic view of a model: its matrices laid out per device profile,
 * images read piecewise from layers/ values and TT cores, checksums kept
 * in the `asicsums` table. */
#include "store/aview.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "codec/dtype.h"
#include "codec/ggml.h"
#include "store/internal.h"
#include "store/record.h"

#define SUM_MAGIC 0x4d555341u /* "ASUM" */
#define SUM_OFF 120u	      /* the checksum field of the image header */

/* A tensor that is part of the image. */
typedef struct tin {
	uint32_t t;
	int tt;
	uint32_t npy;	   /* dense: its layers/ file */
	uint64_t data_off; /* dense: where the values start in it */
	tcz_dtype dt;	   /* dense: the values' dtype there */
	_Atomic(float *) cores; /* TT: loaded on first use */
} tin;

/* One matrix of the layout's input. */
typedef struct amat {
	uint32_t tin;
	uint64_t core_off; /* TT: floats before this core */
	uint64_t r_right;
} amat;

typedef struct aprof {
	tcz_dprofile d;
	tcz_asic_layout *l; /* NULL: refused */
	char *refusal;
	char *json;
	size_t json_len;
	uint64_t key[2];    /* asicsums key: bytes identity, fingerprint */
	int sum_state;	    /* 0 unknown, 1 stored, 2 computed (unsaved) */
	uint64_t sum;	    /* guarded by tcz_aview.lock */
} aprof;

struct tcz_aview {
	atomic_uint refs;
	tcz_mview *v;
	tin *tins;
	size_t ntins;
	amat *mats;
	size_t nmats;
	aprof *prof;
	size_t nprof;
	tcz_afile *files;
	char **fnames;
	uint32_t nfiles;
	pthread_mutex_t lock; /* guards aprof.sum_state and sum */
};

/* ---- building ------------------------------------------------------------ */

static int is_float(const tcz_tensor *tn)
{
	if (tn->qtype)
		return tcz_ggml_can_dequantize(tn->qtype - 1);
	return tcz_dtype_is_float(tn->dtype);
}

/* The tensors and matrices of v: what the image of every profile holds. */
static int collect(tcz_aview *a)
{
	const tcz_model *m = tcz_mview_model(a->v);
	size_t nm = 0;
	a->tins = calloc(m->n_tensors ? m->n_tensors : 1, sizeof *a->tins);
	if (!a->tins)
		return -ENOMEM;
	for (uint32_t t = 0; t < m->n_tensors; t++) {
		const tcz_tensor *tn = &m->tensors[t];
		tin *ti = &a->tins[a->ntins];
		memset(ti, 0, sizeof *ti);
		ti->t = t;
		if (tn->codec == TCZ_CODEC_TT) {
			ti->tt = 1;
			nm += tn->tt_order;
			a->ntins++;
			continue;
		}
		uint32_t f = tcz_mview_npy_file(a->v, t);
		if (!is_float(tn) || f == UINT32_MAX)
			continue; /* integers, bools: not weights of a product */
		/* layers/ presents BF16 and GGUF blocks as f32 */
		ti->dt = tn->qtype || tn->dtype == TCZ_DT_BF16 ? TCZ_DT_F32
							       : tn->dtype;
		uint64_t numel = tn->numel;
		if (tn->qtype) {
			numel = 1;
			for (uint32_t d = 0; d < tn->qndim; d++)
				numel *= tn->qshape[d];
		}
		ti->npy = f;
		ti->data_off = tcz_mview_file(a->v, f)->size -
			       numel * tcz_dtype_size(ti->dt);
		nm++;
		a->ntins++;
	}
	a->mats = calloc(nm ? nm : 1, sizeof *a->mats);
	return a->mats ? 0 : -ENOMEM;
}

/* The layout input: one matrix per dense tensor, one per TT core. */
static int matrices(tcz_aview *a, tcz_asic_matrix **out, char *err,
		    size_t errlen)
{
	const tcz_model *m = tcz_mview_model(a->v);
	tcz_asic_matrix *mx = calloc(a->ntins ? a->ntins * 16 : 1, sizeof *mx);
	if (!mx)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < a->ntins; i++) {
		const tcz_tensor *tn = &m->tensors[a->tins[i].t];
		if (a->tins[i].tt) {
			uint64_t off = 0;
			if (tn->tt_order > TCZ_ASIC_MAX_TT_CORES) {
				free(mx);
				return tcz__errf(-EINVAL, err, errlen,
						 "tensor '%s': %u TT cores, more "
						 "than an image holds",
						 tn->name, tn->tt_order);
			}
			for (uint32_t k = 0; k < tn->tt_order; k++) {
				mx[n] = (tcz_asic_matrix){tn->name, strlen(tn->name), k,
							  tn->tt_ranks[k], tn->tt_modes[k],
							  tn->tt_ranks[k + 1]};
				a->mats[n] = (amat){(uint32_t)i, off, tn->tt_ranks[k + 1]};
				off += tn->tt_ranks[k] * tn->tt_modes[k] *
				       tn->tt_ranks[k + 1];
				n++;
			}
			continue;
		}
		uint64_t rows, cols;
		int rc = tn->qtype ? tcz_asic_dense_matrix(tn->qndim, tn->qshape,
							   &rows, &cols)
				   : tcz_asic_dense_matrix(tn->ndim, tn->shape,
							   &rows, &cols);
		if (rc) {
			free(mx);
			return tcz__errf(rc, err, errlen, "tensor '%s': too large",
					 tn->name);
		}
		mx[n] = (tcz_asic_matrix){tn->name, strlen(tn->name), 0, 1, rows, cols};
		a->mats[n] = (amat){(uint32_t)i, 0, cols};
		n++;
	}
	a->nmats = n;
	*out = mx;
	return 0;
}

static uint64_t fingerprint(const tcz_asic_profile *p)
{
	unsigned char b[64] = {0};
	memcpy(b, p->name, strlen(p->name));
	tcz_be32(b + 32, p->cores);
	tcz_be64(b + 36, p->sram_bytes);
	tcz_be32(b + 44, p->tile_bytes);
	tcz_be32(b + 48, p->lanes);
	tcz_be32(b + 52, (uint32_t)p->dtype);
	tcz_be32(b + 56, TCZ_ASIC_VERSION);
	return XXH3_64bits(b, sizeof b);
}

static int by_fname(const void *x, const void *y)
{
	return strcmp(((const tcz_afile *)x)->name, ((const tcz_afile *)y)->name);
}

static int add_file(tcz_aview *a, const char *name, tcz_afile_kind kind,
		    uint32_t k, uint64_t size)
{
	char *nm = strdup(name);
	if (!nm)
		return -ENOMEM;
	a->fnames[a->nfiles] = nm;
	a->files[a->nfiles++] = (tcz_afile){nm, kind, k, size};
	return 0;
}

/* Checksums the store kept for these images. */
static void stored_sums(tcz_aview *a)
{
	tcz_store *s = tcz__mview_store(a->v);
	tcz_snap *sn;
	if (!s->has_asic || tcz_snap_begin(s, &sn))
		return;
	for (size_t k = 0; k < a->nprof; k++) {
		unsigned char kb[16];
		tcz_be64(kb, a->prof[k].key[0]);
		tcz_be64(kb + 8, a->prof[k].key[1]);
		MDB_val key = {16, kb}, val;
		tcz_rbuf r;
		if (!a->prof[k].l || mdb_get(sn->txn, s->asicsums, &key, &val) ||
		    tcz_rec_open(&r, val.mv_data, val.mv_size) ||
		    tcz_rb_u32(&r) != SUM_MAGIC)
			continue; /* absent or damaged: computed again */
		uint64_t sum = tcz_rb_u64(&r);
		if (tcz_rb_end(&r) == 0) {
			a->prof[k].sum = sum;
			a->prof[k].sum_state = 1;
		}
	}
	tcz_snap_end(sn);
}

int tcz_aview_open(tcz_mview *v, const tcz_dprofile *profiles, size_t n,
		   tcz_aview **out)
{
	tcz_aview *a = calloc(1, sizeof *a);
	if (!a)
		return -ENOMEM;
	pthread_mutex_init(&a->lock, NULL);
	atomic_init(&a->refs, 1);
	a->v = tcz_mview_ref(v);
	a->prof = calloc(n ? n : 1, sizeof *a->prof);
	a->files = calloc(2 * n + 1, sizeof *a->files);
	a->fnames = calloc(2 * n + 1, sizeof *a->fnames);
	int rc = a->prof && a->files && a->fnames ? collect(a) : -ENOMEM;
	char err[512] = "";
	tcz_asic_matrix *mx = NULL;
	int bad = rc == 0 ? matrices(a, &mx, err, sizeof err) : 0;
	if (bad == -ENOMEM)
		rc = bad;
	const tcz_model *m = tcz_mview_model(v);
	for (size_t k = 0; rc == 0 && k < n; k++) {
		aprof *p = &a->prof[a->nprof++];
		p->d = profiles[k];
		p->key[0] = m->iid ? m->iid : m->id;
		p->key[1] = fingerprint(&p->d.p);
		int e = bad ? bad
			    : tcz_asic_layout_new(&p->d.p, mx, a->nmats, &p->l, err,
						  sizeof err);
		if (e == -ENOMEM) {
			rc = e;
			break;
		}
		if (e) {
			p->refusal = strdup(err[0] ? err : "cannot be laid out");
			rc = p->refusal ? 0 : -ENOMEM;
			continue;
		}
		json_t *j = tcz_asic_layout_json(p->l);
		char *txt = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
		json_decref(j);
		if (!txt || !(p->json = malloc(strlen(txt) + 2))) {
			free(txt);
			rc = -ENOMEM;
			break;
		}
		p->json_len = strlen(txt) + 1;
		memcpy(p->json, txt, p->json_len - 1);
		p->json[p->json_len - 1] = '\n';
		free(txt);
		char name[64];
		snprintf(name, sizeof name, "%s.img", p->d.p.name);
		rc = add_file(a, name, TCZ_AF_IMAGE, (uint32_t)k, p->l->image_bytes);
		if (strcmp(p->d.p.name, TCZ_PROFILE_DEFAULT) == 0)
			snprintf(name, sizeof name, "layout.json");
		else
			snprintf(name, sizeof name, "%s.layout.json", p->d.p.name);
		if (rc == 0)
			rc = add_file(a, name, TCZ_AF_LAYOUT, (uint32_t)k, p->json_len);
	}
	free(mx);
	if (rc) {
		tcz_aview_put(a);
		return rc;
	}
	qsort(a->files, a->nfiles, sizeof *a->files, by_fname);
	stored_sums(a);
	*out = a;
	return 0;
}

tcz_aview *tcz_aview_ref(tcz_aview *a)
{
	atomic_fetch_add(&a->refs, 1);
	return a;
}

void tcz_aview_put(tcz_aview *a)
{
	if (!a || atomic_fetch_sub(&a->refs, 1) != 1)
		return;
	for (size_t i = 0; a->tins && i < a->ntins; i++)
		free(atomic_load(&a->tins[i].cores));
	for (size_t k = 0; k < a->nprof; k++) {
		tcz_asic_layout_free(a->prof[k].l);
		free(a->prof[k].refusal);
		free(a->prof[k].json);
	}
	for (uint32_t i = 0; a->fnames && i < a->nfiles; i++)
		free(a->fnames[i]);
	free(a->fnames);
	free(a->files);
	free(a->prof);
	free(a->tins);
	free(a->mats);
	tcz_mview_put(a->v);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

const tcz_mview *tcz_aview_model(const tcz_aview *a)
{
	return a->v;
}

uint32_t tcz_aview_nfiles(const tcz_aview *a)
{
	return a->nfiles;
}

const tcz_afile *tcz_aview_file(const tcz_aview *a, uint32_t i)
{
	return &a->files[i];
}

size_t tcz_aview_nprofiles(const tcz_aview *a)
{
	return a->nprof;
}

const tcz_dprofile *tcz_aview_profile(const tcz_aview *a, size_t k)
{
	return &a->prof[k].d;
}

const char *tcz_aview_refusal(const tcz_aview *a, size_t k)
{
	return a->prof[k].refusal;
}

int tcz_aview_lookup(const tcz_aview *a, const char *name, uint32_t *i)
{
	for (uint32_t f = 0; f < a->nfiles; f++)
		if (strcmp(a->files[f].name, name) == 0) {
			*i = f;
			return 0;
		}
	return -ENOENT;
}

int tcz_aview_image(const tcz_aview *a, const char *profile, uint32_t *i)
{
	for (size_t k = 0; k < a->nprof; k++) {
		if (strcmp(a->prof[k].d.p.name, profile) != 0)
			continue;
		for (uint32_t f = 0; f < a->nfiles; f++)
			if (a->files[f].kind == TCZ_AF_IMAGE && a->files[f].profile == k) {
				*i = f;
				return 0;
			}
		return -ENOSPC;
	}
	return -ENOENT;
}

/* ---- reading ------------------------------------------------------------- */

typedef struct fctx {
	tcz_aview *a;
	tcz_reader *r;
	tcz_aview_read_fn rd;
	void *ctx;
} fctx;

static int read_file(fctx *c, uint32_t file, uint64_t off, size_t len,
		     void *dst)
{
	if (c->rd)
		return c->rd(c->ctx, file, off, len, dst);
	size_t done = 0;
	while (done < len) {
		size_t got;
		int rc = tcz_view_read(c->r, c->a->v, file, off + done, len - done,
				       (char *)dst + done, &got, NULL);
		if (rc)
			return rc;
		if (got == 0)
			return -EIO; /* the file is shorter than its view says */
		done += got;
	}
	return 0;
}

/* A TT tensor's cores, loaded once (outside any lock; a thread that
 * loses the race frees its copy). */
static int tt_cores(fctx *c, tin *ti, const float **out)
{
	float *p = atomic_load(&ti->cores);
	if (!p) {
		size_t n = tcz_view_tt_floats(c->a->v, ti->t);
		float *mine = malloc((n ? n : 1) * sizeof *mine);
		if (!mine)
			return -ENOMEM;
		int rc = tcz_view_tt_cores(c->r, c->a->v, ti->t, mine);
		if (rc) {
			free(mine);
			return rc;
		}
		float *expected = NULL;
		if (atomic_compare_exchange_strong(&ti->cores, &expected, mine)) {
			p = mine;
		} else {
			free(mine);
			p = expected;
		}
	}
	*out = p;
	return 0;
}

static int fetch(void *ctx, size_t matrix, uint64_t row0, uint64_t nrows,
		 float *out)
{
	fctx *c = ctx;
	const amat *am = &c->a->mats[matrix];
	tin *ti = &c->a->tins[am->tin];
	uint64_t n = nrows * am->r_right;
	if (ti->tt) {
		const float *cores;
		int rc = tt_cores(c, ti, &cores);
		if (rc == 0)
			memcpy(out, cores + am->core_off + row0 * am->r_right,
			       (size_t)n * sizeof *out);
		return rc;
	}
	size_t es = tcz_dtype_size(ti->dt);
	uint64_t off = ti->data_off + row0 * am->r_right * es;
	if (ti->dt == TCZ_DT_F32)
		return read_file(c, ti->npy, off, (size_t)n * es, out);
	void *tmp = malloc((size_t)n * es + 1);
	if (!tmp)
		return -ENOMEM;
	int rc = read_file(c, ti->npy, off, (size_t)n * es, tmp);
	if (rc == 0)
		rc = tcz_dtype_to_f32(ti->dt, tmp, (size_t)n, out);
	free(tmp);
	return rc;
}

/* The checksum of profile k's image: kept, or computed now. */
static int image_sum(fctx *c, aprof *p, uint64_t *out)
{
	pthread_mutex_lock(&c->a->lock);
	int known = p->sum_state != 0;
	uint64_t sum = p->sum;
	pthread_mutex_unlock(&c->a->lock);
	if (!known) {
		int rc = tcz_asic_checksum(p->l, fetch, c, &sum);
		if (rc)
			return rc;
		pthread_mutex_lock(&c->a->lock);
		if (p->sum_state == 0) {
			p->sum = sum;
			p->sum_state = 2;
		}
		pthread_mutex_unlock(&c->a->lock);
	}
	*out = sum;
	return 0;
}

int tcz_aview_read(tcz_aview *a, uint32_t i, uint64_t off, size_t len,
		   void *dst, size_t *got, tcz_reader *r, tcz_aview_read_fn rd,
		   void *ctx)
{
	*got = 0;
	if (i >= a->nfiles)
		return -EINVAL;
	const tcz_afile *f = &a->files[i];
	aprof *p = &a->prof[f->profile];
	if (off >= f->size)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	if (f->kind == TCZ_AF_LAYOUT) {
		memcpy(dst, p->json + off, len);
		*got = len;
		return 0;
	}
	fctx c = {a, r, rd, ctx};
	uint64_t sum = 0;
	int rc = 0;
	if (off < SUM_OFF + 8 && off + len > SUM_OFF)
		rc = image_sum(&c, p, &sum);
	if (rc == 0)
		rc = tcz_asic_read(p->l, off, len, dst, fetch, &c);
	if (rc)
		return rc;
	/* the layout's header carries no checksum: it is patched in, so
	 * the layout is never written while other threads read it */
	unsigned char s8[8];
	for (int b = 0; b < 8; b++)
		s8[b] = (unsigned char)(sum >> (8 * b));
	for (uint64_t b = SUM_OFF; b < SUM_OFF + 8; b++)
		if (b >= off && b < off + len)
			((unsigned char *)dst)[b - off] = s8[b - SUM_OFF];
	*got = len;
	return 0;
}

/* ---- keeping checksums --------------------------------------------------- */

typedef struct save_arg {
	tcz_store *s;
	tcz_aview *a;
	uint64_t sums[64][3];
	size_t idx[64];
	size_t n;
} save_arg;

static int save_fn(void *arg, MDB_txn *txn)
{
	save_arg *sa = arg;
	for (size_t k = 0; k < sa->n; k++) {
		unsigned char kb[16];
		tcz_be64(kb, sa->sums[k][0]);
		tcz_be64(kb + 8, sa->sums[k][1]);
		tcz_wbuf w;
		tcz_wb_init(&w);
		tcz_wb_u32(&w, SUM_MAGIC);
		tcz_wb_u64(&w, sa->sums[k][2]);
		int rc = tcz_rec_finish(&w);
		MDB_val key = {16, kb}, val = {w.len, w.p};
		if (rc == 0)
			rc = tcz__mdb_err(mdb_put(txn, sa->s->asicsums, &key, &val, 0));
		tcz_wb_free(&w);
		if (rc)
			return rc;
	}
	return 0;
}

int tcz_aview_save(tcz_aview *a, tcz_store *s)
{
	if (!s->has_asic)
		return -EROFS;
	save_arg *sa = calloc(1, sizeof *sa);
	if (!sa)
		return -ENOMEM;
	sa->s = s;
	pthread_mutex_lock(&a->lock);
	for (size_t k = 0; k < a->nprof && sa->n < 64; k++)
		if (a->prof[k].sum_state == 2) {
			sa->sums[sa->n][0] = a->prof[k].key[0];
			sa->sums[sa->n][1] = a->prof[k].key[1];
			sa->sums[sa->n][2] = a->prof[k].sum;
			sa->idx[sa->n++] = k;
		}
	pthread_mutex_unlock(&a->lock);
	int rc = sa->n ? tcz__write(s, save_fn, sa) : 0;
	if (rc == 0) {
		pthread_mutex_lock(&a->lock);
		for (size_t k = 0; k < sa->n; k++)
			a->prof[sa->idx[k]].sum_state = 1;
		pthread_mutex_unlock(&a->lock);
	}
	free(sa);
	return rc;
}
