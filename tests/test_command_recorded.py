"""A retry or cancel that was recorded, but whose run record could not be read back after
it (another process took the write lock the catch-up needs, or another version of
flowledger remade the views in between): it says it was done, never that it failed, since
the operator's second try would be refused."""

from __future__ import annotations

import re
import sqlite3

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.errors import RecordedButNotShown
from flowledger.store import open_log
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_version_seams import _remake, started, url  # noqa: F401  (fixtures)
from tests.view_versions_kit import NewerRunsView


def _failed(path: str) -> None:
    log = open_log(path)
    try:
        ledger.append_input(
            log, jsonl([triggered("r1", max_retries=3), ev("run.started", run_id="r1"), ev("run.failed", run_id="r1", error="x")])
        )
        ledger.catch_up(log)
    finally:
        log.close()


@pytest.fixture
def lock_taken_after_the_record(store_path, monkeypatch):
    """Another process takes the store's write lock the moment the command's event is
    stored, before the record is read back (which catches the views up under that lock)."""
    held: list[sqlite3.Connection] = []
    record = ledger._record

    def then_locked(*args, **kwargs):
        record(*args, **kwargs)
        other = sqlite3.connect(store_path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        held.append(other)

    monkeypatch.setattr(ledger, "_record", then_locked)
    yield held
    for other in held:
        other.rollback()
        other.close()


def _failed_with_admin_key(path: str) -> str:
    """A store of one failed run, r1, and an admin key's secret."""
    _failed(path)
    log = open_log(path)
    try:
        return keys.create_key(log.backend, "ops", "admin")[1]
    finally:
        log.close()


def _status(path: str) -> str:
    log = open_log(path)
    try:
        return log.run_state("r1").status
    finally:
        log.close()


def test_a_retry_whose_record_cannot_be_read_back_says_it_was_done_and_exits_0(store_path, lock_taken_after_the_record):
    _failed(store_path)
    r = CliRunner().invoke(cli, ["--store", store_path, "--lock-timeout", "0.2", "retry", "r1", "--reason", "fixed"])
    assert lock_taken_after_the_record, "the lock was never taken: the test saw nothing"
    assert r.exit_code == 0, r.output
    assert r.stdout == "Run r1 retried (retry 1 of 3); status pending.\n"
    assert r.stderr.startswith("Warning: run 'r1' was retried (recorded in the log), but its record could not be read back")
    assert "busy" in r.stderr and "flowledger runs show r1" in r.stderr
    lock_taken_after_the_record.pop().rollback()
    assert _status(store_path) == "pending"
    # Done once: a second try is refused, as it would be had the record been shown.
    again = CliRunner().invoke(cli, ["--store", store_path, "retry", "r1"])
    assert again.exit_code == 1 and "it is pending" in again.output


def test_a_cancel_with_json_prints_what_the_log_knows_of_the_run(store_path, lock_taken_after_the_record):
    _failed(store_path)
    log = open_log(store_path)
    ledger.append_input(log, jsonl([triggered("r2")]))
    log.close()
    r = CliRunner().invoke(cli, ["--store", store_path, "--lock-timeout", "0.2", "cancel", "r2", "--json"])
    assert r.exit_code == 0, r.output
    printed = orjson.loads(r.stdout)
    assert printed["id"] == "r2" and printed["status"] == "cancelled" and printed["recorded"] is True
    assert printed["retry_count"] == 0 and "could not be read back" in printed["detail"]
    assert r.stderr.startswith("Warning: run 'r2' was cancelled (recorded in the log)")


def test_the_api_answers_202_with_what_the_log_knows(store_path, lock_taken_after_the_record):
    admin = _failed_with_admin_key(store_path)
    with TestClient(create_app(store_path, lock_timeout=0.2)) as client:
        r = client.post("/v1/runs/r1/retry", json={"reason": "fixed"}, headers={"X-API-Key": admin})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["id"] == "r1" and body["status"] == "pending" and body["retry_count"] == 1 and body["max_retries"] == 3
        assert body["recorded"] is True and "could not be read back" in body["detail"]
        lock_taken_after_the_record.pop().rollback()
        documented = client.get("/openapi.json", headers={"X-API-Key": admin}).json()
        for path in ("/v1/runs/{run_id}/retry", "/v1/runs/{run_id}/cancel"):
            answer = documented["paths"][path]["post"]["responses"]["202"]
            assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/CommandRecorded")
        again = client.post("/v1/runs/r1/retry", headers={"X-API-Key": admin})
        assert again.status_code == 409


def test_the_web_page_redirects_as_done(store_path, lock_taken_after_the_record):
    admin = _failed_with_admin_key(store_path)
    with TestClient(create_app(store_path, lock_timeout=0.2)) as client:
        client.post("/login", data={"api_key": admin, "next": "/"}, follow_redirects=False)
        page = client.get("/runs/r1").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        r = client.post("/runs/r1/retry", data={"csrf": csrf}, follow_redirects=False)
        assert lock_taken_after_the_record
        assert r.status_code == 303 and r.headers["location"] == "/runs/r1?done=retried"
    assert _status(store_path) == "pending"


def test_views_remade_by_another_version_after_the_check_leave_the_command_recorded(started, url, monkeypatch):  # noqa: F811
    record = ledger._record

    def then_remade(*args, **kwargs):
        record(*args, **kwargs)
        _remake(url, NewerRunsView())

    monkeypatch.setattr(ledger, "_record", then_remade)
    with pytest.raises(RecordedButNotShown) as shown:
        ledger.cancel_run(started, "r1", reason="customer asked")
    e = shown.value
    assert e.state == {"status": "cancelled", "retry_count": 0, "max_retries": e.state["max_retries"]}
    assert "another version of flowledger" in e.reason and "'runs'" in e.reason
    assert started.run_state("r1").status == "cancelled"


def test_a_record_read_back_is_the_run_as_ever(store_path):
    _failed(store_path)
    log = open_log(store_path)
    try:
        record = ledger.retry_run(log, "r1")
    finally:
        log.close()
    assert record["id"] == "r1" and record["status"] == "pending" and "recorded" not in record and "steps" in record
