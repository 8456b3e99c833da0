/* The table of loaded models, following the store's generation, and the
 * access statistics kept per tensor. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "codec/tier.h"
#include "fs/internal.h"

static uint64_t mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

tcz_reader *fs_reader(tczfs *fs)
{
	tcz_reader *r = pthread_getspecific(fs->reader_key);
	if (!r && tcz_reader_create(fs->store, &r) == 0) {
		tcz_reader_set_cache(r, fs->cache);
		pthread_setspecific(fs->reader_key, r);
	}
	return r;
}

static void model_free(fs_model *fm)
{
	if (!fm)
		return;
	free(fm->st);
	free(fm->name);
	tcz_mview_put(fm->v); /* unpins the content */
	free(fm);
}

fs_model *fs_model_ref(fs_model *fm)
{
	atomic_fetch_add(&fm->refs, 1);
	return fm;
}

void fs_model_put(tczfs *fs, fs_model *fm)
{
	(void)fs;
	if (fm && atomic_fetch_sub(&fm->refs, 1) == 1)
		model_free(fm);
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
	uint64_t g = 0;
	int rc = tcz_store_generation(fs->store, &g);
	int blind = rc == -EIO; /* a damaged counter: compare every time */
	if (blind)
		rc = 0;
	if (rc) {
		static _Atomic uint64_t last_warn;
		uint64_t now = mono_s();
		if (now - atomic_load(&last_warn) >= 60) {
			atomic_store(&last_warn, now);
			fs_log(fs, LOG_WARNING, "cannot see store changes: %s",
			       tcz_store_errmsg()[0] ? tcz_store_errmsg()
						     : strerror(-rc));
		}
		return rc;
	}
	pthread_mutex_lock(&fs->lock);
	int same = fs->gen_ok && fs->gen == g && !blind;
	size_t n = fs->n_models;
	uint64_t *ids = same ? NULL : malloc((n ? n : 1) * sizeof *ids);
	char **names = same ? NULL : calloc(n ? n : 1, sizeof *names);
	for (size_t i = 0; !same && ids && names && i < n; i++) {
		ids[i] = fs->models[i]->id;
		names[i] = strdup(fs->models[i]->name);
	}
	prune(fs);
	pthread_mutex_unlock(&fs->lock);
	if (same)
		return 0;
	if (!ids || !names) {
		free(ids);
		if (names)
			tcz_names_free(names, n);
		return -ENOMEM;
	}
	/* which loaded models are gone: a short snapshot, no lock held */
	tcz_snap *sn = NULL;
	rc = tcz_snap_begin(fs->store, &sn);
	uint8_t *gone = calloc(n ? n : 1, 1);
	for (size_t i = 0; rc == 0 && gone && i < n; i++) {
		uint64_t id;
		gone[i] = !names[i] || tcz_snap_model_id(sn, names[i], &id) != 0 ||
			  id != ids[i];
	}
	tcz_snap_end(sn);
	if (rc == 0 && gone) {
		pthread_mutex_lock(&fs->lock);
		for (size_t i = 0; i < n; i++) {
			if (!gone[i])
				continue;
			size_t p = table_pos(fs, ids[i]);
			if (p < fs->n_models && fs->models[p]->id == ids[i] &&
			    !atomic_exchange(&fs->models[p]->gone, 1))
				fs_log(fs, LOG_INFO,
				       "model %s was removed from the store",
				       fs->models[p]->name);
		}
		fs->gen = g;
		fs->gen_ok = 1;
		prune(fs);
		pthread_mutex_unlock(&fs->lock);
	}
	free(gone);
	free(ids);
	tcz_names_free(names, n);
	return rc;
}

fs_model *fs_model_by_id(tczfs *fs, uint64_t id)
{
	fs_model *fm = NULL;
	pthread_mutex_lock(&fs->lock);
	size_t p = table_pos(fs, id);
	if (p < fs->n_models && fs->models[p]->id == id)
		fm = fs_model_ref(fs->models[p]);
	pthread_mutex_unlock(&fs->lock);
	return fm;
}

static int model_build(tczfs *fs, tcz_mview *v, fs_model **out)
{
	const tcz_model *m = tcz_mview_model(v);
	fs_model *fm = calloc(1, sizeof *fm);
	if (!fm)
		return -ENOMEM;
	fm->v = v;
	fm->m = m;
	fm->id = m->id;
	fm->name = strdup(m->name);
	uint32_t n = m->n_tensors;
	fm->st = calloc(n ? n : 1, sizeof *fm->st);
	if (!fm->name || !fm->st) {
		model_free(fm);
		return -ENOMEM;
	}
	/* statistics saved by earlier mounts and other daemons */
	tcz_access *acc = calloc(n ? n : 1, sizeof *acc);
	tcz_snap *sn = NULL;
	int ok = acc && tcz_snap_begin(fs->store, &sn) == 0;
	int rc = ok ? tcz_snap_access(sn, m->id, n, acc) : -ENOMEM;
	tcz_snap_end(sn);
	if (rc == -EIO)
		fs_log(fs, LOG_WARNING,
		       "access statistics of model %s are damaged; they restart "
		       "from zero",
		       m->name);
	for (uint32_t t = 0; t < n; t++) {
		tcz_access a = ok ? acc[t] : (tcz_access){0, 0, 0, -1};
		atomic_init(&fm->st[t].base_reads, a.reads);
		atomic_init(&fm->st[t].base_bytes, a.bytes);
		atomic_init(&fm->st[t].last, a.last_access);
		atomic_init(&fm->st[t].pinned, a.pinned);
	}
	free(acc);
	atomic_init(&fm->refs, 1);
	*out = fm;
	return 0;
}

int fs_model_by_name(tczfs *fs, const char *name, fs_model **out)
{
	if (!tcz_model_name_valid(name))
		return -ENOENT;
	uint64_t id = 0;
	tcz_snap *sn = NULL;
	int rc = tcz_snap_begin(fs->store, &sn);
	if (rc == 0)
		rc = tcz_snap_model_id(sn, name, &id);
	tcz_snap_end(sn);
	if (rc == -ENOENT)
		return rc;
	fs_model *fm = rc == 0 ? fs_model_by_id(fs, id) : NULL;
	if (fm) {
		*out = fm;
		return 0;
	}
	tcz_mview *v;
	rc = tcz_mview_open(fs->store, name, &v);
	if (rc && rc != -ENOENT) {
		fs_log(fs, LOG_ERR, "cannot load model %s: %s", name,
		       tcz_store_errmsg());
		return rc == -ENOMEM ? rc : -EIO;
	}
	if (rc)
		return rc;
	if ((rc = model_build(fs, v, &fm))) {
		tcz_mview_put(v);
		return rc;
	}
	pthread_mutex_lock(&fs->lock);
	size_t p = table_pos(fs, fm->id);
	if (p < fs->n_models && fs->models[p]->id == fm->id) {
		/* loaded by another thread meanwhile: use that one */
		model_free(fm);
		fm = fs->models[p];
	} else {
		if (fs->n_models == fs->cap) {
			size_t cap = fs->cap ? fs->cap * 2 : 16;
			fs_model **nm = realloc(fs->models, cap * sizeof *nm);
			if (!nm) {
				pthread_mutex_unlock(&fs->lock);
				model_free(fm);
				return -ENOMEM;
			}
			fs->models = nm;
			fs->cap = cap;
		}
		memmove(fs->models + p + 1, fs->models + p,
			(fs->n_models - p) * sizeof *fs->models);
		fs->models[p] = fm; /* the table's reference */
		fs->n_models++;
		/* a removal between the id lookup and now is caught by the
		 * next refresh: the content is pinned, reads work until then */
		fs->gen_ok = 0;
	}
	fs_model_ref(fm);
	pthread_mutex_unlock(&fs->lock);
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

uint64_t fs_stat_reads(const fs_model *fm, uint32_t t)
{
	return atomic_load(&fm->st[t].base_reads) + atomic_load(&fm->st[t].reads);
}

uint64_t fs_stat_bytes(const fs_model *fm, uint32_t t)
{
	return atomic_load(&fm->st[t].base_bytes) + atomic_load(&fm->st[t].bytes);
}

/* Saves one model's counts as deltas, and takes the totals back. */
static int flush_model(tczfs *fs, fs_model *fm)
{
	uint32_t nt = fm->m->n_tensors, k = 0;
	size_t nn = nt ? nt : 1;
	uint32_t *idx = malloc(nn * sizeof *idx);
	uint64_t *reads = malloc(nn * sizeof *reads);
	uint64_t *bytes = malloc(nn * sizeof *bytes);
	uint64_t *last = malloc(nn * sizeof *last);
	tcz_access *tot = malloc(nn * sizeof *tot);
	int rc = idx && reads && bytes && last && tot ? 0 : -ENOMEM;
	for (uint32_t t = 0; rc == 0 && t < nt; t++) {
		fs_tstat *s = &fm->st[t];
		uint64_t r = atomic_exchange(&s->reads, 0);
		uint64_t b = atomic_exchange(&s->bytes, 0);
		if (!r && !b)
			continue;
		idx[k] = t;
		reads[k] = r;
		bytes[k] = b;
		last[k] = atomic_load(&s->last);
		k++;
	}
	if (rc == 0 && k) {
		rc = tcz_store_add_access(fs->store, fm->id, idx, reads, bytes,
					  last, k, tot);
		for (uint32_t j = 0; j < k; j++) {
			fs_tstat *s = &fm->st[idx[j]];
			if (rc) { /* not saved: counted again next time */
				atomic_fetch_add(&s->reads, reads[j]);
				atomic_fetch_add(&s->bytes, bytes[j]);
			} else if (tot[j].reads) {
				/* other daemons' reads included */
				atomic_store(&s->base_reads, tot[j].reads);
				atomic_store(&s->base_bytes, tot[j].bytes);
			}
		}
		if (rc)
			fs_log(fs, LOG_WARNING,
			       "cannot save access statistics of %s: %s",
			       fm->name,
			       tcz_store_errmsg()[0] ? tcz_store_errmsg()
						     : strerror(-rc));
	}
	free(idx);
	free(reads);
	free(bytes);
	free(last);
	free(tot);
	return rc;
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
	for (size_t i = 0; i < n; i++)
		list[i] = fs_model_ref(fs->models[i]);
	pthread_mutex_unlock(&fs->lock);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (!atomic_load(&list[i]->gone)) {
			int r = flush_model(fs, list[i]);
			if (r && !rc)
				rc = r;
		}
		fs_model_put(fs, list[i]);
	}
	free(list);
	return rc;
}

const char *fs_tier_of(const fs_model *fm, uint32_t t)
{
	const fs_tstat *s = &fm->st[t];
	int pinned = atomic_load(&s->pinned);
	if (pinned >= 0)
		return tcz_tier_name((tcz_tier)pinned);
	tcz_tier_thresholds th = TCZ_TIER_THRESHOLDS_DEFAULT;
	uint64_t score = tcz_tier_score(fs_stat_reads(fm, t),
					atomic_load(&s->last),
					(uint64_t)time(NULL));
	return tcz_tier_name(tcz_tier_of_score(score, &th));
}
