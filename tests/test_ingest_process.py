"""Reading a large input in a second process changes nothing a user can see: the same
events stored, the same problems with the same lines, all or nothing; a reader that fails
or dies stores nothing and leaves no process behind."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import threading

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ingest_process, ledger
from flowledger.errors import InvalidInput
from flowledger.ingest import IngestOptions
from flowledger.store.log import EventLog
from tests.conftest import ev, step, triggered, wait_until
from tests.histories import fresh_log

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture
def forking(monkeypatch):
    """Every input read by a child, in small chunks, through a ring small enough to wrap
    and to send its larger frames down the pipe instead."""
    monkeypatch.setattr(ingest_process, "FORK_FROM_BYTES", 0)
    monkeypatch.setattr(ingest_process, "FIRST_CHUNK", 2)
    monkeypatch.setattr(ingest_process, "RING_BYTES", 2048)
    # append reads in-process while another thread runs (a fork copies only the calling
    # thread): TestClient's idle AnyIO workers, left by an earlier module, end within ten s.
    wait_until(lambda: threading.active_count() == 1, 15)
    assert [t.name for t in threading.enumerate()] == ["MainThread"], "a fork would be refused"


def _lines(draw) -> list[bytes]:
    """An input of good events, broken lines and events that break the rules."""
    lines = []
    for i in range(draw(st.integers(0, 30))):
        rid = f"r{i % 4}"
        kind = draw(st.sampled_from(["good", "good", "good", "not json", "bad field", "blank", "refused", "resent"]))
        if kind == "good":
            lines.append(orjson.dumps(triggered(f"{rid}-{i}")))
            lines.append(orjson.dumps(ev("run.started", run_id=f"{rid}-{i}")))
        elif kind == "not json":
            lines.append(b'{"id": "x", "type": ')
        elif kind == "bad field":
            lines.append(orjson.dumps({"id": f"b{i}", "type": "run.started", "occurred_at": "yesterday", "run_id": rid}))
        elif kind == "blank":
            lines.append(b"   ")
        elif kind == "refused":
            lines.append(orjson.dumps(step("step.succeeded", f"never-{i}")))
        elif lines:
            lines.append(draw(st.sampled_from(lines)))
    return lines


def _append(log: EventLog, data: bytes, keep_going: bool, chunk_size: int):
    """What an append of ``data`` says: its counts, or its problems."""
    options = IngestOptions(chunk_size=chunk_size)
    try:
        result, rejected = ledger.append_input(log, io.BytesIO(data), options, keep_going=keep_going)
    except InvalidInput as e:
        return "refused", [(p.line, p.message) for p in e.problems]
    return (result.appended, result.duplicates), sorted((p.line or 0, p.message) for p in rejected) + sorted(
        (p.line or 0, p.message) for _, p in result.problems
    )


def _stored(log: EventLog):
    with log.backend.transaction(write=False) as c:
        c.execute("SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid")
        return [(s, v, t, orjson.loads(b)) for s, v, t, b in c.fetchall()]


def _without_recorded_at(stored):
    return [(s, v, t, {k: x for k, x in b.items() if k != "recorded_at"}) for s, v, t, b in stored]


@SETTINGS
@given(st.data(), st.booleans(), st.integers(1, 5))
def test_an_input_read_by_a_child_appends_as_one_read_here(forking, data, keep_going, chunk_size):
    lines = _lines(data.draw)
    payload = b"\n".join(lines) + (b"\n" if data.draw(st.booleans()) else b"")
    with fresh_log() as (here, _), fresh_log() as (there, _):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(ledger, "worth_forking", lambda stream: False)
            expected = _append(here, payload, keep_going, chunk_size)
        assert ingest_process.worth_forking(io.BytesIO(payload))
        with pytest.MonkeyPatch.context() as m:
            # Rings that hold several frames, or barely one (larger ones take the pipe).
            m.setattr(ingest_process, "RING_BYTES", data.draw(st.sampled_from([512, 2048, 1 << 16])))
            assert _append(there, payload, keep_going, chunk_size) == expected
        assert _without_recorded_at(_stored(there)) == _without_recorded_at(_stored(here))
    _assert_no_child_left()


def _raise() -> None:
    raise RuntimeError("disk on fire")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize(
    "end, said",
    [(_raise, "disk on fire.*nothing was stored"), (_die, "ended before the input did.*nothing was stored")],
    ids=["fails", "is killed"],
)
def test_a_reader_that_fails_or_is_killed_part_way_stores_nothing(forking, log, monkeypatch, end, said):
    candidates = ingest_process.candidates

    def ending(items, options, rejected):
        yield next(iter(candidates(items, options, rejected)))
        end()

    monkeypatch.setattr(ingest_process, "candidates", ending)
    with pytest.raises(ingest_process.ReaderFailed, match=said):
        ledger.append_input(log, io.BytesIO(_many_runs(50)))
    assert _stored(log) == []
    _assert_no_child_left()


def test_an_append_that_fails_part_way_ends_its_reader(forking, log, monkeypatch):
    calls = {"n": 0}
    append_chunk = EventLog._append_chunk

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C while the child is still reading
        return append_chunk(self, *args)

    monkeypatch.setattr(EventLog, "_append_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        ledger.append_input(log, io.BytesIO(_many_runs(2000)))
    assert _stored(log) == []
    _assert_no_child_left()


def test_a_pipe_is_read_by_a_child_and_progress_counts_every_byte(forking, log, tmp_path):
    data = _many_runs(300)
    (tmp_path / "in.jsonl").write_bytes(data)
    seen = []
    # Another process writes the pipe (of a size no one can know beforehand).
    with subprocess.Popen(["cat", str(tmp_path / "in.jsonl")], stdout=subprocess.PIPE) as cat:
        assert ingest_process.worth_forking(cat.stdout)
        result, rejected = ledger.append_input(log, cat.stdout, progress=seen.append)
    assert (result.appended, rejected) == (600, [])
    assert sum(seen) == len(data)
    _assert_no_child_left()


def test_a_child_reads_a_json_array_on_one_line_with_each_item_told_apart(forking, log):
    events = [triggered("r1"), ev("run.completed", run_id="ghost"), {"id": "x", "type": "nope"}, triggered("r2")]
    options = IngestOptions(keep_sources=True)
    result, rejected = ledger.append_input(log, io.BytesIO(orjson.dumps(events)), options, keep_going=True)
    assert result.appended == 2
    assert [(p.line, p.index) for _, p in result.problems] == [(1, 1)]
    assert [(p.line, p.index) for p in rejected] == [(1, 2)]
    _assert_no_child_left()


@pytest.mark.parametrize(
    "data, said",
    [
        (b'[' + orjson.dumps(triggered("r1")) + b', {"id": "x",}, ' + orjson.dumps(triggered("r2")) + b']', "not valid JSON"),
        (b'[' + orjson.dumps(triggered("r1")) + b', ' + b"[" * 100_000 + b"]" * 100_000 + b']', "nested too deeply"),
    ],
    ids=["syntax error", "nested too deeply"],
)
def test_a_json_array_a_child_cannot_read_to_its_end_stores_nothing(forking, log, data, said):
    with pytest.raises(InvalidInput) as raised:
        ledger.append_input(log, io.BytesIO(data), keep_going=True)
    assert [(p.line, p.index) for p in raised.value.problems] == [(1, 1)]
    assert said in raised.value.problems[0].message
    assert _stored(log) == []
    _assert_no_child_left()

def test_no_child_is_forked_for_a_small_input_or_while_threads_run():
    small = io.BytesIO(b"{}\n" * 10)
    assert not ingest_process.worth_forking(small)
    big = io.BytesIO(b" " * ingest_process.FORK_FROM_BYTES)
    assert ingest_process.worth_forking(big)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not ingest_process.worth_forking(big)
    finally:
        stop.set()
        other.join()


def _many_runs(n: int) -> bytes:
    events = []
    for i in range(n):
        events += [triggered(f"run-{i}"), ev("run.started", run_id=f"run-{i}")]
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def _assert_no_child_left() -> None:
    """Every child this process forked has been waited for."""
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
