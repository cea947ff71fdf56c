/* event.h: the event every profile is built from (spec/PROFILES.md, "The event").
 *
 * event_parse() is strict: a JSON object with only the known members, each checked; the bytes of
 * "data" are kept verbatim as a span of the input (never re-serialised), so the input must
 * outlive the event. String members are decoded (JSON escapes resolved) into the event itself. */
#ifndef HOOKRING_EVENT_H
#define HOOKRING_EVENT_H

#include "common.h"

#define EVENT_ID_MAX 128
#define EVENT_TYPE_MAX 128
#define EVENT_AGENT_MAX 128
#define EVENT_TIME_MAX 40
#define EVENT_URL_MAX 2048
#define EVENT_SECRET_MAX 256
#define EVENT_ERR_MAX 160

struct event {
    char id[EVENT_ID_MAX + 1];
    size_t id_len;
    char type[EVENT_TYPE_MAX + 1];
    size_t type_len;
    char created_at[EVENT_TIME_MAX + 1]; /* RFC 3339 UTC, as given or as set at ingest */
    size_t created_at_len;
    int64_t created_ms; /* the same instant, unix milliseconds */
    bool has_agent;     /* false: absent or null */
    char agent[EVENT_AGENT_MAX + 1];
    size_t agent_len;
    struct slice data; /* verbatim bytes of "data", borrowed from the input */
    /* callback_url and callback_secret (humcli), rare: allocated only when the event has them,
     * so that an event held per delivery in flight stays small. Freed by event_clear. */
    struct event_callback *callback; /* NULL: none */
};

struct event_callback {
    char url[EVENT_URL_MAX + 1];
    size_t url_len;
    char secret[EVENT_SECRET_MAX + 1];
    size_t secret_len;
};

/* event_parse reads one event from json[0..len) into ev (which it overwrites: event_clear an
 * earlier one first). Absent id becomes "evt_" + 16 random hex; absent created_at becomes now_ms.
 * Returns 0, or -EINVAL with err (a NUL-terminated message naming the field and the problem, at
 * most errlen bytes) filled. */
int event_parse(struct event *ev, const uint8_t *json, size_t len, int64_t now_ms, char *err,
                size_t errlen);

/* event_clear frees what event_parse allocated (the callback) and empties ev; safe on an event
 * that failed to parse, twice, or on a zeroed one. */
void event_clear(struct event *ev);

/* event_release frees what event_parse allocated and leaves the rest of ev as it is: for an
 * event about to be freed, whose 520 bytes (cold by then) need no clearing. */
void event_release(struct event *ev);

/* event_valid_id tells whether s is an acceptable event id (1-128 printable ASCII, no '.' or
 * space). */
bool event_valid_id(struct slice s);

/* event_valid_type tells whether s is an acceptable type (1-128 of [a-z0-9._-]). */
bool event_valid_type(struct slice s);

/* event_parse_time parses an RFC 3339 UTC time ("Z" or "+00:00", optional fraction) into unix
 * milliseconds. Returns 0 or -EINVAL. */
int event_parse_time(struct slice s, int64_t *out_ms);

/* event_days_from_civil is the number of days from 1970-01-01 to a proleptic Gregorian date
 * (H. Hinnant's algorithm); m is 1-12. */
int64_t event_days_from_civil(int64_t y, unsigned m, unsigned d);

/* event_format_time writes ms as "YYYY-MM-DDTHH:MM:SS[.mmm]Z" (with_ms adds the fraction) into
 * out (at least 25 bytes) and returns its length. */
size_t event_format_time(char *out, int64_t ms, bool with_ms);

#endif
