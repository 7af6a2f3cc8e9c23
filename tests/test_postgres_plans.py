"""PostgreSQL plans each read for its values, every time: the driver prepares a statement run
five times on a connection, and the server, after five plans of a prepared statement, may
keep one generic plan for any values from then on (a page of a status's runs quiet since
a time within a week: 10 ms, then 41-45 ms from the eleventh time on `serve`'s long-lived
connections, at 300,000 runs). Skipped, saying why, where no server is reachable.
"""

from __future__ import annotations

import pytest

from flowledger import ledger, queries
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, ev, triggered
from tests.histories import jsonl

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
