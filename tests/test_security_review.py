"""A security review's findings: web sessions, CSRF, page headers, webhook signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.providers import postmark, twilio
from flowledger.providers.base import SignatureInvalid, SignedRequest
from flowledger.store import open_log
from flowledger.web.pages import COOKIE
from tests.conftest import POSTGRES_UNREACHABLE


@pytest.fixture
def site(store_path):
    log = open_log(store_path)
    with open("examples/welcome-series.jsonl", "rb") as f:
        ledger.append_input(log, f)
    made = {scope: keys.create_key(log.backend, scope, scope) for scope in ("read", "admin")}
    log.close()
    with TestClient(create_app(store_path)) as client:
        yield client, {scope: secret for scope, (_, secret) in made.items()}, {scope: key.id for scope, (key, _) in made.items()}, store_path


def sign_in(client, key, next="/"):
    return client.post("/login", data={"api_key": key, "next": next}, follow_redirects=False)


def csrf_of(client, path="/runs/run-0054"):
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def signed_out(client):
    r = client.get("/runs", follow_redirects=False)
    return r.status_code == 303 and r.headers["location"].startswith("/login")


# Sessions: the cookie holds a session token, not the key.


def test_the_session_cookie_is_not_the_api_key_and_is_no_api_credential(site):
    client, secrets, _, _ = site
    r = sign_in(client, secrets["admin"])
    assert r.status_code == 303
    assert secrets["admin"] not in r.headers["set-cookie"]
    token = client.cookies[COOKIE]
    assert client.get("/v1/runs", headers={"X-API-Key": token}).status_code == 401


def test_signing_out_ends_the_session_even_for_a_copied_cookie(site):
    client, secrets, _, _ = site
    sign_in(client, secrets["admin"])
    copied = client.cookies[COOKIE]
    r = client.post("/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    client.cookies.set(COOKIE, copied)
    assert signed_out(client)


def test_signing_out_everywhere_ends_every_session_of_the_key_and_no_other(site):
    client, secrets, _, _ = site
    sign_in(client, secrets["admin"])
    with TestClient(client.app) as other_browser, TestClient(client.app) as other_key:
        sign_in(other_browser, secrets["admin"])
        sign_in(other_key, secrets["read"])
        page = client.get("/runs").text
        assert 'name="everywhere" value="1"' in page and "Sign out everywhere" in page
        # A plain sign-out ends this browser's session alone.
        sign_in(client, secrets["admin"])
        client.post("/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
        assert signed_out(client) and not signed_out(other_browser)
        sign_in(client, secrets["admin"])
        # Forged: nothing ends.
        r = other_browser.post("/logout", data={"csrf": "forged", "everywhere": "1"}, follow_redirects=False)
        assert r.status_code == 303 and not signed_out(client) and not signed_out(other_browser)
        r = other_browser.post("/logout", data={"csrf": csrf_of(other_browser), "everywhere": "1"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert signed_out(client) and signed_out(other_browser) and not signed_out(other_key)
        # The key itself still works, for the API and for signing in again.
        assert client.get("/v1/counts", headers={"X-API-Key": secrets["admin"]}).status_code == 200
        assert sign_in(client, secrets["admin"]).status_code == 303 and not signed_out(client)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_keys_sign_out_ends_a_keys_live_sessions_and_says_how_many(backend, store_path, request):
    from click.testing import CliRunner

    from flowledger.cli import cli

    if backend == "postgres":
        if POSTGRES_UNREACHABLE:
            pytest.skip(POSTGRES_UNREACHABLE)
        store_path = request.getfixturevalue("postgres_url")
    log = open_log(store_path)
    try:
        key, secret = keys.create_key(log.backend, "ops", "admin")
        other, _ = keys.create_key(log.backend, "other", "read")
        live = [keys.start_session(log.backend, key) for _ in range(2)]
        theirs = keys.start_session(log.backend, other)
        # Over already (made last: a sign-in clears the sessions over by its own time).
        keys.start_session(log.backend, key, now=time.time() - keys.SESSION_LIFETIME - 1)
    finally:
        log.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["--store", store_path, "keys", "sign-out", key.id])
    assert result.exit_code == 0 and result.stdout == f"Key {key.id}: 2 web sessions ended; the key still works.\n", result.output
    log = open_log(store_path)
    try:
        assert [keys.session_key(log.backend, t) for t in live] == [None, None]
        assert keys.session_key(log.backend, theirs) == other
        assert keys.verify(log.backend, secret).revoked_at is None  # the key still works
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT COUNT(*) FROM web_sessions WHERE key_id = ?", (key.id,))
            assert c.fetchone()[0] == 0  # the one over already is not kept either
    finally:
        log.close()
    again = runner.invoke(cli, ["--store", store_path, "keys", "sign-out", key.id])
    assert again.exit_code == 0 and "0 web sessions ended" in again.stdout
    unknown = runner.invoke(cli, ["--store", store_path, "keys", "sign-out", "key_nope"])
    assert unknown.exit_code == 1 and "no key 'key_nope'" in unknown.output


def test_revoking_a_key_ends_its_sessions_at_once(site):
    client, secrets, ids, store_path = site
    sign_in(client, secrets["admin"])
    assert not signed_out(client)
    log = open_log(store_path)
    try:
        keys.revoke_key(log.backend, ids["admin"])
    finally:
        log.close()
    assert signed_out(client)


@pytest.fixture(params=["sqlite", "postgres"])
def any_log(request, store_path):
    if request.param == "postgres":
        if POSTGRES_UNREACHABLE:
            pytest.skip(POSTGRES_UNREACHABLE)
        store_path = request.getfixturevalue("postgres_url")
    log = open_log(store_path)
    yield log
    log.close()


def test_a_session_ends_after_its_lifetime_on_sign_out_and_on_revocation(any_log):
    backend = any_log.backend
    keys.ensure_table(backend)
    key, _ = keys.create_key(backend, "ops", "admin")
    start = 1_800_000_000.0
    token = keys.start_session(backend, key, now=start)
    assert keys.session_key(backend, token, now=start + keys.SESSION_LIFETIME - 1) == key
    assert keys.session_key(backend, token, now=start + keys.SESSION_LIFETIME) is None
    # An API key is no session token.
    assert keys.session_key(backend, "fl_live_x", now=start) is None
    signed_out_of = keys.start_session(backend, key, now=start)
    keys.end_session(backend, signed_out_of)
    assert keys.session_key(backend, signed_out_of, now=start) is None
    # Signing out everywhere ends the key's every session, and no other key's.
    other, _ = keys.create_key(backend, "other", "read")
    theirs = keys.start_session(backend, other, now=start)
    everywhere = [keys.start_session(backend, key, now=start) for _ in range(2)]
    keys.end_sessions(backend, key.id)
    assert [keys.session_key(backend, t, now=start) for t in everywhere] == [None, None]
    assert keys.session_key(backend, theirs, now=start) == other
    assert keys.session_key(backend, token, now=start) is None  # this key's first one too
    keys.end_session(backend, theirs)
    token = keys.start_session(backend, key, now=start)
    keys.revoke_key(backend, key.id)
    assert keys.session_key(backend, token, now=start) is None
    # Nothing kept of sessions that can never be used again.
    with backend.transaction(write=False) as c:
        c.execute("SELECT COUNT(*) FROM web_sessions")
        assert c.fetchone()[0] == 0


def test_the_csrf_token_is_bound_to_the_session(site):
    client, secrets, _, _ = site
    sign_in(client, secrets["admin"])
    first = csrf_of(client)
    client.cookies.clear()
    sign_in(client, secrets["admin"])
    second = csrf_of(client)
    assert first != second
    r = client.post("/runs/run-0054/retry", data={"csrf": first}, follow_redirects=False)
    assert r.status_code == 403 and "expired" in r.text


def test_a_csrf_value_that_is_not_ascii_is_refused_not_a_500(site):
    client, secrets, _, _ = site
    sign_in(client, secrets["admin"])
    for path in ("/runs/run-0054/retry", "/runs/run-0054/cancel"):
        r = client.post(path, data={"csrf": "é"}, follow_redirects=False)
        assert r.status_code == 403 and "expired" in r.text
    r = client.post("/logout", data={"csrf": "é"}, follow_redirects=False)
    assert r.status_code == 303 and not signed_out(client)


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "/\\evil.example", "\\\\evil.example", "/\t/evil.example", "/\n/evil.example",
     "https://evil.example/", "https:evil.example", "javascript:alert(1)", "%2F%2Fevil.example", " //evil.example"],
)
def test_the_sign_in_next_never_leaves_the_site(site, target):
    client, secrets, _, _ = site
    location = sign_in(client, secrets["read"], next=target).headers["location"]
    # As a browser reads it: tabs and newlines dropped, a backslash a slash.
    read = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    assert read.startswith("/") and not read.startswith("//") and ":" not in read.split("?")[0]


# The pages' headers.


def test_pages_forbid_framing_and_set_a_content_security_policy(site):
    client, secrets, _, _ = site
    pages = [client.get("/login"), client.get("/nowhere", headers={"accept": "text/html"})]
    sign_in(client, secrets["admin"])
    pages += [client.get("/runs/run-0054"), client.get("/runs/nope")]
    for r in pages:
        assert r.headers["x-frame-options"] == "DENY"
        policy = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
        assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-content-type-options"] == "nosniff"


def test_the_policy_allows_the_confirmations_the_pages_have(site):
    client, secrets, _, _ = site
    sign_in(client, secrets["admin"])
    r = client.get("/runs/run-0054")
    handlers = re.findall(r'onsubmit="([^"]*)"', r.text)
    assert handlers
    policy = r.headers["content-security-policy"]
    for handler in handlers:
        digest = base64.b64encode(hashlib.sha256(handler.replace("&#39;", "'").encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy


# Webhook signatures.


def _twilio_signature(url, fields, token="tok"):
    payload = url + "".join(k + fields[k] for k in sorted(fields))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def test_a_twilio_body_that_is_not_form_encoded_is_still_covered_by_the_signature():
    url = "https://flows.example/v1/webhooks/twilio"
    body = b"MessageSid=SMforged&MessageStatus=delivered&To=%2B15550001"
    # Signed over the URL alone: the events in the body would be unsigned.
    forged = SignedRequest(body, {"x-twilio-signature": _twilio_signature(url, {})}, url=url, form={})
    with pytest.raises(SignatureInvalid):
        twilio.ADAPTER.facts(forged, {"auth_token": "tok"}, time.time())
    fields = {"MessageSid": "SMforged", "MessageStatus": "delivered", "To": "+15550001"}
    signed = SignedRequest(body, {"x-twilio-signature": _twilio_signature(url, fields)}, url=url, form={})
    assert twilio.ADAPTER.facts(signed, {"auth_token": "tok"}, time.time())[0].provider_message_id == "SMforged"


def test_postmark_compares_the_password_even_when_the_user_is_wrong(monkeypatch):
    compared = []
    real = postmark.same

    def counting(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(postmark, "same", counting)
    header = "Basic " + base64.b64encode(b"wrong:secret").decode()
    with pytest.raises(SignatureInvalid):
        postmark.verify(SignedRequest(b"{}", {"authorization": header}), {"username": "u", "password": "secret"}, time.time())
    # Both compared: how long the refusal takes says nothing about which one was wrong.
    assert len(compared) == 2


# Resource limits.


def test_a_deeply_nested_event_body_is_a_422(site):
    client, secrets, _, _ = site
    body = b"[" * 100_000 + b"]" * 100_000
    r = client.post("/v1/events", content=body, headers={"X-API-Key": secrets["admin"], "content-type": "application/json"})
    assert r.status_code == 422


def test_a_store_error_looking_up_the_session_is_a_page(site, monkeypatch):
    from flowledger.errors import StoreError

    client, secrets, _, _ = site
    sign_in(client, secrets["read"])
    monkeypatch.setattr(keys, "session_key", lambda *a: (_ for _ in ()).throw(StoreError("disk I/O error <x>")))
    r = client.get("/")
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    # Its key not known yet: the store's words go to the server's log, not to the page.
    assert "The store could not answer: the store failed this request" in r.text and "I/O error" not in r.text


def test_a_page_form_body_over_the_limit_is_refused_unread(site):
    client, secrets, _, _ = site
    # A thousand 60 KB fields: each under the form parser's own 1 MB limit, 60 MB together.
    body = b"&".join(b"f%d=" % i + b"a" * 60_000 for i in range(1000))
    for path in ("/login", "/logout", "/runs/run-0054/retry"):
        r = client.post(path, content=body, headers={"content-type": "application/x-www-form-urlencoded"}, follow_redirects=False)
        assert r.status_code == 413 and r.headers["content-type"].startswith("text/html"), path
    # The forms themselves still work.
    assert sign_in(client, secrets["read"]).status_code == 303
