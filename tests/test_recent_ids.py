"""A SQLite store's newest ids live in memory, the rest in event_ids (store/recent_ids.py):
together they must be every id stored, whatever the order of appends, flushes, refusals,
rollbacks and processes."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger
from flowledger.errors import InvalidInput
from flowledger.store import open_log
from tests.histories import jsonl

T = "2026-11-01T09:00:00Z"


def opened(n: int, variant: int = 0) -> dict:
    """Event n as a provider fact; another variant is the same id with another body (on
    another message for variant 2, so a conflict may be in a stream the body does not name)."""
    return {"id": f"e{n}", "type": "message.opened", "occurred_at": f"2026-11-01T09:0{variant}:00Z", "message_id": f"m{n % 3 + 3 * (variant == 2)}"}


def refused(n: int) -> dict:
    """Event n as a fact the rules refuse: a step of a run never triggered."""
    return {"id": f"e{n}", "type": "run.started", "occurred_at": T, "run_id": "never-triggered"}


def _meta(path: str) -> tuple[int, set[str], list[str]]:
    """(watermark, ids in event_ids, ids of the events up to the watermark)."""
    with sqlite3.connect(path) as c:
        mark = int(c.execute("SELECT value FROM flowledger_meta WHERE key = 'ids_indexed_upto'").fetchone()[0])
        indexed = {r[0] for r in c.execute("SELECT id FROM event_ids")}
        below = [orjson.loads(s)["id"] for (s,) in c.execute("SELECT state FROM stored_events WHERE rowid <= ?", (mark,))]
    return mark, indexed, below


item = st.one_of(
    st.builds(opened, st.integers(0, 9), st.integers(0, 2)),
    st.builds(refused, st.integers(0, 9)),
)
op = st.tuples(st.integers(0, 1), st.lists(item, min_size=1, max_size=6), st.booleans())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flush_rows=st.integers(1, 4), ops=st.lists(op, min_size=1, max_size=12))
def test_two_processes_flushing_and_rolling_back_store_each_id_once(flush_rows, ops):
    """Two logs on one file (as two processes have it, each with its own memory of the
    newest ids) append batches with resends, conflicts and refused facts, all or nothing
    or keep-going; each batch does what a model of "an id is stored once, with its first
    body" says, and event_ids holds exactly the ids up to the watermark."""
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "flowledger.db")
        logs = [open_log(path), open_log(path)]
        for log in logs:
            log.backend.recent_ids.flush_rows = flush_rows
        stored: dict[str, bytes] = {}
        try:
            for who, batch, keep_going in ops:
                fresh: dict[str, bytes] = {}
                expected = {"appended": 0, "duplicates": 0, "problems": 0}
                for event in batch:
                    body = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
                    known = stored.get(event["id"], fresh.get(event["id"]))
                    if known is not None:
                        expected["duplicates" if known == body else "problems"] += 1
                    elif event["type"] == "run.started":
                        expected["problems"] += 1
                    else:
                        fresh[event["id"]] = body
                        expected["appended"] += 1
                if expected["problems"] and not keep_going:
                    with pytest.raises(InvalidInput):
                        ledger.append_input(logs[who], jsonl(batch))
                else:
                    result, _ = ledger.append_input(logs[who], jsonl(batch), keep_going=keep_going)
                    got = {"appended": result.appended, "duplicates": result.duplicates, "problems": len(result.problems)}
                    assert got == expected
                    stored.update(fresh)
                assert logs[1 - who].count() == len(stored)
                mark, indexed, below = _meta(path)
                assert indexed == set(below) and len(below) == mark
        finally:
            for log in logs:
                log.close()


def test_ids_move_to_event_ids_every_flush_rows_events_in_one_sorted_insert(log, store_path):
    log.backend.recent_ids.flush_rows = 5
    ledger.append_input(log, jsonl([opened(n) for n in range(4)]))
    assert _meta(store_path)[:2] == (0, set())
    ledger.append_input(log, jsonl([opened(4)]))
    assert _meta(store_path)[:2] == (5, {f"e{n}" for n in range(5)})
    ledger.append_input(log, jsonl([opened(5)]))
    assert _meta(store_path)[0] == 5
    # Resends of ids on either side of the watermark are duplicates; another body, a conflict.
    again, _ = ledger.append_input(log, jsonl([opened(0), opened(5)]))
    assert (again.appended, again.duplicates) == (0, 2)
    for n in (1, 5):
        with pytest.raises(InvalidInput) as info:
            ledger.append_input(log, jsonl([opened(n, 2)]))
        assert "different body" in info.value.problems[0].message
    assert log.count() == 6


def test_a_flush_undone_with_its_transaction_is_undone_in_memory_too(log, store_path):
    log.backend.recent_ids.flush_rows = 3
    ledger.append_input(log, jsonl([opened(0)]))
    # Five new events would flush, but the last is refused: nothing of the batch stays.
    with pytest.raises(InvalidInput):
        ledger.append_input(log, jsonl([opened(n) for n in range(1, 6)] + [refused(6)]))
    assert _meta(store_path)[:2] == (0, set()) and log.count() == 1
    # Its ids are free again, and the one stored before it is still known.
    result, _ = ledger.append_input(log, jsonl([opened(n) for n in range(6)]))
    assert (result.appended, result.duplicates) == (5, 1)
    assert _meta(store_path)[0] == 6


def test_a_new_process_reads_the_ids_after_the_watermark_from_the_log(store_path):
    """What one process held in memory only (it flushed nothing) is found by the next."""
    first = open_log(store_path)
    ledger.append_input(first, jsonl([opened(n) for n in range(3)]))
    first.close()  # or killed: nothing of it was in memory only
    assert _meta(store_path)[:2] == (0, set())
    second = open_log(store_path)
    try:
        result, _ = ledger.append_input(second, jsonl([opened(n) for n in range(4)]))
        assert (result.appended, result.duplicates) == (1, 3)
    finally:
        second.close()
