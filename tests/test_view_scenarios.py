"""The views on the cases users ask about: engagement, cancelled runs, resends, steps, rates."""

from __future__ import annotations

import pytest

from flowledger import ledger, queries
from flowledger.projections.run_record import event_detail
from tests.conftest import ev, step, triggered
from tests.histories import jsonl


def at(minute: int) -> str:
    return f"2026-11-01T09:{minute:02d}:00Z"


def email(message_id, run_id="r1", **fields):
    return ev("message.queued", message_id=message_id, channel="email", recipient="user-1", run_id=run_id, step="email-1", occurred_at=at(1), **fields)


def started_run(run_id="r1", **fields):
    return [triggered(run_id, occurred_at=at(0), **fields), ev("run.started", run_id=run_id, occurred_at=at(0))]


def show(log, run_id="r1"):
    return ledger.show_run(log, run_id)


def test_email_engagement_is_null_until_delivered_then_false_then_the_earliest_open(log):
    ledger.append_input(log, jsonl(started_run() + [email("m1")]))
    assert (show(log)["email_opened"], show(log)["email_clicked"]) == (None, None)
    ledger.append_input(log, jsonl([ev("message.delivered", message_id="m1", occurred_at=at(2))]))
    r = show(log)
    assert (r["email_opened"], r["email_opened_at"], r["email_clicked"]) == (False, None, False)
    ledger.append_input(log, jsonl([ev("message.opened", message_id="m1", occurred_at=at(9)), ev("message.opened", message_id="m1", occurred_at=at(5))]))
    r = show(log)
    assert (r["email_opened"], r["email_opened_at"]) == (True, "2026-11-01T09:05:00.000000Z")


def test_a_click_implies_an_open_at_the_click_time_if_no_earlier_open(log):
    ledger.append_input(log, jsonl(started_run() + [email("m1"), ev("message.clicked", message_id="m1", url="https://x.test", occurred_at=at(4)), ev("message.opened", message_id="m1", occurred_at=at(6))]))
    r = show(log)
    assert (r["email_opened"], r["email_opened_at"], r["email_clicked"], r["email_clicked_at"]) == (True, "2026-11-01T09:04:00.000000Z", True, "2026-11-01T09:04:00.000000Z")


def test_provider_events_before_queued_join_their_run_when_queued_arrives(log):
    ledger.append_input(log, jsonl(started_run() + [ev("message.opened", message_id="m1", occurred_at=at(5))]))
    assert show(log)["email_opened"] is None
    ledger.append_input(log, jsonl([email("m1")]))
    r = show(log)
    assert (r["email_opened"], r["email_opened_at"]) == (True, "2026-11-01T09:05:00.000000Z")
    assert [d["message_id"] for d in r["deliveries"]] == ["m1"]


def test_deliveries_of_a_cancelled_run_count_in_channel_stats_and_the_run_stays_cancelled(log):
    events = started_run() + [email("m1"), ev("run.cancelled", run_id="r1", by="operator", occurred_at=at(2)), ev("message.delivered", message_id="m1", occurred_at=at(3)), ev("message.opened", message_id="m1", occurred_at=at(4))]
    ledger.append_input(log, jsonl(events))
    assert show(log)["status"] == "cancelled"
    email_stats = ledger.query(log, queries.workflow_details, "welcome")["channels"]["email"]
    assert (email_stats["total_contacts"], email_stats["delivered"], email_stats["opened"], email_stats["open_rate"]) == (1, 1, 1, 100.0)


def test_a_replayed_cancel_names_who_asked_and_the_key(log):
    keyed = {"source": "api", "cancellation_key": "K"}
    ledger.append_input(log, jsonl([triggered("r1", occurred_at=at(0)), triggered("r2", occurred_at=at(0), trigger=keyed), triggered("r3", occurred_at=at(0))]))
    ledger.cancel_run(log, "r1", actor="bob", reason="refund")
    ledger.cancel_by_key(log, "K", actor="bob", reason="refund")
    ledger.append_input(log, jsonl([ev("run.cancelled", run_id="r3", by="workflow_deactivated", occurred_at=at(1))]))
    details = {rid: event_detail(ledger.replay(log, rid)[-1].event.body) for rid in ("r1", "r2", "r3")}
    assert details == {"r1": "by operator (bob): refund", "r2": "by cancellation_key K (bob): refund", "r3": "by workflow_deactivated"}


def test_a_manual_resend_is_a_delivery_with_no_run_and_not_in_any_workflow(log):
    resend = ev("message.queued", message_id="m9", channel="sms", recipient="user-1")
    ledger.append_input(log, jsonl(started_run() + [resend, ev("message.sent", message_id="m9", cost={"amount": 0.01, "currency": "USD"})]))
    page = ledger.query(log, queries.list_deliveries, queries.DeliveryFilters(channel="sms"))
    (d,) = page["entries"]
    assert (d["run_id"], d["step"], d["workflow"], d["status"], d["cost_amount"]) == (None, None, None, "sent", 0.01)
    assert ledger.query(log, queries.workflow_details, "welcome")["channels"] == {}
    assert show(log)["deliveries"] == []


def test_a_run_with_no_deliveries_completes_and_is_not_failed(log):
    ledger.append_input(log, jsonl(started_run() + [ev("run.completed", run_id="r1", occurred_at=at(1))]))
    r = show(log)
    assert (r["status"], r["error_count"], r["email_opened"], r["deliveries"]) == ("completed", 0, None, [])


def test_step_states_follow_the_run_pause_resume_and_cancel(log):
    ledger.append_input(log, jsonl(started_run() + [step("step.started", "r1", occurred_at=at(1)), ev("run.paused", run_id="r1", occurred_at=at(2))]))
    assert [s["status"] for s in show(log)["steps"]] == ["idle"]
    ledger.append_input(log, jsonl([ev("run.resumed", run_id="r1", occurred_at=at(3))]))
    assert [s["status"] for s in show(log)["steps"]] == ["running"]
    ledger.append_input(log, jsonl([ev("run.cancelled", run_id="r1", by="operator", occurred_at=at(5))]))
    (s,) = show(log)["steps"]
    assert (s["status"], s["finished_at"], s["duration_seconds"]) == ("stopped", "2026-11-01T09:05:00.000000Z", 240.0)
    stats = ledger.query(log, queries.execution_stats, "welcome")
    assert stats["total"] == {"completed": 0, "failed": 0, "idle": 0, "running": 0, "stopped": 1}


def test_step_trace_with_retries_messages_edges_and_redacted_payloads(log):
    events = started_run() + [
        step("step.started", "r1", occurred_at=at(1)),
        email("m1"),
        step("step.failed", "r1", occurred_at=at(2), error="SMTP 451"),
        ev("run.retrying", run_id="r1", occurred_at=at(2)),
        step("step.started", "r1", attempt=2, occurred_at=at(3)),
        {**email("m2"), "occurred_at": at(3)},
        step("step.succeeded", "r1", attempt=2, occurred_at=at(4)),
        ev("step.started", run_id="r1", step="crm", step_type="integration", attempt=1, occurred_at=at(5), request={"headers": {"Authorization": "Bearer x"}}),
        ev("step.succeeded", run_id="r1", step="crm", step_type="integration", attempt=1, occurred_at=at(6), response={"token": "t", "ok": True}),
        ev("run.completed", run_id="r1", occurred_at=at(7)),
    ]
    ledger.append_input(log, jsonl(events))
    steps = show(log)["steps"]
    assert [(s["step"], s["attempt"], s["status"], s["messages"]) for s in steps] == [
        ("email-1", 1, "failed", ["m1"]),
        ("email-1", 2, "completed", ["m2"]),
        ("crm", 1, "completed", []),
    ]
    assert steps[0]["error"] == "SMTP 451" and steps[1]["duration_seconds"] == 60.0
    assert steps[2]["request"] == {"headers": {"Authorization": "[REDACTED]"}}
    assert steps[2]["response"] == {"token": "[REDACTED]", "ok": True}
    stats = ledger.query(log, queries.execution_stats, "welcome")
    nodes = {n["step"]: n for n in stats["nodes"]}
    assert (nodes["email-1"]["completed"], nodes["email-1"]["failed"], nodes["email-1"]["channel"]) == (1, 1, "email")
    assert [(e["from"], e["to"], e["completed"]) for e in stats["edges"]] == [("email-1", "crm", 1)]
    r = show(log)
    assert (r["retry_count"], r["error_count"], r["error_message"]) == (1, 1, "SMTP 451")


def test_workflow_details_rates_costs_and_progress(log):
    events = started_run("r1") + started_run("r2") + [
        ev("step.started", run_id="r1", step="sms-1", step_type="send_sms", attempt=1, occurred_at=at(1)),
        ev("message.queued", message_id="s1", channel="sms", recipient="u", run_id="r1", step="sms-1"),
        ev("message.sent", message_id="s1", cost={"amount": 0.0079, "currency": "USD"}),
        ev("message.queued", message_id="s2", channel="sms", recipient="u", run_id="r2", step="sms-1"),
        ev("message.failed", message_id="s2", error="unreachable"),
        ev("message.queued", message_id="w1", channel="whatsapp", recipient="u", run_id="r1", step="wa-1"),
        ev("message.read", message_id="w1", occurred_at=at(3)),
        ev("message.sent", message_id="w1", occurred_at=at(2), cost={"amount": 0.05, "currency": "USD"}),
        ev("run.completed", run_id="r2", occurred_at=at(9)),
    ]
    ledger.append_input(log, jsonl(events))
    d = ledger.query(log, queries.workflow_details, "welcome")
    sms, wa = d["channels"]["sms"], d["channels"]["whatsapp"]
    assert (sms["total_contacts"], sms["sent"], sms["failed"], sms["success_rate"], sms["estimated_cost"]) == (2, 1, 1, 50.0, 0.0079)
    assert (wa["delivered"], wa["read"], wa["delivery_rate"], wa["read_rate"]) == (1, 1, 100.0, 100.0)
    assert d["totals"]["total_cost"] == pytest.approx(0.0579) and d["totals"]["currency"] == "USD"
    assert d["progress"] == {"processed": 1, "total": 2, "percentage": 50.0}
    assert d["status"] == "running" and d["completed_at"] is None
    assert sms["execution_count"] == 1  # one distinct sms step executed


def test_rates_with_nothing_to_divide_by_are_null(log):
    ledger.append_input(log, jsonl(started_run() + [email("m1")]))
    e = ledger.query(log, queries.workflow_details, "welcome")["channels"]["email"]
    assert (e["delivered"], e["open_rate"], e["click_rate"]) == (0, None, None)


def test_rehearsal_runs_are_left_out_of_counts_unless_asked(log):
    ledger.append_input(log, jsonl([triggered("r1"), triggered("t1", trigger={"source": "rehearsal"})]))
    assert ledger.query(log, queries.counts)["total"] == 1
    assert ledger.query(log, queries.counts, include_rehearsals=True)["total"] == 2


def test_runs_list_filters(log):
    events = [
        triggered("a", workflow="w1", tenant="t1", recipient="u1", occurred_at=at(1)),
        triggered("b", workflow="w2", tenant="t2", recipient="u2", occurred_at=at(2)),
        *started_run("c"),
        step("step.started", "c", occurred_at=at(3)),
        step("step.failed", "c", occurred_at=at(4)),
    ]
    ledger.append_input(log, jsonl(events))

    def ids(**kw):
        return [r["id"] for r in ledger.query(log, queries.list_runs, queries.RunFilters(**kw))["entries"]]

    assert ids() == ["c", "b", "a"]
    assert ids(workflow="w1") == ["a"]
    assert ids(tenant="t2") == ["b"]
    assert ids(recipient="u1") == ["a"]
    assert ids(statuses=("running",)) == ["c"]
    assert ids(statuses=("pending", "running")) == ["c", "b", "a"]
    assert ids(has_errors=True) == ["c"]
    assert ids(starting_at="2026-11-01T09:01:30.000000Z") == ["b"]
    assert ids(ending_at="2026-11-01T09:01:00.000000Z") == ["c", "a"]
    with pytest.raises(queries.BadQuery):
        ids(statuses=("bogus",))
