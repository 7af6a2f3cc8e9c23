"""Runs counted ahead: by hour of creation and status (run_hours), by tenant and status
(tenant_run_counts), by status (run_status_totals), each hour's first and last run
(run_hour_seqs), by status and hours of their last event and creation (run_last_hours), kept
by the runs view's fold, upgraded in place from its versions 4 to 8; the stuck runs' index, which
holds what the Stuck count filters by; and the Stuck count as the runs of its statuses less
those heard of since."""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger, queries
from flowledger.cli import cli
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from flowledger.web import pages
from tests.conftest import ev, step, triggered
from tests.contract import _clock, _counted
from tests.histories import fresh_log, jsonl, workspaces
from tests.test_status_pages import Said

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _grouped(c: Any, sql: str) -> list[tuple]:
    c.execute(sql)
    return sorted(tuple(r) for r in c.fetchall())


@SETTINGS
@given(workspaces(), st.data())
def test_the_counters_are_the_runs_rows_counted_however_the_log_is_paged(ws, data):
    # Runs change status page after page (retried back to pending, failed, completed): the
    # counters follow each row, and no counter is left at zero.
    run_events, _ = ws
    tenants = data.draw(st.lists(st.sampled_from([None, "t1", "t2"]), min_size=len(run_events), max_size=len(run_events)))
    hours = data.draw(st.lists(st.sampled_from(["08:59:59.999999", "09:00:00", "10:30:00"]), min_size=len(run_events), max_size=len(run_events)))
    for event, tenant, at in zip(run_events, tenants, hours):
        # Any event at any of the times: a run is heard of in another hour in the same status
        # (a step), or later in an earlier one (its last event kept).
        event["occurred_at"] = f"2026-11-01T{at}Z"
        if event["type"] == "run.triggered":
            if tenant:
                event["tenant"] = tenant
            if data.draw(st.booleans()):
                event["trigger"] = {"source": "rehearsal"}
    with fresh_log() as (log, path):
        projector = Projector(log.backend)
        i = 0
        while i < len(run_events):
            n = data.draw(st.integers(1, 6))
            ledger.append_input(log, jsonl(run_events[i : i + n]))
            i += n
            projector.catch_up(page_size=data.draw(st.integers(1, 5)))
            with log.backend.transaction(write=False) as c:
                assert _grouped(c, "SELECT hour, status, n FROM run_hours") == _grouped(
                    c, "SELECT substr(created_at, 1, 13), status, COUNT(*) FROM runs GROUP BY 1, 2"
                )
                assert _grouped(c, "SELECT workflow, hour, status, n FROM workflow_run_hours") == _grouped(
                    c, "SELECT workflow, substr(created_at, 1, 13), status, COUNT(*) FROM runs GROUP BY 1, 2, 3"
                )
                assert _grouped(c, "SELECT tenant, status, n FROM tenant_run_counts") == _grouped(
                    c, "SELECT tenant, status, COUNT(*) FROM runs WHERE tenant IS NOT NULL GROUP BY 1, 2"
                )
                assert _grouped(c, "SELECT tenant, hour, status, n FROM tenant_run_hours") == _grouped(
                    c, "SELECT tenant, substr(created_at, 1, 13), status, COUNT(*) FROM runs WHERE tenant IS NOT NULL GROUP BY 1, 2, 3"
                )
                assert _grouped(c, "SELECT status, rehearsal, n FROM run_status_totals") == _grouped(
                    c, "SELECT status, trigger_source = 'rehearsal', COUNT(*) FROM runs GROUP BY 1, 2"
                )
                assert _grouped(c, "SELECT hour, first_seq, last_seq FROM run_hour_seqs") == _grouped(
                    c, "SELECT substr(created_at, 1, 13), MIN(seq), MAX(seq) FROM runs GROUP BY 1"
                )
                assert _grouped(c, "SELECT status, hour, created, n FROM run_last_hours") == _grouped(
                    c, "SELECT status, substr(updated_at, 1, 13), substr(created_at, 1, 13), COUNT(*) FROM runs GROUP BY 1, 2, 3"
                )
                assert _grouped(c, "SELECT tenant, status, hour, created, n FROM tenant_run_last_hours") == _grouped(
                    c, "SELECT tenant, status, substr(updated_at, 1, 13), substr(created_at, 1, 13), COUNT(*) FROM runs "
                       "WHERE tenant IS NOT NULL GROUP BY 1, 2, 3, 4"
                )
                assert _grouped(c, "SELECT workflow, tenant, status, n FROM workflow_tenant_run_counts") == _grouped(
                    c, "SELECT workflow, tenant, status, COUNT(*) FROM runs WHERE tenant IS NOT NULL GROUP BY 1, 2, 3"
                )
                assert _grouped(c, "SELECT workflow, status, hour, created, n FROM workflow_run_last_hours") == _grouped(
                    c, "SELECT workflow, status, substr(updated_at, 1, 13), substr(created_at, 1, 13), COUNT(*) FROM runs "
                       "GROUP BY 1, 2, 3, 4"
                )


def test_a_ranges_counts_read_its_whole_hours_counted_and_the_runs_of_its_part_hours_alone(tmp_path):
    log = open_log(str(tmp_path / "s.db"))
    try:
        ledger.append_input(log, jsonl([triggered(f"r{h}", occurred_at=f"2026-11-01T{h:02d}:20:00Z") for h in range(24)]))
        ledger.catch_up(log)
        cases = [
            # (since, until): the runs' reads (their bounds), the whole hours counted
            (("2026-11-01T03:30:00.000000Z", "2026-11-01T07:15:00.000000Z"),
             [["2026-11-01T03:30:00.000000Z", "2026-11-01T03:59:59.999999Z"],
              ["2026-11-01T07:00:00.000000Z", "2026-11-01T07:15:00.000000Z"]], ["2026-11-01T04", "2026-11-01T06"], 3),
            (("2026-11-01T03:00:00.000000Z", "2026-11-01T07:59:59.999999Z"), [], ["2026-11-01T03", "2026-11-01T07"], 5),
            ((None, "2026-11-01T01:10:00.000000Z"),
             [["2026-11-01T01:00:00.000000Z", "2026-11-01T01:10:00.000000Z"]], ["0001-01-01T00", "2026-11-01T00"], 1),
            (("2026-11-01T22:00:00.000000Z", None), [], ["2026-11-01T22", "9999-12-31T23"], 2),
        ]
        for (since, until), part_reads, whole, total in cases:
            with log.backend.transaction(write=False) as c:
                noted = Said(c)
                counts = queries.run_status_counts(noted, queries.RunFilters(starting_at=since, ending_at=until))
            assert counts["total"] == counts["pending"] == total, (since, until)
            from_hours = [p for s, p in noted.statements if "FROM \"run_hours\"" in s]
            # (The first and the last run's creation, where there are part-hours, aside.)
            from_runs = [p for s, p in noted.statements if "FROM runs" in s and "MIN(created_at)" not in s]
            assert from_hours == [whole] and from_runs == part_reads, noted.statements
        # A tenant's: its whole hours from tenant_run_hours, its part-hours' runs found by
        # their times first, then the tenant's among them (a statement each).
        with log.backend.transaction(write=False) as c:
            noted = Said(c)
            counts = queries.run_status_counts(noted, queries.RunFilters(
                tenant="t1", starting_at="2026-11-01T03:30:00.000000Z", ending_at="2026-11-01T07:15:00.000000Z"))
        assert counts["total"] == 0
        assert [p for s, p in noted.statements if "FROM \"tenant_run_hours\"" in s] == [["t1", "2026-11-01T04", "2026-11-01T06"]]
        parts = [p for s, p in noted.statements if "MATERIALIZED" in s]
        assert parts == [["2026-11-01T03:30:00.000000Z", "2026-11-01T03:59:59.999999Z", "t1"],
                         ["2026-11-01T07:00:00.000000Z", "2026-11-01T07:15:00.000000Z", "t1"]], noted.statements
        # A workflow's: its whole hours from workflow_run_hours, its part-hours' runs found by
        # their times first, then the workflow's among them.
        with log.backend.transaction(write=False) as c:
            noted = Said(c)
            counts = queries.run_status_counts(noted, queries.RunFilters(
                workflow="welcome", starting_at="2026-11-01T03:30:00.000000Z", ending_at="2026-11-01T07:15:00.000000Z"))
            assert counts["total"] == 3
            assert [p for s, p in noted.statements if "FROM \"workflow_run_hours\"" in s] == [
                ["welcome", "2026-11-01T04", "2026-11-01T06"]
            ]
            parts = [(s, p) for s, p in noted.statements if "FROM runs WHERE workflow = ?" in s]
            assert [p[-2:] for _, p in parts] == [
                ["2026-11-01T03:30:00.000000Z", "2026-11-01T03:59:59.999999Z"],
                ["2026-11-01T07:00:00.000000Z", "2026-11-01T07:15:00.000000Z"],
            ], noted.statements
            assert len(noted.statements) == 4, noted.statements  # and the first and the last run's creation
            for sql, params in parts:
                # Its runs of each status alone, sought in its index.
                c.execute("EXPLAIN QUERY PLAN " + sql, params)
                plan = " | ".join(row[3] for row in c.fetchall())
                assert ("COVERING INDEX runs_by_workflow_status_created_updated_seq_tenant "
                        "(workflow=? AND status=? AND created_at>? AND created_at<?)") in plan, plan
        # Read from the index of creation times alone: the tenant is in its entries.
        with log.backend.transaction(write=False) as c:
            for sql, params in noted.statements:
                if "MATERIALIZED" in sql:
                    c.execute("EXPLAIN QUERY PLAN " + sql, params)
                    plan = " | ".join(row[3] for row in c.fetchall())
                    assert "COVERING INDEX runs_by_created_status_seq_tenant" in plan and "SCAN runs" not in plan, plan
        # With statuses (the Stuck chip's), too: not every entry of the statuses.
        with log.backend.transaction(write=False) as c:
            noted = Said(c)
            running = queries.RunFilters(statuses=("pending", "running"), starting_at="2026-11-01T03:30:00.000000Z",
                                         ending_at="2026-11-01T07:15:00.000000Z")
            assert queries.run_status_counts(noted, running)["total"] == 3
            for sql, params in noted.statements:
                if "MATERIALIZED" in sql:
                    c.execute("EXPLAIN QUERY PLAN " + sql, params)
                    plan = " | ".join(row[3] for row in c.fetchall())
                    assert "COVERING INDEX runs_by_created_status_seq_tenant" in plan and "status=?" not in plan, plan
        assert sum("MATERIALIZED" in sql for sql, _ in noted.statements) == 2, noted.statements
        # Inside one hour there is no whole hour: the runs are counted as ever.
        with log.backend.transaction(write=False) as c:
            noted = Said(c)
            one = queries.RunFilters(starting_at="2026-11-01T05:10:00.000000Z", ending_at="2026-11-01T05:50:00.000000Z")
            assert queries.run_status_counts(noted, one)["total"] == 1
        assert [s for s, _ in noted.statements if "run_hours" in s] == [] and len(noted.statements) == 1
    finally:
        log.close()


def test_a_range_counted_with_other_filters_still_counts_its_runs(tmp_path):
    # run_hours knows nothing of workflows, tenants, contacts, errors or last events.
    log = open_log(str(tmp_path / "s.db"))
    try:
        ledger.append_input(log, jsonl([
            triggered("a", workflow="w1", tenant="t1", recipient="u1", occurred_at="2026-11-01T05:20:00Z"),
            triggered("b", workflow="w2", tenant="t2", recipient="u2", occurred_at="2026-11-01T05:30:00Z"),
        ]))
        day = {"starting_at": "2026-11-01T00:00:00.000000Z", "ending_at": "2026-11-01T23:59:59.999999Z"}
        for narrowed in ({"workflow": "w1"}, {"tenant": "t1"}, {"recipient": "u1"}, {"updated_before": "2026-11-01T05:25:00.000000Z"}):
            counts = ledger.query(log, queries.run_status_counts, queries.RunFilters(**day, **narrowed))
            assert counts["total"] == 1, narrowed
        assert ledger.query(log, queries.run_status_counts, queries.RunFilters(**day, has_errors=True))["total"] == 0
        assert ledger.query(log, queries.run_status_counts, queries.RunFilters(**day))["total"] == 2
    finally:
        log.close()


def _as_version_4(path: str, stale: bool = False) -> None:
    """Make a store's runs view as version 4 left it (``stale``: with counts by hour and
    tenant that a newer version left before an older one's rebuild made the rest again)."""
    db = sqlite3.connect(path)
    with db:
        if stale:
            db.execute("DELETE FROM run_hours")
            db.execute("INSERT INTO run_hours VALUES ('1999-01-01T00', 'running', 7)")
            db.execute("UPDATE tenant_run_counts SET n = n + 5")
            db.execute("UPDATE tenant_run_hours SET n = n + 1")
            db.execute("UPDATE run_status_totals SET n = n + 2")
            db.execute("UPDATE run_hour_seqs SET last_seq = last_seq + 3")
            db.execute("UPDATE run_last_hours SET n = n + 4")
            db.execute("UPDATE tenant_run_last_hours SET n = n + 6")
            db.execute("UPDATE workflow_run_hours SET n = n + 8")
        else:
            db.execute("DROP TABLE run_hours")
            db.execute("DROP TABLE tenant_run_counts")
            db.execute("DROP TABLE tenant_run_hours")
            db.execute("DROP TABLE run_status_totals")
            db.execute("DROP TABLE run_hour_seqs")
            db.execute("DROP TABLE run_last_hours")
            db.execute("DROP TABLE tenant_run_last_hours")
            db.execute("DROP TABLE workflow_run_hours")
        db.execute("UPDATE flowledger_meta SET value = '4' WHERE key = 'view:runs'")
    db.close()


def _counters(path: str) -> tuple[list, list, list]:
    db = sqlite3.connect(path)
    try:
        tenants = sorted(db.execute("SELECT * FROM tenant_run_counts").fetchall())
        tenants += sorted(db.execute("SELECT * FROM tenant_run_hours").fetchall())
        tenants += sorted(db.execute("SELECT * FROM tenant_run_last_hours").fetchall())
        totals = sorted(db.execute("SELECT * FROM run_status_totals").fetchall())
        totals += sorted(db.execute("SELECT * FROM run_hour_seqs").fetchall())
        totals += sorted(db.execute("SELECT * FROM run_last_hours").fetchall())
        hours = sorted(db.execute("SELECT * FROM run_hours").fetchall())
        hours += sorted(db.execute("SELECT * FROM workflow_run_hours").fetchall())
        return hours, tenants, totals
    finally:
        db.close()


def _store(path: str) -> tuple[list, list]:
    log = open_log(path)
    try:
        ledger.append_input(log, jsonl([triggered(f"r{i}", tenant=f"t{i % 3}", occurred_at=f"2026-11-01T0{i % 9}:00:00Z") for i in range(30)]
                                       + [ev("run.started", run_id=f"r{i}") for i in range(0, 30, 2)]))
        ledger.catch_up(log)
    finally:
        log.close()
    return _counters(path)


def test_counts_a_newer_version_left_behind_are_made_again_at_the_upgrade(tmp_path):
    path = str(tmp_path / "s.db")
    counted = _store(path)
    _as_version_4(path, stale=True)
    assert _counters(path) != counted
    result = CliRunner().invoke(cli, ["--store", path, "counts", "--no-catch-up", "--json"])
    assert result.exit_code == 0, result.output
    assert _counters(path) == counted


def test_an_analysts_copy_of_version_4_is_upgraded_not_refused(tmp_path):
    # Its rows are all there: nothing is folded from a log (a copy has none of its own).
    source, copy = str(tmp_path / "s.db"), str(tmp_path / "copy.db")
    counted = _store(source)
    assert CliRunner().invoke(cli, ["--store", source, "rebuild", "--into", copy]).exit_code == 0
    _as_version_4(copy)
    runner = CliRunner()
    lag = runner.invoke(cli, ["--store", copy, "views", "--json"])
    assert lag.exit_code == 0 and "upgrades them in place" in lag.output, lag.output
    result = runner.invoke(cli, ["--store", copy, "runs", "list", "--starting-at", "2026-11-01T02:00:00Z", "--json"])
    assert result.exit_code == 0, result.output
    assert _counters(copy) == counted


def test_the_stuck_count_under_a_range_a_tenant_or_a_workflow_reads_no_row_of_the_table(tmp_path):
    # Through (status, updated_at, seq) it read each stuck run's row for its creation time,
    # tenant or workflow: 120 ms for 100,000 stuck runs.
    log = open_log(str(tmp_path / "s.db"))
    try:
        ledger.append_input(log, jsonl([triggered(f"r{i}", tenant="t", workflow=f"w{i % 4}") for i in range(50)]))
        ledger.catch_up(log)
        now = datetime(2026, 11, 2, tzinfo=timezone.utc)
        week = (now - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for others in (
            queries.RunFilters(starting_at=week),
            queries.RunFilters(tenant="t"),
            queries.RunFilters(workflow="w1"),
            queries.RunFilters(workflow="w1", starting_at=week),
            queries.RunFilters(tenant="t", starting_at=week, ending_at="2026-11-01T12:00:00.000000Z"),
        ):
            stuck = pages._stuck_filters(others, now)  # noqa: SLF001  # the web's own filters
            where, params = queries._runs_where(stuck)  # noqa: SLF001
            with log.backend.transaction(write=False) as c:
                c.execute(f"EXPLAIN QUERY PLAN SELECT status, COUNT(*) FROM runs WHERE {' AND '.join(where)} GROUP BY status", params)
                plan = " | ".join(row[3] for row in c.fetchall())
                # A workflow's are in its index with their last event (fewer than all stuck).
                index = "runs_by_workflow_status_created_updated_seq_tenant" if others.workflow else "runs_by_status_updated_filtered"
                assert f"COVERING INDEX {index}" in plan, (others, plan)
            assert ledger.query(log, queries.run_status_counts, stuck)["total"] == (13 if others.workflow else 50)
    finally:
        log.close()


def test_a_contacts_counts_seek_its_runs_whatever_the_other_filters(tmp_path):
    # Without statistics SQLite's planner took the Stuck chip's index (every stuck run), a
    # tenant's or a workflow's and read each row for its recipient: 150 ms at a million runs.
    log = open_log(str(tmp_path / "s.db"))
    try:
        ledger.append_input(log, jsonl([triggered(f"r{i}", recipient=f"u{i % 7}", tenant="t", workflow="w") for i in range(40)]))
        ledger.catch_up(log)
        now = datetime(2026, 11, 2, tzinfo=timezone.utc)
        for others in (queries.RunFilters(), queries.RunFilters(tenant="t"), queries.RunFilters(workflow="w"),
                       queries.RunFilters(starting_at="2026-11-01T00:00:00.000000Z")):
            for filters in (others, pages._stuck_filters(others, now)):  # noqa: SLF001  # the web's own
                with log.backend.transaction(write=False) as c:
                    noted = Said(c)
                    counts = queries.run_status_counts_by_contact(noted, filters, "u3")
                    ((sql, params),) = noted.statements
                    c.execute("EXPLAIN QUERY PLAN " + sql, params)
                    plan = " | ".join(row[3] for row in c.fetchall())
                assert "SEARCH runs USING INDEX runs_by_recipient (recipient=?)" in plan, (filters, plan)
                assert plan.count("SEARCH runs") == 1 and "SCAN runs" not in plan, plan
                assert counts["total"] == counts["pending"] == 6, filters
    finally:
        log.close()


def _last_heard(log, runs: list[tuple[str, str]]) -> None:
    """Runs heard of last at their times, ``(status, "HH:MM:SS")`` on the 1st: pending ones
    triggered then, the others triggered at midnight and started then (and completed)."""
    _made_and_heard(log, [(status, 0, _seconds(at)) for status, at in runs])


def _seconds(clock: str) -> int:
    hours, minutes, seconds = map(int, clock.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def test_a_run_heard_of_in_a_later_hour_in_the_same_status_is_counted_in_that_hour(tmp_path):
    log = open_log(str(tmp_path / "s.db"))
    try:
        ledger.append_input(log, jsonl([triggered("r1", occurred_at="2026-11-01T08:00:00Z"),
                                        ev("run.started", run_id="r1", occurred_at="2026-11-01T09:00:00Z")]))
        ledger.catch_up(log)
        # Running still, heard of at 10:30; then an earlier event, late: its last stays 10:30.
        for at in ("10:30:00", "09:40:00"):
            ledger.append_input(log, jsonl([step("step.started", "r1", name=f"email-{at[:2]}", occurred_at=f"2026-11-01T{at}Z")]))
            ledger.catch_up(log)
            with log.backend.transaction(write=False) as c:
                assert _grouped(c, "SELECT status, hour, created, n FROM run_last_hours") == [
                    ("running", "2026-11-01T10", "2026-11-01T08", 1)
                ]
    finally:
        log.close()


def test_every_runs_stuck_count_takes_those_heard_of_since_by_the_hour_of_their_last_event(tmp_path):
    # The overview's Stuck count and the run history's under no other filter: the runs of
    # its statuses counted ahead less those heard of since its bound, those of the hours after
    # it counted ahead too, and those of the rest of its hour read (the fewer half: after the
    # bound, or before it taken from the hour's). Where the index of last events gave them
    # entry by entry: every run heard of in the last hour (33,000 in a store whose runs run
    # for a day: 14-16 ms).
    log = open_log(str(tmp_path / "s.db"))
    try:
        _last_heard(log, [("running", "02:10:00"), ("running", "02:50:00"), ("running", "04:00:00"), ("running", "06:30:00"),
                          ("pending", "02:20:00"), ("pending", "05:00:00"), ("completed", "02:55:00")])
        stuck = ("pending", "running")
        cases = [
            # (bound, stuck, the runs' reads: their bounds)
            ("2026-11-01T02:40:00.000000Z", 2, [["pending", "2026-11-01T02:40:00.000000Z", "2026-11-01T02:59:59.999999Z"],
                                                ["running", "2026-11-01T02:40:00.000000Z", "2026-11-01T02:59:59.999999Z"]]),
            ("2026-11-01T02:15:00.000000Z", 1, [["pending", "2026-11-01T02:00:00.000000Z", "2026-11-01T02:15:00.000000Z"],
                                                ["running", "2026-11-01T02:00:00.000000Z", "2026-11-01T02:15:00.000000Z"]]),
            ("2026-11-01T03:59:59.999999Z", 3, []),  # no run heard of in its hour
            ("2026-11-01T07:00:00.000000Z", 6, []),  # after every run
            ("2026-11-01T01:00:00.000000Z", 0, []),  # before every run heard of
        ]
        for bound, total, reads in cases:
            with log.backend.transaction(write=False) as c:
                noted = Said(c)
                counts = queries.run_status_counts(noted, queries.RunFilters(statuses=stuck, updated_before=bound))
                assert counts["total"] == total, (bound, counts)
                assert [p for s, p in noted.statements if "FROM runs" in s] == reads, noted.statements
                assert sum('FROM "run_last_hours"' in s for s, _ in noted.statements) == 1
                assert not any("LIMIT" in s for s, _ in noted.statements), noted.statements
                for sql, params in noted.statements:
                    if "FROM runs" in sql:
                        c.execute("EXPLAIN QUERY PLAN " + sql, params)
                        plan = " | ".join(row[3] for row in c.fetchall())
                        assert "COVERING INDEX runs_by_status_updated_filtered (status=? AND updated_at>" in plan, plan
        # Statuses never stuck, one of them of no run: their runs quiet since, as well.
        done = queries.RunFilters(statuses=("completed", "failed"), updated_before="2026-11-01T02:56:00.000000Z")
        counts = ledger.query(log, queries.run_status_counts, done)
        assert (counts["total"], counts["completed"], counts["failed"]) == (1, 1, 0), counts
    finally:
        log.close()


_SECONDS = st.integers(min_value=0, max_value=4 * 3600 - 1)


@SETTINGS
@given(runs=st.lists(st.tuples(st.sampled_from(["pending", "running", "completed"]), _SECONDS), max_size=20),
       at=_SECONDS, statuses=st.sampled_from([("pending", "running"), ("running",), ("completed", "pending"), ()]))
def test_every_runs_counts_quiet_since_any_time_are_the_runs_quiet_since(runs, at, statuses):
    with fresh_log() as (log, path):
        _last_heard(log, [(status, _clock(s)) for status, s in runs])
        bound = f"2026-11-01T{_clock(at)}.000000Z"
        counts = ledger.query(log, queries.run_status_counts, queries.RunFilters(statuses=statuses, updated_before=bound))
        every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=100)["entries"]
    quiet = [r["status"] for r in every if (not statuses or r["status"] in statuses) and r["updated_at"] <= bound]
    assert counts["total"] == len(quiet)
    assert all(counts[s] == quiet.count(s) for s in statuses or ("pending", "running", "completed")), (counts, quiet)


def _made_and_heard(log, runs: list[tuple[Any, ...]]) -> None:
    """Runs made and last heard of at their seconds of the 1st, ``(status, made, heard)``,
    ``(status, made, heard, tenant)`` or ``(status, made, heard, tenant, workflow)``: pending
    ones triggered at ``heard`` (their last event their trigger), the others triggered at
    ``made`` and started then (and completed)."""
    events = []
    for i, (status, made, heard, *named) in enumerate(runs):
        theirs = {k: v for k, v in zip(("tenant", "workflow"), named) if v}
        if status == "pending":
            events.append(triggered(f"r{i}", occurred_at=f"2026-11-01T{_clock(heard)}Z", **theirs))
            continue
        events.append(triggered(f"r{i}", occurred_at=f"2026-11-01T{_clock(made)}Z", **theirs))
        events.append(ev("run.started", run_id=f"r{i}", occurred_at=f"2026-11-01T{_clock(heard)}Z"))
        if status == "completed":
            events.append(ev("run.completed", run_id=f"r{i}", occurred_at=f"2026-11-01T{_clock(heard)}Z"))
    ledger.append_input(log, jsonl(events))
    ledger.catch_up(log)


def test_a_ranges_stuck_count_takes_those_heard_of_since_by_the_hours_of_their_last_event_and_creation(tmp_path):
    # The run history's Stuck count under a date range ("Last 30 days"): the runs of its
    # statuses in the range, counted ahead, less those heard of since its bound created in
    # the range, those of its whole hours counted by the hours of their last event and
    # creation, those of its part-hours read run by run. Through the caps it read every run
    # heard of in the last hour, entry by entry, and as many quiet (14-15 ms where a day's
    # 33,000 runs run still).
    h = 3600
    log = open_log(str(tmp_path / "s.db"))
    try:
        _made_and_heard(log, [
            ("running", 1 * h + 100, 4 * h + 2000),  # before the range, quiet
            ("running", 2 * h + 300, 4 * h + 3000),  # in its first part-hour (before 02:10), heard of
            ("running", 2 * h + 600, 4 * h + 2000),  # in its first whole hour (from 02:10 on), quiet
            ("running", 3 * h + 10, 4 * h + 100),  # in a whole hour, quiet, heard of in T's hour before T
            ("running", 3 * h + 20, 4 * h + 3000),  # same, heard of after T
            ("running", 3 * h + 30, 5 * h + 10),  # same, heard of in a later hour
            ("pending", 3 * h + 40, 3 * h + 40),  # quiet
            ("completed", 3 * h + 50, 5 * h + 20),  # not of the statuses
            ("running", 5 * h + 100, 5 * h + 200),  # in its last hour (up to 05:50), heard of
            ("running", 5 * h + 3010, 5 * h + 3500),  # in its last part-hour (after 05:50), heard of
            ("running", 5 * h + 3550, 5 * h + 3560),  # same: the last run made
        ])
        ranged = queries.RunFilters(
            statuses=("pending", "running"), updated_before="2026-11-01T04:40:00.000000Z",
            starting_at="2026-11-01T02:10:00.000000Z", ending_at="2026-11-01T05:50:00.000000Z",
        )
        with log.backend.transaction(write=False) as c:
            noted = Said(c)
            counts = queries.run_status_counts(noted, ranged)
            assert (counts["total"], counts["pending"], counts["running"]) == (3, 1, 2), counts
            assert sum('FROM "run_last_hours"' in s for s, _ in noted.statements) == 1
            assert not any("LIMIT" in s for s, _ in noted.statements), noted.statements
            # The range's part-hours worked out once, for the runs heard of and the range's counts.
            assert sum("MIN(created_at)" in s for s, _ in noted.statements) == 1, noted.statements
            # The range's part-hours are the shorter halves of their hours (02:00 to 02:10
            # and 05:50 on, taken off): its hours 02 to 05 are counted ahead, and T's hour is
            # read after T (its second half) for runs made in them alone.
            reads = [(s, p) for s, p in noted.statements if s.startswith("SELECT COUNT(*) FROM runs")]
            assert [p for _, p in reads] == [["running", "2026-11-01T04:40:00.000000Z", "2026-11-01T04:59:59.999999Z",
                                              "2026-11-01T02:00:00.000000Z", "2026-11-01T05:59:59.999999Z"]], noted.statements
            c.execute("EXPLAIN QUERY PLAN " + reads[0][0], reads[0][1])
            plan = " | ".join(row[3] for row in c.fetchall())
            assert "COVERING INDEX runs_by_status_updated_filtered (status=? AND updated_at>" in plan, plan
            # The part-hours' runs read in the index of creation times (the part first).
            parts = [(s, p) for s, p in noted.statements if "WITH part AS MATERIALIZED (SELECT tenant, status, updated_at" in s]
            assert [p[:2] for _, p in parts] == [["2026-11-01T02:00:00.000000Z", "2026-11-01T02:10:00.000000Z"],
                                                 ["2026-11-01T05:50:00.000000Z", "2026-11-01T05:59:59.999999Z"]], noted.statements
            for sql, params in parts:
                c.execute("EXPLAIN QUERY PLAN " + sql, params)
                plan = " | ".join(row[3] for row in c.fetchall())
                assert "INDEX runs_by_created_status_seq_tenant (created_at>? AND created_at<?)" in plan, plan
    finally:
        log.close()


def test_a_tenants_stuck_count_takes_those_heard_of_since_by_the_hours_of_their_last_event_and_creation(tmp_path):
    # The run history's Stuck count under a tenant filter, with a range or not: as every
    # run's and a range's, from the tenant's runs counted by the hours of their last event
    # and creation. Through the caps it read every run heard of in the last hour, of every
    # tenant, entry by entry (12 ms where a day's 33,000 run still).
    h = 3600
    log = open_log(str(tmp_path / "s.db"))
    try:
        _made_and_heard(log, [
            ("running", 1 * h + 100, 4 * h + 2000, "t"),  # quiet (before the range)
            ("running", 2 * h + 300, 4 * h + 2000, "t"),  # quiet (in the range's first part-hour, taken off)
            ("running", 3 * h + 10, 4 * h + 100, "t"),  # quiet, heard of in T's hour before T
            ("running", 3 * h + 20, 4 * h + 3000, "t"),  # heard of after T
            ("running", 3 * h + 25, 4 * h + 3000, "u"),  # another tenant's, heard of after T
            ("running", 3 * h + 30, 5 * h + 10, "t"),  # heard of in a later hour
            ("running", 3 * h + 35, 2 * h + 10, "u"),  # another tenant's, quiet
            ("pending", 3 * h + 40, 3 * h + 40, "t"),  # quiet
            ("pending", 3 * h + 45, 3 * h + 45, None),  # no tenant's, quiet
            ("completed", 3 * h + 50, 5 * h + 20, "t"),  # not of the statuses
            ("running", 5 * h + 3550, 5 * h + 3560, "t"),  # heard of (after the range)
        ])
        for others, total in _STUCK_RANGES:
            with log.backend.transaction(write=False) as c:
                noted = _counted_by_last_hours(c, {"tenant": "t"}, "tenant_run_last_hours", others, total)
                assert not any("LIMIT" in s for s, _ in noted.statements), noted.statements
    finally:
        log.close()


_STUCK_BOUND = "2026-11-01T04:40:00.000000Z"
_STUCK_RANGES = (
    ({}, 4),
    ({"starting_at": "2026-11-01T02:10:00.000000Z", "ending_at": "2026-11-01T05:50:00.000000Z"}, 2),
)
"""The Stuck count's ranges of the tenant's and the workflow's tests (none, and one with
part-hours at both ends), with the runs they count quiet since ``_STUCK_BOUND``."""


def _counted_by_last_hours(c: Any, named: dict[str, str], table: str, others: dict[str, str], total: int) -> Said:
    """The Stuck count (pending and running, quiet since ``_STUCK_BOUND``) of the runs
    ``named`` (a tenant, a workflow) within ``others``' range, checked: ``total`` runs, the
    heard-of ones from ``table`` alone, read once, and the rest of T's hour (its second
    half, of the range's hours) in the index of last events, covered. The statements run."""
    stuck = queries.RunFilters(statuses=("pending", "running"), updated_before=_STUCK_BOUND, **named, **others)
    (value,) = named.values()
    noted = Said(c)
    assert queries.run_status_counts(noted, stuck)["total"] == total, others
    ahead = [p for s, p in noted.statements if f'FROM "{table}"' in s]
    assert len(ahead) == 1 and ahead[0][2] == value, noted.statements
    assert not any("run_last_hours\"" in s and f'"{table}"' not in s for s, _ in noted.statements)
    made = ["2026-11-01T02:00:00.000000Z", "2026-11-01T05:59:59.999999Z"] if others else []
    reads = [(s, p) for s, p in noted.statements if s.startswith("SELECT COUNT(*) FROM runs")]
    assert [p for _, p in reads] == [["running", _STUCK_BOUND, "2026-11-01T04:59:59.999999Z", *made, value]], noted.statements
    c.execute("EXPLAIN QUERY PLAN " + reads[0][0], reads[0][1])
    plan = " | ".join(row[3] for row in c.fetchall())
    assert "COVERING INDEX runs_by_status_updated_filtered (status=? AND updated_at>" in plan, plan
    return noted


def test_a_workflows_stuck_count_takes_those_heard_of_since_by_the_hours_of_their_last_event_and_creation(tmp_path):
    # The run history's Stuck count under a workflow filter, with a range or not: as a
    # tenant's, from the workflow's runs counted by the hours of their last event and
    # creation, less those heard of since, its total from run_counts. In its index it read
    # every one of its runs of the chip's statuses (linear in them: 10-20 ms for a workflow
    # of most of a live store's runs).
    h = 3600
    log = open_log(str(tmp_path / "s.db"))
    try:
        _made_and_heard(log, [
            ("running", 1 * h + 100, 4 * h + 2000, None, "w"),  # quiet (before the range)
            ("running", 2 * h + 300, 4 * h + 2000, None, "w"),  # quiet (in the range's first part-hour, taken off)
            ("running", 2 * h + 400, 4 * h + 3000, None, "w"),  # heard of after T (in the first part-hour)
            ("running", 3 * h + 10, 4 * h + 100, None, "w"),  # quiet, heard of in T's hour before T
            ("running", 3 * h + 20, 4 * h + 3000, None, "w"),  # heard of after T
            ("running", 3 * h + 25, 4 * h + 3000, None, "v"),  # another workflow's, heard of after T
            ("running", 3 * h + 30, 5 * h + 10, None, "w"),  # heard of in a later hour
            ("running", 3 * h + 35, 2 * h + 10, None, "v"),  # another workflow's, quiet
            ("pending", 3 * h + 40, 3 * h + 40, "t", "w"),  # quiet
            ("pending", 3 * h + 45, 3 * h + 45, None, "v"),  # another workflow's, quiet
            ("completed", 3 * h + 50, 5 * h + 20, None, "w"),  # not of the statuses
            ("running", 5 * h + 3550, 5 * h + 3560, None, "w"),  # heard of (after the range)
        ])
        bound = _STUCK_BOUND
        for others, total in _STUCK_RANGES:
            with log.backend.transaction(write=False) as c:
                noted = _counted_by_last_hours(c, {"workflow": "w"}, "workflow_run_last_hours", others, total)
                # Its runs of the statuses from run_counts (no range) or its hours' counts and
                # the part-hours in its index; no run of it read otherwise.
                for s, p in noted.statements:
                    c.execute("EXPLAIN QUERY PLAN " + s, p)
                    plan = " | ".join(row[3] for row in c.fetchall())
                    assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), (s, plan)
                totals = [s for s, _ in noted.statements if "FROM run_counts" in s or "FROM \"workflow_run_hours\"" in s]
                assert len(totals) == 1 and ("run_counts" in totals[0]) == (not others), noted.statements
                # Each part-hour read twice: for its runs heard of since, and for its runs.
                parts = [(s, p) for s, p in noted.statements if "FROM runs WHERE workflow = ?" in s]
                assert len(parts) == (4 if others else 0), noted.statements
                assert sum("updated_at > ?" in s for s, _ in parts) == len(parts) // 2, noted.statements
        # A tenant's runs of the workflow: counted ahead (workflow_tenant_run_counts) less those
        # heard of since, read in the index of last events (covered); within a range, read in
        # an index.
        for others in ({}, {"starting_at": "2026-11-01T02:10:00.000000Z"}):
            both = queries.RunFilters(statuses=("pending", "running"), updated_before=bound, workflow="w", tenant="t", **others)
            with log.backend.transaction(write=False) as c:
                noted = Said(c)
                assert queries.run_status_counts(noted, both)["total"] == 1, others
                ahead = [s for s, _ in noted.statements if "workflow_tenant_run_counts" in s]
                assert len(ahead) == (0 if others else 1), noted.statements
                for s, p in noted.statements if not others else ():
                    c.execute("EXPLAIN QUERY PLAN " + s, p)
                    plan = " | ".join(row[3] for row in c.fetchall())
                    assert "SCAN" not in plan, (s, plan)
                    assert "FROM workflow_tenant_run_counts" in s or "COVERING INDEX runs_by_status_updated_filtered" in plan, plan
        # Nor do they know a recipient.
        for recipient, total in (("user-1", 6), ("user-2", 0)):
            theirs = queries.RunFilters(statuses=("pending", "running"), updated_before=bound, recipient=recipient)
            assert ledger.query(log, queries.run_status_counts, theirs)["total"] == total, recipient
    finally:
        log.close()


def test_a_tenants_runs_of_a_workflow_are_counted_ahead(tmp_path):
    # The run history's chips with both the workflow and the tenant filters: in either's
    # index every run of the other was read, row by row (220 ms for a tenant's 200,000 runs
    # of a workflow of a million).
    log = open_log(str(tmp_path / "s.db"))
    try:
        ledger.append_input(log, jsonl([
            triggered(f"r{i}", workflow=("w", "v")[i % 2], **({"tenant": ("t", "u", "t")[i % 3]} if i % 5 else {}))
            for i in range(30)
        ] + [ev("run.started", run_id=f"r{i}") for i in range(0, 30, 4)]))
        ledger.catch_up(log)
        every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=100)["entries"]
        with log.backend.transaction(write=False) as c:
            noted = Said(c)
            for workflow, tenant, statuses in (("w", "t", ()), ("v", "u", ("running",)), ("w", "nobody", ())):
                got = queries.run_status_counts(noted, queries.RunFilters(workflow=workflow, tenant=tenant, statuses=statuses))
                picked = [r["status"] for r in every if r["workflow"] == workflow and r["tenant"] == tenant
                          and (not statuses or r["status"] in statuses)]
                assert got == _counted(picked), (workflow, tenant)
        assert len(noted.statements) == 3 and all("FROM workflow_tenant_run_counts" in s for s, _ in noted.statements)
    finally:
        log.close()


def test_a_tenants_stuck_runs_of_a_workflow_are_those_counted_less_those_heard_of_since(tmp_path):
    # Their Stuck count: counted ahead, less those heard of after the bound (one heard of at
    # it is quiet), of the tenant and the workflow alone, read in the index of last events.
    h = 3600
    log = open_log(str(tmp_path / "s.db"))
    try:
        _made_and_heard(log, [
            ("running", 1 * h, 2 * h, "t", "v"),  # quiet
            ("running", 1 * h, 3 * h, "t", "v"),  # heard of at the bound: quiet
            ("running", 1 * h, 3 * h + 1, "t", "v"),  # heard of after it
            ("running", 1 * h, 3 * h + 1, "t", "w"),  # another workflow's, heard of after it
            ("running", 1 * h, 3 * h + 1, "u", "v"),  # another tenant's, heard of after it
            ("pending", 2 * h, 2 * h, "t", "v"),  # quiet
        ])
        stuck = queries.RunFilters(statuses=("pending", "running"), updated_before="2026-11-01T03:00:00.000000Z",
                                   workflow="v", tenant="t")
        with log.backend.transaction(write=False) as c:
            noted = Said(c)
            assert queries.run_status_counts(noted, stuck) == _counted(["pending", "running", "running"])
            read = [(s, p) for s, p in noted.statements if "FROM runs" in s]
            assert len(read) == 1, noted.statements
            c.execute("EXPLAIN QUERY PLAN " + read[0][0], read[0][1])
            plan = " | ".join(row[3] for row in c.fetchall())
            assert "COVERING INDEX runs_by_status_updated_filtered (status=? AND updated_at>?)" in plan, plan
    finally:
        log.close()


def test_a_workflows_counts_are_its_runs_counted_ahead_rehearsals_with_the_rest(tmp_path):
    # The run history's chips under a workflow filter (no range): from run_counts, both of its
    # rehearsal rows, where its index gave them entry by entry.
    log = open_log(str(tmp_path / "s.db"))
    try:
        ledger.append_input(log, jsonl([
            triggered(f"r{i}", workflow=("w", "v")[i % 2], trigger={"source": ("api", "rehearsal")[i % 3 == 0]})
            for i in range(12)
        ] + [ev("run.started", run_id=f"r{i}") for i in range(0, 12, 4)]))
        ledger.catch_up(log)
        with log.backend.transaction(write=False) as c:
            noted = Said(c)
            every = queries.run_status_counts(noted, queries.RunFilters(workflow="w"))
            some = queries.run_status_counts(noted, queries.RunFilters(workflow="w", statuses=("running",)))
        assert (every["total"], every["pending"], every["running"], some["total"], some["pending"]) == (6, 3, 3, 3, 0)
        assert len(noted.statements) == 2 and all("FROM run_counts" in s for s, _ in noted.statements), noted.statements
        assert [p for _, p in noted.statements] == [["w"], ["w", "running"]]
    finally:
        log.close()


_RANGE_ENDS = st.one_of(st.none(), st.integers(min_value=0, max_value=4 * 3600 - 1))


@SETTINGS
@given(runs=st.lists(st.tuples(st.sampled_from(["pending", "running", "completed"]), _SECONDS, _SECONDS,
                               st.sampled_from([None, "t1", "t2"]), st.sampled_from(["w1", "w2"])), max_size=20),
       at=_SECONDS, ends=st.tuples(_RANGE_ENDS, _RANGE_ENDS).filter(lambda e: None in e or e[0] <= e[1]),
       on_the_hour=st.booleans(), named=st.sampled_from([(None, None), ("t1", None), (None, "w1"), ("t1", "w1")]),
       statuses=st.sampled_from([("pending", "running"), ("running",), ("completed", "pending"), ()]))
def test_a_ranges_a_tenants_or_a_workflows_counts_quiet_since_any_time_are_their_runs_quiet_since(
    runs, at, ends, on_the_hour, named, statuses
):
    # Ranges open at either end or both (no range: every run's, or a tenant's).
    def stamp(seconds: int | None, end: str) -> str | None:
        if seconds is None:
            return None
        if on_the_hour:  # whole hours at either end
            return f"2026-11-01T{seconds // 3600:02d}{end}"
        return f"2026-11-01T{_clock(seconds)}.000000Z"

    with fresh_log() as (log, path):
        _made_and_heard(log, [(status, min(made, heard), max(made, heard), who, flow) for status, made, heard, who, flow in runs])
        bound = f"2026-11-01T{_clock(at)}.000000Z"
        tenant, workflow = named
        filters = queries.RunFilters(statuses=statuses, updated_before=bound, tenant=tenant, workflow=workflow,
                                     starting_at=stamp(ends[0], ":00:00.000000Z"), ending_at=stamp(ends[1], ":59:59.999999Z"))
        counts = ledger.query(log, queries.run_status_counts, filters)
        every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=100)["entries"]
    low, high = filters.starting_at or queries.EARLIEST, filters.ending_at or queries.LATEST
    quiet = [r["status"] for r in every
             if (not statuses or r["status"] in statuses) and r["updated_at"] <= bound and low <= r["created_at"] <= high
             and (tenant is None or r["tenant"] == tenant) and (workflow is None or r["workflow"] == workflow)]
    assert counts["total"] == len(quiet), (counts, quiet)
    assert all(counts[s] == quiet.count(s) for s in statuses or ("pending", "running", "completed")), (counts, quiet)


def test_a_ranges_counts_of_a_workflow_a_tenant_or_every_run_are_their_runs(tmp_path):
    # Whole hours from run_hours, tenant_run_hours or workflow_run_hours; part-hours at
    # either end added, or taken off their hour's count, run by run: eighty runs over four
    # hours, ranges from and to any second.
    rng = random.Random(7)
    events = []
    for i in range(80):
        status, made = rng.choice(["pending", "running", "completed", "failed"]), rng.randrange(4 * 3600)
        at = f"2026-11-01T{_clock(made)}Z"
        tenant = rng.choice([None, "t1"])
        events.append(triggered(f"r{i}", occurred_at=at, workflow=rng.choice(["w1", "w2"]), **({"tenant": tenant} if tenant else {})))
        if status != "pending":
            events.append(ev("run.started", run_id=f"r{i}", occurred_at=at))
        if status in ("completed", "failed"):
            events.append(ev(f"run.{status}", run_id=f"r{i}", occurred_at=at, **({"error": "gave up"} if status == "failed" else {})))
    log = open_log(str(tmp_path / "s.db"))
    try:
        ledger.append_input(log, jsonl(events))
        every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=100)["entries"]
        for _ in range(150):
            low, high = sorted(rng.randrange(-600, 4 * 3600 + 600) for _ in range(2))
            since = None if low < 0 else f"2026-11-01T{_clock(low)}.000000Z"
            until = None if high >= 4 * 3600 else f"2026-11-01T{_clock(high)}.000000Z"
            named = rng.choice([{}, {"workflow": "w1"}, {"tenant": "t1"}, {"workflow": "w2", "tenant": "t1"}])
            statuses = rng.choice([(), ("completed",), ("pending", "failed"), ("running", "completed", "failed")])
            filters = queries.RunFilters(statuses=statuses, starting_at=since, ending_at=until, **named)
            counts = ledger.query(log, queries.run_status_counts, filters)
            picked = [r["status"] for r in every
                      if (not statuses or r["status"] in statuses) and (since or "") <= r["created_at"] <= (until or "~")
                      and all(r[k] == v for k, v in named.items())]
            assert counts == _counted(picked), filters
    finally:
        log.close()


def test_every_workflows_runs_by_status_are_read_from_their_totals_not_a_row_a_workflow(tmp_path):
    # The overview's and the run history's counts summed run_counts' rows, a row or two a
    # workflow (14 ms at 20,000 workflows); a workflow's still come from its own rows.
    log = open_log(str(tmp_path / "s.db"))
    try:
        ledger.append_input(log, jsonl([triggered(f"r{i}", workflow=f"w{i}") for i in range(12)]))
        ledger.catch_up(log)
        with log.backend.transaction(write=False) as c:
            noted = Said(c)
            assert queries.run_totals(noted, include_rehearsals=True)["pending"] == 12
            assert queries.run_totals(noted, workflow="w3")["pending"] == 1
            assert queries.run_status_counts(noted, queries.RunFilters(statuses=("pending",)))["total"] == 12
        assert ["run_status_totals" in sql for sql, _ in noted.statements] == [True, False, True], noted.statements
    finally:
        log.close()
