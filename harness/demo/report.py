#!/usr/bin/env python3
"""harness/demo/report.py: part 4 of `make demo` (harness/demo.sh).

Reads the demo's work directory (blast-PROFILE.json from `hookring blast --json`, stats.json
from the harness's GET /_harness/stats, sends.tsv from the `hookring send` scenarios), prints the
per-profile table and the totals, checks that the engine and the harness agree, and exits 1 when
something is off (a bad signature, a request lost or extra, an unexpected duplicate or failure).
"""
import argparse
import json
import os
import sys


def fmt_int(n):
    return f"{n:,}"


def fmt_ms(us):
    ms = us / 1000.0
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--profiles", required=True)
    ap.add_argument("--retries", type=int, required=True)
    ap.add_argument("--elapsed", type=int, default=0)
    for c in ("bold", "red", "green", "dim", "off"):
        ap.add_argument("--" + c, default="")
    a = ap.parse_args()
    B, R, G, D, O = a.bold, a.red, a.green, a.dim, a.off
    problems = []

    # --- the blast runs ---------------------------------------------------------------------
    runs = []
    for p in a.profiles.split():
        path = os.path.join(a.work, f"blast-{p}.json")
        try:
            with open(path) as f:
                runs.append((p, json.load(f)))
        except (OSError, ValueError) as e:
            problems.append(f"{p}: no blast result ({e.__class__.__name__})")
    print(f"   {D}{'profile':<16} {'deliveries':>10} {'ok':>9} {'failed':>7} "
          f"{'deliveries/s':>13} {'p50 ms':>8} {'p99 ms':>8}{O}")
    tot_n = tot_ok = tot_failed = 0
    tot_s = 0.0
    for p, r in runs:
        lat = r.get("latency_us", {})
        print(f"   {p:<16} {fmt_int(r['deliveries']):>10} {fmt_int(r['ok']):>9} "
              f"{fmt_int(r['failed']):>7} {fmt_int(round(r['rate'])):>13} "
              f"{fmt_ms(lat.get('p50', 0)):>8} {fmt_ms(lat.get('p99', 0)):>8}")
        tot_n += r["deliveries"]
        tot_ok += r["ok"]
        tot_failed += r["failed"]
        tot_s += r["seconds"]
        status = {int(k): v for k, v in r.get("status", {}).items()}
        if r.get("errors"):
            problems.append(f"{p}: delivery errors {r['errors']}")
        if set(status) - {200, 500}:
            problems.append(f"{p}: unexpected statuses {r['status']}")
        if status.get(500, 0) != r["failed"]:
            problems.append(f"{p}: {r['failed']} failed but {status.get(500, 0)} answered 500")
        if r["deliveries"] == 0:
            problems.append(f"{p}: nothing delivered")
    if runs:
        rate = tot_n / tot_s if tot_s else 0
        print(f"   {B}{'all':<16} {fmt_int(tot_n):>10} {fmt_int(tot_ok):>9} "
              f"{fmt_int(tot_failed):>7} {fmt_int(round(rate)):>13}{O}")

    # --- the sends and the harness ----------------------------------------------------------
    sends = []
    try:
        with open(os.path.join(a.work, "sends.tsv")) as f:
            for line in f:
                p, path, rc, n, hid, h = line.rstrip("\n").split("\t", 5)
                try:
                    h = json.loads(h)
                except ValueError:
                    h = {}
                sends.append({"profile": p, "path": path, "rc": int(rc), "attempts": int(n),
                              "id": hid, "harness": h})
    except OSError:
        problems.append("no send results")
    send_attempts = sum(s["attempts"] for s in sends)
    send_delivered = sum(1 for s in sends if s["rc"] == 0)
    drop = [s for s in sends if s["path"].startswith("drop/")]
    drop_dups = sum(s["attempts"] - 1 for s in drop)
    for s in sends:
        h = s["harness"]
        if h.get("attempts") != s["attempts"]:
            problems.append(f"{s['profile']} /{s['path']}: the harness saw {h.get('attempts')} "
                            f"attempts of {s['id']}, hookring send made {s['attempts']}")
    try:
        with open(os.path.join(a.work, "stats.json")) as f:
            st = json.load(f)
    except (OSError, ValueError):
        st = None
        problems.append("no harness stats")

    print()
    print(f"   {'deliveries':<18} {fmt_int(tot_n)} in {tot_s:.1f} s of load over "
          f"{len(runs)} profiles, {fmt_int(round(tot_n / tot_s)) if tot_s else 0}/s")
    print(f"   {'ok / failed':<18} {fmt_int(tot_ok)} ok, {fmt_int(tot_failed)} failed "
          f"{D}(the /fail/5/ receiver's 500s; blast does not retry){O}")
    print(f"   {'retries made':<18} {a.retries} {D}(hookring send, part 3){O}")
    if st:
        lat = st.get("latency_us", {})
        dups = st.get("duplicates", -1)
        bad = st.get("bad_signature", -1)
        print(f"   {'duplicates caught':<18} {dups} {D}(by the harness, per webhook id: "
              f"/drop/ retries of an event already taken){O}")
        color = G if bad == 0 else R
        print(f"   {'bad signatures':<18} {color}{bad}{O} {D}of {fmt_int(st.get('requests', 0))} "
              f"requests, every one verified by the harness{O}")
    if runs:
        p50 = [r["latency_us"]["p50"] for _, r in runs]
        p99 = [r["latency_us"]["p99"] for _, r in runs]
        print(f"   {'latency (engine)':<18} p50 {fmt_ms(min(p50))}-{fmt_ms(max(p50))} ms, "
              f"p99 {fmt_ms(min(p99))}-{fmt_ms(max(p99))} ms over the nine runs")
        print(f"   {'':<18} {D}from each delivery's intended send time to its answer (open "
              f"loop: a wait for a connection counts){O}")
    if st:
        print(f"   {'latency (harness)':<18} p50 {fmt_ms(lat.get('p50', 0))} ms, "
              f"p90 {fmt_ms(lat.get('p90', 0))} ms, p99 {fmt_ms(lat.get('p99', 0))} ms "
              f"{D}(request in to answer out; /slow/ is 20 ms of it){O}")

    # --- checks -----------------------------------------------------------------------------
    if st:
        checks = []

        def check(ok, text):
            checks.append((ok, text))
            if not ok:
                problems.append(text)

        req = st.get("requests", 0)
        nf = st.get("routes", {}).get("not_found", {}).get("requests", 0)
        errs = sum(st.get("errors", {}).values())
        check(st.get("bad_signature") == 0 and st.get("unverified") == 0 and
              st.get("verified") == req and nf == 0 and errs == 0,
              f"every request verified: {fmt_int(st.get('verified', 0))} of {fmt_int(req)} "
              f"({st.get('bad_signature')} bad signatures, {st.get('unverified')} unverified, "
              f"{nf} unknown paths, {errs} malformed)")
        check(req == tot_n + send_attempts,
              f"nothing lost or extra: the harness got {fmt_int(req)} requests = "
              f"{fmt_int(tot_n)} deliveries + {send_attempts} send attempts")
        want_unique = tot_ok + send_delivered + len(drop)
        check(st.get("unique") == want_unique,
              f"every event taken once: {fmt_int(st.get('unique', 0))} ids taken = "
              f"{fmt_int(tot_ok)} ok + {send_delivered} delivered by send + "
              f"{len(drop)} taken by /drop/")
        check(st.get("duplicates") == drop_dups,
              f"duplicates only where expected: {st.get('duplicates')} = the {drop_dups} "
              f"/drop/ retries")
        check(st.get("ids_dropped") == 0, f"id table large enough ({st.get('ids_dropped')} "
              f"ids over it)")
        print()
        for ok, text in checks:
            mark = f"{G}ok{O}  " if ok else f"{R}FAIL{O}"
            print(f"   {mark} {text}")
    for text in problems:
        if not st or not any(text == c[1] for c in checks):
            print(f"   {R}FAIL{O} {text}")
    print()
    if problems:
        return 1
    print(f"{G}{B}demo passed{O}" + (f" in {a.elapsed} s" if a.elapsed else "") +
          f": {fmt_int(tot_n + send_attempts)} signed requests, all verified, none lost, "
          f"every duplicate caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
