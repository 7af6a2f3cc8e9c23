"""Twilio's SMS and WhatsApp status callbacks: form-encoded, one status per request.

``X-Twilio-Signature`` is the base64 HMAC-SHA1, with the auth token (secret `auth_token`),
of the full callback URL followed by every POST parameter, sorted by name, as name + value.
Twilio sends no time of its own: the receipt time stands in. (RawDlrDoneDate is the
carrier's YYMMDDhhmm with no time zone, and the zone differs between carriers, so it only
stands in for a saved callback that has no receipt time.) The dedupe key is MessageSid +
MessageStatus.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse, urlsplit, urlunsplit

from flowledger.providers.base import (
    Adapter,
    ProviderFact,
    SignatureInvalid,
    SignedRequest,
    require_secret,
    required_text,
    same,
    text,
    unix_time,
)

NAME = "twilio"
# What flowledger adds to a callback (when it was received, or imported): not Twilio's.
_OURS = frozenset({"_received_at", "_imported_at"})

_KINDS: dict[str, str | None] = {
    "accepted": None,
    "scheduled": None,
    "queued": None,
    "sending": None,
    "sent": "message.sent",
    "delivered": "message.delivered",
    "read": "message.read",
    "undelivered": "message.failed",
    "failed": "message.failed",
    "canceled": "message.failed",
}


def signature(url: str, form: dict[str, str], auth_token: str) -> str:
    """What Twilio signs a callback with."""
    payload = url + "".join(k + form[k] for k in sorted(form))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def signed_urls(url: str) -> list[str]:
    """The URL as called, and as Twilio may have signed it: without the port, or with the
    scheme's default one (Twilio drops the port of HTTPS callbacks, though not always)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return [url]
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if port is not None:
        other = parts.netloc.rpartition(":")[0]
    elif default is not None:
        other = f"{parts.netloc}:{default}"
    else:
        return [url]
    return [url, urlunsplit(parts._replace(netloc=other))]


def verify(request: SignedRequest, secrets: dict[str, str], now: float) -> None:
    """Check X-Twilio-Signature over the URL and the sorted form fields."""
    token = require_secret(secrets, "auth_token", NAME)
    given = request.headers.get("x-twilio-signature")
    if not given:
        raise SignatureInvalid("twilio: the X-Twilio-Signature header is required")
    fields = _fields(request)
    # Check every candidate (no early exit), each in constant time.
    matches = [same(signature(url, fields, token), given) for url in signed_urls(request.url)]
    if not any(matches):
        raise SignatureInvalid("twilio: the signature does not match the URL and parameters")


def _fields(request: SignedRequest) -> dict[str, str]:
    """The POST parameters, as the signature is checked over them and as they are read."""
    # A body sent without the form content type is still read as one: the signature must then
    # cover those fields too, else a signature over the URL alone would vouch for any body.
    if request.form:
        return dict(request.form)
    return {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def parse(request: SignedRequest, now: float) -> list[dict[str, Any]]:
    """The one status of the request, with when it was received."""
    form = _fields(request)
    if "MessageSid" not in form or "MessageStatus" not in form:
        raise ValueError("twilio: expected MessageSid and MessageStatus")
    # The message id the sender put in the callback URL (?flowledger_message_id=…).
    query = parse_qs(urlparse(request.url).query)
    if "flowledger_message_id" in query:
        form["flowledger_message_id"] = query["flowledger_message_id"][-1]
    return [{**form, "_received_at": now}]


def _done_date(value: str | None) -> str | None:
    # RawDlrDoneDate is YYMMDDhhmm, to the minute, in the carrier's own (unstated) zone:
    # read as UTC, the best there is when nothing else tells the time.
    if not value or len(value) != 10 or not value.isdigit():
        return None
    try:
        moment = datetime.strptime(value, "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None  # ten digits but no date (month 13): as if there were none
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _occurred_at(item: dict[str, Any]) -> str:
    # A callback received live is timed by its receipt: RawDlrDoneDate read as UTC is hours
    # off for a carrier in another zone (before the send, or in the future).
    if item.get("_received_at") is not None:
        return unix_time(item["_received_at"], "_received_at")
    return _done_date(text(item, "RawDlrDoneDate")) or unix_time(item.get("_imported_at"), "_imported_at")


def _reason(status: str, code: Any) -> str | None:
    # A scheduled message cancelled (by the sender) never left Twilio: no error code says so.
    if status == "canceled":
        return "canceled before it was sent" + (f" (Twilio error {code})" if code else "")
    return f"Twilio error {code}" if code else None


def translate(item: dict[str, Any]) -> ProviderFact:
    """One status callback as a fact."""
    status = required_text(item, "MessageStatus")
    sid = required_text(item, "MessageSid")
    to = text(item, "To") or ""
    raw = {k: v for k, v in item.items() if k not in _OURS}
    return ProviderFact(
        provider=NAME,
        dedupe_id=f"{sid}:{status}",
        kind=_KINDS.get(status),
        occurred_at=_occurred_at(item),
        message_id=text(item, "flowledger_message_id"),
        provider_message_id=sid,
        recipient=to.removeprefix("whatsapp:") or None,
        reason=_reason(status, item.get("ErrorCode")),
        raw=raw,
    )


ADAPTER = Adapter(NAME, verify, parse, translate)
