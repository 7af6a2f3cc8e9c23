"""PostgreSQL's plans of the listings. Each read is planned for its values, every time: the
driver prepares a statement run five times on a connection, and the server, after five plans
of a prepared statement, may keep one generic plan for any values from then on (a page of a
status's runs quiet since a time within a week: 10 ms, then 41-45 ms from the eleventh time
on `serve`'s long-lived connections, at 300,000 runs). And a status's first runs are sought
in its index, not in seq order. Skipped, saying why, where no server is reachable.
"""

from __future__ import annotations

import pytest

from flowledger import ledger, queries
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, ev, server_connection, triggered
from tests.histories import jsonl
from tests.test_status_pages import Said

pytestmark = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


def test_a_listing_run_again_and_again_on_one_connection_is_never_planned_generically(postgres_url):
    log = open_log(postgres_url)
    try:
        events = []
        for i in range(30):
            run = f"r{i:02d}"
            events.append(triggered(run, occurred_at=f"2026-11-01T{i % 24:02d}:00:00Z"))
            events.append(ev("run.started", run_id=run, occurred_at=f"2026-11-01T{i % 24:02d}:10:00Z"))
            if i % 3 == 0:
                events.append(ev("run.failed", run_id=run, occurred_at=f"2026-11-01T{i % 24:02d}:20:00Z", error="x"))
        ledger.append_input(log, jsonl(events))
        ledger.query(log, queries.counts)  # the views caught up
        filters = queries.RunFilters(
            statuses=("failed",), starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T20:00:00.000000Z",
            updated_before="2026-11-01T18:00:00.000000Z",
        )
        with log.backend.transaction(write=False) as c:
            pages = [queries.list_runs(c, filters, page_size=2) for _ in range(12)]
            # Run more than five times, yet never prepared: planned for their values each time.
            c.execute("SELECT statement, generic_plans FROM pg_prepared_statements")
            prepared = c.fetchall()
        assert len({str(p["entries"]) for p in pages}) == 1
        assert not any('FROM "runs"' in statement for statement, _ in prepared), prepared
        assert all(generic == 0 for _, generic in prepared), prepared
    finally:
        log.close()


def live_store(log) -> None:
    """3,000 runs, each messaged, the oldest 2,400 completed, the newest 600 running (a live
    store's spread: most runs of one status, the newest of another), folded."""
    events = []
    for i in range(3000):
        run, at = f"r{i:04d}", f"2026-11-{1 + i // 300:02d}T{i % 24:02d}:00:00Z"
        events.append(triggered(run, occurred_at=at))
        events.append(ev("run.started", run_id=run, occurred_at=at))
        events.append(ev("message.queued", message_id=f"m{i:04d}", run_id=run, channel="email", recipient="u1", step="email-1", occurred_at=at))
        if i < 2400:
            events.append(ev("run.completed", run_id=run, occurred_at=at))
    ledger.append_input(log, jsonl(events))
    ledger.query(log, queries.counts)  # the views caught up


def completed_probe_plans(log) -> list[str]:
    """PostgreSQL's plan (run: its rows and reads) of each read of the first runs of a page of
    :func:`live_store`'s completed runs quiet since a time (the page checked)."""
    filters = queries.RunFilters(statuses=("completed",), updated_before="2026-11-20T00:00:00.000000Z")
    with log.backend.transaction(write=False) as c:
        said = Said(c)
        page = queries.list_runs(said, filters, page_size=5)
        plans = []
        for sql, params in said.statements:
            if sql.startswith("SELECT seq, created_at, updated_at"):
                c.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
                plans.append("\n".join(row[0] for row in c.fetchall()))
    assert [entry["id"] for entry in page["entries"]] == [f"r{i:04d}" for i in range(2399, 2394, -1)]
    assert plans, said.statements
    return plans


def test_a_status_s_first_runs_are_sought_in_its_index_where_the_newest_runs_are_of_another(postgres_url_alone):
    """A live store: most runs completed, the newest all running. Asked for the times with
    the rows, the planner took the completed runs for spread evenly and read `runs_by_seq`
    backwards past every running one (6-9 ms a status at 300,000 runs, linear in them); the
    positions are sought first, in the status's index."""
    log = open_log(postgres_url_alone)
    try:
        live_store(log)
        # As autovacuum leaves a live store's table, its pages marked all visible (the
        # status's index read alone). The fold's pages commit without waiting for the disk,
        # and VACUUM marks no row whose commit is not yet flushed: one pass here marks a
        # fifth of them, the next the rest.
        with server_connection(postgres_url_alone, autocommit=True) as conn:
            for _ in range(2):
                conn.execute(f'VACUUM ANALYZE "{postgres_url_alone.rpartition("schema=")[2]}".runs')
        plans = completed_probe_plans(log)
        for plan in plans:
            assert "runs_by_status" in plan and "Filter: (status" not in plan, plan
    finally:
        log.close()
