"""PostgreSQL roles with only the privileges their work needs: a role granted the rows of a
store's tables (no CREATE on the database or the schema) appends, folds, serves and keeps
deferred webhooks, once the role owning the schema has made the store, its views and its
keys. Skipped, saying why, where no server is reachable."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from flowledger import ledger, queries
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.store import open_log
from tests.conftest import POSTGRES, POSTGRES_UNREACHABLE, login_role, server_connection, triggered, wait_until
from tests.histories import jsonl
from tests.test_inbox import post_sendgrid, postgres_append_lock, with_messages
from tests.test_webhooks import SECRETS, sendgrid_events

pytestmark = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


def _cli(store, *args, input=None):
    return CliRunner().invoke(cli, ["--store", store, *args], input=input)


@pytest.fixture
def rows_only_role(postgres_url):
    """A login role granted only the rows of the test store's tables (made by the owner, with
    its views and keys, as README says), and its URL; dropped after the test."""
    with_messages(postgres_url)
    assert _cli(postgres_url, "project").exit_code == 0
    assert _cli(postgres_url, "keys", "create", "--name", "owner", "--scope", "admin").exit_code == 0
    grants = [
        'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"',
        'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"',
        'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"',
    ]
    with login_role(postgres_url, "fl_rows_", grants) as (role, url):
        with server_connection(POSTGRES) as conn:
            database = conn.execute("SELECT current_database()").fetchone()[0]
            (may_create,) = conn.execute("SELECT has_database_privilege(%s, %s, 'CREATE')", (role, database)).fetchone()
        assert not may_create, "the role must not be able to create schemas for this test"
        yield url


def test_a_role_granted_only_rows_appends_and_folds(rows_only_role):
    # It was refused at the store's opening ("read-only here ...: permission denied for
    # database test"): the opening ran CREATE SCHEMA IF NOT EXISTS, which needs CREATE on
    # the database even where the schema exists.
    result = _cli(rows_only_role, "append", "-", input=jsonl([triggered("r-role")]))
    assert result.exit_code == 0, result.output
    assert '"appended":1' in result.output
    assert _cli(rows_only_role, "project").exit_code == 0
    shown = _cli(rows_only_role, "runs", "show", "r-role", "--no-catch-up")
    assert shown.exit_code == 0 and "r-role" in shown.output, shown.output


def test_a_role_granted_only_rows_keeps_webhooks_that_wait_for_the_lock(rows_only_role, postgres_url):
    # The inbox's tables were made at its first put, which such a role cannot do: the
    # webhook waiting for the append lock got a 503 (and Twilio does not send again).
    with TestClient(create_app(rows_only_role, provider_secrets=SECRETS, lock_timeout=0.2, follow=True)) as client:
        with postgres_append_lock(postgres_url):
            r = post_sendgrid(client, sendgrid_events())
            assert r.status_code == 200, r.text
            assert r.json()["deferred"] == 4
        wait_until(lambda: "deferred" not in client.get("/healthz").json())
        assert "deferred" not in client.get("/healthz").json()
    log = open_log(postgres_url)
    try:
        wait_until(lambda: ledger.query(log, queries.show_delivery, "m-email")["status"] == "clicked")
        assert ledger.query(log, queries.show_delivery, "m-email")["status"] == "clicked"
    finally:
        log.close()


def _inbox_tables(url: str) -> list[bool]:
    """Whether the store's schema holds each of the inbox's tables."""
    schema = url.rpartition("schema=")[2]
    with server_connection(POSTGRES) as conn:
        return [
            conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".{table}',)).fetchone()[0]
            for table in ("webhook_inbox", "webhook_inbox_count", "webhook_dead_letters")
        ]


def test_a_store_without_its_inbox_tables_gets_them_at_a_writers_opening(rows_only_role, postgres_url):
    # A store made before they came with it: the role that may make them makes them when it
    # opens the store to write; a role that may not goes on without them.
    schema = postgres_url.rpartition("schema=")[2]
    assert _inbox_tables(postgres_url) == [True, True, True]
    with server_connection(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{schema}".webhook_inbox, "{schema}".webhook_inbox_count, "{schema}".webhook_dead_letters')
        conn.execute(f'DROP FUNCTION "{schema}".webhook_inbox_counted()')
    result = _cli(rows_only_role, "append", "-", input=jsonl([triggered("r-role")]))
    assert result.exit_code == 0, result.output
    assert _inbox_tables(postgres_url) == [False, False, False]
    assert _cli(postgres_url, "runs", "list", "--no-catch-up").exit_code == 0  # reads: makes nothing
    assert _inbox_tables(postgres_url) == [False, False, False]
    open_log(postgres_url).close()
    assert _inbox_tables(postgres_url) == [True, True, True]


def test_a_role_granted_only_rows_is_told_who_must_make_the_keys_tables(rows_only_role, postgres_url, caplog):
    # The server starts (its queries and webhooks need no keys table) and says at start-up
    # what is missing and who must make it, where it said only "permission denied".
    schema = postgres_url.rpartition("schema=")[2]
    with server_connection(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{schema}".api_keys, "{schema}".web_sessions')
    with caplog.at_level("WARNING", logger="flowledger"):
        with TestClient(create_app(rows_only_role)) as client:
            assert client.get("/healthz").status_code == 200
    said = [r.getMessage() for r in caplog.records if "keys" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "read-only here" in said[0] and "permission denied for schema" in said[0], said
    assert said[0].endswith(
        "the API keys' tables were never made: a role that can write the store must make them once, "
        "with `flowledger keys create`)"
    ), said


def test_a_read_only_server_or_role_is_told_it_is_read_only(rows_only_role):
    # As on a hot standby: every transaction read-only. It said only "failed: cannot
    # execute INSERT in a read-only transaction".
    role = rows_only_role.partition("://")[2].partition("@")[0]
    with server_connection(POSTGRES, autocommit=True) as conn:
        conn.execute(f'ALTER ROLE "{role}" SET default_transaction_read_only = on')
    result = _cli(rows_only_role, "append", "-", input=jsonl([triggered("r-role")]))
    assert result.exit_code == 1
    assert "is read-only here (cannot execute INSERT in a read-only transaction): a standby server, or " in result.stderr
    assert result.stderr.rstrip().endswith("default_transaction_read_only is on; write through the primary"), result.stderr
    shown = _cli(rows_only_role, "runs", "show", "r1", "--no-catch-up")
    assert shown.exit_code == 0, shown.output



def test_a_role_granted_only_rows_is_told_a_rebuild_in_place_is_the_owners(rows_only_role, tmp_path):
    # It was told only "read-only here … permission denied for table runs".
    result = _cli(rows_only_role, "rebuild")
    assert result.exit_code == 1
    assert "is read-only here" in result.stderr and "permission denied for table" in result.stderr, result.stderr
    assert result.stderr.rstrip().endswith(
        "a rebuild in place remakes the views' tables (on PostgreSQL, the schema owner's to do): run it "
        "where the store can be written so, or fold a copy with `flowledger rebuild --into FILE.db`"
    ), result.stderr
    copy = _cli(rows_only_role, "rebuild", "--into", str(tmp_path / "copy.db"))
    assert copy.exit_code == 0, copy.output


def test_a_server_whose_role_may_not_make_the_tokens_table_remembers_tokens_itself(rows_only_role, postgres_url, caplog, monkeypatch):
    # A store made before the tokens' table came with it, served by a role granted only rows:
    # Mailgun's tokens are the process's to remember, as before, and the log says so once;
    # once the owner has made the table (any writing command) and granted its rows, the store's.
    import logging
    import time

    from flowledger.providers import base
    from flowledger.store import inbox as inbox_module
    from tests.test_providers_review import MAILGUN, mailgun_body, mailgun_post
    from tests.test_providers_review import SECRETS as MAILGUN_SECRETS

    schema = postgres_url.rpartition("schema=")[2]
    role = rows_only_role.partition("://")[2].partition("@")[0]
    with server_connection(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{schema}".webhook_tokens')
    monkeypatch.setattr(inbox_module, "TOKENS_RETRY", 0.0)  # tried again at every webhook

    def delivered(token: str, event_id: str) -> bytes:
        return mailgun_body({**MAILGUN, "event": "delivered", "id": event_id, "timestamp": time.time()}, token=token)

    tokens = ["q" * 49 + str(i) for i in range(3)]
    with TestClient(create_app(rows_only_role, provider_secrets=MAILGUN_SECRETS)) as client:
        with caplog.at_level(logging.WARNING, logger="flowledger"):
            for i, token in enumerate(tokens[:2]):
                assert mailgun_post(client, delivered(token, f"mg-q{i}")).json()["appended"] == 1
                assert "mailgun:" + token in base.PROCESS_TOKENS.seen
            refused = mailgun_post(client, delivered(tokens[0], "mg-q9"))
            assert refused.status_code == 401 and "another body" in refused.text
        said = [r.getMessage() for r in caplog.records if "cannot remember webhook tokens" in r.getMessage()]
        assert len(said) == 1 and "webhook_tokens" in said[0], said
        assert _inbox_tables(postgres_url) == [True, True, True]  # the rest was there all along
        open_log(postgres_url).close()  # the owner's writing command makes it
        with server_connection(POSTGRES, autocommit=True) as conn:
            conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{schema}".webhook_tokens TO "{role}"')
        assert mailgun_post(client, delivered(tokens[2], "mg-q2")).json()["appended"] == 1
    assert "mailgun:" + tokens[2] not in base.PROCESS_TOKENS.seen
    with server_connection(POSTGRES) as conn:
        keys = [k for (k,) in conn.execute(f'SELECT key FROM "{schema}".webhook_tokens').fetchall()]
    assert keys == ["mailgun:" + tokens[2]]
