"""Provider webhooks as they come: one adapter per provider, under one interface.

Each adapter checks that a request really comes from its provider (:func:`verify`),
reads its payload (:func:`parse`) and translates each provider event into a
:class:`~flowledger.providers.base.ProviderFact`. Turning facts into log events, matching
them to messages and serving the endpoints are the next layer's work (not here yet).
"""

from flowledger.providers import mailgun, postmark, sendgrid, twilio, whatsapp
from flowledger.providers.base import Adapter, ProviderFact, SignatureInvalid, SignedRequest

ADAPTERS: dict[str, Adapter] = {
    a.NAME: a.ADAPTER for a in (sendgrid, mailgun, postmark, twilio, whatsapp)  # type: ignore[attr-defined]
}
"""Every adapter by its provider's name."""

__all__ = ["ADAPTERS", "Adapter", "ProviderFact", "SignatureInvalid", "SignedRequest"]
