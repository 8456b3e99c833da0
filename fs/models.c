/* The table of loaded models, following the store's generation, and the
 * access statistics kept per tensor. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "codec/tier.h"
#include "fs/internal.h"

/* A path the kernel resolved through a name it still had cached (up to
 * ROOT_TIMEOUT, 1 s, when the invalidation crosses the lookup) may reach
 * a gone model's inodes just after it went: they stay resolvable that
 * long, serving the content they had (never ENOENT half-way down). */
#define GONE_GRACE_MS 2500

/* Marks fm gone; returns whether it already was. */
static int mark_gone(fs_model *fm)
{
	atomic_store(&fm->gone_ms, fs_mono_ms());
	return atomic_exchange(&fm->gone, 1);
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

static void model_free(tczfs *fs, fs_model *fm)
{
	if (!fm)
		return;
	if (fs)
		fs_hot_release(fs, fm);
	tcz_aview_put(fm->av);
	free(fm->hot);
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
	if (fm && atomic_fetch_sub(&fm->refs, 1) == 1)
		model_free(fs, fm);
}

/* Index in the sorted table of the first model with iid >= iid. */
static size_t table_pos(tczfs *fs, uint64_t iid)
{
	size_t lo = 0, hi = fs->n_models;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (fs->models[mid]->iid < iid)
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
		if (atomic_load(&fm->gone) && atomic_load(&fm->refs) == 1 &&
		    fs_mono_ms() - atomic_load(&fm->gone_ms) >= GONE_GRACE_MS)
			fs_model_put(fs, fm);
		else
			fs->models[k++] = fm;
	}
	fs->n_models = k;
}

static int model_build(tczfs *fs, tcz_mview *v, const fs_model *prev,
		       fs_model **out);
static int table_insert(tczfs *fs, fs_model *fm);
static int insert_loaded(tczfs *fs, fs_model *fm, fs_model **out);

/* A model whose revision changed (re-encoded, its policy set): its new
 * view replaces the loaded one, which open files keep reading. */
static void revise(tczfs *fs, fs_model *old)
{
	tcz_mview *v;
	if (tcz_mview_open(fs->store, old->name, &v) != 0)
		return; /* removed meanwhile: the next refresh sees it */
	fs_model *fm;
	if (model_build(fs, v, old, &fm)) {
		tcz_mview_put(v);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	size_t p = table_pos(fs, old->iid);
	int same = p < fs->n_models && fs->models[p] == old;
	if (same && fm->iid == old->iid) {
		/* same bytes: the same inodes, now served by the new view */
		fs->models[p] = fm;
		atomic_store(&old->gone, 1); /* its inodes are fm's now */
		pthread_mutex_unlock(&fs->lock);
		fs_model_put(fs, old); /* the table's reference */
		fs_log(fs, LOG_INFO, "model %s re-encoded (revision %llu)",
		       fm->name, (unsigned long long)fm->rev);
		return;
	}
	int inserted = same && table_insert(fs, fm) == 0;
	if (inserted)
		mark_gone(old); /* pruned once nothing reads it */
	pthread_mutex_unlock(&fs->lock);
	if (!inserted) {
		fs_model_put(fs, fm);
		return;
	}
	/* new bytes, new inodes: the kernel forgets the old name, so paths
	 * lead to the new content; open files keep the old one */
	if (fs->se)
		fuse_lowlevel_notify_inval_entry(fs->se, INO_ROOT, fm->name,
						 strlen(fm->name));
	fs_log(fs, LOG_INFO, "model %s has new content (generation of its "
			     "bytes %llu)",
	       fm->name, (unsigned long long)fm->iid);
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
		uint64_t now = fs_mono_s();
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
	prune(fs);
	pthread_mutex_unlock(&fs->lock);
	if (same)
		return 0;
	fs_asic_reload(fs); /* profile changes bump the generation too */
	size_t n;
	pthread_mutex_lock(&fs->lock);
	uint64_t inserts = fs->inserts; /* loaded after this: checked later */
	pthread_mutex_unlock(&fs->lock);
	fs_model **live = fs_models_live(fs, &n);
	if (!live)
		return -ENOMEM;
	/* what changed, in a short snapshot, no lock held */
	tcz_snap *sn = NULL;
	rc = tcz_snap_begin(fs->store, &sn);
	uint8_t *state = calloc(n ? n : 1, 1); /* 1 gone, 2 revised */
	for (size_t i = 0; rc == 0 && state && i < n; i++) {
		uint64_t id, rev, iid;
		if (live[i]->remote)
			continue; /* the remote's index says (fs/remote.c) */
		if (tcz_snap_model_ident(sn, live[i]->name, &id, &rev, &iid) != 0 ||
		    id != live[i]->id)
			state[i] = 1;
		else if (rev != live[i]->rev)
			state[i] = 2;
	}
	tcz_snap_end(sn);
	if (rc == 0 && state) {
		for (size_t i = 0; i < n; i++) {
			if (state[i] == 2) {
				revise(fs, live[i]);
			} else if (state[i] == 1 && !mark_gone(live[i])) {
				fs_log(fs, LOG_INFO,
				       "model %s was removed from the store",
				       live[i]->name);
				/* a cached name would lead to the old inodes
				 * until its timeout: the next lookup finds
				 * whatever has the name now */
				if (fs->se)
					fuse_lowlevel_notify_inval_entry(
						fs->se, INO_ROOT, live[i]->name,
						strlen(live[i]->name));
			}
		}
		pthread_mutex_lock(&fs->lock);
		fs->gen = g;
		/* a model loaded meanwhile may be the one just removed */
		fs->gen_ok = fs->inserts == inserts;
		prune(fs);
		pthread_mutex_unlock(&fs->lock);
	}
	free(state);
	fs_models_put(fs, live, n);
	return rc ? rc : state ? 0 : -ENOMEM;
}

fs_model **fs_models_live(tczfs *fs, size_t *n)
{
	pthread_mutex_lock(&fs->lock);
	fs_model **list = malloc((fs->n_models ? fs->n_models : 1) * sizeof *list);
	size_t k = 0;
	for (size_t i = 0; list && i < fs->n_models; i++)
		if (!atomic_load(&fs->models[i]->gone))
			list[k++] = fs_model_ref(fs->models[i]);
	pthread_mutex_unlock(&fs->lock);
	*n = k;
	return list;
}

void fs_models_put(tczfs *fs, fs_model **list, size_t n)
{
	for (size_t i = 0; list && i < n; i++)
		fs_model_put(fs, list[i]);
	free(list);
}

fs_model *fs_model_by_iid(tczfs *fs, uint64_t iid)
{
	fs_model *fm = NULL;
	pthread_mutex_lock(&fs->lock);
	size_t p = table_pos(fs, iid);
	if (p < fs->n_models && fs->models[p]->iid == iid)
		fm = fs_model_ref(fs->models[p]);
	pthread_mutex_unlock(&fs->lock);
	return fm;
}

/* Puts fm in the table (its reference). Called with fs->lock.
 * Errors: -EEXIST its iid is there; -ENOMEM. */
static int table_insert(tczfs *fs, fs_model *fm)
{
	size_t p = table_pos(fs, fm->iid);
	if (p < fs->n_models && fs->models[p]->iid == fm->iid)
		return -EEXIST;
	if (fs->n_models == fs->cap) {
		size_t cap = fs->cap ? fs->cap * 2 : 16;
		fs_model **nm = realloc(fs->models, cap * sizeof *nm);
		if (!nm)
			return -ENOMEM;
		fs->models = nm;
		fs->cap = cap;
	}
	memmove(fs->models + p + 1, fs->models + p,
		(fs->n_models - p) * sizeof *fs->models);
	fs->models[p] = fm;
	fs->n_models++;
	fs->inserts++;
	return 0;
}

/* Builds the loaded model of view v; prev, the revision it replaces,
 * hands over the counts this daemon has not saved yet. */
static int model_build(tczfs *fs, tcz_mview *v, const fs_model *prev,
		       fs_model **out)
{
	const tcz_model *m = tcz_mview_model(v);
	fs_model *fm = calloc(1, sizeof *fm);
	if (!fm)
		return -ENOMEM;
	fm->v = v;
	fm->m = m;
	fm->id = m->id;
	fm->rev = m->rev;
	fm->iid = m->iid;
	fm->name = strdup(m->name);
	fm->remote = (m->id >> 63) != 0;
	uint32_t n = m->n_tensors;
	fm->st = calloc(n ? n : 1, sizeof *fm->st);
	fm->hot = calloc(n ? n : 1, sizeof *fm->hot);
	if (!fm->name || !fm->st || !fm->hot) {
		fm->v = NULL; /* the caller's */
		model_free(NULL, fm);
		return -ENOMEM;
	}
	/* statistics saved by earlier mounts and other daemons */
	tcz_access *acc = calloc(n ? n : 1, sizeof *acc);
	tcz_snap *sn = NULL;
	int ok = acc && !fm->remote && tcz_snap_begin(fs->store, &sn) == 0;
	int rc = ok ? tcz_snap_access(sn, m->id, n, acc)
		    : acc ? 0 : -ENOMEM;
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
		if (prev && t < prev->m->n_tensors) {
			fs_tstat *ps = (fs_tstat *)&prev->st[t];
			atomic_init(&fm->st[t].reads, atomic_exchange(&ps->reads, 0));
			atomic_init(&fm->st[t].bytes, atomic_exchange(&ps->bytes, 0));
			uint64_t pl = atomic_load(&ps->last);
			if (pl > a.last_access)
				atomic_store(&fm->st[t].last, pl);
			atomic_init(&fm->st[t].decodes, atomic_load(&ps->decodes));
		}
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
	uint64_t id = 0, rev = 0, iid = 0;
	tcz_snap *sn = NULL;
	int rc = tcz_snap_begin(fs->store, &sn);
	if (rc == 0)
		rc = tcz_snap_model_ident(sn, name, &id, &rev, &iid);
	tcz_snap_end(sn);
	if (rc == -ENOENT)
		return fs_remote_model(fs, name, out); /* local ones first */
	fs_model *fm = rc == 0 ? fs_model_by_iid(fs, iid) : NULL;
	if (fm && !atomic_load(&fm->gone)) {
		*out = fm;
		return 0;
	}
	fs_model_put(fs, fm);
	tcz_mview *v;
	rc = tcz_mview_open(fs->store, name, &v);
	if (rc && rc != -ENOENT) {
		fs_log(fs, LOG_ERR, "cannot load model %s: %s", name,
		       tcz_store_errmsg());
		return rc == -ENOMEM ? rc : -EIO;
	}
	if (rc)
		return fs_remote_model(fs, name, out);
	if ((rc = model_build(fs, v, NULL, &fm))) {
		tcz_mview_put(v);
		return rc;
	}
	return insert_loaded(fs, fm, out);
}

/* Puts freshly built fm in the table, or hands out the live one of the
 * same iid that another thread loaded meanwhile. */
static int insert_loaded(tczfs *fs, fs_model *fm, fs_model **out)
{
	int rc;
	pthread_mutex_lock(&fs->lock);
	size_t p = table_pos(fs, fm->iid);
	if (p < fs->n_models && fs->models[p]->iid == fm->iid &&
	    !atomic_load(&fs->models[p]->gone)) {
		/* loaded by another thread meanwhile: use that one */
		fs_model *mine = fm;
		fm = fs->models[p];
		fs_model_ref(fm);
		pthread_mutex_unlock(&fs->lock);
		fs_model_put(fs, mine);
		*out = fm;
		return 0;
	}
	if (p < fs->n_models && fs->models[p]->iid == fm->iid) {
		/* a gone entry of the same bytes: this one takes its place */
		fs_model *old = fs->models[p];
		fs->models[p] = fm;
		fs->inserts++;
		pthread_mutex_unlock(&fs->lock);
		fs_model_put(fs, old);
		pthread_mutex_lock(&fs->lock);
	} else if ((rc = table_insert(fs, fm)) != 0) {
		pthread_mutex_unlock(&fs->lock);
		fs_model_put(fs, fm);
		return rc;
	}
	/* a removal between the lookup and now is caught by the next
	 * refresh: the content is pinned, reads work until then */
	fs->gen_ok = 0;
	fs_model_ref(fm);
	pthread_mutex_unlock(&fs->lock);
	*out = fm;
	return 0;
}

int fs_model_adopt(tczfs *fs, tcz_mview *v, uint64_t iid, fs_model **out)
{
	fs_model *fm;
	int rc = model_build(fs, v, NULL, &fm);
	if (rc) {
		tcz_mview_put(v);
		return rc;
	}
	fm->iid = iid; /* the mount's: its inodes' high bits */
	return insert_loaded(fs, fm, out);
}

void fs_model_retire(tczfs *fs, fs_model *fm)
{
	(void)fs;
	mark_gone(fm);
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
	if (fm->remote)
		return 0; /* no local records: counted in memory only */
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
		/* gone ones too: a superseded revision's open files still
		 * count (the model's records take them); a removed model's
		 * tensors are skipped by the store */
		int r = flush_model(fs, list[i]);
		if (r && !rc)
			rc = r;
		fs_model_put(fs, list[i]);
	}
	free(list);
	return rc;
}

void fs_model_access(const fs_model *fm, tcz_access *out)
{
	for (uint32_t t = 0; t < fm->m->n_tensors; t++) {
		const fs_tstat *s = &fm->st[t];
		out[t].reads = fs_stat_reads(fm, t);
		out[t].bytes = fs_stat_bytes(fm, t);
		out[t].last_access = atomic_load(&s->last);
		out[t].pinned = atomic_load(&s->pinned);
	}
}

const char *fs_tier_of(const tczfs *fs, const fs_model *fm, uint32_t t)
{
	const fs_tstat *s = &fm->st[t];
	int pinned = atomic_load(&s->pinned);
	if (pinned >= 0)
		return tcz_tier_name((tcz_tier)pinned);
	uint64_t score = tcz_tier_score(fs_stat_reads(fm, t),
					atomic_load(&s->last), tcz_store_now());
	return tcz_tier_name(tcz_tier_of_score(score, &fs->th));
}
