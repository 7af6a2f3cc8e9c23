"""SendGrid's Event Webhook: a JSON array of events, signed with ECDSA P-256.

The signature (header X-Twilio-Email-Event-Webhook-Signature, base64 DER) is over the
timestamp header (X-Twilio-Email-Event-Webhook-Timestamp) followed by the raw body; the
verification key is the base64 DER public key SendGrid shows (secret `public_key`), or the
same key as PEM (with its -----BEGIN PUBLIC KEY----- lines), as SendGrid shows it in places.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
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

KEY_VARIABLE = "FLOWLEDGER_SENDGRID_PUBLIC_KEY"
"""Where `flowledger serve` reads the verification key from (named in its errors)."""
_PEM = re.compile(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", re.S)

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
    # A key that is no key fails every request: say so, not that each signature is bad.
    key = public_key(require_secret(secrets, "public_key", NAME))
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature, timestamp = request.headers.get(SIGNATURE), request.headers.get(TIMESTAMP)
    if not signature or not timestamp:
        raise SignatureInvalid(f"sendgrid: the {SIGNATURE} and {TIMESTAMP} headers are required")
    fresh(timestamp, now, NAME)
    try:
        key.verify(base64.b64decode(signature), timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        raise SignatureInvalid("sendgrid: the signature does not match the body") from None


@functools.lru_cache(maxsize=8)
def public_key(configured: str) -> Any:
    """The verification key from its configured text (base64 DER, or PEM); a SignatureInvalid
    naming the variable if it is no P-256 public key, or if the cryptography package that
    checks it is missing (`flowledger serve` asks for it at start-up)."""
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_der_public_key
    except ImportError:
        raise SignatureInvalid(
            f"sendgrid: {KEY_VARIABLE} is set, but the cryptography package that checks its "
            "signatures is not installed: in flowledger's checkout, pip install '.[webhooks]'; its webhooks are refused"
        ) from None

    text = configured.strip()
    pem = _PEM.fullmatch(text)
    if pem:
        text = pem.group(1)
    elif "-----" in text:
        raise _malformed("expected the key's base64, or PEM from -----BEGIN PUBLIC KEY----- to -----END PUBLIC KEY-----")
    try:
        # Strict: a lenient decode drops the characters it cannot read and yields a wrong key.
        key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise _malformed("it does not decode to a public key (expected base64 DER, as SendGrid shows it)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise _malformed("expected an ECDSA P-256 key, as SendGrid shows it")
    return key


def _malformed(why: str) -> SignatureInvalid:
    return SignatureInvalid(f"sendgrid: the configured public_key ({KEY_VARIABLE}) is malformed: {why}; its webhooks are refused")


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
