/* Test helper: lists a directory with getdents64 in 1 KiB batches and runs
 * a shell command after the first batch (to change the directory in the
 * middle of a listing). Prints the number of entries seen.
 * usage: slow_listdir DIR COMMAND */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: slow_listdir DIR COMMAND\n");
		return 2;
	}
	int fd = open(argv[1], O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	char buf[1024];
	long n, count = 0;
	int first = 1;
	while ((n = getdents64(fd, buf, sizeof buf)) > 0) {
		for (long at = 0; at < n;) {
			struct dirent64 *d = (struct dirent64 *)(buf + at);
			count++;
			at += d->d_reclen;
		}
		if (first && system(argv[2]) != 0) {
			fprintf(stderr, "slow_listdir: command failed\n");
			return 1;
		}
		first = 0;
	}
	if (n < 0) {
		perror("getdents64");
		return 1;
	}
	printf("%ld\n", count);
	close(fd);
	return 0;
}
