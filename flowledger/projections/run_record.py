"""The run record: one run's events folded into what an operator asks of it.

Used by ``runs show`` and by the auditor's ``replay``, which shows the record after each
event of the run and each fact of its messages (:class:`RunReplay`). The status comes from the domain's own :class:`~flowledger.domain.run.Run`, so the
record can never disagree with the rules that guarded the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from operator import attrgetter
from typing import Any

import orjson

from flowledger.domain.run import FINISHED, Run
from flowledger.projections.delivery import delivery_record, earlier
from flowledger.store.log import StoredEvent

RECORD_FIELDS = (
    "id",
    "workflow",
    "recipient",
    "tenant",
    "trigger_source",
    "workflow_run_id",
    "status",
    "created_at",
    "scheduled_at",
    "executed_at",
    "completed_at",
    "duration_seconds",
    "retry_count",
    "max_retries",
    "error_message",
    "error_count",
    "updated_at",
)
"""The record's fields, in the order they are shown."""


def error_text(error: Any) -> str:
    """An event's error as one line of text (an object's message, or its JSON)."""
    if isinstance(error, str):
        return error
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return orjson.dumps(error).decode()


def recipient_label(recipient: Any) -> str:
    """A recipient as one short text: its id, or collection/id ("?" when unknown)."""
    if isinstance(recipient, dict):
        return f"{recipient['collection']}/{recipient['id']}"
    return recipient or "?"


def event_detail(event: dict[str, Any], limit: int | None = None) -> str:
    """What a run event says, in one line (errors cut to ``limit`` characters)."""

    def short(error: Any) -> str:
        text = error_text(error)
        return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"

    kind = event["type"]
    if kind == "run.triggered":
        source = (event.get("trigger") or {}).get("source", "api")
        return f"{event['workflow']} for {recipient_label(event['recipient'])} ({source})"
    if kind.startswith("step."):
        text = f"{event['step']} #{event['attempt']} {event['step_type']}"
        return text + (": " + short(event["error"]) if kind == "step.failed" else "")
    if kind == "run.failed":
        return short(event["error"])
    if kind == "run.cancelled":
        # Who asked, as a retry's detail says it; and which key, for a cancel by key.
        by = event["by"]
        if by == "cancellation_key" and event.get("cancellation_key"):
            by += f" {event['cancellation_key']}"
        if event.get("actor"):
            by += f" ({event['actor']})"
        return f"by {by}" + (f": {event['reason']}" if event.get("reason") else "")
    if kind in ("run.retried", "run.retrying", "run.paused"):
        who = f"by {event['actor']}" if event.get("actor") else ""
        return ": ".join(p for p in (who, event.get("reason") or "") if p)
    if kind.startswith("message."):
        return _message_detail(event, short)
    return ""


def _message_detail(event: dict[str, Any], short: Any) -> str:
    """What a message fact says, in one line: which message, and what a replay's reader
    needs of it (where it goes, the link clicked, why it failed, its price)."""
    kind = event["type"]
    text = event["message_id"]
    if kind == "message.queued":
        text += f" {event['channel']} to {recipient_label(event['recipient'])}"
        if event.get("provider"):
            text += f" ({event['provider']})"
    elif kind == "message.clicked":
        text += " " + short(event["url"])
    elif kind == "message.bounced":
        text += ": " + ("temporary: " if event.get("temporary") else "") + short(event.get("reason") or "bounced")
    elif kind == "message.failed":
        text += ": " + ("temporary: " if event.get("temporary") else "") + short(event["error"])
    cost = event.get("cost")
    if isinstance(cost, dict) and cost.get("amount") is not None:
        currency = f" {cost['currency']}" if cost.get("currency") else ""
        text += f" (cost {cost['amount']}{currency})"
    return text


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one stored timestamp to another (None if either is missing)."""
    if start is None or end is None:
        return None
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return round(delta.total_seconds(), 3)


@dataclass
class RunRecord:
    """The current record of one run, built one event at a time."""

    rules: Run
    """The domain state (status, retries)."""
    workflow: str | None = None
    """The workflow's key."""
    recipient: Any = None
    """The recipient as triggered: an id, or {"id", "collection"}."""
    tenant: str | None = None
    """The tenant."""
    trigger_source: str | None = None
    """What triggered the run."""
    workflow_run_id: str | None = None
    """The trigger call this run is one recipient of."""
    created_at: str | None = None
    """When the run was triggered."""
    scheduled_at: str | None = None
    """When the run was due to start."""
    executed_at: str | None = None
    """When the run first started executing."""
    completed_at: str | None = None
    """When the run last reached a terminal status (cleared by a retry)."""
    error_message: str | None = None
    """The last error of a failed step or of the run."""
    error_count: int = 0
    """How many step attempts failed."""
    updated_at: str | None = None
    """The latest occurred_at of the run's events."""

    @classmethod
    def new(cls, run_id: str) -> RunRecord:
        """A record for a run no event has touched yet."""
        return cls(Run(run_id))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunRecord:
        """Rebuild from a runs-view row (see :meth:`to_row`)."""
        return cls(
            Run.from_state(row["id"], orjson.loads(row["rules"])),
            workflow=row["workflow"],
            recipient=orjson.loads(row["recipient_json"]),
            tenant=row["tenant"],
            trigger_source=row["trigger_source"],
            workflow_run_id=row["workflow_run_id"],
            created_at=row["created_at"],
            scheduled_at=row["scheduled_at"],
            executed_at=row["executed_at"],
            completed_at=row["completed_at"],
            error_message=row["error_message"],
            error_count=row["error_count"],
            updated_at=row["updated_at"],
        )

    def to_row(self) -> dict[str, Any]:
        """The record as runs-view columns (with the rule state, to carry on folding)."""
        row = self.to_dict()
        recipient = row.pop("recipient")
        row["recipient"] = recipient if isinstance(recipient, str) or recipient is None else recipient["id"]
        row["recipient_json"] = orjson.dumps(recipient).decode()
        row["rules"] = orjson.dumps(self.rules.to_state()).decode()
        return row

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one stored event of the run into the record."""
        kind = event["type"]
        at = event["occurred_at"]
        self.rules.apply(event)
        if kind == "run.triggered":
            self.workflow = event["workflow"]
            self.recipient = event["recipient"]
            self.tenant = event.get("tenant")
            self.trigger_source = (event.get("trigger") or {}).get("source", "api")
            self.workflow_run_id = event.get("workflow_run_id")
            self.created_at = at
            self.scheduled_at = event.get("scheduled_at")
        elif kind == "run.started":
            self.executed_at = self.executed_at or at
        elif kind == "step.failed":
            self.error_count += 1
            self.error_message = error_text(event["error"])
        elif kind == "run.failed":
            self.error_message = error_text(event["error"])
        if self.rules.status in FINISHED and kind in ("run.completed", "run.failed", "run.cancelled"):
            self.completed_at = at
        elif kind in ("run.retried", "run.retrying") and self.rules.status not in FINISHED:
            self.completed_at = None
        if self.updated_at is None or at > self.updated_at:
            self.updated_at = at

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data, in :data:`RECORD_FIELDS` order."""
        return {
            "id": self.rules.id,
            "workflow": self.workflow,
            "recipient": self.recipient,
            "tenant": self.tenant,
            "trigger_source": self.trigger_source,
            "workflow_run_id": self.workflow_run_id,
            "status": self.rules.status,
            "created_at": self.created_at,
            "scheduled_at": self.scheduled_at,
            "executed_at": self.executed_at,
            "completed_at": self.completed_at,
            "duration_seconds": seconds_between(self.executed_at or self.created_at, self.completed_at),
            "retry_count": self.rules.retry_count,
            "max_retries": self.rules.max_retries,
            "error_message": self.error_message,
            "error_count": self.error_count,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One step of an auditor's replay: an event and the record right after it."""

    n: int
    """The event's number within the replay, from 1."""
    event: StoredEvent
    """The event."""
    record: dict[str, Any]
    """The run's record after the event (see :func:`run_history` for its fields)."""


REPLAY_FIELDS = (
    *RECORD_FIELDS[:-1],
    "email_opened",
    "email_opened_at",
    "email_clicked",
    "email_clicked_at",
    "updated_at",
)
"""The fields of the record after each replayed event: a runs-view entry's, in its order."""

_STEP_FINISHED = {"step.succeeded": "completed", "step.failed": "failed"}
# What each of a delivery record's delivered_at, opened_at and clicked_at is the first of.
_PROVES = (
    frozenset({"message.delivered", "message.read", "message.opened", "message.clicked"}),
    frozenset({"message.opened", "message.clicked"}),
    frozenset({"message.clicked"}),
)
_RUN_ENDED = frozenset({"run.completed", "run.failed", "run.cancelled"})


class RunReplay:
    """One run's events and its messages' facts, folded in log order into what the views
    show of the run at that point: its record, its step trace and its deliveries.

    The views fold the same events page by page; this folds them one at a time, so the
    state after the last event is the views' once they have caught up, and the state after
    any earlier one is theirs had the log ended there.
    """

    def __init__(self, run_id: str) -> None:
        self.record = RunRecord.new(run_id)
        """The run's record (the runs view's fold)."""
        self.steps: dict[tuple[str, int], dict[str, Any]] = {}
        """(step, attempt) -> its attempt, as the steps view keeps it, in start order."""
        self.step_state = "pending"
        """The run as the steps view sees it: pending, running, paused or finished."""
        self.facts: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        """message id -> its facts so far, as (log position, event)."""
        self._records: dict[str, dict[str, Any]] = {}
        """message id -> its delivery record as last folded (see :meth:`delivery`)."""
        self._queued: dict[str, tuple[tuple[str, str, int], bool]] = {}
        """message id -> the sort key of its queued fact that stands, and whether that fact
        makes it an email of this run (what the engagement counts)."""
        self._firsts: dict[str, list[str | None]] = {}
        """message id -> its first delivery, open and click so far (as its record has them)."""
        self._run_firsts: list[str | None] = [None, None, None]
        """The first delivery, open and click of the run's emails so far."""

    def apply(self, position: int, event: dict[str, Any]) -> None:
        """Fold one stored event: one of the run's, or a fact of a message."""
        kind = event["type"]
        if kind.startswith("message."):
            self._apply_to_message(position, event)
            return
        self.record.apply(event)
        self._apply_to_steps(kind, position, event)

    def _apply_to_message(self, position: int, event: dict[str, Any]) -> None:
        # A message's record is folded from all its facts only when it is shown (refolded
        # at each fact, a message with thousands of them made a replay quadratic); what
        # each entry's record needs of it, the email engagement, is kept up here instead.
        mid, kind, at = event["message_id"], event["type"], event["occurred_at"]
        self.facts.setdefault(mid, []).append((position, event))
        self._records.pop(mid, None)
        was_counted = self._queued.get(mid, (None, False))[1]
        if kind == "message.queued":
            # The record takes its run and channel from the first queued fact by
            # (occurred_at, event id, position), as delivery_values sorts them.
            key = (at, event.get("id", ""), position)
            standing = self._queued.get(mid)
            if standing is None or key < standing[0]:
                in_run = event.get("run_id") == self.record.rules.id and event.get("channel") == "email"
                self._queued[mid] = (key, in_run)
        firsts = self._firsts.setdefault(mid, [None, None, None])
        for i, kinds in enumerate(_PROVES):
            if kind in kinds:
                firsts[i] = earlier(firsts[i], at)
        counted = self._queued.get(mid, (None, False))[1]
        if was_counted and not counted:
            # An earlier queued fact moved the message off this run's emails: count again.
            self._run_firsts = [None, None, None]
            for other, (_, in_run) in self._queued.items():
                if in_run:
                    self._add_firsts(self._firsts[other])
        elif counted:
            self._add_firsts(firsts)

    def _add_firsts(self, firsts: list[str | None]) -> None:
        run = self._run_firsts
        for i in range(3):
            run[i] = earlier(run[i], firsts[i])

    def delivery(self, message_id: str) -> dict[str, Any]:
        """A message's delivery record now (whatever run it names), as the deliveries view
        has it."""
        record = self._records.get(message_id)
        if record is None:
            record = self._records[message_id] = delivery_record(message_id, self.facts[message_id])
        return record

    def _apply_to_steps(self, kind: str, position: int, event: dict[str, Any]) -> None:
        # As the steps view does (flowledger.projections.steps_view), for one run.
        at = event["occurred_at"]
        if kind == "step.started":
            self.steps[(event["step"], event["attempt"])] = {
                "seq": position,
                "step": event["step"],
                "step_type": event["step_type"],
                "attempt": event["attempt"],
                "status": "idle" if self.step_state == "paused" else "running",
                "started_at": at,
                "finished_at": None,
                "duration_seconds": None,
                "error": None,
                "request": event.get("request"),
                "response": event.get("response"),
                "output": None,
            }
        elif kind in _STEP_FINISHED:
            a = self.steps[(event["step"], event["attempt"])]
            a["status"] = _STEP_FINISHED[kind]
            a["finished_at"] = at
            a["duration_seconds"] = seconds_between(a["started_at"], at)
            if kind == "step.failed":
                a["error"] = error_text(event["error"])
            for name in ("request", "response", "output"):
                if event.get(name) is not None:
                    a[name] = event[name]
        elif kind == "run.paused":
            self.step_state = "paused"
            self._move_open("running", "idle")
        elif kind in ("run.resumed", "run.started"):
            self.step_state = "running"
            self._move_open("idle", "running")
        elif kind in _RUN_ENDED:
            self.step_state = "finished"
            self._move_open(None, "stopped", at)
        elif kind in ("run.retried", "run.retrying") and self.step_state == "finished":
            self.step_state = "pending"

    def _move_open(self, from_status: str | None, to_status: str, at: str | None = None) -> None:
        for a in self.steps.values():
            if a["status"] in ("running", "idle") and (from_status is None or a["status"] == from_status):
                a["status"] = to_status
                if at is not None:
                    a["finished_at"] = at
                    a["duration_seconds"] = seconds_between(a["started_at"], at)

    def run_deliveries(self) -> list[dict[str, Any]]:
        """The run's messages now, as the deliveries view has them, each with its run's
        workflow, in the order ``runs show`` gives them (queued_at, then message id)."""
        run_id = self.record.rules.id
        mine = [d for d in map(self.delivery, self.facts) if d["run_id"] == run_id]
        mine.sort(key=lambda d: (d["queued_at"] is None, d["queued_at"] or "", d["message_id"]))
        return [{**d, "workflow": self.record.workflow} for d in mine]

    def to_record(self) -> dict[str, Any]:
        """The run's record now, with its email engagement, in :data:`REPLAY_FIELDS` order."""
        record = self.record.to_dict()
        record.update(zip(REPLAY_FIELDS[-5:-1], self.engagement()))
        return {k: record[k] for k in REPLAY_FIELDS}

    def engagement(self) -> tuple[Any, ...]:
        """(opened, first open, clicked, first click) of the run's email deliveries, as
        :func:`flowledger.queries.email_engagement` reads them from the deliveries view."""
        delivered, opened, clicked = self._run_firsts
        if delivered is None:
            return (None, None, None, None)
        return (opened is not None, opened, clicked is not None, clicked)

    def to_detail(self) -> dict[str, Any]:
        """The run now as ``runs show`` gives it: the record, its step trace (each attempt
        with the messages it queued) and its deliveries."""
        steps = sorted(self.steps.values(), key=lambda a: a["seq"])
        trace = [
            {**{k: a[k] for k in _TRACE_FIELDS[:8]}, "messages": [], **{k: a[k] for k in _TRACE_FIELDS[8:]}}
            for a in steps
        ]
        deliveries = self.run_deliveries()
        attach_messages(trace, deliveries)
        return {**self.to_record(), "steps": trace, "deliveries": deliveries}


def attach_messages(trace: list[dict[str, Any]], deliveries: Iterable[dict[str, Any]]) -> None:
    """Add each delivery's message id to the ``messages`` of the step attempt that queued
    it: the latest attempt (in ``trace`` order) of its step started by the time it was
    queued, else its step's first. A message with no step or not queued yet is no attempt's."""
    # Attempts by step: a run of thousands of steps and messages was quadratic when each
    # message looked through the whole trace.
    by_step: dict[str, list[dict[str, Any]]] = {}
    for attempt in trace:
        by_step.setdefault(attempt["step"], []).append(attempt)
    for d in deliveries:
        step, queued_at = d["step"], d["queued_at"]
        attempts = by_step.get(step) if step is not None and queued_at is not None else None
        if attempts:
            target = next((a for a in reversed(attempts) if a["started_at"] <= queued_at), attempts[0])
            target["messages"].append(d["message_id"])


_TRACE_FIELDS = (
    "step", "step_type", "attempt", "status", "started_at", "finished_at", "duration_seconds", "error",
    "request", "response", "output",
)


def merge_in_log_order(
    events: Iterable[StoredEvent], messages: Iterable[Iterable[StoredEvent]] = ()
) -> list[StoredEvent]:
    """A run's events and its messages' facts (each stream in log order) in one log order."""
    # Sorted whole rather than merged stream by stream: positions are unique, and a heap of
    # tens of thousands of one-fact streams cost more than the sort of all their facts.
    return sorted(chain(events, *messages), key=_POSITION)


_POSITION = attrgetter("position")


def run_history(
    run_id: str,
    events: Iterable[StoredEvent],
    messages: Iterable[Iterable[StoredEvent]] | None = None,
    *,
    after: int = 0,
    limit: int | None = None,
) -> list[HistoryEntry]:
    """A run's events and its messages' facts in log order, each with the record as it
    stood right after it (:data:`REPLAY_FIELDS`). ``after`` and ``limit``: only the entries
    after that log position, at most ``limit`` of them (a page; each still numbered from
    the replay's first, and the fold stops at the page's end).

    ``messages`` are the streams of the messages that name the run. Their facts stored
    before the run's trigger are not entries of their own: the views only show a run from
    its trigger on, so they are folded into the trigger's state, as the views fold them then.
    Without ``messages`` (None, the run's events alone) each record has only
    :data:`RECORD_FIELDS`: engagement is not known without the messages' facts.
    """
    replay = RunReplay(run_id)
    history: list[HistoryEntry] = []
    n = 0
    for e in merge_in_log_order(events, messages or ()):
        if limit is not None and len(history) >= limit:
            break
        replay.apply(e.position, e.body)
        if replay.record.workflow is None:
            continue  # before the run's trigger: carried into its state
        n += 1
        if e.position <= after:
            continue  # before the page: folded, its record not made
        record = replay.to_record() if messages is not None else replay.record.to_dict()
        history.append(HistoryEntry(n, e, record))
    return history


def history_length(events: Iterable[StoredEvent], messages: Iterable[Iterable[StoredEvent]] = ()) -> int:
    """The entries of :func:`run_history`'s whole replay of these events and facts: the
    run's from its trigger on, and its messages' facts stored after the trigger."""
    run = list(events)
    trigger = next((e.position for e in run if e.type == "run.triggered"), None)
    if trigger is None:
        return 0
    return sum(e.position >= trigger for e in run) + sum(e.position > trigger for facts in messages for e in facts)


def run_detail_at(
    run_id: str, events: Iterable[StoredEvent], messages: Iterable[Iterable[StoredEvent]] = (), n: int | None = None
) -> dict[str, Any]:
    """The run as ``runs show`` would give it right after the ``n``-th entry of its
    replay (see :func:`run_history`; None: after the last)."""
    replay = RunReplay(run_id)
    seen = 0
    for e in merge_in_log_order(events, messages):
        if n is not None and seen >= n:
            break
        replay.apply(e.position, e.body)
        if replay.record.workflow is not None:
            seen += 1
    return replay.to_detail()
