"""The ids of a SQLite log's newest events, kept in memory and written to ``event_ids`` in
sorted batches, so that a small append does not write a page of that index per event.

``event_ids`` holds the id of every event up to a position of the log (the watermark, in
``flowledger_meta``); the ids of the events after it are read from the log itself and kept
here. Together they are every id stored, which is what an append checks a new id against.
Once the events after the watermark reach :data:`FLUSH_ROWS`, the append that takes them
there writes their ids into ``event_ids`` in one sorted insert and moves the watermark, in
its own transaction.

Why: ids are random, so each one written lands on a page of ``event_ids`` of its own. A
webhook batch of fifty events, committed on its own, then writes fifty more pages and
waits for them to reach the disk. Written twenty thousand at a time, in order, they share
pages, and the batches between pay only for their events.

Nothing here needs to survive a crash: the ids after the watermark are in the log, in the
same transactions as their events, and a process reads those it has not seen (its own
start, another process's appends, a flush by another process) at the start of each
append's transaction, under the write lock. A transaction that rolls back takes back what
it added here; one that flushed makes the next start again from the store.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence

import orjson

FLUSH_ROWS = 20_000
"""Events after the watermark at which their ids are written to ``event_ids``."""

WATERMARK_KEY = "ids_indexed_upto"
"""The ``flowledger_meta`` key of the last position whose id ``event_ids`` holds."""


class RecentIds:
    """One process's copy of the ids after a SQLite store's watermark.

    Used only inside the log's own write transactions (``BEGIN IMMEDIATE``), which
    :meth:`begin` and :meth:`end` bracket: one at a time in a process (a lock), and one at
    a time across processes (SQLite's write lock).
    """

    def __init__(self, flush_rows: int | None = None) -> None:
        self.flush_rows = flush_rows or FLUSH_ROWS
        """Events after the watermark at which their ids are flushed."""
        self.lock = threading.Lock()
        """Held from :meth:`begin` to :meth:`end`: one append transaction of the process at a time."""
        self._ids: set[str] = set()
        self._base = -1  # the watermark the ids are after (-1: nothing read yet)
        self._upto = 0  # the last position whose event's id is in _ids (or below the watermark)
        self._synced = False  # read the store's tail in this transaction already
        self._added: list[str] = []  # ids this transaction put in _ids
        self._upto_before = 0
        self._flushed = False  # this transaction moved the watermark
        self._active = False  # between begin and end

    def begin(self) -> None:
        """A log write transaction starts (its lock is already held)."""
        self._synced = False
        self._added = []
        self._upto_before = self._upto
        self._flushed = False
        self._active = True

    def end(self, committed: bool) -> None:
        """The transaction ended; what it added stays only if it committed."""
        if not committed:
            if self._flushed:
                self._base = -1  # the flush was undone with the rest: read the store again
            else:
                self._ids.difference_update(self._added)
                self._upto = self._upto_before
        self._added = []
        self._active = False

    def claim(self, c: sqlite3.Cursor, ids: Sequence[str]) -> set[str]:
        """The ids not stored yet, now counted as stored (see :meth:`release`)."""
        if not self._active:
            raise RuntimeError("ids are claimed only in a transaction begun with append=True")
        self._sync(c)
        recent = self._ids
        rest = [i for i in ids if i not in recent]
        if rest:
            c.execute(
                # A seek per id given (an IN over the list builds a table of it first).
                "SELECT e.id FROM json_each(?) AS j CROSS JOIN event_ids AS e ON e.id = j.value",
                (orjson.dumps(rest).decode(),),
            )
            rest_set = set(rest)
            rest_set.difference_update(row[0] for row in c.fetchall())
        else:
            rest_set = set()
        recent.update(rest_set)
        self._added.extend(rest_set)
        return rest_set

    def release(self, ids: Iterable[str]) -> None:
        """Forget claimed ids whose events were refused after all (none was stored)."""
        self._ids.difference_update(ids)

    def inserted(self, c: sqlite3.Cursor) -> None:
        """The claimed ids' events are in the log: flush if there are enough of them."""
        c.execute("SELECT MAX(rowid) FROM stored_events")
        self._upto = c.fetchone()[0] or 0
        if len(self._ids) >= self.flush_rows:
            self.flush(c)

    def flush(self, c: sqlite3.Cursor) -> None:
        """Write the ids after the watermark into ``event_ids`` and move it to the log's end."""
        self._sync(c)
        # In key order: each page of the index is then written once for all its new ids.
        c.execute(
            "INSERT OR IGNORE INTO event_ids SELECT value FROM json_each(?)",
            (orjson.dumps(sorted(self._ids)).decode(),),
        )
        set_watermark(c, self._upto)
        self._ids = set()
        self._added = []
        self._base = self._upto
        self._flushed = True

    def _sync(self, c: sqlite3.Cursor) -> None:
        """Catch up with the store: its watermark, and the events after what was read."""
        if self._synced:
            return
        watermark = get_watermark(c)
        if watermark != self._base:
            # Moved by another process's flush (or never read): what is held is either in
            # event_ids now or after the new watermark, so read again from there.
            self._ids = set()
            self._base = self._upto = self._upto_before = watermark
        c.execute(
            "SELECT rowid, json_extract(CAST(state AS TEXT), '$.id') FROM stored_events "
            "WHERE rowid > ? ORDER BY rowid",
            (self._upto,),
        )
        rows = c.fetchall()
        if rows:
            self._ids.update(row[1] for row in rows)
            self._upto = rows[-1][0]
        self._synced = True


def get_watermark(c: sqlite3.Cursor) -> int:
    """The last position whose event's id ``event_ids`` holds."""
    c.execute("SELECT value FROM flowledger_meta WHERE key = ?", (WATERMARK_KEY,))
    row = c.fetchone()
    return int(row[0]) if row else 0


def set_watermark(c: sqlite3.Cursor, position: int) -> None:
    """Record that ``event_ids`` holds the id of every event up to ``position``."""
    c.execute("DELETE FROM flowledger_meta WHERE key = ?", (WATERMARK_KEY,))
    c.execute("INSERT INTO flowledger_meta VALUES (?, ?)", (WATERMARK_KEY, str(position)))
