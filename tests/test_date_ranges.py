"""A date range of many runs (`runs list --starting-at/--ending-at`, the web's Created
filter): its page, the check for newer runs and its counts by status read the index of
creation times alone, never a row of the table for each run of the range.

The timings are benchmarks' (docs/benchmarks.md); these tests hold SQLite's plans, and the
answers against a filter over every run.
"""

from __future__ import annotations

import sqlite3

from flowledger import ledger, queries
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from tests.conftest import ev, triggered
from tests.histories import jsonl

RANGE = queries.RunFilters(starting_at="2026-11-03T00:00:00.000000Z", ending_at="2026-11-06T00:00:00.000000Z")


def _runs():
    events = []
    for i in range(60):
        run = f"r{i:02d}"
        at = f"2026-11-{1 + i % 9:02d}T{i % 24:02d}:00:00Z"
        events.append(triggered(run, occurred_at=at, workflow=f"w{i % 3}"))
        if i % 2 or i % 5 == 0:
            events.append(ev("run.started", run_id=run, occurred_at=at))
        if i % 5 == 0:
            events.append(ev("run.completed", run_id=run, occurred_at=at))
    return events


def _plan(c, sql, params):
    c.execute("EXPLAIN QUERY PLAN " + sql, params)
    return " | ".join(row[3] for row in c.fetchall())


def test_a_date_ranges_page_newer_check_and_counts_read_the_index_alone(log):
    ledger.append_input(log, jsonl(_runs()))
    ledger.query(log, queries.counts)
    where, params = queries._runs_where(RANGE)
    covering = "COVERING INDEX runs_by_created_status_seq"
    with log.backend.transaction(write=False) as c:
        # The page: the range's entries sorted by seq, the rows of the page alone read after.
        page = _plan(c, f"SELECT seq FROM runs WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?", [*params, 26])
        assert covering in page, page
        newer = _plan(c, f"SELECT 1 FROM runs WHERE {' AND '.join(where)} AND seq > ? LIMIT 1", [*params, 5])
        assert covering in newer, newer
        counts = _plan(c, f"SELECT status, COUNT(*) FROM runs WHERE {' AND '.join(where)} GROUP BY status", params)
        assert covering in counts, counts


def test_a_date_ranges_pages_and_counts_are_those_of_every_run_filtered(log):
    ledger.append_input(log, jsonl(_runs()))
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    wanted = [r for r in every if RANGE.starting_at <= r["created_at"] <= RANGE.ending_at]
    assert 10 < len(wanted) < len(every)
    seen, after = [], None
    while True:
        page = ledger.query(log, queries.list_runs, RANGE, page_size=4, after=after)
        seen += page["entries"]
        after = page["page_info"]["after"]
        if after is None:
            break
    assert seen == wanted
    counts = ledger.query(log, queries.run_status_counts, RANGE)
    assert counts["total"] == len(wanted)
    assert {s: counts[s] for s in ("pending", "running", "completed")} == {
        s: sum(r["status"] == s for r in wanted) for s in ("pending", "running", "completed")
    }


def test_a_store_with_the_older_index_of_creation_times_gets_the_new_one(log, store_path):
    ledger.append_input(log, jsonl(_runs()))
    Projector(log.backend).catch_up()
    with sqlite3.connect(store_path) as c:
        # As a store made by the release before looks: (created_at) alone.
        c.execute("DROP INDEX runs_by_created_status_seq")
        c.execute("CREATE INDEX runs_by_created ON runs (created_at)")
    reopened = open_log(store_path)
    try:
        Projector(reopened.backend).catch_up()
        assert ledger.query(reopened, queries.run_status_counts, RANGE)["total"] > 10
    finally:
        reopened.close()
    with sqlite3.connect(store_path) as c:
        names = {name for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'")}
    assert "runs_by_created_status_seq" in names and "runs_by_created" not in names
