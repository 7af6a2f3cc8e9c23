"""The delivery fold: one test per precedence rule, and order independence as a property.

Facts are (log position, event body) pairs of one message. The helper builds bodies that
the vocabulary accepts (checked below), so the rules are tested on facts the log can hold.
"""

from __future__ import annotations

import ast
import copy
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger.domain.vocabulary import validate_event
from flowledger.projections import delivery
from flowledger.projections.delivery import DELIVERY_FIELDS, STATUS_RANK, delivery_record

MID = "msg-1"

QUEUED_DEFAULTS: dict[str, Any] = {
    "channel": "email",
    "recipient": "user-1",
    "run_id": "run-1",
    "step": "email-1",
    "provider": "sendgrid",
}


def at(minute: int, second: int = 0) -> str:
    """A stored (UTC, microsecond) timestamp on the test day, at 09:minute:second."""
    return f"2026-11-01T09:{minute:02d}:{second:02d}.000000Z"


def fact(position: int, kind: str, when: str, **fields: Any) -> tuple[int, dict[str, Any]]:
    """A fact of message MID: its log position and a body of type message.<kind>."""
    body: dict[str, Any] = {
        "id": f"evt-{position}",
        "type": f"message.{kind}",
        "occurred_at": when,
        "message_id": MID,
    }
    if kind == "queued":
        for key, value in QUEUED_DEFAULTS.items():
            fields.setdefault(key, value)
    elif kind == "clicked":
        fields.setdefault("url", "https://example.com/a")
    elif kind == "failed":
        fields.setdefault("error", "provider unavailable")
    body.update(fields)
    return position, body


def record(*facts: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    """The record of MID from these facts, checking that the reversed order agrees."""
    forward = delivery_record(MID, list(facts))
    assert delivery_record(MID, list(reversed(facts))) == forward
    return forward


def cost(amount: float, currency: str = "USD") -> dict[str, Any]:
    """A cost field."""
    return {"amount": amount, "currency": currency}


# --- the shape --------------------------------------------------------------------------


def test_helper_builds_facts_the_vocabulary_accepts():
    for kind in ("queued", "sent", "delivered", "read", "opened", "clicked", "bounced", "failed"):
        _, body = fact(1, kind, at(0), cost=cost(0.01))
        stored = validate_event(body)
        assert stored == body


def test_record_has_exactly_the_fields_in_order():
    rec = record(fact(1, "queued", at(0)))
    assert tuple(rec) == DELIVERY_FIELDS
    assert len(set(DELIVERY_FIELDS)) == len(DELIVERY_FIELDS) == 27


def test_no_facts_gives_an_empty_record():
    rec = delivery_record(MID, [])
    assert rec["message_id"] == MID
    assert rec["status"] is None and rec["updated_at"] is None
    assert (rec["opens_total"], rec["opens_unique"], rec["clicks_total"], rec["clicks_unique"]) == (0, 0, 0, 0)
    assert rec["ever_sent"] is False


def test_the_happy_path():
    rec = record(
        fact(1, "queued", at(0)),
        fact(2, "sent", at(1), provider_message_id="sg-1"),
        fact(3, "delivered", at(2)),
        fact(4, "opened", at(3)),
        fact(5, "clicked", at(4)),
    )
    assert rec == {
        "message_id": MID,
        "channel": "email",
        "provider": "sendgrid",
        "recipient": "user-1",
        "run_id": "run-1",
        "step": "email-1",
        "status": "clicked",
        "queued_at": at(0),
        "sent_at": at(1),
        "delivered_at": at(2),
        "read_at": None,
        "opened_at": at(3),
        "clicked_at": at(4),
        "failed_at": None,
        "opens_total": 1,
        "opens_unique": 1,
        "clicks_total": 1,
        "clicks_unique": 1,
        "cost_amount": None,
        "cost_currency": None,
        "provider_message_id": "sg-1",
        "error": None,
        "ever_sent": True,
        "updated_at": at(4),
        "human_opened_at": at(3),
        "complained_at": None,
        "unsubscribed_at": None,
    }


def test_the_ladder():
    assert STATUS_RANK["queued"] < STATUS_RANK["sent"] < STATUS_RANK["delivered"]
    assert STATUS_RANK["delivered"] < STATUS_RANK["read"] == STATUS_RANK["opened"] < STATUS_RANK["clicked"]


def test_module_is_stdlib_only():
    tree = ast.parse(Path(delivery.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


# --- precedence rules -------------------------------------------------------------------


def test_late_sent_after_delivered_does_not_undo_delivered():
    # Arrives late (stored after delivered) and, by a skewed clock, even happened later.
    rec = record(fact(1, "queued", at(0)), fact(2, "delivered", at(2)), fact(3, "sent", at(3)))
    assert rec["status"] == "delivered"
    assert rec["sent_at"] == at(3) and rec["delivered_at"] == at(2)
    # Late by arrival only.
    rec = record(fact(1, "delivered", at(2)), fact(2, "sent", at(1)))
    assert rec["status"] == "delivered"


def test_late_sent_after_failed_does_not_recover():
    rec = record(
        fact(1, "queued", at(0)),
        fact(2, "failed", at(1), error={"code": 550, "message": "mailbox full"}),
        fact(3, "sent", at(2)),
    )
    assert rec["status"] == "failed"
    assert rec["failed_at"] == at(1)
    assert rec["error"] == "mailbox full"
    assert rec["ever_sent"] is True  # the sent fact is there


def test_failed_error_without_message_is_its_json():
    rec = record(fact(1, "failed", at(1), error={"code": 550, "detail": "é"}))
    assert rec["error"] == '{"code":550,"detail":"é"}'
    assert rec["ever_sent"] is False


def test_whatsapp_read_without_delivered_counts_as_delivered():
    rec = record(
        fact(1, "queued", at(0), channel="whatsapp", provider="meta"),
        fact(2, "sent", at(1)),
        fact(3, "read", at(5)),
    )
    assert rec["status"] == "read"
    assert rec["delivered_at"] == at(5) and rec["read_at"] == at(5)
    assert rec["opened_at"] is None and rec["opens_unique"] == 0


def test_delivered_at_is_the_earliest_proof_of_delivery():
    rec = record(fact(1, "read", at(3)), fact(2, "delivered", at(4)))  # delivered reported late
    assert rec["delivered_at"] == at(3)
    assert rec["status"] == "read"


def test_delivered_then_later_bounce_downgrades():
    rec = record(
        fact(1, "queued", at(0)),
        fact(2, "sent", at(1)),
        fact(3, "delivered", at(2)),
        fact(4, "bounced", at(7), reason="550 5.1.1 user unknown"),
    )
    assert rec["status"] == "bounced"
    assert rec["failed_at"] == at(7)
    assert rec["error"] == "550 5.1.1 user unknown"
    assert rec["delivered_at"] == at(2)  # first times stay as they happened
    rec = record(fact(1, "delivered", at(2)), fact(2, "bounced", at(7)))
    assert rec["error"] == "bounced"


def test_soft_bounce_then_delivered_recovers():
    rec = record(
        fact(1, "queued", at(0)),
        fact(2, "bounced", at(1), reason="421 try again later"),
        fact(3, "delivered", at(9)),
    )
    assert rec["status"] == "delivered"
    assert rec["failed_at"] is None and rec["error"] is None


def test_failed_then_delivered_recovers():
    rec = record(fact(1, "failed", at(1)), fact(2, "read", at(3)))
    assert rec["status"] == "read"
    assert rec["failed_at"] is None and rec["error"] is None


def test_soft_bounce_stamped_before_the_send_then_delivered():
    rec = record(fact(1, "sent", at(2)), fact(2, "delivered", at(3)), fact(3, "bounced", at(1)))
    assert rec["status"] == "delivered"


def test_the_last_negative_fact_sets_failed_at_and_error():
    rec = record(
        fact(1, "bounced", at(1), reason="soft"),
        fact(2, "delivered", at(2)),
        fact(3, "failed", at(4), error="hard"),
    )
    assert (rec["status"], rec["failed_at"], rec["error"]) == ("failed", at(4), "hard")


def test_click_without_open_sets_opened_at_to_the_click():
    rec = record(fact(1, "sent", at(1)), fact(2, "clicked", at(4)))
    assert rec["status"] == "clicked"
    assert rec["opened_at"] == at(4) and rec["clicked_at"] == at(4)
    assert rec["delivered_at"] == at(4)  # a click proves delivery
    assert rec["opens_unique"] == 1 and rec["opens_total"] == 1  # the open the click implies


def test_clicks_without_an_open_count_one_open_and_an_open_event_counts_only_itself():
    queued = fact(1, "queued", at(0))
    clicks = [fact(2, "clicked", at(4)), fact(3, "clicked", at(5), url="https://example.com/b")]
    rec = record(queued, *clicks)
    assert (rec["opens_total"], rec["opens_unique"], rec["opened_at"]) == (1, 1, at(4))
    assert (rec["clicks_total"], rec["clicks_unique"]) == (2, 2)
    rec = record(queued, *clicks, fact(4, "opened", at(6)), fact(5, "opened", at(7)))
    assert (rec["opens_total"], rec["opens_unique"], rec["opened_at"]) == (2, 1, at(4))


def test_click_before_any_open_sets_opened_at_to_the_click():
    rec = record(fact(1, "clicked", at(4)), fact(2, "opened", at(6)))
    assert rec["opened_at"] == at(4)
    assert rec["status"] == "clicked"  # a later open never lowers a click


def test_duplicate_facts_count_once():
    opened = fact(3, "opened", at(3))
    clicked = fact(4, "clicked", at(4))
    facts = [fact(1, "queued", at(0)), opened, opened, copy.deepcopy(opened), clicked, clicked]
    rec = delivery_record(MID, facts)
    assert (rec["opens_total"], rec["clicks_total"], rec["clicks_unique"]) == (1, 1, 1)
    assert rec == record(fact(1, "queued", at(0)), opened, clicked)


def test_two_positions_are_two_facts_even_if_alike():
    a = fact(3, "opened", at(3))
    b = (4, dict(a[1], id="evt-4"))
    assert record(a, b)["opens_total"] == 2


def test_two_bodies_for_one_position_is_refused():
    with pytest.raises(ValueError, match="position 3"):
        delivery_record(MID, [fact(3, "opened", at(3)), fact(3, "clicked", at(3))])


def test_a_fact_of_another_message_is_refused():
    pos, body = fact(1, "sent", at(1))
    with pytest.raises(ValueError, match="msg-2"):
        delivery_record(MID, [(pos, dict(body, message_id="msg-2"))])


def test_a_run_event_is_refused():
    with pytest.raises(ValueError, match="not a message event"):
        delivery_record(MID, [(1, {"type": "run.started", "occurred_at": at(0), "run_id": "r"})])


def test_same_timestamp_ties_broken_by_rank_then_event_id():
    same = at(5)
    # sent and delivered in one second, delivered stored first: delivered stands.
    assert record(fact(1, "delivered", same), fact(2, "sent", same))["status"] == "delivered"
    # delivered and bounced in one second: the bounce ranks later.
    assert record(fact(1, "bounced", same), fact(2, "delivered", same))["status"] == "bounced"
    # failed and read in one second: the read ranks later and recovers.
    assert record(fact(1, "read", same), fact(2, "failed", same))["status"] == "read"
    # read and opened share a rank: the later event id stands.
    assert record(fact(1, "read", same), fact(2, "opened", same))["status"] == "opened"
    assert record(fact(1, "opened", same), fact(2, "read", same))["status"] == "read"
    # Two bounces in one second: the later event id gives the reason.
    rec = record(fact(1, "bounced", same, reason="first"), fact(2, "bounced", same, reason="second"))
    assert rec["error"] == "second"


def test_cost_arrives_late_then_a_second_price():
    sent = fact(2, "sent", at(1))
    delivered = fact(3, "delivered", at(2), cost=cost(0.0079))
    rec = record(fact(1, "queued", at(0)), sent, delivered)
    assert (rec["cost_amount"], rec["cost_currency"]) == (0.0079, "USD")
    # A corrected price, reported hours later on a later fact, replaces it.
    repriced = fact(4, "delivered", at(50), cost=cost(0.0081))
    rec = record(fact(1, "queued", at(0)), sent, repriced, delivered)
    assert rec["cost_amount"] == 0.0081
    assert isinstance(rec["cost_amount"], float)
    assert rec["updated_at"] == at(50)
    # Two prices of one instant: the later event id wins.
    rec = record(fact(5, "sent", at(9), cost=cost(1, "EUR")), fact(6, "delivered", at(9), cost=cost(2, "EUR")))
    assert (rec["cost_amount"], rec["cost_currency"]) == (2.0, "EUR")
    assert record(sent)["cost_amount"] is None


def test_cost_is_the_latest_by_time_not_by_stage():
    # The price rides on a sent that happened after the delivered (clock skew): time decides.
    rec = record(fact(1, "delivered", at(2), cost=cost(0.5)), fact(2, "sent", at(3), cost=cost(0.7)))
    assert rec["cost_amount"] == 0.7


def test_provider_event_before_queued_then_queued_fills_channel_and_run():
    delivered = fact(1, "delivered", at(2))
    rec = record(delivered)
    assert rec["status"] == "delivered"
    assert rec["channel"] is rec["run_id"] is rec["step"] is rec["provider"] is rec["recipient"] is None
    assert rec["queued_at"] is None
    recipient = {"id": "u-9", "collection": "customers"}
    rec = record(delivered, fact(2, "queued", at(0), channel="sms", provider="twilio", recipient=recipient))
    assert (rec["channel"], rec["provider"], rec["run_id"], rec["step"]) == ("sms", "twilio", "run-1", "email-1")
    assert rec["recipient"] == recipient
    assert rec["queued_at"] == at(0)
    assert rec["status"] == "delivered"


def test_only_a_sent_fact_is_queued_no_more():
    assert record(fact(1, "sent", at(1)))["status"] == "sent"


def test_queued_only_is_queued_and_not_sent():
    rec = record(fact(1, "queued", at(0)))
    assert rec["status"] == "queued" and rec["ever_sent"] is False


def test_earliest_queued_fact_gives_channel():
    rec = record(
        fact(3, "queued", at(1), channel="sms"),
        fact(2, "queued", at(0), channel="email", run_id="run-a"),
        fact(1, "queued", at(0), channel="push", run_id="run-b"),
    )
    assert (rec["channel"], rec["run_id"]) == ("push", "run-b")


def test_manual_resend_has_no_run():
    _, body = fact(1, "queued", at(0))
    for key in ("run_id", "step", "provider"):
        del body[key]
    rec = record((1, body))
    assert rec["run_id"] is rec["step"] is rec["provider"] is None
    assert rec["channel"] == "email"


def test_latest_provider_message_id():
    rec = record(
        fact(1, "sent", at(1), provider_message_id="a"),
        fact(2, "sent", at(2), provider_message_id="b"),
        fact(3, "sent", at(3)),
        fact(4, "delivered", at(4)),
    )
    assert rec["provider_message_id"] == "b"


def test_bounce_means_it_was_sent():
    rec = record(fact(1, "queued", at(0)), fact(2, "bounced", at(1)))
    assert rec["ever_sent"] is True
    assert rec["sent_at"] is None


def test_unique_versus_total_opens_and_clicks():
    rec = record(
        fact(1, "delivered", at(1)),
        fact(2, "opened", at(2)),
        fact(3, "opened", at(3)),
        fact(4, "opened", at(4)),
        fact(5, "clicked", at(5), url="https://example.com/a"),
        fact(6, "clicked", at(6), url="https://example.com/b"),
        fact(7, "clicked", at(7), url="https://example.com/a"),
    )
    assert (rec["opens_total"], rec["opens_unique"]) == (3, 1)
    assert (rec["clicks_total"], rec["clicks_unique"]) == (3, 2)
    assert rec["opened_at"] == at(2) and rec["clicked_at"] == at(5)


def test_record_does_not_share_the_recipient_object():
    recipient = {"id": "u-9", "collection": "customers"}
    rec = delivery_record(MID, [fact(1, "queued", at(0), recipient=recipient)])
    rec["recipient"]["id"] = "changed"
    assert recipient["id"] == "u-9"


# --- order independence -----------------------------------------------------------------

KINDS = ("queued", "sent", "delivered", "read", "opened", "clicked", "bounced", "failed")
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def message_facts(draw) -> list[tuple[int, dict[str, Any]]]:
    """A set of facts of one message: distinct positions, few distinct times (many ties)."""
    positions = draw(st.lists(st.integers(1, 10_000), min_size=1, max_size=12, unique=True))
    facts = []
    for position in positions:
        kind = draw(st.sampled_from(KINDS))
        fields: dict[str, Any] = {}
        if draw(st.booleans()):
            fields["cost"] = cost(draw(st.sampled_from([0.0, 0.005, 0.01, 1.5])), draw(st.sampled_from(["USD", "EUR"])))
        if kind == "queued":
            fields["channel"] = draw(st.sampled_from(["email", "sms", "whatsapp"]))
            fields["run_id"] = draw(st.sampled_from(["run-1", "run-2"]))
        elif kind == "sent" and draw(st.booleans()):
            fields["provider_message_id"] = f"p-{position}"
        elif kind == "clicked":
            fields["url"] = draw(st.sampled_from(["https://a.example", "https://b.example"]))
        elif kind == "bounced" and draw(st.booleans()):
            fields["reason"] = f"reason-{position}"
        elif kind == "failed":
            fields["error"] = draw(st.sampled_from([f"error-{position}", {"message": "m"}, {"code": position}]))
        facts.append(fact(position, kind, at(0, draw(st.integers(0, 3))), **fields))
    return facts


@SETTINGS
@given(st.data())
def test_any_order_and_any_duplication_give_the_same_record(data):
    facts = data.draw(message_facts(), label="facts")
    expected = delivery_record(MID, facts)
    shuffled = list(data.draw(st.permutations(facts), label="order"))
    repeats = data.draw(st.lists(st.sampled_from(facts), max_size=2 * len(facts)), label="repeats")
    for repeat in repeats:
        # A redelivered webhook re-read from the log: an equal but separate body.
        where = data.draw(st.integers(0, len(shuffled)), label="where")
        shuffled.insert(where, copy.deepcopy(repeat))
    assert delivery_record(MID, iter(shuffled)) == expected


@SETTINGS
@given(message_facts())
def test_invariants_of_any_record(facts):
    rec = delivery_record(MID, facts)
    assert tuple(rec) == DELIVERY_FIELDS
    assert rec["status"] in set(STATUS_RANK) | {"bounced", "failed"}
    assert (rec["failed_at"] is None) == (rec["error"] is None) == (rec["status"] not in ("bounced", "failed"))
    for later in ("read_at", "opened_at", "clicked_at"):
        if rec[later] is not None:
            assert rec["delivered_at"] is not None and rec["delivered_at"] <= rec[later]
    if rec["clicked_at"] is not None:
        assert rec["opened_at"] <= rec["clicked_at"]
    assert rec["opens_unique"] == (1 if rec["opened_at"] else 0)
    assert rec["opens_unique"] <= rec["opens_total"]
    assert rec["clicks_unique"] <= rec["clicks_total"]
    assert rec["updated_at"] == max(body["occurred_at"] for _, body in facts)
    assert (rec["cost_amount"] is None) == all("cost" not in body for _, body in facts)


# --- provider webhooks: deferrals, machines, complaints ----------------------------------


def test_a_deferral_or_soft_bounce_never_counts_as_failed():
    rec = record(
        fact(1, "queued", at(0)),
        fact(2, "sent", at(1)),
        fact(3, "failed", at(2), error="451 try later", temporary=True),
        fact(4, "bounced", at(3), reason="mailbox full", temporary=True),
    )
    assert (rec["status"], rec["failed_at"], rec["error"]) == ("sent", None, None)


def test_a_permanent_failure_after_a_deferral_still_fails():
    rec = record(fact(1, "sent", at(1)), fact(2, "failed", at(2), error="later", temporary=True), fact(3, "failed", at(3), error="gave up"))
    assert (rec["status"], rec["error"]) == ("failed", "gave up")


def test_complaints_and_unsubscribes_change_no_status():
    rec = record(fact(1, "delivered", at(1)), fact(2, "complained", at(5)), fact(3, "unsubscribed", at(6)))
    assert rec["status"] == "delivered"
    assert (rec["complained_at"], rec["unsubscribed_at"]) == (at(5), at(6))


def test_machine_opens_are_counted_but_not_as_human():
    flagged = record(fact(1, "delivered", at(1)), fact(2, "opened", at(3), machine=True))
    assert (flagged["opened_at"], flagged["opens_unique"], flagged["human_opened_at"]) == (at(3), 1, None)
    too_soon = record(fact(1, "delivered", at(1)), fact(2, "opened", at(1, 2)))
    assert too_soon["human_opened_at"] is None
    later = record(fact(1, "delivered", at(1)), fact(2, "opened", at(1, 2)), fact(3, "clicked", at(4)))
    assert later["human_opened_at"] == at(4)
