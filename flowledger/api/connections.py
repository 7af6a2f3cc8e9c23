"""The HTTP connections `flowledger serve` takes: how many at once, and how long a request's
head (its line and headers) may take to arrive.

uvicorn bounds neither by itself in a way a server facing the internet can rely on: a
connection that opens and sends nothing, or sends a request's head a byte at a time, is
kept for as long as its sender likes (its keep-alive timeout starts only after a first
answer and stops at the next byte), so a few such connections hold every place
``--max-connections`` allows. This module's protocol is uvicorn's own HTTP/1.1 one (h11)
with a deadline for each request's head and the connection limit answered with a problem
document that says when to try again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADERS_TIMEOUT = 10.0
"""Seconds a request's head may take to arrive, from the connection's opening or the end of
its last answer: past them, a 408 (or, where nothing of a request came, the connection closed)."""
RETRY_AFTER = 1
"""Seconds a request past the connection limit is told to wait (``Retry-After``)."""


def protocol(max_connections: int | None = None, headers_timeout: float = HEADERS_TIMEOUT) -> type[asyncio.Protocol]:
    """uvicorn's ``http`` protocol class for a server with these limits (None: no connection limit)."""
    if max_connections is not None and max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    if not headers_timeout > 0:
        raise ValueError("headers_timeout must be more than 0 seconds")
    attributes = {"max_connections": max_connections, "headers_timeout": headers_timeout}
    return type("GuardedProtocol", (GuardedProtocol,), attributes)


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head and a connection limit."""

    max_connections: int | None = None
    """The most connections served at once (None: no limit)."""
    headers_timeout: float = HEADERS_TIMEOUT
    """Seconds a request's head may take to arrive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_due: asyncio.TimerHandle | None = None
        if self.max_connections is not None:
            self.app = _limited(self.app, self.connections, self.max_connections)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head_arrived()  # a request's head (or the connection's end, or an error)
        elif not self.transport.is_closing():
            # The end of a body answered before it all came: the next head is awaited now.
            self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Kept alive for the next request, which may be in already (pipelined).
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_due is None:
            self._head_due = self.loop.call_later(self.headers_timeout, self._head_late)

    def _head_arrived(self) -> None:
        if self._head_due is not None:
            self._head_due.cancel()
            self._head_due = None

    def _head_late(self) -> None:
        """The deadline passed with no whole head: a 408 if part of one came, then close."""
        self._head_due = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:
            seconds = f"{self.headers_timeout:g}"
            self.transport.write(
                _problem(408, "Request Timeout", f"the request's line and headers did not all arrive within {seconds} s")
            )
        self.transport.close()


def _problem(status: int, title: str, detail: str) -> bytes:
    """A whole HTTP/1.1 answer holding a problem document, closing the connection."""
    body = _document(status, title, detail)
    head = [f"HTTP/1.1 {status} {title}".encode(), *(b"%s: %s" % pair for pair in _headers(body))]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _document(status: int, title: str, detail: str) -> bytes:
    """An RFC 9457 problem document, as the API's own."""
    return orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})


def _headers(body: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """The headers of an answer holding a problem document ``body``, ``extra`` among them."""
    return [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
        (b"connection", b"close"),
    ]


def _limited(app: Any, connections: set[Any], most: int) -> Any:
    """``app``, answering 503 to a request while more than ``most`` connections are open
    (as uvicorn's ``limit_concurrency`` does, with a problem document and ``Retry-After``)."""

    async def limited(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or len(connections) <= most:
            await app(scope, receive, send)
            return
        detail = f"this server serves at most {most} connections at once: try again after Retry-After seconds"
        body = _document(503, "Service Unavailable", detail)
        headers = _headers(body, (b"retry-after", str(RETRY_AFTER).encode()))
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return limited
