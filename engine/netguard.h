/* netguard.h: the address guard. Deliveries must not reach loopback, private, link-local,
 * CGNAT, unique-local, multicast, reserved or cloud metadata addresses unless the operator
 * allowed that range (--allow-net CIDR). The check is made on the address actually connected to.
 *
 * Addresses are canonicalised first: IPv4-mapped (::ffff:0:0/96), NAT64 (64:ff9b::/96), 6to4
 * (2002::/16) and Teredo (2001::/32) carry an IPv4 address, which is what is classified (and
 * what an allow-list entry for IPv4 matches). */
#ifndef HOOKRING_NETGUARD_H
#define HOOKRING_NETGUARD_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "common.h"

#define NETGUARD_MAX_ALLOW 32

enum addr_class {
    ADDR_PUBLIC = 0,
    ADDR_UNSPECIFIED,  /* 0.0.0.0/8, :: */
    ADDR_LOOPBACK,     /* 127.0.0.0/8, ::1 */
    ADDR_PRIVATE,      /* 10/8, 172.16/12, 192.168/16, fec0::/10, 64:ff9b:1::/48 */
    ADDR_LINK_LOCAL,   /* 169.254/16, fe80::/10 */
    ADDR_CGNAT,        /* 100.64/10 */
    ADDR_UNIQUE_LOCAL, /* fc00::/7 */
    ADDR_MULTICAST,    /* 224/4, ff00::/8 */
    ADDR_RESERVED,     /* documentation, benchmarking, 240/4, broadcast, ::/96, 100::/64 ... */
    ADDR_METADATA,     /* 169.254.169.254, 169.254.170.2, 168.63.129.16, 100.100.100.200,
                          fd00:ec2::254 */
};

/* A CIDR block, kept in IPv6 form (IPv4 as ::ffff:a.b.c.d with the prefix + 96). */
struct cidr {
    uint8_t addr[16];
    uint8_t prefix;
};

struct netguard {
    struct cidr allow[NETGUARD_MAX_ALLOW];
    size_t nallow;
};

/* netguard_init starts with nothing allowed beyond public addresses. */
void netguard_init(struct netguard *g);

/* netguard_allow adds a CIDR ("127.0.0.0/8", "::1/128", "10.1.2.3" = /32). Returns 0,
 * -EINVAL when text is not a CIDR, -ENOSPC past NETGUARD_MAX_ALLOW. */
int netguard_allow(struct netguard *g, const char *text);

/* netguard_canonical writes the 16-byte canonical form of sa (an embedded IPv4 address as
 * ::ffff:a.b.c.d). Returns 0 or -EAFNOSUPPORT. */
int netguard_canonical(const struct sockaddr *sa, uint8_t out[16]);

/* netguard_classify names the class of sa's (canonical) address. */
enum addr_class netguard_classify(const struct sockaddr *sa);

/* netguard_permits tells whether a delivery may connect to sa: a public address, or one inside
 * an allowed range. *cls (when not NULL) gets the address's class. */
bool netguard_permits(const struct netguard *g, const struct sockaddr *sa, enum addr_class *cls);

/* netguard_allows_explicitly tells whether sa is inside a range the operator allowed (an
 * --allow-net), whatever its class: what lets a test receiver relax a policy meant for the
 * public internet, such as humcli's https-only rule. */
bool netguard_allows_explicitly(const struct netguard *g, const struct sockaddr *sa);

/* addr_class_name is a short stable name ("loopback", "private", ...). */
const char *addr_class_name(enum addr_class c);

#endif
