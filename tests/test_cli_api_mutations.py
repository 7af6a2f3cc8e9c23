"""Behaviour of the command line's and the HTTP API's parameter handling that no other test
pinned: each test here failed on a small change (a mutant) of flowledger/cli.py or
flowledger/api/app.py that every other test let through."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from flowledger.api import app as app_module
from flowledger.cli import cli
from tests.conftest import ev, step, triggered
from tests.test_api import api, h  # noqa: F401  # the fixture, reused
from tests.test_api import failed_run as api_failed_run
from tests.test_cli_loose_ends import run  # noqa: F401  (a fixture)


def lines(*events) -> str:
    return "".join(orjson.dumps(e).decode() + "\n" for e in events)


@pytest.fixture
def failed_run(run):
    """A store with run r1 failed (five events)."""
    events = [
        triggered("r1"),
        ev("run.started", run_id="r1"),
        step("step.started", "r1"),
        step("step.failed", "r1"),
        ev("run.failed", run_id="r1", error="step email-1 failed"),
    ]
    result = run("append", "-", input=lines(*events))
    assert result.exit_code == 0, result.output
    return "r1"


def test_replay_at_zero_is_a_bad_option_not_the_last_event(run, failed_run):
    # N counts from 1: --at 0 must not wrap round to the last entry (history[-1]).
    result = run("replay", "r1", "--at", "0")
    assert result.exit_code == 2
    assert "--at" in result.stderr and "0" in result.stderr


KEYED = {"source": "api", "cancellation_key": "k1"}


def test_cancel_with_both_a_run_id_and_a_key_is_refused_and_cancels_nothing(run, store_path):
    assert run("append", "-", input=lines(triggered("r1", trigger=KEYED), triggered("r2", trigger=KEYED))).exit_code == 0
    both = run("cancel", "r1", "--key", "k1")
    assert both.exit_code == 2
    assert "RUN_ID or --key" in both.stderr and "not both" in both.stderr
    statuses = {r["id"]: r["status"] for r in orjson.loads(run("runs", "list", "--json").stdout)["entries"]}
    assert statuses == {"r1": "pending", "r2": "pending"}
    neither = run("cancel")
    assert neither.exit_code == 2 and "RUN_ID or --key" in neither.stderr


def test_with_no_actor_and_no_user_name_a_retry_records_no_actor(run, failed_run, monkeypatch):
    # A machine whose user has no name (a container's numeric uid): nothing is made up.
    def no_name():
        raise OSError("no user name")

    monkeypatch.setattr("flowledger.cli.getpass.getuser", no_name)
    assert run("retry", "r1", "--reason", "try again").exit_code == 0
    history = orjson.loads(run("replay", "r1", "--json").stdout)["events"]
    retried = history[-1]["event"]
    assert retried["type"] == "run.retried" and retried["reason"] == "try again"
    assert retried.get("actor") is None


def test_rebuild_of_an_unknown_view_is_a_bad_parameter_naming_the_views(run, failed_run):
    result = run("rebuild", "runs", "nosuch")
    assert result.exit_code == 2
    assert "VIEWS" in result.stderr and "'nosuch'" in result.stderr
    assert "runs, steps, deliveries" in result.stderr
    assert result.stdout == ""


def test_rebuild_into_a_store_url_that_cannot_be_one_is_a_bad_parameter_naming_into(run, failed_run, tmp_path):
    result = run("rebuild", "--into", "mysql://host/db")
    assert result.exit_code == 2
    assert "'--into'" in result.stderr and "mysql://host/db" in result.stderr
    assert result.stdout == ""


# The HTTP API.


def _padded(body: bytes, size: int) -> bytes:
    return body + b" " * (size - len(body))


def test_a_command_body_of_exactly_the_limit_is_read_and_one_byte_more_is_a_413(api):
    api.post("/v1/events", json=api_failed_run("r1"), headers=h(api, "write"))
    limit = app_module.MAX_COMMAND_BYTES
    admin = {**h(api, "admin"), "content-type": "application/json"}
    over = api.post("/v1/runs/r1/retry", content=_padded(b'{"reason": "x"}', limit + 1), headers=admin)
    assert over.status_code == 413
    # Named by its Content-Length, before any of it is read.
    assert over.json()["detail"] == f"the body is {limit + 1:,} bytes; the limit is {limit:,}"

    def chunks(size):  # no Content-Length: counted as it comes
        body = _padded(b'{"reason": "x"}', size)
        yield body[: size // 2]
        yield body[size // 2 :]

    over = api.post("/v1/runs/r1/retry", content=chunks(limit + 1), headers=admin)
    assert over.status_code == 413 and f"{limit:,}" in over.json()["detail"]
    assert api.get("/v1/runs/r1", headers=h(api, "read")).json()["status"] == "failed"
    done = api.post("/v1/runs/r1/retry", content=chunks(limit), headers=admin)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "pending"


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/deliveries"])
def test_after_and_before_together_are_a_422_naming_before(api, path):
    cursor = "c2VxOjE"  # seq:1, a well-formed cursor
    r = api.get(path, params={"after": cursor, "before": cursor}, headers=h(api, "read"))
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "before", "message": "give after or before, not both"}]



@pytest.mark.parametrize("body", [b"", b"null", b" \n"])
def test_a_cancellation_without_a_body_is_a_422_naming_the_body(api, body):
    api.post("/v1/events", json=api_failed_run("r1"), headers=h(api, "write"))
    r = api.post("/v1/cancellations", content=body, headers={**h(api, "admin"), "content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "body", "message": "expected a JSON object"}]


@pytest.mark.parametrize("body", [b"", b" \r\n\t", b"null"])
def test_a_retry_whose_body_is_empty_white_space_or_null_is_a_retry_without_a_reason(api, body):
    api.post("/v1/events", json=api_failed_run("r1"), headers=h(api, "write"))
    r = api.post("/v1/runs/r1/retry", content=body, headers={**h(api, "admin"), "content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending" and r.json()["retry_count"] == 1


@pytest.mark.parametrize("command", ["unmatched", "inbox"])
@pytest.mark.parametrize("limit", ["0", "100001"])
def test_a_listing_limit_out_of_its_range_is_a_bad_option(run, failed_run, command, limit):
    result = run(command, "--limit", limit)
    assert result.exit_code == 2
    assert "--limit" in result.stderr and "1<=x<=100000" in result.stderr


@pytest.mark.parametrize("port", ["0", "65536"])
def test_serve_refuses_a_port_out_of_range_before_starting(run, port, monkeypatch):
    started = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: started.append(k))
    result = run("serve", "--port", port)
    assert result.exit_code == 2
    assert "--port" in result.stderr and "1<=x<=65535" in result.stderr
    assert started == []


@pytest.mark.parametrize("size", ["0", "100001"])
def test_append_batch_size_out_of_its_range_is_a_bad_option_and_stores_nothing(run, store_path, size):
    result = run("append", "--batch-size", size, "-", input=lines(triggered("r1")))
    assert result.exit_code == 2
    assert "--batch-size" in result.stderr and "1<=x<=100000" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("command", [("runs", "list"), ("deliveries", "list")])
def test_a_page_size_over_the_largest_is_a_bad_option_naming_page_size(run, failed_run, command):
    from flowledger import queries

    result = run(*command, "--page-size", str(queries.MAX_PAGE_SIZE + 1))
    assert result.exit_code == 2
    assert "'--page-size'" in result.stderr and f"1<=x<={queries.MAX_PAGE_SIZE}" in result.stderr


@pytest.mark.parametrize("interval", ["0", "0.04", "86401"])
def test_project_follow_refuses_an_interval_out_of_range_before_following(run, failed_run, interval, monkeypatch):
    followed = []
    monkeypatch.setattr("flowledger.ledger.follow", lambda *a, **k: followed.append(k))
    result = run("project", "--follow", "--interval", interval)
    assert result.exit_code == 2
    assert "--interval" in result.stderr
    assert followed == []


def test_every_query_with_no_catch_up_answers_from_the_views_as_they_are(run):
    assert run("append", "-", input=lines(triggered("r1"))).exit_code == 0
    assert run("project").exit_code == 0
    later = [
        triggered("r2", workflow="later"),
        ev("run.started", run_id="r2"),
        step("step.started", "r2"),
        step("step.succeeded", "r2"),
        ev("message.queued", message_id="m-2", run_id="r2", channel="email", recipient="u"),
    ]
    appended = run("append", "-", input=lines(*later))
    assert appended.exit_code == 0, appended.output
    stale = {
        ("runs", "show", "r2"): 1,
        ("deliveries", "show", "m-2"): 1,
        ("workflows", "show", "later"): 1,
        ("stats", "later"): 1,
    }
    for args, code in stale.items():
        result = run(*args, "--no-catch-up", "--json")
        assert result.exit_code == code, (args, result.output)
    assert orjson.loads(run("workflows", "list", "--no-catch-up", "--json").stdout)[0]["key"] == "welcome"
    assert len(orjson.loads(run("workflows", "list", "--no-catch-up", "--json").stdout)) == 1
    # Caught up, each sees the later run.
    for args in stale:
        assert run(*args, "--json").exit_code == 0, args
    assert len(orjson.loads(run("workflows", "list", "--json").stdout)) == 2


@pytest.mark.parametrize("bad, more", [(200, None), (201, "… and 1 more problem(s)")])
def test_problems_past_the_two_hundredth_are_counted_from_the_first_one_over(run, store_path, bad, more):
    result = run("append", "-", input="{}\n" * bad)
    assert result.exit_code == 1
    shown = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert len({line.split(":")[0] for line in shown}) == 200
    assert (more in result.stderr) if more else ("more problem" not in result.stderr)


def test_append_of_a_provider_export_refuses_skip_invalid(run, store_path, tmp_path):
    result = run("append", "--format", "sendgrid", "--skip-invalid", str(tmp_path / "bad.jsonl"), "tests/fixtures/sendgrid-events.json")
    assert result.exit_code == 2
    assert "--skip-invalid goes with flowledger's own format only" in result.stderr
    assert not (tmp_path / "bad.jsonl").exists()


@pytest.mark.parametrize("command, event_type", [("retry", "run.retried"), ("cancel", "run.cancelled")])
def test_a_retry_or_cancel_through_the_api_records_the_key_as_the_actor(api, command, event_type):
    api.post("/v1/events", json=api_failed_run("r1"), headers=h(api, "write"))
    if command == "cancel":
        api.post("/v1/runs/r1/retry", headers=h(api, "admin"))  # a failed run cannot be cancelled
    r = api.post(f"/v1/runs/r1/{command}", json={"reason": "why"}, headers=h(api, "admin"))
    assert r.status_code == 200, r.text
    events = api.get("/v1/runs/r1/history", headers=h(api, "read")).json()["events"]
    last = events[-1]["event"]
    assert last["type"] == event_type and last["actor"] == "api:admin key" and last["reason"] == "why"


def test_an_os_error_from_outside_the_reading_of_the_input_is_not_called_a_reading_failure(run, monkeypatch):
    # Only the input's own read failures are "reading the input failed"; another OSError is
    # left to main(), which names it as what it is.
    def fails(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("flowledger.ledger.append_input", fails)
    with pytest.raises(PermissionError):
        run("append", "-", input=lines(triggered("r1")))
