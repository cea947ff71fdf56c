/* main.c: the hookring command dispatcher. */
#include "cmd.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: hookring COMMAND [OPTIONS]\n"
    "\n"
    "hookring is an outbound webhook delivery engine: it signs events the way each provider\n"
    "contract requires and delivers them.\n"
    "\n"
    "commands:\n"
    "  sign     print the exact request (headers, blank line, body) a profile sends for an event\n"
    "  verify   check a received request's signature as a receiver of that profile would\n"
    "  send     deliver one event to a URL, with the profile's retries when asked\n"
    "  blast    load-test a webhook receiver: signed deliveries at a concurrency or a rate\n"
    "  serve    the durable delivery backend: HTTP API, journal, fan-out, retries\n"
    "\n"
    "profiles: humanconnection humiris humcli humanos aksita standard svix stripe github\n"
    "\n"
    "'hookring COMMAND --help' describes each command.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        puts("hookring 0.1.0");
        return EXIT_OK;
    }
    if (strcmp(cmd, "sign") == 0) {
        return cmd_sign(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "verify") == 0) {
        return cmd_verify(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "send") == 0) {
        return cmd_send(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "blast") == 0) {
        return cmd_blast(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "serve") == 0) {
        cmd_serve_huge_pages(argv);
        return cmd_serve(argc - 1, argv + 1);
    }
    fprintf(stderr, "hookring: unknown command '%s' (see 'hookring --help')\n", cmd);
    return EXIT_USAGE;
}
