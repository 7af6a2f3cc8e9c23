"""A seeded, realistic workload for the benchmarks: runs of ~15 events across a few dozen
workflows, with provider events late, out of order and now and then twice.

Each run: trigger, start, then two or three send steps (email, sms, whatsapp), each with
step.started, message.queued, message.sent, message.delivered and step.succeeded; ~30% of
emails opened, ~5% clicked; ~3% of steps fail once and are retried; ~1% of provider events
are sent twice; delivered sometimes arrives before sent. Runs interleave as in a busy log.

Identifiers (event, run, message and provider ids) are random UUIDs by default, as senders
and providers make them; ``ids="sequential"`` gives readable ones that grow with the run
number (``run-00000042-3``), which keep every index append-only and so flatter the raw
baseline more than flowledger. The ids are derived from the readable ones by a hash, so both
shapes describe the same workload, event for event.

``late_engagement`` adds what arrives for old messages once a history is stored: opens,
clicks and reads of messages sent before (run.py's live catch-up mixes them into the
workload's continuation).

    python benchmarks/workload.py 100000 [uuid|sequential] > events.jsonl
"""

from __future__ import annotations

import hashlib
import random
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

START = datetime(2026, 11, 1, tzinfo=UTC)
CHANNELS = {"email": "send_email", "sms": "send_sms", "whatsapp": "send_whatsapp"}
PROVIDERS = {"email": "sendgrid", "sms": "twilio", "whatsapp": "whatsapp_cloud"}
ENGAGEMENT = frozenset({"message.delivered", "message.opened", "message.clicked", "message.read"})
"""The provider events that arrive later, as webhooks."""


IDS = ("uuid", "sequential")
"""The shapes of identifier the workload can give its events."""


def _uuid(readable: str) -> str:
    """A random-looking UUID (version 4), the same for the same readable id."""
    return str(uuid.UUID(bytes=hashlib.blake2b(readable.encode(), digest_size=16).digest(), version=4))


def _t(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def run_events(i: int, rng: random.Random, ids: str = "uuid") -> list[dict[str, Any]]:
    """The events of run i, in the order a sender and its providers emit them."""
    name = _uuid if ids == "uuid" else str
    run_id, wf = name(f"run-{i:08d}"), f"workflow-{rng.randrange(36):02d}"
    now = START + timedelta(seconds=i * 0.37)
    recipient = f"user-{rng.randrange(200_000):06d}"
    n = 0

    def e(kind: str, **fields: Any) -> dict[str, Any]:
        nonlocal n, now
        n += 1
        now += timedelta(milliseconds=rng.randrange(5, 900))
        return {"id": name(f"run-{i:08d}-{n}"), "type": kind, "occurred_at": _t(now), **fields}

    events = [
        e("run.triggered", run_id=run_id, workflow=wf, recipient=recipient, tenant=f"tenant-{rng.randrange(5)}",
          trigger={"source": rng.choice(["api", "api", "audience", "schedule", "broadcast"])}, data={"plan": "pro"}),
        e("run.started", run_id=run_id),
    ]
    later: list[dict[str, Any]] = []
    for k, channel in enumerate(rng.sample(list(CHANNELS), rng.choice([2, 3]))):
        step, step_type = f"{channel}-{k + 1}", CHANNELS[channel]
        attempt = 1
        if rng.random() < 0.03:
            events.append(e("step.started", run_id=run_id, step=step, step_type=step_type, attempt=1))
            events.append(e("step.failed", run_id=run_id, step=step, step_type=step_type, attempt=1, error="provider timeout"))
            events.append(e("run.retrying", run_id=run_id))
            attempt = 2
        events.append(e("step.started", run_id=run_id, step=step, step_type=step_type, attempt=attempt))
        message_id = name(f"msg-{i:08d}-{k}")
        events.append(e("message.queued", message_id=message_id, channel=channel, recipient=recipient,
                        run_id=run_id, step=step, provider=PROVIDERS[channel]))
        sent = e("message.sent", message_id=message_id, provider_message_id=name(f"p-msg-{i:08d}-{k}"),
                 **({"cost": {"amount": 0.0079, "currency": "USD"}} if channel != "email" else {}))
        delivered = e("message.delivered", message_id=message_id)
        # A delivery receipt that beats the send receipt.
        events += [delivered, sent] if rng.random() < 0.1 else [sent, delivered]
        events.append(e("step.succeeded", run_id=run_id, step=step, step_type=step_type, attempt=attempt))
        if channel == "email" and rng.random() < 0.30:
            later.append(e("message.opened", message_id=message_id))
            if rng.random() < 0.17:
                later.append(e("message.clicked", message_id=message_id, url="https://example.com/start"))
        if channel == "whatsapp" and rng.random() < 0.5:
            later.append(e("message.read", message_id=message_id))
    events.append(e("run.completed", run_id=run_id))
    return events + later


def workload(n_events: int, seed: int = 7, ids: str = "uuid") -> Iterator[dict[str, Any]]:
    """About n_events events: runs interleaved, ~1% of provider events repeated; ids as
    random UUIDs or, with ids="sequential", readable and growing."""
    if ids not in IDS:
        raise ValueError(f"ids must be one of {IDS}, not {ids!r}")
    rng = random.Random(seed)
    active: list[list[dict[str, Any]]] = []
    emitted, i = 0, 0
    while emitted < n_events:
        while len(active) < 40:
            active.append(run_events(i, rng, ids))
            i += 1
        events = active[rng.randrange(len(active))]
        event = events.pop(0)
        if not events:
            active.remove(events)
        yield event
        emitted += 1
        if event["type"].startswith("message.") and event["type"] != "message.queued" and rng.random() < 0.01:
            yield event  # the provider retried its webhook
            emitted += 1


def late_engagement(history: Sequence[dict[str, Any]], n: int, seed: int = 11, ids: str = "uuid") -> Iterator[dict[str, Any]]:
    """n provider events for messages of ``history`` sent before, as providers report them
    later, from the history's last moment on: opens of its emails (one in six followed by a
    click) and reads of its WhatsApp messages, each message chosen at random (an open may
    be its second)."""
    if ids not in IDS:
        raise ValueError(f"ids must be one of {IDS}, not {ids!r}")
    name = _uuid if ids == "uuid" else str
    rng = random.Random(seed)
    messages = [(e["message_id"], e["channel"]) for e in history if e["type"] == "message.queued" and e["channel"] != "sms"]
    if not messages:
        return
    now = max(datetime.fromisoformat(e["occurred_at"]) for e in history)
    emitted = 0
    while emitted < n:
        message_id, channel = messages[rng.randrange(len(messages))]
        now += timedelta(milliseconds=rng.randrange(5, 900))
        kinds = ["message.read"] if channel == "whatsapp" else ["message.opened"] + (["message.clicked"] if rng.random() < 0.17 else [])
        for kind in kinds[: n - emitted]:
            extra = {"url": "https://example.com/start"} if kind == "message.clicked" else {}
            yield {"id": name(f"late-{seed}-{emitted:08d}"), "type": kind, "occurred_at": _t(now), "message_id": message_id, **extra}
            emitted += 1


if __name__ == "__main__":
    for event in workload(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000, ids=sys.argv[2] if len(sys.argv) > 2 else "uuid"):
        sys.stdout.buffer.write(orjson.dumps(event) + b"\n")
