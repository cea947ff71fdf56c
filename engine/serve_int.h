/* serve_int.h: the state `hookring serve` shares between serve.c (webhooks, deliveries, the
 * journal) and serve_api.c (the HTTP API). Not a public interface. */
#ifndef HOOKRING_SERVE_INT_H
#define HOOKRING_SERVE_INT_H

#include "apisrv.h"
#include "dedup.h"
#include "dtab.h"
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
    SREC_CARRY = 5,   /* compaction: an event and its deliveries' whole current state */
    SREC_DEDUP = 6,   /* compaction: dedup keys still within the window, with their times */
    SREC_META = 7,    /* compaction: the next delivery index */
};

/* journaled as numbers: new states go at the end */
enum wh_status { WH_ACTIVE = 0, WH_DISABLED, WH_DELETED, WH_FAILING };

struct webhook {
    char id[WH_ID_LEN + 1];
    /* its URL as given (at most WH_URL_MAX bytes), allocated to its length (wh_url; NULL: none,
     * as for the callback placeholder); parsed where it is needed: the endpoint holds it parsed */
    char *url_s;
    const struct profile *p;
    /* its event-type filters: nevents of them, allocated to that count (serve_webhook_free);
     * NULL when none */
    char (*events)[EVENT_TYPE_MAX + 1];
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
    /* custom headers: nhdr pairs "name\0value\0" packed in hdrs[0..hdr_len) (at most
     * WH_HEADERS_BYTES), allocated to that length; NULL when none */
    char *hdrs;
    size_t hdr_len;
    uint32_t nhdr;
    uint32_t max_in_flight;   /* 0: the defaults */
    int64_t failing_since_ms; /* unix ms it became failing (0: it is not) */
    /* humanos: the api_version its deliveries carry, pinned at its first delivery from the
     * server's default; "" until then */
    char api_version[SIGN_API_VERSION_MAX + 1];
    bool adhoc; /* an event's callback destination: not in the table, freed once delivered */
    /* deliveries held that name it (a webhook in the table): deleted, it is freed at 0 */
    size_t nref;
    struct webhook *next_release;
    /* a PATCH changed what the endpoint is built from while attempts were in flight: they end
     * on the endpoint they have, and it is built anew (serve_after_run) once the last is back;
     * deliveries due meanwhile wait in the ready queue */
    bool apply_due;
    bool apply_listed; /* in serve.apply */
    struct webhook *next_apply;
    /* deliveries due while max_in_flight attempts are out, oldest first (linked by their
     * flight states): each is sent (its body built) only once an attempt of this webhook
     * finishes */
    struct dlv_flight *ready_head, *ready_tail;
    size_t nready;
    bool draining; /* serve.c's wh_drain is sending from the queue */
};

/* serve_webhook_free wipes wh's secrets and frees wh with its URL, filters and headers
 * (serve.c). */
void serve_webhook_free(struct webhook *wh);

/* wh_url is wh's URL ("" when it has none). */
static inline const char *wh_url(const struct webhook *wh)
{
    return wh->url_s ? wh->url_s : "";
}

/* serve_webhook_set_url gives wh a copy of the URL u[0..len) (its own is not freed: the caller
 * owns it). Returns 0 or -ENOMEM (wh unchanged). */
int serve_webhook_set_url(struct webhook *wh, const char *u, size_t len);

/* serve_webhook_set_events gives wh a copy of the n filters in f (its own are not freed: the
 * caller owns them). Returns 0 or -ENOMEM (wh unchanged). */
int serve_webhook_set_events(struct webhook *wh, const char (*f)[EVENT_TYPE_MAX + 1], size_t n);

/* serve_webhook_set_hdrs gives wh a copy of n packed headers h[0..len) (its own are not freed:
 * the caller owns them). Returns 0 or -ENOMEM (wh unchanged). */
int serve_webhook_set_hdrs(struct webhook *wh, const char *h, size_t len, uint32_t n);

/* wh_live tells whether wh takes and delivers events: active, or failing (a warning only). */
static inline bool wh_live(const struct webhook *wh)
{
    return wh->status == WH_ACTIVE || wh->status == WH_FAILING;
}

enum dlv_status { DLV_PENDING = 0, DLV_SENDING, DLV_DELIVERED, DLV_FAILED };

/* A response excerpt, held once for every attempt that got the same one: receivers mostly
 * answer alike, and a held delivery's history would otherwise carry its own copy (serve.c). */
struct dlv_excerpt {
    struct dlv_excerpt *next; /* in its hash chain */
    uint32_t refs;            /* attempts that hold it */
    uint8_t len;
    char text[]; /* len bytes and a NUL: printable ASCII, at most DLV_EXCERPT */
};

struct dlv_attempt {
    int64_t at_ms;         /* unix ms */
    struct dlv_excerpt *x; /* the response's start; NULL: none (dlv_excerpt) */
    int status;
    uint32_t latency_us;
    uint8_t result; /* enum attempt_result */
};

/* dlv_excerpt is the start of the response h got ("" when none). */
static inline const char *dlv_excerpt(const struct dlv_attempt *h)
{
    return h->x ? h->x->text : "";
}

struct sevent {
    /* canonical text: ev->data points into it. Like ev, held only while a delivery of the
     * event is unfinished (and its record is durable): else empty, read back from the journal
     * record text_seq when needed (serve_sevent_text) */
    struct buf json;
    uint64_t text_seq; /* the record holding the text (SREC_EVENT, or a first SREC_CARRY); 0:
                          none (an operator event: never journaled, never let go) */
    /* the text parsed: held while a delivery of the event is unfinished, and NULL once all are
     * (the held events are mostly delivered ones): serve_sevent_ev parses it again when needed,
     * serve_sevent_view without keeping it */
    struct event *ev;
    int64_t ingest_ms;
    /* retention and compaction (serve_keep.c) */
    uint64_t first_idx; /* its deliveries have indexes first_idx .. first_idx + span - 1 */
    uint32_t span;
    uint32_t nlive;    /* deliveries of it still held */
    uint32_t slot;     /* in serve.evs (the 32-bit fields together: 8 bytes less per event) */
    uint32_t text_len; /* its text's length, held or not */
    uint64_t jseq;     /* the journal record that holds it and its deliveries whole */
    /* ev has a callback to free: known without reading ev, which is cold when it is let go
     * (reading it there was 1% of serve's CPU end to end); in the padding of the 96-byte
     * allocation */
    bool ev_cb;
};

struct serve;
struct delivery;

/* What a delivery needs only while it is being attempted or waits for its next attempt (in
 * its webhook's ready queue, or on the retry wheel): made when it first waits or is sent,
 * freed once it is final, so that the deliveries held for the retention (most of them
 * delivered) stay small. */
struct dlv_flight {
    struct attempt a;
    struct delivery *d;
    struct wheel_timer timer; /* its next attempt (dlv_schedule) */
    /* in its webhook's ready queue (d->queued): flights, not deliveries, so that taking one
     * out touches only its neighbours' flights, and the queue can be prefetched along */
    struct dlv_flight *rprev, *rnext;
    /* where its event, parsed event and that event's data were when it was queued: wh_drain
     * prefetches them one delivery ahead (hints only: a prefetch of a stale address is
     * harmless) */
    const struct sevent *pf_sev;
    const struct event *pf_ev;
    struct slice pf_data;
    struct buf body;
    char msg_id[SIGN_ID_MAX + 1];
    size_t msg_id_len;
    bool msg_id_set;
};

#define DLV_WHY_MAX 199 /* the longest reason a delivery failed */

struct delivery {
    struct serve *s;
    uint64_t idx;
    struct sevent *ev;
    struct webhook *wh;
    enum dlv_status status;
    uint32_t attempts;
    int64_t next_at_ms; /* unix ms of the next attempt (pending) */
    int64_t final_ms;   /* unix ms it became delivered or failed (retention counts from it) */
    char *why;          /* why it failed (at most DLV_WHY_MAX bytes); NULL: "" (dlv_why) */
    struct dlv_attempt *hist;
    struct dlv_flight *fl; /* NULL until it first waits or is sent, and once it is final */
    uint32_t nhist; /* attempts in hist (next to the flags: a held delivery is 8 bytes less) */
    bool queued;
    bool op; /* an operator event: not in the table, not journaled (best effort) */
};

/* dlv_why is why d failed ("" when it did not). */
static inline const char *dlv_why(const struct delivery *d)
{
    return d->why ? d->why : "";
}

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
    uint64_t attempts_run;   /* attempts made by this process (attempts counts replayed ones) */
    uint64_t forgotten;      /* deliveries forgotten after the retention */
    uint64_t compactions;    /* compaction passes finished */
    uint64_t carried;        /* records re-appended by compaction */
    uint64_t text_reads;     /* event texts read back from the journal */
    uint64_t text_errors;    /* ... that could not be */
    uint64_t paced;          /* ingest requests that waited for the ready queues (pacing) */
    uint64_t webhooks_freed; /* deleted webhooks freed once none of their deliveries is held */
};

/* An ingest request pacing holds back (its connection reads nothing meanwhile). */
struct paced_req {
    struct apiconn *c;
    const struct httpreq *req;
    int64_t at_ms; /* ring ms it came */
};

/* A dedup key kept for compaction: the window keeps it, and the record it is in must be carried
 * forward before that record's segment goes. */
struct dd_entry {
    uint8_t key[DEDUP_KEY_LEN];
    int64_t ms;   /* its event's ingest time; INT64_MIN: dead */
    uint64_t seq; /* the record that holds it */
};

/* Retention and compaction state (serve_keep.c). */
struct serve_keep {
    struct wheel_timer timer;
    uint64_t sweep_idx;  /* the retention sweep's next delivery index */
    uint64_t evict_idx;  /* keep_make_room's next delivery index */
    struct dd_entry *dd; /* a ring of dedup keys, in record order */
    size_t dd_cap, dd_head, dd_len;
    uint64_t dd_lost;   /* keys pushed out of a full ring */
    uint64_t meta_next; /* replay: the next delivery index SREC_META recorded */
    /* the compaction pass */
    enum { KEEP_IDLE = 0, KEEP_SCAN, KEEP_WAIT } phase;
    uint64_t cut;      /* the first record of the pass: every record before it is carried */
    uint64_t scan_idx; /* next delivery index to look at */
    uint64_t live_acc, live_bytes; /* the live state's journal bytes: being summed by the
                                      sweep, as its last round summed them */
    struct journal_waiter w;
    uint64_t drop_errors;
    int64_t retry_ms; /* no pass before (unix ms): the last one could not finish */
    /* TEST ONLY: the environment has HOOKRING_TEST_DIE_IN_DROP: the first pass deletes one
     * segment before its cut, then the process exits (137), as if killed between two unlinks */
    bool test_die_in_drop;
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
    struct dlv_excerpt **xtab; /* the attempts' excerpts by text (serve.c): hash chains */
    size_t xtab_mask, nx;
    uint32_t *whmap; /* by id (serve.c): positions in whs plus one, 0 empty */
    size_t whmap_mask;
    struct serve_match_index *match; /* which webhooks an event goes to (serve_match.c) */
    bool match_dirty;                /* whs changed since match was built */
    struct webhook **matched;        /* ingest_one: the webhooks an event goes to */
    size_t matched_cap;
    /* the deliveries held, by index (dtab.h: pages, so that its memory follows what is held,
     * not the range of indexes, which one long-pending delivery would stretch) */
    struct dtab dlvs;  /* dlvs.n: the deliveries held */
    uint64_t dlv_base; /* none is held below it */
    uint64_t dlv_end;  /* the next index to give (none is held from it on) */
    size_t npending;   /* deliveries held that are pending (serve_dlv_set_status) */
    size_t ntexts;     /* events in evs whose text is held (json.len != 0) */
    struct sevent **evs;
    size_t nev, evcap;
    uint64_t rng;
    uint32_t inflight;
    uint64_t recovered_pending;
    struct serve_metrics m;
    struct buf scratch;
    int journal_said;       /* the journal's state last logged: 0 fine, 1 stuck, 2 failed */
    int64_t stuck_since_ms; /* unix ms the journal was logged stuck */
    struct buf textbuf;     /* journal records read back (serve_sevent_text, carry) */
    struct buf viewbuf;     /* the text serve_sevent_view parsed: valid until its next call */
    struct webhook *opwh;   /* --operator-url, or NULL */
    struct delivery **ops;  /* operator deliveries, each owning its event */
    size_t nops, opcap;
    struct webhook *cbwh;    /* what a finished callback delivery points at (never sends) */
    size_t nadhoc;           /* callback destinations alive */
    struct webhook *release; /* callback destinations to free after the loop's completions */
    struct webhook *apply;   /* webhooks whose endpoint is built anew after them (apply_due) */
    size_t nready_all;       /* deliveries in the ready queues of every webhook */
    /* ingest requests held back by pacing, oldest first: a ring of max_conns (one request per
     * connection at a time) */
    struct paced_req *paced;
    size_t paced_cap, paced_head, npaced;
    struct wheel_timer sweep; /* looks for webhooks failing longer than --disable-after */
    int64_t disable_after_ms; /* scaled by --time-scale */
    struct serve_keep keep;
    /* SERVE_LIST_SCAN_MAX; TEST ONLY: HOOKRING_TEST_LIST_SCAN=N in the environment sets it */
    size_t list_scan_max;
    /* TEST ONLY: HOOKRING_TEST_COUNT_CHECK is set: /v1/health and /metrics check npending and
     * ntexts against a scan (serve_api.c) */
    bool test_count_check;
    /* Keys inserted into the dedup table for events that then failed (out of memory) before
     * their record: an insert cannot be undone, and without these a retry of such an event
     * would be answered "duplicate" for an event never stored. A retry that finds its key
     * here is taken as new. Fixed room, made at start (no allocation when memory is short);
     * once it is full, orphans_lost: every duplicate is refused with 503 (retry) rather than
     * acknowledged, until a restart rebuilds the table from the journal. */
    uint8_t (*orphans)[DEDUP_KEY_LEN];
    size_t norphans;
    bool orphans_lost;
    /* TEST ONLY: HOOKRING_TEST_FAIL_INGEST=N: the Nth new event fails as out of memory right
     * after its dedup insert (0: never) */
    unsigned test_fail_ingest;
};

/* ---- serve.c, for serve_api.c ---- */

struct webhook *serve_webhook_find(struct serve *s, struct slice id);
struct delivery *serve_delivery_find(struct serve *s, struct slice id);

/* serve_dlv_id_parse reads a delivery id ("dlv_" and 16 lowercase hex digits) into *idx. */
bool serve_dlv_id_parse(struct slice id, uint64_t *idx);

/* delivery slots one page of GET /v1/webhooks/{id}/deliveries looks at, at most: a webhook
 * with few deliveries among many would make a page scan them all */
#define SERVE_LIST_SCAN_MAX 65536

/* serve_webhook_named is the webhook a journal record names: any in the table (deleted ones
 * too), or the callback placeholder for WH_CALLBACK_ID; NULL for an unknown id. */
struct webhook *serve_webhook_named(struct serve *s, struct slice id);

/* serve_webhook_pos finds wh's position in the table (false: it is not in it). */
bool serve_webhook_pos(const struct serve *s, const struct webhook *wh, size_t *pos);

/* serve_webhook_apply (re)builds wh's signer and endpoint from its fields. While attempts of wh
 * are in flight it only checks them, and the endpoint is built once the last is back (apply_due;
 * deliveries due meanwhile wait). Returns 0 or -EINVAL with err filled (naming the field). */
int serve_webhook_apply(struct serve *s, struct webhook *wh, char *err, size_t errlen);

/* serve_webhook_retire closes a deleted webhook's connections (and, with workers, gives its
 * slot back) once none of its attempts is in flight. */
void serve_webhook_retire(struct serve *s, struct webhook *wh);

/* What an ingest refused because the journal has no room for its next segment says. */
#define SERVE_STUCK_MSG "the journal has no room on disk for its next segment; retry"

/* SERVE_REPLY_LIT answers c with a string literal body, its length counted by the compiler. */
#define SERVE_REPLY_LIT(c, status, hdrs, lit)                                                      \
    apisrv_reply((c), (status), NULL, (hdrs), (lit), sizeof(lit) - 1)

#define SERVE_SHUTTING_DOWN "{\"error\":\"shutting down\"}\n"

/* serve_pace holds ingest request req on c back while the ready queues are over --pace (or
 * requests held before it still wait: they go in order); returns whether it did. Its time
 * comes in serve_after_run, which hands it to serve_api_ingest. */
bool serve_pace(struct serve *s, struct apiconn *c, const struct httpreq *req);

/* serve_api_ingest handles POST /v1/events or /v1/events/batch (serve_api.c). */
void serve_api_ingest(struct serve *s, struct apiconn *c, const struct httpreq *req);

/* serve_webhook_resign rebuilds wh's signer in place (the endpoint keeps pointing at it) from
 * its secrets at now_ms: the previous secret too while its grace lasts. Returns 0 or -EINVAL
 * with err filled (naming the field). */
int serve_webhook_resign(struct webhook *wh, int64_t now_ms, char *err, size_t errlen);

/* serve_api_parse_webhook reads the JSON body of a POST /v1/webhooks (patch false) or a PATCH of
 * one into wh, as the API does before anything is checked against the profile or applied.
 * Returns 0, or -EINVAL (-ENOMEM) with err naming the field; the URL, filters and headers read
 * are wh's either way (serve_webhook_free). For fuzz_webhook. */
int serve_api_parse_webhook(struct webhook *wh, const uint8_t *body, size_t len, bool patch,
                            char *err, size_t errlen);

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

/* serve_webhook_end_pending ends every pending delivery of wh failed with why (those in flight
 * end when their attempt does, and then fail as wh is not live). */
void serve_webhook_end_pending(struct serve *s, struct webhook *wh, const char *why);

/* serve_webhook_add takes wh (malloc'ed, applied) into the table. Returns 0 or -ENOMEM. */
int serve_webhook_add(struct serve *s, struct webhook *wh);

/* serve_webhook_record appends wh's state to the journal with waiter w (may be NULL). */
int serve_webhook_record(struct serve *s, const struct webhook *wh, struct journal_waiter *w);

/* serve_reply_new allocates a reply owed on c; serve_reply_when_durable answers it, and starts
 * the deliveries it holds, once every record appended so far is durable (503 if it never is),
 * appending nothing, and frees it. */
struct sreply *serve_reply_new(struct serve *s, struct apiconn *c, int status);
void serve_reply_when_durable(struct sreply *r);

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

/* events that may fail after their dedup entry is made (serve.orphans) before duplicates can
 * no longer be told apart from them */
#define SERVE_ORPHANS_MAX 1024
#define SERVE_UNSURE_MSG                                                                           \
    "events failed after their dedup entry was made: a duplicate cannot be confirmed until "       \
    "serve restarts; retry"

void serve_ingest_batch(struct serve *s, struct apiconn *c, const uint8_t *body, size_t len,
                        int64_t now_ms);

/* ---- serve_match.c: fan-out ---- */

/* serve_match tells whether wh takes ev (active, type filter, agent filter). */
bool serve_match(const struct webhook *wh, const struct event *ev);

struct serve_match_index;

/* An iteration over the webhooks an event goes to, in table order. */
struct serve_match_it {
    const struct serve_match_index *mi;
    const struct event *ev;
    size_t i, j;
    const struct match_ent *run; /* the event's agent's webhooks */
    size_t nrun;
};

/* serve_match_begin starts it over the webhooks that take ev (serve_match), looking only at
 * those without an agent filter and those with ev's agent. Builds the index first if the
 * webhooks changed since (serve_match_dirty). Returns 0 or -ENOMEM. */
int serve_match_begin(struct serve *s, struct serve_match_it *it, const struct event *ev);

/* serve_match_next is the next webhook that takes the event, or NULL once there is none. The
 * webhooks must not change during an iteration. */
struct webhook *serve_match_next(struct serve_match_it *it);

/* serve_match_dirty says the webhooks changed (one added, replayed, freed, deleted, or its agent
 * changed): the index is built anew at the next serve_match_begin. A status change needs none:
 * serve_match looks at the status. */
void serve_match_dirty(struct serve *s);

void serve_match_free(struct serve *s);

void serve_format_dlv_id(char out[DLV_ID_LEN + 1], uint64_t idx);
const char *serve_dlv_status_name(enum dlv_status st);
const char *serve_wh_status_name(enum wh_status st);
int64_t serve_now_ms(void);

/* ---- serve.c, for serve_keep.c ---- */

/* serve_dlv_set_why sets why d failed (NULL or "": it did not), cut at DLV_WHY_MAX bytes.
 * Returns 0 or -ENOMEM (d->why is then empty). */
int serve_dlv_set_why(struct delivery *d, const char *why);

/* serve_excerpt_set gives h the excerpt text[0..len) (cut at DLV_EXCERPT bytes, bytes outside
 * printable ASCII shown as '.'), shared with every attempt that has the same one. Returns 0 or
 * -ENOMEM (h has none then). */
int serve_excerpt_set(struct serve *s, struct dlv_attempt *h, const uint8_t *text, size_t len);

/* serve_hist_free frees the n attempts of a history and lets go of their excerpts. */
void serve_hist_free(struct serve *s, struct dlv_attempt *hist, size_t n);

/* serve_dlv_message_id writes the message id d's deliveries carry (the profile's, from the
 * event) into out and returns its length. */
size_t serve_dlv_message_id(const struct delivery *d, char out[SIGN_ID_MAX + 1]);

/* serve_sevent_text makes sure e->json holds e's text, reading it back from the journal if it
 * was let go (then held until serve_sevent_release). Returns 0 or -errno (logged). */
int serve_sevent_text(struct serve *s, struct sevent *e);

/* serve_sevent_ev is e's parsed event, parsed again from its text if it is not held (and
 * then held until its deliveries are all final again). NULL when its text cannot be had. */
struct event *serve_sevent_ev(struct serve *s, struct sevent *e);

/* serve_sevent_view is e's parsed event if it is held, else its text parsed into *tmp (not
 * kept: its data lies in s->viewbuf until the next call). Either way call event_clear(tmp)
 * after use. NULL when the text cannot be had. */
const struct event *serve_sevent_view(struct serve *s, const struct sevent *e, struct event *tmp);

/* serve_sevent_cover widens e's range of delivery indexes (first_idx, span) to hold idx; false
 * (nothing changed) when the range would be wider than its 32-bit span holds. */
bool serve_sevent_cover(struct sevent *e, uint64_t idx);

/* serve_sevent_release lets go of e's parsed event and text when no delivery of it is pending
 * or in flight and its text is durable in the journal. */
void serve_sevent_release(struct serve *s, struct sevent *e);

/* serve_dlv_next is the held delivery with the lowest index in [*idx, dlv_end) (from dlv_base
 * at least), *idx set to its index; NULL when there is none, or when *budget (slots looked at,
 * an empty page skipped costing one) ran out first, *idx then where to go on (dtab_next). */
static inline struct delivery *serve_dlv_next(const struct serve *s, uint64_t *idx, size_t *budget)
{
    if (*idx < s->dlv_base) {
        *idx = s->dlv_base;
    }
    return dtab_next(&s->dlvs, idx, s->dlv_end, budget);
}

/* SERVE_EACH_DLV runs the statement after it for every held delivery d, in index order (d may
 * be made final or forgotten meanwhile, not others). */
struct serve_dlv_walk {
    uint64_t at;
    size_t budget;
};
#define SERVE_EACH_DLV(s, d)                                                                       \
    for (struct serve_dlv_walk d##_w = {(s)->dlv_base, SIZE_MAX};                                  \
         ((d) = serve_dlv_next((s), &d##_w.at, &d##_w.budget)) != NULL; d##_w.at++)

/* serve_dlv_set_status changes d's status, keeping count of the pending ones (npending). */
void serve_dlv_set_status(struct delivery *d, enum dlv_status st);

/* serve_dlv_at is the delivery with index idx, or NULL. */
struct delivery *serve_dlv_at(const struct serve *s, uint64_t idx);

/* serve_dlv_new creates delivery idx of ev to wh (pending) in its slot. NULL on -ENOMEM or a bad
 * index. */
struct delivery *serve_dlv_new(struct serve *s, uint64_t idx, struct sevent *ev,
                               struct webhook *wh);

/* serve_dlv_free frees d and empties its slot (d is neither in flight nor waited for). */
void serve_dlv_free(struct serve *s, struct delivery *d);

/* serve_ev_keep takes e into serve.evs; serve_ev_drop removes it from there and frees it. */
int serve_ev_keep(struct serve *s, struct sevent *e);
void serve_ev_drop(struct serve *s, struct sevent *e);

/* serve_sevent_new parses json (copied) into an event, not yet kept. NULL with err filled. */
struct sevent *serve_sevent_new(const uint8_t *json, size_t len, int64_t ingest_ms, char *err,
                                size_t errlen);

/* ---- serve_keep.c: retention and compaction ---- */

/* keep_init sizes the dedup key ring; keep_start arms the periodic sweep; keep_cleanup frees. */
int keep_init(struct serve *s);
void keep_start(struct serve *s);
void keep_cleanup(struct serve *s);

/* keep_dedup_push remembers that record seq holds the dedup key of an event ingested at ms. */
void keep_dedup_push(struct serve *s, const uint8_t key[DEDUP_KEY_LEN], int64_t ms, uint64_t seq);

/* keep_replay_end inserts the remembered dedup keys in time order (once the replay is over) and
 * moves the next delivery index past every one ever given. Returns 0 or -ENOMEM. */
int keep_replay_end(struct serve *s);

/* keep_leftover tells whether a record naming a webhook or delivery not replayed yet is to be
 * skipped rather than refused: in a compacted journal (its first record is not the first ever),
 * where a crash while the segments before a cut were being deleted (oldest first) left the
 * newest of them; what they name was carried after that cut, so they are superseded. */
bool keep_leftover(const struct serve *s);

/* keep_replay handles the compaction records (SREC_CARRY, SREC_DEDUP, SREC_META). Returns 0 or
 * -errno with err filled. */
int keep_replay(struct serve *s, uint8_t type, uint64_t seq, const uint8_t *p, size_t len,
                char *err, size_t errlen);

/* keep_before_record is called before an attempt record about d is appended: during a
 * compaction pass, an event not carried yet is carried now instead (the record would otherwise
 * follow nothing that creates d once the old segments are gone). Returns true when it took care
 * of the record. */
bool keep_before_record(struct serve *s, const struct delivery *d);

/* keep_sweep_all forgets every final delivery older than the retention, all at once (start-up). */
void keep_sweep_all(struct serve *s);

/* keep_make_room forgets final deliveries (oldest index first, a bounded number of slots looked
 * at) until need more fit under --max-held, retention or not. Returns whether they fit. */
bool keep_make_room(struct serve *s, size_t need);

/* ---- serve_api.c ---- */

/* serve_api_handle is the apisrv handler of the whole API. */
void serve_api_handle(void *arg, struct apiconn *c, const struct httpreq *req);

/* serve_api_error answers c with status and {"error": msg}. */
void serve_api_error(struct apiconn *c, int status, const char *msg);

#endif
