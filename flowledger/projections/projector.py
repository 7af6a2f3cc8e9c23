"""Running views over the log: catch up, follow, rebuild.

eventsourcing's SQLite recorder cannot push to subscribers, so a view catches up by
reading the notification log from its tracked position in pages. Each page is one
``BEGIN IMMEDIATE`` transaction that reads the view's position, applies the next events
and moves the position (eventsourcing's ``tracking`` table, forward only): two
projectors of one view, in any processes, can never both apply the same event.

Within one catch-up each view keeps the rows it wrote in a bounded
:class:`~flowledger.projections.memory.Memory`, so the next page need not read them back,
and reads from the log only the event types its views fold.

A rebuild of a SQLite store folds its views into staging files (see
:mod:`flowledger.store.staging`) that replace the store's views in one transaction each
when they are done; a PostgreSQL store's views are folded in place. For a long log a
second process rebuilds the deliveries meanwhile (see :mod:`flowledger.projections.helper`),
so that a rebuild uses two cores and neither process waits for the other's lock.
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import orjson

from flowledger.domain.event_types import MESSAGE_EVENT_TYPES, RUN_EVENT_TYPES
from flowledger.errors import (
    ENDS_A_FOLLOWER,
    FlowledgerError,
    StoreError,
    StoreIsACopy,
    ViewsMadeByANewerVersion,
    ViewsRemadeByAnotherVersion,
)
from flowledger.gc_pause import cyclic_gc_paused
from flowledger.projections.base import LogReader, View, Writes
from flowledger.projections.deliveries_view import DeliveriesView
from flowledger.projections.helper import split_views, start_helper
from flowledger.projections.memory import Memory
from flowledger.projections.runs_view import RunsView
from flowledger.projections.steps_view import StepsView
from flowledger.store.backend import SQLBackend, lasting_name, store_name
from flowledger.store.sqlite import SQLiteBackend
from flowledger.store.staging import StagingBackend, staging_path

DEFAULT_PAGE_SIZE = 2_000
"""Events applied per transaction."""
REBUILD_PAGE_SIZE = 100_000
"""Events applied per transaction by a rebuild: fewer, larger commits, each index page a
commit rewrites written once per commit. A page of decoded events weighs some 120 MiB."""
HELPER_FROM = 50_000
"""The log length from which a rebuild of several views starts a helper process."""
STAGED_FROM = 50_000
"""The log length from which a catch-up folds views still empty as a rebuild does."""
FOLLOW_BACKOFF_LIMIT = 60.0
"""The longest wait, in seconds, of a follower between attempts while the store keeps failing."""
REBUILD_PHASES = (_FOLD, _QUERY_INDEXES, _COPY) = ("fold", "query indexes", "copy into the store")
"""The phases of :meth:`Projector.rebuild_staged` a caller may time, in order."""
APPLIED = "applied nothing of what it folded"
"""What a process did that finds its views made again by another version while it folds."""
FOLLOWED = "folds nothing more into them"
"""What a follower's poll with nothing to fold did that finds its views made again by another version."""
ANSWERED = "answered nothing from them"
"""What a query did that finds its views made again by another version."""
RECORDED = "recorded nothing"
"""What an operator's command did that finds its views made again by another version."""

_log = logging.getLogger(__name__)


# A page read for views of every type needs no filter.
_EVERY_TYPE = RUN_EVENT_TYPES | MESSAGE_EVENT_TYPES


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
        self.committed = 0
        """Events this projector's catch-ups have read and committed (a failed one's pages
        that committed before it failed included)."""
        self._ready = False

    def view(self, name: str) -> View:
        """A view by its name."""
        for v in self.views:
            if v.name == name:
                return v
        names = ", ".join(v.name for v in self.views)
        raise UnknownView(f"no view {name!r}; the views are {names}")

    def ensure_tables(self, *, remake: Collection[str] = ()) -> None:
        """Create the tracking table and every view's tables, once per process.

        A view whose tables were made for another version of it (its columns changed) is
        dropped and will be folded again from position 0: a view is only ever a cache. A
        view missing indexes (a rebuild that stopped before making them) gets them. A view
        a newer flowledger made is left as it is (ViewsMadeByANewerVersion), unless it is
        one of ``remake``: the views an explicit rebuild makes again, the one way back.
        """
        b = self.backend
        wanted_versions = {(v.name, v.version) for v in self.views}
        # Once per store and process: queries make a projector each, and need not look again.
        if self._ready or wanted_versions <= getattr(b, "_views_ensured", set()):
            return
        with b.transaction(write=False) as c:
            existing = b.table_names(c)
            stored = self.stored_versions(c)
        wanted = {b.tracking_table} | {t for v in self.views for t in v.tables}
        retired: set[str] = set()
        upgraded: list[str] = []  # the tables of the views upgraded in place
        if not self.rebuilding:
            wanted |= {i for v in self.views for i in v.index_names()}
            # An index this version replaced, made again by an older release that opened the
            # store since (no view version changed, so it may): written by every fold, read
            # by no query.
            retired = {i for v in self.views for i in v.retired_index_names()} & existing
        if not wanted <= existing or retired or any(stored.get(v.name) != str(v.version) for v in self.views):
            self.refuse_an_older_copy(stored)
            self._refuse_newer_views(stored, remake)
            with b.transaction(write=True) as c:
                # Projectors starting together must not race to create the tables; and
                # a page in flight (which holds its views' locks, PostgreSQL) commits
                # before a view is made again, while the next waits and then finds the
                # new version (see refuse_other_versions). SQLite's write lock does both.
                b.lock_views(c, ["(tables)", *sorted(v.name for v in self.views)])
                # Another projector may have done it while we waited: DDL on tables in
                # use would take locks against its writes.
                existing, stored = b.table_names(c), self.stored_versions(c)
                # A newer process may have made them while this one waited for the lock.
                self._refuse_newer_views(stored, remake)
                b.create_tracking_table(c)
                for v in self.views:
                    if _standing(v, existing, stored):
                        if not self.rebuilding and (not v.index_names() <= existing or v.retired_index_names() & existing):
                            # Every index is wanted here: make any that is missing (and drop
                            # any this version replaced).
                            for statement in v.ddl:
                                c.execute(b.ddl(statement))
                        continue
                    upgrade = v.upgrade_from(stored.get(v.name), existing)
                    if upgrade is not None:
                        # Its rows stand, at its position: only what the new version adds is made.
                        for statement in (*upgrade, *v.ddl):
                            c.execute(b.ddl(statement))
                        b.set_view_version(c, v.name, v.version)
                        upgraded += v.tables
                        continue
                    for table in (*v.tables, *v.retired_tables):
                        if table in existing:
                            c.execute(f'DROP TABLE "{table}"')
                    b.clear_position(c, v.name)
                    for statement in v.ddl:
                        c.execute(b.ddl(statement))
                    b.set_view_version(c, v.name, v.version)
                # The tables an upgrade filled, as a rebuild's: the planner told of their rows
                # (not guessing at them until autoanalyze), and after this commit their rows
                # marked visible to every transaction.
                if upgraded:
                    b.analyze(c, upgraded)
            if upgraded:
                b.vacuum(upgraded)
        self._ready = True
        if self.rebuilding:
            return  # not all is there: another projector of this store must look again
        b._views_ensured = getattr(b, "_views_ensured", set()) | wanted_versions  # type: ignore[attr-defined]

    def forget_ensured(self) -> None:
        """Make the next ensure_tables of this store, by this projector or another of this
        process, look at its tables again (its views may lack their query indexes)."""
        self._ready = False
        self.backend._views_ensured = set()  # type: ignore[attr-defined]

    def refuse_an_older_copy(self, stored: dict[str, str]) -> None:
        """Raise StoreIsACopy for an analyst's copy whose views another version made: a
        view of another version is dropped to be folded again from the log, and a copy has
        none (its every run would be gone)."""
        if self.rebuilding or self.source is not self.backend:
            return  # `rebuild --into` making the copy again: what it is for
        older = self.views_made_again(stored)
        source = self.backend.copy_of() if older else None
        made = ", ".join(f"{v.name} {stored[v.name]}" for v in older)
        wanted = ", ".join(f"{v.name} {v.version}" for v in older)
        if source is None and older:
            # A release from before copies were marked made its copies all the same: views
            # folded past the end of a log of their own (an empty one). Dropped to be folded
            # again, they would fold from that log: every run gone, queries answering zeros.
            b = self.backend
            with b.transaction(write=False) as c:
                if b.tracking_table not in b.table_names(c):
                    return
                head = b.max_position(c)
                folded = max(b.get_position(c, v.name) for v in older)
            if folded <= head:
                return
            name = store_name(b)
            raise StoreIsACopy(
                f"the views of the store {name} were folded up to log position {folded}, past the end of its "
                f"own log (position {head}): it is an analyst's copy made by `rebuild --into` by an older "
                f"flowledger, from before copies named their source. Its views ({made}) are not this "
                f"version's ({wanted}), and it has no log to fold them again from, so it was left as it was; "
                "make it again from the store it was made from: "
                + shlex.join(["flowledger", "--store", "SOURCE", "rebuild", "--into", name])
            )
        if source is None:
            return
        raise StoreIsACopy(
            f"the store {store_name(self.backend)} is an analyst's copy made by `rebuild --into` from {source} "
            f"by another version of flowledger: its views ({made}) are not this version's ({wanted}), and a copy "
            f"has no log to fold them again from; make it again: "
            + shlex.join(["flowledger", "--store", source, "rebuild", "--into", store_name(self.backend)])
        )

    def views_made_again(self, stored: dict[str, str]) -> list[View]:
        """The views another version made that cannot be upgraded in place: made again and
        folded from the log (the store's tables: read for those whose version differs)."""
        older = [v for v in self.views if v.name in stored and stored[v.name] != str(v.version)]
        if not older:
            return []
        b = self.backend
        with b.transaction(write=False) as c:
            existing = b.table_names(c)
        return [v for v in older if v.upgrade_from(stored[v.name], existing) is None]

    def _refuse_newer_views(self, stored: dict[str, str], remake: Collection[str]) -> None:
        """Raise ViewsMadeByANewerVersion for views a newer flowledger made (but those of
        ``remake``): made again by this version's rules, they would be downgraded for every
        process of the newer one, whose followers would then stop. A stored version that is
        not a number (or none) is another version, not a newer one: made again as ever."""
        if self.source is not self.backend:
            return  # `rebuild --into` making an analyst's copy again: what it is for
        newer = [v for v in self.views if v.name not in remake and _is_newer(stored.get(v.name), v.version)]
        if not newer:
            return
        name = store_name(self.backend)
        made = ", ".join(
            f"{v.name!r} (view version {stored[v.name]}, where this flowledger folds view version {v.version})"
            for v in newer
        )
        them = "it" if len(newer) == 1 else "them"
        command = shlex.join(["flowledger", "--store", name, "rebuild", *(v.name for v in newer)])
        raise ViewsMadeByANewerVersion(
            f"a newer flowledger made the view{'s' if len(newer) != 1 else ''} {made} of the store {name}: "
            f"this older flowledger would make {them} again by its older rules, so it left the store as it was. "
            f"Use the newer flowledger with this store; or, to go back to this version on purpose (a release "
            f"rolled back), stop the newer version's processes and make {them} again with this version: {command}"
        )

    @staticmethod
    def stored_versions(c: Any) -> dict[str, str]:
        """The version each view's tables were made for, as the store records it (views never made: absent)."""
        c.execute("SELECT key, value FROM flowledger_meta WHERE key LIKE 'view:%'")
        return {key[len("view:"):]: value for key, value in c.fetchall()}

    def another_versions_views(self, c: Any, stored: dict[str, str] | None = None) -> str | None:
        """Why this process cannot serve the views (another version of flowledger made them),
        or None; views not made yet (no version stored) are nobody's. What /healthz asks
        (``stored``: the versions, if just read)."""
        made = self.stored_versions(c) if stored is None else stored
        try:
            self.refuse_other_versions(c, [v for v in self.views if v.name in made], done=ANSWERED, stored=made)
        except ViewsRemadeByAnotherVersion as e:
            return str(e)
        return None

    def refuse_other_versions(
        self, c: Any, views: Sequence[View] | None = None, *, done: str = APPLIED, stored: dict[str, str] | None = None
    ) -> None:
        """Raise ViewsRemadeByAnotherVersion if the stored versions of the views (all by
        default) are not this process's: another version of flowledger made them again
        since this process made them, and folded by this version's rules (or answered from)
        their rows would be wrong, silently. :meth:`ensure_tables` looks once per process (a
        server's, at its start), so a page checks under its views' locks, and a query or a
        command in its own transaction: one small read (none if ``stored`` is given), so that
        what the caller reads or writes next is what was checked; ``done`` says what the
        process did then."""
        stored = self.stored_versions(c) if stored is None else stored
        for view in self.views if views is None else views:
            found = stored.get(view.name)
            if found == str(view.version):
                continue
            if is_older(found, view.version):
                raise ViewsRemadeByAnotherVersion(self._remade_by_an_older_version(view, found, done))
            raise ViewsRemadeByAnotherVersion(
                f"another version of flowledger made the view {view.name!r} of the store "
                f"{store_name(self.backend)} again: its tables are now for view version {found or 'none'}, "
                f"and this process folds view version {view.version}, so it {done}; stop this process "
                "and run the new version's command in its place (`flowledger project --follow`, `flowledger serve`)"
            )

    def _remade_by_an_older_version(self, view: View, found: str | None, done: str = APPLIED) -> str:
        """What a process says that stops because an older flowledger made its view again."""
        name = store_name(self.backend)
        return (
            f"an older version of flowledger made the view {view.name!r} of the store {name} again: its "
            f"tables are now for view version {found}, and this process folds view version {view.version}, "
            f"so it {done}, and stops. If that was the older version's `flowledger "
            "rebuild`, going back to it on purpose, run that version only; if not, a process of a release from "
            "before flowledger checked view versions made the view again: stop it, then start this version's "
            "command again (`flowledger project --follow`, `flowledger serve`), which makes the view again for "
            f"view version {view.version} and folds it from the log"
        )

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
        check_versions: bool = False,
    ) -> int:
        """Apply every event the views have not applied yet; returns how many were read.

        Views still empty while the log holds :data:`STAGED_FROM` events or more (a new
        store after a large import; a view a newer flowledger made again) are folded the
        way a rebuild folds them, through staging files (see :meth:`rebuild`), then
        caught up with the rest page by page. With ``check_versions`` (a follower), views
        another version made again are refused even with nothing to fold (see
        :meth:`refuse_other_versions`); each page checks its views anyway.
        """
        self.ensure_tables()
        views = list(views) if views is not None else self.views
        if not views:
            return 0
        positions, head = self._positions(views, check_versions)
        if head <= min(positions.values()):
            return 0  # the common case for a query: no write lock taken at all
        total = 0
        empty = [v for v in views if positions[v.name] == 0]
        if empty and head >= STAGED_FROM and not self.rebuilding and _stageable(self.backend):
            total = self.rebuild(empty, progress=progress)
            self.committed += total
        # Each view remembers the rows it wrote, from one page to the next of this call.
        memories = {v.name: Memory() for v in views}
        with cyclic_gc_paused():
            while True:
                n = self._apply_page(views, page_size, memories)
                if n == 0:
                    break
                total += n
                self.committed += n
                if progress:
                    progress(n)
        if empty and total and not self.rebuilding:
            # Folded from 0: views another process emptied for a rebuild in place that
            # stopped before making their query indexes, maybe. Looked for again now (one
            # read), as this process looked only once, at its start.
            self.forget_ensured()
            self.ensure_tables()
        return total

    def _positions(self, views: Sequence[View], check_versions: bool = False) -> tuple[dict[str, int], int]:
        """Each view's position and the log's last (read only); with ``check_versions``,
        views another version made again are refused first, in the same transaction."""
        b = self.backend
        with b.transaction(write=False) as c:
            if check_versions:
                self.refuse_other_versions(c, views, done=FOLLOWED)
            positions = {v.name: b.get_position(c, v.name) for v in views}
            if self.source is b:
                return positions, b.max_position(c)
        return positions, self.head()

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
                self.refuse_other_versions(c, views)
                positions = {v.name: b.get_position(c, v.name) for v in views}
                wanted = frozenset().union(*(v.topics for v in views))
                rows, last, n = self._read_page(c, wanted, positions, page_size)
                if n == 0:
                    return 0
                folded = self._fold_page(c, views, wanted, positions, rows, last, memories)
                self._write(c, folded, last)
        except BaseException:
            for memory in memories.values():
                memory.forget()
            raise
        for view, _ in folded:
            memories[view.name].committed(last)
        return n

    def _read_page(
        self, c: Any, wanted: frozenset[str], positions: dict[str, int], page_size: int
    ) -> tuple[list[Any], int, int]:
        """The next page of the log after the furthest-behind view's position: its events
        of the types the views fold (``wanted``), its last position and its number of events."""
        topics = None if wanted >= _EVERY_TYPE else wanted
        after = min(positions.values())
        if self.source is self.backend:
            return self.backend.select_page(c, after, page_size, topics)
        # The log lives elsewhere; it only grows, so reading it in a transaction of its
        # own cannot make the views skip or repeat an event.
        with self.source.transaction(write=False) as sc:
            return self.source.select_page(sc, after, page_size, topics)

    def _fold_page(
        self,
        c: Any,
        views: Sequence[View],
        wanted: frozenset[str],
        positions: dict[str, int],
        rows: list[Any],
        last: int,
        memories: dict[str, Memory],
    ) -> list[tuple[View, Writes | None]]:
        """Decode a page once and fold it into each view behind: what each is to write.
        ``wanted`` is every type the views fold, which is all the page holds."""
        loads = orjson.loads
        # Every stored event holds its type: the page's rows need not carry it too.
        page = [(position, (body := loads(state))["type"], body) for position, state in rows]
        start = min(positions.values())
        log = LogReader(self.source, c if self.source is self.backend else None)
        folded: list[tuple[View, Writes | None]] = []
        for view in views:
            mine = positions[view.name]
            if mine >= last:
                continue
            memory = memories[view.name]
            memory.check(mine)
            topics = view.topics
            if mine == start:
                # The page holds only types its views fold: a view of them all takes it whole.
                events = page if topics >= wanted else [e for e in page if e[1] in topics]
            else:
                events = [e for e in page if e[0] > mine and e[1] in topics]
            folded.append((view, view.fold(c, events, memory, log) if events else None))
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
        downgrade: bool = False,
    ) -> int:
        """Fold views (all by default) again from position 0; returns events read.

        With ``downgrade`` (an operator's explicit rebuild), views a newer flowledger made
        are made again for this version too, rather than refused: going back to an older
        release on purpose.

        On a SQLite store the views are folded into staging files and replace the store's
        own when done (see :meth:`rebuild_staged`): until then queries see the views as
        they were. Elsewhere (PostgreSQL) the views are emptied and folded in place, their
        query indexes made last (see :attr:`View.query_indexes`). With ``helper`` (by
        default: for a log of :data:`HELPER_FROM` events or more), a second process
        rebuilds some of the views while this one rebuilds the others (see
        :mod:`flowledger.projections.helper`); whatever it leaves undone, this process does.
        """
        views = list(views) if views is not None else self.views
        if self.source is not self.backend:
            self._check_into_target()
            # A copy has no log of its own: a view of it that is made again (another
            # version made it, or the copy lacks it) is folded from the source here too,
            # or it would be left empty at position 0, answering as if nothing happened.
            named = {v.name for v in views}
            views = [*views, *(v for v in self._views_made_again() if v.name not in named)]
        self.ensure_tables(remake={v.name for v in views} if downgrade else ())
        mine, theirs = split_views(views)
        if helper is None:
            helper = bool(theirs) and self.head() >= HELPER_FROM
        running = start_helper(self.backend, self.source, theirs, page_size) if helper and theirs else None
        if running is None:
            mine, theirs = views, []
        try:
            total = self.rebuild_alone(mine, page_size=page_size, progress=progress)
            if running is not None:
                # While the helper still folds: copy this process's views into the file.
                self.backend.checkpoint()
                if not running.wait():
                    # A helper that failed or was stopped left its views as they were
                    # (SQLite) or part-folded (in place): either way, they are done again.
                    self.rebuild_alone(theirs, page_size=page_size)
        except BaseException:
            if running is not None:
                running.stop()
            raise
        # What was appended while the views were folded.
        total += self.catch_up(views, page_size=page_size)
        # The copies of the views went into the write-ahead log: into the file with them
        # here, rather than in whichever append's commit comes next.
        self.backend.checkpoint()
        # Every view at once, once both processes are done: a VACUUM marks no row newer than
        # a transaction open in the database, and the helper's came while this process's
        # pages were in flight (and this one's while the helper's were).
        self.backend.vacuum([t for v in views for t in v.tables])
        return total

    def _views_made_again(self) -> list[View]:
        """The views :meth:`ensure_tables` would make again (empty, at position 0)."""
        b = self.backend
        with b.transaction(write=False) as c:
            existing = b.table_names(c)
            stored = self.stored_versions(c)
        return [
            v for v in self.views if not _standing(v, existing, stored) and v.upgrade_from(stored.get(v.name), existing) is None
        ]

    def _check_into_target(self) -> None:
        """Refuse to fold another store's log into a store with a log of its own: its views
        would show the other log, at positions past its own, so its own events never. A
        target that passes is marked as an analyst's copy of the source (it refuses appends)."""
        if _same_store(self.backend, self.source):
            return
        with self.backend.transaction(write=False) as c:
            n = self.backend.count_events(c)
        if n:
            raise StoreError(
                f"{self.backend.path} holds a log of its own ({n} event{'s' if n != 1 else ''}): "
                "--into writes an analyst's copy to a new or views-only file"
            )
        self.backend.mark_copy_of(lasting_name(self.source))

    def rebuild_alone(
        self, views: Sequence[View], *, page_size: int = REBUILD_PAGE_SIZE, progress: Callable[[int], None] | None = None
    ) -> int:
        """Fold views again from position 0 in this process alone: through a staging file on
        a SQLite store (:meth:`rebuild_staged`), in place elsewhere; returns events read."""
        if _stageable(self.backend):
            return self.rebuild_staged(views, page_size=page_size, progress=progress)
        return self._rebuild_in_place(views, page_size, progress)

    def rebuild_staged(
        self,
        views: Sequence[View],
        *,
        page_size: int = REBUILD_PAGE_SIZE,
        progress: Callable[[int], None] | None = None,
        seconds: dict[str, float] | None = None,
    ) -> int:
        """Fold views from position 0 into a staging file beside the store, make their
        query indexes there, then replace the store's views by them in one transaction;
        returns events read. The store's views stay as they were if this fails.

        ``seconds``, if given, gets how long each of those took, under the names in
        :data:`REBUILD_PHASES` (what `benchmarks/phases.py` prints)."""
        assert isinstance(self.backend, SQLiteBackend)
        took = seconds if seconds is not None else {}
        staged = StagingBackend(staging_path(self.backend.path, views), views)
        try:
            projector = Projector(staged, views, source=self.source, rebuilding=True)
            with _timed(took, _FOLD):
                total = projector.catch_up(page_size=page_size, progress=progress)
            with _timed(took, _QUERY_INDEXES):
                projector.make_query_indexes(views)
            with _timed(took, _COPY):
                with staged.transaction(write=False) as c:
                    positions = {v.name: staged.get_position(c, v.name) for v in views}
                # Checked in the merge's transaction: a view another version made again
                # meanwhile keeps that version's tables.
                refuse = partial(self.refuse_other_versions, views=views)
                self.backend.merge_staged(staged.path, views, positions, check=refuse)
        finally:
            staged.remove()
        return total

    def _rebuild_in_place(self, views: Sequence[View], page_size: int, progress: Callable[[int], None] | None) -> int:
        """Empty the views, fold them again in this process, then make their query indexes."""
        self.rebuilding = True
        try:
            with self.backend.transaction(write=True) as c:
                self.backend.lock_views(c, sorted(v.name for v in views))
                self.refuse_other_versions(c, views)
                for view in views:
                    self.backend.empty_tables(c, view.tables, view.fold_ddl(), sorted(view.query_indexes))
                    self.backend.clear_position(c, view.name)
            total = self.catch_up(views, page_size=page_size, progress=progress)
            self.make_query_indexes(views)
        except BaseException:
            # Its views may lack their query indexes: the next projector must look.
            self.forget_ensured()
            raise
        finally:
            self.rebuilding = False
        return total

    def make_query_indexes(self, views: Sequence[View]) -> None:
        """Make the views' query indexes that are missing (the end of a rebuild), and let
        the planner know the tables as they now are."""
        b = self.backend
        # Waiting for the disk: the fold's pages, committed without waiting, are flushed
        # with it, so the VACUUM at the rebuild's end starts at once rather than after the
        # server's WAL writer (0.4 s at its default delay).
        with b.transaction(write=True) as c:
            b.lock_views(c, sorted(v.name for v in views))
            for view in views:
                for statement in view.query_ddl():
                    c.execute(b.ddl(statement))
            b.analyze(c, [t for v in views for t in v.tables])

    def follow(
        self,
        *,
        interval: float = 0.5,
        page_size: int = DEFAULT_PAGE_SIZE,
        should_stop: Callable[[], bool] = lambda: False,
        on_applied: Callable[[int], None] | None = None,
    ) -> None:
        """Keep catching up, polling the log every ``interval`` seconds, until told to stop.

        A store error (the write lock held past the lock timeout by another process's long
        append, a lost database connection) is logged and tried again, after twice as long
        with each failure in a row (at most :data:`FOLLOW_BACKOFF_LIMIT`; a failure after pages
        that committed is a first one again): a follower is a long-running worker and must
        outlive both. Nothing of a failed page was applied; ``on_applied`` hears of the pages
        before it.
        Views another version of flowledger made again (ViewsRemadeByAnotherVersion) end
        the follower, found by a page or, with nothing to fold, by each poll, as does an
        analyst's copy another version made (StoreIsACopy): trying again would never do.
        """
        failures = 0
        while not should_stop():
            before = self.committed
            try:
                # A newer version's follower may remake and fold the views between two
                # polls: an idle poll must look too, or this one never stops.
                n = self.catch_up(page_size=page_size, check_versions=True)
            except ENDS_A_FOLLOWER:
                # Another version's views, or an analyst's copy another version made (no
                # log to fold its views again from): trying again would never do.
                raise
            except StoreError as e:
                moved = self.committed - before
                if moved:
                    # Pages committed before this failure: the store is not down, so the
                    # wait starts short again (doubling it would slow a catch-up over a
                    # flaky connection towards the limit's pace).
                    failures = 0
                    if on_applied:
                        on_applied(moved)
                failures += 1
                wait = follow_wait(interval, failures)
                _log.warning("could not catch up (%s); trying again in %.1f s", e, wait)
                _sleep(wait, should_stop, interval)
                continue
            failures = 0
            if n and on_applied:
                on_applied(n)
            if not n:
                time.sleep(interval)


def _standing(view: View, existing: set[str], stored: dict[str, str]) -> bool:
    """Whether a view's tables are all there, made for this version of it (else
    :meth:`Projector.ensure_tables` makes them again, empty, at position 0)."""
    return stored.get(view.name) == str(view.version) and set(view.tables) <= existing


def _is_newer(stored: str | None, version: int) -> bool:
    """Whether a view version stored in the meta table is a number above ``version``."""
    n = _number(stored)
    return n is not None and n > version


def is_older(stored: str | None, version: int) -> bool:
    """Whether a view version stored in the meta table is a number below ``version``."""
    n = _number(stored)
    return n is not None and n < version


def _number(stored: str | None) -> int | None:
    """A stored view version as a number; None if it is missing or not one (old stores)."""
    try:
        return int(stored) if stored is not None else None
    except ValueError:
        return None


def follow_wait(interval: float, failures: int) -> float:
    """Seconds a follower polling every ``interval`` waits after ``failures`` store errors
    in a row: twice as long each time, up to :data:`FOLLOW_BACKOFF_LIMIT`."""
    # The exponent is capped first: a float overflows after a thousand doublings, which a
    # store down for a day would reach.
    return min(interval * 2 ** min(failures, 30), FOLLOW_BACKOFF_LIMIT)


def _sleep(seconds: float, should_stop: Callable[[], bool], step: float) -> None:
    """Wait ``seconds``, in steps of at most ``step``, ending early once told to stop."""
    deadline = time.monotonic() + seconds
    while not should_stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(step, left))


@contextmanager
def _timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Note in ``seconds`` how long the block took, under ``phase``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = time.perf_counter() - start


def _same_store(a: SQLBackend, b: SQLBackend) -> bool:
    """Whether two open backends are one store (one file, or one PostgreSQL schema)."""
    if a is b:
        return True
    if isinstance(a, SQLiteBackend) and isinstance(b, SQLiteBackend):
        here, there = a.reopen_url(), b.reopen_url()
        try:
            return here is not None and there is not None and os.path.samefile(here, there)
        except OSError:
            return False
    # The path names server, user and database (never a password); the schema, the store.
    keys = ("name", "path", "schema")
    return [getattr(a, k, None) for k in keys] == [getattr(b, k, None) for k in keys]


def _stageable(backend: SQLBackend) -> bool:
    """Whether a rebuild can fold a store's views into staging files: a SQLite file's."""
    return isinstance(backend, SQLiteBackend) and not isinstance(backend, StagingBackend) and backend.path != ":memory:"
