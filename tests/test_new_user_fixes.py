"""What a new user's review of README found: README's commands followed in order on one
store, environment variables and --store values named when refused, the group's options
given after a command, install hints in README's form, and the smaller messages."""

from __future__ import annotations

import os
import pty
import shlex
import subprocess
import sys
import time

import orjson
import pytest
from click.testing import CliRunner

from flowledger.cli import cli
from tests.conftest import POSTGRES, POSTGRES_UNREACHABLE

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
EXAMPLE = os.path.join(ROOT, "examples", "welcome-series.jsonl")
README = open(os.path.join(ROOT, "README.md")).read()
needs_postgres = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


def _fenced_blocks(text: str) -> list[tuple[int, list[str], int]]:
    """README's fenced blocks: (first line number, lines, closing line number)."""
    blocks, start, body = [], None, []
    for n, line in enumerate(text.split("\n"), 1):
        if line.startswith("```"):
            if start is None:
                start, body = n, []
            else:
                blocks.append((start, body, n))
                start = None
        elif start is not None:
            body.append(line)
    return blocks


def _walkthrough_steps() -> list[tuple[list[str], str | None]]:
    """From the walkthrough on, each block of plain `flowledger` commands (no shell pipes or
    lists, no server) in README order, with the output block right after it, if any; the
    walkthrough's `export FLOWLEDGER_STORE=…` is the test's own store."""
    start = README[: README.index("\n## Walkthrough on the example data\n")].count("\n") + 1
    blocks = [b for b in _fenced_blocks(README) if b[0] > start]
    steps = []
    for i, (_, body, end) in enumerate(blocks):
        commands = [line.split("  #")[0].strip() for line in body if line.strip()]
        if commands and commands[0] == "export FLOWLEDGER_STORE=walkthrough.db":
            commands = commands[1:]
        if not commands or not all(c.startswith("flowledger ") for c in commands):
            continue
        if any(ch in c for c in commands for ch in "|;&$") or any(" serve" in c or "--follow" in c for c in commands):
            continue
        after = blocks[i + 1] if i + 1 < len(blocks) and blocks[i + 1][0] == end + 1 else None
        steps.append((commands, "\n".join(after[1]) if after else None))
    return steps


def test_readmes_commands_run_in_readme_order_on_one_store_print_what_it_shows(tmp_path, monkeypatch):
    # One store, as a reader following README has: a step that changes the store (a cancel)
    # must leave true what a later step shows.
    for name in ("examples", "tests"):
        os.makedirs(tmp_path / name, exist_ok=True)
    os.rmdir(tmp_path / "examples")
    os.symlink(os.path.join(ROOT, "examples"), tmp_path / "examples")
    os.symlink(os.path.join(ROOT, "tests", "fixtures"), tmp_path / "tests" / "fixtures")
    monkeypatch.chdir(tmp_path)
    env = {"FLOWLEDGER_STORE": str(tmp_path / "walkthrough.db"), "FLOWLEDGER_ACTOR": "ops@example.com"}
    runner = CliRunner()
    steps = _walkthrough_steps()
    assert any("--updated-before" in c for commands, _ in steps for c in commands), "README's stuck-runs step is not run"
    compared = 0
    for commands, shown in steps:
        outputs = [runner.invoke(cli, shlex.split(c)[1:], env=env) for c in commands]
        if shown is None or "rebuild" in " ".join(commands):
            continue  # nothing shown, or timings that differ each time
        # README shows what a command prints, and a refused command's error.
        got = "".join(r.stdout + (r.stderr if r.exit_code else "") for r in outputs).rstrip("\n")
        assert got == shown, f"README shows for {commands}:\n{shown}\nbut in README order it prints:\n{got}"
        compared += 1
    assert compared >= 15


# --- an environment variable's bad value names the variable ---------------------------------


@pytest.mark.parametrize("value", ["1", "abc"])
@pytest.mark.parametrize("command", [["append", EXAMPLE], ["serve"]])
def test_a_bad_flowledger_max_event_bytes_is_named_as_the_variable(value, command, tmp_path):
    result = CliRunner().invoke(
        cli, ["--store", str(tmp_path / "s.db"), *command], env={"FLOWLEDGER_MAX_EVENT_BYTES": value}
    )
    assert result.exit_code == 2, result.output
    assert "FLOWLEDGER_MAX_EVENT_BYTES" in result.stderr and "'--max-event-bytes'" not in result.stderr, result.stderr
    assert not (tmp_path / "s.db").exists()


def test_the_option_given_is_still_named_as_the_option(tmp_path):
    result = CliRunner().invoke(
        cli, ["--store", str(tmp_path / "s.db"), "append", "--max-event-bytes", "1", EXAMPLE],
        env={"FLOWLEDGER_MAX_EVENT_BYTES": "4096"},
    )
    assert result.exit_code == 2 and "'--max-event-bytes'" in result.stderr, result.stderr
    assert "FLOWLEDGER_MAX_EVENT_BYTES" not in result.stderr


def test_a_blank_flowledger_actor_is_named_as_the_variable(tmp_path):
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "s.db"), "cancel", "run-1"], env={"FLOWLEDGER_ACTOR": "  "})
    assert result.exit_code == 2, result.output
    assert "environment variable FLOWLEDGER_ACTOR" in result.stderr and "'--actor'" not in result.stderr, result.stderr


# --- a --store value that cannot be a store is a bad parameter --------------------------------

BAD_STORES = [
    "mysql://x",
    "sqlite://otherhost/x.db",
    "postgresql://postgres@127.0.0.1:5432/test?schem=x",
    "postgresql://postgres@127.0.0.1:5432/test?schema=Nu-Review",
    "postgresql://postgres@127.0.0.1:notaport/test",
]


@pytest.mark.parametrize("store", BAD_STORES)
def test_a_store_value_that_cannot_be_a_store_is_a_bad_store_option(store):
    given = CliRunner().invoke(cli, ["--store", store, "counts"])
    assert given.exit_code == 2, given.output
    assert "Invalid value for '--store'" in given.stderr, given.stderr
    from_env = CliRunner().invoke(cli, ["counts"], env={"FLOWLEDGER_STORE": store})
    assert from_env.exit_code == 2, from_env.output
    assert "FLOWLEDGER_STORE" in from_env.stderr and "'--store'" not in from_env.stderr, from_env.stderr


@needs_postgres
def test_a_schema_postgresql_reserves_is_a_bad_store_option():
    result = CliRunner().invoke(cli, ["--store", POSTGRES.split("?")[0] + "?schema=order", "counts"])
    assert result.exit_code == 2 and "Invalid value for '--store'" in result.stderr, result.output
    assert "reserves" in result.stderr


def test_a_bad_into_is_named_as_into(tmp_path):
    store = str(tmp_path / "s.db")
    assert CliRunner().invoke(cli, ["--store", store, "append", EXAMPLE]).exit_code == 0
    result = CliRunner().invoke(cli, ["--store", store, "rebuild", "--into", "sqlite://otherhost/x.db"])
    assert result.exit_code == 2 and "Invalid value for '--into'" in result.stderr, result.output


def test_a_well_formed_store_that_is_missing_or_unreachable_still_exits_1(tmp_path):
    missing = CliRunner().invoke(cli, ["--store", str(tmp_path / "none.db"), "counts"])
    assert missing.exit_code == 1, missing.output
    unreachable = CliRunner().invoke(cli, ["--store", "postgresql://postgres@127.0.0.1:1/test", "counts"])
    assert unreachable.exit_code == 1 and "cannot reach the store" in unreachable.stderr, unreachable.output


# --- install hints in README's form -------------------------------------------------------------


def test_the_install_hints_are_in_readmes_form(tmp_path, monkeypatch):
    assert "pip install '.[postgres]'" in README and "pip install -e '.[test]'" in README
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    served = CliRunner().invoke(cli, ["--store", str(tmp_path / "s.db"), "serve"])
    assert served.exit_code == 1 and "pip install '.[api]'" in served.stderr, served.output
    monkeypatch.setitem(sys.modules, "flowledger.store.postgres", None)
    pg = CliRunner().invoke(cli, ["--store", "postgresql://postgres@127.0.0.1/test", "counts"])
    assert pg.exit_code == 1 and "pip install '.[postgres]'" in pg.stderr, pg.output
    assert "flowledger[" not in served.stderr + pg.stderr


# --- the group's options after a command --------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["counts", "--store", "runs.db"], "--store is an option of flowledger itself: put it before the command (flowledger --store runs.db counts)"),
        (["runs", "list", "--store=runs.db"], "--store is an option of flowledger itself: put it before the command (flowledger --store runs.db runs list)"),
        (["counts", "--lock-timeout", "5"], "--lock-timeout is an option of flowledger itself: put it before the command (flowledger --lock-timeout 5 counts)"),
        (["counts", "--version"], "--version is an option of flowledger itself: put it before the command (flowledger --version)"),
    ],
)
def test_a_group_option_after_the_command_says_where_it_goes(args, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr, result.stderr
    assert not (tmp_path / "flowledger.db").exists()


def test_an_unknown_option_is_still_refused_as_before():
    result = CliRunner().invoke(cli, ["counts", "--jsn"])
    assert result.exit_code == 2 and "No such option '--jsn'" in result.stderr, result.output


# --- smaller messages ---------------------------------------------------------------------------


def test_rebuilding_an_analysts_copy_names_its_source_and_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", "runs.db", "append", EXAMPLE]).exit_code == 0
    assert runner.invoke(cli, ["--store", "runs.db", "rebuild", "--into", "analysis.db"]).exit_code == 0
    refused = runner.invoke(cli, ["--store", "analysis.db", "rebuild"])
    assert refused.exit_code == 1, refused.output
    # The source by its absolute path (see test_copy_source_path), the copy as given.
    source = str(tmp_path / "runs.db")
    assert f"flowledger --store {source} rebuild --into analysis.db" in refused.stderr, refused.stderr
    assert "SOURCE" not in refused.stderr and "FILE.db" not in refused.stderr


def test_a_host_that_does_not_resolve_is_a_store_that_cannot_be_reached():
    pytest.importorskip("psycopg")
    result = CliRunner().invoke(cli, ["--store", "postgresql://postgres@nohost.invalid:5432/test", "counts"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: cannot reach the store postgresql://postgres@nohost.invalid:5432/test: "), result.stderr
    assert "resolve host" in result.stderr


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("empty") / "s.db")
    assert CliRunner().invoke(cli, ["--store", store, "append", EXAMPLE]).exit_code == 0
    return store


@pytest.mark.parametrize(
    "args, empty_line",
    [
        (["runs", "list", "--tenant", "nope"], "(no runs match)"),
        (["deliveries", "list", "--run", "nope"], "(no messages match)"),
        (["unmatched"], "(nothing unmatched)"),
        (["keys", "list"], "(no keys)"),
    ],
)
def test_an_empty_table_says_so_under_its_header(args, empty_line, empty_store):
    table = CliRunner().invoke(cli, ["--store", empty_store, *args])
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert len(lines) == 2 and lines[1] == empty_line, table.stdout
    as_json = CliRunner().invoke(cli, ["--store", empty_store, *args, "--json"])
    assert empty_line not in as_json.stdout
    orjson.loads(as_json.stdout)


def test_a_table_with_rows_has_no_empty_line(empty_store):
    table = CliRunner().invoke(cli, ["--store", empty_store, "runs", "list", "--page-size", "1"])
    assert "(no runs match)" not in table.stdout


def test_a_line_that_is_not_json_says_so_with_its_reason_and_column(tmp_path):
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "s.db"), "append", "-"], input='{"id": 1}\nnul x\n  hello\n')
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    expected = "not valid JSON: each line must be one event, a JSON object"
    assert lines[1] == f"line 2: {expected} (invalid literal, expected 'null', at column 1)", lines[1]
    assert lines[2] == f"line 3: {expected} (unexpected character, expected a JSON value, at column 3)", lines[2]
    assert "char " not in result.stderr


def _run_on_a_terminal(args: list[str], cwd: str) -> tuple[int, str]:
    """Run flowledger with a terminal as standard input, end that input (Ctrl-D), and
    return its exit status and standard error."""
    main, tty = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", "from flowledger.cli import main; main()", *args],
            stdin=tty, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
        )
        os.close(tty)
        time.sleep(1.5)  # let it start and say what it waits for
        os.write(main, b"\x04")
        _, err = process.communicate(timeout=60)
        return process.returncode, err.decode()
    finally:
        os.close(main)


def test_append_from_a_terminal_says_it_reads_standard_input(tmp_path):
    code, err = _run_on_a_terminal(["--store", "s.db", "append"], str(tmp_path))
    assert code == 0, err
    assert "standard input" in err and "Ctrl-D" in err and len(err.splitlines()) == 1, err
    code, err = _run_on_a_terminal(["--store", "s.db", "append", "-"], str(tmp_path))
    assert code == 0 and "Ctrl-D" in err, err


def test_append_from_a_pipe_or_a_file_says_nothing_on_stderr(tmp_path):
    piped = CliRunner().invoke(cli, ["--store", str(tmp_path / "s.db"), "append"], input="")
    assert piped.exit_code == 0 and piped.stderr == "", piped.output
