"""The SQLite store: durability settings, URLs, and driver errors translated at the seam."""

from __future__ import annotations

import io
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import orjson
import pytest

from flowledger import ledger
from flowledger.errors import StoreBusy, StoreError, StoreURLError
from flowledger.ingest import IngestOptions
from flowledger.store import open_log, sqlite, sqlite_path
from flowledger.store.sqlite import SQLiteBackend
from tests.conftest import triggered


def test_the_log_file_is_in_wal_mode_with_synchronous_full(log, store_path):
    with log.backend.transaction(write=False) as c:
        c.execute("PRAGMA synchronous")
        assert c.fetchone()[0] == 2  # FULL
    with sqlite3.connect(store_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"stored_events", "event_ids", "stream_heads", "run_cancellation_keys"} <= tables


def test_one_large_append_leaves_no_large_write_ahead_log_behind(monkeypatch, store_path):
    # Small enough for a test to go past: checkpoints every 16 pages, the log cut to 64 KiB.
    monkeypatch.setattr(sqlite, "CHECKPOINT_PAGES", 16)
    monkeypatch.setattr(sqlite, "WAL_LIMIT_BYTES", 65_536)
    log = open_log(store_path)  # open throughout, as `serve` keeps its store
    try:
        big = b"\n".join(orjson.dumps(triggered(f"run-{i}", data={"note": "x" * 200})) for i in range(3_000))
        result, _ = ledger.append_input(log, io.BytesIO(big), IngestOptions())
        assert result.appended == 3_000
        # The one transaction went through the write-ahead log whole.
        assert os.path.getsize(store_path + "-wal") > 16 * 65_536
        result, _ = ledger.append_input(log, io.BytesIO(orjson.dumps(triggered("one-more"))), IngestOptions())
        assert result.appended == 1
        # The next write starts the log again from its beginning, and cuts the file back.
        assert os.path.getsize(store_path + "-wal") <= 65_536
    finally:
        log.close()
    with sqlite3.connect(store_path) as raw:
        assert raw.execute("SELECT count(*) FROM stored_events").fetchone()[0] == 3_001


def test_dropping_a_table_writes_its_freed_pages_nowhere(log, store_path):
    # A rebuild ends by dropping a view's old tables. Debian's SQLite zeroes and writes
    # every page a DROP frees; the store's connections write only what the drop changes.
    with log.backend.transaction(write=True) as c:
        c.execute("CREATE TABLE old_view (x BLOB)")
        c.executemany("INSERT INTO old_view VALUES (?)", [(bytes([i % 256]) * 3_000,) for i in range(2_000)])
    with sqlite3.connect(store_path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with log.backend.transaction(write=True) as c:
        c.execute("DROP TABLE old_view")
        c.execute("PRAGMA freelist_count")
        freed = c.fetchone()[0]
        c.execute("PRAGMA page_size")
        page = c.fetchone()[0]
    assert freed >= 2_000
    written = os.path.getsize(store_path + "-wal") // page
    assert written < freed // 20, (written, freed)


# Twelve read transactions open at once (twelve pooled connections, as a busy `serve` has),
# each reading a table larger than its cache; prints how far the process's peak grew, MiB.
_MANY_READERS = """
import sys, sqlite3, threading
from flowledger.store import open_log, sqlite
sqlite.CACHE_KIB = 8_192
sqlite.HEAP_LIMIT_BYTES = int(sys.argv[2])
path = sys.argv[1]
open_log(path).close()  # a store first: flowledger makes none in another program's file
raw = sqlite3.connect(path)
raw.execute("CREATE TABLE big (x BLOB)")
raw.executemany("INSERT INTO big VALUES (?)", [(bytes([i % 256]) * 4000,) for i in range(4_000)])
raw.commit()
raw.close()
log = open_log(path)
peak = lambda: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
before = peak()
together = threading.Barrier(12)
def read():
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT sum(length(x)) FROM big")
        assert c.fetchone()[0] == 16_000_000
        together.wait()
threads = [threading.Thread(target=read) for _ in range(12)]
for t in threads: t.start()
for t in threads: t.join()
print((peak() - before) // 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak from /proc")
def test_the_connections_of_one_process_share_a_bound_on_their_caches(tmp_path):
    def growth(limit: int) -> int:
        path = str(tmp_path / f"readers-{limit}.db")
        done = subprocess.run([sys.executable, "-c", _MANY_READERS, path, str(limit)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    # Without a bound each connection keeps its own 8 MiB cache full: 96 MiB for twelve.
    assert growth(0) >= 56
    # The store's bound, scaled as the caches are (four caches' worth), holds them to it.
    assert growth(sqlite.HEAP_LIMIT_BYTES * 8_192 // sqlite.CACHE_KIB) <= 36


@pytest.mark.parametrize(
    "url, path",
    [
        ("runs.db", "runs.db"),
        ("sqlite:///runs.db", "runs.db"),
        ("sqlite:////tmp/x/runs.db", "/tmp/x/runs.db"),
        ("sqlite:///dir%20with%20space/r.db", "dir with space/r.db"),
    ],
)
def test_store_urls(url, path):
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://remotehost/x.db", "sqlite:///", "postgresql://u@h/", "postgresql://u@h/db?schema=Bad-Name"])
def test_unsupported_store_urls_are_clear_errors(url):
    with pytest.raises(StoreURLError):
        open_log(url)


def test_an_unreachable_postgresql_server_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot reach the store postgresql://u@127.0.0.1:1/db"):
        open_log("postgresql://u@127.0.0.1:1/db")


def test_a_reader_does_not_create_a_store(tmp_path):
    with pytest.raises(StoreError, match="no store at"):
        open_log(str(tmp_path / "missing.db"), create=False)
    assert not (tmp_path / "missing.db").exists()


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a flowledger store"):
        open_log(str(path))


def test_a_missing_folder(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_log(str(tmp_path / "nope" / "x.db"))


@pytest.mark.parametrize(
    "url, why",
    [
        ("postgresql://postgres@127.0.0.1:abc/test", "port"),
        ("postgresql://postgres@127.0.0.1:99999/test", "port"),
        ("postgresql://postgres@[::1/test", "unclosed ["),
        ("postgresql://postgres:s3cretpw@127.0.0.1:5432/test?schema=Bad", "schema 'Bad'"),
        ("postgresql://postgres:s3cretpw@127.0.0.1:5432", "names no database"),
        ("postgresql://postgres:s3cretpw@127.0.0.1:port/test", "port"),
        ("mysql://me:s3cretpw@db/x", "expected a file path"),
        ("sqlite://me:s3cretpw@db/x.db", "local file"),
        ("sqlite://[::1/x.db", "local file"),
    ],
)
def test_a_malformed_store_url_is_a_clear_error_that_never_shows_its_password(url, why):
    from click.testing import CliRunner

    from flowledger.cli import cli

    with pytest.raises(StoreURLError, match=re.escape(why)) as info:
        open_log(url, create=False)
    assert "s3cretpw" not in str(info.value)
    result = CliRunner().invoke(cli, ["--store", url, "counts"])
    assert result.exit_code == 2 and why in result.output  # a bad --store value: a bad parameter
    assert "s3cretpw" not in result.output and "bug" not in result.output
    if "s3cretpw" in url:
        assert ":***@" in result.output


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p%40ss@w@h:5432/db?schema=x", "postgresql://u:***@h:5432/db?schema=x"),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgresql://h:5432/db", "postgresql://h:5432/db"),
        ("runs.db", "runs.db"),
    ],
)
def test_a_url_is_shown_without_its_password(url, shown):
    from flowledger.store.backend import shown_url

    assert shown_url(url) == shown


@pytest.mark.parametrize("create", [False, True])
def test_a_sqlite_file_that_is_not_a_store_is_refused_and_left_untouched(tmp_path, create):
    # Read-only commands and appends alike: flowledger's tables are never written in
    # among another program's.
    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE foo (x)")
        raw.execute("INSERT INTO foo VALUES (1)")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="is not a flowledger store"):
        open_log(str(path), create=create)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.db"]
    with sqlite3.connect(path) as raw:
        assert [r[0] for r in raw.execute("SELECT name FROM sqlite_master")] == ["foo"]


def test_a_reader_refuses_an_empty_file_and_an_append_makes_a_store_of_it(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(StoreError, match=r"no store at .* \(an empty file\)"):
        open_log(str(path), create=False)
    assert path.stat().st_size == 0
    log = open_log(str(path))
    try:
        ledger.append_input(log, io.BytesIO(orjson.dumps(triggered("r1"))), IngestOptions())
    finally:
        log.close()
    reader = open_log(str(path), create=False)
    try:
        assert reader.count() == 1
    finally:
        reader.close()


def test_a_reader_opens_a_store_of_an_earlier_schema_version(store_path):
    log = open_log(store_path)
    ledger.append_input(log, io.BytesIO(orjson.dumps(triggered("r1"))), IngestOptions())
    log.close()
    # Version 1 may have no schema_version row at all (see SQLBackend._schema_version).
    with sqlite3.connect(store_path) as raw:
        raw.execute("DELETE FROM flowledger_meta WHERE key = 'schema_version'")
    reader = open_log(store_path, create=False)
    try:
        assert reader.count() == 1
    finally:
        reader.close()


def test_rebuild_into_the_store_itself_is_an_ordinary_rebuild(store_path):
    from click.testing import CliRunner

    from flowledger.cli import cli

    log = open_log(store_path)
    ledger.append_input(log, io.BytesIO(orjson.dumps(triggered("r1"))), IngestOptions())
    log.close()
    same = os.path.join(os.path.dirname(store_path), ".", os.path.basename(store_path))
    result = CliRunner().invoke(cli, ["--store", store_path, "rebuild", "--into", same])
    assert result.exit_code == 0, result.output
    shown = CliRunner().invoke(cli, ["--store", store_path, "runs", "list", "--json", "--no-catch-up"])
    assert [r["id"] for r in orjson.loads(shown.stdout)["entries"]] == ["r1"]


def test_a_held_write_lock_becomes_store_busy_after_the_timeout(store_path):
    SQLiteBackend(store_path).close()
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        log = open_log(store_path, lock_timeout=0.2, create=False)
        with pytest.raises(StoreBusy, match="busy"):
            with log.backend.transaction(write=True):
                pass
        # One that attaches another file for its length: it is detached again.
        with pytest.raises(StoreBusy, match="busy"):
            with log.backend.transaction(write=True, attach=("other", store_path + ".other")):
                pass
        # The connections went back to the pool as they came.
        assert log.backend.datastore.pool.num_in_use == 0
        with log.backend.transaction(write=False) as c:
            c.execute("PRAGMA database_list")
            assert [row[1] for row in c.fetchall()] == ["main"]
        log.close()
    finally:
        holder.rollback()
        holder.close()


@contextmanager
def new_file_held_for(path, seconds):
    """Another process half-way through making the store ``path``: its write lock held on the
    new file, not yet switched to WAL, for ``seconds``."""
    maker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    maker.execute("BEGIN IMMEDIATE")
    released = threading.Timer(seconds, maker.rollback)
    released.start()
    try:
        yield
    finally:
        released.cancel()
        released.join()
        maker.close()


def test_a_new_store_another_process_is_making_is_waited_for_not_refused(store_path):
    """SQLite refuses a switch to WAL at once, without waiting, while another connection holds
    a new file's write lock (two processes making one store at once): the store waits for it."""
    with new_file_held_for(store_path, 0.3):
        started = time.monotonic()
        log = open_log(store_path, lock_timeout=5)
        assert time.monotonic() - started >= 0.25  # it waited for the other's lock
    try:
        result, _ = ledger.append_input(log, io.BytesIO(orjson.dumps(triggered("r-new"))), IngestOptions())
        assert result.appended == 1
    finally:
        log.close()
    conn = sqlite3.connect(store_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_a_new_store_held_past_the_lock_timeout_is_store_busy(store_path):
    with new_file_held_for(store_path, 30):
        started = time.monotonic()
        with pytest.raises(StoreBusy, match="busy"):
            open_log(store_path, lock_timeout=0.3)
        assert 0.25 <= time.monotonic() - started < 20  # its own timeout, not the holder's


def _open_new_store(path, go, answers):
    """A process opening the store ``path`` once ``go`` lets it: its store id, or its error."""
    go.wait()
    try:
        log = open_log(path)
    except Exception as e:  # noqa: BLE001  # what it was is the test's to see
        answers.put(repr(e))
        return
    answers.put(log.backend.store_identity())
    log.close()


def test_processes_opening_a_new_store_together_make_it_once(tmp_path):
    """As on PostgreSQL (tests/test_postgres_driver_mutations.py): four processes opening one
    new SQLite file at once each open it, none refused racing another to switch it to WAL,
    and share one store id; twenty new files in turn (one in twelve opens was refused)."""
    import multiprocessing

    forked = multiprocessing.get_context("fork")  # cheap: flowledger is imported already
    for n in range(20):
        path = str(tmp_path / f"new-{n}.db")
        go, answers = forked.Barrier(4), forked.Queue()
        openers = [forked.Process(target=_open_new_store, args=(path, go, answers)) for _ in range(4)]
        for p in openers:
            p.start()
        opened = [answers.get(timeout=60) for _ in openers]
        for p in openers:
            p.join(60)
        assert len(set(opened)) == 1 and not opened[0].startswith("Store"), (n, opened)


def test_none_and_bytes_are_stored_as_they_are(log):
    # The store's adapters for None and bytes (a shortcut past sqlite3's adaptation) must
    # give back what they are given: NULL stays NULL, a blob stays that blob.
    with log.backend.transaction(write=True) as c:
        c.execute("CREATE TABLE kinds (a, b, c)")
        c.executemany("INSERT INTO kinds VALUES (?, ?, ?)", [(None, b"\x00\xffblob", "text"), (1, b"", None)])
        c.execute("SELECT typeof(a), a, typeof(b), b, typeof(c), c FROM kinds ORDER BY rowid")
        assert c.fetchall() == [
            ("null", None, "blob", b"\x00\xffblob", "text", "text"),
            ("integer", 1, "blob", b"", "null", None),
        ]


def test_an_empty_sqlite_database_becomes_a_store(tmp_path):
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 0")
    log = open_log(str(path))
    try:
        ledger.append_input(log, io.BytesIO(orjson.dumps(triggered("r1"))), IngestOptions())
        assert log.count() == 1
    finally:
        log.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files by /proc (Linux)")
def test_a_store_that_fails_to_open_keeps_no_file_open(store_path, monkeypatch):
    # Its connections were made by the first look at the tables and never closed: each
    # failed try held the store's files open for as long as its error was kept.
    open_log(store_path).close()

    def files_open() -> int:
        mine = os.path.realpath(store_path)
        return sum(os.path.realpath(f"/proc/self/fd/{fd}").startswith(mine) for fd in os.listdir("/proc/self/fd"))

    def fail(*args, **kwargs):
        raise StoreError("made to fail")

    monkeypatch.setattr(SQLiteBackend, "upgrade", fail)
    errors = []
    for _ in range(3):
        with pytest.raises(StoreError, match="made to fail") as failed:
            open_log(store_path)
        errors.append(failed)
    assert files_open() == 0
