"""Mutation review of the projector (exactly-once folding, positions, view versions, rebuilds):
tests that kill the hand-made mutants of flowledger/projections/projector.py, helper.py and
base.py that the other tests let live, and the one bug the review found (a follower on an
analyst's copy another version made tried again for ever, where README says it is refused)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from flowledger import ledger
from flowledger.cli import cli
from flowledger.errors import StoreError, StoreIsACopy, ViewsMadeByANewerVersion, ViewsRemadeByAnotherVersion
from flowledger.projections import projector as projector_module
from flowledger.projections.projector import Projector
from flowledger.projections.runs_view import RunsView
from flowledger.projections.steps_view import StepsView
from flowledger.store import open_log
from flowledger.store.staging import StagingBackend
from tests.conftest import ev, triggered
from tests.histories import jsonl, make
from tests.test_views import snapshot
from tests.view_versions_kit import OlderRunsView


def _older_copy(tmp_path) -> tuple[str, str]:
    """A copy made by `rebuild --into`, its runs view then set back to a version an older
    flowledger made: (source, copy)."""
    source, into = str(tmp_path / "source.db"), str(tmp_path / "copy.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", source, "append", "-"], input=jsonl([triggered("r1")]).read()).exit_code == 0
    assert runner.invoke(cli, ["--store", source, "rebuild", "--into", into]).exit_code == 0
    with sqlite3.connect(into) as db:
        # One this version cannot upgrade in place (it would make its tables again).
        db.execute("UPDATE flowledger_meta SET value = ? WHERE key = 'view:runs'", (str(OlderRunsView.version),))
    return source, into


def test_a_follower_on_an_analysts_copy_another_version_made_stops_saying_why(tmp_path):
    """Projector.follow on a copy another version made raises StoreIsACopy rather than trying again for ever."""
    source, into = _older_copy(tmp_path)
    log = open_log(into)
    start = time.monotonic()
    try:
        with pytest.raises(StoreIsACopy, match="rebuild --into"):
            Projector(log.backend).follow(interval=0.05, should_stop=lambda: time.monotonic() - start > 5)
    finally:
        log.close()
    with sqlite3.connect(into) as db:
        assert db.execute("SELECT id FROM runs").fetchall() == [("r1",)]  # its views kept


def test_project_follow_on_an_analysts_copy_another_version_made_exits_1(tmp_path):
    """`project --follow` on a copy another version made exits 1 with the command that makes it again."""
    source, into = _older_copy(tmp_path)
    command = [sys.executable, "-c", "from flowledger.cli import main; main()", "--store", into, "project", "--follow", "--interval", "0.05"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("`project --follow` on an older copy kept trying instead of exiting 1")
    assert done.returncode == 1, done.stderr
    assert f"rebuild --into {into}" in done.stderr


def test_the_servers_follower_on_an_analysts_copy_another_version_made_stops_and_says_why(tmp_path):
    """`serve`'s follower thread stops on such a copy, /healthz's reason naming the remedy, not a bug."""
    from flowledger.api.app import _follow

    source, into = _older_copy(tmp_path)
    log = open_log(into)
    stop = threading.Event()
    stopped: dict[str, str] = {}
    worker = threading.Thread(target=_follow, args=(log, None, stop, stopped), daemon=True)
    try:
        worker.start()
        worker.join(timeout=30)
        still_following = worker.is_alive()
    finally:
        stop.set()
        worker.join(timeout=30)
        log.close()
    assert not still_following, "the server's follower kept trying on a copy it can never fold"
    assert f"rebuild --into {into}" in stopped["reason"]
    assert "bug" not in stopped["reason"]


def test_views_a_newer_flowledger_made_while_this_one_waited_for_the_lock_are_left_as_they_are(store_path):
    """ensure_tables looks at the views' versions again under the lock: a newer process's views made meanwhile are refused, not remade."""
    log = open_log(store_path)
    try:
        backend = log.backend
        newer = str(RunsView.version + 1)

        def lock_views(c, names):
            # What a newer flowledger did while this process waited for the write lock.
            c.execute("DELETE FROM flowledger_meta WHERE key = 'view:runs'")
            c.execute("INSERT INTO flowledger_meta VALUES ('view:runs', ?)", (newer,))

        backend.lock_views = lock_views
        with pytest.raises(ViewsMadeByANewerVersion, match="runs"):
            Projector(backend).ensure_tables()
    finally:
        log.close()
    with sqlite3.connect(store_path) as db:
        # Nothing of this process's making went in: no views made for its versions.
        assert db.execute("SELECT value FROM flowledger_meta WHERE key LIKE 'view:%'").fetchall() == []


def test_events_appended_while_a_rebuild_folds_reach_the_views_by_its_end(store_path, monkeypatch):
    """A rebuild's views take the positions their staging files reached, then catch up with what was appended meanwhile."""
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl([triggered("r1"), ev("run.started", run_id="r1")]))
        made = Projector.make_query_indexes
        appended = []

        def make_query_indexes(self, views):
            # The fold of the staging file is done: another process appends before the merge.
            if isinstance(self.backend, StagingBackend) and not appended:
                other = open_log(store_path)
                try:
                    ledger.append_input(other, jsonl([triggered("r2"), ev("run.started", run_id="r2")]))
                finally:
                    other.close()
                appended.append(True)
            return made(self, views)

        monkeypatch.setattr(Projector, "make_query_indexes", make_query_indexes)
        projector = Projector(log.backend)
        projector.rebuild(helper=False)
        assert appended
        head = projector.head()
        assert [projector.position(v) for v in projector.views] == [head] * len(projector.views)
    finally:
        log.close()
    rows = snapshot(store_path)
    assert sorted(r[0] for r in rows["runs"]) == ["r1", "r2"]
    monkeypatch.undo()
    # The same rows as a rebuild of the whole log folds.
    log = open_log(store_path)
    try:
        Projector(log.backend).rebuild(helper=False)
    finally:
        log.close()
    assert snapshot(store_path) == rows


def test_a_view_missing_one_of_its_tables_is_made_again_and_refolded(store_path):
    """A view whose stored version is this one's but whose table is gone is made again and folded from the log."""
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl([triggered("r1"), ev("run.started", run_id="r1"), ev("run.completed", run_id="r1")]))
        Projector(log.backend).catch_up()
    finally:
        log.close()
    before = snapshot(store_path)
    with sqlite3.connect(store_path) as db:
        db.execute("DROP TABLE workflow_completions")
    log = open_log(store_path)  # a new process: it looks at the views again
    try:
        Projector(log.backend).catch_up()
    finally:
        log.close()
    assert snapshot(store_path) == before


def _run_events(run_id: str, *kinds: str) -> list[dict]:
    """A run of workflow "w" (up to 2 retries): run.triggered, then events of ``kinds`` in order."""
    events = [make(0, run_id, "run.triggered", workflow="w", recipient="u1", max_retries=2)]
    steps = {"step": "email-1", "step_type": "send_email", "attempt": 1}
    return events + [make(k, run_id, kind, **(steps if kind.startswith("step.") else {})) for k, kind in enumerate(kinds, 1)]


@pytest.mark.parametrize("page_size", [1, 3, 1000])
def test_views_at_different_positions_caught_up_together_equal_a_rebuild(store_path, page_size):
    """One catch-up of views that stand at different positions applies each event once to each of them."""
    log = open_log(store_path)
    try:
        # The runs view alone goes as far as a retry, the steps view alone further; deliveries stays at 0.
        ledger.append_input(log, jsonl(_run_events("r1", "run.started", "run.failed", "run.retried")))
        Projector(log.backend, [RunsView()]).catch_up()
        ledger.append_input(log, jsonl(_run_events("r2", "run.started", "step.started", "step.failed", "run.failed")))
        Projector(log.backend, [StepsView()]).catch_up()
        ledger.append_input(log, jsonl(_run_events("r3", "run.started", "run.completed")))
        projector = Projector(log.backend)
        assert len({projector.position(v) for v in projector.views}) == 3
        projector.catch_up(page_size=page_size)
        folded = snapshot(store_path)
        Projector(log.backend).rebuild(helper=False)
    finally:
        log.close()
    assert folded == snapshot(store_path)
    with sqlite3.connect(store_path) as db:
        assert db.execute("SELECT retry_count FROM runs WHERE id = 'r1'").fetchone() == (1,)


def test_a_catch_up_with_nothing_to_fold_never_waits_for_the_write_lock(store_path):
    """Views at the log's end catch up at once, even while another process holds the write lock."""
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl([triggered("r1")]))
        Projector(log.backend).catch_up()
    finally:
        log.close()
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's long append
    log = open_log(store_path, lock_timeout=0.2)
    try:
        assert Projector(log.backend).catch_up() == 0
    finally:
        log.close()
        holder.execute("ROLLBACK")
        holder.close()


def test_an_idle_follower_stops_once_another_version_remade_a_view(store_path):
    """A follower with nothing to fold finds at its next poll that another version remade a view, and stops."""
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl([triggered("r1")]))
        Projector(log.backend).catch_up()  # this process has made and checked the views
        with sqlite3.connect(store_path) as db:
            db.execute("UPDATE flowledger_meta SET value = ? WHERE key = 'view:steps'", (str(StepsView.version + 1),))
        start = time.monotonic()
        with pytest.raises(ViewsRemadeByAnotherVersion, match="steps"):
            Projector(log.backend).follow(interval=0.05, should_stop=lambda: time.monotonic() - start > 5)
    finally:
        log.close()


def test_a_follower_reports_the_pages_that_committed_before_a_store_error(store_path, monkeypatch):
    """Pages a catch-up committed before a store error are reported to on_applied, each event once in all."""
    log = open_log(store_path)
    try:
        events = [triggered(f"r{k}") for k in range(6)]
        ledger.append_input(log, jsonl(events))
        apply_page = Projector._apply_page
        calls = []

        def flaky(self, views, page_size, memories=None):
            calls.append(page_size)
            if len(calls) == 2:  # the second page of the first catch-up: the connection drops
                raise StoreError("connection lost")
            return apply_page(self, views, page_size, memories)

        monkeypatch.setattr(Projector, "_apply_page", flaky)
        applied: list[int] = []
        projector = Projector(log.backend)
        start = time.monotonic()
        projector.follow(
            interval=0.01, page_size=2, on_applied=applied.append,
            should_stop=lambda: sum(applied) >= len(events) or time.monotonic() - start > 5,
        )
        assert applied[0] == 2  # the page before the failure, reported after it
        assert sum(applied) == len(events) and projector.committed == len(events)
    finally:
        log.close()


def test_a_catch_up_that_folds_empty_views_as_a_rebuild_counts_those_events_as_committed(store_path, monkeypatch):
    """Events a catch-up folded through staging files count in Projector.committed, as its pages do."""
    monkeypatch.setattr(projector_module, "STAGED_FROM", 3)
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl([triggered(f"r{k}") for k in range(6)]))
        projector = Projector(log.backend)
        assert projector.catch_up() == 6
        assert projector.committed == 6
    finally:
        log.close()


def test_a_catch_up_whose_views_another_projector_moved_between_its_pages_equals_a_rebuild(store_path):
    """A view another projector moved between two pages of a catch-up is read back, not folded from what this one remembered."""
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl(_run_events("r1", "run.started", "step.started", "step.succeeded", "run.completed")))
        other = Projector(log.backend)
        moved = []

        def progress(n):
            if not moved:  # after this one's first page: another process applies the next
                moved.append(other._apply_page(other.views, 2))

        Projector(log.backend).catch_up(page_size=1, progress=progress)
        assert moved == [2]
        folded = snapshot(store_path)
        Projector(log.backend).rebuild(helper=False)
    finally:
        log.close()
    assert folded == snapshot(store_path)


@pytest.mark.parametrize("helper", ["none", "failing"])
def test_a_rebuild_folds_every_view_again_with_no_helper_or_one_that_fails(store_path, monkeypatch, helper):
    """A rebuild without a helper process, or whose helper fails, folds the helper's views (deliveries) again itself."""
    from flowledger.projections import helper as helper_module
    from tests.test_projector_memory import _runs_with_messages

    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl(_runs_with_messages(0, 6)))
        projector = Projector(log.backend)
        projector.catch_up()
        expected = snapshot(store_path)
        with sqlite3.connect(store_path) as db:
            db.execute("DELETE FROM deliveries")  # rows a rebuild is to make again
        if helper == "failing":
            command = helper_module._command
            monkeypatch.setattr(helper_module, "_command", lambda *a: [*command(*a), "no-such-view"])
        projector.rebuild(helper=helper == "failing", page_size=4)
    finally:
        log.close()
    assert snapshot(store_path) == expected


def test_rebuild_into_a_store_holding_a_single_event_of_its_own_is_refused(tmp_path):
    """`rebuild --into` refuses a target whose log holds even one event, and leaves it as it was."""
    runner = CliRunner()
    source, into = str(tmp_path / "source.db"), str(tmp_path / "into.db")
    assert runner.invoke(cli, ["--store", source, "append", "-"], input=jsonl([triggered("r1")]).read()).exit_code == 0
    assert runner.invoke(cli, ["--store", into, "append", "-"], input=jsonl([triggered("mine")]).read()).exit_code == 0
    done = runner.invoke(cli, ["--store", source, "rebuild", "--into", into])
    assert done.exit_code == 1 and "holds a log of its own (1 event)" in done.output + done.stderr
    assert runner.invoke(cli, ["--store", into, "append", "-"], input=jsonl([triggered("mine-2")]).read()).exit_code == 0
