/* Growing arrays: one helper instead of a realloc dance per table. */
#ifndef TCZ_STORE_GROW_H
#define TCZ_STORE_GROW_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* Makes room for one more element in *arr (n used, *cap allocated, elem
 * bytes each), doubling from first. Errors: -ENOMEM (nothing changed). */
static inline int tcz__grow(void *arr, size_t *cap, size_t n, size_t elem,
			    size_t first)
{
	void **p = arr;
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : first;
	if (c > SIZE_MAX / elem)
		return -ENOMEM;
	void *np = realloc(*p, c * elem);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = c;
	return 0;
}

#endif
