"""A page of a date range whose runs are not the newest (ten days in the middle of a month
of a million runs): the hours that can hold its runs are read an hour at a time, best
first, from each hour's first and last position (run_hour_seqs), and no further than the
page needs, where every run of the range was sorted by seq.

The timings are benchmarks' (docs/benchmarks.md, `benchmarks/date_ranges.py`); these tests
hold the statements and SQLite's plans. Pages both ways under every filter, whichever way
they are found, on both backends: tests/contract.py.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from flowledger import ledger, queries
from flowledger.store import open_log
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_queries_mutations import walk
from tests.test_quiet_runs_pages import _seq_of
from tests.test_status_pages import Said


def _hours_of_runs(hours: int = 10, per_hour: int = 12) -> list[dict[str, Any]]:
    """Runs created in seq order, ``per_hour`` an hour, every third failed."""
    events = []
    for h in range(hours):
        for k in range(per_hour):
            run, at = f"r{h:02d}-{k:02d}", f"2026-11-01T{h:02d}:{k * 4:02d}:00Z"
            events.append(triggered(run, occurred_at=at, tenant=("t1", "t2")[k % 2]))
            if k % 3 == 0:
                events += [ev("run.started", run_id=run, occurred_at=at), ev("run.failed", run_id=run, occurred_at=at, error="x")]
    return events


MIDDLE = queries.RunFilters(starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T06:59:59.999999Z")


def _page(log, filters, **paging):
    ledger.query(log, queries.counts)  # the views caught up
    with log.backend.transaction(write=False) as c:
        said = Said(c)
        page = queries.list_runs(said, filters, **paging)
        plans = []
        for sql, params in said.statements:
            c.execute("EXPLAIN QUERY PLAN " + sql, params)
            plans.append(" | ".join(row[3] for row in c.fetchall()))
    hours = [params[:2] for sql, params in said.statements if _of_an_hour(sql, params)]
    return page, said.statements, plans, hours


def _of_an_hour(sql: str, params: list) -> bool:
    """Whether a statement is the first read of a page's runs created within one clock hour
    (the runs created last, or, given a status or a tenant, the runs sorted; not the sort
    of those past the last created, nor the last position of the runs created by a time:
    see queries._created_by)."""
    first = "ORDER BY created_at" in sql or "ORDER BY seq" in sql and "+seq" not in sql
    return "created_at >= ?" in sql and first and params[0][:13] == params[1][:13]


def _sorts_the_range(statements) -> bool:
    """Whether a statement sorts runs created over more than one clock hour."""
    return any("created_at >= ?" in sql and "ORDER BY seq" in sql and params[0][:13] != params[1][:13] for sql, params in statements)


def test_a_page_of_a_range_in_the_middle_reads_its_newest_hour_and_no_more(log, monkeypatch):
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)  # too few to answer any page here
    ledger.append_input(log, jsonl(_hours_of_runs()))
    page, statements, plans, hours = _page(log, MIDDLE, page_size=5)
    assert [r["id"] for r in page["entries"]] == [f"r06-{k:02d}" for k in (11, 10, 9, 8, 7)]
    assert hours == [["2026-11-01T06:00:00.000000Z", "2026-11-01T06:59:59.999999Z"]]
    # No statement sorts the range's runs all at once.
    assert not _sorts_the_range(statements), statements
    (plan,) = [p for (sql, params), p in zip(statements, plans) if _of_an_hour(sql, params)]
    assert "COVERING INDEX runs_by_created_status_seq_tenant (created_at>? AND created_at<?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # the runs created last, in the index's order
    # Then those of the hour no older by seq than the oldest of them, sorted: in the index of
    # creation times too, the bound a check (not runs_by_seq, from it to the newest run).
    ((sql, params), plan), = [(s, p) for s, p in zip(statements, plans) if "+seq >= ?" in s[0]]
    assert params[2] == _seq_of(log, "r06-06"), params  # the sixth (a page of five and one to know of more)
    assert "COVERING INDEX runs_by_created_status_seq_tenant (created_at>? AND created_at<?)" in plan, plan
    # The next pages: the rest of that hour, then into the one before it.
    second, _, _, hours = _page(log, MIDDLE, page_size=5, after=page["page_info"]["after"])
    assert [r["id"] for r in second["entries"]] == [f"r06-{k:02d}" for k in (6, 5, 4, 3, 2)]
    assert [h[0][11:13] for h in hours] == ["06"]  # 05's last run is older than the page's
    third, _, _, hours = _page(log, MIDDLE, page_size=5, after=second["page_info"]["after"])
    assert [r["id"] for r in third["entries"]] == ["r06-01", "r06-00", "r05-11", "r05-10", "r05-09"]
    assert [h[0][11:13] for h in hours] == ["06", "05"]


def test_a_ranges_page_with_statuses_and_a_tenant_reads_its_hours_too(log, monkeypatch):
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)
    ledger.append_input(log, jsonl(_hours_of_runs()))
    filters = queries.RunFilters(statuses=("failed",), tenant="t1", starting_at=MIDDLE.starting_at, ending_at=MIDDLE.ending_at)
    page, statements, plans, hours = _page(log, filters, page_size=3)
    # Failed (every third) of t1 (every second): k = 0 and 6 of each hour.
    assert [r["id"] for r in page["entries"]] == ["r06-06", "r06-00", "r05-06"]
    assert [h[0][11:13] for h in hours] == ["06", "05"]
    # Each hour's runs found by their time, then the status and the tenant among them: not
    # the tenant's or the status's index walked in seq order.
    for (sql, params), plan in zip(statements, plans):
        if _of_an_hour(sql, params):
            assert "COVERING INDEX runs_by_created_status_seq_tenant (created_at>? AND created_at<?)" in plan, plan
            assert "status=?" not in plan and "tenant=?" not in plan, plan
    assert not _sorts_the_range(statements), statements


@pytest.mark.parametrize("filters", [
    queries.RunFilters(workflow="w", starting_at=MIDDLE.starting_at, ending_at=MIDDLE.ending_at),
    queries.RunFilters(has_errors=True, starting_at=MIDDLE.starting_at, ending_at=MIDDLE.ending_at),
    queries.RunFilters(statuses=("running",), updated_before="2026-11-02T00:00:00.000000Z", starting_at=MIDDLE.starting_at,
                       ending_at=MIDDLE.ending_at),
], ids=["a workflow", "errors", "stuck"])
def test_other_filters_than_the_index_of_creation_times_answers_search_the_range_as_before(log, monkeypatch, filters):
    monkeypatch.setattr(queries, "PROBE_ROWS", 10)
    ledger.append_input(log, jsonl(_hours_of_runs()))
    _, statements, _, hours = _page(log, filters, page_size=3)
    assert hours == [] and not any("first_seq" in sql for sql, _ in statements), statements


def test_past_hours_read_hours_the_range_is_sorted_as_before(log, monkeypatch):
    # A page that would read more hours than HOURS_READ (runs created out of seq order, or
    # few of the page's in each hour) sorts the range's runs instead.
    monkeypatch.setattr(queries, "PROBE_ROWS", 10)
    monkeypatch.setattr(queries, "HOURS_READ", 2)
    ledger.append_input(log, jsonl(_hours_of_runs()))
    page, statements, _, hours = _page(log, MIDDLE, page_size=30)
    assert [r["id"] for r in page["entries"]][:13] == [f"r06-{k:02d}" for k in reversed(range(12))] + ["r05-11"]
    assert len(hours) == 2
    assert _sorts_the_range(statements), statements


def test_a_page_back_reads_the_hours_oldest_first(log, monkeypatch):
    # A page before a cursor (newer runs, oldest first) reads the hours in the order of the
    # oldest run each can give, and no further than it needs.
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)
    ledger.append_input(log, jsonl(_hours_of_runs()))
    seen, after = [], None
    for _ in range(4):
        page, _, _, _ = _page(log, MIDDLE, page_size=5, after=after)
        seen.append(page)
        after = page["page_info"]["after"]
    assert [r["id"] for r in seen[3]["entries"]] == [f"r05-{k:02d}" for k in (8, 7, 6, 5, 4)]
    back, _, _, hours = _page(log, MIDDLE, page_size=5, before=seen[3]["page_info"]["before"])
    assert [r["id"] for r in back["entries"]] == [r["id"] for r in seen[2]["entries"]]
    assert [h[0][11:13] for h in hours] == ["05", "06"]


@pytest.mark.parametrize("probe", [1, 200])
def test_a_range_from_and_to_the_middle_of_hours_pages_both_ways_to_its_runs(log, monkeypatch, probe):
    # The first and the last hour's runs outside the range are not on its pages.
    monkeypatch.setattr(queries, "PROBE_ROWS", probe)
    ledger.append_input(log, jsonl(_hours_of_runs()))
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    filters = queries.RunFilters(starting_at="2026-11-01T02:10:00.000000Z", ending_at="2026-11-01T06:30:00.000000Z")
    wanted = [r["id"] for r in every if filters.starting_at <= r["created_at"] <= filters.ending_at]
    assert wanted[0] == "r06-07" and wanted[-1] == "r02-03"
    for size in (2, 7):
        assert walk(log, queries.list_runs, filters, key="id", page_size=size) == wanted


def test_a_workflows_page_within_a_range_checks_its_newer_runs_in_the_index_alone(log, monkeypatch):
    # The workflow's runs newer than the range are passed in seq order: their creation time
    # is in the workflow's index, where through (workflow, seq) each one's row was read.
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)
    ledger.append_input(log, jsonl(_hours_of_runs()))
    filters = queries.RunFilters(workflow="welcome", starting_at=MIDDLE.starting_at, ending_at=MIDDLE.ending_at)
    page, statements, plans, _ = _page(log, filters, page_size=3)
    assert [r["id"] for r in page["entries"]] == ["r06-11", "r06-10", "r06-09"]
    (plan,) = [p for (sql, _), p in zip(statements, plans) if "created_at >= ?" in sql]
    # Between the first and the last position of a run created in the range's hours.
    assert "COVERING INDEX runs_by_workflow_seq_created_tenant (workflow=? AND seq>? AND seq<?)" in plan and "TEMP B-TREE" not in plan, plan


def test_a_store_with_the_older_workflow_index_gets_the_new_one(store_path):
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl(_hours_of_runs(2, 3)))
        ledger.catch_up(log)
    finally:
        log.close()
    with sqlite3.connect(store_path) as db:
        # As a store made by the release before looks: (workflow, seq).
        db.execute("DROP INDEX runs_by_workflow_seq_created_tenant")
        db.execute("CREATE INDEX runs_by_workflow ON runs (workflow, seq)")
        # Or as one made by the releases since: (workflow, seq, created_at).
        db.execute("CREATE INDEX runs_by_workflow_seq_created ON runs (workflow, seq, created_at)")
    db.close()
    reopened = open_log(store_path)
    try:
        filters = queries.RunFilters(workflow="welcome", starting_at="2026-11-01T01:00:00.000000Z")
        assert len(ledger.query(reopened, queries.list_runs, filters)["entries"]) == 3
    finally:
        reopened.close()
    with sqlite3.connect(store_path) as db:
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'")}
    db.close()
    assert "runs_by_workflow_seq_created_tenant" in names and "runs_by_workflow" not in names
    assert "runs_by_workflow_seq_created" not in names


def _failed_in_hours(*failing: int) -> list[dict[str, Any]]:
    """Runs created in seq order, four an hour for ten hours, pending but for those of the
    ``failing`` hours, failed (of tenant t1: the others' tenant is t2)."""
    events = []
    for h in range(10):
        for k in range(4):
            run, at = f"r{h:02d}-{k:02d}", f"2026-11-01T{h:02d}:{k * 10:02d}:00Z"
            events.append(triggered(run, occurred_at=at, tenant="t1" if h in failing else "t2"))
            if h in failing:
                events += [ev("run.started", run_id=run, occurred_at=at), ev("run.failed", run_id=run, occurred_at=at, error="x")]
    return events


@pytest.mark.parametrize("narrow", [{}, {"tenant": "t1"}], ids=["statuses", "a tenant"])
def test_a_range_s_page_reads_only_the_hours_holding_its_status_s_runs(log, monkeypatch, narrow):
    # Hours 3 and 5 hold the failed runs (run_hours; a tenant's: tenant_run_hours): the
    # range's other hours are not read, where each was, its runs for none of the status.
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)
    ledger.append_input(log, jsonl(_failed_in_hours(3, 5)))
    filters = queries.RunFilters(statuses=("failed",), starting_at=MIDDLE.starting_at, ending_at=MIDDLE.ending_at, **narrow)
    page, statements, _, hours = _page(log, filters, page_size=6)
    assert [r["id"] for r in page["entries"]] == [f"r05-{k:02d}" for k in (3, 2, 1, 0)] + ["r03-03", "r03-02"]
    assert [h[0][11:13] for h in hours] == ["05", "03"]
    assert not _sorts_the_range(statements), statements


@pytest.mark.parametrize("narrow", [{"statuses": ("running",)}, {"tenant": "t3"}, {"statuses": ("failed",), "tenant": "t2"}],
                         ids=["a status", "a tenant", "both"])
def test_a_range_none_of_whose_hours_holds_a_run_it_picks_reads_no_run(log, monkeypatch, narrow):
    # No hour of the range holds a running run, or any of tenant t3's, or a failed run of
    # t2's: the page is found empty in the counters, where it read each hour's runs, then
    # the status's or the tenant's every run, each row (340 ms at a million runs).
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)
    # Past the range, in hours 8 and 9: running runs of t3's, a failed run of t2's.
    later = [triggered(f"x{h}", occurred_at=f"2026-11-01T{h:02d}:00:00Z", tenant="t3") for h in (8, 9)]
    later += [ev("run.started", run_id=f"x{h}", occurred_at=f"2026-11-01T{h:02d}:00:00Z") for h in (8, 9)]
    later += [triggered("y9", occurred_at="2026-11-01T09:30:00Z", tenant="t2"), ev("run.failed", run_id="y9", error="x")]
    ledger.append_input(log, jsonl(_failed_in_hours(2, 3, 4, 5, 6) + later))
    page, statements, _, hours = _page(log, queries.RunFilters(starting_at=MIDDLE.starting_at, ending_at=MIDDLE.ending_at, **narrow), page_size=5)
    assert page["entries"] == [] and hours == []
    read = [sql for sql, _ in statements if 'FROM "runs"' in sql and "LIMIT ?" in sql]
    assert len(read) == len(narrow.get("statuses", ("",))), statements  # the first rows read (queries.PROBE_ROWS), no more


def test_a_range_s_page_past_the_hours_it_reads_reads_the_range_s_positions_alone(log, monkeypatch):
    # Past queries.HOURS_READ hours, the status's runs are read in its index, in seq order,
    # from the last position of a run created in the range's hours to the first
    # (run_hour_seqs): not from its newest run on, a row each, to its oldest.
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)
    monkeypatch.setattr(queries, "HOURS_READ", 2)
    ledger.append_input(log, jsonl(_hours_of_runs()))
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    filters = queries.RunFilters(statuses=("failed",), starting_at=MIDDLE.starting_at, ending_at=MIDDLE.ending_at)
    page, statements, plans, _ = _page(log, filters, page_size=30)
    inside = [r for r in every if MIDDLE.starting_at <= r["created_at"] <= MIDDLE.ending_at]
    assert [r["id"] for r in page["entries"]] == [r["id"] for r in inside if r["status"] == "failed"]
    ((sql, params, plan),) = [(s, p, plan) for (s, p), plan in zip(statements, plans) if "seq >= ?" in s]
    assert params[-3:-1] == [_seq_of(log, inside[-1]["id"]), _seq_of(log, inside[0]["id"])]
    assert "INDEX runs_by_status (status=? AND seq>? AND seq<?)" in plan, plan


def test_a_range_holding_no_run_is_found_empty_past_the_hours_it_reads(log, monkeypatch):
    # A workflow's page (not read by the hour) of a range where no run was created.
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)
    ledger.append_input(log, jsonl(_hours_of_runs()))
    filters = queries.RunFilters(workflow="welcome", starting_at="2026-12-01T00:00:00.000000Z", ending_at="2026-12-02T00:00:00.000000Z")
    page, statements, _, _ = _page(log, filters, page_size=5)
    assert page["entries"] == []
    assert len([sql for sql, _ in statements if 'FROM "runs"' in sql]) == 1, statements  # the first rows read alone
