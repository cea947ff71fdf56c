/* serve.h: `hookring serve`, the durable delivery backend: webhooks (endpoints), ingested
 * events, their deliveries, all rebuilt from the journal at start-up.
 *
 * The caller's thread and ring own everything: the API server (apisrv), the journal, the retry
 * wheel and every webhook and delivery. With one worker (the default) the delivery client runs
 * on that ring too; with --workers N > 1 attempts are executed by N worker threads (xpool.h),
 * each with its own ring and client, and their outcomes come back to the owner, which journals
 * them. An event is acknowledged (202) only once its
 * journal record is durable; its deliveries start then. Every attempt's outcome is journaled, so
 * a restart resumes every pending delivery with its attempt count and retry time; an attempt in
 * flight at a crash left no record and is made again (same message id, so receivers dedup). */
#ifndef HOOKRING_SERVE_H
#define HOOKRING_SERVE_H

#include "client.h"
#include "dns.h"
#include "netguard.h"
#include "ring.h"
#include "tls.h"

struct serve;

/* connections the delivery client holds at most, over every webhook */
#define SERVE_CLIENT_CONNS 1024

struct serve_opts {
    const char *data_dir;
    const char *api_key;
    double time_scale; /* multiplies every retry delay */
    const struct netguard *guard;
    struct tls_ctx *tls;      /* for https:// webhooks (may be NULL) */
    struct dns *dns;          /* for host names (may be NULL) */
    uint64_t dedup_window_ms; /* 0: 24 h */
    size_t dedup_capacity;    /* events per window; 0: 200 000 */
    size_t max_body;          /* API request bodies; 0: 1 MiB */
    uint32_t idle_ms;         /* API connections; 0: 30 s */
    uint32_t max_conns;       /* API connections; 0: 1024 */
    bool quiet;               /* no per-event log lines */
    uint32_t failing_after;   /* exhausted deliveries in a row that mark a webhook failing; 0: 5 */
    /* a webhook failing this long (seconds, times time_scale) becomes disabled; 0: 5 days */
    uint64_t disable_after_s;
    const char *humanos_api_version; /* pinned on humanos webhooks at their first delivery;
                                        NULL: "v1" */
    const char *operator_url;        /* operator events go there (NULL: logged only) */
    const char *operator_secret;     /* their standard-profile secret (NULL: a random one) */
    uint32_t workers; /* delivery threads; 0 or 1: attempts run on the caller's ring */
    const struct tls_opts *tls_opts; /* for the workers' own TLS contexts (may be NULL) */
    const struct dns_opts *dns_opts; /* for the workers' own resolvers (may be NULL) */
    uint64_t retention_ms;           /* final deliveries are forgotten this long after; 0: 7 days */
    /* deliveries held in memory at most: beyond, final ones go before their retention and,
     * when pending ones alone fill it, ingest answers 503; 0: 1 000 000 */
    size_t max_held;
    uint64_t segment_size; /* journal segment files; 0: the journal's default (64 MiB) */
    /* ingest pacing: while more than pace_ready deliveries are due and waiting for an attempt
     * slot (the ready queues), an ingest request waits (nothing read from its connection) until
     * they are down to half, or for pace_wait_ms at most. 0: 4096 and 250 ms; pace_ready
     * UINT32_MAX: never */
    uint32_t pace_ready;
    uint32_t pace_wait_ms;
};

/* serve_new opens the journal in o->data_dir on ring r, replays it (webhooks, events,
 * deliveries, attempts, the dedup window) and returns the service, not yet serving. NULL with err
 * filled on failure (a corrupt journal names the file and offset). */
struct serve *serve_new(struct ring *r, const struct serve_opts *o, char *err, size_t errlen);

/* serve_start serves the API on listening socket lfd (taken over) and schedules every pending
 * delivery recovered. Returns 0 or -errno. */
int serve_start(struct serve *s, int lfd);

/* serve_after_run is called after every ring_run_once: it sends what the loop made ready, and
 * takes the ingest requests pacing held back once their time has come. */
void serve_after_run(struct serve *s);

/* serve_shutdown stops accepting API connections and new attempts; serve_idle then tells when
 * no attempt is in flight any more. */
void serve_shutdown(struct serve *s);
bool serve_idle(const struct serve *s);

/* serve_free syncs and closes the journal and frees everything. Returns 0, or the journal's
 * error. */
int serve_free(struct serve *s);

/* serve_recovered_summary writes one line about what recovery found into out. */
void serve_recovered_summary(const struct serve *s, char *out, size_t outlen);

#endif
