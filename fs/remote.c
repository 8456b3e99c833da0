/* A remote's models on the mount (--remote NAME): listed next to the
 * local ones, loaded on lookup as views whose chunks come from the local
 * store, the disk cache (rcache) or the remote. One thread connects,
 * polls the remote's index and writes the chunks fetched by reads into
 * the disk cache, so no FUSE request waits for the network except to
 * read the chunks it needs, nor for the store's write lock. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "fs/internal.h"
#include "store/remote.h"

#define POLL_MS 2000u  /* index polls: new pushes show within this */
#define FLUSH_MS 500u  /* fetched chunks written to the disk cache */
#define RETRY_MS 5000u /* connection attempts while the cluster is away */
/* fetched chunks waiting for the disk cache, at most */
#define DEFER_BYTES (64u << 20)
/* remote models' bytes identities: daemon-local, above every local one
 * (local ids count up from 1), never reused while the daemon runs */
#define RID0 0x80000000u

static void log_limited(tczfs *fs, _Atomic uint64_t *last, const char *what,
			int rc)
{
	uint64_t now = fs_mono_ms(), l = atomic_load(last);
	if ((l && now - l < 60000) ||
	    !atomic_compare_exchange_strong(last, &l, now))
		return;
	fs_log(fs, LOG_WARNING, "remote %s: %s: %s", fs->opts.remote, what,
	       tcz_store_errmsg()[0] ? tcz_store_errmsg() : strerror(-rc));
}

static int rent_cmp(const void *a, const void *b)
{
	return strcmp(((const fs_rent *)a)->name, ((const fs_rent *)b)->name);
}

static void rents_free(fs_rent *e, size_t n)
{
	for (size_t i = 0; e && i < n; i++)
		free(e[i].name);
	free(e);
}

/* Retires the loaded model of rid (if any) and makes the kernel forget
 * the name, so the next lookup finds what the remote holds now. */
static void retire(tczfs *fs, const char *name, uint32_t rid)
{
	if (rid) {
		fs_model *fm = fs_model_by_iid(fs, rid);
		if (fm)
			fs_model_retire(fs, fm);
		fs_model_put(fs, fm);
	}
	if (fs->se) {
		fuse_lowlevel_notify_inval_entry(fs->se, INO_ROOT, name,
						 strlen(name));
		fuse_lowlevel_notify_inval_entry(fs->se, INO_ASIC, name,
						 strlen(name));
	}
}

/* Adopts index ix: names keep their identity while their manifest stays
 * the same; a new manifest is new content under new inodes. */
static int adopt(tczfs *fs, const tcz_rindex *ix)
{
	fs_rent *ne = calloc(ix->n ? ix->n : 1, sizeof *ne);
	if (!ne)
		return -ENOMEM;
	for (size_t i = 0; i < ix->n; i++) {
		ne[i].name = strdup(ix->e[i].name);
		if (!ne[i].name) {
			rents_free(ne, i);
			return -ENOMEM;
		}
		memcpy(ne[i].sha, ix->e[i].manifest_sha, TCZ_SHA256_LEN);
	}
	qsort(ne, ix->n, sizeof *ne, rent_cmp);
	pthread_mutex_lock(&fs->rlock);
	if (fs->rindex_ok && ix->generation != 0 && ix->generation <= fs->rgen) {
		/* another thread adopted this index or a newer one */
		pthread_mutex_unlock(&fs->rlock);
		rents_free(ne, ix->n);
		return 0;
	}
	fs->rgen = ix->generation;
	/* what changed, to retire once the lock is dropped (sized under the
	 * lock: a lookup may adopt an index at the same time) */
	fs_rent *gone = calloc(fs->n_rents + ix->n + 1, sizeof *gone);
	size_t ng = 0;
	if (!gone) {
		pthread_mutex_unlock(&fs->rlock);
		rents_free(ne, ix->n);
		return -ENOMEM;
	}
	fs_rent *old = fs->rents;
	size_t no = fs->n_rents, i = 0, j = 0;
	while (i < no || j < ix->n) {
		int c = i == no ? 1 : j == ix->n ? -1
			: strcmp(old[i].name, ne[j].name);
		if (c < 0) { /* dropped from the remote */
			gone[ng].name = old[i].name;
			gone[ng++].rid = old[i].rid;
			old[i++].name = NULL;
			continue;
		}
		if (c == 0 && memcmp(old[i].sha, ne[j].sha, TCZ_SHA256_LEN) == 0) {
			ne[j++].rid = old[i++].rid;
			continue;
		}
		if (c == 0) { /* pushed again with other content */
			gone[ng].name = old[i].name;
			gone[ng++].rid = old[i].rid;
			old[i++].name = NULL;
		} else { /* new: a cached failed lookup must go too */
			gone[ng].name = strdup(ne[j].name);
			gone[ng++].rid = 0;
		}
		ne[j++].rid = fs->next_rid++;
	}
	fs->rents = ne;
	fs->n_rents = ix->n;
	fs->rindex_ok = 1;
	pthread_mutex_unlock(&fs->rlock);
	rents_free(old, no);
	for (size_t k = 0; k < ng; k++) {
		if (!gone[k].name)
			continue;
		if (gone[k].rid)
			fs_log(fs, LOG_INFO, "remote model %s changed or went",
			       gone[k].name);
		retire(fs, gone[k].name, gone[k].rid);
		free(gone[k].name);
	}
	free(gone);
	return 0;
}

/* Connects (once), then reads the index. Runs without any lock; from
 * the remote thread, or a lookup that found the index out of date. */
static _Atomic uint64_t warn_connect, warn_index;

static int poll_once(tczfs *fs)
{
	tcz_remote *r = atomic_load(&fs->remote);
	if (!r) {
		int rc = tcz_remote_connect(fs->remote_url,
					    fs->opts.remote_timeout_ms, &r);
		if (rc) {
			log_limited(fs, &warn_connect, "cannot connect", rc);
			return rc;
		}
		if (atomic_exchange(&warn_connect, 0))
			fs_log(fs, LOG_INFO, "remote %s: connected",
			       fs->opts.remote);
		tcz_remote *none = NULL;
		if (!atomic_compare_exchange_strong(&fs->remote, &none, r)) {
			tcz_remote_close(r); /* another thread connected */
			r = none;
		}
	}
	tcz_rindex *ix = NULL;
	int rc = tcz_remote_index(r, &ix);
	if (rc) {
		log_limited(fs, &warn_index, "cannot read its index", rc);
		return rc;
	}
	if (atomic_exchange(&warn_index, 0))
		fs_log(fs, LOG_INFO, "remote %s: its index reads again",
		       fs->opts.remote);
	pthread_mutex_lock(&fs->rlock);
	/* the same index, or an older one than a lookup adopted meanwhile
	 * (generations only grow) */
	int same = fs->rindex_ok && ix->generation != 0 &&
		   ix->generation <= fs->rgen;
	pthread_mutex_unlock(&fs->rlock);
	if (!same)
		rc = adopt(fs, ix);
	tcz_rindex_free(ix);
	return rc;
}

static void *remote_main(void *arg)
{
	tczfs *fs = arg;
	uint64_t last_poll = fs_mono_ms(), last_try = last_poll;
	pthread_mutex_lock(&fs->mlock);
	while (!fs->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)FLUSH_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!fs->rflush_now)
			pthread_cond_timedwait(&fs->rcond, &fs->mlock, &ts);
		fs->rflush_now = 0;
		if (fs->stopping)
			break;
		pthread_mutex_unlock(&fs->mlock);
		if (fs->rcache) {
			int rc = tcz_rcache_flush(fs->rcache);
			static _Atomic uint64_t warn;
			if (rc && rc != -EROFS)
				log_limited(fs, &warn,
					    "cannot keep fetched chunks on disk",
					    rc);
		}
		uint64_t now = fs_mono_ms();
		int connected = atomic_load(&fs->remote) != NULL;
		if ((connected && now - last_poll >= POLL_MS) ||
		    (!connected && now - last_try >= RETRY_MS)) {
			poll_once(fs);
			last_poll = last_try = fs_mono_ms();
		}
		pthread_mutex_lock(&fs->mlock);
	}
	pthread_mutex_unlock(&fs->mlock);
	return NULL;
}

/* From a reading thread: the disk cache's queue is filling up. */
static void flush_soon(void *arg)
{
	tczfs *fs = arg;
	pthread_mutex_lock(&fs->mlock);
	fs->rflush_now = 1;
	pthread_cond_signal(&fs->rcond);
	pthread_mutex_unlock(&fs->mlock);
}

int fs_remote_start(tczfs *fs, char *err, size_t errlen)
{
	if (!fs->opts.remote)
		return 0;
	if (!tcz_remote_available()) {
		snprintf(err, errlen, "--remote: this tczfs was built without "
				      "Ceph RADOS support");
		return -ENOTSUP;
	}
	int rc = tcz_store_remote_url(fs->store, fs->opts.remote,
				      &fs->remote_url);
	if (rc) {
		snprintf(err, errlen, rc == -ENOENT
				 ? "no remote named %s (see 'tczfs remote ls')"
				 : "remote %s: %s",
			 fs->opts.remote, tcz_store_errmsg());
		return rc;
	}
	fs->next_rid = RID0;
	if (!fs->opts.remote_timeout_ms)
		fs->opts.remote_timeout_ms = 5000; /* a read fails after that */
	rc = tcz_rcache_open(fs->store, fs->opts.disk_cache_bytes, &fs->rcache);
	if (rc == -EROFS) {
		fs_log(fs, LOG_WARNING, "remote %s: the store is read-only: "
					"fetched chunks are not kept on disk",
		       fs->opts.remote);
	} else if (rc) {
		snprintf(err, errlen, "remote %s: disk cache: %s",
			 fs->opts.remote, tcz_store_errmsg());
		return rc;
	}
	if (fs->rcache) {
		tcz_rcache_defer(fs->rcache, DEFER_BYTES);
		tcz_rcache_on_fill(fs->rcache, flush_soon, fs);
	}
	/* a cluster that answers shows its models at once; one that does
	 * not leaves the local models served and is tried again */
	poll_once(fs);
	if (pthread_create(&fs->rthread, NULL, remote_main, fs) == 0)
		fs->rthread_started = 1;
	return 0;
}

/* Called after fs->stopping is set and mcond broadcast. */
void fs_remote_stop(tczfs *fs)
{
	pthread_mutex_lock(&fs->mlock);
	pthread_cond_broadcast(&fs->rcond);
	pthread_mutex_unlock(&fs->mlock);
	if (fs->rthread_started)
		pthread_join(fs->rthread, NULL);
	fs->rthread_started = 0;
}

/* After the models (their views use both) are freed. */
void fs_remote_free(tczfs *fs)
{
	tcz_rcache_close(fs->rcache); /* writes what is queued */
	fs->rcache = NULL;
	tcz_remote_close(atomic_load(&fs->remote));
	atomic_store(&fs->remote, NULL);
	rents_free(fs->rents, fs->n_rents);
	fs->rents = NULL;
	fs->n_rents = 0;
	free(fs->remote_url);
	fs->remote_url = NULL;
}

int fs_remote_names(tczfs *fs, char ***names, uint32_t **rids, size_t *n)
{
	*names = NULL;
	*rids = NULL;
	*n = 0;
	if (!fs->opts.remote)
		return 0;
	pthread_mutex_lock(&fs->rlock);
	size_t k = fs->n_rents;
	char **nm = calloc(k ? k : 1, sizeof *nm);
	uint32_t *id = calloc(k ? k : 1, sizeof *id);
	int rc = nm && id ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < k; i++) {
		if (!(nm[i] = strdup(fs->rents[i].name)))
			rc = -ENOMEM;
		id[i] = fs->rents[i].rid;
	}
	pthread_mutex_unlock(&fs->rlock);
	if (rc) {
		for (size_t i = 0; nm && i < k; i++)
			free(nm[i]);
		free(nm);
		free(id);
		return rc;
	}
	*names = nm;
	*rids = id;
	*n = k;
	return 0;
}

int fs_remote_model(tczfs *fs, const char *name, fs_model **out)
{
	*out = NULL;
	tcz_remote *r = atomic_load(&fs->remote);
	if (!fs->opts.remote || !r)
		return -ENOENT;
	for (int attempt = 0;; attempt++) {
		fs_rent key = {.name = (char *)name}, e = {0};
		pthread_mutex_lock(&fs->rlock);
		const fs_rent *f = bsearch(&key, fs->rents, fs->n_rents,
					   sizeof *fs->rents, rent_cmp);
		if (f)
			e = *f;
		pthread_mutex_unlock(&fs->rlock);
		if (!f)
			return -ENOENT;
		fs_model *fm = fs_model_by_iid(fs, e.rid);
		if (fm && !atomic_load(&fm->gone)) {
			*out = fm;
			return 0;
		}
		fs_model_put(fs, fm);
		/* the manifest, over the network, no lock held */
		tcz_mview *v;
		int rc = tcz_remote_mview_open(fs->store, r, fs->rcache, name,
					       &v);
		if (rc) {
			if (rc != -ENOENT)
				fs_log(fs, LOG_ERR,
				       "cannot load remote model %s: %s", name,
				       tcz_store_errmsg());
			return rc == -ENOENT ? -ENOENT
			       : rc == -ETIMEDOUT || rc == -ENOMEM ? rc
								   : -EIO;
		}
		if (tcz_mview_model(v)->iid == tcz_remote_ident(e.sha))
			return fs_model_adopt(fs, v, e.rid, out);
		/* pushed again since the last poll: the index now names
		 * other content, under other inodes */
		tcz_mview_put(v);
		if (attempt == 1)
			return -EAGAIN;
		rc = poll_once(fs);
		if (rc)
			return rc == -ETIMEDOUT || rc == -ENOMEM ? rc : -EIO;
	}
}
