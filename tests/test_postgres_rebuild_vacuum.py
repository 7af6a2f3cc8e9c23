"""A rebuild on PostgreSQL vacuums the tables it filled (and an upgrade in place those of the
views it upgraded): until a VACUUM marks their pages all
visible, a read in an index alone visits the table for every entry (the run history's counts
under a range or a tenant; a status's first runs, read through `runs_by_seq` row by row), and
autovacuum comes minutes later. Skipped, saying why, where no server is reachable. Like
tests/test_postgres_plans.py's, the tests of what VACUUM marks each have a database of their
own: another session's open transaction in the same database (a test beside them, in another
process) keeps a VACUUM from marking rows newer than its snapshot (autovacuum's too).
"""

from __future__ import annotations

import logging
import os
import time

import pytest

from flowledger import ledger, queries
from flowledger.projections.projector import Projector, all_views
from flowledger.projections.runs_view import RunsView
from flowledger.store import open_log
from flowledger.store import postgres
from flowledger.store.postgres import VACUUM_PASSES, PostgresBackend
from tests.conftest import POSTGRES, POSTGRES_UNREACHABLE, ev, server_connection, triggered
from tests.histories import jsonl
from tests.test_postgres_plans import completed_probe_plans, live_store

pytestmark = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")

VIEW_TABLES = {t for v in all_views() for t in v.tables}


def _pages(url: str) -> dict[str, tuple[int, int]]:
    """Each view table's pages and those marked all visible, as the server last counted them."""
    with server_connection(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname, relpages, relallvisible FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            (url.rpartition("schema=")[2],),
        ).fetchall()
    return {name: (pages, visible) for name, pages, visible in rows if name in VIEW_TABLES}


def _rebuilt_pages(url: str, helper: bool) -> dict[str, tuple[int, int]]:
    """:func:`_pages` of a live store at ``url`` folded live, then rebuilt."""
    log = open_log(url)
    try:
        live_store(log)  # folded live first: a page a commit, none vacuumed
        Projector(log.backend).rebuild(helper=helper)
        return _pages(url)
    finally:
        log.close()


@pytest.mark.parametrize("helper", [False, True])
def test_a_rebuild_leaves_every_page_of_its_views_marked_all_visible(postgres_url_alone, helper):
    # With a helper process too (a long log's way): every view vacuumed once both are done.
    pages = _rebuilt_pages(postgres_url_alone, helper)
    filled = {name: counted for name, counted in pages.items() if counted[0] > 0}
    # The runs', steps' and deliveries' views all filled (their tables of many pages among them).
    assert {"runs", "deliveries"} <= set(filled) and filled["runs"][0] > 50, pages
    assert all(visible == pages for pages, visible in filled.values()), filled


def _children() -> set[str]:
    """The processes this one started that are still running (Linux's own count)."""
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
        return set(f.read().split())


def test_a_rebuild_with_a_helper_vacuums_every_view_once_both_processes_are_done(postgres_url, monkeypatch):
    # Each process vacuuming its own views at its end left rows unmarked: the first to end
    # vacuumed while the other's page was in flight (a transaction open in the database).
    before = _children()
    vacuumed = []
    monkeypatch.setattr(PostgresBackend, "vacuum", lambda self, tables: vacuumed.append((sorted(tables), _children() - before)))
    log = open_log(postgres_url)
    try:
        live_store(log)
        Projector(log.backend).rebuild(helper=True)
    finally:
        log.close()
    assert vacuumed == [(sorted(VIEW_TABLES), set())]


def test_a_vacuum_right_after_the_views_last_commits_waits_for_them_to_reach_the_disk(postgres_url_alone):
    # The views' pages commit without waiting for the disk (a rebuild's closing catch-up of
    # what was appended meanwhile does): a VACUUM begun before the server's WAL writer had
    # flushed them left their rows unmarked (to a second pass). Eight rounds, each new runs
    # appended (a commit that waits), folded (commits that do not), vacuumed at once.
    log = open_log(postgres_url_alone)
    unmarked, passes = [], []
    try:
        live_store(log)
        for round in range(8):
            _append_runs(log, f"n{round}", 300)
            before = _vacuums(postgres_url_alone, "runs")
            log.backend.vacuum(sorted(VIEW_TABLES))
            passes.append(_vacuums(postgres_url_alone, "runs") - before)
            pages = _pages(postgres_url_alone)
            assert pages["runs"][0] > 50, pages
            unmarked.append({name: counted for name, counted in pages.items() if counted[0] != counted[1]})
    finally:
        log.close()
    assert unmarked == [{}] * 8
    # Most rounds mark every page at the first pass (a second where other stores' commits,
    # beside the test's in other processes, were not yet flushed); without the wait, none.
    assert 1 in passes, passes


def _vacuums(url: str, table: str) -> int:
    """How many times ``table`` of the store at ``url`` was vacuumed by hand."""
    with server_connection(url, autocommit=True) as conn:
        return conn.execute("SELECT pg_stat_get_vacuum_count(%s::regclass)", (f'"{url.rpartition("schema=")[2]}"."{table}"',)).fetchone()[0]


def test_a_vacuum_passes_again_over_pages_left_unmarked_and_gives_up_once_a_pass_marks_no_more(postgres_url_alone, monkeypatch):
    # A transaction open in the store's database since before the newest runs: their rows
    # stay unmarked whatever the passes, each after the WAL writer's rounds, so the vacuum
    # stops after a second pass marking nothing more; a table marked at the first pass is not
    # vacuumed again; once the transaction ends, one vacuum marks them.
    url = postgres_url_alone
    slept, seen = [], []
    monkeypatch.setattr(postgres, "sleep", lambda seconds: slept.append(seconds) or time.sleep(seconds))
    unmarked = PostgresBackend._unmarked  # noqa: SLF001
    monkeypatch.setattr(PostgresBackend, "_unmarked", lambda self, conn, tables: seen.append(unmarked(self, conn, tables)) or seen[-1])
    log = open_log(url)
    try:
        live_store(log)
        log.backend.vacuum(sorted(VIEW_TABLES))
        assert all(visible == n for n, visible in _pages(url).values()), _pages(url)
        before = {table: _vacuums(url, table) for table in ("runs", "deliveries")}
        slept.clear()
        with server_connection(url) as other:
            other.execute("SELECT txid_current()")
            _append_runs(log, "late", 300)
            seen.clear()
            log.backend.vacuum(["deliveries", "runs"])
            readings = [counted.get("runs") for counted in seen]
            held = _pages(url)["runs"]
            passes = {table: _vacuums(url, table) - n for table, n in before.items()}
            delay = postgres._wal_writer_delay(other)  # noqa: SLF001
        log.backend.vacuum(["runs"])
        pages, visible = _pages(url)["runs"]
    finally:
        log.close()
    assert held[1] < held[0], held
    # The runs' pages marked after the first pass and after the second: the second marks no
    # more, unless some rows were held back only by other stores' commits, not yet flushed
    # (beside other tests), and then a third pass follows.
    assert len(readings) == 2 and None not in readings, seen
    expected = 2 if readings[1] <= readings[0] else 3
    assert passes == {"runs": expected, "deliveries": 1} and VACUUM_PASSES > 2, (passes, seen)
    assert [s for s in slept if s >= delay] == [3 * delay] * (expected - 1)
    assert visible == pages


def _append_runs(log, prefix: str, n: int) -> None:
    """``n`` new runs triggered and started, appended (a commit that waits for the disk) and
    folded (commits that do not)."""
    runs = [f"{prefix}-{i:03d}" for i in range(n)]
    events = [triggered(run, occurred_at="2026-11-20T00:00:00Z") for run in runs]
    events += [ev("run.started", run_id=run, occurred_at="2026-11-20T00:00:01Z") for run in runs]
    ledger.append_input(log, jsonl(events))
    Projector(log.backend).catch_up()


def test_a_rebuild_s_last_write_before_its_vacuum_waits_for_the_disk(postgres_url, monkeypatch):
    # The query indexes' commit flushes the fold's pages with it, so the VACUUM finds the
    # log flushed at once (else it waits for the server's WAL writer: 0.4 s).
    said = []
    transaction = PostgresBackend.transaction

    def told(self, *, write, durable=True, **kw):
        if write:
            said.append(("write", durable))
        return transaction(self, write=write, durable=durable, **kw)

    monkeypatch.setattr(PostgresBackend, "transaction", told)
    monkeypatch.setattr(PostgresBackend, "vacuum", lambda self, tables: said.append(("vacuum", sorted(tables))))
    log = open_log(postgres_url)
    try:
        live_store(log)
        said.clear()
        Projector(log.backend).rebuild(helper=False)
    finally:
        log.close()
    writes = [durable for kind, durable in said[: said.index(("vacuum", sorted(VIEW_TABLES)))] if kind == "write"]
    # The fold's pages without waiting, the last write (the query indexes) waiting.
    assert writes[1] is False and writes[-1] is True and len(writes) > 3, said


def test_a_transaction_open_in_the_shared_database_holds_back_no_vacuum_in_a_database_alone(postgres_url_alone):
    # What these tests rely on to run beside the others (pytest -n): a transaction with an id,
    # open in the shared test database the whole time, marks no row of another database as
    # one it may still need to see. (In the same database, the pages stay unmarked.)
    with server_connection(POSTGRES) as other:
        other.execute("SELECT txid_current()")
        pages = _rebuilt_pages(postgres_url_alone, helper=False)
    assert pages["runs"][0] > 50 and all(visible == n for n, visible in pages.values()), pages


def test_an_upgrade_in_place_leaves_the_view_analyzed_and_every_page_marked_all_visible(postgres_url_alone):
    # The runs view as its version 8 left it (two counters fewer, the index of last events
    # without the workflow): the next writer to open the store counts them from its rows.
    log = open_log(postgres_url_alone)
    try:
        live_store(log)  # folded live: a page a commit, none vacuumed
        with log.backend.transaction(write=True) as c:
            c.execute('DROP TABLE "workflow_run_last_hours"')
            c.execute('DROP TABLE "workflow_tenant_run_counts"')
            c.execute('DROP INDEX "runs_by_status_updated_filtered"')
            c.execute("CREATE INDEX runs_by_status_updated_created ON runs (status, updated_at, seq, created_at, tenant)")
            log.backend.set_view_version(c, "runs", 8)
    finally:
        log.close()
    again = open_log(postgres_url_alone)
    try:
        ledger.ensure_views(again)
        with again.backend.transaction(write=False) as c:
            assert Projector.stored_versions(c)["runs"] == str(RunsView.version)
    finally:
        again.close()
    schema = postgres_url_alone.rpartition("schema=")[2]
    with server_connection(postgres_url_alone) as conn:
        analyzed = {row[0] for row in conn.execute("SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = %s", (schema,))}
    pages = {name: counted for name, counted in _pages(postgres_url_alone).items() if name in RunsView.tables and counted[0]}
    assert {"runs", "workflow_run_last_hours"} <= set(pages) and pages["runs"][0] > 50, pages
    assert all(visible == n for n, visible in pages.values()), pages
    assert set(pages) <= analyzed, analyzed


def test_right_after_a_rebuild_a_status_s_first_runs_are_sought_in_its_index_alone(postgres_url_alone):
    # The newest 600 runs running: the completed runs' first positions are the status's
    # index's to give (read in it alone, on pages marked all visible), where the planner
    # otherwise reads `runs_by_seq` backwards past every running run.
    log = open_log(postgres_url_alone)
    try:
        live_store(log)
        ledger.rebuild(log)
        plans = completed_probe_plans(log)
    finally:
        log.close()
    for plan in plans:
        assert "Index Only Scan" in plan and "runs_by_status" in plan and "Heap Fetches: 0" in plan, plan


def test_a_rebuild_whose_vacuum_fails_is_done_and_says_so(postgres_url, caplog):
    log = open_log(postgres_url)
    try:
        live_store(log)
        # No server on that port: the VACUUM's own connection is refused (the store's pool
        # has its connections already).
        log.backend._connect_kwargs["port"] = 1  # noqa: SLF001
        with caplog.at_level(logging.WARNING, logger="flowledger.store.postgres"):
            assert ledger.rebuild(log) > 0
        assert ledger.query(log, queries.counts)["total"] == 3000
    finally:
        log.close()
    (said,) = [r.getMessage() for r in caplog.records if r.name == "flowledger.store.postgres"]
    assert said.startswith("the views just filled are not vacuumed (") and "autovacuum will do it in time" in said


def test_a_vacuum_of_no_table_does_nothing(postgres_url, caplog):
    # VACUUM naming no table would vacuum every table of the database: not even a connection.
    log = open_log(postgres_url)
    try:
        log.backend._connect_kwargs["port"] = 1  # noqa: SLF001  # a connection would be refused, and said
        with caplog.at_level(logging.WARNING, logger="flowledger.store.postgres"):
            log.backend.vacuum([])
    finally:
        log.close()
    assert caplog.records == []
