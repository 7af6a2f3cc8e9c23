"""A date range of many runs (`runs list --starting-at/--ending-at`, the web's Created
filter, open at one end or not): its page, the check for newer runs and its counts by
status read the index of creation times alone, never a row of the table for each run of
the range (nor every run of the store).

The timings are benchmarks' (docs/benchmarks.md); these tests hold SQLite's plans, and the
answers against a filter over every run.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from flowledger import ledger, queries
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_queries_mutations import Recording, walk
from tests.test_status_pages import Said

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
    # Runs created at the range's very ends: within it.
    events.append(triggered("at-the-start", occurred_at="2026-11-03T00:00:00Z", workflow="w1"))
    events.append(triggered("at-the-end", occurred_at="2026-11-06T00:00:00Z", workflow="w1"))
    return events


def _plan(c, sql, params):
    c.execute("EXPLAIN QUERY PLAN " + sql, params)
    return " | ".join(row[3] for row in c.fetchall())


# A range open at one end: the web's "Last 24 hours" (and 7 and 30 days), `runs list
# --starting-at` or `--ending-at` alone.
SINCE = queries.RunFilters(starting_at=RANGE.starting_at)
UNTIL = queries.RunFilters(ending_at=RANGE.ending_at)


@pytest.mark.parametrize("filters", [RANGE, SINCE, UNTIL], ids=["both ends", "since", "until"])
def test_a_date_ranges_page_newer_check_and_counts_read_the_index_alone(log, filters):
    ledger.append_input(log, jsonl(_runs()))
    ledger.query(log, queries.counts)
    where, params = queries._runs_where(filters)
    covering = "COVERING INDEX runs_by_created_status_seq"
    with log.backend.transaction(write=False) as c:
        # The page: the range's entries sorted by seq, the rows of the page alone read after.
        page = _plan(c, f"SELECT seq FROM runs WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?", [*params, 26])
        assert covering in page, page
        newer = _plan(c, f"SELECT 1 FROM runs WHERE {' AND '.join(where)} AND seq > ? LIMIT 1", [*params, 5])
        assert covering in newer, newer
        counts = _plan(c, f"SELECT status, COUNT(*) FROM runs WHERE {' AND '.join(where)} GROUP BY status", params)
        assert covering in counts, counts


@pytest.mark.parametrize("filters", [RANGE, SINCE, UNTIL], ids=["both ends", "since", "until"])
def test_a_date_ranges_pages_and_counts_are_those_of_every_run_filtered(log, filters):
    ledger.append_input(log, jsonl(_runs()))
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    wanted = [
        r
        for r in every
        if (filters.starting_at is None or filters.starting_at <= r["created_at"])
        and (filters.ending_at is None or r["created_at"] <= filters.ending_at)
    ]
    assert 10 < len(wanted) < len(every)
    seen, after = [], None
    while True:
        page = ledger.query(log, queries.list_runs, filters, page_size=4, after=after)
        seen += page["entries"]
        after = page["page_info"]["after"]
        if after is None:
            break
    assert seen == wanted
    counts = ledger.query(log, queries.run_status_counts, filters)
    assert counts["total"] == len(wanted)
    assert {s: counts[s] for s in ("pending", "running", "completed")} == {
        s: sum(r["status"] == s for r in wanted) for s in ("pending", "running", "completed")
    }


def test_a_store_with_the_older_index_of_creation_times_gets_the_new_one(log, store_path):
    ledger.append_input(log, jsonl(_runs()))
    Projector(log.backend).catch_up()
    with sqlite3.connect(store_path) as c:
        # As a store made by the release before looks: (created_at) alone.
        c.execute("DROP INDEX runs_by_created_status_seq_tenant")
        c.execute("CREATE INDEX runs_by_created ON runs (created_at)")
    reopened = open_log(store_path)
    try:
        Projector(reopened.backend).catch_up()
        assert ledger.query(reopened, queries.run_status_counts, RANGE)["total"] > 10
    finally:
        reopened.close()
    with sqlite3.connect(store_path) as c:
        names = {name for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'")}
    assert "runs_by_created_status_seq_tenant" in names and "runs_by_created" not in names


@pytest.mark.parametrize("probe", [1, 4, 9, 500])
@pytest.mark.parametrize("filters", [RANGE, SINCE, UNTIL], ids=["both ends", "since", "until"])
def test_a_ranges_pages_both_ways_are_its_runs_whichever_way_they_are_found(log, monkeypatch, filters, probe):
    """However many runs the page reads in seq order before it searches the index of
    creation times, its pages forwards and back are the range's runs, each once, with a
    cursor exactly where there is more (the runs' times are not in seq order here)."""
    monkeypatch.setattr(queries, "PROBE_ROWS", probe)
    ledger.append_input(log, jsonl(_runs()))
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    low, high = filters.starting_at or "", filters.ending_at or "~"
    wanted = [r["id"] for r in every if low <= r["created_at"] <= high]
    by_contact = replace(filters, workflow="w1")
    for page_size in (1, 4, 7):
        assert walk(log, queries.list_runs, filters, key="id", page_size=page_size) == wanted
        assert walk(log, queries.list_runs, replace(filters, workflow="w1"), key="id", page_size=page_size) == [
            r["id"] for r in every if low <= r["created_at"] <= high and r["workflow"] == "w1"
        ]
        assert walk(log, queries.list_runs_by_contact, by_contact, "user-1", key="id", page_size=page_size) == [
            r["id"] for r in every if low <= r["created_at"] <= high and r["workflow"] == "w1"
        ]


def test_a_range_of_the_newest_runs_is_found_in_seq_order_and_an_older_one_in_the_index(log, monkeypatch):
    """Runs created in seq order, as a live store's are: "since" a recent time, the page's
    runs are among the first read in seq order, and the index of creation times is not
    searched (it would sort every run of the range); "until" an early time, they are not,
    and the index is searched rather than every newer run read."""
    monkeypatch.setattr(queries, "PROBE_ROWS", 10)
    ledger.append_input(
        log, jsonl([triggered(f"r{i:02d}", occurred_at=f"2026-11-01T{i // 60:02d}:{i % 60:02d}:00Z") for i in range(90)])
    )
    ledger.query(log, queries.counts)  # the views caught up

    def statements(filters):
        with log.backend.transaction(write=False) as c:
            recording = Recording(c)
            page = queries.list_runs(recording, filters, page_size=5)
            after = queries.list_runs(recording, filters, page_size=5, after=page["page_info"]["after"])
        return [r["id"] for r in page["entries"] + after["entries"]], recording.statements

    recent, said = statements(queries.RunFilters(starting_at="2026-11-01T01:00:00.000000Z"))
    assert recent == [f"r{i:02d}" for i in range(89, 79, -1)]
    assert not any("created_at >=" in s for s in said), said
    early, said = statements(queries.RunFilters(ending_at="2026-11-01T00:20:00.000000Z"))
    assert early == [f"r{i:02d}" for i in range(20, 10, -1)]
    assert any("created_at >=" in s for s in said), said


@pytest.mark.parametrize("since, until, read", [
    # From five past and to ten to: the hour's first five minutes are taken off its whole
    # hour's count, as are its last ten minutes.
    ("2026-11-01T02:05:00.000000Z", "2026-11-01T07:50:00.000000Z",
     [(">=", "2026-11-01T02:00:00.000000Z", "<", "2026-11-01T02:05:00.000000Z"),
      (">", "2026-11-01T07:50:00.000000Z", "<=", "2026-11-01T07:59:59.999999Z")]),
    # From twenty to and to twenty past: those part-hours are counted themselves.
    ("2026-11-01T02:40:00.000000Z", "2026-11-01T07:20:00.000000Z",
     [(">=", "2026-11-01T02:40:00.000000Z", "<=", "2026-11-01T02:59:59.999999Z"),
      (">=", "2026-11-01T07:00:00.000000Z", "<=", "2026-11-01T07:20:00.000000Z")]),
], ids=["the rest taken off", "the parts counted"])
def test_a_ranges_counts_read_the_lesser_side_of_each_part_hour(log, since, until, read):
    # Runs every ten minutes, one on each end of the range: a range's part-hours are read
    # the shorter way, and the counts are the runs' own either way.
    events = [triggered(f"r{h:02d}{m:02d}", occurred_at=f"2026-11-01T{h:02d}:{m:02d}:00Z") for h in range(10) for m in range(0, 60, 5)]
    ledger.append_input(log, jsonl(events))
    ledger.query(log, queries.counts)
    filters = queries.RunFilters(starting_at=since, ending_at=until)
    with log.backend.transaction(write=False) as c:
        said = Said(c)
        counts = queries.run_status_counts(said, filters)
    assert counts["total"] == sum(1 for e in events if since <= e["occurred_at"].replace("Z", ".000000Z") <= until)
    parts = [(sql, params) for sql, params in said.statements if "WITH part" in sql]
    assert [(sql.split("created_at ")[1][:2].strip(), params[0], sql.split("created_at ")[2][:2].strip(), params[1])
            for sql, params in parts] == read, parts


@pytest.mark.parametrize("first_run, last_run, bounds, read", [
    # After the last run, in its hour: that part holds no run, and is read so.
    ("00:00", "09:55", {"starting_at": "2026-11-01T09:57:00.000000Z"}, (">=", "2026-11-01T09:57:00.000000Z", "<=", "2026-11-01T09:59:59.999999Z")),
    # The newest hour filled to twenty past: from a quarter past is five minutes of runs,
    # the rest of the hour fifteen.
    ("00:00", "09:20", {"starting_at": "2026-11-01T09:15:00.000000Z"}, (">=", "2026-11-01T09:15:00.000000Z", "<=", "2026-11-01T09:59:59.999999Z")),
    # The oldest hour holds runs from twenty to: from a quarter to, the five minutes before
    # are taken off the hour's count.
    ("00:40", "09:55", {"starting_at": "2026-11-01T00:45:00.000000Z"}, (">=", "2026-11-01T00:00:00.000000Z", "<", "2026-11-01T00:45:00.000000Z")),
    # Until a quarter to, the oldest hour holding runs from twenty to: five minutes of runs,
    # read themselves (the rest of the hour, a quarter, would be read to take it off).
    ("00:40", "09:55", {"ending_at": "2026-11-01T00:45:00.000000Z"}, (">=", "2026-11-01T00:00:00.000000Z", "<=", "2026-11-01T00:45:00.000000Z")),
], ids=["after the last run", "the newest hour part filled", "the oldest hour part filled", "until, in the oldest hour"])
def test_a_part_hours_lesser_side_is_of_the_time_its_hour_holds_runs(log, first_run, last_run, bounds, read):
    def minute(hour: int, at: int) -> str:
        return f"2026-11-01T{hour:02d}:{at:02d}:00Z"

    times = [minute(h, m) for h in range(10) for m in range(0, 60, 5)]
    times = [t for t in times if f"2026-11-01T{first_run}" <= t[:16] <= f"2026-11-01T{last_run}"]
    ledger.append_input(log, jsonl([triggered(f"r{k:03d}", occurred_at=t) for k, t in enumerate(times)]))
    ledger.query(log, queries.counts)
    with log.backend.transaction(write=False) as c:
        said = Said(c)
        counts = queries.run_status_counts(said, queries.RunFilters(**bounds))
    stored = [t.replace("Z", ".000000Z") for t in times]
    assert counts["total"] == sum(1 for t in stored if bounds.get("starting_at", "") <= t <= bounds.get("ending_at", "~"))
    (part,) = [(sql, params) for sql, params in said.statements if "WITH part" in sql]
    sql, params = part
    assert (sql.split("created_at ")[1][:2].strip(), params[0], sql.split("created_at ")[2][:2].strip(), params[1]) == read
