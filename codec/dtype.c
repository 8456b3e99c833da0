#include "codec/dtype.h"

#include <errno.h>
#include <string.h>

#include "codec/half.h"

static const struct {
	const char *name;
	size_t size;
} dtypes[TCZ_DT_COUNT] = {
	[TCZ_DT_BOOL] = {"BOOL", 1}, [TCZ_DT_U8] = {"U8", 1},
	[TCZ_DT_I8] = {"I8", 1},     [TCZ_DT_U16] = {"U16", 2},
	[TCZ_DT_I16] = {"I16", 2},   [TCZ_DT_U32] = {"U32", 4},
	[TCZ_DT_I32] = {"I32", 4},   [TCZ_DT_U64] = {"U64", 8},
	[TCZ_DT_I64] = {"I64", 8},   [TCZ_DT_F16] = {"F16", 2},
	[TCZ_DT_BF16] = {"BF16", 2}, [TCZ_DT_F32] = {"F32", 4},
	[TCZ_DT_F64] = {"F64", 8},
};

size_t tcz_dtype_size(tcz_dtype dt)
{
	return (unsigned)dt < TCZ_DT_COUNT ? dtypes[dt].size : 0;
}

const char *tcz_dtype_name(tcz_dtype dt)
{
	return (unsigned)dt < TCZ_DT_COUNT ? dtypes[dt].name : NULL;
}

int tcz_dtype_parse(const char *name, size_t len, tcz_dtype *out)
{
	for (int i = 0; i < TCZ_DT_COUNT; i++) {
		if (strlen(dtypes[i].name) == len &&
		    memcmp(dtypes[i].name, name, len) == 0) {
			*out = (tcz_dtype)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool tcz_dtype_is_float(tcz_dtype dt)
{
	return dt == TCZ_DT_F16 || dt == TCZ_DT_BF16 || dt == TCZ_DT_F32 ||
	       dt == TCZ_DT_F64;
}

int tcz_dtype_to_f32(tcz_dtype dt, const void *src, size_t n, float *dst)
{
	const unsigned char *s = src;
	switch (dt) {
	case TCZ_DT_F16:
		tcz_f16_to_f32_n(src, dst, n);
		return 0;
	case TCZ_DT_BF16:
		tcz_bf16_to_f32_n(src, dst, n);
		return 0;
	case TCZ_DT_F32:
		memmove(dst, src, n * sizeof(float));
		return 0;
	case TCZ_DT_F64:
		for (size_t i = 0; i < n; i++) {
			double d;
			memcpy(&d, s + 8 * i, 8);
			dst[i] = (float)d;
		}
		return 0;
	default:
		return -EINVAL;
	}
}

int tcz_dtype_from_f32(tcz_dtype dt, const float *src, size_t n, void *dst)
{
	unsigned char *d = dst;
	switch (dt) {
	case TCZ_DT_F16:
		tcz_f32_to_f16_n(src, dst, n);
		return 0;
	case TCZ_DT_BF16:
		tcz_f32_to_bf16_n(src, dst, n);
		return 0;
	case TCZ_DT_F32:
		memmove(dst, src, n * sizeof(float));
		return 0;
	case TCZ_DT_F64:
		for (size_t i = 0; i < n; i++) {
			double v = src[i];
			memcpy(d + 8 * i, &v, 8);
		}
		return 0;
	default:
		return -EINVAL;
	}
}

double tcz_dtype_get_f64(tcz_dtype dt, const void *p)
{
	uint16_t h;
	float f;
	double d;
	switch (dt) {
	case TCZ_DT_F16:
		memcpy(&h, p, 2);
		return tcz_f16_to_f32(h);
	case TCZ_DT_BF16:
		memcpy(&h, p, 2);
		return tcz_bf16_to_f32(h);
	case TCZ_DT_F32:
		memcpy(&f, p, 4);
		return f;
	case TCZ_DT_F64:
		memcpy(&d, p, 8);
		return d;
	default:
		return 0.0;
	}
}
