"""Tests from the web pages' mutation review (flowledger/web/pages.py, charts.py, templates).

They pin what a user of the pages depends on and no other test checked: every stored value
(run ids, workflows, recipients, tenants, steps, messages, errors, a step's request) escaped
on every page and in every chart; sign-in, sign-out and the session's CSRF token; the
listings' filters and paging links; the charts' scaling and numbers; the security headers
and error pages.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.store import open_log
from flowledger.web import charts, pages
from tests.conftest import ev, triggered
from tests.histories import jsonl
from tests.test_security_review import csrf_of, signed_out
from tests.test_web import sign_in
from tests.test_web_review import twilio_deliveries

BROWSER = "text/html,application/xhtml+xml,*/*;q=0.8"


def _hostile_events() -> list[dict]:
    """Two runs whose every stored text is markup: <x-...> tags no page may render."""
    at = "2026-11-05T09:00:0{}Z".format

    def s(kind, run, name, n, **more):
        return ev(kind, run_id=run, step=name, step_type="send_email", attempt=1, occurred_at=at(n), **more)

    one, two = "<x-run>", "<x-run2>"
    return [
        triggered(one, workflow="<x-wf>", recipient="<x-rcp>", tenant="<x-tenant>", occurred_at=at(0)),
        ev("run.started", run_id=one, occurred_at=at(1)),
        s("step.started", one, "<x-a>", 1, request={"body": "<x-req>"}),
        ev("message.queued", message_id="<x-msg>", channel="email", recipient="<x-rcp>", run_id=one, step="<x-a>", occurred_at=at(2)),
        ev("message.failed", message_id="<x-msg>", error="<x-derr>", occurred_at=at(3)),
        s("step.failed", one, "<x-a>", 4, error="<x-serr>"),
        s("step.started", one, "<x-b>", 5),
        s("step.succeeded", one, "<x-b>", 6),
        s("step.started", one, "<x-c>", 7),
        s("step.succeeded", one, "<x-c>", 8),
        ev("run.failed", run_id=one, error="<x-err>", occurred_at=at(9)),
        # A second run skips <x-b>: its edge <x-a> → <x-c> is drawn in a lane with its names.
        triggered(two, workflow="<x-wf>", recipient={"collection": "<x-col>", "id": "<x-id>"}, occurred_at=at(0)),
        ev("run.started", run_id=two, occurred_at=at(1)),
        s("step.started", two, "<x-a>", 1),
        s("step.succeeded", two, "<x-a>", 2),
        s("step.started", two, "<x-c>", 3),
        s("step.succeeded", two, "<x-c>", 4),
    ]


@pytest.fixture
def hostile(store_path):
    log = open_log(store_path)
    ledger.append_input(log, jsonl(_hostile_events()))
    secret = keys.create_key(log.backend, "<x-key>", "admin")[1]
    log.close()
    with TestClient(create_app(store_path)) as client:
        sign_in(client, secret)
        yield client


HOSTILE_PAGES = [
    ("/", ["&lt;x-wf&gt;"]),
    ("/runs", ["&lt;x-run&gt;", "&lt;x-wf&gt;", "&lt;x-rcp&gt;", "&lt;x-err&gt;", "&lt;x-col&gt;/&lt;x-id&gt;"]),
    ("/runs?recipient=<x-rcp>", ["&lt;x-run&gt;"]),
    ("/runs?range=custom&from=<x-from>&to=<x-to>", ["&lt;x-from&gt;", "&lt;x-to&gt;"]),
    ("/runs/%3Cx-run%3E", ["&lt;x-run&gt;", "&lt;x-rcp&gt;", "&lt;x-tenant&gt;", "&lt;x-err&gt;", "&lt;x-serr&gt;", "&lt;x-derr&gt;", "&lt;x-msg&gt;", "&lt;x-req&gt;"]),
    ("/runs/%3Cx-run2%3E", ["&lt;x-col&gt;/&lt;x-id&gt;"]),
    ("/deliveries", ["&lt;x-msg&gt;", "&lt;x-rcp&gt;", "&lt;x-derr&gt;", "&lt;x-run&gt;"]),
    ("/deliveries?run_id=<x-run>&recipient=<x-rcp>", ["&lt;x-msg&gt;"]),
    ("/workflows", ["&lt;x-wf&gt;"]),
    ("/workflows/%3Cx-wf%3E", ["&lt;x-wf&gt;", "&lt;x-a&gt; → &lt;x-c&gt;"]),
]


@pytest.mark.parametrize(("path", "shown"), HOSTILE_PAGES)
def test_every_stored_value_is_escaped_on_every_page(hostile, path, shown):
    """Markup in any stored value (or a filter) is shown as text, never rendered, on each page and chart."""
    r = hostile.get(path)
    assert r.status_code == 200
    assert "<x-" not in r.text
    for text in shown:
        assert text in r.text
    assert "&lt;x-key&gt; (admin)" in r.text  # the signed-in key's name


def test_the_links_to_a_hostile_run_and_workflow_are_one_encoded_segment(hostile):
    """A run's, a workflow's and a message's ids go into links percent-encoded, never raw."""
    runs = hostile.get("/runs").text
    assert 'href="/runs/%3Cx-run%3E"' in runs
    deliveries = hostile.get("/deliveries").text
    assert 'href="/runs/%3Cx-run%3E#delivery-%3Cx-msg%3E"' in deliveries
    workflow = hostile.get("/workflows/%3Cx-wf%3E").text
    assert 'href="/runs?workflow=%3Cx-wf%3E"' in workflow
    home = hostile.get("/").text
    assert 'href="/runs?workflow=%3Cx-wf%3E&amp;status=failed"' in home


def test_the_sign_in_pages_next_is_escaped():
    """The sign-in form's hidden next (from the URL, anyone's link) cannot break out of its attribute."""
    with TestClient(create_app(":memory:")) as client:
        r = client.get("/login", params={"next": '"><x-next>'})
    assert "<x-next>" not in r.text and "&#34;&gt;&lt;x-next&gt;" in r.text


# --- charts: scaling, zero totals, single values, labels


def _bars(svg: str) -> list[float]:
    return [float(w) for w in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"', svg)]


def test_a_funnel_of_no_messages_draws_stubs_and_no_rates():
    """A channel with nothing queued: no division by zero, each bar a 1-pixel stub, rates "–"."""
    svg = charts.funnel("email", {"total_contacts": 0, "sent": 0, "delivered": 0})
    assert _bars(svg) == [1.0] * 5
    assert svg.count("0 (–)") == 5 and "%" not in svg


def test_a_funnel_scales_each_stage_to_the_queued_count_with_one_decimal_rates():
    """Bars are to scale against the queued count (the widest), rates to one decimal."""
    svg = charts.funnel("whatsapp", {"total_contacts": 3, "sent": 1, "delivered": 0, "read": 1})
    assert _bars(svg) == [480.0, 160.0, 1.0, 160.0]
    assert "3 (100.0%)" in svg and "1 (33.3%)" in svg and "0 (0.0%)" in svg
    assert re.findall(r">(\w+)</text><rect", svg) == ["queued", "sent", "delivered", "read"]


def test_a_funnels_stages_follow_the_channel():
    """Email adds opened and clicked; a channel without delivery reports has no delivered stage."""
    email = charts.funnel("email", {"total_contacts": 4, "sent": 4, "delivered": 2, "opened": 1, "clicked": 1})
    assert re.findall(r">(\w+)</text><rect", email) == ["queued", "sent", "delivered", "opened", "clicked"]
    assert "1 (25.0%)" in email
    push = charts.funnel("push", {"total_contacts": 2, "sent": 2})
    assert re.findall(r">(\w+)</text><rect", push) == ["queued", "sent"]


def _step(name, start, end, status="completed", seconds=None):
    return {"step": name, "attempt": 1, "started_at": f"2026-11-05T09:00:{start:02d}+00:00",
            "finished_at": None if end is None else f"2026-11-05T09:00:{end:02d}+00:00",
            "duration_seconds": seconds if seconds is not None else (None if end is None else end - start), "status": status}


def test_a_timeline_of_one_instant_step_is_drawn_on_a_one_second_scale():
    """One step taking no time: no division by zero, a 2-pixel bar, the scale says 1 s."""
    svg = charts.timeline([_step("a", 0, 0)], "2026-11-05T09:00:30+00:00")
    assert _bars(svg) == [2.0] and ">1 s</text>" in svg and "a #1: completed, 0 s" in svg


def test_a_timeline_places_steps_to_scale_and_runs_open_ones_to_now():
    """Each bar starts where its step started on one scale; an open attempt runs to now, "so far"."""
    svg = charts.timeline([_step("a", 0, 10), _step("b", 10, None, status="idle")], "2026-11-05T09:00:20+00:00")
    assert re.findall(r'<rect x="([\d.]+)"', svg) == ["200.0", "580.0"]
    assert _bars(svg) == [380.0, 380.0] and ">20 s</text>" in svg
    assert "b #1: idle (the run is paused), 10 s so far" in svg


def test_runs_over_time_stacks_to_the_busiest_bucket_and_labels_totals():
    """The busiest bucket's stack is full height (140 px); a bucket of one status still counts; totals above."""
    svg = charts.over_time([("2026-11-05", "completed", 3), ("2026-11-05", "failed", 1), ("2026-11-06", "paused", 2)])
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" fill', svg)]
    assert heights == [105.0, 35.0, 70.0]
    assert "2026-11-06: 2 paused" in svg and ">4</text>" in svg and ">2</text>" in svg
    assert ">11-05</text>" in svg


def test_runs_over_time_of_one_value_and_of_repeated_rows():
    """One run draws one full bar; rows repeating a day and status add up."""
    one = charts.over_time([("2026-11-05", "running", 1)])
    assert 'height="140.0"' in one
    summed = charts.over_time([("2026-11-05", "failed", 1), ("2026-11-05", "failed", 2), ("2026-11-07", "failed", 1)])
    assert "2026-11-05: 3 failed" in summed and 'height="140.0"' in summed


def test_runs_over_time_turns_days_into_months_only_past_the_most_bars():
    """Up to MAX_BARS days stay days; one more makes months; more months than that make years."""
    from datetime import date, timedelta

    days = [((date(2026, 1, 1) + timedelta(days=k)).isoformat(), "completed", 1) for k in range(charts.MAX_BARS)]
    assert charts.over_time(days).count("<rect") == charts.MAX_BARS
    more = days + [((date(2026, 1, 1) + timedelta(days=charts.MAX_BARS)).isoformat(), "completed", 1)]
    months = charts.over_time(more)
    assert months.count("<rect") == 3 and ">2026-01</text>" in months and ">31</text>" in months
    many = [(f"{2000 + k // 12}-{k % 12 + 1:02d}-01", "failed", 1) for k in range(12 * 6)]
    years = charts.over_time(many)
    assert years.count("<rect") == 6 and ">2000</text>" in years and ">12</text>" in years


def test_a_graph_box_shows_names_up_to_its_width_whole():
    """A name of exactly BOX_CHARACTERS fits whole; one more is cut with an ellipsis."""
    fits = "n" * charts.BOX_CHARACTERS
    longer = "m" * (charts.BOX_CHARACTERS + 1)
    node = {"step_type": "send_email", "completed": 1, "failed": 0, "running": 0}
    svg = charts.graph({"nodes": [{"step": fits, **node}, {"step": longer, **node}], "edges": []})
    assert f">{fits}</text>" in svg and f">{'m' * (charts.BOX_CHARACTERS - 1)}…</text>" in svg


def test_a_graph_orders_nodes_from_the_start_along_the_busiest_edges():
    """Nodes nobody leads to come first, then the targets of the busiest edges; a skip gets a lane."""
    node = {"step_type": "send_email", "completed": 1, "failed": 0, "running": 0}
    edge = {"failed": 0, "running": 0}
    stats = {
        "nodes": [{"step": s, **node} for s in ("z-end", "b-quiet", "a-busy", "start")],
        "edges": [
            {"from": "start", "to": "b-quiet", "completed": 1, **edge},
            {"from": "start", "to": "a-busy", "completed": 5, **edge},
            {"from": "a-busy", "to": "z-end", "completed": 5, **edge},
        ],
    }
    svg = charts.graph(stats)
    assert re.findall(r'font-weight="600">([^<]+)<', svg) == ["start", "a-busy", "b-quiet", "z-end"]
    # start → b-quiet skips a-busy: drawn in a lane below, with its names
    assert svg.count("<polyline") == 2 and "start → b-quiet: 1 / 0 / 0" in svg


# --- sign-in, sign-out, sessions, CSRF


@pytest.fixture
def site(store_path):
    log = open_log(store_path)
    with open("examples/welcome-series.jsonl", "rb") as f:
        ledger.append_input(log, f)
    secrets = {scope: keys.create_key(log.backend, f"{scope}-key", scope)[1] for scope in ("read", "admin")}
    log.close()
    with TestClient(create_app(store_path, public_url="https://ops.example/flow")) as client:
        yield client, secrets, store_path


def test_signing_out_clears_the_cookie(site):
    """Sign-out tells the browser to drop the session cookie, as well as ending the session."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    r = client.post("/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{pages.COOKIE}=") and ("Max-Age=0" in cookie or "expires=" in cookie.lower())
    assert signed_out(client)


def test_a_page_has_a_sign_out_form_carrying_the_sessions_csrf_token(site):
    """Every signed-in page's sign-out form posts the session's CSRF token, so signing out works."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    token = client.cookies[pages.COOKIE]
    for path in ("/", "/runs", "/deliveries", "/workflows"):
        form = client.get(path).text.split('action="/logout"')[1].split("</form>")[0]
        assert f'name="csrf" value="{pages.csrf_token(token)}"' in form


def test_the_csrf_token_differs_between_sessions():
    """Two sessions' CSRF tokens differ: one session's form token is no good in another."""
    assert pages.csrf_token("fl_sess_a") != pages.csrf_token("fl_sess_b")
    assert pages.csrf_matches(pages.csrf_token("fl_sess_a"), "fl_sess_a")
    assert not pages.csrf_matches(pages.csrf_token("fl_sess_a"), "fl_sess_b")


def test_a_key_pasted_with_spaces_around_it_signs_in(site):
    """The key as pasted (a newline or spaces around it) still signs in."""
    client, secrets, _ = site
    r = client.post("/login", data={"api_key": f"  {secrets['read']}\n", "next": "/runs"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/runs"


@pytest.mark.parametrize("target", ["/\\evil.example/", "//evil.example", "evil.example/x", "javascript:alert(1)"])
def test_sign_in_never_redirects_off_the_site(site, target):
    """After signing in, a "next" that a browser would read as another site (or a script) goes home instead."""
    client, secrets, _ = site
    r = client.post("/login", data={"api_key": secrets["read"], "next": target}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_a_revoked_key_cannot_sign_in(site):
    """A revoked key is refused (401) and gets no session."""
    client, secrets, store_path = site
    log = open_log(store_path)
    key = keys.verify(log.backend, secrets["read"])
    keys.revoke_key(log.backend, key.id)
    log.close()
    r = client.post("/login", data={"api_key": secrets["read"]}, follow_redirects=False)
    assert r.status_code == 401 and "set-cookie" not in r.headers


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Sec-Fetch-Site": "same-site"}, False),
        ({"Sec-Fetch-Site": "none"}, True),
        ({"Origin": "https://ops.example"}, True),  # the public URL's host, behind a proxy
        ({"Origin": "http://testserver"}, True),
        ({"Origin": "http://testserver.evil.example"}, False),
        ({"Origin": "http://[::1"}, False),
        ({}, True),
    ],
)
def test_sign_in_is_taken_only_from_this_sites_pages(site, headers, allowed):
    """A sign-in posted from another site (even a sibling one) is a 403; this site's own, or its public URL's, is taken."""
    client, secrets, _ = site
    r = client.post("/login", data={"api_key": secrets["read"]}, headers=headers, follow_redirects=False)
    if allowed:
        assert r.status_code == 303 and pages.COOKIE in r.headers["set-cookie"]
    else:
        assert r.status_code == 403 and "set-cookie" not in r.headers


def test_a_signed_out_visit_comes_back_with_its_filters(site):
    """Sent to sign in from a filtered listing, the next address keeps the query."""
    client, _, _ = site
    r = client.get("/runs?status=failed&workflow=win-back", follow_redirects=False)
    assert r.headers["location"] == "/login?next=%2Fruns%3Fstatus%3Dfailed%26workflow%3Dwin-back"


def test_a_cookie_of_no_session_is_signed_out(site):
    """A made-up or ended session token in the cookie signs nobody in."""
    client, _, _ = site
    client.cookies.set(pages.COOKIE, "fl_sess_made-up")
    assert signed_out(client)


def test_a_command_is_recorded_as_done_by_the_signed_in_key(site):
    """A retry from the page is recorded with the key's name as its actor (web:NAME)."""
    client, secrets, _ = site
    sign_in(client, secrets["admin"])
    client.post("/runs/run-0054/retry", data={"csrf": csrf_of(client)})
    assert "by web:admin-key" in client.get("/runs/run-0054").text


def test_a_read_key_sees_no_cancel_button_and_an_admin_sees_it_only_where_it_works(site):
    """Cancel shows for admins on pending, running and paused runs only; retry on failed runs only."""
    client, secrets, store_path = site
    sign_in(client, secrets["admin"])
    statuses = {}
    for status in ("pending", "running", "paused", "completed", "failed", "cancelled"):
        found = re.search(r'<tr data-run="([^"]+)">', client.get("/runs", params={"status": status}).text)
        if found:
            statuses[status] = found.group(1)
    assert {"running", "paused", "completed", "failed", "cancelled"} <= set(statuses)
    for status, run_id in statuses.items():
        page = client.get(f"/runs/{run_id}").text
        assert ('id="cancel"' in page) == (status in ("pending", "running", "paused")), status
        assert ('id="retry"' in page) == (status == "failed"), status
    sign_in(client, secrets["read"])
    for run_id in statuses.values():
        page = client.get(f"/runs/{run_id}").text
        assert 'id="cancel"' not in page and 'id="retry"' not in page


# --- listings: allow-listed filters, paging links, counts


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-run="([^"]+)">', html)


def _link(html: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', html)
    return found.group(1).replace("&amp;", "&") if found else None


def _chips(html: str) -> dict[str, int]:
    return {s: int(n) for s, n in re.findall(r'data-status="(\w+)">[^<]*<span class="count">(\d+)</span>', html)}


def test_a_page_lists_25_runs_and_pages_on_and_back_keeping_its_filters(site):
    """25 runs a page; Older and Newer keep the status filter and lead to the same pages again."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    first = client.get("/runs", params={"status": "completed"}).text
    assert len(_rows(first)) == 25 and _link(first, "prev") is None
    older = _link(first, "next")
    assert "status=completed" in older
    second = client.get(older).text
    assert len(_rows(second)) == 25 and not set(_rows(second)) & set(_rows(first))
    assert all('class="status completed"' in row for row in second.split("<tr data-run=")[1:])
    newer = _link(second, "prev")
    assert "status=completed" in newer
    assert _rows(client.get(newer).text) == _rows(first)


def test_the_stuck_and_date_filters_stay_on_the_paging_links(site, monkeypatch):
    """Older keeps the stuck filter and a custom range's from and to."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    monkeypatch.setattr(pages, "_now", lambda: pages.datetime(2027, 1, 1, tzinfo=pages.UTC))
    page = client.get("/runs", params={"range": "custom", "from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}).text
    older = _link(page, "next")
    assert "from=2026-11-01" in older and "to=2026-12-01" in older and "range=custom" in older


def test_the_deliveries_paging_keeps_its_filters(site):
    """The deliveries' Older and Newer keep the channel filter; 25 a page."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    first = client.get("/deliveries", params={"channel": "email"}).text
    older = _link(first, "next")
    assert older is not None and "channel=email" in older
    second = client.get(older).text
    assert second.count("<tr><td>") == 25 and "<td>sms</td>" not in second and "<td>email</td>" in second
    assert "channel=email" in _link(second, "prev")
    assert 'rel="prev"' in second


def test_values_outside_the_allow_lists_are_ignored_not_applied(site):
    """A status, channel or delivery status not on the list is as if none were given (all listed)."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    assert _rows(client.get("/runs", params={"status": "bogus"}).text) == _rows(client.get("/runs").text)
    everything = client.get("/deliveries").text.count("<tr><td>")
    assert everything == 25
    assert client.get("/deliveries", params={"channel": "fax"}).text.count("<tr><td>") == everything
    assert client.get("/deliveries", params={"status": "lost"}).text.count("<tr><td>") == everything


def test_a_recipient_of_exactly_the_longest_length_is_taken_and_one_more_is_refused(site):
    """A contact filter of MAX_CONTACT_LENGTH characters is a filter; one longer lists and counts nothing, saying why."""
    from flowledger import queries

    client, secrets, _ = site
    sign_in(client, secrets["read"])
    longest = "u" * queries.MAX_CONTACT_LENGTH
    for path in ("/runs", "/deliveries"):
        ok = client.get(path, params={"recipient": longest}).text
        assert "A recipient is at most" not in ok
        refused = client.get(path, params={"recipient": longest + "u"}).text
        assert "A recipient is at most" in refused
    refused = client.get("/deliveries", params={"recipient": longest + "u"}).text
    assert refused.count("<tr><td>") == 0 and "No deliveries match" in refused


def test_a_contact_filter_is_trimmed(site):
    """Spaces around a pasted recipient are dropped: the filter still finds the recipient's runs."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    assert len(_rows(client.get("/runs", params={"recipient": "  user-0105 "}).text)) == 1


def test_the_last_24_hours_lists_only_runs_created_in_them(site, monkeypatch):
    """range=24h lists the runs created in the day before now, and the chips count those."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    monkeypatch.setattr(pages, "_now", lambda: pages.datetime(2026, 11, 5, 12, tzinfo=pages.UTC))
    page = client.get("/runs", params={"range": "24h"}).text
    created = re.findall(r"<td>(2026-[\d-]+ [\d:]+)[\d.]*Z</td>\s*<td>", page)
    assert created and min(created) >= "2026-11-04 12:00:00"
    assert _chips(page)["all"] < _chips(client.get("/runs").text)["all"]


def test_the_chips_count_the_chosen_workflow_alone(site):
    """With a workflow chosen, each chip counts that workflow's runs, as its link lists them."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    page = client.get("/runs", params={"workflow": "win-back"}).text
    chips = _chips(page)
    assert chips["all"] < _chips(client.get("/runs").text)["all"]
    completed = client.get("/runs", params={"workflow": "win-back", "status": "completed"}).text
    assert chips["completed"] == _chips(completed)["completed"] and chips["all"] == _chips(completed)["all"]


def test_the_overview_counts_rehearsal_runs_as_the_run_history_lists_them(site):
    """A rehearsal run counts in the overview's cards, as the run history it links to lists it."""
    client, secrets, _ = site
    sign_in(client, secrets["admin"])
    before = int(re.search(r'<div class="n">(\d+)</div><div class="label">runs</div>', client.get("/").text).group(1))
    event = triggered("rehearsal-1", workflow="win-back", recipient="user-1", trigger={"source": "rehearsal"})
    assert client.post("/v1/events", json=[event], headers={"X-API-Key": secrets["admin"]}).status_code == 200
    after = int(re.search(r'<div class="n">(\d+)</div><div class="label">runs</div>', client.get("/").text).group(1))
    assert after == before + 1


# --- who gets a page, form limits, errors


def _request(path: str, accept: str):
    from starlette.requests import Request

    return Request({"type": "http", "method": "GET", "path": path, "headers": [(b"accept", accept.encode())], "query_string": b""})


@pytest.mark.parametrize(
    ("path", "accept", "wanted"),
    [
        ("/nope", "text/html", True),
        ("/nope", "application/json, text/html;q=0.5", True),  # not only the first kind counts
        ("/nope", "text/html;q=0.001", True),
        ("/nope", "text/html;q=0", False),
        ("/nope", "text/html;q=none", False),  # no weight a browser sends: not asked for
        ("/v1/runs", "text/html", False),
        ("/v1", "text/html", False),
        ("/v1x", "text/html", True),  # only /v1 and under it are the API's
    ],
)
def test_a_page_is_for_whoever_accepts_html_outside_the_api(path, accept, wanted):
    """An error is a page for a client accepting text/html (any weight above 0) outside /v1, else the API's document."""
    assert pages.wants_page(_request(path, accept)) is wanted


def _post_through_form_limit(headers: list[tuple[bytes, bytes]], path: str = "/login", method: str = "POST") -> int:
    import asyncio

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b"", "root_path": ""}
    asyncio.run(pages.FormLimit(app)(scope, receive, send))
    return sent[0]["status"]


def test_a_form_of_exactly_the_limit_is_read_and_one_byte_more_is_a_413():
    """FORM_LIMIT bytes pass to the page; FORM_LIMIT + 1 is refused before it is read; no length is a 411."""
    limit = str(pages.FORM_LIMIT).encode()
    assert _post_through_form_limit([(b"content-length", limit)]) == 299
    assert _post_through_form_limit([(b"content-length", str(pages.FORM_LIMIT + 1).encode())]) == 413
    assert _post_through_form_limit([]) == 411
    assert _post_through_form_limit([(b"content-length", b"-1")]) == 411
    # The API's paths bound their own bodies; other methods carry no form.
    assert _post_through_form_limit([], path="/v1/events") == 299
    assert _post_through_form_limit([], method="PUT") == 299


def test_an_error_page_is_hardened_and_shows_no_internals(site):
    """A page nobody serves is the site's own 404 page, with the security headers, and no traceback."""
    client, _, _ = site
    r = client.get("/nope", headers={"Accept": BROWSER})
    assert r.status_code == 404 and r.headers["x-frame-options"] == "DENY" and "Traceback" not in r.text
    assert r.headers["x-content-type-options"] == "nosniff" and "form-action 'self'" in r.headers["content-security-policy"]


def test_an_unknown_run_or_workflow_is_a_404_page_for_the_signed_in_key(site):
    """A run or workflow nobody has is a 404 page (still signed in, with the menu), not a 200 or a 500."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    for path in ("/runs/no-such-run", "/workflows/no-such-workflow"):
        r = client.get(path)
        assert r.status_code == 404 and "read-key (read)" in r.text and "Traceback" not in r.text


def test_a_nul_in_a_run_id_of_the_path_is_a_422_page(site):
    """A run id with NUL in the path is a 422 page saying so (not a store error)."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    r = client.get("/runs/a%00b")
    assert r.status_code == 422 and "NUL character" in r.text


def test_a_store_that_cannot_answer_is_a_503_page_to_reload(site, monkeypatch):
    """A store the database server lost is a 503 page with Retry-After, saying what failed."""
    from flowledger.errors import StoreUnavailable

    client, secrets, _ = site
    sign_in(client, secrets["read"])

    def lost(*args, **kwargs):
        raise StoreUnavailable("connection refused <db>")

    monkeypatch.setattr(ledger, "query", lost)
    r = client.get("/runs")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "The store could not answer: connection refused &lt;db&gt;" in r.text and "Traceback" not in r.text


# --- the overview, a run's page, a workflow's page


def test_the_workflow_page_shows_the_apis_progress_percentage_and_success_rate(site):
    """A workflow's cards show its finished share and success rate as the API answers them."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    api = client.get("/v1/workflows/win-back", headers={"X-API-Key": secrets["read"]}).json()
    page = client.get("/workflows/win-back").text
    progress = api["progress"]
    assert f'{progress["processed"]} / {progress["total"]}</div><div class="label">runs finished ({progress["percentage"]}%)' in page
    assert progress["processed"] != progress["percentage"]
    assert f'<div class="n">{api["totals"]["overall_success_rate"]}%</div><div class="label">success' in page


def test_figures_of_nothing_are_a_dash_and_amounts_are_joined_by_currency():
    """No rate is "–" (never 0 or None); amounts in several currencies are each given, sorted."""
    assert pages._figure(None) == "–"
    assert pages._figure({"USD": 1.5, "EUR": 2}) == "2 EUR + 1.5 USD"
    assert pages._cost({"costs_by_currency": {"USD": 1, "EUR": 2}, "total_cost": None, "currency": None}) == "2 EUR + 1 USD"
    assert pages._cost({"costs_by_currency": None, "total_cost": 0.25, "currency": "USD"}) == "0.25 USD"
    assert pages._cost({"costs_by_currency": None, "total_cost": None, "currency": None}) == "–"


def test_times_show_without_a_zero_fraction(site):
    """Times read "2026-11-01 02:41:36Z", not the stored microseconds of zeros."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    page = client.get("/runs/run-0001").text
    assert "<dd>2026-11-01 02:41:36Z</dd>" in page and ".000000" not in page


def test_a_refused_command_says_why_on_the_runs_page(site):
    """After a refused cancel the run's page says it was not cancelled (a fixed text for the code)."""
    client, secrets, _ = site
    sign_in(client, secrets["admin"])
    r = client.get("/runs/run-0001", params={"refused": "cancel"})
    assert pages.REFUSALS["cancel"] in r.text
    assert "The run was cancelled." in client.get("/runs/run-0001", params={"done": "cancelled"}).text


def test_the_overview_says_more_than_the_shown_count_of_webhooks_set_aside_only_past_it(site, store_path, monkeypatch):
    """Set-aside webhooks are counted up to SET_ASIDE_SHOWN; "More than" only past it."""
    from flowledger.store.inbox import open_inbox

    client, secrets, _ = site
    sign_in(client, secrets["read"])
    monkeypatch.setattr(pages, "SET_ASIDE_SHOWN", 2)
    prepared = twilio_deliveries(3)
    log = open_log(store_path)
    inbox = open_inbox(log.backend)
    try:
        for item in prepared.items:
            inbox.put([item], prepared.received_at)
        for n in (1, 2):
            inbox.set_aside(inbox.oldest(1)[0].seq, "unreadable", prepared.received_at)
        page = client.get("/").text
        assert "2 webhooks were set aside" in page and "More than" not in page
        inbox.set_aside(inbox.oldest(1)[0].seq, "unreadable", prepared.received_at)
        assert "More than 2 webhooks were set aside" in client.get("/").text
    finally:
        inbox.close()
        log.close()


def test_the_stuck_chip_counts_the_contacts_stuck_runs_alone(site, monkeypatch):
    """With a contact filter, the Stuck chip counts that recipient's stuck runs, not everyone's."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    monkeypatch.setattr(pages, "_now", lambda: pages.datetime(2030, 1, 1, tzinfo=pages.UTC))
    everyone = client.get("/runs").text
    stuck_all = int(re.search(r'data-filter="stuck"[^>]*>Stuck <span class="count">(\d+)<', everyone).group(1))
    assert stuck_all > 0
    page = client.get("/runs", params={"recipient": "user-0105"}).text
    chips = _chips(page)
    expected = chips["pending"] + chips["running"]
    assert int(re.search(r'data-filter="stuck"[^>]*>Stuck <span class="count">(\d+)<', page).group(1)) == expected < stuck_all


def test_the_runs_over_time_chart_draws_a_bar_a_day_up_to_the_most_bars(store_path):
    """A workflow run on 20 different days draws 20 day bars (days become months only past MAX_BARS)."""
    log = open_log(store_path)
    events = [triggered(f"r{d}", workflow="daily", occurred_at=f"2026-10-{d:02d}T09:00:00Z") for d in range(1, 21)]
    ledger.append_input(log, jsonl(events))
    secret = keys.create_key(log.backend, "r", "read")[1]
    log.close()
    with TestClient(create_app(store_path)) as client:
        sign_in(client, secret)
        page = client.get("/workflows/daily").text
    chart = page.split('aria-label="Runs by status over time"')[1].split("</svg>")[0]
    assert chart.count("<rect") == 20 and ">10-01</text>" in chart and ">10-20</text>" in chart


def test_signed_in_pages_are_never_stored_by_the_browser(site):
    """Pages with runs, recipients and errors say Cache-Control: no-store: signing out leaves no copy for Back."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    for path in ("/", "/runs", "/runs/run-0001", "/deliveries", "/workflows", "/workflows/win-back"):
        assert "no-store" in client.get(path).headers.get("cache-control", ""), path


@pytest.mark.parametrize("path", ["/runs", "/deliveries"])
def test_a_cursor_that_is_not_one_is_a_page_saying_so(site, path):
    """A made-up paging cursor lists nothing and says why on the page (a 200, not a server error)."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    r = client.get(path, params={"after": "not-a-cursor"})
    assert r.status_code == 200 and 'class="error"' in r.text and "Traceback" not in r.text
    assert "<tr data-run=" not in r.text and "<tr><td>msg-" not in r.text


def test_a_workflow_without_messages_has_no_success_rate(store_path):
    """A workflow whose runs sent nothing shows "–" for its success rate (not "None" or 0%)."""
    log = open_log(store_path)
    ledger.append_input(log, jsonl([triggered("quiet-1", workflow="quiet")]))
    secret = keys.create_key(log.backend, "r", "read")[1]
    log.close()
    with TestClient(create_app(store_path)) as client:
        sign_in(client, secret)
        page = client.get("/workflows/quiet").text
    assert '<div class="n">–</div><div class="label">success' in page


def test_an_analysts_copy_shows_an_admin_no_retry_or_cancel_button(tmp_path):
    """On a copy made by rebuild --into (which refuses commands) a failed or running run has no buttons."""
    from click.testing import CliRunner

    from flowledger.cli import cli

    source, into = str(tmp_path / "source.db"), str(tmp_path / "copy.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", source, "append", "examples/welcome-series.jsonl"]).exit_code == 0
    assert runner.invoke(cli, ["--store", source, "rebuild", "--into", into]).exit_code == 0
    log = open_log(into)
    secret = keys.create_key(log.backend, "analyst", "admin")[1]
    log.close()
    with TestClient(create_app(into)) as client:
        sign_in(client, secret)
        for status in ("failed", "running", "paused"):
            run_id = _rows(client.get("/runs", params={"status": status}).text)[0]
            page = client.get(f"/runs/{run_id}").text
            assert "analyst's copy" in page and 'id="retry"' not in page and 'id="cancel"' not in page, status


def test_with_the_stuck_filter_only_the_stuck_chip_is_marked_current(site):
    """Listing stuck runs marks the Stuck chip alone as current, not "All" beside it."""
    client, secrets, _ = site
    sign_in(client, secrets["read"])
    page = client.get("/runs", params={"stuck": "1"}).text
    assert re.findall(r'aria-current="true"[^>]*data-(?:status|filter)="(\w+)"', page) == ["stuck"]
    plain = client.get("/runs").text
    assert re.findall(r'aria-current="true"[^>]*data-(?:status|filter)="(\w+)"', plain) == ["all"]


def test_why_the_follower_stopped_is_escaped_in_the_banner(store_path, monkeypatch):
    """The banner's reason (an error's text, which may quote stored values) is shown as text."""
    import threading

    log = open_log(store_path)
    secret = keys.create_key(log.backend, "reader", "read")[1]
    log.close()
    stopped = threading.Event()

    def broken_follow(*args, **kwargs):
        stopped.set()
        raise RuntimeError("a fold went wrong on <x-why>")

    monkeypatch.setattr(ledger, "follow", broken_follow)
    with TestClient(create_app(store_path, follow=True)) as client:
        assert stopped.wait(10)
        sign_in(client, secret)
        page = client.get("/runs").text
    assert "a fold went wrong on &lt;x-why&gt;" in page and "<x-why>" not in page


def test_a_back_edge_of_the_graph_runs_in_a_lane_below_never_behind_the_boxes():
    """An edge back to an earlier node (a retry loop) is drawn below the boxes, not as a line across them."""
    node = {"step_type": "send_email", "completed": 1, "failed": 0, "running": 0}
    edge = {"failed": 0, "running": 0}
    stats = {
        "nodes": [{"step": s, **node} for s in ("start", "end")],
        "edges": [{"from": "start", "to": "end", "completed": 2, **edge}, {"from": "end", "to": "start", "completed": 1, **edge}],
    }
    svg = charts.graph(stats)
    assert svg.count("<line") == 1 and svg.count("<polyline") == 1 and "end → start: 1 / 0 / 0" in svg
