"""The delivery record: every known fact of one message folded into its delivery state.

Provider webhooks arrive late, more than once and out of order, so the record is a
function of the *set* of a message's facts: they are deduplicated by log position and
ordered by when they happened (``occurred_at``), never by when they arrived. Any subset
of the facts, given in any order and with any repeats, gives the same record as that
subset would once complete: a view can refold a message whenever a new fact lands.

Stdlib only, so the fold has no stake in how the facts were stored or read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

STATUS_RANK: dict[str, int] = {
    "queued": 0,
    "sent": 1,
    "delivered": 2,
    "read": 3,
    "opened": 3,
    "clicked": 4,
}
"""The ladder of positive statuses: a positive fact raises the status, never lowers it."""

DELIVERY_FIELDS: tuple[str, ...] = (
    "message_id",
    "channel",
    "provider",
    "recipient",
    "run_id",
    "step",
    "status",
    "queued_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "opened_at",
    "clicked_at",
    "failed_at",
    "opens_total",
    "opens_unique",
    "clicks_total",
    "clicks_unique",
    "cost_amount",
    "cost_currency",
    "provider_message_id",
    "error",
    "ever_sent",
    "updated_at",
    "human_opened_at",
    "complained_at",
    "unsubscribed_at",
)
"""The record's keys, in the order they are shown."""

MACHINE_SECONDS = 5
"""An open or click this soon after delivery is a machine's (privacy proxy, link scanner)."""

# Timestamps are often whole seconds (SendGrid) or whole minutes (Twilio), so facts of
# one instant are common: the later stage of the same instant must be the one that stands
# (a bounce beats the delivery of the same second; an open or click beats the bounce).
_TIE_RANK = {
    "queued": 0,
    "sent": 1,
    "delivered": 2,
    "bounced": 3,
    "failed": 3,
    "read": 4,
    "opened": 4,
    "clicked": 5,
    "complained": 6,
    "unsubscribed": 6,
}
# What the recipient did about the message, not where it got to: no change of status.
_REACTIONS = frozenset({"complained", "unsubscribed"})
_NEGATIVE = frozenset({"bounced", "failed"})
# A bare `sent` proves nothing reached the recipient, so it cannot undo a failure.
_RECOVERING = frozenset({"delivered", "read", "opened", "clicked"})
# A bounce is the recipient's server refusing what the provider did send.
_SENT_PROOF = frozenset({"sent", "delivered", "read", "opened", "clicked", "bounced"})


def delivery_record(message_id: str, facts: Iterable[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """Fold the (log position, event body) facts of one message into its delivery record."""
    return dict(zip(DELIVERY_FIELDS, delivery_values(message_id, facts)))


def delivery_values(message_id: str, facts: Iterable[tuple[int, dict[str, Any]]]) -> tuple[Any, ...]:
    """The delivery record's values, in :data:`DELIVERY_FIELDS` order (what a view writes)."""
    # Each fact once (by log position), with its kind, ordered by when it happened. Last
    # resort on ties: the sender's event id, not the log position, so the record does not
    # depend on which of two same-second facts arrived first. Positions are unique, so the
    # sort never compares the kinds or bodies that ride along.
    kinds = _KIND_RANKS
    ordered = []
    seen: dict[int, dict[str, Any]] | None = None  # by position, once one comes out of log order
    last = -1
    for position, body in facts:
        found = kinds.get(body.get("type", ""))  # type: ignore[arg-type]
        if found is None:
            raise ValueError(f"not a message event: {body.get('type', '')!r}")
        if body.get("message_id", message_id) != message_id:
            raise ValueError(
                f"fact at position {position} is about message {body['message_id']!r}, not {message_id!r}"
            )
        if position > last:
            last = position  # in log order, as a view gives them: no position twice
            if seen is not None:
                seen[position] = body
        else:
            if seen is None:
                seen = {fact[3]: fact[5] for fact in ordered}
            known = seen.get(position)
            if known is not None:
                # One position is one stored event; two bodies for it means the caller
                # mixed logs, and keeping either would make the record depend on arrival order.
                if known != body:
                    raise ValueError(f"two different facts given for log position {position}")
                continue
            seen[position] = body
        kind, rank = found
        ordered.append((body["occurred_at"], rank, body.get("id", ""), position, kind, body))
    if not ordered:
        return (message_id, *_EMPTY)
    ordered.sort()

    status = "queued"
    setter: dict[str, Any] | None = None
    earliest: dict[str, str] = {}
    queued: dict[str, Any] | None = None
    urls: set[str] = set()
    opens = clicks = 0
    seen_open: list[dict[str, Any]] = []
    # Price and provider id are corrections, not stages: the latest word on them wins
    # (latest by time, then event id, position), the price whatever stage of the message
    # carried it, the provider id from the sends alone (what webhooks are matched by).
    priced: dict[str, Any] | None = None
    priced_at: tuple[Any, ...] = ()
    provider_id = None
    provider_id_at: tuple[Any, ...] = ()
    for at, _, event_id, position, kind, body in ordered:
        if kind not in earliest:
            earliest[kind] = at
        # The status (written out in the one loop: a rebuild's hottest).
        if kind == "queued":
            if queued is None:
                queued = body
        elif kind in _REACTIONS:
            pass  # what the recipient did about the message, not where it got to
        elif kind in _NEGATIVE:
            # A deferral or soft bounce is the provider trying again: never a failure. A
            # bounce after delivery is a real downgrade: the later negative fact stands.
            if not body.get("temporary"):
                status, setter = kind, body
        else:
            if kind == "opened":
                opens += 1
                seen_open.append(body)
            elif kind == "clicked":
                clicks += 1
                urls.add(body["url"])
                seen_open.append(body)
            if status in _NEGATIVE:
                # A soft bounce or deferral followed by a delivery never counts as failed
                # (a bare `sent` proves nothing reached the recipient: it undoes nothing).
                if kind in _RECOVERING:
                    status, setter = kind, None
            # `>=` so that of read and opened (same rung) the later one by the sort stands.
            elif STATUS_RANK[kind] >= STATUS_RANK[status]:
                status = kind
        if body.get("cost") is not None:
            latest = (at, event_id, position)
            if latest > priced_at:
                priced, priced_at = body, latest
        if kind == "sent" and body.get("provider_message_id") is not None:
            latest = (at, event_id, position)
            if latest > provider_id_at:
                provider_id, provider_id_at = body["provider_message_id"], latest

    if queued is not None:
        channel = queued["channel"]
        provider = queued.get("provider")
        recipient = queued["recipient"]
        # The record must not share a mutable object with the caller's event body.
        if isinstance(recipient, dict):
            recipient = dict(recipient)
        run_id = queued.get("run_id")
        step = queued.get("step")
    else:
        channel = provider = recipient = run_id = step = None
    get = earliest.get
    delivered = get("delivered")
    human = [b["occurred_at"] for b in seen_open if not _by_machine(b, delivered)] if seen_open else None
    # An open or a click proves delivery as much as a delivery receipt does, and a read
    # without a delivered is normal on WhatsApp; a click is an open the pixel never saw.
    opened_at = earlier(get("opened"), get("clicked"))
    delivered_at = earlier(earlier(delivered, get("read")), opened_at)
    if priced is not None:
        cost_amount, cost_currency = float(priced["cost"]["amount"]), priced["cost"]["currency"]
    else:
        cost_amount = cost_currency = None
    return (
        message_id,
        channel,
        provider,
        recipient,
        run_id,
        step,
        status,
        get("queued"),
        get("sent"),
        delivered_at,
        get("read"),
        opened_at,
        get("clicked"),
        setter["occurred_at"] if setter is not None else None,
        # A click with no open event is the one open it implies, so total >= unique.
        opens or (1 if clicks else 0),
        1 if opened_at else 0,
        clicks,
        len(urls),
        cost_amount,
        cost_currency,
        provider_id,
        # A negative fact is kept (setter) only while it sets the status: its kind is the status.
        _failure_text(status, setter) if setter is not None else None,
        not _SENT_PROOF.isdisjoint(earliest),
        ordered[-1][0],
        min(human) if human else None,
        get("complained"),
        get("unsubscribed"),
    )


_KIND_RANKS = {"message." + short: (short, rank) for short, rank in _TIE_RANK.items()}
# A message with no fact yet: every value but its id (and the zero counts) unknown.
_EMPTY = tuple(
    {"opens_total": 0, "opens_unique": 0, "clicks_total": 0, "clicks_unique": 0, "ever_sent": False}.get(f)
    for f in DELIVERY_FIELDS[1:]
)


def _by_machine(body: dict[str, Any], delivered_at: str | None) -> bool:
    if body.get("machine"):
        return True
    if delivered_at is None:
        return False
    gap = (datetime.fromisoformat(body["occurred_at"]) - datetime.fromisoformat(delivered_at)).total_seconds()
    return 0 <= gap < MACHINE_SECONDS


def earlier(a: str | None, b: str | None) -> str | None:
    """The earlier of two times, either of which may be unknown."""
    if a is None:
        return b
    return a if b is None or a <= b else b


def _failure_text(kind: str, body: dict[str, Any]) -> str:
    if kind == "bounced":
        return body.get("reason") or "bounced"
    error = body["error"]
    if isinstance(error, str):
        return error
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    # Compact and unsorted, like the run record's error text, so both views read alike.
    return json.dumps(error, separators=(",", ":"), ensure_ascii=False)
