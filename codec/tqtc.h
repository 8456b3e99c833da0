/* TQTC temporal segments and the streaming compressor (SPEC section 6).
 *
 * A segment holds frame_count frames of tensor_len f32 values quantized
 * with one shared set of f16 group scales (groupwise symmetric, as
 * codec/quant.h), codes packed frame after frame (codec/bitpack.h).
 * Binary layout, little-endian, version 1:
 *   0  u32 magic 0x43545154 ("TQTC")   4  u8 version (1)   5  u8 bits
 *   6  u32 group_len   10 u32 tensor_len N   14 u32 frame_count F
 *   18 u32 scale_count S = ceil(N/group_len)   22 f16 scales[S]
 *   22+2S u32 data_len D = ceil(N*F*bits/8)    26+2S u8 data[D]
 * Total size 26 + 2*ceil(N/G) + ceil(N*F*B/8). Frame f's codes start at
 * bit f*N*bits of data (frames are not byte aligned unless N*B % 8 == 0). */
#ifndef TCZ_TQTC_H
#define TCZ_TQTC_H

#include <stddef.h>
#include <stdint.h>

#include "codec/tier.h"

#define TCZ_TQTC_MAGIC 0x43545154u
#define TCZ_TQTC_VERSION 1u

/* Exact segment size; 0 for invalid parameters (zero N, G or F, bits
 * outside 1..8) or on overflow. */
size_t tcz_tqtc_size(uint32_t tensor_len, uint32_t group_len,
		     uint32_t frame_count, unsigned bits);

/* A parsed segment; pointers alias the parsed buffer. */
typedef struct tcz_tqtc_view {
	unsigned bits;
	uint32_t group_len, tensor_len, frame_count, scale_count, data_len;
	const unsigned char *scales; /* scale_count f16, little-endian */
	const unsigned char *data;   /* data_len bytes */
} tcz_tqtc_view;

/* Validates and parses a segment of exactly len bytes.
 * Errors: -EBADMSG bad magic, truncated buffer, bits not in {3,5,7,8},
 * zero lengths, scale_count != ceil(N/G), data_len != ceil(N*F*B/8), or a
 * total different from len; -EPROTONOSUPPORT a version other than 1.
 * Never reads outside [buf, buf+len). */
int tcz_tqtc_parse(const void *buf, size_t len, tcz_tqtc_view *out);

/* Decodes frame `frame` (< frame_count) into out[tensor_len].
 * Errors: -EINVAL frame out of range. */
int tcz_tqtc_decode_frame(const tcz_tqtc_view *v, uint32_t frame,
			  float *out);

/* Decodes all frames into out[frame_count * tensor_len]. */
int tcz_tqtc_decode(const tcz_tqtc_view *v, float *out);

/* Encodes frame_count frames (frames[f*N + i]) into one segment. With
 * scales == NULL the group scales come from the maximum over all frames;
 * otherwise the given f16 scales are used and values beyond them clamp.
 * Errors: -EINVAL bad parameters (bits not in {3,5,7,8}); -EDOM NaN/inf;
 * -ENOBUFS dst_cap < tcz_tqtc_size(...). */
int tcz_tqtc_encode(const float *frames, uint32_t tensor_len,
		    uint32_t frame_count, uint32_t group_len, unsigned bits,
		    const uint16_t *scales, void *dst, size_t dst_cap,
		    size_t *out_len);

/* Streaming compressor policy. */
typedef struct tcz_tqtc_policy {
	uint32_t group_len;    /* default 64 */
	uint32_t drift_pct_q8; /* default 26 (~10 %) */
	unsigned hot_bits;     /* default 8 */
	unsigned warm_bits;    /* default 7; 5 allowed */
	unsigned cold_bits;    /* default 3 */
	uint32_t max_frames;   /* frames per segment; 0 = as many as fit in
				* 1 MiB of decoded f32 (at least 1) */
	tcz_tier_thresholds thresholds;
} tcz_tqtc_policy;

void tcz_tqtc_policy_default(tcz_tqtc_policy *p);

/* A finished segment: data is malloc'd and owned by the caller (free()). */
typedef struct tcz_tqtc_segment {
	uint64_t start_ts, end_ts; /* timestamps of first and last frame */
	unsigned bits;
	uint32_t frame_count;
	unsigned char *data;
	size_t len;
} tcz_tqtc_segment;

typedef struct tcz_tqtc_enc tcz_tqtc_enc;

/* p NULL means tcz_tqtc_policy_default. Errors: -EINVAL tensor_len 0 or
 * bad policy (group_len 0, a width not in {3,5,7,8}); -ENOMEM. */
int tcz_tqtc_enc_create(uint32_t tensor_len, const tcz_tqtc_policy *p,
			tcz_tqtc_enc **out);
void tcz_tqtc_enc_free(tcz_tqtc_enc *e); /* NULL is fine */

/* Appends a frame of tensor_len values with timestamp ts (non-decreasing).
 * A new segment starts on the first frame, when the tier's bit width
 * changed since the open segment began, when the open segment is full, or
 * on drift: some group has max|v| > f16(scale)*qmax*(1 + drift_pct_q8/256),
 * scale being the group's scale computed from the open segment's first
 * frame. (A finished segment stores scales computed from the maximum over
 * all its frames, so values admitted within the drift margin never clamp.)
 * Starting a new segment finishes the open one into *out and sets *have=1;
 * otherwise *have=0.
 * Errors: -EINVAL ts earlier than the previous frame's; -EDOM NaN/inf in
 * the frame; -ENOMEM. On error the compressor state is unchanged. */
int tcz_tqtc_enc_push(tcz_tqtc_enc *e, uint64_t ts, const float *frame,
		      tcz_tqtc_segment *out, int *have);

/* Finishes the open segment (if any) into *out. */
int tcz_tqtc_enc_flush(tcz_tqtc_enc *e, tcz_tqtc_segment *out, int *have);

/* Encodes the open segment into *out without finishing it (for readers of
 * a stream being written); *have=0 when no frame is open. */
int tcz_tqtc_enc_peek(const tcz_tqtc_enc *e, tcz_tqtc_segment *out,
		      int *have);

/* Access statistics for the tier score at time now (seconds). Until the
 * first call (or touch) the score is 0, i.e. cold unless pinned. */
void tcz_tqtc_enc_set_access(tcz_tqtc_enc *e, uint64_t access_count,
			     uint64_t last_access, uint64_t now);

/* Records one access at time now. */
void tcz_tqtc_enc_touch(tcz_tqtc_enc *e, uint64_t now);

/* Pins the tier (tier >= 0) or returns to the score (tier < 0). */
void tcz_tqtc_enc_pin(tcz_tqtc_enc *e, int tier);

/* The tier new frames are encoded at now. */
tcz_tier tcz_tqtc_enc_tier(const tcz_tqtc_enc *e);

#endif
