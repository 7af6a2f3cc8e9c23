"""Store and view contract tests, written once and run against every backend.

A subclass provides ``store_url`` (a fresh, empty store per test); everything here goes
through the public API, so the same assertions hold for a SQLite file and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import random
import threading

import orjson
import pytest

from flowledger import ledger, queries
from flowledger.errors import CommandRefused, InvalidInput, NotFound
from flowledger.projections.projector import Projector
from flowledger.projections.runs_view import RunsView
from flowledger.store import backend as backend_module
from flowledger.store import open_log
from tests.conftest import ev, step, triggered
from tests.histories import jsonl
from tests.test_queries_mutations import walk


def _history(run_id="r1"):
    return [
        triggered(run_id, trigger={"source": "api", "cancellation_key": "k1"}),
        ev("run.started", run_id=run_id),
        step("step.started", run_id, request={"headers": {"Authorization": "Bearer sk_live_1"}}),
        ev("message.queued", message_id=f"{run_id}-m", channel="email", recipient="user-1", run_id=run_id, step="email-1"),
        ev("message.opened", message_id=f"{run_id}-m", occurred_at="2026-11-01T09:05:00Z"),
        ev("message.delivered", message_id=f"{run_id}-m", occurred_at="2026-11-01T09:01:00Z"),
        step("step.failed", run_id, error="SMTP 451"),
        ev("run.failed", run_id=run_id, error="gave up"),
    ]


def _creation_times() -> list[str]:
    """Runs' creation times (as stored): at hours' first and last microseconds, within them,
    at one moment twice, over a day."""
    times = ["2026-11-01T00:00:00.000000Z", "2026-11-01T05:59:59.999999Z", "2026-11-01T06:00:00.000000Z",
             "2026-11-01T06:00:00.000000Z", "2026-11-01T23:59:59.999999Z"]
    rng = random.Random(3)
    times += [f"2026-11-01T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}Z"
              for _ in range(40)]
    return times


def _clock(seconds: int) -> str:
    """A time of day, hh:mm:ss, ``seconds`` after midnight."""
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _counted(statuses: list[str]) -> dict[str, int]:
    """Runs by status and their total, as run_status_counts gives them, of these statuses."""
    return {"total": len(statuses), **{s: statuses.count(s) for s in queries.STATUSES}}


def _runs_over_four_hours(log, rng: random.Random, n: int, prefix: str, whose) -> list[int]:
    """Appends ``n`` runs (ids ``prefix`` and a number), each created and last heard of at
    random seconds of four hours (a pending one's last event its trigger), pending, running
    or completed, of ``whose(i)``'s tenant (or none) and workflow; gives their creation
    seconds."""
    events, made = [], []
    for i in range(n):
        run, (created, heard) = f"{prefix}{i:03d}", sorted(rng.randrange(4 * 3600) for _ in range(2))
        status = rng.choice(["pending", "running", "completed"])
        tenant, workflow = whose(i)
        created = heard if status == "pending" else created  # (a pending run's last event is its trigger)
        made.append(created)
        events.append(triggered(run, occurred_at=f"2026-11-01T{_clock(created)}Z", workflow=workflow, **({"tenant": tenant} if tenant else {})))
        if status != "pending":
            events.append(ev("run.started", run_id=run, occurred_at=f"2026-11-01T{_clock(heard)}Z"))
        if status == "completed":
            events.append(ev("run.completed", run_id=run, occurred_at=f"2026-11-01T{_clock(heard)}Z"))
    ledger.append_input(log, jsonl(events))
    return made


def _statuses_of_pair(every: list[dict], filters: queries.RunFilters) -> list[str]:
    """The statuses of the runs of ``every`` (entries) that ``filters`` name: a tenant's runs
    of a workflow within a range (both ends given), of its statuses, quiet since its time."""
    return [r["status"] for r in every
            if (not filters.statuses or r["status"] in filters.statuses) and filters.starting_at <= r["created_at"] <= filters.ending_at
            and r["tenant"] == filters.tenant and r["workflow"] == filters.workflow
            and (filters.updated_before is None or r["updated_at"] <= filters.updated_before)]


def _counters(c) -> tuple[list, list, list]:
    """The runs view's counts by hour, by tenant and by tenant and hour, and by status, sorted."""
    c.execute("SELECT hour, status, n FROM run_hours ORDER BY hour, status")
    hours = [tuple(r) for r in c.fetchall()]
    c.execute("SELECT tenant, status, n FROM tenant_run_counts ORDER BY tenant, status")
    tenants = [tuple(r) for r in c.fetchall()]
    c.execute("SELECT tenant, hour, status, n FROM tenant_run_hours ORDER BY tenant, hour, status")
    tenants += [tuple(r) for r in c.fetchall()]
    c.execute("SELECT workflow, hour, status, n FROM workflow_run_hours ORDER BY workflow, hour, status")
    hours += [tuple(r) for r in c.fetchall()]
    c.execute("SELECT status, rehearsal, n FROM run_status_totals ORDER BY status, rehearsal")
    totals = [tuple(r) for r in c.fetchall()]
    c.execute("SELECT hour, first_seq, last_seq FROM run_hour_seqs ORDER BY hour")
    totals += [tuple(r) for r in c.fetchall()]
    c.execute("SELECT tenant, status, hour, created, n FROM tenant_run_last_hours ORDER BY tenant, status, hour, created")
    tenants += [tuple(r) for r in c.fetchall()]
    c.execute("SELECT workflow, status, hour, created, n FROM workflow_run_last_hours ORDER BY workflow, status, hour, created")
    hours += [tuple(r) for r in c.fetchall()]
    c.execute("SELECT workflow, tenant, status, n FROM workflow_tenant_run_counts ORDER BY workflow, tenant, status")
    tenants += [tuple(r) for r in c.fetchall()]
    c.execute("SELECT hour, first_seq, last_seq FROM run_hour_seqs_on_time ORDER BY hour")
    totals += [tuple(r) for r in c.fetchall()]
    c.execute("SELECT seq, hour FROM run_late_seqs ORDER BY seq")
    totals += [tuple(r) for r in c.fetchall()]
    c.execute("SELECT status, hour, created, n FROM run_last_hours ORDER BY status, hour, created")
    return hours, tenants, totals + [tuple(r) for r in c.fetchall()]


def _tenant_keyed(run_id: str, tenant: str | None) -> dict:
    fields = {"trigger": {"source": "api", "cancellation_key": "order-7"}}
    if tenant is not None:
        fields["tenant"] = tenant
    return triggered(run_id, **fields)


def tenant_keyed_runs() -> list[dict]:
    """Runs with one cancellation key: two tenants' and one of none, some finished."""
    return [
        _tenant_keyed("a1", "acme"),
        _tenant_keyed("a2", "acme"),
        ev("run.started", run_id="a2"),
        _tenant_keyed("a3", "acme"),
        ev("run.started", run_id="a3"),
        ev("run.completed", run_id="a3"),
        _tenant_keyed("b1", "globex"),
        _tenant_keyed("n1", None),
        triggered("a4", tenant="acme"),
    ]


class StoreContract:
    """What every backend must do."""

    @pytest.fixture
    def log(self, store_url):
        log = open_log(store_url)
        yield log
        log.close()

    def test_append_read_back_and_duplicates(self, log):
        events = _history()
        result, _ = ledger.append_input(log, jsonl(events))
        assert (result.appended, result.duplicates) == (8, 0)
        stored = log.run_events("r1")
        assert [e.version for e in stored] == [1, 2, 3, 4, 5]
        assert all(a.position < b.position for a, b in zip(stored, stored[1:]))
        again, _ = ledger.append_input(log, jsonl(events))
        assert (again.appended, again.duplicates) == (0, 8)
        assert log.count() == 8

    def test_conflicts_and_refusals_store_nothing(self, log):
        events = _history()
        ledger.append_input(log, jsonl(events[:2]))
        with pytest.raises(InvalidInput) as info:
            ledger.append_input(log, jsonl([*events[2:], {**events[0], "workflow": "x"}, ev("run.completed", run_id="ghost")]))
        messages = [p.message for p in info.value.problems]
        assert any("different body" in m for m in messages) and any("never triggered" in m for m in messages)
        assert log.count() == 2

    def test_an_id_reused_in_another_stream_is_a_conflict(self, log):
        queued = ev("message.queued", id="e1", message_id="m1", channel="sms", recipient="u1")
        ledger.append_input(log, jsonl([queued]))
        again, _ = ledger.append_input(log, jsonl([queued]))
        assert (again.appended, again.duplicates) == (0, 1)
        with pytest.raises(InvalidInput) as info:
            ledger.append_input(log, jsonl([{**queued, "message_id": "m2"}]))
        assert "different body" in info.value.problems[0].message
        assert log.count() == 1

    def test_a_refused_event_leaves_its_id_free_for_a_corrected_resend(self, log):
        early = ev("run.completed", id="done-1", run_id="r1")
        result, _ = ledger.append_input(log, jsonl([early, triggered("r1")]), keep_going=True)
        assert result.appended == 1 and "never triggered" in result.problems[0][1].message
        fixed, _ = ledger.append_input(log, jsonl([ev("run.started", run_id="r1"), early]))
        assert (fixed.appended, fixed.duplicates) == (2, 0)
        assert [e.type for e in log.run_events("r1")] == ["run.triggered", "run.started", "run.completed"]

    def test_a_store_made_with_schema_version_1_is_upgraded_on_open(self, log, store_url):
        events = _history()
        ledger.append_input(log, jsonl(events))
        b = log.backend
        # Version 1 kept each id's digest and stream beside it.
        with b.transaction(write=True) as c:
            c.execute(f"SELECT {b.position_column}, originator_id, originator_version, state FROM stored_events")
            rows = [(orjson.loads(bytes(s))["id"], b"\0" * 16, o, v) for _, o, v, s in c.fetchall()]
            c.execute("DROP TABLE event_ids")
            c.execute(b.ddl(
                "CREATE TABLE event_ids (id TEXT PRIMARY KEY, digest BLOB NOT NULL, "
                "originator_id TEXT NOT NULL, originator_version INTEGER NOT NULL)"
            ))
            c.executemany("INSERT INTO event_ids VALUES (?, ?, ?, ?)", rows)
            c.execute("UPDATE flowledger_meta SET value = '1' WHERE key = 'schema_version'")
        log.close()
        upgraded = open_log(store_url)
        try:
            with upgraded.backend.transaction(write=False) as c:
                c.execute("SELECT value FROM flowledger_meta WHERE key = 'schema_version'")
                assert c.fetchone()[0] == "2"
                c.execute("SELECT * FROM event_ids")
                assert sorted(r[0] for r in c.fetchall()) == sorted(r[0] for r in rows)
            again, _ = ledger.append_input(upgraded, jsonl(events))
            assert (again.appended, again.duplicates) == (0, 8)
            with pytest.raises(InvalidInput):
                ledger.append_input(upgraded, jsonl([{**events[1], "occurred_at": "2026-11-02T00:00:00Z"}]))
            more, _ = ledger.append_input(upgraded, jsonl([triggered("r9")]))
            assert more.appended == 1 and upgraded.count() == 9
        finally:
            upgraded.close()

    def test_secrets_are_redacted_in_the_stored_events(self, log):
        ledger.append_input(log, jsonl(_history()))
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT COUNT(*) FROM stored_events")
            total = c.fetchone()[0]
            c.execute("SELECT state FROM stored_events")
            states = [bytes(r[0]) for r in c.fetchall()]
        assert total == 8 and not any(b"sk_live_1" in s for s in states)
        assert any(b"[REDACTED]" in s for s in states)

    def test_replay_retry_and_cancel(self, log):
        ledger.append_input(log, jsonl(_history() + [triggered("r2", trigger={"source": "api", "cancellation_key": "k1"})]))
        assert [h.record["status"] for h in ledger.replay(log, "r1")][-1] == "failed"
        record = ledger.retry_run(log, "r1", actor="ops", reason="try again")
        assert (record["status"], record["retry_count"]) == ("pending", 1)
        with pytest.raises(CommandRefused):
            ledger.retry_run(log, "r1")
        assert ledger.cancel_by_key(log, "k1", actor="ops") == ["r1", "r2"]
        with pytest.raises(CommandRefused):
            ledger.cancel_run(log, "r2")
        with pytest.raises(NotFound):
            ledger.replay(log, "nope")

    def test_a_key_scoped_to_a_tenant_cancels_that_tenants_unfinished_runs_alone(self, log):
        ledger.append_input(log, jsonl(tenant_keyed_runs()))
        assert ledger.cancel_by_key(log, "order-7", actor="ops", tenant="acme") == ["a1", "a2"]
        assert {r: log.run_state(r).status for r in ("a1", "a2", "a3", "a4", "b1", "n1")} == {
            "a1": "cancelled",
            "a2": "cancelled",
            "a3": "completed",
            "a4": "pending",
            "b1": "pending",
            "n1": "pending",
        }
        assert ledger.cancel_by_key(log, "order-7", tenant="acme") == []
        assert ledger.cancel_by_key(log, "order-7", tenant="initech") == []
        # Without a tenant, every tenant's (and those of none), as before.
        assert ledger.cancel_by_key(log, "order-7") == ["b1", "n1"]

    def test_views_answer_and_rebuild_reproduces_them(self, log):
        ledger.append_input(log, jsonl(_history("r1") + _history("r2")[:4]))
        record = ledger.show_run(log, "r1")
        assert (record["status"], record["error_count"], record["email_opened"]) == ("failed", 1, True)
        assert record["steps"][0]["request"] == {"headers": {"Authorization": "[REDACTED]"}}
        before = {
            "show": ledger.show_run(log, "r1"),
            "list": ledger.query(log, queries.list_runs, queries.RunFilters()),
            "deliveries": ledger.query(log, queries.list_deliveries, queries.DeliveryFilters()),
            "workflow": ledger.query(log, queries.workflow_details, "welcome"),
            "stats": ledger.query(log, queries.execution_stats, "welcome"),
            "counts": ledger.query(log, queries.counts),
        }
        assert before["counts"]["total"] == 2 and before["counts"]["failed"] == 1
        Projector(log.backend).rebuild()
        after = {
            "show": ledger.show_run(log, "r1", fresh=False),
            "list": ledger.query(log, queries.list_runs, queries.RunFilters(), fresh=False),
            "deliveries": ledger.query(log, queries.list_deliveries, queries.DeliveryFilters(), fresh=False),
            "workflow": ledger.query(log, queries.workflow_details, "welcome", fresh=False),
            "stats": ledger.query(log, queries.execution_stats, "welcome", fresh=False),
            "counts": ledger.query(log, queries.counts, fresh=False),
        }
        assert orjson.dumps(after, option=orjson.OPT_SORT_KEYS) == orjson.dumps(before, option=orjson.OPT_SORT_KEYS)

    def test_the_longest_keys_the_vocabulary_takes_fold_into_every_view(self, log):
        # Random characters, so that no index entry is made smaller by compression:
        # PostgreSQL refuses an index row over 2,704 bytes (the steps view's edges hold
        # a workflow and two step names in one key).
        rng = random.Random(4)

        def key(low, high, n):
            return "".join(chr(rng.randrange(low, high)) for _ in range(n))

        workflow = key(0x4E00, 0x9FFF, 255)  # 765 bytes in UTF-8, the most a key may have
        first, second = key(0x4E00, 0x9FFF, 255), key(0x1F300, 0x1F5FF, 191) + "!"
        run = [
            triggered("r1", workflow=workflow),
            ev("run.started", run_id="r1"),
            step("step.started", "r1", name=first),
            step("step.succeeded", "r1", name=first),
            step("step.started", "r1", name=second),
            step("step.failed", "r1", name=second, error="x"),
        ]
        ledger.append_input(log, jsonl(run))
        assert [s["step"] for s in ledger.show_run(log, "r1")["steps"]] == [first, second]
        assert ledger.query(log, queries.workflow_details, workflow)["runs"]["total"] == 1
        stats = orjson.dumps(ledger.query(log, queries.execution_stats, workflow)).decode()
        assert first in stats and second in stats
        with pytest.raises(InvalidInput) as info:
            ledger.append_input(log, jsonl([triggered("r2", workflow=key(0x1F300, 0x1F5FF, 255))]))
        assert 'field "workflow": expected at most 765 bytes in UTF-8' in info.value.problems[0].message

    def test_paging_is_exact(self, log):
        ledger.append_input(log, jsonl([triggered(f"r{i:02d}") for i in range(7)]))
        seen, after = [], None
        while True:
            page = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=3, after=after)
            seen += [r["id"] for r in page["entries"]]
            after = page["page_info"]["after"]
            if not after:
                break
        assert seen == [f"r{i:02d}" for i in reversed(range(7))]

    @pytest.mark.parametrize("probe", [2, 500])
    def test_a_date_ranges_pages_both_ways_are_its_runs(self, log, monkeypatch, probe):
        # Times out of seq order; ranges open at either end or not; the runs read in seq
        # order before the index is searched (queries.PROBE_ROWS) few or all; the hours read
        # one at a time (queries.HOURS_READ) few.
        monkeypatch.setattr(queries, "PROBE_ROWS", probe)
        monkeypatch.setattr(queries, "HOURS_READ", 2)
        days = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3]
        ledger.append_input(log, jsonl([triggered(f"r{i:02d}", occurred_at=f"2026-11-0{d}T00:00:00Z") for i, d in enumerate(days)]))
        newest_first = [f"r{i:02d}" for i in reversed(range(len(days)))]
        for since, until in [("2026-11-03", "2026-11-05"), ("2026-11-05", None), (None, "2026-11-02")]:
            filters = queries.RunFilters(
                starting_at=since and f"{since}T00:00:00.000000Z", ending_at=until and f"{until}T00:00:00.000000Z"
            )
            wanted = [r for r in newest_first if (since or "") <= f"2026-11-0{days[int(r[1:])]}" <= (until or "~")]
            assert walk(log, queries.list_runs, filters, key="id", page_size=2) == wanted
            assert ledger.query(log, queries.run_status_counts, filters)["total"] == len(wanted)

    @pytest.mark.parametrize(("late_read", "intervals", "gap"), [(500, 8, 1000), (2, 8, 1000), (2, 8, 0), (2, 0, 1000)])
    def test_pages_with_runs_appended_late_are_the_runs_they_name(self, log, monkeypatch, late_read, intervals, gap):
        # Twenty runs an hour in order, then runs created hours before (set apart as late:
        # the pages bound their reads by the others and read these on their own, whole or,
        # past queries.LATE_READ of those the page's times could pick, in their spans of
        # positions, or, past queries.LATE_INTERVALS spans, bound them by every run), one
        # stamped days ahead, and more in order after it: a page each way under every mix is
        # the runs the filters name, newest first.
        monkeypatch.setattr(queries, "PROBE_ROWS", 1)
        monkeypatch.setattr(queries, "HOURS_READ", 3)
        monkeypatch.setattr(queries, "_LAST_EVENTS_CHUNK", 2)
        monkeypatch.setattr(queries, "LATE_READ", late_read)
        monkeypatch.setattr(queries, "LATE_INTERVALS", intervals)
        monkeypatch.setattr(queries, "LATE_GAP", gap)
        rng = random.Random(31)
        events: list[dict] = []

        def run(name: str, created: int, minute: int) -> None:
            # Hours from -4: the day before, where only late runs were created.
            who = {"workflow": rng.choice(["w1", "w2"]), "tenant": rng.choice(["t1", "t2"])}
            day = "2026-11-01" if created >= 0 else "2026-10-31"
            at = f"{day}T{created % 24:02d}:{minute:02d}:00Z"
            events.append(triggered(name, occurred_at=at, **who))
            fate = rng.randrange(4)
            heard = f"2026-11-01T{max(0, min(23, created + rng.randrange(4))):02d}:{minute:02d}:30Z"
            if fate:
                events.append(ev("run.started", run_id=name, occurred_at=heard))
            if fate == 2:
                events.append(ev("run.completed", run_id=name, occurred_at=heard))

        for h in range(12):
            for k in range(20):
                run(f"r{h:02d}{k:02d}", h, k * 3)
        for i in range(10):
            run(f"late{i}", rng.randrange(-4, 5), rng.randrange(60))
        events.append(triggered("ahead", occurred_at="2026-11-09T00:00:00Z"))
        for k in range(5):
            run(f"s12{k:02d}", 12, k)
            run(f"late-after{k}", rng.randrange(-4, 5), rng.randrange(60))
        ledger.append_input(log, jsonl(events))
        ledger.catch_up(log)
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT COUNT(*) FROM run_late_seqs")
            assert c.fetchone()[0] == 15  # every late one, none of those after the run ahead
        every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]

        def hour(h: int, minutes: str = "00") -> str:
            return f"{'2026-11-01' if h >= 0 else '2026-10-31'}T{h % 24:02d}:{minutes}:00.000000Z"

        for _ in range(48):
            statuses = tuple(rng.sample(["pending", "running", "completed"], rng.choice([0, 1, 1, 2])))
            quiet = rng.choice([None, hour(rng.randrange(1, 14), rng.choice(["00", "20"]))])
            since = rng.choice([None, hour(rng.randrange(-4, 12), rng.choice(["00", "20"]))])
            until = rng.choice([None, hour(rng.randrange(-4, 12), rng.choice(["00", "40"]))])
            narrow = rng.choice([{}, {"workflow": "w1"}, {"tenant": "t2"}, {"workflow": "w2", "tenant": "t1"}])
            filters = queries.RunFilters(statuses=statuses, updated_before=quiet, starting_at=since, ending_at=until, **narrow)
            wanted = [
                r["id"] for r in every
                if (not statuses or r["status"] in statuses) and (quiet is None or r["updated_at"] <= quiet)
                and (since or "") <= r["created_at"] <= (until or "~") and all(r[k] == v for k, v in narrow.items())
            ]
            # Pages of a few, at most 40 of them (walk's bound).
            size = max(rng.choice([2, 3, 5]), len(wanted) // 40 + 1)
            assert walk(log, queries.list_runs, filters, key="id", page_size=size) == wanted, filters
        # Two statuses quiet since a time, a range's end or not, a workflow or not: the second
        # status read from the bound the first found, the late runs joined to it too.
        for statuses in (("completed", "running"), ("pending", "running")):
            for quiet in (hour(6), hour(13, "20")):
                for until in (None, hour(10)):
                    for narrow in ({}, {"workflow": "w1"}):
                        filters = queries.RunFilters(statuses=statuses, updated_before=quiet, ending_at=until, **narrow)
                        wanted = [
                            r["id"] for r in every
                            if r["status"] in statuses and r["updated_at"] <= quiet and r["created_at"] <= (until or "~")
                            and all(r[k] == v for k, v in narrow.items())
                        ]
                        size = max(3, len(wanted) // 40 + 1)
                        assert walk(log, queries.list_runs, filters, key="id", page_size=size) == wanted, filters

    @pytest.mark.parametrize("cap", [8, 1000])
    def test_a_workflows_pages_of_runs_quiet_since_a_time_are_the_runs_they_name(self, log, monkeypatch, cap):
        # A workflow's runs of a status quiet since a time, past the runs read in seq order
        # first, are read last created first (first created, for a page back) in the index of
        # its runs by status and creation time, four times the page first, then four times
        # that while a run unread could better the page (at most queries.LAST_EVENTS_READ).
        # Creation times out of seq order, several in an hour; pages both ways.
        monkeypatch.setattr(queries, "PROBE_ROWS", 1)
        monkeypatch.setattr(queries, "LAST_EVENTS_READ", cap)
        rng = random.Random(23)
        events = []
        for i in range(60):
            run, created = f"r{i:02d}", rng.randrange(6)
            workflow = rng.choice(["w1", "w1", "w2"])
            events.append(triggered(run, occurred_at=f"2026-11-01T{created:02d}:{rng.randrange(60):02d}:00Z", workflow=workflow))
            if rng.randrange(3):
                heard = created + rng.randrange(6)
                events.append(ev("run.started", run_id=run, occurred_at=f"2026-11-01T{heard:02d}:{rng.randrange(60):02d}:00Z"))
        ledger.append_input(log, jsonl(events))
        every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
        named = []
        for quiet in ("2026-11-01T03:30:00.000000Z", "2026-11-01T06:00:00.000000Z", "2026-11-01T09:00:00.000000Z"):
            for statuses in (("running",), ("pending", "running")):
                for since in (None, "2026-11-01T02:00:00.000000Z"):
                    filters = queries.RunFilters(workflow="w1", statuses=statuses, updated_before=quiet, starting_at=since)
                    wanted = [
                        r["id"] for r in every
                        if r["workflow"] == "w1" and r["status"] in statuses and r["updated_at"] <= quiet
                        and (since or "") <= r["created_at"]
                    ]
                    named.append(len(wanted))
                    for size in (1, 3):
                        assert walk(log, queries.list_runs, filters, key="id", page_size=size) == wanted, (filters, size)
        # Pages of one (two read: eight read first) among more runs than that.
        assert max(named) > 8 and min(named) > 0, named

    @pytest.mark.parametrize("probe, hours, walked", [(2, 24, 1000), (2, 1, 4), (500, 24, 1000)])
    def test_pages_of_several_statuses_and_of_stuck_runs_are_the_runs_they_name(self, log, monkeypatch, probe, hours, walked):
        # Several statuses are sought a status at a time and their pages merged by seq; runs
        # whose times are checked (a last event at or before a time, a range of creation
        # times) are read in seq order first (queries.PROBE_ROWS of them), then a range's an
        # hour at a time (at most queries.HOURS_READ hours), a status's quiet runs newest last
        # event first (two at a time, at most queries.LAST_EVENTS_READ), then sought in an
        # index of those times: under every other filter, a page each way is the runs the
        # filters name, newest first. Times are out of seq order here.
        monkeypatch.setattr(queries, "PROBE_ROWS", probe)
        monkeypatch.setattr(queries, "HOURS_READ", hours)
        monkeypatch.setattr(queries, "_LAST_EVENTS_CHUNK", 2)
        monkeypatch.setattr(queries, "LAST_EVENTS_READ", walked)
        rng = random.Random(11)
        events = []
        for i in range(48):
            run, created = f"r{i:02d}", rng.randrange(12)
            heard = created + rng.randrange(1, 12)
            who = {"recipient": rng.choice(["u1", "u2", "u3"]), "workflow": rng.choice(["w1", "w2"]), "tenant": rng.choice(["t1", "t2"])}
            events.append(triggered(run, occurred_at=f"2026-11-01T{created:02d}:{rng.randrange(0, 60, 15):02d}:00Z", **who))
            fate = rng.randrange(4)
            if fate:
                events.append(ev("run.started", run_id=run, occurred_at=f"2026-11-01T{heard:02d}:00:00Z"))
            if fate and i % 4 == 1:
                # A failed step attempt: the run has errors (`--has-errors`).
                events.append(step("step.started", run, occurred_at=f"2026-11-01T{heard:02d}:05:00Z"))
                events.append(step("step.failed", run, occurred_at=f"2026-11-01T{heard:02d}:10:00Z", error="bounced"))
            if fate == 2:
                events.append(ev("run.completed", run_id=run, occurred_at=f"2026-11-01T{heard:02d}:30:00Z"))
            if fate == 3:
                events.append(ev("run.failed", run_id=run, occurred_at=f"2026-11-01T{heard:02d}:30:00Z", error="gave up"))
            if i % 3 == 0:
                message = f"m{i:02d}"
                events.append(ev("message.queued", message_id=message, channel="email", recipient=who["recipient"], run_id=run, step="email-1"))
                for fact in ("message.sent", "message.delivered", "message.bounced")[: rng.randrange(4)]:
                    events.append(ev(fact, message_id=message))
        ledger.append_input(log, jsonl(events))
        every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
        messages = ledger.query(log, queries.list_deliveries, queries.DeliveryFilters(), page_size=1000)["entries"]

        def hour(h: int, minutes: str = "00") -> str:
            return f"2026-11-01T{h:02d}:{minutes}:00.000000Z"

        for _ in range(24):
            statuses = tuple(rng.sample(["pending", "running", "completed", "failed"], rng.choice([0, 2, 2, 3])))
            # Quiet since the start of an hour or within one (its runs created on both sides).
            quiet = rng.choice([None, hour(rng.randrange(24), rng.choice(["00", "20", "45"]))])
            # Ranges from and to the start of an hour, or within one (its runs on both sides).
            since = rng.choice([None, hour(rng.randrange(12), rng.choice(["00", "20", "45"]))])
            until = rng.choice([None, hour(rng.randrange(12), rng.choice(["00", "20", "45"]))])
            narrow = rng.choice([{}, {"workflow": "w1"}, {"tenant": "t2"}, {"recipient": "u2"}, {"has_errors": True},
                                 {"has_errors": True, "workflow": "w2"}])
            filters = queries.RunFilters(statuses=statuses, updated_before=quiet, starting_at=since, ending_at=until, **narrow)
            wanted = [
                r["id"] for r in every
                if (not statuses or r["status"] in statuses) and (quiet is None or r["updated_at"] <= quiet)
                and (since or "") <= r["created_at"] <= (until or "~")
                and all(r["error_count"] > 0 if k == "has_errors" else r[k] == v for k, v in narrow.items())
            ]
            size = rng.choice([1, 3, 5])
            assert walk(log, queries.list_runs, filters, key="id", page_size=size) == wanted, filters
            if "recipient" in narrow:
                theirs = dataclasses.replace(filters, recipient=None)
                assert walk(log, queries.list_runs_by_contact, theirs, "u2", key="id", page_size=size) == wanted, filters
        for statuses in (("sent", "bounced"), ("queued", "delivered", "bounced"), ("clicked", "sent")):
            wanted = [m["message_id"] for m in messages if m["status"] in statuses]
            filters = queries.DeliveryFilters(statuses=statuses)
            assert walk(log, queries.list_deliveries, filters, key="message_id", page_size=2) == wanted, statuses
        assert {m["status"] for m in messages} >= {"queued", "sent", "delivered", "bounced"}
        assert {r["status"] for r in every} == {"pending", "running", "completed", "failed"}

    def test_a_run_s_and_a_recipient_s_messages_of_a_channel_and_status_are_the_ones_they_name(self, log):
        # Messages of a few runs and recipients (one in a collection) on three channels, in
        # every status: a run's or a recipient's are read in their own index, a channel's of
        # a status in (channel, status, seq) (queries._from); under every mix of the filters
        # a page each way is the messages they name, newest first.
        rng = random.Random(7)
        events = [triggered(f"r{k}") for k in range(4)]
        recipients = ["u1", "u2", {"collection": "contacts", "id": "u1"}]
        facts = ("message.sent", "message.delivered", "message.opened", "message.bounced")
        for i in range(40):
            message = f"m{i:02d}"
            events.append(ev("message.queued", message_id=message, channel=rng.choice(["email", "sms", "whatsapp"]),
                             recipient=rng.choice(recipients), run_id=f"r{rng.randrange(4)}", step="s"))
            kept = facts[: rng.randrange(5)]
            if "message.bounced" in kept:
                kept = ("message.sent", "message.bounced")
            events += [ev(fact, message_id=message) for fact in kept]
        rng.shuffle(events)
        ledger.append_input(log, jsonl(events))
        every = ledger.query(log, queries.list_deliveries, queries.DeliveryFilters(), page_size=1000)["entries"]
        assert {m["status"] for m in every} == {"queued", "sent", "delivered", "opened", "bounced"}

        def recipient_id(m):
            return m["recipient"]["id"] if isinstance(m["recipient"], dict) else m["recipient"]

        for run in (None, "r1", "r9"):
            for recipient in (None, "u1", "u2"):
                for channel in (None, "email", "sms", "push"):
                    for statuses in ((), ("delivered",), ("sent", "bounced"), ("read",)):
                        filters = queries.DeliveryFilters(run, channel, statuses, recipient)
                        picked = [
                            m for m in every
                            if run in (None, m["run_id"]) and channel in (None, m["channel"])
                            and (not statuses or m["status"] in statuses)
                        ]
                        # The recipient filter is the id's, in a collection or not.
                        wanted = [m["message_id"] for m in picked if recipient in (None, recipient_id(m))]
                        assert walk(log, queries.list_deliveries, filters, key="message_id", page_size=3) == wanted, filters
                        if recipient == "u1":
                            # As the pages show it: "u1" is both the plain id's and the collection's.
                            theirs = dataclasses.replace(filters, recipient=None)
                            shown = [m["message_id"] for m in picked if m["recipient"] in ("u1", recipients[2])]
                            assert walk(log, queries.list_deliveries_by_contact, theirs, "u1", key="message_id", page_size=3) == shown
                            only = [m["message_id"] for m in picked if m["recipient"] == recipients[2]]
                            assert walk(log, queries.list_deliveries_by_contact, theirs, "contacts/u1", key="message_id", page_size=3) == only

    def test_range_and_tenant_counts_are_the_runs_they_name(self, log):
        # Runs created at hours' very first and last microseconds and between, in every
        # status (a failed run retried back to pending too), of two tenants or none; ranges
        # of whole hours, of part-hours at either end or both, inside one hour, open at
        # either end: each count is the runs' own (the whole hours come from run_hours).
        created = _creation_times()
        events, truth = [], []
        for i, at in enumerate(created):
            run, tenant, fate = f"r{i:02d}", (None, "t1", "t2")[i % 3], i % 5
            workflow = ("w1", "w2")[i % 2]
            events.append(triggered(run, occurred_at=at, workflow=workflow, **({"tenant": tenant} if tenant else {})))
            if fate:
                events.append(ev("run.started", run_id=run, occurred_at=at))
            if fate in (2, 3):
                events.append(ev("run.failed", run_id=run, occurred_at=at, error="gave up"))
            if fate == 3:
                events.append(ev("run.retried", run_id=run, occurred_at=at))
            if fate == 4:
                events.append(ev("run.completed", run_id=run, occurred_at=at))
            truth.append((at, tenant, ("pending", "running", "failed", "pending", "completed")[fate], workflow))
        ledger.append_input(log, jsonl(events))
        rng = random.Random(11)
        ends = [*created, *(f"2026-11-01T{h:02d}:{m}" for h in (0, 5, 6, 7, 23) for m in ("00:00.000000Z", "59:59.999999Z")),
                "2026-11-01T06:30:00.000000Z", "2026-10-31T23:59:59.999999Z", queries.EARLIEST, queries.LATEST, None]
        for _ in range(160):
            since, until = rng.choice(ends), rng.choice(ends)
            statuses = tuple(rng.sample(["pending", "running", "failed", "completed"], rng.choice([0, 1, 2])))
            tenant = rng.choice([None, None, "t1", "t2", "t3"])
            # A workflow's (from workflow_run_hours), or with a tenant too (counted run by run).
            workflow = rng.choice([None, None, "w1", "w2", "w3"])
            filters = queries.RunFilters(starting_at=since, ending_at=until, statuses=statuses, tenant=tenant, workflow=workflow)
            picked = [s for at, t, s, w in truth if (since or "") <= at <= (until or "~") and (not statuses or s in statuses)
                      and (tenant is None or t == tenant) and (workflow is None or w == workflow)]
            got = ledger.query(log, queries.run_status_counts, filters)
            assert got == _counted(picked), (since, until, statuses, tenant, workflow)
        for tenant in ("t1", "t2", "t3"):
            for statuses in ((), ("pending",), ("failed", "completed")):
                filters = queries.RunFilters(tenant=tenant, statuses=statuses)
                picked = [s for _, t, s, _ in truth if t == tenant and (not statuses or s in statuses)]
                assert ledger.query(log, queries.run_status_counts, filters) == _counted(picked)

    def test_a_tenants_runs_of_a_workflow_holding_most_of_a_range_are_the_tenants_less_its_others(self, log, monkeypatch):
        # A workflow of most runs (w1): the tenant's counted by the hour, less its runs of the
        # other workflows, sought in their index. 120 runs over four hours; 300 ranges from and
        # to any second, a run's own creation or a whole hour, with statuses, quiet since a
        # time or not.
        rng = random.Random(11)
        made = _runs_over_four_hours(log, rng, 120, "r", lambda i: (
            rng.choice(["t1", "t1", "t1", "t2", None]), rng.choice(["w1"] * 7 + ["w2", "w2", "w3"])
        ))
        ledger.catch_up(log)
        # One other workflow a statement (as where they are more than a statement binds): the
        # chunks' counts are added up.
        monkeypatch.setattr(backend_module, "_IN_CHUNK", 1)
        others = []
        less_others = queries._less_other_workflows  # noqa: SLF001

        def counted_so(c, filters, spare, instead):
            counted = less_others(c, filters, spare, instead)
            if counted is not None:
                others.append(filters)
            return counted

        monkeypatch.setattr(queries, "_less_other_workflows", counted_so)
        every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=200)["entries"]
        for _ in range(300):
            ends = sorted(rng.choice([rng.choice(made), rng.randrange(4 * 3600)]) for _ in range(2))
            if rng.random() < 0.3:
                low, high = f"2026-11-01T{ends[0] // 3600:02d}:00:00.000000Z", f"2026-11-01T{ends[1] // 3600:02d}:59:59.999999Z"
            else:
                low, high = (f"2026-11-01T{_clock(end)}.000000Z" for end in ends)
            bound = f"2026-11-01T{_clock(rng.randrange(4 * 3600))}.000000Z" if rng.random() < 0.5 else None
            statuses = rng.choice([(), ("completed",), ("pending", "running")])
            filters = queries.RunFilters(workflow="w1", tenant="t1", statuses=statuses, starting_at=low, ending_at=high, updated_before=bound)
            assert ledger.query(log, queries.run_status_counts, filters) == _counted(_statuses_of_pair(every, filters)), filters
        # Most ranges counted so, quiet since a time or not.
        assert len(others) > 150 and {f.updated_before is None for f in others} == {True, False}, len(others)

    def test_a_tenants_runs_of_a_workflow_either_of_them_small_are_the_runs_they_name(self, log, monkeypatch):
        # A workflow of most runs and one of few; a tenant of most, tenants of a run or two,
        # one of none: every pair's pages of any status (read a status at a time in the
        # tenant's index where it has the fewer runs, six times over) walked both ways, and
        # its counts within ranges, of statuses, quiet since a time or not (read in the index
        # of the fewer), each against the runs' own.
        rng = random.Random(29)
        made = _runs_over_four_hours(log, rng, 90, "s", lambda i: (
            "many" if i % 10 else ("one", "two", "two")[i // 10 % 3], "big" if i % 9 else "small"
        ))
        ledger.append_input(log, jsonl([triggered("s-other", occurred_at="2026-11-01T02:00:00Z", workflow="other", tenant="one")]))
        every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=200)["entries"]
        pairs = [(w, t) for w in ("big", "small") for t in ("many", "one", "two", "none")]
        for workflow, tenant in pairs:
            for since, until in [(None, None), ("2026-11-01T01:00:00.000000Z", "2026-11-01T02:59:59.999999Z")]:
                filters = queries.RunFilters(workflow=workflow, tenant=tenant, starting_at=since, ending_at=until)
                wanted = [r["id"] for r in every if r["workflow"] == workflow and r["tenant"] == tenant
                          and (since is None or since <= r["created_at"] <= until)]
                assert walk(log, queries.list_runs, filters, key="id", page_size=2) == wanted, filters
        outside = []
        less_outside = queries._less_outside_range  # noqa: SLF001
        monkeypatch.setattr(queries, "_less_outside_range", lambda c, filters: outside.append(filters) or less_outside(c, filters))
        for _ in range(200):
            workflow, tenant = rng.choice(pairs)
            low, high = sorted(f"2026-11-01T{_clock(rng.choice([rng.choice(made), rng.randrange(4 * 3600)]))}.000000Z" for _ in range(2))
            if rng.random() < 0.5:  # most of the runs: from and to any second of the first and last half-hours
                low, high = (f"2026-11-01T{_clock(rng.randrange(a, a + 1800))}.000000Z" for a in (0, 4 * 3600 - 1800))
            bound = f"2026-11-01T{_clock(rng.randrange(4 * 3600))}.000000Z" if rng.random() < 0.5 else None
            statuses = rng.choice([(), ("completed",), ("pending", "running")])
            filters = queries.RunFilters(workflow=workflow, tenant=tenant, statuses=statuses, starting_at=low, ending_at=high, updated_before=bound)
            assert ledger.query(log, queries.run_status_counts, filters) == _counted(_statuses_of_pair(every, filters)), filters
        # Some counted as the pair's every run less those outside the range, quiet or not.
        assert len(outside) > 10 and {f.updated_before is None for f in outside} == {True, False}, len(outside)

    def test_counts_of_runs_quiet_since_a_time_are_the_runs_they_name(self, log):
        # The Stuck chip's counts (pending or running, no news since a time), taken as the
        # runs of their statuses counted ahead less those heard of since (counted by the hours
        # of their last event and creation), under every filter: each is the runs' own.
        # Rehearsals count, as the chips count them.
        rng = random.Random(17)
        events = []
        for i in range(60):
            run, created = f"r{i:02d}", rng.randrange(12)
            heard = created + rng.randrange(12)
            tenant, workflow = rng.choice(["t1", "t2"]), rng.choice(["w1", "w2"])
            source = rng.choice(["api", "api", "rehearsal"])
            events.append(triggered(run, occurred_at=f"2026-11-01T{created:02d}:{i % 60:02d}:00Z", tenant=tenant,
                                    workflow=workflow, trigger={"source": source}))
            fate = rng.randrange(4)
            if fate:
                events.append(ev("run.started", run_id=run, occurred_at=f"2026-11-01T{heard:02d}:00:00Z"))
            if fate == 2:
                events.append(ev("run.completed", run_id=run, occurred_at=f"2026-11-01T{heard:02d}:30:00Z"))
            if fate == 3 and i % 2:
                events.append(step("step.started", run, occurred_at=f"2026-11-01T{heard:02d}:05:00Z"))
                events.append(step("step.failed", run, occurred_at=f"2026-11-01T{heard:02d}:10:00Z", error="bounced"))
        ledger.append_input(log, jsonl(events))
        every = ledger.query(log, queries.list_runs, queries.RunFilters(), page_size=1000)["entries"]
        assert {r["status"] for r in every} >= {"pending", "running", "completed"}
        # On an hour, in its first half, in its second (their runs heard of on both sides).
        for h, into in ((0, "00:00"), (3, "00:00"), (5, "20:00"), (9, "00:00"), (11, "40:00"), (15, "00:00"), (23, "00:00")):
            quiet = f"2026-11-01T{h:02d}:{into}.000000Z"
            for statuses in (("pending", "running"), ("running",), ("completed", "pending"), ()):
                for others in ({}, {"tenant": "t2"}, {"workflow": "w1"}, {"has_errors": True},
                               {"starting_at": "2026-11-01T02:00:00.000000Z", "ending_at": "2026-11-01T07:59:59.999999Z"},
                               # A range with part-hours at either end, and one open at its end.
                               {"starting_at": "2026-11-01T02:30:00.000000Z", "ending_at": "2026-11-01T07:20:00.000000Z"},
                               {"starting_at": "2026-11-01T04:45:00.000000Z"},
                               {"starting_at": "2026-11-01T04:45:00.000000Z", "tenant": "t2"},
                               {"starting_at": "2026-11-01T03:00:00.000000Z", "ending_at": "2026-11-01T09:59:59.999999Z", "tenant": "t1"},
                               {"starting_at": "2026-11-01T02:30:00.000000Z", "ending_at": "2026-11-01T07:20:00.000000Z", "tenant": "t1"}):
                    filters = queries.RunFilters(statuses=statuses, updated_before=quiet, **others)
                    picked = [
                        r["status"] for r in every
                        if (not statuses or r["status"] in statuses) and r["updated_at"] <= quiet
                        and (others.get("starting_at") or "") <= r["created_at"] <= (others.get("ending_at") or "~")
                        and all(r[k] == v for k, v in others.items() if k in ("tenant", "workflow"))
                        and (not others.get("has_errors") or r["error_count"] > 0)
                    ]
                    assert ledger.query(log, queries.run_status_counts, filters) == _counted(picked), filters
        # Every run's by status, rehearsals or not: the counts kept ahead.
        for rehearsals in (True, False):
            kept = [r["status"] for r in every if rehearsals or r["trigger_source"] != "rehearsal"]
            assert ledger.query(log, queries.run_totals, include_rehearsals=rehearsals) == _counted(kept)
        assert ledger.query(log, queries.run_status_counts, queries.RunFilters(statuses=("failed", "running"))) == _counted(
            [r["status"] for r in every if r["status"] in ("failed", "running")])

    def test_a_contacts_counts_under_every_filter_are_its_runs(self, log):
        # The contact's runs are found first, then the other filters applied to them alone.
        events, truth = [], []
        people = ["u1", {"id": "u1", "collection": "c"}, "u2"]
        for i in range(36):
            run, who, at = f"r{i:02d}", people[i % 3], f"2026-11-01T{i % 12:02d}:00:00Z"
            tenant, workflow, fate = ("t1", "t2")[i % 2], ("w1", "w2", "w3")[i // 12], i % 4
            events.append(triggered(run, recipient=who, tenant=tenant, workflow=workflow, occurred_at=at))
            if fate:
                events.append(ev("run.started", run_id=run, occurred_at=at))
            if fate == 2:
                events.append(ev("run.completed", run_id=run, occurred_at=at))
            if fate == 3:
                events.append(ev("run.failed", run_id=run, occurred_at=at, error="gave up"))
            label = who if isinstance(who, str) else "c/u1"
            stored = at.replace("Z", ".000000Z")
            truth.append((label, tenant, workflow, stored, ("pending", "running", "completed", "failed")[fate]))
        ledger.append_input(log, jsonl(events))
        stamp = "2026-11-01T05:00:00.000000Z"
        cases = [
            (queries.RunFilters(), lambda t: True),
            (queries.RunFilters(statuses=("pending", "running"), updated_before=stamp), lambda t: t[4] in ("pending", "running") and t[3] <= stamp),
            (queries.RunFilters(tenant="t1"), lambda t: t[1] == "t1"),
            (queries.RunFilters(workflow="w2"), lambda t: t[2] == "w2"),
            (queries.RunFilters(starting_at=stamp), lambda t: t[3] >= stamp),
            (queries.RunFilters(statuses=("failed",), tenant="t2"), lambda t: t[4] == "failed" and t[1] == "t2"),
        ]
        for contact, theirs in (("u1", {"u1", "c/u1"}), ("c/u1", {"c/u1"}), ("u2", {"u2"}), ("u3", set())):
            for filters, keep in cases:
                picked = [t[4] for t in truth if t[0] in theirs and keep(t)]
                got = ledger.query(log, queries.run_status_counts_by_contact, filters, contact)
                assert got == _counted(picked), (contact, filters)

    @pytest.mark.parametrize("version", [4, 5, 6, 7, 8, 9])
    def test_a_runs_view_of_an_earlier_version_is_upgraded_in_place(self, log, store_url, version):
        # Version 4 had no counts by hour or tenant, and the stuck runs' index narrower;
        # version 5 no counts by status; version 6 none by the hour of the last event;
        # version 7 those not by the hour of creation too, nor a tenant's, nor a workflow's by
        # hour of creation; version 8 no workflow's by the hour of the last event nor a
        # tenant's runs of a workflow, and the index of last events without the workflow;
        # version 9 no runs set apart as late (three here, triggered a day after their
        # creation) nor the other runs' hours: the upgrade counts them from the runs rows (from
        # run_counts) at the next open, where a refold would read the whole log again (the
        # view at position 0 meanwhile).
        # (And one created six hours before the newest full hour: in order, by the rule's edge.)
        late = [triggered(f"late{i}", tenant="t1", occurred_at=f"2026-11-01T0{i}:30:00Z") for i in range(3)]
        late.append(triggered("edge", occurred_at="2026-11-02T04:59:59.999999Z"))
        ledger.append_input(log, jsonl([triggered(f"r{i}", tenant=f"t{i % 2}", occurred_at=at, trigger={"source": ("api", "rehearsal")[i % 5 == 0]})
                                        for i, at in enumerate(_creation_times())]
                                       + [triggered(f"next{i}", occurred_at=f"2026-11-02T10:{i:02d}:00Z") for i in range(20)]
                                       + late + [ev("run.started", run_id=f"r{i}") for i in range(0, 30, 3)]))
        ledger.catch_up(log)
        b = log.backend
        with b.transaction(write=False) as c:
            before = _counters(c)
            position = b.get_position(c, "runs")
            c.execute("SELECT COUNT(*) FROM run_late_seqs")
            assert c.fetchone()[0] == 3
        with b.transaction(write=True) as c:
            c.execute('DROP TABLE "run_late_seqs"')
            c.execute('DROP TABLE "run_hour_seqs_on_time"')
            b.set_view_version(c, "runs", version)
        if version < 9:
            with b.transaction(write=True) as c:
                c.execute('DROP TABLE "workflow_run_last_hours"')
                c.execute('DROP TABLE "workflow_tenant_run_counts"')
                c.execute('DROP INDEX "runs_by_status_updated_filtered"')
                if version > 4:
                    c.execute("CREATE INDEX runs_by_status_updated_created ON runs (status, updated_at, seq, created_at, tenant)")
                if version < 8:
                    c.execute('DROP TABLE "run_last_hours"')
                    c.execute('DROP TABLE "tenant_run_last_hours"')
                    c.execute('DROP TABLE "workflow_run_hours"')
                if version == 7:
                    # As version 7 left it: by status and hour of the last event alone.
                    c.execute(b.ddl("CREATE TABLE run_last_hours (status TEXT NOT NULL, hour TEXT NOT NULL, n INTEGER NOT NULL, "
                                    "PRIMARY KEY (status, hour)) WITHOUT ROWID"))
                    c.execute("INSERT INTO run_last_hours (status, hour, n) SELECT status, substr(updated_at, 1, 13), COUNT(*) "
                              "FROM runs GROUP BY status, substr(updated_at, 1, 13)")
                if version < 6:
                    c.execute('DROP TABLE "run_status_totals"')
                    c.execute('DROP TABLE "run_hour_seqs"')
                if version == 4:
                    c.execute('DROP TABLE "run_hours"')
                    c.execute('DROP TABLE "tenant_run_counts"')
                    c.execute('DROP TABLE "tenant_run_hours"')
                    c.execute("CREATE INDEX runs_by_status_updated ON runs (status, updated_at, seq)")
                    c.execute('DROP INDEX "runs_by_created_status_seq_tenant"')
                    c.execute("CREATE INDEX runs_by_created_status_seq ON runs (created_at, status, seq)")
                b.set_view_version(c, "runs", version)
        again = open_log(store_url)
        try:
            said = ledger.views_lag(again).another_version
            assert "upgrades them in place" in said and "folds them from the log" not in said, said
            ledger.ensure_views(again)
            with again.backend.transaction(write=False) as c:
                assert again.backend.get_position(c, "runs") == position
                assert _counters(c) == before and all(before)
                indexes = again.backend.table_names(c)
                assert Projector.stored_versions(c)["runs"] == str(RunsView.version) == "10"
            assert "runs_by_status_updated_filtered" in indexes
            assert "runs_by_status_updated_created" not in indexes and "runs_by_status_updated" not in indexes
            assert "runs_by_created_status_seq_tenant" in indexes and "runs_by_created_status_seq" not in indexes
            ledger.append_input(again, jsonl([triggered("late", tenant="t1", occurred_at="2026-11-01T05:10:00Z")]))
            filters = queries.RunFilters(starting_at="2026-11-01T05:00:00.000000Z", ending_at="2026-11-01T05:59:59.999999Z")
            hour = sum(1 for at in _creation_times() if at.startswith("2026-11-01T05")) + 1
            assert ledger.query(again, queries.run_status_counts, filters)["pending"] == hour
        finally:
            again.close()

    def test_workflows_page_by_key_and_match_in_any_case(self, log):
        keys = ["Été", "été-2", "b", "B-2", "a b", "Straße", "strasse", "z", "ω", "Ω"]
        ledger.append_input(log, jsonl([triggered(f"r{i}", workflow=k) for i, k in enumerate(keys)]))
        whole = ledger.query(log, queries.list_workflows)
        assert sorted(w["key"] for w in whole) == sorted(keys)
        for match, page_size in ((None, 3), ("ÉTÉ", 1), ("STRASSE", 1), ("ω", 5)):
            seen, after = [], None
            while True:
                page = ledger.query(log, queries.workflows_page, match=match, after=after, page_size=page_size)
                seen += page["entries"]
                after = page["next"]
                if after is None:
                    break
            assert seen == [w for w in whole if not match or match.casefold() in w["key"].casefold()]
        assert len(seen) == 2 and ledger.query(log, queries.workflow_count) == len(keys)

    def test_counters_that_reach_zero_leave_no_row(self, log):
        # 1,200 workflows' runs leave pending in one page: 1,200 counter rows reach zero at
        # once (PostgreSQL deletes them by chunks of 1,000 keys), and none of the rest.
        n = 1200
        ledger.append_input(log, jsonl([triggered(f"r{i}", workflow=f"wf-{i:04d}") for i in range(n)]))
        ledger.catch_up(log)
        ledger.append_input(log, jsonl([ev("run.started", run_id=f"r{i}") for i in range(n)]
                                       + [ev("run.completed", run_id=f"r{i}") for i in range(0, n, 2)]))
        ledger.catch_up(log)
        with log.backend.transaction(write=False) as c:
            c.execute("SELECT status, COUNT(*), MIN(n), MAX(n) FROM run_counts GROUP BY status ORDER BY status")
            assert [tuple(r) for r in c.fetchall()] == [("completed", n // 2, 1, 1), ("running", n // 2, 1, 1)]
        assert ledger.query(log, queries.counts)["by_workflow"]["wf-0001"] == {
            "total": 1, "pending": 0, "running": 1, "paused": 0, "completed": 0, "failed": 0, "cancelled": 0,
        }

    def test_concurrent_projectors_apply_each_event_once(self, log, store_url):
        ledger.append_input(log, jsonl([e for i in range(30) for e in _history(f"r{i}")]))
        errors = []

        def work():
            other = open_log(store_url)
            try:
                Projector(other.backend).catch_up(page_size=7)
            except Exception as e:  # noqa: BLE001  # reported below
                errors.append(e)
            finally:
                other.close()

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        counts = ledger.query(log, queries.counts, fresh=False)
        assert (counts["total"], counts["failed"]) == (30, 30)
        email = ledger.query(log, queries.workflow_details, "welcome", fresh=False)["channels"]["email"]
        assert (email["total_contacts"], email["opened"]) == (30, 30)


class RebuildIntoContract:
    """`rebuild --into`: any backend's log folded into a local SQLite file of views."""

    def test_rebuild_into_a_sqlite_file_gives_the_same_answers(self, store_url, tmp_path):
        from click.testing import CliRunner

        from flowledger.cli import cli

        log = open_log(store_url)
        try:
            ledger.append_input(log, jsonl(_history("r1") + _history("r2")))
            expected = ledger.query(log, queries.workflow_details, "welcome")
        finally:
            log.close()
        into = str(tmp_path / "analysis.db")
        runner = CliRunner()
        result = runner.invoke(cli, ["--store", store_url, "rebuild", "--into", into])
        assert result.exit_code == 0, result.output
        assert orjson.loads(result.stdout)["events"] == 16
        shown = runner.invoke(cli, ["--store", into, "workflows", "show", "welcome", "--json", "--no-catch-up"])
        assert orjson.loads(shown.stdout) == expected


    def test_rebuild_into_a_store_with_a_log_of_its_own_is_refused(self, store_url, tmp_path):
        from click.testing import CliRunner

        from flowledger.cli import cli

        log = open_log(store_url)
        try:
            ledger.append_input(log, jsonl(_history("r1") + _history("r2")))
        finally:
            log.close()
        # Its own log and views, which --into would overwrite with another log's.
        own = str(tmp_path / "own.db")
        target = open_log(own)
        try:
            ledger.append_input(target, jsonl([triggered("mine")]))
            ledger.catch_up(target)
        finally:
            target.close()
        runner = CliRunner()
        refused = runner.invoke(cli, ["--store", store_url, "rebuild", "--into", own])
        assert refused.exit_code == 1, refused.output
        assert "holds a log of its own (1 event): --into writes an analyst's copy" in refused.output
        assert "Traceback" not in refused.output
        shown = runner.invoke(cli, ["--store", own, "runs", "list", "--json"])
        assert [r["id"] for r in orjson.loads(shown.stdout)["entries"]] == ["mine"]
        # A views-only file --into made before is taken again.
        into = str(tmp_path / "analysis.db")
        for _ in range(2):
            result = runner.invoke(cli, ["--store", store_url, "rebuild", "--into", into])
            assert result.exit_code == 0, result.output


class ProviderContract:
    """Provider events matched by the provider's message id, on any backend."""

    def test_an_unmatched_event_waits_then_joins_its_message(self, store_url):
        from tests.test_webhooks import run_with_messages, sendgrid_events

        log = open_log(store_url)
        try:
            body = orjson.dumps(sendgrid_events(with_custom_args=False))
            result, _ = ledger.append_export(log, "sendgrid", body)
            assert (result.appended, result.held) == (0, 4)
            assert len(ledger.unmatched(log)) == 4
            result, _ = ledger.append_input(log, jsonl(run_with_messages()))
            assert (result.appended, result.released) == (14, 4) and ledger.unmatched(log) == []
            assert ledger.query(log, queries.show_delivery, "m-email")["status"] == "clicked"
            again, _ = ledger.append_export(log, "sendgrid", body)
            assert (again.appended, again.duplicates) == (0, 4)
        finally:
            log.close()

    def test_a_repeated_provider_fact_is_a_duplicate_whatever_its_receipt_time(self, store_url):
        # Without RawDlrDoneDate a Twilio status's time is when it was received, so each
        # redelivery's body differs; the provider's key is its identity, the first stands.
        from flowledger.providers import twilio
        from tests.test_webhooks import run_with_messages

        def callback(sid, received_at, **extra):
            form = {"MessageSid": sid, "MessageStatus": "delivered", "To": "+15550001", **extra}
            return twilio.translate({**form, "_received_at": received_at})

        t0 = 1793523600.0
        log = open_log(store_url)
        try:
            ledger.append_input(log, jsonl(run_with_messages()))
            first, _ = ledger.append_provider_facts(log, [callback("SM123", t0)])
            assert (first.appended, first.duplicates) == (1, 0)
            again, _ = ledger.append_provider_facts(log, [callback("SM123", t0 + 1), callback("SM123", t0 + 2)])
            assert (again.appended, again.duplicates) == (0, 2)
            with log.backend.transaction(write=False) as c:
                states = [orjson.loads(s) for s in log.backend.stream_states(c, "message:m-sms")]
            assert [s["occurred_at"] for s in states if s["type"] == "message.delivered"] == ["2026-11-01T09:00:00.000000Z"]
            # Held (no message known by SM9 yet): a redelivery is held once.
            held, _ = ledger.append_provider_facts(log, [callback("SM9", t0), callback("SM9", t0 + 1)])
            assert (held.held, held.duplicates) == (1, 1)
            held, _ = ledger.append_provider_facts(log, [callback("SM9", t0 + 2)])
            assert (held.held, held.duplicates) == (0, 1)
            ledger.append_input(log, jsonl([ev("message.queued", message_id="m9", channel="sms", recipient="u9")]))
            named, _ = ledger.append_provider_facts(log, [callback("SM9", t0 + 3, flowledger_message_id="m9")])
            assert (named.appended, named.duplicates) == (0, 1)
            # Stored once through flowledger's own id: not held again when it comes without it.
            ledger.append_input(log, jsonl([ev("message.queued", message_id="m8", channel="sms", recipient="u8")]))
            stored, _ = ledger.append_provider_facts(log, [callback("SM8", t0, flowledger_message_id="m8")])
            assert stored.appended == 1
            later, _ = ledger.append_provider_facts(log, [callback("SM8", t0 + 5)])
            assert (later.appended, later.held, later.duplicates) == (0, 0, 1)
            assert [u["event_id"] for u in ledger.unmatched(log)] == ["twilio:SM9:delivered"]
            # The plain append path keeps its rule: another body under a stored id is a conflict.
            resent = next(s for s in states if s["type"] == "message.delivered")
            resent.pop("recorded_at")
            with pytest.raises(InvalidInput) as info:
                ledger.append_input(log, jsonl([{**resent, "occurred_at": "2026-11-02T00:00:00Z"}]))
            assert "different body" in info.value.problems[0].message
        finally:
            log.close()

    def test_a_twilio_callback_posted_twice_is_200_both_times(self, store_url):
        from urllib.parse import urlencode

        from fastapi.testclient import TestClient

        from flowledger.api.app import create_app
        from flowledger.providers import twilio
        from tests.test_webhooks import SECRETS, run_with_messages

        log = open_log(store_url)
        try:
            ledger.append_input(log, jsonl(run_with_messages()))
        finally:
            log.close()
        form = {"MessageSid": "SM123", "MessageStatus": "delivered", "To": "+15550001"}
        headers = {
            "X-Twilio-Signature": twilio.signature("http://testserver/v1/webhooks/twilio", form, "tw-token"),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        with TestClient(create_app(store_url, provider_secrets=SECRETS)) as api:
            first = api.post("/v1/webhooks/twilio", content=urlencode(form), headers=headers)
            assert first.status_code == 200 and first.json()["appended"] == 1
            again = api.post("/v1/webhooks/twilio", content=urlencode(form), headers=headers)
            assert again.status_code == 200, again.text
            assert (again.json()["appended"], again.json()["duplicates"]) == (0, 1)

    def test_a_mailgun_token_vouches_for_one_body_on_every_server_of_a_store(self, store_url):
        # Mailgun signs timestamp + token, not the events: a token one server took must carry
        # no other events to another server of the store, nor to the same after a restart.
        import time

        from fastapi.testclient import TestClient

        from flowledger.api.app import create_app
        from flowledger.providers import base
        from tests.test_providers_review import MAILGUN, SECRETS, mailgun_body, mailgun_post, stored

        token = "s" * 49 + "1"
        delivered = mailgun_body({**MAILGUN, "event": "delivered", "id": "mg-40", "timestamp": time.time()}, token=token)
        forged = mailgun_body({**MAILGUN, "event": "complained", "id": "mg-41", "timestamp": time.time()}, token=token)
        with TestClient(create_app(store_url, provider_secrets=SECRETS)) as one, TestClient(create_app(store_url, provider_secrets=SECRETS)) as two:
            assert mailgun_post(one, delivered).json()["appended"] == 1
            refused = mailgun_post(two, forged)
            assert refused.status_code == 401 and "another body" in refused.json()["detail"], refused.text
            assert mailgun_post(two, delivered).json()["duplicates"] == 1  # a resend, wherever it lands
        # The store remembered it, not this process (whose memory both servers would share here).
        assert "mailgun:" + token not in base.PROCESS_TOKENS.seen
        with TestClient(create_app(store_url, provider_secrets=SECRETS)) as restarted:
            assert mailgun_post(restarted, forged).status_code == 401
            assert mailgun_post(restarted, delivered).json()["duplicates"] == 1
        assert [e["id"] for e in stored(store_url, "m-email")] == ["mailgun:mg-40"]

    def test_the_inbox_remembers_a_tokens_first_body_for_its_time(self, store_url):
        from flowledger.store.inbox import open_inbox

        log = open_log(store_url)
        a, b = open_inbox(log.backend), open_inbox(log.backend)  # two servers' inboxes
        assert a is not None and b is not None
        try:
            assert a.first_body("mailgun:t1", b"one", 1000.0, 600) == b"one"
            assert b.first_body("mailgun:t1", b"two", 1500.0, 600) == b"one"
            assert a.first_body("mailgun:t1", b"five", 1600.0, 600) == b"one"  # its last second
            assert b.first_body("mailgun:t2", b"two", 1500.0, 600) == b"two"
            # Past its time a token is forgotten by the next token's write (its timestamp is stale).
            assert a.first_body("mailgun:t3", b"three", 1600.5, 600) == b"three"
            with a._transaction(write=False) as c:
                c.execute("SELECT key, forget_at FROM webhook_tokens ORDER BY key")
                assert [tuple(row) for row in c.fetchall()] == [("mailgun:t2", 2100.0), ("mailgun:t3", 2200.5)]
            assert b.first_body("mailgun:t1", b"four", 1601.0, 600) == b"four"
        finally:
            a.close()
            b.close()
            log.close()

    def test_servers_remembering_one_token_at_once_all_see_the_first_body(self, store_url):
        from flowledger.store.inbox import open_inbox

        log = open_log(store_url)
        inboxes = [open_inbox(log.backend) for _ in range(6)]
        seen: list[bytes | None] = [None] * len(inboxes)
        start = threading.Barrier(len(inboxes))

        def remember(i: int) -> None:
            start.wait()
            seen[i] = inboxes[i].first_body("mailgun:race", bytes([i]), 1000.0, 600)

        threads = [threading.Thread(target=remember, args=(i,)) for i in range(len(inboxes))]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(set(seen)) == 1 and seen[0] in [bytes([i]) for i in range(len(inboxes))], seen
        finally:
            for inbox in inboxes:
                inbox.close()
            log.close()
