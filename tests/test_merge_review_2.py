"""Merge review of the twenty-third session's work: the seams between its changes (an
analyst's copy marked as one, the rebuild into the store itself, the replay on a copy)."""

from __future__ import annotations

import pathlib

import pytest
from click.testing import CliRunner

from flowledger.cli import cli
from flowledger.store.postgres import parse_url
from tests.conftest import POSTGRES_UNREACHABLE

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples" / "welcome-series.jsonl"


def _store(path: pathlib.Path) -> str:
    return _store_at(str(path))


def _store_at(url: str) -> str:
    result = CliRunner().invoke(cli, ["--store", url, "append", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    return url


def test_rebuild_into_the_store_itself_leaves_it_writable(tmp_path):
    store = _store(tmp_path / "runs.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", store, "rebuild", "--into", store]).exit_code == 0
    again = runner.invoke(cli, ["--store", store, "append", str(EXAMPLES)])
    assert again.exit_code == 0, again.output
    assert runner.invoke(cli, ["--store", store, "rebuild"]).exit_code == 0


def test_a_refused_rebuild_into_a_live_store_leaves_it_writable(tmp_path):
    source = _store(tmp_path / "source.db")
    live = _store(tmp_path / "live.db")
    runner = CliRunner()
    refused = runner.invoke(cli, ["--store", source, "rebuild", "--into", live])
    assert refused.exit_code == 1 and "holds a log of its own" in refused.output
    again = runner.invoke(cli, ["--store", live, "append", str(EXAMPLES)])
    assert again.exit_code == 0, again.output


def test_replay_on_an_analysts_copy_says_it_is_a_copy(tmp_path):
    source = _store(tmp_path / "source.db")
    copy = str(tmp_path / "copy.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", source, "rebuild", "--into", copy]).exit_code == 0
    assert runner.invoke(cli, ["--store", copy, "runs", "show", "run-0007", "--no-catch-up"]).exit_code == 0
    replayed = runner.invoke(cli, ["--store", copy, "replay", "run-0007", "--no-catch-up"])
    assert "analyst's copy" in replayed.output, replayed.output


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
def test_a_copy_of_a_postgresql_store_names_its_schema(postgres_url, tmp_path):
    source = _store_at(postgres_url)
    copy = str(tmp_path / "copy.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", source, "rebuild", "--into", copy]).exit_code == 0
    refused = runner.invoke(cli, ["--store", copy, "append", str(EXAMPLES)])
    schema = parse_url(postgres_url)["schema"]
    assert refused.exit_code == 1 and f"?schema={schema}" in refused.stderr, refused.stderr
