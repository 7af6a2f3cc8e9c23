"""What a mutation review of the library API (flowledger/ledger.py) found no test holding:
the parameters each function passes on rather than drops (progress callbacks, redactors,
byte limits, view names, lock waits, receipt times, list limits), the problems of a bad
batch naming each event's id and place, a forked reader reaped when the store is busy, the
webhook inbox's order and waits (one take, then behind the rest; a lost connection; a busy
or concurrent drain), the --no-catch-up path refusing only the views a query reads, an
analyst's copy refusing commands, and what rebuild_into and catch_up leave open."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time

import orjson
import pytest

from flowledger import ledger, queries
from flowledger.domain.redaction import REDACTED, Redactor
from flowledger.domain.vocabulary import stream_of
from flowledger.errors import (
    CommandRefused,
    ConnectionLost,
    InvalidInput,
    NotFound,
    StoreBusy,
    StoreIsACopy,
    ViewsNotFolded,
)
from flowledger.ingest_process import FORK_FROM_BYTES
from flowledger.providers import ADAPTERS
from flowledger.store import open_log
from flowledger.store.inbox import INBOX_SUFFIX, open_inbox
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_inbox import sqlite_write_lock, with_messages
from tests.test_inbox_review import sendgrid_items, spoil_inbox_rows
from tests.test_providers_review import mailgun_delivered, sent_with
from tests.test_store_mutations import twilio_delivered
from tests.test_webhooks import sendgrid_events


def _children() -> set[int]:
    """This process's child processes (zombies too), as the kernel lists them."""
    pid = os.getpid()
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found.update(int(c) for c in f.read().split())
    return found


# append_input: JSON Lines.


def test_append_input_reports_its_progress_in_bytes_read(log):
    """The progress callback given to append_input hears of every byte of the input read
    (what `append`'s progress bar counts)."""
    data = jsonl([triggered("r1"), triggered("r2")])
    size = len(data.getvalue())
    seen: list[int] = []
    result, _ = ledger.append_input(log, data, progress=seen.append)
    assert result.appended == 2
    assert sum(seen) == size


def test_a_forked_input_met_by_a_busy_store_reaps_its_reader_at_once(store_path, monkeypatch):
    """An input large enough to be read by a second process, which meets another process's
    write lock past the lock timeout, leaves no child process behind when StoreBusy is
    raised, even while the caller still holds the error."""
    data = jsonl([triggered(f"r{i}") for i in range(12000)])
    assert len(data.getvalue()) >= FORK_FROM_BYTES
    # Read by a child even where other tests left a thread running in this process.
    monkeypatch.setattr(ledger, "worth_forking", lambda stream: True)
    log = open_log(store_path, lock_timeout=0.1)
    try:
        before = _children()
        with sqlite_write_lock(store_path), pytest.raises(StoreBusy) as caught:
            ledger.append_input(log, data)
        assert caught.value is not None and _children() - before == set()
    finally:
        log.close()


# append_batch: one JSON array (the HTTP API's).


def test_append_batch_names_an_invalid_events_id_and_place(log):
    """An invalid event of a batch is named by its id and its place in the batch; nothing of
    the batch is stored."""
    bad = ev("run.triggered", run_id="r2")  # no workflow
    with pytest.raises(InvalidInput) as caught:
        ledger.append_batch(log, [triggered("r1"), bad])
    problems = caught.value.problems
    assert problems and all((p.event_id, p.index) == (bad["id"], 1) for p in problems)
    with pytest.raises(NotFound):
        log.run_events("r1")


def test_append_batch_redacts_with_the_redactor_given(log):
    """append_batch redacts by the redactor it is given (a server's --redact-key), not only
    the default keys."""
    ledger.append_batch(log, [triggered("r1", data={"house_code": "1234"})], Redactor(extra=["house_code"]))
    assert log.run_events("r1")[0].body["data"] == {"house_code": REDACTED}


def test_append_batch_names_a_refused_events_place(log):
    """An event of a batch the store refuses (its id holds another body) is named by its
    place in the batch; nothing of the batch is stored."""
    first = triggered("r1")
    ledger.append_batch(log, [first])
    with pytest.raises(InvalidInput) as caught:
        ledger.append_batch(log, [triggered("r2"), {**first, "workflow": "another"}])
    (problem,) = caught.value.problems
    assert (problem.refused, problem.event_id, problem.index) == (True, first["id"], 1)
    with pytest.raises(NotFound):
        log.run_events("r2")


# Provider facts.


def test_an_invalid_provider_fact_refuses_the_whole_batch_naming_its_place(log):
    """A provider fact whose event is invalid (a message id too long) refuses the batch,
    naming the fact's place among the facts; its good neighbour is not stored either."""
    facts = [twilio_delivered("SM1"), twilio_delivered("SM" + "x" * 500)]
    with pytest.raises(InvalidInput) as caught:
        ledger.prepare_provider_facts(facts)
    assert caught.value.problems and {p.index for p in caught.value.problems} == {1}
    with pytest.raises(InvalidInput):
        ledger.append_provider_facts(log, facts)
    assert ledger.unmatched(log) == []


def test_a_provider_fact_of_exactly_the_limit_is_kept():
    """A provider fact whose event is exactly max_event_bytes as stored is kept; one byte
    over the limit is refused."""
    fact = twilio_delivered("SM1")
    ((body, _),) = ledger.prepare_provider_facts([fact]).items
    size = len(orjson.dumps(body))
    assert len(ledger.prepare_provider_facts([fact], max_event_bytes=size).items) == 1
    with pytest.raises(InvalidInput) as caught:
        ledger.prepare_provider_facts([fact], max_event_bytes=size - 1)
    (problem,) = caught.value.problems
    assert f"the limit is {size - 1:,} bytes" in problem.message and problem.index == 0


def test_append_provider_facts_applies_the_byte_limit_and_counts_the_skipped(log):
    """append_provider_facts refuses a fact over the byte limit it is given, and says how
    many facts were no fact about delivery (Twilio's queued)."""
    with pytest.raises(InvalidInput):
        ledger.append_provider_facts(log, [twilio_delivered("SM1")], max_event_bytes=50)
    result, skipped = ledger.append_provider_facts(
        log, [twilio_delivered("SM2", MessageStatus="queued"), twilio_delivered("SM3")]
    )
    assert (skipped, result.held) == (1, 1)


def test_a_webhook_waits_only_a_webhooks_while_for_the_write_lock(store_path, monkeypatch):
    """While another process holds the write lock, a webhook's facts (and the next
    webhook's, behind them in the inbox) go to the inbox after the webhook's short wait,
    not the store's long lock timeout."""
    monkeypatch.setattr(ledger, "WEBHOOK_LOCK_TIMEOUT", 0.05)
    with_messages(store_path)
    log = open_log(store_path, lock_timeout=10)
    inbox = open_inbox(log.backend)
    try:
        with sqlite_write_lock(store_path):
            for _ in range(2):
                start = time.monotonic()
                assert ledger.receive_provider_facts(log, inbox, sendgrid_items())[1] == 4
                assert time.monotonic() - start < 5  # not the store's 10 s
        assert inbox.count() == 8
    finally:
        inbox.close()
        log.close()


def _stored(log, event: dict) -> list[dict]:
    """The stored bodies of the stream the event belongs to."""
    with log.backend.transaction(write=False) as c:
        return [orjson.loads(row[3]) for row in log.backend.stream_events(c, stream_of(event))]


def test_append_export_redacts_with_the_redactor_given_and_applies_the_limit(log):
    """An export file's facts are redacted by the redactor given (--redact-key), and refused
    over the byte limit given."""
    ledger.append_input(log, jsonl(sent_with("p1")))
    delivered = {**mailgun_delivered("p1", "mg-r1"), "user-variables": {"house_code": "1234"}}
    data = orjson.dumps({"event-data": delivered})
    with pytest.raises(InvalidInput):
        ledger.append_export(log, "mailgun", data, Redactor(extra=["house_code"]), max_event_bytes=100)
    result, _ = ledger.append_export(log, "mailgun", data, Redactor(extra=["house_code"]))
    assert result.appended == 1
    (stored,) = [e for e in _stored(log, {"type": "message.delivered", "message_id": "m-mg"}) if e["type"] == "message.delivered"]
    assert stored["raw"]["user-variables"] == {"house_code": REDACTED}


def test_a_webhook_without_an_inbox_is_appended_and_one_of_skipped_facts_is_not_kept(store_path):
    """With no inbox (a store in memory has none) a webhook's facts go to the log; a webhook
    of facts all skipped adds nothing to an inbox, even one holding older facts."""
    with_messages(store_path)
    log = open_log(store_path, lock_timeout=0.1)
    inbox = open_inbox(log.backend)
    try:
        result, deferred = ledger.receive_provider_facts(log, None, sendgrid_items())
        assert (result.appended, deferred) == (4, 0)
        with sqlite_write_lock(store_path):
            assert ledger.receive_provider_facts(log, inbox, sendgrid_items())[1] == 4
            skipped = ledger.prepare_provider_facts([twilio_delivered("SM2", MessageStatus="queued")])
            assert ledger.receive_provider_facts(log, inbox, skipped)[1] == 0
        assert inbox.count() == 4
    finally:
        inbox.close()
        log.close()


# Catch-up, queries and the --no-catch-up path.


def _positions(log) -> dict[str, int]:
    return {v.name: v.position for v in ledger.views_lag(log).views}


def test_catch_up_folds_only_the_views_named_reporting_progress_and_events_read(log):
    """catch_up with view names folds those views only, tells the progress callback, and
    returns how many events it read."""
    ledger.append_input(log, jsonl([triggered("r1"), triggered("r2")]))
    seen: list[int] = []
    assert ledger.catch_up(log, ["runs"], progress=seen.append) == 2
    assert sum(seen) == 2
    assert _positions(log) == {"runs": 2, "steps": 0, "deliveries": 0}


def test_queries_without_catch_up_answer_what_the_views_hold(log):
    """show_run and replay with fresh=False (--no-catch-up) never fold what was appended
    since: they answer from the views as they are."""
    ledger.append_input(log, jsonl([triggered("r1")]))
    ledger.catch_up(log)
    ledger.append_input(log, jsonl([ev("run.started", run_id="r1")]))
    assert ledger.show_run(log, "r1", fresh=False)["status"] == "pending"
    assert _positions(log)["runs"] == 1
    ledger.replay(log, "r1", fresh=False)
    assert _positions(log) == {"runs": 1, "steps": 1, "deliveries": 1}
    assert ledger.show_run(log, "r1")["status"] == "running"


def test_unmatched_passes_its_limit_on(log):
    """unmatched lists at most ``limit`` provider facts waiting for their message."""
    ledger.append_provider_facts(log, [twilio_delivered("SM1"), twilio_delivered("SM2")])
    assert len(ledger.unmatched(log)) == 2
    assert len(ledger.unmatched(log, limit=1)) == 1


# Rebuild.


def test_rebuild_folds_again_only_the_views_named_reporting_progress(log):
    """rebuild with view names empties and folds those views only, telling the progress
    callback, and returns the events read."""
    ledger.append_input(log, jsonl([triggered("r1"), triggered("r2")]))
    ledger.catch_up(log, ["runs"])
    seen: list[int] = []
    assert ledger.rebuild(log, ["runs"], progress=seen.append) == 2
    assert sum(seen) == 2
    assert _positions(log) == {"runs": 2, "steps": 0, "deliveries": 0}


def test_rebuild_into_an_existing_copy_folds_only_the_views_named(log, tmp_path):
    """rebuild_into a copy that exists folds again only the views named."""
    copy = str(tmp_path / "copy.db")
    ledger.append_input(log, jsonl([triggered("r1")]))
    assert ledger.rebuild_into(log, copy) == 1
    ledger.append_input(log, jsonl([triggered("r2")]))
    assert ledger.rebuild_into(log, copy, ["runs"]) == 2
    target = open_log(copy)
    try:
        with target.backend.transaction(write=False) as c:
            positions = {name: target.backend.get_position(c, name) for name in ledger.view_names()}
    finally:
        target.close()
    assert positions == {"runs": 2, "steps": 1, "deliveries": 1}


@pytest.mark.parametrize("exists", [False, True])
def test_rebuild_into_opens_the_copy_with_the_lock_timeout_given(log, tmp_path, monkeypatch, exists):
    """rebuild_into opens the copy (new or existing) waiting the lock timeout it is given."""
    copy = str(tmp_path / "copy.db")
    ledger.append_input(log, jsonl([triggered("r1")]))
    if exists:
        ledger.rebuild_into(log, copy)
    opened: list[float | None] = []

    def recording_open_log(url, **kwargs):
        opened.append(kwargs.get("lock_timeout"))
        return open_log(url, **kwargs)

    monkeypatch.setattr(ledger, "open_log", recording_open_log)
    ledger.rebuild_into(log, copy, lock_timeout=7.5)
    assert opened == [7.5]


# Operators' commands.

KEYED = {"trigger": {"source": "api", "cancellation_key": "k1"}}


def test_cancels_record_the_actor_and_the_reason_redacted_by_the_redactor_given(log):
    """cancel_run and cancel_by_key record the actor, the key, and the reason redacted by
    the redactor given (a server's --redact-key)."""
    ledger.append_input(log, jsonl([triggered("r1", **KEYED), triggered("r2")]))
    redactor = Redactor(extra=["house_code"])
    assert ledger.cancel_by_key(log, "k1", actor="ops", reason="house_code=1234 leaked", redactor=redactor) == ["r1"]
    ledger.cancel_run(log, "r2", actor="ops2", reason="house_code=1234 leaked", redactor=redactor)
    by_key, by_id = log.run_events("r1")[-1].body, log.run_events("r2")[-1].body
    assert (by_key["actor"], by_key["cancellation_key"], by_key["reason"]) == ("ops", "k1", "house_code=[REDACTED] leaked")
    assert (by_id["actor"], by_id["by"], by_id["reason"]) == ("ops2", "operator", "house_code=[REDACTED] leaked")


def test_commands_redact_the_keys_the_environment_names_without_a_redactor(log, monkeypatch):
    """Without a redactor, cancel_run, retry_run and cancel_by_key redact the keys
    FLOWLEDGER_REDACT_KEYS names."""
    monkeypatch.setenv("FLOWLEDGER_REDACT_KEYS", "house_code")
    ledger.append_input(
        log, jsonl([triggered("r1", **KEYED), triggered("r2"), triggered("r3"), ev("run.failed", run_id="r3", error="boom")])
    )
    ledger.cancel_by_key(log, "k1", reason="house_code=1234")
    ledger.cancel_run(log, "r2", reason="house_code=1234")
    ledger.retry_run(log, "r3", actor="ops", reason="house_code=1234")
    for run_id in ("r1", "r2", "r3"):
        assert log.run_events(run_id)[-1].body["reason"] == "house_code=[REDACTED]"
    assert log.run_events("r3")[-1].body["actor"] == "ops"


# The webhook inbox.


def _defer(log, inbox, store_path, webhooks: int) -> None:
    """Keep ``webhooks`` webhooks' facts in the inbox, as while another process writes."""
    with sqlite_write_lock(store_path):
        for _ in range(webhooks):
            assert ledger.receive_provider_facts(log, inbox, sendgrid_items())[1] == 4


@pytest.fixture
def store_with_inbox(store_path, monkeypatch):
    """A store with messages, its inbox, and a webhook's wait for the lock made short."""
    monkeypatch.setattr(ledger, "WEBHOOK_LOCK_TIMEOUT", 0.01)
    with_messages(store_path)
    log = open_log(store_path, lock_timeout=0.01)
    inbox = open_inbox(log.backend)
    yield log, inbox
    inbox.close()
    log.close()


def test_a_webhook_drains_one_take_and_waits_behind_what_is_left(store_with_inbox, store_path):
    """A webhook arriving while more than one take of older webhooks waits drains one take
    of them, then goes to the inbox behind the rest (deferred), keeping the order received."""
    log, inbox = store_with_inbox
    _defer(log, inbox, store_path, ledger.WEBHOOK_DRAIN_TAKE + 1)
    assert ledger.receive_provider_facts(log, inbox, sendgrid_items())[1] == 4
    assert inbox.count() == 8


def test_a_webhook_whose_append_loses_its_connection_goes_to_the_inbox(store_with_inbox, monkeypatch):
    """A webhook's append that loses its database connection keeps the facts in the inbox
    (acknowledged, deferred) rather than failing the provider's request."""
    log, inbox = store_with_inbox

    def lost(*args, **kwargs):
        raise ConnectionLost("the server ended the connection")

    monkeypatch.setattr(log, "append_provider_events", lost)
    assert ledger.receive_provider_facts(log, inbox, sendgrid_items())[1] == 4
    assert inbox.count() == 4


def test_deferred_facts_are_stored_with_the_time_they_were_received(store_with_inbox, store_path):
    """Facts kept in the inbox are appended later with the time the webhook was received,
    and drain_inbox counts the facts it appended."""
    log, inbox = store_with_inbox
    prepared = ledger.prepare_provider_facts(ADAPTERS["sendgrid"].translate_all(sendgrid_events()), received_at="2026-11-01T10:00:00.000000Z")
    with sqlite_write_lock(store_path):
        assert ledger.receive_provider_facts(log, inbox, prepared)[1] == 4
    assert ledger.drain_inbox(log, inbox) == 4
    recorded = {e["recorded_at"] for e in _stored(log, {"type": "message.delivered", "message_id": "m-email"}) if e["id"].startswith("sendgrid:")}
    assert recorded == {"2026-11-01T10:00:00.000000Z"}


def test_follow_drains_a_few_takes_before_each_catch_up_and_reports_what_it_applied(store_with_inbox, store_path, monkeypatch):
    """follow appends the inbox's facts, FOLLOW_DRAIN_TAKES takes of them, before each
    catch-up, and tells on_applied what it folded."""
    log, inbox = store_with_inbox
    ledger.catch_up(log)
    _defer(log, inbox, store_path, 3)
    monkeypatch.setattr(ledger, "WEBHOOK_DRAIN_TAKE", 1)
    monkeypatch.setattr(ledger, "FOLLOW_DRAIN_TAKES", 2)
    polls = iter([False, True])
    applied: list[int] = []
    ledger.follow(log, interval=0.01, should_stop=lambda: next(polls), on_applied=applied.append, inbox=inbox)
    assert inbox.count() == 4
    assert applied == [4]  # the same four facts each time: appended once


def _recording_waits(log, monkeypatch) -> list[float | None]:
    """The lock waits the log's provider appends are asked for, recorded as they append."""
    waits: list[float | None] = []
    append = log.append_provider_events

    def recording(items, received_at, *, lock_timeout=None):
        waits.append(lock_timeout)
        return append(items, received_at, lock_timeout=lock_timeout)

    monkeypatch.setattr(log, "append_provider_events", recording)
    return waits


def test_follow_drains_waiting_only_a_webhooks_while_for_the_write_lock(store_with_inbox, store_path, monkeypatch):
    """follow's drain waits the webhook's short while for the write lock, not the store's
    long lock timeout (serve --lock-timeout 3600 would hold the views' catch-up)."""
    log, inbox = store_with_inbox
    _defer(log, inbox, store_path, 1)
    log.backend.lock_timeout = 30.0
    waits = _recording_waits(log, monkeypatch)
    polls = iter([False, True])
    ledger.follow(log, interval=0.01, should_stop=lambda: next(polls), inbox=inbox)
    assert waits == [0.01] and inbox.count() == 0


def test_catch_up_drains_waiting_the_drain_wait_given(store_with_inbox, store_path, monkeypatch):
    """catch_up's drain of the inbox waits drain_wait seconds for the write lock."""
    log, inbox = store_with_inbox
    _defer(log, inbox, store_path, 1)
    waits = _recording_waits(log, monkeypatch)
    ledger.catch_up(log, inbox=inbox, drain_wait=0.25)
    assert waits == [0.25] and inbox.count() == 0


def test_prepared_facts_are_stored_with_the_time_they_were_received(log):
    """append_prepared stores provider facts with the time the batch was received, not
    the time of the append."""
    ledger.append_input(log, jsonl(sent_with("p1")))
    received = "2026-11-01T10:00:00.000000Z"
    prepared = ledger.prepare_provider_facts(
        ADAPTERS["mailgun"].translate_all([mailgun_delivered("p1", "mg-r1")]), received_at=received
    )
    assert prepared.received_at == received
    assert ledger.append_prepared(log, prepared).appended == 1
    (stored,) = [e for e in _stored(log, {"type": "message.delivered", "message_id": "m-mg"}) if e["type"] == "message.delivered"]
    assert stored["recorded_at"] == received


def test_a_drain_finding_the_lock_held_stops_without_error(store_with_inbox, store_path):
    """drain_inbox meeting another process's write lock stops, keeping the facts for later,
    and says it appended none (no error)."""
    log, inbox = store_with_inbox
    _defer(log, inbox, store_path, 1)
    with sqlite_write_lock(store_path):
        assert ledger.drain_inbox(log, inbox, lock_timeout=0.01) == 0
    assert inbox.count() == 4


def test_a_drain_while_another_thread_drains_returns_at_once(store_with_inbox, store_path):
    """drain_inbox while another thread of the process holds the inbox's drain returns 0
    at once rather than waiting for it."""
    log, inbox = store_with_inbox
    _defer(log, inbox, store_path, 1)
    drained: list[int] = []
    assert inbox.drain_lock.acquire(blocking=False)
    try:
        worker = threading.Thread(target=lambda: drained.append(ledger.drain_inbox(log, inbox)), daemon=True)
        worker.start()
        worker.join(2)
        assert drained == [0]
    finally:
        inbox.drain_lock.release()
        worker.join(5)
    assert inbox.count() == 4


def test_a_query_without_catch_up_is_refused_only_for_the_views_it_reads(log):
    """Without catch-up, a query is refused (ViewsNotFolded) when a view it reads holds
    nothing yet of a log that holds events, is answered when only other views do, and is
    answered when the caller says it caught the views up itself (caught_up)."""
    ledger.append_input(log, jsonl([triggered("r1")]))
    ledger.catch_up(log, ["runs"])
    assert ledger.query(log, queries.counts, fresh=False)["total"] == 1
    with pytest.raises(ViewsNotFolded):
        ledger.query(log, queries.show_delivery, "m-none", fresh=False)
    with pytest.raises(NotFound):
        ledger.query(log, queries.show_delivery, "m-none", fresh=False, caught_up=True)


def test_a_query_without_catch_up_on_a_store_whose_views_were_never_made(store_path):
    """Without catch-up, a store whose views were never made answers an empty log's
    query with nothing, and refuses (ViewsNotFolded) one over a log holding events."""
    log = open_log(store_path)
    try:
        assert ledger.query(log, queries.counts, fresh=False)["total"] == 0
    finally:
        log.close()
    other = open_log(store_path.replace(".db", "-2.db"))
    try:
        ledger.append_input(other, jsonl([triggered("r1")]))
        with pytest.raises(ViewsNotFolded):
            ledger.query(other, queries.counts, fresh=False)
    finally:
        other.close()


@pytest.mark.parametrize(
    "error, said",
    [(ConnectionLost("the server ended the connection"), "kept for the next try"), (RuntimeError("a bug"), "this is a bug in flowledger")],
)
def test_a_failed_drain_leaves_the_facts_in_the_inbox_and_the_catch_up_goes_on(
    store_with_inbox, store_path, monkeypatch, caplog, error, said
):
    """catch_up whose drain of the inbox fails keeps the facts in the inbox, says why in the
    log (a store error as such, anything else as a bug), and still folds the views."""
    log, inbox = store_with_inbox
    _defer(log, inbox, store_path, 1)

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(log, "append_provider_events", failing)
    with caplog.at_level(logging.WARNING, logger="flowledger.ledger"):
        assert ledger.catch_up(log, inbox=inbox) > 0
    assert inbox.count() == 4
    assert ledger.views_lag(log).behind == 0
    assert [r.getMessage() for r in caplog.records if said in r.getMessage()]


def test_an_analysts_copy_refuses_commands_and_rebuild_saying_it_is_a_copy(log, tmp_path):
    """On an analyst's copy (whose own log is empty), retry, cancel and rebuild are refused
    as on a copy (StoreIsACopy), not answered as if the run did not exist."""
    ledger.append_input(log, jsonl([triggered("r1"), triggered("r2"), ev("run.failed", run_id="r2", error="boom")]))
    copy = str(tmp_path / "copy.db")
    ledger.rebuild_into(log, copy)
    target = open_log(copy)
    try:
        with pytest.raises(StoreIsACopy):
            ledger.cancel_run(target, "r1")
        with pytest.raises(StoreIsACopy):
            ledger.retry_run(target, "r2")
        with pytest.raises(StoreIsACopy):
            ledger.rebuild(target)
        assert ledger.show_run(target, "r1", fresh=False)["status"] == "pending"
    finally:
        target.close()


def test_views_lag_names_the_slowest_view_and_knows_nothing_of_a_copys_lag(log, tmp_path):
    """views_lag says how far the slowest view is behind, each view's stored version, and,
    on an analyst's copy, that how far behind is not known there (None)."""
    ledger.append_input(log, jsonl([triggered("r1"), triggered("r2")]))
    ledger.catch_up(log, ["runs"])
    ledger.append_input(log, jsonl([triggered("r3")]))
    lag = ledger.views_lag(log)
    assert (lag.position, lag.behind, lag.copy_of) == (3, 3, None)
    assert {v.name: v.behind for v in lag.views} == {"runs": 1, "steps": 3, "deliveries": 3}
    assert all(v.version == v.this_version and not v.another_version for v in lag.views)
    copy = str(tmp_path / "copy.db")
    ledger.rebuild_into(log, copy)
    target = open_log(copy)
    try:
        on_copy = ledger.views_lag(target)
        assert on_copy.copy_of is not None and on_copy.behind is None
        assert [v.behind for v in on_copy.views] == [None, None, None]
        assert [v.position for v in on_copy.views] == [3, 3, 3]
    finally:
        target.close()


def test_the_inbox_counts_what_waits_and_lists_at_most_limit_dead_letters(store_with_inbox, store_path):
    """inbox_count says how many facts wait; inbox_dead_letters lists at most ``limit`` of
    the webhooks set aside."""
    log, inbox = store_with_inbox
    _defer(log, inbox, store_path, 2)
    assert ledger.inbox_count(log) == 8
    spoil_inbox_rows(store_path, "not json")
    ledger.drain_inbox(log, inbox)
    assert ledger.inbox_count(log) == 0
    assert len(ledger.inbox_dead_letters(log)) == 2
    assert len(ledger.inbox_dead_letters(log, limit=1)) == 1


def test_a_cancel_the_rules_refuse_after_the_first_look_says_why_in_the_commands_words(log, monkeypatch):
    """A cancel whose run finished between the command's look and the write is refused by
    the rules; the refusal says why as the look does (the run is already completed), not in
    the rules' words about an event id the operator never saw; nothing is recorded."""
    ledger.append_input(log, jsonl([triggered("r1")]))
    stale = log.run_state("r1")
    ledger.append_input(log, jsonl([ev("run.started", run_id="r1"), ev("run.completed", run_id="r1")]))
    looks = iter([stale])
    real = log.run_state
    monkeypatch.setattr(log, "run_state", lambda run_id: next(looks, None) or real(run_id))
    with pytest.raises(CommandRefused) as caught:
        ledger.cancel_run(log, "r1")
    assert "it is already completed" in str(caught.value) and "cancel-" not in str(caught.value)
    assert [e.type for e in log.run_events("r1")] == ["run.triggered", "run.started", "run.completed"]


def _open_files(prefix: str) -> list[str]:
    """The files whose path starts with ``prefix`` that this process holds open."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix):
            held.append(target)
    return held


def test_rebuild_into_and_catch_up_leave_no_file_open_behind(store_path, tmp_path, monkeypatch):
    """rebuild_into closes the copy it opened (new or existing), and catch_up the inbox it
    opened: nothing of either stays open once they return."""
    monkeypatch.setattr(ledger, "WEBHOOK_LOCK_TIMEOUT", 0.01)
    with_messages(store_path)
    log = open_log(store_path, lock_timeout=0.01)
    try:
        inbox = open_inbox(log.backend)
        _defer(log, inbox, store_path, 1)
        inbox.close()
        copy = str(tmp_path / "copy.db")
        ledger.rebuild_into(log, copy)
        assert _open_files(copy) == []
        ledger.rebuild_into(log, copy)
        assert _open_files(copy) == []
        inbox_file = os.path.realpath(store_path) + INBOX_SUFFIX
        assert _open_files(inbox_file) == []
        ledger.catch_up(log)
        assert ledger.inbox_count(log) == 0
        assert _open_files(inbox_file) == []
    finally:
        log.close()


def test_retry_and_cancel_of_a_run_never_triggered_say_it_is_not_found(log):
    """Retrying or cancelling a run the store has never seen raises NotFound (the CLI's and
    the API's "no such run"), not a refusal naming a status."""
    ledger.append_input(log, jsonl([triggered("r1")]))
    with pytest.raises(NotFound, match="no run 'nope'"):
        ledger.retry_run(log, "nope")
    with pytest.raises(NotFound, match="no run 'nope'"):
        ledger.cancel_run(log, "nope")


def test_views_lag_reads_the_positions_of_views_whose_versions_are_not_recorded(log, store_path):
    """views_lag reads each view's position wherever the tracking table is there, even with
    no view version recorded (a store of a release from before versions were recorded)."""
    ledger.append_input(log, jsonl([triggered("r1"), triggered("r2")]))
    ledger.catch_up(log)
    conn = sqlite3.connect(store_path)
    try:
        conn.execute("DELETE FROM flowledger_meta WHERE key LIKE 'view:%'")
        conn.commit()
    finally:
        conn.close()
    lag = ledger.views_lag(log)
    assert [(v.position, v.behind, v.version) for v in lag.views] == [(2, 0, None)] * 3


def _set_view_versions(store_path, versions: dict[str, str]) -> None:
    """Record other view versions in the store, as another release's views would be."""
    conn = sqlite3.connect(store_path)
    try:
        for name, version in versions.items():
            conn.execute("UPDATE flowledger_meta SET value = ? WHERE key = ?", (version, "view:" + name))
        conn.commit()
    finally:
        conn.close()


def test_views_lag_calls_it_an_upgrade_only_when_every_other_view_is_older(log, store_path):
    """views_lag advises the upgrade (the next catch-up folds them again) when every view of
    another version is older; with one newer among them, it does not."""
    ledger.append_input(log, jsonl([triggered("r1")]))
    ledger.catch_up(log)
    this = {v.name: int(v.this_version) for v in ledger.views_lag(log).views}
    _set_view_versions(store_path, {"runs": str(this["runs"] - 1)})
    assert "an older version of flowledger made the views" in ledger.views_lag(log).another_version
    _set_view_versions(store_path, {"steps": str(this["steps"] + 1)})
    said = ledger.views_lag(log).another_version
    assert said is not None and "an older version of flowledger made the views" not in said
