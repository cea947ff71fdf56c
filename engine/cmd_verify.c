/* cmd_verify.c: hookring verify: check a received request as that profile's receiver would. */
#include "cmd.h"

#include <errno.h>
#include <stdio.h>

#define BODY_FILE_MAX (64u << 20)
#define MAX_HEADERS 64

static const char verify_help[] =
    "usage: hookring verify --profile P --secret S [--secret S2...] [--enc-secret B64 --enc-salt "
    "SALT]\n"
    "                       [--tolerance SECONDS] [--now T] --header 'Name: value'... BODY_FILE\n"
    "\n"
    "Checks a received webhook: the signature header(s) against the body, in constant time, and\n"
    "the timestamp against now. Prints the event (humanos: the decrypted plaintext) and exits 0\n"
    "when valid; prints why and exits 1 when not. BODY_FILE '-' reads standard input.\n"
    "\n"
    "  --profile P        humanconnection humiris humcli humanos aksita standard svix stripe "
    "github\n"
    "  --secret S         a secret the receiver accepts (repeatable: any one may match).\n"
    "                     aksita without --secret accepts unsigned requests only\n"
    "  --header 'N: V'    a received header (repeatable, at most 64)\n"
    "  --enc-secret B64   humanos: the encryption secret (base64)\n"
    "  --enc-salt SALT    humanos: the encryption salt\n"
    "  --tolerance SECS   how far a signed timestamp may be from now (default 300)\n"
    "  --now T            judge timestamps as if it were unix second T (default: the clock)\n"
    "  -h, --help         this text\n"
    "\n"
    "exit status: 0 valid; 1 refused (reason on stderr: missing_header, malformed_header,\n"
    "bad_encoding, stale_timestamp, no_matching_signature, bad_body); 2 bad usage.\n";

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"header", required_argument, NULL, 'H'}, {"tolerance", required_argument, NULL, 'T'},
        {"now", required_argument, NULL, 'n'},    CMD_SIG_LONGOPTS,
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    struct header hdrs[MAX_HEADERS];
    size_t nh = 0;
    struct verify_opts vo = {.now_ms = cmd_now_ms(), .tolerance_s = VERIFY_TOLERANCE_S};
    uint64_t v;
    int c;
    static struct cmd_sig sg;
    cmd_sig_init(&sg);
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":hH:", opts, NULL)) != -1) {
        switch (c) {
        case 'H': {
            const char *colon = strchr(optarg, ':');
            if (!colon || colon == optarg) {
                return cmd_usage_error("verify", "--header wants 'Name: value', not '%s'", optarg);
            }
            if (nh == MAX_HEADERS) {
                return cmd_usage_error("verify", "at most %d --header options", MAX_HEADERS);
            }
            const char *val = colon + 1;
            while (*val == ' ' || *val == '\t') {
                val++;
            }
            size_t vl = strlen(val);
            while (vl && (val[vl - 1] == ' ' || val[vl - 1] == '\t' || val[vl - 1] == '\r')) {
                vl--;
            }
            hdrs[nh++] =
                (struct header){slice_of(optarg, (size_t)(colon - optarg)), slice_of(val, vl)};
            break;
        }
        case 'T':
            if (!cmd_parse_uint(optarg, &v) || v > 366ull * 86400 * 100) {
                return cmd_usage_error("verify", "--tolerance must be seconds, not '%s'", optarg);
            }
            vo.tolerance_s = (int64_t)v;
            break;
        case 'n':
            if (!cmd_parse_uint(optarg, &v) || v > 253402300799ull) {
                return cmd_usage_error("verify", "--now must be unix seconds, not '%s'", optarg);
            }
            vo.now_ms = (int64_t)v * 1000;
            break;
        case 'h':
            fputs(verify_help, stdout);
            return EXIT_OK;
        default: {
            int e = cmd_sig_option("verify", &sg, c, optarg);
            if (e < 0) {
                return cmd_bad_option("verify", argc, argv, c);
            }
            if (e) {
                return e;
            }
            break;
        }
        }
    }
    if (optind != argc - 1) {
        return cmd_usage_error("verify", optind >= argc ? "BODY_FILE is required"
                                                        : "exactly one BODY_FILE, not several");
    }
    const struct profile *p = cmd_profile("verify", sg.profile);
    if (!p) {
        return EXIT_USAGE;
    }
    char err[EVENT_ERR_MAX];
    struct signer s;
    if (signer_init(&s, p, sg.secrets, sg.nsecrets, slice_cstr(sg.enc), slice_cstr(sg.salt), err,
                    sizeof(err))) {
        return cmd_usage_error("verify", "%s", err);
    }
    int ret = EXIT_USAGE;
    struct buf body;
    struct verify_result r;
    buf_init(&body, BODY_FILE_MAX);
    buf_init(&r.plain, BODY_FILE_MAX);
    int rc = cmd_read_file(argv[optind], &body);
    if (rc) {
        fprintf(stderr, "hookring verify: %s: %s\n", argv[optind],
                rc == -EFBIG ? "larger than 64 MiB" : strerror(-rc));
        goto out;
    }
    if (verify_request(&s, hdrs, nh, buf_slice(&body), &vo, &r) != VERIFY_OK) {
        fprintf(stderr, "hookring verify: refused: %s: %s\n", verify_status_name(r.status),
                r.reason);
        ret = EXIT_FAIL;
        goto out;
    }
    fwrite(r.plain.p, 1, r.plain.len, stdout);
    if (r.plain.len && r.plain.p[r.plain.len - 1] != '\n') {
        putchar('\n');
    }
    ret = EXIT_OK;
out:
    signer_wipe(&s);
    buf_free(&body);
    buf_free(&r.plain);
    return ret;
}
