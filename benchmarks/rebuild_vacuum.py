"""What a PostgreSQL rebuild's VACUUM costs, and what the queries right after a rebuild take
with it and without it (as before: autovacuum's next pass, minutes later, marked the rebuilt
tables' pages all visible; until then an index read alone visits the table for each entry).

    python benchmarks/rebuild_vacuum.py 'postgresql://postgres@127.0.0.1/test?schema=NAME' [--rounds 2]

The store (a PostgreSQL store with a log: `month_store.py` makes one) is rebuilt ROUNDS times
each way, in turn, in this process (with its helper process, as `flowledger rebuild`); right
after each, every runs mix of `filter_mixes.py` is timed three times. Printed, each rebuild's
seconds (its VACUUM's apart, and how many passes it took), then how many mixes passed 10 ms
at p50, the sum of their p50s, and the slowest; then the medians' ratios, with against
without.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from filter_mixes import _percentiles, run_mixes_of  # noqa: E402

from flowledger import ledger  # noqa: E402
from flowledger.store import open_log  # noqa: E402
from flowledger.store.postgres import PostgresBackend  # noqa: E402


def _vacuum_counts(log) -> dict[str, int]:
    """How many times each table of the store's schema was vacuumed by hand."""
    with log.backend.transaction(write=False) as c:
        c.execute(
            "SELECT relname, pg_stat_get_vacuum_count(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ? AND c.relkind = 'r'",
            (log.backend.schema,),
        )
        return dict(c.fetchall())


def rebuilt(url: str, vacuum: bool) -> tuple[float, float, int]:
    """Seconds of a whole rebuild and of its VACUUM alone (0 without it), and the VACUUM's
    passes (the most any table had: a table left with pages unmarked is passed again)."""
    spent = [0.0]
    real = PostgresBackend.vacuum

    def timed(self: PostgresBackend, tables: list[str]) -> None:
        started = time.perf_counter()
        real(self, tables)
        spent[0] += time.perf_counter() - started

    PostgresBackend.vacuum = timed if vacuum else (lambda self, tables: None)  # type: ignore[method-assign]
    log = open_log(url)
    try:
        before = _vacuum_counts(log)
        started = time.perf_counter()
        ledger.rebuild(log)
        seconds = time.perf_counter() - started
        after = _vacuum_counts(log)
        return seconds, spent[0], max(after[t] - before.get(t, 0) for t in after)
    finally:
        log.close()
        PostgresBackend.vacuum = real  # type: ignore[method-assign]


def mixes(url: str) -> list[tuple[float, str]]:
    """Every runs mix's p50 in ms (three times each), on the store as it stands."""
    log = open_log(url)
    try:
        with log.backend.transaction(write=False) as c:
            timed = []
            for name, call in run_mixes_of(c):
                samples = []
                for _ in range(3):
                    started = time.perf_counter()
                    call()
                    samples.append(time.perf_counter() - started)
                timed.append((_percentiles(samples)[0], name))
        return timed
    finally:
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="a PostgreSQL store URL (with ?schema=NAME)")
    parser.add_argument("--rounds", type=int, default=2, help="rebuilds each way, in turn")
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float, int, float]]] = {False: [], True: []}
    print(f"{'VACUUM':<8} {'rebuild s':>10} {'of it VACUUM s':>15} {'passes':>7} {'mixes > 10 ms':>14} {'sum of p50s ms':>15}  slowest mix")
    for _ in range(args.rounds):
        for vacuum in (False, True):
            seconds, vacuumed, passes = rebuilt(args.store, vacuum)
            timed = mixes(args.store)
            over, total = sum(p50 > 10 for p50, _ in timed), sum(p50 for p50, _ in timed)
            slowest = max(timed)
            results[vacuum].append((seconds, vacuumed, over, total))
            print(
                f"{'with' if vacuum else 'without':<8} {seconds:>10.1f} {vacuumed:>15.1f} {passes:>7} {over:>14} {total:>15,.0f}  "
                f"{slowest[0]:.1f} ms {slowest[1]}"
            )
    without, with_ = ([statistics.median(r[k] for r in results[v]) for k in range(4)] for v in (False, True))
    print(f"with / without, medians: rebuild {with_[0] / without[0]:.2f}x, sum of the mixes' p50s {with_[3] / without[3]:.2f}x")


if __name__ == "__main__":
    main()
