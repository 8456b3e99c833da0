/* ggml type table and dequantizers. Layouts: docs/draft-gguf.md.
 *
 * The dequantizers follow each block format's definition element by
 * element, one f32 operation at a time (a product is rounded before a min
 * is subtracted: no fused multiply-add), so their output is reproducible. */
#include "codec/ggml.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "codec/dtype.h"
#include "codec/half.h"

#define QK_K 256 /* elements of a K-quant super-block */

static const tcz_ggml_info types[TCZ_GGML_TYPE_LIMIT] = {
	[TCZ_GGML_F32] = {"F32", 1, 4, TCZ_DT_F32},
	[TCZ_GGML_F16] = {"F16", 1, 2, TCZ_DT_F16},
	[TCZ_GGML_Q4_0] = {"Q4_0", 32, 18, -1},
	[TCZ_GGML_Q4_1] = {"Q4_1", 32, 20, -1},
	[TCZ_GGML_Q5_0] = {"Q5_0", 32, 22, -1},
	[TCZ_GGML_Q5_1] = {"Q5_1", 32, 24, -1},
	[TCZ_GGML_Q8_0] = {"Q8_0", 32, 34, -1},
	[TCZ_GGML_Q8_1] = {"Q8_1", 32, 36, -1},
	[TCZ_GGML_Q2_K] = {"Q2_K", QK_K, 84, -1},
	[TCZ_GGML_Q3_K] = {"Q3_K", QK_K, 110, -1},
	[TCZ_GGML_Q4_K] = {"Q4_K", QK_K, 144, -1},
	[TCZ_GGML_Q5_K] = {"Q5_K", QK_K, 176, -1},
	[TCZ_GGML_Q6_K] = {"Q6_K", QK_K, 210, -1},
	[TCZ_GGML_Q8_K] = {"Q8_K", QK_K, 292, -1},
	[TCZ_GGML_IQ2_XXS] = {"IQ2_XXS", QK_K, 66, -1},
	[TCZ_GGML_IQ2_XS] = {"IQ2_XS", QK_K, 74, -1},
	[TCZ_GGML_IQ3_XXS] = {"IQ3_XXS", QK_K, 98, -1},
	[TCZ_GGML_IQ1_S] = {"IQ1_S", QK_K, 50, -1},
	[TCZ_GGML_IQ4_NL] = {"IQ4_NL", 32, 18, -1},
	[TCZ_GGML_IQ3_S] = {"IQ3_S", QK_K, 110, -1},
	[TCZ_GGML_IQ2_S] = {"IQ2_S", QK_K, 82, -1},
	[TCZ_GGML_IQ4_XS] = {"IQ4_XS", QK_K, 136, -1},
	[TCZ_GGML_I8] = {"I8", 1, 1, TCZ_DT_I8},
	[TCZ_GGML_I16] = {"I16", 1, 2, TCZ_DT_I16},
	[TCZ_GGML_I32] = {"I32", 1, 4, TCZ_DT_I32},
	[TCZ_GGML_I64] = {"I64", 1, 8, TCZ_DT_I64},
	[TCZ_GGML_F64] = {"F64", 1, 8, TCZ_DT_F64},
	[TCZ_GGML_IQ1_M] = {"IQ1_M", QK_K, 56, -1},
	[TCZ_GGML_BF16] = {"BF16", 1, 2, TCZ_DT_BF16},
	[TCZ_GGML_TQ1_0] = {"TQ1_0", QK_K, 54, -1},
	[TCZ_GGML_TQ2_0] = {"TQ2_0", QK_K, 66, -1},
	[TCZ_GGML_MXFP4] = {"MXFP4", 32, 17, -1},
	[TCZ_GGML_NVFP4] = {"NVFP4", 64, 36, -1},
	[TCZ_GGML_Q1_0] = {"Q1_0", 128, 18, -1},
};

int tcz_ggml_type(uint32_t id, tcz_ggml_info *out)
{
	if (id >= TCZ_GGML_TYPE_LIMIT || !types[id].name)
		return -EINVAL;
	*out = types[id];
	return 0;
}

bool tcz_ggml_is_block(uint32_t type)
{
	tcz_ggml_info t;
	return tcz_ggml_type(type, &t) == 0 && t.block_elems > 1;
}

int tcz_ggml_nbytes(uint32_t type, const uint64_t *dims, uint32_t n_dims,
		    uint64_t *out)
{
	const uint64_t lim = UINT64_MAX >> 1; /* ggml counts in int64_t */
	tcz_ggml_info t;
	uint64_t numel = 1, rest = 1;
	int zero = 0;

	if (tcz_ggml_type(type, &t))
		return -EINVAL;
	if (n_dims == 0) {
		if (t.block_elems != 1)
			return -EINVAL;
		*out = t.block_bytes;
		return 0;
	}
	if (dims[0] % t.block_elems)
		return -EINVAL;
	for (uint32_t i = 0; i < n_dims; i++)
		zero |= dims[i] == 0;
	if (zero) {
		*out = 0;
		return 0;
	}
	for (uint32_t i = 0; i < n_dims; i++) {
		if (numel > lim / dims[i])
			return -EOVERFLOW;
		numel *= dims[i];
		if (i)
			rest *= dims[i]; /* <= numel: cannot overflow */
	}
	uint64_t row = dims[0] / t.block_elems;
	if (row > lim / t.block_bytes)
		return -EOVERFLOW;
	row *= t.block_bytes;
	if (rest > lim / row)
		return -EOVERFLOW;
	*out = row * rest;
	return 0;
}

/* ---- field readers ------------------------------------------------------ */

static float f16(const unsigned char *p)
{
	return tcz_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

static float f32(const unsigned char *p)
{
	uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
		     (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* ---- 32-element blocks -------------------------------------------------- */

/* Q4_0: f16 d, 16 bytes: element j (< 16) is the low nibble of byte j,
 * element j + 16 its high nibble; x = (q - 8) * d. */
static void dq_q4_0(const unsigned char *b, float *y)
{
	float d = f16(b);
	for (int j = 0; j < 16; j++) {
		y[j] = (float)((b[2 + j] & 0xf) - 8) * d;
		y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
	}
}

/* Q4_1: f16 d, f16 m, nibbles as Q4_0; x = q * d + m. */
static void dq_q4_1(const unsigned char *b, float *y)
{
	float d = f16(b), m = f16(b + 2);
	for (int j = 0; j < 16; j++) {
		float lo = (float)(b[4 + j] & 0xf) * d;
		float hi = (float)(b[4 + j] >> 4) * d;
		y[j] = lo + m;
		y[j + 16] = hi + m;
	}
}

/* The fifth bits of Q5_0/Q5_1: bit i of a little-endian u32 is element
 * i's. */
static uint32_t u32le(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* Q5_0: f16 d, u32 qh, 16 bytes of nibbles; q = nibble | bit << 4,
 * x = (q - 16) * d. */
static void dq_q5_0(const unsigned char *b, float *y)
{
	float d = f16(b);
	uint32_t qh = u32le(b + 2);
	for (int j = 0; j < 16; j++) {
		int lo = (b[6 + j] & 0xf) | (int)((qh >> j) & 1) << 4;
		int hi = (b[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
		y[j] = (float)(lo - 16) * d;
		y[j + 16] = (float)(hi - 16) * d;
	}
}

/* Q5_1: f16 d, f16 m, u32 qh, nibbles; x = q * d + m. */
static void dq_q5_1(const unsigned char *b, float *y)
{
	float d = f16(b), m = f16(b + 2);
	uint32_t qh = u32le(b + 4);
	for (int j = 0; j < 16; j++) {
		int lo = (b[8 + j] & 0xf) | (int)((qh >> j) & 1) << 4;
		int hi = (b[8 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
		float a = (float)lo * d, c = (float)hi * d;
		y[j] = a + m;
		y[j + 16] = c + m;
	}
}

/* Q8_0: f16 d, 32 int8 q; x = q * d. Q8_1 has f16 d, f16 s (d * sum q,
 * for dot products: not needed here), then the same 32 int8. */
static void dq_q8(const unsigned char *b, size_t qoff, float *y)
{
	float d = f16(b);
	for (int j = 0; j < 32; j++)
		y[j] = (float)(int8_t)b[qoff + j] * d;
}

/* IQ4_NL: f16 d, nibbles as Q4_0 indexing a fixed non-linear table. */
static const int8_t iq4nl_values[16] = {-127, -104, -83, -65, -49, -35,
					-22,  -10,  1,   13,  25,  38,
					53,   69,   89,  113};

static void dq_iq4_nl(const unsigned char *b, float *y)
{
	float d = f16(b);
	for (int j = 0; j < 16; j++) {
		y[j] = d * (float)iq4nl_values[b[2 + j] & 0xf];
		y[j + 16] = d * (float)iq4nl_values[b[2 + j] >> 4];
	}
}

/* MXFP4: u8 E8M0 exponent e, nibbles as Q4_0 holding E2M1 codes; the
 * table is twice the E2M1 value, so the scale is 2^(e - 127) / 2. */
static const int8_t mxfp4_values[16] = {0, 1,  2,  3,  4,  6,  8,  12,
					0, -1, -2, -3, -4, -6, -8, -12};

static void dq_mxfp4(const unsigned char *b, float *y)
{
	float d = ldexpf(1.0f, (int)b[0] - 128);
	for (int j = 0; j < 16; j++) {
		y[j] = (float)mxfp4_values[b[1 + j] & 0xf] * d;
		y[j + 16] = (float)mxfp4_values[b[1 + j] >> 4] * d;
	}
}

/* ---- K-quants (256-element super-blocks) -------------------------------- */

/* Q2_K: scales[16] (low nibble: scale, high nibble: min of sub-block s,
 * 16 elements each), qs[64], f16 d, f16 dmin. The 2-bit code of element
 * 128h + 32j + 16k + l (h < 2, j < 4, k < 2, l < 16) is bits 2j..2j+1 of
 * qs[32h + 16k + l]; its sub-block is 8h + 2j + k.
 * x = (d * sc) * q - (dmin * m). */
static void dq_q2_k(const unsigned char *b, float *y)
{
	const unsigned char *sc = b, *qs = b + 16;
	float d = f16(b + 80), dmin = f16(b + 82);
	for (int h = 0; h < 2; h++) {
		for (int j = 0; j < 4; j++) {
			for (int k = 0; k < 2; k++) {
				int s = 8 * h + 2 * j + k;
				float dl = d * (float)(sc[s] & 0xf);
				float ml = dmin * (float)(sc[s] >> 4);
				for (int l = 0; l < 16; l++) {
					int q = (qs[32 * h + 16 * k + l] >>
						 (2 * j)) & 3;
					float v = dl * (float)q;
					y[128 * h + 32 * j + 16 * k + l] = v - ml;
				}
			}
		}
	}
}

/* Q3_K: hmask[32], qs[64], scales[12], f16 d. Sixteen 6-bit scales:
 * scale s has its low 4 bits in scales[s] (s < 8, low nibble) or
 * scales[s - 8] (high nibble), its top 2 bits in bits 2(s/4)..+1 of
 * scales[8 + s%4]; it counts from -32. Element 128h + 32j + 16k + l has
 * low bits 2j..2j+1 of qs[32h + 16k + l], and its high bit is bit
 * (4h + j) of hmask[16k + l]; the code q is low - 4 when the high bit is
 * clear, low when set. Sub-block 8h + 2j + k. x = (d * (sc - 32)) * q. */
static void dq_q3_k(const unsigned char *b, float *y)
{
	const unsigned char *hm = b, *qs = b + 32, *sc = b + 96;
	float d = f16(b + 108);
	int scale[16];
	for (int s = 0; s < 16; s++) {
		int lo = s < 8 ? sc[s] & 0xf : sc[s - 8] >> 4;
		int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
		scale[s] = (lo | hi << 4) - 32;
	}
	for (int h = 0; h < 2; h++) {
		for (int j = 0; j < 4; j++) {
			for (int k = 0; k < 2; k++) {
				int s = 8 * h + 2 * j + k;
				float dl = d * (float)scale[s];
				for (int l = 0; l < 16; l++) {
					int i = 16 * k + l;
					int q = (qs[32 * h + i] >> (2 * j)) & 3;
					if (!(hm[i] & (1u << (4 * h + j))))
						q -= 4;
					y[128 * h + 32 * j + i] = dl * (float)q;
				}
			}
		}
	}
}

/* The 6-bit scale and min of sub-block j of Q4_K/Q5_K from their 12-byte
 * scales field: j < 4: scale = s[j] & 63, min = s[j + 4] & 63; j >= 4:
 * scale = low nibble of s[j + 4] | (s[j - 4] >> 6) << 4, min = high
 * nibble of s[j + 4] | (s[j] >> 6) << 4. */
static void scale_min_k4(const unsigned char *s, int j, int *sc, int *m)
{
	if (j < 4) {
		*sc = s[j] & 63;
		*m = s[j + 4] & 63;
	} else {
		*sc = (s[j + 4] & 0xf) | (s[j - 4] >> 6) << 4;
		*m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
	}
}

/* Q4_K: f16 d, f16 dmin, scales[12], qs[128]: eight sub-blocks of 32.
 * Element 64c + l (l < 32) is the low nibble of qs[32c + l] (sub-block
 * 2c), element 64c + 32 + l its high nibble (sub-block 2c + 1).
 * x = (d * sc) * q - (dmin * m). */
static void dq_q4_k(const unsigned char *b, float *y)
{
	float d = f16(b), dmin = f16(b + 2);
	const unsigned char *s = b + 4, *qs = b + 16;
	for (int c = 0; c < 4; c++) {
		for (int k = 0; k < 2; k++) {
			int sc, m;
			scale_min_k4(s, 2 * c + k, &sc, &m);
			float dl = d * (float)sc, ml = dmin * (float)m;
			for (int l = 0; l < 32; l++) {
				int q = (qs[32 * c + l] >> (4 * k)) & 0xf;
				float v = dl * (float)q;
				y[64 * c + 32 * k + l] = v - ml;
			}
		}
	}
}

/* Q5_K: f16 d, f16 dmin, scales[12], qh[32], qs[128]: as Q4_K plus a
 * fifth bit, bit (2c + k) of qh[l], worth 16. */
static void dq_q5_k(const unsigned char *b, float *y)
{
	float d = f16(b), dmin = f16(b + 2);
	const unsigned char *s = b + 4, *qh = b + 16, *qs = b + 48;
	for (int c = 0; c < 4; c++) {
		for (int k = 0; k < 2; k++) {
			int sc, m;
			scale_min_k4(s, 2 * c + k, &sc, &m);
			float dl = d * (float)sc, ml = dmin * (float)m;
			for (int l = 0; l < 32; l++) {
				int q = (qs[32 * c + l] >> (4 * k)) & 0xf;
				q += ((qh[l] >> (2 * c + k)) & 1) << 4;
				float v = dl * (float)q;
				y[64 * c + 32 * k + l] = v - ml;
			}
		}
	}
}

/* Q6_K: ql[128], qh[64], int8 scales[16], f16 d. Element 128h + 32r + l
 * (r < 4, l < 32) has its low 4 bits in ql[64h + 32(r%2) + l] (low nibble
 * for r < 2, high nibble otherwise), its top 2 bits in bits 2r..2r+1 of
 * qh[32h + l]; q counts from -32; its scale is scales[8h + 2r + l/16].
 * x = (d * sc) * q. */
static void dq_q6_k(const unsigned char *b, float *y)
{
	const unsigned char *ql = b, *qh = b + 128;
	const unsigned char *sc = b + 192;
	float d = f16(b + 208);
	for (int h = 0; h < 2; h++) {
		for (int r = 0; r < 4; r++) {
			for (int l = 0; l < 32; l++) {
				int lo = (ql[64 * h + 32 * (r % 2) + l] >>
					  (4 * (r / 2))) & 0xf;
				int hi = (qh[32 * h + l] >> (2 * r)) & 3;
				int q = (lo | hi << 4) - 32;
				int s = (int8_t)sc[8 * h + 2 * r + l / 16];
				float dl = d * (float)s;
				y[128 * h + 32 * r + l] = dl * (float)q;
			}
		}
	}
}

/* Q8_K: f32 d, int8 qs[256], int16 bsums[16] (sums for dot products, not
 * needed here); x = q * d. */
static void dq_q8_k(const unsigned char *b, float *y)
{
	float d = f32(b);
	for (int j = 0; j < QK_K; j++)
		y[j] = (float)(int8_t)b[4 + j] * d;
}

typedef void (*dq_fn)(const unsigned char *b, float *y);

static void dq_q8_0(const unsigned char *b, float *y)
{
	dq_q8(b, 2, y);
}

static void dq_q8_1(const unsigned char *b, float *y)
{
	dq_q8(b, 4, y);
}

static const dq_fn dequantizers[TCZ_GGML_TYPE_LIMIT] = {
	[TCZ_GGML_Q4_0] = dq_q4_0,   [TCZ_GGML_Q4_1] = dq_q4_1,
	[TCZ_GGML_Q5_0] = dq_q5_0,   [TCZ_GGML_Q5_1] = dq_q5_1,
	[TCZ_GGML_Q8_0] = dq_q8_0,   [TCZ_GGML_Q8_1] = dq_q8_1,
	[TCZ_GGML_Q2_K] = dq_q2_k,   [TCZ_GGML_Q3_K] = dq_q3_k,
	[TCZ_GGML_Q4_K] = dq_q4_k,   [TCZ_GGML_Q5_K] = dq_q5_k,
	[TCZ_GGML_Q6_K] = dq_q6_k,   [TCZ_GGML_Q8_K] = dq_q8_k,
	[TCZ_GGML_IQ4_NL] = dq_iq4_nl, [TCZ_GGML_MXFP4] = dq_mxfp4,
};

bool tcz_ggml_can_dequantize(uint32_t type)
{
	if (type >= TCZ_GGML_TYPE_LIMIT)
		return false;
	return dequantizers[type] || type == TCZ_GGML_F32 ||
	       type == TCZ_GGML_F16 || type == TCZ_GGML_BF16;
}

int tcz_ggml_dequantize(uint32_t type, const void *blocks, size_t n_blocks,
			float *out)
{
	tcz_ggml_info t;
	const unsigned char *b = blocks;

	if (tcz_ggml_type(type, &t))
		return -EINVAL;
	if (!tcz_ggml_can_dequantize(type))
		return -ENOTSUP;
	switch (type) {
	case TCZ_GGML_F32:
		if (n_blocks)
			memcpy(out, blocks, n_blocks * 4);
		return 0;
	case TCZ_GGML_F16:
		tcz_f16_to_f32_n(blocks, out, n_blocks);
		return 0;
	case TCZ_GGML_BF16:
		tcz_bf16_to_f32_n(blocks, out, n_blocks);
		return 0;
	}
	for (size_t i = 0; i < n_blocks; i++)
		dequantizers[type](b + i * t.block_bytes,
				   out + i * t.block_elems);
	return 0;
}
