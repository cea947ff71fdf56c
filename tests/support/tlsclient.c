/* tlsclient.c: a blocking BoringSSL client over testnet's sockets. */
#include "tlsclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* new_session keeps the newest session on its connection: a TLS 1.3 client only learns of its
 * tickets this way (SSL_get_session still names the handshake's own, not resumable). */
static int new_session(SSL *ssl, SSL_SESSION *session)
{
    struct tc_conn *c = SSL_get_app_data(ssl);
    if (!c) {
        return 0;
    }
    SSL_SESSION_free(c->session);
    c->session = session;
    return 1;
}

SSL_CTX *tc_ctx_new(const char *ca_file, uint16_t min_version, uint16_t max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx) {
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, min_version) ||
        !SSL_CTX_set_max_proto_version(ctx, max_version) ||
        SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* the "cache" is new_session handing each session to its connection (tc_session) */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    SSL_CTX_sess_set_new_cb(ctx, new_session);
    return ctx;
}

SSL_SESSION *tc_session(struct tc_conn *c)
{
    if (c->session && SSL_SESSION_is_resumable(c->session)) {
        SSL_SESSION_up_ref(c->session);
        return c->session;
    }
    return NULL;
}

void tc_close(struct tc_conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    SSL_SESSION_free(c->session);
    c->session = NULL;
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->in_len = 0;
}

static void fill_err(char *err, size_t errlen, const char *what, int ssl_err)
{
    char why[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e) {
        ERR_error_string_n(e, why, sizeof(why));
    }
    snprintf(err, errlen, "%s: %s %s (errno %s)", what, SSL_error_description(ssl_err), why,
             strerror(errno));
    ERR_clear_error();
}

int tc_connect(struct tc_conn *c, SSL_CTX *ctx, const char *addr, const char *host,
               SSL_SESSION *session, char *err, size_t errlen)
{
    c->ssl = NULL;
    c->session = NULL;
    c->in_len = 0;
    c->fd = tn_connect(addr);
    if (c->fd < 0) {
        snprintf(err, errlen, "connect %s: %s", addr, strerror(errno));
        return -1;
    }
    c->ssl = SSL_new(ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || !SSL_set_app_data(c->ssl, c)) {
        snprintf(err, errlen, "SSL_new");
        goto out_close;
    }
    X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
    struct in6_addr ip;
    if (inet_pton(AF_INET, host, &ip) == 1 || inet_pton(AF_INET6, host, &ip) == 1) {
        if (!X509_VERIFY_PARAM_set1_ip_asc(param, host)) {
            snprintf(err, errlen, "bad IP %s", host);
            goto out_close;
        }
    } else if (!X509_VERIFY_PARAM_set1_host(param, host, strlen(host)) ||
               !SSL_set_tlsext_host_name(c->ssl, host)) {
        snprintf(err, errlen, "bad host %s", host);
        goto out_close;
    }
    if (session && !SSL_set_session(c->ssl, session)) {
        snprintf(err, errlen, "SSL_set_session");
        goto out_close;
    }
    int rc = SSL_connect(c->ssl);
    if (rc != 1) {
        long v = SSL_get_verify_result(c->ssl);
        char what[256];
        snprintf(what, sizeof(what), "handshake with %s (verify: %s)", addr,
                 X509_verify_cert_error_string(v));
        fill_err(err, errlen, what, SSL_get_error(c->ssl, rc));
        goto out_close;
    }
    return 0;
out_close:
    ERR_clear_error();
    tc_close(c);
    return -1;
}

bool tc_resumed(const struct tc_conn *c)
{
    return c->ssl && SSL_session_reused(c->ssl) == 1;
}

/* io_error maps a failed SSL_read/SSL_write. */
static int io_error(struct tc_conn *c, int rc)
{
    int e = errno;
    int se = SSL_get_error(c->ssl, rc);
    ERR_clear_error();
    switch (se) {
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (rc == 0 || e == 0) {
            return -EPIPE; /* EOF without close_notify */
        }
        if (e == EAGAIN || e == EWOULDBLOCK) {
            return -ETIMEDOUT;
        }
        return e == ECONNRESET ? -ECONNRESET : -e;
    default:
        return -EPROTO;
    }
}

int tc_send_all(struct tc_conn *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        errno = 0;
        int w = SSL_write(c->ssl, b, n > (1u << 30) ? (int)(1u << 30) : (int)n);
        if (w <= 0) {
            int rc = io_error(c, w);
            return rc ? rc : -EPIPE;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int tc_recv(struct tc_conn *c, void *p, size_t n, size_t *got)
{
    *got = 0;
    if (c->in_len) {
        size_t k = c->in_len < n ? c->in_len : n;
        memcpy(p, c->in, k);
        memmove(c->in, c->in + k, c->in_len - k);
        c->in_len -= k;
        *got = k;
        return 0;
    }
    errno = 0;
    int r = SSL_read(c->ssl, p, n > (1u << 30) ? (int)(1u << 30) : (int)n);
    if (r > 0) {
        *got = (size_t)r;
        return 0;
    }
    return io_error(c, r);
}

/* read_more appends to c->in. Returns 0, -ENODATA on a clean end, or as tc_recv. */
static int read_more(struct tc_conn *c)
{
    if (c->in_len == sizeof(c->in)) {
        return -EPROTO;
    }
    errno = 0;
    int r = SSL_read(c->ssl, c->in + c->in_len, (int)(sizeof(c->in) - c->in_len));
    if (r > 0) {
        c->in_len += (size_t)r;
        return 0;
    }
    int rc = io_error(c, r);
    return rc ? rc : -ENODATA;
}

static int read_one(struct tc_conn *c, struct tn_resp *r)
{
    memset(r, 0, sizeof(*r));
    char *end;
    for (;;) {
        end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (end) {
            break;
        }
        int rc = read_more(c);
        if (rc) {
            return rc == -ENODATA && c->in_len ? -EPROTO : rc;
        }
    }
    size_t head_len = (size_t)(end + 4 - c->in);
    if (head_len >= sizeof(r->head)) {
        return -EPROTO;
    }
    memcpy(r->head, c->in, head_len);
    r->head[head_len] = '\0';
    r->head_len = head_len;
    memmove(c->in, c->in + head_len, c->in_len - head_len);
    c->in_len -= head_len;
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) {
        return -EPROTO;
    }
    char cl[32];
    size_t blen = 0;
    if (tn_resp_header(r, "Content-Length", cl, sizeof(cl))) {
        blen = (size_t)strtoull(cl, NULL, 10);
    }
    r->body = malloc(blen + 1);
    if (!r->body) {
        return -ENOMEM;
    }
    size_t have = 0;
    while (have < blen) {
        size_t got;
        int rc = tc_recv(c, r->body + have, blen - have, &got);
        if (rc) {
            return rc;
        }
        if (got == 0) {
            return -EPROTO;
        }
        have += got;
    }
    r->body[blen] = '\0';
    r->body_len = blen;
    return 0;
}

int tc_read_response(struct tc_conn *c, struct tn_resp *r)
{
    for (;;) {
        int rc = read_one(c, r);
        if (rc || r->status >= 200) {
            return rc;
        }
        tn_resp_free(r);
    }
}

int tc_request(struct tc_conn *c, const char *raw, struct tn_resp *r)
{
    memset(r, 0, sizeof(*r));
    int rc = tc_send_all(c, raw, strlen(raw));
    if (rc == 0) {
        rc = tc_read_response(c, r);
    }
    return rc < 0 ? rc : r->status;
}
