"""README's walkthrough, run on the shipped example data: what it shows is what you get."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from click.testing import CliRunner

from flowledger.cli import cli

ROOT = os.path.join(os.path.dirname(__file__), "..")
EXAMPLE = os.path.join(ROOT, "examples", "welcome-series.jsonl")
MALFORMED = os.path.join(ROOT, "examples", "malformed.jsonl")
README = open(os.path.join(ROOT, "README.md")).read()


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("walk") / "walkthrough.db")
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, ["--store", store, *args], env={"FLOWLEDGER_ACTOR": "ops@example.com"})

    first = invoke("append", EXAMPLE)
    assert first.exit_code == 0, first.output
    return invoke, first


def shown(output: str) -> None:
    assert output.strip() in README, f"README does not show:\n{output}"


def test_append_and_reappend(walk):
    invoke, first = walk
    shown(first.stdout)
    again = invoke("append", EXAMPLE)
    shown(again.stdout)
    assert orjson.loads(again.stdout)["appended"] == 0


def test_the_example_has_every_event_type(walk):
    from flowledger.domain.vocabulary import EVENT_TYPES

    with open(EXAMPLE) as f:
        types = {orjson.loads(line)["type"] for line in f if line.strip()}
    assert types == set(EVENT_TYPES)


def test_replay_outputs(walk):
    invoke, _ = walk
    shown(invoke("replay", "run-0030").stdout)
    shown(invoke("replay", "run-0030", "--at", "6").stdout)


def test_retry_walkthrough(walk):
    invoke, _ = walk
    shown(invoke("runs", "show", "run-0054").stdout)
    shown(invoke("retry", "run-0054", "--reason", "recipient address fixed").stdout)
    second = invoke("retry", "run-0054")
    assert second.exit_code == 1
    shown(second.stderr)
    last = invoke("replay", "run-0054").stdout.splitlines()[-1]
    assert "run.retried" in last and "by ops@example.com: recipient address fixed" in last and last.endswith("pending")


def test_cancel_walkthrough(walk):
    invoke, _ = walk
    shown(invoke("cancel", "--key", "order-1001", "--reason", "order refunded").stdout)
    shown(invoke("cancel", "run-0288", "--reason", "duplicate signup").stdout)
    refused = invoke("cancel", "run-0001")
    assert refused.exit_code == 1
    shown(refused.stderr)


def test_secrets_walkthrough(walk):
    invoke, _ = walk
    out = invoke("replay", "run-0075", "--json").stdout
    lines = "\n".join(line for line in out.splitlines() if "REDACTED" in line)
    shown(lines)
    assert "Bearer" not in out



def test_scan_secrets_walkthrough(tmp_path):
    # A store of its own (README's figure, after the walkthrough's retry and cancels, is
    # checked in README order by test_new_user_fixes): the example holds no secret to find.
    store = str(tmp_path / "scan.db")
    assert CliRunner().invoke(cli, ["--store", store, "append", EXAMPLE]).exit_code == 0
    scan = CliRunner().invoke(cli, ["--store", store, "scan-secrets"])
    assert scan.exit_code == 0
    assert scan.stdout == (
        "Read 3,417 events and 0 provider events held for their message: none holds text today's redaction "
        "rules would store differently.\n"
    )


def test_malformed_walkthrough(tmp_path):
    store = str(tmp_path / "m.db")
    result = CliRunner().invoke(cli, ["--store", store, "append", MALFORMED])
    assert result.exit_code == 1
    shown(result.stderr)
    from flowledger.store import open_log

    log = open_log(store)
    assert log.count() == 0
    log.close()


def test_the_example_files_are_what_the_generator_makes(tmp_path):
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "generate.py"), str(tmp_path)], check=True)
    for name in ("welcome-series.jsonl", "malformed.jsonl"):
        with open(os.path.join(ROOT, "examples", name), "rb") as shipped:
            assert (tmp_path / name).read_bytes() == shipped.read(), name


VIEW_COMMANDS = [
    ("counts",),
    ("workflows", "list"),
    ("workflows", "show", "welcome-series"),
    ("stats", "welcome-series"),
    ("runs", "list", "--workflow", "password-reset", "--status", "failed"),
    ("runs", "show", "run-0030"),
    ("deliveries", "list", "--channel", "whatsapp", "--status", "read", "--page-size", "3"),
]


def test_the_views_answer_as_readme_shows_and_a_rebuild_reproduces_them(tmp_path):
    store = str(tmp_path / "views.db")
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(cli, ["--store", store, *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    invoke("append", EXAMPLE)
    before = {c: invoke(*c) for c in VIEW_COMMANDS}
    for output in before.values():
        shown(output)
    rebuilt = orjson.loads(invoke("rebuild"))
    assert rebuilt["views"] == ["runs", "steps", "deliveries"] and rebuilt["events"] == 3417
    assert {c: invoke(*c) for c in VIEW_COMMANDS} == before
    json_before = invoke("workflows", "show", "welcome-series", "--json")
    invoke("rebuild", "deliveries")
    assert invoke("workflows", "show", "welcome-series", "--json") == json_before
