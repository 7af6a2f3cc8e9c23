"""The ``flowledger`` command line: a thin layer over :mod:`flowledger.ledger`.

Each command opens the store, calls one library function, and turns flowledger's
errors into ``click.ClickException`` (exit 1) or ``click.BadParameter`` (exit 2).
"""

from __future__ import annotations

import errno
import functools
import getpass
import logging
import os
import re
import shlex
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import orjson

from flowledger import ledger, queries, shapes
from flowledger.api import keys as api_keys
from flowledger.domain import commands
from flowledger.domain.vocabulary import MAX_ID_LENGTH, EventInvalid, is_an_id, normalize_timestamp, validate_event
from flowledger.domain.redaction import REDACTED, Redactor, changed_places
from flowledger.errors import (
    ENDS_A_FOLLOWER,
    FlowledgerError,
    InvalidInput,
    RecordedButNotShown,
    StoreBusy,
    StoreError,
    StoreReadOnly,
    StoreURLError,
)
from flowledger.ingest import DEFAULT_MAX_EVENT_BYTES, IngestOptions
from flowledger.domain.run import STATUSES
from flowledger.projections.delivery import STATUS_RANK
from flowledger.projections.run_record import event_detail, recipient_label
from flowledger.projections.steps_view import STEP_STATES
from flowledger.secret_scan import SecretScan
from flowledger.store import DEFAULT_STORE, open_log, sqlite_path
from flowledger.store.inbox import INBOX_SUFFIX
from flowledger.store.log import EventLog, utc_now

F = TypeVar("F", bound=Callable[..., Any])

DELIVERY_STATUSES = (*STATUS_RANK, "bounced", "failed")

# Problems shown for one failed input; the rest are counted, not printed.
_MAX_PROBLEMS_SHOWN = 200


class Context:
    """What the group's options say, for the commands below it."""

    def __init__(self, store: str, lock_timeout: float) -> None:
        self.store = store
        """The store URL or path."""
        self.lock_timeout = lock_timeout
        """Seconds to wait for another writer."""

    def open(self, *, create: bool = False, lock_timeout: float | None = None) -> EventLog:
        """Open the store (only the commands that write, ``append``, ``serve`` and
        ``keys create``, may create a new one; ``lock_timeout``: shorter than --lock-timeout)."""
        if "://" not in self.store and not os.path.isabs(os.path.expanduser(self.store)) and _folder_gone():
            # SQLite would say "unable to open database file", a query "no store at" it.
            raise StoreError(
                f"cannot use the store {self.store}: the current folder no longer exists; "
                "cd to one that does, or give --store an absolute path"
            )
        return open_log(self.store, lock_timeout=self.lock_timeout if lock_timeout is None else lock_timeout, create=create)


def _folder_gone() -> bool:
    """Whether the current folder was deleted (nothing in it can be opened or made)."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    return False


def handles_errors(f: F) -> F:
    """Show flowledger's errors as one clear message and exit 1, never a traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except InvalidInput as e:
            try:
                _show_problems(e)
            except BrokenPipeError:
                pass  # standard error's reader has gone: the exit status must still say 1
            raise click.ClickException(str(e)) from None
        except queries.BadQuery as e:
            raise click.BadParameter(str(e)) from None
        except StoreURLError as e:
            raise _bad_store(str(e)) from None
        except FlowledgerError as e:
            raise click.ClickException(str(e)) from None
        except UnicodeEncodeError as e:
            # An argument of bytes that are not UTF-8 reaches Python as lone surrogates,
            # which no store can hold: the user's value, not flowledger, is at fault.
            # Any other text that cannot be encoded is not the user's doing.
            bad = e.object[e.start : e.end] if isinstance(e.object, str) else ""
            if not bad or not all("\udc80" <= ch <= "\udcff" for ch in bad):
                raise
            raw = bad.encode("utf-8", "surrogateescape")
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise click.UsageError(f"a value given is not UTF-8 text (it holds {raw!r})") from None
            # UTF-8 text that Python could not decode: the locale is not UTF-8 (ASCII, as a rule).
            encoding = "ASCII" if sys.getfilesystemencoding() == "ascii" else sys.getfilesystemencoding()
            raise click.UsageError(
                f"a value given is UTF-8 text ({raw!r}), but the locale's encoding is {encoding}: "
                "run with LANG=C.UTF-8 or PYTHONUTF8=1"
            ) from None

    return wrapper  # type: ignore[return-value]


def _bad_store(message: str) -> click.BadParameter:
    """A --store value that cannot be a store is a bad parameter of the group, named as the
    option or the environment variable that gave it (a store it cannot reach is not)."""
    root = click.get_current_context().find_root()
    store = next(p for p in root.command.params if p.name == "store")
    return click.BadParameter(message, ctx=root, param=store)


class _Seconds(click.FloatRange):
    """A number of seconds within bounds (FloatRange lets "nan" through: no bound compares)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = float("nan")
        if seconds != seconds:
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return super().convert(seconds, param, ctx)


class _Option(click.Option):
    """An option that an environment variable may give: a bad value that came from the
    variable is named as the variable, which is what the user set, not as the option."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        """The variable the value came from, else the option's names."""
        if ctx is not None and self.name and ctx.get_parameter_source(self.name) is click.core.ParameterSource.ENVIRONMENT:
            names = [self.envvar] if isinstance(self.envvar, str) else list(self.envvar or ())
            used = next((n for n in names if os.environ.get(n)), None)
            if used is not None:
                return f"the environment variable {used}"
        return super().get_error_hint(ctx)


class _InputFile(click.File):
    """A file to read, or - for standard input, which may be closed."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except RuntimeError:
            # click finds no stream behind a closed sys.stdin (None), and says so this way.
            if value != "-" or (sys.stdin is not None and not sys.stdin.closed):
                raise
            self.fail("standard input is closed: give a FILE, or pipe the events in", param, ctx)


def json_option(f: F) -> F:
    """The shared --json flag."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def catch_up_option(f: F) -> F:
    """The shared --no-catch-up flag of queries."""
    return click.option(
        "--no-catch-up",
        "no_catch_up",
        is_flag=True,
        help="Answer from the views as they are, without applying new events first.",
    )(f)


def once(convert: Callable[[click.Context, click.Parameter, Any], Any] | None = None) -> Callable[..., Any]:
    """The callback of a filter declared ``multiple=True`` only to count its uses: given
    twice it is refused, as the HTTP API refuses a repeated parameter (click would keep the
    last and drop the first without a word, next to --status, which does repeat)."""

    def check(ctx: click.Context, param: click.Parameter, values: tuple[Any, ...]) -> Any:
        if len(values) > 1:
            shown = ", ".join(repr(v) for v in values)
            raise click.BadParameter(f"given {len(values)} times ({shown}); give it once (only --status repeats)")
        value = values[0] if values else None
        return convert(ctx, param, value) if convert is not None else value

    return check


def _cursor(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --after or --before cursor, checked here so that its error names the option."""
    if value is not None:
        try:
            queries.decode_cursor(value)
        except queries.BadQuery:
            raise click.BadParameter(
                f"{value!r} is not a cursor from a previous page (a page prints its own: "
                "older: --after …, newer: --before …)"
            ) from None
    return value


def _one_cursor(after: str | None, before: str | None) -> None:
    """Refuse --after with --before, naming both (the query's own error names neither)."""
    if after is not None and before is not None:
        raise click.UsageError("give --after or --before, not both")


def paging_options(f: F) -> F:
    """The shared --page-size, --after and --before options of listings."""
    f = click.option(
        "--before", multiple=True, callback=once(_cursor), metavar="CURSOR",
        help="Cursor: the page before (newer than) this one.",
    )(f)
    f = click.option(
        "--after", multiple=True, callback=once(_cursor), metavar="CURSOR",
        help="Cursor: the page after (older than) this one.",
    )(f)
    return click.option(
        "--page-size", type=click.IntRange(1, queries.MAX_PAGE_SIZE), default=50, show_default=True,
        help="Entries per page.",
    )(f)


_TIME = "(RFC 3339 with an offset, like 2026-11-01T00:00:00Z)"
"""How the help of a timestamp option says what it takes."""

_AS_SHOWN = "as the tables show it: its id (c-1, in any collection or none), or collection/id (contacts/c-1)"
"""How the help of a --recipient option says what it takes."""


def _recipient(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --recipient longer than any a table shows is a bad parameter (the API's 422)."""
    if value is not None and len(value) > queries.MAX_CONTACT_LENGTH:
        raise click.BadParameter(
            f"expected at most {queries.MAX_CONTACT_LENGTH} characters (a collection and an id of at most "
            f"{MAX_ID_LENGTH} each, and the '/'), got {len(value):,} characters"
        )
    return value


def timestamp_option(name: str, help: str) -> Callable[[F], F]:
    """An option taking an RFC 3339 timestamp with an offset (given once)."""

    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_timestamp(value)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not an RFC 3339 timestamp with an offset, like 2026-11-01T00:00:00Z"
            ) from None

    return click.option(name, multiple=True, callback=once(convert), metavar="TIME", help=help)


def not_blank(what: str, hint: str = "") -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """An option's callback refusing a value that is empty or only white space."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise click.BadParameter(f"{what} cannot be blank (got {value!r}){hint}")
        return value

    return check


def actor_options(f: F) -> F:
    """The shared --reason and --actor options of commands that change a run."""
    # A blank actor would be recorded as such (an API key's name, the API's actor, cannot
    # be blank either); an empty FLOWLEDGER_ACTOR counts as unset, as click reads it.
    f = click.option(
        "--actor",
        cls=_Option,
        envvar="FLOWLEDGER_ACTOR",
        callback=not_blank("the actor", "; leave --actor and FLOWLEDGER_ACTOR out to record your user name"),
        help="Who is asking (recorded in the event). Default: FLOWLEDGER_ACTOR, else your user name.",
    )(f)
    return click.option("--reason", help="Why (recorded in the event).")(f)


_OPTION_OF_FIELD = {"reason": "--reason", "actor": "--actor", "cancellation_key": "--key"}
"""The option of `retry` and `cancel` that gives each field of the event they record."""
_FIELD_PROBLEM = re.compile(r'^field "([^"]+)": (.*)$', re.S)


def refuse_bad_options(event: dict[str, Any]) -> None:
    """Refuse a --reason, --actor or --key that the command's event would not take, as a bad
    parameter naming the option (exit 2), by the event's own rules; called before the store
    is opened, so nothing is stored."""
    try:
        validate_event(event)
    except EventInvalid as e:
        for text in e.messages:
            match = _FIELD_PROBLEM.match(text)
            option = _OPTION_OF_FIELD.get(match.group(1)) if match else None
            if match and option:
                raise click.BadParameter(match.group(2), param_hint=_option_hint(option)) from None
        raise  # a field no option gives: the command's own bug, not the user's value


def _option_hint(option: str) -> str:
    """How an error names an option: as click names it in its own errors (an :class:`_Option`
    whose value came from its environment variable, as that variable), so that a value is
    named one way whatever is wrong with it."""
    ctx = click.get_current_context()
    param = next((p for p in ctx.command.params if option in p.opts), None)
    return param.get_error_hint(ctx) if param is not None else f"'{option}'"


_ANY_RUN = "any-run"
"""The run id an operator's options are checked with before the run is looked for."""

FOUND_EXIT_CODE = 3
"""scan-secrets --fail's exit status when it finds an event (1 is an error's, 2 a usage error's)."""


def _run_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A RUN_ID no run can have is a bad parameter (the API's 422), not looked for in vain."""
    if value is not None and not 1 <= len(value) <= MAX_ID_LENGTH:
        raise click.BadParameter(f"expected a run id of 1 to {MAX_ID_LENGTH} characters, got {len(value):,} characters")
    return value


def run_id_argument(required: bool = True) -> Callable[[F], F]:
    """The RUN_ID argument of the commands on one run."""
    return click.argument("run_id", required=required, callback=_run_id)


def event_options(f: F) -> F:
    """The --max-event-bytes and --redact-key options of the commands that take events
    (append, serve): FLOWLEDGER_MAX_EVENT_BYTES is read here, and only here."""
    f = click.option(
        "--redact-key",
        "redact_keys",
        multiple=True,
        help="Another key whose values are secrets (repeatable); "
        "FLOWLEDGER_REDACT_KEYS adds a comma-separated list.",
    )(f)
    return click.option(
        "--max-event-bytes",
        cls=_Option,
        envvar="FLOWLEDGER_MAX_EVENT_BYTES",
        type=click.IntRange(min=256),
        default=DEFAULT_MAX_EVENT_BYTES,
        show_default=True,
        help="The largest event accepted, in bytes of JSON. Also FLOWLEDGER_MAX_EVENT_BYTES.",
    )(f)


class _Group(click.Group):
    """The command group: a command whose output a closed pipe cuts short
    (`flowledger runs list | head -1`) ends quietly, exit 0; one of the group's own options
    given after the command is shown where it goes."""

    def invoke(self, ctx: click.Context) -> Any:
        # Click empties these as it goes; _protected_args is click 8.2's name (a placeholder
        # stands in for the value where it is missing).
        given = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as e:
            misplaced = _misplaced_group_option(self, e, given)
            if misplaced is None:
                raise
            raise misplaced from None
        except BrokenPipeError:
            _quieten_closed_output()
            # Not click's exit 1: the reader stopped reading, nothing failed. Nor 141, a
            # shell's status for a process SIGPIPE ended: Python ignores SIGPIPE (serve's
            # sockets need that), and one large write cut short returns without an error,
            # so a cut pipe cannot always be told, and one status must do for both.
            raise click.exceptions.Exit(0) from None


def _misplaced_group_option(group: click.Group, error: click.NoSuchOption, given: list[str]) -> click.UsageError | None:
    """The usage error for an option of the group given after a command (where only the
    command's own options are looked for), saying where it goes; None for any other option."""
    name = error.option_name
    option = next((p for p in group.params if isinstance(p, click.Option) and name in p.opts), None)
    if option is None or error.ctx is None:
        return None
    if option.is_flag:
        example = f"flowledger {name}"
    else:
        placeholder = name.lstrip("-").replace("-", "_").upper()
        at = next((i for i, arg in enumerate(given) if arg == name or arg.startswith(f"{name}=")), None)
        if at is None:
            value, command = placeholder, _commands_of(error.ctx)
        elif "=" in given[at]:
            value, command = given[at].partition("=")[2], [*given[:at], *given[at + 1 :]]
        else:
            value = next(iter(given[at + 1 : at + 2]), placeholder)
            # The whole line but the option: the option may come before a subcommand too.
            command = [*given[:at], *given[at + 2 :]]
        example = shlex.join(["flowledger", name, value, *command])
    return click.UsageError(f"{name} is an option of flowledger itself: put it before the command ({example})", ctx=error.ctx)


def _commands_of(ctx: click.Context) -> list[str]:
    """The command names from flowledger's down to ``ctx``'s (``runs list``)."""
    command: list[str] = []
    while ctx.parent is not None:
        command.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    return command


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowledger")
@click.option(
    "--store",
    cls=_Option,
    envvar="FLOWLEDGER_STORE",
    default=DEFAULT_STORE,
    # An empty --store would open ./flowledger.db without a word (an empty FLOWLEDGER_STORE
    # counts as unset, as click reads it, so that one still means the default).
    callback=not_blank("the store", f"; leave --store and FLOWLEDGER_STORE out for {DEFAULT_STORE}"),
    show_default=True,
    help="The store: a SQLite file path, sqlite:///path or postgresql://user@host/db[?schema=name], with libpq settings such as &sslmode=require. Also FLOWLEDGER_STORE.",
)
@click.option(
    "--lock-timeout",
    cls=_Option,
    envvar="FLOWLEDGER_LOCK_TIMEOUT",
    type=_Seconds(min=0.1, max=1_000_000),
    default=60.0,
    show_default=True,
    help="Seconds to wait while another process writes. Also FLOWLEDGER_LOCK_TIMEOUT.",
)
@click.pass_context
def cli(ctx: click.Context, store: str, lock_timeout: float) -> None:
    """flowledger: the append-only run history of workflow automations.

    Services append events; auditors replay a run; operators retry and cancel.

    \b
    Example:
        flowledger --store runs.db append examples/welcome-series.jsonl
        flowledger --store runs.db replay run-0001
    """
    ctx.obj = Context(store, lock_timeout)


@cli.command()
@click.argument("file", type=_InputFile("rb"), default="-")
@click.option(
    "--skip-invalid",
    "skip_file",
    type=click.Path(dir_okay=False, writable=True),
    # A blank name is an unset shell variable, not a file anyone would look for.
    callback=not_blank("a --skip-invalid file"),
    help="Append the good events and write the bad ones, with their errors, to this JSON Lines file.",
)
@event_options
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=100_000),
    default=10_000,
    show_default=True,
    help="Events checked and written per statement batch.",
)
@click.option(
    "--format",
    "provider",
    type=click.Choice(["flowledger", "sendgrid", "mailgun", "postmark", "twilio", "whatsapp"]),
    default="flowledger",
    show_default=True,
    help="Read a file exported from a provider (its own events, or saved webhooks) instead.",
)
@click.pass_obj
@handles_errors
def append(
    obj: Context,
    file: IO[bytes],
    skip_file: str | None,
    max_event_bytes: int,
    redact_keys: tuple[str, ...],
    batch_size: int,
    provider: str,
) -> None:
    """Append events from FILE (JSON Lines, or one JSON array; - for stdin).

    Everything is validated and checked against the domain rules, then stored in one
    transaction: if any line is invalid or any fact refused, every problem is listed
    with its line and field, and nothing of the input is stored. An event id that is
    already stored with the same body is a duplicate, counted and skipped.

    Prints {"appended": n, "duplicates": n}. With --format PROVIDER the file is that
    provider's own events (an export, or saved webhooks): each is matched to its message
    (by the id the sender put in it, else by the provider's message id); one that matches
    nothing yet is held until its message is known (see `flowledger unmatched`).

    \b
    Example:
        flowledger append examples/welcome-series.jsonl
        cat examples/welcome-series.jsonl | flowledger append -
        flowledger append examples/malformed.jsonl --skip-invalid rejected.jsonl
        flowledger append --format sendgrid tests/fixtures/sendgrid-events.json
    """
    if _is_terminal_input(file):
        # Else a command given no FILE would wait without a word.
        what = "one JSON object a line" if provider == "flowledger" else f"as {provider} exports or posts them"
        click.echo(f"reading events from standard input, {what} (end with Ctrl-D)", err=True)
    redactor = Redactor.from_environment(redact_keys)
    if provider != "flowledger":
        if skip_file is not None:
            raise click.UsageError("--skip-invalid goes with flowledger's own format only")
        try:
            data = file.read()
        except OSError as e:
            raise click.ClickException(f"reading the input failed: {e.strerror}; nothing was stored") from None
        log = obj.open(create=True)
        try:
            result, skipped = ledger.append_export(log, provider, data, redactor, max_event_bytes)
        finally:
            log.close()
        done = orjson.dumps({"appended": result.appended, "duplicates": result.duplicates, "held": result.held, "skipped": skipped}).decode()
        with _output_after(f"the append was done ({done})"):
            click.echo(done)
        return
    options = IngestOptions(
        max_event_bytes=max_event_bytes,
        redactor=redactor,
        chunk_size=batch_size,
        keep_sources=skip_file is not None,
    )
    if skip_file is not None:
        _refuse_a_store_file(skip_file, obj.store)
        _refuse_the_input(skip_file, file)
    # Opened before anything is stored: the bad events must have somewhere to go.
    skipped = _open_skip_file(skip_file) if skip_file is not None else None
    stored = False
    try:
        log = obj.open(create=True)
        try:
            with _progress(file) as progress:
                result, rejected = ledger.append_input(
                    log, file, options, keep_going=skipped is not None, progress=progress
                )
        except OSError as e:
            # A small input is read here, as the events are appended (a large one in a
            # second process, whose failure is a FlowledgerError): the transaction is undone.
            if not _raised_in(e, "flowledger.ingest"):
                raise
            raise click.ClickException(f"reading the input failed: {e.strerror}; nothing was stored") from None
        finally:
            log.close()
        stored = True
        summary: dict[str, int] = {"appended": result.appended, "duplicates": result.duplicates}
        if skipped is not None:
            summary["skipped"] = bad = _write_skipped(skipped, rejected, result, redactor)
        done = orjson.dumps(summary).decode()
        if skipped is not None and bad:
            with _output_after(f"the append was done ({done})"):
                click.echo(f"{bad} invalid or refused event(s) written to {skip_file}", err=True)
    finally:
        if skipped is not None:
            skipped.close(stored)
    with _output_after(f"the append was done ({done})"):
        click.echo(done)


@cli.command()
@run_id_argument()
@click.option("--at", "at", type=click.IntRange(min=1), help="Show the run's state after its N-th event.")
@catch_up_option
@json_option
@click.pass_obj
@handles_errors
def replay(obj: Context, run_id: str, at: int | None, no_catch_up: bool, as_json: bool) -> None:
    """Replay RUN_ID's history: its events and its messages' provider facts in log order,
    each with the run's status after it.

    This is the auditor's view. --at N shows the whole record after the N-th event.
    Which messages are the run's is read from the deliveries view (caught up first,
    unless --no-catch-up); the events themselves come from the log.

    \b
    Example:
        flowledger replay run-0007
        flowledger replay run-0007 --at 3 --json
    """
    history = _on_views(obj, lambda log: ledger.replay(log, run_id, fresh=not no_catch_up), fresh=not no_catch_up)
    if at is not None:
        if at > len(history):
            raise click.BadParameter(
                f"run {run_id!r} has {_count(len(history), 'event')}; N must be 1 to {len(history)}",
                param_hint="--at",
            )
        entry = history[at - 1]
        if as_json:
            # The history entry `replay --json` lists for this event, and where it stands.
            _echo_json(
                {
                    "run_id": run_id, "n": entry.n, "of": len(history), "position": entry.event.position,
                    "event": entry.event.body, "status": entry.record["status"], "state": entry.record,
                }
            )
        else:
            e = entry.event
            click.echo(f"Run {run_id} after event {entry.n} of {len(history)}: {e.type} ({e.body['id']}) at {_t(e.body['occurred_at'])}")
            _echo_record(entry.record)
        return
    if as_json:
        _echo_json(
            shapes.shaped(
                shapes.RunHistory,
                {
                    "run_id": run_id,
                    "events": [
                        {"n": h.n, "position": h.event.position, "event": h.event.body, "status": h.record["status"], "state": h.record}
                        for h in history
                    ],
                },
            )
        )
        return
    first = history[0].record
    click.echo(f"Run {run_id} ({first['workflow']}): {_count(len(history), 'event')}")
    rows = [("#", "occurred_at", "type", "detail", "status after")]
    for h in history:
        rows.append((str(h.n), _t(h.event.body["occurred_at"]), h.event.type, event_detail(h.event.body, limit=60), h.record["status"]))
    _echo_table(rows)


@cli.group()
def runs() -> None:
    """Look at runs.

    \b
    Example:
        flowledger runs show run-0001
    """


@runs.command("list")
@click.option("--workflow", multiple=True, callback=once(), help="Only runs of this workflow key.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES), help="Only runs in this status (repeatable).")
@click.option("--tenant", multiple=True, callback=once(), help="Only runs of this tenant.")
@click.option("--recipient", multiple=True, callback=once(_recipient), help=f"Only runs for this recipient {_AS_SHOWN}.")
@click.option("--has-errors", is_flag=True, help="Only runs with a failed step attempt.")
@timestamp_option("--starting-at", f"Only runs created at or after this time {_TIME}.")
@timestamp_option("--ending-at", f"Only runs created at or before this time {_TIME}.")
@timestamp_option(
    "--updated-before",
    f"Only runs whose last event (updated_at) is at or before this time {_TIME}: with --status running, the stuck ones.",
)
@paging_options
@catch_up_option
@json_option
@click.pass_obj
@handles_errors
def runs_list(
    obj: Context, workflow: str | None, statuses: tuple[str, ...], tenant: str | None, recipient: str | None,
    has_errors: bool, starting_at: str | None, ending_at: str | None, updated_before: str | None, page_size: int,
    after: str | None, before: str | None, no_catch_up: bool, as_json: bool,
) -> None:
    """List runs, newest first, with filters and cursor paging.

    Paging never repeats or misses a run, also while new runs arrive: pass the
    page_info's after (older) or before (newer) cursor to move.

    \b
    Example:
        flowledger runs list --workflow welcome-series --status failed --json
        flowledger runs list --has-errors --starting-at 2026-11-01T00:00:00Z --page-size 20
        flowledger runs list --status running --status pending --updated-before 2026-11-04T21:00:00Z
    """
    _one_cursor(after, before)
    filters = queries.RunFilters(workflow, statuses, tenant, None, has_errors, starting_at, ending_at, updated_before)
    paging = {"fresh": not no_catch_up, "page_size": page_size, "after": after, "before": before}
    if recipient is None:
        page = _query(obj, queries.list_runs, filters, **paging)
    else:
        # As the web pages take it: "collection/id" too (queries._contact_conditions).
        page = _query(obj, queries.list_runs_by_contact, filters, recipient, **paging)
    if as_json:
        _echo_json(shapes.shaped(shapes.RunPage, page))
        return
    rows = [("id", "workflow", "recipient", "status", "created_at", "retries", "errors")]
    for r in page["entries"]:
        rec = recipient_label(r["recipient"])
        rows.append((r["id"], r["workflow"], rec, r["status"], _t(r["created_at"]), f"{r['retry_count']}/{r['max_retries']}", str(r["error_count"])))
    _echo_table(rows, empty=_empty_page("runs", after, before))
    _echo_page_info(page["page_info"])


@runs.command("show")
@run_id_argument()
@catch_up_option
@json_option
@click.pass_obj
@handles_errors
def runs_show(obj: Context, run_id: str, no_catch_up: bool, as_json: bool) -> None:
    """Show RUN_ID's record with its step trace and its deliveries.

    \b
    Example:
        flowledger runs show run-0001
        flowledger runs show run-0001 --json
    """
    record = _query(obj, queries.show_run, run_id, fresh=not no_catch_up)
    if as_json:
        _echo_json(shapes.shaped(shapes.RunDetail, record))
        return
    _echo_record(record)
    if record["steps"]:
        click.echo("\nsteps:")
        rows = [("step", "type", "attempt", "status", "started_at", "seconds", "messages / error")]
        for st in record["steps"]:
            extra = st["error"] or ", ".join(st["messages"])
            rows.append((st["step"], st["step_type"], str(st["attempt"]), st["status"], _t(st["started_at"]), "-" if st["duration_seconds"] is None else f"{st['duration_seconds']:g}", extra))
        _echo_table(rows, indent="  ")
    if record["deliveries"]:
        click.echo("\ndeliveries:")
        _echo_deliveries(record["deliveries"], indent="  ")


@cli.group()
def deliveries() -> None:
    """Look at message deliveries.

    \b
    Example:
        flowledger deliveries list --channel email --status bounced
    """


@deliveries.command("list")
@click.option("--run", "run_id", multiple=True, callback=once(), help="Only messages of this run.")
@click.option(
    "--channel", type=click.Choice(["email", "sms", "whatsapp", "push", "in_app"]), multiple=True, callback=once(),
    help="Only messages on this channel.",
)
@click.option("--status", "statuses", multiple=True, type=click.Choice(DELIVERY_STATUSES), help="Only messages in this status (repeatable).")
@click.option("--recipient", multiple=True, callback=once(_recipient), help=f"Only messages to this recipient {_AS_SHOWN}.")
@paging_options
@catch_up_option
@json_option
@click.pass_obj
@handles_errors
def deliveries_list(
    obj: Context, run_id: str | None, channel: str | None, statuses: tuple[str, ...], recipient: str | None,
    page_size: int, after: str | None, before: str | None, no_catch_up: bool, as_json: bool,
) -> None:
    """List deliveries (one per message), newest first, with filters and cursor paging.

    A message's status is decided by when its facts happened, never by when they
    arrived: a late `sent` never undoes `delivered`; a bounce after delivery does.

    \b
    Example:
        flowledger deliveries list --run run-0001
        flowledger deliveries list --channel whatsapp --status read --json
    """
    _one_cursor(after, before)
    filters = queries.DeliveryFilters(run_id, channel, statuses)
    paging = {"fresh": not no_catch_up, "page_size": page_size, "after": after, "before": before}
    if recipient is None:
        page = _query(obj, queries.list_deliveries, filters, **paging)
    else:
        page = _query(obj, queries.list_deliveries_by_contact, filters, recipient, **paging)
    if as_json:
        _echo_json(shapes.shaped(shapes.DeliveryPage, page))
        return
    _echo_deliveries(page["entries"], empty=_empty_page("messages", after, before))
    _echo_page_info(page["page_info"])


@deliveries.command("show")
@click.argument("message_id")
@catch_up_option
@json_option
@click.pass_obj
@handles_errors
def deliveries_show(obj: Context, message_id: str, no_catch_up: bool, as_json: bool) -> None:
    """Show MESSAGE_ID's delivery: every field of its row, its error and its run included.

    \b
    Example:
        flowledger deliveries show msg-00006
        flowledger deliveries show msg-00006 --json
    """
    delivery = _query(obj, queries.show_delivery, message_id, fresh=not no_catch_up)
    if as_json:
        _echo_json(shapes.shaped(shapes.Delivery, delivery))
        return
    _echo_record(delivery, list(shapes.Delivery.model_fields))


@cli.group()
def workflows() -> None:
    """Look at workflows: their runs, channels and progress.

    \b
    Example:
        flowledger workflows show welcome-series
    """


@workflows.command("list")
@click.option("--match", multiple=True, callback=once(), metavar="TEXT", help="Only workflows whose key holds this text, in any case.")
@click.option("--after", multiple=True, callback=once(), metavar="KEY", help="Only workflows whose key sorts after this one (the last page's last).")
@click.option("--page-size", type=click.IntRange(1, queries.MAX_PAGE_SIZE), default=None, help="At most this many (default: every one).")
@catch_up_option
@json_option
@click.pass_obj
@handles_errors
def workflows_list(obj: Context, match: str | None, after: str | None, page_size: int | None, no_catch_up: bool, as_json: bool) -> None:
    """List the workflows that have runs, in key order, with their run counts by status.

    Rehearsal (test) runs are counted too, unlike in `flowledger counts`. A workspace
    of thousands of workflows can be listed a page at a time: --page-size, then --after
    the last key listed (the table's last line says what to pass); --match narrows the
    list to keys holding a text.

    \b
    Example:
        flowledger workflows list
        flowledger workflows list --match acme/ --page-size 100
    """
    page = _query(obj, queries.workflows_page, match=match or None, after=after, page_size=page_size, fresh=not no_catch_up)
    items = page["entries"]
    if as_json:
        _echo_json(shapes.shaped(shapes.WorkflowList, {"entries": items})["entries"])
        return
    rows = [("workflow", "status", "runs", *STATUSES, "last run")]
    for w in items:
        rows.append((w["key"], w["status"], str(w["runs"]["total"]), *(str(w["runs"][s]) for s in STATUSES), _t(w["last_run_at"])))
    _echo_table(rows, empty="(no more workflows)" if after is not None else "(no workflow has runs)" if not match else "(no workflow matches)")
    if page["next"] is not None:
        click.echo(f"next: --after {shlex.quote(page['next'])}")


@workflows.command("show")
@click.argument("key")
@catch_up_option
@json_option
@click.pass_obj
@handles_errors
def workflows_show(obj: Context, key: str, no_catch_up: bool, as_json: bool) -> None:
    """Show workflow KEY's details: status, times, per-channel numbers, totals, progress.

    Rates are percentages rounded to 2 places (null when nothing to divide by).
    Rehearsal (test) runs are counted too, unlike in `flowledger counts`.

    \b
    Example:
        flowledger workflows show welcome-series --json
    """
    details = _query(obj, queries.workflow_details, key, fresh=not no_catch_up)
    if as_json:
        _echo_json(shapes.shaped(shapes.WorkflowDetails, details))
        return
    p = details["progress"]
    click.echo(f"{details['key']}: {details['status']}, {p['processed']} of {p['total']} runs finished ({p['percentage']}%)")
    click.echo(f"created {_t(details['created_at'])}, started {_t(details['started_at'])}, completed {_t(details['completed_at'])}")
    click.echo(f"steps executed: {details['workflow_executions_count']}; runs: " + ", ".join(f"{s} {details['runs'][s]}" for s in STATUSES))
    for ch, m in details["channels"].items():
        parts = [f"{k} {_figure(v)}" for k, v in m.items()]
        click.echo(f"  {ch}: " + ", ".join(parts))
    t = details["totals"]
    cost = _figure(t["costs_by_currency"]) if t.get("costs_by_currency") else f"{_figure(t['total_cost'])} {t['currency'] or ''}"
    click.echo(
        f"totals: {t['total_contacts']} contacts, {t['total_sent']} sent, {t['total_failed']} failed, "
        f"success {_percent(t['overall_success_rate'])}, cost {cost}".rstrip()
    )


def _percent(value: float | None) -> str:
    """A rate as text: '-' for none (nothing to divide by), else with its '%'."""
    return "-" if value is None else f"{value}%"


def _figure(value: Any) -> str:
    """A figure as text: '-' for none (a rate over zero), amounts by currency joined."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " + ".join(f"{amount} {currency}" for currency, amount in value.items())
    return str(value)


@cli.command()
@click.argument("key")
@catch_up_option
@json_option
@click.pass_obj
@handles_errors
def stats(obj: Context, key: str, no_catch_up: bool, as_json: bool) -> None:
    """Execution stats of workflow KEY: step attempts by state, per node and per edge.

    States: completed, failed, idle (its run is paused), running, stopped (its run
    ended first). An edge is two consecutive steps of one run.

    \b
    Example:
        flowledger stats welcome-series --json
    """
    data = _query(obj, queries.execution_stats, key, fresh=not no_catch_up)
    if as_json:
        _echo_json(shapes.shaped(shapes.ExecutionStats, data))
        return
    rows = [("node", "type", *STEP_STATES)]
    rows.append(("(total)", "", *(str(data["total"][s]) for s in STEP_STATES)))
    for n in data["nodes"]:
        rows.append((n["step"], n["step_type"] or "", *(str(n[s]) for s in STEP_STATES)))
    for e in data["edges"]:
        rows.append((f"{e['from']} -> {e['to']}", "edge", *(str(e[s]) for s in STEP_STATES)))
    _echo_table(rows)


@cli.command()
@click.option("--include-rehearsals", is_flag=True, help="Count rehearsal (test) runs too.")
@catch_up_option
@json_option
@click.pass_obj
@handles_errors
def counts(obj: Context, include_rehearsals: bool, no_catch_up: bool, as_json: bool) -> None:
    """Runs by status across all workflows and per workflow (rehearsals left out).

    \b
    Example:
        flowledger counts --json
    """
    data = _query(obj, queries.counts, fresh=not no_catch_up, include_rehearsals=include_rehearsals)
    if as_json:
        _echo_json(shapes.shaped(shapes.Counts, data))
        return
    rows = [("workflow", "total", *STATUSES)]
    for wf, c in data["by_workflow"].items():
        rows.append((wf, str(c["total"]), *(str(c[s]) for s in STATUSES)))
    rows.append(("(all)", str(data["total"]), *(str(data[s]) for s in STATUSES)))
    _echo_table(rows)


@cli.command()
@click.option("--follow", is_flag=True, help="Keep following the log until interrupted.")
@click.option("--interval", type=_Seconds(min=0.05, max=86_400), default=0.5, show_default=True, help="Seconds between polls with --follow.")
@click.pass_obj
@handles_errors
def project(obj: Context, follow: bool, interval: float) -> None:
    """Bring every view up to the end of the log (or, with --follow, keep doing so).

    Prints {"applied": n}, the events applied; with --follow, again each time it
    applies some. Ctrl-C or SIGTERM stops a follower (exit 0).

    Each view records the log position it has applied in the same transaction as its
    rows: a projector killed at any moment never applies an event twice or skips one,
    and several projectors may run at once. With --follow it outlives a busy or
    unreachable store, saying why on stderr and trying again later.

    \b
    Example:
        flowledger project
        flowledger project --follow --interval 0.2
    """
    if not follow:
        log = obj.open()
        try:
            # The first catch-up may be a whole staged rebuild: stopped, it must unwind.
            with _unwound_on_termination():
                n = ledger.catch_up(log)
        finally:
            log.close()
        click.echo(orjson.dumps({"applied": n}).decode())
        return
    _log_lines_with_time()
    stop = _FollowerStop()
    # Ctrl-C and SIGTERM end a follower, exit 0, in its first catch-up as in its loop.
    with _unwound_on_termination(), stop.handling_signals():
        log = obj.open()
        try:
            applied = None
            try:
                applied = ledger.catch_up(log)
            except ENDS_A_FOLLOWER:
                raise  # never to be tried again: exit 1, saying why
            except StoreError as e:
                # A follower keeps trying (see Projector.follow), and says why from the first.
                logging.getLogger(__name__).warning("could not catch up (%s); trying again", e)
            stop.unwinding = False
            if applied is not None:
                click.echo(orjson.dumps({"applied": applied}).decode())
            ledger.follow(
                log,
                interval=interval,
                should_stop=lambda: stop.stopped,
                on_applied=lambda k: click.echo(orjson.dumps({"applied": k}).decode()),
            )
        finally:
            log.close()


@cli.command("views")
@json_option
@click.pass_obj
@handles_errors
def views_lag(obj: Context, as_json: bool) -> None:
    """Show how far each view is behind the log: its position, the events it has not
    applied yet, and the version of it the store holds.

    A look only: it never catches the views up, nor makes them (a store this process may
    only read will do), so a follower's lag shows (`serve`'s, or `project --follow`'s).
    A version marked * is not this flowledger's: another version made those tables.

    \b
    Example:
        flowledger views
        flowledger views --json
    """
    log = obj.open()
    try:
        lag = ledger.views_lag(log)
    finally:
        log.close()
    if as_json:
        _echo_json(
            {
                "position": lag.position,
                "behind": lag.behind,
                "copy_of": lag.copy_of,
                "another_version": lag.another_version,
                "views": [
                    {
                        "view": v.name, "position": v.position, "behind": v.behind, "version": v.version,
                        "this_version": v.this_version, "another_version": v.another_version,
                    }
                    for v in lag.views
                ],
            }
        )
        return
    click.echo(f"The log's last position: {lag.position}.")
    rows = [("view", "position", "behind", "version")]
    for v in lag.views:
        version = "-" if v.version is None else v.version + (" *" if v.another_version else "")
        rows.append((v.name, str(v.position), "-" if v.behind is None else str(v.behind), version))
    _echo_table(rows)
    if lag.copy_of is not None:
        click.echo(
            f"An analyst's copy made by `rebuild --into` from {lag.copy_of}: its views follow that "
            "store's log, not this one's, so how far behind they are is not known here."
        )
    others = [v for v in lag.views if v.another_version]
    if others:
        folds = ", ".join(f"{v.name} view version {v.this_version}" for v in others)
        click.echo(f"* made by another version of flowledger (this one folds {folds}).")
        if lag.another_version:
            click.echo(lag.another_version[0].upper() + lag.another_version[1:] + ".")


@cli.command()
@click.argument("views", nargs=-1)
@click.option(
    "--into",
    type=click.Path(dir_okay=False),
    help="Fold the store's log into the views of this SQLite file instead (an analyst's copy).",
)
@click.pass_obj
@handles_errors
def rebuild(obj: Context, views: tuple[str, ...], into: str | None) -> None:
    """Fold VIEWS (default: all of runs, steps, deliveries) again from position 0.

    On SQLite, queries see the old views until the new ones replace them. Prints
    {"views", "events", "seconds", "events_per_second"}. With --into FILE.db the log
    stays where it is (PostgreSQL, say) and the views are made in a local SQLite file,
    to query with `flowledger --store FILE.db … --no-catch-up`.

    \b
    Example:
        flowledger rebuild
        flowledger rebuild deliveries
        flowledger --store postgresql://me@db/flows rebuild --into analysis.db
    """
    names = list(dict.fromkeys(views)) or None  # a view named twice is rebuilt once
    unknown = sorted(set(names or ()) - set(ledger.view_names()))
    if unknown:
        raise click.BadParameter(
            f"no view {unknown[0]!r}; the views are {', '.join(ledger.view_names())}", param_hint="VIEWS"
        )
    log = obj.open()
    try:
        length = ledger.head(log)
        started = time.perf_counter()
        try:
            with _bar_on_a_terminal(length, "Rebuilding") as shown, _unwound_on_termination():
                if into is None:
                    n = ledger.rebuild(log, names, progress=shown)
                else:
                    n = ledger.rebuild_into(log, into, names, progress=shown, lock_timeout=obj.lock_timeout)
        except StoreURLError as e:
            raise click.BadParameter(str(e), param_hint="'--into'") from None
        seconds = time.perf_counter() - started
    finally:
        log.close()
    rate = n / seconds if seconds > 0 else 0.0
    click.echo(orjson.dumps({"views": names or ledger.view_names(), "events": n, "seconds": round(seconds, 3), "events_per_second": round(rate)}).decode())


@cli.command()
@run_id_argument()
@actor_options
@json_option
@click.pass_obj
@handles_errors
def retry(obj: Context, run_id: str, reason: str | None, actor: str | None, as_json: bool) -> None:
    """Retry the failed run RUN_ID: it goes back to pending, with retry_count + 1.

    Refused unless the run has failed, and once retry_count has reached max_retries.
    The retry is recorded as a run.retried event with who asked and why.

    \b
    Example:
        flowledger retry run-0057 --reason "SMTP outage is over"
    """
    refuse_bad_options(commands.retry_requested(_ANY_RUN, occurred_at=utc_now(), actor=actor, reason=reason))
    log = obj.open()
    try:
        record = ledger.retry_run(log, run_id, actor=_actor(actor), reason=reason)
    except RecordedButNotShown as e:
        record = _recorded_not_shown(e)
    finally:
        log.close()
    with _output_after(f"run {run_id} was retried"):
        if as_json:
            _echo_json(record if record.get("recorded") else shapes.shaped(shapes.RunDetail, record))
        elif record.get("retry_count") is not None:
            click.echo(
                f"Run {run_id} retried (retry {record['retry_count']} of {record['max_retries']}); "
                f"status {record['status']}."
            )
        else:
            click.echo(f"Run {run_id} retried.")


@contextmanager
def _output_after(done: str, hint: str = "") -> Iterator[None]:
    """The output of a command that has changed the store: one that cannot be written (a
    full disk) is an error saying what was done, so that it is neither done again in vain
    nor taken for undone."""
    try:
        yield
    except OSError as e:
        if e.errno not in _OUTPUT_ERRNOS:
            raise  # a closed pipe (its reader stopped reading) ends quietly, see _Group
        raise click.ClickException(f"{done}, but the output could not be written: {e.strerror}{hint}") from None


def _recorded_not_shown(e: RecordedButNotShown) -> dict[str, Any]:
    """Of a retry or cancel recorded whose record could not be read back: the reason, on
    stderr, and what the log's rules know of the run, to print in the record's place. The
    exit stays 0: the command was done (done again, it would be refused)."""
    click.echo(f"Warning: {e}", err=True)
    return e.summary()


def _tenant_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --tenant naming the runs a command may touch: an id, as a run's tenant is."""
    if value is not None and not is_an_id(value):
        raise click.BadParameter(
            f"expected a tenant's id: not blank, at most {MAX_ID_LENGTH} characters, no control characters (got {value!r})"
        )
    return value


@cli.command()
@run_id_argument(required=False)
@click.option(
    "--key",
    callback=not_blank("a cancellation key"),
    help="Cancel every unfinished run triggered with this cancellation_key.",
)
@click.option(
    "--tenant",
    callback=_tenant_id,
    help="With --key: only the runs of this tenant (a key may be another tenant's too).",
)
@actor_options
@json_option
@click.pass_obj
@handles_errors
def cancel(
    obj: Context,
    run_id: str | None,
    key: str | None,
    tenant: str | None,
    reason: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Cancel the unfinished run RUN_ID, or with --key every unfinished run with that key.

    Recorded as run.cancelled events (by operator, or by cancellation_key) with who
    asked and why. A finished run cannot be cancelled. With --tenant, a key cancels only
    that tenant's runs.

    \b
    Example:
        flowledger cancel run-0288 --reason "customer asked"
        flowledger cancel --key order-1001 --reason "order refunded"
        flowledger cancel --key order-1001 --tenant acme --reason "order refunded"
    """
    if (run_id is None) == (key is None):
        raise click.UsageError("give either RUN_ID or --key KEY (not both)")
    if tenant is not None and key is None:
        raise click.UsageError("--tenant goes with --key KEY (a run given by its id is cancelled whatever its tenant)")
    refuse_bad_options(
        commands.cancel_requested(_ANY_RUN, occurred_at=utc_now(), actor=actor, reason=reason, cancellation_key=key)
    )
    log = obj.open()
    try:
        if key is not None:
            cancelled = ledger.cancel_by_key(log, key, actor=_actor(actor), reason=reason, tenant=tenant)
        else:
            record = ledger.cancel_run(log, run_id, actor=_actor(actor), reason=reason)  # type: ignore[arg-type]
    except RecordedButNotShown as e:
        record = _recorded_not_shown(e)
    finally:
        log.close()
    if key is not None:
        listed = f" ({', '.join(cancelled)})" if cancelled else ""
        whose = f" of tenant {tenant!r}" if tenant is not None else ""
        with _output_after(f"{len(cancelled)} run(s) with cancellation_key {key!r}{whose} were cancelled{listed}"):
            if as_json:
                scope = {} if tenant is None else {"tenant": tenant}
                _echo_json({"cancellation_key": key, **scope, "cancelled": cancelled})
            else:
                click.echo(
                    f"Cancelled {len(cancelled)} run(s) with cancellation_key {key!r}{whose}"
                    + (": " + ", ".join(cancelled) if cancelled else ".")
                )
        return
    with _output_after(f"run {run_id} was cancelled"):
        if as_json:
            _echo_json(record if record.get("recorded") else shapes.shaped(shapes.RunDetail, record))
        else:
            click.echo(f"Run {run_id} cancelled.")


@cli.command()
@json_option
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True, help="How many to list.")
@click.pass_obj
@handles_errors
def unmatched(obj: Context, as_json: bool, limit: int) -> None:
    """List provider events waiting for their message (oldest first).

    A provider event that names no flowledger message is matched by the provider's
    message id, which a `message.sent` (or any message event) records as
    `provider_message_id`; until one does, the event waits here, and it is stored the
    moment its message is known.

    \b
    Example:
        flowledger unmatched --json
    """
    log = obj.open()
    try:
        items = ledger.unmatched(log, limit)
    finally:
        log.close()
    if as_json:
        _echo_json(items)
        return
    rows = [("provider", "provider message id", "type", "occurred_at", "received_at", "event id")]
    rows += [(i["provider"] or "?", i["provider_message_id"] or "(none)", i["type"], _t(i["occurred_at"]), _t(i["received_at"]), i["event_id"]) for i in items]
    _echo_table(rows, empty="(nothing unmatched)")


@cli.command()
@json_option
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True, help="How many dead letters to list.")
@click.pass_obj
@handles_errors
def inbox(obj: Context, as_json: bool, limit: int) -> None:
    """Show the webhook inbox: how many provider events wait for the store's write lock,
    and the dead letters (webhooks set aside because they can never be appended).

    A webhook that finds the write lock held by another process is kept in the inbox and
    appended later (by `serve`, or by `flowledger project`). A dead letter is kept as it
    came, with the reason it was set aside: unreadable, invalid under this version's
    vocabulary, refused by the log, or kept for another store (an inbox left behind by a
    deleted store: listed before the next drain sets it aside, its set-aside time `-`).

    \b
    Example:
        flowledger inbox --json
    """
    log = obj.open()
    try:
        waiting = ledger.inbox_count(log)
        dead = ledger.inbox_dead_letters(log, limit)
    finally:
        log.close()
    if as_json:
        _echo_json({"waiting": waiting, "dead_letters": dead})
        return
    click.echo(f"{waiting} provider event(s) waiting for the write lock; {len(dead)} dead letter(s).")
    if dead:
        rows = [("seq", "received_at", "set aside at", "events", "reason")]
        rows += [(str(d["seq"]), _t(d["received_at"]), _t(d["set_aside_at"]), str(d["n"]), d["reason"]) for d in dead]
        _echo_table(rows)


@cli.command("scan-secrets")
@json_option
@click.option(
    "--redact-key",
    "redact_keys",
    multiple=True,
    help="Another key whose values are secrets (repeatable), as append takes it; "
    "FLOWLEDGER_REDACT_KEYS adds a comma-separated list.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=1000,
    show_default=True,
    help="How many events to list (every one found is counted).",
)
@click.option(
    "--fail",
    is_flag=True,
    help=f"Exit {FOUND_EXIT_CODE} when an event is found (0 when none is; an error exits 1), "
    "for a scheduled job or a pipeline to notice.",
)
@click.pass_obj
@handles_errors
def scan_secrets(obj: Context, as_json: bool, redact_keys: tuple[str, ...], limit: int, fail: bool) -> None:
    """Find secrets an older release let into the log: the stored events (and provider
    events held for their message) whose text today's redaction rules would store
    differently.

    The log cannot be edited, so each release's rules hold for what it appended. After an
    upgrade whose rules find more (see README's Secrets), this lists the events that hold
    such a secret, with where (a field, and the keys under it) and what today's rules would
    store there. It never prints a secret: rotate the credentials the listed places held.
    Reads only; a large log takes a while (every event is read and redacted again).

    \b
    Example:
        flowledger scan-secrets --redact-key ssn
        flowledger scan-secrets --fail --json
    """
    log = obj.open()
    try:
        with _bar_on_a_terminal(ledger.head(log), "Scanning") as shown:
            scan = ledger.scan_secrets(log, Redactor.from_environment(redact_keys), limit, progress=shown)
    finally:
        log.close()
    _echo_scan(scan, as_json)
    if fail and scan.found:
        raise SystemExit(FOUND_EXIT_CODE)


def _echo_scan(scan: SecretScan, as_json: bool) -> None:
    """Print what scan-secrets found: as JSON, or a row a place found and a closing line."""
    if as_json:
        _echo_json(scan.to_dict())
        return
    rows = [("position", "type", "event id", "field", "as today's rules store it")]
    rows += [
        ("held" if f.position is None else str(f.position), f.type, f.event_id, place.path, place.excerpt())
        for f in scan.findings
        for place in f.fields
    ]
    if len(rows) > 1:
        _echo_table(rows)
    read = (
        f"Read {_counted(scan.events_read, 'event')} and {_counted(scan.held_read, 'provider event')} "
        "held for their message"
    )
    if not scan.found:
        click.echo(f"{read}: none holds text today's redaction rules would store differently.")
        return
    listed = "" if len(scan.findings) == scan.found else f" (the first {len(scan.findings):,} listed; --limit lists more)"
    click.echo(
        f"{read}: {_counted(scan.found, 'event')} {'holds' if scan.found == 1 else 'hold'} text today's redaction "
        f"rules would store differently{listed}. "
        "The log cannot be edited: rotate the credentials those places held."
    )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="The port to listen on.")
@click.option(
    "--follow/--no-follow",
    default=True,
    show_default=True,
    help="Keep the views caught up in this process (or leave it to `project --follow` workers).",
)
@click.option(
    "--public-url",
    cls=_Option,
    envvar="FLOWLEDGER_PUBLIC_URL",
    help="The address providers call, when a proxy stands in front (Twilio signs the URL). Also FLOWLEDGER_PUBLIC_URL.",
)
@click.option(
    "--webhook-timeout",
    type=click.FloatRange(1, 3600),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a webhook's body may take to arrive: past it, a 408, nothing stored, the connection closed.",
)
@click.option(  # the API's WEBHOOK_BODY_BUDGET, at least its MAX_BATCH_BYTES (not imported: an extra's)
    "--webhook-memory",
    type=click.IntRange(10, 1 << 20),
    default=64,
    show_default=True,
    metavar="MIB",
    help="The most MiB of webhook bodies held at once before their signatures are checked: past it, a 503 to send again.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    metavar="N",
    help="The most connections served at once: a request on one more is answered 503 at once (default: no limit).",
)
@click.option(  # the API's connections.HEADERS_TIMEOUT (not imported: an extra's)
    "--header-timeout",
    type=click.FloatRange(1, 3600),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a request's line and headers may take to arrive: past it, a 408 and the connection closed.",
)
@event_options
@click.pass_obj
@handles_errors
def serve(
    obj: Context, host: str, port: int, follow: bool, public_url: str | None, webhook_timeout: float,
    webhook_memory: int, max_connections: int | None, header_timeout: float, max_event_bytes: int,
    redact_keys: tuple[str, ...],
) -> None:
    """Serve the HTTP API (and its OpenAPI document at /openapi.json).

    Every endpoint but /healthz and the provider webhooks needs an X-API-Key: make one
    with `flowledger keys create`. Webhooks are checked with the providers' secrets, from
    FLOWLEDGER_SENDGRID_PUBLIC_KEY, FLOWLEDGER_MAILGUN_SIGNING_KEY,
    FLOWLEDGER_POSTMARK_USERNAME and _PASSWORD, FLOWLEDGER_TWILIO_AUTH_TOKEN,
    FLOWLEDGER_WHATSAPP_APP_SECRET and _VERIFY_TOKEN. Events (posted, and each one a
    webhook brings) are limited and redacted as `append` does them.

    \b
    Example:
        flowledger serve --port 8080
        flowledger --store postgresql://me@db/flows serve --host 0.0.0.0 --no-follow
        flowledger serve --max-connections 200 --header-timeout 5 --webhook-timeout 10
    """
    try:
        import uvicorn

        from flowledger.api.app import create_app
        from flowledger.api.connections import protocol
    except ImportError:
        raise click.ClickException("the HTTP API is not installed: in flowledger's checkout, pip install '.[api]'") from None
    _log_lines_with_time()  # the start-up's warnings (a catch-up that could not finish) too
    # The server's start-up work, done here first: a bad --store is then a clear error
    # before the server starts, not a traceback from inside it. A store busy with an import
    # is no reason not to start (webhooks go to the inbox meanwhile): the server's own
    # start-up tries the catch-up again, waiting as briefly, and says if it could not.
    log = obj.open(create=True, lock_timeout=min(obj.lock_timeout, ledger.WEBHOOK_LOCK_TIMEOUT))
    try:
        api_keys.ensure_table(log.backend)
        ledger.catch_up(log, drain_wait=ledger.short_wait(log))
    except StoreBusy as e:
        # The views' own errors (a newer version's) stay fatal, said before the server starts.
        logging.getLogger(__name__).warning("could not catch the views up before starting (%s)", e)
    finally:
        log.close()
    _check_webhook_secrets()
    app = create_app(
        obj.store, lock_timeout=obj.lock_timeout, follow=follow, public_url=public_url,
        redactor=Redactor.from_environment(redact_keys), max_event_bytes=max_event_bytes,
        webhook_body_timeout=webhook_timeout, webhook_body_budget=webhook_memory << 20,
    )
    # uvicorn's configuration keeps a logger's filters: this one outlives its set-up.
    logging.getLogger("uvicorn.access").addFilter(_QuerySecretsMasked())
    try:
        http = protocol(max_connections, header_timeout)
        uvicorn.run(app, host=host, port=port, log_level="info", http=http)  # type: ignore[arg-type]
    except SystemExit as e:
        # uvicorn exits 3 when it cannot start (the port taken, a host that does not
        # resolve), having logged why: a command's failure here exits 1.
        if e.code == 3:
            raise click.ClickException(f"the server could not start on {host}:{port} (the reason is above)") from None
        raise


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever standard error is when a line is written (a test's
    runner swaps it: a stream bound once would be closed by the next command)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        """Standard error, as it is now."""
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always standard error


def _log_lines_with_time() -> None:
    """flowledger's warnings and errors on standard error with when and how bad, for a
    command that runs for days (read later from a journal or a file); set up once."""
    logger = logging.getLogger("flowledger")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
        logger.addHandler(handler)


class _QuerySecretsMasked(logging.Filter):
    """Masks the secrets a request line's query may carry in the access log (WhatsApp's
    subscription handshake sends its verify token there, wrong guesses too)."""

    _redactor = Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access records: (client, method, path with its query, version, status).
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            path, _, query = args[2].partition("?")
            masked = "&".join(self._masked(part) for part in query.split("&"))
            record.args = (*args[:2], f"{path}?{masked}", *args[3:])
        return True

    def _masked(self, part: str) -> str:
        name, eq, value = part.partition("=")
        # hub.verify_token is a secret key (its name ends in one). An API key in the URL is
        # refused, but its request line is logged all the same.
        if eq and (self._redactor.is_secret(name) or value.startswith(api_keys.PREFIX)):
            return f"{name}=***"
        return part


@cli.group("keys")
def keys_group() -> None:
    """Manage the HTTP API's keys (read, write, admin).

    \b
    Example:
        flowledger keys create --name dashboard --scope read
    """


@keys_group.command("create")
@click.option("--name", required=True, help="What the key is for.")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), required=True, help="read: GET; write: also events; admin: also retry and cancel.")
@json_option
@click.pass_obj
@handles_errors
def keys_create(obj: Context, name: str, scope: str, as_json: bool) -> None:
    """Make an API key and print it, once: only its hash is stored.

    \b
    Example:
        flowledger keys create --name webhooks --scope write
    """
    # Checked before the store is opened: a refused name makes no store on the way.
    try:
        api_keys.checked_name(name)
    except api_keys.KeyCommandError as e:
        raise click.BadParameter(str(e), param_hint="'--name'") from None
    if sys.stdout is None:
        # Started with standard output closed (`>&-`): the secret, shown only once, would
        # be shown to nobody, and the key stay valid.
        raise click.ClickException("standard output is closed, so the key could not be shown; no key was made")
    log = obj.open(create=True)
    try:
        key, secret = api_keys.create_key(log.backend, name, scope)
    finally:
        log.close()
    # Shown once only: a key that could not be shown is of no use, and must not stay valid.
    hint = f"; it is shown only once: revoke it with `flowledger keys revoke {key.id}` and make another"
    with _output_after(f"the key {key.id} was made", hint):
        if as_json:
            _echo_json({**key.to_dict(), "key": secret})
        else:
            click.echo(secret)
            click.echo(f"({key.id}, {scope}; shown once: store it now)", err=True)


@keys_group.command("list")
@json_option
@click.pass_obj
@handles_errors
def keys_list(obj: Context, as_json: bool) -> None:
    """List the API keys (ids, names, scopes; never the keys).

    \b
    Example:
        flowledger keys list
    """
    log = obj.open()
    try:
        items = [k.to_dict() for k in api_keys.list_keys(log.backend)]
    finally:
        log.close()
    if as_json:
        _echo_json(items)
        return
    rows = [("id", "name", "scope", "created_at", "revoked_at")]
    rows += [(k["id"], k["name"], k["scope"], _t(k["created_at"]), _t(k["revoked_at"])) for k in items]
    _echo_table(rows, empty="(no keys)")


@keys_group.command("revoke")
@click.argument("key_id")
@click.pass_obj
@handles_errors
def keys_revoke(obj: Context, key_id: str) -> None:
    """Revoke the key KEY_ID: it stops working at once.

    \b
    Example:
        flowledger keys revoke key_3f9a1c2b7d4e
    """
    log = obj.open()
    try:
        key = api_keys.revoke_key(log.backend, key_id)
    finally:
        log.close()
    with _output_after(f"key {key.id} was revoked"):
        click.echo(f"Key {key.id} ({key.name}) revoked.")


@keys_group.command("sign-out")
@click.argument("key_id")
@click.pass_obj
@handles_errors
def keys_sign_out(obj: Context, key_id: str) -> None:
    """End every web session signed in with the key KEY_ID (a browser left signed in
    elsewhere); the key itself keeps working. `keys revoke` ends both.

    \b
    Example:
        flowledger keys sign-out key_3f9a1c2b7d4e
    """
    log = obj.open()
    try:
        ended = api_keys.end_sessions(log.backend, key_id)
    finally:
        log.close()
    with _output_after(f"the web sessions of key {key_id} were ended"):
        click.echo(f"Key {key_id}: {_counted(ended, 'web session')} ended; the key still works.")


# Output helpers.


def _query(obj: Context, fn: Callable[..., Any], *args: Any, fresh: bool = True, **kwargs: Any) -> Any:
    return _on_views(obj, lambda log: ledger.query(log, fn, *args, fresh=fresh, **kwargs), fresh=fresh)


def _on_views(obj: Context, read: Callable[[EventLog], Any], *, fresh: bool) -> Any:
    """What ``read`` reads from the store's views (caught up first if ``fresh``), with a
    hint for a store this process may not write."""
    log = obj.open()
    try:
        return read(log)
    except StoreReadOnly as e:
        # A query writes only to make the views (or, fresh, to catch them up).
        if fresh:
            raise StoreReadOnly(
                f"{e}; --no-catch-up answers from the views as a process that can write the store "
                "last left them (`flowledger project`)"
            ) from None
        raise StoreReadOnly(
            f"{e}; its views were never made, or were made by another version of flowledger: "
            "a process that can write the store must make them once, with `flowledger project`"
        ) from None
    finally:
        log.close()


@contextmanager
def _bar_on_a_terminal(length: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar of ``length`` on standard error while the block runs, where that is a
    terminal and there is something to do: gives its update, else None."""
    if not (sys.stderr.isatty() and length):
        yield None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


@contextmanager
def _unwound_on_termination() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit while the block runs, as Ctrl-C is turned
    into an exception: a rebuild stopped so removes its staging files and stops its helper."""

    def unwind(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, unwind) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class _Stopped(BaseException):
    """`project --follow` was told to stop (a BaseException, as KeyboardInterrupt is: no
    ``except Exception`` on the way may swallow it)."""


class _FollowerStop:
    """How Ctrl-C or SIGTERM stops `project --follow`, the normal way to end it, exiting 0
    wherever it is: in the first catch-up (maybe a whole staged rebuild with a helper) as
    an exception that unwinds it at once, later as a flag the follow loop polls."""

    def __init__(self) -> None:
        self.stopped = False
        """Whether a signal has come."""
        self.unwinding = True
        """Whether a signal raises :class:`_Stopped` (else it only sets the flag)."""

    def __call__(self, signum: int, frame: Any) -> None:
        first = not self.stopped
        self.stopped = True
        # Only the first raises: a second Ctrl-C must not break into the unwinding.
        if first and self.unwinding:
            raise _Stopped

    @contextmanager
    def handling_signals(self) -> Iterator[None]:
        """Take SIGINT and SIGTERM while the block runs; a stop ends the block quietly."""
        previous = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        except _Stopped:
            pass
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _check_webhook_secrets() -> None:
    """Refuse to serve with a provider secret that would refuse every webhook (a SendGrid key
    that is no key, or no cryptography package to check it): a provider told 401 each time may
    give up on its events."""
    from flowledger.api.app import secrets_from_environment
    from flowledger.providers import SignatureInvalid, sendgrid

    configured = secrets_from_environment().get("sendgrid", {}).get("public_key")
    if configured:
        try:
            sendgrid.public_key(configured)
        except SignatureInvalid as e:
            raise click.ClickException(str(e)) from None


def _quieten_closed_output() -> None:
    """Point standard output and error, where their reader has gone, at /dev/null: what is
    left in their buffers then goes there at exit, not into an error (Python's advice in
    its note on SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:
                try:
                    os.dup2(devnull, stream.fileno())
                except (OSError, ValueError):
                    pass  # no file descriptor (a test's stream): nothing is flushed at exit
    finally:
        os.close(devnull)


def _echo_page_info(info: dict[str, Any]) -> None:
    if info["after"]:
        click.echo(f"older: --after {info['after']}")
    if info["before"]:
        click.echo(f"newer: --before {info['before']}")


def _empty_page(what: str, after: str | None, before: str | None) -> str:
    """The line under an empty page of a listing: a cursor's page may be empty though
    entries match the filters (those past the cursor left them since), so it says no more."""
    return f"(no more {what})" if after is not None or before is not None else f"(no {what} match)"


def _echo_deliveries(entries: list[dict[str, Any]], indent: str = "", empty: str = "(no messages match)") -> None:
    """Messages as a table (``empty`` under the header when there are none)."""
    rows = [("message", "channel", "recipient", "status", "delivered_at", "opened_at", "clicked_at", "cost")]
    for d in entries:
        rec = recipient_label(d["recipient"])
        cost = "-" if d["cost_amount"] is None else f"{d['cost_amount']:g} {d['cost_currency']}"
        rows.append((d["message_id"], d["channel"] or "?", rec, d["status"] or "-", _t(d["delivered_at"]), _t(d["opened_at"]), _t(d["clicked_at"]), cost))
    _echo_table(rows, indent=indent, empty=empty)


def _actor(actor: str | None) -> str | None:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001  # no user name on this machine: record none
        return None


def _count(n: int, noun: str) -> str:
    """"1 event", "2 events"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _t(stamp: str | None) -> str:
    """A stored timestamp, shorter: 2026-11-01T09:00:00Z (microseconds when present)."""
    if stamp is None:
        return "-"
    return stamp.replace(".000000Z", "Z")


def _echo_record(record: dict[str, Any], fields: Sequence[str] = queries.RUN_FIELDS) -> None:
    """A record's fields, one a line: a run's (by default) or a delivery's."""
    names = [k for k in fields if k in record]
    width = max(len(k) for k in names)
    for name in names:
        value = record.get(name)
        if name == "recipient" and value is not None:
            value = recipient_label(value)  # as `runs list` and `replay` show it: collection/id
        elif isinstance(value, (dict, bool)):
            value = orjson.dumps(value).decode()
        elif isinstance(value, str) and name.endswith("_at"):
            value = _t(value)
        elif isinstance(value, str):
            # A line break in an error would look like another field.
            value = value.replace("\r", "\\r").replace("\n", "\\n")
        click.echo(f"{name:<{width}}  {'-' if value is None else value}")


def _counted(n: int, what: str) -> str:
    """``n`` and a noun, plural unless one: "1 event", "2,000 events"."""
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _echo_table(rows: list[tuple[str, ...]], indent: str = "", empty: str | None = None) -> None:
    """A header row and its rows in columns; ``empty`` is the line under a header with no rows
    (a bare header could be taken for a listing cut short)."""
    # A cell's line break (an error's, a reason's) would split its row: shown escaped.
    rows = [tuple(cell.replace("\r", "\\r").replace("\n", "\\n") for cell in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo(indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    if len(rows) == 1 and empty is not None:
        click.echo(indent + empty)


def _show_problems(error: InvalidInput) -> None:
    for problem in error.problems[:_MAX_PROBLEMS_SHOWN]:
        click.echo(_problem_text(problem), err=True)
    hidden = len(error.problems) - _MAX_PROBLEMS_SHOWN
    if hidden > 0:
        click.echo(f"… and {hidden} more problem(s)", err=True)


def _problem_text(problem: Any) -> str:
    """A problem as shown: its line, and its item when the input was a JSON array."""
    if problem.line is not None and problem.index is not None:
        # Items counted from 1, like lines: an array on one line has many items on line 1.
        return f"line {problem.line}, item {problem.index + 1}: {problem.message}"
    return str(problem)


def _is_terminal_input(file: IO[bytes]) -> bool:
    """Whether the input is standard input and a terminal (someone is to type the events)."""
    try:
        return file.fileno() == 0 and os.isatty(0)
    except (OSError, ValueError, AttributeError):
        return False  # no file descriptor (a test's stream): not a terminal


class _SkipFile:
    """The --skip-invalid file, opened before the append so that it cannot fail after it."""

    def __init__(self, path: str, out: IO[bytes], created: bool) -> None:
        self.path = path
        self.out = out
        self.created = created
        self.failed = False
        """Whether writing it failed (and that was said)."""

    def close(self, written: bool) -> None:
        """Close it; one this append created and never wrote is removed."""
        try:
            self.out.close()
        except OSError:
            # Closing flushes again what could not be written: the error was said already.
            if not self.failed:
                raise
        if self.created and not written:
            try:
                os.unlink(self.path)
            except OSError:
                pass  # an empty file left behind says nothing wrong


def _refuse_a_store_file(path: str, store: str) -> None:
    """Refuse a --skip-invalid file that is one of the SQLite store's own files (the store,
    SQLite's files beside it, the webhook inbox and its), by any name: the skip file is
    written over once the append is done."""
    if "://" in store and not store.lower().startswith("sqlite:"):
        return  # PostgreSQL: no file of the store is here
    try:
        base = sqlite_path(store)
        target, real = os.path.realpath(path), os.path.realpath(base)
    except (StoreURLError, OSError):
        return  # said when the store or the file is opened (a deleted current folder, say)
    for name in (base, real, real + INBOX_SUFFIX):
        for own in (name, name + "-wal", name + "-shm", name + "-journal"):
            same = target == os.path.realpath(own)
            try:
                same = same or os.path.samefile(path, own)
            except OSError:
                pass  # one of them does not exist
            if same:
                raise click.BadParameter(
                    f"{path} is one of the store's own files: the events set aside would be written "
                    "over it; give another file",
                    param_hint="'--skip-invalid'",
                )


def _refuse_the_input(path: str, file: IO[bytes]) -> None:
    """Refuse a --skip-invalid file that is the input itself (by any name, or as standard
    input): the events set aside would be written over the file they came from."""
    try:
        skip, source = os.stat(path), os.fstat(file.fileno())
    except (OSError, ValueError):
        return  # no such file yet, or an input with no file behind it
    if (skip.st_dev, skip.st_ino) == (source.st_dev, source.st_ino):
        raise click.BadParameter(
            f"{path} is the input itself: the events set aside would be written over it; give another file",
            param_hint="'--skip-invalid'",
        )


def _open_skip_file(path: str) -> _SkipFile:
    created = not os.path.exists(path)
    try:
        # Appending mode: a file from an earlier run is kept until this one has stored.
        out = open(path, "ab")
    except OSError as e:
        raise click.ClickException(f"cannot write the --skip-invalid file {path}: {e.strerror}; nothing was stored") from None
    return _SkipFile(path, out, created)


def _write_skipped(skipped: _SkipFile, rejected: list[Any], result: Any, redactor: Redactor) -> int:
    """Write the input's bad items and refused events to the skip file, their secrets
    redacted as the append's own; returns how many events."""
    # One entry per event: a JSON array's items share their line, so the item tells them apart.
    by_item: dict[tuple[int | None, int | None], dict[str, Any]] = {}
    redacted: dict[tuple[int | None, int | None], _RedactedSource] = {}
    for p, source in [*((p, p.source) for p in rejected), *((p, cand.source) for cand, p in result.problems)]:
        key = (p.line, p.index)
        entry = by_item.get(key)
        if entry is None:
            clean = redacted[key] = _RedactedSource(source, redactor)
            entry = by_item[key] = {"line": p.line, "errors": [], "input": clean.text}
            if p.index is not None:
                entry["item"] = p.index + 1
        entry["errors"].append(redacted[key].message(p.message))
    entries = sorted(by_item.values(), key=lambda e: (e["line"] or 0, e.get("item", 0)))
    try:
        if stat.S_ISREG(os.fstat(skipped.out.fileno()).st_mode):
            skipped.out.truncate(0)  # what an earlier run wrote (a pipe or device has none)
        skipped.out.writelines(orjson.dumps(entry) + b"\n" for entry in entries)
        skipped.out.flush()
    except OSError as e:
        skipped.failed = True
        raise click.ClickException(
            f"the good events were stored, but writing the --skip-invalid file {skipped.path} failed: "
            f"{e.strerror}"
        ) from None
    return len(by_item)


class _RedactedSource:
    """A refused item's input text as the skip file holds it: the log never holds a secret,
    and neither does the file that sets aside what the log did not take."""

    def __init__(self, source: str | None, redactor: Redactor) -> None:
        self.redactor = redactor
        """The append's own redactor (its --redact-key keys too)."""
        self.changed: list[tuple[str, str]] = []
        """Each value the redaction changed, as an error shows it before and after."""
        self.text = source
        """The input text: as sent when it holds no secret, else the redacted JSON (or text)."""
        if source is None:
            return
        try:
            value = orjson.loads(source)
        except orjson.JSONDecodeError:
            self.text = redactor.redact_text(source)
            return
        # The same rules as an appended event's (its free-form fields, its URL), and the
        # secret keys anywhere: a refused line may hold them where no event may.
        clean = redactor.redact(redactor.redact_event(value) if isinstance(value, dict) else value)
        if clean is not value:
            # Still the item's JSON, so that once mended it can be appended again.
            self.text = orjson.dumps(clean).decode()
            self.changed = [
                (_shown_value(old), _shown_value(new))
                for _, old, new in changed_places(value, clean)
                if not isinstance(old, (dict, list))  # values as an error shows them, not whole objects
            ]

    def message(self, text: str) -> str:
        """An error's text without the secrets of the values it shows (`got '...'`)."""
        # A value shown cut short may have lost what marks its secret ("user:pw" without
        # its "@"): the values the redaction changed are replaced as shown, first.
        for before, after in self.changed:
            if text.endswith(f" (got {before})"):
                text = f"{text[: -len(before) - 1]}{after})"
                break
        # The field's name is kept out of the text scan: `field "api_key": unknown field`
        # reads as a secret key and its value there.
        end = text.find('":', 7) if text.startswith('field "') else -1
        if end < 0:
            return self.redactor.redact_text(text)
        name, rest = text[7:end], text[end + 2 :]
        if self.redactor.is_secret(name.rpartition(".")[2]):
            got = rest.rfind(" (got ")
            if got >= 0 and rest.endswith(")"):
                rest = f"{rest[: got + 6]}{REDACTED!r})"
        return text[: end + 2] + self.redactor.redact_text(rest)


def _shown_value(value: Any) -> str:
    """A value as a field's error shows it (flowledger/domain/vocabulary.py's _describe)."""
    shown = repr(value)
    return shown[:77] + "..." if len(shown) > 80 else shown


class _progress:
    """A progress bar on stderr for large files read from a terminal session."""

    THRESHOLD = 4 * 1024 * 1024

    def __init__(self, file: IO[bytes]) -> None:
        self.bar: Any = None
        size = 0
        try:
            size = os.fstat(file.fileno()).st_size if Path(file.name).is_file() else 0
        except (OSError, AttributeError, ValueError, TypeError):
            size = 0
        if size >= self.THRESHOLD and sys.stderr.isatty():
            self.bar = click.progressbar(length=size, label="Appending", file=sys.stderr)

    def __enter__(self) -> Callable[[int], None] | None:
        if self.bar is None:
            return None
        self.bar.__enter__()
        return self.bar.update

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


# Errors of a write that failed for want of room or of a working device: not flowledger's bug.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EIO, errno.EFBIG, errno.EDQUOT})


def main() -> None:
    """The console entry point: no traceback ever reaches a user."""
    if sys.stderr is None:
        # Standard error closed (2>&-): click would print errors on standard output, into
        # what a pipe reads as the command's output. They go nowhere; the exit status tells.
        # (Opened here, /dev/null takes descriptor 2, so no file opened later gets it.)
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115  # for the life of the process
    for stream in (sys.stdout, sys.stderr):
        # A character the output's encoding cannot hold is shown escaped, never an error.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (OSError, ValueError):
                pass  # a closed or unusual stream: left as it is
    try:
        cli.main(prog_name="flowledger")
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001  # the last guard before the user's terminal
        if isinstance(e, OSError) and e.errno in _OUTPUT_ERRNOS and _raised_by_click(e):
            message = f"Error: cannot write the output: {e.strerror}"
        elif _debugging():
            raise
        else:
            message = (
                f"Error: unexpected {type(e).__name__}: {e}\n"
                "This is a bug in flowledger; run again with FLOWLEDGER_DEBUG=1 to see where."
            )
        try:
            click.echo(message, err=True)
        except OSError:
            pass  # standard error cannot be written either: the exit status must do
        # What is left in a stream's buffer must not fail again at exit.
        _quieten_closed_output()
        sys.exit(1)


def _raised_by_click(error: BaseException) -> bool:
    """Whether the error came from click itself: writing the output (echo, a progress bar),
    as every command writes through click; the store's errors come from deeper down."""
    return _raised_in(error, "click")


def _raised_in(error: BaseException, module: str) -> bool:
    """Whether the innermost frame the error passed through is of ``module`` (or below it)."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    name = str(tb.tb_frame.f_globals.get("__name__", ""))
    return name == module or name.startswith(f"{module}.")


def _debugging() -> bool:
    """Whether FLOWLEDGER_DEBUG asks for a bug's traceback ("0", "false", "no", "off" do not)."""
    return os.environ.get("FLOWLEDGER_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")
