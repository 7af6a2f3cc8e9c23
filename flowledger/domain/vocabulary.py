"""The event vocabulary: the input contract every way into the log validates against.

Each event type is a small immutable model named as the past-tense fact it records.
Validation is strict (no coercion of "2" into 2) and closed (unknown top-level fields are
errors); the free-form payloads (``data``, ``output``, ``request``, ``response``) take any JSON.
"""

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union

from typing_extensions import NotRequired, TypedDict

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from flowledger.domain.event_types import MESSAGE_EVENT_TYPES, RUN_EVENT_TYPES
from flowledger.domain.redaction import Redactor

# ASCII digits only (re.ASCII: \d would take any script's, which the fast path below would
# store as given); and fullmatch, not match: "$" would let a final line break through.
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)


# The form nearly every sender uses (UTC, "Z", a T, 0-9 fraction digits), with the time's
# ranges in the pattern: only the date is left to check, once per day seen.
_UTC_Z = re.compile(r"(\d{4}-\d{2}-\d{2})T((?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d)(?:\.(\d{1,9}))?Z", re.ASCII)
_REAL_DATES: set[str] = set()


def normalize_timestamp(value: str) -> str:
    """Return an RFC 3339 timestamp as UTC with microseconds, so stored times sort as text."""
    fast = _UTC_Z.fullmatch(value)
    if fast is not None:
        date, time, digits = fast.groups()
        if date in _REAL_DATES:
            return f"{date}T{time}.{(digits or '')[:6]:0<6}Z"
    stored = _normalize(value)
    if fast is not None:
        if len(_REAL_DATES) > 100_000:
            _REAL_DATES.clear()
        _REAL_DATES.add(fast.group(1))
    return stored


def _normalize(value: str) -> str:
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "timestamp",
            "expected an RFC 3339 timestamp with an offset, like 2026-11-22T10:00:00Z "
            "or 2026-11-22T11:00:00+01:00",
        )
    date, time, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]
    utc = offset in ("Z", "z", "+00:00", "-00:00")
    try:
        moment = datetime.fromisoformat(f"{date}T{time}{fraction}{'+00:00' if utc else offset}")
        if utc:
            # The common case, written out by hand: strftime is the slowest step of an append.
            return f"{date}T{time}.{fraction[1:]:0<6}Z"
        return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    except ValueError as e:
        raise PydanticCustomError("timestamp", "not a real date and time: {why}", {"why": str(e)})
    except OverflowError:
        # Year 1 or 9999 with an offset that moves it out of the years a date can hold.
        raise PydanticCustomError(
            "timestamp", "not a real date and time: in UTC it falls outside the years 1 to 9999"
        ) from None


Timestamp = Annotated[str, AfterValidator(normalize_timestamp)]
"""An RFC 3339 timestamp with an offset, stored as UTC."""

_ID_PATTERN = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"
# A blank id names nothing anyone can type back: a run cancellable by the key " " could
# never be cancelled by key, since `cancel --key` refuses a blank one.

MAX_ID_LENGTH = 255
"""The most characters an id (a run's, a message's, a workflow's, ...) may have."""

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=_ID_PATTERN)]
"""An identifier: 1 to 255 characters, not only spaces, no control characters."""


def _key_bytes(value: str) -> str:
    # Three such keys make one index entry of the steps view (a workflow and the two steps
    # of an edge); PostgreSQL refuses an entry over 2,704 bytes, and a view that cannot
    # take an event stops every catch-up after it. 765 bytes is 255 characters of any
    # script but the astral planes (emoji), which count four bytes each.
    if len(value) > 191 and len(value.encode()) > 765:
        raise PydanticCustomError("id", "expected at most 765 bytes in UTF-8")
    return value


KeyId = Annotated[Id, AfterValidator(_key_bytes)]
"""An identifier that keys a view's index (a workflow, a step): at most 765 bytes in UTF-8 too."""


def _no_nul(value: str) -> str:
    # PostgreSQL's text columns cannot hold NUL: a view's row with one would fail every
    # catch-up after it, so the log never takes one where a view stores it as text.
    if "\x00" in value:
        raise PydanticCustomError("text", "expected text without NUL characters (\\u0000)")
    return value


Text = Annotated[str, StringConstraints(min_length=1, max_length=10_000), AfterValidator(_no_nul)]
"""A human-readable message (no NUL characters)."""

MAX_NESTING = 64
"""How deep objects and arrays may nest within one free-form field (data, request, …)."""


def _not_too_deep(value: Any) -> Any:
    # The encoder and the redactor each stop at a nesting depth of their own (orjson at
    # 255 levels): past it an event could be validated and then fail to be stored.
    if isinstance(value, dict):
        for v in value.values():
            if isinstance(v, (dict, list)):
                break
        else:
            return value  # the usual payload: flat, nothing to walk
    elif not isinstance(value, list):
        return value
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        inner = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for v in inner:
            if isinstance(v, (dict, list)):
                if depth >= MAX_NESTING:
                    raise PydanticCustomError(
                        "nesting", "objects and arrays nested more than {limit} levels deep", {"limit": MAX_NESTING}
                    )
                stack.append((v, depth + 1))
    return value


FreeForm = Annotated[Any, AfterValidator(_not_too_deep)]
"""Any JSON value, nested at most :data:`MAX_NESTING` levels deep."""

FreeObject = Annotated[dict[str, Any], AfterValidator(_not_too_deep)]
"""A JSON object, nested at most :data:`MAX_NESTING` levels deep."""

MAX_ATTEMPT = 2_147_483_647
"""The largest attempt number: what any integer column of a view holds (past 2**63 the
log would take an event that no view can store, and every catch-up after it would fail)."""

StepType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
"""A step's kind: send_email, send_sms, send_whatsapp, send_push, delay, branch, integration, …"""



def _error_info(value: Any) -> Any:
    if isinstance(value, str) and 0 < len(value) <= 10_000:
        return _no_nul(value)
    if isinstance(value, dict) and value:
        # A view shows an object's message as text.
        if isinstance(value.get("message"), str):
            _no_nul(value["message"])
        return _not_too_deep(value)
    if isinstance(value, str) and value:
        raise PydanticCustomError("error_info", "expected a message of at most 10,000 characters")
    raise PydanticCustomError(
        "error_info", "expected a non-empty message (a string) or an object with details"
    )


ErrorInfo = Annotated[Any, AfterValidator(_error_info)]
"""An error: a message, or an object with the details a service has."""

Channel = Literal["email", "sms", "whatsapp", "push", "in_app"]
"""The channels a message can go out on."""

TriggerSource = Literal[
    "api",
    "audience",
    "schedule",
    "broadcast",
    "workflow_step",
    "integration",
    "rehearsal",
    "webhook",
    "manual",
]
"""What started a run."""

CancelledBy = Literal["operator", "workflow_deactivated", "cancellation_key"]
"""Who or what cancelled a run."""


_STRICT = ConfigDict(extra="forbid", strict=True)


def _strict(cls: Any) -> Any:
    # A TypedDict keeps no class attributes of its bases: give each one the config.
    cls.__pydantic_config__ = _STRICT
    return cls


@_strict
class RecipientRef(TypedDict):
    """A recipient held in a collection (an object) rather than a plain user id."""

    id: Id
    """The recipient's id within the collection."""
    collection: Id
    """The collection the recipient belongs to."""


_ID_CHARS = re.compile(_ID_PATTERN)


def is_an_id(value: str) -> bool:
    """Whether a text is an id as an event's fields hold them (see :data:`Id`)."""
    return 0 < len(value) <= MAX_ID_LENGTH and _ID_CHARS.fullmatch(value) is not None


def _recipient(value: Any) -> Any:
    if isinstance(value, str) and is_an_id(value):
        return value
    if (
        isinstance(value, dict)
        and set(value) == {"id", "collection"}
        and all(isinstance(v, str) and is_an_id(v) for v in value.values())
    ):
        return value
    raise PydanticCustomError(
        "recipient",
        'expected a recipient id (a string of 1 to 255 characters, not only spaces, no control characters) '
        'or an object {"id": "...", "collection": "..."}',
    )


Recipient = Annotated[Any, AfterValidator(_recipient)]
"""A recipient: a user id, or ``{"id", "collection"}`` (see :class:`RecipientRef`)."""


@_strict
class Trigger(TypedDict):
    """How a run was started."""

    source: TriggerSource
    """What started the run (rehearsal marks a test run)."""
    audience_key: NotRequired[Id | None]
    """The audience whose membership triggered the run."""
    schedule_id: NotRequired[Id | None]
    """The schedule that triggered the run."""
    cancellation_key: NotRequired[Id | None]
    """A key that `flowledger cancel --key` can later cancel the run by."""
    parent_run_id: NotRequired[Id | None]
    """The run whose workflow step triggered this one."""


@_strict
class Cost(TypedDict):
    """What a provider charged for a message."""

    amount: Annotated[float, Field(ge=0)]
    """The price, in units of the currency (not cents)."""
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    """ISO 4217 code, like USD."""


@_strict
class Event(TypedDict):
    """Fields every event has."""

    id: Id
    """The sender's unique id for this fact: the idempotency key."""
    type: str
    """The event type."""
    occurred_at: Timestamp
    """When the fact happened, by the sender's clock."""


@_strict
class RunEvent(Event):
    """An event in the life of one run."""

    run_id: Id
    """The run this fact is about."""


@_strict
class RunTriggered(RunEvent):
    """A workflow was triggered for one recipient: the run exists, pending."""

    type: Literal["run.triggered"]
    workflow: KeyId
    """The workflow's key."""
    recipient: Recipient
    """Who the run is for."""
    tenant: NotRequired[Id | None]
    """The tenant the run belongs to."""
    trigger: NotRequired[Trigger | None]
    """What started the run (absent means the API)."""
    workflow_run_id: NotRequired[Id | None]
    """Shared by all the runs (one per recipient) of one trigger call."""
    scheduled_at: NotRequired[Timestamp | None]
    """When the run is due to start, if not at once."""
    max_retries: NotRequired[Annotated[int, Field(ge=0, le=1000)]]
    """How many retries the run may have."""
    data: NotRequired[FreeObject | None]
    """The trigger's payload."""


@_strict
class RunStarted(RunEvent):
    """The run began executing."""

    type: Literal["run.started"]


@_strict
class StepEvent(RunEvent):
    """One attempt of one step of a run."""

    step: KeyId
    """The workflow node's ref."""
    step_type: StepType
    """The node's kind."""
    attempt: Annotated[int, Field(ge=1, le=MAX_ATTEMPT)]
    """The attempt number, from 1 to :data:`MAX_ATTEMPT`."""
    request: NotRequired[FreeForm]
    """What an integration step sent (secrets are redacted before storing)."""
    response: NotRequired[FreeForm]
    """What an integration step got back (secrets are redacted before storing)."""


@_strict
class StepStarted(StepEvent):
    """A step attempt began."""

    type: Literal["step.started"]


@_strict
class StepSucceeded(StepEvent):
    """A step attempt finished well."""

    type: Literal["step.succeeded"]
    output: NotRequired[FreeForm]
    """What the step produced."""


@_strict
class StepFailed(StepEvent):
    """A step attempt failed."""

    type: Literal["step.failed"]
    error: ErrorInfo
    """Why the attempt failed."""


@_strict
class RunRetrying(RunEvent):
    """The orchestrator retries the run automatically (retry_count + 1)."""

    type: Literal["run.retrying"]
    reason: NotRequired[Text | None]
    """Why the run is retried."""


@_strict
class RunRetried(RunEvent):
    """An operator retried a failed run; it goes back to pending (retry_count + 1)."""

    type: Literal["run.retried"]
    actor: NotRequired[Id | None]
    """Who asked for the retry."""
    reason: NotRequired[Text | None]
    """Why they asked."""


@_strict
class RunPaused(RunEvent):
    """The run was paused."""

    type: Literal["run.paused"]
    reason: NotRequired[Text | None]
    """Why the run was paused."""


@_strict
class RunResumed(RunEvent):
    """A paused run carried on."""

    type: Literal["run.resumed"]


@_strict
class RunCompleted(RunEvent):
    """The run finished well."""

    type: Literal["run.completed"]


@_strict
class RunFailed(RunEvent):
    """The run finished with an error."""

    type: Literal["run.failed"]
    error: ErrorInfo
    """Why the run failed."""


@_strict
class RunCancelled(RunEvent):
    """The run was stopped before it finished."""

    type: Literal["run.cancelled"]
    by: CancelledBy
    """What cancelled it."""
    reason: NotRequired[Text | None]
    """Why it was cancelled."""
    actor: NotRequired[Id | None]
    """Who cancelled it, when a person did."""
    cancellation_key: NotRequired[Id | None]
    """The key it was cancelled by, when by is cancellation_key."""


@_strict
class MessageEvent(Event):
    """An event in the life of one outbound delivery attempt."""

    message_id: Id
    """The message this fact is about."""
    cost: NotRequired[Cost | None]
    """What the provider charged; it may come late, on any event of the message."""
    provider: NotRequired[Id | None]
    """The provider that reported the fact (or delivers the message)."""
    provider_message_id: NotRequired[Id | None]
    """The provider's own id for the message (matches provider webhooks to it)."""
    raw: NotRequired[FreeObject | None]
    """The provider's payload as it came (secrets redacted), to refold if a mapping changes."""


@_strict
class MessageQueued(MessageEvent):
    """The sender handed a message to a provider's queue."""

    type: Literal["message.queued"]
    channel: Channel
    """The channel it goes out on."""
    recipient: Recipient
    """Who it is for."""
    run_id: NotRequired[Id | None]
    """The run that sent it (absent for a manual resend)."""
    step: NotRequired[Id | None]
    """The step that sent it (absent for a manual resend)."""
    provider: NotRequired[Id | None]
    """The provider that delivers it, like sendgrid or twilio."""
    data: NotRequired[FreeObject | None]
    """Anything else the sender records (template, subject, …)."""


@_strict
class MessageSent(MessageEvent):
    """The provider accepted the message and sent it on."""

    type: Literal["message.sent"]
    provider_message_id: NotRequired[Id | None]
    """The provider's own id for the message."""


@_strict
class MessageDelivered(MessageEvent):
    """The message reached the recipient's server or device."""

    type: Literal["message.delivered"]


@_strict
class MessageRead(MessageEvent):
    """The recipient read the message (WhatsApp, SMS, in-app)."""

    type: Literal["message.read"]


@_strict
class MessageOpened(MessageEvent):
    """The recipient opened the email."""

    type: Literal["message.opened"]
    machine: NotRequired[bool]
    """Opened by a machine (a privacy proxy, a scanner), not a person."""


@_strict
class MessageClicked(MessageEvent):
    """The recipient clicked a link in the message."""

    type: Literal["message.clicked"]
    url: Annotated[str, StringConstraints(min_length=1, max_length=8192), AfterValidator(_no_nul)]
    """The link clicked."""
    machine: NotRequired[bool]
    """Clicked by a machine (a link scanner), not a person."""


@_strict
class MessageBounced(MessageEvent):
    """The recipient's server refused the message."""

    type: Literal["message.bounced"]
    reason: NotRequired[Text | None]
    """The bounce reason the provider gave."""
    temporary: NotRequired[bool]
    """A soft bounce: the provider will try again, so it never counts as failed."""


@_strict
class MessageFailed(MessageEvent):
    """The provider could not send the message."""

    type: Literal["message.failed"]
    error: ErrorInfo
    """Why it failed."""
    temporary: NotRequired[bool]
    """A deferral: the provider will try again, so it never counts as failed."""


@_strict
class MessageComplained(MessageEvent):
    """The recipient marked the message as spam."""

    type: Literal["message.complained"]


@_strict
class MessageUnsubscribed(MessageEvent):
    """The recipient unsubscribed through the message."""

    type: Literal["message.unsubscribed"]


RUN_EVENTS: tuple[type[RunEvent], ...] = (
    RunTriggered,
    RunStarted,
    StepStarted,
    StepSucceeded,
    StepFailed,
    RunRetrying,
    RunRetried,
    RunPaused,
    RunResumed,
    RunCompleted,
    RunFailed,
    RunCancelled,
)
MESSAGE_EVENTS: tuple[type[MessageEvent], ...] = (
    MessageQueued,
    MessageSent,
    MessageDelivered,
    MessageRead,
    MessageOpened,
    MessageClicked,
    MessageBounced,
    MessageFailed,
    MessageComplained,
    MessageUnsubscribed,
)


def _type_of(cls: type[Event]) -> str:
    return cls.__annotations__["type"].__args__[0]


EVENT_TYPES: dict[str, type[Event]] = {_type_of(c): c for c in RUN_EVENTS + MESSAGE_EVENTS}
"""Every event type by its name."""
if {_type_of(c) for c in RUN_EVENTS} != RUN_EVENT_TYPES or {
    _type_of(c) for c in MESSAGE_EVENTS
} != MESSAGE_EVENT_TYPES:
    raise ImportError("the vocabulary's models and flowledger.domain.event_types disagree")
TIMESTAMP_FIELDS = ("occurred_at", "scheduled_at")
"""The top-level fields that hold timestamps (normalised to UTC when stored)."""

_ANY_EVENT = TypeAdapter(
    Annotated[Union[RUN_EVENTS + MESSAGE_EVENTS], Field(discriminator="type")]  # type: ignore[valid-type]
)


_VALIDATE = _ANY_EVENT.validator.validate_python


def stream_of(event: dict[str, Any]) -> str:
    """The stream (eventsourcing originator id) an already validated event belongs to."""
    if event["type"] in RUN_EVENT_TYPES:
        return "run:" + event["run_id"]
    return "message:" + event["message_id"]


def validate_event(obj: Any) -> dict[str, Any]:
    """Validate one decoded JSON value as an event, and return it as it is to be stored.

    The result is a new dict: the input's fields, with timestamps normalised to UTC.
    Raises :class:`EventInvalid` listing every field problem.
    """
    if not isinstance(obj, dict):
        raise EventInvalid([f"expected a JSON object, got {_json_kind(obj)}"])
    try:
        # The core validator itself: TypeAdapter's wrapper costs a third as much again.
        return _VALIDATE(obj)  # type: ignore[no-any-return]
    except ValidationError as e:
        raise EventInvalid(_describe(e, obj)) from None


class EventInvalid(ValueError):
    """One event broke the vocabulary; carries one message per broken field."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        """One message per problem, each naming the field and what was expected."""
        super().__init__("; ".join(messages))


def _json_kind(value: Any) -> str:
    return {
        list: "an array",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
        dict: "an object",
    }.get(type(value), type(value).__name__)


_ERROR_TEXT_REDACTOR = Redactor()
"""Masks secrets in the values an error message shows (the default secret names)."""


def _describe(error: ValidationError, obj: dict[str, Any]) -> list[str]:
    messages = []
    for err in error.errors(include_url=False):
        kind = err["type"]
        if kind == "union_tag_not_found":
            messages.append('field "type": required, one of ' + ", ".join(sorted(EVENT_TYPES)))
            continue
        if kind == "union_tag_invalid" and not isinstance(obj.get("type"), str):
            messages.append('field "type": expected a string, one of ' + ", ".join(sorted(EVENT_TYPES)))
            continue
        if kind == "union_tag_invalid":
            messages.append(
                f'field "type": unknown event type {_shown(obj.get("type"))}; expected one of '
                + ", ".join(sorted(EVENT_TYPES))
            )
            continue
        # The first element of the location is the discriminator's tag.
        loc = [str(p) for p in err["loc"][1:]]
        # Union members add their own name to the path (str, RecipientRef, …): drop those.
        loc = [p for p in loc if not _UNION_LABEL.match(p)]
        field = ".".join(loc) or "(event)"
        if kind == "missing":
            messages.append(f'field "{field}": required')
        elif kind == "extra_forbidden":
            messages.append(f'field "{field}": unknown field (not part of {obj.get("type")})')
        else:
            if kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == _ID_PATTERN:
                err["msg"] = "expected an id: not only spaces, and no control characters"
            messages.append(f'field "{field}": {err["msg"]} (got {_shown(err.get("input"))})')
    # Keep one message per field and text, in order (unions report each member).
    return list(dict.fromkeys(messages))


def _shown(got: Any) -> str:
    """A refused value as an error shows it: short, and with nothing the log would redact."""
    if isinstance(got, str):
        # The message reaches stderr, the API's answer and their logs: what the log
        # would redact is not shown here either (before the cut, which could hide it).
        got = _ERROR_TEXT_REDACTOR.redact_text(got)
    shown = repr(got) if not isinstance(got, (dict, list)) else _json_kind(got)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return shown


_UNION_LABEL = re.compile(r"^(str|int|float|bool|none|dict\[.*\]|list\[.*\]|[A-Z]\w*|constrained-str|function-\w+\[.*\])$")
