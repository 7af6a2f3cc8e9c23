"""The runs view: one row per run, run counts by workflow and status, and per-workflow times.

Email engagement comes from the run's email messages, whose provider events may arrive
before the ``message.queued`` that says which run they belong to: the view keeps a small
row per message (``run_emails``: its run, channel and first delivery, open and click) and
recomputes a run's engagement from all of them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson

from flowledger.domain.event_types import RUN_EVENT_TYPES
from flowledger.projections.base import Counters, Event, View, Writes, upsert_sql
from flowledger.projections.memory import Memory, touch
from flowledger.projections.run_record import RECORD_FIELDS, RunRecord, seconds_between
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

EMAIL_COLUMNS = ("message_id", "run_id", "channel", "delivered_at", "opened_at", "clicked_at")
"""The columns of the run_emails table."""

_ENGAGEMENT_AT = RUN_COLUMNS.index("email_opened")
_NO_ENGAGEMENT = (None, None, None, None)
_DELIVERED = frozenset({"message.delivered", "message.read", "message.opened", "message.clicked"})
_OPENED = frozenset({"message.opened", "message.clicked"})
# Which of a workflow's times (first created, last created, first executed, last
# completed) each event type may move, and which way.
_TIMES: dict[str, tuple[tuple[int, Callable[[str, str], str]], ...]] = {
    "run.triggered": ((0, min), (1, max)),
    "run.started": ((2, min),),
    "run.completed": ((3, max),),
    "run.failed": ((3, max),),
    "run.cancelled": ((3, max),),
}
_UPSERT_RUN = upsert_sql("runs", RUN_COLUMNS, ["id"])
_UPSERT_EMAIL = upsert_sql("run_emails", EMAIL_COLUMNS, ["message_id"])
_DUMPS = orjson.dumps
_BY_ID = itemgetter(0)  # runs and run_emails rows: the key comes first


def _earliest(a: str | None, b: str) -> str:
    return b if a is None or b < a else a


def _row(record: RunRecord, seq: int, engagement: Sequence[Any]) -> tuple[Any, ...]:
    """The record's runs row, in :data:`RUN_COLUMNS` order (what ``to_row`` gives, unnamed)."""
    rules = record.rules
    recipient = record.recipient
    return (
        rules.id,
        seq,
        record.workflow,
        recipient if isinstance(recipient, str) or recipient is None else recipient["id"],
        record.tenant,
        record.trigger_source,
        record.workflow_run_id,
        rules.status,
        record.created_at,
        record.scheduled_at,
        record.executed_at,
        record.completed_at,
        seconds_between(record.executed_at or record.created_at, record.completed_at),
        rules.retry_count,
        rules.max_retries,
        record.error_message,
        record.error_count,
        _DUMPS(recipient).decode(),
        *engagement,
        record.updated_at,
        _DUMPS(rules.to_state()).decode(),
    )


def _fold_email(m: list[Any], kind: str, body: dict[str, Any]) -> None:
    """Fold one message event into its run_emails columns (see :data:`EMAIL_COLUMNS`)."""
    at = body["occurred_at"]
    if kind == "message.queued":
        m[1] = body.get("run_id")
        m[2] = body["channel"]
    if kind in _DELIVERED:
        m[3] = _earliest(m[3], at)
        if kind in _OPENED:
            # A click implies an open (images are often blocked).
            m[4] = _earliest(m[4], at)
            if kind == "message.clicked":
                m[5] = _earliest(m[5], at)


def _engagement(
    c: sqlite3.Cursor, run_ids: set[str], touched: dict[str, list[Any]]
) -> dict[str, tuple[Any, ...]]:
    """Each run's email engagement: the earliest times over its email messages.

    The tables are read as they stood before this page; the messages this page touched
    count as they are now, in memory (the page has not written them yet).
    """
    earliest: dict[str, list[str | None]] = {}

    def take(rid: str, delivered: str | None, opened: str | None, clicked: str | None) -> None:
        """Count one email message's times towards its run's earliest."""
        e = earliest.get(rid)
        if e is None:
            earliest[rid] = [delivered, opened, clicked]
            return
        for i, at in enumerate((delivered, opened, clicked)):
            if at is not None and (e[i] is None or at < e[i]):  # MIN ignores NULLs
                e[i] = at

    for chunk, marks in in_chunks(run_ids):
        c.execute(
            "SELECT message_id, run_id, delivered_at, opened_at, clicked_at FROM run_emails "
            f"WHERE channel = 'email' AND run_id IN ({marks})",
            chunk,
        )
        for mid, rid, delivered, opened, clicked in c.fetchall():
            if mid not in touched:
                take(rid, delivered, opened, clicked)
    for mid, rid, channel, delivered, opened, clicked in touched.values():
        if channel == "email" and rid in run_ids:
            take(rid, delivered, opened, clicked)
    found: dict[str, tuple[Any, ...]] = dict.fromkeys(run_ids, _NO_ENGAGEMENT)
    for rid, (delivered, opened, clicked) in earliest.items():
        if delivered is None and opened is None and clicked is None:
            continue
        found[rid] = (int(opened is not None), opened, int(clicked is not None), clicked)
    return found


def _keep(column: str, op: str) -> str:
    """SQL that keeps the earlier (``<``) or later (``>``) of a stored and a new time."""
    old = f"workflow_summaries.{column}"
    return (
        f"{column} = CASE WHEN {old} IS NULL OR (excluded.{column} IS NOT NULL AND "
        f"excluded.{column} {op} {old}) THEN excluded.{column} ELSE {old} END"
    )


# Each time moves only its own way, so the summaries are the same however the log is paged.
_SUMMARIES = (
    "INSERT INTO workflow_summaries VALUES (?, ?, ?, ?, ?) ON CONFLICT (workflow) DO UPDATE SET "
    + ", ".join(
        [
            _keep("first_created_at", "<"),
            _keep("last_created_at", ">"),
            _keep("first_executed_at", "<"),
            _keep("last_completed_at", ">"),
        ]
    )
)


def _times(times: dict[str, list[str | None]], workflow: str, kind: str, at: str) -> None:
    """Move a workflow's times of this page by one of its runs' events."""
    s = times.get(workflow)
    if s is None:
        s = times[workflow] = [None, None, None, None]
    for i, pick in _TIMES.get(kind, ()):
        old = s[i]
        s[i] = at if old is None else pick(old, at)


def _recall_runs(c: sqlite3.Cursor, runs: dict[str, list[Any]], ids: Iterable[str]) -> None:
    """Read the rows of runs not in memory into it (those that have one)."""
    wanted = [rid for rid in ids if rid not in runs]
    for chunk, marks in in_chunks(wanted):
        c.execute(f"SELECT {_RUN_SELECT} FROM runs WHERE id IN ({marks})", chunk)
        for row in c.fetchall():
            row = tuple(row)
            runs[row[0]] = [RunRecord.from_row(dict(zip(RUN_COLUMNS, row))), row[1], row]


def _recall_emails(c: sqlite3.Cursor, emails: dict[str, list[Any]], ids: Iterable[str]) -> None:
    """Read the run_emails rows of messages not in memory into it (those that have one)."""
    wanted = [mid for mid in ids if mid not in emails]
    for chunk, marks in in_chunks(wanted):
        c.execute(f"SELECT {_EMAIL_SELECT} FROM run_emails WHERE message_id IN ({marks})", chunk)
        for row in c.fetchall():
            emails[row[0]] = list(row)


_RUN_SELECT = ", ".join(RUN_COLUMNS)
_EMAIL_SELECT = ", ".join(EMAIL_COLUMNS)


class RunsView(View):
    """Run records, counts by status, and per-workflow first/last times."""

    name = "runs"
    version = 2  # 2: run_emails holds only messages with a fact engagement reads
    # Of a message, engagement reads only which run and channel it is on and when it was
    # delivered, opened, clicked: sends, failures and the rest are not even decoded.
    topics = RUN_EVENT_TYPES | {"message.queued"} | _DELIVERED
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
    query_indexes = frozenset(
        {
            "runs_by_seq",
            "runs_by_workflow",
            "runs_by_status",
            "runs_by_workflow_status",
            "runs_by_tenant",
            "runs_by_recipient",
            "runs_with_errors",
            "runs_by_created",
        }
    )

    def fold(self, c: sqlite3.Cursor, events: Sequence[Event], memory: Memory) -> Writes:
        """Fold run and message events into runs, run_emails, counts and summaries."""
        runs: dict[str, list[Any]] = memory.table("runs")  # id -> [record, seq, row as written]
        emails: dict[str, list[Any]] = memory.table("run_emails")  # id -> the row's columns
        # A memory that knows every row reads only keys it forgot, one by one as they come.
        complete = memory.complete
        run_types = RUN_EVENT_TYPES
        if not complete:
            _recall_runs(c, runs, {b["run_id"] for _, t, b in events if t in run_types})
            _recall_emails(c, emails, {b["message_id"] for _, t, b in events if t not in run_types})
        touched: dict[str, list[Any]] = {}
        touched_emails: dict[str, list[Any]] = {}
        before: dict[str, tuple[Any, ...] | None] = {}  # message id -> its row before this page
        born: list[str] = []
        # Per-workflow times come from the events themselves, not from the rows' final
        # state, so they are the same however the log is cut into pages.
        times: dict[str, list[str | None]] = {}
        for position, kind, body in events:
            if kind in run_types:
                rid = body["run_id"]
                entry = touched.get(rid)
                if entry is None:
                    entry = memory.find(c, "runs", rid, _recall_runs)
                    if entry is None:
                        entry = [RunRecord.new(rid), position, None]
                        born.append(rid)
                    touched[rid] = entry
                record = entry[0]
                record.apply(body)
                if record.workflow is not None and kind in _TIMES:
                    _times(times, record.workflow, kind, body["occurred_at"])
            else:
                mid = body["message_id"]
                m = touched_emails.get(mid)
                if m is None:
                    m = memory.find(c, "run_emails", mid, _recall_emails)
                    if m is None:
                        m = [mid, None, None, None, None, None]
                        before[mid] = None
                    else:
                        before[mid] = tuple(m)
                    touched_emails[mid] = m
                _fold_email(m, kind, body)

        writes = Writes()
        # A late duplicate or a second open changes nothing: its row need not be written.
        touched_emails = {mid: m for mid, m in touched_emails.items() if tuple(m) != before[mid]}
        writes.add(_UPSERT_EMAIL, [tuple(m) for m in touched_emails.values()], key=_BY_ID)
        engaged = {m[1] for m in touched_emails.values() if m[1] is not None and m[2] == "email"}
        # A run triggered in this page may have had email facts stored before it.
        engaged.update(born)
        engagement = _engagement(c, engaged, touched_emails)
        missing = [r for r in engagement if r not in touched]
        _recall_runs(c, runs, [r for r in missing if r not in runs and memory.may_be_stored("runs", r)])
        for rid in missing:
            entry = runs.get(rid)
            if entry is not None:
                touched[rid] = entry

        counts = Counters("run_counts", ("workflow", "status", "rehearsal"))
        out = []
        for rid, entry in touched.items():
            record, seq, old = entry
            if record.workflow is None:
                continue  # never triggered: nothing to show (the rules keep this out of the log)
            found = engagement.get(rid)
            if found is None:
                found = old[_ENGAGEMENT_AT : _ENGAGEMENT_AT + 4] if old is not None else _NO_ENGAGEMENT
            row = _row(record, seq, found)
            if row != old:
                if old is not None:
                    counts.add((old[2], old[7], int(old[5] == "rehearsal")), -1)
                counts.add((row[2], row[7], int(row[5] == "rehearsal")), 1)
                out.append(row)
                entry[2] = row
            touch(runs, rid, entry)
        for mid, m in touched_emails.items():
            touch(emails, mid, m)
        writes.add(_UPSERT_RUN, out, key=_BY_ID)
        writes.count(counts)
        writes.add(_SUMMARIES, [(w, *s) for w, s in times.items()])
        return writes
