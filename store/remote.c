/* The RADOS side of remotes (librados): connecting with timeouts, chunk
 * fetches checked against their names, push, pull, drop, gc, and views
 * of remote models. Formats and the chunk cache are in remotes.c.
 *
 * Every operation goes through librados' asynchronous interface and is
 * waited for with a deadline of our own (the remote's timeout plus a
 * margin) on top of librados' op timeouts: a cluster that stops
 * answering is an error, never a hang. No store lock is held while an
 * operation is in flight: local values are copied out in short read
 * transactions first, and a pull's import batches are written between
 * network waits. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <rados/librados.h>

#include "store/grow.h"
#include "store/reader.h"
#include "store/remote_int.h"
#include "store/view.h"

#define DEFAULT_JOBS 8u
#define MAX_JOBS 256u
/* on top of librados' own op timeout, before we cancel an operation */
#define BACKSTOP_MS 1500u
/* a push renews its lease this often; gc deems a lease dead when it was
 * not renewed within max(grace, LEASE_TTL_MS) */
#define LEASE_RENEW_MS 5000u
#define LEASE_TTL_MS 60000u
#define INDEX_ATTEMPTS 64
#define MANIFEST_ATTEMPTS 4
#define PUSH_ROUNDS 4

int tcz_remote_available(void)
{
	return 1;
}

void tcz_sha256(const void *p, size_t n, unsigned char out[TCZ_SHA256_LEN])
{
	unsigned int len = 0;
	if (!EVP_Digest(p, n, out, &len, EVP_sha256(), NULL))
		memset(out, 0, TCZ_SHA256_LEN);
}

struct tcz_remote {
	rados_t cl;
	rados_ioctx_t io;
	char desc[512]; /* "remote rados://pool" for messages */
	unsigned timeout_ms;
	uint64_t max_object; /* the cluster's object size limit, as known */
	uint64_t max_write;  /* and of one write operation */
	pthread_mutex_t lock; /* completions: guards the done flags */
	pthread_cond_t cond;
	int connected;
};

/* ---- waiting for operations --------------------------------------------- */

/* One asynchronous operation: its completion sets done under the
 * remote's lock and wakes the waiters. */
typedef struct aop {
	tcz_remote *r;
	rados_completion_t c;
	int done;      /* guarded by r->lock */
	int cancelled; /* we gave up waiting and cancelled it */
	uint64_t deadline;
} aop;

static void on_complete(rados_completion_t c, void *arg)
{
	(void)c;
	aop *a = arg;
	pthread_mutex_lock(&a->r->lock);
	a->done = 1;
	pthread_cond_broadcast(&a->r->cond);
	pthread_mutex_unlock(&a->r->lock);
}

static int aop_init(tcz_remote *r, aop *a)
{
	memset(a, 0, sizeof *a);
	a->r = r;
	a->deadline = tcz__now_ms() + r->timeout_ms + BACKSTOP_MS;
	int rc = rados_aio_create_completion2(a, on_complete, &a->c);
	return rc < 0 ? rc : 0;
}

static void abs_time(struct timespec *ts, uint64_t ms)
{
	ts->tv_sec = (time_t)(ms / 1000);
	ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

/* Waits for a until done, cancelling it at its deadline (librados then
 * completes it with an error; the cancel makes sure buffers are ours
 * again before we return). Returns the operation's result. */
static int aop_wait(aop *a)
{
	tcz_remote *r = a->r;
	pthread_mutex_lock(&r->lock);
	while (!a->done) {
		uint64_t now = tcz__now_ms();
		if (now >= a->deadline && !a->cancelled) {
			a->cancelled = 1;
			pthread_mutex_unlock(&r->lock);
			rados_aio_cancel(r->io, a->c);
			pthread_mutex_lock(&r->lock);
			a->deadline = now + BACKSTOP_MS;
			continue;
		}
		struct timespec ts;
		abs_time(&ts, now >= a->deadline ? now + 100 : a->deadline);
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
	pthread_mutex_unlock(&r->lock);
	int rc = rados_aio_get_return_value(a->c);
	if (a->cancelled && (rc == -ECANCELED || rc == 0 || rc == -EINTR))
		rc = -ETIMEDOUT;
	return rc;
}

static void aop_release(aop *a)
{
	if (a->c)
		rados_aio_release(a->c);
	a->c = NULL;
}

/* A write op, run and waited for; *ver (may be NULL) the object's version
 * after it. */
static int run_wop(tcz_remote *r, const char *oid, rados_write_op_t op,
		   uint64_t *ver)
{
	aop a;
	int rc = aop_init(r, &a);
	if (rc == 0)
		rc = rados_aio_write_op_operate(op, r->io, a.c, oid, NULL, 0);
	if (rc == 0) {
		rc = aop_wait(&a);
		if (ver)
			*ver = rados_aio_get_version(a.c);
	}
	aop_release(&a);
	return rc;
}

static int run_rop(tcz_remote *r, const char *oid, rados_read_op_t op,
		   uint64_t *ver)
{
	aop a;
	int rc = aop_init(r, &a);
	if (rc == 0)
		rc = rados_aio_read_op_operate(op, r->io, a.c, oid, 0);
	if (rc == 0) {
		rc = aop_wait(&a);
		if (ver)
			*ver = rados_aio_get_version(a.c);
	}
	aop_release(&a);
	return rc;
}

static int net_fail(tcz_remote *r, int rc, const char *what)
{
	if (rc == -ETIMEDOUT)
		return tcz__fail(rc, "%s: %s: no answer from the cluster within "
				     "%.1f s",
				 r->desc, what, r->timeout_ms / 1000.0);
	return tcz__fail(rc, "%s: %s: %s", r->desc, what, strerror(-rc));
}

/* Reads object oid whole (at most max bytes) into a malloc'd buffer.
 * Errors: -ENOENT; -EFBIG larger than max; network errors. */
static int read_whole(tcz_remote *r, const char *oid, size_t max,
		      unsigned char **out, size_t *len, uint64_t *ver)
{
	size_t cap = 64u << 10;
	*out = NULL;
	for (;;) {
		unsigned char *buf = malloc(cap);
		if (!buf)
			return -ENOMEM;
		rados_read_op_t op = rados_create_read_op();
		uint64_t size = 0;
		size_t got = 0;
		int p1 = 0, p2 = 0;
		rados_read_op_stat(op, &size, NULL, &p1);
		rados_read_op_read(op, 0, cap, (char *)buf, &got, &p2);
		int rc = run_rop(r, oid, op, ver);
		rados_release_read_op(op);
		if (rc == 0)
			rc = p1 ? p1 : p2;
		if (rc) {
			free(buf);
			return rc;
		}
		if (size <= cap && got == size) {
			*out = buf;
			*len = got;
			return 0;
		}
		free(buf);
		if (size > max)
			return -EFBIG;
		cap = (size_t)size + 4096; /* it grew meanwhile: read again */
	}
}

/* ---- connecting ---------------------------------------------------------- */

int tcz_remote_connect(const char *url, unsigned timeout_ms, tcz_remote **out)
{
	*out = NULL;
	tcz_remote_url u;
	char err[512];
	if (tcz_remote_url_parse(url, &u, err, sizeof err))
		return tcz__fail(-EINVAL, "%s", err);
	tcz_remote *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	r->timeout_ms = timeout_ms ? timeout_ms : TCZ_REMOTE_TIMEOUT_MS;
	snprintf(r->desc, sizeof r->desc, "remote rados://%s%s%s", u.pool,
		 u.ns[0] ? " namespace " : "", u.ns);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	char who[80];
	snprintf(who, sizeof who, "client.%s", u.id[0] ? u.id : "admin");
	int rc = rados_create2(&r->cl, "ceph", who, 0);
	if (rc < 0) {
		r->cl = NULL;
		tcz_remote_close(r);
		return tcz__fail(rc, "remote: cannot create a Ceph client: %s",
				 strerror(-rc));
	}
	rc = rados_conf_read_file(r->cl, u.conf[0] ? u.conf : NULL);
	if (rc < 0 && u.conf[0]) {
		tcz_remote_close(r);
		return tcz__fail(-ENOENT, "%s: cannot read Ceph config %s: %s",
				 r->desc, u.conf, strerror(-rc));
	}
	rados_conf_parse_env(r->cl, NULL); /* CEPH_ARGS, as ceph tools do */
	/* one line on failure is ours to print: librados stays quiet */
	rados_conf_set(r->cl, "log_to_stderr", "false");
	rados_conf_set(r->cl, "err_to_stderr", "false");
	rados_conf_set(r->cl, "log_file", "");
	char t[32];
	snprintf(t, sizeof t, "%.3f", r->timeout_ms / 1000.0);
	/* librados takes whole seconds for some of these: round up */
	char ts[32];
	snprintf(ts, sizeof ts, "%u", (r->timeout_ms + 999) / 1000);
	rados_conf_set(r->cl, "client_mount_timeout", ts);
	rados_conf_set(r->cl, "rados_mon_op_timeout", t);
	rados_conf_set(r->cl, "rados_osd_op_timeout", t);
	char mx[32] = "";
	if (rados_conf_get(r->cl, "osd_max_object_size", mx, sizeof mx) == 0)
		r->max_object = strtoull(mx, NULL, 10);
	if (!r->max_object)
		r->max_object = 128u << 20;
	/* a manifest is written in one operation, which the OSD also bounds
	 * (osd_max_write_size, MiB; 90 by default) */
	uint64_t mw = 90;
	if (rados_conf_get(r->cl, "osd_max_write_size", mx, sizeof mx) == 0 &&
	    strtoull(mx, NULL, 10))
		mw = strtoull(mx, NULL, 10);
	r->max_write = mw << 20;
	rc = rados_connect(r->cl);
	if (rc < 0) {
		tcz_remote_close(r);
		if (rc == -ETIMEDOUT || rc == -EINTR)
			return tcz__fail(-ETIMEDOUT,
					 "remote rados://%s: no answer from the "
					 "cluster within %.1f s (monitors down or "
					 "unreachable?)",
					 u.pool, (timeout_ms ? timeout_ms
							     : TCZ_REMOTE_TIMEOUT_MS) /
							 1000.0);
		if (rc == -EACCES || rc == -EPERM)
			return tcz__fail(-EACCES,
					 "remote rados://%s: the cluster refused "
					 "client.%s (keyring, caps?)",
					 u.pool, u.id[0] ? u.id : "admin");
		return tcz__fail(rc, "remote rados://%s: cannot connect: %s",
				 u.pool, strerror(-rc));
	}
	r->connected = 1;
	rc = rados_ioctx_create(r->cl, u.pool, &r->io);
	if (rc < 0) {
		r->io = NULL;
		tcz_remote_close(r);
		if (rc == -ENOENT)
			return tcz__fail(-ENOENT, "remote rados://%s: no pool "
						  "named %s",
					 u.pool, u.pool);
		return tcz__fail(rc, "remote rados://%s: %s", u.pool,
				 strerror(-rc));
	}
	if (u.ns[0])
		rados_ioctx_set_namespace(r->io, u.ns);
	*out = r;
	return 0;
}

void tcz_remote_close(tcz_remote *r)
{
	if (!r)
		return;
	if (r->io) {
		rados_aio_flush(r->io);
		rados_ioctx_destroy(r->io);
	}
	if (r->cl)
		rados_shutdown(r->cl);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}

/* ---- fetching chunks --------------------------------------------------------- */

struct tcz_rfetch {
	aop a;
	rados_read_op_t op;
	unsigned char sha[TCZ_SHA256_LEN];
	uint32_t len;
	void *buf;
	uint64_t size;
	size_t got;
	int p_stat, p_read;
	char oid[TCZ_REMOTE_OID_MAX];
};

int tcz_remote_fetch_start(tcz_remote *r, const unsigned char sha[TCZ_SHA256_LEN],
			   uint32_t len, void *buf, tcz_rfetch **out)
{
	*out = NULL;
	if (len == 0 || len > TCZ__OBJ_MAX)
		return -EINVAL;
	tcz_rfetch *f = calloc(1, sizeof *f);
	if (!f)
		return -ENOMEM;
	int rc = aop_init(r, &f->a);
	if (rc) {
		free(f);
		return rc;
	}
	memcpy(f->sha, sha, TCZ_SHA256_LEN);
	f->len = len;
	f->buf = buf;
	tcz_remote_chunk_oid(sha, f->oid);
	f->op = rados_create_read_op();
	/* the size and the bytes in one operation: an object longer than
	 * the manifest says is caught without reading more than len */
	rados_read_op_stat(f->op, &f->size, NULL, &f->p_stat);
	rados_read_op_read(f->op, 0, len, buf, &f->got, &f->p_read);
	rc = rados_aio_read_op_operate(f->op, r->io, f->a.c, f->oid, 0);
	if (rc < 0) {
		rados_release_read_op(f->op);
		aop_release(&f->a);
		free(f);
		return rc;
	}
	*out = f;
	return 0;
}

int tcz_remote_fetch_done(const tcz_rfetch *f)
{
	pthread_mutex_lock(&f->a.r->lock);
	int d = f->a.done;
	pthread_mutex_unlock(&f->a.r->lock);
	return d;
}

/* The checks of a fetched object against its name. */
static int fetch_check(tcz_remote *r, const tcz_rfetch *f, int rc)
{
	if (rc == 0)
		rc = f->p_stat ? f->p_stat : f->p_read;
	if (rc == -ENOENT)
		return tcz__fail(-ENOENT, "%s: object %s is missing", r->desc,
				 f->oid);
	if (rc)
		return net_fail(r, rc, f->oid);
	if (f->size != f->len || f->got != f->len)
		return tcz__fail(-EIO,
				 "%s: object %s has %llu bytes, its name says "
				 "%u (truncated or corrupt)",
				 r->desc, f->oid, (unsigned long long)f->size,
				 f->len);
	unsigned char got[TCZ_SHA256_LEN];
	tcz_sha256(f->buf, f->len, got);
	if (memcmp(got, f->sha, TCZ_SHA256_LEN) != 0)
		return tcz__fail(-EIO, "%s: object %s: hash mismatch (its bytes "
				       "are not what its name says; corrupt)",
				 r->desc, f->oid);
	return 0;
}

int tcz_remote_fetch_wait(tcz_rfetch *f)
{
	tcz_remote *r = f->a.r;
	int rc = aop_wait(&f->a);
	rc = fetch_check(r, f, rc);
	rados_release_read_op(f->op);
	aop_release(&f->a);
	free(f);
	return rc;
}

int tcz_remote_fetch_chunk(tcz_remote *r, const unsigned char sha[TCZ_SHA256_LEN],
			   uint32_t len, void *buf)
{
	tcz_rfetch *f;
	int rc = tcz_remote_fetch_start(r, sha, len, buf, &f);
	return rc ? rc : tcz_remote_fetch_wait(f);
}

/* ---- the index ------------------------------------------------------------------ */

/* The index and its version (0 when it does not exist yet). */
static int index_read(tcz_remote *r, tcz_rindex **ix, uint64_t *ver)
{
	unsigned char *buf;
	size_t len;
	*ver = 0;
	int rc = read_whole(r, TCZ__INDEX_OID, 64u << 20, &buf, &len, ver);
	if (rc == -ENOENT) {
		*ver = 0;
		return tcz__index_decode(NULL, 0, ix);
	}
	if (rc)
		return net_fail(r, rc, "reading the index");
	rc = tcz__index_decode(buf, len, ix);
	free(buf);
	if (rc == -EIO || rc == -EBADMSG)
		return tcz__fail(rc, "%s: %s", r->desc, tcz_store_errmsg());
	return rc;
}

int tcz_remote_index(tcz_remote *r, tcz_rindex **out)
{
	uint64_t ver;
	return index_read(r, out, &ver);
}

/* Applies fn to the index and writes it back, only if nobody wrote it
 * meanwhile (its version, or its absence, asserted): retried until the
 * write goes through. */
static int index_update(tcz_remote *r, int (*fn)(tcz_rindex *, void *),
			void *arg)
{
	for (int attempt = 0; attempt < INDEX_ATTEMPTS; attempt++) {
		tcz_rindex *ix;
		uint64_t ver;
		int rc = index_read(r, &ix, &ver);
		if (rc)
			return rc;
		if ((rc = fn(ix, arg)) != 0) {
			tcz_rindex_free(ix);
			return rc;
		}
		tcz_wbuf w;
		rc = tcz__index_encode(ix, &w);
		tcz_rindex_free(ix);
		if (rc)
			return rc;
		rados_write_op_t op = rados_create_write_op();
		if (ver)
			rados_write_op_assert_version(op, ver);
		else
			rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
		rados_write_op_write_full(op, (const char *)w.p, w.len);
		rc = run_wop(r, TCZ__INDEX_OID, op, NULL);
		rados_release_write_op(op);
		tcz_wb_free(&w);
		if (rc == 0)
			return 0;
		if (rc != -ERANGE && rc != -EOVERFLOW && rc != -EEXIST &&
		    rc != -ENOENT)
			return net_fail(r, rc, "writing the index");
		/* another host changed it: read again, a little later */
		usleep((useconds_t)(1000 + (rand() % 4000) * (attempt + 1)));
	}
	return tcz__fail(-EBUSY, "%s: the index kept changing; try again",
			 r->desc);
}

static int set_entry(tcz_rindex *ix, void *arg)
{
	return tcz__index_set(ix, arg);
}

static int del_entry(tcz_rindex *ix, void *arg)
{
	return tcz__index_del(ix, arg) ? tcz__fail(-ENOENT, "no model %s on "
							    "the remote",
						   (const char *)arg)
				       : 0;
}

/* ---- remote models ------------------------------------------------------------------- */

/* A manifest's object: "m." name "." the SHA-256 of its bytes in hex. A
 * push writes a new object and then points the index at it, so a host
 * reads the old manifest or the new one, never a half-replaced one; gc
 * deletes those the index no longer names. */
#define MANIFEST_OID_MAX (TCZ_NAME_MAX + 2 + 1 + 2 * TCZ_SHA256_LEN + 1)

static void manifest_oid(char out[MANIFEST_OID_MAX], const char *name,
			 const unsigned char sha[TCZ_SHA256_LEN])
{
	char hex[2 * TCZ_SHA256_LEN + 1];
	tcz__hex(sha, TCZ_SHA256_LEN, hex);
	snprintf(out, MANIFEST_OID_MAX, "m.%s.%s", name, hex);
}

/* The model name of manifest object oid, into out; -EINVAL when oid is
 * not one. */
static int manifest_oid_name(const char *oid, char *out, size_t n,
			     unsigned char sha[TCZ_SHA256_LEN])
{
	size_t l = strlen(oid), hl = 2 * TCZ_SHA256_LEN;
	if (l < 2 + 1 + 1 + hl || strncmp(oid, "m.", 2) != 0 ||
	    oid[l - hl - 1] != '.' || l - hl - 1 - 2 >= n)
		return -EINVAL;
	for (size_t i = 0; i < TCZ_SHA256_LEN; i++) {
		unsigned v;
		if (sscanf(oid + l - hl + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		sha[i] = (unsigned char)v;
	}
	memcpy(out, oid + 2, l - hl - 1 - 2);
	out[l - hl - 1 - 2] = 0;
	return tcz_model_name_valid(out) ? 0 : -EINVAL;
}


int tcz_remote_model_open(tcz_remote *r, const char *name, tcz_rmodel **out)
{
	*out = NULL;
	if (!tcz_model_name_valid(name))
		return tcz__fail(-EINVAL, "invalid model name '%s'", name);
	int rc = 0;
	for (int attempt = 0; attempt < MANIFEST_ATTEMPTS; attempt++) {
		tcz_rindex *ix;
		uint64_t ver;
		if ((rc = index_read(r, &ix, &ver)))
			return rc;
		long at = tcz__index_find(ix, name);
		if (at < 0) {
			tcz_rindex_free(ix);
			return tcz__fail(-ENOENT, "%s has no model named %s",
					 r->desc, name);
		}
		tcz_rindex_entry e = ix->e[at];
		tcz_rindex_free(ix);
		char oid[MANIFEST_OID_MAX];
		manifest_oid(oid, name, e.manifest_sha);
		unsigned char *buf;
		size_t len;
		rc = read_whole(r, oid, e.manifest_len + 1, &buf, &len, NULL);
		if (rc == -ENOENT || rc == -EFBIG) {
			rc = tcz__fail(-EIO, "%s: the manifest of %s is missing "
					     "or not the one the index names",
				       r->desc, name);
			continue; /* replaced meanwhile? the index again */
		}
		if (rc)
			return net_fail(r, rc, oid);
		unsigned char sha[TCZ_SHA256_LEN];
		tcz_sha256(buf, len, sha);
		if (len != e.manifest_len ||
		    memcmp(sha, e.manifest_sha, TCZ_SHA256_LEN) != 0) {
			free(buf);
			rc = tcz__fail(-EIO, "%s: object %s: hash mismatch (the "
					     "manifest is not the one the index "
					     "names)",
				       r->desc, oid);
			continue;
		}
		tcz_rmodel *rm;
		rc = tcz__manifest_decode(name, buf, len, tcz_remote_ident(sha), &rm);
		free(buf);
		if (rc) {
			if (rc == -EBADMSG)
				rc = -EIO;
			return tcz__fail(rc, "%s: %s", r->desc, tcz_store_errmsg());
		}
		memcpy(rm->msha, sha, TCZ_SHA256_LEN);
		*out = rm;
		return 0;
	}
	return rc;
}

/* ---- the pipeline of object operations -------------------------------------------- */

/* One object in flight. */
typedef enum slot_state {
	SL_FREE = 0,
	SL_STAT,  /* push: is it there, and how long? */
	SL_TOUCH, /* push: it is: mark it needed (gc) */
	SL_WRITE, /* push: it is not: write it */
	SL_FETCH, /* pull: read it */
} slot_state;

typedef struct slot {
	aop a;
	slot_state st;
	uint32_t obj;       /* index into the object list */
	unsigned char *buf; /* the value (push) or the fetch buffer */
	uint32_t len;
	rados_write_op_t wop;
	tcz_rfetch *f;
	uint64_t size;
	time_t mtime;
	char oid[TCZ_REMOTE_OID_MAX];
} slot;

/* What a push or pull moves: the model's distinct chunks, then its TT
 * cores. */
typedef struct objlist {
	tcz__mchunk *chunks;
	uint32_t n_chunks;
	tcz__mcore *cores;
	uint32_t n_cores;
} objlist;

static uint32_t ol_count(const objlist *l)
{
	return l->n_chunks + l->n_cores;
}

static unsigned char *ol_sha(objlist *l, uint32_t i)
{
	return i < l->n_chunks ? l->chunks[i].sha : l->cores[i - l->n_chunks].sha;
}

static uint32_t *ol_len(objlist *l, uint32_t i)
{
	return i < l->n_chunks ? &l->chunks[i].len
			       : &l->cores[i - l->n_chunks].len;
}

static void ol_free(objlist *l)
{
	free(l->chunks);
	free(l->cores);
}

typedef struct xfer {
	tcz_remote *r;
	const tcz_xfer_opts *o;
	tcz_xfer_progress p;
	uint64_t t0, last_report;
	unsigned jobs;
	slot *slots;
} xfer;

static double secs_since(uint64_t t0)
{
	return (double)(tcz__now_ms() - t0) / 1000.0;
}

static void report(xfer *x, int final)
{
	uint64_t now = tcz__now_ms();
	if (!x->o || !x->o->progress || (!final && now - x->last_report < 100))
		return;
	x->last_report = now;
	x->p.seconds = secs_since(x->t0);
	x->o->progress(x->o->ud, &x->p);
}

/* Waits until some busy slot is done, or until ms pass. */
static void wait_any(xfer *x, uint64_t ms)
{
	tcz_remote *r = x->r;
	uint64_t until = tcz__now_ms() + ms;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		for (unsigned i = 0; i < x->jobs; i++) {
			slot *s = &x->slots[i];
			if (s->st != SL_FREE &&
			    (s->f ? s->f->a.done : s->a.done)) {
				pthread_mutex_unlock(&r->lock);
				return;
			}
		}
		uint64_t now = tcz__now_ms();
		if (now >= until)
			break;
		struct timespec ts;
		abs_time(&ts, until);
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
	pthread_mutex_unlock(&r->lock);
}

static int slot_done(const slot *s)
{
	return s->f ? tcz_remote_fetch_done(s->f) : s->a.done;
}

/* Cancels in-flight operations and waits for them (on an error, so that
 * no buffer is freed under librados). */
static void drain(xfer *x)
{
	for (unsigned i = 0; i < x->jobs; i++) {
		slot *s = &x->slots[i];
		if (s->st == SL_FREE)
			continue;
		if (s->f) {
			tcz_remote_fetch_wait(s->f);
			s->f = NULL;
		} else if (s->a.c) {
			aop_wait(&s->a);
			aop_release(&s->a);
		}
		if (s->wop)
			rados_release_write_op(s->wop);
		s->wop = NULL;
		free(s->buf);
		s->buf = NULL;
		s->st = SL_FREE;
	}
}

/* ---- push ---------------------------------------------------------------------------- */

typedef struct push {
	xfer x;
	tcz_store *s;
	tcz_reader *rd;
	const tcz_model *m;
	objlist l;
	char lease[160];
	uint64_t lease_start, lease_renewed;
	uint64_t nonce;
} push;

static uint64_t nonce64(void)
{
	uint64_t v = 0;
	FILE *f = fopen("/dev/urandom", "rb");
	if (f) {
		if (fread(&v, sizeof v, 1, f) != 1)
			v = 0;
		fclose(f);
	}
	return v ^ tcz__now_ms() ^ ((uint64_t)getpid() << 32);
}

static int lease_create(push *p)
{
	char host[64] = "host";
	gethostname(host, sizeof host - 1);
	host[sizeof host - 1] = 0;
	for (char *c = host; *c; c++)
		if (*c == '.' || *c == '/')
			*c = '_';
	p->lease_start = tcz__now_ms();
	snprintf(p->lease, sizeof p->lease, "l.%s.%ld.%016llx", host,
		 (long)getpid(), (unsigned long long)nonce64());
	tcz_wbuf w;
	int rc = tcz__lease_encode(p->lease_start, host, (uint64_t)getpid(),
				   p->m->name, &w);
	if (rc) {
		tcz_wb_free(&w);
		return rc;
	}
	char st[40];
	size_t sl = tcz__stamp(st, p->lease_start, 0, 0);
	rados_write_op_t op = rados_create_write_op();
	rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, NULL);
	rados_write_op_write_full(op, (const char *)w.p, w.len);
	rados_write_op_setxattr(op, TCZ__RENEW_XATTR, st, sl);
	rc = run_wop(p->x.r, p->lease, op, NULL);
	rados_release_write_op(op);
	tcz_wb_free(&w);
	if (rc)
		return net_fail(p->x.r, rc, "creating the push's lease");
	p->lease_renewed = p->lease_start;
	return 0;
}

/* Renews the lease; -ENOENT when gc judged it dead and removed it. */
static int lease_renew(push *p)
{
	uint64_t now = tcz__now_ms();
	char st[40];
	size_t sl = tcz__stamp(st, now, 0, 0);
	rados_write_op_t op = rados_create_write_op();
	rados_write_op_assert_exists(op);
	rados_write_op_setxattr(op, TCZ__RENEW_XATTR, st, sl);
	int rc = run_wop(p->x.r, p->lease, op, NULL);
	rados_release_write_op(op);
	if (rc == 0)
		p->lease_renewed = now;
	return rc;
}

static void lease_remove(push *p)
{
	if (p->lease[0])
		rados_remove(p->x.r->io, p->lease);
	p->lease[0] = 0;
}

/* Copies object i's value out of the local store (checked) into a
 * malloc'd buffer, and names it. */
static int push_value(push *p, uint32_t i, unsigned char **buf, uint32_t *len)
{
	const unsigned char *val;
	size_t vlen;
	int rc;
	const char *what;
	char desc[96];
	if (i < p->l.n_chunks) {
		const unsigned char *key = p->l.chunks[i].key;
		what = "chunk";
		rc = tcz__fetch(p->rd, p->s->chunks, key, TCZ_KEY_LEN, &val, &vlen);
		if (rc == 0) {
			unsigned char got[TCZ_KEY_LEN];
			tcz__chunk_key(val, vlen, got);
			if (memcmp(got, key, TCZ_KEY_LEN) != 0)
				rc = -EIO;
		}
		tcz__hex(key, TCZ_KEY_LEN, desc);
	} else {
		const tcz__mcore *c = &p->l.cores[i - p->l.n_chunks];
		unsigned char key[16];
		tcz__key_id_idx(key, p->m->id, c->t);
		tcz_be32(key + 12, c->k);
		what = "TT core";
		rc = tcz__fetch(p->rd, p->s->ttcores, key, 16, &val, &vlen);
		tcz_rbuf rb;
		if (rc == 0 && tcz_rec_open(&rb, val, vlen))
			rc = -EIO;
		snprintf(desc, sizeof desc, "%u of tensor '%s'", c->k,
			 p->m->tensors[c->t].name);
	}
	if (rc == -ENOENT)
		return tcz__fail(-EIO, "model %s: %s %s is missing from the local "
				       "store (run tczfs verify)",
				 p->m->name, what, desc);
	if (rc == -EIO)
		return tcz__fail(-EIO, "model %s: %s %s is damaged in the local "
				       "store (run tczfs verify); nothing of it "
				       "was sent",
				 p->m->name, what, desc);
	if (rc)
		return rc;
	if (vlen > TCZ__OBJ_MAX)
		return tcz__fail(-EFBIG, "model %s: %s %s is too large for an "
					 "object",
				 p->m->name, what, desc);
	if (!(*buf = malloc(vlen ? vlen : 1)))
		return -ENOMEM;
	memcpy(*buf, val, vlen);
	*len = (uint32_t)vlen;
	return 0;
}

static void touch_stamp(push *p, char st[40], size_t *sl)
{
	*sl = tcz__stamp(st, tcz__now_ms(), p->nonce++, 1);
}

/* Issues the next operation of slot s in state st. */
static int push_issue(push *p, slot *s, slot_state st)
{
	tcz_remote *r = p->x.r;
	int rc = aop_init(r, &s->a);
	if (rc)
		return rc;
	s->st = st;
	if (st == SL_STAT) {
		rc = rados_aio_stat(r->io, s->oid, s->a.c, &s->size, &s->mtime);
	} else {
		char ts[40];
		size_t tl;
		touch_stamp(p, ts, &tl);
		s->wop = rados_create_write_op();
		if (st == SL_TOUCH) {
			/* only if still there: gc may have taken it meanwhile */
			rados_write_op_assert_exists(s->wop);
		} else {
			/* whole, in one atomic operation: an interrupted push
			 * leaves the object absent or complete */
			rados_write_op_write_full(s->wop, (const char *)s->buf,
						  s->len);
		}
		rados_write_op_setxattr(s->wop, TCZ__TOUCH_XATTR, ts, tl);
		rc = rados_aio_write_op_operate(s->wop, r->io, s->a.c, s->oid,
						NULL, 0);
	}
	if (rc < 0) {
		aop_release(&s->a);
		if (s->wop)
			rados_release_write_op(s->wop);
		s->wop = NULL;
	}
	return rc;
}

/* Handles a finished operation of slot s: the next one, or done. */
static int push_step(push *p, slot *s, int *finished)
{
	int rc = aop_wait(&s->a); /* done: returns at once */
	aop_release(&s->a);
	if (s->wop)
		rados_release_write_op(s->wop);
	s->wop = NULL;
	*finished = 0;
	switch (s->st) {
	case SL_STAT:
		if (rc == 0 && s->size == s->len)
			return push_issue(p, s, SL_TOUCH);
		if (rc == 0 || rc == -ENOENT) /* absent, or not whole */
			return push_issue(p, s, SL_WRITE);
		return net_fail(p->x.r, rc, s->oid);
	case SL_TOUCH:
		if (rc == -ENOENT) /* collected meanwhile: send it */
			return push_issue(p, s, SL_WRITE);
		if (rc)
			return net_fail(p->x.r, rc, s->oid);
		p->x.p.skipped++;
		break;
	case SL_WRITE:
		if (rc)
			return net_fail(p->x.r, rc, s->oid);
		p->x.p.bytes_moved += s->len;
		break;
	default:
		return -EINVAL;
	}
	p->x.p.objects++;
	p->x.p.bytes += s->len;
	*finished = 1;
	return 0;
}

/* One round: every object present (touched) or written. */
static int push_round(push *p)
{
	xfer *x = &p->x;
	uint32_t n = ol_count(&p->l), next = 0;
	unsigned active = 0;
	int rc = 0;
	x->p.objects = x->p.bytes = x->p.skipped = 0;
	while (rc == 0 && (next < n || active)) {
		for (unsigned i = 0; rc == 0 && i < x->jobs && next < n; i++) {
			slot *s = &x->slots[i];
			if (s->st != SL_FREE)
				continue;
			s->obj = next++;
			rc = push_value(p, s->obj, &s->buf, &s->len);
			if (rc)
				break;
			/* the name is the hash of exactly these bytes */
			tcz_sha256(s->buf, s->len, ol_sha(&p->l, s->obj));
			*ol_len(&p->l, s->obj) = s->len;
			tcz_remote_chunk_oid(ol_sha(&p->l, s->obj), s->oid);
			rc = push_issue(p, s, SL_STAT);
			if (rc) {
				free(s->buf);
				s->buf = NULL;
				s->st = SL_FREE;
				rc = net_fail(x->r, rc, s->oid);
				break;
			}
			active++;
		}
		if (rc)
			break;
		wait_any(x, 1000);
		for (unsigned i = 0; rc == 0 && i < x->jobs; i++) {
			slot *s = &x->slots[i];
			if (s->st == SL_FREE || !slot_done(s))
				continue;
			int fin;
			rc = push_step(p, s, &fin);
			if (rc || fin) {
				free(s->buf);
				s->buf = NULL;
				s->st = SL_FREE;
				active--;
			}
		}
		if (rc == 0 && tcz__now_ms() - p->lease_renewed > LEASE_RENEW_MS) {
			rc = lease_renew(p);
			if (rc == -ENOENT)
				rc = 0; /* judged dead: noticed before the manifest */
			else if (rc)
				rc = net_fail(x->r, rc, "renewing the push's lease");
		}
		report(x, 0);
	}
	if (rc)
		drain(x);
	return rc;
}

static int cmp_key(const void *a, const void *b)
{
	return memcmp(((const tcz__mchunk *)a)->key,
		      ((const tcz__mchunk *)b)->key, TCZ_KEY_LEN);
}

/* The model's distinct chunk keys and its TT cores. */
static int push_objects(const tcz_model *m, objlist *l)
{
	size_t n = 0, nk = 0;
	for (uint32_t t = 0; t < m->n_tensors; t++) {
		n += m->tensors[t].n_chunks;
		if (m->tensors[t].codec == TCZ_CODEC_TT)
			nk += m->tensors[t].tt_order;
	}
	for (uint32_t b = 0; b < m->n_blobs; b++)
		n += m->blobs[b].n_chunks;
	if (n > UINT32_MAX / 2 || nk > UINT32_MAX / 2)
		return -EFBIG;
	l->chunks = calloc(n ? n : 1, sizeof *l->chunks);
	l->cores = calloc(nk ? nk : 1, sizeof *l->cores);
	if (!l->chunks || !l->cores)
		return -ENOMEM;
	size_t at = 0, ak = 0;
	for (uint32_t t = 0; t < m->n_tensors; t++) {
		const tcz_tensor *tn = &m->tensors[t];
		for (uint32_t i = 0; i < tn->n_chunks; i++)
			memcpy(l->chunks[at++].key, tn->chunks[i], TCZ_KEY_LEN);
		for (uint32_t k = 0; tn->codec == TCZ_CODEC_TT && k < tn->tt_order;
		     k++) {
			l->cores[ak].t = t;
			l->cores[ak++].k = k;
		}
	}
	for (uint32_t b = 0; b < m->n_blobs; b++)
		for (uint32_t i = 0; i < m->blobs[b].n_chunks; i++)
			memcpy(l->chunks[at++].key, m->blobs[b].chunks[i],
			       TCZ_KEY_LEN);
	/* distinct, sorted by key (the manifest's order) */
	if (at) {
		qsort(l->chunks, at, sizeof *l->chunks, cmp_key);
		size_t o = 1;
		for (size_t i = 1; i < at; i++)
			if (memcmp(l->chunks[i].key, l->chunks[o - 1].key,
				   TCZ_KEY_LEN))
				l->chunks[o++] = l->chunks[i];
		at = o;
	}
	l->n_chunks = (uint32_t)at;
	l->n_cores = (uint32_t)ak;
	return 0;
}

static int xfer_init(xfer *x, tcz_remote *r, const tcz_xfer_opts *o,
		     uint64_t total_objects)
{
	memset(x, 0, sizeof *x);
	x->r = r;
	x->o = o;
	x->jobs = o && o->jobs ? o->jobs : DEFAULT_JOBS;
	if (x->jobs > MAX_JOBS)
		x->jobs = MAX_JOBS;
	x->slots = calloc(x->jobs, sizeof *x->slots);
	x->t0 = tcz__now_ms();
	x->p.objects_total = total_objects;
	return x->slots ? 0 : -ENOMEM;
}

int tcz_remote_push(tcz_store *s, tcz_remote *r, const char *name,
		    const tcz_xfer_opts *o, tcz_xfer_progress *st)
{
	push p;
	memset(&p, 0, sizeof p);
	p.s = s;
	p.nonce = nonce64();
	tcz_mview *v = NULL;
	/* the view pins the model: its chunks stay while we send them,
	 * whatever removals or re-encodings happen meanwhile */
	int rc = tcz_mview_open(s, name, &v);
	if (rc == -ENOENT)
		return tcz__fail(-ENOENT, "no local model named %s", name);
	if (rc)
		return rc;
	p.m = tcz_mview_model(v);
	if ((rc = push_objects(p.m, &p.l)) != 0 ||
	    (rc = tcz_reader_create(s, &p.rd)) != 0 ||
	    (rc = xfer_init(&p.x, r, o, ol_count(&p.l))) != 0)
		goto out;
	/* an estimate until the values are read (shared chunks count once) */
	p.x.p.bytes_total = p.m->stored_bytes;
	if ((rc = lease_create(&p)) != 0)
		goto out;
	for (int round = 0;; round++) {
		if ((rc = push_round(&p)) != 0)
			goto out;
		/* the manifest may name these objects only if no gc took any
		 * since we touched them: gc removes a lease before it deems
		 * a push dead, so a lease still there vouches for them */
		rc = lease_renew(&p);
		if (rc == 0)
			break;
		if (rc != -ENOENT) {
			rc = net_fail(r, rc, "renewing the push's lease");
			goto out;
		}
		if (round + 1 >= PUSH_ROUNDS) {
			rc = tcz__fail(-EAGAIN, "%s: a gc kept deeming this push "
						"dead (is it stalled?)",
				       r->desc);
			goto out;
		}
		if ((rc = lease_create(&p)) != 0)
			goto out;
	}
	p.x.p.bytes_total = p.x.p.bytes;
	/* the manifest: every object it names is there */
	tcz_wbuf w;
	uint64_t now = tcz__now_ms();
	rc = tcz__manifest_encode(p.m, now, p.l.chunks, p.l.n_chunks, p.l.cores,
				  p.l.n_cores, &w);
	if (rc)
		goto out;
	if (w.len > r->max_object || w.len > r->max_write) {
		tcz_wb_free(&w);
		rc = tcz__fail(-EFBIG, "%s: the manifest of %s (%zu bytes) "
				       "exceeds the cluster's object or write size limit "
				       "(osd_max_object_size, osd_max_write_size)",
			       r->desc, name, w.len);
		goto out;
	}
	unsigned char msha[TCZ_SHA256_LEN];
	tcz_sha256(w.p, w.len, msha);
	char oid[MANIFEST_OID_MAX];
	manifest_oid(oid, name, msha);
	char ts[40];
	size_t tl;
	touch_stamp(&p, ts, &tl);
	rados_write_op_t op = rados_create_write_op();
	rados_write_op_write_full(op, (const char *)w.p, w.len);
	/* gc removes an unindexed manifest only if no push touched it since
	 * it looked (this one is about to be indexed) */
	rados_write_op_setxattr(op, TCZ__TOUCH_XATTR, ts, tl);
	rc = run_wop(r, oid, op, NULL);
	rados_release_write_op(op);
	if (rc) {
		tcz_wb_free(&w);
		rc = net_fail(r, rc, "writing the manifest");
		goto out;
	}
	tcz_rindex_entry e = {0};
	e.name = (char *)name;
	memcpy(e.manifest_sha, msha, TCZ_SHA256_LEN);
	e.manifest_len = w.len;
	e.push_time = now;
	e.source_bytes = p.m->source_bytes;
	e.stored_bytes = p.x.p.bytes;
	e.n_objects = ol_count(&p.l);
	tcz_wb_free(&w);
	/* then the index: from here on every host sees the model, whole */
	rc = index_update(r, set_entry, &e);
out:
	if (p.x.slots)
		lease_remove(&p);
	if (rc == 0)
		report(&p.x, 1);
	if (st)
		*st = p.x.p, st->seconds = secs_since(p.x.t0);
	free(p.x.slots);
	ol_free(&p.l);
	tcz_reader_free(p.rd);
	tcz_mview_put(v);
	return rc;
}

/* ---- pull ------------------------------------------------------------------------------ */

typedef struct pull {
	xfer x;
	tcz_store *s;
	tcz_reader *rd;
	tcz_rmodel *rm;
	tcz_import_tx *tx;
	void *scratch; /* decoded check of chunks */
} pull;

/* Checks a chunk value by the store's rules (its key, its header, that it
 * decodes) and adds it to the import. Takes val. */
static int pull_chunk(pull *p, const unsigned char *key, unsigned char *val,
		      size_t len, const char *from)
{
	unsigned char got[TCZ_KEY_LEN];
	tcz__chunk_key(val, len, got);
	tcz_chunk_hdr h;
	int rc = 0;
	if (memcmp(got, key, TCZ_KEY_LEN) != 0)
		rc = -EIO;
	else if (tcz__chunk_parse(val, len, &h) != 0 ||
		 tcz__decode_value(p->rd, val, len, h.dtype, p->scratch,
				   h.decoded_len) != 0)
		rc = -EBADMSG;
	if (rc) {
		char hex[33];
		tcz__hex(key, TCZ_KEY_LEN, hex);
		free(val);
		return tcz__fail(-EIO, "model %s: chunk %s from %s: %s",
				 p->rm->m->name, hex, from,
				 rc == -EIO ? "hash mismatch (not the chunk its "
					      "key names)"
					    : "does not decode");
	}
	rc = tcz_import_put_chunk(p->tx, val, len, got);
	return rc;
}

static int pull_core(pull *p, uint32_t i, unsigned char *val, size_t len)
{
	const tcz__mcore *c = &p->rm->cores[i];
	const tcz_tensor *tn = &p->rm->m->tensors[c->t];
	tcz_rbuf rb;
	int rc = -EBADMSG;
	if (tcz_rec_open(&rb, val, len) == 0 && tn->codec == TCZ_CODEC_TT &&
	    c->k < tn->tt_order) {
		uint64_t rl = tcz_rb_u32(&rb), n = tcz_rb_u32(&rb),
			 rr = tcz_rb_u32(&rb);
		size_t cnt = (size_t)(rl * n * rr);
		if (rl == tn->tt_ranks[c->k] && n == tn->tt_modes[c->k] &&
		    rr == tn->tt_ranks[c->k + 1] && rb.len - rb.off == cnt * 4) {
			float *data = malloc(cnt ? cnt * 4 : 4);
			if (!data) {
				free(val);
				return -ENOMEM;
			}
			memcpy(data, rb.p + rb.off, cnt * 4);
			rc = tcz_import_put_ttcore(p->tx, c->t, c->k, rl, n, rr,
						   data);
			free(data);
		}
	}
	free(val);
	if (rc == -EBADMSG)
		return tcz__fail(-EIO, "model %s: TT core %u of tensor '%s' is "
				       "malformed",
				 p->rm->m->name, c->k, tn->name);
	return rc;
}

/* A value the local store already has (a local model's chunk, or the
 * chunk cache's): no fetch. Takes nothing; 1 when used. */
static int pull_local(pull *p, uint32_t i, int *used)
{
	*used = 0;
	if (i >= p->rm->n_chunks)
		return 0;
	const unsigned char *key = p->rm->chunks[i].key;
	MDB_dbi dbs[2] = {p->s->chunks, p->s->rcache};
	int n = p->s->has_remote ? 2 : 1;
	for (int k = 0; k < n; k++) {
		const unsigned char *val;
		size_t len;
		int rc = tcz__fetch(p->rd, dbs[k], key, TCZ_KEY_LEN, &val, &len);
		if (rc == -ENOENT)
			continue;
		if (rc)
			return rc;
		unsigned char got[TCZ_KEY_LEN];
		tcz__chunk_key(val, len, got);
		if (memcmp(got, key, TCZ_KEY_LEN) != 0)
			continue; /* damaged here: fetch it instead */
		unsigned char *copy = malloc(len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, val, len);
		*used = 1;
		return pull_chunk(p, key, copy, len, "the local store");
	}
	return 0;
}

static int pull_fetched(pull *p, slot *s)
{
	int rc = tcz_remote_fetch_wait(s->f);
	s->f = NULL;
	unsigned char *buf = s->buf;
	s->buf = NULL;
	if (rc) {
		free(buf);
		return rc;
	}
	p->x.p.bytes_moved += s->len;
	p->x.p.bytes += s->len;
	p->x.p.objects++;
	if (s->obj < p->rm->n_chunks)
		return pull_chunk(p, p->rm->chunks[s->obj].key, buf, s->len,
				  s->oid);
	return pull_core(p, s->obj - p->rm->n_chunks, buf, s->len);
}

static int pull_all(pull *p)
{
	xfer *x = &p->x;
	uint32_t n = tcz_rmodel_nobjects(p->rm), next = 0;
	unsigned active = 0;
	int rc = 0;
	while (rc == 0 && (next < n || active)) {
		for (unsigned i = 0; rc == 0 && i < x->jobs && next < n;) {
			slot *s = &x->slots[i];
			if (s->st != SL_FREE) {
				i++;
				continue;
			}
			uint32_t obj = next++;
			int used;
			if ((rc = pull_local(p, obj, &used)) != 0)
				break;
			unsigned char sha[TCZ_SHA256_LEN];
			uint32_t len;
			tcz_rmodel_object(p->rm, obj, sha, &len);
			if (used) { /* the slot stays free for the next one */
				x->p.objects++;
				x->p.bytes += len;
				x->p.skipped++;
				continue;
			}
			s->obj = obj;
			s->len = len;
			tcz_remote_chunk_oid(sha, s->oid);
			if (!(s->buf = malloc(len))) {
				rc = -ENOMEM;
				break;
			}
			rc = tcz_remote_fetch_start(x->r, sha, len, s->buf, &s->f);
			if (rc) {
				free(s->buf);
				s->buf = NULL;
				rc = net_fail(x->r, rc, s->oid);
				break;
			}
			s->st = SL_FETCH;
			active++;
			i++;
		}
		if (rc)
			break;
		if (active)
			wait_any(x, 1000);
		for (unsigned i = 0; rc == 0 && i < x->jobs; i++) {
			slot *s = &x->slots[i];
			if (s->st == SL_FREE || !slot_done(s))
				continue;
			rc = pull_fetched(p, s);
			s->st = SL_FREE;
			active--;
		}
		report(x, 0);
	}
	if (rc)
		drain(x);
	return rc;
}

int tcz_remote_pull(tcz_store *s, tcz_remote *r, const char *name,
		    const tcz_xfer_opts *o, tcz_xfer_progress *st)
{
	pull p;
	memset(&p, 0, sizeof p);
	p.s = s;
	if (s->flags & TCZ_STORE_RDONLY)
		return tcz__fail(-EROFS, "store %s is open read-only", s->dir);
	/* a name taken locally fails before anything is fetched */
	tcz_snap *sn;
	uint64_t id;
	int rc = tcz_snap_begin(s, &sn);
	if (rc)
		return rc;
	rc = tcz_snap_model_id(sn, name, &id);
	tcz_snap_end(sn);
	if (rc == 0 || rc == -EIO)
		return tcz__fail(-EEXIST, "a local model named %s exists "
					  "(tczfs rm it first)",
				 name);
	if ((rc = tcz_remote_model_open(r, name, &p.rm)) != 0)
		return rc;
	uint64_t total = 0;
	for (uint32_t i = 0; i < tcz_rmodel_nobjects(p.rm); i++) {
		unsigned char sha[TCZ_SHA256_LEN];
		uint32_t len;
		tcz_rmodel_object(p.rm, i, sha, &len);
		total += len;
	}
	if ((rc = xfer_init(&p.x, r, o, tcz_rmodel_nobjects(p.rm))) != 0 ||
	    (rc = tcz_reader_create(s, &p.rd)) != 0)
		goto out;
	p.x.p.bytes_total = total;
	if (!(p.scratch = malloc(TCZ_CHUNK_MAX))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = tcz_import_begin(s, name, &p.tx)) != 0)
		goto out;
	if ((rc = pull_all(&p)) != 0) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s", tcz_store_errmsg());
		tcz_import_abort(p.tx);
		tcz__fail(rc, "%s", msg);
		goto out;
	}
	/* the model as the pushing host had it, under a local id */
	tcz_model *m = p.rm->m;
	m->id = m->rev = m->iid = 0;
	rc = tcz_import_commit(p.tx, m);
	if (rc == 0)
		report(&p.x, 1);
out:
	if (st)
		*st = p.x.p, st->seconds = secs_since(p.x.t0);
	free(p.scratch);
	free(p.x.slots);
	tcz_reader_free(p.rd);
	tcz_rmodel_free(p.rm);
	return rc;
}

/* ---- drop ----------------------------------------------------------------------------- */

int tcz_remote_drop(tcz_remote *r, const char *name)
{
	if (!tcz_model_name_valid(name))
		return tcz__fail(-EINVAL, "invalid model name '%s'", name);
	/* the manifest object goes with the next gc (a host that read the
	 * index just before may still be opening it) */
	return index_update(r, del_entry, (void *)name);
}

/* ---- gc ------------------------------------------------------------------------------- */

typedef struct names {
	char **v;
	size_t n, cap;
} names;

static void names_free(names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

static int names_add(names *l, const char *s)
{
	if (l->n == l->cap) {
		size_t c = l->cap ? l->cap * 2 : 256;
		char **nv = realloc(l->v, c * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = c;
	}
	if (!(l->v[l->n] = strdup(s)))
		return -ENOMEM;
	l->n++;
	return 0;
}

static int cmp_sha(const void *a, const void *b)
{
	return memcmp(a, b, TCZ_SHA256_LEN);
}

/* Parses "c.<64 hex>" into sha; -1 when it is not a chunk name. */
static int oid_sha(const char *oid, unsigned char sha[TCZ_SHA256_LEN])
{
	if (strncmp(oid, "c.", 2) != 0 || strlen(oid) != 2 + 2 * TCZ_SHA256_LEN)
		return -1;
	for (unsigned i = 0; i < TCZ_SHA256_LEN; i++) {
		int a = oid[2 + 2 * i], b = oid[3 + 2 * i];
		int x = a >= '0' && a <= '9' ? a - '0' : a >= 'a' && a <= 'f' ? a - 'a' + 10 : -1;
		int y = b >= '0' && b <= '9' ? b - '0' : b >= 'a' && b <= 'f' ? b - 'a' + 10 : -1;
		if (x < 0 || y < 0)
			return -1;
		sha[i] = (unsigned char)(x * 16 + y);
	}
	return 0;
}

static int gc_list(tcz_remote *r, names *chunks, names *manifests,
		   names *leases)
{
	rados_list_ctx_t ctx;
	int rc = rados_nobjects_list_open(r->io, &ctx);
	if (rc < 0)
		return net_fail(r, rc, "listing objects");
	const char *e, *k, *ns;
	while ((rc = rados_nobjects_list_next(ctx, &e, &k, &ns)) == 0) {
		names *l = !strncmp(e, "c.", 2)   ? chunks
			   : !strncmp(e, "m.", 2) ? manifests
			   : !strncmp(e, "l.", 2) ? leases
						  : NULL;
		if (l && (rc = names_add(l, e)) != 0)
			break;
	}
	rados_nobjects_list_close(ctx);
	if (rc == -ENOENT)
		rc = 0; /* the end of the listing */
	return rc ? net_fail(r, rc, "listing objects") : 0;
}

/* Deletes oid if its xattr name still reads val[vl]. 1 deleted, 0 kept
 * (it changed: a push touched it), or an error. */
static int cond_remove(tcz_remote *r, const char *oid, const char *xname,
		       const char *val, size_t vl)
{
	rados_write_op_t op = rados_create_write_op();
	rados_write_op_cmpxattr(op, xname, LIBRADOS_CMPXATTR_OP_EQ, val, vl);
	rados_write_op_remove(op);
	int rc = run_wop(r, oid, op, NULL);
	rados_release_write_op(op);
	if (rc == 0)
		return 1;
	if (rc == -ECANCELED || rc == -ENOENT || rc == -ENODATA)
		return 0;
	return net_fail(r, rc, oid);
}

int tcz_remote_gc(tcz_remote *r, const tcz_gc_opts *o, tcz_gc_stats *st)
{
	tcz_gc_stats z = {0};
	names chunks = {0}, manifests = {0}, leases = {0};
	unsigned char(*refs)[TCZ_SHA256_LEN] = NULL;
	size_t nrefs = 0, caprefs = 0;
	uint64_t now = tcz__now_ms();
	uint64_t grace_ms = o->grace_s > UINT64_MAX / 2000 ? UINT64_MAX / 2
							 : o->grace_s * 1000;
	uint64_t cutoff = now > grace_ms ? now - grace_ms : 0;
	uint64_t ttl = grace_ms > LEASE_TTL_MS ? grace_ms : LEASE_TTL_MS;
	int rc = gc_list(r, &chunks, &manifests, &leases);
	if (rc)
		goto out;
	/* pushes in progress: nothing they touched may go */
	for (size_t i = 0; i < leases.n; i++) {
		char v[64];
		z.leases++;
		int n = rados_getxattr(r->io, leases.v[i], TCZ__RENEW_XATTR, v,
				       sizeof v - 1);
		uint64_t renewed = 0, start = 0;
		if (n == -ENOENT)
			continue;
		if (n < 0 && n != -ENODATA) {
			rc = net_fail(r, n, leases.v[i]);
			goto out;
		}
		if (n < 0 || tcz__stamp_ms(v, (size_t)n, &renewed)) {
			renewed = 0; /* unreadable: as old as can be */
			n = 0;
		}
		if (renewed + ttl < now) {
			z.dead_leases++;
			if (!o->dry_run && n > 0) {
				/* only if not renewed meanwhile */
				int d = cond_remove(r, leases.v[i], TCZ__RENEW_XATTR,
						    v, (size_t)n);
				if (d < 0) {
					rc = d;
					goto out;
				}
				if (d == 1)
					continue;
				/* renewed: alive after all; its start counts */
			} else {
				continue;
			}
		}
		unsigned char *buf;
		size_t len;
		int e = read_whole(r, leases.v[i], 4096, &buf, &len, NULL);
		if (e == -ENOENT)
			continue;
		if (e == 0 && tcz__lease_decode(buf, len, &start) == 0) {
			if (start < cutoff)
				cutoff = start;
		} else {
			/* a lease we cannot read: assume it covers all */
			cutoff = 0;
		}
		if (e == 0)
			free(buf);
	}
	/* the manifests the index names, and those a push may be about to
	 * index (touched since the cutoff), keep what they name; the others
	 * (replaced by a later push, dropped) go, each only if no push
	 * touched it meanwhile. Read after the leases: a push that indexed
	 * its manifest after this read held a lease when they were read. */
	tcz_rindex *ix = NULL;
	uint64_t iver;
	if ((rc = index_read(r, &ix, &iver)) != 0)
		goto out;
	for (size_t i = 0; i < manifests.n; i++) {
		char mname[TCZ_NAME_MAX + 1];
		unsigned char msha[TCZ_SHA256_LEN];
		if (manifest_oid_name(manifests.v[i], mname, sizeof mname, msha))
			continue; /* not one of ours */
		long at = tcz__index_find(ix, mname);
		int indexed = at >= 0 && memcmp(ix->e[at].manifest_sha, msha,
						TCZ_SHA256_LEN) == 0;
		if (!indexed) {
			char v[64];
			int n = rados_getxattr(r->io, manifests.v[i],
					       TCZ__TOUCH_XATTR, v, sizeof v - 1);
			uint64_t touched = 0;
			if (n == -ENOENT)
				continue; /* removed meanwhile */
			if (n < 0 && n != -ENODATA) {
				rc = net_fail(r, n, manifests.v[i]);
				break;
			}
			if (n > 0 && tcz__stamp_ms(v, (size_t)n, &touched) == 0 &&
			    touched < cutoff) {
				z.manifests_deleted++;
				if (o->dry_run) {
					if (o->each)
						o->each(o->ud, manifests.v[i], 0);
					continue;
				}
				int d = cond_remove(r, manifests.v[i],
						    TCZ__TOUCH_XATTR, v, (size_t)n);
				if (d < 0) {
					rc = d;
					break;
				}
				if (d == 1) {
					if (o->each)
						o->each(o->ud, manifests.v[i], 0);
					continue;
				}
				z.manifests_deleted--; /* touched: kept */
			} else if (n <= 0) {
				continue; /* no stamp: not written by a push */
			}
		}
		unsigned char *buf;
		size_t len;
		rc = read_whole(r, manifests.v[i], r->max_object, &buf, &len, NULL);
		if (rc == -ENOENT) {
			rc = 0; /* removed meanwhile */
			continue;
		}
		if (rc) {
			rc = net_fail(r, rc, manifests.v[i]);
			break;
		}
		tcz_rmodel *rm;
		rc = tcz__manifest_decode(mname, buf, len, 1, &rm);
		free(buf);
		if (rc) {
			rc = tcz__fail(-EIO, "%s: %s: gc stops before deleting "
					     "any chunk (%s)",
				       r->desc, manifests.v[i], tcz_store_errmsg());
			break;
		}
		for (uint32_t k = 0; k < tcz_rmodel_nobjects(rm) && rc == 0; k++) {
			uint32_t len2;
			if ((rc = tcz__grow(&refs, &caprefs, nrefs, TCZ_SHA256_LEN,
					    1024)) == 0)
				tcz_rmodel_object(rm, k, refs[nrefs++], &len2);
		}
		tcz_rmodel_free(rm);
		if (rc)
			break;
	}
	tcz_rindex_free(ix);
	if (rc)
		goto out;
	if (nrefs)
		qsort(refs, nrefs, TCZ_SHA256_LEN, cmp_sha);
	for (size_t i = 0; i < chunks.n; i++) {
		unsigned char sha[TCZ_SHA256_LEN];
		if (oid_sha(chunks.v[i], sha))
			continue; /* not one of ours */
		z.objects++;
		if (nrefs && bsearch(sha, refs, nrefs, TCZ_SHA256_LEN, cmp_sha)) {
			z.referenced++;
			continue;
		}
		char v[64];
		int n = rados_getxattr(r->io, chunks.v[i], TCZ__TOUCH_XATTR, v,
				       sizeof v - 1);
		if (n == -ENOENT || n == -ENODATA)
			continue; /* gone, or not written by a push */
		if (n < 0) {
			rc = net_fail(r, n, chunks.v[i]);
			goto out;
		}
		uint64_t touched;
		if (tcz__stamp_ms(v, (size_t)n, &touched))
			continue;
		if (touched >= cutoff) {
			z.young++;
			continue;
		}
		uint64_t size = 0;
		time_t mt;
		if (rados_stat(r->io, chunks.v[i], &size, &mt) < 0)
			size = 0;
		if (o->dry_run) {
			z.deleted++;
			z.deleted_bytes += size;
			if (o->each)
				o->each(o->ud, chunks.v[i], size);
			continue;
		}
		int d = cond_remove(r, chunks.v[i], TCZ__TOUCH_XATTR, v, (size_t)n);
		if (d < 0) {
			rc = d;
			goto out;
		}
		if (d == 0) {
			z.raced++;
			continue;
		}
		z.deleted++;
		z.deleted_bytes += size;
		if (o->each)
			o->each(o->ud, chunks.v[i], size);
	}
out:
	if (st)
		*st = z;
	names_free(&chunks);
	names_free(&manifests);
	names_free(&leases);
	free(refs);
	return rc;
}

/* ---- views of remote models ------------------------------------------------------------ */

/* The chunk source of a remote view: a local copy if one exists, else
 * the cache, else the remote. */
typedef struct rsrc {
	tcz_remote *r;
	tcz_rcache *c;
	tcz_rmodel *rm;
} rsrc;

static int rsrc_get(void *ud, tcz_reader *rd, const unsigned char *key,
		    int is_core, uint32_t t, uint32_t k,
		    const unsigned char **val, size_t *len)
{
	rsrc *src = ud;
	unsigned char sha[TCZ_SHA256_LEN];
	uint32_t olen;
	int rc;
	/* TT cores are not cached on disk: the cache's keys are the XXH3-128
	 * of the values, which a manifest does not give for cores (their
	 * reconstructions stay in the decoded-chunk cache) */
	if (is_core)
		rc = tcz_rmodel_ttcore(src->rm, t, k, sha, &olen);
	else
		rc = tcz_rmodel_chunk(src->rm, key, sha, &olen);
	if (rc)
		return -ENODATA;
	if (!is_core) {
		rc = tcz__fetch(rd, rd->s->chunks, key, TCZ_KEY_LEN, val, len);
		if (rc == 0) {
			unsigned char got[TCZ_KEY_LEN];
			tcz__chunk_key(*val, *len, got);
			if (memcmp(got, key, TCZ_KEY_LEN) == 0)
				return 0;
		} else if (rc != -ENOENT) {
			return rc;
		}
		if (src->c && tcz_rcache_get(src->c, rd, key, val, len) == 0)
			return 0;
	}
	/* into the reader's value buffer, as a local fetch would leave it */
	if (olen > rd->val_cap) {
		unsigned char *nv = realloc(rd->val, olen);
		if (!nv)
			return -ENOMEM;
		rd->val = nv;
		rd->val_cap = olen;
	}
	rc = tcz_remote_fetch_chunk(src->r, sha, olen, rd->val);
	if (rc == -ENOENT)
		rc = -EIO; /* the manifest names it: it should be there */
	if (rc)
		return rc;
	rd->val_len = olen;
	*val = rd->val;
	*len = olen;
	if (!is_core) {
		unsigned char got[TCZ_KEY_LEN];
		tcz__chunk_key(*val, *len, got);
		if (memcmp(got, key, TCZ_KEY_LEN) != 0)
			return tcz__fail(-EIO, "%s: a chunk's object does not "
					       "hold the chunk its key names",
					 src->r->desc);
		if (src->c)
			tcz_rcache_put(src->c, key, *val, *len); /* best effort */
	}
	return 0;
}

static void rsrc_free(void *ud)
{
	rsrc *src = ud;
	tcz_rmodel_free(src->rm);
	free(src);
}

int tcz_remote_mview_open(tcz_store *s, tcz_remote *r, tcz_rcache *c,
			  const char *name, tcz_mview **out)
{
	*out = NULL;
	rsrc *src = calloc(1, sizeof *src);
	if (!src)
		return -ENOMEM;
	src->r = r;
	src->c = c;
	int rc = tcz_remote_model_open(r, name, &src->rm);
	if (rc) {
		free(src);
		return rc;
	}
	static const tcz__vsource ops = {rsrc_get, rsrc_free};
	/* the view takes the records; rm keeps the object tables */
	tcz_model *m = src->rm->m;
	src->rm->m = NULL;
	return tcz__mview_open_model(s, m, &ops, src, out);
}
