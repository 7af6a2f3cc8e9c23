"""Every mix of the listings' filters on a store as it stands: what a page of `runs list`
(and the web's run history) and its counts by status, and a page of `deliveries list` (and
the web's /deliveries), cost under each.

Opens STORE (a flowledger store whose views are folded, or made here) and times in-process,
for every mix of the runs' filters (a workflow, a tenant and a recipient, each the newest
run's; runs with errors; no status, one, two and one no run has; no range, the last 24 hours
before the newest run, a week in the middle of the log's range; quiet since an hour before
the newest run or not), a first page of 25 and its counts by status; and for every mix of the
deliveries' (a run and a recipient, those of a message of the newest run's; each channel and
none; each status and none), a first page of 25. Each is timed REPEATS times; the slowest
mixes by p50 are printed with their p50 and p99 in ms, then how many of them all passed 10
ms at p50 and p99 (the query target), and the slowest of each kind.

    python benchmarks/filter_mixes.py /var/tmp/month.db [--repeats 5] [--show 20]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flowledger import ledger, queries  # noqa: E402
from flowledger.store import open_log  # noqa: E402

RUN_STATUSES = [(), ("failed",), ("completed", "failed"), ("paused",), ("pending", "running")]
CHANNELS = [None, "email", "sms", "whatsapp", "push"]
DELIVERY_STATUSES = [None, "queued", "sent", "delivered", "read", "opened", "clicked", "bounced", "failed"]


def _stamp(moment: datetime) -> str:
    """A time as the views store it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e3, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3


def run_mixes(c, newest: dict[str, str], first: datetime, last: datetime) -> list[tuple[str, Callable[[], object]]]:
    """Every runs mix as (its name, a call of its page or counts)."""
    ranges = {
        "": (None, None),
        "last 24 h": (_stamp(last - timedelta(hours=24)), None),
        "a middle week": (_stamp(first + (last - first) / 2 - timedelta(days=3.5)), _stamp(first + (last - first) / 2 + timedelta(days=3.5))),
    }
    quiet = _stamp(last - timedelta(hours=1))
    mixes = []
    names = ["workflow", "tenant", "recipient", "has_errors"]
    for k in range(len(names) + 1):
        for narrow in itertools.combinations(names, k):
            given = {n: (True if n == "has_errors" else newest[n]) for n in narrow}
            for statuses, (label, (since, until)), heard in itertools.product(RUN_STATUSES, ranges.items(), (False, True)):
                filters = queries.RunFilters(statuses=statuses, starting_at=since, ending_at=until, updated_before=quiet if heard else None, **given)
                name = " ".join([*narrow, *(f"status={s}" for s in statuses), label, "quiet since T" if heard else ""]).strip() or "no filter"
                mixes.append((f"runs page: {' '.join(name.split())}", lambda f=filters: queries.list_runs(c, f, page_size=25)))
                mixes.append((f"runs counts: {' '.join(name.split())}", lambda f=filters: queries.run_status_counts(c, f)))
    return mixes


def run_mixes_of(c) -> list[tuple[str, Callable[[], object]]]:
    """:func:`run_mixes` of the store ``c`` reads: its newest run's workflow, tenant and
    recipient, and the span of its runs' creation times."""
    c.execute("SELECT MIN(created_at), MAX(created_at) FROM runs")
    low, high = c.fetchone()
    if low is None:
        raise SystemExit("the store has no runs")
    c.execute("SELECT workflow, tenant, recipient FROM runs ORDER BY seq DESC LIMIT 1")
    workflow, tenant, recipient = c.fetchone()
    first, last = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (low, high))
    newest = {"workflow": workflow, "tenant": tenant or "none", "recipient": recipient or "none"}
    return run_mixes(c, newest, first, last)


def delivery_mixes(c, run_id: str | None, recipient: str | None) -> list[tuple[str, Callable[[], object]]]:
    """Every deliveries mix as (its name, a call of its page)."""
    mixes = []
    for who, channel, status in itertools.product(("", "run", "recipient", "run and recipient"), CHANNELS, DELIVERY_STATUSES):
        filters = queries.DeliveryFilters(
            run_id if "run" in who else None, channel, (status,) if status else (), recipient if "recipient" in who else None
        )
        name = " ".join(p for p in (who, channel or "", status or "") if p) or "no filter"
        mixes.append((f"deliveries page: {name}", lambda f=filters: queries.list_deliveries(c, f, page_size=25)))
    return mixes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="a flowledger store (a SQLite file or a PostgreSQL URL)")
    parser.add_argument("--repeats", type=int, default=5, help="times each mix is timed")
    parser.add_argument("--show", type=int, default=20, help="the slowest mixes printed")
    args = parser.parse_args()
    log = open_log(args.store)
    try:
        ledger.query(log, queries.counts)  # folds the views, if need be
        with log.backend.transaction(write=False) as c:
            runs = run_mixes_of(c)
            c.execute("SELECT run_id, recipient FROM deliveries ORDER BY seq DESC LIMIT 1")
            message = c.fetchone() or (None, None)
            mixes = runs + delivery_mixes(c, *message)
            timed = []
            for name, call in mixes:
                samples = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    call()
                    samples.append(time.perf_counter() - start)
                timed.append((*_percentiles(samples), name))
    finally:
        log.close()
    timed.sort(reverse=True)
    print(f"{len(timed)} mixes, each timed {args.repeats} times (in-process, one read transaction); the slowest by p50:")
    print(f"{'p50 ms':>8} {'p99 ms':>8}  mix")
    for p50, p99, name in timed[: args.show]:
        print(f"{p50:8.2f} {p99:8.2f}  {name}")
    over = [t for t in timed if t[0] > 10 or t[1] > 10]
    # A p99 of a few repeats is their slowest: one read from a cold cache shows there alone.
    print(f"over 10 ms (p50 or p99): {len(over)} of {len(timed)}; at p50: {sum(t[0] > 10 for t in timed)}")
    for kind in ("runs page", "runs counts", "deliveries page"):
        worst = max((t for t in timed if t[2].startswith(kind)), default=None)
        if worst is not None:
            print(f"slowest {kind}: {worst[0]:.2f} / {worst[1]:.2f} ms ({worst[2].split(': ', 1)[1]})")


if __name__ == "__main__":
    main()
