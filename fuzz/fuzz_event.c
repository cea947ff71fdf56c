/* fuzz_event.c: target event_parse() (and through it json_parse, json_unescape and
 * event_parse_time). An accepted event must be internally consistent. */
#include <stdlib.h>

#include "event.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct event ev;
    char err[EVENT_ERR_MAX];
    int rc = event_parse(&ev, data, size, 1700000000000LL, err, sizeof(err));
    if (rc == 0) {
        if (ev.type_len == 0 || ev.type_len > EVENT_TYPE_MAX || ev.id_len == 0 ||
            ev.data.p < data || ev.data.p + ev.data.len > data + size) {
            abort();
        }
        /* data is one valid JSON value on its own */
        struct json_tok t[64];
        size_t n, off;
        enum json_status st = json_parse(t, 64, ev.data.p, ev.data.len, &n, &off);
        if (st == JSON_INVALID) {
            abort();
        }
        if (ev.callback && (ev.callback->url_len == 0 || ev.callback->secret_len == 0)) {
            abort();
        }
    } else if (err[0] == '\0' || ev.callback) {
        abort();
    }
    event_clear(&ev);
    return 0;
}
