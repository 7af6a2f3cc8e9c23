"""The figures of `workflows list/show`, `stats` and `counts` (and their API and CLI twins)
against an oracle computed straight from the event list.

The oracle below is written from README's definitions (the paragraphs on `workflows list /
workflows show`, `stats`, `counts`, deliveries' statuses and engagement), not from the
views or the queries: a disagreement is either a bug in the code or a place README is vague.
Where README leaves a choice open the oracle says which reading it takes, in a comment.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger import ledger, queries
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, _schema_url
from tests.histories import fresh_log, interleave, jsonl, make, run_histories

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")
STATES = ("completed", "failed", "idle", "running", "stopped")
CHANNEL_OF = {"send_email": "email", "send_sms": "sms", "send_whatsapp": "whatsapp", "send_push": "push"}
FINISHED = ("completed", "failed", "cancelled")
WORKFLOWS = ("counts", "a/b")  # README: keys may hold "/", and .../details reaches "counts"


# ---------------------------------------------------------------- generated histories


def _at(text: str) -> datetime:
    """A time as given in an event, or as stored (both RFC 3339 with an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


ZONES = [timezone.utc, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]


def _spelt(when: datetime, zone: timezone) -> str:
    """A time as a sender may spell it: in UTC or at another offset (README: stored in UTC)."""
    return when.astimezone(zone).isoformat().replace("+00:00", "Z")


def _shift(events: list[dict[str, Any]], days: int, zones: list[timezone]) -> list[dict[str, Any]]:
    """The events of one run moved ``days`` later (runs over several days), each spelt at
    one of ``zones``' offsets in turn."""
    out = []
    for k, e in enumerate(events):
        when = _at(e["occurred_at"]) + timedelta(days=days)
        out.append({**e, "occurred_at": _spelt(when, zones[k % len(zones)])})
    return out


PROVIDER_KINDS = ["sent", "delivered", "read", "opened", "clicked", "bounced", "failed", "complained", "unsubscribed"]


@st.composite
def messages(draw, message_id: str, run_ids: list[str]):
    """One message's events: usually queued, then provider facts at distinct seconds (ties
    between stages are left out: README does not say which stage a bounce ties with)."""
    channel = draw(st.sampled_from(["email", "email", "sms", "whatsapp", "push"]))
    run_id = draw(st.sampled_from([None, "ghost", *run_ids]))
    kinds = draw(st.lists(st.sampled_from(PROVIDER_KINDS + ["delivered", "opened", "bounced"]), max_size=6))
    seconds = draw(st.lists(st.integers(0, 40), min_size=len(kinds) + 1, max_size=len(kinds) + 1, unique=True))
    base = datetime(2026, 11, 1, 10, 0, 0, tzinfo=timezone.utc) + timedelta(days=draw(st.integers(0, 2)))
    zone = draw(st.sampled_from(ZONES))
    stamp = lambda k: _spelt(base + timedelta(seconds=seconds[k]), zone)  # noqa: E731
    events = []
    if draw(st.integers(0, 9)):  # now and then the queued record never comes
        queued = {"id": f"{message_id}-q", "type": "message.queued", "occurred_at": stamp(0), "message_id": message_id,
                  "channel": channel, "recipient": "u1"}
        if run_id is not None:
            queued.update(run_id=run_id, step=channel)
        events.append(queued)
    for i, kind in enumerate(kinds):
        e: dict[str, Any] = {"id": f"{message_id}-{i}", "type": "message." + kind, "occurred_at": stamp(i + 1), "message_id": message_id}
        if kind == "clicked":
            e["url"] = draw(st.sampled_from(["https://a.test", "https://b.test"]))
        if kind == "failed":
            e["error"] = "provider error"
        if kind in ("bounced", "failed") and draw(st.booleans()):
            e["temporary"] = True
        if kind in ("opened", "clicked") and draw(st.booleans()):
            e["machine"] = True
        if draw(st.integers(0, 2)) == 0:
            # Free messages (0.0) and prices below a millionth or between two among them
            # (none half-way between two: README says to the nearest, not which way a tie goes).
            amount = draw(st.sampled_from([0.0079, 0.01, 0.05, 0.0, 0.0000004, 0.0000126]))
            e["cost"] = {"amount": amount, "currency": draw(st.sampled_from(["USD", "USD", "EUR"]))}
        events.append(e)
    return events


@st.composite
def histories(draw):
    """Runs of two workflows (rehearsals, retries, pauses, cancels, late step results among
    them) over a few days, and messages of theirs, of runs never triggered and of none:
    (events in log order, each run's final status)."""
    n = draw(st.integers(1, 5))
    runs, statuses = [], {}
    for i in range(n):
        # Half of them busy: steps and retried steps far likelier than the run's end.
        events, status, _ = draw(run_histories(run_id=f"r{i}", workflows=WORKFLOWS, busy=draw(st.booleans())))
        runs.append(_shift(events, draw(st.integers(0, 3)), draw(st.lists(st.sampled_from(ZONES), min_size=1, max_size=3))))
        statuses[f"r{i}"] = status
    msgs = [draw(messages(f"m{i}", list(statuses))) for i in range(draw(st.integers(0, 6)))]
    # Messages may reach the log before their run's trigger, or their own queued record.
    return interleave(draw, [*runs, *msgs]), statuses


# ---------------------------------------------------------------- the oracle


def _rate(n: float, d: float) -> float | None:
    """README: percentages rounded to 2 places; a zero denominator gives null."""
    return None if d == 0 else round(100.0 * n / d, 2)


MILLIONTH = Decimal("0.000001")
LADDER = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "opened": 3, "clicked": 4}
REACHED = {"delivered", "read", "opened", "clicked"}  # proof the message reached the recipient


def delivery(facts: list[dict[str, Any]]) -> dict[str, Any]:
    """What README says of one message, from its facts (no two at one time here)."""
    facts = sorted(facts, key=lambda e: (_at(e["occurred_at"]), e["id"]))
    kinds = [e["type"].removeprefix("message.") for e in facts]
    status = "queued"
    for e, kind in zip(facts, kinds):
        if kind in ("queued", "complained", "unsubscribed"):
            continue  # reactions change no status
        if kind in ("bounced", "failed"):
            if not e.get("temporary"):  # deferrals and soft bounces never count as failed
                status = kind  # after delivery: a real downgrade
        elif status in ("bounced", "failed"):
            # README: a soft bounce followed by delivered is delivered, and an open or a read
            # implies delivery. Reading taken (README is silent): a later proof of reach also
            # undoes a hard failure, a bare `sent` does not.
            if kind in REACHED:
                status = kind
        elif LADDER[kind] > LADDER[status]:
            status = kind  # a late sent never undoes delivered
    failed_now = status in ("bounced", "failed")
    delivered_times = [_at(e["occurred_at"]) for e, k in zip(facts, kinds) if k == "delivered"]
    delivered_at = min(delivered_times) if delivered_times else None

    def by_person(e: dict[str, Any]) -> bool:
        """Whether an open or click was a person's."""
        # Machine opens: flagged, or within 5 seconds of (after) the delivery.
        if e.get("machine"):
            return False
        return delivered_at is None or not (0 <= (_at(e["occurred_at"]) - delivered_at).total_seconds() < 5)

    opens = [e for e, k in zip(facts, kinds) if k == "opened"]
    clicks = [e for e, k in zip(facts, kinds) if k == "clicked"]
    priced = [e for e in facts if e.get("cost") is not None]
    latest = priced[-1]["cost"] if priced else None  # the latest price given
    queued = next((e for e in facts if e["type"] == "message.queued"), None)
    return {
        "queued": queued is not None,
        "channel": queued["channel"] if queued else None,
        "run_id": queued.get("run_id") if queued else None,
        "status": status,
        "ever_sent": bool({"sent", "delivered", "read", "opened", "clicked", "bounced"} & set(kinds)),
        "succeeded": status in ("sent", "delivered", "read", "opened", "clicked"),
        "failed": failed_now,
        "bounced": status == "bounced",
        "delivered": status in REACHED,
        # Engagement counts only for messages not failed now (README: one that bounced after
        # it was opened counts in neither); a click is an open.
        "read": not failed_now and "read" in kinds,
        "opened": not failed_now and bool(opens or clicks),
        "clicked": not failed_now and bool(clicks),
        "opens_total": len(opens) or (1 if clicks else 0),
        "clicks_total": len(clicks),
        "human_opened": not failed_now and any(by_person(e) for e in opens + clicks),
        "complained": "complained" in kinds,
        "unsubscribed": "unsubscribed" in kinds,
        # README: each price counts to the nearest millionth; its currency counts whatever its amount.
        "cost": (Decimal(str(latest["amount"])).quantize(MILLIONTH), latest["currency"]) if latest else None,
    }


def oracle(events: list[dict[str, Any]], final: dict[str, str]) -> dict[str, Any]:
    """Every documented figure, from the events in log order and each run's final status."""
    runs: dict[str, dict[str, Any]] = {}
    by_message: dict[str, list[dict[str, Any]]] = defaultdict(list)
    attempts: list[dict[str, Any]] = []  # in log order of their start
    by_key: dict[tuple[str, str, int], dict[str, Any]] = {}
    open_by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    latest_type: dict[tuple[str, str], str] = {}
    for e in events:
        kind = e["type"]
        if kind.startswith("message."):
            by_message[e["message_id"]].append(e)
            continue
        rid = e["run_id"]
        if kind == "run.triggered":
            runs[rid] = {"workflow": e["workflow"], "rehearsal": e["trigger"]["source"] == "rehearsal",
                         "created": e["occurred_at"], "started": [], "ended": None, "steps": [], "paused": False}
            continue
        run = runs[rid]
        wf = run["workflow"]
        if kind == "step.started":
            names = run["steps"]
            # An edge: the previous distinct step of the run (repeats of one step collapse).
            blocks = [s for k, s in enumerate(names) if k == 0 or names[k - 1] != s]
            prev = None
            if blocks and blocks[-1] == e["step"]:
                prev = blocks[-2] if len(blocks) > 1 else None
            elif blocks:
                prev = blocks[-1]
            names.append(e["step"])
            a = {"workflow": wf, "step": e["step"], "attempt": e["attempt"], "prev": prev, "state": "idle" if run["paused"] else "running"}
            attempts.append(a)
            by_key[(rid, e["step"], e["attempt"])] = a
            open_by_run[rid].append(a)
            latest_type[(wf, e["step"])] = e["step_type"]  # latest start in log order
        elif kind in ("step.succeeded", "step.failed"):
            # A stopped attempt (its run ended first) that finishes after a retry: README is
            # silent; reading taken: the finish is what became of it.
            a = by_key[(rid, e["step"], e["attempt"])]
            a["state"] = "completed" if kind == "step.succeeded" else "failed"
            if a in open_by_run[rid]:
                open_by_run[rid].remove(a)
        elif kind == "run.started":
            run["started"].append(e["occurred_at"])
            run["paused"] = False
            for a in open_by_run[rid]:
                a["state"] = "running"
        elif kind == "run.paused":
            run["paused"] = True
            for a in open_by_run[rid]:
                a["state"] = "idle"
        elif kind == "run.resumed":
            run["paused"] = False
            for a in open_by_run[rid]:
                a["state"] = "running"
        if kind in ("run.completed", "run.failed", "run.cancelled"):
            run["ended"] = e["occurred_at"]
            run["paused"] = False
            for a in open_by_run[rid]:
                a["state"] = "stopped"  # its run ended first
            open_by_run[rid] = []
    for rid, run in runs.items():
        run["status"] = final[rid]

    def by_status(include_rehearsals: bool, workflow: str | None = None) -> dict[str, dict[str, int]]:
        """Runs by workflow and status."""
        out: dict[str, dict[str, int]] = {}
        for run in runs.values():
            if (run["rehearsal"] and not include_rehearsals) or (workflow and run["workflow"] != workflow):
                continue
            out.setdefault(run["workflow"], dict.fromkeys(STATUSES, 0))[run["status"]] += 1
        return out

    def counts(include_rehearsals: bool) -> dict[str, Any]:
        """The workspace counts."""
        per = by_status(include_rehearsals)
        total = {s: sum(c[s] for c in per.values()) for s in STATUSES}
        return {"total": sum(total.values()), **total,
                "by_workflow": {w: {"total": sum(c.values()), **c} for w, c in sorted(per.items())}}

    deliveries = {mid: delivery(facts) for mid, facts in by_message.items()}
    workflows = sorted({r["workflow"] for r in runs.values()})
    details, stats, listed = {}, {}, []
    for wf in workflows:
        statuses = by_status(True).get(wf, dict.fromkeys(STATUSES, 0))
        mine = [r for r in runs.values() if r["workflow"] == wf]
        total_runs = sum(statuses.values())
        unfinished = sum(statuses[s] for s in ("pending", "running", "paused"))
        status = "running" if unfinished else "completed"
        created = min(_at(r["created"]) for r in mine)
        started = min((_at(t) for r in mine for t in r["started"]), default=None)
        completed = max(_at(r["ended"]) for r in mine) if status == "completed" else None
        listed.append({"key": wf, "status": status, "runs": {"total": total_runs, **statuses},
                       "first_run_at": created, "last_run_at": max(_at(r["created"]) for r in mine)})
        steps = {s: t for (w, s), t in latest_type.items() if w == wf}
        channels: dict[str, Any] = {}
        wf_messages = [d for d in deliveries.values() if d["queued"] and d["run_id"] in runs and runs[d["run_id"]]["workflow"] == wf]
        all_costs: dict[str, Decimal] = defaultdict(Decimal)
        totals = Counter()
        for ch in sorted({d["channel"] for d in wf_messages} | {CHANNEL_OF[t] for t in steps.values() if t in CHANNEL_OF}):
            ms = [d for d in wf_messages if d["channel"] == ch]
            n = lambda key: sum(1 for d in ms if d[key])  # noqa: E731
            entry: dict[str, Any] = {
                "execution_count": sum(1 for t in steps.values() if CHANNEL_OF.get(t) == ch),
                "total_contacts": len(ms),
                "sent": n("ever_sent"),
                "failed": n("failed"),
                "success_rate": _rate(n("succeeded"), len(ms)),
            }
            costs: dict[str, Decimal] = defaultdict(Decimal)
            for d in ms:
                if d["cost"] is not None:
                    costs[d["cost"][1]] += d["cost"][0]
                    all_costs[d["cost"][1]] += d["cost"][0]
            if ch in ("sms", "whatsapp"):
                entry["estimated_cost"] = float(sum(costs.values())) if len(costs) <= 1 else None
                if len(costs) > 1:
                    entry["costs_by_currency"] = {c: float(v) for c, v in sorted(costs.items())}
                entry["unpriced"] = sum(1 for d in ms if d["ever_sent"] and d["cost"] is None)
            if ch == "sms":
                entry.update(delivered=n("delivered"), delivery_rate=_rate(n("delivered"), n("ever_sent")))
            if ch == "whatsapp":
                entry.update(delivered=n("delivered"), read=n("read"), delivery_rate=_rate(n("delivered"), n("ever_sent")),
                             read_rate=_rate(n("read"), n("delivered")))
            if ch == "email":
                entry.update(
                    delivered=n("delivered"), bounced=n("bounced"),
                    delivery_rate=_rate(n("delivered"), n("ever_sent")), bounce_rate=_rate(n("bounced"), n("ever_sent")),
                    opened=n("opened"), opens_total=sum(d["opens_total"] for d in ms if d["opened"]),
                    clicked=n("clicked"), clicks_total=sum(d["clicks_total"] for d in ms if d["clicked"]),
                    open_rate=_rate(n("opened"), n("delivered")), click_rate=_rate(n("clicked"), n("delivered")),
                    human_opened=n("human_opened"), human_open_rate=_rate(n("human_opened"), n("delivered")),
                    complained=n("complained"), unsubscribed=n("unsubscribed"),
                )
            channels[ch] = entry
            totals.update(contacts=len(ms), sent=n("ever_sent"), failed=n("failed"), succeeded=n("succeeded"))
        processed = sum(statuses[s] for s in FINISHED)
        details[wf] = {
            "key": wf,
            "status": status,
            "created_at": created,
            "started_at": started,
            "completed_at": completed,
            "duration_seconds": (completed - started).total_seconds() if completed and started else None,
            "workflow_executions_count": len(steps),
            "runs": {"total": total_runs, **statuses},
            "channels": channels,
            "totals": {
                "total_contacts": totals["contacts"],
                "total_sent": totals["sent"],
                "total_failed": totals["failed"],
                "overall_success_rate": _rate(totals["succeeded"], totals["contacts"]),
                # Reading taken: prices in several currencies add up to no one total.
                "total_cost": float(sum(all_costs.values())) if len(all_costs) == 1 else (None if all_costs else 0.0),
                "currency": next(iter(all_costs)) if len(all_costs) == 1 else ("mixed" if all_costs else None),
                **({"costs_by_currency": {c: float(v) for c, v in all_costs.items()}} if len(all_costs) > 1 else {}),
            },
            "progress": {"processed": processed, "total": total_runs, "percentage": _rate(processed, total_runs)},
        }
        nodes = {s: dict.fromkeys(STATES, 0) for s in steps}
        edges: dict[tuple[str, str], dict[str, int]] = {}
        for a in attempts:
            if a["workflow"] != wf:
                continue
            nodes[a["step"]][a["state"]] += 1
            if a["prev"] is not None:
                edges.setdefault((a["prev"], a["step"]), dict.fromkeys(STATES, 0))[a["state"]] += 1
        stats[wf] = {
            "workflow": wf,
            "total": {s: sum(c[s] for c in nodes.values()) for s in STATES},
            "nodes": [{"step": s, "step_type": steps[s], "channel": CHANNEL_OF.get(steps[s]), **c} for s, c in sorted(nodes.items())],
            "edges": [{"from": a, "to": b, **c} for (a, b), c in sorted(edges.items())],
        }
    over_time = {wf: Counter((_at(r["created"]).astimezone(timezone.utc).date().isoformat(), r["status"]) for r in runs.values() if r["workflow"] == wf)
                 for wf in workflows}
    return {"counts": counts(False), "counts_all": counts(True), "list": listed, "details": details, "stats": stats,
            "over_time": over_time}


# ---------------------------------------------------------------- what the code says


def _times(value: Any) -> Any:
    """Stored times parsed, so the oracle's and the store's spellings compare; costs to 6 places."""
    if isinstance(value, dict):
        return {k: _times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_times(v) for v in value]
    if isinstance(value, str) and len(value) >= 20 and value[4] == "-" and value[10] == "T":
        return _at(value)
    return value


def _costs_rounded(details: dict[str, Any]) -> dict[str, Any]:
    """Amounts to 6 places on both sides (README: the latest price of each message, summed)."""
    def r(v):
        """An amount to 6 places (None stays)."""
        return None if v is None else round(float(v), 6)

    out = orjson.loads(orjson.dumps(details, default=str))
    for ch in out["channels"].values():
        if "estimated_cost" in ch:
            ch["estimated_cost"] = r(ch["estimated_cost"])
        if "costs_by_currency" in ch:
            ch["costs_by_currency"] = {k: r(v) for k, v in ch["costs_by_currency"].items()}
    t = out["totals"]
    t["total_cost"] = r(t["total_cost"])
    if "costs_by_currency" in t:
        t["costs_by_currency"] = {k: r(v) for k, v in t["costs_by_currency"].items()}
    return out


def answers(log) -> dict[str, Any]:
    """What the queries answer, caught up."""
    def q(fn, *args, **kwargs):
        """A query's answer, the views caught up first."""
        return ledger.query(log, fn, *args, **kwargs)

    listed = q(queries.list_workflows)
    keys_ = [w["key"] for w in listed]
    return {
        "counts": q(queries.counts),
        "counts_all": q(queries.counts, include_rehearsals=True),
        "list": listed,
        "details": {w: q(queries.workflow_details, w) for w in keys_},
        "stats": {w: q(queries.execution_stats, w) for w in keys_},
        "over_time": {w: q(queries.runs_over_time, w) for w in keys_},
    }


def _comparable(found: dict[str, Any]) -> dict[str, Any]:
    """Answers as the oracle spells them: times parsed, costs to 6 places, the runs-over-time
    chart as (day, status) -> runs."""
    out = dict(found)
    out["list"] = _times(found["list"])
    out["details"] = {w: _times(_costs_rounded(d)) for w, d in found["details"].items()}
    out["over_time"] = {w: Counter({(day, s): n for day, s, n in rows}) for w, rows in found["over_time"].items()}
    return out


def _expected(o: dict[str, Any]) -> dict[str, Any]:
    """The oracle's figures spelt as :func:`_comparable` spells the answers."""
    out = dict(o)
    out["details"] = {w: _times(_costs_rounded(d)) for w, d in o["details"].items()}
    return out


def _differences(found: Any, want: Any, path: str = "") -> list[str]:
    """Where two answers differ, as "path: found != expected" lines."""
    if isinstance(found, dict) and isinstance(want, dict):
        out = []
        for k in sorted(set(found) | set(want), key=str):
            if k not in found or k not in want:
                out.append(f"{path}/{k}: {found.get(k, '<absent>')!r} != {want.get(k, '<absent>')!r}")
            else:
                out += _differences(found[k], want[k], f"{path}/{k}")
        return out
    if isinstance(found, list) and isinstance(want, list) and len(found) == len(want):
        return [d for k, (a, b) in enumerate(zip(found, want)) for d in _differences(a, b, f"{path}[{k}]")]
    return [] if found == want else [f"{path}: {found!r} != {want!r}"]


@SETTINGS
@given(histories(), st.data())
def test_every_figure_matches_the_oracle_caught_up_rebuilt_and_served(case, data):
    events, final = case
    expected = _expected(oracle(events, final))
    with fresh_log() as (log, path):
        # Appended in batches and followed in pages of any size, as a live store is.
        projector = Projector(log.backend)
        i = 0
        while i < len(events):
            n = data.draw(st.integers(1, 12))
            result, _ = ledger.append_input(log, jsonl(events[i : i + n]))
            assert result.appended == len(events[i : i + n])
            i += n
            if data.draw(st.booleans()):
                projector.catch_up(page_size=data.draw(st.integers(1, 9)))
        found = answers(log)
        assert not _differences(_comparable(found), expected), (_differences(_comparable(found), expected), events)
        Projector(log.backend).rebuild()
        assert answers(log) == found
        secret = keys.create_key(log.backend, "reader", "read")[1]
        with TestClient(create_app(path)) as api:
            h = {"X-API-Key": secret}
            assert api.get("/v1/counts", headers=h).json() == found["counts"]
            assert api.get("/v1/workflows/counts", headers=h, params={"include_rehearsals": "true"}).json() == found["counts_all"]
            assert api.get("/v1/workflows", headers=h).json() == {"entries": found["list"], "next": None}
            for wf in found["details"]:
                url = "/v1/workflows/" + wf.replace("/", "%2F")
                shown = api.get(url + "/details", headers=h).json()
                if wf != "counts":  # the bare path of "counts" is the workspace counts
                    assert api.get(url, headers=h).json() == shown
                assert _costs_rounded(shown) == _costs_rounded(found["details"][wf])
                assert api.get(url + "/stats", headers=h).json() == found["stats"][wf]
        run = CliRunner().invoke
        for args, want in [(["counts", "--json"], found["counts"]), (["counts", "--include-rehearsals", "--json"], found["counts_all"]),
                           (["workflows", "list", "--json"], found["list"])]:
            result = run(cli, ["--store", path, *args], catch_exceptions=False)
            assert result.exit_code == 0, (args, result.output)
            assert orjson.loads(result.output) == want
        for wf in found["details"]:
            result = run(cli, ["--store", path, "workflows", "show", wf, "--json"], catch_exceptions=False)
            assert result.exit_code == 0, (wf, result.output)
            assert _costs_rounded(orjson.loads(result.output)) == _costs_rounded(found["details"][wf])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
def test_every_figure_matches_the_oracle_on_postgresql(case):
    events, final = case
    expected = _expected(oracle(events, final))
    schemas = _schema_url()  # a schema of its own, dropped once the example is done
    try:
        log = open_log(next(schemas))
        try:
            ledger.append_input(log, jsonl(events))
            found = answers(log)
            assert not _differences(_comparable(found), expected), _differences(_comparable(found), expected)
            Projector(log.backend).rebuild()
            assert answers(log) == found
        finally:
            log.close()
    finally:
        next(schemas, None)


# ---------------------------------------------------------------- plain examples of what the property found


def _details(events: list[dict[str, Any]], workflow: str = "w") -> dict[str, Any]:
    """A workflow's details once ``events`` are appended to a new store."""
    with fresh_log() as (log, _):
        ledger.append_input(log, jsonl(events))
        return ledger.query(log, queries.workflow_details, workflow)


def _priced_messages(*priced: tuple[str, str, float | None, str]) -> list[dict[str, Any]]:
    """A started run of workflow "w" and one sent message a (id, channel, amount, currency)."""
    events = [make(0, "r1", "run.triggered", workflow="w", recipient="u1"), make(1, "r1", "run.started")]
    for mid, channel, amount, currency in priced:
        events.append({"id": mid + "-q", "type": "message.queued", "occurred_at": "2026-11-01T09:00:02Z", "message_id": mid,
                       "channel": channel, "recipient": "u1", "run_id": "r1", "step": channel})
        sent = {"id": mid + "-s", "type": "message.sent", "occurred_at": "2026-11-01T09:00:03Z", "message_id": mid}
        if amount is not None:
            sent["cost"] = {"amount": amount, "currency": currency}
        events.append(sent)
    return events


def test_an_sms_channel_with_no_price_yet_estimates_a_cost_of_0_0_as_a_figure():
    # README: estimated_cost is an amount; with no price yet it is 0.0, a float as every
    # amount is (the CLI printed "estimated_cost 0" and the query gave an int).
    sms = _details(_priced_messages(("m1", "sms", None, "")))["channels"]["sms"]
    assert sms["estimated_cost"] == 0.0 and isinstance(sms["estimated_cost"], float)
    assert sms["unpriced"] == 1


def test_costs_by_currency_list_the_currencies_in_order_in_the_totals_as_in_a_channel():
    # Email priced in USD and SMS in EUR: the totals named USD first (the channels' order),
    # so the CLI printed "0.01 USD + 0.05 EUR" here and "0.05 EUR + 0.01 USD" for the same
    # prices on other channels; a channel's costs_by_currency was already in order.
    details = _details(_priced_messages(("m1", "email", 0.01, "USD"), ("m2", "sms", 0.05, "EUR")))
    totals = details["totals"]
    assert (totals["total_cost"], totals["currency"]) == (None, "mixed")
    assert list(totals["costs_by_currency"].items()) == [("EUR", 0.05), ("USD", 0.01)]
