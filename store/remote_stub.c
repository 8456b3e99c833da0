/* Remotes in a build without librados (meson -Drados=disabled, or no
 * librados-dev): connecting fails with a message saying so, and since no
 * tcz_remote can exist, the rest is never reached. URL parsing, the
 * remotes table and the chunk cache (remotes.c) work as usual. */
#include <errno.h>
#include <string.h>

#include "store/remote_int.h"

#define NO_RADOS "tczfs was built without librados: remotes are not " \
		 "available (install librados-dev and rebuild)"

int tcz_remote_available(void)
{
	return 0;
}

void tcz_sha256(const void *p, size_t n, unsigned char out[TCZ_SHA256_LEN])
{
	(void)p;
	(void)n;
	memset(out, 0, TCZ_SHA256_LEN);
}

int tcz_remote_connect(const char *url, unsigned timeout_ms, tcz_remote **out)
{
	(void)url;
	(void)timeout_ms;
	*out = NULL;
	return tcz__fail(-ENOTSUP, NO_RADOS);
}

void tcz_remote_close(tcz_remote *r)
{
	(void)r;
}

int tcz_remote_fetch_chunk(tcz_remote *r, const unsigned char sha[TCZ_SHA256_LEN],
			   uint32_t len, void *buf)
{
	(void)r, (void)sha, (void)len, (void)buf;
	return tcz__fail(-ENOTSUP, NO_RADOS);
}

int tcz_remote_fetch_start(tcz_remote *r, const unsigned char sha[TCZ_SHA256_LEN],
			   uint32_t len, void *buf, tcz_rfetch **out)
{
	(void)r, (void)sha, (void)len, (void)buf;
	*out = NULL;
	return tcz__fail(-ENOTSUP, NO_RADOS);
}

int tcz_remote_fetch_done(const tcz_rfetch *f)
{
	(void)f;
	return 1;
}

int tcz_remote_fetch_wait(tcz_rfetch *f)
{
	(void)f;
	return -ENOTSUP;
}

int tcz_remote_index(tcz_remote *r, tcz_rindex **out)
{
	(void)r;
	*out = NULL;
	return tcz__fail(-ENOTSUP, NO_RADOS);
}

int tcz_remote_model_open(tcz_remote *r, const char *name, tcz_rmodel **out)
{
	(void)r, (void)name;
	*out = NULL;
	return tcz__fail(-ENOTSUP, NO_RADOS);
}

int tcz_remote_push(tcz_store *s, tcz_remote *r, const char *name,
		    const tcz_xfer_opts *o, tcz_xfer_progress *st)
{
	(void)s, (void)r, (void)name, (void)o, (void)st;
	return tcz__fail(-ENOTSUP, NO_RADOS);
}

int tcz_remote_pull(tcz_store *s, tcz_remote *r, const char *name,
		    const tcz_xfer_opts *o, tcz_xfer_progress *st)
{
	(void)s, (void)r, (void)name, (void)o, (void)st;
	return tcz__fail(-ENOTSUP, NO_RADOS);
}

int tcz_remote_drop(tcz_remote *r, const char *name)
{
	(void)r, (void)name;
	return tcz__fail(-ENOTSUP, NO_RADOS);
}

int tcz_remote_gc(tcz_remote *r, const tcz_gc_opts *o, tcz_gc_stats *st)
{
	(void)r, (void)o, (void)st;
	return tcz__fail(-ENOTSUP, NO_RADOS);
}

int tcz_remote_mview_open(tcz_store *s, tcz_remote *r, tcz_rcache *c,
			  const char *name, struct tcz_mview **out)
{
	(void)s, (void)r, (void)c, (void)name;
	*out = NULL;
	return tcz__fail(-ENOTSUP, NO_RADOS);
}
