"""Runs appended long after they were created (an older export imported into a live store):
the runs view sets them apart (run_late_seqs) and keeps the other runs' hours' first and last
positions too (run_hour_seqs_on_time), by a rule the fold and the upgrade from version 9
share; the pages of a range or of runs quiet since a time bound their reads by the runs in
order and read those set apart on their own, so a few late runs no longer stretch every
bound to the log's end.

Pages both ways under every filter, with late runs and with too many to read on their own,
on both backends: tests/contract.py."""

from __future__ import annotations

import sqlite3
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from flowledger import ledger, queries
from flowledger.projections import runs_view
from flowledger.projections.projector import Projector
from flowledger.projections.runs_view import _FROM_VERSION_9, LATE_HOURS, QUALIFYING_RUNS, hour_number
from tests.conftest import ev, triggered
from tests.histories import fresh_log, jsonl
from tests.test_quiet_runs_pages import _seq_of
from tests.test_range_pages_by_hour import _page, _sorts_the_range
from tests.test_status_pages import Said


def _stamp(day: int, hour: int, minute: int = 0) -> str:
    return f"2026-11-{day:02d}T{hour:02d}:{minute:02d}:00Z"


def _hours_in_order(day: int, hours: range, per_hour: int = QUALIFYING_RUNS) -> list[dict[str, Any]]:
    """``per_hour`` runs an hour, created in seq order, every third completed an hour later."""
    events = []
    for h in hours:
        for k in range(per_hour):
            run, at = f"r{day:02d}{h:02d}-{k:02d}", _stamp(day, h, k * 60 // per_hour)
            events.append(triggered(run, occurred_at=at, tenant=("t1", "t2")[k % 2]))
            if k % 3 == 0:
                events += [ev("run.started", run_id=run, occurred_at=at),
                           ev("run.completed", run_id=run, occurred_at=_stamp(day, h + 1) if h < 23 else at)]
    return events


def _rows(c: Any, sql: str) -> list[tuple]:
    got = c.execute(sql)
    return sorted(tuple(r) for r in (c if isinstance(c, sqlite3.Cursor) else got).fetchall())


def _late_ids(log) -> set[str]:
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT id FROM runs WHERE seq IN (SELECT seq FROM run_late_seqs)")
        return {r[0] for r in c.fetchall()}


def test_a_run_created_more_than_the_late_hours_before_the_newest_full_hour_is_set_apart(log):
    ledger.append_input(log, jsonl(_hours_in_order(2, range(0, 12))))
    # The newest hour holding QUALIFYING_RUNS runs is the 2nd's 11:00: runs of 05:00 or
    # later count in order, earlier ones (the day before too) are set apart; so is a run
    # of an hour no other run was created in.
    assert LATE_HOURS == 6
    ledger.append_input(log, jsonl([
        triggered("late-0459", occurred_at=_stamp(2, 4, 59)), triggered("ok-0500", occurred_at=_stamp(2, 5)),
        triggered("late-1st", occurred_at=_stamp(1, 23)), triggered("ok-1130", occurred_at=_stamp(2, 11, 30)),
    ]))
    ledger.catch_up(log)
    assert _late_ids(log) == {"late-0459", "late-1st"}
    with log.backend.transaction(write=False) as c:
        # Every run's hours as before; the others' without the late runs: the 4th hour's last
        # is its own last run's, not the late one's.
        every = dict((h, (f, l)) for h, f, l in _rows(c, "SELECT * FROM run_hour_seqs"))
        kept = dict((h, (f, l)) for h, f, l in _rows(c, "SELECT * FROM run_hour_seqs_on_time"))
        late = _seq_of(log, "late-0459")
        assert every["2026-11-02T04"][1] == late and kept["2026-11-02T04"][1] == _seq_of(log, "r0204-19")
        assert "2026-11-01T23" in every and "2026-11-01T23" not in kept
        assert kept["2026-11-02T05"][1] == _seq_of(log, "ok-0500")
        assert _rows(c, "SELECT hour FROM run_late_seqs") == [("2026-11-01T23",), ("2026-11-02T04",)]


def test_an_hour_becomes_the_newest_at_its_qualifying_run_and_a_lone_run_ahead_never_does(log):
    ledger.append_input(log, jsonl(_hours_in_order(2, range(0, 1))))
    # A run stamped a week ahead (a wrong clock): too few in its hour to be the newest, so
    # the runs after it, of the 2nd, are in order.
    ledger.append_input(log, jsonl([triggered("ahead", occurred_at=_stamp(9, 0))]))
    ledger.append_input(log, jsonl(_hours_in_order(2, range(1, 2), per_hour=QUALIFYING_RUNS - 1)))
    ledger.catch_up(log)
    assert _late_ids(log) == set()
    # The 2nd's 10:00 holds one run fewer than it needs: not yet the newest; its next run makes it.
    ledger.append_input(log, jsonl(_hours_in_order(2, range(10, 11), per_hour=QUALIFYING_RUNS - 1)))
    ledger.append_input(log, jsonl([triggered("early", occurred_at=_stamp(2, 1, 30))]))
    ledger.catch_up(log)
    assert _late_ids(log) == set()
    ledger.append_input(log, jsonl([triggered("r10-last", occurred_at=_stamp(2, 10, 59)),
                                    triggered("late", occurred_at=_stamp(2, 1, 31))]))
    ledger.catch_up(log)
    assert _late_ids(log) == {"late"}


def _expected_late(hours: list[str]) -> set[int]:
    """The rule, from scratch: the indexes of the runs (created in ``hours``, in seq order)
    whose hour lies more than LATE_HOURS before the newest hour whose QUALIFYING_RUNS-th
    run came before them."""
    seen: dict[str, int] = {}
    newest = None
    late = set()
    for i, hour in enumerate(hours):
        if newest is not None and hour_number(hour) < hour_number(newest) - LATE_HOURS:
            late.add(i)
        seen[hour] = seen.get(hour, 0) + 1
        if seen[hour] == QUALIFYING_RUNS and (newest is None or hour > newest):
            newest = hour
    return late


SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data())
def test_the_runs_set_apart_are_the_rules_however_the_log_is_paged_and_as_the_upgrade_counts_them(data):
    # Sixteen hours across a month's end (its numbering runs on by a day there), mostly in
    # order, some far behind or ahead; appended and caught up in pieces (each catch-up a
    # memory of its own: the rule's state read back from the counts by hour).
    counts = data.draw(st.lists(st.sampled_from([0, 5, 19, 20, 21, 30]), min_size=16, max_size=16))
    order = [base for base, k in enumerate(counts) for _ in range(k)]
    for at, base in sorted(data.draw(st.lists(st.tuples(st.integers(len(order) // 2, len(order)), st.integers(0, 15)), min_size=3, max_size=30)), reverse=True):
        order.insert(at, base)
    assume(order)
    hours = [f"2026-11-30T{16 + base:02d}" if base < 8 else f"2026-12-01T{base - 8:02d}" for base in order]
    events = []
    for i, h in enumerate(hours):
        events.append(triggered(f"r{i:03d}", occurred_at=f"{h}:{i % 60:02d}:00Z"))
        if i % 3 == 0:  # two statuses an hour: two rows of the counts by hour
            events.append(ev("run.started", run_id=f"r{i:03d}", occurred_at=f"{h}:{i % 60:02d}:30Z"))
    # The counts by hour read back a few rows at a time too (an hour's rows across chunks).
    with fresh_log() as (log, path), patch.object(runs_view, "_ORDER_CHUNK", data.draw(st.sampled_from([2, 3, 256]))):
        projector = Projector(log.backend)
        i = 0
        while i < len(events):
            k = data.draw(st.integers(1, 30))
            ledger.append_input(log, jsonl(events[i : i + k]))
            i += k
            projector.catch_up(page_size=data.draw(st.integers(1, 40)))
        assert _late_ids(log) == {f"r{i:03d}" for i in _expected_late(hours)}
        db = sqlite3.connect(path)
        try:
            folded = (_rows(db, "SELECT * FROM run_late_seqs"), _rows(db, "SELECT * FROM run_hour_seqs_on_time"))
            assert folded[1] == _rows(
                db, "SELECT substr(created_at, 1, 13), MIN(seq), MAX(seq) FROM runs "
                    "WHERE seq NOT IN (SELECT seq FROM run_late_seqs) GROUP BY 1"
            )
            with db:
                db.execute("DROP TABLE run_late_seqs")
                db.execute("DROP TABLE run_hour_seqs_on_time")
                for statement in _FROM_VERSION_9:
                    db.execute(statement)
            assert (_rows(db, "SELECT * FROM run_late_seqs"), _rows(db, "SELECT * FROM run_hour_seqs_on_time")) == folded
        finally:
            db.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([f"2026-11-01T{h:02d}" for h in range(0, 24, 2)]), max_size=400))
# A later hour's runs counted before an earlier one becomes the newest, and after it.
@example(["2026-11-01T20"] * 5 + ["2026-11-01T10"] * 20 + ["2026-11-01T20"] * 15 + ["2026-11-01T12"])
def test_the_folds_rule_is_the_rule(hours):
    # Any order of hours, each reaching QUALIFYING_RUNS or not, one run at a time.
    order = runs_view._Order(None, {})
    assert {i for i, hour in enumerate(hours) if runs_view._is_late(order, hour)} == _expected_late(hours)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["completed", "failed", "pending", "running"]), st.integers(1, 25)),
                max_size=40), st.integers(1, 7))
@example([(3, "completed", 10), (3, "failed", 10), (2, "running", 19)], 1)  # exactly enough, split
def test_the_rules_state_read_back_a_chunk_at_a_time_is_the_counts(rows, chunk):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE run_hours (hour TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (hour, status))")
    db.executemany("INSERT OR REPLACE INTO run_hours VALUES (?, ?, ?)", [(f"2026-11-{d + 1:02d}T00", s, n) for d, s, n in rows])
    totals: dict[str, int] = {}
    for hour, n in db.execute("SELECT hour, n FROM run_hours"):
        totals[hour] = totals.get(hour, 0) + n
    newest = max((h for h, n in totals.items() if n >= QUALIFYING_RUNS), default=None)
    with patch.object(runs_view, "_ORDER_CHUNK", chunk):
        order = runs_view._recall_order(db.cursor())
    assert order.newest == newest
    assert order.counts == {h: n for h, n in totals.items() if newest is None or h > newest}
    assert order.bar == (None if newest is None else hour_number(newest) - LATE_HOURS)


def test_hour_numbers_are_in_order_and_hours_apart_within_a_month():
    assert hour_number("2026-11-02T05") - hour_number("2026-11-01T23") == 6
    assert hour_number("2026-12-01T00") - hour_number("2026-11-30T23") == 24 + 1  # Nov's 31st, never used
    assert hour_number("2027-01-01T00") > hour_number("2026-12-31T23")


def _quiet_page(log, filters, **paging):
    ledger.query(log, queries.counts)  # the views caught up
    with log.backend.transaction(write=False) as c:
        said = Said(c)
        page = queries.list_runs(said, filters, **paging)
    return page, said.statements


def test_a_page_quiet_since_a_time_reads_on_from_the_last_run_in_order_and_the_late_runs_apart(log, monkeypatch):
    monkeypatch.setattr(queries, "PROBE_ROWS", 4)  # too few to pass the newer runs
    ledger.append_input(log, jsonl(_hours_in_order(2, range(0, 12))))
    # Late runs of the 2nd's 01:00 and 02:00, appended last: quiet since 03:00 too.
    ledger.append_input(log, jsonl([triggered(f"late{i}", occurred_at=_stamp(2, 1 + i, 10), tenant="t1") for i in range(2)]))
    # And four runs in order after them, the first read (none quiet by then): the late runs
    # lie between them and the bound.
    ledger.append_input(log, jsonl([triggered(f"new{i}", occurred_at=_stamp(2, 11, 50 + i), tenant="t1") for i in range(4)]))
    quiet = "2026-11-02T03:00:00.000000Z"
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    for filters in (queries.RunFilters(updated_before=quiet), queries.RunFilters(updated_before=quiet, tenant="t1"),
                    queries.RunFilters(updated_before=quiet, statuses=("pending",))):
        page, statements = _quiet_page(log, filters, page_size=3)
        wanted = [r["id"] for r in every if r["updated_at"] <= quiet and (filters.tenant or r["tenant"]) == r["tenant"]
                  and r["status"] in (filters.statuses or (r["status"],))]
        assert [r["id"] for r in page["entries"]] == wanted[:3] and wanted[:2] == ["late1", "late0"], filters
        # Read on from the last run in order created by then (the 2nd's 03:00:00's), not
        # from the late runs' (every run newer than them read, a row each).
        read = [params for sql, params in statements if "ORDER BY seq DESC LIMIT" in sql and "seq <= ?" in sql]
        assert read and all(_seq_of(log, "r0203-00") in params for params in read), statements
        assert any("FROM run_late_seqs" in sql for sql, _ in statements)
        # The late runs read once a page, whatever its statuses (six, a status at a time).
        assert sum("WITH late AS" in sql for sql, _ in statements) == 1, statements
        assert walk_ids(log, filters) == wanted
    # Quiet since 02:30, the hour of a late run created before then: the bound is still the
    # last run in order created by then (02:30:00's), the late run's left to its own read.
    quiet = "2026-11-02T02:30:00.000000Z"
    page, statements = _quiet_page(log, queries.RunFilters(updated_before=quiet, statuses=("pending",)), page_size=3)
    assert [r["id"] for r in page["entries"]][:2] == ["late1", "late0"]
    read = [params for sql, params in statements if "ORDER BY seq DESC LIMIT" in sql and "seq <= ?" in sql]
    assert read and all(_seq_of(log, "r0202-10") in params for params in read), statements


def walk_ids(log, filters, page_size: int = 4) -> list[str]:
    from tests.test_queries_mutations import walk

    return walk(log, queries.list_runs, filters, key="id", page_size=page_size)


def test_a_range_in_the_middle_reads_its_newest_hour_though_late_runs_were_created_in_it(log, monkeypatch):
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)
    ledger.append_input(log, jsonl(_hours_in_order(1, range(0, 12))))
    # A late run in each hour of the range: each hour's last would be the log's end, and the
    # hours read up to queries.HOURS_READ, then every run of the range sorted.
    ledger.append_input(log, jsonl([triggered(f"late{h}", occurred_at=_stamp(1, h, 59)) for h in range(2, 6)]))
    middle = queries.RunFilters(starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T04:59:59.999999Z")
    monkeypatch.setattr(queries, "HOURS_READ", 2)
    page, statements, plans, hours = _page(log, middle, page_size=5)
    assert [r["id"] for r in page["entries"]] == ["late4", "late3", "late2", "r0104-19", "r0104-18"]
    assert hours == [["2026-11-01T04:00:00.000000Z", "2026-11-01T04:59:59.999999Z"]]
    assert not _sorts_the_range(statements), statements
    monkeypatch.setattr(queries, "LATE_READ", 3)  # as many as were set apart: still read on their own
    again, statements, plans, hours = _page(log, middle, page_size=5)
    assert again["entries"] == page["entries"] and not _sorts_the_range(statements)
    # Too many set apart to read whole: read in their span of positions (the late runs
    # appended together: one), from its newest, up to the page; the same page.
    monkeypatch.setattr(queries, "LATE_READ", 2)
    again, statements, plans, hours = _page(log, middle, page_size=5)
    assert again["entries"] == page["entries"] and not _sorts_the_range(statements)
    assert not any("FROM late" in sql for sql, _ in statements)
    span = [_seq_of(log, "late2"), _seq_of(log, "late4")]
    # (PROBE_ROWS 1: a run a read, up to the span's first.)
    read = [p[-3:-1] for sql, p in statements if "seq >= ? AND seq <= ?" in sql]
    assert read == [span, [span[0], span[1] - 1], [span[0], span[0]]], statements
    monkeypatch.setattr(queries, "LATE_INTERVALS", 1)  # as many as there are: still read in them
    again, statements, plans, hours = _page(log, middle, page_size=5)
    assert again["entries"] == page["entries"] and not _sorts_the_range(statements)
    # Past LATE_INTERVALS spans: every run's hours, as before (here, past HOURS_READ hours,
    # the range sorted), the same page.
    monkeypatch.setattr(queries, "LATE_INTERVALS", 0)
    again, statements, plans, hours = _page(log, middle, page_size=5)
    assert again["entries"] == page["entries"] and _sorts_the_range(statements)
    assert not any("FROM late" in sql for sql, _ in statements)
    assert span not in [p[-3:-1] for sql, p in statements if "seq >= ? AND seq <= ?" in sql], statements


def _import(log, day: int, hours: range, per_hour: int, prefix: str) -> None:
    """Runs created ``per_hour`` an hour in ``hours`` of ``day``, appended now (set apart),
    every other one completed."""
    events = []
    for h in hours:
        for k in range(per_hour):
            run = f"{prefix}{h:02d}-{k:02d}"
            events.append(triggered(run, occurred_at=_stamp(day, h, k), tenant="t3"))
            if k % 2:
                events += [ev("run.started", run_id=run, occurred_at=_stamp(day, h, k)),
                           ev("run.completed", run_id=run, occurred_at=_stamp(day, h, k + 1))]
    ledger.append_input(log, jsonl(events))


def test_a_page_reads_only_the_late_runs_its_times_could_pick(log, monkeypatch):
    # An import of the 1st's runs (more than LATE_READ), then a few late runs of the 2nd:
    # a page of the 2nd's afternoon, or quiet since its 01:00 within it, never picks the
    # import, so it reads only the 2nd's late runs, by the runs in order's hours.
    monkeypatch.setattr(queries, "PROBE_ROWS", 2)
    monkeypatch.setattr(queries, "LATE_READ", 5)
    ledger.append_input(log, jsonl(_hours_in_order(1, range(0, 24)) + _hours_in_order(2, range(0, 18))))
    _import(log, 1, range(3, 9), 4, "imp")
    ledger.append_input(log, jsonl([triggered(f"late{h}", occurred_at=_stamp(2, h, 30)) for h in (1, 8, 9)]))
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    late = _late_ids(log)
    assert len(late) == 27 and {"late1", "late8", "late9"} <= late
    for filters, picked in (
        (queries.RunFilters(starting_at="2026-11-02T08:00:00.000000Z", ending_at="2026-11-02T09:59:59.999999Z"),
         ["late9", "late8"]),
        (queries.RunFilters(starting_at="2026-11-02T00:00:00.000000Z", updated_before="2026-11-02T01:40:00.000000Z"),
         ["late1"]),
    ):
        page, statements = _quiet_page(log, filters, page_size=4)
        wanted = [r["id"] for r in every if filters.starting_at <= r["created_at"] <= (filters.ending_at or "~")
                  and r["updated_at"] <= (filters.updated_before or "~")]
        assert [r["id"] for r in page["entries"]] == wanted[:4] and wanted[:len(picked)] == picked, filters
        late_read = [sql for sql, _ in statements if "WITH late AS" in sql]
        assert len(late_read) == 1 and "FROM run_late_seqs WHERE hour >= ? AND hour <= ?" in late_read[0], statements
        assert not any("run_hour_seqs " in sql or sql.endswith("run_hour_seqs") for sql, _ in statements), statements
        assert walk_ids(log, filters) == wanted
    # Quiet since the 1st's 02:30 within the 1st and 2nd: its runs were created by then, before
    # the import's hours and the 2nd's late runs. None set apart is read, nor their spans.
    early = queries.RunFilters(ending_at="2026-11-02T12:00:00.000000Z", updated_before="2026-11-01T02:30:00.000000Z")
    page, statements = _quiet_page(log, early, page_size=4)
    wanted = [r["id"] for r in every if r["created_at"] <= early.ending_at and r["updated_at"] <= early.updated_before]
    assert [r["id"] for r in page["entries"]] == wanted[:4] and not late & set(wanted)
    assert not any("WITH late AS" in sql or "WITH RECURSIVE" in sql for sql, _ in statements), statements
    assert any("FROM run_late_seqs" in sql for sql, _ in statements)
    assert walk_ids(log, early) == wanted
    # A page of the 1st's morning picks among the import: more than LATE_READ, read in
    # their span of positions (every hour's together), newest first, up to the page.
    morning = queries.RunFilters(starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T07:59:59.999999Z")
    page, statements = _quiet_page(log, morning, page_size=4)
    wanted = [r["id"] for r in every if morning.starting_at <= r["created_at"] <= morning.ending_at]
    assert [r["id"] for r in page["entries"]] == wanted[:4] == ["imp07-03", "imp07-02", "imp07-01", "imp07-00"]
    span = [_seq_of(log, "imp03-00"), _seq_of(log, "imp07-03")]
    read = [p[-3:-1] for sql, p in statements if "seq >= ? AND seq <= ?" in sql]
    # PROBE_ROWS 2: two runs a read, up to the page and one more (whether there is a next).
    assert read == [span, [span[0], _seq_of(log, "imp07-02") - 1], [span[0], _seq_of(log, "imp07-00") - 1]], statements
    assert not any("WITH late AS" in sql for sql, _ in statements)
    assert walk_ids(log, morning) == wanted


def test_the_late_runs_spans_of_positions_join_where_near_and_are_each_read(log, monkeypatch):
    # Two imports of the 1st's runs (of its early hours, then of its late ones) with a day of
    # runs in order between them: two spans of positions, each import's hours'; within
    # LATE_GAP of each other, one. (Imports of the same hours share their hours' spans: one,
    # read through the runs between them.)
    monkeypatch.setattr(queries, "PROBE_ROWS", 3)
    monkeypatch.setattr(queries, "LATE_READ", 2)
    monkeypatch.setattr(queries, "LATE_GAP", 100)  # fewer than the day's runs' positions
    ledger.append_input(log, jsonl(_hours_in_order(1, range(0, 24))))
    _import(log, 1, range(2, 5), 2, "a")
    ledger.append_input(log, jsonl(_hours_in_order(2, range(0, 24))))
    _import(log, 1, range(10, 13), 2, "b")
    ledger.catch_up(log)
    with log.backend.transaction(write=False) as c:
        where, params = queries._late_hours(queries._runs_sought(queries.RunFilters(ending_at="2026-11-01T23:00:00.000000Z")))
        apart = queries._late_intervals(c, where, params)
        monkeypatch.setattr(queries, "LATE_GAP", 10_000)
        together = queries._late_intervals(c, where, params)
    assert apart == ((_seq_of(log, "a02-00"), _seq_of(log, "a04-01")), (_seq_of(log, "b10-00"), _seq_of(log, "b12-01")))
    assert together == ((apart[0][0], apart[1][1]),)
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    for gap in (0, 100, 10_000):
        monkeypatch.setattr(queries, "LATE_GAP", gap)
        for filters in (queries.RunFilters(starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T10:30:00.000000Z"),
                        queries.RunFilters(starting_at="2026-11-01T03:00:00.000000Z", ending_at="2026-11-01T11:30:00.000000Z",
                                           statuses=("pending",)),
                        queries.RunFilters(updated_before="2026-11-01T03:00:00.000000Z", statuses=("pending",)),
                        queries.RunFilters(updated_before="2026-11-01T06:00:00.000000Z", statuses=("completed", "pending"))):
            wanted = [r["id"] for r in every if (filters.starting_at or "") <= r["created_at"] <= (filters.ending_at or "~")
                      and r["updated_at"] <= (filters.updated_before or "~")
                      and r["status"] in (filters.statuses or (r["status"],))]
            assert walk_ids(log, filters) == wanted, (gap, filters)


def _said_walk(log, filters, page_size: int) -> tuple[list[str], list[tuple[str, list]]]:
    """:func:`walk_ids`' runs, and every statement their pages ran."""
    statements: list[tuple[str, list]] = []

    def said_list_runs(c, *args, **paging):
        said = Said(c)
        page = queries.list_runs(said, *args, **paging)
        statements.extend(said.statements)
        return page

    from tests.test_queries_mutations import walk

    return walk(log, said_list_runs, filters, key="id", page_size=page_size), statements


_EVERY_RUNS_HOURS = ("FROM run_hour_seqs ", "FROM run_hour_seqs)")
"""How a statement reading every run's hours (late ones among them) names them."""


def test_the_bounds_past_the_first_rows_are_the_runs_in_orders_where_late_runs_are_read_apart(log, monkeypatch):
    # Late runs of the 1st's early hours, appended last, stretch those hours' last position
    # in every run's hours to the log's end. Where they are read on their own, each bound a
    # page takes past its first rows is the runs in order's: a range's window of positions,
    # a page back's first hour past its cursor, a page's last run created by an hour (read
    # by every run's hours, the same answers, reading up to every newer run).
    monkeypatch.setattr(queries, "PROBE_ROWS", 1)
    monkeypatch.setattr(queries, "HOURS_READ", 1)
    monkeypatch.setattr(queries, "_LAST_EVENTS_CHUNK", 3)
    ledger.append_input(log, jsonl(_hours_in_order(1, range(0, 12))))
    ledger.append_input(log, jsonl([triggered(f"late{h}", occurred_at=_stamp(1, h, 59), tenant="t1") for h in range(1, 5)]))
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    assert _late_ids(log) == {f"late{h}" for h in range(1, 5)}
    reads = {
        # _made_within, _last_made_by, _first_hour_past
        "window": "SELECT MIN(first_seq), MAX(last_seq) FROM run_hour_seqs_on_time WHERE hour >= ? AND hour <= ?",
        "made by": "SELECT MAX(last_seq) FROM run_hour_seqs_on_time WHERE hour <= ?",
        "first past": "SELECT MIN(hour) FROM run_hour_seqs_on_time WHERE last_seq > ?",
    }
    seen: set[str] = set()
    for filters in (
        queries.RunFilters(starting_at="2026-11-01T01:00:00.000000Z", ending_at="2026-11-01T05:59:59.999999Z"),
        queries.RunFilters(starting_at="2026-11-01T01:00:00.000000Z", ending_at="2026-11-01T05:59:59.999999Z",
                           tenant="t1"),
        queries.RunFilters(updated_before="2026-11-01T05:10:00.000000Z", statuses=("pending",)),
        queries.RunFilters(updated_before="2026-11-01T05:10:00.000000Z", statuses=("pending",), workflow="welcome"),
        queries.RunFilters(updated_before="2026-11-01T05:10:00.000000Z", statuses=("pending",), tenant="t1"),
    ):
        wanted = [r["id"] for r in every if (filters.starting_at or "") <= r["created_at"] <= (filters.ending_at or "~")
                  and r["updated_at"] <= (filters.updated_before or "~") and (filters.tenant or r["tenant"]) == r["tenant"]
                  and r["status"] in (filters.statuses or (r["status"],))]
        ids, statements = _said_walk(log, filters, page_size=4)
        assert ids == wanted and {"late1", "late4"} <= set(wanted), filters
        assert not any(name in sql for sql, _ in statements for name in _EVERY_RUNS_HOURS), (filters, statements)
        seen |= {what for what, sql in reads.items() if any(s == sql for s, _ in statements)}
    # Each bound was taken (by the runs in order's hours), on some page of them.
    assert seen == set(reads)


def test_a_page_of_any_status_reads_the_late_runs_spans_once_for_them_all(log, monkeypatch):
    # An import of the 1st's runs, more than LATE_READ: a page of any status quiet since a
    # time (each status apart) reads their span once, in seq order with no status named, up
    # to the page, not once a status; a page of some statuses reads each in its own index.
    monkeypatch.setattr(queries, "PROBE_ROWS", 2)
    monkeypatch.setattr(queries, "LATE_READ", 5)
    ledger.append_input(log, jsonl(_hours_in_order(1, range(0, 24)) + _hours_in_order(2, range(0, 6))))
    _import(log, 1, range(3, 9), 4, "imp")
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    first = _seq_of(log, "imp03-00")
    for filters, marks in (
        (queries.RunFilters(updated_before="2026-11-01T12:00:00.000000Z"), [[]]),
        (queries.RunFilters(updated_before="2026-11-01T12:00:00.000000Z", tenant="t3"), [["t3"]]),
        (queries.RunFilters(updated_before="2026-11-01T12:00:00.000000Z", statuses=("completed", "pending")),
         [["completed"], ["pending"]]),
        # (up to 07:59: its 07:00's last)
        (queries.RunFilters(starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T07:59:59.999999Z",
                            statuses=("pending", "completed")), [["pending"], ["completed"]]),
    ):
        page, statements = _quiet_page(log, filters, page_size=4)
        wanted = [r["id"] for r in every if (filters.starting_at or "") <= r["created_at"] <= (filters.ending_at or "~")
                  and r["updated_at"] <= (filters.updated_before or "~") and (filters.tenant or r["tenant"]) == r["tenant"]
                  and r["status"] in (filters.statuses or (r["status"],))]
        assert [r["id"] for r in page["entries"]] == wanted[:4] and wanted[0].startswith("imp"), filters
        # The span, newest first, two runs a read, up to the page's first five: once for
        # every status (others' among them read and passed over), or once a status named.
        reads = [p for sql, p in statements if "seq >= ? AND seq <= ?" in sql]
        assert sorted({tuple(p[:-3]) for p in reads}) == sorted(tuple(m) for m in marks), statements
        last = _seq_of(log, "imp07-03" if filters.ending_at else "imp08-03")
        for m in marks:
            mine = [p[-3:-1] for p in reads if p[:-3] == m]
            assert mine[0] == [first, last] and len(mine) <= 3, (m, statements)
        assert walk_ids(log, filters, page_size=10) == wanted
