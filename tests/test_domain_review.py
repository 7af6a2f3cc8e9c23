"""The run rules and the operator commands against the README's vocabulary: late step
results, cancellation keys, attempt numbers, and the words a refused command is said in."""

from __future__ import annotations

import io

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.domain.run import CANCELLED, COMPLETED, FAILED, PENDING, Run
from flowledger.domain.vocabulary import EventInvalid, validate_event
from flowledger.errors import CommandRefused, FactRefused, InvalidInput
from tests.conftest import ev, step, triggered
from tests.histories import fresh_log, make, run_histories


def jsonl(*events) -> io.BytesIO:
    """The events as JSON Lines."""
    return io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in events))


def refusal(log, *events) -> str:
    """The one problem an append of the events is refused with."""
    with pytest.raises(InvalidInput) as raised:
        ledger.append_input(log, jsonl(*events))
    (problem,) = raised.value.problems
    return problem.message


_ENDS = {
    "run.completed": ({}, COMPLETED),
    "run.failed": ({"error": "timed out"}, FAILED),
    "run.cancelled": ({"by": "operator"}, CANCELLED),
}


def ended(log, end: str, **trigger_fields):
    """Append a run whose step attempt 1 was open when the run ended by ``end``."""
    fields, _ = _ENDS[end]
    ledger.append_input(
        log,
        jsonl(triggered("r", **trigger_fields), ev("run.started", run_id="r"), step("step.started", "r"), ev(end, run_id="r", **fields)),
    )


# Late step results: an attempt that started while the run ran may report after its end.


@pytest.mark.parametrize("end", sorted(_ENDS))
@pytest.mark.parametrize("result", ["step.succeeded", "step.failed"])
def test_the_late_result_of_an_open_attempt_is_taken_after_the_run_ended(log, end, result):
    ended(log, end)
    appended, _ = ledger.append_input(log, jsonl(step(result, "r")))
    assert appended.appended == 1
    detail = ledger.show_run(log, "r")
    assert detail["status"] == _ENDS[end][1]
    assert [s["status"] for s in detail["steps"]] == ["completed" if result == "step.succeeded" else "failed"]


def test_a_late_result_is_taken_once_only(log):
    ended(log, "run.cancelled")
    ledger.append_input(log, jsonl(step("step.succeeded", "r")))
    assert "has already finished" in refusal(log, step("step.failed", "r"))


def test_a_late_result_of_an_attempt_never_started_is_still_refused_naming_the_attempt(log):
    ended(log, "run.cancelled")
    assert "attempt 2 of step 'email-1' was never started" in refusal(log, step("step.succeeded", "r", attempt=2))


def test_no_new_attempt_starts_after_the_run_ended(log):
    ended(log, "run.cancelled")
    message = refusal(log, step("step.started", "r", attempt=2))
    assert "whose status is cancelled" in message and "started only while the run is running or paused" in message


def test_the_late_result_of_an_attempt_open_when_the_run_failed_is_taken_after_a_retry(log):
    ended(log, "run.failed")
    ledger.retry_run(log, "r")
    appended, _ = ledger.append_input(log, jsonl(step("step.failed", "r")))
    assert appended.appended == 1
    assert log.run_state("r").status == PENDING


# Cancellation keys: a cancel by key names the key the run was triggered with.


def test_a_cancel_naming_another_runs_cancellation_key_is_refused(log):
    ledger.append_input(log, jsonl(triggered("r", trigger={"source": "api", "cancellation_key": "order-1"})))
    message = refusal(log, ev("run.cancelled", run_id="r", by="cancellation_key", cancellation_key="order-2"))
    assert "cancellation_key 'order-2'" in message and "'order-1'" in message
    assert log.run_state("r").status == PENDING


def test_a_cancel_by_key_of_a_run_triggered_without_one_is_refused(log):
    ledger.append_input(log, jsonl(triggered("r")))
    assert "triggered without a cancellation_key" in refusal(log, ev("run.cancelled", run_id="r", by="cancellation_key"))
    assert "triggered without a cancellation_key" in refusal(
        log, ev("run.cancelled", run_id="r", by="operator", cancellation_key="order-1")
    )


@pytest.mark.parametrize("fields", [{"by": "cancellation_key"}, {"by": "cancellation_key", "cancellation_key": "order-1"}, {"by": "operator", "cancellation_key": "order-1"}, {"by": "workflow_deactivated"}])
def test_a_cancel_consistent_with_the_runs_key_is_taken(log, fields):
    ledger.append_input(log, jsonl(triggered("r", trigger={"source": "api", "cancellation_key": "order-1"})))
    ledger.append_input(log, jsonl(ev("run.cancelled", run_id="r", **fields)))
    assert log.run_state("r").status == CANCELLED


def test_the_key_rule_is_the_rule_state_s_own():
    run = Run.from_state("r", {"s": PENDING, "r": 0, "m": 3, "k": "order-1"})
    with pytest.raises(FactRefused):
        run.check(ev("run.cancelled", run_id="r", by="cancellation_key", cancellation_key="order-9"))


# Attempt numbers: at most what every view's integer column holds.


def test_an_attempt_number_past_the_limit_is_refused_naming_the_field():
    with pytest.raises(EventInvalid) as raised:
        validate_event(step("step.started", "r", attempt=2**63))
    assert any(m.startswith('field "attempt":') and "2147483647" in m for m in raised.value.messages)
    assert validate_event(step("step.started", "r", attempt=2**31 - 1))["attempt"] == 2**31 - 1


def test_a_huge_attempt_number_never_reaches_the_log_to_stop_every_query(log):
    ledger.append_input(log, jsonl(triggered("r"), ev("run.started", run_id="r")))
    with pytest.raises(InvalidInput):
        ledger.append_input(log, jsonl(step("step.started", "r", attempt=2**63)))
    assert ledger.show_run(log, "r")["status"] == "running"


# Commands: a refusal found under the write lock is said as the first look says it.


def test_a_retry_that_loses_a_race_is_refused_in_the_commands_own_words(log, monkeypatch):
    ledger.append_input(log, jsonl(triggered("r"), ev("run.failed", run_id="r", error="x")))
    stale = log.run_state("r")
    ledger.retry_run(log, "r")  # another operator's, between our look and our write
    real = log.run_state
    looks = iter([stale])
    monkeypatch.setattr(log, "run_state", lambda run_id: next(looks, None) or real(run_id))
    with pytest.raises(CommandRefused) as raised:
        ledger.retry_run(log, "r")
    assert str(raised.value) == "cannot retry run 'r': it is pending; only a failed run can be retried"


def test_a_cancel_that_loses_a_race_is_refused_in_the_commands_own_words(log, monkeypatch):
    ledger.append_input(log, jsonl(triggered("r")))
    stale = log.run_state("r")
    ledger.cancel_run(log, "r")
    real = log.run_state
    looks = iter([stale])
    monkeypatch.setattr(log, "run_state", lambda run_id: next(looks, None) or real(run_id))
    with pytest.raises(CommandRefused) as raised:
        ledger.cancel_run(log, "r")
    assert str(raised.value) == (
        "cannot cancel run 'r': it is already cancelled; only a pending, running or paused run can be cancelled"
    )


# The views take a late result as the replay does, caught up page by page or rebuilt.


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run_histories(), st.data())
def test_late_results_fold_alike_in_the_views_the_replay_and_a_rebuild(case, data):
    events, status, _ = case
    started = {(e["step"], e["attempt"]): e for e in events if e["type"] == "step.started"}
    for e in events:
        if e["type"] in ("step.succeeded", "step.failed"):
            started.pop((e["step"], e["attempt"]))
    late = [
        make(500 + i, "r1", data.draw(st.sampled_from(["step.succeeded", "step.failed"])), step=s["step"], step_type=s["step_type"], attempt=s["attempt"])
        for i, s in enumerate(started.values())
    ]
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl(*events))
        ledger.catch_up(log)  # the late results then fold on a page of their own
        result, _ = ledger.append_input(log, jsonl(*late))
        assert result.appended == len(late)
        caught_up = ledger.show_run(log, "r1")
        assert caught_up["status"] == status
        assert all(s["status"] in ("completed", "failed") for s in caught_up["steps"])
        last = ledger.replay(log, "r1")[-1].record
        assert {k: caught_up[k] for k in last} == last
        ledger.rebuild(log)
        assert ledger.show_run(log, "r1") == caught_up


def test_cancel_by_key_refuses_a_bad_reason_or_key_even_when_no_run_has_the_key(log):
    with pytest.raises(CommandRefused, match="reason"):
        ledger.cancel_by_key(log, "order-1", reason="x" * 10_001)
    with pytest.raises(CommandRefused, match="cancellation_key"):
        ledger.cancel_by_key(log, "k" * 300)
    assert ledger.cancel_by_key(log, "order-1", reason="fine") == []
