/* Pins and deferred release.
 *
 * A reader of a model holds a shared OFD lock on byte `id` of tczfs.lock
 * (the model's content id) for as long as it has the model open. A
 * removal does not drop the model's chunk references at once: it records
 * them in `dropped` under the content id, and a collector (any writer)
 * releases an entry only when it can take an exclusive lock on that byte,
 * i.e. when no process pins the content. The collector keeps its locks
 * until its transaction has committed, so a reader that pins after the
 * check sees the release; a reader that pinned before blocks it. The
 * kernel drops a process's locks when it dies: a killed daemon pins
 * nothing. Byte 0 is the writer gate (env.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "store/grow.h"
#include "store/internal.h"

#define DROP_PART_KEYS 65536u /* keys per dropped record (1 MiB) */
#define DROP_TTCORES 0x1u

static int ofd_lock(int fd, short type, uint64_t id)
{
	struct flock fl = {0};
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)id;
	fl.l_len = 1;
	while (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
		if (errno == EINTR)
			continue;
		return -errno;
	}
	return 0;
}

/* Index of id in the sorted pin table, or where it would go. */
static size_t pin_pos(const tcz_store *s, uint64_t id)
{
	size_t lo = 0, hi = s->n_pins;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->pins[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int tcz__pin(tcz_store *s, uint64_t id)
{
	if (s->pin_fd < 0 || id == 0 || id > INT64_MAX)
		return 0;
	pthread_mutex_lock(&s->pin_lock);
	size_t p = pin_pos(s, id);
	int rc = 0;
	if (p < s->n_pins && s->pins[p].id == id) {
		s->pins[p].count++;
		goto out;
	}
	if ((rc = tcz__grow(&s->pins, &s->cap_pins, s->n_pins, sizeof *s->pins,
			    16)))
		goto out;
	/* non-blocking: only a collector releasing this very content holds
	 * it exclusively, and then the content is gone */
	rc = ofd_lock(s->pin_fd, F_RDLCK, id);
	if (rc == -EAGAIN || rc == -EACCES) {
		rc = -ENOENT;
		goto out;
	}
	if (rc) {
		rc = 0; /* no locking here (odd file system): pin nothing */
		goto out;
	}
	memmove(s->pins + p + 1, s->pins + p, (s->n_pins - p) * sizeof *s->pins);
	s->pins[p] = (tcz_pin){id, 1};
	s->n_pins++;
out:
	pthread_mutex_unlock(&s->pin_lock);
	return rc;
}

void tcz__unpin(tcz_store *s, uint64_t id)
{
	if (s->pin_fd < 0 || id == 0 || id > INT64_MAX)
		return;
	pthread_mutex_lock(&s->pin_lock);
	size_t p = pin_pos(s, id);
	if (p < s->n_pins && s->pins[p].id == id && --s->pins[p].count == 0) {
		ofd_lock(s->pin_fd, F_UNLCK, id);
		memmove(s->pins + p, s->pins + p + 1,
			(s->n_pins - p - 1) * sizeof *s->pins);
		s->n_pins--;
	}
	pthread_mutex_unlock(&s->pin_lock);
}

int tcz__drop(tcz_store *s, MDB_txn *txn, uint64_t id,
	      const unsigned char (*keys)[TCZ_KEY_LEN], size_t n, int ttcores)
{
	if (!s->has_dropped)
		return -EROFS;
	/* parts are numbered after any the content already has */
	uint32_t part = 0;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dropped, &c);
	if (rc)
		return tcz__mdb_err(rc);
	unsigned char k0[12];
	tcz__key_id_idx(k0, id, UINT32_MAX);
	MDB_val k = {12, k0}, d;
	rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
	rc = rc == 0 ? mdb_cursor_get(c, &k, &d, MDB_PREV)
		     : mdb_cursor_get(c, &k, &d, MDB_LAST);
	if (rc == 0 && k.mv_size == 12 && tcz_get_be64(k.mv_data) == id)
		part = tcz_get_be32((const unsigned char *)k.mv_data + 8) + 1;
	mdb_cursor_close(c);
	rc = 0;
	size_t done = 0;
	do {
		size_t take = n - done < DROP_PART_KEYS ? n - done : DROP_PART_KEYS;
		tcz_wbuf w;
		tcz_wb_init(&w);
		tcz_wb_u32(&w, ttcores && done == 0 ? DROP_TTCORES : 0);
		tcz_wb_u32(&w, (uint32_t)take);
		if (take)
			tcz_wb_bytes(&w, keys + done, take * TCZ_KEY_LEN);
		rc = tcz_rec_finish(&w);
		unsigned char kb[12];
		tcz__key_id_idx(kb, id, part++);
		MDB_val kv = {12, kb}, dv = {w.len, w.p};
		if (rc == 0)
			rc = tcz__mdb_err(mdb_put(txn, s->dropped, &kv, &dv, 0));
		tcz_wb_free(&w);
		done += take;
	} while (rc == 0 && done < n);
	return rc;
}

typedef struct collect_arg {
	tcz_store *s;
	uint64_t *locked; /* contents locked for release, unlocked after */
	size_t n_locked, cap;
	unsigned released;
	int more; /* a full batch: there may be more */
} collect_arg;

static int locked_add(collect_arg *a, uint64_t id)
{
	for (size_t i = 0; i < a->n_locked; i++)
		if (a->locked[i] == id)
			return 0;
	if (tcz__grow(&a->locked, &a->cap, a->n_locked, sizeof *a->locked, 16))
		return -ENOMEM;
	a->locked[a->n_locked++] = id;
	return 0;
}

/* Releases every part of one content id (parts are consecutive). */
static int release(tcz_store *s, MDB_txn *txn, uint64_t id)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dropped, &c);
	if (rc)
		return tcz__mdb_err(rc);
	unsigned char k0[12];
	tcz__key_id_idx(k0, id, 0);
	int tt = 0;
	for (;;) {
		MDB_val k = {12, k0}, d;
		rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
		if (rc || k.mv_size != 12 || tcz_get_be64(k.mv_data) != id)
			break;
		tcz_rbuf r;
		/* a damaged record cannot say which references it held: its
		 * chunks stay (verify reports them) */
		if (tcz_rec_open(&r, d.mv_data, d.mv_size) == 0) {
			uint32_t flags = tcz_rb_u32(&r), n = tcz_rb_u32(&r);
			const unsigned char *keys =
				tcz_rb_bytes(&r, (size_t)n * TCZ_KEY_LEN);
			if (keys && tcz_rb_end(&r) == 0) {
				tt |= (flags & DROP_TTCORES) != 0;
				/* copied: decref writes may move the page */
				unsigned char *copy = malloc((size_t)n * 16 + 1);
				if (!copy) {
					rc = -ENOMEM;
					break;
				}
				memcpy(copy, keys, (size_t)n * TCZ_KEY_LEN);
				for (uint32_t i = 0; i < n && rc == 0; i++)
					rc = tcz__decref(s, txn, copy + 16 * i);
				free(copy);
				if (rc)
					break;
			}
		}
		if ((rc = mdb_cursor_del(c, 0)) != 0) {
			rc = tcz__mdb_err(rc);
			break;
		}
	}
	mdb_cursor_close(c);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	if (rc > 0)
		rc = tcz__mdb_err(rc);
	if (rc == 0 && tt)
		rc = tcz__del_prefix(txn, s->ttcores, id);
	return rc;
}

#define RELEASE_PER_TXN 256 /* contents released per transaction */

static int collect_fn(void *arg, MDB_txn *txn)
{
	collect_arg *a = arg;
	tcz_store *s = a->s;
	a->released = 0;
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, s->dropped, &c);
	if (rc)
		return tcz__mdb_err(rc);
	/* the distinct contents nobody pins, in key order, a bounded number
	 * per transaction (the caller runs it again when there are more);
	 * pinned ones are skipped, however many */
	uint64_t ids[RELEASE_PER_TXN];
	size_t n = 0;
	uint64_t last = 0;
	int any = 0;
	MDB_val k, d;
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
	     rc == 0 && n < RELEASE_PER_TXN;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 12)
			continue;
		uint64_t id = tcz_get_be64(k.mv_data);
		if (any && id == last)
			continue;
		any = 1;
		last = id;
		if (s->gc_fd >= 0 && id <= INT64_MAX) {
			if (ofd_lock(s->gc_fd, F_WRLCK, id) != 0)
				continue; /* somebody still reads it: later */
			if (locked_add(a, id)) {
				mdb_cursor_close(c);
				return -ENOMEM;
			}
		}
		ids[n++] = id;
	}
	mdb_cursor_close(c);
	if (rc && rc != MDB_NOTFOUND)
		return tcz__mdb_err(rc);
	a->more = n == RELEASE_PER_TXN;
	rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = release(s, txn, ids[i]);
		if (rc == 0)
			a->released++;
	}
	/* nothing to release: no commit either (no page written) */
	return rc ? rc : n ? 0 : -ECANCELED;
}

int tcz__collect(tcz_store *s, unsigned *count)
{
	if (count)
		*count = 0;
	if (s->flags & TCZ_STORE_RDONLY)
		return -EROFS;
	if (!s->has_dropped)
		return 0;
	/* nothing to do is the common case: look without writing */
	MDB_txn *txn = NULL;
	int rc = tcz__rtxn_begin(s, &txn);
	if (rc)
		return rc;
	MDB_stat st;
	int empty = mdb_stat(txn, s->dropped, &st) == 0 && st.ms_entries == 0;
	tcz__rtxn_end(s, txn, 0);
	if (empty)
		return 0;
	collect_arg a = {s, NULL, 0, 0, 0, 0};
	unsigned total = 0;
	do {
		rc = tcz__write(s, collect_fn, &a);
		/* unlocked only after the commit: see the top of this file */
		for (size_t i = 0; i < a.n_locked; i++)
			ofd_lock(s->gc_fd, F_UNLCK, a.locked[i]);
		a.n_locked = 0;
		if (rc == 0)
			total += a.released;
	} while (rc == 0 && a.more);
	free(a.locked);
	if (rc == -ECANCELED)
		rc = 0;
	if (rc == 0 && count)
		*count = total;
	return rc;
}

int tcz_store_collect(tcz_store *s, unsigned *count)
{
	return tcz__collect(s, count);
}
