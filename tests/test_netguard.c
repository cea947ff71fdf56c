/* test_netguard.c: address classes, canonical forms, the allow-list, and URLs. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>

#include "netguard.h"
#include "url.h"

TestSuite(netguard);

static struct sockaddr_storage sa(const char *text)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
    } else {
        cr_assert_eq(inet_pton(AF_INET6, text, &s6->sin6_addr), 1, "%s", text);
        s6->sin6_family = AF_INET6;
    }
    return ss;
}

struct ccase {
    const char *addr;
    enum addr_class want;
};

Test(netguard, classes)
{
    static const struct ccase cases[] = {
        {"8.8.8.8", ADDR_PUBLIC},
        {"1.1.1.1", ADDR_PUBLIC},
        {"2606:4700:4700::1111", ADDR_PUBLIC},
        {"127.0.0.1", ADDR_LOOPBACK},
        {"127.255.255.254", ADDR_LOOPBACK},
        {"::1", ADDR_LOOPBACK},
        {"0.0.0.0", ADDR_UNSPECIFIED},
        {"::", ADDR_UNSPECIFIED},
        {"10.0.0.1", ADDR_PRIVATE},
        {"172.16.0.1", ADDR_PRIVATE},
        {"172.31.255.255", ADDR_PRIVATE},
        {"172.32.0.1", ADDR_PUBLIC},
        {"192.168.1.1", ADDR_PRIVATE},
        {"100.64.0.1", ADDR_CGNAT},
        {"100.127.255.255", ADDR_CGNAT},
        {"100.128.0.1", ADDR_PUBLIC},
        {"169.254.1.1", ADDR_LINK_LOCAL},
        {"169.254.169.254", ADDR_METADATA},
        {"168.63.129.16", ADDR_METADATA},
        {"100.100.100.200", ADDR_METADATA},
        {"fd00:ec2::254", ADDR_METADATA},
        {"fe80::1", ADDR_LINK_LOCAL},
        {"fc00::1", ADDR_UNIQUE_LOCAL},
        {"fd12:3456::1", ADDR_UNIQUE_LOCAL},
        {"224.0.0.1", ADDR_MULTICAST},
        {"ff02::1", ADDR_MULTICAST},
        {"240.0.0.1", ADDR_RESERVED},
        {"255.255.255.255", ADDR_RESERVED},
        {"192.0.2.1", ADDR_RESERVED},
        {"198.18.0.1", ADDR_RESERVED},
        {"2001:db8::1", ADDR_RESERVED},
        /* embedded IPv4 forms are judged by the IPv4 address they carry */
        {"::ffff:127.0.0.1", ADDR_LOOPBACK},
        {"::ffff:169.254.169.254", ADDR_METADATA},
        {"::ffff:8.8.8.8", ADDR_PUBLIC},
        {"64:ff9b::10.0.0.1", ADDR_PRIVATE},
        {"64:ff9b::8.8.8.8", ADDR_PUBLIC},
        {"2002:7f00:1::1", ADDR_LOOPBACK},
        {"2002:a9fe:a9fe::1", ADDR_METADATA},
        {"2002:0808:0808::1", ADDR_PUBLIC},
        {"2001:0:4136:e378:8000:63bf:80ff:fffe", ADDR_LOOPBACK}, /* Teredo, client 127.0.0.1 */
        {"::127.0.0.1", ADDR_RESERVED},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct sockaddr_storage s = sa(cases[i].addr);
        enum addr_class c = netguard_classify((struct sockaddr *)&s);
        cr_expect_eq(c, cases[i].want, "%s: got %s, want %s", cases[i].addr, addr_class_name(c),
                     addr_class_name(cases[i].want));
    }
}

Test(netguard, allow_list)
{
    struct netguard g;
    netguard_init(&g);
    struct sockaddr_storage lo = sa("127.0.0.1"), lo6 = sa("::1"), mapped = sa("::ffff:127.0.0.5"),
                            priv = sa("10.1.2.3"), pub = sa("8.8.8.8"), md = sa("169.254.169.254");
    enum addr_class c;
    cr_expect(netguard_permits(&g, (struct sockaddr *)&pub, &c));
    cr_expect(!netguard_permits(&g, (struct sockaddr *)&lo, &c));
    cr_expect_eq(c, ADDR_LOOPBACK);
    cr_expect_eq(netguard_allow(&g, "127.0.0.0/8"), 0);
    cr_expect(netguard_permits(&g, (struct sockaddr *)&lo, NULL));
    cr_expect(netguard_permits(&g, (struct sockaddr *)&mapped, NULL), "v4-mapped matches v4");
    cr_expect(!netguard_permits(&g, (struct sockaddr *)&lo6, NULL), "::1 is not 127/8");
    cr_expect(!netguard_permits(&g, (struct sockaddr *)&priv, NULL));
    cr_expect(!netguard_permits(&g, (struct sockaddr *)&md, NULL));
    cr_expect_eq(netguard_allow(&g, "::1"), 0);
    cr_expect(netguard_permits(&g, (struct sockaddr *)&lo6, NULL));
    cr_expect_eq(netguard_allow(&g, "10.1.2.0/24"), 0);
    cr_expect(netguard_permits(&g, (struct sockaddr *)&priv, NULL));
    static const char *const bad[] = {"",        "/8",        "127.0.0.0/33", "::1/129",    "x",
                                      "127.1/8", "10.0.0.0/", "10.0.0.0/8x",  "10.0.0.0/-1"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        cr_expect_eq(netguard_allow(&g, bad[i]), -EINVAL, "%s", bad[i]);
    }
}

Test(netguard, urls)
{
    struct url u;
    char err[160];
    cr_assert_eq(url_parse(&u, "http://127.0.0.1:8080/hooks/a?x=1#frag", err, sizeof(err)), 0, "%s",
                 err);
    cr_expect(!u.https && u.port == 8080 && u.host_is_ip);
    cr_expect_str_eq(u.target, "/hooks/a?x=1");
    cr_expect_str_eq(u.authority, "127.0.0.1:8080");
    cr_assert_eq(url_parse(&u, "HTTPS://Example.COM", err, sizeof(err)), 0, "%s", err);
    cr_expect(u.https && u.port == 443 && !u.host_is_ip);
    cr_expect_str_eq(u.host, "example.com");
    cr_expect_str_eq(u.target, "/");
    cr_expect_str_eq(u.authority, "example.com");
    cr_assert_eq(url_parse(&u, "http://[::1]:9/x", err, sizeof(err)), 0, "%s", err);
    cr_expect_str_eq(u.authority, "[::1]:9");
    cr_expect_eq(u.addr.ss_family, AF_INET6);
    /* the spellings of 127.0.0.1 a resolver accepts are all read as 127.0.0.1 */
    static const char *const loop[] = {"http://2130706433/", "http://0x7f.1/", "http://127.1/",
                                       "http://0177.0.0.1/"};
    for (size_t i = 0; i < ARRAY_SIZE(loop); i++) {
        cr_assert_eq(url_parse(&u, loop[i], err, sizeof(err)), 0, "%s: %s", loop[i], err);
        cr_expect(u.host_is_ip, "%s", loop[i]);
        cr_expect_eq(netguard_classify((struct sockaddr *)&u.addr), ADDR_LOOPBACK, "%s", loop[i]);
    }
    static const char *const bad[] = {
        "ftp://a/",     "http://",     "http://a@127.0.0.1/",
        "http://[::1/", "http://a:0/", "http://a:65536/",
        "http://a:x/",  "http://a b/", "http://a/p q",
        "http://[zz]/", "//a/",        "http://a:/",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        err[0] = '\0';
        cr_expect_eq(url_parse(&u, bad[i], err, sizeof(err)), -EINVAL, "%s", bad[i]);
        cr_expect_neq(err[0], '\0', "%s", bad[i]);
    }
}
