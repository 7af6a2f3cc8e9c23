"""What every store backend shares: the SQL of the log's side tables and of paging the
notification log, written once with ``?`` placeholders (a backend whose driver wants
another style translates at its cursor). Every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SCHEMA_VERSION = 1
"""The layout of flowledger's own tables."""

FLOWLEDGER_TABLES = (
    "CREATE TABLE IF NOT EXISTS event_ids ("
    "id TEXT PRIMARY KEY, digest BLOB NOT NULL, "
    "originator_id TEXT NOT NULL, originator_version INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS stream_heads ("
    "originator_id TEXT PRIMARY KEY, version INTEGER NOT NULL, state BLOB) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS run_cancellation_keys ("
    "cancellation_key TEXT NOT NULL, run_id TEXT NOT NULL, "
    "PRIMARY KEY (cancellation_key, run_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS flowledger_meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID",
)
"""flowledger's tables beside eventsourcing's, in SQLite's dialect."""

# Bound parameters per statement stay well under every driver's limit.
_IN_CHUNK = 500


class SQLBackend:
    """The SQL shared by the backends; subclasses add connections and dialect."""

    name = ""
    """The backend's name."""
    position_column = ""
    """The column of stored_events that holds the notification id."""
    tracking_table = ""
    """eventsourcing's table of each view's position."""

    # Reads and writes on an open transaction's cursor. Every value is a bound parameter.

    @staticmethod
    def fetch_digests(c: Any, ids: Sequence[str]) -> dict[str, bytes]:
        """The stored digests of those event ids that are stored."""
        found: dict[str, bytes] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            c.execute(
                f"SELECT id, digest FROM event_ids WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((row[0], row[1]) for row in c.fetchall())
        return found

    @staticmethod
    def fetch_heads(c: Any, streams: Sequence[str]) -> dict[str, tuple[int, bytes | None]]:
        """Each existing stream's (version, state)."""
        found: dict[str, tuple[int, bytes | None]] = {}
        for i in range(0, len(streams), _IN_CHUNK):
            chunk = streams[i : i + _IN_CHUNK]
            c.execute(
                "SELECT originator_id, version, state FROM stream_heads "
                f"WHERE originator_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((row[0], (row[1], row[2])) for row in c.fetchall())
        return found

    @staticmethod
    def insert(
        c: Any,
        events: Sequence[tuple[str, int, str, bytes]],
        ids: Sequence[tuple[str, bytes, str, int]],
        heads: Sequence[tuple[str, int, bytes | None]],
        keys: Sequence[tuple[str, str]],
    ) -> None:
        """Write events, their ids, the new stream heads and cancellation keys."""
        c.executemany(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
            "VALUES (?,?,?,?)",
            events,
        )
        c.executemany("INSERT INTO event_ids VALUES (?,?,?,?)", ids)
        c.executemany(
            "INSERT INTO stream_heads VALUES (?,?,?) ON CONFLICT (originator_id) "
            "DO UPDATE SET version=excluded.version, state=excluded.state",
            heads,
        )
        c.executemany("INSERT OR IGNORE INTO run_cancellation_keys VALUES (?,?)", keys)

    @staticmethod
    def runs_with_key(c: Any, key: str) -> list[str]:
        """The runs triggered with a cancellation key."""
        c.execute(
            "SELECT run_id FROM run_cancellation_keys WHERE cancellation_key=? ORDER BY run_id",
            (key,),
        )
        return [row[0] for row in c.fetchall()]

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

    def select_page(self, c: Any, after: int, limit: int) -> list[tuple[int, str, str, bytes]]:
        """Up to limit events after a position, as (position, stream, type, state)."""
        col = self.position_column
        c.execute(
            f"SELECT {col}, originator_id, topic, state FROM stored_events "
            f"WHERE {col} > ? ORDER BY {col} LIMIT ?",
            (after, limit),
        )
        return c.fetchall()

    def get_position(self, c: Any, name: str) -> int:
        """The last log position a view has applied (0: none)."""
        c.execute(f"SELECT notification_id FROM {self.tracking_table} WHERE application_name=?", (name,))
        row = c.fetchone()
        return row[0] if row else 0

    def clear_position(self, c: Any, name: str) -> None:
        """Forget a view's position (before it is folded again from 0)."""
        c.execute(f"DELETE FROM {self.tracking_table} WHERE application_name=?", (name,))

    @staticmethod
    def count_events(c: Any) -> int:
        """How many events the log holds."""
        c.execute("SELECT COUNT(*) FROM stored_events")
        return c.fetchone()[0]
