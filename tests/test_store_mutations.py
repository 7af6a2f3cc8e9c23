"""What a mutation review of the store layer (log.py, backend.py, inbox.py, ingest.py) found no
test holding: ids claimed once, the redaction-aware duplicate check, provider links and the facts
held for them, the order `unmatched` lists them in, unreadable inbox rows, and byte limits."""

from __future__ import annotations

import io
import re
import time

import orjson
import pytest
from fastapi.testclient import TestClient

from flowledger import ledger, queries
from flowledger.api.app import create_app
from flowledger.domain.redaction import Redactor
from flowledger.errors import InvalidInput
from flowledger.ingest import IngestOptions
from flowledger.providers import twilio
from flowledger.store import open_log
from flowledger.store.log import same_but_redacted
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_inbox import post_sendgrid, sqlite_write_lock, with_messages
from tests.test_inbox_review import spoil_inbox_rows
from tests.test_providers_review import BRACKETED, mailgun_delivered, queued, sent_with, stamp
from tests.test_webhooks import SECRETS, sendgrid_events

T0 = 1793523600.0


def twilio_delivered(sid: str, received_at: float = T0, **extra: str):
    """Twilio's delivered status callback for a message, as the adapter reads it."""
    form = {"MessageSid": sid, "MessageStatus": "delivered", "To": "+15550001", **extra}
    return twilio.translate({**form, "_received_at": received_at})


def sms(message_id: str, provider_id: str | None = None) -> list[dict]:
    """A message the sender queued (and, given a provider id, sent)."""
    events = [ev("message.queued", message_id=message_id, channel="sms", recipient="+15550001", provider="twilio")]
    if provider_id is not None:
        events.append(ev("message.sent", message_id=message_id, provider_message_id=provider_id))
    return events


# Idempotency: an id is claimed once.


def test_an_id_both_refused_and_stored_in_one_input_stays_claimed(log):
    """With --skip-invalid, an id whose first event is refused and whose second is stored is
    still stored: resending the stored event is a duplicate, never a second copy."""
    refused = ev("run.completed", run_id="ghost")
    stored = {**triggered("r1"), "id": refused["id"]}
    result, _ = ledger.append_input(log, jsonl([refused, stored]), keep_going=True)
    assert (result.appended, len(result.problems)) == (1, 1)
    again, _ = ledger.append_input(log, jsonl([stored]))
    assert (again.appended, again.duplicates) == (0, 1)
    assert len(log.run_events("r1")) == 1


# Duplicate or conflict, where redaction changed between the first send and a resend.


def test_a_resend_redacted_under_a_new_key_over_a_number_is_a_duplicate(log):
    """A number stored before its key was a secret, resent after (the resend holds [REDACTED]
    there): a duplicate, as README's Secrets section says."""
    e = triggered("r1", data={"pin": 1234, "plan": "pro"})
    ledger.append_input(log, jsonl([e]))
    result, _ = ledger.append_input(log, jsonl([e]), IngestOptions(redactor=Redactor(extra=["pin"])))
    assert (result.appended, result.duplicates) == (0, 1)


@pytest.mark.parametrize("login", [{"user": "a", "code": 7}, ["a", 7]], ids=["object", "list"])
def test_a_resend_redacted_under_a_new_key_over_an_object_is_a_duplicate(log, login):
    """An object or list stored before its key was a secret, resent after: a duplicate too."""
    e = triggered("r1", data={"login": login, "plan": "pro"})
    ledger.append_input(log, jsonl([e]))
    result, _ = ledger.append_input(log, jsonl([e]), IngestOptions(redactor=Redactor(extra=["login"])))
    assert (result.appended, result.duplicates) == (0, 1)


def test_a_masked_text_matches_no_text_shorter_than_its_fixed_parts():
    """[REDACTED] stands for some characters between the fixed parts, which may not overlap."""
    assert same_but_redacted("ab[REDACTED]ba", "aba") is False
    assert same_but_redacted("ab[REDACTED]ba", "abba") is True


# Provider facts: links to messages, and the facts held until one is known.


def test_a_fact_stored_under_its_message_is_a_duplicate_when_it_comes_by_provider_id_alone(log):
    """A provider fact whose id is stored is a duplicate, not held again, whichever way it names its message."""
    ledger.append_input(log, jsonl([*sms("m8"), {"id": "twilio:SM8:delivered", "type": "message.delivered", "occurred_at": "2026-11-01T09:00:00Z", "message_id": "m8"}]))
    again, _ = ledger.append_provider_facts(log, [twilio_delivered("SM8")])
    assert (again.appended, again.held, again.duplicates) == (0, 0, 1)
    assert ledger.unmatched(log) == []


def test_the_first_message_to_record_a_provider_id_keeps_its_facts(log):
    """Two messages sent with one provider id: its facts join the first, before and after the second."""
    held, _ = ledger.append_provider_facts(log, [twilio_delivered("SM7")])
    assert held.held == 1
    ledger.append_input(log, jsonl(sms("m1", "SM7")))
    ledger.append_input(log, jsonl(sms("m2", "SM7")))
    later = twilio.translate({"MessageSid": "SM7", "MessageStatus": "undelivered", "ErrorCode": "30003", "To": "+15550001", "_received_at": T0 + 60})
    result, _ = ledger.append_provider_facts(log, [later])
    assert (result.appended, result.held) == (1, 0)
    assert ledger.query(log, queries.show_delivery, "m1")["status"] == "failed"
    assert ledger.query(log, queries.show_delivery, "m2")["status"] == "sent"


def test_a_message_sent_with_an_empty_provider_id_takes_no_held_fact(log):
    """A fact held with no provider id stays held when a message records "<>" (empty once unbracketed)."""
    result, _ = ledger.append_export(log, "mailgun", orjson.dumps({"event-data": mailgun_delivered("", "mg-e1")}))
    assert result.held == 1
    sent, _ = ledger.append_input(log, jsonl([queued("m-a", "email", "mailgun", "2026-11-01T09:00:00Z"), ev("message.sent", message_id="m-a", provider_message_id="<>")]))
    assert (sent.appended, sent.released) == (2, 0)
    assert [u["event_id"] for u in ledger.unmatched(log)] == ["mailgun:mg-e1"]


def test_a_redelivered_fact_held_by_a_store_from_before_brackets_frees_itself(log):
    """A store from before linked "<id>" and held Mailgun's fact under "id": the fact's own
    redelivery (a duplicate of the held copy) joins it to its message."""
    ledger.append_input(log, jsonl(sent_with(BRACKETED)))
    delivered = {**mailgun_delivered(BRACKETED[1:-1], "mg-old"), "timestamp": time.time() - 30}
    event = {"id": "mailgun:mg-old", "type": "message.delivered", "occurred_at": stamp(delivered["timestamp"]), "message_id": f"unmatched:mailgun:{BRACKETED[1:-1]}", "provider": "mailgun", "provider_message_id": BRACKETED[1:-1], "raw": delivered}
    with log.backend.transaction(write=True, append=True) as c:
        c.execute("DELETE FROM provider_links")
        log.backend.link(c, [(BRACKETED, "m-mg")])
        log.backend.hold(c, [(event["id"], BRACKETED[1:-1], "mailgun", event["type"], event["occurred_at"], stamp(time.time()), orjson.dumps(event))])
    result, _ = ledger.append_export(log, "mailgun", orjson.dumps({"event-data": delivered}))
    assert (result.appended, result.duplicates, result.released) == (1, 1, 1)
    assert ledger.unmatched(log) == []
    assert ledger.query(log, queries.show_delivery, "m-mg")["status"] == "delivered"


def test_unmatched_lists_the_held_facts_by_when_they_were_received(log):
    """`unmatched` is oldest first by receipt, whatever the facts' ids."""
    for sid, received in (("SMb", "2026-11-01T09:00:00.000000Z"), ("SMa", "2026-11-01T10:00:00.000000Z")):
        facts = ledger.prepare_provider_facts([twilio_delivered(sid)], received_at=received)
        ledger.append_prepared(log, facts)
    assert [u["event_id"] for u in ledger.unmatched(log)] == ["twilio:SMb:delivered", "twilio:SMa:delivered"]


# Stamps, inbox rows, byte limits.


def test_recorded_at_is_in_the_stored_timestamp_format(log):
    """recorded_at is stored as every other time is: UTC with microseconds, like occurred_at."""
    ledger.append_input(log, jsonl([triggered("r1")]))
    body = log.run_events("r1")[0].body
    stored_format = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
    assert re.fullmatch(stored_format, body["occurred_at"]) and re.fullmatch(stored_format, body["recorded_at"])


def test_an_inbox_row_whose_pairs_hold_no_event_is_set_aside(store_path):
    """A row of [x, provider id] pairs whose x is no object cannot be read: set aside, and the
    next webhook is stored, not deferred behind it."""
    with_messages(store_path)
    with TestClient(create_app(store_path, provider_secrets=SECRETS, lock_timeout=0.2)) as client:
        with sqlite_write_lock(store_path):
            assert post_sendgrid(client, sendgrid_events()).json()["deferred"] == 4
        spoil_inbox_rows(store_path, b"[[1, null]]")
        r = post_sendgrid(client, sendgrid_events())
        assert r.status_code == 200, r.text
        assert r.json() == {"appended": 4, "duplicates": 0, "held": 0, "skipped": 0}
    log = open_log(store_path)
    try:
        (letter,) = ledger.inbox_dead_letters(log)
        assert "cannot be read" in letter["reason"]
    finally:
        log.close()


def test_a_json_array_item_over_the_limit_in_bytes_is_refused_though_not_in_characters(log):
    """--max-event-bytes counts bytes in a JSON array's items too, not characters."""
    e = triggered("r1", data={"note": "é" * 300})
    size = len(orjson.dumps(e))
    with pytest.raises(InvalidInput) as raised:
        ledger.append_input(log, io.BytesIO(orjson.dumps([e])), IngestOptions(max_event_bytes=size - 10))
    assert "bytes; the limit is" in raised.value.problems[0].message
    assert log.count() == 0
