/* The tczfs FUSE daemon: a store mounted as a directory tree (SPEC 2).
 * A thin layer over store/: it maps paths to models, tensors and chunks,
 * keeps decoded chunks in a bounded cache and serves reads. */
#ifndef TCZ_FS_H
#define TCZ_FS_H

#include <stddef.h>
#include <stdint.h>

typedef struct tcz_fs_opts {
	const char *store_dir;
	const char *mountpoint;
	int foreground;          /* stay attached; log to stderr */
	size_t cache_bytes;      /* decoded-chunk cache budget */
	const char *fuse_opts;   /* extra comma-separated -o options */
	const char *log_path;    /* append log lines here (else stderr in the
				  * foreground, syslog in the background) */
	unsigned stats_interval; /* seconds between saving statistics */
	unsigned threads;        /* FUSE worker threads at most (0: libfuse's) */
	size_t hot_bytes;        /* hot set: tensors kept decoded, part of the
				  * cache budget (0: none) */
	uint64_t hot_score, warm_score; /* tier thresholds (0: SPEC 7's) */
	int no_push;             /* hot files' pages not pushed into the
				  * kernel's page cache (fs/push.c) */
	unsigned tier_interval;  /* seconds between background tiering
				  * passes (0: none) */
	uint64_t tier_io_bytes_s;/* their throttle (0: none) */
	unsigned warm_bits;      /* precision tiering's warm width (7 or 5) */
	const char *remote;      /* serve this remote's models too (NULL: no) */
	uint64_t disk_cache_bytes; /* its chunks kept in the store, at most */
	unsigned remote_timeout_ms; /* each network operation (0: 5 s) */
} tcz_fs_opts;

/* Mounts and serves until unmounted; in the background unless
 * o->foreground (the calling process then returns 0 in the parent as soon
 * as the mount is up, and the daemon exits when unmounted).
 * Errors: -ENOENT store or mount point missing; -ENOTEMPTY mount point
 * not empty; -ENOTDIR; -EIO mounting failed. err says which. */
int tcz_fs_mount(const tcz_fs_opts *o, char *err, size_t errlen);

/* Unmounts. Returns 0, or 1 when the mount was busy and was detached
 * instead (the daemon serves the open files and exits after the last
 * close). Errors: -EINVAL not a tczfs mount; -EIO fusermount3 failed. */
int tcz_fs_umount(const char *mountpoint, char *err, size_t errlen);

#endif
