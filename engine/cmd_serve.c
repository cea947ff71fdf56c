/* cmd_serve.c: hookring serve, the durable delivery backend (serve.h). */
#include "cmd.h"

#include <errno.h>
#include <sys/resource.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apisrv.h"
#include "serve.h"
#include "tls.h"

static const char serve_help[] =
    "usage: hookring serve --data DIR --listen ADDR [--api-key KEY] [--allow-net CIDR...]\n"
    "                      [--time-scale F] [--ca-file PEM] [--insecure] [--resolve H:ADDR...]\n"
    "                      [--dns-server S] [--dedup-window SECONDS] [--max-body BYTES]\n"
    "                      [--idle-timeout MS] [--max-connections N] [--workers N] [--quiet]\n"
    "                      [--failing-after N]\n"
    "                      [--operator-url URL [--operator-secret S]] [--disable-after S]\n"
    "                      [--humanos-api-version V] [--retention SECONDS]\n"
    "                      [--segment-size BYTES] [--max-held N] [--dedup-capacity N]\n"
    "                      [--pace N] [--pace-wait MS]\n"
    "\n"
    "Runs the webhook delivery backend: an HTTP API (JSON) to register webhooks and ingest\n"
    "events; every event is journaled under DIR (acknowledged 202 only once durable), fanned out\n"
    "to every matching webhook, signed with the webhook's profile and delivered with its retry\n"
    "schedule. A restart (even after kill -9) replays the journal and resumes every pending\n"
    "delivery; an attempt in flight at the crash is made again with the same message id.\n"
    "\n"
    "  --data DIR          the journal directory (created if missing; one server at a time)\n"
    "  --listen ADDR       the API's address, IP:PORT or [IPv6]:PORT (port 0: any free one);\n"
    "                      prints 'listening on ADDR' once serving\n"
    "  --api-key KEY       the key clients send as 'Authorization: Bearer KEY' (default: the\n"
    "                      HOOKRING_API_KEY environment variable; one of the two is required)\n"
    "  --allow-net CIDR    allow deliveries to a refused range (loopback, private, ...)\n"
    "  --time-scale F      multiply every retry delay by F (tests: 0.001 runs a day in 86 s)\n"
    "  --ca-file PEM       trust this CA too for https:// webhooks\n"
    "  --insecure          https without verifying certificates: test receivers only\n"
    "  --resolve H:ADDR    answer host H with ADDR instead of asking DNS (repeatable)\n"
    "  --dns-server S      ask this resolver (IP[:PORT], comma-separated)\n"
    "  --dedup-window S    an event id seen within S seconds (1-2 windows) is a duplicate\n"
    "                      (default 86400)\n"
    "  --dedup-capacity N  event ids the dedup table holds per window (default 200000; its\n"
    "                      memory, 64-128 bytes per id, is committed at start)\n"
    "  --max-body BYTES    the largest API request body (default 1 MiB; larger: 413)\n"
    "  --idle-timeout MS   an API connection must deliver a whole request within MS of being\n"
    "                      ready for one (default 30000)\n"
    "  --max-connections N API connections at once, 16-65536 (default 1024); beyond, a new\n"
    "                      one takes the place of the one that has waited longest for its\n"
    "                      next request (closed), or is closed when none waits. The open-file\n"
    "                      limit is raised to what this and the deliveries need, within the\n"
    "                      hard limit\n"
    "  --workers N         delivery threads, 1-64 (default 1: one thread and one io_uring run\n"
    "                      everything). With N > 1 the main thread keeps the API, the journal\n"
    "                      and the retry wheel; webhooks are spread over N threads, each with\n"
    "                      its own io_uring and connections, which make the attempts\n"
    "  --failing-after N   a webhook is marked failing after N deliveries in a row exhausted\n"
    "                      their retries (default 5; humanconnection: after any delivery's 5th\n"
    "                      failed retry); one delivered makes it active again\n"
    "  --disable-after S   a webhook failing for S seconds (times --time-scale) becomes\n"
    "                      disabled and its pending deliveries fail (default 432000: 5 days)\n"
    "  --humanos-api-version V  the api_version a humanos webhook is pinned to at its first\n"
    "                      delivery (default v1; PATCH {api_version} changes a webhook's)\n"
    "  --operator-url URL  post endpoint.failing, endpoint.disabled and\n"
    "                      message.attempt.exhausted events there, signed as the standard\n"
    "                      profile (they are always logged on stdout)\n"
    "  --operator-secret S their signing secret (whsec_...; default: a random one)\n"
    "  --retention S       forget a delivered or failed delivery (its history, its event\n"
    "                      with its last delivery) S seconds after it became final; the\n"
    "                      journal is compacted to what is still held (default 604800)\n"
    "  --segment-size B    journal segment files of B bytes (default 64 MiB, at least 64 KiB)\n"
    "  --max-held N        deliveries held in memory at most (default 1000000; with its\n"
    "                      share of its event a final one takes about 300 bytes, a pending\n"
    "                      one 1.5-3 KiB at 1 KiB events): beyond, delivered and failed\n"
    "                      ones are forgotten before their retention, and when pending ones\n"
    "                      alone fill it, ingest answers 503 with Retry-After: 5\n"
    "  --pace N            while more than N deliveries are due and wait for an attempt\n"
    "                      slot (max_in_flight), an ingest request waits before it is\n"
    "                      taken, until they are down to N/2: producers are slowed to the\n"
    "                      delivery rate instead of building a backlog in memory (default\n"
    "                      4096; 0: never)\n"
    "  --pace-wait MS      the longest an ingest request waits so (default 250): a slow\n"
    "                      receiver delays ingest at most this much, never stops it\n"
    "  --quiet             no line per attempt on stdout\n"
    "  -h, --help          this text\n"
    "\n"
    "API (JSON; every path but /v1/health needs the bearer key):\n"
    "  POST   /v1/webhooks {url, profile, events:[...], agent?, secret?, enc_secret?, enc_salt?,\n"
    "                       retry_schedule?:[s...], timeout_ms?, max_in_flight?, headers?:{..},\n"
    "                       api_version? (humanos)}                       201 with signing_secret\n"
    "  GET    /v1/webhooks?limit=N&cursor=C   oldest first; next page: cursor=next_cursor\n"
    "  GET|PATCH|DELETE /v1/webhooks/{id}\n"
    "  POST   /v1/events {id?, type, created_at?, agent?, data, callback_url?, callback_secret?}\n"
    "                                                             202 {id, deliveries} once "
    "durable,\n"
    "                                                             200 {id, duplicate:true}\n"
    "  POST   /v1/events/batch (NDJSON)  one result line per event, once all are durable\n"
    "  POST   /v1/webhooks/{id}/rotate-secret {secret?, grace_seconds?}\n"
    "  POST   /v1/webhooks/{id}/deliveries/{dlv}/retry;  POST /v1/webhooks/{id}/recover?since=T\n"
    "  GET    /v1/webhooks/{id}/deliveries?status=pending|sending|delivered|failed&limit=N\n"
    "         &cursor=C                 newest first; next page: cursor=next_cursor (null: end)\n"
    "  GET    /v1/deliveries/{dlv}   every attempt: time, status, latency, error class, response\n"
    "  GET    /v1/health;  GET /metrics (Prometheus text)\n"
    "\n"
    "SIGTERM or SIGINT stops accepting, waits up to 10 s for attempts in flight, syncs the\n"
    "journal and exits 0; a second signal exits at once.\n"
    "\n"
    "exit status: 0 after a clean stop; 1 a failure (journal, io_uring); 2 bad usage.\n";

/* long options without a short letter: above every character, so they never take another
 * option's letter (CMD_NET_LONGOPTS uses A C K R D) */
enum { OPT_DISABLE_AFTER = 256, OPT_HUMANOS_API_VERSION, OPT_DEDUP_CAPACITY };
/* options with no short letter (beyond every char) */
enum {
    OPT_RETENTION = 0x200,
    OPT_SEGMENT_SIZE,
    OPT_MAX_HELD,
    OPT_PACE,
    OPT_PACE_WAIT,
    OPT_MAX_CONNECTIONS
};

static volatile sig_atomic_t stop_signals;
static struct ring *signal_ring;

static void on_signal(int sig)
{
    if (stop_signals++ > 0) {
        _exit(1);
    }
    if (signal_ring) {
        ring_wake(signal_ring);
    }
}

static void on_wake(struct ring *r, void *arg)
{
}

/* cmd_serve_huge_pages (argv: main's, whole) has glibc grow the heap in transparent huge pages (its
 * tunable glibc.malloc.hugetlb=1: each extension madvised MADV_HUGEPAGE). serve keeps every event
 * it holds on the heap (about 3 KiB each), and on a VM the first touch of each 4 KiB page cost more
 * than ingesting the event (perf: two fifths of serve's CPU in page faults under load). Tunables
 * are read at start only, so serve runs itself again with it set, once, and only when the user
 * set no GLIBC_TUNABLES of their own. Best effort: if the exec fails, serve goes on as it is; on
 * a kernel without THP (or set to "never") the tunable changes nothing. Not when the binary is
 * linked with mimalloc (the Makefile's plain build, HOOKRING_MIMALLOC): glibc's heap, and so its
 * tunables, are then unused. */
void cmd_serve_huge_pages(char **argv)
{
#ifdef HOOKRING_MIMALLOC
    (void)argv;
#else
    if (getenv("GLIBC_TUNABLES") || getenv("HOOKRING_SERVE_REEXEC")) {
        return;
    }
    if (setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1", 0) ||
        setenv("HOOKRING_SERVE_REEXEC", "1", 1)) {
        return;
    }
    /* by its real path: the process keeps its name ("exe" otherwise, in ps and top) */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = 0;
        execv(self, argv);
    }
    unsetenv("GLIBC_TUNABLES"); /* the exec failed: go on without */
#endif
}

/* raise_nofile raises the soft open-file limit to what api API connections, the delivery
 * clients' connections (SERVE_CLIENT_CONNS each, one client per worker) and the rest need,
 * within the hard limit, and says so when the hard limit is lower (beyond it, accepts and
 * connects fail with EMFILE). */
static void raise_nofile(uint32_t api, uint32_t workers)
{
    rlim_t dlv = (rlim_t)SERVE_CLIENT_CONNS * (workers > 1 ? workers : 1);
    rlim_t need = (rlim_t)api + dlv + 256;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need) {
        return;
    }
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    if (want > rl.rlim_cur) {
        rl.rlim_cur = want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (want < need) {
        fprintf(stderr,
                "hookring serve: the open-file limit is %llu, below the %llu that %u API "
                "connections and %llu delivery connections need: raise it (ulimit -n) or lower "
                "--max-connections\n",
                (unsigned long long)want, (unsigned long long)need, api, (unsigned long long)dlv);
    }
}

int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"api-key", required_argument, NULL, 'k'},
        {"time-scale", required_argument, NULL, 'T'},
        {"dedup-window", required_argument, NULL, 'w'},
        {"dedup-capacity", required_argument, NULL, OPT_DEDUP_CAPACITY},
        {"max-body", required_argument, NULL, 'b'},
        {"idle-timeout", required_argument, NULL, 'i'},
        {"workers", required_argument, NULL, 'W'},
        {"quiet", no_argument, NULL, 'q'},
        {"operator-url", required_argument, NULL, 'O'},
        {"operator-secret", required_argument, NULL, 'S'},
        {"failing-after", required_argument, NULL, 'F'},
        {"disable-after", required_argument, NULL, OPT_DISABLE_AFTER},
        {"humanos-api-version", required_argument, NULL, OPT_HUMANOS_API_VERSION},
        {"retention", required_argument, NULL, OPT_RETENTION},
        {"segment-size", required_argument, NULL, OPT_SEGMENT_SIZE},
        {"max-held", required_argument, NULL, OPT_MAX_HELD},
        {"pace", required_argument, NULL, OPT_PACE},
        {"pace-wait", required_argument, NULL, OPT_PACE_WAIT},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
        CMD_NET_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct cmd_net net;
    cmd_net_init(&net);
    struct serve_opts so = {.time_scale = 1.0, .guard = &net.guard};
    const char *listen_s = NULL;
    uint64_t v;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            so.data_dir = optarg;
            break;
        case 'l':
            listen_s = optarg;
            break;
        case 'k':
            so.api_key = optarg;
            break;
        case 'T': {
            char *end;
            so.time_scale = strtod(optarg, &end);
            if (*end || !(so.time_scale >= 0) || !isfinite(so.time_scale) || so.time_scale > 1000) {
                return cmd_usage_error("serve", "--time-scale must be a number from 0 to 1000");
            }
            break;
        }
        case 'w':
            if (!cmd_parse_uint(optarg, &v) || v == 0 || v > 30 * 86400) {
                return cmd_usage_error("serve", "--dedup-window must be 1-2592000 seconds");
            }
            so.dedup_window_ms = v * 1000;
            break;
        case OPT_DEDUP_CAPACITY:
            if (!cmd_parse_uint(optarg, &v) || v < 1000 || v > 100000000) {
                return cmd_usage_error("serve", "--dedup-capacity must be 1000-100000000");
            }
            so.dedup_capacity = v;
            break;
        case 'b':
            if (!cmd_parse_uint(optarg, &v) || v < 1024 || v > (16u << 20)) {
                return cmd_usage_error("serve", "--max-body must be 1024-16777216 bytes");
            }
            so.max_body = v;
            break;
        case 'i':
            if (!cmd_parse_uint(optarg, &v) || v < 100 || v > 3600000) {
                return cmd_usage_error("serve", "--idle-timeout must be 100-3600000 ms");
            }
            so.idle_ms = (uint32_t)v;
            break;
        case 'W':
            if (!cmd_parse_uint(optarg, &v) || v < 1 || v > 64) {
                return cmd_usage_error("serve", "--workers must be 1-64");
            }
            so.workers = (uint32_t)v;
            break;
        case 'q':
            so.quiet = true;
            break;
        case 'O':
            so.operator_url = optarg;
            break;
        case 'S':
            so.operator_secret = optarg;
            break;
        case 'F':
            if (!cmd_parse_uint(optarg, &v) || v == 0 || v > 1000000) {
                return cmd_usage_error("serve", "--failing-after must be 1-1000000 deliveries");
            }
            so.failing_after = (uint32_t)v;
            break;
        case OPT_DISABLE_AFTER:
            if (!cmd_parse_uint(optarg, &v) || v == 0 || v > 365 * 86400) {
                return cmd_usage_error("serve", "--disable-after must be 1-31536000 seconds");
            }
            so.disable_after_s = v;
            break;
        case OPT_HUMANOS_API_VERSION: {
            size_t n = strlen(optarg);
            bool ok = n > 0 && n <= SIGN_API_VERSION_MAX;
            for (size_t i = 0; i < n && ok; i++) {
                char ch = optarg[i];
                ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= 'A' && ch <= 'Z') || strchr("._-", ch);
            }
            if (!ok) {
                return cmd_usage_error("serve",
                                       "--humanos-api-version must be 1-%d letters, "
                                       "digits, '.', '_' or '-'",
                                       SIGN_API_VERSION_MAX);
            }
            so.humanos_api_version = optarg;
            break;
        }
        case OPT_RETENTION:
            if (!cmd_parse_uint(optarg, &v) || v == 0 || v > 3650ull * 86400) {
                return cmd_usage_error("serve", "--retention must be 1-315360000 seconds");
            }
            so.retention_ms = v * 1000;
            break;
        case OPT_MAX_HELD:
            if (!cmd_parse_uint(optarg, &v) || v < 16 || v > 1000000000) {
                return cmd_usage_error("serve", "--max-held must be 16-1000000000 deliveries");
            }
            so.max_held = v;
            break;
        case OPT_PACE:
            if (!cmd_parse_uint(optarg, &v) || v > 100000000) {
                return cmd_usage_error("serve", "--pace must be 0-100000000 deliveries");
            }
            so.pace_ready = v ? (uint32_t)v : UINT32_MAX;
            break;
        case OPT_PACE_WAIT:
            if (!cmd_parse_uint(optarg, &v) || v == 0 || v > 60000) {
                return cmd_usage_error("serve", "--pace-wait must be 1-60000 ms");
            }
            so.pace_wait_ms = (uint32_t)v;
            break;
        case OPT_MAX_CONNECTIONS:
            if (!cmd_parse_uint(optarg, &v) || v < 16 || v > 65536) {
                return cmd_usage_error("serve", "--max-connections must be 16-65536");
            }
            so.max_conns = (uint32_t)v;
            break;
        case OPT_SEGMENT_SIZE:
            if (!cmd_parse_uint(optarg, &v) || v < (64u << 10) || v > (1ull << 30)) {
                return cmd_usage_error("serve", "--segment-size must be 65536-1073741824 bytes");
            }
            so.segment_size = v;
            break;
        case 'h':
            fputs(serve_help, stdout);
            return EXIT_OK;
        default: {
            int e = cmd_net_option("serve", &net, c, optarg);
            if (e < 0) {
                return cmd_bad_option("serve", argc, argv, c);
            }
            if (e) {
                return e;
            }
            break;
        }
        }
    }
    if (optind != argc) {
        return cmd_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    }
    if (so.segment_size && so.segment_size < 2 * (so.max_body ? so.max_body : (1u << 20))) {
        return cmd_usage_error("serve", "--segment-size must be at least twice --max-body (a "
                                        "segment holds the largest event whole)");
    }
    if (!so.data_dir) {
        return cmd_usage_error("serve", "--data DIR is required");
    }
    if (!listen_s) {
        return cmd_usage_error("serve", "--listen ADDR is required");
    }
    if (!so.api_key) {
        so.api_key = getenv("HOOKRING_API_KEY");
    }
    if (!so.api_key || !so.api_key[0]) {
        return cmd_usage_error("serve", "an API key is required: --api-key KEY or "
                                        "HOOKRING_API_KEY");
    }
    raise_nofile(so.max_conns ? so.max_conns : 1024, so.workers);
    char err[1024];
    struct sockaddr_storage bound;
    int lfd = apisrv_listen(listen_s, &bound, err, sizeof(err));
    if (lfd < 0) {
        return cmd_usage_error("serve", "%s", err);
    }
    int ret = EXIT_FAIL;
    static struct tls_ctx tctx;
    static struct dns dns;
    static struct ring ring;
    bool dns_ok = false;
    struct serve *s = NULL;
    if (tls_ctx_init(&tctx, &net.tls, err, sizeof(err))) {
        fprintf(stderr, "hookring serve: %s\n", err);
        close(lfd);
        return EXIT_USAGE;
    }
    if (net.tls.insecure) {
        fprintf(stderr, "hookring serve: WARNING: --insecure: https certificates are NOT "
                        "verified\n");
    }
    struct ring_opts ro = {.entries = 4096, .max_timers = 8192};
    int rc = ring_init(&ring, &ro);
    if (rc) {
        fprintf(stderr, "hookring serve: io_uring set-up failed: %s\n", strerror(-rc));
        close(lfd);
        goto out_tls;
    }
    if (ring_wake_init(&ring, on_wake, NULL)) {
        fprintf(stderr, "hookring serve: eventfd: %s\n", strerror(errno));
        close(lfd);
        goto out_ring;
    }
    if (dns_init(&dns, &ring, &net.dns.o, err, sizeof(err)) == 0) {
        dns_ok = true;
    } else {
        fprintf(stderr, "hookring serve: no resolver (%s): only IP-literal URLs will work\n", err);
    }
    so.tls = &tctx;
    so.dns = dns_ok ? &dns : NULL;
    so.tls_opts = &net.tls;
    so.dns_opts = dns_ok ? &net.dns.o : NULL;
    s = serve_new(&ring, &so, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "hookring serve: %s\n", err);
        close(lfd);
        goto out_dns;
    }
    serve_recovered_summary(s, err, sizeof(err));
    fprintf(stderr, "hookring serve: %s\n", err);
    rc = serve_start(s, lfd);
    if (rc) {
        fprintf(stderr, "hookring serve: %s\n", strerror(-rc));
        close(lfd);
        goto out_serve;
    }
    signal_ring = &ring;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    char addr[80];
    apisrv_format_addr(&bound, addr, sizeof(addr));
    printf("listening on %s\n", addr);
    fflush(stdout);
    bool stopping = false;
    int64_t deadline = 0;
    for (;;) {
        serve_after_run(s);
        rc = ring_run_once(&ring, stopping ? 50 * 1000000 : -1);
        if (rc < 0) {
            fprintf(stderr, "hookring serve: io_uring: %s\n", strerror(-rc));
            goto out_serve;
        }
        if (stop_signals && !stopping) {
            stopping = true;
            deadline = ring_now_ns(&ring) + 10ll * 1000000000;
            fprintf(stderr, "hookring serve: stopping: draining attempts in flight\n");
            serve_shutdown(s);
        }
        if (stopping && (serve_idle(s) || ring_now_ns(&ring) > deadline)) {
            break;
        }
    }
    ret = EXIT_OK;
out_serve:
    signal_ring = NULL;
    rc = serve_free(s);
    if (rc == -ENOSPC || rc == -EDQUOT) {
        fprintf(stderr, "hookring serve: stopped with records that waited for room on disk for "
                        "the journal's next segment: none of them was acknowledged, everything "
                        "acknowledged is durable\n");
        ret = EXIT_FAIL;
    } else if (rc) {
        fprintf(stderr, "hookring serve: the journal failed; the last records may not be "
                        "durable\n");
        ret = EXIT_FAIL;
    }
out_dns:
    if (dns_ok) {
        dns_cleanup(&dns);
    }
out_ring:
    ring_cleanup(&ring);
out_tls:
    tls_ctx_cleanup(&tctx);
    return ret;
}
