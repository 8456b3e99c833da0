/* Device images of models (SPEC 8): the profiles of the devices, kept in
 * the store next to the built-in "newport", and the asic view of a model:
 * the files of asic/<model>/ (one <device>.img per profile the model fits,
 * its layout.json) with sizes known from shapes alone. The format is
 * codec/asic.h's; this module feeds it the model's matrices (dense
 * tensors as their layers/ values in f32, TT tensors as their cores).
 * No FUSE here: the daemon and `tczfs asic` / `tczfs cat` serve these
 * files unchanged. */
#ifndef TCZ_AVIEW_H
#define TCZ_AVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "codec/asic.h"
#include "store/store.h"
#include "store/view.h"

/* ---- device profiles ----------------------------------------------------- */

#define TCZ_PROFILE_DEFAULT "newport" /* built in, id 0, cannot be removed */

typedef struct tcz_dprofile {
	uint64_t id; /* never reused: a profile removed and added again is
		      * another one (its images other inodes) */
	tcz_asic_profile p;
} tcz_dprofile;

/* Every profile: newport first, then the store's in name order. *out is
 * malloc'd. Errors: -EIO a damaged record (the message names it);
 * -ENOMEM. */
int tcz_store_profiles(tcz_store *s, tcz_dprofile **out, size_t *n);

/* Adds profile p (checked with tcz_asic_profile_check).
 * Errors: -EINVAL a bad profile (err says which rule); -EEXIST the name
 * is taken (newport included); -EROFS; -ENOSPC; -EIO. */
int tcz_store_profile_add(tcz_store *s, const tcz_asic_profile *p, char *err,
			  size_t errlen);

/* Removes a store profile. Errors: -ENOENT none of that name; -EPERM
 * newport; -EROFS; -ENOSPC; -EIO. */
int tcz_store_profile_rm(tcz_store *s, const char *name);

/* ---- the asic view of a model -------------------------------------------- */

typedef struct tcz_aview tcz_aview;

typedef enum tcz_afile_kind {
	TCZ_AF_IMAGE = 0,  /* <device>.img */
	TCZ_AF_LAYOUT = 1, /* layout.json (newport) or <device>.layout.json */
} tcz_afile_kind;

typedef struct tcz_afile {
	const char *name;
	tcz_afile_kind kind;
	uint32_t profile; /* index into the view's profiles */
	uint64_t size;
} tcz_afile;

/* The asic files of the model view v for profiles[0..n) (copied): every
 * profile the model fits has its image and its layout (newport's is
 * layout.json, another device's <device>.layout.json); one it does not fit
 * has none, and tcz_aview_refusal says why. The view holds a reference to
 * v. Matrices: every float tensor (F16, BF16, F32, F64, and GGUF block
 * types layers/ dequantizes) by its dense rule, TT tensors by their cores;
 * integer and bool tensors are left out.
 * Errors: -ENOMEM. */
int tcz_aview_open(tcz_mview *v, const tcz_dprofile *profiles, size_t n,
		   tcz_aview **out);
/* Views are counted: open gives one reference, put drops one (NULL is
 * fine). A view is immutable but for its checksums: threads share it. */
tcz_aview *tcz_aview_ref(tcz_aview *a);
void tcz_aview_put(tcz_aview *a);

const tcz_mview *tcz_aview_model(const tcz_aview *a);
uint32_t tcz_aview_nfiles(const tcz_aview *a); /* in name order */
const tcz_afile *tcz_aview_file(const tcz_aview *a, uint32_t i);
size_t tcz_aview_nprofiles(const tcz_aview *a);
const tcz_dprofile *tcz_aview_profile(const tcz_aview *a, size_t k);
/* Why profile k has no image ("needs 3.0 MiB more than ..."), or NULL. */
const char *tcz_aview_refusal(const tcz_aview *a, size_t k);
/* The file named name. Errors: -ENOENT. */
int tcz_aview_lookup(const tcz_aview *a, const char *name, uint32_t *i);
/* The image file of profile name. Errors: -ENOENT no such profile;
 * -ENOSPC the model does not fit it (tcz_aview_refusal). */
int tcz_aview_image(const tcz_aview *a, const char *profile, uint32_t *i);

/* How the view gets bytes of its model's files (layers/ .npy files): the
 * daemon reads through its decoded-chunk cache; NULL reads with
 * tcz_view_read. Returns 0 or a negative errno (as tcz_view_read). */
typedef int (*tcz_aview_read_fn)(void *ctx, uint32_t file, uint64_t off,
				 size_t len, void *dst);

/* Reads bytes [off, off+len) of file i (clipped at its end; *got the
 * count) with reader r (TT cores; and the files when rd is NULL). The
 * image header's checksum is the one the store keeps, else computed on
 * the first read that needs it (reading the whole image once, through
 * the same path) and kept in the view until tcz_aview_save stores it.
 * Errors: -EINVAL bad file; as tcz_view_read. */
int tcz_aview_read(tcz_aview *a, uint32_t i, uint64_t off, size_t len,
		   void *dst, size_t *got, tcz_reader *r, tcz_aview_read_fn rd,
		   void *ctx);

/* Stores the checksums computed since the view was opened (one short
 * write transaction, none when there are none).
 * Errors: -EROFS; -ENOSPC; -EIO. */
int tcz_aview_save(tcz_aview *a, tcz_store *s);

#endif
