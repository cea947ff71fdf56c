/* htls.h: TLS for the harness's listeners (BoringSSL), over memory BIOs.
 *
 * BoringSSL never touches a socket. The ring receives ciphertext into the connection's own
 * buffer and hands it to htls_feed; htls_read drives the handshake and decrypts into the
 * connection's input buffer; htls_write encrypts answers, and htls_take_out copies the
 * ciphertext waiting to leave into a buffer of the connection's, which the ring then sends
 * (the memory BIO may grow while a send is in flight, so the kernel is never handed its
 * bytes). Nothing here does I/O, knows about the ring, or counts anything.
 *
 * One struct htls_ctx per TLS listener (its certificate chain and key), shared by every
 * worker: an SSL_CTX is thread-safe, and sharing it shares the session cache and the ticket
 * keys, so a session from a connection on one thread resumes on another. TLS 1.2 and 1.3 are
 * accepted; sessions resume by ticket (both versions) or by session id (1.2). */
#ifndef HOOKRING_HTLS_H
#define HOOKRING_HTLS_H

#include <openssl/base.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct htls_ctx;

/* One connection's TLS session; embedded in the connection. */
struct htls {
    SSL *ssl; /* NULL: not in use (a plain connection) */
    BIO *rbio;
    BIO *wbio; /* both owned by ssl */
};

enum htls_status {
    HTLS_OK,     /* the output is full; more input may be buffered: read again when there is room */
    HTLS_AGAIN,  /* everything fed has been consumed: feed more ciphertext */
    HTLS_CLOSED, /* the peer sent close_notify: no more plaintext will come */
    HTLS_ERR,    /* fatal (bad handshake, bad record): an alert may be waiting in the output */
};

/* htls_ctx_new loads a PEM certificate chain (leaf first) and its PEM private key for a
 * server. Returns the context, or NULL with err filled. */
struct htls_ctx *htls_ctx_new(const char *cert_file, const char *key_file, char *err,
                              size_t errlen);

/* htls_ctx_free frees x; a no-op for NULL. Sessions started from x must be ended first. */
void htls_ctx_free(struct htls_ctx *x);

/* htls_start makes t a fresh server-side session of x, waiting for a ClientHello. Returns 0, or
 * -ENOMEM (t is then not in use). */
int htls_start(struct htls *t, struct htls_ctx *x);

/* htls_end frees t's session; a no-op when t is not in use. */
void htls_end(struct htls *t);

/* htls_feed hands t ciphertext received from the peer (copied). Returns 0 or -ENOMEM. */
int htls_feed(struct htls *t, const uint8_t *in, size_t in_len);

/* htls_read advances the handshake and decrypts what was fed into out[0..cap), setting
 * *out_len to the bytes written (with any status). See enum htls_status. */
enum htls_status htls_read(struct htls *t, uint8_t *out, size_t *out_len, size_t cap);

/* htls_write encrypts up to max bytes from iov[0..niov), in order, into t's output; *taken
 * gets how many. The handshake must be complete. Returns 0, or -EPROTO when the session is
 * broken. */
int htls_write(struct htls *t, size_t *taken, const struct iovec *iov, size_t niov, size_t max);

/* htls_close_notify queues a close_notify alert: the peer sees a clean end of the stream. */
void htls_close_notify(struct htls *t);

/* htls_out_pending is the number of ciphertext bytes waiting to be taken. */
size_t htls_out_pending(const struct htls *t);

/* htls_take_out moves up to cap ciphertext bytes waiting to leave into out and returns how
 * many. */
size_t htls_take_out(struct htls *t, uint8_t *out, size_t cap);

/* htls_established says the handshake is complete. */
bool htls_established(const struct htls *t);

/* htls_resumed says the handshake resumed an earlier session (abbreviated handshake). */
bool htls_resumed(const struct htls *t);

#endif
