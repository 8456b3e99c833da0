/* libFuzzer: the .npy header parser on arbitrary files. */
#include <stddef.h>
#include <stdint.h>

#include "store/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tcz_npy_info in;
	char err[256];
	if (tcz_npy_parse(data, size, &in, err, sizeof err) == 0 &&
	    in.data_offset > size)
		__builtin_trap();
	return 0;
}
