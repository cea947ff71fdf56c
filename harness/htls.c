/* htls.c: TLS sessions over memory BIOs for the harness's listeners. */
#include "htls.h"

#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

struct htls_ctx {
    SSL_CTX *ctx;
};

/* ctx_fail fills err with what and BoringSSL's last error, clears the error queue and frees
 * ctx. Returns NULL. */
static struct htls_ctx *ctx_fail(SSL_CTX *ctx, char *err, size_t errlen, const char *what,
                                 const char *file)
{
    char why[256];
    unsigned long e = ERR_peek_last_error();
    if (e) {
        ERR_error_string_n(e, why, sizeof(why));
    } else {
        snprintf(why, sizeof(why), "failed");
    }
    ERR_clear_error();
    snprintf(err, errlen, "%s %s: %s", what, file, why);
    SSL_CTX_free(ctx);
    return NULL;
}

struct htls_ctx *htls_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx) {
        return ctx_fail(NULL, err, errlen, "TLS context for", cert_file);
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
        return ctx_fail(ctx, err, errlen, "TLS versions for", cert_file);
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        return ctx_fail(ctx, err, errlen, "--tls-cert", cert_file);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        return ctx_fail(ctx, err, errlen, "--tls-key", key_file);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        return ctx_fail(ctx, err, errlen, "--tls-key (does not match the certificate)", key_file);
    }
    /* Resumption is what clients are tested for: keep the server cache (TLS 1.2 session ids)
     * on explicitly; tickets (1.2 and 1.3) are on by default, their keys made and rotated by
     * BoringSSL and shared by every worker through this one context. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    struct htls_ctx *x = malloc(sizeof(*x));
    if (!x) {
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    x->ctx = ctx;
    return x;
}

void htls_ctx_free(struct htls_ctx *x)
{
    if (!x) {
        return;
    }
    SSL_CTX_free(x->ctx);
    free(x);
}

int htls_start(struct htls *t, struct htls_ctx *x)
{
    t->ssl = NULL;
    SSL *ssl = SSL_new(x->ctx);
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    if (!ssl || !rbio || !wbio) {
        SSL_free(ssl);
        BIO_free(rbio);
        BIO_free(wbio);
        ERR_clear_error();
        return -ENOMEM;
    }
    /* an empty read BIO says "retry" (the default eof value, -1): SSL_read wants more */
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_accept_state(ssl);
    t->ssl = ssl;
    t->rbio = rbio;
    t->wbio = wbio;
    return 0;
}

void htls_end(struct htls *t)
{
    if (!t->ssl) {
        return;
    }
    SSL_free(t->ssl);
    t->ssl = NULL;
    t->rbio = NULL;
    t->wbio = NULL;
}

int htls_feed(struct htls *t, const uint8_t *in, size_t in_len)
{
    while (in_len) {
        int n = in_len > INT_MAX ? INT_MAX : (int)in_len;
        int w = BIO_write(t->rbio, in, n);
        if (w <= 0) {
            ERR_clear_error();
            return -ENOMEM;
        }
        in += w;
        in_len -= (size_t)w;
    }
    return 0;
}

/* status_of turns a failed SSL_do_handshake/SSL_read into a status. The error queue is
 * per thread: it is cleared so that the next connection's SSL_get_error is not misled. */
static enum htls_status status_of(struct htls *t, int rc)
{
    switch (SSL_get_error(t->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return HTLS_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return HTLS_CLOSED;
    default:
        ERR_clear_error();
        return HTLS_ERR;
    }
}

enum htls_status htls_read(struct htls *t, uint8_t *out, size_t *out_len, size_t cap)
{
    *out_len = 0;
    if (SSL_in_init(t->ssl)) {
        int rc = SSL_do_handshake(t->ssl);
        if (rc != 1) {
            return status_of(t, rc);
        }
    }
    while (*out_len < cap) {
        size_t want = cap - *out_len;
        int n = SSL_read(t->ssl, out + *out_len, want > INT_MAX ? INT_MAX : (int)want);
        if (n <= 0) {
            return status_of(t, n);
        }
        *out_len += (size_t)n;
    }
    return HTLS_OK;
}

int htls_write(struct htls *t, size_t *taken, const struct iovec *iov, size_t niov, size_t max)
{
    *taken = 0;
    for (size_t i = 0; i < niov && *taken < max; i++) {
        size_t n = iov[i].iov_len < max - *taken ? iov[i].iov_len : max - *taken;
        if (n == 0) {
            continue;
        }
        /* the write BIO takes everything, so SSL_write never writes part of its input */
        int w = SSL_write(t->ssl, iov[i].iov_base, n > INT_MAX ? INT_MAX : (int)n);
        if (w <= 0) {
            ERR_clear_error();
            return -EPROTO;
        }
        *taken += (size_t)w;
    }
    return 0;
}

void htls_close_notify(struct htls *t)
{
    if (SSL_shutdown(t->ssl) < 0) {
        ERR_clear_error();
    }
}

size_t htls_out_pending(const struct htls *t)
{
    return BIO_pending(t->wbio);
}

size_t htls_take_out(struct htls *t, uint8_t *out, size_t cap)
{
    int n = BIO_read(t->wbio, out, cap > INT_MAX ? INT_MAX : (int)cap);
    return n > 0 ? (size_t)n : 0;
}

bool htls_established(const struct htls *t)
{
    return !SSL_in_init(t->ssl);
}

bool htls_resumed(const struct htls *t)
{
    return SSL_session_reused(t->ssl) == 1;
}
