"""The webhook inbox: provider facts acknowledged while the log's write lock was held.

A webhook's prepared facts (validated, redacted, measured) are put here, with the time they
were received, when the log's append finds its write lock busy; they are appended to the log
later, oldest first (see :func:`flowledger.ledger.drain_inbox`). The inbox never waits for
the log's lock: for SQLite it is a file of its own beside the store (``STORE.inbox``), for
PostgreSQL a table in the store's schema written in short transactions of its own, which do
not take the events table's lock that appends hold.

Appending a batch and deleting it are two transactions (two databases on SQLite): a crash
between them appends the batch again on the next drain, which is harmless, since a provider
fact already stored or held is a duplicate by its provider id.

A webhook's facts that can never be appended (unreadable, invalid under this version's
vocabulary, refused by the log) are set aside, as they were kept, in a table of dead letters
beside the inbox's: left at the head of the inbox, they would defer every later webhook.

How many facts wait is kept in a table of its own (``webhook_inbox_count``), moved by
triggers on the inbox's table in the transaction that puts or removes its rows, whoever runs
it (an earlier flowledger, a hand's ``DELETE``): counting them (every ``/healthz``) reads a
row or a few, never every waiting webhook's. An inbox made before it is counted by its rows
until its first write gives it the table; so is one a piece of whose count (its table or
row, the triggers, the inbox's table under them) was removed by hand: the first write of a
process, or the next after a failed statement, checks every piece, makes a missing one and
makes the count again from the rows, in its own transaction, writers held off meanwhile.

The inbox also remembers, for a few minutes, the one-time tokens of verified webhooks whose
signature does not cover their body (Mailgun's) with their body's digest (see
:meth:`Inbox.first_body`): a token can then vouch for one body only, whichever of a store's
servers it is sent to and across their restarts. Remembering one never waits for the log's
lock either.

A SQLite store's inbox, a file of its own, outlives its store if only the store is deleted:
it records the id of the store it keeps facts for (see :meth:`Inbox.claim`), and the facts
kept for another store are set aside, never appended to a new store made at the same path.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from flowledger.errors import StoreBusy, StoreError, StoreUnavailable
from flowledger.store.backend import SQLBackend
from flowledger.store.log import utc_now
from flowledger.store.sqlite import sqlite_busy, switch_to_wal

_log = logging.getLogger(__name__)

INBOX_SUFFIX = ".inbox"
"""What a SQLite store's inbox file adds to the store's name."""
INBOX_LOCK_TIMEOUT = 5.0
"""Seconds an inbox write waits for another's (they are a few rows long, never an import's)."""
TOKENS_RETRY = 60.0
"""Seconds tokens are left to the process's memory after the inbox could not remember one."""

_TABLE = "webhook_inbox"
_DEAD = "webhook_dead_letters"
_META = "webhook_inbox_meta"
_COUNT = "webhook_inbox_count"
_TOKENS = "webhook_tokens"
_SQLITE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "received_at TEXT NOT NULL, n INTEGER NOT NULL, items BLOB NOT NULL)"
)
_POSTGRES_DDL = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "received_at TEXT NOT NULL, n BIGINT NOT NULL, items BYTEA NOT NULL)"
)
# Made at the first row set aside; its seq is the row's own in the inbox.
_SQLITE_DEAD_DDL = (
    f"CREATE TABLE IF NOT EXISTS {_DEAD} (seq INTEGER PRIMARY KEY, received_at TEXT NOT NULL, "
    "n INTEGER NOT NULL, items BLOB NOT NULL, reason TEXT NOT NULL, set_aside_at TEXT NOT NULL)"
)
_POSTGRES_DEAD_DDL = (
    f"CREATE TABLE IF NOT EXISTS {_DEAD} (seq BIGINT PRIMARY KEY, received_at TEXT NOT NULL, "
    "n BIGINT NOT NULL, items BYTEA NOT NULL, reason TEXT NOT NULL, set_aside_at TEXT NOT NULL)"
)
_SET_ASIDE = (
    f"INSERT INTO {_DEAD} (seq, received_at, n, items, reason, set_aside_at) "
    f"SELECT seq, received_at, n, items, ?, ? FROM {_TABLE} WHERE seq = ?"
)
# Made at the inbox's first write: the facts its rows hold, kept by triggers; one row on SQLite
# (one writer at a time), a few on PostgreSQL, where concurrent puts would queue on a single row.
_SQLITE_TRIGGERS = {
    f"{_COUNT}_put": f"AFTER INSERT ON {_TABLE} BEGIN UPDATE {_COUNT} SET n = n + NEW.n; END",
    f"{_COUNT}_gone": f"AFTER DELETE ON {_TABLE} BEGIN UPDATE {_COUNT} SET n = n - OLD.n; END",
    f"{_COUNT}_changed": f"AFTER UPDATE OF n ON {_TABLE} BEGIN UPDATE {_COUNT} SET n = n - OLD.n + NEW.n; END",
}
# Made, or mended, in the write transaction that finds a piece wanting (its writer the only
# one): the count is made again from the rows, which the triggers then follow.
_SQLITE_COUNT_DDL = (
    f"CREATE TABLE IF NOT EXISTS {_COUNT} (shard INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
    *(f"CREATE TRIGGER IF NOT EXISTS {name} {body}" for name, body in _SQLITE_TRIGGERS.items()),
    f"DELETE FROM {_COUNT}",
    f"INSERT INTO {_COUNT} SELECT 0, COALESCE(SUM(n), 0) FROM {_TABLE}",
)
# Whether every piece the count depends on is there: its table and the inbox's triggers (a
# hand's DROP TABLE of the inbox's drops its triggers and leaves the count's).
_SQLITE_COUNT_PIECES = (
    "SELECT (SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?) + "
    "(SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND name IN (?, ?, ?))"
)
_COUNT_SHARDS = 16
"""Rows of a PostgreSQL inbox's count: each session moves the one its server process's id picks."""
_COUNT_BASE = -1
"""The PostgreSQL count's row made from the rows' sum, which no session moves: without it the
count was emptied by hand (the trigger makes its shards again at the next write, from nothing)."""
# Made at the first token remembered (on PostgreSQL with the store); a token's row is deleted
# by the first write of another past its time (its timestamp stale by then).
_TOKENS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {_TOKENS} (key TEXT PRIMARY KEY, digest {{blob}} NOT NULL, forget_at {{real}} NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {_TOKENS}_forget_at ON {_TOKENS} (forget_at)",
)
_SQLITE_TOKENS_DDL = tuple(d.format(blob="BLOB", real="REAL") for d in _TOKENS_DDL)
_POSTGRES_TOKENS_DDL = tuple(d.format(blob="BYTEA", real="DOUBLE PRECISION") for d in _TOKENS_DDL)
POSTGRES_TABLES = frozenset({_TABLE, _COUNT, _DEAD, _TOKENS})
"""The tables of a PostgreSQL store's inbox, made with the store."""


def _postgres_count_ddl(schema: str) -> tuple[str, ...]:
    """The count's table, function and trigger in a PostgreSQL store's schema (named in the
    function: it runs in whatever session writes the inbox, whatever its search_path), made
    or mended, and the count made again from the rows (the inbox's table exists)."""
    count = f'"{schema}".{_COUNT}'
    return (
        # Waits for the inbox's writes under way and holds off new ones until the count is
        # made: the sum below misses none and counts none twice. Taken before the catalogue
        # is touched, after the set-up's advisory lock (every writer takes them in that order).
        f'LOCK TABLE "{schema}".{_TABLE} IN SHARE ROW EXCLUSIVE MODE',
        f"CREATE TABLE IF NOT EXISTS {count} (shard INTEGER PRIMARY KEY, n BIGINT NOT NULL)",
        f"""CREATE OR REPLACE FUNCTION "{schema}".webhook_inbox_counted() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE delta BIGINT;
        BEGIN
            IF TG_OP = 'INSERT' THEN delta := NEW.n;
            ELSIF TG_OP = 'DELETE' THEN delta := -OLD.n;
            ELSE delta := NEW.n - OLD.n;
            END IF;
            INSERT INTO {count} AS kept (shard, n) VALUES (pg_backend_pid() % {_COUNT_SHARDS}, delta)
                ON CONFLICT (shard) DO UPDATE SET n = kept.n + EXCLUDED.n;
            RETURN NULL;
        END $$""",
        f'DROP TRIGGER IF EXISTS webhook_inbox_counted ON "{schema}".{_TABLE}',
        f'CREATE TRIGGER webhook_inbox_counted AFTER INSERT OR DELETE OR UPDATE OF n ON "{schema}".{_TABLE} '
        f'FOR EACH ROW EXECUTE FUNCTION "{schema}".webhook_inbox_counted()',
        f"DELETE FROM {count}",
        f'INSERT INTO {count} SELECT {_COUNT_BASE}, COALESCE(SUM(n), 0) FROM "{schema}".{_TABLE}',
    )


# Whether the inbox's table is there, and whether the count's table and the inbox's trigger
# (enabled, running the count's function) are: one catalogue read.
_POSTGRES_PIECES = (
    "SELECT to_regclass(?) IS NOT NULL, to_regclass(?) IS NOT NULL AND EXISTS ("
    "SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(?) AND tgname = 'webhook_inbox_counted' "
    "AND tgenabled <> 'D' AND tgfoid = to_regprocedure(?))"
)


# Made at the first put, or at the first drain of an inbox made before it: which store it keeps facts for.
_SQLITE_META_DDL = f"CREATE TABLE IF NOT EXISTS {_META} (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"
_DEAD_LETTERS = f"SELECT seq, received_at, set_aside_at, reason, n, items FROM {_DEAD} ORDER BY seq LIMIT ?"

Item = tuple[dict[str, Any], str | None]
"""A prepared fact: its event (validated, redacted) and the provider id to match it by."""


@dataclass(frozen=True, slots=True)
class Deferred:
    """One webhook's facts as the inbox keeps them."""

    seq: int
    """Its place in the inbox (the order puts committed in, on SQLite)."""
    received_at: str
    """When the webhook was received: the facts' receipt time when appended."""
    items: list[Item]
    """The facts, in the webhook's order (none where they cannot be read)."""
    problem: str | None = None
    """Why the facts cannot be read (then they can only be set aside), or None."""


class Inbox:
    """Provider facts waiting for the log's write lock (see the module's docstring)."""

    def __init__(self) -> None:
        self.drain_lock = threading.Lock()
        """Held by the thread of this process appending the inbox to the log (one at a time)."""
        # When a token could last not be remembered (0: it could), and said so.
        self._tokens_retried_at = 0.0

    def put(self, items: list[Item], received_at: str) -> None:
        """Keep one webhook's facts, durably, in one transaction."""
        raise NotImplementedError

    def oldest(self, limit: int) -> list[Deferred]:
        """The oldest ``limit`` webhooks' facts, oldest first (left in the inbox)."""
        raise NotImplementedError

    def delete(self, seqs: list[int]) -> None:
        """Remove webhooks' facts once they are in the log."""
        raise NotImplementedError

    def count(self) -> int:
        """How many facts wait for this store, read from the kept count (0 without a single
        statement where no inbox was ever made; 0 where it keeps them for another store)."""
        raise NotImplementedError

    def waiting(self) -> bool:
        """Whether any facts wait: one row read, however long the inbox (a webhook asks);
        facts kept for another store count, since the drain it calls sets them aside."""
        raise NotImplementedError

    def set_aside(self, seq: int, reason: str, at: str) -> None:
        """Move one webhook's facts, as kept, from the inbox to its dead letters."""
        raise NotImplementedError

    def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        """The oldest ``limit`` webhooks set aside, oldest first (see :data:`DEAD_LETTER_FIELDS`)."""
        raise NotImplementedError

    def claim(self, at: str) -> tuple[str, int] | None:
        """Make the inbox its store's: set aside, as dead letters, the facts it keeps for
        another store; returns (that store's id, how many webhooks) if it kept any."""
        return None  # an inbox in the store's own schema is never another store's

    def first_body(self, key: str, digest: bytes, now: float, kept: float) -> bytes | None:
        """The body digest first remembered under a one-time token's ``key`` (``digest``
        itself if none was: remembered now, durably, for ``kept`` seconds); None where the
        inbox cannot remember tokens (see :class:`flowledger.providers.base.TokenMemory`).

        A store that is busy or cannot be reached fails the webhook (sent again later); one
        whose tokens' table this role may not make or write (a store made before it came
        with the store, its owner's grants not covering it) leaves tokens to the process's
        memory, as releases before this one did, and says so once."""
        if now < self._tokens_retried_at + TOKENS_RETRY:
            return None  # failed lately: not tried at every webhook
        try:
            remembered = self._first_body(key, digest, now, kept)
        except (StoreBusy, StoreUnavailable):
            raise
        except StoreError as e:
            if not self._tokens_retried_at:
                _log.warning(
                    "the webhook inbox cannot remember webhook tokens (%s): this process remembers Mailgun's "
                    "tokens for itself alone until the store's owner makes the table webhook_tokens "
                    "(any writing command) and grants its rows", e,
                )
            self._tokens_retried_at = now
            return None
        self._tokens_retried_at = 0.0
        return remembered

    def _first_body(self, key: str, digest: bytes, now: float, kept: float) -> bytes:
        """:meth:`first_body`'s work, errors and all."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the inbox holds open."""


def open_inbox(backend: SQLBackend) -> Inbox | None:
    """The inbox of a store (None for a SQLite database in memory, which has no beside)."""
    if backend.name == "postgresql":
        return PostgresInbox(backend)
    path = backend.reopen_url()
    # One inbox for the one file, whichever path (a symlink, say) the store was opened by.
    return None if path is None else SQLiteInbox(os.path.realpath(path) + INBOX_SUFFIX, backend.store_identity)


def _kept_for_another(kept_for: str, store_id: str | None) -> str:
    """The reason facts kept for another store are set aside."""
    this = f"id {store_id}" if store_id is not None else "which has no id"
    return f"kept for another store (id {kept_for}), not this one ({this})"


def _encode(items: list[Item]) -> bytes:
    return orjson.dumps([[body, match_by] for body, match_by in items])


DEAD_LETTER_FIELDS = ("seq", "received_at", "set_aside_at", "reason", "n", "items")
"""A dead letter's fields: ``items`` is the facts' JSON as kept (text; undecodable bytes replaced);
``set_aside_at`` is None for facts kept for another store, which the next drain sets aside."""


def _raw(items: Any) -> bytes:
    """A row's facts as bytes (a row written by hand may hold them as text)."""
    return items.encode("utf-8", "surrogatepass") if isinstance(items, str) else bytes(items)


def _decode(seq: int, received_at: str, items: bytes) -> Deferred:
    """A row's facts, or why they cannot be read (a damaged row, or another layout's)."""
    try:
        decoded = orjson.loads(items)
    except orjson.JSONDecodeError as e:
        return Deferred(seq, received_at, [], f"its facts cannot be read: not JSON ({e})")
    if not isinstance(decoded, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], dict) and (pair[1] is None or isinstance(pair[1], str))
        for pair in decoded
    ):
        return Deferred(seq, received_at, [], "its facts cannot be read: expected a JSON array of [event, provider id or null] pairs")
    return Deferred(seq, received_at, [(body, match_by) for body, match_by in decoded])


def _oldest(c: Any, limit: int) -> list[Deferred]:
    """The oldest ``limit`` rows of the inbox, decoded (the inbox's table exists)."""
    c.execute(f"SELECT seq, received_at, items FROM {_TABLE} ORDER BY seq LIMIT ?", (limit,))
    return [_decode(seq, received, _raw(items)) for seq, received, items in c.fetchall()]


def _count(c: Any, kept: bool) -> int:
    """How many facts the inbox's rows hold: read from its kept count, else (an inbox made
    before it) summed over its rows (the inbox's table exists)."""
    c.execute(f"SELECT COALESCE(SUM(n), 0) FROM {_COUNT if kept else _TABLE}")
    return int(c.fetchone()[0])


def _any_waiting(c: Any) -> bool:
    """Whether the inbox has a row, one row read (the inbox's table exists)."""
    c.execute(f"SELECT EXISTS (SELECT 1 FROM {_TABLE})")
    return bool(c.fetchone()[0])


def _first_body(c: Any, key: str, digest: bytes, now: float, kept: float) -> bytes:
    """:meth:`Inbox.first_body`'s work, in an open write transaction (the tokens' table exists)."""
    c.execute(f"DELETE FROM {_TOKENS} WHERE forget_at < ?", (now,))
    # Two servers remembering one token at once: the first insert stands, the other reads it.
    c.execute(f"INSERT INTO {_TOKENS} (key, digest, forget_at) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING", (key, digest, now + kept))
    c.execute(f"SELECT digest FROM {_TOKENS} WHERE key = ?", (key,))
    return bytes(c.fetchone()[0])


def _sqlite_counted(c: sqlite3.Cursor) -> bool:
    """Whether a SQLite inbox keeps its count: the count's table, with its one row, and the
    inbox's triggers are all there (the inbox's table exists)."""
    c.execute(_SQLITE_COUNT_PIECES, (_COUNT, _TABLE, *_SQLITE_TRIGGERS))
    if c.fetchone()[0] != 1 + len(_SQLITE_TRIGGERS):
        return False
    # Its triggers move every row of it: none (a hand's DELETE), or more, and it counts wrong.
    c.execute(f"SELECT COUNT(*) = 1 FROM {_COUNT}")
    return bool(c.fetchone()[0])


def _sqlite_has(c: sqlite3.Cursor, table: str) -> bool:
    """Whether a SQLite inbox has a table."""
    c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    return c.fetchone() is not None


def _dead_letter(row: tuple[Any, ...]) -> dict[str, Any]:
    """A dead letter's row as a dict of :data:`DEAD_LETTER_FIELDS`."""
    seq, received_at, set_aside_at, reason, n, items = row
    return dict(zip(DEAD_LETTER_FIELDS, (seq, received_at, set_aside_at, reason, n, _raw(items).decode("utf-8", "replace"))))


def _open_sqlite_inbox(path: str) -> sqlite3.Connection:
    """A connection to the inbox file ``path``, made and set up (WAL, its table) if new."""
    # Servers' first webhooks at once, the file new: each waits for the one switching it.
    switch_to_wal(path, INBOX_LOCK_TIMEOUT)
    conn = sqlite3.connect(path, timeout=INBOX_LOCK_TIMEOUT, isolation_level=None, check_same_thread=False)
    try:
        # An acknowledged webhook's facts must survive a power cut, as the log's do.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(_SQLITE_DDL)
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteInbox(Inbox):
    """The inbox of a SQLite store: a file of its own (WAL, synchronous=FULL), made at its
    first put, so that its writes never wait for the store's write lock."""

    def __init__(self, path: str, store_identity: Callable[[], str | None] = lambda: None) -> None:
        super().__init__()
        self.path = path
        """The inbox file."""
        self.store_identity = store_identity
        """The id of the store the inbox is for (None: a store made before stores had ids)."""
        self._conn: sqlite3.Connection | None = None
        # One connection for every thread of a server: its statements are few and short.
        self._lock = threading.Lock()
        # Whether the file is known to keep its count, every piece of it checked or made by a
        # write committed here (forgotten at a failed statement: a piece removed meanwhile).
        self._counted = False

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is None:
            if not create and not os.path.exists(self.path):
                return None
            self._conn = _open_sqlite_inbox(self.path)
        return self._conn

    @contextmanager
    def _transaction(self, *, write: bool, create: bool = False) -> Iterator[sqlite3.Cursor | None]:
        with self._lock:
            try:
                conn = self._connection(create)
                if conn is None:
                    yield None
                    return
                c = conn.cursor()
                c.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    if write and not self._counted:
                        c.execute(_SQLITE_DDL)  # removed by hand since the file was opened
                        if not _sqlite_counted(c):
                            # The only writer now: the count made from the rows is exact.
                            for statement in _SQLITE_COUNT_DDL:
                                c.execute(statement)
                    yield c
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
                c.execute("COMMIT")
                self._counted = self._counted or write
            except sqlite3.Error as e:
                error = self._translate(e)
                # Maybe a piece removed by hand meanwhile (the inbox's table, say): the next
                # write checks them all again, and, but for a busy file, the file is opened
                # again (which makes the inbox's table, so that reads find it).
                self._counted = False
                if not isinstance(error, StoreBusy) and self._conn is not None:
                    self._conn.close()
                    self._conn = None
                raise error from e

    def _translate(self, error: sqlite3.Error) -> StoreError:
        text = str(error)
        if sqlite_busy(error):
            return StoreBusy(f"the webhook inbox {self.path} is busy: another process held it for more than {INBOX_LOCK_TIMEOUT:g} s")
        return StoreError(f"the webhook inbox {self.path} failed: {text}")

    def put(self, items: list[Item], received_at: str) -> None:
        """Keep one webhook's facts, durably, in one transaction, as its store's."""
        store_id = self.store_identity()
        with self._transaction(write=True, create=True) as c:
            assert c is not None
            # Else they would be kept under another store's id, and set aside with its facts.
            self._claim(c, store_id, utc_now())
            c.execute(f"INSERT INTO {_TABLE} (received_at, n, items) VALUES (?, ?, ?)", (received_at, len(items), _encode(items)))

    def _first_body(self, key: str, digest: bytes, now: float, kept: float) -> bytes:
        with self._transaction(write=True, create=True) as c:
            assert c is not None
            for statement in _SQLITE_TOKENS_DDL:
                c.execute(statement)
            return _first_body(c, key, digest, now, kept)

    def oldest(self, limit: int) -> list[Deferred]:
        """The oldest ``limit`` webhooks' facts, oldest first (left in the inbox)."""
        with self._transaction(write=False) as c:
            return [] if c is None else _oldest(c, limit)

    def delete(self, seqs: list[int]) -> None:
        """Remove webhooks' facts once they are in the log."""
        if not seqs:
            return
        with self._transaction(write=True) as c:
            if c is not None:
                c.executemany(f"DELETE FROM {_TABLE} WHERE seq = ?", [(s,) for s in seqs])

    def count(self) -> int:
        """How many facts wait for this store (a stat of the file where no inbox was ever
        made; none where the inbox keeps them for another store)."""
        store_id = self.store_identity()
        with self._transaction(write=False) as c:
            if c is None or self._kept_for_another(c, store_id) is not None:
                return 0
            self._counted = self._counted or _sqlite_counted(c)
            return _count(c, self._counted)

    def waiting(self) -> bool:
        """Whether any facts wait (a stat of the file where no inbox was ever made)."""
        with self._transaction(write=False) as c:
            return False if c is None else _any_waiting(c)

    def set_aside(self, seq: int, reason: str, at: str) -> None:
        """Move one webhook's facts, as kept, from the inbox to its dead letters."""
        with self._transaction(write=True) as c:
            if c is not None:
                c.execute(_SQLITE_DEAD_DDL)
                c.execute(_SET_ASIDE, (reason, at, seq))
                c.execute(f"DELETE FROM {_TABLE} WHERE seq = ?", (seq,))

    def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        """The oldest ``limit`` webhooks set aside, oldest first, with those the inbox keeps
        for another store (``set_aside_at`` None: the next drain sets them aside)."""
        store_id = self.store_identity()
        with self._transaction(write=False) as c:
            if c is None:
                return []
            letters = []
            if _sqlite_has(c, _DEAD):
                c.execute(_DEAD_LETTERS, (limit,))
                letters = [_dead_letter(row) for row in c.fetchall()]
            reason = self._kept_for_another(c, store_id)
            if reason is None:
                return letters
            # Listed as what the drain makes of them, not as facts waiting to be appended.
            c.execute(f"SELECT seq, received_at, NULL, ?, n, items FROM {_TABLE} ORDER BY seq LIMIT ?", (reason, limit))
            letters += [_dead_letter(row) for row in c.fetchall()]
            return sorted(letters, key=lambda letter: letter["seq"])[:limit]

    def claim(self, at: str) -> tuple[str, int] | None:
        """Make the inbox its store's: set aside, as dead letters, the facts it keeps for
        another store; returns (that store's id, how many webhooks) if it kept any.

        An inbox made before stores had ids keeps facts for no store in particular: they
        are its store's, as they always were, and from now on it records its store's id.
        """
        if self._conn is None and not os.path.exists(self.path):
            return None  # no inbox, no statement
        store_id = self.store_identity()
        with self._transaction(write=False) as c:
            if c is None or self._kept_for(c) == store_id:
                return None
        with self._transaction(write=True) as c:
            return None if c is None else self._claim(c, store_id, at)

    @staticmethod
    def _kept_for(c: sqlite3.Cursor) -> str | None:
        """The id of the store the inbox keeps facts for (None: an inbox made before stores had ids)."""
        if not _sqlite_has(c, _META):
            return None
        c.execute(f"SELECT value FROM {_META} WHERE key = 'store_id'")
        row = c.fetchone()
        return row[0] if row else None

    def _kept_for_another(self, c: sqlite3.Cursor, store_id: str | None) -> str | None:
        """Why the inbox's facts are not this store's (see :meth:`claim`), or None: they are."""
        kept_for = self._kept_for(c)
        return None if kept_for is None or kept_for == store_id else _kept_for_another(kept_for, store_id)

    def _claim(self, c: sqlite3.Cursor, store_id: str | None, at: str) -> tuple[str, int] | None:
        """:meth:`claim`'s work, in an open write transaction."""
        kept_for = self._kept_for(c)
        if kept_for == store_id:
            return None
        found = None
        if kept_for is not None:
            c.execute(_SQLITE_DEAD_DDL)
            c.execute(
                f"INSERT INTO {_DEAD} (seq, received_at, n, items, reason, set_aside_at) "
                f"SELECT seq, received_at, n, items, ?, ? FROM {_TABLE} ORDER BY seq",
                (_kept_for_another(kept_for, store_id), at),
            )
            found = (kept_for, c.rowcount)
            c.execute(f"DELETE FROM {_TABLE}")
        c.execute(_SQLITE_META_DDL)
        c.execute(f"DELETE FROM {_META} WHERE key = 'store_id'")
        if store_id is not None:
            c.execute(f"INSERT INTO {_META} VALUES ('store_id', ?)", (store_id,))
        if found is not None and found[1]:
            _log.warning(
                "the webhook inbox %s kept %d webhooks' facts for another store (id %s), not this one (%s): "
                "they were set aside as dead letters of the inbox (see `flowledger inbox`)",
                self.path, found[1], kept_for, f"id {store_id}" if store_id is not None else "which has no id",
            )
        return found if found is not None and found[1] else None

    def close(self) -> None:
        """Close the inbox's connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PostgresInbox(Inbox):
    """The inbox of a PostgreSQL store: a table in its schema, made at the first put, written
    in transactions of its own that never take the events table's lock (appends hold it)."""

    def __init__(self, backend: Any) -> None:
        super().__init__()
        self.backend = backend
        """The store's backend (its connection pool)."""
        self._made = False
        # Whether the schema is known to keep the inbox's count, every piece of it checked or
        # made by a write committed here (both forgotten at a failed statement: a piece
        # removed meanwhile fails one, and the next transaction checks them all again).
        self._counted = False
        # Whether the tokens' table is known to be there (forgotten at a failed statement too).
        self._tokens_made = False

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Any]:
        """A transaction of the inbox's own: a write's with a short lock timeout, a read's one snapshot."""
        try:
            if not write:
                with self.backend.transaction(write=False) as c:
                    yield c
                return
            # Not an append: no LOCK TABLE stored_events. The session's lock_timeout is the
            # store's (a minute, say): an inbox statement waits at most its own, short one.
            with self.backend.transaction(write=True) as c:
                c.execute(f"SET LOCAL lock_timeout = '{int(INBOX_LOCK_TIMEOUT * 1000)}ms'")
                yield c
        except BaseException:
            self._made = self._counted = self._tokens_made = False
            raise

    def _exists(self, c: Any) -> bool:
        """Whether the inbox's table is there (once known, remembered until a statement fails)."""
        self._made = self._made or self._has(c, _TABLE)
        return self._made

    def _pieces(self, c: Any) -> tuple[bool, bool]:
        """Whether the inbox's table is there, and whether every piece its count depends on
        is (the count's table, with a row, and the inbox's trigger), as committed."""
        schema = self.backend.schema
        table, count = f'"{schema}".{_TABLE}', f'"{schema}".{_COUNT}'
        c.execute(_POSTGRES_PIECES, (table, count, table, f'"{schema}".webhook_inbox_counted()'))
        made, counted = c.fetchone()
        if counted:
            c.execute(f"SELECT EXISTS (SELECT 1 FROM {count} WHERE shard = {_COUNT_BASE})")
            counted = c.fetchone()[0]
        return bool(made), bool(counted)

    def _checked(self, c: Any) -> bool:
        """Whether the inbox's table is there (and whether it keeps its count, in ``_counted``)."""
        if not (self._made and self._counted):
            self._made, self._counted = self._pieces(c)
        return self._made

    def _has(self, c: Any, table: str) -> bool:
        """Whether the store's schema has one of the inbox's tables (committed)."""
        c.execute("SELECT to_regclass(?)", (f'"{self.backend.schema}".{table}',))
        return c.fetchone()[0] is not None

    def _making(self, c: Any) -> None:
        """Wait for another process making the inbox's tables (they would collide in the catalogue)."""
        c.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"flowledger:inbox:{self.backend.schema}",))

    def _set_up(self, c: Any) -> None:
        """Make the inbox's table and its count, or mend a piece of them removed by hand
        (the count then made again from the rows), before the first write here."""
        if self._made and self._counted:
            return
        if self._pieces(c) == (True, True):
            return
        self._making(c)
        made, counted = self._pieces(c)  # made or mended meanwhile by another process?
        if not made:
            c.execute(_POSTGRES_DDL)
        if not counted:
            for statement in _postgres_count_ddl(self.backend.schema):
                c.execute(statement)

    def make(self) -> None:
        """Make the inbox's tables, its count, its dead letters' and its tokens' tables now, as
        the store is made: a role later granted only their rows could not make them at its first put."""
        with self._transaction() as c:
            self._set_up(c)
            if not self._has(c, _DEAD):
                self._making(c)
                c.execute(_POSTGRES_DEAD_DDL)
            self._set_up_tokens(c)
        self._made = self._counted = self._tokens_made = True

    def _set_up_tokens(self, c: Any) -> None:
        """Make the tokens' table unless it is there."""
        if not self._has(c, _TOKENS):
            self._making(c)
            for statement in _POSTGRES_TOKENS_DDL:
                c.execute(statement)

    def _first_body(self, key: str, digest: bytes, now: float, kept: float) -> bytes:
        with self._transaction() as c:
            if not self._tokens_made:
                self._set_up_tokens(c)  # a store made before it came with the store
            remembered = _first_body(c, key, digest, now, kept)
        self._tokens_made = True
        return remembered

    def put(self, items: list[Item], received_at: str) -> None:
        """Keep one webhook's facts, durably, in one transaction."""
        with self._transaction() as c:
            self._set_up(c)
            c.execute(f"INSERT INTO {_TABLE} (received_at, n, items) VALUES (?, ?, ?)", (received_at, len(items), _encode(items)))
        self._made = self._counted = True

    def oldest(self, limit: int) -> list[Deferred]:
        """The oldest ``limit`` webhooks' facts, oldest first (left in the inbox)."""
        with self._transaction(write=False) as c:
            return _oldest(c, limit) if self._exists(c) else []

    def delete(self, seqs: list[int]) -> None:
        """Remove webhooks' facts once they are in the log."""
        if not seqs:
            return
        with self._transaction() as c:
            self._set_up(c)
            c.execute(f"DELETE FROM {_TABLE} WHERE seq = ANY(?)", (seqs,))
        self._made = self._counted = True

    def count(self) -> int:
        """How many facts wait (counted by the rows while a piece of the count is wanting)."""
        with self._transaction(write=False) as c:
            return _count(c, self._counted) if self._checked(c) else 0

    def waiting(self) -> bool:
        """Whether any facts wait."""
        with self._transaction(write=False) as c:
            return _any_waiting(c) if self._exists(c) else False

    def set_aside(self, seq: int, reason: str, at: str) -> None:
        """Move one webhook's facts, as kept, from the inbox to its dead letters."""
        with self._transaction() as c:
            self._set_up(c)
            if not self._has(c, _DEAD):
                self._making(c)
                c.execute(_POSTGRES_DEAD_DDL)
            # Two processes draining at once may both set a row aside: the first move stands.
            c.execute(_SET_ASIDE + " ON CONFLICT (seq) DO NOTHING", (reason, at, seq))
            c.execute(f"DELETE FROM {_TABLE} WHERE seq = ?", (seq,))
        self._made = self._counted = True

    def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        """The oldest ``limit`` webhooks set aside, oldest first."""
        with self._transaction(write=False) as c:
            if not self._has(c, _DEAD):
                return []
            c.execute(_DEAD_LETTERS, (limit,))
            return [_dead_letter(row) for row in c.fetchall()]
