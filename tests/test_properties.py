"""Properties of the log over generated histories (hypothesis).

The generator walks its own model of the run lifecycle, written apart from the code
under test, so a disagreement shows up as a failure rather than agreeing with itself.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.domain.redaction import DEFAULT_SECRET_KEYS, Redactor
from flowledger.errors import InvalidInput
from tests.histories import LIFECYCLE, MODEL, STEPS, fresh_log, jsonl, make, run_histories

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

@SETTINGS
@given(run_histories())
def test_valid_histories_are_stored_whole_and_end_in_the_expected_legal_state(case):
    events, status, retries = case
    with fresh_log() as (log, _):
        result, _ = ledger.append_input(log, jsonl(events))
        assert result.appended == len(events)
        record = ledger.show_run(log, "r1")
        assert (record["status"], record["retry_count"]) == (status, retries)
        assert log.run_state("r1").status == status
        history = ledger.replay(log, "r1")
        assert [h.event.body["id"] for h in history] == [e["id"] for e in events]


@SETTINGS
@given(run_histories(), st.sampled_from(LIFECYCLE), st.data())
def test_illegal_facts_are_refused_and_leave_the_history_untouched(case, kind, data):
    events, status, retries = case
    max_retries = events[0]["max_retries"]
    allowed = set(MODEL[status])
    if retries >= max_retries:
        allowed -= {"run.retrying", "run.retried"}
    if kind in allowed:
        return
    attempt = data.draw(st.one_of(st.integers(1, 4), st.integers(1, 30)))
    # One of the history's own steps, so the result may name an attempt it started.
    step, step_type = data.draw(st.sampled_from(STEPS))
    # A result for an open attempt is allowed in any status (it may come late).
    if kind in ("step.succeeded", "step.failed") and (step, attempt) in _open_attempts(events):
        return
    # A fresh attempt may start while the run is running or paused; one started before, never.
    fresh = (step, attempt) not in _started(events)
    if kind == "step.started" and status in ("running", "paused") and fresh:
        return
    extra = {"workflow": "w", "recipient": "u"} if kind == "run.triggered" else {}
    if kind.startswith("step."):
        extra = {"step": step, "step_type": step_type, "attempt": attempt}
    bad = make(999, "r1", kind, **extra)
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl(events))
        before = [(e.position, e.body) for e in log.run_events("r1")]
        with pytest.raises(InvalidInput) as info:
            ledger.append_input(log, jsonl([bad]))
        (problem,) = info.value.problems
        assert "r1" in problem.message and bad["id"] in problem.message and kind in problem.message and status in problem.message
        assert [(e.position, e.body) for e in log.run_events("r1")] == before
        assert log.run_state("r1").status == status


@SETTINGS
# Busy histories too: many attempts, so the fact often names one of them.
@given(st.one_of(run_histories(), run_histories(busy=True)), st.sampled_from(["step.started", "step.succeeded", "step.failed"]), st.data())
def test_a_step_fact_is_taken_exactly_when_its_attempt_allows_it(case, kind, data):
    """A start only for a new attempt of a running or paused run; a result only for an open
    attempt, once, in any status (it may come late). Taken whole, or refused leaving all as it was."""
    events, status, _ = case
    started = sorted(_started(events))
    if started and data.draw(st.booleans(), label="an attempt of the history"):
        step, attempt = data.draw(st.sampled_from(started))
    else:
        step, attempt = data.draw(st.sampled_from(STEPS))[0], data.draw(st.integers(1, 6))
    step_type = dict(STEPS)[step] if step != "notify" else "send_email"
    if kind == "step.started":
        allowed = status in ("running", "paused") and (step, attempt) not in started
    else:
        allowed = (step, attempt) in _open_attempts(events)
    fact = make(999, "r1", kind, step=step, step_type=step_type, attempt=attempt)
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl(events))
        before = [(e.position, e.body) for e in log.run_events("r1")]
        if allowed:
            result, _ = ledger.append_input(log, jsonl([fact]))
            assert result.appended == 1
            assert [e.body["id"] for e in log.run_events("r1")] == [e["id"] for e in events] + [fact["id"]]
        else:
            with pytest.raises(InvalidInput) as info:
                ledger.append_input(log, jsonl([fact]))
            (problem,) = info.value.problems
            assert fact["id"] in problem.message and status in problem.message
            assert [(e.position, e.body) for e in log.run_events("r1")] == before
        assert log.run_state("r1").status == status


def _started(events):
    """(step, attempt) of every attempt started."""
    return {(e["step"], e["attempt"]) for e in events if e["type"] == "step.started"}


def _open_attempts(events):
    """(step, attempt) of every attempt started and not yet finished."""
    finished = {(e["step"], e["attempt"]) for e in events if e["type"] in ("step.succeeded", "step.failed")}
    return _started(events) - finished


@SETTINGS
@given(run_histories(), st.data())
def test_reappending_any_subset_stores_nothing_new(case, data):
    events, _, _ = case
    subset = data.draw(st.lists(st.sampled_from(events), max_size=len(events) * 2))
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl(events))
        count = log.count()
        result, _ = ledger.append_input(log, jsonl(subset)) if subset else (None, None)
        if subset:
            assert (result.appended, result.duplicates) == (0, len(subset))
        assert log.count() == count


def _key_variants(key):
    camel = key.split("_")[0] + "".join(part.title() for part in key.split("_")[1:])
    return st.sampled_from([key, key.upper(), key.title(), key.replace("_", "-"), key.replace("_", "-").title(), camel, key.replace("_", ".")])


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=5))


_REDACTOR = Redactor()


@st.composite
def payload_with_secret(draw, secret):
    """A JSON value with the secret under a secret key at a random depth."""
    key = draw(st.sampled_from(sorted(DEFAULT_SECRET_KEYS)).flatmap(_key_variants))
    value = {key: secret}
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            value = [draw(json_leaf), value]
        else:
            value = {draw(st.text(min_size=1, max_size=6).filter(lambda k: not _REDACTOR.is_secret(k))): value, "n": draw(json_leaf)}
    return value if isinstance(value, dict) else {"wrapped": value}


@SETTINGS
@given(st.data(), st.sampled_from(["data", "request", "response", "output"]))
def test_secrets_planted_at_random_depths_never_reach_the_database_file(data, field):
    secret = "s3cr3t-" + data.draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=20))
    payload = data.draw(payload_with_secret(secret))
    events = [make(0, "r1", "run.triggered", workflow="w", recipient="u"), make(1, "r1", "run.started")]
    if field == "data":
        events[0]["data"] = payload
    else:
        events.append(make(2, "r1", "step.started", step="s", step_type="integration", attempt=1))
        events.append(make(3, "r1", "step.succeeded", step="s", step_type="integration", attempt=1, **{field: payload}))
    with fresh_log() as (log, path):
        ledger.append_input(log, jsonl(events))
        log.close()
        raw = b"".join(open(p, "rb").read() for p in (path, path + "-wal") if os.path.exists(p))
        assert secret.encode() not in raw
