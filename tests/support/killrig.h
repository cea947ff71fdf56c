/* killrig.h: the producers of a SIGKILL test. Threads post fresh events to a server that the
 * test kills and restarts (on the same address) at random moments, and keep the id of every
 * event the server acknowledged; afterwards the test checks that each of them was delivered. */
#ifndef HOOKRING_TESTS_KILLRIG_H
#define HOOKRING_TESTS_KILLRIG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#define TN_KILL_MAX_IDS 20000 /* acknowledged ids kept; later ones are not checked */
#define TN_KILL_ID_LEN 40
#define TN_KILL_MAX_POSTERS 8

struct tn_kill;

/* tn_kill_post_fn makes request number k of poster who to addr and calls tn_kill_ack for every
 * id the answer acknowledged. Returns false when the server did not answer (it is down or was
 * killed mid-request: normal here), and the poster then waits a little. */
typedef bool tn_kill_post_fn(struct tn_kill *kr, const char *addr, size_t who, unsigned k);

struct tn_kill {
    char addr[64]; /* the server's: restarts reuse it */
    tn_kill_post_fn *post;
    int stop; /* atomic */
    pthread_t th[TN_KILL_MAX_POSTERS];
    size_t nth;
    pthread_mutex_t lock;
    char (*acked)[TN_KILL_ID_LEN];
    size_t nacked;
};

/* tn_kill_start starts nposters threads posting to addr. Returns 0 or -1. */
int tn_kill_start(struct tn_kill *kr, const char *addr, size_t nposters, tn_kill_post_fn *post);

/* tn_kill_ack records that the server acknowledged id (from a post function). */
void tn_kill_ack(struct tn_kill *kr, const char *id);

/* tn_kill_stop stops the posters and waits for them. */
void tn_kill_stop(struct tn_kill *kr);

/* tn_kill_missing waits, at most ms in all, until took(id, arg) holds for every acknowledged
 * id, and returns how many never did (each named on stderr). */
size_t tn_kill_missing(struct tn_kill *kr, bool (*took)(const char *id, void *arg), void *arg,
                       int ms);

/* tn_kill_free frees what tn_kill_start allocated (after tn_kill_stop). */
void tn_kill_free(struct tn_kill *kr);

#endif
