"""The auditor's replay against the views: the state after each event is what the views
showed when the log ended there, and the state after the last is the live record and the
rebuilt one (provider facts late, twice, out of order and held for their message included)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orjson
from click.testing import CliRunner

from flowledger import ledger, queries
from flowledger.cli import cli
from flowledger.errors import InvalidInput, NotFound
from flowledger.projections.projector import Projector
from flowledger.projections.run_record import REPLAY_FIELDS
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, ev, step, triggered
from tests.histories import fresh_log, jsonl, workspaces

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def replay(log, run_id):
    return ledger.query(log, queries.replay_run, run_id, log.backend)


def detail(log, run_id, n=None):
    return ledger.query(log, queries.replay_detail, run_id, log.backend, n)


def record_of(shown):
    return {k: shown[k] for k in queries.RUN_FIELDS}


def test_a_runs_provider_facts_are_in_its_replay_and_its_record_after_them():
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl([
            triggered("r1"), ev("run.started", run_id="r1"),
            ev("message.queued", message_id="m1", channel="email", recipient="user-1", run_id="r1", step="email"),
            ev("message.delivered", message_id="m1", occurred_at="2026-11-01T09:01:00Z"),
            ev("message.opened", message_id="m1", occurred_at="2026-11-01T09:05:00Z"),
        ]))
        history = replay(log, "r1")
        assert [h.event.type for h in history] == [
            "run.triggered", "run.started", "message.queued", "message.delivered", "message.opened",
        ]
        assert [h.record["email_opened"] for h in history] == [None, None, None, False, True]
        live = ledger.show_run(log, "r1")
        assert history[-1].record == record_of(live)
        assert detail(log, "r1") == live


def _emailed_run():
    return [
        triggered("r1"), ev("run.started", run_id="r1"),
        step("step.started", "r1", name="email"),
        ev("message.queued", message_id="m1", channel="email", recipient="user-1", run_id="r1", step="email"),
        step("step.succeeded", "r1", name="email"),
        ev("message.delivered", message_id="m1", occurred_at="2026-11-01T09:01:00Z"),
        ev("message.clicked", message_id="m1", url="https://a.test", occurred_at="2026-11-01T09:05:00Z"),
        ev("run.completed", run_id="r1"),
    ]


def test_the_replayed_record_has_a_runs_listings_fields_in_its_order():
    assert REPLAY_FIELDS == queries.RUN_FIELDS


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
def test_replay_on_postgresql_is_the_live_record(postgres_url):
    log = open_log(postgres_url)
    try:
        ledger.append_input(log, jsonl(_emailed_run()))
        history = replay(log, "r1")
        assert [h.event.type for h in history][-3:] == ["message.delivered", "message.clicked", "run.completed"]
        assert history[-1].record == record_of(ledger.show_run(log, "r1"))
        assert detail(log, "r1") == ledger.show_run(log, "r1")
    finally:
        log.close()


def test_the_cli_replay_shows_the_runs_provider_facts_and_ends_on_its_record(store_path):
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl(_emailed_run()))
        live = ledger.show_run(log, "r1")
    finally:
        log.close()
    out = CliRunner().invoke(cli, ["--store", store_path, "replay", "r1", "--json"])
    events = orjson.loads(out.stdout)["events"]
    assert "message.clicked" in [e["event"]["type"] for e in events]
    assert events[-1]["state"] == record_of(live)


def test_facts_stored_before_the_trigger_are_carried_into_its_state():
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl([
            ev("message.queued", message_id="m1", channel="email", recipient="u", run_id="r1", step="email"),
            ev("message.delivered", message_id="m1", occurred_at="2026-11-01T09:01:00Z"),
        ]))
        with pytest.raises(NotFound):
            ledger.show_run(log, "r1")
        ledger.append_input(log, jsonl([triggered("r1")]))
        history = replay(log, "r1")
        assert [h.n for h in history] == [1] and history[0].event.type == "run.triggered"
        assert history[0].record == record_of(ledger.show_run(log, "r1"))
        assert detail(log, "r1", 1) == ledger.show_run(log, "r1")


def test_a_fact_held_for_its_provider_id_replays_where_it_was_released():
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl([triggered("r1"), ev("run.started", run_id="r1")]))
        opened = ev("message.opened", message_id="?", occurred_at="2026-11-01T09:05:00Z")
        log.append_provider_events([(opened, "pm-1")], "2026-11-01T09:06:00Z")  # held: no message has pm-1
        ledger.append_input(log, jsonl([
            ev("message.queued", message_id="m1", channel="email", recipient="u", run_id="r1", step="email"),
            ev("message.sent", message_id="m1", provider_message_id="pm-1", occurred_at="2026-11-01T09:00:30Z"),
        ]))
        history = replay(log, "r1")
        assert [h.event.type for h in history][-2:] == ["message.sent", "message.opened"]
        assert history[-1].record == record_of(ledger.show_run(log, "r1"))
        assert history[-1].record["email_opened"] is True


def test_a_run_never_stored_is_not_found_and_refused_events_leave_nothing_to_replay():
    with fresh_log() as (log, _):
        with pytest.raises(NotFound, match="no run 'nope'"):
            replay(log, "nope")
        with pytest.raises(InvalidInput):
            ledger.append_input(log, jsonl([triggered("r1"), ev("run.completed", run_id="r1")]))
        with pytest.raises(NotFound):
            replay(log, "r1")


@pytest.mark.parametrize("run_id", ["acme/run 1", "ü-run'; DROP TABLE runs;--", "r%2F1"])
def test_unusual_run_ids_replay_like_any(run_id):
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl([
            triggered(run_id), ev("run.started", run_id=run_id),
            ev("message.queued", message_id=f"{run_id}/m", channel="sms", recipient="u", run_id=run_id, step="sms"),
        ]))
        history = replay(log, run_id)
        assert len(history) == 3 and history[-1].record == record_of(ledger.show_run(log, run_id))


def test_a_run_of_thousands_of_events_replays_whole():
    events = [triggered("big"), ev("run.started", run_id="big")]
    for attempt in range(1, 1501):
        events.append(step("step.started", "big", attempt=attempt))
        events.append(step("step.failed" if attempt % 7 == 0 else "step.succeeded", "big", attempt=attempt))
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl(events))
        history = replay(log, "big")
        assert len(history) == len(events)
        assert history[-1].record == record_of(ledger.show_run(log, "big"))
        assert history[-1].record["error_count"] == 1500 // 7


def _batches(data, events):
    out, i = [], 0
    while i < len(events):
        n = data.draw(st.integers(1, 6))
        out.append(events[i : i + n])
        i += n
    return out


@SETTINGS
@given(workspaces(), st.data())
def test_replay_after_each_event_is_what_the_views_showed_and_its_end_the_live_and_rebuilt_record(ws, data):
    run_events, messages = ws
    # Provider facts come late, early (before their message's queued, even before its run's
    # trigger), twice, and out of order; the run's own events keep their order.
    shuffled = data.draw(st.permutations(messages))
    repeats = data.draw(st.lists(st.sampled_from(messages), max_size=4)) if messages else []
    order = data.draw(st.permutations(range(len(run_events) + len(shuffled) + len(repeats))))
    pool = [("run", e) for e in run_events] + [("msg", e) for e in shuffled + repeats]
    runs_left = list(run_events)
    mixed = []
    for i in order:
        kind, e = pool[i]
        mixed.append(runs_left.pop(0) if kind == "run" else e)  # run events stay in their order
    run_ids = sorted({e["run_id"] for e in run_events})
    with fresh_log() as (log, _):
        projector = Projector(log.backend)
        seen: list[tuple[int, dict[str, dict]]] = []  # (head, the views' run details then)
        for batch in _batches(data, mixed):
            ledger.append_input(log, jsonl(batch))
            projector.catch_up(page_size=data.draw(st.integers(1, 7)))
            shown = {}
            for rid in run_ids:
                try:
                    shown[rid] = ledger.show_run(log, rid, fresh=False)
                except NotFound:
                    pass
            seen.append((ledger.head(log), shown))
        live = {rid: ledger.show_run(log, rid) for rid in run_ids}
        projector.rebuild()
        for rid in run_ids:
            history = replay(log, rid)
            assert history[-1].record == record_of(live[rid])
            assert detail(log, rid) == live[rid] == ledger.show_run(log, rid)
            for head, shown in seen:
                n = sum(1 for h in history if h.event.position <= head)
                if rid not in shown:
                    assert n == 0
                    continue
                assert history[n - 1].record == record_of(shown[rid])
                assert detail(log, rid, n) == shown[rid]


def test_a_message_facts_detail_names_the_message_and_what_it_says():
    from flowledger.projections.run_record import event_detail

    queued = ev("message.queued", message_id="m1", channel="sms", recipient={"id": "u1", "collection": "users"}, provider="twilio")
    assert event_detail(queued) == "m1 sms to users/u1 (twilio)"
    assert event_detail(ev("message.sent", message_id="m1", cost={"amount": 0.0079, "currency": "USD"})) == "m1 (cost 0.0079 USD)"
    assert event_detail(ev("message.bounced", message_id="m1", temporary=True)) == "m1: temporary: bounced"
    assert event_detail(ev("message.failed", message_id="m1", error={"message": "x" * 100}), limit=10) == "m1: " + "x" * 9 + "…"
    assert event_detail(ev("message.clicked", message_id="m1", url="https://a.test")) == "m1 https://a.test"


def test_redacted_values_replay_as_stored_and_as_runs_show_gives_them():
    events = [
        triggered("r1"), ev("run.started", run_id="r1"),
        step("step.started", "r1", name="crm", request={"headers": {"Authorization": "Bearer s3cr3t"}}),
        step("step.succeeded", "r1", name="crm", output={"api_key": "k-s3cr3t", "ok": True}),
    ]
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl(events))
        history = replay(log, "r1")
        assert "s3cr3t" not in orjson.dumps([h.event.body for h in history]).decode()
        shown = detail(log, "r1")
        assert shown == ledger.show_run(log, "r1")
        assert shown["steps"][0]["output"] == {"api_key": "[REDACTED]", "ok": True}
