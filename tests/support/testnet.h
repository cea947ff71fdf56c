/* testnet.h: loopback helpers for the end-to-end suites: start and stop real binaries, a small
 * blocking HTTP/1.1 client, and JSON number lookups. Every wait is bounded. */
#ifndef HOOKRING_TESTNET_H
#define HOOKRING_TESTNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TN_MAX_LISTEN 8
#define TN_IO_TIMEOUT_MS 5000

struct tn_proc {
    pid_t pid;
    int out_fd;      /* the child's stdout */
    char out[16384]; /* everything read from it so far, NUL-terminated */
    size_t out_len;
    char addr[TN_MAX_LISTEN][64]; /* from its "listening on ADDR" lines */
    size_t naddr;
};

/* tn_build_dir is $HOOKRING_BUILD, or "build". */
const char *tn_build_dir(void);

/* tn_start runs BUILD_DIR/prog with args (NULL-terminated; argv[0] is added) and waits up to
 * 10 s for nlisten "listening on ADDR" lines on its stdout. The child dies with the test
 * process. Returns 0, or -1 (the child is then killed). */
int tn_start(struct tn_proc *p, const char *prog, const char *const *args, size_t nlisten);

/* tn_stop sends sig, waits up to 10 s (then SIGKILL), reads the rest of stdout into p->out and
 * returns the exit status as waitpid reports it (or -1). A no-op returning -1 when p was not
 * started or is already stopped. */
int tn_stop(struct tn_proc *p, int sig);

/* tn_port is the port of p->addr[i]. */
uint16_t tn_port(const struct tn_proc *p, size_t i);

/* tn_connect opens a blocking TCP connection to "127.0.0.1:PORT" or "[::1]:PORT" with
 * TN_IO_TIMEOUT_MS send/receive timeouts. Returns the fd or -1. */
int tn_connect(const char *addr);

/* tn_send_all writes all n bytes. Returns 0 or -errno. */
int tn_send_all(int fd, const void *p, size_t n);

struct tn_resp {
    int status;
    char head[16384]; /* status line and headers, NUL-terminated */
    size_t head_len;
    char *body; /* malloc'ed, NUL-terminated; tn_resp_free releases it */
    size_t body_len;
};

enum tn_read_flags {
    TN_KEEP_INTERIM = 1, /* return a 1xx answer instead of skipping it */
    TN_HEAD_ONLY = 2,    /* the answer to a HEAD request: no body whatever Content-Length says */
};

/* tn_read_response reads exactly one response (Content-Length framing; interim 1xx answers
 * are skipped). Returns 0, -ECONNRESET / -EPIPE when the peer reset, -ENODATA on EOF before
 * any byte, -ETIMEDOUT, or -EPROTO. tn_read_response_ex takes enum tn_read_flags. */
int tn_read_response(int fd, struct tn_resp *r);
int tn_read_response_ex(int fd, struct tn_resp *r, unsigned flags);

/* tn_resp_free releases r->body. */
void tn_resp_free(struct tn_resp *r);

/* tn_resp_header copies the value of header name (case-insensitive) into out. Returns false
 * when absent. */
bool tn_resp_header(const struct tn_resp *r, const char *name, char *out, size_t outlen);

/* tn_request connects to addr, sends raw, reads one response and closes. Returns as
 * tn_read_response (or -ECONNREFUSED when it cannot connect). */
int tn_request(const char *addr, const char *raw, size_t raw_len, struct tn_resp *r);

/* tn_get does "GET path" on a fresh connection and returns the status (or < 0); the body is
 * left in r (caller frees). */
int tn_get(const char *addr, const char *path, struct tn_resp *r);

/* tn_wait_readable waits up to ms for fd to be readable (or closed). */
bool tn_wait_readable(int fd, int ms);

/* tn_json_u64 finds a number by a dotted path ("routes.ok.requests") in a JSON text. Returns
 * false when absent or not a non-negative integer. */
bool tn_json_u64(const char *json, const char *path, uint64_t *out);

/* tn_now_ms is CLOCK_MONOTONIC in ms. */
int64_t tn_now_ms(void);

/* tn_api sends one HTTP/1.1 request with the body (NULL: none) and, when key is not NULL,
 * "Authorization: Bearer KEY", and reads the answer into r (tn_resp_free it). Returns the
 * status, or -errno. */
int tn_api(const char *addr, const char *key, const char *method, const char *path,
           const char *body, struct tn_resp *r);

/* tn_json_str copies the first string member named key of a JSON text (no escapes in it) into
 * out[n]. Returns false when there is none or it does not fit. */
bool tn_json_str(const char *json, const char *key, char *out, size_t n);

/* tn_closed_port returns a loopback TCP port nothing listens on (bound, then closed: a connect
 * there is refused at once), or 0 when none could be had. */
uint16_t tn_closed_port(void);

/* tn_tmpdir makes a fresh directory /tmp/PREFIX-XXXXXX into out[n]; tn_rm_rf removes a tree.
 * Both return 0 or -1. */
int tn_tmpdir(char *out, size_t n, const char *prefix);
int tn_rm_rf(const char *dir);

/* tn_serve starts BUILD/hookring serve --data DATA --listen LISTEN --api-key KEY --quiet, with
 * --allow-net 127.0.0.0/8 when allow_net, --workers N when HOOKRING_SERVE_WORKERS=N is set
 * (tests/run.sh runs the serve suites again so), then extra (NULL-terminated, may be NULL).
 * Returns tn_start's result. */
int tn_serve(struct tn_proc *s, const char *data, const char *key, const char *listen,
             bool allow_net, const char *const *extra);

/* tn_std_webhook registers, at the serve API at addr (API key key), a standard-profile webhook
 * to http://TARGET ROUTE taking the events filter matches, signed with secret, with extra JSON
 * members appended (",\"k\":v" or ""). Returns 0 with its id in id[n], or the answer's status
 * (or -errno) with its body's start in id. */
int tn_std_webhook(const char *addr, const char *key, const char *target, const char *route,
                   const char *filter, const char *secret, const char *extra, char *id, size_t n);

/* tn_harness_id reads a number of the harness's record of webhook id (GET /_harness/ids/ID);
 * 0 when the harness has none. */
uint64_t tn_harness_id(const char *addr, const char *id, const char *field);

/* tn_ndjson_events writes n events {"id":"PREFIX<i>","type":"TYPE","data":<i>}, one a line,
 * for i from first, into out (cap bytes, NUL-terminated, cut short if it must be); returns
 * their length. */
size_t tn_ndjson_events(char *out, size_t cap, const char *prefix, const char *type, int first,
                        int n);

/* tn_metric reads one unlabelled sample of hookring serve's /metrics at addr (API key key) into
 * *out. Returns 0, or -1 when the request fails or the sample is missing. */
int tn_metric(const char *addr, const char *key, const char *name, uint64_t *out);

#endif
