"""Provider webhooks end to end: signed requests to the API, exported files, matching by
the provider's message id, and the same workflow details as flowledger's own vocabulary."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import time
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger, queries
from flowledger.api.app import create_app
from flowledger.providers import twilio as twilio_adapter
from flowledger.store import open_log
from tests.conftest import ev, triggered
from tests.histories import fresh_log, jsonl

PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(
    PRIVATE.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()
SECRETS = {"sendgrid": {"public_key": PUBLIC}, "twilio": {"auth_token": "tw-token"}, "whatsapp": {"app_secret": "meta", "verify_token": "vt"}}


def sendgrid_headers(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    sig = PRIVATE.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": ts,
        "Content-Type": "application/json",
    }


def run_with_messages():
    """A run that sent an email (m-email) and an SMS (m-sms), as the sender records them."""
    return [
        triggered("r1", occurred_at="2026-11-01T09:00:00Z"),
        ev("run.started", run_id="r1", occurred_at="2026-11-01T09:00:01Z"),
        ev("step.started", run_id="r1", step="email-1", step_type="send_email", attempt=1, occurred_at="2026-11-01T09:00:02Z"),
        ev("message.queued", message_id="m-email", channel="email", recipient="u1", run_id="r1", step="email-1", provider="sendgrid", occurred_at="2026-11-01T09:00:02Z"),
        ev("message.sent", message_id="m-email", provider_message_id="sgmsg1", occurred_at="2026-11-01T09:00:03Z"),
        ev("step.succeeded", run_id="r1", step="email-1", step_type="send_email", attempt=1, occurred_at="2026-11-01T09:00:03Z"),
        ev("step.started", run_id="r1", step="sms-1", step_type="send_sms", attempt=1, occurred_at="2026-11-01T09:00:04Z"),
        ev("message.queued", message_id="m-sms", channel="sms", recipient="+15550001", run_id="r1", step="sms-1", provider="twilio", occurred_at="2026-11-01T09:00:04Z"),
        ev("message.sent", message_id="m-sms", provider_message_id="SM123", cost={"amount": 0.0079, "currency": "USD"}, occurred_at="2026-11-01T09:00:05Z"),
        ev("step.succeeded", run_id="r1", step="sms-1", step_type="send_sms", attempt=1, occurred_at="2026-11-01T09:00:05Z"),
    ]


T0 = 1793523600  # 2026-11-01T09:00:00Z


def sendgrid_events(with_custom_args: bool = True):
    extra = {"flowledger_message_id": "m-email"} if with_custom_args else {}
    base = {"email": "u1@example.com", "sg_message_id": "sgmsg1.filter0001"}
    return [
        {**base, "event": "delivered", "timestamp": T0 + 10, "sg_event_id": "e-deliv", **extra},
        {**base, "event": "open", "timestamp": T0 + 11, "sg_machine_open": True, "sg_event_id": "e-open-machine", **extra},
        {**base, "event": "open", "timestamp": T0 + 600, "sg_machine_open": False, "sg_event_id": "e-open", **extra},
        {**base, "event": "click", "timestamp": T0 + 660, "url": "https://example.com/go", "sg_event_id": "e-click", **extra},
    ]


TWILIO_LINES = [
    {"MessageSid": "SM123", "MessageStatus": "sent", "To": "+15550001", "RawDlrDoneDate": "2611010900"},
    {"MessageSid": "SM123", "MessageStatus": "delivered", "To": "+15550001", "RawDlrDoneDate": "2611010901"},
]


@pytest.fixture
def api(store_path):
    with TestClient(create_app(store_path, provider_secrets=SECRETS)) as client:
        yield client


def test_a_signed_sendgrid_batch_is_stored_and_a_bad_one_is_401_with_nothing_stored(api, store_path):
    body = orjson.dumps(sendgrid_events())
    bad = body.replace(b"e-deliv", b"e-delix")
    r = api.post("/v1/webhooks/sendgrid", content=bad, headers=sendgrid_headers(body))
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    stale = api.post("/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body, int(time.time()) - 600))
    assert stale.status_code == 401
    log = open_log(store_path)
    assert log.count() == 0
    log.close()
    r = api.post("/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))
    assert r.json() == {"appended": 4, "duplicates": 0, "held": 0, "skipped": 0}
    again = api.post("/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))
    assert again.json() == {"appended": 0, "duplicates": 4, "held": 0, "skipped": 0}


def test_no_secret_configured_means_no_webhooks(store_path):
    with TestClient(create_app(store_path, provider_secrets={})) as client:
        r = client.post("/v1/webhooks/mailgun", content=b"{}", headers={"Content-Type": "application/json"})
        assert r.status_code == 401 and "no signing_key is configured" in r.json()["detail"]
        # The operator reading it needs the variable to set, not the field's inner name.
        assert "FLOWLEDGER_MAILGUN_SIGNING_KEY" in r.json()["detail"]


def test_a_provider_flowledger_does_not_know_is_404_and_the_schema_lists_the_known_ones(api):
    r = api.post("/v1/webhooks/acme", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert "sendgrid" in r.json()["detail"]
    parameters = api.app.openapi()["paths"]["/v1/webhooks/{provider}"]["post"]["parameters"]
    assert parameters[0]["schema"]["enum"] == ["mailgun", "postmark", "sendgrid", "twilio", "whatsapp"]


def test_twilio_callbacks_are_form_encoded_and_sign_the_url(api):
    url = "http://testserver/v1/webhooks/twilio?flowledger_message_id=m-sms"
    form = {"MessageSid": "SM123", "MessageStatus": "delivered", "To": "+15550001"}
    headers = {"X-Twilio-Signature": twilio_adapter.signature(url, form, "tw-token"), "Content-Type": "application/x-www-form-urlencoded"}
    r = api.post("/v1/webhooks/twilio?flowledger_message_id=m-sms", content=urlencode(form), headers=headers)
    assert r.json()["appended"] == 1
    forged = {**headers, "X-Twilio-Signature": twilio_adapter.signature(url, {**form, "MessageStatus": "read"}, "tw-token")}
    assert api.post("/v1/webhooks/twilio?flowledger_message_id=m-sms", content=urlencode(form), headers=forged).status_code == 401


def test_whatsapp_handshake_and_signature(api):
    assert api.get("/v1/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "42"}).text == "42"
    assert api.get("/v1/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "no", "hub.challenge": "42"}).status_code == 403
    body = orjson.dumps({"entry": [{"changes": [{"value": {"statuses": [{"id": "wamid.1", "status": "read", "timestamp": str(T0), "recipient_id": "1"}]}}]}]})
    sig = "sha256=" + hmac.new(b"meta", body, hashlib.sha256).hexdigest()
    r = api.post("/v1/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": sig, "Content-Type": "application/json"})
    assert r.json() == {"appended": 0, "duplicates": 0, "held": 1, "skipped": 0}


def test_an_event_for_an_unknown_message_waits_and_joins_when_the_message_is_known(log):
    body = orjson.dumps(sendgrid_events(with_custom_args=False))
    result, _ = ledger.append_export(log, "sendgrid", body)
    assert (result.appended, result.held) == (0, 4)
    assert [u["provider_message_id"] for u in ledger.unmatched(log)] == ["sgmsg1"] * 4
    result, _ = ledger.append_input(log, jsonl(run_with_messages()))
    assert result.appended == 10 + 4 and ledger.unmatched(log) == []
    delivery = ledger.query(log, queries.show_delivery, "m-email")
    assert (delivery["status"], delivery["opens_total"], delivery["human_opened_at"]) == ("clicked", 2, "2026-11-01T09:10:00.000000Z")
    again, _ = ledger.append_export(log, "sendgrid", body)
    assert (again.appended, again.duplicates, again.held) == (0, 4, 0)


def own_vocabulary():
    """The same facts as the provider files, in flowledger's own events."""
    return [
        ev("message.delivered", message_id="m-email", occurred_at="2026-11-01T09:00:10Z"),
        ev("message.opened", message_id="m-email", machine=True, occurred_at="2026-11-01T09:00:11Z"),
        ev("message.opened", message_id="m-email", occurred_at="2026-11-01T09:10:00Z"),
        ev("message.clicked", message_id="m-email", url="https://example.com/go", occurred_at="2026-11-01T09:11:00Z"),
        ev("message.sent", message_id="m-sms", occurred_at="2026-11-01T09:00:00Z"),
        ev("message.delivered", message_id="m-sms", occurred_at="2026-11-01T09:01:00Z"),
    ]


def test_exported_sendgrid_and_twilio_events_give_the_same_workflow_details_as_our_own_events():
    twilio_file = "\n".join(urlencode(line) for line in TWILIO_LINES).encode()
    with fresh_log() as (theirs, _), fresh_log() as (ours, _):
        ledger.append_input(theirs, jsonl(run_with_messages()))
        ledger.append_export(theirs, "sendgrid", orjson.dumps(sendgrid_events(with_custom_args=False)))
        ledger.append_export(theirs, "twilio", twilio_file)
        ledger.append_input(ours, jsonl(run_with_messages() + own_vocabulary()))
        a = ledger.query(theirs, queries.workflow_details, "welcome")
        b = ledger.query(ours, queries.workflow_details, "welcome")
        assert a == b
        assert (a["channels"]["email"]["opened"], a["channels"]["email"]["human_opened"], a["channels"]["sms"]["sent"]) == (1, 1, 1)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.permutations(range(4)), st.lists(st.integers(0, 3), max_size=4), st.integers(0, 4), st.booleans())
def test_any_order_and_repetition_of_a_providers_events_gives_the_same_views(order, repeats, split, custom_args):
    events = sendgrid_events(with_custom_args=custom_args)
    shuffled = [events[i] for i in order] + [events[i] for i in repeats]
    with fresh_log() as (a, _), fresh_log() as (b, _):
        ledger.append_input(a, jsonl(run_with_messages()))
        ledger.append_export(a, "sendgrid", orjson.dumps(events))
        # Some webhooks before the sender's own record of the message, some after, some twice.
        ledger.append_export(b, "sendgrid", orjson.dumps(shuffled[:split] or [events[order[0]]]))
        ledger.append_input(b, jsonl(run_with_messages()))
        ledger.append_export(b, "sendgrid", orjson.dumps(shuffled[split:] or [events[order[0]]]))
        ledger.append_export(b, "sendgrid", orjson.dumps(events))
        for q in (lambda c: queries.show_delivery(c, "m-email"), lambda c: queries.workflow_details(c, "welcome"), lambda c: queries.show_run(c, "r1")):
            assert ledger.query(a, q) == ledger.query(b, q)


def signed_postmark(body: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(b"pm:pw").decode(), "Content-Type": "application/json"}


def signed_whatsapp(body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(b"meta", body, hashlib.sha256).hexdigest(), "Content-Type": "application/json"}


WITH_POSTMARK = {**SECRETS, "postmark": {"username": "pm", "password": "pw"}}
_STATUS = {"id": "wamid.1", "status": "read", "timestamp": str(T0)}


@pytest.mark.parametrize(
    "provider, payload, expected",
    [
        ("postmark", {"RecordType": "Open", "MessageID": "m1"}, 'field "ReceivedAt": expected an ISO 8601 timestamp'),
        ("postmark", {"RecordType": "Open", "MessageID": "m1", "ReceivedAt": 12345}, 'field "ReceivedAt"'),
        ("postmark", {"RecordType": "Delivery", "MessageID": "P3", "Recipient": "a@b.c", "DeliveredAt": None}, 'field "DeliveredAt"'),
        ("postmark", {"RecordType": "Open", "MessageID": ["m1"], "ReceivedAt": "2019-11-05T16:40:54Z"}, 'field "MessageID": expected a string'),
        ("whatsapp", {"entry": ["x"]}, 'field "entry[0]": expected an object'),
        ("whatsapp", {"entry": [{"changes": [{"value": {"statuses": [_STATUS, {**_STATUS, "status": "failed", "errors": ["bad"]}]}}]}]}, 'event 1: field "errors[0]"'),
        ("whatsapp", {"entry": [{"changes": [{"value": {"statuses": [{**_STATUS, "timestamp": "1e30"}]}}]}]}, 'field "timestamp": expected a unix time'),
        ("whatsapp", {"entry": [{"changes": [{"value": {"statuses": [{**_STATUS, "status": ["read"]}]}}]}]}, 'field "status": expected a string'),
    ],
)
def test_a_malformed_webhook_is_a_422_naming_the_field_and_stores_nothing(store_path, provider, payload, expected):
    body = orjson.dumps(payload)
    headers = signed_postmark(body) if provider == "postmark" else signed_whatsapp(body)
    with TestClient(create_app(store_path, provider_secrets=WITH_POSTMARK)) as client:
        r = client.post(f"/v1/webhooks/{provider}", content=body, headers=headers)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith(f"not a {provider} webhook: ") and expected in r.json()["detail"], r.json()
    log = open_log(store_path)
    assert log.count() == 0 and ledger.unmatched(log) == []
    log.close()


def test_webhooks_redact_the_keys_named_in_flowledger_redact_keys(store_path, monkeypatch):
    monkeypatch.setenv("FLOWLEDGER_REDACT_KEYS", "ssn, pin")
    events = [{**e, "ssn": "123-45-6789", "custom_args": {"pin": "424242"}} for e in sendgrid_events()]
    body = orjson.dumps(events)
    with TestClient(create_app(store_path, provider_secrets=SECRETS)) as client:
        r = client.post("/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))
        assert r.json()["appended"] == 4
    raw = b"".join(open(store_path + s, "rb").read() for s in ("", "-wal") if os.path.exists(store_path + s))
    assert b"sgmsg1" in raw and b"[REDACTED]" in raw
    assert b"123-45-6789" not in raw and b"424242" not in raw


def test_a_webhook_body_over_the_limit_is_refused_before_it_is_all_read(store_path):
    # Unauthenticated: a chunked body with no Content-Length must not be held whole in memory.
    sent = 0

    async def chunks():
        nonlocal sent
        for _ in range(40):
            sent += 1
            yield b" " * (1024 * 1024)

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(store_path, provider_secrets=SECRETS))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.post("/v1/webhooks/twilio", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})

    r = asyncio.run(post())
    assert r.status_code == 413 and "10,485,760" in r.json()["detail"]
    assert sent <= 12  # the limit's 10 MiB and a chunk, not the 40 MiB sent
    with TestClient(create_app(store_path, provider_secrets=SECRETS)) as client:
        r = client.post("/v1/webhooks/twilio", content=b"x", headers={"Content-Length": str(600_000_000)})
    assert r.status_code == 413 and "600,000,000" in r.json()["detail"]
