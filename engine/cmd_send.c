/* cmd_send.c: hookring send: one delivery, with the profile's retries when asked. */
#include "cmd.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "client.h"
#include "retry.h"
#include "tls.h"

static const char send_help[] =
    "usage: hookring send --profile P --url URL --secret S [--secret S2...] [--retries]\n"
    "                     [--time-scale F] [--timeout MS] [--id ID] [--allow-net CIDR...]\n"
    "                     [--ca-file PEM] [--insecure] [--resolve HOST:ADDR...]\n"
    "                     [--dns-server IP[:PORT]] [--enc-secret B64 --enc-salt SALT]\n"
    "                     EVENT.json\n"
    "\n"
    "Delivers one event to URL the way the profile does, and prints the request line, each\n"
    "attempt's status, latency and a response excerpt.\n"
    "\n"
    "  --profile P        humanconnection humiris humcli humanos aksita standard svix stripe "
    "github\n"
    "  --url URL          http(s)://HOST[:port]/path (a name or an IP address)\n"
    "  --secret S         the signing secret (repeatable during a rotation; see hookring sign)\n"
    "  --retries          follow the profile's retry schedule (±20 %% jitter, Retry-After\n"
    "                     honoured up to a day, 410 ends it) instead of one attempt\n"
    "  --time-scale F     multiply every retry delay by F (e.g. 0.001 runs a day in 86 s)\n"
    "  --timeout MS       the attempt's total deadline (default: the profile's)\n"
    "  --id ID            the message id (webhook-id, svix-id, X-GitHub-Delivery)\n"
    "  --allow-net CIDR   allow a refused range (loopback, private, ...); repeatable\n"
    "  --ca-file PEM      trust this CA too (https; the system's CAs are always trusted)\n"
    "  --insecure         https without verifying the certificate: test receivers only\n"
    "  --resolve H:ADDR   answer host H with ADDR instead of asking DNS (repeatable)\n"
    "  --dns-server S     ask this resolver (IP[:PORT], comma-separated) instead of\n"
    "                     /etc/resolv.conf's\n"
    "  --enc-secret B64   humanos: the encryption secret\n"
    "  --enc-salt SALT    humanos: the encryption salt\n"
    "  -h, --help         this text\n"
    "\n"
    "exit status: 0 delivered (2xx); 1 not delivered (the reason is printed); 2 bad usage.\n";

struct send_state {
    struct ring ring;
    struct client client;
    struct endpoint ep;
    struct attempt a;
    struct wheel wheel;
    struct wheel_timer retry_timer;
    struct retry_policy policy;
    uint64_t rng;
    uint32_t attempts;
    bool retries;
    bool finished;
    enum retry_verdict verdict;
};

static void print_attempt(const struct send_state *s)
{
    const struct attempt *a = &s->a;
    double ms = (double)(a->done_ns - a->submit_ns) / 1e6;
    if (a->status) {
        printf("attempt %u: %d in %.2f ms", s->attempts, a->status, ms);
    } else {
        printf("attempt %u: %s in %.2f ms", s->attempts, attempt_result_name(a->result), ms);
        if (a->err) {
            printf(" (%s)", strerror(a->err));
        }
    }
    if (a->has_retry_after) {
        printf(", Retry-After %llds", (long long)a->retry_after_s);
    }
    printf("\n");
    if (a->excerpt_len) {
        printf("  %s: ", a->status ? "response" : "reason");
        for (size_t i = 0; i < a->excerpt_len; i++) {
            uint8_t ch = a->excerpt[i];
            putchar(ch >= 0x20 && ch < 0x7f ? ch : '.');
        }
        printf("%s\n", a->excerpt_len == ATTEMPT_EXCERPT ? "..." : "");
    }
    fflush(stdout);
}

static void retry_fire(struct wheel *w, struct wheel_timer *t)
{
    struct send_state *s = container_of(t, struct send_state, retry_timer);
    client_submit(&s->a);
}

static void send_done(struct attempt *a)
{
    struct send_state *s = container_of(a, struct send_state, a);
    s->attempts++;
    print_attempt(s);
    int64_t delay = 0;
    s->verdict = retry_decide(&s->policy, a, s->attempts, &s->rng, &delay);
    if (s->verdict == RETRY_AGAIN && !s->retries) {
        s->verdict = RETRY_EXHAUSTED;
    }
    if (s->verdict != RETRY_AGAIN) {
        s->finished = true;
        return;
    }
    printf("  retry %u of %zu in %.3f s\n", s->attempts, s->policy.n, (double)delay / 1000.0);
    fflush(stdout);
    wheel_add(&s->wheel, &s->retry_timer, ring_now_ms(&s->ring) + (uint64_t)delay);
}

int cmd_send(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"retries", no_argument, NULL, 'r'},
        {"time-scale", required_argument, NULL, 'T'},
        {"timeout", required_argument, NULL, 't'},
        {"id", required_argument, NULL, 'i'},
        CMD_NET_LONGOPTS,
        CMD_SIG_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url_s = NULL, *id = NULL;
    static struct cmd_net net;
    cmd_net_init(&net);
    static struct send_state s;
    memset(&s, 0, sizeof(s));
    double scale = 1.0;
    uint64_t timeout_ms = 0;
    int c;
    static struct cmd_sig sg;
    cmd_sig_init(&sg);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            url_s = optarg;
            break;
        case 'r':
            s.retries = true;
            break;
        case 'T': {
            char *end;
            scale = strtod(optarg, &end);
            if (*end || !(scale >= 0) || !isfinite(scale) || scale > 1000) {
                return cmd_usage_error("send", "--time-scale must be a number from 0 to 1000");
            }
            break;
        }
        case 't':
            if (!cmd_parse_uint(optarg, &timeout_ms) || timeout_ms == 0 || timeout_ms > 3600000) {
                return cmd_usage_error("send", "--timeout must be 1-3600000 ms");
            }
            break;
        case 'i':
            id = optarg;
            break;
        case 'h':
            fputs(send_help, stdout);
            return EXIT_OK;
        default: {
            int e = cmd_sig_option("send", &sg, c, optarg);
            if (e < 0) {
                e = cmd_net_option("send", &net, c, optarg);
            }
            if (e < 0) {
                return cmd_bad_option("send", argc, argv, c);
            }
            if (e) {
                return e;
            }
            break;
        }
        }
    }
    if (optind != argc - 1) {
        return cmd_usage_error("send", optind >= argc ? "EVENT.json is required"
                                                      : "exactly one EVENT.json, not several");
    }
    const struct profile *p = cmd_profile("send", sg.profile);
    if (!p) {
        return EXIT_USAGE;
    }
    if (!url_s) {
        return cmd_usage_error("send", "--url is required");
    }
    if (id && !event_valid_id(slice_cstr(id))) {
        return cmd_usage_error("send", "--id must be 1-128 printable characters without '.' or "
                                       "spaces");
    }
    char err[EVENT_ERR_MAX];
    struct url url;
    if (url_parse(&url, url_s, err, sizeof(err))) {
        return cmd_usage_error("send", "%s", err);
    }
    struct signer signer;
    if (signer_init(&signer, p, sg.secrets, sg.nsecrets, slice_cstr(sg.enc), slice_cstr(sg.salt),
                    err, sizeof(err))) {
        return cmd_usage_error("send", "%s", err);
    }
    int ret = EXIT_USAGE;
    struct buf in, body;
    buf_init(&in, 4u << 20);
    buf_init(&body, 64u << 20);
    struct event ev = {0};
    struct tls_ctx tctx = {0};
    int rc = cmd_read_file(argv[optind], &in);
    if (rc) {
        fprintf(stderr, "hookring send: %s: %s\n", argv[optind],
                rc == -EFBIG ? "larger than 4 MiB" : strerror(-rc));
        goto out_buf;
    }
    if (event_parse(&ev, in.p, in.len, cmd_now_ms(), err, sizeof(err)) ||
        p->build_body(&signer, &ev, &body, err, sizeof(err))) {
        fprintf(stderr, "hookring send: %s: %s\n", argv[optind], err);
        goto out_buf;
    }
    char idbuf[SIGN_ID_MAX + 1];
    struct slice msg_id = id              ? slice_cstr(id)
                          : p->message_id ? slice_of(idbuf, p->message_id(&ev, idbuf))
                                          : slice_of(ev.id, ev.id_len);
    if (url.https) {
        if (tls_ctx_init(&tctx, &net.tls, err, sizeof(err))) {
            fprintf(stderr, "hookring send: %s\n", err);
            goto out_buf;
        }
        if (net.tls.insecure) {
            fprintf(stderr,
                    "hookring send: WARNING: --insecure: %s's certificate is NOT "
                    "verified; anyone on the path can read and change this delivery\n",
                    url.authority);
        }
    }
    struct ring_opts ro = {.entries = 64, .max_timers = 16};
    rc = ring_init(&s.ring, &ro);
    if (rc) {
        fprintf(stderr, "hookring send: io_uring set-up failed: %s\n", strerror(-rc));
        ret = EXIT_FAIL;
        goto out_buf;
    }
    static struct dns dns;
    bool dns_ok = false;
    if (!url.host_is_ip) {
        if (dns_init(&dns, &s.ring, &net.dns.o, err, sizeof(err))) {
            fprintf(stderr, "hookring send: %s\n", err);
            ret = EXIT_USAGE;
            goto out_ring;
        }
        dns_ok = true;
    }
    struct client_opts co = {.max_conns = 2,
                             .max_inflight = 1,
                             .rbuf_size = 16384,
                             .max_response_body = 1u << 20,
                             .guard = &net.guard,
                             .tls = url.https ? &tctx : NULL,
                             .dns = dns_ok ? &dns : NULL};
    if (client_init(&s.client, &s.ring, &co) ||
        endpoint_init(&s.ep, &s.client, &url, &signer, (uint32_t)timeout_ms, 1, 1, err,
                      sizeof(err))) {
        fprintf(stderr, "hookring send: not delivered: %s\n", err);
        ret = EXIT_FAIL;
        goto out_ring;
    }
    ring_attach_wheel(&s.ring, &s.wheel);
    wheel_timer_init(&s.retry_timer, retry_fire);
    s.policy = retry_policy_of(p, scale);
    s.rng = (uint64_t)cmd_now_ms() * 0x9e3779b97f4a7c15ull | 1;
    s.a = (struct attempt){
        .ep = &s.ep, .event = &ev, .body = buf_slice(&body), .id = msg_id, .done = send_done};
    printf("POST %s HTTP/1.1 -> %s (%s, %zu byte body)\n", url.target, url.authority, p->name,
           body.len);
    fflush(stdout);
    client_submit(&s.a);
    while (!s.finished) {
        client_flush(&s.client);
        rc = ring_run_once(&s.ring, -1);
        if (rc < 0) {
            fprintf(stderr, "hookring send: io_uring: %s\n", strerror(-rc));
            break;
        }
    }
    if (s.finished && s.verdict == RETRY_DELIVERED) {
        printf("delivered after %u attempt%s\n", s.attempts, s.attempts == 1 ? "" : "s");
        ret = EXIT_OK;
    } else {
        const char *why = s.verdict == RETRY_GONE ? "410 Gone: the endpoint is disabled"
                          : s.attempts > 1        ? "retries exhausted"
                          : p->nretry == 0        ? "failed (the profile does not retry)"
                                                  : "failed (no --retries)";
        char last[32] = "";
        if (s.a.status) {
            snprintf(last, sizeof(last), " %d", s.a.status);
        }
        fprintf(stderr, "hookring send: not delivered: %s after %u attempt%s; last: %s%s\n", why,
                s.attempts, s.attempts == 1 ? "" : "s", attempt_result_name(s.a.result), last);
        ret = EXIT_FAIL;
    }
    endpoint_cleanup(&s.ep);
    client_cleanup(&s.client);
out_ring:
    if (dns_ok) {
        dns_cleanup(&dns);
    }
    ring_cleanup(&s.ring);
out_buf:
    tls_ctx_cleanup(&tctx);
    event_clear(&ev);
    signer_wipe(&signer);
    buf_free(&in);
    buf_free(&body);
    return ret;
}
