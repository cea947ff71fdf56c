/* cmd_sign.c: hookring sign: print the exact request a profile would send for an event. */
#include "cmd.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#define EVENT_FILE_MAX (4u << 20)

static const char sign_help[] =
    "usage: hookring sign --profile P --secret S [--secret S2...] [--id ID] [--timestamp T]\n"
    "                     [--enc-secret B64 --enc-salt SALT] EVENT.json\n"
    "\n"
    "Prints the exact request the profile would send for the event: 'Name: value' header lines\n"
    "(CRLF-terminated, as on the wire), one empty line, then the body bytes. EVENT.json is an\n"
    "event as in spec/PROFILES.md ('-' reads standard input, at most 4 MiB).\n"
    "\n"
    "  --profile P       humanconnection humiris humcli humanos aksita standard svix stripe "
    "github\n"
    "  --secret S        the signing secret (standard, svix: whsec_ + base64; others: as given).\n"
    "                    Repeat during a rotation: the first is current; standard, svix and\n"
    "                    stripe sign with every one, the others with the first. Optional for "
    "aksita\n"
    "  --id ID           the message id sent (webhook-id, svix-id, X-GitHub-Delivery); default:\n"
    "                    the event id (github: a GUID derived from it)\n"
    "  --timestamp T     the attempt time in unix seconds (default: now), for reproducible output\n"
    "  --enc-secret B64  humanos: the encryption secret (base64)\n"
    "  --enc-salt SALT   humanos: the encryption salt\n"
    "  -h, --help        this text\n"
    "\n"
    "exit status: 0 printed; 2 bad usage or an event the profile cannot send (the reason names\n"
    "the field).\n";

int cmd_sign(int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},
        {"timestamp", required_argument, NULL, 't'},
        CMD_SIG_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *id = NULL, *ts = NULL;
    int c;
    static struct cmd_sig sg;
    cmd_sig_init(&sg);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            id = optarg;
            break;
        case 't':
            ts = optarg;
            break;
        case 'h':
            fputs(sign_help, stdout);
            return EXIT_OK;
        default: {
            int e = cmd_sig_option("sign", &sg, c, optarg);
            if (e < 0) {
                return cmd_bad_option("sign", argc, argv, c);
            }
            if (e) {
                return e;
            }
            break;
        }
        }
    }
    if (optind != argc - 1) {
        return cmd_usage_error("sign", optind >= argc ? "EVENT.json is required"
                                                      : "exactly one EVENT.json, not several");
    }
    const char *path = argv[optind];
    const struct profile *p = cmd_profile("sign", sg.profile);
    if (!p) {
        return EXIT_USAGE;
    }
    int64_t now_ms = cmd_now_ms();
    if (ts) {
        uint64_t t;
        if (!cmd_parse_uint(ts, &t) || t > 253402300799ull) {
            return cmd_usage_error("sign", "--timestamp must be unix seconds, not '%s'", ts);
        }
        now_ms = (int64_t)t * 1000;
    }
    if (id && !event_valid_id(slice_cstr(id))) {
        return cmd_usage_error("sign", "--id must be 1-128 printable characters without '.' or "
                                       "spaces");
    }
    char err[EVENT_ERR_MAX];
    struct signer s;
    if (signer_init(&s, p, sg.secrets, sg.nsecrets, slice_cstr(sg.enc), slice_cstr(sg.salt), err,
                    sizeof(err))) {
        return cmd_usage_error("sign", "%s", err);
    }
    int ret = EXIT_USAGE;
    struct buf in, head, body;
    buf_init(&in, EVENT_FILE_MAX);
    buf_init(&head, 1 << 16);
    buf_init(&body, 64u << 20);
    struct event ev = {0};
    int rc = cmd_read_file(path, &in);
    if (rc) {
        fprintf(stderr, "hookring sign: %s: %s\n", path,
                rc == -EFBIG ? "larger than 4 MiB" : strerror(-rc));
        goto out;
    }
    if (event_parse(&ev, in.p, in.len, now_ms, err, sizeof(err))) {
        fprintf(stderr, "hookring sign: %s: %s\n", path, err);
        goto out;
    }
    if (sign_request(&s, &ev, slice_cstr(id), now_ms, &head, &body, err, sizeof(err))) {
        fprintf(stderr, "hookring sign: %s: %s\n", path, err);
        goto out;
    }
    if (fwrite(head.p, 1, head.len, stdout) != head.len || fwrite("\r\n", 1, 2, stdout) != 2 ||
        fwrite(body.p, 1, body.len, stdout) != body.len || fflush(stdout) != 0) {
        fprintf(stderr, "hookring sign: writing the request: %s\n", strerror(errno));
        ret = EXIT_FAIL;
        goto out;
    }
    ret = EXIT_OK;
out:
    event_clear(&ev);
    signer_wipe(&s);
    buf_free(&in);
    buf_free(&head);
    buf_free(&body);
    return ret;
}
