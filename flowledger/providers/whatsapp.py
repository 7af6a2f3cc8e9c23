"""WhatsApp Cloud API (Meta) status webhooks.

``X-Hub-Signature-256`` is ``sha256=`` + the hex HMAC-SHA256 of the raw body with the app
secret (secret `app_secret`). Subscribing a URL is a GET handshake: :func:`handshake`
answers ``hub.challenge`` when ``hub.verify_token`` is the configured `verify_token`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

from flowledger.providers.base import (
    Adapter,
    ProviderFact,
    SignatureInvalid,
    SignedRequest,
    flowledger_id,
    bad_field,
    require_secret,
    required_text,
    same,
    text,
    unix_time,
)

NAME = "whatsapp"

_KINDS = {"sent": "message.sent", "delivered": "message.delivered", "read": "message.read", "failed": "message.failed"}


def verify(request: SignedRequest, secrets: dict[str, str], now: float) -> None:
    """Check X-Hub-Signature-256 over the raw body."""
    secret = require_secret(secrets, "app_secret", NAME)
    given = request.headers.get("x-hub-signature-256", "")
    expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    if not same(expected, given):
        raise SignatureInvalid("whatsapp: the signature does not match the body")


def handshake(params: dict[str, str], secrets: dict[str, str]) -> str:
    """The challenge to echo when Meta subscribes the webhook URL."""
    token = require_secret(secrets, "verify_token", NAME)
    if params.get("hub.mode") != "subscribe" or not same(params.get("hub.verify_token", ""), token):
        raise SignatureInvalid("whatsapp: the verify token does not match")
    return params.get("hub.challenge", "")


def parse(request: SignedRequest, now: float) -> list[dict[str, Any]]:
    """Every status in every change of every entry (messages and other fields are skipped)."""
    body = orjson.loads(request.body)
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise ValueError("whatsapp: expected an object with entry[]")
    return statuses(body)


def statuses(body: dict[str, Any]) -> list[Any]:
    """The statuses[] of every change of every entry of a notification."""
    found = []
    for i, entry in enumerate(_list(body, "entry", "entry")):
        if not isinstance(entry, dict):
            raise bad_field(f"entry[{i}]", "an object", entry)
        for j, change in enumerate(_list(entry, "changes", f"entry[{i}].changes")):
            where = f"entry[{i}].changes[{j}]"
            if not isinstance(change, dict):
                raise bad_field(where, "an object", change)
            value = change.get("value") or {}
            if not isinstance(value, dict):
                raise bad_field(f"{where}.value", "an object", value)
            found.extend(_list(value, "statuses", f"{where}.value.statuses"))
    return found


def _list(item: dict[str, Any], name: str, path: str) -> list[Any]:
    value = item.get(name) or []
    if not isinstance(value, list):
        raise bad_field(path, "a list", value)
    return value


def _opaque_id(data: Any) -> str | None:
    if not isinstance(data, str) or not data:
        return None
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    return flowledger_id(decoded) if isinstance(decoded, dict) else data


def translate(item: dict[str, Any]) -> ProviderFact:
    """One status as a fact."""
    status = required_text(item, "status")
    wamid = required_text(item, "id")
    errors = item.get("errors") or []
    if not isinstance(errors, list):
        raise bad_field("errors", "a list of error objects", errors)
    for i, e in enumerate(errors):
        if not isinstance(e, dict):
            raise bad_field(f"errors[{i}]", "an error object", e)
    reason = "; ".join(f"{e.get('code')}: {e.get('title') or e.get('message')}" for e in errors) or None
    return ProviderFact(
        provider=NAME,
        dedupe_id=f"{wamid}:{status}",
        kind=_KINDS.get(status),
        occurred_at=unix_time(item.get("timestamp")),
        message_id=_opaque_id(item.get("biz_opaque_callback_data")),
        provider_message_id=wamid,
        recipient=text(item, "recipient_id"),
        reason=reason,
        raw=item,
    )


ADAPTER = Adapter(NAME, verify, parse, translate)
