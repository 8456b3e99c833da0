/* The reader's state, shared by read.c and view.c; not a public header. */
#ifndef TCZ_STORE_READER_H
#define TCZ_STORE_READER_H

#include <lmdb.h>
#include <zstd.h>

#include "codec/lossless.h"
#include "store/internal.h"
#include "store/view.h"

struct tcz_tt;
struct tcz_cache;

struct tcz_reader {
	tcz_store *s;
	MDB_txn *txn; /* a reset read transaction, renewed per fetch */
	tcz_lossless_ctx *lctx;
	struct tcz_blockq_ctx *bctx; /* made on first use */
	ZSTD_DCtx *zctx;
	unsigned char *val; /* the last fetched value */
	size_t val_cap, val_len;
	float *f32; /* scratch for conversions to and from f32 */
	size_t f32_cap;
	struct tcz_cache *cache; /* TT cores go there when set */
	/* TT cores without a cache: the last tensor's, private */
	struct tcz_tt *tt;
	void *tt_mem;
	uint64_t tt_id;
	uint32_t tt_tensor;
	/* tcz_view_read: the last chunk it decoded, for reads that end and
	 * start inside one chunk */
	unsigned char *memo;
	uint64_t memo_id;
	tcz_src memo_src;
	int memo_ok;
	/* tcz__read_chunk_part: the block index record, the blocks' bytes
	 * and a block's decoding */
	unsigned char *bidx, *part;
	size_t bidx_len, bidx_cap, part_cap;
};

#endif
