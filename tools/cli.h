/* Shared helpers of the tczfs command's subcommands. */
#ifndef TCZ_CLI_H
#define TCZ_CLI_H

#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

extern const char *cli_store_dir;
extern int cli_exit; /* exit status when cli_parse_common returns 0 */

void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* getopt_long over a subcommand's options plus --help/-h and --store.
 * Returns an option's val (> 1), 1 when all options are read, or 0 when
 * the command should exit with status cli_exit (help shown: 0; bad
 * option: 2). */
int cli_parse_common(int argc, char **argv, const char *help,
		     const char *shortopts, const struct option *lo);

/* Prints "tczfs: msg" and the usage line; returns 2. */
int cli_usage(const char *help, const char *msg);

/* Opens the store named by --store/$TCZFS_STORE/default; 0 or exit 1. */
int cli_open_store(unsigned flags, tcz_store **s);

void cli_size(char *buf, size_t n, uint64_t bytes);
int cli_u64(const char *opt, const char *s, uint64_t *out);
int cli_double(const char *opt, const char *s, double *out);

int cli_info(int argc, char **argv);
int cli_export(int argc, char **argv);
int cli_cat(int argc, char **argv);
int cli_tier(int argc, char **argv);
int cli_asic(int argc, char **argv);

/* asic/: the asic view of a model with every profile (a message on
 * failure), and one of its files written to fd. */
struct tcz_aview;
int cli_asic_open(tcz_store *s, const char *model, struct tcz_aview **out);
int cli_asic_copy(tcz_reader *r, struct tcz_aview *a, uint32_t f, int fd,
		  const char *out_name);
int cli_stream(int argc, char **argv);
/* tczfs STORE MNT -o OPTS: the form mount(8) and mount.fuse use */
int cli_mount_helper(int argc, char **argv);

/* Writes file f of view v to fd (a message on failure naming the part). */
struct tcz_mview;
int cli_copy_file(tcz_reader *r, const struct tcz_mview *v, uint32_t f,
		  int fd, const char *out_name);
int cli_mount(int argc, char **argv);
int cli_umount(int argc, char **argv);
int cli_stat(int argc, char **argv);
int cli_remote(int argc, char **argv);
int cli_push(int argc, char **argv);
int cli_pull(int argc, char **argv);

#endif
