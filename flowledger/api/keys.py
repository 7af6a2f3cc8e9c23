"""API keys: made once, shown once, kept only as a hash; each with a scope.

read: the GET endpoints; write: also appending events; admin: also retry and cancel.
Keys are long random strings, so a plain SHA-256 of one is as good as a slow hash.
Signing in to the web page starts a session: its cookie holds a random session token (never
the key), kept here only as a hash, ended by signing out, by revoking its key, or after
:data:`SESSION_LIFETIME`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from flowledger.errors import FlowledgerError, NotFound, StoreError, StoreReadOnly
from flowledger.store.backend import SQLBackend
from flowledger.store.log import utc_now, utc_stamp

SCOPES = ("read", "write", "admin")
"""The scopes, each allowing what the ones before it do."""
PREFIX = "fl_live_"
"""What every key starts with (so a leaked one is easy to recognise and search for)."""

NAME_LIMIT = 250
"""The longest key name: retry and cancel record "api:NAME" or "web:NAME" as the actor, an
id of at most 255 characters."""
# An actor is an id, and an id holds no control characters (vocabulary.Id).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_DDL = (
    "CREATE TABLE IF NOT EXISTS api_keys ("
    "id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL, "
    "hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT)"
)
_SESSIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS web_sessions ("
    "hash TEXT PRIMARY KEY, key_id TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL)"
)
SESSION_PREFIX = "fl_sess_"
"""What every web session token starts with (it is no API key: /v1 refuses it)."""
SESSION_LIFETIME = 12 * 3600
"""Seconds a web session lasts from sign-in, however active (then the key must be given again)."""


class KeyCommandError(FlowledgerError):
    """A key command that cannot be done (unknown scope, unusable name, unknown key)."""


@dataclass(frozen=True)
class ApiKey:
    """What is stored about a key (never the key itself)."""

    id: str
    """The key's public id, to list and revoke it by."""
    name: str
    """What the key is for."""
    scope: str
    """read, write or admin."""
    created_at: str
    """When it was made."""
    revoked_at: str | None
    """When it was revoked, if it was."""

    def allows(self, scope: str) -> bool:
        """Whether this key may do what needs ``scope``."""
        return self.revoked_at is None and SCOPES.index(self.scope) >= SCOPES.index(scope)

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data."""
        return {"id": self.id, "name": self.name, "scope": self.scope, "created_at": self.created_at, "revoked_at": self.revoked_at}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def ensure_table(backend: SQLBackend) -> None:
    """Create the keys table (and the web sessions' table) if they are not there."""
    # Looked for first: a server starting while an import holds the write lock must not
    # wait for it (or fail) only to find them made.
    with backend.transaction(write=False) as c:
        if {"api_keys", "web_sessions"} <= backend.table_names(c):
            return
    try:
        with backend.transaction(write=True) as c:
            c.execute(backend.ddl(_DDL))
            c.execute(backend.ddl(_SESSIONS_DDL))
    except StoreReadOnly as e:
        # A role granted only the rows of the store's tables (README): what would mend it.
        raise StoreReadOnly(
            f"{e}; the API keys' tables were never made: a role that can write the store must "
            "make them once, with `flowledger keys create`"
        ) from None


def checked_name(name: str) -> str:
    """A key's name as stored (stripped), or :class:`KeyCommandError` saying why it can't be."""
    name = name.strip()
    if not name:
        raise KeyCommandError("a key needs a name (what it is for)")
    # Refused here, not when the key is used: else every retry or cancel made with it
    # would be refused, its actor not a valid id.
    if len(name) > NAME_LIMIT:
        raise KeyCommandError(f"a key's name can be at most {NAME_LIMIT} characters (this one has {len(name)})")
    if _CONTROL.search(name):
        raise KeyCommandError("a key's name cannot hold control characters (tabs, newlines)")
    return name


def create_key(backend: SQLBackend, name: str, scope: str) -> tuple[ApiKey, str]:
    """Make a key; returns what is stored and the key itself (shown once, never stored)."""
    if scope not in SCOPES:
        raise KeyCommandError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
    name = checked_name(name)
    ensure_table(backend)
    secret = PREFIX + secrets.token_urlsafe(32)
    key = ApiKey("key_" + secrets.token_hex(6), name, scope, utc_now(), None)
    with backend.transaction(write=True) as c:
        c.execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?)",
            (key.id, key.name, key.scope, _digest(secret), key.created_at, None),
        )
    return key, secret


def list_keys(backend: SQLBackend) -> list[ApiKey]:
    """Every key, newest first (none where no key was ever made)."""
    # A read: making the table here took the write lock, and waited for any writer.
    with backend.transaction(write=False) as c:
        if "api_keys" not in backend.table_names(c):  # type: ignore[attr-defined]
            return []
        c.execute("SELECT id, name, scope, created_at, revoked_at FROM api_keys ORDER BY created_at DESC, id")
        return [ApiKey(*row) for row in c.fetchall()]


def revoke_key(backend: SQLBackend, key_id: str) -> ApiKey:
    """Revoke a key by its id; it stops working at once."""
    ensure_table(backend)
    with backend.transaction(write=True) as c:
        c.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (utc_now(), key_id))
        # Its sessions would be refused anyway (session_key checks the key): not kept either.
        c.execute("DELETE FROM web_sessions WHERE key_id = ?", (key_id,))
        c.execute("SELECT id, name, scope, created_at, revoked_at FROM api_keys WHERE id = ?", (key_id,))
        row = c.fetchone()
    if row is None:
        raise NotFound(f"no key {key_id!r}")
    return ApiKey(*row)


def verify(backend: SQLBackend, secret: str) -> ApiKey | None:
    """The key a secret is, or None for an unknown one (revoked keys are returned, marked)."""
    if not secret.startswith(PREFIX):
        return None
    try:
        with backend.transaction(write=False) as c:
            c.execute(
                "SELECT id, name, scope, created_at, revoked_at FROM api_keys WHERE hash = ?",
                (_digest(secret),),
            )
            row = c.fetchone()
    except StoreError:
        if _tables_made(backend):
            raise
        return None
    return ApiKey(*row) if row else None


def _tables_made(backend: SQLBackend) -> bool:
    """Whether the keys tables are there, asked after a failed look-up.

    A server started while an import held the write lock could not make them (it does not
    wait): until the first key is made, no key or session is known. Asked only after a
    failure, so a request pays nothing for it.
    """
    with backend.transaction(write=False) as c:
        return {"api_keys", "web_sessions"} <= backend.table_names(c)


def start_session(backend: SQLBackend, key: ApiKey, now: float | None = None) -> str:
    """Start a web session for a verified key; returns its token (the cookie's value, never stored)."""
    now = time.time() if now is None else now
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    with backend.transaction(write=True) as c:
        c.execute(backend.ddl(_SESSIONS_DDL))
        # Sessions nobody signed out of: gone once over, so the table holds only live ones.
        c.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (utc_stamp(now),))
        c.execute(
            "INSERT INTO web_sessions VALUES (?, ?, ?, ?)",
            (_digest(token), key.id, utc_stamp(now), utc_stamp(now + SESSION_LIFETIME)),
        )
    return token


def session_key(backend: SQLBackend, token: str, now: float | None = None) -> ApiKey | None:
    """The key a live session token was started with; None if it is unknown, over, signed
    out of, or its key revoked (checked on every request, so revoking ends it at once)."""
    if not token.startswith(SESSION_PREFIX):
        return None
    now = time.time() if now is None else now
    try:
        with backend.transaction(write=False) as c:
            c.execute(
                "SELECT k.id, k.name, k.scope, k.created_at, k.revoked_at FROM web_sessions s "
                "JOIN api_keys k ON k.id = s.key_id "
                "WHERE s.hash = ? AND s.expires_at > ? AND k.revoked_at IS NULL",
                (_digest(token), utc_stamp(now)),
            )
            row = c.fetchone()
    except StoreError:
        if _tables_made(backend):
            raise
        return None
    return ApiKey(*row) if row else None


def end_session(backend: SQLBackend, token: str) -> None:
    """End a web session (signing out): its token, even if copied, no longer works."""
    with backend.transaction(write=True) as c:
        c.execute("DELETE FROM web_sessions WHERE hash = ?", (_digest(token),))


def end_sessions(backend: SQLBackend, key_id: str) -> int:
    """End every web session signed in with a key (signing out everywhere: another
    browser's, a session left open on a shared machine), and say how many there were; the
    key itself still works. An unknown key id is a NotFound."""
    ensure_table(backend)
    with backend.transaction(write=True) as c:
        c.execute("SELECT 1 FROM api_keys WHERE id = ?", (key_id,))
        if c.fetchone() is None:
            raise NotFound(f"no key {key_id!r}")
        c.execute("SELECT COUNT(*) FROM web_sessions WHERE key_id = ? AND expires_at > ?", (key_id, utc_stamp(time.time())))
        ended = int(c.fetchone()[0])
        # Sessions already over: not counted, not kept either.
        c.execute("DELETE FROM web_sessions WHERE key_id = ?", (key_id,))
    return ended
