/* NumPy .npy files: the headers tczfs presents for layers/<tensor>.npy, and
 * strict parsing of .npy files given to `tczfs import`.
 *
 * Written files are format version 1.0, little-endian, C order, with the
 * header padded by spaces (ending in '\n') so the data starts on a 64-byte
 * boundary. BF16, which NumPy lacks, is written as '<f4' (exact widening). */
#ifndef TCZ_NPY_H
#define TCZ_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "codec/dtype.h"

#define TCZ_NPY_ALIGN 64u

/* The dtype a tensor of dtype dt has in its .npy file (BF16 -> F32). */
tcz_dtype tcz_npy_dtype(tcz_dtype dt);

/* Writes the .npy header for a dtype/shape into out[cap]; *len is its size
 * (a multiple of 64). Errors: -EINVAL bad dtype; -ENOBUFS cap too small
 * (1024 bytes always suffice for <= 32 dimensions). */
int tcz_npy_header(tcz_dtype dt, uint32_t ndim, const uint64_t *shape,
		   char *out, size_t cap, size_t *len);

typedef struct tcz_npy_info {
	tcz_dtype dtype;
	uint32_t ndim;
	uint64_t shape[32];
	uint64_t numel;
	uint64_t data_offset;
} tcz_npy_info;

/* Parses the .npy file in buf[len] (versions 1.0, 2.0, 3.0). The data must
 * fill the rest of the file exactly.
 * Errors: -EBADMSG with a one-line reason in err (bad magic, unsupported
 * descr, big-endian or Fortran order, malformed dict, size mismatch). */
int tcz_npy_parse(const void *buf, size_t len, tcz_npy_info *out, char *err,
		  size_t errlen);

#endif
