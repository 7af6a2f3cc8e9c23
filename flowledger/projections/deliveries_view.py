"""The deliveries view: one row per message, and per-workflow, per-channel counters.

A message's status is decided from all its facts by occurred_at (see
:mod:`flowledger.projections.delivery`), never by arrival order, so the view keeps each
message's facts (trimmed to what the fold reads) and refolds them when one more arrives.
The counters move by the difference between a message's old and new record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from flowledger.domain.vocabulary import MESSAGE_EVENT_TYPES
from flowledger.projections.base import Counters, Notification, View, fetch_rows, upsert
from flowledger.projections.delivery import DELIVERY_FIELDS, delivery_record

DELIVERY_COLUMNS = ("seq", "workflow", "recipient_json", *DELIVERY_FIELDS, "facts")
"""The columns of the deliveries table."""

_FACT_FIELDS = (
    "id",
    "type",
    "occurred_at",
    "cost",
    "channel",
    "recipient",
    "run_id",
    "step",
    "provider",
    "provider_message_id",
    "url",
    "reason",
    "error",
    "machine",
    "temporary",
)
_SUCCEEDED = frozenset({"sent", "delivered", "read", "opened", "clicked"})
_DELIVERED = frozenset({"delivered", "read", "opened", "clicked"})
_FAILED = frozenset({"failed", "bounced"})

NO_WORKFLOW = ""
"""The workflow key counters use for messages with no run (manual resends)."""


def metrics(record: dict[str, Any]) -> dict[str, float]:
    """What one delivery adds to its workflow's and channel's counters."""
    if record["channel"] is None:
        return {}  # not queued yet: its channel is unknown, so it counts nowhere yet
    m: dict[str, float] = {"total": 1}
    status = record["status"]
    if record["ever_sent"]:
        m["sent"] = 1
        if record["cost_amount"] is None:
            m["unpriced"] = 1
    if status in _SUCCEEDED:
        m["succeeded"] = 1
    if status in _FAILED:
        m["failed"] = 1
    if status in _DELIVERED:
        m["delivered"] = 1
    if record["read_at"] is not None and status not in _FAILED:
        m["read"] = 1
    if record["opened_at"] is not None:
        m["opened"] = 1
    if record["clicked_at"] is not None:
        m["clicked"] = 1
    if record["human_opened_at"] is not None:
        m["human_opened"] = 1
    if record["complained_at"] is not None:
        m["complained"] = 1
    if record["unsubscribed_at"] is not None:
        m["unsubscribed"] = 1
    if record["cost_amount"] is not None:
        # Whole micro-units, so sums are exact in any order (incremental == rebuild).
        m["cost_micros:" + (record["cost_currency"] or "")] = round(record["cost_amount"] * 1_000_000)
    return m


class DeliveriesView(View):
    """Message deliveries and channel counters per workflow."""

    name = "deliveries"
    version = 2  # 2: human_opened_at, complained_at, unsubscribed_at
    topics = MESSAGE_EVENT_TYPES | {"run.triggered"}
    tables = ("deliveries", "delivery_runs", "channel_counts")
    ddl = (
        "CREATE TABLE IF NOT EXISTS deliveries ("
        "message_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, workflow TEXT, recipient_json TEXT, "
        "channel TEXT, provider TEXT, recipient TEXT, run_id TEXT, step TEXT, status TEXT, "
        "queued_at TEXT, sent_at TEXT, delivered_at TEXT, read_at TEXT, opened_at TEXT, "
        "clicked_at TEXT, failed_at TEXT, opens_total INTEGER, opens_unique INTEGER, "
        "clicks_total INTEGER, clicks_unique INTEGER, cost_amount REAL, cost_currency TEXT, "
        "provider_message_id TEXT, error TEXT, ever_sent INTEGER, updated_at TEXT, "
        "human_opened_at TEXT, complained_at TEXT, unsubscribed_at TEXT, facts BLOB)",
        "CREATE UNIQUE INDEX IF NOT EXISTS deliveries_by_seq ON deliveries (seq)",
        "CREATE INDEX IF NOT EXISTS deliveries_by_run ON deliveries (run_id, seq)",
        "CREATE INDEX IF NOT EXISTS deliveries_by_channel ON deliveries (channel, seq)",
        "CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (status, seq)",
        "CREATE INDEX IF NOT EXISTS deliveries_by_recipient ON deliveries (recipient, seq)",
        "CREATE TABLE IF NOT EXISTS delivery_runs (run_id TEXT PRIMARY KEY, workflow TEXT) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS channel_counts ("
        "workflow TEXT NOT NULL, channel TEXT NOT NULL, metric TEXT NOT NULL, n REAL NOT NULL, "
        "PRIMARY KEY (workflow, channel, metric)) WITHOUT ROWID",
    )

    def apply(self, c: sqlite3.Cursor, events: Sequence[Notification]) -> None:
        new_runs = [(e.body["run_id"], e.body["workflow"]) for e in events if e.type == "run.triggered"]
        c.executemany("INSERT OR IGNORE INTO delivery_runs VALUES (?, ?)", new_runs)
        facts: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        first_seen: dict[str, int] = {}
        for e in events:
            if e.type == "run.triggered":
                continue
            mid = e.body["message_id"]
            first_seen.setdefault(mid, e.position)
            facts.setdefault(mid, []).append((e.position, {k: e.body[k] for k in _FACT_FIELDS if k in e.body}))
        if not facts:
            return
        old_rows: dict[str, dict[str, Any]] = fetch_rows(c, "deliveries", "message_id", facts)  # type: ignore[assignment]
        records = {}
        for mid, new in facts.items():
            old = old_rows.get(mid)
            known = [tuple(f) for f in orjson.loads(old["facts"])] if old else []
            all_facts = known + new
            record = delivery_record(mid, all_facts)
            record["seq"] = old["seq"] if old else first_seen[mid]
            record["facts"] = orjson.dumps(all_facts)
            records[mid] = record
        run_ids = {r["run_id"] for r in records.values() if r["run_id"] is not None}
        workflows = {rid: row["workflow"] for rid, row in fetch_rows(c, "delivery_runs", "run_id", run_ids).items()}
        counters = Counters("channel_counts", ("workflow", "channel", "metric"))
        out = []
        for mid, record in records.items():
            record["workflow"] = workflows.get(record["run_id"]) if record["run_id"] else None
            recipient = record["recipient"]
            record["recipient_json"] = None if recipient is None else orjson.dumps(recipient).decode()
            if isinstance(recipient, dict):
                record["recipient"] = recipient["id"]
            record["ever_sent"] = int(bool(record["ever_sent"]))
            old = old_rows.get(mid)
            if old is not None:
                for metric, value in metrics(old).items():
                    counters.add((old["workflow"] or NO_WORKFLOW, old["channel"], metric), -value)
            for metric, value in metrics(record).items():
                counters.add((record["workflow"] or NO_WORKFLOW, record["channel"], metric), value)
            out.append({k: record[k] for k in DELIVERY_COLUMNS})
        upsert(c, "deliveries", out, ["message_id"])
        counters.flush(c)
