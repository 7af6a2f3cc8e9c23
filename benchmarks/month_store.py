"""A month of many runs: makes a store for `benchmarks/date_ranges.py` and the web's run
history (*Last 30 days*, a tenant, *Stuck*) at a million runs, where `run.py`'s workload has
about 60,000 runs a million events.

Appends RUNS runs created evenly over the 30 days before two hours ago, each triggered (one
of 40 workflows, 5 tenants, 200,000 recipients) and started, then 85% completed, 5% failed
and 10% left running (stuck: no news for two hours or more); with --active-hours H, those
created in the last H hours are running still, heard of every 20 minutes until the newest
run's creation (not stuck: a live store's); with --workflows W, of W workflows rather than
40 (1: one workflow holds every run, its page and chips as the whole store's); with
--busiest S, a share S of them of the first (wf-0), the rest spread over every workflow (a
workflow holding most runs, not all); with --import N, then N runs more of tenant `t-import`,
created evenly over the --import-span hours (24) ending --import-ago hours (336) before the
newest run, each completed, appended after every other run (an older export imported into a
live store: runs set apart as late); then folds the views. Seeded: the same RUNS give the
same runs but for their times, which follow the clock.

    python benchmarks/month_store.py /var/tmp/month.db [--runs 1000000] [--active-hours 24] [--workflows 40] [--busiest 0.9]
        [--import 10000 [--import-ago 336] [--import-span 24]]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flowledger import ledger  # noqa: E402
from flowledger.store import open_log  # noqa: E402


def _stamp(moment: datetime) -> str:
    """A time as the log stores it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def runs(n: int, end: datetime, seed: int = 7, active_hours: float = 0, workflows: int = 40, busiest: float = 0) -> Any:
    """The runs' events, a run at a time, the last created at ``end``, of ``workflows``
    workflows (a ``busiest`` share of them of the first, the rest spread over all); those
    created in the last ``active_hours`` before it running still, a step every 20 minutes
    until ``end``."""
    rng = random.Random(seed)
    start = end - timedelta(days=30)
    step = (end - start) / n
    active_since = end - timedelta(hours=active_hours)
    for i in range(n):
        at = start + step * (i + 1)
        run = f"run-{i:08d}"
        # (No draw for the busiest workflow unless asked: the seeded runs stay as they were.)
        workflow = "wf-0" if busiest and rng.random() < busiest else f"wf-{rng.randrange(workflows)}"
        yield {
            "id": f"e{i}-t", "type": "run.triggered", "occurred_at": _stamp(at), "run_id": run,
            "workflow": workflow, "recipient": f"user-{rng.randrange(200_000)}",
            "tenant": f"t{rng.randrange(5)}", "trigger": {"source": "api"},
        }
        yield {"id": f"e{i}-s", "type": "run.started", "occurred_at": _stamp(at + timedelta(seconds=1)), "run_id": run}
        if active_hours and at > active_since:
            beat, k = end - timedelta(seconds=1), 0
            while beat > at:
                fact = {"run_id": run, "step": f"wait-{k}", "step_type": "delay", "attempt": 1, "occurred_at": _stamp(beat)}
                yield {"id": f"e{i}-b{k}", "type": "step.started", **fact}
                yield {"id": f"e{i}-d{k}", "type": "step.succeeded", **fact}
                beat, k = beat - timedelta(minutes=20), k + 1
            continue
        fate = rng.random()
        done = _stamp(at + timedelta(seconds=30))
        if fate < 0.85:
            yield {"id": f"e{i}-c", "type": "run.completed", "occurred_at": done, "run_id": run}
        elif fate < 0.90:
            yield {"id": f"e{i}-f", "type": "run.failed", "occurred_at": done, "run_id": run, "error": "gave up"}


def imported(n: int, newest: datetime, ago: float, span: float) -> Any:
    """``n`` runs of tenant ``t-import`` created evenly over ``span`` hours ending ``ago``
    hours before ``newest``, each triggered, started and completed (an import of older runs)."""
    end = newest - timedelta(hours=ago)
    step = timedelta(hours=span) / n
    for i in range(n):
        at, run = end - timedelta(hours=span) + step * (i + 1), f"imported-{i:08d}"
        yield {
            "id": f"i{i}-t", "type": "run.triggered", "occurred_at": _stamp(at), "run_id": run,
            "workflow": f"wf-{i % 40}", "recipient": f"user-{i % 200_000}", "tenant": "t-import",
            "trigger": {"source": "integration"},
        }
        yield {"id": f"i{i}-s", "type": "run.started", "occurred_at": _stamp(at + timedelta(seconds=1)), "run_id": run}
        yield {"id": f"i{i}-c", "type": "run.completed", "occurred_at": _stamp(at + timedelta(seconds=30)), "run_id": run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="a new store: a SQLite file (or a PostgreSQL URL)")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument(
        "--active-hours", type=float, default=0,
        help="runs created in these last hours still running and heard of every 20 minutes (a live store's Stuck)",
    )
    parser.add_argument("--workflows", type=int, default=40, help="the number of workflows the runs are of")
    parser.add_argument(
        "--busiest", type=float, default=0,
        help="the share of the runs of the first workflow, wf-0 (the rest spread over every workflow)",
    )
    parser.add_argument(
        "--import", dest="imported", type=int, default=0,
        help="runs more, created in the past and appended after every other (set apart as late)",
    )
    parser.add_argument("--import-ago", type=float, default=336, help="hours before the newest run the import's newest was created")
    parser.add_argument("--import-span", type=float, default=24, help="hours the import's runs were created over")
    args = parser.parse_args()
    log = open_log(args.store)
    try:
        if ledger.head(log):
            raise SystemExit(f"{args.store} holds events already: give a new store")
        started = time.perf_counter()
        batch: list[dict[str, Any]] = []
        end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
        made = runs(args.runs, end, active_hours=args.active_hours, workflows=args.workflows, busiest=args.busiest)
        later = imported(args.imported, end, args.import_ago, args.import_span) if args.imported else ()
        for event in itertools.chain(made, later):
            batch.append(event)
            if len(batch) == 10_000:
                ledger.append_batch(log, batch)
                batch = []
        if batch:
            ledger.append_batch(log, batch)
        appended = time.perf_counter()
        ledger.catch_up(log)
        print(f"{args.runs:,} runs, {ledger.head(log):,} events: appended in {appended - started:.0f} s, "
              f"folded in {time.perf_counter() - appended:.0f} s")
    finally:
        log.close()


if __name__ == "__main__":
    main()
