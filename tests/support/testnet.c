/* testnet.c: loopback helpers for the end-to-end suites. */
#include "testnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "json.h"

int64_t tn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *tn_build_dir(void)
{
    const char *b = getenv("HOOKRING_BUILD");
    return b && *b ? b : "build";
}

/* read_out appends what the child wrote, waiting at most ms. Returns false on EOF. */
static bool read_out(struct tn_proc *p, int ms)
{
    struct pollfd pfd = {.fd = p->out_fd, .events = POLLIN};
    if (poll(&pfd, 1, ms) <= 0) {
        return true;
    }
    size_t room = sizeof(p->out) - 1 - p->out_len;
    if (room == 0) {
        char sink[4096];
        return read(p->out_fd, sink, sizeof(sink)) > 0;
    }
    ssize_t n = read(p->out_fd, p->out + p->out_len, room);
    if (n <= 0) {
        return false;
    }
    p->out_len += (size_t)n;
    p->out[p->out_len] = '\0';
    return true;
}

static void parse_listening(struct tn_proc *p)
{
    p->naddr = 0;
    const char *s = p->out;
    while ((s = strstr(s, "listening on ")) && p->naddr < TN_MAX_LISTEN) {
        s += strlen("listening on ");
        const char *nl = strchr(s, '\n');
        if (!nl) {
            break;
        }
        /* the address ends at the line's end or at a note after it (" (tls)") */
        const char *sp = memchr(s, ' ', (size_t)(nl - s));
        size_t n = (size_t)((sp ? sp : nl) - s);
        if (n >= sizeof(p->addr[0])) {
            n = sizeof(p->addr[0]) - 1;
        }
        memcpy(p->addr[p->naddr], s, n);
        p->addr[p->naddr][n] = '\0';
        p->naddr++;
        s = nl;
    }
}

int tn_start(struct tn_proc *p, const char *prog, const char *const *args, size_t nlisten)
{
    memset(p, 0, sizeof(*p));
    p->pid = -1;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tn_build_dir(), prog);
    const char *argv[64];
    size_t n = 0;
    argv[n++] = path;
    for (size_t i = 0; args && args[i] && n < 63; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        /* die with the test, even when it dies on a failed assertion */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        dup2(pipefd[1], STDOUT_FILENO);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    p->pid = pid;
    p->out_fd = pipefd[0];
    int64_t deadline = tn_now_ms() + 10000;
    while (tn_now_ms() < deadline) {
        parse_listening(p);
        if (p->naddr >= nlisten) {
            return 0;
        }
        if (!read_out(p, 50)) {
            break; /* the child exited */
        }
    }
    tn_stop(p, SIGKILL);
    return -1;
}

int tn_stop(struct tn_proc *p, int sig)
{
    if (p->pid <= 0) {
        return -1;
    }
    kill(p->pid, sig);
    int status = -1;
    int64_t deadline = tn_now_ms() + 10000;
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            break;
        }
        if (r < 0) {
            status = -1;
            break;
        }
        if (tn_now_ms() > deadline) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            status = -1;
            break;
        }
        read_out(p, 10);
    }
    while (read_out(p, 0) && p->out_len < sizeof(p->out) - 1) {
    }
    close(p->out_fd);
    p->pid = -1;
    return status;
}

uint16_t tn_port(const struct tn_proc *p, size_t i)
{
    const char *colon = strrchr(p->addr[i], ':');
    return colon ? (uint16_t)atoi(colon + 1) : 0;
}

int tn_connect(const char *addr)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon) {
        return -1;
    }
    size_t hl = (size_t)(colon - addr);
    if (hl >= sizeof(host)) {
        return -1;
    }
    memcpy(host, addr, hl);
    host[hl] = '\0';
    int port = atoi(colon + 1);
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    if (host[0] == '[') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        host[hl - 1] = '\0';
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1) {
            return -1;
        }
        sl = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
            return -1;
        }
        sl = sizeof(*s4);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct timeval tv = {.tv_sec = TN_IO_TIMEOUT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int tn_send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static int recv_some(int fd, void *p, size_t n, ssize_t *got)
{
    for (;;) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
        }
        *got = r;
        return 0;
    }
}

bool tn_resp_header(const struct tn_resp *r, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *s = strstr(r->head, "\r\n");
    while (s && s < r->head + r->head_len) {
        s += 2;
        if (strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
            const char *v = s + nl + 1;
            while (*v == ' ') {
                v++;
            }
            const char *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n >= outlen) {
                n = outlen - 1;
            }
            memcpy(out, v, n);
            out[n] = '\0';
            return true;
        }
        s = strstr(s, "\r\n");
    }
    return false;
}

/* Responses are read with MSG_PEEK so that nothing past the response is consumed: a pipelined
 * reader can call tn_read_response again for the next one. */
static int read_one(int fd, struct tn_resp *r, bool head_only)
{
    memset(r, 0, sizeof(*r));
    size_t len = 0;
    int64_t deadline = tn_now_ms() + TN_IO_TIMEOUT_MS;
    for (;;) {
        ssize_t got = recv(fd, r->head, sizeof(r->head) - 1, MSG_PEEK);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -errno;
        }
        if (got == 0) {
            return len == 0 ? -ENODATA : -EPROTO;
        }
        r->head[got] = '\0';
        char *end = strstr(r->head, "\r\n\r\n");
        if (end) {
            r->head_len = (size_t)(end + 4 - r->head);
            break;
        }
        if ((size_t)got == sizeof(r->head) - 1) {
            return -EPROTO;
        }
        if ((size_t)got == len) {
            /* the peek returns at once while part of a head waits: pause, bounded */
            if (tn_now_ms() > deadline) {
                return -ETIMEDOUT;
            }
            usleep(1000);
        }
        len = (size_t)got;
    }
    /* consume the head */
    size_t left = r->head_len;
    char sink[16384];
    while (left) {
        ssize_t got;
        int rc = recv_some(fd, sink, left, &got);
        if (rc) {
            return rc;
        }
        if (got == 0) {
            return -EPROTO;
        }
        left -= (size_t)got;
    }
    r->head[r->head_len] = '\0';
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) {
        return -EPROTO;
    }
    char cl[32];
    size_t blen = 0;
    if (!head_only && tn_resp_header(r, "Content-Length", cl, sizeof(cl))) {
        blen = (size_t)strtoull(cl, NULL, 10);
    }
    r->body = malloc(blen + 1);
    size_t have = 0;
    while (have < blen) {
        ssize_t got;
        int rc = recv_some(fd, r->body + have, blen - have, &got);
        if (rc) {
            return rc;
        }
        if (got == 0) {
            return -EPROTO;
        }
        have += (size_t)got;
    }
    r->body[blen] = '\0';
    r->body_len = blen;
    return 0;
}

int tn_read_response_ex(int fd, struct tn_resp *r, unsigned flags)
{
    for (;;) {
        int rc = read_one(fd, r, flags & TN_HEAD_ONLY);
        if (rc || (flags & TN_KEEP_INTERIM) || r->status >= 200) {
            return rc;
        }
        tn_resp_free(r);
    }
}

int tn_read_response(int fd, struct tn_resp *r)
{
    return tn_read_response_ex(fd, r, 0);
}

void tn_resp_free(struct tn_resp *r)
{
    free(r->body);
    r->body = NULL;
}

int tn_request(const char *addr, const char *raw, size_t raw_len, struct tn_resp *r)
{
    memset(r, 0, sizeof(*r));
    int fd = tn_connect(addr);
    if (fd < 0) {
        return -ECONNREFUSED;
    }
    int rc = tn_send_all(fd, raw, raw_len);
    if (rc == 0) {
        rc = tn_read_response(fd, r);
    }
    close(fd);
    return rc;
}

int tn_get(const char *addr, const char *path, struct tn_resp *r)
{
    char raw[1024];
    int n = snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
    int rc = tn_request(addr, raw, (size_t)n, r);
    return rc < 0 ? rc : r->status;
}

bool tn_wait_readable(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, ms) > 0;
}

bool tn_json_u64(const char *json, const char *path, uint64_t *out)
{
    size_t len = strlen(json);
    size_t max = len / 2 + 16;
    struct json_tok *toks = malloc(max * sizeof(*toks));
    size_t n, off;
    bool ok = false;
    if (!toks || json_parse(toks, max, (const uint8_t *)json, len, &n, &off) != JSON_OK) {
        goto out;
    }
    int cur = 0;
    char key[128];
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t kl = dot ? (size_t)(dot - p) : strlen(p);
        if (kl >= sizeof(key) || toks[cur].type != JSON_OBJECT) {
            goto out;
        }
        memcpy(key, p, kl);
        key[kl] = '\0';
        cur = json_obj_get(toks, cur, (const uint8_t *)json, key);
        if (cur < 0) {
            goto out;
        }
        p += kl + (dot ? 1 : 0);
    }
    if (toks[cur].type == JSON_NUMBER) {
        char *end;
        unsigned long long v = strtoull(json + toks[cur].start, &end, 10);
        ok = end == json + toks[cur].end;
        *out = v;
    }
out:
    free(toks);
    return ok;
}

int tn_api(const char *addr, const char *key, const char *method, const char *path,
           const char *body, struct tn_resp *r)
{
    memset(r, 0, sizeof(*r));
    size_t blen = body ? strlen(body) : 0;
    size_t cap = blen + strlen(method) + strlen(path) + (key ? strlen(key) : 0) + 256;
    char *raw = malloc(cap);
    if (!raw) {
        return -ENOMEM;
    }
    int n = snprintf(raw, cap, "%s %s HTTP/1.1\r\nHost: t\r\n%s%s%sContent-Length: %zu\r\n\r\n",
                     method, path, key ? "Authorization: Bearer " : "", key ? key : "",
                     key ? "\r\n" : "", blen);
    memcpy(raw + n, body ? body : "", blen);
    int rc = tn_request(addr, raw, (size_t)n + blen, r);
    free(raw);
    return rc < 0 ? rc : r->status;
}

bool tn_json_str(const char *json, const char *key, char *out, size_t n)
{
    char pat[128];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *p = json ? strstr(json, pat) : NULL;
    if (!p) {
        return false;
    }
    p += strlen(pat);
    const char *e = strchr(p, '"');
    if (!e || (size_t)(e - p) >= n) {
        return false;
    }
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = 0;
    return true;
}

uint16_t tn_closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return 0;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        port = ntohs(sa.sin_port);
    }
    close(fd);
    return port;
}

int tn_tmpdir(char *out, size_t n, const char *prefix)
{
    if (snprintf(out, n, "/tmp/%s-XXXXXX", prefix) >= (int)n) {
        return -1;
    }
    return mkdtemp(out) ? 0 : -1;
}

int tn_rm_rf(const char *dir)
{
    char cmd[512];
    if (strchr(dir, '\'') || snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir) >= (int)sizeof(cmd)) {
        return -1;
    }
    return system(cmd) == 0 ? 0 : -1;
}

int tn_serve(struct tn_proc *s, const char *data, const char *key, const char *listen,
             bool allow_net, const char *const *extra)
{
    const char *args[48] = {"serve", "--data",    data, "--listen",
                            listen,  "--api-key", key,  "--quiet"};
    size_t n = 8;
    const char *workers = getenv("HOOKRING_SERVE_WORKERS");
    if (workers && workers[0]) {
        args[n++] = "--workers";
        args[n++] = workers;
    }
    if (allow_net) {
        args[n++] = "--allow-net";
        args[n++] = "127.0.0.0/8";
    }
    for (size_t i = 0; extra && extra[i]; i++) {
        if (n + 1 >= sizeof(args) / sizeof(args[0])) {
            return -1;
        }
        args[n++] = extra[i];
    }
    args[n] = NULL;
    return tn_start(s, "hookring", args, 1);
}

size_t tn_ndjson_events(char *out, size_t cap, const char *prefix, const char *type, int first,
                        int n)
{
    size_t len = 0;
    out[0] = 0;
    for (int i = first; i < first + n && len + 1 < cap; i++) {
        int w = snprintf(out + len, cap - len, "{\"id\":\"%s%d\",\"type\":\"%s\",\"data\":%d}\n",
                         prefix, i, type, i);
        if (w < 0 || (size_t)w >= cap - len) {
            out[len] = 0;
            break;
        }
        len += (size_t)w;
    }
    return len;
}

int tn_metric(const char *addr, const char *key, const char *name, uint64_t *out)
{
    struct tn_resp r;
    int rc = -1;
    if (tn_api(addr, key, "GET", "/metrics", NULL, &r) == 200 && r.body) {
        char pat[128];
        snprintf(pat, sizeof(pat), "\n%s ", name);
        const char *p = strstr(r.body, pat);
        if (p) {
            *out = strtoull(p + strlen(pat), NULL, 10);
            rc = 0;
        }
    }
    tn_resp_free(&r);
    return rc;
}

int tn_std_webhook(const char *addr, const char *key, const char *target, const char *route,
                   const char *filter, const char *secret, const char *extra, char *id, size_t n)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s%s\",\"profile\":\"standard\",\"events\":[\"%s\"],"
             "\"secret\":\"%s\"%s}",
             target, route, filter, secret, extra);
    struct tn_resp r;
    int st = tn_api(addr, key, "POST", "/v1/webhooks", body, &r);
    int rc = st == 201 && tn_json_str(r.body, "id", id, n) ? 0 : st == 201 ? -EPROTO : st;
    if (rc) {
        snprintf(id, n, "%s", r.body ? r.body : "");
    }
    tn_resp_free(&r);
    return rc;
}

uint64_t tn_harness_id(const char *addr, const char *id, const char *field)
{
    char path[256];
    struct tn_resp r;
    snprintf(path, sizeof(path), "/_harness/ids/%s", id);
    uint64_t v = 0;
    if (tn_get(addr, path, &r) == 200) {
        tn_json_u64(r.body, field, &v);
    }
    tn_resp_free(&r);
    return v;
}
