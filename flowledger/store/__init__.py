"""Opening a store from a URL: the one place that knows which backends exist."""

from __future__ import annotations

import os
from urllib.parse import quote, unquote, urlparse

from flowledger.errors import NotInstalled, StoreURLError
from flowledger.store.backend import SQLBackend, shown_url
from flowledger.store.log import EventLog
from flowledger.store.sqlite import SQLiteBackend

DEFAULT_STORE = "./flowledger.db"
"""Where the store is when neither --store nor FLOWLEDGER_STORE says."""


def sqlite_path(url: str) -> str:
    """The file a SQLite store URL (or plain path) names."""
    if url.startswith("sqlite:"):
        try:
            parsed = urlparse(url)
        except ValueError:  # a "[" that is no IPv6 address, say
            parsed = None
        if parsed is None or parsed.netloc not in ("", "localhost"):
            raise StoreURLError(
                f"cannot open {shown_url(url)!r}: a SQLite URL names a local file, like "
                "sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        path = unquote(parsed.path)
        # sqlite:///x.db is relative, sqlite:////abs/x.db absolute (SQLAlchemy's convention).
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise StoreURLError(f"cannot open {url!r}: it names no file")
        return path
    return os.path.expanduser(url)


def new_sqlite_file(url: str) -> str | None:
    """The file a SQLite store URL (or plain path) names, if it is not there yet in a folder
    that is; None for any other store (a PostgreSQL one, a file already made)."""
    scheme = url.split(":", 1)[0].lower() if "://" in url else ""
    if scheme not in ("", "sqlite"):
        return None
    path = sqlite_path(url)
    if path == ":memory:" or os.path.lexists(path) or not os.path.isdir(os.path.dirname(path) or "."):
        return None
    return path


def sqlite_url(path: str) -> str:
    """A sqlite:/// URL naming the file ``path`` (whatever characters its name holds)."""
    return "sqlite:///" + quote(path, safe="/")


def open_backend(url: str | None = None, *, lock_timeout: float = 60.0, create: bool = True) -> SQLBackend:
    """Open the store a URL names: a file path, sqlite:///path, or postgresql://user@host/db.

    ``create=False`` refuses to make a new, empty store (for commands that only read).
    """
    url = url or DEFAULT_STORE
    scheme = url.split(":", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        try:
            from flowledger.store.postgres import PostgresBackend
        except ImportError:  # psycopg is an optional dependency
            raise NotInstalled(
                "PostgreSQL support is not installed: in flowledger's checkout, pip install '.[postgres]'"
            ) from None
        return PostgresBackend(url, lock_timeout=lock_timeout, create=create)
    if scheme and scheme != "sqlite":
        raise StoreURLError(
            f"cannot open {shown_url(url)!r}: expected a file path, a sqlite:/// URL or a postgresql:// URL"
        )
    return SQLiteBackend(sqlite_path(url), lock_timeout=lock_timeout, create=create)


def open_log(url: str | None = None, *, lock_timeout: float = 60.0, create: bool = True) -> EventLog:
    """Open the event log of the store a URL names (see :func:`open_backend`)."""
    return EventLog(open_backend(url, lock_timeout=lock_timeout, create=create))
