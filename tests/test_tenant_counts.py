"""A tenant's run history (`runs list --tenant`, the API's and the web's tenant filter): its
counts by status (the web's chips, with a date range or not) and a page of one status of
its runs read the index of tenants' statuses alone, never a row of the table for each run
of the tenant.

The timings are benchmarks' (docs/benchmarks.md); these tests hold SQLite's plans, and the
answers against a filter over every run.
"""

from __future__ import annotations

import sqlite3

import pytest

from flowledger import ledger, queries
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from tests.conftest import ev, triggered
from tests.histories import jsonl

COVERING = "COVERING INDEX runs_by_tenant_status_seq_workflow"
TENANT = queries.RunFilters(tenant="t1")
TENANT_IN_RANGE = queries.RunFilters(tenant="t1", starting_at="2026-11-03T00:00:00.000000Z", ending_at="2026-11-06T00:00:00.000000Z")


def _runs():
    events = []
    for i in range(90):
        run = f"r{i:02d}"
        at = f"2026-11-{1 + i % 9:02d}T{i % 24:02d}:00:00Z"
        events.append(triggered(run, occurred_at=at, tenant=f"t{i % 3}", workflow=f"w{i % 2}"))
        if i % 4:
            events.append(ev("run.started", run_id=run, occurred_at=at))
        if i % 4 == 1:
            events.append(ev("run.completed", run_id=run, occurred_at=at))
        elif i % 8 == 2:
            events.append(ev("run.failed", run_id=run, occurred_at=at, error="gave up"))
    return events


def _plan(c, sql, params):
    c.execute("EXPLAIN QUERY PLAN " + sql, params)
    return " | ".join(row[3] for row in c.fetchall())


@pytest.mark.parametrize("filters", [TENANT, TENANT_IN_RANGE], ids=["a tenant", "a tenant in a date range"])
def test_a_tenants_counts_by_status_read_the_index_alone(log, filters):
    ledger.append_input(log, jsonl(_runs()))
    ledger.query(log, queries.counts)
    where, params = queries._runs_where(filters)
    with log.backend.transaction(write=False) as c:
        plan = _plan(c, f"SELECT status, COUNT(*) FROM runs WHERE {' AND '.join(where)} GROUP BY status", params)
    assert COVERING in plan, plan


@pytest.mark.parametrize("status", ["failed", "paused"])
def test_a_page_of_a_tenants_runs_of_one_status_seeks_them(log, status):
    # Through the tenant's index alone, a page of a status it has few runs of (or none, as
    # paused here) read the tenant's runs one by one until it had a page.
    ledger.append_input(log, jsonl(_runs()))
    ledger.query(log, queries.counts)
    where, params = queries._runs_where(queries.RunFilters(tenant="t1", statuses=(status,)))
    with log.backend.transaction(write=False) as c:
        plan = _plan(c, f"SELECT seq FROM runs WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?", [*params, 26])
    assert f"{COVERING} (tenant=? AND status=?)" in plan and "TEMP B-TREE" not in plan, plan


def test_a_tenants_counts_and_pages_are_those_of_every_run_filtered(log):
    ledger.append_input(log, jsonl(_runs()))
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    for filters in (TENANT, TENANT_IN_RANGE):
        low, high = filters.starting_at or "", filters.ending_at or "~"
        mine = [r for r in every if r["tenant"] == "t1" and low <= r["created_at"] <= high]
        counts = ledger.query(log, queries.run_status_counts, filters)
        assert counts["total"] == len(mine) > 5
        assert {s: counts[s] for s in ("pending", "running", "completed", "failed")} == {
            s: sum(r["status"] == s for r in mine) for s in ("pending", "running", "completed", "failed")
        }
        for status in ("running", "completed", "failed", "paused"):
            page = ledger.query(log, queries.list_runs, queries.RunFilters(**{**vars(filters), "statuses": (status,)}), page_size=100)
            assert [r["id"] for r in page["entries"]] == [r["id"] for r in mine if r["status"] == status]


def test_a_store_made_without_the_index_gets_it(log, store_path):
    ledger.append_input(log, jsonl(_runs()))
    Projector(log.backend).catch_up()
    with sqlite3.connect(store_path) as c:
        # As a store made by the release before: (tenant, status, seq, created_at).
        c.execute("DROP INDEX runs_by_tenant_status_seq_workflow")
        c.execute("CREATE INDEX runs_by_tenant_status_seq ON runs (tenant, status, seq, created_at)")
    reopened = open_log(store_path)
    try:
        assert ledger.query(reopened, queries.run_status_counts, TENANT)["total"] == 30
    finally:
        reopened.close()
    with sqlite3.connect(store_path) as c:
        names = {name for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs'")}
    assert "runs_by_tenant_status_seq_workflow" in names and "runs_by_tenant_status_seq" not in names
