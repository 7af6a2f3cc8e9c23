"""A projector of one flowledger version never folds into views another version remade: its
next page (or a staged fold's merge) finds the view's stored version changed, applies
nothing and raises ViewsRemadeByAnotherVersion; `project --follow` exits 1 saying so, and
`serve`'s follower stops and logs why. Projectors of one version share a store as before."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from flowledger import ledger
from flowledger.errors import ViewsRemadeByAnotherVersion
from flowledger.projections import projector as projector_module
from flowledger.projections.projector import Projector
from flowledger.projections.runs_view import RunsView
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, triggered, wait_for_views
from tests.histories import jsonl
from tests.view_versions_kit import NewerRunsView, stored_version as _stored_version

needs_postgres = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
EXE = os.path.join(os.path.dirname(sys.executable), "flowledger")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def url(request, store_path):
    """A store's URL (not made yet), on each backend."""
    return store_path if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def _runs(first: int, n: int) -> Any:
    """The triggers of runs r<first> … as JSON lines."""
    return jsonl([triggered(f"r{i}") for i in range(first, first + n)])


def _remake(url: str, *, refold: bool = False) -> None:
    """What a newer flowledger does on opening the store: make the runs view again (and,
    with ``refold``, fold it from the log), in a process of its own (here: a backend of its own)."""
    newer = open_log(url)
    try:
        projector = Projector(newer.backend, [NewerRunsView()])
        projector.ensure_tables()
        if refold:
            projector.catch_up()
    finally:
        newer.close()


def _runs_view(backend: Any) -> tuple[dict[str, list[str]], int]:
    """Every row of the runs view's tables, and its position."""
    with backend.transaction(write=False) as c:
        rows = {}
        for table in RunsView.tables:
            c.execute(f'SELECT * FROM "{table}"')
            rows[table] = sorted(repr(tuple(row)) for row in c.fetchall())
        return rows, backend.get_position(c, "runs")


def _says_what_happened(message: str) -> None:
    """The error names the view, both versions, and what to do."""
    assert "'runs'" in message, message
    assert f"view version {RunsView.version + 1}" in message, message
    assert f"view version {RunsView.version}" in message, message
    assert "stop this process" in message, message


def test_a_follower_stops_at_its_next_page_once_another_version_remade_a_view(url):
    log = open_log(url)
    try:
        ledger.append_input(log, _runs(0, 10))
        remade: list[int] = []

        def between_pages(n: int) -> None:
            if not remade:
                _remake(url)
                remade.append(n)

        with pytest.raises(ViewsRemadeByAnotherVersion) as caught:
            Projector(log.backend).catch_up(page_size=3, progress=between_pages)
        _says_what_happened(str(caught.value))
        assert remade == [3]
        # The remade view is as the newer version left it (empty, at 0), not folded by the
        # older rules from 0; nothing of the refused page was applied to the others either.
        assert _runs_view(log.backend) == ({t: [] for t in RunsView.tables}, 0)
        assert _stored_version(log.backend, "runs") == str(NewerRunsView.version)
        with log.backend.transaction(write=False) as c:
            assert [log.backend.get_position(c, name) for name in ("steps", "deliveries")] == [3, 3]
    finally:
        log.close()


def test_a_follower_never_folds_new_events_into_a_view_another_version_folded_again(url):
    log = open_log(url)
    try:
        ledger.append_input(log, _runs(0, 5))
        Projector(log.backend).catch_up()  # this process made its views, and follows them
        _remake(url, refold=True)
        remade = _runs_view(log.backend)
        assert remade[1] == 5 and len(remade[0]["runs"]) == 5
        ledger.append_input(log, _runs(5, 5))
        polls: list[int] = []

        def should_stop() -> bool:
            polls.append(1)
            return len(polls) > 100

        # It stops following, rather than logging the error and trying again.
        with pytest.raises(ViewsRemadeByAnotherVersion) as caught:
            Projector(log.backend).follow(interval=0.01, should_stop=should_stop)
        _says_what_happened(str(caught.value))
        assert len(polls) == 1
        assert _runs_view(log.backend) == remade
    finally:
        log.close()
    # The newer version folds the new events itself.
    newer = open_log(url)
    try:
        assert Projector(newer.backend, [NewerRunsView()]).catch_up() == 5
        assert len(_runs_view(newer.backend)[0]["runs"]) == 10
    finally:
        newer.close()


def test_a_catch_up_folding_an_empty_view_as_a_rebuild_does_never_replaces_another_versions(store_path, monkeypatch):
    # A view a newer version made again is empty, at position 0: on a long log an older
    # follower would fold it through a staging file and put its own tables (and version) back.
    log = open_log(store_path)
    try:
        ledger.append_input(log, _runs(0, 10))
        Projector(log.backend).catch_up()
        _remake(store_path)
        monkeypatch.setattr(projector_module, "STAGED_FROM", 5)
        with pytest.raises(ViewsRemadeByAnotherVersion) as caught:
            Projector(log.backend).catch_up()
        _says_what_happened(str(caught.value))
        assert _runs_view(log.backend) == ({t: [] for t in RunsView.tables}, 0)
        assert _stored_version(log.backend, "runs") == str(NewerRunsView.version)
    finally:
        log.close()
    assert not [name for name in os.listdir(os.path.dirname(store_path)) if ".rebuild-" in name]


def test_projectors_of_one_version_share_a_store_as_before(url):
    log, other = open_log(url), open_log(url)
    try:
        ledger.append_input(log, _runs(0, 10))
        mine, theirs = Projector(log.backend), Projector(other.backend)
        # Their pages interleave with mine, on a store both made for the same versions.
        mine.catch_up(page_size=3, progress=lambda n: theirs.catch_up(page_size=2))
        ledger.append_input(other, _runs(10, 4))
        assert theirs.catch_up() + mine.catch_up() == 4
        rows, position = _runs_view(log.backend)
        assert position == 14 and len(rows["runs"]) == 14
    finally:
        log.close()
        other.close()


@needs_postgres
def test_on_postgresql_a_remake_waits_for_the_page_in_flight(postgres_url):
    # A page holds its views' advisory locks until it commits, and the remake takes them too:
    # so a page that found its versions current commits before any remake begins, and a
    # page that waited for a remake's locks finds the new version (READ COMMITTED).
    log = open_log(postgres_url)
    try:
        ledger.append_input(log, _runs(0, 3))
        Projector(log.backend).catch_up()
        done = threading.Event()
        failed: list[BaseException] = []

        def remake() -> None:
            try:
                _remake(postgres_url)
            except BaseException as e:  # noqa: BLE001  # shown by the assertion below
                failed.append(e)
            finally:
                done.set()

        worker = threading.Thread(target=remake, daemon=True)
        with log.backend.transaction(write=True) as c:
            log.backend.lock_views(c, ["runs"])  # as a page of the runs view holds it
            worker.start()
            assert not done.wait(1.5), failed
            c.execute("SELECT value FROM flowledger_meta WHERE key = 'view:runs'")
            assert c.fetchone()[0] == str(RunsView.version)
        worker.join(timeout=30)
        assert done.is_set() and not failed, failed
        assert _stored_version(log.backend, "runs") == str(NewerRunsView.version)
    finally:
        log.close()


def test_project_follow_exits_1_saying_why_once_another_version_remade_a_view(url):
    log = open_log(url)
    ledger.append_input(log, _runs(0, 3))
    proc = subprocess.Popen(
        [EXE, "--store", url, "project", "--follow", "--interval", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_views(log.backend)  # the follower made its views and follows them
        _remake(url, refold=True)
        remade = _runs_view(log.backend)
        ledger.append_input(log, _runs(3, 2))
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("`project --follow` kept following views another version remade")
        assert _runs_view(log.backend) == remade
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        log.close()
    text = err.decode()
    assert proc.returncode == 1, text
    assert "Traceback" not in text
    _says_what_happened(text.replace("\n", " "))


def test_the_servers_follower_stops_and_logs_why_once_another_version_remade_a_view(store_path, caplog):
    pytest.importorskip("fastapi")
    from flowledger.api.app import _follow

    log = open_log(store_path)
    stop = threading.Event()
    stopped: dict[str, str] = {}
    worker = threading.Thread(target=_follow, args=(log, None, stop, stopped), daemon=True)
    try:
        ledger.append_input(log, _runs(0, 3))
        ledger.catch_up(log)  # the server's start-up: its views are made
        _remake(store_path, refold=True)
        remade = _runs_view(log.backend)
        ledger.append_input(log, _runs(3, 2))
        with caplog.at_level(logging.ERROR, logger="flowledger.api.app"):
            worker.start()
            worker.join(timeout=30)
        still_following = worker.is_alive()
        stop.set()
        worker.join(timeout=30)
        assert not still_following, "the server's follower kept following views another version remade"
        assert _runs_view(log.backend) == remade
    finally:
        stop.set()
        log.close()
    errors = [r.getMessage() for r in caplog.records if r.name == "flowledger.api.app" and r.levelno == logging.ERROR]
    assert len(errors) == 1, errors
    _says_what_happened(errors[0])
    assert "bug" not in errors[0]
    assert stopped["reason"] == errors[0]  # what /healthz answers
