"""Input validation, pinned where a mutation review found it unpinned: timestamps, ids,
limits, the lines and items problems are named by, and what an error message says."""

from __future__ import annotations

import io

import orjson
import pytest

from fastapi.testclient import TestClient

from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.domain.vocabulary import EventInvalid, normalize_timestamp, validate_event
from flowledger.ingest import IngestOptions, candidates, read_items
from flowledger.store import open_log
from tests.conftest import ev, step, triggered


def messages(obj):
    with pytest.raises(EventInvalid) as info:
        validate_event(obj)
    return info.value.messages


def _read(data: bytes, limit: int = 1024 * 1024):
    rejected = []
    chunks = list(candidates(read_items(io.BytesIO(data), limit), IngestOptions(max_event_bytes=limit), rejected))
    return [c for chunk in chunks for c in chunk], rejected


def test_a_timestamp_without_an_offset_says_an_offset_is_expected():
    """A timestamp with no offset is refused saying what was expected, not how parsing failed."""
    (message,) = messages(ev("run.started", run_id="r", occurred_at="2026-11-22T10:00:00"))
    assert message.startswith('field "occurred_at": expected an RFC 3339 timestamp with an offset')


def test_a_timestamp_with_a_space_for_its_t_is_taken():
    """RFC 3339 lets a space stand for the T; such a timestamp is stored as any other."""
    assert validate_event(ev("run.started", run_id="r", occurred_at="2026-11-22 11:00:00+01:00"))["occurred_at"] == "2026-11-22T10:00:00.000000Z"


@pytest.mark.parametrize("time", ["24:00:00", "09:60:00", "09:00:60", "09:00:99"])
def test_a_time_out_of_range_is_refused_even_on_a_date_seen_before(time):
    """A date already accepted once does not let an impossible time of that day through."""
    normalize_timestamp("2026-10-14T08:00:00Z")
    (message,) = messages(ev("run.started", run_id="r", occurred_at=f"2026-10-14T{time}Z"))
    assert message.startswith('field "occurred_at": not a real date and time')


@pytest.mark.parametrize("stamp", ["2026-10-15T0\u0669:00:00Z", "2026-10-15T09:00:00.\u0661Z", "2026-10-15T09:00:00.\u0661+01:00"])
def test_a_timestamp_with_digits_other_than_ascii_is_refused_even_on_a_date_seen_before(stamp):
    """Only ASCII digits make a timestamp (stored times sort as text), whatever dates came before."""
    normalize_timestamp("2026-10-15T08:00:00Z")
    (message,) = messages(ev("run.started", run_id="r", occurred_at=stamp))
    assert message.startswith('field "occurred_at":')


@pytest.mark.parametrize("stamp", ["2026-10-16T09:00:00Z\n", "2026-10-16T09:00:00+01:00\n"])
def test_a_timestamp_ending_in_a_line_break_is_refused(stamp):
    """A line break after a timestamp is not taken off silently: the value is not RFC 3339."""
    (message,) = messages(ev("run.started", run_id="r", occurred_at=stamp))
    assert message.startswith('field "occurred_at": expected an RFC 3339 timestamp')


@pytest.fixture
def api(store_path):
    log = open_log(store_path)
    _, secret = keys.create_key(log.backend, "write key", "write")
    log.close()
    with TestClient(create_app(store_path)) as client:
        client.headers["X-API-Key"] = secret
        yield client


@pytest.mark.parametrize(
    "event",
    [
        ev("run.cancelled", run_id="r", by="refused"),
        {"id": "x", "type": "refused", "occurred_at": "2026-11-01T09:00:00Z"},
        ev("run.started", run_id="r", occurred_at="refused for run"),
    ],
)
def test_an_invalid_event_whose_value_says_refused_is_a_422_not_a_refusal(api, event):
    """An event that breaks the vocabulary is 422 Invalid events, whatever text its value shows."""
    r = api.post("/v1/events", json=[triggered("r0"), event])
    assert (r.status_code, r.json()["title"]) == (422, "Invalid events")
    assert r.json()["errors"][0]["index"] == 1


def test_an_unknown_event_type_is_shown_without_its_secret_and_cut_short():
    """The unknown type an error echoes is redacted and cut like any other refused value."""
    (message,) = messages({"id": "x", "type": "run.started?token=tok-SECRET-3", "occurred_at": "2026-11-01T09:00:00Z"})
    assert message.startswith("field \"type\": unknown event type 'run.started?token=[REDACTED]'; expected one of ")
    assert "tok-SECRET-3" not in message
    (message,) = messages({"id": "x", "type": "y" * 5000, "occurred_at": "2026-11-01T09:00:00Z"})
    assert "y" * 100 not in message and "expected one of message.bounced" in message


@pytest.mark.parametrize("key", ["order-7\n", "order-7\t", "or\x01der"])
def test_a_cancellation_key_with_a_control_character_is_a_422_naming_the_key(store_path, key):
    """POST /v1/cancellations refuses a key no run can hold as invalid input (422) naming "key", not as a 409."""
    log = open_log(store_path)
    _, secret = keys.create_key(log.backend, "admin key", "admin")
    log.close()
    with TestClient(create_app(store_path)) as client:
        r = client.post("/v1/cancellations", json={"key": key}, headers={"X-API-Key": secret})
    assert r.status_code == 422
    assert "key" in orjson.dumps(r.json()).decode() and "cancellation_key" not in r.json()["detail"]


def _nested(levels: int, leaf: object = "leaf", make=lambda v: {"a": v}) -> object:
    value = leaf
    for _ in range(levels):
        value = make(value)
    return value


# (what is checked, the largest or smallest value taken, the first one refused, the field named)
_BOUNDS = [
    ("id", lambda v: ev("run.started", run_id="r", id=v), "i" * 255, "i" * 256, "id"),
    ("run_id", lambda v: ev("run.started", run_id=v), "r" * 255, "r" * 256, "run_id"),
    ("recipient", lambda v: triggered("r", recipient=v), "u" * 255, "u" * 256, "recipient"),
    ("recipient id", lambda v: triggered("r", recipient={"id": v, "collection": "c"}), "u" * 255, "u" * 256, "recipient"),
    ("recipient collection", lambda v: triggered("r", recipient={"id": "u", "collection": v}), "c", "", "recipient"),
    ("workflow bytes", lambda v: triggered("r", workflow=v), "\u00e9" * 255 + "\u20ac" * 0, "\U0001f600" * 192, "workflow"),
    ("workflow bytes exactly", lambda v: triggered("r", workflow=v), "a" * 45 + "\U0001f600" * 180, "a" * 46 + "\U0001f600" * 180, "workflow"),
    ("step bytes", lambda v: {**step("step.started", "r"), "step": v}, "a" * 45 + "\U0001f600" * 180, "a" * 46 + "\U0001f600" * 180, "step"),
    ("reason", lambda v: ev("run.paused", run_id="r", reason=v), "x" * 10_000, "x" * 10_001, "reason"),
    ("reason empty", lambda v: ev("run.paused", run_id="r", reason=v), "x", "", "reason"),
    ("url", lambda v: ev("message.clicked", message_id="m", url=v), "u" * 8192, "u" * 8193, "url"),
    ("url nul", lambda v: ev("message.clicked", message_id="m", url=v), "https://e.example/", "https://e.example/\x00", "url"),
    ("error text", lambda v: ev("run.failed", run_id="r", error=v), "x" * 10_000, "x" * 10_001, "error"),
    ("error object", lambda v: ev("run.failed", run_id="r", error=v), {"code": 1}, {}, "error"),
    ("error object message", lambda v: ev("run.failed", run_id="r", error=v), {"message": "a"}, {"message": "a\x00"}, "error"),
    ("error object depth", lambda v: ev("run.failed", run_id="r", error=v), _nested(64), _nested(65), "error"),
    ("list depth", lambda v: step("step.started", "r", request=v), _nested(64, make=lambda v: [v]), _nested(65, make=lambda v: [v]), "request"),
    ("step_type length", lambda v: {**step("step.started", "r"), "step_type": v}, "s" * 64, "s" * 65, "step_type"),
    ("step_type first", lambda v: {**step("step.started", "r"), "step_type": v}, "s_1", "_s1", "step_type"),
    ("attempt low", lambda v: step("step.started", "r", attempt=v), 1, 0, "attempt"),
    ("attempt high", lambda v: step("step.started", "r", attempt=v), 2_147_483_647, 2_147_483_648, "attempt"),
    ("max_retries high", lambda v: triggered("r", max_retries=v), 1000, 1001, "max_retries"),
    ("max_retries low", lambda v: triggered("r", max_retries=v), 0, -1, "max_retries"),
    ("cost amount", lambda v: ev("message.sent", message_id="m", cost={"amount": v, "currency": "USD"}), 0.0, -0.01, "cost.amount"),
    ("cost currency", lambda v: ev("message.sent", message_id="m", cost={"amount": 1.0, "currency": v}), "EUR", "eur", "cost.currency"),
    ("trigger source", lambda v: triggered("r", trigger={"source": v}), "webhook", "cron", "trigger.source"),
    ("machine", lambda v: ev("message.opened", message_id="m", machine=v), True, 1, "machine"),
    ("temporary", lambda v: ev("message.bounced", message_id="m", temporary=v), False, "false", "temporary"),
    ("data", lambda v: triggered("r", data=v), {"a": 1}, [1], "data"),
    ("message run_id", lambda v: ev("message.queued", message_id="m", channel="email", recipient="u", run_id=v), "r", "r\n", "run_id"),
]


@pytest.mark.parametrize("name, make, taken, refused, field", _BOUNDS, ids=[b[0] for b in _BOUNDS])
def test_each_limit_of_the_vocabulary_takes_its_last_value_and_refuses_the_next_naming_the_field(name, make, taken, refused, field):
    """Each limit README gives holds at its edge: the last value taken, the next refused naming its field."""
    validate_event(make(taken))
    found = messages(make(refused))
    assert found and all(m.startswith(f'field "{field}": ') for m in found), found


@pytest.mark.parametrize(
    "event, field",
    [
        ({k: v for k, v in ev("run.cancelled", run_id="r", by="operator").items() if k != "by"}, "by"),
        ({k: v for k, v in step("step.failed", "r").items() if k != "error"}, "error"),
        (ev("message.queued", message_id="m", recipient="u"), "channel"),
        (ev("message.clicked", message_id="m"), "url"),
    ],
)
def test_a_required_field_of_a_type_is_named_when_missing(event, field):
    """A field its type requires is named, and said to be required, when it is left out."""
    assert messages(event) == [f'field "{field}": required']


def test_a_recipient_object_takes_no_other_field():
    """A recipient object is exactly {"id", "collection"}: another key is refused."""
    (message,) = messages(triggered("r", recipient={"id": "u", "collection": "c", "extra": "x"}))
    assert message.startswith('field "recipient": expected a recipient id')


def _bad(event_id: str = "b") -> bytes:
    return orjson.dumps(ev("run.started", run_id="r", id=event_id, colour="red"))


@pytest.mark.parametrize(
    "data, line",
    [
        (b"\n\n" + _bad() + b"\n", 3),
        (b"\r\n\r\n" + _bad() + b"\r\n", 3),
        (b"  \n \t\n  " + _bad(), 3),
        (b"\n\n5", 3),
        (b"5", 1),
        (b"\n\n[\n\n" + _bad() + b"\n]", 5),
        (b"[\r\n" + orjson.dumps(ev("run.started", run_id="r")) + b",\r\n" + _bad() + b"\r\n]\r\n", 3),
        (b'[\n{"id": "a",\n "type": "run.started", "occurred_at": "2026-11-01T09:00:00Z",\n "run_id": "r"},\n' + _bad() + b"\n]", 5),
    ],
    ids=["blank lines", "crlf blank lines", "white space lines", "a bare number after blank lines", "a bare number", "an array after blank lines", "an array with crlf", "after an item of many lines"],
)
def test_a_problem_is_named_by_the_line_its_event_starts_on_blank_lines_and_line_ends_counted(data, line):
    """Every line counts, blank or not, CRLF or LF, JSON Lines or array: the problem's line is the event's own."""
    _, rejected = _read(data)
    assert [p.line for p in rejected] == [line], rejected


@pytest.mark.parametrize("array", [False, True])
def test_an_event_of_exactly_the_limit_is_taken_and_one_byte_more_is_refused(array):
    """--max-event-bytes is the largest size taken: an event of that many bytes is, one of a byte more is not."""
    event = ev("run.started", run_id="r", id="e")
    size = len(orjson.dumps(event))
    for limit, taken in ((size, True), (size - 1, False)):
        data = b"[" + orjson.dumps(event) + b"]" if array else orjson.dumps(event) + b"\n"
        cands, rejected = _read(data, limit=limit)
        assert (len(cands), len(rejected)) == ((1, 0) if taken else (0, 1))
        if not taken:
            assert f"the limit is {limit:,} bytes (--max-event-bytes or FLOWLEDGER_MAX_EVENT_BYTES)" in rejected[0].message


def test_an_event_of_exactly_the_limit_on_a_line_padded_past_the_read_size_is_taken():
    """White space around an event never counts against the limit, however much of it a line has."""
    event = orjson.dumps(ev("run.started", run_id="r", id="e"))
    cands, rejected = _read(event + b" " * 70_000 + b"\n" + b" " * 70_000 + event.replace(b'"e"', b'"f"') + b"x\n", limit=len(event))
    assert [c.event_id for c in cands] == ["e"]
    assert [p.line for p in rejected] == [2] and rejected[0].message.startswith(f"the event is {len(event) + 1:,} bytes")


@pytest.mark.parametrize(
    "data, said",
    [
        (b'[{"id": "a"}] trailing', "text after the array's ]"),
        (b'[{"id": "a"}', "the array is not closed with ]"),
        (b'[{"id": "a"} {"id": "b"}]', "expected , or ] between items"),
    ],
)
def test_a_json_array_with_text_after_it_or_left_open_is_refused_whole(data, said):
    """An array that is not exactly one JSON array stops the reading with what is wrong, nothing taken."""
    from flowledger.errors import InvalidInput

    with pytest.raises(InvalidInput) as raised:
        _read(data)
    assert said in raised.value.problems[-1].message


def test_a_broken_item_of_a_json_array_is_named_at_the_line_of_the_break():
    """An item that breaks across lines is named by the line where the JSON breaks."""
    from flowledger.errors import InvalidInput

    with pytest.raises(InvalidInput) as raised:
        _read(b'[\n{"id": "a",\n "type": "run.started",\n "x": nope}\n]')
    (problem,) = raised.value.problems
    assert problem.line == 4 and problem.index == 0


def test_a_line_that_is_not_utf8_says_so_and_the_rest_is_read():
    """Bytes that are not UTF-8 are named as such (not as bad JSON), and the lines after are read."""
    good = orjson.dumps(ev("run.started", run_id="r"))
    cands, rejected = _read(good + b"\n" + b'{"id": "\xff"}' + b"\n" + good.replace(b'"t-', b'"u-') + b"\n")
    assert len(cands) == 2 and [p.line for p in rejected] == [2]
    assert rejected[0].message.startswith("not UTF-8 text")


def test_a_batch_event_of_exactly_the_limit_as_stored_is_taken_and_one_byte_more_is_refused(log):
    """POST /v1/events' limit (measured as stored) takes an event of exactly that size and refuses one a byte larger."""
    from flowledger import ledger
    from flowledger.errors import InvalidInput, NotFound

    event = triggered("r1", id="e1")
    size = len(orjson.dumps(validate_event(event)))
    with pytest.raises(InvalidInput) as raised:
        ledger.append_batch(log, [triggered("r0", id="x", workflow="w"), event], max_event_bytes=size - 1)
    (problem,) = raised.value.problems
    assert (problem.index, problem.event_id) == (1, "e1") and f"the limit is {size - 1:,} bytes" in problem.message
    assert ledger.append_batch(log, [event], max_event_bytes=size).appended == 1
    with pytest.raises(NotFound):
        log.run_events("r0")  # nothing of the refused batch was stored


@pytest.mark.parametrize("command", ["retry", "cancel"])
def test_an_operators_command_records_who_and_why(log, command):
    """A retry or cancel records its actor and reason in the event it appends, and a cancel says it was an operator's."""
    from flowledger import ledger

    ledger.append_batch(log, [triggered("r1"), ev("run.started", run_id="r1")])
    if command == "retry":
        ledger.append_batch(log, [ev("run.failed", run_id="r1", error="boom")])
        ledger.retry_run(log, "r1", actor="ops@example.com", reason="mail server back")
    else:
        ledger.cancel_run(log, "r1", actor="ops@example.com", reason="mail server back")
    last = log.run_events("r1")[-1].body
    assert (last["actor"], last["reason"]) == ("ops@example.com", "mail server back")
    assert last["type"] == ("run.retried" if command == "retry" else "run.cancelled")
    if command == "cancel":
        assert last["by"] == "operator" and "cancellation_key" not in last


def test_a_missing_type_is_named_with_the_types_expected():
    """An event with no type is told it needs one and which ones there are."""
    (message,) = messages({"id": "x", "occurred_at": "2026-11-01T09:00:00Z"})
    assert message.startswith('field "type": required, one of message.bounced, message.clicked')
    assert message.endswith("step.failed, step.started, step.succeeded")


def test_a_long_refused_value_is_cut_short_in_its_error():
    """An error shows at most 80 characters of the value it refuses, however long the value."""
    (message,) = messages(ev("run.started", run_id="r" * 300 + "\n"))
    assert message.startswith('field "run_id": ') and message.endswith("...)")
    assert "r" * 100 not in message


def test_every_broken_field_of_one_line_is_a_problem_of_that_line():
    """All of an event's broken fields are listed, each a problem of the event's line, not only the first."""
    _, rejected = _read(orjson.dumps(ev("run.started", run_id="r", colour="red", occurred_at="soon")) + b"\n")
    assert sorted(p.message.split(":")[0] for p in rejected) == ['field "colour"', 'field "occurred_at"']
    assert {p.line for p in rejected} == {1}


def test_a_cancel_by_key_records_that_it_was_by_its_key(log):
    """A cancel by cancellation key records by=cancellation_key and the key, not an operator's cancel."""
    from flowledger import ledger

    ledger.append_batch(log, [triggered("r1", trigger={"source": "api", "cancellation_key": "order-7"})])
    assert ledger.cancel_by_key(log, "order-7", actor="ops") == ["r1"]
    last = log.run_events("r1")[-1].body
    assert (last["type"], last["by"], last["cancellation_key"], last["actor"]) == ("run.cancelled", "cancellation_key", "order-7", "ops")


def test_a_json_array_that_is_not_utf8_names_the_line_of_the_bad_bytes():
    """In a JSON array, bytes that are not UTF-8 are named at their own line."""
    from flowledger.errors import InvalidInput

    with pytest.raises(InvalidInput) as raised:
        _read(b'[\n{"id": "a"},\n{"id": "\xff"}\n]')
    (problem,) = raised.value.problems
    assert problem.line == 3 and problem.message.startswith("not UTF-8 text")
