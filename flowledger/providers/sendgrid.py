"""SendGrid's Event Webhook: a JSON array of events, signed with ECDSA P-256.

The signature (header X-Twilio-Email-Event-Webhook-Signature, base64 DER) is over the
timestamp header (X-Twilio-Email-Event-Webhook-Timestamp) followed by the raw body; the
verification key is the base64 DER public key SendGrid shows (secret `public_key`).
"""

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
    fresh,
    require_secret,
    required_text,
    text,
    unix_time,
)

NAME = "sendgrid"
SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"

_KINDS = {
    "processed": "message.sent",
    "deferred": "message.failed",
    "delivered": "message.delivered",
    "bounce": "message.bounced",
    "dropped": "message.failed",
    "open": "message.opened",
    "click": "message.clicked",
    "spamreport": "message.complained",
    "unsubscribe": "message.unsubscribed",
    "group_unsubscribe": "message.unsubscribed",
}


def verify(request: SignedRequest, secrets: dict[str, str], now: float) -> None:
    """Check the ECDSA signature over timestamp + body, and that the timestamp is fresh."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    key_b64 = require_secret(secrets, "public_key", NAME)
    signature, timestamp = request.headers.get(SIGNATURE), request.headers.get(TIMESTAMP)
    if not signature or not timestamp:
        raise SignatureInvalid(f"sendgrid: the {SIGNATURE} and {TIMESTAMP} headers are required")
    fresh(timestamp, now, NAME)
    try:
        key = load_der_public_key(base64.b64decode(key_b64))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("not an elliptic-curve key")
        key.verify(base64.b64decode(signature), timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        raise SignatureInvalid("sendgrid: the signature does not match the body") from None


def parse(request: SignedRequest, now: float) -> list[dict[str, Any]]:
    """The events of the JSON array."""
    items = orjson.loads(request.body)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError("sendgrid: expected a JSON array of event objects")
    return items


def translate(item: dict[str, Any]) -> ProviderFact:
    """One SendGrid event as a fact."""
    event = required_text(item, "event")
    kind = _KINDS.get(event)
    temporary = event == "deferred" or (event == "bounce" and item.get("type") == "blocked")
    # sg_message_id is "<message id>.<filter info>": the part before the dot names the message.
    provider_id = (text(item, "sg_message_id") or "").split(".")[0] or None
    occurred_at = unix_time(item.get("timestamp"))
    return ProviderFact(
        provider=NAME,
        dedupe_id=text(item, "sg_event_id") or f"{provider_id}:{event}:{item.get('timestamp')}",
        kind=kind,
        occurred_at=occurred_at,
        message_id=flowledger_id(item, item.get("unique_args"), item.get("custom_args")),
        provider_message_id=provider_id,
        recipient=text(item, "email"),
        url=text(item, "url") if event == "click" else None,
        reason=text(item, "reason") or text(item, "response"),
        machine=bool(item.get("sg_machine_open")),
        temporary=temporary,
        raw=item,
    )


ADAPTER = Adapter(NAME, verify, parse, translate)
