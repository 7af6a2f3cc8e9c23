"""The webhook inbox's kept count (``webhook_inbox_count``), on both backends: made again with
the rows' sum whenever a piece it depends on (the inbox's table, the count's table or row,
its triggers) was removed by hand; never apart from the rows after a crash between
statements; and exact under concurrent writers on PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from flowledger import ledger
from flowledger.errors import StoreError
from flowledger.store import open_log
from flowledger.store.inbox import _COUNT_SHARDS, INBOX_SUFFIX, open_inbox
from tests.conftest import POSTGRES_UNREACHABLE, server_connection
from tests.test_inbox import with_messages
from tests.test_inbox_followups import _by_hand, put

needs_postgres = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def url(request, store_path):
    """A store's URL (not made yet), on each backend."""
    return store_path if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def _schema(url: str) -> str:
    """The schema of a PostgreSQL store's URL."""
    from flowledger.store.postgres import parse_url

    return parse_url(url)["schema"]


def _in_inbox(url, statement):
    """Run a statement on the inbox's database with a plain connection: {s} is the schema
    (nothing on SQLite), {t} the inbox's table, {c} the count's."""
    if url.startswith("postgresql"):
        s = f'"{_schema(url)}".'
        with server_connection(url) as conn:
            conn.execute(statement.format(s=s, t=f"{s}webhook_inbox", c=f"{s}webhook_inbox_count"))
            conn.commit()
        return
    conn = sqlite3.connect(url + INBOX_SUFFIX)
    try:
        conn.execute(statement.format(s="", t="webhook_inbox", c="webhook_inbox_count"))
        conn.commit()
    finally:
        conn.close()


def _summed(url) -> int:
    """The facts the inbox's rows hold, summed with a plain connection (0 without its table)."""
    if url.startswith("postgresql"):
        with server_connection(url) as conn:
            table = f'"{_schema(url)}".webhook_inbox'
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
                return 0
            return conn.execute(f"SELECT COALESCE(SUM(n), 0) FROM {table}").fetchone()[0]
    conn = sqlite3.connect(url + INBOX_SUFFIX)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'webhook_inbox'").fetchone() is None:
            return 0
        return conn.execute("SELECT COALESCE(SUM(n), 0) FROM webhook_inbox").fetchone()[0]
    finally:
        conn.close()


def _kept(url) -> int:
    """The count as kept in its table, read with a plain connection."""
    if url.startswith("postgresql"):
        with server_connection(url) as conn:
            return conn.execute(f'SELECT COALESCE(SUM(n), 0) FROM "{_schema(url)}".webhook_inbox_count').fetchone()[0]
    conn = sqlite3.connect(url + INBOX_SUFFIX)
    try:
        return conn.execute("SELECT COALESCE(SUM(n), 0) FROM webhook_inbox_count").fetchone()[0]
    finally:
        conn.close()


def _inbox_with_facts(url, webhooks=2):
    """A store whose inbox keeps ``webhooks`` webhooks' facts (4 each), closed again."""
    with_messages(url)
    log = open_log(url)
    inbox = open_inbox(log.backend)
    try:
        for _ in range(webhooks):
            put(inbox)
        assert inbox.count() == _summed(url) == 4 * webhooks
    finally:
        inbox.close()
        log.close()


def _follows_the_rows(url):
    """Open the store again (a restarted server) and check the count against the rows as
    webhooks are put, drained and removed by hand."""
    log = open_log(url)
    inbox = open_inbox(log.backend)
    try:
        assert inbox.count() == _summed(url)
        put(inbox)
        assert inbox.count() == _summed(url) == _kept(url)
        put(inbox, facts=1)
        assert inbox.count() == _summed(url) == _kept(url)
        _by_hand(url, "DELETE FROM {t} WHERE seq = (SELECT MIN(seq) FROM {t})")
        assert inbox.count() == _summed(url) == _kept(url)
        ledger.drain_inbox(log, inbox)
        assert inbox.count() == _summed(url) == _kept(url) == 0
    finally:
        inbox.close()
        log.close()


# 1. A piece of the count removed by hand is made again, counted from the rows.

# Each removes one piece the count depends on, as a hand might (not the whole schema).
REMOVALS = {
    "the inbox's table": "DROP TABLE {t}",
    "the count's table": "DROP TABLE {c} CASCADE",
    "the count's rows": "DELETE FROM {c}",
}
POSTGRES_REMOVALS = {
    "the trigger": "DROP TRIGGER webhook_inbox_counted ON {t}",
    "the trigger's function": "DROP FUNCTION {s}webhook_inbox_counted() CASCADE",
    "the trigger, disabled": "ALTER TABLE {t} DISABLE TRIGGER webhook_inbox_counted",
}
SQLITE_REMOVALS = {
    "the insert's trigger": "DROP TRIGGER webhook_inbox_count_put",
    "the delete's trigger": "DROP TRIGGER webhook_inbox_count_gone",
    "the update's trigger": "DROP TRIGGER webhook_inbox_count_changed",
}


@pytest.mark.parametrize("removed", sorted(REMOVALS))
def test_a_piece_of_the_count_removed_by_hand_is_made_again_from_the_rows(url, removed):
    _inbox_with_facts(url)
    if url.startswith("postgresql") or removed != "the count's table":
        _in_inbox(url, REMOVALS[removed])
    else:
        _in_inbox(url, "DROP TABLE {c}")  # SQLite has no CASCADE: its triggers are left, naming no table
    if removed == "the count's rows":
        # A write before flowledger's next: the trigger counts on, from nothing.
        _by_hand(url, "INSERT INTO {t} (received_at, n, items) SELECT received_at, n, items FROM {t}")
    _follows_the_rows(url)


@needs_postgres
@pytest.mark.parametrize("removed", sorted(POSTGRES_REMOVALS))
def test_postgresql_a_trigger_removed_by_hand_is_made_again_and_the_count_made_from_the_rows(postgres_url, removed):
    _inbox_with_facts(postgres_url)
    _in_inbox(postgres_url, POSTGRES_REMOVALS[removed])
    _by_hand(postgres_url, "INSERT INTO {t} (received_at, n, items) SELECT received_at, n, items FROM {t}")  # uncounted
    _follows_the_rows(postgres_url)


@pytest.mark.parametrize("removed", sorted(SQLITE_REMOVALS))
def test_sqlite_a_trigger_removed_by_hand_is_made_again_and_the_count_made_from_the_rows(store_path, removed):
    _inbox_with_facts(store_path)
    _in_inbox(store_path, SQLITE_REMOVALS[removed])
    _by_hand(store_path, "INSERT INTO {t} (received_at, n, items) SELECT received_at, n, items FROM {t}")
    _by_hand(store_path, "UPDATE {t} SET n = n + 1 WHERE seq = (SELECT MIN(seq) FROM {t})")
    _by_hand(store_path, "DELETE FROM {t} WHERE seq = (SELECT MAX(seq) FROM {t})")
    _follows_the_rows(store_path)


def test_a_piece_removed_while_a_server_runs_is_made_again_at_its_next_write(url):
    """A server's inbox remembers that its count was made; a piece removed meanwhile fails a
    statement or two (never counts wrong for good): the next write makes it again."""
    _inbox_with_facts(url)
    log = open_log(url)
    inbox = open_inbox(log.backend)
    try:
        put(inbox)
        _in_inbox(url, "DROP TABLE {t}")
        failed = 0
        for _ in range(3):
            try:
                put(inbox)
            except StoreError:
                failed += 1
        assert failed <= 1
        assert inbox.count() == _summed(url) == _kept(url)
        put(inbox, facts=1)
        assert inbox.count() == _summed(url) == _kept(url)
    finally:
        inbox.close()
        log.close()


# 2. A crash between statements leaves the count and the rows together.

_CRASH = textwrap.dedent(
    """
    import os, sys
    from flowledger.store import open_log
    from flowledger.store.inbox import open_inbox
    from tests.test_inbox_followups import put

    url, at, nth, what = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    log = open_log(url)
    inbox = open_inbox(log.backend)
    seen = []

    def crash_after(statement):
        seen.append(statement)
        # The process dies with its transaction open: nothing after this statement runs.
        if at in statement and len([s for s in seen if at in s]) == nth:
            os._exit(17)

    if log.backend.name == "postgresql":
        from flowledger.store import postgres

        real = postgres.PgCursor.execute

        def execute(self, statement, params=()):
            real(self, statement, params)
            crash_after(statement)

        postgres.PgCursor.execute = execute
        postgres.PgCursor.executemany = lambda self, statement, rows: [execute(self, statement, row) for row in rows]
    else:
        inbox.count()  # opens the inbox's connection
        # Told of each statement as it starts: a crash there leaves the one before it run.
        inbox._conn.set_trace_callback(lambda statement: crash_after("after " + statement))
    if what == "put":
        put(inbox)
    else:
        inbox.delete([d.seq for d in inbox.oldest(10)])
    sys.exit("no crash")
    """
)


def _crash(url, what):
    """Run a put or a delete of every row in a process that dies right after the statement
    that moves the (first) rows, before its transaction ends."""
    if url.startswith("postgresql"):
        at, nth = ("INSERT INTO webhook_inbox " if what == "put" else "DELETE FROM webhook_inbox "), 1
    else:
        # SQLite tells of a statement as it starts: the crash is at the next one's start.
        at, nth = ("after COMMIT", 1) if what == "put" else ("after DELETE FROM webhook_inbox ", 2)
    command = [sys.executable, "-c", _CRASH, url, at, str(nth), what]
    done = subprocess.run(command, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 17, done.stderr


@pytest.mark.parametrize("what", ["put", "delete"])
def test_a_crash_between_the_statements_of_a_write_leaves_count_and_rows_together(url, what):
    """The trigger moves the count in the statement that puts or removes the rows, in their
    transaction: dead before its commit, the process leaves neither."""
    _inbox_with_facts(url, webhooks=3)
    _crash(url, what)
    assert _summed(url) == _kept(url) == 12
    _follows_the_rows(url)


def test_a_crash_while_the_count_is_made_again_leaves_it_to_the_next_write(url):
    """Mending the count is in the transaction of the write that finds it wanting: a crash
    before that commits leaves it wanting, counted by the rows, and made by the next write."""
    _inbox_with_facts(url)
    _in_inbox(url, REMOVALS["the count's rows"])
    _by_hand(url, "INSERT INTO {t} (received_at, n, items) SELECT received_at, n, items FROM {t}")
    _crash(url, "put")
    _follows_the_rows(url)


# 3. Concurrent writers on PostgreSQL lose no update of the count.


def _same_shard_connections(url):
    """Two plain connections whose sessions move the same row of the count (at most 17
    opened: two of 16 shards must share one); the others are closed."""
    by_shard: dict[int, object] = {}
    while True:
        conn = server_connection(url, autocommit=True)
        shard = conn.execute("SELECT pg_backend_pid() %% %s", (_COUNT_SHARDS,)).fetchone()[0]
        if shard in by_shard:
            pair = [by_shard.pop(shard), conn]
            break
        by_shard[shard] = conn
    for other in by_shard.values():
        other.close()
    return pair


def _hammer(conn, table, rounds, start):
    """Put and delete rows of the inbox by hand, each in a transaction of its own."""
    start.wait()
    for i in range(rounds):
        conn.execute(f"INSERT INTO {table} (received_at, n, items) VALUES ('2026-11-01T09:00:00Z', %s, '[]')", (i % 5 + 1,))
        if i % 3 == 2:
            conn.execute(f"DELETE FROM {table} WHERE seq = (SELECT MIN(seq) FROM {table} WHERE n = %s)", (i % 5 + 1,))


@needs_postgres
def test_postgresql_concurrent_puts_and_deletes_on_one_row_of_the_count_lose_no_update(postgres_url):
    _inbox_with_facts(postgres_url)
    table = f'"{_schema(postgres_url)}".webhook_inbox'
    pair = _same_shard_connections(postgres_url)
    start = threading.Barrier(len(pair))
    workers = [threading.Thread(target=_hammer, args=(conn, table, 300, start)) for conn in pair]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        for conn in pair:
            conn.close()
    _follows_the_rows(postgres_url)


@needs_postgres
def test_postgresql_the_count_made_again_while_others_write_misses_none_and_counts_none_twice(postgres_url):
    """The count is made again from the rows while other sessions put and delete: it waits
    for their transactions and holds off new ones until made."""
    _inbox_with_facts(postgres_url)
    _in_inbox(postgres_url, POSTGRES_REMOVALS["the trigger"])
    table = f'"{_schema(postgres_url)}".webhook_inbox'
    others = [server_connection(postgres_url, autocommit=True) for _ in range(2)]
    start = threading.Barrier(len(others) + 1)
    workers = [threading.Thread(target=_hammer, args=(conn, table, 200, start)) for conn in others]
    log = open_log(postgres_url)
    inbox = open_inbox(log.backend)
    try:
        for worker in workers:
            worker.start()
        start.wait()
        for _ in range(5):
            put(inbox, facts=1)
        for worker in workers:
            worker.join()
        assert inbox.count() == _summed(postgres_url) == _kept(postgres_url)
    finally:
        for conn in others:
            conn.close()
        inbox.close()
        log.close()
