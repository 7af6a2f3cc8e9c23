"""The month store's generator (`benchmarks/month_store.py`): a workflow holding most runs
(``--busiest``), and the same runs as before where it is not asked."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
sys.path.insert(0, BENCHMARKS)
from month_store import runs  # noqa: E402

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
