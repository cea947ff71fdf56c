/* client.h: the outbound HTTP/1.1 delivery client on one ring (one per worker thread).
 *
 * An endpoint is a destination with its prepared signer, its pre-built request prefix (request
 * line and Host) and a pool of keep-alive connections capped in number and in requests in
 * flight. An attempt is one HTTP request of one delivery: the caller embeds it in its own
 * object, fills endpoint, event, body and id, and calls client_submit(); the attempt's done
 * callback runs once with the outcome.
 *
 * Signing is batched: an attempt that has a connection is parked on the client's ready list;
 * client_flush(), called once per loop iteration after the completions were reaped, signs every
 * parked attempt in one sign_batch() call and submits their writes. A request is written as a
 * gather of the endpoint's prefix, the per-attempt headers and the shared body: the body is
 * never copied.
 *
 * Each connection is an explicit state machine (conn_state) with one deadline timer: connect,
 * TLS handshake, first byte and total, each phase arming its own bound. The transport seam
 * (struct transport) carries the bytes: plain TCP, or TLS over memory BIOs. */
#ifndef HOOKRING_CLIENT_H
#define HOOKRING_CLIENT_H

#include "common.h"
#include "httpresp.h"
#include "netguard.h"
#include "ring.h"
#include "sign/profile.h"
#include "url.h"
#include "dns.h"
#include "tls.h"

#define ATTEMPT_EXCERPT HTTPRESP_EXCERPT

enum attempt_result {
    ATTEMPT_OK = 0,             /* a 2xx answer */
    ATTEMPT_STATUS,             /* a complete answer with another status */
    ATTEMPT_REFUSED,            /* connection refused */
    ATTEMPT_RESET,              /* reset, or closed before the answer was complete */
    ATTEMPT_TIMEOUT_CONNECT,    /* no connection within the connect deadline */
    ATTEMPT_TIMEOUT_FIRST_BYTE, /* no byte of an answer within the first-byte deadline */
    ATTEMPT_TIMEOUT_TOTAL,      /* the whole attempt took longer than the endpoint's timeout */
    ATTEMPT_MALFORMED,          /* the answer was not HTTP/1.x as we accept it */
    ATTEMPT_TIMEOUT_TLS,        /* the TLS handshake did not finish within its deadline */
    ATTEMPT_TLS_UNTRUSTED,      /* the certificate chain does not end in a trusted CA */
    ATTEMPT_TLS_EXPIRED,        /* a certificate expired (or is not valid yet) */
    ATTEMPT_TLS_WRONG_HOST,     /* the certificate is for another host */
    ATTEMPT_TLS_PROTOCOL,       /* the TLS handshake or a record failed otherwise */
    ATTEMPT_DNS_NXDOMAIN,       /* the host name does not exist (or has no address) */
    ATTEMPT_DNS_TIMEOUT,        /* the resolver did not answer in time */
    ATTEMPT_DNS_FAILED,         /* the resolver failed otherwise (SERVFAIL, REFUSED, ...) */
    ATTEMPT_BLOCKED,            /* the address guard refused the destination */
    ATTEMPT_UNREACHABLE,        /* no route to the host or network */
    ATTEMPT_ERROR,              /* a local failure (sockets, memory) */
    ATTEMPT_RESULT_COUNT
};

struct attempt;
struct client;
struct conn;

typedef void attempt_done_cb(struct attempt *a);

/* The transport seam: how plaintext request bytes reach the wire and response bytes come back.
 * Plain TCP passes bytes through (a gathered sendmsg, reads straight into the parser's buffer);
 * TLS (memory BIOs, tls.h) handshakes first, then encrypts and decrypts here. */
struct transport {
    const char *name;
    /* start runs once TCP is connected: the conn becomes ready to send, now or after a
     * handshake. */
    void (*start)(struct conn *k);
    /* send writes the request gathered in the conn's iovecs and posts the answer's read. */
    void (*send)(struct conn *k, int niov);
    /* sent and received handle the send and receive completions. */
    void (*sent)(struct conn *k, int res);
    void (*received)(struct conn *k, int res);
    /* release frees the transport's per-connection state when the connection closes. */
    void (*release)(struct conn *k);
};

extern const struct transport transport_plain;
extern const struct transport transport_tls;

struct tls_ctx;
struct origin;

struct endpoint {
    struct client *cl;
    struct url_dest url; /* the target and authority are in prefix */
    const struct signer *signer;
    const struct transport *transport;
    struct buf prefix;   /* "POST target HTTP/1.1\r\nHost: ...\r\n[User-Agent]" */
    uint32_t timeout_ms; /* total, per attempt */
    uint32_t connect_timeout_ms;
    uint32_t first_byte_timeout_ms;
    uint32_t max_conns;    /* connections this endpoint may hold */
    uint32_t max_inflight; /* attempts in flight at once, at most */
    /* The in-flight limit in force: max_inflight, halved (down to 1) each time the receiver
     * asks to slow down (429, 502, 504) and grown back by one per 2xx, when adaptive. */
    uint32_t limit;
    bool adaptive;
    bool keep_alive; /* reuse connections (default); off: one connection per request */
    uint32_t nconns;
    uint32_t inflight;
    struct attempt *qhead, *qtail;
    uint32_t queued;
    bool waiting; /* on the client's list of endpoints starved by the global cap */
    struct endpoint *next_waiting;
    struct origin *origin; /* scheme, host and port: its pool of idle connections and its TLS
                              session are shared by every endpoint of that origin */
    uint64_t stat_connects;
    uint64_t stat_reuses;
    uint64_t stat_slowdowns;
    uint64_t stat_handshakes;
    uint64_t stat_resumed;
};

struct attempt {
    /* filled by the caller */
    struct endpoint *ep;
    const struct event *event;
    struct slice body;
    struct slice id;
    attempt_done_cb *done;
    /* filled by the client */
    enum attempt_result result;
    int status;        /* HTTP status when an answer was parsed, else 0 */
    int err;           /* errno behind a connection-level result, else 0 */
    int64_t submit_ns; /* monotonic */
    int64_t sent_ns;
    int64_t done_ns;
    int64_t sent_unix_ms; /* the attempt time that was signed */
    bool has_retry_after;
    int64_t retry_after_s; /* delay asked for by Retry-After (a date is converted), >= 0 */
    bool reused;           /* went out on a kept-alive connection */
    uint8_t stale_retries;
    uint8_t excerpt[ATTEMPT_EXCERPT];
    size_t excerpt_len;
    struct attempt *next;
};

struct client_opts {
    uint32_t max_conns;         /* connections over all endpoints (sizes the pool) */
    uint32_t max_inflight;      /* attempts in flight over all endpoints */
    uint32_t rbuf_size;         /* per connection; also the largest response head accepted */
    uint32_t max_response_body; /* bytes read before giving up on the rest of a body */
    const struct netguard *guard;
    struct tls_ctx *tls; /* for https:// endpoints (NULL: they are refused) */
    struct dns *dns;     /* for host names (NULL: only IP literals are accepted) */
};

struct client {
    struct ring *ring;
    struct client_opts o;
    struct httpresp_limits lim;
    struct conn *conns;
    struct conn *free_conns;
    struct conn *ready_head, *ready_tail; /* connected, attempt assigned, waiting to be signed */
    struct endpoint *waiting_head, *waiting_tail;
    uint32_t inflight;
    uint32_t queued;        /* attempts waiting in endpoint queues */
    uint32_t nconns;        /* open connections, idle ones included */
    uint32_t nclosing;      /* connections waiting for the kernel to hand back their ops */
    struct origin *origins; /* one per origin: the keep-alive pools and TLS sessions */
    struct conn *lru_head, *lru_tail; /* idle connections, most recently used first */
    char detail_buf[80]; /* a failure's reason, formatted just before it is copied out */
    uint64_t stat_batches;
    uint64_t stat_signed;
};

/* client_init prepares c on ring r, allocating its connection table once. Returns 0 or
 * -ENOMEM. */
int client_init(struct client *c, struct ring *r, const struct client_opts *o);

/* client_cleanup closes every connection (synchronously; the ring must be idle or about to be
 * torn down) and frees the table and the origins. Clean every endpoint up first: endpoints
 * point at the client's origins. */
void client_cleanup(struct client *c);

/* endpoint_init prepares ep for url with signer s (borrowed, must outlive ep). timeout_ms 0
 * takes the profile's. Connections are capped at max_conns and attempts in flight at
 * max_inflight. Returns 0, or -EINVAL with err filled (the destination is refused by the address
 * guard, or needs what this build cannot do yet: TLS, DNS). */
int endpoint_init(struct endpoint *ep, struct client *c, const struct url *url,
                  const struct signer *s, uint32_t timeout_ms, uint32_t max_conns,
                  uint32_t max_inflight, char *err, size_t errlen);

/* endpoint_set_adaptive turns on (the default) or off the endpoint's slow-down: with it off
 * (a load generator's fixed concurrency) the limit stays at max_inflight whatever the answers. */
void endpoint_set_adaptive(struct endpoint *ep, bool on);

/* endpoint_set_keep_alive turns connection reuse off (one connection per request, announced
 * with Connection: close) or back on. */
int endpoint_set_keep_alive(struct endpoint *ep, bool on);

/* endpoint_add_header appends the line "name: value" to every request of ep, after Host and
 * User-Agent and before the profile's headers. The caller has checked name and value (a token;
 * no CR, LF or NUL). Call it before endpoint_set_keep_alive. Returns 0 or -ENOMEM. */
int endpoint_add_header(struct endpoint *ep, struct slice name, struct slice value);

/* endpoint_cleanup closes the idle connections the endpoint holds and frees its prefix; the
 * endpoint must have nothing queued or in flight, and its client must not be cleaned up yet. */
void endpoint_cleanup(struct endpoint *ep);

/* client_submit queues attempt a on a->ep; it goes out when the endpoint and the client have
 * capacity. a and the bytes it names must stay valid until a->done runs. */
void client_submit(struct attempt *a);

/* client_flush signs every attempt that has a connection, in one batch, and submits their
 * writes. Call it after every ring_run_once(). Returns the number of attempts sent. */
size_t client_flush(struct client *c);

/* client_busy tells whether anything is queued, in flight or still closing. */
bool client_busy(const struct client *c);

/* attempt_result_name is a short stable name ("ok", "status", "refused", ...). */
const char *attempt_result_name(enum attempt_result r);

/* ---- a delivery thread's machinery ------------------------------------------------------ */

/* A thread that makes attempts (blast's and serve's workers) owns a ring and, on it, a TLS
 * context, a resolver and a client. Set up and cleaned up on that thread (the ring is
 * SINGLE_ISSUER). */
struct netstack {
    struct ring ring;
    struct tls_ctx tls;
    struct dns dns;
    struct client cl;
    bool ring_ok, tls_ok, dns_ok, client_ok;
};

struct netstack_opts {
    struct ring_opts ring;
    const struct tls_opts *tls; /* NULL: no https */
    const struct dns_opts *dns; /* NULL: IP literals only */
    bool dns_optional;          /* a resolver that cannot start leaves host names refused */
    struct client_opts client;  /* its tls and dns are this stack's */
};

/* netstack_init sets ns up. Returns 0 or -errno with err filled; netstack_cleanup then frees
 * what was set up. */
int netstack_init(struct netstack *ns, const struct netstack_opts *o, char *err, size_t errlen);

/* netstack_cleanup frees ns, client first (its endpoints must be cleaned up before). */
void netstack_cleanup(struct netstack *ns);

#endif
