"""Many workflows: what the web pages and the workflow list cost as a workspace's
workflows grow from dozens to tens of thousands.

The workload has a few dozen workflows. A platform keeping its customers' workflows in
one store (a `tenant` each) can have thousands. This script makes a store of each size
(runs of two or three events, two and a half runs a workflow), folds the views, and times
in-process, through the HTTP app: the overview page (`/`), the run history (`/runs`), the
workflows page (`/workflows`), a page of `GET /v1/workflows?page_size=100`, and, for
scale, the whole `GET /v1/workflows` and `GET /v1/counts` (every workflow by design);
then a follower's live catch-up after each of 40 webhook-sized batches (50 deliveries
each: the median), which writes the views' counter tables, a few rows a workflow.
Printed: milliseconds, the answer's bytes, and each size's time as a ratio to the
smallest size's (1.0: it costs the same however many workflows there are).

    python benchmarks/many_workflows.py --sizes 200,2000,20000 --dir /var/tmp/manywf
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

warnings.filterwarnings("ignore", message=".*httpx.*")  # the test client's own notice
from fastapi.testclient import TestClient  # noqa: E402

from flowledger import ledger  # noqa: E402
from flowledger.api import keys  # noqa: E402
from flowledger.api.app import create_app  # noqa: E402
from flowledger.store import open_log  # noqa: E402

PAGES = ("/", "/runs", "/workflows", "/v1/workflows?page_size=100", "/v1/workflows", "/v1/counts")


def runs(workflows: int) -> int:
    """Two and a half runs a workflow."""
    return workflows * 5 // 2


def events(workflows: int) -> list[dict[str, Any]]:
    """The runs (keys like a tenant's: ``tenant-00012/flow-3``), each triggered and started,
    with an email step that queues and sends a message; two in three completed."""
    out: list[dict[str, Any]] = []
    for r in range(runs(workflows)):
        w = r % workflows
        run, message = f"run-{r:07d}", f"msg-{r:07d}"
        at = f"2026-11-{1 + r % 28:02d}T{r // 60 % 24:02d}:{r % 60:02d}:00Z"
        key = f"tenant-{w // 4:05d}/flow-{w % 4}"
        step = {"run_id": run, "step": "email", "step_type": "send_email", "attempt": 1}
        out += [
            {"id": f"t{r}", "type": "run.triggered", "occurred_at": at, "run_id": run, "workflow": key,
             "recipient": f"user-{r % 5000}", "tenant": f"tenant-{w // 4:05d}"},
            {"id": f"s{r}", "type": "run.started", "occurred_at": at, "run_id": run},
            {"id": f"a{r}", "type": "step.started", "occurred_at": at, **step},
            {"id": f"q{r}", "type": "message.queued", "occurred_at": at, "message_id": message, "channel": "email",
             "recipient": f"user-{r % 5000}", "run_id": run, "step": "email", "provider": "sendgrid"},
            {"id": f"b{r}", "type": "step.succeeded", "occurred_at": at, **step},
            {"id": f"m{r}", "type": "message.sent", "occurred_at": at, "message_id": message},
        ]
        if r % 3:
            out.append({"id": f"c{r}", "type": "run.completed", "occurred_at": at, "run_id": run})
    return out


def live_catch_up(path: str, workflows: int, batches: int = 40, size: int = 50) -> float:
    """The median of a follower's catch-up after each batch of deliveries (seconds)."""
    rng = random.Random(7)
    # Messages of the same first 500 runs at every size: what a catch-up reads back of a
    # message's earlier facts is then alike, and only the views' tables grow.
    total = min(runs(workflows), 500)
    log = open_log(path)
    try:
        times = []
        for b in range(batches):
            ledger.append_batch(log, [
                {"id": f"d{b}-{i}", "type": "message.delivered", "occurred_at": "2026-11-29T00:00:00Z",
                 "message_id": f"msg-{rng.randrange(total):07d}"}
                for i in range(size)
            ])
            t0 = time.perf_counter()
            ledger.catch_up(log)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    finally:
        log.close()


def measure(directory: str, workflows: int, repeats: int) -> dict[str, tuple[float, int]]:
    path = os.path.join(directory, f"workflows-{workflows}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    log = open_log(path)
    try:
        batch = events(workflows)
        for start in range(0, len(batch), 10_000):
            ledger.append_batch(log, batch[start : start + 10_000])
        ledger.catch_up(log)
        secret = keys.create_key(log.backend, "bench", "read")[1]
    finally:
        log.close()
    found: dict[str, tuple[float, int]] = {}
    with TestClient(create_app(path, follow=False)) as client:
        client.post("/login", data={"api_key": secret, "next": "/"}, follow_redirects=False)
        headers = {"X-API-Key": secret}
        for page in PAGES:
            best, size = float("inf"), 0
            for _ in range(repeats + 1):  # the first call warms the cache
                t0 = time.perf_counter()
                answer = client.get(page, headers=headers if page.startswith("/v1") else {})
                best = min(best, time.perf_counter() - t0)
                if answer.status_code != 200:
                    raise SystemExit(f"{page}: {answer.status_code} {answer.text[:200]}")
                size = len(answer.content)
            found[page] = (best, size)
    found["live catch-up, a batch of 50"] = (live_catch_up(path, workflows), 0)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,2000,20000", help="workflows a store, comma-separated (smallest first)")
    parser.add_argument("--repeats", type=int, default=5, help="calls timed each, after one to warm up; the fastest is shown")
    parser.add_argument("--dir", default=None, help="where the stores go (default a temporary folder)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    directory = args.dir or tempfile.mkdtemp(prefix="flowledger-manywf-")
    os.makedirs(directory, exist_ok=True)
    smallest: dict[str, float] = {}
    print(f"{'workflows':>9}  {'page':30} {'ms':>8} {'bytes':>11} {'ratio':>7}")
    for size in sizes:
        for page, (seconds, length) in measure(directory, size, args.repeats).items():
            smallest.setdefault(page, seconds)
            shown = f"{length:>11,}" if length else f"{'':>11}"
            print(f"{size:>9,}  {page:30} {seconds * 1e3:8.1f} {shown} {seconds / smallest[page]:6.1f}x")
    print("ratio: the time against the smallest store's (1.0x: it does not grow with the workflows)")


if __name__ == "__main__":
    main()
