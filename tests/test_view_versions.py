"""What a process does with views another flowledger version made: an older process never
makes a newer version's view again (it refuses, naming the rebuild that goes back on
purpose), a follower that finds an older version's view says so, and a query without
catch-up never answers from a view made (again) but not folded yet."""

from __future__ import annotations

import shlex
import sqlite3
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from flowledger import ledger, queries
from flowledger.cli import cli
from flowledger.errors import ViewsMadeByANewerVersion, ViewsNotFolded, ViewsRemadeByAnotherVersion
from flowledger.projections.deliveries_view import DeliveriesView
from flowledger.projections.projector import Projector, all_views
from flowledger.projections.runs_view import RunsView
from flowledger.projections.steps_view import StepsView
from flowledger.store import open_log
from tests.conftest import POSTGRES, POSTGRES_UNREACHABLE, server_connection
from tests.view_versions_kit import NewerRunsView, folded_runs, stored_version_at, OlderRunsView, stored_version as _stored_version, views_state
from tests.view_versions_kit import started_runs as _runs
from tests.test_small_fixes import read_only_role  # noqa: F401  # a fixture

needs_postgres = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


def _older_views() -> list[Any]:
    """Every view as an older flowledger (whose runs view is older) has them."""
    return [OlderRunsView(), StepsView(), DeliveriesView()]


def _set_stored_version(backend: Any, name: str, value: str | None) -> None:
    """Write (None: delete) a view's stored version, as an old or hand-edited store has it."""
    with backend.transaction(write=True) as c:
        c.execute("DELETE FROM flowledger_meta WHERE key = ?", ("view:" + name,))
        if value is not None:
            c.execute("INSERT INTO flowledger_meta (key, value) VALUES (?, ?)", ("view:" + name, value))


def _store_made_by_a_newer_version(url: str, n: int = 5) -> None:
    """A store of ``n`` runs whose views a newer flowledger (newer runs view) made and folded."""
    log = open_log(url)
    try:
        ledger.append_input(log, _runs(0, n))
        Projector(log.backend, [NewerRunsView(), StepsView(), DeliveriesView()]).catch_up()
    finally:
        log.close()


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


# An older process and a newer version's views.


@pytest.mark.parametrize("command", [["counts"], ["counts", "--no-catch-up"], ["project"], ["runs", "list"]])
def test_an_older_process_refuses_a_newer_versions_view_and_touches_nothing(store_path, command):
    _store_made_by_a_newer_version(store_path)
    log = open_log(store_path)
    try:
        before = _snapshot(log.backend)
    finally:
        log.close()
    # This process is the older version here.
    result = _invoke("--store", store_path, *command)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    text = result.output.replace("\n", " ")
    assert "a newer flowledger made the view 'runs'" in text
    assert f"view version {NewerRunsView.version}" in text and f"view version {RunsView.version}" in text
    assert "Use the newer flowledger" in text
    assert f"flowledger --store {store_path} rebuild runs" in text
    log = open_log(store_path)
    try:
        assert _snapshot(log.backend) == before
    finally:
        log.close()


def test_the_command_an_older_process_names_goes_back_to_its_version_on_purpose(store_path):
    _store_made_by_a_newer_version(store_path)
    with pytest.raises(ViewsMadeByANewerVersion) as caught:
        log = open_log(store_path)
        try:
            Projector(log.backend, _older_views()).catch_up()
        finally:
            log.close()
    command = shlex.split(str(caught.value).rsplit(": ", 1)[1])
    assert command[0] == "flowledger" and command[3:] == ["rebuild", "runs"]
    log = open_log(store_path)
    try:
        # That version's `flowledger rebuild runs` (here: its ledger.rebuild, with its views).
        projector = Projector(log.backend, _older_views())
        projector.rebuild([projector.view("runs")], downgrade=True)
        assert _stored_version(log.backend, "runs") == str(OlderRunsView.version)
        assert len(_snapshot(log.backend)["runs"]) == 5
        # Then the older version works with the store as ever.
        ledger.append_input(log, _runs(5, 2))
        assert Projector(log.backend, _older_views()).catch_up() == 6
    finally:
        log.close()


def test_an_older_processes_rebuild_remakes_the_views_named_and_refuses_the_others(store_path, monkeypatch):
    _store_made_by_a_newer_version(store_path)
    monkeypatch.setattr(RunsView, "version", OlderRunsView.version)  # this process is the older version
    refused = _invoke("--store", store_path, "rebuild", "steps")
    assert refused.exit_code == 1, refused.output
    assert f"flowledger --store {store_path} rebuild runs" in refused.output.replace("\n", " ")
    assert stored_version_at(store_path, "runs") == str(NewerRunsView.version)
    done = _invoke("--store", store_path, "rebuild", "runs")
    assert done.exit_code == 0, done.output
    counted = _invoke("--store", store_path, "counts", "--no-catch-up", "--json")
    assert counted.exit_code == 0 and orjson.loads(counted.output)["total"] == 5, counted.output
    assert stored_version_at(store_path, "runs") == str(OlderRunsView.version)


def test_an_older_processes_rebuild_into_makes_a_newer_versions_copy_again(store_path, tmp_path, monkeypatch):
    log = open_log(store_path)
    try:
        ledger.append_input(log, _runs(0, 5))
    finally:
        log.close()
    copy = str(tmp_path / "copy.db")
    monkeypatch.setattr(RunsView, "version", NewerRunsView.version)
    assert _invoke("--store", store_path, "rebuild", "--into", copy).exit_code == 0
    monkeypatch.setattr(RunsView, "version", OlderRunsView.version)
    again = _invoke("--store", store_path, "rebuild", "--into", copy)
    assert again.exit_code == 0, again.output
    counted = _invoke("--store", copy, "counts", "--no-catch-up", "--json")
    assert counted.exit_code == 0 and orjson.loads(counted.output)["total"] == 5, counted.output


@pytest.mark.parametrize("stored", [None, "", "4b", "v9", "9.0"])
def test_a_stored_version_missing_or_not_a_number_is_another_version_made_again(store_path, stored):
    log = open_log(store_path)
    try:
        ledger.append_input(log, _runs(0, 5))
        ledger.catch_up(log)
        _set_stored_version(log.backend, "runs", stored)
    finally:
        log.close()
    counted = _invoke("--store", store_path, "counts", "--json")
    assert counted.exit_code == 0 and orjson.loads(counted.output)["total"] == 5, counted.output
    assert stored_version_at(store_path, "runs") == str(RunsView.version)


def test_a_newer_follower_keeps_going_when_an_older_process_starts(store_path):
    log, old = open_log(store_path), open_log(store_path)
    try:
        ledger.append_input(log, _runs(0, 5))
        follower = Projector(log.backend)  # the newer version here: this process's views
        follower.catch_up()
        with pytest.raises(ViewsMadeByANewerVersion):
            Projector(old.backend, _older_views()).catch_up()
        ledger.append_input(log, _runs(5, 5))
        assert follower.catch_up() == 15
        assert len(_snapshot(log.backend)["runs"]) == 10
        assert _stored_version(log.backend, "runs") == str(RunsView.version)
    finally:
        log.close()
        old.close()


def test_a_follower_that_finds_an_older_versions_view_names_the_older_version(store_path):
    log, old = open_log(store_path), open_log(store_path)
    try:
        ledger.append_input(log, _runs(0, 5))
        follower = Projector(log.backend)
        follower.catch_up()
        # The older version's explicit rebuild: going back on purpose.
        Projector(old.backend, _older_views()).rebuild(downgrade=True)
        ledger.append_input(log, _runs(5, 1))
        with pytest.raises(ViewsRemadeByAnotherVersion) as caught:
            follower.catch_up()
    finally:
        log.close()
        old.close()
    message = str(caught.value)
    assert "an older version of flowledger made the view 'runs'" in message, message
    assert f"view version {OlderRunsView.version}" in message and f"view version {RunsView.version}" in message
    assert "new version's command" not in message


# A query without catch-up and a view not folded yet.


def test_after_an_upgrade_a_query_without_catch_up_says_the_view_is_not_folded_yet(store_path, monkeypatch):
    folded_runs(store_path, 5)
    monkeypatch.setattr(RunsView, "version", NewerRunsView.version)
    refused = _invoke("--store", store_path, "runs", "list", "--no-catch-up")
    assert refused.exit_code == 1, refused.output
    text = refused.output.replace("\n", " ")
    assert "Traceback" not in text
    assert "the view 'runs'" in text and "not folded yet" in text
    assert f"flowledger --store {store_path} project" in text and "without --no-catch-up" in text
    # The deliveries view was not made again: a query reading it alone answers.
    assert _invoke("--store", store_path, "deliveries", "list", "--no-catch-up").exit_code == 0
    assert _invoke("--store", store_path, "project").exit_code == 0
    counted = _invoke("--store", store_path, "counts", "--no-catch-up", "--json")
    assert counted.exit_code == 0 and orjson.loads(counted.output)["total"] == 5, counted.output


def test_a_query_without_catch_up_of_an_empty_log_answers_empty(store_path):
    open_log(store_path).close()  # a store made, nothing appended yet
    counted = _invoke("--store", store_path, "counts", "--no-catch-up", "--json")
    assert counted.exit_code == 0 and orjson.loads(counted.output)["total"] == 0, counted.output


def test_the_library_refuses_a_query_without_catch_up_of_views_never_folded(store_path):
    log = open_log(store_path)
    try:
        ledger.append_input(log, _runs(0, 3))
        with pytest.raises(ViewsNotFolded, match="'runs', 'deliveries'"):
            ledger.query(log, queries.list_runs, queries.RunFilters(), fresh=False)
        # With catch-up (what the API's queries do), the views are folded first.
        assert len(ledger.query(log, queries.list_runs, queries.RunFilters())["entries"]) == 3
        assert len(ledger.query(log, queries.list_runs, queries.RunFilters(), fresh=False)["entries"]) == 3
    finally:
        log.close()


def test_a_web_pages_later_query_reads_the_views_as_its_first_left_them(store_path):
    """A page's first query catches up; the next read the views as they then stand. Events
    appended between the two (the store's very first) are not shown yet, and no error."""
    log = open_log(store_path)
    try:
        assert ledger.query(log, queries.counts)["total"] == 0  # the first: caught up, on an empty log
        ledger.append_input(log, _runs(0, 3))
        page = ledger.query(log, queries.list_runs, queries.RunFilters(), fresh=False, caught_up=True)
        assert page["entries"] == []
        with pytest.raises(ViewsNotFolded):
            ledger.query(log, queries.list_runs, queries.RunFilters(), fresh=False)
    finally:
        log.close()


@needs_postgres
def test_a_read_only_postgresql_role_is_told_the_views_are_not_folded_yet(postgres_url, read_only_role):
    role, url, schema = read_only_role
    log = open_log(postgres_url)
    try:
        ledger.append_input(log, _runs(0, 3))
        Projector(log.backend).ensure_tables()  # the views made by a role that can write, not folded
    finally:
        log.close()
    with server_connection(POSTGRES, autocommit=True) as conn:
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    refused = _invoke("--store", url, "runs", "list", "--no-catch-up")
    assert refused.exit_code == 1 and "not folded yet" in refused.output, refused.output
    assert "project" in refused.output
    assert _invoke("--store", postgres_url, "project").exit_code == 0
    listed = _invoke("--store", url, "runs", "list", "--no-catch-up", "--json")
    assert listed.exit_code == 0 and len(orjson.loads(listed.output)["entries"]) == 3, listed.output


def _tables_read(backend: Any, fn: Any, *args: Any, **kwargs: Any) -> set[str]:
    """The tables a query reads on a SQLite store (its errors, a missing run say, are its own)."""
    read: set[str] = set()

    def note(action: int, table: str | None, *_: Any) -> int:
        if action == sqlite3.SQLITE_READ and table:
            read.add(table)
        return sqlite3.SQLITE_OK

    with backend.transaction(write=False) as c:
        c.connection.set_authorizer(note)
        try:
            fn(c, *args, **kwargs)
        except Exception:  # noqa: BLE001  # what it read before it stopped counts too
            pass
        finally:
            c.connection.set_authorizer(None)
    return read


def test_every_query_says_each_view_it_reads(store_path):
    log = open_log(store_path)
    try:
        ledger.append_input(log, _runs(0, 3))
        ledger.catch_up(log)
        b = log.backend
        filters = queries.RunFilters()
        calls = {
            queries.list_runs: (filters,),
            queries.run_status_counts: (filters,),
            queries.list_deliveries: (queries.DeliveryFilters(),),
            queries.show_delivery: ("m0",),
            queries.show_run: ("r0",),
            queries.replay_run: ("r0", b),
            queries.replay_detail: ("r0", b),
            queries.counts: (),
            queries.list_workflows: (),
            queries.workflow_details: ("welcome",),
            queries.execution_stats: ("welcome",),
            queries.runs_over_time: ("welcome",),
            queries.list_runs_by_contact: (filters, "u0"),
            queries.list_deliveries_by_contact: (queries.DeliveryFilters(), "u0"),
            queries.run_status_counts_by_contact: (filters, "u0"),
        }
        tables = {t: v.name for v in all_views() for t in v.tables}
        for fn, args in calls.items():
            views = {tables[t] for t in _tables_read(b, fn, *args) if t in tables}
            assert views and views <= set(queries.views_read(fn)), (fn.__name__, views)
    finally:
        log.close()


def _snapshot(backend: Any) -> dict[str, Any]:
    """Every view table's rows, every view's position and every stored view version."""
    return views_state(backend, versions=True)
