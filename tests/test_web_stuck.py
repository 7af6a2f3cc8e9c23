"""Stuck runs on the pages: the runs page's "Stuck" chip lists the pending and running runs
with no news for over STUCK_AFTER (with its count, the other filters and paging, in a URL
that can be shared), the overview counts them, and the row's mark agrees with the filter."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.store import open_log
from flowledger.web import pages
from tests.conftest import POSTGRES_UNREACHABLE, ev, triggered
from tests.histories import jsonl
from tests.test_web import chip_counts, sign_in

NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
"""The pages' "now" in these tests (pages._now, patched): STUCK_AFTER before it is 11:00:00."""


def _at(hhmmss: str, day: int = 1) -> str:
    return f"2026-11-{day:02d}T{hhmmss}Z"


def _history() -> list[dict]:
    """Runs around the bound: quiet for more than an hour, exactly an hour, less; in each
    status; of two workflows, two recipients and two creation days."""
    return [
        # Stuck: running, quiet since 10:00.
        triggered("run-stuck", occurred_at=_at("09:00:00"), workflow="welcome", recipient="user-1"),
        ev("run.started", run_id="run-stuck", occurred_at=_at("10:00:00")),
        # Stuck: pending (never started), of another workflow and recipient, created earlier.
        triggered("pend-stuck", occurred_at=_at("08:00:00"), workflow="digest", recipient="user-2"),
        # Exactly at the bound (quiet for an hour, not more): not stuck.
        triggered("at-bound", occurred_at=_at("10:30:00")),
        ev("run.started", run_id="at-bound", occurred_at=_at("11:00:00")),
        # A microsecond past the bound: stuck.
        triggered("just-past", occurred_at=_at("10:30:00")),
        ev("run.started", run_id="just-past", occurred_at="2026-11-01T10:59:59.999999Z"),
        # Heard of recently: not stuck.
        triggered("fresh", occurred_at=_at("09:00:00")),
        ev("run.started", run_id="fresh", occurred_at=_at("11:30:00")),
        # Quiet for long, but done or paused: never stuck.
        triggered("old-done", occurred_at=_at("06:00:00")),
        ev("run.started", run_id="old-done", occurred_at=_at("06:00:01")),
        ev("run.completed", run_id="old-done", occurred_at=_at("06:00:02")),
        triggered("old-paused", occurred_at=_at("06:00:00")),
        ev("run.started", run_id="old-paused", occurred_at=_at("06:00:01")),
        ev("run.paused", run_id="old-paused", occurred_at=_at("06:00:02")),
    ]


STUCK = {"run-stuck", "pend-stuck", "just-past"}
"""The runs of :func:`_history` quiet for more than an hour at :data:`NOW`."""


def _site(store_path, events, monkeypatch):
    monkeypatch.setattr(pages, "_now", lambda: NOW)
    log = open_log(store_path)
    ledger.append_input(log, jsonl(events))
    secret = keys.create_key(log.backend, "read", "read")[1]
    log.close()
    return TestClient(create_app(store_path)), secret


@pytest.fixture(params=["sqlite", "postgres"])
def site(request, monkeypatch):
    """A signed-in client of a store holding :func:`_history`, on each backend."""
    if request.param == "postgres":
        if POSTGRES_UNREACHABLE is not None:
            pytest.skip(POSTGRES_UNREACHABLE)
        store = request.getfixturevalue("postgres_url")
    else:
        store = request.getfixturevalue("store_path")
    client, secret = _site(store, _history(), monkeypatch)
    with client:
        sign_in(client, secret)
        yield client


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-run="([^"]*)"', html)


def marked(html: str) -> set[str]:
    """The rows with the stuck mark."""
    return set(re.findall(r'<tr data-run="([^"]*)">(?:(?!</tr>).)*?<span class="stuck"', html, re.S))


def stuck_chip(html: str) -> tuple[int, str, bool]:
    """The Stuck chip's count, link, and whether it is the current one."""
    m = re.search(r'<a class="chip stuck-chip" href="([^"]*)"( aria-current="true")? data-filter="stuck"[^>]*>[^<]*<span class="count">(\d+)</span>', html)
    assert m, "no Stuck chip"
    return int(m.group(3)), m.group(1).replace("&amp;", "&"), bool(m.group(2))


def test_the_stuck_chip_lists_the_runs_marked_stuck_and_counts_them(site):
    every = site.get("/runs").text
    assert marked(every) == STUCK
    count, href, current = stuck_chip(every)
    assert (count, parse_qs(urlsplit(href).query)["stuck"], current) == (3, ["1"], False)
    page = site.get(href).text
    assert set(rows(page)) == STUCK == marked(page)
    _, _, current = stuck_chip(page)
    assert current and not re.search(r'aria-current="true" data-status="all"', page)


def test_the_boundary_run_is_neither_marked_nor_listed(site):
    # Quiet for exactly STUCK_AFTER is not "more than": the mark and the filter agree.
    every = site.get("/runs").text
    assert "at-bound" in rows(every) and "at-bound" not in marked(every)
    stuck = site.get("/runs", params={"stuck": "1"}).text
    assert "at-bound" not in rows(stuck) and "just-past" in rows(stuck)


def test_now_is_the_pages_clock(site, monkeypatch):
    # An hour on, the boundary run and the fresh one are stuck too.
    monkeypatch.setattr(pages, "_now", lambda: NOW.replace(hour=13))
    page = site.get("/runs", params={"stuck": "1"}).text
    assert set(rows(page)) == STUCK | {"at-bound", "fresh"} == marked(site.get("/runs").text)


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"workflow": "digest"}, {"pend-stuck"}),
        ({"recipient": "user-2"}, {"pend-stuck"}),
        ({"range": "custom", "from": "2026-11-01T09:00:00Z", "to": "2026-11-01T11:00:00Z"}, {"run-stuck", "just-past"}),
        ({"range": "24h"}, STUCK),
        ({"status": "pending"}, {"pend-stuck"}),
    ],
)
def test_stuck_combines_with_the_other_filters(site, filters, expected):
    plain = site.get("/runs", params=filters).text
    count, href, _ = stuck_chip(plain)
    query = parse_qs(urlsplit(href).query)
    # The chip keeps the other filters, as a status chip does, and drops the status.
    assert query["stuck"] == ["1"] and "status" not in query
    kept = {k: v for k, v in query.items() if k != "stuck" and (k, v) != ("range", ["all"])}
    assert kept == {k: [v] for k, v in filters.items() if k != "status"}
    listed = site.get("/runs", params={**filters, "stuck": "1"}).text
    assert set(rows(listed)) == expected
    if "status" not in filters:
        assert count == len(expected)
    # The form keeps the stuck filter when the others change.
    assert '<input type="hidden" name="stuck" value="1">' in listed


def test_the_status_chips_leave_the_stuck_filter(site):
    page = site.get("/runs", params={"stuck": "1", "workflow": "welcome"}).text
    hrefs = dict(re.findall(r'href="([^"]*)"[^>]*data-status="(\w+)"', page))
    for href in hrefs:
        query = parse_qs(urlsplit(href.replace("&amp;", "&")).query)
        assert "stuck" not in query and query["workflow"] == ["welcome"]
    # Their counts are those their links list: every run of the workflow, stuck or not.
    assert chip_counts(page)["all"] == len(rows(site.get("/runs", params={"workflow": "welcome"}).text))


def test_a_status_that_is_never_stuck_lists_nothing(site):
    page = site.get("/runs", params={"stuck": "1", "status": "completed"}).text
    assert rows(page) == [] and "No runs match" in page


@pytest.mark.parametrize("value", ["0", "", "yes", "<b>", "1 "])
def test_a_stuck_value_other_than_1_is_ignored_as_a_bad_status_is(site, value):
    r = site.get("/runs", params={"stuck": value})
    assert r.status_code == 200
    assert rows(r.text) == rows(site.get("/runs").text)
    assert not stuck_chip(r.text)[2]
    assert "<b>" not in r.text


def test_stuck_runs_page_and_the_pages_keep_the_filter(store_path, monkeypatch):
    # 60 stuck runs among 30 fresh ones: three pages of 25, 25 and 10, each run once.
    events = []
    for k in range(90):
        run_id = f"r-{k:03d}"
        events.append(triggered(run_id, occurred_at=f"2026-11-01T08:{k // 60:02d}:{k % 60:02d}Z"))
        if k % 3 == 2:
            events.append(ev("run.started", run_id=run_id, occurred_at=_at("11:45:00")))
    client, secret = _site(store_path, events, monkeypatch)
    with client:
        sign_in(client, secret)
        seen, url = [], "/runs?stuck=1"
        for _ in range(5):
            page = client.get(url).text
            seen += rows(page)
            older = re.search(r'<a href="([^"]*)" rel="next">', page)
            if older is None:
                break
            url = older.group(1).replace("&amp;", "&")
            assert parse_qs(urlsplit(url).query)["stuck"] == ["1"]
        assert len(seen) == len(set(seen)) == 60 == stuck_chip(page)[0]
        assert all(int(r[2:]) % 3 != 2 for r in seen)
        newer = re.search(r'<a href="([^"]*)" rel="prev">', page).group(1).replace("&amp;", "&")
        assert parse_qs(urlsplit(newer).query)["stuck"] == ["1"]
        assert rows(client.get(newer).text) == seen[25:50]


def test_the_overview_counts_the_stuck_runs_and_links_to_them(site):
    home = site.get("/").text
    card = re.search(r'href="/runs\?stuck=1"><div class="n">(\d+)</div><div class="label">stuck', home)
    assert card and int(card.group(1)) == 3 == stuck_chip(site.get("/runs?stuck=1").text)[0]


def test_the_overview_says_none_are_stuck_when_none_are(site, monkeypatch):
    monkeypatch.setattr(pages, "_now", lambda: NOW.replace(hour=9))
    home = site.get("/").text
    assert re.search(r'href="/runs\?stuck=1"><div class="n">0</div>', home)
