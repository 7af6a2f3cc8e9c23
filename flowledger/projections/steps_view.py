"""The steps view: one row per step attempt, and execution stats per node and per edge.

An attempt is running from ``step.started`` until it succeeds (completed) or fails
(failed); while its run is paused it is idle; if its run ends first it is stopped. An
edge is two consecutive distinct steps of one run; it counts the attempts it leads to.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from flowledger.domain.vocabulary import RUN_EVENT_TYPES
from flowledger.projections.base import Counters, Notification, View, fetch_rows, upsert
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


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class StepsView(View):
    """Step attempts, the messages each step queued, and node and edge counts."""

    name = "steps"
    topics = RUN_EVENT_TYPES | {"message.queued"}
    tables = ("steps", "step_runs", "step_messages", "step_counts", "edge_counts", "workflow_steps")
    ddl = (
        "CREATE TABLE IF NOT EXISTS steps ("
        "run_id TEXT NOT NULL, step TEXT NOT NULL, attempt INTEGER NOT NULL, seq INTEGER NOT NULL, "
        "workflow TEXT, step_type TEXT, prev_step TEXT, status TEXT, started_at TEXT, "
        "finished_at TEXT, duration_seconds REAL, error TEXT, request TEXT, response TEXT, output TEXT, "
        "PRIMARY KEY (run_id, step, attempt))",
        "CREATE INDEX IF NOT EXISTS steps_open_by_run ON steps (run_id) WHERE status IN ('running', 'idle')",
        "CREATE TABLE IF NOT EXISTS step_runs ("
        "run_id TEXT PRIMARY KEY, workflow TEXT, status TEXT, last_step TEXT, edge_from TEXT) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS step_messages ("
        "message_id TEXT PRIMARY KEY, run_id TEXT, step TEXT, queued_at TEXT) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS step_messages_by_run ON step_messages (run_id, step)",
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

    def apply(self, c: sqlite3.Cursor, events: Sequence[Notification]) -> None:
        run_ids = {e.body["run_id"] for e in events if e.type in RUN_EVENT_TYPES}
        runs: dict[str, dict[str, Any]] = fetch_rows(c, "step_runs", "run_id", run_ids)  # type: ignore[assignment]
        attempts: dict[tuple[str, str, int], dict[str, Any]] = {}
        # Attempts still open may be finished, paused or stopped by this page's events.
        for chunk, marks in in_chunks(run_ids):
            c.execute(f"SELECT * FROM steps WHERE status IN ('running', 'idle') AND run_id IN ({marks})", chunk)
            names = [d[0] for d in c.description]
            for row in c.fetchall():
                r = dict(zip(names, row))
                attempts[(r["run_id"], r["step"], r["attempt"])] = r
        # An attempt the run's end marked stopped may still finish after a retry.
        finishing = [
            (e.body["run_id"], e.body["step"], e.body["attempt"])
            for e in events
            if e.type in ("step.succeeded", "step.failed")
        ]
        for key in finishing:
            if key not in attempts:
                c.execute("SELECT * FROM steps WHERE run_id = ? AND step = ? AND attempt = ?", key)
                row = c.fetchone()
                if row is not None:
                    attempts[key] = dict(zip([d[0] for d in c.description], row))
        before = {k: v["status"] for k, v in attempts.items()}
        open_by_run: dict[str, list[tuple[str, str, int]]] = {}
        for key in attempts:
            open_by_run.setdefault(key[0], []).append(key)
        messages = []
        new_steps: dict[tuple[str, str], tuple[str | None, str | None]] = {}

        for e in events:
            body = e.body
            if e.type == "message.queued":
                if body.get("run_id") and body.get("step"):
                    messages.append((body["message_id"], body["run_id"], body["step"], body["occurred_at"]))
                continue
            rid = body["run_id"]
            run = runs.get(rid)
            if e.type == "run.triggered":
                run = runs[rid] = {"run_id": rid, "workflow": body["workflow"], "status": "pending", "last_step": None, "edge_from": None}
                continue
            if run is None:
                continue  # the log's rules make this impossible; a view never invents a run
            kind = e.type
            if kind.startswith("step."):
                key = (rid, body["step"], body["attempt"])
                if kind == "step.started":
                    if body["step"] != run["last_step"]:
                        run["edge_from"], run["last_step"] = run["last_step"], body["step"]
                    attempts[key] = {
                        "run_id": rid,
                        "step": body["step"],
                        "attempt": body["attempt"],
                        "seq": e.position,
                        "workflow": run["workflow"],
                        "step_type": body["step_type"],
                        "prev_step": run["edge_from"],
                        "status": "idle" if run["status"] == "paused" else "running",
                        "started_at": body["occurred_at"],
                        "finished_at": None,
                        "duration_seconds": None,
                        "error": None,
                        "request": _json(body.get("request")),
                        "response": _json(body.get("response")),
                        "output": None,
                    }
                    open_by_run.setdefault(rid, []).append(key)
                    new_steps[(run["workflow"], body["step"])] = (
                        body["step_type"],
                        CHANNEL_OF_STEP_TYPE.get(body["step_type"]),
                    )
                else:
                    a = attempts[key]
                    a["status"] = "completed" if kind == "step.succeeded" else "failed"
                    a["finished_at"] = body["occurred_at"]
                    a["duration_seconds"] = seconds_between(a["started_at"], a["finished_at"])
                    if kind == "step.failed":
                        a["error"] = error_text(body["error"])
                    for field in ("request", "response", "output"):
                        if body.get(field) is not None:
                            a[field] = _json(body[field])
                continue
            # Lifecycle events change open attempts of the run.
            if kind == "run.paused":
                run["status"] = "paused"
                self._move_open(attempts, open_by_run.get(rid, ()), "running", "idle")
            elif kind in ("run.resumed", "run.started"):
                run["status"] = "running"
                self._move_open(attempts, open_by_run.get(rid, ()), "idle", "running")
            elif kind in ("run.completed", "run.failed", "run.cancelled"):
                run["status"] = "finished"
                self._move_open(attempts, open_by_run.get(rid, ()), None, "stopped", at=body["occurred_at"])
            elif kind in ("run.retried", "run.retrying") and run["status"] == "finished":
                run["status"] = "pending"

        nodes = Counters("step_counts", ("workflow", "step", "status"))
        edges = Counters("edge_counts", ("workflow", "from_step", "to_step", "status"))
        for key, a in attempts.items():
            old = before.get(key)
            if old == a["status"]:
                continue
            for status, delta in ((old, -1), (a["status"], 1)):
                if status is None:
                    continue
                nodes.add((a["workflow"], a["step"], status), delta)
                if a["prev_step"] is not None:
                    edges.add((a["workflow"], a["prev_step"], a["step"], status), delta)
        upsert(c, "steps", [{k: a[k] for k in STEP_COLUMNS} for a in attempts.values()], ["run_id", "step", "attempt"])
        upsert(c, "step_runs", list(runs.values()), ["run_id"])
        c.executemany("INSERT OR IGNORE INTO step_messages VALUES (?, ?, ?, ?)", messages)
        c.executemany(
            "INSERT OR IGNORE INTO workflow_steps VALUES (?, ?, ?, ?)",
            [(w, s, t, ch) for (w, s), (t, ch) in new_steps.items()],
        )
        nodes.flush(c)
        edges.flush(c)

    @staticmethod
    def _move_open(
        attempts: dict[tuple[str, str, int], dict[str, Any]],
        keys: Sequence[tuple[str, str, int]],
        from_status: str | None,
        to_status: str,
        at: str | None = None,
    ) -> None:
        for key in keys:
            a = attempts[key]
            if a["status"] in _OPEN and (from_status is None or a["status"] == from_status):
                a["status"] = to_status
                if at is not None:
                    a["finished_at"] = at
                    a["duration_seconds"] = seconds_between(a["started_at"], at)
