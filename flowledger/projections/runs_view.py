"""The runs view: one row per run, run counts by workflow and status, by tenant and status,
by hour of creation and status (a tenant's too), and per-workflow times.

A workflow's last completion is the latest completed_at of its runs as their rows hold
it, which a retry can lower: the view keeps how many of a workflow's runs completed at
each time (workflow_completions), moved by each run's row, whose greatest key is it.

It folds run events only. A run's email engagement (first open, first click) is its email
deliveries', which the deliveries view keeps: queries read it from there (see
:func:`flowledger.queries.email_engagement`), so a rebuild of this view decodes no message
event at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

import orjson

from flowledger.domain.event_types import RUN_EVENT_TYPES
from flowledger.projections.base import Counters, Event, LogReader, View, Writes, upsert_sql
from flowledger.projections.memory import Memory, touch
from flowledger.projections.run_record import RECORD_FIELDS, RunRecord, seconds_between
from flowledger.store.backend import in_chunks

RUN_COLUMNS = (
    "id",
    "seq",
    *(f for f in RECORD_FIELDS if f not in ("id", "updated_at")),
    "recipient_json",
    "updated_at",
    "rules",
)
"""The columns of the runs table."""

# Which of a workflow's times (first created, last created, first executed) each event
# type may move, and which way. The last completion is not among them: a retry undoes a
# run's, so it is the runs rows' (workflow_completions), not the events'.
_TIMES: dict[str, tuple[tuple[int, Callable[[str, str], str]], ...]] = {
    "run.triggered": ((0, min), (1, max)),
    "run.started": ((2, min),),
}
_UPSERT_RUN = upsert_sql("runs", RUN_COLUMNS, ["id"])
_DUMPS = orjson.dumps
_BY_ID = itemgetter(0)  # runs rows: the key comes first


def _row(record: RunRecord, seq: int) -> tuple[Any, ...]:
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
        record.updated_at,
        _DUMPS(rules.to_state()).decode(),
    )


def _keep(column: str, op: str) -> str:
    """SQL that keeps the earlier (``<``) or later (``>``) of a stored and a new time."""
    old = f"workflow_summaries.{column}"
    return (
        f"{column} = CASE WHEN {old} IS NULL OR (excluded.{column} IS NOT NULL AND "
        f"excluded.{column} {op} {old}) THEN excluded.{column} ELSE {old} END"
    )


# Each time moves only its own way, so the summaries are the same however the log is paged.
_SUMMARIES = (
    "INSERT INTO workflow_summaries VALUES (?, ?, ?, ?) ON CONFLICT (workflow) DO UPDATE SET "
    + ", ".join([_keep("first_created_at", "<"), _keep("last_created_at", ">"), _keep("first_executed_at", "<")])
)


def _times(times: dict[str, list[str | None]], workflow: str, kind: str, at: str) -> None:
    """Move a workflow's times of this page by one of its runs' events."""
    s = times.get(workflow)
    if s is None:
        s = times[workflow] = [None, None, None]
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


_RUN_SELECT = ", ".join(RUN_COLUMNS)


def hour_of(at: str) -> str:
    """The hour a stored time lies in, as run_hours keys it ("2026-11-01T09")."""
    return at[:13]


# How many runs created in each hour are in each status: a date range's counts by status
# (the run history's chips for "Last 30 days") add up its whole hours here and count only
# the runs of its partial hours at either end in the index of creation times, where they
# counted every run of the range (328 ms for a month of a million runs, linear in them).
_RUN_HOURS = (
    "CREATE TABLE IF NOT EXISTS run_hours ("
    "hour TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, "
    "PRIMARY KEY (hour, status)) WITHOUT ROWID"
)
_COUNT_RUN_HOURS = (
    "INSERT INTO run_hours (hour, status, n) SELECT substr(created_at, 1, 13), status, COUNT(*) "
    "FROM runs WHERE created_at IS NOT NULL GROUP BY substr(created_at, 1, 13), status"
)

# A tenant's runs by status (the run history's chips under a tenant filter): through the
# index of (tenant, status, …) they read every entry of the tenant (15-24 ms for 200,000
# runs, linear in them). Runs without a tenant are in no tenant's count.
_TENANT_RUN_COUNTS = (
    "CREATE TABLE IF NOT EXISTS tenant_run_counts ("
    "tenant TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, "
    "PRIMARY KEY (tenant, status)) WITHOUT ROWID"
)
_COUNT_TENANT_RUNS = (
    "INSERT INTO tenant_run_counts (tenant, status, n) SELECT tenant, status, COUNT(*) "
    "FROM runs WHERE tenant IS NOT NULL GROUP BY tenant, status"
)
# And by hour of creation, for a tenant's counts within a date range (its "Last 30 days"),
# as run_hours does for every run's.
_TENANT_RUN_HOURS = (
    "CREATE TABLE IF NOT EXISTS tenant_run_hours ("
    "tenant TEXT NOT NULL, hour TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, "
    "PRIMARY KEY (tenant, hour, status)) WITHOUT ROWID"
)
_COUNT_TENANT_RUN_HOURS = (
    "INSERT INTO tenant_run_hours (tenant, hour, status, n) SELECT tenant, substr(created_at, 1, 13), status, "
    "COUNT(*) FROM runs WHERE tenant IS NOT NULL AND created_at IS NOT NULL "
    "GROUP BY tenant, substr(created_at, 1, 13), status"
)


# Every run by status (rehearsals apart): the overview's and the run history's counts, and
# the total a Stuck count takes the runs heard of since its bound from
# (queries.run_status_counts). From run_counts they summed a row or two a workflow (14 ms at
# 20,000 workflows); through the stuck runs' index the Stuck count read each stuck run's
# entry (17-26 ms for 100,000 stuck runs). Counted from run_counts at the upgrade.
_RUN_STATUS_TOTALS = (
    "CREATE TABLE IF NOT EXISTS run_status_totals ("
    "status TEXT NOT NULL, rehearsal INTEGER NOT NULL, n INTEGER NOT NULL, "
    "PRIMARY KEY (status, rehearsal)) WITHOUT ROWID"
)
_COUNT_RUN_STATUS_TOTALS = (
    "INSERT INTO run_status_totals (status, rehearsal, n) SELECT status, rehearsal, SUM(n) "
    "FROM run_counts GROUP BY status, rehearsal"
)


# The first and the last position (seq) of the runs created in each hour: a page of a date
# range whose runs are not among the newest (the middle of a month) reads the hours whose
# runs can be on it, newest first, and stops at the first that cannot (queries._positions_by_hour),
# where it sorted every run of the range by seq (72-111 ms for ten days of a million-run
# month). A run's row is made at its trigger, its first event, and keeps its seq and its
# creation time: an hour's runs only grow, so its first and last are theirs exactly.
_RUN_HOUR_SEQS = (
    "CREATE TABLE IF NOT EXISTS run_hour_seqs ("
    "hour TEXT PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL) WITHOUT ROWID"
)
_COUNT_RUN_HOUR_SEQS = (
    "INSERT INTO run_hour_seqs (hour, first_seq, last_seq) SELECT substr(created_at, 1, 13), MIN(seq), MAX(seq) "
    "FROM runs WHERE created_at IS NOT NULL GROUP BY substr(created_at, 1, 13)"
)
_WIDEN_RUN_HOUR = (
    "INSERT INTO run_hour_seqs (hour, first_seq, last_seq) VALUES (?, ?, ?) ON CONFLICT (hour) DO UPDATE SET "
    "first_seq = CASE WHEN excluded.first_seq < run_hour_seqs.first_seq THEN excluded.first_seq ELSE run_hour_seqs.first_seq END, "
    "last_seq = CASE WHEN excluded.last_seq > run_hour_seqs.last_seq THEN excluded.last_seq ELSE run_hour_seqs.last_seq END"
)


# Runs appended long after they were created (an older export imported into a live store, a
# service appending its history after the fact) each stretched their hour's last seq to the
# log's end, and with it every bound run_hour_seqs gives: the pages of a range or of runs
# quiet since a time read every newer run (60 such runs in a million: up to 376 ms). A run
# whose hour is more than LATE_HOURS before the newest hour already holding
# QUALIFYING_RUNS runs is set apart (run_late_seqs), and the others' hours kept as well
# (run_hour_seqs_on_time): the pages bound their reads by these and read the few set apart
# on their own (queries._late_spans). A lone run stamped far ahead (a wrong clock) holds
# too few runs to make its hour the newest, so the runs after it are not all set apart.
LATE_HOURS = 6
"""How many hours before the newest a run's hour may lie and its run still count in order."""
QUALIFYING_RUNS = 20
"""How many runs an hour holds before it can be the newest that later runs are measured by."""


def hour_number(hour: str) -> int:
    """An hour ("2026-11-01T09") counted from year 0 as if every month had 31 days: in
    order, and as many apart as they are within a month (a day or three more across a
    month's end, which only sets a few more runs apart there)."""
    return ((int(hour[:4]) * 12 + int(hour[5:7])) * 31 + int(hour[8:10])) * 24 + int(hour[11:13])


_HOUR_NUMBER_SQL = (
    "((CAST(substr({0}, 1, 4) AS INTEGER) * 12 + CAST(substr({0}, 6, 2) AS INTEGER)) * 31 "
    "+ CAST(substr({0}, 9, 2) AS INTEGER)) * 24 + CAST(substr({0}, 12, 2) AS INTEGER)"
)
_RUN_LATE_SEQS = "CREATE TABLE IF NOT EXISTS run_late_seqs (seq INTEGER PRIMARY KEY, hour TEXT NOT NULL)"
_RUN_HOUR_SEQS_ON_TIME = (
    "CREATE TABLE IF NOT EXISTS run_hour_seqs_on_time ("
    "hour TEXT PRIMARY KEY, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL) WITHOUT ROWID"
)
# The fold's rule in one statement: each run's newest hour is the greatest of those whose
# QUALIFYING_RUNS-th run came before it (in seq order, as the fold takes them).
_SET_APART_LATE_RUNS = (
    "INSERT INTO run_late_seqs (seq, hour) SELECT seq, hour FROM ("
    "SELECT seq, hour, num, MAX(CASE WHEN k = " + str(QUALIFYING_RUNS) + " THEN num END) "
    "OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newest FROM ("
    "SELECT seq, substr(created_at, 1, 13) AS hour, " + _HOUR_NUMBER_SQL.format("created_at") + " AS num, "
    "ROW_NUMBER() OVER (PARTITION BY substr(created_at, 1, 13) ORDER BY seq) AS k "
    "FROM runs WHERE created_at IS NOT NULL) AS numbered) AS ordered WHERE num < newest - " + str(LATE_HOURS)
)
_COUNT_RUN_HOUR_SEQS_ON_TIME = (
    "INSERT INTO run_hour_seqs_on_time (hour, first_seq, last_seq) SELECT substr(created_at, 1, 13), MIN(seq), MAX(seq) "
    "FROM runs WHERE created_at IS NOT NULL AND seq NOT IN (SELECT seq FROM run_late_seqs) "
    "GROUP BY substr(created_at, 1, 13)"
)
_WIDEN_RUN_HOUR_ON_TIME = _WIDEN_RUN_HOUR.replace("run_hour_seqs", "run_hour_seqs_on_time")
_SET_APART = "INSERT INTO run_late_seqs (seq, hour) VALUES (?, ?)"
_FROM_VERSION_9 = (_RUN_LATE_SEQS, _SET_APART_LATE_RUNS, _RUN_HOUR_SEQS_ON_TIME, _COUNT_RUN_HOUR_SEQS_ON_TIME)


class _Order:
    """What the rule for late runs goes by, as of the runs folded so far."""

    __slots__ = ("newest", "bar", "counts")

    def __init__(self, newest: str | None, counts: dict[str, int]) -> None:
        self.newest = newest
        """The newest hour holding :data:`QUALIFYING_RUNS` runs (None: none yet)."""
        self.bar = None if newest is None else hour_number(newest) - LATE_HOURS
        """The number of the earliest hour whose runs are in order (see :func:`hour_number`)."""
        self.counts = counts
        """How many runs each hour after the newest holds."""


def _recall_order(c: sqlite3.Cursor) -> _Order:
    """Read what the rule for late runs goes by from the counts by hour (see :class:`_Order`).

    Read from the newest hour back, a chunk at a time, to the first that holds enough: a
    live store's newest hours do, where every hour's counts, grouped whole, would be read
    at each catch-up (a year's store: some 50,000 rows)."""
    counts: dict[str, int] = {}
    newest = None
    after: list[str] = []
    while True:
        c.execute(
            f"SELECT hour, status, n FROM run_hours{' WHERE (hour, status) < (?, ?)' if after else ''} "
            "ORDER BY hour DESC, status DESC LIMIT ?",
            [*after, _ORDER_CHUNK],
        )
        rows = c.fetchall()
        for hour, _, n in rows:
            counts[hour] = counts.get(hour, 0) + int(n)
        # The last hour read may go on into the next chunk: counted short, it is judged
        # again there (a count only grows, so one that holds enough already does).
        newest = next((h for h in sorted(counts, reverse=True) if counts[h] >= QUALIFYING_RUNS), None)
        if newest is not None or len(rows) < _ORDER_CHUNK:
            break
        after = [rows[-1][0], rows[-1][1]]
    return _Order(newest, {h: n for h, n in counts.items() if newest is None or h > newest})


_ORDER_CHUNK = 256
"""Rows of run_hours read a statement at a time to find the newest hour of enough runs."""


def _is_late(order: _Order, hour: str) -> bool:
    """Whether a new run created in ``hour`` is set apart as late, and count it by its hour
    (the runs after it are measured by the newest hour so far)."""
    newest = order.newest
    if newest is not None and hour <= newest:
        return hour < newest and hour_number(hour) < order.bar  # type: ignore[operator]
    counts = order.counts
    n = counts[hour] = counts.get(hour, 0) + 1
    if n >= QUALIFYING_RUNS:
        order.newest, order.bar = hour, hour_number(hour) - LATE_HOURS
        order.counts = {h: m for h, m in counts.items() if h > hour}
    return False


# What version 6 adds to version 5's tables, counted from them (see RunsView.upgrades).
_FROM_VERSION_5 = (_RUN_STATUS_TOTALS, _COUNT_RUN_STATUS_TOTALS, _RUN_HOUR_SEQS, _COUNT_RUN_HOUR_SEQS)


# How many runs in each status, created in each hour, were last heard of in each hour: the
# Stuck count of every run (the overview's, the run history's under no filter but the
# chip's) takes the runs heard of since its bound, those of the hours after the bound's and
# of the rest of its hour, from the runs of its statuses; a range's (the run history's "Last
# 30 days" and Stuck) those of them created in its whole hours too. Read in the index of last
# events, entry by entry, they were every run heard of in the last hour (a store whose runs
# run for a day: 33,000, some 108,000 entries read by the caps; 14-16 ms).
_RUN_LAST_HOURS = (
    "CREATE TABLE IF NOT EXISTS run_last_hours ("
    "status TEXT NOT NULL, hour TEXT NOT NULL, created TEXT NOT NULL, n INTEGER NOT NULL, "
    "PRIMARY KEY (status, hour, created)) WITHOUT ROWID"
)
_COUNT_RUN_LAST_HOURS = (
    "INSERT INTO run_last_hours (status, hour, created, n) "
    "SELECT status, substr(updated_at, 1, 13), substr(created_at, 1, 13), COUNT(*) "
    "FROM runs WHERE updated_at IS NOT NULL AND created_at IS NOT NULL "
    "GROUP BY status, substr(updated_at, 1, 13), substr(created_at, 1, 13)"
)

# And a tenant's, for its Stuck count (the run history's under a tenant filter, with a date
# range or not), as run_last_hours does for every run's: through the caps it read every run
# heard of in the last hour, of every tenant (12 ms where a day's 33,000 run still).
_TENANT_RUN_LAST_HOURS = (
    "CREATE TABLE IF NOT EXISTS tenant_run_last_hours ("
    "tenant TEXT NOT NULL, status TEXT NOT NULL, hour TEXT NOT NULL, created TEXT NOT NULL, n INTEGER NOT NULL, "
    "PRIMARY KEY (tenant, status, hour, created)) WITHOUT ROWID"
)
_COUNT_TENANT_RUN_LAST_HOURS = (
    "INSERT INTO tenant_run_last_hours (tenant, status, hour, created, n) "
    "SELECT tenant, status, substr(updated_at, 1, 13), substr(created_at, 1, 13), COUNT(*) "
    "FROM runs WHERE tenant IS NOT NULL AND updated_at IS NOT NULL AND created_at IS NOT NULL "
    "GROUP BY tenant, status, substr(updated_at, 1, 13), substr(created_at, 1, 13)"
)

# A workflow's runs by hour of creation and status, for its counts within a date range (the
# run history's chips under a workflow filter and "Last 30 days"), as run_hours does for
# every run's: through its index they read every run of the workflow in the range, entry by
# entry (4-7 ms for 25,000 runs at 1M, linear in them).
_WORKFLOW_RUN_HOURS = (
    "CREATE TABLE IF NOT EXISTS workflow_run_hours ("
    "workflow TEXT NOT NULL, hour TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, "
    "PRIMARY KEY (workflow, hour, status)) WITHOUT ROWID"
)
_COUNT_WORKFLOW_RUN_HOURS = (
    "INSERT INTO workflow_run_hours (workflow, hour, status, n) SELECT workflow, substr(created_at, 1, 13), status, "
    "COUNT(*) FROM runs WHERE created_at IS NOT NULL GROUP BY workflow, substr(created_at, 1, 13), status"
)

# And a workflow's, for its Stuck count (the run history's under a workflow filter, with a
# date range or not), as run_last_hours does for every run's: in its index it read every
# one of its runs of the chip's statuses (0.7 ms for the busiest of 40 workflows at a
# million runs, linear in them: a workflow of most of a live store's runs, 10-20 ms).
_WORKFLOW_RUN_LAST_HOURS = (
    "CREATE TABLE IF NOT EXISTS workflow_run_last_hours ("
    "workflow TEXT NOT NULL, status TEXT NOT NULL, hour TEXT NOT NULL, created TEXT NOT NULL, n INTEGER NOT NULL, "
    "PRIMARY KEY (workflow, status, hour, created)) WITHOUT ROWID"
)
_COUNT_WORKFLOW_RUN_LAST_HOURS = (
    "INSERT INTO workflow_run_last_hours (workflow, status, hour, created, n) "
    "SELECT workflow, status, substr(updated_at, 1, 13), substr(created_at, 1, 13), COUNT(*) "
    "FROM runs WHERE updated_at IS NOT NULL AND created_at IS NOT NULL "
    "GROUP BY workflow, status, substr(updated_at, 1, 13), substr(created_at, 1, 13)"
)
# A tenant's runs of a workflow by status (the run history's chips with both filters): in
# either's index every run of the other was read, row by row (220 ms for a tenant's 200,000
# runs of a workflow of a million). Runs without a tenant are in none of these.
_WORKFLOW_TENANT_RUN_COUNTS = (
    "CREATE TABLE IF NOT EXISTS workflow_tenant_run_counts ("
    "workflow TEXT NOT NULL, tenant TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, "
    "PRIMARY KEY (workflow, tenant, status)) WITHOUT ROWID"
)
_COUNT_WORKFLOW_TENANT_RUNS = (
    "INSERT INTO workflow_tenant_run_counts (workflow, tenant, status, n) SELECT workflow, tenant, status, COUNT(*) "
    "FROM runs WHERE tenant IS NOT NULL GROUP BY workflow, tenant, status"
)
_FROM_VERSION_8 = (
    _WORKFLOW_RUN_LAST_HOURS, _COUNT_WORKFLOW_RUN_LAST_HOURS, _WORKFLOW_TENANT_RUN_COUNTS, _COUNT_WORKFLOW_TENANT_RUNS,
)

# What version 9 makes again of version 7's tables (run_last_hours by the hour of creation
# too) and adds to them (tenant_run_last_hours, workflow_run_hours, workflow_run_last_hours),
# and version 7 adds to version 6's, counted from them.
_FROM_VERSION_6 = (
    _RUN_LAST_HOURS, _COUNT_RUN_LAST_HOURS, _TENANT_RUN_LAST_HOURS, _COUNT_TENANT_RUN_LAST_HOURS,
    _WORKFLOW_RUN_HOURS, _COUNT_WORKFLOW_RUN_HOURS, *_FROM_VERSION_8,
)


def _widen(bounds: dict[str, list[int]], hour: str, seq: int) -> None:
    """Take a new run's seq into its hour's first and last."""
    seen = bounds.get(hour)
    if seen is None:
        bounds[hour] = [seq, seq]
    elif seq < seen[0]:
        seen[0] = seq
    elif seq > seen[1]:
        seen[1] = seq


def _count_by_hour_tenant_and_workflow(
    row: tuple[Any, ...], delta: int, hours: Counters, tenants: Counters, tenant_hours: Counters,
    workflow_hours: Counters, workflow_tenants: Counters,
) -> None:
    """Count a runs row (``delta``: 1 as written, -1 as it was) by its hour of creation,
    its tenant, and both, by its workflow and hour of creation, and by its workflow and
    tenant, each with its status."""
    status, tenant, created = row[7], row[4], row[8]
    # Rows are of triggered runs, which have a creation time: one without would be in no
    # range, so in no hour's count either; a run without a tenant is in no tenant's.
    if created is not None:
        hours.add((hour_of(created), status), delta)
        workflow_hours.add((row[2], hour_of(created), status), delta)
    if tenant is not None:
        tenants.add((tenant, status), delta)
        workflow_tenants.add((row[2], tenant, status), delta)
        if created is not None:
            tenant_hours.add((tenant, hour_of(created), status), delta)


def _count_by_last_hour(
    row: tuple[Any, ...], delta: int, last_hours: Counters, tenant_last_hours: Counters, workflow_last_hours: Counters
) -> None:
    """Count a runs row (``delta``: 1 as written, -1 as it was) by its status and the hours
    of its last event and creation, and so again under its tenant and under its workflow."""
    status, tenant, created, last = row[7], row[4], row[8], row[18]
    if created is None or last is None:
        return  # never so for a triggered run's row (see _count_by_hour_tenant_and_workflow)
    key = (status, hour_of(last), hour_of(created))
    last_hours.add(key, delta)
    workflow_last_hours.add((row[2], *key), delta)
    if tenant is not None:
        tenant_last_hours.add((tenant, *key), delta)


class RunsView(View):
    """Run records, counts by status, and per-workflow first/last times."""

    name = "runs"
    # 2: run_emails held only messages engagement reads; 3: no run_emails at all; 4: a
    # workflow's last completion from workflow_completions (the summaries' kept a failure
    # a retry had undone); 5: run_hours, tenant_run_counts and tenant_run_hours; 6:
    # run_status_totals and run_hour_seqs; 7: run_last_hours; 8: run_last_hours by the hour
    # of creation too, tenant_run_last_hours and workflow_run_hours; 9:
    # workflow_run_last_hours and workflow_tenant_run_counts; 10: run_late_seqs and
    # run_hour_seqs_on_time
    version = 10
    topics = RUN_EVENT_TYPES
    tables = (
        "runs", "run_counts", "workflow_summaries", "workflow_completions", "run_hours", "tenant_run_counts",
        "tenant_run_hours", "run_status_totals", "run_hour_seqs", "run_last_hours", "tenant_run_last_hours",
        "workflow_run_hours", "workflow_run_last_hours", "workflow_tenant_run_counts", "run_late_seqs",
        "run_hour_seqs_on_time",
    )
    retired_tables = ("run_emails",)
    ddl = (
        "CREATE TABLE IF NOT EXISTS runs ("
        "id TEXT PRIMARY KEY, seq INTEGER NOT NULL, workflow TEXT, recipient TEXT, "
        "recipient_json TEXT, tenant TEXT, trigger_source TEXT, workflow_run_id TEXT, "
        "status TEXT, created_at TEXT, scheduled_at TEXT, executed_at TEXT, completed_at TEXT, "
        "duration_seconds REAL, retry_count INTEGER, max_retries INTEGER, error_message TEXT, "
        "error_count INTEGER, updated_at TEXT, rules TEXT)",
        # Listing is newest first by seq (the trigger's log position): one index per filter.
        "CREATE UNIQUE INDEX IF NOT EXISTS runs_by_seq ON runs (seq)",
        # A workflow's runs hold their creation time too, so a workflow's page within a date
        # range whose runs are not its newest checks the runs newer than it in the index
        # alone: through (workflow, seq), which it replaces, it read each one's row (8-10 ms
        # for a page of ten days in the middle of a million-run month, 25,000 runs of the
        # workflow; 2-3 ms so). No new version, as below. And their tenant, so that a
        # tenant's runs of a workflow (both boxes of the run history filled, no status) are
        # read in it, the tenant checked in each entry (queries._from): through the tenant's
        # index, the planner's pick, it read a row a run of the tenant's for its workflow
        # (9-33 ms for a page at a million runs, one workflow of 40). It replaces (workflow,
        # seq, created_at), no row of which ever changes, nor does this one's.
        "CREATE INDEX IF NOT EXISTS runs_by_workflow_seq_created_tenant ON runs (workflow, seq, created_at, tenant)",
        "DROP INDEX IF EXISTS runs_by_workflow_seq_created",
        "DROP INDEX IF EXISTS runs_by_workflow",
        "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, seq)",
        "CREATE INDEX IF NOT EXISTS runs_by_workflow_status ON runs (workflow, status, seq)",
        "CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant, seq)",
        "CREATE INDEX IF NOT EXISTS runs_by_recipient ON runs (recipient, seq)",
        # Runs with errors, with every column a runs listing filters by (queries._from): a
        # page of them under another filter, or their counts, reads no row of the table. It
        # replaces (seq) alone; also no new version (see below).
        "CREATE INDEX IF NOT EXISTS runs_with_errors_filtered ON runs "
        "(seq, status, workflow, tenant, recipient, created_at, updated_at, error_count) WHERE error_count > 0",
        "DROP INDEX IF EXISTS runs_with_errors",
        # A date range's page and its counts by status (`runs list --starting-at/--ending-at`,
        # the web's Created filter): the range's entries hold its runs' status and seq, so
        # neither the sort of the range by seq nor the count reads a row of the table. On
        # (created_at) alone both read every run of the range: a page of a 300,000-run month
        # took 343 ms, 25 ms now. It replaces that index (no new version: see below). The
        # runs' tenant is in its entries too, so a tenant's counts within a range read none
        # either for the part-hours at the range's ends (queries.run_status_counts): through
        # (created_at, status, seq), which it replaces, they read two hours of runs' rows
        # (15 ms at 10M events, 10,000 runs an hour).
        "CREATE INDEX IF NOT EXISTS runs_by_created_status_seq_tenant ON runs (created_at, status, seq, tenant)",
        "DROP INDEX IF EXISTS runs_by_created_status_seq",
        "DROP INDEX IF EXISTS runs_by_created",
        # A workflow's counts within a date range count the part-hours at its ends in it
        # (queries._counts), reading no row of the table (its runs-over-time chart did too,
        # until workflow_run_hours). A new index is no new version: a store made without it
        # gets it the next time the views' tables are checked. Its entries hold the runs'
        # last event too, so a workflow's Stuck count (its pending and running runs quiet
        # since a time, within a date range or not) reads no row either: through (workflow,
        # status, created_at), which it replaces, it read every stuck run's row (105 ms for
        # 100,000 stuck runs in all) or its workflow's unfinished runs' in the range. And their
        # seq, so that a page of a workflow's runs of a status quiet since a time (the run
        # history's Stuck under a workflow filter) reads them in it, last created first
        # (queries._positions_by_creation): through the stuck runs' index it read every stuck
        # run's row to find its workflow (159 ms where a day's runs run still). It replaces
        # (workflow, status, created_at, updated_at). And their tenant, so that a tenant's
        # runs of a workflow are counted within a range or quiet since a time in it alone, a
        # status at a time: the planner, given the tenant's index of (tenant, status, seq,
        # created_at, workflow), read each of the tenant's runs of the statuses there instead
        # (20 ms for a tenant's completed runs within the last 24 hours at a million runs).
        # It replaces (workflow, status, created_at, updated_at, seq); no new version.
        "CREATE INDEX IF NOT EXISTS runs_by_workflow_status_created_updated_seq_tenant ON runs "
        "(workflow, status, created_at, updated_at, seq, tenant)",
        "DROP INDEX IF EXISTS runs_by_workflow_status_created_updated_seq",
        "DROP INDEX IF EXISTS runs_by_workflow_status_created_updated",
        "DROP INDEX IF EXISTS runs_by_workflow_status_created",
        # A tenant's runs of a status, newest first (the run history's chip of a status under
        # a tenant filter), and its runs by status (those chips' counts, with a date range or
        # not), reading no row of the table: through runs_by_tenant each read every run of
        # the tenant, row by row, or, for a page of a status the tenant has few runs of, as
        # many of them as it took to find a page (the counts 14 ms at 1M for a tenant of
        # 12,000 runs, linear in them). Also no new version, as above.
        # Its entries hold the runs' workflow too, so that a tenant's runs of a workflow (the
        # run history with both boxes filled) are picked in it without a row read for each of
        # the tenant's runs of the status: through (tenant, status, seq, created_at), which it
        # replaces, SQLite's planner read one a run for its workflow (15 ms for a page of a
        # tenant's failed runs of one of 40 workflows at a million runs). No new version.
        "CREATE INDEX IF NOT EXISTS runs_by_tenant_status_seq_workflow ON runs (tenant, status, seq, created_at, workflow)",
        "DROP INDEX IF EXISTS runs_by_tenant_status_seq",
        # Stuck runs (`runs list --status running --updated-before T`) are the old ones of a
        # status whose newest runs are all still heard of: runs_by_status would walk past every
        # one of those, a row each, to the first stuck run. This seeks the stuck ones (and sorts
        # only them by seq); also no new version, as above. Their creation time and tenant
        # are in its entries too, so the run history's Stuck count under a date range or a
        # tenant reads no row of the table: through (status, updated_at, seq) it read every
        # stuck run's (120 ms for 100,000 of them). It replaces that index, as
        # runs_by_created_status_seq_tenant did runs_by_created. Their workflow too, so that
        # a workflow's Stuck count counts the rest of its bound's hour in it, as every run's
        # and a tenant's do (queries._heard_of_since); it replaces (status, updated_at, seq,
        # created_at, tenant), dropped first so that the new one takes its pages rather than
        # growing the file by them. (A workflow's quiet runs: see above.)
        "DROP INDEX IF EXISTS runs_by_status_updated_created",
        "DROP INDEX IF EXISTS runs_by_status_updated",
        "CREATE INDEX IF NOT EXISTS runs_by_status_updated_filtered ON runs "
        "(status, updated_at, seq, created_at, tenant, workflow)",
        "CREATE TABLE IF NOT EXISTS run_counts ("
        "workflow TEXT NOT NULL, status TEXT NOT NULL, rehearsal INTEGER NOT NULL, n INTEGER NOT NULL, "
        "PRIMARY KEY (workflow, status, rehearsal)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS workflow_summaries ("
        "workflow TEXT PRIMARY KEY, first_created_at TEXT, last_created_at TEXT, "
        "first_executed_at TEXT) WITHOUT ROWID",
        # How many runs of a workflow completed at each time, as their rows say: its
        # greatest key is the workflow's last completion (queries.workflow_details).
        "CREATE TABLE IF NOT EXISTS workflow_completions ("
        "workflow TEXT NOT NULL, completed_at TEXT NOT NULL, n INTEGER NOT NULL, "
        "PRIMARY KEY (workflow, completed_at)) WITHOUT ROWID",
        _RUN_HOURS,
        _TENANT_RUN_COUNTS,
        _TENANT_RUN_HOURS,
        _RUN_STATUS_TOTALS,
        _RUN_HOUR_SEQS,
        _RUN_LAST_HOURS,
        _TENANT_RUN_LAST_HOURS,
        _WORKFLOW_RUN_HOURS,
        _WORKFLOW_RUN_LAST_HOURS,
        _WORKFLOW_TENANT_RUN_COUNTS,
        _RUN_LATE_SEQS,
        # A page reads the runs set apart that its times could pick (queries._late_hours):
        # through the table alone it read every one (an import of a past day's runs read
        # whole by each page of a week it never picks among). No new version, as above.
        "CREATE INDEX IF NOT EXISTS run_late_seqs_by_hour ON run_late_seqs (hour, seq)",
        _RUN_HOUR_SEQS_ON_TIME,
    )
    # Version 4's tables hold every run's row: its runs by hour and by tenant are counted
    # from them, in place, rather than the view folded again from the log (minutes at 10M
    # events; the count, seconds); version 5's, its runs by status from run_counts and its
    # hours' first and last runs from the runs; version 6's, its runs by status and hour of
    # their last event from the runs; version 7's, those by their hour of creation too, and
    # a tenant's, and a workflow's by hour of creation (and by hour of last event); version
    # 8's, a workflow's by hour of last event, and a tenant's runs of a workflow; version
    # 9's, its runs set apart as late and its hours' first and last runs of the others.
    upgrades = {
        4: (
            _RUN_HOURS, _COUNT_RUN_HOURS, _TENANT_RUN_COUNTS, _COUNT_TENANT_RUNS, _TENANT_RUN_HOURS, _COUNT_TENANT_RUN_HOURS,
            *_FROM_VERSION_5, *_FROM_VERSION_6, *_FROM_VERSION_9,
        ),
        5: (*_FROM_VERSION_5, *_FROM_VERSION_6, *_FROM_VERSION_9),
        6: (*_FROM_VERSION_6, *_FROM_VERSION_9),
        7: (*_FROM_VERSION_6, *_FROM_VERSION_9),
        8: (*_FROM_VERSION_8, *_FROM_VERSION_9),
        9: _FROM_VERSION_9,
    }
    query_indexes = frozenset(
        {
            "runs_by_seq",
            "runs_by_workflow_seq_created_tenant",
            "runs_by_status",
            "runs_by_workflow_status",
            "runs_by_tenant",
            "runs_by_recipient",
            "runs_with_errors_filtered",
            "runs_by_created_status_seq_tenant",
            "runs_by_workflow_status_created_updated_seq_tenant",
            "runs_by_tenant_status_seq_workflow",
            "runs_by_status_updated_filtered",
        }
    )

    def fold(self, c: sqlite3.Cursor, events: Sequence[Event], memory: Memory, log: LogReader) -> Writes:
        """Fold run events into runs, counts and summaries."""
        runs: dict[str, list[Any]] = memory.table("runs")  # id -> [record, seq, row as written]
        # A memory that knows every row reads only keys it forgot, one by one as they come.
        if not memory.complete:
            _recall_runs(c, runs, {b["run_id"] for _, _, b in events})
        touched: dict[str, list[Any]] = {}
        # Per-workflow times come from the events themselves, not from the rows' final
        # state, so they are the same however the log is cut into pages.
        times: dict[str, list[str | None]] = {}
        for position, kind, body in events:
            rid = body["run_id"]
            entry = touched.get(rid)
            if entry is None:
                entry = memory.find(c, "runs", rid, _recall_runs)
                if entry is None:
                    entry = [RunRecord.new(rid), position, None]
                touched[rid] = entry
            record = entry[0]
            record.apply(body)
            if record.workflow is not None and kind in _TIMES:
                _times(times, record.workflow, kind, body["occurred_at"])

        counts = Counters("run_counts", ("workflow", "status", "rehearsal"))
        totals = Counters("run_status_totals", ("status", "rehearsal"))
        hours = Counters("run_hours", ("hour", "status"))
        tenants = Counters("tenant_run_counts", ("tenant", "status"))
        tenant_hours = Counters("tenant_run_hours", ("tenant", "hour", "status"))
        workflow_hours = Counters("workflow_run_hours", ("workflow", "hour", "status"))
        last_hours = Counters("run_last_hours", ("status", "hour", "created"))
        tenant_last_hours = Counters("tenant_run_last_hours", ("tenant", "status", "hour", "created"))
        workflow_last_hours = Counters("workflow_run_last_hours", ("workflow", "status", "hour", "created"))
        workflow_tenants = Counters("workflow_tenant_run_counts", ("workflow", "tenant", "status"))
        completions = Counters("workflow_completions", ("workflow", "completed_at"))
        new_hours: dict[str, list[int]] = {}  # hour -> [first seq, last seq] of runs new here
        on_time: dict[str, list[int]] = {}  # the same, of those not set apart as late
        late: list[tuple[int, str]] = []  # (seq, hour) of runs new here set apart as late
        # Kept as one entry: a memory that forgets rows drops it whole and it is read again.
        kept = memory.table("run_order")
        order = kept.get(0)
        if order is None:
            order = kept[0] = _recall_order(c)
        out = []
        for rid, entry in touched.items():
            record, seq, old = entry
            if record.workflow is None:
                continue  # never triggered: nothing to show (the rules keep this out of the log)
            row = _row(record, seq)
            if row != old:
                done = row[11]  # completed_at
                if old is None or old[7] != row[7] or old[8] != row[8] or old[4] != row[4] or old[2] != row[2]:
                    if old is not None:
                        _count_by_hour_tenant_and_workflow(old, -1, hours, tenants, tenant_hours, workflow_hours, workflow_tenants)
                    _count_by_hour_tenant_and_workflow(row, 1, hours, tenants, tenant_hours, workflow_hours, workflow_tenants)
                if old is None and row[8] is not None:
                    # New runs come in seq order (each is touched first by its trigger).
                    hour = hour_of(row[8])
                    _widen(new_hours, hour, seq)
                    if _is_late(order, hour):
                        late.append((seq, hour))
                    else:
                        _widen(on_time, hour, seq)
                # Most events leave a run in its status and its last event's hour (and every
                # one in its hour of creation and its tenant, its trigger's, which comes once:
                # compared all the same, as for the counts by hour, tenant and workflow).
                if (
                    old is None or old[7] != row[7] or (old[18] or "")[:13] != (row[18] or "")[:13]
                    or (old[8] or "")[:13] != (row[8] or "")[:13] or old[4] != row[4] or old[2] != row[2]
                ):
                    if old is not None:
                        _count_by_last_hour(old, -1, last_hours, tenant_last_hours, workflow_last_hours)
                    _count_by_last_hour(row, 1, last_hours, tenant_last_hours, workflow_last_hours)
                if old is not None:
                    rehearsal = int(old[5] == "rehearsal")
                    counts.add((old[2], old[7], rehearsal), -1)
                    totals.add((old[7], rehearsal), -1)
                    was = old[11]
                    if was is not None and was != done:
                        completions.add((old[2], was), -1)
                    elif was == done:
                        done = None  # counted already
                rehearsal = int(row[5] == "rehearsal")
                counts.add((row[2], row[7], rehearsal), 1)
                totals.add((row[7], rehearsal), 1)
                if done is not None:
                    completions.add((row[2], done), 1)
                out.append(row)
                entry[2] = row
            touch(runs, rid, entry)
        writes = Writes()
        writes.add(_UPSERT_RUN, out, key=_BY_ID)
        writes.count(counts)
        writes.count(totals)
        writes.count(completions)
        writes.count(hours)
        writes.count(tenants)
        writes.count(tenant_hours)
        writes.count(workflow_hours)
        writes.count(last_hours)
        writes.count(tenant_last_hours)
        writes.count(workflow_last_hours)
        writes.count(workflow_tenants)
        writes.add(_SUMMARIES, [(w, *s) for w, s in times.items()])
        writes.add(_WIDEN_RUN_HOUR, [(h, *bounds) for h, bounds in new_hours.items()])
        writes.add(_WIDEN_RUN_HOUR_ON_TIME, [(h, *bounds) for h, bounds in on_time.items()])
        writes.add(_SET_APART, late)
        return writes
