/* Importing models into a store: safetensors files, Hugging Face style
 * directories (shards + index + auxiliary files) and .npy files.
 *
 * Every source is validated completely before the store is touched; a
 * problem gives a one-line error naming the file and tensor and leaves
 * the store unchanged. Tensors are then encoded in parallel and written
 * by one thread in batches; the model appears when tcz_import_commit runs,
 * and an interruption (tcz_import_cancel, a crash) leaves no trace. */
#ifndef TCZ_IMPORT_H
#define TCZ_IMPORT_H

#include <stdint.h>

#include "store/store.h"

typedef enum tcz_profile {
	TCZ_PROFILE_LOSSLESS = 0, /* exact bytes back (default) */
	TCZ_PROFILE_MAX_ERROR,    /* smallest of tt/quant/lossless <= bound */
	TCZ_PROFILE_BITS,         /* groupwise quantization at `bits` */
	TCZ_PROFILE_TT,           /* tensor train at tt_eps / tt_max_rank */
} tcz_profile;

typedef struct tcz_import_opts {
	const char *name;      /* model name; NULL = from the source name */
	tcz_profile profile;
	double max_error;      /* relative Frobenius bound, MAX_ERROR */
	unsigned bits;         /* 3..8, BITS */
	uint32_t group_len;    /* quantization sub-block; 0: per width (16, 32 at 8 bits) */
	double tt_eps;         /* TT */
	uint32_t tt_max_rank;  /* TT, 0 = no cap */
	const char *include;   /* ERE: only matching tensors may be lossy */
	const char *exclude;   /* ERE: matching tensors stay lossless */
	uint64_t min_size;     /* values; smaller tensors stay lossless */
	unsigned jobs;         /* encoding threads, 0 = number of CPUs */
	int level;             /* zstd level for lossless chunks */
	uint32_t chunk_kib;    /* lossless chunk size, 16..1024 KiB (128) */
	int progress;          /* draw a progress line on stdout */
	/* Called (serialised) with a one-line remark about a tensor, e.g. a
	 * lossy encoding that was not smaller and was replaced; may be NULL. */
	void (*note)(void *ud, const char *msg);
	void *note_ud;
} tcz_import_opts;

void tcz_import_opts_default(tcz_import_opts *o);

typedef struct tcz_import_result {
	char name[TCZ_NAME_MAX + 1];
	uint32_t tensors, lossy_tensors, files;
	uint64_t source_bytes, stored_bytes;
	double max_rel_error; /* over all tensors */
	uint32_t notes;       /* remarks passed to opts.note */
	double seconds;
} tcz_import_result;

/* Imports srcs[0..n) as one model: one .safetensors file, one directory,
 * or one or more .npy files. err receives a one-line message on failure.
 * Errors: -EINVAL bad options or name; -EBADMSG invalid source (err says
 * which file and tensor); -EEXIST model exists; -ENOENT source missing;
 * -EINTR cancelled; -ENOSPC; -EIO; -ENOMEM. */
int tcz_import(tcz_store *s, const char *const *srcs, size_t n,
	       const tcz_import_opts *o, tcz_import_result *res, char *err,
	       size_t errlen);

/* Asks a running tcz_import to stop and roll back (async-signal-safe). */
void tcz_import_cancel(void);

#endif
