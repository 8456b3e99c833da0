/* Opening the LMDB environment, schema check and upgrade, transactions,
 * the map and its size, the writer gate. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"

/* 64 GiB of address space to start with: LMDB only maps it, the file
 * grows as pages are written. MDB_MAP_FULL doubles it. */
#define MAP_DEFAULT (64ull << 30)
/* A daemon reserves more: adopting a map another process grew means
 * waiting for this process's own transactions to end. */
#define MAP_DAEMON (1ull << 40)
#define MAX_READERS 4096u /* a reader slot per thread of each process */
#define GROW_ATTEMPTS 12
/* Less free space than this on the store's file system after a failed
 * write means the disk is full (LMDB reports a short write as EIO). */
#define DISK_FULL_SLACK (4u << 20)

static _Thread_local char errmsg[512];

const char *tcz_store_errmsg(void)
{
	return errmsg;
}

int tcz__fail(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof errmsg, fmt, ap);
	va_end(ap);
	return err;
}

int tcz__errf(int rc, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

int tcz__mdb_err(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_MAP_FULL:
		return TCZ__EMAPFULL;
	case MDB_READERS_FULL:
	case MDB_MAP_RESIZED:
		return -EAGAIN;
	case MDB_VERSION_MISMATCH:
	case MDB_INVALID:
		return -EPROTONOSUPPORT;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_PANIC:
	case MDB_BAD_TXN:
		return -EIO;
	default:
		if (rc > 0)
			return -rc;
		return -EIO;
	}
}

/* A byte size: digits with an optional K/M/G/T suffix (powers of 1024,
 * "KiB", "MB" and friends accepted alike); 0 when malformed. */
static uint64_t parse_size(const char *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || end == v)
		return 0;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	case 0: break;
	default: return 0;
	}
	if (*end) {
		end++;
		if (*end == 'i')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end)
			return 0;
	}
	if (shift && x > (UINT64_MAX >> shift))
		return 0;
	return (uint64_t)x << shift;
}

/* ---- the map ------------------------------------------------------------ */

/* Finds the mapping of data.mdb (by inode) that holds p. Called with
 * map_lock exclusive (or before the store is shared). */
static int find_mapping(tcz_store *s, const char *p)
{
	struct stat st;
	if (s->data_fd < 0 || fstat(s->data_fd, &st) != 0)
		return -1;
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return -1;
	char line[4352];
	int found = -1;
	while (found && fgets(line, sizeof line, f)) {
		unsigned long lo, hi, off, ino;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s %lx %*s %lu", &lo, &hi, perms, &off,
			   &ino) != 5)
			continue;
		if (ino != (unsigned long)st.st_ino || (uintptr_t)p < lo ||
		    (uintptr_t)p >= hi)
			continue;
		s->map_lo = (const char *)lo;
		s->map_hi = (const char *)hi;
		s->map_off = off;
		found = 0;
	}
	fclose(f);
	return found;
}

/* Locates the map with a value read through it. map_lock exclusive. */
static void locate_map(tcz_store *s)
{
	MDB_txn *txn;
	s->map_lo = s->map_hi = NULL;
	if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
		return;
	MDB_val k = {6, "schema"}, d;
	if (mdb_get(txn, s->meta, &k, &d) == 0)
		find_mapping(s, d.mv_data);
	mdb_txn_abort(txn);
}

int64_t tcz__map_offset(tcz_store *s, const void *pv, size_t n)
{
	const char *p = pv;
	if (p >= s->map_lo && p + n <= s->map_hi && p + n >= p)
		return (int64_t)(s->map_off + (uint64_t)(p - s->map_lo));
	return -1;
}

/* The map size another process recorded, as mdb_env_set_mapsize(0) will
 * adopt it: from the newer of the two meta pages, read with pread (LMDB's
 * on-disk layout of 0.9: after a 16-byte page header, u32 magic, u32
 * version, a pointer, then the size_t map size; the txnid after the two
 * 48-byte database records and the last page number). 0 when unreadable. */
static size_t meta_mapsize(tcz_store *s)
{
	size_t best = 0;
	uint64_t best_txn = 0;
	for (int i = 0; i < 2 && s->psize; i++) {
		unsigned char b[160];
		if (pread(s->data_fd, b, sizeof b, (off_t)(i * s->psize)) !=
		    (ssize_t)sizeof b)
			continue;
		uint32_t magic;
		uint64_t map, txn;
		memcpy(&magic, b + 16, 4);
		memcpy(&map, b + 32, 8);
		memcpy(&txn, b + 16 + 24 + 96 + 8, 8);
		if (magic != 0xBEEFC0DEu)
			continue;
		if (!best || txn > best_txn) {
			best = (size_t)map;
			best_txn = txn;
		}
	}
	return best;
}

/* Remaps to size (0: the size another process recorded). Takes map_lock
 * exclusively: waits for this process's transactions, which never wait
 * for another process while they hold it. */
static int remap(tcz_store *s, size_t size)
{
	pthread_rwlock_wrlock(&s->map_lock);
	if (s->dead) {
		pthread_rwlock_unlock(&s->map_lock);
		return tcz__fail(-EIO, "store %s: its map was lost", s->dir);
	}
	/* LMDB unmaps before it maps again: a map that cannot be had would
	 * leave it pointing at nothing. Ask the kernel first. */
	size_t want = size ? size : meta_mapsize(s);
	if (!want) {
		MDB_envinfo info;
		want = mdb_env_info(s->env, &info) == 0 ? 2 * info.me_mapsize : 0;
	}
	void *probe = mmap(NULL, want, PROT_NONE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (probe == MAP_FAILED) {
		pthread_rwlock_unlock(&s->map_lock);
		return tcz__fail(-ENOMEM,
				 "store %s: no address space for a %zu MiB map "
				 "(ulimit -v?)",
				 s->dir, want >> 20);
	}
	munmap(probe, want);
	int rc = mdb_env_set_mapsize(s->env, size);
	if (rc == 0) {
		locate_map(s);
	} else {
		/* LMDB may have lost its map: never enter it again */
		s->dead = 1;
	}
	pthread_rwlock_unlock(&s->map_lock);
	if (rc)
		return tcz__fail(-EIO, "store %s: cannot map the grown file: %s",
				 s->dir, mdb_strerror(rc));
	return 0;
}

static int grow(tcz_store *s)
{
	MDB_envinfo info;
	pthread_rwlock_rdlock(&s->map_lock);
	int rc = mdb_env_info(s->env, &info);
	pthread_rwlock_unlock(&s->map_lock);
	if (rc || info.me_mapsize > SIZE_MAX / 2)
		return -ENOSPC;
	return remap(s, info.me_mapsize * 2) ? -ENOSPC : 0;
}

void tcz_store_trim(tcz_store *s)
{
	pthread_rwlock_rdlock(&s->map_lock);
	/* a shared file mapping: only this process's page table entries go;
	 * a transaction touching a page again faults it back in */
	if (s->map_hi > s->map_lo)
		madvise((void *)s->map_lo, (size_t)(s->map_hi - s->map_lo),
			MADV_DONTNEED);
	pthread_rwlock_unlock(&s->map_lock);
}

/* ---- transactions ------------------------------------------------------- */

int tcz__rtxn_begin(tcz_store *s, MDB_txn **txn)
{
	for (int attempt = 0;; attempt++) {
		pthread_rwlock_rdlock(&s->map_lock);
		if (s->dead) {
			pthread_rwlock_unlock(&s->map_lock);
			return tcz__fail(-EIO, "store %s: its map was lost",
					 s->dir);
		}
		int rc = *txn ? mdb_txn_renew(*txn)
			      : mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
		if (rc == 0)
			return 0;
		pthread_rwlock_unlock(&s->map_lock);
		if (rc == MDB_MAP_RESIZED && attempt < 3) {
			int r = remap(s, 0);
			if (r)
				return r;
			continue;
		}
		return tcz__fail(tcz__mdb_err(rc), "store %s: %s", s->dir,
				 mdb_strerror(rc));
	}
}

void tcz__rtxn_end(tcz_store *s, MDB_txn *txn, int keep)
{
	if (!txn)
		return;
	if (keep)
		mdb_txn_reset(txn);
	else
		mdb_txn_abort(txn);
	pthread_rwlock_unlock(&s->map_lock);
}

/* The writer gate: an exclusive lock on byte 0 of tczfs.lock, so that a
 * tczfs writer waits for another here, holding nothing, rather than in
 * LMDB's writer lock with the map lock held. */
static int gate(tcz_store *s, int take)
{
	if (s->gc_fd < 0)
		return 0;
	struct flock fl = {0};
	fl.l_type = take ? F_WRLCK : F_UNLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = 0;
	fl.l_len = 1;
	while (fcntl(s->gc_fd, take ? F_OFD_SETLKW : F_OFD_SETLK, &fl) != 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

/* Whether the store's file system has (almost) no space left. */
static int disk_full(tcz_store *s)
{
	struct statvfs v;
	if (statvfs(s->dir, &v) != 0)
		return 0;
	return (uint64_t)v.f_bavail * v.f_frsize < DISK_FULL_SLACK;
}

int tcz__write(tcz_store *s, int (*fn)(void *, MDB_txn *), void *arg)
{
	if (s->flags & TCZ_STORE_RDONLY)
		return tcz__fail(-EROFS, "store %s is open read-only", s->dir);
	pthread_mutex_lock(&s->write_lock);
	int rc = gate(s, 1);
	if (rc) {
		pthread_mutex_unlock(&s->write_lock);
		return tcz__fail(rc, "store %s: writer lock: %s", s->dir,
				 strerror(-rc));
	}
	int committing = 0;
	for (int attempt = 0;; attempt++) {
		MDB_txn *txn;
		committing = 0;
		pthread_rwlock_rdlock(&s->map_lock);
		if (s->dead) {
			pthread_rwlock_unlock(&s->map_lock);
			rc = tcz__fail(-EIO, "store %s: its map was lost", s->dir);
			break;
		}
		int m = mdb_txn_begin(s->env, NULL, 0, &txn);
		if (m == MDB_MAP_RESIZED && attempt < GROW_ATTEMPTS) {
			pthread_rwlock_unlock(&s->map_lock);
			if ((rc = remap(s, 0)))
				break;
			continue;
		}
		if (m) {
			pthread_rwlock_unlock(&s->map_lock);
			rc = tcz__fail(tcz__mdb_err(m), "store %s: %s", s->dir,
				       mdb_strerror(m));
			break;
		}
		errmsg[0] = 0;
		rc = fn(arg, txn);
		if (rc == 0) {
			committing = 1;
			m = mdb_txn_commit(txn);
			rc = tcz__mdb_err(m);
		} else {
			mdb_txn_abort(txn);
		}
		pthread_rwlock_unlock(&s->map_lock);
		if (rc != TCZ__EMAPFULL)
			break;
		if (attempt >= GROW_ATTEMPTS || grow(s) != 0) {
			rc = tcz__fail(-ENOSPC,
				       "store %s: the map is full and cannot grow",
				       s->dir);
			break;
		}
	}
	gate(s, 0);
	pthread_mutex_unlock(&s->write_lock);
	if (rc == TCZ__EMAPFULL) /* never leaves the module */
		rc = -ENOSPC;
	if ((rc == -ENOSPC || (rc == -EIO && committing)) && disk_full(s))
		return tcz__fail(-ENOSPC,
				 "no space left on device for store %s (the store "
				 "is intact; nothing of this change was written)",
				 s->dir);
	if (rc && committing && !errmsg[0])
		tcz__fail(rc, "store %s: commit failed: %s", s->dir,
			  strerror(-rc));
	return rc;
}

/* ---- meta --------------------------------------------------------------- */

int tcz__meta_get(tcz_store *s, MDB_txn *txn, const char *k, uint64_t *v)
{
	MDB_val key = {strlen(k), (void *)k}, val;
	int rc = mdb_get(txn, s->meta, &key, &val);
	if (rc)
		return tcz__mdb_err(rc);
	tcz_rbuf r;
	if (tcz_rec_open(&r, val.mv_data, val.mv_size))
		return tcz__fail(-EIO,
				 "store %s: meta record '%s' is damaged "
				 "(checksum mismatch)",
				 s->dir, k);
	*v = tcz_rb_u64(&r);
	return tcz_rb_end(&r) ? tcz__fail(-EIO,
					  "store %s: meta record '%s' is "
					  "malformed",
					  s->dir, k)
			      : 0;
}

int tcz__meta_put(tcz_store *s, MDB_txn *txn, const char *k, uint64_t v)
{
	tcz_wbuf w;
	tcz_wb_init(&w);
	tcz_wb_u64(&w, v);
	int rc = tcz_rec_finish(&w);
	if (rc == 0) {
		MDB_val key = {strlen(k), (void *)k}, val = {w.len, w.p};
		rc = tcz__mdb_err(mdb_put(txn, s->meta, &key, &val, 0));
	}
	tcz_wb_free(&w);
	return rc;
}

int tcz__bump_generation(tcz_store *s, MDB_txn *txn)
{
	uint64_t g = 0;
	int rc = tcz__meta_get(s, txn, "generation", &g);
	if (rc == -EIO) {
		/* only a change counter: a damaged one restarts past any
		 * value a reader may hold (readers compare for equality) */
		g = (uint64_t)time(NULL) << 20;
		rc = 0;
	}
	if (rc && rc != -ENOENT)
		return rc;
	return tcz__meta_put(s, txn, "generation", g + 1);
}

/* ---- opening ------------------------------------------------------------ */

static const struct {
	const char *name;
	size_t off;
	unsigned since; /* schema version that added the table */
} tables[] = {
	{"meta", offsetof(tcz_store, meta), 1},
	{"models", offsetof(tcz_store, models), 1},
	{"tensors", offsetof(tcz_store, tensors), 1},
	{"aux", offsetof(tcz_store, aux), 1},
	{"chunks", offsetof(tcz_store, chunks), 1},
	{"refs", offsetof(tcz_store, refs), 1},
	{"ttcores", offsetof(tcz_store, ttcores), 1},
	{"stats", offsetof(tcz_store, stats), 1},
	{"imports", offsetof(tcz_store, imports), 1},
	{"pending", offsetof(tcz_store, pending), 1},
	{"segments", offsetof(tcz_store, segments), 1},
	{"dropped", offsetof(tcz_store, dropped), 2},
	{"profiles", offsetof(tcz_store, profiles), 2},
	{"asicsums", offsetof(tcz_store, asicsums), 2},
	/* streams came after schema 2 without a bump: they are new tables
	 * only, which a writable open creates and a read-only one reads as
	 * empty (see has_streams) */
	{"streams", offsetof(tcz_store, streams), 2},
	{"sindex", offsetof(tcz_store, sindex), 2},
	{"sstats", offsetof(tcz_store, sstats), 2},
	{"remotes", offsetof(tcz_store, remotes), 2},
	{"rcache", offsetof(tcz_store, rcache), 2},
	{"rcmeta", offsetof(tcz_store, rcmeta), 2},
	{"rclru", offsetof(tcz_store, rclru), 2},
	{"blocks", offsetof(tcz_store, blocks), 2},
};
#define N_TABLES (sizeof tables / sizeof tables[0])

/* Opens the tables in txn; *missing counts those a store of schema 1
 * lacks (created when flags has MDB_CREATE). */
static int open_dbis(tcz_store *s, MDB_txn *txn, unsigned flags,
		     unsigned *missing)
{
	*missing = 0;
	unsigned stream_tables = 0;
	for (size_t i = 0; i < N_TABLES; i++) {
		MDB_dbi *d = (MDB_dbi *)((char *)s + tables[i].off);
		int rc = mdb_dbi_open(txn, tables[i].name, flags, d);
		if (rc == MDB_NOTFOUND && tables[i].since > 1) {
			(*missing)++;
			continue;
		}
		if (rc == MDB_NOTFOUND)
			return tcz__fail(-EPROTONOSUPPORT,
					 "%s is not a tczfs store (no '%s' "
					 "table)",
					 s->dir, tables[i].name);
		if (rc)
			return tcz__fail(tcz__mdb_err(rc), "%s: %s", s->dir,
					 mdb_strerror(rc));
		if (d == &s->dropped)
			s->has_dropped = 1;
		if (d == &s->asicsums)
			s->has_asic = 1; /* profiles comes just before it */
		if (d == &s->streams || d == &s->sindex || d == &s->sstats)
			stream_tables++;
		if (d == &s->rclru)
			s->has_remote = 1; /* the last of the four */
		if (d == &s->blocks)
			s->has_blocks = 1;
	}
	s->has_streams = stream_tables == 3;
	return 0;
}

/* The schema version; -ENOENT when the store has none yet. */
static int read_schema(tcz_store *s, MDB_txn *txn, uint64_t *v)
{
	int rc = tcz__meta_get(s, txn, "schema", v);
	if (rc)
		return rc;
	if (*v > TCZ_SCHEMA_VERSION || *v < TCZ_SCHEMA_OLDEST)
		return tcz__fail(-EPROTONOSUPPORT,
				 "store %s has schema version %llu; this tczfs "
				 "reads versions %u to %u",
				 s->dir, (unsigned long long)*v,
				 TCZ_SCHEMA_OLDEST, TCZ_SCHEMA_VERSION);
	return 0;
}

/* Creates missing tables and upgrades the schema (schema 1 lacked the
 * `dropped` table; stores of schema 2 may lack the stream tables). */
static int setup_fn(void *arg, MDB_txn *txn)
{
	tcz_store *s = arg;
	unsigned missing;
	int rc = open_dbis(s, txn, MDB_CREATE, &missing);
	if (rc)
		return rc;
	uint64_t v;
	rc = read_schema(s, txn, &v);
	if (rc == -ENOENT) {
		if (!(s->flags & TCZ_STORE_CREATE))
			return tcz__fail(-EPROTONOSUPPORT,
					 "%s is not a tczfs store (no schema "
					 "version)",
					 s->dir);
		if ((rc = tcz__meta_put(s, txn, "next_id", 1)) ||
		    (rc = tcz__meta_put(s, txn, "generation", 0)))
			return rc;
		v = 0;
	} else if (rc) {
		return rc;
	}
	if (v != TCZ_SCHEMA_VERSION)
		rc = tcz__meta_put(s, txn, "schema", TCZ_SCHEMA_VERSION);
	return rc;
}

/* Whether the environment holds tables of something else: an LMDB
 * environment tczfs did not create is not turned into a store. */
static int foreign(MDB_txn *txn)
{
	MDB_dbi main;
	MDB_stat st;
	if (mdb_dbi_open(txn, NULL, 0, &main) || mdb_stat(txn, main, &st))
		return 0;
	return st.ms_entries > 0;
}

/* mkdir -p with 0700 (XDG wants ~/.local/share private too). */
static int mkdir_p(const char *dir)
{
	char path[4096];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(path, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (path[i] != '/' && path[i] != 0)
			continue;
		char c = path[i];
		path[i] = 0;
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			return -1;
		path[i] = c;
	}
	return 0;
}

/* A data.mdb shorter than its pages would fault (SIGBUS) on first use. */
static int check_size(tcz_store *s)
{
	MDB_envinfo info;
	MDB_stat st;
	struct stat fst;
	if (mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &st) ||
	    fstat(s->data_fd, &fst))
		return 0;
	uint64_t need = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	s->psize = st.ms_psize;
	if ((uint64_t)fst.st_size < need)
		return tcz__fail(-EIO,
				 "store %s is damaged: data.mdb is truncated "
				 "(%llu bytes, its pages need %llu)",
				 s->dir, (unsigned long long)fst.st_size,
				 (unsigned long long)need);
	return 0;
}

/* tczfs.lock, created with data.mdb's permissions (a store shared by a
 * group is locked by all of it). A writer must have it: without it pins
 * would be ignored and released content freed under its readers. A
 * reader that cannot create it (read-only media) pins nothing, as nothing
 * can write there either. */
static int open_lockfile(tcz_store *s, int rdonly)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof path, "%s/tczfs.lock", s->dir);
	mode_t mode = 0600;
	if (fstat(s->data_fd, &st) == 0)
		mode = st.st_mode & 0666;
	s->pin_fd = s->gc_fd = -1;
	s->pin_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, mode);
	if (s->pin_fd >= 0)
		fchmod(s->pin_fd, mode); /* as data.mdb, whatever the umask */
	if (!rdonly) {
		if (s->pin_fd >= 0)
			s->gc_fd = open(path, O_RDWR | O_CLOEXEC);
		if (s->gc_fd < 0)
			return tcz__fail(-errno, "cannot open store %s: %s: %s",
					 s->dir, path, strerror(errno));
		return 0;
	}
	if (s->pin_fd < 0)
		s->pin_fd = open(path, O_RDONLY | O_CLOEXEC);
	return 0;
}

int tcz_store_open(const char *dir, unsigned flags, tcz_store **out)
{
	errmsg[0] = 0;
	*out = NULL;
	int create = (flags & TCZ_STORE_CREATE) != 0;
	int rdonly = (flags & TCZ_STORE_RDONLY) != 0;
	if (create && rdonly)
		return -EINVAL;

	struct stat st;
	if (create && mkdir_p(dir) != 0)
		return tcz__fail(-errno, "cannot create store %s: %s", dir,
				 strerror(errno));
	if (stat(dir, &st) != 0) {
		int e = errno;
		if (e == ENOENT)
			return tcz__fail(-ENOENT,
					 "no store at %s (run 'tczfs init')", dir);
		return tcz__fail(-e, "cannot open store %s: %s", dir,
				 strerror(e));
	}
	if (!S_ISDIR(st.st_mode))
		return tcz__fail(-ENOTDIR, "store %s is not a directory", dir);

	char path[4096];
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	int have = stat(path, &st) == 0;
	if (!have && errno != ENOENT)
		return tcz__fail(-errno, "cannot open store %s: %s", dir,
				 strerror(errno));
	if (!create && !have)
		return tcz__fail(-ENOENT,
				 "no store at %s (run 'tczfs init --store %s')",
				 dir, dir);
	if (have && access(path, rdonly ? R_OK : R_OK | W_OK) != 0)
		return tcz__fail(-errno, "cannot open store %s: %s", dir,
				 strerror(errno));
	uint64_t fsize = have ? (uint64_t)st.st_size : 0;

	tcz_store *s = calloc(1, sizeof *s);
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		return -ENOMEM;
	}
	s->flags = flags;
	s->data_fd = s->pin_fd = s->gc_fd = s->rand_fd = -1;
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	/* a pending remap must not wait behind a stream of new readers */
	pthread_rwlockattr_setkind_np(&ra,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->map_lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&s->write_lock, NULL);
	pthread_mutex_init(&s->pin_lock, NULL);

	const char *ms = getenv("TCZFS_MAPSIZE");
	uint64_t map = ms && *ms ? parse_size(ms) : 0;
	if (!map)
		map = (flags & TCZ_STORE_DAEMON) ? MAP_DAEMON : MAP_DEFAULT;
	while (map < 2 * fsize)
		map *= 2;

	int rc;
	for (;;) {
		rc = mdb_env_create(&s->env);
		if (rc == 0)
			rc = mdb_env_set_maxdbs(s->env, 32); /* 22 used */
		if (rc == 0)
			rc = mdb_env_set_maxreaders(s->env, MAX_READERS);
		if (rc == 0)
			rc = mdb_env_set_mapsize(s->env, (size_t)map);
		/* NORDAHEAD: a lookup faults in its page, not the 128 KiB of
		 * chunk values around it (values are pread, see read.c) */
		if (rc == 0)
			rc = mdb_env_open(s->env, dir,
					  MDB_NOTLS | MDB_NORDAHEAD |
						  (rdonly ? MDB_RDONLY : 0),
					  0600);
		/* The map is address space only, but some environments
		 * (valgrind, ulimit -v) refuse a large one: halve it, never
		 * below what the data needs; MDB_MAP_FULL grows it later. */
		if ((rc == EINVAL || rc == ENOMEM) && map / 2 >= 2 * fsize &&
		    map / 2 >= (64u << 20)) {
			mdb_env_close(s->env);
			s->env = NULL;
			map /= 2;
			continue;
		}
		break;
	}
	if (rc) {
		int e = tcz__mdb_err(rc);
		if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH)
			tcz__fail(e, "%s is not a tczfs store (%s)", dir,
				  mdb_strerror(rc));
		else
			tcz__fail(e, "cannot open store %s: %s", dir,
				  mdb_strerror(rc));
		tcz_store_close(s);
		return e;
	}
	mdb_env_get_fd(s->env, &s->data_fd);
	/* A second descriptor without readahead for the block reads: an
	 * 11 KiB pread on LMDB's own descriptor read the 128 KiB around it
	 * (the cold 4 KiB p50 stayed at ~400 us), while whole-chunk reads
	 * keep readahead, which serves a sequential reader. */
	char dp[PATH_MAX];
	snprintf(dp, sizeof dp, "%s/data.mdb", dir);
	s->rand_fd = open(dp, O_RDONLY | O_CLOEXEC);
	if (s->rand_fd >= 0)
		posix_fadvise(s->rand_fd, 0, 0, POSIX_FADV_RANDOM);
	if ((rc = check_size(s))) {
		tcz_store_close(s);
		return rc;
	}
	int dead = 0;
	mdb_reader_check(s->env, &dead);
	if ((rc = open_lockfile(s, rdonly))) {
		tcz_store_close(s);
		return rc;
	}

	/* tables and schema in a read transaction; writers create what is
	 * missing (a new store, or an upgrade) in a write transaction */
	MDB_txn *txn = NULL;
	unsigned missing = 0;
	uint64_t ver = 0;
	rc = 0;
	{
		pthread_rwlock_rdlock(&s->map_lock);
		int e = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
		if (e) {
			rc = tcz__fail(tcz__mdb_err(e), "store %s: %s", dir,
				       mdb_strerror(e));
		} else {
			rc = open_dbis(s, txn, 0, &missing);
			if (rc == -EPROTONOSUPPORT && create &&
			    !foreign(txn))
				rc = 0, missing = 1; /* a new store */
			if (rc == 0 && !missing) {
				rc = read_schema(s, txn, &ver);
				if (rc == -ENOENT && create)
					rc = 0, missing = 1;
				else if (rc == -ENOENT)
					rc = tcz__fail(-EPROTONOSUPPORT,
						       "%s is not a tczfs store "
						       "(no schema version)",
						       dir);
			}
			if (rc == 0)
				e = mdb_txn_commit(txn);
			else
				mdb_txn_abort(txn);
			if (rc == 0 && e)
				rc = tcz__mdb_err(e);
		}
		pthread_rwlock_unlock(&s->map_lock);
	}
	if (rc == 0 && (missing || ver != TCZ_SCHEMA_VERSION) && !rdonly)
		rc = tcz__write(s, setup_fn, s);
	if (rc) {
		tcz_store_close(s);
		return rc;
	}
	pthread_rwlock_wrlock(&s->map_lock);
	locate_map(s);
	pthread_rwlock_unlock(&s->map_lock);
	*out = s;
	return 0;
}

void tcz_store_close(tcz_store *s)
{
	if (!s)
		return;
	if (s->env)
		mdb_env_close(s->env);
	if (s->pin_fd >= 0)
		close(s->pin_fd);
	if (s->gc_fd >= 0)
		close(s->gc_fd);
	if (s->rand_fd >= 0)
		close(s->rand_fd);
	pthread_rwlock_destroy(&s->map_lock);
	pthread_mutex_destroy(&s->write_lock);
	pthread_mutex_destroy(&s->pin_lock);
	free(s->pins);
	free(s->dir);
	free(s);
}

int tcz_store_reader_check(tcz_store *s, int *dead)
{
	int d = 0;
	int rc = mdb_reader_check(s->env, &d);
	if (dead)
		*dead = d;
	return rc ? -EIO : 0;
}

char *tcz_store_default_dir(void)
{
	const char *v = getenv("TCZFS_STORE");
	char *out = NULL;
	if (v && *v)
		return strdup(v);
	v = getenv("XDG_DATA_HOME");
	if (v && *v) {
		if (asprintf(&out, "%s/tczfs", v) < 0)
			return NULL;
		return out;
	}
	v = getenv("HOME");
	if (v && *v) {
		if (asprintf(&out, "%s/.local/share/tczfs", v) < 0)
			return NULL;
		return out;
	}
	return NULL;
}

bool tcz_model_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > TCZ_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return false;
	}
	return strcmp(name, "asic") != 0 && strcmp(name, "streams") != 0;
}

int tcz_store_disk_size(tcz_store *s, uint64_t *bytes)
{
	struct stat st;
	if (fstat(s->data_fd, &st) != 0)
		return -errno;
	*bytes = (uint64_t)st.st_blocks * 512u;
	return 0;
}

int tcz_store_generation(tcz_store *s, uint64_t *gen)
{
	MDB_txn *txn = NULL;
	int rc = tcz__rtxn_begin(s, &txn);
	if (rc)
		return rc;
	rc = tcz__meta_get(s, txn, "generation", gen);
	tcz__rtxn_end(s, txn, 0);
	return rc;
}

int tcz__del_prefix(MDB_txn *txn, MDB_dbi db, uint64_t id)
{
	MDB_cursor *c;
	unsigned char k[8];
	tcz_be64(k, id);
	int rc = mdb_cursor_open(txn, db, &c);
	if (rc)
		return tcz__mdb_err(rc);
	for (;;) {
		/* re-seek after each delete: simpler than trusting the cursor
		 * position LMDB leaves behind at page boundaries */
		MDB_val key = {8, k}, val;
		rc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
		if (rc || key.mv_size < 8 || memcmp(key.mv_data, k, 8) != 0)
			break;
		if ((rc = mdb_cursor_del(c, 0)) != 0)
			break;
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND || rc == 0 ? 0 : tcz__mdb_err(rc);
}
