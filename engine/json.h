/* json.h: a strict, span-keeping JSON tokenizer (RFC 8259) and small helpers.
 *
 * Why our own and not jsmn: jsmn (even JSMN_STRICT) accepts invalid numbers and literals
 * ("01", "tru", "1.2.3") and misplaced separators; a webhook engine that forwards "data" verbatim
 * must refuse what receivers' JSON parsers would refuse. Tokens keep byte offsets into the input,
 * so a value's exact bytes can be spliced into an envelope without re-serialising. No allocation:
 * the caller gives the token array. */
#ifndef HOOKRING_JSON_H
#define HOOKRING_JSON_H

#include "common.h"

#define JSON_MAX_DEPTH 64

enum json_type {
    JSON_OBJECT = 1,
    JSON_ARRAY,
    JSON_STRING,
    JSON_NUMBER,
    JSON_TRUE,
    JSON_FALSE,
    JSON_NULL,
};

struct json_tok {
    uint8_t type;
    uint32_t start; /* first byte; for strings, after the opening quote */
    uint32_t end;   /* one past the last byte; for strings, the closing quote */
    uint32_t size;  /* members of an object, elements of an array */
    uint32_t next;  /* index of the first token after this value's subtree */
};

enum json_status {
    JSON_OK = 0,
    JSON_INVALID,  /* not valid JSON; *err_off says where */
    JSON_TOO_MANY, /* more tokens than the array holds */
    JSON_TOO_DEEP, /* nesting over JSON_MAX_DEPTH */
};

/* json_parse tokenizes exactly one JSON value (surrounding whitespace allowed) from in[0..len).
 * Object tokens are followed by key, value, key, value...; arrays by their elements. On JSON_OK
 * *ntoks is the number of tokens used; otherwise *err_off is the offending byte offset. */
enum json_status json_parse(struct json_tok *toks, size_t max_toks, const uint8_t *in, size_t len,
                            size_t *ntoks, size_t *err_off);

/* json_obj_get returns the index of the value of member key in object toks[obj], or -1. */
int json_obj_get(const struct json_tok *toks, int obj, const uint8_t *in, const char *key);

/* json_tok_slice returns the token's bytes (a string's raw, still-escaped content). */
static inline struct slice json_tok_slice(const struct json_tok *t, const uint8_t *in)
{
    return (struct slice){in + t->start, t->end - t->start};
}

/* json_value_slice returns the whole value's bytes as they appear in the input (with quotes). */
struct slice json_value_slice(const struct json_tok *t, const uint8_t *in);

/* json_unescape decodes string token t into out (cap bytes). Returns 0, -EINVAL on a bad
 * escape or surrogate, -ENOSPC when it does not fit. *out_len excludes the NUL that is written
 * when room allows. */
int json_unescape(const struct json_tok *t, const uint8_t *in, char *out, size_t cap,
                  size_t *out_len);

/* json_put_string appends s as a JSON string (quoted, escaped) to b. Returns 0 or -ENOMEM. */
int json_put_string(struct buf *b, struct slice s);

/* json_tok_name names a token type ("object", "string", ...). */
const char *json_type_name(enum json_type t);

#endif
