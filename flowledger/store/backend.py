"""What every store backend shares: the SQL of the log's side tables and of paging the
notification log, written once with ``?`` placeholders (a backend whose driver wants
another style translates at its cursor). Every value is a bound parameter.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any
from uuid import uuid4

import orjson

from flowledger.errors import StoreError, StoreIsACopy, StoreReadOnly

SCHEMA_VERSION = 2
"""The layout of flowledger's own tables (2: event_ids holds the ids alone)."""

# Every event writes one row here, at a place its id decides: the id alone keeps the table
# small (a resend is told from a conflict by reading the stream the body names).
_EVENT_IDS = "CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY) WITHOUT ROWID"

FLOWLEDGER_TABLES = (
    _EVENT_IDS.format("event_ids"),
    "CREATE TABLE IF NOT EXISTS stream_heads ("
    "originator_id TEXT PRIMARY KEY, version INTEGER NOT NULL, state BLOB) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS run_cancellation_keys ("
    "cancellation_key TEXT NOT NULL, run_id TEXT NOT NULL, "
    "PRIMARY KEY (cancellation_key, run_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS flowledger_meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID",
    *(
        # Matching provider webhooks to messages (see EventLog.append_provider_events).
        "CREATE TABLE IF NOT EXISTS provider_links ("
        "provider_message_id TEXT PRIMARY KEY, message_id TEXT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS unmatched_facts ("
        "event_id TEXT PRIMARY KEY, provider_message_id TEXT NOT NULL, provider TEXT, "
        "type TEXT, occurred_at TEXT, received_at TEXT, event BLOB NOT NULL) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS unmatched_by_provider_id ON unmatched_facts (provider_message_id)",
    ),
)
"""flowledger's tables beside eventsourcing's, in SQLite's dialect."""

STORE_ID_KEY = "store_id"
"""The key of flowledger_meta holding the store's id: random, written once, never copied."""
COPY_OF_KEY = "copy_of"
"""The key of flowledger_meta naming the store whose log an analyst's copy's views follow."""
# Giving a store made before ids its id never waits for the write lock (a server starting
# during an import must still start): a busy store gets it at a later writer's open.
_STORE_ID_LOCK_TIMEOUT = 0.001


def new_store_id(c: Any) -> None:
    """Write a new store's id, in the transaction that makes its tables."""
    c.execute("INSERT OR IGNORE INTO flowledger_meta VALUES (?, ?)", (STORE_ID_KEY, uuid4().hex))


def shown_url(url: str) -> str:
    """A store URL fit for a message: its password, if it has one, replaced by ``***``."""
    start = url.find("://")
    if start < 0:
        return url
    start += 3
    # user:password@host: the user ends at the first ":", the password at the last "@", in a
    # malformed URL too (should a query hold an "@", more is hidden: never a password shown).
    at, colon = url.rfind("@"), url.find(":", start)
    if at < 0 or colon < 0 or colon > at:
        return url
    return url[: colon + 1] + "***" + url[at:]


# Bound parameters per statement stay well under every driver's limit.
_IN_CHUNK = 500


def in_chunks(values: Iterable[Any]) -> Iterator[tuple[list[Any], str]]:
    """The distinct values in chunks small enough to bind, each with its ``?,?,…`` marks."""
    distinct = list(dict.fromkeys(values))
    for i in range(0, len(distinct), _IN_CHUNK):
        chunk = distinct[i : i + _IN_CHUNK]
        yield chunk, ",".join("?" * len(chunk))


def store_name(backend: Any) -> str:
    """A store as messages name it: a SQLite file's path, or a PostgreSQL URL (never with
    its password) with its schema where it is not the default one."""
    schema = getattr(backend, "schema", "public")
    return backend.path if schema == "public" else f"{backend.path}?schema={schema}"  # type: ignore[no-any-return]


def lasting_name(backend: Any) -> str:
    """A store's name that stays true from any folder (what a copy records of its source):
    a SQLite file by its absolute path, else as :func:`store_name` names it."""
    if backend.name == "sqlite" and backend.path != ":memory:":
        return os.path.abspath(backend.path)
    return store_name(backend)


class SQLBackend:
    """The SQL shared by the backends; subclasses add connections and dialect."""

    name = ""
    """The backend's name."""
    position_column = ""
    """The column of stored_events that holds the notification id."""
    tracking_table = ""
    """eventsourcing's table of each view's position."""
    _store_id: str | None = None
    _copy_of: str | None | bool = False  # False: not read yet

    def reopen_url(self) -> str | None:
        """Where another process can open this very store (a SQLite file's absolute path, a
        PostgreSQL URL with its password), or None where none can. Never for a message or a
        command line: it may hold a password."""
        return None

    def upgrade(self) -> None:
        """Bring a store made by an earlier version to this layout (once, under the write lock)."""
        with self.transaction(write=False) as c:  # type: ignore[attr-defined]
            version = self._schema_version(c)
        if version >= SCHEMA_VERSION:
            return
        try:
            self._upgrade_from(version)
        except StoreReadOnly as e:
            raise StoreReadOnly(
                f"{e}; it was written by an older flowledger (its layout version {version}, this one's "
                f"{SCHEMA_VERSION}) and must be upgraded once by a process that can write it: any "
                "flowledger command run where the store can be written (`flowledger views`, say)"
            ) from None

    def _upgrade_from(self, version: int) -> None:
        """Bring the store from layout ``version`` to this one's, under the write lock."""
        with self.transaction(write=True, append=True) as c:  # type: ignore[attr-defined]
            if self._schema_version(c) >= SCHEMA_VERSION:
                return  # another process upgraded it while we waited for the lock
            if "event_ids" in self.table_names(c):  # type: ignore[attr-defined]
                # Version 1 kept a digest and the stream beside each id.
                c.execute(self.ddl(_EVENT_IDS.format("event_ids_v2")))  # type: ignore[attr-defined]
                c.execute("INSERT INTO event_ids_v2 SELECT id FROM event_ids")
                c.execute("DROP TABLE event_ids")
                c.execute("ALTER TABLE event_ids_v2 RENAME TO event_ids")
            for statement in FLOWLEDGER_TABLES:
                c.execute(self.ddl(statement))  # type: ignore[attr-defined]
            c.execute("DELETE FROM flowledger_meta WHERE key = 'schema_version'")
            c.execute("INSERT INTO flowledger_meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def store_identity(self) -> str | None:
        """The store's id; None for a store made before stores had ids that no process
        opening it to write has given one yet (read again until one has: it never changes)."""
        if self._store_id is None:
            with self.transaction(write=False) as c:  # type: ignore[attr-defined]
                self._store_id = self._read_store_id(c)
        return self._store_id

    def copy_of(self) -> str | None:
        """The store (as messages name it) whose log this one's views were folded from by
        ``rebuild --into``, or None for a store whose views follow its own log."""
        if self._copy_of is False:
            with self.transaction(write=False) as c:  # type: ignore[attr-defined]
                c.execute("SELECT value FROM flowledger_meta WHERE key = ?", (COPY_OF_KEY,))
                row = c.fetchone()
            self._copy_of = row[0] if row else None
        return self._copy_of  # type: ignore[return-value]

    def mark_copy_of(self, source: str) -> None:
        """Mark this store as an analyst's copy of ``source``'s views (see :meth:`copy_of`)."""
        with self.transaction(write=True) as c:  # type: ignore[attr-defined]
            c.execute("DELETE FROM flowledger_meta WHERE key = ?", (COPY_OF_KEY,))
            c.execute("INSERT INTO flowledger_meta VALUES (?, ?)", (COPY_OF_KEY, source))
        self._copy_of = source

    def refuse_if_copy(self, doing: str, instead: str = "do it on that store (and make the copy again)") -> None:
        """Raise StoreError if this store is an analyst's copy: what it is ``doing`` would
        go to a log its views never read; ``instead`` says what to do, where ``{source}`` and
        ``{copy}`` stand for the two stores as a command line takes them."""
        source = self.copy_of()
        if source is not None:
            # Filled in by replace, not format: a store's name may hold braces.
            todo = instead.replace("{source}", shlex.quote(source)).replace("{copy}", shlex.quote(store_name(self)))
            raise StoreIsACopy(
                f"the store {store_name(self)} is an analyst's copy made by `rebuild --into` from {source}: "
                f"its views follow that store's log, not its own, so {doing}; {todo}"
            )

    def give_store_id(self) -> None:
        """Give a store made before stores had ids its id, if the write lock is free at once
        (a process opening the store to write; one that only reads writes nothing)."""
        if self.store_identity() is not None:
            return
        try:
            with self.transaction(write=True, lock_timeout=_STORE_ID_LOCK_TIMEOUT) as c:  # type: ignore[attr-defined]
                new_store_id(c)  # another process may have given it one meanwhile: that stands
                given = self._read_store_id(c)
        except StoreError:
            # Busy, or not writable here (a read-only file): the open goes on without it,
            # and a later writer's open gives it; the command's own writes say what is wrong.
            return
        self._store_id = given

    @staticmethod
    def _read_store_id(c: Any) -> str | None:
        c.execute("SELECT value FROM flowledger_meta WHERE key = ?", (STORE_ID_KEY,))
        row = c.fetchone()
        return row[0] if row else None

    @staticmethod
    def _schema_version(c: Any) -> int:
        c.execute("SELECT value FROM flowledger_meta WHERE key = 'schema_version'")
        row = c.fetchone()
        return int(row[0]) if row else 1

    # Reads and writes on an open transaction's cursor. Every value is a bound parameter.

    @staticmethod
    def claim_ids(c: Any, ids: Sequence[str]) -> set[str]:
        """Record the event ids not stored yet; returns those (the others were stored before).

        One statement for the whole list: the look-up and the insert share each key's seek.
        """
        c.execute(
            "INSERT OR IGNORE INTO event_ids SELECT value FROM json_each(?) RETURNING id",
            (orjson.dumps(ids).decode(),),
        )
        return {row[0] for row in c.fetchall()}

    @staticmethod
    def release_ids(c: Any, ids: Iterable[str]) -> None:
        """Forget claimed ids whose events were refused after all."""
        for chunk, marks in in_chunks(ids):
            c.execute(f"DELETE FROM event_ids WHERE id IN ({marks})", chunk)

    @staticmethod
    def stream_states(c: Any, stream: str) -> list[bytes]:
        """The stored states of one stream's events."""
        c.execute("SELECT state FROM stored_events WHERE originator_id = ?", (stream,))
        return [bytes(row[0]) for row in c.fetchall()]

    @staticmethod
    def fetch_heads(c: Any, streams: Iterable[str]) -> dict[str, tuple[int, bytes | None]]:
        """Each existing run stream's (version, rule state)."""
        found: dict[str, tuple[int, bytes | None]] = {}
        for chunk, marks in in_chunks(streams):
            c.execute(f"SELECT originator_id, version, state FROM stream_heads WHERE originator_id IN ({marks})", chunk)
            found.update((row[0], (row[1], row[2])) for row in c.fetchall())
        return found

    @staticmethod
    def insert(
        c: Any,
        events: Sequence[tuple[str, int | None, str, str, bytes]],
        heads: Sequence[tuple[str, int, bytes | None]],
        keys: Sequence[tuple[str, str]],
    ) -> None:
        """Write events, the runs' new heads and cancellation keys (ids are claimed first).

        An event is (stream, version, stream, type, state); a version of None is the
        stream's next, read from the log's (stream, version) key as the row goes in.
        """
        c.executemany(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "VALUES (?, COALESCE(?, (SELECT COALESCE(MAX(originator_version), 0) + 1 "
            "FROM stored_events WHERE originator_id = ?)), ?, ?)",
            events,
        )
        # A webhook batch (messages only) has no heads or keys: skip the empty statements.
        if heads:
            c.executemany(
                "INSERT INTO stream_heads VALUES (?,?,?) ON CONFLICT (originator_id) "
                "DO UPDATE SET version=excluded.version, state=excluded.state",
                heads,
            )
        if keys:
            c.executemany("INSERT OR IGNORE INTO run_cancellation_keys VALUES (?,?)", keys)

    @staticmethod
    def fetch_links(c: Any, provider_ids: Sequence[str]) -> dict[str, str]:
        """The messages that provider message ids are known to be."""
        found: dict[str, str] = {}
        for chunk, marks in in_chunks(provider_ids):
            c.execute(
                f"SELECT provider_message_id, message_id FROM provider_links WHERE provider_message_id IN ({marks})",
                chunk,
            )
            found.update((row[0], row[1]) for row in c.fetchall())
        return found

    @staticmethod
    def link(c: Any, links: Sequence[tuple[str, str]]) -> None:
        """Record which message each provider message id is (the first word stands)."""
        c.executemany("INSERT OR IGNORE INTO provider_links VALUES (?, ?)", links)

    @staticmethod
    def hold(c: Any, rows: Sequence[tuple[str, str, str | None, str, str, str, bytes]]) -> int:
        """Keep provider facts no message is known for yet; returns how many were new."""
        new = 0
        for row in rows:
            c.execute("SELECT 1 FROM unmatched_facts WHERE event_id = ?", (row[0],))
            if c.fetchone() is None:
                c.execute("INSERT INTO unmatched_facts VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                new += 1
        return new

    @staticmethod
    def stored_ids(c: Any, ids: Iterable[str]) -> set[str]:
        """Those of these event ids that are stored."""
        return _ids_in(c, "event_ids", "id", ids)

    @staticmethod
    def held_ids(c: Any, ids: Iterable[str]) -> set[str]:
        """Those of these event ids whose facts are held, waiting for their message."""
        return _ids_in(c, "unmatched_facts", "event_id", ids)

    @staticmethod
    def any_held(c: Any) -> bool:
        """Whether any provider fact is waiting for its message."""
        c.execute("SELECT 1 FROM unmatched_facts LIMIT 1")
        return c.fetchone() is not None

    @staticmethod
    def release(c: Any, provider_ids: Sequence[str]) -> list[tuple[str, bytes]]:
        """Take the held facts of these provider message ids out: (provider id, event)."""
        taken: list[tuple[str, bytes]] = []
        for chunk, marks in in_chunks(provider_ids):
            c.execute(f"SELECT provider_message_id, event FROM unmatched_facts WHERE provider_message_id IN ({marks})", chunk)
            taken += [(row[0], bytes(row[1])) for row in c.fetchall()]
            c.execute(f"DELETE FROM unmatched_facts WHERE provider_message_id IN ({marks})", chunk)
        return taken

    @staticmethod
    def unmatched(c: Any, limit: int) -> list[tuple[str, str, str | None, str, str, str]]:
        """The held facts, oldest first: (event id, provider id, provider, type, occurred, received)."""
        c.execute(
            "SELECT event_id, provider_message_id, provider, type, occurred_at, received_at "
            "FROM unmatched_facts ORDER BY received_at, event_id LIMIT ?",
            (limit,),
        )
        return [tuple(row) for row in c.fetchall()]

    @staticmethod
    def held_page(c: Any, after: str, limit: int) -> list[tuple[str, bytes]]:
        """The next held facts after an event id, in id order: (event id, event as held)."""
        c.execute("SELECT event_id, event FROM unmatched_facts WHERE event_id > ? ORDER BY event_id LIMIT ?", (after, limit))
        return [(row[0], bytes(row[1])) for row in c.fetchall()]

    @staticmethod
    def runs_with_key(c: Any, key: str) -> list[str]:
        """The runs triggered with a cancellation key."""
        c.execute(
            "SELECT run_id FROM run_cancellation_keys WHERE cancellation_key=? ORDER BY run_id",
            (key,),
        )
        return [row[0] for row in c.fetchall()]

    @staticmethod
    def triggers(c: Any, run_ids: Iterable[str]) -> dict[str, bytes]:
        """Each run's trigger as stored (its stream's first event: a run begins with it)."""
        found: dict[str, bytes] = {}
        for chunk, marks in in_chunks("run:" + r for r in run_ids):
            c.execute(
                f"SELECT originator_id, state FROM stored_events WHERE originator_id IN ({marks}) AND originator_version = 1",
                chunk,
            )
            found.update((row[0][len("run:") :], bytes(row[1])) for row in c.fetchall())
        return found

    def select_streams(self, c: Any, streams: Iterable[str], upto: int) -> list[tuple[str, int, bytes]]:
        """The events of several streams up to a log position, as (stream, position,
        state), each stream's in log order (through the log's own (stream, version) key)."""
        col = self.position_column
        found: list[tuple[str, int, bytes]] = []
        for chunk, marks in in_chunks(streams):
            c.execute(
                f"SELECT originator_id, {col}, state FROM stored_events "
                f"WHERE originator_id IN ({marks}) AND {col} <= ? ORDER BY originator_id, originator_version",
                (*chunk, upto),
            )
            found += [(stream, position, bytes(state)) for stream, position, state in c.fetchall()]
        return found

    def stream_events(self, c: Any, stream: str) -> list[tuple[int, int, str, bytes]]:
        """A stream's events as (position, version, type, state), in version order."""
        c.execute(
            f"SELECT {self.position_column}, originator_version, topic, state FROM stored_events "
            "WHERE originator_id=? ORDER BY originator_version",
            (stream,),
        )
        return [(p, v, t, bytes(s)) for p, v, t, s in c.fetchall()]

    def max_position(self, c: Any) -> int:
        """The position of the last stored event (0 for an empty log)."""
        c.execute(f"SELECT MAX({self.position_column}) FROM stored_events")
        return c.fetchone()[0] or 0

    # What projectors need: pages of the notification log, and each view's position.

    def select_page(
        self, c: Any, after: int, limit: int, topics: Collection[str] | None = None
    ) -> tuple[list[tuple[int, bytes]], int, int]:
        """The next page of the log: the (up to) ``limit`` events after a position.

        Returns ``(rows, last, n)``: the page's events as (position, state), only those of
        ``topics`` if given (the others are never read out of the database); the position
        of the page's last event (``after`` if the page is empty); and how many events the
        page holds, of every type. Neither stream nor type: no view reads the stream, the
        state holds the type, and making either into Python strings costs a tenth of
        reading a page or more (for the types alone about a quarter of it, measured).
        """
        col = self.position_column
        if topics is None:
            c.execute(
                f"SELECT {col}, state FROM stored_events WHERE {col} > ? ORDER BY {col} LIMIT ?",
                (after, limit),
            )
            rows = c.fetchall()
            return rows, (rows[-1][0] if rows else after), len(rows)
        # Where the page ends is found on the positions alone; then only its wanted rows.
        c.execute(
            f"SELECT COUNT(*), MAX(p) FROM (SELECT {col} AS p FROM stored_events "
            f"WHERE {col} > ? ORDER BY {col} LIMIT ?) AS page",
            (after, limit),
        )
        n, last = c.fetchone()
        if not n:
            return [], after, 0
        wanted = sorted(topics)
        c.execute(
            f"SELECT {col}, state FROM stored_events WHERE {col} > ? AND {col} <= ? "
            f"AND topic IN ({','.join('?' * len(wanted))}) ORDER BY {col}",
            (after, last, *wanted),
        )
        return c.fetchall(), last, n

    def checkpoint(self) -> None:
        """Copy what a write-ahead log holds into the database's own files now, where the
        database leaves that to its writers' commits (SQLite; PostgreSQL has its own)."""

    def analyze(self, c: Any, tables: Sequence[str]) -> None:
        """Refresh what the query planner knows of tables a rebuild or an upgrade has just
        filled (where it keeps such statistics and needs them to pick an index)."""

    def vacuum(self, tables: Sequence[str]) -> None:
        """Mark the rows of tables a rebuild or an upgrade has just filled visible to every
        transaction, where the database keeps such a mark and reads an index alone only
        with it (each row is read in the table otherwise); outside any transaction."""

    def get_position(self, c: Any, name: str) -> int:
        """The last log position a view has applied (0: none)."""
        c.execute(f"SELECT notification_id FROM {self.tracking_table} WHERE application_name=?", (name,))
        row = c.fetchone()
        return row[0] if row else 0

    def clear_position(self, c: Any, name: str) -> None:
        """Forget a view's position (before it is folded again from 0)."""
        c.execute(f"DELETE FROM {self.tracking_table} WHERE application_name=?", (name,))

    @staticmethod
    def set_view_version(c: Any, name: str, version: int) -> None:
        """Record the version of a view its tables were made for."""
        c.execute("DELETE FROM flowledger_meta WHERE key = ?", ("view:" + name,))
        c.execute("INSERT INTO flowledger_meta VALUES (?, ?)", ("view:" + name, str(version)))

    @staticmethod
    def count_events(c: Any) -> int:
        """How many events the log holds."""
        c.execute("SELECT COUNT(*) FROM stored_events")
        return c.fetchone()[0]


def _ids_in(c: Any, table: str, column: str, ids: Iterable[str]) -> set[str]:
    """Those of ``ids`` found in ``table``'s ``column`` (both named by this module, never input)."""
    found: set[str] = set()
    for chunk, marks in in_chunks(ids):
        c.execute(f'SELECT "{column}" FROM "{table}" WHERE "{column}" IN ({marks})', chunk)
        found.update(row[0] for row in c.fetchall())
    return found
