/* cmd_common.c: helpers shared by the hookring commands. */
#include "cmd.h"

#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int cmd_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "hookring %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'hookring %s --help')\n", cmd);
    return EXIT_USAGE;
}

int cmd_bad_option(const char *cmd, int argc, char **argv, int opt)
{
    const char *arg = optind - 1 < argc ? argv[optind - 1] : "?";
    if (opt == ':') {
        return cmd_usage_error(cmd, "option '%s' needs a value", arg);
    }
    if (optopt && optopt != '?') {
        return cmd_usage_error(cmd, "unknown option '-%c'", optopt);
    }
    return cmd_usage_error(cmd, "unknown option '%s'", arg);
}

int cmd_read_file(const char *path, struct buf *b)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rc = 0;
    for (;;) {
        if (b->len == b->max) {
            char c;
            ssize_t n = read(fd, &c, 1);
            rc = n == 0 ? 0 : -EFBIG;
            break;
        }
        size_t want = b->max - b->len < 65536 ? b->max - b->len : 65536;
        if (buf_reserve(b, want)) {
            rc = -ENOMEM;
            break;
        }
        ssize_t n = read(fd, b->p + b->len, want);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = -errno;
            break;
        }
        if (n == 0) {
            break;
        }
        b->len += (size_t)n;
    }
    if (fd != STDIN_FILENO) {
        close(fd);
    }
    return rc;
}

const struct profile *cmd_profile(const char *cmd, const char *name)
{
    const struct profile *p = profile_find(name);
    if (p) {
        return p;
    }
    char names[256] = "";
    for (size_t i = 0; i < PROFILE_COUNT; i++) {
        strcat(names, i ? ", " : "");
        strcat(names, profiles[i]->name);
    }
    if (!name) {
        cmd_usage_error(cmd, "--profile is required (one of %s)", names);
    } else {
        cmd_usage_error(cmd, "unknown profile '%s' (one of %s)", name, names);
    }
    return NULL;
}

bool cmd_parse_uint(const char *s, uint64_t *out)
{
    if (!s || !*s) {
        return false;
    }
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) {
            return false;
        }
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

int64_t cmd_now_ms(void)
{
    return unix_now_us() / 1000;
}

static int cmd_dns_resolve_opt(const char *cmd, struct cmd_dns *d, char *arg)
{
    char *colon = strchr(arg, ':');
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    if (!colon || colon == arg || !colon[1] ||
        (inet_pton(AF_INET, colon + 1, &a4.sin_addr) != 1 &&
         inet_pton(AF_INET6, colon + 1, &a6.sin6_addr) != 1)) {
        return cmd_usage_error(cmd, "--resolve wants HOST:ADDR (e.g. hooks.test:127.0.0.1)");
    }
    if (d->o.noverrides == CMD_MAX_RESOLVE) {
        return cmd_usage_error(cmd, "at most %d --resolve options", CMD_MAX_RESOLVE);
    }
    *colon = '\0';
    d->ov[d->o.noverrides++] = (struct dns_override){.host = arg, .addr = colon + 1};
    d->o.overrides = d->ov;
    return 0;
}

void cmd_net_init(struct cmd_net *n)
{
    memset(n, 0, sizeof(*n));
    netguard_init(&n->guard);
}

int cmd_net_option(const char *cmd, struct cmd_net *n, int c, char *arg)
{
    switch (c) {
    case 'A':
        if (netguard_allow(&n->guard, arg)) {
            return cmd_usage_error(cmd, "--allow-net wants a CIDR such as 127.0.0.0/8, not '%s'",
                                   arg);
        }
        return 0;
    case 'C':
        n->tls.ca_file = arg;
        return 0;
    case 'K':
        n->tls.insecure = true;
        return 0;
    case 'R':
        return cmd_dns_resolve_opt(cmd, &n->dns, arg);
    case 'D':
        n->dns.o.servers = arg;
        return 0;
    default:
        return -1;
    }
}

void cmd_sig_init(struct cmd_sig *g)
{
    memset(g, 0, sizeof(*g));
    g->enc = "";
    g->salt = "";
}

int cmd_sig_option(const char *cmd, struct cmd_sig *g, int c, char *arg)
{
    switch (c) {
    case 'p':
        g->profile = arg;
        return 0;
    case 's':
        if (g->nsecrets == SIGN_MAX_KEYS) {
            return cmd_usage_error(cmd, "at most %d --secret options", SIGN_MAX_KEYS);
        }
        g->secrets[g->nsecrets++] = slice_cstr(arg);
        return 0;
    case 'e':
        g->enc = arg;
        return 0;
    case 'a':
        g->salt = arg;
        return 0;
    default:
        return -1;
    }
}
