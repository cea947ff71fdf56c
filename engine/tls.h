/* tls.h: TLS for the delivery client over memory BIOs (BoringSSL). BoringSSL never touches a
 * socket: the ring moves ciphertext, this module turns it into plaintext and back.
 *
 * A tls_ctx is per worker (one SSL_CTX: TLS 1.2 minimum, the system CA bundle plus an optional
 * --ca-file, peer and host-name verification on unless the context is insecure). A tls_conn is
 * per connection: SNI and the host (or IP) to verify are set at start, a cached session of the
 * same origin is offered so reconnects skip the full handshake, and every new session the
 * server issues is handed to the caller's session callback for the origin's cache.
 *
 * Data flow, all without I/O:
 *   received ciphertext -> tls_conn_feed -> tls_conn_handshake / tls_conn_read -> plaintext
 *   plaintext -> tls_conn_write -> tls_conn_take (ciphertext to send) */
#ifndef HOOKRING_TLS_H
#define HOOKRING_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum tls_error {
    TLS_ERR_NONE = 0,
    TLS_ERR_UNTRUSTED,  /* the chain does not end in a trusted CA (self-signed, unknown issuer) */
    TLS_ERR_EXPIRED,    /* a certificate has expired or is not valid yet */
    TLS_ERR_WRONG_HOST, /* the certificate does not name the host (or IP) we connected to */
    TLS_ERR_PROTOCOL,   /* anything else in the handshake or record layer */
};

struct tls_opts {
    const char *ca_file; /* PEM bundle trusted in addition to the system's, or NULL */
    bool insecure;       /* skip verification (tests without a CA only) */
};

struct tls_ctx {
    SSL_CTX *ctx;
    bool insecure;
    uint64_t stat_handshakes;
    uint64_t stat_resumed;
    uint8_t scratch[16384]; /* a request's pieces gathered into full-size records */
};

/* tls_session_cb is called when the server issued a session for conn's origin; the callee
 * takes a reference (SSL_SESSION_up_ref) if it keeps it. arg is tls_conn_start's. */
typedef void tls_session_cb(void *arg, SSL_SESSION *s);

struct tls_conn {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer, fed by tls_conn_feed */
    BIO *wbio; /* ciphertext to the peer, drained by tls_conn_output/consumed */
    tls_session_cb *on_session;
    void *arg;
    bool established;
    enum tls_error error;
    char detail[96]; /* the reason behind error, for humans */
};

/* tls_ctx_init prepares t. Returns 0, or -1 with err filled (a CA file that cannot be read, a
 * library failure). */
int tls_ctx_init(struct tls_ctx *t, const struct tls_opts *o, char *err, size_t errlen);
void tls_ctx_cleanup(struct tls_ctx *t);

/* tls_conn_start prepares c as a client to host (an IP literal is verified against the
 * certificate's IP addresses and sends no SNI), offering session (may be NULL). Returns 0 or
 * -ENOMEM. Call tls_conn_handshake next: the ClientHello is then waiting in tls_conn_output. */
int tls_conn_start(struct tls_conn *c, struct tls_ctx *t, const char *host, bool host_is_ip,
                   SSL_SESSION *session, tls_session_cb *on_session, void *arg);

/* tls_conn_free releases c (safe on a zeroed or freed one). */
void tls_conn_free(struct tls_conn *c);

/* tls_conn_feed hands the engine n bytes of ciphertext received. Returns 0 or -ENOMEM. */
int tls_conn_feed(struct tls_conn *c, const uint8_t *p, size_t n);

enum tls_status {
    TLS_OK = 0, /* done (handshake complete; or data read) */
    TLS_AGAIN,  /* needs more ciphertext from the peer (send tls_conn_output first) */
    TLS_CLOSED, /* the peer closed the TLS session cleanly (close_notify) */
    TLS_FAILED, /* c->error and c->detail say why */
};

/* tls_conn_handshake advances the handshake as far as the ciphertext fed allows (counting the
 * handshakes completed, and those resumed, in t). */
enum tls_status tls_conn_handshake(struct tls_conn *c, struct tls_ctx *t);

/* tls_conn_write encrypts the pieces (a request) into the output, gathered into as few records
 * as fit. Returns 0, or -1 (c->error). */
int tls_conn_write(struct tls_conn *c, struct tls_ctx *t, const struct iovec *iov, int n);

/* tls_conn_read decrypts up to cap bytes of plaintext into buf: *got is set; TLS_OK when some
 * came, TLS_AGAIN when more ciphertext is needed, TLS_CLOSED or TLS_FAILED. */
enum tls_status tls_conn_read(struct tls_conn *c, uint8_t *buf, size_t cap, size_t *got);

/* tls_conn_pending is how many bytes of ciphertext wait to be sent. */
size_t tls_conn_pending(const struct tls_conn *c);

/* tls_conn_take moves up to cap bytes of that ciphertext into dst and returns how many. */
size_t tls_conn_take(struct tls_conn *c, uint8_t *dst, size_t cap);

/* tls_error_name is a short stable name ("untrusted", "expired", "wrong_host", "protocol"). */
const char *tls_error_name(enum tls_error e);

#endif
