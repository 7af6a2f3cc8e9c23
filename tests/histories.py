"""History generators shared by the property tests (hypothesis).

The generator walks its own model of the run lifecycle, written apart from the code
under test, so a disagreement shows up as a failure rather than agreeing with itself.
"""

from __future__ import annotations

import io
import os
import tempfile
from contextlib import contextmanager

import orjson
from hypothesis import strategies as st

from flowledger.store import open_log

# The model: which lifecycle events each status allows, and where they lead.
MODEL = {
    "pending": {"run.started": "running", "run.cancelled": "cancelled", "run.failed": "failed"},
    "running": {"run.paused": "paused", "run.completed": "completed", "run.failed": "failed", "run.cancelled": "cancelled", "run.retrying": "running"},
    "paused": {"run.resumed": "running", "run.cancelled": "cancelled", "run.failed": "failed"},
    "failed": {"run.retried": "pending", "run.retrying": "pending"},
    "completed": {},
    "cancelled": {},
}
LIFECYCLE = sorted({t for moves in MODEL.values() for t in moves} | {"run.triggered", "step.started", "step.succeeded", "step.failed"})


@contextmanager
def fresh_log():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f.db")
        log = open_log(path)
        try:
            yield log, path
        finally:
            log.close()


def jsonl(events):
    return io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in events))


def make(n, run_id, kind, **fields):
    e = {"id": f"{run_id}-{n}", "type": kind, "occurred_at": f"2026-11-01T09:{n // 60:02d}:{n % 60:02d}Z", "run_id": run_id}
    if kind == "run.failed" or kind == "step.failed":
        fields.setdefault("error", "boom")
    if kind == "run.cancelled":
        fields.setdefault("by", "operator")
    e.update(fields)
    return e


# "notify" has two types: a workflow edited so that a step keeps its name but changes type.
STEPS = [("email", "send_email"), ("wait", "delay"), ("sms", "send_sms"), ("notify", "send_email"), ("notify", "send_whatsapp")]


RESULTS = ["step.succeeded", "step.failed"]


def _choices(status, retries, max_retries, open_attempts, busy):
    """What may happen next to a run in ``status`` (a choice listed n times is n times likelier).

    Lifecycle moves the model allows; a new step attempt while the run runs or is paused;
    a result of any open attempt whatever the status (an integration may answer after the
    run paused, ended or was retried); and "end" once only results remain possible, so a
    run may also end with attempts never answered. Starting, resuming and new attempts
    are weighted up so that attempts are often open when the run pauses or ends.
    """
    moves = sorted(MODEL[status])
    if retries >= max_retries:
        moves = [m for m in moves if m not in ("run.retrying", "run.retried")]
    options = list(moves)
    if status in ("pending", "paused"):
        options += ["run.started" if status == "pending" else "run.resumed"] * (4 if busy else 2)
    if status in ("running", "paused"):
        options += ["step.started"] * (6 if busy else 3)
    if open_attempts:
        options += RESULTS * (3 if busy else 1)
        if not moves:
            options.append("end")
    return options


def _next_step(draw, events, busy):
    """The step of a new attempt; when ``busy``, now and then the last step again (a retried step)."""
    if busy and events[-1]["type"].startswith("step.") and draw(st.booleans()):
        last = next((e for e in reversed(events) if e["type"] == "step.started"), None)
        if last is not None:
            return last["step"], last["step_type"]
    return draw(st.sampled_from(STEPS))


@st.composite
def run_histories(draw, run_id="r1", workflows=("w",), *, busy=False):
    """A valid history of one run, with the status and retry count the model expects.

    A step result may come late: after the run paused, finished or was retried. With
    ``busy``, steps, retried steps (the same step again) and results are far likelier
    than the run's end, and a pending or paused run likelier to get going again.
    """
    max_retries = draw(st.integers(0, 3))
    source = draw(st.sampled_from(["api", "api", "schedule", "rehearsal"]))
    events = [
        make(
            0,
            run_id,
            "run.triggered",
            workflow=draw(st.sampled_from(workflows)),
            recipient=draw(st.sampled_from(["u1", "u2"])),
            max_retries=max_retries,
            trigger={"source": source},
        )
    ]
    status, retries, open_attempts, next_attempt = "pending", 0, [], 1
    for n in range(1, draw(st.integers(0, 30 if busy else 25)) + 1):
        options = _choices(status, retries, max_retries, open_attempts, busy)
        if not options:
            break
        kind = draw(st.sampled_from(options))
        if kind == "end":
            break
        if kind == "step.started":
            name, step_type = _next_step(draw, events, busy)
            open_attempts.append((next_attempt, name, step_type))
            events.append(make(n, run_id, kind, step=name, step_type=step_type, attempt=next_attempt))
            next_attempt += 1
            continue
        if kind in RESULTS:
            attempt, name, step_type = open_attempts.pop(draw(st.integers(0, len(open_attempts) - 1)))
            events.append(make(n, run_id, kind, step=name, step_type=step_type, attempt=attempt))
            continue
        if kind in ("run.retrying", "run.retried"):
            retries += 1
        status = MODEL[status][kind]
        events.append(make(n, run_id, kind))
    return events, status, retries


PROVIDER_FACTS = ["message.sent", "message.delivered", "message.read", "message.opened", "message.clicked", "message.bounced", "message.failed"]


@st.composite
def message_histories(draw, message_id, run_id=None):
    """The events of one message: its queued record and a few provider facts, in time order."""
    channel = draw(st.sampled_from(["email", "sms", "whatsapp"]))
    step = {"email": "email", "sms": "sms", "whatsapp": "sms"}[channel]
    queued = {"id": f"{message_id}-q", "type": "message.queued", "occurred_at": "2026-11-01T09:00:00Z", "message_id": message_id, "channel": channel, "recipient": "u1"}
    if run_id is not None:
        queued.update(run_id=run_id, step=step)
    events = [queued]
    for i, kind in enumerate(draw(st.lists(st.sampled_from(PROVIDER_FACTS), max_size=5))):
        minute = draw(st.integers(0, 3))
        e = {"id": f"{message_id}-{i}", "type": kind, "occurred_at": f"2026-11-01T09:0{minute}:00Z", "message_id": message_id}
        if kind == "message.clicked":
            e["url"] = draw(st.sampled_from(["https://a.test", "https://b.test"]))
        if kind == "message.failed":
            e["error"] = "provider error"
        if draw(st.booleans()) and kind in ("message.sent", "message.delivered"):
            e["cost"] = {"amount": draw(st.sampled_from([0.0079, 0.01, 0.05])), "currency": "USD"}
        events.append(e)
    return events


def interleave(draw, sequences):
    """The items of every sequence in one list, each sequence keeping its own order."""
    queues = [list(q) for q in sequences]
    out = []
    while any(queues):
        q = draw(st.sampled_from([q for q in queues if q]))
        out.append(q.pop(0))
    return out


@st.composite
def workspaces(draw):
    """Several runs of two workflows and their messages: (run events in log order, message events)."""
    runs = [draw(run_histories(run_id=f"r{i}", workflows=("w1", "w2")))[0] for i in range(draw(st.integers(1, 4)))]
    # Interleave the runs, each keeping its own order (the rules need it).
    run_events = interleave(draw, runs)
    messages = []
    for i in range(draw(st.integers(0, 5))):
        run_id = draw(st.sampled_from([None, *[f"r{j}" for j in range(len(runs))]]))
        messages += draw(message_histories(f"m{i}", run_id))
    return run_events, messages
