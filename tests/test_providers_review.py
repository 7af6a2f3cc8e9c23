"""Provider webhooks as the providers really send them, through the HTTP app: what is
stored, and what the delivery view makes of it (a review of the adapters' mappings)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import orjson
import pytest
from fastapi.testclient import TestClient

from flowledger import ledger, queries
from flowledger.api.app import create_app
from flowledger.providers import twilio as twilio_adapter
from flowledger.store import open_log
from tests.conftest import ev
from tests.histories import jsonl

SECRETS = {
    "mailgun": {"signing_key": "mg-key"},
    "postmark": {"username": "pm", "password": "pw"},
    "twilio": {"auth_token": "tw-token"},
}
POSTMARK_AUTH = {"Authorization": "Basic cG06cHc=", "Content-Type": "application/json"}  # pm:pw


@pytest.fixture
def api(store_path):
    with TestClient(create_app(store_path, provider_secrets=SECRETS)) as client:
        yield client


def record(store_path: str, events: list[dict]) -> None:
    """Append the sender's own events (the message, before its provider's webhooks)."""
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl(events))
    finally:
        log.close()


def stored(store_path: str, message_id: str) -> list[dict]:
    """The events stored for a message, in log order."""
    log = open_log(store_path)
    try:
        with log.backend.transaction(write=False) as c:
            return [orjson.loads(s) for s in log.backend.stream_states(c, "message:" + message_id)]
    finally:
        log.close()


def delivery(store_path: str, message_id: str) -> dict:
    """The delivery view's record of a message."""
    log = open_log(store_path)
    try:
        return ledger.query(log, queries.show_delivery, message_id)
    finally:
        log.close()


def queued(message_id: str, channel: str, provider: str, at: str) -> dict:
    return ev("message.queued", message_id=message_id, channel=channel, recipient="u1", provider=provider, occurred_at=at)


def mailgun_body(event: dict, token: str | None = None, key: str = "mg-key") -> bytes:
    timestamp = str(int(time.time()))
    token = token or hashlib.sha256(orjson.dumps(event)).hexdigest()[:50]
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return orjson.dumps({"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event})


def mailgun_post(api: TestClient, event: dict | bytes, token: str | None = None):
    body = event if isinstance(event, bytes) else mailgun_body(event, token)
    return api.post("/v1/webhooks/mailgun", content=body, headers={"Content-Type": "application/json"})


def twilio_post(api: TestClient, form: dict, query: str, signed_url: str, headers: dict | None = None):
    signature = twilio_adapter.signature(signed_url, form, "tw-token")
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    return api.post("/v1/webhooks/twilio" + query, content=urlencode(form), headers=headers)


def stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Twilio: RawDlrDoneDate has no time zone (it is the carrier's, and carriers differ).


def test_a_twilio_callback_is_timed_by_its_receipt_not_by_the_carriers_zoneless_done_date(api, store_path):
    # A carrier five hours behind UTC: its done date, read as UTC, is hours before the send.
    before = time.time()
    record(store_path, [queued("m-sms", "sms", "twilio", stamp(before - 60))])
    carrier = datetime.fromtimestamp(before - 5 * 3600, UTC).strftime("%y%m%d%H%M")
    form = {"MessageSid": "SM1", "MessageStatus": "sent", "To": "+15550001"}
    query = "?flowledger_message_id=m-sms"
    url = "http://testserver/v1/webhooks/twilio" + query
    assert twilio_post(api, form, query, url).json()["appended"] == 1
    delivered = {**form, "MessageStatus": "delivered", "RawDlrDoneDate": carrier}
    assert twilio_post(api, delivered, query, url).json()["appended"] == 1
    after = time.time()
    (event,) = [e for e in stored(store_path, "m-sms") if e["type"] == "message.delivered"]
    assert stamp(before) <= event["occurred_at"] <= stamp(after)
    assert event["raw"]["RawDlrDoneDate"] == carrier  # kept as Twilio sent it
    record_ = delivery(store_path, "m-sms")
    assert record_["status"] == "delivered" and record_["sent_at"] <= record_["delivered_at"]


def test_a_twilio_file_without_receipt_times_still_takes_the_done_date(log):
    # An export has no receipt time: the done date (read as UTC) is the best there is.
    line = urlencode({"MessageSid": "SM1", "MessageStatus": "delivered", "RawDlrDoneDate": "2611010901", "flowledger_message_id": "m1"})
    ledger.append_input(log, jsonl([queued("m1", "sms", "twilio", "2026-11-01T09:00:00Z")]))
    ledger.append_export(log, "twilio", line.encode())
    assert ledger.query(log, queries.show_delivery, "m1")["delivered_at"] == "2026-11-01T09:01:00.000000Z"


def test_a_twilio_signature_made_without_the_default_port_matches_a_request_with_it(store_path):
    # Twilio drops the port of an HTTPS URL before signing; a proxy may still pass it on
    # in the Host header (so the URL the app sees has :443).
    with TestClient(create_app(store_path, provider_secrets=SECRETS), base_url="https://flowledger.example.com") as api:
        _twilio_signed_without_port(api)


def _twilio_signed_without_port(api: TestClient) -> None:
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+15550001"}
    query = "?flowledger_message_id=m-sms"
    r = twilio_post(api, form, query, "https://flowledger.example.com/v1/webhooks/twilio" + query, {"Host": "flowledger.example.com:443"})
    assert r.status_code == 200 and r.json()["appended"] == 1
    wrong = {"X-Twilio-Signature": twilio_adapter.signature("https://other.example.com/v1/webhooks/twilio" + query, form, "tw-token"), "Host": "flowledger.example.com:443", "Content-Type": "application/x-www-form-urlencoded"}
    assert api.post("/v1/webhooks/twilio" + query, content=urlencode(form), headers=wrong).status_code == 401


# Mailgun.

MAILGUN = {
    "recipient": "alice@example.com",
    "message": {"headers": {"message-id": "20130503182626.18666.16540@sandbox.mailgun.org"}},
    "user-variables": {"flowledger_message_id": "m-email"},
}


def test_a_mailgun_drop_for_a_suppressed_address_is_a_failure_never_sent_not_a_bounce(api, store_path):
    record(store_path, [queued("m-email", "email", "mailgun", stamp(time.time() - 60))])
    event = {
        **MAILGUN, "event": "failed", "id": "mg-1", "timestamp": time.time(), "severity": "permanent", "reason": "suppress-bounce",
        "delivery-status": {"attempt-no": 1, "message": "", "code": 605, "description": "Not delivering to previously bounced address"},
    }
    assert mailgun_post(api, event).json()["appended"] == 1
    (fact,) = [e for e in stored(store_path, "m-email") if e["id"] == "mailgun:mg-1"]
    assert fact["type"] == "message.failed" and fact["error"] == "Not delivering to previously bounced address"
    record_ = delivery(store_path, "m-email")
    assert (record_["status"], record_["ever_sent"]) == ("failed", False)


def test_a_mailgun_hard_bounce_is_still_a_bounce(api, store_path):
    event = {
        **MAILGUN, "event": "failed", "id": "mg-2", "timestamp": time.time(), "severity": "permanent", "reason": "bounce",
        "delivery-status": {"attempt-no": 1, "message": "No Such User Here", "code": 550, "description": ""},
    }
    assert mailgun_post(api, event).json()["appended"] == 1
    (fact,) = stored(store_path, "m-email")
    assert (fact["type"], fact["reason"]) == ("message.bounced", "No Such User Here")


def test_a_mailgun_rejected_message_is_a_failure_not_skipped(api, store_path):
    record(store_path, [queued("m-email", "email", "mailgun", stamp(time.time() - 60))])
    event = {**MAILGUN, "event": "rejected", "id": "mg-3", "timestamp": time.time(), "reject": {"reason": "", "description": "Sandbox subdomains are for test purposes only"}}
    assert mailgun_post(api, event).json() == {"appended": 1, "duplicates": 0, "held": 0, "skipped": 0}
    (fact,) = [e for e in stored(store_path, "m-email") if e["id"] == "mailgun:mg-3"]
    assert (fact["type"], fact["error"]) == ("message.failed", "Sandbox subdomains are for test purposes only")
    assert delivery(store_path, "m-email")["status"] == "failed"


def test_a_mailgun_token_cannot_vouch_for_a_second_body(api, store_path):
    # The signature covers timestamp + token, not the events: a captured token must not
    # carry other events while its timestamp is fresh. The same body again is a resend.
    delivered = mailgun_body({**MAILGUN, "event": "delivered", "id": "mg-4", "timestamp": time.time()}, token="t" * 50)
    assert mailgun_post(api, delivered).json()["appended"] == 1
    assert mailgun_post(api, delivered).json()["duplicates"] == 1
    forged = {**MAILGUN, "event": "complained", "id": "mg-5", "timestamp": time.time()}
    r = mailgun_post(api, forged, token="t" * 50)
    assert r.status_code == 401 and "another body" in r.json()["detail"]
    assert [e["id"] for e in stored(store_path, "m-email")] == ["mailgun:mg-4"]


# Postmark.

POSTMARK = {"MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "ServerID": 23, "MessageStream": "outbound", "Metadata": {"flowledger_message_id": "m-email"}}


def postmark_post(api: TestClient, record_: dict):
    return api.post("/v1/webhooks/postmark", content=orjson.dumps({**POSTMARK, **record_}), headers=POSTMARK_AUTH)


@pytest.mark.parametrize(
    "reason, origin",
    [("HardBounce", "Recipient"), ("SpamComplaint", "Recipient"), ("ManualSuppression", "Customer"), ("ManualSuppression", "Admin")],
)
def test_a_postmark_suppression_that_is_no_unsubscribe_counts_as_none(api, store_path, reason, origin):
    # Postmark suppresses a hard-bounced or complaining address (its Bounce or SpamComplaint
    # record reports that), and the sender or Postmark may suppress one: no unsubscribe.
    record(store_path, [queued("m-email", "email", "postmark", "2020-02-01T10:50:00Z")])
    change = {"RecordType": "SubscriptionChange", "ChangedAt": "2020-02-01T10:53:34.416071Z", "Recipient": "j@example.com", "Origin": origin, "SuppressSending": True, "SuppressionReason": reason}
    assert postmark_post(api, change).json() == {"appended": 0, "duplicates": 0, "held": 0, "skipped": 1}
    assert delivery(store_path, "m-email")["unsubscribed_at"] is None


def test_a_postmark_unsubscribe_by_the_recipient_is_still_an_unsubscribe(api, store_path):
    change = {"RecordType": "SubscriptionChange", "ChangedAt": "2020-02-01T10:53:34.416071Z", "Recipient": "j@example.com", "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "ManualSuppression"}
    assert postmark_post(api, change).json()["appended"] == 1
    assert [e["type"] for e in stored(store_path, "m-email")] == ["message.unsubscribed"]


@pytest.mark.parametrize("bounce_type", ["Unsubscribe", "Subscribe", "AddressChange", "ChallengeVerification"])
def test_a_postmark_reply_filed_as_a_bounce_does_not_undo_the_delivery(api, store_path, bounce_type):
    # These "bounces" are replies to a message that arrived (Postmark's bounce types 16,
    # 32, 128, 16384), not a refusal: the delivery stands.
    record(store_path, [queued("m-email", "email", "postmark", "2019-11-05T16:30:00Z")])
    assert postmark_post(api, {"RecordType": "Delivery", "Recipient": "j@example.com", "DeliveredAt": "2019-11-05T16:33:54.9070259Z"}).json()["appended"] == 1
    bounce = {"RecordType": "Bounce", "ID": 42, "Type": bounce_type, "TypeCode": 16, "Description": "a reply", "Email": "j@example.com", "BouncedAt": "2019-11-05T16:40:00Z", "Inactive": False}
    assert postmark_post(api, bounce).json()["appended"] == 1
    assert delivery(store_path, "m-email")["status"] == "delivered"


# Signatures.


def test_a_signed_timestamp_that_is_not_a_time_is_refused(api, store_path):
    # "nan" parses as a float whose age compares false with everything: it must not pass
    # as fresh (the replay window would never close for it).
    event = {**MAILGUN, "event": "delivered", "id": "mg-6", "timestamp": time.time()}
    token = "n" * 50
    signature = hmac.new(b"mg-key", ("nan" + token).encode(), hashlib.sha256).hexdigest()
    body = {"signature": {"timestamp": "nan", "token": token, "signature": signature}, "event-data": event}
    r = api.post("/v1/webhooks/mailgun", content=orjson.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and "not a number" in r.json()["detail"]
    assert stored(store_path, "m-email") == []


# Matching by a provider's message id, with or without the angle brackets of RFC 5322.

BRACKETED = "<20261101090000.1.ABCDEF@mg.example.com>"


def sent_with(provider_id: str) -> list[dict]:
    """The sender's message, recording the provider's id as its send API returned it."""
    return [
        queued("m-mg", "email", "mailgun", stamp(time.time() - 60)),
        ev("message.sent", message_id="m-mg", provider_message_id=provider_id, occurred_at=stamp(time.time() - 59)),
    ]


def mailgun_delivered(provider_id: str, event_id: str = "mg-b1") -> dict:
    """A delivered event naming its message by Mailgun's message-id header alone."""
    return {"event": "delivered", "id": event_id, "timestamp": time.time(), "recipient": "alice@example.com", "message": {"headers": {"message-id": provider_id}}}


def unmatched_ids(store_path: str) -> list[str]:
    log = open_log(store_path)
    try:
        return [u["event_id"] for u in ledger.unmatched(log)]
    finally:
        log.close()


@pytest.mark.parametrize("sent_id, webhook_id", [(BRACKETED, BRACKETED[1:-1]), (BRACKETED[1:-1], BRACKETED), (BRACKETED, BRACKETED)])
def test_a_mailgun_fact_held_before_its_message_joins_it_whatever_the_angle_brackets(api, store_path, sent_id, webhook_id):
    # Mailgun's send API answers "<id@domain>"; its webhooks carry the header without them.
    assert mailgun_post(api, mailgun_delivered(webhook_id)).json()["held"] == 1
    result = record_result(store_path, sent_with(sent_id))
    assert (result.appended, result.released) == (3, 1)
    assert unmatched_ids(store_path) == []
    events = stored(store_path, "m-mg")
    assert [e["type"] for e in events] == ["message.queued", "message.sent", "message.delivered"]
    # The bodies stay as each side sent them.
    assert (events[1]["provider_message_id"], events[2]["provider_message_id"]) == (sent_id, webhook_id)
    assert delivery(store_path, "m-mg")["status"] == "delivered"


@pytest.mark.parametrize("sent_id, webhook_id", [(BRACKETED, BRACKETED[1:-1]), (BRACKETED[1:-1], BRACKETED)])
def test_a_mailgun_fact_after_its_message_joins_it_whatever_the_angle_brackets(api, store_path, sent_id, webhook_id):
    record(store_path, sent_with(sent_id))
    assert mailgun_post(api, mailgun_delivered(webhook_id)).json() == {"appended": 1, "duplicates": 0, "held": 0, "skipped": 0}
    assert unmatched_ids(store_path) == []
    assert stored(store_path, "m-mg")[-1]["provider_message_id"] == webhook_id
    assert delivery(store_path, "m-mg")["status"] == "delivered"


def test_an_exported_mailgun_file_matches_a_bracketed_message_id_both_orders(log):
    export = orjson.dumps({"event-data": mailgun_delivered(BRACKETED[1:-1], "mg-x1")})
    result, _ = ledger.append_export(log, "mailgun", export)
    assert result.held == 1
    ledger.append_input(log, jsonl(sent_with(BRACKETED)))
    assert ledger.unmatched(log) == []
    clicked = {**mailgun_delivered(BRACKETED[1:-1], "mg-x2"), "event": "clicked", "url": "https://example.com/go"}
    result, _ = ledger.append_export(log, "mailgun", orjson.dumps({"event-data": clicked}))
    assert (result.appended, result.held) == (1, 0)
    assert ledger.query(log, queries.show_delivery, "m-mg")["status"] == "clicked"


def test_an_id_that_is_only_angle_brackets_matches_nothing(log):
    # "<>" is an empty id once its brackets are off: like an empty one, it names no message.
    ledger.append_input(log, jsonl([queued("m-a", "email", "mailgun", "2026-11-01T09:00:00Z"), ev("message.sent", message_id="m-a", provider_message_id="<>")]))
    result, _ = ledger.append_export(log, "mailgun", orjson.dumps({"event-data": mailgun_delivered("", "mg-e1")}))
    assert result.held == 1


def test_links_and_held_facts_of_a_store_made_before_ids_were_matched_without_brackets(log):
    # Such a store linked "<id>" (as message.sent gave it) and held Mailgun's facts under
    # "id": they match now, and a held one is released by the next fact for its message.
    ledger.append_input(log, jsonl(sent_with(BRACKETED)))
    first = {**mailgun_delivered(BRACKETED[1:-1], "mg-old"), "timestamp": time.time() - 30}
    with log.backend.transaction(write=True, append=True) as c:
        c.execute("DELETE FROM provider_links")
        log.backend.link(c, [(BRACKETED, "m-mg")])
        event = {"id": "mailgun:mg-old", "type": "message.delivered", "occurred_at": stamp(first["timestamp"]), "message_id": f"unmatched:mailgun:{BRACKETED[1:-1]}", "provider": "mailgun", "provider_message_id": BRACKETED[1:-1], "raw": first}
        log.backend.hold(c, [(event["id"], BRACKETED[1:-1], "mailgun", event["type"], event["occurred_at"], stamp(time.time()), orjson.dumps(event))])
    opened = {**mailgun_delivered(BRACKETED[1:-1], "mg-new"), "event": "opened"}
    result, _ = ledger.append_export(log, "mailgun", orjson.dumps({"event-data": opened}))
    assert (result.appended, result.held, result.released) == (2, 0, 1)
    assert ledger.unmatched(log) == []
    assert ledger.query(log, queries.show_delivery, "m-mg")["status"] == "opened"


def record_result(store_path: str, events: list[dict]):
    """Append the sender's own events; the append's result."""
    log = open_log(store_path)
    try:
        return ledger.append_input(log, jsonl(events))[0]
    finally:
        log.close()


# SendGrid's verification key, as SendGrid shows it (base64 DER, or PEM in places).


def test_a_sendgrid_key_pasted_as_pem_checks_signatures_and_a_malformed_one_says_so(store_path):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    body = orjson.dumps([{"email": "a@example.com", "event": "delivered", "timestamp": int(time.time()), "sg_event_id": "sg-1", "sg_message_id": "sg1.f", "flowledger_message_id": "m-sg"}])
    ts = str(int(time.time()))
    signature = base64.b64encode(private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    headers = {"X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": ts, "Content-Type": "application/json"}
    from flowledger.api.app import secrets_from_environment

    secrets = secrets_from_environment({"FLOWLEDGER_SENDGRID_PUBLIC_KEY": pem})
    with TestClient(create_app(store_path, provider_secrets=secrets)) as client:
        assert client.post("/v1/webhooks/sendgrid", content=body, headers=headers).json()["appended"] == 1
    garbled = secrets_from_environment({"FLOWLEDGER_SENDGRID_PUBLIC_KEY": pem.replace("M", "", 1)[:60]})
    with TestClient(create_app(store_path, provider_secrets=garbled)) as client:
        r = client.post("/v1/webhooks/sendgrid", content=body, headers=headers)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert "FLOWLEDGER_SENDGRID_PUBLIC_KEY" in r.json()["detail"] and "malformed" in r.json()["detail"]


# Twilio: a scheduled message cancelled before it was sent.


def test_a_cancelled_twilio_message_says_it_was_never_sent(api, store_path):
    record(store_path, [queued("m-sms", "sms", "twilio", stamp(time.time() - 60))])
    query = "?flowledger_message_id=m-sms"
    form = {"MessageSid": "SM7", "MessageStatus": "canceled", "To": "+15550001"}
    assert twilio_post(api, form, query, "http://testserver/v1/webhooks/twilio" + query).json()["appended"] == 1
    (fact,) = [e for e in stored(store_path, "m-sms") if e["type"] == "message.failed"]
    assert fact["error"] == "canceled before it was sent"
    failed = {"MessageSid": "SM8", "MessageStatus": "undelivered", "ErrorCode": "30003", "To": "+15550001"}
    query = "?flowledger_message_id=m-sms2"
    assert twilio_post(api, failed, query, "http://testserver/v1/webhooks/twilio" + query).json()["appended"] == 1
    assert stored(store_path, "m-sms2")[0]["error"] == "Twilio error 30003"
