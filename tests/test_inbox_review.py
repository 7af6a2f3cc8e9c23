"""The webhook inbox under hostile conditions: rows that cannot be appended (unreadable, of
another shape, invalid under the current vocabulary, refused by the log) are set aside as dead
letters instead of blocking every later webhook; a store opened by another spelling of its
path (a symlink) finds the same inbox."""

from __future__ import annotations

import os
import sqlite3

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from flowledger import ledger, queries
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.errors import InvalidInput, Problem
from flowledger.providers import ADAPTERS
from flowledger.store import open_log
from flowledger.store.inbox import INBOX_SUFFIX, open_inbox
from flowledger.store.log import EventLog
from tests.conftest import POSTGRES_UNREACHABLE, wait_until
from tests.histories import jsonl
from tests.test_inbox import post_sendgrid, postgres_append_lock, sqlite_write_lock, with_messages
from tests.test_webhooks import SECRETS, run_with_messages, sendgrid_events


def sendgrid_items():
    """The prepared facts of the usual SendGrid webhook (four facts about m-email)."""
    return ledger.prepare_provider_facts(ADAPTERS["sendgrid"].translate_all(sendgrid_events()))


def spoil_inbox_rows(store_path, items: bytes | str):
    """Overwrite every inbox row's facts, as a damaged file or an older layout would hold them."""
    conn = sqlite3.connect(store_path + INBOX_SUFFIX)
    try:
        conn.execute("UPDATE webhook_inbox SET items = ?", (items,))
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("items", "why"),
    [
        (b"not json", "cannot be read"),
        (b'[[{"id": "x"}, null]]', "field"),
        (b'{"a": 1}', "cannot be read"),
        ("[[{}, null]", "cannot be read"),  # stored as TEXT, not a BLOB
    ],
    ids=["undecodable", "an-invalid-event", "another-shape", "text"],
)
def test_an_inbox_row_that_cannot_be_appended_is_set_aside_and_later_webhooks_are_stored(store_path, items, why):
    with_messages(store_path)
    with TestClient(create_app(store_path, provider_secrets=SECRETS, lock_timeout=0.2)) as client:
        with sqlite_write_lock(store_path):
            assert post_sendgrid(client, sendgrid_events()).json()["deferred"] == 4
        spoil_inbox_rows(store_path, items)
        # The spoilt row neither fails this webhook (500) nor defers it behind itself forever.
        r = post_sendgrid(client, sendgrid_events())
        assert r.status_code == 200, r.text
        assert r.json() == {"appended": 4, "duplicates": 0, "held": 0, "skipped": 0}
        # No follower here: the views have folded none of the webhook's facts.
        assert client.get("/healthz").json() == {"status": "ok", "position": 14, "behind": 4}
    log = open_log(store_path)
    try:
        assert ledger.inbox_count(log) == 0
        (letter,) = ledger.inbox_dead_letters(log)
        assert why in letter["reason"]
        assert letter["received_at"] and letter["set_aside_at"]
        # Kept as it was, for whoever repairs it.
        assert letter["items"] == (items if isinstance(items, str) else items.decode())
    finally:
        log.close()


def test_a_fact_invalid_under_the_current_vocabulary_is_set_aside_and_never_reaches_the_log(log):
    """An inbox written by an earlier version may hold facts this one refuses (a blank id):
    appended, they would be in the log unchecked; the ones after them are appended."""
    ledger.append_input(log, jsonl(run_with_messages()))
    good = sendgrid_items()
    body, match_by = good.items[0]
    inbox = open_inbox(log.backend)
    try:
        inbox.put([({**body, "id": " "}, match_by)], good.received_at)
        inbox.put(good.items, good.received_at)
        assert ledger.drain_inbox(log, inbox) == 4
        assert inbox.count() == 0
    finally:
        inbox.close()
    assert log.count() == 10 + 4
    (letter,) = ledger.inbox_dead_letters(log)
    assert 'field "id"' in letter["reason"] and "not only spaces" in letter["reason"]
    assert orjson.loads(letter["items"])[0][0]["id"] == " "
    assert ledger.query(log, queries.show_delivery, "m-email")["status"] == "clicked"


def test_a_webhook_the_log_refuses_is_set_aside_and_the_rest_appended(log, monkeypatch):
    ledger.append_input(log, jsonl(run_with_messages()))
    good = sendgrid_items()
    inbox = open_inbox(log.backend)
    real = EventLog.append_provider_events

    def refusing(self, items, received_at, **kwargs):
        # A refusal the vocabulary cannot foresee (a rule of the log): its InvalidInput.
        if items[0][0]["id"] == "sendgrid:e-deliv":
            raise InvalidInput([Problem(None, "refused by a rule of the log", "sendgrid:e-deliv", 0)])
        return real(self, items, received_at, **kwargs)

    monkeypatch.setattr(EventLog, "append_provider_events", refusing)
    try:
        inbox.put(good.items[:1], good.received_at)
        inbox.put(good.items[1:], good.received_at)
        assert ledger.drain_inbox(log, inbox) == 3
        assert inbox.count() == 0
    finally:
        inbox.close()
    (letter,) = ledger.inbox_dead_letters(log)
    assert "refused by a rule of the log" in letter["reason"]
    assert log.count() == 10 + 3


def test_project_and_the_servers_follower_get_past_an_unreadable_row(store_path):
    with_messages(store_path)
    with TestClient(create_app(store_path, provider_secrets=SECRETS, lock_timeout=0.2)) as client:
        with sqlite_write_lock(store_path):
            assert post_sendgrid(client, sendgrid_events()).json()["deferred"] == 4
    spoil_inbox_rows(store_path, b"\xff")
    # A server's start-up catches up as `project` does: neither may stop at the row.
    result = CliRunner().invoke(cli, ["--store", store_path, "project"])
    assert result.exit_code == 0, result.output
    log = open_log(store_path)
    try:
        assert ledger.inbox_count(log) == 0 and len(ledger.inbox_dead_letters(log)) == 1
    finally:
        log.close()
    with TestClient(create_app(store_path, provider_secrets=SECRETS, lock_timeout=0.2, follow=True)) as client:
        with sqlite_write_lock(store_path):
            assert post_sendgrid(client, sendgrid_events()).json()["deferred"] == 4
        spoil_inbox_rows(store_path, b"[")
        with sqlite_write_lock(store_path):
            assert post_sendgrid(client, sendgrid_events()).json()["deferred"] == 4
        wait_until(lambda: "deferred" not in client.get("/healthz").json())
        # The views catch up at the follower's next round, which folds the facts.
        wait_until(lambda: client.get("/healthz").json().get("behind") == 0)
        assert client.get("/healthz").json() == {"status": "ok", "position": 14, "behind": 0}
    log = open_log(store_path)
    try:
        assert len(ledger.inbox_dead_letters(log)) == 2
        assert ledger.query(log, queries.show_delivery, "m-email", fresh=False)["status"] == "clicked"
    finally:
        log.close()


def test_a_store_opened_through_a_symlink_finds_the_same_inbox(tmp_path):
    real = str(tmp_path / "real.db")
    link = str(tmp_path / "link.db")
    with_messages(real)
    os.symlink(real, link)
    with TestClient(create_app(link, provider_secrets=SECRETS, lock_timeout=0.2)) as client:
        with sqlite_write_lock(real):
            assert post_sendgrid(client, sendgrid_events()).json()["deferred"] == 4
    log = open_log(real)
    try:
        assert ledger.inbox_count(log) == 4
        ledger.catch_up(log)
        assert log.count() == 14 and ledger.inbox_count(log) == 0
    finally:
        log.close()


def test_an_empty_store_without_an_inbox_has_no_dead_letters_and_makes_no_file(store_path):
    log = open_log(store_path)
    try:
        assert ledger.inbox_dead_letters(log) == []
    finally:
        log.close()
    assert not os.path.exists(store_path + INBOX_SUFFIX)


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=str(POSTGRES_UNREACHABLE))
def test_postgresql_an_inbox_row_that_cannot_be_appended_is_set_aside(postgres_url):
    from tests.conftest import server_connection
    from flowledger.store.postgres import parse_url

    with_messages(postgres_url)
    with TestClient(create_app(postgres_url, provider_secrets=SECRETS, lock_timeout=0.2)) as client:
        with postgres_append_lock(postgres_url):
            assert post_sendgrid(client, sendgrid_events()).json()["deferred"] == 4
        with server_connection(postgres_url, autocommit=True) as conn:
            conn.execute(f'UPDATE "{parse_url(postgres_url)["schema"]}".webhook_inbox SET items = %s', (b"not json",))
        r = post_sendgrid(client, sendgrid_events())
        assert r.status_code == 200, r.text
        assert r.json() == {"appended": 4, "duplicates": 0, "held": 0, "skipped": 0}
    log = open_log(postgres_url)
    try:
        assert ledger.inbox_count(log) == 0
        (letter,) = ledger.inbox_dead_letters(log)
        assert "cannot be read" in letter["reason"] and letter["items"] == "not json"
    finally:
        log.close()



def test_a_webhook_does_not_count_the_whole_inbox(store_path):
    """While a long import holds the lock, the inbox grows by every webhook: each one asks
    only whether any facts wait (one row read), never sums them all (a scan, twice a webhook)."""
    with_messages(store_path)
    log = open_log(store_path, lock_timeout=0.2)
    inbox = open_inbox(log.backend)
    statements: list[str] = []
    try:
        with sqlite_write_lock(store_path):
            assert ledger.receive_provider_facts(log, inbox, sendgrid_items())[1] == 4
            inbox._conn.set_trace_callback(statements.append)
            assert ledger.receive_provider_facts(log, inbox, sendgrid_items())[1] == 4
        inbox._conn.set_trace_callback(None)
        assert inbox.count() == 8
    finally:
        inbox.close()
        log.close()
    assert statements and not [s for s in statements if "SUM(" in s.upper()]


def test_the_inbox_command_shows_what_waits_and_the_dead_letters(store_path):
    from click.testing import CliRunner

    from flowledger.cli import cli

    def inbox(*args):
        result = CliRunner().invoke(cli, ["--store", store_path, "inbox", *args])
        assert result.exit_code == 0, result.output
        return result.output

    with_messages(store_path)
    assert orjson.loads(inbox("--json")) == {"waiting": 0, "dead_letters": []}
    with TestClient(create_app(store_path, provider_secrets=SECRETS, lock_timeout=0.2)) as client:
        with sqlite_write_lock(store_path):
            assert post_sendgrid(client, sendgrid_events()).json()["deferred"] == 4
            assert orjson.loads(inbox("--json"))["waiting"] == 4
            assert inbox().startswith("4 provider event(s) waiting for the write lock; 0 dead letter(s).")
    spoil_inbox_rows(store_path, b"not json")
    log = open_log(store_path)
    ledger.catch_up(log)  # drains: the spoilt row is set aside
    log.close()
    shown = orjson.loads(inbox("--json"))
    assert shown["waiting"] == 0 and [d["reason"] for d in shown["dead_letters"]] == [shown["dead_letters"][0]["reason"]]
    assert "cannot be read" in shown["dead_letters"][0]["reason"] and shown["dead_letters"][0]["items"] == "not json"
    table = inbox()
    assert table.startswith("0 provider event(s) waiting for the write lock; 1 dead letter(s).")
    assert "cannot be read" in table
