"""Where a rebuild of a SQLite store spends its time: each half of the views (the one the
rebuilding process folds, the one its helper folds) rebuilt alone, in this process, with
its fold, its query indexes and its copy into the store timed apart; then a whole rebuild,
both halves at once, for comparison.

    python benchmarks/phases.py STORE [--repeats N]

STORE is a SQLite store with a log (`run.py --dir` or `scale.py --dir` leave one). Its
views are rebuilt, so they end as they would after `flowledger rebuild`. A whole rebuild
runs the two halves at once, one in a helper process, and ends with the longer one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from flowledger.projections.base import View
from flowledger.projections.helper import split_views
from flowledger.projections.projector import REBUILD_PHASES as PHASES
from flowledger.projections.projector import Projector
from flowledger.store.sqlite import SQLiteBackend


def half(backend: SQLiteBackend, views: Sequence[View]) -> tuple[dict[str, float], int]:
    """Rebuild ``views`` alone, in this process: seconds per phase, and events read."""
    seconds: dict[str, float] = {}
    events = Projector(backend).rebuild_staged(views, seconds=seconds)
    return seconds, events


def whole(backend: SQLiteBackend) -> tuple[float, int]:
    """Seconds and events of a whole rebuild (both halves at once, in two processes)."""
    start = time.perf_counter()
    events = Projector(backend).rebuild()
    return time.perf_counter() - start, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="A SQLite store file with a log.")
    parser.add_argument("--repeats", type=int, default=1, help="Times to measure each (medians are printed).")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be 1 or more")
    backend = SQLiteBackend(args.store, create=False)
    try:
        projector = Projector(backend)
        projector.ensure_tables()
        halves = [h for h in split_views(projector.views) if h]
        # In turn, each repeat every measure once: the machine's speed drifts over minutes.
        measured: list[list[tuple[dict[str, float], int]]] = [[] for _ in halves]
        wholes = []
        for _ in range(args.repeats):
            for views, found in zip(halves, measured):
                found.append(half(backend, views))
            wholes.append(whole(backend))
    finally:
        backend.close()
    rows = [
        (", ".join(v.name for v in views), [statistics.median(s[p] for s, _ in found) for p in PHASES], found[0][1])
        for views, found in zip(halves, measured)
    ]
    whole_seconds, events = statistics.median(s for s, _ in wholes), wholes[0][1]
    print(f"store: {args.store}; events: {events:,}; medians of {args.repeats}")
    print(f"{'views':<22}" + "".join(f"{p:>21}" for p in (*PHASES, "whole")) + f"{'events/s':>12}{'to whole':>10}")
    for name, medians, n in rows:
        total = sum(medians)  # of the phases' medians
        cells = "".join(f"{s:>19.2f} s" for s in (*medians, total))
        print(f"{name:<22}{cells}{n / total:>12,.0f}{total / whole_seconds:>9.2f}x")
    print(f"{'every view (2 cores)':<22}{'':>{21 * len(PHASES)}}{whole_seconds:>19.2f} s{events / whole_seconds:>12,.0f}{1:>9.2f}x")
    longer = max(sum(m) for _, m, _ in rows)
    even = sum(sum(m) for _, m, _ in rows) / len(rows)
    print(
        f"the longer half alone: {longer:.1f} s; halves made even: {even:.1f} s "
        f"({events / even:,.0f} events/s, {1 - even / longer:.0%} less than the longer half)"
    )


if __name__ == "__main__":
    main()
