"""A date range of many runs: what `runs list --starting-at/--ending-at` (the web's Created
filter) and its counts by status cost on a store as it stands.

Opens STORE (a flowledger store whose views are folded, or made here), and times in-process
a page of an hour's runs from a random time of the log's and their counts by status, a page
of the whole log's range and its counts by status (the web's status chips), its stuck runs'
count (the Stuck chip) and every run's (the overview's), the busiest tenant's counts by
status (within the whole range too), stuck runs' pages (within the range or not, a first
page and the next, the second's page back to the first), a page of two statuses (completed
and failed, within the range or not), a page of the middle third of the range (with a
status or not) and a page of runs quiet since the range's middle (with no status, the
busiest tenant's, the running ones and theirs back to the first); then ranges open at one
end (since the last hour, until the first, since after the last run): p50 and p99 in ms.

    python benchmarks/date_ranges.py /var/tmp/flscale/store.db [--pages 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flowledger import ledger, queries  # noqa: E402
from flowledger.store import open_log  # noqa: E402


def _stamp(moment: datetime) -> str:
    """A time as the views store it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e3, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="a flowledger store (a SQLite file or a PostgreSQL URL)")
    parser.add_argument("--pages", type=int, default=100, help="pages timed each (counts: a fifth as many)")
    args = parser.parse_args()
    log = open_log(args.store)
    try:
        ledger.query(log, queries.counts)  # folds the views, if need be
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT MIN(created_at), MAX(created_at), COUNT(*) FROM runs")
            low, high, runs = c.fetchone()
        if not runs:
            raise SystemExit("the store has no runs")
        first, last = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (low, high))
        rng = random.Random(5)
        span = max(0.0, (last - first).total_seconds() - 3600)

        def an_hour() -> queries.RunFilters:
            start = first + timedelta(seconds=rng.uniform(0, span))
            return queries.RunFilters(starting_at=_stamp(start), ending_at=_stamp(start + timedelta(hours=1)))

        whole = queries.RunFilters(starting_at=_stamp(first), ending_at=_stamp(last))
        # Ranges open at one end, as the web's "Last 24 hours" (and 7 and 30 days) and
        # `runs list --starting-at` or `--ending-at` alone ask: the last hour's runs (the
        # newest), the first hour's (the oldest), and none (a time after the last run: "Last
        # 24 hours" of a store that has heard of no run since).
        since = queries.RunFilters(starting_at=_stamp(last - timedelta(hours=1)))
        until = queries.RunFilters(ending_at=_stamp(first + timedelta(hours=1)))
        after_all = queries.RunFilters(starting_at=_stamp(last + timedelta(seconds=1)))
        counts = max(1, args.pages // 5)

        def page(filters: queries.RunFilters) -> object:
            return ledger.query(log, queries.list_runs, filters, page_size=50, fresh=False)

        def count(filters: queries.RunFilters) -> object:
            return ledger.query(log, queries.run_status_counts, filters, fresh=False)

        # The run history's Stuck chip under the whole range (pending or running, no news
        # for an hour before the last run), and a tenant's chips (the busiest tenant's).
        stuck = queries.RunFilters(
            statuses=("pending", "running"), updated_before=_stamp(last - timedelta(hours=1)),
            starting_at=whole.starting_at, ending_at=whole.ending_at,
        )
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT tenant FROM runs WHERE tenant IS NOT NULL GROUP BY tenant ORDER BY COUNT(*) DESC LIMIT 1")
            busiest = c.fetchone()
        tenant = queries.RunFilters(tenant=busiest[0] if busiest else "none")
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT workflow FROM runs GROUP BY workflow ORDER BY COUNT(*) DESC LIMIT 1")
            (workflow,) = c.fetchone()
        tenant_range = queries.RunFilters(tenant=tenant.tenant, starting_at=whole.starting_at, ending_at=whole.ending_at)

        # Stuck runs' pages (the web's *Stuck*, with and without the range) and pages of
        # several statuses (`runs list --status completed --status failed`).
        stuck_page = dataclasses.replace(stuck, starting_at=None, ending_at=None)
        # The Stuck count under "Last 24 hours" (a range open at its end, from a time within
        # an hour) and under the busiest tenant.
        stuck_day = dataclasses.replace(stuck_page, starting_at=_stamp(last - timedelta(hours=24)))
        stuck_tenant = dataclasses.replace(stuck_page, tenant=tenant.tenant)
        stuck_tenant_range = dataclasses.replace(stuck, tenant=tenant.tenant)
        # The busiest workflow's (the run history under a workflow filter): its Stuck page
        # and count, with the range or not, and its chips' counts within the range.
        stuck_workflow = dataclasses.replace(stuck_page, workflow=workflow)
        stuck_workflow_range = dataclasses.replace(stuck, workflow=workflow)
        workflow_range = queries.RunFilters(workflow=workflow, starting_at=whole.starting_at, ending_at=whole.ending_at)
        # The busiest workflow's runs of the busiest tenant (the run history with both boxes).
        both = queries.RunFilters(workflow=workflow, tenant=tenant.tenant)
        stuck_both = dataclasses.replace(stuck_workflow, tenant=tenant.tenant)
        finished = queries.RunFilters(statuses=("completed", "failed"))
        finished_range = dataclasses.replace(finished, starting_at=whole.starting_at, ending_at=whole.ending_at)
        # A third of the log's range in its middle (ten days of a month): none of its runs
        # among the newest.
        third = (last - first) / 3
        middle = queries.RunFilters(starting_at=_stamp(first + third), ending_at=_stamp(first + 2 * third))
        middle_completed = dataclasses.replace(middle, statuses=("completed",))
        # Runs quiet since the middle of the range (`runs list --updated-before T`), with no
        # status, a tenant's, and the running ones.
        quiet = queries.RunFilters(updated_before=_stamp(first + (last - first) / 2))
        quiet_tenant = dataclasses.replace(quiet, tenant=tenant.tenant)
        quiet_running = dataclasses.replace(quiet, statuses=("running",))

        def next_page(filters: queries.RunFilters) -> object:
            first_page = page(filters)
            after = first_page["page_info"]["after"]  # type: ignore[index]
            return after and ledger.query(log, queries.list_runs, filters, page_size=50, after=after, fresh=False)

        def back_to_the_first(filters: queries.RunFilters) -> Callable[[], object]:
            # The page back from the second page to the first (the cursor found first, untimed).
            first_page = page(filters)
            after = first_page["page_info"]["after"]  # type: ignore[index]
            second = after and ledger.query(log, queries.list_runs, filters, page_size=50, after=after, fresh=False)
            before = second and second["page_info"]["before"]  # type: ignore[index]
            return lambda: before and ledger.query(log, queries.list_runs, filters, page_size=50, before=before, fresh=False)

        measures: list[tuple[str, Callable[[], object], int]] = [
            ("an hour's page", lambda: page(an_hour()), args.pages),
            ("an hour's counts", lambda: count(an_hour()), counts),
            ("the whole range's page", lambda: page(whole), args.pages),
            ("the whole range's counts", lambda: count(whole), counts),
            ("the whole range's stuck count", lambda: count(stuck), counts),
            ("every run's stuck count", lambda: count(stuck_page), counts),
            ("the last day's stuck count", lambda: count(stuck_day), counts),
            ("the busiest tenant's stuck count", lambda: count(stuck_tenant), counts),
            ("the same within the whole range", lambda: count(stuck_tenant_range), counts),
            ("the busiest workflow's stuck page", lambda: page(stuck_workflow), counts),
            ("the same within the whole range", lambda: page(stuck_workflow_range), counts),
            ("the busiest workflow's stuck count", lambda: count(stuck_workflow), counts),
            ("the same within the whole range", lambda: count(stuck_workflow_range), counts),
            ("the busiest workflow's counts", lambda: count(queries.RunFilters(workflow=workflow)), counts),
            ("its counts within the whole range", lambda: count(workflow_range), counts),
            ("its runs over time (its page's chart)", lambda: ledger.query(log, queries.runs_over_time, workflow, fresh=False), counts),
            ("its runs of the busiest tenant: counts", lambda: count(both), counts),
            ("the same: the stuck count", lambda: count(stuck_both), counts),
            ("the stuck page", lambda: page(stuck_page), counts),
            ("the stuck page within the range", lambda: page(stuck), counts),
            ("the stuck page and the next", lambda: next_page(stuck_page), counts),
            ("the stuck page back to the first", back_to_the_first(stuck_page), counts),
            ("two statuses' page", lambda: page(finished), counts),
            ("two statuses' page and the next", lambda: next_page(finished), counts),
            ("two statuses' page within the range", lambda: page(finished_range), counts),
            ("the middle third's page", lambda: page(middle), counts),
            ("the middle third's page and the next", lambda: next_page(middle), counts),
            ("the middle third's completed", lambda: page(middle_completed), counts),
            ("quiet since the middle: a page", lambda: page(quiet), counts),
            ("the same and the next", lambda: next_page(quiet), counts),
            ("the same of the busiest tenant", lambda: page(quiet_tenant), counts),
            ("the same of the running runs", lambda: page(quiet_running), counts),
            ("the same back to the first", back_to_the_first(quiet_running), counts),
            ("the busiest tenant's counts", lambda: count(tenant), counts),
            ("the same within the whole range", lambda: count(tenant_range), counts),
            ("since the last hour: page", lambda: page(since), args.pages),
            ("since the last hour: counts", lambda: count(since), counts),
            ("until the first hour: page", lambda: page(until), args.pages),
            ("until the first hour: counts", lambda: count(until), counts),
            ("since after the last run: page", lambda: page(after_all), args.pages),
            ("since after the last run: counts", lambda: count(after_all), counts),
        ]
        print(f"{runs:,} runs from {low} to {high}")
        print(f"{'measure':33} {'p50 ms':>9} {'p99 ms':>9}")
        for name, call, n in measures:
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                call()
                samples.append(time.perf_counter() - started)
            p50, p99 = _percentiles(samples)
            print(f"{name:33} {p50:9.2f} {p99:9.2f}")
    finally:
        log.close()


if __name__ == "__main__":
    main()
