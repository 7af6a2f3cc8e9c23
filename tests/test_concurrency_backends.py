"""8 appender processes × 2,000 events on each backend, half of them on runs they share:
what was acknowledged is stored, once, and no run's versions have a gap."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import orjson
import pytest

from flowledger import ledger
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE
from tests.histories import jsonl

PROCESSES, EVENTS, BATCH, SHARED_RUNS = 8, 2_000, 50, 10

APPENDER = textwrap.dedent(
    """
    import io, sys, orjson
    from flowledger import ledger
    from flowledger.store import open_log

    url, w, total, batch, shared = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    t = "2026-11-01T09:00:00Z"
    events, i = [], 0
    while len(events) < total:
        # Half on runs of its own (a whole little life), half on the shared runs (steps
        # named for this worker, legal in any interleaving with the others').
        own = f"w{w}-r{i}"
        events += [
            {"id": own + "-t", "type": "run.triggered", "occurred_at": t, "run_id": own, "workflow": "w", "recipient": "u"},
            {"id": own + "-s", "type": "run.started", "occurred_at": t, "run_id": own},
        ]
        run = f"shared-{i % shared}"
        step = {"run_id": run, "step": f"w{w}-s{i}", "step_type": "send_sms", "attempt": 1, "occurred_at": t}
        events += [
            {"id": f"{run}-w{w}-{i}-a", "type": "step.started", **step},
            {"id": f"{run}-w{w}-{i}-b", "type": "step.succeeded", **step},
        ]
        i += 1
    log = open_log(url, lock_timeout=120)
    for k in range(0, total, batch):
        chunk = events[k : k + batch]
        result, _ = ledger.append_input(log, io.BytesIO(b"".join(orjson.dumps(e) + b"\\n" for e in chunk)))
        print(orjson.dumps({"ids": [e["id"] for e in chunk], "appended": result.appended}).decode(), flush=True)
    log.close()
    """
)


def run_appenders(url: str) -> None:
    log = open_log(url)
    t = "2026-11-01T09:00:00Z"
    shared = []
    for i in range(SHARED_RUNS):
        shared += [
            {"id": f"shared-{i}-t", "type": "run.triggered", "occurred_at": t, "run_id": f"shared-{i}", "workflow": "w", "recipient": "u"},
            {"id": f"shared-{i}-s", "type": "run.started", "occurred_at": t, "run_id": f"shared-{i}"},
        ]
    ledger.append_input(log, jsonl(shared))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, url, str(w), str(EVENTS), str(BATCH), str(SHARED_RUNS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for w in range(PROCESSES)
    ]
    acknowledged = [e["id"] for e in shared]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
        for line in out.decode().splitlines():
            ack = orjson.loads(line)
            assert ack["appended"] == len(ack["ids"])
            acknowledged += ack["ids"]
    assert len(acknowledged) == PROCESSES * EVENTS + 2 * SHARED_RUNS
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT originator_id, originator_version, state FROM stored_events")
        rows = [(s, v, orjson.loads(bytes(b))["id"]) for s, v, b in c.fetchall()]
    log.close()
    ids = [r[2] for r in rows]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert set(ids) == set(acknowledged), "an acknowledged event is missing, or an unacknowledged one stored"
    versions: dict[str, list[int]] = {}
    for stream, version, _ in rows:
        versions.setdefault(stream, []).append(version)
    gaps = [s for s, v in versions.items() if sorted(v) != list(range(1, len(v) + 1))]
    assert not gaps, f"versions with gaps: {gaps[:5]}"
    assert len(versions["run:shared-0"]) > 2 * PROCESSES


def test_sqlite_file(tmp_path):
    run_appenders(f"sqlite:///{tmp_path}/concurrent.db")


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
def test_postgresql(postgres_url):
    run_appenders(postgres_url)
