"""The operators' pages as a user reads them: every status findable, empty states said,
numbers as the CLI gives them, charts that stay readable, the webhook inbox in view."""

from __future__ import annotations

import os
import re

import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.domain.run import STATUSES
from flowledger.providers import ADAPTERS
from flowledger.store import open_log
from flowledger.store.inbox import open_inbox
from flowledger.web import charts
from tests.conftest import ev, live_server, triggered
from tests.histories import jsonl
from tests.test_web import add_events, chip_counts, sign_in, site  # noqa: F401  # site: the fixture


def rows(html):
    return re.findall(r'<tr data-run="([^"]*)"', html)


def test_every_status_has_a_chip_and_the_chosen_one_is_marked(site):
    """The overview's "1 paused" card leads to a listing whose chip says it is filtered."""
    client, secrets = site
    sign_in(client, secrets["read"])
    for status in ("paused", "pending"):
        page = client.get("/runs", params={"status": status}).text
        listed = rows(page)
        counts = chip_counts(page)
        assert set(counts) == {"all", *STATUSES}
        assert counts[status] == len(listed) >= 1
        assert re.search(rf'aria-current="true" data-status="{status}"', page)
    every = chip_counts(client.get("/runs").text)
    assert sum(n for s, n in every.items() if s != "all") == every["all"]


def test_a_bad_custom_date_lists_no_runs_rather_than_all_of_them(site):
    client, secrets = site
    sign_in(client, secrets["read"])
    page = client.get("/runs", params={"range": "custom", "from": "2026-13-01T00:00:00Z"}).text
    assert "Dates must be RFC 3339" in page
    assert rows(page) == [] and "No runs match" in page
    assert set(chip_counts(page).values()) == {0}


def cost_events():
    """One workflow whose email costs EUR and whose SMS costs USD (and again in EUR)."""
    events = [
        triggered("cost-1", workflow="costly", recipient="u1", occurred_at="2026-11-05T09:00:00Z"),
        ev("run.started", run_id="cost-1", occurred_at="2026-11-05T09:00:01Z"),
        ev("step.started", run_id="cost-1", step="email", step_type="send_email", attempt=1, occurred_at="2026-11-05T09:00:02Z"),
        ev("message.queued", message_id="cost-m1", channel="email", recipient="u1", run_id="cost-1", step="email", occurred_at="2026-11-05T09:00:03Z"),
        ev("message.sent", message_id="cost-m1", cost={"amount": 0.5, "currency": "EUR"}, occurred_at="2026-11-05T09:00:04Z"),
        ev("step.started", run_id="cost-1", step="sms", step_type="send_sms", attempt=1, occurred_at="2026-11-05T09:00:05Z"),
    ]
    for i, currency in enumerate(("USD", "EUR"), start=2):
        events += [
            ev("message.queued", message_id=f"cost-m{i}", channel="sms", recipient="u1", run_id="cost-1", step="sms", occurred_at="2026-11-05T09:00:06Z"),
            ev("message.sent", message_id=f"cost-m{i}", cost={"amount": 0.25, "currency": currency}, occurred_at="2026-11-05T09:00:07Z"),
        ]
    return events


def test_costs_in_several_currencies_are_given_per_currency_as_the_cli_does(site):
    client, secrets = site
    add_events(client, secrets, cost_events())
    sign_in(client, secrets["read"])
    page = client.get("/workflows/costly").text
    # `flowledger workflows show costly`: "cost 0.75 EUR + 0.25 USD".
    assert re.search(r'<div class="n">0\.75 EUR \+ 0\.25 USD</div><div class="label">cost</div>', page)
    assert "mixed" not in page
    # The SMS channel's two currencies, not a Python dict.
    assert "costs_by_currency: 0.25 EUR + 0.25 USD" in page and "{" not in re.sub(r"<svg.*?</svg>", "", page, flags=re.S)


def test_runs_over_time_stays_readable_over_years_and_counts_every_run():
    days = [f"{y}-{m:02d}-{d:02d}" for y in (2024, 2025, 2026) for m in range(1, 13) for d in range(1, 29)]
    rows_ = [(day, status, 7) for day in days for status in ("completed", "failed", "pending")]
    svg = charts.over_time(rows_)
    bars = re.findall(r'<text x="\d+" y="\d+">(\d+)</text>', svg)
    assert 1 <= len(bars) <= 62
    assert sum(int(n) for n in bars) == 7 * len(rows_)
    assert int(re.search(r'width="(\d+)"', svg).group(1)) < 4000
    # A short span keeps one bar a day.
    week = charts.over_time([(f"2026-11-0{d}", "completed", 1) for d in range(1, 8)])
    assert len(re.findall(r"<title>2026-11-0\d: 1 completed</title>", week)) == 7


def test_an_empty_store_says_there_is_nothing_yet(store_path):
    log = open_log(store_path)
    _, secret = keys.create_key(log.backend, "ops", "read")
    log.close()
    with TestClient(create_app(store_path)) as client:
        sign_in(client, secret)
        assert "No runs yet" in client.get("/").text
        assert "No workflows yet" in client.get("/workflows").text


def test_a_workflow_without_steps_or_messages_says_so(site):
    client, secrets = site
    add_events(client, secrets, [triggered("quiet-1", workflow="quiet", recipient="u1", occurred_at="2026-11-05T09:00:00Z")])
    sign_in(client, secrets["read"])
    page = client.get("/workflows/quiet").text
    assert "No steps yet" in page and "No messages yet" in page
    assert "–%" not in page


def test_a_bounce_reason_shows_on_the_run_and_the_deliveries_page_escaped(site):
    client, secrets = site
    reason = "<script>window.x=1</script> mailbox full"
    add_events(client, secrets, [
        triggered("bounce-1", workflow="welcome-series", recipient="u1", occurred_at="2026-11-05T09:00:00Z"),
        ev("run.started", run_id="bounce-1", occurred_at="2026-11-05T09:00:01Z"),
        ev("step.started", run_id="bounce-1", step="email", step_type="send_email", attempt=1, occurred_at="2026-11-05T09:00:02Z"),
        ev("message.queued", message_id="bounce-m", channel="email", recipient="u1", run_id="bounce-1", step="email", occurred_at="2026-11-05T09:00:03Z"),
        ev("message.bounced", message_id="bounce-m", reason=reason, occurred_at="2026-11-05T09:00:05Z"),
    ])
    sign_in(client, secrets["read"])
    escaped = "&lt;script&gt;window.x=1&lt;/script&gt; mailbox full"
    for page in (client.get("/runs/bounce-1").text, client.get("/deliveries", params={"run_id": "bounce-1"}).text):
        assert escaped in page and "<script>window" not in page


def twilio_deliveries(n: int) -> ledger.PreparedFacts:
    """n Twilio delivery callbacks for messages SM0.. (which no run sent), ready for the inbox."""
    facts = ADAPTERS["twilio"].translate_all(
        [{"MessageSid": f"SM{i}", "MessageStatus": "delivered", "To": "+1555", "_received_at": 1793523700} for i in range(n)]
    )
    return ledger.prepare_provider_facts(facts)

def test_the_overview_shows_webhooks_waiting_in_the_inbox_and_those_set_aside(site, store_path):
    """Facts deferred for a busy store are in no view yet: the overview says how many wait."""
    client, secrets = site
    sign_in(client, secrets["read"])
    assert "inbox" not in client.get("/").text.split("<main>")[1]
    prepared = twilio_deliveries(3)
    log = open_log(store_path)
    inbox = open_inbox(log.backend)
    try:
        inbox.put(prepared.items[:2], prepared.received_at)
        inbox.put(prepared.items[2:], prepared.received_at)
        page = client.get("/").text
        assert "3 provider events wait in the webhook inbox" in page
        seq = inbox.oldest(1)[0].seq
        inbox.set_aside(seq, "<b>unreadable</b>", prepared.received_at)
        page = client.get("/").text
        assert "1 provider event waits in the webhook inbox" in page
        assert "1 webhook was set aside" in page and "flowledger inbox" in page
    finally:
        inbox.close()
        log.close()


def test_a_busy_store_is_a_page_saying_so_not_the_apis_json(site, monkeypatch):
    from flowledger.errors import StoreBusy, StoreError

    client, secrets = site
    sign_in(client, secrets["admin"])
    page = client.get("/runs/run-0057").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)

    def busy(*args, **kwargs):
        raise StoreBusy("the store's write lock was held past the lock timeout <60 s>")

    monkeypatch.setattr(ledger, "query", busy)
    monkeypatch.setattr(ledger, "retry_run", busy)
    for r in (client.get("/runs"), client.get("/workflows/win-back"), client.post("/runs/run-0057/retry", data={"csrf": csrf})):
        assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
        assert r.headers["retry-after"] == "1" and "The store is busy" in r.text
    monkeypatch.setattr(keys, "session_key", lambda *a: (_ for _ in ()).throw(StoreError("disk I/O error <x>")))
    r = client.get("/")
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    # Its key not known yet: the store's words go to the server's log, not to the page.
    assert "The store could not answer: the store failed this request" in r.text and "I/O error" not in r.text


def branching_stats():
    """start → (a | b) → end, and a retry loop end → start: two edges skip a box, one goes back."""
    counts = {"completed": 3, "failed": 1, "running": 0, "idle": 0, "stopped": 0}
    long = "a-step-whose-name-is-far-too-long-for-its-box"
    nodes = [{"step": n, "step_type": "http", **counts} for n in ("start", long, "b", "end")]
    pairs = [("start", long), ("start", "b"), (long, "end"), ("b", "end"), ("end", "start")]
    return {"nodes": nodes, "edges": [{"from": f, "to": t, **counts} for f, t in pairs]}, long


def test_the_workflow_graph_draws_no_edge_behind_a_box_and_fits_long_names():
    stats, long = branching_stats()
    svg = charts.graph(stats)
    boxes = [tuple(float(v) for v in m) for m in re.findall(r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"', svg)]
    assert len(boxes) == 4
    labels = [(float(x), float(y)) for x, y in re.findall(r'<text x="([\d.]+)" y="([\d.]+)">(?:[^<]*: )?3 / 1 / 0</text>', svg)]
    assert len(labels) == len(stats["edges"])
    for x, y in labels:
        assert not any(bx <= x <= bx + w and by <= y <= by + h for bx, by, w, h in boxes), (x, y)
    # Every straight edge joins neighbours: it crosses no box on its way.
    for x1, x2 in re.findall(r'<line x1="([\d.]+)" y1="[\d.]+" x2="([\d.]+)"', svg):
        assert not any(float(x1) < bx < float(x2) for bx, _, _, _ in boxes)
    assert f"<title>{long}</title>" in svg and long not in svg.replace(f"<title>{long}</title>", "")


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)")
def test_long_names_wrap_instead_of_widening_the_pages(store_path):
    from playwright.sync_api import sync_playwright

    workflow, run_id, step_name = "w-" + "L" * 240, "r-" + "R" * 200, "s-" + "S" * 200
    log = open_log(store_path)
    ledger.append_input(log, jsonl([
        triggered(run_id, workflow=workflow, recipient="u-" + "U" * 200, occurred_at="2026-11-05T09:00:00Z"),
        ev("run.started", run_id=run_id, occurred_at="2026-11-05T09:00:01Z"),
        ev("step.started", run_id=run_id, step=step_name, step_type="http", attempt=1, occurred_at="2026-11-05T09:00:02Z"),
        ev("step.failed", run_id=run_id, step=step_name, step_type="http", attempt=1, error="E" * 300, occurred_at="2026-11-05T09:00:03Z"),
    ]))
    _, secret = keys.create_key(log.backend, "ops", "read")
    log.close()
    with live_server(create_app(store_path)) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(base + "/login")
            page.get_by_label("API key").fill(secret)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(base + "/")
            for path in ("/", "/runs", "/runs/" + run_id, "/workflows", "/workflows/" + workflow):
                page.goto(base + path)
                assert page.evaluate("document.documentElement.scrollWidth") <= 1280, path
        finally:
            browser.close()
