"""The library API: what each CLI command (and later the HTTP API) calls.

One function per capability, each taking an open :class:`EventLog`; all the input
handling (validation, redaction, canonical encoding) happens here, before the log sees an event.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from typing import IO, Any

from flowledger.domain import commands
from flowledger.domain.redaction import Redactor
from flowledger.domain.run import FAILED, NOT_TRIGGERED, UNFINISHED
from flowledger.domain.vocabulary import EventInvalid, stream_of, validate_event
from flowledger.errors import CommandRefused, InvalidInput, NotFound, Problem
from flowledger.ingest import IngestOptions, candidates, read_items
from flowledger.ingest_process import forked_candidates, worth_forking
from flowledger import queries
from flowledger.projections.projector import Projector, all_views
from flowledger.providers import ADAPTERS
from flowledger.providers.ingest import export_items, fact_event
from flowledger.projections.run_record import HistoryEntry, run_history
from flowledger.store.log import AppendResult, Candidate, EventLog, utc_now


def append_input(
    log: EventLog,
    stream: IO[bytes],
    options: IngestOptions | None = None,
    *,
    keep_going: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[AppendResult, list[Problem]]:
    """Append a JSON Lines (or JSON array) input, all or nothing.

    Raises :class:`InvalidInput` with every problem if any event is invalid or refused,
    and then stores nothing. With ``keep_going`` the good events are stored and the bad
    ones returned: the input's invalid items first, then the refused ones.
    """
    options = options or IngestOptions()
    rejected: list[Problem] = []
    if worth_forking(stream):
        # A second process reads and validates while this one appends (two cores).
        chunks = forked_candidates(stream, options, rejected, progress)
    else:
        chunks = candidates(read_items(stream, options.max_event_bytes, progress), options, rejected)
    with closing(chunks):
        result = log.append(chunks, keep_going=keep_going, rejected=rejected)
    return result, rejected


def append_batch(
    log: EventLog, events: list[Any], redactor: Redactor | None = None, max_event_bytes: int | None = None
) -> AppendResult:
    """Append a decoded batch (one JSON array, as the HTTP API takes it), all or nothing.

    Raises :class:`InvalidInput` if any event is invalid, larger than ``max_event_bytes``
    as JSON, or refused; each problem has the event's index in the batch.
    """
    redactor = redactor or Redactor()
    rejected: list[Problem] = []
    chunk = []
    for i, obj in enumerate(events):
        try:
            body = validate_event(obj)
        except EventInvalid as e:
            event_id = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
            rejected.extend(Problem(None, m, event_id, i) for m in e.messages)
            continue
        body = redactor.redact_event(body)
        candidate = Candidate.make(body, stream_of(body), index=i)
        # Measured as stored (compact JSON): the body's spacing is the client's, not the event's.
        if max_event_bytes is not None and (size := len(candidate.encoded)) > max_event_bytes:
            message = f"the event is {size:,} bytes; the limit is {max_event_bytes:,} bytes (FLOWLEDGER_MAX_EVENT_BYTES)"
            rejected.append(Problem(None, message, candidate.event_id, i))
            continue
        chunk.append(candidate)
    return log.append([chunk] if chunk else [], rejected=rejected)


def append_provider_facts(
    log: EventLog, facts: list[Any], redactor: Redactor | None = None
) -> tuple[AppendResult, int]:
    """Append provider facts (validated and redacted like any event), matching each to its
    message; returns the result and how many facts were no fact about delivery (skipped)."""
    redactor = redactor or Redactor()
    items = []
    skipped = 0
    problems: list[Problem] = []
    for i, fact in enumerate(facts):
        made = fact_event(fact)
        if made is None:
            skipped += 1
            continue
        event, match_by = made
        try:
            body = validate_event(event)
        except EventInvalid as e:
            problems.extend(Problem(None, f"{fact.provider} event {fact.dedupe_id}: {m}", event["id"], i) for m in e.messages)
            continue
        items.append((redactor.redact_event(body), match_by))
    if problems:
        raise InvalidInput(problems)
    return log.append_provider_events(items, utc_now()), skipped


def append_export(log: EventLog, provider: str, data: bytes, redactor: Redactor | None = None) -> tuple[AppendResult, int]:
    """Append a file exported from a provider (no signature: the file is the user's own)."""
    adapter = ADAPTERS[provider]
    try:
        facts = adapter.translate_all(export_items(provider, data))
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidInput([Problem(None, f"not a {provider} export: {e}")]) from None
    return append_provider_facts(log, facts, redactor)


def unmatched(log: EventLog, limit: int = 1000) -> list[dict[str, Any]]:
    """The provider facts waiting for their message."""
    return log.unmatched(limit)


def replay(log: EventLog, run_id: str) -> list[HistoryEntry]:
    """A run's events, each with the run's record right after it (the auditor's view)."""
    return run_history(run_id, log.run_events(run_id))


def catch_up(log: EventLog, view_names: list[str] | None = None, progress: Callable[[int], None] | None = None) -> int:
    """Bring views (all by default) up to the end of the log; returns events read."""
    projector = Projector(log.backend)
    views = [projector.view(n) for n in view_names] if view_names else None
    return projector.catch_up(views, progress=progress)


def rebuild(
    log: EventLog,
    view_names: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    into: EventLog | None = None,
) -> int:
    """Empty views (all by default) and fold them again from position 0; returns events read.

    With ``into``, the views are made in that store from this one's log (which stays put).
    """
    projector = Projector(into.backend, source=log.backend) if into else Projector(log.backend)
    views = [projector.view(n) for n in view_names] if view_names else None
    return projector.rebuild(views, progress=progress)


def follow(
    log: EventLog,
    *,
    interval: float,
    should_stop: Callable[[], bool],
    on_applied: Callable[[int], None] | None = None,
) -> None:
    """Keep every view caught up with the log until ``should_stop()``."""
    Projector(log.backend).follow(interval=interval, should_stop=should_stop, on_applied=on_applied)


def view_names() -> list[str]:
    """The names of the views, in the order they are folded."""
    return [v.name for v in all_views()]


def head(log: EventLog) -> int:
    """The position of the last event in the log."""
    return Projector(log.backend).head()


def query(log: EventLog, fn: Callable[..., Any], *args: Any, fresh: bool = True, **kwargs: Any) -> Any:
    """Run a query of :mod:`flowledger.queries` on the views, caught up first unless not ``fresh``."""
    projector = Projector(log.backend)
    if fresh:
        projector.catch_up()
    else:
        projector.ensure_tables()
    with log.backend.transaction(write=False) as c:
        return fn(c, *args, **kwargs)


def show_run(log: EventLog, run_id: str, *, fresh: bool = True) -> dict[str, Any]:
    """A run's current record, with its step trace and deliveries."""
    return query(log, queries.show_run, run_id, fresh=fresh)


def retry_run(
    log: EventLog, run_id: str, *, actor: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """Retry a failed run: it goes back to pending with retry_count + 1."""
    state = log.run_state(run_id)
    if state.status == NOT_TRIGGERED:
        raise NotFound(f"no run {run_id!r} in the store")
    if state.status != FAILED:
        raise CommandRefused(
            f"cannot retry run {run_id!r}: it is {state.status}; only a failed run can be retried"
        )
    if state.retry_count >= state.max_retries:
        # Said as the other refusals are: the rule's own words would name an event id made here.
        raise CommandRefused(
            f"cannot retry run {run_id!r}: retry_count {state.retry_count} has reached max_retries {state.max_retries}"
        )
    event = commands.retry_requested(run_id, occurred_at=utc_now(), actor=actor, reason=reason)
    _record(log, event)
    return show_run(log, run_id)


def cancel_run(
    log: EventLog, run_id: str, *, actor: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """Cancel an unfinished run."""
    state = log.run_state(run_id)
    if state.status == NOT_TRIGGERED:
        raise NotFound(f"no run {run_id!r} in the store")
    if state.status not in UNFINISHED:
        raise CommandRefused(
            f"cannot cancel run {run_id!r}: it is already {state.status}; "
            "only a pending, running or paused run can be cancelled"
        )
    event = commands.cancel_requested(run_id, occurred_at=utc_now(), actor=actor, reason=reason)
    _record(log, event)
    return show_run(log, run_id)


def cancel_by_key(
    log: EventLog, key: str, *, actor: str | None = None, reason: str | None = None
) -> list[str]:
    """Cancel every unfinished run triggered with a cancellation key; returns their ids."""
    now = utc_now()

    def make(run_id: str) -> Candidate:
        event = commands.cancel_requested(
            run_id, occurred_at=now, actor=actor, reason=reason, cancellation_key=key
        )
        return _validated(event)

    return log.append_to_unfinished_runs_with_key(key, make)


def _validated(event: dict[str, Any]) -> Candidate:
    try:
        body = validate_event(event)
    except EventInvalid as e:
        raise CommandRefused("; ".join(e.messages)) from None
    return Candidate.make(body, stream_of(body))


def _record(log: EventLog, event: dict[str, Any]) -> None:
    cand = _validated(event)
    try:
        log.append([[cand]])
    except InvalidInput as e:
        # The run changed between our look and the write lock: the rules had the last word.
        raise CommandRefused(e.problems[0].message) from None
