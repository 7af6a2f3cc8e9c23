"""Several processes appending to one file, and a writer killed with SIGKILL mid-stream."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import orjson

from flowledger.store import open_log

WORKER = textwrap.dedent(
    """
    import io, sys, orjson
    from flowledger import ledger
    from flowledger.store import open_log

    store, worker, batches, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    log = open_log(store, lock_timeout=120)
    for b in range(batches):
        events = []
        for i in range(size):
            run_id = f"w{worker}-b{b}-r{i}"
            t = "2026-11-01T09:00:00Z"
            events.append({"id": run_id + "-t", "type": "run.triggered", "occurred_at": t, "run_id": run_id, "workflow": "w", "recipient": "u"})
            events.append({"id": run_id + "-s", "type": "run.started", "occurred_at": t, "run_id": run_id})
            # Provider events for messages every worker shares: the same ids and bodies.
            events.append({"id": f"shared-{b}-{i}", "type": "message.delivered", "occurred_at": t, "message_id": f"m-{b}-{i}"})
        data = b"".join(orjson.dumps(e) + b"\\n" for e in events)
        result, _ = ledger.append_input(log, io.BytesIO(data))
        # Acknowledge only after the commit returned.
        print(orjson.dumps({"batch": b, "ids": [e["id"] for e in events], "appended": result.appended, "duplicates": result.duplicates}).decode(), flush=True)
    log.close()
    """
)


def _spawn(store, worker, batches, size):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, store, str(worker), str(batches), str(size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _stored(store):
    with sqlite3.connect(store) as c:
        rows = c.execute("SELECT originator_id, originator_version, state FROM stored_events").fetchall()
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return rows


def test_four_processes_appending_to_one_file_lose_nothing_and_duplicate_nothing(store_path):
    open_log(store_path).close()
    procs = [_spawn(store_path, w, 25, 10) for w in range(4)]
    acked: list[str] = []
    appended = duplicates = 0
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        for line in out.decode().splitlines():
            ack = orjson.loads(line)
            acked += ack["ids"]
            appended += ack["appended"]
            duplicates += ack["duplicates"]
    rows = _stored(store_path)
    ids = [orjson.loads(state)["id"] for _, _, state in rows]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert set(ids) == set(acked), "an acknowledged event is missing"
    assert appended == len(ids) and appended + duplicates == len(acked)
    assert duplicates == 3 * 25 * 10  # every shared provider event but the first copy
    versions: dict[str, list[int]] = {}
    for stream, version, _ in rows:
        versions.setdefault(stream, []).append(version)
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in versions.values())


def test_acknowledged_events_survive_a_writer_killed_with_sigkill(store_path):
    open_log(store_path).close()
    proc = _spawn(store_path, 0, 10_000, 50)
    acked: list[str] = []
    deadline = time.monotonic() + 120
    while len(acked) < 20 * 150 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked += orjson.loads(line)["ids"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Whatever the writer printed after our last read was acknowledged too: read it.
    for line in proc.stdout.read().decode().splitlines():
        acked += orjson.loads(line)["ids"]
    assert len(acked) >= 20 * 150, "the writer acknowledged too little before it was killed"
    rows = _stored(store_path)
    ids = {orjson.loads(state)["id"] for _, _, state in rows}
    assert set(acked) <= ids
    # A batch is stored whole or not at all: 150 events per batch.
    assert len(rows) % 150 == 0
    # The store still takes appends after the crash.
    log = open_log(store_path)
    assert log.count() == len(rows)
    log.close()
    # Every stored id is still known after the crash: a new process resending every
    # stored batch stores nothing and counts each event as a duplicate.
    batches = len(rows) // 150
    again = _spawn(store_path, 0, batches, 50)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()
    acks = [orjson.loads(line) for line in out.decode().splitlines()]
    assert len(acks) == batches and all(a["appended"] == 0 and a["duplicates"] == 150 for a in acks)
    assert len(_stored(store_path)) == len(rows)
