"""A page of several statuses (`runs list --status completed --status failed`, `messages
list` alike) and a page of stuck runs (the web's *Stuck*, `runs list --status running
--updated-before T`) at a million runs: each status's rows are sought apart, in its own
index's seq order, and merged, rather than every row of the statuses sorted by seq; a
status's newest rows are read first and their last event checked, and the index of last
events searched only if too few of them are stuck.

The timings are benchmarks' (docs/benchmarks.md); these tests hold the statements and
SQLite's plans of them. The pages' answers under every filter, both ways, on both backends:
tests/contract.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from flowledger import ledger, queries
from tests.conftest import ev, triggered
from tests.histories import jsonl


class Said:
    """A cursor that notes the statements run through it, with their parameters."""

    def __init__(self, cursor: Any) -> None:
        self.cursor, self.statements = cursor, []

    def execute(self, statement: str, params: Any = ()) -> Any:
        self.statements.append((statement, list(params)))
        return self.cursor.execute(statement, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)


def _said(log, listing, *args, **options) -> tuple[dict[str, Any], list[tuple[str, list]], list[str]]:
    """A listing's page, the statements it ran and SQLite's plan of each."""
    ledger.query(log, queries.counts)  # the views caught up
    with log.backend.transaction(write=False) as c:
        said = Said(c)
        page = listing(said, *args, **options)
        plans = []
        for sql, params in said.statements:
            c.execute("EXPLAIN QUERY PLAN " + sql, params)
            plans.append(" | ".join(row[3] for row in c.fetchall()))
    return page, said.statements, plans


def _runs(n: int, *, heard_of_late: int = 0) -> list[dict[str, Any]]:
    """``n`` runs an hour apart in seq order, cycling through four fates (pending, running,
    completed, failed); the running and pending runs heard of last (the newest
    ``heard_of_late`` of them) were heard of at noon on the 2nd, the others on the 1st."""
    events = []
    for i in range(n):
        run, at = f"r{i:03d}", f"2026-11-01T{i % 24:02d}:00:00Z"
        events.append(triggered(run, occurred_at=at, workflow=f"w{i % 2}"))
        fate = i % 4
        late = i >= n - heard_of_late and fate < 2
        if fate or late:
            events.append(ev("run.started", run_id=run, occurred_at="2026-11-02T12:00:00Z" if late else at))
        if fate == 2:
            events.append(ev("run.completed", run_id=run, occurred_at=at))
        if fate == 3:
            events.append(ev("run.failed", run_id=run, occurred_at=at, error="gave up"))
    return events


@pytest.mark.parametrize(
    "filters",
    [
        queries.RunFilters(statuses=("completed", "failed")),
        queries.RunFilters(statuses=("running", "pending", "failed"), workflow="w1"),
        queries.RunFilters(statuses=("completed", "running"), tenant="t"),
        queries.RunFilters(statuses=("completed", "failed"), starting_at="2026-11-01T03:00:00.000000Z"),
    ],
    ids=["statuses", "and a workflow", "and a tenant", "and a range"],
)
def test_several_statuses_are_sought_a_status_at_a_time_in_index_order_and_merged(log, filters):
    ledger.append_input(log, jsonl(_runs(40)))
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=100)["entries"]
    page, statements, plans = _said(log, queries.list_runs, filters, page_size=5)
    wanted = [r["id"] for r in every if r["status"] in filters.statuses and (filters.workflow or r["workflow"]) == r["workflow"]
              and filters.tenant is None and (filters.starting_at or "") <= r["created_at"]]
    assert [r["id"] for r in page["entries"]] == wanted[:5]
    sought = [(sql, params) for sql, params in statements if "ORDER BY seq DESC LIMIT" in sql]
    # Statements of one status each, every status sought, each in the order of an index: no
    # sort (a range's first rows in seq order, read with every status at once, were sorted:
    # 485 ms for completed and failed at a million runs).
    assert {params[-2] for _, params in sought} == set(filters.statuses), sought
    assert all("status IN (?)" in sql for sql, _ in sought), sought
    assert not any("TEMP B-TREE" in plan for plan in plans), plans
    assert all("INDEX" in plan for plan in plans), plans


def test_several_statuses_of_messages_are_sought_a_status_at_a_time_too(log):
    events = []
    for i in range(12):
        events.append(ev("message.queued", message_id=f"m{i}", channel="sms", recipient="u1", run_id=f"r{i}", step="sms-1"))
        if i % 3:
            events.append(ev("message.sent", message_id=f"m{i}"))
        if i % 3 == 2:
            events.append(ev("message.delivered", message_id=f"m{i}"))
    ledger.append_input(log, jsonl(events))
    page, statements, plans = _said(log, queries.list_deliveries, queries.DeliveryFilters(statuses=("queued", "delivered")), page_size=3)
    assert [m["message_id"] for m in page["entries"]] == ["m11", "m9", "m8"]
    assert not any("TEMP B-TREE" in plan for plan in plans), plans


STUCK = queries.RunFilters(statuses=("pending", "running"), updated_before="2026-11-02T00:00:00.000000Z")


def test_stuck_runs_that_are_their_statuses_newest_are_found_in_seq_order(log):
    """A store whose newest pending and running runs are stuck (its runs stopped being heard
    of): the newest of each status, read in seq order, answer the page; the index of last
    events, which would have every stuck run sorted by seq, is not searched."""
    ledger.append_input(log, jsonl(_runs(80)))
    page, statements, plans = _said(log, queries.list_runs, STUCK, page_size=5)
    assert [r["id"] for r in page["entries"]] == ["r077", "r076", "r073", "r072", "r069"]
    assert not any("updated_at <= ?" in sql for sql, _ in statements), statements
    assert not any("TEMP B-TREE" in plan for plan in plans), plans
    after, statements, _ = _said(log, queries.list_runs, STUCK, page_size=5, after=page["page_info"]["after"])
    assert [r["id"] for r in after["entries"]] == ["r068", "r065", "r064", "r061", "r060"]
    assert after["page_info"]["before"] is not None  # the newer ones, found next to the page
    assert not any("updated_at <= ?" in sql for sql, _ in statements), statements


def test_stuck_runs_behind_newer_runs_still_heard_of_are_sought_in_the_index_of_last_events(log, monkeypatch):
    """A store whose newest pending and running runs are still heard of: reading past every
    one of them in seq order would read them all; past the few read first, the stuck runs
    are sought in the index of (status, last event)."""
    monkeypatch.setattr(queries, "PROBE_ROWS", 4)
    ledger.append_input(log, jsonl(_runs(80, heard_of_late=40)))
    page, statements, plans = _said(log, queries.list_runs, STUCK, page_size=5)
    assert [r["id"] for r in page["entries"]] == ["r037", "r036", "r033", "r032", "r029"]
    searched = [plan for (sql, _), plan in zip(statements, plans) if "updated_at <= ?" in sql]
    assert len(searched) == 2 and all("runs_by_status_updated_filtered (status=? AND updated_at<?)" in p for p in searched), plans
