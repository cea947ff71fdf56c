/* humcli.c: profile 3 (spec/providers/002_08635b7b456163d2.txt).
 * Body {"event":"task.status_changed","task_id","status","previous_status","timestamp"} from
 * data; X-Signature: <hex HMAC(secret, body)>; X-Timestamp: when the event occurred (ISO 8601
 * with milliseconds). The idempotency key is task_id:status, as the document advises. */
#include "profile_impl.h"

#include <errno.h>
#include <stdio.h>

#define TASK_ID_MAX 128

static const char *const statuses[] = {"ESTIMATE_PENDING", "ACCEPTED", "PENDING",   "IN_PROGRESS",
                                       "SUBMITTED",        "VERIFIED", "COMPLETED", "MANUAL_REVIEW",
                                       "DISPUTED",         "CANCELLED"};

static bool known_status(struct slice s)
{
    for (size_t i = 0; i < ARRAY_SIZE(statuses); i++) {
        if (slice_eq_cstr(s, statuses[i])) {
            return true;
        }
    }
    return false;
}

struct task {
    char task_id[TASK_ID_MAX + 1];
    size_t task_id_len;
    char status[24];
    size_t status_len;
    char prev[24];
    size_t prev_len; /* 0: null */
};

static int get_member(const struct json_tok *t, int obj, const uint8_t *in, const char *key,
                      char *out, size_t cap, size_t *len, bool nullable, char *err, size_t errlen)
{
    int v = json_obj_get(t, obj, in, key);
    *len = 0;
    if (v < 0 || (nullable && t[v].type == JSON_NULL)) {
        if (nullable) {
            return 0;
        }
        snprintf(err, errlen, "field 'data.%s': required by profile humcli", key);
        return -EINVAL;
    }
    if (t[v].type != JSON_STRING || json_unescape(&t[v], in, out, cap, len) || *len >= cap ||
        *len == 0) {
        snprintf(err, errlen, "field 'data.%s': must be a non-empty string of at most %zu bytes",
                 key, cap - 1);
        return -EINVAL;
    }
    return 0;
}

static int parse_task(const struct event *ev, struct task *tk, char *err, size_t errlen)
{
    struct json_tok toks[128];
    size_t n, off;
    if (json_parse(toks, ARRAY_SIZE(toks), ev->data.p, ev->data.len, &n, &off) != JSON_OK ||
        toks[0].type != JSON_OBJECT) {
        snprintf(err, errlen,
                 "field 'data': profile humcli needs a small object with task_id, "
                 "status, previous_status");
        return -EINVAL;
    }
    const uint8_t *in = ev->data.p;
    if (get_member(toks, 0, in, "task_id", tk->task_id, sizeof(tk->task_id), &tk->task_id_len,
                   false, err, errlen) ||
        get_member(toks, 0, in, "status", tk->status, sizeof(tk->status), &tk->status_len, false,
                   err, errlen) ||
        get_member(toks, 0, in, "previous_status", tk->prev, sizeof(tk->prev), &tk->prev_len, true,
                   err, errlen)) {
        return -EINVAL;
    }
    if (!known_status(slice_of(tk->status, tk->status_len)) ||
        (tk->prev_len && !known_status(slice_of(tk->prev, tk->prev_len)))) {
        snprintf(err, errlen, "field 'data.%s': not a HumCLI task status",
                 known_status(slice_of(tk->status, tk->status_len)) ? "previous_status" : "status");
        return -EINVAL;
    }
    return 0;
}

static int build_body(const struct signer *s, const struct event *ev, struct buf *out, char *err,
                      size_t errlen)
{
    struct task tk;
    if (parse_task(ev, &tk, err, errlen)) {
        return -EINVAL;
    }
    char ts[32];
    size_t tsl = event_format_time(ts, ev->created_ms, true);
    int rc = buf_puts(out, "{\"event\":\"task.status_changed\"");
    rc = rc ? rc : put_member_str(out, "task_id", slice_of(tk.task_id, tk.task_id_len), true);
    rc = rc ? rc : put_member_str(out, "status", slice_of(tk.status, tk.status_len), true);
    if (!rc) {
        rc = tk.prev_len
                 ? put_member_str(out, "previous_status", slice_of(tk.prev, tk.prev_len), true)
                 : buf_puts(out, ",\"previous_status\":null");
    }
    rc = rc ? rc : put_member_str(out, "timestamp", slice_of(ts, tsl), true);
    return rc ? rc : buf_putc(out, '}');
}

static void prepare(struct sign_job *job)
{
    prep_body(job);
    job->ts_len = event_format_time(job->ts, job->event->created_ms, true);
}

static int write_headers(const struct sign_job *job, struct buf *out)
{
    int rc = put_content_type(out);
    rc = rc ? rc : put_header_hex(out, "X-Signature", "", job->mac[0]);
    return rc ? rc : put_header(out, "X-Timestamp", slice_of(job->ts, job->ts_len));
}

static enum verify_status verify(const struct signer *s, const struct header *h, size_t nh,
                                 struct slice body, const struct verify_opts *o,
                                 struct verify_result *r)
{
    /* X-Timestamp is when the event occurred, not when it was sent, and is not signed: it is
     * checked for form only (a retry a day later is still authentic). */
    const struct slice *ts = need_header(h, nh, "X-Timestamp", r);
    int64_t ms;
    if (!ts) {
        return r->status;
    }
    if (event_parse_time(*ts, &ms)) {
        return vfail(r, VERIFY_MALFORMED_HEADER, "X-Timestamp: not an ISO 8601 UTC time");
    }
    if (verify_simple_hex(s, h, nh, body, r, "X-Signature", "")) {
        return r->status;
    }
    /* The id is task_id:status. */
    struct json_tok toks[64];
    size_t n, off;
    if (json_parse(toks, ARRAY_SIZE(toks), body.p, body.len, &n, &off) == JSON_OK) {
        int a = json_obj_get(toks, 0, body.p, "task_id");
        int b = json_obj_get(toks, 0, body.p, "status");
        if (a > 0 && b > 0 && toks[a].type == JSON_STRING && toks[b].type == JSON_STRING) {
            struct slice x = json_tok_slice(&toks[a], body.p), y = json_tok_slice(&toks[b], body.p);
            if (x.len + 1 + y.len <= SIGN_ID_MAX) {
                memcpy(r->id, x.p, x.len);
                r->id[x.len] = ':';
                memcpy(r->id + x.len + 1, y.p, y.len);
                r->id_len = x.len + 1 + y.len;
                r->id[r->id_len] = '\0';
            }
        }
    }
    return VERIFY_OK;
}

static size_t idem_key(const struct event *ev, char *out)
{
    struct task tk;
    char err[8];
    if (parse_task(ev, &tk, err, sizeof(err)) || tk.task_id_len + 1 + tk.status_len > SIGN_ID_MAX) {
        return 0;
    }
    int n = snprintf(out, SIGN_ID_MAX + 1, "%s:%s", tk.task_id, tk.status);
    return (size_t)n;
}

const struct profile profile_humcli = {
    .name = "humcli",
    .pid = PROFILE_HUMCLI,
    .key_format = KEY_RAW,
    .https_only = true,
    .timeout_ms = 5000,
    .retry_s = standard_retry_s,
    .nretry = ARRAY_SIZE(standard_retry_s),
    .build_body = build_body,
    .prepare = prepare,
    .write_headers = write_headers,
    .verify = verify,
    .idem_key = idem_key,
};
