"""The webhook inbox: a provider webhook that finds the store's write lock held by another
process (a long import) is kept durably beside the log and acknowledged, then appended with
its receipt time once the lock is free: nothing a provider that never retries sends is lost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from contextlib import contextmanager
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from flowledger import ledger, queries
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.providers import ADAPTERS
from flowledger.providers import twilio as twilio_adapter
from flowledger.store import open_log
from flowledger.store.inbox import INBOX_SUFFIX, open_inbox
from flowledger.store.log import utc_now
from tests.conftest import POSTGRES_UNREACHABLE, free_port, healthy, server_connection, wait_until
from tests.histories import jsonl
from tests.test_webhooks import PUBLIC, SECRETS, run_with_messages, sendgrid_events, sendgrid_headers

TWILIO_URL = "http://testserver/v1/webhooks/twilio?flowledger_message_id=m-sms"


@contextmanager
def sqlite_write_lock(store_path):
    """Hold a SQLite store's write lock from another connection, as a long import does."""
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


@contextmanager
def postgres_append_lock(url):
    """Hold a PostgreSQL store's append lock (the events table's EXCLUSIVE lock) from another connection."""
    from flowledger.store.postgres import parse_url

    with server_connection(url) as holder:
        holder.execute(f'SET search_path TO "{parse_url(url)["schema"]}"')
        holder.execute("LOCK TABLE stored_events IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            holder.rollback()


def post_sendgrid(client, events):
    body = orjson.dumps(events)
    return client.post("/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))


def post_twilio(client, status):
    form = {"MessageSid": "SM123", "MessageStatus": status, "To": "+15550001"}
    headers = {"X-Twilio-Signature": twilio_adapter.signature(TWILIO_URL, form, "tw-token"), "Content-Type": "application/x-www-form-urlencoded"}
    return client.post(TWILIO_URL.removeprefix("http://testserver"), content=urlencode(form), headers=headers)


def stored(log, stream):
    """A stream's stored events: (position, body with recorded_at)."""
    with log.backend.transaction(write=False) as c:
        rows = log.backend.stream_events(c, stream)
    return [(p, orjson.loads(s)) for p, _, _, s in rows]


def with_messages(url):
    log = open_log(url)
    ledger.append_input(log, jsonl(run_with_messages()))
    log.close()


def test_a_webhook_finding_the_lock_held_is_deferred_then_appended_with_its_receipt_time(store_path):
    with_messages(store_path)
    with TestClient(create_app(store_path, provider_secrets=SECRETS, lock_timeout=0.2)) as client:
        before = utc_now()
        with sqlite_write_lock(store_path):
            r = post_sendgrid(client, sendgrid_events())
            assert r.status_code == 200, r.text
            assert r.json() == {"appended": 0, "duplicates": 0, "held": 0, "skipped": 0, "deferred": 4}
            sms = post_twilio(client, "delivered")
            assert sms.json() == {"appended": 0, "duplicates": 0, "held": 0, "skipped": 0, "deferred": 1}
            received = utc_now()
            assert client.get("/healthz").json()["deferred"] == 5
        assert os.path.exists(store_path + INBOX_SUFFIX)
        # The lock is free: the next webhook appends the inbox's facts first, then its own.
        read = post_twilio(client, "read")
        assert read.json() == {"appended": 1, "duplicates": 0, "held": 0, "skipped": 0}
        # No follower here: the views have folded none of the inbox's facts, nor the webhook's.
        assert client.get("/healthz").json() == {"status": "ok", "position": 10 + 4 + 2, "behind": 4 + 2}
    log = open_log(store_path)
    try:
        email = [body for _, body in stored(log, "message:m-email")]
        assert [b["id"] for b in email[-4:]] == ["sendgrid:e-deliv", "sendgrid:e-open-machine", "sendgrid:e-open", "sendgrid:e-click"]
        # Stamped when the webhook was received, not when the inbox was drained.
        assert all(before <= b["recorded_at"] <= received for b in email[-4:])
        sms_events = stored(log, "message:m-sms")
        (delivered_at, delivered), (read_at, _) = sms_events[-2], sms_events[-1]
        assert before <= delivered["recorded_at"] <= received
        assert delivered_at < read_at  # the older fact first
        email_delivery = ledger.query(log, queries.show_delivery, "m-email")
        assert (email_delivery["status"], email_delivery["opens_total"]) == ("clicked", 2)
        sms_delivery = ledger.query(log, queries.show_delivery, "m-sms")
        assert sms_delivery["status"] == "read"
        assert before <= sms_delivery["delivered_at"] <= received
        assert ledger.inbox_count(log) == 0
    finally:
        log.close()


def test_the_servers_follower_drains_the_inbox_and_views_show_the_facts(store_path):
    with_messages(store_path)
    with TestClient(create_app(store_path, provider_secrets=SECRETS, lock_timeout=0.2, follow=True)) as client:
        with sqlite_write_lock(store_path):
            assert post_sendgrid(client, sendgrid_events()).json()["deferred"] == 4
        wait_until(lambda: "deferred" not in client.get("/healthz").json())
        # The views catch up at the follower's next round, which folds the facts.
        wait_until(lambda: client.get("/healthz").json().get("behind") == 0)
        assert client.get("/healthz").json() == {"status": "ok", "position": 14, "behind": 0}
    log = open_log(store_path)
    try:
        assert ledger.query(log, queries.show_delivery, "m-email", fresh=False)["status"] == "clicked"
    finally:
        log.close()


def test_a_deferred_fact_for_an_unknown_message_is_held_when_drained_with_its_receipt_time(store_path):
    log = open_log(store_path)
    log.close()
    with TestClient(create_app(store_path, provider_secrets=SECRETS, lock_timeout=0.2)) as client:
        before = utc_now()
        with sqlite_write_lock(store_path):
            assert post_sendgrid(client, sendgrid_events(with_custom_args=False)).json()["deferred"] == 4
        received = utc_now()
    # No server: `flowledger project` drains the inbox as it catches up.
    result = CliRunner().invoke(cli, ["--store", store_path, "project"])
    assert result.exit_code == 0, result.output
    log = open_log(store_path)
    try:
        held = ledger.unmatched(log)
        assert [u["provider_message_id"] for u in held] == ["sgmsg1"] * 4
        assert all(before <= u["received_at"] <= received for u in held)
        assert ledger.inbox_count(log) == 0
        ledger.append_input(log, jsonl(run_with_messages()))
        assert ledger.query(log, queries.show_delivery, "m-email")["status"] == "clicked"
    finally:
        log.close()


def test_draining_the_same_facts_twice_stores_them_once(log):
    """A crash between a batch's append and its delete from the inbox (two databases on
    SQLite) appends it again at the next drain: every fact is then a duplicate."""
    ledger.append_input(log, jsonl(run_with_messages()[:5]))  # m-email is known, m-sms is not
    facts = ADAPTERS["sendgrid"].translate_all(sendgrid_events())
    sms = ADAPTERS["twilio"].translate_all([{"MessageSid": "SM123", "MessageStatus": "delivered", "To": "+1555", "_received_at": 1793523700}])
    prepared = ledger.prepare_provider_facts(facts + sms)
    inbox = open_inbox(log.backend)
    try:
        for _ in range(2):
            inbox.put(prepared.items, prepared.received_at)
        assert inbox.count() == 10
        assert ledger.drain_inbox(log, inbox) == 10
        assert inbox.count() == 0
        assert log.count() == 5 + 4
        assert [u["event_id"] for u in ledger.unmatched(log)] == ["twilio:SM123:delivered"]
        # Once more after the held fact's message became known: still one of each.
        ledger.append_input(log, jsonl(run_with_messages()[5:]))
        assert log.count() == 10 + 4 + 1 and ledger.unmatched(log) == []
        inbox.put(prepared.items, prepared.received_at)
        assert ledger.drain_inbox(log, inbox) == 5
        assert log.count() == 15 and ledger.unmatched(log) == []
    finally:
        inbox.close()
    assert ledger.query(log, queries.show_delivery, "m-email")["opens_total"] == 2
    assert ledger.query(log, queries.show_delivery, "m-sms")["status"] == "delivered"


def test_no_inbox_file_is_made_while_nothing_is_deferred(store_path):
    with_messages(store_path)
    with TestClient(create_app(store_path, provider_secrets=SECRETS, follow=True)) as client:
        assert post_sendgrid(client, sendgrid_events()).json() == {"appended": 4, "duplicates": 0, "held": 0, "skipped": 0}
        # The views catch up at the follower's next round, which folds the facts.
        wait_until(lambda: client.get("/healthz").json().get("behind") == 0)
        assert client.get("/healthz").json() == {"status": "ok", "position": 14, "behind": 0}
    assert not os.path.exists(store_path + INBOX_SUFFIX)


def test_an_invalid_or_oversize_webhook_is_refused_and_nothing_of_it_kept_while_the_lock_is_held(store_path):
    events = sendgrid_events()
    events[1] = {**events[1], "note": "x" * 2000}
    with TestClient(create_app(store_path, provider_secrets=SECRETS, lock_timeout=0.2, max_event_bytes=1000)) as client:
        with sqlite_write_lock(store_path):
            r = post_sendgrid(client, events)
        assert r.status_code == 422 and [e["index"] for e in r.json()["errors"]] == [1]
    assert not os.path.exists(store_path + INBOX_SUFFIX)


def test_a_webhook_is_checked_and_translated_off_the_event_loop(store_path, monkeypatch):
    real = ADAPTERS["sendgrid"]
    entered, others_answered = threading.Event(), threading.Event()
    waited = []

    class Slow:
        def facts(self, *args):
            entered.set()
            # On the event loop, no other request could be answered meanwhile.
            waited.append(others_answered.wait(timeout=30))
            return real.facts(*args)

    monkeypatch.setitem(ADAPTERS, "sendgrid", Slow())
    answers = []
    with TestClient(create_app(store_path, provider_secrets=SECRETS)) as client:
        poster = threading.Thread(target=lambda: answers.append(post_sendgrid(client, sendgrid_events())))
        poster.start()
        assert entered.wait(timeout=30)
        assert client.get("/healthz").status_code == 200
        others_answered.set()
        poster.join()
    assert waited == [True]
    assert answers[0].json()["appended"] == 4


def test_a_webhook_deferred_by_a_killed_server_is_appended_by_project(store_path):
    """kill -9 of the server right after it answered: the inbox kept what it acknowledged."""
    pytest.importorskip("uvicorn")
    with_messages(store_path)
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "flowledger")
    env = {**os.environ, "FLOWLEDGER_SENDGRID_PUBLIC_KEY": PUBLIC}
    proc = subprocess.Popen(
        [exe, "--store", store_path, "--lock-timeout", "0.2", "serve", "--port", str(port), "--no-follow"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return httpx.get(base + "/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(lambda: up() or proc.poll() is not None)
        assert up()
        with sqlite_write_lock(store_path):
            body = orjson.dumps(sendgrid_events())
            r = httpx.post(base + "/v1/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))
            assert r.json()["deferred"] == 4
            proc.kill()
            proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = CliRunner().invoke(cli, ["--store", store_path, "project"])
    assert result.exit_code == 0, result.output
    log = open_log(store_path)
    try:
        assert log.count() == 14 and ledger.inbox_count(log) == 0
        assert ledger.query(log, queries.show_delivery, "m-email", fresh=False)["status"] == "clicked"
    finally:
        log.close()


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=str(POSTGRES_UNREACHABLE))
def test_postgresql_a_webhook_finding_the_append_lock_held_is_deferred_then_drained(postgres_url):
    with_messages(postgres_url)
    with TestClient(create_app(postgres_url, provider_secrets=SECRETS, lock_timeout=0.2, follow=True)) as client:
        before = utc_now()
        with postgres_append_lock(postgres_url):
            r = post_sendgrid(client, sendgrid_events())
            assert r.status_code == 200, r.text
            assert r.json() == {"appended": 0, "duplicates": 0, "held": 0, "skipped": 0, "deferred": 4}
            received = utc_now()
            assert client.get("/healthz").json()["deferred"] == 4
        wait_until(lambda: "deferred" not in client.get("/healthz").json())
        # The views catch up at the follower's next round, which folds the facts.
        wait_until(lambda: client.get("/healthz").json().get("behind") == 0)
        assert client.get("/healthz").json() == {"status": "ok", "position": 14, "behind": 0}
    log = open_log(postgres_url)
    try:
        email = [body for _, body in stored(log, "message:m-email")][-4:]
        assert [b["id"] for b in email] == ["sendgrid:e-deliv", "sendgrid:e-open-machine", "sendgrid:e-open", "sendgrid:e-click"]
        assert all(before <= b["recorded_at"] <= received for b in email)
        assert ledger.query(log, queries.show_delivery, "m-email")["status"] == "clicked"
        assert ledger.inbox_count(log) == 0
    finally:
        log.close()


def _posted_within(client, events, seconds=120):
    """Post a SendGrid webhook from a thread; its answer, or None if it had none in time."""
    answers = []
    poster = threading.Thread(target=lambda: answers.append(post_sendgrid(client, events)), daemon=True)
    poster.start()
    poster.join(seconds)
    return answers[0] if answers else None


@pytest.mark.parametrize("follow", [False, True])
def test_a_webhook_waits_a_short_while_for_the_lock_whatever_the_servers_lock_timeout(store_path, follow):
    # serve's lock timeout (an hour here) is for its own writes; a provider waits seconds for
    # an answer (Twilio 15), so a webhook gives up the lock sooner and is kept in the inbox.
    with_messages(store_path)
    with TestClient(create_app(store_path, provider_secrets=SECRETS, lock_timeout=3600, follow=follow)) as client:
        with sqlite_write_lock(store_path):
            answer = _posted_within(client, sendgrid_events())
            assert answer is not None, "the webhook was still waiting for the lock"
            assert answer.status_code == 200 and answer.json()["deferred"] == 4
            assert _posted_within(client, sendgrid_events()).json()["deferred"] == 4
        last = post_sendgrid(client, sendgrid_events()).json()
        if follow and last.get("deferred"):
            # The follower was draining the inbox as it came: it went in behind the older
            # facts (the log keeps their order), for the follower's next drain.
            assert last == {"appended": 0, "duplicates": 0, "held": 0, "skipped": 0, "deferred": 4}
            wait_until(lambda: "deferred" not in client.get("/healthz").json())
        else:
            assert last == {"appended": 0, "duplicates": 4, "held": 0, "skipped": 0}
        assert "deferred" not in client.get("/healthz").json()
    log = open_log(store_path)
    try:
        ids = [body["id"] for _, body in stored(log, "message:m-email") if body["id"].startswith("sendgrid:")]
        assert ids == ["sendgrid:e-deliv", "sendgrid:e-open-machine", "sendgrid:e-open", "sendgrid:e-click"]
    finally:
        log.close()


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
def test_postgresql_a_webhook_waits_a_short_while_for_the_append_lock(postgres_url):
    with_messages(postgres_url)
    with TestClient(create_app(postgres_url, provider_secrets=SECRETS, lock_timeout=3600)) as client:
        with postgres_append_lock(postgres_url):
            answer = _posted_within(client, sendgrid_events())
            assert answer is not None, "the webhook was still waiting for the lock"
            assert answer.status_code == 200 and answer.json()["deferred"] == 4
        assert post_sendgrid(client, sendgrid_events()).json()["duplicates"] == 4


def test_mailgun_tokens_are_remembered_in_the_inbox_file(store_path):
    """A server's Mailgun tokens are kept in the inbox file beside the store (never waiting for
    the store's write lock, as a long import holds it), with their body's digest."""
    import hashlib
    import time

    from tests.test_providers_review import MAILGUN, mailgun_body, mailgun_post
    from tests.test_providers_review import SECRETS as MAILGUN_SECRETS

    body = mailgun_body({**MAILGUN, "event": "delivered", "id": "mg-i1", "timestamp": time.time()}, token="i" * 50)
    with TestClient(create_app(store_path, provider_secrets=MAILGUN_SECRETS, lock_timeout=0.2)) as client:
        with sqlite_write_lock(store_path):
            answer = mailgun_post(client, body).json()
    assert answer["deferred"] == 1
    conn = sqlite3.connect(store_path + INBOX_SUFFIX)
    try:
        (row,) = conn.execute("SELECT key, digest, forget_at FROM webhook_tokens").fetchall()
    finally:
        conn.close()
    assert row[:2] == ("mailgun:" + "i" * 50, hashlib.sha256(body).digest())
    assert time.time() < row[2] <= time.time() + 600


def test_a_new_inbox_file_another_server_is_making_is_waited_for_not_refused(store_path):
    """Two servers' first webhooks at once: while one makes the inbox file (its write lock held
    before the file is switched to WAL), SQLite refuses the other's switch at once, without
    waiting; the other waits for the file and keeps its webhook's facts and token."""
    import time

    log = open_log(store_path)
    inbox = open_inbox(log.backend)
    path = store_path + INBOX_SUFFIX
    maker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    maker.execute("BEGIN IMMEDIATE")  # the other server, half-way through making the file
    released = threading.Timer(0.3, maker.rollback)
    try:
        released.start()
        started = time.monotonic()
        assert inbox.first_body("mailgun:new-file", b"body", 1000.0, 600) == b"body"
        assert time.monotonic() - started >= 0.25  # it waited for the other's lock
        inbox.put([({"type": "MessageDelivered", "message_id": "m-1"}, None)], utc_now())
        assert inbox.count() == 1
    finally:
        released.join()
        maker.close()
        inbox.close()
        log.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT key FROM webhook_tokens").fetchall() == [("mailgun:new-file",)]
    finally:
        conn.close()


def test_a_token_the_inbox_cannot_remember_is_left_to_the_process_and_tried_again_a_minute_later(store_path, caplog):
    """An inbox that cannot be written (here a directory stands where its file would be)
    leaves tokens to the process's memory, says so once, and is tried again after a minute;
    a busy one fails the webhook instead (sent again later)."""
    import logging

    from flowledger.errors import StoreBusy
    from flowledger.store import inbox as inbox_module

    open_log(store_path).close()
    os.mkdir(store_path + INBOX_SUFFIX)
    log = open_log(store_path)
    inbox = open_inbox(log.backend)
    assert inbox is not None
    tried: list[float] = []
    real = inbox._first_body

    def counted(key, digest, now, kept):
        tried.append(now)
        return real(key, digest, now, kept)

    inbox._first_body = counted  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.WARNING, logger="flowledger"):
            assert inbox.first_body("mailgun:k", b"one", 1000.0, 600) is None
            assert inbox.first_body("mailgun:k", b"two", 1000.0 + inbox_module.TOKENS_RETRY - 1, 600) is None
            assert tried == [1000.0]
            os.rmdir(store_path + INBOX_SUFFIX)
            assert inbox.first_body("mailgun:k", b"two", 1000.0 + inbox_module.TOKENS_RETRY, 600) == b"two"
            assert len(tried) == 2
        said = [r.getMessage() for r in caplog.records if "cannot remember webhook tokens" in r.getMessage()]
        assert len(said) == 1 and "unable to open" in said[0], said

        def busy(key, digest, now, kept):
            raise StoreBusy("the webhook inbox is busy")

        inbox._first_body = busy  # type: ignore[method-assign]
        with pytest.raises(StoreBusy):
            inbox.first_body("mailgun:k", b"three", 2000.0, 600)
    finally:
        inbox.close()
        log.close()


def test_a_mailgun_token_taken_by_a_killed_server_is_still_refused_with_another_body(store_path):
    """kill -9 of the server right after it answered: the token it took is remembered, so the
    server started again refuses it with another body (and takes the same body as a resend)."""
    pytest.importorskip("uvicorn")
    import time

    from tests.test_providers_review import MAILGUN, mailgun_body

    with_messages(store_path)
    exe = os.path.join(os.path.dirname(sys.executable), "flowledger")
    env = {**os.environ, "FLOWLEDGER_MAILGUN_SIGNING_KEY": "mg-key"}
    token = "k" * 49 + "9"
    delivered = mailgun_body({**MAILGUN, "event": "delivered", "id": "mg-k1", "timestamp": time.time()}, token=token)
    forged = mailgun_body({**MAILGUN, "event": "complained", "id": "mg-k2", "timestamp": time.time()}, token=token)
    answers = []
    for body in (delivered, forged, delivered):
        port = free_port()
        proc = subprocess.Popen(
            [exe, "--store", store_path, "serve", "--port", str(port), "--no-follow"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: proc.poll() is not None or healthy(port), 60)
            assert healthy(port)
            answers.append(httpx.post(f"http://127.0.0.1:{port}/v1/webhooks/mailgun", content=body, headers={"Content-Type": "application/json"}, timeout=30))
        finally:
            proc.kill()  # SIGKILL: nothing is closed or flushed
            proc.wait()
    assert [a.status_code for a in answers] == [200, 401, 200], [a.text for a in answers]
    assert "another body" in answers[1].json()["detail"]
    assert (answers[0].json()["appended"], answers[2].json()["duplicates"]) == (1, 1)
