"""Redaction of secrets before an event is stored.

The log cannot be edited, so a secret that reaches it stays there: every way in runs
events through a :class:`Redactor` before they are encoded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"
"""What a secret value is replaced by."""

DEFAULT_SECRET_KEYS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "api_key",
        "apikey",
        "x_api_key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "cookie",
        "set_cookie",
        "private_key",
        "secret_key",
        "session_token",
        "x_auth_token",
        "aws_secret_access_key",
    }
)
"""Keys whose values are secrets, compared in any case and spelling (see :func:`normalize_key`)."""

FREE_FORM_FIELDS = ("data", "output", "request", "response", "error", "raw")
"""The event fields that may hold anything, and so may hold secrets."""


def normalize_key(key: str) -> str:
    """Fold a key so that Set-Cookie, set_cookie, SET-COOKIE and setCookie compare equal."""
    # Separators dropped, not unified: services spell one key access_token, accessToken,
    # access-token and Access.Token alike.
    return key.lower().replace("_", "").replace("-", "").replace(".", "").replace(" ", "")


# A header list's entries name the header under one key and hold its value under another.
_HEADER_NAME = frozenset({"name", "key", "header"})
_HEADER_VALUE = frozenset({"value", "values"})


_DEFAULT_FOLDED = frozenset(normalize_key(k) for k in DEFAULT_SECRET_KEYS)


class Redactor:
    """Replaces the values under secret keys, at any depth, by :data:`REDACTED`."""

    def __init__(self, keys: Iterable[str] = DEFAULT_SECRET_KEYS, extra: Iterable[str] = ()):
        if keys is DEFAULT_SECRET_KEYS and not extra:
            # Every append makes a default Redactor: fold the default keys once only.
            self.keys = _DEFAULT_FOLDED
            """The folded secret keys."""
        else:
            self.keys = frozenset(normalize_key(k) for k in (*keys, *extra) if k.strip())

    @classmethod
    def from_environment(cls, extra: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> Redactor:
        """The default keys, ``extra`` and those FLOWLEDGER_REDACT_KEYS names (comma-separated):
        what every way in (append, the HTTP API, webhooks) redacts."""
        named = (os.environ if environ is None else environ).get("FLOWLEDGER_REDACT_KEYS", "")
        return cls(extra=[*extra, *(k for k in named.split(",") if k.strip())])

    def is_secret(self, key: Any) -> bool:
        """Whether a key's value is a secret."""
        return isinstance(key, str) and normalize_key(key) in self.keys

    def redact_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Return the event with its free-form fields redacted (the input is not changed)."""
        if event.keys().isdisjoint(FREE_FORM_FIELDS):
            return event  # most events: nothing free-form to look into
        changed = None
        for name in FREE_FORM_FIELDS:
            if name not in event:
                continue
            value = event[name]
            if isinstance(value, (dict, list)):
                redacted = self.redact(value)
                if redacted is not value:
                    if changed is None:
                        changed = dict(event)
                    changed[name] = redacted
        return event if changed is None else changed

    def redact(self, value: Any) -> Any:
        """Return value with every secret replaced; the same object when it holds none."""
        if isinstance(value, dict):
            out: dict[Any, Any] | None = None
            keys = self.keys
            folded = [(k, v, normalize_key(k) if isinstance(k, str) else None) for k, v in value.items()]
            # Header lists often come as {"name": "Authorization", "value": "..."}, and as
            # {"Name": …, "Value": …} (Postmark's): the same rule for both.
            pair_secret = any(f in _HEADER_NAME and self.is_secret(v) for _, v, f in folded)
            for k, v, f in folded:
                if (f in keys or (pair_secret and f in _HEADER_VALUE)) and v != REDACTED:
                    new = REDACTED if v is not None else None
                else:
                    new = self.redact(v)
                if new is not v:
                    if out is None:
                        out = dict(value)
                    out[k] = new
            return value if out is None else out
        if isinstance(value, list):
            # Header lists also come as ["Authorization", "Bearer ..."] pairs.
            if len(value) == 2 and self.is_secret(value[0]) and value[1] is not None:
                return value if value[1] == REDACTED else [value[0], REDACTED]
            items = [self.redact(v) for v in value]
            if any(a is not b for a, b in zip(items, value)):
                return items
            return value
        return value
