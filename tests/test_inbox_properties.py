"""Property: a webhook inbox changes when provider facts reach the log, never what they say.

Any sequence of SendGrid, Twilio and Mailgun webhooks (facts about a few messages, in any
order, some repeated, some for messages not known yet, or never), interleaved with the
sender's own events (``message.sent`` with its provider id arriving after some facts), where
each webhook either finds the log's write lock free or busy (deferred into the inbox), with
drains at random points and a final one, gives exactly the views of the same webhooks all
appended straight away; every fact is stored (or held) exactly once; and the views caught up
along the way are the views a rebuild folds from the log.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger, queries
from flowledger.errors import FlowledgerError
from flowledger.providers import ADAPTERS
from flowledger.store import open_log
from flowledger.store.inbox import open_inbox
from tests.conftest import POSTGRES, POSTGRES_UNREACHABLE, ev, server_connection
from tests.histories import jsonl
from tests.test_webhooks import T0, run_with_messages

MAILGUN_ID = "20130503182626.18666.16540@sandbox.mailgun.org"
MESSAGES = ("m-email", "m-sms", "m-mg")


def own_events() -> list[dict[str, Any]]:
    """The sender's own events: run r1 sends m-email (SendGrid), m-mg (Mailgun, its id sent
    in angle brackets, as Mailgun's send API returns it) and m-sms (Twilio)."""
    events = run_with_messages()
    mailgun = [
        ev("message.queued", message_id="m-mg", channel="email", recipient="u1", run_id="r1", step="email-1", provider="mailgun", occurred_at="2026-11-01T09:00:03Z"),
        ev("message.sent", message_id="m-mg", provider_message_id=f"<{MAILGUN_ID}>", occurred_at="2026-11-01T09:00:03Z"),
    ]
    return events[:5] + mailgun + events[5:]


# Each fact a webhook may bring, by name, as its provider sends it (less what each webhook adds).
_SG = {"email": "u1@example.com", "sg_message_id": "sgmsg1.filter0001"}
_MG = {"recipient": "u1@example.com", "message": {"headers": {"message-id": MAILGUN_ID}}}
PAYLOADS = {
    "sg-processed": {**_SG, "event": "processed", "timestamp": T0 + 9, "sg_event_id": "e-proc"},
    "sg-delivered": {**_SG, "event": "delivered", "timestamp": T0 + 10, "sg_event_id": "e-deliv"},
    "sg-open-machine": {**_SG, "event": "open", "timestamp": T0 + 11, "sg_machine_open": True, "sg_event_id": "e-open-machine"},
    "sg-open": {**_SG, "event": "open", "timestamp": T0 + 600, "sg_machine_open": False, "sg_event_id": "e-open"},
    "sg-click": {**_SG, "event": "click", "timestamp": T0 + 660, "url": "https://example.com/go", "sg_event_id": "e-click"},
    "tw-sent": {"MessageSid": "SM123", "MessageStatus": "sent", "To": "+15550001"},
    "tw-delivered": {"MessageSid": "SM123", "MessageStatus": "delivered", "To": "+15550001"},
    "tw-undelivered": {"MessageSid": "SM123", "MessageStatus": "undelivered", "To": "+15550001", "ErrorCode": "30003"},
    "tw-queued": {"MessageSid": "SM123", "MessageStatus": "queued", "To": "+15550001"},  # no fact: skipped
    "mg-delivered": {**_MG, "event": "delivered", "id": "mg-deliv", "timestamp": T0 + 20.5},
    "mg-opened": {**_MG, "event": "opened", "id": "mg-open", "timestamp": T0 + 700.25},
    "mg-failed": {**_MG, "event": "failed", "id": "mg-temp", "severity": "temporary", "timestamp": T0 + 15, "delivery-status": {"message": "try later"}},
    # Messages flowledger never learns of: held to the end.
    "sg-stranger": {"email": "x@example.com", "sg_message_id": "sgmsg9.filter0001", "event": "bounce", "timestamp": T0 + 30, "sg_event_id": "e-stranger", "reason": "550"},
    "tw-stranger": {"MessageSid": "SM999", "MessageStatus": "delivered", "To": "+15550009"},
}
PROVIDER = {name: {"sg": "sendgrid", "tw": "twilio", "mg": "mailgun"}[name[:2]] for name in PAYLOADS}
FACTS = sorted(PAYLOADS)
MESSAGE_OF = {"sendgrid": "m-email", "twilio": "m-sms", "mailgun": "m-mg"}
"""The message each provider's facts (but the strangers') are about."""


def payload(name: str, named: bool, n: int) -> dict[str, Any]:
    """Fact ``name`` as webhook ``n`` carries it: naming flowledger's message id, or not (then
    matched by the provider's); a Twilio callback is timed by its receipt."""
    body = dict(PAYLOADS[name])
    provider = PROVIDER[name]
    if provider == "twilio":
        body["_received_at"] = T0 + 1000 + n
    if named and not name.endswith("-stranger"):
        message = MESSAGE_OF[provider]
        if provider == "mailgun":
            body["user-variables"] = {"flowledger_message_id": message}
        else:
            body["flowledger_message_id"] = message
    return body


def prepared_webhook(n: int, names: list[str], named: dict[str, bool]) -> ledger.PreparedFacts:
    """Webhook ``n``: one provider's facts, prepared as the server prepares them (received at a time of its own)."""
    provider = PROVIDER[names[0]]
    facts = ADAPTERS[provider].translate_all([payload(name, named[name], n) for name in names])
    return ledger.prepare_provider_facts(facts, received_at=ledger.utc_stamp(T0 + 1000 + n))


MODES = ("free", "busy", "busy-real")
STEP = {
    # A webhook: picks among the scenario's facts (see ``facts_of``), and how it finds the lock.
    "hook": st.tuples(st.just("hook"), st.lists(st.integers(0, 7), min_size=1, max_size=3), st.sampled_from(MODES)),
    # The next few of the sender's own events.
    "own": st.tuples(st.just("own"), st.integers(1, 6)),
    "drain": st.tuples(st.just("drain"), st.sampled_from([None, 1])),
    "drain-busy": st.just(("drain-busy",)),
    "drain-crash": st.just(("drain-crash",)),
    "catch-up": st.just(("catch-up",)),
}
# Webhooks are most of the steps: runs of them meet (and repeat) the facts still deferred.
STEPS = st.sampled_from(["hook"] * 5 + sorted(STEP.keys() - {"hook"})).flatmap(STEP.__getitem__)
SCENARIO = {
    # The few facts the webhooks bring (few, so that they bring them again and again).
    "pool": st.lists(st.sampled_from(FACTS), min_size=1, max_size=3, unique=True),
    # Webhooks, runs of the sender's own events, drains and catch-ups, in any order.
    "steps": st.lists(STEPS, min_size=2, max_size=16),
    # Which facts name their message (else matched by the provider's id).
    "named": st.fixed_dictionaries({name: st.booleans() for name in FACTS}),
    # How many webhooks a drain reads at a time.
    "take": st.sampled_from([1, 2, ledger.WEBHOOK_DRAIN_TAKE]),
}


def facts_of(pool: list[str], picks: list[int]) -> list[str]:
    """A webhook's facts: the first pick's, and for SendGrid (a batch a request) more of the
    pool's SendGrid facts; Twilio and Mailgun send one event a request."""
    first = pool[picks[0] % len(pool)]
    if PROVIDER[first] != "sendgrid":
        return [first]
    same = [name for name in pool if PROVIDER[name] == "sendgrid"]
    return [first] + [same[i % len(same)] for i in picks[1:]]


class Store:
    """A store to replay a scenario into, on SQLite (a tmp file) or PostgreSQL (a schema)."""

    def __init__(self, stack: ExitStack, backend: str) -> None:
        self.backend = backend
        if backend == "sqlite":
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            self.url = os.path.join(folder, "f.db")
        else:
            self.url = stack.enter_context(_postgres_schema())
        # A lock held by another connection is given up on at once: a deferral costs little.
        # (A PostgreSQL append also waits for autovacuum to make way: a while longer.)
        self.log = open_log(self.url, lock_timeout=0.01 if backend == "sqlite" else 0.2)
        stack.callback(self.log.close)
        self.inbox = open_inbox(self.log.backend)
        stack.callback(self.inbox.close)

    @contextmanager
    def write_lock(self):
        """Hold the log's write lock from another connection, as a long import does."""
        from tests.test_inbox import postgres_append_lock, sqlite_write_lock

        if self.backend == "sqlite":
            with sqlite_write_lock(self.url):
                yield
        else:
            with postgres_append_lock(self.url):
                yield


@contextmanager
def _postgres_schema():
    """A store URL in a schema of its own on the test server, dropped afterwards."""
    schema = "fl_inboxprop_" + uuid.uuid4().hex[:10]
    try:
        yield f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}schema={schema}"
    finally:
        with server_connection(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _or_problem(fn, *args):
    """A query's answer, or the error it gives (a message no own event made known yet)."""
    try:
        return fn(*args)
    except FlowledgerError as e:
        return (type(e).__name__, str(e))


def views(log) -> dict[str, Any]:
    """Everything a user sees of the messages and their run (the views caught up first)."""
    seen = {f"show_delivery {m}": ledger.query(log, lambda c, m=m: _or_problem(queries.show_delivery, c, m)) for m in MESSAGES}
    listed = ledger.query(log, queries.list_deliveries, queries.DeliveryFilters(), page_size=100)
    # Listed newest first by where each message's first fact is in the log: a fact naming its
    # message, deferred past the sender's own events, moves the message up the list (where a
    # held fact, released by message.sent, would have put it). The entries, not their order.
    seen["list_deliveries"] = (sorted(listed["entries"], key=lambda e: e["message_id"]), listed["page_info"])
    seen["counts"] = ledger.query(log, queries.counts)
    seen["workflow_details"] = ledger.query(log, lambda c: _or_problem(queries.workflow_details, c, "welcome"))
    seen["show_run"] = ledger.query(log, lambda c: _or_problem(queries.show_run, c, "r1"))
    seen["unmatched"] = ledger.unmatched(log)
    return seen


def stored(log) -> list[tuple[str, str]]:
    """Every event in the log as (stream, id), in log order."""
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT originator_id, state FROM stored_events")
        return [(stream, orjson.loads(bytes(state))["id"]) for stream, state in c.fetchall()]


class Crash(Exception):
    """The process dying at that point."""


def replay(pool, steps, named, take, backend: str) -> None:
    """Play a scenario into a store with the inbox and into one without, and compare."""
    own = own_events()
    with ExitStack() as stack, mock.patch.object(ledger, "WEBHOOK_DRAIN_TAKE", take):
        straight, deferred = Store(stack, backend), Store(stack, backend)
        own_left = list(own)
        sent: set[str] = set()  # provider facts (event ids) in any webhook
        for n, step in enumerate(steps):
            kind = step[0]
            if kind == "hook":
                _, picks, mode = step
                prepared = prepared_webhook(n, facts_of(pool, picks), named)
                sent.update(body["id"] for body, _ in prepared.items)
                ledger.append_prepared(straight.log, prepared)
                if mode == "free":
                    ledger.receive_provider_facts(deferred.log, deferred.inbox, prepared)
                elif mode == "busy":
                    # What receive_provider_facts does on StoreBusy.
                    if prepared.items:
                        deferred.inbox.put(prepared.items, prepared.received_at)
                else:
                    with deferred.write_lock():
                        _, n_deferred = ledger.receive_provider_facts(deferred.log, deferred.inbox, prepared)
                    assert n_deferred == len(prepared.items)
            elif kind == "own":
                chunk, own_left = own_left[: step[1]], own_left[step[1] :]
                if chunk:
                    ledger.append_input(straight.log, jsonl(chunk))
                    ledger.append_input(deferred.log, jsonl(chunk))
            elif kind == "drain":
                ledger.drain_inbox(deferred.log, deferred.inbox, takes=step[1])
            elif kind == "drain-busy":
                before = deferred.inbox.count()
                with deferred.write_lock():
                    assert ledger.drain_inbox(deferred.log, deferred.inbox) == 0
                assert deferred.inbox.count() == before
            elif kind == "drain-crash":
                # Killed between appending a batch and deleting it: the next drain appends it again.
                with mock.patch.object(deferred.inbox, "delete", side_effect=Crash):
                    try:
                        ledger.drain_inbox(deferred.log, deferred.inbox)
                    except Crash:
                        pass
            else:
                ledger.catch_up(deferred.log, inbox=deferred.inbox)
        if own_left:
            ledger.append_input(straight.log, jsonl(own_left))
            ledger.append_input(deferred.log, jsonl(own_left))
        ledger.drain_inbox(deferred.log, deferred.inbox)
        assert deferred.inbox.count() == 0
        assert deferred.inbox.dead_letters(10) == []

        expected = views(straight.log)
        incremental = views(deferred.log)
        assert incremental == expected
        ledger.rebuild(deferred.log)
        assert views(deferred.log) == incremental

        # Every fact once: in the log or held for its message, never both, never twice.
        in_log = stored(deferred.log)
        assert sorted(in_log) == sorted(stored(straight.log))
        ids = [event_id for _, event_id in in_log]
        assert len(ids) == len(set(ids))
        held = [u["event_id"] for u in ledger.unmatched(deferred.log)]
        assert len(held) == len(set(held)) and not set(held) & set(ids)
        assert (set(ids) | set(held)) - {e["id"] for e in own} == sent


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(**SCENARIO)
def test_deferring_webhooks_into_the_inbox_never_changes_the_views_nor_stores_a_fact_twice(pool, steps, named, take):
    replay(pool, steps, named, take, "sqlite")


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(**SCENARIO)
def test_postgresql_deferring_webhooks_into_the_inbox_never_changes_the_views_nor_stores_a_fact_twice(pool, steps, named, take):
    replay(pool, steps, named, take, "postgresql")
