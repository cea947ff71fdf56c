/* hstats.c: merging per-thread counters, the latency histogram, the stats JSON. */
#include "hstats.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "ring.h"

/* ---- histogram: 8 linear buckets, then 8 per power of two (12.5 % resolution) ----------- */

static unsigned lat_bucket(uint64_t us)
{
    if (us < 8) {
        return (unsigned)us;
    }
    unsigned e = 63 - (unsigned)__builtin_clzll(us);
    unsigned idx = 8 + (e - 3) * 8 + (unsigned)((us >> (e - 3)) & 7);
    return idx < HSTATS_LAT_BUCKETS ? idx : HSTATS_LAT_BUCKETS - 1;
}

static uint64_t lat_upper(unsigned idx)
{
    if (idx < 8) {
        return idx;
    }
    unsigned k = idx - 8, e = k / 8 + 3, sub = k % 8;
    uint64_t low = (uint64_t)(8 + sub) << (e - 3);
    return low + ((uint64_t)1 << (e - 3)) - 1;
}

void hstats_latency(struct hstats *s, int64_t ns)
{
    uint64_t us = ns > 0 ? (uint64_t)ns / 1000 : 0;
    hstats_inc(&s->lat[lat_bucket(us)]);
    hstats_add(&s->lat_sum_us, us);
}

uint64_t hstats_percentile_us(const struct hstats *s, double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < HSTATS_LAT_BUCKETS; i++) {
        total += s->lat[i];
    }
    if (total == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)(q * (double)total);
    if (want >= total) {
        want = total - 1;
    }
    uint64_t seen = 0;
    for (unsigned i = 0; i < HSTATS_LAT_BUCKETS; i++) {
        seen += s->lat[i];
        if (seen > want) {
            return lat_upper(i);
        }
    }
    return lat_upper(HSTATS_LAT_BUCKETS - 1);
}

/* ---- the set ---------------------------------------------------------------------------- */

void hstats_set_init(struct hstats_set *set, struct hstats **blocks, size_t n,
                     const struct hconfig *cfg, struct hids *ids)
{
    memset(set, 0, sizeof(*set));
    set->blocks = blocks;
    set->nblocks = n;
    set->cfg = cfg;
    set->ids = ids;
    pthread_mutex_init(&set->lock, NULL);
    set->started_ns = ring_clock_ns();
    set->reset_ns = set->started_ns;
    set->reset_wall_us = 0;
}

/* the counts: every word before last_verified_us */
#define NWORDS (offsetof(struct hstats, last_verified_us) / sizeof(uint64_t))

static void sum_blocks(struct hstats_set *set, struct hstats *out)
{
    uint64_t *o = (uint64_t *)out;
    memset(out, 0, sizeof(*out));
    for (size_t b = 0; b < set->nblocks; b++) {
        const uint64_t *w = (const uint64_t *)set->blocks[b];
        for (size_t i = 0; i < NWORDS; i++) {
            o[i] += __atomic_load_n(&w[i], __ATOMIC_RELAXED);
        }
    }
}

void hstats_snapshot(struct hstats_set *set, struct hstats *out)
{
    sum_blocks(set, out);
    int64_t last = 0;
    for (size_t b = 0; b < set->nblocks; b++) {
        int64_t t = __atomic_load_n(&set->blocks[b]->last_verified_us, __ATOMIC_RELAXED);
        last = t > last ? t : last;
    }
    uint64_t *o = (uint64_t *)out;
    pthread_mutex_lock(&set->lock);
    const uint64_t *base = (const uint64_t *)&set->base;
    for (size_t i = 0; i < NWORDS; i++) {
        o[i] -= base[i];
    }
    out->last_verified_us = last > set->reset_wall_us ? last : 0;
    pthread_mutex_unlock(&set->lock);
}

void hstats_reset(struct hstats_set *set)
{
    struct hstats now;
    pthread_mutex_lock(&set->lock);
    sum_blocks(set, &now);
    set->base = now;
    set->reset_ns = ring_clock_ns();
    set->reset_wall_us = unix_now_us();
    pthread_mutex_unlock(&set->lock);
    hids_reset(set->ids);
}

/* ---- JSON ------------------------------------------------------------------------------- */

struct jw {
    char *p;
    size_t len, cap;
    bool full;
};

static void jw_printf(struct jw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void jw_printf(struct jw *w, const char *fmt, ...)
{
    if (w->full) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(w->p + w->len, w->cap - w->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= w->cap - w->len) {
        w->full = true;
        return;
    }
    w->len += (size_t)n;
}

static void jw_counts(struct jw *w, const uint64_t *c)
{
    jw_printf(w, "{\"requests\":%llu,\"verified\":%llu,\"bad_signature\":%llu}",
              (unsigned long long)c[HSR_REQUESTS], (unsigned long long)c[HSR_VERIFIED],
              (unsigned long long)c[HSR_BAD_SIGNATURE]);
}

#define U(x) ((unsigned long long)(x))

size_t hstats_json(struct hstats_set *set, char *out, size_t cap)
{
    struct hstats s;
    hstats_snapshot(set, &s);
    struct hids_totals t;
    hids_totals(set->ids, &t);
    int64_t now = ring_clock_ns();
    struct jw w = {.p = out, .cap = cap};

    jw_printf(&w,
              "{\"requests\":%llu,\"verified\":%llu,\"unverified\":%llu,\"bad_signature\":%llu,"
              "\"unique\":%llu,\"duplicates\":%llu,\"ids\":%llu,\"ids_dropped\":%llu,"
              "\"no_id\":%llu,",
              U(s.c[HS_REQUESTS]), U(s.c[HS_VERIFIED]), U(s.c[HS_UNVERIFIED]),
              U(s.c[HS_BAD_SIGNATURE]), U(t.unique), U(t.duplicates), U(t.ids), U(t.dropped),
              U(s.c[HS_NO_ID]));
    jw_printf(&w,
              "\"errors\":{\"bad_request\":%llu,\"head_too_large\":%llu,\"body_too_large\":%llu,"
              "\"not_implemented\":%llu},",
              U(s.c[HS_BAD_REQUEST]), U(s.c[HS_HEAD_TOO_LARGE]), U(s.c[HS_BODY_TOO_LARGE]),
              U(s.c[HS_NOT_IMPLEMENTED]));
    jw_printf(&w,
              "\"connections\":{\"accepted\":%llu,\"rejected\":%llu,\"closed\":%llu},"
              "\"control_requests\":%llu,\"threads\":%zu,\"uptime_ms\":%lld,"
              "\"since_reset_ms\":%lld,\"last_verified_us\":%lld,",
              U(s.c[HS_CONN_ACCEPTED]), U(s.c[HS_CONN_REJECTED]), U(s.c[HS_CONN_CLOSED]),
              U(s.c[HS_CONTROL]), set->nblocks, (long long)((now - set->started_ns) / 1000000),
              (long long)((now - set->reset_ns) / 1000000), (long long)s.last_verified_us);
    jw_printf(&w, "\"tls\":{\"handshakes\":%llu,\"resumed\":%llu,\"failed\":%llu},",
              U(s.c[HS_TLS_HANDSHAKES]), U(s.c[HS_TLS_RESUMED]), U(s.c[HS_TLS_FAILED]));

    jw_printf(&w, "\"status\":{");
    bool first = true;
    for (int i = 0; i < HSTATS_STATUS_MAX; i++) {
        if (s.status[i]) {
            jw_printf(&w, "%s\"%d\":%llu", first ? "" : ",", i, U(s.status[i]));
            first = false;
        }
    }
    jw_printf(&w, "},\"routes\":{");
    for (int b = 0; b < HB_COUNT; b++) {
        jw_printf(&w, "%s\"%s\":", b ? "," : "", hbehave_name((enum hbehave)b));
        jw_counts(&w, s.behave[b]);
    }
    jw_printf(&w, "},\"prefixes\":[");
    for (size_t r = 0; r < set->cfg->nroutes; r++) {
        const struct hroute *rt = &set->cfg->routes[r];
        jw_printf(&w, "%s{\"prefix\":\"%s\",\"profile\":\"%s\",\"counts\":", r ? "," : "",
                  rt->prefix, rt->profile ? rt->profile->name : "none");
        jw_counts(&w, s.route[r]);
        jw_printf(&w, "}");
    }

    uint64_t n = 0, max = 0, min = 0;
    for (unsigned i = 0; i < HSTATS_LAT_BUCKETS; i++) {
        if (s.lat[i]) {
            if (n == 0) {
                min = lat_upper(i);
            }
            n += s.lat[i];
            max = lat_upper(i);
        }
    }
    jw_printf(&w,
              "],\"latency_us\":{\"count\":%llu,\"mean\":%llu,\"min\":%llu,\"p50\":%llu,"
              "\"p90\":%llu,\"p99\":%llu,\"p999\":%llu,\"max\":%llu,\"buckets\":[",
              U(n), U(n ? s.lat_sum_us / n : 0), U(min), U(hstats_percentile_us(&s, 0.50)),
              U(hstats_percentile_us(&s, 0.90)), U(hstats_percentile_us(&s, 0.99)),
              U(hstats_percentile_us(&s, 0.999)), U(max));
    first = true;
    for (unsigned i = 0; i < HSTATS_LAT_BUCKETS; i++) {
        if (s.lat[i]) {
            jw_printf(&w, "%s[%llu,%llu]", first ? "" : ",", U(lat_upper(i)), U(s.lat[i]));
            first = false;
        }
    }
    jw_printf(&w, "]}}\n");
    return w.full ? 0 : w.len;
}

void hstats_summary(struct hstats_set *set, FILE *f)
{
    struct hstats s;
    hstats_snapshot(set, &s);
    struct hids_totals t;
    hids_totals(set->ids, &t);
    fprintf(f,
            "harness: %llu requests, %llu verified, %llu unverified, %llu bad signature, "
            "%llu unique ids, %llu duplicates",
            U(s.c[HS_REQUESTS]), U(s.c[HS_VERIFIED]), U(s.c[HS_UNVERIFIED]),
            U(s.c[HS_BAD_SIGNATURE]), U(t.unique), U(t.duplicates));
    if (t.dropped) {
        fprintf(f, ", %llu arrivals untracked (--max-ids)", U(t.dropped));
    }
    fprintf(f, "\nharness: status");
    for (int i = 0; i < HSTATS_STATUS_MAX; i++) {
        if (s.status[i]) {
            fprintf(f, " %d=%llu", i, U(s.status[i]));
        }
    }
    fprintf(f,
            "\nharness: latency p50 %lluus p99 %lluus; connections %llu accepted, %llu rejected\n",
            U(hstats_percentile_us(&s, 0.5)), U(hstats_percentile_us(&s, 0.99)),
            U(s.c[HS_CONN_ACCEPTED]), U(s.c[HS_CONN_REJECTED]));
    if (set->cfg->any_tls) {
        fprintf(f, "harness: tls %llu handshakes, %llu resumed, %llu failed\n",
                U(s.c[HS_TLS_HANDSHAKES]), U(s.c[HS_TLS_RESUMED]), U(s.c[HS_TLS_FAILED]));
    }
}
