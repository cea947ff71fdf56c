/* serve.c: `hookring serve`'s state: webhooks, events and deliveries, journaled and recovered
 * (see serve.h). The HTTP API is serve_api.c. */
#include "serve_int.h"
#include "serve_rec.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>

#include "codec.h"
#include "json.h"

int64_t serve_now_ms(void)
{
    return unix_now_us() / 1000;
}

const char *serve_dlv_status_name(enum dlv_status st)
{
    switch (st) {
    case DLV_PENDING:
        return "pending";
    case DLV_SENDING:
        return "sending";
    case DLV_DELIVERED:
        return "delivered";
    case DLV_FAILED:
        return "failed";
    default:
        return "unknown";
    }
}

const char *serve_wh_status_name(enum wh_status st)
{
    switch (st) {
    case WH_ACTIVE:
        return "active";
    case WH_DISABLED:
        return "disabled";
    case WH_DELETED:
        return "deleted";
    case WH_FAILING:
        return "failing";
    default:
        return "unknown";
    }
}

void serve_format_dlv_id(char out[DLV_ID_LEN + 1], uint64_t idx)
{
    snprintf(out, DLV_ID_LEN + 1, "dlv_%016" PRIx64, idx);
}

/* ======== webhooks ============================================================================ */

/* The webhooks by id: open addressing over their positions in s->whs plus one (0: empty), at
 * most half full (slice_hash). Replay looks up the webhook of every delivery it reads, and the
 * API the one of every request: a scan of the table made both grow with the number of
 * webhooks. */

static void whmap_put(uint32_t *map, size_t mask, struct webhook *const *whs, uint32_t pos)
{
    size_t k = slice_hash(slice_cstr(whs[pos]->id)) & mask;
    while (map[k]) {
        if (strcmp(whs[map[k] - 1]->id, whs[pos]->id) == 0) {
            return; /* the first of an id is the one found, as a scan finds it */
        }
        k = (k + 1) & mask;
    }
    map[k] = pos + 1;
}

/* whmap_build indexes s->whs anew in a map of cap slots (a power of two, more than twice the
 * webhooks). Returns 0 or -ENOMEM (the old map stays). */
static int whmap_build(struct serve *s, size_t cap)
{
    uint32_t *map = calloc(cap, sizeof(*map));
    if (!map) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->nwh; i++) {
        whmap_put(map, cap - 1, s->whs, (uint32_t)i);
    }
    free(s->whmap);
    s->whmap = map;
    s->whmap_mask = cap - 1;
    return 0;
}

/* whmap_room makes room in the id map for one more webhook. Returns 0 or -ENOMEM. */
static int whmap_room(struct serve *s)
{
    size_t cap = s->whmap ? s->whmap_mask + 1 : 0;
    if (2 * (s->nwh + 1) <= cap) {
        return 0;
    }
    return whmap_build(s, cap ? cap * 2 : 64);
}

/* whmap_rebuild indexes s->whs anew (positions moved). Returns 0 or -ENOMEM. */
static int whmap_rebuild(struct serve *s)
{
    size_t cap = 64;
    while (cap < 2 * (s->nwh + 1)) {
        cap *= 2;
    }
    return whmap_build(s, cap);
}

/* whmap_pos finds the position in s->whs of the (first) webhook with id. */
static bool whmap_pos(const struct serve *s, struct slice id, size_t *pos)
{
    if (!s->whmap) {
        return false;
    }
    for (size_t k = slice_hash(id) & s->whmap_mask; s->whmap[k]; k = (k + 1) & s->whmap_mask) {
        if (slice_eq_cstr(id, s->whs[s->whmap[k] - 1]->id)) {
            *pos = s->whmap[k] - 1;
            return true;
        }
    }
    return false;
}

static struct webhook *whmap_get(const struct serve *s, struct slice id)
{
    size_t pos;
    return whmap_pos(s, id, &pos) ? s->whs[pos] : NULL;
}

bool serve_webhook_pos(const struct serve *s, const struct webhook *wh, size_t *pos)
{
    return whmap_pos(s, slice_cstr(wh->id), pos) && s->whs[*pos] == wh;
}

struct webhook *serve_webhook_find(struct serve *s, struct slice id)
{
    struct webhook *wh = whmap_get(s, id);
    return wh && wh->status != WH_DELETED ? wh : NULL;
}

struct webhook *serve_webhook_named(struct serve *s, struct slice id)
{
    if (slice_eq_cstr(id, WH_CALLBACK_ID)) {
        return s->cbwh;
    }
    return whmap_get(s, id);
}

/* webhook_signer builds wh's signer at now_ms into sg: its secret, and the previous one while
 * its grace lasts where the profile sends several signatures. */
static int webhook_signer(const struct webhook *wh, int64_t now_ms, struct signer *sg, char *err,
                          size_t errlen)
{
    struct slice secrets[2] = {slice_cstr(wh->secret), slice_cstr(wh->old_secret)};
    size_t n = wh->secret[0] ? 1 : 0;
    if (n && wh->p->multi_sig && wh->old_secret[0] && now_ms < wh->old_until_ms) {
        n = 2;
    }
    if (signer_init(sg, wh->p, secrets, n, slice_cstr(wh->enc_secret), slice_cstr(wh->enc_salt),
                    err, errlen)) {
        return -EINVAL;
    }
    return 0;
}

/* headers_packed_ok tells whether h holds exactly n "name\0value\0" pairs. */
static bool headers_packed_ok(struct slice h, uint32_t n)
{
    size_t nul = 0;
    for (size_t i = 0; i < h.len; i++) {
        nul += h.p[i] == 0;
    }
    return nul == 2 * (size_t)n && (h.len == 0 || h.p[h.len - 1] == 0);
}

static bool is_tchar(uint8_t ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool prefix_nocase(struct slice s, const char *prefix)
{
    size_t n = strlen(prefix);
    return s.len >= n && strncasecmp((const char *)s.p, prefix, n) == 0;
}

bool serve_header_check(const struct profile *p, struct slice name, struct slice value, char *err,
                        size_t errlen)
{
    /* what the protocol or the signature depends on: never the caller's */
    static const char *const protocol[] = {"Host",       "Content-Length", "Transfer-Encoding",
                                           "Connection", "Content-Type",   "User-Agent",
                                           "TE",         "Trailer",        "Upgrade",
                                           "Keep-Alive", "Expect",         "Proxy-Connection"};
    /* each profile's own headers; a name starting with one of them is refused too */
    static const char *const own[PROFILE_COUNT][4] = {
        [PROFILE_HUMANCONNECTION] = {"X-HumanConnection-Signature"},
        [PROFILE_HUMIRIS] = {"X-Humiris-Signature"},
        [PROFILE_HUMCLI] = {"X-Signature", "X-Timestamp"},
        [PROFILE_HUMANOS] = {"x-signature", "x-timestamp"},
        [PROFILE_AKSITA] = {"X-Webhook-Signature"},
        [PROFILE_STANDARD] = {"webhook-id", "webhook-timestamp", "webhook-signature"},
        [PROFILE_SVIX] = {"svix-id", "svix-timestamp", "svix-signature"},
        [PROFILE_STRIPE] = {"Stripe-Signature"},
        [PROFILE_GITHUB] = {"X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature"},
    };
    if (name.len == 0 || name.len > 256) {
        snprintf(err, errlen, "field 'headers': a name must be 1-256 characters");
        return false;
    }
    for (size_t i = 0; i < name.len; i++) {
        if (!is_tchar(name.p[i])) {
            snprintf(err, errlen, "field 'headers': '%.*s' is not a header name (RFC 9110 token)",
                     (int)(name.len < 64 ? name.len : 64), (const char *)name.p);
            return false;
        }
    }
    for (size_t i = 0; i < ARRAY_SIZE(protocol); i++) {
        if (name.len == strlen(protocol[i]) && prefix_nocase(name, protocol[i])) {
            snprintf(err, errlen, "field 'headers': '%s' is set by the protocol", protocol[i]);
            return false;
        }
    }
    for (size_t i = 0; i < 4 && own[p->pid][i]; i++) {
        if (prefix_nocase(name, own[p->pid][i])) {
            snprintf(err, errlen, "field 'headers': '%.*s' would override profile %s's %s",
                     (int)name.len, (const char *)name.p, p->name, own[p->pid][i]);
            return false;
        }
    }
    for (size_t i = 0; i < value.len; i++) {
        uint8_t ch = value.p[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            snprintf(err, errlen,
                     "field 'headers': the value of '%.*s' has a control character (CR, LF, "
                     "NUL, ...)",
                     (int)name.len, (const char *)name.p);
            return false;
        }
    }
    return true;
}

/* webhook_endpoint builds ep for wh from u and sg, with wh's custom headers (each checked).
 * Returns 0, or an error with err filled and nothing left to clean up. */
static int webhook_endpoint(struct serve *s, const struct webhook *wh, const struct url *u,
                            const struct signer *sg, struct endpoint *ep, char *err, size_t errlen)
{
    uint32_t conns = wh->max_in_flight ? wh->max_in_flight : WH_DEFAULT_CONNS;
    uint32_t inflight = wh->max_in_flight ? wh->max_in_flight : WH_DEFAULT_IN_FLIGHT;
    int rc = endpoint_init(ep, &s->cl, u, sg, wh->timeout_ms, conns, inflight, err, errlen);
    if (rc) {
        return rc;
    }
    const char *p = wh->hdrs, *end = pairs_end(wh->hdrs, wh->hdr_len);
    struct slice name, value;
    for (uint32_t i = 0; i < wh->nhdr && pair_next(&p, end, &name, &value); i++) {
        if (!serve_header_check(wh->p, name, value, err, errlen)) {
            rc = -EINVAL;
        } else if (endpoint_add_header(ep, name, value)) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
        }
        if (rc) {
            endpoint_cleanup(ep);
            return rc;
        }
    }
    return 0;
}

/* webhook_api_version sets the api_version wh's signer sends: the pinned one, else the
 * server's default (pinned at the first delivery). */
static void webhook_api_version(const struct serve *s, struct webhook *wh)
{
    if (wh->p->pid != PROFILE_HUMANOS) {
        return;
    }
    const char *v = wh->api_version[0]         ? wh->api_version
                    : s->o.humanos_api_version ? s->o.humanos_api_version
                                               : "v1";
    snprintf(wh->signer.api_version, sizeof(wh->signer.api_version), "%s", v);
}

int serve_webhook_resign(struct webhook *wh, int64_t now_ms, char *err, size_t errlen)
{
    struct signer sg;
    if (webhook_signer(wh, now_ms, &sg, err, errlen)) {
        return -EINVAL;
    }
    memcpy(sg.api_version, wh->signer.api_version, sizeof(sg.api_version));
    signer_wipe(&wh->signer);
    wh->signer = sg;
    return 0;
}

/* webhook_hand_over gives wh an endpoint slot in the worker pool (once) and has the owning
 * worker build its own endpoint and signer copy from wh's fields. Returns 0 or -ENOMEM. */
static int webhook_hand_over(struct serve *s, struct webhook *wh)
{
    if (!s->xp) {
        return 0;
    }
    if (!wh->slotted) {
        wh->slot = s->nfree_slots ? s->free_slots[--s->nfree_slots] : s->nslots++;
        wh->slotted = true;
    }
    struct xpool_endpoint e = {
        .signer = wh->signer,
        .timeout_ms = wh->timeout_ms,
        .max_conns = wh->max_in_flight ? wh->max_in_flight : WH_DEFAULT_CONNS,
        .max_inflight = wh->max_in_flight ? wh->max_in_flight : WH_DEFAULT_IN_FLIGHT,
        .hdrs = wh->hdrs,
        .hdr_len = wh->hdr_len,
        .nhdr = wh->nhdr};
    /* wh's endpoint keeps only where to connect: the worker builds its own from the URL, which
     * parsed when wh's endpoint was built (ep_ok), so it parses now */
    char err[128];
    int rc = url_parse(&e.url, wh_url(wh), err, sizeof(err))
                 ? -EINVAL
                 : xpool_endpoint_set(s->xp, wh->slot, &e);
    signer_wipe(&e.signer);
    return rc;
}

int serve_webhook_release(struct serve *s, struct webhook *wh)
{
    if (!s->xp || !wh->slotted) {
        return 0;
    }
    if (s->nfree_slots == s->free_slots_cap) {
        size_t cap = s->free_slots_cap ? s->free_slots_cap * 2 : 16;
        uint32_t *n = realloc(s->free_slots, cap * sizeof(*n));
        if (!n) {
            return -ENOMEM;
        }
        s->free_slots = n;
        s->free_slots_cap = cap;
    }
    if (xpool_endpoint_drop(s->xp, wh->slot)) {
        return -ENOMEM;
    }
    s->free_slots[s->nfree_slots++] = wh->slot;
    wh->slotted = false;
    return 0;
}

int serve_webhook_apply(struct serve *s, struct webhook *wh, char *err, size_t errlen)
{
    struct url u;
    if (url_parse(&u, wh_url(wh), err, errlen)) {
        return -EINVAL;
    }
    struct signer sg;
    if (webhook_signer(wh, serve_now_ms(), &sg, err, errlen)) {
        return -EINVAL;
    }
    if (wh->ep_ok && wh->inflight) {
        /* the attempts in flight use the endpoint (and, with workers, the worker's copy): they
         * end on it. The new one is checked now and built once the last of them is back. */
        struct endpoint ep;
        int rc = webhook_endpoint(s, wh, &u, &sg, &ep, err, errlen);
        if (rc == 0) {
            endpoint_cleanup(&ep);
            wh->apply_due = true;
        }
        signer_wipe(&sg);
        return rc;
    }
    wh->apply_due = false;
    if (wh->ep_ok) {
        endpoint_cleanup(&wh->ep);
        wh->ep_ok = false;
    }
    signer_wipe(&wh->signer);
    wh->signer = sg;
    webhook_api_version(s, wh);
    int rc = webhook_endpoint(s, wh, &u, &wh->signer, &wh->ep, err, errlen);
    if (rc) {
        return rc;
    }
    wh->ep_ok = true;
    /* before serve_start (the replay) only the last state counts: serve_start hands it over */
    if (s->api_ok && webhook_hand_over(s, wh)) {
        endpoint_cleanup(&wh->ep);
        wh->ep_ok = false;
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

void serve_webhook_signer_changed(struct serve *s, struct webhook *wh)
{
    if (s->xp && wh->slotted && xpool_signer_set(s->xp, wh->slot, &wh->signer)) {
        fprintf(stderr, "hookring serve: webhook %s: out of memory handing its new signer over\n",
                wh->id);
    }
}

void serve_metrics_workers(const struct serve *s, struct buf *b)
{
    buf_puts(b, "# TYPE hookring_worker_attempts_total counter\n");
    if (!s->xp) {
        buf_printf(b, "hookring_worker_attempts_total{worker=\"0\"} %" PRIu64 "\n",
                   s->m.attempts_run);
        return;
    }
    for (uint32_t i = 0; i < xpool_workers(s->xp); i++) {
        buf_printf(b, "hookring_worker_attempts_total{worker=\"%u\"} %" PRIu64 "\n", i,
                   xpool_attempts_done(s->xp, i));
    }
}

int serve_webhook_add(struct serve *s, struct webhook *wh)
{
    if (whmap_room(s)) {
        return -ENOMEM;
    }
    if (s->nwh == s->whcap) {
        size_t cap = s->whcap ? s->whcap * 2 : 16;
        struct webhook **n = realloc(s->whs, cap * sizeof(*n));
        if (!n) {
            return -ENOMEM;
        }
        s->whs = n;
        s->whcap = cap;
    }
    s->whs[s->nwh] = wh;
    whmap_put(s->whmap, s->whmap_mask, s->whs, (uint32_t)s->nwh);
    s->nwh++;
    serve_match_dirty(s);
    return 0;
}

/* webhook_parts_free wipes wh's secrets and frees its URL, filters and headers (not wh). */
static void webhook_parts_free(struct webhook *wh)
{
    explicit_bzero(wh->secret, sizeof(wh->secret));
    explicit_bzero(wh->old_secret, sizeof(wh->old_secret));
    explicit_bzero(wh->enc_secret, sizeof(wh->enc_secret));
    free(wh->url_s);
    free(wh->events);
    free(wh->hdrs);
}

void serve_webhook_free(struct webhook *wh)
{
    if (wh) {
        webhook_parts_free(wh);
        free(wh);
    }
}

/* dup_or_null copies p[0..len) into a new allocation, NULL when len is 0. 0 or -ENOMEM. */
static int dup_or_null(const void *p, size_t len, void **out)
{
    *out = len ? malloc(len) : NULL;
    if (len && !*out) {
        return -ENOMEM;
    }
    if (len) {
        memcpy(*out, p, len);
    }
    return 0;
}

int serve_webhook_set_url(struct webhook *wh, const char *u, size_t len)
{
    char *c = strndup(u, len);
    if (!c) {
        return -ENOMEM;
    }
    wh->url_s = c;
    return 0;
}

int serve_webhook_set_events(struct webhook *wh, const char (*f)[EVENT_TYPE_MAX + 1], size_t n)
{
    void *e;
    if (dup_or_null(f, n * sizeof(*f), &e)) {
        return -ENOMEM;
    }
    wh->events = e;
    wh->nevents = n;
    return 0;
}

int serve_webhook_set_hdrs(struct webhook *wh, const char *h, size_t len, uint32_t n)
{
    void *c;
    if (dup_or_null(h, len, &c)) {
        return -ENOMEM;
    }
    wh->hdrs = c;
    wh->hdr_len = len;
    wh->nhdr = n;
    return 0;
}

static int webhook_encode(struct buf *b, const struct webhook *wh)
{
    int rc = put_cstr(b, wh->id) | put_cstr(b, wh_url(wh)) | put_cstr(b, wh->p->name) |
             put_u32(b, (uint32_t)wh->nevents);
    for (size_t i = 0; i < wh->nevents; i++) {
        rc |= put_cstr(b, wh->events[i]);
    }
    rc |= put_u8(b, wh->has_agent) | put_cstr(b, wh->agent) | put_cstr(b, wh->secret) |
          put_cstr(b, wh->enc_secret) | put_cstr(b, wh->enc_salt) | put_u8(b, wh->has_sched) |
          put_u32(b, (uint32_t)wh->nsched);
    for (size_t i = 0; i < wh->nsched; i++) {
        rc |= put_u32(b, wh->sched[i]);
    }
    rc |= put_u32(b, wh->timeout_ms) | put_u8(b, (uint8_t)wh->status) |
          put_u64(b, (uint64_t)wh->created_ms);
    /* added after the first version: a record without them has no previous secret */
    rc |= put_cstr(b, wh->old_secret) | put_u64(b, (uint64_t)wh->old_until_ms);
    /* added with max_in_flight, the failing period, api_version pinning and custom headers: a
     * record without them has none of them */
    rc |= put_u32(b, wh->max_in_flight) | put_u64(b, (uint64_t)wh->failing_since_ms) |
          put_cstr(b, wh->api_version) | put_u32(b, wh->nhdr) |
          put_str(b, wh->hdrs ? wh->hdrs : "", wh->hdr_len);
    return rc ? -ENOMEM : 0;
}

int serve_webhook_record(struct serve *s, const struct webhook *wh, struct journal_waiter *w)
{
    s->scratch.len = 0;
    int rc = webhook_encode(&s->scratch, wh);
    if (!rc) {
        rc = journal_append(&s->j, SREC_WEBHOOK, s->scratch.p, s->scratch.len, w);
    }
    if (rc) {
        s->m.journal_errors++;
    }
    return rc;
}

static int replay_webhook(struct serve *s, struct rd *r, char *err, size_t errlen)
{
    struct webhook *wh = calloc(1, sizeof(*wh));
    if (!wh) {
        return -ENOMEM;
    }
    char pname[32];
    rd_cstr(r, wh->id, sizeof(wh->id));
    static char url[WH_URL_MAX + 1];
    rd_cstr(r, url, sizeof(url));
    if (serve_webhook_set_url(wh, url, strlen(url))) {
        free(wh);
        return -ENOMEM;
    }
    rd_cstr(r, pname, sizeof(pname));
    static char filters[WH_MAX_EVENTS][EVENT_TYPE_MAX + 1];
    uint32_t nf = rd_u32(r);
    if (nf > WH_MAX_EVENTS) {
        r->bad = true;
        nf = 0;
    }
    for (size_t i = 0; i < nf; i++) {
        rd_cstr(r, filters[i], sizeof(filters[i]));
    }
    if (!r->bad && serve_webhook_set_events(wh, filters, nf)) {
        serve_webhook_free(wh);
        return -ENOMEM;
    }
    wh->has_agent = rd_u8(r);
    rd_cstr(r, wh->agent, sizeof(wh->agent));
    rd_cstr(r, wh->secret, sizeof(wh->secret));
    rd_cstr(r, wh->enc_secret, sizeof(wh->enc_secret));
    rd_cstr(r, wh->enc_salt, sizeof(wh->enc_salt));
    wh->has_sched = rd_u8(r);
    wh->nsched = rd_u32(r);
    if (wh->nsched > WH_MAX_SCHEDULE) {
        r->bad = true;
        wh->nsched = 0;
    }
    for (size_t i = 0; i < wh->nsched; i++) {
        wh->sched[i] = rd_u32(r);
    }
    wh->timeout_ms = rd_u32(r);
    wh->status = (enum wh_status)rd_u8(r);
    wh->created_ms = (int64_t)rd_u64(r);
    if (!r->bad && r->off < r->len) {
        rd_cstr(r, wh->old_secret, sizeof(wh->old_secret));
        wh->old_until_ms = (int64_t)rd_u64(r);
    }
    if (!r->bad && r->off < r->len) {
        wh->max_in_flight = rd_u32(r);
        wh->failing_since_ms = (int64_t)rd_u64(r);
        rd_cstr(r, wh->api_version, sizeof(wh->api_version));
        uint32_t nhdr = rd_u32(r);
        struct slice h = rd_str(r);
        if (h.len > WH_HEADERS_BYTES || nhdr > WH_MAX_HEADERS ||
            wh->max_in_flight > WH_MAX_IN_FLIGHT || !headers_packed_ok(h, nhdr)) {
            r->bad = true;
        } else if (serve_webhook_set_hdrs(wh, (const char *)h.p, h.len, nhdr)) {
            serve_webhook_free(wh);
            return -ENOMEM;
        }
    }
    if (wh->status == WH_FAILING && !wh->failing_since_ms) {
        /* failing in a record from before the field: its failing period counts from now */
        wh->failing_since_ms = serve_now_ms();
    }
    wh->p = profile_find(pname);
    if (r->bad || !wh->p || wh->status > WH_FAILING) {
        serve_webhook_free(wh);
        snprintf(err, errlen, "a webhook record is malformed");
        return -EINVAL;
    }
    struct webhook *old = serve_webhook_named(s, slice_cstr(wh->id));
    if (old) {
        /* a later state of a known webhook: keep the object (deliveries point at it) */
        if (old->ep_ok) {
            endpoint_cleanup(&old->ep);
            old->ep_ok = false;
        }
        signer_wipe(&old->signer);
        struct webhook keep = *old;
        *old = *wh;
        old->delivered = keep.delivered;
        old->failed = keep.failed;
        old->slotted = keep.slotted; /* the same endpoint slot on the same worker */
        old->slot = keep.slot;
        old->nref = keep.nref; /* its deliveries replayed so far */
        old->apply_listed = keep.apply_listed;
        old->next_apply = keep.next_apply;
        webhook_parts_free(&keep); /* old has wh's now */
        explicit_bzero(wh, sizeof(*wh));
        free(wh);
        wh = old;
    } else if (serve_webhook_add(s, wh)) {
        serve_webhook_free(wh);
        return -ENOMEM;
    }
    wh->ep_ok = false;
    serve_match_dirty(s);
    if (wh->status != WH_DELETED) {
        char why[EVENT_ERR_MAX];
        if (serve_webhook_apply(s, wh, why, sizeof(why))) {
            /* what was valid then may not be now (a narrower --allow-net): keep it, disabled */
            fprintf(stderr, "hookring serve: webhook %s cannot deliver: %s\n", wh->id, why);
        }
    }
    return 0;
}

/* ======== deliveries ========================================================================= */

bool serve_dlv_id_parse(struct slice id, uint64_t *idx)
{
    if (id.len != DLV_ID_LEN || memcmp(id.p, "dlv_", 4) != 0) {
        return false;
    }
    uint64_t x = 0;
    for (size_t i = 4; i < id.len; i++) {
        uint8_t ch = id.p[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0) {
            return false;
        }
        x = x << 4 | (uint64_t)v;
    }
    *idx = x;
    return true;
}

struct delivery *serve_delivery_find(struct serve *s, struct slice id)
{
    uint64_t idx;
    return serve_dlv_id_parse(id, &idx) ? serve_dlv_at(s, idx) : NULL;
}

struct delivery *serve_dlv_at(const struct serve *s, uint64_t idx)
{
    return idx >= s->dlv_base && idx < s->dlv_end ? dtab_get(&s->dlvs, idx) : NULL;
}

/* dlv_slot widens [dlv_base, dlv_end) to hold index idx (an index below the base moves the base
 * down: only a replay of a compacted journal does that). */
static int dlv_slot(struct serve *s, uint64_t idx)
{
    if (idx >= DTAB_LIMIT) {
        return -EINVAL;
    }
    if (s->dlv_end == s->dlv_base) {
        s->dlv_base = s->dlv_end = idx;
    }
    if (idx < s->dlv_base) {
        s->dlv_base = idx;
    }
    if (idx >= s->dlv_end) {
        s->dlv_end = idx + 1;
    }
    return 0;
}

static void dlv_fire(struct wheel *w, struct wheel_timer *t);
static void dlv_done(struct attempt *a);
static void dlv_schedule(struct serve *s, struct delivery *d, int64_t delay_ms);

void serve_dlv_set_status(struct delivery *d, enum dlv_status st)
{
    if (!d->op) {
        d->s->npending += (st == DLV_PENDING) - (d->status == DLV_PENDING);
    }
    d->status = st;
}

/* wh_counted tells whether wh is a webhook of the table, whose deliveries it counts (nref):
 * not a callback destination, the callback placeholder or the operator's. */
static bool wh_counted(const struct serve *s, const struct webhook *wh)
{
    return !wh->adhoc && wh != s->cbwh && wh != s->opwh;
}

static void webhook_list_apply(struct serve *s, struct webhook *wh);

static struct delivery *dlv_new(struct serve *s, uint64_t idx, struct sevent *ev,
                                struct webhook *wh)
{
    if (dlv_slot(s, idx) || serve_dlv_at(s, idx)) {
        return NULL;
    }
    struct delivery *d = calloc(1, sizeof(*d));
    if (!d || dtab_set(&s->dlvs, idx, d)) {
        free(d);
        return NULL;
    }
    d->s = s;
    d->idx = idx;
    d->ev = ev;
    d->wh = wh;
    if (wh_counted(s, wh)) {
        wh->nref++;
    }
    d->status = DLV_PENDING;
    s->npending++;
    ev->nlive++;
    return d;
}

size_t serve_dlv_message_id(const struct delivery *d, char out[SIGN_ID_MAX + 1])
{
    struct event tmp;
    /* every send asks: the held event without the temporary's clearing (520 bytes, twice) */
    const struct event *ev = d->ev->ev ? d->ev->ev : serve_sevent_view(d->s, d->ev, &tmp);
    size_t n = 0;
    if (!ev) {
        out[0] = 0;
    } else if (d->wh->p && d->wh->p->message_id) {
        n = d->wh->p->message_id(ev, out);
    } else {
        memcpy(out, ev->id, ev->id_len + 1);
        n = ev->id_len;
    }
    if (ev == &tmp) {
        event_clear(&tmp);
    }
    return n;
}

/* text_read reads e's text back from its journal record into s->textbuf (*json points into
 * it). Returns 0 or -errno (logged: what was lost is a retry's or an answer's text, and the
 * operator should know). */
static int text_read(struct serve *s, const struct sevent *e, struct slice *json)
{
    struct journal_record rec;
    int rc = e->text_seq ? journal_read(&s->j, e->text_seq, &s->textbuf, &rec) : -ENOENT;
    if (rc == 0) {
        struct rd r = {.p = rec.payload, .len = rec.len};
        struct rec_event_head h = rd_event_head(&r, rec.type == SREC_CARRY);
        *json = h.json;
        /* a carry's continuation (anchor) holds no text */
        if (r.bad || (rec.type != SREC_EVENT && rec.type != SREC_CARRY) || h.anchor != UINT64_MAX ||
            json->len != e->text_len) {
            rc = -EIO;
        }
    }
    if (rc == 0) {
        s->m.text_reads++;
    } else {
        s->m.text_errors++;
        fprintf(stderr,
                "hookring serve: the text of an event (journal record %" PRIu64
                ") cannot be read back: %s\n",
                e->text_seq, rc == -EIO ? journal_error(&s->j) : strerror(-rc));
    }
    return rc;
}

/* ev_in_table tells whether e is in serve.evs (whose held texts ntexts counts). */
static bool ev_in_table(const struct serve *s, const struct sevent *e)
{
    return e->slot < s->nev && s->evs[e->slot] == e;
}

int serve_sevent_text(struct serve *s, struct sevent *e)
{
    if (e->json.len) {
        return 0;
    }
    struct slice json;
    int rc = text_read(s, e, &json);
    if (rc) {
        return rc;
    }
    if (buf_reserve_exact(&e->json, json.len) || buf_put_slice(&e->json, json)) {
        buf_free(&e->json);
        return -ENOMEM;
    }
    s->ntexts += ev_in_table(s, e);
    return 0;
}

/* sevent_hold_ev makes ev (complete) e's parsed event, noting whether it has a callback. */
static void sevent_hold_ev(struct sevent *e, struct event *ev)
{
    e->ev = ev;
    e->ev_cb = ev->callback != NULL;
}

struct event *serve_sevent_ev(struct serve *s, struct sevent *e)
{
    if (!e->ev) {
        if (serve_sevent_text(s, e)) {
            return NULL;
        }
        struct event *ev = malloc(sizeof(*ev));
        char err[EVENT_ERR_MAX];
        if (!ev || event_parse(ev, e->json.p, e->json.len, e->ingest_ms, err, sizeof(err))) {
            free(ev);
            return NULL;
        }
        sevent_hold_ev(e, ev);
    }
    return e->ev;
}

const struct event *serve_sevent_view(struct serve *s, const struct sevent *e, struct event *tmp)
{
    memset(tmp, 0, sizeof(*tmp));
    if (e->ev) {
        return e->ev;
    }
    struct slice json = buf_slice(&e->json);
    if (!json.len) {
        if (text_read(s, e, &json)) {
            return NULL;
        }
        s->viewbuf.len = 0;
        if (buf_put_slice(&s->viewbuf, json)) {
            return NULL;
        }
        json = buf_slice(&s->viewbuf);
    }
    char err[EVENT_ERR_MAX];
    return event_parse(tmp, json.p, json.len, e->ingest_ms, err, sizeof(err)) ? NULL : tmp;
}

/* sevent_ev_drop lets go of e's parsed event (its text stays). */
static void sevent_ev_drop(struct sevent *e)
{
    if (e->ev) {
        if (e->ev_cb) {
            event_release(e->ev);
        }
        free(e->ev);
        e->ev = NULL;
        e->ev_cb = false;
    }
}

bool serve_sevent_cover(struct sevent *e, uint64_t idx)
{
    uint64_t first = e->span == 0 || idx < e->first_idx ? idx : e->first_idx;
    uint64_t last = e->span == 0 ? idx : e->first_idx + e->span - 1;
    last = idx > last ? idx : last;
    if (last - first >= UINT32_MAX) {
        return false;
    }
    e->first_idx = first;
    e->span = (uint32_t)(last - first + 1);
    return true;
}

/* sevent_unfinished tells whether a delivery of e is pending or in flight, looking from the
 * one after index from onwards (wrapping round): deliveries of an event finish roughly in index
 * order, so with a wide fan-out an unfinished one is usually found at once, rather than each
 * delivery finishing scanning them all. */
static bool sevent_unfinished(const struct serve *s, const struct sevent *e, uint64_t from)
{
    uint32_t start = from >= e->first_idx && from - e->first_idx < e->span
                         ? (uint32_t)(from - e->first_idx + 1)
                         : 0;
    for (uint32_t k = 0; k < e->span; k++) {
        uint32_t i = (start + k) % e->span;
        const struct delivery *d = serve_dlv_at(s, e->first_idx + i);
        if (d && d->ev == e && (d->status == DLV_PENDING || d->status == DLV_SENDING)) {
            return true;
        }
    }
    return false;
}

/* sevent_release is serve_sevent_release after a delivery of index from became final. */
static void sevent_release(struct serve *s, struct sevent *e, uint64_t from)
{
    if (sevent_unfinished(s, e, from)) {
        return;
    }
    sevent_ev_drop(e);
    if (e->json.len && e->text_seq && e->text_seq <= journal_durable_seq(&s->j)) {
        s->ntexts -= ev_in_table(s, e);
        buf_free(&e->json); /* read back from the journal if it is ever needed again */
    }
}

void serve_sevent_release(struct serve *s, struct sevent *e)
{
    sevent_release(s, e, UINT64_MAX);
}

int serve_dlv_set_why(struct delivery *d, const char *why)
{
    free(d->why);
    d->why = NULL;
    if (!why || !why[0]) {
        return 0;
    }
    d->why = strndup(why, DLV_WHY_MAX);
    return d->why ? 0 : -ENOMEM;
}

/* dlv_flight_free frees what d needed for its attempts (none is in flight, and d is out of its
 * ready queue): its retry timer goes with it. */
static void dlv_flight_free(struct delivery *d)
{
    if (d->fl) {
        wheel_del(&d->fl->timer);
        buf_free(&d->fl->body);
        free(d->fl);
        d->fl = NULL;
    }
}

static void dlv_final(struct serve *s, struct delivery *d, enum dlv_status st, const char *why,
                      const struct dlv_attempt *h);

/* dlv_live is d's flight state, made now if d has none. Out of memory, d fails (NULL). */
static struct dlv_flight *dlv_live(struct serve *s, struct delivery *d)
{
    if (!d->fl) {
        struct dlv_flight *fl = calloc(1, sizeof(*fl));
        if (!fl) {
            dlv_final(s, d, DLV_FAILED, "out of memory", NULL);
            return NULL;
        }
        fl->d = d;
        wheel_timer_init(&fl->timer, dlv_fire);
        buf_init(&fl->body, 64u << 20);
        d->fl = fl;
    }
    return d->fl;
}

/* ---- the ready queue: deliveries due while their webhook has max_in_flight attempts out ---- */

static uint32_t wh_limit(const struct webhook *wh)
{
    return wh->max_in_flight ? wh->max_in_flight : WH_DEFAULT_IN_FLIGHT;
}

/* wh_room tells whether an attempt of wh may start now: under its cap, and its endpoint not
 * waiting to be built anew */
static bool wh_room(const struct webhook *wh)
{
    return wh->inflight < wh_limit(wh) && !wh->apply_due;
}

/* ready_push queues d (it has its flight state: dlv_live) */
static void ready_push(struct webhook *wh, struct delivery *d)
{
    struct dlv_flight *fl = d->fl;
    fl->pf_sev = d->ev;
    fl->pf_ev = d->ev->ev;
    fl->pf_data = d->ev->ev ? d->ev->ev->data : (struct slice){0};
    fl->rnext = NULL;
    fl->rprev = wh->ready_tail;
    if (wh->ready_tail) {
        wh->ready_tail->rnext = fl;
    } else {
        wh->ready_head = fl;
    }
    wh->ready_tail = fl;
    wh->nready++;
    d->s->nready_all++;
    d->queued = true;
}

/* ready_unlink takes d out of its webhook's ready queue, if it is in it. */
static void ready_unlink(struct delivery *d)
{
    if (!d->queued) {
        return;
    }
    struct webhook *wh = d->wh;
    struct dlv_flight *fl = d->fl;
    if (fl->rprev) {
        fl->rprev->rnext = fl->rnext;
    } else {
        wh->ready_head = fl->rnext;
    }
    if (fl->rnext) {
        fl->rnext->rprev = fl->rprev;
    } else {
        wh->ready_tail = fl->rprev;
    }
    fl->rprev = fl->rnext = NULL;
    d->queued = false;
    wh->nready--;
    d->s->nready_all--;
}

/* ---- shared response excerpts ----------------------------------------------------------- */

/* excerpt_grow doubles the excerpt table's chains (from 64) once there are more excerpts
 * than chains. Returns 0 or -ENOMEM (the table is left as it was). */
static int excerpt_grow(struct serve *s)
{
    size_t cap = s->xtab ? (s->xtab_mask + 1) * 2 : 64;
    struct dlv_excerpt **n = calloc(cap, sizeof(*n));
    if (!n) {
        return -ENOMEM;
    }
    for (size_t i = 0; s->xtab && i <= s->xtab_mask; i++) {
        for (struct dlv_excerpt *x = s->xtab[i], *next; x; x = next) {
            next = x->next;
            size_t b = slice_hash(slice_of(x->text, x->len)) & (cap - 1);
            x->next = n[b];
            n[b] = x;
        }
    }
    free(s->xtab);
    s->xtab = n;
    s->xtab_mask = cap - 1;
    return 0;
}

int serve_excerpt_set(struct serve *s, struct dlv_attempt *h, const uint8_t *text, size_t len)
{
    h->x = NULL;
    char shown[DLV_EXCERPT];
    size_t n = len < DLV_EXCERPT ? len : DLV_EXCERPT;
    for (size_t i = 0; i < n; i++) {
        shown[i] = text[i] >= 0x20 && text[i] < 0x7f ? (char)text[i] : '.';
    }
    if (n == 0) {
        return 0;
    }
    if (s->nx >= (s->xtab ? s->xtab_mask + 1 : 0) && excerpt_grow(s) && !s->xtab) {
        return -ENOMEM; /* a table that could not grow still works, with longer chains */
    }
    struct dlv_excerpt **head = &s->xtab[slice_hash(slice_of(shown, n)) & s->xtab_mask];
    for (struct dlv_excerpt *x = *head; x; x = x->next) {
        if (x->len == n && memcmp(x->text, shown, n) == 0) {
            x->refs++;
            h->x = x;
            return 0;
        }
    }
    struct dlv_excerpt *x = malloc(sizeof(*x) + n + 1);
    if (!x) {
        return -ENOMEM;
    }
    memcpy(x->text, shown, n);
    x->text[n] = 0;
    x->len = (uint8_t)n;
    x->refs = 1;
    x->next = *head;
    *head = x;
    s->nx++;
    h->x = x;
    return 0;
}

/* excerpt_put lets go of h's excerpt, freed with its last attempt. */
static void excerpt_put(struct serve *s, struct dlv_attempt *h)
{
    struct dlv_excerpt *x = h->x;
    h->x = NULL;
    if (!x || --x->refs) {
        return;
    }
    struct dlv_excerpt **p = &s->xtab[slice_hash(slice_of(x->text, x->len)) & s->xtab_mask];
    while (*p != x) {
        p = &(*p)->next;
    }
    *p = x->next;
    s->nx--;
    free(x);
}

void serve_hist_free(struct serve *s, struct dlv_attempt *hist, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        excerpt_put(s, &hist[i]);
    }
    free(hist);
}

/* dlv_release frees d itself, whatever it holds (its slot is not touched). */
static void dlv_release(struct delivery *d)
{
    struct webhook *wh = d->wh;
    if (!d->op && wh_counted(d->s, wh) && --wh->nref == 0 && wh->status == WH_DELETED) {
        webhook_list_apply(d->s, wh); /* freed after this loop iteration */
    }
    ready_unlink(d);
    dlv_flight_free(d);
    free(d->why);
    serve_hist_free(d->s, d->hist, d->nhist);
    free(d);
}

static void adhoc_free(struct serve *s, struct webhook *wh);

/* dlv_free frees a delivery that never started (and its callback destination, if any). */
static void dlv_free(struct serve *s, struct delivery *d)
{
    if (!d) {
        return;
    }
    struct webhook *adhoc = d->wh->adhoc ? d->wh : NULL;
    if (serve_dlv_at(s, d->idx) == d) {
        dtab_clear(&s->dlvs, d->idx);
        d->ev->nlive--;
        s->npending -= d->status == DLV_PENDING;
    }
    dlv_release(d); /* (it looks at its webhook) */
    adhoc_free(s, adhoc);
}

static int attempt_encode(struct buf *b, const struct delivery *d, const struct dlv_attempt *h)
{
    int rc = put_u64(b, d->idx) | put_u32(b, d->attempts) | put_u8(b, (uint8_t)d->status) |
             put_u64(b, (uint64_t)d->next_at_ms) | put_cstr(b, dlv_why(d));
    if (h) {
        rc |= put_u8(b, 1) | put_u64(b, (uint64_t)h->at_ms) | put_u32(b, (uint32_t)h->status) |
              put_u8(b, h->result) | put_u32(b, h->latency_us) | put_cstr(b, dlv_excerpt(h));
    } else {
        rc |= put_u8(b, 0);
    }
    /* added after the first version: when it became final (0 while pending) */
    rc |= put_u64(b, (uint64_t)d->final_ms);
    return rc ? -ENOMEM : 0;
}

/* dlv_record journals d's state after an attempt (h) or a decision without one. Nobody waits:
 * a record lost in a crash only repeats an attempt (at least once). */
static void dlv_record(struct serve *s, const struct delivery *d, const struct dlv_attempt *h)
{
    if (d->op || keep_before_record(s, d)) {
        return;
    }
    s->scratch.len = 0;
    if (attempt_encode(&s->scratch, d, h) ||
        journal_append(&s->j, SREC_ATTEMPT, s->scratch.p, s->scratch.len, NULL)) {
        s->m.journal_errors++;
    }
}

/* hist_push appends *h to d's history, which takes over its excerpt (let go of on failure). */
static int hist_push(struct serve *s, struct delivery *d, struct dlv_attempt *h)
{
    struct dlv_attempt *n = realloc(d->hist, (d->nhist + 1) * sizeof(*n));
    if (!n) {
        excerpt_put(s, h);
        return -ENOMEM;
    }
    d->hist = n;
    d->hist[d->nhist++] = *h;
    return 0;
}

static void dlv_final(struct serve *s, struct delivery *d, enum dlv_status st, const char *why,
                      const struct dlv_attempt *h)
{
    ready_unlink(d);
    serve_dlv_set_status(d, st);
    serve_dlv_set_why(d, why); /* out of memory: the reason is lost, not the outcome */
    d->next_at_ms = 0;
    /* after an attempt, when its answer came (sent + latency: no clock read per delivery) */
    d->final_ms = h ? h->at_ms + h->latency_us / 1000 : serve_now_ms();
    dlv_flight_free(d);
    if (d->op) {
        return;
    }
    if (st == DLV_DELIVERED) {
        s->m.delivered++;
        d->wh->delivered++;
        d->wh->exhausted_run = 0;
        if (d->wh->status == WH_FAILING) {
            d->wh->status = WH_ACTIVE;
            d->wh->failing_since_ms = 0;
            printf("operator: webhook %s is active again (a delivery succeeded)\n", d->wh->id);
            fflush(stdout);
            serve_webhook_record(s, d->wh, NULL);
        }
    } else {
        s->m.failed++;
        d->wh->failed++;
    }
    dlv_record(s, d, h);
    sevent_release(s, d->ev, d->idx); /* had again if it is ever sent again */
    if (d->wh->adhoc) {
        /* a callback destination is done with: freed after this loop iteration's completions
         * (its endpoint may still be named by the attempt that just finished) */
        d->wh->next_release = s->release;
        s->release = d->wh;
        d->wh = s->cbwh;
    }
}

static void dlv_send(struct serve *s, struct delivery *d)
{
    struct webhook *wh = d->wh;
    /* with workers, an endpoint not handed over (released) cannot send either */
    bool usable = wh->ep_ok && (!s->xp || wh->slotted);
    if (!wh_live(wh) || !usable) {
        dlv_final(s, d, DLV_FAILED,
                  wh->status == WH_DELETED ? "webhook_deleted"
                  : usable                 ? "webhook_disabled"
                                           : "endpoint_unusable",
                  NULL);
        return;
    }
    if (wh->old_secret[0] && serve_now_ms() >= wh->old_until_ms) {
        /* the grace of the previous secret is over: sign with the current one only (nothing to
         * journal: a replay finds the grace over too) */
        char err[EVENT_ERR_MAX];
        memset(wh->old_secret, 0, sizeof(wh->old_secret));
        if (serve_webhook_resign(wh, serve_now_ms(), err, sizeof(err))) {
            fprintf(stderr, "hookring serve: webhook %s: %s\n", wh->id, err);
        } else {
            serve_webhook_signer_changed(s, wh);
        }
    }
    if (wh->p->pid == PROFILE_HUMANOS && !wh->api_version[0] && !d->op) {
        /* the first delivery pins the api_version in force (journaled; PATCH changes it) */
        snprintf(wh->api_version, sizeof(wh->api_version), "%s", wh->signer.api_version);
        serve_webhook_record(s, wh, NULL);
    }
    if (!wh_room(wh)) {
        /* sent when an attempt of wh finishes (wh_drain): nothing is built for it before */
        if (!d->queued) {
            if (!dlv_live(s, d)) {
                return;
            }
            serve_dlv_set_status(d, DLV_PENDING);
            ready_push(wh, d);
        }
        return;
    }
    struct event *ev = serve_sevent_ev(s, d->ev);
    if (!ev) {
        dlv_final(s, d, DLV_FAILED, "the event's text cannot be read back from the journal", NULL);
        return;
    }
    struct dlv_flight *fl = dlv_live(s, d);
    if (!fl) {
        return;
    }
    if (!fl->msg_id_set) {
        fl->msg_id_len = serve_dlv_message_id(d, fl->msg_id);
        fl->msg_id_set = true;
    }
    if (fl->body.len == 0 || wh->p->pid == PROFILE_HUMANOS) {
        /* humanos draws a fresh IV for every attempt: its body is rebuilt each time */
        char err[EVENT_ERR_MAX];
        fl->body.len = 0;
        /* one allocation for the common case: the event's text plus the profile's wrapping
         * (humanos: base64 of it) */
        if (fl->body.cap == 0 && buf_reserve(&fl->body, d->ev->json.len * 4 / 3 + 512)) {
            dlv_final(s, d, DLV_FAILED, "out of memory", NULL);
            return;
        }
        if (wh->p->build_body(&wh->signer, ev, &fl->body, err, sizeof(err))) {
            char why[DLV_WHY_MAX + 1];
            snprintf(why, sizeof(why), "bad_event: %.170s", err);
            dlv_final(s, d, DLV_FAILED, why, NULL);
            return;
        }
    }
    serve_dlv_set_status(d, DLV_SENDING);
    fl->a = (struct attempt){.ep = &wh->ep,
                             .event = ev,
                             .body = buf_slice(&fl->body),
                             .id = slice_of(fl->msg_id, fl->msg_id_len),
                             .done = dlv_done};
    s->inflight++;
    wh->inflight++;
    if (!s->xp) {
        client_submit(&fl->a); /* its done callback may run at once */
    } else if (xpool_submit(s->xp, wh->slot, &fl->a)) {
        /* not handed over (out of memory): tried again in a second */
        s->inflight--;
        wh->inflight--;
        dlv_schedule(s, d, 1000);
    }
}

static void dlv_schedule(struct serve *s, struct delivery *d, int64_t delay_ms)
{
    if (delay_ms < 0) {
        delay_ms = 0;
    }
    ready_unlink(d);
    struct dlv_flight *fl = dlv_live(s, d);
    if (!fl) {
        return;
    }
    serve_dlv_set_status(d, DLV_PENDING);
    wheel_add(&s->wheel, &fl->timer, ring_now_ms(s->r) + (uint64_t)delay_ms);
}

/* dlv_prefetch asks for what dlv_send reads of the delivery queued with flight fl: a queued
 * delivery waits behind hundreds of others, and by its turn it (the delivery, its event, the
 * members the body is built from, and the data, 16 lines for 1 KiB) has left the caches.
 * Fetched one send ahead, it arrives while the attempts in flight finish. Every address comes
 * from fl itself (warm: taking the one before it out of the queue wrote to it), so nothing
 * here waits for memory; and the flight after it is asked for, to be warm in its turn. */
static void dlv_prefetch(const struct dlv_flight *fl)
{
    __builtin_prefetch(fl->d);
    __builtin_prefetch(fl->pf_sev);
    if (fl->rnext) {
        __builtin_prefetch(&fl->rnext->rprev);
        __builtin_prefetch(&fl->rnext->pf_data + 1); /* the hints may cross a line */
    }
    const struct event *ev = fl->pf_ev;
    if (ev) {
        __builtin_prefetch(ev->type);
        __builtin_prefetch(&ev->type_len);
        __builtin_prefetch(ev->created_at);
        __builtin_prefetch(&ev->created_at_len);
        __builtin_prefetch(&ev->data);
    }
    size_t n = fl->pf_data.len < 4096 ? fl->pf_data.len : 4096;
    for (size_t off = 0; off < n; off += 64) {
        __builtin_prefetch(fl->pf_data.p + off);
    }
    if (n) {
        __builtin_prefetch(fl->pf_data.p + n - 1);
    }
}

/* wh_drain sends wh's ready deliveries while it has room for attempts. Not re-entered: an
 * attempt that finishes at once (inside dlv_send) leaves the loop to go on. */
static void wh_drain(struct serve *s, struct webhook *wh)
{
    if (wh->draining || s->stopping) {
        return; /* stopping: the queued ones are pending in the journal, resumed at start */
    }
    wh->draining = true;
    while (wh->ready_head && wh_room(wh)) {
        struct dlv_flight *fl = wh->ready_head, *next = fl->rnext;
        struct delivery *d = fl->d;
        ready_unlink(d);
        if (next) {
            dlv_prefetch(next); /* sent when the next attempt of wh finishes */
        }
        dlv_send(s, d);
    }
    wh->draining = false;
}

static void dlv_fire(struct wheel *w, struct wheel_timer *t)
{
    struct delivery *d = container_of(t, struct dlv_flight, timer)->d;
    if (d->s->stopping) {
        return; /* its retry time is journaled: the next start resumes it */
    }
    dlv_send(d->s, d);
}

/* ---- the endpoint life cycle and operator events ---- */

static void ev_free(struct sevent *e);
static struct sevent *sevent_new(const uint8_t *json, size_t len, int64_t ingest_ms, char *err,
                                 size_t errlen);

/* operator events kept at once (pending ones; finished ones are swept when the table is full) */
#define SERVE_OPS_MAX 16384

/* op_sweep frees the operator deliveries that are over (none of them is in flight). */
static void op_sweep(struct serve *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->nops; i++) {
        struct delivery *d = s->ops[i];
        if (d->status == DLV_DELIVERED || d->status == DLV_FAILED) {
            ev_free(d->ev);
            dlv_release(d);
        } else {
            s->ops[k++] = d;
        }
    }
    s->nops = k;
}

/* op_notify logs an operator event (type, about wh and, if not NULL, d) on stdout and posts it
 * to --operator-url when set: best effort (retried on the standard schedule, not journaled). */
static void op_notify(struct serve *s, const char *type, const struct webhook *wh,
                      const struct delivery *d, const char *reason)
{
    char dlv[DLV_ID_LEN + 1] = "";
    if (d) {
        serve_format_dlv_id(dlv, d->idx);
    }
    printf("operator: %s webhook %s%s%s: %s\n", type, wh->id, d ? " delivery " : "", dlv, reason);
    fflush(stdout);
    if (!s->opwh || s->stopping) {
        return;
    }
    uint8_t rid[8];
    char id[24] = "evt_op_";
    RAND_bytes(rid, sizeof(rid));
    hex_encode(id + 7, rid, sizeof(rid));
    id[23] = 0;
    struct buf b;
    buf_init(&b, 1 << 20);
    buf_printf(&b, "{\"id\":\"%s\",\"type\":\"%s\",\"data\":{\"webhook_id\":\"%s\",\"url\":", id,
               type, wh->id);
    json_put_string(&b, slice_cstr(wh_url(wh)));
    buf_printf(&b, ",\"status\":\"%s\",\"reason\":", serve_wh_status_name(wh->status));
    json_put_string(&b, slice_cstr(reason));
    if (d) {
        struct event tmp;
        const struct event *dev = serve_sevent_view(s, d->ev, &tmp);
        buf_printf(&b, ",\"delivery_id\":\"%s\",\"event_id\":", dlv);
        json_put_string(&b, dev ? slice_of(dev->id, dev->id_len) : slice_cstr(""));
        buf_printf(&b, ",\"event_type\":\"%s\",\"attempts\":%u,\"last_status\":%d",
                   dev ? dev->type : "", d->attempts, d->nhist ? d->hist[d->nhist - 1].status : 0);
        event_clear(&tmp);
    }
    buf_puts(&b, "}}");
    char err[EVENT_ERR_MAX];
    struct sevent *e = sevent_new(b.p, b.len, serve_now_ms(), err, sizeof(err));
    buf_free(&b);
    struct delivery *od = e ? calloc(1, sizeof(*od)) : NULL;
    if (od && s->nops == s->opcap) {
        op_sweep(s);
    }
    if (od && s->nops == s->opcap && s->opcap < SERVE_OPS_MAX) {
        size_t cap = s->opcap ? s->opcap * 2 : 16;
        struct delivery **n = realloc(s->ops, cap * sizeof(*n));
        if (n) {
            s->ops = n;
            s->opcap = cap;
        }
    }
    if (!od || s->nops == s->opcap) {
        fprintf(stderr, "hookring serve: operator event %s not sent: %s\n", type,
                od ? "too many still pending" : "out of memory");
        free(od);
        ev_free(e);
        return;
    }
    od->s = s;
    od->idx = UINT64_MAX;
    od->op = true;
    od->ev = e;
    od->wh = s->opwh;
    od->status = DLV_PENDING;
    s->ops[s->nops++] = od;
    dlv_send(s, od);
}

/* webhook_failing marks an active wh failing (journaled) and says so. */
static void webhook_failing(struct serve *s, struct webhook *wh, const char *why)
{
    if (wh->status != WH_ACTIVE) {
        return;
    }
    wh->status = WH_FAILING;
    wh->failing_since_ms = serve_now_ms();
    serve_webhook_record(s, wh, NULL);
    op_notify(s, "endpoint.failing", wh, NULL, why);
}

/* webhook_disable disables a live wh (journaled), says so, and ends its pending deliveries
 * failed (those in flight end when their attempt does). */
static void webhook_disable(struct serve *s, struct webhook *wh, const char *reason)
{
    if (!wh_live(wh)) {
        return;
    }
    wh->status = WH_DISABLED;
    wh->failing_since_ms = 0;
    serve_webhook_record(s, wh, NULL);
    op_notify(s, "endpoint.disabled", wh, NULL, reason);
    serve_webhook_end_pending(s, wh, "webhook_disabled");
}

void serve_webhook_end_pending(struct serve *s, struct webhook *wh, const char *why)
{
    struct delivery *d;
    SERVE_EACH_DLV(s, d)
    {
        if (d->wh == wh && d->status == DLV_PENDING) {
            dlv_final(s, d, DLV_FAILED, why, NULL); /* its retry timer goes with its flight */
        }
    }
}

/* serve_sweep disables every webhook that has been failing for --disable-after. */
static void serve_sweep(struct serve *s)
{
    int64_t now = serve_now_ms();
    for (size_t i = 0; i < s->nwh; i++) {
        struct webhook *wh = s->whs[i];
        if (wh->status == WH_FAILING && wh->failing_since_ms &&
            now - wh->failing_since_ms >= s->disable_after_ms) {
            webhook_disable(s, wh, "failing_period");
        }
    }
}

static void sweep_arm(struct serve *s)
{
    /* a twentieth of the period, within 10 ms .. 1 s: the disable comes at most that late */
    int64_t every = s->disable_after_ms / 20;
    every = every < 10 ? 10 : every > 1000 ? 1000 : every;
    wheel_add(&s->wheel, &s->sweep, ring_now_ms(s->r) + (uint64_t)every);
}

/* journal_watch logs each change of the journal's state (stuck for want of room, failed, fine
 * again): both refuse every ingest, and the operator must see why. */
static void journal_watch(struct serve *s)
{
    struct journal_stats js;
    journal_stats(&s->j, &js);
    int state = journal_failed(&s->j) ? 2 : js.stuck ? 1 : 0;
    if (state == s->journal_said) {
        return;
    }
    if (state == 2) {
        fprintf(stderr,
                "hookring serve: the journal failed: %s; nothing is acknowledged any more "
                "(ingest answers 503): fix the cause and restart\n",
                journal_error(&s->j));
    } else if (state == 1) {
        fprintf(stderr,
                "hookring serve: the journal has no room for its next segment in %s: %s; ingest "
                "answers 503 (Retry-After: 5) until it has (tried every second)\n",
                s->j.dir, strerror(-js.stuck));
        s->stuck_since_ms = serve_now_ms();
    } else {
        fprintf(stderr, "hookring serve: the journal has room again after %.1f s: ingest resumed\n",
                (double)(serve_now_ms() - s->stuck_since_ms) / 1000.0);
    }
    s->journal_said = state;
}

static void sweep_fire(struct wheel *w, struct wheel_timer *t)
{
    struct serve *s = container_of(t, struct serve, sweep);
    if (s->stopping) {
        return;
    }
    journal_watch(s);
    serve_sweep(s);
    sweep_arm(s);
}

/* dlv_lifecycle applies what attempt outcome v of d means for its webhook: exhaustion is
 * announced and may mark the webhook failing (humanconnection: any delivery's 5th failed retry
 * does; other profiles: --failing-after exhausted deliveries in a row), 410 disables it. */
static void dlv_lifecycle(struct serve *s, struct delivery *d, enum retry_verdict v)
{
    struct webhook *wh = d->wh;
    uint8_t fa = wh->p->failing_after;
    if (v == RETRY_DELIVERED) {
        return;
    }
    if (v == RETRY_GONE) {
        webhook_disable(s, wh, "it answered 410 Gone");
        return;
    }
    if (v == RETRY_EXHAUSTED) {
        op_notify(s, "message.attempt.exhausted", wh, d, dlv_why(d));
    }
    if (fa && d->attempts == fa + 1u) {
        char why[64];
        snprintf(why, sizeof(why), "a delivery's retry %u failed", fa);
        webhook_failing(s, wh, why);
    } else if (!fa && v == RETRY_EXHAUSTED) {
        wh->exhausted_run++;
        if (wh->exhausted_run >= s->o.failing_after) {
            char why[96];
            snprintf(why, sizeof(why), "%u deliveries in a row exhausted their retries",
                     wh->exhausted_run);
            webhook_failing(s, wh, why);
        }
    }
}

static void dlv_done(struct attempt *a)
{
    /* d->fl is freed once d is final (dlv_final): a is not used after the verdict's switch */
    struct delivery *d = container_of(a, struct dlv_flight, a)->d;
    struct serve *s = d->s;
    struct webhook *wh = d->wh;
    s->inflight--;
    wh->inflight--;
    s->m.attempts++;
    s->m.attempts_run++;
    d->attempts++;
    struct dlv_attempt h = {.at_ms = a->sent_unix_ms ? a->sent_unix_ms : serve_now_ms(),
                            .status = a->status,
                            .result = (uint8_t)a->result};
    /* from the request's send (the time shown as at), not from the submit: under a backlog an
     * attempt waits for a connection first, which is not the receiver's latency; an attempt that
     * never got to send (connect failed) counts from its submit */
    int64_t lat = (a->done_ns - (a->sent_ns ? a->sent_ns : a->submit_ns)) / 1000;
    h.latency_us = lat < 0 ? 0 : lat > UINT32_MAX ? UINT32_MAX : (uint32_t)lat;
    serve_excerpt_set(s, &h, (const uint8_t *)a->excerpt, a->excerpt_len);
    hist_push(s, d, &h);
    struct retry_policy pol = retry_policy_of(wh->p, s->o.time_scale);
    if (wh->has_sched) {
        pol.schedule_s = wh->sched;
        pol.n = wh->nsched;
    }
    int64_t delay = 0;
    enum retry_verdict v = retry_decide(&pol, a, d->attempts, &s->rng, &delay);
    if (!s->o.quiet) {
        printf("delivery %016" PRIx64 " %s attempt %u: %s %d -> %s\n", d->idx, wh->id, d->attempts,
               attempt_result_name(a->result), a->status, retry_verdict_name(v));
    }
    switch (v) {
    case RETRY_DELIVERED:
        dlv_final(s, d, DLV_DELIVERED, "", &h);
        break;
    case RETRY_AGAIN:
        if (!wh_live(wh)) {
            dlv_final(s, d, DLV_FAILED, "webhook_disabled", &h);
            break;
        }
        s->m.retries++;
        d->next_at_ms = serve_now_ms() + delay;
        dlv_schedule(s, d, delay);
        dlv_record(s, d, &h);
        break;
    case RETRY_EXHAUSTED:
        dlv_final(s, d, DLV_FAILED, pol.n ? "retries_exhausted" : "failed_no_retries", &h);
        break;
    case RETRY_GONE:
        dlv_final(s, d, DLV_FAILED, "gone", &h);
        break;
    }
    if (!d->op && !wh->adhoc) {
        dlv_lifecycle(s, d, v);
    }
    if ((wh->apply_due || (wh->status == WH_DELETED && (wh->ep_ok || wh->slotted))) &&
        wh->inflight == 0) {
        webhook_list_apply(s, wh);
    }
    wh_drain(s, wh);
}

/* xp_done is the worker pool's done callback: the attempt is back on this thread. */
static void xp_done(void *arg, struct attempt *a)
{
    dlv_done(a);
}

int serve_dlv_retry(struct serve *s, struct delivery *d)
{
    if (d->status == DLV_SENDING || d->status == DLV_DELIVERED) {
        return -EBUSY;
    }
    if (!wh_live(d->wh) || !d->wh->ep_ok) {
        return -EPERM;
    }
    serve_dlv_set_why(d, NULL);
    d->next_at_ms = serve_now_ms();
    dlv_schedule(s, d, 0);
    dlv_record(s, d, NULL);
    return 0;
}

/* ======== events ============================================================================= */

/* canonical_event writes ev as the JSON text the journal keeps: every member event_parse reads,
 * data verbatim, so replaying it gives the same event. */
static int canonical_event(struct buf *b, const struct event *ev)
{
    int rc = buf_puts(b, "{\"id\":") | json_put_string(b, slice_of(ev->id, ev->id_len)) |
             buf_puts(b, ",\"type\":") | json_put_string(b, slice_of(ev->type, ev->type_len)) |
             buf_puts(b, ",\"created_at\":") |
             json_put_string(b, slice_of(ev->created_at, ev->created_at_len));
    if (ev->has_agent) {
        rc |= buf_puts(b, ",\"agent\":") | json_put_string(b, slice_of(ev->agent, ev->agent_len));
    }
    if (ev->callback) {
        rc |= buf_puts(b, ",\"callback_url\":") |
              json_put_string(b, slice_of(ev->callback->url, ev->callback->url_len)) |
              buf_puts(b, ",\"callback_secret\":") |
              json_put_string(b, slice_of(ev->callback->secret, ev->callback->secret_len));
    }
    rc |= buf_puts(b, ",\"data\":") | buf_put_slice(b, ev->data) | buf_puts(b, "}");
    return rc ? -ENOMEM : 0;
}

/* ---- callback destinations ---- */

static void adhoc_free(struct serve *s, struct webhook *wh)
{
    if (!wh) {
        return;
    }
    if (serve_webhook_release(s, wh)) {
        /* its worker keeps the endpoint (a slot is lost, not a delivery) */
        fprintf(stderr, "hookring serve: out of memory releasing a callback destination\n");
    }
    if (wh->ep_ok) {
        endpoint_cleanup(&wh->ep);
    }
    signer_wipe(&wh->signer);
    serve_webhook_free(wh);
    s->nadhoc--;
}

/* adhoc_new builds the humcli destination of ev's callback (counted in s->nadhoc); check_body
 * also builds the body once, so that an event humcli cannot carry is refused at ingest. NULL
 * with err filled (naming the field) on failure. */
static struct webhook *adhoc_new(struct serve *s, const struct event *ev, bool check_body,
                                 char *err, size_t errlen)
{
    const struct event_callback *cb = ev->callback;
    struct webhook *wh = calloc(1, sizeof(*wh));
    if (!wh) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->nadhoc++;
    snprintf(wh->id, sizeof(wh->id), "%s", WH_CALLBACK_ID);
    wh->adhoc = true;
    wh->p = profile_find("humcli");
    wh->status = WH_ACTIVE;
    wh->created_ms = serve_now_ms();
    if (cb->url_len > WH_URL_MAX || cb->secret_len >= sizeof(wh->secret)) {
        snprintf(err, errlen, "field 'callback_url': too long");
        adhoc_free(s, wh);
        return NULL;
    }
    if (serve_webhook_set_url(wh, cb->url, cb->url_len)) {
        snprintf(err, errlen, "out of memory");
        adhoc_free(s, wh);
        return NULL;
    }
    memcpy(wh->secret, cb->secret, cb->secret_len);
    char why[EVENT_ERR_MAX];
    if (serve_webhook_apply(s, wh, why, sizeof(why))) {
        snprintf(err, errlen, "field '%s': %s",
                 strncmp(why, "secret", 6) == 0 ? "callback_secret" : "callback_url", why);
        adhoc_free(s, wh);
        return NULL;
    }
    if (check_body) {
        struct buf b;
        buf_init(&b, 64u << 20);
        int rc = wh->p->build_body(&wh->signer, ev, &b, why, sizeof(why));
        buf_free(&b);
        if (rc) {
            snprintf(err, errlen, "%s (callback_url is delivered as profile humcli)",
                     rc == -ENOMEM ? "out of memory" : why);
            adhoc_free(s, wh);
            return NULL;
        }
    }
    return wh;
}

/* adhoc_release_all frees the callback destinations whose delivery is over. */
static void adhoc_release_all(struct serve *s)
{
    while (s->release) {
        struct webhook *wh = s->release;
        s->release = wh->next_release;
        adhoc_free(s, wh);
    }
}

static int ev_keep(struct serve *s, struct sevent *e)
{
    if (s->nev >= UINT32_MAX) {
        return -ENOMEM; /* e->slot is 32 bits (and 4 G events would not fit in memory anyway) */
    }
    if (s->nev == s->evcap) {
        size_t cap = s->evcap ? s->evcap * 2 : 1024;
        struct sevent **n = realloc(s->evs, cap * sizeof(*n));
        if (!n) {
            return -ENOMEM;
        }
        s->evs = n;
        s->evcap = cap;
    }
    e->slot = s->nev;
    s->evs[s->nev++] = e;
    s->ntexts += e->json.len != 0;
    return 0;
}

static void ev_free(struct sevent *e)
{
    if (e) {
        sevent_ev_drop(e);
        buf_free(&e->json);
        free(e);
    }
}

/* sevent_new parses json (copied) into a kept event. */
/* sevent_adopt makes an event of the JSON text in *json, taking the buffer over (no copy: *json
 * is left empty, also on failure). NULL with err filled on failure. */
static struct sevent *sevent_adopt(struct buf *json, int64_t ingest_ms, char *err, size_t errlen)
{
    struct sevent *e = calloc(1, sizeof(*e));
    if (!e) {
        buf_free(json);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->json = *json;
    buf_init(json, json->max);
    e->ingest_ms = ingest_ms;
    e->text_len = (uint32_t)e->json.len;
    struct event *ev = malloc(sizeof(*ev));
    if (!ev) {
        snprintf(err, errlen, "out of memory");
        ev_free(e);
        return NULL;
    }
    if (event_parse(ev, e->json.p, e->json.len, ingest_ms, err, errlen)) {
        free(ev);
        ev_free(e);
        return NULL;
    }
    sevent_hold_ev(e, ev);
    return e;
}

/* sevent_canonical makes an event of in and its canonical text in *json (canonical_event's:
 * data is its last member), taking the buffer over (*json is left empty, also on failure) and
 * copying in rather than parsing the text again. NULL when out of memory. */
static struct sevent *sevent_canonical(struct buf *json, const struct event *in, int64_t ingest_ms)
{
    struct sevent *e = calloc(1, sizeof(*e));
    struct event *ev = malloc(sizeof(*ev));
    struct event_callback *cb = NULL;
    if (e && in->callback) {
        cb = malloc(sizeof(*cb));
        if (cb) {
            memcpy(cb, in->callback, sizeof(*cb));
        }
    }
    if (!e || !ev || (in->callback && !cb) || json->len < in->data.len + 1) {
        free(e);
        free(ev);
        free(cb);
        buf_free(json);
        return NULL;
    }
    e->json = *json;
    buf_init(json, json->max);
    e->ingest_ms = ingest_ms;
    e->text_len = (uint32_t)e->json.len;
    *ev = *in;
    ev->callback = cb;
    ev->data = (struct slice){e->json.p + e->json.len - 1 - in->data.len, in->data.len};
    sevent_hold_ev(e, ev);
    return e;
}

static struct sevent *sevent_new(const uint8_t *json, size_t len, int64_t ingest_ms, char *err,
                                 size_t errlen)
{
    struct buf b;
    buf_init(&b, len + 1);
    if (buf_put(&b, json, len)) {
        buf_free(&b);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return sevent_adopt(&b, ingest_ms, err, errlen);
}

static void dedup_key_of(uint8_t key[DEDUP_KEY_LEN], const struct event *ev)
{
    dedup_key(key, "event", (const uint8_t *)ev->id, ev->id_len);
}

static void reply_done(struct journal *j, struct journal_waiter *w, int res)
{
    struct sreply *r = container_of(w, struct sreply, w);
    struct serve *s = r->s;
    if (res == 0) {
        s->m.ingested += r->nnew;
        for (size_t i = 0; i < r->ndl; i++) {
            if (s->stopping) {
                dlv_schedule(s, r->dl[i], 0);
            } else {
                dlv_send(s, r->dl[i]);
            }
        }
        apisrv_reply(r->c, r->status, r->ctype, NULL, r->body.p, r->body.len);
    } else {
        /* never durable: forget the events (their deliveries never started); the events
         * themselves stay in memory, unused: the journal is dead anyway */
        for (size_t i = 0; i < r->ndl; i++) {
            dlv_free(s, r->dl[i]);
        }
        serve_api_error(r->c, 503, "the journal failed: nothing is acknowledged any more");
    }
    buf_free(&r->body);
    free(r->dl);
    free(r);
}

struct sreply *serve_reply_new(struct serve *s, struct apiconn *c, int status)
{
    struct sreply *r = calloc(1, sizeof(*r));
    if (!r) {
        return NULL;
    }
    r->s = s;
    r->c = c;
    r->status = status;
    r->w.cb = reply_done;
    buf_init(&r->body, 64u << 20);
    return r;
}

static void reply_drop(struct sreply *r)
{
    buf_free(&r->body);
    free(r->dl);
    free(r);
}

void serve_reply_when_durable(struct sreply *r)
{
    int rc = journal_wait(&r->s->j, &r->w);
    if (rc == 1) {
        reply_done(&r->s->j, &r->w, 0); /* nothing pending: answered now */
    } else if (rc < 0) {
        /* the journal failed: what r's events appended is never acknowledged */
        reply_done(&r->s->j, &r->w, rc);
    }
}

/* orphan_add notes that key is in the dedup table for an event that was not stored. */
static void orphan_add(struct serve *s, const uint8_t key[DEDUP_KEY_LEN])
{
    if (s->norphans == SERVE_ORPHANS_MAX) {
        if (!s->orphans_lost) {
            fprintf(stderr,
                    "hookring serve: %d events failed after their dedup entry was made; "
                    "duplicates are refused (503) until a restart\n",
                    SERVE_ORPHANS_MAX + 1);
        }
        s->orphans_lost = true;
        return;
    }
    memcpy(s->orphans[s->norphans++], key, DEDUP_KEY_LEN);
}

/* orphan_take tells whether key is an orphan, and forgets it: its event is being stored now. */
static bool orphan_take(struct serve *s, const uint8_t key[DEDUP_KEY_LEN])
{
    for (size_t i = 0; i < s->norphans; i++) {
        if (memcmp(s->orphans[i], key, DEDUP_KEY_LEN) == 0) {
            memcpy(s->orphans[i], s->orphans[--s->norphans], DEDUP_KEY_LEN);
            return true;
        }
    }
    return false;
}

enum ingest_result {
    ING_NEW = 0,
    ING_DUPLICATE,
    ING_BEHIND, /* the journal has no room now: retry */
    ING_STUCK,  /* the journal has no room on disk for its next segment: retry */
    ING_FULL,   /* the dedup window is full: retry */
    ING_HELD,   /* --max-held deliveries are held and none of them is final: retry */
    ING_FAILED, /* the journal failed */
    ING_NOMEM,
    ING_UNSURE, /* a duplicate, maybe of an event never stored (orphans_lost): retry */
};

/* ingest_one takes one parsed event (copied) into r: dedup (by key_of_in, its dedup_key_of
 * when the caller has it already; NULL: computed here), then for a new event its record is
 * appended (w, may be NULL, waits for it) and its deliveries added to r->dl, to start once r's
 * record is durable. The journal's room is checked before the dedup insert: an insert cannot be
 * undone, so an event refused for backpressure must not leave its key behind. */
static enum ingest_result ingest_one(struct serve *s, struct sreply *r, const struct event *in,
                                     const uint8_t *key_of_in, int64_t now_ms,
                                     struct journal_waiter *w, struct webhook **adhoc)
{
    if (journal_failed(&s->j)) {
        return ING_FAILED;
    }
    /* the webhooks it goes to, matched once: counted now, given deliveries below */
    struct serve_match_it mit;
    if (serve_match_begin(s, &mit, in)) {
        return ING_NOMEM;
    }
    size_t nwh = 0;
    for (struct webhook *wh; (wh = serve_match_next(&mit));) {
        if (nwh == s->matched_cap) {
            size_t cap = s->matched_cap ? s->matched_cap * 2 : 16;
            struct webhook **m = realloc(s->matched, cap * sizeof(*m));
            if (!m) {
                return ING_NOMEM;
            }
            s->matched = m;
            s->matched_cap = cap;
        }
        s->matched[nwh++] = wh;
    }
    size_t n = nwh + (*adhoc ? 1 : 0);
    struct buf canon;
    buf_init(&canon, 64u << 20);
    /* one allocation, kept as the event's text: sized for the members and their escapes */
    size_t guess =
        128 + in->data.len +
        2 * (in->id_len + in->type_len + in->created_at_len + (in->has_agent ? in->agent_len : 0));
    if (in->callback) {
        guess += 64 + 2 * (in->callback->url_len + in->callback->secret_len);
    }
    if (buf_reserve_exact(&canon, guess) || canonical_event(&canon, in)) {
        buf_free(&canon);
        return ING_NOMEM;
    }
    buf_shrink(&canon); /* it is held as long as the event is */
    /* the record: ingest time, the text, the count, (index, webhook id) per delivery; 4 KiB
     * covers its framing, with room to spare */
    size_t need = 16 + canon.len + n * (12 + WH_ID_LEN) + 4096;
    if (!keep_make_room(s, n)) {
        buf_free(&canon);
        return ING_HELD;
    }
    struct journal_stats js;
    journal_stats(&s->j, &js);
    if (js.stuck || js.pending_bytes + need > s->j.o.max_pending) {
        buf_free(&canon);
        return js.stuck ? ING_STUCK : ING_BEHIND;
    }
    uint8_t key[DEDUP_KEY_LEN];
    if (key_of_in) {
        memcpy(key, key_of_in, sizeof(key));
    } else {
        dedup_key_of(key, in);
    }
    enum dedup_result dr = dedup_insert(s->dd, key, (uint64_t)now_ms);
    if (dr == DEDUP_DUPLICATE && s->norphans && orphan_take(s, key)) {
        dr = DEDUP_NEW; /* its first copy failed before it was stored: this one is new */
    }
    if (dr != DEDUP_NEW) {
        buf_free(&canon);
        if (dr == DEDUP_DUPLICATE) {
            if (s->orphans_lost) {
                return ING_UNSURE; /* it may be an orphan no longer known */
            }
            s->m.duplicates++;
            return ING_DUPLICATE;
        }
        return ING_FULL;
    }
    /* From here on, a failure leaves the key behind: it becomes an orphan (orphan_add). */
    if (s->test_fail_ingest && --s->test_fail_ingest == 0) {
        buf_free(&canon);
        orphan_add(s, key);
        return ING_NOMEM;
    }
    struct sevent *e = sevent_canonical(&canon, in, now_ms);
    if (!e || ev_keep(s, e)) {
        ev_free(e);
        orphan_add(s, key);
        return ING_NOMEM;
    }
    size_t base = r->ndl;
    struct delivery **dl = realloc(r->dl, (base + n + 1) * sizeof(*dl));
    int rc = dl ? 0 : -ENOMEM;
    if (dl) {
        r->dl = dl;
    }
    /* the record: the text goes from e->json straight into the journal's batch (appendv),
     * between the fields before it and those after it, both in scratch */
    s->scratch.len = 0;
    rc |= put_u64(&s->scratch, (uint64_t)now_ms) | put_u32(&s->scratch, (uint32_t)e->json.len);
    size_t head = s->scratch.len;
    rc |= put_u32(&s->scratch, (uint32_t)n);
    for (size_t i = 0; i < nwh && !rc; i++) {
        struct webhook *wh = s->matched[i];
        struct delivery *d = dlv_new(s, s->dlv_end, e, wh);
        if (!d) {
            rc = -ENOMEM;
            break;
        }
        if (e->span++ == 0) {
            e->first_idx = d->idx;
        }
        r->dl[r->ndl++] = d;
        rc |= put_u64(&s->scratch, d->idx) | put_cstr(&s->scratch, wh->id);
    }
    struct delivery *cbd = NULL;
    if (*adhoc && !rc) {
        /* the callback: one more delivery, to an ad-hoc destination rebuilt from the event */
        cbd = dlv_new(s, s->dlv_end, e, *adhoc);
        if (!cbd) {
            rc = -ENOMEM;
        } else {
            if (e->span++ == 0) {
                e->first_idx = cbd->idx;
            }
            r->dl[r->ndl++] = cbd;
            rc |= put_u64(&s->scratch, cbd->idx) | put_cstr(&s->scratch, WH_CALLBACK_ID);
        }
    }
    enum ingest_result res = ING_NOMEM;
    if (!rc) {
        struct iovec iov[3] = {{s->scratch.p, head},
                               {e->json.p, e->json.len},
                               {s->scratch.p + head, s->scratch.len - head}};
        rc = journal_appendv(&s->j, SREC_EVENT, iov, 3, w);
        /* room was checked above: only a failed journal gets here */
        res = ING_FAILED;
        if (rc) {
            s->m.journal_errors++;
        }
    }
    if (rc) {
        for (size_t i = base; i < r->ndl; i++) {
            dlv_free(s, r->dl[i]);
        }
        r->ndl = base;
        s->ntexts -= e->json.len != 0;
        s->nev--;
        ev_free(e);
        if (cbd) {
            *adhoc = NULL; /* freed with its delivery */
        }
        orphan_add(s, key);
        return res;
    }
    if (cbd) {
        *adhoc = NULL; /* the delivery owns it now */
    }
    r->nnew++;
    e->jseq = journal_last_seq(&s->j);
    e->text_seq = e->jseq;
    keep_dedup_push(s, key, now_ms, e->jseq);
    if (n == 0) {
        serve_ev_drop(s, e); /* nothing refers to it: its dedup key is all that stays */
    }
    return ING_NEW;
}

/* ingest_refuse answers c for an event ingest_one did not take. */
static void ingest_refuse(struct apiconn *c, enum ingest_result ir)
{
    switch (ir) {
    case ING_BEHIND:
        SERVE_REPLY_LIT(c, 503, "Retry-After: 1\r\n",
                        "{\"error\":\"the journal is behind; retry\"}\n");
        break;
    case ING_STUCK:
        SERVE_REPLY_LIT(c, 503, "Retry-After: 5\r\n", "{\"error\":\"" SERVE_STUCK_MSG "\"}\n");
        break;
    case ING_FULL:
        SERVE_REPLY_LIT(c, 503, "Retry-After: 5\r\n",
                        "{\"error\":\"the dedup window is full; retry\"}\n");
        break;
    case ING_HELD:
        SERVE_REPLY_LIT(c, 503, "Retry-After: 5\r\n",
                        "{\"error\":\"--max-held deliveries are pending; retry\"}\n");
        break;
    case ING_FAILED:
        serve_api_error(c, 503, "the journal failed: nothing is acknowledged any more");
        break;
    case ING_UNSURE:
        SERVE_REPLY_LIT(c, 503, "Retry-After: 5\r\n", "{\"error\":\"" SERVE_UNSURE_MSG "\"}\n");
        break;
    default:
        serve_api_error(c, 500, "out of memory");
        break;
    }
}

static void ingest_with(struct serve *s, struct apiconn *c, struct event *in, int64_t now_ms,
                        struct webhook **adhoc);

/* callback_prepare builds the callback destination of in, if it has one, into *adhoc. Returns
 * 0, 400 (err names the field) or 503 (too many callback deliveries pending). */
static int callback_prepare(struct serve *s, const struct event *in, struct webhook **adhoc,
                            char *err, size_t errlen)
{
    *adhoc = NULL;
    if (!in->callback) {
        return 0;
    }
    if (s->nadhoc >= SERVE_ADHOC_MAX) {
        snprintf(err, errlen, "%d callback deliveries are pending; retry", SERVE_ADHOC_MAX);
        return 503;
    }
    *adhoc = adhoc_new(s, in, true, err, errlen);
    return *adhoc ? 0 : 400;
}

void serve_ingest(struct serve *s, struct apiconn *c, struct event *in, int64_t now_ms)
{
    struct webhook *adhoc;
    char cerr[EVENT_ERR_MAX + 64];
    int cst = callback_prepare(s, in, &adhoc, cerr, sizeof(cerr));
    if (cst == 503) {
        struct buf b;
        buf_init(&b, 4096);
        buf_puts(&b, "{\"error\":");
        json_put_string(&b, slice_cstr(cerr));
        buf_puts(&b, "}\n");
        apisrv_reply(c, 503, NULL, "Retry-After: 1\r\n", b.p, b.len);
        buf_free(&b);
        return;
    }
    if (cst) {
        serve_api_error(c, cst, cerr);
        return;
    }
    ingest_with(s, c, in, now_ms, &adhoc);
    adhoc_free(s, adhoc);
}

static void ingest_with(struct serve *s, struct apiconn *c, struct event *in, int64_t now_ms,
                        struct webhook **adhoc)
{
    if (journal_failed(&s->j)) {
        ingest_refuse(c, ING_FAILED);
        return;
    }
    /* room for the largest event, whatever this one's size */
    struct journal_stats js;
    journal_stats(&s->j, &js);
    if (js.stuck || js.pending_bytes + 2 * s->o.max_body + 65536 > s->j.o.max_pending) {
        ingest_refuse(c, js.stuck ? ING_STUCK : ING_BEHIND);
        return;
    }
    struct sreply *r = serve_reply_new(s, c, 202);
    if (!r) {
        serve_api_error(c, 500, "out of memory");
        return;
    }
    enum ingest_result ir = ingest_one(s, r, in, NULL, now_ms, &r->w, adhoc);
    buf_puts(&r->body, "{\"id\":");
    json_put_string(&r->body, slice_of(in->id, in->id_len));
    switch (ir) {
    case ING_NEW:
        /* the waiter answers once the record is durable */
        buf_printf(&r->body, ",\"deliveries\":%zu}\n", r->ndl);
        return;
    case ING_DUPLICATE:
        /* answered once everything appended before is durable (the first copy included), so
         * "duplicate" never names an event a crash could still lose */
        r->status = 200;
        buf_puts(&r->body, ",\"duplicate\":true}\n");
        serve_reply_when_durable(r);
        return;
    default:
        ingest_refuse(c, ir);
        reply_drop(r);
        return;
    }
}

static void batch_line_error(struct buf *b, size_t line, const char *msg)
{
    buf_printf(b, "{\"line\":%zu,\"error\":", line);
    json_put_string(b, slice_cstr(msg));
    buf_puts(b, "}\n");
}

static bool blank_line(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') {
            return false;
        }
    }
    return true;
}

/* A parsed line of a batch, waiting for its turn (batch_ahead). */
struct batch_ev {
    struct event ev;
    uint8_t key[DEDUP_KEY_LEN];
    size_t line;
    bool parsed;
};

/* batch_take ingests the parsed line b into r, writing its result line. */
static void batch_take(struct serve *s, struct sreply *r, struct batch_ev *b, int64_t now_ms)
{
    struct webhook *adhoc;
    char cerr[EVENT_ERR_MAX + 64];
    b->parsed = false;
    if (callback_prepare(s, &b->ev, &adhoc, cerr, sizeof(cerr))) {
        batch_line_error(&r->body, b->line, cerr);
        event_release(&b->ev);
        return;
    }
    size_t before = r->ndl;
    enum ingest_result ir = ingest_one(s, r, &b->ev, b->key, now_ms, NULL, &adhoc);
    adhoc_free(s, adhoc);
    if (ir == ING_NEW || ir == ING_DUPLICATE) {
        buf_puts(&r->body, "{\"id\":");
        json_put_string(&r->body, slice_of(b->ev.id, b->ev.id_len));
        if (ir == ING_NEW) {
            buf_puts(&r->body, ",\"deliveries\":");
            buf_put_u64(&r->body, r->ndl - before);
            buf_puts(&r->body, "}\n");
        } else {
            buf_puts(&r->body, ",\"duplicate\":true}\n");
        }
    } else {
        batch_line_error(&r->body, b->line,
                         ir == ING_BEHIND   ? "the journal is behind; retry"
                         : ir == ING_STUCK  ? SERVE_STUCK_MSG
                         : ir == ING_FULL   ? "the dedup window is full; retry"
                         : ir == ING_HELD   ? "--max-held deliveries are pending; retry"
                         : ir == ING_FAILED ? "the journal failed"
                         : ir == ING_UNSURE ? SERVE_UNSURE_MSG
                                            : "out of memory");
    }
    event_release(&b->ev); /* the next event_parse overwrites the rest */
}

/* batch_ahead parses line number line of a batch into the free one of ahead[2] and asks for its
 * dedup slots, then ingests the line parsed before it: each event's probe of the dedup table
 * (a cache miss: the slot is random) overlaps the parse and ingest of the one before. Lines
 * are answered in order. A line that does not parse is answered after the one before it. */
static void batch_ahead(struct serve *s, struct sreply *r, struct batch_ev ahead[2], size_t line,
                        const uint8_t *p, size_t n, int64_t now_ms)
{
    struct batch_ev *prev = ahead[0].parsed ? &ahead[0] : ahead[1].parsed ? &ahead[1] : NULL;
    struct batch_ev *b = prev == &ahead[0] ? &ahead[1] : &ahead[0];
    char err[EVENT_ERR_MAX];
    if (event_parse(&b->ev, p, n, now_ms, err, sizeof(err))) {
        if (prev) {
            batch_take(s, r, prev, now_ms);
        }
        batch_line_error(&r->body, line, err);
        event_release(&b->ev);
        return;
    }
    b->line = line;
    b->parsed = true;
    dedup_key_of(b->key, &b->ev);
    dedup_prefetch(s->dd, b->key);
    if (prev) {
        batch_take(s, r, prev, now_ms);
    }
}

/* batch_flush ingests the line parsed ahead, if one is waiting. */
static void batch_flush(struct serve *s, struct sreply *r, struct batch_ev ahead[2], int64_t now_ms)
{
    for (int k = 0; k < 2; k++) {
        if (ahead[k].parsed) {
            batch_take(s, r, &ahead[k], now_ms);
        }
    }
}

void serve_ingest_batch(struct serve *s, struct apiconn *c, const uint8_t *body, size_t len,
                        int64_t now_ms)
{
    struct journal_stats js;
    journal_stats(&s->j, &js);
    if (journal_failed(&s->j) || js.stuck) {
        ingest_refuse(c, js.stuck ? ING_STUCK : ING_FAILED);
        return;
    }
    struct sreply *r = serve_reply_new(s, c, 200);
    if (!r) {
        serve_api_error(c, 500, "out of memory");
        return;
    }
    r->ctype = "application/x-ndjson";
    static struct batch_ev ahead[2]; /* 1 KiB: off the stack; serve has one thread */
    size_t line = 0, nev = 0;
    for (size_t i = 0; i < len;) {
        const uint8_t *nl = memchr(body + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - body) : len;
        line++;
        if (!blank_line(body + i, end - i)) {
            if (++nev > SERVE_BATCH_MAX) {
                batch_flush(s, r, ahead, now_ms);
                char err[64];
                snprintf(err, sizeof(err), "a batch holds at most %d events", SERVE_BATCH_MAX);
                batch_line_error(&r->body, line, err);
            } else {
                batch_ahead(s, r, ahead, line, body + i, end - i, now_ms);
            }
        }
        i = end + 1;
    }
    batch_flush(s, r, ahead, now_ms);
    if (nev == 0) {
        reply_drop(r);
        serve_api_error(c, 400, "the body holds no event (NDJSON: one event per line)");
        return;
    }
    /* one group commit: answered once every event record before it is durable, the
     * duplicates' first copies too */
    serve_reply_when_durable(r);
}

/* ======== recovery ============================================================================ */

struct replay_ctx {
    struct serve *s;
    char *err;
    size_t errlen;
};

static int replay_event(struct serve *s, struct rd *r, uint64_t seq, char *err, size_t errlen)
{
    struct rec_event_head h = rd_event_head(r, false);
    int64_t ingest_ms = h.ingest_ms;
    struct slice json = h.json;
    uint32_t n = h.n;
    if (r->bad) {
        snprintf(err, errlen, "an event record is malformed");
        return -EINVAL;
    }
    char why[EVENT_ERR_MAX];
    struct sevent *e = sevent_new(json.p, json.len, ingest_ms, why, sizeof(why));
    if (!e) {
        snprintf(err, errlen, "an event record does not parse: %s", why);
        return -EINVAL;
    }
    uint8_t key[DEDUP_KEY_LEN];
    dedup_key_of(key, e->ev);
    /* inserted into the dedup table once the replay is over, in time order (keep_replay_end) */
    keep_dedup_push(s, key, ingest_ms, seq);
    struct rd check = *r;
    for (uint32_t i = 0; i < n; i++) {
        rd_u64(&check);
        struct slice whid = rd_str(&check);
        if (!check.bad && !serve_webhook_named(s, whid) && keep_leftover(s)) {
            ev_free(e); /* superseded by what compaction carried (keep_leftover) */
            return 0;
        }
    }
    if (ev_keep(s, e)) {
        ev_free(e);
        return -ENOMEM;
    }
    e->jseq = seq;
    e->text_seq = seq;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t idx = rd_u64(r);
        struct slice whid = rd_str(r);
        /* a callback's destination is rebuilt by serve_start if it is still pending */
        struct webhook *wh = r->bad ? NULL : serve_webhook_named(s, whid);
        if (wh && wh == s->cbwh && !e->ev->callback) {
            snprintf(err, errlen, "an event record names a callback it does not have");
            return -EINVAL;
        }
        if (!wh) {
            snprintf(err, errlen, "an event record names an unknown webhook");
            return -EINVAL;
        }
        struct delivery *d = dlv_new(s, idx, e, wh);
        if (!d) {
            return -ENOMEM;
        }
        d->next_at_ms = ingest_ms;
        if (i > 0 && idx != e->first_idx + i) {
            /* an event's deliveries are given consecutive indexes */
            snprintf(err, errlen, "an event record's deliveries are not numbered in a row");
            return -EINVAL;
        }
        (void)serve_sevent_cover(e, idx); /* n indexes in a row: it fits */
    }
    s->m.ingested++;
    if (n == 0) {
        serve_ev_drop(s, e);
    }
    return 0;
}

static int replay_attempt(struct serve *s, struct rd *r, char *err, size_t errlen)
{
    uint64_t idx = rd_u64(r);
    uint32_t attempts = rd_u32(r);
    uint8_t st = rd_u8(r);
    int64_t next_at = (int64_t)rd_u64(r);
    char why[DLV_WHY_MAX + 1];
    rd_cstr(r, why, sizeof(why));
    struct dlv_attempt h = {0};
    char ex[DLV_EXCERPT + 1] = "";
    bool has = rd_u8(r);
    if (has) {
        h.at_ms = (int64_t)rd_u64(r);
        h.status = (int)rd_u32(r);
        h.result = rd_u8(r);
        h.latency_us = rd_u32(r);
        rd_cstr(r, ex, sizeof(ex));
    }
    int64_t final_ms = 0;
    if (!r->bad && r->off < r->len) {
        final_ms = (int64_t)rd_u64(r);
    }
    struct delivery *d = serve_dlv_at(s, idx);
    if (!r->bad && !d && keep_leftover(s)) {
        return 0; /* superseded by what compaction carried (keep_leftover) */
    }
    if (r->bad || !d || st > DLV_FAILED) {
        snprintf(err, errlen, "an attempt record is malformed");
        return -EINVAL;
    }
    if (has) {
        serve_excerpt_set(s, &h, (const uint8_t *)ex, strlen(ex));
        hist_push(s, d, &h);
        s->m.attempts++;
    }
    bool was_pending = d->status == DLV_PENDING;
    if (d->status != DLV_PENDING && st == DLV_PENDING) {
        was_pending = false;
    }
    d->attempts = attempts;
    serve_dlv_set_status(d, (enum dlv_status)st);
    d->next_at_ms = next_at;
    if (serve_dlv_set_why(d, why)) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (d->status == DLV_DELIVERED || d->status == DLV_FAILED) {
        /* a record from before final_ms was journaled: the last attempt, else the ingest */
        d->final_ms = final_ms   ? final_ms
                      : d->nhist ? d->hist[d->nhist - 1].at_ms
                                 : d->ev->ingest_ms;
    }
    if (was_pending && d->status != DLV_PENDING) {
        if (d->status == DLV_DELIVERED) {
            s->m.delivered++;
            d->wh->delivered++;
            d->wh->exhausted_run = 0;
        } else {
            s->m.failed++;
            d->wh->failed++;
            if (strcmp(dlv_why(d), "retries_exhausted") == 0 ||
                strcmp(dlv_why(d), "failed_no_retries") == 0) {
                d->wh->exhausted_run++;
            }
        }
    }
    return 0;
}

static int replay_one(void *arg, const struct journal_record *rec)
{
    struct replay_ctx *x = arg;
    struct rd r = {.p = rec->payload, .len = rec->len};
    int rc = 0;
    switch (rec->type) {
    case SREC_WEBHOOK:
        rc = replay_webhook(x->s, &r, x->err, x->errlen);
        break;
    case SREC_EVENT:
        rc = replay_event(x->s, &r, rec->seq, x->err, x->errlen);
        break;
    case SREC_ATTEMPT:
        rc = replay_attempt(x->s, &r, x->err, x->errlen);
        break;
    case SREC_NOP:
        break;
    case SREC_CARRY:
    case SREC_DEDUP:
    case SREC_META:
        rc = keep_replay(x->s, rec->type, rec->seq, rec->payload, rec->len, x->err, x->errlen);
        break;
    default:
        snprintf(x->err, x->errlen, "unknown record type %u", rec->type);
        rc = -EINVAL;
    }
    if (rc) {
        size_t l = strlen(x->err);
        snprintf(x->err + l, x->errlen - l, " (journal record %" PRIu64 ")", rec->seq);
    }
    return rc;
}

/* ======== life cycle ========================================================================== */

/* operator_init prepares the webhook operator events go to (--operator-url). */
static int operator_init(struct serve *s, char *err, size_t errlen)
{
    struct webhook *wh = calloc(1, sizeof(*wh));
    if (!wh) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->opwh = wh;
    snprintf(wh->id, sizeof(wh->id), "operator");
    wh->p = profile_find("standard");
    wh->status = WH_ACTIVE;
    if (strlen(s->o.operator_url) > WH_URL_MAX) {
        snprintf(err, errlen, "--operator-url: longer than %d bytes", WH_URL_MAX);
        return -EINVAL;
    }
    if (serve_webhook_set_url(wh, s->o.operator_url, strlen(s->o.operator_url))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (s->o.operator_secret) {
        if (strlen(s->o.operator_secret) > EVENT_SECRET_MAX) {
            snprintf(err, errlen, "--operator-secret: longer than %d bytes", EVENT_SECRET_MAX);
            return -EINVAL;
        }
        snprintf(wh->secret, sizeof(wh->secret), "%s", s->o.operator_secret);
    } else {
        uint8_t r[24];
        char b64[40];
        RAND_bytes(r, sizeof(r));
        b64[b64_encode(b64, r, sizeof(r))] = 0;
        snprintf(wh->secret, sizeof(wh->secret), "whsec_%s", b64);
    }
    char why[EVENT_ERR_MAX];
    if (serve_webhook_apply(s, wh, why, sizeof(why))) {
        snprintf(err, errlen, "--operator-url or --operator-secret: %s", why);
        return -EINVAL;
    }
    return 0;
}

struct serve *serve_new(struct ring *r, const struct serve_opts *o, char *err, size_t errlen)
{
    struct serve *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->r = r;
    s->o = *o;
    dtab_init(&s->dlvs);
    if (!s->o.dedup_window_ms) {
        s->o.dedup_window_ms = 24ull * 3600 * 1000;
    }
    if (!s->o.dedup_capacity) {
        s->o.dedup_capacity = 200000;
    }
    if (!s->o.max_body) {
        s->o.max_body = 1 << 20;
    }
    if (!s->o.failing_after) {
        s->o.failing_after = 5;
    }
    if (!s->o.pace_ready) {
        s->o.pace_ready = 4096;
    }
    if (!s->o.pace_wait_ms) {
        s->o.pace_wait_ms = 250;
    }
    if (!s->o.disable_after_s) {
        s->o.disable_after_s = 5 * 86400;
    }
    s->disable_after_ms = (int64_t)((double)s->o.disable_after_s * 1000.0 * s->o.time_scale);
    wheel_timer_init(&s->sweep, sweep_fire);
    const char *scan = getenv("HOOKRING_TEST_LIST_SCAN");
    s->list_scan_max = scan && atoi(scan) > 0 ? (size_t)atoi(scan) : SERVE_LIST_SCAN_MAX;
    s->test_count_check = getenv("HOOKRING_TEST_COUNT_CHECK") != NULL;
    const char *fail_ingest = getenv("HOOKRING_TEST_FAIL_INGEST");
    s->test_fail_ingest = fail_ingest && atoi(fail_ingest) > 0 ? (unsigned)atoi(fail_ingest) : 0;
    s->orphans = calloc(SERVE_ORPHANS_MAX, sizeof(*s->orphans));
    if (!s->orphans) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    buf_init(&s->scratch, 64u << 20);
    buf_init(&s->textbuf, JOURNAL_RECORD_MAX + JOURNAL_REC_HDR_SIZE);
    buf_init(&s->viewbuf, JOURNAL_RECORD_MAX);
    RAND_bytes((uint8_t *)&s->rng, sizeof(s->rng));
    s->rng |= 1;
    SHA256((const uint8_t *)o->api_key, strlen(o->api_key), (uint8_t *)s->key_hash);
    s->dd = dedup_new(s->o.dedup_capacity, s->o.dedup_window_ms);
    if (!s->dd) {
        snprintf(err, errlen, "the dedup table: %s", strerror(errno));
        goto fail;
    }
    /* ingest, replay and compaction all run on this thread (workers only make attempts) */
    dedup_set_single_writer(s->dd);
    ring_attach_wheel(r, &s->wheel);
    struct client_opts co = {.max_conns = SERVE_CLIENT_CONNS,
                             .max_inflight = 4096,
                             .rbuf_size = 16384,
                             .max_response_body = 64 << 10,
                             .guard = o->guard,
                             .tls = o->tls,
                             .dns = o->dns};
    if (client_init(&s->cl, r, &co)) {
        snprintf(err, errlen, "the delivery client: out of memory");
        goto fail;
    }
    s->client_ok = true;
    if (o->workers > 1) {
        /* before the operator webhook and the replay: both hand endpoints to their workers */
        struct xpool_opts xo = {
            .workers = o->workers, .client = co, .tls = o->tls_opts, .dns = o->dns_opts};
        char xerr[512];
        s->xp = xpool_new(r, &xo, xp_done, s, xerr, sizeof(xerr));
        if (!s->xp) {
            snprintf(err, errlen, "the delivery workers: %s", xerr);
            goto fail;
        }
    }
    if (o->operator_url && operator_init(s, err, errlen)) {
        goto fail;
    }
    s->cbwh = calloc(1, sizeof(*s->cbwh));
    if (!s->cbwh) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(s->cbwh->id, sizeof(s->cbwh->id), "%s", WH_CALLBACK_ID);
    s->cbwh->p = profile_find("humcli");
    s->cbwh->status = WH_ACTIVE; /* never ep_ok: a delivery left pointing at it cannot send */
    char jerr[512];
    /* room for several of the largest events at once beyond the default, so that the check
     * before each ingest (serve_ingest) never refuses an empty journal */
    struct journal_opts jo = {.max_pending = 4 * s->o.max_body + (8u << 20),
                              .segment_size = s->o.segment_size};
    if (keep_init(s)) {
        snprintf(err, errlen, "the dedup key ring: out of memory");
        goto fail;
    }
    int rc = journal_open(&s->j, r, o->data_dir, &jo, jerr, sizeof(jerr));
    if (rc) {
        snprintf(err, errlen, "the journal in %s: %s", o->data_dir, jerr);
        goto fail;
    }
    s->journal_open = true;
    struct replay_ctx x = {.s = s, .err = err, .errlen = errlen};
    err[0] = 0;
    rc = journal_replay(&s->j, replay_one, &x);
    if (rc) {
        if (!err[0]) {
            snprintf(err, errlen, "replaying the journal: %s", journal_error(&s->j));
        }
        goto fail;
    }
    if (keep_replay_end(s)) {
        snprintf(err, errlen, "replaying the journal: out of memory");
        goto fail;
    }
    return s;
fail:
    serve_free(s);
    return NULL;
}

int serve_start(struct serve *s, int lfd)
{
    struct apisrv_opts ao = {
        .max_body = s->o.max_body, .idle_ms = s->o.idle_ms, .max_conns = s->o.max_conns};
    s->paced_cap = s->o.max_conns ? s->o.max_conns : 1024;
    s->paced = calloc(s->paced_cap, sizeof(*s->paced));
    if (!s->paced) {
        return -ENOMEM;
    }
    int rc = apisrv_init(&s->api, s->r, lfd, &ao, serve_api_handle, s);
    if (rc) {
        return rc;
    }
    s->api_ok = true;
    /* the workers' endpoints, in journal order (the k-th webhook is worker k mod N's) */
    for (size_t i = 0; i < s->nwh; i++) {
        if (s->whs[i]->ep_ok && webhook_hand_over(s, s->whs[i])) {
            return -ENOMEM;
        }
    }
    if (s->opwh && s->opwh->ep_ok && webhook_hand_over(s, s->opwh)) {
        return -ENOMEM;
    }
    /* deleted webhooks none of whose deliveries is held any more go (after the first loop) */
    for (size_t i = 0; i < s->nwh; i++) {
        if (s->whs[i]->status == WH_DELETED && s->whs[i]->nref == 0) {
            webhook_list_apply(s, s->whs[i]);
        }
    }
    /* webhooks that went on failing while the server was down are disabled first */
    serve_sweep(s);
    sweep_arm(s);
    /* every delivery recovered pending goes on at its journaled time (at once if that is past:
     * an attempt in flight at the crash left no record and is made again) */
    keep_sweep_all(s);
    keep_start(s);
    int64_t now = serve_now_ms();
    struct delivery *d;
    SERVE_EACH_DLV(s, d)
    {
        if (d->wh == s->cbwh && d->status != DLV_DELIVERED && d->status != DLV_FAILED) {
            /* a callback still owed: its destination again (refused now, e.g. by a narrower
             * --allow-net: left on the placeholder, it ends failed endpoint_unusable) */
            char why[EVENT_ERR_MAX + 64] = "out of memory";
            struct event *ev = serve_sevent_ev(s, d->ev);
            struct webhook *wh = ev ? adhoc_new(s, ev, false, why, sizeof(why)) : NULL;
            if (wh) {
                d->wh = wh;
            } else {
                fprintf(stderr,
                        "hookring serve: the callback of event %s cannot be delivered: %s\n",
                        ev ? ev->id : "?", why);
            }
        }
        if (d && d->status == DLV_PENDING) {
            dlv_schedule(s, d, d->next_at_ms - now);
            s->recovered_pending++;
        } else if (d && d->status == DLV_SENDING) {
            serve_dlv_set_status(d, DLV_PENDING);
            dlv_schedule(s, d, 0);
            s->recovered_pending++;
        }
    }
    /* the replay parsed every event: only those with a delivery to make keep it, and the text
     * (every record replayed is durable) */
    for (size_t i = 0; i < s->nev; i++) {
        serve_sevent_release(s, s->evs[i]);
    }
    return 0;
}

/* webhook_drop_endpoint closes a deleted webhook's connections and gives its worker slot back
 * (none of its attempts is in flight). */
static void webhook_drop_endpoint(struct serve *s, struct webhook *wh)
{
    if (serve_webhook_release(s, wh)) {
        /* its worker keeps the endpoint (a slot is lost, not a delivery) */
        fprintf(stderr, "hookring serve: out of memory releasing webhook %s\n", wh->id);
    }
    if (wh->ep_ok) {
        endpoint_cleanup(&wh->ep);
        wh->ep_ok = false;
    }
    wh->apply_due = false;
}

/* webhook_list_apply has wh's endpoint built anew (or, deleted, dropped) after this loop
 * iteration's completions: the client may still name its connection on the way back from an
 * attempt's done callback. */
static void webhook_list_apply(struct serve *s, struct webhook *wh)
{
    if (!wh->apply_listed) {
        wh->apply_listed = true;
        wh->next_apply = s->apply;
        s->apply = wh;
    }
}

void serve_webhook_retire(struct serve *s, struct webhook *wh)
{
    if (wh->inflight == 0) {
        webhook_list_apply(s, wh); /* else when the last attempt is back (dlv_done) */
    }
}

/* webhook_free_deleted takes a deleted webhook that nothing refers to any more (no delivery
 * held, none in flight) out of the table and frees it: nor is it carried by compaction. */
static void webhook_free_deleted(struct serve *s, struct webhook *wh)
{
    size_t i;
    if (!serve_webhook_pos(s, wh, &i)) {
        return;
    }
    memmove(s->whs + i, s->whs + i + 1, (s->nwh - i - 1) * sizeof(*s->whs));
    s->nwh--;
    if (whmap_rebuild(s)) {
        /* the map still holds the old positions: put the webhook back rather than misfind */
        memmove(s->whs + i + 1, s->whs + i, (s->nwh - i) * sizeof(*s->whs));
        s->whs[i] = wh;
        s->nwh++;
        return;
    }
    serve_match_dirty(s);
    signer_wipe(&wh->signer);
    serve_webhook_free(wh);
    s->m.webhooks_freed++;
}

/* webhooks_apply_due builds the endpoints a PATCH changed while attempts were in flight, now
 * that none is, and sends what waited for them; and drops deleted webhooks' endpoints. */
static void webhooks_apply_due(struct serve *s)
{
    while (s->apply) {
        struct webhook *wh = s->apply;
        s->apply = wh->next_apply;
        wh->apply_listed = false;
        if (wh->status == WH_DELETED) {
            if (!wh->inflight) {
                webhook_drop_endpoint(s, wh);
                if (wh->nref == 0) {
                    webhook_free_deleted(s, wh);
                }
            }
            continue;
        }
        if (!wh->apply_due || wh->inflight) {
            continue; /* built already (a PATCH since), or an attempt started again */
        }
        char why[EVENT_ERR_MAX];
        if (serve_webhook_apply(s, wh, why, sizeof(why))) {
            /* checked at the PATCH: only memory can fail here; its deliveries fail, named */
            fprintf(stderr, "hookring serve: webhook %s cannot deliver: %s\n", wh->id, why);
        }
        wh_drain(s, wh);
    }
}

/* ---- ingest pacing ---- */

bool serve_pace(struct serve *s, struct apiconn *c, const struct httpreq *req)
{
    if ((s->npaced == 0 && s->nready_all <= s->o.pace_ready) || s->npaced == s->paced_cap) {
        return false;
    }
    s->paced[(s->paced_head + s->npaced++) % s->paced_cap] =
        (struct paced_req){.c = c, .req = req, .at_ms = (int64_t)ring_now_ms(s->r)};
    s->m.paced++;
    return true;
}

/* paced_run takes the held ingest requests whose time has come, oldest first: all of them once
 * the ready queues are down to half of --pace, else those that waited --pace-wait. */
static void paced_run(struct serve *s)
{
    int64_t now = (int64_t)ring_now_ms(s->r);
    while (s->npaced) {
        struct paced_req p = s->paced[s->paced_head];
        if (s->nready_all > s->o.pace_ready / 2 && now - p.at_ms < (int64_t)s->o.pace_wait_ms) {
            return;
        }
        s->paced_head = (s->paced_head + 1) % s->paced_cap;
        s->npaced--;
        serve_api_ingest(s, p.c, p.req);
    }
}

/* paced_refuse answers every held ingest request 503 (the server is stopping). */
static void paced_refuse(struct serve *s)
{
    while (s->npaced) {
        struct paced_req p = s->paced[s->paced_head];
        s->paced_head = (s->paced_head + 1) % s->paced_cap;
        s->npaced--;
        SERVE_REPLY_LIT(p.c, 503, "Retry-After: 5\r\n", SERVE_SHUTTING_DOWN);
    }
}

void serve_after_run(struct serve *s)
{
    adhoc_release_all(s);
    webhooks_apply_due(s);
    if (s->npaced && !s->stopping) {
        paced_run(s);
    }
    if (s->xp) {
        xpool_flush(s->xp);
    }
    if (s->client_ok) {
        client_flush(&s->cl);
    }
}

void serve_shutdown(struct serve *s)
{
    s->stopping = true;
    if (s->api_ok) {
        paced_refuse(s);
        apisrv_stop_accepting(&s->api);
        apisrv_quiesce(&s->api);
    }
}

bool serve_idle(const struct serve *s)
{
    /* an API client that waits for a record with no room for it on disk would wait for good */
    return s->inflight == 0 && (!s->api_ok || s->api.open == 0 || s->j.st.stuck);
}

void serve_recovered_summary(const struct serve *s, char *out, size_t outlen)
{
    size_t active = 0, pending = 0;
    for (size_t i = 0; i < s->nwh; i++) {
        active += s->whs[i]->status == WH_ACTIVE;
    }
    /* counted here, not by serve_start (which runs after this is printed): an attempt in flight
     * at the crash (recovered as sending) is pending again too */
    struct delivery *d;
    SERVE_EACH_DLV(s, d)
    {
        pending += d->status == DLV_PENDING || d->status == DLV_SENDING;
    }
    snprintf(
        out, outlen,
        "recovered %zu webhooks (%zu active), %zu events, %zu deliveries pending (journal: %" PRIu64
        " records)",
        s->nwh, active, s->nev, pending, journal_last_seq(&s->j));
}

int serve_free(struct serve *s)
{
    int rc = 0;
    if (!s) {
        return 0;
    }
    /* the workers first: they hold attempts that point into deliveries freed below */
    xpool_free(s->xp);
    s->xp = NULL;
    if (s->journal_open) {
        rc = journal_close(&s->j);
    }
    if (s->api_ok) {
        apisrv_cleanup(&s->api);
    }
    keep_cleanup(s);
    if (s->r->wheel == &s->wheel) {
        wheel_cleanup(&s->wheel);
        s->r->wheel = NULL;
    }
    adhoc_release_all(s);
    struct delivery *d;
    SERVE_EACH_DLV(s, d)
    {
        struct webhook *adhoc = d->wh->adhoc ? d->wh : NULL;
        dlv_release(d); /* (its slot is not touched) */
        adhoc_free(s, adhoc);
    }
    dtab_free(&s->dlvs);
    for (size_t i = 0; i < s->nev; i++) {
        ev_free(s->evs[i]);
    }
    free(s->evs);
    for (size_t i = 0; i < s->nops; i++) {
        ev_free(s->ops[i]->ev);
        dlv_release(s->ops[i]);
    }
    free(s->ops);
    serve_webhook_free(s->cbwh);
    if (s->opwh) {
        if (s->opwh->ep_ok) {
            endpoint_cleanup(&s->opwh->ep);
        }
        signer_wipe(&s->opwh->signer);
        serve_webhook_free(s->opwh);
    }
    /* endpoints before the client: an endpoint refers to the client's per-origin state */
    for (size_t i = 0; i < s->nwh; i++) {
        if (s->whs[i]->ep_ok) {
            endpoint_cleanup(&s->whs[i]->ep);
        }
        signer_wipe(&s->whs[i]->signer);
        serve_webhook_free(s->whs[i]);
    }
    free(s->whs);
    free(s->whmap);
    free(s->xtab); /* empty: the last attempt went with the last delivery */
    free(s->matched);
    free(s->orphans);
    serve_match_free(s);
    free(s->free_slots);
    free(s->paced);
    if (s->client_ok) {
        client_cleanup(&s->cl);
    }
    dedup_free(s->dd);
    buf_free(&s->scratch);
    buf_free(&s->textbuf);
    buf_free(&s->viewbuf);
    free(s);
    return rc;
}

/* ======== for serve_keep.c ==================================================================== */

struct delivery *serve_dlv_new(struct serve *s, uint64_t idx, struct sevent *ev, struct webhook *wh)
{
    return dlv_new(s, idx, ev, wh);
}

void serve_dlv_free(struct serve *s, struct delivery *d)
{
    dlv_free(s, d);
}

int serve_ev_keep(struct serve *s, struct sevent *e)
{
    return ev_keep(s, e);
}

void serve_ev_drop(struct serve *s, struct sevent *e)
{
    if (ev_in_table(s, e)) {
        s->ntexts -= e->json.len != 0;
        s->evs[e->slot] = s->evs[--s->nev];
        s->evs[e->slot]->slot = e->slot;
    }
    ev_free(e);
}

struct sevent *serve_sevent_new(const uint8_t *json, size_t len, int64_t ingest_ms, char *err,
                                size_t errlen)
{
    return sevent_new(json, len, ingest_ms, err, errlen);
}
