#include "codec/tqtc.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/bitpack.h"
#include "codec/half.h"
#include "codec/qkernel.h"

#define TQTC_FIXED 26u /* header fields plus the data_len word */
#define F16_MAX_FINITE 0x7bffu

static int bits_ok(unsigned bits)
{
	return bits == 3 || bits == 5 || bits == 7 || bits == 8;
}

static uint32_t load32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4); /* the build admits little-endian hosts only */
	return v;
}

static void store32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* ceil(N*F*B/8), or 0 when it does not fit the u32 data_len field. */
static uint64_t data_len(uint32_t n, uint32_t frames, unsigned bits)
{
	uint64_t codes = (uint64_t)n * frames; /* < 2^64 */
	uint64_t d = codes / 8 * bits + (codes % 8 * bits + 7) / 8;
	return d > UINT32_MAX ? 0 : d;
}

size_t tcz_tqtc_size(uint32_t tensor_len, uint32_t group_len,
		     uint32_t frame_count, unsigned bits)
{
	if (!tensor_len || !group_len || !frame_count || bits < 1 || bits > 8)
		return 0;
	uint64_t d = data_len(tensor_len, frame_count, bits);
	if (!d)
		return 0;
	uint64_t s = tensor_len / group_len + (tensor_len % group_len != 0);
	uint64_t total = TQTC_FIXED + 2 * s + d; /* < 2^34 */
	return total > SIZE_MAX ? 0 : (size_t)total;
}

int tcz_tqtc_parse(const void *buf, size_t len, tcz_tqtc_view *out)
{
	const unsigned char *b = buf;

	if (!b || len < 4 || load32(b) != TCZ_TQTC_MAGIC)
		return -EBADMSG;
	/* The version is judged before the rest: a later version may lay
	 * out everything after it differently. */
	if (len < 5)
		return -EBADMSG;
	if (b[4] != TCZ_TQTC_VERSION)
		return -EPROTONOSUPPORT;
	if (len < 22)
		return -EBADMSG;
	tcz_tqtc_view v = {
		.bits = b[5],
		.group_len = load32(b + 6),
		.tensor_len = load32(b + 10),
		.frame_count = load32(b + 14),
		.scale_count = load32(b + 18),
	};
	if (!bits_ok(v.bits) || !v.group_len || !v.tensor_len ||
	    !v.frame_count)
		return -EBADMSG;
	uint32_t s = v.tensor_len / v.group_len +
		     (v.tensor_len % v.group_len != 0);
	if (v.scale_count != s)
		return -EBADMSG;
	/* 2*S <= 2^33: no overflow in 64-bit arithmetic */
	uint64_t dl_at = 22 + 2 * (uint64_t)s;
	if (len < dl_at + 4)
		return -EBADMSG;
	v.data_len = load32(b + dl_at);
	if (v.data_len != data_len(v.tensor_len, v.frame_count, v.bits) ||
	    len != tcz_tqtc_size(v.tensor_len, v.group_len, v.frame_count,
				 v.bits))
		return -EBADMSG;
	v.scales = b + 22;
	v.data = b + dl_at + 4;
	*out = v;
	return 0;
}

int tcz_tqtc_decode_frame(const tcz_tqtc_view *v, uint32_t frame,
			  float *out)
{
	if (frame >= v->frame_count)
		return -EINVAL;
	tcz_qk_decode(v->data, (size_t)frame * v->tensor_len, v->tensor_len,
		      v->group_len, v->scales, 0, v->bits, out);
	return 0;
}

int tcz_tqtc_decode(const tcz_tqtc_view *v, float *out)
{
	for (uint32_t f = 0; f < v->frame_count; f++)
		tcz_tqtc_decode_frame(v, f, out + (size_t)f * v->tensor_len);
	return 0;
}

/* The f16 scale for a group whose largest magnitude is m. Outside f16's
 * range the scale saturates (values beyond it clamp) and a nonzero group
 * never gets scale 0, so it does not decode to all zeros. */
static uint16_t scale_f16(uint32_t mbits, unsigned qmax)
{
	float m;
	memcpy(&m, &mbits, 4);
	uint16_t h = tcz_f32_to_f16(m / (float)qmax);
	if (h >= 0x7c00u)
		return F16_MAX_FINITE;
	if (h == 0 && m > 0)
		return 1;
	return h;
}

static void put_scale(unsigned char *dst, uint32_t g, uint16_t h)
{
	dst[22 + 2 * (size_t)g] = (unsigned char)h;
	dst[23 + 2 * (size_t)g] = (unsigned char)(h >> 8);
}

/* Completes a segment whose scales the caller already put at dst + 22:
 * writes the header fields and the codes. The caller checked the
 * parameters; dst holds tcz_tqtc_size(...) bytes. */
static void encode_seg(const float *frames, uint32_t n, uint32_t f,
		       uint32_t glen, unsigned bits, unsigned char *dst)
{
	uint32_t s = n / glen + (n % glen != 0);
	store32(dst, TCZ_TQTC_MAGIC);
	dst[4] = TCZ_TQTC_VERSION;
	dst[5] = (unsigned char)bits;
	store32(dst + 6, glen);
	store32(dst + 10, n);
	store32(dst + 14, f);
	store32(dst + 18, s);
	unsigned char *dl = dst + 22 + 2 * (size_t)s;
	store32(dl, (uint32_t)data_len(n, f, bits));
	tcz_qk_encode(frames, (size_t)n * f, n, glen, dst + 22, 0, bits,
		      dl + 4);
}

int tcz_tqtc_encode(const float *frames, uint32_t tensor_len,
		    uint32_t frame_count, uint32_t group_len, unsigned bits,
		    const uint16_t *scales, void *dst, size_t dst_cap,
		    size_t *out_len)
{
	if (!bits_ok(bits))
		return -EINVAL;
	size_t size = tcz_tqtc_size(tensor_len, group_len, frame_count, bits);
	if (!size)
		return -EINVAL;
	uint32_t s = tensor_len / group_len + (tensor_len % group_len != 0);
	unsigned qmax = tcz_qk_qmax(bits);
	for (uint32_t g = 0; scales && g < s; g++)
		if (scales[g] >= 0x7c00u) /* negative, infinite or NaN */
			return -EINVAL;
	if (dst_cap < size)
		return -ENOBUFS;

	/* One group at a time across all frames, so the scale goes straight
	 * into its place in dst; the scan also rejects NaN and infinity. */
	for (uint32_t g = 0; g < s; g++) {
		size_t off = (size_t)g * group_len;
		size_t len = tensor_len - off < group_len ? tensor_len - off
							  : group_len;
		uint32_t m = 0;
		for (uint32_t f = 0; f < frame_count; f++) {
			uint32_t mb = tcz_qk_absmax_bits(
				frames + (size_t)f * tensor_len + off, len);
			if (mb >= 0x7f800000u)
				return -EDOM;
			m = mb > m ? mb : m;
		}
		put_scale(dst, g, scales ? scales[g] : scale_f16(m, qmax));
	}
	encode_seg(frames, tensor_len, frame_count, group_len, bits, dst);
	*out_len = size;
	return 0;
}

void tcz_tqtc_policy_default(tcz_tqtc_policy *p)
{
	*p = (tcz_tqtc_policy){
		.group_len = 64,
		.drift_pct_q8 = 26,
		.hot_bits = 8,
		.warm_bits = 7,
		.cold_bits = 3,
		.max_frames = 0,
		.thresholds = TCZ_TIER_THRESHOLDS_DEFAULT,
	};
}

struct tcz_tqtc_enc {
	uint32_t n, glen, groups, max_frames;
	tcz_tqtc_policy pol;

	/* access statistics and pin for the tier */
	uint64_t access_count, last_access, now;
	int pinned; /* tier, or -1 */

	int seen;         /* a frame was pushed: last_ts is valid */
	uint64_t last_ts; /* timestamp of the last frame pushed */

	/* the open segment: its frames stay as f32 until it is finished, so
	 * its scales can cover every frame it took in */
	uint32_t count; /* frames in it; 0 = none open */
	uint32_t cap;   /* frames buf can hold */
	unsigned bits;
	uint64_t start_ts;
	float *buf;       /* count * n values */
	uint32_t *mx;     /* per group, max |v| bits over its frames */
	float *thr;       /* drift when a group's max|v| exceeds this */
	uint32_t *gmax;   /* scratch: the incoming frame's group maxima */
};

void tcz_tqtc_enc_free(tcz_tqtc_enc *e)
{
	if (!e)
		return;
	free(e->buf);
	free(e->mx);
	free(e->thr);
	free(e->gmax);
	free(e);
}

int tcz_tqtc_enc_create(uint32_t tensor_len, const tcz_tqtc_policy *p,
			tcz_tqtc_enc **out)
{
	tcz_tqtc_policy def;
	if (!p) {
		tcz_tqtc_policy_default(&def);
		p = &def;
	}
	if (!tensor_len || !p->group_len || !bits_ok(p->hot_bits) ||
	    !bits_ok(p->warm_bits) || !bits_ok(p->cold_bits))
		return -EINVAL;
#if SIZE_MAX / 4 < UINT32_MAX
	if (tensor_len > SIZE_MAX / sizeof(float))
		return -EINVAL;
#endif

	tcz_tqtc_enc *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->n = tensor_len;
	e->glen = p->group_len;
	e->groups = tensor_len / p->group_len + (tensor_len % p->group_len != 0);
	e->pol = *p;
	e->pinned = -1;

	/* 0 means about 1 MiB of decoded f32 per segment; in any case no
	 * more than the u32 data_len field can describe at 8 bits. */
	uint64_t mf = p->max_frames;
	if (!mf)
		mf = ((uint64_t)1 << 20) / ((uint64_t)tensor_len * 4);
	if (mf > UINT32_MAX / tensor_len)
		mf = UINT32_MAX / tensor_len;
	e->max_frames = mf ? (uint32_t)mf : 1;

	e->cap = 1;
	e->buf = malloc((size_t)tensor_len * sizeof(float));
	e->mx = calloc(e->groups, sizeof(*e->mx));
	e->thr = calloc(e->groups, sizeof(*e->thr));
	e->gmax = calloc(e->groups, sizeof(*e->gmax));
	if (!e->buf || !e->mx || !e->thr || !e->gmax) {
		tcz_tqtc_enc_free(e);
		return -ENOMEM;
	}
	*out = e;
	return 0;
}

static unsigned tier_bits(const tcz_tqtc_enc *e)
{
	switch (tcz_tqtc_enc_tier(e)) {
	case TCZ_TIER_HOT: return e->pol.hot_bits;
	case TCZ_TIER_WARM: return e->pol.warm_bits;
	default: return e->pol.cold_bits;
	}
}

/* Encodes the open segment into a new buffer; the state is not touched. */
static int build(const tcz_tqtc_enc *e, tcz_tqtc_segment *out)
{
	size_t size = tcz_tqtc_size(e->n, e->glen, e->count, e->bits);
	unsigned char *data = malloc(size);
	if (!data)
		return -ENOMEM;
	unsigned qmax = tcz_qk_qmax(e->bits);
	for (uint32_t g = 0; g < e->groups; g++)
		put_scale(data, g, scale_f16(e->mx[g], qmax));
	encode_seg(e->buf, e->n, e->count, e->glen, e->bits, data);
	*out = (tcz_tqtc_segment){
		.start_ts = e->start_ts,
		.end_ts = e->last_ts,
		.bits = e->bits,
		.frame_count = e->count,
		.data = data,
		.len = size,
	};
	return 0;
}

/* The drift limit of a group whose segment scale is the f16 h: the
 * largest f32 not above f16(h) * qmax * (1 + pct/256). The product is
 * exact in double (11 + 7 + 33 significant bits), and for an f32 x,
 * x > bound exactly when x > the largest f32 not above the bound. */
static float drift_limit(uint16_t h, unsigned qmax, uint32_t pct)
{
	double t = (double)tcz_f16_to_f32(h) * qmax * (1.0 + pct / 256.0);
	if (t >= (double)FLT_MAX)
		return FLT_MAX;
	float f = (float)t;
	if ((double)f > t)
		f = nextafterf(f, 0.0f);
	return f;
}

int tcz_tqtc_enc_push(tcz_tqtc_enc *e, uint64_t ts, const float *frame,
		      tcz_tqtc_segment *out, int *have)
{
	if (e->seen && ts < e->last_ts)
		return -EINVAL;
	int drift = 0;
	for (uint32_t g = 0; g < e->groups; g++) {
		size_t off = (size_t)g * e->glen;
		size_t len = e->n - off < e->glen ? e->n - off : e->glen;
		uint32_t mb = tcz_qk_absmax_bits(frame + off, len);
		if (mb >= 0x7f800000u)
			return -EDOM;
		e->gmax[g] = mb;
		if (e->count) {
			float m;
			memcpy(&m, &mb, 4);
			drift |= m > e->thr[g];
		}
	}
	unsigned bits = tier_bits(e);
	int fresh = !e->count || bits != e->bits ||
		    e->count >= e->max_frames || drift;

	if (!fresh && e->count == e->cap) {
		uint64_t cap = (uint64_t)e->cap * 2;
		if (cap > e->max_frames)
			cap = e->max_frames;
		if (cap * e->n > SIZE_MAX / sizeof(float))
			return -ENOMEM;
		float *nb = realloc(e->buf, (size_t)cap * e->n * sizeof(float));
		if (!nb)
			return -ENOMEM;
		e->buf = nb;
		e->cap = (uint32_t)cap;
	}
	*have = 0;
	if (fresh && e->count) {
		int r = build(e, out);
		if (r)
			return r;
		*have = 1;
	}

	if (fresh) {
		unsigned qmax = tcz_qk_qmax(bits);
		e->count = 0;
		e->bits = bits;
		e->start_ts = ts;
		for (uint32_t g = 0; g < e->groups; g++) {
			e->mx[g] = e->gmax[g];
			e->thr[g] = drift_limit(scale_f16(e->gmax[g], qmax),
						qmax, e->pol.drift_pct_q8);
		}
	} else {
		for (uint32_t g = 0; g < e->groups; g++)
			if (e->gmax[g] > e->mx[g])
				e->mx[g] = e->gmax[g];
	}
	memcpy(e->buf + (size_t)e->count * e->n, frame,
	       (size_t)e->n * sizeof(float));
	e->count++;
	e->seen = 1;
	e->last_ts = ts;
	return 0;
}

int tcz_tqtc_enc_flush(tcz_tqtc_enc *e, tcz_tqtc_segment *out, int *have)
{
	*have = 0;
	if (!e->count)
		return 0;
	int r = build(e, out);
	if (r)
		return r;
	e->count = 0;
	*have = 1;
	return 0;
}

int tcz_tqtc_enc_peek(const tcz_tqtc_enc *e, tcz_tqtc_segment *out,
		      int *have)
{
	*have = 0;
	if (!e->count)
		return 0;
	int r = build(e, out);
	if (r)
		return r;
	*have = 1;
	return 0;
}

void tcz_tqtc_enc_set_access(tcz_tqtc_enc *e, uint64_t access_count,
			     uint64_t last_access, uint64_t now)
{
	e->access_count = access_count;
	e->last_access = last_access;
	e->now = now;
}

void tcz_tqtc_enc_touch(tcz_tqtc_enc *e, uint64_t now)
{
	if (e->access_count < UINT64_MAX)
		e->access_count++;
	e->last_access = now;
	e->now = now;
}

void tcz_tqtc_enc_pin(tcz_tqtc_enc *e, int tier)
{
	e->pinned = tier > TCZ_TIER_COLD ? TCZ_TIER_COLD : tier;
}

tcz_tier tcz_tqtc_enc_tier(const tcz_tqtc_enc *e)
{
	if (e->pinned >= 0)
		return (tcz_tier)e->pinned;
	uint64_t score = tcz_tier_score(e->access_count, e->last_access, e->now);
	return tcz_tier_of_score(score, &e->pol.thresholds);
}
