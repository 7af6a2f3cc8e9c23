"""A read-only scan of a store for secrets its events hold: text that today's redaction rules
would store differently.

The log cannot be edited, and every way in redacts before it appends (see
:mod:`flowledger.domain.redaction`). An event appended by an older release, whose rules
missed a shape of secret found since (``password:hunter2``, a token inside a click
tracker's URL, …), holds that secret for ever. The scan reads every stored event, and every
provider fact held for its message (appended as held once its message is known), redacts a
copy of each as an append would now, and reports those that would change: where, and what
today's rules would store there. Never the secret itself: what it prints is already masked.
An operator rotates the credentials it names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from flowledger.domain.redaction import Redactor, changed_places
from flowledger.store.log import EventLog

PAGE_SIZE = 5_000
"""Events read a transaction: pages bound the scan's memory, whatever the log's length."""

@dataclass(frozen=True)
class FoundField:
    """A place in an event holding what today's rules would redact."""

    path: str
    """Where in the event: a field and the keys and list indexes under it (``data.headers.token``,
    ``request.items[2]``, ``data["x.y"]``)."""
    redacted: Any
    """What today's rules store there (the secret masked): a string, or what replaced the value."""
    at: int = 0
    """Where, in ``redacted`` as text, it first differs from what is stored (a table shows around it)."""

    def excerpt(self, width: int = 72) -> str:
        """The redacted value on one line, cut to about ``width`` characters around :attr:`at`."""
        text = self.redacted if isinstance(self.redacted, str) else orjson.dumps(self.redacted).decode()
        start = max(0, self.at - width // 3)
        piece = text[start : start + width].replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
        return ("…" if start else "") + piece + ("…" if start + width < len(text) else "")


@dataclass(frozen=True)
class Finding:
    """A stored event, or a held provider fact, that today's rules would store differently."""

    position: int | None
    """Its position in the log; None for a provider fact held for its message."""
    event_id: str
    """The event's id."""
    type: str
    """The event's type."""
    run_id: str | None
    """The run it belongs to, where it names one."""
    message_id: str | None
    """The message it belongs to, where it names one."""
    fields: tuple[FoundField, ...]
    """Each place that would change, in the event's order."""

    def to_dict(self) -> dict[str, Any]:
        """The finding as the CLI's JSON prints it."""
        return {
            "position": self.position,
            "held": self.position is None,
            "event_id": self.event_id,
            "type": self.type,
            "run_id": self.run_id,
            "message_id": self.message_id,
            "fields": [{"path": f.path, "redacted": f.redacted} for f in self.fields],
        }


@dataclass
class SecretScan:
    """What a scan read and found."""

    events_read: int = 0
    """Stored events read (every one, to the log's last position when the scan began)."""
    held_read: int = 0
    """Provider facts held for their message read."""
    found: int = 0
    """Events and held facts that today's rules would store differently (all of them)."""
    findings: list[Finding] = field(default_factory=list)
    """The first of them, in log order then the held facts, up to the scan's limit."""

    def to_dict(self) -> dict[str, Any]:
        """The scan as the CLI's JSON prints it."""
        return {
            "events_read": self.events_read,
            "held_read": self.held_read,
            "found": self.found,
            "listed": len(self.findings),
            "findings": [f.to_dict() for f in self.findings],
        }


def scan_secrets(
    log: EventLog,
    redactor: Redactor,
    *,
    limit: int = 1000,
    page_size: int = PAGE_SIZE,
    progress: Callable[[int], None] | None = None,
) -> SecretScan:
    """Read the whole log, and the held provider facts, and find what ``redactor`` (today's
    rules, with any keys added) would store differently; lists the first ``limit`` found and
    counts them all. Reads only: each page in a read transaction of its own. ``progress``
    hears how many events each page read."""
    backend = log.backend
    scan = SecretScan()
    with backend.transaction(write=False) as c:
        # Events appended meanwhile were redacted by today's rules: the scan ends here.
        head = backend.max_position(c)
    after = 0
    while after < head:
        with backend.transaction(write=False) as c:
            rows, after, n = backend.select_page(c, after, page_size)
        if n == 0:
            break  # a log shorter than its last position said: nothing more to read
        before = scan.events_read
        for position, state in rows:
            if position > head:
                break
            _look(scan, redactor, limit, position, orjson.loads(state))
            scan.events_read += 1
        if progress:
            progress(scan.events_read - before)
    held_after = ""
    while True:
        with backend.transaction(write=False) as c:
            held = backend.held_page(c, held_after, page_size)
        if not held:
            break
        for _, state in held:
            _look(scan, redactor, limit, None, orjson.loads(state))
        scan.held_read += len(held)
        held_after = held[-1][0]
    return scan


def _look(scan: SecretScan, redactor: Redactor, limit: int, position: int | None, body: dict[str, Any]) -> None:
    """Redact a copy of ``body`` as an append would now; a finding where it changes."""
    clean = redactor.redact_event(body)
    if clean is body:
        return  # the common case: redaction hands back what it was given when it finds nothing
    places = tuple(FoundField(path, new, _first_difference(old, new)) for path, old, new in changed_places(body, clean))
    if not places:
        return
    scan.found += 1
    if len(scan.findings) < limit:
        scan.findings.append(
            Finding(position, str(body.get("id")), str(body.get("type")), body.get("run_id"), body.get("message_id"), places)
        )


def _first_difference(before: Any, after: Any) -> int:
    """Where two strings first differ (0 for anything else)."""
    if not (isinstance(before, str) and isinstance(after, str)):
        return 0
    return len(os.path.commonprefix([before, after]))
