"""Views: incremental == rebuild, order-independence of provider events, exact paging."""

from __future__ import annotations

import base64
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger, queries
from flowledger.projections.projector import Projector, all_views
from flowledger.projections.runs_view import RunsView
from flowledger.store import open_log
from tests.conftest import ev, step, triggered
from tests.histories import fresh_log, interleave, jsonl, workspaces

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def snapshot(path: str) -> dict[str, list[tuple]]:
    """Every view table's rows, sorted, read straight from the file."""
    with sqlite3.connect(path) as c:
        out = {}
        for view in all_views():
            for table in view.tables:
                out[table] = sorted(c.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
        return out


def answers(log) -> dict:
    """Every query's answer, with log positions (which differ with arrival order) left out."""
    def q(fn, *args, **kwargs):
        return ledger.query(log, fn, *args, **kwargs)

    runs = q(queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
    deliveries = q(queries.list_deliveries, queries.DeliveryFilters(), page_size=1000)["entries"]
    workflows = [w["key"] for w in q(queries.list_workflows)]
    return {
        "runs": {r["id"]: q(queries.show_run, r["id"]) for r in runs},
        "deliveries": sorted(deliveries, key=lambda d: d["message_id"]),
        "workflows": {w: q(queries.workflow_details, w) for w in workflows},
        "stats": {w: q(queries.execution_stats, w) for w in workflows},
        "counts": q(queries.counts),
        "counts_all": q(queries.counts, include_rehearsals=True),
    }


@SETTINGS
@given(workspaces(), st.data())
def test_folding_in_random_batches_equals_one_rebuild(ws, data):
    run_events, messages = ws
    events = run_events + messages
    with fresh_log() as (log, path):
        projector = Projector(log.backend)
        i = 0
        while i < len(events):
            n = data.draw(st.integers(1, 8))
            ledger.append_input(log, jsonl(events[i : i + n]))
            i += n
            projector.catch_up(page_size=data.draw(st.integers(1, 7)))
        incremental = snapshot(path)
        projector.rebuild()
        assert snapshot(path) == incremental


@SETTINGS
@given(workspaces(), st.data())
def test_provider_events_in_any_order_and_repeated_give_the_same_views(ws, data):
    run_events, messages = ws
    shuffled = data.draw(st.permutations(messages))
    repeats = data.draw(st.lists(st.sampled_from(messages), max_size=5)) if messages else []
    with fresh_log() as (a, _), fresh_log() as (b, _):
        ledger.append_input(a, jsonl(run_events + messages))
        # Provider events race the run's own events and each other, and come twice.
        mixed = run_events + shuffled[: len(shuffled) // 2]
        ledger.append_input(b, jsonl(shuffled[len(shuffled) // 2 :] + repeats))
        ledger.append_input(b, jsonl(mixed + repeats))
        assert answers(a) == answers(b)


@SETTINGS
@given(workspaces())
def test_counts_total_equals_the_number_of_runs(ws):
    run_events, messages = ws
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl(run_events + messages))
        runs = {e["run_id"] for e in run_events}
        rehearsals = {e["run_id"] for e in run_events if e["type"] == "run.triggered" and e["trigger"]["source"] == "rehearsal"}
        everything = ledger.query(log, queries.counts, include_rehearsals=True)
        assert everything["total"] == len(runs)
        assert sum(w["total"] for w in everything["by_workflow"].values()) == len(runs)
        assert ledger.query(log, queries.counts)["total"] == len(runs - rehearsals)


MOST_PAGED = 10_000
"""More rows than any listing here holds: a paging loop past it repeats rows for ever."""


def _page_all(log, filters, page_size, direction="after"):
    seen = []
    page = ledger.query(log, queries.list_runs, filters, page_size=page_size)
    seen += [r["id"] for r in page["entries"]]
    while page["page_info"]["after"]:
        page = ledger.query(log, queries.list_runs, filters, page_size=page_size, after=page["page_info"]["after"])
        seen += [r["id"] for r in page["entries"]]
        # A cursor that repeats its boundary row would page for ever: fail instead of hanging.
        assert len(seen) <= MOST_PAGED, "paging never ends"
    return seen, page


@SETTINGS
@given(workspaces(), st.integers(1, 4), st.sampled_from([None, "w1", "w2"]), st.booleans())
def test_every_paged_listing_is_exact_both_ways(ws, page_size, workflow, errors_only):
    run_events, messages = ws
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl(run_events + messages))
        filters = queries.RunFilters(workflow=workflow, has_errors=errors_only)
        everything = ledger.query(log, queries.list_runs, filters, page_size=1000)["entries"]
        expected = [r["id"] for r in everything]
        forward, last = _page_all(log, filters, page_size)
        assert forward == expected
        # And back again from the last page with before cursors.
        backward = [r["id"] for r in last["entries"]]
        page = last
        while page["page_info"]["before"]:
            page = ledger.query(log, queries.list_runs, filters, page_size=page_size, before=page["page_info"]["before"])
            backward = [r["id"] for r in page["entries"]] + backward
            assert len(backward) <= MOST_PAGED, "paging back never ends"
        assert backward == expected


def test_paging_while_new_runs_arrive_never_repeats_or_misses(log):
    ledger.append_input(log, jsonl([triggered(f"old-{i:02d}") for i in range(10)]))
    first = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=3)
    seen = [r["id"] for r in first["entries"]]
    page = first
    n = 0
    while page["page_info"]["after"]:
        ledger.append_input(log, jsonl([triggered(f"new-{n}")]))
        n += 1
        page = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=3, after=page["page_info"]["after"])
        seen += [r["id"] for r in page["entries"]]
        assert len(seen) <= MOST_PAGED, "paging never ends"
    assert seen == [f"old-{i:02d}" for i in reversed(range(10))]


def test_a_bad_cursor_is_a_clear_error(log):
    ledger.append_input(log, jsonl([triggered("r1")]))
    with pytest.raises(queries.BadQuery, match="not a cursor"):
        ledger.query(log, queries.list_runs, queries.RunFilters(), after="bm9wZQ")


@pytest.mark.parametrize("value", ["99999999999999999999", str(2**63), "-3", " 5", "1_000", "٣"])
@pytest.mark.parametrize("direction", ["after", "before"])
def test_a_cursor_of_no_position_a_store_can_hold_is_a_clear_error(log, value, direction):
    # Well formed but out of range (or not plain digits): refused as a cursor, never
    # passed on to the driver, whose overflow would be an internal error.
    ledger.append_input(log, jsonl([triggered("r1")]))
    cursor = base64.urlsafe_b64encode(f"seq:{value}".encode()).decode().rstrip("=")
    for listing, filters in ((queries.list_runs, queries.RunFilters()), (queries.list_deliveries, queries.DeliveryFilters())):
        with pytest.raises(queries.BadQuery, match="not a cursor"):
            ledger.query(log, listing, filters, **{direction: cursor})
    # The largest position a store can hold is still a cursor: past every run one way.
    page = ledger.query(log, queries.list_runs, queries.RunFilters(), **{direction: queries.encode_cursor(2**63 - 1)})
    assert len(page["entries"]) == (1 if direction == "after" else 0)


LIST_QUERIES = [
    ("runs", ""),
    ("runs", "WHERE workflow = 'w'"),
    ("runs", "WHERE status IN ('failed', 'running')"),
    ("runs", "WHERE workflow = 'w' AND status IN ('failed')"),
    ("runs", "WHERE tenant = 't'"),
    ("runs", "WHERE recipient = 'u'"),
    ("runs", "WHERE error_count > 0"),
    ("runs", "WHERE created_at >= '2026' AND created_at <= '2027'"),
    ("runs", "WHERE workflow = 'w' AND seq < 10"),
    ("deliveries", ""),
    ("deliveries", "WHERE run_id = 'r'"),
    ("deliveries", "WHERE channel = 'email'"),
    ("deliveries", "WHERE status IN ('bounced')"),
    ("deliveries", "WHERE channel = 'email' AND status IN ('bounced')"),
    ("deliveries", "WHERE recipient = 'u'"),
]


@pytest.mark.parametrize("table, where", LIST_QUERIES)
def test_every_list_query_uses_an_index(log, table, where):
    Projector(log.backend).ensure_tables()
    with log.backend.transaction(write=False) as c:
        # As queries._page asks for a page: its positions, then their rows by runs_by_seq.
        c.execute(f"EXPLAIN QUERY PLAN SELECT seq FROM {table} {where} ORDER BY seq DESC LIMIT 51")
        plan = " | ".join(row[3] for row in c.fetchall())
    assert "INDEX" in plan and f"SCAN {table}" not in plan.replace(f"SCAN {table} USING", ""), plan


ENGAGEMENT_PLAN = "SEARCH deliveries USING COVERING INDEX deliveries_email_by_run (run_id=? AND channel=?)"
"""Each run's email deliveries sought, and all that is read found in the index."""


def _engagement_plan(c, ids: list[str]) -> str:
    """SQLite's plan for the engagement query of these runs."""
    c.execute("EXPLAIN QUERY PLAN " + queries.ENGAGEMENT_QUERY.format(marks=",".join("?" * len(ids))), ids)
    return " | ".join(row[3] for row in c.fetchall())


@pytest.mark.parametrize("runs", [1, 2, 50, 500])
def test_a_runs_email_engagement_is_read_from_an_index_of_email_deliveries_by_run(log, runs):
    # Every runs page asks it of the page's runs (one for runs show, up to a page's worth
    # for a listing): it must seek each run's few email deliveries, never scan a channel's,
    # and find all it reads in the index (a cold cache would read each row from the disk).
    Projector(log.backend).ensure_tables()
    ids = [f"r{i}" for i in range(runs)]
    with log.backend.transaction(write=False) as c:
        plan = _engagement_plan(c, ids)
    assert plan == ENGAGEMENT_PLAN, plan


@pytest.mark.parametrize("runs", [1, 50])
def test_engagement_keeps_to_that_index_once_the_planner_knows_the_tables(log, runs):
    # With statistics (a user's ANALYZE), SQLite knows a channel is a third of all
    # deliveries and a run a few: it must still seek each run's email deliveries.
    events = []
    for i in range(60):
        rid = f"r{i}"
        events.append(triggered(rid))
        for channel in ("email", "sms", "whatsapp"):
            mid = f"{rid}-{channel}"
            events.append(ev("message.queued", message_id=mid, run_id=rid, step="s", channel=channel, recipient="u"))
            events.append(ev("message.delivered", message_id=mid))
    ledger.append_input(log, jsonl(events))
    Projector(log.backend).catch_up()
    ids = [f"r{i}" for i in range(runs)]
    with log.backend.transaction(write=True) as c:
        c.execute("ANALYZE")
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT count(*) FROM sqlite_stat1 WHERE idx = 'deliveries_email_by_run'")
        assert c.fetchone()[0] == 1
        c.execute(queries.ENGAGEMENT_QUERY.format(marks=",".join("?" * runs)), ids)
        assert sorted(r[0] for r in c.fetchall()) == sorted(ids)  # each run's one email
        plan = _engagement_plan(c, ids)
    assert plan == ENGAGEMENT_PLAN, plan


def test_a_view_made_by_another_version_is_refolded_from_the_log(log, store_path):
    ledger.append_input(log, jsonl([triggered("r1"), triggered("r2")]))
    Projector(log.backend).catch_up()
    before = snapshot(store_path)
    with log.backend.transaction(write=True) as c:
        c.execute("UPDATE flowledger_meta SET value = '0' WHERE key = 'view:runs'")
        c.execute("DROP TABLE runs")
        c.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, an_old_column TEXT)")
    # The next process to open the store (a newer flowledger, say) notices.

    reopened = open_log(store_path)
    Projector(reopened.backend).catch_up()
    reopened.close()
    assert snapshot(store_path) == before
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT value FROM flowledger_meta WHERE key = 'view:runs'")
        assert c.fetchone()[0] == str(RunsView.version)


def test_a_table_an_earlier_version_of_a_view_had_is_dropped_when_the_view_is_made_again(log, store_path):
    events = [triggered("r1"), ev("run.started", run_id="r1"), step("step.started", "r1")]
    events.append(ev("message.queued", message_id="m1", channel="email", recipient="u", run_id="r1", step="email-1"))
    ledger.append_input(log, jsonl(events))
    Projector(log.backend).catch_up()
    before = snapshot(store_path)
    with log.backend.transaction(write=True) as c:
        # As a store folded by steps view version 1 had it.
        c.execute("UPDATE flowledger_meta SET value = '1' WHERE key = 'view:steps'")
        c.execute("CREATE TABLE step_messages (message_id TEXT PRIMARY KEY, run_id TEXT, step TEXT, queued_at TEXT)")

    reopened = open_log(store_path)
    try:
        Projector(reopened.backend).catch_up()
        with reopened.backend.transaction(write=False) as c:
            assert "step_messages" not in reopened.backend.table_names(c)
        assert ledger.query(reopened, queries.show_run, "r1")["steps"][0]["messages"] == ["m1"]
    finally:
        reopened.close()
    assert snapshot(store_path) == before


@settings(SETTINGS, max_examples=100)
@given(workspaces(), st.data())
def test_messages_stored_before_their_run_fold_as_a_rebuild_does(ws, data):
    # A message's facts may reach the log before its run's trigger: the views followed in
    # small pages (the message's row written first, its run's trigger a page later) must
    # end as one rebuild's page does, where both are seen together.
    run_events, messages = ws
    arrivals = interleave(data.draw, [messages, run_events])
    with fresh_log() as (log, path):
        projector = Projector(log.backend)
        for e in arrivals:
            ledger.append_input(log, jsonl([e]))
            projector.catch_up(page_size=data.draw(st.integers(1, 3)))
        incremental = snapshot(path)
        incremental_answers = answers(log)
        projector.rebuild()
        assert snapshot(path) == incremental
        assert answers(log) == incremental_answers


def test_a_step_given_another_type_shows_its_latest_whatever_the_pages(store_path):
    # A workflow edited so that a step keeps its name but changes type: the node's type
    # and channel are its latest start's, followed page by page or rebuilt in one page.
    first = [triggered("r1", workflow="w"), ev("run.started", run_id="r1"), step("step.started", "r1", "notify")]
    second = [
        triggered("r2", workflow="w"),
        ev("run.started", run_id="r2"),
        {**step("step.started", "r2", "notify"), "step_type": "send_sms"},
    ]
    log = open_log(store_path)
    try:
        projector = Projector(log.backend)
        ledger.append_input(log, jsonl(first))
        projector.catch_up()
        ledger.append_input(log, jsonl(second))
        projector.catch_up()
        followed = (ledger.query(log, queries.execution_stats, "w"), ledger.query(log, queries.workflow_details, "w"))
        projector.rebuild()
        rebuilt = (ledger.query(log, queries.execution_stats, "w"), ledger.query(log, queries.workflow_details, "w"))
    finally:
        log.close()
    assert followed == rebuilt
    stats, details = rebuilt
    assert [(n["step"], n["step_type"], n["channel"]) for n in stats["nodes"]] == [("notify", "send_sms", "sms")]
    assert {ch: c["execution_count"] for ch, c in details["channels"].items()} == {"sms": 1}
