/* A bounded cache of decoded chunks, shared by threads.
 *
 * Keys are 16 bytes (a chunk's content key, or any other unique name).
 * A get for an absent key fills the entry once, outside any lock, while
 * other getters of that key wait; entries are pinned until released, and
 * unpinned ones are evicted least-recently-used first when the cache holds
 * more than its budget. Entry memory is mapped per entry, so evicting
 * returns it to the system, but for up to 16 MiB of 1 MiB buffers kept
 * for reuse (counted outside the budget). */
#ifndef TCZ_CACHE_H
#define TCZ_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tcz_cache tcz_cache;
typedef struct tcz_cache_entry tcz_cache_entry;

/* Fills dst[len]; returns 0 or a negative errno. */
typedef int (*tcz_cache_fill_fn)(void *arg, void *dst, size_t len);

/* Errors: -ENOMEM. */
int tcz_cache_create(size_t budget_bytes, tcz_cache **out);

/* Frees the cache; every entry must have been released. NULL is fine. */
void tcz_cache_free(tcz_cache *c);

/* The pinned entry for key, of len bytes, filled by fill(arg) if absent.
 * Errors: what fill returned (the entry is dropped, a later get retries);
 * -ENOMEM. */
int tcz_cache_get(tcz_cache *c, const unsigned char key[16], size_t len,
		  tcz_cache_fill_fn fill, void *arg, tcz_cache_entry **out);

const void *tcz_cache_data(const tcz_cache_entry *e);
size_t tcz_cache_len(const tcz_cache_entry *e);

/* Unpins an entry from tcz_cache_get. */
void tcz_cache_release(tcz_cache *c, tcz_cache_entry *e);

/* Unpins e after n of its bytes went to a reader. Once all its bytes
 * have (over any number of releases, in any order) it is dropped when
 * no one holds it: a chunk read through is in the kernel's page cache
 * now, so its buffer is better used for the chunks ahead (no fresh
 * memory for each) and a streaming read does not push out what other
 * readers come back to. A reader that wants it again decodes it again. */
void tcz_cache_release_served(tcz_cache *c, tcz_cache_entry *e, size_t n);

/* A prefetcher's get: fills key if absent, like tcz_cache_get, and
 * leaves it unpinned, but does not fill a key among the last ones
 * dropped once read through (a chunk that was read before its prefetch
 * came up is wanted by no one now; a tcz_cache_get of the key makes it
 * welcome again).
 * Errors: -EALREADY such a key; what fill returned; -ENOMEM. */
int tcz_cache_prefetch(tcz_cache *c, const unsigned char key[16], size_t len,
		       tcz_cache_fill_fn fill, void *arg);

/* True when key is cached or being filled (prefetchers skip those). */
bool tcz_cache_has(tcz_cache *c, const unsigned char key[16]);

typedef struct tcz_cache_stats {
	uint64_t hits, misses, evictions;
	uint64_t consumed; /* entries dropped once read through */
	uint64_t bytes, entries; /* now */
	uint64_t budget;
} tcz_cache_stats;

void tcz_cache_get_stats(tcz_cache *c, tcz_cache_stats *st);

#endif
