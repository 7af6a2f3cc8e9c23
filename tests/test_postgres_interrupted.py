"""Why `test_several_followers_of_a_postgresql_store_apply_each_appended_event_once` failed
now and then: a follower stopped (SIGTERM) while one of its PostgreSQL statements was in
flight said "cannot reach the store … can't change 'isolation_level' now: connection in
transaction status ACTIVE" (exit 1 in its open, a warning in its first catch-up's inbox
drain) instead of stopping quietly with exit 0. The transaction's clean-up, resetting the
connection's isolation level, raised on the busy connection and replaced the interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from flowledger import ledger
from flowledger.errors import StoreError
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, server_connection, wait_until
from tests.view_versions_kit import started_runs

pytestmark = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
EXE = os.path.join(os.path.dirname(sys.executable), "flowledger")


def _schema(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


def _waiting_on_a_lock(url: str) -> bool:
    """Whether one of the store's connections (other than the test's own) waits for a lock."""
    with server_connection(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            ("flowledger/" + _schema(url),),
        ).fetchone()
    return bool(row and row[0])


class _Interrupted(BaseException):
    """What a signal handler raises (as `project --follow`'s does on SIGTERM)."""


def test_an_interruption_during_a_postgresql_statement_comes_out_as_itself(postgres_url):
    log = open_log(postgres_url)
    holder = server_connection(postgres_url)  # holds a lock the statement below waits for
    previous = signal.signal(signal.SIGUSR1, lambda *_: (_ for _ in ()).throw(_Interrupted()))
    main = threading.main_thread().ident

    def interrupt_once_waiting() -> None:
        wait_until(lambda: _waiting_on_a_lock(postgres_url), 30)
        signal.pthread_kill(main, signal.SIGUSR1)  # type: ignore[arg-type]

    try:
        holder.execute(f'LOCK TABLE "{_schema(postgres_url)}".flowledger_meta IN ACCESS EXCLUSIVE MODE')
        interrupter = threading.Thread(target=interrupt_once_waiting)
        interrupter.start()
        came_out: BaseException | None = None
        try:
            with log.backend.transaction(write=False) as c:
                c.execute("SELECT value FROM flowledger_meta")
        except BaseException as e:  # noqa: BLE001  # what came out is what is asserted
            came_out = e
        interrupter.join()
        holder.rollback()
        # The interruption, not a store error naming a store that answers.
        assert isinstance(came_out, _Interrupted), repr(came_out)
        # And the store is served as before.
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT 1")
            assert c.fetchone() == (1,)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        holder.close()
        log.close()


def _stopped_while_waiting(url: str, table: str) -> tuple[int, str]:
    """Start a follower, let it wait for a lock the test holds on ``table`` (of the store's
    schema), SIGTERM it, then release the lock: its exit code and standard error."""
    holder = server_connection(url)
    follower: subprocess.Popen[bytes] | None = None
    try:
        holder.execute(f'LOCK TABLE "{_schema(url)}".{table} IN ACCESS EXCLUSIVE MODE')
        command = [EXE, "--store", url, "project", "--follow", "--interval", "0.05"]
        follower = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until(lambda: _waiting_on_a_lock(url) or follower.poll() is not None, 60)
        assert _waiting_on_a_lock(url), "the follower never waited for the lock"
        follower.send_signal(signal.SIGTERM)
        try:
            _, err = follower.communicate(timeout=30)
        finally:
            holder.rollback()  # had it not ended, it ends now (and the test fails below)
        if follower.returncode is None:
            _, err = follower.communicate(timeout=30)
        return follower.returncode, err.decode()
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.communicate()
        holder.close()


def _store_with_runs(url: str) -> None:
    log = open_log(url)
    try:
        ledger.append_input(log, started_runs(0, 3))
    finally:
        log.close()


def test_a_follower_stopped_while_it_opens_a_postgresql_store_exits_0_quietly(postgres_url):
    _store_with_runs(postgres_url)
    # Its open reads the store's meta table: it waits there when SIGTERM comes.
    assert _stopped_while_waiting(postgres_url, "flowledger_meta") == (0, "")


def test_a_store_error_is_still_a_store_error(postgres_url):
    """The fix leaves the translation of the server's own errors as it was."""
    log = open_log(postgres_url)
    try:
        with pytest.raises(StoreError):
            with log.backend.transaction(write=False) as c:
                c.execute("SELECT * FROM no_such_table")
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT 1")
            assert c.fetchone() == (1,)
    finally:
        log.close()
