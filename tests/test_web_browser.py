"""The operators' pages in a real browser: Debian's Chromium, driven by Playwright.

Sign in, filter by status chip and contact, page forward and back, open a run, retry a
failed one, and check that a script planted in an event does not run. Screenshots of each
page go to docs/screenshots/ (README shows them).
"""

from __future__ import annotations

import os
import re

import pytest

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.store import open_log
from tests.conftest import ev, live_server, triggered
from tests.histories import jsonl

CHROMIUM = "/usr/bin/chromium"
SHOTS = os.path.join(os.path.dirname(__file__), "..", "docs", "screenshots")
XSS = '<img src=x onerror="window.__xss=1">'

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("web") / "web.db")
    log = open_log(path)
    with open("examples/welcome-series.jsonl", "rb") as f:
        ledger.append_input(log, f)
    ledger.append_input(
        log,
        jsonl(
            [
                triggered("xss-run", workflow="welcome-series", recipient=XSS, occurred_at="2026-11-05T09:00:00Z"),
                ev("run.started", run_id="xss-run", occurred_at="2026-11-05T09:00:01Z"),
                ev("run.failed", run_id="xss-run", error=XSS + "<script>window.__xss=2</script>", occurred_at="2026-11-05T09:00:02Z"),
            ]
        ),
    )
    _, admin = keys.create_key(log.backend, "ops", "admin")
    _, reader = keys.create_key(log.backend, "dashboard", "read")
    log.close()
    with live_server(create_app(path)) as base_url:
        yield base_url, admin, reader


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


def signed_in(browser, site, key):
    base, _, _ = site
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    page.goto(base + "/runs")
    assert "/login" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/runs$"))
    return page


def shot(page, name):
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, name), full_page=True)


def statuses(page):
    return [t.strip() for t in page.locator("table[aria-label=Runs] tbody td:nth-child(4) .status").all_inner_texts()]


def follow(page, target, url: str) -> None:
    """Click ``target`` and wait until the page it leads to (its URL matching the pattern
    ``url``) has loaded: a check made as soon as the click returns may read the page still
    loading, or the one before it."""
    target.click()
    page.wait_for_url(re.compile(url))


def test_sign_in_and_the_overview(browser, site):
    page = signed_in(browser, site, site[1])
    follow(page, page.get_by_role("link", name="Overview"), r"/$")
    assert page.get_by_role("heading", name="Workspace").is_visible()
    shot(page, "overview.png")
    page.close()


def test_a_status_chip_shows_only_those_runs(browser, site):
    page = signed_in(browser, site, site[2])
    shot(page, "runs.png")
    page.locator(".chip[data-status=failed]").click()
    page.wait_for_url(re.compile(r"status=failed"))
    found = statuses(page)
    assert found and set(found) == {"failed"}
    assert page.locator(".chip[data-status=failed]").get_attribute("aria-current") == "true"
    page.close()


def test_filter_by_contact(browser, site):
    page = signed_in(browser, site, site[2])
    page.get_by_label("Contact").fill("user-0042")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"recipient=user-0042"))
    recipients = page.locator("table[aria-label=Runs] tbody td:nth-child(3)").all_inner_texts()
    assert recipients and set(recipients) == {"user-0042"}
    page.close()


def test_page_forward_and_back(browser, site):
    page = signed_in(browser, site, site[2])
    first = page.locator("table[aria-label=Runs] tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    follow(page, page.get_by_role("link", name="Older →"), r"[?&]after=")
    second = page.locator("table[aria-label=Runs] tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert second and not set(first) & set(second)
    follow(page, page.get_by_role("link", name="← Newer"), r"[?&]before=")
    again = page.locator("table[aria-label=Runs] tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert again == first
    page.close()


def test_open_a_run_and_see_its_trace_and_history(browser, site):
    page = signed_in(browser, site, site[2])
    page.goto(site[0] + "/runs?workflow=password-reset&recipient=user-0105")
    follow(page, page.get_by_role("link", name="run-0030"), r"/runs/run-0030$")
    assert page.get_by_role("heading", name=re.compile("Run run-0030")).is_visible()
    assert page.locator("svg[aria-label^='Step timeline']").count() == 1
    assert page.locator("table[aria-label=Steps] tbody tr").count() == 2
    history = page.locator("table[aria-label=History] tbody tr")
    # eight events of the run's and three of its message's, in log order.
    assert history.count() == 11 and "run.completed" in history.nth(8).inner_text()
    assert "message.delivered" in history.nth(10).inner_text() and "completed" in history.nth(10).inner_text()
    assert page.locator("#retry").count() == 0  # a read key sees no buttons
    shot(page, "run.png")
    page.close()


def test_retry_a_failed_run_and_see_its_status_change(browser, site):
    page = signed_in(browser, site, site[1])
    page.goto(site[0] + "/runs/run-0057")
    assert page.locator("h1 .status").inner_text() == "failed"
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#retry").click()
    page.wait_for_url(re.compile(r"done=retried"))
    assert page.locator("h1 .status").inner_text() == "pending"
    assert page.get_by_role("status").inner_text() == "The run was retried."
    assert "run.retried" in page.locator("table[aria-label=History]").inner_text()
    page.close()


def test_a_script_in_an_event_field_does_not_run(browser, site):
    page = signed_in(browser, site, site[1])
    page.goto(site[0] + "/runs/xss-run")
    assert XSS in page.locator("dl.record").inner_text()
    page.goto(site[0] + "/runs?workflow=welcome-series")
    assert XSS in page.locator("table[aria-label=Runs]").inner_text()
    assert page.evaluate("window.__xss") is None
    page.close()


def test_deliveries_and_workflow_pages(browser, site):
    page = signed_in(browser, site, site[2])
    follow(page, page.get_by_role("link", name="Deliveries"), r"/deliveries$")
    page.get_by_label("Channel").select_option("whatsapp")
    follow(page, page.get_by_role("button", name="Filter"), r"channel=whatsapp")
    channels = page.locator("table[aria-label=Deliveries] tbody td:nth-child(2)").all_inner_texts()
    assert channels and set(channels) == {"whatsapp"}
    shot(page, "deliveries.png")
    follow(page, page.get_by_role("link", name="Workflows"), r"/workflows$")
    shot(page, "workflows.png")
    follow(page, page.get_by_role("link", name="welcome-series"), r"/workflows/welcome-series$")
    assert page.locator("svg[aria-label='email funnel']").count() == 1
    assert page.locator("svg[aria-label^='Workflow graph']").count() == 1
    assert page.locator("svg[aria-label='Runs by status over time']").count() == 1
    shot(page, "workflow.png")
    page.close()
