"""`serve`'s connections: a deadline for each request's head and the connection limit's 503
(flowledger.api.connections), on a uvicorn server in this process and through the CLI."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import orjson
import pytest

from tests.conftest import free_port, healthy, wait_until
from tests.test_api_hostile import _answer_of

pytest.importorskip("uvicorn")

import uvicorn  # noqa: E402

from flowledger.api.connections import HEADERS_TIMEOUT, protocol  # noqa: E402

HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def _hello(scope, receive, send):
    """A tiny ASGI app: 200 "hello" to every request, once its body is read (at once at /early)."""
    if scope["type"] != "http":
        return
    more = scope["path"] != "/early"
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
def serving(request) -> Iterator[int]:
    """A uvicorn server in a thread with ``protocol(*request.param)``; yields its port."""
    port = free_port()
    config = uvicorn.Config(
        _hello, host="127.0.0.1", port=port, http=protocol(*request.param), log_level="warning", lifespan="off",
        timeout_keep_alive=60,  # uvicorn's own, longer than any deadline here: ours must close first
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30)
    yield port
    server.should_exit = True
    thread.join(30)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def _served(s: socket.socket) -> bool:
    """Whether the next answer on a connection is the app's 200 (read whole: head and body)."""
    s.settimeout(10)
    got = b""
    while not got.endswith(b"hello"):
        part = s.recv(65536)
        if not part:
            break
        got += part
    return got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\nhello")


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _document(answer: bytes) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head.lower() and b"connection: close" in head.lower(), head
    return orjson.loads(body.removesuffix(b"<closed>"))


def _get(port: int, path: bytes = b"/") -> bytes:
    with _connect(port) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path)
        return _answer_of(s, 10)


@pytest.mark.parametrize("serving", [(None, 1.5)], indirect=True)
def test_a_connection_that_sends_nothing_is_closed_at_the_deadline_without_an_answer(serving):
    with _connect(serving) as s:
        started = time.monotonic()
        answer = _answer_of(s, 20)
        took = time.monotonic() - started
    assert answer == b"<closed>" and 1.3 < took < 10, (answer, took)


@pytest.mark.parametrize("serving", [(None, 1.5)], indirect=True)
def test_part_of_a_head_is_a_408_problem_at_the_deadline(serving):
    with _connect(serving) as s:
        started = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # no blank line: the head never ends
        answer = _answer_of(s, 20)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and answer.endswith(b"<closed>"), answer
    assert _document(answer) == {
        "type": "about:blank", "title": "Request Timeout", "status": 408,
        "detail": "the request's line and headers did not all arrive within 1.5 s",
    }
    assert 1.3 < took < 10, took


@pytest.mark.parametrize("serving", [(None, 1.5)], indirect=True)
def test_a_head_that_trickles_in_within_the_deadline_is_served_and_the_next_has_its_own(serving):
    with _connect(serving) as s:
        for byte in HEAD:  # 0.9 s in all
            s.sendall(bytes([byte]))
            time.sleep(0.9 / len(HEAD))
        assert _served(s)
        time.sleep(1.0)  # kept alive: the next head's deadline runs from the answer's end
        s.sendall(HEAD)
        assert _served(s)
        s.sendall(b"GET / HT")
        answer = _answer_of(s, 20)
    assert _status(answer) == 408, answer


@pytest.mark.parametrize("serving", [(None, 1.5)], indirect=True)
def test_a_head_sent_a_line_at_a_time_past_the_deadline_is_a_408(serving):
    with _connect(serving) as s:
        started = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\n")
        for n in range(40):  # a line every 0.25 s, each in time, the head not: until an answer
            if select.select([s], [], [], 0.25)[0]:
                break
            s.sendall(b"X-Line-%d: 1\r\n" % n)
        answer = _answer_of(s, 20)
        took = time.monotonic() - started
    assert _status(answer) == 408 and took < 10, (answer, took)


@pytest.mark.parametrize("serving", [(None, 1.5)], indirect=True)
def test_a_connection_kept_alive_and_left_idle_is_closed_at_the_deadline(serving):
    with _connect(serving) as s:
        s.sendall(HEAD)
        assert _served(s)
        started = time.monotonic()
        answer = _answer_of(s, 30)
        took = time.monotonic() - started
    assert answer == b"<closed>" and took < 20, (answer, took)  # uvicorn's keep-alive here: 60 s


@pytest.mark.parametrize("serving", [(None, 1.5)], indirect=True)
def test_a_request_slow_to_be_answered_is_not_cut_by_the_deadline(serving):
    with _connect(serving) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        time.sleep(2.5)  # the head came: the body's time is the app's to bound (--webhook-timeout)
        s.sendall(b"cd")
        assert _served(s)


@pytest.mark.parametrize("serving", [(None, 1.5)], indirect=True)
def test_after_a_body_answered_before_it_all_came_the_next_head_has_its_deadline(serving):
    with _connect(serving) as s:
        s.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        assert _served(s)
        s.sendall(b"cd")  # the body's end, and then nothing
        started = time.monotonic()
        answer = _answer_of(s, 20)
        took = time.monotonic() - started
    assert answer == b"<closed>" and took < 10, (answer, took)


@pytest.mark.parametrize("serving", [(2, 1.5)], indirect=True)
def test_a_request_past_the_connection_limit_is_a_503_problem_with_retry_after(serving):
    held = [_connect(serving), _connect(serving)]  # the limit's two, idle
    try:
        time.sleep(0.2)
        answer = _get(serving)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer
        assert b"\r\nretry-after: 1\r\n" in answer.lower() and answer.endswith(b"<closed>")
        assert _document(answer)["detail"] == (
            "this server serves at most 2 connections at once: try again after Retry-After seconds"
        )
        held.pop().close()
        wait_until(lambda: _status(_get(serving)) == 200, 10)  # one place free again
        # The idle one holds its place only until the deadline: then there is room for two.
        wait_until(lambda: _answer_of(held[0], 0.1) == b"<closed>", 20)
        with _connect(serving) as other:
            other.sendall(HEAD)
            assert _served(other)
            assert _status(_get(serving)) == 200
    finally:
        for s in held:
            s.close()


@pytest.mark.parametrize("serving", [(3, 1.5)], indirect=True)
def test_connections_up_to_the_limit_are_served(serving):
    with _connect(serving) as one, _connect(serving) as two:
        for s in (one, two):
            s.sendall(HEAD)
            assert _served(s)
        assert _status(_get(serving)) == 200  # the third of three


def test_the_limits_are_checked():
    with pytest.raises(ValueError, match="max_connections"):
        protocol(0, 1.0)
    with pytest.raises(ValueError, match="headers_timeout"):
        protocol(None, 0)
    made = protocol(5, 2.5)
    assert (made.max_connections, made.headers_timeout) == (5, 2.5)
    assert protocol().headers_timeout == HEADERS_TIMEOUT and protocol().max_connections is None


def test_serves_header_timeout_default_is_the_apis():
    from flowledger.cli import cli

    option = next(p for p in cli.commands["serve"].params if p.name == "header_timeout")
    assert option.default == HEADERS_TIMEOUT


def test_serve_bounds_a_heads_time_and_answers_past_its_connections_with_a_problem(store_path):
    from flowledger.store import open_log

    open_log(store_path).close()
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "flowledger")
    command = [exe, "--store", store_path, "serve", "--port", str(port), "--max-connections", "1", "--header-timeout", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: proc.poll() is not None or healthy(port), 60)
        assert proc.poll() is None, proc.stderr.read().decode()
        with _connect(port) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\n")
            refused = _get(port, b"/healthz")
            assert _status(refused) == 503 and b"\r\nretry-after: 1\r\n" in refused.lower(), refused
            answer = _answer_of(slow, 20)
        assert _status(answer) == 408 and b"within 2 s" in answer, answer
        wait_until(lambda: _status(_get(port, b"/healthz")) == 200, 10)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
