"""Runs with many messages, facts and steps: the replay, ``runs show``, the history's
pages and the web's pages do work in proportion to the run, and give what they gave.

A replay used to refold a message's every fact at each new one (a message clicked 20,000
times took nine minutes to replay) and worked out the run's engagement again over all its
messages after each fact; ``runs show`` matched each message against the whole step trace;
the workflow graph searched a list for each node; a run's web page held every attempt,
message and history entry (41 MB for 40,000 steps); a history page was the whole replay, cut.
Timings are benchmarks/big_runs.py's; these tests hold the answers (and count folds).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.projections import run_record
from flowledger.projections.delivery import delivery_record, earlier
from flowledger.projections.run_record import RunReplay, attach_messages, history_length, run_detail_at, run_history
from flowledger.store import open_log
from flowledger.store.log import StoredEvent
from flowledger.web import charts
from tests.histories import interleave, message_histories, run_histories

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RUN = "r1"
TIMES = [f"2026-11-01T09:00:0{s}+00:00" for s in range(6)]
KINDS = ["queued", "sent", "delivered", "read", "opened", "clicked", "bounced", "failed"]


def fact(n: int, kind: str, message: str, at: str, run_id: str = RUN, channel: str = "email") -> dict[str, Any]:
    body: dict[str, Any] = {"id": f"e{n}", "type": f"message.{kind}", "occurred_at": at, "message_id": message}
    if kind == "queued":
        body.update(channel=channel, recipient="u", run_id=run_id, step="s")
    elif kind == "clicked":
        body["url"] = "https://example.com/"
    elif kind == "bounced":
        body["reason"] = "550"
    elif kind == "failed":
        body["error"] = "no"
    return body


def engagement_from_records(replay: RunReplay, facts: dict[str, list[tuple[int, dict[str, Any]]]]) -> tuple[Any, ...]:
    """The run's email engagement worked out from every message's whole record (as the
    deliveries view's rows give it to the runs listing)."""
    first: list[str | None] = [None, None, None]
    for mid, its_facts in facts.items():
        d = delivery_record(mid, its_facts)
        if d["run_id"] == RUN and d["channel"] == "email":
            for i, name in enumerate(("delivered_at", "opened_at", "clicked_at")):
                first[i] = earlier(first[i], d[name])
    delivered, opened, clicked = first
    if delivered is None:
        return (None, None, None, None)
    return (opened is not None, opened, clicked is not None, clicked)


message_facts = st.lists(
    st.tuples(
        st.sampled_from(["m1", "m2", "m3"]),
        st.sampled_from(KINDS),
        st.sampled_from(TIMES),
        st.sampled_from([RUN, "r2"]),
        st.sampled_from(["email", "sms"]),
    ),
    max_size=25,
)


@SETTINGS
@given(message_facts)
def test_engagement_after_each_fact_is_the_records(drawn: list[tuple[str, str, str, str, str]]) -> None:
    # Queued facts naming another run or channel, earlier or later than the one that
    # stood, move a message on and off the run's emails: the engagement follows.
    replay = RunReplay(RUN)
    replay.apply(1, {"type": "run.triggered", "id": "t", "occurred_at": TIMES[0], "run_id": RUN, "workflow": "w", "recipient": "u"})
    seen: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for position, (mid, kind, at, run_id, channel) in enumerate(drawn, start=2):
        body = fact(position, kind, mid, at, run_id, channel)
        replay.apply(position, body)
        seen.setdefault(mid, []).append((position, body))
        assert replay.engagement() == engagement_from_records(replay, seen)
        assert replay.to_record()["email_opened_at"] == engagement_from_records(replay, seen)[1]
    expected = [delivery_record(mid, f) for mid, f in seen.items()]
    assert sorted(d["message_id"] for d in replay.run_deliveries()) == sorted(
        d["message_id"] for d in expected if d["run_id"] == RUN
    )
    for d in replay.run_deliveries():
        assert {k: v for k, v in d.items() if k != "workflow"} == delivery_record(d["message_id"], seen[d["message_id"]])


def stored(events: list[dict[str, Any]]) -> tuple[list[StoredEvent], list[list[StoredEvent]]]:
    run: list[StoredEvent] = []
    messages: dict[str, list[StoredEvent]] = {}
    for position, body in enumerate(events, start=1):
        if "message_id" in body:
            stream = messages.setdefault(body["message_id"], [])
            stream.append(StoredEvent(position, len(stream) + 1, body["type"], body))
        else:
            run.append(StoredEvent(position, len(run) + 1, body["type"], body))
    return run, list(messages.values())


def test_a_message_with_many_facts_is_folded_once_per_look(monkeypatch: Any) -> None:
    # 400 clicks of one email: each replay entry's record still shows the first click,
    # and the message's record is folded when it is shown, not at each of its facts.
    events = [
        {"id": "t", "type": "run.triggered", "occurred_at": TIMES[0], "run_id": RUN, "workflow": "w", "recipient": "u"},
        fact(2, "queued", "m1", TIMES[1]),
        fact(3, "delivered", "m1", TIMES[2]),
        *(fact(n, "clicked", "m1", f"2026-11-01T10:{n // 60:02d}:{n % 60:02d}+00:00") for n in range(4, 404)),
    ]
    folds = []

    def counted(message_id: str, facts: Any) -> dict[str, Any]:
        folds.append(message_id)
        return delivery_record(message_id, facts)

    monkeypatch.setattr(run_record, "delivery_record", counted)
    history = run_history(RUN, *stored(events))
    assert len(history) == 403
    assert history[2].record["email_opened_at"] is None  # delivered, not yet opened
    assert history[3].record["email_clicked_at"] == "2026-11-01T10:00:04+00:00"
    assert history[-1].record["email_clicked_at"] == "2026-11-01T10:00:04+00:00"
    assert len(folds) <= 1
    detail = run_detail_at(RUN, *stored(events))
    assert detail["deliveries"][0]["clicks_total"] == 400
    assert len(folds) <= 2


def old_attach(trace: list[dict[str, Any]], deliveries: list[dict[str, Any]]) -> None:
    """How messages were matched to attempts before (each against the whole trace)."""
    for d in deliveries:
        step, queued_at = d["step"], d["queued_at"]
        if step is None or queued_at is None:
            continue
        candidates = [s for s in trace if s["step"] == step and s["started_at"] <= queued_at]
        target = candidates[-1] if candidates else next((s for s in trace if s["step"] == step), None)
        if target is not None:
            target["messages"].append(d["message_id"])


@SETTINGS
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(TIMES)), max_size=12),
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "d", None]), st.sampled_from([*TIMES, None])), max_size=12
    ),
)
def test_messages_go_to_the_attempt_they_went_before(
    attempts: list[tuple[str, str]], messages: list[tuple[str | None, str | None]]
) -> None:
    # Attempts need not start in trace order (overlapping attempts, clock skew).
    trace = [{"step": step, "started_at": at, "messages": []} for step, at in attempts]
    deliveries = [{"message_id": f"m{i}", "step": step, "queued_at": at} for i, (step, at) in enumerate(messages)]
    expected = json.loads(json.dumps(trace))
    old_attach(expected, deliveries)
    attach_messages(trace, deliveries)
    assert trace == expected


def old_graph_order(stats: dict[str, Any]) -> list[str]:
    """The workflow graph's node order as it was worked out before (lists searched)."""
    nodes = [n["step"] for n in stats["nodes"]]
    incoming = {n: 0 for n in nodes}
    for e in stats["edges"]:
        if e["to"] in incoming:
            incoming[e["to"]] += 1
    order = sorted((n for n in nodes if incoming[n] == 0), key=str)
    edges_from: dict[str, list[dict[str, Any]]] = {}
    for e in sorted(stats["edges"], key=lambda e: -(e["completed"] + e["failed"] + e["running"])):
        edges_from.setdefault(e["from"], []).append(e)
    i = 0
    while i < len(order):
        for e in edges_from.get(order[i], []):
            if e["to"] not in order:
                order.append(e["to"])
        i += 1
    return order + [n for n in nodes if n not in order]


STEPS = ["start", "a", "b", "c", "d", "end"]


@SETTINGS
@given(
    st.lists(st.sampled_from(STEPS), min_size=1, unique=True),
    st.lists(st.tuples(st.sampled_from(STEPS), st.sampled_from(STEPS), st.integers(0, 5)), max_size=12),
)
def test_the_workflow_graph_orders_its_nodes_as_before(nodes: list[str], edges: list[tuple[str, str, int]]) -> None:
    # Cycles, several starts and nodes nothing reaches from a start: the order of the
    # boxes is the order the lists gave. (Edges join nodes: both come from the steps view.)
    stats = {
        "nodes": [{"step": n, "step_type": "branch", "completed": 1, "failed": 0, "running": 0} for n in nodes],
        "edges": [
            {"from": a, "to": b, "completed": n, "failed": 0, "running": 0} for a, b, n in edges if {a, b} <= set(nodes)
        ],
    }
    assert re.findall(r'font-weight="600">([^<]+)<', charts.graph(stats)) == old_graph_order(stats)


def test_a_workflow_of_thousands_of_steps_is_drawn_in_the_order_runs_reach_them() -> None:
    chain = [f"step-{i:05d}" for i in range(5_000)]
    stats = {
        "nodes": [{"step": n, "step_type": "branch", "completed": 1, "failed": 0, "running": 0} for n in reversed(chain)],
        "edges": [{"from": a, "to": b, "completed": 1, "failed": 0, "running": 0} for a, b in zip(chain, chain[1:])],
    }
    svg = charts.graph(stats)
    assert svg.index(">step-00000<") < svg.index(">step-02500<") < svg.index(">step-04999<")


# --- the web page of a big run: at most RUN_PAGE_ROWS of each, its history by pages


def _table_rows(page: str, label: str) -> int:
    """The body rows of the page's table with this aria-label."""
    start = page.index(f'aria-label="{label}"')
    body = page[page.index("<tbody>", start) : page.index("</tbody>", start)]
    return body.count("<tr")


def _history_numbers(page: str) -> list[int]:
    start = page.index('aria-label="History"')
    return [int(n) for n in re.findall(r'<tr><td class="num">(\d+)</td>', page[start:])]


@pytest.fixture
def big_site(store_path: str) -> Any:
    events = [
        {"id": "t", "type": "run.triggered", "occurred_at": TIMES[0], "run_id": "big", "workflow": "w", "recipient": "u"},
        {"id": "s", "type": "run.started", "occurred_at": TIMES[0], "run_id": "big"},
    ]
    for i in range(1_001):
        at = f"2026-11-01T10:{i // 60:02d}:{i % 60:02d}+00:00"
        events.append({"id": f"a{i}", "type": "step.started", "occurred_at": at, "run_id": "big", "step": f"s{i}", "step_type": "send_email", "attempt": 1})
        events.append(fact(i, "queued", f"m{i}", at) | {"id": f"q{i}", "run_id": "big", "step": f"s{i}"})
    log = open_log(store_path)
    ledger.append_batch(log, events)
    with open("examples/welcome-series.jsonl", "rb") as f:
        ledger.append_input(log, f)
    secret = keys.create_key(log.backend, "reader", "read")[1]
    log.close()
    with TestClient(create_app(store_path)) as client:
        client.post("/login", data={"api_key": secret, "next": "/"}, follow_redirects=False)
        client.api_key = secret  # type: ignore[attr-defined]
        yield client


def test_a_big_runs_page_shows_a_thousand_of_each_and_says_where_the_rest_is(big_site: Any) -> None:
    page = big_site.get("/runs/big").text
    assert _table_rows(page, "Steps") == 1000 and _table_rows(page, "Deliveries") == 1000
    assert "The first 1000 of 1001 step attempts" in page and "The first 1000 of 1001 messages" in page
    assert "GET /v1/runs/big" in page
    assert _history_numbers(page) == list(range(1, 1001))
    assert "Events 1 to 1000 of 2004." in page and 'id="history-first"' not in page
    later = re.search(r'href="(/runs/big\?after=(\d+)#history)" id="history-next"', page)
    assert later is not None
    # The next page starts after the last entry shown, at its log position.
    page = big_site.get(later.group(1).replace("#history", "")).text
    assert _history_numbers(page) == list(range(1001, 2001))
    assert 'id="history-first"' in page
    last = re.search(r'href="/runs/big\?after=(\d+)#history" id="history-next"', page)
    assert last is not None and int(last.group(1)) > int(later.group(2))
    page = big_site.get(f"/runs/big?after={last.group(1)}").text
    assert _history_numbers(page) == [2001, 2002, 2003, 2004]
    assert "Events 2001 to 2004 of 2004." in page and 'id="history-next"' not in page
    # The step trace and the deliveries are the run's first thousand on every page.
    assert _table_rows(page, "Steps") == 1000 and _table_rows(page, "Deliveries") == 1000


def test_a_big_runs_history_page_past_its_end_or_garbled_says_so(big_site: Any) -> None:
    page = big_site.get("/runs/big?after=999999999").text
    assert _history_numbers(page) == [] and "No events after log position 999999999; the run has 2004." in page
    for garbled in ("x", "-5", "1e3", "١٢", "9" * 40):
        page = big_site.get("/runs/big", params={"after": garbled}).text
        assert _history_numbers(page)[:1] == [1] and "Events 1 to 1000 of 2004." in page, garbled


def test_a_small_runs_page_shows_it_all_and_no_paging(big_site: Any) -> None:
    page = big_site.get("/runs/run-0001").text
    assert 'id="history-pages"' not in page and 'id="steps-cut"' not in page and 'id="deliveries-cut"' not in page
    assert _history_numbers(page)[0] == 1 and len(_history_numbers(page)) == _table_rows(page, "History")


# --- a page of the replay: the entries of the whole replay after a position, and no more


@SETTINGS
@given(st.data())
def test_a_page_of_the_replay_is_that_part_of_the_whole(data: Any) -> None:
    run_events = data.draw(run_histories(run_id=RUN))[0]
    messages = [data.draw(message_histories(f"m{i}", data.draw(st.sampled_from([RUN, None])))) for i in range(data.draw(st.integers(0, 3)))]
    # Message facts may be stored before the run's trigger: they join its first entry.
    events, streams = stored(interleave(data.draw, [run_events, *messages]))
    whole = run_history(RUN, events, streams)
    assert history_length(events, streams) == len(whole)
    positions = [0, *(h.event.position for h in whole), data.draw(st.integers(0, 200))]
    after = data.draw(st.sampled_from(positions))
    limit = data.draw(st.integers(1, 8))
    page = run_history(RUN, events, streams, after=after, limit=limit)
    assert page == [h for h in whole if h.event.position > after][:limit]


def test_the_api_pages_a_big_runs_history_as_the_whole(big_site: Any) -> None:
    key = {"X-API-Key": big_site.api_key}
    whole = big_site.get("/v1/runs/big/history", headers=key).json()["events"]
    assert len(whole) == 2004
    seen, after = [], 0
    while after is not None:
        page = big_site.get("/v1/runs/big/history", params={"after": after, "page_size": 700}, headers=key).json()
        seen += page["events"]
        after = page["page_info"]["after"]
    assert seen == whole
