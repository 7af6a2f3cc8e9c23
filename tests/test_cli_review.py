"""The command line as an operator uses it day to day: one run shown one way by every
command, errors that name the option, filters that behave as the HTTP API's."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from flowledger.cli import cli
from tests.conftest import ev, step, triggered
from tests.test_cli import lines, run  # noqa: F401  # run: the fixture



ACCOUNT = {"collection": "accounts", "id": "acct-7"}


def test_a_recipient_in_a_collection_is_shown_alike_by_runs_list_runs_show_and_replay(run):
    assert run("append", input=lines(triggered("r1", recipient=ACCOUNT))).exit_code == 0
    listed = run("runs", "list").stdout
    assert "accounts/acct-7" in listed
    for args in (("runs", "show", "r1"), ("replay", "r1", "--at", "1")):
        shown = run(*args).stdout
        recipient_line = next(line for line in shown.splitlines() if line.startswith("recipient "))
        assert recipient_line.split() == ["recipient", "accounts/acct-7"], args


@pytest.mark.parametrize("command", [("runs", "list"), ("deliveries", "list")])
def test_cursor_errors_name_the_option(run, command):
    assert run("append", input=lines(triggered("r1"))).exit_code == 0
    bad = run(*command, "--after", "garbage")
    assert bad.exit_code == 2
    assert "--after" in bad.stderr and "garbage" in bad.stderr
    bad = run(*command, "--before", "garbage")
    assert bad.exit_code == 2 and "--before" in bad.stderr
    page = orjson.loads(run(*command, "--json").stdout)
    cursor = "c2VxOjE"  # seq:1, a well-formed cursor
    both = run(*command, "--after", cursor, "--before", cursor)
    assert both.exit_code == 2
    assert "--after" in both.stderr and "--before" in both.stderr
    assert page["page_info"]["page_size"] == 50


@pytest.mark.parametrize(
    "args",
    [
        ("runs", "list", "--workflow", "a", "--workflow", "b"),
        ("runs", "list", "--tenant", "a", "--tenant", "b"),
        ("runs", "list", "--recipient", "a", "--recipient", "b"),
        ("runs", "list", "--starting-at", "2026-11-01T00:00:00Z", "--starting-at", "2026-11-02T00:00:00Z"),
        ("runs", "list", "--ending-at", "2026-11-01T00:00:00Z", "--ending-at", "2026-11-02T00:00:00Z"),
        ("runs", "list", "--updated-before", "2026-11-01T00:00:00Z", "--updated-before", "2026-11-02T00:00:00Z"),
        ("deliveries", "list", "--run", "a", "--run", "b"),
        ("deliveries", "list", "--channel", "sms", "--channel", "email"),
        ("deliveries", "list", "--recipient", "a", "--recipient", "b"),
    ],
    ids=lambda a: " ".join(a[:3]),
)
def test_a_filter_that_takes_one_value_given_twice_is_refused_as_the_api_refuses_it(run, args):
    # Only --status repeats; a second --workflow used to replace the first without a word
    # (GET /v1/runs?workflow=a&workflow=b is a 422 naming the parameter).
    assert run("append", input=lines(triggered("r1", workflow="a"), triggered("r2", workflow="b"))).exit_code == 0
    result = run(*args)
    assert result.exit_code == 2
    assert args[2] in result.stderr and "once" in result.stderr


def test_filters_given_once_still_filter(run):
    events = [triggered("r1", workflow="a", tenant="t1"), triggered("r2", workflow="b", tenant="t2")]
    assert run("append", input=lines(*events)).exit_code == 0
    page = orjson.loads(run("runs", "list", "--workflow", "a", "--json").stdout)
    assert [r["id"] for r in page["entries"]] == ["r1"]
    page = orjson.loads(run("runs", "list", "--tenant", "t2", "--ending-at", "2026-11-02T00:00:00Z", "--json").stdout)
    assert [r["id"] for r in page["entries"]] == ["r2"]
    assert orjson.loads(run("deliveries", "list", "--run", "r1", "--json").stdout)["entries"] == []


def test_replay_at_json_carries_what_each_history_entry_does(run):
    events = [triggered("r1"), ev("run.started", run_id="r1"), step("step.started", "r1")]
    assert run("append", input=lines(*events)).exit_code == 0
    history = orjson.loads(run("replay", "r1", "--json").stdout)["events"]
    at = orjson.loads(run("replay", "r1", "--at", "2", "--json").stdout)
    assert {k: at[k] for k in history[1]} == history[1]
    assert (at["run_id"], at["of"]) == ("r1", 3)


def test_workflow_details_with_nothing_sent_show_no_stray_percent_sign(run):
    assert run("append", input=lines(triggered("r1", workflow="quiet"))).exit_code == 0
    shown = run("workflows", "show", "quiet").stdout
    assert "-%" not in shown
    assert "success -," in shown


def test_timestamp_options_say_their_format_in_help():
    help_text = CliRunner().invoke(cli, ["runs", "list", "--help"], terminal_width=200).output
    for option in ("--starting-at", "--ending-at", "--updated-before"):
        line = next(line for line in help_text.splitlines() if line.strip().startswith(option))
        assert "RFC 3339" in line, line


def test_replay_of_a_run_of_one_event_says_one_event(store_path, tmp_path):
    source = tmp_path / "one.jsonl"
    source.write_bytes(orjson.dumps(triggered("solo")))
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", store_path, "append", str(source)]).exit_code == 0
    shown = runner.invoke(cli, ["--store", store_path, "replay", "solo"])
    assert shown.exit_code == 0 and shown.stdout.splitlines()[0] == "Run solo (welcome): 1 event"
    past = runner.invoke(cli, ["--store", store_path, "replay", "solo", "--at", "2"])
    assert past.exit_code == 2 and "has 1 event;" in past.stderr


def test_runs_show_keeps_an_error_with_a_line_break_on_its_own_line(run):
    events = [
        triggered("r1"), ev("run.started", run_id="r1"), step("step.started", "r1"),
        step("step.failed", "r1", error="smtp said:\n550 no such user"),
        ev("run.failed", run_id="r1", error="step failed:\n550 no such user"),
    ]
    assert run("append", "-", input=lines(*events)).exit_code == 0
    shown = run("runs", "show", "r1").stdout.splitlines()
    (error,) = [line for line in shown if line.startswith("error_message")]
    assert error.endswith("\\n550 no such user") and not any(line.startswith("550") for line in shown)
