"""What every view is: tables it owns, the event types it reads, and how a page of events
changes its rows.

A view's rows and its tracking position are written in one transaction by the
:mod:`flowledger.projections.projector`, so a view never applies an event twice or
skips one. Each view keeps whatever lookup rows it needs itself (which workflow a run
belongs to, which run a message belongs to), so it can be rebuilt alone.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flowledger.store.backend import in_chunks


@dataclass(frozen=True, slots=True)
class Notification:
    """One event of the log, as a view sees it."""

    position: int
    """Its place in the whole log."""
    stream: str
    """Its stream: run:<id> or message:<id>."""
    type: str
    """The event type."""
    body: dict[str, Any]
    """The stored event."""


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

    def apply(self, c: sqlite3.Cursor, events: Sequence[Notification]) -> None:
        """Fold a page of events (in log order, only of :attr:`topics`) into the tables."""
        raise NotImplementedError


class Counters:
    """Deltas to counter rows, summed in memory and written once per page."""

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
            c.execute(f'DELETE FROM "{self.table}" WHERE n = 0')
        self.deltas.clear()


def fetch_rows(
    c: sqlite3.Cursor, table: str, key: str, values: Iterable[Any], columns: str = "*"
) -> dict[Any, sqlite3.Row | tuple[Any, ...]]:
    """Rows of a table by a key column, for the keys given (bound in chunks)."""
    found: dict[Any, Any] = {}
    for chunk, marks in in_chunks(values):
        c.execute(f'SELECT {columns} FROM "{table}" WHERE "{key}" IN ({marks})', chunk)
        names = [d[0] for d in c.description]
        index = names.index(key)
        for row in c.fetchall():
            found[row[index]] = dict(zip(names, row))
    return found


def upsert(c: sqlite3.Cursor, table: str, rows: Sequence[dict[str, Any]], key: Sequence[str]) -> None:
    """Insert rows, replacing any with the same key (all rows share the same columns)."""
    if not rows:
        return
    cols = list(rows[0])
    names = ", ".join(f'"{k}"' for k in cols)
    marks = ", ".join("?" for _ in cols)
    keys = ", ".join(f'"{k}"' for k in key)
    updates = ", ".join(f'"{k}" = excluded."{k}"' for k in cols if k not in key)
    c.executemany(
        f'INSERT INTO "{table}" ({names}) VALUES ({marks}) ON CONFLICT ({keys}) DO UPDATE SET {updates}',
        [tuple(r[k] for k in cols) for r in rows],
    )
