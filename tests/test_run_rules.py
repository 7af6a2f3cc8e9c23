"""The run state machine: each legal move, and each illegal fact refused with its reason."""

from __future__ import annotations

import pytest

from flowledger.domain.run import CANCELLED, COMPLETED, FAILED, PAUSED, PENDING, RUNNING, Run
from flowledger.errors import FactRefused
from tests.conftest import ev, step, triggered


def run_through(*events):
    run = Run("r")
    for e in events:
        run.check(e)
        run.apply(e)
    return run


def started():
    return [triggered("r"), ev("run.started", run_id="r")]


def refused(run, event):
    before = run.to_state()
    with pytest.raises(FactRefused) as info:
        run.check(event)
    assert run.to_state() == before
    return info.value


def test_the_happy_path():
    run = run_through(*started(), step("step.started", "r"), step("step.succeeded", "r"), ev("run.completed", run_id="r"))
    assert run.status == COMPLETED


def test_pause_and_resume():
    run = run_through(*started(), ev("run.paused", run_id="r"))
    assert run.status == PAUSED
    run.check(ev("run.resumed", run_id="r"))
    run.apply(ev("run.resumed", run_id="r"))
    assert run.status == RUNNING


def test_a_second_trigger_is_refused_naming_run_event_type_and_status():
    run = run_through(triggered("r"))
    second = triggered("r")
    error = refused(run, second)
    assert (error.run_id, error.event_id, error.event_type, error.status) == ("r", second["id"], "run.triggered", PENDING)
    assert "already triggered" in str(error) and second["id"] in str(error)


def test_an_event_for_a_run_never_triggered_is_refused():
    assert "never triggered" in refused(Run("r"), ev("run.started", run_id="r")).reason


@pytest.mark.parametrize("terminal", ["run.completed", "run.cancelled", "run.failed"])
def test_nothing_but_a_retry_happens_after_the_end(terminal):
    fields = {"by": "operator"} if terminal == "run.cancelled" else {"error": "x"} if terminal == "run.failed" else {}
    run = run_through(*started(), ev(terminal, run_id="r", **fields))
    for late in (step("step.started", "r"), ev("run.completed", run_id="r"), ev("run.cancelled", run_id="r", by="operator"), ev("run.paused", run_id="r"), ev("run.started", run_id="r")):
        refused(run, late)


def test_completed_after_cancelled_is_refused():
    run = run_through(*started(), ev("run.cancelled", run_id="r", by="operator"))
    assert refused(run, ev("run.completed", run_id="r")).status == CANCELLED


def test_a_pending_run_cannot_complete_or_take_steps_but_can_be_cancelled_or_fail():
    run = run_through(triggered("r"))
    refused(run, ev("run.completed", run_id="r"))
    refused(run, step("step.started", "r"))
    assert run_through(triggered("r"), ev("run.cancelled", run_id="r", by="operator")).status == CANCELLED
    assert run_through(triggered("r"), ev("run.failed", run_id="r", error="bad data")).status == FAILED


def test_step_attempts_must_be_started_once_and_finished_once():
    run = run_through(*started(), step("step.started", "r"))
    refused(run, step("step.started", "r"))
    refused(run, step("step.succeeded", "r", attempt=2))
    run.apply(step("step.failed", "r"))
    refused(run, step("step.succeeded", "r"))
    run_through(*started(), step("step.started", "r"), step("step.failed", "r"), step("step.started", "r", attempt=2))


def test_automatic_retries_count_and_stop_at_max_retries():
    run = run_through(triggered("r", max_retries=2), ev("run.started", run_id="r"))
    for _ in range(2):
        e = ev("run.retrying", run_id="r")
        run.check(e)
        run.apply(e)
    assert (run.status, run.retry_count) == (RUNNING, 2)
    assert "reached max_retries 2" in refused(run, ev("run.retrying", run_id="r")).reason


def test_a_manual_retry_only_on_a_failed_run_and_back_to_pending():
    run = run_through(*started())
    refused(run, ev("run.retried", run_id="r"))
    run = run_through(*started(), ev("run.failed", run_id="r", error="x"), ev("run.retried", run_id="r"))
    assert (run.status, run.retry_count) == (PENDING, 1)


def test_max_retries_zero_means_no_retry():
    run = run_through(triggered("r", max_retries=0), ev("run.failed", run_id="r", error="x"))
    refused(run, ev("run.retried", run_id="r"))


def test_state_round_trips_through_its_compact_form():
    run = run_through(triggered("r", trigger={"source": "api", "cancellation_key": "k"}), ev("run.started", run_id="r"), step("step.started", "r"))
    again = Run.from_state("r", run.to_state())
    assert again == run
