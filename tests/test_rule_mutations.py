"""Behaviour a mutation review of the domain rules, the vocabulary, redaction and the provider
adapters found no test holding: each test here fails on a small change to that code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import time
from urllib.parse import urlencode

import orjson
import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api.app import create_app
from flowledger.domain.redaction import REDACTED, Redactor
from flowledger.errors import InvalidInput
from flowledger.ingest import IngestOptions
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_webhooks import SECRETS, sendgrid_events, sendgrid_headers

WITH_ALL = {**SECRETS, "mailgun": {"signing_key": "mg-key"}, "postmark": {"username": "pm", "password": "pw"}}


@pytest.fixture
def api(store_path):
    with TestClient(create_app(store_path, provider_secrets=WITH_ALL)) as client:
        yield client


def problems_of(log, *events):
    """The problems appending the events raises (nothing of them stored)."""
    with pytest.raises(InvalidInput) as info:
        ledger.append_input(log, jsonl(events))
    assert log.count() == 0
    return [p.message for p in info.value.problems]


def message_events(log, message_id):
    """The events stored for a message, in log order."""
    with log.backend.transaction(write=False) as c:
        return [orjson.loads(s) for s in log.backend.stream_states(c, "message:" + message_id)]


# Operator commands.


def test_a_cancel_by_key_records_that_the_key_cancelled_the_run(log):
    """The history says a run stopped by its cancellation key, and by which key."""
    ledger.append_input(log, jsonl([triggered("r1", trigger={"source": "api", "cancellation_key": "order-7"})]))
    assert ledger.cancel_by_key(log, "order-7", actor="bob") == ["r1"]
    last = log.run_events("r1")[-1].body
    assert (last["type"], last["by"], last["cancellation_key"], last["actor"]) == ("run.cancelled", "cancellation_key", "order-7", "bob")


# The vocabulary's bounds.


def test_a_timestamp_without_an_offset_is_refused_asking_for_one(log):
    """A zoneless occurred_at is refused, and the message says an offset is what is missing."""
    (message,) = problems_of(log, triggered("r1", occurred_at="2026-11-01T09:00:00"))
    assert 'field "occurred_at"' in message and "with an offset" in message


def test_hour_24_is_refused_even_on_a_date_already_seen(log):
    """The fast path for dates seen before still checks the time's ranges."""
    ledger.append_input(log, jsonl([triggered("r1", occurred_at="2026-11-03T09:00:00Z")]))
    with pytest.raises(InvalidInput) as info:
        ledger.append_input(log, jsonl([ev("run.started", run_id="r1", occurred_at="2026-11-03T24:00:00Z")]))
    assert 'field "occurred_at"' in info.value.problems[0].message
    assert log.count() == 1


def test_a_key_id_of_766_bytes_is_refused_though_only_255_characters(log):
    """A workflow key is at most 765 bytes in UTF-8 (one byte more is refused)."""
    workflow = "\U0001f600" + "\u4e00" * 254  # 255 characters, 4 + 762 = 766 bytes
    (message,) = problems_of(log, triggered("r1", workflow=workflow))
    assert 'field "workflow": expected at most 765 bytes in UTF-8' in message


@pytest.mark.parametrize("recipient", ["u" * 256, {"id": "u" * 256, "collection": "users"}, {"id": "u1", "collection": "c" * 256}])
def test_a_recipient_of_256_characters_is_refused(log, recipient):
    """A recipient id (plain or in a collection) has at most 255 characters, like every id."""
    (message,) = problems_of(log, triggered("r1", recipient=recipient))
    assert message.startswith('field "recipient": expected a recipient id')


def test_an_id_with_a_delete_character_is_refused(log):
    """DEL (U+007F) is a control character: no id may hold it."""
    (message,) = problems_of(log, triggered("r\x7f1"))
    assert 'field "run_id": expected an id' in message


@pytest.mark.parametrize("kind, fields", [("message.bounced", {}), ("message.failed", {"error": "x"})])
def test_temporary_must_be_a_boolean_not_a_word(log, kind, fields):
    """temporary is strict: "false" as a string would read as a soft bounce or deferral."""
    (message,) = problems_of(log, ev(kind, message_id="m1", temporary="false", **fields))
    assert 'field "temporary"' in message


def test_an_empty_error_object_is_refused(log):
    """An error is a message or an object with details: {} says nothing of why."""
    (message,) = problems_of(log, triggered("r1"), ev("run.failed", run_id="r1", error={}))
    assert 'field "error"' in message


# Redaction.


# As the README's Secrets section lists them (not read from the code, which could drop one).
README_SECRET_KEYS = (
    "authorization proxy_authorization api_key apikey x_api_key token access_token refresh_token id_token auth_token secret "
    "client_secret password passwd cookie set_cookie private_key secret_key session_token x_auth_token aws_secret_access_key"
).split()


@pytest.mark.parametrize("key", README_SECRET_KEYS)
def test_every_default_secret_key_is_redacted_before_it_is_stored(log, key):
    """Each key the README lists is a secret under data, in any case and spelling."""
    spelled = key.upper().replace("_", "-")
    ledger.append_input(log, jsonl([triggered("r1", data={"nested": [{key: "s3cr3t-value-1", spelled: "s3cr3t-value-2"}]})]))
    (stored,) = [e.body for e in log.run_events("r1")]
    assert stored["data"]["nested"][0] == {key: REDACTED, spelled: REDACTED}


def test_a_header_named_under_header_has_its_value_redacted(log):
    """A header list entry may name its header under "header", its value under "value"."""
    request = {"headers": [{"header": "Authorization", "value": "Bearer abc123XYZ"}, {"header": "Accept", "value": "json"}]}
    ledger.append_input(log, jsonl([triggered("r1"), ev("run.started", run_id="r1"),
                                     ev("step.started", run_id="r1", step="call", step_type="integration", attempt=1, request=request)]))
    stored = log.run_events("r1")[-1].body
    assert stored["request"]["headers"] == [{"header": "Authorization", "value": REDACTED}, {"header": "Accept", "value": "json"}]


def test_a_proxy_authorization_header_in_text_loses_its_credential_whatever_its_scheme():
    """Proxy-Authorization's value is a scheme and a credential, as Authorization's is."""
    text = "407 from proxy: Proxy-Authorization: token ghp_16C7e42F292c69"
    assert Redactor().redact_text(text) == "407 from proxy: Proxy-Authorization: token [REDACTED]"


def test_a_url_parameter_value_ends_at_a_semicolon():
    """A secret parameter's value runs to the next & ; or #: what follows is kept byte for byte."""
    url = "https://x.example/cb?token=abc123;theme=dark"
    assert Redactor().redact_url(url) == "https://x.example/cb?token=[REDACTED];theme=dark"


def test_a_short_basic_credential_is_redacted():
    """Basic with a short credential is still a credential (no minimum beyond "basic x")."""
    assert Redactor().redact_text("Basic Zm9v") == "Basic [REDACTED]"


def test_an_extra_key_longer_than_the_default_ones_is_found_in_text():
    """A configured key of 29 characters is found after "=" as a default one is."""
    redactor = Redactor(extra=["stripe_webhook_signing_secret"])
    text = "config: stripe_webhook_signing_secret=whsec_9aF3kL2x"
    assert redactor.redact_text(text) == "config: stripe_webhook_signing_secret=[REDACTED]"


# Webhook signatures.


def test_a_sendgrid_timestamp_from_the_future_is_refused(api, store_path):
    """Freshness is both ways: a signed timestamp ten minutes ahead is no better than one behind."""
    body = orjson.dumps(sendgrid_events())
    r = api.post("/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body, int(time.time()) + 600))
    assert r.status_code == 401 and "away from now" in r.json()["detail"]


def _last_hex_changed(signature: str) -> str:
    return signature[:-1] + ("0" if signature[-1] != "0" else "1")


def test_a_whatsapp_signature_wrong_only_in_its_last_digit_is_refused(api):
    """The whole HMAC is compared, not a prefix of it."""
    body = orjson.dumps({"entry": [{"changes": [{"value": {"statuses": [{"id": "wamid.9", "status": "read", "timestamp": str(int(time.time()))}]}}]}]})
    good = "sha256=" + hmac.new(b"meta", body, hashlib.sha256).hexdigest()
    r = api.post("/v1/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": _last_hex_changed(good), "Content-Type": "application/json"})
    assert r.status_code == 401


def test_a_mailgun_signature_wrong_only_in_its_last_digit_is_refused(api):
    """Mailgun's hex HMAC is compared whole too."""
    timestamp, token = str(int(time.time())), "z" * 50
    good = hmac.new(b"mg-key", (timestamp + token).encode(), hashlib.sha256).hexdigest()
    event = {"event": "delivered", "id": "mg-x", "timestamp": time.time(), "user-variables": {"flowledger_message_id": "m1"}}
    body = orjson.dumps({"signature": {"timestamp": timestamp, "token": token, "signature": _last_hex_changed(good)}, "event-data": event})
    assert api.post("/v1/webhooks/mailgun", content=body, headers={"Content-Type": "application/json"}).status_code == 401


def test_a_twilio_callback_whose_fields_are_not_in_name_order_is_accepted(api):
    """Twilio signs the parameters sorted by name, whatever order the body has them in."""
    url = "http://testserver/v1/webhooks/twilio"
    form = {"To": "+15550001", "MessageStatus": "delivered", "MessageSid": "SM777", "AccountSid": "AC1"}
    # Signed here as Twilio documents it, not by the adapter's own helper.
    payload = url + "".join(k + form[k] for k in sorted(form))
    signature = base64.b64encode(hmac.new(b"tw-token", payload.encode(), hashlib.sha1).digest()).decode()
    r = api.post("/v1/webhooks/twilio", content=urlencode(form), headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["held"] == 1


def test_an_empty_configured_secret_takes_no_webhooks(store_path):
    """An app secret of "" is none: a body signed with the empty key is refused."""
    body = orjson.dumps({"entry": [{"changes": [{"value": {"statuses": [{"id": "wamid.8", "status": "read", "timestamp": str(int(time.time()))}]}}]}]})
    forged = "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()
    with TestClient(create_app(store_path, provider_secrets={"whatsapp": {"app_secret": ""}})) as client:
        r = client.post("/v1/webhooks/whatsapp", content=body, headers={"X-Hub-Signature-256": forged, "Content-Type": "application/json"})
    assert r.status_code == 401 and "no app_secret is configured" in r.json()["detail"]


def test_a_postmark_password_with_the_right_start_is_still_wrong(api):
    """The whole password is compared: "pw" followed by more is not "pw"."""
    auth = "Basic " + base64.b64encode(b"pm:pw-and-more").decode()
    record_ = {"RecordType": "Open", "MessageID": "pm-5", "ReceivedAt": "2019-11-05T16:40:54Z"}
    r = api.post("/v1/webhooks/postmark", content=orjson.dumps(record_), headers={"Authorization": auth, "Content-Type": "application/json"})
    assert r.status_code == 401


def test_the_whatsapp_handshake_answers_only_a_subscribe(api):
    """The right verify token with another hub.mode gets no challenge echoed."""
    params = {"hub.mode": "unsubscribe", "hub.verify_token": "vt", "hub.challenge": "42"}
    assert api.get("/v1/webhooks/whatsapp", params=params).status_code == 403


# Provider mappings.


def test_sendgrid_custom_args_name_the_message(log):
    """A flowledger message id under custom_args names the message (no matching needed)."""
    item = {"event": "delivered", "timestamp": 1793523610, "sg_event_id": "e1", "sg_message_id": "other.filter1", "custom_args": {"flowledger_message_id": "m-email"}}
    result, _ = ledger.append_export(log, "sendgrid", orjson.dumps([item]))
    assert (result.appended, result.held) == (1, 0)
    assert [e["type"] for e in message_events(log, "m-email")] == ["message.delivered"]


def test_a_blank_flowledger_message_id_is_passed_over_for_one_given_elsewhere(log):
    """A blank flowledger_message_id at the top level does not hide the one in custom_args."""
    item = {"event": "delivered", "timestamp": 1793523610, "sg_event_id": "e4", "sg_message_id": "sgmsg9.filter1",
            "flowledger_message_id": "", "custom_args": {"flowledger_message_id": "m-email"}}
    result, _ = ledger.append_export(log, "sendgrid", orjson.dumps([item]))
    assert (result.appended, result.held) == (1, 0)
    assert [e["type"] for e in message_events(log, "m-email")] == ["message.delivered"]


def test_a_sendgrid_deferral_without_a_reason_takes_the_servers_response_as_its_error(log):
    """A deferred event carries the receiving server's answer in response: that is the why."""
    item = {"event": "deferred", "timestamp": 1793523610, "sg_event_id": "e2", "flowledger_message_id": "m1", "response": "450 4.2.1 mailbox busy", "attempt": "1"}
    ledger.append_export(log, "sendgrid", orjson.dumps([item]))
    (stored,) = message_events(log, "m1")
    assert (stored["type"], stored["error"], stored["temporary"]) == ("message.failed", "450 4.2.1 mailbox busy", True)


def test_a_mailgun_drop_for_a_complaint_suppression_is_a_failure_by_its_reason_alone(log):
    """reason suppress-complaint, with no delivery-status code, is a failure never sent, not a bounce."""
    item = {"event": "failed", "severity": "permanent", "reason": "suppress-complaint", "id": "mg-sc", "timestamp": 1793523610, "user-variables": {"flowledger_message_id": "m1"}}
    ledger.append_export(log, "mailgun", orjson.dumps(item))
    assert [e["type"] for e in message_events(log, "m1")] == ["message.failed"]


def test_a_postmark_resubscription_is_skipped(log):
    """SuppressSending false is the recipient subscribing again: no unsubscribe."""
    change = {"RecordType": "SubscriptionChange", "MessageID": "pm-1", "ChangedAt": "2020-02-01T10:53:34Z", "Recipient": "j@example.com",
              "Origin": "Recipient", "SuppressSending": False, "SuppressionReason": "ManualSuppression", "Metadata": {"flowledger_message_id": "m1"}}
    result, skipped = ledger.append_export(log, "postmark", orjson.dumps(change))
    assert (result.appended, skipped) == (0, 1)


def test_two_postmark_opens_of_one_message_are_two_opens(log):
    """Open records have no ID of their own: their time tells them apart, so a second open is no duplicate."""
    opens = [{"RecordType": "Open", "MessageID": "pm-2", "ReceivedAt": at, "Metadata": {"flowledger_message_id": "m1"}}
             for at in ("2019-11-05T16:40:54Z", "2019-11-06T08:00:00Z")]
    result, _ = ledger.append_export(log, "postmark", orjson.dumps(opens))
    assert (result.appended, result.duplicates) == (2, 0)


def test_a_postmark_spam_complaint_is_timed_by_its_bounced_at(log):
    """A SpamComplaint record carries its time in BouncedAt."""
    complaint = {"RecordType": "SpamComplaint", "ID": 42, "MessageID": "pm-3", "BouncedAt": "2019-11-05T16:33:54Z", "Email": "j@example.com", "Metadata": {"flowledger_message_id": "m1"}}
    ledger.append_export(log, "postmark", orjson.dumps(complaint))
    (stored,) = message_events(log, "m1")
    assert (stored["type"], stored["occurred_at"]) == ("message.complained", "2019-11-05T16:33:54.000000Z")


def whatsapp_export(status: dict) -> bytes:
    return orjson.dumps({"entry": [{"changes": [{"value": {"statuses": [status]}}]}]})


def test_a_whatsapp_opaque_id_that_reads_as_a_json_number_still_names_the_message(log):
    """biz_opaque_callback_data "12345" is the message id 12345, though it parses as JSON."""
    status = {"id": "wamid.5", "status": "delivered", "timestamp": "1750263800", "biz_opaque_callback_data": "12345"}
    result, _ = ledger.append_export(log, "whatsapp", whatsapp_export(status))
    assert (result.appended, result.held) == (1, 0)
    assert [e["type"] for e in message_events(log, "12345")] == ["message.delivered"]


def test_a_whatsapp_error_without_a_title_is_told_by_its_message(log):
    """An errors[] entry with a message and no title still says why the send failed."""
    status = {"id": "wamid.6", "status": "failed", "timestamp": "1750263800", "biz_opaque_callback_data": "m-wa",
              "errors": [{"code": 131026, "message": "Message undeliverable"}]}
    ledger.append_export(log, "whatsapp", whatsapp_export(status))
    (stored,) = message_events(log, "m-wa")
    assert stored["error"] == "131026: Message undeliverable"


def test_a_saved_twilio_callback_without_a_done_date_is_timed_by_the_import(log):
    """With no receipt time and no RawDlrDoneDate, the time of the import stands in."""
    result, _ = ledger.append_export(log, "twilio", b"MessageSid=SM42&MessageStatus=delivered&To=%2B15550001\n")
    assert result.held == 1


@pytest.fixture
def new_york_local_time(monkeypatch):
    """The process's local time zone is New York's for the test (UTC-5 in November)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_postmark_time_without_a_zone_is_read_as_utc_whatever_the_servers_zone(log, new_york_local_time):
    """A zoneless provider time means UTC, not the local time of the machine flowledger runs on."""
    delivery = {"RecordType": "Delivery", "MessageID": "pm-4", "DeliveredAt": "2019-11-05T16:33:54", "Recipient": "j@example.com", "Metadata": {"flowledger_message_id": "m1"}}
    ledger.append_export(log, "postmark", orjson.dumps(delivery))
    (stored,) = message_events(log, "m1")
    assert stored["occurred_at"] == "2019-11-05T16:33:54.000000Z"


def test_a_provider_timestamp_that_is_a_boolean_is_refused(log):
    """true is no unix time (Python would read it as 1 second after 1970)."""
    with pytest.raises(InvalidInput) as info:
        ledger.append_export(log, "sendgrid", orjson.dumps([{"event": "delivered", "timestamp": True, "sg_event_id": "e3"}]))
    assert 'field "timestamp": expected a unix time' in info.value.problems[0].message


# Reading an input.


def _event_of_size(size: int) -> bytes:
    base = orjson.dumps(triggered("r1", data={"pad": ""}))
    line = orjson.dumps(triggered("r1", data={"pad": "x" * (size - len(base))}))
    assert len(line) == size
    return line


@pytest.mark.parametrize("as_array", [False, True], ids=["json-lines", "array"])
def test_an_event_one_byte_over_the_limit_is_refused_and_one_at_it_is_taken(log, as_array):
    """--max-event-bytes is the largest event taken, exactly."""
    def wrap(line: bytes) -> io.BytesIO:
        return io.BytesIO(b"[" + line + b"]" if as_array else line + b"\n")

    with pytest.raises(InvalidInput) as info:
        ledger.append_input(log, wrap(_event_of_size(501)), IngestOptions(max_event_bytes=500))
    assert "the event is 501 bytes; the limit is 500 bytes" in info.value.problems[0].message
    result, _ = ledger.append_input(log, wrap(_event_of_size(500)), IngestOptions(max_event_bytes=500))
    assert result.appended == 1


def test_blank_lines_before_the_first_event_count_in_its_line_number(log):
    """A problem names the line it is on, counting the blank lines the input starts with."""
    with pytest.raises(InvalidInput) as info:
        ledger.append_input(log, io.BytesIO(b"\n\n" + orjson.dumps(ev("run.started", run_id="ghost")) + b"\n"))
    assert [p.line for p in info.value.problems] == [3]
