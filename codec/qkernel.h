/* Private to the codec library: the groupwise quantize / dequantize inner
 * loops shared by the quant blob (quant.c) and TQTC segments (tqtc.c).
 * Not an API: no argument checking, callers validate everything.
 *
 * Rules (SPEC section 5): qmax = 2^(B-1)-1; for a group with stored scale
 * s > 0, q = clamp(rint(v/s), -qmax, qmax) (ties to even), u = q + qmax;
 * decoding gives v' = (u - qmax) * s computed in f32. A group with s == 0
 * encodes every value as q = 0. v/s is evaluated as v * (1/s), so a value
 * within ~2^-16 of a rounding midpoint may land on the other neighbour:
 * |v - v'| <= s * (1/2 + 2^-15) in every case. */
#ifndef TCZ_QKERNEL_H
#define TCZ_QKERNEL_H

#include <stddef.h>
#include <stdint.h>

static inline unsigned tcz_qk_qmax(unsigned bits)
{
	return (1u << (bits - 1)) - 1;
}

/* Largest |v[i]| as an f32 bit pattern with the sign cleared; a result
 * >= 0x7f800000 means v holds a NaN or an infinity. 0 when n == 0. */
uint32_t tcz_qk_absmax_bits(const float *v, size_t n);

/* Reads scale g of a little-endian scale array of f16 (sc_f32 == 0) or
 * f32 values. */
float tcz_qk_scale_at(const unsigned char *sc, int sc_f32, size_t g);

/* Quantizes cnt values and packs their codes into dst, which receives
 * exactly ceil(cnt*bits/8) bytes. The values form frames of flen values
 * (pass flen = cnt for a single frame); within a frame, value i belongs to
 * group i / glen, whose scale is tcz_qk_scale_at(sc, sc_f32, group). */
void tcz_qk_encode(const float *v, size_t cnt, size_t flen, uint32_t glen,
		   const unsigned char *sc, int sc_f32, unsigned bits,
		   unsigned char *dst);

/* Decodes codes first .. first+cnt-1 of the bitstream `packed` (which
 * must hold ceil((first+cnt)*bits/8) bytes; nothing beyond is read) into
 * out[0..cnt); out[i] belongs to group i / glen. */
void tcz_qk_decode(const unsigned char *packed, size_t first, size_t cnt,
		   uint32_t glen, const unsigned char *sc, int sc_f32,
		   unsigned bits, float *out);

/* ---- the quant blob's version 2 layout (quant.c only) -----------------
 *
 * All 2^B codes are levels: h = 2^(B-1), a value is coded with a signed
 * step s as u = clamp(rint(v/s) + h, 0, 2^B - 1) (v/s evaluated as
 * v * (1/s), or divided when 1/s overflows) and decodes to
 * v' = (u - h) * s: levels -h*s .. (h-1)*s, so the sign of s says on which
 * side the extra level lies. The step of sub-block j comes from an F-bit
 * code c_j (sign bit F-1, magnitude m_j below it) under the bf16
 * super-scale d of its super-block: s = (-1)^sign * d * m_j. */

/* Where a v2 blob's scales are: K sub-blocks per super-scale; the F-bit
 * step codes form their own bitstream (tcz_bitpack layout). */
typedef struct tcz_qk2_scales {
	const unsigned char *super; /* bf16, little-endian */
	const unsigned char *sub;   /* F-bit step codes */
	uint32_t per_super;         /* K >= 1 */
	unsigned field_bits;        /* F, 2..8 */
} tcz_qk2_scales;

/* The signed step of sub-block j, in f32. */
float tcz_qk2_step(const tcz_qk2_scales *sc, size_t j);

#define TCZ_QK2_MAX_STEPS 16

/* For each of nc <= TCZ_QK2_MAX_STEPS candidate steps s[c], the squared
 * error of v[0..n) coded with the v2 rule at that step (a step of 0:
 * every value decodes to 0), into out[c]. inv[c] is 1/s[c] or close to it
 * (for a search, any fixed approximation will do); a candidate whose
 * inv[c] is not finite is measured dividing by s[c]. The data is read
 * once for all candidates. */
void tcz_qk2_sse(const float *v, size_t n, const float *s, const float *inv,
		 size_t nc, unsigned bits, double *out);

/* Quantizes cnt values with the v2 rule and packs their codes into dst
 * (exactly ceil(cnt*bits/8) bytes); v[i] is in sub-block i / glen, whose
 * step is tcz_qk2_step(sc, i / glen). A step of 0 codes h. */
void tcz_qk2_encode(const float *v, size_t cnt, uint32_t glen,
		    const tcz_qk2_scales *sc, unsigned bits, unsigned char *dst);

/* Decodes codes first .. first+cnt-1 of `packed` (first a multiple of
 * glen; ceil((first+cnt)*bits/8) bytes readable) into out[0..cnt) with
 * the steps of sub-blocks first/glen onwards. */
void tcz_qk2_decode(const unsigned char *packed, size_t first, size_t cnt,
		    uint32_t glen, const tcz_qk2_scales *sc, unsigned bits,
		    float *out);

#endif
