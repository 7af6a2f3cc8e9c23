"""What speeds a rebuild up must not change a row: the views' memory between pages, the
staging files a rebuild folds into, and the helper process that folds some views."""

from __future__ import annotations

import glob
import os
from contextlib import contextmanager
import shutil
import sqlite3
import subprocess
import sys
from operator import itemgetter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.projections import helper as helper_module
from flowledger.projections import memory as memory_module
from flowledger.projections import projector as projector_module
from flowledger.projections.base import Writes
from flowledger.projections.helper import split_views
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from flowledger.store import sqlite as sqlite_module
from flowledger.store.staging import StagingBackend
from tests.conftest import POSTGRES_UNREACHABLE, ev, step, triggered
from tests.histories import fresh_log, interleave, jsonl, workspaces
from tests.test_views import snapshot

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _events(ws):
    run_events, messages = ws
    return run_events + messages


def _interleaved(ws, draw):
    """The workspace's runs and messages interleaved (each keeping its own order), so that
    a key comes back after others were written: what a memory that forgets must read."""
    run_events, messages = ws
    by_message: dict[str, list] = {}
    for e in messages:
        by_message.setdefault(e["message_id"], []).append(e)
    return interleave(draw, [run_events, *by_message.values()])


@contextmanager
def _forgetful(limit: int, bits: int):
    """Memories that keep ``limit`` entries a table, with filters of ``bits`` bits."""
    saved = memory_module.DEFAULT_LIMIT, memory_module.FORGOTTEN_BITS, memory_module._MASK
    memory_module.DEFAULT_LIMIT, memory_module.FORGOTTEN_BITS, memory_module._MASK = limit, bits, bits - 1
    try:
        yield
    finally:
        memory_module.DEFAULT_LIMIT, memory_module.FORGOTTEN_BITS, memory_module._MASK = saved


@SETTINGS
@given(workspaces(), st.integers(1, 3), st.sampled_from([8, 64, 1 << 20]), st.data())
def test_a_memory_that_forgets_almost_everything_folds_the_same_rows(ws, limit, bits, data):
    events = _interleaved(ws, data.draw)
    # The same pages both times: where pages cut the log is not what is compared here.
    page_size = data.draw(st.integers(1, 9))
    with fresh_log() as (log, path):
        ledger.append_input(log, jsonl(events))
        Projector(log.backend).rebuild(page_size=page_size)
        expected = snapshot(path)
        # A filter of 8 bits says "maybe stored" of nearly every key: all false positives.
        with _forgetful(limit, bits):
            Projector(log.backend).rebuild(page_size=page_size)
        assert snapshot(path) == expected


@SETTINGS
@given(workspaces(), st.integers(1, 3), st.data())
def test_views_folded_from_another_stores_log_that_forget_almost_everything_fold_the_same_rows(ws, limit, data):
    # What a view forgot is read back from the log it folds: here another store's.
    events = _interleaved(ws, data.draw)
    page_size = data.draw(st.integers(1, 9))
    with fresh_log() as (log, path), fresh_log() as (into, into_path):
        ledger.append_input(log, jsonl(events))
        Projector(log.backend).rebuild(page_size=page_size)
        with _forgetful(limit, 64):
            Projector(into.backend, source=log.backend).rebuild(page_size=page_size)
            assert snapshot(into_path) == snapshot(path)
            _clear(into, Projector(into.backend))
            Projector(into.backend, source=log.backend).catch_up(page_size=page_size)
        assert snapshot(into_path) == snapshot(path)


def test_a_memory_knows_which_keys_it_forgot_and_that_it_never_saw_the_others():
    memory = memory_module.Memory(limit=2)
    memory.check(0)
    runs = memory.table("runs")
    for i in range(5):
        runs[f"r{i}"] = i
    memory.committed(10)
    assert list(runs) == ["r3", "r4"]
    assert all(memory.may_be_stored("runs", f"r{i}") for i in range(3))
    assert not any(memory.may_be_stored("runs", f"never-{i}") for i in range(100))
    assert not memory.may_be_stored("steps", "r0")
    memory.check(11)  # another projector moved the view: nothing is known any more
    assert memory.may_be_stored("runs", "never-1") and not runs


@SETTINGS
@given(workspaces(), st.data())
def test_a_rebuild_through_staging_files_equals_one_in_place_and_a_catch_up(ws, data):
    events = _events(ws)
    page_size = data.draw(st.integers(1, 7))
    with fresh_log() as (log, path):
        ledger.append_input(log, jsonl(events))
        projector = Projector(log.backend)
        projector.rebuild(page_size=page_size, helper=False)
        staged = snapshot(path)
        # As on PostgreSQL: the views emptied and folded where they are.
        projector._rebuild_in_place(projector.views, page_size, None)
        assert snapshot(path) == staged
        _clear(log, projector)
        projector.catch_up(page_size=page_size)
        assert snapshot(path) == staged


def _clear(log, projector):
    with log.backend.transaction(write=True) as c:
        for view in projector.views:
            for table in view.tables:
                c.execute(f'DELETE FROM "{table}"')
            log.backend.clear_position(c, view.name)


def _runs_with_messages(first: int, n: int) -> list[dict]:
    events = []
    for i in range(first, first + n):
        rid = f"r{i}"
        events += [triggered(rid), ev("run.started", run_id=rid), step("step.started", rid), step("step.succeeded", rid)]
        events += [ev("message.queued", message_id=f"m{i}", channel="email", recipient="u", run_id=rid, step="email-1")]
        events += [ev("message.delivered", message_id=f"m{i}")]
    return events


def test_views_that_move_on_and_events_that_arrive_while_a_rebuild_stages_are_kept(log, store_path, monkeypatch):
    ledger.append_input(log, jsonl(_runs_with_messages(0, 6)))
    Projector(log.backend).catch_up()
    later = _runs_with_messages(6, 3)
    apply_page = Projector._apply_page
    raced = []

    def racing(self, views, page_size, memories=None):
        if isinstance(self.backend, StagingBackend) and not raced:
            # Mid-rebuild: more events come, and a follower applies them to the store's views.
            raced.append(True)
            ledger.append_input(log, jsonl(later))
            Projector(log.backend).catch_up(page_size=5)
        return apply_page(self, views, page_size, memories)

    monkeypatch.setattr(Projector, "_apply_page", racing)
    total = Projector(log.backend).rebuild(page_size=4, helper=False)
    monkeypatch.undo()
    assert raced and total == 9 * 6
    rebuilt = snapshot(store_path)
    projector = Projector(log.backend)
    assert {v.name: projector.position(v) for v in projector.views} == dict.fromkeys(["runs", "steps", "deliveries"], 54)
    projector.rebuild(page_size=100, helper=False)
    assert snapshot(store_path) == rebuilt


def test_a_page_that_fails_leaves_no_trace_in_memory(log, store_path, monkeypatch):
    events = [triggered(f"r{i}") for i in range(5)] + [ev("run.started", run_id=f"r{i}") for i in range(5)]
    ledger.append_input(log, jsonl(events))
    Projector(log.backend).rebuild(page_size=3)
    expected = snapshot(store_path)
    projector = Projector(log.backend)
    _clear(log, projector)
    calls = {"n": 0}
    run = Writes.run

    def failing_once(self, c):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("disk on fire")
        run(self, c)

    monkeypatch.setattr(Writes, "run", failing_once)
    with pytest.raises(RuntimeError):
        projector.catch_up(page_size=3)
    projector.catch_up(page_size=3)
    assert snapshot(store_path) == expected


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workspaces())
def test_a_rebuild_with_a_helper_process_equals_one_without(ws):
    events = _events(ws)
    with fresh_log() as (log, path):
        ledger.append_input(log, jsonl(events))
        Projector(log.backend).rebuild(helper=False, page_size=5)
        expected = snapshot(path)
        assert Projector(log.backend).rebuild(helper=True, page_size=5) == len(events)
        assert snapshot(path) == expected


def test_a_rebuild_into_another_file_with_a_helper_folds_every_view(tmp_path):
    source = open_log(str(tmp_path / "log.db"))
    into = open_log(str(tmp_path / "views.db"))
    try:
        events = [triggered(f"r{i}") for i in range(20)]
        events += [ev("message.queued", message_id=f"m{i}", channel="sms", recipient="u", run_id=f"r{i}") for i in range(20)]
        ledger.append_input(source, jsonl(events))
        projector = Projector(into.backend, source=source.backend)
        assert projector.rebuild(helper=True, page_size=7) == 40
        assert {v.name: projector.position(v) for v in projector.views} == dict.fromkeys(["runs", "steps", "deliveries"], 40)
        with into.backend.transaction(write=False) as c:
            c.execute("SELECT COUNT(*) FROM deliveries")
            assert c.fetchone()[0] == 20
            c.execute("SELECT COUNT(*) FROM runs")
            assert c.fetchone()[0] == 20
    finally:
        source.close()
        into.close()


@pytest.fixture
def helper_starts(monkeypatch):
    """The (command line, environment) of each helper process started during the test."""
    started, popen = [], subprocess.Popen

    def spy(command, **kwargs):
        started.append((command, kwargs["env"]))
        return popen(command, **kwargs)

    monkeypatch.setattr(helper_module.subprocess, "Popen", spy)
    return started


@pytest.fixture
def helper_ends(monkeypatch):
    """Whether each helper waited for during the test rebuilt all its views."""
    ended, wait = [], helper_module.Helper.wait

    def spy(helper):
        ended.append(wait(helper))
        return ended[-1]

    monkeypatch.setattr(helper_module.Helper, "wait", spy)
    return ended


def test_a_rebuild_into_a_file_from_a_postgresql_log_shares_the_views_with_a_helper(postgres_url, tmp_path, helper_starts, helper_ends):
    if POSTGRES_UNREACHABLE:
        pytest.skip(POSTGRES_UNREACHABLE)
    # The local server trusts its clients: a password is accepted, and must stay private.
    url = postgres_url.replace("://postgres@", "://postgres:not-for-ps@", 1)
    assert "not-for-ps" in url
    source = open_log(url)
    alone, shared = open_log(str(tmp_path / "alone.db")), open_log(str(tmp_path / "shared.db"))
    try:
        events = _runs_with_messages(0, 12) + [ev("message.opened", message_id=f"m{i}") for i in range(0, 12, 2)]
        ledger.append_input(source, jsonl(events))
        Projector(alone.backend, source=source.backend).rebuild(helper=False, page_size=7)
        projector = Projector(shared.backend, source=source.backend)
        assert projector.rebuild(helper=True, page_size=7) == len(events)
    finally:
        for log in (source, alone, shared):
            log.close()
    [(command, env)] = helper_starts
    assert helper_ends == [True]  # the helper folded its views
    assert env[helper_module.SOURCE_ENV] == url
    assert not any("not-for-ps" in part or "postgresql" in part for part in command)
    assert snapshot(str(tmp_path / "shared.db")) == snapshot(str(tmp_path / "alone.db"))


def test_a_helper_of_a_rebuild_of_one_store_is_given_no_other_log(log, monkeypatch, helper_starts):
    monkeypatch.setenv(helper_module.SOURCE_ENV, "/elsewhere/log.db")  # left by whoever ran this
    ledger.append_input(log, jsonl(_runs_with_messages(0, 4)))
    head = Projector(log.backend).head()
    assert Projector(log.backend).rebuild(helper=True, page_size=3) == head
    [(_, env)] = helper_starts
    assert helper_module.SOURCE_ENV not in env


def test_a_helper_shares_the_views_only_when_there_are_two_groups():
    views = projector_module.all_views()
    mine, theirs = split_views(views)
    assert {v.name for v in mine} | {v.name for v in theirs} == {"runs", "steps", "deliveries"}
    assert mine and theirs
    only = [v for v in views if v.name == "deliveries"]
    assert split_views(only) == (only, [])


@pytest.fixture(params=["sqlite", "postgresql"])
def any_log(request, store_path):
    """An open log on a fresh SQLite file, then on a PostgreSQL schema of its own."""
    if request.param == "postgresql" and POSTGRES_UNREACHABLE:
        pytest.skip(POSTGRES_UNREACHABLE)
    log = open_log(request.getfixturevalue("postgres_url") if request.param == "postgresql" else store_path)
    yield log
    log.close()


def _view_rows(log) -> dict[str, list[str]]:
    """Every view table's rows, sorted, on either backend."""
    with log.backend.transaction(write=False) as c:
        out = {}
        for view in projector_module.all_views():
            for table in view.tables:
                c.execute(f'SELECT * FROM "{table}"')
                out[table] = sorted(repr(tuple(r)) for r in c.fetchall())
        return out


def test_a_helper_that_fails_leaves_its_views_to_the_rebuilding_process_on_both_backends(any_log, monkeypatch, caplog):
    log = any_log
    events = _runs_with_messages(0, 10) + [ev("message.opened", message_id=f"m{i}") for i in range(0, 10, 3)]
    ledger.append_input(log, jsonl(events))
    projector = Projector(log.backend)
    projector.rebuild(helper=False, page_size=4)
    expected = _view_rows(log)
    command = helper_module._command
    # A view no helper knows: it fails before rebuilding anything.
    monkeypatch.setattr(helper_module, "_command", lambda *a: [*command(*a), "no-such-view"])
    assert projector.rebuild(helper=True, page_size=4) == len(events)
    assert "rebuild helper ended with code" in caplog.text
    assert _view_rows(log) == expected
    assert {projector.position(v) for v in projector.views} == {Projector(log.backend).head()}


def test_a_rebuild_with_or_without_a_helper_and_a_catch_up_agree_on_both_backends(any_log, helper_ends):
    log = any_log
    events = _runs_with_messages(0, 12)
    events += [ev("message.opened", message_id=f"m{i}") for i in range(0, 12, 2)]
    ledger.append_input(log, jsonl(events))
    projector = Projector(log.backend)

    projector.rebuild(helper=False, page_size=13)
    expected = _view_rows(log)
    # The helper rebuilds `deliveries`: into a staging file of its own (SQLite), or in place.
    assert projector.rebuild(helper=True, page_size=13) == len(events)
    assert helper_ends == [True]
    assert _view_rows(log) == expected
    _clear(log, projector)
    projector.catch_up(page_size=13)
    assert _view_rows(log) == expected


def _every_index() -> set[str]:
    """The names of every view's indexes."""
    return set().union(*(v.index_names() for v in projector_module.all_views()))


def _indexes(path: str) -> set[str]:
    """The views' indexes the file holds."""
    with sqlite3.connect(path) as c:
        return _every_index() & {name for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def _some_runs_and_messages(n: int = 10) -> list[dict]:
    events = [triggered(f"r{i}") for i in range(n)]
    events += [ev("message.queued", message_id=f"m{i}", channel="email", recipient="u", run_id=f"r{i}") for i in range(n)]
    return events + [ev("message.delivered", message_id=f"m{i}") for i in range(n)]


@pytest.mark.parametrize("helper", [False, True])
def test_a_staged_rebuild_folds_without_the_query_indexes_and_the_store_gets_them_all(log, store_path, helper):
    ledger.append_input(log, jsonl(_some_runs_and_messages()))
    projector = Projector(log.backend)
    projector.ensure_tables()
    every_index = _every_index()
    assert _indexes(store_path) == every_index
    seen_while_folding = []
    catch_up = Projector.catch_up

    def watching(self, *args, **kwargs):
        if isinstance(self.backend, StagingBackend):
            seen_while_folding.append((self.views, _indexes(self.backend.path)))
        return catch_up(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Projector, "catch_up", watching)
        projector.rebuild(helper=helper, page_size=4)
    # With a helper, its staging file is another process's: only this one's is seen here.
    [(views, seen)] = seen_while_folding
    assert {v.name for v in views} == ({"runs", "steps"} if helper else {"runs", "steps", "deliveries"})
    assert seen == set().union(*(v.index_names() - v.query_indexes for v in views))
    assert _indexes(store_path) == every_index
    assert _staging_files(store_path) == []


def test_a_rebuild_in_place_makes_the_query_indexes_it_left_out_while_folding(log, store_path):
    ledger.append_input(log, jsonl(_some_runs_and_messages()))
    projector = Projector(log.backend)
    projector.ensure_tables()
    seen_while_folding = []
    catch_up = Projector.catch_up

    def watching(self, *args, **kwargs):
        seen_while_folding.append(_indexes(store_path))
        return catch_up(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Projector, "catch_up", watching)
        projector._rebuild_in_place(projector.views, 4, None)
    query_indexes = set().union(*(v.query_indexes for v in projector.views))
    assert query_indexes and not query_indexes & seen_while_folding[0]
    assert _indexes(store_path) == _every_index()


def test_a_rebuild_in_place_stopped_before_its_indexes_leaves_them_to_the_next_projector(log, store_path, monkeypatch):
    events = _some_runs_and_messages()
    ledger.append_input(log, jsonl(events))
    Projector(log.backend).rebuild(helper=False, page_size=4)
    expected, every_index = snapshot(store_path), _indexes(store_path)

    def stopped(self, views):
        raise KeyboardInterrupt

    monkeypatch.setattr(Projector, "make_query_indexes", stopped)
    projector = Projector(log.backend)
    with pytest.raises(KeyboardInterrupt):
        projector._rebuild_in_place(projector.views, 4, None)
    assert _indexes(store_path) < every_index
    monkeypatch.undo()
    # In this process, or in the next one to open the store.
    Projector(log.backend).catch_up()
    assert _indexes(store_path) == every_index
    assert snapshot(store_path) == expected


@pytest.mark.parametrize("helper", [False, True])
def test_a_staged_rebuild_stopped_part_way_leaves_the_views_as_they_were(log, store_path, monkeypatch, helper):
    ledger.append_input(log, jsonl(_some_runs_and_messages()))
    projector = Projector(log.backend)
    projector.catch_up()
    before, indexes = snapshot(store_path), _indexes(store_path)
    positions = {v.name: projector.position(v) for v in projector.views}
    apply_page = Projector._apply_page

    def interrupted(self, views, page_size, memories=None):
        if isinstance(self.backend, StagingBackend) and "-runs-steps" in self.backend.path:
            raise KeyboardInterrupt  # Ctrl-C while staging
        return apply_page(self, views, page_size, memories)

    monkeypatch.setattr(Projector, "_apply_page", interrupted)
    with pytest.raises(KeyboardInterrupt):
        projector.rebuild(helper=helper, page_size=4)
    monkeypatch.undo()
    assert snapshot(store_path) == before and _indexes(store_path) == indexes
    assert {v.name: projector.position(v) for v in projector.views} == positions
    assert _staging_files(store_path) == []


def test_a_staging_file_a_killed_rebuild_left_is_removed_by_the_next(log, store_path):
    ledger.append_input(log, jsonl(_some_runs_and_messages()))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended
    left = f"{store_path}.rebuild-{pid}-runs-steps"
    alive = f"{store_path}.rebuild-{os.getppid()}-deliveries"  # another rebuild, still running
    for path in (left, alive):
        with open(path, "wb") as f:
            f.write(b"half a view")
    Projector(log.backend).rebuild(helper=False, page_size=4)
    assert _staging_files(store_path) == [alive]


def _staging_files(store_path: str) -> list[str]:
    """The staging files beside a store."""
    return sorted(glob.glob(glob.escape(store_path) + ".rebuild-*"))


def test_rows_written_in_key_order_keep_the_last_word_for_each_key():
    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    writes = Writes()
    rows = [("b", 1), ("a", 1), ("c", 1), ("b", 2), ("a", 2)]
    writes.add("INSERT INTO t VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", rows, key=itemgetter(0))
    writes.run(c)
    assert c.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [("a", 2), ("b", 2), ("c", 1)]
    assert rows == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1)]


def test_any_missing_index_of_a_view_is_made_again_when_the_store_is_opened(log, store_path):
    ledger.append_input(log, jsonl(_some_runs_and_messages()))
    Projector(log.backend).catch_up()
    with sqlite3.connect(store_path) as c:
        # One index a fold reads, one only queries read.
        c.execute("DROP INDEX deliveries_by_run")
        c.execute("DROP INDEX runs_by_status")
    assert _indexes(store_path) == _every_index() - {"deliveries_by_run", "runs_by_status"}
    reopened = open_log(store_path)
    try:
        Projector(reopened.backend).catch_up()
    finally:
        reopened.close()
    assert _indexes(store_path) == _every_index()


def test_views_still_empty_over_a_long_log_are_caught_up_as_a_rebuild_folds_them(log, store_path, monkeypatch):
    ledger.append_input(log, jsonl(_runs_with_messages(0, 20)))
    # The reference: every view caught up page by page.
    monkeypatch.setattr(projector_module, "STAGED_FROM", 10**9)
    Projector(log.backend).catch_up(page_size=7)
    expected = snapshot(store_path)
    staged = []
    rebuild_staged = Projector.rebuild_staged

    def watching(self, views, **kwargs):
        staged.append(sorted(v.name for v in views))
        return rebuild_staged(self, views, **kwargs)

    monkeypatch.setattr(Projector, "rebuild_staged", watching)
    monkeypatch.setattr(projector_module, "STAGED_FROM", 100)
    # A view a newer flowledger made again (empty) beside two that are current.
    with log.backend.transaction(write=True) as c:
        c.execute("UPDATE flowledger_meta SET value = '0' WHERE key = 'view:deliveries'")
    reopened = open_log(store_path)
    try:
        assert Projector(reopened.backend).catch_up(page_size=7) == 120
    finally:
        reopened.close()
    assert staged == [["deliveries"]]
    assert snapshot(store_path) == expected
    # A new store after a large import: every view at once; a short log: page by page.
    with fresh_log() as (other, other_path):
        ledger.append_input(other, jsonl(_runs_with_messages(0, 20)))
        Projector(other.backend).catch_up(page_size=7)
        assert staged[1:] == [["deliveries", "runs", "steps"]]
        assert snapshot(other_path) == expected
    with fresh_log() as (small, _):
        ledger.append_input(small, jsonl(_runs_with_messages(0, 5)))
        Projector(small.backend).catch_up(page_size=7)
        assert len(staged) == 2


def test_a_rebuild_on_postgresql_leaves_the_planner_knowing_its_tables(request):
    # Without statistics, PostgreSQL guesses the new tables' sizes and scans the deliveries
    # rather than seek a run's few by their index (a runs page went from 2 to 11 ms).
    if POSTGRES_UNREACHABLE:
        pytest.skip(POSTGRES_UNREACHABLE)
    log = open_log(request.getfixturevalue("postgres_url"))
    try:
        ledger.append_input(log, jsonl(_runs_with_messages(0, 30)))
        Projector(log.backend).rebuild()
        with log.backend.transaction(write=False) as c:
            for table in ("runs", "steps", "deliveries"):
                c.execute(
                    "SELECT reltuples FROM pg_class WHERE relname = ? AND relnamespace = to_regnamespace(?)",
                    (table, log.backend.schema),
                )
                known = c.fetchone()[0]
                c.execute(f'SELECT COUNT(*) FROM "{table}"')
                assert known == c.fetchone()[0] > 0, table
    finally:
        log.close()


def test_late_facts_caught_up_by_a_new_projector_fold_as_a_rebuild_does(any_log):
    # Each catch-up is a new projector that remembers nothing: a message with a fact in
    # the new page is refolded from its row and its stream in the log.
    log = any_log
    ledger.append_input(log, jsonl(_runs_with_messages(0, 6)))
    Projector(log.backend).catch_up()
    for i in range(0, 6, 2):
        ledger.append_input(log, jsonl([ev("message.opened", message_id=f"m{i}", occurred_at="2026-11-01T10:00:00Z")]))
        ledger.append_input(log, jsonl([ev("message.bounced", message_id=f"m{i + 1}", reason="mailbox full")]))
        Projector(log.backend).catch_up()
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT message_id, status, opened_at, opens_total FROM deliveries ORDER BY message_id")
        caught_up = c.fetchall()
        c.execute("SELECT * FROM channel_counts ORDER BY workflow, channel, metric")
        counts = c.fetchall()
    assert [r[1] for r in caught_up] == ["opened", "bounced"] * 3
    Projector(log.backend).rebuild()
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT message_id, status, opened_at, opens_total FROM deliveries ORDER BY message_id")
        assert c.fetchall() == caught_up
        c.execute("SELECT * FROM channel_counts ORDER BY workflow, channel, metric")
        assert c.fetchall() == counts


@pytest.mark.parametrize("helper", [False, True])
def test_a_rebuild_leaves_its_views_in_the_file_not_only_in_the_write_ahead_log(monkeypatch, store_path, tmp_path, helper):
    # No commit copies the log into the file on its own here: only the rebuild's end may.
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_PAGES", 1_000_000)
    log = open_log(store_path)  # open throughout, as `serve` keeps its store
    try:
        ledger.append_input(log, jsonl(_some_runs_and_messages()))
        Projector(log.backend).rebuild(helper=helper, page_size=4)
        expected = snapshot(store_path)
        # The file alone, without its write-ahead log.
        alone = str(tmp_path / "alone.db")
        shutil.copyfile(store_path, alone)
        assert snapshot(alone) == expected
        assert any(rows for rows in expected.values())
    finally:
        log.close()
