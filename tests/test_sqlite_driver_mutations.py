"""What a mutation review of the SQLite driver seam (store/sqlite.py, store/staging.py,
store/backend.py) found no test holding: every pooled connection back at synchronous=FULL
and the store's busy timeout after a view's or a short wait's transaction, writes that
read first waiting for the lock, a failed transaction leaving nothing, driver errors
always translated, and the staging and building files of rebuilds."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import sqlite3
import stat
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest
from eventsourcing.persistence import ConnectionUnavailableError
from eventsourcing.persistence import OperationalError as PersistenceOperationalError

from flowledger import ledger, queries
from flowledger.errors import StoreBusy, StoreError, ViewsNotFolded
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from flowledger.store.staging import StagingBackend, give_name, staging_path
from flowledger.store.sqlite import SQLiteBackend, translate_errors
from tests.conftest import ev, triggered
from tests.test_environment import _events, _store, _unprivileged, failed_cleanly
from tests.test_environment import flowledger as cli_command


def _pragma(c: sqlite3.Cursor, name: str) -> int:
    c.execute(f"PRAGMA {name}")
    return c.fetchone()[0]


# Durability: the log's writes wait for the disk, whatever a view's transaction did.


def test_the_log_writes_with_synchronous_full_after_views_were_caught_up(log):
    """A view's commit may skip fsync; the pooled writer goes back to FULL for the log."""
    ledger.append_batch(log, [triggered("r1")])
    assert ledger.catch_up(log) == 1
    with log.backend.transaction(write=True) as c:
        assert _pragma(c, "synchronous") == 2  # FULL
    with log.backend.transaction(write=False) as c:
        assert _pragma(c, "synchronous") == 2


def test_a_views_transaction_does_not_wait_for_the_disk_but_the_logs_does(log):
    """durable=False is NORMAL for that transaction only; durable=True is FULL."""
    with log.backend.transaction(write=True, durable=False) as c:
        assert _pragma(c, "synchronous") == 1  # NORMAL
    with log.backend.transaction(write=True, durable=True) as c:
        assert _pragma(c, "synchronous") == 2


def test_the_busy_timeout_is_the_stores_lock_timeout_in_milliseconds(store_path):
    """--lock-timeout 2.5 makes SQLite wait 2,500 ms for another process's lock."""
    log = open_log(store_path, lock_timeout=2.5)
    try:
        with log.backend.transaction(write=True) as c:
            assert _pragma(c, "busy_timeout") == 2500
    finally:
        log.close()


def test_a_short_wait_for_one_transaction_leaves_the_stores_own_wait_after_it(log):
    """A transaction with its own lock_timeout gives the connection back with the store's."""
    with log.backend.transaction(write=True, lock_timeout=0.25) as c:
        assert _pragma(c, "busy_timeout") == 250
    with log.backend.transaction(write=True) as c:
        assert _pragma(c, "busy_timeout") == 60_000


def test_threads_of_one_process_wait_for_the_writer_as_long_as_the_lock_timeout(store_path):
    """A server's requests queue for its one writer connection for --lock-timeout (here 30 s),
    not the pool's own 5 s; never less than 5 s either."""
    for lock_timeout, waits in ((30.0, 30.0), (0.5, 5.0)):
        log = open_log(store_path, lock_timeout=lock_timeout)
        try:
            assert log.backend.datastore.pool.pool_timeout == waits
        finally:
            log.close()


def test_opening_a_store_without_an_id_never_waits_for_a_busy_write_lock(store_path):
    """A store made before ids gets its id only if the lock is free at once: a server starting
    during another process's import opens at once, without an id yet."""
    SQLiteBackend(store_path).close()
    with contextlib.closing(sqlite3.connect(store_path)) as raw:
        raw.execute("DELETE FROM flowledger_meta WHERE key = 'store_id'")
        raw.commit()
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        log = open_log(store_path, lock_timeout=10)
        took = time.monotonic() - started
        try:
            assert took < 5, took  # not the lock's 10 s
            assert log.backend.store_identity() is None
        finally:
            log.close()
    finally:
        holder.rollback()
        holder.close()
    log = open_log(store_path)
    try:
        assert log.backend.store_identity() is not None
    finally:
        log.close()


def test_a_store_opens_and_reads_while_another_process_holds_its_write_lock(store_path):
    """Opening a store of the current layout takes no write lock: a query during another
    process's long append neither waits nor fails."""
    log = _store_with_runs(store_path)
    log.close()
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for create in (False, True):
            log = open_log(store_path, lock_timeout=0.2, create=create)
            try:
                assert _run_ids(log) == ["r0", "r1", "r2"]
                # A query of views already caught up needs no write either.
                assert ledger.query(log, queries.counts)["total"] == 3
            finally:
                log.close()
    finally:
        holder.rollback()
        holder.close()


def test_a_store_of_the_first_layout_without_a_version_row_is_upgraded_on_open(store_path):
    """A store that records no layout version is of version 1: its event_ids is made the
    ids alone on open, and appends go on."""
    log = _store_with_runs(store_path, n=1)
    with log.backend.transaction(write=True) as c:
        c.execute("SELECT id FROM event_ids")
        ids = [r[0] for r in c.fetchall()]
        c.execute("DROP TABLE event_ids")
        c.execute(
            "CREATE TABLE event_ids (id TEXT PRIMARY KEY, digest BLOB NOT NULL, "
            "originator_id TEXT NOT NULL, originator_version INTEGER NOT NULL)"
        )
        c.executemany("INSERT INTO event_ids VALUES (?, ?, 'run:r0', 1)", [(i, b"\0" * 16) for i in ids])
        c.execute("DELETE FROM flowledger_meta WHERE key = 'schema_version'")
    log.close()
    log = open_log(store_path)
    try:
        assert ledger.append_batch(log, [triggered("r9")]).appended == 1
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT value FROM flowledger_meta WHERE key = 'schema_version'")
            assert c.fetchone()[0] == "2"
            c.execute("SELECT * FROM event_ids")
            assert all(len(row) == 1 for row in c.fetchall())
    finally:
        log.close()


def test_a_reader_opening_a_store_without_an_id_writes_none(store_path):
    """A command that only reads (create=False) gives no id: it writes nothing to the store."""
    SQLiteBackend(store_path).close()
    with contextlib.closing(sqlite3.connect(store_path)) as raw:
        raw.execute("DELETE FROM flowledger_meta WHERE key = 'store_id'")
        raw.commit()
    log = open_log(store_path, create=False)
    try:
        assert log.backend.store_identity() is None
    finally:
        log.close()
    with contextlib.closing(sqlite3.connect(store_path)) as raw:
        assert raw.execute("SELECT COUNT(*) FROM flowledger_meta WHERE key = 'store_id'").fetchone()[0] == 0


# Transactions: all or nothing, and a writer that reads first waits for the lock.


def test_a_write_transaction_that_fails_stores_nothing_of_what_it_wrote(log):
    """An exception inside a write transaction rolls back every row written in it."""
    with pytest.raises(RuntimeError):
        with log.backend.transaction(write=True) as c:
            c.execute("INSERT INTO flowledger_meta VALUES ('probe', 'x')")
            raise RuntimeError("cut short")
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT COUNT(*) FROM flowledger_meta WHERE key = 'probe'")
        assert c.fetchone()[0] == 0


def test_a_driver_error_inside_a_transaction_becomes_a_store_error_naming_the_store(log, store_path):
    """No sqlite3 error reaches a caller: it is a StoreError that names the store."""
    with pytest.raises(StoreError, match="the store .* failed") as caught:
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT * FROM no_such_table")
    assert not isinstance(caught.value, sqlite3.Error)
    assert store_path in str(caught.value)


def test_a_writer_that_reads_first_waits_for_another_processs_lock_and_then_writes(log, store_path):
    """BEGIN IMMEDIATE: a writer whose snapshot another commit made stale waits, never fails."""
    ledger.append_batch(log, [triggered("r1")])
    holder = sqlite3.connect(store_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO flowledger_meta VALUES ('other', 'x')")

    def release() -> None:
        time.sleep(0.3)
        holder.execute("COMMIT")

    t = threading.Thread(target=release)
    t.start()
    try:
        with log.backend.transaction(write=True) as c:
            c.execute("SELECT COUNT(*) FROM flowledger_meta")
            c.execute("INSERT INTO flowledger_meta VALUES ('mine', 'y')")
    finally:
        t.join()
        holder.close()
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT key FROM flowledger_meta WHERE key IN ('other', 'mine') ORDER BY key")
        assert [r[0] for r in c.fetchall()] == ["mine", "other"]


def test_a_busy_store_says_how_long_it_waited(store_path):
    """The busy message names the lock timeout the caller set, so raising it is the advice."""
    SQLiteBackend(store_path).close()
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        log = open_log(store_path, lock_timeout=0.15, create=False)
        try:
            with pytest.raises(StoreBusy, match=r"more than 0\.15 s; try again, or raise --lock-timeout"):
                with log.backend.transaction(write=True):
                    pass
        finally:
            log.close()
    finally:
        holder.rollback()
        holder.close()


def test_a_batch_naming_more_runs_than_one_statement_binds_reads_every_runs_state(log):
    """Runs are looked up 500 to a statement: the 500th of 1,001 runs is found like the others."""
    runs = [f"r{i:04d}" for i in range(1001)]
    assert ledger.append_batch(log, [triggered(r) for r in runs]).appended == 1001
    started = [ev("run.started", run_id=r) for r in runs]
    assert ledger.append_batch(log, started).appended == 1001
    # Sent again, every one of them is known as stored, none appended twice.
    assert ledger.append_batch(log, started).appended == 0
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT COUNT(*) FROM stream_heads")
        assert c.fetchone()[0] == 1001


@pytest.mark.parametrize("page_size", [1, 2, 1000])
@pytest.mark.parametrize("names", [["runs"], ["deliveries"], None], ids=["runs", "deliveries", "all"])
def test_a_view_caught_up_page_by_page_misses_no_event_at_a_pages_end(log, page_size, names):
    """Each page's last event is folded, whether the page is read for some types or all."""
    runs = [f"r{i}" for i in range(5)]
    ledger.append_batch(log, [triggered(r) for r in runs])
    ledger.append_batch(log, [ev("run.started", run_id=r) for r in runs])
    projector = Projector(log.backend)
    views = [projector.view(n) for n in names] if names else None
    assert projector.catch_up(views, page_size=page_size) == 10
    assert projector.catch_up(views, page_size=page_size) == 0
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT application_name, notification_id FROM tracking ORDER BY 1")
        positions = dict(c.fetchall())
    assert all(positions[v.name] == 10 for v in (views or projector.views))
    if names != ["deliveries"]:
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT id, status FROM runs ORDER BY id")
            assert c.fetchall() == [(r, "running") for r in runs]


def _deliveries(log) -> list[tuple]:
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT * FROM deliveries ORDER BY message_id")
        return c.fetchall()


def test_a_message_caught_up_fact_by_fact_in_new_processes_equals_its_rebuild(store_path):
    """A delivery recalled from the log reads its facts up to and including the view's
    position: each fact folded by an earlier process counts once, none is lost."""
    facts = [
        ev("message.queued", message_id="m1", channel="sms", recipient="+15550001", provider="twilio"),
        ev("message.sent", message_id="m1", provider_message_id="SM1"),
        ev("message.delivered", message_id="m1"),
    ]
    for fact in facts:
        log = open_log(store_path)  # a new process's projector each time: nothing in memory
        try:
            ledger.append_batch(log, [fact])
            ledger.catch_up(log)
        finally:
            log.close()
    log = open_log(store_path)
    try:
        incremental = _deliveries(log)
        ledger.rebuild(log)
        assert incremental == _deliveries(log)
        assert len(incremental) == 1
    finally:
        log.close()


def test_views_made_but_never_folded_stand_at_position_zero_and_are_refused_unfolded(log):
    """A view with no position recorded is at 0: behind by the whole log, and a query that
    may not catch up refuses it rather than answer zeros."""
    ledger.append_batch(log, [triggered("r1"), triggered("r2")])
    Projector(log.backend).ensure_tables()
    lag = ledger.views_lag(log)
    assert [(v.position, v.behind) for v in lag.views] == [(0, 2)] * len(lag.views)
    with pytest.raises(ViewsNotFolded):
        ledger.query(log, queries.counts, fresh=False)


# Error translation: each of SQLite's result codes its own message, none a driver error.


def _driver_error(code: int, name: str, text: str) -> sqlite3.OperationalError:
    """A sqlite3 error as the driver raises it: its text, SQLite's extended result code and name."""
    e = sqlite3.OperationalError(text)
    e.sqlite_errorcode = code
    e.sqlite_errorname = name
    return e


SQLITE_ERRORS = [
    # (extended code, its name, the driver's text, the error type, a phrase of the message)
    (5, "SQLITE_BUSY", "database is locked", StoreBusy, "is busy"),
    (6, "SQLITE_LOCKED", "database table is locked", StoreBusy, "is busy"),
    (517, "SQLITE_BUSY_SNAPSHOT", "database is locked", StoreBusy, "is busy"),
    (11, "SQLITE_CORRUPT", "database disk image is malformed", StoreError, "is damaged"),
    (26, "SQLITE_NOTADB", "file is not a database", StoreError, "is not a flowledger store"),
    (13, "SQLITE_FULL", "database or disk is full", StoreError, "is full; nothing was stored"),
    (778, "SQLITE_IOERR_WRITE", "disk I/O error", StoreError, "could not be written or read (disk I/O error, SQLITE_IOERR_WRITE)"),
    (8, "SQLITE_READONLY", "attempt to write a readonly database", StoreError, "is read-only here"),
    (1032, "SQLITE_READONLY_DBMOVED", "attempt to write a readonly database", StoreError, "is read-only here"),
    (1544, "SQLITE_READONLY_DIRECTORY", "attempt to write a readonly database", StoreError, "is not writable here to make them"),
    (14, "SQLITE_CANTOPEN", "unable to open database file", StoreError, "cannot open the store"),
]


@pytest.mark.parametrize("code, name, text, kind, phrase", SQLITE_ERRORS, ids=[e[1] for e in SQLITE_ERRORS])
@pytest.mark.parametrize("wrapped", [False, True], ids=["driver", "eventsourcing"])
def test_each_sqlite_result_code_becomes_its_own_message(log, code, name, text, kind, phrase, wrapped):
    """The result code (its primary part), not the text, picks the message, also through
    eventsourcing's wrapping of the driver's error."""
    error: BaseException = _driver_error(code, name, text)
    if wrapped:
        try:
            raise PersistenceOperationalError(error) from error
        except PersistenceOperationalError as outer:
            error = outer
    with pytest.raises(kind) as caught:
        with translate_errors(log.backend):
            raise error
    message = str(caught.value)
    assert phrase in message, message
    assert log.backend.path in message


@pytest.mark.parametrize(
    "text", ["Timed out waiting for return of writer", "Timed out waiting for connection pool semaphore"]
)
def test_a_connection_pool_timeout_is_a_busy_store(log, text):
    """eventsourcing's pool timing out (no SQLite code) is the store being busy, not a failure."""
    with pytest.raises(StoreBusy, match="is busy"):
        with translate_errors(log.backend):
            raise ConnectionUnavailableError(text)


def test_a_store_path_under_a_file_cannot_be_opened_and_says_so(tmp_path):
    """SQLite's "unable to open" (the folder is a file) ends as the store's own message."""
    (tmp_path / "plain").write_text("x")
    with pytest.raises(StoreError, match=r"^cannot open the store .*plain/x\.db: unable to open database file$"):
        open_log(str(tmp_path / "plain" / "x.db"))


@pytest.fixture
def unprivileged() -> list[str]:
    """A command prefix under which file permissions apply, or the test skips (as in
    test_environment)."""
    prefix, why = _unprivileged()
    if prefix is None:
        pytest.skip(why)
    return prefix


def test_a_store_file_that_cannot_be_read_here_says_so(tmp_path, unprivileged):
    """A store whose file this user may not read: "not readable here", never a driver text alone."""
    path = _store(tmp_path / "runs.db", n=2)
    os.chmod(path, 0o200)
    failed_cleanly(
        cli_command("--store", path, "counts", "--no-catch-up", prefix=unprivileged),
        f"cannot open the store {path}: the file is not readable here",
    )


def test_a_read_only_store_file_is_named_as_the_file_that_cannot_be_written(tmp_path, unprivileged):
    """An append to a store whose file is read-only says the file itself cannot be written."""
    path = _store(tmp_path / "runs.db", n=2)
    os.chmod(path, 0o444)
    failed_cleanly(
        cli_command("--store", path, "append", "-", stdin=_events(1, "more"), prefix=unprivileged),
        f"the store {path} is read-only here (its file cannot be written)",
    )


# Staging files of rebuilds, and the building file of `rebuild --into`.


def _reaped() -> int:
    """The id of a process that has ended (and been waited for)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _store_with_runs(path: str, n: int = 3):
    """A store at ``path`` with n runs appended and its views caught up; returns its log."""
    log = open_log(path)
    ledger.append_batch(log, [triggered(f"r{i}") for i in range(n)])
    ledger.catch_up(log)
    return log


def _run_ids(log) -> list[str]:
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT id FROM runs ORDER BY id")
        return [r[0] for r in c.fetchall()]


def test_a_rebuild_removes_this_processs_own_leftover_staging_file_first(store_path):
    """A staging file of this very process, left by a rebuild an error cut short, is made anew."""
    log = _store_with_runs(store_path)
    try:
        names = "-".join(ledger.view_names())
        with open(f"{store_path}.rebuild-{os.getpid()}-{names}", "wb") as f:
            f.write(b"left by a rebuild cut short" * 200)
        assert ledger.rebuild(log) == 3
        assert _run_ids(log) == ["r0", "r1", "r2"]
        assert glob.glob(glob.escape(store_path) + ".rebuild-*") == []
    finally:
        log.close()


def test_a_killed_rebuilds_staging_file_is_removed_though_the_store_name_has_glob_characters(tmp_path):
    """A store named runs[1].db: its dead rebuilds' files are found by their literal name."""
    path = str(tmp_path / "runs[1].db")
    log = _store_with_runs(path)
    try:
        stale = f"{path}.rebuild-{_reaped()}-runs"
        open(stale, "wb").close()
        ledger.rebuild(log)
        assert not os.path.exists(stale)
    finally:
        log.close()


def test_another_users_rebuild_keeps_its_staging_file(tmp_path, monkeypatch):
    """A process that may not be signalled (another user's) counts as running: its file stays."""
    store = str(tmp_path / "runs.db")
    theirs = f"{store}.rebuild-999999-runs"
    open(theirs, "wb").close()
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:
        if pid == 999999:
            raise PermissionError(1, "Operation not permitted")
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    staging_path(store, [SimpleNamespace(name="runs")])
    assert os.path.exists(theirs)


def test_a_staging_file_neither_journals_nor_waits_for_the_disk(tmp_path, log):
    """The staging file is throwaway: no journal, no fsync, even in a view's transaction."""
    views = [Projector(log.backend).view("runs")]
    staged = StagingBackend(str(tmp_path / "staged.db"), views)
    try:
        for _ in range(2):
            with staged.transaction(write=True, durable=False) as c:
                assert _pragma(c, "synchronous") == 0  # OFF
                c.execute("PRAGMA journal_mode")
                assert c.fetchone()[0] == "off"
    finally:
        staged.remove()
    assert not os.path.exists(str(tmp_path / "staged.db"))


def test_a_rebuild_drops_the_tables_an_earlier_version_of_a_view_had(store_path):
    """A view made again by a rebuild leaves none of its retired tables (runs' run_emails) behind."""
    log = _store_with_runs(store_path)
    try:
        with log.backend.transaction(write=True) as c:
            c.execute("CREATE TABLE run_emails (run_id TEXT, email TEXT)")
            c.execute("INSERT INTO run_emails VALUES ('r0', 'old@example.com')")
        assert Projector(log.backend).rebuild() == 3
        with log.backend.transaction(write=False) as c:
            assert "run_emails" not in log.backend.table_names(c)
        assert _run_ids(log) == ["r0", "r1", "r2"]
    finally:
        log.close()


def test_a_store_in_memory_can_be_rebuilt_in_place(tmp_path):
    """A store in memory has no file beside which to stage: its views are emptied, made
    again and folded where they are."""
    log = _store_with_runs(":memory:")
    try:
        assert ledger.rebuild(log) == 3
        assert _run_ids(log) == ["r0", "r1", "r2"]
    finally:
        log.close()


def _copy_leftovers(copy: str) -> list[str]:
    return sorted(p for p in glob.glob(glob.escape(copy) + "*") if p != copy)


def test_rebuild_into_removes_what_killed_and_cut_short_copies_left_but_not_a_running_ones(store_path, tmp_path):
    """Dead processes' building files (and their journals) and this process's own go; a
    running process's stay."""
    log = _store_with_runs(store_path)
    copy = str(tmp_path / "copy.db")
    dead = f"{copy}.building-{_reaped()}"
    mine = f"{copy}.building-{os.getpid()}"
    running = subprocess.Popen(["sleep", "30"])
    theirs = f"{copy}.building-{running.pid}"
    try:
        for name in (dead, dead + "-wal", mine, mine + "-wal", mine + "-shm", theirs):
            with open(name, "wb") as f:
                f.write(b"junk" * 100)
        ledger.rebuild_into(log, copy)
        assert _copy_leftovers(copy) == [theirs]
    finally:
        running.kill()
        running.wait()
        log.close()
    copied = open_log(copy, create=False)
    try:
        assert _run_ids(copied) == ["r0", "r1", "r2"]
    finally:
        copied.close()


def test_a_finished_copy_is_one_file_in_rollback_journal_mode_when_it_takes_its_name(store_path, tmp_path):
    """Its write-ahead log copied in and the mode left, the copy needs no file beside it."""
    log = _store_with_runs(store_path)
    copy = str(tmp_path / "copy.db")
    try:
        ledger.rebuild_into(log, copy)
    finally:
        log.close()
    with open(copy, "rb") as f:
        header = f.read(20)
    assert header[18:20] == b"\x01\x01"  # the rollback journal's read and write versions (WAL: 2)
    assert _copy_leftovers(copy) == []


def _finished_copy(path: str) -> None:
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("CREATE TABLE t (x)")
    raw.execute("INSERT INTO t VALUES (1)")
    raw.commit()
    raw.close()


@pytest.mark.parametrize("hard_links", [True, False], ids=["link", "rename"])
def test_a_finished_copy_takes_its_name_and_leaves_no_building_file(tmp_path, monkeypatch, hard_links):
    """give_name: by a hard link (or, where there are none, a rename), the building name gone."""
    building, final = str(tmp_path / "c.db.building-1"), str(tmp_path / "c.db")
    _finished_copy(building)
    if not hard_links:
        monkeypatch.setattr(os, "link", _no_links)
    give_name(building, final)
    assert sorted(os.listdir(tmp_path)) == ["c.db"]
    with contextlib.closing(sqlite3.connect(final)) as raw:
        assert raw.execute("SELECT x FROM t").fetchall() == [(1,)]


def _no_links(src, dst, *args, **kwargs):
    raise OSError(errno.EPERM, "Operation not permitted")


@pytest.mark.parametrize("hard_links", [True, False], ids=["link", "rename"])
def test_a_finished_copy_never_replaces_a_file_made_under_its_name_meanwhile(tmp_path, monkeypatch, hard_links):
    """Another process's file at the final name stays as it is: FileExistsError instead."""
    building, final = str(tmp_path / "c.db.building-1"), str(tmp_path / "c.db")
    _finished_copy(building)
    with open(final, "wb") as f:
        f.write(b"theirs")
    if not hard_links:
        monkeypatch.setattr(os, "link", _no_links)
    with pytest.raises(FileExistsError):
        give_name(building, final)
    with open(final, "rb") as f:
        assert f.read() == b"theirs"
    assert os.path.exists(building)


def test_a_finished_copys_new_name_is_made_lasting_with_an_fsync_of_its_folder(tmp_path, monkeypatch):
    """The folder holding the new name is fsynced before give_name returns."""
    building, final = str(tmp_path / "c.db.building-1"), str(tmp_path / "c.db")
    _finished_copy(building)
    synced: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    give_name(building, final)
    assert synced == [True]
