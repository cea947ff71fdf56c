#!/usr/bin/env python3
"""HumCLI's published receiver (spec/providers/002_08635b7b456163d2.txt), reproduced.

usage: verify_humcli.py --secret S --signature SIG [--content-type CT] < BODY

verify_webhook() is the document's function verbatim. handle() is its Flask handler without Flask:
the X-Signature value (or "" when absent, as request.headers.get("X-Signature", "")), the raw body
(request.get_data()), then request.get_json() -- which Flask only grants to a JSON media type and
a body that parses -- and the handler's payload["task_id"] / payload["status"] reads.

Prints OK and exits 0 when the handler would answer 200; otherwise prints why and exits 1
(exit 2: bad usage). verify.js and server.js call this for profile humcli.
"""

import argparse
import hashlib
import hmac
import json
import sys


def verify_webhook(body: bytes, signature: str, secret: str) -> bool:
    expected = hmac.new(
        secret.encode("utf-8"),
        body,
        hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, signature)


def is_json_mimetype(content_type: str) -> bool:
    # Flask's Request.is_json: application/json or application/*+json, parameters ignored.
    mt = content_type.split(";", 1)[0].strip().lower()
    return mt == "application/json" or (mt.startswith("application/") and mt.endswith("+json"))


def handle(body: bytes, signature: str, secret: str, content_type: str):
    """Returns (status, reason)."""
    if not verify_webhook(body, signature, secret):
        return 401, "Invalid signature"
    # payload = request.get_json()
    if not is_json_mimetype(content_type):
        return 415, "Unsupported Media Type: request.get_json() needs Content-Type application/json, got %r" % content_type
    try:
        payload = json.loads(body)
    except ValueError as e:
        return 400, "Bad Request: request.get_json() failed to decode JSON: %s" % e
    try:
        task_id = payload["task_id"]
        status = payload["status"]
    except (KeyError, TypeError, IndexError) as e:
        return 500, "the handler's payload[...] read failed: %s: %s" % (type(e).__name__, e)
    _ = (task_id, status)  # the document prints them
    return 200, None


def main() -> int:
    ap = argparse.ArgumentParser(description="HumCLI's published webhook verifier")
    ap.add_argument("--secret", required=True)
    ap.add_argument("--signature", default="")
    ap.add_argument("--content-type", default="")
    args = ap.parse_args()
    body = sys.stdin.buffer.read()
    try:
        status, reason = handle(body, args.signature, args.secret, args.content_type)
    except TypeError as e:
        # hmac.compare_digest refuses str arguments holding non-ASCII characters
        status, reason = 500, "TypeError: %s" % e
    if status == 200:
        print("OK")
        return 0
    print("%d %s" % (status, reason))
    return 1


if __name__ == "__main__":
    sys.exit(main())
