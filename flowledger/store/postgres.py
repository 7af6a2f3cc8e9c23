"""The PostgreSQL store: eventsourcing's PostgreSQL event store (psycopg 3, a connection
pool) with flowledger's side tables and views in the same database and schema.

Appends lock the events table (``LOCK TABLE … IN EXCLUSIVE MODE``, as eventsourcing's own
recorder does) for their whole transaction, so notification ids commit in the order they
are issued: a projector reading ``> position`` never passes over a transaction still in
flight. Reads are not blocked. Each view's page is applied under a transaction-scoped
advisory lock on the view, so any number of projectors, on any machines, apply each event
to each view exactly once. Driver errors become flowledger errors here, at one seam.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from time import monotonic, sleep
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import psycopg
from eventsourcing.persistence import PersistenceError, Tracking
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresTrackingRecorder,
)
from psycopg.rows import tuple_row
from psycopg_pool import PoolTimeout

from flowledger.errors import ConnectionLost, StoreBusy, StoreError, StoreReadOnly, StoreUnavailable, StoreURLError
from flowledger.store.backend import FLOWLEDGER_TABLES, SCHEMA_VERSION, SQLBackend, new_store_id, shown_url
from flowledger.store.inbox import POSTGRES_TABLES, PostgresInbox

_log = logging.getLogger(__name__)

VACUUM_PASSES = 3
"""How many times :meth:`PostgresBackend.vacuum` may vacuum a table it left with pages unmarked."""

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# The table the server names in a refusal ("permission denied for table runs").
_DENIED_TABLE = re.compile(r"permission denied for (?:table|relation) ([a-z_][a-z0-9_]*)")

# libpq's settings of how to connect that a URL may carry on to the driver (TLS above all:
# dropped, ?sslmode=require would connect in plain text). Anything else is refused.
_PASSED_ON = frozenset({
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir", "sslsni",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "channel_binding", "gssencmode",
    "krbsrvname", "requirepeer", "require_auth", "target_session_attrs", "keepalives",
    "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
})


_INDEXED_BY = re.compile(r" INDEXED BY \w+")


@lru_cache(maxsize=512)
def translate_sql(statement: str) -> str:
    """The SQL flowledger writes (SQLite's: ``?``, INSERT OR IGNORE) in PostgreSQL's."""
    statement = statement.replace("?", "%s")
    # SQLite's index hints (its planner has no statistics; PostgreSQL's has).
    statement = _INDEXED_BY.sub("", statement)
    if statement.startswith("INSERT OR IGNORE INTO"):
        statement = "INSERT INTO" + statement[len("INSERT OR IGNORE INTO") :] + " ON CONFLICT DO NOTHING"
    return statement


def _driver_error(error: BaseException) -> BaseException:
    """The driver's error behind one eventsourcing wrapped."""
    return error.__cause__ if isinstance(error, PersistenceError) and error.__cause__ else error


# The server ended the connection: an administrator (pg_terminate_backend), a shutdown or
# crash, a server still starting, its idle_session_timeout, its idle_in_transaction_session_timeout.
_ENDED_BY_THE_SERVER = frozenset({"57P01", "57P02", "57P03", "57P05", "25P03"})


def _connection_lost(error: BaseException) -> bool:
    """Whether an error means the connection is gone (not a refused or failed statement)."""
    cause = _driver_error(error)
    # No connection to be had from the pool is no lost one: another try waits as long again.
    if not isinstance(cause, psycopg.Error) or isinstance(cause, PoolTimeout):
        return False
    code = cause.sqlstate  # None: the client lost the connection before any answer
    if code in _ENDED_BY_THE_SERVER:
        return True
    return isinstance(cause, psycopg.OperationalError) and (code is None or code.startswith("08"))


def _wal_writer_delay(conn: psycopg.Connection[Any]) -> float:
    """The server's ``wal_writer_delay`` in seconds: a commit made without waiting for the
    disk is flushed within three times it."""
    row = conn.execute("SELECT setting::int FROM pg_settings WHERE name = 'wal_writer_delay'").fetchone()
    return (row[0] if row else 200) / 1000


def _await_wal_flush(conn: psycopg.Connection[Any], delay: float) -> None:
    """Wait until the write-ahead log is on disk as far as it was written when called, at
    most three times ``delay`` (the server's ``wal_writer_delay``) and a second. Read-only:
    no statement a role may lack rights to, nothing written."""
    row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    written = row[0] if row else "0/0"
    deadline = monotonic() + 3 * delay + 1
    # Reached at once where everything was flushed. (Where the log's last record ends at a
    # page's end, the insert position counts the next page's header, never flushed while
    # nothing more is written: the wait then lasts until its bound.)
    while not (conn.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (written,)).fetchone() or (True,))[0]:
        if monotonic() >= deadline:
            return
        sleep(0.005)


def _reset_isolation_level(conn: psycopg.Connection[Any]) -> None:
    """Give a connection back to the pool at its default isolation level (a lost one is
    discarded by the pool: resetting it would only hide why it was lost).

    A connection left mid-statement or mid-transaction (an interruption, such as a
    follower's SIGTERM or Ctrl-C, raised while the server was still answering) cannot
    change its level: psycopg would raise, and that error would replace the interruption
    (as "cannot reach the store"). It is closed instead, and the pool makes another."""
    if conn.closed:
        return
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.close()
        return
    conn.isolation_level = None


@lru_cache(maxsize=256)
def translate_ddl(statement: str) -> str:
    """A CREATE statement written for SQLite, for PostgreSQL."""
    statement = statement.replace(" WITHOUT ROWID", "")
    statement = re.sub(r"\bBLOB\b", "BYTEA", statement)
    statement = re.sub(r"\bREAL\b", "DOUBLE PRECISION", statement)
    # Text compares byte by byte, as SQLite's does: the database's own collation (en_US,
    # ICU) would list workflows and steps in another order than a SQLite copy of the views.
    statement = re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', statement)
    return re.sub(r"\bINTEGER\b", "BIGINT", statement)


class PgCursor:
    """A psycopg cursor that takes the SQL the views and queries write."""

    def __init__(self, cursor: psycopg.Cursor[Any], *, prepare: bool | None = None) -> None:
        self.raw = cursor
        """The psycopg cursor."""
        self.prepare = prepare
        """Whether its statements are prepared: None, the driver's way (a statement run five
        times on a connection is); False, never."""

    def execute(self, statement: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
        """Run one statement."""
        self.raw.execute(translate_sql(statement), params or None, prepare=self.prepare)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row."""
        rows = list(rows)
        if rows:
            self.raw.executemany(translate_sql(statement), rows)

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self.raw.fetchone()

    def fetchmany(self, size: int) -> list[Any]:
        """At most ``size`` of the remaining rows."""
        return self.raw.fetchmany(size)

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        return self.raw.fetchall()

    @property
    def description(self) -> Any:
        """The columns of the last result."""
        return self.raw.description


def parse_url(url: str) -> dict[str, Any]:
    """Connection settings from postgresql://user[:password]@host[:port]/dbname[?schema=name]."""
    # Every message names the URL without its password.
    shown = shown_url(url)
    try:
        parsed = urlparse(url)
        hosts = parsed.netloc.rpartition("@")[2]
        # libpq's list of servers to try in turn (a primary and its standbys, with
        # target_session_attrs=read-write to find the one that takes writes).
        several = _hosts(hosts, shown) if "," in hosts else None
        port = None if several else parsed.port  # urllib checks it only when asked
    except ValueError as e:
        what = "its host has an unclosed [" if "IPv6" in str(e) else "its port is not a number from 1 to 65535"
        raise StoreURLError(
            f"cannot open {shown!r}: {what} (expected postgresql://user[:password]@host[:port]/dbname)"
        ) from None
    query = parse_qs(parsed.query, keep_blank_values=True)
    unknown = sorted(set(query) - _PASSED_ON - {"schema", "host"})
    if unknown:
        # Named without the query: a parameter refused may be a password.
        raise StoreURLError(
            f"unknown parameter {unknown[0]!r} in {shown_url(url.split('?', 1)[0])!r}: expected schema=NAME, "
            f"host=SOCKET_FOLDER or a libpq connection setting ({', '.join(sorted(_PASSED_ON))})"
        )
    twice = sorted(name for name, values in query.items() if len(values) > 1)
    if twice:
        raise StoreURLError(f"{shown!r} names {twice[0]} twice")
    # libpq reads "" as unset: a blank ?sslmode= would connect as if it were not there.
    blank = sorted(name for name, values in query.items() if name != "schema" and not values[0].strip())
    if blank:
        raise StoreURLError(f"{shown!r} gives {blank[0]} no value: expected {blank[0]}=VALUE, or leave it out")
    schema = query.get("schema", ["public"])[0]
    if not _SCHEMA_NAME.match(schema):
        raise StoreURLError(f"schema {schema!r} in {shown!r}: expected lower-case letters, digits and _")
    if schema.startswith("pg_"):
        raise StoreURLError(f"schema {schema!r} in {shown!r}: the pg_ prefix is PostgreSQL's own; choose another name")
    dbname = unquote(parsed.path.lstrip("/"))
    if not dbname:
        raise StoreURLError(f"cannot open {shown!r}: it names no database (postgresql://user@host/dbname)")
    named = hosts.rsplit(":", 1)[0] if port else hosts
    if "host" in query and named:
        raise StoreURLError(f"{shown!r} names its server twice: after the @ and as host=")
    if "host" in query:
        # libpq's way to a Unix socket: no host after the @, the socket's folder as host=.
        host = query["host"][0]
    elif named[:3].lower() == "%2f":
        # The other: the folder percent-encoded after the @ (its case kept, unlike a host name's).
        host = unquote(named)
    else:
        host = parsed.hostname or "127.0.0.1"
    return {
        "dbname": dbname,
        # libpq takes lists as "h1,h2" and "p1,p2".
        "host": ",".join(h for h, _ in several) if several else host,
        "port": ",".join(str(p) for _, p in several) if several else port or 5432,
        "user": unquote(parsed.username or "postgres"),
        # None, not "": libpq then takes PGPASSWORD (a password kept out of the URL, and so
        # out of process listings); an empty one stops it looking there.
        "password": unquote(parsed.password) if parsed.password is not None else None,
        "schema": schema,
        "params": {name: values[0] for name, values in query.items() if name not in ("schema", "host")},
    }


def _hosts(netloc: str, shown: str) -> list[tuple[str, int]]:
    """(host, port) of each server in a URL's list of them ("h1:5432,[::1]:5433,h3")."""
    servers = []
    for i, part in enumerate(netloc.split(","), 1):
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port_text = rest.removeprefix(":") if rest.startswith(":") or not rest else None
        else:
            host, _, port_text = part.partition(":")
        if port_text is None:
            raise StoreURLError(f"cannot open {shown!r}: its server {i} ({part!r}) is not host[:port]")
        if not host:
            raise StoreURLError(f"cannot open {shown!r}: its server {i} ({part!r}) names no host")
        if port_text and not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
            raise StoreURLError(f"cannot open {shown!r}: the port of its server {i} ({part!r}) is not a number from 1 to 65535")
        # A host name's case means nothing; a socket's folder's does.
        servers.append((unquote(host) if host[:3].lower() == "%2f" else host.lower(), int(port_text) if port_text else 5432))
    return servers


def _shown_servers(settings: dict[str, Any]) -> str:
    """The URL's host[:port] list as messages show it (IPv6 addresses in brackets)."""
    hosts, ports = str(settings["host"]).split(","), str(settings["port"]).split(",")
    return ",".join(
        f"{quote(h, safe='')}:{p}" if h.startswith("/") else f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
        for h, p in zip(hosts, ports)
    )


def _schema_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    """Whether the database holds ``schema``."""
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is not None


def _close_quietly(datastore: PostgresDatastore) -> None:
    """Close a datastore whose store failed to open (the failure is what gets reported)."""
    try:
        datastore.close()
    except Exception:  # noqa: BLE001  # the error that ended the opening matters more
        pass


def _refuse_reserved(conn: psycopg.Connection[Any], schema: str, shown: str) -> None:
    """Refuse a schema named by a word the server reserves: eventsourcing writes the schema
    unquoted in one statement (naming its type), which fails on such a word with a bare
    syntax error, after the schema was made."""
    row = conn.execute(
        "SELECT 1 FROM pg_get_keywords() WHERE word = %s AND catcode IN ('R', 'C')", (schema,)
    ).fetchone()
    if row is not None:
        raise StoreURLError(
            f"schema {schema!r} in {shown!r}: a word PostgreSQL reserves; choose another name (like {schema}_flows)"
        )


class PostgresBackend(SQLBackend):
    """An event log, its side tables and the views in one PostgreSQL schema."""

    name = "postgresql"
    tracking_table = "notification_tracking"
    position_column = "notification_id"

    def __init__(self, url: str, *, lock_timeout: float = 60.0, create: bool = True) -> None:
        settings = parse_url(url)
        self._url = url  # password and all: for reopen_url only
        self.path = f"postgresql://{settings['user']}@{_shown_servers(settings)}/{settings['dbname']}"
        """Where the store is (without a password), for messages."""
        self.lock_timeout = lock_timeout
        """Seconds a writer waits for another's lock before giving up."""
        self.schema = settings["schema"]
        """The schema holding every table."""
        with self._errors(connecting=True):
            # One plain connection first: an unreachable server fails here at once, with
            # the driver's reason, rather than after the pool's patient retries. It also
            # holds a lock while the tables are made, so that processes opening a new
            # store together do not race to create them.
            kwargs = {k: settings[k] for k in ("dbname", "host", "port", "user", "password")}
            self._connect_kwargs = {**kwargs, **settings["params"]}
            with psycopg.connect(**self._connect_kwargs, autocommit=True, connect_timeout=5) as setup:
                if self.schema != "public":
                    _refuse_reserved(setup, self.schema, shown_url(url))
                setup.execute("SELECT pg_advisory_lock(hashtext(%s))", ("flowledger:schema:" + self.schema,))
                try:
                    if self.schema != "public" and create and not _schema_exists(setup, self.schema):
                        # Only where there is none (a reader makes nothing): CREATE SCHEMA IF NOT
                        # EXISTS needs CREATE on the database even when the schema exists, which
                        # an appender's role granted just its tables' rows need not have.
                        setup.execute(f'CREATE SCHEMA "{self.schema}"')
                    self._open(settings, create)
                finally:
                    setup.execute("SELECT pg_advisory_unlock(hashtext(%s))", ("flowledger:schema:" + self.schema,))

    def reopen_url(self) -> str | None:
        """The URL the store was opened with, password and all."""
        return self._url

    def _open(self, settings: dict[str, Any], create: bool) -> None:
        self.datastore = PostgresDatastore(
            settings["dbname"],
            settings["host"],
            settings["port"],
            settings["user"],
            settings["password"],
            schema=self.schema,
            originator_id_type="text",
            pool_size=2,
            max_overflow=8,
            lock_timeout=max(1, int(self.lock_timeout)),
            connect_timeout=10,
        )
        try:
            self.datastore.pool.kwargs.update(settings["params"])
            # flowledger's own tables and the views are named without a schema.
            self.datastore.pool.kwargs["options"] = (
                f"-c search_path={self.schema} -c lock_timeout={int(self.lock_timeout * 1000)}"
            )
            # Which store a server's connections serve, as pg_stat_activity shows them.
            self.datastore.pool.kwargs["application_name"] = f"flowledger/{self.schema}"[:63]
            self.recorder = PostgresApplicationRecorder(self.datastore)
            self._tracking = PostgresTrackingRecorder(self.datastore)
            with self.transaction(write=False) as c:
                tables = self.table_names(c)
            if "flowledger_meta" in tables:
                self.upgrade()
                if create:
                    self.give_store_id()
                    if not POSTGRES_TABLES <= tables:  # a store made before they came with it
                        self._give_inbox()
                return
            if not create:
                raise StoreError(f"no flowledger store in {self.path} (schema {self.schema})")
            self.recorder.create_table()
            self._tracking.create_table()
            with self.transaction(write=True) as c:
                for statement in FLOWLEDGER_TABLES:
                    c.execute(translate_ddl(statement))
                c.execute(
                    "INSERT OR IGNORE INTO flowledger_meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                new_store_id(c)
            # The webhook inbox's tables too, by the role making the store: an appender's
            # role granted only the rows of the store's tables could not make them later.
            PostgresInbox(self).make()
        except BaseException:
            # A store that fails to open is never handed back to be closed: its pool's
            # threads and connections would outlive it (a caller trying again leaks more).
            _close_quietly(self.datastore)
            raise

    def _give_inbox(self) -> None:
        """Make the webhook inbox's tables of a store made before they came with it, if this
        role may (as :meth:`give_store_id` gives an id): else a role that may not make them
        has its first webhook that waits for the lock refused."""
        try:
            PostgresInbox(self).make()
        except StoreError:
            pass  # not this role's to make, or busy: a later writer's open makes them

    @contextmanager
    def _errors(self, *, connecting: bool = False) -> Iterator[None]:
        """Driver errors become flowledger's; ``connecting``: a connection lost is one that
        could not be made (opening the store), not one lost by a transaction under way."""
        try:
            yield
        except (psycopg.Error, PersistenceError) as e:
            lost = _connection_lost(e)
            if lost:
                self._discard_broken_connections()
            raise self._translate(e, lost=lost and not connecting) from e

    def _discard_broken_connections(self) -> None:
        """After a lost connection (the server restarted, or ended it), test the pool's idle
        connections and drop the dead ones: else each would fail one more transaction."""
        try:
            self.datastore.pool.check()
        except Exception:  # noqa: BLE001  # the error being reported matters more
            pass

    def _replace_connections(self) -> None:
        """Have the pool close its connections, those in use as they come back, and make new ones."""
        try:
            self.datastore.pool.drain()
        except Exception:  # noqa: BLE001  # the error being reported matters more
            pass

    def _translate(self, error: BaseException, *, lost: bool = False) -> StoreError:
        if isinstance(_driver_error(error), PoolTimeout):
            return self._no_connection()
        text = str(error).strip()
        reason = text.splitlines()[0] if text else type(_driver_error(error)).__name__
        # The server's doing, not the request's nor a bug: passing, so a 503 for the API.
        if lost:
            # Lost during its COMMIT, a transaction may have been stored: an append sent
            # again finds its events stored (duplicates), so trying again is safe.
            return ConnectionLost(f"the connection to the store {self.path} was lost ({reason}); try again")
        if isinstance(_driver_error(error), psycopg.errors.QueryCanceled):
            # Its statement_timeout, or an administrator (pg_cancel_backend).
            return StoreUnavailable(
                f"the store {self.path} cancelled a statement ({reason}); nothing of its transaction was stored; try again"
            )
        if isinstance(_driver_error(error), psycopg.errors.InsufficientPrivilege):
            return self._denied(text.splitlines()[0] if text else "permission denied")
        if isinstance(_driver_error(error), psycopg.errors.ReadOnlySqlTransaction):
            # A hot standby (a replica), or default_transaction_read_only set for the role or
            # the database: queries that need no catch-up still answer (--no-catch-up). After
            # a failover the pool's connections are to the old primary, now a standby: new
            # ones find the new primary (target_session_attrs=read-write, servers listed).
            self._replace_connections()
            return StoreReadOnly(
                f"the store {self.path} is read-only here ({reason}): a standby server, or "
                "default_transaction_read_only is on; write through the primary"
            )
        if isinstance(error, psycopg.errors.LockNotAvailable) or "lock timeout" in text:
            return StoreBusy(
                f"the store {self.path} is busy: another process held a lock this one needs for more than "
                f"{self.lock_timeout:g} s; try again, or raise --lock-timeout"
            )
        # libpq's reasons for no connection: a refused one, a timeout, a host that does not resolve.
        if any(why in text for why in ("connect", "Connection refused", "timeout expired", "resolve host")):
            return StoreUnavailable(f"cannot reach the store {self.path}: {reason}")
        return StoreError(f"the store {self.path} failed: {text.splitlines()[0] if text else type(error).__name__}")

    def _denied(self, text: str) -> StoreError:
        """What a role without a privilege it needs is to do: be granted what it may not
        read, or have a role that can write make the views (SQLite's read-only file has
        the same wording: "is read-only here")."""
        role = self._connect_kwargs["user"]
        table = _DENIED_TABLE.search(text)
        schema = self.schema
        views_made = True
        try:
            with psycopg.connect(**self._connect_kwargs, autocommit=True, connect_timeout=5) as conn:
                row = conn.execute("SELECT has_schema_privilege(%s, 'USAGE')", (schema,)).fetchone()
                if row is not None and not row[0]:
                    return StoreError(
                        f"role {role!r} may not use the schema {schema} of the store {self.path}: have its "
                        f'owner grant it, with GRANT USAGE ON SCHEMA "{schema}" TO "{role}" (and SELECT on its tables)'
                    )
                if table is not None:
                    qualified = f'"{schema}"."{table.group(1)}"'
                    row = conn.execute("SELECT has_table_privilege(%s, 'SELECT')", (qualified,)).fetchone()
                    if row is not None and not row[0]:
                        return StoreError(
                            f"role {role!r} may not read the table {table.group(1)!r} of the store {self.path} "
                            f"(schema {schema}): have its owner grant it, with "
                            f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}" '
                            "(tables made after a grant, such as the views, are not covered by it)"
                        )
                row = conn.execute(
                    f'SELECT count(*) FROM "{schema}".flowledger_meta WHERE key LIKE %s', ("view:%",)
                ).fetchone()
                views_made = bool(row and row[0])
        except psycopg.Error:
            pass  # cannot tell more than the server's own reason
        if not views_made:
            return StoreError(
                f"role {role!r} cannot write the store {self.path} (schema {schema}: {text}), and its "
                "views were never made: a role that can write the store must make them once, with "
                "`flowledger project`"
            )
        return StoreReadOnly(f"the store {self.path} is read-only here for role {role!r}: {text}")

    def _no_connection(self) -> StoreError:
        """Why the pool gave no connection in time: every one in use (the store answers), or
        the server's own reason it cannot be reached (the pool's says only that it waited)."""
        pool = self.datastore.pool
        try:
            psycopg.connect(**self._connect_kwargs, connect_timeout=5).close()
        except psycopg.Error as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return StoreUnavailable(f"cannot reach the store {self.path}: {reason}")
        return StoreBusy(
            f"the store {self.path} is busy: this process's {pool.max_size} connections to it were all "
            f"in use for {pool.timeout:g} s; try again"
        )

    @contextmanager
    def transaction(
        self, *, write: bool, durable: bool = True, append: bool = False, lock_timeout: float | None = None
    ) -> Iterator[PgCursor]:
        """A transaction on a pooled connection.

        ``append`` (the log's own writes) takes the events table's EXCLUSIVE lock first,
        waiting ``lock_timeout`` seconds for it if given (else the store's lock timeout);
        ``durable=False`` (views only) commits without waiting for the WAL flush; a
        read-only transaction sees one snapshot (REPEATABLE READ) and is rolled back.
        """
        with self._errors():
            for retry in (False, True):
                begun = False
                try:
                    with self.datastore.get_connection() as conn:
                        # Set on the connection, the level rides on BEGIN: no extra round trip.
                        conn.isolation_level = None if write else psycopg.IsolationLevel.REPEATABLE_READ
                        try:
                            with conn.transaction(force_rollback=not write):
                                begun = True
                                cursor = conn.cursor(row_factory=tuple_row)
                                if not durable:
                                    cursor.execute("SET LOCAL synchronous_commit = off")
                                if lock_timeout is not None:
                                    cursor.execute(f"SET LOCAL lock_timeout = {int(lock_timeout * 1000)}")
                                if append:
                                    cursor.execute("LOCK TABLE stored_events IN EXCLUSIVE MODE")
                                # A read is planned for its values each time, never prepared:
                                # the server, after five plans of a prepared statement, may keep
                                # one for any values, the same for a status whose runs are all
                                # old as for one whose newest are, for a range of last week as
                                # for the last hour (a page of a status's runs quiet since a
                                # time within a week: 10 ms, then 41-45 from its eleventh run on
                                # a long-lived connection, `serve`'s, at 300,000 runs). Writes
                                # keep the driver's way: planning each of their inserts anew
                                # cost a quarter of the append's and the webhooks' speed.
                                yield PgCursor(cursor, prepare=None if write else False)
                        finally:
                            _reset_isolation_level(conn)
                    return
                except (psycopg.Error, PersistenceError) as e:
                    # A connection the server ended while it sat in the pool (a restart, a
                    # failover) fails at BEGIN, before anything was done on it: drop the
                    # pool's dead connections and begin on another, once. Once begun, a
                    # transaction's failure is the caller's to see.
                    if begun or retry or not _connection_lost(e):
                        raise
                self._discard_broken_connections()

    def close(self) -> None:
        """Close the connection pool."""
        self.datastore.close()

    def table_names(self, c: PgCursor) -> set[str]:
        """The tables and indexes that exist in the schema."""
        c.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = ? "
            "UNION SELECT indexname FROM pg_indexes WHERE schemaname = ?",
            (self.schema, self.schema),
        )
        return {row[0] for row in c.fetchall()}

    def create_tracking_table(self, c: PgCursor) -> None:
        """eventsourcing's tracking table is created with the store."""

    @staticmethod
    def ddl(statement: str) -> str:
        """A view's CREATE statement (written for SQLite) for PostgreSQL."""
        return translate_ddl(statement)

    @staticmethod
    def empty_tables(
        c: PgCursor, tables: Sequence[str], ddl: Sequence[str], query_indexes: Sequence[str] = ()
    ) -> None:
        """Empty a view's tables for a rebuild (TRUNCATE: the same tables, so statements
        other connections have prepared on them stay valid), less the query indexes the
        rebuild makes at its end (TRUNCATE keeps them, to be written row by row)."""
        c.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables))
        for index in query_indexes:
            c.execute(f'DROP INDEX IF EXISTS "{index}"')

    def set_position(self, c: PgCursor, name: str, position: int) -> None:
        """Move a view's position on (never back: eventsourcing's tracking refuses)."""
        self._tracking._insert_tracking(c.raw, Tracking(name, position))  # noqa: SLF001

    @staticmethod
    def claim_ids(c: PgCursor, ids: Sequence[str]) -> set[str]:
        """Record the event ids not stored yet; returns those (the others were stored before)."""
        c.raw.execute(
            "INSERT INTO event_ids SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING RETURNING id",
            (list(ids),),
        )
        return {row[0] for row in c.raw.fetchall()}

    @staticmethod
    def analyze(c: PgCursor, tables: Sequence[str]) -> None:
        """Refresh the planner's statistics of tables a rebuild or an upgrade has just
        filled: without them it guesses at their size, and may scan a table rather than
        seek an index."""
        c.execute("ANALYZE " + ", ".join(f'"{t}"' for t in tables))

    def vacuum(self, tables: Sequence[str]) -> None:
        """VACUUM tables a rebuild or an upgrade has just filled, marking their pages all
        visible: until then (autovacuum's next pass, minutes later) a read in an index
        alone visits a row in the table for each entry (the run history's counts under a
        range or a tenant: 48-75 ms at 300,000 runs, 11-12 after; a status's first runs are
        read row by row through `runs_by_seq`). A failure (the tables locked past the lock
        timeout, a lost connection) is logged, not raised: the views are made, and
        autovacuum will do it.

        VACUUM marks no row whose commit it may not yet take for done: one not yet on disk,
        or one whose neighbours in the server's commit log (32 transaction ids, any
        database's) include one committed but not yet flushed. The views' pages commit
        without waiting for the disk, and on a busy server other stores' do too: so it
        waits for the flush first (:func:`_await_wal_flush`), and the tables with pages left
        unmarked are vacuumed again once the WAL writer has had time to flush what was
        committed since, at most :data:`VACUUM_PASSES` in all (a pass reads only the pages
        still unmarked). Rows newer than a transaction open in the database stay unmarked
        whatever the passes: a table a second or later pass marked no page more of is not
        passed over again."""
        if not tables:
            return  # (VACUUM naming no table would vacuum the whole database)
        left = list(tables)
        marked: dict[str, int] = {}
        try:
            with psycopg.connect(**self._connect_kwargs, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"SET lock_timeout = {int(self.lock_timeout * 1000)}")
                delay = _wal_writer_delay(conn)
                for n in range(VACUUM_PASSES):
                    if n:
                        unmarked = self._unmarked(conn, left)
                        # The first pass may mark nothing where it is only early (the rows'
                        # neighbours unflushed), so it is not judged; after a later pass
                        # that marked nothing more, what holds the rows back (a transaction
                        # open since before them) outlasts the WAL writer's rounds.
                        left = [t for t, visible in unmarked.items() if n == 1 or visible > marked[t]]
                        marked = unmarked
                        if not left:
                            return
                        # The unmarked rows' neighbours, committed since (by other stores
                        # too), flushed by the WAL writer's next rounds.
                        sleep(3 * delay)
                    _await_wal_flush(conn, delay)
                    # Where few pages hold dead rows (a live store's updated runs, upgraded in
                    # place), VACUUM would skip the indexes, and leave those pages unmarked.
                    conn.execute("VACUUM (INDEX_CLEANUP ON) " + ", ".join(f'"{self.schema}"."{t}"' for t in left))
        except psycopg.Error as e:
            _log.warning("the views just filled are not vacuumed (%s); autovacuum will do it in time", _driver_error(e))

    def _unmarked(self, conn: psycopg.Connection[Any], tables: Sequence[str]) -> dict[str, int]:
        """Those of ``tables`` with pages not marked all visible, each with how many are, as
        their last VACUUM counted."""
        return {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT relname, relallvisible FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'r' "
                "AND c.relallvisible < c.relpages ORDER BY relname",
                (self.schema, list(tables)),
            )
        }

    def lock_views(self, c: PgCursor, names: Sequence[str]) -> None:
        """Hold each view's advisory lock until the transaction ends (in name order).

        The locks are the database's, not the schema's: keyed by schema too, so that the
        projectors of stores in other schemas of the same database never wait for these."""
        for name in names:
            c.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"flowledger:view:{self.schema}:{name}",))
