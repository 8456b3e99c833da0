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

#endif
