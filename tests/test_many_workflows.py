"""A workspace of many workflows: the workflow list by pages and by a text in its keys
(`workflows list --page-size/--after/--match`, `GET /v1/workflows?page_size&after&match`),
web pages that list or offer at most `WORKFLOWS_SHOWN` of them, and the run history's
tenant filter (a platform keeping its customers' workflows in one store).

Every page is checked against the whole list (`queries.list_workflows`, as before), so
paging and matching can only narrow it, never change an entry.
"""

from __future__ import annotations

import html
import json
import re
import shlex

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger, queries
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.store import open_log
from flowledger.web import pages
from tests.conftest import ev, triggered
from tests.histories import jsonl

# Keys that differ only in case, in non-ASCII letters, by a prefix, or a tenant's part.
KEYS = [
    "acme/welcome", "acme/Welcome-2", "ACME/win-back", "globex/welcome", "globex/été",
    "globex/ÉTÉ-sale", "initech/straße", "initech/STRASSE", "welcome", "welcome-series",
    "z", "zz", "Ω-omega", "ω-lower", "a b c", "a%b_c", "x\\y",
] + [f"tenant-{i:03d}/flow-{i % 3}" for i in range(40)]


def _events():
    events = []
    for i, key in enumerate(KEYS):
        run = f"r{i:03d}"
        events.append(triggered(run, workflow=key))
        events.append(ev("run.started", run_id=run))
        if i % 3 == 0:
            events.append(ev("run.completed", run_id=run))
        elif i % 3 == 1:
            events.append(ev("run.failed", run_id=run, error="boom"))
        if i % 4 == 0:  # a rehearsal beside: counted by the list, left out by `counts`
            events.append(triggered(f"{run}-rehearsal", workflow=key, trigger={"source": "rehearsal"}))
    return events


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("many") / "many.db")
    log = open_log(path)
    ledger.append_input(log, jsonl(_events()))
    ledger.query(log, queries.list_workflows)  # folds the views
    yield path, log
    log.close()


def q(log, fn, **kwargs):
    return ledger.query(log, fn, fresh=False, **kwargs)


def _pages(log, **kwargs):
    seen, after, pages_read = [], None, 0
    while True:
        page = q(log, queries.workflows_page, after=after, **kwargs)
        pages_read += 1
        seen += page["entries"]
        if page["next"] is None:
            return seen, pages_read
        assert page["next"] == page["entries"][-1]["key"]
        after = page["next"]


def test_the_whole_list_is_every_workflow_in_key_order(store):
    _, log = store
    whole = q(log, queries.list_workflows)
    assert [w["key"] for w in whole] == sorted(KEYS)
    assert q(log, queries.workflows_page) == {"entries": whole, "next": None}
    assert q(log, queries.workflow_count) == len(KEYS)
    assert q(log, queries.workflow_keys, limit=5) == sorted(KEYS)[:5]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    page_size=st.integers(1, len(KEYS) + 2),
    match=st.sampled_from([None, "", "welcome", "WELCOME", "été", "ÉTÉ", "straße", "Ω", "%", "_", "\\", "tenant-01", "/flow-2", "nothing"]),
    rehearsals=st.booleans(),
)
def test_pages_put_together_are_the_whole_list_narrowed(store, page_size, match, rehearsals):
    _, log = store
    whole = q(log, queries.list_workflows, include_rehearsals=rehearsals)
    wanted = [w for w in whole if not match or match.casefold() in w["key"].casefold()]
    seen, pages_read = _pages(log, page_size=page_size, match=match, include_rehearsals=rehearsals)
    assert seen == wanted
    assert pages_read == max(1, -(-len(wanted) // page_size))


def test_after_starts_past_a_key_that_is_no_workflow(store):
    _, log = store
    whole = q(log, queries.list_workflows)
    page = q(log, queries.workflows_page, after="tenant-005/flow-1x", page_size=3)
    assert [w["key"] for w in page["entries"]] == [k for k in sorted(KEYS) if k > "tenant-005/flow-1x"][:3]
    assert page["entries"] == [w for w in whole if w["key"] > "tenant-005/flow-1x"][:3]
    assert q(log, queries.workflows_page, after=sorted(KEYS)[-1]) == {"entries": [], "next": None}


def test_a_page_size_out_of_range_is_refused(store):
    _, log = store
    for size in (0, queries.MAX_PAGE_SIZE + 1):
        with pytest.raises(queries.BadQuery, match="page size must be 1 to 1000"):
            q(log, queries.workflows_page, page_size=size)


def test_run_totals_are_the_counts_without_their_workflows(store):
    _, log = store
    for rehearsals in (False, True):
        counts = q(log, queries.counts, include_rehearsals=rehearsals)
        by_workflow = counts.pop("by_workflow")
        assert q(log, queries.run_totals, include_rehearsals=rehearsals) == counts
        for key in ("acme/welcome", "globex/été", "tenant-004/flow-1"):
            assert q(log, queries.run_totals, workflow=key, include_rehearsals=rehearsals) == by_workflow[key]
    assert q(log, queries.run_totals, workflow="no such workflow")["total"] == 0
    assert q(log, queries.run_totals, workflow="acme/welcome", include_rehearsals=True)["total"] == 2


def test_cli_pages_through_with_the_line_it_prints(store):
    path, log = store
    runner = CliRunner()
    keys_seen, args = [], ["--store", path, "workflows", "list", "--page-size", "7", "--no-catch-up"]
    extra: list[str] = []
    for _ in range(20):
        out = runner.invoke(cli, args + extra)
        assert out.exit_code == 0, out.output
        lines = out.output.splitlines()
        found = re.fullmatch(r"next: --after (.+)", lines[-1])
        table = lines[1:-1] if found else lines[1:]
        keys_seen += [re.split(r"\s{2,}", line)[0] for line in table]
        if not found:
            break
        extra = ["--after", *shlex.split(found.group(1))]
    assert keys_seen == sorted(KEYS)
    json_out = runner.invoke(cli, ["--store", path, "workflows", "list", "--match", "ÉTÉ", "--json", "--no-catch-up"])
    assert json_out.exit_code == 0
    assert [w["key"] for w in json.loads(json_out.output)] == ["globex/ÉTÉ-sale", "globex/été"]
    nothing = runner.invoke(cli, ["--store", path, "workflows", "list", "--match", "nothing", "--no-catch-up"])
    assert nothing.output.splitlines()[-1] == "(no workflow matches)"
    past = runner.invoke(cli, ["--store", path, "workflows", "list", "--after", sorted(KEYS)[-1], "--no-catch-up"])
    assert past.output.splitlines()[-1] == "(no more workflows)"
    twice = runner.invoke(cli, ["--store", path, "workflows", "list", "--match", "a", "--match", "b"])
    assert twice.exit_code == 2


@pytest.fixture(scope="module")
def client(store):
    path, log = store
    secret = keys.create_key(log.backend, "reader", "read")[1]
    with TestClient(create_app(path)) as c:
        c.secret = secret  # type: ignore[attr-defined]
        c.post("/login", data={"api_key": secret, "next": "/"}, follow_redirects=False)
        yield c


def test_api_lists_every_workflow_or_pages_them(client, store):
    _, log = store
    h = {"X-API-Key": client.secret}
    whole = q(log, queries.list_workflows)
    assert client.get("/v1/workflows", headers=h).json() == {"entries": whole, "next": None}
    seen, after = [], None
    while True:
        params = {"page_size": 10, "match": "a", **({"after": after} if after else {})}
        body = client.get("/v1/workflows", params=params, headers=h).json()
        seen += body["entries"]
        after = body["next"]
        if after is None:
            break
    assert seen == [w for w in whole if "a" in w["key"].casefold()]
    for bad in ({"page_size": 0}, {"page_size": 1001}, {"match": "x" * 256}):
        r = client.get("/v1/workflows", params=bad, headers=h)
        assert r.status_code == 422, (bad, r.text)


def _rows(html, table_label):
    body = html.split(f'aria-label="{table_label}"', 1)[1].split("</table>", 1)[0] if table_label else html
    return re.findall(r'<th scope="row"><a href="/workflows/[^"]*">([^<]*)</a></th>', body)


def _unescape(text):
    return html.unescape(text)


def test_web_pages_list_at_most_workflows_shown(client, monkeypatch):
    monkeypatch.setattr(pages, "WORKFLOWS_SHOWN", 10)
    home = client.get("/").text
    assert [_unescape(k) for k in _rows(home, None)] == sorted(KEYS)[:10]
    assert 'id="workflows-cut"' in home and f"The first 10 of {len(KEYS)} workflows" in home
    more = re.search(r'id="more-workflows" href="([^"]+)"', home).group(1)
    # The workflows page, from where the overview stopped, then page after page.
    listed, url = [], _unescape(more)
    while url:
        page = client.get(url).text
        listed += [_unescape(k) for k in _rows(page, "Workflows")]
        found = re.search(r'id="workflows-next" href="([^"]+)"', page)
        url = _unescape(found.group(1)) if found else None
        assert 'id="workflows-first"' in page
    assert listed == sorted(KEYS)[10:]
    first = client.get("/workflows").text
    assert 'id="workflows-first"' not in first and f"{len(KEYS)} workflows have runs" in first
    found = client.get("/workflows", params={"match": "ÉTÉ"}).text
    assert [_unescape(k) for k in _rows(found, "Workflows")] == ["globex/ÉTÉ-sale", "globex/été"]
    assert "workflows-next" not in found
    none = client.get("/workflows", params={"match": "nothing"}).text
    assert "No workflow&#39;s key holds" in none or "No workflow's key holds" in none
    # A text longer than any key is in none (not cut to a key's length, where it could be).
    too_long = client.get("/workflows", params={"match": "tenant-0" + "x" * 300}).text
    assert _rows(too_long, "Workflows") == []


def test_the_runs_page_offers_a_menu_or_a_box_and_counts_one_workflow(client, monkeypatch, store):
    _, log = store
    menu = client.get("/runs").text
    assert '<select id="f-workflow"' in menu and menu.count("<option value=\"tenant-") == 40
    monkeypatch.setattr(pages, "WORKFLOWS_SHOWN", len(KEYS))  # every one fits: still the menu
    assert '<select id="f-workflow"' in client.get("/runs").text
    monkeypatch.setattr(pages, "WORKFLOWS_SHOWN", len(KEYS) - 1)
    box = client.get("/runs", params={"workflow": "globex/été"}).text
    assert '<select id="f-workflow"' not in box
    assert re.search(r'<input id="f-workflow" name="workflow" maxlength="\d+" value="globex/été"', box)
    # The chips count the workflow's runs, rehearsals too, as the listing shows them.
    totals = q(log, queries.run_totals, workflow="globex/été", include_rehearsals=True)
    chip = re.search(r'data-status="all">All <span class="count">(\d+)</span>', box).group(1)
    assert int(chip) == totals["total"] == len(re.findall(r'<a href="/runs/r', box))
    everything = client.get("/runs").text
    chip = re.search(r'data-status="all">All <span class="count">(\d+)</span>', everything).group(1)
    assert int(chip) == q(log, queries.run_totals, include_rehearsals=True)["total"]


def test_the_run_history_filters_by_tenant_and_its_links_keep_it(tmp_path):
    path = str(tmp_path / "tenants.db")
    log = open_log(path)
    events = []
    for i in range(30):
        run, tenant = f"run-{i:02d}", ("acme", "globex", None)[i % 3]
        events.append(triggered(run, workflow=f"w{i % 2}", **({"tenant": tenant} if tenant else {})))
        if i % 4 == 0:
            events.append(ev("run.started", run_id=run))
            events.append(ev("run.failed", run_id=run, error="boom"))
    ledger.append_input(log, jsonl(events))
    secret = keys.create_key(log.backend, "reader", "read")[1]
    acme = ledger.query(log, queries.run_status_counts, queries.RunFilters(tenant="acme"))
    acme_w0 = ledger.query(log, queries.run_status_counts, queries.RunFilters(workflow="w0", tenant="acme"))
    log.close()
    assert acme["total"] == 10 and 0 < acme["failed"] < 10 and acme_w0["total"] == 5
    with TestClient(create_app(path)) as client:
        client.post("/login", data={"api_key": secret, "next": "/"}, follow_redirects=False)
        page = client.get("/runs", params={"tenant": " acme "}).text
        listed = re.findall(r'<a href="/runs/(run-\d\d)"', page)
        assert sorted(listed) == [f"run-{i:02d}" for i in range(30) if i % 3 == 0]
        assert re.search(r'<input id="f-tenant" name="tenant" maxlength="\d+" value="acme"', page)
        chips = dict(re.findall(r'data-status="(\w+)">\w+ <span class="count">(\d+)</span>', page))
        assert int(chips["all"]) == acme["total"] and int(chips["failed"]) == acme["failed"]
        failed = re.search(r'href="([^"]+)"[^>]*data-status="failed"', page).group(1)
        assert "tenant=acme" in html.unescape(failed)
        only_failed = client.get(html.unescape(failed)).text
        assert sorted(re.findall(r'<a href="/runs/(run-\d\d)"', only_failed)) == [
            f"run-{i:02d}" for i in range(30) if i % 3 == 0 and i % 4 == 0
        ]
        stuck = re.search(r'class="chip stuck-chip" href="([^"]+)"', page).group(1)
        assert "tenant=acme" in html.unescape(stuck)
        both = client.get("/runs", params={"tenant": "acme", "workflow": "w0"}).text
        assert int(re.search(r'data-status="all">All <span class="count">(\d+)</span>', both).group(1)) == acme_w0["total"]
        nobody = client.get("/runs", params={"tenant": "initech"}).text
        assert not re.findall(r'<a href="/runs/run-', nobody)
