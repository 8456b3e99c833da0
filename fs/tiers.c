/* Tiering in the daemon (SPEC 7): the hot set and background re-encoding.
 *
 * Hot set: every couple of seconds the tensors whose tier is hot (pinned
 * hot, or score >= the hot threshold) are ranked by score and, within the
 * hot budget (part of the cache's), every chunk of theirs is decoded into
 * the cache and kept pinned there: their reads then decode nothing and
 * touch no LMDB page. A tensor that stops being hot, or no longer fits,
 * is let go (its chunks stay cached as any others, least recently used
 * first out).
 *
 * Re-encoding: every tier_interval seconds, at the lowest priority and
 * within tier_io_bytes_s, each model's policy is applied to its cold (and,
 * for precision tiering, warm) tensors with the daemon's own access counts
 * (store/tiering.h). Commits make new revisions; the refresh adopts them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fs/internal.h"
#include "store/stream.h"
#include "store/tiering.h"

#define HOT_PERIOD_MS 2000

static uint64_t tensor_bytes(const tcz_tensor *t)
{
	return t->nbytes;
}

/* Releases tensor t's hot entries. Called with hotlock. */
static void let_go(tczfs *fs, fs_model *fm, uint32_t t)
{
	tcz_cache_entry **e = fm->hot[t];
	if (!e)
		return;
	uint32_t n = tcz_tensor_chunk_count(&fm->m->tensors[t]);
	for (uint32_t c = 0; c < n; c++)
		if (e[c])
			tcz_cache_release(fs->cache, e[c]);
	free(e);
	fm->hot[t] = NULL;
	atomic_store(&fm->st[t].hot, 0);
	fs->hot_used -= tensor_bytes(&fm->m->tensors[t]);
}

void fs_hot_release(tczfs *fs, fs_model *fm)
{
	if (!fm->hot || !fm->m)
		return;
	pthread_mutex_lock(&fs->hotlock);
	for (uint32_t t = 0; t < fm->m->n_tensors; t++)
		let_go(fs, fm, t);
	pthread_mutex_unlock(&fs->hotlock);
}

/* The hot set fills behind the readers: before each chunk it waits while
 * read requests keep arriving (none for YIELD_QUIET_NS), at most
 * YIELD_MAX_MS per chunk, so it fills at full speed when the mount is
 * idle and still moves under a steady load. Measured (bench-mount): a
 * 64 MiB hot set filling after a remount made 2000 cold random reads
 * wait 424 us (p50) instead of 212. */
#define YIELD_QUIET_NS 5000000ull
#define YIELD_MAX_MS 100u
#define YIELD_STEP_MS 2u

static void yield_to_readers(tczfs *fs)
{
	for (unsigned w = 0; w < YIELD_MAX_MS && !fs->stopping;
	     w += YIELD_STEP_MS) {
		uint64_t last = atomic_load_explicit(&fs->last_read_ns,
						     memory_order_relaxed);
		if (fs_mono_ns() - last >= YIELD_QUIET_NS)
			return;
		struct timespec ts = {0, (long)YIELD_STEP_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
}

/* Decodes every chunk of tensor t into the cache and keeps them; no lock
 * held while decoding. Returns the entries (malloc'd) or NULL. */
static tcz_cache_entry **heat(tczfs *fs, fs_model *fm, uint32_t t)
{
	uint32_t n = tcz_tensor_chunk_count(&fm->m->tensors[t]);
	tcz_cache_entry **e = calloc(n ? n : 1, sizeof *e);
	if (!e)
		return NULL;
	tcz_src s0 = {TCZ_SRC_TENSOR, t, 0, 0}, s;
	for (uint32_t c = 0; c < n; c++) {
		unsigned char key[TCZ_KEY_LEN];
		if (tcz_view_src_next(fm->v, &s0, c, &s) != 0)
			goto fail;
		tcz_view_src_key(fm->v, &s, key);
		if (!tcz_cache_has(fs->cache, key))
			yield_to_readers(fs);
		if (fs_get_src(fs, fm, &s, &e[c]) != 0)
			goto fail;
		if (fs->stopping)
			goto fail;
	}
	return e;
fail:
	for (uint32_t c = 0; c < n; c++)
		if (e[c])
			tcz_cache_release(fs->cache, e[c]);
	free(e);
	return NULL;
}

typedef struct cand {
	fs_model *fm;
	uint32_t t;
	uint64_t score; /* UINT64_MAX: pinned hot */
} cand;

static int by_score(const void *a, const void *b)
{
	const cand *x = a, *y = b;
	if (x->score != y->score)
		return x->score < y->score ? 1 : -1;
	if (x->fm->iid != y->fm->iid)
		return x->fm->iid < y->fm->iid ? -1 : 1;
	return x->t < y->t ? -1 : x->t > y->t;
}

/* One pass: what should be hot now, within the budget. */
static void hot_pass(tczfs *fs)
{
	size_t nm;
	fs_model **live = fs_models_live(fs, &nm);
	if (!live)
		return;
	uint64_t now = tcz_store_now();
	size_t cap = 0, n = 0;
	for (size_t i = 0; i < nm; i++)
		cap += live[i]->m->n_tensors;
	cand *c = malloc((cap ? cap : 1) * sizeof *c);
	for (size_t i = 0; c && i < nm; i++) {
		fs_model *fm = live[i];
		for (uint32_t t = 0; t < fm->m->n_tensors; t++) {
			const fs_tstat *st = &fm->st[t];
			int pin = atomic_load(&st->pinned);
			uint64_t score = tcz_tier_score(fs_stat_reads(fm, t),
							atomic_load(&st->last), now);
			if (pin == TCZ_TIER_HOT)
				score = UINT64_MAX;
			else if (pin >= 0 ||
				 tcz_tier_of_score(score, &fs->th) != TCZ_TIER_HOT)
				continue;
			if (fm->m->tensors[t].nbytes == 0)
				continue;
			c[n++] = (cand){fm, t, score};
		}
	}
	if (c)
		qsort(c, n, sizeof *c, by_score);
	/* the first that fit stay or become hot; the rest are let go */
	uint8_t **want = calloc(nm ? nm : 1, sizeof *want);
	for (size_t i = 0; want && i < nm; i++)
		want[i] = calloc(live[i]->m->n_tensors ? live[i]->m->n_tensors : 1, 1);
	uint64_t used = 0;
	for (size_t k = 0; c && want && k < n; k++) {
		uint64_t b = tensor_bytes(&c[k].fm->m->tensors[c[k].t]);
		if (used + b > fs->hot_budget)
			continue;
		used += b;
		for (size_t i = 0; i < nm; i++)
			if (live[i] == c[k].fm && want[i])
				want[i][c[k].t] = 1;
	}
	for (size_t i = 0; want && i < nm; i++) {
		fs_model *fm = live[i];
		for (uint32_t t = 0; want[i] && t < fm->m->n_tensors; t++) {
			pthread_mutex_lock(&fs->hotlock);
			int held = fm->hot[t] != NULL;
			if (held && !want[i][t])
				let_go(fs, fm, t);
			pthread_mutex_unlock(&fs->hotlock);
			if (held || !want[i][t] || fs->stopping)
				continue;
			tcz_cache_entry **e = heat(fs, fm, t);
			pthread_mutex_lock(&fs->hotlock);
			if (e && !fm->hot[t]) {
				fm->hot[t] = e;
				atomic_store(&fm->st[t].hot, 1);
				fs->hot_used += tensor_bytes(&fm->m->tensors[t]);
				e = NULL;
			}
			pthread_mutex_unlock(&fs->hotlock);
			if (e) { /* raced: not needed twice */
				uint32_t nc = tcz_tensor_chunk_count(&fm->m->tensors[t]);
				for (uint32_t k = 0; k < nc; k++)
					tcz_cache_release(fs->cache, e[k]);
				free(e);
			}
		}
	}
	for (size_t i = 0; want && i < nm; i++)
		free(want[i]);
	free(want);
	free(c);
	fs_models_put(fs, live, nm);
}

/* Sleeps up to ms, waking when stopping (or kicked, with kick); 1 when
 * stopping. */
static int nap(tczfs *fs, unsigned ms, int kick)
{
	pthread_mutex_lock(&fs->mlock);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (!fs->stopping && !(kick && atomic_load(&fs->hot_kick)))
		if (pthread_cond_timedwait(&fs->mcond, &fs->mlock, &ts))
			break;
	int stop = fs->stopping;
	pthread_mutex_unlock(&fs->mlock);
	return stop;
}

static void *hot_main(void *arg)
{
	tczfs *fs = arg;
	while (!nap(fs, HOT_PERIOD_MS, 1)) {
		atomic_store(&fs->hot_kick, 0);
		hot_pass(fs);
	}
	tcz_reader_free(pthread_getspecific(fs->reader_key));
	pthread_setspecific(fs->reader_key, NULL);
	return NULL;
}

static void *tier_main(void *arg)
{
	tczfs *fs = arg;
	/* background work: the lowest priority there is for this thread */
	setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
	for (;;) {
		for (unsigned s = 0; s < fs->opts.tier_interval; s++)
			if (nap(fs, 1000, 0))
				return NULL;
		/* every model of the store: the loaded ones with this
		 * daemon's counts, the others with the stored ones */
		char **names = NULL;
		size_t nn = 0;
		tcz_snap *sn = NULL;
		if (tcz_snap_begin(fs->store, &sn) == 0)
			tcz_snap_list(sn, &names, &nn);
		tcz_snap_end(sn);
		/* one policy for the pass: models and streams */
		tcz_tiering_cfg c;
		tcz_tiering_cfg_default(&c);
		c.th = fs->th;
		c.io_bytes_s = fs->opts.tier_io_bytes_s;
		if (fs->opts.warm_bits)
			c.warm_bits = fs->opts.warm_bits;
		c.stop = &fs->tier_stop;
		size_t nm;
		fs_model **live = fs_models_live(fs, &nm);
		for (size_t i = 0; i < nn && !fs->stopping; i++) {
			fs_model *fm = NULL;
			for (size_t k = 0; live && k < nm && !fm; k++)
				if (!live[k]->remote &&
				    strcmp(live[k]->name, names[i]) == 0)
					fm = live[k];
			tcz_access *a = NULL;
			if (fm) {
				a = calloc(fm->m->n_tensors ? fm->m->n_tensors : 1,
					   sizeof *a);
				if (!a)
					break;
				fs_model_access(fm, a);
			}
			tcz_tiering_report rep = {0};
			int rc = tcz_tiering_apply(fs->store, names[i], a, &c, &rep);
			free(a);
			if (rc == 0 && (rep.dense || rep.requant))
				fs_log(fs, LOG_INFO,
				       "tiering %s: %u tensors re-encoded denser, %u "
				       "re-quantized: %llu -> %llu bytes",
				       names[i], rep.dense, rep.requant,
				       (unsigned long long)rep.before,
				       (unsigned long long)rep.after);
			else if (rc && rc != -ECANCELED && rc != -EAGAIN &&
				 rc != -ENOENT)
				fs_log(fs, LOG_WARNING, "tiering %s: %s", names[i],
				       tcz_store_errmsg()[0] ? tcz_store_errmsg()
							     : strerror(-rc));
		}
		fs_models_put(fs, live, nm);
		tcz_names_free(names, nn);
		/* streams: their cold segments re-encoded at 3 bits (SPEC 7,
		 * always precision); the mount drops the pages of what changed */
		if (!fs->stopping) {
			tcz_stream_tier_report rep = {0};
			int rc = tcz_stream_tier_apply(fs->store, NULL, &c, &rep);
			if (rc == 0 && rep.segments)
				fs_log(fs, LOG_INFO,
				       "tiering streams: %u segments re-encoded to 3 "
				       "bits: %llu -> %llu bytes",
				       rep.segments, (unsigned long long)rep.before,
				       (unsigned long long)rep.after);
			else if (rc && rc != -ECANCELED && rc != -ENOENT)
				fs_log(fs, LOG_WARNING, "tiering streams: %s",
				       tcz_store_errmsg()[0] ? tcz_store_errmsg()
							     : strerror(-rc));
		}
	}
}

int fs_tiers_start(tczfs *fs)
{
	if (fs->hot_budget &&
	    pthread_create(&fs->hot_thread, NULL, hot_main, fs) == 0)
		fs->hot_started = 1;
	if (fs->opts.tier_interval &&
	    pthread_create(&fs->tier_thread, NULL, tier_main, fs) == 0)
		fs->tier_started = 1;
	return 0;
}

/* Called after fs->stopping is set and mcond broadcast. */
void fs_tiers_stop(tczfs *fs)
{
	fs->tier_stop = 1;
	if (fs->hot_started)
		pthread_join(fs->hot_thread, NULL);
	if (fs->tier_started)
		pthread_join(fs->tier_thread, NULL);
	fs->hot_started = fs->tier_started = 0;
}

int fs_pin(tczfs *fs, fs_model *fm, const uint32_t *idx, uint32_t n,
	   const char *value, size_t len)
{
	char v[8];
	if (len == 0 || len >= sizeof v)
		return -EINVAL;
	memcpy(v, value, len);
	v[len] = 0;
	if (len && v[len - 1] == '\n')
		v[len - 1] = 0;
	int32_t pin = -1;
	tcz_tier t;
	if (strcmp(v, "auto") != 0) {
		if (tcz_tier_parse(v, &t))
			return -EINVAL;
		pin = (int32_t)t;
	}
	/* a remote model has no local records: its pins last this mount */
	int rc = fm->remote ? 0 : tcz_store_set_pin(fs->store, fm->id, idx, n,
						    pin);
	if (rc)
		return rc == -ENOENT ? -ENOENT : -EIO;
	for (uint32_t i = 0; i < n; i++)
		atomic_store(&fm->st[idx[i]].pinned, pin);
	pthread_mutex_lock(&fs->mlock);
	atomic_store(&fs->hot_kick, 1); /* a hot pin: decode it now */
	pthread_cond_broadcast(&fs->mcond);
	pthread_mutex_unlock(&fs->mlock);
	return 0;
}
