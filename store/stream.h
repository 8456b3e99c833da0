/* Temporal tensor streams (SPEC 6, 7): append-only sequences of frames of
 * N f32 values, stored as TQTC segments (codec/tqtc.h).
 *
 * A stream has a name (the rules of model names, its own namespace), an
 * id from the store's id counter (never reused: inode numbers may derive
 * from it) and parameters fixed at creation. Frames carry timestamps in
 * milliseconds that never decrease. Frames are grouped into segments that
 * share one set of group scales; a new segment starts on a writer's first
 * frame, when the stream's tier changes the width, on drift (SPEC 6) and
 * when the open segment holds segment_frames frames. Bits per segment come
 * from the stream's tier at encode time: hot 8, warm 7 (or 5), cold 3.
 *
 * Writing: one writer per stream at a time (any process), holding the
 * frames it was given in memory until a commit; tcz_stream_writer_flush is
 * the group commit (one LMDB transaction for every segment since the last
 * one). Readers see committed frames only, whole frames only, and never
 * wait for a writer. A crash loses what was not committed and nothing
 * else.
 *
 * Handles: a tcz_stream_writer and a tcz_stream_reader belong to one
 * thread at a time (callers serialize); the tcz_store is shared.
 * Functions return 0 or a negative errno; tcz_store_errmsg() then gives a
 * one-line message where one helps. */
#ifndef TCZ_STREAM_H
#define TCZ_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "codec/tier.h"
#include "store/store.h"
#include "store/tiering.h"

#define TCZ_STREAM_DIM_MAX (1u << 24)    /* values per frame at most */
#define TCZ_STREAM_GROUP_MAX 65536u
#define TCZ_STREAM_DRIFT_MAX 65535u
#define TCZ_STREAM_SEG_BYTES (1u << 20)  /* default: f32 bytes per segment */
#define TCZ_STREAM_SEG_BYTES_MAX (64u << 20) /* segment_frames * dim * 4 */

/* ---- streams ----------------------------------------------------------- */

typedef struct tcz_stream_params {
	uint32_t dim;            /* N: values per frame, 1..TCZ_STREAM_DIM_MAX */
	uint32_t group_len;      /* values per scale, 1..65536 (64) */
	uint32_t warm_bits;      /* width of the warm tier: 7 or 5 (7) */
	uint32_t drift_pct_q8;   /* drift margin in 1/256ths (26) */
	uint32_t segment_frames; /* frames per segment at most; 0: as many
				  * as fill TCZ_STREAM_SEG_BYTES of f32 */
} tcz_stream_params;

/* The defaults above, dim 0 (the caller sets it). */
void tcz_stream_params_default(tcz_stream_params *p);

/* True when name is a valid stream name (as tcz_model_name_valid). */
int tcz_stream_name_valid(const char *name);

/* Creates stream name with parameters p; *id (may be NULL) receives its
 * id. Errors: -EINVAL bad name or parameter (message says which); -EEXIST
 * a stream of that name exists; -EROFS; -ENOSPC; -EIO. */
int tcz_stream_create(tcz_store *s, const char *name,
		      const tcz_stream_params *p, uint64_t *id);

/* Removes stream name: its record, index, segments and statistics, in one
 * transaction. Its open readers get -ENOENT from then on (or data they
 * had already fetched), never other bytes; its writer's next commit fails
 * with -ENOENT. Errors: -ENOENT; -EROFS; -ENOSPC; -EIO. */
int tcz_stream_remove(tcz_store *s, const char *name);

/* Sorted stream names (free with tcz_names_free); none in a store without
 * stream tables. Errors: -ENOMEM, -EIO. */
int tcz_stream_list(tcz_store *s, char ***names, size_t *count);

typedef struct tcz_stream_width { /* totals of the segments of one width */
	uint64_t segments, frames, bytes;
} tcz_stream_width;

typedef struct tcz_stream_info {
	uint64_t id;
	tcz_stream_params params;
	uint64_t created;        /* unix seconds */
	uint64_t frames;         /* committed frames */
	uint64_t segments;
	uint64_t stored_bytes;   /* TQTC segment bytes (SPEC 6's size) */
	uint64_t overhead_bytes; /* index records and segment checksums */
	uint64_t first_ts, last_ts; /* ms; 0 when there is no frame */
	uint64_t version;  /* raised by every commit that changes the stream */
	uint64_t data_rev; /* raised when values of committed frames change
			    * (a re-encoding): cached pages are stale */
	tcz_stream_width width[4]; /* 3, 5, 7 and 8 bits */
	tcz_tier tier;             /* now: the pin, else the score's */
	int32_t pinned;            /* a tcz_tier, or -1 */
	uint64_t accesses, bytes_read, last_access; /* statistics (SPEC 7) */
} tcz_stream_info;

/* The width held in info->width[i]: 3, 5, 7, 8. */
unsigned tcz_stream_width_bits(int i);

/* frames x dim x 4 over stored_bytes (0 without frames). */
double tcz_stream_ratio(const tcz_stream_info *info);

/* Everything about stream name, in one short read transaction; the tier
 * at tcz_store_now() under the default thresholds.
 * Errors: -ENOENT; -EIO, -EBADMSG a damaged record. */
int tcz_stream_stat(tcz_store *s, const char *name, tcz_stream_info *out);

typedef struct tcz_stream_seg { /* one segment, as the index says */
	uint64_t first_frame;
	uint32_t frames, bits;
	uint64_t start_ts, end_ts;
	uint64_t bytes; /* TQTC segment bytes */
} tcz_stream_seg;

/* Every segment of stream name in frame order (malloc'd; free()).
 * Errors: -ENOENT; -EIO a damaged index record; -ENOMEM. */
int tcz_stream_segments(tcz_store *s, const char *name,
			tcz_stream_seg **out, size_t *count);

/* Pins the tier of stream name (a tcz_tier, or -1: follow the score).
 * Writers take it at their next commit; tiering at its next pass.
 * Errors: -ENOENT; -EINVAL; -EROFS; -ENOSPC; -EIO. */
int tcz_stream_set_tier(tcz_store *s, const char *name, int32_t tier);

/* Adds reads read requests and bytes bytes to the statistics of stream
 * name and raises its last access to last (unix s), in one transaction
 * (several daemons add up). id, unless 0, must be the stream's id:
 * nothing is written for a stream that was removed or replaced.
 * Errors: -EROFS; -ENOSPC; -EIO. */
int tcz_stream_add_access(tcz_store *s, const char *name, uint64_t id,
			  uint64_t reads, uint64_t bytes, uint64_t last);

/* A counter raised by every change to any stream (create, remove, commit,
 * pin, re-encoding): when it did not move, no stream changed. 0 in a
 * store where no stream ever changed. Errors: -EIO. */
int tcz_stream_generation(tcz_store *s, uint64_t *gen);

/* The .npy header of a [frames, dim] float32 view (NumPy 1.0, data on a
 * 64-byte boundary): the view's size is *len + frames * dim * 4.
 * Errors: -ENOBUFS cap too small (256 always suffices). */
int tcz_stream_npy_header(uint64_t frames, uint32_t dim, char *out,
			  size_t cap, size_t *len);

/* ---- writing ------------------------------------------------------------ */

typedef struct tcz_stream_writer tcz_stream_writer;

/* Opens the writer of stream name. Appended frames follow the committed
 * ones; timestamps must not be earlier than the last committed frame's.
 * Errors: -ENOENT; -EBUSY another writer (this or another process) has
 * the stream; -EROFS; -ENOMEM; -EIO. */
int tcz_stream_writer_open(tcz_store *s, const char *name,
			   tcz_stream_writer **out);

/* Tier thresholds for the score (default TCZ_TIER_THRESHOLDS_DEFAULT). */
void tcz_stream_writer_set_thresholds(tcz_stream_writer *w,
				      const tcz_tier_thresholds *th);

/* Appends n whole frames (frames[f * dim + i]); frame f gets timestamp
 * ts + f * step. All or nothing (but for -ENOMEM, after which the frames
 * before the one that failed are in: see tcz_stream_writer_get_state).
 * Memory only (a segment that finishes is encoded here); nothing is
 * visible before a commit.
 * Errors: -EINVAL a timestamp earlier than the previous frame's, the
 * timestamps overflow, or a partial frame given to tcz_stream_writer_write
 * is pending; -EDOM a NaN or infinity; -ENOMEM. */
int tcz_stream_writer_append(tcz_stream_writer *w, const float *frames,
			     size_t n, uint64_t ts, uint64_t step);

/* Appends len bytes of little-endian f32 values as they would be written
 * to the end of the stream's file: the pending partial frame is completed
 * first, whole frames are appended (every frame completed by this call
 * gets timestamp ts), and a trailing partial frame waits for its rest.
 * All or nothing, errors as tcz_stream_writer_append (but for the
 * pending-partial case). */
int tcz_stream_writer_write(tcz_stream_writer *w, const void *buf,
			    size_t len, uint64_t ts);

/* Commits the segments that are finished (the open one stays open, so
 * the segmentation does not depend on when this is called): one LMDB
 * transaction. Frames of the open segment are not committed.
 * Errors: -ENOENT the stream was removed; -ENOSPC; -EIO. On error
 * nothing is lost from the writer: a later commit or flush retries. */
int tcz_stream_writer_commit(tcz_stream_writer *w);

/* Group commit: finishes the open segment and commits every appended
 * frame in one LMDB transaction; on return they are durable and visible.
 * A partial frame stays pending. Errors as tcz_stream_writer_commit. */
int tcz_stream_writer_flush(tcz_stream_writer *w);

typedef struct tcz_stream_writer_state {
	uint64_t committed; /* frames committed (the stream's frame count) */
	uint64_t buffered;  /* frames appended, not committed */
	uint64_t pending_bytes; /* encoded bytes of finished, uncommitted
				 * segments */
	size_t partial;     /* bytes of a partial frame waiting */
	unsigned bits;      /* the width new frames are encoded at */
	tcz_tier tier;
	uint64_t last_ts;   /* of the last frame appended (0: none yet) */
} tcz_stream_writer_state;

void tcz_stream_writer_get_state(const tcz_stream_writer *w,
				 tcz_stream_writer_state *st);

/* Flushes, drops a pending partial frame (*dropped, may be NULL, receives
 * its bytes), gives the stream up and frees w, in every case. Returns
 * what the flush returned (frames not committed are then lost). */
int tcz_stream_writer_close(tcz_stream_writer *w, size_t *dropped);

/* Frees w without committing anything more (NULL is fine). */
void tcz_stream_writer_discard(tcz_stream_writer *w);

/* ---- reading ------------------------------------------------------------ */

typedef struct tcz_stream_reader tcz_stream_reader;

/* Opens stream name for reading; its frame count is taken now (see
 * refresh). Errors: -ENOENT; -EIO, -EBADMSG a damaged record; -ENOMEM. */
int tcz_stream_reader_open(tcz_store *s, const char *name,
			   tcz_stream_reader **out);
void tcz_stream_reader_close(tcz_stream_reader *r); /* NULL is fine */

/* Takes the stream's current frame count (one short lookup): reads go up
 * to the count of the last refresh. *info (may be NULL) receives the
 * stream's record as tcz_stream_stat gives it (statistics and tier
 * excepted: zero). A changed data_rev drops what the reader cached.
 * Errors: -ENOENT the stream was removed (or replaced by another of the
 * same name); -EIO, -EBADMSG. */
int tcz_stream_reader_refresh(tcz_stream_reader *r, tcz_stream_info *info);

/* Frame count and dim as of the last refresh (no I/O). */
uint64_t tcz_stream_reader_frames(const tcz_stream_reader *r);
uint32_t tcz_stream_reader_dim(const tcz_stream_reader *r);

/* Decodes frames [a, b) into out[(b - a) * dim] as f32. Each segment is
 * found in O(log segments) and fetched in one short read transaction;
 * the last segment fetched stays in the reader (it may serve a frame a
 * re-encoding replaced since, never another frame).
 * Errors: -ERANGE a > b or b beyond the frame count; -ENOENT the stream
 * was removed; -EIO a damaged segment or index record; -ENOMEM. */
int tcz_stream_read(tcz_stream_reader *r, uint64_t a, uint64_t b, float *out);

/* Reads len bytes at byte offset off of the stream's f32 file (frames
 * after frames, frames x dim x 4 bytes long as of the last refresh);
 * *got receives the bytes read, short only at the end.
 * Errors as tcz_stream_read. */
int tcz_stream_pread(tcz_stream_reader *r, void *buf, size_t len,
		     uint64_t off, size_t *got);

/* Timestamps of frames [a, b) into ts[b - a]. Errors as tcz_stream_read. */
int tcz_stream_read_ts(tcz_stream_reader *r, uint64_t a, uint64_t b,
		       uint64_t *ts);

/* Frames whose timestamps lie in [from, to] (both inclusive) are [*a, *b)
 * (*a == *b when none), within the frame count; O(log segments).
 * Errors: -ENOENT; -EIO. */
int tcz_stream_find_time(tcz_stream_reader *r, uint64_t from, uint64_t to,
			 uint64_t *a, uint64_t *b);

/* ---- tiering -------------------------------------------------------------- */

typedef struct tcz_stream_tier_report {
	uint32_t streams;  /* looked at */
	uint32_t cold;     /* of them cold */
	uint32_t segments; /* re-encoded to 3 bits */
	uint64_t before, after; /* their TQTC bytes */
} tcz_stream_tier_report;

/* Precision tiering of streams (SPEC 7): every committed segment of a
 * cold stream (its pin, else its score under c->th at c->now) that is
 * wider than 3 bits is decoded and re-encoded at 3 bits (never the other
 * way), one transaction per segment under the same key: readers read the
 * old segment or the new one, whole. name NULL: every stream. Honours
 * c->io_bytes_s and c->stop. rep (may be NULL) adds up what was done.
 * Errors: -ENOENT no such stream; -ECANCELED *c->stop was set; -EIO a
 * damaged segment (the others are still done); -EROFS; -ENOSPC; -ENOMEM. */
int tcz_stream_tier_apply(tcz_store *s, const char *name,
			  const tcz_tiering_cfg *c, tcz_stream_tier_report *rep);

#endif
