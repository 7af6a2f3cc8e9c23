"""An analyst's copy names its source store so that the name holds from any folder: a
SQLite source given by a relative path is recorded by its absolute path (the copy's refusals
and `events_in` tell the analyst where the history is; `runs.db` would name the wrong file
once they work elsewhere)."""

from __future__ import annotations

import os

from click.testing import CliRunner

from flowledger.cli import cli
from flowledger.store import open_log

EXAMPLE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "examples", "welcome-series.jsonl"))


def test_a_copy_made_from_a_relative_path_names_its_source_by_its_absolute_path(tmp_path, monkeypatch):
    made_in, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    made_in.mkdir()
    elsewhere.mkdir()
    runner = CliRunner()
    monkeypatch.chdir(made_in)
    assert runner.invoke(cli, ["--store", "runs.db", "append", EXAMPLE]).exit_code == 0
    assert runner.invoke(cli, ["--store", "runs.db", "rebuild", "--into", "copy.db"]).exit_code == 0
    source = str(made_in / "runs.db")
    monkeypatch.chdir(elsewhere)
    copy = str(made_in / "copy.db")
    log = open_log(copy)
    try:
        assert log.backend.copy_of() == source
    finally:
        log.close()
    r = runner.invoke(cli, ["--store", copy, "retry", "run-0007"])
    assert r.exit_code == 1
    assert f"from {source}:" in r.output
    # The command it suggests works from here, as printed.
    r = runner.invoke(cli, ["--store", copy, "rebuild"])
    assert r.exit_code == 1 and f"flowledger --store {source} rebuild --into {copy}" in r.output
