"""Operator commands, turned into the events that record them.

A command is checked against the run's current state by the same rules as any other
event when its event is appended (under the store's write lock, so two concurrent
retries cannot both pass); these functions only say what the event is.
"""

from __future__ import annotations

import uuid
from typing import Any


def new_event_id(kind: str) -> str:
    """A fresh id for an event that a command records."""
    return f"{kind}-{uuid.uuid4().hex}"


def retry_requested(
    run_id: str, *, occurred_at: str, actor: str | None, reason: str | None
) -> dict[str, Any]:
    """The run.retried event of a manual retry (seed docs: POST /executions/{id}/retry)."""
    event: dict[str, Any] = {
        "id": new_event_id("retry"),
        "type": "run.retried",
        "occurred_at": occurred_at,
        "run_id": run_id,
    }
    if actor:
        event["actor"] = actor
    if reason:
        event["reason"] = reason
    return event


def cancel_requested(
    run_id: str,
    *,
    occurred_at: str,
    actor: str | None,
    reason: str | None,
    cancellation_key: str | None = None,
) -> dict[str, Any]:
    """The run.cancelled event of an operator's cancel, by run id or by cancellation key."""
    event: dict[str, Any] = {
        "id": new_event_id("cancel"),
        "type": "run.cancelled",
        "occurred_at": occurred_at,
        "run_id": run_id,
        "by": "cancellation_key" if cancellation_key else "operator",
    }
    if cancellation_key:
        event["cancellation_key"] = cancellation_key
    if actor:
        event["actor"] = actor
    if reason:
        event["reason"] = reason
    return event
