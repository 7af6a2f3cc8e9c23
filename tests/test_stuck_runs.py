"""Finding stuck runs: `runs list --updated-before T` (API `updated_before`) picks the runs
whose last event (updated_at) is at or before T, with every other filter and exact paging,
from an index at any number of runs."""

from __future__ import annotations

import os

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from flowledger import ledger, queries
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, ev, step, triggered
from tests.histories import jsonl

T = "2026-11-01T10:00:00.000000Z"
"""The bound most tests ask with: runs last heard of at or before it are stuck."""


def _at(hhmmss: str) -> str:
    return f"2026-11-01T{hhmmss}Z"


def _stuck_and_fresh() -> list[dict]:
    """Runs last heard of before, exactly at and after :data:`T`, in several statuses,
    workflows and tenants."""
    return [
        # Triggered early, started, then silence: stuck running.
        triggered("old-running", occurred_at=_at("08:00:00"), tenant="acme"),
        ev("run.started", run_id="old-running", occurred_at=_at("08:00:05")),
        # Never started: stuck pending.
        triggered("old-pending", occurred_at=_at("09:00:00"), workflow="digest"),
        # Its last event is exactly at the bound: included, as --ending-at includes its bound.
        triggered("at-bound", occurred_at=_at("09:30:00")),
        ev("run.started", run_id="at-bound", occurred_at=_at("10:00:00")),
        # Started early but heard of since: not stuck.
        triggered("fresh-running", occurred_at=_at("07:00:00")),
        ev("run.started", run_id="fresh-running", occurred_at=_at("07:00:01")),
        step("step.started", "fresh-running", occurred_at=_at("10:00:01")),
        # Finished long ago: last heard of before the bound, but not running.
        triggered("old-done", occurred_at=_at("06:00:00")),
        ev("run.started", run_id="old-done", occurred_at=_at("06:00:01")),
        ev("run.completed", run_id="old-done", occurred_at=_at("06:00:02")),
    ]


def _ids(log, **filters) -> list[str]:
    page = ledger.query(log, queries.list_runs, queries.RunFilters(**filters), page_size=1000)
    return [r["id"] for r in page["entries"]]


def test_updated_before_picks_the_runs_last_heard_of_at_or_before_it(log):
    ledger.append_input(log, jsonl(_stuck_and_fresh()))
    assert _ids(log, updated_before=T) == ["old-done", "at-bound", "old-pending", "old-running"]
    assert _ids(log, statuses=("running", "pending"), updated_before=T) == ["at-bound", "old-pending", "old-running"]
    assert _ids(log, statuses=("running",), updated_before=T) == ["at-bound", "old-running"]
    # A microsecond earlier leaves out the run whose last event is at the bound.
    assert _ids(log, statuses=("running",), updated_before="2026-11-01T09:59:59.999999Z") == ["old-running"]


def test_updated_before_combines_with_every_other_filter(log):
    ledger.append_input(log, jsonl(_stuck_and_fresh()))
    assert _ids(log, workflow="digest", updated_before=T) == ["old-pending"]
    assert _ids(log, tenant="acme", updated_before=T) == ["old-running"]
    assert _ids(log, recipient="user-1", statuses=("running",), updated_before=T) == ["at-bound", "old-running"]
    assert _ids(log, starting_at=_at("08:30:00"), updated_before=T) == ["at-bound", "old-pending"]
    assert _ids(log, ending_at=_at("08:30:00"), statuses=("running",), updated_before=T) == ["old-running"]
    assert _ids(log, has_errors=True, updated_before=T) == []
    counts = ledger.query(log, queries.run_status_counts, queries.RunFilters(updated_before=T))
    assert (counts["total"], counts["running"], counts["pending"], counts["completed"]) == (4, 2, 1, 1)


def test_paging_stuck_runs_while_new_runs_arrive_never_repeats_or_misses(log):
    # Stuck runs interleaved with fresh ones; while we page, new runs arrive (some stuck
    # too: their events were late) and fresh runs get news. Each page follows on exactly.
    events = []
    for i in range(12):
        events.append(triggered(f"old-{i:02d}", occurred_at=_at(f"08:{i:02d}:00")))
        events.append(ev("run.started", run_id=f"old-{i:02d}", occurred_at=_at(f"08:{i:02d}:01")))
        events.append(triggered(f"fresh-{i:02d}", occurred_at=_at(f"08:{i:02d}:30")))
        events.append(ev("run.started", run_id=f"fresh-{i:02d}", occurred_at=_at(f"11:{i:02d}:00")))
    ledger.append_input(log, jsonl(events))
    filters = queries.RunFilters(statuses=("running",), updated_before=T)
    expected = [f"old-{i:02d}" for i in reversed(range(12))]
    page = ledger.query(log, queries.list_runs, filters, page_size=5)
    seen = [r["id"] for r in page["entries"]]
    n = 0
    while page["page_info"]["after"]:
        late = [triggered(f"late-{n}", occurred_at=_at("07:00:00")), ev("run.started", run_id=f"late-{n}", occurred_at=_at("07:00:01"))]
        ledger.append_input(log, jsonl([*late, step("step.started", f"fresh-{n:02d}", occurred_at=_at("12:00:00"))]))
        n += 1
        page = ledger.query(log, queries.list_runs, filters, page_size=5, after=page["page_info"]["after"])
        seen += [r["id"] for r in page["entries"]]
    assert seen == expected
    # The late runs are newer than every page read: the first page shows them now, and
    # paging back from the last page comes to the same list.
    everything = _ids(log, statuses=("running",), updated_before=T)
    assert everything == [f"late-{k}" for k in reversed(range(n))] + expected
    backward = [r["id"] for r in page["entries"]]
    while page["page_info"]["before"]:
        page = ledger.query(log, queries.list_runs, filters, page_size=5, before=page["page_info"]["before"])
        backward = [r["id"] for r in page["entries"]] + backward
    assert backward == everything


def test_a_run_that_gets_news_leaves_the_listing_between_pages_without_shifting_it(log):
    ledger.append_input(log, jsonl([triggered(f"r{i}", occurred_at=_at(f"08:0{i}:00")) for i in range(6)]))
    filters = queries.RunFilters(updated_before=T)
    first = ledger.query(log, queries.list_runs, filters, page_size=2)
    assert [r["id"] for r in first["entries"]] == ["r5", "r4"]
    # r3, on the next page, is heard of after the bound; the rest stay where they were.
    ledger.append_input(log, jsonl([ev("run.started", run_id="r3", occurred_at=_at("11:00:00"))]))
    rest = []
    page = first
    while page["page_info"]["after"]:
        page = ledger.query(log, queries.list_runs, filters, page_size=2, after=page["page_info"]["after"])
        rest += [r["id"] for r in page["entries"]]
    assert rest == ["r2", "r1", "r0"]


# The CLI and the API


@pytest.fixture
def stuck_store(store_path):
    log = open_log(store_path)
    ledger.append_input(log, jsonl(_stuck_and_fresh()))
    secret = keys.create_key(log.backend, "reader", "read")[1]
    log.close()
    return store_path, secret


def _cli(path, *args):
    return CliRunner().invoke(cli, ["--store", path, "runs", "list", *args], catch_exceptions=False)


def test_the_cli_lists_stuck_runs_and_the_api_gives_the_same(stuck_store):
    path, secret = stuck_store
    # The same instant with an offset: bounds are instants, as --ending-at's are.
    result = _cli(path, "--status", "running", "--status", "pending", "--updated-before", "2026-11-01T11:00:00+01:00", "--json")
    assert result.exit_code == 0, result.output
    cli_page = orjson.loads(result.output)
    assert [e["id"] for e in cli_page["entries"]] == ["at-bound", "old-pending", "old-running"]
    table = _cli(path, "--status", "running", "--updated-before", T)
    assert table.exit_code == 0 and "old-running" in table.output and "fresh-running" not in table.output
    with TestClient(create_app(path)) as client:
        r = client.get(
            "/v1/runs",
            params={"status": ["running", "pending"], "updated_before": "2026-11-01T11:00:00+01:00"},
            headers={"X-API-Key": secret},
        )
        assert r.status_code == 200, r.text
        assert r.json() == cli_page


def test_an_updated_before_that_is_not_a_timestamp_is_refused_as_the_other_bounds_are(stuck_store):
    path, secret = stuck_store
    for value in ("2026-11-01T10:00:00", "yesterday", "0001-01-01T00:00:00+01:00"):
        result = CliRunner().invoke(cli, ["--store", path, "runs", "list", "--updated-before", value])
        assert result.exit_code == 2 and "--updated-before" in result.output, result.output
        assert f"{value!r} is not an RFC 3339 timestamp with an offset" in result.output
        assert "Traceback" not in result.output
    with TestClient(create_app(path)) as client:
        r = client.get("/v1/runs", params={"updated_before": "2026-11-01T10:00:00"}, headers={"X-API-Key": secret})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        expected = "expected an RFC 3339 timestamp with an offset, like 2026-11-01T00:00:00Z"
        assert r.json()["errors"] == [{"field": "updated_before", "message": expected}]


def test_updated_before_is_a_declared_parameter_of_get_runs_in_the_openapi_document():
    operation = create_app(None).openapi()["paths"]["/v1/runs"]["get"]
    (param,) = [p for p in operation["parameters"] if p["name"] == "updated_before"]
    assert param["in"] == "query" and not param.get("required", False)
    assert "updated_at" in param.get("description", "")


# The plans: a stuck-runs listing is read from an index at any size


def _listing_sql(filters: queries.RunFilters, cursor: bool = False) -> tuple[str, list]:
    """The SQL and parameters a page of :func:`queries.list_runs` runs (as its ``_page``
    builds them), with a cursor condition if asked."""
    where, params = queries._runs_where(filters)  # noqa: SLF001  # the real conditions
    if cursor:
        where, params = [*where, "seq < ?"], [*params, 10**6]
    return f'SELECT * FROM "runs" WHERE {" AND ".join(where)} ORDER BY seq DESC LIMIT ?', [*params, 51]


STUCK_QUERIES = [
    (queries.RunFilters(statuses=("running",), updated_before=T), False),
    (queries.RunFilters(statuses=("running",), updated_before=T), True),
    (queries.RunFilters(statuses=("running", "pending"), updated_before=T), False),
    (queries.RunFilters(statuses=("running",), workflow="w", updated_before=T), False),
    (queries.RunFilters(updated_before=T), False),
    (queries.RunFilters(tenant="t", updated_before=T), True),
]


@pytest.mark.parametrize("filters, cursor", STUCK_QUERIES)
def test_every_stuck_runs_query_uses_an_index(log, filters, cursor):
    Projector(log.backend).ensure_tables()
    sql, params = _listing_sql(filters, cursor)
    with log.backend.transaction(write=False) as c:
        c.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = " | ".join(row[3] for row in c.fetchall())
    assert "INDEX" in plan and "SCAN runs" not in plan.replace("SCAN runs USING", ""), plan


@pytest.mark.parametrize("statuses", [("running",), ("running", "pending")])
def test_stuck_runs_of_a_status_are_sought_by_status_and_last_event_not_walked_past(log, statuses):
    # At 1M runs the newest running runs are the ones still heard of: walking a status's
    # runs newest first would read every one of them (a row each) before the first stuck
    # one. The index of a status's runs by their last event goes straight to the stuck.
    Projector(log.backend).ensure_tables()
    sql, params = _listing_sql(queries.RunFilters(statuses=statuses, updated_before=T))
    with log.backend.transaction(write=False) as c:
        c.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = " | ".join(row[3] for row in c.fetchall())
    assert "SEARCH runs USING INDEX runs_by_status_updated_filtered (status=? AND updated_at<?)" in plan, plan


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
def test_stuck_runs_queries_use_an_index_on_postgres(postgres_url):
    # PostgreSQL plans by its statistics: fill the view with many runs, most finished and
    # the newest in flight, as a busy store's are, before asking for its plans.
    log = open_log(postgres_url)
    try:
        Projector(log.backend).ensure_tables()
        with log.backend.transaction(write=True) as c:
            c.execute(
                "INSERT INTO runs (id, seq, workflow, recipient, recipient_json, tenant, status, created_at, updated_at, error_count) "
                "SELECT 'r' || i, i, 'w' || (i % 5), 'u' || (i % 100), '{}', 't' || (i % 3), "
                "CASE WHEN i > 16000 THEN 'running' WHEN i % 500 = 0 THEN 'running' ELSE 'completed' END, "
                "'2026-10-01T00:00:00.000000Z', "
                "CASE WHEN i > 16000 THEN '2026-11-02T00:00:00.000000Z' ELSE '2026-10-01T00:00:00.000000Z' END, 0 "
                "FROM generate_series(1, 20000) AS i"
            )
            c.execute("ANALYZE runs")
        with log.backend.transaction(write=False) as c:
            for filters, cursor in STUCK_QUERIES:
                sql, params = _listing_sql(filters, cursor)
                c.execute("EXPLAIN " + sql, params)
                plan = " | ".join(row[0] for row in c.fetchall())
                assert "Index" in plan and "Seq Scan" not in plan, plan
                c.execute(sql, params)
                assert len(c.fetchall()) <= 51
    finally:
        log.close()


def test_the_readme_example_of_finding_stuck_runs_is_what_the_example_data_gives(store_path):
    root = os.path.join(os.path.dirname(__file__), "..")
    readme = open(os.path.join(root, "README.md")).read()
    command = "flowledger runs list --status running --status pending --updated-before 2026-11-04T21:00:00Z"
    assert f"```\n{command}\n```" in readme
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", store_path, "append", os.path.join(root, "examples", "welcome-series.jsonl")]).exit_code == 0
    result = runner.invoke(cli, ["--store", store_path, *command.split()[1:]])
    assert result.exit_code == 0, result.output
    assert f"```\n{command}\n```\n```\n{result.output.strip()}\n```" in readme
    assert "run-0283" in result.output
