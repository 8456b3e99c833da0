/* Tensor names <-> file names under layers/.
 *
 * A tensor name becomes "<name>.npy" with '%', '/', bytes below 0x20 and
 * 0x7f written as %XX (two upper-case hex digits); "." and ".." gain a
 * leading %2E. Everything else (UTF-8 included) is kept, so the mapping
 * is reversible and ordinary names read as they are. A name whose file
 * name would pass 255 bytes is cut at 230 bytes and followed by "~" and
 * 16 hex digits of its XXH64, which keeps it unique but not reversible. */
#ifndef TCZ_STORE_NAMES_H
#define TCZ_STORE_NAMES_H

#include <stddef.h>

#define TCZ_FILE_NAME_MAX 255

/* Writes the file name for tensor name into out[TCZ_FILE_NAME_MAX + 1]. */
void tcz_npy_file_name(const char *tensor, char *out);

/* Inverse of tcz_npy_file_name for names it can invert; out needs
 * strlen(file) + 1 bytes. Errors: -EINVAL not a reversible .npy name. */
int tcz_npy_tensor_name(const char *file, char *out);

#endif
