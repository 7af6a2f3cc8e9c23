"""The HTTP API (FastAPI): the same library and JSON shapes as the CLI, behind API keys.

Every endpoint but ``/healthz`` needs an ``X-API-Key``; errors are
``application/problem+json``; filter values are bound parameters and filter names come
from the query functions' own allow-lists.
"""


import asyncio
import logging
import os
import re
import threading
import time
from collections import Counter
from urllib.parse import parse_qsl, unquote_to_bytes
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager, closing
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import orjson
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from flowledger import ledger, queries, shapes
from flowledger.api import keys
from flowledger.api.told import key_checked, told
from flowledger.providers import ADAPTERS, SignatureInvalid, SignedRequest
from flowledger.providers.whatsapp import handshake
from flowledger.domain.redaction import Redactor
from flowledger.domain.vocabulary import MAX_ID_LENGTH, is_an_id, normalize_timestamp
from flowledger.errors import (
    ENDS_A_FOLLOWER,
    CommandRefused,
    FlowledgerError,
    InvalidInput,
    NotFound,
    RecordedButNotShown,
    StoreBusy,
    StoreError,
    StoreIsACopy,
    StoreUnavailable,
    ViewsRemadeByAnotherVersion,
)
from flowledger.ingest import DEFAULT_MAX_EVENT_BYTES
from flowledger.store import open_log
from flowledger.store.inbox import Inbox, open_inbox
from flowledger.store.log import EventLog
from flowledger.web import pages

MAX_BATCH_EVENTS = 10_000
"""The most events one POST /v1/events may carry."""
BUSY_RETRY_AFTER = 1
"""Seconds a client is told to wait (``Retry-After``) when the store was too busy to answer."""
MAX_HISTORY_PAGE = 1000
"""The most entries one page of GET /v1/runs/{id}/history holds."""
HISTORY_PAGE = 100
"""The entries of a page of a run's history when ``after`` is given without ``page_size``."""
MAX_BATCH_BYTES = 10 * 1024 * 1024
"""The largest body POST /v1/events takes."""
WEBHOOK_BODY_BUDGET = 64 * 1024 * 1024
"""The most bytes of webhook bodies a server holds at once before their signatures are
checked (anyone can send one): past it, a webhook is a 503 to send again after Retry-After."""
WEBHOOK_BODY_TIMEOUT = 30.0
"""Seconds a webhook's body may take to arrive (providers send theirs at once): past them, a
408 with nothing stored, the connection closed and its share of the budget given back."""
MAX_COMMAND_BYTES = 256 * 1024
"""The largest body retry, cancel and POST /v1/cancellations take (a reason of 10,000
characters, each written as a JSON escape, fits)."""
INVALID_REQUEST = "the request's parameters or body are not as expected"
"""The detail of a 422 whose errors name each parameter or body field."""
NO_NUL = "expected text without NUL characters (\\u0000)"
"""What a value holding NUL is told (PostgreSQL's text cannot hold one)."""

PROBLEM = "application/problem+json"
_FIELD = re.compile(r'^field "([^"]+)": (.*)$', re.S)

_log = logging.getLogger(__name__)


def _follow(log: EventLog, inbox: Inbox | None, stop: threading.Event, stopped: dict[str, str]) -> None:
    """Keep the views caught up, the webhook inbox drained first, until ``stop`` (the server's
    follower thread); why it stopped for good, if it did, goes in ``stopped["reason"]`` (/healthz)."""
    try:
        ledger.follow(log, interval=0.5, should_stop=stop.is_set, inbox=inbox)
    except ENDS_A_FOLLOWER as e:
        # Not a bug: a newer flowledger took the store over, or it is an analyst's copy another
        # version made (queries answer with the same error).
        stopped["reason"] = f"the views' follower stopped: {e}"
        _log.error("%s", stopped["reason"])
    except Exception as e:  # noqa: BLE001  # the last guard of a thread: no traceback
        # Store errors are retried inside follow(): this is a bug. Queries still catch up.
        stopped["reason"] = f"the views' follower stopped: unexpected {type(e).__name__}: {e}; this is a bug in flowledger"
        _log.error("%s", stopped["reason"])


class ApiProblem(Exception):
    """An error to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra
        super().__init__(detail)


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem document."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


class ProblemError(BaseModel):
    """One problem of a request, for invalid events with the event's index."""

    index: int | None = Field(default=None, description="The event's place in the batch, from 0.")
    id: str | None = Field(default=None, description="The event's id, when it could be read.")
    field: str | None = Field(default=None, description="The field path, where there is one.")
    message: str = Field(description="What is wrong and what was expected.")


class Problem(BaseModel):
    """An RFC 9457 problem document (application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = None


_PROBLEM_RESPONSE = {"model": Problem, "content": {PROBLEM: {}}}
# A retry or cancel done, whose record the server could not read back after it.
_RECORDED_NOT_SHOWN: dict[int | str, dict[str, Any]] = {
    202: {
        "model": shapes.CommandRecorded,
        "description": "Recorded, but the run's record could not be read back (the store's write lock held past the "
        "lock timeout, say): what the log's rules know of the run, and why. Do not send it again: it was done.",
    }
}

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {**_PROBLEM_RESPONSE, "description": text}
    for status, text in (
        (401, "No key, or an unknown or revoked one"),
        (403, "The key's scope does not allow this"),
        (404, "No such run, delivery, workflow or path"),
        (408, "(A webhook) its body did not all arrive in time (serve's --webhook-timeout): nothing was stored; the connection is closed"),
        (409, "A refused fact, an id conflict or a refused command"),
        (413, "A batch over the limits"),
        (422, "Invalid input"),
        (503, "The store is busy, its database server lost or refused the connection, or (a webhook) the server holds as many webhook bodies as it takes at once: try again after Retry-After seconds; or, without Retry-After, this server cannot serve the store (its follower stopped, or the views are another flowledger version's)"),
    )
}


class AppendResponse(BaseModel):
    """What POST /v1/events did."""

    appended: int = Field(description="Events newly stored.")
    duplicates: int = Field(description="Events whose id was already stored with the same body.")


def _no_nul(value: str | None) -> str | None:
    # Else PostgreSQL refuses it deep in the store: a 500 for the caller's input.
    if value is not None and "\x00" in value:
        raise ValueError(NO_NUL)
    return value


class CommandRequest(BaseModel):
    """The body of retry and cancel (optional)."""

    # A misspelt "reason" is refused, not dropped: the command would be recorded without it.
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=10_000, description="Why.")

    _reason_without_nul = field_validator("reason")(_no_nul)


class CancellationRequest(CommandRequest):
    """POST /v1/cancellations: cancel every unfinished run triggered with a key."""

    key: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="The cancellation_key.")

    @field_validator("key")
    @classmethod
    def _not_blank(cls, key: str) -> str:
        # As `flowledger cancel --key` refuses one: a blank key is a caller's mistake.
        if not key.strip():
            raise ValueError("a cancellation key cannot be blank")
        _no_nul(key)
        # As a run's cancellation_key is checked when it is triggered: else the command's
        # own event would be refused, a 409 naming its field rather than this one.
        if not is_an_id(key):
            raise ValueError("expected an id: not only spaces, and no control characters")
        return key

    tenant: str | None = Field(
        default=None, min_length=1, max_length=MAX_ID_LENGTH, description="Only the runs of this tenant."
    )

    @field_validator("tenant")
    @classmethod
    def _a_tenant(cls, tenant: str | None) -> str | None:
        # A tenant no run could have would cancel nothing, silently: the caller's mistake.
        if tenant is not None and not is_an_id(tenant):
            raise ValueError("expected a tenant's id: not only spaces, and no control characters")
        return tenant


C = TypeVar("C", bound=CommandRequest)


def json_problem(raw: bytes, error: orjson.JSONDecodeError) -> str:
    """What is wrong with a body orjson could not read: bytes that are not UTF-8 named with
    their place, as `append` names them (orjson says "surrogates not allowed" at char 0)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 text: {e.reason} at byte {e.start}"
    return f"not valid JSON: {error}"


def not_encoded(request: Request) -> None:
    """Refuse a body sent with a Content-Encoding (gzip, say): it is not read as JSON, nor
    stored as if the header were not there."""
    encoding = request.headers.get("content-encoding", "").strip()
    if encoding and encoding.lower() != "identity":
        raise ApiProblem(415, "Unsupported Media Type", f"Content-Encoding {encoding} is not supported: send the body uncompressed")


async def command_body(request: Request, model: type[C], *, required: bool) -> C | None:
    """A command's JSON body, read only once its key is checked and no further than
    :data:`MAX_COMMAND_BYTES` (FastAPI would read a declared body whole, before the key)."""
    not_encoded(request)
    raw = await read_body(request, MAX_COMMAND_BYTES)

    def invalid(errors: list[dict[str, Any]]) -> ApiProblem:
        return ApiProblem(422, "Invalid request", INVALID_REQUEST, errors=errors)

    data: Any = None
    if raw.strip():
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise invalid([{"field": "body", "message": json_problem(raw, e)}]) from None
    if data is None and not required:
        return None
    if not isinstance(data, dict):
        raise invalid([{"field": "body", "message": "expected a JSON object"}])
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise invalid([{"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]} for err in e.errors()]) from None


def _body_schema(model: type[BaseModel], *, required: bool) -> dict[str, Any]:
    """The OpenAPI requestBody of a command read by :func:`command_body`."""
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def _repeatable(annotation: Any) -> bool:
    """Whether a query parameter of this type may be given more than once (a list)."""
    return any(get_origin(a) in (list, tuple, set) for a in (annotation, *get_args(annotation)))


NOT_UTF8 = "not UTF-8: a percent-escape ({escape}, say) must encode UTF-8 text"
"""What a query or path value whose percent-escapes are no UTF-8 is told."""
_ESCAPE = re.compile(rb"%[0-9A-Fa-f]{2}")


def not_utf8(raw: bytes) -> str | None:
    """Why a raw (percent-escaped) path or query part is no UTF-8 text, or None. The server
    would read each such escape as U+FFFD, so that "caf%E9" and "caf%E8" were one id."""
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        # The escape that held the first bad byte, as the caller wrote it.
        escapes = [m.group().decode() for m in _ESCAPE.finditer(raw) if int(m.group()[1:], 16) >= 0x80]
        return NOT_UTF8.format(escape=escapes[0].upper() if escapes else f"byte {e.start}")
    return None


def query_not_utf8(query_string: bytes) -> list[dict[str, str]]:
    """An error for each query parameter whose name or value is no UTF-8 text."""
    errors = []
    for pair in query_string.split(b"&"):
        name, _, value = pair.partition(b"=")
        why = not_utf8(name) or not_utf8(value)
        if why:
            errors.append({"field": unquote_to_bytes(name).decode("utf-8", "replace"), "message": why})
    return errors


def check_parameters(request: Request) -> None:
    """Refuse, with a 422 naming each, query parameters the route does not take (a
    misspelt filter would otherwise answer unfiltered), a parameter that takes one value
    given twice (which would be dropped), NUL in any query or path value, and
    percent-escapes that are no UTF-8 (read as U+FFFD, they would name another id)."""
    route = request.scope.get("route")
    declared = {f.alias: f for f in route.dependant.query_params} if isinstance(route, APIRoute) else {}
    takes = f"this endpoint takes {', '.join(sorted(declared))}" if declared else "this endpoint takes none"
    errors: list[dict[str, Any]] = []
    for name, times in Counter(k for k, _ in request.query_params.multi_items()).items():
        field = declared.get(name)
        if field is None:
            errors.append({"field": name, "message": f"unknown query parameter; {takes}"})
        elif times > 1 and not _repeatable(field.field_info.annotation):
            errors.append({"field": name, "message": f"given {times} times; give it once"})
    errors += [{"field": name, "message": NO_NUL} for name in pages.nul_fields(request)]
    errors += query_not_utf8(request.scope.get("query_string", b""))
    path_problem = not_utf8(request.scope.get("raw_path") or b"")
    if path_problem:
        # The parameters the server read a U+FFFD into (the path as a whole, if none).
        named = [name for name, value in request.path_params.items() if isinstance(value, str) and "\ufffd" in value]
        errors += [{"field": name, "message": path_problem} for name in named or ["path"]]
    if errors:
        raise ApiProblem(422, "Invalid request", INVALID_REQUEST, errors=errors)


class CancellationResponse(BaseModel):
    """The runs a cancellation key cancelled."""

    cancellation_key: str
    tenant: str | None = None
    """The tenant the request named (only then)."""
    cancelled: list[str]


class Health(BaseModel):
    """The service answers, and so does its store."""

    status: Literal["ok"]
    position: int
    """The position of the log's last event (0: none yet). Read from the log's key, not
    counted: a load balancer may ask every few seconds of a log of millions."""
    behind: int = 0
    """Events of the log the slowest view has not applied yet (the log's position minus the
    lowest view position): how far the follower lags. Read with the position, in the same
    small read. Absent on an analyst's copy made by `rebuild --into`, whose views follow
    another store's log."""
    deferred: int = 0
    """Only when not 0: webhook events in the inbox, waiting for the store's write lock."""


PROVIDER_SECRETS = {
    "sendgrid": ("public_key",),
    "mailgun": ("signing_key",),
    "postmark": ("username", "password"),
    "twilio": ("auth_token",),
    "whatsapp": ("app_secret", "verify_token"),
}
"""What each provider's webhooks are checked with (FLOWLEDGER_<PROVIDER>_<NAME> in the environment)."""


def secrets_from_environment(environ: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Each provider's webhook secrets, from FLOWLEDGER_SENDGRID_PUBLIC_KEY and the like."""
    environ = dict(os.environ) if environ is None else environ
    return {
        provider: {n: environ[f"FLOWLEDGER_{provider.upper()}_{n.upper()}"] for n in names if environ.get(f"FLOWLEDGER_{provider.upper()}_{n.upper()}")}
        for provider, names in PROVIDER_SECRETS.items()
    }


class BodyBudget:
    """Bytes of request bodies held at once, shared by the requests that take from it.

    Taken and given back on the event loop's thread only (a body is read there), so a plain
    count is enough."""

    def __init__(self, limit: int, timeout: float = WEBHOOK_BODY_TIMEOUT) -> None:
        self.limit = limit
        """The most bytes held at once."""
        self.timeout = timeout
        """Seconds a body may take to arrive."""
        self.held = 0
        """The bytes held now."""

    @asynccontextmanager
    async def holding(self, request: Request, limit: int) -> AsyncIterator[bytes]:
        """The request's body (see :func:`read_body`), counted against the budget until the
        block ends; a 503 with Retry-After as soon as it would take the budget past its limit,
        a 408 (the connection closed) if it has not all arrived within the timeout."""
        taken = 0

        def take(n: int) -> None:
            nonlocal taken
            if self.held + n > self.limit:
                raise ApiProblem(
                    503, "Busy",
                    f"this server holds {self.limit:,} bytes of webhook bodies at most at once and has no room "
                    "for this one now; nothing was stored: send it again",
                    retry_after=BUSY_RETRY_AFTER,
                )
            self.held += n
            taken += n

        try:
            try:
                # Else a sender that stops mid-body holds its share for as long as it keeps
                # the connection open: a few of them would keep every webhook out.
                async with asyncio.timeout(self.timeout):
                    body = await read_body(request, limit, take)
            except TimeoutError:
                raise ApiProblem(
                    408, "Request timeout",
                    f"the body did not all arrive within {self.timeout:g} s; nothing was stored: send it again",
                    close=True,
                ) from None
            yield body
        finally:
            self.held -= taken


async def read_body(request: Request, limit: int, take: Callable[[int], None] | None = None) -> bytes:
    """The request's body, refused with a 413 past ``limit`` bytes before more of it is read;
    ``take`` is told each part's size as it arrives (and may refuse it by raising)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise ApiProblem(413, "Too large", f"the body is {int(length):,} bytes; the limit is {limit:,}")
    # Read no more than the limit, whatever Content-Length said (or if it said nothing).
    parts: list[bytes] = []
    received = 0
    try:
        async for part in request.stream():
            received += len(part)
            if received > limit:
                raise ApiProblem(413, "Too large", f"the body is over {limit:,} bytes, the limit")
            if take is not None:
                take(len(part))
            parts.append(part)
    except ClientDisconnect:
        # The client hung up mid-body: nothing is stored, and it is no bug (let out, it would
        # be a traceback in the server's log for each one, which anyone can send a webhook).
        raise ApiProblem(400, "Incomplete body", "the client closed the connection before the whole body arrived; nothing was stored") from None
    return b"".join(parts)


class WebhookResponse(BaseModel):
    """What a provider webhook did."""

    appended: int = Field(description="Events newly stored (with held ones their message was waiting for).")
    duplicates: int = Field(description="Events already stored or already held.")
    held: int = Field(description="Events kept until their message is known (see `flowledger unmatched`).")
    skipped: int = Field(description="Statuses that are no fact about delivery (Twilio's queued, say).")
    deferred: int = Field(
        default=0,
        description="Only when not 0: events kept durably in the webhook inbox because another process held "
        "the store's write lock; appended later with their receipt time (appended, duplicates and held "
        "are then 0: those are told when they are appended).",
    )


def create_app(
    store: str | None = None,
    *,
    lock_timeout: float = 60.0,
    follow: bool = False,
    provider_secrets: dict[str, dict[str, str]] | None = None,
    public_url: str | None = None,
    redactor: Redactor | None = None,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    webhook_body_budget: int = WEBHOOK_BODY_BUDGET,
    webhook_body_timeout: float = WEBHOOK_BODY_TIMEOUT,
) -> FastAPI:
    """The API over the store a URL names; ``follow`` keeps the views caught up in a thread.

    ``provider_secrets`` check the webhooks (default: from the environment); ``public_url``
    is the address providers call, when a proxy stands in front (Twilio signs the URL).
    ``redactor`` defaults to the keys FLOWLEDGER_REDACT_KEYS adds; ``max_event_bytes``, the
    largest event posted or brought by a webhook, to 1 MiB. `flowledger serve` passes both
    from its --redact-key and --max-event-bytes, which read the variables as `append`'s do.
    ``webhook_body_budget``: the most bytes of webhook bodies held at once;
    ``webhook_body_timeout``: the seconds a webhook's body may take to arrive (`serve`'s
    --webhook-timeout).
    """
    state: dict[str, Any] = {}
    webhook_secrets = provider_secrets if provider_secrets is not None else secrets_from_environment()
    redactor = redactor or Redactor.from_environment()
    webhook_bodies = BodyBudget(webhook_body_budget, webhook_body_timeout)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        # What was opened is closed however the start-up ends: a server that failed to
        # start (its follower's store refused, say) must not keep pools and files open.
        with ExitStack() as opened:
            log = opened.enter_context(closing(open_log(store, lock_timeout=lock_timeout, create=True)))
            inbox = open_inbox(log.backend)
            if inbox is not None:
                opened.callback(inbox.close)
            # A long --lock-timeout must not hold the start-up for an import (webhooks would
            # find no server): the start-up's writes wait for the write lock as a webhook does,
            # and what the lock keeps waits for the follower's next round.
            with closing(open_log(store, lock_timeout=ledger.short_wait(log))) as startup:
                try:
                    keys.ensure_table(startup.backend)
                except StoreError as e:
                    # Not fatal: webhooks and /healthz need no key; keyed requests are refused.
                    _log.warning("could not make the API keys' tables at start-up (%s)", e)
                try:
                    ledger.catch_up(startup, inbox=inbox, drain_wait=ledger.short_wait(log))
                    # Made and this version's now: the server's own connection looks once, without
                    # the write lock, and its commands and queries then check the versions alone.
                    ledger.ensure_views(log)
                except StoreError as e:
                    # Not fatal: the follower, or else each query, catches up later.
                    _log.warning("could not catch the views up at start-up (%s)", e)
            state["log"] = log
            state["inbox"] = inbox
            state["follower"] = {}
            # The follower's own store connection, waiting for the write lock as briefly as a
            # webhook: on SQLite one connection a process writes through, held by a follower
            # waiting out --lock-timeout behind an import, would hold every webhook as long (past
            # a provider's patience). Refused, the follower tries again on its next round.
            follower_log = (
                opened.enter_context(closing(open_log(store, lock_timeout=ledger.short_wait(log)))) if follow else None
            )
            # Webhooks too: a query's catch-up waiting out --lock-timeout must not hold them.
            state["webhooks"] = opened.enter_context(closing(open_log(store, lock_timeout=ledger.short_wait(log))))
            stop = threading.Event()
            worker = None
            if follower_log is not None:
                worker = threading.Thread(target=_follow, args=(follower_log, inbox, stop, state["follower"]), daemon=True)
                worker.start()
            try:
                yield
            finally:
                stop.set()
                if worker is not None:
                    worker.join(timeout=5)

    app = FastAPI(
        title="flowledger",
        version="0.1.0",
        description="The run history of workflow automations: append events, read runs, "
        "deliveries and workflows. Every endpoint but /healthz needs an X-API-Key.",
        lifespan=lifespan,
        responses=_ERROR_RESPONSES,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    def the_log() -> EventLog:
        return state["log"]  # type: ignore[no-any-return]

    def follower_stopped() -> str | None:
        """Why the server's follower stopped for good, if it did (/healthz, the pages)."""
        return state.get("follower", {}).get("reason")  # type: ignore[no-any-return]

    def require(scope: str) -> Callable[..., keys.ApiKey]:
        def check(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> keys.ApiKey:
            if not x_api_key:
                if any(v.startswith(keys.PREFIX) for _, v in request.query_params.multi_items()):
                    # Never used from there: URLs end up in access logs, proxies and histories.
                    raise ApiProblem(401, "Unauthorized", "an API key in the URL is refused (URLs are logged): send it in the X-API-Key header")
                raise ApiProblem(401, "Unauthorized", "send an API key in the X-API-Key header")
            key = keys.verify(the_log().backend, x_api_key)
            if key is None or key.revoked_at is not None:
                raise ApiProblem(401, "Unauthorized", "that API key is unknown or revoked")
            if not key.allows(scope):
                raise ApiProblem(403, "Forbidden", f"this endpoint needs {'an' if scope == 'admin' else 'a'} {scope} key; this key's scope is {key.scope}")
            key_checked(request)
            # After the key: a caller without one learns nothing about the parameters.
            check_parameters(request)
            return key

        return check

    def still_valid(request: Request) -> None:
        """After a body was read (slowly, perhaps): the request's key is still not revoked,
        as `keys revoke` stops a key at once; a request already sent is refused whole."""
        key = keys.verify(the_log().backend, request.headers.get("x-api-key", ""))
        if key is None or key.revoked_at is not None:
            raise ApiProblem(401, "Unauthorized", "that API key was revoked while the request was sent; nothing was stored")

    Read = Annotated[keys.ApiKey, Depends(require("read"))]
    Write = Annotated[keys.ApiKey, Depends(require("write"))]
    Admin = Annotated[keys.ApiKey, Depends(require("admin"))]

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        extra = dict(exc.extra)
        retry_after = extra.pop("retry_after", None)
        close = extra.pop("close", False)
        answer = problem(exc.status, exc.title, exc.detail, **extra)
        if retry_after is not None:
            answer.headers["Retry-After"] = str(retry_after)
        if close:
            # The rest of the body may still come: the connection is not read further.
            answer.headers["Connection"] = "close"
        return answer

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"][1:]) or e["loc"][0], "message": e["msg"]}
            for e in exc.errors()
        ]
        return problem(422, "Invalid request", INVALID_REQUEST, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        # A 405 must say what is allowed (RFC 9110); HEAD is answered wherever GET is.
        headers = dict(exc.headers or {})
        allowed = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
        if exc.status_code == 405:
            # The router names the first route of the path alone; ids may hold "/", so others
            # take it too (GET /v1/runs/a/retry is the run "a/retry"; the whatsapp handshake).
            for route in app.router.routes:
                if isinstance(route, APIRoute) and route.matches(request.scope)[0] is Match.PARTIAL:
                    allowed += [m for m in sorted(route.methods) if m not in allowed]
            headers["Allow"] = ", ".join(allowed)
        if "GET" in allowed and "HEAD" not in allowed:
            allowed.append("HEAD")
            headers["Allow"] = ", ".join(allowed)
        detail = str(exc.detail)
        # The router's own answers say only "Not Found": name what was asked for.
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no endpoint at {request.url.path}; the endpoints are in /openapi.json"
        elif exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f"{request.method} is not allowed at {request.url.path}; it takes {', '.join(allowed)}"
        if exc.status_code in (404, 405) and pages.wants_page(request):
            # A person at a browser, off the API's paths: the site's page, not JSON.
            path = request.scope["path"]  # as typed, escaped by the page
            if exc.status_code == 404:
                said = f"There is no page at {path}."
            else:
                said = f"{request.method} is not allowed at {path}."
            answer: Response = pages.error_page(exc.status_code, title, said)
        else:
            answer = problem(exc.status_code, title, detail)
        answer.headers.update(headers)
        return answer

    @app.exception_handler(FlowledgerError)
    async def _flowledger(request: Request, exc: FlowledgerError) -> JSONResponse:
        if isinstance(exc, InvalidInput):
            errors = []
            for p in exc.problems:
                match = _FIELD.match(p.message)
                errors.append(
                    {
                        "index": p.index,
                        "id": p.event_id,
                        "field": match.group(1) if match else None,
                        "message": match.group(2) if match else p.message,
                    }
                )
            # Told by what the store said, never by the text: a value may say "refused" too.
            conflict = all(p.refused for p in exc.problems)
            status = 409 if conflict else 422
            return problem(status, "Events refused" if conflict else "Invalid events", str(exc), errors=errors)
        if isinstance(exc, NotFound):
            return problem(404, "Not found", str(exc))
        if isinstance(exc, CommandRefused):
            return problem(409, "Refused", str(exc))
        if isinstance(exc, StoreIsACopy):
            return problem(409, "Refused", told(request, exc))
        if isinstance(exc, queries.BadQuery):
            return problem(422, "Invalid query", str(exc))
        if isinstance(exc, ViewsRemadeByAnotherVersion):
            # Not this request's fault, nor a bug, nor soon over: the server is to be replaced.
            return problem(503, "Unavailable", told(request, exc))
        if isinstance(exc, StoreBusy):
            busy = problem(503, "Busy", told(request, exc))
            # Another writer's long transaction: worth asking again soon (providers do).
            busy.headers["Retry-After"] = str(BUSY_RETRY_AFTER)
            return busy
        if isinstance(exc, StoreUnavailable):
            # The database server lost or refused the request's connection, or cancelled its
            # statement: no bug, and passing (a restart, a failover), so worth asking again.
            unavailable = problem(503, "Unavailable", told(request, exc))
            unavailable.headers["Retry-After"] = str(BUSY_RETRY_AFTER)
            return unavailable
        if isinstance(exc, StoreError):
            return problem(500, "Store error", told(request, exc))
        return problem(500, "Store error", str(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace: a 500 is a bug, reported without its insides.
        return problem(500, "Internal error", f"an unexpected {type(exc).__name__}; this is a bug in flowledger")

    @app.get("/healthz", response_model=Health, response_model_exclude_unset=True, tags=["service"])
    def healthz() -> dict[str, Any]:
        """The service and its store answer (no key needed), with the log's last position
        and how far the slowest view is behind it (and the webhook events waiting in the
        inbox, when there are any); a 503 once the server's follower has stopped for good,
        or the views are another version's (one small read), so that a health probe
        replaces the server."""
        # Its views fall behind and the inbox is no longer drained, or another version made
        # them (with no follower to notice): not a server to keep.
        stopped = follower_stopped()
        if stopped is not None:
            raise ApiProblem(503, "Unavailable", stopped)
        lag = ledger.views_lag(the_log())
        if lag.another_version is not None:
            raise ApiProblem(503, "Unavailable", lag.another_version)
        health: dict[str, Any] = {"status": "ok", "position": lag.position}
        if lag.behind is not None:
            health["behind"] = lag.behind
        deferred = ledger.inbox_count(the_log(), state["inbox"]) if state["inbox"] is not None else 0
        if deferred:
            health["deferred"] = deferred
        return health

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: Read) -> Response:
        return Response(orjson.dumps(app.openapi()), media_type="application/json")

    @app.post(
        "/v1/events",
        response_model=AppendResponse,
        tags=["events"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "array", "maxItems": MAX_BATCH_EVENTS, "items": {"type": "object"}}}},
            }
        },
    )
    async def append_events(request: Request, _: Write) -> dict[str, int]:
        """Append a JSON array of events: validated, redacted, checked, stored all or nothing.

        The same request sent twice stores nothing new (every event id is an idempotency key).
        """
        not_encoded(request)
        body = await read_body(request, MAX_BATCH_BYTES)
        try:
            events = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise ApiProblem(422, "Invalid events", f"the body is {json_problem(body, e)}") from None
        if not isinstance(events, list):
            raise ApiProblem(422, "Invalid events", "expected a JSON array of events")
        if len(events) > MAX_BATCH_EVENTS:
            raise ApiProblem(413, "Too large", f"{len(events):,} events; the limit is {MAX_BATCH_EVENTS:,} per request")
        await run_in_threadpool(still_valid, request)
        result = await run_in_threadpool(ledger.append_batch, the_log(), events, redactor, max_event_bytes)
        return {"appended": result.appended, "duplicates": result.duplicates}

    def run_query(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return ledger.query(the_log(), fn, *args, **kwargs)

    def stamp(value: str | None, name: str) -> str | None:
        if value is None:
            return None
        try:
            return normalize_timestamp(value)
        except ValueError:
            expected = "expected an RFC 3339 timestamp with an offset, like 2026-11-01T00:00:00Z"
            raise ApiProblem(422, "Invalid query", f"{name}: {expected}", errors=[{"field": name, "message": expected}]) from None

    def cursors(after: str | None, before: str | None) -> None:
        # Checked here, not only by the query: its error cannot say which parameter it was.
        if after and before:
            raise ApiProblem(422, "Invalid query", "give after or before, not both", errors=[{"field": "before", "message": "give after or before, not both"}])
        for name, cursor in (("after", after), ("before", before)):
            if cursor:
                try:
                    queries.decode_cursor(cursor)
                except queries.BadQuery as e:
                    raise ApiProblem(422, "Invalid query", f"{name}: {e}", errors=[{"field": name, "message": "not a cursor from a previous page"}]) from None

    PageSize = Annotated[int, Query(ge=1, le=queries.MAX_PAGE_SIZE)]
    # As the web pages take it (queries._contact_conditions): what the listings show.
    Recipient = Annotated[
        str | None,
        Query(description='The recipient as listings show it: its id ("c-1": in any collection or none), '
              'or its collection and id ("contacts/c-1").', max_length=queries.MAX_CONTACT_LENGTH),
    ]

    @app.get("/v1/runs", tags=["runs"], response_model=shapes.RunPage)
    def list_runs(
        _: Read,
        workflow: str | None = None,
        status: Annotated[list[Literal["pending", "running", "paused", "completed", "failed", "cancelled"]] | None, Query()] = None,
        tenant: str | None = None,
        recipient: Recipient = None,
        has_errors: bool = False,
        starting_at: str | None = None,
        ending_at: str | None = None,
        updated_before: Annotated[
            str | None,
            Query(description="Only runs whose last event (updated_at) is at or before this time (RFC 3339): with status=running, the stuck ones."),
        ] = None,
        after: str | None = None,
        before: str | None = None,
        page_size: PageSize = 50,
    ) -> dict[str, Any]:
        """Runs, newest first, with Knock's filters and cursor paging."""
        cursors(after, before)
        filters = queries.RunFilters(
            workflow, tuple(status or ()), tenant, None, has_errors,
            stamp(starting_at, "starting_at"), stamp(ending_at, "ending_at"), stamp(updated_before, "updated_before"),
        )
        paging = {"page_size": page_size, "after": after, "before": before}
        if recipient is None:
            return run_query(queries.list_runs, filters, **paging)  # type: ignore[no-any-return]
        return run_query(queries.list_runs_by_contact, filters, recipient, **paging)  # type: ignore[no-any-return]

    RunId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]

    # Ids may hold "/" (a %2F reaches the router decoded): {…:path} takes them whole, and
    # the routes with a suffix come first, so "a/b/history" is the history of "a/b".
    @app.get("/v1/runs/{run_id:path}/history", tags=["runs"], response_model=shapes.RunHistory, response_model_exclude_unset=True)
    def run_history(
        run_id: RunId,
        _: Read,
        page_size: Annotated[
            int | None,
            Query(ge=1, le=MAX_HISTORY_PAGE, description=f"Entries per page (1 to {MAX_HISTORY_PAGE}); without it or after, the whole replay."),
        ] = None,
        after: Annotated[
            int | None,
            Query(
                ge=0,
                description=f"The entries after this log position (page_info.after of the page before: its last entry's position; "
                f"0: from the first); {HISTORY_PAGE} of them without page_size.",
            ),
        ] = None,
    ) -> dict[str, Any]:
        """The auditor's replay: every event of the run with its record right after (by
        pages, oldest first, given page_size or after)."""
        answer: dict[str, Any] = {"run_id": run_id}
        if page_size is not None or after is not None:
            size = page_size or HISTORY_PAGE
            # A log position, not n: a provider fact stored before its message was queued
            # joins the replay at its place in the log, renumbering the entries after it;
            # positions never move, so a page never repeats an entry of the one before.
            # Each entry's state is the fold of all before it: the fold still starts at the
            # run's first event, but stops at the page's end and makes only its records.
            page = ledger.replay_page(the_log(), run_id, after or 0, size)
            history = page.entries
            answer["page_info"] = {"after": page.after, "page_size": size}
        else:
            history = ledger.replay(the_log(), run_id)
        # Each with the status after it, as `replay --json` has it.
        answer["events"] = [
            {"n": h.n, "position": h.event.position, "event": h.event.body, "status": h.record["status"], "state": h.record}
            for h in history
        ]
        return answer

    # The command bodies are read by command_body, after the key: declared as parameters,
    # FastAPI would read them whole before checking it.
    @app.post(
        "/v1/runs/{run_id:path}/retry", tags=["runs"], response_model=shapes.RunDetail, response_model_exclude_unset=True,
        openapi_extra=_body_schema(CommandRequest, required=False), responses=_RECORDED_NOT_SHOWN,
    )
    async def retry_run(run_id: RunId, key: Admin, request: Request) -> Any:
        """Retry a failed run (recorded as run.retried with the key's name and the reason)."""
        return await run_command(ledger.retry_run, run_id, key, request)

    @app.post(
        "/v1/runs/{run_id:path}/cancel", tags=["runs"], response_model=shapes.RunDetail, response_model_exclude_unset=True,
        openapi_extra=_body_schema(CommandRequest, required=False), responses=_RECORDED_NOT_SHOWN,
    )
    async def cancel_run(run_id: RunId, key: Admin, request: Request) -> Any:
        """Cancel an unfinished run."""
        return await run_command(ledger.cancel_run, run_id, key, request)

    async def run_command(command: Callable[..., Any], run_id: str, key: keys.ApiKey, request: Request) -> Any:
        """Record a retry or cancel of one run by ``key`` with the request's optional reason;
        the run as it is then."""
        body = await command_body(request, CommandRequest, required=False)

        def record() -> Any:
            still_valid(request)
            try:
                return command(the_log(), run_id, actor=f"api:{key.name}", reason=body.reason if body else None, redactor=redactor)
            except RecordedButNotShown as e:
                # Done, so not an error (a second try would be refused): what the log's rules
                # know of the run, and why its record is missing.
                return JSONResponse(e.summary(), status_code=202)

        return await run_in_threadpool(record)

    @app.get("/v1/runs/{run_id:path}", tags=["runs"], response_model=shapes.RunDetail, response_model_exclude_unset=True)
    def show_run(run_id: RunId, _: Read) -> dict[str, Any]:
        """A run's record, its step trace, its deliveries and its events (on an analyst's
        copy, instead of the events, events_in: the store whose log holds them)."""
        record = run_query(queries.show_run, run_id)
        source = the_log().backend.copy_of()
        if source is not None:
            # A `rebuild --into` copy has the source's views but an empty log of its own:
            # answer what the views hold, as `runs show` does there, and say where the rest is.
            record["events_in"] = source
        else:
            record["events"] = [_event_entry(e.body) for e in the_log().run_events(run_id)]
        return record  # type: ignore[no-any-return]

    @app.post(
        "/v1/cancellations", response_model=CancellationResponse, tags=["runs"],
        openapi_extra=_body_schema(CancellationRequest, required=True), response_model_exclude_unset=True,
    )
    async def cancellations(key: Admin, request: Request) -> dict[str, Any]:
        """Cancel every unfinished run triggered with a cancellation key (a tenant's alone,
        where the body names one)."""
        body = await command_body(request, CancellationRequest, required=True)
        assert body is not None  # required: command_body answered 422 for none
        await run_in_threadpool(still_valid, request)
        cancelled = await run_in_threadpool(
            ledger.cancel_by_key,
            the_log(),
            body.key,
            actor=f"api:{key.name}",
            reason=body.reason,
            redactor=redactor,
            tenant=body.tenant,
        )
        scope = {} if body.tenant is None else {"tenant": body.tenant}
        return {"cancellation_key": body.key, **scope, "cancelled": cancelled}

    @app.get("/v1/deliveries", tags=["deliveries"], response_model=shapes.DeliveryPage)
    def list_deliveries(
        _: Read,
        run_id: str | None = None,
        channel: Literal["email", "sms", "whatsapp", "push", "in_app"] | None = None,
        status: Annotated[list[Literal["queued", "sent", "delivered", "read", "opened", "clicked", "bounced", "failed"]] | None, Query()] = None,
        recipient: Recipient = None,
        after: str | None = None,
        before: str | None = None,
        page_size: PageSize = 50,
    ) -> dict[str, Any]:
        """Deliveries, one per message, newest first."""
        cursors(after, before)
        filters = queries.DeliveryFilters(run_id, channel, tuple(status or ()))
        paging = {"page_size": page_size, "after": after, "before": before}
        if recipient is None:
            return run_query(queries.list_deliveries, filters, **paging)  # type: ignore[no-any-return]
        return run_query(queries.list_deliveries_by_contact, filters, recipient, **paging)  # type: ignore[no-any-return]

    @app.get("/v1/deliveries/{message_id:path}", tags=["deliveries"], response_model=shapes.Delivery)
    def show_delivery(message_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)], _: Read) -> dict[str, Any]:
        """One message's delivery."""
        return run_query(queries.show_delivery, message_id)  # type: ignore[no-any-return]

    @app.get("/v1/workflows", tags=["workflows"], response_model=shapes.WorkflowList)
    def list_workflows(
        _: Read,
        match: Annotated[
            str | None, Query(description="Only workflows whose key holds this text, in any case.", max_length=MAX_ID_LENGTH)
        ] = None,
        after: Annotated[
            str | None, Query(description="Only workflows whose key sorts after this one: the previous page's `next`.", max_length=MAX_ID_LENGTH)
        ] = None,
        page_size: Annotated[int | None, Query(ge=1, le=queries.MAX_PAGE_SIZE, description="At most this many (none: every one).")] = None,
    ) -> dict[str, Any]:
        """The workflows that have runs, in key order: every one, or pages of them."""
        return run_query(queries.workflows_page, match=match or None, after=after, page_size=page_size)  # type: ignore[no-any-return]

    @app.get("/v1/counts", tags=["workflows"], response_model=shapes.Counts)
    @app.get("/v1/workflows/counts", tags=["workflows"], response_model=shapes.Counts)
    def counts(_: Read, include_rehearsals: bool = False) -> dict[str, Any]:
        """Runs by status across all workflows and per workflow (also at /v1/workflows/counts)."""
        return run_query(queries.counts, include_rehearsals=include_rehearsals)  # type: ignore[no-any-return]

    WorkflowKey = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH)]

    @app.get("/v1/workflows/{key:path}/stats", tags=["workflows"], response_model=shapes.ExecutionStats)
    def workflow_stats(key: WorkflowKey, _: Read) -> dict[str, Any]:
        """Step attempts by state, per node and per edge."""
        return run_query(queries.execution_stats, key)  # type: ignore[no-any-return]

    @app.get("/v1/workflows/{key:path}", tags=["workflows"], response_model=shapes.WorkflowDetails, response_model_exclude_unset=True)
    # /v1/workflows/counts is the workspace counts (documented before workflows could be
    # named so): .../details reaches any workflow, one named "counts" too. (Decorators
    # apply bottom up: this route is tried before the bare one.)
    @app.get("/v1/workflows/{key:path}/details", tags=["workflows"], response_model=shapes.WorkflowDetails, response_model_exclude_unset=True)
    def workflow(key: WorkflowKey, _: Read) -> dict[str, Any]:
        """The seed docs' workflow details: channels, totals, progress, duration."""
        return run_query(queries.workflow_details, key)  # type: ignore[no-any-return]


    Limit = Annotated[int, Query(ge=1, le=100_000, description="How many to list, oldest first.")]

    @app.get("/v1/inbox", tags=["webhooks"], response_model=shapes.InboxReport)
    def webhook_inbox(_: Read, limit: Limit = 1000) -> dict[str, Any]:
        """The webhook inbox, as `flowledger inbox --json`: how many provider events wait for
        the store's write lock, and the dead letters (webhooks set aside, never appended)."""
        return {"waiting": ledger.inbox_count(the_log(), state["inbox"]), "dead_letters": ledger.inbox_dead_letters(the_log(), limit)}

    @app.get("/v1/unmatched", tags=["webhooks"], response_model=shapes.UnmatchedList)
    def unmatched(_: Read, limit: Limit = 1000) -> dict[str, Any]:
        """Provider events waiting for their message, as `flowledger unmatched --json` lists them."""
        return {"entries": ledger.unmatched(the_log(), limit)}

    # A str with the providers as its schema's enum, not a Literal: a provider flowledger does
    # not know is an unknown resource (404), not an invalid request (422).
    Provider = Annotated[str, Path(json_schema_extra={"enum": sorted(ADAPTERS)})]

    @app.post(
        "/v1/webhooks/{provider}", response_model=WebhookResponse, response_model_exclude_unset=True,
        tags=["webhooks"], openapi_extra={"security": []},
    )
    async def webhook(provider: Provider, request: Request) -> dict[str, int]:
        """A provider's webhook, in its own format: the signature (or basic auth) is checked
        before anything is stored; events are matched to their messages. While another
        process holds the store's write lock, they are kept in the webhook inbox ("deferred")."""
        if provider not in ADAPTERS:
            raise ApiProblem(404, "Not found", f"no webhook for {provider!r}; the providers are {', '.join(sorted(ADAPTERS))}")
        # Twilio's message id comes in the query: read as U+FFFD, it would be another message's.
        bad_query = query_not_utf8(request.scope.get("query_string", b""))
        if bad_query:
            raise ApiProblem(422, "Invalid webhook", f"the query parameter {bad_query[0]['field']} is {bad_query[0]['message']}")
        # Unauthenticated until checked: never hold more than the limit of it in memory, nor
        # more than the budget of all of them (slow senders of large bodies would take it all).
        async with webhook_bodies.holding(request, MAX_BATCH_BYTES) as body:
            return await _webhook(provider, request, body)

    async def _webhook(provider: str, request: Request, body: bytes) -> dict[str, int]:
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        url = str(request.url)
        if public_url:
            url = public_url.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        signed = SignedRequest(body, {k.lower(): v for k, v in request.headers.items()}, url=url, form=form)
        adapter = ADAPTERS[provider]
        received = time.time()

        def check_and_store() -> tuple[ledger.PreparedFacts, ledger.AppendResult, int]:
            # Checking a signature and translating up to 10 MB: off the event loop.
            try:
                # Mailgun's tokens remembered in the store: shared by its servers, and kept
                # across their restarts (this process's memory where there is no inbox).
                facts = adapter.facts(signed, webhook_secrets.get(provider, {}), received, state["inbox"])
            except SignatureInvalid as e:
                raise ApiProblem(401, "Unauthorized", str(e)) from None
            except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as e:
                raise ApiProblem(422, "Invalid webhook", f"not a {provider} webhook: {e}") from None
            # Invalid or oversize events: a 422 naming each, as POST /v1/events answers.
            prepared = ledger.prepare_provider_facts(facts, redactor, max_event_bytes, ledger.utc_stamp(received))
            result, deferred = ledger.receive_provider_facts(state["webhooks"], state["inbox"], prepared)
            return prepared, result, deferred

        prepared, result, deferred = await run_in_threadpool(check_and_store)
        answer = {"appended": result.appended, "duplicates": result.duplicates, "held": result.held, "skipped": prepared.skipped}
        if deferred:
            answer["deferred"] = deferred
        return answer

    @app.get("/v1/webhooks/whatsapp", tags=["webhooks"], openapi_extra={"security": []}, response_class=Response)
    def whatsapp_handshake(request: Request) -> Response:
        """Meta's subscription handshake: echoes hub.challenge for the right verify token."""
        try:
            challenge = handshake(dict(request.query_params), webhook_secrets.get("whatsapp", {}))
        except SignatureInvalid as e:
            raise ApiProblem(403, "Forbidden", str(e)) from None
        return Response(challenge, media_type="text/plain")

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            }
            schema["security"] = [{"ApiKey": []}]
            schema["paths"]["/healthz"]["get"]["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
    pages.mount(app, the_log, public_url=public_url, follower_stopped=follower_stopped)
    app.add_middleware(HeadAsGet)
    return app


class HeadAsGet:
    """Answers HEAD as GET without the body: FastAPI's routes take GET alone, and load
    balancers and link checkers ask HEAD (the headers, Content-Length too, are GET's)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headless(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headless)


def _event_entry(body: dict[str, Any]) -> dict[str, Any]:
    """One event of a run, as GET /v1/runs/{id} lists it."""
    kind = body["type"]
    return {
        "id": body["id"],
        "type": kind,
        "occurred_at": body["occurred_at"],
        "attempt": body.get("attempt"),
        "step": body.get("step"),
        "step_type": body.get("step_type"),
        "status": "error" if kind in ("step.failed", "run.failed") else "ok",
        "data": {k: v for k, v in body.items() if k not in ("id", "type", "occurred_at", "run_id", "recorded_at")},
    }

