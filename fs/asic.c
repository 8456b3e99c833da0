/* asic/<model>/: device images served from the store's asic views. Image
 * bytes are made from the model's layers/ values, read through the
 * decoded-chunk cache like any file. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "fs/internal.h"

static int same_profiles(const tcz_dprofile *a, size_t na,
			 const tcz_dprofile *b, size_t nb)
{
	if (na != nb)
		return 0;
	for (size_t i = 0; i < na; i++)
		if (a[i].id != b[i].id)
			return 0; /* a profile never changes under its id */
	return 1;
}

int fs_asic_reload(tczfs *fs)
{
	tcz_dprofile *p;
	size_t n;
	int rc = tcz_store_profiles(fs->store, &p, &n);
	if (rc) {
		fs_log(fs, LOG_WARNING, "cannot read the device profiles: %s",
		       tcz_store_errmsg());
		pthread_mutex_lock(&fs->alock);
		int none = fs->profiles == NULL;
		pthread_mutex_unlock(&fs->alock);
		if (!none)
			return rc; /* keep the ones read before */
		/* newport alone, until the profiles can be read */
		if (!(p = calloc(1, sizeof *p)))
			return -ENOMEM;
		tcz_asic_profile_newport(&p->p);
		n = 1;
	}
	pthread_mutex_lock(&fs->alock);
	if (!fs->profiles ||
	    !same_profiles(fs->profiles, fs->n_profiles, p, n)) {
		tcz_dprofile *old = fs->profiles;
		fs->profiles = p;
		fs->n_profiles = n;
		fs->profiles_gen++;
		p = old;
	}
	pthread_mutex_unlock(&fs->alock);
	free(p);
	return 0;
}

int fs_asic_view(tczfs *fs, fs_model *fm, tcz_aview **out)
{
	pthread_mutex_lock(&fs->alock);
	if (fm->av && fm->av_gen == fs->profiles_gen) {
		*out = tcz_aview_ref(fm->av);
		pthread_mutex_unlock(&fs->alock);
		return 0;
	}
	uint64_t gen = fs->profiles_gen;
	size_t n = fs->n_profiles;
	tcz_dprofile *p = malloc((n ? n : 1) * sizeof *p);
	if (p)
		memcpy(p, fs->profiles, n * sizeof *p);
	pthread_mutex_unlock(&fs->alock);
	if (!p)
		return -ENOMEM;
	/* the layouts are computed without any lock held */
	tcz_aview *a;
	int rc = tcz_aview_open(fm->v, p, n, &a);
	free(p);
	if (rc)
		return rc;
	pthread_mutex_lock(&fs->alock);
	tcz_aview *old = NULL;
	if (fm->av && fm->av_gen == gen) {
		/* another thread made it meanwhile: share that one */
		old = a;
		a = fm->av;
	} else {
		old = fm->av;
		fm->av = a;
		fm->av_gen = gen;
	}
	*out = tcz_aview_ref(a);
	pthread_mutex_unlock(&fs->alock);
	tcz_aview_put(old); /* unsaved checksums are computed again later */
	return 0;
}

uint32_t fs_asic_local(const tcz_aview *a, uint32_t i)
{
	const tcz_afile *f = tcz_aview_file(a, i);
	uint64_t id = tcz_aview_profile(a, f->profile)->id % ASIC_ID_MOD;
	return LOCAL_ASIC_FILE0 + (uint32_t)id * 2 + (uint32_t)f->kind;
}

int fs_asic_file_of(const tcz_aview *a, uint32_t local, uint32_t *i)
{
	for (uint32_t k = 0; k < tcz_aview_nfiles(a); k++)
		if (fs_asic_local(a, k) == local) {
			*i = k;
			return 0;
		}
	return -ENOENT;
}

typedef struct rd_ctx {
	tczfs *fs;
	fs_model *fm;
} rd_ctx;

static int rd(void *ctx, uint32_t file, uint64_t off, size_t len, void *dst)
{
	rd_ctx *c = ctx;
	return fs_read_range(c->fs, c->fm, file, off, len, dst);
}

void fs_asic_read(tczfs *fs, fuse_req_t req, fs_file *f, size_t size,
		  uint64_t off)
{
	const tcz_afile *af = tcz_aview_file(f->av, f->file);
	if (off >= af->size || size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > af->size - off)
		size = (size_t)(af->size - off);
	unsigned char *buf = malloc(size);
	tcz_reader *r = fs_reader(fs);
	if (!buf || !r) {
		free(buf);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rd_ctx c = {fs, f->fm};
	size_t got = 0;
	int rc = tcz_aview_read(f->av, f->file, off, size, buf, &got, r, rd, &c);
	if (rc) {
		if (rc != -ENOMEM)
			fs_log(fs, LOG_ERR, "asic/%s/%s: bytes %llu+%zu: %s",
			       f->fm->name, af->name, (unsigned long long)off, size,
			       rc == -EIO ? "stored data is corrupt (checksum "
					    "mismatch)"
					  : strerror(-rc));
		fuse_reply_err(req, rc == -ENOMEM ? ENOMEM : EIO);
	} else {
		fuse_reply_buf(req, (const char *)buf, got);
	}
	free(buf);
}

void fs_asic_save(tczfs *fs)
{
	size_t n;
	fs_model **live = fs_models_live(fs, &n);
	for (size_t i = 0; live && i < n; i++) {
		pthread_mutex_lock(&fs->alock);
		tcz_aview *a = live[i]->av ? tcz_aview_ref(live[i]->av) : NULL;
		pthread_mutex_unlock(&fs->alock);
		/* on failure they are computed again after a remount */
		if (a)
			(void)tcz_aview_save(a, fs->store);
		tcz_aview_put(a);
	}
	fs_models_put(fs, live, n);
}

void fs_asic_free(tczfs *fs)
{
	free(fs->profiles);
	fs->profiles = NULL;
}
