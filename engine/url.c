/* url.c: destination URL parsing. */
#include "url.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

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

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

int url_parse(struct url *u, const char *s, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    const char *p;
    if (strncasecmp(s, "https://", 8) == 0) {
        u->https = true;
        p = s + 8;
        u->port = 443;
    } else if (strncasecmp(s, "http://", 7) == 0) {
        p = s + 7;
        u->port = 80;
    } else {
        return fail(err, errlen, "url '%.64s': must start with http:// or https://", s);
    }
    size_t alen = strcspn(p, "/?#");
    const char *auth = p, *aend = p + alen;
    if (memchr(auth, '@', alen)) {
        return fail(err, errlen, "url: user information ('user@host') is not allowed");
    }
    const char *hend;
    const char *port = NULL;
    if (alen && auth[0] == '[') {
        const char *rb = memchr(auth, ']', alen);
        if (!rb) {
            return fail(err, errlen, "url: unterminated IPv6 literal");
        }
        size_t hl = (size_t)(rb - auth - 1);
        if (hl == 0 || hl > 45) {
            return fail(err, errlen, "url: bad IPv6 literal");
        }
        memcpy(u->host, auth + 1, hl);
        u->host[hl] = '\0';
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&u->addr;
        if (inet_pton(AF_INET6, u->host, &s6->sin6_addr) != 1) {
            return fail(err, errlen, "url: '%s' is not an IPv6 address", u->host);
        }
        s6->sin6_family = AF_INET6;
        u->addrlen = sizeof(*s6);
        u->host_is_ip = true;
        hend = rb + 1;
        if (hend < aend) {
            if (*hend != ':') {
                return fail(err, errlen, "url: junk after the IPv6 literal");
            }
            port = hend + 1;
        }
    } else {
        const char *colon = memchr(auth, ':', alen);
        hend = colon ? colon : aend;
        size_t hl = (size_t)(hend - auth);
        if (hl == 0 || hl > URL_HOST_MAX) {
            return fail(err, errlen, "url: the host must be 1-%d characters", URL_HOST_MAX);
        }
        for (size_t i = 0; i < hl; i++) {
            if (!host_char(auth[i])) {
                return fail(err, errlen, "url: bad character in host '%.*s'", (int)hl, auth);
            }
            u->host[i] = (char)(auth[i] >= 'A' && auth[i] <= 'Z' ? auth[i] + 32 : auth[i]);
        }
        u->host[hl] = '\0';
        struct in_addr v4;
        /* inet_aton reads the forms a resolver accepts (127.1, 0x7f.0.0.1, 2130706433), so no
         * spelling of an address can slip past the guard as a "name". */
        if (inet_aton(u->host, &v4)) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&u->addr;
            s4->sin_family = AF_INET;
            s4->sin_addr = v4;
            u->addrlen = sizeof(*s4);
            u->host_is_ip = true;
        }
        if (colon) {
            port = colon + 1;
        }
    }
    if (port) {
        unsigned long v = 0;
        const char *q = port;
        for (; q < aend; q++) {
            if (*q < '0' || *q > '9' || v > 65535) {
                return fail(err, errlen, "url: bad port");
            }
            v = v * 10 + (unsigned long)(*q - '0');
        }
        if (q == port || v == 0 || v > 65535) {
            return fail(err, errlen, "url: the port must be 1-65535");
        }
        u->port = (uint16_t)v;
    }
    if (u->host_is_ip) {
        if (u->addr.ss_family == AF_INET) {
            ((struct sockaddr_in *)&u->addr)->sin_port = htons(u->port);
        } else {
            ((struct sockaddr_in6 *)&u->addr)->sin6_port = htons(u->port);
        }
    }
    bool default_port = u->port == (u->https ? 443 : 80);
    bool v6 = u->host_is_ip && u->addr.ss_family == AF_INET6;
    int n = snprintf(u->authority, sizeof(u->authority), v6 ? "[%s]" : "%s", u->host);
    if (!default_port) {
        snprintf(u->authority + n, sizeof(u->authority) - (size_t)n, ":%u", (unsigned)u->port);
    }
    const char *t = aend;
    size_t tl = strcspn(t, "#");
    if (tl > URL_TARGET_MAX - 1) {
        return fail(err, errlen, "url: path and query longer than %d bytes", URL_TARGET_MAX - 1);
    }
    for (size_t i = 0; i < tl; i++) {
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f) {
            return fail(err, errlen, "url: the path must be printable ASCII without spaces");
        }
    }
    if (tl == 0 || t[0] == '?') {
        u->target[0] = '/';
        memcpy(u->target + 1, t, tl);
        u->target_len = tl + 1;
    } else {
        memcpy(u->target, t, tl);
        u->target_len = tl;
    }
    u->target[u->target_len] = '\0';
    return 0;
}

void url_dest_of(struct url_dest *d, const struct url *u)
{
    memset(d, 0, sizeof(*d));
    d->https = u->https;
    d->host_is_ip = u->host_is_ip;
    d->port = u->port;
    if (u->host_is_ip && u->addrlen <= sizeof(d->addr)) {
        memcpy(&d->addr, &u->addr, u->addrlen);
        d->addrlen = u->addrlen;
    }
    memcpy(d->host, u->host, sizeof(d->host));
}
