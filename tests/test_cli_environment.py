"""The command line in a hostile environment: a closed standard input, output that cannot
be written or cannot hold a character, an ASCII locale, odd environment variables, no
usable temporary folder, a read-only store whose views were never made. Each ends in one
clear message naming the real cause, never "this is a bug"."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile

import orjson
import pytest
from click.testing import CliRunner

from flowledger import cli as cli_module
from flowledger import ledger
from flowledger.cli import cli
from flowledger.projections import helper as helper_module
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from tests.conftest import step, triggered
from tests.test_environment import _unprivileged

EXE = os.path.join(os.path.dirname(sys.executable), "flowledger")


def _lines(*events: dict) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def _run_events(run_id: str = "r1") -> bytes:
    """A run whose step failed with an error holding a character outside Latin-1."""
    return _lines(
        triggered(run_id),
        {"id": f"{run_id}-s", "type": "run.started", "occurred_at": "2026-11-01T09:00:01Z", "run_id": run_id},
        step("step.started", run_id),
        step("step.failed", run_id, error="\u2717 boom"),
    )


def flowledger(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run the installed command, with ``env`` added to this environment."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([EXE, *args], input=stdin, env={**os.environ, **(env or {})}, **kwargs)


@pytest.fixture
def stored(store_path) -> str:
    """A store holding run r1 (see :func:`_run_events`)."""
    assert flowledger("--store", store_path, "append", "-", stdin=_run_events()).returncode == 0
    return store_path


def _no_bug(err: str) -> None:
    assert "Traceback" not in err and "bug in flowledger" not in err and "unexpected" not in err, err


# 1. A closed standard input.


@pytest.mark.parametrize("args", [["append", "-"], ["append"]])
def test_append_from_a_closed_standard_input_says_so(store_path, args):
    proc = subprocess.run(
        [EXE, "--store", store_path, *args], stdin=subprocess.DEVNULL, capture_output=True,
        preexec_fn=lambda: os.close(0),
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "standard input is closed: give a FILE, or pipe the events in" in err
    _no_bug(err)
    assert not os.path.exists(store_path)


# 2. Output that cannot be written.


@pytest.fixture
def full() -> str:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    return "/dev/full"


@pytest.mark.parametrize("args", [["counts"], ["runs", "list", "--json"], ["replay", "r1"]])
def test_output_that_cannot_be_written_is_named_as_such(stored, full, args):
    with open(full, "wb") as out:
        proc = flowledger("--store", stored, *args, stdout=out)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err == "Error: cannot write the output: No space left on device\n"


def test_neither_output_nor_error_can_be_written(stored, full):
    with open(full, "wb") as out:
        proc = flowledger("--store", stored, "counts", stdout=out, stderr=out)
    assert proc.returncode == 1


def test_a_store_error_of_the_same_kind_is_still_not_called_an_output_error(monkeypatch, capsys, stored):
    # Only writing the output is meant: an OSError the store let through stays a bug.
    def broken(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledger, "query", broken)
    monkeypatch.delenv("FLOWLEDGER_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["flowledger", "--store", stored, "counts"])
    with pytest.raises(SystemExit) as exit:
        cli_module.main()
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert "unexpected OSError" in err and "cannot write the output" not in err


# 3. FLOWLEDGER_DEBUG.


def _a_bug(monkeypatch, store_path: str) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(ledger, "query", broken)
    monkeypatch.setattr(sys, "argv", ["flowledger", "--store", store_path, "counts"])


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off", "OFF", " False ", "No"])
def test_debug_values_that_say_no_leave_debugging_off(monkeypatch, capsys, stored, value):
    _a_bug(monkeypatch, stored)
    monkeypatch.setenv("FLOWLEDGER_DEBUG", value)
    with pytest.raises(SystemExit) as exit:
        cli_module.main()
    assert exit.value.code == 1
    assert "unexpected RuntimeError: a bug" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1", "yes", "true", "on"])
def test_debug_values_that_say_yes_show_the_traceback(monkeypatch, stored, value):
    _a_bug(monkeypatch, stored)
    monkeypatch.setenv("FLOWLEDGER_DEBUG", value)
    with pytest.raises(RuntimeError, match="a bug"):
        cli_module.main()


# 4. An output encoding that cannot hold a character.


@pytest.mark.parametrize("args", [["replay", "r1"], ["runs", "list", "--json"], ["runs", "show", "r1"]])
def test_output_the_encoding_cannot_hold_is_escaped_not_blamed_on_the_input(stored, args):
    proc = flowledger("--store", stored, *args, env={"PYTHONIOENCODING": "latin-1"})
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert err == ""
    assert b"\\u2717 boom" in proc.stdout


def test_an_argument_that_is_not_utf8_is_still_named_under_a_narrow_output_encoding(stored):
    proc = subprocess.run(
        [os.fsencode(EXE), b"--store", os.fsencode(stored), b"replay", b"r\xff"],
        capture_output=True, env={**os.environ, "PYTHONIOENCODING": "latin-1"},
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "is not UTF-8 text (it holds b'\\xff')" in err


# 5. An ASCII locale.


def test_utf8_arguments_under_an_ascii_locale_name_the_locale(stored):
    env = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    proc = subprocess.run(
        [os.fsencode(EXE), b"--store", os.fsencode(stored), b"replay", "\u00fc".encode()],
        capture_output=True, env={**os.environ, **env},
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "not UTF-8" not in err
    assert "b'\\xc3\\xbc'" in err and "ASCII" in err and "LANG=C.UTF-8" in err and "PYTHONUTF8=1" in err


# 6. Seconds from the environment.


@pytest.mark.parametrize(
    "value, message",
    [("abc", "'abc' is not a number of seconds"), ("nan", "'nan' is not a number of seconds"), ("0", "0.1")],
)
def test_a_bad_lock_timeout_from_the_environment_names_the_variable(store_path, value, message):
    result = CliRunner().invoke(cli, ["--store", store_path, "counts"], env={"FLOWLEDGER_LOCK_TIMEOUT": value})
    assert result.exit_code == 2
    assert "FLOWLEDGER_LOCK_TIMEOUT" in result.output and message in result.output
    assert "--lock-timeout" not in result.output.split("Error:", 1)[1]


def test_a_bad_lock_timeout_option_names_the_option(store_path):
    result = CliRunner().invoke(
        cli, ["--store", store_path, "--lock-timeout", "abc", "counts"], env={"FLOWLEDGER_LOCK_TIMEOUT": "5"}
    )
    assert result.exit_code == 2
    assert "Invalid value for '--lock-timeout': 'abc' is not a number of seconds" in result.output
    assert "FLOWLEDGER_LOCK_TIMEOUT" not in result.output


# 7. No usable temporary folder for the rebuild helper.


def test_a_rebuild_without_a_temporary_folder_folds_every_view_itself(store_path, monkeypatch):
    assert flowledger("--store", store_path, "append", "-", stdin=_run_events()).returncode == 0
    log = open_log(store_path)
    try:
        projector = Projector(log.backend)
        projector.catch_up()
        before = ledger.query(log, lambda c: _views(log, c))
        started = []
        monkeypatch.setattr(tempfile, "tempdir", "/nonexistent")
        monkeypatch.setattr(helper_module.subprocess, "Popen", lambda *a, **k: started.append(a))
        assert projector.rebuild(helper=True) == 4
        assert started == []  # no helper: its views were folded here
        assert ledger.query(log, lambda c: _views(log, c), fresh=False) == before
    finally:
        log.close()


def _views(log, c) -> dict[str, list]:
    """Every row of every view's tables."""
    return {
        t: sorted(map(repr, c.execute(f"SELECT * FROM {t}").fetchall()))
        for v in Projector(log.backend).views for t in v.tables
    }


# 8. A read-only store whose views were never made.


def test_a_read_only_store_without_views_says_who_must_make_them(store_path):
    prefix, why = _unprivileged()
    if prefix is None:
        pytest.skip(why)
    assert flowledger("--store", store_path, "append", "-", stdin=_run_events()).returncode == 0
    os.chmod(store_path, 0o444)
    proc = subprocess.run([*prefix, EXE, "--store", store_path, "counts", "--no-catch-up"], capture_output=True)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "read-only" in err and "flowledger project" in err
    _no_bug(err)


def test_a_read_only_store_with_views_behind_says_the_query_can_skip_catching_up(store_path):
    prefix, why = _unprivileged()
    if prefix is None:
        pytest.skip(why)
    assert flowledger("--store", store_path, "append", "-", stdin=_run_events()).returncode == 0
    assert flowledger("--store", store_path, "project").returncode == 0
    assert flowledger("--store", store_path, "append", "-", stdin=_lines(triggered("r2"))).returncode == 0
    os.chmod(store_path, 0o444)
    proc = subprocess.run([*prefix, EXE, "--store", store_path, "counts"], capture_output=True)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "read-only" in err and "--no-catch-up" in err
    proc = subprocess.run([*prefix, EXE, "--store", store_path, "counts", "--no-catch-up", "--json"], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout)["total"] == 1
