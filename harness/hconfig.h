/* hconfig.h: hookring-harness command line: listeners, limits and verification routes.
 *
 * A route is a path prefix that names how requests under it are verified: a profile with its
 * secret(s) (and, for humanos, the encryption secret and salt), or none. The behaviour is read
 * from the path after the prefix, so "--route /gh/=github:S" serves /gh/ok/..., /gh/slow/50/...
 * and so on. --profile/--secret set the "/" route that catches every other path. */
#ifndef HOOKRING_HCONFIG_H
#define HOOKRING_HCONFIG_H

#include <netinet/in.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common.h"
#include "sign/profile.h"

#define HCONFIG_MAX_LISTEN 16
#define HCONFIG_MAX_ROUTES 32
#define HCONFIG_PREFIX_MAX 128
#define HCONFIG_ERR_MAX 256

struct hroute {
    char prefix[HCONFIG_PREFIX_MAX]; /* starts and ends with '/' */
    size_t prefix_len;
    const struct profile *profile; /* NULL: requests are accepted unverified */
    struct signer signer;
};

struct hlisten {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const char *tls_cert; /* PEM chain: the listener speaks TLS (argv, not copied) */
    const char *tls_key;  /* its PEM private key */
};

struct hconfig {
    struct hlisten listen[HCONFIG_MAX_LISTEN];
    size_t nlisten;
    unsigned threads;
    uint64_t seed;
    struct hroute routes[HCONFIG_MAX_ROUTES]; /* routes[0] is always "/" */
    size_t nroutes;
    bool any_verified;   /* some route verifies */
    bool any_tls;        /* some listener speaks TLS */
    size_t max_head;     /* request line + headers, bytes (431 beyond) */
    size_t max_headers;  /* header lines (431 beyond) */
    size_t max_body;     /* bytes (413 beyond) */
    size_t max_conns;    /* open connections per thread */
    size_t max_ids;      /* distinct webhook ids tracked */
    size_t big_bytes;    /* /big/ body size */
    size_t wbuf_bytes;   /* per-connection output buffer */
    int64_t idle_ms;     /* an idle keep-alive connection is closed after this (0: never) */
    int64_t linger_ms;   /* after a closing response, how long unread input is drained */
    int64_t trickle_ms;  /* /trickle/: delay between bytes by default */
    int64_t tolerance_s; /* timestamped profiles: allowed clock distance */
    const char *ids_file;
    bool quiet; /* no summary at exit */
};

/* hconfig_parse fills c from argv. Returns 0; 1 when --help was asked (usage printed); or
 * -EINVAL with err filled. Secrets are copied into signers; argv is not kept, except
 * ids_file and the TLS file names. --tls-cert and --tls-key apply to the --listen just before
 * them. */
int hconfig_parse(struct hconfig *c, int argc, char **argv, char *err, size_t errlen);

/* hconfig_cleanup wipes the signers' keys. */
void hconfig_cleanup(struct hconfig *c);

/* hconfig_route returns the route with the longest prefix of path (never NULL: "/" matches
 * every origin-form path); *rest gets the path from the prefix's last '/' on. */
const struct hroute *hconfig_route(const struct hconfig *c, struct slice path, struct slice *rest);

/* hconfig_route_index is r's index in c->routes. */
static inline size_t hconfig_route_index(const struct hconfig *c, const struct hroute *r)
{
    return (size_t)(r - c->routes);
}

/* hconfig_usage prints the usage text to f. */
void hconfig_usage(FILE *f);

/* hconfig_format_addr writes "127.0.0.1:8080" or "[::1]:8080" for a into out. */
void hconfig_format_addr(const struct sockaddr *a, char *out, size_t outlen);

#endif
