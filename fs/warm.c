/* Index warming: the first small read outside a sequential run in a
 * tensor has a few threads load the store's index of all its chunks (the
 * block index records and chunk table leaves, store/view.h
 * tcz_view_index_warm), so the random reads after it wait for their data
 * alone. A cold part read faulted in a leaf of each table before its
 * pread: three disk waits in a row where a source file has one.
 * Sequential readers never start it: their prefetcher reads the same
 * index entries in file order anyway. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <syslog.h>

#include "fs/internal.h"

/* Chunks per job: jobs of one tensor run on several threads at once, the
 * disk serving their faults in parallel. */
#define WARM_JOB_CHUNKS 64
#define WARM_QUEUE 256
/* Threads: they wait on page faults, not on a CPU */
#define WARM_THREADS 4

typedef struct warm_job {
	fs_model *fm; /* a reference of the job's own */
	uint32_t tensor, first;
} warm_job;

struct fs_warm {
	pthread_mutex_t lock; /* guards q, head, len, stop */
	pthread_cond_t cond;
	warm_job q[WARM_QUEUE];
	size_t head, len;
	int stop;
	pthread_t threads[WARM_THREADS];
	unsigned nthreads; /* set before the FUSE loop, fixed after */
	atomic_uint_fast64_t tensors, chunks; /* loaded, for the exit log */
};

static void *warmer(void *arg)
{
	tczfs *fs = arg;
	fs_warm *w = fs->warm;
	for (;;) {
		pthread_mutex_lock(&w->lock);
		while (!w->len && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->stop) {
			pthread_mutex_unlock(&w->lock);
			break;
		}
		warm_job j = w->q[w->head];
		w->head = (w->head + 1) % WARM_QUEUE;
		w->len--;
		pthread_mutex_unlock(&w->lock);
		tcz_reader *r = fs_reader(fs);
		/* an error here costs only the faults it would have saved:
		 * the read that meets it reports it */
		if (r && tcz_view_index_warm(r, j.fm->v, j.tensor, j.first,
					     WARM_JOB_CHUNKS) == 0) {
			uint32_t n = tcz_tensor_chunk_count(
				&j.fm->m->tensors[j.tensor]);
			atomic_fetch_add(&w->chunks, n - j.first < WARM_JOB_CHUNKS
							     ? n - j.first
							     : WARM_JOB_CHUNKS);
			atomic_fetch_add(&w->tensors, j.first == 0);
		}
		fs_model_put(fs, j.fm);
	}
	tcz_reader_free(pthread_getspecific(fs->reader_key));
	pthread_setspecific(fs->reader_key, NULL);
	return NULL;
}

int fs_warm_start(tczfs *fs)
{
	fs_warm *w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	fs->warm = w;
	for (; w->nthreads < WARM_THREADS; w->nthreads++)
		if (pthread_create(&w->threads[w->nthreads], NULL, warmer, fs))
			break;
	return 0;
}

void fs_warm_stop(tczfs *fs)
{
	fs_warm *w = fs->warm;
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = 1;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (unsigned i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	for (; w->len; w->len--) { /* jobs nobody will run */
		fs_model_put(fs, w->q[w->head].fm);
		w->head = (w->head + 1) % WARM_QUEUE;
	}
	fs_log(fs, LOG_INFO,
	       "index loaded ahead of random reads: %llu tensor(s), %llu "
	       "chunk(s)",
	       (unsigned long long)atomic_load(&w->tensors),
	       (unsigned long long)atomic_load(&w->chunks));
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
	fs->warm = NULL;
}

void fs_warm_tensor(tczfs *fs, fs_model *fm, uint32_t t)
{
	fs_warm *w = fs->warm;
	if (!w || !w->nthreads || fm->remote ||
	    t >= fm->m->n_tensors ||
	    atomic_load_explicit(&fm->st[t].warmed, memory_order_relaxed) ||
	    atomic_exchange(&fm->st[t].warmed, 1))
		return;
	uint32_t n = tcz_tensor_chunk_count(&fm->m->tensors[t]);
	if (n < 2)
		return; /* the read that asked has loaded its entries */
	pthread_mutex_lock(&w->lock);
	if (w->stop || WARM_QUEUE - w->len < (n + WARM_JOB_CHUNKS - 1) /
							  WARM_JOB_CHUNKS) {
		/* not now: a later read of the tensor asks again */
		atomic_store(&fm->st[t].warmed, 0);
	} else {
		for (uint32_t c = 0; c < n; c += WARM_JOB_CHUNKS) {
			warm_job *j = &w->q[(w->head + w->len++) % WARM_QUEUE];
			j->fm = fs_model_ref(fm);
			j->tensor = t;
			j->first = c;
		}
		pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
}
