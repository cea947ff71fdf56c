/* test_event.c: event parsing is strict, names the field, and keeps data verbatim. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "event.h"

TestSuite(event);

static int parse(struct event *ev, const char *json, char *err)
{
    return event_parse(ev, (const uint8_t *)json, strlen(json), 1700000000123, err, 160);
}

Test(event, full_event)
{
    struct event ev;
    char err[160] = "";
    const char *j = "{\"id\":\"evt_1\",\"type\":\"meeting.completed\",\"created_at\":"
                    "\"2026-05-12T15:30:00Z\",\"agent\":\"sales-bot\",\"data\": {\"a\" :  1} }";
    cr_assert_eq(parse(&ev, j, err), 0, "%s", err);
    cr_expect_str_eq(ev.id, "evt_1");
    cr_expect_str_eq(ev.type, "meeting.completed");
    cr_expect_str_eq(ev.created_at, "2026-05-12T15:30:00Z");
    cr_expect_eq(ev.created_ms, 1778599800000);
    cr_expect(ev.has_agent);
    cr_expect_str_eq(ev.agent, "sales-bot");
    cr_expect(slice_eq_cstr(ev.data, "{\"a\" :  1}"), "data bytes verbatim");
    cr_expect_null(ev.callback);
}

Test(event, defaults_for_absent_id_and_time)
{
    struct event ev;
    char err[160];
    cr_assert_eq(parse(&ev, "{\"type\":\"x\",\"data\":null,\"agent\":null}", err), 0, "%s", err);
    cr_expect_eq(ev.id_len, 20);
    cr_expect_eq(strncmp(ev.id, "evt_", 4), 0);
    for (size_t i = 4; i < 20; i++) {
        cr_expect(strchr("0123456789abcdef", ev.id[i]) != NULL);
    }
    cr_expect_str_eq(ev.created_at, "2023-11-14T22:13:20Z");
    cr_expect_eq(ev.created_ms, 1700000000123);
    cr_expect(!ev.has_agent);
    cr_expect(slice_eq_cstr(ev.data, "null"));
}

struct bad_case {
    const char *json;
    const char *want; /* a substring of the error */
};

Test(event, refusals_name_the_field)
{
    static const struct bad_case cases[] = {
        {"[]", "must be a JSON object"},
        {"{\"type\":\"x\"", "invalid JSON at byte"},
        {"{\"data\":1}", "field 'type': required"},
        {"{\"type\":\"x\"}", "field 'data': required"},
        {"{\"type\":\"Meeting\",\"data\":1}", "field 'type'"},
        {"{\"type\":\"\",\"data\":1}", "field 'type'"},
        {"{\"type\":7,\"data\":1}", "field 'type': must be a string, not a number"},
        {"{\"type\":\"x\",\"data\":1,\"id\":\"a.b\"}", "field 'id'"},
        {"{\"type\":\"x\",\"data\":1,\"id\":\"a b\"}", "field 'id'"},
        {"{\"type\":\"x\",\"data\":1,\"id\":\"\"}", "field 'id'"},
        {"{\"type\":\"x\",\"data\":1,\"extra\":2}", "unknown field 'extra'"},
        {"{\"type\":\"x\",\"data\":1,\"type\":\"y\"}", "field 'type': appears twice"},
        {"{\"type\":\"x\",\"data\":1,\"created_at\":\"2026-02-30T00:00:00Z\"}",
         "field 'created_at'"},
        {"{\"type\":\"x\",\"data\":1,\"created_at\":\"2026-05-12T15:30:00+02:00\"}",
         "field 'created_at'"},
        {"{\"type\":\"x\",\"data\":1,\"created_at\":\"2026-05-12 15:30:00Z\"}",
         "field 'created_at'"},
        {"{\"type\":\"x\",\"data\":1,\"agent\":\"a b\"}", "field 'agent'"},
        {"{\"type\":\"x\",\"data\":1,\"callback_url\":\"https://a.example/\"}",
         "field 'callback_secret': required together with 'callback_url'"},
        {"{\"type\":\"x\",\"data\":1,\"callback_url\":\"ftp://a\",\"callback_secret\":\"s\"}",
         "field 'callback_url'"},
        {"{\"type\":\"x\",\"data\":01}", "invalid JSON"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct event ev;
        char err[160] = "";
        cr_expect_eq(parse(&ev, cases[i].json, err), -EINVAL, "accepted: %s", cases[i].json);
        cr_expect(strstr(err, cases[i].want) != NULL, "%s: error '%s' lacks '%s'", cases[i].json,
                  err, cases[i].want);
    }
}

Test(event, id_length_limit)
{
    char j[400], id[130];
    memset(id, 'a', 129);
    id[129] = '\0';
    snprintf(j, sizeof(j), "{\"type\":\"x\",\"data\":1,\"id\":\"%s\"}", id);
    struct event ev;
    char err[160] = "";
    cr_expect_eq(parse(&ev, j, err), -EINVAL);
    id[128] = '\0';
    snprintf(j, sizeof(j), "{\"type\":\"x\",\"data\":1,\"id\":\"%s\"}", id);
    cr_expect_eq(parse(&ev, j, err), 0, "%s", err);
}

Test(event, times)
{
    int64_t ms;
    cr_expect_eq(event_parse_time(SLICE_LIT("1970-01-01T00:00:00Z"), &ms), 0);
    cr_expect_eq(ms, 0);
    cr_expect_eq(event_parse_time(SLICE_LIT("2024-02-29T23:59:59.5Z"), &ms), 0);
    cr_expect_eq(ms, 1709251199500);
    cr_expect_eq(event_parse_time(SLICE_LIT("2023-02-29T00:00:00Z"), &ms), -EINVAL);
    cr_expect_eq(event_parse_time(SLICE_LIT("2026-04-02T14:15:00.000+00:00"), &ms), 0);
    char out[32];
    size_t n = event_format_time(out, ms, true);
    cr_expect_eq(n, 24);
    cr_expect_str_eq(out, "2026-04-02T14:15:00.000Z");
    n = event_format_time(out, 1709251199500, false);
    cr_expect_str_eq(out, "2024-02-29T23:59:59Z");
}

Test(event, callback_pair)
{
    struct event ev;
    char err[160] = "";
    cr_assert_eq(parse(&ev,
                       "{\"type\":\"task.status_changed\",\"data\":{},\"callback_url\":"
                       "\"https://api.example.com/hooks\",\"callback_secret\":\"whsec_x\"}",
                       err),
                 0, "%s", err);
    cr_assert_not_null(ev.callback);
    cr_expect_str_eq(ev.callback->url, "https://api.example.com/hooks");
    cr_expect_str_eq(ev.callback->secret, "whsec_x");
    event_clear(&ev);
    cr_expect_null(ev.callback);
}

/* The time formatter writes digits by hand: it must agree with the calendar the parser reads
 * back, at every second of a day and across the years it handles (leap days included). */
Test(event, format_time_round_trips)
{
    char out[32];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* from 1970 to 9999-12-31 */
        int64_t ms = (int64_t)(x % 253402300800000ull);
        if (i < 86400) {
            ms = 951782400000 + (int64_t)i * 1000 + i % 1000; /* 2000-02-29, every second */
        }
        for (int with_ms = 0; with_ms < 2; with_ms++) {
            size_t n = event_format_time(out, ms, with_ms);
            cr_assert_eq(n, with_ms ? 24u : 20u, "%s", out);
            cr_assert_eq(strlen(out), n);
            int64_t back;
            cr_assert_eq(event_parse_time(slice_of(out, n), &back), 0, "%s", out);
            cr_assert_eq(back, with_ms ? ms : ms - ms % 1000, "%s: %" PRId64 " != %" PRId64, out,
                         back, ms);
        }
    }
}

Test(event, fmt_i64_matches_printf)
{
    static const int64_t v[] = {0,         1,         -1,    9,         10, 99, 100, 1234567890123,
                                INT64_MAX, INT64_MIN, -1000, 1764640000};
    for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
        char a[32], b[32];
        size_t n = fmt_i64(a, v[i]);
        snprintf(b, sizeof(b), "%lld", (long long)v[i]);
        cr_expect_str_eq(a, b);
        cr_expect_eq(n, strlen(b));
        struct buf k;
        buf_init(&k, 64);
        if (v[i] >= 0) {
            cr_assert_eq(buf_put_u64(&k, (uint64_t)v[i]), 0);
            cr_expect_eq(k.len, strlen(b));
            cr_expect_eq(memcmp(k.p, b, k.len), 0);
        }
        buf_free(&k);
    }
}
