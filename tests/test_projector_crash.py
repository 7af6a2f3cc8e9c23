"""A projector killed with SIGKILL mid-page, then restarted, ends exactly where a rebuild does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from flowledger import ledger, queries
from flowledger.projections.projector import Projector
from tests.histories import jsonl
from tests.test_views import snapshot

# The follower kills itself inside the transaction of page KILL_AT, after one view has
# written its rows and position and before the commit: always mid-page, however fast the
# machine (a kill from outside could come too late).
FOLLOWER = textwrap.dedent(
    """
    import os, signal, sys
    from flowledger.projections.projector import Projector
    from flowledger.store import open_log

    log = open_log(sys.argv[1])
    kill_at = int(sys.argv[3])
    moves = 0
    set_position = log.backend.set_position

    def set_position_then_die(c, name, position):
        global moves
        set_position(c, name, position)
        moves += 1
        if moves == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    log.backend.set_position = set_position_then_die
    Projector(log.backend).catch_up(page_size=int(sys.argv[2]))
    """
)
PAGE = 97


def busy_workspace(n_runs: int):
    t = "2026-11-01T09:00:00Z"
    for i in range(n_runs):
        r, m = f"run-{i}", f"msg-{i}"
        yield {"id": f"{r}-1", "type": "run.triggered", "occurred_at": t, "run_id": r, "workflow": f"w{i % 3}", "recipient": f"u{i % 50}"}
        yield {"id": f"{r}-2", "type": "run.started", "occurred_at": t, "run_id": r}
        yield {"id": f"{r}-3", "type": "step.started", "occurred_at": t, "run_id": r, "step": "email", "step_type": "send_email", "attempt": 1}
        yield {"id": f"{m}-1", "type": "message.queued", "occurred_at": t, "message_id": m, "channel": "email", "recipient": f"u{i % 50}", "run_id": r, "step": "email"}
        yield {"id": f"{m}-3", "type": "message.delivered", "occurred_at": "2026-11-01T09:00:02Z", "message_id": m}
        yield {"id": f"{m}-2", "type": "message.sent", "occurred_at": "2026-11-01T09:00:01Z", "message_id": m}
        yield {"id": f"{r}-4", "type": "step.succeeded", "occurred_at": t, "run_id": r, "step": "email", "step_type": "send_email", "attempt": 1}
        if i % 3 == 0:
            yield {"id": f"{m}-4", "type": "message.opened", "occurred_at": "2026-11-01T10:00:00Z", "message_id": m}
        yield {"id": f"{r}-5", "type": "run.completed", "occurred_at": t, "run_id": r}


def test_a_projector_killed_mid_page_and_restarted_equals_a_rebuild(log, store_path):
    ledger.append_input(log, jsonl(list(busy_workspace(4000))))
    head = Projector(log.backend).head()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    n_views = len(Projector(log.backend).views)
    # Page 100 of ~371: dies after the first view's position moved, before the commit.
    kill_at = 99 * n_views + 1
    proc = subprocess.run([sys.executable, "-c", FOLLOWER, store_path, str(PAGE), str(kill_at)], env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    projector = Projector(log.backend)
    positions = [projector.position(v) for v in projector.views]
    # Pages 1-99 committed; page 100 died with its transaction and left nothing behind.
    assert positions == [99 * PAGE] * n_views
    projector.catch_up()
    assert [projector.position(v) for v in projector.views] == [head] * len(projector.views)
    resumed = snapshot(store_path)
    projector.rebuild()
    assert snapshot(store_path) == resumed


def test_a_follower_outlives_a_store_busy_past_its_lock_timeout(log, store_path, caplog):
    # Another process's long write (a whole file appended in one transaction) holds the
    # lock for longer than the follower waits: the follower says so and tries again.
    import logging
    import sqlite3
    import threading
    import time

    from flowledger.store import open_log
    from tests.conftest import ev, triggered, wait_for_views, wait_until

    ledger.append_input(log, jsonl([triggered("r1")]))
    ledger.catch_up(log)  # the views' tables exist
    ledger.append_input(log, jsonl([ev("run.started", run_id="r1"), triggered("r2")]))
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    follower = open_log(store_path, lock_timeout=0.1, create=False)
    stop, failed = threading.Event(), []

    def follow():
        try:
            ledger.follow(follower, interval=0.05, should_stop=stop.is_set)
        except BaseException as e:  # noqa: BLE001  # reported below
            failed.append(e)

    worker = threading.Thread(target=follow)
    with caplog.at_level(logging.WARNING, logger="flowledger.projections.projector"):
        worker.start()
        try:
            wait_until(lambda: caplog.records or failed)
            time.sleep(0.5)  # a few more attempts, all refused
            assert worker.is_alive() and not failed, failed
            holder.rollback()
            wait_for_views(log.backend)
            assert worker.is_alive() and not failed, failed
        finally:
            stop.set()
            worker.join(30)
            holder.close()
            follower.close()
    assert not worker.is_alive() and not failed
    assert "could not catch up" in caplog.records[0].getMessage()
    assert "busy" in caplog.records[0].getMessage()
    assert ledger.query(log, queries.counts, fresh=False)["total"] == 2


def test_a_followers_wait_doubles_with_each_failure_up_to_its_limit_however_long_the_outage():
    from flowledger.projections.projector import FOLLOW_BACKOFF_LIMIT, follow_wait

    assert [follow_wait(0.5, n) for n in range(1, 5)] == [1.0, 2.0, 4.0, 8.0]
    assert follow_wait(0.5, 8) == FOLLOW_BACKOFF_LIMIT
    # A store down for days: thousands of failures in a row, still a wait, never an overflow.
    assert follow_wait(0.05, 5_000) == FOLLOW_BACKOFF_LIMIT


def test_a_follower_making_progress_between_failures_keeps_its_shortest_wait_and_reports_what_it_applied(log, monkeypatch):
    # A large catch-up over a flaky connection: every third page fails, the others commit.
    # Each failure after progress is a first failure again (the wait does not double towards
    # the limit while the follower keeps moving), and what was applied is reported.
    from flowledger.errors import ConnectionLost
    from flowledger.projections import projector as projector_module

    ledger.append_input(log, jsonl(list(busy_workspace(300))))
    head = Projector(log.backend).head()
    follower = Projector(log.backend)
    real_page, pages = follower._apply_page, []

    def flaky_page(*args, **kwargs):
        pages.append(1)
        if len(pages) % 3 == 0:
            raise ConnectionLost("the connection to the store was lost")
        return real_page(*args, **kwargs)

    monkeypatch.setattr(follower, "_apply_page", flaky_page)
    waits, applied = [], []
    monkeypatch.setattr(projector_module, "_sleep", lambda seconds, should_stop, step: waits.append(seconds))
    monkeypatch.setattr(projector_module.time, "sleep", lambda seconds: None)
    polls = []

    def done():
        polls.append(1)  # ends a follower that never reports it all, too
        return sum(applied) >= head or len(polls) > 200

    follower.follow(interval=0.5, page_size=50, should_stop=done, on_applied=applied.append)
    assert len(waits) >= 5 and set(waits) == {1.0}, waits
    assert sum(applied) == head and all(n > 0 for n in applied)
    assert [follower.position(v) for v in follower.views] == [head] * len(follower.views)


# `flowledger rebuild` in small pages, so that it is still folding when the test stops it
# (the helper takes its page size from the rebuilding process).
SLOW_REBUILD = textwrap.dedent(
    """
    import functools, sys
    from flowledger.cli import main
    from flowledger.projections.projector import Projector

    Projector.rebuild = functools.partialmethod(Projector.rebuild, page_size=10)
    sys.argv = ["flowledger", "--store", sys.argv[1], "rebuild"]
    main()
    """
)


def _staging_files(store_path):
    import glob

    return sorted(glob.glob(glob.escape(store_path) + ".rebuild-*"))


def _start_slow_rebuild(store_path):
    """A rebuild with its helper, once both are folding; returns it and the helper's pid."""
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_REBUILD, store_path], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_staging_files(store_path)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "too slow"
        time.sleep(0.01)
    (helper,) = [int(f.rsplit(".rebuild-", 1)[1].split("-")[0]) for f in _staging_files(store_path) if f.endswith("-deliveries")]
    assert helper != proc.pid
    return proc, helper


def _ended(pid, within=30.0):
    import time

    from flowledger.store.staging import _alive

    deadline = time.monotonic() + within
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_rebuild_stopped_with_sigterm_leaves_no_staging_file_and_no_helper(log, store_path):
    ledger.append_input(log, jsonl(list(busy_workspace(6000))))  # past HELPER_FROM: two processes
    Projector(log.backend).catch_up()
    before = snapshot(store_path)
    proc, helper = _start_slow_rebuild(store_path)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert _ended(helper)
    assert _staging_files(store_path) == []
    assert snapshot(store_path) == before  # the views as they were: the rebuild was given up


def test_a_rebuild_killed_outright_takes_its_helper_with_it(log, store_path):
    import sqlite3

    ledger.append_input(log, jsonl(list(busy_workspace(6000))))
    Projector(log.backend).catch_up()
    # A mark the helper's merge would undo: one delivery row taken out of the store.
    with sqlite3.connect(store_path) as raw:
        raw.execute("DELETE FROM deliveries WHERE message_id = 'msg-0'")
    proc, helper = _start_slow_rebuild(store_path)
    proc.kill()
    proc.communicate(timeout=120)
    # Told its parent ended, the helper unwinds at once: it removes its staging file and
    # never merges its view into the store for a rebuild that was given up.
    assert _ended(helper)
    assert [f for f in _staging_files(store_path) if f.endswith("-deliveries")] == []
    with sqlite3.connect(store_path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM deliveries WHERE message_id = 'msg-0'").fetchone() == (0,)
    Projector(log.backend).rebuild()  # and the killed process's own file goes with the next one
    assert _staging_files(store_path) == []


def test_a_process_ended_but_never_reaped_counts_as_ended():
    # A staging file whose owner is a zombie (ended, its parent never waited for it) is
    # left behind by no one: the next rebuild must be free to remove it.
    import time

    from flowledger.store.staging import _alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while open(f"/proc/{child.pid}/stat", "rb").read().rpartition(b")")[2].split()[0] != b"Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        assert not _alive(child.pid)
        assert _alive(os.getpid())
    finally:
        child.wait()


def test_a_follower_that_refolds_a_view_a_killed_rebuild_emptied_makes_its_query_indexes_again(postgres_url):
    # On PostgreSQL a rebuild empties its views in place, without their query indexes, and
    # makes those at its end. Killed before that, it leaves the views at position 0: a
    # follower running since before (it looked for the indexes once, at its start) folded
    # them again but never made the indexes, so every query scanned whole tables until some
    # other process opened the store.
    from flowledger.store import open_log

    log = open_log(postgres_url)
    try:
        ledger.append_input(log, jsonl(list(busy_workspace(30))))
        follower = Projector(log.backend)
        follower.catch_up()
        runs = follower.view("runs")
        indexes = set(runs.query_indexes)
        assert indexes
        with log.backend.transaction(write=True) as c:  # what the killed rebuild had done
            log.backend.lock_views(c, ["runs"])
            log.backend.empty_tables(c, runs.tables, runs.fold_ddl(), sorted(runs.query_indexes))
            log.backend.clear_position(c, "runs")
        with log.backend.transaction(write=False) as c:
            assert not indexes & log.backend.table_names(c)
        follower.catch_up()
        with log.backend.transaction(write=False) as c:
            assert indexes <= log.backend.table_names(c)
        assert follower.position(runs) == follower.head()
    finally:
        log.close()
