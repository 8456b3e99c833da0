/* Test-only reader of the real model files (TCZ_MODELS_DIR). Minimal: it
 * trusts nothing it reads, but only serves tests. */
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

/* Loads every F32/F16/BF16 tensor of a .safetensors file as f32 (widened).
 * Returns 0 or -errno. */
int tu_load_safetensors(const char *path, tu_tensor **out, size_t *count);
void tu_free_tensors(tu_tensor *t, size_t count);

/* dir of TCZ_MODELS_DIR or NULL when unset/missing */
const char *tu_models_dir(void);

/* main() of a unit test with cases on the real models: without an
 * argument it runs the synthetic cases; with "models" only the real-model
 * cases, or exits 77 (meson's SKIP) when ../shared/models is absent. */
struct CMUnitTest;
int tu_main(int argc, char **argv, const struct CMUnitTest *synthetic,
	    size_t n_synthetic, const struct CMUnitTest *models,
	    size_t n_models);

#endif
