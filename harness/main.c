/* main.c: hookring-harness, the mock webhook subscriber (harness/README.md). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "hconfig.h"
#include "hserver.h"

static int write_ids(struct hserver *s, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        return -errno;
    }
    int rc = hids_write(&s->ids, f);
    if (fclose(f) != 0 && rc == 0) {
        rc = -errno;
    }
    return rc;
}

int main(int argc, char **argv)
{
    static struct hconfig cfg;
    char err[HCONFIG_ERR_MAX];
    int rc = hconfig_parse(&cfg, argc, argv, err, sizeof(err));
    if (rc == 1) {
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "hookring-harness: %s\n", err);
        return 2;
    }

    /* Signals go to main alone (sigwait below): the workers inherit the blocked mask, so a
     * SIGINT never interrupts a ring wait halfway through a batch. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    static struct hserver srv;
    rc = hserver_start(&srv, &cfg, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "hookring-harness: %s\n", err);
        hconfig_cleanup(&cfg);
        return 1;
    }
    for (size_t i = 0; i < cfg.nlisten; i++) {
        char addr[80];
        hconfig_format_addr((const struct sockaddr *)&srv.bound[i], addr, sizeof(addr));
        /* the suffix follows the address, so "listening on ADDR" parsers still find ADDR */
        printf("listening on %s%s\n", addr, cfg.listen[i].tls_cert ? " (tls)" : "");
    }
    if (!cfg.any_verified && !cfg.quiet) {
        fprintf(stderr, "hookring-harness: no --profile or --route: requests are accepted "
                        "unverified (ids from X-Harness-Id)\n");
    }
    fflush(stdout);

    int sig = 0;
    sigwait(&set, &sig);

    hserver_stop_workers(&srv);
    if (!cfg.quiet) {
        printf("harness: stopping on %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        hstats_summary(&srv.stats, stdout);
        fflush(stdout);
    }
    int exit_code = srv.fatal_rc ? 1 : 0;
    if (cfg.ids_file) {
        rc = write_ids(&srv, cfg.ids_file);
        if (rc < 0) {
            fprintf(stderr, "hookring-harness: --ids-file %s: %s\n", cfg.ids_file, strerror(-rc));
            exit_code = 1;
        }
    }
    hserver_stop(&srv);
    hconfig_cleanup(&cfg);
    return exit_code;
}
