/* hbehave.h: which behaviour a request path asks the harness for.
 *
 * The first path segment names the behaviour; some take a number as the second segment
 * (/slow/250/..., /status/503/...). Everything after is free (a tenant, a webhook name). */
#ifndef HOOKRING_HBEHAVE_H
#define HOOKRING_HBEHAVE_H

#include "common.h"

enum hbehave {
    HB_OK = 0,      /* 200 */
    HB_SLOW,        /* 200 after arg ms */
    HB_STATUS,      /* status arg (200-599) */
    HB_FAIL,        /* 500 with probability arg % (seeded), else 200 */
    HB_FLAKY,       /* 500 for the first arg attempts of each webhook id, then 200 */
    HB_TIMEOUT,     /* never answers */
    HB_RESET,       /* reads the request, then resets the connection */
    HB_DROP,        /* records the delivery, then closes without answering */
    HB_DUP,         /* records the delivery, then 500 */
    HB_RETRY_AFTER, /* 429 with Retry-After: arg */
    HB_GONE,        /* 410 */
    HB_TRICKLE,     /* 200, one byte at a time, arg ms apart (0: the configured default) */
    HB_BIG,         /* 200 with a multi-MiB body (arg bytes, 0: the configured size) */
    HB_REDIRECT,    /* 302 to /ok/<rest> */
    HB_NOT_FOUND,   /* 404: no behaviour by that name */
    HB_COUNT
};

struct haction {
    enum hbehave b;
    uint32_t arg;
    struct slice rest; /* the path after the behaviour and its argument, from its '/' */
};

/* hbehave_parse reads the behaviour from path (which starts with '/'). A missing or malformed
 * argument makes it HB_NOT_FOUND. Always fills a. */
void hbehave_parse(struct slice path, struct haction *a);

/* hbehave_name is the behaviour's name as used in paths and in the stats ("ok", "slow", ...,
 * "not_found"). */
const char *hbehave_name(enum hbehave b);

#endif
