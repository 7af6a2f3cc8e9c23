"""Three defects of the projection folds a review found, each as a plain example: a price
of 0.0 that lost its currency, prices below a millionth that vanished, and a workflow's
`completed_at` that kept a failure a retry had undone. Each is checked live (page by page,
in separate appends) and after a rebuild, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger import ledger, queries
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE
from tests.histories import fresh_log, jsonl, make

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or ""))]


@pytest.fixture(params=BACKENDS)
def store(request):
    """A new store on each backend: (log, a store URL)."""
    if request.param == "sqlite":
        with fresh_log() as (log, path):
            yield log
        return
    postgres_url = request.getfixturevalue("postgres_url")
    log = open_log(postgres_url)
    try:
        yield log
    finally:
        log.close()


def _details(log: Any, batches: list[list[dict[str, Any]]], workflow: str = "w") -> dict[str, Any]:
    """A workflow's details with ``batches`` appended one by one, the views caught up (one
    event a page) after each; the same again after a rebuild, checked equal."""
    for batch in batches:
        ledger.append_input(log, jsonl(batch))
        Projector(log.backend).catch_up(page_size=1)
    live = ledger.query(log, queries.workflow_details, workflow)
    Projector(log.backend).rebuild()
    assert ledger.query(log, queries.workflow_details, workflow) == live
    return live


def _priced(*messages: tuple[str, str, float, str]) -> list[dict[str, Any]]:
    """A started run of workflow "w", and messages (id, channel, amount, currency) it sent."""
    events = [make(0, "r1", "run.triggered", workflow="w", recipient="u1"), make(1, "r1", "run.started")]
    for mid, channel, amount, currency in messages:
        events.append({"id": mid + "-q", "type": "message.queued", "occurred_at": "2026-11-01T09:00:02Z", "message_id": mid,
                       "channel": channel, "recipient": "u1", "run_id": "r1", "step": channel})
        events.append({"id": mid + "-s", "type": "message.sent", "occurred_at": "2026-11-01T09:00:03Z", "message_id": mid,
                       "cost": {"amount": amount, "currency": currency}})
    return events


# ---------------------------------------------------------------- A: a price of 0.0


def test_a_free_message_keeps_its_currency_so_two_currencies_are_mixed(store):
    # A free WhatsApp conversation priced 0.0 USD beside an sms at 0.01 EUR: the totals
    # said EUR 0.01, as if every price were in euros.
    details = _details(store, [_priced(("m1", "sms", 0.0, "USD"), ("m2", "whatsapp", 0.01, "EUR"))])
    totals = details["totals"]
    assert (totals["total_cost"], totals["currency"]) == (None, "mixed")
    assert totals["costs_by_currency"] == {"EUR": 0.01, "USD": 0.0}
    assert details["channels"]["sms"]["estimated_cost"] == 0.0
    assert details["channels"]["sms"]["unpriced"] == 0


def test_a_channel_with_a_free_and_a_priced_message_in_two_currencies_gives_both(store):
    details = _details(store, [_priced(("m1", "whatsapp", 0.0, "USD"), ("m2", "whatsapp", 0.01, "EUR"))])
    whatsapp = details["channels"]["whatsapp"]
    assert whatsapp["estimated_cost"] is None
    assert whatsapp["costs_by_currency"] == {"EUR": 0.01, "USD": 0.0}


def test_free_messages_alone_cost_0_0_in_their_currency(store):
    totals = _details(store, [_priced(("m1", "whatsapp", 0.0, "USD"))])["totals"]
    assert (totals["total_cost"], totals["currency"]) == (0.0, "USD")


def test_a_price_corrected_to_0_0_keeps_the_currency_and_one_corrected_away_drops_it(store):
    # Prices are corrections: the latest stands. 0.01 EUR then 0.0 USD is a free USD message.
    events = _priced(("m1", "sms", 0.01, "EUR"))
    later = {"id": "m1-d", "type": "message.delivered", "occurred_at": "2026-11-01T09:00:04Z", "message_id": "m1",
             "cost": {"amount": 0.0, "currency": "USD"}}
    totals = _details(store, [events, [later]])["totals"]
    assert (totals["total_cost"], totals["currency"]) == (0.0, "USD")
    assert "costs_by_currency" not in totals


# ---------------------------------------------------------------- B: below a millionth


def test_prices_below_a_millionth_keep_their_currency(store):
    # Three sms at 0.0000004 USD: the totals said 0.0 with no currency, as if unpriced.
    # Sums are kept in millionths (README): each rounds to 0, the currency stands.
    details = _details(store, [_priced(*((f"m{k}", "sms", 0.0000004, "USD") for k in range(3)))])
    totals = details["totals"]
    assert (totals["total_cost"], totals["currency"]) == (0.0, "USD")
    assert details["channels"]["sms"]["estimated_cost"] == 0.0
    assert details["channels"]["sms"]["unpriced"] == 0


def test_a_sub_millionth_price_beside_another_currency_is_mixed(store):
    totals = _details(store, [_priced(("m1", "sms", 0.0000004, "USD"), ("m2", "sms", 0.0079, "EUR"))])["totals"]
    assert (totals["total_cost"], totals["currency"]) == (None, "mixed")
    assert totals["costs_by_currency"] == {"EUR": 0.0079, "USD": 0.0}


# ---------------------------------------------------------------- C: a failure a retry undid


def _run(run_id: str, *steps: tuple[str, str]) -> list[dict[str, Any]]:
    """A run of workflow "w" triggered at 09:00:00, then (type, HH:MM:SS) events."""
    events = [{**make(0, run_id, "run.triggered", workflow="w", recipient="u1", max_retries=2), "occurred_at": "2026-11-01T09:00:00Z"}]
    for k, (kind, at) in enumerate(steps, 1):
        events.append({**make(k, run_id, kind), "occurred_at": f"2026-11-01T{at}Z"})
    return events


RETRIED_EARLIER = [("run.started", "09:00:01"), ("run.failed", "12:00:00"), ("run.retried", "10:00:00"),
                   ("run.started", "10:00:01"), ("run.completed", "11:00:00")]
"""A failure at 12:00 that a retry stamped 10:00 undid; the run completed again at 11:00."""


def test_a_workflow_completes_when_its_runs_did_not_at_a_failure_a_retry_undid(store):
    # The run shows completed_at 11:00; the workflow showed 12:00 and 10,799 seconds.
    events = _run("r1", *RETRIED_EARLIER)
    details = _details(store, [events[:3], events[3:]])
    assert details["status"] == "completed"
    assert (details["completed_at"], details["duration_seconds"]) == ("2026-11-01T11:00:00.000000Z", 7199.0)
    assert ledger.query(store, queries.show_run, "r1")["completed_at"] == details["completed_at"]


def test_a_workflow_completes_at_its_latest_run_once_the_one_a_retry_lowered_is_below_another(store):
    # r2 completed at 10:30; r1 failed at 12:00, was retried, failed again at 11:00, was
    # retried again and completed at 10:00: the latest of the runs is r2's 10:30.
    r1 = _run("r1", *RETRIED_EARLIER[:4], ("run.failed", "11:00:00"), ("run.retried", "09:30:00"), ("run.started", "09:30:01"),
              ("run.completed", "10:00:00"))
    r2 = _run("r2", ("run.started", "09:00:05"), ("run.completed", "10:30:00"))
    details = _details(store, [r1[:3], r2, r1[3:6], r1[6:]])
    assert details["completed_at"] == "2026-11-01T10:30:00.000000Z"


def test_a_retried_run_not_finished_again_leaves_the_workflow_running_then_it_completes_at_the_new_time(store):
    events = _run("r1", *RETRIED_EARLIER)
    assert _details(store, [events[:4]])["completed_at"] is None  # retried: running again
    details = _details(store, [events[4:]])
    assert details["completed_at"] == "2026-11-01T11:00:00.000000Z"


def test_two_runs_finished_at_one_time_keep_it_while_one_of_them_is_retried_away(store):
    a = _run("a", ("run.started", "09:00:01"), ("run.failed", "12:00:00"))
    b = _run("b", ("run.started", "09:00:01"), ("run.completed", "12:00:00"))
    retry = [{**make(3, "a", "run.retried"), "occurred_at": "2026-11-01T12:00:05Z"},
             {**make(4, "a", "run.started"), "occurred_at": "2026-11-01T12:00:06Z"},
             {**make(5, "a", "run.completed"), "occurred_at": "2026-11-01T11:00:00Z"}]
    details = _details(store, [a, b, retry])
    assert details["completed_at"] == "2026-11-01T12:00:00.000000Z"


# ---------------------------------------------------------------- stores folded before the fixes


def test_a_store_whose_views_an_earlier_version_folded_is_refolded_once_when_opened(tmp_path):
    # What the earlier versions left: channel counters with no priced:<currency> rows, and
    # summaries holding a last_completed_at of their own (and no workflow_completions).
    path = str(tmp_path / "old.db")
    events = _run("r1", *RETRIED_EARLIER) + _priced(("m1", "sms", 0.0, "USD"), ("m2", "whatsapp", 0.01, "EUR"))[2:]
    log = open_log(path)
    try:
        ledger.append_input(log, jsonl(events))
        Projector(log.backend).catch_up()
        with log.backend.transaction(write=True) as c:
            c.execute("DELETE FROM channel_counts WHERE metric LIKE 'priced:%'")
            c.execute("DROP TABLE workflow_completions")
            c.execute("DROP TABLE workflow_summaries")
            c.execute("CREATE TABLE workflow_summaries (workflow TEXT PRIMARY KEY, first_created_at TEXT, "
                      "last_created_at TEXT, first_executed_at TEXT, last_completed_at TEXT) WITHOUT ROWID")
            c.execute("UPDATE flowledger_meta SET value = '6' WHERE key = 'view:deliveries'")
            c.execute("UPDATE flowledger_meta SET value = '3' WHERE key = 'view:runs'")
    finally:
        log.close()
    log = open_log(path)
    try:
        details = ledger.query(log, queries.workflow_details, "w")
    finally:
        log.close()
    assert (details["totals"]["currency"], details["completed_at"]) == ("mixed", "2026-11-01T11:00:00.000000Z")
