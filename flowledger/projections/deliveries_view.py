"""The deliveries view: one row per message, and per-workflow, per-channel counters.

A message's status is decided from all its facts by occurred_at (see
:mod:`flowledger.projections.delivery`), never by arrival order, so the view refolds a
message from all its facts when one more arrives: those it remembers from earlier pages
of the same catch-up, or else the message's stream in the log, read through the log's
own (stream, version) key. The counters move by the difference between a message's old
and new record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson

from flowledger.domain.event_types import MESSAGE_EVENT_TYPES
from flowledger.projections.base import Counters, Event, LogReader, View, Writes, upsert_sql
from flowledger.projections.delivery import DELIVERY_FIELDS, delivery_values
from flowledger.projections.memory import Memory
from flowledger.store.backend import in_chunks

DELIVERY_COLUMNS = ("seq", "workflow", "recipient_json", *DELIVERY_FIELDS)
"""The columns of the deliveries table."""
_SUCCEEDED = frozenset({"sent", "delivered", "read", "opened", "clicked"})
_DELIVERED = frozenset({"delivered", "read", "opened", "clicked"})
_FAILED = frozenset({"failed", "bounced"})

NO_WORKFLOW = ""
"""The workflow key counters use for messages with no run (manual resends)."""


def _metrics(values: Sequence[Any]) -> tuple[tuple[str, float], ...]:
    """What one delivery adds to its workflow's and channel's counters, as (metric, amount)
    pairs, from its record's values in :data:`DELIVERY_FIELDS` order."""
    (channel, status, read_at, opened_at, clicked_at, opens, clicks, cost_amount, cost_currency, ever_sent,
     human_opened_at, complained_at, unsubscribed_at) = _COUNTED_BY(values)
    if channel is None:
        return ()  # not queued yet: its channel is unknown, so it counts nowhere yet
    m: list[tuple[str, float]] = [("total", 1)]
    if ever_sent:
        m.append(("sent", 1))
        if cost_amount is None:
            m.append(("unpriced", 1))
    if status in _FAILED:
        m.append(("failed", 1))
        if status == "bounced":
            m.append(("bounced", 1))
    else:
        if status in _SUCCEEDED:
            m.append(("succeeded", 1))
            if status in _DELIVERED:
                m.append(("delivered", 1))
        # Engagement counts only where delivery does: rates divide it by the delivered, and
        # a message that bounced after a scanner opened it is no longer among them.
        if read_at is not None:
            m.append(("read", 1))
        if opened_at is not None:
            m.append(("opened", 1))
            m.append(("opens_total", opens))
            if human_opened_at is not None:
                m.append(("human_opened", 1))
            if clicked_at is not None:
                m.append(("clicked", 1))
                m.append(("clicks_total", clicks))
    # What the recipient did about the message counts whatever became of it.
    if complained_at is not None:
        m.append(("complained", 1))
    if unsubscribed_at is not None:
        m.append(("unsubscribed", 1))
    if cost_amount is not None:
        currency = cost_currency or ""
        # The currency counts apart from the amount: a free message (0.0), or one priced
        # below half a millionth, names its currency though it adds nothing to the sum.
        m.append(("priced:" + currency, 1))
        # Whole millionths, so sums are exact in any order (incremental == rebuild).
        micros = round(cost_amount * 1_000_000)
        if micros:
            m.append(("cost_micros:" + currency, micros))
    return tuple(m)


_COUNTED_BY = itemgetter(
    *(
        DELIVERY_FIELDS.index(f)
        for f in (
            "channel", "status", "read_at", "opened_at", "clicked_at", "opens_total", "clicks_total", "cost_amount",
            "cost_currency", "ever_sent", "human_opened_at", "complained_at", "unsubscribed_at",
        )
    )
)


class DeliveriesView(View):
    """Message deliveries and channel counters per workflow."""

    name = "deliveries"
    # 2: human_opened_at, complained_at, unsubscribed_at; 3: messages before their run;
    # 4: no facts column (a message's facts are read from the log when it is refolded);
    # 5: opens_total counts the open a click implies when no open event came; 6: a failed
    # message's opens and clicks count nowhere; bounced, opens_total and clicks_total counters;
    # 7: priced:<currency> counts priced messages (a 0.0 price kept no currency)
    version = 7
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
        "human_opened_at TEXT, complained_at TEXT, unsubscribed_at TEXT)",
        "CREATE UNIQUE INDEX IF NOT EXISTS deliveries_by_seq ON deliveries (seq)",
        "CREATE INDEX IF NOT EXISTS deliveries_by_run ON deliveries (run_id, seq)",
        "CREATE INDEX IF NOT EXISTS deliveries_by_channel ON deliveries (channel, seq)",
        "CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (status, seq)",
        "CREATE INDEX IF NOT EXISTS deliveries_by_recipient ON deliveries (recipient, seq)",
        # A channel's messages of a status, newest first (`deliveries list --channel email
        # --status bounced`, the web's two menus): through the channel's index or the
        # status's, SQLite read a row a message of one for the other, every one of them where
        # the channel has none of the status (push and delivered: 103 ms at 150,000 messages,
        # linear in them). A new index is no new version: a store made without it gets it
        # the next time the views' tables are checked by a writer.
        "CREATE INDEX IF NOT EXISTS deliveries_by_channel_status ON deliveries (channel, status, seq)",
        # What a runs page's email engagement reads (queries.ENGAGEMENT_QUERY), kept in
        # the index itself: read from the table, a page's runs' deliveries are rows at
        # places spread over the file, each a read from the disk when the cache is cold.
        "CREATE INDEX IF NOT EXISTS deliveries_email_by_run "
        "ON deliveries (run_id, channel, delivered_at, opened_at, clicked_at) WHERE channel = 'email'",
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
            "deliveries_by_channel_status",
            "deliveries_email_by_run",
        }
    )

    def fold(self, c: sqlite3.Cursor, events: Sequence[Event], memory: Memory, log: LogReader) -> Writes:
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
        for position, kind, body in events:
            if kind != "run.triggered":
                mid = body["message_id"]
                found = facts.get(mid)
                if found is None:
                    facts[mid] = [(position, body)]
                else:
                    found.append((position, body))
        for mid in _messages_of(c, early):
            facts.setdefault(mid, [])
        if not facts:
            return writes
        # A message this memory does not hold may have a row: read it, and its facts so
        # far from the log (those of this page among them).
        unknown = [mid for mid in facts if mid not in messages and memory.may_be_stored("deliveries", mid)]
        recalled = _recall(c, log, messages, unknown, events[-1][0])
        folded = []
        for mid, new in facts.items():
            m = messages.get(mid)
            if m is None:
                m = messages[mid] = _Message(new[0][0], new)
            elif mid not in recalled:
                m.facts += new
            folded.append((m, delivery_values(mid, m.facts)))
        wanted = {v[_RUN_ID] for _, v in folded if v[_RUN_ID] is not None}
        _recall_runs(c, workflows, [r for r in wanted if r not in workflows and memory.may_be_stored("delivery_runs", r)])
        # A run no trigger has named yet is noted without a workflow, for its trigger to find.
        unnamed = [(rid,) for rid in wanted if rid not in workflows]
        writes.add("INSERT OR IGNORE INTO delivery_runs VALUES (?, NULL)", unnamed)
        for (rid,) in unnamed:
            workflows[rid] = None
        out = []
        counters = Counters("channel_counts", ("workflow", "channel", "metric"))
        deltas = counters.deltas  # summed here, not through add(): a hot loop
        dumps = orjson.dumps
        for m, values in folded:
            rid = values[_RUN_ID]
            workflow = workflows.get(rid) if rid else None
            recipient = values[_RECIPIENT]
            if recipient is None:
                recipient_json = None
            else:
                recipient_json = dumps(recipient).decode()
                if isinstance(recipient, dict):
                    recipient = recipient["id"]
            if m.metrics is not None:
                key, channel = m.counted
                for metric, value in m.metrics:
                    deltas[(key, channel, metric)] -= value
            m.metrics = found = _metrics(values)
            m.counted = (key, channel) = (workflow or NO_WORKFLOW, values[_CHANNEL])
            for metric, value in found:
                deltas[(key, channel, metric)] += value
            out.append(
                (m.seq, workflow, recipient_json, *values[:_RECIPIENT], recipient, *values[_RECIPIENT + 1 : _EVER_SENT],
                 int(values[_EVER_SENT]), *values[_EVER_SENT + 1 :])
            )
            # Written again: the last to be forgotten.
            mid = values[0]
            del messages[mid]
            messages[mid] = m
        writes.add(_UPSERT, out, key=_BY_MESSAGE)
        writes.count(counters)
        return writes


class _Message:
    """What the view keeps of one message: its facts, and what its row counted."""

    __slots__ = ("seq", "facts", "metrics", "counted")

    def __init__(
        self,
        seq: int,
        facts: list[tuple[int, dict[str, Any]]],
        metrics: tuple[tuple[str, float], ...] | None = None,
        counted: tuple[str, str | None] = (NO_WORKFLOW, None),
    ) -> None:
        self.seq = seq
        """The log position of its first fact."""
        self.facts = facts
        """Its facts, (log position, event) in log order."""
        self.metrics = metrics
        """What its row adds to the counters (None: no row yet)."""
        self.counted = counted
        """The (workflow key, channel) its metrics count under."""


def _recall(c: sqlite3.Cursor, log: LogReader, messages: dict[str, _Message], ids: list[str], upto: int) -> set[str]:
    """Read the messages that have a row into memory, with their facts up to log position
    ``upto`` from the log; returns their ids."""
    rows: dict[str, dict[str, Any]] = {}
    for chunk, marks in in_chunks(ids):
        c.execute(f"SELECT {_SELECT} FROM deliveries WHERE message_id IN ({marks})", chunk)
        for row in c.fetchall():
            rows[row[0]] = dict(zip(_READ, row))
    if not rows:
        return set()
    streams = log.streams(["message:" + mid for mid in rows], upto)
    for mid, old in rows.items():
        counted = _metrics(tuple(old[f] for f in DELIVERY_FIELDS))
        messages[mid] = _Message(
            old["seq"], streams.get("message:" + mid, []), counted, (old["workflow"] or NO_WORKFLOW, old["channel"])
        )
    return set(rows)


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


_RUN_ID, _RECIPIENT, _CHANNEL, _EVER_SENT = (DELIVERY_FIELDS.index(f) for f in ("run_id", "recipient", "channel", "ever_sent"))
_BY_MESSAGE = itemgetter(DELIVERY_COLUMNS.index("message_id"))
_READ = ("message_id", *(k for k in DELIVERY_COLUMNS if k != "message_id"))
_SELECT = ", ".join(_READ)
_UPSERT = upsert_sql("deliveries", DELIVERY_COLUMNS, ["message_id"])
_RUN_NAMED = (
    "INSERT INTO delivery_runs VALUES (?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET workflow = excluded.workflow WHERE delivery_runs.workflow IS NULL"
)
