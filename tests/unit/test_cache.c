/* The decoded-chunk cache: one fill per key under contention, the budget
 * holds for unpinned entries, pinned ones survive, failures are retried,
 * entries read through leave once unpinned and are not prefetched again
 * at once. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "store/cache.h"

static int fills;
static pthread_mutex_t fl = PTHREAD_MUTEX_INITIALIZER;

static int fill_pattern(void *arg, void *dst, size_t len)
{
	unsigned char k = *(unsigned char *)arg;
	pthread_mutex_lock(&fl);
	fills++;
	pthread_mutex_unlock(&fl);
	memset(dst, k, len);
	return 0;
}

static int fill_fail(void *arg, void *dst, size_t len)
{
	(void)arg;
	(void)dst;
	(void)len;
	return -EIO;
}

static void key_of(unsigned char k[16], unsigned i)
{
	memset(k, 0, 16);
	memcpy(k, &i, sizeof i);
	k[15] = (unsigned char)i;
}

static tcz_cache *shared;

static void *hammer(void *arg)
{
	(void)arg;
	for (unsigned round = 0; round < 200; round++) {
		unsigned i = round % 8;
		unsigned char k[16], v = (unsigned char)i;
		key_of(k, i);
		tcz_cache_entry *e;
		if (tcz_cache_get(shared, k, 4096, fill_pattern, &v, &e) != 0)
			return (void *)1;
		const unsigned char *d = tcz_cache_data(e);
		for (size_t j = 0; j < 4096; j++)
			if (d[j] != v)
				return (void *)1;
		tcz_cache_release(shared, e);
	}
	return NULL;
}

static void one_fill_per_key(void **state)
{
	(void)state;
	fills = 0;
	assert_int_equal(tcz_cache_create(1 << 20, &shared), 0);
	pthread_t t[8];
	for (int i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, hammer, NULL);
	for (int i = 0; i < 8; i++) {
		void *r;
		pthread_join(t[i], &r);
		assert_null(r);
	}
	assert_int_equal(fills, 8); /* 8 keys, each filled once */
	tcz_cache_stats st;
	tcz_cache_get_stats(shared, &st);
	assert_int_equal(st.misses, 8);
	assert_int_equal(st.hits, 8 * 200 - 8);
	tcz_cache_free(shared);
}

static void budget_and_pins(void **state)
{
	(void)state;
	tcz_cache *c;
	/* one global budget of two entries, whatever shards keys fall in */
	assert_int_equal(tcz_cache_create(65536, &c), 0);
	unsigned char k[16], v = 7;
	tcz_cache_entry *pinned, *e;
	key_of(k, 100);
	assert_int_equal(tcz_cache_get(c, k, 32768, fill_pattern, &v, &pinned), 0);
	for (unsigned i = 1; i <= 9; i++) { /* keys in shards 1..9 */
		key_of(k, i);
		assert_int_equal(tcz_cache_get(c, k, 32768, fill_pattern, &v, &e), 0);
		tcz_cache_release(c, e);
	}
	tcz_cache_stats st;
	tcz_cache_get_stats(c, &st);
	assert_true(st.bytes <= 65536); /* the pinned one plus one more */
	assert_int_equal(st.evictions, 8);
	key_of(k, 100);
	assert_true(tcz_cache_has(c, k)); /* pinned: not evicted */
	key_of(k, 9);
	assert_true(tcz_cache_has(c, k)); /* the most recent stays */
	key_of(k, 1);
	assert_false(tcz_cache_has(c, k)); /* the oldest went */
	tcz_cache_release(c, pinned);
	tcz_cache_free(c);
}

static void failure_is_retried(void **state)
{
	(void)state;
	tcz_cache *c;
	assert_int_equal(tcz_cache_create(1 << 20, &c), 0);
	unsigned char k[16], v = 3;
	key_of(k, 5);
	tcz_cache_entry *e;
	assert_int_equal(tcz_cache_get(c, k, 100, fill_fail, NULL, &e), -EIO);
	assert_false(tcz_cache_has(c, k));
	assert_int_equal(tcz_cache_get(c, k, 100, fill_pattern, &v, &e), 0);
	assert_int_equal(((const unsigned char *)tcz_cache_data(e))[99], 3);
	tcz_cache_release(c, e);
	tcz_cache_free(c);
}

/* An entry whose bytes have all been served is dropped once unpinned
 * (its next get fills again), whatever the order and number of the
 * releases, and not while another holder has it. */
static void served_is_dropped(void **state)
{
	(void)state;
	tcz_cache *c;
	assert_int_equal(tcz_cache_create(1u << 20, &c), 0);
	unsigned char k[16], v = 5;
	tcz_cache_entry *e1, *e2;
	tcz_cache_stats st;
	fills = 0;

	key_of(k, 1);
	assert_int_equal(tcz_cache_get(c, k, 8192, fill_pattern, &v, &e1), 0);
	tcz_cache_release_served(c, e1, 8192);
	tcz_cache_get_stats(c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	assert_int_equal(st.consumed, 1);
	assert_int_equal(tcz_cache_get(c, k, 8192, fill_pattern, &v, &e1), 0);
	assert_int_equal(fills, 2);
	tcz_cache_release(c, e1); /* a plain release keeps it */
	assert_int_equal(tcz_cache_get(c, k, 8192, fill_pattern, &v, &e1), 0);
	tcz_cache_release_served(c, e1, 4096); /* half of it: kept */
	assert_true(tcz_cache_has(c, k));
	assert_int_equal(tcz_cache_get(c, k, 8192, fill_pattern, &v, &e1), 0);
	assert_int_equal(fills, 2);
	tcz_cache_release_served(c, e1, 4096); /* the other half */
	assert_false(tcz_cache_has(c, k));

	/* held twice: dropped at the last release, whichever kind it is */
	key_of(k, 2);
	assert_int_equal(tcz_cache_get(c, k, 8192, fill_pattern, &v, &e1), 0);
	assert_int_equal(tcz_cache_get(c, k, 8192, fill_pattern, &v, &e2), 0);
	assert_int_equal(fills, 3);
	tcz_cache_release_served(c, e1, 8192);
	assert_true(tcz_cache_has(c, k));
	const unsigned char *d = tcz_cache_data(e2);
	assert_int_equal(d[8191], v); /* still there for its other holder */
	tcz_cache_release(c, e2);
	assert_false(tcz_cache_has(c, k));
	tcz_cache_get_stats(c, &st);
	assert_int_equal(st.consumed, 3);
	tcz_cache_free(c);
}

/* A prefetch neither fills nor waits for a key read through lately (its
 * reader has had it), fills others once, and a key wanted again by a get,
 * or consumed long enough ago, is prefetched again. */
static void prefetch_skips_read_through(void **state)
{
	(void)state;
	tcz_cache *c;
	assert_int_equal(tcz_cache_create(16384, &c), 0);
	unsigned char k[16], k2[16], v = 7;
	tcz_cache_entry *e;
	fills = 0;

	key_of(k, 1);
	assert_int_equal(tcz_cache_get(c, k, 8192, fill_pattern, &v, &e), 0);
	tcz_cache_release_served(c, e, 8192);
	assert_int_equal(tcz_cache_prefetch(c, k, 8192, fill_pattern, &v),
			 -EALREADY);
	assert_false(tcz_cache_has(c, k));
	assert_int_equal(fills, 1);

	key_of(k2, 3); /* never read: filled once, unpinned */
	assert_int_equal(tcz_cache_prefetch(c, k2, 8192, fill_pattern, &v), 0);
	assert_int_equal(tcz_cache_prefetch(c, k2, 8192, fill_pattern, &v), 0);
	assert_int_equal(fills, 2);
	assert_true(tcz_cache_has(c, k2));

	/* wanted again: a get fills it; evicted later (16 KiB budget), a
	 * prefetch fills it once more */
	assert_int_equal(tcz_cache_get(c, k, 8192, fill_pattern, &v, &e), 0);
	tcz_cache_release(c, e);
	for (unsigned i = 4; i < 6; i++) {
		key_of(k2, i);
		assert_int_equal(tcz_cache_get(c, k2, 8192, fill_pattern, &v, &e),
				 0);
		tcz_cache_release(c, e);
	}
	assert_false(tcz_cache_has(c, k));
	assert_int_equal(fills, 5);
	assert_int_equal(tcz_cache_prefetch(c, k, 8192, fill_pattern, &v), 0);
	assert_int_equal(fills, 6);

	/* read through again, then many others of its shard after it: the
	 * memory of it is bounded, it is prefetched again */
	assert_int_equal(tcz_cache_get(c, k, 8192, fill_pattern, &v, &e), 0);
	tcz_cache_release_served(c, e, 8192);
	assert_int_equal(tcz_cache_prefetch(c, k, 8192, fill_pattern, &v),
			 -EALREADY);
	for (unsigned j = 1; j <= 64; j++) {
		key_of(k2, 1 + 16 * j); /* the shard of key 1 */
		assert_int_equal(tcz_cache_get(c, k2, 8192, fill_pattern, &v, &e),
				 0);
		tcz_cache_release_served(c, e, 8192);
	}
	fills = 0;
	assert_int_equal(tcz_cache_prefetch(c, k, 8192, fill_pattern, &v), 0);
	assert_int_equal(fills, 1);
	tcz_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(one_fill_per_key),
		cmocka_unit_test(budget_and_pins),
		cmocka_unit_test(failure_is_retried),
		cmocka_unit_test(served_is_dropped),
		cmocka_unit_test(prefetch_skips_read_through),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
