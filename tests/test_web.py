"""The pages' security rules, without a browser: sign-in, CSRF, scopes, redirects."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.store import open_log
from flowledger.web.pages import COOKIE


@pytest.fixture
def site(store_path):
    log = open_log(store_path)
    with open("examples/welcome-series.jsonl", "rb") as f:
        ledger.append_input(log, f)
    secrets = {scope: keys.create_key(log.backend, scope, scope)[1] for scope in ("read", "admin")}
    log.close()
    with TestClient(create_app(store_path)) as client:
        yield client, secrets


def sign_in(client, key, next="/"):
    return client.post("/login", data={"api_key": key, "next": next}, follow_redirects=False)


def test_pages_need_a_signed_in_key(site):
    client, _ = site
    for path in ("/", "/runs", "/runs/run-0001", "/deliveries", "/workflows", "/workflows/win-back"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def test_sign_in_sets_an_httponly_samesite_cookie(site):
    client, secrets = site
    r = sign_in(client, secrets["read"], next="/runs?status=failed")
    assert r.status_code == 303 and r.headers["location"] == "/runs?status=failed"
    cookie = r.headers["set-cookie"].lower()
    assert f"{COOKIE}=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert sign_in(client, "fl_live_wrong").status_code == 401


def test_no_open_redirect_after_sign_in(site):
    client, secrets = site
    for target in ("//evil.example/", "https://evil.example/"):
        assert sign_in(client, secrets["read"], next=target).headers["location"] == "/"


def test_a_read_key_gets_no_buttons_and_cannot_post(site):
    client, secrets = site
    sign_in(client, secrets["read"])
    page = client.get("/runs/run-0054").text
    assert 'id="retry"' not in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = client.post("/runs/run-0054/retry", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 403 and "Only admin keys" in r.text


def test_state_changes_need_the_csrf_token(site):
    client, secrets = site
    sign_in(client, secrets["admin"])
    page = client.get("/runs/run-0054").text
    assert 'id="retry"' in page
    assert client.post("/runs/run-0054/retry", data={}, follow_redirects=False).status_code == 403
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = client.post("/runs/run-0054/retry", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/runs/run-0054?done=retried"
    again = client.post("/runs/run-0054/retry", data={"csrf": csrf}, follow_redirects=False)
    assert "refused=" in again.headers["location"]


def test_values_are_escaped(site):
    client, secrets = site
    sign_in(client, secrets["read"])
    r = client.get("/runs", params={"recipient": '"><script>alert(1)</script>'})
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;" in r.text


def test_unknown_run_is_a_404_page(site):
    client, secrets = site
    sign_in(client, secrets["read"])
    r = client.get("/runs/nope")
    assert r.status_code == 404 and "no run" in r.text
