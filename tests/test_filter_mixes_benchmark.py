"""The filter-mixes benchmark, run small: every mix of the listings' filters is asked of a
store of the benchmark's workload and answers (a page and counts each), and the script says
how many passed 10 ms."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import orjson

from flowledger import ledger
from flowledger.store import open_log

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
sys.path.insert(0, BENCHMARKS)
from workload import workload  # noqa: E402


def test_every_mix_is_asked_and_answers(tmp_path):
    path = str(tmp_path / "store.db")
    log = open_log(path)
    try:
        ledger.append_input(log, io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in workload(2000))))
    finally:
        log.close()
    done = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "filter_mixes.py"), path, "--repeats", "1", "--show", "3"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("1140 mixes, each timed 1 times"), lines[:2]
    assert len([line for line in lines if re.match(r"\s+\d+\.\d\d\s+\d+\.\d\d  (runs|deliveries) ", line)]) == 3
    assert re.search(r"^over 10 ms \(p50 or p99\): \d+ of 1140; at p50: \d+$", done.stdout, re.M), done.stdout
    for kind in ("runs page", "runs counts", "deliveries page"):
        assert re.search(rf"^slowest {kind}: \d+\.\d\d / \d+\.\d\d ms \(.+\)$", done.stdout, re.M), done.stdout
