"""The rebuild-phases benchmark, run small: each half of the views rebuilt alone, phase by
phase, gives the views a live projection gives, and leaves no staging file behind."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import orjson

from flowledger import ledger
from flowledger.projections.helper import split_views
from flowledger.projections.projector import Projector, all_views
from flowledger.store import open_log
from tests.test_views import snapshot

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
sys.path.insert(0, BENCHMARKS)
import phases  # noqa: E402
from workload import workload  # noqa: E402

INPUT = b"".join(orjson.dumps(e) + b"\n" for e in workload(3000))


def _store(path: str, *, project: bool) -> int:
    """A store of the workload's log, its views caught up live (many small pages) or not
    made at all; returns the log's length."""
    log = open_log(path)
    try:
        ledger.append_input(log, io.BytesIO(INPUT))
        if project:
            Projector(log.backend).catch_up(page_size=500)
        return Projector(log.backend).head()
    finally:
        log.close()


def test_each_half_rebuilt_alone_phase_by_phase_gives_the_live_views(tmp_path):
    _store(str(tmp_path / "live.db"), project=True)
    path = str(tmp_path / "halves.db")
    head = _store(path, project=False)
    log = open_log(path)
    try:
        Projector(log.backend).ensure_tables()
        halves = split_views(all_views())
        assert [[v.name for v in h] for h in halves] == [["runs", "steps"], ["deliveries"]]
        for views in halves:
            seconds, events = phases.half(log.backend, views)
            assert set(seconds) == set(phases.PHASES) and events == head
    finally:
        log.close()
    live = snapshot(str(tmp_path / "live.db"))
    assert live["runs"] and live["steps"] and live["deliveries"]
    assert snapshot(path) == live
    assert [p.name for p in tmp_path.iterdir() if ".rebuild-" in p.name] == []


def test_the_script_prints_each_half_and_the_whole(tmp_path):
    path = str(tmp_path / "store.db")
    _store(path, project=True)
    live = snapshot(path)

    done = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "phases.py"), path, "--repeats", "2"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines[2:5]] == ["runs, steps", "deliveries", "every view (2 cores)"]
    assert "medians of 2" in lines[0] and "halves made even" in lines[5]
    assert snapshot(path) == live
