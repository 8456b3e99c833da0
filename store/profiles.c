/* Device profiles: name -> record (id, cores, SRAM, tile, lanes, dtype),
 * in the `profiles` table; newport is built in. */
#include "store/aview.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"
#include "store/record.h"

#define PROFILE_MAGIC 0x46525054u /* "TPRF" */

static int encode(const tcz_dprofile *d, tcz_wbuf *w)
{
	tcz_wb_init(w);
	tcz_wb_u32(w, PROFILE_MAGIC);
	tcz_wb_u64(w, d->id);
	tcz_wb_u32(w, d->p.cores);
	tcz_wb_u64(w, d->p.sram_bytes);
	tcz_wb_u32(w, d->p.tile_bytes);
	tcz_wb_u32(w, d->p.lanes);
	tcz_wb_u32(w, (uint32_t)d->p.dtype);
	return tcz_rec_finish(w);
}

static int decode(tcz_store *s, const MDB_val *k, const MDB_val *v,
		  tcz_dprofile *d)
{
	tcz_rbuf r;
	memset(d, 0, sizeof *d);
	if (k->mv_size == 0 || k->mv_size > TCZ_ASIC_NAME_MAX ||
	    tcz_rec_open(&r, v->mv_data, v->mv_size) ||
	    tcz_rb_u32(&r) != PROFILE_MAGIC)
		return tcz__fail(-EIO, "store %s: a device profile record is "
				       "damaged", s->dir);
	memcpy(d->p.name, k->mv_data, k->mv_size);
	d->id = tcz_rb_u64(&r);
	d->p.cores = tcz_rb_u32(&r);
	d->p.sram_bytes = tcz_rb_u64(&r);
	d->p.tile_bytes = tcz_rb_u32(&r);
	d->p.lanes = tcz_rb_u32(&r);
	d->p.dtype = (tcz_asic_dtype)tcz_rb_u32(&r);
	if (tcz_rb_end(&r) || tcz_asic_profile_check(&d->p, NULL, 0))
		return tcz__fail(-EIO, "store %s: device profile '%s' is "
				       "damaged", s->dir, d->p.name);
	return 0;
}

int tcz_store_profiles(tcz_store *s, tcz_dprofile **out, size_t *n)
{
	size_t cap = 8, cnt = 1;
	tcz_dprofile *l = calloc(cap, sizeof *l);
	if (!l)
		return -ENOMEM;
	tcz_asic_profile_newport(&l[0].p);
	int rc = 0;
	if (s->has_asic) {
		tcz_snap *sn;
		MDB_cursor *c = NULL;
		rc = tcz_snap_begin(s, &sn);
		if (rc == 0)
			rc = tcz__mdb_err(mdb_cursor_open(sn->txn, s->profiles, &c));
		MDB_val k, v;
		int op = MDB_FIRST;
		while (rc == 0) {
			int e = mdb_cursor_get(c, &k, &v, (MDB_cursor_op)op);
			op = MDB_NEXT;
			if (e == MDB_NOTFOUND)
				break;
			if (e) {
				rc = tcz__mdb_err(e);
				break;
			}
			if (cnt == cap) {
				tcz_dprofile *nl = realloc(l, 2 * cap * sizeof *nl);
				if (!nl) {
					rc = -ENOMEM;
					break;
				}
				l = nl;
				cap *= 2;
			}
			rc = decode(s, &k, &v, &l[cnt]);
			cnt += rc == 0;
		}
		if (c)
			mdb_cursor_close(c);
		if (sn)
			tcz_snap_end(sn);
	}
	if (rc) {
		free(l);
		return rc;
	}
	*out = l;
	*n = cnt;
	return 0;
}

typedef struct ch_arg {
	tcz_store *s;
	tcz_dprofile d;
	int rm;
} ch_arg;

static int write_fn(void *arg, MDB_txn *txn)
{
	ch_arg *a = arg;
	tcz_store *s = a->s;
	MDB_val k = {strlen(a->d.p.name), a->d.p.name}, v;
	int rc = mdb_get(txn, s->profiles, &k, &v);
	if (a->rm) {
		if (rc == MDB_NOTFOUND)
			return tcz__fail(-ENOENT, "no device profile named %s",
					 a->d.p.name);
		rc = rc ? rc : mdb_del(txn, s->profiles, &k, NULL);
		rc = tcz__mdb_err(rc);
	} else {
		if (rc == 0)
			return tcz__fail(-EEXIST, "a device profile named %s "
						  "exists",
					 a->d.p.name);
		if (rc != MDB_NOTFOUND)
			return tcz__mdb_err(rc);
		uint64_t id;
		if ((rc = tcz__meta_get(s, txn, "next_id", &id)) != 0 ||
		    (rc = tcz__meta_put(s, txn, "next_id", id + 1)) != 0)
			return rc;
		a->d.id = id;
		tcz_wbuf w;
		if ((rc = encode(&a->d, &w)) == 0) {
			v.mv_size = w.len;
			v.mv_data = w.p;
			rc = tcz__mdb_err(mdb_put(txn, s->profiles, &k, &v, 0));
		}
		tcz_wb_free(&w);
	}
	/* daemons see the change at their next refresh */
	return rc ? rc : tcz__bump_generation(s, txn);
}

int tcz_store_profile_add(tcz_store *s, const tcz_asic_profile *p, char *err,
			  size_t errlen)
{
	int rc = tcz_asic_profile_check(p, err, errlen);
	if (rc)
		return rc;
	if (strcmp(p->name, TCZ_PROFILE_DEFAULT) == 0)
		return tcz__errf(-EEXIST, err, errlen, "%s is built in",
				 TCZ_PROFILE_DEFAULT);
	if (!s->has_asic)
		return tcz__errf(-EROFS, err, errlen, "the store is read-only");
	ch_arg a = {s, {0, *p}, 0};
	rc = tcz__write(s, write_fn, &a);
	if (rc && err)
		snprintf(err, errlen, "%s", tcz_store_errmsg());
	return rc;
}

int tcz_store_profile_rm(tcz_store *s, const char *name)
{
	if (strcmp(name, TCZ_PROFILE_DEFAULT) == 0)
		return tcz__fail(-EPERM, "%s is built in and cannot be removed",
				 TCZ_PROFILE_DEFAULT);
	if (strlen(name) == 0 || strlen(name) > TCZ_ASIC_NAME_MAX)
		return tcz__fail(-ENOENT, "no device profile named %s", name);
	if (!s->has_asic)
		return tcz__fail(-ENOENT, "no device profile named %s", name);
	ch_arg a = {s, {0}, 1};
	memcpy(a.d.p.name, name, strlen(name) + 1);
	return tcz__write(s, write_fn, &a);
}
