/* killrig.c: the producers of a SIGKILL test (killrig.h). */
#include "killrig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testnet.h"

struct poster {
    struct tn_kill *kr;
    size_t who;
};

static struct poster posters[TN_KILL_MAX_POSTERS];

static void *poster_main(void *arg)
{
    struct poster *p = arg;
    struct tn_kill *kr = p->kr;
    for (unsigned k = 0; !__atomic_load_n(&kr->stop, __ATOMIC_ACQUIRE); k++) {
        if (!kr->post(kr, kr->addr, p->who, k)) {
            usleep(2000);
        }
    }
    return NULL;
}

int tn_kill_start(struct tn_kill *kr, const char *addr, size_t nposters, tn_kill_post_fn *post)
{
    memset(kr, 0, sizeof(*kr));
    if (nposters > TN_KILL_MAX_POSTERS || strlen(addr) >= sizeof(kr->addr)) {
        return -1;
    }
    snprintf(kr->addr, sizeof(kr->addr), "%s", addr);
    kr->post = post;
    pthread_mutex_init(&kr->lock, NULL);
    kr->acked = calloc(TN_KILL_MAX_IDS, sizeof(*kr->acked));
    if (!kr->acked) {
        return -1;
    }
    for (size_t i = 0; i < nposters; i++) {
        posters[i] = (struct poster){kr, i};
        if (pthread_create(&kr->th[i], NULL, poster_main, &posters[i])) {
            tn_kill_stop(kr);
            return -1;
        }
        kr->nth++;
    }
    return 0;
}

void tn_kill_ack(struct tn_kill *kr, const char *id)
{
    pthread_mutex_lock(&kr->lock);
    if (kr->nacked < TN_KILL_MAX_IDS) {
        snprintf(kr->acked[kr->nacked++], TN_KILL_ID_LEN, "%s", id);
    }
    pthread_mutex_unlock(&kr->lock);
}

void tn_kill_stop(struct tn_kill *kr)
{
    __atomic_store_n(&kr->stop, 1, __ATOMIC_RELEASE);
    for (size_t i = 0; i < kr->nth; i++) {
        pthread_join(kr->th[i], NULL);
    }
    kr->nth = 0;
}

size_t tn_kill_missing(struct tn_kill *kr, bool (*took)(const char *id, void *arg), void *arg,
                       int ms)
{
    size_t missing = 0;
    int64_t end = tn_now_ms() + ms;
    for (size_t i = 0; i < kr->nacked; i++) {
        while (!took(kr->acked[i], arg) && tn_now_ms() < end) {
            usleep(20000);
        }
        if (!took(kr->acked[i], arg)) {
            missing++;
            fprintf(stderr, "acknowledged but never delivered: %s\n", kr->acked[i]);
        }
    }
    return missing;
}

void tn_kill_free(struct tn_kill *kr)
{
    free(kr->acked);
    kr->acked = NULL;
    pthread_mutex_destroy(&kr->lock);
}
