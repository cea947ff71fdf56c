/* test_json.c: the strict tokenizer accepts exactly RFC 8259 JSON and keeps spans. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>

#include "codec.h"
#include "json.h"

TestSuite(json);

static enum json_status parse(const char *s, struct json_tok *t, size_t max, size_t *n)
{
    size_t off;
    return json_parse(t, max, (const uint8_t *)s, strlen(s), n, &off);
}

Test(json, accepts_valid_documents)
{
    static const char *const ok[] = {
        "{}",
        "[]",
        "0",
        "-0",
        "1.5e10",
        "-1.25E-3",
        "\"x\"",
        "true",
        "false",
        "null",
        " {\"a\" : [1, 2, {\"b\": null}], \"c\": \"\\u00e9\\n\\\"\"} ",
        "\"\\ud83d\\ude00\"",
        "\"caf\xc3\xa9\"",
        "[[[[[]]]]]",
        "{\"a\":{\"b\":{\"c\":[true]}}}",
    };
    struct json_tok t[64];
    size_t n;
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        cr_expect_eq(parse(ok[i], t, 64, &n), JSON_OK, "should accept: %s", ok[i]);
    }
}

Test(json, refuses_invalid_documents)
{
    static const char *const bad[] = {
        "",          " ",         "{",
        "}",         "[1,]",      "{\"a\":1,}",
        "{\"a\" 1}", "{a:1}",     "01",
        "1.",        ".5",        "-",
        "1e",        "+1",        "tru",
        "nul",       "truex",     "\"abc",
        "\"\\x\"",   "\"\\u12\"", "\"a\x01\"",
        "\"\xff\"",  "\"\xc3\"",  "\"\xed\xa0\x80\"",
        "{} {}",     "[1 2]",     "{\"a\":1 \"b\":2}",
        "NaN",       "[1],",      "'a'",
    };
    struct json_tok t[64];
    size_t n;
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        cr_expect_neq(parse(bad[i], t, 64, &n), JSON_OK, "should refuse: %s", bad[i]);
    }
}

Test(json, depth_and_token_limits)
{
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    struct json_tok t[256];
    size_t n, off;
    cr_expect_eq(json_parse(t, 256, (const uint8_t *)deep, 200, &n, &off), JSON_TOO_DEEP);
    cr_expect_eq(parse("[1,2,3,4]", t, 3, &n), JSON_TOO_MANY);
}

Test(json, spans_and_lookup)
{
    const char *s = "{\"id\":\"e1\",\"data\": { \"k\" : [1,  2] } ,\"n\":-3}";
    struct json_tok t[32];
    size_t n;
    cr_assert_eq(parse(s, t, 32, &n), JSON_OK);
    int d = json_obj_get(t, 0, (const uint8_t *)s, "data");
    cr_assert_geq(d, 0);
    struct slice v = json_value_slice(&t[d], (const uint8_t *)s);
    cr_expect(slice_eq_cstr(v, "{ \"k\" : [1,  2] }"), "data span kept verbatim");
    int id = json_obj_get(t, 0, (const uint8_t *)s, "id");
    cr_expect(slice_eq_cstr(json_value_slice(&t[id], (const uint8_t *)s), "\"e1\""));
    int num = json_obj_get(t, 0, (const uint8_t *)s, "n");
    cr_expect(slice_eq_cstr(json_tok_slice(&t[num], (const uint8_t *)s), "-3"));
    cr_expect_eq(json_obj_get(t, 0, (const uint8_t *)s, "k"), -1, "only top-level members");
}

Test(json, unescape_and_escape_round_trip)
{
    const char *s = "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u0001\\u00e9\\ud83d\\ude00\"";
    struct json_tok t[2];
    size_t n;
    cr_assert_eq(parse(s, t, 2, &n), JSON_OK);
    char out[64];
    size_t len;
    cr_assert_eq(json_unescape(&t[0], (const uint8_t *)s, out, sizeof(out), &len), 0);
    const char want[] = "a\"b\\c/d\b\f\n\r\t\x01\xc3\xa9\xf0\x9f\x98\x80";
    cr_expect_eq(len, sizeof(want) - 1);
    cr_expect_arr_eq(out, want, len);
    struct buf b;
    buf_init(&b, 1024);
    cr_assert_eq(json_put_string(&b, slice_of(out, len)), 0);
    struct json_tok t2[2];
    size_t off;
    cr_assert_eq(json_parse(t2, 2, b.p, b.len, &n, &off), JSON_OK);
    char back[64];
    size_t blen;
    cr_assert_eq(json_unescape(&t2[0], b.p, back, sizeof(back), &blen), 0);
    cr_expect_eq(blen, len);
    cr_expect_arr_eq(back, out, len);
    buf_free(&b);
    /* Lone surrogates and overflow are refused. */
    const char *lone = "\"\\ud800x\"";
    cr_assert_eq(parse(lone, t, 2, &n), JSON_OK);
    cr_expect_eq(json_unescape(&t[0], (const uint8_t *)lone, out, sizeof(out), &len), -EINVAL);
    cr_assert_eq(parse("\"abcdef\"", t, 2, &n), JSON_OK);
    cr_expect_eq(json_unescape(&t[0], (const uint8_t *)"\"abcdef\"", out, 3, &len), -ENOSPC);
}

Test(codec, hex_and_base64)
{
    uint8_t b[8];
    cr_expect_eq(hex_decode(b, 2, SLICE_LIT("0aFf")), 0);
    cr_expect(b[0] == 0x0a && b[1] == 0xff);
    cr_expect_eq(hex_decode(b, 2, SLICE_LIT("0aF")), -EINVAL);
    cr_expect_eq(hex_decode(b, 2, SLICE_LIT("0aFg")), -EINVAL);
    size_t n;
    cr_expect_eq(b64_decode(b, sizeof(b), &n, SLICE_LIT("aGk=")), 0);
    cr_expect(n == 2 && b[0] == 'h' && b[1] == 'i');
    cr_expect_eq(b64_decode(b, sizeof(b), &n, SLICE_LIT("aGl=")), -EINVAL, "non-canonical");
    cr_expect_eq(b64_decode(b, sizeof(b), &n, SLICE_LIT("aGk")), -EINVAL, "unpadded");
    cr_expect_eq(b64_decode(b, sizeof(b), &n, SLICE_LIT("a=k=")), -EINVAL, "data after pad");
    cr_expect_eq(b64_decode(b, sizeof(b), &n, SLICE_LIT("aG-=")), -EINVAL, "url alphabet");
    cr_expect_eq(b64_decode(b, 2, &n, SLICE_LIT("aGVsbG8=")), -ENOSPC);
    char enc[16];
    cr_expect_eq(b64_encode(enc, (const uint8_t *)"hello", 5), 8);
    cr_expect_arr_eq(enc, "aGVsbG8=", 8);
    cr_expect(ct_equal("abc", "abc", 3));
    cr_expect(!ct_equal("abc", "abd", 3));
}

/* Strings are scanned 16 and 8 bytes at a time over plain bytes: one special byte at every position
 * of a long string, with every alignment, must be judged as the byte-at-a-time rules judge it, and
 * the string's span must end at its closing quote. */
Test(json, string_special_byte_at_every_offset)
{
    static const struct {
        const char *bytes; /* inserted into a run of 'a's */
        bool ok;
    } cases[] = {
        {"\x01", false},
        {"\x1f", false},
        {"\x7f", true},
        {"\\\"", true},
        {"\\\\", true},
        {"\\n", true},
        {"\\u00e9", true},
        {"\\q", false},
        {"\xc3\xa9", true},
        {"\xe2\x82\xac", true},
        {"\xf0\x9f\x98\x80", true},
        {"\xc3", false},
        {"\xff", false},
        {"\xed\xa0\x80", false},
        {"\x80", false},
        {" ", true},
        {"\x21", true},
        {"\x23", true},
        {"\x5b\x5d", true},
    };
    struct json_tok t[4];
    char doc[128];
    for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
        for (size_t lead = 0; lead < 40; lead++) {
            for (size_t pre = 0; pre < 3; pre++) { /* where the document starts */
                size_t n = 0;
                memset(doc, ' ', pre);
                n = pre;
                doc[n++] = '"';
                memset(doc + n, 'a', lead);
                n += lead;
                size_t blen = strlen(cases[c].bytes);
                memcpy(doc + n, cases[c].bytes, blen);
                n += blen;
                memset(doc + n, 'b', 17);
                n += 17;
                doc[n++] = '"';
                size_t ntok, off;
                enum json_status st = json_parse(t, 4, (const uint8_t *)doc, n, &ntok, &off);
                cr_expect_eq(st == JSON_OK, cases[c].ok, "case %zu, %zu bytes before it: %s", c,
                             lead, st == JSON_OK ? "accepted" : "refused");
                if (st == JSON_OK) {
                    cr_expect_eq(t[0].type, JSON_STRING);
                    cr_expect_eq(t[0].start, pre + 1);
                    cr_expect_eq(t[0].end, n - 1, "case %zu lead %zu: span ends at %u", c, lead,
                                 t[0].end);
                }
            }
        }
    }
    /* the closing quote itself at every offset; and a string left open */
    for (size_t lead = 0; lead < 40; lead++) {
        size_t n = 0, ntok, off;
        doc[n++] = '"';
        memset(doc + n, 'a', lead);
        n += lead;
        cr_expect_neq(json_parse(t, 4, (const uint8_t *)doc, n, &ntok, &off), JSON_OK);
        doc[n++] = '"';
        cr_expect_eq(json_parse(t, 4, (const uint8_t *)doc, n, &ntok, &off), JSON_OK);
        cr_expect_eq(t[0].end, n - 1);
    }
}
