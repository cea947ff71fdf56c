/* testpki.c: a throw-away CA and server certificate, made with the openssl command. */
#include "testpki.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The only configuration the commands read (OPENSSL_CONF and the system file are never
 * consulted), so the certificates are the same whatever the machine's openssl.cnf says. */
static const char pki_conf[] = "[req]\n"
                               "distinguished_name = dn\n"
                               "prompt = no\n"
                               "[dn]\n"
                               "CN = hookring throw-away\n"
                               "[ca_ext]\n"
                               "basicConstraints = critical,CA:TRUE\n"
                               "keyUsage = critical,keyCertSign,cRLSign\n"
                               "subjectKeyIdentifier = hash\n"
                               "[srv_ext]\n"
                               "basicConstraints = critical,CA:FALSE\n"
                               "keyUsage = critical,digitalSignature\n"
                               "extendedKeyUsage = serverAuth\n"
                               "subjectAltName = IP:127.0.0.1,IP:::1,DNS:localhost\n"
                               "subjectKeyIdentifier = hash\n"
                               "authorityKeyIdentifier = keyid\n";

int tp_openssl_path(char *out, size_t outlen)
{
    const char *path = getenv("PATH");
    if (!path || !*path) {
        path = "/usr/local/bin:/usr/bin:/bin";
    }
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        if (n > 0 && (size_t)snprintf(out, outlen, "%.*s/openssl", (int)n, path) < outlen &&
            access(out, X_OK) == 0) {
            return 0;
        }
        path += n + (colon ? 1 : 0);
    }
    return -1;
}

/* run_openssl runs openssl with args (NULL-terminated, argv[0] excluded) in p->dir, its output
 * going to p->dir/openssl.log. Returns 0, or -1 with err holding the log's tail. */
static int run_openssl(const struct tp_pki *p, const char *openssl, const char *const *args,
                       char *err, size_t errlen)
{
    char log[160];
    snprintf(log, sizeof(log), "%s/openssl.log", p->dir);
    const char *argv[32];
    size_t n = 0;
    argv[n++] = openssl;
    for (size_t i = 0; args[i] && n < 31; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || chdir(p->dir) < 0) {
            _exit(126);
        }
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) {
            dup2(nul, STDIN_FILENO);
        }
        setenv("OPENSSL_CONF", "pki.cnf", 1);
        execv(openssl, (char *const *)argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            snprintf(err, errlen, "waitpid: %s", strerror(errno));
            return -1;
        }
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        return 0;
    }
    char tail[512] = "";
    FILE *f = fopen(log, "r");
    if (f) {
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, len > (long)sizeof(tail) - 1 ? len - (long)sizeof(tail) + 1 : 0, SEEK_SET);
        size_t got = fread(tail, 1, sizeof(tail) - 1, f);
        tail[got] = '\0';
        fclose(f);
    }
    snprintf(err, errlen, "openssl %s failed (status %d): %s", args[0], st, tail);
    return -1;
}

int tp_pki_make(struct tp_pki *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    char openssl[512];
    if (tp_openssl_path(openssl, sizeof(openssl)) < 0) {
        snprintf(err, errlen,
                 "the openssl command is not on PATH: the TLS tests make their throw-away CA "
                 "with it (Debian package 'openssl'; 'make deps' installs it)");
        return -1;
    }
    snprintf(p->dir, sizeof(p->dir), "/tmp/hookring-pki-XXXXXX");
    if (!mkdtemp(p->dir)) {
        snprintf(err, errlen, "mkdtemp: %s", strerror(errno));
        p->dir[0] = '\0';
        return -1;
    }
    char conf[160];
    snprintf(conf, sizeof(conf), "%s/pki.cnf", p->dir);
    FILE *f = fopen(conf, "w");
    if (!f || fputs(pki_conf, f) < 0 || fclose(f) != 0) {
        snprintf(err, errlen, "writing %s: %s", conf, strerror(errno));
        tp_pki_remove(p);
        return -1;
    }
    snprintf(p->ca, sizeof(p->ca), "%s/ca.pem", p->dir);
    snprintf(p->cert, sizeof(p->cert), "%s/server.pem", p->dir);
    snprintf(p->key, sizeof(p->key), "%s/server.key", p->dir);

    char serial[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(serial, sizeof(serial), "0x%llx%08lx", (unsigned long long)ts.tv_sec,
             (unsigned long)(ts.tv_nsec ^ (long)getpid()));
    const char *ca[] = {"req",
                        "-x509",
                        "-config",
                        "pki.cnf",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                        "-nodes",
                        "-keyout",
                        "ca.key",
                        "-out",
                        "ca.pem",
                        "-days",
                        "2",
                        "-subj",
                        "/CN=hookring throw-away CA",
                        "-extensions",
                        "ca_ext",
                        NULL};
    const char *csr[] = {"req",        "-new",    "-config",       "pki.cnf",
                         "-newkey",    "ec",      "-pkeyopt",      "ec_paramgen_curve:P-256",
                         "-nodes",     "-keyout", "server.key",    "-out",
                         "server.csr", "-subj",   "/CN=localhost", NULL};
    const char *sign[] = {"x509",    "-req",   "-in",        "server.csr",  "-CA",
                          "ca.pem",  "-CAkey", "ca.key",     "-set_serial", serial,
                          "-days",   "2",      "-extfile",   "pki.cnf",     "-extensions",
                          "srv_ext", "-out",   "server.pem", NULL};
    if (run_openssl(p, openssl, ca, err, errlen) < 0 ||
        run_openssl(p, openssl, csr, err, errlen) < 0 ||
        run_openssl(p, openssl, sign, err, errlen) < 0) {
        tp_pki_remove(p);
        return -1;
    }
    return 0;
}

void tp_pki_remove(struct tp_pki *p)
{
    if (!p->dir[0]) {
        return;
    }
    /* only the files the commands made are in there: remove whatever is, then the directory */
    DIR *d = opendir(p->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            char path[384];
            snprintf(path, sizeof(path), "%s/%s", p->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(p->dir);
    p->dir[0] = '\0';
}
