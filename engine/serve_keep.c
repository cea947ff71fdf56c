/* serve_keep.c: what `hookring serve` keeps, and for how long.
 *
 * Retention. A delivery that is final (delivered or failed) is forgotten --retention after it
 * became final: freed with its history, and its event with the last of its deliveries. A sweep
 * on the ring's wheel looks at a bounded number of delivery slots per tick, so it never stalls
 * the loop; the slot array drops its empty front as the sweep goes round.
 *
 * Compaction. When the journal has more segments than compact_at(), a pass starts: the next
 * record begins a new segment (journal_new_segment: every record before it, "the cut", lies in
 * older segments), then everything the live state needs is appended again after the cut: the
 * next delivery index (SREC_META), every webhook (SREC_WEBHOOK, its whole state), every event
 * still held with its deliveries' whole state and history (SREC_CARRY, a bounded number of
 * bytes per tick, while the journal has room) and every dedup key still within the window
 * (SREC_DEDUP). While a pass runs, an attempt record about an event not carried yet is replaced
 * by that event's SREC_CARRY, so that no record after the cut refers to a delivery that only a
 * record before it creates. Once a closing SREC_NOP is durable (so every carried record is),
 * the segments before the cut are deleted. A crash at any point leaves either the old segments
 * or the carried records (or both: replaying a SREC_CARRY over deliveries that exist updates
 * them), so nothing acknowledged is lost. A pass starts when the journal has more segments than
 * twice the live state fills, plus one (see compact_at).
 *
 * Dedup keys. The dedup table cannot list its keys, so every key ingested is also kept in a
 * ring (key, ingest time, the record holding it), in record order; keys out of the window leave
 * its front. The ring holds two windows of the table's capacity and more: a full ring drops its
 * oldest key (counted in keep.dd_lost), which only matters if that key was still in the window. */
#include "serve_int.h"
#include "serve_rec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define KEEP_TICK_MS 100               /* the sweep's period */
#define KEEP_PASS_TICK_MS 5            /* while a compaction pass carries records */
#define KEEP_SWEEP_BUDGET 16384        /* delivery slots looked at per tick */
#define KEEP_CARRY_BUDGET (256u << 10) /* bytes carried per tick */
#define KEEP_MIN_SEGMENTS 4            /* a pass starts beyond this many segments (at least) */
#define KEEP_DEDUP_PER_RECORD 1024     /* keys per SREC_DEDUP (24 KiB: less than a segment) */
#define KEEP_RETRY_MS 10000            /* after a pass that could not finish */
#define KEEP_DEFAULT_RETENTION_MS (7ull * 86400 * 1000)

/* ---- dedup keys ---- */

static struct dd_entry *dd_at(struct serve_keep *k, size_t i)
{
    return &k->dd[(k->dd_head + i) % k->dd_cap];
}

static bool dd_alive(const struct serve *s, const struct dd_entry *e, int64_t now_ms)
{
    uint64_t w = s->o.dedup_window_ms;
    return e->ms != INT64_MIN && e->ms >= 0 && (uint64_t)e->ms / w + 1 >= (uint64_t)now_ms / w;
}

static void dd_pop(struct serve_keep *k)
{
    k->dd_head = (k->dd_head + 1) % k->dd_cap;
    k->dd_len--;
}

void keep_dedup_push(struct serve *s, const uint8_t key[DEDUP_KEY_LEN], int64_t ms, uint64_t seq)
{
    struct serve_keep *k = &s->keep;
    if (k->dd_len == k->dd_cap) {
        if (dd_alive(s, dd_at(k, 0), serve_now_ms())) {
            k->dd_lost++;
        }
        dd_pop(k);
    }
    struct dd_entry *e = dd_at(k, k->dd_len++);
    memcpy(e->key, key, DEDUP_KEY_LEN);
    e->ms = ms;
    e->seq = seq;
}

/* dd_expire drops the keys out of the window from the ring's front. */
static void dd_expire(struct serve *s, int64_t now_ms)
{
    struct serve_keep *k = &s->keep;
    while (k->dd_len && !dd_alive(s, dd_at(k, 0), now_ms)) {
        dd_pop(k);
    }
}

struct dd_order {
    int64_t ms;
    size_t i;
};

static int cmp_dd_order(const void *a, const void *b)
{
    const struct dd_order *x = a, *y = b;
    if (x->ms != y->ms) {
        return x->ms < y->ms ? -1 : 1;
    }
    return x->i < y->i ? -1 : x->i > y->i;
}

/* dd_insert_all inserts the ring's keys into the dedup table oldest first (carried keys come
 * after newer ones in the journal), marking dead the copies a crash during a pass left twice. */
static void dd_insert_all(struct serve *s)
{
    struct serve_keep *k = &s->keep;
    struct dd_order *o = k->dd_len ? malloc(k->dd_len * sizeof(*o)) : NULL;
    for (size_t i = 0; i < k->dd_len; i++) {
        if (o) {
            o[i] = (struct dd_order){dd_at(k, i)->ms, i};
        } else {
            struct dd_entry *e = dd_at(k, i); /* no memory to sort: journal order */
            dedup_insert(s->dd, e->key, (uint64_t)e->ms);
        }
    }
    if (!o) {
        return;
    }
    qsort(o, k->dd_len, sizeof(*o), cmp_dd_order);
    for (size_t i = 0; i < k->dd_len; i++) {
        struct dd_entry *e = dd_at(k, o[i].i);
        if (e->ms != INT64_MIN && dedup_insert(s->dd, e->key, (uint64_t)e->ms) == DEDUP_DUPLICATE) {
            e->ms = INT64_MIN; /* a second copy: the first one is carried */
        }
    }
    free(o);
}

/* ---- retention ---- */

static void dlv_forget(struct serve *s, struct delivery *d)
{
    struct sevent *e = d->ev;
    serve_dlv_free(s, d);
    s->m.forgotten++;
    if (e->nlive == 0) {
        serve_ev_drop(s, e);
    }
}

/* slots_trim moves dlv_base up to the oldest delivery held (the table's pages go as they
 * empty: dtab_clear). */
static void slots_trim(struct serve *s)
{
    uint64_t idx = s->dlv_base;
    size_t budget = SIZE_MAX;
    serve_dlv_next(s, &idx, &budget);
    s->dlv_base = idx;
}

/* sweep looks at up to budget delivery slots from where it stopped, forgetting the final
 * deliveries older than the retention. */
static void sweep(struct serve *s, size_t budget, int64_t now_ms)
{
    int64_t cutoff = now_ms - (int64_t)s->o.retention_ms;
    uint64_t idx = s->keep.sweep_idx;
    struct delivery *d;
    for (; (d = serve_dlv_next(s, &idx, &budget)) != NULL; idx++) {
        /* over --max-held, a final delivery goes before its retention */
        bool over = s->dlvs.n > s->o.max_held;
        if ((d->status == DLV_DELIVERED || d->status == DLV_FAILED) &&
            (d->final_ms <= cutoff || over)) {
            dlv_forget(s, d);
        } else {
            /* what a SREC_CARRY of it takes, roughly: its share of the event, its history */
            s->keep.live_acc += d->ev->text_len / d->ev->nlive + 96 + d->nhist * 64;
            if (d->ev->json.len && (d->status == DLV_DELIVERED || d->status == DLV_FAILED)) {
                /* a text read back (a retry, a carry) goes again once it is durable; while d
                 * is unfinished it cannot, and its event's deliveries are not scanned for it */
                serve_sevent_release(s, d->ev);
            }
        }
    }
    if (idx >= s->dlv_end) {
        slots_trim(s);
        idx = s->dlv_base;
        s->keep.live_bytes = s->keep.live_acc;
        s->keep.live_acc = 0;
    }
    s->keep.sweep_idx = idx;
}

#define KEEP_EVICT_BUDGET 4096 /* slots keep_make_room looks at per call */

bool keep_make_room(struct serve *s, size_t need)
{
    if (s->dlvs.n + need <= s->o.max_held) {
        return true;
    }
    uint64_t idx = s->keep.evict_idx;
    bool wrapped = false;
    for (size_t budget = KEEP_EVICT_BUDGET; budget && s->dlvs.n + need > s->o.max_held;) {
        struct delivery *d = serve_dlv_next(s, &idx, &budget);
        if (!d) {
            if (idx < s->dlv_end || wrapped) {
                break; /* the budget is spent, or a whole round found nothing */
            }
            idx = s->dlv_base; /* round again: what was pending may be final now */
            wrapped = true;
            continue;
        }
        if (d->status == DLV_DELIVERED || d->status == DLV_FAILED) {
            dlv_forget(s, d);
        }
        idx++;
    }
    s->keep.evict_idx = idx;
    return s->dlvs.n + need <= s->o.max_held;
}

void keep_sweep_all(struct serve *s)
{
    s->keep.sweep_idx = s->dlv_base;
    sweep(s, SIZE_MAX, serve_now_ms());
}

/* ---- compaction ---- */

/* dlv_encode writes one delivery's whole state, as SREC_CARRY holds it, into b. */
static int dlv_encode(struct buf *b, const struct delivery *d)
{
    /* an attempt in flight is made again after a crash: journaled as pending */
    enum dlv_status st = d->status == DLV_SENDING ? DLV_PENDING : d->status;
    int rc = put_u64(b, d->idx) | put_str(b, d->wh->id, strlen(d->wh->id)) |
             put_u8(b, (uint8_t)st) | put_u32(b, d->attempts) |
             put_u64(b, (uint64_t)d->next_at_ms) | put_str(b, dlv_why(d), strlen(dlv_why(d))) |
             put_u64(b, (uint64_t)d->final_ms) | put_u32(b, (uint32_t)d->nhist);
    for (size_t h = 0; h < d->nhist && !rc; h++) {
        const struct dlv_attempt *a = &d->hist[h];
        rc |= put_u64(b, (uint64_t)a->at_ms) | put_u32(b, (uint32_t)a->status) |
              put_u8(b, a->result) | put_u32(b, a->latency_us) |
              put_str(b, dlv_excerpt(a), strlen(dlv_excerpt(a)));
    }
    return rc ? -ENOMEM : 0;
}

/* journal_room tells whether len more bytes leave the journal at most half full of bytes not
 * yet durable (the other half stays for ingest). */
static bool journal_room(struct serve *s, size_t len)
{
    struct journal_stats js;
    journal_stats(&s->j, &js);
    return js.pending_bytes + len + JOURNAL_REC_HDR_SIZE <= s->j.o.max_pending / 2;
}

/* carry_append appends the SREC_CARRY in scratch, patching in its delivery count at off. */
static int carry_append(struct serve *s, size_t off, uint32_t n, bool force)
{
    uint8_t *p = s->scratch.p + off;
    p[0] = (uint8_t)n;
    p[1] = (uint8_t)(n >> 8);
    p[2] = (uint8_t)(n >> 16);
    p[3] = (uint8_t)(n >> 24);
    if (!force && !journal_room(s, s->scratch.len)) {
        return -EAGAIN;
    }
    int rc = journal_append(&s->j, SREC_CARRY, s->scratch.p, s->scratch.len, NULL);
    if (rc == 0) {
        s->m.carried++;
    }
    return rc;
}

/* carry appends e and its deliveries' whole state: one SREC_CARRY (anchor UINT64_MAX, ingest
 * time, the event's text, deliveries), continued by more (anchor: the index of a delivery the
 * first one holds, no text) when they would not fit in half a segment. Returns 0, -EAGAIN (no
 * room now: the records already appended are repeated by the next try, which a replay takes as
 * later states) or -errno. */
static int carry(struct serve *s, struct sevent *e, bool force)
{
    size_t limit = (size_t)(s->j.o.segment_size / 2);
    uint64_t anchor = UINT64_MAX;
    uint64_t i = 0;
    /* the text, held again until the new record is durable (the sweep lets go of it then) */
    int trc = serve_sevent_text(s, e);
    if (trc) {
        return trc;
    }
    uint64_t text_seq = 0;
    do {
        s->scratch.len = 0;
        int rc = put_u64(&s->scratch, anchor) | put_u64(&s->scratch, (uint64_t)e->ingest_ms);
        rc |= anchor == UINT64_MAX ? put_str(&s->scratch, e->json.p, e->json.len)
                                   : put_str(&s->scratch, "", 0);
        size_t off = s->scratch.len;
        rc |= put_u32(&s->scratch, 0);
        uint32_t n = 0;
        for (; i < e->span && !rc; i++) {
            const struct delivery *d = serve_dlv_at(s, e->first_idx + i);
            if (!d || d->ev != e) {
                continue;
            }
            if (n && s->scratch.len >= limit) {
                break; /* the rest goes in a continuation */
            }
            rc = dlv_encode(&s->scratch, d);
            if (anchor == UINT64_MAX) {
                anchor = d->idx;
            }
            n++;
        }
        if (rc) {
            return -ENOMEM;
        }
        rc = carry_append(s, off, n, force);
        if (rc) {
            return rc;
        }
        if (!text_seq) {
            text_seq = journal_last_seq(&s->j);
        }
    } while (i < e->span);
    e->jseq = journal_last_seq(&s->j);
    e->text_seq = text_seq;
    return 0;
}

bool keep_before_record(struct serve *s, const struct delivery *d)
{
    if (s->keep.phase == KEEP_IDLE || d->ev->jseq >= s->keep.cut) {
        return false;
    }
    if (carry(s, d->ev, true)) {
        /* the record is lost like any attempt record a crash loses (the attempt is made
         * again); the pass carries the event later (its scan has not reached it) */
        s->m.journal_errors++;
    }
    return true;
}

static void pass_abort(struct serve *s, const char *why, int rc)
{
    fprintf(stderr, "hookring serve: compaction stopped (%s: %s); the journal keeps its segments\n",
            why, strerror(-rc));
    s->keep.phase = KEEP_IDLE;
    s->keep.drop_errors++;
    /* each try cuts a segment: not again at once */
    s->keep.retry_ms = serve_now_ms() + KEEP_RETRY_MS;
}

static void pass_done(struct journal *j, struct journal_waiter *w, int res)
{
    struct serve_keep *k = container_of(w, struct serve_keep, w);
    struct serve *s = container_of(k, struct serve, keep);
    k->phase = KEEP_IDLE;
    if (res) {
        return; /* the journal failed: nothing more is written, nothing is dropped */
    }
    if (s->keep.test_die_in_drop && j->nsegs > 2 && j->segs[1].base_seq < k->cut) {
        /* TEST ONLY (HOOKRING_TEST_DIE_IN_DROP): a crash between the first two unlinks */
        journal_drop_before(j, j->segs[1].base_seq);
        _exit(137);
    }
    int rc = journal_drop_before(j, k->cut);
    if (rc) {
        fprintf(stderr, "hookring serve: compaction: %s\n", journal_error(j));
        k->drop_errors++;
    }
    s->m.compactions++;
}

/* compact_at is how many segments the journal may have before a pass: those twice the live
 * state would fill (as the sweep last measured it), and the segment being written; at least
 * KEEP_MIN_SEGMENTS. So a pass is paid for by at least as much new journal, and the journal
 * stays within about twice the live state. */
static size_t compact_at(const struct serve *s)
{
    const struct serve_keep *k = &s->keep;
    uint64_t seg = s->j.o.segment_size - JOURNAL_SEG_HDR_SIZE;
    uint64_t live = k->live_bytes + k->dd_len * (DEDUP_KEY_LEN + 8) + s->nwh * 512;
    size_t n = (size_t)((2 * live + seg - 1) / seg) + 1;
    return n > KEEP_MIN_SEGMENTS ? n : KEEP_MIN_SEGMENTS;
}

/* pass_start cuts the journal and appends the small state (the next index, every webhook). */
static void pass_start(struct serve *s)
{
    struct serve_keep *k = &s->keep;
    if (!journal_room(s, 64u << 10)) {
        return;
    }
    k->cut = journal_new_segment(&s->j);
    if (k->cut == 0) {
        return; /* the last pass's cut is still to be written */
    }
    s->scratch.len = 0;
    int rc = put_u64(&s->scratch, s->dlv_end) ? -ENOMEM : 0;
    if (!rc) {
        rc = journal_append(&s->j, SREC_META, s->scratch.p, s->scratch.len, NULL);
    }
    /* every webhook, deleted ones too (deliveries name them): before any carried event */
    for (size_t i = 0; i < s->nwh && !rc; i++) {
        rc = serve_webhook_record(s, s->whs[i], NULL);
        s->m.carried++;
    }
    if (rc) {
        pass_abort(s, "appending the webhooks", rc);
        return;
    }
    k->scan_idx = s->dlv_base;
    k->phase = KEEP_SCAN;
}

/* pass_dedup carries up to KEEP_DEDUP_PER_RECORD keys from before the cut. Returns 0 (none
 * left), 1 (more), -EAGAIN or -errno. */
static int pass_dedup(struct serve *s, int64_t now_ms)
{
    struct serve_keep *k = &s->keep;
    size_t m = 0, alive = 0;
    while (m < k->dd_len && m < KEEP_DEDUP_PER_RECORD && dd_at(k, m)->seq < k->cut) {
        alive += dd_alive(s, dd_at(k, m), now_ms);
        m++;
    }
    if (m == 0) {
        return 0;
    }
    s->scratch.len = 0;
    int rc = put_u32(&s->scratch, (uint32_t)alive);
    for (size_t i = 0; i < m; i++) {
        const struct dd_entry *e = dd_at(k, i);
        if (dd_alive(s, e, now_ms)) {
            rc |=
                buf_put(&s->scratch, e->key, DEDUP_KEY_LEN) | put_u64(&s->scratch, (uint64_t)e->ms);
        }
    }
    if (rc) {
        return -ENOMEM;
    }
    uint64_t seq = 0;
    if (alive) {
        if (!journal_room(s, s->scratch.len)) {
            return -EAGAIN;
        }
        rc = journal_append(&s->j, SREC_DEDUP, s->scratch.p, s->scratch.len, NULL);
        if (rc) {
            return rc;
        }
        seq = journal_last_seq(&s->j);
        s->m.carried++;
    }
    /* popping m makes room for the (at most m) pushed back */
    for (size_t i = 0; i < m; i++) {
        struct dd_entry e = *dd_at(k, 0);
        dd_pop(k);
        if (dd_alive(s, &e, now_ms)) {
            keep_dedup_push(s, e.key, e.ms, seq);
        }
    }
    return 1;
}

/* pass_step carries a bounded share of the events, then the dedup keys, then waits. */
static void pass_step(struct serve *s, int64_t now_ms)
{
    struct serve_keep *k = &s->keep;
    size_t bytes = 0, budget = KEEP_SWEEP_BUDGET;
    for (;;) {
        if (bytes >= KEEP_CARRY_BUDGET) {
            return;
        }
        struct delivery *d = serve_dlv_next(s, &k->scan_idx, &budget);
        if (!d) {
            if (k->scan_idx < s->dlv_end) {
                return; /* the budget is spent: on at the next step */
            }
            break;
        }
        if (d->ev->jseq < k->cut) {
            int rc = carry(s, d->ev, false);
            if (rc == -EAGAIN) {
                return;
            }
            if (rc) {
                pass_abort(s, "carrying an event", rc);
                return;
            }
            bytes += s->scratch.len;
        }
        k->scan_idx++;
    }
    for (;;) {
        if (bytes >= KEEP_CARRY_BUDGET) {
            return;
        }
        int rc = pass_dedup(s, now_ms);
        if (rc == 0) {
            break;
        }
        if (rc == -EAGAIN) {
            return;
        }
        if (rc < 0) {
            pass_abort(s, "carrying the dedup keys", rc);
            return;
        }
        bytes += s->scratch.len;
    }
    /* the segments before the cut go once everything carried is durable */
    k->w.cb = pass_done;
    int rc = journal_append(&s->j, SREC_NOP, "", 0, &k->w);
    if (rc == 0) {
        k->phase = KEEP_WAIT;
    } else if (rc != -EAGAIN) {
        pass_abort(s, "closing the pass", rc);
    }
}

static void keep_tick(struct wheel *w, struct wheel_timer *t)
{
    struct serve *s = container_of(t, struct serve, keep.timer);
    struct serve_keep *k = &s->keep;
    int64_t now = serve_now_ms();
    sweep(s, KEEP_SWEEP_BUDGET, now);
    dd_expire(s, now);
    if (!s->stopping && !journal_failed(&s->j)) {
        if (k->phase == KEEP_IDLE) {
            struct journal_stats js;
            journal_stats(&s->j, &js);
            if (js.segments > compact_at(s) && now >= k->retry_ms) {
                pass_start(s);
            }
        }
        if (k->phase == KEEP_SCAN) {
            pass_step(s, now);
        }
    }
    uint64_t next = k->phase == KEEP_SCAN ? KEEP_PASS_TICK_MS : KEEP_TICK_MS;
    wheel_add(&s->wheel, &k->timer, ring_now_ms(s->r) + next);
}

/* ---- life cycle and replay ---- */

int keep_init(struct serve *s)
{
    struct serve_keep *k = &s->keep;
    if (!s->o.retention_ms) {
        s->o.retention_ms = KEEP_DEFAULT_RETENTION_MS;
    }
    if (!s->o.max_held) {
        s->o.max_held = 1000000;
    }
    k->dd_cap = 2 * s->o.dedup_capacity + 65536;
    k->test_die_in_drop = getenv("HOOKRING_TEST_DIE_IN_DROP") != NULL;
    /* not touched until used: the pages come as keys do */
    k->dd = malloc(k->dd_cap * sizeof(*k->dd));
    return k->dd ? 0 : -ENOMEM;
}

void keep_start(struct serve *s)
{
    wheel_timer_init(&s->keep.timer, keep_tick);
    wheel_add(&s->wheel, &s->keep.timer, ring_now_ms(s->r) + KEEP_TICK_MS);
}

void keep_cleanup(struct serve *s)
{
    if (s->keep.timer.cb) {
        wheel_del(&s->keep.timer);
    }
    free(s->keep.dd);
    s->keep.dd = NULL;
}

/* count_final counts d, just become final at replay, as replay_attempt does. */
static void count_final(struct serve *s, struct delivery *d)
{
    if (d->status == DLV_DELIVERED) {
        s->m.delivered++;
        d->wh->delivered++;
    } else {
        s->m.failed++;
        d->wh->failed++;
    }
}

/* replay_carry_dlv applies one delivery of a SREC_CARRY; *e is its event (created, from json,
 * for the first delivery that does not exist yet). */
static int replay_carry_dlv(struct serve *s, struct rd *r, struct sevent **e, int64_t ingest_ms,
                            struct slice json, char *err, size_t errlen)
{
    uint64_t idx = rd_u64(r);
    struct slice whid = rd_str(r);
    uint8_t st = rd_u8(r);
    uint32_t attempts = rd_u32(r);
    int64_t next_at = (int64_t)rd_u64(r);
    char why[DLV_WHY_MAX + 1];
    rd_cstr(r, why, sizeof(why));
    int64_t final_ms = (int64_t)rd_u64(r);
    uint32_t nhist = rd_u32(r);
    /* a callback delivery names the placeholder: its destination is rebuilt from the event
     * by serve_start if it is still pending (as for an event record) */
    struct webhook *wh = r->bad ? NULL : serve_webhook_named(s, whid);
    bool callback = wh && wh == s->cbwh;
    if (!wh || st > DLV_FAILED || nhist > (r->len - r->off) / REC_ATTEMPT_MIN) {
        snprintf(err, errlen, "a carried delivery is malformed or names an unknown webhook");
        return -EINVAL;
    }
    struct dlv_attempt *hist = nhist ? calloc(nhist, sizeof(*hist)) : NULL;
    if (nhist && !hist) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < nhist; i++) {
        hist[i].at_ms = (int64_t)rd_u64(r);
        hist[i].status = (int)rd_u32(r);
        hist[i].result = rd_u8(r);
        hist[i].latency_us = rd_u32(r);
        char ex[DLV_EXCERPT + 1];
        rd_cstr(r, ex, sizeof(ex));
        serve_excerpt_set(s, &hist[i], (const uint8_t *)ex, strlen(ex));
    }
    if (r->bad) {
        serve_hist_free(s, hist, nhist);
        snprintf(err, errlen, "a carried delivery is malformed");
        return -EINVAL;
    }
    struct delivery *d = serve_dlv_at(s, idx);
    bool was_final = d && (d->status == DLV_DELIVERED || d->status == DLV_FAILED);
    if (d) {
        /* a crash during a pass: the old records were replayed already; this is later */
        s->m.attempts += nhist > d->nhist ? nhist - d->nhist : 0;
        serve_hist_free(s, d->hist, d->nhist);
        *e = d->ev;
    } else {
        if (!*e) {
            char perr[EVENT_ERR_MAX];
            *e = serve_sevent_new(json.p, json.len, ingest_ms, perr, sizeof(perr));
            if (!*e) {
                serve_hist_free(s, hist, nhist);
                snprintf(err, errlen, "a carried event does not parse: %s", perr);
                return -EINVAL;
            }
            if (serve_ev_keep(s, *e)) {
                serve_hist_free(s, hist, nhist);
                serve_ev_drop(s, *e);
                *e = NULL;
                return -ENOMEM;
            }
            s->m.ingested++;
        }
        const struct event *cev = callback ? serve_sevent_ev(s, *e) : NULL;
        if (callback && (!cev || !cev->callback)) {
            serve_hist_free(s, hist, nhist);
            snprintf(err, errlen, "a carried callback delivery's event has no callback");
            return -EINVAL;
        }
        d = serve_sevent_cover(*e, idx) ? serve_dlv_new(s, idx, *e, wh) : NULL;
        if (!d) {
            serve_hist_free(s, hist, nhist);
            snprintf(err, errlen, "a carried delivery has a bad index");
            return -EINVAL;
        }
        s->m.attempts += nhist;
    }
    d->hist = hist;
    d->nhist = nhist;
    serve_dlv_set_status(d, (enum dlv_status)st);
    d->attempts = attempts;
    d->next_at_ms = next_at;
    d->final_ms = final_ms;
    if (serve_dlv_set_why(d, why)) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (!was_final && (d->status == DLV_DELIVERED || d->status == DLV_FAILED)) {
        count_final(s, d);
    }
    return 0;
}

bool keep_leftover(const struct serve *s)
{
    return s->j.nsegs && s->j.segs[0].base_seq > 1;
}

/* carry_known tells whether every webhook a SREC_CARRY's deliveries name is known (r is a copy
 * of the reader at its first delivery). */
static bool carry_known(struct serve *s, struct rd r, uint32_t n)
{
    for (uint32_t i = 0; i < n && !r.bad; i++) {
        rd_u64(&r);
        struct slice whid = rd_str(&r);
        rd_take(&r, 1 + 4 + 8);
        rd_str(&r);
        rd_take(&r, 8);
        uint32_t nhist = rd_u32(&r);
        for (uint32_t h = 0; h < nhist && !r.bad; h++) {
            rd_take(&r, 8 + 4 + 1 + 4);
            rd_str(&r);
        }
        if (!r.bad && !serve_webhook_named(s, whid)) {
            return false;
        }
    }
    return true;
}

static int replay_carry(struct serve *s, struct rd *r, uint64_t seq, char *err, size_t errlen)
{
    struct rec_event_head h = rd_event_head(r, true);
    uint64_t anchor = h.anchor;
    int64_t ingest_ms = h.ingest_ms;
    struct slice json = h.json;
    uint32_t n = h.n;
    if (r->bad) {
        snprintf(err, errlen, "a carried event is malformed");
        return -EINVAL;
    }
    struct sevent *e = NULL;
    if (keep_leftover(s) &&
        (!carry_known(s, *r, n) || (anchor != UINT64_MAX && !serve_dlv_at(s, anchor)))) {
        return 0; /* superseded by a later pass (keep_leftover) */
    }
    if (anchor != UINT64_MAX) {
        /* a continuation: the event is the one of a delivery an earlier record holds */
        struct delivery *a = serve_dlv_at(s, anchor);
        if (!a) {
            snprintf(err, errlen, "a carried event's continuation has no event");
            return -EINVAL;
        }
        e = a->ev;
    }
    for (uint32_t i = 0; i < n; i++) {
        int rc = replay_carry_dlv(s, r, &e, ingest_ms, json, err, errlen);
        if (rc) {
            return rc;
        }
        e->jseq = seq;
        if (anchor == UINT64_MAX) {
            e->text_seq = seq; /* the record the text is read back from from now on */
        }
    }
    return 0;
}

int keep_replay(struct serve *s, uint8_t type, uint64_t seq, const uint8_t *p, size_t len,
                char *err, size_t errlen)
{
    struct rd r = {.p = p, .len = len};
    switch (type) {
    case SREC_CARRY:
        return replay_carry(s, &r, seq, err, errlen);
    case SREC_DEDUP: {
        uint32_t n = rd_u32(&r);
        for (uint32_t i = 0; i < n && !r.bad; i++) {
            const uint8_t *key = rd_take(&r, DEDUP_KEY_LEN);
            int64_t ms = (int64_t)rd_u64(&r);
            if (!r.bad) {
                keep_dedup_push(s, key, ms, seq);
            }
        }
        break;
    }
    case SREC_META: {
        uint64_t next = rd_u64(&r);
        if (!r.bad && next > s->keep.meta_next) {
            s->keep.meta_next = next;
        }
        break;
    }
    default:
        break;
    }
    if (r.bad) {
        snprintf(err, errlen, "a compaction record is malformed");
        return -EINVAL;
    }
    return 0;
}

int keep_replay_end(struct serve *s)
{
    dd_insert_all(s);
    /* indexes are never given twice: not even those of deliveries forgotten and compacted */
    uint64_t next = s->keep.meta_next;
    if (s->dlv_end == s->dlv_base && next > s->dlv_base) {
        s->dlv_base = s->dlv_end = next;
    } else if (s->dlv_end < next) {
        s->dlv_end = next;
    }
    return 0;
}
