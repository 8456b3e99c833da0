/* Import sources: finding, mapping and validating the files of a model
 * before anything is written. Internal to the import module. */
#ifndef TCZ_SOURCE_H
#define TCZ_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "store/gguf.h"
#include "store/npy.h"
#include "store/onnx.h"
#include "store/safetensors.h"

typedef enum src_kind {
	SRC_SAFETENSORS,
	SRC_NPY,
	SRC_AUX,
	SRC_GGUF,
	SRC_ONNX,
	SRC_ONNX_DATA, /* an ONNX model's external data file */
} src_kind;

/* A container file as consecutive ranges: tensor data (a tensor index)
 * or bytes stored verbatim (-1). Covers the file exactly. */
typedef struct src_ext {
	uint64_t offset, length;
	int64_t tensor;
} src_ext;

typedef struct src_file {
	char *path;
	char *name; /* as presented in the model directory (may hold '/') */
	src_kind kind;
	const unsigned char *map; /* whole file, read-only */
	size_t size;
	tcz_st_file st; /* SRC_SAFETENSORS */
	tcz_npy_info npy; /* SRC_NPY */
	tcz_gguf_file gguf; /* SRC_GGUF */
	tcz_onnx_model onnx; /* SRC_ONNX */
	src_ext *ext; /* containers (safetensors, GGUF, ONNX and its data) */
	size_t n_ext;
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
	/* GGUF block types: ggml type + 1, and the logical shape (NumPy
	 * order); dtype U8, shape = &nbytes */
	uint32_t qtype, qndim;
	uint64_t qshape[8];
	uint64_t one_dim; /* shape storage of a block tensor: nbytes */
	unsigned char *owned; /* decoded values (ONNX varints), or NULL */
} src_tensor;

typedef struct src_set {
	char *default_name; /* model name derived from the source path */
	int from_dir;
	src_file *files;
	size_t n_files;
	src_tensor *tensors;
	size_t n_tensors, cap_tensors;
	uint64_t total_bytes; /* of all files */
	char **skipped; /* subdirectories and special files left out */
	size_t n_skipped;
	char *meta; /* JSON text of what the containers say of themselves */
} src_set;

/* Format parsers feeding src_set (source_gguf.c, source_onnx.c): each
 * validates file i, appends its tensors and sets its extents.
 * Errors: -EBADMSG with err naming the file; -ENOMEM. */
int src_gguf(src_set *s, size_t i, char *err, size_t errlen);
int src_onnx(src_set *s, size_t i, char *err, size_t errlen);
/* Adds a file entry (path, name as in the model directory, kind). */
int src_add_file(src_set *s, const char *path, const char *name,
		 src_kind kind);
/* Maps file i whole (read-only). */
int src_map(src_file *f, char *err, size_t errlen);
/* A tensor slot at the end of s->tensors (grown as needed), zeroed. */
src_tensor *src_new_tensor(src_set *s);
/* Appends key: value (JSON text, taken) to s->meta's object. */
int src_meta_add(src_set *s, const char *key, char *json);

/* Opens and validates srcs (one .safetensors file, one directory, or one
 * or more .npy files). err names the file and problem.
 * Errors: -ENOENT, -EACCES (with err), -EBADMSG invalid content,
 * -EINVAL unsupported combination, -ENOMEM. */
int src_open(const char *const *srcs, size_t n, src_set *out, char *err,
	     size_t errlen);
void src_close(src_set *s);

#endif
