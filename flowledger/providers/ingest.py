"""From provider facts to log events, and reading files exported from providers."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

import orjson

from flowledger.providers import whatsapp
from flowledger.providers.base import ProviderFact

FORMATS = ("sendgrid", "mailgun", "postmark", "twilio", "whatsapp")
"""The providers whose exported files `append --format` reads."""


def fact_event(fact: ProviderFact) -> tuple[dict[str, Any], str | None] | None:
    """A fact as a flowledger event, with the provider id to match it by (None: it names its
    message already). None for a status that is no fact about delivery (Twilio's queued)."""
    if fact.kind is None:
        return None
    kind = fact.kind
    event: dict[str, Any] = {
        "id": f"{fact.provider}:{fact.dedupe_id}",
        "type": kind,
        "occurred_at": fact.occurred_at,
        "message_id": fact.message_id or f"unmatched:{fact.provider}:{fact.provider_message_id or fact.dedupe_id}",
        "provider": fact.provider,
        "raw": fact.raw,
    }
    if fact.provider_message_id:
        event["provider_message_id"] = fact.provider_message_id
    if kind == "message.clicked":
        event["url"] = fact.url or "(unknown)"
    if kind == "message.failed":
        event["error"] = fact.reason or f"{fact.provider} reported a failure"
    if kind == "message.bounced" and fact.reason:
        event["reason"] = fact.reason
    if fact.machine and kind in ("message.opened", "message.clicked"):
        event["machine"] = True
    if fact.temporary and kind in ("message.failed", "message.bounced"):
        event["temporary"] = True
    if fact.cost is not None:
        event["cost"] = fact.cost
    # A fact that names its message needs no matching; one that does not waits for the
    # message its provider id belongs to (an empty id never matches: it stays listed).
    match_by = None if fact.message_id else (fact.provider_message_id or "")
    return event, match_by


def export_items(provider: str, data: bytes, now: float | None = None) -> list[dict[str, Any]]:
    """The provider events in a file exported from (or saved webhooks of) a provider.

    Takes one JSON document (an array or an object) or JSON Lines; Twilio's also takes
    form-encoded lines, as its callbacks are sent, and Mailgun's pages of its Events API.
    """
    now = time.time() if now is None else now
    # Windows tools begin UTF-8 text with a byte-order mark: not part of the first event
    # (as `append` skips it in flowledger's own format).
    text = data.removeprefix(b"\xef\xbb\xbf").strip()
    documents: list[Any]
    try:
        documents = [orjson.loads(text)] if text else []
    except orjson.JSONDecodeError:
        documents = []
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                documents.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                if provider != "twilio":
                    raise ValueError(f"{provider}: a line is not JSON: {line[:60]!r}") from None
                documents.append(dict(parse_qsl(line.decode())))
    items: list[dict[str, Any]] = []
    for doc in documents:
        for obj in doc if isinstance(doc, list) else [doc]:
            items.extend(_items_of(provider, obj, now))
    return items


def _items_of(provider: str, obj: Any, now: float) -> list[dict[str, Any]]:
    if not isinstance(obj, dict):
        raise ValueError(f"{provider}: expected objects, got {type(obj).__name__}")
    if provider == "mailgun" and "event-data" in obj:
        return [obj["event-data"]]
    if provider == "mailgun" and "items" in obj and "paging" in obj:
        # A page saved from Mailgun's Events API: its items are the events webhooks send
        # as `event-data`; `paging` only says where the next page is.
        items = obj["items"]
        if not isinstance(items, list):
            raise ValueError(f'{provider}: field "items": expected a list of events, got {type(items).__name__}')
        return [event for item in items for event in _items_of(provider, item, now)]
    if provider == "whatsapp" and "entry" in obj:
        return whatsapp.statuses(obj)
    if provider == "twilio":
        # A saved callback keeps its own _received_at; without one it was not received now
        # (RawDlrDoneDate, else the import's time, stands in).
        return [{**obj, "_imported_at": now}]
    return [obj]
