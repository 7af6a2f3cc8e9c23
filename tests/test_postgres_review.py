"""PostgreSQL store: how it names schemas, takes the URL's connection settings and says
why it cannot get a connection (FLOWLEDGER_TEST_POSTGRES, default the local server's
`test` database). Skipped, saying why, where no server is reachable.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

from flowledger import ledger, queries
from flowledger.errors import StoreBusy, StoreError, StoreURLError
from flowledger.store import open_log
from tests.conftest import POSTGRES, POSTGRES_UNREACHABLE, server_connection, triggered, wait_until
from tests.histories import jsonl
from tests.test_postgres_driver_mutations import _Proxy  # its pump relays one direction

pytestmark = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


def _schema_exists(name: str) -> bool:
    """Whether the test database holds a schema of this name."""
    with server_connection(POSTGRES) as conn:
        return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone() is not None


@pytest.fixture
def reserved_schema():
    """A schema name PostgreSQL reserves (order), dropped after the test if it was made by it."""
    name = "order"
    existed = _schema_exists(name)
    yield name
    if not existed:
        with server_connection(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_a_schema_named_by_a_reserved_word_is_refused_before_anything_is_made(reserved_schema):
    # eventsourcing names its types with the schema unquoted: a reserved word opened a
    # store halfway (its schema made) and then failed with a bare "syntax error".
    existed = _schema_exists(reserved_schema)
    url = f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}schema={reserved_schema}"
    with pytest.raises(StoreURLError, match="schema 'order' .* reserves"):
        open_log(url)
    assert _schema_exists(reserved_schema) == existed


def test_a_pool_with_every_connection_in_use_is_busy_not_unreachable(postgres_url):
    # Every connection of the pool held by this process's other work (a web server's
    # threads): the store answers, so this is a busy store (503, try again), not one that
    # cannot be reached.
    log = open_log(postgres_url)
    pool = log.backend.datastore.pool
    held = [pool.getconn() for _ in range(pool.max_size)]
    try:
        pool.timeout = 0.2
        with pytest.raises(StoreBusy, match=r"busy: .*10 connections .* in use"):
            with log.backend.transaction(write=False):
                pass
    finally:
        for conn in held:
            pool.putconn(conn)
        log.close()


def test_a_pool_that_cannot_connect_says_why(postgres_url):
    # The server gone once the store was open: the pool's timeout is reported with the
    # server's own reason, as when the store is opened.
    log = open_log(postgres_url)
    pool = log.backend.datastore.pool
    try:
        pool.timeout = 0.2
        log.backend._connect_kwargs["port"] = pool.kwargs["port"] = 1  # nothing listens there
        schema = postgres_url.rsplit("schema=", 1)[1]
        with server_connection(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                ("flowledger/" + schema,),
            )
        with pytest.raises(StoreError, match="cannot reach the store .*refused") as caught:
            with log.backend.transaction(write=False):
                pass
        assert not isinstance(caught.value, StoreBusy)
    finally:
        log.close()


def test_sslmode_in_the_url_is_honoured(postgres_url):
    # ?sslmode=require was dropped silently: the store connected in plain text.
    with server_connection(POSTGRES) as conn:
        if conn.execute("SHOW ssl").fetchone()[0] == "on":
            pytest.skip("the test server speaks TLS: sslmode=require would pass either way")
    with pytest.raises(StoreError, match="SSL"):
        open_log(postgres_url + "&sslmode=require")
    open_log(postgres_url + "&sslmode=disable").close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("schem=flows", "unknown parameter 'schem'"),
        ("schema=", "schema ''"),
        ("schema=a&schema=b", "names schema twice"),
        ("password=hunter2", "unknown parameter 'password'"),
    ],
)
def test_url_parameters_flowledger_does_not_take_are_refused(query, expected):
    # Silently dropped before: a misspelt schema put the store in public.
    from flowledger.store.postgres import parse_url

    with pytest.raises(StoreURLError, match=expected) as caught:
        parse_url("postgresql://me:s3cret@db.example/flows?" + query)
    assert "s3cret" not in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_schema_with_the_pg_prefix_is_refused_clearly():
    from flowledger.store.postgres import parse_url

    with pytest.raises(StoreURLError, match="pg_ prefix"):
        parse_url("postgresql://me@db.example/flows?schema=pg_flows")


def _connections_of(schema: str) -> int:
    """How many connections the server holds for a store in ``schema`` (by the application
    name its pool gives them), once those just closed are gone: a server process ends a
    moment after its client closes (under load, still listed at the next look), while a
    pool left open keeps its connections for good."""
    def held() -> int:
        with server_connection(POSTGRES) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (f"flowledger/{schema}",)
            ).fetchone()
            return row[0]

    wait_until(lambda: held() == 0, 10)
    return held()


def test_a_store_that_fails_to_open_leaves_no_pool_behind(postgres_url, monkeypatch):
    # Its pool was opened by the first look at the tables and never closed: two
    # connections held on the server and four threads in the process for as long as the
    # error was kept (its traceback holds the store), more for every failed try.
    import threading

    from flowledger.store import postgres

    schema = postgres_url.rsplit("schema=", 1)[1]
    threads = threading.active_count()
    errors = []
    for _ in range(3):
        with pytest.raises(StoreError, match="no flowledger store") as failed:
            open_log(postgres_url, create=False)
        errors.append(failed)
    assert threading.active_count() == threads
    assert _connections_of(schema) == 0

    # Failures once the store exists (its upgrade) or while it is being made alike.
    def fail(*args, **kwargs):
        raise StoreError("made to fail")

    monkeypatch.setattr(postgres.PostgresApplicationRecorder, "create_table", fail)
    with pytest.raises(StoreError, match="made to fail") as failed:
        open_log(postgres_url)
    errors.append(failed)
    monkeypatch.undo()
    open_log(postgres_url).close()
    monkeypatch.setattr(postgres.PostgresBackend, "upgrade", fail)
    with pytest.raises(StoreError, match="made to fail") as failed:
        open_log(postgres_url)
    errors.append(failed)
    assert threading.active_count() == threads
    assert _connections_of(schema) == 0


@pytest.mark.parametrize(
    ("servers", "host", "port"),
    [
        ("h1:5433,h2", "h1,h2", "5433,5432"),
        ("[::1]:6000,DB.example.com:6001", "::1,db.example.com", "6000,6001"),
        ("h1,h2,h3", "h1,h2,h3", "5432,5432,5432"),
        ("%2FRun%2Fpg:5433,H2", "/Run/pg,h2", "5433,5432"),
    ],
)
def test_a_url_may_list_several_servers_as_libpq_does(servers, host, port):
    from flowledger.store.postgres import parse_url

    settings = parse_url(f"postgresql://u:secret@{servers}/db?target_session_attrs=read-write")
    assert (settings["host"], settings["port"], settings["user"], settings["password"]) == (host, port, "u", "secret")
    assert settings["params"] == {"target_session_attrs": "read-write"}


@pytest.mark.parametrize(
    ("servers", "said"),
    [
        ("h1,:5433", "its server 2 (':5433') names no host"),
        ("h1,", "its server 2 ('') names no host"),
        ("h1:0,h2", "the port of its server 1 ('h1:0') is not a number from 1 to 65535"),
        ("h1,h2:x", "the port of its server 2 ('h2:x') is not a number from 1 to 65535"),
        ("h1,[::1:5432", "its host has an unclosed ["),
        ("h1,[::1]5432", "its server 2 ('[::1]5432') is not host[:port]"),
    ],
)
def test_a_list_of_servers_with_a_fault_is_refused_naming_it(servers, said):
    # It was refused as "its port is not a number from 1 to 65535", whatever was wrong.
    with pytest.raises(StoreURLError) as refused:
        open_log(f"postgresql://u:secret@{servers}/db")
    assert said in str(refused.value) and "secret" not in str(refused.value)


def test_a_store_is_reached_through_the_first_listed_server_that_answers(postgres_url):
    # libpq tries each in turn: a primary and its standbys, target_session_attrs=read-write
    # picking the one that takes writes.
    at = postgres_url.index("@") + 1
    url = postgres_url[:at] + "127.0.0.1:1," + postgres_url[at:] + "&target_session_attrs=read-write"
    log = open_log(url)
    try:
        assert log.backend.path.startswith("postgresql://") and "@127.0.0.1:1," in log.backend.path
        ledger.append_input(log, jsonl([triggered("r-failover")]))
        assert ledger.query(log, queries.show_run, "r-failover")["status"] == "pending"
    finally:
        log.close()


def test_writes_refused_as_read_only_are_tried_on_new_connections_next_time(postgres_url):
    # As after a failover: the pool's connections are to the old primary, now a standby,
    # and each write on them was refused until they aged out (an hour) or the process
    # ended. New connections find the server that takes writes (with the servers listed
    # and target_session_attrs=read-write); here the same server, on fresh sessions.
    log = open_log(postgres_url)
    try:
        ledger.append_input(log, jsonl([triggered("r-before")]))
        pool = log.backend.datastore.pool
        held = [pool.getconn() for _ in range(pool.get_stats()["pool_size"])]
        for conn in held:
            conn.execute("SET SESSION default_transaction_read_only = on")
            conn.commit()
            pool.putconn(conn)
        with pytest.raises(StoreError, match="is read-only here"):
            ledger.append_input(log, jsonl([triggered("r-failover")]))
        result, _ = ledger.append_input(log, jsonl([triggered("r-failover")]))
        assert result.appended == 1
    finally:
        log.close()


@contextmanager
def _unix_socket_relay(folder: str, target: tuple[str, int]) -> Iterator[None]:
    """A Unix socket in ``folder``, as a server on this machine listens on, relayed to the
    test server's TCP address."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(os.path.join(folder, f".s.PGSQL.{target[1]}"))
    listener.listen()
    listener.settimeout(0.05)  # woken to see whether to stop: a closed socket does not wake accept()
    stop = threading.Event()
    opened: list[socket.socket] = []
    pumps: list[threading.Thread] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            server = socket.create_connection(target)
            opened.extend((client, server))
            for a, b in ((client, server), (server, client)):
                pumps.append(threading.Thread(target=_Proxy._pump, args=(a, b), daemon=True))
                pumps[-1].start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield
    finally:
        stop.set()
        acceptor.join()
        listener.close()
        for s in opened:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in pumps:
            t.join()
        for s in opened:
            s.close()


def test_a_store_is_reached_through_a_unix_socket(postgres_url):
    # libpq's two ways: the socket's folder as host= with no host after the @, or the
    # folder percent-encoded after the @. host= was refused as an unknown parameter, and a
    # percent-encoded folder taken for a host name (lower-cased).
    from flowledger.store.postgres import parse_url

    s = parse_url(postgres_url)
    at = f"@{s['host']}:{s['port']}/"
    if at not in postgres_url:
        pytest.skip(f"FLOWLEDGER_TEST_POSTGRES names its server otherwise than host:port: {POSTGRES}")
    folder = tempfile.mkdtemp(prefix="flSock")  # short: a socket's path has at most 107 bytes
    try:
        with _unix_socket_relay(folder, (s["host"], s["port"])):
            for run, url in (
                ("r-host", postgres_url.replace(at, "@/", 1) + f"&host={folder}"),
                ("r-encoded", postgres_url.replace(at, f"@{quote(folder, safe='')}:{s['port']}/", 1)),
            ):
                log = open_log(url)
                try:
                    assert log.backend.path.startswith(f"postgresql://{s['user']}@{quote(folder, safe='')}:{s['port']}/")
                    ledger.append_input(log, jsonl([triggered(run)]))
                    assert ledger.query(log, queries.show_run, run)["status"] == "pending"
                finally:
                    log.close()
    finally:
        shutil.rmtree(folder)


def test_a_server_named_twice_is_refused():
    with pytest.raises(StoreURLError, match="names its server twice: after the @ and as host="):
        open_log("postgresql://u@db.example.com/db?host=/var/run/postgresql")


def test_a_url_without_a_password_leaves_it_to_pgpassword(postgres_url, monkeypatch):
    # An empty password was passed on, and libpq then never looked at PGPASSWORD: the
    # password had to be written in the URL (and so showed in process listings).
    from flowledger.store.postgres import parse_url

    if parse_url(postgres_url)["password"]:
        pytest.skip("FLOWLEDGER_TEST_POSTGRES carries a password of its own")
    monkeypatch.setenv("PGPASSWORD", "from-the-environment")
    log = open_log(postgres_url)
    try:
        with log.backend.datastore.get_connection() as conn:
            assert conn.info.password == "from-the-environment"
    finally:
        log.close()
    at = postgres_url.index("@")
    with_one = postgres_url[:at] + ":in-the-url" + postgres_url[at:]
    log = open_log(with_one)
    try:
        with log.backend.datastore.get_connection() as conn:
            assert conn.info.password == "in-the-url"
        assert "in-the-url" not in log.backend.path
    finally:
        log.close()
