"""Each store has an identity (a random id in flowledger_meta), and a SQLite store's webhook
inbox records the id of the store it was kept for: an inbox left behind when its store was
deleted is never appended to another store made later at the same path."""

from __future__ import annotations

import logging
import os
import sqlite3

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.store import open_log
from flowledger.store.inbox import INBOX_SUFFIX
from tests.conftest import POSTGRES_UNREACHABLE, server_connection
from tests.test_inbox import post_sendgrid, sqlite_write_lock, stored, with_messages
from tests.test_webhooks import SECRETS, sendgrid_events


def meta(path: str) -> dict[str, str]:
    """A SQLite store's flowledger_meta, read with a plain connection."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM flowledger_meta").fetchall())
    finally:
        conn.close()


def forget_id(path: str) -> None:
    """Make a store look made before stores had ids."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("DELETE FROM flowledger_meta WHERE key = 'store_id'")
        conn.commit()
    finally:
        conn.close()


def defer_sendgrid(path: str) -> None:
    """Keep the usual SendGrid webhook's four facts in the store's inbox (its lock held)."""
    with TestClient(create_app(path, provider_secrets=SECRETS, lock_timeout=0.2)) as client:
        with sqlite_write_lock(path):
            assert post_sendgrid(client, sendgrid_events()).json()["deferred"] == 4


def remove_store_keeping_inbox(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    assert os.path.exists(path + INBOX_SUFFIX)


def test_a_new_store_has_an_id_that_stays(store_path):
    with_messages(store_path)
    store_id = meta(store_path)["store_id"]
    assert len(store_id) == 32 and int(store_id, 16) >= 0
    log = open_log(store_path)
    try:
        assert log.backend.store_identity() == store_id
    finally:
        log.close()
    assert meta(store_path)["store_id"] == store_id


def test_an_inbox_left_behind_is_not_appended_to_a_new_store_at_its_path(store_path, caplog):
    with_messages(store_path)
    old_id = meta(store_path).get("store_id")
    defer_sendgrid(store_path)
    remove_store_keeping_inbox(store_path)
    with_messages(store_path)  # another store, with the same runs and messages
    new_id = meta(store_path).get("store_id")
    log = open_log(store_path)
    try:
        before = stored(log, "message:m-email")
        with caplog.at_level(logging.WARNING, logger="flowledger"):
            ledger.catch_up(log)
        assert stored(log, "message:m-email") == before  # none of the old store's facts
        assert ledger.inbox_count(log) == 0
        assert old_id and new_id and new_id != old_id
        (letter,) = ledger.inbox_dead_letters(log)
        assert letter["n"] == 4
        assert letter["reason"] == f"kept for another store (id {old_id}), not this one (id {new_id})"
        assert "sendgrid" in letter["items"]  # kept as they were
        assert old_id in caplog.text and "dead letter" in caplog.text
    finally:
        log.close()
    # `flowledger inbox` shows them, with the reason.
    r = CliRunner().invoke(cli, ["--store", store_path, "inbox", "--json"])
    assert r.exit_code == 0, r.output
    assert old_id in r.output


def test_the_inbox_serves_its_new_store_once_the_old_facts_are_set_aside(store_path):
    """A webhook of the new store deferred to the inbox left behind is its own: appended."""
    with_messages(store_path)
    defer_sendgrid(store_path)
    remove_store_keeping_inbox(store_path)
    with_messages(store_path)
    defer_sendgrid(store_path)  # the old facts set aside, the new ones recorded as this store's
    log = open_log(store_path)
    try:
        before = len(stored(log, "message:m-email"))
        ledger.catch_up(log)
        assert len(stored(log, "message:m-email")) == before + 4
        assert ledger.inbox_count(log) == 0
        assert len(ledger.inbox_dead_letters(log)) == 1
    finally:
        log.close()


def test_a_store_made_before_ids_gets_one_from_the_first_process_that_writes_it(store_path):
    with_messages(store_path)
    forget_id(store_path)
    # A command that only reads writes nothing: no id yet.
    r = CliRunner().invoke(cli, ["--store", store_path, "replay", "r1", "--json"])
    assert r.exit_code == 0, r.output
    assert "store_id" not in meta(store_path)
    log = open_log(store_path, create=False)
    try:
        assert log.backend.store_identity() is None
    finally:
        log.close()
    assert "store_id" not in meta(store_path)
    # A process opening it to write (append, serve, keys create) gives it one, once.
    open_log(store_path).close()
    store_id = meta(store_path)["store_id"]
    assert len(store_id) == 32
    r = CliRunner().invoke(cli, ["--store", store_path, "keys", "create", "--name", "ops", "--scope", "read"])
    assert r.exit_code == 0, r.output
    assert meta(store_path)["store_id"] == store_id


def test_a_reader_that_opened_before_the_id_was_given_sees_it(store_path):
    with_messages(store_path)
    forget_id(store_path)
    reader = open_log(store_path, create=False)
    try:
        assert reader.backend.store_identity() is None
        open_log(store_path).close()
        assert reader.backend.store_identity() == meta(store_path)["store_id"]
    finally:
        reader.close()


def test_an_inbox_made_before_ids_is_trusted_and_then_recorded(store_path):
    with_messages(store_path)
    defer_sendgrid(store_path)
    # As an earlier version left it: no record of its store.
    conn = sqlite3.connect(store_path + INBOX_SUFFIX)
    try:
        conn.execute("DROP TABLE IF EXISTS webhook_inbox_meta")
        conn.commit()
    finally:
        conn.close()
    log = open_log(store_path)
    try:
        before = len(stored(log, "message:m-email"))
        ledger.catch_up(log)
        assert len(stored(log, "message:m-email")) == before + 4
        assert ledger.inbox_dead_letters(log) == []
    finally:
        log.close()


def test_a_deferred_webhook_is_appended_to_its_own_store(store_path):
    with_messages(store_path)
    defer_sendgrid(store_path)
    log = open_log(store_path)
    try:
        before = len(stored(log, "message:m-email"))
        ledger.catch_up(log)
        assert len(stored(log, "message:m-email")) == before + 4
        assert ledger.inbox_dead_letters(log) == []
    finally:
        log.close()


def test_the_id_survives_a_rebuild_and_is_not_copied_into_another_file(store_path, tmp_path):
    with_messages(store_path)
    store_id = meta(store_path)["store_id"]
    runner = CliRunner()
    r = runner.invoke(cli, ["--store", store_path, "rebuild"])
    assert r.exit_code == 0, r.output
    assert meta(store_path)["store_id"] == store_id
    into = str(tmp_path / "analysis.db")
    r = runner.invoke(cli, ["--store", store_path, "rebuild", "--into", into])
    assert r.exit_code == 0, r.output
    copy_id = meta(into).get("store_id")
    assert copy_id and copy_id != store_id
    assert meta(store_path)["store_id"] == store_id
    # Rebuilt into again, the copy keeps its own id.
    r = runner.invoke(cli, ["--store", store_path, "rebuild", "--into", into])
    assert r.exit_code == 0, r.output
    assert meta(into)["store_id"] == copy_id


def test_a_store_made_before_ids_opened_to_write_while_busy_opens_and_gets_its_id_later(store_path):
    """A server starting during an import must start (its webhooks go to the inbox): giving
    the store its id never waits for the write lock."""
    with_messages(store_path)
    forget_id(store_path)
    with sqlite_write_lock(store_path):
        log = open_log(store_path, lock_timeout=30)
        try:
            assert log.backend.store_identity() is None
        finally:
            log.close()
    assert "store_id" not in meta(store_path)
    open_log(store_path).close()
    assert "store_id" in meta(store_path)


def pg_meta(url: str) -> dict[str, str]:
    """A PostgreSQL store's flowledger_meta, read by the test's own connection."""
    from flowledger.store.postgres import parse_url

    with server_connection(url) as conn:
        rows = conn.execute(f'SELECT key, value FROM "{parse_url(url)["schema"]}".flowledger_meta').fetchall()
    return dict(rows)


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=str(POSTGRES_UNREACHABLE))
def test_a_postgresql_store_has_an_id_too_given_once_to_one_made_before(postgres_url):
    open_log(postgres_url).close()
    store_id = pg_meta(postgres_url)["store_id"]
    assert len(store_id) == 32
    open_log(postgres_url).close()
    assert pg_meta(postgres_url)["store_id"] == store_id
    from flowledger.store.postgres import parse_url

    with server_connection(postgres_url, autocommit=True) as conn:
        conn.execute(f'DELETE FROM "{parse_url(postgres_url)["schema"]}".flowledger_meta WHERE key = %s', ("store_id",))
    reader = open_log(postgres_url, create=False)
    try:
        assert reader.backend.store_identity() is None
    finally:
        reader.close()
    assert "store_id" not in pg_meta(postgres_url)
    open_log(postgres_url).close()
    assert len(pg_meta(postgres_url)["store_id"]) == 32
