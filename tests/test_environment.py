"""The SQLite store when its environment misbehaves: a path that is no file, folders and
files that cannot be written, a full disk, a damaged file. Each ends in one clear message
and exit 1, never a traceback, and leaves the store as it was.

Some need a process that file permissions apply to: as root, the command runs under
``setpriv`` without the capabilities that override them; where that cannot be had, those
tests skip, saying why. The full-disk tests mount a small tmpfs, and skip where mounting
is not permitted.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import resource
import shutil
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from flowledger.errors import StoreError
from flowledger.store.staging import give_name
from tests.conftest import step, triggered

EXE = os.path.join(os.path.dirname(sys.executable), "flowledger")

_NO_OVERRIDE = ["--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def _events(n: int, prefix: str = "run") -> bytes:
    """JSON Lines of n runs, each triggered, started and with a step begun."""
    lines = []
    for i in range(n):
        run = f"{prefix}-{i}"
        lines.append(triggered(run, data={"note": "x" * 200}))
        lines.append({"id": f"{run}-s", "type": "run.started", "occurred_at": "2026-11-01T09:00:01Z", "run_id": run})
        lines.append(step("step.started", run))
    return b"\n".join(orjson.dumps(e) for e in lines) + b"\n"


def flowledger(*args: str, prefix: list[str] | None = None, stdin: bytes = b"", **kwargs) -> subprocess.CompletedProcess:
    """Run the installed command (after ``prefix``, if any)."""
    return subprocess.run([*(prefix or []), EXE, *args], input=stdin, capture_output=True, **kwargs)


def failed_cleanly(proc: subprocess.CompletedProcess, *phrases: str) -> str:
    """Assert the command exited 1 with one message holding the phrases; returns it."""
    err = proc.stderr.decode()
    assert proc.returncode == 1, (proc.returncode, err)
    assert "Traceback" not in err and "bug in flowledger" not in err, err
    for phrase in phrases:
        assert phrase in err, err
    return err


def _count(path: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return raw.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]


def _store(path: Path, n: int = 50) -> str:
    """A store at path with n runs appended and its views made."""
    assert flowledger("--store", str(path), "append", "-", stdin=_events(n)).returncode == 0
    assert flowledger("--store", str(path), "counts").returncode == 0
    return str(path)


@functools.lru_cache(maxsize=1)
def _unprivileged() -> tuple[list[str] | None, str]:
    """A command prefix under which file permissions apply (empty if they already do), or
    None with the reason there is none."""
    if os.geteuid() != 0:
        return [], ""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None, "running as root, and no setpriv to drop the capabilities that override file permissions"
    probe = Path(f"/tmp/flowledger-probe-{uuid.uuid4().hex}")
    probe.mkdir(mode=0o500)
    try:
        proc = subprocess.run([setpriv, *_NO_OVERRIDE, "touch", str(probe / "x")], capture_output=True)
    finally:
        with contextlib.suppress(OSError):
            (probe / "x").unlink()
        probe.rmdir()
    if proc.returncode == 0:
        return None, "running as root, and setpriv could not drop the capabilities that override file permissions"
    if b"Permission denied" not in proc.stderr:
        return None, f"running as root, and setpriv failed: {proc.stderr.decode().strip()}"
    return [setpriv, *_NO_OVERRIDE], ""


@pytest.fixture
def unprivileged() -> list[str]:
    """The prefix of :func:`_unprivileged`, or the test skips."""
    prefix, why = _unprivileged()
    if prefix is None:
        pytest.skip(why)
    return prefix


# The store's path names something that is no store file.


def test_a_folder_is_named_as_such_not_as_a_file_that_cannot_be_opened(tmp_path):
    folder = tmp_path / "stores"
    folder.mkdir()
    for args in (["counts"], ["append", "-"]):
        err = failed_cleanly(flowledger("--store", str(folder), *args, stdin=_events(1)), "is a folder")
        assert "unable to open" not in err
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null here")
def test_a_device_or_a_pipe_is_no_store_file(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for path in ("/dev/null", str(pipe)):
        for args in (["counts"], ["append", "-"]):
            err = failed_cleanly(flowledger("--store", path, *args, stdin=_events(1)), "not a regular file")
            assert "disk I/O error" not in err


def test_a_path_beginning_with_file_colon_is_that_file(tmp_path):
    # SQLite reads "file:…" as a URI: the store must still be the file the path names, so
    # that every command (which looks at the path first) finds the same one.
    assert flowledger("--store", "file:runs.db", "append", "-", stdin=_events(3), cwd=tmp_path).returncode == 0
    assert (tmp_path / "file:runs.db").is_file() and not (tmp_path / "runs.db").exists()
    proc = flowledger("--store", "file:runs.db", "counts", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = flowledger("--store", "file:runs.db", "rebuild", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout)["events"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file:runs.db"]


def test_a_path_beginning_with_file_colon_never_writes_into_the_file_its_uri_names(tmp_path):
    # Read as a URI, "file:theirs.db" would be theirs.db, another program's database, which
    # the check of an existing file (made on the path as written) never looked at.
    with contextlib.closing(sqlite3.connect(tmp_path / "theirs.db")) as raw:
        raw.execute("CREATE TABLE foo (x)")
        raw.commit()
    before = (tmp_path / "theirs.db").read_bytes()
    proc = flowledger("--store", "file:theirs.db", "append", "-", stdin=_events(1), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "theirs.db").read_bytes() == before
    assert _count(str(tmp_path / "file:theirs.db")) == 3


# Folders and files that cannot be written.


def test_a_store_in_a_folder_that_cannot_be_written_says_so(tmp_path, unprivileged):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    proc = flowledger("--store", str(folder / "new.db"), "append", "-", stdin=_events(1), prefix=unprivileged)
    err = failed_cleanly(proc, "cannot create the store", f"folder {folder} is not writable")
    assert "unable to open database file" not in err
    assert list(folder.iterdir()) == []


def test_a_store_in_a_read_only_folder_names_the_folder_not_the_file(tmp_path, unprivileged):
    # The file may be written, but SQLite must make its -wal and -shm files beside it.
    folder = tmp_path / "shelf"
    folder.mkdir()
    path = _store(folder / "runs.db")
    before = Path(path).read_bytes()
    folder.chmod(0o555)
    for args in (["counts", "--no-catch-up"], ["append", "-"]):
        proc = flowledger("--store", path, *args, stdin=_events(1, "more"), prefix=unprivileged)
        err = failed_cleanly(proc, f"the folder {folder} is not writable", "-wal")
        assert "read-only here" not in err
    folder.chmod(0o755)
    assert Path(path).read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["runs.db"]


def test_a_read_only_shared_memory_file_is_named_when_the_store_cannot_be_written(tmp_path, unprivileged):
    # Reading a store whose file is read-only leaves its -shm and -wal read-only too; once
    # the file is writable again, that -shm still keeps every writer out: say which file.
    path = _store(tmp_path / "runs.db")
    os.chmod(path, 0o444)
    assert flowledger("--store", path, "counts", "--no-catch-up", prefix=unprivileged).returncode == 0
    os.chmod(path, 0o644)
    if not os.path.exists(path + "-shm") or os.stat(path + "-shm").st_mode & stat.S_IWUSR:
        pytest.skip("this SQLite leaves no read-only -shm file behind")
    proc = flowledger("--store", path, "append", "-", stdin=_events(1, "more"), prefix=unprivileged)
    failed_cleanly(proc, f"{path}-shm", "read-only")
    assert _count(path) == 150


def test_a_read_only_store_can_be_queried_but_not_appended_to(tmp_path, unprivileged):
    path = _store(tmp_path / "runs.db")
    os.chmod(path, 0o444)
    proc = flowledger("--store", path, "runs", "list", "--no-catch-up", "--json", prefix=unprivileged)
    assert proc.returncode == 0, proc.stderr
    assert len(orjson.loads(proc.stdout)["entries"]) == 50
    proc = flowledger("--store", path, "append", "-", stdin=_events(1, "more"), prefix=unprivileged)
    failed_cleanly(proc, "read-only")
    assert _count(path) == 150


# A full disk, a file size limit, a damaged file.


@contextlib.contextmanager
def _small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at where, unmounted after (or the test skips)."""
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not permitted here: {proc.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_a_disk_that_fills_up_during_an_append_stores_nothing_of_it(tmp_path):
    with _small_disk(tmp_path / "small", "2m") as disk:
        path = str(disk / "runs.db")
        assert flowledger("--store", path, "append", "-", stdin=_events(300)).returncode == 0
        proc = flowledger("--store", path, "append", "-", stdin=_events(3000, "more"))
        failed_cleanly(proc, "full", "nothing was stored")
        assert _count(path) == 900
        # Still a store: a run's history reads the log alone, which nothing was added to.
        proc = flowledger("--store", path, "replay", "run-299", "--json")
        assert proc.returncode == 0, proc.stderr
        assert len(orjson.loads(proc.stdout)["events"]) == 3


def test_a_disk_that_fills_up_during_a_rebuild_leaves_the_views_and_no_staging_file(tmp_path):
    path = _store(tmp_path / "runs.db", n=3000)
    size = os.path.getsize(path)
    with _small_disk(tmp_path / "small", f"{size // 1024 + 300}k") as disk:
        shutil.copy(path, disk / "runs.db")
        copy = str(disk / "runs.db")
        with contextlib.closing(sqlite3.connect(copy)) as raw:
            before = raw.execute("SELECT * FROM tracking ORDER BY 1").fetchall()
        failed_cleanly(flowledger("--store", copy, "rebuild"), "full")
        assert glob.glob(copy + ".rebuild-*") == []
        assert _count(copy) == 9000
        with contextlib.closing(sqlite3.connect(copy)) as raw:
            assert raw.execute("SELECT * FROM tracking ORDER BY 1").fetchall() == before
            assert raw.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 3000


def test_a_disk_that_fills_up_during_a_rebuild_into_a_new_copy_names_the_copy_and_leaves_nothing(tmp_path):
    """`rebuild --into NEW.db` on a disk too small for it: the error names the copy asked for
    (not the files it was being made in) and says it was not made; none of them is left."""
    path = _store(tmp_path / "runs.db", n=3000)
    with _small_disk(tmp_path / "small", f"{os.path.getsize(path) // 1024 // 2}k") as disk:
        copy = str(disk / "copy.db")
        err = failed_cleanly(flowledger("--store", path, "rebuild", "--into", copy), "full")
        assert f"the copy {copy} was not made" in err, err
        assert os.listdir(disk) == []
    assert _count(path) == 9000


def test_a_copy_that_cannot_be_made_one_file_is_a_store_error_not_a_driver_s(tmp_path):
    """The last step of `rebuild --into NEW.db` (the copy's log folded into it) failing in
    SQLite is flowledger's own error, naming the file."""
    building = tmp_path / "copy.db.building-1"
    building.write_bytes(b"not a database at all" * 500)
    with pytest.raises(StoreError, match="could not be made one file") as caught:
        give_name(str(building), str(tmp_path / "copy.db"))
    assert str(building) in str(caught.value)
    assert not (tmp_path / "copy.db").exists()


def _file_size_limit(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_file_size_limit_is_an_error_that_says_a_write_failed(tmp_path):
    # Python ignores SIGXFSZ: past `ulimit -f` a write fails with EFBIG, which SQLite
    # reports as a disk I/O error.
    path = _store(tmp_path / "runs.db")
    limit = os.path.getsize(path) + 64 * 1024
    proc = flowledger("--store", path, "append", "-", stdin=_events(3000, "more"), preexec_fn=lambda: _file_size_limit(limit))
    failed_cleanly(proc, "could not be written", "SQLITE_IOERR_WRITE")
    assert _count(path) == 150


def test_a_damaged_store_is_called_damaged_not_something_else(tmp_path):
    path = _store(tmp_path / "runs.db", n=1000)
    pages = os.path.getsize(path) // 4096
    with open(path, "r+b") as f:
        for page in range(pages // 4, pages - 1, 7):
            f.seek(page * 4096)
            f.write(b"\0" * 4096)
    err = failed_cleanly(flowledger("--store", path, "rebuild"), "is damaged", "integrity_check")
    assert "not a flowledger store" not in err
    assert glob.glob(path + ".rebuild-*") == []


def test_a_store_whose_path_is_not_utf8_can_be_rebuilt(tmp_path):
    # Linux names are bytes: a store at one that is not UTF-8 is appended to and queried,
    # so its rebuild (which attaches a staging file named after it) must work too.
    path = os.path.join(os.fsencode(tmp_path), b"runs-\xff.db")
    try:
        open(path, "wb").close()
        os.remove(path)
    except (OSError, UnicodeError):
        pytest.skip("this file system takes no names that are not UTF-8")
    proc = subprocess.run([EXE, b"--store", path, b"append", b"-"], input=_events(5), capture_output=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([EXE, b"--store", path, b"rebuild"], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert orjson.loads(proc.stdout)["events"] == 15
    assert os.listdir(os.fsencode(tmp_path)) == [b"runs-\xff.db"]


def test_a_staging_file_that_cannot_be_set_up_is_removed(tmp_path, monkeypatch):
    # A disk with room for the staging file but not for its tables: the rebuild fails
    # while making it, before it has begun, and must not leave it behind either.
    from flowledger import ledger
    from flowledger.errors import StoreError
    from flowledger.store import open_log
    from flowledger.store.staging import StagingBackend

    path = _store(tmp_path / "runs.db", n=5)

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(StagingBackend, "set_view_version", staticmethod(full))
    log = open_log(path, create=False)
    try:
        with pytest.raises(StoreError, match="full"):
            ledger.rebuild(log, None)
    finally:
        log.close()
    assert glob.glob(glob.escape(path) + ".rebuild-*") == []


def test_a_rebuild_that_cannot_make_its_staging_file_says_which_file_it_is(tmp_path, unprivileged):
    # Another process has the store open (its -wal and -shm are there), so this one may
    # use it in a folder that is read-only; its rebuild's staging file is no store.
    folder = tmp_path / "shelf"
    folder.mkdir()
    path = _store(folder / "runs.db")
    with contextlib.closing(sqlite3.connect(path)) as other:
        other.execute("SELECT COUNT(*) FROM stored_events").fetchone()
        folder.chmod(0o555)
        try:
            proc = flowledger("--store", path, "rebuild", prefix=unprivileged)
        finally:
            folder.chmod(0o755)
    err = failed_cleanly(proc, "cannot create the rebuild's staging file", f"the folder {folder} is not writable")
    assert "cannot create the store" not in err


def test_a_read_only_store_of_an_older_layout_says_a_writer_must_upgrade_it_once(tmp_path, unprivileged):
    # A store an older release wrote (its layout version below this one's) is upgraded once,
    # under the write lock, by the first process that opens it. One that may only read it
    # cannot: it said "read-only here" and no more, for `flowledger views` too, which promises
    # to work on a store this process may only read.
    import sqlite3

    path = _store(tmp_path / "old.db")
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE flowledger_meta SET value = '1' WHERE key = 'schema_version'")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    os.chmod(path, 0o444)
    before = Path(path).read_bytes()
    for args in (["views"], ["counts", "--no-catch-up"]):
        proc = flowledger("--store", path, *args, prefix=unprivileged)
        failed_cleanly(proc, "read-only here", "written by an older flowledger", "must be upgraded once by a process that can write it")
    os.chmod(path, 0o644)
    assert Path(path).read_bytes() == before
    # Opened once by a process that can write it, it is upgraded, and then read anywhere.
    assert flowledger("--store", path, "views").returncode == 0
    os.chmod(path, 0o444)
    assert flowledger("--store", path, "views", prefix=unprivileged).returncode == 0
