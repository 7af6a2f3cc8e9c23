"""The command line against a hostile environment, where a command has stored something (or
nothing) and then cannot say so as usual: standard error a closed pipe, output or a skip
file on a full device, an input that cannot be read, a line of any length. Its exit status
and its one message must still say truly what was stored."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tracemalloc

import orjson
import pytest

from flowledger import ingest, ledger
from flowledger.store import open_log
from tests.conftest import step, triggered

EXE = os.path.join(os.path.dirname(sys.executable), "flowledger")

FULL = "/dev/full"
needs_full = pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full here")


def _lines(*events: dict) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


GOOD = _lines(triggered("r1"), triggered("r2"))
"""Two events that are stored."""
MIXED = GOOD + b'{"id": "bad", "type": "run.exploded"}\n'
"""Two good events and a bad one."""
FAILED_RUN = _lines(
    triggered("r1"),
    {"id": "r1-s", "type": "run.started", "occurred_at": "2026-11-01T09:00:01Z", "run_id": "r1"},
    step("step.started", "r1"),
    step("step.failed", "r1"),
    {"id": "r1-f", "type": "run.failed", "occurred_at": "2026-11-01T09:00:03Z", "run_id": "r1", "error": "boom"},
)


def flowledger(*args: str, stdin: bytes = b"", **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([EXE, *args], input=stdin, **kwargs)


def _stored(store_path: str) -> int:
    """How many events the store's log holds (0 where there is no store)."""
    if not os.path.exists(store_path):
        return 0
    log = open_log(store_path, create=False)
    try:
        return ledger.head(log)
    finally:
        log.close()


def _no_bug(err: str) -> None:
    assert "Traceback" not in err and "bug in flowledger" not in err and "unexpected" not in err, err


# Standard error a pipe whose reader has gone.


def _into_a_closed_pipe(stream: str, *args: str, stdin: bytes) -> subprocess.CompletedProcess:
    """Run flowledger with ``stream`` ("stdout" or "stderr") a pipe whose reader has gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        return flowledger(*args, stdin=stdin, **{stream: write})
    finally:
        os.close(write)


def test_a_refused_input_still_exits_1_when_standard_error_is_a_closed_pipe(store_path):
    # `flowledger append bad.jsonl 2>&1 | head -0`: the problems cannot be shown, but the
    # status must still say that nothing was stored (it was 0, as for a listing cut short).
    proc = _into_a_closed_pipe("stderr", "--store", store_path, "append", "-", stdin=MIXED)
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert _stored(store_path) == 0


def test_output_cut_short_after_an_append_still_exits_0(store_path):
    # The other side of the same rule: the append was done, its reader stopped reading.
    proc = _into_a_closed_pipe("stdout", "--store", store_path, "append", "-", stdin=GOOD)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    assert _stored(store_path) == 2


# A --skip-invalid file on a full device.


@needs_full
def test_a_skip_file_on_a_full_device_says_the_good_events_were_stored(store_path):
    proc = flowledger("--store", store_path, "append", "-", "--skip-invalid", FULL, stdin=MIXED)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err == (
        f"Error: the good events were stored, but writing the --skip-invalid file {FULL} failed: "
        "No space left on device\n"
    )
    assert _stored(store_path) == 2


# Output on a full device after the command has changed the store.


@pytest.fixture
def failed_run(store_path) -> str:
    """A store whose run r1 has failed."""
    assert flowledger("--store", store_path, "append", "-", stdin=FAILED_RUN).returncode == 0
    return store_path


def _to_full(*args: str, stdin: bytes = b"") -> str:
    """Run with standard output on /dev/full; its standard error, the run exiting 1."""
    with open(FULL, "wb") as out:
        proc = flowledger(*args, stdin=stdin, stdout=out)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    _no_bug(err)
    return err


@needs_full
def test_an_append_whose_output_cannot_be_written_says_it_stored_the_events(store_path):
    err = _to_full("--store", store_path, "append", "-", stdin=GOOD)
    assert err == (
        'Error: the append was done ({"appended":2,"duplicates":0}), but the output could not be '
        "written: No space left on device\n"
    )
    assert _stored(store_path) == 2


@needs_full
def test_an_append_of_a_providers_export_whose_output_cannot_be_written_says_what_it_did(store_path):
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "sendgrid-events.json")
    err = _to_full("--store", store_path, "append", "--format", "sendgrid", fixture)
    assert err.startswith('Error: the append was done ({"appended":'), err
    assert err.endswith("}), but the output could not be written: No space left on device\n"), err
    assert _stored(store_path) + len(orjson.loads(flowledger("--store", store_path, "unmatched", "--json").stdout)) > 0


@needs_full
def test_a_retry_whose_output_cannot_be_written_says_the_run_was_retried(failed_run):
    err = _to_full("--store", failed_run, "retry", "r1", "--reason", "outage over")
    assert err == "Error: run r1 was retried, but the output could not be written: No space left on device\n"
    # Done once: a second retry is refused, as the message led the user to expect.
    again = flowledger("--store", failed_run, "retry", "r1")
    assert again.returncode == 1
    assert "it is pending" in again.stderr.decode()


@needs_full
def test_a_cancel_whose_output_cannot_be_written_says_the_run_was_cancelled(store_path):
    assert flowledger("--store", store_path, "append", "-", stdin=GOOD).returncode == 0
    err = _to_full("--store", store_path, "cancel", "r1", "--json")
    assert err == "Error: run r1 was cancelled, but the output could not be written: No space left on device\n"


@needs_full
def test_a_cancel_by_key_whose_output_cannot_be_written_says_which_runs_were_cancelled(store_path):
    events = _lines(*(triggered(r, trigger={"source": "api", "cancellation_key": "k-1"}) for r in ("r1", "r2")))
    assert flowledger("--store", store_path, "append", "-", stdin=events).returncode == 0
    err = _to_full("--store", store_path, "cancel", "--key", "k-1")
    assert err == (
        "Error: 2 run(s) with cancellation_key 'k-1' were cancelled (r1, r2), but the output could not be "
        "written: No space left on device\n"
    )


@needs_full
@pytest.mark.parametrize("json", [[], ["--json"]], ids=["text", "json"])
def test_a_key_made_but_not_shown_is_named_to_be_revoked(store_path, json):
    # The key's secret is shown once: one that could not be shown is of no use to anyone.
    err = _to_full("--store", store_path, "keys", "create", "--name", "ci", "--scope", "read", *json)
    listed = orjson.loads(flowledger("--store", store_path, "keys", "list", "--json").stdout)
    assert len(listed) == 1
    key_id = listed[0]["id"]
    assert err == (
        f"Error: the key {key_id} was made, but the output could not be written: No space left on device; "
        f"it is shown only once: revoke it with `flowledger keys revoke {key_id}` and make another\n"
    )


@needs_full
def test_a_revoke_whose_output_cannot_be_written_says_the_key_was_revoked(store_path):
    made = flowledger("--store", store_path, "keys", "create", "--name", "ci", "--scope", "read", "--json")
    key_id = orjson.loads(made.stdout)["id"]
    err = _to_full("--store", store_path, "keys", "revoke", key_id)
    assert err == f"Error: key {key_id} was revoked, but the output could not be written: No space left on device\n"


# An input that cannot be read.


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="no /proc/self/mem here")
def test_an_input_that_cannot_be_read_is_named_not_called_a_bug(store_path):
    # /proc/self/mem fails its first read with EIO, as a file on a failing disk does. A
    # small file is read in this process (a large one in a second, which said so already).
    proc = flowledger("--store", store_path, "append", "/proc/self/mem")
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    _no_bug(err)
    assert err == "Error: reading the input failed: Input/output error; nothing was stored\n"
    assert _stored(store_path) == 0


# A line of any length.


class _EndlessLine(io.RawIOBase):
    """A stream of one line of ``size`` bytes of ``fill`` (then ``tail``), made as it is read."""

    def __init__(self, size: int, fill: bytes = b"a", tail: bytes = b"\n") -> None:
        self.left = size
        self.fill = fill
        self.tail = tail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left > 0:
            n = min(len(buffer), self.left)
            buffer[:n] = self.fill * n
            self.left -= n
            return n
        n = min(len(buffer), len(self.tail))
        buffer[:n] = self.tail[:n]
        self.tail = self.tail[n:]
        return n


def _items(stream, limit: int) -> list[ingest.RawItem]:
    return list(ingest.read_items(io.BufferedReader(stream), limit))


def test_a_line_longer_than_any_event_is_measured_without_being_held():
    # A line is refused past --max-event-bytes, but it was read whole first: a file of one
    # endless line (a minified export, /dev/zero) took all the memory, and the OOM killer
    # ended the command (or another process) without a word.
    size = 200_000_000
    tracemalloc.start()
    try:
        items = _items(_EndlessLine(size, tail=b"\n" + GOOD), 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"{peak:,} bytes held for one line"
    assert [i.line for i in items] == [1, 2, 3]
    assert items[0].error == (
        f"the event is {size:,} bytes; the limit is 1,048,576 bytes (--max-event-bytes or FLOWLEDGER_MAX_EVENT_BYTES)"
    )
    assert items[0].text == "a" * 200 + "…"
    assert [i.value["run_id"] for i in items[1:]] == ["r1", "r2"]


def test_an_event_with_much_white_space_around_it_is_still_read_as_the_event():
    # Past some white space, a line is read in parts: the event in it is still found whole.
    event = orjson.dumps(triggered("r1"))
    for pad in (10, 100_000):
        line = b" " * pad + event + b" \t" * pad + b"\r\n"
        items = _items(io.BytesIO(b"\n" + line + GOOD), len(event))
        assert [i.error for i in items] == [None, None, None], pad
        assert items[0].value == orjson.loads(event)
        assert [i.line for i in items] == [2, 3, 4]


def test_a_long_line_is_measured_without_the_white_space_around_it():
    limit = 1000
    for pad in (0, 100_000):
        line = b" " * pad + b"x" * (limit + 1) + b" " * pad + b"\n"
        (item,) = _items(io.BytesIO(line), limit)
        assert item.error.startswith(f"the event is {limit + 1:,} bytes;"), pad
        assert item.text == "x" * 200 + "…"
    # A line of nothing but white space is no item, however long.
    assert _items(io.BytesIO(b" " * 100_000 + b"\n" + GOOD), limit)[0].line == 2


def test_blank_lines_before_the_first_event_are_counted_not_kept():
    # They were kept and copied again for each byte read: 300,000 took 26 s, a million 4 min
    # (no time is asserted here: the old reading would keep this test running for minutes).
    blank = 500_000
    items = _items(io.BytesIO(b"\r\n" * blank + GOOD), 1 << 20)
    assert [(i.line, i.value["run_id"]) for i in items] == [(blank + 1, "r1"), (blank + 2, "r2")]


def test_a_bad_first_line_after_blank_lines_is_named_at_its_own_column():
    (item,) = _items(io.BytesIO(b"\n\n  x\n"), 1 << 20)
    assert item.line == 3
    assert item.error.endswith("at column 3)"), item.error


def test_a_long_line_through_the_command_is_refused_with_its_size(store_path):
    # Large enough to be read by the second process (a pipe), which shares the same reader.
    line = b'{"id": "x", "data": "' + b"y" * 3_000_000 + b'"}\n'
    proc = flowledger("--store", store_path, "append", "-", stdin=GOOD + line)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert f"line 3: the event is {len(line) - 1:,} bytes; the limit is 1,048,576 bytes" in err
    assert _stored(store_path) == 0


# A current folder that was deleted.


@pytest.mark.parametrize(
    "args, store",
    [(["counts"], "./flowledger.db"), (["append", "-"], "./flowledger.db"), (["--store", "runs.db", "runs", "list"], "runs.db")],
    ids=["query", "append", "relative store"],
)
def test_a_relative_store_in_a_deleted_folder_says_the_folder_is_gone(tmp_path, args, store):
    # A query said "no store at ./flowledger.db: append some events first", and append
    # then failed with SQLite's "unable to open database file".
    gone = tmp_path / "gone"
    gone.mkdir()
    script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
    proc = subprocess.run(
        ["sh", "-c", script, "sh", str(gone), EXE, *args], input=GOOD, capture_output=True,
        env={k: v for k, v in os.environ.items() if k != "FLOWLEDGER_STORE"},
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err == (
        f"Error: cannot use the store {store}: the current folder no longer exists; "
        "cd to one that does, or give --store an absolute path\n"
    )


def test_an_absolute_store_from_a_deleted_folder_is_used_as_ever(tmp_path, store_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    script = 'cd "$1" && rmdir "$1" && shift && exec "$@"'
    proc = subprocess.run(
        ["sh", "-c", script, "sh", str(gone), EXE, "--store", store_path, "append", "-"], input=GOOD,
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert _stored(store_path) == 2


# A --skip-invalid file that is one of the store's own.


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", ".inbox", " (a link)"])
def test_a_skip_file_that_is_one_of_the_stores_files_is_refused_before_anything_is_stored(store_path, suffix):
    # The append truncated the skip file and wrote the bad events in it: given the store's
    # own path, it stored the good events, then overwrote the whole store, and exited 0.
    assert flowledger("--store", store_path, "append", "-", stdin=GOOD).returncode == 0
    with open(store_path, "rb") as f:
        before = f.read()
    if suffix == " (a link)":
        skip = os.path.join(os.path.dirname(store_path), "rejected.jsonl")
        os.symlink(store_path, skip)
    else:
        skip = store_path + suffix
    more = _lines(triggered("r3")) + b'{"id": "bad", "type": "run.exploded"}\n'
    proc = flowledger("--store", store_path, "append", "-", "--skip-invalid", skip, stdin=more)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.endswith(
        f"Error: Invalid value for '--skip-invalid': {skip} is one of the store's own files: the events "
        "set aside would be written over it; give another file\n"
    ), err
    with open(store_path, "rb") as f:
        assert f.read() == before
    assert _stored(store_path) == 2
    if suffix in ("-wal", "-shm", ".inbox"):
        assert not os.path.exists(skip)


def test_a_skip_file_named_as_a_new_store_is_refused_and_makes_no_store(tmp_path):
    store = str(tmp_path / "new.db")
    proc = flowledger("--store", store, "append", "-", "--skip-invalid", str(tmp_path / "." / "new.db"), stdin=MIXED)
    assert proc.returncode == 2, proc.stderr.decode()
    assert "is one of the store's own files" in proc.stderr.decode()
    assert os.listdir(tmp_path) == []


def test_a_skip_file_beside_the_store_with_a_name_like_its_own_is_taken(store_path):
    skip = store_path + "-rejected.jsonl"
    proc = flowledger("--store", store_path, "append", "-", "--skip-invalid", skip, stdin=MIXED)
    assert proc.returncode == 0, proc.stderr.decode()
    assert _stored(store_path) == 2
    with open(skip, "rb") as f:
        assert [orjson.loads(line)["line"] for line in f] == [3]


@pytest.mark.parametrize("name", ["", "   "])
def test_a_blank_skip_file_name_is_refused_before_anything_is_stored(store_path, tmp_path, name):
    # `--skip-invalid "$REJECTS"` with the variable unset: not a file named by spaces, nor
    # a store error after the input was read.
    proc = flowledger("--store", store_path, "append", "-", "--skip-invalid", name, stdin=MIXED, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr.decode()
    assert "a --skip-invalid file cannot be blank" in proc.stderr.decode()
    assert _stored(store_path) == 0 and os.listdir(tmp_path) == []


def test_a_key_is_not_made_when_standard_output_is_closed(store_path):
    # `flowledger keys create … >&-`: its secret, shown only once, would reach nobody.
    proc = subprocess.run(
        ["sh", "-c", f'"{EXE}" --store "{store_path}" keys create --name ops --scope read >&-'],
        stderr=subprocess.PIPE,
    )
    assert proc.returncode == 1
    assert "standard output is closed, so the key could not be shown; no key was made" in proc.stderr.decode()
    # Refused before the store was opened: none was made either.
    assert not os.path.exists(store_path)


def test_an_error_with_standard_error_closed_never_reaches_standard_output(tmp_path):
    # `flowledger … 2>&- | jq`: click printed "Error: …" on standard output, into what the pipe
    # reads as the command's output. Nothing is printed; the exit status tells.
    proc = subprocess.run(["sh", "-c", f'"{EXE}" --store "{tmp_path}/none.db" counts --json 2>&-'], stdout=subprocess.PIPE)
    assert proc.returncode == 1 and proc.stdout == b""
    # A command that succeeds prints its output as ever.
    ok = subprocess.run(["sh", "-c", f'"{EXE}" --store "{tmp_path}/s.db" append - 2>&-'], input=GOOD, stdout=subprocess.PIPE)
    assert ok.returncode == 0 and orjson.loads(ok.stdout) == {"appended": 2, "duplicates": 0}


@pytest.mark.parametrize("args", [["counts"], ["append", "-"]])
def test_a_store_that_is_a_symbolic_link_loop_is_named_as_one(tmp_path, args):
    loop = str(tmp_path / "loop.db")
    os.symlink(str(tmp_path / "back.db"), loop)
    os.symlink(loop, str(tmp_path / "back.db"))
    proc = flowledger("--store", loop, *args, stdin=GOOD)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert err == f"Error: cannot open the store {loop}: Too many levels of symbolic links\n"


@pytest.mark.parametrize("how", ["by name", "as standard input", "by a link"])
def test_a_skip_file_that_is_the_input_itself_is_refused_before_anything_is_stored(store_path, tmp_path, how):
    # The rejected lines were written over the input: the file the user would fix and send
    # again was gone, only its bad lines left.
    source = tmp_path / "events.jsonl"
    source.write_bytes(MIXED)
    skip = str(source)
    if how == "by a link":
        skip = str(tmp_path / "rejected.jsonl")
        os.symlink(source, skip)
    if how == "as standard input":
        with open(source, "rb") as stdin:
            proc = subprocess.run([EXE, "--store", store_path, "append", "-", "--skip-invalid", skip], stdin=stdin, capture_output=True)
    else:
        proc = flowledger("--store", store_path, "append", str(source), "--skip-invalid", skip)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert f"Invalid value for '--skip-invalid': {skip} is the input itself" in err
    assert source.read_bytes() == MIXED and _stored(store_path) == 0
