"""Provider webhook parsing and mapping, pinned by a mutation review: what each provider's
payload becomes (kind, dedupe id, time, reason, message id) where the earlier tests let a
changed mapping through."""

from __future__ import annotations

import orjson
import pytest

from flowledger import ledger
from flowledger.providers import ADAPTERS
from flowledger.providers.ingest import export_items, fact_event
from flowledger.providers.whatsapp import statuses as whatsapp_statuses

NOW = 1_750_264_000.0


def sendgrid_event(event: str, **fields):
    """A SendGrid event with the fields every one carries."""
    item = {"email": "a@example.com", "timestamp": 1513299569, "event": event, "sg_message_id": "14c5d75ce93.filter0001"}
    item.update(fields)
    return item


def test_sendgrid_events_without_an_event_id_are_told_apart_by_their_type():
    """Without sg_event_id, a delivery and an open in the same second are two facts, not a duplicate."""
    delivered = ADAPTERS["sendgrid"].translate(sendgrid_event("delivered"))
    opened = ADAPTERS["sendgrid"].translate(sendgrid_event("open"))
    assert delivered.dedupe_id != opened.dedupe_id


def test_sendgrid_reads_the_message_id_from_custom_args():
    """A flowledger message id under custom_args names the message."""
    fact = ADAPTERS["sendgrid"].translate(sendgrid_event("delivered", custom_args={"flowledger_message_id": "msg-7"}))
    assert fact.message_id == "msg-7"


def test_a_sendgrid_deferral_keeps_the_servers_response_as_its_reason():
    """A deferred event's response (it has no reason field) becomes the failure's error."""
    fact = ADAPTERS["sendgrid"].translate(sendgrid_event("deferred", response="421 try again later", flowledger_message_id="m1"))
    event, _ = fact_event(fact)
    assert (event["type"], event["error"], event["temporary"]) == ("message.failed", "421 try again later", True)


def postmark_open(**fields):
    """A Postmark open record of message msg-1."""
    item = {"RecordType": "Open", "MessageID": "883953f4", "Recipient": "a@example.com", "ReceivedAt": "2019-11-05T16:40:54Z", "Metadata": {"flowledger_message_id": "msg-1"}}
    item.update(fields)
    return item


def test_a_postmark_time_with_an_offset_is_stored_in_utc():
    """A Postmark time given with a -04:00 offset is converted to UTC, not kept as local."""
    fact = ADAPTERS["postmark"].translate(postmark_open(ReceivedAt="2014-08-01T13:28:10.2735393-04:00"))
    assert fact.occurred_at == "2014-08-01T17:28:10.273539Z"


def test_a_postmark_time_without_an_offset_is_read_as_utc():
    """A Postmark time without an offset is read as UTC, to the second."""
    fact = ADAPTERS["postmark"].translate(postmark_open(ReceivedAt="2019-11-05T16:33:54"))
    assert fact.occurred_at == "2019-11-05T16:33:54.000000Z"


def test_the_message_id_may_be_under_message_id_and_an_empty_one_is_passed_over():
    """Metadata's message_id names the message; an empty flowledger_message_id does not hide a later place's id."""
    assert ADAPTERS["postmark"].translate(postmark_open(Metadata={"message_id": "msg-2"})).message_id == "msg-2"
    fact = ADAPTERS["sendgrid"].translate(sendgrid_event("open", flowledger_message_id="", unique_args={"flowledger_message_id": "msg-3"}))
    assert fact.message_id == "msg-3"


def test_a_sendgrid_blocked_bounce_is_stored_as_a_temporary_bounce_with_its_reason():
    """A bounce of type blocked is stored as message.bounced with temporary: true and its reason."""
    fact = ADAPTERS["sendgrid"].translate(sendgrid_event("bounce", type="blocked", reason="550 blocked by policy", flowledger_message_id="m1"))
    event, match_by = fact_event(fact)
    assert (event["type"], event.get("temporary"), event.get("reason"), match_by) == ("message.bounced", True, "550 blocked by policy", None)


def test_a_click_keeps_its_link_with_tokens_in_it_redacted_in_the_event_and_in_raw():
    """A SendGrid click is stored with its url; a token in that url is redacted there and in raw."""
    link = "https://app.example.com/reset?token=s3cr3t-t0ken&utm_source=mail"
    fact = ADAPTERS["sendgrid"].translate(sendgrid_event("click", url=link, sg_event_id="ev-1", flowledger_message_id="m1"))
    ((body, _),) = ledger.prepare_provider_facts([fact]).items
    assert body["url"] == "https://app.example.com/reset?token=[REDACTED]&utm_source=mail"
    assert body["raw"]["url"] == body["url"]
    assert b"s3cr3t-t0ken" not in orjson.dumps(body)


def test_an_export_in_json_lines_with_a_blank_line_in_the_middle_keeps_every_event():
    """A blank line inside a JSON Lines export is skipped; the events after it are still read."""
    lines = [orjson.dumps(sendgrid_event(e, sg_event_id=f"ev-{i}")) for i, e in enumerate(("processed", "delivered", "open"))]
    data = lines[0] + b"\n\n" + lines[1] + b"\n   \n" + lines[2] + b"\n"
    assert [i["event"] for i in export_items("sendgrid", data, NOW)] == ["processed", "delivered", "open"]


def mailgun_event(event: str, **fields):
    """A Mailgun event-data object of message msg-1."""
    item = {"event": event, "id": f"id-{event}", "timestamp": 1521472262.908181, "recipient": "a@example.com", "message": {"headers": {"message-id": "2013.1@mg.example.com"}}, "user-variables": {"flowledger_message_id": "msg-1"}}
    item.update(fields)
    return item



@pytest.mark.parametrize("reason", ["suppress-bounce", "suppress-unsubscribe", "suppress-complaint"])
def test_a_mailgun_suppression_reason_alone_is_a_failure_never_sent(reason):
    """A permanent failure whose reason is a suppression is message.failed even without Mailgun's code."""
    fact = ADAPTERS["mailgun"].translate(mailgun_event("failed", severity="permanent", reason=reason, **{"delivery-status": {"description": "Not delivering"}}))
    assert (fact.kind, fact.temporary, fact.reason) == ("message.failed", False, "Not delivering")


def postmark_bounce(type_: str, **fields):
    """A Postmark bounce record of the given Type."""
    item = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": type_, "MessageID": "883953f4", "Email": "a@example.com", "BouncedAt": "2019-11-05T16:33:54.9070259Z", "Description": "The server was unable to deliver your message", "Details": "smtp;550 5.1.1"}
    item.update(fields)
    return item


@pytest.mark.parametrize("type_", ["SoftBounce", "Transient", "DnsError"])
def test_postmark_soft_bounce_types_are_temporary_failures(type_):
    """Postmark's soft bounce types (a delay) are message.failed with temporary: true and the description as reason."""
    event, _ = fact_event(ADAPTERS["postmark"].translate(postmark_bounce(type_)))
    assert (event["type"], event["temporary"], event["error"]) == ("message.failed", True, "The server was unable to deliver your message")


def test_a_postmark_spam_complaint_is_a_complaint_not_a_bounce():
    """Postmark's SpamComplaint record is message.complained, timed by its BouncedAt."""
    fact = ADAPTERS["postmark"].translate(postmark_bounce("SpamComplaint", RecordType="SpamComplaint"))
    assert (fact.kind, fact.occurred_at) == ("message.complained", "2019-11-05T16:33:54.907025Z")


def test_postmark_opens_of_one_message_are_one_fact_each_and_a_resend_is_the_same_fact():
    """Two opens (no ID) of a message at different times are two facts; the same open again is the same fact."""
    first, later = postmark_open(), postmark_open(ReceivedAt="2019-11-05T17:02:00Z")
    translate = ADAPTERS["postmark"].translate
    assert translate(first).dedupe_id == translate(dict(first)).dedupe_id
    assert translate(first).dedupe_id != translate(later).dedupe_id


def test_a_postmark_open_and_click_in_the_same_instant_are_two_facts():
    """A scanner's open and click of one message at the same time are not taken for one another."""
    click = postmark_open(RecordType="Click", OriginalLink="https://example.com/start")
    translate = ADAPTERS["postmark"].translate
    assert translate(postmark_open()).dedupe_id != translate(click).dedupe_id


@pytest.mark.parametrize(
    "provider, data, count",
    [
        ("sendgrid", orjson.dumps([sendgrid_event("delivered", sg_event_id="ev-1")]), 1),
        ("postmark", orjson.dumps(postmark_open()) + b"\n" + orjson.dumps(postmark_open(ReceivedAt="2019-11-05T17:00:00Z")), 2),
        ("twilio", b"MessageSid=SM1f0e8ae6&MessageStatus=delivered&To=%2B15558675310", 1),
    ],
)
def test_an_export_file_starting_with_a_byte_order_mark_is_read_like_one_without(provider, data, count):
    """A UTF-8 byte-order mark (Windows tools write one) before an export is skipped, as append skips it in flowledger's own format."""
    bom = b"\xef\xbb\xbf"
    items = export_items(provider, bom + data, NOW)
    assert items == export_items(provider, data, NOW) and len(items) == count
    assert len(ADAPTERS[provider].translate_all(items)) == count


def whatsapp_status(wamid: str, status: str, **fields):
    """One WhatsApp statuses[] entry."""
    item = {"id": wamid, "status": status, "timestamp": "1750263800", "recipient_id": "16505551234"}
    item.update(fields)
    return item


def test_every_status_of_every_change_of_every_whatsapp_entry_is_read():
    """A notification with two entries of two changes each gives all their statuses, in order."""
    def change(*statuses):
        return {"field": "messages", "value": {"statuses": list(statuses)}}
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "1", "changes": [change(whatsapp_status("w1", "sent")), change(whatsapp_status("w2", "sent"), whatsapp_status("w2", "delivered"))]},
            {"id": "2", "changes": [{"field": "messages", "value": {"messages": [{"id": "in-1"}]}}, change(whatsapp_status("w3", "read"))]},
        ],
    }
    expected = ["w1:sent", "w2:sent", "w2:delivered", "w3:read"]
    assert [f.dedupe_id for f in ADAPTERS["whatsapp"].translate_all(whatsapp_statuses(body))] == expected
    assert [f.dedupe_id for f in ADAPTERS["whatsapp"].translate_all(export_items("whatsapp", orjson.dumps(body), NOW))] == expected


def test_a_whatsapp_failure_gives_every_error_as_its_reason():
    """Each of a failed status's errors is in the reason, by title, else by message."""
    errors = [{"code": 131026, "title": "Message undeliverable"}, {"code": 131047, "message": "Re-engagement message"}]
    event, _ = fact_event(ADAPTERS["whatsapp"].translate(whatsapp_status("w1", "failed", errors=errors)))
    assert (event["type"], event["error"]) == ("message.failed", "131026: Message undeliverable; 131047: Re-engagement message")


def test_a_twilio_facts_raw_is_twilios_callback_without_flowledgers_receipt_times():
    """The receipt and import times flowledger adds to a callback are not kept in its raw."""
    for ours in ("_received_at", "_imported_at"):
        fact = ADAPTERS["twilio"].translate({"MessageSid": "SM1", "MessageStatus": "delivered", ours: NOW})
        assert fact.raw == {"MessageSid": "SM1", "MessageStatus": "delivered"}


def test_a_fact_with_no_message_id_of_any_kind_is_held_and_listed_not_stored(log):
    """An event naming neither flowledger's message nor the provider's is held (listed by unmatched), never stored under a made-up message."""
    data = orjson.dumps([{"email": "a@example.com", "timestamp": 1513299569, "event": "delivered", "sg_event_id": "ev-lonely"}])
    result, _ = ledger.append_export(log, "sendgrid", data)
    assert (result.appended, result.held) == (0, 1)
    assert [u["event_id"] for u in ledger.unmatched(log)] == ["sendgrid:ev-lonely"]


def test_a_mailgun_permanent_failure_with_a_generic_reason_is_a_bounce():
    """A permanent failure with Mailgun's reason generic (not a suppression) is a hard bounce with its description."""
    status = {"code": 550, "description": "", "message": "550 5.1.1 No such user"}
    fact = ADAPTERS["mailgun"].translate(mailgun_event("failed", severity="permanent", reason="generic", **{"delivery-status": status}))
    assert (fact.kind, fact.temporary, fact.reason) == ("message.bounced", False, "550 5.1.1 No such user")


@pytest.mark.parametrize(
    "provider, item",
    [
        ("sendgrid", sendgrid_event("group_resubscribe", sg_event_id="ev-9")),
        ("sendgrid", sendgrid_event("machine_learning_new_event", sg_event_id="ev-10")),
        ("twilio", {"MessageSid": "SM1", "MessageStatus": "partially_delivered", "_received_at": NOW}),
        ("twilio", {"MessageSid": "SM1", "MessageStatus": "accepted", "_received_at": NOW}),
        ("twilio", {"MessageSid": "SM1", "MessageStatus": "scheduled", "_received_at": NOW}),
        ("twilio", {"MessageSid": "SM1", "MessageStatus": "queued", "_received_at": NOW}),
        ("twilio", {"MessageSid": "SM1", "MessageStatus": "sending", "_received_at": NOW}),
        ("whatsapp", whatsapp_status("w1", "deleted")),
        ("postmark", postmark_open(RecordType="Inbound")),
    ],
)
def test_a_status_flowledger_does_not_know_is_skipped_not_guessed(provider, item):
    """An unknown (or not-a-delivery) status, a resubscription among them, is counted as skipped and stored as nothing."""
    prepared = ledger.prepare_provider_facts(ADAPTERS[provider].translate_all([item]))
    assert (prepared.items, prepared.skipped) == ([], 1)


@pytest.mark.parametrize(
    "event, kind",
    [
        ("accepted", "message.sent"),
        ("rejected", "message.failed"),
        ("delivered", "message.delivered"),
        ("opened", "message.opened"),
        ("clicked", "message.clicked"),
        ("unsubscribed", "message.unsubscribed"),
        ("complained", "message.complained"),
    ],
)
def test_each_mailgun_event_becomes_the_message_event_the_readme_names(event, kind):
    """Mailgun's events map one to one as README lists them (unsubscribed and complained not confused)."""
    fact = ADAPTERS["mailgun"].translate(mailgun_event(event))
    assert (fact.kind, fact.message_id, fact.dedupe_id) == (kind, "msg-1", f"id-{event}")
