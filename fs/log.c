#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

#include "fs/internal.h"

/* To --log FILE when given, else stderr in the foreground, else syslog. */
void fs_log(tczfs *fs, int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (fs->log || fs->opts.foreground) {
		FILE *f = fs->log ? fs->log : stderr;
		char ts[32];
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
		flockfile(f);
		fprintf(f, "%s tczfs[%s]: ", ts,
			level <= LOG_ERR       ? "error"
			: level == LOG_WARNING ? "warning"
					       : "info");
		vfprintf(f, fmt, ap);
		fputc('\n', f);
		fflush(f);
		funlockfile(f);
	} else {
		vsyslog(level, fmt, ap);
	}
	va_end(ap);
}
