"""Behaviours of the folds that a mutation review of flowledger/projections found no test
holding: each test below failed against a mutant of the fold it names and passes on main."""

from __future__ import annotations

from typing import Any

from flowledger import ledger, queries
from tests.conftest import ev, step, triggered
from tests.histories import jsonl


def at(minute: int, second: int = 0) -> str:
    return f"2026-11-01T09:{minute:02d}:{second:02d}Z"


def stored(minute: int, second: int = 0) -> str:
    return f"2026-11-01T09:{minute:02d}:{second:02d}.000000Z"


def started(run_id: str = "r1") -> list[dict[str, Any]]:
    return [triggered(run_id, occurred_at=at(0)), ev("run.started", run_id=run_id, occurred_at=at(1))]


def queued(message_id: str, channel: str = "email", run_id: str = "r1") -> dict[str, Any]:
    return ev(
        "message.queued", message_id=message_id, channel=channel, recipient="user-1", run_id=run_id,
        step=f"{channel}-1", occurred_at=at(1),
    )


def msg(kind: str, message_id: str, when: str, **fields: Any) -> dict[str, Any]:
    return ev("message." + kind, message_id=message_id, occurred_at=when, **fields)


def channel(log, name: str) -> dict[str, Any]:
    return ledger.query(log, queries.workflow_details, "welcome")["channels"][name]


def detail_after(log, run_id: str, n: int | None = None) -> dict[str, Any]:
    """The run as the auditor's replay gives it after its n-th entry (None: the last)."""
    return ledger.query(log, queries.replay_detail, run_id, log.backend, n)


# --- deliveries: channel figures ----------------------------------------------------------


def test_a_complaint_or_unsubscribe_counts_even_when_the_message_bounced_afterwards(log):
    """`complained` and `unsubscribed` count whatever became of the message, a bounced one too."""
    # Mutant: complaints counted only for messages not failed now (deliveries_view._metrics).
    ledger.append_input(log, jsonl([
        *started(), queued("m1"),
        msg("delivered", "m1", at(2)),
        msg("complained", "m1", at(3)),
        msg("unsubscribed", "m1", at(3, 30)),
        msg("bounced", "m1", at(4), reason="mailbox full"),
    ]))
    email = channel(log, "email")
    assert (email["bounced"], email["complained"], email["unsubscribed"]) == (1, 1, 1)


def test_only_messages_a_person_opened_count_in_the_human_open_rate(log):
    """A scanner's open (within seconds of delivery) or one the provider flags is no human open."""
    # Mutant: every opened message counted in human_opened (deliveries_view._metrics).
    ledger.append_input(log, jsonl([
        *started(),
        queued("m1"), msg("delivered", "m1", at(2)), msg("opened", "m1", at(2, 2)),
        queued("m2"), msg("delivered", "m2", at(2)), msg("opened", "m2", at(3), machine=True),
        queued("m3"), msg("delivered", "m3", at(2)), msg("opened", "m3", at(10)),
    ]))
    email = channel(log, "email")
    assert (email["opened"], email["open_rate"]) == (3, 100.0)
    assert (email["human_opened"], email["human_open_rate"]) == (1, 33.33)


def test_a_scanners_click_still_counts_in_clicked_and_the_click_rate(log):
    """Machine clicks (a link scanner right after delivery) are counted in `clicked`; only the
    human figures leave them out."""
    # Mutant: a click counted only where a person opened the message (deliveries_view._metrics).
    ledger.append_input(log, jsonl([
        *started(), queued("m1"), msg("delivered", "m1", at(2)),
        msg("clicked", "m1", at(2, 1), url="https://example.com/a"),
    ]))
    email = channel(log, "email")
    assert (email["clicked"], email["click_rate"], email["human_opened"]) == (1, 100.0, 0)


def test_an_open_stamped_before_its_delivery_is_a_persons(log):
    """Only an open in the seconds *after* the delivery is a machine's; one stamped before it
    (a delivery receipt stamped late, delivered arriving after the open) is a person's."""
    # Mutant: any open less than 5 s after the delivery, earlier ones too, taken as a machine's.
    ledger.append_input(log, jsonl([
        *started(), queued("m1"), msg("opened", "m1", at(2)), msg("delivered", "m1", at(3)),
    ]))
    email = channel(log, "email")
    assert (email["opened"], email["human_opened"]) == (1, 1)
    (d,) = ledger.show_run(log, "r1")["deliveries"]
    assert d["status"] == "opened"


def test_an_open_5_seconds_after_its_delivery_is_a_persons_and_one_at_4_a_machines(log):
    """README: opens less than 5 seconds after the delivery are a machine's; at 5, a person's
    (providers stamp whole seconds: the boundary is met often)."""
    # Mutant: the window taken as 5 seconds or less (delivery._by_machine).
    ledger.append_input(log, jsonl([
        *started(), queued("m1"), queued("m2"),
        msg("delivered", "m1", at(3)), msg("opened", "m1", at(3, 5)),
        msg("delivered", "m2", at(3)), msg("opened", "m2", at(3, 4)),
    ]))
    email = channel(log, "email")
    assert (email["opened"], email["human_opened"]) == (2, 1)


def test_a_price_sums_to_itself_not_a_millionth_less(log):
    """A price such as 0.0157 (15699.999… millionths as a float) is summed as 0.0157."""
    # Mutant: prices truncated to whole millionths instead of rounded (deliveries_view._metrics).
    ledger.append_input(log, jsonl([
        *started(), queued("s1", channel="sms"),
        msg("sent", "s1", at(2), cost={"amount": 0.0157, "currency": "USD"}),
    ]))
    sms = channel(log, "sms")
    assert sms["estimated_cost"] == 0.0157
    assert ledger.query(log, queries.workflow_details, "welcome")["totals"]["total_cost"] == 0.0157


# --- runs: the record ------------------------------------------------------------------------


def _failed_and_retried() -> list[dict[str, Any]]:
    return [
        *started(),
        step("step.started", "r1", occurred_at=at(2)),
        step("step.failed", "r1", occurred_at=at(3), error="SMTP 451"),
        ev("run.failed", run_id="r1", occurred_at=at(3), error="SMTP 451"),
        ev("run.retried", run_id="r1", occurred_at=at(5), actor="ops"),
    ]


def test_a_retry_clears_the_runs_completion_and_duration(log):
    """A retried run is pending again: no completed_at, no duration, until it finishes again."""
    # Mutant: run.retried leaves completed_at as the failure set it (run_record.apply).
    ledger.append_input(log, jsonl(_failed_and_retried()))
    r = ledger.show_run(log, "r1")
    assert (r["status"], r["retry_count"], r["completed_at"], r["duration_seconds"]) == ("pending", 1, None, None)


def test_a_retried_run_keeps_its_first_start_and_its_duration_counts_from_it(log):
    """executed_at is when the run *first* started; a start after a retry does not move it."""
    # Mutant: executed_at taken from the latest run.started (run_record.apply).
    ledger.append_input(log, jsonl([
        *_failed_and_retried(),
        ev("run.started", run_id="r1", occurred_at=at(6)),
        ev("run.completed", run_id="r1", occurred_at=at(7)),
    ]))
    r = ledger.show_run(log, "r1")
    assert (r["status"], r["executed_at"], r["completed_at"]) == ("completed", stored(1), stored(7))
    assert r["duration_seconds"] == 360.0


def test_error_message_is_the_latest_failed_attempts(log):
    """After two failed attempts the run shows the second one's error, and counts both."""
    # Mutant: the first error kept (run_record.apply).
    ledger.append_input(log, jsonl([
        *started(),
        step("step.started", "r1", occurred_at=at(2)),
        step("step.failed", "r1", occurred_at=at(3), error="SMTP 451"),
        ev("run.retrying", run_id="r1", occurred_at=at(3)),
        step("step.started", "r1", attempt=2, occurred_at=at(4)),
        step("step.failed", "r1", attempt=2, occurred_at=at(5), error="SMTP 550 mailbox unavailable"),
    ]))
    r = ledger.show_run(log, "r1")
    assert (r["error_count"], r["error_message"]) == (2, "SMTP 550 mailbox unavailable")


def test_a_run_failure_shows_its_own_error(log):
    """A run.failed's error is the run's error_message, after a step's or with none before it."""
    # Mutant: run.failed's error ignored (run_record.apply).
    ledger.append_input(log, jsonl([
        *started("r1"),
        step("step.started", "r1", occurred_at=at(2)),
        step("step.failed", "r1", occurred_at=at(3), error="SMTP 451"),
        ev("run.failed", run_id="r1", occurred_at=at(4), error="gave up: retries exhausted"),
        *started("r2"),
        ev("run.failed", run_id="r2", occurred_at=at(4), error={"message": "workflow deleted", "code": 410}),
    ]))
    r1, r2 = ledger.show_run(log, "r1"), ledger.show_run(log, "r2")
    assert (r1["error_message"], r1["error_count"]) == ("gave up: retries exhausted", 1)
    assert (r2["error_message"], r2["error_count"]) == ("workflow deleted", 0)


def test_updated_at_is_the_latest_event_time_not_the_last_to_arrive(log):
    """An event stamped earlier than the run's latest (another worker's, appended late) leaves
    updated_at at the latest, so a busy run never looks stuck."""
    # Mutant: updated_at taken from the last event folded (run_record.apply).
    ledger.append_input(log, jsonl([
        *started(),
        step("step.started", "r1", name="crm", occurred_at=at(10)),
        step("step.started", "r1", name="email-1", occurred_at=at(9)),
    ]))
    assert ledger.show_run(log, "r1")["updated_at"] == stored(10)
    stuck = ledger.query(
        log, queries.list_runs, queries.RunFilters(statuses=("running",), updated_before=stored(9, 30))
    )["entries"]
    assert stuck == []


# --- the auditor's replay: the step trace ------------------------------------------------------


def test_replay_puts_a_message_under_the_attempt_started_by_then_as_runs_show_does(log):
    """A message goes to the latest attempt of its step started by the time it was queued, one
    started the same second included, in the replay's detail as in `runs show`."""
    # Mutants: the first candidate attempt taken, or one started the same second left out
    # (RunReplay.to_detail).
    ledger.append_input(log, jsonl([
        *started(),
        step("step.started", "r1", occurred_at=at(2)),
        {**queued("m1"), "step": "email-1", "occurred_at": at(2, 10)},
        step("step.failed", "r1", occurred_at=at(3)),
        ev("run.retrying", run_id="r1", occurred_at=at(3)),
        step("step.started", "r1", attempt=2, occurred_at=at(4)),
        {**queued("m2"), "step": "email-1", "occurred_at": at(4)},
        step("step.succeeded", "r1", attempt=2, occurred_at=at(5)),
    ]))
    replayed = detail_after(log, "r1")
    assert [(s["attempt"], s["messages"]) for s in replayed["steps"]] == [(1, ["m1"]), (2, ["m2"])]
    assert replayed["steps"] == ledger.show_run(log, "r1")["steps"]


def test_replay_shows_an_attempt_idle_while_its_run_is_paused(log):
    """In the replay, an attempt started or left open while the run is paused is idle."""
    # Mutant: attempts started while paused shown running (RunReplay._apply_to_steps).
    ledger.append_input(log, jsonl([
        *started(),
        ev("run.paused", run_id="r1", occurred_at=at(2)),
        step("step.started", "r1", occurred_at=at(3)),
    ]))
    assert [s["status"] for s in detail_after(log, "r1")["steps"]] == ["idle"]
    assert [s["status"] for s in ledger.show_run(log, "r1")["steps"]] == ["idle"]
