/* Stream records and keys shared by the stream code, verify and the id
 * counter; not a public header (store/stream.h is). Layouts are in
 * docs/formats.md ("Streams"). */
#ifndef TCZ_STORE_STREAM_INT_H
#define TCZ_STORE_STREAM_INT_H

#include <lmdb.h>
#include <stdint.h>

#include "store/internal.h"
#include "store/stream.h"

#define TCZ__STREAM_MAGIC 0x52545354u /* "TSTR" */
#define TCZ__STREAM_VERSION 1u
#define TCZ__SIDX_KEY 16u /* stream id . first frame */
#define TCZ__SEG_KEY 32u  /* stream id . start ts . end ts . first frame */

/* Index of a width in the per-width totals: 3, 5, 7, 8 bits -> 0..3;
 * -1 for any other width. */
static inline int tcz__width_slot(unsigned bits)
{
	switch (bits) {
	case 3: return 0;
	case 5: return 1;
	case 7: return 2;
	case 8: return 3;
	default: return -1;
	}
}

static inline unsigned tcz__slot_bits(int slot)
{
	static const unsigned b[4] = {3, 5, 7, 8};
	return b[slot];
}

/* The stream record (table streams, keyed by name). */
typedef struct tcz__srec {
	uint64_t id, created;
	tcz_stream_params p;
	uint64_t frames, segments, stored_bytes, overhead_bytes;
	uint64_t first_ts, last_ts;
	uint64_t version, data_rev;
	tcz_stream_width width[4];
} tcz__srec;

/* Errors: -EIO checksum mismatch; -EBADMSG malformed (another magic or
 * version, parameters out of range, totals that do not add up). */
int tcz__srec_decode(const void *p, size_t n, tcz__srec *r);
int tcz__srec_encode(const tcz__srec *r, tcz_wbuf *w);
/* The id at its fixed place whatever the checksum says (a damaged
 * record's id still counts for the id counter). Errors: -EBADMSG. */
int tcz__srec_id(const void *p, size_t n, uint64_t *id);

/* An index record (table sindex, keyed stream id . first frame): where a
 * segment is and when its frames were taken. */
typedef struct tcz__sidx {
	uint64_t start_ts, end_ts;
	uint32_t frames, bits;
	uint32_t seg_len; /* bytes of the TQTC segment (without checksum) */
	uint32_t ts_kind; /* 0 regular (step), 1 listed (deltas) */
	uint64_t step;
	const unsigned char *deltas; /* kind 1: LEB128, aliasing the record */
	uint32_t dlen;
	size_t rec_len; /* bytes of the whole record */
} tcz__sidx;

#define TCZ__TS_REGULAR 0u
#define TCZ__TS_LISTED 1u

/* Errors: -EIO checksum; -EBADMSG inconsistent (timestamps that do not
 * lead from start_ts to end_ts in frames steps, a bad width). */
int tcz__sidx_decode(const void *p, size_t n, tcz__sidx *x);
/* Encodes an index record for frames taken at ts[0..frames). */
int tcz__sidx_encode(const uint64_t *ts, uint32_t frames, unsigned bits,
		     uint32_t seg_len, tcz_wbuf *w);
/* The same record with another width and length (a re-encoding keeps
 * the timestamps). */
int tcz__sidx_reencode(const tcz__sidx *x, unsigned bits, uint32_t seg_len,
		       tcz_wbuf *w);
/* Timestamps of frames [a, b) of the segment into out[b - a]
 * (a <= b <= frames; the record was decoded, hence is consistent). */
void tcz__sidx_ts(const tcz__sidx *x, uint32_t a, uint32_t b, uint64_t *out);

static inline void tcz__sidx_key(unsigned char k[TCZ__SIDX_KEY], uint64_t id,
				 uint64_t first)
{
	tcz_be64(k, id);
	tcz_be64(k + 8, first);
}

static inline void tcz__seg_key(unsigned char k[TCZ__SEG_KEY], uint64_t id,
				uint64_t start, uint64_t end, uint64_t first)
{
	tcz_be64(k, id);
	tcz_be64(k + 8, start);
	tcz_be64(k + 16, end);
	tcz_be64(k + 24, first);
}

/* Stream record of name in txn. Errors: -ENOENT (also when the store
 * has no stream tables); -EIO, -EBADMSG damaged (message set). */
int tcz__stream_get(tcz_store *s, MDB_txn *txn, const char *name,
		    tcz__srec *r);
int tcz__stream_put(tcz_store *s, MDB_txn *txn, const char *name,
		    const tcz__srec *r);

/* The record of stream name as a tcz_stream_info (statistics zero, no
 * pin). Errors: -ENOENT (message set); -EIO, -EBADMSG. */
int tcz__stream_info(tcz_store *s, MDB_txn *txn, const char *name,
		     tcz_stream_info *out);

/* Access record of stream id ({0, 0, 0, -1} when none or damaged). */
void tcz__sstat_get(tcz_store *s, MDB_txn *txn, uint64_t id, tcz_access *a);
int tcz__sstat_put(tcz_store *s, MDB_txn *txn, uint64_t id,
		   const tcz_access *a);

/* Raises meta "stream_generation". */
int tcz__stream_gen_bump(tcz_store *s, MDB_txn *txn);

/* The largest id the stream tables use (0 if none): for the id counter. */
uint64_t tcz__stream_max_id(tcz_store *s, MDB_txn *txn);

/* The tier of a stream with access record a at now (its pin, else its
 * score under th). */
tcz_tier tcz__stream_tier(const tcz_access *a, const tcz_tier_thresholds *th,
			  uint64_t now);

#endif
