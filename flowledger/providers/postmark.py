"""Postmark webhooks: one JSON object per request, protected by basic auth on the URL
(secrets `username` and `password`)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from flowledger.providers.base import (
    Adapter,
    ProviderFact,
    SignatureInvalid,
    SignedRequest,
    flowledger_id,
    iso_time,
    require_secret,
    required_text,
    same,
    text,
)

NAME = "postmark"

_KINDS = {
    "Delivery": "message.delivered",
    "Bounce": "message.bounced",
    "Open": "message.opened",
    "Click": "message.clicked",
    "SpamComplaint": "message.complained",
    "SubscriptionChange": "message.unsubscribed",
}
# Bounce types that are a delay, not a failure, or a reply to a message that was delivered
# (an out-of-office, an "unsubscribe me", an address change, a challenge to verify).
_SOFT = frozenset(
    {
        "SoftBounce", "Transient", "DnsError", "AutoResponder", "OpenRelayTest", "Unknown",
        "Subscribe", "Unsubscribe", "AddressChange", "ChallengeVerification",
    }
)
# A suppression for a hard bounce or a complaint (its own Bounce or SpamComplaint record
# reports it), or one the sender or Postmark made: not the recipient unsubscribing.
_NOT_UNSUBSCRIBED = frozenset({"HardBounce", "SpamComplaint"})
_NOT_RECIPIENT = frozenset({"Customer", "Admin"})
_TIME = {"Delivery": "DeliveredAt", "Bounce": "BouncedAt", "Open": "ReceivedAt", "Click": "ReceivedAt", "SpamComplaint": "BouncedAt", "SubscriptionChange": "ChangedAt"}


def verify(request: SignedRequest, secrets: dict[str, str], now: float) -> None:
    """Check the basic-auth credentials configured on the webhook URL."""
    user, password = require_secret(secrets, "username", NAME), require_secret(secrets, "password", NAME)
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        raise SignatureInvalid("postmark: basic auth is required")
    try:
        given_user, _, given_password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, ValueError):
        # binascii.Error is base64's own; a header with bytes that are no ASCII is a ValueError
        # (and so is UnicodeDecodeError): malformed credentials, a 401 as any wrong ones.
        raise SignatureInvalid("postmark: the basic auth header is malformed") from None
    # Both compared, always: an early exit would time which of the two was wrong.
    user_ok, password_ok = same(given_user, user), same(given_password, password)
    if not (user_ok and password_ok):
        raise SignatureInvalid("postmark: wrong credentials")


def parse(request: SignedRequest, now: float) -> list[dict[str, Any]]:
    """The one record of the request."""
    body = orjson.loads(request.body)
    if not isinstance(body, dict) or "RecordType" not in body:
        raise ValueError("postmark: expected an object with a RecordType")
    return [body]


def translate(item: dict[str, Any]) -> ProviderFact:
    """One Postmark record as a fact."""
    record = required_text(item, "RecordType")
    # The record's own time field, else the ones every record type may carry.
    names = (_TIME.get(record, "ReceivedAt"), "ReceivedAt", "DeliveredAt")
    name = next((n for n in names if item.get(n)), names[0])
    when = iso_time(item.get(name), name)
    kind = _KINDS.get(record)
    if record == "SubscriptionChange" and (
        not item.get("SuppressSending", True)  # a resubscription
        or text(item, "SuppressionReason") in _NOT_UNSUBSCRIBED
        or text(item, "Origin") in _NOT_RECIPIENT
    ):
        kind = None  # no fact about this message
    temporary = record == "Bounce" and text(item, "Type") in _SOFT
    provider_id = text(item, "MessageID")
    return ProviderFact(
        provider=NAME,
        dedupe_id=f"{record}:{item.get('ID') or provider_id}:{item[name]}",
        kind="message.failed" if temporary else kind,
        occurred_at=when,
        message_id=flowledger_id(item.get("Metadata")),
        provider_message_id=provider_id,
        recipient=text(item, "Recipient") or text(item, "Email"),
        url=text(item, "OriginalLink") if record == "Click" else None,
        reason=text(item, "Description") or text(item, "Details"),
        temporary=temporary,
        raw=item,
    )


ADAPTER = Adapter(NAME, verify, parse, translate)
