/* safetensors files: strict parsing of untrusted headers, and building
 * headers for files tczfs synthesises (merged shards, .npy imports).
 *
 * Format: u64 little-endian header length N, N bytes of JSON (an object
 * mapping tensor names to {"dtype", "shape", "data_offsets": [begin, end]},
 * plus an optional "__metadata__" object of strings), then the data
 * buffer, which the tensors must cover exactly: no holes, no overlap. */
#ifndef TCZ_SAFETENSORS_H
#define TCZ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "codec/dtype.h"

#define TCZ_ST_HEADER_MAX (100u << 20) /* the format's own limit */

typedef struct tcz_st_tensor {
	char *name;
	tcz_dtype dtype;
	uint32_t ndim;
	uint64_t *shape;
	uint64_t numel;
	uint64_t begin, end; /* within the data buffer */
} tcz_st_tensor;

typedef struct tcz_st_file {
	uint64_t header_len;  /* N */
	uint64_t data_offset; /* 8 + N */
	uint64_t data_len;
	size_t n;
	tcz_st_tensor *tensors; /* sorted by data offset */
	char *metadata;         /* "__metadata__" as compact JSON, or NULL */
} tcz_st_file;

/* Parses and validates the safetensors file held in buf[len] (the whole
 * file). On failure err receives one line naming the tensor and problem.
 * Errors: -EBADMSG malformed file (err says why); -ENOMEM. */
int tcz_st_parse(const void *buf, size_t len, tcz_st_file *out, char *err,
		 size_t errlen);

void tcz_st_free(tcz_st_file *f); /* fields only; f itself not freed */

/* Builds a header (8-byte length + JSON padded with spaces to a multiple
 * of 8) listing the tensors in the given order with contiguous offsets
 * from 0, after "__metadata__" (compact JSON object text) when not NULL.
 * *out is malloc'd. Errors: -EINVAL bad dtype or metadata; -ENOMEM. */
int tcz_st_build_header(const tcz_st_tensor *t, size_t n,
			const char *metadata, unsigned char **out,
			size_t *len);

#endif
