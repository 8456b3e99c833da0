/* tcz_store_verify: decode everything, check checksums and counts. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"

/* Open-addressing set of chunk keys with a count each. */
typedef struct keyset {
	unsigned char (*keys)[TCZ_KEY_LEN];
	uint64_t *counts;
	size_t cap, n;
} keyset;

static uint64_t key_hash(const unsigned char *k)
{
	uint64_t h;
	memcpy(&h, k, 8); /* keys are already uniform hashes */
	return h;
}

static int ks_grow(keyset *ks)
{
	size_t cap = ks->cap ? ks->cap * 2 : 1024;
	keyset n = {calloc(cap, TCZ_KEY_LEN), calloc(cap, sizeof(uint64_t)),
		    cap, 0};
	if (!n.keys || !n.counts) {
		free(n.keys);
		free(n.counts);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ks->cap; i++) {
		if (!ks->counts[i])
			continue;
		size_t j = key_hash(ks->keys[i]) & (cap - 1);
		while (n.counts[j])
			j = (j + 1) & (cap - 1);
		memcpy(n.keys[j], ks->keys[i], TCZ_KEY_LEN);
		n.counts[j] = ks->counts[i];
		n.n++;
	}
	free(ks->keys);
	free(ks->counts);
	*ks = n;
	return 0;
}

static uint64_t *ks_slot(keyset *ks, const unsigned char *k, int insert)
{
	if (insert && (ks->n + 1) * 2 > ks->cap && ks_grow(ks))
		return NULL;
	if (!ks->cap)
		return NULL;
	size_t j = key_hash(k) & (ks->cap - 1);
	while (ks->counts[j]) {
		if (memcmp(ks->keys[j], k, TCZ_KEY_LEN) == 0)
			return &ks->counts[j];
		j = (j + 1) & (ks->cap - 1);
	}
	if (!insert)
		return NULL;
	memcpy(ks->keys[j], k, TCZ_KEY_LEN);
	ks->n++;
	return &ks->counts[j];
}

static int ks_add(keyset *ks, const unsigned char *k)
{
	uint64_t *c = ks_slot(ks, k, 1);
	if (!c)
		return -ENOMEM;
	(*c)++;
	return 0;
}

typedef struct vctx {
	tcz_verify_cb cb;
	void *ud;
	tcz_verify_report *rep;
} vctx;

static void report(vctx *v, const char *model, const char *what,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void report(vctx *v, const char *model, const char *what,
		   const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	v->rep->bad++;
	if (v->cb)
		v->cb(v->ud, model, what, msg);
}

static const char *why(int rc)
{
	switch (rc) {
	case -EIO:
		return "checksum mismatch";
	case -EBADMSG:
		return "does not decode";
	case -ENOENT:
		return "missing";
	default:
		return strerror(-rc);
	}
}

static void key_hex(const unsigned char *k, char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", k[i]);
}

static int verify_model(vctx *v, tcz_snap *sn, tcz_reader *r,
			const char *name, keyset *refs)
{
	tcz_model *m;
	int rc = tcz_snap_model(sn, name, &m);
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		report(v, name, "model record", "%s", why(rc));
		return 0;
	}
	v->rep->models++;
	unsigned char *buf = malloc(TCZ_CHUNK_MAX);
	if (!buf) {
		tcz_model_free(m);
		return -ENOMEM;
	}
	char what[600];
	for (uint32_t t = 0; t < m->n_tensors; t++) {
		const tcz_tensor *tn = &m->tensors[t];
		uint32_t nc = tcz_tensor_chunk_count(tn);
		v->rep->tensors++;
		for (uint32_t c = 0; c < nc; c++) {
			rc = tcz_read_tensor_chunk(r, sn, m, t, c, buf);
			if (rc == -ENOMEM)
				goto out;
			if (rc) {
				if (tn->codec == TCZ_CODEC_TT)
					snprintf(what, sizeof what,
						 "tensor %s (tt cores)", tn->name);
				else
					snprintf(what, sizeof what,
						 "tensor %s chunk %u", tn->name, c);
				report(v, name, what, "%s", why(rc));
				if (tn->codec == TCZ_CODEC_TT)
					break;
				continue;
			}
			v->rep->chunks++;
			v->rep->bytes += tcz_tensor_chunk_len(tn, c);
		}
		for (uint32_t c = 0; refs && c < tn->n_chunks; c++)
			if ((rc = ks_add(refs, tn->chunks[c])))
				goto out;
	}
	for (uint32_t b = 0; b < m->n_blobs; b++) {
		const tcz_blob *bl = &m->blobs[b];
		for (uint32_t c = 0; c < bl->n_chunks; c++) {
			rc = tcz_read_blob_chunk(r, sn, m, b, c, buf);
			if (rc == -ENOMEM)
				goto out;
			if (rc) {
				/* name the file the blob belongs to */
				const char *fname = "?";
				for (uint32_t f = 0; f < m->n_files; f++)
					for (uint32_t e = 0;
					     e < m->files[f].n_extents; e++)
						if (m->files[f].extents[e].kind ==
							    TCZ_EXT_BLOB &&
						    m->files[f].extents[e].index == b)
							fname = m->files[f].name;
				snprintf(what, sizeof what, "file %s chunk %u",
					 fname, c);
				report(v, name, what, "%s", why(rc));
				continue;
			}
			v->rep->chunks++;
		}
		for (uint32_t c = 0; refs && c < bl->n_chunks; c++)
			if ((rc = ks_add(refs, bl->chunks[c])))
				goto out;
	}
	rc = 0;
out:
	free(buf);
	tcz_model_free(m);
	return rc;
}

/* Compares the refs table and the chunks table with what records hold. */
static int verify_refs(vctx *v, tcz_snap *sn, keyset *refs)
{
	tcz_store *s = sn->s;
	MDB_cursor *c;
	MDB_val k, d;
	char hex[33];
	int rc;
	/* references held by imports in progress count too */
	if ((rc = mdb_cursor_open(sn->txn, s->pending, &c)))
		return tcz__mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		tcz_rbuf r;
		if (tcz_rec_open(&r, d.mv_data, d.mv_size) || r.len % 16)
			continue;
		for (size_t off = 0; off < r.len; off += 16)
			if (ks_add(refs, r.p + off)) {
				mdb_cursor_close(c);
				return -ENOMEM;
			}
	}
	mdb_cursor_close(c);

	if ((rc = mdb_cursor_open(sn->txn, s->refs, &c)))
		return tcz__mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size != 16) {
			report(v, "-", "refs table", "key of %zu bytes",
			       k.mv_size);
			continue;
		}
		key_hex(k.mv_data, hex);
		tcz_rbuf r;
		uint64_t have = 0;
		if (tcz_rec_open(&r, d.mv_data, d.mv_size) == 0)
			have = tcz_rb_u64(&r);
		uint64_t *want = ks_slot(refs, k.mv_data, 0);
		uint64_t w = want ? *want : 0;
		if (have != w)
			report(v, "-", hex,
			       "reference count %llu, referenced %llu times",
			       (unsigned long long)have, (unsigned long long)w);
	}
	mdb_cursor_close(c);

	if ((rc = mdb_cursor_open(sn->txn, s->chunks, &c)))
		return tcz__mdb_err(rc);
	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		if (k.mv_size == 16 && !ks_slot(refs, k.mv_data, 0)) {
			key_hex(k.mv_data, hex);
			report(v, "-", hex, "chunk referenced by no model");
		}
	}
	mdb_cursor_close(c);
	return 0;
}

int tcz_store_verify(tcz_store *s, const char *name, tcz_verify_cb cb,
		     void *ud, tcz_verify_report *rep)
{
	memset(rep, 0, sizeof *rep);
	vctx v = {cb, ud, rep};
	tcz_snap *sn = NULL;
	tcz_reader *r = NULL;
	char **names = NULL;
	size_t n = 0;
	keyset refs = {0};
	int rc = tcz_snap_begin(s, &sn);
	if (rc == 0)
		rc = tcz_reader_create(&r);
	if (rc)
		goto out;
	if (name) {
		uint64_t id;
		if ((rc = tcz_snap_model_id(sn, name, &id)) == -ENOENT) {
			tcz__fail(rc, "no model named %s", name);
			goto out;
		}
		rc = verify_model(&v, sn, r, name, NULL);
	} else {
		rc = tcz_snap_list(sn, &names, &n);
		for (size_t i = 0; i < n && rc == 0; i++)
			rc = verify_model(&v, sn, r, names[i], &refs);
		if (rc == 0)
			rc = verify_refs(&v, sn, &refs);
	}
	if (rc == 0 && rep->bad)
		rc = -EIO;
out:
	free(refs.keys);
	free(refs.counts);
	tcz_names_free(names, n);
	tcz_reader_free(r);
	tcz_snap_end(sn);
	return rc;
}
