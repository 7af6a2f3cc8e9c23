"""Generate flowledger's example event logs.

    python examples/generate.py

writes two files next to this script:

* ``welcome-series.jsonl``: the run histories of four workflows (welcome-series,
  password-reset, order-shipped, win-back) for two tenants, about 300 runs from
  2026-11-01 until the log is taken at 2026-11-04T23:00:00Z. It holds every event type
  of the vocabulary: step failures retried automatically, runs that failed (to try
  ``flowledger retry`` on), runs cancelled, paused and resumed, runs still unfinished
  (three of them under the cancellation key ``order-1001``), integration steps whose
  request and response carry secrets (redacted when stored), and provider webhooks
  arriving out of order, as they do.
* ``malformed.jsonl``: a few good events and one of each kind of problem that
  ``flowledger append`` reports (and then stores nothing).

The script is seeded and uses only the standard library: running it again gives the
same bytes. Each run's events obey the run rules and stay in time order; the file is
sorted by when each event reached the log, so runs interleave like a real log.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261101
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 11, 4, 23, 0, tzinfo=timezone.utc)
"""When the log is taken: events later than this have not happened yet."""
RUNS = 290
TENANTS = ("acme", "globex")
OPERATOR = "ops@acme.example"
DELAY = timedelta(hours=4)

WORKFLOWS = {  # workflow -> its steps (ref, step type)
    "welcome-series": [("email", "send_email"), ("wait", "delay"),
                       ("sms", "send_sms"), ("whatsapp", "send_whatsapp")],
    "password-reset": [("email", "send_email")],
    "order-shipped": [("sms", "send_sms"), ("whatsapp", "send_whatsapp")],
    "win-back": [("crm-lookup", "integration"), ("email", "send_email")],
}
MIX = {"welcome-series": 0.18, "password-reset": 0.5, "order-shipped": 0.17, "win-back": 0.15}
CHANNELS = {"send_email": "email", "send_sms": "sms", "send_whatsapp": "whatsapp"}
PROVIDERS = {"email": "sendgrid", "sms": "twilio", "whatsapp": "whatsapp_cloud"}
COST = {"amount": 0.0079, "currency": "USD"}

TRANSIENT = {  # a first attempt that fails and is retried
    "send_email": {"message": "sendgrid returned 503 Service Unavailable", "status": 503},
    "send_sms": {"message": "twilio returned 429 Too Many Requests", "status": 429},
    "send_whatsapp": {"message": "whatsapp_cloud timed out after 30s"},
    "integration": {"message": "CRM request timed out after 10s", "status": 504},
}
PERMANENT = {  # an error that fails the run
    "send_email": {"message": "sendgrid 400: invalid recipient address", "status": 400},
    "send_sms": {"message": "twilio 21211: invalid 'To' phone number", "code": 21211},
    "send_whatsapp": {"message": "whatsapp_cloud 131026: recipient cannot receive messages", "code": 131026},
    "integration": {"message": "CRM returned 500 Internal Server Error", "status": 500},
}
BOUNCES = ["550 5.1.1 mailbox does not exist", "552 5.2.2 mailbox full"]
HOURS = [1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 8, 8, 8, 8, 7, 6, 5, 4, 3, 2, 2, 1]

rng = random.Random(SEED)


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def secs(low: int, high: int) -> timedelta:
    return timedelta(seconds=rng.randint(low, high))


class Log:
    """The events made so far, each with the moment it reached the log."""

    def __init__(self) -> None:
        self.rows: list[tuple[datetime, int, dict]] = []
        self.messages = 0
        # Provider quirks, each used this many times (on the first messages they fit).
        self.quirks = {"delivered_after_opened": 3, "sent_after_delivered": 2,
                       "queued_late": 2, "read_without_delivered": 1}

    def add(self, at: datetime, kind: str, arrives: datetime | None = None, **fields) -> None:
        if at <= NOW:
            event = {"type": kind, "occurred_at": stamp(at), **fields}
            self.rows.append((arrives or at, len(self.rows), event))

    def quirk(self, name: str) -> bool:
        if self.quirks[name]:
            self.quirks[name] -= 1
            return True
        return False

    def lines(self) -> list[str]:
        rows = sorted(self.rows, key=lambda r: (r[0], r[1]))
        return [json.dumps({"id": f"evt-{n:06d}", **e}, separators=(",", ":")) for n, (_, _, e) in enumerate(rows, 1)]


def message(log: Log, t: datetime, channel: str, recipient, run_id=None, step=None, data=None) -> str:
    """One message from queue to the recipient's reaction; returns its id."""
    log.messages += 1
    mid = f"msg-{log.messages:05d}"
    provider = PROVIDERS[channel]
    queued = {"channel": channel, "recipient": recipient, "run_id": run_id, "step": step,
              "provider": provider, "data": data}
    events = [["message.queued", t, {k: v for k, v in queued.items() if v is not None}]]
    t += secs(1, 30)
    if rng.random() < 0.01:
        events.append(["message.failed", t, {"error": {"message": f"{provider} rejected the request", "status": 400}}])
    else:
        priced = {} if channel == "email" else {"cost": COST}
        late_price = bool(priced) and rng.random() < 0.25  # some providers price on delivery
        events.append(["message.sent", t, {"provider_message_id": f"{provider[:2]}-{rng.getrandbits(40):010x}",
                                           **({} if late_price else priced)}])
        t += secs(2, 90)
        if channel == "email" and rng.random() < 0.02:
            events.append(["message.bounced", t, {"reason": rng.choice(BOUNCES)}])
        else:
            quiet = channel == "whatsapp" and log.quirk("read_without_delivered")
            if not quiet:
                events.append(["message.delivered", t, priced if late_price else {}])
            if channel == "email" and rng.random() < 0.3:
                t += secs(60, 8 * 3600)
                events.append(["message.opened", t, {}])
                if rng.random() < 0.17:
                    t += secs(5, 300)
                    events.append(["message.clicked", t, {"url": f"https://app.example.com/r/{mid}"}])
            if channel == "whatsapp" and (quiet or rng.random() < 0.6):
                t += secs(30, 3 * 3600)
                events.append(["message.read", t, {}])
    arrivals = [e[1] for e in events]
    kinds = [e[0] for e in events]
    if "message.opened" in kinds and log.quirk("delivered_after_opened"):
        arrivals[kinds.index("message.delivered")] = arrivals[kinds.index("message.opened")] + secs(5, 60)
    elif "message.delivered" in kinds and log.quirk("sent_after_delivered"):
        arrivals[kinds.index("message.sent")] = arrivals[kinds.index("message.delivered")] + secs(5, 60)
    elif run_id and "message.delivered" in kinds and log.quirk("queued_late"):
        arrivals[0] = arrivals[kinds.index("message.delivered")] + secs(5, 60)
    for (kind, at, fields), arrives in zip(events, arrivals):
        log.add(at, kind, arrives, message_id=mid, **fields)
    return mid


def crm_call(recipient, status: int) -> tuple[dict, dict]:
    """An integration step's request and response, with the secrets a real one carries."""
    who = recipient if isinstance(recipient, str) else recipient["id"]
    request = {"method": "POST", "url": "https://crm.example.com/v2/contacts/search",
               "headers": {"Authorization": f"Bearer example-crm-{rng.getrandbits(48):012x}",
                           "Content-Type": "application/json"},
               "body": {"api_key": f"example-key-{rng.getrandbits(32):08x}", "external_id": who}}
    body = ({"contact_id": f"c-{rng.randint(10000, 99999)}", "segment": "lapsed-90d",
             "token": f"example-session-{rng.getrandbits(32):08x}"} if status == 200 else {"error": "upstream"})
    return request, {"status": status, "body": body}


class Run:
    """One run being played: its events go to the log in time order."""

    def __init__(self, log: Log, spec: dict) -> None:
        self.log, self.id, self.t = log, spec["run_id"], spec["at"]
        self.recipient = spec["recipient"]
        self.attempts: dict[str, int] = {}
        self.retries = 0

    def ev(self, kind: str, gap: tuple[int, int] = (1, 5), **fields) -> None:
        self.t += secs(*gap)
        self.log.add(self.t, kind, run_id=self.id, **fields)

    def retrying(self, reason: str) -> None:
        self.retries += 1
        self.ev("run.retrying", reason=reason)

    def step(self, ref: str, kind: str, error: dict | None = None) -> bool:
        """One attempt of a step, failing with error if given; True if it succeeded."""
        attempt = self.attempts[ref] = self.attempts.get(ref, 0) + 1
        base = {"step": ref, "step_type": kind, "attempt": attempt}
        request = response = None
        if kind == "integration":
            request, response = crm_call(self.recipient, error.get("status", 500) if error else 200)
        self.ev("step.started", **base, **({"request": request} if request else {}))
        if error:
            self.ev("step.failed", (1, 30), **base, **({"response": response} if response else {}), error=error)
            return False
        out: dict = {}
        if kind in CHANNELS:
            self.t += secs(0, 2)
            out["output"] = {"message_id": message(self.log, self.t, CHANNELS[kind], self.recipient, self.id, ref)}
        elif kind == "delay":
            self.t += DELAY
            out["output"] = {"waited_seconds": int(DELAY.total_seconds())}
        else:
            out["response"] = response
        self.ev("step.succeeded", (1, 4), **base, **out)
        return True


def play(log: Log, spec: dict) -> None:
    """Play one run to the end its fate gives it (or until the log is taken)."""
    run, fate, steps = Run(log, spec), spec["fate"], WORKFLOWS[spec["workflow"]]
    triggered = {k: spec[k] for k in ("workflow", "recipient", "tenant", "trigger", "workflow_run_id",
                                      "scheduled_at", "data") if spec.get(k) is not None}
    run.ev("run.triggered", (0, 0), **triggered)
    if fate == "pending":
        return
    run.ev("run.started", (1, 20))
    stop = rng.randrange(len(steps))  # where a fate cuts in
    while fate == "failed" and steps[stop][1] == "delay":
        stop = rng.randrange(len(steps))
    for i, (ref, kind) in enumerate(steps):
        if i == stop and fate == "cancelled":
            run.ev("run.cancelled", (60, 7200), by="operator", actor=OPERATOR, reason="customer asked to stop messages")
            return
        if i == stop and fate == "deactivated":
            run.ev("run.cancelled", (5, 600), by="workflow_deactivated", reason=f"workflow {spec['workflow']} was deactivated")
            return
        if i == stop and fate == "key":
            key = spec["trigger"]["cancellation_key"]
            run.ev("run.cancelled", (5, 120), by="cancellation_key", cancellation_key=key, reason="order refunded")
            return
        if i == stop and fate in ("paused", "stuck"):
            run.ev("run.paused", (1, 10), reason=f"tenant {spec['tenant']} is over its daily send quota")
            if fate == "stuck":
                return
            run.ev("run.resumed", (900, 10800))
        if i == stop and fate in ("failed", "recovered"):
            if not run.step(ref, kind, PERMANENT[kind]) and rng.random() < 0.5:
                run.retrying(f"step {ref} failed; retrying")
                run.step(ref, kind, PERMANENT[kind])
            run.ev("run.failed", (1, 5), error={**PERMANENT[kind], "step": ref})
            if fate == "failed":
                return
            run.ev("run.retried", (3600, 6 * 3600), actor=OPERATOR, reason="provider issue fixed upstream")
            run.ev("run.started", (1, 20))
        elif run.retries == 0 and kind != "delay" and rng.random() < 0.03:
            run.step(ref, kind, TRANSIENT[kind])
            run.retrying(f"step {ref} attempt {run.attempts[ref]} failed: {TRANSIENT[kind]['message']}")
        run.step(ref, kind)
        if fate == "open":
            return  # the next step has not begun yet
    run.ev("run.completed", (1, 5))


def recipient():
    if rng.random() < 0.05:
        return {"id": f"acct-{rng.randint(1, 60):04d}", "collection": "accounts"}
    return f"user-{rng.randint(1, 400):04d}"


def specs() -> list[dict]:
    """Every run to play, numbered in trigger order."""
    runs, orders = [], iter(range(1002, 10_000))
    batches = {"schedule": START + timedelta(days=1, hours=9), "broadcast": START + timedelta(days=2, hours=14)}
    for _ in range(RUNS):
        workflow = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        at = START + timedelta(days=rng.randrange(4), hours=rng.choices(range(24), HOURS)[0], seconds=rng.randrange(3600))
        spec = {"workflow": workflow, "recipient": recipient(), "tenant": rng.choice(TENANTS), "fate": "ok"}
        if workflow == "welcome-series":
            spec["trigger"] = {"source": "audience", "audience_key": "new-signups"} if rng.random() < 0.8 else {"source": "api"}
            spec["data"] = {"plan": rng.choice(["free", "pro"])}
        elif workflow == "password-reset":
            spec["trigger"] = {"source": "api"} if rng.random() < 0.5 else None  # absent means the API
            spec["data"] = {"locale": rng.choice(["en", "de", "fr"])}
        elif workflow == "order-shipped":
            key = f"order-{next(orders)}"
            spec["trigger"] = {"source": "api", "cancellation_key": key}
            spec["data"] = {"order_id": key, "carrier": rng.choice(["UPS", "DHL"])}
        else:
            source = rng.choice(list(batches))
            at = batches[source] + secs(0, 600)  # one call fans out to many recipients
            spec["trigger"] = {"source": source, **({"schedule_id": "win-back-weekly"} if source == "schedule" else {})}
            spec["workflow_run_id"] = f"wfr-win-back-{batches[source]:%m%d}"
            spec["data"] = {"days_inactive": rng.choice([60, 90, 120])}
        spec["at"] = min(at, NOW - timedelta(hours=1))
        runs.append(spec)
    # Three runs of one order, still unfinished when the log is taken: cancel them by key.
    for fate, minutes, who in (("stuck", 55, "user-0042"), ("open", 40, "user-0043"),
                               ("pending", 20, {"id": "acct-0007", "collection": "accounts"})):
        spec = {"workflow": "order-shipped", "recipient": who, "tenant": "acme", "fate": fate,
                "trigger": {"source": "api", "cancellation_key": "order-1001"},
                "data": {"order_id": "order-1001", "carrier": "UPS"}, "at": NOW - timedelta(minutes=minutes)}
        if fate == "pending":
            spec["scheduled_at"] = "2026-11-05T08:00:00Z"
        runs.append(spec)
    runs.sort(key=lambda s: s["at"])
    for n, spec in enumerate(runs, 1):
        spec["run_id"] = f"run-{n:04d}"
    # Fates that must play out before the log is taken go to runs triggered early enough.
    early = [s for s in runs if s["at"] < NOW - timedelta(hours=18) and s["fate"] == "ok"]
    rng.shuffle(early)
    by_workflow = lambda w: [s for s in early if s["workflow"] == w and s["fate"] == "ok"]
    for spec in by_workflow("win-back")[:2]:
        spec["fate"] = "deactivated"
    by_workflow("order-shipped")[0]["fate"] = "key"
    for fate, count in (("failed", 7), ("recovered", 2), ("cancelled", 3), ("paused", 5)):
        for spec in [s for s in early if s["fate"] == "ok"][:count]:
            spec["fate"] = fate
    for spec in [s for s in early if s["fate"] == "ok"][:5]:
        spec["trigger"] = {"source": "rehearsal"}
    return runs


def malformed() -> list[str]:
    """A few good events and one of each problem append reports, one per line."""
    at = lambda second: f"2026-11-05T09:00:{second:02d}Z"
    step = {"run_id": "run-9001", "step": "email", "step_type": "send_email"}
    events = [
        {"id": "evt-900001", "type": "run.triggered", "occurred_at": at(0), "run_id": "run-9001",
         "workflow": "password-reset", "recipient": "user-0042", "tenant": "acme"},
        {"id": "evt-900002", "type": "run.started", "occurred_at": at(1), "run_id": "run-9001"},
        {"id": "evt-900003", "type": "step.started", "occurred_at": at(2), **step, "attempt": 1},
        # A timestamp without an offset.
        {"id": "evt-900004", "type": "step.failed", "occurred_at": "2026-11-05T09:00:03", **step,
         "attempt": 1, "error": "sendgrid returned 503 Service Unavailable"},
        # A field the event type does not have.
        {"id": "evt-900005", "type": "message.queued", "occurred_at": at(4), "message_id": "msg-90001",
         "channel": "email", "recipient": "user-0042", "provider": "sendgrid", "priority": "high"},
        # An event type the vocabulary does not have.
        {"id": "evt-900006", "type": "run.exploded", "occurred_at": at(5), "run_id": "run-9001"},
        # A step of a run that was never triggered: refused by the run rules.
        {"id": "evt-900007", "type": "step.started", "occurred_at": at(6), **step, "run_id": "run-9999", "attempt": 1},
        # Not JSON: the line was cut short.
        '{"id": "evt-900008", "type": "run.paused", "occurred_at": "2026-11-05T09:00:07Z", "run_id": "run-9001"',
        # A string where a number belongs (no coercion).
        {"id": "evt-900009", "type": "step.started", "occurred_at": at(8), **step, "attempt": "2"},
        {"id": "evt-900010", "type": "run.completed", "occurred_at": at(9), "run_id": "run-9001"},
    ]
    return [e if isinstance(e, str) else json.dumps(e) for e in events]


def main(out: Path = HERE) -> None:
    log = Log()
    for spec in specs():
        play(log, spec)
    # Two messages support resent by hand: no run, no step.
    resends = []
    for at, who in ((START + timedelta(days=1, hours=10, minutes=15), "user-0117"),
                    (START + timedelta(days=2, hours=16, minutes=40), {"id": "acct-0031", "collection": "accounts"})):
        resent = message(log, at, "email", who, data={"template": "password-reset", "resent_by": "support@acme.example"})
        resends.append((resent, at))
    # Late webhooks, arriving after everything else: a spam complaint and an unsubscribe.
    last = max(r[0] for r in log.rows) + timedelta(minutes=1)
    for (mid, at), kind in zip(resends, ("message.complained", "message.unsubscribed")):
        log.add(at + timedelta(hours=2), kind, arrives=last, message_id=mid, provider="sendgrid")
    (out / "welcome-series.jsonl").write_text("\n".join(log.lines()) + "\n")
    (out / "malformed.jsonl").write_text("\n".join(malformed()) + "\n")


if __name__ == "__main__":
    # An optional folder to write to (default: beside this script).
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
