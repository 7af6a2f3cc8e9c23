"""The 10-million-event run, streamed from a file so that no measure holds the workload in
memory: `flowledger append` of the whole file, a rebuild of every view, and the queries;
with ``--webhooks``, the webhook measure too.

    python benchmarks/scale.py --events 10000000 --dir /var/tmp/flscale [--webhooks]

Takes 13 to 30 minutes (10 more with ``--webhooks``) and some 15 GB of disk on a 2-core
machine; the raw baseline is measured on the same file in the same run.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import time
from array import array

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import in_batches, query_latency, raw_read, rebuild, remove_files, timed_appends  # noqa: E402
from workload import ENGAGEMENT, IDS, workload  # noqa: E402

from flowledger import ledger  # noqa: E402
from flowledger.store import open_log  # noqa: E402

PEAK = (
    "import sys; sys.argv = sys.argv[1:]; "
    "sys.argv[0] = 'flowledger'; "
    "from flowledger.cli import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "print(next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr)"
)


def raw_from_file(path: str, source: str) -> float:
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("CREATE TABLE events (id TEXT, stream TEXT, type TEXT, body BLOB)")
    c.execute("CREATE UNIQUE INDEX events_id ON events (id)")
    n = 0
    started = time.perf_counter()
    batch = []
    with open(source, "rb") as f:
        for line in f:
            e = orjson.loads(line)
            batch.append((f"{e['id']}#{n}", e.get("run_id") or e["message_id"], e["type"], line))
            n += 1
            if len(batch) == 10_000:
                c.execute("BEGIN")
                c.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", batch)
                c.execute("COMMIT")
                batch = []
    if batch:
        c.execute("BEGIN")
        c.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", batch)
        c.execute("COMMIT")
    seconds = time.perf_counter() - started
    c.close()
    return n / seconds


def webhooks_from_file(folder: str, source: str) -> tuple[float, int]:
    """Events/s of the webhook measure at this size, and how many events it appends: the
    engagement events, appended in batches of 1 to 100 (each its own call and transaction,
    as in run.py) onto a store that holds every other event (appended first, untimed).

    The engagement lines wait in a file of their own, each batch read from it as its turn
    comes: held in memory they made this process alone weigh 885 MB at 10M."""
    store = os.path.join(folder, "hooks.db")
    core = os.path.join(folder, "core.jsonl")
    engagement = os.path.join(folder, "engagement.jsonl")
    remove_files(store, core, engagement)
    lengths = array("I")  # 4 bytes a line
    with open(source, "rb") as f, open(core, "wb") as out, open(engagement, "wb") as hooks:
        for line in f:
            if orjson.loads(line)["type"] in ENGAGEMENT:
                hooks.write(line)
                lengths.append(len(line))
            else:
                out.write(line)
    log = open_log(store)
    with open(core, "rb") as f:
        ledger.append_input(log, f)
    os.remove(core)
    # The same batches as run.py's, as byte counts: the timed loop only reads and appends.
    sizes = [sum(batch) for batch in in_batches(lengths)]
    with open(engagement, "rb") as hooks:
        seconds = timed_appends(log, (hooks.read(size) for size in sizes))
    log.close()
    remove_files(store, engagement)
    return len(lengths) / seconds, len(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--ids", choices=IDS, default="uuid", help="Random UUIDs (default) or readable, growing ids.")
    parser.add_argument("--rebuilds", type=int, default=1, help="Rebuilds to take the median of (default 1: each takes minutes).")
    parser.add_argument("--webhooks", action="store_true", help="Also measure webhook batches (about 10 more minutes at 10M).")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    source = os.path.join(args.dir, f"events-{args.events}-{args.ids}.jsonl")
    if not os.path.exists(source):
        with open(source, "wb") as f:
            for e in workload(args.events, ids=args.ids):
                f.write(orjson.dumps(e) + b"\n")
    store = os.path.join(args.dir, "store.db")
    raw_db = os.path.join(args.dir, "raw.db")
    remove_files(store, raw_db)
    raw = raw_from_file(raw_db, source)
    remove_files(raw_db)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, "flowledger", "--store", store, "append", source],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    summary = orjson.loads(proc.stdout.strip().splitlines()[-1])
    append_rss = int(proc.stderr.strip().splitlines()[-1])
    total = summary["appended"] + summary["duplicates"]
    rate = total / seconds
    c = sqlite3.connect(store)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    size = os.path.getsize(store) / summary["appended"]
    reference = raw_read(store)
    rebuild_rate, rebuild_rss, helper_rss, rates = rebuild(store, times=args.rebuilds)
    # Before the webhook measure: its store, as large again, would push this one's pages
    # out of the OS cache, and the queries would measure the disk.
    latency = query_latency(store)
    hooks_rate, hooks_n = webhooks_from_file(args.dir, source) if args.webhooks else (0.0, 0)
    print(f"events: {total:,}; ids: {args.ids}; machine: {os.cpu_count()} cores; sqlite {sqlite3.sqlite_version}")
    print(f"{'measure':<44} {'events/s':>12} {'ratio':>8}")
    print(f"{'raw sqlite3 executemany (baseline)':<44} {raw:>12,.0f} {1:>7.2f}x")
    print(f"{'flowledger append (CLI, whole file)':<44} {rate:>12,.0f} {rate / raw:>7.2f}x")
    if args.webhooks:
        label = f"webhook batches of 1-100 ({hooks_n:,} events)"
        print(f"{label:<44} {hooks_rate:>12,.0f} {hooks_rate / raw:>7.2f}x (target >= 0.25x raw)")
    print(f"{'rebuild every view from 0':<44} {rebuild_rate:>12,.0f} {rebuild_rate / 100_000:>7.2f}x of 100k/s"
          f" (median of {', '.join(f'{r:,.0f}' for r in rates)})")
    print(f"{'raw read + orjson.loads, pages of 1,000':<44} {reference:>12,.0f} {rebuild_rate / reference:>7.2f}x (rebuild to it)")
    print(f"peak RSS: append {append_rss / 2**20:,.0f} MiB, rebuild {rebuild_rss / 2**20:,.0f} MiB "
          f"(and at most {helper_rss / 2**20:,.0f} MiB in its helper process); "
          f"log bytes per event: {size:,.0f}")
    print(f"{'query (in-process, views caught up)':<44} {'p50 ms':>8} {'p99 ms':>8}")
    for name, (p50, p99) in latency.items():
        print(f"{name:<44} {p50:>8.2f} {p99:>8.2f}")


if __name__ == "__main__":
    main()
