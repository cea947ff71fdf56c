/* util.h: small helpers shared by the Criterion suites. */
#ifndef HOOKRING_TEST_UTIL_H
#define HOOKRING_TEST_UTIL_H

#include "common.h"
#include "sign/profile.h"

/* util_read_file reads a whole file into b (max 16 MiB); aborts the test on failure. */
void util_read_file(const char *path, struct buf *b);

/* util_split_request splits "headers CRLF CRLF body" text: fills up to max headers (slices into
 * req) and returns their count; *body gets the rest. Aborts the test on malformed input. */
size_t util_split_request(struct slice req, struct header *h, size_t max, struct slice *body);

/* util_build_dir is $HOOKRING_BUILD or "build". */
const char *util_build_dir(void);

#endif
