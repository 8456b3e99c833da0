/* The clock tiering reads: the time of day, or a test's (TCZFS_NOW). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "store/store.h"

uint64_t tcz_store_now(void)
{
	const char *v = getenv("TCZFS_NOW");
	if (!v || !*v)
		return (uint64_t)time(NULL);
	if (v[0] != '@')
		return strtoull(v, NULL, 10);
	/* @FILE: the seconds written in FILE, read again whenever it
	 * changes (a test moves the clock of a running daemon) */
	static _Thread_local struct timespec seen;
	static _Thread_local uint64_t value;
	struct stat st;
	if (stat(v + 1, &st) != 0)
		return (uint64_t)time(NULL);
	if (st.st_mtim.tv_sec != seen.tv_sec || st.st_mtim.tv_nsec != seen.tv_nsec ||
	    !value) {
		FILE *f = fopen(v + 1, "r");
		unsigned long long x = 0;
		if (f && fscanf(f, "%llu", &x) == 1)
			value = x;
		if (f)
			fclose(f);
		seen = st.st_mtim;
	}
	return value ? value : (uint64_t)time(NULL);
}
