/* Internals shared by remotes.c (formats, the remotes table, the chunk
 * cache: no librados) and remote.c (the RADOS side); not a public header. */
#ifndef TCZ_STORE_REMOTE_INT_H
#define TCZ_STORE_REMOTE_INT_H

#include "store/internal.h"
#include "store/remote.h"

#define TCZ__MANIFEST_MAGIC 0x464d5254u /* "TRMF" */
#define TCZ__INDEX_MAGIC 0x58495254u    /* "TRIX" */
#define TCZ__LEASE_MAGIC 0x534c5254u    /* "TRLS" */
#define TCZ__REMOTE_MAGIC 0x544d5254u   /* "TRMT" */
#define TCZ__INDEX_OID "tczfs.index"
#define TCZ__TOUCH_XATTR "tczfs.t"
#define TCZ__RENEW_XATTR "tczfs.r"
/* chunk objects are values of at most a 1 MiB chunk plus headers, TT
 * cores somewhat more: anything larger is not ours */
#define TCZ__OBJ_MAX (64u << 20)

typedef struct tcz__mchunk {
	unsigned char key[TCZ_KEY_LEN];
	unsigned char sha[TCZ_SHA256_LEN];
	uint32_t len;
} tcz__mchunk;

typedef struct tcz__mcore {
	uint32_t t, k;
	unsigned char sha[TCZ_SHA256_LEN];
	uint32_t len;
} tcz__mcore;

struct tcz_rmodel {
	tcz_model *m;
	unsigned char msha[TCZ_SHA256_LEN]; /* of the manifest object */
	uint64_t push_time;
	uint32_t n_chunks; /* sorted by key, distinct */
	tcz__mchunk *chunks;
	uint32_t n_cores; /* sorted by (t, k) */
	tcz__mcore *cores;
};

/* Encodes model m (its records as the store writes them) with its chunk
 * table and TT core objects into a manifest. chunks need not be sorted
 * or distinct (they are made so). Errors: -ENOMEM. */
int tcz__manifest_encode(const tcz_model *m, uint64_t push_time,
			 tcz__mchunk *chunks, uint32_t n_chunks,
			 tcz__mcore *cores, uint32_t n_cores, tcz_wbuf *w);

/* Decodes manifest p[n] of model name: checksum, records, cross-checks
 * (every chunk key the records name is in the table, every TT core is
 * there). The model's ids become ident (see tcz_rmodel_model).
 * Errors: -EIO checksum; -EBADMSG malformed (message set); -ENOMEM. */
int tcz__manifest_decode(const char *name, const void *p, size_t n,
			 uint64_t ident, tcz_rmodel **out);

int tcz__index_encode(const tcz_rindex *ix, tcz_wbuf *w);
/* An empty p (n == 0) is the empty index. Errors: -EIO, -EBADMSG,
 * -ENOMEM. */
int tcz__index_decode(const void *p, size_t n, tcz_rindex **out);
/* Index of name in ix, or -1. */
long tcz__index_find(const tcz_rindex *ix, const char *name);
/* Sets (adds or replaces) entry e (copied) and raises the generation.
 * Errors: -ENOMEM. */
int tcz__index_set(tcz_rindex *ix, const tcz_rindex_entry *e);
/* Removes name and raises the generation. Errors: -ENOENT. */
int tcz__index_del(tcz_rindex *ix, const char *name);

/* The lease record and the touch/renew xattr values. */
int tcz__lease_encode(uint64_t start_ms, const char *host, uint64_t pid,
		      const char *model, tcz_wbuf *w);
int tcz__lease_decode(const void *p, size_t n, uint64_t *start_ms);
/* "%016llx" of ms, then (touch) ".%016llx" of nonce; 34 bytes at most */
size_t tcz__stamp(char out[40], uint64_t ms, uint64_t nonce, int with_nonce);
/* Parses the ms of a stamp; -EINVAL when it is not one. */
int tcz__stamp_ms(const char *p, size_t n, uint64_t *ms);

uint64_t tcz__now_ms(void);
void tcz__hex(const unsigned char *p, size_t n, char *out);

#endif
