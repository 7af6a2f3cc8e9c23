"""The webhook inbox, followed up: the server's follower never waits the store's (long) lock
timeout to drain it, so the views keep catching up during an import; counting what waits
(every /healthz) reads a kept count, never the whole inbox; and an inbox left by a deleted
store is listed as set aside for another store, never as waiting to be appended."""

from __future__ import annotations

import re
import sqlite3
import threading

import orjson
import pytest
from click.testing import CliRunner

from flowledger import ledger, queries
from flowledger.cli import cli
from flowledger.store import open_log
from flowledger.store.inbox import INBOX_SUFFIX, open_inbox
from tests.conftest import POSTGRES_UNREACHABLE, server_connection
from tests.test_inbox import postgres_append_lock, sqlite_write_lock, with_messages
from tests.test_inbox_review import sendgrid_items, spoil_inbox_rows
from tests.test_store_identity import defer_sendgrid, meta, remove_store_keeping_inbox

needs_postgres = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def url(request, store_path):
    """A store's URL (not made yet), on each backend."""
    return store_path if request.param == "sqlite" else request.getfixturevalue("postgres_url")


class Follower:
    """The server's follower (drain, then catch up), run for one round at a time in a thread."""

    def __init__(self, log, inbox):
        self.log, self.inbox = log, inbox
        self.workers: list[threading.Thread] = []

    def one_round(self, seconds=30):
        """Whether a round ended within ``seconds`` (far less than the store's lock timeout)."""
        asked = []

        def should_stop():
            asked.append(True)
            return len(asked) > 1

        worker = threading.Thread(
            target=ledger.follow, args=(self.log,), kwargs={"interval": 0.01, "should_stop": should_stop, "inbox": self.inbox}, daemon=True
        )
        self.workers.append(worker)
        worker.start()
        worker.join(seconds)
        return not worker.is_alive()

    def finish(self):
        """Wait for a round still waiting (the lock now free), before its store is closed."""
        for worker in self.workers:
            worker.join()


def put(inbox, facts=4):
    """Keep (some of) the usual SendGrid webhook's facts in the inbox."""
    prepared = sendgrid_items()
    inbox.put(prepared.items[:facts], prepared.received_at)


# 1. The follower drains with a webhook's short wait, not the store's lock timeout.


def test_the_follower_gives_up_the_drain_while_an_import_holds_the_lock_and_drains_at_a_later_round(store_path, monkeypatch):
    monkeypatch.setattr(ledger, "WEBHOOK_LOCK_TIMEOUT", 0.1)
    with_messages(store_path)
    log = open_log(store_path, lock_timeout=3600)  # serve --lock-timeout 3600
    inbox = open_inbox(log.backend)
    follower = Follower(log, inbox)
    try:
        ledger.catch_up(log, inbox=inbox)
        put(inbox)
        with sqlite_write_lock(store_path):
            assert follower.one_round(), "the follower was still waiting for the import's lock"
            assert inbox.count() == 4  # kept for a later round
        assert follower.one_round()
        assert inbox.count() == 0 and log.count() == 14
        assert ledger.query(log, queries.show_delivery, "m-email", fresh=False)["status"] == "clicked"
    finally:
        follower.finish()
        inbox.close()
        log.close()


@needs_postgres
def test_postgresql_the_views_catch_up_while_an_import_holds_the_append_lock(postgres_url, monkeypatch):
    monkeypatch.setattr(ledger, "WEBHOOK_LOCK_TIMEOUT", 0.1)
    with_messages(postgres_url)  # appended, the views not caught up yet
    log = open_log(postgres_url, lock_timeout=3600)
    inbox = open_inbox(log.backend)
    follower = Follower(log, inbox)
    try:
        put(inbox)
        with postgres_append_lock(postgres_url):
            assert follower.one_round(), "the follower was still waiting for the import's lock"
            # The views need no append lock on PostgreSQL: they went on catching up.
            assert ledger.query(log, queries.show_delivery, "m-email", fresh=False)["status"] == "sent"
            assert inbox.count() == 4
        assert follower.one_round()
        assert inbox.count() == 0
        assert ledger.query(log, queries.show_delivery, "m-email", fresh=False)["status"] == "clicked"
    finally:
        follower.finish()
        inbox.close()
        log.close()


# 2. Counting what waits reads a kept count, not every waiting row.


def _statements(log, inbox, monkeypatch):
    """The statements run on the inbox from now on (a list that fills as they run)."""
    seen: list[str] = []
    if log.backend.name == "postgresql":
        from flowledger.store import postgres

        real = postgres.PgCursor.execute

        def execute(self, statement, params=()):
            seen.append(statement)
            return real(self, statement, params)

        monkeypatch.setattr(postgres.PgCursor, "execute", execute)
    else:
        inbox.count()  # open the inbox's connection
        inbox._conn.set_trace_callback(seen.append)
    return seen


def _summed(url) -> int:
    """The facts the inbox's rows hold, summed with a plain connection."""
    if url.startswith("postgresql"):
        from flowledger.store.postgres import parse_url

        with server_connection(url) as conn:
            return conn.execute(f'SELECT COALESCE(SUM(n), 0) FROM "{parse_url(url)["schema"]}".webhook_inbox').fetchone()[0]
    conn = sqlite3.connect(url + INBOX_SUFFIX)
    try:
        return conn.execute("SELECT COALESCE(SUM(n), 0) FROM webhook_inbox").fetchone()[0]
    finally:
        conn.close()


def test_counting_what_waits_reads_no_waiting_row(url, monkeypatch):
    """/healthz counts the inbox at every probe (a load balancer's, every few seconds),
    while an import makes it grow: a count kept as rows come and go, never a scan."""
    with_messages(url)
    log = open_log(url)
    inbox = open_inbox(log.backend)
    try:
        for _ in range(3):
            put(inbox)
        seen = _statements(log, inbox, monkeypatch)
        assert ledger.inbox_count(log, inbox) == 12
        assert seen, "no statement was seen"
        assert not [s for s in seen if re.search(r"\bFROM\s+(\S+\.)?webhook_inbox\b(?!_)", s, re.IGNORECASE)], seen
    finally:
        inbox.close()
        log.close()


def test_the_kept_count_follows_every_way_rows_come_and_go(url):
    with_messages(url)
    log = open_log(url)
    inbox = open_inbox(log.backend)
    try:
        assert inbox.count() == 0
        put(inbox)
        put(inbox, facts=1)
        assert inbox.count() == _summed(url) == 5
        (first, second) = inbox.oldest(10)
        inbox.delete([second.seq])
        assert inbox.count() == _summed(url) == 4
        inbox.set_aside(first.seq, "a test's reason", "2026-11-01T09:00:00Z")
        assert inbox.count() == _summed(url) == 0
        # Rows written or removed by hand, or by an earlier flowledger, are counted too.
        for _ in range(2):
            put(inbox)
        _by_hand(url, "DELETE FROM {t} WHERE seq = (SELECT MIN(seq) FROM {t})")
        assert inbox.count() == _summed(url) == 4
        _by_hand(url, "UPDATE {t} SET n = 7")
        assert inbox.count() == _summed(url) == 7
        assert ledger.drain_inbox(log, inbox) == 4  # n was lied about by hand; the facts are 4
        assert inbox.count() == _summed(url) == 0
    finally:
        inbox.close()
        log.close()


def _by_hand(url, statement):
    """Run a statement on the inbox's table ({t}) with a plain connection."""
    if url.startswith("postgresql"):
        from flowledger.store.postgres import parse_url

        with server_connection(url) as conn:
            conn.execute(statement.format(t=f'"{parse_url(url)["schema"]}".webhook_inbox'))
            conn.commit()
        return
    conn = sqlite3.connect(url + INBOX_SUFFIX)
    try:
        conn.execute(statement.format(t="webhook_inbox"))
        conn.commit()
    finally:
        conn.close()


def _as_made_before_the_kept_count(url):
    """Make the store's inbox look made by a flowledger that kept no count of it."""
    if url.startswith("postgresql"):
        from flowledger.store.postgres import parse_url

        schema = parse_url(url)["schema"]
        with server_connection(url) as conn:
            conn.execute(f'DROP TABLE "{schema}".webhook_inbox_count')
            conn.execute(f'DROP FUNCTION "{schema}".webhook_inbox_counted() CASCADE')
            conn.commit()
        return
    conn = sqlite3.connect(url + INBOX_SUFFIX)
    try:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("DROP TABLE webhook_inbox_count")
        conn.commit()
    finally:
        conn.close()


def test_an_inbox_made_before_the_kept_count_is_counted_then_keeps_one_from_its_next_write(url):
    with_messages(url)
    log = open_log(url)
    inbox = open_inbox(log.backend)
    try:
        for _ in range(2):
            put(inbox)
    finally:
        inbox.close()
    _as_made_before_the_kept_count(url)
    _by_hand(url, "INSERT INTO {t} (received_at, n, items) SELECT received_at, n, items FROM {t}")  # an earlier version's puts
    inbox = open_inbox(log.backend)
    try:
        assert ledger.inbox_count(log, inbox) == _summed(url) == 16
        put(inbox)  # its first write keeps the count
        assert inbox.count() == _summed(url) == 20
        _by_hand(url, "DELETE FROM {t} WHERE seq = (SELECT MIN(seq) FROM {t})")
        assert inbox.count() == _summed(url) == 16
        assert ledger.drain_inbox(log, inbox) == 16
        assert inbox.count() == 0
    finally:
        inbox.close()
        log.close()


# 3. An inbox left by a deleted store is listed as set aside, not as waiting.


def inbox_json(store_path):
    r = CliRunner().invoke(cli, ["--store", store_path, "inbox", "--json"])
    assert r.exit_code == 0, r.output
    return orjson.loads(r.output)


def test_an_inbox_left_by_a_deleted_store_is_listed_as_set_aside_before_any_drain(store_path):
    with_messages(store_path)
    old_id = meta(store_path)["store_id"]
    defer_sendgrid(store_path)
    remove_store_keeping_inbox(store_path)
    with_messages(store_path)
    new_id = meta(store_path)["store_id"]
    reason = f"kept for another store (id {old_id}), not this one (id {new_id})"
    listed = inbox_json(store_path)
    # Not waiting for this store's lock: the next drain sets them aside, with this reason.
    assert listed["waiting"] == 0
    (letter,) = listed["dead_letters"]
    assert (letter["reason"], letter["n"], letter["set_aside_at"]) == (reason, 4, None)
    assert "sendgrid" in letter["items"]
    r = CliRunner().invoke(cli, ["--store", store_path, "inbox"])
    assert r.output.startswith("0 provider event(s) waiting for the write lock; 1 dead letter(s).")
    log = open_log(store_path)
    try:
        ledger.catch_up(log)  # the drain sets them aside
    finally:
        log.close()
    after = inbox_json(store_path)
    assert after["waiting"] == 0
    (drained,) = after["dead_letters"]
    assert drained["set_aside_at"] is not None
    assert {k: v for k, v in drained.items() if k != "set_aside_at"} == {k: v for k, v in letter.items() if k != "set_aside_at"}


def test_the_listing_of_an_inbox_left_behind_keeps_the_dead_letters_order_and_limit(store_path):
    with_messages(store_path)
    defer_sendgrid(store_path)
    spoil_inbox_rows(store_path, b"not json")
    log = open_log(store_path)
    ledger.catch_up(log)  # the spoilt row is set aside
    log.close()
    defer_sendgrid(store_path)
    remove_store_keeping_inbox(store_path)
    with_messages(store_path)
    log = open_log(store_path)
    try:
        assert ledger.inbox_count(log) == 0
        set_aside, left_behind = ledger.inbox_dead_letters(log)
        assert set_aside["seq"] < left_behind["seq"]
        assert "cannot be read" in set_aside["reason"] and set_aside["set_aside_at"] is not None
        assert left_behind["reason"].startswith("kept for another store") and left_behind["set_aside_at"] is None
        assert ledger.inbox_dead_letters(log, limit=1) == [set_aside]
    finally:
        log.close()


@needs_postgres
def test_postgresql_a_server_starts_while_an_import_holds_the_append_lock(postgres_url, monkeypatch):
    # serve's start-up drains the inbox and catches up; with --lock-timeout 3600 it used to
    # wait the whole hour for an import before it answered anything.
    from fastapi.testclient import TestClient

    from flowledger.api.app import create_app

    monkeypatch.setattr(ledger, "WEBHOOK_LOCK_TIMEOUT", 0.1)
    with_messages(postgres_url)
    log = open_log(postgres_url, lock_timeout=3600)
    inbox = open_inbox(log.backend)
    put(inbox)
    inbox.close()
    log.close()
    answers: list[int] = []

    def start_and_ask():
        with TestClient(create_app(postgres_url, lock_timeout=3600, follow=False)) as client:
            answers.append(client.get("/healthz").status_code)

    with postgres_append_lock(postgres_url):
        server = threading.Thread(target=start_and_ask, daemon=True)
        server.start()
        server.join(30)
        assert answers == [200], "the server was still waiting for the import's lock to start"
    server.join()
