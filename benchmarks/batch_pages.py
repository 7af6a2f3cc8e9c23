"""What a webhook batch's commit writes: pages per batch, and which tables they belong to.

The runner (run.py) measures webhook batches of 1 to 100 against the raw baseline; this
script says why the ratio is what it is. It appends the same batches onto the same store
(the workload's engagement webhooks, onto the runs stored before them) three ways, with the
write-ahead log never checkpointed while the batches are timed, and reads the log's frames
afterwards: each frame is one page written by one commit, and its page number names the
table or index it belongs to (SQLite's dbstat). Printed: events/s, milliseconds and pages
per batch for

- raw sqlite3 with the baseline's unique index on the event id (run.py's "same batches"),
- raw sqlite3 with no index (the rows alone: appended at the table's end),
- flowledger's append, validation and rules included, with its pages by table.

A page costs about the same whichever table it belongs to; a batch of random ids puts one
page per event into each index keyed by them, where the rows alone fill a page or two.

    python benchmarks/batch_pages.py --events 100000 --dir /var/tmp/pages
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import sqlite3
import struct
import sys
import tempfile

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402
from workload import ENGAGEMENT  # noqa: E402

import flowledger.store.sqlite as sqlite_store  # noqa: E402
from flowledger import ledger  # noqa: E402
from flowledger.store import open_log  # noqa: E402

_WAL_HEADER = 32
_FRAME_HEADER = 24


def wal_frames(path: str) -> tuple[list[int], int]:
    """(the page number of each frame in ``path``'s write-ahead log, how many commits it holds)."""
    with open(path + "-wal", "rb") as f:
        data = f.read()
    if len(data) < _WAL_HEADER:
        return [], 0
    page_size = struct.unpack(">I", data[8:12])[0]
    pages, commits = [], 0
    at = _WAL_HEADER
    while at + _FRAME_HEADER + page_size <= len(data):
        page, size_after_commit = struct.unpack(">II", data[at : at + 8])
        pages.append(page)
        # A commit's last frame records the database's size in pages; the others hold 0.
        commits += size_after_commit != 0
        at += _FRAME_HEADER + page_size
    return pages, commits


def owners(path: str) -> dict[int, str]:
    """Each page of the database at ``path``: the table or index it belongs to."""
    c = sqlite3.connect(path)
    try:
        return dict(c.execute("SELECT pageno, name FROM dbstat"))
    finally:
        c.close()


def truncate_wal(path: str) -> None:
    """Copy the write-ahead log into the file and empty it: the timed commits start it afresh."""
    c = sqlite3.connect(path)
    try:
        busy, _, _ = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError(f"could not checkpoint {path}: a reader held it")
    finally:
        c.close()


def raw(path: str, core: list[dict], hooks: list[dict], indexed: bool) -> tuple[float, int, int]:
    """(seconds, pages written, commits) inserting ``hooks`` in the webhook batches onto a raw
    table holding ``core``, with or without the baseline's unique index on the id."""
    run.remove_files(path)
    ddl = run._RAW_TABLE if indexed else run._RAW_TABLE[:1]
    c = run._durable(path, *ddl)
    c.execute("PRAGMA wal_autocheckpoint=0")
    rows = [(e["id"] + f"#{i}", e.get("run_id") or e["message_id"], e["type"], orjson.dumps(e)) for i, e in enumerate(core + hooks)]
    k = len(core)
    run._timed_commits(c, [k], [("INSERT INTO events VALUES (?, ?, ?, ?)", rows[:k])])
    truncate_wal(path)
    seconds = run._timed_commits(c, run.batch_sizes(len(hooks)), [("INSERT INTO events VALUES (?, ?, ?, ?)", rows[k:])])
    # Read before closing: the last connection to close checkpoints the log and deletes it.
    pages, commits = wal_frames(path)
    c.close()
    return seconds, len(pages), commits


def flowledger_batches(path: str, core: list[dict], hooks: list[dict]) -> tuple[float, collections.Counter[str], int]:
    """(seconds, pages written by table or index, commits) appending ``hooks`` in the
    webhook batches with flowledger, onto a store holding ``core``."""
    run.remove_files(path)
    # No checkpoint while the batches are timed: the log then holds every page they wrote.
    sqlite_store.CHECKPOINT_PAGES = 0
    log = open_log(path)
    ledger.append_input(log, io.BytesIO(run.jsonl(core)))
    truncate_wal(path)
    lines = [orjson.dumps(e) + b"\n" for e in hooks]
    seconds = run.timed_appends(log, [b"".join(batch) for batch in run.in_batches(lines)])
    # Read before closing: the last connection to close checkpoints the log and deletes it.
    pages, commits = wal_frames(path)
    tables = owners(path)
    log.close()
    return seconds, collections.Counter(tables.get(p, "(unknown)") for p in pages), commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=run._positive, default=100_000)
    parser.add_argument("--dir", default=None, help="Where to put the databases (default: a temporary folder).")
    args = parser.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="flpages-")
    os.makedirs(folder, exist_ok=True)
    events, _ = run.workload_and_more(args.events, run.live_size(args.events))
    core = [e for e in events if e["type"] not in ENGAGEMENT]
    hooks = [e for e in events if e["type"] in ENGAGEMENT]
    batches = len(run.batch_sizes(len(hooks)))
    print(f"events: {len(events):,}; webhook batches: {batches:,} of 1-100 ({len(hooks):,} events) onto the other {len(core):,}")
    print(f"{'measure':<44} {'events/s':>10} {'ms/batch':>9} {'pages/batch':>12}")
    figures = {}
    for name, indexed in (("raw sqlite3, unique index on the id", True), ("raw sqlite3, no index", False)):
        seconds, pages, commits = raw(os.path.join(folder, "raw.db"), core, hooks, indexed)
        figures[name] = (seconds, pages / commits)
        print(f"{name:<44} {len(hooks) / seconds:>10,.0f} {seconds / batches * 1000:>9.2f} {pages / commits:>12.1f}")
    store = os.path.join(folder, "store.db")
    seconds, by_owner, commits = flowledger_batches(store, core, hooks)
    pages = sum(by_owner.values())
    print(f"{'flowledger append':<44} {len(hooks) / seconds:>10,.0f} {seconds / batches * 1000:>9.2f} {pages / commits:>12.1f}")
    baseline_seconds, baseline_pages = figures["raw sqlite3, unique index on the id"]
    print(
        f"flowledger to raw with its index: {baseline_seconds / seconds:.2f}x the events/s, "
        f"{pages / commits / baseline_pages:.2f}x the pages a batch"
    )
    print("flowledger's pages a batch, by table or index:")
    for name, n in by_owner.most_common():
        print(f"  {name:<42} {n / commits:>8.1f}")
    for name in ("raw.db", "store.db"):
        run.remove_files(os.path.join(folder, name))


if __name__ == "__main__":
    main()
