"""flowledger's benchmark: ingest, webhook-shaped ingest, rebuild, live catch-up and
queries, each against a baseline measured in the same run (the machines are shared and
noisy: read the ratios).

    python benchmarks/run.py --events 100000 [--ids uuid|sequential] [--dir /tmp/flbench] [--skip-queries] [--rebuilds 3] [--repeats 3]

Prints one table. Raw baseline: sqlite3 executemany of (id, stream, type, body) into a WAL
table with a unique index on id, synchronous=FULL, 10,000 rows per transaction. The baseline,
the append and the webhook batches are measured ``--repeats`` times in turn, and each ratio
is the median of the ratios within a repeat: a single pair swings with the machine.

The live catch-up: on a copy of the store, its views caught up, a further tenth of the
workload (at least 10,000 events: its continuation, one in ten of them engagement for a
message of the history) is appended in the webhook batches, and the projector catches the
views up after each batch; only the catch-ups are timed, and their rate is printed against
the rebuild's of the same run.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workload import ENGAGEMENT, IDS, late_engagement, workload  # noqa: E402

from flowledger import ledger, queries  # noqa: E402
from flowledger.projections.projector import Projector  # noqa: E402
from flowledger.store import open_log  # noqa: E402
from flowledger.store.sqlite import CACHE_KIB, CHECKPOINT_PAGES  # noqa: E402


def _durable(path: str, *ddl: str, as_flowledger: bool = False) -> sqlite3.Connection:
    """A new SQLite file as the raw baseline has it: WAL, synchronous=FULL, explicit
    transactions; ``as_flowledger``: with the page cache and checkpoint size flowledger's
    own connections use (for the floors of its tables, not for the baseline)."""
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    if as_flowledger:
        c.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        c.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
    for statement in ddl:
        c.execute(statement)
    return c


def remove_files(*paths: str) -> None:
    """Delete these files, and the SQLite write-ahead log and shared-memory files beside each, if there."""
    for path in paths:
        for name in (path, path + "-wal", path + "-shm"):
            if os.path.exists(name):
                os.remove(name)


T = TypeVar("T")

_DATABASES = ("raw.db", "store.db", "hooks.db", "raw-batches.db", "tables.db.bulk", "tables.db.hooks", "live.db")
"""The files a run makes in its folder."""


def batch_sizes(n: int, seed: int = 3) -> list[int]:
    """The webhook batches: sizes of 1 to 100, seeded, adding up to n."""
    rng = random.Random(seed)
    sizes = []
    while n > 0:
        sizes.append(min(n, rng.randint(1, 100)))
        n -= sizes[-1]
    return sizes


def _timed_commits(c: sqlite3.Connection, sizes: list[int], statements: list[tuple[str, list]]) -> float:
    """Seconds to insert each statement's rows, one transaction per size in turn."""
    started = time.perf_counter()
    i = 0
    for n in sizes:
        c.execute("BEGIN")
        for sql, rows in statements:
            c.executemany(sql, rows[i : i + n])
        c.execute("COMMIT")
        i += n
    return time.perf_counter() - started


_RAW_TABLE = ("CREATE TABLE events (id TEXT, stream TEXT, type TEXT, body BLOB)", "CREATE UNIQUE INDEX events_id ON events (id)")


def raw_baseline(path: str, events: list[dict]) -> float:
    """Events/s of the plainest durable insert of the same rows."""
    rows = [(e["id"], e.get("run_id") or e["message_id"], e["type"], orjson.dumps(e)) for e in events]
    # The raw table has no idempotency: give repeated webhooks their own rows.
    seen: set[str] = set()
    unique = []
    for r in rows:
        if r[0] not in seen:
            seen.add(r[0])
            unique.append(r)
    c = _durable(path, *_RAW_TABLE)
    seconds = _timed_commits(c, [10_000] * (len(unique) // 10_000 + 1), [("INSERT INTO events VALUES (?, ?, ?, ?)", unique)])
    c.close()
    return len(rows) / seconds


def raw_batches(path: str, core: list[dict], hooks: list[dict]) -> float:
    """Events/s of the plainest durable insert of the webhook rows, one commit per batch of
    1-100 (the same batches as the webhook measure), onto a table already holding the
    other events (as the webhook measure's store does): the floor one fsync a batch sets."""
    rows = [(e["id"] + f"#{i}", e.get("run_id") or e["message_id"], e["type"], orjson.dumps(e)) for i, e in enumerate(core + hooks)]
    c = _durable(path, *_RAW_TABLE)
    k = len(core)
    _timed_commits(c, [k], [("INSERT INTO events VALUES (?, ?, ?, ?)", rows[:k])])
    seconds = _timed_commits(c, batch_sizes(len(hooks)), [("INSERT INTO events VALUES (?, ?, ?, ?)", rows[k:])])
    c.close()
    return len(hooks) / seconds


_LOG_TABLES = (
    # eventsourcing's SQLite events table, and flowledger's idempotency keys (store/backend.py).
    "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, "
    "state BLOB, PRIMARY KEY (originator_id, originator_version))",
    "CREATE TABLE event_ids (id TEXT PRIMARY KEY) WITHOUT ROWID",
)


def _log_rows(events: list[dict]) -> tuple[list[tuple], list[tuple]]:
    """(events rows, id rows) as an append writes them, made before the clock starts."""
    versions: dict[str, int] = {}
    rows, ids = [], []
    for i, e in enumerate(events):
        stream = f"message:{e['message_id']}" if "message_id" in e and e["type"].startswith("message.") else f"run:{e['run_id']}"
        versions[stream] = versions.get(stream, 0) + 1
        rows.append((stream, versions[stream], e["type"], orjson.dumps(e, option=orjson.OPT_SORT_KEYS)))
        ids.append((f"{e['id']}#{i}",))
    return rows, ids


def _log_inserts(rows: list[tuple], ids: list[tuple]) -> list[tuple[str, list]]:
    return [("INSERT INTO stored_events VALUES (?, ?, ?, ?)", rows), ("INSERT INTO event_ids VALUES (?)", ids)]


def schema_floor(path: str, events: list[dict], core: list[dict], hooks: list[dict]) -> tuple[float, float]:
    """Events/s of inserting the rows flowledger's own tables hold (an event and its id),
    with no Python work: in 10,000-row transactions, and in the webhook batches onto a
    store holding the rest. What is left of each ratio for validation and the rules."""
    c = _durable(path + ".bulk", *_LOG_TABLES, as_flowledger=True)
    rows, ids = _log_rows(events)
    bulk = len(rows) / _timed_commits(c, [10_000] * (len(rows) // 10_000 + 1), _log_inserts(rows, ids))
    c.close()
    c = _durable(path + ".hooks", *_LOG_TABLES, as_flowledger=True)
    rows, ids = _log_rows(core + hooks)
    k = len(core)
    _timed_commits(c, [k], _log_inserts(rows[:k], ids[:k]))
    batches = len(hooks) / _timed_commits(c, batch_sizes(len(hooks)), _log_inserts(rows[k:], ids[k:]))
    c.close()
    return bulk, batches


def jsonl(events: list[dict]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def ingest(path: str, events: list[dict]) -> float:
    """Events/s of `flowledger append` (in-process), validation and rules included."""
    data = jsonl(events)
    log = open_log(path)
    started = time.perf_counter()
    ledger.append_input(log, io.BytesIO(data))
    seconds = time.perf_counter() - started
    log.close()
    return len(events) / seconds


def webhook_ingest(path: str, core: list[dict], hooks: list[dict], seed: int = 3) -> float:
    """Events/s appending engagement webhooks in batches of 1 to 100, for runs stored before."""
    log = open_log(path)
    ledger.append_input(log, io.BytesIO(jsonl(core)))
    lines = [orjson.dumps(e) + b"\n" for e in hooks]
    seconds = timed_appends(log, [b"".join(batch) for batch in in_batches(lines, seed)])
    log.close()
    return len(hooks) / seconds


def in_batches(items: Sequence[T], seed: int = 3) -> Iterator[Sequence[T]]:
    """``items`` in the webhook batches: consecutive slices of 1 to 100, seeded."""
    i = 0
    for n in batch_sizes(len(items), seed):
        yield items[i : i + n]
        i += n


def timed_appends(log: Any, batches: Iterable[bytes]) -> float:
    """Seconds to append each batch of JSON lines, each its own call and transaction."""
    started = time.perf_counter()
    for b in batches:
        ledger.append_input(log, io.BytesIO(b))
    return time.perf_counter() - started


REBUILD = """
import sys, time
from flowledger.projections.projector import Projector
from flowledger.store import open_log
log = open_log(sys.argv[1])
# With a second argument: `rebuild --into` that SQLite file, from this store's log.
into = open_log(sys.argv[2]) if len(sys.argv) > 2 else log
p = Projector(into.backend, source=log.backend)
head = p.head()
started = time.perf_counter()
p.rebuild()
seconds = time.perf_counter() - started
# VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec.
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
# The second process a SQLite rebuild starts: the kernel's peak for it (an upper bound, as
# it may count this process's pages shared at the fork before the exec); 0 if none ran.
import resource
print(head / seconds, hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def rebuild(path: str, times: int = 1, into: str | None = None) -> tuple[float, int, int, list[float]]:  # a SQLite file or a store URL
    """Events/s of rebuilding every view from 0, each time in a fresh process (the median
    of ``times``: the machines are noisy), the peak RSS of the rebuilding process and of
    its helper process (0 where none ran), and every rate measured. The first rebuild
    makes the views; the next ones replace them. With ``into`` (a SQLite file), the views
    are made there from ``path``'s log, as `flowledger rebuild --into` makes them."""
    rates, rss, helper = [], 0, 0
    for _ in range(times):
        command = [sys.executable, "-c", REBUILD, path, *([into] if into else [])]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rate, peak, helper_peak = out.split()
        rates.append(float(rate))
        rss, helper = max(rss, int(peak)), max(helper, int(helper_peak))
    return statistics.median(rates), rss, helper, rates


LIVE_MIN = 10_000
"""The fewest events the live catch-up appends (it appends a tenth of the workload)."""
LATE_SHARE = 10
"""One live event in this many is engagement for a message of the history."""


def live_size(n: int) -> int:
    """How many events the live catch-up appends onto a history of ``n``."""
    return max(LIVE_MIN, n // 10)


def workload_and_more(n: int, more: int, ids: str = "uuid") -> tuple[list[dict], list[dict]]:
    """``list(workload(n))``, and the ``more`` events (or one fewer) the same workload goes
    on with, generated in one pass."""
    stream = list(workload(n + more, ids=ids))
    # workload(n) stops after n events, or after n + 1 when a provider's retry of the n-th
    # follows it: the same event, yielded twice as the same object.
    k = n + 1 if len(stream) > n and stream[n] is stream[n - 1] else n
    return stream[:k], stream[k:]


def live_events(history: list[dict], continuation: list[dict], ids: str = "uuid", seed: int = 13) -> list[dict]:
    """What is appended after ``history``: its continuation (the runs in flight finished,
    new runs), one event in :data:`LATE_SHARE` replaced by engagement for an old message
    (opens, clicks, reads), these spread through it at seeded places."""
    late = list(late_engagement(history, len(continuation) // LATE_SHARE, ids=ids))
    rng = random.Random(seed)
    places = set(rng.sample(range(len(continuation)), len(late)))
    fresh, old = iter(continuation), iter(late)
    return [next(old) if i in places else next(fresh) for i in range(len(continuation))]


def copy_store(source: str, target: str) -> None:
    """A copy of a SQLite store file, its log and views, as they stand (nothing else has it open)."""
    c = sqlite3.connect(source)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    remove_files(target)
    shutil.copyfile(source, target)


def live_catch_up(path: str, events: list[dict]) -> tuple[float, list[float]]:  # a SQLite file or a store URL
    """Events/s of the projector catching up views that already hold the store's log, after
    each webhook batch of ``events`` is appended, as a follower polling faster than the
    batches come (or a query after each) does; and the seconds of each catch-up. The
    appends are not timed. One projector throughout, as a follower keeps."""
    log = open_log(path)
    projector = Projector(log.backend)
    projector.catch_up()  # the views hold the history already; this makes sure
    lines = [orjson.dumps(e) + b"\n" for e in events]
    took, applied = [], 0
    for batch in in_batches(lines):
        ledger.append_input(log, io.BytesIO(b"".join(batch)))
        started = time.perf_counter()
        applied += projector.catch_up()
        took.append(time.perf_counter() - started)
    log.close()
    return applied / sum(took), took


def live_note(took: list[float], history: int) -> str:
    """What the live catch-up's row says beside its figures."""
    p50, p99 = percentiles(took)
    return (
        f" (to the rebuild's rate; onto views of the {history:,}, caught up after each of "
        f"{len(took):,} batches of 1-100: a catch-up's p50 {p50:.1f} ms, p99 {p99:.1f} ms)"
    )


def raw_read(path: str) -> float:
    """Rows/s of reading a SQLite log back in pages of 1,000 and decoding each with
    orjson.loads: the reference a rebuild is measured against (about 240,000 rows/s on
    this kind of machine, says the issue), in the same run."""
    c = sqlite3.connect(path)
    started = time.perf_counter()
    after, n, loads = 0, 0, orjson.loads
    while True:
        rows = c.execute(
            "SELECT rowid, topic, state FROM stored_events WHERE rowid > ? ORDER BY rowid LIMIT 1000", (after,)
        ).fetchall()
        if not rows:
            break
        for _, _, state in rows:
            loads(state)
        n += len(rows)
        after = rows[-1][0]
    seconds = time.perf_counter() - started
    c.close()
    return n / seconds


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.99) - 1] * 1000


def query_latency(path: str, n: int = 300) -> dict[str, tuple[float, float]]:  # file or URL
    """p50 and p99 in ms of the five queries, in-process, views already caught up."""
    log = open_log(path)
    Projector(log.backend).catch_up()
    rng = random.Random(5)
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT id FROM runs ORDER BY seq LIMIT 1000")
        run_ids = [r[0] for r in c.fetchall()]
        c.execute("SELECT workflow FROM workflow_summaries")
        workflows = [r[0] for r in c.fetchall()]
        c.execute("SELECT MIN(created_at), MAX(created_at) FROM runs")
        first, last = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in c.fetchone())
    span = max(0.0, (last - first).total_seconds() - 3600)

    def an_hour() -> queries.RunFilters:
        """An hour's runs, starting at a random time of the log's (a date filter's page)."""
        start = first + timedelta(seconds=rng.uniform(0, span))
        return queries.RunFilters(starting_at=_stamp(start), ending_at=_stamp(start + timedelta(hours=1)))

    cases = {
        "runs list (filtered page)": lambda c: queries.list_runs(
            c, queries.RunFilters(workflow=rng.choice(workflows), statuses=("completed",)), page_size=50
        ),
        "runs list (an hour's range)": lambda c: queries.list_runs(c, an_hour(), page_size=50),
        "runs show": lambda c: queries.show_run(c, rng.choice(run_ids)),
        "workflows show": lambda c: queries.workflow_details(c, rng.choice(workflows)),
        "counts": lambda c: queries.counts(c),
    }
    out = {}
    for name, fn in cases.items():
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            with log.backend.transaction(write=False) as c:
                fn(c)
            samples.append(time.perf_counter() - started)
        out[name] = percentiles(samples)
    log.close()
    return out


def _stamp(moment: datetime) -> str:
    """A time as the views store it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def log_bytes_per_event(path: str, n: int) -> float:
    c = sqlite3.connect(path)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return os.path.getsize(path) / n


def _drop_schemas(url: str, *schemas: str) -> None:
    import psycopg

    from flowledger.store.postgres import parse_url

    s = parse_url(url)
    with psycopg.connect(dbname=s["dbname"], host=s["host"], port=s["port"], user=s["user"], password=s["password"], autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def postgres(
    url: str, events: list[dict], core: list[dict], hooks: list[dict], raw: float, skip_queries: bool, live: list[dict]
) -> None:
    """The same measures on PostgreSQL, against the same SQLite raw baseline."""
    sep = "&" if "?" in url else "?"
    names = (f"flbench_{os.getpid()}_store", f"flbench_{os.getpid()}_hooks")
    store, hook_store = f"{url}{sep}schema={names[0]}", f"{url}{sep}schema={names[1]}"
    _drop_schemas(url, *names)
    try:
        rate = ingest(store, events)
        hook_rate = webhook_ingest(hook_store, core, hooks)
        rebuild_rate, rss, helper_rss, _ = rebuild(store)
        with tempfile.TemporaryDirectory() as folder:
            into_rate, into_rss, into_helper, _ = rebuild(store, into=os.path.join(folder, "views.db"))
        latencies = {} if skip_queries else query_latency(store)
        # Last: it appends to the store the measures above read.
        live_rate, took = live_catch_up(store, live)
        print(f"{'PostgreSQL':<44} {'events/s':>12} {'ratio':>8}")
        print(f"{'flowledger append':<44} {rate:>12,.0f} {rate / raw:>7.2f}x")
        print(f"{'webhook batches of 1-100':<44} {hook_rate:>12,.0f} {hook_rate / raw:>7.2f}x")
        print(f"{'rebuild every view from 0':<44} {rebuild_rate:>12,.0f} {rebuild_rate / 100_000:>7.2f}x")
        print(f"{'rebuild --into a SQLite file':<44} {into_rate:>12,.0f} {into_rate / 100_000:>7.2f}x")
        label = f"live catch-up per batch ({len(live):,} events)"
        print(f"{label:<44} {live_rate:>12,.0f} {live_rate / rebuild_rate:>7.2f}x{live_note(took, len(events))}")
        print(
            f"rebuild peak RSS: {rss / 2**20:,.0f} MiB (its helper process: at most {helper_rss / 2**20:,.0f} MiB); "
            f"--into: {into_rss / 2**20:,.0f} MiB "
            f"(its helper process: at most {into_helper / 2**20:,.0f} MiB)"
        )
        for name, (p50, p99) in latencies.items():
            print(f"{name:<44} {p50:>8.2f} {p99:>8.2f}")
    finally:
        _drop_schemas(url, *names)


def _listed(ratios: list[float]) -> str:
    """The paired ratios a median was taken of, for the table (none for a single pair)."""
    return f"; median of {', '.join(f'{r:.2f}' for r in ratios)}" if len(ratios) > 1 else ""


def _positive(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n", 1)[0].split()))
    parser.add_argument("--events", type=_positive, default=100_000)
    parser.add_argument("--dir", default=None, help="Where to put the databases (default: a temporary folder).")
    parser.add_argument("--skip-queries", action="store_true")
    parser.add_argument("--rebuilds", type=_positive, default=3, help="Rebuilds to take the median of (default 3).")
    parser.add_argument(
        "--repeats",
        type=_positive,
        default=3,
        help="Times the baseline, the append and the webhook batches are measured in turn (default 3; medians).",
    )
    parser.add_argument(
        "--ids",
        choices=IDS,
        default="uuid",
        help="Event, run and message ids as random UUIDs (default, as senders make them) or readable and growing.",
    )
    parser.add_argument(
        "--postgres",
        default=None,
        help="Also measure PostgreSQL at this URL (e.g. postgresql://postgres@127.0.0.1/test); "
        "it uses and then drops two schemas of its own (flbench_<pid>_store, _hooks).",
    )
    args = parser.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="flbench-")
    os.makedirs(folder, exist_ok=True)
    # A folder used before: every measure starts from no file, as in a new folder.
    remove_files(*(os.path.join(folder, name) for name in _DATABASES))
    events, continuation = workload_and_more(args.events, live_size(args.events), ids=args.ids)
    live = live_events(events, continuation, ids=args.ids)
    core = [e for e in events if e["type"] not in ENGAGEMENT]
    hooks = [e for e in events if e["type"] in ENGAGEMENT]
    rows = []
    store = os.path.join(folder, "store.db")
    raws, append_rates, hook_rates = [], [], []
    for _ in range(args.repeats):
        remove_files(*(os.path.join(folder, name) for name in ("raw.db", "store.db", "hooks.db")))
        raws.append(raw_baseline(os.path.join(folder, "raw.db"), events))
        append_rates.append(ingest(store, events))
        hook_rates.append(webhook_ingest(os.path.join(folder, "hooks.db"), core, hooks))
    raw = statistics.median(raws)
    append_ratios = [r / w for r, w in zip(append_rates, raws)]
    hook_ratios = [h / w for h, w in zip(hook_rates, raws)]
    rows.append(("raw sqlite3 executemany (baseline)", raw, 1.0))
    rows.append(("flowledger append", statistics.median(append_rates), statistics.median(append_ratios)))
    size = log_bytes_per_event(store, len(events))
    rows.append((f"webhook batches of 1-100 ({len(hooks):,} events)", statistics.median(hook_rates), statistics.median(hook_ratios)))
    floor = raw_batches(os.path.join(folder, "raw-batches.db"), core, hooks)
    rows.append(("raw sqlite3, same batches, a commit each", floor, floor / raw))
    tables_bulk, tables_batches = schema_floor(os.path.join(folder, "tables.db"), events, core, hooks)
    rows.append(("flowledger's tables alone, 10,000 a commit", tables_bulk, tables_bulk / raw))
    rows.append(("flowledger's tables alone, same batches", tables_batches, tables_batches / raw))
    reference = raw_read(store)
    rebuild_rate, rss, helper_rss, rates = rebuild(store, times=args.rebuilds)
    rows.append(("rebuild every view from 0", rebuild_rate, rebuild_rate / 100_000))
    rows.append(("raw read + orjson.loads, pages of 1,000", reference, rebuild_rate / reference))
    # On a copy: the store itself keeps the workload alone, for the queries and a next run.
    copy_store(store, os.path.join(folder, "live.db"))
    live_rate, took = live_catch_up(os.path.join(folder, "live.db"), live)
    live_row = f"live catch-up per batch ({len(live):,} events)"
    rows.append((live_row, live_rate, live_rate / rebuild_rate))
    print(f"events: {len(events):,} ({len({e.get('run_id') for e in events if 'run_id' in e}):,} runs; ids: {args.ids}); "
          f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; sqlite {sqlite3.sqlite_version}")
    print(f"{'measure':<44} {'events/s':>12} {'ratio':>8}")
    for name, value, ratio in rows:
        target = {
            "flowledger append": f" (target >= 0.5x raw{_listed(append_ratios)})",
            "rebuild every view from 0": f" (of the 100k/s target; median of {', '.join(f'{r:,.0f}' for r in rates)})",
            "raw read + orjson.loads, pages of 1,000": " (the rebuild's rate to this reference)",
            live_row: live_note(took, len(events)),
        }.get(name, "")
        if name.startswith("webhook"):
            target = f" (target >= 0.25x raw{_listed(hook_ratios)})"
        print(f"{name:<44} {value:>12,.0f} {ratio:>7.2f}x{target}")
    print(f"rebuild peak RSS: {rss / 2**20:,.0f} MiB (its helper process: at most {helper_rss / 2**20:,.0f} MiB); "
          f"log bytes on disk per event: {size:,.0f}")
    if not args.skip_queries:
        print(f"{'query (in-process, views caught up)':<44} {'p50 ms':>8} {'p99 ms':>8}")
        for name, (p50, p99) in query_latency(store).items():
            print(f"{name:<44} {p50:>8.2f} {p99:>8.2f}")
    if args.postgres:
        postgres(args.postgres, events, core, hooks, raw, args.skip_queries, live)
    if not args.dir:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
