/* Mounting, the daemon's life cycle, unmounting. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "codec/tt.h"
#include "fs/internal.h"

#define READAHEAD_KB 16384 /* kernel readahead on the mount: decode ahead */

extern char **environ;

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

static int check_mountpoint(const char *mnt, char *err, size_t errlen)
{
	struct stat st;
	if (stat(mnt, &st) != 0)
		return fail(err, errlen, -errno, "mount point %s: %s", mnt,
			    strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail(err, errlen, -ENOTDIR,
			    "mount point %s is not a directory", mnt);
	DIR *d = opendir(mnt);
	if (!d)
		return fail(err, errlen, -errno, "mount point %s: %s", mnt,
			    strerror(errno));
	struct dirent *e;
	int empty = 1;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = 0;
	closedir(d);
	if (!empty)
		return fail(err, errlen, -ENOTEMPTY,
			    "mount point %s is not empty", mnt);
	return 0;
}

/* Raises the kernel's readahead for this mount (root only; best effort):
 * FUSE starts at 128 KiB, too little to keep decoders busy. */
static void raise_readahead(tczfs *fs)
{
	struct stat st;
	if (stat(fs->opts.mountpoint, &st) != 0)
		return;
	char path[128];
	snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb",
		 major(st.st_dev), minor(st.st_dev));
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "%d\n", READAHEAD_KB);
	fclose(f);
}

static void *maintenance(void *arg)
{
	tczfs *fs = arg;
	raise_readahead(fs);
	time_t last_flush = time(NULL);
	pthread_mutex_lock(&fs->mlock);
	while (!fs->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 500000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&fs->mcond, &fs->mlock, &ts);
		if (fs->stopping)
			break;
		pthread_mutex_unlock(&fs->mlock);
		/* new and removed models show up without a remount */
		fs_refresh(fs);
		if (time(NULL) - last_flush >= (time_t)fs->opts.stats_interval) {
			fs_flush_stats(fs);
			last_flush = time(NULL);
		}
		pthread_mutex_lock(&fs->mlock);
	}
	pthread_mutex_unlock(&fs->mlock);
	return NULL;
}

static void reader_destroy(void *p)
{
	tcz_reader_free(p);
}

static void teardown(tczfs *fs)
{
	if (fs->maint_started) {
		pthread_mutex_lock(&fs->mlock);
		fs->stopping = 1;
		pthread_cond_broadcast(&fs->mcond);
		pthread_mutex_unlock(&fs->mlock);
		pthread_join(fs->maint, NULL);
	}
	if (fs->pfq)
		fs_prefetch_stop(fs);
	if (fs->store)
		fs_flush_stats(fs);
	if (fs->cache) {
		tcz_cache_stats cs;
		tcz_cache_get_stats(fs->cache, &cs);
		fs_log(fs, LOG_INFO,
		       "decoded-chunk cache: %llu hits, %llu misses, %llu "
		       "evictions",
		       (unsigned long long)cs.hits, (unsigned long long)cs.misses,
		       (unsigned long long)cs.evictions);
	}
	fs_models_free(fs);
	if (fs->view)
		fs_view_put(fs, fs->view);
	tcz_cache_free(fs->cache);
	tcz_store_close(fs->store);
	if (fs->log)
		fclose(fs->log);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->mlock);
	pthread_cond_destroy(&fs->mcond);
	pthread_mutex_destroy(&fs->pflock);
	pthread_cond_destroy(&fs->pfcond);
}

/* Everything that needs the store, opened in the process that serves
 * (LMDB environments must not cross fork()). */
static int start(tczfs *fs, char *err, size_t errlen)
{
	int rc = tcz_store_open(fs->opts.store_dir, TCZ_STORE_DAEMON, &fs->store);
	if (rc)
		return fail(err, errlen, rc, "%s", tcz_store_errmsg());
	if ((rc = tcz_cache_create(fs->opts.cache_bytes, &fs->cache)))
		return fail(err, errlen, rc, "out of memory");
	fs->view = calloc(1, sizeof *fs->view);
	if (!fs->view)
		return fail(err, errlen, -ENOMEM, "out of memory");
	if ((rc = tcz_snap_begin(fs->store, &fs->view->sn))) {
		free(fs->view);
		fs->view = NULL;
		return fail(err, errlen, rc, "%s", tcz_store_errmsg());
	}
	fs->view->gen = tcz_snap_generation(fs->view->sn);
	atomic_init(&fs->view->refs, 1);
	tcz_tt_blas_threads(1); /* TT chunks decode on the FUSE threads */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if ((rc = fs_prefetch_start(fs, cpus > 0 ? (unsigned)cpus : 1)))
		return fail(err, errlen, rc, "out of memory");
	if (pthread_create(&fs->maint, NULL, maintenance, fs) == 0)
		fs->maint_started = 1;
	return 0;
}

int tcz_fs_mount(const tcz_fs_opts *o, char *err, size_t errlen)
{
	int rc = check_mountpoint(o->mountpoint, err, errlen);
	if (rc)
		return rc;
	tcz_store *probe;
	if ((rc = tcz_store_open(o->store_dir, 0, &probe)))
		return fail(err, errlen, rc, "%s", tcz_store_errmsg());
	tcz_store_close(probe);

	tczfs *fs = calloc(1, sizeof *fs);
	if (!fs)
		return fail(err, errlen, -ENOMEM, "out of memory");
	fs->opts = *o;
	if (!fs->opts.stats_interval)
		fs->opts.stats_interval = 30;
	fs->uid = getuid();
	fs->gid = getgid();
	fs->mount_time = (uint64_t)time(NULL);
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->mlock, NULL);
	pthread_cond_init(&fs->mcond, NULL);
	pthread_mutex_init(&fs->pflock, NULL);
	pthread_cond_init(&fs->pfcond, NULL);
	pthread_key_create(&fs->reader_key, reader_destroy);
	if (o->log_path && !(fs->log = fopen(o->log_path, "a"))) {
		rc = fail(err, errlen, -errno, "log %s: %s", o->log_path,
			  strerror(errno));
		free(fs);
		return rc;
	}

	char opts[2048];
	snprintf(opts, sizeof opts,
		 "fsname=tczfs,subtype=tczfs,default_permissions%s%s",
		 o->fuse_opts && *o->fuse_opts ? "," : "",
		 o->fuse_opts ? o->fuse_opts : "");
	char *argv[] = {"tczfs", "-o", opts, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	struct fuse_session *se =
		fuse_session_new(&args, &tczfs_ll_ops, sizeof tczfs_ll_ops, fs);
	fuse_opt_free_args(&args);
	if (!se) {
		teardown(fs);
		free(fs);
		return fail(err, errlen, -EINVAL, "bad FUSE options '%s'", opts);
	}
	fs->se = se;
	if (fuse_set_signal_handlers(se) != 0 ||
	    fuse_session_mount(se, o->mountpoint) != 0) {
		fuse_session_destroy(se);
		teardown(fs);
		free(fs);
		return fail(err, errlen, -EIO,
			    "cannot mount %s (is /dev/fuse there? are you root "
			    "or is fusermount3 installed?)",
			    o->mountpoint);
	}
	if (!o->foreground) {
		if (!fs->log)
			openlog("tczfs", LOG_PID, LOG_DAEMON);
		fuse_daemonize(0); /* the parent returns 0 from here on exit */
	}
	rc = start(fs, err, errlen);
	if (rc) {
		fs_log(fs, LOG_ERR, "%s", err);
	} else {
		fs_log(fs, LOG_INFO, "serving %s at %s (cache %zu MiB)",
		       o->store_dir, o->mountpoint, o->cache_bytes >> 20);
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(cfg, 0);
		rc = fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
		if (rc > 0)
			rc = 0; /* ended by a signal: unmount as asked */
		fs_log(fs, LOG_INFO, "unmounting %s", o->mountpoint);
	}
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	teardown(fs);
	fuse_session_destroy(se);
	pthread_key_delete(fs->reader_key);
	free(fs);
	return rc;
}

/* Is mnt a tczfs mount (fuse.tczfs in /proc/self/mountinfo)? */
static int is_tczfs_mount(const char *mnt)
{
	char *real = realpath(mnt, NULL);
	if (!real)
		return 0;
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096];
	int found = 0;
	while (f && fgets(line, sizeof line, f)) {
		char point[4096], type[64];
		/* id parent major:minor root point opts ... - type source */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1)
			continue;
		char *dash = strstr(line, " - ");
		if (!dash || sscanf(dash + 3, "%63s", type) != 1)
			continue;
		if (strcmp(point, real) == 0 && strcmp(type, "fuse.tczfs") == 0)
			found = 1;
	}
	if (f)
		fclose(f);
	free(real);
	return found;
}

static int run(char *const argv[])
{
	pid_t pid;
	int st;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc)
		return -rc;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EBUSY;
}

int tcz_fs_umount(const char *mnt, char *err, size_t errlen)
{
	if (!is_tczfs_mount(mnt))
		return fail(err, errlen, -EINVAL, "%s is not a tczfs mount", mnt);
	char *u[] = {"fusermount3", "-u", (char *)mnt, NULL};
	if (run(u) == 0)
		return 0;
	/* busy (files open): detach now; the daemon finishes serving the
	 * open files and exits after the last close */
	char *z[] = {"fusermount3", "-u", "-z", (char *)mnt, NULL};
	if (run(z) == 0)
		return 1;
	return fail(err, errlen, -EIO, "cannot unmount %s (fusermount3 failed)",
		    mnt);
}
