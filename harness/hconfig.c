/* hconfig.c: hookring-harness command line. */
#include "hconfig.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>

void hconfig_usage(FILE *f)
{
    fputs("usage: hookring-harness [--listen ADDR]... [options]\n"
          "\n"
          "A mock webhook subscriber on io_uring. The path picks the behaviour: /ok/ /slow/MS/\n"
          "/status/CODE/ /fail/PCT/ /flaky/N/ /timeout/ /reset/ /drop/ /dup/ /retry-after/S/\n"
          "/gone/ /trickle/[MS/] /big/[BYTES/] /redirect/; GET /_harness/stats, POST\n"
          "/_harness/reset, GET /_harness/ids/ID. See harness/README.md.\n"
          "\n"
          "  --listen ADDR           127.0.0.1:8080, [::1]:8080, port 0 picks a free port\n"
          "                          (repeatable; default 127.0.0.1:8080). Prints\n"
          "                          'listening on ADDR' per listener once ready\n"
          "                          ('listening on ADDR (tls)' for a TLS one).\n"
          "  --tls-cert FILE         the --listen just before speaks TLS (1.2, 1.3) with this\n"
          "                          PEM certificate chain, leaf first; needs --tls-key\n"
          "  --tls-key FILE          the PEM private key of that listener's certificate\n"
          "  --threads N             worker threads, one io_uring each (default 1)\n"
          "  --profile P             verify every request with profile P (default: none,\n"
          "                          requests are accepted unverified)\n"
          "  --secret S              its signing secret (repeat for rotated secrets)\n"
          "  --enc-secret B64        humanos: the encryption secret (base64)\n"
          "  --enc-salt SALT         humanos: the salt\n"
          "  --route PREFIX=SPEC     verify paths under PREFIX with SPEC: 'none',\n"
          "                          'PROFILE:SECRET', or 'humanos:SECRET:ENC_B64:SALT'\n"
          "                          (repeatable; the longest prefix wins)\n"
          "  --seed N                seed of /fail/ (default 1)\n"
          "  --tolerance S           timestamp tolerance, seconds (default 300)\n"
          "  --max-header-bytes N    request head limit, answered 431 (default 16k)\n"
          "  --max-headers N         header line limit, answered 431 (default 64)\n"
          "  --max-body N            body limit, answered 413 (default 1m)\n"
          "  --max-conns N           open connections per thread (default 1024)\n"
          "  --max-ids N             webhook ids tracked (default 1m)\n"
          "  --big-bytes N           /big/ body size (default 4m)\n"
          "  --idle-timeout MS       close idle keep-alive connections (default 60000, 0: never)\n"
          "  --linger MS             drain input this long after a closing answer (default 2000)\n"
          "  --trickle-ms MS         /trickle/ delay between bytes (default 10)\n"
          "  --ids-file F            write 'id attempts verified bad_signature duplicates\n"
          "                          first_seen_ms first_seen_us' lines (tab-separated) at exit\n"
          "  --quiet                 no summary at exit\n"
          "Sizes take a k, m or g suffix (KiB, MiB, GiB).\n",
          f);
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int parse_u64(const char *s, uint64_t max, bool suffix, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9') {
        return -EINVAL;
    }
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) {
        return -EINVAL;
    }
    unsigned shift = 0;
    if (suffix && *end) {
        switch (*end | 0x20) {
        case 'k':
            shift = 10;
            break;
        case 'm':
            shift = 20;
            break;
        case 'g':
            shift = 30;
            break;
        default:
            return -EINVAL;
        }
        end++;
    }
    if (*end || v > (max >> shift)) {
        return -EINVAL;
    }
    *out = (uint64_t)v << shift;
    return 0;
}

/* parse_listen accepts HOST:PORT, [V6]:PORT and :PORT (all IPv4 interfaces). */
static int parse_listen(struct hlisten *l, const char *s, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host)) {
            return fail(err, errlen, "--listen %s: expected [V6ADDR]:PORT", s);
        }
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof(host)) {
            return fail(err, errlen, "--listen %s: expected HOST:PORT", s);
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    uint64_t pn;
    if (parse_u64(port, 65535, false, &pn)) {
        return fail(err, errlen, "--listen %s: bad port", s);
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0 || !res) {
        return fail(err, errlen, "--listen %s: %s", s, gai_strerror(rc));
    }
    memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
    l->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

void hconfig_format_addr(const struct sockaddr *a, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)a;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(out, outlen, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)a;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(out, outlen, "%s:%u", host, ntohs(s4->sin_port));
    }
}

/* set_tls gives the last --listen its certificate (cert) or key file. */
static int set_tls(struct hconfig *c, bool cert, const char *file, char *err, size_t errlen)
{
    const char *opt = cert ? "--tls-cert" : "--tls-key";
    if (c->nlisten == 0) {
        return fail(err, errlen, "%s %s: it applies to the --listen before it; there is none", opt,
                    file);
    }
    struct hlisten *l = &c->listen[c->nlisten - 1];
    const char **slot = cert ? &l->tls_cert : &l->tls_key;
    if (*slot) {
        return fail(err, errlen, "%s given twice for one --listen", opt);
    }
    if (!*file) {
        return fail(err, errlen, "%s: empty file name", opt);
    }
    *slot = file;
    return 0;
}

/* route_set prepares r for profile name pname (NULL or "none": unverified). */
static int route_set(struct hroute *r, const char *pname, const struct slice *secrets,
                     size_t nsecrets, struct slice enc, struct slice salt, char *err, size_t errlen)
{
    if (!pname || strcmp(pname, "none") == 0) {
        if (nsecrets) {
            return fail(err, errlen, "route %s: a secret without a profile", r->prefix);
        }
        r->profile = NULL;
        return 0;
    }
    const struct profile *p = profile_find(pname);
    if (!p) {
        return fail(err, errlen, "route %s: unknown profile '%s'", r->prefix, pname);
    }
    if (p->needs_enc && (enc.len == 0 || salt.len == 0)) {
        return fail(err, errlen, "route %s: profile %s needs an encryption secret and a salt",
                    r->prefix, pname);
    }
    char why[160];
    if (signer_init(&r->signer, p, secrets, nsecrets, enc, salt, why, sizeof(why))) {
        return fail(err, errlen, "route %s: %s", r->prefix, why);
    }
    r->profile = p;
    return 0;
}

static int set_prefix(struct hroute *r, const char *s, size_t n, char *err, size_t errlen)
{
    if (n == 0 || s[0] != '/') {
        return fail(err, errlen, "--route: prefix must start with '/'");
    }
    bool slash = s[n - 1] == '/';
    if (n + !slash + 1 > sizeof(r->prefix)) {
        return fail(err, errlen, "--route: prefix too long");
    }
    memcpy(r->prefix, s, n);
    if (!slash) {
        r->prefix[n++] = '/';
    }
    r->prefix[n] = '\0';
    r->prefix_len = n;
    return 0;
}

/* parse_route reads PREFIX=none | PREFIX=PROFILE[:SECRET] | PREFIX=humanos:SECRET:ENC:SALT. */
static int parse_route(struct hconfig *c, const char *arg, char *err, size_t errlen)
{
    const char *eq = strchr(arg, '=');
    if (!eq) {
        return fail(err, errlen, "--route %s: expected PREFIX=PROFILE:SECRET", arg);
    }
    struct hroute tmp = {0};
    int rc = set_prefix(&tmp, arg, (size_t)(eq - arg), err, errlen);
    if (rc) {
        return rc;
    }
    size_t idx = c->nroutes;
    for (size_t i = 0; i < c->nroutes; i++) {
        if (strcmp(c->routes[i].prefix, tmp.prefix) == 0) {
            if (i == 0 && c->routes[0].profile == NULL) {
                idx = 0; /* "/" may be given as a route instead of --profile */
                break;
            }
            return fail(err, errlen, "--route %s: prefix given twice", tmp.prefix);
        }
    }
    if (idx == HCONFIG_MAX_ROUTES) {
        return fail(err, errlen, "--route: at most %d routes", HCONFIG_MAX_ROUTES);
    }
    char spec[1024];
    if (strlen(eq + 1) >= sizeof(spec)) {
        return fail(err, errlen, "--route %s: too long", tmp.prefix);
    }
    strcpy(spec, eq + 1);
    char *secret = strchr(spec, ':');
    if (secret) {
        *secret++ = '\0';
    }
    struct slice enc = {0}, salt = {0};
    if (secret && strcmp(spec, "humanos") == 0) {
        /* SECRET:ENC_B64:SALT; base64 has no ':', so the secret is up to the first one and the
         * salt is everything after the second */
        char *e = strchr(secret, ':');
        char *s = e ? strchr(e + 1, ':') : NULL;
        if (!s) {
            return fail(err, errlen, "--route %s: humanos needs SECRET:ENC_B64:SALT", tmp.prefix);
        }
        *e++ = '\0';
        *s++ = '\0';
        enc = slice_cstr(e);
        salt = slice_cstr(s);
    }
    struct slice sec = slice_cstr(secret);
    rc = route_set(&tmp, spec, &sec, secret && *secret ? 1 : 0, enc, salt, err, errlen);
    if (rc) {
        return rc;
    }
    c->routes[idx] = tmp;
    if (idx == c->nroutes) {
        c->nroutes++;
    }
    return 0;
}

enum {
    OPT_LISTEN = 256,
    OPT_THREADS,
    OPT_PROFILE,
    OPT_SECRET,
    OPT_ENC_SECRET,
    OPT_ENC_SALT,
    OPT_ROUTE,
    OPT_SEED,
    OPT_TOLERANCE,
    OPT_MAX_HEAD,
    OPT_MAX_HEADERS,
    OPT_MAX_BODY,
    OPT_MAX_CONNS,
    OPT_MAX_IDS,
    OPT_BIG,
    OPT_IDLE,
    OPT_LINGER,
    OPT_TRICKLE,
    OPT_IDS_FILE,
    OPT_QUIET,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"profile", required_argument, NULL, OPT_PROFILE},
    {"secret", required_argument, NULL, OPT_SECRET},
    {"enc-secret", required_argument, NULL, OPT_ENC_SECRET},
    {"enc-salt", required_argument, NULL, OPT_ENC_SALT},
    {"route", required_argument, NULL, OPT_ROUTE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"tolerance", required_argument, NULL, OPT_TOLERANCE},
    {"max-header-bytes", required_argument, NULL, OPT_MAX_HEAD},
    {"max-headers", required_argument, NULL, OPT_MAX_HEADERS},
    {"max-body", required_argument, NULL, OPT_MAX_BODY},
    {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
    {"max-ids", required_argument, NULL, OPT_MAX_IDS},
    {"big-bytes", required_argument, NULL, OPT_BIG},
    {"idle-timeout", required_argument, NULL, OPT_IDLE},
    {"linger", required_argument, NULL, OPT_LINGER},
    {"trickle-ms", required_argument, NULL, OPT_TRICKLE},
    {"ids-file", required_argument, NULL, OPT_IDS_FILE},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

struct num_opt {
    int opt;
    size_t off;  /* offset in struct hconfig */
    bool is_i64; /* int64_t field, else size_t */
    uint64_t min, max;
    bool suffix;
};

static const struct num_opt num_opts[] = {
    {OPT_MAX_HEAD, offsetof(struct hconfig, max_head), false, 256, 1 << 20, true},
    {OPT_MAX_HEADERS, offsetof(struct hconfig, max_headers), false, 1, 1024, false},
    {OPT_MAX_BODY, offsetof(struct hconfig, max_body), false, 0, 1u << 30, true},
    {OPT_MAX_CONNS, offsetof(struct hconfig, max_conns), false, 1, 1 << 20, false},
    {OPT_MAX_IDS, offsetof(struct hconfig, max_ids), false, 64, 1u << 30, true},
    {OPT_BIG, offsetof(struct hconfig, big_bytes), false, 1, 1u << 30, true},
    {OPT_IDLE, offsetof(struct hconfig, idle_ms), true, 0, 86400000, false},
    {OPT_LINGER, offsetof(struct hconfig, linger_ms), true, 0, 600000, false},
    {OPT_TRICKLE, offsetof(struct hconfig, trickle_ms), true, 0, 60000, false},
    {OPT_TOLERANCE, offsetof(struct hconfig, tolerance_s), true, 0, 1u << 30, false},
};

static void defaults(struct hconfig *c)
{
    memset(c, 0, sizeof(*c));
    c->threads = 1;
    c->seed = 1;
    c->max_head = 16 << 10;
    c->max_headers = 64;
    c->max_body = 1 << 20;
    c->max_conns = 1024;
    c->max_ids = 1 << 20;
    c->big_bytes = 4 << 20;
    c->wbuf_bytes = 64 << 10;
    c->idle_ms = 60000;
    c->linger_ms = 2000;
    c->trickle_ms = 10;
    c->tolerance_s = VERIFY_TOLERANCE_S;
    c->routes[0].prefix[0] = '/';
    c->routes[0].prefix_len = 1;
    c->nroutes = 1;
}

int hconfig_parse(struct hconfig *c, int argc, char **argv, char *err, size_t errlen)
{
    defaults(c);
    const char *profile = NULL;
    struct slice secrets[SIGN_MAX_KEYS];
    size_t nsecrets = 0;
    struct slice enc = {0}, salt = {0};
    bool route_root = false;
    int rc;

    optind = 1;
    opterr = 0;
    for (;;) {
        int o = getopt_long(argc, argv, "", long_opts, NULL);
        if (o == -1) {
            break;
        }
        uint64_t v;
        switch (o) {
        case OPT_LISTEN:
            if (c->nlisten == HCONFIG_MAX_LISTEN) {
                return fail(err, errlen, "--listen: at most %d", HCONFIG_MAX_LISTEN);
            }
            rc = parse_listen(&c->listen[c->nlisten], optarg, err, errlen);
            if (rc) {
                return rc;
            }
            c->nlisten++;
            break;
        case OPT_TLS_CERT:
        case OPT_TLS_KEY:
            rc = set_tls(c, o == OPT_TLS_CERT, optarg, err, errlen);
            if (rc) {
                return rc;
            }
            break;
        case OPT_THREADS:
            if (parse_u64(optarg, 256, false, &v) || v == 0) {
                return fail(err, errlen, "--threads: 1-256");
            }
            c->threads = (unsigned)v;
            break;
        case OPT_PROFILE:
            profile = optarg;
            break;
        case OPT_SECRET:
            if (nsecrets == SIGN_MAX_KEYS) {
                return fail(err, errlen, "--secret: at most %d", SIGN_MAX_KEYS);
            }
            secrets[nsecrets++] = slice_cstr(optarg);
            break;
        case OPT_ENC_SECRET:
            enc = slice_cstr(optarg);
            break;
        case OPT_ENC_SALT:
            salt = slice_cstr(optarg);
            break;
        case OPT_ROUTE:
            rc = parse_route(c, optarg, err, errlen);
            if (rc) {
                return rc;
            }
            if (strncmp(optarg, "/=", 2) == 0) {
                route_root = true;
            }
            break;
        case OPT_SEED:
            if (parse_u64(optarg, UINT64_MAX, false, &v)) {
                return fail(err, errlen, "--seed: a number");
            }
            c->seed = v;
            break;
        case OPT_IDS_FILE:
            c->ids_file = optarg;
            break;
        case OPT_QUIET:
            c->quiet = true;
            break;
        case OPT_HELP:
            hconfig_usage(stdout);
            return 1;
        case '?':
            return fail(err, errlen, "unknown or incomplete option '%s' (see --help)",
                        argv[optind - 1]);
        default: {
            const struct num_opt *n = NULL;
            for (size_t i = 0; i < ARRAY_SIZE(num_opts); i++) {
                if (num_opts[i].opt == o) {
                    n = &num_opts[i];
                }
            }
            if (!n || parse_u64(optarg, n->max, n->suffix, &v) || v < n->min) {
                return fail(err, errlen, "%s: expected a number in %llu-%llu%s", argv[optind - 1],
                            (unsigned long long)(n ? n->min : 0),
                            (unsigned long long)(n ? n->max : 0),
                            n && n->suffix ? " (k/m/g suffix allowed)" : "");
            }
            if (n->is_i64) {
                *(int64_t *)((char *)c + n->off) = (int64_t)v;
            } else {
                *(size_t *)((char *)c + n->off) = (size_t)v;
            }
            break;
        }
        }
    }
    if (optind < argc) {
        return fail(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
    }
    if (route_root && profile) {
        return fail(err, errlen, "--profile and --route /=... both set the '/' route");
    }
    if (!profile && (nsecrets || enc.len || salt.len)) {
        return fail(err, errlen, "--secret/--enc-secret/--enc-salt need --profile");
    }
    if (profile) {
        rc = route_set(&c->routes[0], profile, secrets, nsecrets, enc, salt, err, errlen);
        if (rc) {
            return rc;
        }
    }
    if (c->nlisten == 0) {
        rc = parse_listen(&c->listen[0], "127.0.0.1:8080", err, errlen);
        if (rc) {
            return rc;
        }
        c->nlisten = 1;
    }
    for (size_t i = 0; i < c->nroutes; i++) {
        c->any_verified |= c->routes[i].profile != NULL;
    }
    for (size_t i = 0; i < c->nlisten; i++) {
        const struct hlisten *l = &c->listen[i];
        if (!l->tls_cert != !l->tls_key) {
            char text[80];
            hconfig_format_addr((const struct sockaddr *)&l->addr, text, sizeof(text));
            return fail(err, errlen, "--listen %s: --tls-cert and --tls-key go together", text);
        }
        c->any_tls |= l->tls_cert != NULL;
    }
    /* the stats JSON must fit an output buffer */
    if (c->wbuf_bytes < 64 << 10) {
        c->wbuf_bytes = 64 << 10;
    }
    return 0;
}

void hconfig_cleanup(struct hconfig *c)
{
    for (size_t i = 0; i < c->nroutes; i++) {
        if (c->routes[i].profile) {
            signer_wipe(&c->routes[i].signer);
        }
    }
}

const struct hroute *hconfig_route(const struct hconfig *c, struct slice path, struct slice *rest)
{
    const struct hroute *best = &c->routes[0];
    for (size_t i = 1; i < c->nroutes; i++) {
        const struct hroute *r = &c->routes[i];
        if (r->prefix_len > best->prefix_len && path.len >= r->prefix_len &&
            memcmp(path.p, r->prefix, r->prefix_len) == 0) {
            best = r;
        }
    }
    size_t skip = best->prefix_len - 1; /* keep the prefix's last '/' */
    if (path.len < skip) {
        skip = 0;
    }
    *rest = (struct slice){path.p + skip, path.len - skip};
    return best;
}
