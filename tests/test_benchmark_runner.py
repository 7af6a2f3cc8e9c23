"""The benchmark runner, run small: it prints its table, and runs again in a folder used before."""

from __future__ import annotations

import os
import subprocess
import sys

RUNNER = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "run.py")


def _run(folder: str) -> str:
    done = subprocess.run(
        [sys.executable, RUNNER, "--events", "3000", "--dir", folder, "--rebuilds", "1", "--skip-queries"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_runner_runs_again_in_a_folder_it_used_before(tmp_path):
    first = _run(str(tmp_path))
    second = _run(str(tmp_path))
    for table in (first, second):
        assert "flowledger append" in table
        assert "rebuild every view from 0" in table
    # The second run's store holds the workload once, not twice: the same bytes per event.
    per_event = [line.rsplit(":", 1)[1].strip() for t in (first, second) for line in t.splitlines() if "bytes on disk per event" in line]
    assert len(per_event) == 2 and per_event[0] == per_event[1]
