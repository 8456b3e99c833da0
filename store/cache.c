#include "store/cache.h"

#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SHARDS 16
#define GONE_RING 32 /* per shard */

enum { LOADING, READY, FAILED };

struct tcz_cache_entry {
	unsigned char key[16];
	void *data;
	size_t len;
	int state, err;     /* guarded by the shard lock */
	unsigned refs;      /* guarded by the shard lock */
	size_t served;      /* guarded by the shard lock: bytes given to readers */
	tcz_cache_entry *hnext;          /* hash chain */
	tcz_cache_entry *prev, *next;    /* LRU list, most recent first */
	struct shard *sh;
	struct tcz_cache *cache;
};

typedef struct shard {
	pthread_mutex_t lock;
	pthread_cond_t filled; /* an entry left LOADING */
	/* everything below is guarded by lock */
	tcz_cache_entry **buckets;
	size_t nbuckets, count;
	tcz_cache_entry *head, *tail;
	size_t bytes;
	uint64_t hits, misses, evictions, consumed;
	/* Keys of the entries last dropped once read through, a ring: a
	 * prefetch queued before its chunk was read and drawn after would
	 * decode it again for no reader (a quarter of a cold sequential
	 * read's decodes, each left in the cache until evicted). A slot of
	 * zeros is empty: keys are content hashes. */
	unsigned char gone[GONE_RING][16];
	unsigned gone_at;
} shard;

/* Freed buffers kept for reuse: their pages stay mapped and populated,
 * so filling a new entry does not fault on every page nor take the
 * process's mmap lock (with 128 KiB chunks a fresh mmap + munmap per
 * chunk cost a third of the daemon's CPU). Buffers are sized in classes
 * of POOL_STEP up to POOL_TOP; the pool holds at most POOL_BYTES in all,
 * and at most an eighth of the budget (it is outside the budget: part of
 * the daemon's small constant, which a 32 MiB cache with a 16 MiB pool
 * pushed past 64 MiB under load). Smaller buffers come from malloc,
 * larger ones are mapped exactly. */
#define POOL_STEP (64u << 10)
#define POOL_TOP (1u << 20)
#define POOL_CLASSES (POOL_TOP / POOL_STEP)
#define POOL_BYTES (16u << 20)
#define POOL_MAX (POOL_BYTES / POOL_STEP)

struct tcz_cache {
	shard sh[SHARDS];
	size_t budget;
	/* Bytes held by all shards. The budget is one, global: a per-shard
	 * share of a small budget is a couple of chunks, and uneven hashing
	 * then evicts chunks about to be read. */
	_Atomic size_t total;
	pthread_mutex_t pool_lock; /* guards pool, npool, pooled */
	void *pool[POOL_CLASSES][POOL_MAX];
	unsigned npool[POOL_CLASSES];
	size_t pooled; /* bytes in the pool */
	size_t pool_cap; /* POOL_BYTES or budget / 8, the smaller */
};

/* The class of a buffer of len bytes (its mapping is (class + 1) *
 * POOL_STEP), or -1 when it is not pooled. */
static int buf_class(size_t len)
{
	if (len < POOL_STEP || len > POOL_TOP)
		return -1;
	return (int)((len + POOL_STEP - 1) / POOL_STEP) - 1;
}

static size_t class_bytes(int k)
{
	return (size_t)(k + 1) * POOL_STEP;
}

static void *buf_get(tcz_cache *c, size_t len)
{
	if (len < POOL_STEP)
		return malloc(len ? len : 1);
	int k = buf_class(len);
	size_t map = k >= 0 ? class_bytes(k) : len;
	if (k >= 0) {
		pthread_mutex_lock(&c->pool_lock);
		void *p = c->npool[k] ? c->pool[k][--c->npool[k]] : NULL;
		if (p)
			c->pooled -= map;
		pthread_mutex_unlock(&c->pool_lock);
		if (p)
			return p;
	}
	void *p = mmap(NULL, map, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void buf_put(tcz_cache *c, void *p, size_t len)
{
	if (!p)
		return;
	if (len < POOL_STEP) {
		free(p);
		return;
	}
	int k = buf_class(len);
	if (k >= 0) {
		pthread_mutex_lock(&c->pool_lock);
		if (c->npool[k] < POOL_MAX &&
		    c->pooled + class_bytes(k) <= c->pool_cap) {
			c->pool[k][c->npool[k]++] = p;
			c->pooled += class_bytes(k);
			p = NULL;
		}
		pthread_mutex_unlock(&c->pool_lock);
	}
	if (p)
		munmap(p, k >= 0 ? class_bytes(k) : len);
}

static uint64_t khash(const unsigned char *k)
{
	uint64_t h;
	memcpy(&h, k, 8);
	return h ^ (h >> 29);
}

static shard *shard_of(tcz_cache *c, const unsigned char *k)
{
	return &c->sh[k[15] % SHARDS];
}

int tcz_cache_create(size_t budget, tcz_cache **out)
{
	tcz_cache *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	c->budget = budget;
	c->pool_cap = budget / 8 < POOL_BYTES ? budget / 8 : POOL_BYTES;
	pthread_mutex_init(&c->pool_lock, NULL);
	for (int i = 0; i < SHARDS; i++) {
		shard *s = &c->sh[i];
		pthread_mutex_init(&s->lock, NULL);
		pthread_cond_init(&s->filled, NULL);
		s->nbuckets = 64;
		s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
		if (!s->buckets) {
			tcz_cache_free(c);
			return -ENOMEM;
		}
	}
	*out = c;
	return 0;
}

static void lru_unlink(shard *s, tcz_cache_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		s->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		s->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_front(shard *s, tcz_cache_entry *e)
{
	e->next = s->head;
	e->prev = NULL;
	if (s->head)
		s->head->prev = e;
	s->head = e;
	if (!s->tail)
		s->tail = e;
}

static void hash_remove(shard *s, tcz_cache_entry *e)
{
	tcz_cache_entry **p = &s->buckets[khash(e->key) & (s->nbuckets - 1)];
	while (*p && *p != e)
		p = &(*p)->hnext;
	if (*p)
		*p = e->hnext;
	s->count--;
}

static void hash_grow(shard *s)
{
	size_t n = s->nbuckets * 2;
	tcz_cache_entry **b = calloc(n, sizeof *b);
	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < s->nbuckets; i++) {
		tcz_cache_entry *e = s->buckets[i];
		while (e) {
			tcz_cache_entry *nx = e->hnext;
			size_t j = khash(e->key) & (n - 1);
			e->hnext = b[j];
			b[j] = e;
			e = nx;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
}

static void entry_free(tcz_cache_entry *e)
{
	buf_put(e->cache, e->data, e->len);
	free(e);
}

/* Drops unpinned entries from the cold end of shard s while the cache is
 * over budget. Called with s->lock held. */
static void evict_shard(tcz_cache *c, shard *s)
{
	tcz_cache_entry *e = s->tail;
	while (atomic_load(&c->total) > c->budget && e) {
		tcz_cache_entry *prev = e->prev;
		if (e->refs == 0 && e->state == READY) {
			lru_unlink(s, e);
			hash_remove(s, e);
			s->bytes -= e->len;
			atomic_fetch_sub(&c->total, e->len);
			s->evictions++;
			entry_free(e);
		}
		e = prev;
	}
}

/* Brings the cache within budget, starting with shard s (locked by the
 * caller), then the others in turn (each locked briefly). */
static void evict(tcz_cache *c, shard *s)
{
	evict_shard(c, s);
	for (int i = 1; i < SHARDS && atomic_load(&c->total) > c->budget; i++) {
		shard *o = &c->sh[(s - c->sh + i) % SHARDS];
		if (pthread_mutex_trylock(&o->lock) != 0)
			continue; /* busy: its own users will evict */
		evict_shard(c, o);
		pthread_mutex_unlock(&o->lock);
	}
}

static tcz_cache_entry *find(shard *s, const unsigned char *k)
{
	tcz_cache_entry *e = s->buckets[khash(k) & (s->nbuckets - 1)];
	while (e && memcmp(e->key, k, 16) != 0)
		e = e->hnext;
	return e;
}

/* The slot of key in s's ring of entries read through, or NULL. */
static unsigned char *gone_slot(shard *s, const unsigned char *k)
{
	for (unsigned i = 0; i < GONE_RING; i++)
		if (memcmp(s->gone[i], k, 16) == 0)
			return s->gone[i];
	return NULL;
}

/* tcz_cache_get; when ahead, -EALREADY instead of filling a key read
 * through lately. */
static int get(tcz_cache *c, const unsigned char key[16], size_t len,
	       tcz_cache_fill_fn fill, void *arg, tcz_cache_entry **out,
	       int ahead)
{
	shard *s = shard_of(c, key);
	pthread_mutex_lock(&s->lock);
	tcz_cache_entry *e = find(s, key);
	unsigned char *g = e ? NULL : gone_slot(s, key);
	if (g && ahead) {
		pthread_mutex_unlock(&s->lock);
		return -EALREADY;
	}
	if (g) /* wanted again: prefetches of it are welcome again */
		memset(g, 0, 16);
	if (e) {
		e->refs++;
		s->hits++;
		while (e->state == LOADING)
			pthread_cond_wait(&s->filled, &s->lock);
		int err = e->state == FAILED ? e->err : 0;
		if (!err && e->len == len) {
			lru_unlink(s, e);
			lru_front(s, e);
		}
		pthread_mutex_unlock(&s->lock);
		if (err || e->len != len) {
			tcz_cache_release(c, e);
			return err ? err : -EINVAL;
		}
		*out = e;
		return 0;
	}
	s->misses++;
	e = calloc(1, sizeof *e);
	if (!e) {
		pthread_mutex_unlock(&s->lock);
		return -ENOMEM;
	}
	memcpy(e->key, key, 16);
	e->len = len;
	e->refs = 1;
	e->state = LOADING;
	e->sh = s;
	e->cache = c;
	if (s->count + 1 > s->nbuckets)
		hash_grow(s);
	size_t b = khash(key) & (s->nbuckets - 1);
	e->hnext = s->buckets[b];
	s->buckets[b] = e;
	s->count++;
	s->bytes += len;
	atomic_fetch_add(&c->total, len);
	lru_front(s, e);
	pthread_mutex_unlock(&s->lock);

	int rc = 0;
	e->data = buf_get(c, len);
	rc = e->data ? fill(arg, e->data, len) : -ENOMEM;

	pthread_mutex_lock(&s->lock);
	if (rc) {
		e->state = FAILED;
		e->err = rc;
		lru_unlink(s, e);
		hash_remove(s, e);
		s->bytes -= len;
		atomic_fetch_sub(&c->total, len);
	} else {
		e->state = READY;
	}
	pthread_cond_broadcast(&s->filled);
	if (rc) {
		unsigned left = --e->refs;
		pthread_mutex_unlock(&s->lock);
		if (left == 0)
			entry_free(e);
		return rc;
	}
	evict(c, s);
	pthread_mutex_unlock(&s->lock);
	*out = e;
	return 0;
}

int tcz_cache_get(tcz_cache *c, const unsigned char key[16], size_t len,
		  tcz_cache_fill_fn fill, void *arg, tcz_cache_entry **out)
{
	return get(c, key, len, fill, arg, out, 0);
}

int tcz_cache_prefetch(tcz_cache *c, const unsigned char key[16], size_t len,
		       tcz_cache_fill_fn fill, void *arg)
{
	tcz_cache_entry *e;
	int rc = get(c, key, len, fill, arg, &e, 1);
	if (rc == 0)
		tcz_cache_release(c, e);
	return rc;
}

const void *tcz_cache_data(const tcz_cache_entry *e)
{
	return e->data;
}

size_t tcz_cache_len(const tcz_cache_entry *e)
{
	return e->len;
}

static void release(tcz_cache *c, tcz_cache_entry *e, size_t served)
{
	shard *s = e->sh;
	pthread_mutex_lock(&s->lock);
	unsigned left = --e->refs;
	int orphan = e->state == FAILED; /* already out of the table */
	e->served += served;
	if (!orphan && left == 0 && e->served >= e->len && e->state == READY) {
		lru_unlink(s, e);
		hash_remove(s, e);
		s->bytes -= e->len;
		atomic_fetch_sub(&c->total, e->len);
		s->consumed++;
		memcpy(s->gone[s->gone_at++ % GONE_RING], e->key, 16);
		orphan = 1; /* out of the table: freed below */
	} else if (!orphan) {
		evict(c, s);
	}
	pthread_mutex_unlock(&s->lock);
	if (orphan && left == 0)
		entry_free(e);
}

void tcz_cache_release(tcz_cache *c, tcz_cache_entry *e)
{
	release(c, e, 0);
}

void tcz_cache_release_served(tcz_cache *c, tcz_cache_entry *e, size_t n)
{
	release(c, e, n);
}

bool tcz_cache_has(tcz_cache *c, const unsigned char key[16])
{
	shard *s = shard_of(c, key);
	pthread_mutex_lock(&s->lock);
	bool has = find(s, key) != NULL;
	pthread_mutex_unlock(&s->lock);
	return has;
}

void tcz_cache_get_stats(tcz_cache *c, tcz_cache_stats *st)
{
	memset(st, 0, sizeof *st);
	st->budget = c->budget;
	for (int i = 0; i < SHARDS; i++) {
		shard *s = &c->sh[i];
		pthread_mutex_lock(&s->lock);
		st->hits += s->hits;
		st->misses += s->misses;
		st->evictions += s->evictions;
		st->consumed += s->consumed;
		st->bytes += s->bytes;
		st->entries += s->count;
		pthread_mutex_unlock(&s->lock);
	}
}

void tcz_cache_free(tcz_cache *c)
{
	if (!c)
		return;
	for (int i = 0; i < SHARDS; i++) {
		shard *s = &c->sh[i];
		tcz_cache_entry *e = s->head;
		while (e) {
			tcz_cache_entry *n = e->next;
			entry_free(e);
			e = n;
		}
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->filled);
	}
	for (int k = 0; k < (int)POOL_CLASSES; k++)
		for (unsigned i = 0; i < c->npool[k]; i++)
			munmap(c->pool[k][i], class_bytes(k));
	pthread_mutex_destroy(&c->pool_lock);
	free(c);
}
