"""API follow-ups: a run's history by pages (the whole of it, as before, when no page is asked
for), and GET /v1/runs/{id} on an analyst's copy made by `rebuild --into`."""

from __future__ import annotations

import os

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from flowledger.api import keys
from flowledger.api.app import HISTORY_PAGE, MAX_HISTORY_PAGE, create_app
from flowledger.cli import cli
from flowledger.store import open_log
from tests.conftest import ev, step, triggered
from tests.test_api import api, failed_run, h  # noqa: F401  # the api fixture

ROOT = os.path.join(os.path.dirname(__file__), "..")
EXAMPLE = os.path.join(ROOT, "examples", "welcome-series.jsonl")


def post(api, events):
    r = api.post("/v1/events", json=events, headers=h(api, "write"))
    assert r.status_code == 200, r.text


def history(api, run_id="r1", **params):
    r = api.get(f"/v1/runs/{run_id}/history", params=params, headers=h(api, "read"))
    assert r.status_code == 200, r.text
    return r.json()


def walk(api, run_id, page_size):
    """Every page of a run's history, following page_info.after."""
    pages, after = [], 0
    while True:
        page = history(api, run_id, page_size=page_size, after=after)
        pages.append(page)
        after = page["page_info"]["after"]
        if after is None:
            return pages


def long_run(run_id, steps):
    """A run with ``steps`` step attempts: 2 + 2 * steps events."""
    events = [triggered(run_id), ev("run.started", run_id=run_id)]
    for i in range(steps):
        events += [step("step.started", run_id, name=f"s{i}"), step("step.succeeded", run_id, name=f"s{i}")]
    return events


def test_a_history_asked_for_without_paging_is_the_whole_of_it_as_before(api):
    api.post("/v1/events", json=failed_run("r1"), headers=h(api, "write"))
    whole = history(api)
    assert set(whole) == {"run_id", "events"}  # no page_info: today's answer
    assert [e["n"] for e in whole["events"]] == [1, 2, 3, 4, 5, 6, 7]


def test_the_pages_of_a_history_put_together_are_the_whole_of_it(api):
    post(api, long_run("r1", 6))
    whole = history(api)["events"]
    assert len(whole) == 14
    pages = walk(api, "r1", 4)
    assert [len(p["events"]) for p in pages] == [4, 4, 4, 2]
    assert [e for p in pages for e in p["events"]] == whole
    # Each page's cursor is the position of its last entry; the last page has none.
    assert [p["page_info"] for p in pages] == [
        {"after": p["events"][-1]["position"], "page_size": 4} for p in pages[:-1]
    ] + [{"after": None, "page_size": 4}]
    # A page that ends exactly at the end says so: no empty page to fetch.
    assert [len(p["events"]) for p in walk(api, "r1", 7)] == [7, 7]


def test_after_alone_pages_by_the_default_size_and_past_the_end_is_an_empty_last_page(api):
    post(api, long_run("r1", HISTORY_PAGE // 2 + 5))  # 12 more entries than a page
    whole = history(api)["events"]
    first = history(api, after=0)
    assert first["events"] == whole[:HISTORY_PAGE]
    assert first["page_info"] == {"after": whole[HISTORY_PAGE - 1]["position"], "page_size": HISTORY_PAGE}
    rest = history(api, after=first["page_info"]["after"])
    assert rest["events"] == whole[HISTORY_PAGE:] and rest["page_info"]["after"] is None
    beyond = history(api, after=whole[-1]["position"], page_size=10)
    assert beyond == {"run_id": "r1", "events": [], "page_info": {"after": None, "page_size": 10}}


def test_pages_of_a_history_follow_log_positions_so_a_late_linked_fact_repeats_nothing(api):
    # A provider fact stored before its message was queued joins the replay at its place in
    # the log once the message names the run: the entries after it are renumbered.
    write = h(api, "write")
    api.post("/v1/events", json=[
        triggered("r1"), ev("run.started", run_id="r1"),
        ev("message.delivered", message_id="m1", occurred_at="2026-11-01T09:01:00Z"),
        step("step.started", "r1", name="email"),
    ], headers=write)
    first = history(api, page_size=2)
    assert [e["event"]["type"] for e in first["events"]] == ["run.triggered", "run.started"]
    after_two = history(api, page_size=2, after=first["page_info"]["after"])
    assert [e["event"]["type"] for e in after_two["events"]] == ["step.started"]
    seen = after_two["events"][-1]["position"]
    api.post("/v1/events", json=[
        ev("message.queued", message_id="m1", channel="email", recipient="user-1", run_id="r1", step="email"),
    ], headers=write)
    assert [e["event"]["type"] for e in history(api)["events"]] == [
        "run.triggered", "run.started", "message.delivered", "step.started", "message.queued",
    ]
    # Going on from the last entry seen gives only what is new, not step.started again.
    more = history(api, page_size=2, after=seen)
    assert [(e["n"], e["event"]["type"]) for e in more["events"]] == [(5, "message.queued")]


@pytest.mark.parametrize("params, field", [
    ({"page_size": 0}, "page_size"),
    ({"page_size": MAX_HISTORY_PAGE + 1}, "page_size"),
    ({"after": -1}, "after"),
    ({"after": "abc"}, "after"),
    ({"page_size": "ten"}, "page_size"),
])
def test_a_page_size_or_after_out_of_range_is_a_422_naming_it(api, params, field):
    api.post("/v1/events", json=failed_run("r1"), headers=h(api, "write"))
    r = api.get("/v1/runs/r1/history", params=params, headers=h(api, "read"))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]


def test_the_largest_page_is_taken_and_an_unknown_run_is_a_404_paged_or_not(api):
    api.post("/v1/events", json=failed_run("r1"), headers=h(api, "write"))
    assert len(history(api, page_size=MAX_HISTORY_PAGE)["events"]) == 7
    for params in ({}, {"page_size": 5}, {"after": 0}):
        r = api.get("/v1/runs/nope/history", params=params, headers=h(api, "read"))
        assert r.status_code == 404, (params, r.text)


def test_the_openapi_document_has_the_history_paging_and_the_copys_events_in(api):
    doc = api.get("/openapi.json", headers=h(api, "read")).json()
    parameters = {p["name"]: p for p in doc["paths"]["/v1/runs/{run_id}/history"]["get"]["parameters"]}
    assert {"page_size", "after"} <= set(parameters) and not any(p["required"] for n, p in parameters.items() if n != "run_id")
    schemas = doc["components"]["schemas"]
    assert "page_info" in schemas["RunHistory"]["properties"] and "events_in" in schemas["RunDetail"]["properties"]


@pytest.fixture
def copy(tmp_path):
    """An analyst's copy of the example data (`rebuild --into`), its source, and a read key to it."""
    runner = CliRunner()
    source = str(tmp_path / "source.db")
    into = str(tmp_path / "copy.db")
    assert runner.invoke(cli, ["--store", source, "append", EXAMPLE]).exit_code == 0
    assert runner.invoke(cli, ["--store", source, "rebuild", "--into", into]).exit_code == 0
    log = open_log(into)
    _, secret = keys.create_key(log.backend, "analyst", "read")
    log.close()
    return source, into, {"X-API-Key": secret}


def test_a_run_on_an_analysts_copy_answers_its_views_and_names_where_its_events_are(copy):
    source, into, read = copy
    with TestClient(create_app(into)) as client:
        r = client.get("/v1/runs/run-0007", headers=read)
    assert r.status_code == 200, r.text
    shown = r.json()
    assert "events" not in shown and shown["events_in"] == source
    # What `runs show` gives on the copy, and on the source, with the events' place added.
    on_copy = CliRunner().invoke(cli, ["--store", into, "runs", "show", "run-0007", "--json", "--no-catch-up"])
    assert on_copy.exit_code == 0, on_copy.output
    assert {**orjson.loads(on_copy.stdout), "events_in": source} == shown
    on_source = orjson.loads(CliRunner().invoke(cli, ["--store", source, "runs", "show", "run-0007", "--json"]).stdout)
    assert {**on_source, "events_in": source} == shown and shown["steps"] and shown["deliveries"]


def test_an_unknown_run_on_a_copy_is_still_a_404_and_its_history_the_replays_409(copy):
    source, into, read = copy
    with TestClient(create_app(into)) as client:
        assert client.get("/v1/runs/nope", headers=read).status_code == 404
        for params in ({}, {"page_size": 5}, {"after": 0}):
            r = client.get("/v1/runs/run-0007/history", params=params, headers=read)
            assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json", r.text
            assert "analyst's copy" in r.json()["detail"] and source in r.json()["detail"]
    replayed = CliRunner().invoke(cli, ["--store", into, "replay", "run-0007", "--no-catch-up"])
    assert replayed.exit_code == 1 and r.json()["detail"] in replayed.stderr


def test_a_run_on_its_own_store_still_has_its_events_and_no_events_in(api):
    api.post("/v1/events", json=failed_run("r1"), headers=h(api, "write"))
    shown = api.get("/v1/runs/r1", headers=h(api, "read")).json()
    assert len(shown["events"]) == 5 and "events_in" not in shown  # the run's own (its message's are not)
