/* cmd.h: the hookring command-line commands (engine/cmd_*.c) and their shared helpers. */
#ifndef HOOKRING_CMD_H
#define HOOKRING_CMD_H

#include "common.h"
#include "dns.h"
#include "netguard.h"
#include "tls.h"
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

/* cmd_serve_huge_pages runs `hookring serve` (main's whole argv) again with glibc's heap in
 * transparent huge pages, unless GLIBC_TUNABLES is set or the binary uses mimalloc; it returns
 * only if it did not. */
void cmd_serve_huge_pages(char **argv);

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

/* The signing options every command takes: --profile, --secret (repeatable, current first),
 * --enc-secret and --enc-salt (humanos). Used like cmd_net below. */
struct cmd_sig {
    const char *profile;
    struct slice secrets[SIGN_MAX_KEYS];
    size_t nsecrets;
    const char *enc;  /* "" when not given */
    const char *salt; /* "" when not given */
};

#define CMD_SIG_LONGOPTS                                                                           \
    {"profile", required_argument, NULL, 'p'}, {"secret", required_argument, NULL, 's'},           \
        {"enc-secret", required_argument, NULL, 'e'},                                              \
    {                                                                                              \
        "enc-salt", required_argument, NULL, 'a'                                                   \
    }

/* cmd_sig_init empties g. */
void cmd_sig_init(struct cmd_sig *g);

/* cmd_sig_option applies option c (with arg) to g when it is one of CMD_SIG_LONGOPTS: returns
 * 0 when taken, 2 after printing a usage error for cmd, -1 when c is not one of them. */
int cmd_sig_option(const char *cmd, struct cmd_sig *g, int c, char *arg);

/* The network options of the commands that deliver (send, blast, serve): --allow-net,
 * --ca-file, --insecure, --resolve, --dns-server. CMD_NET_LONGOPTS goes into a command's
 * getopt_long table; cmd_net_option takes what getopt returned. */
struct cmd_net {
    struct netguard guard;
    struct tls_opts tls;
    struct cmd_dns dns;
};

#define CMD_NET_LONGOPTS                                                                           \
    {"allow-net", required_argument, NULL, 'A'}, {"ca-file", required_argument, NULL, 'C'},        \
        {"insecure", no_argument, NULL, 'K'}, {"resolve", required_argument, NULL, 'R'},           \
    {                                                                                              \
        "dns-server", required_argument, NULL, 'D'                                                 \
    }

/* cmd_net_init empties n: nothing allowed beyond public addresses, system CAs, system DNS. */
void cmd_net_init(struct cmd_net *n);

/* cmd_net_option applies option c (with arg) to n when it is one of CMD_NET_LONGOPTS: returns
 * 0 when taken, 2 after printing a usage error for cmd, -1 when c is not one of them. */
int cmd_net_option(const char *cmd, struct cmd_net *n, int c, char *arg);

/* cmd_now_ms is the wall-clock time in unix milliseconds. */
int64_t cmd_now_ms(void);

#endif
