"""The interface every provider adapter has, and what they share."""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from flowledger.errors import FlowledgerError

MAX_SIGNATURE_AGE = 300
"""Seconds a signed timestamp stays good: older requests are refused as replays."""

TOKENS_KEPT = 2 * MAX_SIGNATURE_AGE
"""Seconds a one-time token is remembered: past them its signed timestamp is stale anyway."""

FLOWLEDGER_ID_KEYS = ("flowledger_message_id", "flowledger-message-id", "message_id")
"""The keys a sender may put its flowledger message id under (custom args, metadata…)."""


class SignatureInvalid(FlowledgerError):
    """A webhook request that cannot be shown to come from its provider."""


@dataclass(frozen=True)
class SignedRequest:
    """What a webhook request brings to be checked."""

    body: bytes
    """The raw body, exactly as received."""
    headers: dict[str, str]
    """The headers, with lower-case names."""
    url: str = ""
    """The full URL the provider called (Twilio signs it)."""
    form: dict[str, str] = field(default_factory=dict)
    """The decoded form fields of a form-encoded body (Twilio)."""


@dataclass(frozen=True)
class ProviderFact:
    """One provider event, translated."""

    provider: str
    """Who sent it: sendgrid, mailgun, postmark, twilio or whatsapp."""
    dedupe_id: str
    """The provider's own id for this event: the idempotency key."""
    kind: str | None
    """The flowledger message event it is (message.delivered, …); None for a status that
    counts nowhere (Twilio's queued, say), kept but not a fact about delivery."""
    occurred_at: str
    """When it happened, UTC (RFC 3339)."""
    message_id: str | None
    """flowledger's message id, when the sender put it in the message (custom args, …)."""
    provider_message_id: str | None
    """The provider's id for the message."""
    recipient: str | None = None
    """Who the message was for, as the provider says."""
    url: str | None = None
    """The link clicked."""
    reason: str | None = None
    """Why it bounced or failed."""
    machine: bool = False
    """An open or click by a machine (privacy proxy, security scanner), not a person."""
    temporary: bool = False
    """A deferral or soft failure: never counts as failed."""
    cost: dict[str, Any] | None = None
    """What the provider charged, when it says."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The provider's event as it came (redacted before it is stored)."""


class TokenMemory(Protocol):
    """Where the one-time tokens of signed requests are remembered with their body's digest."""

    def first_body(self, key: str, digest: bytes, now: float, kept: float) -> bytes | None:
        """The digest first remembered under ``key`` (``digest`` itself if none was: now it
        is, for ``kept`` seconds); None where this memory cannot remember (the caller then
        uses this process's)."""


class ProcessTokens:
    """One-time tokens remembered by this process alone."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, bytes]] = {}
        """Tokens remembered, first forgotten first: until when, and their body's digest."""
        self._lock = threading.Lock()

    def first_body(self, key: str, digest: bytes, now: float, kept: float) -> bytes:
        """The digest first remembered under ``key`` (``digest`` itself if none was)."""
        with self._lock:
            while self.seen:
                first = next(iter(self.seen))
                if self.seen[first][0] >= now:
                    break
                del self.seen[first]
            return self.seen.setdefault(key, (now + kept, digest))[1]


PROCESS_TOKENS = ProcessTokens()
"""This process's memory of tokens, where no store remembers them (no server's inbox)."""


@dataclass(frozen=True)
class Adapter:
    """How one provider's webhooks are checked, read and translated."""

    name: str
    """The provider's name (the webhook URL's last part)."""
    verify: Callable[[SignedRequest, dict[str, str], float], None]
    """Raise :class:`SignatureInvalid` unless the request is the provider's (secrets, now)."""
    parse: Callable[[SignedRequest, float], list[dict[str, Any]]]
    """The provider events a request carries (now: when it was received)."""
    translate: Callable[[dict[str, Any]], ProviderFact]
    """One provider event as a fact."""
    one_time_token: Callable[[SignedRequest], str] | None = None
    """The token a verified request's signature covers instead of its body (Mailgun's), which
    may vouch for one body only; None where the signature covers the body."""

    def facts(
        self, request: SignedRequest, secrets: dict[str, str], now: float, tokens: TokenMemory | None = None,
    ) -> list[ProviderFact]:
        """Check a request, then translate every event it carries; ``tokens``: where one-time
        tokens are remembered (a store's, shared by its servers), else this process's memory."""
        self.verify(request, secrets, now)
        if self.one_time_token is not None:
            self.first_body_of(self.one_time_token(request), hashlib.sha256(request.body).digest(), now, tokens)
        return self.translate_all(self.parse(request, now))

    def first_body_of(self, token: str, digest: bytes, now: float, tokens: TokenMemory | None) -> None:
        """Refuse a verified token already seen with another body."""
        # The signature does not cover the body: while its timestamp is fresh, a captured
        # token would vouch for any events. A resend of the same body is let through (idempotent).
        key = f"{self.name}:{token}"
        first = None if tokens is None else tokens.first_body(key, digest, now, TOKENS_KEPT)
        if first is None:
            first = PROCESS_TOKENS.first_body(key, digest, now, TOKENS_KEPT)
        if first != digest:
            raise SignatureInvalid(f"{self.name}: this signature's token came with another body (a replay)")

    def translate_all(self, items: list[Any]) -> list[ProviderFact]:
        """Translate every event; a bad one is a ValueError naming it (by index, if several) and its field."""
        facts = []
        for i, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise ValueError(f"expected an event object (got {shown(item)})")
                facts.append(self.translate(item))
            except (ValueError, KeyError, TypeError) as e:
                # A KeyError's own text is just the key: say what it means.
                reason = f'field "{e.args[0]}": missing' if isinstance(e, KeyError) else str(e)
                where = f"event {i}: " if len(items) > 1 else ""
                raise ValueError(f"{where}{reason}") from None
        return facts


def shown(value: Any) -> str:
    """A payload value as an error message quotes it (null as nothing, long ones cut)."""
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


def bad_field(name: str, expected: str, value: Any) -> ValueError:
    """The error for a payload field that is not what a provider sends."""
    return ValueError(f'field "{name}": expected {expected} (got {shown(value)})')


def text(item: dict[str, Any], name: str, *, path: str | None = None) -> str | None:
    """A string field of a payload (None if absent or null)."""
    value = item.get(name)
    if value is None or isinstance(value, str):
        return value
    raise bad_field(path or name, "a string", value)


def required_text(item: dict[str, Any], name: str) -> str:
    """A string field a payload cannot go without."""
    value = item.get(name)
    if not isinstance(value, str):
        raise bad_field(name, "a string", value)
    return value


def mapping(item: dict[str, Any], name: str, *, path: str | None = None) -> dict[str, Any]:
    """An object field of a payload ({} if absent or null)."""
    value = item.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_field(path or name, "an object", value)
    return value


def unix_time(seconds: Any, name: str = "timestamp") -> str:
    """A unix timestamp (seconds, maybe fractional, maybe a string) as UTC RFC 3339."""
    try:
        if isinstance(seconds, bool):
            raise TypeError
        moment = datetime.fromtimestamp(float(seconds), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        # Not a number, or a number no calendar date has (1e20, NaN): the payload's fault.
        raise bad_field(name, "a unix time in seconds", seconds) from None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_time(value: Any, name: str) -> str:
    """An ISO 8601 timestamp with an offset (or Z) as UTC RFC 3339."""
    expected = "an ISO 8601 timestamp like 2019-11-05T16:33:54Z"
    if not isinstance(value, str):
        raise bad_field(name, expected, value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (ValueError, OverflowError):
        raise bad_field(name, expected, value) from None


def require_secret(secrets: dict[str, str], name: str, provider: str) -> str:
    """A configured secret; a provider with none configured takes no webhooks."""
    value = secrets.get(name)
    if not value:
        # Named as serve reads it (flowledger.api.app.secrets_from_environment).
        variable = f"FLOWLEDGER_{provider.upper()}_{name.upper()}"
        raise SignatureInvalid(f"no {name} is configured for {provider} ({variable}): its webhooks are refused")
    return value


def fresh(timestamp: Any, now: float, provider: str) -> None:
    """Refuse a signed timestamp older (or newer) than :data:`MAX_SIGNATURE_AGE`."""
    try:
        age = abs(now - float(timestamp))
    except (TypeError, ValueError):
        age = math.nan
    # float() takes "nan", whose age compares false with everything: it would never be stale.
    if math.isnan(age):
        raise SignatureInvalid(f"{provider}: the signed timestamp is not a number")
    if age > MAX_SIGNATURE_AGE:
        raise SignatureInvalid(f"{provider}: the signed timestamp is {age:.0f} s away from now (at most {MAX_SIGNATURE_AGE} s)")


def same(a: str, b: str) -> bool:
    """Compare two signatures in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())


def flowledger_id(*places: Any) -> str | None:
    """The first flowledger message id found in the given dicts (custom args, metadata…)."""
    for place in places:
        if isinstance(place, dict):
            for key in FLOWLEDGER_ID_KEYS:
                value = place.get(key)
                if isinstance(value, str) and value:
                    return value
    return None
