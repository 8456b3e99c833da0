/* ggml tensor types as GGUF files store them: the type table (name,
 * elements and bytes per block), the size of a tensor, and dequantization
 * of the common block formats to f32.
 *
 * Numbering is the GGUF specification's `ggml_type` (ggml docs/gguf.md):
 * values are stored in files, never renumbered. Removed types (4, 5,
 * 31-33, 36-38) and values not in the table are unknown. A tensor's dims
 * are in GGUF order: dims[0] is the row length (the fastest-varying
 * index), and every row is a whole number of blocks.
 *
 * Block layouts: docs/draft-gguf.md. All multi-byte fields are
 * little-endian; blocks need no alignment in memory. */
#ifndef TCZ_GGML_H
#define TCZ_GGML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	TCZ_GGML_F32 = 0,
	TCZ_GGML_F16 = 1,
	TCZ_GGML_Q4_0 = 2,
	TCZ_GGML_Q4_1 = 3,
	/* 4 (Q4_2) and 5 (Q4_3): removed from ggml, unknown here */
	TCZ_GGML_Q5_0 = 6,
	TCZ_GGML_Q5_1 = 7,
	TCZ_GGML_Q8_0 = 8,
	TCZ_GGML_Q8_1 = 9,
	TCZ_GGML_Q2_K = 10,
	TCZ_GGML_Q3_K = 11,
	TCZ_GGML_Q4_K = 12,
	TCZ_GGML_Q5_K = 13,
	TCZ_GGML_Q6_K = 14,
	TCZ_GGML_Q8_K = 15,
	TCZ_GGML_IQ2_XXS = 16,
	TCZ_GGML_IQ2_XS = 17,
	TCZ_GGML_IQ3_XXS = 18,
	TCZ_GGML_IQ1_S = 19,
	TCZ_GGML_IQ4_NL = 20,
	TCZ_GGML_IQ3_S = 21,
	TCZ_GGML_IQ2_S = 22,
	TCZ_GGML_IQ4_XS = 23,
	TCZ_GGML_I8 = 24,
	TCZ_GGML_I16 = 25,
	TCZ_GGML_I32 = 26,
	TCZ_GGML_I64 = 27,
	TCZ_GGML_F64 = 28,
	TCZ_GGML_IQ1_M = 29,
	TCZ_GGML_BF16 = 30,
	/* 31-33 (Q4_0_4_4 ...): removed from GGUF files */
	TCZ_GGML_TQ1_0 = 34,
	TCZ_GGML_TQ2_0 = 35,
	/* 36-38 (IQ4_NL_4_4 ...): removed from GGUF files */
	TCZ_GGML_MXFP4 = 39,
	TCZ_GGML_NVFP4 = 40,
	TCZ_GGML_Q1_0 = 41,
	TCZ_GGML_TYPE_LIMIT /* one past the largest value in the table */
};

typedef struct tcz_ggml_info {
	const char *name;     /* "Q4_0", "F32", ... (as ggml names them) */
	uint32_t block_elems; /* elements per block; 1 for plain types */
	uint32_t block_bytes; /* bytes per block */
	int dtype;            /* the tcz_dtype of a plain type (F32, F16,
				 BF16, F64, I8..I64), -1 for a block type */
} tcz_ggml_info;

/* The table entry of a type id.
 * Errors: -EINVAL unknown or removed type (*out untouched). */
int tcz_ggml_type(uint32_t id, tcz_ggml_info *out);

/* True for a known type stored in blocks of several elements (the
 * quantized types); false for plain types and unknown ids. */
bool tcz_ggml_is_block(uint32_t type);

/* Bytes of a tensor of n_dims dims (GGUF order): dims[0] must be a
 * multiple of the block size; the size is dims[0] / block_elems *
 * block_bytes * dims[1] * ... (a zero dim gives 0). n_dims 0 is a single
 * element (plain types only).
 * Errors: -EINVAL unknown type, or dims[0] not a whole number of blocks;
 * -EOVERFLOW the element count or the size does not fit in 63 bits. */
int tcz_ggml_nbytes(uint32_t type, const uint64_t *dims, uint32_t n_dims,
		    uint64_t *out);

/* Whether tcz_ggml_dequantize handles the type: F32, F16, BF16, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
 * IQ4_NL, MXFP4. */
bool tcz_ggml_can_dequantize(uint32_t type);

/* Dequantizes n_blocks whole blocks at `blocks` (block_bytes each, any
 * alignment) into out[n_blocks * block_elems], with the formulas of each
 * format's definition, evaluated in f32 in a fixed order (the same floats
 * on every run and every machine). Plain types count one element per
 * block. NaN and infinite scales pass through as IEEE arithmetic makes
 * them.
 * Errors: -EINVAL unknown type; -ENOTSUP a known type this function does
 * not dequantize (tcz_ggml_can_dequantize false). */
int tcz_ggml_dequantize(uint32_t type, const void *blocks, size_t n_blocks,
			float *out);

#endif
