#include "codec/quant.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "codec/bitpack.h"
#include "codec/half.h"
#include "codec/qkernel.h"

/* Blob layouts (docs/formats.md), little-endian:
 * version 1:
 *   0 u32 magic "TCZQ"  4 u8 version  5 u8 bits  6 u8 flags  7 u8 zero
 *   8 u32 group_len    12 u64 n       20 scales[S] (f16, or f32 if flagged)
 *   20 + S*w  packed codes, ceil(n*bits/8) bytes
 * version 2:
 *   0..19 as version 1 (flags 0, byte 7 the step-code width F), 20 u32 K
 *   sub-blocks per super-block, 24 bf16 super-scales[ceil(S/K)], then S
 *   F-bit step codes, ceil(F*S/8) bytes, then the packed codes */
#define QUANT_MAGIC 0x515a4354u /* "TCZQ" */
#define QUANT_HDR 20u
#define QUANT_HDR2 24u
#define QUANT_F32_SCALES 0x01u
/* Values per super-block the encoder aims at: 1024 keeps the bf16 super-
 * scale at 1/64 bit per value, and measured on retsim.f32 it loses next
 * to nothing against 256 (0.606 % against 0.603 % at 8 bits with 512). */
#define SUPER_VALUES 1024u

static unsigned version_of(const tcz_quant_params *p)
{
	return p->version ? p->version : TCZ_QUANT_V2;
}

static int params_ok(const tcz_quant_params *p)
{
	return p && p->bits >= TCZ_QUANT_BITS_MIN &&
	       p->bits <= TCZ_QUANT_BITS_MAX &&
	       (version_of(p) == TCZ_QUANT_V1 || version_of(p) == TCZ_QUANT_V2);
}

uint32_t tcz_quant_group(const tcz_quant_params *p)
{
	if (!params_ok(p))
		return 0;
	if (p->group_len)
		return p->group_len;
	if (version_of(p) == TCZ_QUANT_V1)
		return TCZ_QUANT_V1_GROUP;
	/* 16-value sub-blocks cost 6/16 + 1/32 bit per value: 8 bits would
	 * pass the 8.25 of the goal, so 8 bits take 32 (8.22 bpw) */
	return p->bits == 8 ? 32u : 16u;
}

/* The step-code width the encoder writes: 5 magnitude bits are enough
 * where the codes are coarse (retsim.f32, 4 bits: 7.96 % against 7.89 %
 * with 6, for 1/16 bit per value less). */
static unsigned field_bits_for(unsigned bits)
{
	return bits <= 4 ? 6u : 7u;
}

static uint32_t per_super(uint32_t glen)
{
	return glen >= SUPER_VALUES ? 1u : SUPER_VALUES / glen;
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

/* Version 2: header, bf16 super-scales, 6-bit step codes, codes; 0 on
 * overflow. */
static size_t blob_size2(uint64_t n, uint32_t glen, uint32_t k, unsigned bits,
			 unsigned f)
{
	if (n > SIZE_MAX)
		return 0;
	uint64_t subs = n / glen + (n % glen != 0);
	uint64_t supers = subs / k + (subs % k != 0);
	size_t codes = tcz_bitpack_size((size_t)n, bits);
	if (subs > SIZE_MAX / 8 || supers > (SIZE_MAX - QUANT_HDR2) / 2)
		return 0;
	size_t head = QUANT_HDR2 + (size_t)supers * 2;
	size_t sub = tcz_bitpack_size((size_t)subs, f);
	if ((subs && sub == 0) || sub > SIZE_MAX - head ||
	    codes > SIZE_MAX - head - sub)
		return 0;
	return head + sub + codes;
}

static size_t size_for(size_t n, const tcz_quant_params *p, size_t w)
{
	uint32_t g = tcz_quant_group(p);
	if (!g)
		return 0;
	if (version_of(p) == TCZ_QUANT_V1)
		return blob_size(n, g, p->bits, w);
	return blob_size2(n, g, per_super(g), p->bits, field_bits_for(p->bits));
}

size_t tcz_quant_bound(size_t n, const tcz_quant_params *p)
{
	return size_for(n, p, 4);
}

size_t tcz_quant_size(size_t n, const tcz_quant_params *p)
{
	return size_for(n, p, 2);
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

static int encode_v1(const float *src, size_t n, const tcz_quant_params *p,
		     void *dst, size_t dst_cap, size_t *out_len)
{
	const uint32_t glen = tcz_quant_group(p);
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
	d[4] = TCZ_QUANT_V1;
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

/* ---- version 2 encoder ---------------------------------------------------
 *
 * The format fixes how a blob decodes; what follows is the encoder's
 * choice of steps (docs/formats.md, "encoder choices"). Per super-block:
 * each sub-block's absmax step, signed so that its extreme value lands on
 * the extra level -h, then the best of a few multiples of it and of the
 * opposite-signed step that fits the extreme at h-1 (clipping the extremes
 * pays at few bits; a slightly larger step sometimes at many bits, where
 * 16 or 32 values fit one grid better than another). Then super-scale
 * candidates around the one whose largest magnitude code reaches the
 * largest step, and for each every sub-block's better of the two
 * magnitudes around its step. All by measured squared error. */

static const float step_mult[] = {1.0f, 0.8f, 0.88f, 0.96f, 1.04f};
/* their reciprocals: the search measures candidates with approximate
 * reciprocals of the steps rather than dividing for each */
static const float inv_mult[] = {1.0f, 1.25f, 1.0f / 0.88f, 1.0f / 0.96f,
				 1.0f / 1.04f};

static float bf16_val(uint16_t b)
{
	return tcz_bf16_to_f32(b);
}

/* Smallest positive bf16 pattern whose value is >= x (x > 0 finite). */
static uint16_t bf16_ceil(float x)
{
	uint32_t b;
	memcpy(&b, &x, 4);
	uint16_t h = (uint16_t)(b >> 16);
	if (bf16_val(h) < x)
		h++;
	return h ? h : 1;
}

/* Super-scale patterns the decoder accepts: below 2^(130-B-F), so that
 * (u - h) * d * m stays below 2^128 (finite) for every code. Sign, NaN and
 * infinity patterns lie above. */
static uint16_t super_limit(unsigned bits, unsigned f)
{
	return (uint16_t)((257u - bits - f) << 7);
}

static void put_field(unsigned char *p, size_t j, unsigned f, unsigned c)
{
	size_t bit = (size_t)f * j, at = bit >> 3;
	unsigned sh = (unsigned)(bit & 7);
	p[at] |= (unsigned char)(c << sh);
	if (sh + f > 8)
		p[at + 1] |= (unsigned char)(c >> (8 - sh));
}

/* The preferred signed step of one sub-block (0 for a block of zeros).
 * -EDOM on NaN or infinity. */
static int sub_step(const float *x, size_t len, unsigned bits, float *out)
{
	uint32_t mb = tcz_qk_absmax_bits(x, len);
	if (mb >= 0x7f800000u)
		return -EDOM;
	float a, h = (float)(1u << (bits - 1));
	memcpy(&a, &mb, 4);
	*out = 0;
	if (a == 0)
		return 0;
	size_t i = 0;
	while (fabsf(x[i]) != a)
		i++;
	float s = a / h;
	s = s > 0 ? s : FLT_TRUE_MIN;
	s = x[i] > 0 ? -s : s; /* the extreme at u = 0: (0 - h) * s */
	/* multiples of s, then the other sign with the extreme at h-1 */
	const size_t nm = sizeof step_mult / sizeof *step_mult;
	float cand[sizeof step_mult / sizeof *step_mult + 1];
	float inv[sizeof step_mult / sizeof *step_mult + 1];
	double e[sizeof step_mult / sizeof *step_mult + 1];
	const float is = 1.0f / s;
	for (size_t c = 0; c < nm; c++) {
		cand[c] = s * step_mult[c];
		inv[c] = is * inv_mult[c];
	}
	cand[nm] = (s < 0 ? a : -a) / (h - 1);
	inv[nm] = 1.0f / cand[nm];
	tcz_qk2_sse(x, len, cand, inv, nm + 1, bits, e);
	size_t best = 0;
	for (size_t c = 1; c <= nm; c++)
		if (cand[c] != 0 && e[c] < e[best])
			best = c;
	*out = cand[best];
	return 0;
}

/* 1/m for the magnitudes of step codes (0 for 0: that step is 0) */
static float recip[128];
static pthread_once_t recip_once = PTHREAD_ONCE_INIT;

static void recip_init(void)
{
	for (unsigned m = 1; m < 128; m++)
		recip[m] = 1.0f / (float)m;
}

/* Chooses the super-scale and step codes of one super-block of `subs`
 * sub-blocks (the last may be short: n values in all). */
static int encode_super(const float *v, size_t n, uint32_t glen, size_t subs,
			unsigned bits, unsigned f, uint16_t *d_out,
			uint8_t *c_out)
{
	static const int around[] = {0, -1, 1, -2, 2};
	enum { ND = sizeof around / sizeof *around };
	float t[SUPER_VALUES]; /* each sub-block's preferred step */
	uint8_t cc[ND][SUPER_VALUES];
	const unsigned mmax = (1u << (f - 1)) - 1, sign = 1u << (f - 1);
	float tmax = 0;
	for (size_t j = 0; j < subs; j++) {
		size_t len = n - j * glen < glen ? n - j * glen : glen;
		int rc = sub_step(v + j * glen, len, bits, &t[j]);
		if (rc)
			return rc;
		tmax = fabsf(t[j]) > tmax ? fabsf(t[j]) : tmax;
	}
	*d_out = 0;
	memset(c_out, 0, subs);
	if (tmax == 0)
		return 0;
	const uint16_t lim = super_limit(bits, f);
	uint16_t d0 = bf16_ceil(tmax / (float)mmax);
	d0 = d0 < lim ? d0 : (uint16_t)(lim - 1);
	float d[ND], dinv[ND];
	double total[ND];
	size_t nd = 0;
	int pat[ND];
	for (size_t c = 0; c < ND; c++) {
		int q = (int)d0 + around[c];
		if (q < 1 || q >= (int)lim)
			continue;
		pat[nd] = q;
		total[nd] = 0;
		d[nd] = bf16_val((uint16_t)q);
		dinv[nd] = 1.0f / d[nd];
		nd++;
	}
	/* per sub-block, the two magnitudes around its step under every
	 * candidate super-scale, all measured in one pass over its values */
	for (size_t j = 0; j < subs; j++) {
		const float *x = v + j * glen;
		size_t len = n - j * glen < glen ? n - j * glen : glen;
		if (t[j] == 0) {
			for (size_t c = 0; c < nd; c++)
				cc[c][j] = 0;
			continue;
		}
		float st[2 * ND], inv[2 * ND];
		unsigned mag[2 * ND];
		double e[2 * ND];
		size_t ns = 0;
		const float sg = t[j] < 0 ? -1.0f : 1.0f;
		for (size_t c = 0; c < nd; c++) {
			float r = fabsf(t[j]) * dinv[c];
			unsigned lo = r >= (float)mmax ? mmax : (unsigned)r;
			for (unsigned m = lo; m <= lo + 1; m++) {
				mag[ns] = m > mmax ? mmax : m; /* lo = mmax: twice */
				st[ns] = sg * d[c] * (float)mag[ns];
				inv[ns] = sg * dinv[c] * recip[mag[ns]];
				ns++;
			}
		}
		tcz_qk2_sse(x, len, st, inv, ns, bits, e);
		for (size_t c = 0; c < nd; c++) {
			size_t b = e[2 * c + 1] < e[2 * c] ? 2 * c + 1 : 2 * c;
			unsigned neg = t[j] < 0 ? sign : 0;
			cc[c][j] = (uint8_t)(mag[b] ? (mag[b] | neg) : 0);
			total[c] += e[b];
		}
	}
	size_t best = 0;
	for (size_t c = 1; c < nd; c++)
		if (total[c] < total[best])
			best = c;
	*d_out = (uint16_t)pat[best];
	memcpy(c_out, cc[best], subs);
	return 0;
}

static int encode_v2(const float *src, size_t n, const tcz_quant_params *p,
		     void *dst, size_t dst_cap, size_t *out_len)
{
	const uint32_t glen = tcz_quant_group(p), k = per_super(glen);
	const unsigned bits = p->bits, f = field_bits_for(bits);
	pthread_once(&recip_once, recip_init);
	size_t size = blob_size2(n, glen, k, bits, f);
	if (size == 0)
		return -EINVAL;
	if (dst_cap < size)
		return -ENOBUFS;
	size_t subs = group_count(n, glen), supers = subs / k + (subs % k != 0);
	unsigned char *d = dst;
	unsigned char *sup = d + QUANT_HDR2, *sub = sup + 2 * supers;
	size_t sub_len = tcz_bitpack_size(subs, f);
	memset(sub, 0, sub_len);
	uint8_t codes[SUPER_VALUES];
	for (size_t g = 0; g < supers; g++) {
		size_t first = g * k, cnt = subs - first < k ? subs - first : k;
		size_t off = first * glen;
		size_t len = n - off < (size_t)k * glen ? n - off : (size_t)k * glen;
		uint16_t sc;
		int rc = encode_super(src + off, len, glen, cnt, bits, f, &sc,
				      codes);
		if (rc)
			return rc;
		sup[2 * g] = (unsigned char)sc;
		sup[2 * g + 1] = (unsigned char)(sc >> 8);
		for (size_t j = 0; j < cnt; j++)
			put_field(sub, first + j, f, codes[j]);
	}
	uint32_t magic = QUANT_MAGIC;
	uint64_t n64 = n;
	memcpy(d, &magic, 4);
	d[4] = TCZ_QUANT_V2;
	d[5] = (unsigned char)bits;
	d[6] = 0;
	d[7] = (unsigned char)f;
	memcpy(d + 8, &glen, 4);
	memcpy(d + 12, &n64, 8);
	memcpy(d + 20, &k, 4);
	tcz_qk2_scales sc = {sup, sub, k, f};
	tcz_qk2_encode(src, n, glen, &sc, bits, sub + sub_len);
	*out_len = size;
	return 0;
}

int tcz_quant_encode(const float *src, size_t n, const tcz_quant_params *p,
		     void *dst, size_t dst_cap, size_t *out_len)
{
	if (!params_ok(p))
		return -EINVAL;
	if (version_of(p) == TCZ_QUANT_V1)
		return encode_v1(src, n, p, dst, dst_cap, out_len);
	return encode_v2(src, n, p, dst, dst_cap, out_len);
}

/* A parsed, validated blob. */
typedef struct qblob {
	unsigned version, bits;
	int f32;
	uint32_t glen;
	size_t n, groups;
	const unsigned char *scales, *codes;
	tcz_qk2_scales sc2; /* version 2 */
} qblob;

/* Whether the unused high bits of the last byte of a stream of n codes of
 * `bits` bits ending at end[-1] are zero. */
static int tail_clear(const unsigned char *end, size_t n, unsigned bits)
{
	unsigned tail = (unsigned)((n % 8) * bits % 8);
	return !tail || !(end[-1] >> tail);
}

static int parse_v1(const unsigned char *s, size_t len, uint32_t glen,
		    uint64_t n, qblob *b)
{
	if ((s[6] & ~QUANT_F32_SCALES) || s[7] != 0)
		return -EBADMSG;
	b->f32 = s[6] & QUANT_F32_SCALES;
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
	return tail_clear(s + len, b->n, b->bits) ? 0 : -EBADMSG;
}

static int parse_v2(const unsigned char *s, size_t len, uint32_t glen,
		    uint64_t n, qblob *b)
{
	uint32_t k;
	const unsigned f = len >= QUANT_HDR2 ? s[7] : 0;
	if (len < QUANT_HDR2 || s[6] != 0 || f < 2 || f > 8)
		return -EBADMSG;
	memcpy(&k, s + 20, 4);
	if (k == 0)
		return -EBADMSG;
	size_t total = blob_size2(n, glen, k, b->bits, f);
	if (total == 0 || total != len)
		return -EBADMSG;
	b->f32 = 0;
	b->n = (size_t)n;
	b->groups = group_count(b->n, glen);
	size_t supers = b->groups / k + (b->groups % k != 0);
	size_t sub_len = tcz_bitpack_size(b->groups, f);
	b->sc2.super = s + QUANT_HDR2;
	b->sc2.sub = b->sc2.super + 2 * supers;
	b->sc2.per_super = k;
	b->sc2.field_bits = f;
	b->scales = b->sc2.super;
	b->codes = b->sc2.sub + sub_len;

	/* Super-scales as the encoder writes them: +0 or positive, and small
	 * enough that no decoded value overflows (sign, NaN and infinity
	 * patterns all lie above the limit). */
	const uint16_t lim = super_limit(b->bits, f);
	for (size_t g = 0; g < supers; g++) {
		uint16_t d = (uint16_t)(b->sc2.super[2 * g] |
					(b->sc2.super[2 * g + 1] << 8));
		if (d >= lim)
			return -EBADMSG;
	}
	if (!tail_clear(b->codes, b->groups, f) ||
	    !tail_clear(s + len, b->n, b->bits))
		return -EBADMSG;
	return 0;
}

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
	if (magic != QUANT_MAGIC || s[5] < TCZ_QUANT_BITS_MIN ||
	    s[5] > TCZ_QUANT_BITS_MAX || glen == 0)
		return -EBADMSG;
	b->version = s[4];
	b->bits = s[5];
	b->glen = glen;
	if (s[4] == TCZ_QUANT_V1)
		return parse_v1(s, len, glen, n, b);
	if (s[4] == TCZ_QUANT_V2)
		return parse_v2(s, len, glen, n, b);
	return -EBADMSG;
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
		p->version = b.version;
	}
	if (n)
		*n = b.n;
	return 0;
}

static void decode_at(const qblob *b, size_t first, size_t count, float *dst)
{
	if (b->version == TCZ_QUANT_V2) {
		tcz_qk2_decode(b->codes, first, count, b->glen, &b->sc2, b->bits,
			       dst);
		return;
	}
	size_t w = b->f32 ? 4 : 2;
	tcz_qk_decode(b->codes, first, count, b->glen,
		      b->scales + first / b->glen * w, b->f32, b->bits, dst);
}

int tcz_quant_decode(const void *src, size_t len, float *dst, size_t n)
{
	qblob b;
	int r = parse(src, len, &b);
	if (r)
		return r;
	if (n != b.n)
		return -EINVAL;
	decode_at(&b, 0, n, dst);
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
	decode_at(&b, first, count, dst);
	return 0;
}
