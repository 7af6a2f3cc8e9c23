"""How far the views are behind the log, seen from outside: `flowledger views` and /healthz's
`behind`. A look only: it never catches the views up, makes or remakes them, so it works on a
store this process may only read, on another version's views and on an analyst's copy."""

from __future__ import annotations

import os
import sqlite3
import subprocess

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.projections.deliveries_view import DeliveriesView
from flowledger.projections.projector import Projector, all_views
from flowledger.projections.runs_view import RunsView
from flowledger.projections.steps_view import StepsView
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE
from tests.test_environment import EXE, _unprivileged
from tests.test_small_fixes import read_only_role  # noqa: F401  # a fixture
from tests.view_versions_kit import NewerRunsView, OlderRunsView, append_to, started_runs, stored_version_at

needs_postgres = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")

NAMES = [v.name for v in all_views()]
RUNS = 4
EVENTS = 3 * RUNS  # started_runs: three events a run


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_postgres)])
def url(request, store_path):
    """A store's URL (not made yet), on each backend."""
    return store_path if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def views(store: str, *args: str) -> str:
    """`flowledger views` on a store: its output (it must exit 0)."""
    result = CliRunner().invoke(cli, ["--store", store, "views", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def views_json(store: str) -> dict:
    return orjson.loads(views(store, "--json"))


def each(data: dict, field: str) -> dict:
    """One field of every view in `views --json`, by view."""
    return {v["view"]: v[field] for v in data["views"]}


def catch_up(store: str) -> None:
    log = open_log(store)
    try:
        ledger.catch_up(log)
    finally:
        log.close()


def sqlite_look(path: str) -> tuple[set[str], list]:
    """The file's tables and indexes, and every tracked position, read without flowledger."""
    conn = sqlite3.connect(path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        positions = sorted(conn.execute("SELECT * FROM tracking")) if "tracking" in names else []
    finally:
        conn.close()
    return names, positions


def test_on_an_empty_store_every_view_is_at_0_and_behind_by_nothing(url):
    """A store with no events: the log and every view at 0, no view made yet (no version)."""
    open_log(url).close()
    data = views_json(url)
    assert (data["position"], data["behind"], data["copy_of"], data["another_version"]) == (0, 0, None, None)
    assert [v["view"] for v in data["views"]] == NAMES
    assert each(data, "position") == each(data, "behind") == dict.fromkeys(NAMES, 0)
    assert each(data, "version") == dict.fromkeys(NAMES, None)
    assert each(data, "this_version") == {v.name: str(v.version) for v in all_views()}


def test_after_appends_without_catching_up_each_view_is_behind_by_them(url):
    """Events appended, no view folded: each view at 0, behind by every event; the command
    itself leaves them so."""
    append_to(url, started_runs(0, RUNS))
    data = views_json(url)
    assert (data["position"], data["behind"]) == (EVENTS, EVENTS)
    assert each(data, "position") == dict.fromkeys(NAMES, 0)
    assert each(data, "behind") == dict.fromkeys(NAMES, EVENTS)
    assert views_json(url)["behind"] == EVENTS  # the first look folded nothing


def test_after_project_no_view_is_behind_and_later_appends_show(url):
    """`project` brings every view to the log's end (behind 0, this version); events appended
    after it are what the views are behind by."""
    append_to(url, started_runs(0, RUNS))
    assert CliRunner().invoke(cli, ["--store", url, "project"]).exit_code == 0
    data = views_json(url)
    assert (data["position"], data["behind"]) == (EVENTS, 0)
    assert each(data, "position") == dict.fromkeys(NAMES, EVENTS)
    assert each(data, "version") == each(data, "this_version")
    assert each(data, "another_version") == dict.fromkeys(NAMES, False)
    append_to(url, started_runs(RUNS, 1))
    data = views_json(url)
    assert (data["position"], data["behind"]) == (EVENTS + 3, 3)
    assert each(data, "position") == dict.fromkeys(NAMES, EVENTS)


def test_the_table_shows_each_views_position_lag_and_version(store_path):
    """The text output: the log's position, then a row a view: view, position, behind, version."""
    append_to(store_path, started_runs(0, RUNS))
    lines = views(store_path).splitlines()
    assert lines[0] == f"The log's last position: {EVENTS}."
    assert lines[1].split() == ["view", "position", "behind", "version"]
    assert [line.split() for line in lines[2:]] == [[name, "0", str(EVENTS), "-"] for name in NAMES]
    catch_up(store_path)
    rows = [line.split() for line in views(store_path).splitlines()[2:]]
    assert rows == [[v.name, str(EVENTS), "0", str(v.version)] for v in all_views()]


def test_the_look_makes_no_table_and_folds_nothing(store_path):
    """A store whose views were never made: the command makes none, nor their positions."""
    append_to(store_path, started_runs(0, RUNS))
    before = sqlite_look(store_path)
    assert "tracking" not in before[0]
    views(store_path)
    views(store_path, "--json")
    assert sqlite_look(store_path) == before


def test_a_store_this_process_may_only_read_is_looked_at(store_path):
    """A read-only store file whose views were never made: the command answers, exit 0, where
    any catch-up (or making the views) would fail for want of the write lock."""
    prefix, why = _unprivileged()
    if prefix is None:
        pytest.skip(why)
    append_to(store_path, started_runs(0, RUNS))
    os.chmod(store_path, 0o444)
    proc = subprocess.run([*prefix, EXE, "--store", store_path, "views", "--json"], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    data = orjson.loads(proc.stdout)
    assert (data["position"], data["behind"]) == (EVENTS, EVENTS)


@needs_postgres
def test_a_read_only_postgresql_role_is_shown_the_views_never_folded(postgres_url, read_only_role):
    """A role that may only read a PostgreSQL store whose views were never folded: positions 0."""
    _, url, _ = read_only_role
    append_to(postgres_url, started_runs(0, RUNS))
    data = views_json(url)
    assert (data["position"], data["behind"]) == (EVENTS, EVENTS)
    assert each(data, "position") == dict.fromkeys(NAMES, 0)


@pytest.mark.parametrize("other", [NewerRunsView, OlderRunsView], ids=["newer", "older"])
def test_another_versions_views_are_shown_as_such_and_left_as_they_are(url, other):
    """Views another version made: shown with their version marked, exit 0, never made again
    (a query of this version would remake an older version's view)."""
    append_to(url, started_runs(0, RUNS))
    log = open_log(url)
    try:
        Projector(log.backend, [other(), StepsView(), DeliveriesView()]).catch_up()
    finally:
        log.close()
    data = views_json(url)
    assert each(data, "version")["runs"] == str(other.version)
    assert each(data, "another_version") == {"runs": True, "steps": False, "deliveries": False}
    assert "'runs'" in data["another_version"]
    assert (data["behind"], each(data, "position")) == (0, dict.fromkeys(NAMES, EVENTS))
    text = views(url)
    assert text.splitlines()[2].split() == ["runs", str(EVENTS), "0", str(other.version), "*"]
    assert f"* made by another version of flowledger (this one folds runs view version {RunsView.version})" in text
    assert stored_version_at(url, "runs") == str(other.version)


def test_views_an_older_version_made_are_said_to_be_folded_again_by_this_versions_next_catch_up(url):
    """A store an older release wrote, not opened by this one yet: an upgrade to come, not
    only a rollback (it said "run that version only"). The advice names the way both go."""
    append_to(url, started_runs(0, RUNS))
    log = open_log(url)
    try:
        Projector(log.backend, [OlderRunsView(), StepsView(), DeliveriesView()]).catch_up()
    finally:
        log.close()
    said = views_json(url)["another_version"]
    assert f"an older version of flowledger made the views 'runs' (view version {OlderRunsView.version})" in said
    assert "makes them again and folds them from the log: the upgrade" in said
    assert "run that version only" in said
    assert "makes them again and folds them from the log: the upgrade." in views(url)
    assert stored_version_at(url, "runs") == str(OlderRunsView.version)


def test_an_analysts_copy_an_older_version_made_is_told_how_to_make_it_again(store_path, tmp_path):
    """A copy has no log to fold again from: `views` gives the command that makes it again, as
    its queries do, not `project` or `serve` (which a copy refuses)."""
    append_to(store_path, started_runs(0, RUNS))
    copy = str(tmp_path / "copy.db")
    assert CliRunner().invoke(cli, ["--store", store_path, "rebuild", "--into", copy]).exit_code == 0
    db = sqlite3.connect(copy)
    with db:
        db.execute("UPDATE flowledger_meta SET value = ? WHERE key = 'view:runs'", (str(OlderRunsView.version),))
    db.close()
    said = views_json(copy)["another_version"]
    assert f"rebuild --into {copy}" in said and "project --follow" not in said
    assert stored_version_at(copy, "runs") == str(OlderRunsView.version)


def test_an_analysts_copy_names_its_source_and_no_lag(store_path, tmp_path):
    """A copy made by `rebuild --into` has no log of its own: its views' positions are its
    source's, how far behind they are is not known here (null), and its source is named."""
    append_to(store_path, started_runs(0, RUNS))
    copy = str(tmp_path / "copy.db")
    assert CliRunner().invoke(cli, ["--store", store_path, "rebuild", "--into", copy]).exit_code == 0
    data = views_json(copy)
    assert (data["position"], data["behind"], data["copy_of"]) == (0, None, os.path.abspath(store_path))
    assert each(data, "position") == dict.fromkeys(NAMES, EVENTS)
    assert each(data, "behind") == dict.fromkeys(NAMES, None)
    text = views(copy)
    assert text.splitlines()[2].split() == ["runs", str(EVENTS), "-", str(RunsView.version)]
    assert "An analyst's copy made by `rebuild --into`" in text


def test_no_store_yet_is_said_as_every_read_command_says_it(store_path):
    """No store at the path: exit 1 saying so, and none is made."""
    result = CliRunner().invoke(cli, ["--store", store_path, "views"])
    assert result.exit_code == 1 and "no store at" in result.stderr
    assert not os.path.exists(store_path)


def test_healthz_says_how_far_the_slowest_view_is_behind(url):
    """/healthz adds `behind`: the log's position minus the lowest view position, 0 once
    the views are caught up."""
    append_to(url, started_runs(0, RUNS))
    with TestClient(create_app(url, follow=False)) as client:
        # The server's start caught the views up.
        assert client.get("/healthz").json() == {"status": "ok", "position": EVENTS, "behind": 0}
        append_to(url, started_runs(RUNS, 2))
        assert client.get("/healthz").json() == {"status": "ok", "position": EVENTS + 6, "behind": 6}
        log = open_log(url)
        try:
            # Only one view caught up: the slowest still counts.
            Projector(log.backend, [RunsView()]).catch_up()
        finally:
            log.close()
        assert client.get("/healthz").json()["behind"] == 6
        catch_up(url)
        assert client.get("/healthz").json() == {"status": "ok", "position": EVENTS + 6, "behind": 0}
