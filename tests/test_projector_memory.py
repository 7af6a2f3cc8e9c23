"""What speeds a rebuild up must not change a row: the views' memory between pages, pages
folded before the write lock is taken, and the helper process that folds some views."""

from __future__ import annotations

import sqlite3
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
from tests.conftest import POSTGRES_UNREACHABLE, ev, step, triggered
from tests.histories import fresh_log, jsonl, workspaces
from tests.test_views import snapshot

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _events(ws):
    run_events, messages = ws
    return run_events + messages


@SETTINGS
@given(workspaces(), st.integers(1, 3), st.sampled_from([8, 64, 1 << 20]), st.data())
def test_a_memory_that_forgets_almost_everything_folds_the_same_rows(ws, limit, bits, data):
    events = _events(ws)
    # The same pages both times: where pages cut the log is not what is compared here.
    page_size = data.draw(st.integers(1, 9))
    with fresh_log() as (log, path):
        ledger.append_input(log, jsonl(events))
        Projector(log.backend).rebuild(page_size=page_size)
        expected = snapshot(path)
        saved = memory_module.DEFAULT_LIMIT, memory_module.FORGOTTEN_BITS, memory_module._MASK
        # A filter of 8 bits says "maybe stored" of nearly every key: all false positives.
        memory_module.DEFAULT_LIMIT, memory_module.FORGOTTEN_BITS, memory_module._MASK = limit, bits, bits - 1
        try:
            Projector(log.backend).rebuild(page_size=page_size)
        finally:
            memory_module.DEFAULT_LIMIT, memory_module.FORGOTTEN_BITS, memory_module._MASK = saved
        assert snapshot(path) == expected


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
def test_views_folded_before_the_lock_equal_views_folded_under_it(ws, data):
    events = _events(ws)
    page_size = data.draw(st.integers(1, 7))
    with fresh_log() as (log, path):
        ledger.append_input(log, jsonl(events))
        Projector(log.backend).rebuild(page_size=page_size)
        expected = snapshot(path)
        projector = Projector(log.backend)
        projector.rebuild(page_size=page_size, helper=False)
        _clear(log, projector)
        projector.catch_up(page_size=page_size, fold_first=True)
        assert snapshot(path) == expected


def _clear(log, projector):
    with log.backend.transaction(write=True) as c:
        for view in projector.views:
            for table in view.tables:
                c.execute(f'DELETE FROM "{table}"')
            log.backend.clear_position(c, view.name)


class _Racing(Projector):
    """A projector that another one overtakes between folding a page and writing it."""

    def __init__(self, backend, other):
        super().__init__(backend)
        self.other = other
        self.raced = 0
        self.folding_first = False

    def _fold_then_write(self, views, page_size, memories):
        self.folding_first = True
        try:
            return super()._fold_then_write(views, page_size, memories)
        finally:
            self.folding_first = False

    def _fold_page(self, c, views, positions, rows, memories):
        folded = super()._fold_page(c, views, positions, rows, memories)
        if self.folding_first and self.raced < 2:
            self.raced += 1
            self.other._apply_page(self.other.views, 3)
        return folded


def test_a_page_another_projector_applied_meanwhile_is_not_applied_twice(log, store_path):
    events = []
    for i in range(6):
        rid = f"r{i}"
        events += [triggered(rid), ev("run.started", run_id=rid), step("step.started", rid), step("step.succeeded", rid)]
        events += [ev("message.queued", message_id=f"m{i}", channel="email", recipient="u", run_id=rid, step="email-1")]
        events += [ev("message.delivered", message_id=f"m{i}")]
    ledger.append_input(log, jsonl(events))
    Projector(log.backend).rebuild(page_size=4)
    expected = snapshot(store_path)
    racing = _Racing(log.backend, Projector(log.backend))
    _clear(log, racing)
    racing.catch_up(page_size=4, fold_first=True)
    assert racing.raced == 2
    assert snapshot(store_path) == expected


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


def test_a_helper_shares_the_views_only_when_there_are_two_groups():
    views = projector_module.all_views()
    mine, theirs = split_views(views)
    assert {v.name for v in mine} | {v.name for v in theirs} == {"runs", "steps", "deliveries"}
    assert mine and theirs
    only = [v for v in views if v.name == "deliveries"]
    assert split_views(only) == (only, [])


def test_a_helper_that_fails_leaves_its_views_to_the_rebuilding_process(log, store_path, monkeypatch, caplog):
    events = [triggered(f"r{i}") for i in range(10)]
    events += [ev("message.queued", message_id=f"m{i}", channel="sms", recipient="u", run_id=f"r{i}") for i in range(10)]
    events += [ev("message.delivered", message_id=f"m{i}") for i in range(10)]
    ledger.append_input(log, jsonl(events))
    Projector(log.backend).rebuild(helper=False, page_size=4)
    expected = snapshot(store_path)
    command = helper_module._command
    # A view no helper knows: it fails before folding anything.
    monkeypatch.setattr(helper_module, "_command", lambda *a: [*command(*a), "no-such-view"])
    projector = Projector(log.backend)
    assert projector.rebuild(helper=True, page_size=4) == len(events)
    assert "rebuild helper ended with code" in caplog.text
    assert snapshot(store_path) == expected


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_pages_folded_before_the_lock_and_a_rebuild_agree_on_both_backends(backend, store_path, request):
    if backend == "postgresql" and POSTGRES_UNREACHABLE:
        pytest.skip(POSTGRES_UNREACHABLE)
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else store_path
    log = open_log(url)
    try:
        events = []
        for i in range(12):
            rid = f"r{i}"
            events += [triggered(rid), ev("run.started", run_id=rid), step("step.started", rid), step("step.succeeded", rid)]
            events += [ev("message.queued", message_id=f"m{i}", channel="email", recipient="u", run_id=rid, step="email-1")]
            events += [ev("message.delivered", message_id=f"m{i}"), ev("message.opened", message_id=f"m{i}")]
        ledger.append_input(log, jsonl(events))
        projector = Projector(log.backend)

        def rows():
            with log.backend.transaction(write=False) as c:
                out = {}
                for view in projector.views:
                    for table in view.tables:
                        c.execute(f'SELECT * FROM "{table}"')
                        out[table] = sorted(repr(tuple(r)) for r in c.fetchall())
                return out

        projector.rebuild(helper=False, page_size=13)
        expected = rows()
        # On PostgreSQL no helper can be started: the rebuild folds every view itself.
        assert projector.rebuild(helper=True, page_size=13) == len(events)
        assert rows() == expected
        _clear(log, projector)
        projector.catch_up(page_size=13, fold_first=True)
        assert rows() == expected
    finally:
        log.close()


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
def test_a_rebuild_makes_the_query_indexes_it_left_out_while_folding(log, store_path, helper):
    ledger.append_input(log, jsonl(_some_runs_and_messages()))
    projector = Projector(log.backend)
    projector.ensure_tables()
    every_index = _every_index()
    assert _indexes(store_path) == every_index
    seen_while_folding = []
    catch_up = Projector.catch_up

    def watching(self, *args, **kwargs):
        seen_while_folding.append(_indexes(store_path))
        return catch_up(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Projector, "catch_up", watching)
        projector.rebuild(helper=helper, page_size=4)
    query_indexes = set().union(*(v.query_indexes for v in projector.views))
    assert query_indexes and not query_indexes & seen_while_folding[0]
    assert _indexes(store_path) == every_index


def test_a_rebuild_stopped_before_its_indexes_leaves_them_to_the_next_projector(log, store_path, monkeypatch):
    events = _some_runs_and_messages()
    ledger.append_input(log, jsonl(events))
    Projector(log.backend).rebuild(helper=False, page_size=4)
    expected, every_index = snapshot(store_path), _indexes(store_path)

    def stopped(self, views):
        raise KeyboardInterrupt

    monkeypatch.setattr(Projector, "make_query_indexes", stopped)
    with pytest.raises(KeyboardInterrupt):
        Projector(log.backend).rebuild(helper=False, page_size=4)
    assert _indexes(store_path) < every_index
    monkeypatch.undo()
    # In this process, or in the next one to open the store.
    Projector(log.backend).catch_up()
    assert _indexes(store_path) == every_index
    assert snapshot(store_path) == expected


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
