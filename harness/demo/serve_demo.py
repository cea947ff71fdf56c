#!/usr/bin/env python3
"""harness/demo/serve_demo.py: the main part of `make demo` (harness/demo.sh).

Starts build/hookring-harness and `hookring serve` on free loopback ports, registers webhooks of
all nine profiles over the API (some on misbehaving harness routes: one answering 500 to 5 % of
requests, one failing the first two attempts of every message, a slow one, one always
answering 500, one answering 410), ingests a mixed workload of realistic events from several
producer threads (NDJSON batches and single posts, deliberate duplicate ids, one id posted by 8
threads at once), kills serve with SIGKILL in the middle and restarts it on the same data
directory, waits until every delivery is final, and prints what happened. Then it checks,
strictly, that every signature verified, every acknowledged event reached its receiver (by the
receiver's own id for it), the engine's counts agree with the receiver's and with the
producers', and the endpoints ended in the expected states; it exits 1 naming each mismatch.

Usage: serve_demo.py --build build --work DIR [--events N] [--rate PER_S] [--wait S] [--seed N]
                     [--no-kill] [--color]
DIR must exist; the data directory, logs and the harness's id table go there. The pids of the
processes it starts are kept in DIR/pids for the caller's clean-up trap.
"""
import argparse
import base64
import bisect
import hashlib
import http.client
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

TIME_SCALE = "0.00001"  # a day of retry schedule in 0.86 s
FAILING_AFTER = 3
BATCH = 200  # events per NDJSON batch, at most
FLUSH_S = 0.1  # a batch producer posts what is due every FLUSH_S (or BATCH events)
BATCH_PRODUCERS = 3
SINGLE_PRODUCERS = 2
STORM_IDS = 25  # ids each posted by STORM_THREADS threads at the same moment
STORM_THREADS = 8
RESEND_P = 0.02  # chance that a producer also re-sends an event already acknowledged
BURST = 0.2  # the share of the events that arrives at once, at the end
KILL_AT = 0.45  # kill -9 serve when this share of the events has been acknowledged

B = R = G = D = Y = O = ""


def color(on):
    global B, R, G, D, Y, O
    if on:
        B, R, G, D, Y, O = "\033[1m", "\033[31m", "\033[32m", "\033[2m", "\033[33m", "\033[0m"


def n(v):
    return f"{v:,}"


def pctl(xs, p):
    """the p-th percentile (nearest rank) of sorted xs"""
    if not xs:
        return 0.0
    k = max(0, min(len(xs) - 1, math.ceil(p / 100.0 * len(xs)) - 1))
    return xs[k]


def ms(v):
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


# ---- output: report lines on stdout, one live progress line on stderr ------------------------


class Out:
    def __init__(self):
        self.lock = threading.Lock()
        # a live line only when both go to a terminal (| tee would interleave them badly)
        self.tty = sys.stderr.isatty() and sys.stdout.isatty()
        self.live = ""

    def say(self, text=""):
        with self.lock:
            if self.tty and self.live:
                sys.stderr.write("\r\033[K")
                sys.stderr.flush()
            print(text, flush=True)
            if self.tty and self.live:
                sys.stderr.write(self.live)
                sys.stderr.flush()

    def progress(self, text, keep=False):
        """shows text as the live line (a terminal) or as a line (keep, or no terminal)"""
        with self.lock:
            if self.tty:
                w = shutil.get_terminal_size((120, 20)).columns - 1
                self.live = text[:w] if len(text) > w else text
                sys.stderr.write("\r\033[K" + self.live)
                if keep:
                    sys.stderr.write("\n")
                    self.live = ""
                sys.stderr.flush()
            else:
                print(text, flush=True)

    def end_progress(self):
        with self.lock:
            if self.tty and self.live:
                sys.stderr.write("\n")
                sys.stderr.flush()
            self.live = ""


out = Out()

# ---- the webhooks and their receivers ----------------------------------------------------------

# name, profile, harness behaviour path, events filter, agent filter, what the receiver does.
WEBHOOKS = [
    ("matchmaking", "humanconnection", "ok", ["meeting.*", "service.*", "report.submitted",
                                              "payment.*"], "matchmaker", "200"),
    ("inbox", "humiris", "fail/5", ["email.*", "sms.*", "call.*"], "support-agent",
     "500 at random, 5 %"),
    ("tasks", "humcli", "ok", ["task.status_changed"], "tasks", "200"),
    ("identity", "humanos", "ok", ["*"], "org-acme", "200"),
    ("chat", "aksita", "ok", ["human_agent.*"], "aksita-desk", "200"),
    ("billing", "standard", "ok", ["invoice.*", "customer.*"], "billing", "200"),
    ("app", "svix", "flaky/2", ["user.*", "session.*"], "app", "500, 500, then 200"),
    ("analytics", "svix", "slow/20", ["report.*"], "analytics", "200 after 20 ms"),
    ("payments", "stripe", "ok", ["payment_intent.*", "charge.*"], "payments", "200"),
    ("payments-eu", "stripe", "status/500", ["payment_intent.*", "charge.*"], "payments-eu",
     "always 500"),
    ("audit", "github", "ok", ["payment_intent.*", "charge.*"], None, "200"),
    ("repo", "github", "ok", ["push", "pull_request", "issues", "release"], "octo-org", "200"),
    ("legacy-crm", "standard", "gone", ["*"], "legacy-crm", "410 Gone"),
]
DELIVERING = {"ok", "fail/5", "flaky/2", "slow/20"}
RETRIES = {"humanconnection": 5, "humiris": 5, "humcli": 9, "humanos": 9, "aksita": 0,
           "standard": 9, "svix": 9, "stripe": 9, "github": 0}

# stream (agent), share of the events
STREAMS = [("matchmaker", 11), ("support-agent", 11), ("tasks", 11), ("org-acme", 7),
           ("aksita-desk", 11), ("billing", 13), ("app", 5.5), ("analytics", 4.5),
           ("payments", 11), ("payments-eu", 1.1), ("octo-org", 11), ("legacy-crm", 0.15),
           ("tenant-without-webhooks", 1.8)]


def make_secret(rng, profile):
    raw = bytes(rng.getrandbits(8) for _ in range(24))
    if profile in ("standard", "svix"):
        return "whsec_" + base64.b64encode(raw).decode()
    return "whsec_" + raw.hex()


def webhook_match(w, etype, agent):
    _, _, _, filters, wagent, _ = w
    if wagent is not None and wagent != agent:
        return False
    for f in filters:
        if f == "*" or f == etype or (f.endswith(".*") and etype.startswith(f[:-1]) and
                                      len(etype) > len(f) - 1):
            return True
    return False


def github_guid(event_id):
    h = bytearray(hashlib.sha256(b"hookring-delivery:" + event_id.encode()).digest())
    h[6] = (h[6] & 0x0F) | 0x80
    h[8] = (h[8] & 0x3F) | 0x80
    x = h[:16].hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:32]}"


def receiver_id(profile, ev):
    """the id the harness files a delivery of ev under (the profile's verifier's id)"""
    d = ev.data
    if profile == "humcli":
        return f"{d['task_id']}:{d['status']}"
    if profile == "humanos":
        return f"{d['requestId']}:{ev.type}"
    if profile == "aksita":
        return d["message_id"]
    if profile == "github":
        return github_guid(ev.id)
    return ev.id


# ---- the workload ------------------------------------------------------------------------------


class Event:
    __slots__ = ("id", "type", "agent", "data", "line", "dests", "t_sent", "state", "uncertain",
                 "via")

    def __init__(self, eid, etype, agent, data):
        self.id, self.type, self.agent, self.data = eid, etype, agent, data
        self.line = json.dumps({"id": eid, "type": etype, "agent": agent, "data": data},
                               separators=(",", ":")).encode()
        self.dests = [w for w in WEBHOOKS if webhook_match(w, etype, agent)]
        self.t_sent = 0.0
        self.state = "new"  # "acked" once answered 202 (or duplicate after a lost answer)
        self.uncertain = False  # a request carrying it lost its answer (the kill)
        self.via = ""


class Gen:
    """realistic events per stream; every id, message id and request id is unique"""

    def __init__(self, rng):
        self.rng = rng
        self.ids = set()
        self.seq = 0
        self.tasks = []
        self.msg = 2125
        self.credits = 250000
        self.tenant = [f"cus_{self.hex(14)}" for _ in range(60)]

    def hex(self, k):
        return f"{self.rng.getrandbits(4 * k):0{k}x}"

    def eid(self, prefix="evt_"):
        while True:
            i = prefix + self.hex(16)
            if i not in self.ids:
                self.ids.add(i)
                return i

    def when(self, back_s=0):
        t = time.time() - back_s
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"

    def pick(self, weighted):
        r = self.rng.random() * sum(w for _, w in weighted)
        for v, w in weighted:
            r -= w
            if r <= 0:
                return v
        return weighted[-1][0]

    def event(self, agent):
        f = getattr(self, "g_" + agent.replace("-", "_"))
        return f(agent)

    def g_matchmaker(self, agent):
        rng = self.rng
        t = self.pick([("meeting.scheduled", 3), ("meeting.completed", 3), ("meeting.cancelled", 1),
                       ("meeting.no_show", 0.5), ("service.matched", 2), ("service.expired", 0.5),
                       ("report.submitted", 1), ("payment.paid", 2), ("payment.failed", 0.3)])
        if t.startswith("meeting."):
            d = {"meeting_id": "mtg_" + self.hex(16), "request_id": "req_" + self.hex(16),
                 "human_id": "hum_" + self.hex(16), "status": t.split(".")[1],
                 "at": self.when(rng.randint(0, 3600))}
        elif t.startswith("service."):
            d = {"service_id": "svc_" + self.hex(12), "request_id": "req_" + self.hex(16),
                 "human_id": "hum_" + self.hex(16), "expires_at": self.when(-86400)}
        elif t == "report.submitted":
            d = {"report_id": "rpt_" + self.hex(12), "meeting_id": "mtg_" + self.hex(16),
                 "rating": rng.randint(1, 5), "summary": "Walked through the Q3 roadmap."}
        else:
            d = {"payment_id": "pay_" + self.hex(16), "meeting_id": "mtg_" + self.hex(16),
                 "amount": rng.choice([4500, 9000, 12000, 15000]), "currency": "usd",
                 "status": "paid" if t == "payment.paid" else "failed"}
        return Event(self.eid(), t, agent, d)

    def g_support_agent(self, agent):
        rng = self.rng
        t = self.pick([("email.received", 4), ("email.sent", 3), ("email.bounced", 0.3),
                       ("sms.received", 1.5), ("sms.sent", 1), ("call.started", 0.6),
                       ("call.ended", 0.6)])
        who = rng.choice(["alice", "bob", "chloe", "dmitri", "eve", "farah"])
        if t.startswith("email."):
            d = {"inbox": "support-agent@agents.example", "from": f"{who}@example.com",
                 "subject": rng.choice(["Order #%d" % rng.randint(1000, 9999), "Refund?",
                                        "Caf\u00e9 order \"#42\"", "Re: invoice"]),
                 "size": rng.randint(600, 40000)}
        elif t.startswith("sms."):
            d = {"number": "+15550100", "from": f"+1555{rng.randint(1000000, 9999999)}",
                 "body": "Is my order on its way?"}
        else:
            d = {"call_id": "call_" + self.hex(12), "from": f"+1555{rng.randint(1000000, 9999999)}",
                 "duration_s": rng.randint(5, 900)}
        return Event(self.eid(), t, agent, d)

    CHAIN = ["ESTIMATE_PENDING", "ACCEPTED", "PENDING", "IN_PROGRESS", "SUBMITTED", "VERIFIED",
             "COMPLETED"]

    def g_tasks(self, agent):
        rng = self.rng
        if len(self.tasks) < 40 or rng.random() < 0.05:
            self.tasks.append(["task_" + self.hex(12), "ESTIMATE_PENDING", rng.random()])
        k = rng.randrange(len(self.tasks))
        task = self.tasks[k]
        prev = task[1]
        if prev == "SUBMITTED" and task[2] < 0.1:
            status = "MANUAL_REVIEW"
        elif prev == "MANUAL_REVIEW":
            status = "VERIFIED"
        elif prev == "PENDING" and task[2] > 0.97:
            status = "CANCELLED"
        else:
            status = self.CHAIN[self.CHAIN.index(prev) + 1]
        task[1] = status
        if status in ("COMPLETED", "CANCELLED"):
            self.tasks.pop(k)
        d = {"task_id": task[0], "status": status, "previous_status": prev}
        return Event(self.eid(f"evt_{task[0]}_{status.lower()}_"), "task.status_changed", agent,
                     d)

    def g_org_acme(self, agent):
        rng = self.rng
        t = self.pick([("credential", 5), ("identity", 3), ("otp.failed", 1)])
        self.seq += 1
        d = {"requestId": self.hex(24), "internalId": f"req_internal_{self.seq:06d}",
             "issuerDid": "did:via:org-acme",
             "user": {"contact": f"+1555{rng.randint(1000000, 9999999)}",
                      "did": "did:via:user-" + self.hex(6), "internalId": f"user_{self.seq}"},
             "decisionDate": self.when(rng.randint(0, 600))}
        return Event(self.eid(), t, agent, d)

    def g_aksita_desk(self, agent):
        rng = self.rng
        self.msg += 1
        cost = rng.choice([0, 0, 1, 2])
        self.credits -= cost
        d = {"response": [rng.choice(["hello", "On it!", "Refund issued.", "Could you share the "
                                                                            "order number?"])],
             "message_id": str(self.msg), "conversation_id": "%s-%s-4%s-a%s-%s" % (
                 self.hex(8), self.hex(4), self.hex(3), self.hex(3), self.hex(12)),
             "credits": cost, "remaining_credits": self.credits, "additional_context": "",
             "source": "human_agent",
             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S+07:00", time.gmtime(time.time() +
                                                                                7 * 3600))}
        return Event(self.eid(), "human_agent.reply", agent, d)

    def g_billing(self, agent):
        rng = self.rng
        t = self.pick([("invoice.created", 3), ("invoice.paid", 3), ("invoice.payment_failed", 0.4),
                       ("customer.created", 0.8), ("customer.updated", 1.2)])
        cus = rng.choice(self.tenant)
        if t.startswith("invoice."):
            d = {"invoice_id": "inv_" + self.hex(14), "customer_id": cus,
                 "amount": rng.randint(100, 250000), "currency": rng.choice(["eur", "usd"])}
        else:
            d = {"customer_id": cus, "email": f"billing+{self.hex(4)}@example.com",
                 "plan": rng.choice(["starter", "team", "enterprise"])}
        return Event(self.eid("msg_"), t, agent, d)

    g_legacy_crm = g_billing
    g_tenant_without_webhooks = g_billing

    def g_app(self, agent):
        rng = self.rng
        t = self.pick([("user.created", 2), ("user.updated", 3), ("user.deleted", 0.3),
                       ("session.started", 4)])
        d = {"user_id": "usr_" + self.hex(12), "email": f"user{rng.randint(1, 99999)}@example.com"}
        if t == "session.started":
            d["ip"] = f"203.0.113.{rng.randint(1, 254)}"
        return Event(self.eid("msg_"), t, agent, d)

    def g_analytics(self, agent):
        rng = self.rng
        t = self.pick([("report.generated", 3), ("report.exported", 1)])
        d = {"report_id": "rep_" + self.hex(10), "rows": rng.randint(10, 2000000),
             "format": rng.choice(["csv", "parquet"])}
        return Event(self.eid("msg_"), t, agent, d)

    def g_payments(self, agent):
        rng = self.rng
        t = self.pick([("payment_intent.succeeded", 4), ("payment_intent.payment_failed", 0.6),
                       ("charge.succeeded", 3), ("charge.refunded", 0.7)])
        pi = t.startswith("payment_intent.")
        d = {"id": ("pi_" if pi else "ch_") + self.hex(16),
             "object": "payment_intent" if pi else "charge",
             "amount": rng.choice([999, 2000, 4900, 12900]), "currency": "usd",
             "status": "requires_payment_method" if t.endswith("failed") else "succeeded"}
        return Event(self.eid(), t, agent, d)

    g_payments_eu = g_payments

    def g_octo_org(self, agent):
        rng = self.rng
        t = self.pick([("push", 5), ("pull_request", 3), ("issues", 2), ("release", 0.2)])
        repo = {"full_name": rng.choice(["octo-org/hello-world", "octo-org/api", "octo-org/web"])}
        if t == "push":
            d = {"ref": "refs/heads/main", "before": self.hex(40), "after": self.hex(40),
                 "repository": repo, "pusher": {"name": rng.choice(["octocat", "hubot"])}}
        elif t == "pull_request":
            d = {"action": rng.choice(["opened", "synchronize", "closed"]),
                 "number": rng.randint(1, 4000), "pull_request": {"head": {"sha": self.hex(40)}},
                 "repository": repo}
        elif t == "issues":
            d = {"action": rng.choice(["opened", "closed", "labeled"]),
                 "issue": {"number": rng.randint(1, 4000), "title": "Crash on start"},
                 "repository": repo}
        else:
            d = {"action": "published", "release": {"tag_name": f"v1.{rng.randint(0, 40)}.0"},
                 "repository": repo}
        return Event(self.eid(), t, agent, d)


def schedule(total, rate):
    """due times (s) of total events: the first (1 - BURST) arriving at rate/s on average, in
    waves of +-50 % every 4 s (traffic is never flat), then the rest at once (a backlog
    flushed: the producers go as fast as serve answers)"""
    due, t = [], 0.0
    waves = int(total * (1 - BURST))
    for _ in range(waves):
        t += 1.0 / (rate * (1 + 0.5 * math.sin(2 * math.pi * t / 4.0)))
        due.append(t)
    return due + [t] * (total - waves)


def workload(rng, total):
    """total events, the streams interleaved at random (each stream's order kept)"""
    g = Gen(rng)
    weights = [(a, w) for a, w in STREAMS]
    evs = [g.event(g.pick(weights)) for _ in range(total)]
    storm = [g.g_billing("billing") for _ in range(STORM_IDS)]
    return evs, storm


# ---- processes and the API ---------------------------------------------------------------------


class Proc:
    def __init__(self, name, argv, work):
        self.name, self.argv, self.work = name, argv, work
        self.out_path = os.path.join(work, name + ".out")
        self.err_path = os.path.join(work, name + ".err")
        self.p = None
        self.addr = None

    def start(self, argv=None, wait_s=15.0):
        start_at = os.path.getsize(self.out_path) if os.path.exists(self.out_path) else 0
        with open(self.out_path, "ab") as o, open(self.err_path, "ab") as e:
            self.p = subprocess.Popen(argv or self.argv, stdout=o, stderr=e,
                                      stdin=subprocess.DEVNULL)
        note_pids()
        deadline = time.time() + wait_s
        while time.time() < deadline:
            with open(self.out_path, "rb") as f:
                f.seek(start_at)
                for line in f.read().decode(errors="replace").splitlines():
                    if line.startswith("listening on "):
                        self.addr = line.split()[2]
                        return self.addr
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not start: {self.tail_err()}")

    def tail_err(self):
        try:
            with open(self.err_path, errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-5:])
        except OSError:
            return ""

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, wait_s=15.0):
        """sends sig and waits; SIGKILL after wait_s; returns the exit status"""
        if self.p is None:
            return None
        if self.p.poll() is None:
            try:
                self.p.send_signal(sig)
                return self.p.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
        return self.p.wait()


PROCS = []
WORK = None


def note_pids():
    """DIR/pids: the live pids, for demo.sh's clean-up trap"""
    pids = [str(p.p.pid) for p in PROCS if p.p is not None and p.p.poll() is None]
    with open(os.path.join(WORK, "pids.tmp"), "w") as f:
        f.write(" ".join(pids) + "\n")
    os.replace(os.path.join(WORK, "pids.tmp"), os.path.join(WORK, "pids"))


class Lost(Exception):
    """the request's answer was lost (connection refused, reset or timed out)"""


class Api:
    """one keep-alive connection to serve (or the harness), reconnecting on demand"""

    def __init__(self, addr_fn, key=None, timeout=30.0):
        self.addr_fn, self.key, self.timeout = addr_fn, key, timeout
        self.c = None

    def call(self, method, path, body=None, ctype="application/json"):
        if self.c is None:
            host, port = self.addr_fn().rsplit(":", 1)
            self.c = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        h = {}
        if self.key:
            h["Authorization"] = "Bearer " + self.key
        if body is not None:
            h["Content-Type"] = ctype
        try:
            self.c.request(method, path, body=body, headers=h)
            r = self.c.getresponse()
            data = r.read()
            if r.getheader("Connection", "").lower() == "close":
                self.close()
            return r.status, data
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise Lost(str(e) or e.__class__.__name__)

    def json(self, method, path, body=None):
        st, data = self.call(method, path, None if body is None else json.dumps(body).encode())
        return st, json.loads(data) if data.strip() else None

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def unix_ms(t):
    """RFC 3339 UTC with milliseconds (2026-12-02T01:11:05.123Z) -> unix ms"""
    import calendar
    base, _, frac = t.rstrip("Z").partition(".")
    sec = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return sec * 1000 + int((frac + "000")[:3])


def attempts_line(d):
    """a delivery's attempts in one line: outcome, then each answer, its latency and when"""
    at = d.get("attempts", [])
    if not at:
        return d["status"]
    t0 = unix_ms(at[0]["at"])
    parts = []
    for a in at:
        code = str(a["status"]) if a["status"] else a["result"]
        off = unix_ms(a["at"]) - t0
        parts.append(f"{code} in {a['latency_ms']:.1f} ms" + (f" at +{off} ms" if off else ""))
    if len(parts) > 4:
        parts = parts[:2] + [f"... ({len(parts) - 3} more)"] + parts[-1:]
    why = f" ({d['error']})" if d.get("error") else ""
    return (f"{d['status']}{why} after {len(at)} attempt{'s' if len(at) > 1 else ''}: "
            + ", ".join(parts))


def parse_metrics(text):
    m = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                m[k] = float(v)
            except ValueError:
                pass
    return m


# ---- the demo ----------------------------------------------------------------------------------


class Demo:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.key = "demo-" + "%016x" % random.SystemRandom().getrandbits(64)
        self.problems = []
        self.plock = threading.Lock()  # problems (reported while holding lock, too)
        self.lock = threading.Lock()
        self.plan, self.due = [], []  # the events, and when each is due (s after t0)
        self.next_i = 0  # the next event of plan to hand out
        self.again = []  # events refused with "retry" (backpressure), handed out first
        self.acked = []  # events acknowledged, for re-sends
        self.stats = {"acked": 0, "acked_batch": 0, "acked_single": 0, "acked_after_lost": 0,
                      "dup_resend": 0, "dup_storm": 0, "storm_new": 0, "batches": 0,
                      "singles": 0, "lost_requests": 0, "retry_lines": 0, "503": 0}
        self.lat_single, self.lat_batch = [], []
        self.ack_times = []  # when each event was acknowledged
        self.samples = []  # (time, serve pid, delivered) per progress reading
        self.sampled = {}  # webhook name: delivery ids seen during the run
        self.killed = None  # (time, pid, events acknowledged) of the kill
        self.restarted = None  # (time, serve's recovery line) of the restart
        self.stop_progress = threading.Event()
        self.storm_done = threading.Event()
        self.ingest_done = threading.Event()
        self.last_hstats = {}
        self.serve_down = threading.Event()

    def problem(self, msg):
        with self.plock:
            if len(self.problems) < 200:
                self.problems.append(msg)

    # -- start-up --

    def start(self):
        a = self.a
        self.secrets = {}
        routes = []
        for w in WEBHOOKS:
            name, prof = w[0], w[1]
            s = {"secret": make_secret(self.rng, prof)}
            if prof == "humanos":
                s["enc_secret"] = base64.b64encode(
                    bytes(self.rng.getrandbits(8) for _ in range(32))).decode()
                s["enc_salt"] = "salt-" + "%012x" % self.rng.getrandbits(48)
                routes += ["--route", f"/{name}/=humanos:{s['secret']}:{s['enc_secret']}:"
                                      f"{s['enc_salt']}"]
            else:
                routes += ["--route", f"/{name}/={prof}:{s['secret']}"]
            self.secrets[name] = s
        self.op_secret = make_secret(self.rng, "standard")
        routes += ["--route", f"/ops/=standard:{self.op_secret}"]
        self.harness = Proc("harness", [os.path.join(a.build, "hookring-harness"), "--listen",
                                        "127.0.0.1:0", "--quiet", "--ids-file",
                                        os.path.join(a.work, "ids.tsv")] + routes, a.work)
        PROCS.append(self.harness)
        self.harness.start()
        self.data = os.path.join(a.work, "data")
        self.serve_argv = [os.path.join(a.build, "hookring"), "serve", "--data", self.data,
                           "--api-key", self.key, "--allow-net", "127.0.0.0/8", "--quiet",
                           "--time-scale", TIME_SCALE, "--failing-after", str(FAILING_AFTER),
                           # a year of failing before 'disabled' (315 s here): the failing
                           # endpoint must stay 'failing' and exhaust every retry
                           "--disable-after", "31536000",
                           "--operator-url", f"http://{self.harness.addr}/ops/ok/operator",
                           "--operator-secret", self.op_secret]
        self.serve = Proc("serve", self.serve_argv + ["--listen", "127.0.0.1:0"], a.work)
        PROCS.append(self.serve)
        self.serve.start()
        self.addr = self.serve.addr
        out.say(f"   The harness ({self.harness.addr}) plays every receiver and verifies each "
                f"request as its profile's")
        out.say(f"   receiver would; hookring serve ({self.addr}) journals under {self.data}.")
        out.say(f"   {D}hookring serve --data DIR --listen 127.0.0.1:0 --time-scale {TIME_SCALE} "
                f"--failing-after {FAILING_AFTER} --disable-after 31536000 --operator-url HARNESS/ops/ ...{O}")
        out.say(f"   {D}(--time-scale {TIME_SCALE}: a day of retry schedule takes 0.86 s){O}")

    def register(self):
        api = Api(lambda: self.addr, self.key)
        self.whid = {}
        out.say()
        out.say(f"   {len(WEBHOOKS)} webhooks, registered with POST /v1/webhooks:")
        out.say(f"   {D}{'id':<20} {'name':<12} {'profile':<16} {'receiver':<31} "
                f"agent: event types{O}")
        for w in WEBHOOKS:
            name, prof, path, events, agent, what = w
            body = {"url": f"http://{self.harness.addr}/{name}/{path}/hooks",
                    "profile": prof, "events": events, "agent": agent}
            body.update(self.secrets[name])
            st, r = api.json("POST", "/v1/webhooks", body)
            if st != 201:
                raise RuntimeError(f"POST /v1/webhooks {name}: {st} {r}")
            self.whid[name] = r["id"]
            ev = f"{agent or 'any'}: " + " ".join(events)
            out.say(f"   {r['id']:<20} {name:<12} {prof:<16} {'/' + path + '/ (' + what + ')':<31}"
                    f" {D}{ev}{O}")
        api.close()

    # -- producers --

    def take(self, k):
        """up to k events that are due (refused ones first); [] when none is due yet, None
        when there are no more"""
        with self.lock:
            got = self.again[:k]
            del self.again[:k]
            i = self.next_i
            if i >= len(self.plan) and not got:
                return None
            j = bisect.bisect_right(self.due, time.time() - self.t0, i,
                                    min(len(self.plan), i + k - len(got)))
            self.next_i = j
            return got + self.plan[i:j]

    def give_back(self, evs):
        with self.lock:
            self.again.extend(evs)

    def resend_pick(self):
        with self.lock:
            if self.acked and self.rng.random() < RESEND_P:
                return self.acked[self.rng.randrange(len(self.acked))]
        return None

    def wait_up(self, deadline):
        if time.time() > deadline:
            raise RuntimeError("serve did not come back within 60 s")
        time.sleep(0.02)

    def settle(self, ev, res, was_resend, via):
        """records the answer res (one result object) for ev"""
        if "error" in res:
            return False
        dup = res.get("duplicate") is True
        with self.lock:
            if was_resend:
                if dup:
                    self.stats["dup_resend"] += 1
                else:
                    self.problem(f"re-sent id {ev.id} was taken again: {res}")
                return True
            if ev.state == "acked":
                self.problem(f"{ev.id} answered twice")
                return True
            if dup and not ev.uncertain:
                self.problem(f"{ev.id}: a new id was answered duplicate: {res}")
            if dup:
                self.stats["acked_after_lost"] += 1
            elif "legacy-crm" in [w[0] for w in ev.dests]:
                if res.get("deliveries") not in (0, 1):
                    self.problem(f"{ev.id}: {res.get('deliveries')} deliveries for legacy-crm")
            elif res.get("deliveries") != len(ev.dests):
                self.problem(f"{ev.id} ({ev.type}, agent {ev.agent}): {res.get('deliveries')} "
                             f"deliveries, expected {len(ev.dests)}")
            ev.state = "acked"
            ev.via = via
            self.ack_times.append(time.time())
            self.stats["acked"] += 1
            self.stats["acked_" + via] += 1
            self.acked.append(ev)
        return True

    def batch_producer(self):
        api = Api(lambda: self.addr, self.key)
        try:
            flush = time.time()
            full = False
            while True:
                # a full batch leaves more due: post again at once
                flush = time.time() if full else flush + FLUSH_S
                time.sleep(max(0.0, flush - time.time()))
                evs = self.take(BATCH)
                full = evs is not None and len(evs) == BATCH
                if evs is None:
                    return
                if not evs:
                    continue
                lines = []  # (event, is a re-send)
                for ev in evs:
                    lines.append((ev, False))
                    r = self.resend_pick()
                    if r is not None:
                        lines.append((r, True))
                body = b"\n".join(ev.line for ev, _ in lines) + b"\n"
                retry = []
                st, data, t0 = self.post_answered(api, "/v1/events/batch", body, lines,
                                                  "application/x-ndjson", all_uncertain=True)
                if st != 200:
                    self.problem(f"POST /v1/events/batch: {st} {data[:200]!r}")
                    continue
                lat = time.time() - t0
                res = [json.loads(x) for x in data.splitlines() if x.strip()]
                if len(res) != len(lines):
                    self.problem(f"batch of {len(lines)} answered with {len(res)} lines")
                    continue
                with self.lock:
                    self.stats["batches"] += 1
                    self.lat_batch.append(lat)
                for (ev, rs), r in zip(lines, res):
                    if not self.settle(ev, r, rs, "batch"):
                        if "retry" in r.get("error", "") and not rs:
                            retry.append(ev)
                        elif not rs:
                            self.problem(f"{ev.id}: refused: {r['error']}")
                if retry:
                    with self.lock:
                        self.stats["retry_lines"] += len(retry)
                    self.give_back(retry)
        except Exception as e:  # noqa: BLE001 - reported, the demo fails
            self.problem(f"batch producer: {e.__class__.__name__}: {e}")
        finally:
            api.close()

    def post_answered(self, api, path, body, lines, ctype="application/json",
                      all_uncertain=False):
        """POSTs body, carrying lines [(event, is a re-send)], until serve answers other than
        503 (a lost request makes its first sends, or with all_uncertain every line, uncertain:
        serve may have taken them); returns (status, body, time of the last try)"""
        deadline = time.time() + 60
        while True:
            t0 = time.time()
            for ev, rs in lines:
                if not rs and not ev.t_sent:
                    ev.t_sent = t0
            try:
                st, data = api.call("POST", path, body, ctype)
            except Lost:
                with self.lock:
                    self.stats["lost_requests"] += 1
                for ev, rs in lines:
                    if all_uncertain or not rs:
                        ev.uncertain = True
                self.wait_up(deadline)
                continue
            if st == 503:
                with self.lock:
                    self.stats["503"] += 1
                self.wait_up(deadline)
                continue
            return st, data, t0

    def post_one(self, api, ev, rs):
        """posts ev (a re-send when rs) until answered; returns (status, result, latency)"""
        st, data, t0 = self.post_answered(api, "/v1/events", ev.line, [(ev, rs)])
        return st, json.loads(data), time.time() - t0

    def single_producer(self):
        api = Api(lambda: self.addr, self.key)
        try:
            while True:
                evs = self.take(1)
                if evs is None:
                    return
                if not evs:
                    time.sleep(0.002)
                    continue
                ev = evs[0]
                st, r, lat = self.post_one(api, ev, False)
                if st not in (200, 202) or (st == 200) != (r.get("duplicate") is True):
                    self.problem(f"POST /v1/events {ev.id}: {st} {r}")
                    continue
                with self.lock:
                    self.stats["singles"] += 1
                    self.lat_single.append(lat)
                self.settle(ev, r, False, "single")
                again = self.resend_pick()
                if again is not None:
                    st, r, _ = self.post_one(api, again, True)
                    if st != 200:
                        self.problem(f"re-sent {again.id}: {st} {r}")
                    self.settle(again, r, True, "single")
        except Exception as e:  # noqa: BLE001
            self.problem(f"single producer: {e.__class__.__name__}: {e}")
        finally:
            api.close()

    def storm(self, evs):
        """each event posted by STORM_THREADS threads at the same moment: one must win"""
        bar = threading.Barrier(STORM_THREADS)
        answers = [[None] * STORM_THREADS for _ in evs]

        def worker(k):
            api = Api(lambda: self.addr, self.key)
            try:
                for i, ev in enumerate(evs):
                    try:
                        bar.wait(10)
                    except threading.BrokenBarrierError:
                        pass
                    ev.t_sent = ev.t_sent or time.time()
                    answers[i][k] = self.post_one(api, ev, False)[:2]
            except Exception as e:  # noqa: BLE001
                self.problem(f"storm: {e.__class__.__name__}: {e}")
            finally:
                api.close()

        ts = [threading.Thread(target=worker, args=(k,), daemon=True)
              for k in range(STORM_THREADS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for ev, ans in zip(evs, answers):
            new = [r for st, r in filter(None, ans) if st == 202]
            dup = [r for st, r in filter(None, ans) if st == 200 and r.get("duplicate") is True]
            if len(new) + len(dup) != STORM_THREADS or len(new) > 1 or (
                    len(new) == 0 and not ev.uncertain):
                self.problem(f"{ev.id} posted by {STORM_THREADS} threads at once: "
                             f"{len(new)} taken, {len(dup)} duplicates, answers {ans}")
            with self.lock:
                self.stats["storm_new"] += len(new)
                self.stats["dup_storm"] += len(dup) - (0 if new else 1)
                ev.state = "acked"
                ev.via = "storm"
                self.ack_times.append(time.time())
                self.stats["acked"] += 1
                self.acked.append(ev)
        self.storm_done.set()

    # -- the kill --

    def killer(self, total):
        while not self.ingest_done.is_set():
            with self.lock:
                share = self.stats["acked"] / total
            if share >= KILL_AT and self.storm_done.is_set():
                break
            time.sleep(0.01)
        else:
            return
        pid = self.serve.p.pid
        with self.lock:
            acked = self.stats["acked"]
        self.serve_down.set()
        t0 = time.time()
        self.serve.stop(signal.SIGKILL)
        self.killed = (t0, pid, acked)
        out.say(f"   {Y}kill -9 serve{O} (pid {pid}) with {n(acked)} events acknowledged, "
                f"producers still posting")
        port = self.addr.rsplit(":", 1)[1]
        try:
            self.serve.start(self.serve_argv + ["--listen", f"127.0.0.1:{port}"])
        except RuntimeError:
            # the port was taken meanwhile: any free one (the producers follow self.addr)
            self.serve.start(self.serve_argv + ["--listen", "127.0.0.1:0"])
        self.addr = self.serve.addr
        t1 = time.time()
        self.serve_down.clear()
        rec = ""
        with open(self.serve.err_path, errors="replace") as f:
            for line in f:
                if "recovered" in line:
                    rec = line.strip().replace("hookring serve: ", "")
        rec = rec.split(" deliveries pending")[0].rsplit(", ", 1)[0]
        try:
            hapi = Api(lambda: self.addr, None, timeout=5)
            st, h = hapi.json("GET", "/v1/health")
            hapi.close()
            resumed = f"; {n(h['in_flight'] + h['pending'])} deliveries resumed"
        except (Lost, ValueError, KeyError, TypeError):
            resumed = ""
        self.restarted = (t1, rec)
        out.say(f"   {G}restarted{O} on the same data directory in {(t1 - t0) * 1000:.0f} ms: "
                f"{rec}{resumed}")

    # -- progress --

    def progress_loop(self, total):
        mapi = Api(lambda: self.addr, self.key, timeout=2)
        hapi = Api(lambda: self.harness.addr, None, timeout=2)
        k = 0
        while not self.stop_progress.wait(0.5):
            k += 1
            m = None
            # twice: a kept connection to the killed serve fails once, then reconnects
            for _ in range(2):
                if self.serve_down.is_set():
                    break
                try:
                    st, data = mapi.call("GET", "/metrics")
                    if st == 200:
                        m = parse_metrics(data.decode())
                    break
                except Lost:
                    pass
            try:
                st, data = hapi.call("GET", "/_harness/stats")
                if st == 200:
                    self.last_hstats = json.loads(data)
            except (Lost, ValueError):
                pass
            now = time.time()
            with self.lock:
                acked = self.stats["acked"]
            if m is not None:
                self.samples.append((now, self.serve.p.pid,
                                     m.get("hookring_deliveries_delivered_total", 0)))
            if m is not None:
                self.sample_deliveries(mapi)
            h = self.last_hstats
            width = 16
            fill = int(width * min(1.0, acked / max(1, total)))
            bar = "\u2588" * fill + "\u2591" * (width - fill)
            text = f"   {now - self.t0:4.1f} s {bar} {n(acked)}/{n(total)} events in"
            if m is None:
                text += " | serve is down (kill -9): restarting"
            else:
                text += (f" | {n(int(m.get('hookring_deliveries_delivered_total', 0)))} delivered"
                         f" | {n(int(m.get('hookring_attempts_total', 0)))} attempts"
                         f" | {n(int(m.get('hookring_retries_pending', 0)))} awaiting retry"
                         f" | {n(int(m.get('hookring_deliveries_failed_total', 0)))} failed"
                         f" | {n(int(m.get('hookring_attempts_in_flight', 0)))} in flight"
                         f" | bad sig {n(h.get('bad_signature', 0))}")
            if out.tty or k % 4 == 0:
                out.progress(text)
        mapi.close()
        hapi.close()

    def sample_deliveries(self, api):
        """notes the newest finished deliveries of every webhook: their attempts are read at
        the end, for latencies spread over the whole run"""
        for w in WEBHOOKS:
            st = "failed" if w[2] in ("status/500", "gone") else "delivered"
            try:
                code, r = api.json("GET", f"/v1/webhooks/{self.whid[w[0]]}/deliveries?"
                                          f"status={st}&limit=2")
            except (Lost, ValueError):
                return
            for d in (r or {}).get("data", []) if code == 200 else []:
                self.sampled.setdefault(w[0], set()).add(d["id"])

    def peaks(self):
        """the best 1 s of acknowledgements and of deliveries (from the progress readings)"""
        ts = sorted(self.ack_times)
        best_in = 0
        j = 0
        for i in range(len(ts)):
            while ts[i] - ts[j] > 1.0:
                j += 1
            best_in = max(best_in, i - j + 1)
        best_out = 0.0
        sm = self.samples
        for i in range(len(sm)):
            for j in range(i + 1, len(sm)):
                if sm[j][1] != sm[i][1]:
                    break
                if sm[j][0] - sm[i][0] >= 0.95:
                    best_out = max(best_out, (sm[j][2] - sm[i][2]) / (sm[j][0] - sm[i][0]))
                    break
        return best_in, best_out

    # -- the run --

    def run(self):
        a = self.a
        evs, storm_evs = workload(self.rng, a.events)
        self.evs = evs + storm_evs
        total = len(self.evs)
        self.plan, self.due = evs, schedule(len(evs), a.rate)
        out.say()
        out.say(f"   Ingest: {n(total)} events of {len(STREAMS)} tenants (agents), arriving at "
                f"~{n(int(a.rate))}/s in waves (+-50 %): {BATCH_PRODUCERS} producers")
        out.say(f"   post what is due every {FLUSH_S * 1000:.0f} ms as an NDJSON batch "
                f"(POST /v1/events/batch), {SINGLE_PRODUCERS} post one event at a time")
        out.say(f"   (POST /v1/events); each also re-sends ~{RESEND_P * 100:.0f} % of the ids "
                f"already acknowledged; {STORM_IDS} ids are each posted by {STORM_THREADS} "
                f"threads at once.")
        if not a.no_kill:
            out.say(f"   serve is killed with SIGKILL once {KILL_AT * 100:.0f} % of the events "
                    f"are acknowledged, and restarted.")
        self.t0 = time.time()
        prog = threading.Thread(target=self.progress_loop, args=(total,), daemon=True)
        prog.start()
        threads = [threading.Thread(target=self.storm, args=(storm_evs,), daemon=True)]
        threads += [threading.Thread(target=self.batch_producer, daemon=True)
                    for _ in range(BATCH_PRODUCERS)]
        threads += [threading.Thread(target=self.single_producer, daemon=True)
                    for _ in range(SINGLE_PRODUCERS)]
        for t in threads:
            t.start()
        kt = None
        if not a.no_kill:
            kt = threading.Thread(target=self.killer, args=(total,), daemon=True)
            kt.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
        self.t_ingested = time.time()
        self.ingest_done.set()
        if kt is not None:
            while kt.is_alive():
                kt.join(0.2)
        out.say(f"   all {n(self.stats['acked'])} events acknowledged in "
                f"{self.t_ingested - self.t0:.1f} s; waiting for the last deliveries and retry "
                f"schedules")
        # wait until every delivery is final: nothing in flight, nothing waiting for a retry
        api = Api(lambda: self.addr, self.key, timeout=5)
        deadline = time.time() + a.wait
        calm = 0
        m = {}
        while True:
            try:
                st, data = api.call("GET", "/metrics")
                m = parse_metrics(data.decode()) if st == 200 else {}
            except Lost:
                m = {}
            if (m and m.get("hookring_attempts_in_flight") == 0 and
                    m.get("hookring_retries_pending") == 0):
                calm += 1
                if calm >= 2:
                    break
            else:
                calm = 0
            if time.time() > deadline:
                self.problem(f"deliveries still not final after {a.wait} s: "
                             f"in flight {m.get('hookring_attempts_in_flight')}, waiting "
                             f"{m.get('hookring_retries_pending')}")
                break
            time.sleep(0.25)
        self.t_final = time.time()
        self.stop_progress.set()
        prog.join()
        out.progress(f"   {self.t_final - self.t0:5.1f} s every delivery final: delivered "
                     f"{n(int(m.get('hookring_deliveries_delivered_total', 0)))}, failed "
                     f"{n(int(m.get('hookring_deliveries_failed_total', 0)))}, attempts "
                     f"{n(int(m.get('hookring_attempts_total', 0)))}", keep=True)
        out.end_progress()
        self.metrics = m
        self.collect(api)
        api.close()

    def collect(self, api):
        st, r = api.json("GET", "/v1/webhooks")
        self.whs = {w["id"]: w for w in r["data"]} if st == 200 else {}
        # a sample of attempt latencies per webhook, from serve's own records
        self.att = {}
        self.example = {}  # webhook name: one delivery (of the sample) with its attempts
        for w in WEBHOOKS:
            lat = []
            for dlv in sorted(self.sampled.get(w[0], ())):
                st2, full = api.json("GET", f"/v1/deliveries/{dlv}")
                if st2 == 200:
                    lat += [x["latency_ms"] for x in full["attempts"]]
            self.att[w[0]] = sorted(lat)
            # the example: of the newest 1000, the one with the most attempts
            st, r = api.json("GET", f"/v1/webhooks/{self.whid[w[0]]}/deliveries?limit=1000")
            if st == 200 and r["data"]:
                best = max(r["data"], key=lambda d: d["attempt_count"])
                st2, full = api.json("GET", f"/v1/deliveries/{best['id']}")
                if st2 == 200:
                    self.example[w[0]] = full
        hapi = Api(lambda: self.harness.addr)
        st, data = hapi.call("GET", "/_harness/stats")
        self.hstats = json.loads(data)
        hapi.close()
        api.close()
        rc = self.serve.stop(signal.SIGTERM)
        if rc != 0:
            self.problem(f"serve did not stop cleanly on SIGTERM: exit status {rc}")
        rc = self.harness.stop(signal.SIGTERM)
        if rc != 0:
            self.problem(f"the harness exited {rc}")
        note_pids()
        self.ids = {}
        with open(os.path.join(self.a.work, "ids.tsv")) as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) == 7:  # id, attempts, verified, bad, dups, first_seen_ms, first_seen_us
                    self.ids[p[0]] = tuple(int(x) for x in p[1:5]) + (int(p[6]),)
        self.ops = {"endpoint.failing": 0, "endpoint.disabled": 0,
                    "message.attempt.exhausted": 0}
        with open(self.serve.out_path, errors="replace") as f:
            for line in f:
                if line.startswith("operator: "):
                    t = line.split()[1]
                    self.ops[t] = self.ops.get(t, 0) + 1

    # -- the report --

    def report(self):
        s, m, hs = self.stats, self.metrics, self.hstats
        P = self.problem
        # per webhook, from the producers' side: the events acknowledged for it
        exp = {w[0]: [] for w in WEBHOOKS}
        unrouted = 0
        for ev in self.evs:
            if ev.state != "acked":
                P(f"{ev.id} was never acknowledged")
                continue
            if not ev.dests:
                unrouted += 1
            for w in ev.dests:
                exp[w[0]].append(ev)
        kill = self.killed is not None
        # per webhook, from the receiver's side (the harness's id table)
        rows = []
        e2e_all = []
        first_try = after_retry = rdups = 0
        last_seen = 0
        for w in WEBHOOKS:
            name, prof, path = w[0], w[1], w[2]
            sw = self.whs.get(self.whid[name], {})
            got = {"first": 0, "retried": 0, "att": 0, "dups": 0, "missing": 0, "e2e": [],
                   "seen": 0}
            for ev in exp[name]:
                hid = receiver_id(prof, ev)
                rec = self.ids.get(hid)
                if path == "gone":
                    got["att"] += rec[0] if rec else 0
                    got["seen"] += 1 if rec else 0
                    continue
                if rec is None:
                    got["missing"] += 1
                    if got["missing"] <= 3:
                        P(f"{name}: {ev.id} (receiver id {hid}) never reached the receiver")
                    continue
                attempts, verified, bad, dups, first_us = rec
                got["att"] += attempts
                got["seen"] += 1
                got["dups"] += dups
                if bad:
                    P(f"{name}: {hid}: {bad} requests with a bad signature")
                if path in DELIVERING:
                    want_min = 3 if path.startswith("flaky/") else 1
                    if verified < want_min:
                        P(f"{name}: {hid}: {verified} verified attempts, expected >= {want_min}")
                    if attempts - dups == 1:
                        got["first"] += 1
                    else:
                        got["retried"] += 1
                    if ev.t_sent:
                        got["e2e"].append(first_us / 1e6 - ev.t_sent)
                    last_seen = max(last_seen, first_us / 1e6)
                    if dups and not kill:
                        P(f"{name}: {hid} delivered {dups + 1} times without a restart")
                else:  # always 500: every attempt of the schedule, then failed
                    want = 1 + RETRIES[prof]
                    if verified < want or (verified > want and not kill):
                        P(f"{name}: {hid}: {verified} attempts, expected {want}")
            rows.append((w, sw, got))
            first_try += got["first"]
            after_retry += got["retried"]
            rdups += got["dups"]
            e2e_all += got["e2e"]
            # the engine's side for the same webhook
            want_n = len(exp[name])
            dl, fl = sw.get("delivered", -1), sw.get("failed", -1)
            if path in DELIVERING:
                if (dl, fl) != (want_n, 0):
                    P(f"{name}: serve counts {dl} delivered, {fl} failed; the producers had "
                      f"{want_n} events acknowledged for it")
                if got["first"] + got["retried"] != dl:
                    P(f"{name}: the receiver took {got['first'] + got['retried']} ids, serve "
                      f"counts {dl} delivered")
            elif path == "gone":
                taken = sum(1 for ev in exp[name])
                if dl != 0 or fl < 1 or fl > taken:
                    P(f"{name}: {dl} delivered, {fl} failed; expected 0 and 1-{taken}")
            else:
                if (dl, fl) != (0, want_n):
                    P(f"{name}: serve counts {dl} delivered, {fl} failed; expected 0 and "
                      f"{want_n}")
            want_status = "active"
            if path == "gone" and exp[name]:
                want_status = "disabled"  # by its first delivery
            elif path == "status/500" and len(exp[name]) >= FAILING_AFTER:
                want_status = "failing"  # FAILING_AFTER exhausted in a row
            if sw.get("status") != want_status:
                P(f"{name}: status {sw.get('status')}, expected {want_status}")
        e2e_all.sort()

        delivered = int(m.get("hookring_deliveries_delivered_total", -1))
        failed = int(m.get("hookring_deliveries_failed_total", -1))
        attempts = int(m.get("hookring_attempts_total", -1))
        ingested = int(m.get("hookring_events_ingested_total", -1))
        ops_ids = [v for k, v in self.ids.items() if k.startswith("evt_op_")]
        ops_taken = sum(1 for v in ops_ids if v[1] >= 1)
        if ingested != s["acked"]:
            P(f"serve counts {n(ingested)} events ingested, the producers had {n(s['acked'])} "
              f"acknowledged")
        if hs.get("bad_signature", -1) != 0:
            P(f"the receiver refused {hs.get('bad_signature')} requests: bad signature")
        if hs.get("unique", -1) != delivered + ops_taken:
            P(f"the receiver took {n(hs.get('unique', -1))} ids: {n(ops_taken)} operator "
              f"events + {n(hs.get('unique', 0) - ops_taken)} deliveries; serve counts "
              f"{n(delivered)} delivered")
        if first_try + after_retry != delivered:
            P(f"the receivers took {n(first_try + after_retry)} ids of the workload, serve counts "
              f"{n(delivered)} delivered")
        if (hs.get("duplicates", 0) != 0 or rdups) and not kill:
            P(f"the receiver saw {hs.get('duplicates')} duplicate deliveries without a restart")
        # serve's attempts count the operator posts too (those before a kill are not journaled)
        req_seen = hs.get("requests", 0) - sum(v[0] for v in ops_ids)
        if hs.get("requests", 0) < attempts or (hs.get("requests") != attempts and not kill):
            P(f"the receiver saw {n(hs.get('requests', 0))} requests, serve counts "
              f"{n(attempts)} attempts")
        wl_att = sum(r[2]["att"] for r in rows)
        wl_first = sum(r[2]["seen"] for r in rows)
        if wl_att != req_seen:
            P(f"the receiver saw {n(req_seen)} requests of deliveries, {n(wl_att)} of them "
              f"under the workload's ids")
        # one notice per change of status (a kill can lose a status record: then it is made
        # again, and said again)
        for notice, st in (("endpoint.failing", "failing"), ("endpoint.disabled", "disabled")):
            want = sum(1 for w in self.whs.values() if w["status"] == st)
            got_n = self.ops.get(notice, 0)
            if got_n < want or (got_n != want and not kill):
                P(f"{got_n} {notice} notices, {want} webhooks {st}")
        exhausted = sum(len(exp[w[0]]) for w in WEBHOOKS if w[2] == "status/500")
        if self.ops.get("message.attempt.exhausted", 0) != exhausted and not kill:
            P(f"{self.ops.get('message.attempt.exhausted')} message.attempt.exhausted notices, "
              f"expected {exhausted}")

        # ---- print ----
        def row(label, value, note=""):
            out.say(f"   {label:<24} {value:>9}   {D}{note}{O}")

        out.say()
        out.say(f"{B}3. What happened{O}")
        out.say(f"   {B}Ingest{O}")
        el_ing = self.t_ingested - self.t0
        peak_in, peak_out = self.peaks()
        row("events acknowledged", n(s["acked"]),
            f"{n(s['acked_batch'])} in {n(s['batches'])} batches, {n(s['acked_single'])} one by "
            f"one, {STORM_IDS} by the {STORM_THREADS}-thread posts")
        row("", "", f"({n(unrouted)} matched no webhook: taken, nothing to deliver)")
        row("duplicates refused", n(s["dup_resend"] + s["dup_storm"]),
            f"{n(s['dup_resend'])} re-sent ids, {n(s['dup_storm'])} of the "
            f"{STORM_IDS * STORM_THREADS} concurrent posts (one per id was taken)")
        if kill:
            row("answers lost to the kill", n(s["lost_requests"]),
                f"requests re-sent after the restart; {n(s['acked_after_lost'])} of their "
                f"events had been taken already")
            row("", "", "(answered duplicate: durable before the kill)")
        row("ingest rate", n(round(s["acked"] / el_ing)),
            f"events/s over {el_ing:.1f} s (paced); best second {n(peak_in)}/s (the burst)")
        if s["503"] or s["retry_lines"]:
            row("backpressure", n(s["503"] + s["retry_lines"]),
                f"{n(s['503'])} requests answered 503, {n(s['retry_lines'])} batch lines "
                f"'retry': posted again")
        ls, lb = sorted(self.lat_single), sorted(self.lat_batch)
        for label, xs, note in (("ack latency, one event", ls, "202 once fdatasync'd"),
                                ("ack latency, a batch", lb, f"up to {BATCH} events")):
            out.say(f"   {label:<24} {D}p50{O} {ms(pctl(xs, 50) * 1000)} ms  {D}p90{O} "
                    f"{ms(pctl(xs, 90) * 1000)} ms  {D}p99{O} {ms(pctl(xs, 99) * 1000)} ms  "
                    f"{D}({note}){O}")
        out.say()
        out.say(f"   {B}Endpoints{O} {D}delivered/failed: serve's counts; 1st try, retried, "
                f"attempts: the receiver's id table;{O}")
        out.say(f"   {D}attempt: serve's recorded latency of each attempt, queueing included "
                f"(deliveries sampled through{O}")
        out.say(f"   {D}the run); to recv.: from the producer's POST to the receiver's first "
                f"sight{O}")
        out.say(f"   {D}{'name':<12} {'profile':<16} {'status':<9} {'delivered':>9} {'failed':>6} "
                f"{'1st try':>7} {'retried':>7} {'attempts':>8} {'attempt':>8} "
                f"{'to recv.':>8}{O}")
        for w, sw, got in rows:
            st = sw.get("status", "?")
            stc = G if st == "active" else Y
            lat = self.att.get(w[0], [])
            e2e = sorted(got["e2e"])
            out.say(f"   {w[0]:<12} {w[1]:<16} {stc}{st:<9}{O} {n(sw.get('delivered', 0)):>9} "
                    f"{n(sw.get('failed', 0)):>6} {n(got['first']):>7} {n(got['retried']):>7} "
                    f"{n(got['att']):>8} "
                    f"{(ms(pctl(lat, 50)) + ' ms') if lat else '-':>8} "
                    f"{(ms(pctl(e2e, 50) * 1000) + ' ms') if e2e else '-':>8}")
        out.say(f"   {D}(attempt and to recv.: medians){O}")
        out.say()
        out.say(f"   {B}One delivery of each kind{O} {D}(GET /v1/deliveries/ID: each attempt's "
                f"answer, latency from its send to{O}")
        out.say(f"   {D}the answer, and when it was sent, after the first){O}")
        for name in ("billing", "inbox", "app", "payments-eu", "legacy-crm"):
            d = self.example.get(name)
            if d:
                out.say(f"   {name:<12} {d['id']}  {attempts_line(d)}")
        out.say()
        out.say(f"   {B}Deliveries{O}")
        left = (int(m.get("hookring_retries_pending", -1)),
                int(m.get("hookring_attempts_in_flight", -1)))
        row("deliveries", n(delivered + failed),
            f"{n(delivered)} delivered + {n(failed)} failed; "
            + ("none pending, none in flight" if left == (0, 0) else
               f"{n(left[0])} pending, {n(left[1])} in flight"))
        row("delivered", n(delivered),
            f"{n(first_try)} on the first attempt, {n(after_retry)} after retries")
        row("attempts", n(req_seen),
            f"{n(wl_first)} first + {n(req_seen - wl_first)} retries and repeats (the "
            f"receiver's count)")
        fails = sum(r[1].get("failed", 0) for r in rows if r[0][2] == "status/500")
        gone = sum(r[1].get("failed", 0) for r in rows if r[0][2] == "gone")
        row("failed", n(failed), f"{n(fails)} exhausted every retry (always 500), {n(gone)} "
                                 f"to the 410 endpoint (disabled by the first)")
        dstat = {}
        for w in self.whs.values():
            dstat[w["status"]] = dstat.get(w["status"], 0) + 1
        row("endpoints", len(self.whs), ", ".join(f"{v} {k}" for k, v in sorted(dstat.items())))
        row("operator notices", n(sum(self.ops.values())),
            ", ".join(f"{k} x{v}" for k, v in self.ops.items() if v))
        row("", "", f"(serve's stdout; {n(ops_taken)} posted to and verified by the harness)")
        row("delivery rate", n(round(delivered / max(0.001, last_seen - self.t0))),
            f"deliveries/s, first POST to last delivery ({last_seen - self.t0:.1f} s); best "
            f"second {n(round(peak_out))}/s")
        e2 = e2e_all
        out.say(f"   {'ingest -> receiver':<24} {D}p50{O} {ms(pctl(e2, 50) * 1000)} ms  {D}p90{O} "
                f"{ms(pctl(e2, 90) * 1000)} ms  {D}p99{O} {ms(pctl(e2, 99) * 1000)} ms  {D}max{O} "
                f"{ms(e2[-1] * 1000) if e2 else 0} ms")
        row("signatures verified", n(hs.get("verified", 0)),
            f"by the receiver; {hs.get('bad_signature', '?')} bad")
        if kill:
            acked = self.killed[2]
            row("acknowledged at the kill", n(acked),
                f"serve back {(self.restarted[0] - self.killed[0]) * 1000:.0f} ms later"
                + ("; every one delivered (checked by id)" if not self.problems else ""))
            row("delivered twice", n(rdups),
                "in flight at the kill, made again: at-least-once, same id")
        out.say(f"   {D}all final {self.t_final - self.t0:.1f} s after the first event{O}")
        out.say()
        if self.problems:
            out.say(f"   {R}{B}checks failed:{O}")
            for p in self.problems[:40]:
                out.say(f"   {R}- {p}{O}")
            if len(self.problems) > 40:
                out.say(f"   {R}... and {len(self.problems) - 40} more{O}")
            return 1
        out.say(f"   {G}checks passed{O}: every signature verified; every acknowledged event "
                f"reached each matching receiver")
        out.say("   (by the receiver's own id); serve's counts equal the producers' and the "
                "receiver's, per endpoint;")
        out.say("   the failing endpoint is 'failing', the 410 one 'disabled', the others "
                "'active'.")
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", required=True)
    ap.add_argument("--events", type=int, default=30000)
    ap.add_argument("--rate", type=float, default=4000.0, help="events/s on average")
    ap.add_argument("--wait", type=float, default=45.0, help="seconds to wait for final")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-kill", action="store_true")
    ap.add_argument("--color", action="store_true")
    a = ap.parse_args()
    color(a.color)
    global WORK
    WORK = a.work

    # The first SIGINT or SIGTERM ends the demo (the processes are stopped in the finally
    # below); later ones are ignored so that they cannot cut the clean-up short. SIGINT is
    # installed explicitly: a background job of a script starts with it ignored.
    def on_signal(sig, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if sig == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + sig)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    demo = Demo(a)
    try:
        out.say(f"{B}2. hookring serve at work: a mixed workload over all nine profiles{O}")
        demo.start()
        demo.register()
        demo.run()
        return demo.report()
    except (KeyboardInterrupt, SystemExit):
        out.end_progress()
        return 130
    except (RuntimeError, Lost, OSError, ValueError) as e:
        out.end_progress()
        print(f"{R}demo: {e}{O}", file=sys.stderr)
        for p in demo.problems[:20]:
            print(f"   {R}- {p}{O}", file=sys.stderr)
        return 1
    finally:
        for p in PROCS:
            if p.alive():
                p.stop(signal.SIGKILL)
        if WORK and os.path.isdir(WORK):
            note_pids()


if __name__ == "__main__":
    sys.exit(main())
