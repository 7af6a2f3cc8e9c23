"""The runs view: one row per run, run counts by workflow and status, and per-workflow times.

Email engagement comes from the run's email messages, whose provider events may arrive
before the ``message.queued`` that says which run they belong to: the view keeps a small
row per message (``run_emails``) and recomputes a run's engagement from all of them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from flowledger.domain.vocabulary import MESSAGE_EVENT_TYPES, RUN_EVENT_TYPES
from flowledger.projections.base import Counters, Notification, View, fetch_rows, upsert
from flowledger.projections.run_record import RECORD_FIELDS, RunRecord
from flowledger.store.backend import in_chunks

RUN_COLUMNS = (
    "id",
    "seq",
    *(f for f in RECORD_FIELDS if f not in ("id", "updated_at")),
    "recipient_json",
    "email_opened",
    "email_opened_at",
    "email_clicked",
    "email_clicked_at",
    "updated_at",
    "rules",
)
"""The columns of the runs table."""

_ENGAGEMENT = ("email_opened", "email_opened_at", "email_clicked", "email_clicked_at")
_NO_ENGAGEMENT = dict.fromkeys(_ENGAGEMENT)
_DELIVERED = frozenset({"message.delivered", "message.read", "message.opened", "message.clicked"})


def _earliest(a: str | None, b: str) -> str:
    return b if a is None or b < a else a


class RunsView(View):
    """Run records, counts by status, and per-workflow first/last times."""

    name = "runs"
    topics = RUN_EVENT_TYPES | MESSAGE_EVENT_TYPES
    tables = ("runs", "run_emails", "run_counts", "workflow_summaries")
    ddl = (
        "CREATE TABLE IF NOT EXISTS runs ("
        "id TEXT PRIMARY KEY, seq INTEGER NOT NULL, workflow TEXT, recipient TEXT, "
        "recipient_json TEXT, tenant TEXT, trigger_source TEXT, workflow_run_id TEXT, "
        "status TEXT, created_at TEXT, scheduled_at TEXT, executed_at TEXT, completed_at TEXT, "
        "duration_seconds REAL, retry_count INTEGER, max_retries INTEGER, error_message TEXT, "
        "error_count INTEGER, email_opened INTEGER, email_opened_at TEXT, email_clicked INTEGER, "
        "email_clicked_at TEXT, updated_at TEXT, rules TEXT)",
        # Listing is newest first by seq (the trigger's log position): one index per filter.
        "CREATE UNIQUE INDEX IF NOT EXISTS runs_by_seq ON runs (seq)",
        "CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow, seq)",
        "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, seq)",
        "CREATE INDEX IF NOT EXISTS runs_by_workflow_status ON runs (workflow, status, seq)",
        "CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant, seq)",
        "CREATE INDEX IF NOT EXISTS runs_by_recipient ON runs (recipient, seq)",
        "CREATE INDEX IF NOT EXISTS runs_with_errors ON runs (seq) WHERE error_count > 0",
        "CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at)",
        "CREATE TABLE IF NOT EXISTS run_emails ("
        "message_id TEXT PRIMARY KEY, run_id TEXT, channel TEXT, "
        "delivered_at TEXT, opened_at TEXT, clicked_at TEXT)",
        "CREATE INDEX IF NOT EXISTS run_emails_by_run ON run_emails (run_id)",
        "CREATE TABLE IF NOT EXISTS run_counts ("
        "workflow TEXT NOT NULL, status TEXT NOT NULL, rehearsal INTEGER NOT NULL, n INTEGER NOT NULL, "
        "PRIMARY KEY (workflow, status, rehearsal)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS workflow_summaries ("
        "workflow TEXT PRIMARY KEY, first_created_at TEXT, last_created_at TEXT, "
        "first_executed_at TEXT, last_completed_at TEXT) WITHOUT ROWID",
    )

    def apply(self, c: sqlite3.Cursor, events: Sequence[Notification]) -> None:
        run_ids = {e.body["run_id"] for e in events if e.type in RUN_EVENT_TYPES}
        message_ids = {e.body["message_id"] for e in events if e.type in MESSAGE_EVENT_TYPES}
        rows: dict[str, dict[str, Any]] = fetch_rows(c, "runs", "id", run_ids)  # type: ignore[assignment]
        records = {rid: RunRecord.from_row(row) for rid, row in rows.items()}
        seqs = {rid: row["seq"] for rid, row in rows.items()}
        emails: dict[str, dict[str, Any]] = fetch_rows(c, "run_emails", "message_id", message_ids)  # type: ignore[assignment]
        touched_emails: set[str] = set()
        # Per-workflow times come from the events themselves, not from the rows' final
        # state, so they are the same however the log is cut into pages.
        times: dict[str, list[str | None]] = {}
        for e in events:
            body = e.body
            if e.type in RUN_EVENT_TYPES:
                rid = body["run_id"]
                record = records.get(rid)
                if record is None:
                    record = records[rid] = RunRecord.new(rid)
                    seqs[rid] = e.position
                record.apply(body)
                self._times(times, record.workflow, e.type, body["occurred_at"])
            else:
                self._fold_email(emails, body)
                touched_emails.add(body["message_id"])

        upsert(c, "run_emails", [emails[m] for m in touched_emails], ["message_id"])
        engaged = {
            emails[m]["run_id"]
            for m in touched_emails
            if emails[m]["run_id"] is not None and emails[m]["channel"] == "email"
        }
        # A run triggered in this page may have had email facts stored before it.
        engaged |= {rid for rid in records if rid not in rows}
        engagement = self._engagement(c, engaged)
        missing = [r for r in engagement if r not in records]
        for rid, row in fetch_rows(c, "runs", "id", missing).items():
            rows[rid] = row  # type: ignore[assignment]
            records[rid] = RunRecord.from_row(row)  # type: ignore[arg-type]
            seqs[rid] = row["seq"]

        counts = Counters("run_counts", ("workflow", "status", "rehearsal"))
        out = []
        for rid, record in records.items():
            if record.workflow is None:
                continue  # never triggered: nothing to show (the rules keep this out of the log)
            old = rows.get(rid)
            row = record.to_row()
            row["seq"] = seqs[rid]
            row.update(
                engagement.get(rid, {k: old[k] for k in _ENGAGEMENT} if old else _NO_ENGAGEMENT)
            )
            if old is not None:
                counts.add((old["workflow"], old["status"], int(old["trigger_source"] == "rehearsal")), -1)
            counts.add((row["workflow"], row["status"], int(row["trigger_source"] == "rehearsal")), 1)
            out.append({k: row[k] for k in RUN_COLUMNS})
        upsert(c, "runs", out, ["id"])
        counts.flush(c)
        self._summaries(c, times)

    @staticmethod
    def _fold_email(emails: dict[str, dict[str, Any]], body: dict[str, Any]) -> None:
        mid = body["message_id"]
        m = emails.get(mid)
        if m is None:
            m = emails[mid] = {
                "message_id": mid,
                "run_id": None,
                "channel": None,
                "delivered_at": None,
                "opened_at": None,
                "clicked_at": None,
            }
        kind, at = body["type"], body["occurred_at"]
        if kind == "message.queued":
            m["run_id"] = body.get("run_id")
            m["channel"] = body["channel"]
        if kind in _DELIVERED:
            m["delivered_at"] = _earliest(m["delivered_at"], at)
        if kind in ("message.opened", "message.clicked"):
            # A click implies an open (images are often blocked).
            m["opened_at"] = _earliest(m["opened_at"], at)
        if kind == "message.clicked":
            m["clicked_at"] = _earliest(m["clicked_at"], at)

    @staticmethod
    def _engagement(c: sqlite3.Cursor, run_ids: set[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {rid: dict(_NO_ENGAGEMENT) for rid in run_ids}
        for chunk, marks in in_chunks(run_ids):
            c.execute(
                "SELECT run_id, MIN(delivered_at), MIN(opened_at), MIN(clicked_at) FROM run_emails "
                f"WHERE channel = 'email' AND run_id IN ({marks}) GROUP BY run_id",
                chunk,
            )
            for rid, delivered, opened, clicked in c.fetchall():
                if delivered is None and opened is None and clicked is None:
                    continue
                found[rid] = {
                    "email_opened": int(opened is not None),
                    "email_opened_at": opened,
                    "email_clicked": int(clicked is not None),
                    "email_clicked_at": clicked,
                }
        return found

    @staticmethod
    def _times(times: dict[str, list[str | None]], workflow: str | None, kind: str, at: str) -> None:
        if workflow is None:
            return
        s = times.setdefault(workflow, [None, None, None, None])
        picks = {
            "run.triggered": ((0, min), (1, max)),
            "run.started": ((2, min),),
            "run.completed": ((3, max),),
            "run.failed": ((3, max),),
            "run.cancelled": ((3, max),),
        }.get(kind, ())
        for i, pick in picks:
            s[i] = at if s[i] is None else pick(s[i], at)

    @staticmethod
    def _summaries(c: sqlite3.Cursor, by_workflow: dict[str, list[str | None]]) -> None:
        if not by_workflow:
            return

        def keep(col: str, op: str) -> str:
            old = f"workflow_summaries.{col}"
            return (
                f"{col} = CASE WHEN {old} IS NULL OR (excluded.{col} IS NOT NULL AND "
                f"excluded.{col} {op} {old}) THEN excluded.{col} ELSE {old} END"
            )

        c.executemany(
            "INSERT INTO workflow_summaries VALUES (?, ?, ?, ?, ?) ON CONFLICT (workflow) DO UPDATE SET "
            + ", ".join(
                [
                    keep("first_created_at", "<"),
                    keep("last_created_at", ">"),
                    keep("first_executed_at", "<"),
                    keep("last_completed_at", ">"),
                ]
            ),
            [(w, *s) for w, s in by_workflow.items()],
        )
