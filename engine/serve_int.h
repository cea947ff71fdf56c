/* serve_int.h: the state `hookring serve` shares between serve.c (webhooks, deliveries, the
 * journal) and serve_api.c (the HTTP API). Not a public interface. */
#ifndef HOOKRING_SERVE_INT_H
#define HOOKRING_SERVE_INT_H

#include "apisrv.h"
#include "dedup.h"
#include "event.h"
#include "journal.h"
#include "retry.h"
#include "serve.h"
#include "wheel.h"
#include "xpool.h"

#define WH_ID_LEN 20 /* "whk_" + 16 hex */
#define DLV_ID_LEN 20
#define WH_MAX_EVENTS 32
#define WH_MAX_SCHEDULE 32
#define WH_URL_MAX 2048
#define DLV_EXCERPT 96
#define WH_MAX_HEADERS 32         /* custom headers per webhook */
#define WH_HEADERS_BYTES 8192     /* their names and values together */
#define WH_MAX_IN_FLIGHT 1024     /* the largest max_in_flight */
#define WH_DEFAULT_CONNS 16       /* connections per webhook without max_in_flight */
#define WH_DEFAULT_IN_FLIGHT 64   /* attempts in flight per webhook without max_in_flight */
#define SERVE_ADHOC_MAX 1024      /* callback destinations alive at once */
#define WH_CALLBACK_ID "callback" /* the webhook id a callback delivery is journaled under */

/* journal record types */
enum {
    SREC_WEBHOOK = 1, /* a webhook's whole state, after every change */
    SREC_EVENT = 2,   /* an ingested event and its deliveries */
    SREC_ATTEMPT = 3, /* one attempt's outcome and what follows */
    SREC_NOP = 4,     /* nothing: its durability means every earlier record is durable */
};

/* journaled as numbers: new states go at the end */
enum wh_status { WH_ACTIVE = 0, WH_DISABLED, WH_DELETED, WH_FAILING };

struct webhook {
    char id[WH_ID_LEN + 1];
    char url_s[WH_URL_MAX + 1];
    struct url url;
    const struct profile *p;
    char events[WH_MAX_EVENTS][EVENT_TYPE_MAX + 1];
    size_t nevents;
    bool has_agent;
    char agent[EVENT_AGENT_MAX + 1];
    char secret[EVENT_SECRET_MAX + 1];
    char enc_secret[EVENT_SECRET_MAX + 1];
    char enc_salt[EVENT_SECRET_MAX + 1];
    /* the secret before the last rotation: signed with alongside secret until old_until_ms
     * (unix ms) where the profile sends several signatures; "" when none */
    char old_secret[EVENT_SECRET_MAX + 1];
    int64_t old_until_ms;
    uint32_t sched[WH_MAX_SCHEDULE];
    size_t nsched;
    bool has_sched;
    uint32_t timeout_ms; /* 0: the profile's */
    enum wh_status status;
    int64_t created_ms;
    struct signer signer;
    struct endpoint ep; /* with workers: only checks the destination; a copy is on the worker */
    bool ep_ok;
    bool slotted;  /* slot is assigned (with workers) */
    uint32_t slot; /* its endpoint's slot in the worker pool: worker slot % workers owns it */
    uint32_t inflight;
    uint64_t delivered, failed;
    uint32_t exhausted_run; /* deliveries in a row that exhausted their retries */
    /* custom headers: nhdr pairs "name\0value\0" packed in hdrs[0..hdr_len) */
    char hdrs[WH_HEADERS_BYTES];
    size_t hdr_len;
    uint32_t nhdr;
    uint32_t max_in_flight;   /* 0: the defaults */
    int64_t failing_since_ms; /* unix ms it became failing (0: it is not) */
    /* humanos: the api_version its deliveries carry, pinned at its first delivery from the
     * server's default; "" until then */
    char api_version[SIGN_API_VERSION_MAX + 1];
    bool adhoc; /* an event's callback destination: not in the table, freed once delivered */
    struct webhook *next_release;
};

/* wh_live tells whether wh takes and delivers events: active, or failing (a warning only). */
static inline bool wh_live(const struct webhook *wh)
{
    return wh->status == WH_ACTIVE || wh->status == WH_FAILING;
}

enum dlv_status { DLV_PENDING = 0, DLV_SENDING, DLV_DELIVERED, DLV_FAILED };

struct dlv_attempt {
    int64_t at_ms; /* unix ms */
    int status;
    uint8_t result; /* enum attempt_result */
    uint32_t latency_us;
    char excerpt[DLV_EXCERPT + 1];
};

struct sevent {
    struct buf json; /* canonical text: event.data points into it */
    struct event ev;
    int64_t ingest_ms;
};

struct serve;

struct delivery {
    struct serve *s;
    uint64_t idx;
    struct sevent *ev;
    struct webhook *wh;
    enum dlv_status status;
    uint32_t attempts;
    int64_t next_at_ms; /* unix ms of the next attempt (pending) */
    char why[200];      /* why it failed */
    struct dlv_attempt *hist;
    size_t nhist;
    struct wheel_timer timer;
    struct attempt a;
    struct buf body;
    char msg_id[SIGN_ID_MAX + 1];
    size_t msg_id_len;
    bool op; /* an operator event: not in the table, not journaled (best effort) */
};

/* A reply owed once a journal record is durable (and, for an ingest, deliveries to start). */
struct sreply {
    struct journal_waiter w;
    struct serve *s;
    struct apiconn *c;
    int status;
    const char *ctype; /* NULL: application/json */
    struct buf body;
    size_t nnew;          /* events ingested by the record(s) waited for */
    struct delivery **dl; /* to start once durable */
    size_t ndl;
};

struct serve_metrics {
    uint64_t ingested, duplicates, delivered, failed, attempts, retries;
    uint64_t journal_errors;
    uint64_t attempts_run; /* attempts made by this process (attempts counts replayed ones) */
};

struct serve {
    struct ring *r;
    struct serve_opts o;
    char key_hash[32];
    struct journal j;
    bool journal_open;
    struct dedup *dd;
    struct client cl;
    bool client_ok;
    struct xpool *xp;     /* --workers N > 1: the delivery threads; NULL: attempts run on r */
    uint32_t nslots;      /* webhook endpoint slots handed out in xp */
    uint32_t *free_slots; /* slots released (serve_webhook_release), reused first */
    size_t nfree_slots, free_slots_cap;
    struct wheel wheel;
    struct apisrv api;
    bool api_ok;
    bool stopping;
    struct webhook **whs;
    size_t nwh, whcap;
    struct delivery **dlvs; /* by idx; NULL holes where an ingest failed */
    size_t ndlv, dlvcap;
    struct sevent **evs;
    size_t nev, evcap;
    uint64_t rng;
    uint32_t inflight;
    uint64_t recovered_pending;
    struct serve_metrics m;
    struct buf scratch;
    struct webhook *opwh;  /* --operator-url, or NULL */
    struct delivery **ops; /* operator deliveries, each owning its event */
    size_t nops, opcap;
    struct webhook *cbwh;     /* what a finished callback delivery points at (never sends) */
    size_t nadhoc;            /* callback destinations alive */
    struct webhook *release;  /* callback destinations to free after the loop's completions */
    struct wheel_timer sweep; /* looks for webhooks failing longer than --disable-after */
    int64_t disable_after_ms; /* scaled by --time-scale */
};

/* ---- serve.c, for serve_api.c ---- */

struct webhook *serve_webhook_find(struct serve *s, struct slice id);
struct delivery *serve_delivery_find(struct serve *s, struct slice id);

/* serve_webhook_apply (re)builds wh's signer and endpoint from its fields. Returns 0 or -EINVAL
 * with err filled (naming the field). */
int serve_webhook_apply(struct serve *s, struct webhook *wh, char *err, size_t errlen);

/* serve_webhook_resign rebuilds wh's signer in place (the endpoint keeps pointing at it) from
 * its secrets at now_ms: the previous secret too while its grace lasts. Returns 0 or -EINVAL
 * with err filled (naming the field). */
int serve_webhook_resign(struct webhook *wh, int64_t now_ms, char *err, size_t errlen);

/* serve_header_check tells whether name: value may be a custom header of a webhook of profile
 * p: a token name that is not a protocol header nor (a prefix of) one of p's, a value without
 * CR, LF or NUL. Fills err (naming the field 'headers') when not. */
bool serve_header_check(const struct profile *p, struct slice name, struct slice value, char *err,
                        size_t errlen);

/* serve_webhook_signer_changed hands wh's new signer to the worker that owns wh's endpoint
 * (nothing without workers: the endpoint points at wh->signer). Call it after every change of
 * wh->signer outside serve_webhook_apply. */
void serve_webhook_signer_changed(struct serve *s, struct webhook *wh);

/* serve_webhook_release has the worker owning wh's endpoint clean it up, and frees its slot
 * for another webhook: call it before freeing a webhook whose endpoint is not needed any more
 * (nothing of it in flight). A no-op without workers. Returns 0 or -ENOMEM. */
int serve_webhook_release(struct serve *s, struct webhook *wh);

/* serve_metrics_workers appends the per-worker counters to a /metrics text. */
void serve_metrics_workers(const struct serve *s, struct buf *b);

/* serve_webhook_add takes wh (malloc'ed, applied) into the table. Returns 0 or -ENOMEM. */
int serve_webhook_add(struct serve *s, struct webhook *wh);

/* serve_webhook_record appends wh's state to the journal with waiter w (may be NULL). */
int serve_webhook_record(struct serve *s, const struct webhook *wh, struct journal_waiter *w);

/* serve_reply_new allocates a reply owed on c; serve_reply_commit appends a record of type with
 * payload and answers once it is durable (503 if it never is); it frees r on failure to append
 * after answering. */
struct sreply *serve_reply_new(struct serve *s, struct apiconn *c, int status);
void serve_reply_commit(struct sreply *r, uint8_t type, const void *payload, size_t len);

/* serve_dlv_retry makes delivery d (failed, or pending) due now and journals that. Returns 0,
 * -EBUSY (an attempt is in flight, or it was delivered) or -EPERM (its webhook is not active). */
int serve_dlv_retry(struct serve *s, struct delivery *d);

/* serve_ingest handles a parsed event (ev owned by the caller until it returns: it is copied):
 * dedup, fan-out, journal, and the answer on c. */
void serve_ingest(struct serve *s, struct apiconn *c, struct event *ev, int64_t now_ms);

/* serve_ingest_batch handles an NDJSON body of events, one per line (at most SERVE_BATCH_MAX):
 * each ingested as serve_ingest would, one result line each, answered 200 once every record of
 * the batch is durable (one group commit). */
#define SERVE_BATCH_MAX 10000
void serve_ingest_batch(struct serve *s, struct apiconn *c, const uint8_t *body, size_t len,
                        int64_t now_ms);

/* serve_match tells whether wh takes ev (active, type filter, agent filter). */
bool serve_match(const struct webhook *wh, const struct event *ev);

void serve_format_dlv_id(char out[DLV_ID_LEN + 1], uint64_t idx);
const char *serve_dlv_status_name(enum dlv_status st);
const char *serve_wh_status_name(enum wh_status st);
int64_t serve_now_ms(void);

/* ---- serve_api.c ---- */

/* serve_api_handle is the apisrv handler of the whole API. */
void serve_api_handle(void *arg, struct apiconn *c, const struct httpreq *req);

/* serve_api_error answers c with status and {"error": msg}. */
void serve_api_error(struct apiconn *c, int status, const char *msg);

#endif
