"""The steps view: one row per step attempt, and execution stats per node and per edge.

An attempt is running from ``step.started`` until it succeeds (completed) or fails
(failed); while its run is paused it is idle; if its run ends first it is stopped. An
edge is two consecutive distinct steps of one run; it counts the attempts it leads to.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson

from flowledger.domain.event_types import RUN_EVENT_TYPES
from flowledger.projections.base import Counters, Event, LogReader, View, Writes, upsert_sql
from flowledger.projections.memory import Memory, touch
from flowledger.projections.run_record import error_text, seconds_between
from flowledger.store.backend import in_chunks

STEP_STATES = ("completed", "failed", "idle", "running", "stopped")
"""The states an attempt can be in (the seed docs' Executions API)."""

CHANNEL_OF_STEP_TYPE = {
    "send_email": "email",
    "send_sms": "sms",
    "send_whatsapp": "whatsapp",
    "send_push": "push",
    "send_in_app": "in_app",
}
"""Which channel a send step's type goes out on."""

STEP_COLUMNS = (
    "run_id",
    "step",
    "attempt",
    "seq",
    "workflow",
    "step_type",
    "prev_step",
    "status",
    "started_at",
    "finished_at",
    "duration_seconds",
    "error",
    "request",
    "response",
    "output",
)
"""The columns of the steps table."""

_OPEN = ("running", "idle")
_BY_ATTEMPT = itemgetter(0, 1, 2)  # steps rows: (run_id, step, attempt) come first
_BY_FIRST = itemgetter(0)  # step_runs rows: the key comes first


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class StepsView(View):
    """Step attempts and node and edge counts (the messages a step queued are the
    deliveries view's: each names its run and step)."""

    name = "steps"
    # 2: no step_messages (a run's messages by step come from deliveries); 3: a node's type
    # is its latest start's, not the first page's
    version = 3
    topics = RUN_EVENT_TYPES
    tables = ("steps", "step_runs", "step_counts", "edge_counts", "workflow_steps")
    retired_tables = ("step_messages",)
    ddl = (
        "CREATE TABLE IF NOT EXISTS steps ("
        "run_id TEXT NOT NULL, step TEXT NOT NULL, attempt INTEGER NOT NULL, seq INTEGER NOT NULL, "
        "workflow TEXT, step_type TEXT, prev_step TEXT, status TEXT, started_at TEXT, "
        "finished_at TEXT, duration_seconds REAL, error TEXT, request TEXT, response TEXT, output TEXT, "
        "PRIMARY KEY (run_id, step, attempt))",
        "CREATE INDEX IF NOT EXISTS steps_open_by_run ON steps (run_id) WHERE status IN ('running', 'idle')",
        "CREATE TABLE IF NOT EXISTS step_runs ("
        "run_id TEXT PRIMARY KEY, workflow TEXT, status TEXT, last_step TEXT, edge_from TEXT) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS step_counts ("
        "workflow TEXT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, "
        "PRIMARY KEY (workflow, step, status)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS edge_counts ("
        "workflow TEXT NOT NULL, from_step TEXT NOT NULL, to_step TEXT NOT NULL, status TEXT NOT NULL, "
        "n INTEGER NOT NULL, PRIMARY KEY (workflow, from_step, to_step, status)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS workflow_steps ("
        "workflow TEXT NOT NULL, step TEXT NOT NULL, step_type TEXT, channel TEXT, "
        "PRIMARY KEY (workflow, step)) WITHOUT ROWID",
    )

    def fold(self, c: sqlite3.Cursor, events: Sequence[Event], memory: Memory, log: LogReader) -> Writes:
        """Fold run events into attempts, step runs and counts."""
        # run id -> _Run; an entry holds every attempt of its run still open, and any
        # other it has read or written (a stopped attempt may still finish after a retry).
        runs: dict[str, _Run] = memory.table("runs")
        # A memory that knows every row reads only keys it forgot, one by one as they come.
        complete = memory.complete
        if not complete:
            _recall(c, runs, {b["run_id"] for _, _, b in events})
        touched: dict[str, _Run] = {}
        changed: dict[tuple[str, str, int], tuple[list[Any], tuple[Any, ...] | None]] = {}
        new_steps: dict[tuple[str, str], tuple[str | None, str | None]] = {}

        for position, kind, body in events:
            rid = body["run_id"]
            run = touched.get(rid)
            if run is None:
                run = memory.find(c, "runs", rid, _recall)
                if run is not None:
                    touched[rid] = run
                    run.before = run.row()
            if kind == "run.triggered":
                run = touched[rid] = _Run(rid, body["workflow"], run.attempts if run is not None else {})
                continue
            if run is None:
                continue  # the log's rules make this impossible; a view never invents a run
            if kind.startswith("step."):
                key = (rid, body["step"], body["attempt"])
                if kind == "step.started":
                    name, step_type = body["step"], body["step_type"]
                    if name != run.last_step:
                        run.edge_from, run.last_step = run.last_step, name
                    request, response = body.get("request"), body.get("response")
                    a = [
                        rid,
                        name,
                        body["attempt"],
                        position,
                        run.workflow,
                        step_type,
                        run.edge_from,
                        "idle" if run.status == "paused" else "running",
                        body["occurred_at"],
                        None,
                        None,
                        None,
                        None if request is None else _json(request),
                        None if response is None else _json(response),
                        None,
                    ]
                    attempts = run.attempts
                    if key in changed:
                        changed[key] = (a, changed[key][1])
                    else:
                        old = attempts.get(key)
                        changed[key] = (a, None if old is None else tuple(old))
                    attempts[key] = a
                    new_steps[(run.workflow, name)] = (step_type, CHANNEL_OF_STEP_TYPE.get(step_type))
                else:
                    a = run.attempts.get(key)
                    if a is None:
                        a = run.attempts[key] = _read_attempt(c, key)
                    if key not in changed:
                        changed[key] = (a, tuple(a))
                    a[_STATUS] = "completed" if kind == "step.succeeded" else "failed"
                    a[_FINISHED] = body["occurred_at"]
                    a[_DURATION] = seconds_between(a[_STARTED], a[_FINISHED])
                    if kind == "step.failed":
                        a[_ERROR] = error_text(body["error"])
                    for field, i in _PAYLOADS:
                        value = body.get(field)
                        if value is not None:
                            a[i] = _json(value)
                continue
            # Lifecycle events change open attempts of the run.
            if kind == "run.paused":
                run.status = "paused"
                _move_open(run, changed, "running", "idle")
            elif kind in ("run.resumed", "run.started"):
                run.status = "running"
                _move_open(run, changed, "idle", "running")
            elif kind in ("run.completed", "run.failed", "run.cancelled"):
                run.status = "finished"
                _move_open(run, changed, None, "stopped", at=body["occurred_at"])
            elif kind in ("run.retried", "run.retrying") and run.status == "finished":
                run.status = "pending"

        nodes = Counters("step_counts", ("workflow", "step", "status"))
        edges = Counters("edge_counts", ("workflow", "from_step", "to_step", "status"))
        out = []
        node_deltas, edge_deltas = nodes.deltas, edges.deltas  # summed here: a hot loop
        for a, before in changed.values():
            row = tuple(a)
            if row == before:
                continue
            out.append(row)
            old = before[_STATUS] if before is not None else None
            new = a[_STATUS]
            if old == new:
                continue
            workflow, step, prev = a[_WORKFLOW], a[_STEP], a[_PREV]
            if old is not None:
                node_deltas[(workflow, step, old)] -= 1
                if prev is not None:
                    edge_deltas[(workflow, prev, step, old)] -= 1
            node_deltas[(workflow, step, new)] += 1
            if prev is not None:
                edge_deltas[(workflow, prev, step, new)] += 1
        run_rows = []
        for rid, run in touched.items():
            row = run.row()
            if row != run.before:
                run_rows.append(row)
            run.before = None
            touch(runs, rid, run)
        writes = Writes()
        writes.add(_UPSERT_STEP, out, key=_BY_ATTEMPT)
        writes.add(_UPSERT_RUN, run_rows, key=_BY_FIRST)
        writes.add(_STEP_TYPED, [(w, s, t, ch) for (w, s), (t, ch) in new_steps.items()])
        writes.count(nodes)
        writes.count(edges)
        return writes


class _Run:
    """A step_runs row and the attempts of its run this view knows."""

    __slots__ = ("run_id", "workflow", "status", "last_step", "edge_from", "attempts", "before")

    def __init__(
        self,
        run_id: str,
        workflow: str | None,
        attempts: dict[tuple[str, str, int], list[Any]],
        status: str = "pending",
        last_step: str | None = None,
        edge_from: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.status = status
        self.last_step = last_step
        self.edge_from = edge_from
        self.attempts = attempts
        """(run, step, attempt) -> the steps row's columns, in :data:`STEP_COLUMNS` order."""
        self.before: tuple[Any, ...] | None = None
        """The step_runs row as it stood before this page (None: no row)."""

    def row(self) -> tuple[Any, ...]:
        """The step_runs row, in its columns' order."""
        return (self.run_id, self.workflow, self.status, self.last_step, self.edge_from)


def _move_open(
    run: _Run,
    changed: dict[tuple[str, str, int], tuple[list[Any], tuple[Any, ...] | None]],
    from_status: str | None,
    to_status: str,
    at: str | None = None,
) -> None:
    """Move the run's open attempts (of ``from_status``, or any) to ``to_status``."""
    for key, a in run.attempts.items():
        status = a[_STATUS]
        if status in _OPEN and (from_status is None or status == from_status):
            if key not in changed:
                changed[key] = (a, tuple(a))
            a[_STATUS] = to_status
            if at is not None:
                a[_FINISHED] = at
                a[_DURATION] = seconds_between(a[_STARTED], at)


def _recall(c: sqlite3.Cursor, runs: dict[str, _Run], ids: Iterable[str]) -> None:
    """Read runs not in memory, with their open attempts, into it (those that have a row)."""
    wanted = [rid for rid in ids if rid not in runs]
    for chunk, marks in in_chunks(wanted):
        c.execute(
            f"SELECT run_id, workflow, status, last_step, edge_from FROM step_runs WHERE run_id IN ({marks})",
            chunk,
        )
        for rid, workflow, status, last_step, edge_from in c.fetchall():
            runs[rid] = _Run(rid, workflow, {}, status, last_step, edge_from)
        c.execute(f"SELECT {_STEP_SELECT} FROM steps WHERE status IN ('running', 'idle') AND run_id IN ({marks})", chunk)
        for row in c.fetchall():
            run = runs.get(row[0])
            if run is not None:
                run.attempts[(row[0], row[1], row[2])] = list(row)


def _read_attempt(c: sqlite3.Cursor, key: tuple[str, str, int]) -> list[Any]:
    """An attempt no longer open, read back (an attempt the run's end marked stopped)."""
    c.execute(f"SELECT {_STEP_SELECT} FROM steps WHERE run_id = ? AND step = ? AND attempt = ?", key)
    return list(c.fetchone())


_STEP_SELECT = ", ".join(STEP_COLUMNS)
_UPSERT_STEP = upsert_sql("steps", STEP_COLUMNS, ["run_id", "step", "attempt"])
_UPSERT_RUN = upsert_sql("step_runs", ("run_id", "workflow", "status", "last_step", "edge_from"), ["run_id"])
# A step keeps its name when a workflow is edited to give it another type: the latest
# start, in log order, names the node's type, so where the pages of a catch-up fall never
# changes it (a page's own latest stands first, above).
_STEP_TYPED = (
    "INSERT INTO workflow_steps VALUES (?, ?, ?, ?) ON CONFLICT (workflow, step) DO UPDATE SET "
    "step_type = excluded.step_type, channel = excluded.channel "
    "WHERE workflow_steps.step_type <> excluded.step_type"
)
_STEP, _WORKFLOW, _PREV, _STATUS, _STARTED, _FINISHED, _DURATION, _ERROR = (
    STEP_COLUMNS.index(name)
    for name in ("step", "workflow", "prev_step", "status", "started_at", "finished_at", "duration_seconds", "error")
)
_PAYLOADS = tuple((name, STEP_COLUMNS.index(name)) for name in ("request", "response", "output"))
