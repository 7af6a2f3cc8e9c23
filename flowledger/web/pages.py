"""The operators' pages: run history, a run, deliveries, workflows and the workspace counts.

Server-rendered (Jinja2, every value escaped), over the same queries as the API. Signing in
starts a session (keys.start_session) whose random token, never the key, goes in an HttpOnly,
SameSite=Strict cookie; forms that change state carry a CSRF token derived from that session;
read keys see everything but the buttons. Pages cannot be framed, and run no script but the
buttons' confirmations; a page's form posts at most FORM_LIMIT bytes.
"""

import base64
import dataclasses
import functools
import hashlib
import hmac
import html as html_text
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from flowledger import ledger, queries
from flowledger.api import keys
from flowledger.api.told import key_checked, told
from flowledger.domain.run import STATUSES
from flowledger.domain.vocabulary import MAX_ID_LENGTH, normalize_timestamp
from flowledger.errors import (
    CommandRefused,
    NotFound,
    RecordedButNotShown,
    StoreBusy,
    StoreError,
    StoreUnavailable,
    ViewsRemadeByAnotherVersion,
)
from flowledger.projections.run_record import event_detail, recipient_label
from flowledger.projections.steps_view import STEP_STATES
from flowledger.store.log import EventLog
from flowledger.web import charts

COOKIE = "flowledger_session"
"""The cookie that holds the signed-in session's token (never the API key)."""
STUCK_AFTER = timedelta(hours=1)
"""A pending or running run with no news for more than this long is stuck."""
STUCK_AFTER_TEXT = "1 hour"
""":data:`STUCK_AFTER` as the pages say it."""
STUCK_STATUSES = ("pending", "running")
"""The statuses in which a run waits for news, and so can be stuck."""
RANGES = [("all", "Any time"), ("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("30d", "Last 30 days"), ("custom", "Custom")]
_RANGE_DELTAS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# Every status has its chip: the overview's cards link to each, and a listing filtered by
# one must say so.
CHIPS = [(None, "All"), *((s, s.capitalize()) for s in STATUSES)]
DELIVERY_STATUSES = ["queued", "sent", "delivered", "read", "opened", "clicked", "bounced", "failed"]
CHANNELS = ["email", "sms", "whatsapp", "push", "in_app"]
RUN_PAGE_ROWS = 1000
"""The most step attempts, deliveries and history entries a run's page shows (its history
by pages of this many): a run of thousands of messages made pages of tens of megabytes."""
WORKFLOWS_SHOWN = 200
"""The most workflows a page lists (the workflows page by pages of this many) or offers
in a menu (past it, the runs page takes a workflow's key typed in): a workspace of
20,000 workflows made an overview page of 13 MB."""
NO_HISTORY = queries.HistoryPage([], None, 0)
"""The history a run's page shows on an analyst's copy, which has no log to replay."""

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
_env.filters["t"] = lambda s: "–" if not s else s.replace(".000000Z", "Z").replace("T", " ")
_env.filters["pretty"] = lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2).decode()
# One path segment: Jinja's urlencode keeps "/", and ids may hold "/", "#", "?" or "%".
_env.filters["segment"] = lambda v: quote(str(v), safe="")
# The longest recipient a filter takes (the browser stops the typing there; the server checks too).
_env.globals["max_contact_length"] = queries.MAX_CONTACT_LENGTH


def _figure(value: Any) -> str:
    """A figure as the CLI prints it: "–" for none (a rate over zero), amounts by currency joined."""
    if value is None:
        return "–"
    if isinstance(value, dict):
        return " + ".join(f"{amount} {currency}" for currency, amount in sorted(value.items()))
    return str(value)


def _cost(totals: dict[str, Any]) -> str:
    """A workflow's cost: one amount and its currency, or each currency's amount (never "mixed")."""
    if totals.get("costs_by_currency"):
        return _figure(totals["costs_by_currency"])
    return f"{_figure(totals['total_cost'])} {totals['currency'] or ''}".rstrip()


_env.filters["figure"] = _figure
_env.filters["cost"] = _cost
SET_ASIDE_SHOWN = 100
"""The overview counts the inbox's dead letters up to this many ("more than" beyond)."""
REFUSALS = {
    "retry": "The run was not retried: only a failed run can be retried.",
    "cancel": "The run was not cancelled: only a pending, running or paused run can be cancelled.",
}
"""What a run's page says after a refused command (a code in the URL, never free text)."""


def wants_page(request: Request) -> bool:
    """A browser asked for a page: text/html acceptable (a q above 0), at a path outside the API's /v1."""
    path = request.scope["path"]
    if path == "/v1" or path.startswith("/v1/"):
        return False
    for kind in request.headers.get("accept", "").split(","):
        media, _, options = kind.partition(";")
        if media.strip().lower() != "text/html":
            continue
        weight = 1.0
        for option in options.split(";"):
            name, _, value = option.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0  # not a weight: not asked for
        return weight > 0
    return False


def error_page(http_status: int, title: str, message: str) -> HTMLResponse:
    """The site's own page for an error outside every page's handler (a path nobody serves)."""
    html = _env.get_template("error.html").render(key=None, title=title, error=message)
    return _hardened(HTMLResponse(html, status_code=http_status))


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: only someone holding its cookie can make it."""
    return hmac.new(session_token.encode(), b"flowledger csrf", hashlib.sha256).hexdigest()


def csrf_matches(given: str, session_token: str) -> bool:
    """A posted CSRF token is the session's (in constant time; any text, not only ASCII)."""
    return hmac.compare_digest(given.encode(), csrf_token(session_token).encode())


def _handler_hashes() -> list[str]:
    # The templates' inline handlers (the buttons' confirmations), allowed by their hash, so
    # no other script runs: not one planted in a value, not one from another origin.
    found = set()
    for template in (Path(__file__).parent / "templates").glob("*.html"):
        for handler in re.findall(r'\son[a-z]+="([^"]*)"', template.read_text()):
            digest = hashlib.sha256(html_text.unescape(handler).encode()).digest()
            found.add(f"'sha256-{base64.b64encode(digest).decode()}'")
    return sorted(found)


_HANDLERS = _handler_hashes()
_SCRIPTS = " ".join(["'unsafe-hashes'", *_HANDLERS]) if _HANDLERS else "'none'"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'self'; script-src {_SCRIPTS}; style-src 'self' 'unsafe-inline'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
"""Sent with every page: no framing (clickjacking), no script but the buttons' confirmations,
forms posted only here, no page address (with its filters) sent to other sites, and no copy
kept by the browser or a proxy (after signing out, Back shows no run, recipient or error)."""


def _hardened(response: HTMLResponse) -> HTMLResponse:
    response.headers.update(SECURITY_HEADERS)
    return response


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stuck_bound(now: datetime) -> str:
    """The ``updated_before`` that picks the runs :func:`_is_stuck` marks at ``now``."""
    # updated_before is inclusive ("at or before") and stuck is quiet for *more* than
    # STUCK_AFTER: a microsecond (the stored times' resolution) earlier leaves a run quiet
    # for exactly STUCK_AFTER out of both.
    return _stamp(now - STUCK_AFTER - timedelta(microseconds=1))


def _is_stuck(run: dict[str, Any], now: datetime) -> bool:
    """A listed run is pending or running and has had no news for more than STUCK_AFTER."""
    return run["status"] in STUCK_STATUSES and now - datetime.fromisoformat(run["updated_at"]) > STUCK_AFTER


def _contact_problem(contact: str | None) -> str | None:
    """Why a contact filter cannot be one a listing shows (too long), or None."""
    if contact is not None and len(contact) > queries.MAX_CONTACT_LENGTH:
        return (
            f"A recipient is at most {queries.MAX_CONTACT_LENGTH} characters (a collection and an id, "
            f"each at most {MAX_ID_LENGTH}, and the /); this one has {len(contact):,}."
        )
    return None


def _stuck_filters(filters: queries.RunFilters, now: datetime) -> queries.RunFilters:
    """``filters`` narrowed to the runs stuck at ``now`` (keeping a status that can be stuck)."""
    statuses = tuple(s for s in STUCK_STATUSES if not filters.statuses or s in filters.statuses)
    return dataclasses.replace(filters, statuses=statuses, updated_before=_stuck_bound(now))


FORM_LIMIT = 64 * 1024
"""The largest body a page's form may post (a key, a CSRF token, a path): larger is a 413."""


class FormLimit:
    """Refuses posts to the pages over :data:`FORM_LIMIT` bytes, or of no stated length, before
    they are read: sign-in takes them from anyone, and the form parser would hold up to a
    thousand fields of 1 MB each. The API's /v1 bounds its own bodies."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or path == "/v1" or path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        # The server reads no more than Content-Length says; browsers always send it for a form.
        length = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if not length.isdigit():
            answer = error_page(411, "Length required", "A form must say its length (Content-Length).")
        elif int(length) > FORM_LIMIT:
            answer = error_page(413, "Too large", f"A form can post at most {FORM_LIMIT:,} bytes (this one has {int(length):,}).")
        else:
            await self.app(scope, receive, send)
            return
        await answer(scope, receive, send)


def nul_fields(request: Request) -> list[str]:
    """The query and path parameters whose value holds a NUL character, which no id or
    filter can hold (PostgreSQL's text cannot): the API's 422 and the pages' both."""
    values = [*request.query_params.multi_items(), *request.path_params.items()]
    return [name for name, value in values if isinstance(value, str) and "\x00" in value]


def mount(
    app: FastAPI,
    the_log: Callable[[], EventLog],
    *,
    public_url: str | None = None,
    follower_stopped: Callable[[], str | None] = lambda: None,
) -> None:
    """Add the pages to the API's app (``public_url``: the site's address behind a proxy;
    ``follower_stopped``: why the server's follower stopped for good, if it did)."""
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_middleware(FormLimit)

    def render(request: Request, template: str, http_status: int = 200, **context: Any) -> HTMLResponse:
        html = _env.get_template(template).render(request=request, **context)
        return _hardened(HTMLResponse(html, status_code=http_status))

    class _SignInFirst(Exception):
        """A page was asked for without a signed-in key."""

    @app.exception_handler(_SignInFirst)
    async def _to_login(request: Request, exc: _SignInFirst) -> Response:
        return to_login(request)

    class _StoreTrouble(Exception):
        """The store failed a page (busy past the lock timeout, or its driver's error)."""

        def __init__(self, error: StoreError) -> None:
            super().__init__(str(error))
            self.error = error
            """The store's error, as translated from its driver."""

    @app.exception_handler(_StoreTrouble)
    async def _store_trouble(request: Request, exc: _StoreTrouble) -> Response:
        # A page, not the API's problem+json: a person reads this in a browser.
        if isinstance(exc.error, (StoreBusy, StoreUnavailable)):
            # Passing (another process writing; the database server lost or refused the
            # connection): worth a reload, as the API's 503 says.
            why = (
                "The store is busy: another process is writing to it. Reload the page in a moment."
                if isinstance(exc.error, StoreBusy)
                else f"The store could not answer: {told(request, exc.error)}"
            )
            response = render(request, "base.html", http_status=503, key=None, error=why)
            response.headers["Retry-After"] = "1"
            return response
        # Views another version made: this server can serve nothing until it is replaced
        # (as /healthz says), not a fault of this request.
        status = 503 if isinstance(exc.error, ViewsRemadeByAnotherVersion) else 500
        return render(request, "base.html", http_status=status, key=None, error=f"The store could not answer: {told(request, exc.error)}")

    def pages_answer(handler: Callable[..., Response]) -> Callable[..., Response]:
        """A page's handler whose store errors become a page saying so, and which answers an
        address with NUL in an id or a filter with a page saying so (PostgreSQL's text cannot
        hold one: its query would fail, a 500; the API answers 422 for it too)."""

        @functools.wraps(handler)
        def answered(*args: Any, **kwargs: Any) -> Response:
            request = kwargs.get("request")
            if isinstance(request, Request) and nul_fields(request):
                return render(
                    request, "base.html", http_status=422, key=None,
                    error="This address holds a NUL character (%00), which no id or filter can hold.",
                )
            try:
                return handler(*args, **kwargs)
            except StoreError as e:
                raise _StoreTrouble(e) from e

        return answered

    def session(request: Request) -> tuple[keys.ApiKey, str]:
        """The signed-in key (and its session's token); anyone else is sent to sign in."""
        found = signed_in(request)
        if found is None:
            raise _SignInFirst
        return found

    Session = Annotated[tuple[keys.ApiKey, str], Depends(session)]

    def signed_in(request: Request) -> tuple[keys.ApiKey, str] | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        try:
            # Looked up on every request: a signed-out, expired or revoked session is gone at once.
            key = keys.session_key(the_log().backend, token)
        except StoreError as e:
            raise _StoreTrouble(e) from e
        if key is None:
            return None
        key_checked(request)
        return key, token

    def to_login(request: Request) -> RedirectResponse:
        path = request.scope["path"]
        if request.method not in ("GET", "HEAD"):
            # A Retry or Cancel posted once the session had ended: back to the run's page
            # after signing in (its address is no page to get), where the button is pressed
            # again if still wanted; a command is never sent on without its form.
            path = path.rsplit("/", 1)[0] or "/"
        # The path as decoded, encoded again: an id's "%", "#" or "?" stays in the path.
        target = quote(path) + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)

    def page(section: str, template: str, request: Request, session: tuple[keys.ApiKey, str], **context: Any) -> HTMLResponse:
        key, token = session
        return render(
            request, template, section=section, key=key, csrf=csrf_token(token), follower_stopped=follower_stopped(), **context
        )

    def not_found(request: Request, session: tuple[keys.ApiKey, str], message: str) -> HTMLResponse:
        response = page("", "base.html", request, session, error=message)
        response.status_code = 404
        return response

    def reads() -> Callable[..., Any]:
        """A request's queries: the first catches the views up with the log, the others read
        them as they then stand (one catch-up a page, not one a query)."""
        fresh = True

        def q(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            nonlocal fresh
            try:
                return ledger.query(the_log(), fn, *args, fresh=fresh, caught_up=not fresh, **kwargs)
            finally:
                fresh = False  # a refused query (a bad cursor) is read after the catch-up

        return q

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    @pages_answer
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "login.html", next=next, key=None)

    def cross_site(request: Request) -> bool:
        """The form was posted from another site (login CSRF: signing a victim in as you)."""
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None:
            return fetch_site not in ("same-origin", "none")
        origin = request.headers.get("origin")
        if origin is None:
            return False  # not a browser, or one too old to say: nothing to go on
        # The host alone: behind a TLS proxy the page is https and this server sees http.
        ours = {request.headers.get("host", ""), urlsplit(public_url).netloc if public_url else ""}
        if origin == "null":
            return True
        try:
            netloc = urlsplit(origin).netloc
        except ValueError:
            return True  # no origin a browser sends ("http://[::1", say): not this site
        return netloc not in ours

    @app.post("/login", include_in_schema=False)
    @pages_answer
    def login(request: Request, api_key: str = Form(""), next: str = Form("/")) -> Response:
        if cross_site(request):
            return render(request, "login.html", http_status=403, next="/", key=None, error="Sign in from this site's own page.")
        key = keys.verify(the_log().backend, api_key.strip())
        if key is None or key.revoked_at is not None:
            return render(request, "login.html", http_status=401, next=next, key=None, error="That API key is unknown or revoked.")
        key_checked(request)
        # Only a path on this site: never an open redirect (browsers read "/\\" as "//").
        target = next if next.startswith("/") and not next.startswith(("//", "/\\")) else "/"
        token = keys.start_session(the_log().backend, key)
        response = RedirectResponse(target, status_code=303)
        # Secure over HTTPS (uvicorn reads X-Forwarded-Proto from a proxy it trusts). No
        # Max-Age: gone with the browser; the server ends it after keys.SESSION_LIFETIME.
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/", secure=request.url.scheme == "https")
        return response

    @app.post("/logout", include_in_schema=False)
    @pages_answer
    def logout(request: Request, csrf: str = Form(""), everywhere: str = Form("")) -> Response:
        session = signed_in(request)
        if session is not None and csrf_matches(csrf, session[1]):
            # Ended on the server too: a copy of the cookie stops working with it.
            if everywhere:
                keys.end_sessions(the_log().backend, session[0].id)
            else:
                keys.end_session(the_log().backend, session[1])
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(COOKIE, path="/")
            return response
        return RedirectResponse("/", status_code=303)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    @pages_answer
    def home(request: Request, session: Session) -> Response:
        q = reads()
        # With rehearsals, as the run history the cards link to lists them.
        counts = q(queries.run_totals, include_rehearsals=True)
        listed = q(queries.workflows_page, page_size=WORKFLOWS_SHOWN, include_rehearsals=True)
        more = q(queries.workflow_count) if listed["next"] is not None else None
        stuck = q(queries.run_status_counts, _stuck_filters(queries.RunFilters(), _now()))["total"]
        try:
            # Facts kept for a busy store are in no count yet, and those set aside never will be.
            deferred = ledger.inbox_count(the_log())
            set_aside = len(ledger.inbox_dead_letters(the_log(), limit=SET_ASIDE_SHOWN + 1))
        except StoreError:
            deferred = set_aside = 0
        return page(
            "home", "home.html", request, session, counts=counts, statuses=STATUSES, stuck=stuck, stuck_after=STUCK_AFTER_TEXT,
            workflows=listed["entries"], workflow_count=more,
            more_workflows="/workflows?" + urlencode({"after": listed["next"]}) if listed["next"] is not None else None,
            deferred=deferred, set_aside=set_aside, set_aside_shown=SET_ASIDE_SHOWN,
        )

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    @pages_answer
    def runs(
        request: Request,
        session: Session,
        status: str | None = None,
        workflow: str | None = None,
        recipient: str | None = None,
        tenant: str | None = None,
        range: str = "all",
        to: str | None = None,
        after: str | None = None,
        before: str | None = None,
        stuck: str | None = None,
    ) -> Response:
        q = reads()
        # One clock a page: the listing's stuck filter, its rows' marks and its date range agree.
        now = _now()
        params = dict(request.query_params)
        from_ = params.get("from") or None
        status = status if status in STATUSES else None
        # "1" or nothing, as a status is one of STATUSES or none: any other value is ignored.
        only_stuck = stuck == "1"
        workflow = workflow or None
        # A platform's customers: as the API's and `runs list`'s tenant filter, the exact id.
        tenant = (tenant or "").strip() or None
        recipient = (recipient or "").strip() or None
        error = _contact_problem(recipient)
        starting_at = ending_at = None
        if range in _RANGE_DELTAS:
            starting_at = _stamp(now - _RANGE_DELTAS[range])
        elif range == "custom":
            try:
                starting_at = _normal(from_)
                ending_at = _normal(to)
            except ValueError:
                error = error or "Dates must be RFC 3339 with an offset, like 2026-11-01T00:00:00Z."
        # Dates or a recipient the listing cannot take: it lists nothing and counts nothing.
        refused = error is not None
        nothing = {"entries": [], "page_info": {"after": None, "before": None}}
        # The contact is a recipient as the listing shows it ("collection/id" too), not the id alone.
        filters = queries.RunFilters(workflow, (status,) if status else (), tenant, None, False, starting_at, ending_at)
        if only_stuck:
            filters = _stuck_filters(filters, now)
        if refused or not filters.statuses and only_stuck:
            # Not every run: a listing that dropped a filter it was asked for looks filtered;
            # and stuck runs of a status never stuck (completed, say) are none, not all.
            result = nothing
        else:
            try:
                paging = {"page_size": 25, "after": after or None, "before": before or None}
                if recipient:
                    result = q(queries.list_runs_by_contact, filters, recipient, **paging)
                else:
                    result = q(queries.list_runs, filters, **paging)
            except queries.BadQuery as e:
                result, error = nothing, str(e)
        # The chips count what their links list: the same filters but the status and stuck.
        others = dataclasses.replace(filters, statuses=(), updated_before=None)
        if refused:
            scope = dict.fromkeys(["total", *STATUSES], 0)
        elif recipient:
            scope = q(queries.run_status_counts_by_contact, others, recipient)
        elif starting_at or ending_at or tenant:
            scope = q(queries.run_status_counts, others)
        else:
            scope = q(queries.run_totals, workflow=workflow, include_rehearsals=True)
        if refused:
            stuck_count = 0
        elif recipient:
            stuck_count = q(queries.run_status_counts_by_contact, _stuck_filters(others, now), recipient)["total"]
        else:
            stuck_count = q(queries.run_status_counts, _stuck_filters(others, now))["total"]
        # A menu of every workflow, or (too many for one) a box for the key.
        menu = q(queries.workflow_keys, limit=WORKFLOWS_SHOWN + 1)
        base = {
            k: v
            for k, v in {"workflow": workflow, "tenant": tenant, "recipient": recipient, "range": range, "from": from_, "to": to}.items()
            if v
        }
        chips = [
            {
                "status": s or "all",
                "label": label,
                "count": scope["total"] if s is None else scope[s],
                "href": "/runs?" + urlencode({**base, **({"status": s} if s else {})}),
                "current": s == status and not (s is None and only_stuck),
            }
            for s, label in CHIPS
        ]
        # Beside the status chips, picked instead of one as they are picked instead of each other.
        stuck_chip = {"count": stuck_count, "href": "/runs?" + urlencode({**base, "stuck": "1"}), "current": only_stuck}
        entries = [{**r, "recipient_label": recipient_label(r["recipient"]), "stuck": _is_stuck(r, now)} for r in result["entries"]]
        state = {**base, **({"status": status} if status else {}), **({"stuck": "1"} if only_stuck else {})}
        info = result["page_info"]
        return page(
            "runs", "runs.html", request, session,
            runs=entries, chips=chips, stuck_chip=stuck_chip, only_stuck=only_stuck, status=status, workflow=workflow, tenant=tenant,
            recipient=recipient, range=range,
            from_=from_, to=to, ranges=RANGES, workflows=menu if len(menu) <= WORKFLOWS_SHOWN else None, error=error,
            max_id_length=MAX_ID_LENGTH,
            stuck_after=STUCK_AFTER_TEXT,
            older="/runs?" + urlencode({**state, "after": info["after"]}) if info["after"] else None,
            newer="/runs?" + urlencode({**state, "before": info["before"]}) if info["before"] else None,
        )

    @app.get("/runs/{run_id:path}", response_class=HTMLResponse, include_in_schema=False)
    @pages_answer
    def run(
        request: Request, session: Session, run_id: str, done: str | None = None, refused: str | None = None, after: str | None = None
    ) -> Response:
        q = reads()
        # The history from after this log position (as GET /v1/runs/{id}/history pages it);
        # anything but a whole number is ignored, as an unknown status is on /runs.
        since = int(after) if after is not None and after.isascii() and after.isdigit() and len(after) < 19 else 0
        try:
            record = q(queries.show_run, run_id)
            # An analyst's copy (`rebuild --into`) has the views, not the log: the run as they
            # hold it, and where its history is, as GET /v1/runs/{id} answers there.
            events_in = the_log().backend.copy_of()
            history = NO_HISTORY if events_in is not None else q(queries.replay_page, run_id, the_log().backend, since, RUN_PAGE_ROWS)
        except NotFound as e:
            return not_found(request, session, str(e))
        now = _stamp(_now())
        steps, deliveries = record["steps"], record["deliveries"]
        shown_steps = steps[:RUN_PAGE_ROWS]
        return page(
            "runs", "run.html", request, session,
            run={**record, "steps": shown_steps, "deliveries": deliveries[:RUN_PAGE_ROWS]},
            steps_total=len(steps), deliveries_total=len(deliveries), limit=RUN_PAGE_ROWS,
            recipient=recipient_label(record["recipient"]), timeline=charts.timeline(shown_steps, now),
            events_in=events_in,
            history=[{"n": h.n, "event": h.event.body, "record": h.record, "detail": event_detail(h.event.body)} for h in history.entries],
            history_total=history.total, history_from=since, history_next=history.after,
            message={"retried": "The run was retried.", "cancelled": "The run was cancelled."}.get(done or ""),
            error=REFUSALS.get(refused or ""),
        )

    def command(
        request: Request, found: tuple[keys.ApiKey, str], run_id: str, csrf: str, action: Callable[..., Any], done: str, refusal: str
    ) -> Response:
        key, token = found
        if not csrf_matches(csrf, token):
            return render(request, "base.html", http_status=403, key=key, csrf=csrf_token(token), error="That form has expired; reload the page and try again.")
        if not key.allows("admin"):
            return render(request, "base.html", http_status=403, key=key, csrf=csrf_token(token), error="Only admin keys can retry or cancel runs.")
        target = f"/runs/{quote(run_id, safe='')}"
        try:
            action(the_log(), run_id, actor=f"web:{key.name}")
        except NotFound as e:
            return not_found(request, found, str(e))
        except CommandRefused:
            return RedirectResponse(target + "?" + urlencode({"refused": refusal}), status_code=303)
        except RecordedButNotShown:
            pass  # done: the run's page says so, or why it cannot be shown yet
        return RedirectResponse(target + "?" + urlencode({"done": done}), status_code=303)

    @app.post("/runs/{run_id:path}/retry", include_in_schema=False)
    @pages_answer
    def retry(request: Request, session: Session, run_id: str, csrf: str = Form("")) -> Response:
        return command(request, session, run_id, csrf, ledger.retry_run, "retried", "retry")

    @app.post("/runs/{run_id:path}/cancel", include_in_schema=False)
    @pages_answer
    def cancel(request: Request, session: Session, run_id: str, csrf: str = Form("")) -> Response:
        return command(request, session, run_id, csrf, ledger.cancel_run, "cancelled", "cancel")

    @app.get("/deliveries", response_class=HTMLResponse, include_in_schema=False)
    @pages_answer
    def deliveries(
        request: Request,
        session: Session,
        channel: str | None = None,
        status: str | None = None,
        recipient: str | None = None,
        run_id: str | None = None,
        after: str | None = None,
        before: str | None = None,
    ) -> Response:
        channel = channel if channel in CHANNELS else None
        status = status if status in DELIVERY_STATUSES else None
        recipient = (recipient or "").strip() or None
        run_id = (run_id or "").strip() or None
        error = _contact_problem(recipient)
        filters = queries.DeliveryFilters(run_id, channel, (status,) if status else ())
        paging = {"page_size": 25, "after": after or None, "before": before or None}
        result: dict[str, Any] = {"entries": [], "page_info": {"after": None, "before": None}}
        try:
            # The contact as the listing shows it ("collection/id" too), as on /runs.
            if recipient and not error:
                result = reads()(queries.list_deliveries_by_contact, filters, recipient, **paging)
            elif not error:
                result = reads()(queries.list_deliveries, filters, **paging)
        except queries.BadQuery as e:
            error = str(e)
        state = {k: v for k, v in {"channel": channel, "status": status, "recipient": recipient, "run_id": run_id}.items() if v}
        info = result["page_info"]
        return page(
            "deliveries", "deliveries.html", request, session,
            deliveries=[{**d, "recipient_label": recipient_label(d["recipient"])} for d in result["entries"]],
            channel=channel, status=status, recipient=recipient, run_id=run_id, channels=CHANNELS,
            delivery_statuses=DELIVERY_STATUSES, error=error,
            older="/deliveries?" + urlencode({**state, "after": info["after"]}) if info["after"] else None,
            newer="/deliveries?" + urlencode({**state, "before": info["before"]}) if info["before"] else None,
        )

    @app.get("/workflows", response_class=HTMLResponse, include_in_schema=False)
    @pages_answer
    def workflows(request: Request, session: Session, match: str | None = None, after: str | None = None) -> Response:
        q = reads()
        match = (match or "").strip() or None
        after = after or None
        listed = q(queries.workflows_page, match=match, after=after, page_size=WORKFLOWS_SHOWN)
        state = {"match": match} if match else {}
        return page(
            "workflows", "workflows.html", request, session, workflows=listed["entries"], statuses=STATUSES,
            match=match, after=after, workflow_count=q(queries.workflow_count), max_id_length=MAX_ID_LENGTH,
            next_page="/workflows?" + urlencode({**state, "after": listed["next"]}) if listed["next"] is not None else None,
            first_page="/workflows" + ("?" + urlencode(state) if state else "") if after else None,
        )

    @app.get("/workflows/{key:path}", response_class=HTMLResponse, include_in_schema=False)
    @pages_answer
    def workflow(request: Request, session: Session, key: str) -> Response:
        q = reads()
        try:
            details = q(queries.workflow_details, key)
            stats = q(queries.execution_stats, key)
            over_time = q(queries.runs_over_time, key, max_bars=charts.MAX_BARS)
        except NotFound as e:
            return not_found(request, session, str(e))
        return page(
            "workflows", "workflow.html", request, session,
            d=details, stats=stats, states=STEP_STATES,
            funnels=[(ch, charts.funnel(ch, m)) for ch, m in details["channels"].items()],
            graph=charts.graph(stats), over_time=charts.over_time(over_time),
        )


def _normal(value: str | None) -> str | None:
    return normalize_timestamp(value) if value else None
