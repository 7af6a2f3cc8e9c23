"""Mailgun webhooks: one JSON object per request, with the signature inside it.

``signature.signature`` is the hex HMAC-SHA256, with the webhook signing key (secret
`signing_key`), of ``signature.timestamp`` followed by ``signature.token``: it does not
cover the events, so a token seen again with another body is refused (see
:meth:`flowledger.providers.base.Adapter.facts`: a server remembers tokens in its store).
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
    fresh,
    mapping,
    require_secret,
    required_text,
    same,
    text,
    unix_time,
)

NAME = "mailgun"

_KINDS = {
    "accepted": "message.sent",
    "rejected": "message.failed",
    "delivered": "message.delivered",
    "opened": "message.opened",
    "clicked": "message.clicked",
    "unsubscribed": "message.unsubscribed",
    "complained": "message.complained",
}
# Permanent failures where Mailgun sent nothing (the address was on a suppression list):
# like SendGrid's dropped, a failure, not a bounce (a bounce proves the message was sent).
_NOT_SENT = frozenset({"suppress-bounce", "suppress-unsubscribe", "suppress-complaint"})
# Mailgun's own delivery-status codes for those drops (previously bounced, unsubscribed,
# complained): they tell it whatever the reason says (payloads with reason "bounce" carry them).
_NOT_SENT_CODES = frozenset({"605", "606", "607"})


def verify(request: SignedRequest, secrets: dict[str, str], now: float) -> None:
    """Check the HMAC of timestamp + token, and that the timestamp is fresh."""
    key = require_secret(secrets, "signing_key", NAME)
    try:
        signature = orjson.loads(request.body)["signature"]
        timestamp, token, given = str(signature["timestamp"]), str(signature["token"]), str(signature["signature"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise SignatureInvalid("mailgun: the body has no signature object") from None
    fresh(timestamp, now, NAME)
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not same(expected, given):
        raise SignatureInvalid("mailgun: the signature does not match")


def one_time_token(request: SignedRequest) -> str:
    """The token of a verified request: it may vouch for one body only."""
    return str(orjson.loads(request.body)["signature"]["token"])


def parse(request: SignedRequest, now: float) -> list[dict[str, Any]]:
    """The one event of the request."""
    body = orjson.loads(request.body)
    event = body.get("event-data") if isinstance(body, dict) else None
    if not isinstance(event, dict):
        raise ValueError("mailgun: expected an object with event-data")
    return [event]


def translate(item: dict[str, Any]) -> ProviderFact:
    """One Mailgun event as a fact."""
    event = required_text(item, "event")
    kind = _KINDS.get(event)
    temporary = False
    headers = mapping(mapping(item, "message"), "headers", path="message.headers")
    status = mapping(item, "delivery-status")
    if event == "failed":
        temporary = item.get("severity") == "temporary"
        not_sent = text(item, "reason") in _NOT_SENT or str(status.get("code")) in _NOT_SENT_CODES
        kind = "message.failed" if temporary or not_sent else "message.bounced"
    reject = mapping(item, "reject")
    return ProviderFact(
        provider=NAME,
        dedupe_id=required_text(item, "id"),
        kind=kind,
        occurred_at=unix_time(item.get("timestamp")),
        message_id=flowledger_id(item.get("user-variables")),
        provider_message_id=text(headers, "message-id", path="message.headers.message-id"),
        recipient=text(item, "recipient"),
        url=text(item, "url") if event == "clicked" else None,
        reason=text(status, "description", path="delivery-status.description")
        or text(status, "message", path="delivery-status.message")
        or text(reject, "description", path="reject.description")
        or text(reject, "reason", path="reject.reason")
        or text(item, "reason"),
        temporary=temporary,
        raw=item,
    )


ADAPTER = Adapter(NAME, verify, parse, translate, one_time_token=one_time_token)
