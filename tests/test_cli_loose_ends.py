"""Loose ends of the command line and the HTTP server: a closed pipe, Ctrl-C of a follower,
read-only commands that took the write lock, blank options, serve's limits and the
webhooks' per-event limit."""

from __future__ import annotations

import getpass
import glob
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import orjson
import pytest
from click.testing import CliRunner

from flowledger import ledger
from flowledger.api import keys
from flowledger.cli import cli
from flowledger.store import open_log
from tests.conftest import ev, triggered, wait_for_views, wait_until
from tests.histories import jsonl
from tests.test_projector_crash import busy_workspace

EXE = os.path.join(os.path.dirname(sys.executable), "flowledger")


@pytest.fixture
def run(store_path):
    runner = CliRunner()

    def invoke(*args, input=None, env=None):
        return runner.invoke(cli, ["--store", store_path, *args], input=input, env=env, catch_exceptions=False)

    return invoke


# A closed pipe.


@pytest.mark.parametrize(
    "args",
    [["runs", "list", "--page-size", "1000"], ["runs", "list", "--page-size", "1000", "--json"], ["deliveries", "list", "--page-size", "1000"]],
    ids=" ".join,
)
def test_output_cut_short_by_a_closed_pipe_ends_quietly_exiting_0(log, store_path, args):
    # `flowledger runs list | head -1`: far more than a pipe holds, so a write meets the
    # reader gone (one large write may also be cut short without an error: exit 0 either way).
    ledger.append_input(log, jsonl(list(busy_workspace(1200))))
    ledger.catch_up(log)
    proc = subprocess.Popen([EXE, "--store", store_path, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert err == b""


# Ctrl-C of `project --follow`.

# `flowledger project --follow` with a first catch-up that folds in small pages (the
# staged rebuild and its helper take theirs from this process), so it is still at work
# when the test stops it.
SLOW_FOLLOWER = textwrap.dedent(
    """
    import functools, sys
    from flowledger.cli import main
    from flowledger.projections.projector import Projector

    Projector.rebuild = functools.partialmethod(Projector.rebuild, page_size=10)
    sys.argv = ["flowledger", "--store", sys.argv[1], "project", "--follow", "--interval", "0.05"]
    main()
    """
)


def _staging_files(store_path):
    return sorted(glob.glob(glob.escape(store_path) + ".rebuild-*"))


def _positions(log):
    from flowledger.projections.projector import Projector

    projector = Projector(log.backend)
    return [projector.position(v) for v in projector.views]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_project_follow_in_its_first_catch_up_exits_0_and_cleans_up(log, store_path, signum):
    from flowledger.store.staging import _alive

    ledger.append_input(log, jsonl(list(busy_workspace(6000))))  # a staged rebuild, with a helper
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_FOLLOWER, store_path], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: proc.poll() is not None or len(_staging_files(store_path)) == 2, 120)
        assert proc.poll() is None, proc.stderr.read().decode()
        (helper,) = [int(f.rsplit(".rebuild-", 1)[1].split("-")[0]) for f in _staging_files(store_path) if f.endswith("-deliveries")]
        os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert err == b"" and out == b""  # neither "Aborted!" nor a traceback: as in the follow loop
    wait_until(lambda: not _alive(helper))
    assert not _alive(helper)
    assert _staging_files(store_path) == []
    assert set(_positions(log)) == {0}  # the rebuild was given up: the views as they were


def test_stopping_project_follow_in_its_follow_loop_exits_0_saying_nothing(log, store_path):
    ledger.append_input(log, jsonl([triggered("r1")]))
    proc = subprocess.Popen([EXE, "--store", store_path, "project", "--follow", "--interval", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_views(log.backend)
        ledger.append_input(log, jsonl([ev("run.started", run_id="r1")]))
        wait_for_views(log.backend)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert err == b""
    assert [orjson.loads(line) for line in out.splitlines()] == [{"applied": 1}, {"applied": 1}]


# `keys list` is a read.


def test_keys_list_reads_while_another_process_holds_the_write_lock(run, store_path):
    run("append", input=orjson.dumps(triggered("r1")).decode())
    log = open_log(store_path)
    key, _ = keys.create_key(log.backend, "dashboard", "read")
    log.close()
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = CliRunner().invoke(cli, ["--store", store_path, "--lock-timeout", "0.1", "keys", "list", "--json"])
    finally:
        holder.rollback()
        holder.close()
    assert result.exit_code == 0, result.output
    assert [k["id"] for k in orjson.loads(result.stdout)] == [key.id]


def test_keys_list_of_a_store_with_no_keys_yet_makes_no_table(run, store_path):
    run("append", input=orjson.dumps(triggered("r1")).decode())
    result = run("keys", "list", "--json")
    assert result.exit_code == 0 and orjson.loads(result.stdout) == []
    with sqlite3.connect(store_path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'api_keys'").fetchone() == (0,)


# Blank options of retry and cancel.


def _cancellable(run):
    run("append", input="".join(orjson.dumps(e).decode() + "\n" for e in [triggered("r1", trigger={"source": "api", "cancellation_key": "k1"}), triggered("r2")]))


@pytest.mark.parametrize("key", ["", " ", "\t"])
def test_cancel_with_a_blank_key_is_a_usage_error_naming_key(run, store_path, key):
    _cancellable(run)
    result = run("cancel", "--key", key)
    assert result.exit_code == 2
    assert "--key" in result.stderr and "blank" in result.stderr
    assert orjson.loads(run("runs", "show", "r1", "--json").stdout)["status"] == "pending"


@pytest.mark.parametrize("command", [["cancel", "r2"], ["retry", "r2"]], ids=" ".join)
@pytest.mark.parametrize("actor", ["", "  "])
def test_a_blank_actor_is_a_usage_error_naming_actor(run, command, actor):
    _cancellable(run)
    result = run(*command, "--actor", actor)
    assert result.exit_code == 2
    assert "--actor" in result.stderr and "blank" in result.stderr


def test_a_blank_flowledger_actor_is_refused_and_an_empty_one_is_no_actor(run):
    _cancellable(run)
    blank = run("cancel", "r2", env={"FLOWLEDGER_ACTOR": "  "})
    assert blank.exit_code == 2 and "--actor" in blank.stderr
    empty = run("cancel", "r2", "--json", env={"FLOWLEDGER_ACTOR": ""})  # an empty variable is no variable
    assert empty.exit_code == 0, empty.output
    last = orjson.loads(run("replay", "r2", "--json").stdout)["events"][-1]["event"]
    assert last["actor"] == getpass.getuser()


def test_an_empty_reason_records_none_as_the_api_does(run):
    _cancellable(run)
    assert run("cancel", "r2", "--reason", "").exit_code == 0
    last = orjson.loads(run("replay", "r2", "--json").stdout)["events"][-1]["event"]
    assert last["type"] == "run.cancelled" and "reason" not in last


def test_the_api_refuses_a_blank_cancellation_key_too(store_path):
    from fastapi.testclient import TestClient

    from flowledger.api.app import create_app

    log = open_log(store_path)
    ledger.append_input(log, jsonl([triggered("r1", trigger={"source": "api", "cancellation_key": "k1"})]))
    _, secret = keys.create_key(log.backend, "ops", "admin")
    log.close()
    with TestClient(create_app(store_path)) as client:
        r = client.post("/v1/cancellations", json={"key": " "}, headers={"X-API-Key": secret})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "key" and "blank" in r.json()["errors"][0]["message"]
        assert client.get("/v1/runs/r1", headers={"X-API-Key": secret}).json()["status"] == "pending"


# serve's --max-event-bytes and --redact-key.


@pytest.fixture
def served(store_path, monkeypatch):
    """Run `flowledger serve` with the given arguments and environment up to the server's
    start; returns the result and a client of the app it would have served."""
    uvicorn = pytest.importorskip("uvicorn")
    from fastapi.testclient import TestClient

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))

    def serve(*args, env=None):
        result = CliRunner().invoke(cli, ["--store", store_path, "serve", "--no-follow", *args], env=env)
        return result, (TestClient(apps[-1]) if apps and result.exit_code == 0 else None)

    return serve


def _write_key(store_path):
    log = open_log(store_path)
    _, secret = keys.create_key(log.backend, "w", "write")
    log.close()
    return {"X-API-Key": secret}


@pytest.mark.parametrize("how", ["option", "variable"])
def test_serve_takes_the_largest_event_as_append_does(served, store_path, how):
    args, env = (["--max-event-bytes", "400"], None) if how == "option" else ([], {"FLOWLEDGER_MAX_EVENT_BYTES": "400"})
    result, client = served(*args, env=env)
    assert result.exit_code == 0, result.output
    headers = _write_key(store_path)
    with client:
        r = client.post("/v1/events", json=[triggered("r1", data={"note": "x" * 500})], headers=headers)
        assert r.status_code == 422 and "the limit is 400 bytes" in r.json()["errors"][0]["message"]
        assert client.post("/v1/events", json=[triggered("r1")], headers=headers).json()["appended"] == 1


@pytest.mark.parametrize("args, env", [(["--max-event-bytes", "100"], None), ([], {"FLOWLEDGER_MAX_EVENT_BYTES": "lots"})])
def test_serve_refuses_a_bad_largest_event_as_append_does(served, store_path, args, env):
    result, _ = served(*args, env=env)
    appended = CliRunner().invoke(cli, ["--store", store_path, "append", *args, "-"], input="", env=env)
    assert result.exit_code == appended.exit_code == 2
    assert ("FLOWLEDGER_MAX_EVENT_BYTES" if env else "--max-event-bytes") in result.output  # whichever gave it
    assert result.output.splitlines()[-1] == appended.output.splitlines()[-1]


def test_serve_redacts_the_keys_named_by_its_option_and_the_variable(served, store_path):
    result, client = served("--redact-key", "ssn", env={"FLOWLEDGER_REDACT_KEYS": "pin"})
    assert result.exit_code == 0, result.output
    headers = _write_key(store_path)
    with client:
        event = triggered("r1", data={"ssn": "123-45-6789", "pin": "4242", "note": "kept"})
        assert client.post("/v1/events", json=[event], headers=headers).json()["appended"] == 1
    log = open_log(store_path)
    (stored,) = log.run_events("r1")
    log.close()
    assert stored.body["data"] == {"ssn": "[REDACTED]", "pin": "[REDACTED]", "note": "kept"}


# The webhooks' per-event limit.


def _sendgrid_post(store_path, events, **app_options):
    from fastapi.testclient import TestClient

    from flowledger.api.app import create_app
    from tests.test_webhooks import SECRETS, sendgrid_headers

    body = orjson.dumps(events)
    with TestClient(create_app(store_path, provider_secrets=SECRETS, **app_options)) as client:
        return client.post("/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))


def test_a_webhook_event_over_the_per_event_limit_is_refused_with_its_position_and_nothing_stored(store_path):
    from tests.test_webhooks import sendgrid_events

    events = sendgrid_events()
    events[2] = {**events[2], "note": "x" * 2000}
    r = _sendgrid_post(store_path, events, max_event_bytes=1000)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    (error,) = r.json()["errors"]
    assert error["index"] == 2 and error["id"] == "sendgrid:e-open"
    assert "the limit is 1,000 bytes" in error["message"] and "FLOWLEDGER_MAX_EVENT_BYTES" in error["message"]
    log = open_log(store_path)
    assert log.count() == 0 and ledger.unmatched(log) == []
    log.close()


def test_a_webhook_event_is_measured_as_stored_with_the_default_limit(store_path):
    from tests.test_webhooks import sendgrid_events

    events = sendgrid_events()
    # Over 1 MiB as sent, a few hundred bytes once its secret is redacted: stored, as by POST /v1/events.
    events[0] = {**events[0], "token": "t" * 1_200_000}
    events[1] = {**events[1], "note": "x" * 1_100_000}
    r = _sendgrid_post(store_path, events)
    assert r.status_code == 422
    assert [(e["index"], "the limit is 1,048,576 bytes" in e["message"]) for e in r.json()["errors"]] == [(1, True)]
    del events[1]
    r = _sendgrid_post(store_path, events)
    assert r.status_code == 200, r.text
    assert r.json()["held"] + r.json()["appended"] == 3


def test_append_format_holds_each_provider_event_to_max_event_bytes(run, store_path):
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "sendgrid-events.json")
    result = run("append", "--format", "sendgrid", "--max-event-bytes", "300", fixture)
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith("sendgrid event rbtnWrG1DVDGGGFHFyun0A==: the event is ") and first.endswith("the limit is 300 bytes (FLOWLEDGER_MAX_EVENT_BYTES)")
    assert "nothing of it was stored" in result.stderr
    log = open_log(store_path)
    assert log.count() == 0 and ledger.unmatched(log) == []
    log.close()
    assert orjson.loads(run("append", "--format", "sendgrid", fixture).stdout)["appended"] > 0


# A provider secret that would refuse every webhook.


def test_serve_refuses_to_start_with_a_sendgrid_key_that_is_no_key(served):
    result, client = served(env={"FLOWLEDGER_SENDGRID_PUBLIC_KEY": "bm90IGEga2V5"})
    assert result.exit_code == 1 and client is None
    assert "FLOWLEDGER_SENDGRID_PUBLIC_KEY" in result.output and "malformed" in result.output


def test_serve_refuses_to_start_with_a_sendgrid_key_and_no_cryptography(served, monkeypatch):
    from flowledger.providers import sendgrid
    from tests.test_webhooks import PUBLIC  # a real key: only the package is missing

    sendgrid.public_key.cache_clear()
    for name in ("cryptography", "cryptography.exceptions", "cryptography.hazmat.primitives.asymmetric",
                 "cryptography.hazmat.primitives.serialization"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails, as where the extra is not installed
    result, client = served(env={"FLOWLEDGER_SENDGRID_PUBLIC_KEY": PUBLIC})
    assert result.exit_code == 1 and client is None
    assert "pip install '.[webhooks]'" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 0), (signal.SIGTERM, -signal.SIGTERM)], ids=["SIGINT", "SIGTERM"]
)
def test_serve_stops_cleanly_on_ctrl_c_and_sigterm_as_readme_says(store_path, signum, status):
    """Ctrl-C exits 0; SIGTERM ends the process by the signal (a clean stop to a service manager)."""
    import httpx

    from tests.conftest import free_port, healthy

    port = free_port()
    proc = subprocess.Popen([EXE, "--store", store_path, "serve", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: proc.poll() is not None or healthy(port), 60)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, err.decode()
    assert b"Application shutdown complete" in err and b"Traceback" not in err
