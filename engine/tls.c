/* tls.c: TLS over memory BIOs for the delivery client (BoringSSL). */
#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#define TLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

static int tls_ex_index = -1;

static int new_session(SSL *ssl, SSL_SESSION *s)
{
    struct tls_conn *c = SSL_get_ex_data(ssl, tls_ex_index);
    if (c && c->on_session) {
        c->on_session(c->arg, s);
    }
    return 0; /* the callee took its own reference if it keeps the session */
}

int tls_ctx_init(struct tls_ctx *t, const struct tls_opts *o, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    if (tls_ex_index < 0) {
        tls_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    }
    t->ctx = SSL_CTX_new(TLS_method());
    if (!t->ctx || tls_ex_index < 0) {
        snprintf(err, errlen, "tls: cannot create a context");
        tls_ctx_cleanup(t);
        return -1;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(t->ctx, new_session);
    t->insecure = o && o->insecure;
    if (t->insecure) {
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    /* The system bundle may be absent on a minimal machine; a --ca-file alone is enough then. */
    bool any = SSL_CTX_load_verify_locations(t->ctx, TLS_SYSTEM_CA, NULL) == 1;
    ERR_clear_error();
    if (o && o->ca_file) {
        if (SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) != 1) {
            snprintf(err, errlen, "--ca-file %s: not a readable PEM certificate file", o->ca_file);
            ERR_clear_error();
            tls_ctx_cleanup(t);
            return -1;
        }
        any = true;
    }
    if (!any) {
        snprintf(err, errlen,
                 "tls: no trusted CA: %s is missing (install ca-certificates) and no --ca-file",
                 TLS_SYSTEM_CA);
        tls_ctx_cleanup(t);
        return -1;
    }
    return 0;
}

void tls_ctx_cleanup(struct tls_ctx *t)
{
    SSL_CTX_free(t->ctx);
    t->ctx = NULL;
}

int tls_conn_start(struct tls_conn *c, struct tls_ctx *t, const char *host, bool host_is_ip,
                   SSL_SESSION *session, tls_session_cb *on_session, void *arg)
{
    memset(c, 0, sizeof(*c));
    c->on_session = on_session;
    c->arg = arg;
    c->ssl = SSL_new(t->ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        goto fail;
    }
    BIO_set_mem_eof_return(c->rbio, -1); /* empty means "wait for more", not end of stream */
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_ex_data(c->ssl, tls_ex_index, c);
    SSL_set_connect_state(c->ssl);
    if (!t->insecure) {
        int ok = host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host)
                            : SSL_set1_host(c->ssl, host);
        if (ok != 1) {
            goto fail;
        }
    }
    if (!host_is_ip && SSL_set_tlsext_host_name(c->ssl, host) != 1) {
        goto fail;
    }
    if (session) {
        SSL_set_session(c->ssl, session);
    }
    return 0;
fail:
    ERR_clear_error();
    if (c->ssl) {
        SSL_free(c->ssl); /* frees the BIOs it owns */
    } else {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
    }
    memset(c, 0, sizeof(*c));
    return -ENOMEM;
}

void tls_conn_free(struct tls_conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
    }
    memset(c, 0, sizeof(*c));
}

int tls_conn_feed(struct tls_conn *c, const uint8_t *p, size_t n)
{
    while (n) {
        int k = BIO_write(c->rbio, p, n > 1u << 30 ? 1 << 30 : (int)n);
        if (k <= 0) {
            return -ENOMEM;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* fail records why c failed: the certificate check's verdict when there is one. */
static enum tls_status fail(struct tls_conn *c, int ssl_err)
{
    long v = SSL_get_verify_result(c->ssl);
    if (!c->established && v != X509_V_OK) {
        switch (v) {
        case X509_V_ERR_CERT_HAS_EXPIRED:
        case X509_V_ERR_CERT_NOT_YET_VALID:
            c->error = TLS_ERR_EXPIRED;
            break;
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
            c->error = TLS_ERR_WRONG_HOST;
            break;
        default:
            c->error = TLS_ERR_UNTRUSTED;
            break;
        }
        snprintf(c->detail, sizeof(c->detail), "%s", X509_verify_cert_error_string(v));
    } else {
        c->error = TLS_ERR_PROTOCOL;
        unsigned long e = ERR_peek_error();
        if (e) {
            ERR_error_string_n(e, c->detail, sizeof(c->detail));
        } else {
            snprintf(c->detail, sizeof(c->detail), "SSL error %d", ssl_err);
        }
    }
    ERR_clear_error();
    return TLS_FAILED;
}

/* status_of maps a failed SSL call's result: waiting for the peer, closed, or failed. */
static enum tls_status status_of(struct tls_conn *c, int rc)
{
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        return TLS_AGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        return TLS_CLOSED;
    }
    return fail(c, e);
}

enum tls_status tls_conn_handshake(struct tls_conn *c, struct tls_ctx *t)
{
    if (c->established) {
        return TLS_OK;
    }
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        c->established = true;
        t->stat_handshakes++;
        if (SSL_session_reused(c->ssl)) {
            t->stat_resumed++;
        }
        return TLS_OK;
    }
    return status_of(c, rc);
}

int tls_conn_write(struct tls_conn *c, struct tls_ctx *t, const struct iovec *iov, int n)
{
    size_t used = 0;
    for (int i = 0; i <= n; i++) {
        const uint8_t *p = i < n ? iov[i].iov_base : NULL;
        size_t len = i < n ? iov[i].iov_len : 0;
        /* flush the scratch when the next piece does not fit, or at the end */
        while (i == n ? used > 0 : len > 0) {
            size_t room = sizeof(t->scratch) - used;
            size_t k = len < room ? len : room;
            if (k) {
                memcpy(t->scratch + used, p, k);
            }
            used += k;
            p += k;
            len -= k;
            if (used == sizeof(t->scratch) || i == n) {
                int w = SSL_write(c->ssl, t->scratch, (int)used);
                if (w <= 0) {
                    fail(c, SSL_get_error(c->ssl, w));
                    return -1;
                }
                used = 0;
            }
        }
    }
    return 0;
}

enum tls_status tls_conn_read(struct tls_conn *c, uint8_t *buf, size_t cap, size_t *got)
{
    *got = 0;
    int rc = SSL_read(c->ssl, buf, cap > 1u << 30 ? 1 << 30 : (int)cap);
    if (rc > 0) {
        *got = (size_t)rc;
        return TLS_OK;
    }
    return status_of(c, rc);
}

size_t tls_conn_pending(const struct tls_conn *c)
{
    return BIO_pending(c->wbio);
}

size_t tls_conn_take(struct tls_conn *c, uint8_t *dst, size_t cap)
{
    int k = BIO_read(c->wbio, dst, cap > 1u << 30 ? 1 << 30 : (int)cap);
    return k > 0 ? (size_t)k : 0;
}

const char *tls_error_name(enum tls_error e)
{
    switch (e) {
    case TLS_ERR_NONE:
        return "none";
    case TLS_ERR_UNTRUSTED:
        return "untrusted";
    case TLS_ERR_EXPIRED:
        return "expired";
    case TLS_ERR_WRONG_HOST:
        return "wrong_host";
    case TLS_ERR_PROTOCOL:
        return "protocol";
    }
    return "unknown";
}
