"""Mutation review of the PostgreSQL driver seam (flowledger/store/postgres.py) and of the
second process that reads a large input (flowledger/ingest_process.py): tests that kill the
hand-made mutants the other tests let live. They pin how a store URL is read (percent-decoded
names, libpq's defaults, no database, blank settings, schema names PostgreSQL would truncate
or that would need quoting or are type-name keywords) and that its settings reach the pool;
that stores opened together are made once; that a read transaction sees one snapshot and
keeps nothing; that a writer waiting on another's lock gives up after the lock timeout in
seconds (the store's, or a transaction's own shorter one), saying so; that connections the
network dropped are replaced as a transaction begins, and a second dead one is a lost
connection; that a full pool is told after one wait; that a read-only role's refusal is told plainly
when the server cannot be asked more; that views keep BIGINT positions and DOUBLE
PRECISION durations; and that the reading child keeps refused events' text, is ended
when the append fails, ignores Ctrl-C, and a frame cut short is a failed reader. The
PostgreSQL tests skip, saying why, where no server answers (tests/conftest.py)."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import threading
import time

import orjson
import pytest
from click.testing import CliRunner

from flowledger import ingest_process, ledger
from flowledger.cli import cli
from flowledger.errors import ConnectionLost, StoreBusy, StoreError, StoreUnavailable, StoreURLError
from flowledger.store import open_log
from flowledger.store.log import EventLog
from flowledger.store import postgres
from flowledger.store.postgres import parse_url
from tests.conftest import POSTGRES, POSTGRES_UNREACHABLE, ev, server_connection, step, triggered
from tests.histories import jsonl
from tests import test_small_fixes

needs_postgres = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


def _schema(url: str) -> str:
    return parse_url(url)["schema"]


def _stored(url: str) -> int:
    """How many events the store's log holds, seen from outside flowledger."""
    with server_connection(url) as conn:
        return conn.execute(f'SELECT count(*) FROM "{_schema(url)}".stored_events').fetchone()[0]


# --- the URL ------------------------------------------------------------------------------


def test_a_url_s_user_password_and_database_are_percent_decoded():
    """A user, password or database name holding @, / or : is written percent-encoded."""
    s = parse_url("postgresql://us%40er:p%40ss%2Fw%3Ard@db.example:6000/my%2Fdb?schema=flows")
    assert (s["user"], s["password"], s["dbname"], s["host"], s["port"]) == (
        "us@er", "p@ss/w:rd", "my/db", "db.example", 6000,
    )


def test_a_url_without_port_user_or_host_takes_libpq_s_defaults():
    """No port is 5432, no user is postgres, no host is the local machine (127.0.0.1)."""
    s = parse_url("postgresql:///test")
    assert (s["host"], s["port"], s["user"], s["password"], s["schema"]) == ("127.0.0.1", 5432, "postgres", None, "public")


@pytest.mark.parametrize("url", ["postgresql://postgres@h", "postgresql://postgres@h/", "postgresql://postgres@h:5432/?schema=flows"])
def test_a_url_naming_no_database_is_refused(url):
    """No database in the URL is refused (libpq would take the user's name for one, and
    open a store in a database no one meant)."""
    with pytest.raises(StoreURLError, match="it names no database"):
        parse_url(url)


@pytest.mark.parametrize("query", ["sslmode=", "sslmode=%20", "keepalives_idle="])
def test_a_blank_connection_setting_is_refused(query):
    """libpq reads a blank setting as unset: ?sslmode= would connect as if it were not there."""
    with pytest.raises(StoreURLError, match="gives .* no value"):
        parse_url(f"postgresql://postgres@h/test?schema=flows&{query}")


def test_a_schema_name_postgresql_would_truncate_is_refused():
    """63 characters is PostgreSQL's longest name: a longer one would silently be cut (two
    stores with the same first 63 characters would share a schema)."""
    assert parse_url("postgresql://postgres@h/test?schema=" + "s" * 63)["schema"] == "s" * 63
    with pytest.raises(StoreURLError, match="expected lower-case letters, digits and _"):
        parse_url("postgresql://postgres@h/test?schema=" + "s" * 64)


@pytest.mark.parametrize("schema", ["%22flows", "flows%22", "Flows", "1flows", "flo-ws", "flo%20ws", ""])
def test_a_schema_name_that_would_need_quoting_is_refused(schema):
    """Only lower-case letters, digits and _ (not first a digit): the name is written in
    double quotes and unquoted in SQL, so a quote or a capital must never get through."""
    with pytest.raises(StoreURLError, match="expected lower-case letters, digits and _"):
        parse_url(f"postgresql://postgres@h/test?schema={schema}")


# --- transactions -------------------------------------------------------------------------


@needs_postgres
def test_the_url_s_connection_settings_reach_every_connection_of_the_pool(postgres_url):
    """libpq settings in the URL are used by the transactions' connections, not only by the
    first one that opens the store."""
    log = open_log(postgres_url + "&sslmode=disable&keepalives_idle=7&target_session_attrs=read-write")
    try:
        with log.backend.transaction(write=False) as c:
            used = c.raw.connection.info.get_parameters()
    finally:
        log.close()
    assert (used.get("sslmode"), used.get("keepalives_idle"), used.get("target_session_attrs")) == ("disable", "7", "read-write")


@needs_postgres
def test_a_read_transaction_sees_one_snapshot_and_keeps_nothing_it_wrote(postgres_url):
    """A read sees the log as it was when it began (REPEATABLE READ), however many
    statements it runs while others append, and is rolled back."""
    log = open_log(postgres_url)
    try:
        ledger.append_input(log, jsonl([triggered("r1")]))
        with log.backend.transaction(write=False) as c:
            before = log.backend.count_events(c)
            ledger.append_input(log, jsonl([triggered("r2")]))  # another transaction, committed
            assert log.backend.count_events(c) == before == 1
            c.execute("INSERT INTO flowledger_meta VALUES ('hpg:written-by-a-read', 'x')")
        assert log.count() == 2
        with server_connection(postgres_url) as conn:
            assert conn.execute(
                f"SELECT count(*) FROM \"{_schema(postgres_url)}\".flowledger_meta WHERE key = 'hpg:written-by-a-read'"
            ).fetchone()[0] == 0
    finally:
        log.close()


def _behind_the_events_lock(postgres_url: str, log: EventLog, act) -> tuple[object, float]:
    """What ``act()`` ended with ("done" or its error) and the seconds it took, run while
    another session holds the events table's lock (released after 6 s at most); closes ``log``."""
    holder = server_connection(postgres_url)
    holder.execute(f'LOCK TABLE "{_schema(postgres_url)}".stored_events IN EXCLUSIVE MODE')
    outcome: list[object] = []

    def run() -> None:
        started = time.monotonic()
        try:
            act()
            outcome.append("done")
        except Exception as e:  # noqa: BLE001  # what it was is the test's to see
            outcome.append(e)
        outcome.append(time.monotonic() - started)

    worker = threading.Thread(target=run)
    try:
        worker.start()
        worker.join(6)
    finally:
        holder.rollback()
        holder.close()
        worker.join(60)
        log.close()
    error, waited = outcome
    return error, waited


@needs_postgres
def test_a_writer_waiting_on_another_s_lock_gives_up_after_the_lock_timeout_in_seconds(postgres_url):
    """Another session holds the events table's lock: an append waits --lock-timeout
    seconds (not milliseconds, not for ever), then is busy, saying so, and stores nothing."""
    open_log(postgres_url).close()
    log = open_log(postgres_url, lock_timeout=0.7)
    error, waited = _behind_the_events_lock(postgres_url, log, lambda: ledger.append_input(log, jsonl([triggered("r1")])))
    assert isinstance(error, StoreBusy), error
    assert "held a lock this one needs for more than 0.7 s; try again, or raise --lock-timeout" in str(error)
    assert 0.5 <= waited < 5, waited
    assert _stored(postgres_url) == 0


@needs_postgres
def test_a_pool_with_no_connection_free_says_so_after_one_wait_not_two(postgres_url):
    """No connection to be had is no lost connection: it is not tried again (which would
    wait the pool's whole timeout a second time)."""
    log = open_log(postgres_url)
    pool = log.backend.datastore.pool
    held = [pool.getconn() for _ in range(pool.max_size)]
    try:
        pool.timeout = 2.0
        started = time.monotonic()
        with pytest.raises(StoreBusy, match="in use for 2 s"):
            log.count()
        assert time.monotonic() - started < 3.5  # one wait, not two (4 s)
    finally:
        for conn in held:
            pool.putconn(conn)
        log.close()


# --- schemas ------------------------------------------------------------------------------


@pytest.fixture
def type_name_schema():
    """A schema named by a word PostgreSQL reserves as a type or column name (int), dropped
    after the test if it was made by it."""
    name = "int"

    def exists() -> bool:
        with server_connection(POSTGRES) as conn:
            return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone() is not None

    existed = exists()
    yield name, existed, exists
    if not existed and exists():
        with server_connection(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@needs_postgres
def test_a_schema_named_by_a_type_name_keyword_is_refused_before_anything_is_made(type_name_schema):
    """`int`, `time` or `between` written unquoted before a dot is a syntax error to the
    server, as a fully reserved word is: refused as one, with no schema made."""
    name, existed, exists = type_name_schema
    with pytest.raises(StoreURLError, match=f"schema '{name}' .* a word PostgreSQL reserves"):
        open_log(f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}schema={name}")
    assert exists() == existed


# --- the second process reading an input (flowledger/ingest_process.py) ---------------------


def test_an_append_that_fails_ends_its_reader_at_once_though_the_pipe_stays_open(monkeypatch, tmp_path):
    """An append stopped part way (a refused write, Ctrl-C) ends the process reading its
    input: it does not wait for whoever writes the pipe to close it."""
    monkeypatch.setattr(ledger, "worth_forking", lambda stream: True)  # threads other tests left
    monkeypatch.setattr(ingest_process, "FIRST_CHUNK", 2)
    data = b"".join(orjson.dumps(triggered(f"slow-{i}")) + b"\n" for i in range(20))
    (tmp_path / "in.jsonl").write_bytes(data)

    def failing(self, *args):
        raise RuntimeError("the append failed")

    monkeypatch.setattr(EventLog, "_append_chunk", failing)
    log = open_log(str(tmp_path / "f.db"))
    # A writer that sends its first events, then keeps the pipe open a while.
    with subprocess.Popen(["sh", "-c", f"cat {tmp_path / 'in.jsonl'}; sleep 20"], stdout=subprocess.PIPE) as writer:
        try:
            started = time.monotonic()
            with pytest.raises(RuntimeError, match="the append failed"):
                ledger.append_input(log, writer.stdout)
            assert time.monotonic() - started < 10  # not the writer's 20 s
        finally:
            writer.kill()
            log.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the reader was waited for


@pytest.fixture
def forked(monkeypatch):
    """Every input read by a child (whatever its size, whatever threads other tests left), in
    small chunks."""
    monkeypatch.setattr(ledger, "worth_forking", lambda stream: True)
    monkeypatch.setattr(ingest_process, "FIRST_CHUNK", 2)


def test_an_input_read_by_a_child_keeps_each_refused_event_s_text_for_the_skip_file(forked, tmp_path):
    """`append --skip-invalid`: an event the store refuses (a run never triggered) is written
    aside with its own input text, as when the input is read in this process."""
    ghost = ev("run.completed", run_id="ghost")
    path, skip = tmp_path / "in.jsonl", tmp_path / "rejected.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in [triggered("r1"), triggered("r2"), ghost, triggered("r3")]))
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "f.db"), "append", str(path), "--skip-invalid", str(skip)])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == {"appended": 3, "duplicates": 0, "skipped": 1}
    (rejected,) = [orjson.loads(x) for x in skip.read_text().splitlines()]
    assert rejected["line"] == 3 and orjson.loads(rejected["input"]) == ghost


def test_a_reader_that_dies_in_the_middle_of_a_frame_stores_nothing_and_says_so(forked, monkeypatch, tmp_path):
    """The child ends part way through a large frame sent down the pipe: the append fails as
    a failed reader (nothing stored), not with a bare unpickling error."""

    def dying(self, frame):
        self.notices.write(ingest_process._NOTICE.pack(ingest_process._IN_PIPE, 0, 1000))
        self.notices.write(b"\x80\x05 cut short")
        self.notices.flush()
        os._exit(1)

    monkeypatch.setattr(ingest_process._Sender, "send", dying)
    log = open_log(str(tmp_path / "f.db"))
    try:
        with pytest.raises(ingest_process.ReaderFailed, match="ended before the input did; nothing was stored"):
            ledger.append_input(log, io.BytesIO(orjson.dumps(triggered("r1")) + b"\n"))
        assert log.count() == 0
    finally:
        log.close()


def test_ctrl_c_reaching_the_reading_child_is_left_to_this_process(forked, monkeypatch, tmp_path):
    """A terminal's Ctrl-C reaches the child too: the child ignores it (this process decides
    what an interruption does), so its reading is not what fails."""
    candidates = ingest_process.candidates

    def interrupted(items, options, rejected):
        os.kill(os.getpid(), signal.SIGINT)  # in the child
        yield from candidates(items, options, rejected)

    monkeypatch.setattr(ingest_process, "candidates", interrupted)
    log = open_log(str(tmp_path / "f.db"))
    try:
        result, rejected = ledger.append_input(log, io.BytesIO(b"".join(orjson.dumps(triggered(f"r{i}")) + b"\n" for i in range(5))))
        assert (result.appended, rejected) == (5, [])
    finally:
        log.close()


# --- a connection the network drops ---------------------------------------------------------


class _Proxy:
    """A TCP relay to the test server that can cut every connection through it at once, as
    a network failure or a failover does: the client sees its socket closed, with no
    message from the server (no SQLSTATE)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.closed = threading.Event()
        # Woken now and then to see whether it is closed: closing a socket does not wake an
        # accept() blocked on it, and a thread left running stops later tests' inputs from
        # being read by a forked child (ingest_process.worth_forking).
        self.listener.settimeout(0.05)
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            server = socket.create_connection(self.target)
            with self.lock:
                self.pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Drop every connection made so far (new ones are relayed again)."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self.closed.set()
        self.acceptor.join()
        self.listener.close()
        self.cut()


@needs_postgres
def test_connections_the_network_dropped_are_replaced_as_a_transaction_begins(postgres_url):
    """The network drops the pool's idle connections (no word from the server): the next
    transaction begins on a fresh connection and nothing fails."""
    s = parse_url(postgres_url)
    proxy = _Proxy(s["host"], s["port"])
    if f"@{s['host']}:{s['port']}/" not in postgres_url:
        proxy.close()
        pytest.skip("the test server's URL names no host:port to relay")
    url = postgres_url.replace(f"@{s['host']}:{s['port']}/", f"@127.0.0.1:{proxy.port}/", 1)
    log = open_log(url)
    try:
        ledger.append_input(log, jsonl([triggered("r1")]))
        assert log.count() == 1
        proxy.cut()
        assert log.count() == 1
        ledger.append_input(log, jsonl([triggered("r2")]))
        assert log.count() == 2
    finally:
        log.close()
        proxy.close()


@needs_postgres
def test_processes_opening_a_new_store_together_make_it_once(postgres_url):
    """Several processes (here threads, each with its own connections) opening the same new
    store at once: each opens it, none fails racing another to make its schema or tables,
    and they share one store id."""
    opened: list[object] = []
    go = threading.Barrier(6)

    def open_it() -> None:
        go.wait()
        try:
            log = open_log(postgres_url)
        except Exception as e:  # noqa: BLE001  # what it was is the test's to see
            opened.append(e)
            return
        opened.append(log.backend.store_identity())
        log.close()

    openers = [threading.Thread(target=open_it) for _ in range(6)]
    for t in openers:
        t.start()
    for t in openers:
        t.join(60)
    assert len(opened) == 6 and len(set(opened)) == 1 and isinstance(opened[0], str), opened


# --- column types -------------------------------------------------------------------------


def _cli(url: str, *args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["--store", url, *args], input=input, catch_exceptions=False)


def _lines(*events: dict) -> str:
    return "".join(orjson.dumps(e).decode() + "\n" for e in events)


@needs_postgres
def test_a_step_s_duration_keeps_its_milliseconds_over_a_day(postgres_url):
    """A view's REAL is PostgreSQL's DOUBLE PRECISION (its own REAL keeps about 6 digits: a
    day and 123 ms would read 86400.125)."""
    events = [
        triggered("r1"), ev("run.started", run_id="r1"), step("step.started", "r1"),
        step("step.succeeded", "r1", occurred_at="2026-11-02T09:00:00.123Z"),
    ]
    assert _cli(postgres_url, "append", "-", input=_lines(*events)).exit_code == 0
    shown = _cli(postgres_url, "runs", "show", "r1", "--json")
    assert shown.exit_code == 0, shown.output
    assert orjson.loads(shown.stdout)["steps"][0]["duration_seconds"] == 86400.123


@needs_postgres
def test_positions_past_two_to_the_31_are_folded_and_shown(postgres_url):
    """A view's INTEGER is PostgreSQL's BIGINT: a log whose positions passed 2**31 (a long
    life, a sequence moved on) is still folded into the views."""
    open_log(postgres_url).close()
    with server_connection(postgres_url, autocommit=True) as conn:
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('\"{_schema(postgres_url)}\".stored_events', 'notification_id'), %s)",
            (2**31 + 10,),
        )
    assert _cli(postgres_url, "append", "-", input=_lines(triggered("r1"), ev("run.started", run_id="r1"))).exit_code == 0
    listed = _cli(postgres_url, "runs", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in orjson.loads(listed.stdout)["entries"]] == ["r1"]


def test_a_server_that_closes_each_new_connection_cannot_be_reached_not_lost():
    """Opening a store where something accepts the connection and closes it at once (a
    server shutting down, a proxy with no backend): the store cannot be reached; no
    connection was ever had, so none was lost."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    done = threading.Event()
    listener.settimeout(0.05)  # to see `done` (closing it does not wake its accept())

    def close_each() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    closer = threading.Thread(target=close_each, daemon=True)
    closer.start()
    try:
        with pytest.raises(StoreUnavailable) as raised:
            open_log(f"postgresql://postgres@127.0.0.1:{port}/test?schema=flows")
    finally:
        done.set()
        closer.join()
        listener.close()
    assert not isinstance(raised.value, ConnectionLost)
    assert str(raised.value).startswith(f"cannot reach the store postgresql://postgres@127.0.0.1:{port}/test: ")
    assert "Traceback" not in str(raised.value)


@needs_postgres
def test_a_transaction_s_own_lock_timeout_is_shorter_than_the_store_s(postgres_url):
    """A write given a lock timeout of its own (a webhook's short wait) gives up after it,
    not after the store's --lock-timeout."""
    log = open_log(postgres_url, lock_timeout=30)

    def write() -> None:
        with log.backend.transaction(write=True, append=True, lock_timeout=0.3):
            pass

    error, waited = _behind_the_events_lock(postgres_url, log, write)
    assert isinstance(error, StoreBusy), error
    assert waited < 5, waited


@needs_postgres
def test_a_transaction_that_finds_a_dead_connection_twice_says_the_connection_was_lost(postgres_url, monkeypatch):
    """Begun again once on another connection, a transaction that finds that one dead too
    fails as a lost connection (try again), never as an error of flowledger's own."""
    s = parse_url(postgres_url)
    proxy = _Proxy(s["host"], s["port"])
    if f"@{s['host']}:{s['port']}/" not in postgres_url:
        proxy.close()
        pytest.skip("the test server's URL names no host:port to relay")
    log = open_log(postgres_url.replace(f"@{s['host']}:{s['port']}/", f"@127.0.0.1:{proxy.port}/", 1))
    try:
        pool = log.backend.datastore.pool
        held = [pool.getconn() for _ in range(2)]  # two connections in the pool, both idle
        for conn in held:
            pool.putconn(conn)
        proxy.cut()
        # The pool's test of its idle connections not run (or not finding them dead yet).
        monkeypatch.setattr(pool, "check", lambda: None)
        with pytest.raises(ConnectionLost, match="was lost .*; try again"):
            log.count()
        monkeypatch.undo()
        assert log.count() == 0
    finally:
        log.close()
        proxy.close()


# --- a role that may only read --------------------------------------------------------------


read_only_role = test_small_fixes.read_only_role  # a fixture, shared


@pytest.fixture
def reader_role(read_only_role):
    """test_small_fixes' read-only role and its URL, its sessions ended before it is dropped
    (the test leaves a pool's connections open)."""
    role, url, _ = read_only_role
    yield role, url
    with server_connection(POSTGRES, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))


@needs_postgres
def test_a_refusal_the_store_cannot_explain_further_is_still_told_plainly(postgres_url, reader_role):
    """A read-only role refused a table, whose extra connection to find out why is refused
    too (it may no longer log in; its pool's connections stay): its error is the server's
    reason, as a flowledger error (no psycopg error)."""
    role, url = reader_role
    assert _cli(postgres_url, "append", "-", input=_lines(triggered("r1"))).exit_code == 0
    assert _cli(postgres_url, "project").exit_code == 0  # views its grant does not cover
    log = open_log(url, create=False)
    try:
        log.backend.datastore.pool.wait(10)  # the pool's connections made while it may log in
        with server_connection(POSTGRES, autocommit=True) as admin:
            admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
        with pytest.raises(StoreError) as raised:
            with log.backend.transaction(write=False) as c:
                c.execute("SELECT * FROM runs")
    finally:
        log.close()
    assert f"read-only here for role '{role}': permission denied for table runs" in str(raised.value), raised.value


# --- the wait for the write-ahead log's flush before a VACUUM ------------------------------


class _FlushingServer:
    """A connection's stand-in whose write-ahead log is flushed at its ``flushed_at``-th look
    (never, if None), with a clock that moves only as the waiter sleeps."""

    def __init__(self, flushed_at: int | None) -> None:
        self.flushed_at, self.looks, self.now = flushed_at, 0, 100.0

    def execute(self, sql: str, params: tuple = ()):
        if "pg_current_wal_insert_lsn" in sql:
            return _Rows(("3/5A000028",))
        assert "pg_current_wal_flush_lsn() >= " in sql and params == ("3/5A000028",), (sql, params)
        self.looks += 1
        return _Rows((self.flushed_at is not None and self.looks >= self.flushed_at,))

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class _Rows:
    def __init__(self, row: tuple) -> None:
        self.row = row

    def fetchone(self) -> tuple:
        return self.row


@pytest.mark.parametrize("flushed_at", [1, 4])
def test_a_vacuum_s_wait_for_the_flush_ends_as_the_log_is_flushed_as_far_as_it_was_written(monkeypatch, flushed_at):
    server = _FlushingServer(flushed_at)
    monkeypatch.setattr(postgres, "monotonic", lambda: server.now)
    monkeypatch.setattr(postgres, "sleep", server.sleep)
    postgres._await_wal_flush(server, 0.2)  # noqa: SLF001
    assert server.looks == flushed_at
    assert server.now - 100.0 == pytest.approx(0.005 * (flushed_at - 1))


def test_a_vacuum_s_wait_for_a_flush_that_never_comes_ends_after_three_wal_writer_delays_and_a_second(monkeypatch):
    # wal_writer_delay: 200 ms
    server = _FlushingServer(None)
    monkeypatch.setattr(postgres, "monotonic", lambda: server.now)
    monkeypatch.setattr(postgres, "sleep", server.sleep)
    postgres._await_wal_flush(server, 0.2)  # noqa: SLF001
    assert 1.6 <= server.now - 100.0 < 1.6 + 0.006


# --- the VACUUM's passes over tables it left with pages unmarked ------------------------------


class _VacuumingServer:
    """A connection's stand-in holding tables of 10 pages each, where each VACUUM of a table
    leaves as many of them marked all visible as the next of its ``marks``."""

    def __init__(self, marks: dict[str, list[int]]) -> None:
        self.marks = marks
        self.visible = dict.fromkeys(marks, 0)
        self.vacuumed: list[list[str]] = []
        self.slept: list[float] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def execute(self, sql: str, params: tuple = ()):
        if sql.startswith("SET lock_timeout") or "pg_current_wal" in sql:
            return _Rows((True,))  # (flushed at once)
        if "pg_settings" in sql:
            return _Rows((200,))
        if sql.startswith("VACUUM (INDEX_CLEANUP ON) "):
            tables = [name.split(".")[1].strip('"') for name in sql.removeprefix("VACUUM (INDEX_CLEANUP ON) ").split(", ")]
            self.vacuumed.append(tables)
            for table in tables:
                self.visible[table] = self.marks[table][sum(table in done for done in self.vacuumed) - 1]
            return _Rows(())
        assert "relallvisible < c.relpages" in sql and params[0] == "s", (sql, params)
        return [(table, self.visible[table]) for table in sorted(params[1]) if self.visible[table] < 10]


@pytest.mark.parametrize(
    "marks, passes",
    [
        ([10], 1),  # every page marked at once
        ([0, 10], 2),  # none at first (its neighbours' commits not yet flushed), all at the next
        ([4, 4], 2),  # the second pass marked nothing more: a third would not either
        ([0, 0], 2),
        ([4, 7, 7], 3),  # the second marked more: a third is worth its wait
        ([4, 7, 9, 10], 3),  # and no more than three in all
    ],
)
def test_a_vacuum_passes_again_while_its_passes_mark_more_and_three_times_at_most(monkeypatch, marks, passes):
    server = _VacuumingServer({"runs": marks, "deliveries": [10]})
    monkeypatch.setattr(postgres.psycopg, "connect", lambda **kwargs: server)
    monkeypatch.setattr(postgres, "sleep", server.slept.append)
    backend = postgres.PostgresBackend.__new__(postgres.PostgresBackend)
    backend._connect_kwargs, backend.schema, backend.lock_timeout = {}, "s", 5.0  # noqa: SLF001
    backend.vacuum(["deliveries", "runs"])
    assert server.vacuumed == [["deliveries", "runs"]] + [["runs"]] * (passes - 1)
    # Three wal_writer_delays (200 ms) before each pass after the first.
    assert server.slept == [pytest.approx(0.6)] * (passes - 1)
    assert postgres.VACUUM_PASSES == 3
