"""A review of what a person at the web pages sees after this session's commits: views a
newer flowledger made, /healthz beside the pages, and the recipient filter's limits and
paging. Each finding was reproduced as a strict xfail, and is fixed."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.projections.deliveries_view import DeliveriesView
from flowledger.projections.projector import Projector
from flowledger.projections.steps_view import StepsView
from flowledger.store import open_log
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_web import sign_in
from tests.view_versions_kit import NewerRunsView

PAGES = ["/", "/runs", "/runs/r0", "/deliveries", "/workflows", "/workflows/welcome"]


def _store_a_newer_version_made(path: str) -> str:
    """A store of a few runs whose views a newer flowledger made and folded; a read key's secret."""
    log = open_log(path)
    try:
        ledger.append_input(log, jsonl([triggered("r0"), ev("run.started", run_id="r0")]))
        secret = keys.create_key(log.backend, "reader", "read")[1]
    finally:
        log.close()
    newer = open_log(path)
    try:
        Projector(newer.backend, [NewerRunsView(), StepsView(), DeliveriesView()]).rebuild(downgrade=True, helper=False)
    finally:
        newer.close()
    return secret


def test_the_pages_of_a_store_a_newer_version_made_are_unavailable_not_a_server_error(store_path):
    secret = _store_a_newer_version_made(store_path)
    with TestClient(create_app(store_path)) as client:
        sign_in(client, secret)
        answers = {path: client.get(path) for path in PAGES}
    # What to do is said on every page already; the status is what a proxy or a probe reads.
    assert all("Use the newer flowledger" in r.text for r in answers.values())
    assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(PAGES, 503)


def test_healthz_is_not_ok_while_every_page_refuses_a_newer_versions_views(store_path):
    secret = _store_a_newer_version_made(store_path)
    with TestClient(create_app(store_path, follow=False)) as client:
        sign_in(client, secret)
        assert client.get("/runs").status_code >= 500
        health = client.get("/healthz")
    assert health.status_code == 503 and "'runs'" in health.json()["detail"], health.text


def test_a_collection_recipient_whose_id_holds_a_slash_pages_with_its_filter(store_path):
    who = {"collection": "teams", "id": "acme/eu"}
    events = []
    for i in range(30):
        events += [triggered(f"r{i}", recipient=who), ev("message.queued", message_id=f"m{i}", channel="email", recipient=who, run_id=f"r{i}")]
    log = open_log(store_path)
    try:
        ledger.append_input(log, jsonl(events + [triggered("other", recipient="acme/eu/x")]))
        secret = keys.create_key(log.backend, "reader", "read")[1]
    finally:
        log.close()
    with TestClient(create_app(store_path)) as client:
        sign_in(client, secret)
        for path, row in (("/runs", "<tr data-run="), ("/deliveries", "<tr><td>m")):
            first = client.get(path, params={"recipient": "teams/acme/eu"}).text
            older = html.unescape(re.search(r'href="([^"]+)" rel="next"', first).group(1))
            assert "recipient=teams%2Facme%2Feu" in older
            second = client.get(older).text
            assert (first.count(row), second.count(row)) == (25, 5), path
            too_long = client.get(path, params={"recipient": "x" * 512})
            assert too_long.status_code == 200 and "A recipient is at most 511 characters" in too_long.text
            assert too_long.text.count(row) == 0
