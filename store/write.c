/* Write side: imports in batches with a commit marker, rollback of
 * interrupted imports, removal with chunk reference counting. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"
#include "store/stream_int.h"

/* Encoded bytes buffered before a batch is committed: bounds the
 * importer's memory and the work lost to an interruption. */
#define BATCH_BYTES (64u << 20)

typedef struct item {
	MDB_dbi *db; /* chunks or ttcores */
	unsigned char key[16];
	unsigned char *val;
	size_t len;
} item;

struct tcz_import_tx {
	tcz_store *s;
	char *name;
	uint64_t id; /* model id, also the import's id; for a re-encode the
		      * new revision's id */
	uint64_t base_rev; /* re-encode: the revision it started from */
	int reencode;
	item *items;
	size_t n, cap, bytes;
	uint32_t batch; /* next pending batch number */
};

/* ---- process identity, to tell a dead importer from a live one -------- */

static int proc_start(long pid, uint64_t *start)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* comm may hold spaces and parens */
	if (!p)
		return -EIO;
	/* after ")": field 3 (state) ... field 22 (starttime) */
	int field = 2;
	for (p++; *p && field < 22; p++)
		if (*p == ' ')
			field++;
	if (field != 22)
		return -EIO;
	*start = strtoull(p, NULL, 10);
	return 0;
}

static void boot_id(char out[64])
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	out[0] = 0;
	if (f) {
		if (!fgets(out, 64, f))
			out[0] = 0;
		fclose(f);
	}
	out[strcspn(out, "\n")] = 0;
}

/* ---- reference counts -------------------------------------------------- */

static int refs_get(tcz_store *s, MDB_txn *txn, const unsigned char *key,
		    uint64_t *count)
{
	MDB_val k = {TCZ_KEY_LEN, (void *)key}, d;
	int rc = mdb_get(txn, s->refs, &k, &d);
	if (rc)
		return tcz__mdb_err(rc);
	tcz_rbuf r;
	if (tcz_rec_open(&r, d.mv_data, d.mv_size))
		return -EIO;
	*count = tcz_rb_u64(&r);
	return tcz_rb_end(&r);
}

static int refs_put(tcz_store *s, MDB_txn *txn, const unsigned char *key,
		    uint64_t count)
{
	tcz_wbuf w;
	tcz_wb_init(&w);
	tcz_wb_u64(&w, count);
	int rc = tcz_rec_finish(&w);
	if (rc == 0) {
		MDB_val k = {TCZ_KEY_LEN, (void *)key}, d = {w.len, w.p};
		rc = tcz__mdb_err(mdb_put(txn, s->refs, &k, &d, 0));
	}
	tcz_wb_free(&w);
	return rc;
}

int tcz__decref(tcz_store *s, MDB_txn *txn, const unsigned char *key)
{
	uint64_t c = 0;
	int rc = refs_get(s, txn, key, &c);
	if (rc == -EIO || rc == -EBADMSG)
		return 0; /* a damaged count: keep the chunk (a leak, never a
			   * loss); verify reports the count */
	if (rc && rc != -ENOENT)
		return rc;
	MDB_val k = {TCZ_KEY_LEN, (void *)key};
	if (rc == 0 && c > 1)
		return refs_put(s, txn, key, c - 1);
	/* the last reference (or none recorded): the chunk goes */
	rc = mdb_del(txn, s->refs, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return tcz__mdb_err(rc);
	rc = mdb_del(txn, s->chunks, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return tcz__mdb_err(rc);
	return tcz__blocks_del(s, txn, key);
}

static int incref_chunk(tcz_store *s, MDB_txn *txn, const item *it)
{
	uint64_t c = 0; /* gcc -O3 cannot see refs_get sets it on success */
	MDB_val k = {TCZ_KEY_LEN, (void *)it->key}, d;
	int rc = refs_get(s, txn, it->key, &c);
	if (rc == -EIO || rc == -EBADMSG) {
		/* counting on from a damaged count could free the chunk under
		 * the models that share it: refuse, the store unchanged */
		char hex[33];
		for (int i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", it->key[i]);
		return tcz__fail(-EIO,
				 "the reference count of chunk %s is damaged "
				 "(run 'tczfs verify')",
				 hex);
	}
	if (rc == 0 && mdb_get(txn, s->chunks, &k, &d) == 0) {
		/* same XXH3-128: make sure it is the same bytes before sharing */
		if (d.mv_size != it->len || memcmp(d.mv_data, it->val, it->len)) {
			unsigned char have[TCZ_KEY_LEN];
			tcz__chunk_key(d.mv_data, d.mv_size, have);
			if (memcmp(have, it->key, TCZ_KEY_LEN) == 0)
				return tcz__fail(-EIO,
						 "chunk hash collision refused");
			/* the stored copy no longer hashes to its key: it is
			 * damaged, and the new bytes, which do, replace it
			 * (every model sharing it reads right again) */
			d = (MDB_val){it->len, it->val};
			if ((rc = mdb_put(txn, s->chunks, &k, &d, 0)))
				return tcz__mdb_err(rc);
			if ((rc = tcz__blocks_put(s, txn, it->key, it->val,
						  it->len)))
				return rc;
		}
		return refs_put(s, txn, it->key, c + 1);
	}
	if (rc && rc != -ENOENT)
		return rc;
	/* a missing chunk with a count (damage) keeps its other holders'
	 * references: the value comes back, the count goes on */
	d = (MDB_val){it->len, it->val};
	if ((rc = mdb_put(txn, s->chunks, &k, &d, 0)))
		return tcz__mdb_err(rc);
	if ((rc = tcz__blocks_put(s, txn, it->key, it->val, it->len)))
		return rc;
	return refs_put(s, txn, it->key, c ? c + 1 : 1);
}

/* ---- batches ------------------------------------------------------------ */

/* Writes the buffered items and a pending record listing the chunk
 * references taken, so a rollback can drop exactly those. */
static int write_items(tcz_import_tx *tx, MDB_txn *txn)
{
	tcz_store *s = tx->s;
	tcz_wbuf w;
	/* Our marker must still be there: another writer that judged this
	 * process dead (a pid namespace it cannot see into) has rolled the
	 * import back, and its chunks may be gone. */
	unsigned char mk[8];
	tcz__key_id(mk, tx->id);
	MDB_val mkv = {8, mk}, mdv;
	if (mdb_get(txn, s->imports, &mkv, &mdv) != 0)
		return tcz__fail(-ECANCELED,
				 "import of %s was rolled back by another "
				 "process; run it again",
				 tx->name);
	tcz_wb_init(&w);
	int rc = 0;
	for (size_t i = 0; i < tx->n && rc == 0; i++) {
		item *it = &tx->items[i];
		if (it->db == &s->chunks) {
			rc = incref_chunk(s, txn, it);
			tcz_wb_bytes(&w, it->key, TCZ_KEY_LEN);
		} else {
			MDB_val k = {16, it->key}, d = {it->len, it->val};
			rc = tcz__mdb_err(mdb_put(txn, s->ttcores, &k, &d, 0));
		}
	}
	if (rc == 0 && w.len) {
		unsigned char k[12];
		tcz__key_id_idx(k, tx->id, tx->batch);
		rc = tcz_rec_finish(&w);
		MDB_val kv = {12, k}, dv = {w.len, w.p};
		if (rc == 0)
			rc = tcz__mdb_err(mdb_put(txn, s->pending, &kv, &dv, 0));
	}
	tcz_wb_free(&w);
	return rc;
}

static void drop_items(tcz_import_tx *tx)
{
	for (size_t i = 0; i < tx->n; i++)
		free(tx->items[i].val);
	tx->n = 0;
	tx->bytes = 0;
}

static int flush_fn(void *arg, MDB_txn *txn)
{
	return write_items(arg, txn);
}

static int flush(tcz_import_tx *tx)
{
	if (tx->n == 0)
		return 0;
	int rc = tcz__write(tx->s, flush_fn, tx);
	if (rc == 0) {
		drop_items(tx);
		tx->batch++;
	}
	return rc;
}

static int add_item(tcz_import_tx *tx, MDB_dbi *db, const unsigned char *key,
		    unsigned char *val, size_t len)
{
	if (tx->n == tx->cap) {
		size_t cap = tx->cap ? tx->cap * 2 : 64;
		item *ni = realloc(tx->items, cap * sizeof *ni);
		if (!ni) {
			free(val);
			return -ENOMEM;
		}
		tx->items = ni;
		tx->cap = cap;
	}
	item *it = &tx->items[tx->n++];
	it->db = db;
	memcpy(it->key, key, 16);
	it->val = val;
	it->len = len;
	tx->bytes += len;
	return tx->bytes >= BATCH_BYTES ? flush(tx) : 0;
}

/* ---- import ------------------------------------------------------------ */

/* The largest id used as the first 8 key bytes of table db (0 if none). */
static uint64_t max_key_id(MDB_txn *txn, MDB_dbi db)
{
	MDB_cursor *c;
	MDB_val k, d;
	uint64_t id = 0;
	if (mdb_cursor_open(txn, db, &c))
		return 0;
	if (mdb_cursor_get(c, &k, &d, MDB_LAST) == 0 && k.mv_size >= 8)
		id = tcz_get_be64(k.mv_data);
	mdb_cursor_close(c);
	return id;
}

/* A damaged next_id is recomputed past every id in use: ids must never
 * be reused (inode numbers, pins and cache keys derive from them). */
static int recompute_next_id(tcz_store *s, MDB_txn *txn, uint64_t *out)
{
	uint64_t top = 0, v;
	MDB_dbi keyed[] = {s->tensors, s->aux, s->ttcores, s->stats, s->imports,
			   s->pending, s->dropped};
	size_t n = sizeof keyed / sizeof keyed[0] - !s->has_dropped;
	for (size_t i = 0; i < n; i++)
		if ((v = max_key_id(txn, keyed[i])) > top)
			top = v;
	if ((v = tcz__stream_max_id(s, txn)) > top)
		top = v;
	MDB_cursor *c;
	MDB_val k, d;
	if (mdb_cursor_open(txn, s->models, &c) == 0) {
		int rc;
		for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT))
			if (tcz__model_record_id(d.mv_data, d.mv_size, &v) == 0 &&
			    v > top)
				top = v;
		mdb_cursor_close(c);
	}
	*out = top + 1;
	return 0;
}

int tcz__next_id(tcz_store *s, MDB_txn *txn, uint64_t *id)
{
	int rc = tcz__meta_get(s, txn, "next_id", id);
	if (rc == -EIO)
		rc = recompute_next_id(s, txn, id);
	if (rc == 0)
		rc = tcz__meta_put(s, txn, "next_id", *id + 1);
	return rc;
}

struct begin_arg {
	tcz_import_tx *tx;
};

static int begin_fn(void *arg, MDB_txn *txn)
{
	tcz_import_tx *tx = ((struct begin_arg *)arg)->tx;
	tcz_store *s = tx->s;
	MDB_val k = {strlen(tx->name), tx->name}, d;
	int found = mdb_get(txn, s->models, &k, &d) == 0;
	if (found && !tx->reencode)
		return tcz__fail(-EEXIST, "model %s already exists", tx->name);
	if (tx->reencode) {
		uint64_t mid, rev;
		if (!found)
			return tcz__fail(-ENOENT, "no model named %s", tx->name);
		int r = tcz__model_record_rev(d.mv_data, d.mv_size, &mid, &rev);
		if (r)
			return r;
		if (rev != tx->base_rev)
			return tcz__fail(-EAGAIN, "model %s changed meanwhile",
					 tx->name);
	}
	uint64_t id;
	int rc = tcz__next_id(s, txn, &id);
	if (rc)
		return rc;

	uint64_t start = 0;
	char boot[64];
	proc_start(getpid(), &start);
	boot_id(boot);
	tcz_wbuf w;
	tcz_wb_init(&w);
	tcz_wb_u64(&w, (uint64_t)getpid());
	tcz_wb_u64(&w, start);
	tcz_wb_str(&w, boot);
	tcz_wb_str(&w, tx->name);
	tcz_wb_u64(&w, (uint64_t)time(NULL));
	rc = tcz_rec_finish(&w);
	unsigned char kb[8];
	tcz__key_id(kb, id);
	MDB_val kv = {8, kb}, dv = {w.len, w.p};
	if (rc == 0)
		rc = tcz__mdb_err(mdb_put(txn, s->imports, &kv, &dv, 0));
	tcz_wb_free(&w);
	tx->id = id;
	return rc;
}

int tcz_import_begin(tcz_store *s, const char *name, tcz_import_tx **out)
{
	if (s->flags & TCZ_STORE_RDONLY)
		return -EROFS;
	if (!tcz_model_name_valid(name))
		return tcz__fail(-EINVAL,
				 "invalid model name '%s' (letters, digits, "
				 "'.', '_', '-'; at most 128; not asic/streams)",
				 name);
	int rc = tcz_store_recover(s, NULL);
	if (rc)
		return rc;
	tcz_import_tx *tx = calloc(1, sizeof *tx);
	if (!tx || !(tx->name = strdup(name))) {
		free(tx);
		return -ENOMEM;
	}
	tx->s = s;
	struct begin_arg a = {tx};
	rc = tcz__write(s, begin_fn, &a);
	if (rc) {
		free(tx->name);
		free(tx);
		return rc;
	}
	*out = tx;
	return 0;
}

int tcz_import_put_chunk(tcz_import_tx *tx, unsigned char *val, size_t vlen,
			 unsigned char key[TCZ_KEY_LEN])
{
	tcz__chunk_key(val, vlen, key);
	return add_item(tx, &tx->s->chunks, key, val, vlen);
}

int tcz_import_put_ttcore(tcz_import_tx *tx, uint32_t t, uint32_t k,
			  uint64_t r_left, uint64_t n, uint64_t r_right,
			  const float *data)
{
	uint64_t cnt;
	if (r_left > UINT32_MAX || n > UINT32_MAX || r_right > UINT32_MAX ||
	    __builtin_mul_overflow(r_left * n, r_right, &cnt) ||
	    cnt > SIZE_MAX / 4)
		return -EINVAL;
	tcz_wbuf w;
	tcz_wb_init(&w);
	tcz_wb_u32(&w, (uint32_t)r_left);
	tcz_wb_u32(&w, (uint32_t)n);
	tcz_wb_u32(&w, (uint32_t)r_right);
	tcz_wb_bytes(&w, data, (size_t)cnt * 4);
	int rc = tcz_rec_finish(&w);
	if (rc) {
		tcz_wb_free(&w);
		return rc;
	}
	unsigned char key[16];
	tcz__key_id_idx(key, tx->id, t);
	tcz_be32(key + 12, k);
	return add_item(tx, &tx->s->ttcores, key, w.p, w.len);
}

static int put_rec(MDB_txn *txn, MDB_dbi db, const void *key, size_t klen,
		   tcz_wbuf *w)
{
	MDB_val k = {klen, (void *)key}, d = {w->len, w->p};
	return tcz__mdb_err(mdb_put(txn, db, &k, &d, 0));
}

static int commit_fn(void *arg, MDB_txn *txn)
{
	void **a = arg;
	tcz_import_tx *tx = a[0];
	tcz_model *m = a[1];
	tcz_store *s = tx->s;
	MDB_val k = {strlen(tx->name), tx->name}, d;
	if (mdb_get(txn, s->models, &k, &d) == 0)
		return tcz__fail(-EEXIST, "model %s already exists", tx->name);
	int rc = write_items(tx, txn);
	tcz_wbuf w;
	for (uint32_t i = 0; i < m->n_tensors && rc == 0; i++) {
		unsigned char kb[12];
		tcz__key_id_idx(kb, m->id, i);
		tcz_wb_init(&w);
		rc = tcz__tensor_encode(&m->tensors[i], &w);
		if (rc == 0)
			rc = put_rec(txn, s->tensors, kb, 12, &w);
		tcz_wb_free(&w);
	}
	for (uint32_t i = 0; i < m->n_blobs && rc == 0; i++) {
		unsigned char kb[12];
		tcz__key_id_idx(kb, m->id, i);
		tcz_wb_init(&w);
		rc = tcz__blob_encode(&m->blobs[i], &w);
		if (rc == 0)
			rc = put_rec(txn, s->aux, kb, 12, &w);
		tcz_wb_free(&w);
	}
	if (rc == 0) {
		tcz_wb_init(&w);
		rc = tcz__model_encode(m, &w);
		if (rc == 0)
			rc = put_rec(txn, s->models, tx->name, strlen(tx->name),
				     &w);
		tcz_wb_free(&w);
	}
	/* the model is now referenced by its records: drop the markers */
	if (rc == 0)
		rc = tcz__del_prefix(txn, s->pending, tx->id);
	if (rc == 0) {
		unsigned char kb[8];
		tcz__key_id(kb, tx->id);
		MDB_val kv = {8, kb};
		rc = tcz__mdb_err(mdb_del(txn, s->imports, &kv, NULL));
	}
	if (rc == 0)
		rc = tcz__bump_generation(s, txn);
	return rc;
}

static void tx_free(tcz_import_tx *tx)
{
	drop_items(tx);
	free(tx->items);
	free(tx->name);
	free(tx);
}

int tcz_import_commit(tcz_import_tx *tx, tcz_model *m)
{
	if (strcmp(m->name, tx->name) != 0) {
		tcz_import_abort(tx);
		return -EINVAL;
	}
	m->id = tx->id;
	int rc = tcz__model_check(m);
	if (rc == 0) {
		void *a[2] = {tx, m};
		rc = tcz__write(tx->s, commit_fn, a);
	}
	if (rc) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s", tcz_store_errmsg());
		tcz_import_abort(tx);
		tcz__fail(rc, "%s", msg);
		return rc;
	}
	tx_free(tx);
	return 0;
}

static int owner_dead(const void *p, size_t n);

static int rollback_fn(void *arg, MDB_txn *txn)
{
	void **a = arg;
	tcz_store *s = a[0];
	uint64_t id = *(uint64_t *)a[1];
	int only_dead = a[2] != NULL;
	MDB_cursor *c;
	unsigned char k0[8];
	tcz__key_id(k0, id);
	/* judged again here, in the transaction that acts on it: the marker
	 * seen earlier may be gone (committed, or rolled back by another
	 * process), and its owner may have been mistaken for dead */
	MDB_val mk = {8, k0}, md;
	int rc = mdb_get(txn, s->imports, &mk, &md);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return tcz__mdb_err(rc);
	if (only_dead && !owner_dead(md.mv_data, md.mv_size))
		return 0;
	rc = mdb_cursor_open(txn, s->pending, &c);
	if (rc)
		return tcz__mdb_err(rc);
	MDB_val k = {8, k0}, d;
	int err = 0; /* a negative errno; rc stays LMDB's */
	for (rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE); rc == 0 && !err;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 12 || memcmp(k.mv_data, k0, 8) != 0)
			break;
		tcz_rbuf r;
		/* a damaged marker cannot be trusted: its chunks stay (verify
		 * reports them as unreferenced) */
		if (tcz_rec_open(&r, d.mv_data, d.mv_size) ||
		    r.len % TCZ_KEY_LEN)
			continue;
		for (size_t off = 0; off < r.len && !err; off += TCZ_KEY_LEN)
			err = tcz__decref(s, txn, r.p + off);
	}
	mdb_cursor_close(c);
	if (err)
		return err;
	if (rc && rc != MDB_NOTFOUND)
		return tcz__mdb_err(rc);
	if ((rc = tcz__del_prefix(txn, s->pending, id)) ||
	    (rc = tcz__del_prefix(txn, s->ttcores, id)))
		return rc;
	k = (MDB_val){8, k0};
	rc = mdb_del(txn, s->imports, &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : tcz__mdb_err(rc);
}

static int rollback(tcz_store *s, uint64_t id, int only_dead)
{
	void *a[3] = {s, &id, only_dead ? s : NULL};
	return tcz__write(s, rollback_fn, a);
}

void tcz_import_abort(tcz_import_tx *tx)
{
	if (!tx)
		return;
	drop_items(tx);
	rollback(tx->s, tx->id, 0); /* on failure, recovery retries later */
	tx_free(tx);
}

/* ---- re-encoding ---------------------------------------------------- */

int tcz_reencode_begin(tcz_store *s, const tcz_model *m, tcz_import_tx **out)
{
	if (s->flags & TCZ_STORE_RDONLY)
		return -EROFS;
	int rc = tcz_store_recover(s, NULL);
	if (rc)
		return rc;
	tcz_import_tx *tx = calloc(1, sizeof *tx);
	if (!tx || !(tx->name = strdup(m->name))) {
		free(tx);
		return -ENOMEM;
	}
	tx->s = s;
	tx->reencode = 1;
	tx->base_rev = m->rev;
	struct begin_arg a = {tx};
	rc = tcz__write(s, begin_fn, &a);
	if (rc) {
		free(tx->name);
		free(tx);
		return rc;
	}
	*out = tx;
	return 0;
}

typedef struct swap_arg {
	tcz_import_tx *tx;
	uint32_t n;
	const uint32_t *idx;
	const tcz_tensor *tensors;
	int bytes_changed;
} swap_arg;

static int swap_fn(void *arg, MDB_txn *txn)
{
	swap_arg *a = arg;
	tcz_import_tx *tx = a->tx;
	tcz_store *s = tx->s;
	tcz_model *m = NULL;
	int rc = tcz__load_model(s, txn, tx->name, &m, NULL);
	if (rc == -ENOENT)
		return tcz__fail(-ENOENT, "model %s was removed meanwhile",
				 tx->name);
	if (rc)
		return rc;
	if (m->rev != tx->base_rev) {
		tcz_model_free(m);
		return tcz__fail(-EAGAIN, "model %s changed meanwhile", tx->name);
	}
	rc = write_items(tx, txn);
	/* the old chunks stay for readers of the old revision */
	size_t nold = 0;
	for (uint32_t i = 0; i < a->n; i++)
		nold += a->idx[i] < m->n_tensors ? m->tensors[a->idx[i]].n_chunks : 0;
	unsigned char(*old)[TCZ_KEY_LEN] = malloc(nold ? nold * TCZ_KEY_LEN : 1);
	size_t at = 0;
	if (!old && rc == 0)
		rc = -ENOMEM;
	int lossy = 0;
	for (uint32_t i = 0; rc == 0 && i < a->n; i++) {
		uint32_t t = a->idx[i];
		if (t >= m->n_tensors) {
			rc = -EINVAL;
			break;
		}
		tcz_tensor *ot = &m->tensors[t];
		memcpy(old + at, ot->chunks, (size_t)ot->n_chunks * TCZ_KEY_LEN);
		at += ot->n_chunks;
		m->stored_bytes += a->tensors[i].stored_bytes;
		m->stored_bytes -= ot->stored_bytes < m->stored_bytes
					   ? ot->stored_bytes
					   : m->stored_bytes;
		tcz_wbuf w;
		tcz_wb_init(&w);
		rc = tcz__tensor_encode(&a->tensors[i], &w);
		unsigned char kb[12];
		tcz__key_id_idx(kb, m->id, t);
		MDB_val kv = {12, kb}, dv = {w.len, w.p};
		if (rc == 0)
			rc = tcz__mdb_err(mdb_put(txn, s->tensors, &kv, &dv, 0));
		tcz_wb_free(&w);
	}
	if (rc == 0)
		rc = tcz__drop(s, txn, tx->base_rev,
			       (const unsigned char(*)[TCZ_KEY_LEN])old, at, 0);
	free(old);
	/* the model record: a new revision, new bytes identity if the
	 * served values changed */
	for (uint32_t t = 0; rc == 0 && t < m->n_tensors; t++) {
		tcz_codec c = m->tensors[t].codec;
		for (uint32_t i = 0; i < a->n; i++)
			if (a->idx[i] == t)
				c = a->tensors[i].codec;
		lossy |= !tcz_codec_exact(c);
	}
	if (rc == 0) {
		m->rev = tx->id;
		if (a->bytes_changed)
			m->iid = tx->id;
		if (lossy)
			m->flags |= TCZ_MODEL_LOSSY;
		tcz_wbuf w;
		tcz_wb_init(&w);
		rc = tcz__model_encode(m, &w);
		MDB_val k = {strlen(tx->name), tx->name}, dv = {w.len, w.p};
		if (rc == 0)
			rc = tcz__mdb_err(mdb_put(txn, s->models, &k, &dv, 0));
		tcz_wb_free(&w);
	}
	/* the new chunks are referenced by the records now */
	if (rc == 0)
		rc = tcz__del_prefix(txn, s->pending, tx->id);
	if (rc == 0) {
		unsigned char kb[8];
		tcz__key_id(kb, tx->id);
		MDB_val kv = {8, kb};
		rc = tcz__mdb_err(mdb_del(txn, s->imports, &kv, NULL));
	}
	if (rc == 0)
		rc = tcz__bump_generation(s, txn);
	tcz_model_free(m);
	return rc;
}

int tcz_reencode_commit(tcz_import_tx *tx, uint32_t n, const uint32_t *idx,
			const tcz_tensor *tensors, int bytes_changed)
{
	swap_arg a = {tx, n, idx, tensors, bytes_changed};
	int rc = tcz__write(tx->s, swap_fn, &a);
	if (rc) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s", tcz_store_errmsg());
		tcz_import_abort(tx);
		tcz__fail(rc, "%s", msg);
		return rc;
	}
	tcz_store *s = tx->s;
	tx_free(tx);
	tcz__collect(s, NULL); /* the old chunks, unless somebody reads them */
	return 0;
}

typedef struct policy_arg {
	tcz_store *s;
	const char *name;
	tcz_policy p;
	double max_error;
} policy_arg;

static int policy_fn(void *arg, MDB_txn *txn)
{
	policy_arg *a = arg;
	tcz_store *s = a->s;
	MDB_val k = {strlen(a->name), (void *)a->name}, d;
	int rc = mdb_get(txn, s->models, &k, &d);
	if (rc)
		return rc == MDB_NOTFOUND
			       ? tcz__fail(-ENOENT, "no model named %s", a->name)
			       : tcz__mdb_err(rc);
	tcz_model m = {0};
	uint64_t rev;
	if ((rc = tcz__model_decode(d.mv_data, d.mv_size, &m)) == 0 &&
	    (rc = tcz__meta_get(s, txn, "next_id", &rev)) == 0 &&
	    (rc = tcz__meta_put(s, txn, "next_id", rev + 1)) == 0) {
		m.policy = a->p;
		m.policy_max_error = a->max_error;
		m.rev = rev; /* nothing dropped: the old revision pins nothing */
		tcz_wbuf w;
		tcz_wb_init(&w);
		rc = tcz__model_encode(&m, &w);
		MDB_val dv = {w.len, w.p};
		if (rc == 0)
			rc = tcz__mdb_err(mdb_put(txn, s->models, &k, &dv, 0));
		tcz_wb_free(&w);
	}
	if (rc == 0)
		rc = tcz__bump_generation(s, txn);
	tcz__model_record_clear(&m);
	return rc;
}

int tcz_store_set_policy(tcz_store *s, const char *name, tcz_policy p,
			 double max_error)
{
	if ((p != TCZ_POLICY_COST && p != TCZ_POLICY_PRECISION) ||
	    !(max_error >= 0 && max_error < 1e6))
		return -EINVAL;
	policy_arg a = {s, name, p, max_error};
	return tcz__write(s, policy_fn, &a);
}

/* True when the import record describes a process that is gone. */
static int owner_dead(const void *p, size_t n)
{
	tcz_rbuf r;
	if (tcz_rec_open(&r, p, n))
		return 1;
	uint64_t pid = tcz_rb_u64(&r), start = tcz_rb_u64(&r);
	char *boot = tcz_rb_strdup(&r);
	if (r.err) {
		free(boot);
		return 1;
	}
	char now[64];
	boot_id(now);
	int dead = strcmp(boot, now) != 0;
	free(boot);
	if (dead)
		return 1;
	uint64_t cur;
	if (proc_start((long)pid, &cur) != 0)
		return 1; /* no such process */
	return cur != start; /* the pid was reused */
}

int tcz_store_recover(tcz_store *s, unsigned *count)
{
	if (count)
		*count = 0;
	if (s->flags & TCZ_STORE_RDONLY)
		return -EROFS;
	MDB_txn *txn = NULL;
	int rc = tcz__rtxn_begin(s, &txn);
	if (rc)
		return rc;
	uint64_t dead[64];
	unsigned nd = 0;
	MDB_cursor *c;
	if ((rc = mdb_cursor_open(txn, s->imports, &c)) == 0) {
		MDB_val k, d;
		for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0 && nd < 64;
		     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT))
			if (k.mv_size == 8 && owner_dead(d.mv_data, d.mv_size))
				dead[nd++] = tcz_get_be64(k.mv_data);
		mdb_cursor_close(c);
	}
	tcz__rtxn_end(s, txn, 0);
	if (rc && rc != MDB_NOTFOUND)
		return tcz__mdb_err(rc);
	for (unsigned i = 0; i < nd; i++) {
		if ((rc = rollback(s, dead[i], 1)) != 0)
			return rc;
		if (count)
			(*count)++;
	}
	/* what removals left for readers that have gone since */
	return tcz__collect(s, NULL);
}

/* ---- removal ------------------------------------------------------------ */

/* Collects the chunk keys of a model's tensors and blobs. */
static int model_keys(const tcz_model *m, unsigned char (**out)[TCZ_KEY_LEN],
		      size_t *n)
{
	size_t total = 0;
	for (uint32_t t = 0; t < m->n_tensors; t++)
		total += m->tensors[t].n_chunks;
	for (uint32_t b = 0; b < m->n_blobs; b++)
		total += m->blobs[b].n_chunks;
	unsigned char(*k)[TCZ_KEY_LEN] = malloc(total ? total * TCZ_KEY_LEN : 1);
	if (!k)
		return -ENOMEM;
	size_t at = 0;
	for (uint32_t t = 0; t < m->n_tensors; t++) {
		memcpy(k + at, m->tensors[t].chunks,
		       (size_t)m->tensors[t].n_chunks * TCZ_KEY_LEN);
		at += m->tensors[t].n_chunks;
	}
	for (uint32_t b = 0; b < m->n_blobs; b++) {
		memcpy(k + at, m->blobs[b].chunks,
		       (size_t)m->blobs[b].n_chunks * TCZ_KEY_LEN);
		at += m->blobs[b].n_chunks;
	}
	*out = k;
	*n = total;
	return 0;
}

/* The chunk keys of every tensor and blob record under id that still
 * decodes (a model with a damaged record: what can be trusted). */
static int salvage_keys(tcz_store *s, MDB_txn *txn, uint64_t id,
			unsigned char (**out)[TCZ_KEY_LEN], size_t *n)
{
	*out = NULL;
	*n = 0;
	size_t cap = 0;
	MDB_dbi dbs[2] = {s->tensors, s->aux};
	for (int k = 0; k < 2; k++) {
		MDB_cursor *c;
		int rc = mdb_cursor_open(txn, dbs[k], &c);
		if (rc)
			return tcz__mdb_err(rc);
		unsigned char k0[8];
		tcz__key_id(k0, id);
		MDB_val kv = {8, k0}, d;
		for (rc = mdb_cursor_get(c, &kv, &d, MDB_SET_RANGE);
		     rc == 0 && kv.mv_size == 12 && tcz_get_be64(kv.mv_data) == id;
		     rc = mdb_cursor_get(c, &kv, &d, MDB_NEXT)) {
			tcz_tensor t;
			tcz_blob b;
			uint32_t cnt;
			unsigned char(*keys)[TCZ_KEY_LEN];
			if (k == 0 ? tcz__tensor_decode(d.mv_data, d.mv_size, &t)
				   : tcz__blob_decode(d.mv_data, d.mv_size, &b)) {
				if (k == 0)
					tcz__tensor_clear(&t);
				else
					tcz__blob_clear(&b);
				continue; /* damaged: its chunks stay, verify says */
			}
			cnt = k == 0 ? t.n_chunks : b.n_chunks;
			keys = k == 0 ? t.chunks : b.chunks;
			while (*n + cnt > cap) {
				size_t nc = cap ? cap * 2 : 256;
				void *p = realloc(*out, nc * TCZ_KEY_LEN);
				if (!p) {
					mdb_cursor_close(c);
					return -ENOMEM;
				}
				*out = p;
				cap = nc;
			}
			memcpy(*out + *n, keys, (size_t)cnt * TCZ_KEY_LEN);
			*n += cnt;
			if (k == 0)
				tcz__tensor_clear(&t);
			else
				tcz__blob_clear(&b);
		}
		mdb_cursor_close(c);
		if (rc && rc != MDB_NOTFOUND)
			return tcz__mdb_err(rc);
	}
	return 0;
}

static int remove_fn(void *arg, MDB_txn *txn)
{
	void **a = arg;
	tcz_store *s = a[0];
	const char *name = a[1];
	MDB_val k = {strlen(name), (void *)name}, d;
	int rc = mdb_get(txn, s->models, &k, &d);
	if (rc)
		return rc == MDB_NOTFOUND
			       ? tcz__fail(-ENOENT, "no model named %s", name)
			       : tcz__mdb_err(rc);
	uint64_t id, rev;
	if (tcz__model_record_rev(d.mv_data, d.mv_size, &id, &rev) != 0) {
		/* The model record itself is damaged: its id cannot be
		 * trusted (a flipped byte may name another model), so only
		 * the name goes; what was under the real id is left for
		 * verify to report, never someone else's records. */
		rc = tcz__mdb_err(mdb_del(txn, s->models, &k, NULL));
		if (rc == 0)
			rc = tcz__bump_generation(s, txn);
		return rc;
	}
	tcz_model *m = NULL;
	unsigned char(*keys)[TCZ_KEY_LEN] = NULL;
	size_t n = 0;
	uint64_t iid = 0;
	rc = tcz__load_model(s, txn, name, &m, NULL);
	if (rc == 0) {
		iid = m->iid;
		rc = model_keys(m, &keys, &n);
	}
	else if (rc == -EIO || rc == -EBADMSG)
		/* a damaged tensor or blob record: the others' references
		 * still go */
		rc = salvage_keys(s, txn, id, &keys, &n);
	tcz_model_free(m);
	/* readers that have the model open keep reading it: its references
	 * go when the last reader of this revision is gone; the TT cores,
	 * which every revision shares, when the last reader of any is */
	if (rc == 0)
		rc = tcz__drop(s, txn, rev, (const unsigned char(*)[TCZ_KEY_LEN])keys,
			       n, 0);
	free(keys);
	if (rc == 0)
		rc = tcz__drop(s, txn, id, NULL, 0, 1);
	if (rc)
		return rc;
	if ((rc = tcz__del_prefix(txn, s->tensors, id)) ||
	    (rc = tcz__del_prefix(txn, s->aux, id)) ||
	    (rc = tcz__del_prefix(txn, s->stats, id)))
		return rc;
	/* its device images' checksums (keyed by its bytes identity) */
	if (s->has_asic && iid &&
	    (rc = tcz__del_prefix(txn, s->asicsums, iid)))
		return rc;
	k = (MDB_val){strlen(name), (void *)name};
	rc = tcz__mdb_err(mdb_del(txn, s->models, &k, NULL));
	if (rc == 0)
		rc = tcz__bump_generation(s, txn);
	return rc;
}

int tcz_store_remove(tcz_store *s, const char *name)
{
	if (s->flags & TCZ_STORE_RDONLY)
		return -EROFS;
	int rc = tcz_store_recover(s, NULL);
	if (rc)
		return rc;
	void *a[2] = {s, (void *)name};
	rc = tcz__write(s, remove_fn, a);
	if (rc == 0)
		tcz__collect(s, NULL); /* now, unless somebody reads it */
	return rc;
}
