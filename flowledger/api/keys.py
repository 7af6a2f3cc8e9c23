"""API keys: made once, shown once, kept only as a hash; each with a scope.

read: the GET endpoints; write: also appending events; admin: also retry and cancel.
Keys are long random strings, so a plain SHA-256 of one is as good as a slow hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from flowledger.errors import FlowledgerError, NotFound
from flowledger.store.backend import SQLBackend
from flowledger.store.log import utc_now

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
    """Create the keys table if it is not there."""
    with backend.transaction(write=True) as c:
        c.execute(backend.ddl(_DDL))


def create_key(backend: SQLBackend, name: str, scope: str) -> tuple[ApiKey, str]:
    """Make a key; returns what is stored and the key itself (shown once, never stored)."""
    if scope not in SCOPES:
        raise KeyCommandError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
    name = name.strip()
    if not name:
        raise KeyCommandError("a key needs a name (what it is for)")
    # Refused here, not when the key is used: else every retry or cancel made with it
    # would be refused, its actor not a valid id.
    if len(name) > NAME_LIMIT:
        raise KeyCommandError(f"a key's name can be at most {NAME_LIMIT} characters (this one has {len(name)})")
    if _CONTROL.search(name):
        raise KeyCommandError("a key's name cannot hold control characters (tabs, newlines)")
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
        c.execute("SELECT id, name, scope, created_at, revoked_at FROM api_keys WHERE id = ?", (key_id,))
        row = c.fetchone()
    if row is None:
        raise NotFound(f"no key {key_id!r}")
    return ApiKey(*row)


def verify(backend: SQLBackend, secret: str) -> ApiKey | None:
    """The key a secret is, or None for an unknown one (revoked keys are returned, marked)."""
    if not secret.startswith(PREFIX):
        return None
    with backend.transaction(write=False) as c:
        c.execute(
            "SELECT id, name, scope, created_at, revoked_at FROM api_keys WHERE hash = ?",
            (_digest(secret),),
        )
        row = c.fetchone()
    return ApiKey(*row) if row else None
