/* url.h: webhook destination URLs (http:// and https:// only). */
#ifndef HOOKRING_URL_H
#define HOOKRING_URL_H

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

/* url_parse parses s. An IPv4 host is read the way a resolver reads it (inet_aton: "127.1",
 * "0x7f.1" and "2130706433" are all 127.0.0.1), so the address guard sees the address that
 * would really be connected to. Userinfo ("http://a@host") is refused outright; a fragment is
 * dropped (it is never sent). Returns 0 or -EINVAL with err filled. */
int url_parse(struct url *u, const char *s, char *err, size_t errlen);

#endif
