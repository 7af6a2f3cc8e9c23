"""Shared fixtures: a fresh SQLite store file per test, and event builders."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from flowledger.store import open_log

_ids = itertools.count(1)


def ev(type_: str, **fields: Any) -> dict[str, Any]:
    """An event of a type with a fresh id and a fixed time, plus the fields given."""
    event = {"id": f"t-{next(_ids)}", "type": type_, "occurred_at": "2026-11-01T09:00:00Z"}
    event.update(fields)
    return event


def triggered(run_id: str, **fields: Any) -> dict[str, Any]:
    """A run.triggered event for run_id."""
    fields.setdefault("workflow", "welcome")
    fields.setdefault("recipient", "user-1")
    return ev("run.triggered", run_id=run_id, **fields)


def step(type_: str, run_id: str, name: str = "email-1", attempt: int = 1, **fields: Any) -> dict[str, Any]:
    """A step event."""
    if type_ == "step.failed":
        fields.setdefault("error", "boom")
    return ev(type_, run_id=run_id, step=name, step_type="send_email", attempt=attempt, **fields)


@pytest.fixture
def store_path(tmp_path):
    """The path of a store file that does not exist yet."""
    return str(tmp_path / "flowledger.db")


@pytest.fixture
def log(store_path):
    """An open event log on a fresh SQLite file."""
    log = open_log(store_path)
    yield log
    log.close()


# PostgreSQL for the tests that run on both backends: FLOWLEDGER_TEST_POSTGRES, default the
# local server's `test` database. Each test gets a schema of its own, dropped after.

POSTGRES = os.environ.get("FLOWLEDGER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def server_connection(url: str, **options: Any) -> Any:
    """A plain psycopg connection to the server and database of a store URL (the test's own
    view of the server: to drop schemas, or to end the store's connections)."""
    import psycopg

    from flowledger.store.postgres import parse_url

    s = parse_url(url)
    return psycopg.connect(dbname=s["dbname"], host=s["host"], port=s["port"], user=s["user"], password=s["password"], **options)


def _reachable() -> str | None:
    try:
        server_connection(POSTGRES, connect_timeout=3).close()
    except Exception as e:  # noqa: BLE001  # any failure means: no server to test against
        return f"no PostgreSQL at {POSTGRES}: {e}"
    return None


POSTGRES_UNREACHABLE = _reachable()
"""Why PostgreSQL tests skip (None: a server answers)."""


def _schema_url() -> Iterator[str]:
    """A store URL on the test server, in a schema of its own, dropped afterwards (the test
    skipped, saying why, where no server answers)."""
    if POSTGRES_UNREACHABLE:
        pytest.skip(POSTGRES_UNREACHABLE)
    schema = "fl_test_" + uuid.uuid4().hex[:10]
    yield f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}schema={schema}"
    with server_connection(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def postgres_url():
    yield from _schema_url()


@pytest.fixture
def other_postgres_url():
    """A second store in the same database (another schema)."""
    yield from _schema_url()


@pytest.fixture
def postgres_url_alone():
    """A store URL in a database made for the test and dropped after: for the tests of what a
    VACUUM marks visible to every transaction, which a transaction open in any other session
    of the same database holds back (the tests run beside it in other processes). The test is
    skipped where the server's user may not make a database."""
    import psycopg

    if POSTGRES_UNREACHABLE:
        pytest.skip(POSTGRES_UNREACHABLE)
    name = "fl_test_" + uuid.uuid4().hex[:10]
    try:
        with server_connection(POSTGRES, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as e:
        pytest.skip(f"cannot create a database on {POSTGRES}: {e}")
    parts = urlsplit(POSTGRES)
    query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("schema="))
    url = urlunsplit(parts._replace(path="/" + name, query=(query + "&" if query else "") + f"schema={name}"))
    try:
        _made_without_autovacuum(url, name)
        yield url
    finally:
        with server_connection(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _made_without_autovacuum(url: str, schema: str) -> None:
    """Make the store's tables at ``url`` and keep autovacuum off them: an ANALYZE of its
    own, running in the database, holds back what a VACUUM may mark as any transaction does
    (a new store's first thousands of rows call for one)."""
    from flowledger import ledger

    log = open_log(url)
    try:
        ledger.ensure_views(log)
    finally:
        log.close()
    with server_connection(url, autocommit=True) as conn:
        for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)).fetchall():
            conn.execute(f'ALTER TABLE "{schema}"."{table}" SET (autovacuum_enabled = false)')


@contextmanager
def login_role(url: str, prefix: str, grants: list[str]) -> Iterator[tuple[str, str]]:
    """A login role for the test store at ``url``, given ``grants`` (statements naming
    ``{schema}`` and ``{role}``), and the store's URL as that role; dropped afterwards. The
    test is skipped where the server's user may not make roles."""
    role = prefix + uuid.uuid4().hex[:10]
    schema = url.rpartition("schema=")[2]
    with server_connection(POSTGRES, autocommit=True) as conn:
        try:
            conn.execute(f'CREATE ROLE "{role}" LOGIN')
        except Exception as e:  # noqa: BLE001  # a test server's user that may not make roles
            pytest.skip(f"cannot create a role on {POSTGRES}: {e}")
        for grant in grants:
            conn.execute(grant.format(schema=schema, role=role))
    user = POSTGRES.partition("://")[2].partition("@")[0]
    try:
        yield role, url.replace(f"://{user}@", f"://{role}@", 1)
    finally:
        with server_connection(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')  # its grants
            conn.execute(f'DROP ROLE "{role}"')


def wait_until(condition: Callable[[], Any], seconds: float = 30) -> None:
    """Poll ``condition`` until it holds or ``seconds`` have passed (the caller asserts what
    it needs afterwards: a slow machine gets the whole time, a fast one none of it)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_for_views(backend: Any, seconds: float = 30) -> None:
    """Wait until every view has applied the whole log (a follower elsewhere is at work);
    fail if they have not within ``seconds``."""
    from flowledger.projections.projector import Projector

    projector = Projector(backend)
    wait_until(lambda: min(projector.position(v) for v in projector.views) >= projector.head(), seconds)
    assert [projector.position(v) for v in projector.views] == [projector.head()] * len(projector.views)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_process(env: dict[str, str]) -> Iterator[int]:
    """`flowledger serve` in a process of its own with ``env`` (its store from
    FLOWLEDGER_STORE), on a free port, until the block ends; yields the port once it answers."""
    import subprocess
    import sys

    import httpx

    port = free_port()
    command = [sys.executable, "-c", "from flowledger.cli import main; main()", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _answers(httpx, port), 30)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(httpx: Any, port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        return True
    except httpx.HTTPError:
        return False


def healthy(port: int) -> bool:
    """Whether a server on loopback at ``port`` answers /healthz with a 200."""
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def live_server(app: Any):
    """Serve an ASGI app with uvicorn on loopback, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# Threads a test module may leave behind: TestClient's idle AnyIO workers, which end on
# their own after ten idle seconds.
_THREADS_THAT_END_ON_THEIR_OWN = ("AnyIO worker thread",)


@pytest.fixture(autouse=True, scope="module")
def no_threads_left_behind():
    """Fail a module that leaves a thread running once its fixtures are torn down (a store or
    a server not closed): while another thread runs, `append` reads its input in-process
    rather than forking a reader, so a later test would not test what it says."""
    before = set(threading.enumerate())
    yield
    left: list[threading.Thread] = []

    def all_ended() -> bool:
        left[:] = [
            t
            for t in threading.enumerate()
            if t not in before and t.is_alive() and t.name not in _THREADS_THAT_END_ON_THEIR_OWN
        ]
        return not left

    wait_until(all_ended, 5)
    assert not left, f"threads left running: {[t.name for t in left]}"
