#include "tools/cli.h"

#include <stdio.h>
#include <string.h>

int cli_exit;

int cli_parse_common(int argc, char **argv, const char *help,
		     const char *shortopts, const struct option *lo)
{
	static struct option all[64];
	static char **cur;
	static char so[64];
	if (cur != argv) {
		size_t n = 0;
		cur = argv;
		optind = 1;
		opterr = 1;
		for (; lo && lo[n].name && n < 60; n++)
			all[n] = lo[n];
		all[n++] = (struct option){"help", no_argument, 0, 'h'};
		all[n++] = (struct option){"store", required_argument, 0, 1000};
		all[n] = (struct option){0, 0, 0, 0};
		snprintf(so, sizeof so, "h%s", shortopts ? shortopts : "");
	}
	for (;;) {
		int c = getopt_long(argc, argv, so, all, NULL);
		if (c == -1)
			return 1;
		if (c == 1000) {
			cli_store_dir = optarg;
			continue;
		}
		if (c == 'h') {
			fputs(help, stdout);
			cli_exit = 0;
			return 0;
		}
		if (c == '?' || c == ':') {
			const char *nl = strchr(help, '\n');
			fprintf(stderr, "%.*s\n", nl ? (int)(nl - help) : 0, help);
			cli_exit = 2;
			return 0;
		}
		return c;
	}
}

int cli_usage(const char *help, const char *msg)
{
	const char *nl = strchr(help, '\n');
	cli_err("%s", msg);
	fprintf(stderr, "%.*s\n", nl ? (int)(nl - help) : 0, help);
	return 2;
}
