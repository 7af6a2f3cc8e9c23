"""The store and view contract on PostgreSQL (FLOWLEDGER_TEST_POSTGRES, default the local
server's `test` database); each test gets a schema of its own. Skipped, saying why, where no
server is reachable.
"""

from __future__ import annotations

import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from flowledger import ledger, queries
from flowledger.projections.projector import Projector, all_views
from flowledger.store import open_log
from tests.conftest import POSTGRES, POSTGRES_UNREACHABLE, server_connection, ev, step, triggered
from tests.contract import ProviderContract, RebuildIntoContract, StoreContract, _history
from tests.histories import jsonl

pytestmark = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


class TestPostgresStore(StoreContract, RebuildIntoContract, ProviderContract):
    @pytest.fixture
    def store_url(self, postgres_url):
        return postgres_url


def test_a_projector_never_passes_an_append_still_in_flight(postgres_url):
    # The first appender's events take their positions and then wait, uncommitted. Were the
    # second free to commit the positions after them meanwhile, a projector would move past
    # the first's and never come back for them. It must wait for the first instead, so the
    # projector sees nothing new until both commit, and then applies every event once.
    log, first, second = open_log(postgres_url), open_log(postgres_url), open_log(postgres_url)
    try:
        ledger.append_input(log, jsonl(_history("r0")))
        ledger.catch_up(log)
        before = ledger.head(log)
        written, release = threading.Event(), threading.Event()
        insert = first.backend.insert

        def insert_then_wait(c, *args):
            insert(c, *args)
            written.set()
            release.wait(60)

        first.backend.insert = insert_then_wait  # this store object only
        outcomes: dict[str, object] = {}

        def append(name, target, run_id):
            try:
                outcomes[name] = ledger.append_input(target, jsonl(_history(run_id)))[0].appended
            except Exception as e:  # noqa: BLE001  # reported below
                outcomes[name] = e

        threads = [threading.Thread(target=append, args=("first", first, "r1"))]
        threads[0].start()
        assert written.wait(30), "the first append never wrote its events"
        threads.append(threading.Thread(target=append, args=("second", second, "r2")))
        threads[1].start()
        time.sleep(1.0)  # time enough for the second append to commit, were it not held
        try:
            assert "second" not in outcomes, "an append committed while an earlier one was in flight"
            assert ledger.catch_up(log) == 0
            assert ledger.head(log) == before
            assert ledger.query(log, queries.counts, fresh=False)["total"] == 1
        finally:
            release.set()
            for t in threads:
                t.join(60)
        assert outcomes == {"first": 8, "second": 8}
        assert ledger.catch_up(log) == 16
        counts = ledger.query(log, queries.counts, fresh=False)
        assert (counts["total"], counts["failed"]) == (3, 3)
        assert ledger.catch_up(log) == 0
    finally:
        for each in (log, first, second):
            each.close()


def test_projectors_of_stores_in_other_schemas_never_wait_for_each_other(postgres_url, other_postgres_url):
    # Advisory locks belong to the database: a view's lock keyed by its name alone would
    # make every store's projector of that view wait for any other's.
    busy, other = open_log(postgres_url), open_log(other_postgres_url)
    try:
        ledger.append_input(other, jsonl(_history("r1")))
        ledger.catch_up(busy)  # its tables exist: only the lock below is held
        done = threading.Event()
        with busy.backend.transaction(write=True, durable=False) as c:
            busy.backend.lock_views(c, ["deliveries", "runs", "steps"])
            worker = threading.Thread(target=lambda: (ledger.catch_up(other), done.set()))
            worker.start()
            caught_up = done.wait(20)
        worker.join(60)
        assert caught_up, "a projector waited for the views of a store in another schema"
        assert ledger.query(other, queries.counts, fresh=False)["total"] == 1
    finally:
        busy.close()
        other.close()


def test_a_connection_lost_within_a_transaction_fails_it_and_stores_nothing_of_it(postgres_url):
    # Only a connection found dead at BEGIN is replaced: once a transaction has done
    # something, its loss is an error for the caller, never a silent second run.
    from flowledger.errors import StoreError

    log = open_log(postgres_url)
    runs = 0
    try:
        with server_connection(postgres_url, autocommit=True) as admin:
            with pytest.raises(StoreError, match="connection"):
                with log.backend.transaction(write=True) as c:
                    runs += 1
                    c.execute("INSERT INTO flowledger_meta VALUES ('probe', 'x')")
                    c.execute("SELECT pg_backend_pid()")
                    admin.execute("SELECT pg_terminate_backend(%s)", (c.fetchone()[0],))
                    c.execute("SELECT 1")
        assert runs == 1
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT count(*) FROM flowledger_meta WHERE key = 'probe'")
            assert c.fetchone()[0] == 0
    finally:
        log.close()


def test_after_the_server_ends_its_connections_no_transaction_fails(postgres_url):
    # A restart or a failover ends every connection the pool holds. A connection found dead
    # when its transaction begins has done nothing yet: the store takes another, so neither
    # appends nor reads fail once the server is back.
    from flowledger.store.postgres import parse_url

    log = open_log(postgres_url)
    try:
        ledger.append_input(log, jsonl(_history("r1")))
        assert ledger.query(log, queries.counts)["total"] == 1
        s = parse_url(postgres_url)
        with server_connection(postgres_url, autocommit=True) as admin:

            def end_its_connections() -> int:
                return len(admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    ("flowledger/" + s["schema"],),
                ).fetchall())

            assert end_its_connections() >= 2  # the pool keeps two connections open
            for i in range(2, 6):
                ledger.append_input(log, jsonl(_history(f"r{i}")))
            assert end_its_connections() >= 1
            assert ledger.query(log, queries.counts)["total"] == 5
    finally:
        log.close()


def test_a_reader_of_a_schema_with_no_store_makes_nothing(postgres_url):
    # A read-only command naming a schema that holds no store says so, and leaves the
    # database as it was: no empty schema made on the way.
    from flowledger.errors import StoreError

    schema = postgres_url.rsplit("schema=", 1)[1]
    with pytest.raises(StoreError, match="no flowledger store"):
        open_log(postgres_url, create=False)
    with server_connection(postgres_url) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None
    open_log(postgres_url).close()  # one that may create does
    with server_connection(postgres_url) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() == (1,)


def test_a_rebuild_in_place_folds_without_the_query_indexes_and_makes_them_last(postgres_url):
    # TRUNCATE keeps a table's indexes: those only queries read would be written row by row.
    log = open_log(postgres_url)
    ledger.append_input(log, jsonl(_history("r1") + _history("r2")))
    b = log.backend
    query_indexes = {i for v in all_views() for i in v.query_indexes}
    assert query_indexes
    seen = []

    def look(_n):
        with b.transaction(write=False) as c:
            seen.append(query_indexes & b.table_names(c))

    Projector(b).rebuild(page_size=4, progress=look, helper=False)
    assert seen and all(not found for found in seen)
    with b.transaction(write=False) as c:
        assert query_indexes <= b.table_names(c)
    log.close()


@pytest.fixture
def icu_database_url():
    """A store URL in a database of its own whose text sorts by ICU's English rules (not C)."""
    name = "fl_test_icu_" + uuid.uuid4().hex[:8]
    with server_connection(POSTGRES, autocommit=True) as conn:
        try:
            conn.execute(
                f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING UTF8 '
                "LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'"
            )
        except Exception as e:  # noqa: BLE001  # a server without ICU cannot make one
            pytest.skip(f"cannot make a database sorting by ICU rules: {e}")
    parts = urlsplit(POSTGRES)
    yield urlunsplit(parts._replace(path="/" + name, query=""))
    with server_connection(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_text_sorts_as_on_sqlite_whatever_the_database_collation(icu_database_url, tmp_path):
    # An analyst's `rebuild --into FILE.db` must list what the live PostgreSQL views list, in
    # the same order: the views' text compares byte by byte on both.
    keys = ["b", "B", "a", "_z", "Z", "a-b", "ab", "é"]
    events = []
    for i, key in enumerate(keys):
        events.append(triggered(f"r{i}", workflow=key))
    events += [ev("run.started", run_id="r0"), *(step("step.started", "r0", name=key) for key in keys)]
    answers = []
    for url in (icu_database_url, str(tmp_path / "s.db")):
        log = open_log(url)
        ledger.append_input(log, jsonl(events))
        answers.append(
            (
                [w["key"] for w in ledger.query(log, queries.list_workflows)],
                [n["step"] for n in ledger.query(log, queries.execution_stats, "b")["nodes"]],
            )
        )
        log.close()
    assert answers[0] == answers[1]
    assert answers[1][0] == sorted(keys)


def test_a_server_of_the_owner_makes_the_tokens_table_where_it_is_wanting(postgres_url):
    # Dropped by hand (or a store whose owner's server started before another release
    # made it): the first Mailgun webhook makes it again, and the token is the store's.
    from fastapi.testclient import TestClient

    from flowledger.api.app import create_app
    from flowledger.providers import base
    from tests.test_providers_review import MAILGUN, SECRETS, mailgun_body, mailgun_post

    schema = postgres_url.rpartition("schema=")[2]
    token = "w" * 49 + "1"
    body = mailgun_body({**MAILGUN, "event": "delivered", "id": "mg-w1", "timestamp": time.time()}, token=token)
    with TestClient(create_app(postgres_url, provider_secrets=SECRETS)) as client:
        with server_connection(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP TABLE "{schema}".webhook_tokens')
        assert mailgun_post(client, body).json()["appended"] == 1
    assert "mailgun:" + token not in base.PROCESS_TOKENS.seen
    with server_connection(POSTGRES) as conn:
        keys = [k for (k,) in conn.execute(f'SELECT key FROM "{schema}".webhook_tokens').fetchall()]
    assert keys == ["mailgun:" + token]
