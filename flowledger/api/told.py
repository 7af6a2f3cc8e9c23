"""What a caller of the HTTP API or the pages is told of a store's error.

A store's errors name its insides: a PostgreSQL store's URL (host, port, user, database and
schema), a SQLite store's path, the driver's own words. A caller whose key was checked is an
operator's and is told all of it. Anyone else (the key's own look-up failed, a provider's
webhook, ``/healthz``, the sign-in page) is told what kind of trouble it is and whether to
try again; the server's log holds the rest, with the request's method and path.
"""

from __future__ import annotations

import logging
from typing import Any

from flowledger.errors import (
    StoreBusy,
    StoreError,
    StoreIsACopy,
    StoreReadOnly,
    StoreUnavailable,
    ViewsRemadeByAnotherVersion,
)

_log = logging.getLogger(__name__)

BUSY = "the store is busy: another process is writing to it; try again after Retry-After seconds"
"""What a caller whose key was not checked is told of a busy store."""
UNAVAILABLE = (
    "the store could not answer (its database server lost or refused the connection); "
    "try again after Retry-After seconds"
)
"""What a caller whose key was not checked is told of a store that could not be reached."""
REMADE = "another version of flowledger remade the store's views: this server must be replaced"
"""What a caller whose key was not checked is told of views another version made."""
READ_ONLY = "the store can be read here but not written"
"""What a caller whose key was not checked is told of a store it cannot write."""
COPY = "the store is an analyst's copy: it takes no events"
"""What a caller whose key was not checked is told of a copy made by ``rebuild --into``."""
FAILED = "the store failed this request; the server's log says why"
"""What a caller whose key was not checked is told of any other store error."""


def key_checked(request: Any) -> None:
    """Mark a request whose API key (or web session's key) was checked and found good."""
    request.state.key_checked = True


def told(request: Any, error: StoreError) -> str:
    """What ``request``'s caller is told of ``error``: all of it once its key was checked,
    else its kind alone (the whole of it then goes to the server's log)."""
    if getattr(request.state, "key_checked", False):
        return str(error)
    _log.warning("%s %s: %s (told to a caller with no key checked by its kind alone)", request.method, request.url.path, error)
    if isinstance(error, StoreBusy):
        return BUSY
    if isinstance(error, StoreUnavailable):
        return UNAVAILABLE
    if isinstance(error, ViewsRemadeByAnotherVersion):
        return REMADE
    if isinstance(error, StoreReadOnly):
        return READ_ONLY
    if isinstance(error, StoreIsACopy):
        return COPY
    return FAILED
