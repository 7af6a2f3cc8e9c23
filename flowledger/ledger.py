"""The library API: what each CLI command (and later the HTTP API) calls.

One function per capability, each taking an open :class:`EventLog`; all the input
handling (validation, redaction, canonical encoding) happens here, before the log sees an event.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import IO, Any

import orjson

from flowledger.domain import commands
from flowledger.domain.redaction import Redactor
from flowledger.domain.run import FAILED, NOT_TRIGGERED, UNFINISHED, Run
from flowledger.domain.vocabulary import EventInvalid, stream_of, validate_event
from flowledger.errors import (
    CommandRefused,
    ConnectionLost,
    FlowledgerError,
    InvalidInput,
    NotFound,
    Problem,
    RecordedButNotShown,
    StoreBusy,
    StoreError,
    StoreIsACopy,
    StoreReadOnly,
    ViewsNotFolded,
)
from flowledger.ingest import IngestOptions, candidates, read_items
from flowledger.ingest_process import forked_candidates, worth_forking
from flowledger import queries, secret_scan
from flowledger.projections.projector import ANSWERED, RECORDED, Projector, all_views, is_older
from flowledger.providers import ADAPTERS
from flowledger.providers.ingest import export_items, fact_event
from flowledger.projections.run_record import HistoryEntry
from flowledger.secret_scan import SecretScan
from flowledger.store import new_sqlite_file, open_log, sqlite_url
from flowledger.store.backend import store_name
from flowledger.store.staging import building_path, give_name, remove_building
from flowledger.store.inbox import Inbox, Item, open_inbox
from flowledger.store.log import AppendResult, Candidate, EventLog, utc_now, utc_stamp

_log = logging.getLogger(__name__)


def append_input(
    log: EventLog,
    stream: IO[bytes],
    options: IngestOptions | None = None,
    *,
    keep_going: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[AppendResult, list[Problem]]:
    """Append a JSON Lines (or JSON array) input, all or nothing.

    Raises :class:`InvalidInput` with every problem if any event is invalid or refused,
    and then stores nothing. With ``keep_going`` the good events are stored and the bad
    ones returned: the input's invalid items first, then the refused ones.
    """
    options = options or IngestOptions()
    rejected: list[Problem] = []
    if worth_forking(stream):
        # A second process reads and validates while this one appends (two cores).
        chunks = forked_candidates(stream, options, rejected, progress)
    else:
        chunks = candidates(read_items(stream, options.max_event_bytes, progress), options, rejected)
    with closing(chunks):
        result = log.append(chunks, keep_going=keep_going, rejected=rejected)
    return result, rejected


def append_batch(
    log: EventLog, events: list[Any], redactor: Redactor | None = None, max_event_bytes: int | None = None
) -> AppendResult:
    """Append a decoded batch (one JSON array, as the HTTP API takes it), all or nothing.

    Raises :class:`InvalidInput` if any event is invalid, larger than ``max_event_bytes``
    as JSON, or refused; each problem has the event's index in the batch.
    """
    redactor = redactor or Redactor()
    rejected: list[Problem] = []
    chunk = []
    for i, obj in enumerate(events):
        try:
            body = validate_event(obj)
        except EventInvalid as e:
            event_id = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
            rejected.extend(Problem(None, m, event_id, i) for m in e.messages)
            continue
        body = redactor.redact_event(body)
        candidate = Candidate.make(body, stream_of(body), index=i)
        # Measured as stored (compact JSON): the body's spacing is the client's, not the event's.
        if max_event_bytes is not None and (size := len(candidate.encoded)) > max_event_bytes:
            message = f"the event is {size:,} bytes; the limit is {max_event_bytes:,} bytes (FLOWLEDGER_MAX_EVENT_BYTES)"
            rejected.append(Problem(None, message, candidate.event_id, i))
            continue
        chunk.append(candidate)
    return log.append([chunk] if chunk else [], rejected=rejected)


@dataclass(frozen=True, slots=True)
class PreparedFacts:
    """A provider batch ready to store: each fact's event (validated, redacted, measured)
    with the provider id to match it by, and when the batch was received."""

    items: list[Item]
    """(event, provider message id to match by, or None where it names its message)."""
    received_at: str
    """When the batch was received: the facts' receipt time, wherever they are appended."""
    skipped: int
    """Facts that were no fact about delivery (Twilio's queued, say)."""


def prepare_provider_facts(
    facts: list[Any],
    redactor: Redactor | None = None,
    max_event_bytes: int | None = None,
    received_at: str | None = None,
) -> PreparedFacts:
    """Translate, validate, redact and measure provider facts (received now by default).

    Raises :class:`InvalidInput` naming each fact that is invalid or larger than
    ``max_event_bytes`` as stored (redacted, compact JSON), with its place among ``facts``;
    then nothing of the batch is kept.
    """
    redactor = redactor or Redactor()
    items: list[Item] = []
    skipped = 0
    problems: list[Problem] = []
    for i, fact in enumerate(facts):
        made = fact_event(fact)
        if made is None:
            skipped += 1
            continue
        event, match_by = made
        try:
            body = validate_event(event)
        except EventInvalid as e:
            problems.extend(Problem(None, f"{fact.provider} event {fact.dedupe_id}: {m}", event["id"], i) for m in e.messages)
            continue
        body = redactor.redact_event(body)
        if max_event_bytes is not None and (size := len(orjson.dumps(body))) > max_event_bytes:
            message = f"the event is {size:,} bytes; the limit is {max_event_bytes:,} bytes (FLOWLEDGER_MAX_EVENT_BYTES)"
            problems.append(Problem(None, f"{fact.provider} event {fact.dedupe_id}: {message}", event["id"], i))
            continue
        items.append((body, match_by))
    if problems:
        raise InvalidInput(problems)
    return PreparedFacts(items, received_at or utc_now(), skipped)


def append_prepared(log: EventLog, prepared: PreparedFacts, *, lock_timeout: float | None = None) -> AppendResult:
    """Append prepared provider facts, matching each to its message, as received when they
    were (waiting ``lock_timeout`` seconds for the write lock, if not the store's own)."""
    if not prepared.items:
        return AppendResult()  # all skipped: nothing to wait for the write lock for
    return log.append_provider_events(prepared.items, prepared.received_at, lock_timeout=lock_timeout)


def append_provider_facts(
    log: EventLog, facts: list[Any], redactor: Redactor | None = None, max_event_bytes: int | None = None
) -> tuple[AppendResult, int]:
    """Append provider facts (validated, redacted and limited like any event), matching each
    to its message; returns the result and how many facts were no fact about delivery (skipped)."""
    prepared = prepare_provider_facts(facts, redactor, max_event_bytes)
    return append_prepared(log, prepared), prepared.skipped


def append_export(
    log: EventLog, provider: str, data: bytes, redactor: Redactor | None = None, max_event_bytes: int | None = None
) -> tuple[AppendResult, int]:
    """Append a file exported from a provider (no signature: the file is the user's own)."""
    adapter = ADAPTERS[provider]
    try:
        facts = adapter.translate_all(export_items(provider, data))
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidInput([Problem(None, f"not a {provider} export: {e}")]) from None
    return append_provider_facts(log, facts, redactor, max_event_bytes)


WEBHOOK_LOCK_TIMEOUT = 2.0
"""Seconds a webhook waits for the log's write lock before its facts go to the inbox."""
WEBHOOK_DRAIN_TAKE = 20
"""Webhooks' facts a drain reads from the inbox at a time (a webhook request drains one take)."""
FOLLOW_DRAIN_TAKES = 10
"""Takes a follower drains before each catch-up (the rest waits for the next one)."""


def receive_provider_facts(log: EventLog, inbox: Inbox | None, prepared: PreparedFacts) -> tuple[AppendResult, int]:
    """Store a webhook's prepared facts; returns the result and how many were deferred.

    They go to the log, after the inbox's older facts (drained first, one take); while the
    inbox still holds older ones, or another process holds the log's write lock past the
    lock timeout, they go to the inbox instead, durably, to be appended later with their
    receipt time (then the result is empty and every fact is counted as deferred).
    """
    if not prepared.items or inbox is None:
        return append_prepared(log, prepared), 0
    # A provider waits seconds for an answer (Twilio 15), and a wait holds a server's thread
    # and connection: past a short one, the inbox keeps the facts.
    wait = short_wait(log)
    # Whether any wait, not how many: summing a long inbox twice a webhook would slow every
    # webhook exactly while a long import makes the inbox grow.
    if inbox.waiting():
        # Older facts go first where they can, so the log keeps the order they were received
        # in (the views do not need it: provider facts fold to the same record in any order).
        if not _drain_quietly(log, inbox, takes=1, lock_timeout=wait) or inbox.waiting():
            inbox.put(prepared.items, prepared.received_at)
            return AppendResult(), len(prepared.items)
    try:
        return append_prepared(log, prepared, lock_timeout=wait), 0
    except (StoreBusy, ConnectionLost):
        # Acknowledged once durably kept somewhere: a provider that never retries (Twilio's
        # status callbacks) would otherwise lose them. A connection the database server ended
        # (a restart, a failover) is not the next one's fate: the pool has dropped the dead
        # ones. Stored before it ended (during the commit), the facts drain as duplicates.
        inbox.put(prepared.items, prepared.received_at)
        return AppendResult(), len(prepared.items)


def short_wait(log: EventLog) -> float:
    """Seconds a webhook, or the follower's drain, waits for the log's write lock."""
    return min(WEBHOOK_LOCK_TIMEOUT, log.backend.lock_timeout)


def drain_inbox(log: EventLog, inbox: Inbox, *, takes: int | None = None, lock_timeout: float | None = None) -> int:
    """Append the inbox's facts to the log, oldest first, each webhook's with the time it
    was received, and delete them; returns how many facts were appended (or were there).

    Stops, the rest left for later, while another process holds the log's write lock, after
    ``takes`` reads of :data:`WEBHOOK_DRAIN_TAKE` webhooks (None: until a read finds fewer),
    or at once if another thread of this process is draining. A crash between an append
    and its delete appends those facts again at the next drain: each is then a duplicate.
    Facts the inbox kept for another store (deleted, its inbox left behind) are set aside.
    """
    if not inbox.drain_lock.acquire(blocking=False):
        return 0
    try:
        inbox.claim(utc_now())
        drained = 0
        taken = 0
        while takes is None or taken < takes:
            taken += 1
            batch = inbox.oldest(WEBHOOK_DRAIN_TAKE)
            done: list[int] = []
            try:
                for deferred in batch:
                    problem = deferred.problem or _invalid_fact(deferred.items)
                    if problem is None:
                        try:
                            log.append_provider_events(deferred.items, deferred.received_at, lock_timeout=lock_timeout)
                        except InvalidInput as e:
                            problem = "the log refused it: " + "; ".join(str(p) for p in e.problems)
                    if problem is not None:
                        # Never appendable: at the head of the inbox it would defer every later webhook.
                        inbox.set_aside(deferred.seq, problem, utc_now())
                        _log.warning(
                            "the webhook received at %s was set aside as a dead letter of the inbox: %s",
                            deferred.received_at, problem,
                        )
                        continue
                    done.append(deferred.seq)
                    drained += len(deferred.items)
            except StoreBusy:
                return drained
            finally:
                inbox.delete(done)
            if len(batch) < WEBHOOK_DRAIN_TAKE:
                break
        return drained
    finally:
        inbox.drain_lock.release()


def _invalid_fact(items: list[Item]) -> str | None:
    """Why a fact kept in the inbox is invalid under this version's vocabulary, or None."""
    # An inbox written by an earlier version may hold what this one refuses: appended
    # unchecked, it could stop every view's catch-up.
    for i, (body, _) in enumerate(items):
        try:
            validate_event(body)
        except EventInvalid as e:
            return f"fact {i} ({body.get('id')!r}) is invalid: " + "; ".join(e.messages)
    return None


def _drain_quietly(log: EventLog, inbox: Inbox, *, takes: int | None, lock_timeout: float | None = None) -> bool:
    """Drain the inbox, logging (not raising) why it could not; whether that went without error."""
    try:
        drain_inbox(log, inbox, takes=takes, lock_timeout=lock_timeout)
    except FlowledgerError as e:
        # The facts stay in the inbox; the views, and other webhooks, must not wait for them.
        _log.warning("could not append the webhook inbox's facts to the log (%s); they are kept for the next try", e)
        return False
    except Exception as e:  # noqa: BLE001
        # A bug, but a webhook is still acknowledged (kept in the inbox) and the views caught up.
        _log.error("could not append the webhook inbox's facts to the log: unexpected %s: %s; this is a bug in flowledger", type(e).__name__, e)
        return False
    return True


def scan_secrets(
    log: EventLog, redactor: Redactor | None = None, limit: int = 1000, progress: Callable[[int], None] | None = None
) -> SecretScan:
    """The stored events (and held provider facts) that today's redaction rules, with
    ``redactor``'s keys, would store differently: secrets an older release let into the log.
    Reads only; an analyst's copy, which holds no log, is refused. ``progress`` hears how
    many events each page read."""
    log.backend.refuse_if_copy(
        "it holds none of the events to scan", "scan that store instead: flowledger --store {source} scan-secrets"
    )
    return secret_scan.scan_secrets(log, redactor or Redactor.from_environment(), limit=limit, progress=progress)


def unmatched(log: EventLog, limit: int = 1000) -> list[dict[str, Any]]:
    """The provider facts waiting for their message."""
    return log.unmatched(limit)


def replay(log: EventLog, run_id: str, *, fresh: bool = True) -> list[HistoryEntry]:
    """A run's events and its messages' provider facts in log order, each with the run's
    record right after it (the auditor's view). Which messages are the run's comes from
    the deliveries view, caught up first unless not ``fresh``."""
    return query(log, queries.replay_run, run_id, log.backend, fresh=fresh)


def replay_page(log: EventLog, run_id: str, after: int, size: int, *, fresh: bool = True) -> queries.HistoryPage:
    """The entries of :func:`replay` after log position ``after``, at most ``size`` of them,
    with where the next page starts and how many entries the whole replay has."""
    return query(log, queries.replay_page, run_id, log.backend, after, size, fresh=fresh)  # type: ignore[no-any-return]


def catch_up(
    log: EventLog,
    view_names: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    inbox: Inbox | None = None,
    drain_wait: float | None = None,
) -> int:
    """Append the webhook inbox's facts to the log, then bring views (all by default) up to
    the end of the log; returns events read. ``inbox``: the store's (opened here by default);
    ``drain_wait``: seconds the drain waits for the write lock (default the store's)."""
    with _the_inbox(log, inbox) as box:
        if box is not None:
            _drain_quietly(log, box, takes=None, lock_timeout=drain_wait)
    projector = Projector(log.backend)
    views = [projector.view(n) for n in view_names] if view_names else None
    return projector.catch_up(views, progress=progress)


def rebuild(
    log: EventLog,
    view_names: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    into: EventLog | None = None,
) -> int:
    """Empty views (all by default) and fold them again from position 0; returns events read.

    With ``into``, the views are made in that store from this one's log (which stays put),
    and that store, unless it is this one, is marked as an analyst's copy (it refuses appends).
    Views a newer flowledger made are made again for this version: the way back to an
    older release on purpose (anything else of an older version refuses to touch them).
    """
    log.backend.refuse_if_copy(
        "its own log holds none of what its views show",
        "rebuild from that store: flowledger --store {source} rebuild --into {copy}",
    )
    projector = Projector(into.backend, source=log.backend) if into else Projector(log.backend)
    views = [projector.view(n) for n in view_names] if view_names else None
    try:
        return projector.rebuild(views, progress=progress, downgrade=True)
    except StoreReadOnly as e:
        if into is not None:
            raise
        # A role granted only rows (README) may append and fold, but not remake tables.
        raise StoreReadOnly(
            f"{e}; a rebuild in place remakes the views' tables (on PostgreSQL, the schema owner's "
            "to do): run it where the store can be written so, or fold a copy with "
            "`flowledger rebuild --into FILE.db`"
        ) from None


def rebuild_into(
    log: EventLog,
    into: str,
    view_names: Sequence[str] | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    lock_timeout: float = 60.0,
) -> int:
    """Fold ``log`` into the views of the store the URL ``into`` names (an analyst's copy,
    see :func:`rebuild`); returns events read.

    A SQLite file not there yet is made beside it under another name and takes its own
    only once every view is folded: a copy cut short (killed, interrupted, refused) is never
    one that looks finished and answers zeros; what a killed one left, the next removes.
    """
    final = new_sqlite_file(into)
    if final is None:
        target = open_log(into, lock_timeout=lock_timeout, create=True)
        try:
            return rebuild(log, view_names, progress=progress, into=target)
        finally:
            target.close()
    building = building_path(final)
    try:
        target = open_log(sqlite_url(building), lock_timeout=lock_timeout, create=True)
        try:
            n = rebuild(log, view_names, progress=progress, into=target)
        finally:
            target.close()
        try:
            give_name(building, final)
        except FileExistsError:
            raise StoreError(f"{final} was made by another process meanwhile; nothing was written to it") from None
    except StoreError as e:
        remove_building(building)
        # Its text names the files the copy was made in (a full disk, say), which are gone
        # now: the user asked for `final`.
        raise type(e)(f"the copy {final} was not made (what was folded of it is removed): {e}") from e
    except BaseException:
        remove_building(building)
        raise
    return n


def follow(
    log: EventLog,
    *,
    interval: float,
    should_stop: Callable[[], bool],
    on_applied: Callable[[int], None] | None = None,
    inbox: Inbox | None = None,
) -> None:
    """Keep every view caught up with the log until ``should_stop()``, appending the webhook
    inbox's facts to the log before each catch-up (while another process holds the write
    lock past :data:`WEBHOOK_LOCK_TIMEOUT`, at a later one). ``inbox``: the store's (opened
    here by default)."""
    with _the_inbox(log, inbox) as box:
        projector = Projector(log.backend) if box is None else _DrainingProjector(log, box)
        projector.follow(interval=interval, should_stop=should_stop, on_applied=on_applied)


class _DrainingProjector(Projector):
    """A projector that drains the webhook inbox into the log before each catch-up."""

    def __init__(self, log: EventLog, inbox: Inbox) -> None:
        super().__init__(log.backend)
        self._log = log
        self._inbox = inbox

    def catch_up(self, *args: Any, **kwargs: Any) -> int:
        """Drain (a few takes, waiting a webhook's short while for the write lock), then
        catch up as any projector does."""
        # The store's lock timeout (serve --lock-timeout 3600) would hold the views' catch-up
        # for the whole of an import: what the lock keeps waits for the next round instead.
        _drain_quietly(self._log, self._inbox, takes=FOLLOW_DRAIN_TAKES, lock_timeout=short_wait(self._log))
        return super().catch_up(*args, **kwargs)


@contextmanager
def _the_inbox(log: EventLog, inbox: Inbox | None) -> Iterator[Inbox | None]:
    """The inbox given, or the store's, opened for the block."""
    if inbox is not None:
        yield inbox
        return
    opened = open_inbox(log.backend)
    try:
        yield opened
    finally:
        if opened is not None:
            opened.close()


def inbox_count(log: EventLog, inbox: Inbox | None = None) -> int:
    """How many webhook facts wait in the inbox for the log's write lock: read from the
    inbox's kept count, not summed over its rows (a health probe asks every few seconds).
    Facts an inbox left behind keeps for another store wait for nothing: not counted."""
    with _the_inbox(log, inbox) as box:
        return 0 if box is None else box.count()


def inbox_dead_letters(log: EventLog, limit: int = 1000) -> list[dict[str, Any]]:
    """The webhooks set aside from the inbox because they can never be appended, oldest first:
    each with its seq, received_at, set_aside_at, reason, n (facts) and items (their JSON, as kept).
    Those an inbox left behind keeps for another store are listed with their reason before
    the next drain moves them (``set_aside_at`` None until it does)."""
    with _the_inbox(log, None) as box:
        return [] if box is None else box.dead_letters(limit)


def view_names() -> list[str]:
    """The names of the views, in the order they are folded."""
    return [v.name for v in all_views()]


def ensure_views(log: EventLog) -> None:
    """Look at the views' tables once for this process's store connection, as every fold and
    query does first: made where missing, another version's refused (the write lock is
    taken only to make them)."""
    Projector(log.backend).ensure_tables()


def head(log: EventLog) -> int:
    """The position of the last event in the log."""
    return Projector(log.backend).head()


def query(
    log: EventLog, fn: Callable[..., Any], *args: Any, fresh: bool = True, caught_up: bool = False, **kwargs: Any
) -> Any:
    """Run a query of :mod:`flowledger.queries` on the views, caught up first unless not
    ``fresh``; not ``fresh``, a view it reads that holds nothing yet of a log that holds
    events is refused (ViewsNotFolded), never answered from as if the store were empty,
    unless ``caught_up``: the caller caught the views up itself just before (a web page's
    later queries), and events appended since are simply not shown yet. Views another
    version of flowledger made again since this process made them are refused
    (ViewsRemadeByAnotherVersion): one small read of their versions, in the query's own
    transaction."""
    projector = Projector(log.backend)
    if fresh:
        projector.catch_up()
    else:
        projector.ensure_tables()
    names = queries.views_read(fn) or view_names()
    with log.backend.transaction(write=False) as c:
        # ensure_tables looks once per process: a server's, long before a newer version's
        # follower remade and folded the views, whose catch-up then finds nothing to fold.
        projector.refuse_other_versions(c, [projector.view(n) for n in names], done=ANSWERED)
        if not fresh and not caught_up:
            _refuse_views_not_folded(log, c, names)
        return fn(c, *args, **kwargs)


@dataclass(frozen=True, slots=True)
class ViewPosition:
    """Where one view stands against the log."""

    name: str
    position: int
    """The last log position the view has applied (0: none, or never made)."""
    behind: int | None
    """Events of the log it has not applied yet (None on an analyst's copy: see :class:`ViewsLag`)."""
    version: str | None
    """The view version its tables were made for, as the store records it (None: never made)."""
    this_version: str
    """The view version this flowledger folds."""

    @property
    def another_version(self) -> bool:
        """Whether another version of flowledger made the view's tables."""
        return self.version is not None and self.version != self.this_version


@dataclass(frozen=True, slots=True)
class ViewsLag:
    """How far the views are behind the log, all read in one transaction."""

    position: int
    """The position of the last event in the store's own log."""
    views: list[ViewPosition]
    """Every view, in the order they are folded."""
    copy_of: str | None
    """The store an analyst's copy was made from: its views follow that store's log, not
    this one's (which holds nothing), so how far behind they are is not known here."""
    another_version: str | None
    """Why this version cannot serve the views (another version of flowledger made them), or None."""

    @property
    def behind(self) -> int | None:
        """Events the slowest view has not applied yet (None on an analyst's copy)."""
        behind = [v.behind for v in self.views if v.behind is not None]
        return max(behind) if behind else None


def views_lag(log: EventLog) -> ViewsLag:
    """The log's last position and each view's (with its stored version and this flowledger's),
    in one read transaction: never catching up, nor making or remaking anything, so it works on
    a store this process may only read, and on views another version made (it says so rather
    than fail). One small read (what /healthz asks)."""
    b = log.backend
    copy_of = b.copy_of()  # read once per process: a store never stops being a copy
    projector = Projector(b)
    with b.transaction(write=False) as c:
        stored = projector.stored_versions(c)
        # Views never made have no tracking table yet (SQLite makes it with the first view).
        tracked = bool(stored) or b.tracking_table in b.table_names(c)
        positions = {v.name: b.get_position(c, v.name) if tracked else 0 for v in projector.views}
        head = b.max_position(c)
        another = projector.another_versions_views(c, stored)
    if another is not None:
        another = _another_versions_advice(projector, stored, another)
    views = [
        ViewPosition(
            v.name, positions[v.name], None if copy_of else head - positions[v.name], stored.get(v.name), str(v.version)
        )
        for v in projector.views
    ]
    return ViewsLag(head, views, copy_of, another)


def _another_versions_advice(projector: Projector, stored: dict[str, str], said: str) -> str:
    """What `flowledger views` says of views another version made: for an analyst's copy, how
    to make it again (it has no log to fold them from); for views an older version made, that
    this version's next catch-up folds them again or upgrades them in place (an upgrade not
    done yet, as likely as a rollback); else what a query would say."""
    try:
        projector.refuse_an_older_copy(stored)
    except StoreIsACopy as e:
        return str(e)
    older = [v for v in projector.views if v.name in stored and stored[v.name] != str(v.version)]
    if older and all(is_older(stored[v.name], v.version) for v in older):
        # Those made again are named; if none is, every one is upgraded in place.
        again = projector.views_made_again(stored)
        done = "makes them again and folds them from the log" if again else "upgrades them in place, from their own rows"
        older = again or older
        made = ", ".join(f"{v.name!r} (view version {stored[v.name]})" for v in older)
        wanted = ", ".join(str(v.version) for v in older)
        return (
            f"an older version of flowledger made the views {made}; this one folds view version {wanted}. The first "
            "command of this version that catches the views up (a query without --no-catch-up, `flowledger "
            f"project`, `flowledger serve`) {done}: the upgrade. If an older version's `flowledger rebuild` made "
            "them again on purpose (going back to it), run that version only"
        )
    return said


def _refuse_views_not_folded(log: EventLog, c: Any, names: Sequence[str]) -> None:
    """Raise ViewsNotFolded if any of the views ``names`` is at position 0 while the log
    holds events: made (again) but not folded yet, it would answer as if the store were
    empty. Read in the query's own transaction, so the query sees what was checked."""
    b = log.backend
    empty = [name for name in names if b.get_position(c, name) == 0]
    if not empty:
        return
    head = b.max_position(c)
    if not head:
        return  # an empty log: every view rightly holds nothing
    views = ", ".join(repr(name) for name in empty)
    raise ViewsNotFolded(
        f"the view{'s' if len(empty) != 1 else ''} {views} of the store {store_name(b)} "
        f"{'holds' if len(empty) == 1 else 'hold'} nothing yet of its log (events up to position {head}): "
        "not folded yet (after an upgrade that changed a view, the new version makes it again and folds "
        "it anew), so this query would answer as if the store were empty. Fold the views first: "
        f"`{shlex.join(['flowledger', '--store', store_name(b), 'project'])}` (by a process that may "
        "write the store), or run the query without --no-catch-up"
    )


def show_run(log: EventLog, run_id: str, *, fresh: bool = True) -> dict[str, Any]:
    """A run's current record, with its step trace and deliveries."""
    return query(log, queries.show_run, run_id, fresh=fresh)


def retry_run(
    log: EventLog, run_id: str, *, actor: str | None = None, reason: str | None = None, redactor: Redactor | None = None
) -> dict[str, Any]:
    """Retry a failed run: it goes back to pending with retry_count + 1 (``redactor``: as
    :func:`cancel_run`'s)."""
    log.backend.refuse_if_copy("a retry recorded here would never show")
    return _run_command(log, run_id, "retried", _refuse_retry, commands.retry_requested, actor, reason, redactor)


def _refuse_retry(run_id: str, state: Run) -> None:
    """Raise :class:`NotFound` or :class:`CommandRefused` unless the run can be retried now."""
    if state.status == NOT_TRIGGERED:
        raise NotFound(f"no run {run_id!r} in the store")
    if state.status != FAILED:
        raise CommandRefused(
            f"cannot retry run {run_id!r}: it is {state.status}; only a failed run can be retried"
        )
    if state.retry_count >= state.max_retries:
        raise CommandRefused(
            f"cannot retry run {run_id!r}: retry_count {state.retry_count} has reached max_retries {state.max_retries}"
        )


def cancel_run(
    log: EventLog, run_id: str, *, actor: str | None = None, reason: str | None = None, redactor: Redactor | None = None
) -> dict[str, Any]:
    """Cancel an unfinished run; the reason is redacted by ``redactor`` (by default the keys
    FLOWLEDGER_REDACT_KEYS adds; a server passes its own, --redact-key's too)."""
    log.backend.refuse_if_copy("a cancel recorded here would never show")
    return _run_command(log, run_id, "cancelled", _refuse_cancel, commands.cancel_requested, actor, reason, redactor)


def _run_command(
    log: EventLog,
    run_id: str,
    done: str,
    refuse: Callable[[str, Run], None],
    requested: Callable[..., dict[str, Any]],
    actor: str | None,
    reason: str | None,
    redactor: Redactor | None,
) -> dict[str, Any]:
    """An operator's command on one run: ``refuse`` looks at the run before the write (and
    again if the rules refuse it, to say why in its words); the run's record after it
    (``done``: what the command did, as the run's record would say it). Views another
    version of flowledger made are refused before the write: the record is read from them,
    and a command that says it failed must have stored nothing. Once recorded, a record
    that cannot be read back raises :class:`RecordedButNotShown`, which says so."""

    def look() -> None:
        refuse(run_id, log.run_state(run_id))

    look()
    _refuse_views_of_another_version(log)
    _record(log, requested(run_id, occurred_at=utc_now(), actor=actor, reason=reason), redactor, look)
    try:
        return show_run(log, run_id)
    except FlowledgerError as e:
        # Recorded: an error now would say the command failed, and the operator's second
        # try would be refused (a retried run is pending). The catch-up may meet another
        # process at the write lock, or views another version made since the check above.
        raise RecordedButNotShown(run_id, done, _rule_state(log, run_id), str(e)) from None


def _rule_state(log: EventLog, run_id: str) -> dict[str, Any] | None:
    """The run's status, retry_count and max_retries as the log's rules hold them (no view
    read), or None if the store cannot be read."""
    try:
        state = log.run_state(run_id)
    except FlowledgerError:
        return None
    return {"status": state.status, "retry_count": state.retry_count, "max_retries": state.max_retries}


def _refuse_views_of_another_version(log: EventLog) -> None:
    """Raise ViewsMadeByANewerVersion (or ViewsRemadeByAnotherVersion) unless the views are
    this version's, as the query that follows a command will find them."""
    projector = Projector(log.backend)
    # The check every projector makes (an older version refuses a newer one's views) ...
    projector.ensure_tables()
    # ... but once per process: a server's may have looked long before a newer version
    # remade the views.
    with log.backend.transaction(write=False) as c:
        projector.refuse_other_versions(c, done=RECORDED)


def _refuse_cancel(run_id: str, state: Run) -> None:
    """Raise :class:`NotFound` or :class:`CommandRefused` unless the run can be cancelled now."""
    if state.status == NOT_TRIGGERED:
        raise NotFound(f"no run {run_id!r} in the store")
    if state.status not in UNFINISHED:
        raise CommandRefused(
            f"cannot cancel run {run_id!r}: it is already {state.status}; "
            "only a pending, running or paused run can be cancelled"
        )


def cancel_by_key(
    log: EventLog,
    key: str,
    *,
    actor: str | None = None,
    reason: str | None = None,
    redactor: Redactor | None = None,
    tenant: str | None = None,
) -> list[str]:
    """Cancel every unfinished run triggered with a cancellation key, only the runs of
    ``tenant`` where it is given; returns their ids (``redactor``: as :func:`cancel_run`'s)."""
    now = utc_now()
    # One for every run cancelled, not one each.
    redactor = redactor or Redactor.from_environment()

    def make(run_id: str) -> Candidate:
        event = commands.cancel_requested(
            run_id, occurred_at=now, actor=actor, reason=reason, cancellation_key=key
        )
        return _validated(event, redactor)

    # Checked before any run is looked for: a bad reason, actor or key is refused whether
    # or not a run has the key, not only once one has.
    make("any-run")
    return log.append_to_unfinished_runs_with_key(key, make, tenant)


def _validated(event: dict[str, Any], redactor: Redactor | None = None) -> Candidate:
    """The command's event validated and redacted as any input's, ready to append."""
    try:
        body = validate_event(event)
    except EventInvalid as e:
        raise CommandRefused("; ".join(e.messages)) from None
    # An operator's reason is free text like any other ("token=… was revoked"): redacted alike.
    body = (redactor or Redactor.from_environment()).redact_event(body)
    return Candidate.make(body, stream_of(body))


def _record(log: EventLog, event: dict[str, Any], redactor: Redactor | None, recheck: Callable[[], None]) -> None:
    """Append a command's event; if the rules refuse it, raise what ``recheck`` (the
    command's own look at the run, taken again) says."""
    cand = _validated(event, redactor)
    try:
        log.append([[cand]])
    except InvalidInput as e:
        # The run changed between our look and the write lock: the rules had the last word.
        # Said as the first look says it: the rules' words name an event id made here,
        # which the operator never saw.
        recheck()
        raise CommandRefused(e.problems[0].message) from None
