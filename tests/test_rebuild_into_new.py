"""`rebuild --into NEW.db` makes the copy under a temporary name and gives it NEW.db's name
only once every view is folded: a copy cut short (kill -9, Ctrl-C, an error) never looks
like a finished one whose queries answer zeros."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap

import orjson
from click.testing import CliRunner

from flowledger import ledger, queries
from flowledger.cli import cli
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from tests.histories import jsonl
from tests.test_projector_crash import busy_workspace

# Dies inside the fold of the copy's views (its first page): as a kill -9 from outside would.
KILLED_MID_FOLD = textwrap.dedent(
    """
    import os, signal, sys
    from flowledger.projections.projector import Projector
    from flowledger.cli import cli

    real, pages = Projector._apply_page, []

    def apply_then_die(self, *args, **kwargs):
        pages.append(1)
        if len(pages) == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, *args, **kwargs)

    Projector._apply_page = apply_then_die
    cli(["--store", sys.argv[1], "rebuild", "--into", sys.argv[2]])
    """
)


def leftovers(path: str) -> list[str]:
    return sorted(p for p in glob.glob(glob.escape(path) + "*") if p != path)


def test_a_first_rebuild_into_killed_mid_fold_leaves_no_copy_and_the_next_one_makes_it(store_path, tmp_path):
    log = open_log(store_path)
    ledger.append_input(log, jsonl(list(busy_workspace(400))))
    expected = ledger.query(log, queries.counts)
    log.close()
    copy = str(tmp_path / "analysis.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", KILLED_MID_FOLD, store_path, copy], env=env, timeout=300)
    assert done.returncode == -signal.SIGKILL
    # The copy was being made (its files are there, under another name), but has no name yet.
    assert leftovers(copy)
    assert not os.path.exists(copy)
    # Queried by its name now, it is no store at all: not one answering zeros.
    runner = CliRunner()
    r = runner.invoke(cli, ["--store", copy, "counts", "--json", "--no-catch-up"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    made = runner.invoke(cli, ["--store", store_path, "rebuild", "--into", copy])
    assert made.exit_code == 0, made.output
    # What the killed one left is gone, and the copy has no journal beside it to lose.
    assert leftovers(copy) == []
    shown = runner.invoke(cli, ["--store", copy, "counts", "--json", "--no-catch-up"])
    assert shown.exit_code == 0 and orjson.loads(shown.stdout) == expected
    copied = open_log(copy, create=False)
    try:
        assert copied.backend.copy_of() == os.path.abspath(store_path)
    finally:
        copied.close()


def test_a_first_rebuild_into_that_fails_leaves_nothing_behind(store_path, tmp_path, monkeypatch):
    log = open_log(store_path)
    ledger.append_input(log, jsonl(list(busy_workspace(50))))
    log.close()
    real, pages = Projector._apply_page, []

    def interrupted(self, *args, **kwargs):
        pages.append(1)
        if len(pages) == 1:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Projector, "_apply_page", interrupted)
    copy = str(tmp_path / "analysis.db")
    r = CliRunner().invoke(cli, ["--store", store_path, "rebuild", "--into", copy])
    assert r.exit_code != 0 and len(pages) == 1
    assert not os.path.exists(copy) and leftovers(copy) == []


def test_rebuild_into_an_existing_copy_folds_it_again_in_place(store_path, tmp_path):
    # Only a new file is made under another name: a copy made before is folded again where it
    # is (its views replaced at once, as any SQLite rebuild's), its own files kept.
    log = open_log(store_path)
    ledger.append_input(log, jsonl(list(busy_workspace(20))))
    log.close()
    copy = str(tmp_path / "analysis.db")
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", store_path, "rebuild", "--into", copy]).exit_code == 0
    inode = os.stat(copy).st_ino
    log = open_log(store_path)
    ledger.append_input(log, jsonl(list(busy_workspace(30))[len(list(busy_workspace(20))):]))
    expected = ledger.query(log, queries.counts)
    log.close()
    assert runner.invoke(cli, ["--store", store_path, "rebuild", "--into", copy]).exit_code == 0
    assert os.stat(copy).st_ino == inode
    shown = runner.invoke(cli, ["--store", copy, "counts", "--json", "--no-catch-up"])
    assert orjson.loads(shown.stdout) == expected


def test_a_file_made_at_the_copy_s_name_meanwhile_is_left_as_it_was_and_named(store_path, tmp_path, monkeypatch):
    """Another process makes NEW.db while `rebuild --into NEW.db` folds: its file is kept
    untouched, the error names it and says the copy was not made; nothing else is left."""
    log = open_log(store_path)
    ledger.append_input(log, jsonl(list(busy_workspace(20))))
    log.close()
    copy = tmp_path / "analysis.db"
    real = ledger.rebuild

    def and_meanwhile(*args, **kwargs):
        n = real(*args, **kwargs)
        copy.write_bytes(b"someone else's")
        return n

    monkeypatch.setattr(ledger, "rebuild", and_meanwhile)
    r = CliRunner().invoke(cli, ["--store", store_path, "rebuild", "--into", str(copy)])
    assert r.exit_code == 1, r.output
    assert f"the copy {copy} was not made" in r.stderr and "made by another process meanwhile" in r.stderr
    assert copy.read_bytes() == b"someone else's" and leftovers(str(copy)) == []
