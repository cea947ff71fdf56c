/* hserver.h: the harness's HTTP/1.1 server: one worker thread per --threads, each with its own
 * io_uring (ring.h), its own listening sockets (SO_REUSEPORT: the kernel spreads connections),
 * its own connections and its own counters. Only the webhook-id table and the stats reset
 * baseline are shared.
 *
 * Every buffer is sized at start-up: each connection gets an input buffer that holds the
 * largest acceptable request (head + body limits) and an output buffer, carved from one
 * per-thread mapping whose pages are only touched as they are used. A request is parsed in
 * place, verified in place, and answered by appending to the output buffer; pipelined answers
 * leave in one send.
 *
 * A TLS listener's connections (htls.h) also get a ciphertext buffer each way: the ring moves
 * ciphertext, the session turns it into the same input buffer a plain connection reads into,
 * and answers are encrypted from the same output buffer, so every behaviour works alike. */
#ifndef HOOKRING_HSERVER_H
#define HOOKRING_HSERVER_H

#include <pthread.h>

#include "hconfig.h"
#include "hids.h"
#include "hstats.h"

struct hworker;
struct htls_ctx;

struct hserver {
    const struct hconfig *cfg;
    struct hids ids;
    struct hstats_set stats;
    struct hstats **blocks;
    uint8_t *big; /* the /big/ body, shared read-only */
    size_t big_len;
    struct hworker *workers;
    unsigned nworkers;
    int *fds;                                          /* listening sockets, [worker][listener] */
    struct sockaddr_storage bound[HCONFIG_MAX_LISTEN]; /* actual addresses (port 0 resolved) */
    struct htls_ctx *tls[HCONFIG_MAX_LISTEN];          /* per listener; NULL: plain HTTP */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned ready; /* workers that finished starting (successfully or not) */
    int start_rc;   /* first worker start-up error */
    int fatal_rc;   /* a worker's loop failed */
};

/* hserver_start binds every listener (once per thread), starts the workers and returns when all
 * of them are accepting. Returns 0, or -errno with err filled (everything started is stopped). */
int hserver_start(struct hserver *s, const struct hconfig *cfg, char *err, size_t errlen);

/* hserver_stop_workers wakes every worker and waits for them; the counters and the id table
 * stay readable. */
void hserver_stop_workers(struct hserver *s);

/* hserver_stop stops the workers (if still running), closes the sockets and frees the server. */
void hserver_stop(struct hserver *s);

#endif
