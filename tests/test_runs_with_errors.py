"""Runs with errors (`runs list --has-errors`, `GET /v1/runs?has_errors=true`) under other
filters: read in their own index, which holds every column a listing filters by, never a
row of the table. SQLite's planner, which knows nothing of how few runs have errors, took
the other filter's index and read a row a run for its errors: a status's page of runs with
errors, where none has any, 122-583 ms at a million runs (docs/benchmarks.md); their counts
565 ms. Pages both ways on both backends: tests/contract.py."""

from __future__ import annotations

import pytest

from flowledger import ledger, queries
from flowledger.store.postgres import translate_sql
from tests.conftest import ev, step, triggered
from tests.histories import jsonl
from tests.test_status_pages import _said

INDEX = "COVERING INDEX runs_with_errors_filtered"


def _runs(log) -> None:
    # Forty runs, every fifth with a failed step attempt; the rest of them completed.
    events = []
    for i in range(40):
        run = f"r{i:02d}"
        events.append(triggered(run, workflow=("w1", "w2")[i % 2], tenant="t1", occurred_at=f"2026-11-01T{i % 24:02d}:10:00Z"))
        events.append(ev("run.started", run_id=run, occurred_at=f"2026-11-01T{i % 24:02d}:20:00Z"))
        if i % 5 == 0:
            events.append(step("step.started", run, occurred_at=f"2026-11-01T{i % 24:02d}:30:00Z"))
            events.append(step("step.failed", run, occurred_at=f"2026-11-01T{i % 24:02d}:40:00Z", error="bounced"))
        else:
            events.append(ev("run.completed", run_id=run, occurred_at=f"2026-11-01T{i % 24:02d}:50:00Z"))
    ledger.append_input(log, jsonl(events))


@pytest.mark.parametrize("filters, wanted", [
    (queries.RunFilters(has_errors=True), ["r35", "r30", "r25"]),
    (queries.RunFilters(has_errors=True, statuses=("running",)), ["r35", "r30", "r25"]),
    (queries.RunFilters(has_errors=True, statuses=("completed",)), []),
    (queries.RunFilters(has_errors=True, workflow="w2"), ["r35", "r25", "r15"]),
    (queries.RunFilters(has_errors=True, tenant="t1", statuses=("running", "completed")), ["r35", "r30", "r25"]),
    (queries.RunFilters(has_errors=True, starting_at="2026-11-01T05:00:00.000000Z", ending_at="2026-11-01T12:00:00.000000Z"),
     ["r35", "r30", "r10"]),
    (queries.RunFilters(has_errors=True, statuses=("running",), updated_before="2026-11-01T08:00:00.000000Z"),
     ["r30", "r25", "r05"]),
], ids=["alone", "a status", "a status none has", "a workflow", "a tenant and statuses", "a range", "quiet since"])
def test_a_page_of_runs_with_errors_reads_their_index_alone(log, filters, wanted):
    _runs(log)
    page, statements, plans = _said(log, queries.list_runs, filters, page_size=3)
    assert [r["id"] for r in page["entries"]] == wanted
    # Every statement that picks the page's runs reads the index of runs with errors only.
    picking = [plan for (sql, _), plan in zip(statements, plans) if "error_count > 0" in sql]
    assert picking, statements
    assert all(INDEX in plan and plan.count("USING") == 1 for plan in picking), plans
    if page["page_info"]["after"]:
        # The next page, and whether any is newer than it (a statement of its own).
        page, statements, plans = _said(log, queries.list_runs, filters, page_size=3, after=page["page_info"]["after"])
        assert page["page_info"]["before"] is not None
        # (Where the runs' times are checked, it is sought as a page is: see queries._exists.)
        timed = filters.starting_at is not None or filters.updated_before is not None
        assert any(sql.startswith("SELECT 1 FROM") for sql, _ in statements) != timed, statements
        picking = [plan for (sql, _), plan in zip(statements, plans) if "error_count > 0" in sql]
        assert all(INDEX in plan and plan.count("USING") == 1 for plan in picking), plans


def test_the_counts_of_runs_with_errors_read_their_index_alone(log):
    _runs(log)
    filters = queries.RunFilters(has_errors=True, workflow="w1")
    counts, statements, plans = _said(log, queries.run_status_counts, filters)
    assert (counts["total"], counts["running"], counts["completed"]) == (4, 4, 0)
    assert len(plans) == 1 and INDEX in plans[0], plans


def test_postgresql_is_given_no_index_hint():
    # Its planner has statistics; SQLite's INDEXED BY is no PostgreSQL.
    sql = 'SELECT seq FROM "runs" INDEXED BY runs_with_errors_filtered WHERE error_count > 0 AND status = ?'
    assert translate_sql(sql) == 'SELECT seq FROM "runs" WHERE error_count > 0 AND status = %s'
