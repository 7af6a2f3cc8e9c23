"""Staging files: where a rebuild of a SQLite store folds its views before they replace the
store's own.

A view is only ever a cache of the log, so the file a rebuild folds it into need not
survive a crash: it keeps no journal and never waits for the disk, and no other process
shares its write lock. Each page's rows then cost what SQLite's B-trees cost, not the
store's write-ahead log, its checkpoints or another process's turn at the lock. When the
fold is done, :meth:`SQLiteBackend.merge_staged
<flowledger.store.sqlite.SQLiteBackend.merge_staged>` copies the finished tables into the
store in one transaction, with the views' positions: the store's views go from their old
rows to the new ones at once, never through a half-folded state.

A staging file is named after its store and the process that made it
(``flowledger.db.rebuild-<pid>-<views>``) and removed when its rebuild ends; one left by a
process that was killed is removed by the next rebuild of that store.
"""

from __future__ import annotations

import glob
import os
import re
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from eventsourcing.sqlite import SQLiteConnection, SQLiteConnectionPool, SQLiteDatastore, SQLiteTrackingRecorder

from flowledger.errors import StoreError
from flowledger.store.sqlite import CACHE_KIB, SQLiteBackend, SQLiteTransaction, sqlite_name

if TYPE_CHECKING:
    from flowledger.projections.base import View

_SUFFIX = ".rebuild-"
_OWNER = re.compile(r"\.rebuild-(\d+)-")
_BUILDING = ".building-"
_BUILDER = re.compile(r"\.building-(\d+)")


class _UnjournaledPool(SQLiteConnectionPool):
    """Connections with no rollback journal and no fsync: what a throwaway file needs."""

    def _create_connection(self) -> SQLiteConnection:
        raw = sqlite3.connect(sqlite_name(self.db_name), check_same_thread=False, isolation_level=None)
        raw.execute("PRAGMA journal_mode=OFF")
        raw.execute("PRAGMA synchronous=OFF")
        raw.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        return SQLiteConnection(sqlite_conn=raw, max_age=None)


class _StagingDatastore(SQLiteDatastore):
    def __init__(self, db_name: str) -> None:
        super().__init__(db_name, originator_id_type="text")
        # One process folds into the file, one connection at a time.
        self.pool = _UnjournaledPool(db_name=db_name, pool_size=1, max_overflow=1)


class StagingBackend(SQLiteBackend):
    """A new staging file with the tables of some views, empty, at position 0.

    Only what a projector writes is made: the tracking table, the views' versions and
    the tables and indexes their folds read (those only queries read are made at the
    end, one sort each). Its transactions cannot be rolled back reliably: on any error
    the file is thrown away, never read again.
    """

    what = "the rebuild's staging file (beside the store)"

    def __init__(self, path: str, views: Sequence[View]) -> None:
        self.path = path
        self.lock_timeout = 60.0
        self.datastore = _StagingDatastore(path)
        self._tracking = SQLiteTrackingRecorder(self.datastore)
        try:
            with self.transaction(write=True) as c:
                self.create_tracking_table(c)
                c.execute("CREATE TABLE flowledger_meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID")
                for view in views:
                    for statement in view.fold_ddl():
                        c.execute(statement)
                    self.set_view_version(c, view.name, view.version)
        except BaseException:
            # The file is made at the first statement: a disk with room for it but not for
            # its tables fails here, before the rebuild holds it to remove.
            self.remove()
            raise

    def transaction(
        self, *, write: bool, durable: bool = True, append: bool = False, attach: tuple[str, str] | None = None
    ) -> SQLiteTransaction:
        """A transaction on the file. None waits for the disk, whatever ``durable`` says:
        the file's connections never do (and must not be switched back to waiting)."""
        return SQLiteTransaction(self, write=write, durable=True, attach=attach)

    def remove(self) -> None:
        """Close the file and delete it."""
        self.close()
        remove_file(self.path)


def staging_path(store: str, views: Sequence[View]) -> str:
    """A new staging file's path for a rebuild of ``views`` of the store file ``store``,
    once the files that killed rebuilds of it left behind are gone."""
    for path in glob.glob(glob.escape(store) + _SUFFIX + "*"):
        owner = _OWNER.search(path[len(store) :])
        if owner is not None and not _alive(int(owner.group(1))):
            remove_file(path)
    names = "-".join(v.name for v in views)
    path = f"{store}{_SUFFIX}{os.getpid()}-{names}"
    remove_file(path)  # this very process's, from a rebuild that an error cut short
    return path


def building_path(final: str) -> str:
    """Where `rebuild --into` makes the new SQLite copy ``final`` names until every view is
    folded (``final``.building-<pid>), once the files killed ones left behind are gone
    (their staging files with them: named after it)."""
    for path in glob.glob(glob.escape(final) + _BUILDING + "*"):
        owner = _BUILDER.match(path[len(final) :])
        if owner is not None and not _alive(int(owner.group(1))):
            remove_file(path)
    path = f"{final}{_BUILDING}{os.getpid()}"
    remove_building(path)  # this very process's, from a rebuild that an error cut short
    return path


def remove_building(path: str) -> None:
    """Delete a copy that was being made, with its journal files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        remove_file(path + suffix)


def give_name(building: str, final: str) -> None:
    """Give a finished copy, closed, its name: in one step, lasting once this returns, and
    never over a file another process made there meanwhile (then :class:`FileExistsError`)."""
    try:
        raw = sqlite3.connect(sqlite_name(building), isolation_level=None)
        try:
            # Its write-ahead log copied into it and deleted: the copy is one file, named in
            # one step. Refused ("locked") while any connection still has it open.
            raw.execute("PRAGMA journal_mode=DELETE").fetchall()
        finally:
            raw.close()
    except sqlite3.Error as e:
        # A full disk while the log is copied in, say: the caller's own error, not a driver's.
        raise StoreError(f"{building} could not be made one file ({e})") from e
    try:
        os.link(building, final)
    except FileExistsError:
        raise
    except OSError:
        # A file system without hard links: a rename, which would replace a file made there
        # meanwhile, after looking (the window is this process's own few instructions).
        if os.path.lexists(final):
            raise FileExistsError(final) from None
        os.rename(building, final)
    else:
        os.remove(building)
    folder = os.open(os.path.dirname(os.path.abspath(final)), os.O_RDONLY)
    try:
        os.fsync(folder)  # the new name survives a crash of the machine, as the copy's rows do
    finally:
        os.close(folder)


def remove_file(path: str) -> None:
    """Delete a file if it is there."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _alive(pid: int) -> bool:
    """Whether a process of this id runs (one of another user's counts as running; one
    that has ended but was never reaped, a zombie, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # "pid (command) state …": the command may hold spaces and parentheses.
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc here: it answered the signal, so count it as running
