"""What the tests of views across flowledger versions share: the runs view as a newer and an
older flowledger have it, a few runs to fold, and a store's views as rows to compare."""

from __future__ import annotations

from typing import Any

from flowledger import ledger
from flowledger.projections.projector import all_views
from flowledger.projections.runs_view import RunsView
from flowledger.store import open_log
from tests.conftest import ev, step, triggered
from tests.histories import jsonl


class NewerRunsView(RunsView):
    """The runs view as a newer flowledger has it: another version of its tables."""

    version = RunsView.version + 1


class OlderRunsView(RunsView):
    """The runs view as an older flowledger has it, one this version cannot upgrade in
    place (it makes its tables again and folds them from the log)."""

    version = min(RunsView.upgrades, default=RunsView.version) - 1
    upgrades: dict[int, tuple[str, ...]] = {}


def started_runs(first: int, n: int) -> Any:
    """Runs r<first> … triggered and started, each with a step started, as JSON lines."""
    events = []
    for i in range(first, first + n):
        events += [triggered(f"r{i}"), ev("run.started", run_id=f"r{i}"), step("step.started", f"r{i}")]
    return jsonl(events)


def views_state(backend: Any, *, versions: bool = False) -> dict[str, Any]:
    """Every view table's rows (sorted) and every view's position, on either backend; with
    ``versions``, every stored view version too."""
    out: dict[str, Any] = {}
    with backend.transaction(write=False) as c:
        for view in all_views():
            for table in view.tables:
                c.execute(f'SELECT * FROM "{table}"')
                out[table] = sorted(repr(tuple(row)) for row in c.fetchall())
            out["position:" + view.name] = backend.get_position(c, view.name)
        if versions:
            c.execute("SELECT key, value FROM flowledger_meta WHERE key LIKE 'view:%' ORDER BY key")
            out["versions"] = [tuple(row) for row in c.fetchall()]
    return out


def stored_version(backend: Any, name: str) -> str | None:
    """The view version a store's meta table records for a view."""
    with backend.transaction(write=False) as c:
        c.execute("SELECT value FROM flowledger_meta WHERE key = ?", ("view:" + name,))
        row = c.fetchone()
    return row[0] if row else None


def append_to(path: str, events: Any) -> None:
    """Append events (dicts, or JSON lines already made) to the store at ``path``."""
    log = open_log(path)
    try:
        ledger.append_input(log, events if hasattr(events, "read") else jsonl(events))
    finally:
        log.close()


def folded_runs(path: str, n: int) -> None:
    """``n`` started runs appended to the store at ``path`` and its views caught up."""
    log = open_log(path)
    try:
        ledger.append_input(log, started_runs(0, n))
        ledger.catch_up(log)
    finally:
        log.close()


def run_status(path: str, run_id: str) -> str:
    """A run's status as the rules know it (from the log's side, not the views)."""
    log = open_log(path)
    try:
        return log.run_state(run_id).status
    finally:
        log.close()


def stored_version_at(path: str, name: str) -> str | None:
    """:func:`stored_version` of the store at ``path``."""
    log = open_log(path)
    try:
        return stored_version(log.backend, name)
    finally:
        log.close()
