#include "codec/qkernel.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "codec/bitpack.h"
#include "codec/half.h"

#ifdef __SSE2__
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

/* Codes per pack/unpack step: a multiple of 8, so every step starts on a
 * byte boundary of the bitstream whatever the width, and small enough
 * that the codes stay in L1 between unpacking and dequantizing. */
#define CHUNK 1024u

uint32_t tcz_qk_absmax_bits(const float *v, size_t n)
{
	uint32_t m = 0;
	size_t i = 0;
#ifdef __SSE2__
	/* Sign-cleared f32 patterns order like the magnitudes they encode and
	 * stay below 2^31, so a signed integer max finds the largest |v| and
	 * lets NaN and infinity stand out above 0x7f800000. */
	const __m128i mask = _mm_set1_epi32(0x7fffffff);
	__m128i m0 = _mm_setzero_si128(), m1 = m0;
	for (; i + 8 <= n; i += 8) {
		__m128i a = _mm_and_si128(
			_mm_loadu_si128((const __m128i *)(v + i)), mask);
		__m128i b = _mm_and_si128(
			_mm_loadu_si128((const __m128i *)(v + i + 4)), mask);
		__m128i ga = _mm_cmpgt_epi32(a, m0), gb = _mm_cmpgt_epi32(b, m1);
		m0 = _mm_or_si128(_mm_and_si128(ga, a), _mm_andnot_si128(ga, m0));
		m1 = _mm_or_si128(_mm_and_si128(gb, b), _mm_andnot_si128(gb, m1));
	}
	uint32_t lane[8];
	_mm_storeu_si128((__m128i *)lane, m0);
	_mm_storeu_si128((__m128i *)(lane + 4), m1);
	for (int k = 0; k < 8; k++)
		m = lane[k] > m ? lane[k] : m;
#endif
	for (; i < n; i++) {
		uint32_t x;
		memcpy(&x, v + i, 4);
		x &= 0x7fffffffu;
		m = x > m ? x : m;
	}
	return m;
}

float tcz_qk_scale_at(const unsigned char *sc, int sc_f32, size_t g)
{
	if (sc_f32) {
		float s;
		memcpy(&s, sc + 4 * g, 4);
		return s;
	}
	return tcz_f16_to_f32((uint16_t)(sc[2 * g] | (sc[2 * g + 1] << 8)));
}

/* Clamps before rounding (equivalent, as qmax is an integer) so that the
 * conversion can never overflow; adding and removing 1.5*2^23 rounds to
 * nearest even like cvtps2dq does in the vector loop. */
static inline uint8_t quant_one(float x, float fq)
{
	x = x < -fq ? -fq : x;
	x = x > fq ? fq : x;
	float r = (x + 0x1.8p23f) - 0x1.8p23f;
	return (uint8_t)((int)r + (int)fq);
}

static void quantize(const float *v, size_t n, float s, unsigned qmax,
		     uint8_t *u)
{
	const float fq = (float)qmax;
	size_t i = 0;

	if (s == 0) {
		memset(u, (int)qmax, n);
		return;
	}
	float inv = 1.0f / s;
	if (!(inv <= FLT_MAX)) { /* s below 2^-128: divide instead */
		for (; i < n; i++)
			u[i] = quant_one(v[i] / s, fq);
		return;
	}
#ifdef __SSE2__
	const __m128 vinv = _mm_set1_ps(inv);
	const __m128 lo = _mm_set1_ps(-fq), hi = _mm_set1_ps(fq);
	const __m128i off = _mm_set1_epi32((int)qmax);
	for (; i + 16 <= n; i += 16) {
		__m128i w[4];
		for (int k = 0; k < 4; k++) {
			__m128 x = _mm_mul_ps(_mm_loadu_ps(v + i + 4 * k), vinv);
			x = _mm_min_ps(_mm_max_ps(x, lo), hi);
			w[k] = _mm_add_epi32(_mm_cvtps_epi32(x), off);
		}
		/* codes are 0..254: both packs saturate nothing */
		__m128i a = _mm_packs_epi32(w[0], w[1]);
		__m128i b = _mm_packs_epi32(w[2], w[3]);
		_mm_storeu_si128((__m128i *)(u + i), _mm_packus_epi16(a, b));
	}
#endif
	for (; i < n; i++)
		u[i] = quant_one(v[i] * inv, fq);
}

/* v' = (u - z) * s: z = qmax for version 1 and TQTC, 2^(B-1) for v2. */
static void dequantize(const uint8_t *u, size_t n, float s, float fq,
		       float *out)
{
	size_t i = 0;
#ifdef __SSE2__
	/* (u - z) is an exact small integer in f32, so this is (u - z) * s
	 * rounded once, as in the scalar tail. */
	const __m128 vs = _mm_set1_ps(s), vq = _mm_set1_ps(fq);
	const __m128i z = _mm_setzero_si128();
	for (; i + 16 <= n; i += 16) {
		__m128i b = _mm_loadu_si128((const __m128i *)(u + i));
		__m128i l = _mm_unpacklo_epi8(b, z), h = _mm_unpackhi_epi8(b, z);
		__m128i w[4] = {_mm_unpacklo_epi16(l, z), _mm_unpackhi_epi16(l, z),
				_mm_unpacklo_epi16(h, z), _mm_unpackhi_epi16(h, z)};
		for (int k = 0; k < 4; k++) {
			__m128 x = _mm_sub_ps(_mm_cvtepi32_ps(w[k]), vq);
			_mm_storeu_ps(out + i + 4 * k, _mm_mul_ps(x, vs));
		}
	}
#endif
	for (; i < n; i++)
		out[i] = ((float)u[i] - fq) * s;
}

void tcz_qk_encode(const float *v, size_t cnt, size_t flen, uint32_t glen,
		   const unsigned char *sc, int sc_f32, unsigned bits,
		   unsigned char *dst)
{
	const unsigned qmax = tcz_qk_qmax(bits);
	uint8_t buf[CHUNK];
	size_t i = 0, fpos = 0;

	while (i < cnt) {
		size_t step = cnt - i < CHUNK ? cnt - i : CHUNK;
		for (size_t k = 0; k < step;) {
			size_t g = fpos / glen;
			size_t gend = flen - fpos > glen - fpos % glen
					      ? fpos + (glen - fpos % glen)
					      : flen;
			size_t seg = gend - fpos < step - k ? gend - fpos
							    : step - k;
			quantize(v + i + k, seg, tcz_qk_scale_at(sc, sc_f32, g),
				 qmax, buf + k);
			k += seg;
			fpos += seg;
			if (fpos == flen)
				fpos = 0;
		}
		size_t len = tcz_bitpack_size(step, bits);
		(void)tcz_bitpack_pack(buf, step, bits, dst, len);
		dst += len;
		i += step;
	}
}

void tcz_qk_decode(const unsigned char *packed, size_t first, size_t cnt,
		   uint32_t glen, const unsigned char *sc, int sc_f32,
		   unsigned bits, float *out)
{
	const unsigned qmax = tcz_qk_qmax(bits);
	uint8_t buf[CHUNK];
	/* Start at the block of 8 codes holding `first`: it begins on a byte
	 * boundary. The codes before `first` are unpacked and dropped. */
	size_t skip = first % 8;
	const unsigned char *p = packed + first / 8 * bits;
	size_t done = 0, g = 0, gpos = 0;
	float s = cnt ? tcz_qk_scale_at(sc, sc_f32, 0) : 0;

	while (done < cnt) {
		size_t want = skip + (cnt - done);
		want = want < CHUNK ? want : CHUNK;
		const uint8_t *u = p;
		size_t len = tcz_bitpack_size(want, bits);
		if (bits != 8) {
			(void)tcz_bitpack_unpack(p, len, want, bits, buf);
			u = buf;
		}
		p += len;
		for (size_t k = skip; k < want;) {
			size_t seg = glen - gpos < want - k ? glen - gpos
							    : want - k;
			dequantize(u + k, seg, s, (float)qmax, out + done);
			k += seg;
			done += seg;
			gpos += seg;
			if (gpos == glen && done < cnt) {
				gpos = 0;
				s = tcz_qk_scale_at(sc, sc_f32, ++g);
			}
		}
		skip = 0;
	}
}

/* ---- version 2 ---------------------------------------------------------- */

/* Field j of a stream of f-bit fields (f <= 8: at most two bytes). */
static unsigned get_field(const unsigned char *p, size_t j, unsigned f)
{
	size_t bit = (size_t)f * j, at = bit >> 3;
	unsigned sh = (unsigned)(bit & 7), x = p[at] >> sh;
	if (sh + f > 8)
		x |= (unsigned)p[at + 1] << (8 - sh);
	return x & ((1u << f) - 1);
}

float tcz_qk2_step(const tcz_qk2_scales *sc, size_t j)
{
	size_t g = j / sc->per_super;
	uint16_t d = (uint16_t)(sc->super[2 * g] | (sc->super[2 * g + 1] << 8));
	unsigned c = get_field(sc->sub, j, sc->field_bits);
	float s = tcz_bf16_to_f32(d) * (float)(c & ((1u << (sc->field_bits - 1)) - 1));
	uint32_t sb;
	memcpy(&sb, &s, 4);
	sb ^= (uint32_t)(c >> (sc->field_bits - 1)) << 31; /* no branch */
	memcpy(&s, &sb, 4);
	return s;
}

/* rint(x) for |x| < 2^22, as cvtps2dq rounds in the vector loops */
static inline float rint22(float x)
{
	return (x + 0x1.8p23f) - 0x1.8p23f;
}

/* Squared error in units of s^2, one candidate at a time, dividing: for
 * steps whose reciprocal overflows. */
static float sse_div(const float *v, size_t n, float s, float h, float top)
{
	float acc = 0;
	for (size_t i = 0; i < n; i++) {
		float y = v[i] / s + h;
		float c = y < 0 ? 0 : (y > top ? top : y);
		float e = y - rint22(c);
		acc += e * e;
	}
	return acc;
}

#ifdef __SSE2__
/* Squared error in units of the step of 4 values, as a vector. */
static inline __m128 sse4(__m128 x, __m128 vi, __m128 vh, __m128 vtop)
{
	__m128 y = _mm_add_ps(_mm_mul_ps(x, vi), vh);
	__m128 u = _mm_cvtepi32_ps(_mm_cvtps_epi32(
		_mm_min_ps(_mm_max_ps(y, _mm_setzero_ps()), vtop)));
	__m128 e = _mm_sub_ps(y, u);
	return _mm_mul_ps(e, e);
}

static inline float hsum(__m128 a)
{
	float lane[4];
	_mm_storeu_ps(lane, a);
	return (lane[0] + lane[1]) + (lane[2] + lane[3]);
}
#endif

void tcz_qk2_sse(const float *v, size_t n, const float *s, const float *inv,
		 size_t nc, unsigned bits, double *out)
{
	const float h = (float)(1u << (bits - 1)), top = (float)((1u << bits) - 1);
	float ri[TCZ_QK2_MAX_STEPS], acc[TCZ_QK2_MAX_STEPS];
	size_t idx[TCZ_QK2_MAX_STEPS], m = 0; /* the candidates multiplied */
	for (size_t c = 0; c < nc; c++) {
		if (s[c] == 0) {
			double e = 0;
			for (size_t i = 0; i < n; i++)
				e += (double)v[i] * v[i];
			out[c] = e;
			continue;
		}
		if (!(fabsf(inv[c]) <= FLT_MAX)) { /* |s| below 2^-128 */
			out[c] = (double)sse_div(v, n, s[c], h, top) * s[c] * s[c];
			continue;
		}
		ri[m] = inv[c];
		acc[m] = 0;
		idx[m++] = c;
	}
	size_t i = 0;
#ifdef __SSE2__
	/* y = v/s + h clamped to [0, 2^B - 1] rounds (to even, as rint22)
	 * to the code; the error in units of s is y - u */
	const __m128 vh = _mm_set1_ps(h), vtop = _mm_set1_ps(top);
	if (n == 16 || n == 32) { /* the encoder's sub-blocks, unrolled: the
				     * four sums are independent */
		const __m128 x0 = _mm_loadu_ps(v), x1 = _mm_loadu_ps(v + 4),
			     x2 = _mm_loadu_ps(v + 8), x3 = _mm_loadu_ps(v + 12);
		__m128 sum[TCZ_QK2_MAX_STEPS + 3];
		for (size_t c = 0; c < m; c++) {
			const __m128 vi = _mm_set1_ps(ri[c]);
			__m128 a0 = sse4(x0, vi, vh, vtop), a1 = sse4(x1, vi, vh, vtop);
			__m128 a2 = sse4(x2, vi, vh, vtop), a3 = sse4(x3, vi, vh, vtop);
			if (n == 32) {
				a0 = _mm_add_ps(a0, sse4(_mm_loadu_ps(v + 16), vi, vh, vtop));
				a1 = _mm_add_ps(a1, sse4(_mm_loadu_ps(v + 20), vi, vh, vtop));
				a2 = _mm_add_ps(a2, sse4(_mm_loadu_ps(v + 24), vi, vh, vtop));
				a3 = _mm_add_ps(a3, sse4(_mm_loadu_ps(v + 28), vi, vh, vtop));
			}
			sum[c] = _mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3));
		}
		/* four horizontal sums at a time: transpose and add */
		for (size_t c = m; c % 4; c++)
			sum[c] = _mm_setzero_ps();
		for (size_t c = 0; c < m; c += 4) {
			__m128 r0 = sum[c], r1 = sum[c + 1], r2 = sum[c + 2],
			       r3 = sum[c + 3];
			_MM_TRANSPOSE4_PS(r0, r1, r2, r3);
			float lane[4];
			_mm_storeu_ps(lane, _mm_add_ps(_mm_add_ps(r0, r1),
						       _mm_add_ps(r2, r3)));
			for (size_t q = 0; q < 4 && c + q < m; q++)
				acc[c + q] = lane[q];
		}
		i = n;
	} else {
		const __m128 zero = _mm_setzero_ps();
		__m128 a[TCZ_QK2_MAX_STEPS];
		for (size_t c = 0; c < m; c++)
			a[c] = zero;
		for (; i + 8 <= n; i += 8) {
			__m128 x0 = _mm_loadu_ps(v + i), x1 = _mm_loadu_ps(v + i + 4);
			for (size_t c = 0; c < m; c++) {
				__m128 vi = _mm_set1_ps(ri[c]);
				__m128 y0 = _mm_add_ps(_mm_mul_ps(x0, vi), vh);
				__m128 y1 = _mm_add_ps(_mm_mul_ps(x1, vi), vh);
				__m128 u0 = _mm_cvtepi32_ps(_mm_cvtps_epi32(
					_mm_min_ps(_mm_max_ps(y0, zero), vtop)));
				__m128 u1 = _mm_cvtepi32_ps(_mm_cvtps_epi32(
					_mm_min_ps(_mm_max_ps(y1, zero), vtop)));
				__m128 e0 = _mm_sub_ps(y0, u0), e1 = _mm_sub_ps(y1, u1);
				a[c] = _mm_add_ps(a[c], _mm_add_ps(_mm_mul_ps(e0, e0),
								   _mm_mul_ps(e1, e1)));
			}
		}
		for (size_t c = 0; c < m; c++)
			acc[c] = hsum(a[c]);
	}
#endif
	for (; i < n; i++)
		for (size_t c = 0; c < m; c++) {
			float y = v[i] * ri[c] + h;
			float cl = y < 0 ? 0 : (y > top ? top : y);
			float e = y - rint22(cl);
			acc[c] += e * e;
		}
	for (size_t c = 0; c < m; c++) {
		float sc = s[idx[c]];
		out[idx[c]] = (double)acc[c] * sc * sc;
	}
}

static void quantize2(const float *v, size_t n, float s, unsigned bits,
		      uint8_t *u)
{
	const float h = (float)(1u << (bits - 1)), top = (float)((1u << bits) - 1);
	size_t i = 0;
	if (s == 0) {
		memset(u, (int)h, n);
		return;
	}
	float inv = 1.0f / s;
	if (!(fabsf(inv) <= FLT_MAX)) {
		for (; i < n; i++) {
			float y = v[i] / s + h;
			u[i] = (uint8_t)(int)rint22(y < 0 ? 0 : (y > top ? top : y));
		}
		return;
	}
#ifdef __SSE2__
	const __m128 vinv = _mm_set1_ps(inv), vh = _mm_set1_ps(h),
		     vtop = _mm_set1_ps(top), zero = _mm_setzero_ps();
	for (; i + 16 <= n; i += 16) {
		__m128i w[4];
		for (int k = 0; k < 4; k++) {
			__m128 y = _mm_add_ps(
				_mm_mul_ps(_mm_loadu_ps(v + i + 4 * k), vinv), vh);
			w[k] = _mm_cvtps_epi32(
				_mm_min_ps(_mm_max_ps(y, zero), vtop));
		}
		/* codes are 0..255: the signed 16-bit pack keeps them and the
		 * unsigned 8-bit one saturates nothing */
		__m128i a = _mm_packs_epi32(w[0], w[1]);
		__m128i b = _mm_packs_epi32(w[2], w[3]);
		_mm_storeu_si128((__m128i *)(u + i), _mm_packus_epi16(a, b));
	}
#endif
	for (; i < n; i++) {
		float y = v[i] * inv + h;
		u[i] = (uint8_t)(int)rint22(y < 0 ? 0 : (y > top ? top : y));
	}
}

void tcz_qk2_encode(const float *v, size_t cnt, uint32_t glen,
		    const tcz_qk2_scales *sc, unsigned bits, unsigned char *dst)
{
	uint8_t buf[CHUNK];
	size_t i = 0, j = 0, gpos = 0;
	float s = cnt ? tcz_qk2_step(sc, 0) : 0;
	while (i < cnt) {
		size_t step = cnt - i < CHUNK ? cnt - i : CHUNK;
		for (size_t k = 0; k < step;) {
			size_t seg = glen - gpos < step - k ? glen - gpos : step - k;
			quantize2(v + i + k, seg, s, bits, buf + k);
			k += seg;
			gpos += seg;
			if (gpos == glen && i + k < cnt) {
				gpos = 0;
				s = tcz_qk2_step(sc, ++j);
			}
		}
		size_t len = tcz_bitpack_size(step, bits);
		(void)tcz_bitpack_pack(buf, step, bits, dst, len);
		dst += len;
		i += step;
	}
}

#ifdef __SSE2__
/* tcz_qk2_decode for sub-blocks of a multiple of 16 values that tile a
 * CHUNK: the step codes of a whole CHUNK are unpacked at once and each
 * sub-block is one broadcast and glen/16 straight SIMD steps, so the
 * per-sub-block cost stays a few cycles (a generic step per sub-block of
 * 16 values halved the speed of version 1). */
static void decode2_tiled(const unsigned char *packed, size_t first,
			  size_t cnt, uint32_t glen, const tcz_qk2_scales *sc,
			  unsigned bits, float *out)
{
	const unsigned f = sc->field_bits;
	const uint32_t mask = (1u << (f - 1)) - 1, kk = sc->per_super;
	uint8_t buf[CHUNK], fld[CHUNK / 16 + 8];
	const unsigned char *p = packed + first / 8 * bits;
	size_t done = 0, j = first / glen;
	size_t g = j / kk, in_g = j % kk;
	float d = tcz_bf16_to_f32((uint16_t)(sc->super[2 * g] |
					     (sc->super[2 * g + 1] << 8)));
	const __m128 vh = _mm_set1_ps((float)(1u << (bits - 1)));
	const __m128i z = _mm_setzero_si128();

	while (done < cnt) {
		size_t want = cnt - done < CHUNK ? cnt - done : CHUNK;
		const uint8_t *u = p;
		size_t len = tcz_bitpack_size(want, bits);
		if (bits != 8) {
			(void)tcz_bitpack_unpack(p, len, want, bits, buf);
			u = buf;
		}
		p += len;
		/* fields j .. j+nsub-1, from the byte where field j/8*8 starts */
		size_t nsub = want / glen + (want % glen != 0), sk = j % 8;
		(void)tcz_bitpack_unpack(sc->sub + (j - sk) * f / 8,
					 tcz_bitpack_size(sk + nsub, f), sk + nsub,
					 f, fld);
		/* the steps first (no dependency between sub-blocks), then the
		 * values: a broadcast and glen/16 SIMD steps per sub-block */
		float st[CHUNK / 16];
		for (size_t q = 0; q < nsub; q++) {
			/* the sign goes in as a bit: signs are random, a branch
			 * on them mispredicted half the time */
			unsigned c = fld[sk + q];
			float x = d * (float)(c & mask);
			uint32_t xb;
			memcpy(&xb, &x, 4);
			xb ^= (uint32_t)(c >> (f - 1)) << 31;
			memcpy(&st[q], &xb, 4);
			j++;
			if (++in_g == kk && done + (q + 1) * glen < cnt) {
				in_g = 0;
				g++;
				d = tcz_bf16_to_f32((uint16_t)(
					sc->super[2 * g] | (sc->super[2 * g + 1] << 8)));
			}
		}
		size_t whole = want / glen;
		float *o = out + done;
		for (size_t q = 0; q < whole; q++) {
			const __m128 vs = _mm_set1_ps(st[q]);
			for (size_t i = 0; i < glen; i += 16) {
				__m128i b = _mm_loadu_si128((const __m128i *)(u + i));
				__m128i l = _mm_unpacklo_epi8(b, z);
				__m128i hi = _mm_unpackhi_epi8(b, z);
				_mm_storeu_ps(o + i, _mm_mul_ps(_mm_sub_ps(_mm_cvtepi32_ps(
					_mm_unpacklo_epi16(l, z)), vh), vs));
				_mm_storeu_ps(o + i + 4, _mm_mul_ps(_mm_sub_ps(_mm_cvtepi32_ps(
					_mm_unpackhi_epi16(l, z)), vh), vs));
				_mm_storeu_ps(o + i + 8, _mm_mul_ps(_mm_sub_ps(_mm_cvtepi32_ps(
					_mm_unpacklo_epi16(hi, z)), vh), vs));
				_mm_storeu_ps(o + i + 12, _mm_mul_ps(_mm_sub_ps(_mm_cvtepi32_ps(
					_mm_unpackhi_epi16(hi, z)), vh), vs));
			}
			u += glen;
			o += glen;
		}
		if (whole < nsub) /* the blob's short last sub-block */
			dequantize(u, want - whole * glen, st[whole],
				   (float)(1u << (bits - 1)), o);
		done += want;
	}
}
#endif

void tcz_qk2_decode(const unsigned char *packed, size_t first, size_t cnt,
		    uint32_t glen, const tcz_qk2_scales *sc, unsigned bits,
		    float *out)
{
	const float h = (float)(1u << (bits - 1));
#ifdef __SSE2__
	if (cnt && glen % 16 == 0 && CHUNK % glen == 0) {
		decode2_tiled(packed, first, cnt, glen, sc, bits, out);
		return;
	}
#endif
	/* any other sub-block length: one step at a time */
	uint8_t buf[CHUNK];
	size_t skip = first % 8;
	const unsigned char *p = packed + first / 8 * bits;
	size_t done = 0, j = first / glen, gpos = 0;
	float s = cnt ? tcz_qk2_step(sc, j) : 0;

	while (done < cnt) {
		size_t want = skip + (cnt - done);
		want = want < CHUNK ? want : CHUNK;
		const uint8_t *u = p;
		size_t len = tcz_bitpack_size(want, bits);
		if (bits != 8) {
			(void)tcz_bitpack_unpack(p, len, want, bits, buf);
			u = buf;
		}
		p += len;
		for (size_t k = skip; k < want;) {
			size_t seg = glen - gpos < want - k ? glen - gpos
							    : want - k;
			dequantize(u + k, seg, s, h, out + done);
			k += seg;
			done += seg;
			gpos += seg;
			if (gpos == glen && done < cnt) {
				gpos = 0;
				s = tcz_qk2_step(sc, ++j);
			}
		}
		skip = 0;
	}
}
