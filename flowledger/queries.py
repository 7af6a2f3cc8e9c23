"""Queries over the views: the JSON shapes the CLI prints (and an HTTP API will serve).

Every filter value is a bound parameter; filter and column names come from allow-lists
in this module, never from input. Listings page newest first by ``seq`` (the log
position a run or message was first seen at), so a new run never lands inside pages
already read: paging through never repeats or misses one.
"""

from __future__ import annotations

import base64
import binascii
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import orjson

from flowledger.domain.run import STATUSES
from flowledger.domain.vocabulary import MAX_ID_LENGTH
from flowledger.errors import FlowledgerError, NotFound
from flowledger.projections.delivery import DELIVERY_FIELDS, earlier
from flowledger.projections.run_record import (
    RECORD_FIELDS,
    HistoryEntry,
    attach_messages,
    history_length,
    run_detail_at,
    run_history,
    seconds_between,
)
from flowledger.projections.runs_view import hour_of
from flowledger.projections.steps_view import CHANNEL_OF_STEP_TYPE, STEP_STATES
from flowledger.store.backend import SQLBackend, in_chunks
from flowledger.store.log import StoredEvent

MAX_PAGE_SIZE = 1000
"""The largest page a listing returns."""

MAX_CONTACT_LENGTH = 2 * MAX_ID_LENGTH + 1
"""The longest recipient a listing can show: a collection and an id joined by a "/"."""

RUN_FIELDS = (
    *RECORD_FIELDS[:-1],
    "email_opened",
    "email_opened_at",
    "email_clicked",
    "email_clicked_at",
    "updated_at",
)
"""The fields of a run entry, in order."""


class BadQuery(FlowledgerError):
    """A filter, cursor or page size a query cannot take."""


_Query = TypeVar("_Query", bound=Callable[..., Any])
_VIEWS_READ: dict[Callable[..., Any], tuple[str, ...]] = {}


def reads(*views: str) -> Callable[[_Query], _Query]:
    """Mark a query with the views whose tables it reads (what a query without catch-up
    checks are folded: see :func:`flowledger.ledger.query`)."""

    def mark(fn: _Query) -> _Query:
        _VIEWS_READ[fn] = views
        return fn

    return mark


def views_read(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The views a query reads, as :func:`reads` marked it (none marked: every view may be)."""
    return _VIEWS_READ.get(fn, ())


@dataclass
class RunFilters:
    """The filters of a runs listing (Knock's)."""

    workflow: str | None = None
    """Only runs of this workflow."""
    statuses: tuple[str, ...] = ()
    """Only runs in one of these statuses."""
    tenant: str | None = None
    """Only runs of this tenant."""
    recipient: str | None = None
    """Only runs for this recipient id."""
    has_errors: bool = False
    """Only runs with a failed step."""
    starting_at: str | None = None
    """Only runs created at or after this time (stored format)."""
    ending_at: str | None = None
    """Only runs created at or before this time (stored format)."""
    updated_before: str | None = None
    """Only runs whose last event (updated_at) is at or before this time (stored format)."""


@dataclass
class DeliveryFilters:
    """The filters of a deliveries listing."""

    run_id: str | None = None
    """Only messages of this run."""
    channel: str | None = None
    """Only messages on this channel."""
    statuses: tuple[str, ...] = ()
    """Only messages in one of these statuses."""
    recipient: str | None = None
    """Only messages to this recipient id."""


def encode_cursor(seq: int) -> str:
    """An opaque cursor for a listing position."""
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


_MAX_POSITION = 2**63 - 1
"""The largest log position a cursor may name (SQLite's and PostgreSQL's bigint)."""


def decode_cursor(cursor: str) -> int:
    """The listing position a cursor stands for; :class:`BadQuery` if it is not one."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        # Digits alone, and no more than SQLite's integers hold: int() would also take
        # " 5", "1_000" and "-3", and a larger number fails in the driver, not here.
        if kind != "seq" or not (value.isascii() and value.isdigit()) or int(value) > _MAX_POSITION:
            raise ValueError(kind)
        return int(value)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadQuery(f"{cursor!r} is not a cursor from a previous page") from None


@dataclass(frozen=True)
class Sought:
    """The rows a listing's page picks, in the parts :func:`_page` looks for them by."""

    where: list[str]
    """Conditions (bound parameters all) an index of the table in seq order narrows by."""
    params: list[Any]
    """The conditions' parameters, in order."""
    statuses: tuple[str, ...] = ()
    """Only rows in one of these statuses (each status's sought apart: see :func:`_positions`)."""
    dates: tuple[str, str] | None = None
    """Only rows created within this range (earliest, latest: a runs listing's)."""
    updated_before: str | None = None
    """Only rows whose last event is at or before this time (a runs listing's)."""

    def conditions(self) -> tuple[list[str], list[Any]]:
        """Every condition at once, as a count of the rows states them."""
        where, params = _matching({}, self.statuses)
        checks, marks = self._checks()
        return [*self.where, *where, *checks], [*self.params, *params, *marks]

    def narrowed(self, condition: str, value: Any) -> Sought:
        """The same rows, those ``condition`` (of one parameter, ``value``) picks among them."""
        return replace(self, where=[*self.where, condition], params=[*self.params, value])

    def _checks(self) -> tuple[list[str], list[Any]]:
        """The conditions on the rows' times, which an index in seq order cannot narrow by."""
        where: list[str] = []
        params: list[Any] = []
        if self.dates is not None:
            # Both ends, always: SQLite's planner guesses that a range open at one end holds a
            # quarter of the runs and counts them by status, row by row, through the index of
            # statuses rather than seek the range in its own: "Last 24 hours" read every run.
            where += ["created_at >= ?", "created_at <= ?"]
            params += self.dates
        if self.updated_before is not None:
            where.append("updated_at <= ?")
            params.append(self.updated_before)
        return where, params

    def checked(self, created_at: str | None, updated_at: str | None) -> bool:
        """Whether a row of these times passes :meth:`_checks` (as SQL would: no time, no)."""
        if self.dates is not None and not (created_at is not None and self.dates[0] <= created_at <= self.dates[1]):
            return False
        return self.updated_before is None or (updated_at is not None and updated_at <= self.updated_before)


def _page(
    c: sqlite3.Cursor,
    table: str,
    sought: Sought,
    page_size: int,
    after: str | None,
    before: str | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A page of ``table``'s rows that ``sought`` picks, and its cursors."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise BadQuery(f"page size must be 1 to {MAX_PAGE_SIZE}, not {page_size}")
    if after and before:
        raise BadQuery("give after or before, not both")
    within = sought
    if after:
        within = within.narrowed("seq < ?", decode_cursor(after))
    if before:
        within = within.narrowed("seq > ?", decode_cursor(before))
    order = "ASC" if before else "DESC"
    # The page's positions first, then its rows: every listing's index holds seq, so the
    # first reads no row of the table however many entries it sorts (a date range's runs
    # are sorted by seq: with their rows, that sort copied every run of the range).
    positions = _positions(c, table, within, order, page_size + 1)
    rows: list[dict[str, Any]] = []
    if positions:
        c.execute(f'SELECT * FROM "{table}" WHERE seq IN ({",".join("?" * len(positions))}) ORDER BY seq {order}', positions)
        names = [d[0] for d in c.description]
        rows = [dict(zip(names, r)) for r in c.fetchall()]
    more = len(rows) > page_size
    rows = rows[:page_size]
    if before:
        rows.reverse()
    # Is there anything on the far side of where we came from?
    if rows:
        newest, oldest = rows[0]["seq"], rows[-1]["seq"]
        if before:
            has_newer = more
            has_older = _exists(c, table, sought, "seq < ?", oldest)
        else:
            has_older = more
            # A first page starts at the newest row the filters pick, in this transaction's
            # snapshot: nothing is newer, and a statement to say so would be a round trip
            # more on PostgreSQL.
            has_newer = bool(after) and _exists(c, table, sought, "seq > ?", newest)
        page_info = {
            "after": encode_cursor(oldest) if has_older else None,
            "before": encode_cursor(newest) if has_newer else None,
            "page_size": page_size,
        }
    else:
        page_info = {"after": None, "before": None, "page_size": page_size}
    return rows, page_info


def _matching(equals: dict[str, Any], statuses: tuple[str, ...]) -> tuple[list[str], list[Any]]:
    """WHERE clauses for equality filters (column names from this module) and a status set."""
    where = [f"{column} = ?" for column, value in equals.items() if value is not None]
    params = [value for value in equals.values() if value is not None]
    if statuses:
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        params.extend(statuses)
    return where, params


def _exists(c: sqlite3.Cursor, table: str, sought: Sought, extra: str, value: int) -> bool:
    """Whether a row that ``sought`` picks lies beyond ``value`` (``extra``: "seq < ?" or
    "seq > ?"), looked for from ``value`` on where the rows' times are checked."""
    if sought.dates is not None or sought.updated_before is not None or (len(sought.statuses) > 1 and _A_PAIR <= set(sought.where)):
        # Looked for nearest first: a page's neighbours are most often next to it (the stuck
        # runs' index, in order of their last event, would give a page's newer ones last).
        # A tenant's runs of a workflow of several statuses a status at a time too, as their
        # page reads them: given them all, SQLite's planner read the workflow's runs past
        # ``value`` in its index, a row each for the tenant (every newer one of the
        # workflow's where the tenant has few).
        return bool(_positions(c, table, sought.narrowed(extra, value), _OUTWARD[extra], 1))
    where, params = sought.narrowed(extra, value).conditions()
    c.execute(f"SELECT 1 FROM {_from(table, where)}{_where_sql(where)} LIMIT 1", params)
    return c.fetchone() is not None


_OUTWARD = {"seq < ?": "DESC", "seq > ?": "ASC"}

_A_PAIR = {"workflow = ?", "tenant = ?"}
"""A tenant's runs of a workflow, as :func:`_matching` writes their conditions."""

PROBE_ROWS = 200
"""Rows a page whose rows' times are checked (a date range's, stuck runs') reads in the
order of the listing before it seeks them in an index of those times (see :func:`_positions`)."""


def _positions(c: sqlite3.Cursor, table: str, sought: Sought, order: str, limit: int) -> list[int]:
    """The positions (seq, in ``order``) of at most ``limit`` rows that ``sought`` picks.

    Each status's rows are sought apart, in its own index's seq order, and the first
    ``limit`` of them all taken: an index of (status, seq) gives each status's rows in seq
    order, not theirs together, and where a row's times are read and checked (see
    :func:`_positions_of`), SQLite sorted every row of the statuses named to find the first
    (`runs list --status completed --status failed --starting-at T`: 485 ms at a million
    runs, 1.1 ms so).
    """
    if table == "runs" and not sought.statuses and sought.updated_before is not None and set(sought.where) <= _BY_CREATION:
        # Runs of any status quiet since a time: each status's apart too, in the index of
        # last events (a workflow's, of creation times: _BY_CREATION holds _BY_LAST_EVENT's
        # conditions and the workflow), where they were read in seq order, a row each, past
        # every newer run still heard of (`runs list --updated-before T` in a live store: 25
        # ms at a million runs, a day's 33,000 running).
        sought = replace(sought, statuses=STATUSES)
    if len(sought.statuses) < 2:
        return _positions_of(c, table, sought, order, limit)
    found: list[int] = []
    # The page's statuses: of any, the runs set apart as late in spans are read once for all.
    bounds: dict[str, Any] = {"statuses": sought.statuses}
    for status in sought.statuses:
        found += _positions_of(c, table, replace(sought, statuses=(status,)), order, limit, bounds)
    found.sort(reverse=order == "DESC")
    return found[:limit]


def _positions_of(
    c: sqlite3.Cursor, table: str, sought: Sought, order: str, limit: int, bounds: dict[str, Any] | None = None
) -> list[int]:
    """:func:`_positions` of rows of one status (or of any); ``bounds`` keeps the statuses'
    :func:`_created_by`, which is the same for each (a statement, sought once; once known,
    the statuses after read their first rows from it), and the bounds' source and the runs
    set apart as late (see :func:`_late_spans`), read once too (where they are many, a
    status's own in their spans of positions).

    Where the rows' times are checked (a range of creation times, a last event at or
    before a time), a page has two ways to its rows, and which is quick depends on where
    they lie: a range's newest runs are often among the newest of all ("Last 24 hours",
    "Last 30 days" of a live store), and a status's newest runs often stuck (a store whose
    runs stopped being heard of), found by reading rows in seq order and checking their
    times, where an index of those times would have every row it picks sorted by seq; a
    range of older runs is the index's to find, and stuck runs are, where the newest of
    their status are still heard of, where seq order would pass every newer row first. So
    the first :data:`PROBE_ROWS` rows in seq order are read and checked here, and the index
    searched only if they hold too few. (SQLite's planner cannot tell the two apart: it
    knows nothing of how times spread.) Runs whose last event is bounded were created by
    then: past the first rows, they are read on from the last run that was, and searched no
    further than it (see :func:`_created_by`).
    """
    where, params = _matching({}, sought.statuses)
    where, params = [*sought.where, *where], [*sought.params, *params]
    bound = None
    late: list[int] = []
    spans = _EVERY_RUN
    if sought.dates is not None or sought.updated_before is not None:
        # Where another status's rows read first were too few and found the bound, this
        # status's past it would fail the checks too (a tenant's runs of a workflow quiet
        # since a time within a week: read twice a status, 14 ms at a million runs).
        known = None if bounds is None else bounds.get("created by")
        past = ([], []) if known is None else (["seq <= ?"], [known])
        if known is not None:
            # The bound is of the runs in order alone: those set apart as late that the page
            # picks are found on their own, and join every answer from here on.
            spans = bounds["spans"]
            late = _late_found(c, table, sought, where, params, spans, bounds, order, limit)
        rows, found = _probe(c, table, sought, [*where, *past[0]], [*params, *past[1]], order)
        # Every row of seq order up to the last read (up to the bound) was checked: those
        # found are the first.
        if len(found) >= limit or len(rows) < PROBE_ROWS:
            return _joined(found, late, order, limit)
        if table == "runs":
            bounds = {} if bounds is None else bounds
            if "spans" not in bounds:
                bounds["spans"] = _late_spans(c, sought)
            if known is None:
                spans = bounds["spans"]
                late = _late_found(c, table, sought, where, params, spans, bounds, order, limit)
            if "created by" not in bounds:
                bounds["created by"] = _created_by(c, sought, spans)
            bound = bounds["created by"]
            if bound is not None and order == "ASC" and bound <= rows[-1][0]:
                # A page back: every row from its cursor to the bound was read, and none
                # past it can pass the checks (where the runs past the page were sought in
                # every entry up to the time: 68-81 ms for a status's at a million runs).
                return _joined(found, late, order, limit)
            if bound is not None and order == "DESC" and bound < rows[-1][0]:
                # Every row between the bound and those read fails the checks: read on from it.
                more, also = _probe(c, table, sought, [*where, "seq <= ?"], [*params, bound], order)
                found += also
                if len(found) >= limit or len(more) < PROBE_ROWS:
                    return _joined(found, late, order, limit)
        by_hour = _positions_by_hour(c, table, sought, order, limit, spans)
        if by_hour is not None:
            return _joined(by_hour, late, order, limit)
        by_last_event = _positions_by_last_event(c, table, sought, order, limit, spans)
        if by_last_event is not None:
            return _joined(by_last_event, late, order, limit)
        by_creation = _positions_by_creation(c, table, sought, order, limit, spans)
        if by_creation is not None:
            return _joined(by_creation, late, order, limit)
        where, params = sought.conditions()
        if bound is not None and not sought.statuses:
            # Given a status, SQLite would take the bound for the status's index in seq order
            # and read a row a run: the index of (status, last event) holds the runs sought.
            where.append("seq <= ?")
            params.append(bound)
        if table == "runs" and sought.dates is not None:
            window = _made_within(c, sought.dates, spans)
            if window is None:
                return _joined([], late, order, limit)
            where += ["seq >= ?", "seq <= ?"]
            params += window
    c.execute(f"SELECT seq FROM {_from(table, where)}{_where_sql(where)} ORDER BY seq {order} LIMIT ?", [*params, limit])
    return _joined([r[0] for r in c.fetchall()], late, order, limit)


@dataclass(frozen=True)
class _Spans:
    """Where a page's bounds by creation hour come from."""

    table: str
    """The hours' first and last runs: ``run_hour_seqs_on_time`` (of the runs not set apart
    as late) or ``run_hour_seqs`` (of every run)."""
    late: bool
    """Whether runs set apart as late that the page's times could pick lie outside
    ``table``'s bounds (to be read on their own)."""
    intervals: tuple[tuple[int, int], ...] = ()
    """Where more of those were set apart than are read whole (:data:`LATE_READ`): the
    spans of positions (first and last seq) they lie in, read on their own in seq order."""


_EVERY_RUN = _Spans("run_hour_seqs", False)

LATE_READ = 500
"""The most runs set apart as late (``run_late_seqs``) within a page's hours that it reads
whole, once; past that many, it reads them in their spans of positions (see
:func:`_late_intervals`)."""


def _late_spans(c: sqlite3.Cursor, sought: Sought) -> _Spans:
    """The bounds a page of a range or of runs quiet since a time reads by.

    A run appended long after it was created (an older export imported into a live store)
    stretched its hour's last seq to the log's end, and with it each bound that hour gives:
    60 such runs in a million made pages of a range or quiet since a time read every newer
    run (8-376 ms). The runs view sets such runs apart (see
    :data:`flowledger.projections.runs_view.LATE_HOURS`) and keeps the others' hours too:
    their bounds hold, and those set apart that the page's times could pick (see
    :func:`_late_hours`) are read on their own (:func:`_late_found`); a page whose times
    pick none reads none. Past :data:`LATE_READ` of them, reading them each page would cost
    more than it saves."""
    where, params = _late_hours(sought)
    c.execute(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM run_late_seqs{_where_sql(where)} LIMIT ?) AS late", [*params, LATE_READ + 1]
    )
    (n,) = c.fetchone()
    if n <= LATE_READ:
        return _Spans("run_hour_seqs_on_time", n > 0)
    intervals = _late_intervals(c, where, params)
    return _EVERY_RUN if len(intervals) > LATE_INTERVALS else _Spans("run_hour_seqs_on_time", True, intervals)


LATE_INTERVALS = 8
"""The most spans of positions a page reads the runs set apart as late in, where they are
more than :data:`LATE_READ` (see :func:`_late_intervals`); past that many, its bounds are
every run's hours'."""

LATE_GAP = 1_000
"""Positions between two hours' runs set apart that are read through rather than sought
again (see :func:`_late_intervals`)."""


def _late_intervals(c: sqlite3.Cursor, where: list[str], params: list[Any]) -> tuple[tuple[int, int], ...]:
    """The spans of positions the runs set apart as late in the hours ``where`` picks lie
    in: each hour's first and last, joined where they overlap or lie within
    :data:`LATE_GAP` of each other.

    An import of a past day's runs is appended at once, each hour's runs together (an
    export sorted by time) or the day's all through each other: a span or few, whatever
    the page's times. Sought an hour at a time in the index of their hours, each hour's
    first and last (0.05 ms for 10,000 imported over a day; read entry by entry and
    grouped, 0.8 ms)."""
    hours = " AND ".join(["hour > h.hour", *where])
    c.execute(
        "WITH RECURSIVE h (hour) AS ("
        f"SELECT MIN(hour) FROM run_late_seqs{_where_sql(where)} "
        f"UNION ALL SELECT (SELECT MIN(hour) FROM run_late_seqs WHERE {hours}) FROM h WHERE h.hour IS NOT NULL) "
        "SELECT (SELECT MIN(seq) FROM run_late_seqs WHERE hour = h.hour), "
        "(SELECT MAX(seq) FROM run_late_seqs WHERE hour = h.hour) FROM h WHERE h.hour IS NOT NULL",
        [*params, *params],
    )
    joined: list[list[int]] = []
    for first, last in sorted(c.fetchall()):
        if joined and first <= joined[-1][1] + LATE_GAP:
            joined[-1][1] = max(joined[-1][1], last)
        else:
            joined.append([first, last])
    return tuple((first, last) for first, last in joined)


def _late_hours(sought: Sought) -> tuple[list[str], list[Any]]:
    """Conditions on ``run_late_seqs``' hours that every run whose times pass ``sought``'s
    checks meets: created within its range, and by the time its runs were last heard of
    (a run's last event is never before its trigger). An hour is the first 13 characters of
    a time, in the same order as the times (so for a time not stored in full too).

    Without them, an import of a past day's runs (more than :data:`LATE_READ`) made every
    page of a range or quiet since a time bound its reads by every run's hours, those of a
    week it never picks among them."""
    where: list[str] = []
    params: list[Any] = []
    if sought.dates is not None:
        where.append("hour >= ?")
        params.append(sought.dates[0][:13])
    ends = [t for t in (None if sought.dates is None else sought.dates[1], sought.updated_before) if t is not None]
    if ends:
        where.append("hour <= ?")
        params.append(min(ends)[:13])
    return where, params


def _late_found(
    c: sqlite3.Cursor,
    table: str,
    sought: Sought,
    where: list[str],
    params: list[Any],
    spans: _Spans,
    bounds: dict[str, Any],
    order: str,
    limit: int,
) -> list[int]:
    """The positions of the runs set apart as late that ``sought`` picks, their times
    checked (none where ``spans`` bounds every run or its times pick none set apart).
    ``bounds`` keeps those the filters other than a status pick, the same for each status
    of a page (read once). Where they are more, the first ``limit`` in ``order`` of the
    runs ``where`` picks (``sought``'s filters and status, as :func:`_positions_of` reads
    them) in their spans of positions (others' among them: as good); for a page of any
    status (``bounds``' ``statuses``, every one), the first ``limit`` of them all, read once."""
    if not spans.late:
        return []
    if spans.intervals:
        if not set(bounds.get("statuses", ())) >= set(STATUSES):
            return [seq for seq, _ in _in_spans(c, table, sought, where, params, spans, order, limit)]
        if "late in spans" not in bounds:
            # A page of any status (quiet since a time: each status apart) reads them once,
            # in seq order with no status named, not once a status: the statuses' reads of
            # the same spans were a statement each (on PostgreSQL six round trips). The first
            # ``limit`` of them all hold each status's that the page can take. (Given some
            # statuses, each is read in its own index, in seq order: SQLite sorted the named
            # statuses' runs of a span for one read.)
            bounds["late in spans"] = _in_spans(c, table, sought, sought.where, sought.params, spans, order, limit)
        return [seq for seq, status in bounds["late in spans"] if status == sought.statuses[0]]
    if "late" not in bounds:
        # Copied first, by seq, then filtered: given a tenant too, SQLite's planner would
        # take that filter's index and read each of its runs.
        hours, marks = _late_hours(sought)
        c.execute(
            f"WITH late AS MATERIALIZED (SELECT * FROM runs WHERE seq IN (SELECT seq FROM run_late_seqs{_where_sql(hours)})) "
            f"SELECT seq, status, created_at, updated_at FROM late{_where_sql(sought.where)}",
            [*marks, *sought.params],
        )
        bounds["late"] = c.fetchall()
    statuses = sought.statuses
    return [
        seq for seq, status, created_at, updated_at in bounds["late"]
        if (not statuses or status in statuses) and sought.checked(created_at, updated_at)
    ]


def _in_spans(
    c: sqlite3.Cursor, table: str, sought: Sought, where: list[str], params: list[Any], spans: _Spans, order: str, limit: int
) -> list[tuple[int, str]]:
    """The positions and statuses, in ``order``, of the runs ``where`` picks within
    ``spans``' spans of positions whose times pass ``sought``'s checks: read a chunk at a
    time until ``limit`` are found (the last chunk's every one kept)."""
    where = [*where, "seq >= ?", "seq <= ?"]
    found: list[tuple[int, str]] = []
    for first, last in spans.intervals if order == "ASC" else reversed(spans.intervals):
        # Read in seq order as a page's first rows are, up to the page: a span of a day's
        # import holds thousands of runs, few of a status, or all of the page.
        edge = (first, last)
        while len(found) < limit:
            rows, _ = _probe(c, table, sought, where, [*params, *edge], order, with_status=True)
            found += [(seq, status) for seq, created_at, updated_at, status in rows if sought.checked(created_at, updated_at)]
            if len(rows) < PROBE_ROWS:
                break
            edge = (rows[-1][0] + 1, last) if order == "ASC" else (first, rows[-1][0] - 1)
            if edge[0] > edge[1]:
                break
    return found


def _joined(found: list[int], late: list[int], order: str, limit: int) -> list[int]:
    """The first ``limit`` positions, in ``order``, of those found and the late runs'."""
    if not late:
        return found[:limit]
    return sorted(set(found) | set(late), reverse=order == "DESC")[:limit]


def _probe(
    c: sqlite3.Cursor, table: str, sought: Sought, where: list[str], params: list[Any], order: str, with_status: bool = False
) -> tuple[list[Any], list[int]]:
    """The first :data:`PROBE_ROWS` rows ``where`` picks in seq order (their seq and times,
    and ``with_status``, their status), and the positions of those whose times ``sought``
    checks pass.

    Their positions first, in the filters' index alone, then those rows' times: PostgreSQL's
    planner, asked for the times with the rows, takes a status of most runs for spread
    evenly and reads `runs_by_seq` backwards, a row each, past every newer run of another
    status (a completed run's page of a live store where the newest 10,000 run still: 6-9
    ms a status at 300,000 runs), where the positions alone are the status's index's to give
    (read in it alone, its pages marked all visible by autovacuum: 1-2.4 ms, whatever the
    spread). SQLite reads them so too, in the same time or less. The index of runs with
    errors holds their times too, and a workflow's its runs by status (with their times, of
    statuses of few): read there at once, bounded by its runs (on PostgreSQL a tenant's runs
    of a workflow took 4-8 ms a page so, 9-16 ms the positions first).
    """
    first = f"{_from(table, where)}{_where_sql(where)} ORDER BY seq {order} LIMIT ?"
    columns = "seq, created_at, updated_at, status" if with_status else "seq, created_at, updated_at"
    if _WITH_ERRORS in where or "workflow = ?" in where:
        c.execute(f"SELECT {columns} FROM {first}", [*params, PROBE_ROWS])
    else:
        c.execute(
            f'SELECT {columns} FROM "{table}" WHERE seq IN (SELECT seq FROM {first}) ORDER BY seq {order}',
            [*params, PROBE_ROWS],
        )
    rows = c.fetchall()
    return rows, [row[0] for row in rows if sought.checked(row[1], row[2])]


HOURS_READ = 24
"""The most hours whose runs a page of a date range reads, an hour at a time, before it
sorts every run of the range instead (see :func:`_positions_by_hour`)."""

_BY_HOUR = frozenset({"tenant = ?", "seq < ?", "seq > ?"})
"""The conditions (besides a range and statuses) that the index of creation times answers,
so that a range's runs are picked by them an hour at a time."""


def _positions_by_hour(
    c: sqlite3.Cursor, table: str, sought: Sought, order: str, limit: int, spans: _Spans = _EVERY_RUN
) -> list[int] | None:
    """:func:`_positions_of` of runs created within a range, found an hour at a time, or
    None where that is not the way (other conditions than :data:`_BY_HOUR`'s, or more than
    :data:`HOURS_READ` hours to read).

    The runs of a range whose newest are not among the newest of all (ten days in the
    middle of a month) are in the index of creation times, in their hours, and a page is
    their first by seq: sorted all at once, every run of the range (72-111 ms for 333,000).
    ``run_hour_seqs`` keeps each hour's first and last seq, so the hours are read in the
    order of the best seq each can give, and not past the first that can give none better
    than the page has. Runs are most often created in seq order: an hour or two.
    """
    if table != "runs" or sought.dates is None or sought.updated_before is not None or not set(sought.where) <= _BY_HOUR:
        return None
    # Each of these conditions has one parameter.
    bounds = list(zip(sought.where, sought.params))
    below = min((v for w, v in bounds if w == "seq < ?"), default=None)
    above = max((v for w, v in bounds if w == "seq > ?"), default=None)
    earliest, latest = sought.dates
    desc = order == "DESC"
    # The hours that can hold a run on the page's side of its cursors, best first.
    near, near_marks = ["hour >= ?", "hour <= ?"], [hour_of(earliest), hour_of(latest)]
    if below is not None:
        near.append("first_seq < ?")
        near_marks.append(below)
    if above is not None:
        near.append("last_seq > ?")
        near_marks.append(above)
    tenant = next((v for w, v in bounds if w == "tenant = ?"), None)
    if sought.statuses or tenant is not None:
        # Only the hours holding a run of the statuses (of the tenant): a range none of whose
        # hours holds one read each hour's runs for none (*Last 24 hours* of a live store, its
        # last day's runs all running, for the completed and the failed: 16 ms), and then
        # every run of the statuses (see :func:`_made_within`).
        held, held_marks = _matching({}, sought.statuses)
        counter = "run_hours" if tenant is None else "tenant_run_hours"
        if tenant is not None:
            held, held_marks = ["tenant = ?", *held], [tenant, *held_marks]
        near.append(f"hour IN (SELECT hour FROM {counter}{_where_sql(['hour >= ?', 'hour <= ?', *held])})")
        near_marks += [hour_of(earliest), hour_of(latest), *held_marks]
    c.execute(
        f"SELECT hour, first_seq, last_seq FROM {spans.table}{_where_sql(near)} "
        f"ORDER BY {'last_seq DESC' if desc else 'first_seq ASC'} LIMIT ?",
        [*near_marks, HOURS_READ + 1],
    )
    hours = c.fetchall()
    statuses, marks = _matching({}, sought.statuses)
    picked = [*sought.where, *statuses]
    if statuses or "tenant = ?" in sought.where:
        # The hour's runs first (in the index of creation times), then those the page picks:
        # given a status or a tenant too, SQLite's planner takes the index of that filter and
        # walks every run of it in seq order.
        hour_sql = (
            "WITH hour_runs AS MATERIALIZED (SELECT seq, status, tenant FROM runs WHERE created_at >= ? AND created_at <= ?) "
            f"SELECT seq FROM hour_runs{_where_sql(picked)} ORDER BY seq {order} LIMIT ?"
        )
        last_made = None
    else:
        # The hour's runs alone, sorted in the index (not copied first: a quarter faster).
        # Those created last (first, for a page back) come first, in the index's order: the
        # page's runs of the hour lie no further by seq than the furthest of them, and only
        # the runs of the hour that near are sorted (10,000 runs an hour: 0.7-2.2 ms warm
        # for the sort of most of an hour's runs). The bound is a check, not the index's (`+seq`).
        where = ["created_at >= ?", "created_at <= ?", *picked]
        last_made = f"SELECT seq FROM runs{_where_sql(where)} ORDER BY created_at {order} LIMIT ?"
        hour_sql = f"SELECT seq FROM runs{_where_sql([*where, '+seq >= ?' if desc else '+seq <= ?'])} ORDER BY seq {order} LIMIT ?"
    found: list[int] = []
    for n, (hour, first, last) in enumerate(hours):
        if desc:
            best = last if below is None else min(last, below - 1)
        else:
            best = first if above is None else max(first, above + 1)
        if len(found) >= limit and (best < found[limit - 1] if desc else best > found[limit - 1]):
            return found
        if n == HOURS_READ:
            return None
        part = [max(earliest, hour + _HOUR_START), min(latest, hour + _HOUR_END), *sought.params, *marks]
        if last_made is None:
            c.execute(hour_sql, [*part, limit])
        else:
            c.execute(last_made, [*part, limit])
            made = [r[0] for r in c.fetchall()]
            if len(made) < limit:
                # Every run of the hour's part the page picks.
                found = sorted([*found, *made], reverse=desc)[:limit]
                continue
            c.execute(hour_sql, [*part, min(made) if desc else max(made), limit])
        found = sorted([*found, *(r[0] for r in c.fetchall())], reverse=desc)[:limit]
    return found


def _created_by(c: sqlite3.Cursor, sought: Sought, spans: _Spans = _EVERY_RUN) -> int | None:
    """The last position (seq) of a run created by the time the runs ``sought`` were last
    heard of by (0: none was), or None where their last event is not bounded (or not by a
    time stored in full).

    A run's last event is never before its trigger, its first event, which gives its
    creation time and its seq: runs last heard of at or before a time were created by then,
    at or before the last position of a run that was. ``run_hour_seqs`` gives that position
    for the whole hours before the time, the index of creation times for its own hour's
    runs. Without it, a page of runs quiet since the middle of a month (`runs list
    --updated-before T`, with or without a tenant, a workflow, a status or a range), once
    the runs read first in seq order were too few, read every newer run, each row, or
    sorted every run of the index of last events it sought them in (13-411 ms at a
    million runs). Sought only then: where the runs read first answer (stuck runs that are
    their statuses' newest), it would be a statement more for nothing.
    """
    if sought.updated_before is None:
        return None
    at = sought.updated_before if sought.dates is None else min(sought.updated_before, sought.dates[1])
    if not _STAMP.fullmatch(at):
        return None
    hour = hour_of(at)
    # The runs set apart as late are read on their own (see _late_spans): not bounded here.
    apart = " AND seq NOT IN (SELECT seq FROM run_late_seqs WHERE hour = ?)" if spans.late else ""
    c.execute(
        f"SELECT (SELECT MAX(last_seq) FROM {spans.table} WHERE hour < ?), "
        f"(SELECT MAX(seq) FROM runs WHERE created_at >= ? AND created_at <= ?{apart})",
        [hour, hour + _HOUR_START, at, *([hour] if spans.late else [])],
    )
    whole, part = c.fetchone()
    return max(whole or 0, part or 0)


LAST_EVENTS_READ = 5_000
"""The most entries of the index of last events a page of runs quiet since a time reads,
newest last event first, before it sorts every entry up to that time instead (see
:func:`_positions_by_last_event`)."""

_LAST_EVENTS_CHUNK = 500
"""Entries of the index of last events read a statement at a time (see
:func:`_positions_by_last_event`)."""

_BY_LAST_EVENT = frozenset({"tenant = ?", "seq < ?", "seq > ?"})
"""The conditions (besides a status, a last event and a range) that the index of (status,
last event) answers, so that runs quiet since a time are picked in it, newest last event
first."""


def _positions_by_last_event(
    c: sqlite3.Cursor, table: str, sought: Sought, order: str, limit: int, spans: _Spans = _EVERY_RUN
) -> list[int] | None:
    """:func:`_positions_of` of runs of a status last heard of by a time, read in the index
    of (status, last event) from that time back, or None where that is not the way (other
    conditions than :data:`_BY_LAST_EVENT`'s, or more than :data:`LAST_EVENTS_READ` entries
    to read).

    Stuck runs whose status's newest runs are still heard of (a live store, its runs
    running for hours) were found by sorting every entry of the status up to the time by
    seq (28-68 ms for 100,000 stuck runs). Read newest last event first, they come about
    in seq order, for a run is created before it is last heard of; the entries not yet
    read were last heard of, so created, no later than the last read, so no run of theirs
    lies past the last position of a run created in that hour or before
    (``run_hour_seqs``): once the page's last is past it, no entry unread can better it.
    A page back (oldest first, from its cursor) has no such stop, but its runs were created
    from the first hour holding a run past the cursor on, so last heard of since: those
    entries alone are read, every one (the stuck page back to the first sorted every
    entry up to the time: 12-14 ms where a day's 33,000 runs were heard of still).
    """
    if table != "runs" or len(sought.statuses) != 1 or sought.updated_before is None:
        return None
    if not set(sought.where) <= _BY_LAST_EVENT:
        return None
    where, params = ["status = ?", *sought.where], [sought.statuses[0], *sought.params]
    if sought.dates is not None:
        # Runs created since the range's start were last heard of since then too (a run's
        # last event is never before its trigger): the index is read from the time back to
        # that start, not on to its first entry (every completed run up to the time, where
        # none of the last 24 hours' had completed: 68 ms at a million runs).
        where += ["created_at >= ?", "created_at <= ?", "updated_at >= ?"]
        params += [*sought.dates, sought.dates[0]]
    desc = order == "DESC"
    if not desc:
        # A page back: its runs lie past its cursor, so were created no earlier than the
        # first hour holding a run past it, and last heard of since; every one is read.
        above = _cursor_above(sought)
        if above is None:
            return None
        hour = _first_hour_past(c, above, spans)
        if hour is None:
            return None  # no run past the cursor has a creation time: left to the sort
        where.append("updated_at >= ?")
        params.append(hour + _HOUR_START)
    found: list[int] = []
    last: tuple[str, int] | None = None
    for _ in range(LAST_EVENTS_READ // _LAST_EVENTS_CHUNK):
        # On from the last entry read (the index is sought from its last event: a statement
        # a chunk reads only that chunk's entries, and those of the same last event before).
        if last is None:
            after, marks = ["updated_at <= ?"], [sought.updated_before]
        else:
            after, marks = ["updated_at <= ?", "(updated_at, seq) < (?, ?)"], [last[0], *last]
        c.execute(
            f"SELECT updated_at, seq FROM runs{_where_sql([*where, *after])} ORDER BY updated_at DESC, seq DESC LIMIT ?",
            [*params, *marks, _LAST_EVENTS_CHUNK],
        )
        rows = c.fetchall()
        found = sorted([*found, *(seq for _, seq in rows)], reverse=desc)[:limit]
        if len(rows) < _LAST_EVENTS_CHUNK:
            return found
        last = rows[-1]
        if desc and len(found) >= limit:
            bound = _last_made_by(c, hour_of(last[0]), spans)
            if bound is None or bound <= found[limit - 1]:
                return found
    return None


_BY_CREATION = frozenset({"workflow = ?", "tenant = ?", "seq < ?", "seq > ?"})
"""The conditions (besides a status, a last event and a range) that the index of a
workflow's runs by status and creation time answers, the workflow's among them, so that its
runs quiet since a time are picked in it, last created first: its entries hold the tenant
too (a tenant's stuck runs of a workflow: 23 ms, the status's every stuck run sorted, where
the workflow is one of a million runs; 9 so)."""


def _positions_by_creation(
    c: sqlite3.Cursor, table: str, sought: Sought, order: str, limit: int, spans: _Spans = _EVERY_RUN
) -> list[int] | None:
    """:func:`_positions_of` of a workflow's runs of a status last heard of by a time, read
    in the index of (workflow, status, creation time, last event, seq) last created first
    (first created, for a page back), or None where that is not the way (no workflow, other
    conditions than :data:`_BY_CREATION`'s, or more than :data:`LAST_EVENTS_READ` entries to
    read).

    Stuck runs of a workflow whose newest runs are still heard of (a live store, its runs
    running for hours) were sought in the index of (status, last event), which holds no
    workflow: every stuck run's row read (159 ms where a day's runs run still). Read last
    created first, a workflow's runs come about in seq order, and those quiet since T were
    created by T; the entries not read were created no later than the last read, so lie no
    further than the last position of a run created in its hour or before
    (``run_hour_seqs``): once the page's last is past that, no entry unread can better it.
    Else four times as many are read, up to :data:`LAST_EVENTS_READ`. A page back reads
    from the first hour holding a run past its cursor (see :func:`_positions_by_last_event`).
    """
    if table != "runs" or len(sought.statuses) != 1 or sought.updated_before is None:
        return None
    if "workflow = ?" not in sought.where or not set(sought.where) <= _BY_CREATION:
        return None
    desc = order == "DESC"
    latest = sought.updated_before if sought.dates is None else min(sought.updated_before, sought.dates[1])
    earliest = None if sought.dates is None else sought.dates[0]
    if not desc:
        above = _cursor_above(sought)
        if above is not None:
            hour = _first_hour_past(c, above, spans)
            if hour is None:
                return None  # no run past the cursor has a creation time: left to the sort
            earliest = max(earliest or EARLIEST, hour + _HOUR_START)
    where = [*sought.where, "status = ?", "created_at <= ?", "updated_at <= ?"]
    params = [*sought.params, sought.statuses[0], latest, sought.updated_before]
    if earliest is not None:
        where.append("created_at >= ?")
        params.append(earliest)
    read = 4 * limit
    while read <= LAST_EVENTS_READ:
        c.execute(f"SELECT created_at, seq FROM runs{_where_sql(where)} ORDER BY created_at {order} LIMIT ?", [*params, read])
        rows = c.fetchall()
        found = sorted((seq for _, seq in rows), reverse=desc)[:limit]
        if len(rows) < read:
            return found
        # A full page was read: the runs not read were created no later (no earlier) than
        # the last read, in its hour or before (after).
        edge = hour_of(rows[-1][0])
        if desc:
            bound = _last_made_by(c, edge, spans)
        else:
            c.execute(f"SELECT MIN(first_seq) FROM {spans.table} WHERE hour >= ?", [edge])
            (bound,) = c.fetchone()
        if bound is None or (bound <= found[-1] if desc else bound >= found[-1]):
            return found
        read *= 4
    return None


def _made_within(c: sqlite3.Cursor, dates: tuple[str, str], spans: _Spans = _EVERY_RUN) -> tuple[int, int] | None:
    """The first and the last position (seq) of a run created in the hours of ``dates``
    (``run_hour_seqs``), or None where none was: no run created within them lies outside.

    A range's page past the hours it reads one by one (see :func:`_positions_by_hour`)
    reads its runs in the index of a status or another filter, in seq order, each row read
    for its creation time: from the newest run of the status on, every one newer than the
    range, and every one where the range holds none of the status (`runs list --status
    completed --status failed` within *Last 24 hours* of a live store, whose last day's runs
    are all running: 340 ms at a million runs). Bounded by these positions, it reads those
    of the range's positions alone."""
    c.execute(
        f"SELECT MIN(first_seq), MAX(last_seq) FROM {spans.table} WHERE hour >= ? AND hour <= ?",
        [hour_of(dates[0]), hour_of(dates[1])],
    )
    first, last = c.fetchone()
    return None if first is None else (first, last)


def _cursor_above(sought: Sought) -> int | None:
    """The position a page back reads past (its ``before`` cursor's), or None."""
    return max((v for w, v in zip(sought.where, sought.params) if w == "seq > ?"), default=None)


def _first_hour_past(c: sqlite3.Cursor, above: int, spans: _Spans = _EVERY_RUN) -> str | None:
    """The first hour holding a run created past the position ``above`` (``run_hour_seqs``):
    no run past it was created before that hour. None where no run past it has a creation time."""
    c.execute(f"SELECT MIN(hour) FROM {spans.table} WHERE last_seq > ?", [above])
    return c.fetchone()[0]


def _last_made_by(c: sqlite3.Cursor, hour: str, spans: _Spans = _EVERY_RUN) -> int | None:
    """The last position of a run created in ``hour`` or before (``run_hour_seqs``), or None."""
    c.execute(f"SELECT MAX(last_seq) FROM {spans.table} WHERE hour <= ?", [hour])
    return c.fetchone()[0]


_WITH_ERRORS = "error_count > 0"
"""The condition of a runs listing's ``has_errors`` filter."""


def _from(table: str, where: list[str]) -> str:
    """The table a statement of a listing's rows reads, quoted: with the runs that have
    errors among its conditions, in their own index (``INDEXED BY``, SQLite's: PostgreSQL's
    SQL drops it, its planner has statistics).

    That index holds every column a runs listing filters by, so a page of them reads no row
    of the table; SQLite's planner, which knows nothing of how few runs have errors, took the
    index of the other filter and read a row a run for its errors (a status's page of runs
    with errors, where none has any: 122-583 ms at a million runs; their counts 565 ms).
    At most every run with errors is read, entry by entry.

    A recipient's runs, and a run's or a recipient's messages, are read in their own index,
    first of all: with another filter too (a tenant and a status; a channel or a status),
    SQLite's planner took that filter's index, which narrows by more columns or was made
    later, and read a row a run or message of it for its recipient or run (`runs list
    --recipient U --tenant T --status completed`: 146 ms at a million runs; `deliveries list
    --run R --status delivered`: 143 ms at 150,000 messages; linear in them).

    A tenant's runs of a workflow of any status are read in the workflow's index, which holds
    their tenant: SQLite's planner took the tenant's and read a row a run of it for its
    workflow (9-33 ms for a page at a million runs, the workflow one of 40). Given statuses,
    the tenant's index of (tenant, status, seq, created_at, workflow) holds the workflow."""
    for start, index in _FEW_ROWS.get(table, ()):
        if any(condition.startswith(start) for condition in where):
            return f'"{table}" INDEXED BY {index}'
    if table == "runs" and _WITH_ERRORS in where:
        return '"runs" INDEXED BY runs_with_errors_filtered'
    if table == "runs" and {"workflow = ?", "tenant = ?"} <= set(where) and not any(w.startswith("status IN") for w in where):
        return '"runs" INDEXED BY runs_by_workflow_seq_created_tenant'
    return f'"{table}"'


_FEW_ROWS = {
    "runs": (("recipient ", "runs_by_recipient"),),
    "deliveries": (("run_id = ?", "deliveries_by_run"), ("recipient ", "deliveries_by_recipient")),
}
"""The listings' filters that pick few rows (a recipient's runs, a run's or a recipient's
messages: their conditions' starts, as :func:`_matching` and :func:`_contact_conditions`
write them), each with the index its rows are read in, the first named first."""


def _where_sql(where: list[str]) -> str:
    """A WHERE clause of conditions joined by AND (nothing for none)."""
    return (" WHERE " + " AND ".join(where)) if where else ""


def run_entry(row: dict[str, Any], engagement: tuple[Any, ...] = (None, None, None, None)) -> dict[str, Any]:
    """A runs-view row as the JSON a user sees, with its email engagement (see
    :func:`email_engagement`)."""
    entry = {k: row[k] for k in RUN_FIELDS if k not in _ENGAGEMENT_FIELDS}
    entry["recipient"] = orjson.loads(row["recipient_json"])
    entry.update(zip(_ENGAGEMENT_FIELDS, engagement))
    return {k: entry[k] for k in RUN_FIELDS}


ENGAGEMENT_QUERY = (
    "SELECT run_id, delivered_at, opened_at, clicked_at FROM deliveries "
    "WHERE run_id IN ({marks}) AND channel = 'email'"
)
"""The runs' email deliveries that engagement reads (``marks``: one ``?`` a run), all from
the deliveries view's index of them (``deliveries_email_by_run``), none from the table."""
_ENGAGEMENT_FIELDS = ("email_opened", "email_opened_at", "email_clicked", "email_clicked_at")
_NO_ENGAGEMENT = (None, None, None, None)


def email_engagement(c: sqlite3.Cursor, run_ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """Each run's email engagement, from its email deliveries: (opened, first open,
    clicked, first click); all None for a run none of whose emails is delivered yet.

    A click counts as an open (images are often blocked), and an open or click as a
    delivery, as in the deliveries view, whose rows these are.
    """
    first: dict[str, list[str | None]] = {}  # run -> its first delivery, open and click
    for chunk, marks in in_chunks(run_ids):
        c.execute(ENGAGEMENT_QUERY.format(marks=marks), chunk)
        for run_id, *times in c.fetchall():
            seen = first.setdefault(run_id, [None, None, None])
            for i, at in enumerate(times):
                seen[i] = earlier(seen[i], at)
    return {
        run_id: (opened is not None, opened, clicked is not None, clicked)
        for run_id, (delivered, opened, clicked) in first.items()
        if delivered is not None
    }


@reads("runs", "deliveries")
def list_runs(
    c: sqlite3.Cursor,
    filters: RunFilters,
    *,
    page_size: int = 50,
    after: str | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """A page of runs, newest first: ``{"entries": [...], "page_info": {...}}``."""
    rows, page_info = _page(c, "runs", _runs_sought(_pair_s_statuses(c, filters)), page_size, after, before)
    engagement = email_engagement(c, [r["id"] for r in rows])
    entries = [run_entry(r, engagement.get(r["id"], _NO_ENGAGEMENT)) for r in rows]
    return {"entries": entries, "page_info": page_info}


def _pair_s_statuses(c: sqlite3.Cursor, filters: RunFilters) -> RunFilters:
    """The filters of a page of a tenant's runs of a workflow of any status (no other filter
    but a range), with every status named where the tenant has fewer runs, each status's
    runs times, than the workflow (the counts kept ahead say): its index (tenant, status,
    seq, created_at, workflow) is then read a status at a time, newest first, rather than the
    workflow's, whose every run was read to find a page where the tenant has few (65-92 ms
    for a tenant of none of a workflow of 900,000 runs). A page reads about as many entries
    of either index, a status's, per run of the pair (14.6 ms a page of a tenant's 200,000
    runs of a workflow of 25,000 read a status at a time, 1.2 in the workflow's index)."""
    if filters.workflow is None or filters.tenant is None or filters.statuses:
        return filters
    if not _only_statuses_besides(filters, "starting_at", "ending_at", "tenant", "workflow"):
        return filters
    c.execute(
        "SELECT (SELECT SUM(n) FROM run_counts WHERE workflow = ?), (SELECT SUM(n) FROM tenant_run_counts WHERE tenant = ?)",
        [filters.workflow, filters.tenant],
    )
    workflow_all, tenant_all = (int(n or 0) for n in c.fetchone())
    return replace(filters, statuses=STATUSES) if tenant_all * len(STATUSES) < workflow_all else filters


@reads("runs")
def run_status_counts(c: sqlite3.Cursor, filters: RunFilters) -> dict[str, int]:
    """Runs by status, with a total, under the filters a listing of them takes."""
    _check_statuses(filters.statuses)
    sums = _pair_within_range(c, filters)
    if sums is not None and sums[2] in sums[:2]:
        # The workflow (or the tenant) holds every run of the range's hours: its filter
        # names them all, and the other's runs are counted ahead by the hour (a tenant's
        # runs of a store's one workflow: read entry by entry, 114-219 ms for a tenant's
        # 200,000 of a million runs, quiet since a time or not).
        return run_status_counts(c, replace(filters, **{"workflow" if sums[0] == sums[2] else "tenant": None}))
    if sums is not None:
        # The cheapest way a tenant's runs of a workflow within a range are counted.
        index, cost = _pair_s_way(filters, sums)
        outside = _outside_range_cost(c, filters, sums, cost)
        if sums[2] - sums[0] < min(sums[0], sums[1]):
            counted = _less_other_workflows(c, filters, sums, cost if outside is None else outside)
            if counted is not None:
                return counted
        return _counts(c, filters, index=index) if outside is None else _less_outside_range(c, filters)
    ahead = _heard_of_or_not(filters)
    at = filters.updated_before
    if at is None or not _STAMP.fullmatch(at):
        return _counts(c, filters)
    # Runs quiet since a time (the Stuck chip: pending or running, no news for an hour) are
    # those the filters name but for it, counted ahead, less those heard of since, counted
    # by the hours of their last event and creation: read entry by entry in the index of
    # last events, those were every run heard of in the last hour (33,000 where a day's runs
    # run still), and the quiet ones, where fewer, as many.
    statuses = filters.statuses or STATUSES
    if filters.tenant is not None and filters.workflow is not None and _only_statuses_besides(ahead, "tenant", "workflow"):
        # A tenant's runs of a workflow (the run history's Stuck chip with both filters):
        # counted ahead, less those heard of since, read in the index of last events (every
        # run heard of since, of any tenant or workflow, entry by entry: a live store's
        # last hour's), where the index of either read every run of the other, row by row.
        # (Within a range they are not counted by hour: _whole_hours refuses both.)
        marks = ",".join("?" * len(statuses))
        c.execute(
            f"SELECT status, COUNT(*) FROM runs {_LAST_EVENTS} WHERE status IN ({marks}) AND updated_at > ? AND tenant = ? AND workflow = ? "
            "GROUP BY status",
            [*statuses, at, filters.tenant, filters.workflow],
        )
        return _less_heard_of(c, filters, c.fetchall())
    if _only_statuses_besides(ahead, "tenant", "workflow"):
        # Every run's (the overview's Stuck count, the run history's under no other filter), a
        # tenant's or a workflow's.
        return _less_heard_of(c, filters, _heard_of_since(c, statuses, at, None, filters.tenant, filters.workflow).items())
    hours = _whole_hours(ahead)
    if hours is None:
        return _counts(c, filters)
    # A range's (the run history's "Last 30 days" and Stuck, a tenant's, a workflow's or
    # every run's): those created in its whole hours, and only those of the part-hours at its
    # ends read, run by run.
    first, last, parts = _range_parts(c, filters, hours)
    heard = [*_heard_of_since(c, statuses, at, (first, last), filters.tenant, filters.workflow).items()]
    for part in parts:
        heard += _part_counts(c, part, statuses, filters.tenant, filters.workflow, heard_after=at)
    return _less_heard_of(c, filters, heard, (first, last, parts))


_RangeParts = tuple[str, str, list[tuple[str, str, str, str, int]]]
"""A range's hours counted ahead and its part-hours (see :func:`_range_parts`)."""


def _less_heard_of(
    c: sqlite3.Cursor, filters: RunFilters, heard: Iterable[tuple[str, int]], pieces: _RangeParts | None = None
) -> dict[str, int]:
    """The runs the filters name but for their bound on the last event, counted ahead, by
    status, less those ``heard`` of since it (status, runs): the runs quiet since (``pieces``:
    their range's, worked out already)."""
    every = _counts(c, _heard_of_or_not(filters), pieces)
    return _by_status([*((s, n) for s, n in every.items() if s != "total"), *((s, -n) for s, n in heard)])


def _heard_of_since(
    c: sqlite3.Cursor, statuses: tuple[str, ...], at: str, created: tuple[str, str] | None = None,
    tenant: str | None = None, workflow: str | None = None,
) -> dict[str, int]:
    """Runs of each of ``statuses`` last heard of after ``at`` (a time stored in full), of
    those created in the hours ``created`` (the first and the last; None: every run) and of
    ``tenant`` or ``workflow`` (not both; None: every run): those of the hours after its
    hour from ``run_last_hours`` (``tenant_run_last_hours``, ``workflow_run_last_hours``),
    and those of the rest of its hour counted in the index of last events, or, where the
    rest is the longer half, the hour's less those of it heard of by then: at most half an
    hour's last events read."""
    hour = at[:13]
    marks = ",".join("?" * len(statuses))
    made, made_marks = (["created >= ?", "created <= ?"], [*created]) if created is not None else ([], [])
    theirs, their_marks = _matching({"tenant": tenant, "workflow": workflow}, ())
    table = "tenant_run_last_hours" if tenant is not None else "workflow_run_last_hours" if workflow is not None else "run_last_hours"
    c.execute(
        "SELECT status, SUM(CASE WHEN hour > ? THEN n ELSE 0 END), SUM(CASE WHEN hour = ? THEN n ELSE 0 END) "
        f'FROM "{table}"{_where_sql([*theirs, f"status IN ({marks})", "hour >= ?", *made])} GROUP BY status',
        [hour, hour, *their_marks, *statuses, hour, *made_marks],
    )
    after = {status: (int(later), int(within)) for status, later, within in c.fetchall()}
    # The rest of T's hour read in the index of last events, whose entries hold the runs'
    # creation time and tenant.
    picked, picked_marks = (
        (["created_at >= ?", "created_at <= ?"], [created[0] + _HOUR_START, created[1] + _HOUR_END])
        if created is not None else ([], [])
    )
    picked, picked_marks = [*picked, *theirs], [*picked_marks, *their_marks]
    heard: dict[str, int] = {}
    rest = _seconds_into_hour(at) >= 1800
    for status in statuses:
        later, within = after.get(status, (0, 0))
        if within:
            # A status at a time: grouped by status, SQLite sorts the entries in a temporary tree.
            bounds = ["updated_at > ?", "updated_at <= ?"] if rest else ["updated_at >= ?", "updated_at <= ?"]
            c.execute(
                f"SELECT COUNT(*) FROM runs {_LAST_EVENTS}{_where_sql(['status = ?', *bounds, *picked])}",
                [status, at, hour + _HOUR_END, *picked_marks] if rest else [status, hour + _HOUR_START, at, *picked_marks],
            )
            (n,) = c.fetchone()
            later += n if rest else within - n
        heard[status] = later
    return heard


_LAST_EVENTS = "INDEXED BY runs_by_status_updated_filtered"
"""The index of last events, named where runs heard of since a time are counted in it: bounded
by the time's traffic, not by the store. SQLite's planner, which has no statistics, may take
a workflow's index instead (its runs of the statuses, every one read: 10 ms for a workflow's
130,000 running runs where 33,000 runs were heard of since)."""


def _heard_of_or_not(filters: RunFilters) -> RunFilters:
    """The filters without their bound on the runs' last event."""
    return replace(filters, updated_before=None)


_COUNTED_AHEAD = (
    ((), "run_status_totals"),
    (("tenant",), "tenant_run_counts"),
    (("workflow",), "run_counts"),
    (("tenant", "workflow"), "workflow_tenant_run_counts"),
)
"""The runs counted ahead by status under no filter but statuses and those named: every
run's (the API's counts with statuses alone), a tenant's (the run history's chips under a
tenant filter), a workflow's (under a workflow filter, rehearsals with the rest as a listing
shows them; and its Stuck count's total), a tenant's runs of a workflow (both filters). In
their indexes they were read entry by entry, linear in the runs (every run's through the
stuck runs' index 17-26 ms for 100,000; a tenant's 14 ms for 12,000; a workflow's 119 ms
for a million; a tenant's runs of a workflow, row by row, 220 ms for 200,000)."""


def _counts(
    c: sqlite3.Cursor, filters: RunFilters, pieces: _RangeParts | None = None, index: str | None = None
) -> dict[str, int]:
    """:func:`run_status_counts`, from the counts kept ahead where they answer (``pieces``:
    the range's hours and part-hours, where worked out already; ``index``: the one a tenant's
    runs of a workflow within a range are read in, :func:`_pair_s_way`'s, where weighed)."""
    for named, table in _COUNTED_AHEAD:
        if all(getattr(filters, name) is not None for name in named) and _only_statuses_besides(filters, *named):
            where, marks = _matching({name: getattr(filters, name) for name in named}, filters.statuses)
            c.execute(f"SELECT status, SUM(n) FROM {table}{_where_sql(where)} GROUP BY status", marks)
            return _by_status(c.fetchall())
    hours = _whole_hours(filters)
    if hours is None:
        where, params = _runs_where(filters)
        table = _from("runs", where)
        if index is not None:
            # Every status named, so that the index is sought a status at a time (the
            # workflow's by the range).
            where, params = _runs_where(replace(filters, statuses=filters.statuses or STATUSES))
            table = f'"runs" INDEXED BY {index}'
        c.execute(f"SELECT status, COUNT(*) FROM {table}{_where_sql(where)} GROUP BY status", params)
        return _by_status(c.fetchall())
    # A date range and no other filter but a tenant or a workflow and statuses (the run
    # history's "Last 30 days", a tenant's, a workflow's): its whole hours are counted
    # already, in run_hours (a tenant's in tenant_run_hours, a workflow's in
    # workflow_run_hours), and only the runs of the part-hours at its ends are counted here,
    # in the index of creation times.
    first, last, parts = pieces if pieces is not None else _range_parts(c, filters, hours)
    statuses, marks = _matching({}, filters.statuses)
    named, named_marks = _matching({"tenant": filters.tenant, "workflow": filters.workflow}, ())
    table = "tenant_run_hours" if filters.tenant is not None else "workflow_run_hours" if filters.workflow is not None else "run_hours"
    c.execute(
        f'SELECT status, SUM(n) FROM "{table}"{_where_sql([*named, "hour >= ?", "hour <= ?", *statuses])} GROUP BY status',
        [*named_marks, first, last, *marks],
    )
    rows = c.fetchall()
    for part in parts:
        rows += _part_counts(c, part, filters.statuses, filters.tenant, filters.workflow)
    return _by_status(rows)


_PairSums = tuple[int, int, int, int, int]
"""A tenant's runs of a workflow within a range, weighed (see :func:`_pair_within_range`)."""


def _pair_within_range(c: sqlite3.Cursor, filters: RunFilters) -> _PairSums | None:
    """For a tenant's runs of a workflow within a range (no other filter but statuses and a
    bound on their last event), the runs of the statuses created in the range's hours: the
    workflow's, the tenant's and every run's (``workflow_run_hours``, ``tenant_run_hours``,
    ``run_hours``), the tenant's every run of them and the workflow's (``tenant_run_counts``,
    ``run_counts``); else None.

    Where either has every run, the other's are counted by the hour. Else, where the
    workflow's runs of the range are the fewer, they are counted in the workflow's index, its
    runs of the range sought there a status at a time, the tenant's read in its entries; else
    the tenant's every run of the statuses is read in its index (20 ms for a tenant's 200,000
    runs at a million, whatever the range; a workflow's of them, one of 40, 1-3 ms so; see
    :func:`_pair_s_way`)."""
    if filters.workflow is None or filters.tenant is None:
        return None
    dates = _date_range(filters)
    if dates is None or not _only_statuses_besides(filters, "starting_at", "ending_at", "tenant", "workflow", "updated_before"):
        return None
    statuses, marks = _matching({}, filters.statuses)
    hours = ["hour >= ?", "hour <= ?", *statuses]
    span = [hour_of(dates[0]), hour_of(dates[1]), *marks]
    c.execute(
        f"SELECT (SELECT SUM(n) FROM workflow_run_hours{_where_sql(['workflow = ?', *hours])}), "
        f"(SELECT SUM(n) FROM tenant_run_hours{_where_sql(['tenant = ?', *hours])}), "
        f"(SELECT SUM(n) FROM run_hours{_where_sql(hours)}), "
        f"(SELECT SUM(n) FROM tenant_run_counts{_where_sql(['tenant = ?', *statuses])}), "
        f"(SELECT SUM(n) FROM run_counts{_where_sql(['workflow = ?', *statuses])})",
        [filters.workflow, *span, filters.tenant, *span, *span, filters.tenant, *marks, filters.workflow, *marks],
    )
    workflow_s, tenant_s, every, tenant_all, workflow_all = c.fetchone()
    return int(workflow_s or 0), int(tenant_s or 0), int(every or 0), int(tenant_all or 0), int(workflow_all or 0)


_ROW_READ = 20
"""About how many index entries SQLite reads in the time of a row of the runs table found by
one (3.5 against 0.18 µs at a million runs)."""


def _pair_s_way(filters: RunFilters, sums: _PairSums) -> tuple[str, int]:
    """The index :func:`_counts` reads a tenant's runs of a workflow within a range in, every
    status named, and about how many entries it reads there (``sums``:
    :func:`_pair_within_range`): the workflow's, its runs of the range sought a status at a
    time (their entries hold the tenant and the last event), where fewer than the tenant's
    every run of the statuses, read a status at a time in its index (their entries hold the
    workflow and the creation time, not the last event: quiet since a time, a row read for
    each of the pair's, at most the tenant's runs of the range, where the fewer: were the
    workflow's fewer, its own way would be taken). Left to SQLite's planner, which has no
    statistics, a count of any status read the workflow's every run (96 ms for a tenant of
    none within a week, the workflow's runs 900,000), quiet since a time every run of the
    statuses quiet since then (24 ms)."""
    workflow_s, tenant_s, _, tenant_all, _ = sums
    tenant_way = tenant_all + (_ROW_READ * tenant_s if filters.updated_before is not None else 0)
    if workflow_s < tenant_way:
        return "runs_by_workflow_status_created_updated_seq_tenant", workflow_s
    return "runs_by_tenant_status_seq_workflow", tenant_way


def _less_other_workflows(c: sqlite3.Cursor, filters: RunFilters, sums: _PairSums, instead: int) -> dict[str, int] | None:
    """:func:`run_status_counts` of a tenant's runs of a workflow within a range, where the
    workflow holds most of the range's runs (fewer are the other workflows' than either the
    workflow's or the tenant's: ``sums``, :func:`_pair_within_range`): the tenant's, counted
    by the hour, less its runs of the other workflows. Read entry by entry in the workflow's
    index, or the tenant's every run in its own, they were linear in the workflow's runs of
    the range, or in the tenant's (64-173 ms for a tenant's 6,000-180,000 runs of a workflow
    of 90% of a million); None where the other way is cheaper.

    The other workflows are those whose runs were first and last created either side of the
    range's ends (``workflow_summaries``: a run has a creation time once triggered, and its
    trigger names its workflow and moves those times). Where every run of one was created
    within the range (a store younger than its "Last 30 days"), its tenant's runs are counted
    ahead (``workflow_tenant_run_counts``: a whole month's pair at a million runs, 9-11 ms
    read entry by entry), but not quiet since a time, which those counts do not know. The
    rest are sought by name in the workflow index, a status at a time, their entries alone
    (they hold the tenant and the last event): given as a subquery, PostgreSQL's planner,
    unable to weigh them, read the tenant's every run and its row (45 ms where it has 60,000
    of 300,000), where named it weighs them by its statistics and seeks them (8 ms).

    Each one sought costs a seek a status: the other way is taken (None) where those seeks
    are as many as the entries this way spares against ``instead``, the entries it reads
    (:func:`_pair_s_way`: the workflow's runs of the range in its index, or the tenant's
    every run of the statuses, whatever the range, in its own: two statuses no run of a live
    store's last 24 hours has, 10-11 ms at a million runs, where the range holds a handful
    of them; or :func:`_outside_range_cost`)."""
    dates = _date_range(filters)
    assert dates is not None and filters.workflow is not None
    workflow_s, _, every, _, _ = sums
    c.execute(
        "SELECT workflow, first_created_at >= ? AND last_created_at <= ? FROM workflow_summaries "
        "WHERE workflow <> ? AND first_created_at <= ? AND last_created_at >= ?",
        [dates[0], dates[1], filters.workflow, dates[1], dates[0]],
    )
    # A workflow whose every run was created within the range: its tenant's runs are counted
    # ahead, a row a status (unless quiet since a time, which those counts do not know).
    whole: list[str] = []
    others: list[str] = []
    for workflow, within in c.fetchall():
        (whole if within and filters.updated_before is None else others).append(workflow)
    if len(others) * len(filters.statuses or STATUSES) >= instead - (every - workflow_s):
        return None
    rows = [(s, n) for s, n in run_status_counts(c, replace(filters, workflow=None)).items() if s != "total"]
    theirs, their_marks = _matching({"tenant": filters.tenant}, filters.statuses)
    for chunk, marks in in_chunks(whole):
        c.execute(
            f"SELECT status, SUM(n) FROM workflow_tenant_run_counts{_where_sql([f'workflow IN ({marks})', *theirs])} GROUP BY status",
            [*chunk, *their_marks],
        )
        rows += [(s, -int(n)) for s, n in c.fetchall()]
    where, params = _runs_where(replace(filters, workflow=None, statuses=filters.statuses or STATUSES))
    for chunk, marks in in_chunks(others):
        c.execute(
            'SELECT status, COUNT(*) FROM "runs" INDEXED BY runs_by_workflow_status_created_updated_seq_tenant'
            f"{_where_sql([f'workflow IN ({marks})', *where])} GROUP BY status",
            [*chunk, *params],
        )
        rows += [(s, -n) for s, n in c.fetchall()]
    return _by_status(rows)


def _outside_range_cost(c: sqlite3.Cursor, filters: RunFilters, sums: _PairSums, than: int) -> int | None:
    """About how many entries :func:`_less_outside_range` reads for a tenant's runs of a
    workflow within a range (``sums``: :func:`_pair_within_range`), where fewer than
    ``than``; else None. The workflow's runs outside the range's hours and a seek a status
    either side, and quiet since a time, every run of the statuses heard of since its hour
    (``run_last_hours``)."""
    at = filters.updated_before
    if at is not None and not _STAMP.fullmatch(at):
        return None
    workflow_s, _, _, _, workflow_all = sums
    statuses = filters.statuses or STATUSES
    cost = workflow_all - workflow_s + 2 * len(statuses)
    if cost < than and at is not None:
        marks = ",".join("?" * len(statuses))
        c.execute(f"SELECT SUM(n) FROM run_last_hours WHERE status IN ({marks}) AND hour >= ?", [*statuses, at[:13]])
        cost += int(c.fetchone()[0] or 0)
    return cost if cost < than else None


def _less_outside_range(c: sqlite3.Cursor, filters: RunFilters) -> dict[str, int]:
    """:func:`run_status_counts` of a tenant's runs of a workflow within a range, as its
    every run's (counted ahead; quiet since a time, less those heard of since, read in the
    index of last events) less those created before the range or after it, sought in the
    workflow's index a status at a time, their entries alone (they hold the tenant and the
    last event): where the range holds most of the workflow's runs, of a store younger than
    its "Last 30 days" or a range of all but its first days, those were read in the range
    (the tenant's less the other workflows': 19-37 ms at a million runs, 100,000 of them
    the other workflows', where 30,000 of the workflow's were created before)."""
    dates = _date_range(filters)
    assert dates is not None
    every = replace(filters, starting_at=None, ending_at=None)
    rows = [(s, n) for s, n in run_status_counts(c, every).items() if s != "total"]
    where, params = _runs_where(replace(every, statuses=filters.statuses or STATUSES))
    for outside, end in (("created_at < ?", dates[0]), ("created_at > ?", dates[1])):
        c.execute(
            'SELECT status, COUNT(*) FROM "runs" INDEXED BY runs_by_workflow_status_created_updated_seq_tenant'
            f"{_where_sql([*where, outside])} GROUP BY status",
            [*params, end],
        )
        rows += [(s, -n) for s, n in c.fetchall()]
    return _by_status(rows)


def _part_counts(
    c: sqlite3.Cursor, part: tuple[str, str, str, str, int], statuses: tuple[str, ...], tenant: str | None,
    workflow: str | None, heard_after: str | None = None,
) -> list[tuple[str, int]]:
    """(status, runs) of a part-hour of a range (see :func:`_range_parts`: its runs added,
    or taken off, by its sign) of ``statuses`` (none: every one), of ``tenant`` or
    ``workflow`` (not both) if given, and last heard of after ``heard_after`` if given."""
    low_op, low, high_op, high, sign = part
    since, since_marks = (["updated_at > ?"], [heard_after]) if heard_after is not None else ([], [])
    if workflow is not None:
        # A workflow's part-hour in its index of statuses, creation and last event times,
        # each status sought (its runs alone, no row of the table).
        every, every_marks = _matching({}, statuses or STATUSES)
        where = ["workflow = ?", every[0], f"created_at {low_op} ?", f"created_at {high_op} ?", *since]
        c.execute(f"SELECT status, COUNT(*) FROM runs{_where_sql(where)} GROUP BY status", [workflow, *every_marks, low, high, *since_marks])
    else:
        # The part's runs first, then the tenant's or the statuses' among them: given every
        # condition at once, SQLite's planner, which has no statistics, walks every run of the
        # tenant, or every entry of the statuses in the stuck runs' index (the Stuck chip's
        # pending and running: 12-20 ms a part-hour for 100,000 of them). Their last event,
        # where asked, from their rows.
        theirs, their_marks = _matching({"tenant": tenant}, statuses)
        columns = "tenant, status, updated_at" if heard_after is not None else "tenant, status"
        c.execute(
            f"WITH part AS MATERIALIZED (SELECT {columns} FROM runs WHERE created_at {low_op} ? AND created_at {high_op} ?) "
            f"SELECT status, COUNT(*) FROM part{_where_sql([*theirs, *since])} GROUP BY status",
            [low, high, *their_marks, *since_marks],
        )
    return [(status, sign * int(n)) for status, n in c.fetchall()]


def _range_parts(c: sqlite3.Cursor, filters: RunFilters, hours: tuple[str, str]) -> _RangeParts:
    """The hours (first, last) of the filters' range of creation times counted ahead, and
    its part-hours, before the first and after the last (each none if the range starts, or
    ends, with a whole hour), as runs created between two times (``(">=", low, "<", high,
    sign)``: each end included or not) to count run by run, added (``sign`` 1) or taken off
    (-1); ``hours``: its whole hours (:func:`_whole_hours`).

    A part-hour longer than the rest of its hour (of the time the hour holds runs in) is its
    whole hour, counted ahead, less that rest: at about 10,000 runs an hour, a range's counts
    read at most half an hour's runs at either end, where a range from just after an hour
    began read nearly the whole hour's (7-12 ms at 10M events).
    """
    first, last = hours
    earliest, latest = _date_range(filters)  # type: ignore[misc]
    parts: list[tuple[str, str, str, str, int]] = []
    oldest = newest = None
    if first != earliest[:13] or last != latest[:13]:
        # The first and the last run's creation: the hours they lie in hold runs only after
        # (before) them (a live store's newest hour is filled up to now).
        c.execute("SELECT (SELECT MIN(created_at) FROM runs), (SELECT MAX(created_at) FROM runs)")
        oldest, newest = c.fetchone()
    if first != earliest[:13]:
        before, after = _either_side(earliest, oldest, newest)
        if before < after:
            first = earliest[:13]
            parts.append((">=", first + _HOUR_START, "<", earliest, -1))
        else:
            parts.append((">=", earliest, "<=", earliest[:13] + _HOUR_END, 1))
    if last != latest[:13]:
        before, after = _either_side(latest, oldest, newest)
        if after < before:
            last = latest[:13]
            parts.append((">", latest, "<=", last + _HOUR_END, -1))
        else:
            parts.append((">=", latest[:13] + _HOUR_START, "<=", latest, 1))
    return first, last, parts


def _seconds_into_hour(at: str) -> int:
    """How far into its hour a stored time lies, in whole seconds."""
    return int(at[14:16]) * 60 + int(at[17:19])


def _either_side(at: str, oldest: str | None, newest: str | None) -> tuple[int, int]:
    """The seconds of ``at``'s hour before ``at`` and after it that can hold runs: the
    hour's runs lie between the first run's creation (``oldest``) and the last's
    (``newest``), where either lies in it."""
    hour = at[:13]
    start = _seconds_into_hour(oldest) if oldest is not None and oldest[:13] == hour else 0
    end = _seconds_into_hour(newest) + 1 if newest is not None and newest[:13] == hour else 3600
    into = _seconds_into_hour(at)
    return max(0, min(into, end) - start), max(0, end - max(into, start))


_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_HOUR_START, _HOUR_END = ":00:00.000000Z", ":59:59.999999Z"


def _whole_hours(filters: RunFilters) -> tuple[str, str] | None:
    """The first and the last whole hour (run_hours' keys) within the filters' range of
    creation times, where that range is their only filter but a tenant or a workflow (not
    both) and statuses; else None."""
    if not _only_statuses_besides(filters, "starting_at", "ending_at", "tenant", "workflow"):
        return None
    if filters.tenant is not None and filters.workflow is not None:
        return None
    bounds = _date_range(filters)
    if bounds is None or not all(_STAMP.fullmatch(at) for at in bounds):
        return None
    earliest, latest = bounds
    first = earliest[:13] if earliest[13:] == _HOUR_START else _next_hour(earliest[:13])
    last = latest[:13] if latest[13:] == _HOUR_END else _next_hour(latest[:13], -1)
    if first is None or last is None or first > last:
        return None
    return first, last


def _only_statuses_besides(filters: RunFilters, *named: str) -> bool:
    """Whether the filters filter by nothing but statuses and the fields ``named``."""
    return not any(
        getattr(filters, f.name) not in (None, False)
        for f in fields(filters)
        if f.name not in named and f.name != "statuses"
    )


def _next_hour(hour: str, step: int = 1) -> str | None:
    """The hour after ``hour`` (before it, for a ``step`` of -1); None past the first or
    the last a time can have."""
    try:
        return (datetime.fromisoformat(hour) + timedelta(hours=step)).isoformat(timespec="hours")
    except OverflowError:
        return None


def _by_status(rows: list[Any]) -> dict[str, int]:
    """Runs by status, every status present, and their total, from (status, count) rows
    (a status's rows added up)."""
    by_status = dict.fromkeys(STATUSES, 0)
    for status, n in rows:
        by_status[status] = by_status.get(status, 0) + int(n)
    return {"total": sum(by_status.values()), **by_status}


EARLIEST = "0001-01-01T00:00:00.000000Z"
"""The earliest time a stored event can have (times are stored in UTC, to the microsecond)."""
LATEST = "9999-12-31T23:59:59.999999Z"
"""The latest time a stored event can have."""


def _date_range(filters: RunFilters) -> tuple[str, str] | None:
    """The filters' range of creation times, both ends given (None: no range)."""
    if filters.starting_at is None and filters.ending_at is None:
        return None
    return (
        filters.starting_at if filters.starting_at is not None else EARLIEST,
        filters.ending_at if filters.ending_at is not None else LATEST,
    )


def _runs_sought(filters: RunFilters) -> Sought:
    """The runs the filters name, as a page seeks them."""
    _check_statuses(filters.statuses)
    where, params = _matching({"workflow": filters.workflow, "tenant": filters.tenant, "recipient": filters.recipient}, ())
    if filters.has_errors:
        where.append(_WITH_ERRORS)
    return Sought(where, params, filters.statuses, _date_range(filters), filters.updated_before)


def _check_statuses(statuses: tuple[str, ...]) -> None:
    """:class:`BadQuery` if a status is not one a run can have."""
    unknown = set(statuses) - set(STATUSES)
    if unknown:
        raise BadQuery(f"unknown status {sorted(unknown)[0]!r}; expected one of {', '.join(STATUSES)}")


def _runs_where(filters: RunFilters) -> tuple[list[str], list[Any]]:
    """The conditions (bound parameters all) that pick the runs the filters name."""
    return _runs_sought(filters).conditions()


def delivery_entry(row: dict[str, Any]) -> dict[str, Any]:
    """A deliveries-view row as the JSON a user sees."""
    entry = {k: row[k] for k in DELIVERY_FIELDS}
    entry["recipient"] = orjson.loads(row["recipient_json"]) if row["recipient_json"] else None
    entry["ever_sent"] = bool(entry["ever_sent"])
    entry["workflow"] = row["workflow"]
    return entry


@reads("deliveries")
def list_deliveries(
    c: sqlite3.Cursor,
    filters: DeliveryFilters,
    *,
    page_size: int = 50,
    after: str | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """A page of deliveries, newest first."""
    where, params = _matching({"run_id": filters.run_id, "channel": filters.channel, "recipient": filters.recipient}, ())
    rows, page_info = _page(c, "deliveries", Sought(where, params, filters.statuses), page_size, after, before)
    return {"entries": [delivery_entry(r) for r in rows], "page_info": page_info}


@reads("deliveries")
def show_delivery(c: sqlite3.Cursor, message_id: str) -> dict[str, Any]:
    """One message's delivery."""
    c.execute("SELECT * FROM deliveries WHERE message_id = ?", (message_id,))
    row = c.fetchone()
    if row is None:
        raise NotFound(f"no message {message_id!r} in the store")
    return delivery_entry(dict(zip([d[0] for d in c.description], row)))


@reads("runs", "steps", "deliveries")
def show_run(c: sqlite3.Cursor, run_id: str) -> dict[str, Any]:
    """A run's record with its step trace and its deliveries."""
    c.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
    row = c.fetchone()
    if row is None:
        raise NotFound(f"no run {run_id!r} in the store")
    names = [d[0] for d in c.description]
    record = run_entry(dict(zip(names, row)), email_engagement(c, [run_id]).get(run_id, _NO_ENGAGEMENT))
    c.execute("SELECT * FROM deliveries WHERE run_id = ? ORDER BY queued_at, message_id", (run_id,))
    names = [d[0] for d in c.description]
    messages = [dict(zip(names, r)) for r in c.fetchall()]
    c.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY seq", (run_id,))
    names = [d[0] for d in c.description]
    steps = []
    for r in c.fetchall():
        s = dict(zip(names, r))
        steps.append(
            {
                "step": s["step"],
                "step_type": s["step_type"],
                "attempt": s["attempt"],
                "status": s["status"],
                "started_at": s["started_at"],
                "finished_at": s["finished_at"],
                "duration_seconds": s["duration_seconds"],
                "error": s["error"],
                "messages": [],
                "request": orjson.loads(s["request"]) if s["request"] else None,
                "response": orjson.loads(s["response"]) if s["response"] else None,
                "output": orjson.loads(s["output"]) if s["output"] else None,
            }
        )
    attach_messages(steps, messages)
    deliveries = [delivery_entry(m) for m in messages]
    return {**record, "steps": steps, "deliveries": deliveries}


def _run_streams(
    c: sqlite3.Cursor, backend: SQLBackend, run_id: str
) -> tuple[list[StoredEvent], list[list[StoredEvent]]]:
    """A run's stored events and the facts of the messages that name it (as the caught-up
    deliveries view knows them), every stream in log order, all read in one transaction."""
    rows = backend.stream_events(c, "run:" + run_id)
    if not rows:
        # An analyst's copy has views but no log of its own: say so, not "no such run".
        backend.refuse_if_copy("it holds no run's events to replay", "replay on that store")
        raise NotFound(f"no run {run_id!r} in the store")
    events = [StoredEvent(p, v, t, orjson.loads(s)) for p, v, t, s in rows]
    c.execute("SELECT message_id FROM deliveries WHERE run_id = ?", (run_id,))
    streams = ["message:" + mid for (mid,) in c.fetchall()]
    by_stream: dict[str, list[StoredEvent]] = {}
    for stream, position, state in backend.select_streams(c, streams, _MAX_POSITION):
        facts = by_stream.setdefault(stream, [])
        body = orjson.loads(state)
        facts.append(StoredEvent(position, len(facts) + 1, body["type"], body))
    return events, list(by_stream.values())


@reads("deliveries")
def replay_run(c: sqlite3.Cursor, run_id: str, backend: SQLBackend) -> list[HistoryEntry]:
    """The auditor's replay: the run's events and its messages' provider facts in log
    order, each with the run's record (as a runs listing shows it) right after it.

    Reads the views for which messages are the run's, so they must be caught up (as
    :func:`flowledger.ledger.query` does); the events themselves come from the log.
    """
    return run_history(run_id, *_run_streams(c, backend, run_id))


@dataclass(frozen=True)
class HistoryPage:
    """One page of a run's replay."""

    entries: list[HistoryEntry]
    """Its entries, in log order, each numbered from the replay's first."""
    after: int | None
    """The log position the next page starts after (None: this page is the last)."""
    total: int
    """The entries of the whole replay."""


@reads("deliveries")
def replay_page(c: sqlite3.Cursor, run_id: str, backend: SQLBackend, after: int, size: int) -> HistoryPage:
    """The entries of the run's replay (see :func:`replay_run`) after log position
    ``after``, at most ``size`` of them; only they get a record made, and the fold goes no
    further than the page."""
    events, messages = _run_streams(c, backend, run_id)
    entries = run_history(run_id, events, messages, after=after, limit=size + 1)
    more = len(entries) > size
    entries = entries[:size]
    return HistoryPage(entries, entries[-1].event.position if more else None, history_length(events, messages))


@reads("deliveries")
def replay_detail(c: sqlite3.Cursor, run_id: str, backend: SQLBackend, n: int | None = None) -> dict[str, Any]:
    """The run as :func:`show_run` gives it, as it stood right after the ``n``-th entry of
    its replay (None: after the last), rebuilt from the log alone."""
    return run_detail_at(run_id, *_run_streams(c, backend, run_id), n)


def _rate(numerator: float, denominator: float) -> float | None:
    return None if not denominator else round(100.0 * numerator / denominator, 2)


def _run_counts_where(workflow: str | None, include_rehearsals: bool) -> tuple[str, list[Any]]:
    """The WHERE (or nothing) of a read of run_counts: one workflow's rows or every one's,
    with or without rehearsals; and its parameters."""
    clauses, params = [], []
    if workflow is not None:
        clauses.append("workflow = ?")
        params.append(workflow)
    if not include_rehearsals:
        clauses.append("rehearsal = 0")
    return _where_sql(clauses), params


def _run_counts(c: sqlite3.Cursor, workflow: str | None, include_rehearsals: bool) -> dict[str, dict[str, int]]:
    where, params = _run_counts_where(workflow, include_rehearsals)
    c.execute(f"SELECT workflow, status, SUM(n) FROM run_counts{where} GROUP BY workflow, status", params)
    return _per_workflow(c.fetchall())


def _per_workflow(rows: list[Any], into: dict[str, dict[str, int]] | None = None) -> dict[str, dict[str, int]]:
    """Runs by status per workflow (every status present) from (workflow, status, count)
    rows, added to ``into`` if given."""
    out = {} if into is None else into
    for wf, status, n in rows:
        out.setdefault(wf, dict.fromkeys(STATUSES, 0))[status] = int(n)
    return out


@reads("runs")
def counts(c: sqlite3.Cursor, *, include_rehearsals: bool = False) -> dict[str, Any]:
    """Runs by status across all workflows and per workflow (the seed docs' /workflows/counts)."""
    per = _run_counts(c, None, include_rehearsals)
    total = dict.fromkeys(STATUSES, 0)
    by_workflow = {}
    for wf in sorted(per):
        statuses = per[wf]
        for s, n in statuses.items():
            total[s] += n
        by_workflow[wf] = {"total": sum(statuses.values()), **statuses}
    return {"total": sum(total.values()), **total, "by_workflow": by_workflow}


def _summary(c: sqlite3.Cursor, workflow: str) -> dict[str, Any] | None:
    c.execute("SELECT * FROM workflow_summaries WHERE workflow = ?", (workflow,))
    row = c.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in c.description], row))


def _last_completed(c: sqlite3.Cursor, workflow: str) -> str | None:
    """The latest completed_at of a workflow's runs: one seek of workflow_completions' key."""
    c.execute("SELECT MAX(completed_at) FROM workflow_completions WHERE workflow = ?", (workflow,))
    row = c.fetchone()
    return row[0] if row is not None else None


def _status_of(statuses: dict[str, int]) -> str:
    total = sum(statuses.values())
    if total == 0:
        return "idle"
    unfinished = statuses["pending"] + statuses["running"] + statuses["paused"]
    return "running" if unfinished else "completed"


@reads("runs")
def list_workflows(c: sqlite3.Cursor, *, include_rehearsals: bool = True) -> list[dict[str, Any]]:
    """Every workflow with runs: its status, run counts by status and first/last run."""
    return workflows_page(c, include_rehearsals=include_rehearsals)["entries"]  # type: ignore[no-any-return]


@reads("runs")
def workflows_page(
    c: sqlite3.Cursor,
    *,
    match: str | None = None,
    after: str | None = None,
    page_size: int | None = None,
    include_rehearsals: bool = True,
) -> dict[str, Any]:
    """Workflows with runs in key order, as :func:`list_workflows` gives them: those after
    the key ``after`` whose key holds ``match`` (in any case), ``page_size`` of them (None:
    all). ``next`` is the ``after`` of the next page (None: this is the last)."""
    if page_size is not None and not 1 <= page_size <= MAX_PAGE_SIZE:
        raise BadQuery(f"page size must be 1 to {MAX_PAGE_SIZE}, not {page_size}")
    sql = "SELECT workflow, first_created_at, last_created_at FROM workflow_summaries"
    params: list[Any] = []
    if after is not None:
        sql += " WHERE workflow > ?"
        params.append(after)
    sql += " ORDER BY workflow"
    # Matched here rather than in SQL: SQLite's lower() knows only ASCII, PostgreSQL's the
    # whole of Unicode, and a filter must find the same workflows on either.
    needle = match.casefold() if match else None
    if needle is None and page_size is not None:
        sql += " LIMIT ?"
        params.append(page_size + 1)
    c.execute(sql, params)
    rows: list[tuple[Any, ...]] = []
    wanted = None if page_size is None else page_size + 1
    while wanted is None or len(rows) < wanted:
        chunk = c.fetchmany(1000)
        if not chunk:
            break
        rows += [tuple(r) for r in chunk if needle is None or needle in r[0].casefold()]
    following = None
    if page_size is not None and len(rows) > page_size:
        rows = rows[:page_size]
        following = rows[-1][0]
    if page_size is None and needle is None and after is None:
        per = _run_counts(c, None, include_rehearsals)  # every workflow's: one pass over the counters
    else:
        per = _run_counts_of(c, [r[0] for r in rows], include_rehearsals)
    out = []
    for key, first, last in rows:
        statuses = per.get(key, dict.fromkeys(STATUSES, 0))
        out.append(
            {
                "key": key,
                "status": _status_of(statuses),
                "runs": {"total": sum(statuses.values()), **statuses},
                "first_run_at": first,
                "last_run_at": last,
            }
        )
    return {"entries": out, "next": following}


def _run_counts_of(c: sqlite3.Cursor, workflows: list[str], include_rehearsals: bool) -> dict[str, dict[str, int]]:
    """:func:`_run_counts` of these workflows only (a seek of the counters' key each)."""
    out: dict[str, dict[str, int]] = {}
    rehearsals = "" if include_rehearsals else " AND rehearsal = 0"
    for chunk, marks in in_chunks(workflows):
        c.execute(
            f"SELECT workflow, status, SUM(n) FROM run_counts WHERE workflow IN ({marks}){rehearsals} GROUP BY workflow, status",
            chunk,
        )
        _per_workflow(c.fetchall(), out)
    return out


@reads("runs")
def workflow_keys(c: sqlite3.Cursor, *, limit: int) -> list[str]:
    """The first ``limit`` keys of the workflows that have runs, in key order."""
    c.execute("SELECT workflow FROM workflow_summaries ORDER BY workflow LIMIT ?", (limit,))
    return [row[0] for row in c.fetchall()]


@reads("runs")
def workflow_count(c: sqlite3.Cursor) -> int:
    """How many workflows have runs."""
    c.execute("SELECT COUNT(*) FROM workflow_summaries")
    return int(c.fetchone()[0])


@reads("runs")
def run_totals(c: sqlite3.Cursor, *, workflow: str | None = None, include_rehearsals: bool = False) -> dict[str, int]:
    """Runs by status and their total, of every workflow or of one: :func:`counts` without
    its ``by_workflow``, summed in SQL (a workspace may have tens of thousands of workflows)."""
    where, params = _run_counts_where(workflow, include_rehearsals)
    # Every workflow's: the runs by status are counted already (not a row a workflow).
    table = "run_counts" if workflow is not None else "run_status_totals"
    c.execute(f'SELECT status, SUM(n) FROM "{table}"{where} GROUP BY status', params)
    return _by_status(c.fetchall())


@reads("runs", "steps", "deliveries")
def workflow_details(c: sqlite3.Cursor, workflow: str) -> dict[str, Any]:
    """The seed docs' workflow details: status, times, channels, totals, progress."""
    summary = _summary(c, workflow)
    if summary is None:
        raise NotFound(f"no workflow {workflow!r} in the store (no run of it was recorded)")
    statuses = _run_counts(c, workflow, True).get(workflow, dict.fromkeys(STATUSES, 0))
    total_runs = sum(statuses.values())
    processed = statuses["completed"] + statuses["failed"] + statuses["cancelled"]
    status = _status_of(statuses)
    completed_at = _last_completed(c, workflow) if status == "completed" else None
    started_at = summary["first_executed_at"]
    c.execute("SELECT channel, COUNT(*) FROM workflow_steps WHERE workflow = ? GROUP BY channel", (workflow,))
    step_counts = {ch: n for ch, n in c.fetchall()}
    c.execute("SELECT channel, metric, n FROM channel_counts WHERE workflow = ?", (workflow,))
    metrics: dict[str, dict[str, float]] = {}
    for ch, metric, n in c.fetchall():
        metrics.setdefault(ch, {})[metric] = n
    channels: dict[str, Any] = {}
    costs: dict[str, float] = {}
    totals = {"total_contacts": 0, "total_sent": 0, "total_failed": 0, "succeeded": 0}
    for ch in sorted(set(metrics) | {k for k in step_counts if k is not None}):
        m = metrics.get(ch, {})
        total, sent, failed = int(m.get("total", 0)), int(m.get("sent", 0)), int(m.get("failed", 0))
        succeeded = int(m.get("succeeded", 0))
        entry: dict[str, Any] = {
            "execution_count": step_counts.get(ch, 0),
            "total_contacts": total,
            "sent": sent,
            "failed": failed,
            "success_rate": _rate(succeeded, total),
        }
        # Its currencies are those of its priced messages (a price of 0.0 adds no millionth).
        channel_costs = {
            cur: m.get("cost_micros:" + cur, 0) / 1_000_000
            for cur in (k.removeprefix("priced:") for k in m if k.startswith("priced:"))
        }
        for cur, amount in channel_costs.items():
            costs[cur] = costs.get(cur, 0.0) + amount
        if ch in ("sms", "whatsapp"):
            # Amounts in different currencies do not add up: each is given apart, as in totals.
            entry["estimated_cost"] = round(sum(channel_costs.values(), 0.0), 6) if len(channel_costs) <= 1 else None
            if len(channel_costs) > 1:
                entry["costs_by_currency"] = {k: round(v, 6) for k, v in sorted(channel_costs.items())}
            entry["unpriced"] = int(m.get("unpriced", 0))
        delivered = int(m.get("delivered", 0))
        if ch == "sms":
            entry.update(delivered=delivered, delivery_rate=_rate(delivered, sent))
        if ch == "whatsapp":
            read = int(m.get("read", 0))
            entry.update(delivered=delivered, read=read, delivery_rate=_rate(delivered, sent), read_rate=_rate(read, delivered))
        if ch == "email":
            opened, clicked = int(m.get("opened", 0)), int(m.get("clicked", 0))
            human, bounced = int(m.get("human_opened", 0)), int(m.get("bounced", 0))
            entry.update(
                delivered=delivered,
                bounced=bounced,
                delivery_rate=_rate(delivered, sent),
                bounce_rate=_rate(bounced, sent),
                opened=opened,
                opens_total=int(m.get("opens_total", 0)),
                clicked=clicked,
                clicks_total=int(m.get("clicks_total", 0)),
                open_rate=_rate(opened, delivered),
                click_rate=_rate(clicked, delivered),
                human_opened=human,
                human_open_rate=_rate(human, delivered),
                complained=int(m.get("complained", 0)),
                unsubscribed=int(m.get("unsubscribed", 0)),
            )
        channels[ch] = entry
        totals["total_contacts"] += total
        totals["total_sent"] += sent
        totals["total_failed"] += failed
        totals["succeeded"] += succeeded
    currency = next(iter(costs)) if len(costs) == 1 else ("mixed" if costs else None)
    return {
        "key": workflow,
        "status": status,
        "created_at": summary["first_created_at"],
        "started_at": started_at,
        "completed_at": completed_at,
        "duration_seconds": seconds_between(started_at, completed_at),
        "workflow_executions_count": sum(step_counts.values()),
        "runs": {"total": total_runs, **statuses},
        "channels": channels,
        "totals": {
            "total_contacts": totals["total_contacts"],
            "total_sent": totals["total_sent"],
            "total_failed": totals["total_failed"],
            "overall_success_rate": _rate(totals["succeeded"], totals["total_contacts"]),
            "total_cost": round(sum(costs.values()), 6) if len(costs) == 1 else None if costs else 0.0,
            "currency": currency,
            **({"costs_by_currency": {k: round(v, 6) for k, v in sorted(costs.items())}} if len(costs) > 1 else {}),
        },
        "progress": {"processed": processed, "total": total_runs, "percentage": _rate(processed, total_runs)},
    }


@reads("runs", "steps")
def execution_stats(c: sqlite3.Cursor, workflow: str) -> dict[str, Any]:
    """Step attempts by state, in total, per node and per edge (the seed docs' Executions API)."""
    c.execute("SELECT step, step_type FROM workflow_steps WHERE workflow = ? ORDER BY step", (workflow,))
    types = dict(c.fetchall())
    if not types and _summary(c, workflow) is None:
        raise NotFound(f"no workflow {workflow!r} in the store (no run of it was recorded)")
    c.execute("SELECT step, status, n FROM step_counts WHERE workflow = ?", (workflow,))
    nodes: dict[str, dict[str, int]] = {s: dict.fromkeys(STEP_STATES, 0) for s in types}
    total = dict.fromkeys(STEP_STATES, 0)
    for step, status, n in c.fetchall():
        nodes.setdefault(step, dict.fromkeys(STEP_STATES, 0))[status] = int(n)
        total[status] += int(n)
    c.execute("SELECT from_step, to_step, status, n FROM edge_counts WHERE workflow = ?", (workflow,))
    edges: dict[tuple[str, str], dict[str, int]] = {}
    for a, b, status, n in c.fetchall():
        edges.setdefault((a, b), dict.fromkeys(STEP_STATES, 0))[status] = int(n)
    return {
        "workflow": workflow,
        "total": total,
        "nodes": [
            {"step": s, "step_type": types.get(s), "channel": CHANNEL_OF_STEP_TYPE.get(types.get(s) or ""), **counts_}
            for s, counts_ in sorted(nodes.items())
        ],
        "edges": [{"from": a, "to": b, **counts_} for (a, b), counts_ in sorted(edges.items())],
    }


RUNS_OVER_TIME = (
    "SELECT b.column1, h.status, SUM(h.n) FROM (VALUES {buckets}) AS b JOIN workflow_run_hours AS h "
    "ON h.workflow = ? AND h.hour >= b.column2 AND h.hour < b.column3 GROUP BY b.column1, h.status"
)
"""A workflow's runs in each time bucket (label, from, to) and status, summed from its hours'
counts (``workflow_run_hours``): a range of its key a bucket, whatever the workflow's number
of runs (``buckets``: the VALUES rows' ``?`` marks). An hour compares with a bucket's bounds,
a day, a month or a year, as its runs' creation times do: both begin with it."""
_BEFORE_ALL, _AFTER_ALL = "", "~"  # below and above every stored time, compared byte by byte


def _time_buckets(first: str, last: str, max_bars: int) -> list[tuple[str, str, str]]:
    """(label, from, to) buckets of days from ``first`` to ``last`` (stored times); months
    past ``max_bars`` days, years past as many months, several years a bucket past that.
    The first starts before all times and the last ends after all, so every run counts."""
    d0, d1 = date.fromisoformat(first[:10]), date.fromisoformat(last[:10])
    days = (d1 - d0).days + 1
    months = (d1.year - d0.year) * 12 + d1.month - d0.month + 1
    if days <= max_bars:
        starts = [(d0 + timedelta(days=k)).isoformat() for k in range(days + 1)]
    elif months <= max_bars:
        starts = [f"{d0.year + (d0.month - 1 + k) // 12:04d}-{(d0.month - 1 + k) % 12 + 1:02d}" for k in range(months + 1)]
    else:
        step = -(-(d1.year - d0.year + 1) // max_bars)
        starts = [f"{year:04d}" for year in range(d0.year, d1.year + step + 1, step)]
    # Each bucket's label is where it starts: a day, "2026-11" or "2026", which compare with
    # stored times as their prefixes do.
    bounds = [_BEFORE_ALL, *starts[1:-1], _AFTER_ALL]
    return [(starts[k], bounds[k], bounds[k + 1]) for k in range(len(starts) - 1)]


@reads("runs")
def runs_over_time(c: sqlite3.Cursor, workflow: str, *, max_bars: int = 62) -> list[tuple[str, str, int]]:
    """A workflow's runs by when they were created and their status now: (bucket, status,
    runs), in bucket order, empty ones left out. Buckets are days, or months or years when
    there would be more than ``max_bars`` of them (see :func:`_time_buckets`).

    Summed from the workflow's runs counted by hour of creation and status: at most its
    hours times the statuses of rows read, whatever its number of runs (counted a bucket and
    status at a time in its index, the chart read every run of it: linear in them).
    """
    summary = _summary(c, workflow)
    if summary is None or summary["first_created_at"] is None:
        return []
    buckets = _time_buckets(summary["first_created_at"], summary["last_created_at"], max_bars)
    c.execute(RUNS_OVER_TIME.format(buckets=",".join(["(?, ?, ?)"] * len(buckets))), [*(v for b in buckets for v in b), workflow])
    order = {b[0]: k for k, b in enumerate(buckets)}
    rows = [(label, status, int(n)) for label, status, n in c.fetchall() if n]
    return sorted(rows, key=lambda r: (order[r[0]], STATUSES.index(r[1])))


def _contact_sought(filters: RunFilters, contact: str) -> Sought:
    """The runs of :func:`_runs_sought` that :func:`_contact_conditions` picks."""
    sought = _runs_sought(filters)
    more, more_params = _contact_conditions(contact)
    return replace(sought, where=[*sought.where, *more], params=[*sought.params, *more_params])


def _contact_conditions(contact: str) -> tuple[list[str], list[Any]]:
    """The conditions picking the rows (runs or deliveries: both keep ``recipient`` and
    ``recipient_json``) whose recipient the pages show as ``contact`` (see
    :func:`flowledger.projections.run_record.recipient_label`): its id, plain or in a
    collection, or its collection and id joined by a "/". Ids and collections may hold "/"
    themselves, so the text is cut at each "/" in turn, but only where both sides could be
    ids: at most MAX_ID_LENGTH cuts of at most MAX_CONTACT_LENGTH characters, however long
    the text (one longer than MAX_CONTACT_LENGTH is cut nowhere: no row can match it)."""
    where: list[str] = []
    params: list[Any] = []
    ids = [contact]
    shapes: list[str] = []
    first, last = max(1, len(contact) - 1 - MAX_ID_LENGTH), min(MAX_ID_LENGTH, len(contact) - 2)
    for k in range(first, last + 1):
        if contact[k] != "/":
            continue
        collection, rid = contact[:k], contact[k + 1 :]
        ids.append(rid)
        # The view keeps a recipient's JSON as the event gave it: either order of its keys.
        shapes += [orjson.dumps({"id": rid, "collection": collection}).decode(), orjson.dumps({"collection": collection, "id": rid}).decode()]
    if not shapes:
        where.append("recipient = ?")
        params.append(contact)
        return where, params
    # The recipient column (its id) narrows by its index; the JSON says which collection.
    where.append(f"recipient IN ({','.join('?' * len(ids))}) AND (recipient = ? OR recipient_json IN ({','.join('?' * len(shapes))}))")
    params += [*ids, contact, *shapes]
    return where, params


@reads("runs", "deliveries")
def list_runs_by_contact(
    c: sqlite3.Cursor,
    filters: RunFilters,
    contact: str,
    *,
    page_size: int = 50,
    after: str | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """:func:`list_runs` of the runs for a recipient as the pages show it (``filters`` with
    no recipient of their own; see :func:`_contact_sought`)."""
    rows, page_info = _page(c, "runs", _contact_sought(filters, contact), page_size, after, before)
    engagement = email_engagement(c, [r["id"] for r in rows])
    entries = [run_entry(r, engagement.get(r["id"], _NO_ENGAGEMENT)) for r in rows]
    return {"entries": entries, "page_info": page_info}


@reads("deliveries")
def list_deliveries_by_contact(
    c: sqlite3.Cursor,
    filters: DeliveryFilters,
    contact: str,
    *,
    page_size: int = 50,
    after: str | None = None,
    before: str | None = None,
) -> dict[str, Any]:
    """:func:`list_deliveries` of the messages to a recipient as the pages show it
    (``filters`` with no recipient of their own; see :func:`_contact_conditions`)."""
    where, params = _matching({"run_id": filters.run_id, "channel": filters.channel}, ())
    more, more_params = _contact_conditions(contact)
    sought = Sought(where + more, params + more_params, filters.statuses)
    rows, page_info = _page(c, "deliveries", sought, page_size, after, before)
    return {"entries": [delivery_entry(r) for r in rows], "page_info": page_info}


@reads("runs")
def run_status_counts_by_contact(c: sqlite3.Cursor, filters: RunFilters, contact: str) -> dict[str, int]:
    """:func:`run_status_counts` of the runs :func:`list_runs_by_contact` lists."""
    mine, mine_params = _contact_conditions(contact)
    where, params = _runs_where(filters)
    # The contact's runs first (a contact has few, and its index gives them), then the other
    # filters over those alone. Given every condition at once, SQLite's planner, which has no
    # statistics, took the index of another filter and read every row it gave for its
    # recipient: every stuck run for the Stuck chip, every run of a tenant or a workflow
    # (150 ms at a million runs for a contact of five).
    c.execute(
        f"WITH contact_runs AS MATERIALIZED (SELECT {_CONTACT_COLUMNS} FROM runs WHERE {' AND '.join(mine)}) "
        f"SELECT status, COUNT(*) FROM contact_runs{_where_sql(where)} GROUP BY status",
        [*mine_params, *params],
    )
    return _by_status(c.fetchall())


_CONTACT_COLUMNS = "workflow, tenant, recipient, status, error_count, created_at, updated_at"
"""The columns of runs that :func:`_runs_where`'s conditions read."""
