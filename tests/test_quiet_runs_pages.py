"""A page of runs quiet since a time (`runs list --updated-before T`, with or without a
status, a tenant, a workflow or a range) where T lies in the middle of a month of a
million runs: a run's last event is never before its trigger, so the runs it names were
created by T, and the page starts at the last position of a run created by then, where it
read a row for every newer run (217-411 ms) or sorted every entry of the index of last
events it sought them in.

The timings are benchmarks' (docs/benchmarks.md); these tests hold the bound and the
statements. Pages both ways under every filter, on both backends: tests/contract.py.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger, queries
from flowledger.store import open_log
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_queries_mutations import walk
from tests.test_status_pages import Said


def _month(n: int = 60, *, heard_after: int = 30) -> list[dict]:
    """``n`` runs created an hour apart in seq order from the 1st, each heard of last an hour
    after its trigger; every fourth left running."""
    events = []
    for i in range(n):
        run, day, hour = f"r{i:03d}", 1 + i // 24, i % 24
        at = f"2026-11-{day:02d}T{hour:02d}:10:00Z"
        events.append(triggered(run, occurred_at=at, tenant=("t1", "t2")[i % 2], workflow=("w1", "w2", "w3")[i % 3]))
        later = f"2026-11-{day:02d}T{hour:02d}:40:00Z"
        events.append(ev("run.started", run_id=run, occurred_at=later))
        if i % 4:
            events.append(ev("run.completed", run_id=run, occurred_at=later))
    return events


# The middle of _month()'s runs: r029 (created 05:10 on the 2nd) and older are quiet by then.
MIDDLE = "2026-11-02T05:50:00.000000Z"


def _said(log, filters, **paging):
    ledger.query(log, queries.counts)  # the views caught up
    with log.backend.transaction(write=False) as c:
        said = Said(c)
        page = queries.list_runs(said, filters, **paging)
        for sql, params in said.statements:
            if "MAX(seq) FROM runs" in sql:
                # The bound's own hour's runs, in the index of creation times alone.
                c.execute("EXPLAIN QUERY PLAN " + sql, params)
                plan = " | ".join(row[3] for row in c.fetchall())
                assert "COVERING INDEX runs_by_created_status_seq_tenant (created_at>? AND created_at<?)" in plan, plan
    return page, said.statements


# Pages of runs quiet since MIDDLE under each filter, and their first three runs.
QUIET_PAGES = [
    (queries.RunFilters(updated_before=MIDDLE), ["r029", "r028", "r027"]),
    (queries.RunFilters(updated_before=MIDDLE, tenant="t1"), ["r028", "r026", "r024"]),
    (queries.RunFilters(updated_before=MIDDLE, workflow="w1"), ["r027", "r024", "r021"]),
    (queries.RunFilters(updated_before=MIDDLE, statuses=("running",)), ["r028", "r024", "r020"]),
    (queries.RunFilters(updated_before=MIDDLE, starting_at="2026-11-01T00:00:00.000000Z"), ["r029", "r028", "r027"]),
]


def test_a_page_of_runs_quiet_since_the_middle_starts_at_the_last_run_created_by_then(log, monkeypatch):
    # Too few read in seq order to pass the newer runs: without the bound, the page would
    # search every run's last event.
    monkeypatch.setattr(queries, "PROBE_ROWS", 4)
    ledger.append_input(log, jsonl(_month()))
    for filters, wanted in QUIET_PAGES:
        page, statements = _said(log, filters, page_size=3)
        assert [r["id"] for r in page["entries"]] == wanted, filters
        # The newest runs read first (too few to answer), then the bound, then the runs from
        # it on: r029 is the run created last by then. With no status, a status at a time
        # (see the next test): the bound is sought once, and every status's runs read after
        # it, their first rows too, are read from it (none past it can pass).
        (bound,) = [k for k, (sql, _) in enumerate(statements) if "run_hour_seqs" in sql]
        # Between them, whether any run was set apart as late (none here: see test_late_runs).
        assert "ORDER BY seq DESC LIMIT" in statements[bound - 2][0]
        assert "FROM run_late_seqs" in statements[bound - 1][0]
        read = [(sql, params) for sql, params in statements[bound:] if "ORDER BY seq DESC LIMIT" in sql]
        assert read and all("seq <= ?" in sql and _seq_of(log, "r029") in params for sql, params in read), (filters, statements)
        # A status whose runs read from the bound fall short too is sought in its index (see
        # the next test): a workflow's completed runs here, a third of them on its pages.
        searched = [sql for sql, _ in statements if "updated_at <= ?" in sql]
        assert not searched if filters.workflow is None else all("ORDER BY created_at DESC" in sql for sql in searched), (filters, statements)
        assert page["page_info"]["after"] is not None and page["page_info"]["before"] is None
        assert walk(log, queries.list_runs, filters, key="id", page_size=4)[:3] == wanted


def test_past_the_runs_read_in_seq_order_runs_of_any_status_are_sought_a_status_at_a_time(log, monkeypatch):
    # One run read in seq order, too few for the page: the runs quiet since the time are
    # sought a status at a time in the index of last events (a workflow's: of its creation
    # times), not every run's last event read from the bound down, a row each, past every
    # newer run heard of since (25 ms at a million runs, a day's 33,000 running).
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)
    ledger.append_input(log, jsonl(_month()))
    for filters, wanted in QUIET_PAGES:
        if filters.statuses:
            continue
        page, statements = _said(log, filters, page_size=3)
        assert [r["id"] for r in page["entries"]] == wanted
        searched = [(sql, params) for sql, params in statements if "updated_at <= ?" in sql]
        index_order = "ORDER BY created_at DESC" if filters.workflow else "ORDER BY updated_at DESC"
        assert searched and all(index_order in sql for sql, _ in searched), (filters, searched)
        assert {status for _, params in searched for status in params if status in queries.STATUSES} == {"running", "completed"}


@pytest.mark.parametrize("narrow", [{"has_errors": True}, {"recipient": "u1"}, {"has_errors": True, "workflow": "w1"}])
def test_runs_of_any_status_under_filters_no_index_of_last_events_answers_are_sought_at_once(log, monkeypatch, narrow):
    # Runs with errors, a recipient: read in their own index, all statuses at once, as
    # before; a status at a time would read it once for each.
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)
    ledger.append_input(log, jsonl(_month()))
    page, statements = _said(log, queries.RunFilters(updated_before=MIDDLE, **narrow), page_size=3)
    assert not any("status" in sql.split("FROM", 1)[1] for sql, _ in statements if 'FROM "runs"' in sql), statements


def test_a_page_the_newest_runs_answer_seeks_no_bound(log):
    # Stuck runs that are their status's newest: read first, in seq order, they are the page.
    ledger.append_input(log, jsonl(_month()))
    filters = queries.RunFilters(updated_before="2026-11-03T23:59:59.999999Z", statuses=("running",))
    page, statements = _said(log, filters, page_size=3)
    assert [r["id"] for r in page["entries"]] == ["r056", "r052", "r048"]
    assert not any("run_hour_seqs" in sql for sql, _ in statements), statements


def test_quiet_before_any_run_was_created_is_no_run(log, monkeypatch):
    monkeypatch.setattr(queries, "PROBE_ROWS", 2)
    ledger.append_input(log, jsonl(_month(6)))
    filters = queries.RunFilters(updated_before="2026-10-31T23:59:59.999999Z")
    page, statements = _said(log, filters, page_size=3)
    assert page["entries"] == [] and page["page_info"]["after"] is None
    # Past the two newest of a status, read first: no run can be quiet since before every
    # trigger (the bound is 0), for each status whose first rows fell short.
    bounded = [params for sql, params in statements if "seq <= ?" in sql]
    assert bounded and all(params[-2] == 0 for params in bounded), statements


def test_a_time_not_stored_in_full_is_not_bounded_and_answers_as_before(log):
    # The CLI, the API and the web give every time to the microsecond; a library caller may
    # not, and its string is compared as given.
    ledger.append_input(log, jsonl(_month()))
    filters = queries.RunFilters(updated_before="2026-11-02T05:50")
    page, statements = _said(log, filters, page_size=3)
    assert [r["id"] for r in page["entries"]] == ["r029", "r028", "r027"]
    assert not any("run_hour_seqs" in sql for sql, _ in statements)


def _seq_of(log, run_id: str) -> int:
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT seq FROM runs WHERE id = ?", [run_id])
        return c.fetchone()[0]


_MINUTES = st.integers(min_value=0, max_value=5 * 60 - 1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(created=st.lists(_MINUTES, min_size=1, max_size=30), at=_MINUTES, within=st.booleans())
def test_the_bound_is_the_last_position_of_a_run_created_by_the_time_exactly(created, at, within):
    # Runs created at any minute of five hours in any order of seq (a late trigger of an
    # earlier time): the bound is the greatest seq among those created at or before
    # the time, neither lower (a run missed) nor higher (rows read for nothing).
    def stamp(minute: int, seconds: str = "00") -> str:
        return f"2026-11-01T{minute // 60:02d}:{minute % 60:02d}:{seconds}"

    with tempfile.TemporaryDirectory() as scratch:
        log = open_log(str(Path(scratch) / "store.db"))
        try:
            ledger.append_input(log, jsonl([triggered(f"r{i:02d}", occurred_at=stamp(m) + "Z") for i, m in enumerate(created)]))
            ledger.query(log, queries.counts)
            # The time on a run's minute, or half a minute past it.
            time = stamp(at, "30" if within else "00") + ".000000Z"
            with log.backend.transaction(write=False) as c:
                c.execute("SELECT seq, created_at FROM runs")
                rows = c.fetchall()
                bounded = queries._created_by(c, queries.Sought([], [], updated_before=time))
                ranged = queries._created_by(c, queries.Sought([], [], dates=(queries.EARLIEST, time), updated_before=queries.LATEST))
                unbounded = queries._created_by(c, queries.Sought([], [], dates=(queries.EARLIEST, time)))
        finally:
            log.close()
    wanted = max([seq for seq, created_at in rows if created_at <= time], default=0)
    assert bounded == wanted
    # The bound is the earlier of the last event's and the range's end.
    assert ranged == wanted
    # A range alone bounds no run's last event (its pages go by the hour: see
    # tests/test_range_pages_by_hour.py).
    assert unbounded is None


def _live(n: int = 80, *, heard_of_late: int = 40) -> list[dict]:
    """``n`` running runs created an hour apart in seq order from the 1st, each heard of last
    ten minutes after its trigger; the newest ``heard_of_late`` heard of since, on the 5th."""
    events = []
    for i in range(n):
        run, day, hour = f"r{i:03d}", 1 + i // 24, i % 24
        events.append(triggered(run, occurred_at=f"2026-11-{day:02d}T{hour:02d}:00:00Z"))
        late = i >= n - heard_of_late
        events.append(ev("run.started", run_id=run, occurred_at="2026-11-05T12:00:00Z" if late else f"2026-11-{day:02d}T{hour:02d}:10:00Z"))
    return events


QUIET = queries.RunFilters(statuses=("running",), updated_before="2026-11-05T00:00:00.000000Z")


def test_stuck_runs_behind_runs_still_heard_of_are_read_newest_last_event_first(log, monkeypatch):
    # A live store: its newest running runs are heard of still, and every run was created
    # before the time, so neither the runs read first nor those read from the bound answer.
    monkeypatch.setattr(queries, "PROBE_ROWS", 4)
    monkeypatch.setattr(queries, "_LAST_EVENTS_CHUNK", 4)
    ledger.append_input(log, jsonl(_live()))
    page, statements = _said(log, QUIET, page_size=3)
    assert [r["id"] for r in page["entries"]] == ["r039", "r038", "r037"]
    walked = [k for k, (sql, _) in enumerate(statements) if "ORDER BY updated_at DESC, seq DESC" in sql]
    # One chunk: its fourth run's hour holds no later run than the page's last.
    assert len(walked) == 1
    assert not any("ORDER BY seq DESC LIMIT" in sql and "updated_at <= ?" in sql for sql, _ in statements), statements
    with log.backend.transaction(write=False) as c:
        sql, params = statements[walked[0]]
        c.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = " | ".join(row[3] for row in c.fetchall())
    assert "COVERING INDEX runs_by_status_updated_filtered" in plan and "TEMP B-TREE" not in plan, plan
    # Every page of them, both ways, newest first: the stuck forty.
    assert walk(log, queries.list_runs, QUIET, key="id", page_size=3) == [f"r{i:03d}" for i in reversed(range(40))]


def test_stuck_runs_within_a_range_are_read_in_the_index_of_last_events_back_to_its_start_only(log, monkeypatch):
    # The range's runs (created since the 3rd) are all heard of since the time: none is
    # stuck. A run is last heard of no earlier than its trigger, so the index of last events
    # is read from the time back to the range's start, not on past every stuck run before it
    # (every completed run of a live store, where none of the last 24 hours' was: 68 ms at a
    # million runs).
    monkeypatch.setattr(queries, "PROBE_ROWS", 4)
    ledger.append_input(log, jsonl(_live()))
    start = "2026-11-03T00:00:00.000000Z"
    filters = dataclasses.replace(QUIET, starting_at=start)
    page, statements = _said(log, filters, page_size=3)
    assert page["entries"] == []
    (walked,) = [(sql, params) for sql, params in statements if "ORDER BY updated_at DESC, seq DESC" in sql]
    assert "updated_at >= ?" in walked[0] and walked[1].count(start) == 2, walked
    with log.backend.transaction(write=False) as c:
        c.execute("EXPLAIN QUERY PLAN " + walked[0], walked[1])
        plan = " | ".join(row[3] for row in c.fetchall())
    assert "runs_by_status_updated_filtered (status=? AND updated_at>? AND updated_at<?)" in plan, plan
    # Quiet since the 2nd, 14:30, within a range from noon: the three created from noon to 14:00.
    filters = dataclasses.replace(QUIET, starting_at="2026-11-02T12:00:00.000000Z", updated_before="2026-11-02T14:30:00.000000Z")
    assert walk(log, queries.list_runs, filters, key="id", page_size=2) == ["r038", "r037", "r036"]


def test_the_walk_reads_on_until_no_run_unread_can_be_newer(log, monkeypatch):
    # x, created first, was heard of last, after y was; y, created in the hour x was last
    # heard of, is the newer: read after x, it is still the page's.
    monkeypatch.setattr(queries, "_LAST_EVENTS_CHUNK", 1)
    ledger.append_input(log, jsonl([
        triggered("x", occurred_at="2026-11-01T01:00:00Z"),
        triggered("y", occurred_at="2026-11-01T05:10:00Z"),
        ev("run.started", run_id="x", occurred_at="2026-11-01T05:30:00Z"),
        ev("run.started", run_id="y", occurred_at="2026-11-01T05:20:00Z"),
        triggered("z", occurred_at="2026-11-01T07:00:00Z"),  # created after the time
    ]))
    ledger.query(log, queries.counts)
    sought = queries.Sought([], [], statuses=("running",), updated_before="2026-11-01T06:00:00.000000Z")
    with log.backend.transaction(write=False) as c:
        newest = queries._positions_by_last_event(c, "runs", sought, "DESC", 1)
        both = queries._positions_by_last_event(c, "runs", sought, "DESC", 2)
    assert newest == [_seq_of(log, "y")]
    assert both == [_seq_of(log, "y"), _seq_of(log, "x")]


def _back_to_the_first(log, filters, page_size: int) -> dict:
    """The cursor of a page back from the second page of ``filters``' runs to the first."""
    first = ledger.query(log, queries.list_runs, filters, page_size=page_size)
    second = ledger.query(log, queries.list_runs, filters, page_size=page_size, after=first["page_info"]["after"])
    return {"before": second["page_info"]["before"]}


WORKFLOW_QUIET = dataclasses.replace(QUIET, workflow="welcome")


def test_a_workflows_stuck_runs_behind_runs_still_heard_of_are_read_last_created_first(log, monkeypatch):
    # A workflow is not in the index of last events: its runs of a status quiet since the
    # time are read in the index of its runs by status and creation time, last created
    # first (where the index of last events was sought and every stuck run's row read for
    # its workflow: 159 ms where a day's runs run still).
    monkeypatch.setattr(queries, "PROBE_ROWS", 4)
    ledger.append_input(log, jsonl(_live()))
    page, statements = _said(log, WORKFLOW_QUIET, page_size=3)
    assert [r["id"] for r in page["entries"]] == ["r039", "r038", "r037"]
    (read,) = [(sql, params) for sql, params in statements if "ORDER BY created_at DESC" in sql]
    # Four times the page's four: the sixteenth's hour holds no later run than the page's last.
    assert read[1][-1] == 16
    assert not any("ORDER BY updated_at DESC" in sql for sql, _ in statements), statements
    assert not any("ORDER BY seq DESC LIMIT" in sql and "updated_at <= ?" in sql for sql, _ in statements), statements
    with log.backend.transaction(write=False) as c:
        c.execute("EXPLAIN QUERY PLAN " + read[0], read[1])
        plan = " | ".join(row[3] for row in c.fetchall())
    assert "COVERING INDEX runs_by_workflow_status_created_updated_seq_tenant (workflow=? AND status=? AND created_at<?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
    # A page back from the second: read first created first, from the cursor's hour.
    page, statements = _said(log, WORKFLOW_QUIET, page_size=3, **_back_to_the_first(log, WORKFLOW_QUIET, 3))
    assert [r["id"] for r in page["entries"]] == ["r039", "r038", "r037"]
    (back,) = [(sql, params) for sql, params in statements if "ORDER BY created_at ASC" in sql]
    assert "2026-11-02T13:00:00.000000Z" in back[1], back
    assert not any("ORDER BY seq ASC LIMIT" in sql and "updated_at <= ?" in sql for sql, _ in statements), statements
    # Every page of them, both ways, newest first: the stuck forty.
    assert walk(log, queries.list_runs, WORKFLOW_QUIET, key="id", page_size=3) == [f"r{i:03d}" for i in reversed(range(40))]


def test_a_tenants_stuck_runs_of_a_workflow_are_read_in_the_workflows_index_too(log, monkeypatch):
    # Its entries hold the runs' tenant: where neither index was read for them, the page
    # was the status's every entry up to the time in the index of last events, sorted (23
    # ms for a tenant's running runs of a workflow of a million).
    monkeypatch.setattr(queries, "PROBE_ROWS", 4)
    events = _live()
    for event in events:
        if event["type"] == "run.triggered":
            event["tenant"] = ("t2", "t1")[int(event["run_id"][1:]) % 2]
    ledger.append_input(log, jsonl(events))
    filters = dataclasses.replace(WORKFLOW_QUIET, tenant="t1")
    page, statements = _said(log, filters, page_size=3)
    assert [r["id"] for r in page["entries"]] == ["r039", "r037", "r035"]
    read = [(sql, params) for sql, params in statements if "ORDER BY created_at DESC" in sql]
    assert read and all("tenant = ?" in sql and "t1" in params for sql, params in read), statements
    assert not any("updated_at <= ?" in sql and "ORDER BY created_at" not in sql for sql, _ in statements), statements
    with log.backend.transaction(write=False) as c:
        c.execute("EXPLAIN QUERY PLAN " + read[0][0], read[0][1])
        plan = " | ".join(row[3] for row in c.fetchall())
    assert "COVERING INDEX runs_by_workflow_status_created_updated_seq_tenant (workflow=? AND status=? AND created_at<?)" in plan, plan
    assert walk(log, queries.list_runs, filters, key="id", page_size=3) == [f"r{i:03d}" for i in reversed(range(1, 40, 2))]
    # Of any status: a status at a time, the same way.
    anyhow = dataclasses.replace(filters, statuses=())
    page, statements = _said(log, anyhow, page_size=3)
    assert [r["id"] for r in page["entries"]] == ["r039", "r037", "r035"]
    assert not any("updated_at <= ?" in sql and "ORDER BY created_at" not in sql for sql, _ in statements), statements


@pytest.mark.parametrize("order", ["DESC", "ASC"])
def test_a_workflows_runs_are_read_on_until_no_run_unread_can_be_better(log, order):
    # Six runs created in one hour in the reverse of their seq order: the four read first
    # (last created first) are the four of least seq, and the hour's last run lies past the
    # best of them, so four times as many are read, every one.
    ledger.append_input(log, jsonl([triggered(f"r{i}", occurred_at=f"2026-11-01T01:{50 - 10 * i:02d}:00Z") for i in range(6)]
                                   + [triggered("late", occurred_at="2026-11-01T03:00:00Z")]))
    ledger.query(log, queries.counts)
    sought = queries.Sought([], [], statuses=("pending",), updated_before="2026-11-01T02:00:00.000000Z").narrowed("workflow = ?", "welcome")
    with log.backend.transaction(write=False) as c:
        said = Said(c)
        first = queries._positions_by_creation(said, "runs", sought, order, 1)  # noqa: SLF001
    newest, oldest = _seq_of(log, "r5"), _seq_of(log, "r0")
    assert first == ([newest] if order == "DESC" else [oldest])
    assert [params[-1] for sql, params in said.statements if "ORDER BY created_at" in sql] == [4, 16]
    # Without a workflow, not this index's to read (the index of last events', or the sort's).
    with log.backend.transaction(write=False) as c:
        unnamed = queries.Sought([], [], statuses=("pending",), updated_before="2026-11-01T02:00:00.000000Z")
        assert queries._positions_by_creation(c, "runs", unnamed, order, 1) is None  # noqa: SLF001
        # Nor with a recipient too: the index holds none (its runs' rows would be read for
        # it). It holds their tenant (see the test before).
        assert queries._positions_by_creation(c, "runs", sought.narrowed("recipient = ?", "u1"), order, 1) is None  # noqa: SLF001


@pytest.mark.parametrize("order", ["DESC", "ASC"])
def test_a_workflows_runs_read_up_to_their_hours_last_are_not_read_again(log, order):
    # Six runs created in one hour in their seq order: the best of the four read first is
    # the hour's last run (first, for a page back), so no unread run can better it.
    ledger.append_input(log, jsonl([triggered(f"r{i}", occurred_at=f"2026-11-01T01:{10 * i:02d}:00Z") for i in range(6)]))
    ledger.query(log, queries.counts)
    sought = queries.Sought([], [], statuses=("pending",), updated_before="2026-11-01T02:00:00.000000Z").narrowed("workflow = ?", "welcome")
    with log.backend.transaction(write=False) as c:
        said = Said(c)
        first = queries._positions_by_creation(said, "runs", sought, order, 1)  # noqa: SLF001
    assert first == [_seq_of(log, "r5" if order == "DESC" else "r0")]
    assert [params[-1] for sql, params in said.statements if "ORDER BY created_at" in sql] == [4]


@pytest.mark.parametrize("cap, read", [(15, False), (16, True)])
def test_past_the_entries_it_may_read_a_workflows_runs_are_left_to_the_sort(log, monkeypatch, cap, read):
    monkeypatch.setattr(queries, "PROBE_ROWS", 4)
    monkeypatch.setattr(queries, "LAST_EVENTS_READ", cap)  # 16 to read
    ledger.append_input(log, jsonl(_live()))
    page, statements = _said(log, WORKFLOW_QUIET, page_size=3)
    assert [r["id"] for r in page["entries"]] == ["r039", "r038", "r037"]
    assert any("ORDER BY created_at" in sql for sql, _ in statements) == read, statements
    assert any("ORDER BY seq DESC LIMIT" in sql and "updated_at <= ?" in sql for sql, _ in statements) != read, statements


def test_a_page_back_to_the_stuck_runs_first_reads_their_last_events_from_the_cursors_hour(log, monkeypatch):
    # Back from the second page (r036-r034) to the first: past r039 every run is heard of
    # still, and all were created before the time, so neither the runs read first nor the
    # bound answer. The runs past the cursor were created from r037's hour (the 2nd, 13:00)
    # on, and last heard of since: those entries alone are read, then the first taken.
    monkeypatch.setattr(queries, "PROBE_ROWS", 4)
    ledger.append_input(log, jsonl(_live()))
    page, statements = _said(log, QUIET, page_size=3, **_back_to_the_first(log, QUIET, 3))
    assert [r["id"] for r in page["entries"]] == ["r039", "r038", "r037"]
    assert page["page_info"]["before"] is None and page["page_info"]["after"] is not None
    (walked,) = [(sql, params) for sql, params in statements if "ORDER BY updated_at DESC, seq DESC" in sql]
    assert "seq > ?" in walked[0] and "updated_at >= ?" in walked[0]
    assert "2026-11-02T13:00:00.000000Z" in walked[1], walked
    assert not any("ORDER BY seq ASC LIMIT" in sql and "updated_at <= ?" in sql for sql, _ in statements), statements
    with log.backend.transaction(write=False) as c:
        c.execute("EXPLAIN QUERY PLAN " + walked[0], walked[1])
        plan = " | ".join(row[3] for row in c.fetchall())
    assert "COVERING INDEX runs_by_status_updated_filtered" in plan and "TEMP B-TREE" not in plan, plan


def test_runs_quiet_since_a_time_are_walked_oldest_first_only_from_a_cursor(log):
    # Oldest first from no cursor, every entry up to the time would be read: not walked.
    ledger.append_input(log, jsonl(_live()))
    ledger.query(log, queries.counts)
    sought = queries.Sought([], [], statuses=("running",), updated_before=QUIET.updated_before)
    with log.backend.transaction(write=False) as c:
        assert queries._positions_by_last_event(c, "runs", sought, "ASC", 2) is None
        past = sought.narrowed("seq > ?", _seq_of(log, "r036"))
        assert queries._positions_by_last_event(c, "runs", past, "ASC", 2) == [_seq_of(log, "r037"), _seq_of(log, "r038")]


@pytest.mark.parametrize("filters, size, wanted", [
    (QUIET_PAGES[0][0], 3, ["r029", "r028", "r027"]),  # the last read is the bound's own run
    (QUIET_PAGES[3][0], 2, ["r028", "r024"]),  # running: r032 read, past the bound (r029, completed)
], ids=["no status", "a status"])
def test_a_page_back_read_in_seq_order_up_to_the_bound_is_whole(log, monkeypatch, filters, size, wanted):
    # Back to the first page of runs quiet since MIDDLE: the runs read in seq order from the
    # cursor reach r029, the last run created by then; none past it can be quiet since, so
    # neither the index of last events nor a sort is sought (68 ms at a million runs).
    monkeypatch.setattr(queries, "PROBE_ROWS", 3)
    ledger.append_input(log, jsonl(_month()))
    page, statements = _said(log, filters, page_size=size, **_back_to_the_first(log, filters, size))
    assert [r["id"] for r in page["entries"]] == wanted
    assert any("run_hour_seqs" in sql for sql, _ in statements), statements
    assert not any("updated_at" in sql and "created_at, updated_at FROM" not in sql for sql, _ in statements), statements


@pytest.mark.parametrize("back", [False, True], ids=["a first page", "a page back"])
def test_past_the_entries_it_may_read_the_walk_leaves_them_to_the_sort(log, monkeypatch, back):
    monkeypatch.setattr(queries, "PROBE_ROWS", 4)
    monkeypatch.setattr(queries, "_LAST_EVENTS_CHUNK", 1)
    monkeypatch.setattr(queries, "LAST_EVENTS_READ", 2)
    ledger.append_input(log, jsonl(_live()))
    page, statements = _said(log, QUIET, page_size=3, **(_back_to_the_first(log, QUIET, 3) if back else {}))
    assert [r["id"] for r in page["entries"]] == ["r039", "r038", "r037"]
    assert len([sql for sql, _ in statements if "ORDER BY updated_at DESC" in sql]) == 2
    order = "ASC" if back else "DESC"
    assert any(f"ORDER BY seq {order} LIMIT" in sql and "updated_at <= ?" in sql for sql, _ in statements), statements
