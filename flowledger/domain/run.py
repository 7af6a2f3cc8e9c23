"""The run aggregate: the state the rules need about one run, and the rules themselves.

A run moves pending → running ⇄ paused; a running run completes, and an unfinished one
(pending, running or paused) may fail or be cancelled; a failed run may go back to pending
by a retry. Only the little that the rules need is kept (status, retries, the cancellation
key, which step attempts are open), so checking an event for a run stored long ago costs
one row read, never a replay of its history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowledger.errors import FactRefused

NOT_TRIGGERED = "not triggered"
PENDING = "pending"
RUNNING = "running"
PAUSED = "paused"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"

STATUSES = (PENDING, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLED)
"""Every status a triggered run can have."""
UNFINISHED = frozenset({PENDING, RUNNING, PAUSED})
"""Statuses from which a run can still be cancelled or fail."""
FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})
"""Terminal statuses (a failed run can still be retried)."""

DEFAULT_MAX_RETRIES = 3
"""How many retries a run may have when its trigger does not say."""

_STEP_EVENTS = frozenset({"step.started", "step.succeeded", "step.failed"})

# The statuses each lifecycle event may come in, and what it moves the run to
# (None keeps the status).
_TRANSITIONS: dict[str, tuple[frozenset[str], str | None, str]] = {
    "run.started": (frozenset({PENDING}), RUNNING, "only a pending run can start"),
    "run.paused": (frozenset({RUNNING}), PAUSED, "only a running run can be paused"),
    "run.resumed": (frozenset({PAUSED}), RUNNING, "only a paused run can resume"),
    "run.completed": (frozenset({RUNNING}), COMPLETED, "only a running run can complete"),
    "run.failed": (UNFINISHED, FAILED, "only an unfinished run can fail"),
    "run.cancelled": (UNFINISHED, CANCELLED, "only an unfinished run can be cancelled"),
    "run.retrying": (
        frozenset({RUNNING, FAILED}),
        None,
        "only a running or failed run can be retried automatically",
    ),
    "run.retried": (frozenset({FAILED}), PENDING, "only a failed run can be retried"),
}


@dataclass(slots=True)
class Run:
    """What the rules know about one run."""

    id: str
    """The run's id."""
    status: str = NOT_TRIGGERED
    """Where the run is in its life."""
    retry_count: int = 0
    """Retries so far, automatic and manual."""
    max_retries: int = DEFAULT_MAX_RETRIES
    """Retries allowed."""
    cancellation_key: str | None = None
    """The key the run can be cancelled by."""
    attempts: dict[str, bool] = field(default_factory=dict)
    """Every step attempt seen ("step#attempt"), True once it has finished."""

    def check(self, event: dict[str, Any]) -> None:
        """Raise :class:`FactRefused` if the event may not happen to the run now."""
        kind = event["type"]
        if kind == "run.triggered":
            if self.status != NOT_TRIGGERED:
                self._refuse(event, "the run was already triggered")
            return
        if self.status == NOT_TRIGGERED:
            self._refuse(event, "the run was never triggered")
        if kind in _STEP_EVENTS:
            self._check_step(event)
            return
        allowed, _, reason = _TRANSITIONS[kind]
        if self.status not in allowed:
            self._refuse(event, reason)
        if kind == "run.cancelled":
            self._check_cancellation_key(event)
        if kind in ("run.retrying", "run.retried") and self.retry_count >= self.max_retries:
            self._refuse(
                event,
                f"retry_count {self.retry_count} has reached max_retries {self.max_retries}",
            )

    def apply(self, event: dict[str, Any]) -> None:
        """Change the state by an event that :meth:`check` allowed."""
        kind = event["type"]
        if kind == "run.triggered":
            self.status = PENDING
            self.max_retries = event.get("max_retries", DEFAULT_MAX_RETRIES)
            self.cancellation_key = (event.get("trigger") or {}).get("cancellation_key")
        elif kind in _STEP_EVENTS:
            self.attempts[_attempt_key(event)] = kind != "step.started"
        else:
            new_status = _TRANSITIONS[kind][1]
            if kind in ("run.retrying", "run.retried"):
                self.retry_count += 1
                if self.status == FAILED:
                    new_status = PENDING
            if new_status is not None:
                self.status = new_status

    def _check_step(self, event: dict[str, Any]) -> None:
        """Refuse a step event the run's status or the attempt's own history rules out."""
        seen = self.attempts.get(_attempt_key(event))
        if event["type"] == "step.started":
            if self.status not in (RUNNING, PAUSED):
                self._refuse(event, "a step attempt is started only while the run is running or paused")
            if seen is not None:
                self._refuse(event, f"{_where(event)} was already started; a new attempt needs a new number")
        # An attempt that started while the run ran may report after the run ended or was
        # retried (an integration answering after a cancel): that result happened, so it is
        # taken whatever the run's status now, once.
        elif seen is None:
            self._refuse(event, f"{_where(event)} was never started")
        elif seen:
            self._refuse(event, f"{_where(event)} has already finished")

    def _check_cancellation_key(self, event: dict[str, Any]) -> None:
        """Refuse a cancel by a key the run was not triggered with."""
        # A run is cancelled by a key only if it was triggered with that key: a history
        # saying otherwise would mislead whoever audits why the run stopped.
        key = event.get("cancellation_key")
        if self.cancellation_key is None and (key is not None or event.get("by") == "cancellation_key"):
            self._refuse(event, "the run was triggered without a cancellation_key, so no key can cancel it")
        if key is not None and key != self.cancellation_key:
            self._refuse(
                event,
                f"it names cancellation_key {key!r}, but the run was triggered with "
                f"cancellation_key {self.cancellation_key!r}",
            )

    def _refuse(self, event: dict[str, Any], reason: str) -> None:
        """Raise :class:`FactRefused` for the event, in the run's current status."""
        raise FactRefused(self.id, event["id"], event["type"], self.status, reason)

    def to_state(self) -> dict[str, Any]:
        """The compact form kept beside the stream's head."""
        state: dict[str, Any] = {"s": self.status, "r": self.retry_count, "m": self.max_retries}
        if self.cancellation_key is not None:
            state["k"] = self.cancellation_key
        if self.attempts:
            state["a"] = self.attempts
        return state

    @classmethod
    def from_state(cls, run_id: str, state: dict[str, Any] | None) -> Run:
        """Rebuild from :meth:`to_state`'s form (None: a run never triggered)."""
        if state is None:
            return cls(run_id)
        return cls(
            run_id,
            status=state["s"],
            retry_count=state["r"],
            max_retries=state["m"],
            cancellation_key=state.get("k"),
            attempts=dict(state.get("a", {})),
        )


def _attempt_key(event: dict[str, Any]) -> str:
    """The attempt's key in :attr:`Run.attempts`: "step#attempt"."""
    return f"{event['step']}#{event['attempt']}"


def _where(event: dict[str, Any]) -> str:
    """The attempt as an error names it."""
    return f"attempt {event['attempt']} of step {event['step']!r}"
