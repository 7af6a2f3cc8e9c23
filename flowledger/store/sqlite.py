"""The SQLite store: eventsourcing's SQLite event store, set up for durability, with the
few tables flowledger keeps beside it, and the one seam where driver errors become
flowledger's own.

Layout of the file:

- ``stored_events`` (eventsourcing's): one row per event; ``originator_id`` is the stream
  (``run:<run_id>`` or ``message:<message_id>``), ``topic`` the event type, ``state`` the
  event as JSON; the rowid is the event's position in the notification log.
- ``event_ids``: every sender's event id stored, for idempotent appends.
- ``stream_heads``: each run's last version and the state its rules need (a message's
  version is read from ``stored_events``' own key; stores made with schema version 1
  also hold message rows here, which nothing reads).
- ``run_cancellation_keys``: which runs a cancellation key names.
- ``tracking`` (eventsourcing's): how far each projection has applied the log.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import PersistenceError, Tracking
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
    SQLiteTrackingRecorder,
)

from flowledger.errors import StoreBusy, StoreError, StoreReadOnly
from flowledger.store.backend import FLOWLEDGER_TABLES, SCHEMA_VERSION, SQLBackend, new_store_id

if TYPE_CHECKING:
    from flowledger.projections.base import View

# Python's sqlite3 binds int, float, str and bytearray at once, but puts None and bytes
# through its adaptation protocol, whose two failed attribute look-ups each format an
# error message: for a view's row of thirty columns, most of them NULL, that is most of
# the cost of binding it. An adapter registered for the exact type is found first; these
# two are C functions that give the value back unchanged (an empty dict's get of None is
# None; bytes() of a bytes object is that object), so what is stored does not change.
sqlite3.register_adapter(type(None), {}.get)
sqlite3.register_adapter(bytes, bytes)

CACHE_KIB = 65_536
"""SQLite's page cache per connection, in KiB (SQLite's default is 2,000)."""
CHECKPOINT_PAGES = 65_536
"""Pages the write-ahead log grows to (256 MiB) before a commit copies them into the file
(SQLite's default is 1,000). Webhooks for old runs write pages of the log's two keys at
random, a hundred or so a batch: the longer between checkpoints, the more often a page is
written again before one copies it, and a checkpoint copies each page once (64 MiB: 11,000
to 12,000 webhook events/s at 1M events; 256 MiB: 13,500 to 15,300, with the last
checkpoint counted)."""
WAL_LIMIT_BYTES = 2 * CHECKPOINT_PAGES * 4096
"""What the write-ahead log is cut back to once a checkpoint has copied it all into the
file: twice what it grows to between checkpoints, so that day to day it is never cut."""
HEAP_LIMIT_BYTES = 4 * CACHE_KIB * 1024
"""SQLite's memory in one process, every connection together (256 MiB), past which their
page caches grow no more: four full caches, where a server's pool may hold fifteen."""


class _DurablePool(SQLiteConnectionPool):
    """eventsourcing's pool, with every connection made durable and patient."""

    def __init__(self, *, busy_timeout_ms: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.busy_timeout_ms = busy_timeout_ms

    def _create_connection(self) -> SQLiteConnection:
        if not self.is_journal_mode_wal and not self.is_sqlite_memory_mode:
            # eventsourcing switches a new file to WAL without waiting for another process
            # switching it at once (refused at once: see switch_to_wal); this waits, and
            # eventsourcing's connections then find it switched.
            switch_to_wal(self.db_name, self.busy_timeout_ms / 1000)
            self.is_journal_mode_wal = True
        conn = super()._create_connection()
        raw: sqlite3.Connection = conn._sqlite_conn  # noqa: SLF001
        # An acknowledged append must survive a power cut, not only a process crash.
        raw.execute("PRAGMA synchronous=FULL")
        raw.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        # Ids are random, so each row written lands on a page of its indexes at random:
        # a cache that holds an index's pages saves reading one back per row.
        raw.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        # Each checkpoint copies every page written since the last one back into the file
        # and waits for the disk: fewer of them write a page rewritten often only once.
        raw.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
        # SQLite reuses the log's file rather than shrinking it: without a limit, one large
        # transaction (an import, a rebuild's merge) would leave gigabytes of it on disk
        # for as long as any process keeps the store open.
        raw.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        # Debian builds SQLite to zero every page a DROP or DELETE frees, and write it: the
        # end of a rebuild, dropping a view's old tables, then wrote each of their pages
        # through the write-ahead log (3 s, against 0.3, for the deliveries table at 10M
        # events). FAST still clears deleted rows from the pages a write changes anyway.
        raw.execute("PRAGMA secure_delete=FAST")
        # Each connection of the pool caches the pages it read, and `serve` answers from
        # up to fifteen: a process-wide bound keeps a server on a large store from
        # holding a cache's worth per connection (979 MiB at 10M events, measured).
        # It is SQLite's own: near it, a connection reuses its cache's oldest pages.
        raw.execute(f"PRAGMA soft_heap_limit={HEAP_LIMIT_BYTES}")
        return conn


def sqlite_busy(error: sqlite3.Error) -> bool:
    """Whether SQLite's ``error`` says another connection holds the file's lock."""
    text = str(error)
    return "locked" in text or "busy" in text.lower()


def switch_to_wal(name: str, timeout: float) -> None:
    """Put the SQLite file ``name`` (made if new) in WAL mode, which it keeps, waiting up to
    ``timeout`` seconds for other processes doing the same.

    SQLite refuses a switch at once, without waiting, while another connection holds the
    file's write lock before its first switch (found: six servers' first webhooks at once,
    11 of 200 races refused, with a "busy for more than 5 s" error said at once)."""
    deadline = time.monotonic() + timeout
    while True:
        conn = sqlite3.connect(name, uri=True, timeout=timeout, isolation_level=None)
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if not sqlite_busy(e) or time.monotonic() >= deadline:
                raise
        finally:
            conn.close()
        time.sleep(random.uniform(0.001, 0.02))  # apart, else the racers meet again


def sqlite_name(path: str) -> str:
    """The name to give SQLite for the file ``path``: the file itself, always.

    SQLite reads a name that begins with "file:" as a URI where URIs are allowed, as
    eventsourcing's connections allow them (and Debian's SQLite everywhere): "file:x.db"
    would open x.db, where flowledger looked at, refused or made the file "file:x.db".
    """
    return "./" + path if path.startswith("file:") else path


class _Datastore(SQLiteDatastore):
    def __init__(self, db_name: str, lock_timeout: float) -> None:
        db_name = sqlite_name(db_name)
        super().__init__(db_name, originator_id_type="text")
        self.pool = _DurablePool(
            db_name=db_name,
            lock_timeout=max(1, int(lock_timeout)),
            busy_timeout_ms=min(int(lock_timeout * 1000), 2**31 - 1),  # SQLite takes a 32-bit int
            pool_timeout=max(5.0, lock_timeout),
        )


class SQLiteTransaction:
    """One transaction on a pooled connection; the seam where driver errors are translated.

    ``write=True`` begins with ``BEGIN IMMEDIATE``: every flowledger write reads first
    (ids, heads), and a plain ``BEGIN`` would let a second writer fail at once with
    SQLITE_BUSY instead of waiting for the lock.
    """

    def __init__(
        self,
        backend: SQLiteBackend,
        *,
        write: bool,
        durable: bool = True,
        attach: tuple[str, str] | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        self.backend = backend
        self.write = write
        self.durable = durable
        self.attach = attach
        """(name, file) of a database to attach for this transaction only."""
        self.lock_timeout = lock_timeout
        """Seconds to wait for the write lock, when not the store's own lock timeout."""
        self._attached = False
        self._conn: SQLiteConnection | None = None
        self.cursor: sqlite3.Cursor | None = None

    def __enter__(self) -> sqlite3.Cursor:
        with translate_errors(self.backend):
            self._conn = self.backend.datastore.pool.get_connection(is_writer=self.write)
            try:
                raw: sqlite3.Connection = self._conn._sqlite_conn  # noqa: SLF001
                self.cursor = raw.cursor()
                # Plain tuples, as PostgreSQL's cursors give (eventsourcing's are sqlite3.Row).
                self.cursor.row_factory = None
                if not self.durable:
                    # A view can always be refolded from the log: its commits need not wait
                    # for the disk. WAL keeps them atomic; a power cut may only undo the last.
                    self.cursor.execute("PRAGMA synchronous=NORMAL")
                if self.attach is not None:
                    # Outside the transaction: SQLite attaches nothing inside one.
                    # As bytes: a path need not be UTF-8 (str would refuse its surrogates), and
                    # SQLite hands a blob's bytes to open() as they are.
                    file = os.fsencode(sqlite_name(self.attach[1]))
                    self.cursor.execute(f'ATTACH DATABASE ? AS "{self.attach[0]}"', (file,))
                    self._attached = True
                if self.lock_timeout is not None:
                    self.cursor.execute(f"PRAGMA busy_timeout={int(self.lock_timeout * 1000)}")
                self.cursor.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")
            except BaseException:
                # No transaction began (the lock was not had in time, say): the connection
                # goes back to the pool as it came.
                self._give_back()
                raise
        return self.cursor

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        assert self._conn is not None
        try:
            with translate_errors(self.backend):
                if exc is None and self.write:
                    self._conn.commit()
                else:
                    self._conn.rollback()
        finally:
            self._give_back()
        if exc is not None and isinstance(exc, (sqlite3.Error, PersistenceError)):
            raise _translate(exc, self.backend) from exc

    def _give_back(self) -> None:
        """Undo the connection's settings for this transaction and return it to the pool."""
        assert self._conn is not None
        try:
            with translate_errors(self.backend):
                if self.cursor is not None:
                    if self._attached:
                        self.cursor.execute(f'DETACH DATABASE "{self.attach[0]}"')  # type: ignore[index]
                        self._attached = False
                    if not self.durable:
                        self.cursor.execute("PRAGMA synchronous=FULL")
                    if self.lock_timeout is not None:
                        self.cursor.execute(f"PRAGMA busy_timeout={self.backend.datastore.pool.busy_timeout_ms}")
                    self.cursor.close()
        finally:
            self.backend.datastore.pool.put_connection(self._conn)


@contextmanager
def translate_errors(backend: SQLiteBackend) -> Iterator[None]:
    """Turn sqlite3 and eventsourcing persistence errors into flowledger StoreErrors."""
    try:
        yield
    except (sqlite3.Error, PersistenceError) as e:
        raise _translate(e, backend) from e


# SQLite's result codes (sqlite3.h); Python 3.11 has them as sqlite3 constants, older ones not all.
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT = 5, 6, 8, 10, 11
SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 13, 14, 26
SQLITE_READONLY_DIRECTORY = SQLITE_READONLY | (6 << 8)


def _translate(error: BaseException, backend: SQLiteBackend) -> StoreError:
    text = str(error)
    code = _sqlite_code(error)
    # SQLite's result code where the driver gave one; the text only for eventsourcing's own
    # errors (its pool's "Timed out", say), which carry none.
    primary = code & 0xFF if code is not None else None
    guess = primary is None
    path, what = backend.path, backend.what
    if primary in (SQLITE_BUSY, SQLITE_LOCKED) or (
        guess and ("locked" in text or "busy" in text.lower() or "Timed out" in text)
    ):
        return StoreBusy(
            f"{what} {path} is busy: another process held its write lock for "
            f"more than {backend.lock_timeout:g} s; try again, or raise --lock-timeout"
        )
    if primary == SQLITE_CORRUPT or (guess and "malformed" in text):
        return StoreError(
            f"{what} {path} is damaged ({text}): check it with "
            f"sqlite3 {path} 'PRAGMA integrity_check', and restore it from a backup"
        )
    if primary == SQLITE_NOTADB or (guess and "not a database" in text):
        return StoreError(f"{path} is not a flowledger store (not a usable SQLite file)")
    if primary == SQLITE_CANTOPEN or (guess and "unable to open" in text):
        return StoreError(_why_not_opened(path, what, text))
    if code == SQLITE_READONLY_DIRECTORY:
        folder = os.path.dirname(path) or "."
        return StoreError(
            f"cannot use {what} {path}: SQLite keeps {path}-wal and {path}-shm beside it, "
            f"and the folder {folder} is not writable here to make them; make it writable, "
            "or copy the store into a folder that is"
        )
    if primary == SQLITE_READONLY or (guess and ("readonly" in text or "read-only" in text)):
        return _why_read_only(path, what, text)
    if primary == SQLITE_FULL or (guess and "disk" in text and "full" in text):
        return StoreError(f"the disk holding {path} is full; nothing was stored")
    if primary == SQLITE_IOERR:
        # Past a limit on file size (`ulimit -f`) a write fails with EFBIG (Python ignores
        # SIGXFSZ), and SQLite says only "disk I/O error": its code tells a write from a read.
        return StoreError(
            f"{what} {path} could not be written or read ({text}, {_sqlite_error_name(error)}): "
            "a full disk, a limit on file size (ulimit -f) or a failing device"
        )
    return StoreError(f"{what} {path} failed: {text}")


def _sqlite_error(error: BaseException) -> sqlite3.Error | None:
    """The driver's own error behind an error (eventsourcing wraps it in its own), if any."""
    for _ in range(4):
        if isinstance(error, sqlite3.Error):
            return error
        inner = error.__cause__ or next((a for a in error.args if isinstance(a, BaseException)), None)
        if inner is None:
            return None
        error = inner
    return None


def _sqlite_code(error: BaseException) -> int | None:
    """SQLite's extended result code of an error, if the driver gave one."""
    e = _sqlite_error(error)
    return getattr(e, "sqlite_errorcode", None) if e is not None else None


def _sqlite_error_name(error: BaseException) -> str:
    """SQLite's name of an error's result code, like SQLITE_IOERR_WRITE."""
    e = _sqlite_error(error)
    return getattr(e, "sqlite_errorname", None) or "SQLITE_IOERR"


def _why_not_opened(path: str, what: str, text: str) -> str:
    """Why SQLite could not open (or make) the file, as far as the file system tells."""
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        return _a_folder(path)
    if not os.path.exists(path) and os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot create {what} {path}: the folder {folder} is not writable here"
    if os.path.exists(path) and not os.access(path, os.R_OK):
        return f"cannot open {what} {path}: the file is not readable here"
    return f"cannot open {what} {path}: {text}"


def _why_read_only(path: str, what: str, text: str) -> StoreError:
    """Which of the store's files cannot be written here."""
    for name, kind in ((path, ""), (path + "-shm", "SQLite's shared memory"), (path + "-wal", "SQLite's write-ahead log")):
        if os.path.exists(name) and not os.access(name, os.W_OK):
            if not kind:
                return StoreReadOnly(f"{what} {path} is read-only here (its file cannot be written): {text}")
            # A process that could only read the store (its file read-only then) made these
            # read-only too, and could not remove them when it closed the store.
            return StoreError(
                f"{what} {path} cannot be written here: {name} ({kind} beside it) is read-only; "
                "make it writable, or remove it while no process has the store open"
            )
    return StoreReadOnly(f"{what} {path} is read-only here: {text}")


def _a_folder(path: str) -> str:
    """The message for a store path that names a folder."""
    return (
        f"{path} is a folder, not a store file: point --store (or FLOWLEDGER_STORE) at a file, "
        f"like {os.path.join(path, 'flowledger.db')}"
    )


# A view's CREATE statement names its table or index without a schema: "main." before it.
_IN_MAIN = re.compile(r"^(CREATE (?:UNIQUE )?(?:TABLE|INDEX) IF NOT EXISTS )(\w+)")


def _has_schema(c: sqlite3.Cursor) -> bool:
    c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='flowledger_meta'")
    return c.fetchone() is not None


class SQLiteBackend(SQLBackend):
    """An event log and its side tables in one SQLite file (WAL, synchronous=FULL)."""

    name = "sqlite"
    what = "the store"
    """What the file is, in messages."""
    tracking_table = "tracking"
    position_column = "rowid"

    def __init__(self, path: str, *, lock_timeout: float = 60.0, create: bool = True) -> None:
        self.path = path
        """The database file."""
        self.lock_timeout = lock_timeout
        """Seconds a writer waits for another's lock before giving up."""
        if path != ":memory:" and os.path.islink(path):
            try:
                os.stat(path)
            except FileNotFoundError:
                pass  # a link to a file not made yet: made as ever
            except OSError as e:  # a loop of links, say, which SQLite calls "unable to open"
                raise StoreError(f"cannot open the store {path}: {e.strerror}") from None
        if not create and not Path(path).exists():
            raise StoreError(
                f"no store at {path}: append some events first, or point --store "
                "(or FLOWLEDGER_STORE) at an existing one"
            )
        if path != ":memory:":
            parent = Path(path).parent
            if not parent.exists():
                raise StoreError(f"cannot create the store {path}: folder {parent} does not exist")
            if os.path.isdir(path):
                raise StoreError(_a_folder(path))
            if os.path.exists(path) and not os.path.isfile(path):
                # SQLite opens /dev/null or a pipe, then fails with a "disk I/O error".
                raise StoreError(
                    f"{path} is not a regular file (a device, a pipe or a socket): a store is a SQLite file"
                )
        if path != ":memory:" and Path(path).exists():
            self._refuse_unless_a_store(create)
        with translate_errors(self):
            self.datastore = _Datastore(path, lock_timeout)
            self.recorder = SQLiteApplicationRecorder(self.datastore)
            self._tracking = SQLiteTrackingRecorder(self.datastore)
        try:
            # Only a new file needs the write lock at open; an existing store is just read.
            with self.transaction(write=False) as c:
                has_schema = _has_schema(c)
            if not has_schema:
                if not create:  # made empty since it was looked at: still no store
                    raise StoreError(f"{path} is not a flowledger store")
                with self.transaction(write=True) as c:
                    if not _has_schema(c):
                        for statement in self.recorder.create_table_statements:
                            c.execute(statement)
                        for statement in FLOWLEDGER_TABLES:
                            c.execute(statement)
                        c.execute(
                            "INSERT OR IGNORE INTO flowledger_meta VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),),
                        )
                        new_store_id(c)
            else:
                self.upgrade()
                if create:
                    self.give_store_id()
        except BaseException:
            # A store that fails to open is never handed back to be closed: its
            # connections (and their files) would stay open for as long as the error is kept.
            with suppress(Exception):  # the error that ended the opening matters more
                self.datastore.close()
            raise

    def _refuse_unless_a_store(self, create: bool) -> None:
        """Raise StoreError if the existing file is no flowledger store, leaving it as it is
        (with ``create``, an empty file or an empty SQLite database may become one)."""
        if os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
            if create:
                return
            raise StoreError(
                f"no store at {self.path} (an empty file): append some events first, or point "
                "--store (or FLOWLEDGER_STORE) at an existing one"
            )
        # A plain connection that only reads: the store's own pool would first switch the
        # file to WAL, and a command that only reads must not change another program's file.
        with translate_errors(self):
            raw = sqlite3.connect(sqlite_name(self.path))
            try:
                is_store = _has_schema(raw.cursor())
                has_tables = raw.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1").fetchone()
            finally:
                raw.close()
        if not is_store and create and has_tables:
            # Another program's database: flowledger's tables would be written in among its own.
            raise StoreError(
                f"{self.path} is not a flowledger store (a SQLite file with other tables); "
                "flowledger makes its store in a new file or an empty one"
            )
        if not is_store and not create:
            raise StoreError(
                f"{self.path} is not a flowledger store (a SQLite file without flowledger's "
                "tables); point --store (or FLOWLEDGER_STORE) at a store"
            )

    def reopen_url(self) -> str | None:
        """The file's absolute path (None for a database in memory)."""
        return None if self.path == ":memory:" else os.path.abspath(self.path)

    def transaction(
        self,
        *,
        write: bool,
        durable: bool = True,
        append: bool = False,
        attach: tuple[str, str] | None = None,
        lock_timeout: float | None = None,
    ) -> SQLiteTransaction:
        """A transaction; ``write=True`` takes the write lock at once (BEGIN IMMEDIATE).

        ``durable=False`` (views only, never the log) commits without waiting for fsync.
        ``append`` (the log's own writes) needs nothing more here: SQLite has one writer.
        ``attach`` = (name, file): that database is attached for the transaction's length.
        ``lock_timeout``: seconds to wait for the lock, if not the store's own.
        """
        return SQLiteTransaction(self, write=write, durable=durable, attach=attach, lock_timeout=lock_timeout)

    def close(self) -> None:
        """Close every pooled connection."""
        self.datastore.close()

    @staticmethod
    def table_names(c: sqlite3.Cursor) -> set[str]:
        """The tables and indexes that exist."""
        c.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
        return {row[0] for row in c.fetchall()}

    def create_tracking_table(self, c: sqlite3.Cursor) -> None:
        """Create eventsourcing's tracking table (each view's position)."""
        for statement in self._tracking.create_table_statements:
            c.execute(statement)

    @staticmethod
    def ddl(statement: str) -> str:
        """A view's CREATE statement in this database's dialect (views write SQLite's)."""
        return statement

    @staticmethod
    def empty_tables(
        c: sqlite3.Cursor, tables: Sequence[str], ddl: Sequence[str], query_indexes: Sequence[str] = ()
    ) -> None:
        """Empty a view's tables for a rebuild: dropped and made again, which frees their
        pages at once where a DELETE would write every row's removal from every index (the
        query indexes go with their tables)."""
        for table in tables:
            c.execute(f'DROP TABLE IF EXISTS "{table}"')
        for statement in ddl:
            c.execute(statement)

    def set_position(self, c: sqlite3.Cursor, name: str, position: int) -> None:
        """Move a view's position on (never back: eventsourcing's tracking refuses)."""
        self._tracking._insert_tracking(c, Tracking(name, position))  # noqa: SLF001

    def merge_staged(
        self,
        path: str,
        views: Sequence[View],
        positions: dict[str, int],
        check: Callable[[sqlite3.Cursor], None] | None = None,
    ) -> None:
        """Replace the views' tables by those a staging file holds, and move each view to
        its position there, in one transaction (see :mod:`flowledger.store.staging`);
        ``check``, if given, runs first in it and may raise to leave the views as they are.

        The staging file's tables were made by the same statements, so SQLite copies them
        page by page, their indexes too, rather than row by row.
        """
        with self.transaction(write=True, durable=False, attach=("staged", path)) as c:
            if check is not None:
                check(c)
            for view in views:
                for table in (*view.tables, *view.retired_tables):
                    c.execute(f'DROP TABLE IF EXISTS main."{table}"')
                for statement in view.ddl:
                    c.execute(_IN_MAIN.sub(r"\1main.\2", statement, count=1))
                for table in view.tables:
                    c.execute(f'INSERT INTO main."{table}" SELECT * FROM staged."{table}"')
                self.clear_position(c, view.name)
                self.set_position(c, view.name, positions[view.name])
                self.set_view_version(c, view.name, view.version)

    def checkpoint(self) -> None:
        """Copy what the write-ahead log holds into the file, now, as far as readers allow
        (never waiting for a writer): after a rebuild, so that the next append's commit is
        not the one to copy the views it wrote."""
        with translate_errors(self):
            conn = self.datastore.pool.get_connection(is_writer=False)
            try:
                conn._sqlite_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # noqa: SLF001
            finally:
                self.datastore.pool.put_connection(conn)

    @staticmethod
    def lock_views(c: sqlite3.Cursor, names: Sequence[str]) -> None:
        """Make other projectors of these views wait (BEGIN IMMEDIATE already does)."""
