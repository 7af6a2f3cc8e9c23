"""Long-lived processes and operators' commands beside views another version of flowledger
made: a query, a follower's idle poll and a command each look at the views' versions (one
small read), so that none answers from, folds into or records beside another version's views."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from flowledger import ledger, queries
from flowledger.errors import ViewsMadeByANewerVersion, ViewsRemadeByAnotherVersion
from flowledger.projections.deliveries_view import DeliveriesView
from flowledger.projections.projector import Projector
from flowledger.projections.runs_view import RunsView
from flowledger.projections.steps_view import StepsView
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, ev, triggered, wait_until
from tests.histories import jsonl
from tests.view_versions_kit import NewerRunsView, OlderRunsView, run_status

needs_postgres = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


def _remake(path: str, runs_view: RunsView) -> None:
    """Another version of flowledger (another process) makes the runs view again and folds it."""
    other = open_log(path)
    try:
        Projector(other.backend, [runs_view, StepsView(), DeliveriesView()]).rebuild(downgrade=True, helper=False)
    finally:
        other.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def url(request, store_path):
    """A store's URL (not made yet), on each backend."""
    return store_path if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def started(url):
    """A store of one running run whose views this process made and folded."""
    log = open_log(url)
    ledger.append_input(log, jsonl([triggered("r1"), ev("run.started", run_id="r1")]))
    ledger.catch_up(log)
    yield log
    log.close()


@pytest.mark.parametrize("fresh", [True, False])
@pytest.mark.parametrize("other", [NewerRunsView, OlderRunsView])
def test_a_query_refuses_views_another_version_made_after_this_process_made_its_own(started, url, fresh, other):
    _remake(url, other())
    with pytest.raises(ViewsRemadeByAnotherVersion) as refused:
        ledger.query(started, queries.list_runs, queries.RunFilters(), fresh=fresh)
    message = str(refused.value)
    assert "'runs'" in message and f"view version {other.version}" in message and "answered nothing" in message


def test_a_query_of_views_another_version_did_not_remake_still_answers(started, url):
    _remake(url, NewerRunsView())
    # Deliveries were made again too, but by the same rules: this version's rows.
    page = ledger.query(started, queries.list_deliveries, queries.DeliveryFilters(), fresh=False)
    assert page["entries"] == []


def test_a_query_reads_the_versions_once_in_its_own_transaction(started, monkeypatch):
    reads: list[int] = []
    transactions: list[int] = []
    versions, transaction = Projector.stored_versions, started.backend.transaction

    def counted_versions(c: Any) -> dict[str, str]:
        reads.append(1)
        return versions(c)

    def counted_transaction(**kwargs: Any) -> Any:
        transactions.append(1)
        return transaction(**kwargs)

    monkeypatch.setattr(Projector, "stored_versions", staticmethod(counted_versions))
    monkeypatch.setattr(started.backend, "transaction", counted_transaction)
    for fresh, opened in ((True, 2), (False, 1)):  # the catch-up's positions, then the query's own
        reads.clear()
        transactions.clear()
        page = ledger.query(started, queries.list_runs, queries.RunFilters(), fresh=fresh)
        assert [e["id"] for e in page["entries"]] == ["r1"]
        assert (len(reads), len(transactions)) == (1, opened)


def test_a_follower_with_nothing_to_fold_stops_once_another_version_remade_the_views(started, url):
    polls: list[int] = []

    def should_stop() -> bool:
        polls.append(1)
        if len(polls) == 2:
            _remake(url, NewerRunsView())  # and folded the whole log: nothing left to fold
        return len(polls) > 20

    with pytest.raises(ViewsRemadeByAnotherVersion, match="folds nothing more into them"):
        ledger.follow(started, interval=0.01, should_stop=should_stop)
    assert len(polls) <= 3


def test_an_analysts_copy_made_by_this_version_answers_queries(started, tmp_path):
    copy = open_log(str(tmp_path / "copy.db"))
    try:
        ledger.rebuild(started, into=copy)
        for fresh in (True, False):
            page = ledger.query(copy, queries.list_runs, queries.RunFilters(), fresh=fresh)
            assert [e["id"] for e in page["entries"]] == ["r1"]
    finally:
        copy.close()


_status = run_status


def test_a_command_of_a_process_that_made_its_views_long_ago_records_nothing_beside_newer_ones(started, url):
    # This process looked at the views (ensure_tables, once per process) before the newer version came.
    _remake(url, NewerRunsView())
    with pytest.raises(ViewsRemadeByAnotherVersion, match="recorded nothing"):
        ledger.cancel_run(started, "r1", reason="customer asked")
    assert _status(url, "r1") == "running"


def test_a_command_of_an_older_process_records_nothing_and_says_so(store_path):
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl([triggered("r1"), ev("run.failed", run_id="r1", error="boom")]))
        Projector(log.backend, [NewerRunsView(), StepsView(), DeliveriesView()]).catch_up()
    finally:
        log.close()
    older = open_log(store_path)  # a process of this (older) version, its views never looked at
    try:
        with pytest.raises(ViewsMadeByANewerVersion, match="left the store as it was"):
            ledger.retry_run(older, "r1", reason="outage over")
    finally:
        older.close()
    assert _status(store_path, "r1") == "failed"


def test_cancel_by_key_of_an_older_process_reads_no_view_and_says_what_it_did(store_path):
    # Appends (and cancel --key, which reads the log's own key table) leave the views alone:
    # an older version may make them, and its answer is true.
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl([triggered("r1", trigger={"source": "api", "cancellation_key": "k1"})]))
        Projector(log.backend, [NewerRunsView(), StepsView(), DeliveriesView()]).catch_up()
    finally:
        log.close()
    older = open_log(store_path)
    try:
        assert ledger.cancel_by_key(older, "k1", reason="order refunded") == ["r1"]
    finally:
        older.close()
    assert _status(store_path, "r1") == "cancelled"
    with sqlite3.connect(store_path) as conn:
        stored = dict(conn.execute("SELECT key, value FROM flowledger_meta WHERE key = 'view:runs'").fetchall())
    assert stored == {"view:runs": str(NewerRunsView.version)}


def test_an_older_server_stops_its_follower_and_refuses_commands_after_a_newer_version_remade_views(started, url):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from flowledger.api import keys
    from flowledger.api.app import create_app

    secret = keys.create_key(started.backend, "ops", "admin")[1]
    headers = {"X-API-Key": secret}
    with TestClient(create_app(url, follow=True)) as api:
        assert api.get("/healthz").status_code == 200
        _remake(url, NewerRunsView())
        cancelled = api.post("/v1/runs/r1/cancel", headers=headers, json={"reason": "customer asked"})
        assert cancelled.status_code == 503 and "recorded nothing" in cancelled.json()["detail"], cancelled.text
        wait_until(lambda: api.get("/healthz").status_code == 503, 10)
        health = api.get("/healthz")
    assert health.status_code == 503 and "'runs'" in health.json()["detail"], health.text
    assert _status(url, "r1") == "running"
