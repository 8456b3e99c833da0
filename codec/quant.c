#include "codec/quant.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "codec/bitpack.h"
#include "codec/half.h"
#include "codec/qkernel.h"

/* Blob layout (docs/formats.md), little-endian:
 *   0 u32 magic "TCZQ"  4 u8 version  5 u8 bits  6 u8 flags  7 u8 zero
 *   8 u32 group_len    12 u64 n       20 scales[S] (f16, or f32 if flagged)
 *   20 + S*w  packed codes, ceil(n*bits/8) bytes */
#define QUANT_MAGIC 0x515a4354u /* "TCZQ" */
#define QUANT_VERSION 1u
#define QUANT_HDR 20u
#define QUANT_F32_SCALES 0x01u

static int params_ok(const tcz_quant_params *p)
{
	return p && p->bits >= TCZ_QUANT_BITS_MIN &&
	       p->bits <= TCZ_QUANT_BITS_MAX && p->group_len >= 1;
}

/* Header + scales of width w + codes; 0 on overflow. */
static size_t blob_size(uint64_t n, uint32_t glen, unsigned bits, size_t w)
{
	if (n > SIZE_MAX)
		return 0;
	uint64_t groups = n / glen + (n % glen != 0);
	size_t codes = tcz_bitpack_size((size_t)n, bits);
	if (groups > (SIZE_MAX - QUANT_HDR) / w)
		return 0;
	size_t head = QUANT_HDR + (size_t)groups * w;
	if (codes > SIZE_MAX - head)
		return 0;
	return head + codes;
}

size_t tcz_quant_bound(size_t n, const tcz_quant_params *p)
{
	return params_ok(p) ? blob_size(n, p->group_len, p->bits, 4) : 0;
}

size_t tcz_quant_size(size_t n, const tcz_quant_params *p)
{
	return params_ok(p) ? blob_size(n, p->group_len, p->bits, 2) : 0;
}

static size_t group_count(size_t n, uint32_t glen)
{
	return n / glen + (n % glen != 0);
}

/* max|v| / qmax in f32, never 0 for a nonzero group: a scale that
 * underflowed would decode the whole group to 0. */
static float scale_f32(uint32_t mbits, unsigned qmax)
{
	float m;
	memcpy(&m, &mbits, 4);
	float s = m / (float)qmax;
	return (s == 0 && m > 0) ? FLT_TRUE_MIN : s;
}

/* Whether f16 keeps s to f16's normal precision (relative error at most
 * 2^-11): fails on overflow, flush to zero, and coarse subnormals. */
static int f16_holds(float s, uint16_t h)
{
	if (s == 0)
		return 1;
	float back = tcz_f16_to_f32(h);
	return back > 0 && back <= 65504.0f &&
	       fabsf(back - s) <= s * 0x1p-11f;
}

int tcz_quant_encode(const float *src, size_t n, const tcz_quant_params *p,
		     void *dst, size_t dst_cap, size_t *out_len)
{
	if (!params_ok(p))
		return -EINVAL;
	const uint32_t glen = p->group_len;
	const unsigned bits = p->bits, qmax = tcz_qk_qmax(bits);
	size_t size = tcz_quant_size(n, p);
	if (size == 0)
		return -EINVAL;
	if (dst_cap < size)
		return -ENOBUFS;

	unsigned char *d = dst;
	unsigned char *sc = d + QUANT_HDR;
	size_t groups = group_count(n, glen);
	int f32 = 0;

	/* f16 scales unless one group needs f32; an f32 blob is built over
	 * the same space after a second pass, as it is larger. */
	for (size_t g = 0; g < groups; g++) {
		size_t off = g * glen, len = n - off < glen ? n - off : glen;
		uint32_t mb = tcz_qk_absmax_bits(src + off, len);
		if (mb >= 0x7f800000u)
			return -EDOM;
		float s = scale_f32(mb, qmax);
		uint16_t h = tcz_f32_to_f16(s);
		f32 |= !f16_holds(s, h);
		sc[2 * g] = (unsigned char)h;
		sc[2 * g + 1] = (unsigned char)(h >> 8);
	}
	if (f32) {
		size = tcz_quant_bound(n, p);
		if (dst_cap < size)
			return -ENOBUFS;
		for (size_t g = 0; g < groups; g++) {
			size_t off = g * glen, len = n - off < glen ? n - off : glen;
			float s = scale_f32(tcz_qk_absmax_bits(src + off, len),
					    qmax);
			memcpy(sc + 4 * g, &s, 4);
		}
	}

	uint32_t magic = QUANT_MAGIC;
	uint64_t n64 = n;
	memcpy(d, &magic, 4);
	d[4] = QUANT_VERSION;
	d[5] = (unsigned char)bits;
	d[6] = f32 ? QUANT_F32_SCALES : 0;
	d[7] = 0;
	memcpy(d + 8, &glen, 4);
	memcpy(d + 12, &n64, 8);
	tcz_qk_encode(src, n, n, glen, sc, f32, bits,
		      sc + groups * (f32 ? 4 : 2));
	*out_len = size;
	return 0;
}

/* A parsed, validated blob. */
typedef struct qblob {
	unsigned bits;
	int f32;
	uint32_t glen;
	size_t n, groups;
	const unsigned char *scales, *codes;
} qblob;

static int parse(const void *src, size_t len, qblob *b)
{
	const unsigned char *s = src;
	uint32_t magic, glen;
	uint64_t n;

	if (!s || len < QUANT_HDR)
		return -EBADMSG;
	memcpy(&magic, s, 4);
	memcpy(&glen, s + 8, 4);
	memcpy(&n, s + 12, 8);
	if (magic != QUANT_MAGIC || s[4] != QUANT_VERSION ||
	    s[5] < TCZ_QUANT_BITS_MIN || s[5] > TCZ_QUANT_BITS_MAX ||
	    (s[6] & ~QUANT_F32_SCALES) || s[7] != 0 || glen == 0)
		return -EBADMSG;
	b->bits = s[5];
	b->f32 = s[6] & QUANT_F32_SCALES;
	b->glen = glen;
	size_t w = b->f32 ? 4 : 2;
	size_t total = blob_size(n, glen, b->bits, w);
	if (total == 0 || total != len)
		return -EBADMSG;
	b->n = (size_t)n;
	b->groups = group_count(b->n, glen);
	b->scales = s + QUANT_HDR;
	b->codes = b->scales + b->groups * w;

	/* The encoder writes only finite scales >= +0 and zero padding bits;
	 * anything else is damage, not a blob. */
	for (size_t g = 0; g < b->groups; g++) {
		float sc = tcz_qk_scale_at(b->scales, b->f32, g);
		if (!(sc >= 0 && sc <= FLT_MAX) || signbit(sc))
			return -EBADMSG;
	}
	unsigned tail = (unsigned)((b->n % 8) * b->bits % 8);
	if (tail && (s[len - 1] >> tail))
		return -EBADMSG;
	return 0;
}

int tcz_quant_peek(const void *src, size_t len, tcz_quant_params *p,
		   size_t *n)
{
	qblob b;
	int r = parse(src, len, &b);
	if (r)
		return r;
	if (p) {
		p->bits = b.bits;
		p->group_len = b.glen;
	}
	if (n)
		*n = b.n;
	return 0;
}

int tcz_quant_decode(const void *src, size_t len, float *dst, size_t n)
{
	qblob b;
	int r = parse(src, len, &b);
	if (r)
		return r;
	if (n != b.n)
		return -EINVAL;
	tcz_qk_decode(b.codes, 0, n, b.glen, b.scales, b.f32, b.bits, dst);
	return 0;
}

int tcz_quant_decode_range(const void *src, size_t len, size_t first,
			   size_t count, float *dst)
{
	qblob b;
	int r = parse(src, len, &b);
	if (r)
		return r;
	if (first % b.glen || count > b.n || first > b.n - count)
		return -EINVAL;
	size_t w = b.f32 ? 4 : 2;
	tcz_qk_decode(b.codes, first, count, b.glen,
		      b.scales + first / b.glen * w, b.f32, b.bits, dst);
	return 0;
}
