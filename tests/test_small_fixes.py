"""Three small fixes: the --skip-invalid file holds no secret, the rebuild helper knows its
parent from the start, and a read-only PostgreSQL role without views is told what to do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import orjson
import pytest
from click.testing import CliRunner

from flowledger import ledger
from flowledger.cli import cli
from flowledger.projections import helper as helper_module
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from tests.conftest import POSTGRES, POSTGRES_UNREACHABLE, ev, login_role, server_connection, triggered
from tests.histories import jsonl
from tests.test_cli import lines, run  # noqa: F401 (run is a fixture)


def _one_queued_message(store_path):
    """A store holding one queued message, its views made and not caught up."""
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl([ev("message.queued", message_id="m1", channel="email", recipient="u1")]))
        Projector(log.backend).ensure_tables()
    finally:
        log.close()


# --- the --skip-invalid file ---------------------------------------------------------------

# A password longer than what an error shows of a value: cut there, "user:…" with no "@"
# after it no longer looks like a URL's password.
_LONG_PASSWORD = "S3cr3tPw" * 12
_TOO_LONG_URL = f"https://user:{_LONG_PASSWORD}@example.test/" + "a" * 8200


def _rejected(run, tmp_path, data, *options):
    skip = tmp_path / "rejected.jsonl"
    result = run("append", "-", "--skip-invalid", str(skip), *options, input=data)
    assert result.exit_code == 0, result.output
    return result, skip.read_text(), [orjson.loads(x) for x in skip.read_text().splitlines()]


def test_a_refused_line_is_written_aside_with_its_secrets_redacted(run, tmp_path):
    data = (
        # unknown field holding a secret: invalid
        lines({**triggered("r1"), "api_key": "sk_live_AbC123xyz"})
        # a fact refused by the domain rules (no such run), its error holding a URL's password
        + lines(ev("run.failed", run_id="ghost", error="postgresql://app:hunter2pw@db.test/prod refused"))
        # a key given with --redact-key
        + lines({**triggered("r2"), "data": {"pin_code": 98765}})
        + lines(ev("run.completed", run_id="ghost2", data={"pin_code": 98765}))
    )
    result, text, rejected = _rejected(run, tmp_path, data, "--redact-key", "pin_code")
    assert orjson.loads(result.stdout)["skipped"] == 3
    for secret in ("sk_live_AbC123xyz", "hunter2pw", "98765"):
        assert secret not in text
    # Each input is still the event's JSON text, its secrets replaced as the log would hold them.
    first, second, third = (orjson.loads(r["input"]) for r in rejected)
    assert first["api_key"] == "[REDACTED]" and first["run_id"] == "r1"
    assert second["error"] == "postgresql://app:[REDACTED]@db.test/prod refused"
    assert third["data"] == {"pin_code": "[REDACTED]"}
    assert [r["line"] for r in rejected] == [1, 2, 4]
    assert 'field "api_key": unknown field' in rejected[0]["errors"][0]
    assert "never triggered" in rejected[1]["errors"][0]


def test_a_line_that_is_not_json_is_written_aside_with_its_secrets_redacted(run, tmp_path):
    data = lines(triggered("r1")) + '{"id": "x", "password": "hunter2pw", oops\n' + "token=abcDEF123 &c\n"
    _, text, rejected = _rejected(run, tmp_path, data)
    assert "hunter2pw" not in text and "abcDEF123" not in text
    assert [r["input"] for r in rejected] == ['{"id": "x", "password": "[REDACTED]", oops', "token=[REDACTED] &c"]
    assert all(r["errors"][0].startswith("not valid JSON") for r in rejected)


def test_a_line_without_secrets_is_written_aside_as_it_was_sent(run, tmp_path):
    # Byte for byte: its spacing and key order are the user's own.
    line = '{ "id":"e1",   "type":"run.completed",  "occurred_at":"2026-11-01T09:00:00Z", "run_id":"ghost" }'
    _, _, rejected = _rejected(run, tmp_path, line + "\n")
    assert rejected[0]["input"] == line


def test_an_error_does_not_echo_a_secret_of_the_refused_value(run, tmp_path):
    data = lines(
        ev("message.clicked", message_id="m1", url=_TOO_LONG_URL),
        ev("run.completed", run_id="r1?token=abcDEF123\n"),
    )
    _, text, rejected = _rejected(run, tmp_path, data)
    assert _LONG_PASSWORD[:20] not in text and "abcDEF123" not in text
    url_error, id_error = rejected[0]["errors"][0], rejected[1]["errors"][0]
    assert url_error.startswith('field "url": String should have at most 8192 characters')
    assert "(got 'https://user:[REDACTED]@example.test/aaa" in url_error
    assert id_error.startswith('field "run_id": expected an id') and "token=[REDACTED]" in id_error


def test_the_inputs_written_aside_can_be_appended_again_once_their_run_is_known(run, tmp_path):
    error = {"message": "https://u:hunter2pw@api.test/x failed", "token": "t0k3nV4lue"}
    refused = ev("run.failed", run_id="r9", error=error)
    _, _, rejected = _rejected(run, tmp_path, lines(refused))
    again = run("append", "-", input=lines(triggered("r9")) + "".join(r["input"] + "\n" for r in rejected))
    assert again.exit_code == 0, again.output
    assert orjson.loads(again.stdout) == {"appended": 2, "duplicates": 0}
    # What the log holds is what appending the original would have stored: the same redacted body.
    duplicate = run("append", "-", input=lines(refused))
    assert orjson.loads(duplicate.stdout) == {"appended": 0, "duplicates": 1}


def test_an_error_about_a_field_named_as_a_secret_does_not_echo_its_value(run, tmp_path):
    # A key given with --redact-key may name an event's own field.
    data = lines({**triggered("r1"), "workflow": 24680135})
    _, text, rejected = _rejected(run, tmp_path, data, "--redact-key", "workflow")
    assert "24680135" not in text
    assert rejected[0]["errors"] == ["field \"workflow\": Input should be a valid string (got '[REDACTED]')"]


def test_a_short_secret_value_changes_nothing_else_in_an_error(run, tmp_path):
    # The redacted value is replaced where the error shows it, not wherever its digits occur.
    data = lines({**triggered("r1"), "workflow": 8, "data": {"pin_code": 8}})
    _, _, rejected = _rejected(run, tmp_path, data, "--redact-key", "workflow")
    assert rejected[0]["errors"] == ["field \"workflow\": Input should be a valid string (got '[REDACTED]')"]
    long_url = ev("message.clicked", message_id="m1", url="https://x.test/" + "8" * 8200, pin=8)
    _, _, rejected = _rejected(run, tmp_path, lines(long_url), "--redact-key", "pin")
    assert "at most 8192 characters (got 'https://x.test/888" in rejected[0]["errors"][0]


# --- the rebuild helper's parent -----------------------------------------------------------


def _ended_pid() -> int:
    """The pid of a process that has ended (and so is nobody's parent)."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def _deliveries_position(store_path) -> int:
    log = open_log(store_path)
    try:
        projector = Projector(log.backend)
        return projector.position(projector.view("deliveries"))
    finally:
        log.close()


@pytest.mark.parametrize("parent", ["this process", "an ended process"])
def test_a_helper_whose_parent_is_not_the_rebuilding_process_ends_at_once(store_path, parent):
    # The rebuilding process may die before its helper runs: the helper, adopted by another,
    # used to take that one for its parent and fold on, an orphan.
    _one_queued_message(store_path)
    pid = os.getpid() if parent == "this process" else _ended_pid()
    command = [sys.executable, "-m", helper_module.__name__, "--page-size", "10", "--parent", str(pid), "deliveries"]
    env = {**os.environ, helper_module.STORE_ENV: store_path}
    env.pop(helper_module.SOURCE_ENV, None)
    done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    if parent == "this process":
        assert done.returncode == 0, done.stderr
        assert _deliveries_position(store_path) == 1
    else:
        assert done.returncode == 128 + signal.SIGTERM, done.stderr
        assert _deliveries_position(store_path) == 0  # nothing folded


# Run as a process of its own: it adopts the orphans of its descendants (Linux's child
# subreaper), so that it can wait for a helper whose rebuilding process died at its start.
_ORPHANED_HELPER = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
read, write = os.pipe()
middle = os.fork()
if middle == 0:
    from flowledger.projections import helper
    from flowledger.projections.projector import Projector
    from flowledger.store import open_backend
    backend = open_backend(sys.argv[1], create=False)
    started = helper.start_helper(backend, backend, [Projector(backend).view("deliveries")], 10)
    os.write(write, str(started.process.pid).encode())
    os._exit(0)  # the rebuilding process dies as its helper starts
os.close(write)
pid = int(os.read(read, 100))
os.waitpid(middle, 0)  # from then on the helper is this process's
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a child subreaper is Linux's")
def test_a_helper_whose_rebuilding_process_died_as_it_started_ends_at_once(store_path):
    _one_queued_message(store_path)
    done = subprocess.run(
        [sys.executable, "-c", _ORPHANED_HELPER, store_path], stdin=subprocess.DEVNULL, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # It used to take its new parent for the rebuilding process, and fold on.
    assert int(done.stdout) == 128 + signal.SIGTERM
    assert _deliveries_position(store_path) == 0


# --- a read-only PostgreSQL role -----------------------------------------------------------


@pytest.fixture
def read_only_role(postgres_url):
    """A login role that may only read the test's schema (what it holds now), and its URL;
    dropped after the test."""
    if POSTGRES_UNREACHABLE:
        pytest.skip(POSTGRES_UNREACHABLE)
    schema = postgres_url.rpartition("schema=")[2]
    log = open_log(postgres_url)  # the store, made by a role that can write
    log.close()
    grants = ['GRANT USAGE ON SCHEMA "{schema}" TO "{role}"', 'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"']
    with login_role(postgres_url, "fl_ro_", grants) as (role, url):
        yield role, url, schema


def _cli(store, *args, input=None):
    return CliRunner().invoke(cli, ["--store", store, *args], input=input, catch_exceptions=False)


def test_a_read_only_postgresql_role_is_told_the_views_were_never_made(postgres_url, read_only_role):
    role, url, schema = read_only_role
    assert _cli(postgres_url, "append", "-", input=lines(triggered("r1"))).exit_code == 0
    for args in (["runs", "list"], ["runs", "list", "--no-catch-up"], ["runs", "show", "r1", "--no-catch-up"]):
        result = _cli(url, *args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        message = result.stderr
        # It used to say only "failed: permission denied for table notification_tracking".
        assert f"role '{role}' cannot write" in message and "views were never made" in message, message
        assert "a role that can write the store must make them once, with `flowledger project`" in message


def test_a_read_only_postgresql_role_is_told_which_table_it_may_not_read(postgres_url, read_only_role):
    role, url, schema = read_only_role
    # The views made after the role was given the schema's tables: not theirs.
    assert _cli(postgres_url, "append", "-", input=lines(triggered("r1"))).exit_code == 0
    assert _cli(postgres_url, "project").exit_code == 0
    result = _cli(url, "runs", "list", "--no-catch-up")
    assert result.exit_code == 1
    assert f"role '{role}' may not read the table" in result.stderr, result.stderr
    assert f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"' in result.stderr
    with server_connection(POSTGRES, autocommit=True) as conn:
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    result = _cli(url, "runs", "list", "--no-catch-up")
    assert result.exit_code == 0 and "r1" in result.stdout, result.output
    # Views made, but behind the log: a read-only role cannot catch them up.
    assert _cli(postgres_url, "append", "-", input=lines(triggered("r2"))).exit_code == 0
    result = _cli(url, "runs", "list")
    assert result.exit_code == 1
    assert f"is read-only here for role '{role}'" in result.stderr and "--no-catch-up" in result.stderr, result.stderr


def test_a_postgresql_role_without_the_schema_is_told_what_to_grant(read_only_role):
    role, url, schema = read_only_role
    with server_connection(POSTGRES, autocommit=True) as conn:
        conn.execute(f'REVOKE USAGE ON SCHEMA "{schema}" FROM "{role}"')
    result = _cli(url, "runs", "list", "--no-catch-up")
    assert result.exit_code == 1
    assert f'role \'{role}\' may not use the schema {schema}' in result.stderr, result.stderr
    assert f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"' in result.stderr
