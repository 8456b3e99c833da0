/* IEEE binary16 (f16) and bfloat16 (bf16) <-> binary32 (f32).
 *
 * f32 -> f16/bf16 rounds to nearest, ties to even, with correct subnormals
 * and overflow to infinity. f16/bf16 -> f32 is exact. NaNs stay NaNs with
 * their sign and the top payload bits; a NaN whose kept payload would be
 * zero gets the quiet bit so it cannot turn into an infinity. Hence every
 * f16 and bf16 bit pattern survives the trip through f32 unchanged. */
#ifndef TCZ_HALF_H
#define TCZ_HALF_H

#include <stddef.h>
#include <stdint.h>

float tcz_f16_to_f32(uint16_t h);
uint16_t tcz_f32_to_f16(float f);
float tcz_bf16_to_f32(uint16_t h);
uint16_t tcz_f32_to_bf16(float f);

/* Bulk variants: n elements, any alignment of src and dst (the 16-bit side
 * is read/written bytewise little-endian), buffers must not overlap. They
 * use F16C/SSE2 when the CPU has it and give the same results as the scalar
 * functions above for every non-NaN input (NaNs stay NaNs of equal sign). */
void tcz_f16_to_f32_n(const void *src, float *dst, size_t n);
void tcz_f32_to_f16_n(const float *src, void *dst, size_t n);
void tcz_bf16_to_f32_n(const void *src, float *dst, size_t n);
void tcz_f32_to_bf16_n(const float *src, void *dst, size_t n);

#endif
