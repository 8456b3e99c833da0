/* Internals of the FUSE daemon; not a public header. */
#ifndef TCZ_FS_INTERNAL_H
#define TCZ_FS_INTERNAL_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "fs/fs.h"
#include "store/cache.h"
#include "store/store.h"

/* Inode numbers: fixed ones, then model id in the high 32 bits and the
 * entry in the low ones. Model ids are never reused, so a number always
 * means the same immutable content. */
#define INO_ROOT 1u
#define INO_ASIC 2u
#define INO_STREAMS 3u
#define LOCAL_DIR 0u
#define LOCAL_LAYERS 1u
#define LOCAL_FILE0 2u          /* + file index */
#define LOCAL_NPY0 0x80000000u  /* + tensor index */

static inline fuse_ino_t ino_make(uint64_t id, uint32_t local)
{
	return (fuse_ino_t)((id << 32) | local);
}

/* A read view (LMDB snapshot) shared by the operations and open files
 * that started under it. */
typedef struct fs_view {
	tcz_snap *sn;
	uint64_t gen;
	uint64_t born; /* CLOCK_MONOTONIC seconds */
	atomic_uint refs;
} fs_view;

/* Access statistics of one tensor, updated without locks. */
typedef struct fs_tstat {
	atomic_uint_fast64_t reads, bytes, last;
	atomic_int dirty;
	int32_t pinned;
} fs_tstat;

/* A loaded model: immutable after loading, except refs, gone, stats. */
typedef struct fs_model {
	uint64_t id;
	char *name;
	tcz_model *m;
	char **npy_name;     /* per tensor: file name under layers/ */
	uint32_t *npy_order; /* tensor indexes sorted by npy_name */
	char **npy_hdr;      /* per tensor: .npy header bytes */
	uint32_t *npy_hlen;
	uint64_t *npy_size;
	uint32_t *file_order; /* file indexes sorted by name */
	fs_tstat *st;         /* per tensor */
	atomic_uint refs;     /* the table's, open files', running ops' */
	atomic_int gone;      /* removed from the store */
} fs_model;

typedef struct tczfs tczfs;

/* An open file. */
enum { FILE_MODEL = 0, FILE_NPY = 1 };

typedef struct fs_file {
	fs_model *fm;
	int kind;
	uint32_t index; /* file or tensor index */
	pthread_mutex_t lock; /* guards view, next_off, seq */
	fs_view *view;
	uint64_t next_off;
	unsigned seq;
} fs_file;

typedef struct prefetch_job {
	fs_model *fm;
	fs_view *view;
	int blob; /* blob chunk, else tensor chunk */
	uint32_t index, chunk;
	uint64_t queued_ns; /* CLOCK_MONOTONIC */
} prefetch_job;

struct tczfs {
	tcz_fs_opts opts;
	tcz_store *store;
	tcz_cache *cache;
	struct fuse_session *se;
	uid_t uid;
	gid_t gid;
	uint64_t mount_time;
	FILE *log;
	pthread_key_t reader_key; /* per-thread tcz_reader */

	pthread_mutex_t lock; /* guards view, models, n_models, cap */
	fs_view *view;        /* the newest view */
	fs_model **models;    /* sorted by id */
	size_t n_models, cap;

	pthread_t maint;
	int maint_started;
	pthread_mutex_t mlock; /* guards stopping; mcond */
	pthread_cond_t mcond;
	int stopping;

	pthread_t *pf_threads;
	unsigned pf_count;
	pthread_mutex_t pflock; /* guards the prefetch queue */
	pthread_cond_t pfcond;
	prefetch_job *pfq;
	size_t pf_head, pf_len, pf_cap;
	int pf_stop;
};

/* log.c */
void fs_log(tczfs *fs, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* models.c */
fs_view *fs_view_get(tczfs *fs, int refresh); /* a ref to the newest */
void fs_view_put(tczfs *fs, fs_view *v);
int fs_refresh(tczfs *fs); /* adopt a new store generation, if any */
/* A ref to the model of inode id (loaded earlier by a lookup). */
fs_model *fs_model_by_id(tczfs *fs, uint64_t id);
/* A ref to the model called name in the newest view; -ENOENT if none. */
int fs_model_by_name(tczfs *fs, const char *name, fs_model **out);
void fs_model_put(tczfs *fs, fs_model *fm);
void fs_models_free(tczfs *fs);
int fs_flush_stats(tczfs *fs);
const char *fs_tier_of(const fs_model *fm, uint32_t t);

/* read.c */
void fs_read(tczfs *fs, fuse_req_t req, fs_file *f, size_t size,
	     uint64_t off);
int fs_prefetch_start(tczfs *fs, unsigned threads);
void fs_prefetch_stop(tczfs *fs);

/* ops.c */
extern const struct fuse_lowlevel_ops tczfs_ll_ops;

#endif
