"""The flowledger command line, driven as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import orjson
import pytest
from click.testing import CliRunner

from flowledger.cli import cli
from tests.conftest import ev, step, triggered, wait_for_views, wait_until


@pytest.fixture
def run(store_path):
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(cli, ["--store", store_path, *args], input=input, catch_exceptions=False)

    return invoke


def lines(*events) -> str:
    return "".join(orjson.dumps(e).decode() + "\n" for e in events)


def failed_run(run_id="r1", **trigger_fields):
    return [
        triggered(run_id, **trigger_fields),
        ev("run.started", run_id=run_id),
        step("step.started", run_id),
        step("step.failed", run_id, error={"message": "SMTP 451", "code": 451}),
        ev("run.failed", run_id=run_id, error="step email-1 failed"),
    ]


def test_append_from_stdin_prints_counts(run):
    events = failed_run()
    result = run("append", "-", input=lines(*events))
    assert result.exit_code == 0
    assert orjson.loads(result.stdout) == {"appended": 5, "duplicates": 0}
    again = run("append", input=lines(*events[:2]))
    assert orjson.loads(again.stdout) == {"appended": 0, "duplicates": 2}


def test_an_input_of_nothing_but_white_space_appends_nothing(run):
    # It used to wait for a first non-blank byte forever.
    result = run("append", "-", input="  \n\t\n   ")
    assert result.exit_code == 0
    assert orjson.loads(result.stdout) == {"appended": 0, "duplicates": 0}


def test_blank_lines_before_the_first_event_count_in_its_line_number(run):
    result = run("append", "-", input="\n\n" + lines(ev("run.completed", run_id="ghost")))
    assert result.exit_code == 1
    assert "line 3: event" in result.stderr


def test_append_a_json_array_file(run, tmp_path):
    path = tmp_path / "batch.json"
    path.write_bytes(orjson.dumps(failed_run(), option=orjson.OPT_INDENT_2))
    result = run("append", str(path))
    assert orjson.loads(result.stdout) == {"appended": 5, "duplicates": 0}


def test_a_malformed_file_exits_1_with_each_problem_and_stores_nothing(run, tmp_path, store_path):
    events = failed_run()
    bad = lines(*events[:2]) + "{oops\n" + lines({**events[2], "attempt": "1"}, ev("run.completed", run_id="ghost"))
    result = run("append", "-", input=bad)
    assert result.exit_code == 1
    err = result.stderr
    assert "line 3: not valid JSON" in err
    assert 'line 4: field "attempt": Input should be a valid integer' in err
    assert "line 5: event" in err and "'ghost'" in err and "never triggered" in err
    assert "nothing of it was stored" in err
    assert "Traceback" not in result.output
    assert run("replay", "r1").exit_code == 1  # nothing stored: no such run


def test_skip_invalid_appends_the_rest_and_writes_the_bad_lines_aside(run, tmp_path):
    events = failed_run()
    skip = tmp_path / "rejected.jsonl"
    data = lines(*events) + "{oops\n" + lines(ev("run.completed", run_id="ghost"))
    result = run("append", "-", "--skip-invalid", str(skip), input=data)
    assert result.exit_code == 0
    assert orjson.loads(result.stdout) == {"appended": 5, "duplicates": 0, "skipped": 2}
    rejected = [orjson.loads(x) for x in skip.read_text().splitlines()]
    assert [r["line"] for r in rejected] == [6, 7]
    assert rejected[0]["input"] == "{oops" and "never triggered" in rejected[1]["errors"][0]


@pytest.mark.parametrize(
    "broken, where",
    [
        (lambda items: [items[0], items[1][:-1] + ",}", *items[2:]], "line 3, item 2: not valid JSON"),
        (lambda items: [items[0], items[1] + " " + items[2], items[3]], "line 3, item 3: not valid JSON: expected , or ]"),
        (lambda items: items, "line 7: not valid JSON: text after the array's ]"),
    ],
    ids=["syntax error in an item", "no comma", "a second array"],
)
def test_a_json_array_that_cannot_be_read_to_its_end_stores_nothing_even_skipping_invalid(run, tmp_path, broken, where):
    # Its items after the break are unknown: storing the ones before used to drop them silently.
    items = [orjson.dumps(e).decode() for e in [triggered("r1"), triggered("r2"), triggered("r3"), triggered("r4")]]
    text = "[\n" + ",\n".join(broken(items)) + "\n]\n"
    if "after the array" in where:
        text += '[{"id": "more"}]\n'
    path, skip = tmp_path / "batch.json", tmp_path / "rejected.jsonl"
    path.write_text(text)
    result = run("append", str(path), "--skip-invalid", str(skip))
    assert result.exit_code == 1
    assert where in result.stderr and "nothing of it was stored" in result.stderr
    assert not skip.exists()
    assert run("replay", "r1").exit_code == 1  # nothing stored


def test_each_item_of_a_json_array_on_one_line_is_its_own_problem(run, tmp_path):
    events = [triggered("r1"), ev("run.completed", run_id="ghost1"), ev("run.completed", run_id="ghost2"), {"id": "x", "type": "nope"}]
    path = tmp_path / "batch.json"
    path.write_bytes(orjson.dumps(events))
    result = run("append", str(path))
    assert result.exit_code == 1
    shown = [x.split(":")[0] for x in result.stderr.splitlines()[:3]]
    assert shown == ["line 1, item 2", "line 1, item 3", "line 1, item 4"]
    assert "'ghost2'" in result.stderr.splitlines()[1]
    skip = tmp_path / "rejected.jsonl"
    result = run("append", str(path), "--skip-invalid", str(skip))
    assert orjson.loads(result.stdout) == {"appended": 1, "duplicates": 0, "skipped": 3}
    rejected = [orjson.loads(x) for x in skip.read_text().splitlines()]
    assert [(r["line"], r["item"], len(r["errors"])) for r in rejected] == [(1, 2, 1), (1, 3, 1), (1, 4, 1)]
    assert [orjson.loads(r["input"]) for r in rejected] == events[1:]


@pytest.mark.parametrize("skipping", [False, True], ids=["refused", "skipping invalid"])
def test_an_array_item_nested_too_deeply_to_decode_is_a_clear_error(run, tmp_path, skipping):
    path, skip = tmp_path / "batch.json", tmp_path / "rejected.jsonl"
    path.write_text("[" + orjson.dumps(triggered("r1")).decode() + ", " + "[" * 100_000 + "]" * 100_000 + "]")
    result = run("append", str(path), *(["--skip-invalid", str(skip)] if skipping else []))
    assert result.exit_code == 1
    assert "line 1, item 2: not valid JSON: nested too deeply" in result.stderr
    assert "Traceback" not in result.output and "RecursionError" not in result.output
    assert run("replay", "r1").exit_code == 1  # nothing stored


def test_a_skip_file_that_cannot_be_written_is_an_error_before_anything_is_stored(run, tmp_path, store_path):
    data = lines(triggered("r1")) + "{oops\n"
    skip = tmp_path / "no" / "such" / "dir" / "rejected.jsonl"
    result = run("append", "-", "--skip-invalid", str(skip), input=data)
    assert result.exit_code == 1
    assert f"cannot write the --skip-invalid file {skip}" in result.stderr and "nothing was stored" in result.stderr
    assert "this is a bug" not in result.output
    assert run("replay", "r1").exit_code == 1  # nothing stored


def test_a_skip_file_from_an_earlier_run_is_kept_when_an_append_fails(run, tmp_path):
    skip = tmp_path / "rejected.jsonl"
    skip.write_text("earlier\n")
    result = run("append", "-", "--skip-invalid", str(skip), input='[{"id": "a"} {"id": "b"}]')
    assert result.exit_code == 1 and skip.read_text() == "earlier\n"
    result = run("append", "-", "--skip-invalid", str(skip), input=lines(triggered("r1")) + "{oops\n")
    assert result.exit_code == 0 and [orjson.loads(x)["line"] for x in skip.read_text().splitlines()] == [2]

def test_replay_lists_events_with_the_status_after_each(run):
    run("append", input=lines(*failed_run()))
    result = run("replay", "r1")
    assert result.exit_code == 0
    rows = result.stdout.splitlines()
    assert rows[0] == "Run r1 (welcome): 5 events"
    statuses = [r.split()[-1] for r in rows[2:]]
    assert statuses == ["pending", "running", "running", "running", "failed"]


def test_replay_at_n_shows_the_state_after_that_event(run):
    run("append", input=lines(*failed_run()))
    data = orjson.loads(run("replay", "r1", "--at", "2", "--json").stdout)
    assert (data["n"], data["of"], data["event"]["type"], data["state"]["status"]) == (2, 5, "run.started", "running")
    assert data["state"]["executed_at"] == "2026-11-01T09:00:00.000000Z"
    out_of_range = run("replay", "r1", "--at", "9")
    assert out_of_range.exit_code == 2 and "1 to 5" in out_of_range.stderr


def test_replay_json_has_every_event_and_state(run):
    run("append", input=lines(*failed_run()))
    data = orjson.loads(run("replay", "r1", "--json").stdout)
    assert [e["status"] for e in data["events"]] == ["pending", "running", "running", "running", "failed"]
    assert data["events"][-1]["state"]["error_count"] == 1


def test_runs_show(run):
    run("append", input=lines(*failed_run()))
    record = orjson.loads(run("runs", "show", "r1", "--json").stdout)
    assert record["status"] == "failed"
    assert record["error_message"] == "step email-1 failed"
    assert (record["retry_count"], record["max_retries"], record["error_count"]) == (0, 3, 1)
    text = run("runs", "show", "r1").stdout
    assert "status            failed" in text


def test_unknown_run_is_a_clear_error(run):
    run("append", input=lines(triggered("r1")))
    result = run("runs", "show", "nope")
    assert result.exit_code == 1 and "no run 'nope'" in result.stderr


def test_retry_a_failed_run_then_refuse_a_second_retry(run):
    run("append", input=lines(*failed_run()))
    result = run("retry", "r1", "--reason", "provider is back", "--actor", "ops@example.com")
    assert result.exit_code == 0 and "retry 1 of 3" in result.stdout and "pending" in result.stdout
    history = orjson.loads(run("replay", "r1", "--json").stdout)["events"]
    last = history[-1]["event"]
    assert (last["type"], last["actor"], last["reason"]) == ("run.retried", "ops@example.com", "provider is back")
    again = run("retry", "r1")
    assert again.exit_code == 1 and "only a failed run can be retried" in again.stderr


def test_retry_stops_at_max_retries(run):
    run("append", input=lines(*failed_run(max_retries=0)))
    result = run("retry", "r1")
    assert result.exit_code == 1
    # Worded as the other refusals, with no event id made up for the attempt.
    assert result.stderr.strip() == "Error: cannot retry run 'r1': retry_count 0 has reached max_retries 0"


def test_cancel_a_run_and_refuse_to_cancel_a_finished_one(run):
    run("append", input=lines(triggered("r1"), ev("run.started", run_id="r1")))
    result = run("cancel", "r1", "--reason", "customer asked", "--json")
    assert orjson.loads(result.stdout)["status"] == "cancelled"
    again = run("cancel", "r1")
    assert again.exit_code == 1 and "already cancelled" in again.stderr


def test_cancel_by_key_cancels_only_unfinished_runs_with_that_key(run):
    keyed = {"trigger": {"source": "api", "cancellation_key": "order-1"}}
    run(
        "append",
        input=lines(
            triggered("a", **keyed),
            triggered("b", **keyed),
            ev("run.started", run_id="b"),
            triggered("c", **keyed),
            ev("run.started", run_id="c"),
            ev("run.completed", run_id="c"),
            triggered("d"),
        ),
    )
    result = orjson.loads(run("cancel", "--key", "order-1", "--json").stdout)
    assert result == {"cancellation_key": "order-1", "cancelled": ["a", "b"]}
    statuses = {r: orjson.loads(run("runs", "show", r, "--json").stdout)["status"] for r in "abcd"}
    assert statuses == {"a": "cancelled", "b": "cancelled", "c": "completed", "d": "pending"}
    event = orjson.loads(run("replay", "a", "--json").stdout)["events"][-1]["event"]
    assert (event["by"], event["cancellation_key"]) == ("cancellation_key", "order-1")
    assert orjson.loads(run("cancel", "--key", "order-1", "--json").stdout)["cancelled"] == []


def test_cancel_needs_a_run_or_a_key(run):
    result = run("cancel")
    assert result.exit_code == 2


def test_reading_commands_do_not_create_a_store(tmp_path):
    path = tmp_path / "none.db"
    result = CliRunner().invoke(cli, ["--store", str(path), "replay", "r1"])
    assert result.exit_code == 1 and "no store at" in result.stderr and not path.exists()


def test_store_from_environment(tmp_path):
    path = tmp_path / "env.db"
    result = CliRunner().invoke(cli, ["append"], input=lines(triggered("r1")), env={"FLOWLEDGER_STORE": str(path)})
    assert result.exit_code == 0 and path.exists()


def test_max_event_bytes_option(run):
    result = run("append", "--max-event-bytes", "300", input=lines(triggered("r1", data={"x": "y" * 400})))
    assert result.exit_code == 1 and "the limit is 300 bytes" in result.stderr


def test_redact_key_option_and_environment(run, store_path):
    result = CliRunner().invoke(
        cli,
        ["--store", store_path, "append", "--redact-key", "ssn"],
        input=lines(triggered("r1", data={"ssn": "1", "pin": "2", "keep": "3"})),
        env={"FLOWLEDGER_REDACT_KEYS": "pin, other"},
    )
    assert result.exit_code == 0
    state = orjson.loads(run("replay", "r1", "--json").stdout)["events"][0]["event"]["data"]
    assert state == {"ssn": "[REDACTED]", "pin": "[REDACTED]", "keep": "3"}


def _commands(group, prefix=()):
    import click

    for name, command in group.commands.items():
        path = (*prefix, name)
        if isinstance(command, click.Group):
            yield from _commands(command, path)
        else:
            yield path, command


@pytest.mark.parametrize("path", [p for p, _ in _commands(cli)], ids=" ".join)
def test_every_command_has_help_with_an_example_and_is_in_the_readme(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "flowledger " + " ".join(path) in result.output
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    assert f"flowledger {' '.join(path)}" in readme, f"README does not show `flowledger {' '.join(path)}`"


def test_the_installed_command_never_shows_a_traceback(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "flowledger")
    store = tmp_path / "not-a-db.db"
    store.write_bytes(b"garbage" * 1000)
    proc = subprocess.run([exe, "--store", str(store), "append", "-"], input=b"{}", capture_output=True)
    assert proc.returncode == 1
    assert b"Traceback" not in proc.stderr and b"not a flowledger store" in proc.stderr


def test_queries_read_their_writes_unless_told_not_to_catch_up(run):
    run("append", input=lines(triggered("r1")))
    assert orjson.loads(run("counts", "--json").stdout)["total"] == 1
    run("append", input=lines(triggered("r2")))
    assert orjson.loads(run("counts", "--json", "--no-catch-up").stdout)["total"] == 1
    assert orjson.loads(run("counts", "--json").stdout)["total"] == 2


def test_runs_list_json_shape_and_cursors(run):
    run("append", input=lines(*[triggered(f"r{i}") for i in range(5)]))
    first = orjson.loads(run("runs", "list", "--page-size", "2", "--json").stdout)
    assert [e["id"] for e in first["entries"]] == ["r4", "r3"]
    assert first["page_info"]["before"] is None and first["page_info"]["page_size"] == 2
    second = orjson.loads(run("runs", "list", "--page-size", "2", "--after", first["page_info"]["after"], "--json").stdout)
    assert [e["id"] for e in second["entries"]] == ["r2", "r1"]
    bad = run("runs", "list", "--after", "garbage!")
    assert bad.exit_code == 2 and "not a cursor" in bad.stderr


def test_project_follow_keeps_views_current_and_stops_on_sigterm(store_path):
    import signal
    import time

    from flowledger.store import open_log

    log = open_log(store_path)
    exe = os.path.join(os.path.dirname(sys.executable), "flowledger")
    proc = subprocess.Popen([exe, "--store", store_path, "project", "--follow", "--interval", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        from flowledger import ledger
        from tests.histories import jsonl

        ledger.append_input(log, jsonl([triggered("r1"), ev("run.started", run_id="r1")]))
        wait_for_views(log.backend)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        log.close()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err


def test_project_follow_started_while_the_store_is_busy_waits_it_out(store_path):
    import signal
    import sqlite3
    import threading
    import time

    from flowledger import ledger
    from flowledger.store import open_log
    from tests.histories import jsonl

    log = open_log(store_path)
    ledger.append_input(log, jsonl([triggered("r1")]))
    ledger.catch_up(log)
    ledger.append_input(log, jsonl([ev("run.started", run_id="r1")]))
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    exe = os.path.join(os.path.dirname(sys.executable), "flowledger")
    command = [exe, "--store", store_path, "--lock-timeout", "0.1", "project", "--follow", "--interval", "0.05"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[bytes] = []
    # Read on a thread: the lock is let go only once the follower has met it, however long
    # the process takes to start on a loaded machine.
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_until(lambda: proc.poll() is not None or any(b"could not catch up" in line for line in lines), 60)
        time.sleep(0.3)  # a few more attempts: it keeps trying, and does not exit
        assert proc.poll() is None, b"".join(lines).decode()
        holder.rollback()
        wait_for_views(log.backend)
    finally:
        holder.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=30)
        log.close()
    err = b"".join(lines)
    assert proc.returncode == 0, err.decode()
    assert b"could not catch up" in err and b"busy" in err
    assert b"Traceback" not in err
    # An operator reads these later, from a journal or a file: when, and how bad.
    import re

    retried = [line for line in lines if b"could not catch up" in line]
    assert all(re.match(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} WARNING could not catch up", line) for line in retried), retried


def test_serve_starts_on_a_store_busy_with_an_import_and_keeps_webhooks_in_the_inbox(store_path):
    # An import holds the write lock for its whole length (minutes): a server that would not
    # start until then (it exited 1, or waited --lock-timeout) left providers that never retry
    # (Twilio) with no one to take their webhooks, which the inbox is there to keep.
    pytest.importorskip("uvicorn")
    import sqlite3

    import httpx

    from flowledger import ledger
    from flowledger.api import keys
    from flowledger.store import open_log
    from tests.conftest import free_port, healthy, wait_until
    from tests.histories import jsonl
    from tests.test_webhooks import PUBLIC, run_with_messages, sendgrid_events, sendgrid_headers

    log = open_log(store_path)
    ledger.append_input(log, jsonl(run_with_messages()))
    ledger.catch_up(log)
    keys.create_key(log.backend, "dashboard", "read")  # a store that has served before
    ledger.append_input(log, jsonl([triggered("r2")]))  # its views behind: a catch-up to do
    log.close()
    port = free_port()
    env = {**os.environ, "FLOWLEDGER_SENDGRID_PUBLIC_KEY": PUBLIC}
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the import's transaction
    exe = os.path.join(os.path.dirname(sys.executable), "flowledger")
    # A lock timeout far longer than the test: the start-up must not wait for it.
    command = [exe, "--store", store_path, "--lock-timeout", "600", "serve", "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        wait_until(lambda: proc.poll() is not None or healthy(port), 60)
        assert proc.poll() is None, proc.stderr.read().decode()
        body = orjson.dumps(sendgrid_events())
        kept = httpx.post(f"http://127.0.0.1:{port}/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body), timeout=30)
        assert kept.status_code == 200 and kept.json()["deferred"] == 4, kept.text
        holder.rollback()  # the import ends: the follower appends what the inbox kept
        wait_until(lambda: "deferred" not in httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json(), 60)
        assert "deferred" not in httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        holder.rollback()
        holder.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"could not catch the views up" in err and b"busy" in err and b"Traceback" not in err


def test_serve_on_a_port_already_taken_is_a_clear_error_exiting_1(store_path):
    pytest.importorskip("uvicorn")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exe = os.path.join(os.path.dirname(sys.executable), "flowledger")
        done = subprocess.run([exe, "--store", store_path, "serve", "--port", str(port)], capture_output=True, timeout=60)
    assert done.returncode == 1
    err = done.stderr.decode()
    assert f"the server could not start on 127.0.0.1:{port}" in err
    assert "Traceback" not in err and "unexpected" not in err


@pytest.mark.parametrize("args", [["runs", "show", "\udcff"], ["replay", "r\udcff"], ["runs", "list", "--workflow", "w\udcff"]])
def test_an_argument_that_is_not_utf8_is_a_usage_error(run, store_path, args):
    # Bytes that are not UTF-8 on a command line reach Python as lone surrogates.
    run("append", input=lines(triggered("r1")))
    result = CliRunner().invoke(cli, ["--store", store_path, *args])
    assert result.exit_code == 2
    assert "is not UTF-8 text" in result.output and "unexpected" not in result.output


def test_serve_never_logs_a_secret_sent_in_a_query(store_path):
    pytest.importorskip("uvicorn")
    import socket
    import time as _time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = os.path.join(os.path.dirname(sys.executable), "flowledger")
    env = {**os.environ, "FLOWLEDGER_WHATSAPP_APP_SECRET": "app-secret", "FLOWLEDGER_WHATSAPP_VERIFY_TOKEN": "vt-SECRET-1"}
    proc = subprocess.Popen([exe, "--store", store_path, "serve", "--port", str(port), "--no-follow"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = _time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/healthz")
                break
            except httpx.TransportError:
                assert _time.monotonic() < deadline and proc.poll() is None
                _time.sleep(0.1)
        good = httpx.get(base + "/v1/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "vt-SECRET-1", "hub.challenge": "42"})
        assert good.text == "42"
        httpx.get(base + "/v1/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "guess-SECRET-2", "hub.challenge": "1"})
        httpx.get(base + "/healthz", params={"token": "SECRET-3", "page": "2"})
        # an API key pasted into the URL under a name no redactor knows is still a key.
        httpx.get(base + "/v1/runs", params={"k": "fl_live_SECRET-4", "page_size": "5"})
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    log = (out + err).decode()
    assert "/v1/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=***&hub.challenge=42" in log
    assert "/healthz?token=***&page=2" in log
    assert "/v1/runs?k=***&page_size=5" in log
    assert "SECRET" not in log


@pytest.mark.parametrize(
    "args, option",
    [
        (["--lock-timeout", "nan", "counts"], "--lock-timeout"),
        (["--lock-timeout", "inf", "counts"], "--lock-timeout"),
        (["--lock-timeout", "2147484", "counts"], "--lock-timeout"),
        (["project", "--follow", "--interval", "nan"], "--interval"),
        (["project", "--follow", "--interval", "inf"], "--interval"),
    ],
)
def test_seconds_that_are_no_number_or_too_many_are_usage_errors(store_path, args, option):
    result = CliRunner().invoke(cli, ["--store", store_path, *args])
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output


def test_a_lock_timeout_past_what_sqlite_takes_still_waits_for_the_lock(store_path):
    # SQLite's busy timeout is a 32-bit count of milliseconds: past it, the store said at
    # once that it was busy.
    from flowledger.store import open_log

    log = open_log(store_path, lock_timeout=3_000_000)
    try:
        raw = log.backend.datastore.pool.get_connection(is_writer=True)._sqlite_conn  # noqa: SLF001
        assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == 2**31 - 1
    finally:
        log.close()


def test_rebuild_of_a_view_named_twice_rebuilds_it_once(run):
    run("append", input=lines(*failed_run()))
    result = run("rebuild", "runs", "runs")
    assert result.exit_code == 0 and orjson.loads(result.stdout)["views"] == ["runs"]


def test_workflows_show_keeps_currencies_apart_and_prints_no_python_none(run):
    events = [
        triggered("r1", workflow="wf"),
        ev("message.queued", message_id="m1", run_id="r1", channel="sms", recipient="u"),
        ev("message.sent", message_id="m1", cost={"amount": 0.01, "currency": "USD"}),
        ev("message.queued", message_id="m2", run_id="r1", channel="sms", recipient="u"),
        ev("message.sent", message_id="m2", cost={"amount": 0.02, "currency": "EUR"}),
    ]
    run("append", input=lines(*events))
    details = orjson.loads(run("workflows", "show", "wf", "--json").stdout)
    sms = details["channels"]["sms"]
    assert sms["estimated_cost"] is None and sms["costs_by_currency"] == {"EUR": 0.02, "USD": 0.01}
    text = run("workflows", "show", "wf").stdout
    assert "None" not in text
    assert "costs_by_currency 0.02 EUR + 0.01 USD" in text and "cost 0.02 EUR + 0.01 USD" in text


def test_a_line_break_in_an_error_never_splits_a_table_row(run):
    events = failed_run()
    events[3] = step("step.failed", "r1", error="line one\nline two")
    run("append", input=lines(*events))
    for args in (["replay", "r1"], ["runs", "show", "r1"]):
        out = run(*args).stdout
        assert "line one\\nline two" in out
        assert not any(line.startswith("line two") for line in out.splitlines())


def test_serves_webhook_memory_is_the_apis_budget_in_mib_and_fits_its_largest_webhook():
    from flowledger.api.app import MAX_BATCH_BYTES, WEBHOOK_BODY_BUDGET

    option = next(p for p in cli.commands["serve"].params if p.name == "webhook_memory")
    assert option.default << 20 == WEBHOOK_BODY_BUDGET and option.type.min << 20 == MAX_BATCH_BYTES


def test_serve_limits_connections_and_how_long_a_webhook_body_may_take(store_path):
    # Facing the internet with no proxy in front: connections past the limit are answered
    # 503 at once, and a webhook body that stops arriving is a 408 after --webhook-timeout.
    pytest.importorskip("uvicorn")
    import socket

    import httpx

    from flowledger.store import open_log
    from tests.conftest import free_port, healthy
    from tests.test_api_hostile import _answer_of

    open_log(store_path).close()
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "flowledger")
    command = [
        exe, "--store", store_path, "serve", "--port", str(port), "--max-connections", "2", "--webhook-timeout", "3",
        "--webhook-memory", "10",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/healthz"
    hook, mib = f"http://127.0.0.1:{port}/v1/webhooks/postmark", b"[" + b" " * (1 << 20) + b"]"
    try:
        wait_until(lambda: proc.poll() is not None or healthy(port), 60)
        assert proc.poll() is None, proc.stderr.read().decode()
        first = socket.create_connection(("127.0.0.1", port))  # one connection, idle
        assert httpx.get(url, timeout=10).status_code == 200  # the second
        second = socket.create_connection(("127.0.0.1", port))
        refused = httpx.get(url, timeout=10)  # a third
        assert refused.status_code == 503, refused.text
        second.close()
        wait_until(lambda: httpx.get(url, timeout=10).status_code == 200, 30)
        assert httpx.get(url, timeout=10).status_code == 200
        head = b"POST /v1/webhooks/postmark HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
        first.sendall(head + b" " * 9_500_000)  # and then nothing more, holding 9.5 of its 10 MiB
        wait_until(lambda: httpx.post(hook, content=mib, timeout=10).status_code == 503, 10)
        assert httpx.post(hook, content=mib, timeout=10).status_code == 503  # no room for 1 MiB more
        answer = _answer_of(first, 30)
        first.close()
        assert answer.startswith(b"HTTP/1.1 408 ") and b"within 3 s" in answer, answer[:300]
        assert httpx.post(hook, content=mib, timeout=10).status_code == 401  # room again: read, unsigned
    finally:
        proc.terminate()
        proc.wait(timeout=30)
