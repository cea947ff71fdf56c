/* tlsclient.h: a small blocking TLS client (BoringSSL) for the end-to-end suites: it verifies
 * the server's certificate against one CA file and a host name or IP address, resumes sessions,
 * and reads HTTP/1.1 responses with Content-Length framing, keeping what follows a response
 * for the next one (pipelining). Every wait is bounded by TN_IO_TIMEOUT_MS. */
#ifndef HOOKRING_TLSCLIENT_H
#define HOOKRING_TLSCLIENT_H

#include <openssl/base.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "testnet.h"

struct tc_conn {
    int fd;
    SSL *ssl;
    SSL_SESSION *session; /* the newest resumable session the server gave (NULL: none yet) */
    char in[1 << 16];     /* plaintext read past the last response */
    size_t in_len;
};

/* tc_ctx_new makes a client context that trusts ca_file only and speaks TLS versions
 * min_version..max_version (TLS1_2_VERSION, TLS1_3_VERSION). Returns it or NULL. */
SSL_CTX *tc_ctx_new(const char *ca_file, uint16_t min_version, uint16_t max_version);

/* tc_connect opens a TCP connection to addr ("127.0.0.1:PORT"; anything after the port, such as
 * " (tls)", is ignored) and completes a handshake that verifies the server's certificate for
 * host (an IP address or a DNS name, also sent as SNI when a name), offering session when not
 * NULL. Returns 0, or -1 with err filled (c is then closed). */
int tc_connect(struct tc_conn *c, SSL_CTX *ctx, const char *addr, const char *host,
               SSL_SESSION *session, char *err, size_t errlen);

/* tc_session returns a new reference (SSL_SESSION_free) to the newest resumable session the
 * server gave on c, or NULL. A TLS 1.3 server sends it after the handshake: read a response
 * first. */
SSL_SESSION *tc_session(struct tc_conn *c);

/* tc_close frees c's session and closes the socket (no close_notify); a no-op when closed. */
void tc_close(struct tc_conn *c);

/* tc_resumed says c's handshake resumed the session it offered. */
bool tc_resumed(const struct tc_conn *c);

/* tc_send_all writes all n bytes. Returns 0 or -errno (-EPROTO for a TLS error). */
int tc_send_all(struct tc_conn *c, const void *p, size_t n);

/* tc_recv reads up to n plaintext bytes (buffered ones first) into p, setting *got. Returns 0
 * (*got == 0: the server's close_notify); -EPIPE when the connection ended without one;
 * -ECONNRESET, -ETIMEDOUT, or -EPROTO for a TLS error. */
int tc_recv(struct tc_conn *c, void *p, size_t n, size_t *got);

/* tc_read_response reads exactly one response (interim 1xx answers skipped) into r, which
 * tn_resp_free releases. Returns 0, -ENODATA on a clean end before any byte, or as tc_recv. */
int tc_read_response(struct tc_conn *c, struct tn_resp *r);

/* tc_request sends raw on c and reads one response; returns its status, or < 0 as
 * tc_read_response. */
int tc_request(struct tc_conn *c, const char *raw, struct tn_resp *r);

#endif
