"""A server whose follower stopped for good says so on every page, and its overview says
why webhooks wait in the inbox (nothing will store them until the server restarts)."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.store import open_log
from flowledger.store.inbox import open_inbox
from tests.test_web import sign_in
from tests.test_web_review import twilio_deliveries

PAGES = ("/", "/runs", "/runs/run-0001", "/deliveries", "/workflows", "/workflows/win-back")


def _site(store_path, monkeypatch, *, broken: bool, follow: bool = True):
    log = open_log(store_path)
    with open("examples/welcome-series.jsonl", "rb") as f:
        ledger.append_input(log, f)
    secret = keys.create_key(log.backend, "reader", "read")[1]
    log.close()
    stopped = threading.Event()
    if broken:
        def broken_follow(*args, **kwargs):
            stopped.set()
            raise RuntimeError("a fold went wrong")

        monkeypatch.setattr(ledger, "follow", broken_follow)
    client = TestClient(create_app(store_path, follow=follow))
    return client, secret, stopped


def _main(page: str) -> str:
    return page.split("<main>")[1]


def test_every_page_says_the_follower_stopped_and_why(store_path, monkeypatch):
    """After a bug stops the follower, each page names it: the views now move only as pages load."""
    client, secret, stopped = _site(store_path, monkeypatch, broken=True)
    with client:
        assert stopped.wait(10)
        sign_in(client, secret)
        for path in PAGES:
            page = client.get(path)
            assert page.status_code == 200, path
            assert "stopped keeping the views up to date" in _main(page.text), path
            assert "unexpected RuntimeError: a fold went wrong" in page.text, path
            assert "restarted" in page.text, path


def test_a_healthy_server_shows_no_such_banner(store_path, monkeypatch):
    """With its follower running, no page speaks of it."""
    client, secret, _ = _site(store_path, monkeypatch, broken=False)
    with client:
        sign_in(client, secret)
        for path in PAGES:
            assert "stopped keeping the views" not in client.get(path).text, path


@pytest.mark.parametrize("broken", [True, False])
def test_the_overview_says_what_the_inbox_waits_for(store_path, monkeypatch, broken):
    """Deferred webhooks wait for the write lock, or, the follower stopped, for a restart."""
    # Without the bug, no follower: a running one could drain the inbox before the page is read.
    client, secret, stopped = _site(store_path, monkeypatch, broken=broken, follow=broken)
    prepared = twilio_deliveries(2)
    with client:
        if broken:
            assert stopped.wait(10)
        log = open_log(store_path)
        inbox = open_inbox(log.backend)
        try:
            inbox.put(prepared.items, prepared.received_at)
            sign_in(client, secret)
            page = client.get("/").text
        finally:
            inbox.close()
            log.close()
    assert "2 provider events wait in the webhook inbox" in page
    if broken:
        assert "follower, which has stopped: restart the server to store them" in page
        assert "write lock" not in page
    else:
        assert "for the store's write lock" in page
