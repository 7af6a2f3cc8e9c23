"""The run record: one run's events folded into what an operator asks of it.

Used by ``runs show`` and by the auditor's ``replay``, which shows the record after each
event. The status comes from the domain's own :class:`~flowledger.domain.run.Run`, so the
record can never disagree with the rules that guarded the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from flowledger.domain.run import FINISHED, Run
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
    return ""


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
    """The event's number within the run, from 1."""
    event: StoredEvent
    """The event."""
    record: dict[str, Any]
    """The run's record after the event."""


def run_history(run_id: str, events: list[StoredEvent]) -> list[HistoryEntry]:
    """A run's events, each with the record as it stood right after it."""
    record = RunRecord.new(run_id)
    history = []
    for n, e in enumerate(events, 1):
        record.apply(e.body)
        history.append(HistoryEntry(n, e, record.to_dict()))
    return history
