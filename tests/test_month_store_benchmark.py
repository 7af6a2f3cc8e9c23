"""The month store's generator (`benchmarks/month_store.py`): a workflow holding most runs
(``--busiest``), and the same runs as before where it is not asked; an import of older runs
(``--import``), valid input, set apart as late once appended after the month's runs."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
sys.path.insert(0, BENCHMARKS)
from month_store import imported, runs  # noqa: E402

from flowledger import ledger  # noqa: E402

END = datetime(2026, 12, 1, tzinfo=timezone.utc)


def _workflows(events) -> list[str]:
    return [e["workflow"] for e in events if e["type"] == "run.triggered"]


def test_the_busiest_workflow_holds_its_share_of_the_runs_and_the_rest_are_spread_over_all():
    flows = _workflows(runs(4000, END, busiest=0.9))
    share = flows.count("wf-0") / len(flows)
    # 90% and a fortieth of the other 10%, give or take the draw.
    assert 0.88 < share < 0.93, share
    assert len(set(flows)) == 40


def test_without_a_busiest_workflow_the_runs_are_those_made_before_it_could_be_asked():
    # The seeded draw unchanged: each of 40 workflows about a fortieth of the runs, the same
    # events whether the share is given as none or left out.
    plain = list(runs(2000, END))
    assert list(runs(2000, END, busiest=0)) == plain
    flows = _workflows(plain)
    assert max(flows.count(f"wf-{k}") for k in range(40)) < 0.05 * len(flows)


def test_an_import_is_runs_created_over_its_span_before_the_newest_and_set_apart_once_appended_last(log):
    events = list(imported(60, END, ago=30, span=6))
    triggers = [e for e in events if e["type"] == "run.triggered"]
    assert len(triggers) == 60 and len(events) == 180
    first, last = (END - timedelta(hours=36)).strftime("%Y-%m-%dT%H"), (END - timedelta(hours=30)).strftime("%Y-%m-%dT%H")
    assert {e["tenant"] for e in triggers} == {"t-import"}
    assert first <= min(e["occurred_at"] for e in triggers)[:13] and max(e["occurred_at"] for e in triggers)[:13] == last
    # Appended after the month's last day of runs (forty an hour: enough for its hours to
    # count), every imported run, none of the others, is set apart as late.
    month = list(runs(30 * 24 * 40, END))
    day = (END - timedelta(hours=24)).strftime("%Y-%m-%dT%H")
    recent = {e["run_id"] for e in month if e["type"] == "run.triggered" and e["occurred_at"] >= day}
    ledger.append_batch(log, [e for e in month if e["run_id"] in recent])
    ledger.append_batch(log, events)
    ledger.catch_up(log)
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT runs.tenant, COUNT(*) FROM run_late_seqs JOIN runs USING (seq) GROUP BY runs.tenant")
        assert [tuple(r) for r in c.fetchall()] == [("t-import", 60)]
