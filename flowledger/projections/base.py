"""What every view is: tables it owns, the event types it reads, and how a page of events
changes its rows.

A view's rows and its tracking position are written in one transaction by the
:mod:`flowledger.projections.projector`, so a view never applies an event twice or
skips one. Each view keeps whatever lookup rows it needs itself (which workflow a run
belongs to, which run a message belongs to), so it can be rebuilt alone.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from flowledger.projections.memory import Memory


Event = tuple[int, str, dict[str, Any]]
"""One event of the log, as a view sees it: (log position, event type, stored event)."""


class LogReader:
    """The log a view folds, for a view that refolds a key from all its events: a stream
    read through the log's own (stream, version) key, never a scan."""

    def __init__(self, backend: Any, cursor: Any = None) -> None:
        self.backend = backend
        """The store holding the log."""
        self.cursor = cursor
        """A cursor of the page's own transaction on that store (None: the log is another
        store's, read in a transaction of its own: it only grows)."""

    def streams(self, names: Sequence[str], upto: int) -> dict[str, list[tuple[int, dict[str, Any]]]]:
        """The events of these streams up to log position ``upto``: (position, event),
        each stream's in log order; a stream with none is left out."""
        if self.cursor is not None:
            rows = self.backend.select_streams(self.cursor, names, upto)
        else:
            with self.backend.transaction(write=False) as c:
                rows = self.backend.select_streams(c, names, upto)
        found: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        loads = orjson.loads
        for stream, position, state in rows:
            found.setdefault(stream, []).append((position, loads(state)))
        return found


class View:
    """A read model: a fold of the log into tables."""

    name: str = ""
    """The view's name (its tracking row, and what `rebuild` takes)."""
    version: int = 1
    """Bumped whenever its tables change: a store with another version refolds the view."""
    topics: frozenset[str] = frozenset()
    """The event types it reads; the others only move its position on."""
    tables: tuple[str, ...] = ()
    """The tables it owns, emptied by a rebuild."""
    ddl: tuple[str, ...] = ()
    """CREATE statements for its tables and indexes."""
    retired_tables: tuple[str, ...] = ()
    """Tables an earlier version of it had: dropped when a store's view is made again."""
    query_indexes: frozenset[str] = frozenset()
    """Indexes that only queries read, never the fold: a rebuild makes them after folding,
    one sort each, rather than entry by entry in random order as rows come."""
    upgrades: dict[int, tuple[str, ...]] = {}
    """Statements that make an earlier version's tables (the key) this version's in place,
    from their own rows, where the view would otherwise be folded again from the log."""

    def upgrade_from(self, stored: str | None, existing: set[str]) -> tuple[str, ...] | None:
        """The statements that upgrade the view's tables in place from the version ``stored``
        (the store's tables: ``existing``), or None if they must be made again and folded."""
        statements = self.upgrades.get(int(stored)) if stored is not None and stored.isdigit() else None
        if statements is None:
            return None
        made = [m.group(1) for m in map(_CREATED_TABLE.match, statements) if m]
        # The earlier version's tables must all be there to upgrade from.
        if not set(self.tables) - set(made) <= existing:
            return None
        # A table the upgrade makes may be there already, as this version left it before an
        # older one's rebuild made the others again (going back to it): its rows are stale.
        return (*(f'DROP TABLE IF EXISTS "{table}"' for table in made), *statements)

    def fold_ddl(self) -> list[str]:
        """The CREATE statements a fold needs: all but those of :attr:`query_indexes`."""
        return [d for d in self.ddl if _index_name(d) not in self.query_indexes]

    def query_ddl(self) -> list[str]:
        """The CREATE statements of :attr:`query_indexes`."""
        return [d for d in self.ddl if _index_name(d) in self.query_indexes]

    def index_names(self) -> set[str]:
        """The names of all its indexes."""
        return {name for name in map(_index_name, self.ddl) if name is not None}

    def retired_index_names(self) -> set[str]:
        """The names of the indexes an earlier version of it had, which its DDL drops."""
        return {m.group(1) for m in map(_DROPPED_INDEX.match, self.ddl) if m}

    def fold(self, c: sqlite3.Cursor, events: Sequence[Event], memory: Memory, log: LogReader) -> Writes:
        """Fold a page of events (in log order, only of :attr:`topics`): what to write.

        ``memory`` holds what the view committed in earlier pages of the same catch-up;
        the view reads from the tables (through ``c``) only what it does not find there,
        and leaves in it the rows it is about to write; ``log`` reads streams of the log
        the page came from. Nothing is written here.
        """
        raise NotImplementedError


_CREATED_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")


class Writes:
    """What one page does to a view's tables, gathered while folding, done in one go."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, list[Any]] | Counters] = []

    def add(self, statement: str, rows: list[Any], key: Callable[[Any], Any] | None = None) -> None:
        """Run ``statement`` once per row (nothing if there are no rows).

        With ``key`` (the row's conflict key), the rows are written in key order: ids are
        random, and rows in order share the index pages they land on where rows in fold
        order would each land on a page at random. The sort is stable, so two rows with
        one key keep their order (the last one written stands).
        """
        if key is not None:
            rows.sort(key=key)
        if rows:
            self._steps.append((statement, rows))

    def count(self, counters: Counters) -> None:
        """Write the summed deltas of ``counters``."""
        self._steps.append(counters)

    def run(self, c: sqlite3.Cursor) -> None:
        """Do every write, in the order they were added."""
        for step in self._steps:
            if isinstance(step, Counters):
                step.flush(c)
            else:
                c.executemany(*step)


class Counters:
    """Deltas to counter rows, summed in memory and written once per page.

    A row that reaches zero is deleted, found by the keys that went down in the page, not
    by a scan of the table: a workspace of many workflows has counter tables of hundreds of
    thousands of rows, and a live catch-up writes a page for every small batch."""

    def __init__(self, table: str, keys: Sequence[str]) -> None:
        self.table = table
        self.keys = tuple(keys)
        self.deltas: defaultdict[tuple[Any, ...], float] = defaultdict(float)

    def add(self, key: tuple[Any, ...], delta: float) -> None:
        """Count ``delta`` more (or fewer) under key."""
        if delta:
            self.deltas[key] += delta

    def flush(self, c: sqlite3.Cursor) -> None:
        """Write the summed deltas and forget them."""
        rows = [(*k, d) for k, d in self.deltas.items() if d]
        if rows:
            cols = ", ".join(f'"{k}"' for k in self.keys)
            marks = ", ".join("?" for _ in self.keys)
            c.executemany(
                f'INSERT INTO "{self.table}" ({cols}, n) VALUES ({marks}, ?) '
                f'ON CONFLICT ({cols}) DO UPDATE SET n = "{self.table}".n + excluded.n',
                rows,
            )
            # Only a row that went down can have reached zero: no row is left at zero.
            down = [k for k, d in self.deltas.items() if d < 0]
            if down:
                if isinstance(c, sqlite3.Cursor):
                    # A seek of the key each (SQLite scans the table for a list of row values).
                    where = " AND ".join(f'"{k}" = ?' for k in self.keys)
                    c.executemany(f'DELETE FROM "{self.table}" WHERE {where} AND n = 0', down)
                else:
                    # One statement a chunk (PostgreSQL seeks each row value of the list):
                    # a statement a key would be a round trip to the server each.
                    row = "(" + ", ".join("?" for _ in self.keys) + ")"
                    for start in range(0, len(down), _DELETE_CHUNK):
                        chunk = down[start : start + _DELETE_CHUNK]
                        c.execute(
                            f'DELETE FROM "{self.table}" WHERE n = 0 AND ({cols}) IN (VALUES {", ".join([row] * len(chunk))})',
                            [value for key in chunk for value in key],
                        )
        self.deltas.clear()


# Keys a statement deletes by on PostgreSQL: well under its 65,535 parameters.
_DELETE_CHUNK = 1000


def upsert_sql(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """An INSERT of ``columns`` (in that order) that replaces the row with the same key."""
    names = ", ".join(f'"{k}"' for k in columns)
    marks = ", ".join("?" for _ in columns)
    keys = ", ".join(f'"{k}"' for k in key)
    updates = ", ".join(f'"{k}" = excluded."{k}"' for k in columns if k not in key)
    return f'INSERT INTO "{table}" ({names}) VALUES ({marks}) ON CONFLICT ({keys}) DO UPDATE SET {updates}'


_INDEX_NAME = re.compile(r"CREATE (?:UNIQUE )?INDEX IF NOT EXISTS (\w+)")
_DROPPED_INDEX = re.compile(r"DROP INDEX IF EXISTS (\w+)")


def _index_name(statement: str) -> str | None:
    """The index a CREATE INDEX statement makes (None for any other statement)."""
    found = _INDEX_NAME.match(statement)
    return found.group(1) if found else None
