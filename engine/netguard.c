/* netguard.c: address classification and the allow-list. */
#include "netguard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

void netguard_init(struct netguard *g)
{
    g->nallow = 0;
}

static void v4_mapped(uint8_t out[16], const uint8_t v4[4])
{
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, v4, 4);
}

static void canonical6(const uint8_t a[16], uint8_t out[16])
{
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(a, nat64, 12) == 0) {
        v4_mapped(out, a + 12); /* 64:ff9b::/96 */
    } else if (a[0] == 0x20 && a[1] == 0x02) {
        v4_mapped(out, a + 2); /* 6to4 2002:AABB:CCDD::/48 */
    } else if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) {
        uint8_t v4[4]; /* Teredo: the client's address, obfuscated, in the last 32 bits */
        for (int i = 0; i < 4; i++) {
            v4[i] = (uint8_t)~a[12 + i];
        }
        v4_mapped(out, v4);
    } else {
        memcpy(out, a, 16);
    }
}

int netguard_canonical(const struct sockaddr *sa, uint8_t out[16])
{
    /* memcpy, not member access: callers pass sockaddr_in, sockaddr_in6 or sockaddr_storage
     * objects through a struct sockaddr pointer, and reading them through another struct type
     * breaks strict aliasing (GCC -O2 really does drop the stores). */
    sa_family_t fam;
    memcpy(&fam, (const char *)sa + offsetof(struct sockaddr, sa_family), sizeof(fam));
    if (fam == AF_INET) {
        uint8_t v4[4];
        memcpy(v4, (const char *)sa + offsetof(struct sockaddr_in, sin_addr), 4);
        v4_mapped(out, v4);
        return 0;
    }
    if (fam != AF_INET6) {
        return -EAFNOSUPPORT;
    }
    uint8_t a[16];
    memcpy(a, (const char *)sa + offsetof(struct sockaddr_in6, sin6_addr), 16);
    canonical6(a, out);
    return 0;
}

struct range {
    uint8_t addr[16];
    uint8_t prefix; /* over the 128-bit form */
    enum addr_class cls;
};

#define V4(a, b, c, d, len, cls)                                                                   \
    {                                                                                              \
        {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d}, (uint8_t)(96 + (len)), cls         \
    }

/* Most specific first: the first match wins. */
static const struct range ranges[] = {
    V4(169, 254, 169, 254, 32, ADDR_METADATA),
    V4(169, 254, 170, 2, 32, ADDR_METADATA),
    V4(168, 63, 129, 16, 32, ADDR_METADATA),
    V4(100, 100, 100, 200, 32, ADDR_METADATA),
    {{0xfd, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54}, 128, ADDR_METADATA},
    V4(255, 255, 255, 255, 32, ADDR_RESERVED),
    V4(0, 0, 0, 0, 8, ADDR_UNSPECIFIED),
    V4(10, 0, 0, 0, 8, ADDR_PRIVATE),
    V4(100, 64, 0, 0, 10, ADDR_CGNAT),
    V4(127, 0, 0, 0, 8, ADDR_LOOPBACK),
    V4(169, 254, 0, 0, 16, ADDR_LINK_LOCAL),
    V4(172, 16, 0, 0, 12, ADDR_PRIVATE),
    V4(192, 0, 0, 0, 24, ADDR_RESERVED),
    V4(192, 0, 2, 0, 24, ADDR_RESERVED),
    V4(192, 88, 99, 0, 24, ADDR_RESERVED),
    V4(192, 168, 0, 0, 16, ADDR_PRIVATE),
    V4(198, 18, 0, 0, 15, ADDR_RESERVED),
    V4(198, 51, 100, 0, 24, ADDR_RESERVED),
    V4(203, 0, 113, 0, 24, ADDR_RESERVED),
    V4(224, 0, 0, 0, 4, ADDR_MULTICAST),
    V4(240, 0, 0, 0, 4, ADDR_RESERVED),
    {{0}, 128, ADDR_UNSPECIFIED},                                           /* :: */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, ADDR_LOOPBACK}, /* ::1 */
    {{0}, 96, ADDR_RESERVED},                        /* ::/96 IPv4-compatible */
    {{0, 0x64, 0xff, 0x9b, 0, 1}, 48, ADDR_PRIVATE}, /* local-use NAT64 */
    {{0x01, 0}, 64, ADDR_RESERVED},                  /* 100::/64 discard */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, ADDR_RESERVED},   /* documentation */
    {{0x20, 0x01, 0, 0x10}, 28, ADDR_RESERVED},      /* ORCHID */
    {{0x3f, 0xff}, 20, ADDR_RESERVED},               /* documentation (2024) */
    {{0xfc}, 7, ADDR_UNIQUE_LOCAL},
    {{0xfe, 0x80}, 10, ADDR_LINK_LOCAL},
    {{0xfe, 0xc0}, 10, ADDR_PRIVATE}, /* site-local (deprecated) */
    {{0xff}, 8, ADDR_MULTICAST},
};

static bool in_prefix(const uint8_t a[16], const uint8_t net[16], unsigned prefix)
{
    unsigned full = prefix / 8, rem = prefix % 8;
    if (memcmp(a, net, full) != 0) {
        return false;
    }
    if (rem == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xff << (8 - rem));
    return (a[full] & mask) == (net[full] & mask);
}

static enum addr_class classify16(const uint8_t a[16])
{
    for (size_t i = 0; i < ARRAY_SIZE(ranges); i++) {
        if (in_prefix(a, ranges[i].addr, ranges[i].prefix)) {
            return ranges[i].cls;
        }
    }
    return ADDR_PUBLIC;
}

enum addr_class netguard_classify(const struct sockaddr *sa)
{
    uint8_t a[16];
    if (netguard_canonical(sa, a)) {
        return ADDR_RESERVED;
    }
    return classify16(a);
}

int netguard_allow(struct netguard *g, const char *text)
{
    if (g->nallow == NETGUARD_MAX_ALLOW) {
        return -ENOSPC;
    }
    char host[64];
    const char *slash = strchr(text, '/');
    size_t hl = slash ? (size_t)(slash - text) : strlen(text);
    if (hl == 0 || hl >= sizeof(host)) {
        return -EINVAL;
    }
    memcpy(host, text, hl);
    host[hl] = '\0';
    struct cidr c;
    unsigned max;
    struct in_addr v4;
    struct in6_addr v6;
    /* inet_pton, not inet_aton: an allow-list entry must be written plainly. */
    if (inet_pton(AF_INET, host, &v4) == 1) {
        v4_mapped(c.addr, (const uint8_t *)&v4);
        max = 32;
    } else if (inet_pton(AF_INET6, host, &v6) == 1) {
        canonical6(v6.s6_addr, c.addr);
        max = 128;
    } else {
        return -EINVAL;
    }
    unsigned prefix = max;
    if (slash) {
        char *end;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end || p > max) {
            return -EINVAL;
        }
        prefix = (unsigned)p;
    }
    c.prefix = (uint8_t)(max == 32 ? prefix + 96 : prefix);
    g->allow[g->nallow++] = c;
    return 0;
}

bool netguard_permits(const struct netguard *g, const struct sockaddr *sa, enum addr_class *cls)
{
    uint8_t a[16];
    enum addr_class c = ADDR_RESERVED;
    bool ok = false;
    if (netguard_canonical(sa, a) == 0) {
        c = classify16(a);
        ok = c == ADDR_PUBLIC;
        for (size_t i = 0; i < g->nallow && !ok; i++) {
            ok = in_prefix(a, g->allow[i].addr, g->allow[i].prefix);
        }
    }
    if (cls) {
        *cls = c;
    }
    return ok;
}

bool netguard_allows_explicitly(const struct netguard *g, const struct sockaddr *sa)
{
    uint8_t a[16];
    if (netguard_canonical(sa, a) != 0) {
        return false;
    }
    for (size_t i = 0; i < g->nallow; i++) {
        if (in_prefix(a, g->allow[i].addr, g->allow[i].prefix)) {
            return true;
        }
    }
    return false;
}

const char *addr_class_name(enum addr_class c)
{
    static const char *const names[] = {
        [ADDR_PUBLIC] = "public",
        [ADDR_UNSPECIFIED] = "unspecified",
        [ADDR_LOOPBACK] = "loopback",
        [ADDR_PRIVATE] = "private",
        [ADDR_LINK_LOCAL] = "link-local",
        [ADDR_CGNAT] = "cgnat",
        [ADDR_UNIQUE_LOCAL] = "unique-local",
        [ADDR_MULTICAST] = "multicast",
        [ADDR_RESERVED] = "reserved",
        [ADDR_METADATA] = "metadata",
    };
    return (unsigned)c < ARRAY_SIZE(names) ? names[c] : "unknown";
}
