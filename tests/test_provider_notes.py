"""The behaviours /work/shared/notes/provider-events.md describes (real webhooks and run
histories: late, repeated, out of order), each checked where no other test already does."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flowledger import ledger, queries
from flowledger.errors import CommandRefused
from flowledger.projections.delivery import delivery_record
from flowledger.providers import ADAPTERS, SignedRequest
from flowledger.providers.ingest import fact_event
from flowledger.store import open_log
from tests.conftest import ev, triggered
from tests.histories import jsonl


def at(minute: int, second: int = 0) -> str:
    return f"2026-11-01T09:{minute:02d}:{second:02d}Z"


def stored(minute: int, second: int = 0) -> str:
    return f"2026-11-01T09:{minute:02d}:{second:02d}.000000Z"


def started(run_id: str = "r1", **fields: Any) -> list[dict[str, Any]]:
    return [triggered(run_id, occurred_at=at(0), **fields), ev("run.started", run_id=run_id, occurred_at=at(0))]


def queued(message_id: str, channel: str = "email", run_id: str | None = "r1", **fields: Any) -> dict[str, Any]:
    if run_id is not None:
        fields.update(run_id=run_id, step=f"{channel}-1")
    return ev("message.queued", message_id=message_id, channel=channel, recipient="user-1", occurred_at=at(1), **fields)


def msg(kind: str, message_id: str, when: str, **fields: Any) -> dict[str, Any]:
    if kind == "clicked":
        fields.setdefault("url", "https://example.com/a")
    if kind == "failed":
        fields.setdefault("error", "unreachable")
    return ev("message." + kind, message_id=message_id, occurred_at=when, **fields)


def opened_and_clicked_twice(message_id: str) -> list[dict[str, Any]]:
    """Two opens and two clicks (on two links) of a message, minutes 10 to 13."""
    return [
        msg("opened", message_id, at(10)),
        msg("opened", message_id, at(11)),
        msg("clicked", message_id, at(12)),
        msg("clicked", message_id, at(13), url="https://example.com/b"),
    ]


def channel(log, name: str, workflow: str = "welcome") -> dict[str, Any]:
    return ledger.query(log, queries.workflow_details, workflow)["channels"][name]


def fold(*bodies: dict[str, Any]) -> dict[str, Any]:
    """The record of one message from bodies given in arrival order (log positions 1, 2, …)."""
    return delivery_record(bodies[0]["message_id"], list(enumerate(bodies, 1)))


# --- delivery is at least once and out of order -------------------------------------------


def test_a_delivered_arriving_after_the_open_leaves_the_message_opened():
    rec = fold(msg("opened", "m1", stored(5)), msg("delivered", "m1", stored(3)))
    assert (rec["status"], rec["delivered_at"], rec["opened_at"]) == ("opened", stored(3), stored(5))


def test_a_late_delivered_does_not_overwrite_a_complaint(log):
    ledger.append_input(log, jsonl([*started(), queued("m1"), msg("complained", "m1", at(9))]))
    ledger.append_input(log, jsonl([msg("delivered", "m1", at(2))]))
    (d,) = ledger.query(log, queries.list_deliveries, queries.DeliveryFilters())["entries"]
    assert (d["status"], d["complained_at"], d["delivered_at"]) == ("delivered", stored(9), stored(2))
    assert channel(log, "email")["complained"] == 1


def _twilio(status: str, received: float) -> dict[str, Any]:
    (item,) = ADAPTERS["twilio"].parse(
        SignedRequest(b"", {}, "https://hooks.test/twilio?flowledger_message_id=m1", {"MessageSid": "SM1", "MessageStatus": status, "To": "+15550100"}),
        received,
    )
    event, _ = fact_event(ADAPTERS["twilio"].translate(item))
    return event


def test_twilio_callbacks_in_any_order_keep_the_later_stage():
    t = 1_793_000_000.0
    # delivered received before sent (twilio-csharp#633): the receipt time orders them.
    assert fold(_twilio("delivered", t), _twilio("sent", t + 30))["status"] == "delivered"
    # undelivered received before sent: a bare sent does not undo the failure.
    assert fold(_twilio("undelivered", t), _twilio("sent", t + 30))["status"] == "failed"
    # read (WhatsApp through Twilio) before delivered: still read, delivered at the read.
    rec = fold(_twilio("read", t), _twilio("delivered", t + 30))
    assert rec["status"] == "read" and rec["delivered_at"] == rec["read_at"]


def test_a_twilio_callback_retried_hours_later_is_one_fact():
    t = 1_793_000_000.0
    first, again = _twilio("delivered", t), _twilio("delivered", t + 4 * 3600)
    # One event id, whatever the receipt time: the log keeps the first of them.
    assert first["id"] == again["id"] and first["occurred_at"] != again["occurred_at"]


# --- the stats a user reads ---------------------------------------------------------------


def test_an_open_before_a_bounce_after_delivery_is_not_in_the_rates_over_delivered(log):
    # A scanner opens within seconds of delivery, then an asynchronous bounce comes: the
    # message failed, so it is in neither the delivered count nor what is divided by it.
    ledger.append_input(
        log,
        jsonl(
            [
                *started(),
                queued("m1"),
                msg("delivered", "m1", at(2)),
                msg("opened", "m1", at(2, 1)),
                msg("clicked", "m1", at(2, 2)),
                msg("opened", "m1", at(30)),
                msg("bounced", "m1", at(59), reason="550 mailbox unknown"),
                queued("m2"),
                msg("delivered", "m2", at(2)),
            ]
        ),
    )
    e = channel(log, "email")
    assert (e["delivered"], e["failed"]) == (1, 1)
    assert (e["opened"], e["clicked"], e["human_opened"]) == (0, 0, 0)
    assert (e["open_rate"], e["click_rate"], e["human_open_rate"]) == (0.0, 0.0, 0.0)


def test_a_rebuild_counts_what_the_live_view_counted(log, store_path):
    events = [*started(), queued("m1"), msg("delivered", "m1", at(2)), msg("opened", "m1", at(30)), msg("bounced", "m1", at(59))]
    for e in events:  # one at a time: each refold moves the counters by its difference
        ledger.append_input(log, jsonl([e]))
    live = channel(log, "email")
    ledger.rebuild(log)
    assert channel(log, "email") == live


def test_unpriced_counts_sent_messages_until_their_price_arrives(log):
    ledger.append_input(log, jsonl([*started(), queued("s1", "sms"), msg("sent", "s1", at(2)), queued("s2", "sms"), msg("failed", "s2", at(2))]))
    sms = channel(log, "sms")
    # s2 never left: there is nothing to price.
    assert (sms["sent"], sms["unpriced"], sms["estimated_cost"]) == (1, 1, 0.0)
    # The price comes a day later on a repeated status (Twilio): the cost is updated.
    ledger.append_input(log, jsonl([msg("delivered", "s1", "2026-11-02T09:00:00Z", cost={"amount": 0.0079, "currency": "USD"})]))
    sms = channel(log, "sms")
    assert (sms["unpriced"], sms["estimated_cost"]) == (0, 0.0079)


def test_costs_in_two_currencies_are_given_apart_per_channel_and_in_totals(log):
    ledger.append_input(
        log,
        jsonl(
            [
                *started(),
                queued("s1", "sms"),
                msg("sent", "s1", at(2), cost={"amount": 0.5, "currency": "USD"}),
                queued("s2", "sms"),
                msg("sent", "s2", at(2), cost={"amount": 0.25, "currency": "EUR"}),
            ]
        ),
    )
    d = ledger.query(log, queries.workflow_details, "welcome")
    sms = d["channels"]["sms"]
    assert (sms["estimated_cost"], sms["costs_by_currency"]) == (None, {"EUR": 0.25, "USD": 0.5})
    assert (d["totals"]["total_cost"], d["totals"]["currency"], d["totals"]["costs_by_currency"]) == (None, "mixed", {"USD": 0.5, "EUR": 0.25})


# --- runs ---------------------------------------------------------------------------------


def test_two_concurrent_retries_pass_once_under_max_retries(store_path):
    setup = open_log(store_path)
    ledger.append_input(setup, jsonl([*started(max_retries=1), ev("run.failed", run_id="r1", error="x", occurred_at=at(1))]))
    setup.close()
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def retry() -> None:
        log = open_log(store_path)
        try:
            barrier.wait()
            ledger.retry_run(log, "r1", actor="ops")
            outcomes.append("retried")
        except CommandRefused:
            outcomes.append("refused")
        finally:
            log.close()

    threads = [threading.Thread(target=retry) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "retried"]
    log = open_log(store_path)
    assert ledger.show_run(log, "r1")["retry_count"] == 1
    log.close()


def test_a_retried_run_that_completed_cannot_be_retried_again(log):
    ledger.append_input(log, jsonl([*started(), ev("run.failed", run_id="r1", error="x", occurred_at=at(1))]))
    ledger.retry_run(log, "r1")
    ledger.append_input(log, jsonl([ev("run.started", run_id="r1", occurred_at=at(3)), ev("run.completed", run_id="r1", occurred_at=at(4))]))
    with pytest.raises(CommandRefused, match="it is completed; only a failed run can be retried"):
        ledger.retry_run(log, "r1")


def test_runs_left_running_are_found_by_status_and_creation_time(log):
    ledger.append_input(
        log,
        jsonl([*started("old"), *started("done"), ev("run.completed", run_id="done", occurred_at=at(5)), triggered("new", occurred_at="2026-11-03T09:00:00Z")]),
    )
    filters = queries.RunFilters(statuses=("running", "pending"), ending_at="2026-11-02T00:00:00.000000Z")
    assert [r["id"] for r in ledger.query(log, queries.list_runs, filters)["entries"]] == ["old"]


def _counters(c, workflow: str) -> dict[tuple[str, str], float]:
    c.execute("SELECT channel, metric, n FROM channel_counts WHERE workflow = ?", (workflow,))
    return {(ch, metric): n for ch, metric, n in c.fetchall()}


def test_channel_counters_keep_total_opens_and_clicks_and_bounces_apart_from_failures(log):
    # Unique and total opens are both wanted (listmonk#676): the counters keep both, and
    # bounces apart from the failures they are counted among.
    ledger.append_input(
        log,
        jsonl(
            [
                *started(),
                queued("m1"),
                msg("delivered", "m1", at(2)),
                *opened_and_clicked_twice("m1"),
                queued("m2"),
                msg("clicked", "m2", at(20)),
                queued("m3"),
                msg("bounced", "m3", at(2)),
                queued("m4"),
                msg("failed", "m4", at(2)),
            ]
        ),
    )
    n = ledger.query(log, _counters, "welcome")
    assert (n[("email", "opened")], n[("email", "opens_total")]) == (2, 3)
    assert (n[("email", "clicked")], n[("email", "clicks_total")]) == (2, 3)
    assert (n[("email", "failed")], n[("email", "bounced")]) == (2, 1)


def test_workflow_details_give_bounces_delivery_rates_and_total_opens_and_clicks(log):
    # Users read a channel's delivery and bounce rates over what was sent, and both unique
    # and total engagement (SendGrid shows both); sms had no delivery figures at all.
    ledger.append_input(
        log,
        jsonl(
            [
                *started(),
                queued("m1"),
                msg("sent", "m1", at(1, 30)),
                msg("delivered", "m1", at(2)),
                *opened_and_clicked_twice("m1"),
                queued("m2"),
                msg("sent", "m2", at(1, 30)),
                msg("bounced", "m2", at(2)),
                queued("m3"),
                msg("sent", "m3", at(1, 30)),
                queued("s1", channel="sms"),
                msg("sent", "s1", at(1, 30)),
                msg("delivered", "s1", at(2)),
                queued("s2", channel="sms"),
                msg("sent", "s2", at(1, 30)),
            ]
        ),
    )
    email = channel(log, "email")
    assert (email["sent"], email["delivered"], email["bounced"]) == (3, 1, 1)
    assert (email["delivery_rate"], email["bounce_rate"]) == (33.33, 33.33)
    assert (email["opened"], email["opens_total"], email["clicked"], email["clicks_total"]) == (1, 2, 1, 2)
    sms = channel(log, "sms")
    assert (sms["sent"], sms["delivered"], sms["delivery_rate"]) == (2, 1, 50.0)
    assert "bounced" not in sms and "opens_total" not in sms
