"""The deliveries view: one row per message, and per-workflow, per-channel counters.

A message's status is decided from all its facts by occurred_at (see
:mod:`flowledger.projections.delivery`), never by arrival order, so the view keeps each
message's facts (trimmed to what the fold reads) and refolds them when one more arrives.
The counters move by the difference between a message's old and new record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson

from flowledger.domain.event_types import MESSAGE_EVENT_TYPES
from flowledger.projections.base import Counters, Event, View, Writes, upsert_sql
from flowledger.projections.memory import Memory
from flowledger.store.backend import in_chunks
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
    version = 3  # 2: human_opened_at, complained_at, unsubscribed_at; 3: messages before their run
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
    query_indexes = frozenset(
        {
            "deliveries_by_seq",
            "deliveries_by_channel",
            "deliveries_by_status",
            "deliveries_by_recipient",
        }
    )

    def fold(self, c: sqlite3.Cursor, events: Sequence[Event], memory: Memory) -> Writes:
        """Refold each message the page touches from all its facts; move the counters."""
        messages: dict[str, _Message] = memory.table("deliveries")
        workflows: dict[str, str | None] = memory.table("delivery_runs")  # run id -> workflow
        writes = Writes()
        new_runs = [(b["run_id"], b["workflow"]) for _, t, b in events if t == "run.triggered"]
        writes.add(_RUN_NAMED, new_runs)
        # The first word stands: a run already stored keeps its workflow, and of this
        # page's, the first. A run stored without one (None) was named by messages that
        # came before its trigger: they are refolded with it, so that where the pages of
        # a catch-up fall never changes a row.
        early: list[str] = []
        if new_runs:
            _recall_runs(c, workflows, [rid for rid, _ in new_runs if memory.may_be_stored("delivery_runs", rid)])
            for rid, workflow in new_runs:
                if rid not in workflows:
                    workflows[rid] = workflow
                elif workflows[rid] is None:
                    workflows[rid] = workflow
                    early.append(rid)
        facts: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        picks = _PICKS
        for position, kind, body in events:
            if kind == "run.triggered":
                continue
            mid = body["message_id"]
            keys = tuple(body)
            fields = picks.get(keys)
            if fields is None:
                fields = _pick(keys)
            fact = (position, {k: body[k] for k in fields})
            found = facts.get(mid)
            if found is None:
                facts[mid] = [fact]
            else:
                found.append(fact)
        for mid in _messages_of(c, early):
            facts.setdefault(mid, [])
        if not facts:
            return writes
        _recall(c, messages, [mid for mid in facts if mid not in messages and memory.may_be_stored("deliveries", mid)])
        counters = Counters("channel_counts", ("workflow", "channel", "metric"))
        records = []
        for mid, new in facts.items():
            m = messages.get(mid)
            if m is None:
                m = _Message(new[0][0], orjson.dumps(new))
                everything = new
            else:
                # Kept as stored, not as objects: a message is rarely touched again, and a
                # few hundred bytes of JSON weigh a tenth of the dictionaries they hold.
                everything = [tuple(f) for f in orjson.loads(m.blob)] + new
                if new:
                    # The stored list with the new facts appended: what dumping it whole gives.
                    m.blob = m.blob[:-1] + b"," + orjson.dumps(new)[1:]
            record = delivery_record(mid, everything)
            records.append((m, record))
        wanted = {r["run_id"] for _, r in records if r["run_id"] is not None}
        _recall_runs(c, workflows, [r for r in wanted if r not in workflows and memory.may_be_stored("delivery_runs", r)])
        # A run no trigger has named yet is noted without a workflow, for its trigger to find.
        unnamed = [(rid,) for rid in wanted if rid not in workflows]
        writes.add("INSERT OR IGNORE INTO delivery_runs VALUES (?, NULL)", unnamed)
        for (rid,) in unnamed:
            workflows[rid] = None
        out = []
        deltas = counters.deltas  # summed here, not through add(): a hot loop
        dumps = orjson.dumps
        for m, record in records:
            rid = record["run_id"]
            record["workflow"] = workflow = workflows.get(rid) if rid else None
            recipient = record["recipient"]
            recipient_json = record["recipient_json"] = None if recipient is None else dumps(recipient).decode()
            if isinstance(recipient, dict):
                record["recipient"] = recipient["id"]
            record["ever_sent"] = int(bool(record["ever_sent"]))
            if m.metrics is not None:
                key, channel = m.counted
                for metric, value in m.metrics:
                    deltas[(key, channel, metric)] -= value
            m.metrics = found = tuple(metrics(record).items())
            m.counted = (key, channel) = (workflow or NO_WORKFLOW, record["channel"])
            for metric, value in found:
                deltas[(key, channel, metric)] += value
            out.append((m.seq, workflow, recipient_json, *_FIELDS(record), m.blob))
            mid = record["message_id"]
            if messages.get(mid) is m:
                del messages[mid]  # written again: the last to be forgotten
            messages[mid] = m
        writes.add(_UPSERT, out, key=_BY_MESSAGE)
        writes.count(counters)
        return writes


class _Message:
    """What the view keeps of one message: its facts as stored, and what its row counted."""

    __slots__ = ("seq", "blob", "metrics", "counted")

    def __init__(
        self,
        seq: int,
        blob: bytes,
        metrics: tuple[tuple[str, float], ...] | None = None,
        counted: tuple[str, str | None] = (NO_WORKFLOW, None),
    ) -> None:
        self.seq = seq
        """The log position of its first fact."""
        self.blob = blob
        """Its facts, (log position, trimmed event) in log order, as stored (JSON)."""
        self.metrics = metrics
        """What its row adds to the counters (None: no row yet)."""
        self.counted = counted
        """The (workflow key, channel) its metrics count under."""


def _recall(c: sqlite3.Cursor, messages: dict[str, _Message], ids: Iterable[str]) -> None:
    """Read messages not in memory from their rows (those that have one)."""
    wanted = [mid for mid in ids if mid not in messages]
    for chunk, marks in in_chunks(wanted):
        c.execute(f"SELECT {_SELECT} FROM deliveries WHERE message_id IN ({marks})", chunk)
        for row in c.fetchall():
            old = dict(zip(_READ, row))
            messages[old["message_id"]] = _Message(
                old["seq"], bytes(old["facts"]), tuple(metrics(old).items()), (old["workflow"] or NO_WORKFLOW, old["channel"])
            )


def _messages_of(c: sqlite3.Cursor, run_ids: list[str]) -> list[str]:
    """The messages stored with these runs, in log order."""
    found: list[tuple[int, str]] = []
    for chunk, marks in in_chunks(run_ids):
        c.execute(f"SELECT seq, message_id FROM deliveries WHERE run_id IN ({marks})", chunk)
        found += [(seq, mid) for seq, mid in c.fetchall()]
    return [mid for _, mid in sorted(found)]


def _recall_runs(c: sqlite3.Cursor, workflows: dict[str, str | None], ids: Iterable[str]) -> None:
    """Read the workflows of runs not in memory (of those known)."""
    wanted = [rid for rid in ids if rid not in workflows]
    for chunk, marks in in_chunks(wanted):
        c.execute(f"SELECT run_id, workflow FROM delivery_runs WHERE run_id IN ({marks})", chunk)
        workflows.update((rid, workflow) for rid, workflow in c.fetchall())


_PICKS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _pick(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The fact fields an event with these keys has, in :data:`_FACT_FIELDS` order (kept)."""
    fields = tuple(k for k in _FACT_FIELDS if k in keys)
    if len(_PICKS) < 10_000:  # events have few shapes; a bound all the same
        _PICKS[keys] = fields
    return fields


_FIELDS = itemgetter(*DELIVERY_FIELDS)
_BY_MESSAGE = itemgetter(DELIVERY_COLUMNS.index("message_id"))
_READ = ("message_id", *(k for k in DELIVERY_COLUMNS if k != "message_id"))
_SELECT = ", ".join(_READ)
_UPSERT = upsert_sql("deliveries", DELIVERY_COLUMNS, ["message_id"])
_RUN_NAMED = (
    "INSERT INTO delivery_runs VALUES (?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET workflow = excluded.workflow WHERE delivery_runs.workflow IS NULL"
)
