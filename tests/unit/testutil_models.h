/* Test-only reader for the real model files in TCZ_MODELS_DIR. */
#ifndef TCZ_TESTUTIL_MODELS_H
#define TCZ_TESTUTIL_MODELS_H

#include <stddef.h>

typedef struct {
	char *name;
	size_t n;
	size_t ndim;
	size_t shape[8];
	float *data;
} tu_tensor;

/* Loads every F32/F16/BF16 tensor of a .safetensors file as f32 (widened),
 * in file order. Other dtypes are skipped. Returns 0 or -errno (-EINVAL
 * for a malformed file). */
int tu_load_safetensors(const char *path, tu_tensor **out, size_t *count);
void tu_free_tensors(tu_tensor *t, size_t count);

/* dir of TCZ_MODELS_DIR or NULL when unset/missing */
const char *tu_models_dir(void);

#endif
