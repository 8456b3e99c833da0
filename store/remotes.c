/* Remotes without the network: URL parsing, the `remotes` table, the
 * manifest, index and lease formats, and the local cache of remote
 * chunks (rcache, rcmeta, rclru). Built with or without librados. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "store/grow.h"
#include "store/reader.h"
#include "store/remote_int.h"

/* ---- small helpers -------------------------------------------------------- */

uint64_t tcz__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tcz__hex(const unsigned char *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = 0;
}

void tcz_remote_chunk_oid(const unsigned char sha[TCZ_SHA256_LEN],
			  char out[TCZ_REMOTE_OID_MAX])
{
	out[0] = 'c';
	out[1] = '.';
	tcz__hex(sha, TCZ_SHA256_LEN, out + 2);
}

size_t tcz__stamp(char out[40], uint64_t ms, uint64_t nonce, int with_nonce)
{
	int n = with_nonce ? snprintf(out, 40, "%016llx.%016llx",
				      (unsigned long long)ms,
				      (unsigned long long)nonce)
			   : snprintf(out, 40, "%016llx", (unsigned long long)ms);
	return (size_t)n;
}

int tcz__stamp_ms(const char *p, size_t n, uint64_t *ms)
{
	uint64_t v = 0;
	if (n < 16)
		return -EINVAL;
	for (size_t i = 0; i < 16; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
					       : -1;
		if (d < 0)
			return -EINVAL;
		v = v << 4 | (uint64_t)d;
	}
	if (n > 16 && p[16] != '.')
		return -EINVAL;
	*ms = v;
	return 0;
}

/* ---- URLs ------------------------------------------------------------------- */

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int tcz_remote_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > TCZ_REMOTE_NAME_MAX || name[0] == '.' ||
	    name[0] == '_' || name[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!name_char(name[i]))
			return 0;
	return 1;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* %XX-decodes p[n] into out[cap]; control characters and NUL are
 * refused (they cannot be meant, and would cut the C strings). */
static int decode_part(const char *p, size_t n, char *out, size_t cap,
		       const char *what, char *err, size_t errlen)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)p[i];
		if (c == '%') {
			int a = i + 2 < n ? hexval(p[i + 1]) : -1;
			int b = i + 2 < n ? hexval(p[i + 2]) : -1;
			if (a < 0 || b < 0)
				return tcz__errf(-EINVAL, err, errlen,
						 "remote URL: malformed %%XX in %s",
						 what);
			c = a * 16 + b;
			i += 2;
		}
		if (c < 0x20 || c == 0x7f)
			return tcz__errf(-EINVAL, err, errlen,
					 "remote URL: a control character in %s",
					 what);
		if (o + 1 >= cap)
			return tcz__errf(-EINVAL, err, errlen,
					 "remote URL: %s is too long (at most "
					 "%zu bytes)",
					 what, cap - 1);
		out[o++] = (char)c;
	}
	out[o] = 0;
	return 0;
}

static int all_name_chars(const char *s)
{
	for (; *s; s++)
		if (!name_char(*s))
			return 0;
	return 1;
}

int tcz_remote_url_parse(const char *url, tcz_remote_url *u, char *err,
			 size_t errlen)
{
	static const char scheme[] = "rados://";
	memset(u, 0, sizeof *u);
	if (strncmp(url, scheme, sizeof scheme - 1) != 0)
		return tcz__errf(-EINVAL, err, errlen,
				 "remote URL '%s': only rados://POOL[?conf=PATH"
				 "&id=CLIENT&namespace=NS] is supported",
				 url);
	const char *p = url + sizeof scheme - 1;
	const char *q = strchr(p, '?');
	size_t plen = q ? (size_t)(q - p) : strlen(p);
	if (plen && p[plen - 1] == '/')
		plen--; /* rados://pool/ reads as rados://pool */
	int rc = decode_part(p, plen, u->pool, sizeof u->pool, "the pool", err,
			     errlen);
	if (rc)
		return rc;
	if (!u->pool[0])
		return tcz__errf(-EINVAL, err, errlen,
				 "remote URL '%s': no pool name", url);
	if (!all_name_chars(u->pool))
		return tcz__errf(-EINVAL, err, errlen,
				 "remote URL '%s': pool '%s' may hold only "
				 "letters, digits, '.', '_' and '-'",
				 url, u->pool);
	int seen_conf = 0, seen_id = 0, seen_ns = 0;
	/* the id as given: "client." may precede the longest id */
	char id[sizeof u->id + 7] = "";
	while (q && *q) {
		const char *k = q + 1;
		const char *end = strchr(k, '&');
		size_t n = end ? (size_t)(end - k) : strlen(k);
		q = end;
		if (n == 0)
			continue; /* "?&" or a trailing '&' */
		const char *eq = memchr(k, '=', n);
		if (!eq)
			return tcz__errf(-EINVAL, err, errlen,
					 "remote URL: parameter '%.*s' has no "
					 "value (NAME=VALUE)",
					 (int)n, k);
		size_t kl = (size_t)(eq - k), vl = n - kl - 1;
		const char *v = eq + 1;
		char *dst;
		size_t cap;
		int *seen;
		const char *what;
		if (kl == 4 && !memcmp(k, "conf", 4)) {
			dst = u->conf, cap = sizeof u->conf, seen = &seen_conf;
			what = "conf";
		} else if (kl == 2 && !memcmp(k, "id", 2)) {
			dst = id, cap = sizeof id, seen = &seen_id;
			what = "id";
		} else if (kl == 9 && !memcmp(k, "namespace", 9)) {
			dst = u->ns, cap = sizeof u->ns, seen = &seen_ns;
			what = "namespace";
		} else {
			return tcz__errf(-EINVAL, err, errlen,
					 "remote URL: unknown parameter '%.*s' "
					 "(conf, id, namespace)",
					 (int)kl, k);
		}
		if (*seen)
			return tcz__errf(-EINVAL, err, errlen,
					 "remote URL: '%s' given twice", what);
		*seen = 1;
		if ((rc = decode_part(v, vl, dst, cap, what, err, errlen)))
			return rc;
		if (!dst[0])
			return tcz__errf(-EINVAL, err, errlen,
					 "remote URL: '%s' is empty", what);
	}
	if (id[0] && !all_name_chars(id))
		return tcz__errf(-EINVAL, err, errlen,
				 "remote URL: client id '%s' may hold only "
				 "letters, digits, '.', '_' and '-'",
				 id);
	const char *bare = strlen(id) >= 7 && !memcmp(id, "client.", 7) ? id + 7
								       : id;
	if (seen_id && !bare[0])
		return tcz__errf(-EINVAL, err, errlen,
				 "remote URL: client id is empty");
	if (strlen(bare) >= sizeof u->id)
		return tcz__errf(-EINVAL, err, errlen,
				 "remote URL: id is too long (at most %zu "
				 "bytes)",
				 sizeof u->id - 1);
	memcpy(u->id, bare, strlen(bare) + 1);
	return 0;
}

/* ---- the remotes table ----------------------------------------------------- */

typedef struct rdef_arg {
	tcz_store *s;
	const char *name, *url;
} rdef_arg;

static int remote_add_fn(void *arg, MDB_txn *txn)
{
	rdef_arg *a = arg;
	MDB_val k = {strlen(a->name), (void *)a->name}, v;
	int rc = mdb_get(txn, a->s->remotes, &k, &v);
	if (rc == 0)
		return tcz__fail(-EEXIST, "a remote named %s exists", a->name);
	if (rc != MDB_NOTFOUND)
		return tcz__mdb_err(rc);
	tcz_wbuf w;
	tcz_wb_init(&w);
	tcz_wb_u32(&w, TCZ__REMOTE_MAGIC);
	tcz_wb_str(&w, a->url);
	rc = tcz_rec_finish(&w);
	if (rc == 0) {
		v = (MDB_val){w.len, w.p};
		rc = tcz__mdb_err(mdb_put(txn, a->s->remotes, &k, &v, 0));
	}
	tcz_wb_free(&w);
	return rc;
}

static int remote_rm_fn(void *arg, MDB_txn *txn)
{
	rdef_arg *a = arg;
	MDB_val k = {strlen(a->name), (void *)a->name};
	int rc = mdb_del(txn, a->s->remotes, &k, NULL);
	if (rc == MDB_NOTFOUND)
		return tcz__fail(-ENOENT, "no remote named %s", a->name);
	return tcz__mdb_err(rc);
}

int tcz_store_remote_add(tcz_store *s, const char *name, const char *url)
{
	char err[512];
	tcz_remote_url u;
	if (!tcz_remote_name_valid(name))
		return tcz__fail(-EINVAL,
				 "invalid remote name '%s' (letters, digits, "
				 "'.', '_', '-'; at most %u)",
				 name, TCZ_REMOTE_NAME_MAX);
	if (tcz_remote_url_parse(url, &u, err, sizeof err))
		return tcz__fail(-EINVAL, "%s", err);
	if ((s->flags & TCZ_STORE_RDONLY) || !s->has_remote)
		return tcz__fail(-EROFS, "store %s is open read-only", s->dir);
	rdef_arg a = {s, name, url};
	return tcz__write(s, remote_add_fn, &a);
}

int tcz_store_remote_rm(tcz_store *s, const char *name)
{
	/* an invalid name is no remote's (and LMDB refuses an empty key or
	 * one above its key size with MDB_BAD_VALSIZE, which reads as -EIO) */
	if (!s->has_remote || !tcz_remote_name_valid(name))
		return tcz__fail(-ENOENT, "no remote named %s", name);
	rdef_arg a = {s, name, NULL};
	return tcz__write(s, remote_rm_fn, &a);
}

void tcz_remote_defs_free(tcz_remote_def *d, size_t n)
{
	for (size_t i = 0; d && i < n; i++) {
		free(d[i].name);
		free(d[i].url);
	}
	free(d);
}

static char *decode_def(tcz_store *s, const MDB_val *k, const MDB_val *v)
{
	tcz_rbuf r;
	if (tcz_rec_open(&r, v->mv_data, v->mv_size) ||
	    tcz_rb_u32(&r) != TCZ__REMOTE_MAGIC) {
		tcz__fail(-EIO, "store %s: the record of remote '%.*s' is "
				"damaged",
			  s->dir, (int)k->mv_size, (const char *)k->mv_data);
		return NULL;
	}
	char *url = tcz_rb_strdup(&r);
	if (!url || tcz_rb_end(&r)) {
		free(url);
		tcz__fail(-EIO, "store %s: the record of remote '%.*s' is "
				"malformed",
			  s->dir, (int)k->mv_size, (const char *)k->mv_data);
		return NULL;
	}
	return url;
}

int tcz_store_remotes(tcz_store *s, tcz_remote_def **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!s->has_remote)
		return 0;
	MDB_txn *txn = NULL;
	int rc = tcz__rtxn_begin(s, &txn);
	if (rc)
		return rc;
	MDB_cursor *c;
	tcz_remote_def *l = NULL;
	size_t cnt = 0, cap = 0;
	rc = tcz__mdb_err(mdb_cursor_open(txn, s->remotes, &c));
	if (rc == 0) {
		MDB_val k, v;
		int e;
		for (e = mdb_cursor_get(c, &k, &v, MDB_FIRST); e == 0 && rc == 0;
		     e = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			if ((rc = tcz__grow(&l, &cap, cnt, sizeof *l, 4)))
				break;
			char *url = decode_def(s, &k, &v);
			char *nm = strndup(k.mv_data, k.mv_size);
			if (!url || !nm) {
				free(url);
				free(nm);
				rc = url ? -ENOMEM : -EIO;
				break;
			}
			l[cnt].name = nm;
			l[cnt].url = url;
			cnt++;
		}
		if (rc == 0 && e != MDB_NOTFOUND)
			rc = tcz__mdb_err(e);
		mdb_cursor_close(c);
	}
	tcz__rtxn_end(s, txn, 0);
	if (rc) {
		tcz_remote_defs_free(l, cnt);
		return rc;
	}
	*out = l;
	*n = cnt;
	return 0;
}

int tcz_store_remote_url(tcz_store *s, const char *name, char **url)
{
	*url = NULL;
	if (!s->has_remote || !tcz_remote_name_valid(name))
		return tcz__fail(-ENOENT, "no remote named %s", name);
	MDB_txn *txn = NULL;
	int rc = tcz__rtxn_begin(s, &txn);
	if (rc)
		return rc;
	MDB_val k = {strlen(name), (void *)name}, v;
	rc = mdb_get(txn, s->remotes, &k, &v);
	if (rc == MDB_NOTFOUND)
		rc = tcz__fail(-ENOENT, "no remote named %s (see tczfs remote "
					"ls)",
			       name);
	else if (rc)
		rc = tcz__mdb_err(rc);
	else if (!(*url = decode_def(s, &k, &v)))
		rc = -EIO;
	tcz__rtxn_end(s, txn, 0);
	return rc;
}

/* ---- manifests -------------------------------------------------------------- */

static int cmp_chunk(const void *a, const void *b)
{
	return memcmp(((const tcz__mchunk *)a)->key, ((const tcz__mchunk *)b)->key,
		      TCZ_KEY_LEN);
}

static int cmp_core(const void *a, const void *b)
{
	const tcz__mcore *x = a, *y = b;
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	return x->k < y->k ? -1 : x->k > y->k;
}

/* Sorts and removes duplicate keys (a chunk shared by two tensors). */
static uint32_t uniq_chunks(tcz__mchunk *c, uint32_t n)
{
	if (n == 0)
		return 0;
	qsort(c, n, sizeof *c, cmp_chunk);
	uint32_t o = 1;
	for (uint32_t i = 1; i < n; i++)
		if (memcmp(c[i].key, c[o - 1].key, TCZ_KEY_LEN))
			c[o++] = c[i];
	return o;
}

static void wb_rec(tcz_wbuf *w, tcz_wbuf *rec)
{
	tcz_wb_u32(w, (uint32_t)rec->len);
	tcz_wb_bytes(w, rec->p, rec->len);
}

int tcz__manifest_encode(const tcz_model *m, uint64_t push_time,
			 tcz__mchunk *chunks, uint32_t n_chunks,
			 tcz__mcore *cores, uint32_t n_cores, tcz_wbuf *w)
{
	tcz_wbuf rec;
	int rc = 0;
	n_chunks = uniq_chunks(chunks, n_chunks);
	if (n_cores)
		qsort(cores, n_cores, sizeof *cores, cmp_core);
	tcz_wb_init(w);
	tcz_wb_u32(w, TCZ__MANIFEST_MAGIC);
	tcz_wb_u32(w, 1);
	tcz_wb_str(w, m->name);
	tcz_wb_u64(w, push_time);
	tcz_wb_init(&rec);
	rc = tcz__model_encode(m, &rec);
	wb_rec(w, &rec);
	tcz_wb_free(&rec);
	tcz_wb_u32(w, m->n_tensors);
	for (uint32_t i = 0; i < m->n_tensors && rc == 0; i++) {
		tcz_wb_init(&rec);
		rc = tcz__tensor_encode(&m->tensors[i], &rec);
		wb_rec(w, &rec);
		tcz_wb_free(&rec);
	}
	tcz_wb_u32(w, m->n_blobs);
	for (uint32_t i = 0; i < m->n_blobs && rc == 0; i++) {
		tcz_wb_init(&rec);
		rc = tcz__blob_encode(&m->blobs[i], &rec);
		wb_rec(w, &rec);
		tcz_wb_free(&rec);
	}
	tcz_wb_u32(w, n_chunks);
	for (uint32_t i = 0; i < n_chunks; i++) {
		tcz_wb_bytes(w, chunks[i].key, TCZ_KEY_LEN);
		tcz_wb_bytes(w, chunks[i].sha, TCZ_SHA256_LEN);
		tcz_wb_u32(w, chunks[i].len);
	}
	tcz_wb_u32(w, n_cores);
	for (uint32_t i = 0; i < n_cores; i++) {
		tcz_wb_u32(w, cores[i].t);
		tcz_wb_u32(w, cores[i].k);
		tcz_wb_bytes(w, cores[i].sha, TCZ_SHA256_LEN);
		tcz_wb_u32(w, cores[i].len);
	}
	if (rc == 0)
		rc = tcz_rec_finish(w);
	if (rc)
		tcz_wb_free(w);
	return rc;
}

void tcz_rmodel_free(tcz_rmodel *m)
{
	if (!m)
		return;
	tcz_model_free(m->m);
	free(m->chunks);
	free(m->cores);
	free(m);
}

/* A u32-length-prefixed record of the manifest. */
static const void *rb_rec(tcz_rbuf *r, size_t *n)
{
	*n = tcz_rb_u32(r);
	return tcz_rb_bytes(r, *n);
}

static int bad_manifest(const char *name, const char *what)
{
	return tcz__fail(-EBADMSG, "remote model %s: its manifest is malformed "
				   "(%s)",
			 name, what);
}

int tcz__manifest_decode(const char *name, const void *p, size_t n,
			 uint64_t ident, tcz_rmodel **out)
{
	*out = NULL;
	tcz_rbuf r;
	if (tcz_rec_open(&r, p, n))
		return tcz__fail(-EIO, "remote model %s: its manifest is damaged "
				       "(checksum mismatch)",
				 name);
	if (tcz_rb_u32(&r) != TCZ__MANIFEST_MAGIC || tcz_rb_u32(&r) != 1)
		return bad_manifest(name, "not a version 1 manifest");
	tcz_rmodel *rm = calloc(1, sizeof *rm);
	tcz_model *m = calloc(1, sizeof *m);
	if (!rm || !m) {
		free(rm);
		free(m);
		return -ENOMEM;
	}
	rm->m = m;
	int rc = 0;
	const char *what = "header";
	m->name = tcz_rb_strdup(&r);
	rm->push_time = tcz_rb_u64(&r);
	size_t len;
	const void *rec = rb_rec(&r, &len);
	if (r.err || !m->name || strcmp(m->name, name) != 0) {
		rc = -EBADMSG;
		what = "model name";
		goto out;
	}
	what = "model record";
	if ((rc = tcz__model_decode(rec, len, m)) != 0)
		goto out;
	uint32_t nt = tcz_rb_u32(&r);
	if (r.err || nt != m->n_tensors || nt > (r.len - r.off) / 4) {
		rc = -EBADMSG;
		goto out;
	}
	m->tensors = calloc(nt ? nt : 1, sizeof *m->tensors);
	if (!m->tensors) {
		m->n_tensors = 0;
		rc = -ENOMEM;
		goto out;
	}
	what = "tensor record";
	for (uint32_t i = 0; i < nt && rc == 0; i++) {
		rec = rb_rec(&r, &len);
		rc = r.err ? -EBADMSG : tcz__tensor_decode(rec, len, &m->tensors[i]);
	}
	if (rc)
		goto out;
	what = "blob record";
	uint32_t nb = tcz_rb_u32(&r);
	if (r.err || nb != m->n_blobs || nb > (r.len - r.off) / 4) {
		m->n_blobs = 0;
		rc = -EBADMSG;
		goto out;
	}
	m->blobs = calloc(nb ? nb : 1, sizeof *m->blobs);
	if (!m->blobs) {
		m->n_blobs = 0;
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < nb && rc == 0; i++) {
		rec = rb_rec(&r, &len);
		rc = r.err ? -EBADMSG : tcz__blob_decode(rec, len, &m->blobs[i]);
	}
	if (rc)
		goto out;
	what = "file table";
	if ((rc = tcz__model_check(m)) != 0)
		goto out;
	what = "chunk table";
	uint32_t nc = tcz_rb_u32(&r);
	if (r.err || nc > (r.len - r.off) / (TCZ_KEY_LEN + TCZ_SHA256_LEN + 4)) {
		rc = -EBADMSG;
		goto out;
	}
	rm->chunks = calloc(nc ? nc : 1, sizeof *rm->chunks);
	if (!rm->chunks) {
		rc = -ENOMEM;
		goto out;
	}
	rm->n_chunks = nc;
	for (uint32_t i = 0; i < nc; i++) {
		tcz__mchunk *c = &rm->chunks[i];
		const void *k = tcz_rb_bytes(&r, TCZ_KEY_LEN);
		const void *h = tcz_rb_bytes(&r, TCZ_SHA256_LEN);
		c->len = tcz_rb_u32(&r);
		if (r.err || c->len == 0 || c->len > TCZ__OBJ_MAX) {
			rc = -EBADMSG;
			goto out;
		}
		memcpy(c->key, k, TCZ_KEY_LEN);
		memcpy(c->sha, h, TCZ_SHA256_LEN);
		/* sorted and distinct: lookups bisect */
		if (i && memcmp(rm->chunks[i - 1].key, c->key, TCZ_KEY_LEN) >= 0) {
			rc = -EBADMSG;
			goto out;
		}
	}
	what = "TT core table";
	uint32_t nk = tcz_rb_u32(&r);
	if (r.err || nk > (r.len - r.off) / (8 + TCZ_SHA256_LEN + 4)) {
		rc = -EBADMSG;
		goto out;
	}
	rm->cores = calloc(nk ? nk : 1, sizeof *rm->cores);
	if (!rm->cores) {
		rc = -ENOMEM;
		goto out;
	}
	rm->n_cores = nk;
	for (uint32_t i = 0; i < nk; i++) {
		tcz__mcore *c = &rm->cores[i];
		c->t = tcz_rb_u32(&r);
		c->k = tcz_rb_u32(&r);
		const void *h = tcz_rb_bytes(&r, TCZ_SHA256_LEN);
		c->len = tcz_rb_u32(&r);
		if (r.err || c->len == 0 || c->len > TCZ__OBJ_MAX ||
		    (i && cmp_core(&rm->cores[i - 1], c) >= 0)) {
			rc = -EBADMSG;
			goto out;
		}
		memcpy(c->sha, h, TCZ_SHA256_LEN);
	}
	if ((rc = tcz_rb_end(&r)) != 0) {
		what = "trailing bytes";
		goto out;
	}
	/* every key the records name must be in the table, every TT core in
	 * the core table: a reader indexes with them without checking */
	what = "a chunk the records name is not in its table";
	unsigned char sha[TCZ_SHA256_LEN];
	uint32_t l;
	for (uint32_t t = 0; t < m->n_tensors && rc == 0; t++) {
		const tcz_tensor *tn = &m->tensors[t];
		for (uint32_t i = 0; i < tn->n_chunks && rc == 0; i++)
			rc = tcz_rmodel_chunk(rm, tn->chunks[i], sha, &l);
		if (tn->codec == TCZ_CODEC_TT)
			for (uint32_t k = 0; k < tn->tt_order && rc == 0; k++)
				if (tcz_rmodel_ttcore(rm, t, k, sha, &l))
					rc = -ENOENT, what = "a TT core is not in "
							     "its table";
	}
	for (uint32_t b = 0; b < m->n_blobs && rc == 0; b++)
		for (uint32_t i = 0; i < m->blobs[b].n_chunks && rc == 0; i++)
			rc = tcz_rmodel_chunk(rm, m->blobs[b].chunks[i], sha, &l);
	if (rc == -ENOENT)
		rc = -EBADMSG;
	m->id = m->rev = m->iid = ident;
out:
	if (rc) {
		if (rc == -EBADMSG || rc == -EIO)
			bad_manifest(name, what);
		tcz_rmodel_free(rm);
		return rc;
	}
	*out = rm;
	return 0;
}

const tcz_model *tcz_rmodel_model(const tcz_rmodel *m)
{
	return m->m;
}

const unsigned char *tcz_rmodel_manifest_sha(const tcz_rmodel *m)
{
	return m->msha;
}

int tcz_rmodel_chunk(const tcz_rmodel *m, const unsigned char key[TCZ_KEY_LEN],
		     unsigned char sha[TCZ_SHA256_LEN], uint32_t *len)
{
	size_t lo = 0, hi = m->n_chunks;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = memcmp(m->chunks[mid].key, key, TCZ_KEY_LEN);
		if (c == 0) {
			memcpy(sha, m->chunks[mid].sha, TCZ_SHA256_LEN);
			*len = m->chunks[mid].len;
			return 0;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -ENOENT;
}

int tcz_rmodel_ttcore(const tcz_rmodel *m, uint32_t t, uint32_t k,
		      unsigned char sha[TCZ_SHA256_LEN], uint32_t *len)
{
	tcz__mcore want = {.t = t, .k = k};
	const tcz__mcore *c = bsearch(&want, m->cores, m->n_cores, sizeof *c,
				      cmp_core);
	if (!c)
		return -ENOENT;
	memcpy(sha, c->sha, TCZ_SHA256_LEN);
	*len = c->len;
	return 0;
}

uint32_t tcz_rmodel_nobjects(const tcz_rmodel *m)
{
	return m->n_chunks + m->n_cores;
}

void tcz_rmodel_object(const tcz_rmodel *m, uint32_t i,
		       unsigned char sha[TCZ_SHA256_LEN], uint32_t *len)
{
	if (i < m->n_chunks) {
		memcpy(sha, m->chunks[i].sha, TCZ_SHA256_LEN);
		*len = m->chunks[i].len;
	} else {
		memcpy(sha, m->cores[i - m->n_chunks].sha, TCZ_SHA256_LEN);
		*len = m->cores[i - m->n_chunks].len;
	}
}

/* ---- the index ---------------------------------------------------------------- */

void tcz_rindex_free(tcz_rindex *ix)
{
	if (!ix)
		return;
	for (size_t i = 0; i < ix->n; i++)
		free(ix->e[i].name);
	free(ix->e);
	free(ix);
}

int tcz__index_encode(const tcz_rindex *ix, tcz_wbuf *w)
{
	tcz_wb_init(w);
	tcz_wb_u32(w, TCZ__INDEX_MAGIC);
	tcz_wb_u32(w, 1);
	tcz_wb_u64(w, ix->generation);
	tcz_wb_u32(w, (uint32_t)ix->n);
	for (size_t i = 0; i < ix->n; i++) {
		const tcz_rindex_entry *e = &ix->e[i];
		tcz_wb_str(w, e->name);
		tcz_wb_bytes(w, e->manifest_sha, TCZ_SHA256_LEN);
		tcz_wb_u64(w, e->manifest_len);
		tcz_wb_u64(w, e->push_time);
		tcz_wb_u64(w, e->source_bytes);
		tcz_wb_u64(w, e->stored_bytes);
		tcz_wb_u32(w, e->n_objects);
	}
	int rc = tcz_rec_finish(w);
	if (rc)
		tcz_wb_free(w);
	return rc;
}

int tcz__index_decode(const void *p, size_t n, tcz_rindex **out)
{
	*out = NULL;
	tcz_rindex *ix = calloc(1, sizeof *ix);
	if (!ix)
		return -ENOMEM;
	if (n == 0) {
		*out = ix;
		return 0;
	}
	tcz_rbuf r;
	if (tcz_rec_open(&r, p, n)) {
		free(ix);
		return tcz__fail(-EIO, "the remote's index is damaged (checksum "
				       "mismatch)");
	}
	int rc = 0;
	if (tcz_rb_u32(&r) != TCZ__INDEX_MAGIC || tcz_rb_u32(&r) != 1)
		rc = -EBADMSG;
	ix->generation = tcz_rb_u64(&r);
	uint32_t cnt = tcz_rb_u32(&r);
	if (rc == 0 && (r.err || cnt > (r.len - r.off) / 40))
		rc = -EBADMSG;
	if (rc == 0 && !(ix->e = calloc(cnt ? cnt : 1, sizeof *ix->e)))
		rc = -ENOMEM;
	for (uint32_t i = 0; rc == 0 && i < cnt; i++) {
		tcz_rindex_entry *e = &ix->e[i];
		e->name = tcz_rb_strdup(&r);
		ix->n = i + 1;
		const void *h = tcz_rb_bytes(&r, TCZ_SHA256_LEN);
		e->manifest_len = tcz_rb_u64(&r);
		e->push_time = tcz_rb_u64(&r);
		e->source_bytes = tcz_rb_u64(&r);
		e->stored_bytes = tcz_rb_u64(&r);
		e->n_objects = tcz_rb_u32(&r);
		if (r.err || !e->name || !tcz_model_name_valid(e->name) ||
		    (i && strcmp(ix->e[i - 1].name, e->name) >= 0)) {
			rc = -EBADMSG;
			break;
		}
		memcpy(e->manifest_sha, h, TCZ_SHA256_LEN);
	}
	if (rc == 0)
		rc = tcz_rb_end(&r);
	if (rc) {
		tcz_rindex_free(ix);
		if (rc == -EBADMSG)
			tcz__fail(rc, "the remote's index is malformed");
		return rc;
	}
	*out = ix;
	return 0;
}

long tcz__index_find(const tcz_rindex *ix, const char *name)
{
	size_t lo = 0, hi = ix->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(ix->e[mid].name, name);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int tcz__index_set(tcz_rindex *ix, const tcz_rindex_entry *e)
{
	char *nm = strdup(e->name);
	if (!nm)
		return -ENOMEM;
	long at = tcz__index_find(ix, e->name);
	if (at >= 0) {
		free(ix->e[at].name);
		ix->e[at] = *e;
		ix->e[at].name = nm;
	} else {
		tcz_rindex_entry *ne = realloc(ix->e, (ix->n + 1) * sizeof *ne);
		if (!ne) {
			free(nm);
			return -ENOMEM;
		}
		ix->e = ne;
		size_t pos = 0;
		while (pos < ix->n && strcmp(ix->e[pos].name, e->name) < 0)
			pos++;
		memmove(ix->e + pos + 1, ix->e + pos,
			(ix->n - pos) * sizeof *ix->e);
		ix->e[pos] = *e;
		ix->e[pos].name = nm;
		ix->n++;
	}
	ix->generation++;
	return 0;
}

int tcz__index_del(tcz_rindex *ix, const char *name)
{
	long at = tcz__index_find(ix, name);
	if (at < 0)
		return -ENOENT;
	free(ix->e[at].name);
	memmove(ix->e + at, ix->e + at + 1,
		(ix->n - (size_t)at - 1) * sizeof *ix->e);
	ix->n--;
	ix->generation++;
	return 0;
}

/* ---- leases --------------------------------------------------------------------- */

int tcz__lease_encode(uint64_t start_ms, const char *host, uint64_t pid,
		      const char *model, tcz_wbuf *w)
{
	tcz_wb_init(w);
	tcz_wb_u32(w, TCZ__LEASE_MAGIC);
	tcz_wb_u64(w, start_ms);
	tcz_wb_str(w, host);
	tcz_wb_u64(w, pid);
	tcz_wb_str(w, model);
	return tcz_rec_finish(w);
}

int tcz__lease_decode(const void *p, size_t n, uint64_t *start_ms)
{
	tcz_rbuf r;
	if (tcz_rec_open(&r, p, n) || tcz_rb_u32(&r) != TCZ__LEASE_MAGIC)
		return -EBADMSG;
	*start_ms = tcz_rb_u64(&r);
	return r.err;
}

/* ---- the chunk cache -------------------------------------------------------------- */

/* rcache: chunk key -> the value as fetched (verified again when read).
 * rcmeta: chunk key -> record {u64 tick of last use, u64 length}; and
 *         "total" -> record {u64 bytes, u64 entries}, "tick" -> {u64}.
 * rclru:  tick (u64 BE) . chunk key -> empty: the eviction order.
 * Values are large and rewriting one to note a use would copy all its
 * pages, so recency lives in the small tables. */

#define PENDING_MAX 65536u /* noted uses kept in memory at most */

struct tcz_rcache {
	tcz_store *s;
	pthread_mutex_t lock; /* guards what follows */
	uint64_t capacity;
	unsigned char (*used)[TCZ_KEY_LEN]; /* noted by get, in order */
	size_t n_used, cap_used;
	unsigned char (*bad)[TCZ_KEY_LEN]; /* damaged: to drop */
	size_t n_bad, cap_bad;
	uint64_t bytes, entries; /* as of the last commit (or open) */
	/* deferred puts (tcz_rcache_defer): copies waiting for a flush */
	uint64_t defer_max, q_bytes;
	struct rc_put *q;
	size_t n_q, q_cap;
	struct rc_put *fq; /* what a flush is writing */
	size_t n_fq;
	void (*fill)(void *); /* called when the queue passes a quarter */
	void *fill_ud;
};

typedef struct rc_txn {
	tcz_rcache *c;
	MDB_txn *txn;
	uint64_t tick, bytes, entries;
} rc_txn;

static int meta_get2(MDB_txn *txn, MDB_dbi db, const char *k, uint64_t *a,
		     uint64_t *b)
{
	MDB_val key = {strlen(k), (void *)k}, v;
	*a = 0;
	if (b)
		*b = 0;
	int rc = mdb_get(txn, db, &key, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return tcz__mdb_err(rc);
	tcz_rbuf r;
	if (tcz_rec_open(&r, v.mv_data, v.mv_size))
		return 0; /* damaged counters restart (rc_evict recounts) */
	*a = tcz_rb_u64(&r);
	if (b)
		*b = tcz_rb_u64(&r);
	return 0;
}

static int put_u64s(MDB_txn *txn, MDB_dbi db, const void *k, size_t kl,
		    uint64_t a, uint64_t b, int two)
{
	tcz_wbuf w;
	tcz_wb_init(&w);
	tcz_wb_u64(&w, a);
	if (two)
		tcz_wb_u64(&w, b);
	int rc = tcz_rec_finish(&w);
	if (rc == 0) {
		MDB_val key = {kl, (void *)k}, v = {w.len, w.p};
		rc = tcz__mdb_err(mdb_put(txn, db, &key, &v, 0));
	}
	tcz_wb_free(&w);
	return rc;
}

/* The recorded use and length of key; -ENOENT when not cached. */
static int rc_meta(rc_txn *t, const unsigned char *key, uint64_t *tick,
		   uint64_t *len)
{
	MDB_val k = {TCZ_KEY_LEN, (void *)key}, v;
	int rc = mdb_get(t->txn, t->c->s->rcmeta, &k, &v);
	if (rc)
		return tcz__mdb_err(rc);
	tcz_rbuf r;
	if (tcz_rec_open(&r, v.mv_data, v.mv_size)) {
		/* a damaged use record: take the value's own length, and
		 * make it the oldest (tick 0 is never in rclru: dropped by
		 * the next eviction, see rc_drop) */
		MDB_val d;
		*tick = 0;
		*len = mdb_get(t->txn, t->c->s->rcache, &k, &d) == 0 ? d.mv_size
								   : 0;
		return 0;
	}
	*tick = tcz_rb_u64(&r);
	*len = tcz_rb_u64(&r);
	return 0;
}

static void lru_key(unsigned char k[8 + TCZ_KEY_LEN], uint64_t tick,
		    const unsigned char *key)
{
	tcz_be64(k, tick);
	memcpy(k + 8, key, TCZ_KEY_LEN);
}

/* Drops key from the cache (all three tables). */
static int rc_drop(rc_txn *t, const unsigned char *key)
{
	tcz_store *s = t->c->s;
	uint64_t tick, len;
	int rc = rc_meta(t, key, &tick, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	unsigned char lk[8 + TCZ_KEY_LEN];
	lru_key(lk, tick, key);
	MDB_val k = {TCZ_KEY_LEN, (void *)key}, l = {sizeof lk, lk};
	int e = mdb_del(t->txn, s->rclru, &l, NULL);
	if (e == 0 || e == MDB_NOTFOUND)
		e = mdb_del(t->txn, s->rcmeta, &k, NULL);
	if (e == 0 || e == MDB_NOTFOUND)
		e = mdb_del(t->txn, s->rcache, &k, NULL);
	if (e && e != MDB_NOTFOUND)
		return tcz__mdb_err(e);
	t->bytes = t->bytes > len ? t->bytes - len : 0;
	t->entries -= t->entries > 0;
	return 0;
}

/* Marks key used now (a new tick), when cached. */
static int rc_touch(rc_txn *t, const unsigned char *key)
{
	tcz_store *s = t->c->s;
	uint64_t tick, len;
	int rc = rc_meta(t, key, &tick, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	unsigned char lk[8 + TCZ_KEY_LEN];
	lru_key(lk, tick, key);
	MDB_val l = {sizeof lk, lk}, empty = {0, NULL};
	int e = mdb_del(t->txn, s->rclru, &l, NULL);
	if (e && e != MDB_NOTFOUND)
		return tcz__mdb_err(e);
	lru_key(lk, ++t->tick, key);
	l = (MDB_val){sizeof lk, lk};
	if ((e = mdb_put(t->txn, s->rclru, &l, &empty, 0)))
		return tcz__mdb_err(e);
	return put_u64s(t->txn, s->rcmeta, key, TCZ_KEY_LEN, t->tick, len, 1);
}

/* Evicts from the least recently used end until bytes <= target. Entries
 * whose use record was lost (not in rclru) go first. */
static int rc_evict(rc_txn *t, uint64_t target)
{
	tcz_store *s = t->c->s;
	while (t->bytes > target) {
		MDB_cursor *cur;
		MDB_val k, v;
		int e = mdb_cursor_open(t->txn, s->rclru, &cur);
		if (e)
			return tcz__mdb_err(e);
		e = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		unsigned char key[TCZ_KEY_LEN];
		if (e == 0 && k.mv_size == 8 + TCZ_KEY_LEN)
			memcpy(key, (unsigned char *)k.mv_data + 8, TCZ_KEY_LEN);
		int junk = e == 0 && k.mv_size != 8 + TCZ_KEY_LEN;
		if (junk)
			e = mdb_cursor_del(cur, 0);
		mdb_cursor_close(cur);
		if (e == MDB_NOTFOUND) {
			/* the counters said more than is there: recount */
			t->bytes = t->entries = 0;
			MDB_cursor *c2;
			if ((e = mdb_cursor_open(t->txn, s->rcache, &c2)))
				return tcz__mdb_err(e);
			for (e = mdb_cursor_get(c2, &k, &v, MDB_FIRST); e == 0;
			     e = mdb_cursor_get(c2, &k, &v, MDB_NEXT)) {
				t->bytes += v.mv_size;
				t->entries++;
			}
			mdb_cursor_close(c2);
			if (t->bytes > target && t->entries) {
				/* values without an order (damage): drop them
				 * all; the counters are written after this */
				if ((e = mdb_drop(t->txn, s->rcache, 0)) ||
				    (e = mdb_drop(t->txn, s->rclru, 0)) ||
				    (e = mdb_drop(t->txn, s->rcmeta, 0)))
					return tcz__mdb_err(e);
				t->bytes = t->entries = 0;
			}
			return 0;
		}
		if (e)
			return tcz__mdb_err(e);
		if (junk)
			continue;
		uint64_t tick, len;
		int rc = rc_meta(t, key, &tick, &len);
		if (rc == -ENOENT) {
			/* an order entry without a value: drop the entry */
			unsigned char lk[8 + TCZ_KEY_LEN];
			memcpy(lk, k.mv_data, sizeof lk);
			MDB_val l = {sizeof lk, lk};
			mdb_del(t->txn, s->rclru, &l, NULL);
			continue;
		}
		if (rc)
			return rc;
		if (tick == 0) {
			/* its use record is damaged: the order entry found is
			 * another tick's; drop that entry and the value */
			unsigned char lk[8 + TCZ_KEY_LEN];
			memcpy(lk, k.mv_data, sizeof lk);
			MDB_val l = {sizeof lk, lk};
			mdb_del(t->txn, s->rclru, &l, NULL);
		}
		if ((rc = rc_drop(t, key)))
			return rc;
	}
	return 0;
}

/* A value to keep: key, the value and its length. */
typedef struct rc_put {
	unsigned char key[TCZ_KEY_LEN];
	unsigned char *val; /* a copy of the caller's when deferred */
	size_t len;
} rc_put;

typedef struct rc_op {
	tcz_rcache *c;
	unsigned char (*used)[TCZ_KEY_LEN];
	size_t n_used;
	unsigned char (*bad)[TCZ_KEY_LEN];
	size_t n_bad;
	const struct rc_put *puts; /* values to keep */
	size_t n_put;
	int evict;       /* evict to target */
	uint64_t target; /* evict */
	uint64_t freed;  /* out */
	uint64_t bytes, entries; /* out: after the transaction */
} rc_op;

static int rc_fn(void *arg, MDB_txn *txn)
{
	rc_op *o = arg;
	tcz_store *s = o->c->s;
	rc_txn t = {o->c, txn, 0, 0, 0};
	int rc = meta_get2(txn, s->rcmeta, "tick", &t.tick, NULL);
	if (rc == 0)
		rc = meta_get2(txn, s->rcmeta, "total", &t.bytes, &t.entries);
	uint64_t before = t.bytes;
	for (size_t i = 0; rc == 0 && i < o->n_bad; i++)
		rc = rc_drop(&t, o->bad[i]);
	for (size_t i = 0; rc == 0 && i < o->n_used; i++)
		rc = rc_touch(&t, o->used[i]);
	for (size_t i = 0; rc == 0 && i < o->n_put; i++) {
		const rc_put *pu = &o->puts[i];
		MDB_val k = {TCZ_KEY_LEN, (void *)pu->key}, d;
		uint64_t tick, len;
		int local = mdb_get(txn, s->chunks, &k, &d) == 0;
		rc = local ? 0 : rc_meta(&t, pu->key, &tick, &len);
		if (rc == 0 && !local) {
			rc = rc_touch(&t, pu->key); /* already cached */
		} else if (rc == -ENOENT) {
			pthread_mutex_lock(&o->c->lock);
			uint64_t cap = o->c->capacity;
			pthread_mutex_unlock(&o->c->lock);
			if (pu->len > cap) { /* too big for it: not kept */
				rc = 0;
				continue;
			}
			rc = rc_evict(&t, cap - pu->len);
			if (rc == 0) {
				d = (MDB_val){pu->len, (void *)pu->val};
				rc = tcz__mdb_err(mdb_put(txn, s->rcache, &k, &d, 0));
			}
			if (rc == 0) {
				unsigned char lk[8 + TCZ_KEY_LEN];
				lru_key(lk, ++t.tick, pu->key);
				MDB_val l = {sizeof lk, lk}, empty = {0, NULL};
				rc = tcz__mdb_err(
					mdb_put(txn, s->rclru, &l, &empty, 0));
			}
			if (rc == 0)
				rc = put_u64s(txn, s->rcmeta, pu->key, TCZ_KEY_LEN,
					      t.tick, pu->len, 1);
			if (rc == 0) {
				t.bytes += pu->len;
				t.entries++;
			}
		}
	}
	if (rc == 0 && o->evict)
		rc = rc_evict(&t, o->target);
	if (rc == 0)
		rc = put_u64s(txn, s->rcmeta, "tick", 4, t.tick, 0, 0);
	if (rc == 0)
		rc = put_u64s(txn, s->rcmeta, "total", 5, t.bytes, t.entries, 1);
	o->freed = before > t.bytes ? before - t.bytes : 0;
	o->bytes = t.bytes;
	o->entries = t.entries;
	return rc;
}

/* Runs one cache transaction carrying the uses and damage noted so far.
 * A failed one gives them back (they are only recency). */
static int rc_run(tcz_rcache *c, rc_op *o)
{
	tcz_store *s = c->s;
	if ((s->flags & TCZ_STORE_RDONLY) || !s->has_remote)
		return tcz__fail(-EROFS, "store %s is open read-only", s->dir);
	pthread_mutex_lock(&c->lock);
	o->c = c;
	o->used = c->used;
	o->n_used = c->n_used;
	o->bad = c->bad;
	o->n_bad = c->n_bad;
	c->used = NULL;
	c->n_used = c->cap_used = 0;
	c->bad = NULL;
	c->n_bad = c->cap_bad = 0;
	pthread_mutex_unlock(&c->lock);
	int rc = tcz__write(s, rc_fn, o);
	pthread_mutex_lock(&c->lock);
	if (rc == 0) {
		c->bytes = o->bytes;
		c->entries = o->entries;
	} else if (!c->bad && o->n_bad) {
		c->bad = o->bad; /* damaged values must still go */
		c->n_bad = c->cap_bad = o->n_bad;
		o->bad = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	free(o->used);
	free(o->bad);
	return rc;
}

int tcz_rcache_open(tcz_store *s, uint64_t capacity, tcz_rcache **out)
{
	*out = NULL;
	tcz_rcache *c = calloc(1, sizeof *c);
	if (!c)
		return -ENOMEM;
	c->s = s;
	c->capacity = capacity;
	pthread_mutex_init(&c->lock, NULL);
	if (s->has_remote) {
		MDB_txn *txn = NULL;
		int rc = tcz__rtxn_begin(s, &txn);
		if (rc == 0) {
			rc = meta_get2(txn, s->rcmeta, "total", &c->bytes,
				       &c->entries);
			tcz__rtxn_end(s, txn, 0);
		}
		if (rc) {
			pthread_mutex_destroy(&c->lock);
			free(c);
			return rc;
		}
	}
	*out = c;
	if (s->flags & TCZ_STORE_RDONLY)
		return -EROFS; /* usable for gets; the caller decides */
	return 0;
}

void tcz_rcache_close(tcz_rcache *c)
{
	if (!c)
		return;
	if (c->n_used || c->n_bad || c->n_q)
		tcz_rcache_flush(c);
	for (size_t i = 0; i < c->n_q; i++)
		free(c->q[i].val);
	free(c->q);
	free(c->used);
	free(c->bad);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void tcz_rcache_set_capacity(tcz_rcache *c, uint64_t capacity)
{
	pthread_mutex_lock(&c->lock);
	c->capacity = capacity;
	pthread_mutex_unlock(&c->lock);
}

static void note(tcz_rcache *c, unsigned char (**arr)[TCZ_KEY_LEN], size_t *n,
		 size_t *cap, const unsigned char *key)
{
	pthread_mutex_lock(&c->lock);
	if (*n < PENDING_MAX && tcz__grow(arr, cap, *n, TCZ_KEY_LEN, 64) == 0)
		memcpy((*arr)[(*n)++], key, TCZ_KEY_LEN);
	pthread_mutex_unlock(&c->lock);
}

/* A value waiting in the deferred queue, copied into r's buffer.
 * Returns -ENOENT when none is queued under key. */
static int queued_get(tcz_rcache *c, tcz_reader *r,
		      const unsigned char key[TCZ_KEY_LEN],
		      const unsigned char **val, size_t *len)
{
	int rc = -ENOENT;
	pthread_mutex_lock(&c->lock);
	for (int w = 0; w < 2 && rc == -ENOENT; w++) {
		const rc_put *q = w ? c->fq : c->q;
		size_t n = w ? c->n_fq : c->n_q;
		for (size_t i = 0; i < n; i++) {
			if (memcmp(q[i].key, key, TCZ_KEY_LEN) != 0)
				continue;
			rc = 0;
			if (q[i].len > r->val_cap) {
				unsigned char *nv = realloc(r->val, q[i].len);
				if (!nv) {
					rc = -ENOMEM;
					break;
				}
				r->val = nv;
				r->val_cap = q[i].len;
			}
			memcpy(r->val, q[i].val, q[i].len);
			r->val_len = q[i].len;
			*val = r->val;
			*len = q[i].len;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int tcz_rcache_get(tcz_rcache *c, tcz_reader *r,
		   const unsigned char key[TCZ_KEY_LEN],
		   const unsigned char **val, size_t *len)
{
	if (queued_get(c, r, key, val, len) == 0)
		return 0;
	if (!c->s->has_remote)
		return -ENOENT;
	int rc = tcz__fetch(r, c->s->rcache, key, TCZ_KEY_LEN, val, len);
	if (rc)
		return rc;
	unsigned char got[TCZ_KEY_LEN];
	tcz__chunk_key(*val, *len, got);
	if (memcmp(got, key, TCZ_KEY_LEN) != 0) {
		note(c, &c->bad, &c->n_bad, &c->cap_bad, key);
		return tcz__fail(-EIO, "a cached remote chunk is damaged (it "
				       "will be fetched again)");
	}
	note(c, &c->used, &c->n_used, &c->cap_used, key);
	return 0;
}

int tcz_rcache_put(tcz_rcache *c, const unsigned char key[TCZ_KEY_LEN],
		   const void *val, size_t len)
{
	unsigned char got[TCZ_KEY_LEN];
	tcz__chunk_key(val, len, got);
	if (memcmp(got, key, TCZ_KEY_LEN) != 0)
		return tcz__fail(-EINVAL, "rcache put: the value does not match "
					  "its key");
	pthread_mutex_lock(&c->lock);
	uint64_t cap = c->capacity;
	pthread_mutex_unlock(&c->lock);
	if (len > cap)
		return -EFBIG;
	pthread_mutex_lock(&c->lock);
	if (c->defer_max) {
		/* kept in memory, written by the next flush: the read that
		 * fetched it does not wait for the store's writer */
		int rc = 0;
		if ((c->s->flags & TCZ_STORE_RDONLY) || !c->s->has_remote) {
			/* refused as a put that writes at once would be:
			 * no flush could ever write it */
			rc = tcz__fail(-EROFS, "store %s is open read-only",
				       c->s->dir);
		} else if (c->q_bytes + len > c->defer_max) {
			rc = -EAGAIN; /* the queue is full: not kept (a cache) */
		} else if (tcz__grow(&c->q, &c->q_cap, c->n_q, sizeof *c->q,
				     16) != 0 ||
			   !(c->q[c->n_q].val = malloc(len ? len : 1))) {
			rc = -ENOMEM;
		} else {
			rc_put *pu = &c->q[c->n_q++];
			memcpy(pu->key, key, TCZ_KEY_LEN);
			memcpy(pu->val, val, len);
			pu->len = len;
			c->q_bytes += len;
		}
		/* a fast reader fills the queue sooner than the periodic
		 * flush empties it: ask for one now */
		int kick = c->fill && c->q_bytes >= c->defer_max / 4;
		void (*fill)(void *) = c->fill;
		void *ud = c->fill_ud;
		pthread_mutex_unlock(&c->lock);
		if (kick)
			fill(ud);
		return rc;
	}
	pthread_mutex_unlock(&c->lock);
	rc_put pu = {.val = (unsigned char *)val, .len = len};
	memcpy(pu.key, key, TCZ_KEY_LEN);
	rc_op o = {.puts = &pu, .n_put = 1};
	return rc_run(c, &o);
}

int tcz_rcache_evict(tcz_rcache *c, uint64_t target, uint64_t *freed)
{
	rc_op o = {.evict = 1, .target = target};
	int rc = rc_run(c, &o);
	if (freed)
		*freed = rc ? 0 : o.freed;
	return rc;
}

int tcz_rcache_flush(tcz_rcache *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->fq || (!c->n_used && !c->n_bad && !c->n_q)) {
		/* nothing, or another flush is writing: the next one takes
		 * what was queued meanwhile */
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	/* the queue moves aside, still readable by gets until written */
	c->fq = c->q;
	c->n_fq = c->n_q;
	c->q = NULL;
	c->n_q = c->q_cap = 0;
	rc_op o = {.puts = c->fq, .n_put = c->n_fq};
	pthread_mutex_unlock(&c->lock);
	int rc = rc_run(c, &o);
	pthread_mutex_lock(&c->lock);
	/* written or not (a cache: a failed write only costs a fetch) */
	for (size_t i = 0; i < c->n_fq; i++) {
		c->q_bytes -= c->fq[i].len;
		free(c->fq[i].val);
	}
	free(c->fq);
	c->fq = NULL;
	c->n_fq = 0;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

uint64_t tcz_remote_ident(const unsigned char sha[TCZ_SHA256_LEN])
{
	return tcz_get_be64(sha) | (1ull << 63);
}

void tcz_rcache_on_fill(tcz_rcache *c, void (*fn)(void *ud), void *ud)
{
	pthread_mutex_lock(&c->lock);
	c->fill = fn;
	c->fill_ud = ud;
	pthread_mutex_unlock(&c->lock);
}

void tcz_rcache_defer(tcz_rcache *c, uint64_t max_bytes)
{
	pthread_mutex_lock(&c->lock);
	c->defer_max = max_bytes;
	pthread_mutex_unlock(&c->lock);
}

int tcz_rcache_usage(tcz_rcache *c, uint64_t *bytes, uint64_t *entries)
{
	pthread_mutex_lock(&c->lock);
	*bytes = c->bytes;
	*entries = c->entries;
	pthread_mutex_unlock(&c->lock);
	return 0;
}
