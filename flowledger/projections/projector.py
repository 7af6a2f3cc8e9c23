"""Running views over the log: catch up, follow, rebuild.

eventsourcing's SQLite recorder cannot push to subscribers, so a view catches up by
reading the notification log from its tracked position in pages. Each page is one
``BEGIN IMMEDIATE`` transaction that reads the view's position, applies the next events
and moves the position (eventsourcing's ``tracking`` table, forward only): two
projectors of one view, in any processes, can never both apply the same event.

Within one catch-up each view keeps the rows it wrote in a bounded
:class:`~flowledger.projections.memory.Memory`, so the next page need not read them back.
A rebuild of a long log on SQLite folds the deliveries in a second process (see
:mod:`flowledger.projections.helper`), each process folding a page before it takes the
write lock, so that the two use two cores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
from flowledger.gc_pause import cyclic_gc_paused
from flowledger.errors import FlowledgerError
from flowledger.projections.base import View, Writes
from flowledger.projections.deliveries_view import DeliveriesView
from flowledger.projections.helper import split_views, start_helper
from flowledger.projections.memory import Memory
from flowledger.projections.runs_view import RunsView
from flowledger.projections.steps_view import StepsView
from flowledger.store.backend import SQLBackend

DEFAULT_PAGE_SIZE = 2_000
"""Events applied per transaction."""
REBUILD_PAGE_SIZE = 100_000
"""Events applied per transaction by a rebuild: fewer, larger commits, and fewer turns at
the write lock for the two processes of a rebuild (each turn makes the other's page
cache stale), and each index page a commit rewrites is written once per commit. A page of
decoded events weighs some 120 MiB."""
HELPER_FROM = 50_000
"""The log length from which a rebuild of several views starts a helper process."""


class UnknownView(FlowledgerError):
    """A view name that does not exist."""


def all_views() -> list[View]:
    """One instance of every view, in the order they are caught up."""
    return [RunsView(), StepsView(), DeliveriesView()]


class Projector:
    """Keeps views of one store up to date with its log."""

    def __init__(
        self,
        backend: SQLBackend,
        views: Sequence[View] | None = None,
        *,
        source: SQLBackend | None = None,
        rebuilding: bool = False,
    ) -> None:
        self.backend = backend
        """The store holding the views (and, unless ``source`` says otherwise, the log)."""
        self.source = source or backend
        """The store whose log the views fold (another store: `rebuild --into`)."""
        self.views = list(views) if views is not None else all_views()
        """The views this projector runs."""
        self.rebuilding = rebuilding
        """Part of a rebuild: leave the views' query indexes for the rebuild to make at its end."""
        self._ready = False

    def view(self, name: str) -> View:
        """A view by its name."""
        for v in self.views:
            if v.name == name:
                return v
        names = ", ".join(v.name for v in self.views)
        raise UnknownView(f"no view {name!r}; the views are {names}")

    def ensure_tables(self) -> None:
        """Create the tracking table and every view's tables, once per process.

        A view whose tables were made for another version of it (its columns changed) is
        dropped and will be folded again from position 0: a view is only ever a cache. A
        view missing indexes (a rebuild that stopped before making them) gets them.
        """
        b = self.backend
        wanted_versions = {(v.name, v.version) for v in self.views}
        # Once per store and process: queries make a projector each, and need not look again.
        if self._ready or wanted_versions <= getattr(b, "_views_ensured", set()):
            return
        with b.transaction(write=False) as c:
            existing = b.table_names(c)
            stored = self._versions(c)
        wanted = {b.tracking_table} | {t for v in self.views for t in v.tables}
        if not self.rebuilding:
            wanted |= {i for v in self.views for i in v.index_names()}
        if not wanted <= existing or any(stored.get(v.name) != str(v.version) for v in self.views):
            with b.transaction(write=True) as c:
                # Projectors starting together must not race to create the tables.
                b.lock_views(c, ["(tables)"])
                # Another projector may have done it while we waited: DDL on tables in
                # use would take locks against its writes.
                existing, stored = b.table_names(c), self._versions(c)
                b.create_tracking_table(c)
                for v in self.views:
                    if stored.get(v.name) == str(v.version) and set(v.tables) <= existing:
                        if not self.rebuilding and not v.index_names() <= existing:
                            # Every index is wanted here: make any that is missing.
                            for statement in v.ddl:
                                c.execute(b.ddl(statement))
                        continue
                    for table in (*v.tables, *v.retired_tables):
                        if table in existing:
                            c.execute(f'DROP TABLE "{table}"')
                    b.clear_position(c, v.name)
                    for statement in v.ddl:
                        c.execute(b.ddl(statement))
                    c.execute("DELETE FROM flowledger_meta WHERE key = ?", ("view:" + v.name,))
                    c.execute("INSERT INTO flowledger_meta VALUES (?, ?)", ("view:" + v.name, str(v.version)))
        self._ready = True
        if self.rebuilding:
            return  # not all is there: another projector of this store must look again
        b._views_ensured = getattr(b, "_views_ensured", set()) | wanted_versions  # type: ignore[attr-defined]

    @staticmethod
    def _versions(c: Any) -> dict[str, str]:
        c.execute("SELECT key, value FROM flowledger_meta WHERE key LIKE 'view:%'")
        return {key[len("view:"):]: value for key, value in c.fetchall()}

    def position(self, view: View) -> int:
        """The last log position the view has applied (0: none)."""
        self.ensure_tables()
        with self.backend.transaction(write=False) as c:
            return self.backend.get_position(c, view.name)

    def head(self) -> int:
        """The position of the last event in the log."""
        with self.source.transaction(write=False) as c:
            return self.source.max_position(c)

    def catch_up(
        self,
        views: Sequence[View] | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        progress: Callable[[int], None] | None = None,
        fold_first: bool = False,
    ) -> int:
        """Apply every event the views have not applied yet; returns how many were read.

        ``fold_first`` folds each page outside the write lock, from a read snapshot, and
        takes the lock only to check that no other projector moved the views meanwhile
        and to write: for projectors of different views running side by side, whose
        folding then overlaps. A page some other projector got to first is folded again,
        under the lock.
        """
        self.ensure_tables()
        views = list(views) if views is not None else self.views
        if not self._behind(views):
            return 0  # the common case for a query: no write lock taken at all
        # Each view remembers the rows it wrote, from one page to the next of this call.
        memories = {v.name: Memory() for v in views}
        total = 0
        with cyclic_gc_paused():
            while True:
                n = self._fold_then_write(views, page_size, memories) if fold_first else None
                if n is None:
                    n = self._apply_page(views, page_size, memories)
                if n == 0:
                    break
                total += n
                if progress:
                    progress(n)
        return total

    def _behind(self, views: Sequence[View]) -> bool:
        """Whether any of the views has events left to apply (read only)."""
        b = self.backend
        with b.transaction(write=False) as c:
            lowest = min(b.get_position(c, v.name) for v in views)
            if self.source is b:
                return b.max_position(c) > lowest
        return self.head() > lowest

    def _apply_page(
        self, views: Sequence[View], page_size: int, memories: dict[str, Memory] | None = None
    ) -> int:
        """Apply the next page of the log to every view behind, in one transaction.

        The page is read and decoded once for all views (from the furthest behind); each
        view takes only what lies past its own position, and its position moves in the
        same transaction as its rows. A view's memory is trusted only if the view is
        still where that memory left it, and is forgotten if the transaction fails.
        """
        b = self.backend
        memories = memories if memories is not None else {v.name: Memory() for v in views}
        try:
            with b.transaction(write=True, durable=False) as c:
                b.lock_views(c, sorted(v.name for v in views))
                positions = {v.name: b.get_position(c, v.name) for v in views}
                rows = self._read_page(c, positions, page_size)
                if not rows:
                    return 0
                folded = self._fold_page(c, views, positions, rows, memories)
                self._write(c, folded, rows[-1][0])
        except BaseException:
            for memory in memories.values():
                memory.forget()
            raise
        for view, _ in folded:
            memories[view.name].committed(rows[-1][0])
        return len(rows)

    def _fold_then_write(self, views: Sequence[View], page_size: int, memories: dict[str, Memory]) -> int | None:
        """Fold the next page from a read snapshot, then write it under the lock.

        Returns None, having written nothing, if another projector moved any of the
        views in between (what the fold read is then not what it must fold onto).
        """
        b = self.backend
        try:
            with b.transaction(write=False) as c:
                positions = {v.name: b.get_position(c, v.name) for v in views}
                rows = self._read_page(c, positions, page_size)
            if not rows:
                return 0
            # No read transaction is held while folding: one held that long by each of
            # two processes would keep SQLite from ever restarting its write-ahead log,
            # which would grow by every row the rebuild writes.
            folded = self._fold_page(_ReadEach(b), views, positions, rows, memories)
            with b.transaction(write=True, durable=False) as c:
                b.lock_views(c, sorted(v.name for v in views))
                moved = any(b.get_position(c, v.name) != positions[v.name] for v in views)
                if not moved:
                    self._write(c, folded, rows[-1][0])
        except BaseException:
            for memory in memories.values():
                memory.forget()
            raise
        if moved:
            for memory in memories.values():
                memory.forget()
            return None
        for view, _ in folded:
            memories[view.name].committed(rows[-1][0])
        return len(rows)

    def _read_page(self, c: Any, positions: dict[str, int], page_size: int) -> list[Any]:
        """The next page of the log after the furthest-behind view's position."""
        if self.source is self.backend:
            return self.backend.select_page(c, min(positions.values()), page_size)
        # The log lives elsewhere; it only grows, so reading it in a transaction of its
        # own cannot make the views skip or repeat an event.
        with self.source.transaction(write=False) as sc:
            return self.source.select_page(sc, min(positions.values()), page_size)

    @staticmethod
    def _fold_page(
        c: Any, views: Sequence[View], positions: dict[str, int], rows: list[Any], memories: dict[str, Memory]
    ) -> list[tuple[View, Writes | None]]:
        """Decode a page once and fold it into each view behind: what each is to write."""
        wanted = frozenset().union(*(v.topics for v in views))
        loads = orjson.loads
        page = [(r[0], r[1], loads(r[2])) for r in rows if r[1] in wanted]
        first, last = rows[0][0], rows[-1][0]
        folded: list[tuple[View, Writes | None]] = []
        for view in views:
            mine = positions[view.name]
            if mine >= last:
                continue
            memory = memories[view.name]
            memory.check(mine)
            topics = view.topics
            if topics >= wanted:
                events = page if mine < first else [e for e in page if e[0] > mine]
            elif mine < first:
                events = [e for e in page if e[1] in topics]
            else:
                events = [e for e in page if e[0] > mine and e[1] in topics]
            folded.append((view, view.fold(c, events, memory) if events else None))
        return folded

    def _write(self, c: Any, folded: list[tuple[View, Writes | None]], last: int) -> None:
        """Write what each view folded, and move its position in the same transaction."""
        for view, writes in folded:
            if writes is not None:
                writes.run(c)
            # Rows and position commit together: a view never applies an event twice.
            self.backend.set_position(c, view.name, last)

    def rebuild(
        self,
        views: Sequence[View] | None = None,
        *,
        page_size: int = REBUILD_PAGE_SIZE,
        progress: Callable[[int], None] | None = None,
        helper: bool | None = None,
    ) -> int:
        """Empty views and fold them again from position 0; returns events read.

        With ``helper`` (by default: for a log of :data:`HELPER_FROM` events or more), a
        second process folds some of the views while this one folds the others (see
        :mod:`flowledger.projections.helper`); whatever it leaves undone, this process
        finishes. The views' query indexes are made last (see :attr:`View.query_indexes`).
        """
        self.ensure_tables()
        self.rebuilding = True
        views = list(views) if views is not None else self.views
        mine, theirs = split_views(views)
        if helper is None:
            helper = bool(theirs) and self.head() >= HELPER_FROM
        # Started first, the helper loads its modules while the views are emptied here.
        running = start_helper(self.backend, self.source, theirs, page_size) if helper and theirs else None
        try:
            with self.backend.transaction(write=True) as c:
                self.backend.lock_views(c, sorted(v.name for v in views))
                for view in views:
                    self.backend.empty_tables(c, view.tables, view.fold_ddl())
                    self.backend.clear_position(c, view.name)
        except BaseException:
            self.rebuilding = False
            if running is not None:
                running.stop()
            raise
        try:
            if running is None:
                total = self.catch_up(views, page_size=page_size, progress=progress)
            else:
                running.go()
                try:
                    total = self.catch_up(mine, page_size=page_size, progress=progress, fold_first=True)
                    self.make_query_indexes(mine)  # while the helper may still be folding
                    running.wait()
                except BaseException:
                    running.stop()
                    raise
                # A helper that failed or was stopped left its views part way: fold the rest here.
                self.catch_up(theirs, page_size=page_size)
            self.make_query_indexes(views)
        except BaseException:
            # Its views may lack their query indexes: the next projector must look.
            self.backend._views_ensured = set()  # type: ignore[attr-defined]
            raise
        finally:
            self.rebuilding = False
        return total

    def make_query_indexes(self, views: Sequence[View]) -> None:
        """Make the views' query indexes that are missing (the end of a rebuild)."""
        b = self.backend
        with b.transaction(write=True, durable=False) as c:
            b.lock_views(c, sorted(v.name for v in views))
            for view in views:
                for statement in view.query_ddl():
                    c.execute(b.ddl(statement))

    def follow(
        self,
        *,
        interval: float = 0.5,
        page_size: int = DEFAULT_PAGE_SIZE,
        should_stop: Callable[[], bool] = lambda: False,
        on_applied: Callable[[int], None] | None = None,
    ) -> None:
        """Keep catching up, polling the log every ``interval`` seconds, until told to stop."""
        while not should_stop():
            n = self.catch_up(page_size=page_size)
            if n and on_applied:
                on_applied(n)
            if not n:
                time.sleep(interval)


class _ReadEach:
    """A cursor for folding outside a transaction: each query is a read transaction of its own.

    What the queries read may be newer than the page's snapshot only if another projector
    moved the view meanwhile, which the write that follows checks before writing.
    """

    def __init__(self, backend: SQLBackend) -> None:
        self.backend = backend
        self.description: Any = None
        self._rows: list[Any] = []

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        """Run one query in a read transaction, keeping all its rows."""
        with self.backend.transaction(write=False) as c:  # type: ignore[attr-defined]
            c.execute(statement, params)
            self.description = c.description
            self._rows = list(c.fetchall())

    def fetchall(self) -> list[Any]:
        """The rows of the last query."""
        rows, self._rows = self._rows, []
        return rows

    def fetchone(self) -> Any:
        """The next row of the last query, or None."""
        return self._rows.pop(0) if self._rows else None


