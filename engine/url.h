/* url.h: webhook destination URLs (http:// and https:// only). */
#ifndef HOOKRING_URL_H
#define HOOKRING_URL_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "common.h"

#define URL_HOST_MAX 253
#define URL_TARGET_MAX 2048

struct url {
    bool https;
    char host[URL_HOST_MAX + 1]; /* as written, without brackets; lowercased */
    uint16_t port;
    char target[URL_TARGET_MAX + 1]; /* path and query as sent ("/" when empty) */
    size_t target_len;
    char authority[URL_HOST_MAX + 10]; /* the Host header value */
    bool host_is_ip;                   /* host is an address literal: addr is filled */
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

/* What a connection needs of a URL once its request line and Host header are written (an
 * endpoint's prefix holds them): where to connect and whom to ask for, without the target and
 * authority that make struct url 2.7 KB. Every endpoint (every webhook of `serve`) holds one. */
struct url_dest {
    bool https;
    bool host_is_ip; /* host is an address literal: addr is filled */
    uint16_t port;
    socklen_t addrlen;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } addr;
    char host[URL_HOST_MAX + 1]; /* as in struct url */
};

/* url_dest_of fills d with what it holds of u. */
void url_dest_of(struct url_dest *d, const struct url *u);

/* url_parse parses s. An IPv4 host is read the way a resolver reads it (inet_aton: "127.1",
 * "0x7f.1" and "2130706433" are all 127.0.0.1), so the address guard sees the address that
 * would really be connected to. Userinfo ("http://a@host") is refused outright; a fragment is
 * dropped (it is never sent). Returns 0 or -EINVAL with err filled. */
int url_parse(struct url *u, const char *s, char *err, size_t errlen);

#endif
