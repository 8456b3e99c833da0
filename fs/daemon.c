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

#define READAHEAD_KB ((int)(TCZ_FS_READAHEAD >> 10))
#define GC_INTERVAL 5             /* seconds */
#define READER_CHECK_INTERVAL 30  /* seconds */

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

/* The mount's device number, from mountinfo. Errors: -ENOENT */
static int mount_dev(const tczfs *fs, unsigned *maj, unsigned *min)
{
	FILE *m = fopen("/proc/self/mountinfo", "r");
	char line[4352];
	int found = 0;
	while (m && !found && fgets(line, sizeof line, m)) {
		char point[4096];
		unsigned a, b;
		/* id parent major:minor root point ... */
		if (sscanf(line, "%*s %*s %u:%u %*s %4095s", &a, &b, point) == 3 &&
		    strcmp(point, fs->opts.mountpoint) == 0 &&
		    strstr(line, " - fuse.tczfs ")) {
			*maj = a;
			*min = b;
			found = 1;
		}
	}
	if (m)
		fclose(m);
	return found ? 0 : -ENOENT;
}

/* Raises the kernel's readahead for this mount (root only; best effort):
 * FUSE starts at 128 KiB, too little to keep decoders busy. The kernel
 * lowers it again to what the FUSE_INIT reply says when it takes that
 * reply, which comes after the mount (tczfs_ll_init asks for as much):
 * so it is set once init ran, and read back. Returns 1 once it holds. */
static int raise_readahead(tczfs *fs)
{
	unsigned maj, min;
	if (!atomic_load(&fs->inited) || mount_dev(fs, &maj, &min))
		return 0;
	char path[128];
	snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb", maj,
		 min);
	FILE *f = fopen(path, "r");
	int kb = 0;
	if (f && fscanf(f, "%d", &kb) != 1)
		kb = 0;
	if (f)
		fclose(f);
	if (kb >= READAHEAD_KB)
		return 1;
	if ((f = fopen(path, "w"))) {
		fprintf(f, "%d\n", READAHEAD_KB);
		fclose(f);
	}
	return 0;
}

/* Every half second: new and removed models show up without a remount.
 * Now and then: statistics saved, removed contents released, reader
 * slots of dead processes cleared, store pages unmapped from this
 * process (its resident set holds the cache, not the store). */
static void *maintenance(void *arg)
{
	tczfs *fs = arg;
	/* the first requests come at once: the readahead is raised within
	 * milliseconds of the kernel's init (or given up on after 3 s,
	 * when not root; then tried every half second) */
	int ra_ok = 0;
	for (int i = 0; i < 300 && !ra_ok && !fs->stopping; i++) {
		ra_ok = raise_readahead(fs); /* 1 once read back at 16 MiB */
		struct timespec ts = {0, 10000000L};
		if (!ra_ok)
			nanosleep(&ts, NULL);
	}
	uint64_t last_flush = fs_mono_s(), last_gc = fs_mono_s(), last_check = 0;
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
		if (!ra_ok)
			ra_ok = raise_readahead(fs);
		fs_refresh(fs);
		fs_streams_check(fs);
		uint64_t now = fs_mono_s();
		fs_asic_save(fs);
		if (now - last_flush >= fs->opts.stats_interval) {
			fs_flush_stats(fs);
			fs_streams_save(fs);
			last_flush = now;
		}
		if (now - last_gc >= GC_INTERVAL) {
			unsigned released = 0;
			if (tcz_store_collect(fs->store, &released) == 0 &&
			    released)
				fs_log(fs, LOG_INFO,
				       "released %u removed model(s) no longer "
				       "read",
				       released);
			tcz_store_trim(fs->store);
			last_gc = now;
		}
		if (now - last_check >= READER_CHECK_INTERVAL) {
			int dead = 0;
			tcz_store_reader_check(fs->store, &dead);
			if (dead)
				fs_log(fs, LOG_INFO,
				       "cleared %d reader slot(s) of dead "
				       "processes",
				       dead);
			last_check = now;
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
	pthread_mutex_lock(&fs->mlock);
	fs->stopping = 1;
	pthread_cond_broadcast(&fs->mcond);
	pthread_mutex_unlock(&fs->mlock);
	fs_tiers_stop(fs);
	fs_push_free(fs);
	fs_remote_stop(fs);
	if (fs->maint_started)
		pthread_join(fs->maint, NULL);
	if (fs->pfq)
		fs_prefetch_stop(fs);
	fs_warm_stop(fs);
	if (fs->store) {
		fs_flush_stats(fs);
		fs_asic_save(fs);
	}
	if (fs->cache) {
		tcz_cache_stats cs;
		tcz_cache_get_stats(fs->cache, &cs);
		fs_log(fs, LOG_INFO,
		       "decoded-chunk cache: %llu hits, %llu misses, %llu "
		       "evictions, %llu dropped once read through",
		       (unsigned long long)cs.hits, (unsigned long long)cs.misses,
		       (unsigned long long)cs.evictions,
		       (unsigned long long)cs.consumed);
	}
	fs_handles_free(fs); /* stream files commit what they hold */
	if (fs->store && fs->streams)
		fs_streams_save(fs); /* after: reads until the last release */
	fs_streams_free(fs);
	fs_models_free(fs);
	if (fs->store) { /* -EROFS on a read-only store: nothing to do */
		/* what this daemon's re-encodings replaced is pinned by no view
		 * of its own now: released unless another process reads it */
		unsigned released = 0;
		if (tcz_store_collect(fs->store, &released) == 0 && released)
			fs_log(fs, LOG_INFO,
			       "released %u replaced or removed model "
			       "revision(s) at exit",
			       released);
	}
	fs_remote_free(fs); /* after the views that use it */
	fs_asic_free(fs);
	/* this thread's reader, before the store it belongs to */
	tcz_reader_free(pthread_getspecific(fs->reader_key));
	pthread_setspecific(fs->reader_key, NULL);
	tcz_cache_free(fs->cache);
	tcz_store_close(fs->store);
	if (fs->log)
		fclose(fs->log);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->hlock);
	pthread_mutex_destroy(&fs->hotlock);
	pthread_mutex_destroy(&fs->alock);
	pthread_mutex_destroy(&fs->rlock);
	pthread_cond_destroy(&fs->rcond);
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
	uint64_t g;
	if ((rc = tcz_store_generation(fs->store, &g)) && rc != -EIO)
		return fail(err, errlen, rc, "%s", tcz_store_errmsg());
	fs_asic_reload(fs); /* newport alone if the profiles cannot be read */
	tcz_tt_blas_threads(1); /* TT chunks decode on the FUSE threads */
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned pf = cpus > 0 ? (unsigned)cpus : 1;
	if (fs->opts.remote && pf < 8)
		pf = 8; /* remote chunks: mostly waiting for the network */
	if ((rc = fs_prefetch_start(fs, pf)) || (rc = fs_warm_start(fs)))
		return fail(err, errlen, rc, "out of memory");
	if (pthread_create(&fs->maint, NULL, maintenance, fs) == 0)
		fs->maint_started = 1;
	fs_tiers_start(fs);
	if ((rc = fs_push_start(fs)))
		return fail(err, errlen, rc, "out of memory");
	if ((rc = fs_remote_start(fs, err, errlen)))
		return rc;
	return 0;
}

/* Goes to the background: the parent waits until the daemon child says
 * whether it started (the store opened, threads running), prints what
 * went wrong if not, and exits with that status; so `tczfs mount` fails
 * when the daemon does. Returns, in the child, the pipe to report on;
 * -1 on failure to fork (err set); never returns in the parent. */
static int detach(const tcz_fs_opts *o, char *err, size_t errlen)
{
	(void)o;
	int p[2];
	if (pipe(p) != 0)
		return fail(err, errlen, -1, "pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return fail(err, errlen, -1, "fork: %s", strerror(errno));
	}
	if (pid > 0) {
		close(p[1]);
		char buf[1100];
		size_t got = 0;
		ssize_t n;
		while (got < sizeof buf - 1 &&
		       (n = read(p[0], buf + got, sizeof buf - 1 - got)) != 0) {
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				break;
			got += (size_t)n;
		}
		buf[got] = 0;
		if (got && buf[0] == '0')
			_exit(0);
		fprintf(stderr, "tczfs: mount: %s\n",
			got > 1 ? buf + 1 : "the daemon died while starting");
		_exit(1);
	}
	close(p[0]);
	setsid();
	if (chdir("/") != 0)
		return fail(err, errlen, -1, "chdir /: %s", strerror(errno));
	return p[1];
}

/* SIGTERM, SIGINT, SIGHUP: the FUSE loop stops only after the page-cache
 * pusher did. A push can wait in the kernel for a page that a queued read
 * holds, which only a running worker answers; a loop stopped first (as
 * libfuse's own handlers do) leaves that push, the connection it keeps
 * open and the readers waiting for ever. So the handler only wakes the
 * stopper thread, which stops the pusher, then the loop. */
static int sig_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	(void)sig;
	int e = errno;
	if (write(sig_pipe[1], "s", 1) < 0) {
		/* full: a stop is pending already */
	}
	errno = e;
}

static int set_signals(void (*h)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = h; /* no SA_RESTART: the loop's wait returns */
	sigemptyset(&sa.sa_mask);
	int rc = sigaction(SIGTERM, &sa, NULL) | sigaction(SIGINT, &sa, NULL) |
		 sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	return rc | sigaction(SIGPIPE, &sa, NULL);
}

typedef struct stopper_arg {
	tczfs *fs;
	pthread_t loop; /* the thread in fuse_session_loop_mt */
} stopper_arg;

static void *stopper(void *arg)
{
	stopper_arg *a = arg;
	char c = 0;
	while (read(sig_pipe[0], &c, 1) < 0 && errno == EINTR)
		;
	if (c != 's')
		return NULL; /* the loop ended by itself */
	fs_push_stop(a->fs, 1);
	fuse_session_exit(a->fs->se);
	pthread_kill(a->loop, SIGTERM); /* its wait returns, it sees exited */
	return NULL;
}

static void close_sig_pipe(void)
{
	set_signals(SIG_DFL);
	for (int i = 0; i < 2; i++)
		if (sig_pipe[i] >= 0)
			close(sig_pipe[i]);
	sig_pipe[0] = sig_pipe[1] = -1;
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
	if (fs_streams_init(fs)) {
		free(fs);
		return fail(err, errlen, -ENOMEM, "out of memory");
	}
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->hlock, NULL);
	pthread_mutex_init(&fs->hotlock, NULL);
	pthread_mutex_init(&fs->rlock, NULL);
	pthread_cond_init(&fs->rcond, NULL);
	pthread_mutex_init(&fs->alock, NULL);
	pthread_mutex_init(&fs->mlock, NULL);
	fs->th = TCZ_TIER_THRESHOLDS_DEFAULT;
	if (o->hot_score)
		fs->th.hot_min = o->hot_score;
	if (o->warm_score)
		fs->th.warm_min = o->warm_score;
	fs->hot_budget = o->hot_bytes;
	if (fs->hot_budget > o->cache_bytes / 2)
		fs->hot_budget = o->cache_bytes / 2; /* the rest for the LRU */
	pthread_cond_init(&fs->mcond, NULL);
	pthread_mutex_init(&fs->pflock, NULL);
	pthread_cond_init(&fs->pfcond, NULL);
	pthread_key_create(&fs->reader_key, reader_destroy);
	if (o->log_path && !(fs->log = fopen(o->log_path, "a"))) {
		rc = fail(err, errlen, -errno, "log %s: %s", o->log_path,
			  strerror(errno));
		fs_streams_free(fs);
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
	if (pipe2(sig_pipe, O_CLOEXEC) != 0 ||
	    fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK) != 0 || /* the handler's */
	    set_signals(on_signal) != 0 ||
	    fuse_session_mount(se, o->mountpoint) != 0) {
		close_sig_pipe();
		fuse_session_destroy(se);
		teardown(fs);
		free(fs);
		return fail(err, errlen, -EIO,
			    "cannot mount %s (is /dev/fuse there? are you root "
			    "or is fusermount3 installed?)",
			    o->mountpoint);
	}
	int report = -1; /* the pipe to the waiting parent */
	if (!o->foreground && (report = detach(o, err, errlen)) < 0) {
		fuse_session_unmount(se);
		close_sig_pipe();
		fuse_session_destroy(se);
		teardown(fs);
		free(fs);
		return report == -2 ? 0 : -EIO;
	}
	if (!o->foreground && !fs->log)
		openlog("tczfs", LOG_PID, LOG_DAEMON);
	rc = start(fs, err, errlen);
	if (report >= 0) {
		/* the parent exits with what start() said */
		char buf[1100];
		int n = snprintf(buf, sizeof buf, "%c%s", rc ? '1' : '0',
				 rc ? err : "");
		if (write(report, buf, (size_t)n) < 0)
			rc = rc ? rc : -EIO;
		close(report);
		int dn = open("/dev/null", O_RDWR);
		if (dn >= 0) {
			dup2(dn, 0);
			dup2(dn, 1);
			dup2(dn, 2);
			if (dn > 2)
				close(dn);
		}
	}
	if (rc) {
		fs_log(fs, LOG_ERR, "%s", err);
	} else {
		fs_log(fs, LOG_INFO, "serving %s at %s (cache %zu MiB)",
		       o->store_dir, o->mountpoint, o->cache_bytes >> 20);
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(cfg, 0);
		if (o->threads)
			fuse_loop_cfg_set_max_threads(cfg, o->threads);
		stopper_arg sa = {fs, pthread_self()};
		pthread_t st;
		int st_ok = pthread_create(&st, NULL, stopper, &sa) == 0;
		rc = fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
		if (rc > 0)
			rc = 0; /* ended by a signal: unmount as asked */
		if (st_ok) {
			/* ended by an unmount: the stopper has nothing to do */
			if (write(sig_pipe[1], "q", 1) != 1)
				pthread_cancel(st);
			pthread_join(st, NULL);
		}
		fs_log(fs, LOG_INFO, "unmounting %s", o->mountpoint);
	}
	set_signals(SIG_DFL);
	/* the loop ended: by the stopper (pushes stopped first) or because
	 * the connection is gone; either way no push can wait any more */
	fs_push_stop(fs, 1);
	fuse_session_unmount(se);
	teardown(fs);
	fuse_session_destroy(se);
	pthread_key_delete(fs->reader_key);
	free(fs);
	close_sig_pipe();
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
