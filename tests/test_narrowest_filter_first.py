"""A page under two filters reads the index of its narrowest: a recipient's runs in theirs
(`runs list --recipient U --tenant T --status completed`, the web's run history with the
contact box and a chip), a run's or a recipient's messages in theirs (`deliveries list --run
R --status delivered`), a channel's messages of a status in (channel, status, seq) (the web's
/deliveries with both menus). SQLite's planner, which has no statistics, took the index of
the other filter (the one narrowing by more columns, or made later) and read a row a run or
message of it for the first: every one where none matched (146 ms at a million runs, 143 ms
at 150,000 messages, linear in them).

The timings are benchmarks' (docs/benchmarks.md); these tests hold SQLite's plans of every
statement a page runs. The pages' answers under every mix of the filters, both ways, on
both backends: tests/contract.py.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3

import pytest

from flowledger import ledger, queries
from flowledger.projections.projector import all_views
from flowledger.store import open_log
from tests.conftest import ev, step, triggered
from tests.histories import jsonl
from tests.test_queries_mutations import walk
from tests.test_status_pages import _said


def _plans_of_pages(log, listing, *args, page_size: int, table: str) -> tuple[int, list[tuple[str, str]]]:
    """How many pages were read (a first page, and where it has more, the next and the page
    back from it: the cursors' statements too) and each statement's SQL and SQLite plan that
    sought the listing's rows in ``table`` (not their fetch by position)."""
    first = _said(log, listing, *args, page_size=page_size)
    pages = [first]
    if first[0]["page_info"]["after"]:
        after = _said(log, listing, *args, page_size=page_size, after=first[0]["page_info"]["after"])
        pages += [after, _said(log, listing, *args, page_size=page_size, before=after[0]["page_info"]["before"])]
    sought = [(sql, plan) for _, statements, plans in pages for (sql, _), plan in zip(statements, plans)
              if f'FROM "{table}"' in sql and not _fetched_by_position(sql)]
    return len(pages), sought


def _fetched_by_position(sql: str) -> bool:
    """Whether a statement fetches a page's rows by the positions already found (a page's,
    after its positions; not a probe's, whose positions it seeks in a subquery)."""
    return sql.startswith("SELECT * FROM") and " WHERE seq IN (?" in sql


def _messages(log) -> None:
    """Thirty messages of three runs on two channels, some delivered, one bounced."""
    events = [triggered(f"r{k}", recipient=f"u{k}") for k in range(3)]
    for i in range(30):
        message = f"m{i:02d}"
        events.append(ev("message.queued", message_id=message, channel=("email", "sms")[i % 2], recipient=f"u{i % 3}", run_id=f"r{i % 3}", step="s"))
        events.append(ev("message.sent", message_id=message))
        if i % 4:
            events.append(ev("message.delivered", message_id=message))
    events.append(ev("message.bounced", message_id="m00"))
    ledger.append_input(log, jsonl(events))


CASES = [
    # (the filters, a contact as the pages show it or None, the index every statement seeks)
    (queries.DeliveryFilters(run_id="r1", channel="email"), None, "deliveries_by_run"),
    (queries.DeliveryFilters(run_id="r1", statuses=("delivered",)), None, "deliveries_by_run"),
    (queries.DeliveryFilters(run_id="r1", channel="sms", statuses=("delivered", "sent")), None, "deliveries_by_run"),
    (queries.DeliveryFilters(run_id="r1", recipient="u1", statuses=("delivered",)), None, "deliveries_by_run"),
    (queries.DeliveryFilters(recipient="u1", channel="email"), None, "deliveries_by_recipient"),
    (queries.DeliveryFilters(recipient="u1", channel="sms", statuses=("delivered",)), None, "deliveries_by_recipient"),
    (queries.DeliveryFilters(channel="email", statuses=("delivered",)), "contacts/u1", "deliveries_by_recipient"),
    (queries.DeliveryFilters(statuses=("sent",)), "u2", "deliveries_by_recipient"),
    (queries.DeliveryFilters(channel="email", statuses=("delivered",)), None, "deliveries_by_channel_status"),
    (queries.DeliveryFilters(channel="sms", statuses=("bounced", "sent")), None, "deliveries_by_channel_status"),
    (queries.DeliveryFilters(channel="email", statuses=("read",)), None, "deliveries_by_channel_status"),
    (queries.DeliveryFilters(channel="email"), None, "deliveries_by_channel"),
    (queries.DeliveryFilters(statuses=("delivered",)), None, "deliveries_by_status"),
]


@pytest.mark.parametrize("filters, contact, index", CASES)
def test_a_page_under_two_filters_reads_the_index_of_the_narrowest(log, filters, contact, index):
    _messages(log)
    listing, args = (queries.list_deliveries, ()) if contact is None else (queries.list_deliveries_by_contact, (contact,))
    _, sought = _plans_of_pages(log, listing, filters, *args, page_size=2, table="deliveries")
    assert sought
    for sql, plan in sought:
        assert f"INDEX {index} (" in plan, (sql, plan)
        assert "SCAN deliveries" not in plan, (sql, plan)


def test_a_channel_s_page_of_a_status_it_has_none_of_reads_nothing_past_its_index(log):
    """The channel of the status's menu and the status of the channel's: none matches, and
    the page is found empty in the index of both, with no row read."""
    _messages(log)
    page, statements, plans = _said(log, queries.list_deliveries, queries.DeliveryFilters(channel="sms", statuses=("opened",)), page_size=2)
    assert page["entries"] == []
    assert [plan for plan in plans] == ["SEARCH deliveries USING COVERING INDEX deliveries_by_channel_status (channel=? AND status=?)"]


def test_a_store_made_without_the_index_gets_it_and_its_pages_are_the_same(log, store_path):
    _messages(log)
    filters = queries.DeliveryFilters(channel="sms", statuses=("delivered",))
    before = ledger.query(log, queries.list_deliveries, filters, page_size=100)["entries"]
    assert [m["message_id"] for m in before] == [f"m{i:02d}" for i in range(29, 0, -2) if i % 4]
    with sqlite3.connect(store_path) as c:
        c.execute("DROP INDEX deliveries_by_channel_status")  # as a store made by the release before
    reopened = open_log(store_path)
    try:
        assert ledger.query(reopened, queries.list_deliveries, filters, page_size=100)["entries"] == before
    finally:
        reopened.close()
    with sqlite3.connect(store_path) as c:
        names = {name for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries'")}
    assert "deliveries_by_channel_status" in names


def _runs(log) -> None:
    """Forty runs of two recipients (one in a collection too), tenants and workflows, in four
    statuses, a quarter with a failed step (errors), created an hour apart."""
    events = []
    for i in range(40):
        run, at = f"r{i:02d}", f"2026-11-01T{i % 24:02d}:00:00Z"
        recipient = ("u1", "u2", {"collection": "contacts", "id": "u1"})[i % 3]
        events.append(triggered(run, occurred_at=at, recipient=recipient, tenant=f"t{i % 2}", workflow=f"w{i % 2}"))
        if i % 4:
            events.append(ev("run.started", run_id=run, occurred_at=at))
        if i % 4 == 1:
            events.append(step("step.started", run, occurred_at=at))
            events.append(step("step.failed", run, occurred_at=at, error="bounced"))
        if i % 4 == 2:
            events.append(ev("run.completed", run_id=run, occurred_at=at))
        if i % 4 == 3:
            events.append(ev("run.failed", run_id=run, occurred_at=at, error="gave up"))
    ledger.append_input(log, jsonl(events))


RUN_CASES = [
    (queries.RunFilters(recipient="u1", tenant="t1", statuses=("failed",)), None),
    (queries.RunFilters(recipient="u1", workflow="w1", statuses=("failed", "completed")), None),
    (queries.RunFilters(recipient="u2", has_errors=True, tenant="t1"), None),
    (queries.RunFilters(recipient="u1", statuses=("running",), starting_at="2026-11-01T02:00:00Z", ending_at="2026-11-01T20:00:00Z"), None),
    (queries.RunFilters(recipient="u1", statuses=("running", "pending"), updated_before="2026-11-01T12:00:00Z"), None),
    (queries.RunFilters(tenant="t1", statuses=("running",)), "contacts/u1"),
    (queries.RunFilters(workflow="w1", statuses=("completed", "running"), has_errors=True), "u1"),
]


@pytest.mark.parametrize("filters, contact", RUN_CASES)
def test_a_recipient_s_runs_are_read_in_their_index_under_any_other_filter(log, filters, contact):
    _runs(log)
    listing, args = (queries.list_runs, ()) if contact is None else (queries.list_runs_by_contact, (contact,))
    pages, sought = _plans_of_pages(log, listing, filters, *args, page_size=1, table="runs")
    assert pages == 3  # each case's filters pick two runs or more
    assert sought
    for sql, plan in sought:
        assert "INDEX runs_by_recipient (" in plan, (sql, plan)


def test_a_recipient_s_runs_are_counted_in_their_index(log):
    _runs(log)
    filters = queries.RunFilters(recipient="u1", tenant="t1", statuses=("completed", "failed"), updated_before="2026-11-01T23:00:00Z")
    counts, statements, plans = _said(log, queries.run_status_counts, filters)
    theirs = ledger.query(log, queries.list_runs, dataclasses.replace(filters, recipient=None), page_size=100)["entries"]
    assert counts["total"] == sum(r["recipient"] in ("u1", {"collection": "contacts", "id": "u1"}) for r in theirs) == 7
    assert plans and all("INDEX runs_by_recipient (" in plan for plan in plans), list(zip(statements, plans))


def _pairs(log, *, workflows: int) -> None:
    """Sixty runs created ten minutes apart, of ``workflows`` workflows and two tenants, in
    three statuses; some heard of an hour after their trigger."""
    events = []
    for i in range(60):
        run, at = f"p{i:02d}", f"2026-11-01T{i // 6:02d}:{i % 6 * 10:02d}:00Z"
        events.append(triggered(run, occurred_at=at, tenant=f"t{i % 2}", workflow=f"w{i % workflows}"))
        if i % 3:
            events.append(ev("run.started", run_id=run, occurred_at=f"2026-11-01T{i // 6 + 1:02d}:00:00Z"))
        if i % 3 == 2:
            events.append(ev("run.completed", run_id=run, occurred_at=f"2026-11-01T{i // 6 + 1:02d}:00:00Z"))
    ledger.append_input(log, jsonl(events))


PAIR_PAGES = [
    queries.RunFilters(workflow="w1", tenant="t1"),
    queries.RunFilters(workflow="w1", tenant="t1", starting_at="2026-11-01T02:00:00Z", ending_at="2026-11-01T07:00:00Z"),
]
"""(Quiet since a time, they are sought a status at a time: tests/test_quiet_runs_pages.py.)"""


@pytest.mark.parametrize("filters", PAIR_PAGES)
def test_a_tenant_s_runs_of_a_workflow_of_any_status_are_read_in_the_workflow_s_index(log, filters):
    # Its entries hold the tenant: no row read for each of the tenant's runs (its index's)
    # to find the workflow's, nor for each of the workflow's to find the tenant's.
    _pairs(log, workflows=3)
    pages, sought = _plans_of_pages(log, queries.list_runs, filters, page_size=1, table="runs")
    assert pages == 3 and sought
    for sql, plan in sought:
        assert "INDEX runs_by_workflow_seq_created_tenant (workflow=?" in plan, (sql, plan)


@pytest.mark.parametrize("ranged", [False, True])
@pytest.mark.parametrize("mine, statuses, way", [
    (11, (), "tenant"), (12, (), "workflow"), (12, ("pending", "running"), "tenant"),
])
def test_a_small_tenant_s_runs_of_a_workflow_of_any_status_are_read_in_its_index(log, ranged, mine, statuses, way):
    # w0's sixty runs and tx's own: tx's runs, each status's times (six), fewer than w0's
    # every run (11: 66 against 71), its page is read in its index a status at a time (its
    # entries hold the workflow), where w0's every run was read to find it (65-92 ms for a
    # tenant of none of a workflow of 900,000); else (12: 72 against 72) in w0's. Of two
    # statuses, in the tenant's, whether a page lies beyond too (the planner took w0's).
    _pairs(log, workflows=1)
    events = [triggered(f"x{k:02d}", occurred_at=f"2026-11-01T{3 + k // 4:02d}:{k % 4 * 15:02d}:00Z", tenant="tx", workflow="w0") for k in range(mine)]
    ledger.append_input(log, jsonl(events))
    filters = queries.RunFilters(workflow="w0", tenant="tx", statuses=statuses,
                                 **({"starting_at": "2026-11-01T03:20:00.000000Z", "ending_at": "2026-11-01T05:00:00.000000Z"} if ranged else {}))
    pages, sought = _plans_of_pages(log, queries.list_runs, filters, page_size=2, table="runs")
    assert pages == 3 and sought
    index = "runs_by_tenant_status_seq_workflow (tenant=? AND status=?" if way == "tenant" else "runs_by_workflow_seq_created_tenant (workflow=?"
    for sql, plan in sought:
        assert f"INDEX {index}" in plan, (sql, plan)
    wanted = [f"x{k:02d}" for k in reversed(range(mine)) if not ranged or "03:20" <= f"{3 + k // 4:02d}:{k % 4 * 15:02d}" <= "05:00"]
    assert walk(log, queries.list_runs, filters, key="id", page_size=2) == wanted


@pytest.mark.parametrize("other", [{"has_errors": True}, {"recipient": "u1"}, {"tenant": None}])
def test_a_small_tenant_s_runs_of_a_workflow_under_another_filter_are_read_in_one_statement_a_page(log, other):
    # The runs with errors, or a recipient's, read in their own index in any case: named a
    # status at a time, six statements a page, not one. (A workflow's alone likewise.)
    _pairs(log, workflows=1)
    events = [triggered(f"x{k:02d}", occurred_at=f"2026-11-01T03:{k:02d}:00Z", tenant="tx", workflow="w0", recipient="u1") for k in range(5)]
    for k in range(5):
        run, at = f"x{k:02d}", f"2026-11-01T03:{k:02d}:00Z"
        events += [ev("run.started", run_id=run, occurred_at=at), step("step.started", run, occurred_at=at),
                   step("step.failed", run, occurred_at=at, error="bounced")]
    ledger.append_input(log, jsonl(events))
    filters = queries.RunFilters(**{"workflow": "w0", "tenant": "tx", **other})
    page, statements, _ = _said(log, queries.list_runs, filters, page_size=2)
    assert [e["id"] for e in page["entries"]] == ["x04", "x03"]
    assert sum('FROM "runs"' in sql and not _fetched_by_position(sql) for sql, _ in statements) == 1, statements


@pytest.mark.parametrize("quiet", [False, True])
@pytest.mark.parametrize("workflow, tenant, index", [
    ("w0", "tx", "runs_by_tenant_status_seq_workflow (tenant=? AND status=?)"),
    ("w9", "t0", "runs_by_workflow_status_created_updated_seq_tenant (workflow=? AND status=? AND created_at>? AND created_at<?)"),
])
def test_a_tenant_s_runs_of_a_workflow_are_counted_within_a_range_in_the_index_of_the_fewer(log, quiet, workflow, tenant, index):
    # Of any status, quiet since a time or not. tx's one run of the range and one more (2
    # entries, and quiet a row read: 22 against w0's 31 runs of the range); w9's runs of the
    # range (4) against t0's every run (34). Left to SQLite's planner, a count of any status
    # read w0's every run (96 ms for a tenant of none within a week, of 900,000), quiet since
    # a time every run of the statuses quiet since then.
    _pairs(log, workflows=1)
    events = [triggered("x-in", occurred_at="2026-11-01T04:05:00Z", tenant="tx", workflow="w0"),
              triggered("x-out", occurred_at="2026-11-01T09:05:00Z", tenant="tx", workflow="w0")]
    events += [triggered(f"y{k}", occurred_at=f"2026-11-01T03:{k:02d}:00Z", tenant=f"t{k % 2}", workflow="w9") for k in range(8)]
    ledger.append_input(log, jsonl(events))
    filters = queries.RunFilters(workflow=workflow, tenant=tenant, starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T06:59:59.999999Z",
                                 updated_before="2026-11-01T05:00:00.000000Z" if quiet else None)
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    theirs = [r for r in every if r["workflow"] == workflow and r["tenant"] == tenant and filters.starting_at <= r["created_at"] <= filters.ending_at
              and (not quiet or r["updated_at"] <= filters.updated_before)]
    counts, statements, plans = _said(log, queries.run_status_counts, filters)
    assert counts["total"] == len(theirs) > 0
    (plan,) = [plan for (sql, _), plan in zip(statements, plans) if "COUNT(*)" in sql]
    assert f"INDEX {index}" in plan, plan
    assert ("COVERING" in plan) == (not quiet or workflow == "w9"), plan


def test_whether_a_page_of_several_statuses_lies_beyond_is_one_statement_but_for_a_tenant_s_runs_of_a_workflow(log):
    # A status at a time only where the filters name a tenant and a workflow (see above):
    # elsewhere one statement does, as on PostgreSQL one round trip.
    _runs(log)
    filters = queries.RunFilters(statuses=("completed", "failed"))
    first, _, _ = _said(log, queries.list_runs, filters, page_size=2)
    page, statements, _ = _said(log, queries.list_runs, filters, page_size=2, after=first["page_info"]["after"])
    assert page["page_info"]["before"] and page["page_info"]["after"]
    assert [sql.split(" WHERE ")[0] for sql, _ in statements if " seq > ?" in sql] == ['SELECT 1 FROM "runs"'], statements


def test_a_tenant_s_runs_of_a_workflow_of_a_status_are_read_in_the_tenant_s_index(log):
    # (tenant, status, seq, created_at, workflow): the workflow in each entry.
    _pairs(log, workflows=3)
    _, statements, plans = _said(log, queries.list_runs, queries.RunFilters(workflow="w1", tenant="t1", statuses=("running", "completed")), page_size=2)
    read = [plan for (sql, _), plan in zip(statements, plans) if 'FROM "runs"' in sql and not _fetched_by_position(sql)]
    assert len(read) == 2 and all("INDEX runs_by_tenant_status_seq_workflow (tenant=? AND status=?)" in plan for plan in read), read


@pytest.mark.parametrize("workflows, others, of, way", [
    (3, 0, "t0", "workflow"), (1, 2, "t0", "others"), (1, 20, "t1", "tenant"), (1, 0, "t0", "by the hour"),
])
def test_a_tenant_s_runs_of_a_workflow_are_counted_within_a_range_in_the_narrower_s_index(log, workflows, others, of, way):
    # Of three workflows, w0's runs in the range's hours are fewer than t0's (counted ahead by
    # hour): its index is read, a status at a time. Of one and two runs of another, w0 holds
    # most of the range's runs: the tenant's are counted by the hour, less its runs of the
    # other workflows, sought in their index (where w0's, or the tenant's, were read entry
    # by entry). Of one and 20 of another tenant's, the tenant's (15) are fewer than the other
    # workflows' (20), and the planner's way stands (its index). Of one alone, the workflow holds every run of the
    # range: the tenant's are counted by the hour, where they were read entry by entry
    # (114-213 ms for a tenant's 200,000 of a million runs).
    _pairs(log, workflows=workflows)
    events = [triggered(f"o{k}", occurred_at=f"2026-11-01T03:{k:02d}:00Z", tenant=of, workflow="w9") for k in range(others)]
    ledger.append_input(log, jsonl(events))
    filters = queries.RunFilters(workflow="w0", tenant="t0", starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T06:59:59.999999Z")
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    theirs = [r for r in every if r["workflow"] == "w0" and r["tenant"] == "t0" and filters.starting_at <= r["created_at"] <= filters.ending_at]
    counts, statements, plans = _said(log, queries.run_status_counts, filters)
    assert counts["total"] == len(theirs) > 3
    assert {s: counts[s] for s in ("pending", "running", "completed")} == {
        s: sum(r["status"] == s for r in theirs) for s in ("pending", "running", "completed")
    }
    read = [plan for (sql, _), plan in zip(statements, plans) if "COUNT(*)" in sql]
    if way == "by the hour":
        # The range's whole hours alone: no run read.
        assert not read and any("FROM \"tenant_run_hours\"" in sql for sql, _ in statements), statements
        return
    if way == "others":
        # The tenant's whole hours, less w9's runs of the tenant, every one of them made within
        # the range: counted ahead (else sought by workflow, status and range, below).
        assert not read and any("FROM \"tenant_run_hours\"" in sql for sql, _ in statements), statements
        assert any("FROM workflow_tenant_run_counts WHERE workflow IN (?)" in sql for sql, _ in statements), statements
        return
    (plan,) = read
    if way == "workflow":
        assert "COVERING INDEX runs_by_workflow_status_created_updated_seq_tenant (workflow=? AND status=? AND created_at>? AND created_at<?)" in plan, plan
    else:
        assert "runs_by_workflow_status_created_updated_seq_tenant" not in plan, plan


def test_the_other_workflows_runs_taken_off_a_tenant_s_include_those_made_at_either_end_of_the_range(log):
    # w9's last run made as the range starts, w8's first as it ends: both within it, so both
    # are the other workflows' runs of the range taken off the tenant's.
    _pairs(log, workflows=1)
    low, high = "2026-11-01T02:00:00.000000Z", "2026-11-01T06:59:59.999999Z"
    events = [
        triggered("o-first", occurred_at="2026-11-01T01:00:00Z", tenant="t0", workflow="w9"),
        triggered("o-low", occurred_at=low, tenant="t0", workflow="w9"),
        triggered("o-high", occurred_at=high, tenant="t0", workflow="w8"),
        triggered("o-last", occurred_at="2026-11-01T09:00:00Z", tenant="t0", workflow="w8"),
    ]
    ledger.append_input(log, jsonl(events))
    filters = queries.RunFilters(workflow="w0", tenant="t0", starting_at=low, ending_at=high)
    counts, statements, _ = _said(log, queries.run_status_counts, filters)
    assert any("workflow_summaries" in sql for sql, _ in statements), statements
    assert counts["total"] == sum(i % 2 == 0 and 12 <= i < 42 for i in range(60)) == 15
    assert counts["pending"] == sum(i % 2 == 0 and 12 <= i < 42 and i % 3 == 0 for i in range(60)) == 5


def _dominant(log, *, shared: bool, small: int, late: int = 20) -> None:
    """w0's thirty runs created ten minutes apart from 02:00 (t0's every other one where
    ``shared``, else all t0's and one more of t1's), in three statuses; ``late`` more of t0's
    at 09:00, outside the tests' range, every other one failed, and forty of t1's at 11:00
    (so that w0's runs outside the range are many); and ``small`` other workflows of a run
    of t0's at 03:00 each, and one of t1's at 10:00."""
    events = []
    for i in range(30):
        run = f"d{i:02d}"
        events.append(triggered(run, occurred_at=f"2026-11-01T{2 + i // 6:02d}:{i % 6 * 10:02d}:00Z", workflow="w0",
                                tenant="t1" if shared and i % 2 else "t0"))
        if i % 3:
            events.append(ev("run.started", run_id=run, occurred_at=f"2026-11-01T{3 + i // 6:02d}:00:00Z"))
        if i % 3 == 2:
            events.append(ev("run.completed", run_id=run, occurred_at=f"2026-11-01T{3 + i // 6:02d}:00:00Z"))
    if not shared:  # (else t0 would hold every run of the range, counted by the hour)
        events.append(triggered("d-t1", occurred_at="2026-11-01T04:05:00Z", workflow="w0", tenant="t1"))
    for i in range(late):
        run, at = f"late{i:02d}", f"2026-11-01T09:{i:02d}:00Z"
        events.append(triggered(run, occurred_at=at, workflow="w0", tenant="t0"))
        if i % 2:
            events += [ev("run.started", run_id=run, occurred_at=at), ev("run.failed", run_id=run, occurred_at=at, error="gave up")]
    events += [triggered(f"beyond{k:02d}", occurred_at=f"2026-11-01T11:{k:02d}:00Z", workflow="w0", tenant="t1") for k in range(40)]
    events += [triggered(f"s{k}", occurred_at=f"2026-11-01T03:{k:02d}:00Z", tenant="t0", workflow=f"small-{k}") for k in range(small)]
    # (Each with a run after the range too, t1's: not every run of theirs within it.)
    events += [triggered(f"s{k}-later", occurred_at=f"2026-11-01T10:{k:02d}:00Z", tenant="t1", workflow=f"small-{k}") for k in range(small)]
    ledger.append_input(log, jsonl(events))


@pytest.mark.parametrize("shared, late, small, quiet, way", [
    (True, 20, 7, False, "others"), (True, 20, 8, False, "the workflow's"),
    (True, 0, 4, False, "others"), (True, 0, 5, False, "the tenant's"), (True, 0, 5, True, "others"),
    (False, 20, 7, False, "others"), (False, 20, 8, False, "the workflow's"),
    (False, 20, 7, True, "others"), (False, 20, 8, True, "the workflow's"),
])
def test_a_tenant_s_runs_of_a_workflow_holding_most_of_a_range_are_read_the_cheaper_way(log, shared, late, small, quiet, way):
    # Other workflows of a run each: their runs of the range are fewer than w0's and t0's, but
    # each costs a seek a status (three here) against the entries the other way reads: w0's
    # runs of the range, or where fewer, t0's every run of the statuses (not its failed ones).
    # Shared, w0's runs of the range are 30 and t0's every run 25 and the small ones: 7 cost 21
    # seeks against the 23 entries spared, 8 cost 24 against 22. Of none late, t0's every run
    # is 15 and the small ones: 4 cost 12 against 15 spared, 5 cost 15 against 15; quiet
    # since a time, t0's way reads a row for each of its runs of the range too (20 entries'
    # worth), and w0's way stands: 15 against 25. Where every w0 run is t0's but one, w0's
    # runs of the range are 31 (t0's every run 40 and the small ones): 7 cost 21 against 24
    # spared, 8 cost 24 against 23, quiet since a time or not (w0's entries hold the last
    # event).
    _dominant(log, shared=shared, small=small, late=late)
    filters = queries.RunFilters(workflow="w0", tenant="t0", statuses=("pending", "running", "completed"),
                                 starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T06:59:59.999999Z",
                                 updated_before="2026-11-01T23:00:00.000000Z" if quiet else None)
    counts, statements, plans = _said(log, queries.run_status_counts, filters)
    assert counts["total"] == (15 if shared else 30)
    assert counts["completed"] == sum(i % 3 == 2 and (not shared or i % 2 == 0) for i in range(30))
    (read,) = [sql for sql, _ in statements if "COUNT(*)" in sql]
    if way == "others":
        # The other workflows (named, read first) sought by workflow, status and range.
        assert f"workflow IN ({','.join('?' * small)})" in read, statements
        (plan,) = [plan for (sql, _), plan in zip(statements, plans) if sql == read]
        assert "COVERING INDEX runs_by_workflow_status_created_updated_seq_tenant (workflow=? AND status=? AND created_at>? AND created_at<?)" in plan, plan
    else:
        assert "workflow = ?" in read and "tenant = ?" in read and "workflow IN" not in read, statements
        (plan,) = [plan for (sql, _), plan in zip(statements, plans) if sql == read]
        index = "runs_by_workflow_status_created_updated_seq_tenant (workflow=? AND status=?" if way == "the workflow's" else "runs_by_tenant_status_seq_workflow (tenant=? AND status=?)"
        assert f"COVERING INDEX {index}" in plan, plan


@pytest.mark.parametrize("beyond, quiet, way", [
    (6, None, "outside"), (7, None, "the workflow's"),
    (3, "2026-11-01T08:30:00.000000Z", "outside"), (4, "2026-11-01T08:30:00.000000Z", "the workflow's"),
    (3, "2026-11-01T08:30:00Z", "the workflow's"),
])
def test_a_tenant_s_runs_of_a_workflow_are_counted_less_those_outside_the_range_where_fewer(log, beyond, quiet, way):
    # w0's and w9's twenty runs each within the range, t0's and t1's in turn, ``beyond`` of
    # w0's (t1's) at 08:00 and one (t0's) at 01:00: where w0's runs outside the range and a
    # seek a status either side of it (12) are fewer than the other way's entries (w0's runs
    # of the range, 20, fewer than t0's every run, 21), and quiet since a time, with every
    # run heard of since the time's hour (those ``beyond``), t0's runs of w0 are its every
    # one (counted ahead; quiet, less those heard of since) less those created outside the
    # range, sought in w0's index: 6 and the one, 19 against 20; 7, 20; quiet, 3, 19; 4, 21.
    # (A time not stored in full: its runs heard of since are not counted ahead by the hour.)
    events = []
    for k in range(40):
        events.append(triggered(f"in{k:02d}", occurred_at=f"2026-11-01T{2 + k // 8:02d}:{k % 8 * 7:02d}:00Z", workflow=f"w{k % 2 * 9}", tenant=f"t{k // 2 % 2}"))
    events += [triggered(f"out{k}", occurred_at=f"2026-11-01T08:{k:02d}:00Z", workflow="w0", tenant="t1") for k in range(beyond)]
    events += [triggered("t0-out", occurred_at="2026-11-01T01:00:00Z", workflow="w0", tenant="t0")]
    ledger.append_input(log, jsonl(events))
    filters = queries.RunFilters(workflow="w0", tenant="t0", starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T06:59:59.999999Z",
                                 updated_before=quiet)
    counts, statements, plans = _said(log, queries.run_status_counts, filters)
    assert counts["total"] == counts["pending"] == 10
    read = [(sql, plan) for (sql, _), plan in zip(statements, plans) if "COUNT(*)" in sql]
    if way == "outside":
        assert [sql.split(" GROUP BY")[0].rsplit(" AND ", 1)[1] for sql, _ in read if "INDEXED BY runs_by_workflow" in sql] == ["created_at < ?", "created_at > ?"], read
        assert all("COVERING INDEX runs_by_workflow_status_created_updated_seq_tenant (workflow=? AND status=? AND created_at" in plan for _, plan in read[-2:]), read
        assert any("workflow_tenant_run_counts" in sql for sql, _ in statements), statements
        return
    (_, plan), = read
    index = "runs_by_workflow_status_created_updated_seq_tenant" if way == "the workflow's" else "runs_by_tenant_status_seq_workflow"
    assert f"COVERING INDEX {index}" in plan, plan


def test_a_tenant_s_runs_of_a_workflow_are_counted_by_the_hour_where_the_tenant_holds_every_run(log):
    # A store of one tenant: the workflow's runs of the range are counted ahead by the hour.
    events = [triggered(f"q{i:02d}", occurred_at=f"2026-11-01T{i // 4:02d}:{i % 4 * 15:02d}:00Z", tenant="t0", workflow=f"w{i % 3}") for i in range(40)]
    ledger.append_input(log, jsonl(events))
    filters = queries.RunFilters(workflow="w1", tenant="t0", starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T06:59:59.999999Z")
    counts, statements, _ = _said(log, queries.run_status_counts, filters)
    assert counts["total"] == sum(i % 3 == 1 and 8 <= i < 28 for i in range(40)) == 6
    assert not any("COUNT(*)" in sql for sql, _ in statements)
    assert any("FROM \"workflow_run_hours\"" in sql for sql, _ in statements), statements


def test_indexes_an_older_release_made_again_are_dropped_at_the_next_open(log, store_path):
    # No view version changed, so an older release may open the store after this one and
    # make its indexes again beside the ones that replaced them: this one drops them at its
    # next open by a writer, where it saw its own indexes there and did nothing.
    _pairs(log, workflows=3)
    ledger.query(log, queries.counts)
    with sqlite3.connect(store_path) as c:
        c.execute("CREATE INDEX runs_by_tenant_status_seq ON runs (tenant, status, seq, created_at)")
        c.execute("CREATE INDEX runs_by_workflow_seq_created ON runs (workflow, seq, created_at)")
    reopened = open_log(store_path)
    try:
        assert ledger.query(reopened, queries.run_status_counts, queries.RunFilters(tenant="t1"))["total"] == 30
    finally:
        reopened.close()
    with sqlite3.connect(store_path) as c:
        names = {name for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert not names & {"runs_by_tenant_status_seq", "runs_by_workflow_seq_created"}, names
    assert {"runs_by_tenant_status_seq_workflow", "runs_by_workflow_seq_created_tenant"} <= names


def test_no_view_drops_an_index_it_makes():
    # Else each open by a writer would find a retired index there, and drop what it made.
    views = {view.name: view for view in all_views()}
    assert "runs_by_tenant_status_seq" in views["runs"].retired_index_names()
    for view in views.values():
        assert not view.retired_index_names() & view.index_names(), view.name


@pytest.mark.parametrize("filters", [
    queries.RunFilters(workflow="w1", statuses=("running",), updated_before="2026-11-01T08:00:00.000000Z"),
    queries.RunFilters(workflow="w1", tenant="t1", starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T07:00:00.000000Z",
                       updated_before="2026-11-01T08:00:00.000000Z"),
], ids=["a workflow", "a tenant's of a workflow"])
def test_a_workflow_s_runs_read_first_are_read_in_one_index_at_once(log, filters):
    # A workflow's indexes hold its runs by status, and their times: read at once, in one
    # index (on PostgreSQL, their positions first and then their rows took twice as long).
    _pairs(log, workflows=3)
    page, statements, plans = _said(log, queries.list_runs, filters, page_size=2)
    assert page["entries"]
    first = [(sql, plan) for (sql, _), plan in zip(statements, plans) if sql.startswith("SELECT seq, created_at, updated_at")]
    assert first and all(plan.count("USING") == 1 for _, plan in first), first


def test_a_tenant_s_quiet_runs_of_the_one_workflow_within_a_range_are_counted_as_the_tenant_s(log):
    # The Stuck chip with both boxes and a range, in a store of one workflow: the workflow's
    # filter names every run, and the tenant's quiet runs are counted as its own (by the
    # hour, less those heard of since), where every run of the tenant's was read.
    _pairs(log, workflows=1)
    filters = queries.RunFilters(workflow="w0", tenant="t0", starting_at="2026-11-01T02:00:00.000000Z", ending_at="2026-11-01T06:59:59.999999Z",
                                 updated_before="2026-11-01T05:30:00.000000Z")
    every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    theirs = [r for r in every if r["tenant"] == "t0" and filters.starting_at <= r["created_at"] <= filters.ending_at
              and r["updated_at"] <= filters.updated_before]
    counts, statements, _ = _said(log, queries.run_status_counts, filters)
    assert counts["total"] == len(theirs) > 3
    assert {s: counts[s] for s in ("pending", "running", "completed")} == {
        s: sum(r["status"] == s for r in theirs) for s in ("pending", "running", "completed")
    }
    read = [sql for sql, _ in statements if re.search(r'FROM "?runs"? ', sql)]
    assert read and not any("workflow = ?" in sql for sql in read), statements
