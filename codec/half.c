#include "codec/half.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define TCZ_X86 1
#endif

static inline uint32_t f32_bits(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	return x;
}

static inline float bits_f32(uint32_t x)
{
	float f;
	memcpy(&f, &x, 4);
	return f;
}

float tcz_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;

	if (exp == 0x1f) /* inf / NaN: payload moves to the top */
		return bits_f32(sign | 0x7f800000u | (man << 13));
	if (exp != 0) /* normal: rebias 15 -> 127 */
		return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
	/* zero or subnormal: man * 2^-24 is exact in f32 */
	float v = (float)man * 0x1p-24f;
	return bits_f32(sign | f32_bits(v));
}

uint16_t tcz_f32_to_f16(float f)
{
	uint32_t x = f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
	uint32_t ax = x & 0x7fffffffu;

	if (ax > 0x7f800000u) {
		uint16_t pay = (uint16_t)((ax >> 13) & 0x3ffu);
		return (uint16_t)(sign | 0x7c00u | (pay ? pay : 0x200u));
	}
	/* 65520 is the midpoint between 65504 (odd mantissa) and 2^16: the
	 * tie goes to the even neighbour, which is infinity. */
	if (ax >= 0x477ff000u)
		return (uint16_t)(sign | 0x7c00u);
	if (ax >= 0x38800000u) { /* result is a normal f16 */
		uint32_t r = ax - (112u << 23);
		r += 0x0fffu + ((r >> 13) & 1u); /* ties to even */
		return (uint16_t)(sign | (r >> 13));
	}
	if (ax < 0x33000000u) /* below half the smallest subnormal */
		return sign;
	/* Subnormal result: the value in units of 2^-24, rounded to even.
	 * A carry out of 10 bits yields the smallest normal, as it should. */
	uint32_t e = ax >> 23;
	uint32_t m = (ax & 0x7fffffu) | 0x800000u;
	unsigned sh = 126u - e; /* 14..24 */
	uint32_t q = m >> sh;
	uint32_t rem = m & ((1u << sh) - 1u);
	uint32_t half = 1u << (sh - 1u);
	if (rem > half || (rem == half && (q & 1u)))
		q++;
	return (uint16_t)(sign | q);
}

float tcz_bf16_to_f32(uint16_t h)
{
	return bits_f32((uint32_t)h << 16);
}

uint16_t tcz_f32_to_bf16(float f)
{
	uint32_t x = f32_bits(f);
	if ((x & 0x7fffffffu) > 0x7f800000u) {
		uint16_t r = (uint16_t)(x >> 16);
		return (r & 0x7fu) ? r : (uint16_t)(r | 0x40u);
	}
	x += 0x7fffu + ((x >> 16) & 1u);
	return (uint16_t)(x >> 16);
}

static inline uint16_t load16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline void store16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

#ifdef TCZ_X86
__attribute__((target("avx,f16c"))) static size_t
f16_to_f32_f16c(const unsigned char *s, float *d, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m128i h = _mm_loadu_si128((const __m128i *)(s + 2 * i));
		_mm256_storeu_ps(d + i, _mm256_cvtph_ps(h));
	}
	return i;
}

__attribute__((target("avx,f16c"))) static size_t
f32_to_f16_f16c(const float *s, unsigned char *d, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(s + i);
		__m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT |
						  _MM_FROUND_NO_EXC);
		_mm_storeu_si128((__m128i *)(d + 2 * i), h);
	}
	return i;
}

/* CPUID leaf 1: ECX bit 29 F16C, bit 28 AVX, bit 27 OSXSAVE; and the OS
 * must save the YMM state (XCR0 bits 1-2). Read directly because clang 14's
 * __builtin_cpu_supports does not know "f16c". */
static int have_f16c(void)
{
	static int cached = -1;
	if (cached < 0) {
		unsigned a, b, c, d;
		int ok = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1) &&
			 (c >> 28 & 1) && (c >> 27 & 1);
		if (ok) {
			unsigned lo, hi;
			__asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
			ok = (lo & 6) == 6;
		}
		cached = ok;
	}
	return cached;
}
#endif

void tcz_f16_to_f32_n(const void *src, float *dst, size_t n)
{
	const unsigned char *s = src;
	size_t i = 0;
#ifdef TCZ_X86
	if (have_f16c())
		i = f16_to_f32_f16c(s, dst, n);
#endif
	for (; i < n; i++)
		dst[i] = tcz_f16_to_f32(load16(s + 2 * i));
}

void tcz_f32_to_f16_n(const float *src, void *dst, size_t n)
{
	unsigned char *d = dst;
	size_t i = 0;
#ifdef TCZ_X86
	if (have_f16c())
		i = f32_to_f16_f16c(src, d, n);
#endif
	for (; i < n; i++)
		store16(d + 2 * i, tcz_f32_to_f16(src[i]));
}

void tcz_bf16_to_f32_n(const void *src, float *dst, size_t n)
{
	const unsigned char *s = src;
	size_t i = 0;
#ifdef __SSE2__
	const __m128i zero = _mm_setzero_si128();
	for (; i + 8 <= n; i += 8) {
		__m128i h = _mm_loadu_si128((const __m128i *)(s + 2 * i));
		_mm_storeu_si128((__m128i *)(dst + i),
				 _mm_unpacklo_epi16(zero, h));
		_mm_storeu_si128((__m128i *)(dst + i + 4),
				 _mm_unpackhi_epi16(zero, h));
	}
#endif
	for (; i < n; i++)
		dst[i] = tcz_bf16_to_f32(load16(s + 2 * i));
}

void tcz_f32_to_bf16_n(const float *src, void *dst, size_t n)
{
	unsigned char *d = dst;
	size_t i = 0;
#ifdef __SSE2__
	/* Round to nearest even on the integer image; NaN lanes take the
	 * scalar rule (keep top payload, force quiet bit if it would vanish). */
	const __m128i bias = _mm_set1_epi32(0x7fff);
	const __m128i one = _mm_set1_epi32(1);
	const __m128i absmask = _mm_set1_epi32(0x7fffffff);
	const __m128i inf = _mm_set1_epi32(0x7f800000);
	for (; i + 8 <= n; i += 8) {
		__m128i out[2];
		for (int k = 0; k < 2; k++) {
			__m128i x = _mm_loadu_si128(
				(const __m128i *)(src + i + 4 * (size_t)k));
			__m128i lsb = _mm_and_si128(_mm_srli_epi32(x, 16), one);
			__m128i r = _mm_add_epi32(x, _mm_add_epi32(bias, lsb));
			r = _mm_srli_epi32(r, 16);
			__m128i t = _mm_srli_epi32(x, 16);
			__m128i pay = _mm_and_si128(t, _mm_set1_epi32(0x7f));
			__m128i q = _mm_and_si128(
				_mm_cmpeq_epi32(pay, _mm_setzero_si128()),
				_mm_set1_epi32(0x40));
			__m128i nanv = _mm_or_si128(t, q);
			__m128i isnan =
				_mm_cmpgt_epi32(_mm_and_si128(x, absmask), inf);
			out[k] = _mm_or_si128(_mm_and_si128(isnan, nanv),
					      _mm_andnot_si128(isnan, r));
		}
		/* values are < 2^16: pack as signed after biasing */
		__m128i lo = _mm_sub_epi32(out[0], _mm_set1_epi32(0x8000));
		__m128i hi = _mm_sub_epi32(out[1], _mm_set1_epi32(0x8000));
		__m128i p = _mm_packs_epi32(lo, hi);
		p = _mm_xor_si128(p, _mm_set1_epi16((short)0x8000));
		_mm_storeu_si128((__m128i *)(d + 2 * i), p);
	}
#endif
	for (; i < n; i++)
		store16(d + 2 * i, tcz_f32_to_bf16(src[i]));
}
