/* cmd_blast.c: hookring blast: load-test a webhook receiver with signed deliveries.
 *
 * Each worker thread has its own ring, client and endpoints (one per URL) and shares nothing on
 * its hot path; the main thread prints progress from relaxed counters and merges the workers'
 * histograms at the end. Closed loop by default: --concurrency virtual senders each send again
 * as soon as their previous delivery ends. With --rate the load is open: deliveries are due at
 * fixed intended times and latency is measured from the intended time, so a stalled receiver
 * shows up in the percentiles instead of silently slowing the sender (no coordinated
 * omission). */
#include "cmd.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "codec.h"
#include "hist.h"
#include "tls.h"

#define BLAST_MAX_URLS 64
#define BLAST_MAX_WORKERS 64
#define STATUS_CODES 600

static const char blast_help[] =
    "usage: hookring blast --profile P --url URL[,URL...] --secret S (--count N | --duration D)\n"
    "                      [--concurrency C] [--rate R] [--payload-size B] [--workers W]\n"
    "                      [--timeout MS] [--allow-net CIDR...] [--enc-secret B64 --enc-salt "
    "SALT]\n"
    "                      [--ca-file PEM] [--insecure] [--new-connections]\n"
    "                      [--resolve HOST:ADDR...] [--dns-server IP[:PORT]] [--json] [--quiet]\n"
    "\n"
    "Load-tests a webhook receiver: every delivery is a fresh event (unique id), built and signed\n"
    "the way the profile does, sent over keep-alive HTTP/1.1 connections. A progress line goes to\n"
    "stderr once a second; at the end: deliveries/s, latency percentiles (HDR-style histogram),\n"
    "the status histogram, error classes, and CPU seconds used.\n"
    "\n"
    "  --profile P         humanconnection humiris humcli humanos aksita standard svix stripe "
    "github\n"
    "  --url URL[,URL...]  receivers (http(s)://HOST[:port]/path); repeatable; each gets an even\n"
    "                      share of the connections, and a slow one does not pace the rest\n"
    "  --secret S          the signing secret (see hookring sign)\n"
    "  --count N           deliveries to make in all\n"
    "  --duration D        or: how long to send (e.g. 10s, 500ms, 2m)\n"
    "  --concurrency C     deliveries in flight at once = connections (default 64)\n"
    "  --rate R            open loop: R deliveries per second in all (latency from intended time)\n"
    "  --payload-size B    bytes of each event's data (default 1024)\n"
    "  --workers W         threads, each with its own ring (default: one per core)\n"
    "  --timeout MS        per-delivery deadline (default: the profile's)\n"
    "  --allow-net CIDR    allow a refused range (loopback, private, ...); repeatable\n"
    "  --ca-file PEM       https: trust this CA too (the system's CAs are always trusted)\n"
    "  --insecure          https without verifying certificates: test receivers only\n"
    "  --new-connections   a new connection per delivery (TLS sessions are resumed)\n"
    "  --resolve H:ADDR    answer host H with ADDR instead of asking DNS (repeatable)\n"
    "  --dns-server S      ask this resolver (IP[:PORT], comma-separated)\n"
    "  --json              print one JSON object instead of the text report\n"
    "  --quiet             no progress line\n"
    "  -h, --help          this text\n"
    "\n"
    "exit status: 0 when the run completed (even with failed deliveries); 1 when nothing could be\n"
    "sent; 2 bad usage.\n";

struct blast_cfg {
    const struct profile *profile;
    struct signer signer;
    struct url urls[BLAST_MAX_URLS];
    size_t nurls;
    uint64_t count;      /* 0: duration-bound */
    int64_t duration_ns; /* 0: count-bound */
    uint32_t concurrency;
    double rate; /* 0: closed loop */
    size_t payload;
    uint32_t workers;
    uint32_t timeout_ms;
    struct cmd_net net; /* --allow-net, --ca-file, --insecure, --resolve, --dns-server */
    bool json;
    bool quiet;
    bool new_conns;
    bool https;
    bool names; /* some URL names a host: workers need a resolver */
    /* data template: a JSON value of payload bytes with a 16-hex-digit slot patched per event */
    struct buf data;
    size_t seq_off[2];
    size_t nseq;
};

struct worker;

struct vuser {
    struct attempt a;
    struct worker *w;
    struct event ev;
    struct buf body;
    uint8_t *data;
    int64_t intended_ns;
    struct vuser *next_free;
};

struct worker {
    pthread_t thread;
    uint32_t index;
    const struct blast_cfg *cfg;
    struct netstack ns; /* its ring, TLS context, resolver and client */
    struct endpoint eps[BLAST_MAX_URLS];
    const struct url *urls[BLAST_MAX_URLS]; /* this worker's share of the receivers */
    size_t neps;
    struct vuser *users;
    uint32_t nusers;
    struct vuser *free_users;
    uint32_t rr; /* next endpoint, round robin */
    /* open loop */
    double rate;
    uint64_t issued;
    struct ring_timer pacer;
    /* closing */
    struct ring_timer end_timer;
    bool stopping;
    int64_t start_ns;
    int64_t end_ns;
    uint64_t seq;
    uint64_t seq_base;
    int err;
    char errmsg[256];
    /* results */
    struct hist lat;
    uint64_t status[STATUS_CODES];
    uint64_t results[ATTEMPT_RESULT_COUNT];
    _Atomic bool finished;
    _Atomic uint64_t sent;
    _Atomic uint64_t done_ok;
    _Atomic uint64_t done_failed;
};

static _Atomic int64_t g_budget; /* deliveries left to start, count mode */
static _Atomic int g_ready;

/* ---- events ------------------------------------------------------------------------------- */

static void put_hex16(uint8_t *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        p[i] = (uint8_t)digits[v & 15];
        v >>= 4;
    }
}

/* build_template makes data: a JSON object of exactly cfg->payload bytes (or the smallest the
 * profile's required members allow) that carries a 16-hex slot for per-event uniqueness. */
static int build_template(struct blast_cfg *cfg, char *err, size_t errlen)
{
    struct buf *d = &cfg->data;
    buf_init(d, cfg->payload + 4096);
    int rc;
    const char *slot = "0000000000000000";
    switch (cfg->profile->pid) {
    case PROFILE_HUMCLI:
        rc = buf_printf(d,
                        "{\"task_id\":\"task_%s\",\"status\":\"SUBMITTED\","
                        "\"previous_status\":\"IN_PROGRESS\",\"pad\":\"",
                        slot);
        cfg->seq_off[0] = strlen("{\"task_id\":\"task_");
        break;
    case PROFILE_HUMANOS:
        rc = buf_printf(d,
                        "{\"requestId\":\"%s\",\"issuerDid\":\"did:via:org-blast\",\"user\":"
                        "{\"contact\":\"+1234567890\",\"did\":\"did:via:user-blast\"},"
                        "\"decisionDate\":\"2026-01-01T00:00:00.000Z\",\"pad\":\"",
                        slot);
        cfg->seq_off[0] = strlen("{\"requestId\":\"");
        break;
    case PROFILE_AKSITA:
        rc = buf_printf(d,
                        "{\"response\":[\"hello\"],\"message_id\":\"%s\",\"source\":"
                        "\"human_agent\",\"pad\":\"",
                        slot);
        cfg->seq_off[0] = strlen("{\"response\":[\"hello\"],\"message_id\":\"");
        break;
    default:
        rc = buf_printf(d, "{\"seq\":\"%s\",\"pad\":\"", slot);
        cfg->seq_off[0] = strlen("{\"seq\":\"");
        break;
    }
    cfg->nseq = 1;
    while (!rc && d->len + 2 < cfg->payload) {
        rc = buf_putc(d, 'x');
    }
    rc = rc ? rc : buf_puts(d, "\"}");
    if (rc) {
        snprintf(err, errlen, "--payload-size is too large");
        return rc;
    }
    return 0;
}

/* next_event makes u's next event: a new id, the data slot patched, the body rebuilt. */
static int next_event(struct worker *w, struct vuser *u)
{
    const struct blast_cfg *cfg = w->cfg;
    uint64_t seq = w->seq_base + w->seq++;
    memcpy(u->ev.id, "evt_", 4);
    put_hex16((uint8_t *)u->ev.id + 4, seq);
    u->ev.id[20] = '\0';
    u->ev.id_len = 20;
    for (size_t i = 0; i < cfg->nseq; i++) {
        put_hex16(u->data + cfg->seq_off[i], seq);
    }
    u->body.len = 0;
    char err[EVENT_ERR_MAX];
    if (cfg->profile->build_body(&cfg->signer, &u->ev, &u->body, err, sizeof(err))) {
        snprintf(w->errmsg, sizeof(w->errmsg), "building the body: %s", err);
        return -EINVAL;
    }
    u->a.body = buf_slice(&u->body);
    u->a.id = slice_of(u->ev.id, u->ev.id_len);
    return 0;
}

/* ---- the send loop ------------------------------------------------------------------------ */

static bool take_budget(struct worker *w)
{
    if (w->stopping) {
        return false;
    }
    if (w->cfg->count) {
        return atomic_fetch_sub_explicit(&g_budget, 1, memory_order_relaxed) > 0;
    }
    return true;
}

/* pick_endpoint takes the receivers in turn, skipping those whose connections are all busy:
 * a slow receiver keeps its share of connections and does not pace the others. */
static struct endpoint *pick_endpoint(struct worker *w)
{
    for (size_t n = 0; n < w->neps; n++) {
        struct endpoint *ep = &w->eps[w->rr++ % w->neps];
        if (ep->inflight + ep->queued < ep->max_inflight) {
            return ep;
        }
    }
    return &w->eps[w->rr++ % w->neps];
}

static void launch(struct worker *w, struct vuser *u, int64_t intended_ns)
{
    u->intended_ns = intended_ns;
    u->a.ep = pick_endpoint(w);
    if (next_event(w, u)) {
        w->err = -EINVAL;
        w->stopping = true;
        u->next_free = w->free_users;
        w->free_users = u;
        return;
    }
    atomic_fetch_add_explicit(&w->sent, 1, memory_order_relaxed);
    client_submit(&u->a);
}

/* pace_due launches every open-loop delivery whose intended time has come, while a sender is
 * free; the ones still due wait for the next free sender with their intended time kept. */
static void pace_due(struct worker *w)
{
    int64_t now = ring_clock_ns();
    while (w->free_users) {
        int64_t intended = w->start_ns + (int64_t)((double)w->issued * 1e9 / w->rate);
        if (intended > now || !take_budget(w)) {
            break;
        }
        struct vuser *u = w->free_users;
        w->free_users = u->next_free;
        w->issued++;
        launch(w, u, intended);
    }
}

static void user_done(struct attempt *a)
{
    struct vuser *u = container_of(a, struct vuser, a);
    struct worker *w = u->w;
    int64_t from = w->rate > 0 ? u->intended_ns : a->submit_ns;
    int64_t us = (a->done_ns - from) / 1000;
    hist_add(&w->lat, us > 0 ? (uint64_t)us : 0);
    w->results[a->result]++;
    if (a->status > 0 && a->status < STATUS_CODES) {
        w->status[a->status]++;
    }
    if (a->result == ATTEMPT_OK) {
        atomic_fetch_add_explicit(&w->done_ok, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&w->done_failed, 1, memory_order_relaxed);
    }
    if (w->rate > 0) {
        u->next_free = w->free_users;
        w->free_users = u;
        pace_due(w);
    } else if (take_budget(w)) {
        launch(w, u, 0);
    } else {
        u->next_free = w->free_users;
        w->free_users = u;
    }
}

static void pacer_fire(struct ring *r, struct ring_timer *t)
{
    struct worker *w = container_of(t, struct worker, pacer);
    pace_due(w);
    if (!w->stopping) {
        /* the next intended time, at most 1 ms away */
        int64_t next = w->start_ns + (int64_t)((double)w->issued * 1e9 / w->rate);
        int64_t now = ring_now_ns(r);
        ring_timer_arm(r, t, next > now + 1000000 ? now + 1000000 : (next > now ? next : now));
    }
}

static void end_fire(struct ring *r, struct ring_timer *t)
{
    struct worker *w = container_of(t, struct worker, end_timer);
    w->stopping = true;
    if (ring_timer_armed(&w->pacer)) {
        ring_timer_cancel(r, &w->pacer);
    }
}

static int worker_setup(struct worker *w)
{
    const struct blast_cfg *cfg = w->cfg;
    struct netstack_opts no = {.ring = {.entries = 4096, .max_timers = w->nusers + 32},
                               .tls = cfg->https ? &cfg->net.tls : NULL,
                               .dns = cfg->names ? &cfg->net.dns.o : NULL,
                               .client = {.max_conns = w->nusers + (uint32_t)w->neps,
                                          .max_inflight = w->nusers,
                                          .rbuf_size = 2048,
                                          .max_response_body = 1u << 20,
                                          .guard = &cfg->net.guard}};
    int rc = netstack_init(&w->ns, &no, w->errmsg, sizeof(w->errmsg));
    if (rc) {
        return rc;
    }
    uint32_t per_ep = (w->nusers + (uint32_t)w->neps - 1) / (uint32_t)w->neps;
    for (size_t i = 0; i < w->neps; i++) {
        rc = endpoint_init(&w->eps[i], &w->ns.cl, w->urls[i], &cfg->signer, cfg->timeout_ms, per_ep,
                           per_ep, w->errmsg, sizeof(w->errmsg));
        if (rc) {
            return rc;
        }
        /* a load generator keeps the concurrency it was asked for */
        endpoint_set_adaptive(&w->eps[i], false);
        if (cfg->new_conns && endpoint_set_keep_alive(&w->eps[i], false)) {
            return -ENOMEM;
        }
    }
    w->users = calloc(w->nusers, sizeof(*w->users));
    if (!w->users) {
        return -ENOMEM;
    }
    for (uint32_t i = w->nusers; i-- > 0;) {
        struct vuser *u = &w->users[i];
        u->w = w;
        u->a.done = user_done;
        u->a.event = &u->ev;
        buf_init(&u->body, cfg->payload + 65536);
        /* one allocation that the envelope fits in (humanos' encrypted body grows it once) */
        if (buf_reserve(&u->body, cfg->data.len + 512)) {
            return -ENOMEM;
        }
        u->data = malloc(cfg->data.len);
        if (!u->data) {
            return -ENOMEM;
        }
        memcpy(u->data, cfg->data.p, cfg->data.len);
        memcpy(u->ev.type, "blast.test", 11);
        u->ev.type_len = 10;
        u->ev.data = slice_of(u->data, cfg->data.len);
        u->ev.created_ms = cmd_now_ms();
        u->ev.created_at_len = event_format_time(u->ev.created_at, u->ev.created_ms, false);
        u->next_free = w->free_users;
        w->free_users = u;
    }
    hist_init(&w->lat);
    ring_timer_init(&w->pacer, pacer_fire);
    ring_timer_init(&w->end_timer, end_fire);
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct blast_cfg *cfg = w->cfg;
    /* The ring is created on this thread: it is SINGLE_ISSUER. */
    w->err = worker_setup(w);
    atomic_fetch_add(&g_ready, 1);
    while (atomic_load(&g_ready) < (int)cfg->workers) {
        sched_yield();
    }
    if (w->err) {
        atomic_store(&w->finished, true);
        return NULL;
    }
    w->start_ns = ring_clock_ns();
    if (cfg->duration_ns) {
        w->end_ns = w->start_ns + cfg->duration_ns;
        ring_timer_arm(&w->ns.ring, &w->end_timer, w->end_ns);
    }
    if (w->rate > 0) {
        pace_due(w);
        ring_timer_arm(&w->ns.ring, &w->pacer, ring_clock_ns() + 1000000);
    } else {
        while (w->free_users && take_budget(w)) {
            struct vuser *u = w->free_users;
            w->free_users = u->next_free;
            launch(w, u, 0);
        }
    }
    for (;;) {
        client_flush(&w->ns.cl);
        bool idle = !client_busy(&w->ns.cl);
        if (idle && (w->stopping || (cfg->count && atomic_load(&g_budget) <= 0))) {
            break;
        }
        /* Under load, gather a quarter of what is in flight per wake-up (within 200 us). */
        ring_set_batch(&w->ns.ring, w->ns.cl.inflight / 4, 200000);
        int rc = ring_run_once(&w->ns.ring, -1);
        if (rc < 0) {
            w->err = rc;
            snprintf(w->errmsg, sizeof(w->errmsg), "io_uring: %s", strerror(-rc));
            break;
        }
    }
    w->end_ns = ring_clock_ns();
    atomic_store(&w->finished, true);
    return NULL;
}

static void worker_cleanup(struct worker *w)
{
    if (w->users) {
        for (uint32_t i = 0; i < w->nusers; i++) {
            buf_free(&w->users[i].body);
            free(w->users[i].data);
        }
        free(w->users);
    }
    for (size_t i = 0; i < w->neps; i++) {
        endpoint_cleanup(&w->eps[i]);
    }
    netstack_cleanup(&w->ns);
}

/* ---- options and report ------------------------------------------------------------------- */

static bool parse_duration(const char *s, int64_t *ns)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0) || !isfinite(v)) {
        return false;
    }
    double mul;
    if (strcmp(end, "ms") == 0) {
        mul = 1e6;
    } else if (strcmp(end, "s") == 0 || *end == '\0') {
        mul = 1e9;
    } else if (strcmp(end, "m") == 0) {
        mul = 60e9;
    } else if (strcmp(end, "h") == 0) {
        mul = 3600e9;
    } else {
        return false;
    }
    if (v * mul > 7 * 86400e9) {
        return false;
    }
    *ns = (int64_t)(v * mul);
    return true;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long max_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

struct totals {
    struct hist lat;
    uint64_t status[STATUS_CODES];
    uint64_t results[ATTEMPT_RESULT_COUNT];
    uint64_t deliveries, ok, failed, connects, reuses, handshakes, resumed;
    double seconds, cpu;
    long rss_kib;
};

static void report_text(const struct blast_cfg *cfg, const struct totals *t)
{
    printf("hookring blast: %s -> %s%s, %u worker%s, concurrency %u, %s\n", cfg->profile->name,
           cfg->urls[0].authority, cfg->nurls > 1 ? " (+ more)" : "", cfg->workers,
           cfg->workers == 1 ? "" : "s", cfg->concurrency,
           cfg->rate > 0 ? "open loop" : "closed loop");
    printf("  deliveries   %llu in %.2f s = %.0f/s\n", (unsigned long long)t->deliveries,
           t->seconds, t->seconds > 0 ? (double)t->deliveries / t->seconds : 0.0);
    printf("  ok           %llu   failed %llu\n", (unsigned long long)t->ok,
           (unsigned long long)t->failed);
    printf("  latency us   p50 %llu  p90 %llu  p99 %llu  p99.9 %llu  max %llu%s\n",
           (unsigned long long)hist_quantile(&t->lat, 0.5),
           (unsigned long long)hist_quantile(&t->lat, 0.9),
           (unsigned long long)hist_quantile(&t->lat, 0.99),
           (unsigned long long)hist_quantile(&t->lat, 0.999), (unsigned long long)t->lat.max,
           cfg->rate > 0 ? " (from intended send time)" : "");
    printf("  status      ");
    for (int s = 0; s < STATUS_CODES; s++) {
        if (t->status[s]) {
            printf(" %d: %llu", s, (unsigned long long)t->status[s]);
        }
    }
    printf("\n  errors      ");
    bool any = false;
    for (int r = ATTEMPT_STATUS + 1; r < ATTEMPT_RESULT_COUNT; r++) {
        if (t->results[r]) {
            printf(" %s: %llu", attempt_result_name((enum attempt_result)r),
                   (unsigned long long)t->results[r]);
            any = true;
        }
    }
    printf("%s\n", any ? "" : " none");
    printf("  cpu          %.2f s = %.2f us per delivery\n", t->cpu,
           t->deliveries ? t->cpu * 1e6 / (double)t->deliveries : 0.0);
    printf("  connections  %llu opened, %llu reuses; peak RSS %ld KiB\n",
           (unsigned long long)t->connects, (unsigned long long)t->reuses, t->rss_kib);
    if (t->handshakes) {
        printf("  tls          %llu handshakes, %llu resumed\n", (unsigned long long)t->handshakes,
               (unsigned long long)t->resumed);
    }
}

static void report_json(const struct blast_cfg *cfg, const struct totals *t)
{
    printf("{\"profile\":\"%s\",\"workers\":%u,\"concurrency\":%u,\"open_loop\":%s,"
           "\"deliveries\":%llu,\"ok\":%llu,\"failed\":%llu,\"seconds\":%.6f,\"rate\":%.1f,"
           "\"latency_us\":{\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,\"p999\":%llu,\"max\":%llu},"
           "\"status\":{",
           cfg->profile->name, cfg->workers, cfg->concurrency, cfg->rate > 0 ? "true" : "false",
           (unsigned long long)t->deliveries, (unsigned long long)t->ok,
           (unsigned long long)t->failed, t->seconds,
           t->seconds > 0 ? (double)t->deliveries / t->seconds : 0.0,
           (unsigned long long)hist_quantile(&t->lat, 0.5),
           (unsigned long long)hist_quantile(&t->lat, 0.9),
           (unsigned long long)hist_quantile(&t->lat, 0.99),
           (unsigned long long)hist_quantile(&t->lat, 0.999), (unsigned long long)t->lat.max);
    bool first = true;
    for (int s = 0; s < STATUS_CODES; s++) {
        if (t->status[s]) {
            printf("%s\"%d\":%llu", first ? "" : ",", s, (unsigned long long)t->status[s]);
            first = false;
        }
    }
    printf("},\"errors\":{");
    first = true;
    for (int r = ATTEMPT_STATUS + 1; r < ATTEMPT_RESULT_COUNT; r++) {
        if (t->results[r]) {
            printf("%s\"%s\":%llu", first ? "" : ",", attempt_result_name((enum attempt_result)r),
                   (unsigned long long)t->results[r]);
            first = false;
        }
    }
    printf("},\"cpu_seconds\":%.4f,\"cpu_us_per_delivery\":%.3f,\"connections\":%llu,"
           "\"reuses\":%llu,\"tls_handshakes\":%llu,\"tls_resumed\":%llu,\"max_rss_kib\":%ld}\n",
           t->cpu, t->deliveries ? t->cpu * 1e6 / (double)t->deliveries : 0.0,
           (unsigned long long)t->connects, (unsigned long long)t->reuses,
           (unsigned long long)t->handshakes, (unsigned long long)t->resumed, t->rss_kib);
}

static int add_urls(struct blast_cfg *cfg, const char *list)
{
    char tmp[URL_TARGET_MAX + URL_HOST_MAX + 32];
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof(tmp)) {
            return cmd_usage_error("blast", "--url: an empty or overlong URL in '%s'", list);
        }
        if (cfg->nurls == BLAST_MAX_URLS) {
            return cmd_usage_error("blast", "at most %d URLs", BLAST_MAX_URLS);
        }
        memcpy(tmp, p, n);
        tmp[n] = '\0';
        char err[160];
        if (url_parse(&cfg->urls[cfg->nurls], tmp, err, sizeof(err))) {
            return cmd_usage_error("blast", "%s", err);
        }
        cfg->nurls++;
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    return 0;
}

int cmd_blast(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"count", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'},
        {"concurrency", required_argument, NULL, 'c'},
        {"rate", required_argument, NULL, 'r'},
        {"payload-size", required_argument, NULL, 'b'},
        {"workers", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'},
        {"new-connections", no_argument, NULL, 'N'},
        {"json", no_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        CMD_NET_LONGOPTS,
        CMD_SIG_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct blast_cfg cfg;
    memset(&cfg, 0, sizeof(cfg));
    cmd_net_init(&cfg.net);
    cfg.concurrency = 64;
    cfg.payload = 1024;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg.workers = ncpu > 0 ? (uint32_t)ncpu : 1;
    uint64_t v;
    int c, rc;
    static struct cmd_sig sg;
    cmd_sig_init(&sg);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            rc = add_urls(&cfg, optarg);
            if (rc) {
                return rc;
            }
            break;
        case 'n':
            if (!cmd_parse_uint(optarg, &cfg.count) || cfg.count == 0) {
                return cmd_usage_error("blast", "--count must be a positive integer");
            }
            break;
        case 'd':
            if (!parse_duration(optarg, &cfg.duration_ns)) {
                return cmd_usage_error("blast",
                                       "--duration wants e.g. 10s, 500ms, 2m (up to 7 "
                                       "days), not '%s'",
                                       optarg);
            }
            break;
        case 'c':
            if (!cmd_parse_uint(optarg, &v) || v == 0 || v > 1000000) {
                return cmd_usage_error("blast", "--concurrency must be 1-1000000");
            }
            cfg.concurrency = (uint32_t)v;
            break;
        case 'r': {
            char *end;
            cfg.rate = strtod(optarg, &end);
            if (*end || !(cfg.rate > 0) || cfg.rate > 1e8) {
                return cmd_usage_error("blast", "--rate must be a positive number per second");
            }
            break;
        }
        case 'b':
            if (!cmd_parse_uint(optarg, &v) || v > (16u << 20)) {
                return cmd_usage_error("blast", "--payload-size must be 0-16777216 bytes");
            }
            cfg.payload = (size_t)v;
            break;
        case 'w':
            if (!cmd_parse_uint(optarg, &v) || v == 0 || v > BLAST_MAX_WORKERS) {
                return cmd_usage_error("blast", "--workers must be 1-%d", BLAST_MAX_WORKERS);
            }
            cfg.workers = (uint32_t)v;
            break;
        case 't':
            if (!cmd_parse_uint(optarg, &v) || v == 0 || v > 3600000) {
                return cmd_usage_error("blast", "--timeout must be 1-3600000 ms");
            }
            cfg.timeout_ms = (uint32_t)v;
            break;
        case 'N':
            cfg.new_conns = true;
            break;
        case 'j':
            cfg.json = true;
            break;
        case 'q':
            cfg.quiet = true;
            break;
        case 'h':
            fputs(blast_help, stdout);
            return EXIT_OK;
        default: {
            int e = cmd_sig_option("blast", &sg, c, optarg);
            if (e < 0) {
                e = cmd_net_option("blast", &cfg.net, c, optarg);
            }
            if (e < 0) {
                return cmd_bad_option("blast", argc, argv, c);
            }
            if (e) {
                return e;
            }
            break;
        }
        }
    }
    if (optind != argc) {
        return cmd_usage_error("blast", "unexpected argument '%s'", argv[optind]);
    }
    cfg.profile = cmd_profile("blast", sg.profile);
    if (!cfg.profile) {
        return EXIT_USAGE;
    }
    if (cfg.nurls == 0) {
        return cmd_usage_error("blast", "--url is required");
    }
    if (!cfg.count == !cfg.duration_ns) {
        return cmd_usage_error("blast", "give exactly one of --count and --duration");
    }
    if (cfg.workers > cfg.concurrency) {
        cfg.workers = cfg.concurrency;
    }
    char err[EVENT_ERR_MAX];
    for (size_t i = 0; i < cfg.nurls; i++) {
        const struct url *u = &cfg.urls[i];
        enum addr_class cls;
        cfg.https |= u->https;
        if (!u->host_is_ip) {
            cfg.names = true;
            continue; /* its addresses are checked when resolved */
        }
        if (!netguard_permits(&cfg.net.guard, (const struct sockaddr *)&u->addr, &cls)) {
            return cmd_usage_error("blast",
                                   "%s is a %s address; deliveries there are refused "
                                   "unless --allow-net allows it",
                                   u->host, addr_class_name(cls));
        }
    }
    if (signer_init(&cfg.signer, cfg.profile, sg.secrets, sg.nsecrets, slice_cstr(sg.enc),
                    slice_cstr(sg.salt), err, sizeof(err))) {
        return cmd_usage_error("blast", "%s", err);
    }
    if (build_template(&cfg, err, sizeof(err))) {
        return cmd_usage_error("blast", "%s", err);
    }
    if (cfg.https) {
        /* check the CA file once, here, rather than in every worker */
        struct tls_ctx probe;
        if (tls_ctx_init(&probe, &cfg.net.tls, err, sizeof(err))) {
            return cmd_usage_error("blast", "%s", err);
        }
        tls_ctx_cleanup(&probe);
        if (cfg.net.tls.insecure) {
            fprintf(stderr, "hookring blast: WARNING: --insecure: receivers' certificates are "
                            "NOT verified\n");
        }
    }
    atomic_store(&g_budget, (int64_t)cfg.count);
    atomic_store(&g_ready, 0);
    struct worker *ws = calloc(cfg.workers, sizeof(*ws));
    if (!ws) {
        fprintf(stderr, "hookring blast: out of memory\n");
        return EXIT_FAIL;
    }
    double cpu0 = cpu_seconds();
    int64_t t0 = ring_clock_ns();
    /* With at least as many receivers as workers (and a sender for each), every receiver
     * belongs to one worker: its connections, pool and counters are that worker's alone. */
    bool shard = cfg.nurls >= cfg.workers && cfg.concurrency >= cfg.nurls && cfg.workers > 1;
    for (uint32_t i = 0; i < cfg.workers; i++) {
        struct worker *w = &ws[i];
        w->index = i;
        w->cfg = &cfg;
        if (shard) {
            /* receivers sharded: worker i owns urls i, i+W, ...; its senders in proportion */
            size_t before = 0;
            for (size_t j = 0; j < cfg.nurls; j++) {
                if (j % cfg.workers == i) {
                    w->urls[w->neps++] = &cfg.urls[j];
                } else if (j % cfg.workers < i) {
                    before++;
                }
            }
            uint64_t lo = (uint64_t)cfg.concurrency * before / cfg.nurls;
            uint64_t hi = (uint64_t)cfg.concurrency * (before + w->neps) / cfg.nurls;
            w->nusers = (uint32_t)(hi - lo);
        } else {
            for (size_t j = 0; j < cfg.nurls; j++) {
                w->urls[w->neps++] = &cfg.urls[j];
            }
            w->nusers = cfg.concurrency / cfg.workers + (i < cfg.concurrency % cfg.workers);
        }
        w->rate = cfg.rate > 0 ? cfg.rate / cfg.workers : 0;
        w->seq_base = ((uint64_t)i << 48) | ((uint64_t)cmd_now_ms() & 0xffffffffff) << 8;
        if (pthread_create(&w->thread, NULL, worker_main, w)) {
            fprintf(stderr, "hookring blast: cannot start worker thread\n");
            return EXIT_FAIL;
        }
    }
    /* Progress once a second while the workers run. */
    uint64_t last = 0;
    int64_t last_t = t0;
    for (;;) {
        struct timespec ts = {0, 100 * 1000000};
        bool running = false;
        for (int k = 0; k < 10; k++) {
            nanosleep(&ts, NULL);
            running = false;
            for (uint32_t i = 0; i < cfg.workers; i++) {
                running |= !atomic_load(&ws[i].finished);
            }
            if (!running) {
                break;
            }
        }
        if (!running) {
            break;
        }
        if (cfg.quiet) {
            continue;
        }
        uint64_t sent = 0, ok = 0, failed = 0;
        for (uint32_t i = 0; i < cfg.workers; i++) {
            sent += atomic_load_explicit(&ws[i].sent, memory_order_relaxed);
            ok += atomic_load_explicit(&ws[i].done_ok, memory_order_relaxed);
            failed += atomic_load_explicit(&ws[i].done_failed, memory_order_relaxed);
        }
        int64_t now = ring_clock_ns();
        fprintf(stderr, "\r[%5.1fs] sent %llu  ok %llu  failed %llu  %.0f/s   ",
                (double)(now - t0) / 1e9, (unsigned long long)sent, (unsigned long long)ok,
                (unsigned long long)failed,
                (double)(ok + failed - last) * 1e9 / (double)(now - last_t));
        last = ok + failed;
        last_t = now;
    }
    int ret = EXIT_OK;
    struct totals *t = calloc(1, sizeof(*t));
    hist_init(&t->lat);
    int64_t start = INT64_MAX, end = 0;
    for (uint32_t i = 0; i < cfg.workers; i++) {
        struct worker *w = &ws[i];
        pthread_join(w->thread, NULL);
        if (w->err) {
            fprintf(stderr, "%shookring blast: worker %u: %s\n", cfg.quiet ? "" : "\n", i,
                    w->errmsg);
            ret = EXIT_FAIL;
        }
        hist_merge(&t->lat, &w->lat);
        for (int s = 0; s < STATUS_CODES; s++) {
            t->status[s] += w->status[s];
        }
        for (int r = 0; r < ATTEMPT_RESULT_COUNT; r++) {
            t->results[r] += w->results[r];
        }
        t->ok += w->done_ok;
        t->failed += w->done_failed;
        for (size_t e = 0; e < w->neps; e++) {
            t->connects += w->eps[e].stat_connects;
            t->reuses += w->eps[e].stat_reuses;
            t->handshakes += w->eps[e].stat_handshakes;
            t->resumed += w->eps[e].stat_resumed;
        }
        if (w->start_ns && w->start_ns < start) {
            start = w->start_ns;
        }
        if (w->end_ns > end) {
            end = w->end_ns;
        }
    }
    if (!cfg.quiet) {
        fprintf(stderr, "\n");
    }
    t->deliveries = t->ok + t->failed;
    t->seconds = end > start ? (double)(end - start) / 1e9 : 0;
    t->cpu = cpu_seconds() - cpu0;
    t->rss_kib = max_rss_kib();
    if (ret == EXIT_OK || t->deliveries) {
        if (cfg.json) {
            report_json(&cfg, t);
        } else {
            report_text(&cfg, t);
        }
    }
    if (t->deliveries == 0) {
        ret = EXIT_FAIL;
    }
    for (uint32_t i = 0; i < cfg.workers; i++) {
        worker_cleanup(&ws[i]);
    }
    free(t);
    free(ws);
    buf_free(&cfg.data);
    signer_wipe(&cfg.signer);
    return ret;
}
