"""PostgreSQL connections dropped or refused by the server while flowledger works: the
server ends a connection (pg_terminate_backend, a restart, its idle_session_timeout) or
cancels a statement (pg_cancel_backend, statement_timeout), or cannot be reached at all.

Each case is made exactly: another session holds a table's lock, so that flowledger's
transaction waits on it with its statement in flight, and the test ends (or cancels) the
waiting backend. Skipped where no PostgreSQL answers (tests/conftest.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import flowledger.api.app as app_module
from flowledger import ledger, queries
from flowledger.api import keys, told
from flowledger.cli import cli
from flowledger.store import open_log
from flowledger.store.postgres import parse_url
from tests.conftest import server_connection, triggered, wait_until
from tests.histories import jsonl

EXAMPLE = "examples/welcome-series.jsonl"


def _schema(url: str) -> str:
    return parse_url(url)["schema"]


@contextmanager
def _backend_ended_while_it_waits(url: str, table: str, how: str = "terminate") -> Iterator[list[int]]:
    """While the block runs, hold ``table``'s lock in another session; the
    store's connections found waiting for it are ended (``how``: terminate, or cancel its
    statement); the lock is let go after the block. Yields the pids ended."""
    schema = _schema(url)
    ended: list[int] = []
    holder = server_connection(url)
    holder.execute(f'LOCK TABLE "{schema}"."{table}" IN ACCESS EXCLUSIVE MODE')

    def end() -> None:
        with server_connection(url, autocommit=True) as admin:
            def waiting() -> list[Any]:
                return admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                    ("flowledger/" + schema,),
                ).fetchall()

            wait_until(waiting, 20)
            for (pid,) in waiting():
                admin.execute(f"SELECT pg_{how}_backend(%s)", (pid,))
                ended.append(pid)

    killer = threading.Thread(target=end)
    killer.start()
    try:
        yield ended
    finally:
        killer.join(30)
        holder.rollback()
        holder.close()


@pytest.fixture
def api(postgres_url, monkeypatch):
    """A client of the API on a PostgreSQL store with the example appended, an admin key,
    and the server's own event log (to reach its connection pool)."""
    log = open_log(postgres_url)
    with open(EXAMPLE, "rb") as f:
        ledger.append_input(log, f)
    secret = keys.create_key(log.backend, "drops", "admin")[1]
    log.close()
    opened: list[Any] = []
    real_open_log = app_module.open_log

    def open_and_keep(*args: Any, **kwargs: Any) -> Any:
        opened.append(real_open_log(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(app_module, "open_log", open_and_keep)
    # A lock timeout shorter than the default, should no backend be ended (a failing test).
    with TestClient(app_module.create_app(postgres_url, lock_timeout=10)) as client:
        client.headers["X-API-Key"] = secret
        yield client, opened[0]


def _stored(url: str, event_id: str) -> int:
    with server_connection(url) as conn:
        return conn.execute(
            f'SELECT count(*) FROM "{_schema(url)}".stored_events '
            "WHERE convert_from(state, 'UTF8')::json->>'id' = %s",
            (event_id,),
        ).fetchone()[0]


def test_a_post_whose_connection_is_ended_mid_append_is_a_503_and_a_resend_stores_it_once(api, postgres_url):
    client, _ = api
    batch = orjson.dumps([triggered("drop-run-1", id="drop-1")])
    with _backend_ended_while_it_waits(postgres_url, "stored_events") as ended:
        r = client.post("/v1/events", content=batch, headers={"Content-Type": "application/json"})
    assert ended, "the append never waited for the lock"
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "1"
    assert "connection to the store" in r.json()["detail"] and "lost" in r.json()["detail"], r.json()
    assert _stored(postgres_url, "drop-1") == 0
    # The pool replaces the connection: the same request, sent again, is stored, once.
    again = client.post("/v1/events", content=batch, headers={"Content-Type": "application/json"})
    assert again.status_code == 200 and again.json() == {"appended": 1, "duplicates": 0}
    assert client.post("/v1/events", content=batch, headers={"Content-Type": "application/json"}).json() == {"appended": 0, "duplicates": 1}
    assert _stored(postgres_url, "drop-1") == 1


def test_a_query_whose_statement_the_server_cancels_is_a_503(api, postgres_url):
    # pg_cancel_backend, or the server's statement_timeout: not the request's fault, nor a bug.
    client, _ = api
    with _backend_ended_while_it_waits(postgres_url, "stored_events", how="cancel") as ended:
        r = client.get("/v1/counts")
    assert ended
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    assert "cancel" in r.json()["detail"], r.json()
    assert client.get("/v1/counts").status_code == 200


def test_a_page_whose_connection_is_ended_is_a_503_page(api, postgres_url):
    client, _ = api
    signed = client.post("/login", data={"api_key": client.headers["X-API-Key"], "next": "/runs"}, follow_redirects=False)
    assert signed.status_code == 303
    with _backend_ended_while_it_waits(postgres_url, "stored_events") as ended:
        r = client.get("/runs", headers={"Accept": "text/html"})
    assert ended
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/html"), r.status_code
    assert "connection to the store" in r.text
    assert client.get("/runs").status_code == 200


def test_a_server_that_cannot_be_reached_any_more_is_a_503_its_log_saying_why(api, caplog):
    # The server gone after start-up: the pool finds no connection. The key's own look-up
    # failed, so the caller is told the kind of trouble, and the server's log the reason.
    client, log = api
    pool = log.backend.datastore.pool
    pool.timeout = 0.5
    log.backend._connect_kwargs["port"] = pool.kwargs["port"] = 1  # nothing listens there
    with server_connection(log.backend.reopen_url(), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            ("flowledger/" + log.backend.schema,),
        )
    with caplog.at_level(logging.WARNING, logger="flowledger.api.told"):
        r = client.get("/v1/counts")
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    assert r.json()["detail"] == told.UNAVAILABLE and "127.0.0.1" not in r.text, r.json()
    logged = " ".join(rec.getMessage() for rec in caplog.records if rec.name == "flowledger.api.told")
    assert "cannot reach the store" in logged and "refused" in logged, logged


def test_connections_the_server_closed_as_idle_are_replaced_as_a_transaction_begins(postgres_url):
    # A database with idle_session_timeout (managed services set one) closes the pool's idle
    # connections: each is found dead at BEGIN, before anything was done on it, so the
    # store takes a fresh one rather than failing the request after every quiet spell.
    log = open_log(postgres_url)
    try:
        pool = log.backend.datastore.pool
        pool.kwargs["options"] += " -c idle_session_timeout=400"
        with server_connection(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                ("flowledger/" + _schema(postgres_url),),
            )
        for _ in range(2):
            with log.backend.transaction(write=False) as c:  # connections made with the timeout
                c.execute("SELECT 1")
            time.sleep(1.0)  # every idle connection is closed by the server meanwhile
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT 1")
            assert c.fetchone() == (1,)
    finally:
        log.close()


def test_an_append_whose_connection_is_ended_mid_transaction_exits_1_and_stores_nothing(postgres_url, tmp_path):
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"".join(orjson.dumps(triggered(f"cli-run-{i}", id=f"cli-{i}")) + b"\n" for i in range(50)))
    log = open_log(postgres_url)
    log.close()
    with _backend_ended_while_it_waits(postgres_url, "stored_events") as ended:
        result = CliRunner().invoke(cli, ["--store", postgres_url, "--lock-timeout", "10", "append", str(source)])
    assert ended
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: the connection to the store postgresql://") and "lost" in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert _stored(postgres_url, "cli-0") == 0
    assert CliRunner().invoke(cli, ["--store", postgres_url, "append", str(source)]).stdout.strip() == '{"appended":50,"duplicates":0}'



def test_a_webhook_whose_connection_is_ended_mid_append_is_kept_in_the_inbox_and_stored_once(postgres_url):
    # A provider that never retries (Twilio's status callbacks) would lose a fact answered
    # 503: the connection the server ended is not the next one's fate, so the inbox keeps it.
    from tests.test_webhooks import SECRETS, run_with_messages, sendgrid_events, sendgrid_headers

    log = open_log(postgres_url)
    ledger.append_input(log, jsonl(run_with_messages()))
    log.close()
    body = orjson.dumps(sendgrid_events())
    with TestClient(app_module.create_app(postgres_url, provider_secrets=SECRETS, lock_timeout=10)) as client:
        with _backend_ended_while_it_waits(postgres_url, "stored_events") as ended:
            r = client.post("/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))
        assert ended, "the webhook's append never waited for the lock"
        assert r.status_code == 200, r.text
        assert r.json() == {"appended": 0, "duplicates": 0, "held": 0, "skipped": 0, "deferred": 4}
        log = open_log(postgres_url)
        try:
            ledger.catch_up(log)  # drains the inbox into the log first
            assert ledger.inbox_count(log) == 0
            assert ledger.query(log, queries.show_delivery, "m-email")["status"] == "clicked"
        finally:
            log.close()
        again = client.post("/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))
        assert again.json() == {"appended": 0, "duplicates": 4, "held": 0, "skipped": 0}
