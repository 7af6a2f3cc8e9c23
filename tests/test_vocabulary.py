"""The input contract: what is accepted, and what each refusal says."""

from __future__ import annotations

import io

import orjson
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger.domain import vocabulary
from flowledger.domain.vocabulary import EVENT_TYPES, EventInvalid, normalize_timestamp, validate_event
from flowledger.errors import InvalidInput
from flowledger.ingest import IngestOptions, candidates, read_items
from tests.conftest import ev, step, triggered


def messages(obj):
    with pytest.raises(EventInvalid) as info:
        validate_event(obj)
    return info.value.messages


def test_every_type_has_a_model_and_the_vocabulary_is_closed():
    assert len(EVENT_TYPES) == 22
    assert {t.split(".")[0] for t in EVENT_TYPES} == {"run", "step", "message"}


@pytest.mark.parametrize(
    "stamp, stored",
    [
        ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00.000000Z"),
        ("2026-11-22T11:30:00+01:30", "2026-11-22T10:00:00.000000Z"),
        ("2026-11-22t10:00:00.5z", "2026-11-22T10:00:00.500000Z"),
        ("2026-11-22T10:00:00.123456789-00:00", "2026-11-22T10:00:00.123456Z"),
    ],
)
def test_timestamps_are_stored_in_utc_with_microseconds(stamp, stored):
    assert normalize_timestamp(stamp) == stored


@pytest.mark.parametrize("stamp", ["2026-11-22T10:00:00", "2026-11-22", "1763805600", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z"])
def test_a_timestamp_without_an_offset_or_not_a_date_is_refused(stamp):
    (message,) = messages(ev("run.started", run_id="r", occurred_at=stamp))
    assert message.startswith('field "occurred_at":')


def test_a_unix_number_is_not_a_timestamp():
    (message,) = messages(ev("run.started", run_id="r", occurred_at=1763805600))
    assert 'field "occurred_at"' in message and "string" in message


def test_unknown_top_level_field_is_named():
    (message,) = messages(ev("run.started", run_id="r", colour="red"))
    assert message == 'field "colour": unknown field (not part of run.started)'


def test_unknown_type_lists_the_vocabulary():
    (message,) = messages(ev("run.exploded", run_id="r"))
    assert "unknown event type 'run.exploded'" in message and "run.triggered" in message


def test_missing_field_and_nested_field_paths():
    found = messages(ev("run.triggered", run_id="r", workflow="w", trigger={"source": "carrier-pigeon"}))
    assert 'field "recipient": required' in found
    assert any(m.startswith('field "trigger.source": Input should be \'api\'') for m in found)


def test_no_coercion_of_strings_into_numbers():
    (message,) = messages(step("step.started", "r", attempt="2"))
    assert message.startswith('field "attempt": Input should be a valid integer')


def test_recipient_is_an_id_or_an_id_in_a_collection():
    validate_event(triggered("r", recipient={"id": "u1", "collection": "accounts"}))
    (message,) = messages(triggered("r", recipient={"id": "u1"}))
    assert message.startswith('field "recipient": expected a recipient id')


def test_free_form_payloads_take_any_json():
    body = validate_event(
        step("step.succeeded", "r", output=[1, "two", {"three": None}], request={"a": [True]}, response="ok")
    )
    assert body["output"] == [1, "two", {"three": None}]


def test_the_stored_body_is_the_input_with_normalised_times():
    obj = triggered("r", occurred_at="2026-11-01T10:00:00+01:00", scheduled_at="2026-11-02T00:00:00Z")
    body = validate_event(obj)
    assert body == {**obj, "occurred_at": "2026-11-01T09:00:00.000000Z", "scheduled_at": "2026-11-02T00:00:00.000000Z"}


def test_cost_needs_a_non_negative_amount_and_an_iso_currency():
    found = messages(ev("message.sent", message_id="m", cost={"amount": -1, "currency": "usd"}))
    assert len(found) == 2 and found[0].startswith('field "cost.amount"') and found[1].startswith('field "cost.currency"')


def _read(data: bytes, limit: int = 1024 * 1024):
    rejected = []
    chunks = list(candidates(read_items(io.BytesIO(data), limit), IngestOptions(max_event_bytes=limit), rejected))
    return [c for chunk in chunks for c in chunk], rejected


def test_jsonl_problems_name_their_lines_and_blank_lines_are_skipped():
    good = orjson.dumps(triggered("r1"))
    data = b"\n".join([good, b"", b"{not json", orjson.dumps(ev("run.started", run_id="r1", x=1))]) + b"\n"
    cands, rejected = _read(data)
    assert [c.line for c in cands] == [1]
    assert [(p.line, p.message.split(":")[0]) for p in rejected] == [(3, "not valid JSON"), (4, 'field "x"')]


def test_a_json_array_input_reports_the_line_each_item_starts_on():
    text = "[\n" + orjson.dumps(triggered("r1")).decode() + ",\n  " + orjson.dumps(ev("run.started", run_id="r1", occurred_at="2026-11-01")).decode() + "\n]\n"
    cands, rejected = _read(text.encode())
    assert [c.line for c in cands] == [2]
    assert [p.line for p in rejected] == [3]


def test_a_broken_json_array_is_an_error_not_a_crash():
    # Nothing after the break can be read: the whole input is refused, skipping or not.
    with pytest.raises(InvalidInput) as raised:
        _read(b'[{"id": 1},\n {')
    assert raised.value.problems[-1].message.startswith("not valid JSON")


def test_an_event_over_the_size_limit_is_refused_with_the_limit_named():
    big = orjson.dumps(triggered("r1", data={"blob": "x" * 5000}))
    cands, rejected = _read(big + b"\n", limit=4096)
    assert not cands
    assert "the limit is 4,096 bytes" in rejected[0].message and rejected[0].line == 1


def test_numbers_read_alike_from_lines_and_arrays():
    _, rejected = _read(b'[{"id": "x", "type": "run.started", "occurred_at": NaN}]')
    assert rejected[0].message.startswith("not valid JSON")


_STAMP_PARTS = st.tuples(
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32),
    st.integers(0, 24), st.integers(0, 60), st.integers(0, 60),
    st.one_of(st.none(), st.text("0123456789", min_size=0, max_size=10)),
    st.sampled_from(["Z", "z", "+00:00", "-05:30"]),
    st.sampled_from(["T", "t", " "]),
)


@settings(max_examples=2000, deadline=None)
@given(_STAMP_PARTS, st.booleans())
def test_the_fast_utc_path_stores_what_the_full_parser_stores(parts, seen_before):
    year, month, day, hour, minute, second, digits, offset, sep = parts
    stamp = f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}"
    stamp += ("" if digits is None else "." + digits) + offset
    if seen_before:
        # The fast path only trusts a date it has seen the full parser accept.
        try:
            normalize_timestamp(f"{year:04d}-{month:02d}-{day:02d}T00:00:00Z")
        except Exception:
            pass
    try:
        expected = ("ok", vocabulary._normalize(stamp))
    except Exception as e:
        expected = ("refused", str(e))
    try:
        got = ("ok", normalize_timestamp(stamp))
    except Exception as e:
        got = ("refused", str(e))
    assert got == expected


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:30:00+01:00"])
def test_a_timestamp_its_offset_moves_out_of_the_calendar_is_refused_by_name(stamp):
    (message,) = messages(ev("run.started", run_id="r", occurred_at=stamp))
    assert message.startswith('field "occurred_at": not a real date and time')
    with pytest.raises(ValueError, match="outside the years 1 to 9999"):
        normalize_timestamp(stamp)


def test_a_timestamp_option_out_of_the_calendar_is_a_usage_error(tmp_path):
    from click.testing import CliRunner

    from flowledger.cli import cli

    result = CliRunner().invoke(
        cli, ["--store", str(tmp_path / "s.db"), "runs", "list", "--starting-at", "0001-01-01T00:00:00+01:00"]
    )
    assert result.exit_code == 2 and "is not an RFC 3339 timestamp" in result.output
    assert "unexpected" not in result.output


@pytest.mark.parametrize(
    "event, field",
    [
        (ev("run.failed", run_id="r", error="bad\x00thing"), "error"),
        (ev("run.failed", run_id="r", error={"message": "bad\x00thing", "code": 7}), "error"),
        (ev("run.paused", run_id="r", reason="\x00"), "reason"),
        (ev("message.failed", message_id="m", error="x\x00y"), "error"),
        (ev("message.bounced", message_id="m", reason="x\x00y"), "reason"),
        (ev("message.clicked", message_id="m", url="https://e.example/\x00"), "url"),
    ],
)
def test_text_a_view_stores_refuses_nul(event, field):
    # PostgreSQL's text columns cannot hold NUL: one such event would fail every
    # catch-up after it. Free-form payloads keep it: views store them as JSON, escaped.
    (message,) = messages(event)
    assert message.startswith(f'field "{field}": expected text without NUL characters')
    validate_event(ev("run.failed", run_id="r", error={"message": "ok", "detail": "x\x00y"}))
    validate_event(triggered("r1", data={"note": "x\x00y"}))



@pytest.mark.parametrize("field", ["data", "request", "response", "output", "raw", "error"])
def test_free_form_payloads_nest_at_most_the_limit(field):
    make = {
        "data": lambda v: triggered("r1", data=v),
        "request": lambda v: step("step.started", "r1", request=v),
        "response": lambda v: step("step.started", "r1", response=v),
        "output": lambda v: step("step.succeeded", "r1", output=v),
        "raw": lambda v: ev("message.delivered", message_id="m1", raw=v),
        "error": lambda v: ev("run.failed", run_id="r1", error=v),
    }[field]

    def nested(levels: int) -> dict:
        value: object = "leaf"
        for _ in range(levels - 1):
            value = {"a": value}
        return {"a": value}

    validate_event(make(nested(vocabulary.MAX_NESTING)))
    (message,) = messages(make(nested(vocabulary.MAX_NESTING + 1)))
    assert message == f'field "{field}": objects and arrays nested more than {vocabulary.MAX_NESTING} levels deep (got an object)'


def test_an_event_nested_past_what_the_encoder_takes_is_a_problem_of_its_line(tmp_path):
    # 253 levels validated before, and then failed to encode (orjson stops at 255): the
    # whole append crashed rather than naming the line.
    from flowledger import ledger
    from flowledger.errors import InvalidInput
    from flowledger.store import open_log

    deep: object = "x"
    for _ in range(252):
        deep = {"a": deep}
    lines = [triggered("r1"), triggered("r2", data=deep), ev("run.started", run_id="r1")]
    log = open_log(str(tmp_path / "s.db"))
    try:
        with pytest.raises(InvalidInput) as raised:
            ledger.append_input(log, io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in lines)))
        assert [(p.line, p.message.split(":")[0]) for p in raised.value.problems] == [(2, 'field "data"')]
        assert log.count() == 0
    finally:
        log.close()


@pytest.mark.parametrize("blank", [" ", "   "])
@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda v: triggered(v), "run_id"),
        (lambda v: triggered("r", workflow=v), "workflow"),
        (lambda v: triggered("r", trigger={"source": "api", "cancellation_key": v}), "trigger.cancellation_key"),
        (lambda v: step("step.started", "r", name=v), "step"),
    ],
)
def test_an_id_of_only_spaces_is_refused_by_name(make, field, blank):
    # A run cancellable by the key " " could never be cancelled by key: `cancel --key` refuses a blank one.
    (message,) = messages(make(blank))
    assert message.startswith(f'field "{field}": expected an id: not only spaces, and no control characters')


@pytest.mark.parametrize("recipient", [" ", "user\n", {"id": " ", "collection": "accounts"}, {"id": "u", "collection": "a\n"}])
def test_a_recipient_of_only_spaces_or_ending_in_a_line_break_is_refused(recipient):
    (message,) = messages(triggered("r", recipient=recipient))
    assert message.startswith('field "recipient": expected a recipient id')


def test_ids_with_spaces_inside_or_around_are_still_ids():
    validate_event(triggered(" r 1 ", workflow="welcome series", recipient=" u "))


def test_an_error_message_too_long_says_so():
    (message,) = messages(ev("run.failed", run_id="r", error="x" * 10_001))
    assert message.startswith('field "error": expected a message of at most 10,000 characters')


def test_an_error_never_echoes_a_secret_of_the_value_it_refuses():
    # The message reaches stderr, the API's answer and whatever logs them: the part of a
    # value that would be redacted in the log is not shown either.
    found = messages(triggered("r?token=tok-SECRET-1\n"))
    assert found and all("tok-SECRET-1" not in m for m in found)
    assert any('field "run_id"' in m and "token=[REDACTED]" in m for m in found)
    found = messages(triggered("r", workflow="https://user:pw-SECRET-2@example.com/" + "x" * 100 + "\n"))
    assert found and all("pw-SECRET-2" not in m for m in found) and "user:[REDACTED]@" in found[0]
