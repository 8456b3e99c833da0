#include "store/names.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <xxhash.h>

static int needs_escape(unsigned char c)
{
	return c == '%' || c == '/' || c < 0x20 || c == 0x7f;
}

void tcz_npy_file_name(const char *tensor, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0, n = strlen(tensor);
	int dots = strcmp(tensor, ".") == 0 || strcmp(tensor, "..") == 0;
	char buf[3 * 4096 + 8];
	if (dots) {
		memcpy(buf, "%2E", 3);
		o = 3;
		tensor++;
		n--;
	}
	for (size_t i = 0; i < n && o < sizeof buf - 8; i++) {
		unsigned char c = (unsigned char)tensor[i];
		if (needs_escape(c)) {
			buf[o++] = '%';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		} else {
			buf[o++] = (char)c;
		}
	}
	if (o + 4 <= TCZ_FILE_NAME_MAX) {
		memcpy(out, buf, o);
		memcpy(out + o, ".npy", 5);
		return;
	}
	/* too long for a file name: a prefix plus a hash of the whole name,
	 * cut on a character boundary (not inside %XX or UTF-8) */
	size_t cut = 230;
	while (cut > 0 && (((unsigned char)buf[cut] & 0xc0) == 0x80 ||
			   (cut >= 1 && buf[cut - 1] == '%') ||
			   (cut >= 2 && buf[cut - 2] == '%')))
		cut--;
	memcpy(out, buf, cut);
	snprintf(out + cut, TCZ_FILE_NAME_MAX + 1 - cut, "~%016llx.npy",
		 (unsigned long long)XXH64(tensor - dots, n + (size_t)dots, 0));
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int tcz_npy_tensor_name(const char *file, char *out)
{
	size_t n = strlen(file);
	if (n < 5 || strcmp(file + n - 4, ".npy") != 0)
		return -EINVAL;
	n -= 4;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (file[i] == '~' && n - i == 17)
			return -EINVAL; /* a hashed long name */
		if (file[i] != '%') {
			out[o++] = file[i];
			continue;
		}
		if (i + 2 >= n + 0 || hexval(file[i + 1]) < 0 ||
		    hexval(file[i + 2]) < 0)
			return -EINVAL;
		out[o++] = (char)(hexval(file[i + 1]) * 16 + hexval(file[i + 2]));
		i += 2;
	}
	out[o] = 0;
	return 0;
}
