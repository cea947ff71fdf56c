/* cmd.h: the hookring command-line commands (engine/cmd_*.c) and their shared helpers. */
#ifndef HOOKRING_CMD_H
#define HOOKRING_CMD_H

#include "common.h"
#include "dns.h"
#include "sign/profile.h"

#include <getopt.h>

/* Exit codes: 0 success, 1 the operation's own failure (refused, not delivered), 2 bad usage or
 * input. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_send(int argc, char **argv);
int cmd_blast(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* cmd_usage_error prints "hookring CMD: message (see hookring CMD --help)" and returns 2. */
int cmd_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* cmd_bad_option reports the option getopt_long refused at argv[optind - 1]. */
int cmd_bad_option(const char *cmd, int argc, char **argv, int opt);

/* cmd_read_file reads path ("-" is standard input) into b, at most b->max bytes. Returns 0, or
 * -errno (-EFBIG when larger than the cap). */
int cmd_read_file(const char *path, struct buf *b);

/* cmd_profile resolves a --profile value or reports it (listing the known names). */
const struct profile *cmd_profile(const char *cmd, const char *name);

/* cmd_parse_uint parses a decimal unsigned integer with no sign or junk. */
bool cmd_parse_uint(const char *s, uint64_t *out);

/* The resolver options send and blast share: --dns-server and --resolve HOST:ADDR. */
#define CMD_MAX_RESOLVE 32
struct cmd_dns {
    struct dns_opts o;
    struct dns_override ov[CMD_MAX_RESOLVE];
};

/* cmd_dns_resolve_opt takes one --resolve HOST:ADDR (arg is split in place). Returns 0, or
 * prints a usage error for cmd and returns 2. */
int cmd_dns_resolve_opt(const char *cmd, struct cmd_dns *d, char *arg);

/* cmd_now_ms is the wall-clock time in unix milliseconds. */
int64_t cmd_now_ms(void);

#endif
