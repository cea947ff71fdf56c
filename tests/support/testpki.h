/* testpki.h: a throw-away PKI for the TLS suites, made at run time with the openssl command: a
 * CA and a server certificate it signed, valid for 127.0.0.1, ::1 and localhost, in a fresh
 * directory under /tmp. Nothing is checked in and nothing outlives the test. */
#ifndef HOOKRING_TESTPKI_H
#define HOOKRING_TESTPKI_H

#include <stddef.h>

struct tp_pki {
    char dir[64];   /* mkdtemp'd; empty when not made */
    char ca[128];   /* the CA certificate (PEM): what a client trusts */
    char cert[128]; /* the server certificate (PEM), signed by the CA */
    char key[128];  /* its private key (PEM) */
};

/* tp_openssl_path finds the openssl command on PATH and copies its path into out. Returns 0,
 * or -1 when it is not installed. */
int tp_openssl_path(char *out, size_t outlen);

/* tp_pki_make makes the directory, the CA and the server certificate (P-256 keys, two days).
 * Returns 0; or -1 with err filled (the openssl command missing, or what it printed when it
 * failed), everything made so far removed. */
int tp_pki_make(struct tp_pki *p, char *err, size_t errlen);

/* tp_pki_remove deletes the files and the directory; a no-op when p was not made. */
void tp_pki_remove(struct tp_pki *p);

#endif
