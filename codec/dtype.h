/* Tensor element types as named by safetensors, and conversions of the
 * floating ones to and from f32 (the working type of the lossy codecs). */
#ifndef TCZ_DTYPE_H
#define TCZ_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values are stored in the store's records: never renumber, only append. */
typedef enum tcz_dtype {
	TCZ_DT_BOOL = 0,
	TCZ_DT_U8 = 1,
	TCZ_DT_I8 = 2,
	TCZ_DT_U16 = 3,
	TCZ_DT_I16 = 4,
	TCZ_DT_U32 = 5,
	TCZ_DT_I32 = 6,
	TCZ_DT_U64 = 7,
	TCZ_DT_I64 = 8,
	TCZ_DT_F16 = 9,
	TCZ_DT_BF16 = 10,
	TCZ_DT_F32 = 11,
	TCZ_DT_F64 = 12,
	TCZ_DT_COUNT
} tcz_dtype;

/* Element size in bytes, or 0 for a value outside the enum. */
size_t tcz_dtype_size(tcz_dtype dt);

/* The safetensors name ("F32", "BF16", "BOOL", ...), or NULL when invalid. */
const char *tcz_dtype_name(tcz_dtype dt);

/* Parses a safetensors dtype name of `len` bytes (not NUL-terminated).
 * Errors: -EINVAL when the name is not one of the supported dtypes. */
int tcz_dtype_parse(const char *name, size_t len, tcz_dtype *out);

/* True for F16, BF16, F32 and F64: the dtypes the lossy codecs accept. */
bool tcz_dtype_is_float(tcz_dtype dt);

/* Converts n elements of a float dtype to f32. F16/BF16 widen exactly;
 * F64 rounds to nearest. src needs no particular alignment.
 * Errors: -EINVAL when dt is not a float dtype. */
int tcz_dtype_to_f32(tcz_dtype dt, const void *src, size_t n, float *dst);

/* Converts n f32 values to a float dtype, rounding to nearest even.
 * dst needs no particular alignment.
 * Errors: -EINVAL when dt is not a float dtype. */
int tcz_dtype_from_f32(tcz_dtype dt, const float *src, size_t n, void *dst);

/* Converts one element at p (any alignment) of a float dtype to double;
 * returns 0.0 for a non-float dtype. For metrics, not for hot loops. */
double tcz_dtype_get_f64(tcz_dtype dt, const void *p);

#endif
