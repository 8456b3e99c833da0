/* Internals of the FUSE daemon; not a public header. The daemon maps
 * inodes and requests onto store views (store/view.h): it knows no file
 * format itself. */
#ifndef TCZ_FS_INTERNAL_H
#define TCZ_FS_INTERNAL_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "fs/fs.h"
#include "store/cache.h"
#include "store/store.h"
#include "codec/tier.h"
#include "store/aview.h"
#include "store/view.h"

/* Inode numbers: fixed ones, then model id in the high 32 bits and the
 * entry in the low ones. Model ids are never reused, so a number always
 * means the same immutable content. */
#define INO_ROOT 1u
#define INO_ASIC 2u
#define INO_STREAMS 3u
#define LOCAL_DIR 0u    /* <model>/ */
#define LOCAL_LAYERS 1u /* <model>/layers/ */
#define LOCAL_FILE0 2u  /* + the view's file index */
#define LOCAL_SUBDIR0 0x80000000u /* + the view's directory index (>= 2) */
#define LOCAL_ASIC_DIR 0x40000000u  /* asic/<model>/ */
/* asic/<model>/ files: + (profile id mod ASIC_ID_MOD) * 2 + file kind */
#define LOCAL_ASIC_FILE0 0x40000001u
#define ASIC_ID_MOD 0x1fffffffu
/* streams/<name> and streams/<name>.npy: (stream id << 32) | these.
 * Stream ids, model ids and bytes identities all come from the store's
 * one id counter, so a stream's high half is never a model's and the
 * low halves (which a model's files would reach only past 2^30 files)
 * cannot be taken for a model's: resolve() asks the streams table first. */
#define LOCAL_STREAM_DATA 0x3ffffffeu
#define LOCAL_STREAM_NPY 0x3fffffffu

/* The kernel's readahead on the mount: decode ahead of buffered readers */
#define TCZ_FS_READAHEAD (16u << 20)

/* The daemon's clock for intervals and timeouts (CLOCK_MONOTONIC). */
static inline uint64_t fs_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t fs_mono_ms(void)
{
	return fs_mono_ns() / 1000000u;
}

static inline uint64_t fs_mono_s(void)
{
	return fs_mono_ns() / 1000000000u;
}

static inline fuse_ino_t ino_make(uint64_t id, uint32_t local)
{
	return (fuse_ino_t)((id << 32) | local);
}

/* Access statistics of one tensor, updated without locks: what the
 * store held when last read (base_*) plus this daemon's reads since
 * (saved as deltas, so several daemons add up). */
/* Slots of tczfs.touched: recent part reads remembered per chunk */
#define FS_TOUCHED 4096

typedef struct fs_tstat {
	atomic_uint_fast64_t base_reads, base_bytes;
	atomic_uint_fast64_t reads, bytes, last;
	atomic_int pinned;
	atomic_uint_fast64_t decodes; /* chunks of it this daemon decoded */
	atomic_int hot; /* in the hot set (tiers.c sets it with hotlock) */
	atomic_int warmed; /* its index was queued for loading (warm.c) */
	atomic_uint_fast64_t part_reads; /* its chunk pieces read in parts */
} fs_tstat;

/* A loaded model: its view, immutable, and statistics. The table holds
 * one per bytes identity (iid, the high bits of its inodes); a model that
 * was re-encoded is replaced by its new revision, one whose bytes changed
 * gets new inodes and its old entry stays (gone) while files are open. */
typedef struct fs_model {
	uint64_t id, rev, iid;
	char *name;
	tcz_mview *v;
	const tcz_model *m;
	fs_tstat *st;     /* per tensor */
	atomic_uint refs; /* the table's, open files', running ops' */
	atomic_int gone;  /* removed from the store, or superseded */
	_Atomic uint64_t gone_ms; /* when it went (monotonic ms), for prune */
	/* hot set: per tensor, the cache entries of all its chunks while it
	 * is hot (decoded, pinned); guarded by tczfs.hotlock */
	tcz_cache_entry ***hot;
	/* asic/<model>/: its view for the profiles of generation av_gen
	 * (made on first use); guarded by tczfs.alock */
	tcz_aview *av;
	uint64_t av_gen;
	/* a remote's model (its id has bit 63 set): no records in the local
	 * store, so no statistics saved, pins kept in memory only */
	int remote;
} fs_model;

/* A model the remote's index names: rid, its bytes identity on this
 * mount, stays while its manifest does. */
typedef struct fs_rent {
	char *name;
	unsigned char sha[32]; /* of its manifest */
	uint32_t rid;
} fs_rent;

typedef struct tczfs tczfs;
typedef struct fs_push fs_push;       /* the page-cache pusher (push.c) */
typedef struct fs_warm fs_warm;       /* the index loaders (warm.c) */
typedef struct fs_sent fs_sent;       /* a stream seen (stream.c) */
typedef struct fs_streams fs_streams; /* the table of them */

/* An open file of a model. */
typedef struct fs_file {
	fs_model *fm;  /* a reference of the open file's own */
	uint32_t file; /* the view's file index (asic view's when av) */
	tcz_aview *av; /* an asic/ file: its view (a reference), else NULL */
	pthread_mutex_t lock; /* guards next_off, seq */
	uint64_t next_off;
	unsigned seq;
} fs_file;

typedef struct prefetch_job {
	fs_model *fm; /* a reference of the job's own */
	tcz_src src;
	uint64_t queued_ns; /* CLOCK_MONOTONIC */
} prefetch_job;

/* File and directory handles: fi->fh is a slot number and generation,
 * never a pointer, so a release racing a read (an interrupted request)
 * cannot free what the read still uses. */
enum { FS_H_FILE = 1, FS_H_DIR = 2, FS_H_STREAM = 3 };

typedef struct fs_slot {
	void *obj;
	int kind; /* FS_H_* */
	void (*free_fn)(tczfs *, void *);
	uint32_t gen;
	uint32_t refs; /* the open's (until release) and requests' */
	int closed;
} fs_slot;

struct tczfs {
	tcz_fs_opts opts;
	tcz_store *store;
	tcz_cache *cache;
	struct fuse_session *se;
	uid_t uid;
	gid_t gid;
	int ro;               /* mounted -o ro */
	fs_streams *streams;  /* streams/ (stream.c) */
	uint64_t mount_time;
	FILE *log;
	pthread_key_t reader_key; /* per-thread tcz_reader */

	pthread_mutex_t lock; /* guards models, n_models, cap, gen, gen_ok,
			       * inserts */
	fs_model **models;    /* sorted by id */
	size_t n_models, cap;
	uint64_t gen;         /* the store generation last seen */
	int gen_ok;
	uint64_t inserts;     /* models put in the table, ever */

	pthread_mutex_t hlock; /* guards slots, n_slots, free_slot */
	fs_slot *slots;
	size_t n_slots;

	pthread_t maint;
	int maint_started;
	atomic_int inited; /* FUSE init ran (the kernel takes its reply next) */
	pthread_mutex_t mlock; /* guards stopping, rflush_now; mcond, rcond */
	pthread_cond_t mcond;
	int stopping;

	tcz_tier_thresholds th; /* from the options */
	size_t hot_budget;
	pthread_mutex_t hotlock; /* guards every fs_model.hot, hot_used */
	size_t hot_used;
	pthread_t hot_thread, tier_thread;
	int hot_started, tier_started;
	atomic_int hot_kick; /* a pin asked for a pass now */
	/* when the last read request came in (fs_mono_ns): background
	 * decoding (the hot set) waits while reads keep coming */
	_Atomic uint64_t last_read_ns;
	volatile int tier_stop; /* tells a tiering pass to stop */

	pthread_mutex_t alock; /* guards profiles, n_profiles, profiles_gen,
				* every fs_model.av and av_gen */
	tcz_dprofile *profiles; /* the device profiles last read */
	size_t n_profiles;
	uint64_t profiles_gen; /* bumped when they change */

	/* --remote: set at start; remote once connected (then fixed) */
	char *remote_url;
	struct tcz_remote *_Atomic remote;
	struct tcz_rcache *rcache; /* the disk cache (read-only store: gets only) */
	pthread_mutex_t rlock; /* guards rents, n_rents, rgen, rindex_ok,
				* next_rid */
	fs_rent *rents; /* sorted by name */
	size_t n_rents;
	uint64_t rgen;
	int rindex_ok;
	uint32_t next_rid;
	pthread_t rthread;
	int rthread_started;
	pthread_cond_t rcond; /* with mlock: wakes the remote thread */
	int rflush_now;       /* guarded by mlock: a flush is wanted now */

	fs_push *push; /* set before the FUSE loop runs, freed after it */
	fs_warm *warm; /* likewise */

	pthread_t *pf_threads;
	unsigned pf_count;
	/* chunks read in parts lately, by a hash of their key (read.c,
	 * part_read); lock-free, a lost or false entry only costs a
	 * decode */
	_Atomic uint64_t touched[FS_TOUCHED];
	pthread_mutex_t pflock; /* guards pfq, pf_head, pf_len, pf_stop */
	pthread_cond_t pfcond;
	prefetch_job *pfq;
	size_t pf_head, pf_len, pf_cap;
	int pf_stop;
};

/* log.c */
void fs_log(tczfs *fs, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* handles.c */
/* A handle for obj, freed with free_fn after fs_handle_close and the
 * last fs_handle_put. Returns 0 when out of memory. */
uint64_t fs_handle_new(tczfs *fs, int kind, void *obj,
		       void (*free_fn)(tczfs *, void *));
/* The object of handle fh with a reference, or NULL (closed, stale, or
 * not of that kind). */
void *fs_handle_get(tczfs *fs, uint64_t fh, int kind);
void fs_handle_put(tczfs *fs, uint64_t fh);
void fs_handle_close(tczfs *fs, uint64_t fh); /* the open's reference */
void fs_handles_free(tczfs *fs);

/* models.c */
int fs_refresh(tczfs *fs); /* adopt a new store generation, if any */
/* A ref to the loaded model of bytes identity iid, or NULL. */
fs_model *fs_model_by_iid(tczfs *fs, uint64_t iid);
/* A ref to the model called name now; -ENOENT if none. */
int fs_model_by_name(tczfs *fs, const char *name, fs_model **out);
fs_model *fs_model_ref(fs_model *fm);
void fs_model_put(tczfs *fs, fs_model *fm);
void fs_models_free(tczfs *fs);
int fs_flush_stats(tczfs *fs);
const char *fs_tier_of(const tczfs *fs, const fs_model *fm, uint32_t t);
/* Reads of tensor t counted so far (store and this daemon). */
uint64_t fs_stat_reads(const fs_model *fm, uint32_t t);
uint64_t fs_stat_bytes(const fs_model *fm, uint32_t t);
/* The reader of the calling thread (NULL when out of memory). */
tcz_reader *fs_reader(tczfs *fs);

/* Loads view v (taken) of a remote model as bytes identity iid, or
 * returns the live model already loaded as iid. */
int fs_model_adopt(tczfs *fs, tcz_mview *v, uint64_t iid, fs_model **out);
/* Marks fm gone (once; logged by the caller): pruned when unused. */
void fs_model_retire(tczfs *fs, fs_model *fm);

/* remote.c: --remote */
int fs_remote_start(tczfs *fs, char *err, size_t errlen);
void fs_remote_stop(tczfs *fs);
void fs_remote_free(tczfs *fs);
/* The remote's model names and their identities (free both and each
 * name); none without --remote. Errors: -ENOMEM. */
int fs_remote_names(tczfs *fs, char ***names, uint32_t **rids, size_t *n);
/* A ref to the remote model called name. Errors: -ENOENT; -ETIMEDOUT;
 * -EIO; -EAGAIN it changed twice while loading; -ENOMEM. */
int fs_remote_model(tczfs *fs, const char *name, fs_model **out);

/* A list of refs to every loaded model that is not gone; free with
 * fs_models_put. */
fs_model **fs_models_live(tczfs *fs, size_t *n);
void fs_models_put(tczfs *fs, fs_model **list, size_t n);
/* The access records of a model as this daemon sees them. */
void fs_model_access(const fs_model *fm, tcz_access *out);

/* tiers.c: the hot set and background tiering */
int fs_tiers_start(tczfs *fs);
void fs_tiers_stop(tczfs *fs);
void fs_hot_release(tczfs *fs, fs_model *fm); /* its hot entries */
/* Sets tensors' pinned tier (store and memory) from an xattr value. */
int fs_pin(tczfs *fs, fs_model *fm, const uint32_t *idx, uint32_t n,
	   const char *value, size_t len);

/* read.c */
void fs_read(tczfs *fs, fuse_req_t req, fs_file *f, size_t size,
	     uint64_t off);
/* Bytes [off, off+len) of file `file` of fm's view, through the cache.
 * Errors: as tcz_view_decode. */
int fs_read_range(tczfs *fs, fs_model *fm, uint32_t file, uint64_t off,
		  size_t len, void *dst);

/* The decoded source s of fm through the cache (decoded on a miss).
 * Errors: as tcz_view_decode; -ENOMEM. */
int fs_get_src(tczfs *fs, const fs_model *fm, const tcz_src *s,
	       tcz_cache_entry **e);

/* warm.c: tensors' index entries loaded ahead of random readers */
int fs_warm_start(tczfs *fs); /* errors: -ENOMEM */
void fs_warm_stop(tczfs *fs); /* joins the threads; fine when not started */
/* Queues the loading of tensor t's index, the first time only (once
 * queued; a full queue lets a later call try again). No I/O, no wait. */
void fs_warm_tensor(tczfs *fs, fs_model *fm, uint32_t t);

/* push.c: hot files' pages pushed into the kernel's page cache */
int fs_push_start(tczfs *fs); /* errors: -ENOMEM */
/* A read of [off, off+size) of f mapped to l was answered, the runs-th
 * of a sequential run (0: not in one): pushes the window under it when
 * it read hot bytes, and those ahead of a sequential reader. No I/O. */
void fs_push_note(tczfs *fs, fs_file *f, const tcz_pieces *l, uint64_t off,
		  size_t size, unsigned runs);
/* No more pushes; with join, waits for the one in flight: only while
 * the FUSE workers still answer reads, or once the connection is gone. */
void fs_push_stop(tczfs *fs, int join);
void fs_push_free(tczfs *fs); /* stop, join, free */

/* asic.c: asic/<model>/ */
/* Reads the device profiles again; bumps profiles_gen when they changed.
 * Errors: as tcz_store_profiles. */
int fs_asic_reload(tczfs *fs);
/* A reference to fm's asic view for the current profiles, made if
 * needed. Errors: -ENOMEM. */
int fs_asic_view(tczfs *fs, fs_model *fm, tcz_aview **out);
/* The local inode number of file i of a, and the inverse. */
uint32_t fs_asic_local(const tcz_aview *a, uint32_t i);
int fs_asic_file_of(const tcz_aview *a, uint32_t local, uint32_t *i);
void fs_asic_read(tczfs *fs, fuse_req_t req, fs_file *f, size_t size,
		  uint64_t off);
/* Stores the image checksums computed since the last call (the
 * maintenance thread: never a FUSE request, which must not wait for the
 * writer gate). */
void fs_asic_save(tczfs *fs);
void fs_asic_free(tczfs *fs); /* the profiles */
int fs_prefetch_start(tczfs *fs, unsigned threads);
void fs_prefetch_stop(tczfs *fs);

/* stream.c: streams/ (ops.c dispatches; every fs_stream_* taking a req
 * replies to it) */
int fs_streams_init(tczfs *fs); /* also reads -o ro */
void fs_streams_free(tczfs *fs);
/* The stream of id seen by this daemon, or NULL (no I/O). */
fs_sent *fs_stream_by_id(tczfs *fs, uint64_t id);
void fs_stream_lookup(tczfs *fs, fuse_req_t req, const char *name);
void fs_stream_getattr(tczfs *fs, fuse_req_t req, fs_sent *e, int npy);
/* Calls add for streams/<name> and streams/<name>.npy of every stream.
 * Errors: add's; -EIO; -ENOMEM. */
int fs_stream_readdir(tczfs *fs,
		      int (*add)(void *ctx, const char *name, fuse_ino_t ino),
		      void *ctx);
void fs_stream_open(tczfs *fs, fuse_req_t req, fs_sent *e, int npy,
		    struct fuse_file_info *fi);
/* Handles that are not a stream's get EBADF. */
void fs_stream_read(tczfs *fs, fuse_req_t req, size_t size, uint64_t off,
		    struct fuse_file_info *fi);
void fs_stream_write(tczfs *fs, fuse_req_t req, const char *buf, size_t size,
		     uint64_t off, struct fuse_file_info *fi);
/* fsync (closing 0) and flush (closing 1); other handles get 0. */
void fs_stream_sync(tczfs *fs, fuse_req_t req, struct fuse_file_info *fi,
		    int closing);
void fs_stream_setattr(tczfs *fs, fuse_req_t req, fs_sent *e, int npy,
		       const struct stat *attr, int to_set);
/* The value's length, or a negative errno (-ENODATA: no such name). */
int fs_stream_getxattr(tczfs *fs, fs_sent *e, const char *name, char *buf,
		       size_t cap);
int fs_stream_listxattr(tczfs *fs, fs_sent *e, char *list, size_t cap);
int fs_stream_setxattr(tczfs *fs, fs_sent *e, const char *name,
		       const char *value, size_t size);
/* The maintenance thread: saves the reads counted since the last call;
 * tells the kernel about values a re-encoding changed. */
void fs_streams_save(tczfs *fs);
void fs_streams_check(tczfs *fs);

/* ops.c */
extern const struct fuse_lowlevel_ops tczfs_ll_ops;

#endif
