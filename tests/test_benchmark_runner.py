"""The benchmark runner, run small: it prints its table, and runs again in a folder used before."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys

import pytest

from flowledger import ledger, queries
from flowledger.store import open_log
from tests.conftest import POSTGRES, POSTGRES_UNREACHABLE

RUNNER = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "run.py")
sys.path.insert(0, os.path.dirname(RUNNER))
import run as runner  # noqa: E402
from workload import ENGAGEMENT, workload  # noqa: E402


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


def _rate_and_ratio(table: str, measure: str) -> tuple[float, float]:
    """The figures of a row of the table: its events/s and its ratio."""
    line = next(line for line in table.splitlines() if line.startswith(measure))
    found = re.search(r"\)\s+([\d,]+)\s+([\d.]+)x", line)
    assert found, line
    return float(found.group(1).replace(",", "")), float(found.group(2))


def _runs(path: str) -> int:
    """How many runs a store's runs view holds."""
    c = sqlite3.connect(path)
    try:
        return c.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        c.close()


def _views(path: str) -> dict[str, object]:
    """What the queries show of a store's views as they stand (no catch-up first): the counts,
    the workflows, and every run's and every message's record."""
    log = open_log(path)
    try:
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT id FROM runs ORDER BY id")
            run_ids = [r[0] for r in c.fetchall()]
            c.execute("SELECT message_id FROM deliveries ORDER BY message_id")
            message_ids = [r[0] for r in c.fetchall()]
            workflows = queries.list_workflows(c)
            return {
                "counts": queries.counts(c),
                "workflows": workflows,
                "workflow details": [queries.workflow_details(c, w["key"]) for w in workflows],
                "completed runs, newest first": queries.list_runs(c, queries.RunFilters(statuses=("completed",)), page_size=100),
                "runs": [queries.show_run(c, r) for r in run_ids],
                "deliveries": [queries.show_delivery(c, m) for m in message_ids],
            }
    finally:
        log.close()


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
    assert all(figure > 0 for figure in _rate_and_ratio(section, "live catch-up per batch ("))
    helper = r"\(its helper process: at most \d+ MiB\)"
    assert re.search(rf"rebuild peak RSS: \d+ MiB {helper}; --into: \d+ MiB {helper}", section)


def test_the_live_catch_up_folds_every_appended_event_as_a_rebuild_would(tmp_path):
    table = _run(str(tmp_path), "--repeats", "1")
    rate, ratio = _rate_and_ratio(table, "live catch-up per batch (")
    assert rate > 0 and ratio > 0
    # It ran on a copy: the store keeps the workload alone, the copy holds the further events.
    live = str(tmp_path / "live.db")
    held, appended = _stored(str(tmp_path / "store.db")), _stored(live)
    assert appended >= held + 9_000  # 10,000 appended, a provider's retry now and then stored once
    log, into = open_log(live), open_log(str(tmp_path / "rebuilt.db"))
    try:
        assert ledger.head(log) == appended
        ledger.rebuild(log, into=into)
    finally:
        into.close()
        log.close()
    caught_up, rebuilt = _views(live), _views(str(tmp_path / "rebuilt.db"))
    # The runs of the further events are there too, not only the history's.
    assert caught_up["counts"]["total"] == len(caught_up["runs"]) > _runs(str(tmp_path / "store.db"))
    for name in caught_up:
        assert caught_up[name] == rebuilt[name], name


@pytest.mark.parametrize("n", [3000, 2579])  # workload(2579) ends on a provider's retry: 2,580 events
def test_the_live_events_continue_the_workload_with_late_engagement_for_its_messages(n):
    history, continuation = runner.workload_and_more(n, 1000)
    assert history == list(workload(n))
    assert continuation == list(workload(len(history) + 1000))[len(history) :][: len(continuation)]
    assert len(continuation) >= 999
    live = runner.live_events(history, continuation)
    assert len(live) == len(continuation)
    old = {e["message_id"] for e in history if e["type"] == "message.queued"}
    late = [e for e in live if e not in continuation]
    assert len(late) == len(continuation) // runner.LATE_SHARE
    assert all(e["type"] in ENGAGEMENT and e["message_id"] in old for e in late)
    # New runs too, not only the runs in flight when the history ends.
    new_runs = {e["run_id"] for e in live if e["type"] == "run.triggered"}
    assert new_runs and new_runs.isdisjoint(e.get("run_id") for e in history)


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


PAGES = os.path.join(os.path.dirname(RUNNER), "batch_pages.py")


def test_the_pages_script_names_the_tables_each_webhook_batch_writes(tmp_path):
    """batch_pages.py counts what each batch's commit wrote, and whose pages they were."""
    done = subprocess.run(
        [sys.executable, PAGES, "--events", "3000", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    per_batch = {
        m.group(1).strip(): float(m.group(2))
        for m in re.finditer(r"^(raw sqlite3[^\n]*?|flowledger append)\s+[\d,]+\s+[\d.]+\s+([\d.]+)$", done.stdout, re.M)
    }
    by_table = dict((name, float(n)) for name, n in re.findall(r"^  (\S+)\s+([\d.]+)$", done.stdout, re.M))
    # An index keyed by random ids takes a page for most events; the rows alone fill a few.
    assert per_batch["raw sqlite3, no index"] < per_batch["raw sqlite3, unique index on the id"] / 3
    assert {"event_ids", "stored_events", "sqlite_autoindex_stored_events_1"} <= set(by_table)
    assert "(unknown)" not in by_table
    assert sum(by_table.values()) == pytest.approx(per_batch["flowledger append"], abs=0.2)
    assert os.listdir(tmp_path) == []
