"""A hostile client against the API and the pages: clients that hang up mid-body, keys
revoked while a request is sent, malformed headers, bodies and percent-escapes, NUL in a
page's address, and the Allow of a 405 where routes overlap."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.providers import twilio as twilio_adapter
from flowledger.store import open_log
from flowledger.web.pages import COOKIE
from tests.conftest import ev, step, triggered

SECRETS = {"postmark": {"username": "pm", "password": "pw"}, "twilio": {"auth_token": "tw-token"}}


def failed_run(run_id: str = "r1") -> list[dict[str, Any]]:
    return [
        triggered(run_id),
        ev("run.started", run_id=run_id),
        step("step.started", run_id),
        step("step.failed", run_id, error="SMTP 451"),
        ev("run.failed", run_id=run_id, error="gave up"),
    ]


def stored(store: str, run_id: str | None = None) -> Any:
    """How many events the log holds, or the types of one run's."""
    log = open_log(store)
    try:
        return log.count() if run_id is None else [e.body["type"] for e in log.run_events(run_id)]
    finally:
        log.close()


@pytest.fixture
def api(store_path):
    log = open_log(store_path)
    made = {scope: keys.create_key(log.backend, scope + " key", scope) for scope in keys.SCOPES}
    log.close()
    with TestClient(create_app(store_path, provider_secrets=SECRETS)) as client:
        client.keys = {scope: secret for scope, (_, secret) in made.items()}  # type: ignore[attr-defined]
        client.key_ids = {scope: key.id for scope, (key, _) in made.items()}  # type: ignore[attr-defined]
        client.store = store_path  # type: ignore[attr-defined]
        yield client


def asgi_post(
    client: TestClient, path: str, parts: list[bytes | None], headers: dict[str, str], between: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """POST straight through the app's ASGI interface, the body in ``parts`` as a server hands
    them over; None is the client hanging up; ``between`` runs before every part after the
    first (a key revoked while the body is on its way). Returns what the app sent; an
    exception the app let out (which uvicorn logs with its traceback) is raised."""
    length = sum(len(p) for p in parts if p is not None)
    raw_headers = [(b"host", b"testserver"), (b"content-length", str(length).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": raw_headers,
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "extensions": {}, "state": {},
    }
    pending = list(parts)
    handed = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal handed
        if handed:
            between()
        handed += 1
        part = pending.pop(0) if pending else None
        if part is None:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": part, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        await client.app(scope, receive, send)

    client.portal.call(call)  # type: ignore[attr-defined]
    return sent


def status_of(sent: list[dict[str, Any]]) -> int:
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def body_of(sent: list[dict[str, Any]]) -> Any:
    return orjson.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


# A client that hangs up mid-body: before, every one left "Exception in ASGI application"
# and a ClientDisconnect traceback of some 60 lines in the server's log (the webhooks let
# anyone do it, with no key).


@pytest.mark.parametrize("path, scope", [("/v1/events", "write"), ("/v1/runs/r1/retry", "admin"), ("/v1/cancellations", "admin"), ("/v1/webhooks/postmark", None)])
def test_a_client_that_hangs_up_mid_body_leaves_no_traceback_and_stores_nothing(api, path, scope):
    headers = {"Content-Type": "application/json", **({"X-API-Key": api.keys[scope]} if scope else {})}
    body = orjson.dumps(failed_run("r9"))
    sent = asgi_post(api, path, [body[:20], None], headers)
    assert status_of(sent) == 400
    assert "closed the connection" in body_of(sent)["detail"]
    assert stored(api.store) == 0


# A key revoked while its request's body was still on its way: before, the request stored
# its events (200) after `keys revoke` had answered, though revoking "stops a key at once".


def test_a_key_revoked_while_its_events_are_sent_stores_nothing(api):
    body = orjson.dumps(failed_run("r1"))
    log = open_log(api.store)

    def revoke() -> None:
        keys.revoke_key(log.backend, api.key_ids["write"])

    try:
        sent = asgi_post(api, "/v1/events", [body[:30], body[30:]], {"X-API-Key": api.keys["write"]}, between=revoke)
    finally:
        log.close()
    assert status_of(sent) == 401, body_of(sent)
    assert "revoked" in body_of(sent)["detail"]
    assert stored(api.store) == 0


def test_a_key_revoked_while_its_retry_is_sent_records_no_retry(api):
    assert api.post("/v1/events", json=failed_run("r1"), headers={"X-API-Key": api.keys["write"]}).status_code == 200
    log = open_log(api.store)
    body = b'{"reason": "try again"}'
    try:
        sent = asgi_post(
            api, "/v1/runs/r1/retry", [body[:5], body[5:]], {"X-API-Key": api.keys["admin"]},
            between=lambda: keys.revoke_key(log.backend, api.key_ids["admin"]),
        )
    finally:
        log.close()
    assert status_of(sent) == 401
    assert stored(api.store, "r1")[-1] == "run.failed"


# Sign-in with an Origin header urlsplit cannot read: before, a 500 and a ValueError traceback.


@pytest.mark.parametrize("origin", ["http://[::1", "http://[bad]x"])
def test_an_unreadable_origin_on_sign_in_is_refused_not_a_500(api, origin):
    r = api.post(
        "/login", data={"api_key": api.keys["read"], "next": "/"}, headers={"Origin": origin}, follow_redirects=False
    )
    assert r.status_code == 403 and "Sign in from this site" in r.text
    assert COOKIE not in r.cookies


# Postmark's basic auth with bytes that are not ASCII: before, a 422 "not a postmark webhook:
# string argument should contain only ASCII characters", as if the credentials had passed.


def test_basic_auth_that_is_not_ascii_is_a_401_on_the_postmark_webhook(api):
    record = {"RecordType": "Open", "MessageID": "pm-1", "Recipient": "a@example.com", "ReceivedAt": "2026-11-05T09:30:00Z"}
    r = api.post("/v1/webhooks/postmark", content=orjson.dumps(record), headers={"Authorization": b"Basic \xff\xfe", "Content-Type": "application/json"})
    assert r.status_code == 401 and r.json()["detail"] == "postmark: the basic auth header is malformed"
    assert stored(api.store) == 0


# NUL in a page's address: PostgreSQL's text cannot hold it, so before, every page with one in
# an id or a filter was a 500 "The store could not answer"; the API answers 422 for it.


def signed_in_admin(client: TestClient) -> str:
    r = client.post("/login", data={"api_key": client.keys["admin"], "next": "/"}, follow_redirects=False)  # type: ignore[attr-defined]
    assert r.status_code == 303
    token = client.cookies.get(COOKIE)
    return hmac.new(token.encode(), b"flowledger csrf", hashlib.sha256).hexdigest()


NUL_PAGES = ["/runs?workflow=%00", "/runs?recipient=a%00", "/runs/%00", "/runs/a%00b", "/deliveries?run_id=%00", "/workflows/%00"]


@pytest.mark.parametrize("path", NUL_PAGES)
def test_nul_in_a_page_address_is_a_422_page_saying_so(api, path):
    signed_in_admin(api)
    r = api.get(path)
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "NUL" in r.text


def test_nul_in_the_run_of_a_page_form_is_a_422_and_records_nothing(api):
    csrf = signed_in_admin(api)
    r = api.post("/runs/a%00/retry", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 422 and "NUL" in r.text


def test_nul_in_a_page_address_is_no_500_on_postgresql(postgres_url):
    log = open_log(postgres_url, create=True)
    keys.ensure_table(log.backend)
    _, secret = keys.create_key(log.backend, "pg", "admin")
    log.close()
    with TestClient(create_app(postgres_url)) as client:
        client.keys = {"admin": secret}  # type: ignore[attr-defined]
        csrf = signed_in_admin(client)
        for path in NUL_PAGES:
            r = client.get(path)
            assert r.status_code == 422, (path, r.status_code)
        assert client.post("/runs/a%00/cancel", data={"csrf": csrf}).status_code == 422


# A 405's Allow where two routes share a path: before, only the first route's methods.


@pytest.mark.parametrize(
    "path, methods",
    [
        ("/v1/webhooks/whatsapp", {"GET", "HEAD", "POST"}),  # the handshake is a GET
        ("/v1/runs/r1/retry", {"GET", "HEAD", "POST"}),  # GET: the run "r1/retry" (ids may hold "/")
        ("/runs/r1/cancel", {"GET", "HEAD", "POST"}),  # the page of the run "r1/cancel", and the form
    ],
)
def test_a_405_allows_every_method_its_path_takes(api, path, methods):
    r = api.put(path, headers={"X-API-Key": api.keys["admin"]})
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} == methods
    assert set(re.findall(r"[A-Z]+", r.json()["detail"].split("it takes")[1])) == methods


# A body that is not UTF-8: before, "str is not valid UTF-8: surrogates not allowed: line 1
# column 1 (char 0)" whatever the byte, and wherever it was.


def test_a_body_that_is_not_utf8_says_so_and_where(api):
    body = b'[{"id": "caf\xe9"}]'
    r = api.post("/v1/events", content=body, headers={"X-API-Key": api.keys["write"]})
    assert r.status_code == 422
    assert r.json()["detail"] == "the body is not UTF-8 text: invalid continuation byte at byte 12"
    assert stored(api.store) == 0
    utf16 = api.post("/v1/cancellations", content='{"key": "k"}'.encode("utf-16"), headers={"X-API-Key": api.keys["admin"]})
    assert utf16.status_code == 422
    assert utf16.json()["errors"] == [{"field": "body", "message": "not UTF-8 text: invalid start byte at byte 0"}]


# A compressed body: before, gzip was a 422 about surrogates, and plain JSON labelled gzip was
# stored (200) as if the header were not there.


def test_a_compressed_body_is_a_415_and_stores_nothing(api):
    events = orjson.dumps(failed_run("r1"))
    for body in (gzip.compress(events), events):
        r = api.post("/v1/events", content=body, headers={"X-API-Key": api.keys["write"], "Content-Encoding": "gzip"})
        assert r.status_code == 415 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"] == "Content-Encoding gzip is not supported: send the body uncompressed"
    assert stored(api.store) == 0
    r = api.post("/v1/runs/r1/cancel", content=gzip.compress(b"{}"), headers={"X-API-Key": api.keys["admin"], "Content-Encoding": "gzip"})
    assert r.status_code == 415
    # "identity" is no encoding.
    r = api.post("/v1/events", content=events, headers={"X-API-Key": api.keys["write"], "Content-Encoding": "identity"})
    assert r.status_code == 200


# Percent-escapes that are not UTF-8 (%ff): before, read as U+FFFD, so "%E9" and "%E8" were the
# same id; a Twilio callback's message id was stored so (200).


def test_a_query_or_id_whose_escapes_are_not_utf8_is_a_422_naming_it(api):
    read = {"X-API-Key": api.keys["read"]}
    r = api.get("/v1/runs?workflow=caf%E9", headers=read)
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "workflow", "message": "not UTF-8: a percent-escape (%E9, say) must encode UTF-8 text"}]
    r = api.get("/v1/runs/caf%E9/history", headers=read)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "run_id"
    # UTF-8 escapes are read as before.
    assert api.get("/v1/runs/caf%C3%A9", headers=read).status_code == 404


def test_a_twilio_callback_whose_message_id_is_not_utf8_is_refused_and_not_stored(api):
    url = "http://testserver/v1/webhooks/twilio?flowledger_message_id=caf%E9"
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    headers = {"X-Twilio-Signature": twilio_adapter.signature(url, form, "tw-token"), "Content-Type": "application/x-www-form-urlencoded"}
    r = api.post("/v1/webhooks/twilio?flowledger_message_id=caf%E9", data=form, headers=headers)
    assert r.status_code == 422 and "flowledger_message_id" in r.json()["detail"]
    assert stored(api.store) == 0


# Slow senders of large webhook bodies: each body is held before its signature is checked, so
# forty connections each sending 9 MiB slowly took a server from 78 to 441 MB. The bodies held
# at once now share one budget; past it a webhook is a 503 to send again.


def test_webhook_bodies_held_at_once_share_a_budget_given_back_when_each_ends(store_path):
    import socket
    import threading

    import httpx

    from tests.conftest import live_server, wait_until

    budget = 2 * 1024 * 1024
    app = create_app(store_path, provider_secrets=SECRETS, webhook_body_budget=budget)
    with live_server(app) as base:
        port = int(base.rsplit(":", 1)[1])
        slow = socket.create_connection(("127.0.0.1", port))
        head = b"POST /v1/webhooks/postmark HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n\r\n"
        slow.sendall(head + b" " * 1_500_000)  # and then nothing more, for now
        other = b"[" + b" " * (1024 * 1024) + b"]"  # 1 MiB, unsigned

        def answer() -> httpx.Response:
            return httpx.post(base + "/v1/webhooks/postmark", content=other, headers={"Content-Type": "application/json"}, timeout=30)

        answers: list[httpx.Response] = []
        wait_until(lambda: answers.append(answer()) or answers[-1].status_code == 503, 30)
        busy = answers[-1]
        assert busy.status_code == 503, busy.text
        assert busy.headers["Retry-After"] == "1" and busy.headers["content-type"] == "application/problem+json"
        assert "webhook bodies" in busy.json()["detail"] and "send it again" in busy.json()["detail"]
        # A small one still fits beside the slow one: only what would go past the budget waits.
        assert httpx.post(base + "/v1/webhooks/postmark", json=[], timeout=30).status_code == 401
        slow.close()  # the slow sender hangs up: what it held is given back
        wait_until(lambda: answers.append(answer()) or answers[-1].status_code == 401, 30)
        assert answers[-1].status_code == 401, answers[-1].text
        # And again and again: each request gives back what it took (a leak would fill it).
        for _ in range(5):
            assert answer().status_code == 401
    assert stored(store_path) == 0


def _answer_of(sock, seconds: float) -> bytes:
    """What a server sent on a raw connection until it closed it (or ``seconds`` passed)."""
    import time

    sock.settimeout(seconds)
    got, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            part = sock.recv(65536)
        except TimeoutError:
            break
        if not part:
            return got + b"<closed>"
        got += part
    return got


def test_a_webhook_body_that_stops_arriving_is_a_408_its_budget_given_back(store_path):
    # A sender that stops mid-body held its share of the budget for as long as it kept the
    # connection open: two such held a budget of 2 MiB, and every webhook after was a 503.
    import socket

    import httpx

    from tests.conftest import live_server

    budget = 2 * 1024 * 1024
    app = create_app(store_path, provider_secrets=SECRETS, webhook_body_budget=budget, webhook_body_timeout=1.0)
    other = b"[" + b" " * (1024 * 1024) + b"]"  # 1 MiB, unsigned: a 401 once read
    with live_server(app) as base:
        port = int(base.rsplit(":", 1)[1])
        slow = socket.create_connection(("127.0.0.1", port))
        head = b"POST /v1/webhooks/postmark HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n\r\n"
        slow.sendall(head + b" " * 1_500_000)  # and then nothing more
        answer = _answer_of(slow, 30)
        slow.close()
        status, _, rest = answer.partition(b"\r\n")
        assert status == b"HTTP/1.1 408 Request Timeout", answer[:300]
        assert b"connection: close" in rest.lower() and rest.endswith(b"<closed>"), answer[:300]
        assert b"did not all arrive within 1 s" in rest and b"nothing was stored" in rest
        # Given back: a body as large as the budget's rest fits again, and is read (401).
        r = httpx.post(base + "/v1/webhooks/postmark", content=other, headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 401, r.text
        # A body arriving in time is read as before, however slowly its parts come.
        steady = socket.create_connection(("127.0.0.1", port))
        steady.sendall(head.replace(b"3000000", b"2"))
        steady.sendall(b"[")
        steady.sendall(b"]")
        steady.settimeout(30)
        assert steady.recv(65536).startswith(b"HTTP/1.1 401 ")
        steady.close()
    assert stored(store_path) == 0
