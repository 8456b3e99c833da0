/* Tiering actions (SPEC 7): re-encoding a model's tensors by their tier.
 * Used by the daemon's background tierer and by `tczfs tier run`.
 *
 * Cost policy (the default; the bytes served never change): cold tensors
 * stored lossless are re-encoded into the densest lossless form (zstd at
 * a high level over the byte planes, in chunks of TCZ_CHUNK_MAX: fewer
 * LMDB values, fewer half-empty last pages; a tensor of one chunk, or a
 * GGUF one, keeps its chunks, each kept as it was when the dense coding
 * is not smaller); each new chunk is decoded and compared with the old
 * bytes before anything is committed.
 * Precision policy (opt-in per model): cold tensors are re-quantized to
 * 3 bits, warm ones to the warm width (7, or 5), hot ones kept; a width
 * is used only when the tensor's relative error against the imported
 * values stays within the model's bound (else the narrowest wider width
 * that does, else nothing changes). From lossless values the error is
 * exact; from quantized ones the imported values are gone, so the new
 * error is a bound (triangle inequality), recorded and flagged as one.
 * Each change bumps the tensor's generation and mtime.
 *
 * Changes are committed in batches (one transaction each; a new model
 * revision); readers of the old revision keep reading it (deferred
 * release), and a crash rolls an uncommitted batch back. */
#ifndef TCZ_TIERING_H
#define TCZ_TIERING_H

#include <stdint.h>

#include "codec/tier.h"
#include "store/store.h"

typedef struct tcz_tiering_cfg {
	tcz_tier_thresholds th;
	uint64_t now;          /* seconds, tcz_store_now() usually */
	unsigned warm_bits;    /* precision: warm width, 7 or 5 */
	int dense_level;       /* cost: zstd level of cold chunks (19) */
	uint64_t io_bytes_s;   /* bytes processed per second at most, 0 any */
	volatile int *stop;    /* set (async) to stop between chunks */
	/* after each tensor: tensors done and total, bytes processed */
	void (*progress)(void *ud, uint32_t done, uint32_t total,
			 uint64_t bytes);
	void *ud;
} tcz_tiering_cfg;

void tcz_tiering_cfg_default(tcz_tiering_cfg *c);

typedef struct tcz_tiering_report {
	uint32_t dense;     /* tensors re-encoded losslessly */
	uint32_t requant;   /* tensors re-quantized */
	uint32_t kept;      /* candidates whose bound or size said no */
	uint32_t commits;
	uint64_t before, after; /* stored bytes of the changed tensors */
} tcz_tiering_report;

/* The tier of a tensor with access record a (its pin, else its score). */
tcz_tier tcz_tiering_tier(const tcz_access *a, const tcz_tiering_cfg *c);

/* Applies model name's policy to its tensors, given their access records
 * acc[0..n_tensors) (NULL: the stored ones). rep (may be NULL) adds up
 * what was done.
 * Errors: -ENOENT no such model; -EAGAIN the model changed meanwhile
 * (another tierer: run again); -ECANCELED *stop was set; -EIO a stored
 * value is damaged or a re-encoding did not verify; -ENOSPC; -ENOMEM. */
int tcz_tiering_apply(tcz_store *s, const char *name, const tcz_access *acc,
		      const tcz_tiering_cfg *c, tcz_tiering_report *rep);

#endif
