/* Opening the LMDB environment, schema check, transactions and map size. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/internal.h"

/* 64 GiB of address space to start with: LMDB only maps it, the file
 * grows as pages are written. MDB_MAP_FULL doubles it. */
#define MAP_DEFAULT (64ull << 30)
#define MAX_READERS 4096u /* one per open file in the daemon, see fs/ */

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
		return -ENOSPC;
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

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return dflt;
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	return *end ? dflt : (uint64_t)x;
}

int tcz__txn_begin(tcz_store *s, unsigned flags, MDB_txn **txn)
{
	pthread_mutex_lock(&s->map_lock);
	int rc = mdb_txn_begin(s->env, NULL, flags, txn);
	if (rc == MDB_MAP_RESIZED && s->open_txns == 0) {
		mdb_env_set_mapsize(s->env, 0);
		rc = mdb_txn_begin(s->env, NULL, flags, txn);
	}
	if (rc == 0)
		s->open_txns++;
	pthread_mutex_unlock(&s->map_lock);
	if (rc == MDB_MAP_RESIZED)
		return tcz__fail(-EAGAIN, "the store grew in another process; "
					  "close open files and retry");
	if (rc)
		return tcz__fail(tcz__mdb_err(rc), "store: %s",
				 mdb_strerror(rc));
	return 0;
}

static void txn_done(tcz_store *s)
{
	pthread_mutex_lock(&s->map_lock);
	s->open_txns--;
	pthread_mutex_unlock(&s->map_lock);
}

int tcz__txn_commit(tcz_store *s, MDB_txn *txn)
{
	int rc = mdb_txn_commit(txn);
	txn_done(s);
	if (rc)
		return tcz__fail(tcz__mdb_err(rc), "store commit: %s",
				 mdb_strerror(rc));
	return 0;
}

void tcz__txn_abort(tcz_store *s, MDB_txn *txn)
{
	if (!txn)
		return;
	mdb_txn_abort(txn);
	txn_done(s);
}

int tcz__grow_map(tcz_store *s)
{
	MDB_envinfo info;
	int rc = -ENOSPC;
	pthread_mutex_lock(&s->map_lock);
	if (s->open_txns == 0 && mdb_env_info(s->env, &info) == 0) {
		size_t cur = info.me_mapsize;
		if (cur <= SIZE_MAX / 2 &&
		    mdb_env_set_mapsize(s->env, cur * 2) == 0)
			rc = 0;
	}
	pthread_mutex_unlock(&s->map_lock);
	if (rc)
		return tcz__fail(rc, "store map is full and cannot grow now");
	return 0;
}

int tcz__meta_get(tcz_store *s, MDB_txn *txn, const char *k, uint64_t *v)
{
	MDB_val key = {strlen(k), (void *)k}, val;
	int rc = mdb_get(txn, s->meta, &key, &val);
	if (rc)
		return tcz__mdb_err(rc);
	tcz_rbuf r;
	if (tcz_rec_open(&r, val.mv_data, val.mv_size))
		return tcz__fail(-EIO, "store meta '%s': checksum mismatch", k);
	*v = tcz_rb_u64(&r);
	return tcz_rb_end(&r) ? tcz__fail(-EIO, "store meta '%s' malformed", k)
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
	if (rc && rc != -ENOENT)
		return rc;
	return tcz__meta_put(s, txn, "generation", g + 1);
}

static int open_dbis(tcz_store *s, MDB_txn *txn, unsigned flags)
{
	static const struct {
		const char *name;
		size_t off;
	} dbs[] = {
		{"meta", offsetof(tcz_store, meta)},
		{"models", offsetof(tcz_store, models)},
		{"tensors", offsetof(tcz_store, tensors)},
		{"aux", offsetof(tcz_store, aux)},
		{"chunks", offsetof(tcz_store, chunks)},
		{"refs", offsetof(tcz_store, refs)},
		{"ttcores", offsetof(tcz_store, ttcores)},
		{"stats", offsetof(tcz_store, stats)},
		{"imports", offsetof(tcz_store, imports)},
		{"pending", offsetof(tcz_store, pending)},
		{"segments", offsetof(tcz_store, segments)},
	};
	for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
		MDB_dbi *d = (MDB_dbi *)((char *)s + dbs[i].off);
		int rc = mdb_dbi_open(txn, dbs[i].name, flags, d);
		if (rc == MDB_NOTFOUND)
			return tcz__fail(-EPROTONOSUPPORT,
					 "%s is not a tczfs store (no '%s' "
					 "table)",
					 s->dir, dbs[i].name);
		if (rc)
			return tcz__fail(tcz__mdb_err(rc), "%s: %s", s->dir,
					 mdb_strerror(rc));
	}
	return 0;
}

static int check_schema(tcz_store *s, MDB_txn *txn, int create)
{
	uint64_t v;
	int rc = tcz__meta_get(s, txn, "schema", &v);
	if (rc == -ENOENT && create) {
		if ((rc = tcz__meta_put(s, txn, "schema", TCZ_SCHEMA_VERSION)) ||
		    (rc = tcz__meta_put(s, txn, "next_id", 1)) ||
		    (rc = tcz__meta_put(s, txn, "generation", 0)))
			return rc;
		return 0;
	}
	if (rc == -ENOENT)
		return tcz__fail(-EPROTONOSUPPORT,
				 "%s is not a tczfs store (no schema version)",
				 s->dir);
	if (rc)
		return rc;
	if (v != TCZ_SCHEMA_VERSION)
		return tcz__fail(-EPROTONOSUPPORT,
				 "store %s has schema version %llu; this tczfs "
				 "reads version %u",
				 s->dir, (unsigned long long)v,
				 TCZ_SCHEMA_VERSION);
	return 0;
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
	if (stat(dir, &st) != 0)
		return tcz__fail(-errno, "no store at %s: %s%s", dir,
				 strerror(errno),
				 errno == ENOENT ? " (run 'tczfs init')" : "");
	if (!S_ISDIR(st.st_mode))
		return tcz__fail(-ENOTDIR, "store %s is not a directory", dir);

	char path[4096];
	snprintf(path, sizeof path, "%s/data.mdb", dir);
	if (!create && stat(path, &st) != 0)
		return tcz__fail(-ENOENT,
				 "no store at %s (run 'tczfs init --store %s')",
				 dir, dir);
	uint64_t fsize = create && stat(path, &st) != 0 ? 0 : (uint64_t)st.st_size;

	tcz_store *s = calloc(1, sizeof *s);
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		return -ENOMEM;
	}
	s->flags = flags;
	pthread_mutex_init(&s->map_lock, NULL);

	uint64_t map = env_u64("TCZFS_MAPSIZE", (flags & TCZ_STORE_DAEMON)
							? (1ull << 40)
							: MAP_DEFAULT);
	while (map < 2 * fsize)
		map *= 2;

	int rc;
	for (;;) {
		rc = mdb_env_create(&s->env);
		if (rc == 0)
			rc = mdb_env_set_maxdbs(s->env, 16);
		if (rc == 0)
			rc = mdb_env_set_maxreaders(s->env, MAX_READERS);
		if (rc == 0)
			rc = mdb_env_set_mapsize(s->env, (size_t)map);
		if (rc == 0)
			rc = mdb_env_open(s->env, dir,
					  MDB_NOTLS | (rdonly ? MDB_RDONLY : 0),
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

	MDB_txn *txn;
	rc = tcz__txn_begin(s, rdonly ? MDB_RDONLY : 0, &txn);
	if (rc == 0) {
		rc = open_dbis(s, txn, create ? MDB_CREATE : 0);
		if (rc == 0)
			rc = check_schema(s, txn, create);
		if (rc == 0)
			rc = tcz__txn_commit(s, txn);
		else
			tcz__txn_abort(s, txn);
	}
	if (rc) {
		tcz_store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void tcz_store_close(tcz_store *s)
{
	if (!s)
		return;
	if (s->env)
		mdb_env_close(s->env);
	pthread_mutex_destroy(&s->map_lock);
	free(s->dir);
	free(s);
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
	char path[4096];
	struct stat st;
	snprintf(path, sizeof path, "%s/data.mdb", s->dir);
	if (stat(path, &st) != 0)
		return -errno;
	*bytes = (uint64_t)st.st_blocks * 512u;
	return 0;
}

int tcz_store_generation(tcz_store *s, uint64_t *gen)
{
	MDB_txn *txn;
	int rc = tcz__txn_begin(s, MDB_RDONLY, &txn);
	if (rc)
		return rc;
	rc = tcz__meta_get(s, txn, "generation", gen);
	tcz__txn_abort(s, txn);
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

/* Finds the mapping of data.mdb (by inode) that holds p. */
static int find_mapping(tcz_store *s, const char *p)
{
	int fd;
	struct stat st;
	if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &st) != 0)
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

int64_t tcz__map_offset(tcz_store *s, const void *pv, size_t n)
{
	const char *p = pv;
	int64_t off = -1;
	pthread_mutex_lock(&s->map_lock);
	if (!(p >= s->map_lo && p + n <= s->map_hi))
		find_mapping(s, p);
	if (p >= s->map_lo && p + n <= s->map_hi)
		off = (int64_t)(s->map_off + (uint64_t)(p - s->map_lo));
	pthread_mutex_unlock(&s->map_lock);
	return off;
}
