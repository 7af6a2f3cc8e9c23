"""Big runs: what an auditor's replay and ``runs show`` cost as one run grows.

The workload's runs are small (about 15 events). Some real runs are not: a digest or a
broadcast step queues thousands of messages under one run, a long-lived run loops through
thousands of steps, a link scanner clicks one email's links thousands of times. This
script makes one run of each shape at each size, stores it, folds the views, and times the
replay (every entry with the run's record after it), the record after the last entry
(`replay --at`) and ``runs show``, in-process. Printed: milliseconds, microseconds an
event, and each size's cost an event as a ratio to the smallest size's (1.0: the work
grows with the run; 10.0 at ten times the size: it grows with the square of it).

    python benchmarks/big_runs.py --sizes 1000,10000 --dir /var/tmp/bigruns
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flowledger import ledger, queries  # noqa: E402
from flowledger.store import open_log  # noqa: E402

RUN = "big-run"


def _event(n: int, kind: str, **fields: Any) -> dict[str, Any]:
    second = n % 86_400
    at = f"2026-11-01T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
    return {"id": f"e{n}", "type": kind, "occurred_at": at, **fields}


def shape(name: str, size: int) -> list[dict[str, Any]]:
    """One run of ``size`` units: messages (queued + delivered each), clicks of one email,
    or steps (each started and queuing one message)."""
    events = [
        _event(0, "run.triggered", run_id=RUN, workflow="digest", recipient="user-1"),
        _event(1, "run.started", run_id=RUN),
    ]
    n = 2
    if name == "clicks":
        events.append(_event(n, "message.queued", message_id="m", channel="email", recipient="user-1", run_id=RUN, step="s"))
        events.append(_event(n + 1, "message.delivered", message_id="m"))
        n += 2
    for i in range(size):
        if name == "messages":
            events.append(_event(n, "message.queued", message_id=f"m{i}", channel="email", recipient=f"u{i}", run_id=RUN, step="blast"))
            events.append(_event(n + 1, "message.delivered", message_id=f"m{i}"))
        elif name == "clicks":
            events.append(_event(n, "message.clicked", message_id="m", url=f"https://example.com/{i % 7}"))
        else:
            events.append(_event(n, "step.started", run_id=RUN, step=f"s{i}", step_type="send_email", attempt=1))
            events.append(_event(n + 1, "message.queued", message_id=f"m{i}", channel="email", recipient="user-1", run_id=RUN, step=f"s{i}"))
        n += 2
    return events


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` calls, in seconds (the machines are shared and noisy)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(directory: str, name: str, size: int, repeats: int) -> dict[str, tuple[float, int]]:
    path = os.path.join(directory, f"{name}-{size}.db")
    events = shape(name, size)
    log = open_log(path)
    try:
        for start in range(0, len(events), 5_000):
            ledger.append_batch(log, events[start : start + 5_000])
        ledger.catch_up(log)
        history = ledger.replay(log, RUN, fresh=False)
        return {
            "replay": (timed(lambda: ledger.replay(log, RUN, fresh=False), repeats), len(history)),
            "record after the last": (
                timed(lambda: ledger.query(log, queries.replay_detail, RUN, log.backend, fresh=False), repeats),
                len(history),
            ),
            "runs show": (timed(lambda: ledger.show_run(log, RUN, fresh=False), repeats), len(history)),
        }
    finally:
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="units a run, comma-separated (smallest first)")
    parser.add_argument("--repeats", type=int, default=3, help="calls timed each; the fastest is shown")
    parser.add_argument("--dir", default=None, help="where the stores go (default a temporary folder)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    directory = args.dir or tempfile.mkdtemp(prefix="flowledger-bigruns-")
    os.makedirs(directory, exist_ok=True)
    print(f"{'run shape':10} {'size':>7} {'events':>7}  {'measure':22} {'ms':>9} {'µs/event':>9} {'ratio':>7}")
    for name in ("messages", "clicks", "steps"):
        smallest: dict[str, float] = {}
        for size in sizes:
            for what, (seconds, entries) in measure(directory, name, size, args.repeats).items():
                per_event = seconds / entries * 1e6
                smallest.setdefault(what, per_event)
                ratio = per_event / smallest[what]
                print(f"{name:10} {size:>7,} {entries:>7,}  {what:22} {seconds * 1e3:9.1f} {per_event:9.1f} {ratio:6.2f}x")
    print("ratio: the cost an event against the smallest size's (1.0x: linear in the run's events)")


if __name__ == "__main__":
    main()
