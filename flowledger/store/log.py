"""The event log: idempotent, rule-checked, all-or-nothing appends, and reads by stream.

An append runs in one write transaction. For each event it looks the id up (a stored
id with the same body is a duplicate, with another body a conflict: the same body is in
the same stream, so the stream's stored events tell which), checks a run event
against the run's rule state, and gives it the next version of its stream. The events,
their ids and the runs' new heads are written together, so a crash leaves either all of a
batch or none of it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
import re
from typing import Any

import orjson

from flowledger.domain.redaction import REDACTED
from flowledger.domain.run import UNFINISHED, Run
from flowledger.gc_pause import cyclic_gc_paused
from flowledger.errors import FactRefused, InvalidInput, NotFound, Problem
from flowledger.store.backend import SQLBackend


@dataclass(slots=True)
class Candidate:
    """A validated, redacted event ready to be appended."""

    line: int | None
    """Where it starts in its input (None for events made by commands)."""
    event_id: str
    """The sender's id."""
    type: str
    """The event type (stored as the eventsourcing topic)."""
    stream: str
    """The stream (eventsourcing originator id) it belongs to."""
    body: dict[str, Any]
    """The event as stored."""
    encoded: bytes
    """The body as canonical JSON (sorted keys): equal for a resend, not for a conflict."""
    source: str | None = None
    """The input text, kept only when refused events are to be written aside."""
    index: int | None = None
    """Its place in a batch, from 0 (for inputs that are one JSON array)."""

    @classmethod
    def make(
        cls,
        body: dict[str, Any],
        stream: str,
        line: int | None = None,
        source: str | None = None,
        index: int | None = None,
    ) -> Candidate:
        """Build from a validated, redacted body."""
        return cls(
            line, body["id"], body["type"], stream, body,
            orjson.dumps(body, option=orjson.OPT_SORT_KEYS), source, index,
        )


@dataclass
class AppendResult:
    """What an append did."""

    appended: int = 0
    """Events newly stored."""
    duplicates: int = 0
    """Events whose id was already stored with the same body."""
    problems: list[tuple[Candidate, Problem]] = field(default_factory=list)
    """Events refused (by the rules, or as id conflicts), with why."""
    held: int = 0
    """Provider facts kept aside until their message is known."""
    released: int = 0
    """Facts held before, stored now that their message is known (counted in appended)."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back from the log."""

    position: int
    """Its place in the whole log (the notification id)."""
    version: int
    """Its place in its stream, from 1."""
    type: str
    """The event type."""
    body: dict[str, Any]
    """The event, as stored (redacted, timestamps in UTC), with recorded_at."""


class EventLog:
    """The append-only log of workflow-run facts, over one store backend."""

    def __init__(self, backend: SQLBackend) -> None:
        self.backend = backend
        """Where the events live."""

    def close(self) -> None:
        """Release the store."""
        self.backend.close()

    def append(
        self,
        chunks: Iterable[list[Candidate]],
        *,
        keep_going: bool = False,
        rejected: list[Problem] | None = None,
    ) -> AppendResult:
        """Append every candidate of every chunk in one transaction.

        A refused event or an id conflict raises :class:`InvalidInput` listing all of
        them and stores nothing, unless ``keep_going``: then the rest is stored and the
        refused ones are returned in the result's ``problems``. ``rejected`` is filled by
        whoever makes the chunks with the input's invalid events, as it reads; if it holds
        any when the input ends, nothing is stored either (unless ``keep_going``).
        """
        self.backend.refuse_if_copy("what is appended here would never show")
        rejected = rejected if rejected is not None else []
        recorded_at = utc_now()
        chunks = iter(chunks)
        # Prepare the first chunk before taking the lock: small appends (webhooks)
        # then hold the lock only while they are checked and written.
        first = next(chunks, None)
        result = AppendResult()
        if first is None:
            if rejected and not keep_going:
                raise InvalidInput(rejected)
            return result
        b = self.backend
        with cyclic_gc_paused(), b.transaction(write=True, append=True) as c:
            for chunk in _chain(first, chunks):
                self._append_chunk(c, chunk, result, recorded_at)
            if (result.problems or rejected) and not keep_going:
                problems = rejected + [p for _, p in result.problems]
                problems.sort(key=lambda p: (p.line or 0, p.index or 0))
                raise InvalidInput(problems)
        return result

    def _append_chunk(
        self, c: Any, chunk: list[Candidate], result: AppendResult, recorded_at: str, *, provider: bool = False
    ) -> None:
        """Append one chunk (``provider``: of provider facts, whose stored id is a duplicate whatever the body)."""
        b = self.backend
        stamp = b',"recorded_at":"' + recorded_at.encode() + b'"}'
        chunk_ids = list(dict.fromkeys(cand.event_id for cand in chunk))
        claimed = b.claim_ids(c, chunk_ids)
        # Ids appended by this chunk, with their bodies; ids stored before are settled by
        # reading their candidate's stream (rare: resends and conflicts only).
        fresh: dict[str, bytes] = {}
        refused: set[str] = set()
        streams_read: dict[str, dict[str, bytes]] = {}
        run_streams = {cand.stream for cand in chunk if cand.stream.startswith("run:")}
        heads_raw = b.fetch_heads(c, run_streams)
        # Only runs keep a head row (their rule state). A message's version is left to the
        # insert, which reads the log's own key where it is about to write anyway.
        versions = {s: v for s, (v, _) in heads_raw.items()}
        runs: dict[str, Run] = {}
        events: list[tuple[str, int | None, str, str, bytes]] = []
        keys: list[tuple[str, str]] = []
        links: list[tuple[str, str]] = []
        touched_runs: set[str] = set()
        for cand in chunk:
            event_id = cand.event_id
            if event_id in fresh or event_id not in claimed:
                if provider:
                    # A redelivery may differ (a receipt time for occurred_at): the first stands.
                    same = True
                elif event_id in fresh:
                    same = fresh[event_id] == cand.encoded
                else:
                    if cand.stream not in streams_read:
                        streams_read[cand.stream] = _canonical_bodies(b.stream_states(c, cand.stream))
                    stored = streams_read[cand.stream].get(event_id)
                    same = stored == cand.encoded or (
                        stored is not None and same_but_redacted(orjson.loads(stored), cand.body)
                    )
                if same:
                    result.duplicates += 1
                else:
                    earlier = fresh.get(event_id) or streams_read.get(cand.stream, {}).get(event_id)
                    result.problems.append((cand, _conflict(cand, earlier)))
                continue
            body = cand.body
            stream = cand.stream
            if stream in run_streams:
                run = runs.get(stream)
                if run is None:
                    raw = heads_raw.get(stream)
                    state = orjson.loads(raw[1]) if raw and raw[1] else None
                    run = runs[stream] = Run.from_state(body["run_id"], state)
                try:
                    run.check(body)
                except FactRefused as e:
                    result.problems.append((cand, Problem(cand.line, str(e), cand.event_id, cand.index, refused=True)))
                    refused.add(event_id)
                    continue
                run.apply(body)
                touched_runs.add(stream)
                if cand.type == "run.triggered" and run.cancellation_key is not None:
                    keys.append((run.cancellation_key, run.id))
                version: int | None = versions.get(stream, 0) + 1
                versions[stream] = version  # type: ignore[assignment]
            else:
                version = None
                if "provider_message_id" in body and body["provider_message_id"]:
                    key = provider_key(body["provider_message_id"])
                    if key:
                        links.append((key, body["message_id"]))
            fresh[event_id] = cand.encoded
            # The stored state is the canonical body with recorded_at spliced in before its
            # closing brace: no second encoding of the event.
            events.append((stream, version, stream, cand.type, cand.encoded[:-1] + stamp))
        heads = [(s, versions[s], orjson.dumps(runs[s].to_state())) for s in touched_runs]
        # A refused event's id was claimed with the rest: give it back (unless a candidate
        # with the same id was stored), or a corrected resend would pass for a duplicate.
        if refused - fresh.keys():
            b.release_ids(c, refused - fresh.keys())
        b.insert(c, events, heads, keys)
        result.appended += len(events)
        if links:
            self._link_and_release(c, links, result, recorded_at)

    def _link_and_release(
        self, c: Any, links: list[tuple[str, str]], result: AppendResult, recorded_at: str
    ) -> None:
        """Record which message provider ids are, and store the facts held for them."""
        b = self.backend
        b.link(c, links)
        if not b.any_held(c):
            return  # the usual case: no provider fact is waiting for its message
        self._release(c, self._known(c, {p for p, _ in links}), result, recorded_at)

    def _known(self, c: Any, keys: set[str]) -> dict[str, str]:
        """The messages provider message ids (as :func:`provider_key` makes them) are known to be."""
        # A store from before ids were matched without brackets may have linked "<id>".
        found = self.backend.fetch_links(c, _spellings(keys))
        known = {}
        for key in keys:
            message_id = found.get(key) or found.get(f"<{key}>")
            if message_id is not None:
                known[key] = message_id
        return known

    def _release(self, c: Any, known: dict[str, str], result: AppendResult, recorded_at: str) -> None:
        """Store the facts held for provider ids whose messages are now known."""
        released = []
        for held_as, encoded in self.backend.release(c, _spellings(known)):
            # Held under the key, or (by a store from before) under "<key>".
            message_id = known[held_as] if held_as in known else known[held_as[1:-1]]
            body = {**orjson.loads(encoded), "message_id": message_id}
            released.append(Candidate.make(body, "message:" + message_id))
        if released:
            before = result.appended
            self._append_chunk(c, released, result, recorded_at, provider=True)
            result.released += result.appended - before

    def append_provider_events(
        self, items: list[tuple[dict[str, Any], str | None]], received_at: str, *, lock_timeout: float | None = None
    ) -> AppendResult:
        """Append provider facts, matching those that do not name their message.

        ``items`` are (validated, redacted event, provider message id to match by); the id
        is None when the event's message_id is already flowledger's. A fact whose provider
        id no message is known by yet is held (never dropped) and stored as soon as one is.
        The provider's key is a fact's identity: one whose id is stored, held or earlier in
        the batch is a duplicate, never a conflict (the first body stands). All in one
        transaction: nothing of the batch is stored if any fact is refused. ``lock_timeout``:
        seconds to wait for the write lock, if not the store's own (a webhook's shorter wait).
        """
        b = self.backend
        b.refuse_if_copy("what is appended here would never show")
        result = AppendResult()
        with b.transaction(write=True, append=True, lock_timeout=lock_timeout) as c:
            keyed = [(body, None if p is None else provider_key(p)) for body, p in items]
            links = self._known(c, {k for _, k in keyed if k})
            ready, held = [], []
            for body, key in keyed:
                if key is None or key in links:
                    if key is not None:
                        body = {**body, "message_id": links[key]}
                    ready.append(Candidate.make(body, "message:" + body["message_id"]))
                else:
                    held.append(
                        (body["id"], key, body.get("provider"), body["type"], body["occurred_at"], received_at, orjson.dumps(body))
                    )
            if held:
                # A fact stored before (matched then by flowledger's own id) is not held again.
                stored = b.stored_ids(c, [row[0] for row in held])
                result.duplicates += sum(1 for row in held if row[0] in stored)
                held = [row for row in held if row[0] not in stored]
            any_held = bool(ready) and b.any_held(c)
            if any_held:
                # A fact already held is one fact: the held copy stands until its message is known.
                waiting = b.held_ids(c, [cand.event_id for cand in ready])
                result.duplicates += sum(1 for cand in ready if cand.event_id in waiting)
                ready = [cand for cand in ready if cand.event_id not in waiting]
            # Hold first: a fact of this very batch may name the message they wait for.
            result.held = b.hold(c, held)
            result.duplicates += len(held) - result.held
            if ready:
                self._append_chunk(c, ready, result, received_at, provider=True)
            if any_held and links:
                # Facts held for a known message: a store from before ids were matched without
                # their angle brackets held some that way; the next fact of their message frees them.
                self._release(c, links, result, received_at)
            if result.problems:
                raise InvalidInput([p for _, p in result.problems])
        return result

    def unmatched(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The provider facts waiting for their message, oldest first."""
        with self.backend.transaction(write=False) as c:
            rows = self.backend.unmatched(c, limit)
        names = ("event_id", "provider_message_id", "provider", "type", "occurred_at", "received_at")
        return [dict(zip(names, r)) for r in rows]

    def append_to_unfinished_runs_with_key(
        self, key: str, make: Callable[[str], Candidate], tenant: str | None = None
    ) -> list[str]:
        """Append ``make(run_id)`` to every unfinished run triggered with a cancellation key
        (and, where ``tenant`` is given, for that tenant).

        The runs are found and the events appended in one write transaction, so a run
        that finishes meanwhile is either finished first (and left alone) or after.
        """
        b = self.backend
        b.refuse_if_copy("a cancel recorded here would never show")
        with b.transaction(write=True, append=True) as c:
            run_ids = b.runs_with_key(c, key)
            heads = b.fetch_heads(c, ["run:" + r for r in run_ids])
            targets = [
                r
                for r in run_ids
                if Run.from_state(r, orjson.loads(heads["run:" + r][1])).status in UNFINISHED
            ]
            if tenant is not None and targets:
                # The rules keep no tenant: the runs' triggers name it (few runs share a key).
                triggers = b.triggers(c, targets)
                targets = [r for r in targets if orjson.loads(triggers[r]).get("tenant") == tenant]
            if targets:
                result = AppendResult()
                self._append_chunk(c, [make(r) for r in targets], result, utc_now())
                if result.problems:
                    raise InvalidInput([p for _, p in result.problems])
        return targets

    # Reads.

    def run_events(self, run_id: str) -> list[StoredEvent]:
        """A run's events in order; :class:`NotFound` if it has none."""
        with self.backend.transaction(write=False) as c:
            rows = self.backend.stream_events(c, "run:" + run_id)
        if not rows:
            raise NotFound(f"no run {run_id!r} in the store")
        return [StoredEvent(p, v, t, orjson.loads(s)) for p, v, t, s in rows]

    def run_state(self, run_id: str) -> Run:
        """The rule state of a run (status NOT_TRIGGERED if there is no such run)."""
        with self.backend.transaction(write=False) as c:
            raw = self.backend.fetch_heads(c, ["run:" + run_id]).get("run:" + run_id)
        return Run.from_state(run_id, orjson.loads(raw[1]) if raw and raw[1] else None)

    def count(self) -> int:
        """How many events the log holds."""
        with self.backend.transaction(write=False) as c:
            return self.backend.count_events(c)


def provider_key(provider_message_id: str) -> str:
    """A provider's message id as it is matched: without one pair of surrounding angle brackets
    (an RFC 5322 Message-ID is the same id with or without them: Mailgun's send API gives
    "<id>", its webhooks "id")."""
    if provider_message_id[:1] == "<" and provider_message_id[-1:] == ">":
        return provider_message_id[1:-1]
    return provider_message_id


def _spellings(keys: Iterable[str]) -> list[str]:
    """Each matching key, and the same in angle brackets (as a store from before linked it)."""
    return [spelled for key in keys for spelled in (key, f"<{key}>")]


def utc_now() -> str:
    """The current time in the stored timestamp format."""
    return _stamp(datetime.now(UTC))


def utc_stamp(seconds: float) -> str:
    """A Unix time in the stored timestamp format (as :func:`utc_now` gives the current one)."""
    return _stamp(datetime.fromtimestamp(seconds, UTC))


def _stamp(moment: datetime) -> str:
    """A UTC datetime in the stored timestamp format."""
    # isoformat is several times faster than strftime, and this runs once per append.
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


def _chain(first: list[Candidate], rest: Iterator[list[Candidate]]) -> Iterator[list[Candidate]]:
    yield first
    yield from rest


def _canonical_bodies(states: list[bytes]) -> dict[str, bytes]:
    """Stored events by id, as the canonical JSON they were appended as (no recorded_at)."""
    bodies = {}
    for state in states:
        body = orjson.loads(state)
        body.pop("recorded_at", None)
        bodies[body["id"]] = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return bodies


def same_but_redacted(stored: Any, sent: Any) -> bool:
    """Whether two bodies are equal where neither holds :data:`REDACTED`: a resend of a stored event."""
    # The keys and patterns redacted may change between the first send and a resend (a
    # key added to FLOWLEDGER_REDACT_KEYS, a new default): the secret is gone either way,
    # so a redacted value on either side matches whatever the other side holds there (an
    # object or a list stored before its key became a secret too).
    if stored == REDACTED or sent == REDACTED:
        return True
    if isinstance(stored, dict):
        return (
            isinstance(sent, dict)
            and stored.keys() == sent.keys()
            and all(same_but_redacted(v, sent[k]) for k, v in stored.items())
        )
    if isinstance(stored, list):
        return (
            isinstance(sent, list)
            and len(stored) == len(sent)
            and all(same_but_redacted(a, b) for a, b in zip(stored, sent))
        )
    if type(stored) is not type(sent):
        return False
    if stored == sent:
        return True
    if isinstance(stored, str) and isinstance(sent, str):
        # A secret masked inside a string (a URL's token, a Bearer credential); a mask in
        # quotes stands for a bare value too (a rule that quotes the bare values it masks,
        # so that JSON stays JSON, may be newer than the stored text).
        loose_stored, loose_sent = _unquoted_masks(stored), _unquoted_masks(sent)
        return (
            _masked_match(loose_stored, sent)
            or _masked_match(loose_sent, stored)
            or _masks_meet(loose_stored, loose_sent)
        )
    return False


# A mask in quotes, escaped or not ("[REDACTED]", \"[REDACTED]\", '[REDACTED]').
_QUOTED_MASK = re.compile(r"""(\\*["'])\[REDACTED\]\1""")


def _unquoted_masks(text: str) -> str:
    """Text with the quotes around each mask dropped: the mask alone stands for them too."""
    return _QUOTED_MASK.sub(REDACTED, text) if REDACTED in text else text


def _masks_meet(a: str, b: str) -> bool:
    """Whether some text is both ``a`` and ``b`` with each REDACTED standing for any
    characters: one text redacted by two sets of rules, each masking a part of its own
    (``Authorization: [REDACTED] pk_1`` stored, ``Authorization: ApiKey [REDACTED]`` resent)."""
    # With a mask on each side, the two meet exactly where their fixed starts agree (one
    # begins the other) and so do their fixed ends: any middle fits inside the other's mask.
    if REDACTED not in a or REDACTED not in b:
        return False
    a_first, a_last = a[: a.index(REDACTED)], a[a.rindex(REDACTED) + len(REDACTED) :]
    b_first, b_last = b[: b.index(REDACTED)], b[b.rindex(REDACTED) + len(REDACTED) :]
    return (a_first.startswith(b_first) or b_first.startswith(a_first)) and (
        a_last.endswith(b_last) or b_last.endswith(a_last)
    )


def _masked_match(pattern: str, text: str) -> bool:
    """Whether text is pattern with each REDACTED in it standing for any characters."""
    if REDACTED not in pattern:
        return False
    # Each part found leftmost, in order, between the fixed first and last: linear, where a
    # regex of ".*" between the parts backtracks through every split of a text that fails.
    first, *middle, last = pattern.split(REDACTED)
    end = len(text) - len(last)
    if end < len(first) or not text.startswith(first) or not text.endswith(last):
        return False
    pos = len(first)
    for part in middle:
        found = text.find(part, pos, end)
        if found < 0:
            return False
        pos = found + len(part)
    return True


_CONFLICT_FIELDS_SHOWN = 5
"""The most differing fields an id conflict's message names."""


def _conflict(cand: Candidate, earlier: bytes | None) -> Problem:
    """The problem of an id stored (or earlier in the batch) with another body, naming the
    fields that differ, never their values (they may be secrets the log redacted)."""
    if earlier is None:
        # Stored in another stream: for another run or message than this body names.
        where = " (for another run or message)"
    else:
        stored = orjson.loads(earlier)
        names = sorted(
            k for k in stored.keys() | cand.body.keys()
            # A field only one side has differs; one redacted on either side is the same
            # where the other holds anything there, as the duplicate check has it.
            if k not in stored or k not in cand.body or not same_but_redacted(stored[k], cand.body[k])
        )
        shown = ", ".join(names[:_CONFLICT_FIELDS_SHOWN]) + (", …" if len(names) > _CONFLICT_FIELDS_SHOWN else "")
        where = f" (it differs in {shown})" if names else ""
    return Problem(
        cand.line,
        f"event id {cand.event_id!r} is already stored with a different body{where} "
        "(an id is an idempotency key: resend the same body, or use a new id)",
        cand.event_id,
        cand.index,
        refused=True,
    )

