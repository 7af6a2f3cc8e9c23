"""The benchmark runner, run small: it prints its table, and runs again in a folder used before."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import POSTGRES, POSTGRES_UNREACHABLE

RUNNER = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "run.py")


def _run(folder: str, *more: str) -> str:
    done = subprocess.run(
        [sys.executable, RUNNER, "--events", "3000", "--dir", folder, "--rebuilds", "1", "--skip-queries", *more],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _stored(path: str) -> int:
    c = sqlite3.connect(path)
    try:
        return c.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]
    finally:
        c.close()


def test_the_runner_runs_again_in_a_folder_it_used_before(tmp_path):
    first = _run(str(tmp_path))
    after_first = _stored(str(tmp_path / "store.db"))
    second = _run(str(tmp_path))
    for table in (first, second):
        assert "flowledger append" in table
        assert "rebuild every view from 0" in table
    # The second run's store holds its workload once, not the first run's too. The ids are random,
    # so file sizes differ by a few bytes from run to run; the count of stored events does not
    # (a little under the workload's: its provider events include redeliveries, stored once).
    events = int(re.search(r"^events: ([\d,]+)", second, re.MULTILINE).group(1).replace(",", ""))
    assert events // 2 < after_first <= events
    assert _stored(str(tmp_path / "store.db")) == after_first


def test_the_ratios_are_the_medians_of_the_repeats_paired_ratios(tmp_path):
    table = _run(str(tmp_path))  # three repeats by default
    for measure in ("flowledger append", "webhook batches"):
        line = next(line for line in table.splitlines() if line.startswith(measure))
        found = re.search(r"([\d.]+)x \(target >= [\d.]+x raw; median of ([\d.]+), ([\d.]+), ([\d.]+)\)$", line)
        assert found, line
        ratio, *paired = (float(x) for x in found.groups())
        assert abs(ratio - sorted(paired)[1]) <= 0.005, line


def test_the_postgresql_figures_include_a_rebuild_into_a_sqlite_file(tmp_path):
    if POSTGRES_UNREACHABLE:
        pytest.skip(POSTGRES_UNREACHABLE)
    table = _run(str(tmp_path), "--repeats", "1", "--postgres", POSTGRES)
    section = table[table.index("PostgreSQL") :]
    for measure in ("flowledger append", "webhook batches of 1-100", "rebuild every view from 0", "rebuild --into a SQLite file"):
        line = next(line for line in section.splitlines() if line.startswith(measure))
        rate = float(line[len(measure) :].split()[0].replace(",", ""))
        assert rate > 0, line
    helper = r"\(its helper process: at most \d+ MiB\)"
    assert re.search(rf"rebuild peak RSS: \d+ MiB {helper}; --into: \d+ MiB {helper}", section)


@pytest.mark.parametrize("option", ["--events", "--rebuilds", "--repeats"])
def test_a_count_of_zero_is_a_usage_error_not_a_traceback(option):
    done = subprocess.run(
        [sys.executable, RUNNER, option, "0"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and f"argument {option}: must be at least 1, not 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_help_says_what_the_benchmark_is_in_a_whole_sentence():
    done = subprocess.run([sys.executable, RUNNER, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "measured in the same run" in " ".join(done.stdout.split())
