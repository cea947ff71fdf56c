/* apisrv.h: the HTTP/1.1 server under `hookring serve`'s API, on the caller's ring.
 *
 * One listening socket (multishot accept), a fixed table of connections, keep-alive. Each
 * connection reads one request at a time (httpreq, strict): while a request is being handled,
 * nothing more is read from that connection, so the handler may answer later (an ingest answers
 * only once the journal says its record is durable) and the request's bytes stay valid until the
 * answer is given. Pipelined requests are taken in order after the answer has left.
 *
 * Bounds: a request head of at most max_head bytes (431), a body of at most max_body (413), and
 * a deadline: a connection that is waiting for a request gets idle_ms from the moment it became
 * ready for one to deliver it whole (this bounds idle keep-alive connections and slow senders
 * alike); a handled request has no deadline (the server owns the wait). */
#ifndef HOOKRING_APISRV_H
#define HOOKRING_APISRV_H

#include <sys/socket.h>

#include "httpreq.h"
#include "ring.h"

struct apisrv;
struct apiconn;

#define APISRV_PENDING_MAX 64 /* accepted sockets waiting at once for an evicted one's slot */

/* apisrv_handler_cb handles one whole request on c. It must eventually call apisrv_reply(c, ...)
 * exactly once, now or later (from any callback on the ring's thread). req and the bytes it
 * names stay valid until then. */
typedef void apisrv_handler_cb(void *arg, struct apiconn *c, const struct httpreq *req);

struct apisrv_opts {
    size_t max_head; /* 0: 16 KiB */
    size_t max_body; /* 0: 1 MiB */
    /* 0: 1024. A connection accepted beyond takes the place of the one that has waited
     * longest for its next request (keep-alive, nothing of a request read), closed for it; with
     * none such, it is closed at once */
    uint32_t max_conns;
    uint32_t idle_ms; /* 0: 30 s */
};

struct apisrv {
    struct ring *r;
    struct apisrv_opts o;
    apisrv_handler_cb *handler;
    void *arg;
    int lfd;
    struct op accept_op;
    struct ring_timer accept_retry;
    bool accepting;
    bool quiescing;
    struct apiconn *conns;
    struct apiconn *free_list;
    uint32_t open;
    uint64_t stat_accepted;
    uint64_t stat_requests;
    uint64_t stat_refused; /* closed at once: no free connection, none idle to close */
    uint64_t stat_evicted; /* idle connections closed to make room for a new one */
    /* accepted sockets waiting for an evicted connection's slot (it is freed once the kernel
     * hands back its ops) */
    int pending[APISRV_PENDING_MAX];
    uint32_t npending;
};

/* apisrv_listen binds and listens on addr ("127.0.0.1:8080", "[::1]:0"); *bound gets the real
 * address (port 0 resolved). Returns the socket, or -errno with err filled. */
int apisrv_listen(const char *addr, struct sockaddr_storage *bound, char *err, size_t errlen);

/* apisrv_format_addr writes sa as "IP:PORT" or "[IP6]:PORT" into out. */
void apisrv_format_addr(const struct sockaddr_storage *sa, char *out, size_t outlen);

/* apisrv_init prepares s to serve listening socket lfd (taken over: apisrv_cleanup closes it) on
 * ring r, calling handler(arg, ...) per request, and starts accepting. Returns 0 or -errno
 * (-ENOMEM). */
int apisrv_init(struct apisrv *s, struct ring *r, int lfd, const struct apisrv_opts *o,
                apisrv_handler_cb *handler, void *arg);

/* apisrv_stop_accepting closes the listening socket: connections already open go on. */
void apisrv_stop_accepting(struct apisrv *s);

/* apisrv_quiesce closes every connection waiting for a request and makes every answer still
 * owed the connection's last: apisrv's open count then falls to zero as they are given. */
void apisrv_quiesce(struct apisrv *s);

/* apisrv_cleanup closes every connection synchronously and frees the table (the ring is about to
 * be torn down; answers still owed are dropped). */
void apisrv_cleanup(struct apisrv *s);

/* apisrv_reply answers c's request: status, then extra_headers (complete "Name: value\r\n"
 * lines, may be NULL), Content-Type (NULL: application/json), Content-Length and body. The
 * connection stays open when the request allowed it and the status is below 500 or is 503. */
void apisrv_reply(struct apiconn *c, int status, const char *content_type,
                  const char *extra_headers, const void *body, size_t len);

/* apisrv_conn_server is the server c belongs to. */
struct apisrv *apisrv_conn_server(const struct apiconn *c);

#endif
