"""What a new user meets first and the other README tests do not run: every example in a
command's --help, on the shipped example data; README's webhook try-out against a live
`flowledger serve`; and an analyst's copy that takes appends it cannot show."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from flowledger.cli import cli
from tests.conftest import serve_process

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
EXAMPLE = os.path.join(ROOT, "examples", "welcome-series.jsonl")
README = open(os.path.join(ROOT, "README.md")).read()

# Examples that name what only the reader has (a PostgreSQL server of their own, a key id
# `keys create` made at random) or run until stopped (a server, a follower).
PLACEHOLDERS = ("postgresql://", "keys revoke key_", "keys sign-out key_", "flowledger serve", " serve ", "--follow")


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    """Every command and group under ``group``, with its path of names."""
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _examples(command: click.Command) -> list[str]:
    """The command lines under a help text's "Example:"."""
    text = (command.help or "").split("Example:", 1)
    return [line.strip() for line in text[1].splitlines() if line.strip()] if len(text) == 2 else []


@pytest.fixture(scope="module")
def example_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("example") / "example.db"
    result = CliRunner().invoke(cli, ["--store", str(store), "append", EXAMPLE])
    assert result.exit_code == 0, result.output
    return store


WITH_EXAMPLES = [(p, c) for p, c in _commands(cli) if _examples(c)]


@pytest.mark.parametrize("path, command", WITH_EXAMPLES, ids=[" ".join(p) or "flowledger" for p, _ in WITH_EXAMPLES])
def test_every_help_example_runs_on_the_example_data(path, command, example_store, tmp_path, monkeypatch):
    # The examples' paths are relative to a checkout, as README's are.
    os.symlink(os.path.join(ROOT, "examples"), tmp_path / "examples")
    (tmp_path / "tests").mkdir()
    os.symlink(os.path.join(ROOT, "tests", "fixtures"), tmp_path / "tests" / "fixtures")
    store = tmp_path / "store.db"
    shutil.copy(example_store, store)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for line in _examples(command):
        if any(p in line for p in PLACEHOLDERS):
            continue
        feed, _, line = line.rpartition(" | ")
        stdin = open(shlex.split(feed)[1], "rb").read() if feed else None
        words = shlex.split(line)
        assert words[0] == "flowledger", line
        args = words[1:] if "--store" in words else ["--store", str(store), *words[1:]]
        result = runner.invoke(cli, args, input=stdin, env={"FLOWLEDGER_ACTOR": "ops@example.com"})
        assert result.exit_code == 0, f"{line}\n{result.output}"


def _block_after(section: str, marker: str) -> tuple[str, str]:
    """The command block of ``section`` holding ``marker``, and the output block after it."""
    text = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)\n```", text, re.S)
    i = next(i for i, b in enumerate(blocks) if marker in b)
    return blocks[i], blocks[i + 1]


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
def test_the_readme_postmark_try_out_works_as_shown(tmp_path):
    commands, shown = _block_after("Provider webhooks", "curl -s -u")
    lines = commands.splitlines()
    assert lines[0] == "kill %1" and lines[2] == "flowledger serve --port 8080 &"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    env.update(dict(pair.split("=", 1) for pair in shlex.split(lines[1].removeprefix("export "))))
    store = str(tmp_path / "api.db")
    env["FLOWLEDGER_STORE"] = store
    exe = [sys.executable, "-c", "from flowledger.cli import main; main()"]
    subprocess.run([*exe, "append", EXAMPLE], env=env, check=True, capture_output=True)
    with serve_process(env) as port:
        curl = lines[3].replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        out = subprocess.run(["bash", "-c", curl], env=env, check=True, capture_output=True, text=True).stdout
        assert out.strip() == shown
    listed = CliRunner().invoke(cli, ["--store", store, "deliveries", "list", "--run", "run-0004"]).stdout
    row = next(line for line in listed.splitlines() if line.startswith("msg-00006"))
    assert "opened" in row.split() and "2026-11-05T09:30:00Z" in row.split()


def test_an_analysts_copy_refuses_appends_and_commands_saying_where_to_send_them(example_store, tmp_path):
    # Its views hold the source log's positions: an event appended to the copy's own log
    # was acknowledged and never shown anywhere.
    runner = CliRunner()
    copy = str(tmp_path / "analysis.db")
    made = runner.invoke(cli, ["--store", str(example_store), "rebuild", "--into", copy])
    assert made.exit_code == 0, made.output
    event = '{"id": "x-1", "type": "run.triggered", "occurred_at": "2026-11-05T09:00:00Z", "run_id": "run-x-1", "workflow": "welcome-series", "recipient": "user-0001"}'
    for args, given in (
        (["append", "-"], event),
        (["retry", "run-0057"], None),
        (["cancel", "run-0288"], None),
        (["cancel", "--key", "order-1001"], None),
        (["rebuild"], None),
    ):
        refused = runner.invoke(cli, ["--store", copy, *args], input=given)
        assert refused.exit_code == 1, (args, refused.output)
        assert refused.stderr.startswith("Error: ") and "made by `rebuild --into` from" in refused.stderr, (args, refused.stderr)
        assert str(example_store) in refused.stderr and "Traceback" not in refused.output
    # The copy still answers, and a new copy can be made over it from the source.
    assert runner.invoke(cli, ["--store", copy, "runs", "show", "run-0057", "--no-catch-up"]).exit_code == 0
    assert runner.invoke(cli, ["--store", str(example_store), "rebuild", "--into", copy]).exit_code == 0
    # The source itself is no copy: it takes appends as before.
    assert runner.invoke(cli, ["--store", str(example_store), "append", "-"], input=event).exit_code == 0


def test_the_api_on_an_analysts_copy_refuses_events_and_commands_with_a_409(example_store, tmp_path):
    from fastapi.testclient import TestClient

    from flowledger.api import keys
    from flowledger.api.app import create_app
    from flowledger.store import open_log

    copy = str(tmp_path / "analysis.db")
    assert CliRunner().invoke(cli, ["--store", str(example_store), "rebuild", "--into", copy]).exit_code == 0
    log = open_log(copy)
    _, secret = keys.create_key(log.backend, "ops", "admin")
    log.close()
    event = {"id": "x-1", "type": "run.triggered", "occurred_at": "2026-11-05T09:00:00Z", "run_id": "run-x-1", "workflow": "w", "recipient": "u"}
    with TestClient(create_app(copy, follow=False)) as client:
        for path, body in (("/v1/events", [event]), ("/v1/runs/run-0057/retry", None)):
            r = client.post(path, json=body, headers={"X-API-Key": secret})
            assert r.status_code == 409 and "analyst's copy" in r.json()["detail"], (path, r.text)
        assert client.get("/v1/runs", params={"status": "failed"}, headers={"X-API-Key": secret}).json()["entries"]
