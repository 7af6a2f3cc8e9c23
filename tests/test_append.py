"""Appending to the log: idempotency, conflicts, all-or-nothing, redaction, streams."""

from __future__ import annotations

import io
import os

import orjson
import pytest

from flowledger import ledger
from flowledger.errors import InvalidInput
from flowledger.domain.redaction import Redactor
from flowledger.ingest import IngestOptions
from flowledger.store.log import same_but_redacted
from tests.conftest import ev, step, triggered


def jsonl(*events) -> io.BytesIO:
    return io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in events))


def history():
    return [
        triggered("r1"),
        ev("run.started", run_id="r1"),
        step("step.started", "r1"),
        ev("message.queued", message_id="m1", channel="email", recipient="user-1", run_id="r1", step="email-1"),
        step("step.succeeded", "r1"),
        ev("message.delivered", message_id="m1"),
        ev("run.completed", run_id="r1"),
    ]


def test_append_stores_every_event_in_its_stream_in_order(log):
    events = history()
    result, _ = ledger.append_input(log, jsonl(*events))
    assert (result.appended, result.duplicates) == (7, 0)
    stored = log.run_events("r1")
    assert [e.body["id"] for e in stored] == [e["id"] for e in events if "run_id" in e and not e["type"].startswith("message.")]
    assert [e.version for e in stored] == [1, 2, 3, 4, 5]
    assert all(a.position < b.position for a, b in zip(stored, stored[1:]))
    assert log.count() == 7


def test_reappending_the_same_events_is_a_no_op_counted_as_duplicates(log):
    events = history()
    ledger.append_input(log, jsonl(*events))
    result, _ = ledger.append_input(log, jsonl(*events[2:5]))
    assert (result.appended, result.duplicates) == (0, 3)
    assert log.count() == 7


def test_a_duplicate_inside_one_input_is_counted_once(log):
    t = triggered("r1")
    result, _ = ledger.append_input(log, jsonl(t, t, t))
    assert (result.appended, result.duplicates) == (1, 2)


def test_the_same_id_with_another_body_is_a_conflict_and_nothing_is_stored(log):
    t = triggered("r1")
    ledger.append_input(log, jsonl(t))
    other = {**t, "workflow": "other"}
    with pytest.raises(InvalidInput) as info:
        ledger.append_input(log, jsonl(ev("run.started", run_id="r1"), other))
    (problem,) = info.value.problems
    assert problem.line == 2 and "already stored with a different body" in problem.message
    assert log.count() == 1


def test_one_refused_fact_stores_nothing_of_the_input(log):
    events = history()
    bad = ev("run.completed", run_id="r9")
    with pytest.raises(InvalidInput) as info:
        ledger.append_input(log, jsonl(*events, bad))
    assert [p.line for p in info.value.problems] == [8]
    assert "never triggered" in info.value.problems[0].message
    assert log.count() == 0


def test_all_problems_are_reported_across_chunks_and_nothing_stored(log):
    events = history() + [ev("run.started", run_id="r1"), {"id": "x", "type": "run.started"}]
    with pytest.raises(InvalidInput) as info:
        ledger.append_input(log, jsonl(*events), IngestOptions(chunk_size=2))
    lines = [p.line for p in info.value.problems]
    assert lines == sorted(lines) and 8 in lines and 9 in lines
    assert log.count() == 0


def test_rules_see_earlier_chunks_of_the_same_input(log):
    result, _ = ledger.append_input(log, jsonl(*history()), IngestOptions(chunk_size=1))
    assert result.appended == 7


def test_keep_going_stores_the_good_events_and_returns_the_bad(log):
    events = history()
    events.insert(2, ev("run.paused", run_id="never-triggered"))
    result, rejected = ledger.append_input(log, jsonl(*events, {"id": 3}), keep_going=True)
    assert result.appended == 7
    assert [p.line for _, p in result.problems] == [3]
    assert [p.line for p in rejected] == [9]


def test_provider_events_are_never_refused_for_order(log):
    late = [
        ev("message.clicked", message_id="m1", url="https://x.test"),
        ev("message.opened", message_id="m1"),
        ev("message.delivered", message_id="m1"),
        ev("message.sent", message_id="m1", cost={"amount": 0.01, "currency": "USD"}),
        ev("message.queued", message_id="m1", channel="email", recipient="u"),
    ]
    result, _ = ledger.append_input(log, jsonl(*late))
    assert result.appended == 5


def test_secrets_are_redacted_before_they_are_stored(log, store_path):
    secret = "sk_live_abcdef123456"
    events = history()
    events[4] = step(
        "step.succeeded",
        "r1",
        request={"headers": {"Authorization": f"Bearer {secret}"}, "body": {"nested": [{"API-KEY": secret}]}},
        response={"cookies": [["Set-Cookie", secret]], "h": [{"name": "X-Api-Key", "value": secret}]},
        output={"token": secret, "ok": True},
    )
    ledger.append_input(log, jsonl(*events))
    body = log.run_events("r1")[3].body
    assert body["request"]["headers"]["Authorization"] == "[REDACTED]"
    assert body["output"] == {"token": "[REDACTED]", "ok": True}
    log.close()
    raw = b"".join(open(store_path + suffix, "rb").read() for suffix in ("", "-wal") if __import__("os").path.exists(store_path + suffix))
    assert secret.encode() not in raw


@pytest.mark.parametrize(
    "payload",
    [
        # Postmark sends header lists with capitalised keys.
        {"Headers": [{"Name": "Authorization", "Value": "SECRET-1"}, {"Name": "X-Tag", "Value": "kept"}]},
        {"headers": [{"NAME": "Cookie", "VALUES": ["SECRET-1", "SECRET-2"]}]},
        {"headers": [["Authorization", ["Bearer SECRET-1"]]]},
        {"accessToken": "SECRET-1", "clientSecret": "SECRET-2", "kept": "kept"},
        {"AuthToken": "SECRET-1", "api.key": "SECRET-2", "X-Auth-Token": "SECRET-3", "Access Token": "SECRET-4"},
        {"aws_secret_access_key": "SECRET-1", "sessionToken": "SECRET-2", "secretKey": "SECRET-3"},
    ],
)
def test_secret_keys_are_found_in_any_spelling_and_header_lists_in_any_case(log, store_path, payload):
    ledger.append_input(log, jsonl(triggered("r1", data=payload)))
    stored = orjson.dumps(log.run_events("r1")[0].body["data"])
    assert b"SECRET" not in stored
    assert b"[REDACTED]" in stored
    assert (b"kept" in stored) == (b"kept" in orjson.dumps(payload))
    log.close()
    raw = b"".join(open(store_path + suffix, "rb").read() for suffix in ("", "-wal") if os.path.exists(store_path + suffix))
    assert b"SECRET-" not in raw


def test_extra_redaction_keys(log):
    from flowledger.domain.redaction import Redactor

    e = triggered("r1", data={"ssn": "123-45-6789"})
    ledger.append_input(log, jsonl(e), IngestOptions(redactor=Redactor(extra=["SSN"])))
    assert log.run_events("r1")[0].body["data"] == {"ssn": "[REDACTED]"}


def test_a_redacted_resend_is_still_a_duplicate(log):
    e = triggered("r1", data={"password": "hunter2"})
    ledger.append_input(log, jsonl(e))
    result, _ = ledger.append_input(log, jsonl(e))
    assert result.duplicates == 1


def test_a_resend_redacted_under_more_keys_than_when_first_stored_is_a_duplicate(log):
    # Stored before SSN was a secret key; resent after it became one (FLOWLEDGER_REDACT_KEYS).
    e = triggered("r1", data={"ssn": "123-45-6789", "password": "hunter2", "plan": "pro"})
    ledger.append_input(log, jsonl(e))
    result, _ = ledger.append_input(log, jsonl(e), IngestOptions(redactor=Redactor(extra=["ssn"])))
    assert (result.duplicates, result.appended) == (1, 0)
    assert log.run_events("r1")[0].body["data"] == {"ssn": "123-45-6789", "password": "[REDACTED]", "plan": "pro"}


def test_a_resend_redacted_under_fewer_keys_is_a_duplicate_too(log):
    e = triggered("r1", data={"ssn": "123-45-6789"})
    ledger.append_input(log, jsonl(e), IngestOptions(redactor=Redactor(extra=["ssn"])))
    result, _ = ledger.append_input(log, jsonl(e))
    assert (result.duplicates, result.appended) == (1, 0)


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        # As stored before the rules of 3f81833, then resent: each masks a part of its own.
        ("Authorization: [REDACTED] pk_abc123", "Authorization: Klaviyo-API-Key pk_abc123"),
        ('401: Bearer [REDACTED]"abc"', '401: Bearer token="abc"'),
        ('body \\"secret\\": 1234, \\"x\\": true', 'body \\"secret\\": 1234, \\"x\\": true'),
    ],
)
def test_an_event_stored_under_older_text_rules_is_a_duplicate_when_resent(log, stored, sent):
    first = ev("run.failed", run_id="r1", error=stored)
    # Stored as the older rules left it (a redactor of no keys keeps the text as given).
    ledger.append_input(log, jsonl([triggered("r1"), first]), IngestOptions(redactor=Redactor(keys=())))
    assert log.run_events("r1")[-1].body["error"] == stored
    before = log.run_events("r1")[-1].body["error"]
    result, _ = ledger.append_input(log, jsonl({**first, "error": sent}))
    assert (result.duplicates, result.appended) == (1, 0)
    assert log.run_events("r1")[-1].body["error"] == before


def test_a_bare_value_masked_in_quotes_is_a_duplicate_when_resent_under_fewer_keys(log):
    # Stored masked as a string (JSON stays JSON), resent where ssn is no secret key.
    first = ev("run.failed", run_id="r1", error='provider said {"ssn": 123456789}')
    ledger.append_input(log, jsonl([triggered("r1"), first]), IngestOptions(redactor=Redactor(extra=["ssn"])))
    assert log.run_events("r1")[-1].body["error"] == 'provider said {"ssn": "[REDACTED]"}'
    result, _ = ledger.append_input(log, jsonl(first))
    assert (result.duplicates, result.appended) == (1, 0)


def test_a_resend_that_differs_outside_its_redacted_values_is_still_a_conflict(log):
    first = triggered("r1", data={"ssn": "1", "plan": "pro"})
    ledger.append_input(log, jsonl(first))
    resend = {**first, "data": {"ssn": "1", "plan": "free"}}
    with pytest.raises(InvalidInput) as raised:
        ledger.append_input(log, jsonl(resend), IngestOptions(redactor=Redactor(extra=["ssn"])))
    assert "already stored with a different body" in raised.value.problems[0].message


@pytest.mark.parametrize(
    ("stored", "sent", "same"),
    [
        ({"a": "[REDACTED]"}, {"a": {"deep": [1, 2]}}, True),
        ({"a": "x"}, {"a": "[REDACTED]"}, True),
        ({"a": "x"}, {"a": "y"}, False),
        ({"a": "x"}, {"a": "x", "b": "[REDACTED]"}, False),
        (["[REDACTED]", 1], ["k", 1], True),
        (["[REDACTED]", 1], ["k", 2], False),
        ("https://h/p?token=[REDACTED]&u=1", "https://h/p?token=abc&u=1", True),
        ("https://h/p?token=abc&u=1", "https://h/p?token=[REDACTED]&u=1", True),
        ("https://h/p?token=[REDACTED]&u=1", "https://h/p?token=abc&u=2", False),
        ("Bearer [REDACTED] (401)", "Bearer a.b.c (401)", True),
        ("a.b", "[REDACTED]x", False),
        (1, True, False),
        # Masked by two sets of rules, each a part of its own: one text could give both.
        ("Authorization: [REDACTED] pk_1", "Authorization: ApiKey [REDACTED]", True),
        ('Bearer [REDACTED]"abc"', 'Bearer token="[REDACTED]"', True),
        ("[REDACTED] a [REDACTED]", "x [REDACTED] y", True),
        ("Authorization: [REDACTED] pk_1", "Authorization: ApiKey [REDACTED] (401)", False),
        ("Authorization: [REDACTED] pk_1", "Authorisation: ApiKey [REDACTED]", False),
        ("a [REDACTED] b", "a [REDACTED] c", False),
    ],
)
def test_same_but_redacted(stored, sent, same):
    assert same_but_redacted(stored, sent) is same


def test_stored_events_keep_when_they_were_recorded(log):
    ledger.append_input(log, jsonl(triggered("r1")))
    body = log.run_events("r1")[0].body
    assert body["recorded_at"].endswith("Z") and body["occurred_at"] == "2026-11-01T09:00:00.000000Z"


def test_the_problems_of_a_json_array_on_one_line_name_their_items_in_order(log):
    events = [triggered("r1"), ev("run.completed", run_id="ghost"), {"id": "x", "type": "nope"}, ev("run.completed", run_id="ghost2")]
    with pytest.raises(InvalidInput) as raised:
        ledger.append_input(log, io.BytesIO(orjson.dumps(events)))
    assert [(p.line, p.index, p.event_id) for p in raised.value.problems] == [(1, 1, events[1]["id"]), (1, 2, "x"), (1, 3, events[3]["id"])]
    assert log.count() == 0
