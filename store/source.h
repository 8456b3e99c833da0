/* Import sources: finding, mapping and validating the files of a model
 * before anything is written. Internal to the import module. */
#ifndef TCZ_SOURCE_H
#define TCZ_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "store/npy.h"
#include "store/safetensors.h"

typedef enum src_kind {
	SRC_SAFETENSORS,
	SRC_NPY,
	SRC_AUX,
} src_kind;

typedef struct src_file {
	char *path;
	char *name; /* file name as presented in the model directory */
	src_kind kind;
	const unsigned char *map; /* whole file, read-only */
	size_t size;
	tcz_st_file st; /* SRC_SAFETENSORS */
	tcz_npy_info npy; /* SRC_NPY */
} src_file;

/* One tensor of the model, in model order (file order, then offset). */
typedef struct src_tensor {
	const char *name; /* owned by the source file's parse */
	tcz_dtype dtype;
	uint32_t ndim;
	const uint64_t *shape;
	uint64_t numel, nbytes;
	const unsigned char *data;
	uint32_t file;   /* index into files */
} src_tensor;

typedef struct src_set {
	char *default_name; /* model name derived from the source path */
	int from_dir;
	src_file *files;
	size_t n_files;
	src_tensor *tensors;
	size_t n_tensors;
	uint64_t total_bytes; /* of all files */
	char **skipped; /* subdirectories and special files left out */
	size_t n_skipped;
} src_set;

/* Opens and validates srcs (one .safetensors file, one directory, or one
 * or more .npy files). err names the file and problem.
 * Errors: -ENOENT, -EACCES (with err), -EBADMSG invalid content,
 * -EINVAL unsupported combination, -ENOMEM. */
int src_open(const char *const *srcs, size_t n, src_set *out, char *err,
	     size_t errlen);
void src_close(src_set *s);

#endif
