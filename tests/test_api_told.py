"""What a caller is told of a store's error (flowledger.api.told): all of it once its key was
checked (an API key, a web session's), its kind alone before (the key's own look-up, a
webhook, /healthz, the sign-in page), the rest in the server's log."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys, told
from flowledger.api.app import create_app
from flowledger.errors import (
    StoreBusy,
    StoreError,
    StoreIsACopy,
    StoreReadOnly,
    StoreUnavailable,
    ViewsRemadeByAnotherVersion,
)
from flowledger.store import open_log

INSIDES = "cannot reach the store postgresql://flows@db-7.internal:5432/prod (schema acme): connection refused"


@pytest.fixture
def api(store_path):
    log = open_log(store_path)
    secret = keys.create_key(log.backend, "ops", "admin")[1]
    log.close()
    with TestClient(create_app(store_path)) as client:
        yield client, secret


def _raise(error):
    def raising(*args, **kwargs):
        raise error

    return raising


@pytest.mark.parametrize(
    "error, status, detail",
    [
        (StoreUnavailable(INSIDES), 503, told.UNAVAILABLE),
        (StoreBusy(f"{INSIDES}: the write lock was held past 5 s"), 503, told.BUSY),
        (ViewsRemadeByAnotherVersion(f"{INSIDES}: views of version 9"), 503, told.REMADE),
        (StoreReadOnly(f"{INSIDES}: read-only"), 500, told.READ_ONLY),
        (StoreIsACopy(f"{INSIDES}: a copy"), 409, told.COPY),
        (StoreError(f"{INSIDES}: disk I/O error"), 500, told.FAILED),
    ],
)
def test_a_key_check_that_meets_a_failing_store_tells_its_kind_alone_and_logs_the_rest(api, monkeypatch, caplog, error, status, detail):
    client, secret = api
    monkeypatch.setattr(keys, "verify", _raise(error))
    with caplog.at_level(logging.WARNING, logger="flowledger.api.told"):
        r = client.get("/v1/counts", headers={"X-API-Key": secret})
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["detail"] == detail and "db-7" not in r.text and "flows@" not in r.text
    assert ("retry-after" in r.headers) == (status == 503 and error.__class__ is not ViewsRemadeByAnotherVersion)
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "flowledger.api.told"]
    assert len(logged) == 1 and logged[0].startswith("GET /v1/counts: " + INSIDES), logged


def test_a_caller_whose_key_was_checked_is_told_all_of_it(api, monkeypatch, caplog):
    client, secret = api
    monkeypatch.setattr(ledger, "query", _raise(StoreUnavailable(INSIDES)))
    with caplog.at_level(logging.WARNING, logger="flowledger.api.told"):
        r = client.get("/v1/counts", headers={"X-API-Key": secret})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["detail"] == INSIDES
    assert not [rec for rec in caplog.records if rec.name == "flowledger.api.told"]


def test_healthz_needs_no_key_and_tells_no_insides(api, monkeypatch):
    client, _ = api
    monkeypatch.setattr(ledger, "views_lag", _raise(StoreUnavailable(INSIDES)))
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["detail"] == told.UNAVAILABLE and "db-7" not in r.text


def test_a_webhook_meeting_a_failing_store_tells_no_insides(store_path, monkeypatch):
    open_log(store_path).close()
    monkeypatch.setenv("FLOWLEDGER_POSTMARK_USERNAME", "u")
    monkeypatch.setenv("FLOWLEDGER_POSTMARK_PASSWORD", "p")
    with TestClient(create_app(store_path)) as client:
        monkeypatch.setattr(ledger, "prepare_provider_facts", _raise(StoreError(f"{INSIDES}: disk I/O error")))
        monkeypatch.setattr(ledger, "receive_provider_facts", _raise(StoreError(f"{INSIDES}: disk I/O error")))
        body = b'{"RecordType": "Delivery", "MessageID": "pm-1", "Recipient": "a@b.c", "DeliveredAt": "2026-11-01T10:00:00Z"}'
        r = client.post("/v1/webhooks/postmark", content=body, auth=("u", "p"), headers={"content-type": "application/json"})
    assert r.status_code == 500 and r.json()["detail"] == told.FAILED and "db-7" not in r.text, r.text


def test_the_sign_in_page_tells_no_insides_a_signed_in_page_tells_all(api, monkeypatch):
    client, secret = api
    real_verify = keys.verify
    monkeypatch.setattr(keys, "verify", _raise(StoreUnavailable(INSIDES)))
    r = client.post("/login", data={"api_key": secret, "next": "/"}, follow_redirects=False)
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
    assert "db-7" not in r.text and "The store could not answer: the store could not answer" in r.text
    monkeypatch.setattr(keys, "verify", real_verify)
    assert client.post("/login", data={"api_key": secret, "next": "/"}, follow_redirects=False).status_code == 303
    monkeypatch.setattr(ledger, "query", _raise(StoreUnavailable(INSIDES)))
    r = client.get("/runs")
    assert r.status_code == 503 and "db-7.internal" in r.text


def test_a_sign_in_whose_key_was_checked_is_told_all_of_a_later_failure(api, monkeypatch):
    client, secret = api
    monkeypatch.setattr(keys, "start_session", _raise(StoreError(f"{INSIDES}: disk full")))
    r = client.post("/login", data={"api_key": secret, "next": "/"}, follow_redirects=False)
    assert r.status_code == 500 and "db-7.internal" in r.text and "disk full" in r.text


def test_a_session_look_up_that_meets_a_failing_store_tells_no_insides(api, monkeypatch):
    client, secret = api
    assert client.post("/login", data={"api_key": secret, "next": "/"}, follow_redirects=False).status_code == 303
    monkeypatch.setattr(keys, "session_key", _raise(StoreError(f"{INSIDES}: disk I/O error")))
    r = client.get("/runs")
    assert r.status_code == 500 and "db-7" not in r.text
    assert "The store could not answer: the store failed this request; the server&#39;s log says why" in r.text
