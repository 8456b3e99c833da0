/* Views of the store and the table of loaded models. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "codec/tier.h"
#include "fs/internal.h"
#include "fs/names.h"
#include "store/npy.h"

/* A view older than this is renewed even when no model changed: an open
 * LMDB snapshot keeps the pages freed after it (by the daemon's own
 * statistics writes, say) from being reused, and the file would grow. */
#define VIEW_MAX_AGE 10

static uint64_t mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static fs_view *view_new(tczfs *fs, int *err)
{
	fs_view *v = calloc(1, sizeof *v);
	if (!v) {
		*err = -ENOMEM;
		return NULL;
	}
	*err = tcz_snap_begin(fs->store, &v->sn);
	if (*err) {
		free(v);
		return NULL;
	}
	v->gen = tcz_snap_generation(v->sn);
	v->born = mono_s();
	atomic_init(&v->refs, 1);
	return v;
}

void fs_view_put(tczfs *fs, fs_view *v)
{
	(void)fs;
	if (v && atomic_fetch_sub(&v->refs, 1) == 1) {
		tcz_snap_end(v->sn);
		free(v);
	}
}

fs_view *fs_view_get(tczfs *fs, int refresh)
{
	if (refresh)
		fs_refresh(fs);
	pthread_mutex_lock(&fs->lock);
	fs_view *v = fs->view;
	atomic_fetch_add(&v->refs, 1);
	pthread_mutex_unlock(&fs->lock);
	return v;
}

static void model_free(fs_model *fm)
{
	if (!fm)
		return;
	uint32_t n = fm->m ? fm->m->n_tensors : 0;
	for (uint32_t i = 0; i < n; i++) {
		if (fm->npy_name)
			free(fm->npy_name[i]);
		if (fm->npy_hdr)
			free(fm->npy_hdr[i]);
	}
	free(fm->npy_name);
	free(fm->npy_hdr);
	free(fm->npy_hlen);
	free(fm->npy_size);
	free(fm->npy_order);
	free(fm->file_order);
	free(fm->st);
	free(fm->name);
	tcz_model_free(fm->m);
	free(fm);
}

void fs_model_put(tczfs *fs, fs_model *fm)
{
	(void)fs;
	if (fm && atomic_fetch_sub(&fm->refs, 1) == 1)
		model_free(fm);
}

/* Marks models removed from the store as gone. They stay in the table,
 * so inodes of files still open resolve (fstat works), until nothing but
 * the table holds them. Called with fs->lock held. */
static void mark_gone(tczfs *fs, fs_view *v)
{
	for (size_t i = 0; i < fs->n_models; i++) {
		fs_model *fm = fs->models[i];
		uint64_t id;
		if (atomic_load(&fm->gone) ||
		    (tcz_snap_model_id(v->sn, fm->name, &id) == 0 && id == fm->id))
			continue;
		atomic_store(&fm->gone, 1);
		fs_log(fs, LOG_INFO, "model %s was removed from the store",
		       fm->name);
	}
}

/* Drops gone models only the table still holds. Called with fs->lock. */
static void prune(tczfs *fs)
{
	size_t k = 0;
	for (size_t i = 0; i < fs->n_models; i++) {
		fs_model *fm = fs->models[i];
		if (atomic_load(&fm->gone) && atomic_load(&fm->refs) == 1)
			fs_model_put(fs, fm);
		else
			fs->models[k++] = fm;
	}
	fs->n_models = k;
}

int fs_refresh(tczfs *fs)
{
	uint64_t g;
	int rc = tcz_store_generation(fs->store, &g);
	if (rc) {
		/* e.g. another process grew the map past ours while views are
		 * open: say so, now and then, rather than go quietly stale */
		static _Atomic uint64_t last_warn;
		uint64_t now = mono_s();
		if (now - atomic_load(&last_warn) >= 60) {
			atomic_store(&last_warn, now);
			fs_log(fs, LOG_WARNING,
			       "cannot see store changes: %s (%s); a remount "
			       "will",
			       strerror(-rc), tcz_store_errmsg());
		}
		return rc;
	}
	pthread_mutex_lock(&fs->lock);
	int fresh = fs->view->gen == g &&
		    mono_s() - fs->view->born < VIEW_MAX_AGE;
	prune(fs);
	pthread_mutex_unlock(&fs->lock);
	if (fresh)
		return 0;
	fs_view *nv = view_new(fs, &rc);
	if (!nv) {
		fs_log(fs, LOG_WARNING, "cannot open a new view of the store: %s",
		       strerror(-rc));
		return rc;
	}
	fs_view *old = NULL;
	pthread_mutex_lock(&fs->lock);
	if (nv->gen >= fs->view->gen) {
		old = fs->view;
		fs->view = nv;
		mark_gone(fs, nv);
	} else {
		old = nv; /* another thread was faster */
	}
	pthread_mutex_unlock(&fs->lock);
	fs_view_put(fs, old);
	return 0;
}

/* Index in the sorted table of the first model with id >= id. */
static size_t table_pos(tczfs *fs, uint64_t id)
{
	size_t lo = 0, hi = fs->n_models;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (fs->models[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

fs_model *fs_model_by_id(tczfs *fs, uint64_t id)
{
	fs_model *fm = NULL;
	pthread_mutex_lock(&fs->lock);
	size_t p = table_pos(fs, id);
	if (p < fs->n_models && fs->models[p]->id == id) {
		fm = fs->models[p];
		atomic_fetch_add(&fm->refs, 1);
	}
	pthread_mutex_unlock(&fs->lock);
	return fm;
}

static fs_model *sort_fm; /* qsort has no context argument */

static int by_npy_name(const void *a, const void *b)
{
	return strcmp(sort_fm->npy_name[*(const uint32_t *)a],
		      sort_fm->npy_name[*(const uint32_t *)b]);
}

static int by_file_name(const void *a, const void *b)
{
	return strcmp(sort_fm->m->files[*(const uint32_t *)a].name,
		      sort_fm->m->files[*(const uint32_t *)b].name);
}

static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;

static int model_build(fs_view *v, tcz_model *m, fs_model **out)
{
	fs_model *fm = calloc(1, sizeof *fm);
	if (!fm)
		return -ENOMEM;
	fm->m = m;
	fm->id = m->id;
	fm->name = strdup(m->name);
	uint32_t n = m->n_tensors, nf = m->n_files;
	size_t nn = n ? n : 1;
	fm->npy_name = calloc(nn, sizeof *fm->npy_name);
	fm->npy_hdr = calloc(nn, sizeof *fm->npy_hdr);
	fm->npy_hlen = calloc(nn, sizeof *fm->npy_hlen);
	fm->npy_size = calloc(nn, sizeof *fm->npy_size);
	fm->npy_order = calloc(nn, sizeof *fm->npy_order);
	fm->file_order = calloc(nf ? nf : 1, sizeof *fm->file_order);
	fm->st = calloc(nn, sizeof *fm->st);
	if (!fm->name || !fm->npy_name || !fm->npy_hdr || !fm->npy_hlen ||
	    !fm->npy_size || !fm->npy_order || !fm->file_order || !fm->st) {
		model_free(fm);
		return -ENOMEM;
	}
	for (uint32_t t = 0; t < n; t++) {
		const tcz_tensor *tn = &m->tensors[t];
		char name[TCZ_FS_NAME_MAX + 1], hdr[1024];
		size_t hl;
		tcz_fs_npy_name(tn->name, name);
		int rc = tcz_npy_header(tn->dtype, tn->ndim, tn->shape, hdr,
					sizeof hdr, &hl);
		fm->npy_name[t] = strdup(name);
		fm->npy_hdr[t] = malloc(hl);
		if (rc || !fm->npy_name[t] || !fm->npy_hdr[t]) {
			model_free(fm);
			return rc ? rc : -ENOMEM;
		}
		memcpy(fm->npy_hdr[t], hdr, hl);
		fm->npy_hlen[t] = (uint32_t)hl;
		fm->npy_size[t] = hl + tn->numel * tcz_dtype_size(
							tcz_npy_dtype(tn->dtype));
		fm->npy_order[t] = t;
	}
	for (uint32_t f = 0; f < nf; f++)
		fm->file_order[f] = f;
	pthread_mutex_lock(&sort_lock);
	sort_fm = fm;
	qsort(fm->npy_order, n, sizeof *fm->npy_order, by_npy_name);
	qsort(fm->file_order, nf, sizeof *fm->file_order, by_file_name);
	pthread_mutex_unlock(&sort_lock);

	/* statistics saved by earlier mounts */
	tcz_access *acc = calloc(nn, sizeof *acc);
	if (acc && tcz_snap_access(v->sn, m->id, n, acc) == 0) {
		for (uint32_t t = 0; t < n; t++) {
			atomic_init(&fm->st[t].reads, acc[t].reads);
			atomic_init(&fm->st[t].bytes, acc[t].bytes);
			atomic_init(&fm->st[t].last, acc[t].last_access);
			fm->st[t].pinned = acc[t].pinned;
		}
	} else {
		for (uint32_t t = 0; t < n; t++)
			fm->st[t].pinned = -1;
	}
	free(acc);
	atomic_init(&fm->refs, 1);
	*out = fm;
	return 0;
}

int fs_model_by_name(tczfs *fs, const char *name, fs_model **out)
{
	fs_view *v = fs_view_get(fs, 0);
	uint64_t id;
	int rc = tcz_snap_model_id(v->sn, name, &id);
	if (rc) {
		fs_view_put(fs, v);
		return rc;
	}
	fs_model *fm = fs_model_by_id(fs, id);
	if (fm) {
		fs_view_put(fs, v);
		*out = fm;
		return 0;
	}
	tcz_model *m;
	rc = tcz_snap_model(v->sn, name, &m);
	if (rc == 0)
		rc = model_build(v, m, &fm);
	else if (rc != -ENOENT)
		fs_log(fs, LOG_ERR, "cannot load model %s: %s", name,
		       tcz_store_errmsg());
	if (rc && rc != -ENOMEM && rc != -ENOENT)
		rc = -EIO;
	if (rc) {
		fs_view_put(fs, v);
		return rc;
	}
	pthread_mutex_lock(&fs->lock);
	size_t p = table_pos(fs, id);
	if (p < fs->n_models && fs->models[p]->id == id) {
		/* loaded by another thread meanwhile: use that one */
		model_free(fm);
		fm = fs->models[p];
	} else if (v->gen != fs->view->gen &&
		   (tcz_snap_model_id(fs->view->sn, name, &id) != 0 ||
		    id != fm->id)) {
		/* removed while it loaded: serve this lookup, keep it out */
		atomic_store(&fm->gone, 1);
		atomic_fetch_sub(&fm->refs, 1); /* no table reference */
	} else {
		if (fs->n_models == fs->cap) {
			size_t cap = fs->cap ? fs->cap * 2 : 16;
			fs_model **nm = realloc(fs->models, cap * sizeof *nm);
			if (!nm) {
				pthread_mutex_unlock(&fs->lock);
				model_free(fm);
				fs_view_put(fs, v);
				return -ENOMEM;
			}
			fs->models = nm;
			fs->cap = cap;
		}
		memmove(fs->models + p + 1, fs->models + p,
			(fs->n_models - p) * sizeof *fs->models);
		fs->models[p] = fm; /* the table's reference */
		fs->n_models++;
	}
	atomic_fetch_add(&fm->refs, 1);
	pthread_mutex_unlock(&fs->lock);
	fs_view_put(fs, v);
	*out = fm;
	return 0;
}

void fs_models_free(tczfs *fs)
{
	for (size_t i = 0; i < fs->n_models; i++)
		fs_model_put(fs, fs->models[i]);
	free(fs->models);
	fs->models = NULL;
	fs->n_models = fs->cap = 0;
}

int fs_flush_stats(tczfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	size_t n = fs->n_models;
	fs_model **list = malloc((n ? n : 1) * sizeof *list);
	if (!list) {
		pthread_mutex_unlock(&fs->lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		list[i] = fs->models[i];
		atomic_fetch_add(&list[i]->refs, 1);
	}
	pthread_mutex_unlock(&fs->lock);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		fs_model *fm = list[i];
		uint32_t nt = fm->m->n_tensors, k = 0;
		uint32_t *idx = malloc((nt ? nt : 1) * sizeof *idx);
		tcz_access *a = malloc((nt ? nt : 1) * sizeof *a);
		for (uint32_t t = 0; idx && a && t < nt; t++) {
			if (!atomic_exchange(&fm->st[t].dirty, 0))
				continue;
			idx[k] = t;
			a[k].reads = atomic_load(&fm->st[t].reads);
			a[k].bytes = atomic_load(&fm->st[t].bytes);
			a[k].last_access = atomic_load(&fm->st[t].last);
			a[k].pinned = fm->st[t].pinned;
			k++;
		}
		if (k && !atomic_load(&fm->gone)) {
			int r = tcz_store_put_access(fs->store, fm->id, idx, a, k);
			if (r) {
				rc = r;
				fs_log(fs, LOG_WARNING,
				       "cannot save access statistics of %s: %s",
				       fm->name, strerror(-r));
				for (uint32_t j = 0; j < k; j++)
					atomic_store(&fm->st[idx[j]].dirty, 1);
			}
		}
		free(idx);
		free(a);
		fs_model_put(fs, fm);
	}
	free(list);
	return rc;
}

const char *fs_tier_of(const fs_model *fm, uint32_t t)
{
	const fs_tstat *s = &fm->st[t];
	if (s->pinned >= 0)
		return tcz_tier_name((tcz_tier)s->pinned);
	tcz_tier_thresholds th = TCZ_TIER_THRESHOLDS_DEFAULT;
	uint64_t score = tcz_tier_score(atomic_load(&s->reads),
					atomic_load(&s->last),
					(uint64_t)time(NULL));
	return tcz_tier_name(tcz_tier_of_score(score, &th));
}
