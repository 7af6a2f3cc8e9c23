"""An operator's review of the version guard and of long-running followers, with real
processes where it matters: what another flowledger version does to a store's views, what
a server whose follower stopped tells its health probe and its callers, several followers
of one PostgreSQL store while events arrive, and an idle follower's CPU and file handles."""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from flowledger import ledger
from flowledger.api import keys
from flowledger.cli import cli
from flowledger.projections.deliveries_view import DeliveriesView
from flowledger.projections.projector import Projector
from flowledger.projections.runs_view import RunsView
from flowledger.projections.steps_view import StepsView
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, wait_for_views, wait_until
from tests.view_versions_kit import NewerRunsView, folded_runs, stored_version as _stored_version, views_state as _views
from tests.view_versions_kit import started_runs as _runs

needs_postgres = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc (Linux)")
EXE = os.path.join(os.path.dirname(sys.executable), "flowledger")


def _remake_as_a_newer_version(url: str) -> None:
    """What a newer flowledger does on opening the store: make the runs view again and fold it."""
    newer = open_log(url)
    try:
        Projector(newer.backend, [NewerRunsView()]).catch_up()
    finally:
        newer.close()


def test_after_an_upgrade_a_query_without_catch_up_never_answers_from_the_view_it_just_emptied(store_path, monkeypatch):
    folded_runs(store_path, 5)
    monkeypatch.setattr(RunsView, "version", RunsView.version + 1)  # this process is the newer version
    result = CliRunner().invoke(cli, ["--store", store_path, "counts", "--no-catch-up", "--json"])
    # Either it says the view is being made again (an error), or it answers the truth.
    assert result.exit_code != 0 or orjson.loads(result.output)["total"] == 5, result.output


def test_an_older_versions_query_leaves_the_view_a_newer_version_made(store_path):
    log = open_log(store_path)
    try:
        ledger.append_input(log, _runs(0, 5))
        Projector(log.backend, [NewerRunsView(), StepsView(), DeliveriesView()]).catch_up()
        made = _views(log.backend)
    finally:
        log.close()
    # This installed flowledger is the older version here.
    subprocess.run([EXE, "--store", store_path, "counts", "--json"], capture_output=True, timeout=60)
    log = open_log(store_path)
    try:
        assert _stored_version(log.backend, "runs") == str(NewerRunsView.version)
        assert _views(log.backend) == made
    finally:
        log.close()


def _server_whose_follower_stopped(store_path: str, caplog: Any) -> Any:
    """A test client of a following server whose views a newer version remade (its follower
    has stopped, saying so), with ``client.read_key`` set; the caller closes it."""
    from fastapi.testclient import TestClient

    from flowledger.api.app import create_app

    log = open_log(store_path)
    try:
        ledger.append_input(log, _runs(0, 3))
        read_key = keys.create_key(log.backend, "reader", "read")[1]
    finally:
        log.close()
    client = TestClient(create_app(store_path, follow=True))
    client.__enter__()
    client.read_key = read_key  # type: ignore[attr-defined]
    # A run the follower folds (nothing else does): it has looked at the views' versions, so
    # that the newer version's remake is one it finds while following (where it first looked
    # after the remake, under load, it stopped as at a start on a newer version's views).
    log = open_log(store_path)
    try:
        ledger.append_input(log, _runs(3, 1))
        wait_for_views(log.backend)
    finally:
        log.close()
    _remake_as_a_newer_version(store_path)
    log = open_log(store_path)
    try:
        ledger.append_input(log, _runs(4, 1))
    finally:
        log.close()

    def stopped() -> bool:
        return any("follower stopped" in r.getMessage() for r in caplog.records)

    wait_until(stopped, 20)
    assert stopped(), "the server's follower kept following views another version remade"
    return client


def test_healthz_does_not_say_ok_once_the_servers_follower_stopped_for_good(store_path, caplog):
    pytest.importorskip("fastapi")
    with caplog.at_level(logging.ERROR, logger="flowledger.api.app"):
        client = _server_whose_follower_stopped(store_path, caplog)
    try:
        health = client.get("/healthz")
    finally:
        client.__exit__(None, None, None)
    assert not (health.status_code == 200 and health.json().get("status") == "ok"), health.text
    # A 503 problem document saying why, so that a probe replaces the server.
    assert health.status_code == 503, health.text
    assert "follower stopped" in health.json()["detail"] and "another version" in health.json()["detail"]


def test_a_server_whose_follower_stopped_answers_queries_with_the_reason_not_old_rows(store_path, caplog):
    pytest.importorskip("fastapi")
    with caplog.at_level(logging.ERROR, logger="flowledger.api.app"):
        client = _server_whose_follower_stopped(store_path, caplog)
    try:
        headers = {"X-API-Key": client.read_key}
        answers = [client.get(path, headers=headers) for path in ("/v1/runs/r0", "/v1/runs/r4", "/v1/counts")]
    finally:
        client.__exit__(None, None, None)
    for answer in answers:
        assert answer.status_code == 503, answer.text  # the server is to be replaced, not a bug
        assert "another version of flowledger made the view 'runs'" in answer.json()["detail"]
    log = open_log(store_path)
    try:
        # The remade view holds what the newer version folded: no row of the older server's.
        rows = _views(log.backend)["runs"]
        assert len(rows) == 4 and _stored_version(log.backend, "runs") == str(NewerRunsView.version)
    finally:
        log.close()


def _followers(url: str, n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` `project --follow` processes of a store, polling every 0.05 s."""
    command = [EXE, "--store", url, "project", "--follow", "--interval", "0.05"]
    return [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(n)]


def _running(procs: list[subprocess.Popen[bytes]], seconds: float = 60) -> None:
    """Wait until each follower has said its first catch-up is done (``{"applied": n}`` on
    its standard output): it is in its follow loop then, where SIGTERM stops it with exit 0.
    Stopped before (three starting at once on a busy machine take a second or more), SIGTERM
    finds a Python still importing, whose default action kills it (-15), or a follower still
    opening the store."""
    deadline = time.monotonic() + seconds
    for p in procs:
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = p.stdout.readline() if ready else b""
        assert line.startswith(b'{"applied":'), f"follower {p.pid} never said it had caught up: {line!r}"


def _stop(procs: list[subprocess.Popen[bytes]]) -> list[tuple[int, str]]:
    """SIGTERM each process; its exit code and standard error."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    ended = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        ended.append((p.returncode, err.decode()))
    return ended


@needs_postgres
def test_several_followers_of_a_postgresql_store_apply_each_appended_event_once(postgres_url):
    log = open_log(postgres_url)
    followers = _followers(postgres_url, 3)
    try:
        _running(followers)  # every follower polls while the appends come
        for batch in range(4):
            ledger.append_input(log, _runs(batch * 60, 60))
            time.sleep(0.2)  # the followers' pages and the appends interleave
        wait_for_views(log.backend)
    finally:
        ended = _stop(followers)
    try:
        assert ended == [(0, "")] * 3
        followed = _views(log.backend)
        assert len(followed["runs"]) == 240
        Projector(log.backend).rebuild()
        assert _views(log.backend) == followed
    finally:
        log.close()


def _cpu_ticks(pid: int) -> int:
    """A process's user and system CPU time so far, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@needs_proc
def test_an_idle_follower_barely_uses_the_cpu_and_keeps_its_file_handles(store_path):
    log = open_log(store_path)
    ledger.append_input(log, _runs(0, 5))
    (follower,) = _followers(store_path, 1)
    try:
        wait_for_views(log.backend)
        handles = sorted(os.listdir(f"/proc/{follower.pid}/fd"))
        before = _cpu_ticks(follower.pid)
        for batch in range(1, 4):
            ledger.append_input(log, _runs(batch * 5, 5))
            wait_for_views(log.backend)
            time.sleep(0.5)
        spent = (_cpu_ticks(follower.pid) - before) / os.sysconf("SC_CLK_TCK")
        assert sorted(os.listdir(f"/proc/{follower.pid}/fd")) == handles
    finally:
        ended = _stop([follower])
        log.close()
    assert ended == [(0, "")]
    # Some 2 s of polling every 0.05 s and three small catch-ups: a spinning loop would use them whole.
    assert spent < 0.6, f"the follower used {spent:.2f} s of CPU in about 2 s"
