"""Provider adapters on payloads built from the providers' documented samples
(tests/fixtures/), with signatures made here with real keys and checked both ways."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from urllib.parse import parse_qsl

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flowledger import ledger
from flowledger.errors import InvalidInput
from flowledger.providers import ADAPTERS, SignatureInvalid, SignedRequest
from flowledger.providers import twilio as twilio_adapter
from flowledger.providers import whatsapp as whatsapp_adapter
from flowledger.providers.ingest import fact_event

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
NOW = 1_750_264_000.0


def fixture(name: str) -> bytes:
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def flipped(body: bytes) -> bytes:
    """The body with one byte changed."""
    i = len(body) // 2
    return body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]


# SendGrid: ECDSA P-256 over timestamp + body.


@pytest.fixture(scope="module")
def sendgrid_keys():
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, {"public_key": base64.b64encode(public).decode()}


def sendgrid_request(private, body: bytes, timestamp: str) -> SignedRequest:
    signature = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return SignedRequest(
        body,
        {
            "x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
            "x-twilio-email-event-webhook-timestamp": timestamp,
        },
    )


def test_sendgrid_signature_both_ways(sendgrid_keys):
    private, secrets = sendgrid_keys
    body = fixture("sendgrid-events.json")
    good = sendgrid_request(private, body, str(int(NOW)))
    assert len(ADAPTERS["sendgrid"].facts(good, secrets, NOW)) == 12
    with pytest.raises(SignatureInvalid, match="does not match"):
        ADAPTERS["sendgrid"].facts(SignedRequest(flipped(body), good.headers), secrets, NOW)
    stale = sendgrid_request(private, body, str(int(NOW) - 301))
    with pytest.raises(SignatureInvalid, match="away from now"):
        ADAPTERS["sendgrid"].facts(stale, secrets, NOW)
    with pytest.raises(SignatureInvalid, match="no public_key is configured"):
        ADAPTERS["sendgrid"].facts(good, {}, NOW)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureInvalid):
        ADAPTERS["sendgrid"].facts(sendgrid_request(other, body, str(int(NOW))), secrets, NOW)


def test_sendgrid_public_key_pasted_as_pem_is_accepted(sendgrid_keys):
    private, _ = sendgrid_keys
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    body = fixture("sendgrid-events.json")
    good = sendgrid_request(private, body, str(int(NOW)))
    for key in (pem, pem.replace("\n", "\r\n"), " ".join(pem.split("\n")), "\n" + pem + "\n\n"):
        assert len(ADAPTERS["sendgrid"].facts(good, {"public_key": key}, NOW)) == 12, repr(key)


@pytest.mark.parametrize(
    "key",
    [
        "bm90IGEga2V5",  # base64 of "not a key"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE!!!",  # not base64
        "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYI\n",  # armour cut short
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----",  # a private key
        "rsa",  # replaced below by an RSA public key
    ],
)
def test_a_malformed_sendgrid_public_key_is_a_configuration_error_not_a_bad_signature(sendgrid_keys, key):
    from cryptography.hazmat.primitives.asymmetric import rsa

    if key == "rsa":
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
        key = base64.b64encode(rsa_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    private, _ = sendgrid_keys
    good = sendgrid_request(private, fixture("sendgrid-events.json"), str(int(NOW)))
    with pytest.raises(SignatureInvalid) as refused:
        ADAPTERS["sendgrid"].facts(good, {"public_key": key}, NOW)
    message = str(refused.value)
    assert "FLOWLEDGER_SENDGRID_PUBLIC_KEY" in message and "malformed" in message and "does not match" not in message, message
    assert "Traceback" not in message


def test_sendgrid_translation():
    facts = [ADAPTERS["sendgrid"].translate(i) for i in orjson.loads(fixture("sendgrid-events.json"))]
    kinds = [(f.kind, f.temporary, f.machine) for f in facts]
    assert kinds == [
        ("message.sent", False, False),
        ("message.failed", True, False),  # deferred: never a failure
        ("message.delivered", False, False),
        ("message.opened", False, True),  # Apple's privacy proxy, say
        ("message.opened", False, False),
        ("message.clicked", False, False),
        ("message.bounced", False, False),
        ("message.bounced", True, False),  # blocked: a soft bounce
        ("message.failed", False, False),  # dropped
        ("message.complained", False, False),
        ("message.unsubscribed", False, False),
        ("message.unsubscribed", False, False),
    ]
    first = facts[0]
    assert (first.dedupe_id, first.occurred_at, first.message_id) == ("rbtnWrG1DVDGGGFHFyun0A==", "2017-12-15T00:59:29.000000Z", "msg-00001")
    assert first.provider_message_id == "14c5d75ce93"
    assert facts[5].url == "http://www.sendgrid.com/"
    assert facts[6].message_id is None and facts[6].reason == "500 unknown recipient"


# Mailgun: HMAC-SHA256 of timestamp + token, inside the body.


def mailgun_body(name: str, key: str, timestamp: str | None = None) -> bytes:
    body = orjson.loads(fixture(name))
    sig = body["signature"]
    sig["timestamp"] = timestamp or str(int(NOW))
    sig["signature"] = hmac.new(key.encode(), (sig["timestamp"] + sig["token"]).encode(), hashlib.sha256).hexdigest()
    return orjson.dumps(body)


def test_mailgun_signature_both_ways():
    secrets = {"signing_key": "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"}
    body = mailgun_body("mailgun-delivered.json", secrets["signing_key"])
    (fact,) = ADAPTERS["mailgun"].facts(SignedRequest(body, {}), secrets, NOW)
    assert (fact.kind, fact.message_id, fact.provider_message_id) == ("message.delivered", "msg-00002", "20130503182626.18666.16540@sandbox.mailgun.org")
    tampered = orjson.loads(body)
    tampered["signature"]["token"] = tampered["signature"]["token"][:-1] + "1"
    with pytest.raises(SignatureInvalid):
        ADAPTERS["mailgun"].facts(SignedRequest(orjson.dumps(tampered), {}), secrets, NOW)
    with pytest.raises(SignatureInvalid, match="away from now"):
        ADAPTERS["mailgun"].facts(SignedRequest(mailgun_body("mailgun-delivered.json", secrets["signing_key"], "1529006854"), {}), secrets, NOW)


def test_mailgun_temporary_and_permanent_failures_and_clicks():
    key = "k"
    def one(name):
        return ADAPTERS["mailgun"].facts(SignedRequest(mailgun_body(name, key), {}), {"signing_key": key}, NOW)[0]
    temporary, permanent, clicked = one("mailgun-failed-temporary.json"), one("mailgun-failed-permanent.json"), one("mailgun-clicked.json")
    assert (temporary.kind, temporary.temporary) == ("message.failed", True)
    # Code 605 is Mailgun's suppression drop (nothing was sent), whatever the reason says:
    # a failure, not a bounce. A hard bounce from the recipient's server stays a bounce.
    assert (permanent.kind, permanent.temporary, permanent.reason) == ("message.failed", False, "Not delivering to previously bounced address")
    bounced = one("mailgun-failed-bounce.json")
    assert (bounced.kind, bounced.temporary, bounced.reason) == ("message.bounced", False, "5.1.1 The email account that you tried to reach does not exist.")
    assert (clicked.kind, clicked.url) == ("message.clicked", "https://example.com/start")


@pytest.mark.parametrize(
    "code, description",
    [(605, "Not delivering to previously bounced address"), (606, "Not delivering to unsubscribed address"), (607, "Not delivering to a user who marked your messages as spam"), ("606", "Not delivering to unsubscribed address")],
)
def test_a_mailgun_suppression_code_is_a_failure_never_sent_whatever_the_reason(code, description):
    item = orjson.loads(fixture("mailgun-failed-permanent.json"))["event-data"]
    item = {**item, "reason": "bounce", "delivery-status": {"attempt-no": 1, "message": "", "code": code, "description": description, "session-seconds": 0}}
    fact = ADAPTERS["mailgun"].translate(item)
    assert (fact.kind, fact.temporary, fact.reason) == ("message.failed", False, description)


# Postmark: basic auth on the webhook URL.


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_postmark_basic_auth_both_ways():
    secrets = {"username": "flowledger", "password": "s3cret"}
    body = fixture("postmark-delivery.json")
    (fact,) = ADAPTERS["postmark"].facts(SignedRequest(body, basic("flowledger", "s3cret")), secrets, NOW)
    assert (fact.kind, fact.message_id, fact.occurred_at) == ("message.delivered", "msg-00004", "2019-11-05T16:33:54.907025Z")
    for headers in ({}, basic("flowledger", "s3creT"), {"authorization": "Basic !!!"}):
        with pytest.raises(SignatureInvalid):
            ADAPTERS["postmark"].facts(SignedRequest(body, headers), secrets, NOW)


def test_postmark_records():
    facts = {name: ADAPTERS["postmark"].translate(orjson.loads(fixture(f"postmark-{name}.json"))) for name in ("bounce", "soft-bounce", "open", "click", "subscription-change")}
    assert (facts["bounce"].kind, facts["bounce"].temporary) == ("message.bounced", False)
    assert (facts["soft-bounce"].kind, facts["soft-bounce"].temporary) == ("message.failed", True)
    assert facts["open"].kind == "message.opened"
    assert (facts["click"].kind, facts["click"].url) == ("message.clicked", "https://example.com/start")
    assert facts["subscription-change"].kind == "message.unsubscribed"


# Twilio: HMAC-SHA1 of the URL and the sorted parameters.


def twilio_request(name: str, url: str, token: str) -> SignedRequest:
    body = fixture(name).strip()
    form = dict(parse_qsl(body.decode()))
    return SignedRequest(body, {"x-twilio-signature": twilio_adapter.signature(url, form, token)}, url=url, form=form)


def test_twilio_signature_both_ways():
    token, url = "12345", "https://flowledger.example.com/v1/webhooks/twilio?flowledger_message_id=msg-00006"
    request = twilio_request("twilio-status.txt", url, token)
    (fact,) = ADAPTERS["twilio"].facts(request, {"auth_token": token}, NOW)
    assert (fact.kind, fact.dedupe_id, fact.message_id, fact.recipient) == ("message.delivered", "SM1f0e8ae6ade43cb3c0ce4525424e404f:delivered", "msg-00006", "+15558675310")
    assert fact.occurred_at == "2025-06-18T16:26:40.000000Z"  # received at NOW: Twilio sends no time
    changed = SignedRequest(request.body, request.headers, url=url, form={**request.form, "MessageStatus": "failed"})
    with pytest.raises(SignatureInvalid):
        ADAPTERS["twilio"].facts(changed, {"auth_token": token}, NOW)
    with pytest.raises(SignatureInvalid):
        ADAPTERS["twilio"].facts(SignedRequest(request.body, request.headers, url=url + "x", form=request.form), {"auth_token": token}, NOW)


def test_twilio_whatsapp_failure():
    request = twilio_request("twilio-whatsapp-failed.txt", "https://x.test/hook", "t")
    (fact,) = ADAPTERS["twilio"].facts(request, {"auth_token": "t"}, NOW)
    assert (fact.kind, fact.recipient, fact.reason) == ("message.failed", "+15558675310", "Twilio error 63016")
    event, _ = fact_event(fact)
    assert event["error"] == "Twilio error 63016"


@pytest.mark.parametrize(
    "form, error",
    [
        ({"MessageStatus": "canceled"}, "canceled before it was sent"),
        ({"MessageStatus": "failed", "ErrorCode": "30008"}, "Twilio error 30008"),
        ({"MessageStatus": "undelivered", "ErrorCode": "30003"}, "Twilio error 30003"),
    ],
)
def test_twilio_failures_say_why(form, error):
    fact = ADAPTERS["twilio"].translate({"MessageSid": "SM9", "_received_at": NOW, **form})
    event, _ = fact_event(fact)
    assert (event["type"], event["error"]) == ("message.failed", error)


# WhatsApp Cloud API: HMAC-SHA256 of the body with the app secret.


def test_whatsapp_signature_both_ways_and_statuses():
    secret = "app-secret"
    body = fixture("whatsapp-statuses.json")
    headers = {"x-hub-signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    facts = ADAPTERS["whatsapp"].facts(SignedRequest(body, headers), {"app_secret": secret}, NOW)
    assert [(f.kind, f.message_id) for f in facts] == [("message.sent", "msg-00005"), ("message.read", "msg-00005"), ("message.failed", None)]
    assert facts[2].reason == "131026: Message undeliverable"
    assert facts[0].dedupe_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA:sent"
    with pytest.raises(SignatureInvalid):
        ADAPTERS["whatsapp"].facts(SignedRequest(flipped(body), headers), {"app_secret": secret}, NOW)


def test_whatsapp_handshake():
    secrets = {"verify_token": "meatyhamhock"}
    params = {"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock", "hub.challenge": "1158201444"}
    assert whatsapp_adapter.handshake(params, secrets) == "1158201444"
    with pytest.raises(SignatureInvalid):
        whatsapp_adapter.handshake({**params, "hub.verify_token": "nope"}, secrets)


def test_the_readme_samples_translate():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    section = readme.split("## Provider webhooks", 1)[1].split("\n## ", 1)[0]
    samples = re.findall(r"\n([A-Za-z ]+?) \((?:[^\n]*)\):\n\n```\n(.*?)\n```", section, re.S)
    names = {"SendGrid": "sendgrid", "Mailgun": "mailgun", "Postmark": "postmark", "Twilio": "twilio", "WhatsApp Cloud API": "whatsapp"}
    found = {}
    for label, body in samples:
        provider = names[label.strip()]
        request = SignedRequest(body.encode(), {}, form=dict(parse_qsl(body)) if provider == "twilio" else {})
        found[provider] = [ADAPTERS[provider].translate(i) for i in ADAPTERS[provider].parse(request, NOW)]
    assert set(found) == set(names.values())
    assert [f.kind for facts in found.values() for f in facts] == [
        "message.delivered", "message.delivered", "message.opened", "message.delivered", "message.read"
    ]
    assert [f.message_id for facts in found.values() for f in facts] == ["msg-00009", "msg-00012", "msg-00013", None, "msg-00005"]


# Malformed payloads: a clear error naming the field (and the event, if several), nothing stored.

_STATUS = {"id": "wamid.1", "status": "read", "timestamp": "1750263800"}
MALFORMED = [
    ("postmark", {"RecordType": "Open", "MessageID": "m1"}, 'field "ReceivedAt": expected an ISO 8601 timestamp'),
    ("postmark", {"RecordType": "Open", "MessageID": "m1", "ReceivedAt": 12345}, 'field "ReceivedAt": expected an ISO 8601 timestamp'),
    ("postmark", {"RecordType": "Open", "MessageID": "m1", "ReceivedAt": "yesterday"}, 'field "ReceivedAt"'),
    ("postmark", [{"RecordType": "Delivery", "MessageID": "P2", "DeliveredAt": "2019-11-05T16:33:54Z"}, {"RecordType": "Delivery", "MessageID": "P3", "Recipient": "a@b.c", "DeliveredAt": None}], 'event 1: field "DeliveredAt"'),
    ("postmark", {"RecordType": ["Open"], "ReceivedAt": "2019-11-05T16:33:54Z"}, 'field "RecordType": expected a string'),
    ("mailgun", {"event-data": {"event": "delivered", "id": "e1", "timestamp": 1, "message": "hello"}}, 'field "message": expected an object'),
    ("mailgun", {"event-data": {"event": "delivered", "id": "e1", "timestamp": 1, "message": {"headers": []}}}, 'field "message.headers": expected an object'),
    ("mailgun", {"event-data": {"event": "failed", "id": "e1", "timestamp": 1, "delivery-status": "boom"}}, 'field "delivery-status": expected an object'),
    ("mailgun", {"event-data": {"event": "delivered", "id": "e1", "timestamp": 1e20}}, 'field "timestamp": expected a unix time'),
    ("mailgun", {"event-data": {"event": "delivered", "timestamp": 1}}, 'field "id": expected a string'),
    ("mailgun", {"event-data": {"event": ["delivered"], "id": "e1", "timestamp": 1}}, 'field "event": expected a string'),
    ("mailgun", {"event-data": "hello"}, "expected an event object"),
    ("whatsapp", {"entry": ["x"]}, 'field "entry[0]": expected an object'),
    ("whatsapp", {"entry": [{"changes": [{"value": {"statuses": "x"}}]}]}, 'field "entry[0].changes[0].value.statuses": expected a list'),
    ("whatsapp", {"entry": [{"changes": [{"value": {"statuses": [{**_STATUS, "status": "failed", "errors": ["bad"]}]}}]}]}, 'field "errors[0]": expected an error object'),
    ("whatsapp", {"entry": [{"changes": [{"value": {"statuses": [_STATUS, {**_STATUS, "timestamp": "1e30"}]}}]}]}, 'event 1: field "timestamp": expected a unix time'),
    ("twilio", {"MessageSid": "SM1", "MessageStatus": "delivered", "To": 5}, 'field "To": expected a string'),
    ("twilio", {"MessageSid": "SM1", "MessageStatus": "delivered", "_received_at": "soon"}, 'field "_received_at": expected a unix time'),
    ("sendgrid", [{"event": "delivered", "sg_message_id": 5, "timestamp": 1}], 'field "sg_message_id": expected a string'),
    ("sendgrid", [{"event": "delivered", "sg_message_id": "s.f", "timestamp": 1e308}], 'field "timestamp": expected a unix time'),
    ("sendgrid", [{"event": "delivered", "timestamp": 1}, {"event": "delivered", "timestamp": "NaN"}], 'event 1: field "timestamp"'),
    ("sendgrid", [{"event": {"name": "delivered"}, "timestamp": 1}], 'field "event": expected a string'),
]


@pytest.mark.parametrize("provider, payload, expected", MALFORMED)
def test_a_malformed_export_is_refused_naming_the_field_and_nothing_is_stored(log, provider, payload, expected):
    with pytest.raises(InvalidInput) as refused:
        ledger.append_export(log, provider, orjson.dumps(payload))
    (problem,) = refused.value.problems
    assert problem.message.startswith(f"not a {provider} export: ") and expected in problem.message, problem.message
    assert "unhashable" not in problem.message and "has no attribute" not in problem.message
    assert log.count() == 0
