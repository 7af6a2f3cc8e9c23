"""The web review's loose ends: the runs-over-time chart read from counts by hour, one catch-up a
page, a browser's 404 as a page, an idle attempt called idle, a contact found as shown."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

import pytest

from flowledger import ledger, queries
from flowledger.projections.projector import Projector
from flowledger.web import charts
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, _schema_url, ev, triggered
from tests.histories import jsonl
from tests.test_web import add_events, sign_in, site  # noqa: F401  # site: the fixture

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
"""What Chromium sends as Accept for a page."""


@pytest.fixture(params=["sqlite", "postgres"])
def any_log(request, store_path):
    """An open log on SQLite, then on PostgreSQL (in a schema of its own, dropped after)."""
    if request.param == "sqlite":
        url = store_path
    else:
        if POSTGRES_UNREACHABLE:
            pytest.skip(POSTGRES_UNREACHABLE)
        schemas = _schema_url()
        url = next(schemas)
        request.addfinalizer(lambda: next(schemas, None))
    log = open_log(url)
    yield log
    log.close()


# 1. The runs-over-time chart: every view of a workflow's page asks it, over all its runs.


RUNS_OVER_TIME_SEEK = "SEARCH h USING PRIMARY KEY (workflow=? AND hour>? AND hour<?)"
"""How the chart reads the workflow's runs: its hours' counts, a range of them a bucket."""


@pytest.mark.parametrize("buckets", [1, 62])
def test_the_runs_over_time_chart_sums_the_workflows_counts_by_hour(log, buckets):
    # Every view of a workflow's page draws it, over all the workflow's runs (a million, say):
    # never a run's row nor an index entry of one, only the counts by hour of creation (the
    # group's sort is of those).
    Projector(log.backend).ensure_tables()
    sql = queries.RUNS_OVER_TIME.format(buckets=",".join(["(?, ?, ?)"] * buckets))
    with log.backend.transaction(write=False) as c:
        c.execute("EXPLAIN QUERY PLAN " + sql, [*["2026-11-01"] * 3 * buckets, "w"])
        plan = [row[3] for row in c.fetchall()]
    assert [step for step in plan if "SEARCH" in step or "SCAN" in step and "CONSTANT" not in step] == [
        "SCAN b", RUNS_OVER_TIME_SEEK
    ], plan
    assert not any("runs" in step for step in plan), plan


def test_runs_over_time_counts_each_day_and_status_of_the_workflow_alone(any_log):
    log = any_log
    events = [
        triggered("a1", workflow="w", occurred_at="2026-11-01T23:59:59Z"),
        triggered("a2", workflow="w", occurred_at="2026-11-01T00:00:00Z"),
        ev("run.started", run_id="a2", occurred_at="2026-11-01T00:00:01Z"),
        ev("run.failed", run_id="a2", error="x", occurred_at="2026-11-01T00:00:02Z"),
        triggered("a3", workflow="w", occurred_at="2026-11-03T08:00:00+02:00"),  # 06:00 UTC
        triggered("b1", workflow="other", occurred_at="2026-11-01T10:00:00Z"),
    ]
    ledger.append_input(log, jsonl(events))
    rows = ledger.query(log, queries.runs_over_time, "w")
    assert rows == [("2026-11-01", "pending", 1), ("2026-11-01", "failed", 1), ("2026-11-03", "pending", 1)]
    assert ledger.query(log, queries.runs_over_time, "nobody") == []


@pytest.mark.parametrize(
    "times, buckets",
    [
        (["2026-11-01", "2027-01-01"], ["2026-11-01", "2027-01-01"]),  # 62 days: days
        (["2026-11-01", "2027-01-02"], ["2026-11", "2027-01"]),  # 63: months
        (["2021-01-01", "2026-02-28"], ["2021-01", "2026-02"]),  # 62 months
        (["2021-01-01", "2026-03-01"], ["2021", "2026"]),  # 63: years
        (["1900-06-01", "1950-01-01", "2026-03-01"], ["1900", "1948", "2026"]),  # 127 years: three a bar
    ],
)
def test_runs_over_time_draws_at_most_62_bars_and_counts_every_run(any_log, times, buckets):
    log = any_log
    events = [triggered(f"r{k}", workflow="w", occurred_at=f"{t}T12:00:00Z") for k, t in enumerate(times)]
    ledger.append_input(log, jsonl(events))
    rows = ledger.query(log, queries.runs_over_time, "w", max_bars=62)
    assert rows == [(b, "pending", 1) for b in buckets]
    svg = charts.over_time(rows)
    assert len(re.findall(r"<title>", svg)) == len(buckets)


@pytest.mark.parametrize("seed", [1, 2])
def test_runs_over_time_from_the_counts_by_hour_are_the_runs_counted_one_by_one(any_log, seed):
    # Runs of two workflows at random times over a span of days, months or years, moved on
    # to other statuses in later batches (their hours' counts moving with them): each
    # bucket's count by status is that of the workflow's runs created in it, now.
    log = any_log
    rng = random.Random(seed)
    span_days = rng.choice([3, 50, 400, 6000])
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    times = {f"r{k}": start + timedelta(seconds=rng.randrange(span_days * 86400)) for k in range(120)}
    made = [triggered(r, workflow=rng.choice(["w", "other"]), occurred_at=at.isoformat()) for r, at in times.items()]
    ledger.append_input(log, jsonl(made))
    ledger.catch_up(log)
    later = []
    for r, at in times.items():
        fate = rng.choice(["pending", "running", "completed", "failed", "cancelled"])
        if fate == "pending":
            continue
        later.append(ev("run.started", run_id=r, occurred_at=(at + timedelta(minutes=5)).isoformat()))
        if fate != "running":
            done = {"failed": {"error": "x"}, "cancelled": {"by": "operator"}}.get(fate, {})
            later.append(ev(f"run.{fate}", run_id=r, occurred_at=(at + timedelta(hours=3)).isoformat(), **done))
    ledger.append_input(log, jsonl(later))
    for workflow in ("w", "other"):
        rows = ledger.query(log, queries.runs_over_time, workflow, max_bars=rng.choice([5, 62]))
        buckets = sorted({label for label, _, _ in rows})
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT created_at, status FROM runs WHERE workflow = ?", [workflow])
            runs = c.fetchall()
        expected: dict[tuple[str, str], int] = {}
        for created, status in runs:
            label = max((b for b in buckets if created >= b), default=buckets[0])
            expected[label, status] = expected.get((label, status), 0) + 1
        assert sorted(rows) == sorted((b, st, n) for (b, st), n in expected.items())
        assert sum(n for _, _, n in rows) == len(runs) > 0


# 2. One catch-up a request.


@pytest.fixture
def catch_ups(monkeypatch):
    calls = []
    real = Projector.catch_up

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Projector, "catch_up", counted)
    return calls


def test_each_page_catches_the_views_up_once(site, catch_ups):  # noqa: F811
    client, secrets = site
    sign_in(client, secrets["read"])
    for path in (
        "/",
        "/runs",
        "/runs?recipient=user-0042",
        "/runs?range=7d&workflow=welcome-series",
        "/runs/run-0054",
        "/deliveries",
        "/workflows",
        "/workflows/welcome-series",
    ):
        catch_ups.clear()
        assert client.get(path).status_code == 200, path
        assert len(catch_ups) == 1, (path, len(catch_ups))


def test_a_page_still_shows_what_was_appended_just_before(site):  # noqa: F811
    client, secrets = site
    sign_in(client, secrets["read"])
    assert client.get("/workflows/late-wf").status_code == 404
    add_events(client, secrets, [triggered("late-1", workflow="late-wf", recipient="u-late", occurred_at="2026-11-05T09:00:00Z")])
    page = client.get("/workflows/late-wf").text
    assert "2026-11-05: 1 pending" in page
    assert 'data-run="late-1"' in client.get("/runs", params={"recipient": "u-late"}).text


# 3. A page nobody made: HTML to a browser, the API's problem document to everyone else.


def test_an_unknown_page_is_a_page_to_a_browser(site):  # noqa: F811
    client, _ = site
    r = client.get("/nope/<b>x</b>", headers={"Accept": BROWSER})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "/nope/&lt;b&gt;x&lt;/b&gt;" in r.text and "<b>x</b>" not in r.text
    assert 'href="/"' in r.text
    r = client.post("/workflows", headers={"Accept": BROWSER})
    assert r.status_code == 405 and r.headers["content-type"].startswith("text/html")
    assert r.headers["allow"] == "GET, HEAD" and "POST is not allowed at /workflows" in r.text


@pytest.mark.parametrize(
    "method, path, accept",
    [
        ("get", "/nope", None),  # a client that does not ask for HTML (curl sends */*)
        ("get", "/nope", "*/*"),
        ("get", "/nope", "application/json"),
        ("get", "/nope", "text/html;q=0, */*"),
        ("get", "/v1/nothing", BROWSER),  # the API's paths answer the API's way, whoever asks
        ("get", "/v1", BROWSER),
        ("delete", "/v1/runs", BROWSER),
    ],
)
def test_the_api_and_clients_not_asking_for_html_keep_the_problem_document(site, method, path, accept):  # noqa: F811
    client, secrets = site
    headers = {"X-API-Key": secrets["read"], **({"Accept": accept} if accept else {})}
    r = getattr(client, method)(path, headers=headers)
    assert r.status_code in (404, 405) and r.headers["content-type"] == "application/problem+json", r.text
    assert path in r.json()["detail"]


# 4. A paused run's open attempt.


def test_an_idle_attempts_tooltip_says_idle_not_running():
    steps = [
        {"step": "email", "attempt": 1, "status": "completed", "started_at": "2026-11-05T09:00:00+00:00",
         "finished_at": "2026-11-05T09:00:02+00:00", "duration_seconds": 2.0},
        {"step": "wait", "attempt": 1, "status": "idle", "started_at": "2026-11-05T09:00:02+00:00",
         "finished_at": None, "duration_seconds": None},
        {"step": "sms", "attempt": 1, "status": "running", "started_at": "2026-11-05T09:00:05+00:00",
         "finished_at": None, "duration_seconds": None},
    ]
    titles = re.findall(r"<title>([^<]*)</title>", charts.timeline(steps, "2026-11-05T09:00:10+00:00"))
    assert titles == [
        "email #1: completed, 2 s",
        "wait #1: idle (the run is paused), 8 s so far",
        "sms #1: running, 5 s so far",
    ]


def test_a_paused_runs_page_says_its_attempt_is_idle(site):  # noqa: F811
    client, secrets = site
    add_events(client, secrets, [
        triggered("paused-1", workflow="welcome-series", recipient="u1", occurred_at="2026-11-05T09:00:00Z"),
        ev("run.started", run_id="paused-1", occurred_at="2026-11-05T09:00:01Z"),
        ev("step.started", run_id="paused-1", step="wait-a-day", step_type="delay", attempt=1, occurred_at="2026-11-05T09:00:02Z"),
        ev("run.paused", run_id="paused-1", occurred_at="2026-11-05T09:00:03Z"),
    ])
    sign_in(client, secrets["read"])
    titles = re.findall(r"<title>(wait-a-day #1: [^<]*)</title>", client.get("/runs/paused-1").text)
    assert len(titles) == 1 and titles[0].startswith("wait-a-day #1: idle (the run is paused), "), titles


# 5. The contact filter takes a recipient as the pages show it.


def test_the_contact_filter_finds_a_collection_recipient_as_shown(site):  # noqa: F811
    client, secrets = site
    add_events(client, secrets, [
        triggered("c-1", workflow="welcome-series", recipient={"collection": "accounts", "id": "acme"}, occurred_at="2026-11-05T09:00:00Z"),
        triggered("c-2", workflow="welcome-series", recipient={"id": "acme", "collection": "teams"}, occurred_at="2026-11-05T09:00:00Z"),
        triggered("c-3", workflow="welcome-series", recipient="acme", occurred_at="2026-11-05T09:00:00Z"),
        # Ids and collections may hold "/": each way of cutting what was typed is tried.
        triggered("c-4", workflow="welcome-series", recipient="accounts/acme", occurred_at="2026-11-05T09:00:00Z"),
        triggered("c-5", workflow="welcome-series", recipient={"collection": "a/b", "id": "c/d"}, occurred_at="2026-11-05T09:00:00Z"),
        triggered("c-6", workflow="welcome-series", recipient={"collection": "a", "id": "b/c/d"}, occurred_at="2026-11-05T09:00:00Z"),
    ])
    sign_in(client, secrets["read"])

    def listed(contact):
        page = client.get("/runs", params={"recipient": contact}).text
        return sorted(re.findall(r'<tr data-run="([^"]*)"', page)), page

    found, page = listed("accounts/acme")
    assert found == ["c-1", "c-4"]
    assert '<span class="count">2</span>' in page  # the "All" chip counts what is listed
    assert listed("teams/acme")[0] == ["c-2"]
    # An id alone still finds every recipient with that id, in a collection or not.
    assert listed("acme")[0] == ["c-1", "c-2", "c-3"]
    assert listed("a/b/c/d")[0] == ["c-5", "c-6"]
    assert listed("c/d")[0] == ["c-5"]  # its id alone
    assert listed("accounts/")[0] == [] and listed("/acme")[0] == []
    # The shown form, found in a status and a date range too.
    assert listed("accounts/acme")[0] == sorted(
        re.findall(r'<tr data-run="([^"]*)"', client.get("/runs", params={"recipient": "accounts/acme", "status": "pending", "range": "custom", "from": "2026-11-05T00:00:00Z"}).text)
    )


def test_the_contact_queries_on_either_store(any_log):
    log = any_log
    ledger.append_input(log, jsonl([
        triggered("k-1", workflow="w", recipient={"collection": "accounts", "id": "o'brien/1"}),
        triggered("k-2", workflow="w", recipient={"id": "o'brien/1", "collection": "teams"}),
        triggered("k-3", workflow="v", recipient="accounts/o'brien/1"),
    ]))
    every = queries.RunFilters()

    def listed(contact, filters=every):
        page = ledger.query(log, queries.list_runs_by_contact, filters, contact, page_size=1)
        ids = [e["id"] for e in page["entries"]]
        while page["page_info"]["after"]:  # one a page: the cursors page through them too
            page = ledger.query(log, queries.list_runs_by_contact, filters, contact, page_size=1, after=page["page_info"]["after"])
            ids += [e["id"] for e in page["entries"]]
        return sorted(ids)

    assert listed("accounts/o'brien/1") == ["k-1", "k-3"]
    assert listed("teams/o'brien/1") == ["k-2"]
    assert listed("o'brien/1") == ["k-1", "k-2"]
    assert listed("accounts/o'brien/1", queries.RunFilters(workflow="w")) == ["k-1"]
    counts = ledger.query(log, queries.run_status_counts_by_contact, every, "accounts/o'brien/1")
    assert counts["total"] == 2 and counts["pending"] == 2


def test_the_deliveries_contact_filter_finds_a_collection_recipient_as_shown(site):  # noqa: F811
    client, secrets = site
    add_events(client, secrets, [
        ev("message.queued", message_id="dm-1", channel="email", recipient={"collection": "accounts", "id": "acme"}),
        ev("message.queued", message_id="dm-2", channel="email", recipient={"id": "acme", "collection": "teams"}),
        ev("message.queued", message_id="dm-3", channel="email", recipient="acme"),
    ])
    sign_in(client, secrets["read"])

    def listed(contact):
        return sorted(re.findall(r"<tr><td>(dm-\d)</td>", client.get("/deliveries", params={"recipient": contact}).text))

    assert listed("accounts/acme") == ["dm-1"]
    assert listed("teams/acme") == ["dm-2"]
    assert listed("acme") == ["dm-1", "dm-2", "dm-3"]
    assert listed("accounts/") == []
