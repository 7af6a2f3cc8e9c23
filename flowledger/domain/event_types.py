"""The names of the event types, and which stream each kind belongs to.

Kept apart from the vocabulary's models so that what only needs the names (the views, a
rebuild's second process) does not pay for building the validators; the vocabulary checks
at import that its models are exactly these.
"""

RUN_EVENT_TYPES = frozenset(
    {
        "run.triggered",
        "run.started",
        "step.started",
        "step.succeeded",
        "step.failed",
        "run.retrying",
        "run.retried",
        "run.paused",
        "run.resumed",
        "run.completed",
        "run.failed",
        "run.cancelled",
    }
)
"""The types whose stream is a run."""

MESSAGE_EVENT_TYPES = frozenset(
    {
        "message.queued",
        "message.sent",
        "message.delivered",
        "message.read",
        "message.opened",
        "message.clicked",
        "message.bounced",
        "message.failed",
        "message.complained",
        "message.unsubscribed",
    }
)
"""The types whose stream is a message."""
