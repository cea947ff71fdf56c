/* test_cli.c: hookring sign/verify as a user runs them: exit codes, one-line errors, --help,
 * and sign | verify agreeing through real files. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "support/util.h"

TestSuite(cli);

/* run executes a shell command line with build/hookring as $HR and returns its exit status;
 * out gets stdout+stderr (NUL-terminated, truncated to cap). */
static int run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    int n = snprintf(cmd, sizeof(cmd), "HR=%s/hookring; ", util_build_dir());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof(cmd) - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t len = fread(out, 1, cap - 1, p);
    out[len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static size_t lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        n += *s == '\n';
    }
    return n;
}

Test(cli, help_on_every_command)
{
    char out[8192];
    cr_expect_eq(run(out, sizeof(out), "$HR --help"), 0);
    cr_expect(strstr(out, "sign") && strstr(out, "verify"), "%s", out);
    cr_expect_eq(run(out, sizeof(out), "$HR sign --help"), 0);
    cr_expect(strstr(out, "usage: hookring sign"), "%s", out);
    cr_expect_eq(run(out, sizeof(out), "$HR verify -h"), 0);
    cr_expect(strstr(out, "usage: hookring verify"), "%s", out);
}

Test(cli, usage_errors_are_one_line_and_exit_2)
{
    static const char *const cmds[] = {
        "$HR",
        "$HR frobnicate",
        "$HR sign --profile github --secret s --bogus tests/data/events/github.json",
        "$HR sign --profile github --secret s",
        "$HR sign --profile nope --secret s tests/data/events/github.json",
        "$HR sign --secret s tests/data/events/github.json",
        "$HR sign --profile github --secret s /nonexistent/event.json",
        "$HR sign --profile github --secret s --timestamp 12ab tests/data/events/github.json",
        "$HR sign --profile github tests/data/events/github.json",
        "$HR sign --profile standard --secret whsec_short tests/data/events/standard.json",
        "$HR sign --profile humanos --secret s tests/data/events/humanos.json",
        "$HR sign --profile humcli --secret s tests/data/events/github.json",
        "$HR sign --profile github --secret",
        "$HR verify --profile github --secret s --header nocolon /dev/null",
        "$HR verify --profile github --secret s /nonexistent",
    };
    for (size_t i = 1; i < ARRAY_SIZE(cmds); i++) {
        char out[8192];
        cr_expect_eq(run(out, sizeof(out), "%s", cmds[i]), 2, "%s -> %s", cmds[i], out);
        cr_expect_eq(lines(out), 1, "%s: one line, got: %s", cmds[i], out);
        cr_expect(strncmp(out, "hookring", 8) == 0, "%s: %s", cmds[i], out);
    }
    char out[8192];
    cr_expect_eq(run(out, sizeof(out), "%s", cmds[0]), 2, "no command");
}

Test(cli, sign_then_verify_every_profile)
{
    static const char *const p[][2] = {
        {"humanconnection", "whsec_your_signing_secret"},
        {"humiris", "k"},
        {"humcli", "k"},
        {"humanos", "k --enc-secret eW91ci1lbmNyeXB0aW9uLXNlY3JldA== --enc-salt salt"},
        {"aksita", "k"},
        {"standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
        {"svix", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
        {"stripe", "whsec_abc"},
        {"github", "k"},
    };
    char dir[] = "/tmp/hookring-cli-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    for (size_t i = 0; i < ARRAY_SIZE(p); i++) {
        char out[16384];
        /* Split the printed request with sed/awk exactly as a user's shell would. */
        int rc = run(out, sizeof(out),
                     "set -e; d=%s; $HR sign --profile %s --secret %s "
                     "tests/data/events/%s.json > $d/req; "
                     "awk 'BEGIN{RS=\"\\r\\n\\r\\n\"} NR==1{print}' $d/req | tr -d '\\r' > $d/h; "
                     "python3 -c 'import sys;d=open(sys.argv[1],\"rb\").read();"
                     "open(sys.argv[2],\"wb\").write(d.split(b\"\\r\\n\\r\\n\",1)[1])' $d/req "
                     "$d/body; set --; while IFS= read -r l; do [ -n \"$l\" ] && set -- \"$@\" "
                     "--header \"$l\"; done < $d/h; "
                     "$HR verify --profile %s --secret %s \"$@\" $d/body > $d/out; "
                     "printf x >> $d/body; if $HR verify --profile %s --secret %s \"$@\" $d/body; "
                     "then exit 9; else exit 0; fi",
                     dir, p[i][0], p[i][1], p[i][0], p[i][0], p[i][1], p[i][0], p[i][1]);
        cr_expect_eq(rc, 0, "%s: %s", p[i][0], out);
        cr_expect(strstr(out, "hookring verify: refused:"), "%s: tamper not refused: %s", p[i][0],
                  out);
    }
    char cleanup[128];
    snprintf(cleanup, sizeof(cleanup), "rm -rf %s", dir);
    cr_expect_eq(system(cleanup), 0);
}

Test(cli, verify_exit_1_with_reason)
{
    char out[4096];
    int rc =
        run(out, sizeof(out),
            "printf 'Hello, World!' | $HR verify --profile github --secret wrong "
            "--header 'X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586"
            "c22c46f4379c8b043e17' -");
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect(strstr(out, "no_matching_signature"), "%s", out);
    rc = run(out, sizeof(out),
             "printf 'Hello, World!' | $HR verify --profile github --secret \"It's a Secret to "
             "Everybody\" --header 'X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a3"
             "7570b6d7586c22c46f4379c8b043e17' -");
    cr_expect_eq(rc, 0, "%s", out);
    cr_expect_str_eq(out, "Hello, World!\n");
    rc = run(out, sizeof(out),
             "printf '{}' | $HR verify --profile stripe --secret s --now 1700000000 "
             "--header 'Stripe-Signature: t=1600000000,v1=757107ea0eb2509fc211221cce984b8a37570b6d"
             "7586c22c46f4379c8b043e17' -");
    cr_expect_eq(rc, 1, "%s", out);
    cr_expect(strstr(out, "stale_timestamp"), "%s", out);
}

Test(cli, sign_is_reproducible_with_timestamp)
{
    char a[8192], b[8192];
    cr_assert_eq(run(a, sizeof(a),
                     "$HR sign --profile stripe --secret whsec_x --timestamp 1700000000 "
                     "tests/data/events/stripe.json"),
                 0, "%s", a);
    cr_assert_eq(run(b, sizeof(b),
                     "$HR sign --profile stripe --secret whsec_x --timestamp 1700000000 "
                     "tests/data/events/stripe.json"),
                 0);
    cr_expect_str_eq(a, b);
    cr_expect(strstr(a, "Stripe-Signature: t=1700000000,v1="), "%s", a);
}
