"""The HTTP API through httpx (FastAPI's test client): every endpoint, keys and scopes,
problem documents."""

from __future__ import annotations

import sqlite3
import threading

import orjson
import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import MAX_BATCH_EVENTS, create_app
from flowledger.web.pages import COOKIE
from flowledger.errors import StoreBusy
from flowledger.store import open_log
from tests.conftest import ev, step, triggered
from tests.histories import jsonl

EXAMPLE = "examples/welcome-series.jsonl"


@pytest.fixture
def api(store_path):
    log = open_log(store_path)
    secrets = {scope: keys.create_key(log.backend, scope + " key", scope)[1] for scope in keys.SCOPES}
    log.close()
    with TestClient(create_app(store_path)) as client:
        client.keys = secrets  # type: ignore[attr-defined]
        yield client


def h(api, scope):
    return {"X-API-Key": api.keys[scope]}


def failed_run(run_id="r1"):
    return [
        triggered(run_id, trigger={"source": "api", "cancellation_key": "order-7"}),
        ev("run.started", run_id=run_id),
        step("step.started", run_id),
        ev("message.queued", message_id=f"{run_id}-m", channel="email", recipient="user-1", run_id=run_id, step="email-1"),
        ev("message.delivered", message_id=f"{run_id}-m"),
        step("step.failed", run_id, error="SMTP 451"),
        ev("run.failed", run_id=run_id, error="gave up"),
    ]


def test_health_needs_no_key(api):
    assert api.get("/healthz").json() == {"status": "ok", "position": 0, "behind": 0}


def test_health_gives_the_log_position_without_counting_the_log(api, monkeypatch):
    from flowledger.store.backend import SQLBackend

    def counted(*_):
        raise AssertionError("a health check must not count the log: a scan of all of it")

    monkeypatch.setattr(SQLBackend, "count_events", staticmethod(counted))
    batch = failed_run("health-1")
    assert api.post("/v1/events", json=batch, headers=h(api, "write")).status_code == 200
    # No follower here: the views have folded none of it.
    assert api.get("/healthz").json() == {"status": "ok", "position": len(batch), "behind": len(batch)}


def test_a_store_too_busy_to_write_is_a_503_to_try_again_after(store_path):
    log = open_log(store_path)
    write_key = keys.create_key(log.backend, "writer", "write")[1]
    log.close()
    with TestClient(create_app(store_path, lock_timeout=0.1)) as client:
        holder = sqlite3.connect(store_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's long append
        try:
            busy = client.post("/v1/events", json=failed_run("b1"), headers={"X-API-Key": write_key})
        finally:
            holder.rollback()
            holder.close()
        assert busy.status_code == 503 and busy.headers["content-type"] == "application/problem+json"
        assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]
        again = client.post("/v1/events", json=failed_run("b1"), headers={"X-API-Key": write_key})
        assert again.status_code == 200 and again.json()["appended"] == len(failed_run("b1"))


def test_a_follower_thread_that_fails_says_so_in_one_line_and_queries_still_answer(store_path, monkeypatch, caplog):
    log = open_log(store_path)
    ledger.append_input(log, jsonl(failed_run("f1")))
    read_key = keys.create_key(log.backend, "reader", "read")[1]
    log.close()
    uncaught = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    stopped = threading.Event()

    def broken_follow(*args, **kwargs):
        stopped.set()
        raise RuntimeError("a fold went wrong")

    monkeypatch.setattr(ledger, "follow", broken_follow)
    with TestClient(create_app(store_path, follow=True)) as client:
        assert stopped.wait(10)
        run = client.get("/v1/runs/f1", headers={"X-API-Key": read_key})
    assert run.status_code == 200 and run.json()["status"] == "failed"
    assert not uncaught  # no traceback printed by the thread
    assert any("follower stopped: unexpected RuntimeError: a fold went wrong" in r.getMessage() for r in caplog.records)


def test_a_server_starts_when_its_first_catch_up_meets_a_busy_store(store_path, monkeypatch, caplog):
    # Between opening the store and catching up, another process's long append may hold
    # the lock: the views catch up later (the follower, or each query), the server serves.
    log = open_log(store_path)
    ledger.append_input(log, jsonl(failed_run("busy-1")))
    read_key = keys.create_key(log.backend, "reader", "read")[1]
    log.close()
    real, calls = ledger.catch_up, []

    def busy_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise StoreBusy("the store is busy")
        return real(*args, **kwargs)

    monkeypatch.setattr(ledger, "catch_up", busy_once)
    with TestClient(create_app(store_path)) as client:
        assert client.get("/healthz").status_code == 200
        run = client.get("/v1/runs/busy-1", headers={"X-API-Key": read_key})
    assert run.status_code == 200 and run.json()["status"] == "failed"
    assert any("could not catch the views up" in r.getMessage() for r in caplog.records)


def test_a_server_that_could_not_make_the_keys_tables_at_start_up_refuses_keys_as_unknown(store_path, monkeypatch):
    # A store never served, started during an import: the keys tables are not made (the
    # start-up does not wait for the lock). A key or session sent then is unknown (401, the
    # sign-in page), not a 500 "no such table"; webhooks and /healthz need none.
    log = open_log(store_path)
    ledger.append_input(log, jsonl(failed_run("k1")))
    log.close()

    def busy(backend):
        raise StoreBusy("the store is busy")

    monkeypatch.setattr(keys, "ensure_table", busy)
    with TestClient(create_app(store_path)) as client:
        assert client.get("/healthz").status_code == 200
        for headers in ({"X-API-Key": "fl_live_" + "x" * 43}, {"X-API-Key": "fl_sess_" + "x" * 43}):
            r = client.get("/v1/runs", headers=headers)
            assert r.status_code == 401 and r.json()["status"] == 401, r.text
        signed = client.post("/login", data={"api_key": "fl_live_" + "x" * 43, "next": "/"}, headers={"Origin": "http://testserver"})
        assert signed.status_code == 401 and "unknown or revoked" in signed.text
        client.cookies.set(COOKIE, "fl_sess_" + "y" * 43)
        page = client.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        out = client.post("/logout", data={"csrf": "z"}, follow_redirects=False)
        assert out.status_code == 303
    # Made by the first key made, as before.
    log = open_log(store_path)
    monkeypatch.undo()
    key = keys.create_key(log.backend, "reader", "read")[1]
    log.close()
    with TestClient(create_app(store_path)) as client:
        assert client.get("/v1/runs/k1", headers={"X-API-Key": key}).json()["status"] == "failed"


@pytest.mark.parametrize("method, path", [("get", "/v1/runs"), ("get", "/v1/workflows/counts"), ("post", "/v1/events"), ("get", "/openapi.json")])
def test_a_missing_or_unknown_key_is_401(api, method, path):
    for headers in ({}, {"X-API-Key": "fl_live_nope"}, {"X-API-Key": "something"}):
        r = getattr(api, method)(path, headers=headers)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 401


def test_scopes(api):
    events = failed_run()
    assert api.post("/v1/events", json=events, headers=h(api, "read")).status_code == 403
    assert api.post("/v1/events", json=events, headers=h(api, "write")).status_code == 200
    assert api.post("/v1/runs/r1/retry", headers=h(api, "write")).status_code == 403
    assert api.post("/v1/runs/r1/retry", headers=h(api, "admin")).status_code == 200
    assert api.get("/v1/runs", headers=h(api, "read")).status_code == 200


def test_a_revoked_key_stops_working(api, store_path):
    log = open_log(store_path)
    key, secret = keys.create_key(log.backend, "temp", "read")
    assert api.get("/v1/runs", headers={"X-API-Key": secret}).status_code == 200
    keys.revoke_key(log.backend, key.id)
    log.close()
    assert api.get("/v1/runs", headers={"X-API-Key": secret}).status_code == 401


def test_keys_are_stored_only_as_hashes(api, store_path):
    raw = b"".join(open(store_path + s, "rb").read() for s in ("", "-wal") if __import__("os").path.exists(store_path + s))
    for secret in api.keys.values():
        assert secret.encode() not in raw


def test_post_events_all_or_nothing_and_idempotent(api):
    events = failed_run()
    assert api.post("/v1/events", json=events, headers=h(api, "write")).json() == {"appended": 7, "duplicates": 0}
    assert api.post("/v1/events", json=events, headers=h(api, "write")).json() == {"appended": 0, "duplicates": 7}
    bad = [triggered("r2"), {"id": "x", "type": "run.started", "occurred_at": "2026-11-01T09:00:00", "run_id": "r2"}]
    r = api.post("/v1/events", json=bad, headers=h(api, "write"))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    (error,) = r.json()["errors"]
    assert (error["index"], error["field"], error["id"]) == (1, "occurred_at", "x")
    assert api.get("/v1/runs/r2", headers=h(api, "read")).status_code == 404  # nothing stored


def test_refused_facts_and_id_conflicts_are_409(api):
    api.post("/v1/events", json=failed_run(), headers=h(api, "write"))
    r = api.post("/v1/events", json=[ev("run.completed", run_id="r1")], headers=h(api, "write"))
    assert r.status_code == 409
    assert r.json()["errors"][0]["index"] == 0 and "whose status is failed" in r.json()["errors"][0]["message"]
    conflict = {**failed_run()[0], "id": "same"}
    api.post("/v1/events", json=[{**triggered("r9"), "id": "same"}], headers=h(api, "write"))
    assert api.post("/v1/events", json=[{**conflict, "run_id": "r10"}], headers=h(api, "write")).status_code == 409


def test_batch_limits_are_413_with_the_limit_named(api):
    r = api.post("/v1/events", json=[{}] * (MAX_BATCH_EVENTS + 1), headers=h(api, "write"))
    assert r.status_code == 413 and "10,000" in r.json()["detail"]
    r = api.post("/v1/events", content=b"[" + b" " * (11 * 1024 * 1024) + b"]", headers={**h(api, "write"), "content-type": "application/json"})
    assert r.status_code == 413 and "10,485,760" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit holds all the same
        yield b"["
        for _ in range(11):
            yield b" " * (1024 * 1024)
        yield b"]"

    r = api.post("/v1/events", content=chunks(), headers={**h(api, "write"), "content-type": "application/json"})
    assert r.status_code == 413 and "10,485,760" in r.json()["detail"]


def test_malformed_bodies_are_422(api):
    for body in (b"not json", b'{"id": 1}', b"[1, 2]"):
        r = api.post("/v1/events", content=body, headers={**h(api, "write"), "content-type": "application/json"})
        assert r.status_code == 422, body


def test_runs_endpoints(api):
    api.post("/v1/events", json=failed_run("r1") + [triggered("r2", workflow="other")], headers=h(api, "write"))
    page = api.get("/v1/runs", params={"status": ["failed"], "page_size": 5}, headers=h(api, "read")).json()
    assert [e["id"] for e in page["entries"]] == ["r1"] and page["page_info"]["page_size"] == 5
    assert [e["id"] for e in api.get("/v1/runs", params={"workflow": "other"}, headers=h(api, "read")).json()["entries"]] == ["r2"]
    run = api.get("/v1/runs/r1", headers=h(api, "read")).json()
    assert run["status"] == "failed" and run["steps"][0]["status"] == "failed" and run["deliveries"][0]["status"] == "delivered"
    assert [(e["type"], e["status"]) for e in run["events"]][-2:] == [("step.failed", "error"), ("run.failed", "error")]
    assert run["events"][2]["step"] == "email-1" and run["events"][2]["attempt"] == 1
    history = api.get("/v1/runs/r1/history", headers=h(api, "read")).json()
    # the run's events and its message's facts, in log order.
    assert [(e["event"]["type"], e["state"]["status"]) for e in history["events"]] == [
        ("run.triggered", "pending"), ("run.started", "running"), ("step.started", "running"),
        ("message.queued", "running"), ("message.delivered", "running"), ("step.failed", "running"), ("run.failed", "failed"),
    ]
    assert history["events"][-1]["state"]["email_opened"] is False
    assert api.get("/v1/runs", params={"starting_at": "yesterday"}, headers=h(api, "read")).status_code == 422
    assert api.get("/v1/runs", params={"status": "bogus"}, headers=h(api, "read")).status_code == 422


def test_retry_cancel_and_cancellations(api):
    api.post("/v1/events", json=failed_run("r1") + [triggered("r2", trigger={"source": "api", "cancellation_key": "order-7"})], headers=h(api, "write"))
    r = api.post("/v1/runs/r1/retry", json={"reason": "provider back"}, headers=h(api, "admin"))
    assert (r.status_code, r.json()["status"], r.json()["retry_count"]) == (200, "pending", 1)
    again = api.post("/v1/runs/r1/retry", headers=h(api, "admin"))
    assert again.status_code == 409 and "only a failed run" in again.json()["detail"]
    assert api.post("/v1/runs/nope/retry", headers=h(api, "admin")).status_code == 404
    r = api.post("/v1/cancellations", json={"key": "order-7"}, headers=h(api, "admin"))
    assert r.json() == {"cancellation_key": "order-7", "cancelled": ["r1", "r2"]}
    assert api.post("/v1/runs/r2/cancel", headers=h(api, "admin")).status_code == 409
    last = api.get("/v1/runs/r1/history", headers=h(api, "read")).json()["events"][-1]["event"]
    assert last["actor"] == "api:admin key" and last["by"] == "cancellation_key"


def test_deliveries_and_workflows(api):
    with open(EXAMPLE, "rb") as f:
        events = [orjson.loads(line) for line in f]
    assert api.post("/v1/events", json=events, headers=h(api, "write")).json()["appended"] == len(events)
    page = api.get("/v1/deliveries", params={"channel": "whatsapp", "status": ["read"], "page_size": 3}, headers=h(api, "read")).json()
    assert len(page["entries"]) == 3 and all(d["status"] == "read" for d in page["entries"])
    one = api.get(f"/v1/deliveries/{page['entries'][0]['message_id']}", headers=h(api, "read")).json()
    assert one == page["entries"][0]
    assert api.get("/v1/deliveries/nope", headers=h(api, "read")).status_code == 404
    assert {w["key"] for w in api.get("/v1/workflows", headers=h(api, "read")).json()["entries"]} == {"order-shipped", "password-reset", "welcome-series", "win-back"}
    counts = api.get("/v1/workflows/counts", headers=h(api, "read")).json()
    assert counts["total"] == 288 and counts["by_workflow"]["welcome-series"]["total"] == 50
    assert api.get("/v1/workflows/counts", params={"include_rehearsals": "true"}, headers=h(api, "read")).json()["total"] == 293
    details = api.get("/v1/workflows/welcome-series", headers=h(api, "read")).json()
    assert details["channels"]["email"]["open_rate"] == 32.65
    stats = api.get("/v1/workflows/welcome-series/stats", headers=h(api, "read")).json()
    assert stats["total"]["completed"] == 189
    assert api.get("/v1/workflows/nope", headers=h(api, "read")).status_code == 404


def test_script_in_a_run_id_is_data(api):
    nasty = "<img src=x onerror=alert(1)>"
    api.post("/v1/events", json=[triggered(nasty)], headers=h(api, "write"))
    r = api.get(f"/v1/runs/{nasty}", headers=h(api, "read"))
    assert r.status_code == 200 and r.json()["id"] == nasty and r.headers["content-type"] == "application/json"


def test_openapi_document(api):
    doc = api.get("/openapi.json", headers=h(api, "read")).json()
    assert doc["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    assert "/v1/workflows/{key}/stats" in doc["paths"] and doc["paths"]["/healthz"]["get"]["security"] == []


def test_unknown_paths_are_problem_documents(api):
    r = api.get("/v2/nothing", headers=h(api, "read"))
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_post_events_redacts_the_keys_named_in_flowledger_redact_keys(store_path, monkeypatch):
    monkeypatch.setenv("FLOWLEDGER_REDACT_KEYS", "ssn,pin")
    log = open_log(store_path)
    _, secret = keys.create_key(log.backend, "w", "write")
    log.close()
    events = [triggered("r1", data={"ssn": "123-45-6789", "nested": [{"PIN": "4242"}], "token": "t0k"})]
    with TestClient(create_app(store_path)) as client:
        assert client.post("/v1/events", json=events, headers={"X-API-Key": secret}).json()["appended"] == 1
    log = open_log(store_path)
    (stored,) = log.run_events("r1")
    log.close()
    assert stored.body["data"] == {"ssn": "[REDACTED]", "nested": [{"PIN": "[REDACTED]"}], "token": "[REDACTED]"}


def test_an_event_over_the_size_limit_is_refused_with_its_index_and_the_limit_and_nothing_stored(api):
    events = [triggered("r1"), triggered("r2", data={"blob": "x" * 2_000_000})]
    r = api.post("/v1/events", json=events, headers=h(api, "write"))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    (error,) = r.json()["errors"]
    assert (error["index"], error["id"]) == (1, events[1]["id"])
    assert "1,048,576 bytes" in error["message"] and "FLOWLEDGER_MAX_EVENT_BYTES" in error["message"]
    assert api.get("/v1/runs/r1", headers=h(api, "read")).status_code == 404  # nothing of the batch


def test_create_app_takes_its_largest_event_from_its_caller(store_path, monkeypatch):
    # FLOWLEDGER_MAX_EVENT_BYTES is read by serve's --max-event-bytes alone (tests/test_cli_loose_ends.py).
    monkeypatch.setenv("FLOWLEDGER_MAX_EVENT_BYTES", "lots")
    log = open_log(store_path)
    _, secret = keys.create_key(log.backend, "w", "write")
    log.close()
    with TestClient(create_app(store_path, max_event_bytes=400)) as client:
        r = client.post("/v1/events", json=[triggered("r1", data={"note": "x" * 500})], headers={"X-API-Key": secret})
        assert r.status_code == 422 and "the limit is 400 bytes" in r.json()["errors"][0]["message"]
        assert client.post("/v1/events", json=[triggered("r1")], headers={"X-API-Key": secret}).json()["appended"] == 1


def test_ids_with_a_slash_are_reachable(api):
    batch = [
        *failed_run("acme/run-1"),
        triggered("acme/run-2", workflow="team/onboarding"),
        ev("message.queued", message_id="sg/abc", channel="email", recipient="user-1", run_id="acme/run-2", step="email-1"),
    ]
    assert api.post("/v1/events", json=batch, headers=h(api, "write")).status_code == 200
    read, admin = h(api, "read"), h(api, "admin")
    assert api.get("/v1/runs/acme%2Frun-1", headers=read).json()["id"] == "acme/run-1"
    history = api.get("/v1/runs/acme%2Frun-1/history", headers=read).json()
    assert history["run_id"] == "acme/run-1" and len(history["events"]) == 7  # 5 of the run's, 2 of its message's
    assert api.post("/v1/runs/acme%2Frun-1/retry", headers=admin).json()["status"] == "pending"
    assert api.post("/v1/runs/acme%2Frun-2/cancel", headers=admin).json()["status"] == "cancelled"
    assert api.get("/v1/workflows/team%2Fonboarding", headers=read).json()["key"] == "team/onboarding"
    assert api.get("/v1/workflows/team%2Fonboarding/stats", headers=read).status_code == 200
    assert api.get("/v1/deliveries/sg%2Fabc", headers=read).json()["message_id"] == "sg/abc"
    doc = api.get("/openapi.json", headers=read).json()
    assert "/v1/runs/{run_id}/history" in doc["paths"] and not any(":path" in p for p in doc["paths"])


def test_a_workflow_named_counts_is_reachable_and_counts_stay_where_they_were(api):
    api.post("/v1/events", json=[triggered("c1", workflow="counts"), triggered("w1")], headers=h(api, "write"))
    read = h(api, "read")
    counts = api.get("/v1/workflows/counts", headers=read).json()
    assert counts == api.get("/v1/counts", headers=read).json() and counts["total"] == 2
    assert api.get("/v1/workflows/counts/details", headers=read).json()["key"] == "counts"
    assert api.get("/v1/workflows/welcome/details", headers=read).json()["key"] == "welcome"


def test_head_is_answered_where_get_is_and_a_405_says_what_is_allowed(api):
    r = api.head("/healthz")
    assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) > 0
    r = api.put("/healthz")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert r.headers["content-type"] == "application/problem+json"
    assert api.get("/v1/events", headers=h(api, "read")).headers["allow"] == "POST"
