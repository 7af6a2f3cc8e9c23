"""Mutation review of the rebuild's helper process (flowledger/projections/helper.py) and of
the copy and version checks of the projector: tests that kill the hand-made mutants the other
tests let live."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import pytest
from click.testing import CliRunner

import flowledger
from flowledger import ledger
from flowledger.cli import cli
from flowledger.errors import ViewsRemadeByAnotherVersion
from flowledger.projections import helper as helper_module
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_upgrade_from_older_releases import _runs_rows


@pytest.fixture
def helper_starts(monkeypatch):
    """The (command line, environment, process) of each helper process started during the test."""
    started, popen = [], subprocess.Popen

    def spy(command, **kwargs):
        process = popen(command, **kwargs)
        started.append((command, kwargs["env"], process))
        return process

    monkeypatch.setattr(helper_module.subprocess, "Popen", spy)
    return started


def _runs_with_messages(n: int) -> list[dict]:
    """n runs, each with one message queued."""
    events = [triggered(f"r{i}") for i in range(n)]
    return events + [ev("message.queued", message_id=f"m{i}", channel="sms", recipient="u", run_id=f"r{i}") for i in range(n)]


def test_a_helper_is_told_the_rebuilding_process_as_its_parent(log, helper_starts):
    """The helper's command line names the rebuilding process's pid, so that a helper whose parent died before it started exits rather than folds."""
    ledger.append_input(log, jsonl(_runs_with_messages(4)))
    Projector(log.backend).rebuild(helper=True, page_size=3)
    [(command, _, _)] = helper_starts
    assert command[command.index("--parent") + 1] == str(os.getpid())


def test_a_rebuild_that_fails_stops_its_helper_at_once_rather_than_waiting_for_it(log, helper_starts, monkeypatch):
    """A rebuild that fails while its helper folds ends the helper (it never goes on to replace its views) and does not wait for it to finish."""
    ledger.append_input(log, jsonl(_runs_with_messages(4)))

    def fails(self, views, **kwargs):
        raise RuntimeError("the rebuilding process's own views failed")

    monkeypatch.setattr(Projector, "rebuild_alone", fails)
    with pytest.raises(RuntimeError):
        Projector(log.backend).rebuild(helper=True, page_size=3)
    [(_, _, process)] = helper_starts
    # Stopped by SIGTERM (before or after its handler was set), never ended of its own accord.
    assert process.returncode in (-15, 128 + 15)


def test_a_helper_imports_the_flowledger_of_the_rebuilding_process(log, helper_starts, monkeypatch):
    """The helper's PYTHONPATH starts with the rebuilding process's own flowledger, so that another installed version never folds its views."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    ledger.append_input(log, jsonl(_runs_with_messages(4)))
    Projector(log.backend).rebuild(helper=True, page_size=3)
    [(_, env, _)] = helper_starts
    root = os.path.dirname(os.path.dirname(os.path.abspath(flowledger.__file__)))
    assert env["PYTHONPATH"].split(os.pathsep)[0] == root


def test_an_unmarked_older_copy_is_refused_though_one_of_its_older_views_is_at_position_0(tmp_path):
    """An unmarked copy an older release made is refused when any of its older views was folded past its own log, even if another of them is at 0."""
    store, copy = str(tmp_path / "runs.db"), str(tmp_path / "copy.db")
    runner = CliRunner()
    events = jsonl(_runs_with_messages(5)).read()
    assert runner.invoke(cli, ["--store", store, "append", "-"], input=events).exit_code == 0
    assert runner.invoke(cli, ["--store", store, "rebuild", "--into", copy]).exit_code == 0
    db = sqlite3.connect(copy)
    with db:
        db.execute("DELETE FROM flowledger_meta WHERE key = 'copy_of'")
        # runs folded to the source's end; deliveries, made later from the copy's own
        # (empty) log, at 0: both of an older release.
        db.execute("UPDATE flowledger_meta SET value = '1' WHERE key IN ('view:runs', 'view:deliveries')")
        db.execute("DELETE FROM tracking WHERE application_name = 'deliveries'")
        before = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    db.close()
    assert before == 5
    r = runner.invoke(cli, ["--store", copy, "counts", "--json"])
    assert r.exit_code == 1 and "rebuild --into" in r.output, r.output
    db = sqlite3.connect(copy)
    try:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == before
    finally:
        db.close()


def test_a_helper_waits_for_locks_as_long_as_the_rebuilding_process(store_path, helper_starts):
    """The helper is given the store's lock timeout (--lock-timeout), not its own default of 60 s."""
    log = open_log(store_path, lock_timeout=7.5)
    try:
        ledger.append_input(log, jsonl(_runs_with_messages(4)))
        Projector(log.backend).rebuild(helper=True, page_size=3)
    finally:
        log.close()
    [(command, _, _)] = helper_starts
    assert float(command[command.index("--lock-timeout") + 1]) == 7.5


def test_a_helper_that_fails_is_logged_with_what_it_said(log, monkeypatch, caplog):
    """The warning for a helper that failed carries the end of the helper's own error output."""
    ledger.append_input(log, jsonl(_runs_with_messages(4)))
    command = helper_module._command
    monkeypatch.setattr(helper_module, "_command", lambda *a: [*command(*a), "no-such-view"])
    Projector(log.backend).rebuild(helper=True, page_size=3)
    assert "rebuild helper ended with code" in caplog.text
    assert "no-such-view" in caplog.text.split("rebuild helper ended with code", 1)[1]


def _copy(tmp_path, runs_version: str, view: str = "runs") -> tuple[str, str]:
    """A store of 5 runs and its copy made by `rebuild --into`, the copy's ``view`` then
    recorded as made for ``runs_version``: (source, copy)."""
    source, copy = str(tmp_path / "runs.db"), str(tmp_path / "copy.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", source, "append", "-"], input=jsonl(_runs_with_messages(5)).read()).exit_code == 0
    assert runner.invoke(cli, ["--store", source, "rebuild", "--into", copy]).exit_code == 0
    with sqlite3.connect(copy) as db:
        db.execute("UPDATE flowledger_meta SET value = ? WHERE key = ?", (runs_version, f"view:{view}"))
    return source, copy


@pytest.mark.parametrize("runs_version", ["9.0", "99"], ids=["not-a-number", "newer"])
def test_a_copy_whose_view_another_version_made_is_refused_as_a_copy_and_kept(tmp_path, runs_version):
    """An analyst's copy whose view a newer version made, or one whose version is not a number, is refused as a copy (make it again with --into), its rows kept."""
    source, copy = _copy(tmp_path, runs_version)
    r = CliRunner().invoke(cli, ["--store", copy, "counts", "--json"])
    assert r.exit_code == 1, r.output
    assert "rebuild --into" in r.output and source.rsplit("/", 1)[1] in r.output, r.output
    assert _runs_rows(copy) == 5


def test_rebuild_into_makes_a_copy_a_newer_version_made_again(tmp_path):
    """`rebuild --into` makes again a copy whose views a newer flowledger made: what a refused copy is told to do."""
    source, copy = _copy(tmp_path, "99")
    runner = CliRunner()
    r = runner.invoke(cli, ["--store", source, "rebuild", "--into", copy])
    assert r.exit_code == 0, r.output
    expected = json.loads(runner.invoke(cli, ["--store", source, "counts", "--json"]).output)
    again = runner.invoke(cli, ["--store", copy, "counts", "--json", "--no-catch-up"])
    assert again.exit_code == 0 and json.loads(again.output) == expected, again.output


def test_a_store_whose_views_were_never_made_is_not_said_to_hold_another_versions_views(store_path):
    """`flowledger views` and /healthz on a store whose views were never made report no views of another version."""
    log = open_log(store_path)
    try:
        lag = ledger.views_lag(log)
    finally:
        log.close()
    assert lag.another_version is None


def test_a_follower_stops_when_a_views_version_record_is_gone(log):
    """A follower whose view has lost its stored version (views made again by something that records none) stops rather than folds on."""
    ledger.append_input(log, jsonl(_runs_with_messages(3)))
    follower = Projector(log.backend)
    follower.catch_up()
    with log.backend.transaction(write=True) as c:
        c.execute("DELETE FROM flowledger_meta WHERE key = 'view:runs'")
    ledger.append_input(log, jsonl([triggered("r9")]))
    with pytest.raises(ViewsRemadeByAnotherVersion):
        follower.catch_up(check_versions=True)


@pytest.mark.parametrize("version", ["99", "1"], ids=["newer", "older"])
def test_rebuild_into_a_copy_of_some_views_folds_the_others_it_makes_again(tmp_path, version):
    """`rebuild --into COPY runs` on a copy whose deliveries another version made folds deliveries again from the source, never leaving them empty."""
    source, copy = _copy(tmp_path, version, view="deliveries")
    runner = CliRunner()
    r = runner.invoke(cli, ["--store", source, "rebuild", "--into", copy, "runs"])
    assert r.exit_code == 0, r.output
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT COUNT(*) FROM deliveries").fetchone() == (5,)
        assert db.execute("SELECT notification_id FROM tracking WHERE application_name = 'deliveries'").fetchone() == (10,)


def test_a_rebuild_into_a_copy_a_newer_version_made_remakes_it_without_being_told_to_downgrade(tmp_path):
    """Projector.rebuild into an analyst's copy whose views a newer flowledger made makes the copy again, even without downgrade: it is what --into is for."""
    source_path, copy_path = _copy(tmp_path, "99")
    source, into = open_log(source_path), open_log(copy_path)
    try:
        projector = Projector(into.backend, source=source.backend)
        assert projector.rebuild(helper=False) == 10
        assert {v.name: projector.position(v) for v in projector.views} == dict.fromkeys(["runs", "steps", "deliveries"], 10)
    finally:
        source.close()
        into.close()
    assert _runs_rows(copy_path) == 5


@pytest.mark.parametrize("index", ["runs_by_seq", "deliveries_by_seq"])
def test_a_missing_unique_index_of_a_view_is_made_again_when_the_store_is_opened(log, store_path, index):
    """A view's UNIQUE query index that is missing (a rebuild stopped before making it) is made again by the next projector, like any other index."""
    ledger.append_input(log, jsonl(_runs_with_messages(3)))
    Projector(log.backend).catch_up()
    with sqlite3.connect(store_path) as db:
        db.execute(f"DROP INDEX {index}")
    other = open_log(store_path)
    try:
        Projector(other.backend).ensure_tables()
    finally:
        other.close()
    with sqlite3.connect(store_path) as db:
        assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?", (index,)).fetchone() == (1,)
