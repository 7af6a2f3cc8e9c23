"""Behaviours of flowledger/queries.py that a mutation review found no test holding: each
test below failed against a mutant of the query it names and passes on main."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from flowledger import ledger, queries
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, ev, step, triggered
from tests.histories import jsonl

needs_postgres = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


def at(minute: int, second: int = 0) -> str:
    return f"2026-11-01T09:{minute:02d}:{second:02d}Z"


def q(log, fn, *args: Any, **kwargs: Any) -> Any:
    return ledger.query(log, fn, *args, **kwargs)


def queued(message_id: str, run_id: str, channel: str = "email", recipient: Any = "user-1") -> dict[str, Any]:
    return ev("message.queued", message_id=message_id, run_id=run_id, channel=channel, recipient=recipient, step=f"{channel}-1")


# --- paging -------------------------------------------------------------------------------


def walk(log, listing, *args: Any, key: str, page_size: int) -> list[str]:
    """Every entry of a listing, paged forwards to its end and back again to its start,
    checking that each page's cursors are there exactly when there is something beyond."""
    forward = [q(log, listing, *args, page_size=page_size)]
    while forward[-1]["page_info"]["after"]:
        assert len(forward) < 50, "paging forwards never ends"
        forward.append(q(log, listing, *args, page_size=page_size, after=forward[-1]["page_info"]["after"]))
    backward = [forward[-1]]
    while backward[-1]["page_info"]["before"]:
        assert len(backward) < 50, "paging backwards never ends"
        backward.append(q(log, listing, *args, page_size=page_size, before=backward[-1]["page_info"]["before"]))
    for pages in (forward, list(reversed(backward))):
        assert [p["page_info"]["before"] is None for p in pages] == [True] + [False] * (len(pages) - 1)
        assert [p["page_info"]["after"] is None for p in pages] == [False] * (len(pages) - 1) + [True]
        assert all(len(p["entries"]) == page_size for p in pages[:-1])
        assert 0 < len(pages[-1]["entries"]) <= page_size or len(pages) == 1
    ids = [e[key] for p in forward for e in p["entries"]]
    assert [e[key] for p in reversed(backward) for e in p["entries"]] == ids
    return ids


class Recording:
    """A cursor that notes the statements run through it."""

    def __init__(self, cursor: Any) -> None:
        self.cursor, self.statements = cursor, []

    def execute(self, statement: str, params: Any = ()) -> Any:
        self.statements.append(statement)
        return self.cursor.execute(statement, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)


def test_a_first_page_asks_nothing_about_newer_rows(seven_runs):
    """A first page starts at the newest row its filters pick, in its own snapshot: no
    statement asks whether a newer one exists (a round trip on PostgreSQL); a page after a
    cursor asks, and finds the rows before it."""
    q(seven_runs, queries.counts)  # the views caught up
    with seven_runs.backend.transaction(write=False) as c:
        first = Recording(c)
        page = queries.list_runs(first, queries.RunFilters(), page_size=3)
        later = Recording(c)
        second = queries.list_runs(later, queries.RunFilters(), page_size=3, after=page["page_info"]["after"])
    assert page["page_info"]["before"] is None and second["page_info"]["before"] is not None
    newer = [s for s in first.statements if "seq > ?" in s]
    assert newer == [] and len(first.statements) == 3, first.statements
    assert len([s for s in later.statements if "seq > ?" in s]) == 1, later.statements


@pytest.fixture
def seven_runs(log):
    """Seven runs for user-1, each with an email, then noise that no listing below asks for."""
    events = []
    for i in range(1, 8):
        events += [triggered(f"r{i}", recipient="user-1", occurred_at=at(i)), queued(f"m{i}", f"r{i}")]
    events += [triggered("other", recipient="user-2", workflow="other", occurred_at=at(9)), queued("m-other", "other", "sms", "user-2")]
    ledger.append_input(log, jsonl(events))
    return log


@pytest.mark.parametrize("page_size", [1, 2, 3, 6, 7, 8])
def test_every_listing_pages_through_exactly_both_ways(seven_runs, page_size):
    """Runs and deliveries, plain and by contact: each row once, newest first, forwards and
    back, with a cursor to the newer or older side exactly when there is one."""
    runs = [f"r{i}" for i in range(7, 0, -1)]
    messages = [f"m{i}" for i in range(7, 0, -1)]
    by_workflow = queries.RunFilters(workflow="welcome")
    email = queries.DeliveryFilters(channel="email")
    assert walk(seven_runs, queries.list_runs, by_workflow, key="id", page_size=page_size) == runs
    assert walk(seven_runs, queries.list_runs_by_contact, queries.RunFilters(), "user-1", key="id", page_size=page_size) == runs
    assert walk(seven_runs, queries.list_deliveries, email, key="message_id", page_size=page_size) == messages
    assert walk(seven_runs, queries.list_deliveries_by_contact, email, "user-1", key="message_id", page_size=page_size) == messages


def test_going_back_to_a_page_says_there_is_nothing_older_once_the_older_runs_left_the_filter(log):
    """A page reached by `before` has no `after` cursor when no older run matches any more
    (here: they finished since), not one to an empty page."""
    ledger.append_input(log, jsonl([
        e for i in range(1, 5) for e in (triggered(f"r{i}", occurred_at=at(i)), ev("run.started", run_id=f"r{i}", occurred_at=at(i, 30)))
    ]))
    running = queries.RunFilters(statuses=("running",))
    first = q(log, queries.list_runs, running, page_size=2)
    second = q(log, queries.list_runs, running, page_size=2, after=first["page_info"]["after"])
    assert [r["id"] for r in second["entries"]] == ["r2", "r1"]
    ledger.append_input(log, jsonl([ev("run.completed", run_id=r, occurred_at=at(8)) for r in ("r1", "r2")]))
    back = q(log, queries.list_runs, running, page_size=2, before=second["page_info"]["before"])
    assert [r["id"] for r in back["entries"]] == ["r4", "r3"]
    assert back["page_info"] == {"after": None, "before": None, "page_size": 2}


# --- what a listing refuses ---------------------------------------------------------------


LISTINGS = [(queries.list_runs, queries.RunFilters()), (queries.list_deliveries, queries.DeliveryFilters())]


@pytest.mark.parametrize("listing, filters", LISTINGS)
def test_a_cursor_of_another_kind_is_not_a_cursor(seven_runs, listing, filters):
    """Only a `seq:` cursor is one: the same number under another name is refused."""
    cursor = base64.urlsafe_b64encode(b"pos:3").decode().rstrip("=")
    for direction in ("after", "before"):
        with pytest.raises(queries.BadQuery, match="not a cursor from a previous page"):
            q(seven_runs, listing, filters, **{direction: cursor})


@pytest.mark.parametrize("listing, filters", LISTINGS)
@pytest.mark.parametrize("page_size", [0, -1, queries.MAX_PAGE_SIZE + 1])
def test_a_page_size_out_of_range_is_refused_by_the_query(seven_runs, listing, filters, page_size):
    """The query itself refuses a page of fewer than 1 or more than 1000 entries."""
    with pytest.raises(queries.BadQuery, match="page size must be 1 to 1000"):
        q(seven_runs, listing, filters, page_size=page_size)


@pytest.mark.parametrize("listing, filters", LISTINGS)
def test_after_and_before_together_are_refused_by_the_query(seven_runs, listing, filters):
    """Both cursors at once are refused (the web pages pass both straight to the query)."""
    page = q(seven_runs, listing, filters, page_size=2)
    page = q(seven_runs, listing, filters, page_size=2, after=page["page_info"]["after"])
    with pytest.raises(queries.BadQuery, match="give after or before, not both"):
        q(seven_runs, listing, filters, page_size=2, after=page["page_info"]["after"], before=page["page_info"]["before"])


def test_an_empty_page_past_a_cursor_gives_no_cursor_to_follow(log):
    """A page past a cursor that finds nothing (its runs left the filter since) has no
    cursors: a client following `after` stops there instead of asking again for ever."""
    ledger.append_input(log, jsonl([
        e for i in range(1, 5) for e in (triggered(f"r{i}", occurred_at=at(i)), ev("run.started", run_id=f"r{i}", occurred_at=at(i, 30)))
    ]))
    running = queries.RunFilters(statuses=("running",))
    first = q(log, queries.list_runs, running, page_size=2)
    ledger.append_input(log, jsonl([ev("run.completed", run_id=r, occurred_at=at(8)) for r in ("r1", "r2")]))
    past = q(log, queries.list_runs, running, page_size=2, after=first["page_info"]["after"])
    assert past == {"entries": [], "page_info": {"after": None, "before": None, "page_size": 2}}


# --- filters ------------------------------------------------------------------------------


def test_an_empty_filter_value_matches_nothing_rather_than_being_dropped(seven_runs):
    """`tenant=""` asks for runs of a tenant no run has: none, never every run."""
    assert q(seven_runs, queries.list_runs, queries.RunFilters(tenant=""))["entries"] == []
    assert q(seven_runs, queries.list_deliveries, queries.DeliveryFilters(run_id=""))["entries"] == []


@pytest.fixture
def mail(log):
    """r1 and r2 for user-1, r3 for user-2; emails and an SMS, some delivered."""
    ledger.append_input(log, jsonl([
        triggered("r1", recipient="user-1"), triggered("r2", recipient="user-1"), triggered("r3", recipient="user-2"),
        queued("m1", "r1"), queued("m2", "r1", "sms"), queued("m3", "r2"), queued("m4", "r3", recipient="user-2"),
        *(ev("message.delivered", message_id=m, occurred_at=at(5)) for m in ("m2", "m3", "m4")),
    ]))
    return log


def message_ids(log, listing, *args: Any) -> list[str]:
    return [d["message_id"] for d in q(log, listing, *args)["entries"]]


def test_deliveries_list_keeps_to_each_filter(mail):
    """`deliveries list --run/--channel/--status/--recipient`: each narrows the listing."""
    assert message_ids(mail, queries.list_deliveries, queries.DeliveryFilters(run_id="r1")) == ["m2", "m1"]
    assert message_ids(mail, queries.list_deliveries, queries.DeliveryFilters(channel="sms")) == ["m2"]
    assert message_ids(mail, queries.list_deliveries, queries.DeliveryFilters(statuses=("delivered",))) == ["m4", "m3", "m2"]
    assert message_ids(mail, queries.list_deliveries, queries.DeliveryFilters(recipient="user-2")) == ["m4"]


def test_deliveries_by_contact_keep_to_the_other_filters_too(mail):
    """A recipient as listings show it combines with the run, channel and status filters."""
    def by_user_1(**filters: Any) -> list[str]:
        return message_ids(mail, queries.list_deliveries_by_contact, queries.DeliveryFilters(**filters), "user-1")

    assert by_user_1() == ["m3", "m2", "m1"]
    assert by_user_1(run_id="r2") == ["m3"]
    assert by_user_1(channel="email") == ["m3", "m1"]
    assert by_user_1(statuses=("delivered",)) == ["m3", "m2"]
    assert by_user_1(channel="email", statuses=("queued",)) == ["m1"]


# --- counts -------------------------------------------------------------------------------


@pytest.fixture
def statuses(log):
    """One run in each of pending, running, completed and cancelled for user-1 (workflow
    welcome); one cancelled run for user-1 of another workflow; one run for user-2."""
    ledger.append_input(log, jsonl([
        triggered("pending"),
        triggered("running"), ev("run.started", run_id="running"),
        triggered("completed"), ev("run.started", run_id="completed"), ev("run.completed", run_id="completed"),
        triggered("cancelled"), ev("run.cancelled", run_id="cancelled", by="operator"),
        triggered("other-wf", workflow="other"), ev("run.cancelled", run_id="other-wf", by="operator"),
        triggered("user-2", recipient="user-2"),
    ]))
    return log


def test_status_counts_total_every_status(statuses):
    """The run history's chips: the total counts runs of every status, cancelled ones too."""
    expected = {"total": 5, "pending": 2, "running": 1, "paused": 0, "completed": 1, "failed": 0, "cancelled": 1}
    assert q(statuses, queries.run_status_counts, queries.RunFilters(workflow="welcome")) == expected


def test_status_counts_by_contact_keep_to_the_other_filters(statuses):
    """Counting a contact's runs keeps to the workflow (and other) filters as its listing does."""
    welcome = queries.RunFilters(workflow="welcome")
    counted = q(statuses, queries.run_status_counts_by_contact, welcome, "user-1")
    listed = q(statuses, queries.list_runs_by_contact, welcome, "user-1")["entries"]
    assert counted == {"total": 4, "pending": 1, "running": 1, "paused": 0, "completed": 1, "failed": 0, "cancelled": 1}
    assert counted["total"] == len(listed)


# --- a contact as the listings show it ----------------------------------------------------


def test_a_contact_is_cut_at_the_shortest_and_longest_collection_an_id_may_be(log):
    """A one-character collection, and one of 255 with a one-character id, are both found by
    `collection/id` (the cuts tried run from the first "/" that could end a collection to the last)."""
    longest = "k" * 255
    ledger.append_input(log, jsonl([
        triggered("short", recipient={"collection": "a", "id": "c-1"}),
        triggered("long", recipient={"collection": longest, "id": "x"}),
    ]))

    def by(contact: str) -> list[str]:
        return [r["id"] for r in q(log, queries.list_runs_by_contact, queries.RunFilters(), contact)["entries"]]

    assert by("a/c-1") == ["short"]
    assert by(longest + "/x") == ["long"]


# --- a run and its email engagement -------------------------------------------------------


def test_a_runs_email_engagement_is_its_earliest_open_and_click_across_its_emails(log):
    """With two emails, `email_opened_at` and `email_clicked_at` are the earliest of either,
    whichever email was queued first."""
    ledger.append_input(log, jsonl([
        triggered("r1"), queued("m1", "r1"), queued("m2", "r1"),
        ev("message.delivered", message_id="m1", occurred_at=at(1)),
        ev("message.delivered", message_id="m2", occurred_at=at(1)),
        ev("message.opened", message_id="m1", occurred_at=at(10)),
        ev("message.clicked", message_id="m1", occurred_at=at(11), url="https://example.com/"),
        ev("message.opened", message_id="m2", occurred_at=at(5)),
        ev("message.clicked", message_id="m2", occurred_at=at(6), url="https://example.com/"),
    ]))
    listed = q(log, queries.list_runs, queries.RunFilters())["entries"][0]
    shown = q(log, queries.show_run, "r1")
    for run in (listed, shown):
        assert (run["email_opened"], run["email_opened_at"]) == (True, "2026-11-01T09:05:00.000000Z")
        assert (run["email_clicked"], run["email_clicked_at"]) == (True, "2026-11-01T09:06:00.000000Z")


def test_runs_show_lists_its_deliveries_in_the_order_they_were_queued(log):
    """`runs show`'s deliveries come in the order they were queued (by id among those queued
    at the same time), not by id alone."""
    ledger.append_input(log, jsonl([
        triggered("r1"),
        {**queued("m-a", "r1"), "occurred_at": at(1)},
        {**queued("m-b", "r1"), "occurred_at": at(2)},
        {**queued("m-c", "r1"), "occurred_at": at(1)},
    ]))
    assert [d["message_id"] for d in q(log, queries.show_run, "r1")["deliveries"]] == ["m-a", "m-c", "m-b"]


# --- workflows ----------------------------------------------------------------------------


def test_workflows_list_counts_rehearsal_runs(store_path):
    """`workflows list` counts rehearsal runs, as README says (`counts` leaves them out)."""
    from click.testing import CliRunner

    from flowledger.cli import cli

    runner = CliRunner()
    lines = jsonl([triggered("r1"), triggered("t1", trigger={"source": "rehearsal"})]).getvalue().decode()
    assert runner.invoke(cli, ["--store", store_path, "append", "-"], input=lines).exit_code == 0
    listed = runner.invoke(cli, ["--store", store_path, "workflows", "list", "--json"])
    counted = runner.invoke(cli, ["--store", store_path, "counts", "--json"])
    assert [(w["key"], w["runs"]["total"], w["runs"]["pending"]) for w in orjson.loads(listed.stdout)] == [("welcome", 2, 2)]
    assert orjson.loads(counted.stdout)["total"] == 1


@pytest.fixture
def paused_workflow(log):
    """welcome: a completed run, a cancelled one, a paused one and a completed rehearsal."""
    ledger.append_input(log, jsonl([
        triggered("done", occurred_at=at(1)), ev("run.started", run_id="done", occurred_at=at(2)),
        ev("run.completed", run_id="done", occurred_at=at(3)),
        triggered("dropped", occurred_at=at(1)), ev("run.cancelled", run_id="dropped", by="operator", occurred_at=at(2)),
        triggered("waiting", occurred_at=at(1)), ev("run.started", run_id="waiting", occurred_at=at(2)),
        ev("run.paused", run_id="waiting", occurred_at=at(3)),
        triggered("rehearsal", trigger={"source": "rehearsal"}, occurred_at=at(1)),
        ev("run.started", run_id="rehearsal", occurred_at=at(2)), ev("run.completed", run_id="rehearsal", occurred_at=at(4)),
    ]))
    return log


def test_a_workflow_with_a_paused_run_is_running_not_completed(paused_workflow):
    """A paused run is unfinished: its workflow is `running`, with no completed_at yet."""
    [listed] = q(paused_workflow, queries.list_workflows)
    details = q(paused_workflow, queries.workflow_details, "welcome")
    assert listed["status"] == details["status"] == "running"
    assert details["completed_at"] is None and details["duration_seconds"] is None


def test_workflow_details_count_rehearsals_and_cancelled_runs_as_processed(paused_workflow):
    """`workflows show`: its runs include rehearsal runs, and progress counts completed,
    failed and cancelled runs as processed."""
    details = q(paused_workflow, queries.workflow_details, "welcome")
    assert details["runs"] == {"total": 4, "pending": 0, "running": 0, "paused": 1, "completed": 2, "failed": 0, "cancelled": 1}
    assert details["progress"] == {"processed": 3, "total": 4, "percentage": 75.0}


def test_each_rate_divides_by_its_own_denominator(log):
    """`workflows show`'s rates: success by contacts, delivery and bounce by sent, opens,
    clicks and reads by delivered; overall success by all contacts. (The numbers differ
    here, so each rate tells its denominator.)"""
    def sent(m: str) -> dict[str, Any]:
        return ev("message.sent", message_id=m, occurred_at=at(1))

    def delivered(m: str) -> dict[str, Any]:
        return ev("message.delivered", message_id=m, occurred_at=at(2))

    ledger.append_input(log, jsonl([
        triggered("r1"),
        *(queued(m, "r1") for m in ("e1", "e2", "e3", "e4", "e5", "e6")),
        *(queued(m, "r1", "sms") for m in ("s1", "s2", "s3")),
        *(queued(m, "r1", "whatsapp") for m in ("w1", "w2", "w3", "w4")),
        *(sent(m) for m in ("e2", "e3", "e4", "e5", "e6", "s2", "s3", "w1", "w2", "w3")),
        *(delivered(m) for m in ("e3", "e4", "e5", "s2", "w1", "w2")),
        ev("message.bounced", message_id="e2", occurred_at=at(2), reason="no such mailbox"),
        ev("message.opened", message_id="e4", occurred_at=at(3), machine=True),
        ev("message.opened", message_id="e5", occurred_at=at(3)),
        ev("message.clicked", message_id="e5", occurred_at=at(4), url="https://example.com/"),
        ev("message.read", message_id="w1", occurred_at=at(3)),
    ]))
    details = q(log, queries.workflow_details, "welcome")
    email, sms, whatsapp = (details["channels"][ch] for ch in ("email", "sms", "whatsapp"))
    assert {k: email[k] for k in ("total_contacts", "sent", "delivered", "bounced", "opened", "human_opened", "clicked")} == {
        "total_contacts": 6, "sent": 5, "delivered": 3, "bounced": 1, "opened": 2, "human_opened": 1, "clicked": 1,
    }
    assert {k: email[k] for k in ("success_rate", "delivery_rate", "bounce_rate", "open_rate", "human_open_rate", "click_rate")} == {
        "success_rate": 66.67, "delivery_rate": 60.0, "bounce_rate": 20.0, "open_rate": 66.67, "human_open_rate": 33.33, "click_rate": 33.33,
    }
    assert (sms["total_contacts"], sms["sent"], sms["delivered"], sms["success_rate"], sms["delivery_rate"]) == (3, 2, 1, 66.67, 50.0)
    assert (whatsapp["sent"], whatsapp["delivered"], whatsapp["read"]) == (3, 2, 1)
    assert (whatsapp["success_rate"], whatsapp["delivery_rate"], whatsapp["read_rate"]) == (75.0, 66.67, 50.0)
    assert (details["totals"]["total_contacts"], details["totals"]["total_sent"], details["totals"]["overall_success_rate"]) == (13, 10, 69.23)


def test_a_completed_workflow_completed_when_its_last_run_finished(log):
    """A workflow whose runs have all finished completed at the latest of their
    completions, whatever order they ran in; its duration runs from its first start to then."""
    ledger.append_input(log, jsonl([
        triggered("slow", occurred_at=at(1)), ev("run.started", run_id="slow", occurred_at=at(2)),
        triggered("fast", occurred_at=at(3)), ev("run.started", run_id="fast", occurred_at=at(4)),
        ev("run.completed", run_id="fast", occurred_at=at(5)),
        ev("run.completed", run_id="slow", occurred_at=at(9)),
    ]))
    details = q(log, queries.workflow_details, "welcome")
    assert (details["status"], details["started_at"], details["completed_at"], details["duration_seconds"]) == (
        "completed", "2026-11-01T09:02:00.000000Z", "2026-11-01T09:09:00.000000Z", 420.0,
    )


def test_costs_in_two_currencies_are_mixed_and_given_apart(log):
    """Priced in two currencies, a workflow's totals name no one currency ("mixed"), add
    no sum, and give each currency's amount apart."""
    ledger.append_input(log, jsonl([
        triggered("r1"), queued("s1", "r1", "sms"), queued("w1", "r1", "whatsapp"),
        ev("message.sent", message_id="s1", occurred_at=at(1), cost={"amount": 0.0075, "currency": "USD"}),
        ev("message.sent", message_id="w1", occurred_at=at(1), cost={"amount": 0.02, "currency": "EUR"}),
    ]))
    totals = q(log, queries.workflow_details, "welcome")["totals"]
    assert (totals["currency"], totals["total_cost"], totals["costs_by_currency"]) == ("mixed", None, {"EUR": 0.02, "USD": 0.0075})


def test_a_workflow_with_no_priced_message_costs_nothing_in_no_currency(mail):
    """README's `"total_cost": 0.0, "currency": null`: nothing priced is a cost of 0, not unknown."""
    totals = q(mail, queries.workflow_details, "welcome")["totals"]
    assert (totals["total_cost"], totals["currency"]) == (0.0, None)
    assert "costs_by_currency" not in totals


# --- execution stats and step traces ------------------------------------------------------


def test_a_workflow_whose_runs_have_no_steps_yet_has_stats_of_nothing(log):
    """`stats` of a workflow with runs but no step yet: every count 0, not "no workflow"."""
    ledger.append_input(log, jsonl([triggered("r1")]))
    stats = q(log, queries.execution_stats, "welcome")
    assert stats == {"workflow": "welcome", "total": dict.fromkeys(stats["total"], 0), "nodes": [], "edges": []}
    with pytest.raises(queries.NotFound):
        q(log, queries.execution_stats, "nope")


def test_steps_executed_counts_steps_not_channels(log):
    """`workflows show`'s steps executed counts each step, two on one channel as two."""
    ledger.append_input(log, jsonl([
        triggered("r1"), ev("run.started", run_id="r1"),
        step("step.started", "r1", "welcome-email"), step("step.succeeded", "r1", "welcome-email"),
        step("step.started", "r1", "reminder-email"),
    ]))
    assert q(log, queries.workflow_details, "welcome")["workflow_executions_count"] == 2


def test_a_message_queued_before_its_step_started_belongs_to_the_steps_first_attempt(log):
    """A message stamped before any attempt of its step started (clocks differ) is still
    shown under that step: its first attempt."""
    ledger.append_input(log, jsonl([
        triggered("r1"), ev("run.started", run_id="r1", occurred_at=at(1)),
        {**queued("m1", "r1"), "occurred_at": at(2)},
        step("step.started", "r1", "email-1", occurred_at=at(3)), step("step.failed", "r1", "email-1", occurred_at=at(4)),
        step("step.started", "r1", "email-1", attempt=2, occurred_at=at(5)),
    ]))
    assert [s["messages"] for s in q(log, queries.show_run, "r1")["steps"]] == [["m1"], []]


# --- runs over time (a workflow page's chart) ---------------------------------------------


def created_on(days: list[str]) -> list[dict[str, Any]]:
    return [triggered(f"run-{d}", occurred_at=f"{d}T12:00:00Z") for d in days]


def test_runs_over_time_are_by_day_up_to_max_bars_days_then_by_month_up_to_max_bars_months(log):
    """Buckets are days while there are at most `max_bars` of them, months while at most
    that many months, years past that."""
    ledger.append_input(log, jsonl(created_on(["2026-11-01", "2026-11-03"])))
    assert q(log, queries.runs_over_time, "welcome", max_bars=3) == [("2026-11-01", "pending", 1), ("2026-11-03", "pending", 1)]
    ledger.append_input(log, jsonl(created_on(["2027-01-31"])))
    assert q(log, queries.runs_over_time, "welcome", max_bars=3) == [("2026-11", "pending", 2), ("2027-01", "pending", 1)]
    assert q(log, queries.runs_over_time, "welcome", max_bars=2) == [("2026", "pending", 2), ("2027", "pending", 1)]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def any_log(request, store_path):
    """An open event log on a fresh store, on each backend."""
    log = open_log(store_path if request.param == "sqlite" else request.getfixturevalue("postgres_url"))
    yield log
    log.close()


def test_stats_list_nodes_and_edges_in_name_order(any_log):
    """`stats`: nodes by step name, edges by their from and to steps, whatever order the
    runs took them in (PostgreSQL reads the counts back in no order of their own)."""

    def steps(run_id: str, *names: str) -> list[dict[str, Any]]:
        return [e for n in names for e in (step("step.started", run_id, n), step("step.succeeded", run_id, n))]

    ledger.append_input(any_log, jsonl([
        triggered("r1"), ev("run.started", run_id="r1"), *steps("r1", "zeta", "beta", "alpha"),
        triggered("r2"), ev("run.started", run_id="r2"), *steps("r2", "beta", "zeta"),
    ]))
    stats = q(any_log, queries.execution_stats, "welcome")
    assert [n["step"] for n in stats["nodes"]] == ["alpha", "beta", "zeta"]
    assert [(e["from"], e["to"], e["completed"]) for e in stats["edges"]] == [("beta", "alpha", 1), ("beta", "zeta", 1), ("zeta", "beta", 1)]
