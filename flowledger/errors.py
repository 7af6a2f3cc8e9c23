"""The errors flowledger raises on purpose.

Everything a user can cause ends as a :class:`FlowledgerError`; the CLI shows its
message and exits non-zero, never with a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class FlowledgerError(Exception):
    """Base class of every error flowledger raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one event of an input."""

    line: int | None
    """The 1-based line of the input the event starts on (None when there is no input file)."""
    message: str
    """What is wrong and what was expected, with the field path where there is one."""
    event_id: str | None = None
    """The event's id, when it could be read."""
    index: int | None = None
    """The event's place in a batch, from 0 (for inputs that are one JSON array)."""
    refused: bool = False
    """Whether the event is well formed but refused by what is stored (its id holds another
    body, or the run's rules do not allow it now): a conflict, not invalid input."""

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.message}"


class InvalidInput(FlowledgerError):
    """An input had problems, so nothing of it was stored."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        """Every problem found, in input order."""
        n = len(problems)
        super().__init__(
            f"{n} problem{'s' if n != 1 else ''} in the input; nothing of it was stored"
        )


class FactRefused(FlowledgerError):
    """A run event the domain rules refuse in the run's current state."""

    def __init__(
        self, run_id: str, event_id: str, event_type: str, status: str, reason: str
    ) -> None:
        self.run_id = run_id
        """The run the event is about."""
        self.event_id = event_id
        """The refused event's id."""
        self.event_type = event_type
        """The refused event's type."""
        self.status = status
        """The run's status when the event was refused."""
        self.reason = reason
        """Why the rules refuse it."""
        super().__init__(
            f"event {event_id!r} ({event_type}) refused for run {run_id!r}, "
            f"whose status is {status}: {reason}"
        )


class NotFound(FlowledgerError):
    """A run (or other thing) the store does not have."""


class CommandRefused(FlowledgerError):
    """An operator command (retry, cancel) that the run's state does not allow."""


class RecordedButNotShown(FlowledgerError):
    """An operator's command was recorded, but the run's record could not be read back after it."""

    def __init__(self, run_id: str, done: str, state: dict[str, Any] | None, reason: str) -> None:
        self.run_id = run_id
        """The run the command was about."""
        self.done = done
        """What was recorded, as a past participle ("retried", "cancelled")."""
        self.state = state
        """The run's status, retry_count and max_retries after the command, read from the log's
        rule state (None if that could not be read either)."""
        self.reason = reason
        """Why the record could not be read back (the reading's own error)."""
        super().__init__(
            f"run {run_id!r} was {done} (recorded in the log), but its record could not be read back "
            f"from the views: {reason}; `flowledger runs show {run_id}` shows it once the views can be read"
        )

    def summary(self) -> dict[str, Any]:
        """What is known of the run after the command: its id, its state and why its record is missing."""
        return {"id": self.run_id, **(self.state or {}), "recorded": True, "detail": str(self)}


class StoreError(FlowledgerError):
    """The store could not do what was asked; the driver's error, translated."""


class StoreBusy(StoreError):
    """Another process held the store's write lock for longer than the lock timeout."""


class StoreUnavailable(StoreError):
    """The database server could not be reached, ended the connection a transaction was on
    (a restart, an administrator, its idle timeouts) or cancelled its statement (its
    statement_timeout, an administrator): passing, and no fault of the request; try again."""


class ConnectionLost(StoreUnavailable):
    """The database server ended the connection a transaction was on: nothing of it was stored,
    unless it ended during the commit (then a resend finds its events stored, as duplicates)."""


class StoreReadOnly(StoreError):
    """The store can be read here but not written (a read-only file or role, a standby)."""


class StoreIsACopy(StoreError):
    """The store is an analyst's copy made by ``rebuild --into``: it takes no appends or commands."""


class StoreURLError(FlowledgerError):
    """A --store value that cannot be a store: an unknown scheme, a malformed URL, a bad option or schema name."""


class NotInstalled(FlowledgerError):
    """An optional part of flowledger (an extra, such as PostgreSQL support) is not installed."""


class ViewsRemadeByAnotherVersion(StoreError):
    """Another version of flowledger remade a view this process folds: it must stop, not fold by older rules."""


class ViewsMadeByANewerVersion(ViewsRemadeByAnotherVersion):
    """A newer flowledger made a view this older one would make again by its rules: it refuses and touches nothing."""


class ViewsNotFolded(StoreError):
    """A query without catch-up would read a view that holds nothing yet of a log that holds events."""


ENDS_A_FOLLOWER = (ViewsRemadeByAnotherVersion, StoreIsACopy)
"""The store errors a follower stops on (exit 1, /healthz says why), where it tries again after
any other: its views are another version's, or it is a copy with no log to fold them from."""
