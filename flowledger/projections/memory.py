"""What a view remembers of its own rows between the pages of one catch-up.

Folding a page needs the rows its events touch. Read back from the tables, a run or a
message that the previous page wrote costs a query and a rebuild of Python objects from
columns; kept in memory, it costs a dictionary lookup. A :class:`Memory` holds what the
view has *committed*, plus the page being folded until it commits: the projector checks,
inside each page's transaction, that the view's position is the one the memory was left
at (no other projector has moved the view since), and forgets everything when a page
does not commit.

It is bounded: past :data:`DEFAULT_LIMIT` entries a table forgets the rows least recently
written, which stay readable from the database. A memory that started with the view
empty knows every row the view has: those it holds, and those it forgot, whose keys it
notes in a Bloom filter (a few bits each), so that a key it never saw costs no query.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Any

DEFAULT_LIMIT = 20_000
"""Entries each remembered table keeps (least recently written forgotten first)."""
FORGOTTEN_BITS = 1 << 25
"""The size of each table's filter of forgotten keys (4 MiB; about 1% false positives at
two million keys, each of which costs one query that finds nothing)."""


class Memory:
    """The rows one view last committed, by table and key (bounded)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit if limit is not None else DEFAULT_LIMIT
        """Entries a table keeps."""
        self.position: int | None = None
        """The view position the remembered rows are as of (None: nothing is known)."""
        self.complete = False
        """Every row of the view is remembered or noted as forgotten (see :meth:`may_be_stored`)."""
        self._tables: dict[str, dict[Any, Any]] = {}
        self._forgotten: dict[str, bytearray] = {}

    def table(self, name: str) -> dict[Any, Any]:
        """The remembered entries of one table (a view decides what an entry holds)."""
        found = self._tables.get(name)
        if found is None:
            found = self._tables[name] = {}
        return found

    def check(self, position: int) -> None:
        """Forget everything unless the view is still where this memory left it.

        A view at position 0 has no rows at all (its rows and its position only ever
        commit together), so a memory that starts there knows every row there is.
        """
        if position != self.position:
            self._forget_rows()
            self.position = position
            self.complete = position == 0

    def may_be_stored(self, table: str, key: Any) -> bool:
        """Whether a key this memory does not hold may have a row all the same (to read)."""
        if not self.complete:
            return True
        bits = self._forgotten.get(table)
        if bits is None:
            return False
        h = hash(key)
        i, j = h & _MASK, (h >> 32) & _MASK
        return bool(bits[i >> 3] & (1 << (i & 7)) and bits[j >> 3] & (1 << (j & 7)))

    def find(self, c: Any, name: str, key: Any, recall: Callable[[Any, dict[Any, Any], tuple[Any]], None]) -> Any:
        """The entry of key in table ``name`` (None: the view has no row for it).

        A key this memory forgot is read back with ``recall(c, table, (key,))``; one it
        cannot have forgotten (a memory that started with the view empty) costs no query.
        """
        table = self.table(name)
        entry = table.get(key)
        if entry is None and self.complete and self.may_be_stored(name, key):
            recall(c, table, (key,))
            entry = table.get(key)
        return entry

    def committed(self, position: int) -> None:
        """The page's transaction committed: the entries are now the view's rows."""
        self.position = position
        for name, entries in self._tables.items():
            excess = len(entries) - self.limit
            if excess > 0:
                bits = self._forgotten.get(name)
                if bits is None:
                    bits = self._forgotten[name] = bytearray(FORGOTTEN_BITS >> 3)
                for key in list(islice(entries, excess)):
                    del entries[key]
                    h = hash(key)
                    i, j = h & _MASK, (h >> 32) & _MASK
                    bits[i >> 3] |= 1 << (i & 7)
                    bits[j >> 3] |= 1 << (j & 7)

    def forget(self) -> None:
        """Forget everything (a transaction failed: what was folded never committed)."""
        self._forget_rows()
        self.position = None
        self.complete = False

    def _forget_rows(self) -> None:
        """Drop every entry and every note of a forgotten key."""
        for entries in self._tables.values():
            entries.clear()
        self._forgotten.clear()


_MASK = FORGOTTEN_BITS - 1


def touch(entries: dict[Any, Any], key: Any, value: Any) -> None:
    """Remember an entry as the most recently written (the last to be forgotten)."""
    entries.pop(key, None)
    entries[key] = value
