"""The ``flowledger`` command line: a thin layer over :mod:`flowledger.ledger`.

Each command opens the store, calls one library function, and turns flowledger's
errors into ``click.ClickException`` (exit 1) or ``click.BadParameter`` (exit 2).
"""

from __future__ import annotations

import functools
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import orjson

from flowledger import ledger
from flowledger.domain.redaction import Redactor
from flowledger.errors import FlowledgerError, InvalidInput
from flowledger.ingest import DEFAULT_MAX_EVENT_BYTES, IngestOptions
from flowledger.projections.run_record import RECORD_FIELDS
from flowledger.store import DEFAULT_STORE, open_log
from flowledger.store.log import EventLog

F = TypeVar("F", bound=Callable[..., Any])

# Problems shown for one failed input; the rest are counted, not printed.
_MAX_PROBLEMS_SHOWN = 200


class Context:
    """What the group's options say, for the commands below it."""

    def __init__(self, store: str, lock_timeout: float) -> None:
        self.store = store
        """The store URL or path."""
        self.lock_timeout = lock_timeout
        """Seconds to wait for another writer."""

    def open(self, *, create: bool = False) -> EventLog:
        """Open the store (only ``append`` may create a new one)."""
        return open_log(self.store, lock_timeout=self.lock_timeout, create=create)


def handles_errors(f: F) -> F:
    """Show flowledger's errors as one clear message and exit 1, never a traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except InvalidInput as e:
            _show_problems(e)
            raise click.ClickException(str(e)) from None
        except FlowledgerError as e:
            raise click.ClickException(str(e)) from None

    return wrapper  # type: ignore[return-value]


def json_option(f: F) -> F:
    """The shared --json flag."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(f)


def actor_options(f: F) -> F:
    """The shared --reason and --actor options of commands that change a run."""
    f = click.option(
        "--actor",
        envvar="FLOWLEDGER_ACTOR",
        help="Who is asking (recorded in the event). Default: FLOWLEDGER_ACTOR, else your user name.",
    )(f)
    return click.option("--reason", help="Why (recorded in the event).")(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowledger")
@click.option(
    "--store",
    envvar="FLOWLEDGER_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    help="The store: a SQLite file path or sqlite:///path. Also FLOWLEDGER_STORE.",
)
@click.option(
    "--lock-timeout",
    envvar="FLOWLEDGER_LOCK_TIMEOUT",
    type=click.FloatRange(min=0.1),
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
@click.argument("file", type=click.File("rb"), default="-")
@click.option(
    "--skip-invalid",
    "skip_file",
    type=click.Path(dir_okay=False, writable=True),
    help="Append the good events and write the bad ones, with their errors, to this JSON Lines file.",
)
@click.option(
    "--max-event-bytes",
    envvar="FLOWLEDGER_MAX_EVENT_BYTES",
    type=click.IntRange(min=256),
    default=DEFAULT_MAX_EVENT_BYTES,
    show_default=True,
    help="The largest event accepted, in bytes of JSON. Also FLOWLEDGER_MAX_EVENT_BYTES.",
)
@click.option(
    "--redact-key",
    "redact_keys",
    multiple=True,
    help="Another key whose values are secrets (repeatable); "
    "FLOWLEDGER_REDACT_KEYS adds a comma-separated list.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=100_000),
    default=10_000,
    show_default=True,
    help="Events checked and written per statement batch.",
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
) -> None:
    """Append events from FILE (JSON Lines, or one JSON array; - for stdin).

    Everything is validated and checked against the domain rules, then stored in one
    transaction: if any line is invalid or any fact refused, every problem is listed
    with its line and field, and nothing of the input is stored. An event id that is
    already stored with the same body is a duplicate, counted and skipped.

    Prints {"appended": n, "duplicates": n}.

    \b
    Example:
        flowledger append examples/welcome-series.jsonl
        cat webhooks.jsonl | flowledger append -
        flowledger append big.jsonl --skip-invalid rejected.jsonl
    """
    env_keys = [k for k in os.environ.get("FLOWLEDGER_REDACT_KEYS", "").split(",") if k.strip()]
    options = IngestOptions(
        max_event_bytes=max_event_bytes,
        redactor=Redactor(extra=[*redact_keys, *env_keys]),
        chunk_size=batch_size,
        keep_sources=skip_file is not None,
    )
    log = obj.open(create=True)
    try:
        with _progress(file) as progress:
            result, rejected = ledger.append_input(
                log, file, options, keep_going=skip_file is not None, progress=progress
            )
    finally:
        log.close()
    summary: dict[str, int] = {"appended": result.appended, "duplicates": result.duplicates}
    if skip_file is not None:
        bad = _write_skipped(skip_file, rejected, result)
        summary["skipped"] = bad
        if bad:
            click.echo(f"{bad} invalid or refused event(s) written to {skip_file}", err=True)
    click.echo(orjson.dumps(summary).decode())


@cli.command()
@click.argument("run_id")
@click.option("--at", "at", type=click.IntRange(min=1), help="Show the run's state after its N-th event.")
@json_option
@click.pass_obj
@handles_errors
def replay(obj: Context, run_id: str, at: int | None, as_json: bool) -> None:
    """Replay RUN_ID's history: each event in order, with the run's status after it.

    This is the auditor's view. --at N shows the whole record after the N-th event.

    \b
    Example:
        flowledger replay run-0007
        flowledger replay run-0007 --at 3 --json
    """
    log = obj.open()
    try:
        history = ledger.replay(log, run_id)
    finally:
        log.close()
    if at is not None:
        if at > len(history):
            raise click.BadParameter(
                f"run {run_id!r} has {len(history)} events; N must be 1 to {len(history)}",
                param_hint="--at",
            )
        entry = history[at - 1]
        if as_json:
            _echo_json({"run_id": run_id, "n": entry.n, "of": len(history), "event": entry.event.body, "state": entry.record})
        else:
            e = entry.event
            click.echo(f"Run {run_id} after event {entry.n} of {len(history)}: {e.type} ({e.body['id']}) at {_t(e.body['occurred_at'])}")
            _echo_record(entry.record)
        return
    if as_json:
        _echo_json(
            {
                "run_id": run_id,
                "events": [
                    {"n": h.n, "position": h.event.position, "event": h.event.body, "status": h.record["status"], "state": h.record}
                    for h in history
                ],
            }
        )
        return
    first = history[0].record
    click.echo(f"Run {run_id} ({first['workflow']}): {len(history)} events")
    rows = [("#", "occurred_at", "type", "detail", "status after")]
    for h in history:
        rows.append((str(h.n), _t(h.event.body["occurred_at"]), h.event.type, _detail(h.event.body), h.record["status"]))
    _echo_table(rows)


@cli.group()
def runs() -> None:
    """Look at runs.

    \b
    Example:
        flowledger runs show run-0001
    """


@runs.command("show")
@click.argument("run_id")
@json_option
@click.pass_obj
@handles_errors
def runs_show(obj: Context, run_id: str, as_json: bool) -> None:
    """Show RUN_ID's current record: status, times, retries, last error.

    \b
    Example:
        flowledger runs show run-0001
        flowledger runs show run-0001 --json
    """
    log = obj.open()
    try:
        record = ledger.show_run(log, run_id)
    finally:
        log.close()
    if as_json:
        _echo_json(record)
    else:
        _echo_record(record)


@cli.command()
@click.argument("run_id")
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
        flowledger retry run-0042 --reason "SMTP outage is over"
    """
    log = obj.open()
    try:
        record = ledger.retry_run(log, run_id, actor=_actor(actor), reason=reason)
    finally:
        log.close()
    if as_json:
        _echo_json(record)
    else:
        click.echo(
            f"Run {run_id} retried (retry {record['retry_count']} of {record['max_retries']}); "
            f"status {record['status']}."
        )


@cli.command()
@click.argument("run_id", required=False)
@click.option("--key", help="Cancel every unfinished run triggered with this cancellation_key.")
@actor_options
@json_option
@click.pass_obj
@handles_errors
def cancel(
    obj: Context, run_id: str | None, key: str | None, reason: str | None, actor: str | None, as_json: bool
) -> None:
    """Cancel the unfinished run RUN_ID, or with --key every unfinished run with that key.

    Recorded as run.cancelled events (by operator, or by cancellation_key) with who
    asked and why. A finished run cannot be cancelled.

    \b
    Example:
        flowledger cancel run-0042 --reason "customer asked"
        flowledger cancel --key order-1234 --reason "order refunded"
    """
    if (run_id is None) == (key is None):
        raise click.UsageError("give either RUN_ID or --key KEY (not both)")
    log = obj.open()
    try:
        if key is not None:
            cancelled = ledger.cancel_by_key(log, key, actor=_actor(actor), reason=reason)
        else:
            record = ledger.cancel_run(log, run_id, actor=_actor(actor), reason=reason)  # type: ignore[arg-type]
    finally:
        log.close()
    if key is not None:
        if as_json:
            _echo_json({"cancellation_key": key, "cancelled": cancelled})
        else:
            click.echo(f"Cancelled {len(cancelled)} run(s) with cancellation_key {key!r}" + (": " + ", ".join(cancelled) if cancelled else "."))
    elif as_json:
        _echo_json(record)
    else:
        click.echo(f"Run {run_id} cancelled.")


# Output helpers.


def _actor(actor: str | None) -> str | None:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001  # no user name on this machine: record none
        return None


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _t(stamp: str | None) -> str:
    """A stored timestamp, shorter: 2026-11-01T09:00:00Z (microseconds when present)."""
    if stamp is None:
        return "-"
    return stamp.replace(".000000Z", "Z")


def _echo_record(record: dict[str, Any]) -> None:
    width = max(len(k) for k in RECORD_FIELDS)
    for name in RECORD_FIELDS:
        value = record.get(name)
        if isinstance(value, dict):
            value = orjson.dumps(value).decode()
        elif isinstance(value, str) and name.endswith("_at"):
            value = _t(value)
        click.echo(f"{name:<{width}}  {'-' if value is None else value}")


def _detail(event: dict[str, Any]) -> str:
    kind = event["type"]
    if kind == "run.triggered":
        source = (event.get("trigger") or {}).get("source", "api")
        recipient = event["recipient"]
        rid = recipient if isinstance(recipient, str) else f"{recipient['collection']}/{recipient['id']}"
        return f"{event['workflow']} for {rid} ({source})"
    if kind.startswith("step."):
        text = f"{event['step']} #{event['attempt']} {event['step_type']}"
        if kind == "step.failed":
            text += ": " + _short(event["error"])
        return text
    if kind == "run.failed":
        return _short(event["error"])
    if kind == "run.cancelled":
        return f"by {event['by']}" + (f": {event['reason']}" if event.get("reason") else "")
    if kind in ("run.retried", "run.retrying", "run.paused"):
        who = f"by {event['actor']}" if event.get("actor") else ""
        why = event.get("reason") or ""
        return ": ".join(p for p in (who, why) if p)
    return ""


def _short(error: Any, limit: int = 60) -> str:
    from flowledger.projections.run_record import error_text

    text = error_text(error)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _echo_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def _show_problems(error: InvalidInput) -> None:
    for problem in error.problems[:_MAX_PROBLEMS_SHOWN]:
        click.echo(str(problem), err=True)
    hidden = len(error.problems) - _MAX_PROBLEMS_SHOWN
    if hidden > 0:
        click.echo(f"… and {hidden} more problem(s)", err=True)


def _write_skipped(path: str, rejected: list[Any], result: Any) -> int:
    """Write the input's bad items and refused events to path; returns how many events."""
    by_line: dict[int | None, dict[str, Any]] = {}
    for p in rejected:
        entry = by_line.setdefault(p.line, {"line": p.line, "errors": [], "input": p.source})
        entry["errors"].append(p.message)
    for cand, p in result.problems:
        entry = by_line.setdefault(p.line, {"line": p.line, "errors": [], "input": cand.source})
        entry["errors"].append(p.message)
    with open(path, "wb") as out:
        for entry in sorted(by_line.values(), key=lambda e: e["line"] or 0):
            out.write(orjson.dumps(entry) + b"\n")
    return len(by_line)


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


def main() -> None:
    """The console entry point: no traceback ever reaches a user."""
    try:
        cli.main(prog_name="flowledger")
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001  # the last guard before the user's terminal
        if os.environ.get("FLOWLEDGER_DEBUG"):
            raise
        click.echo(
            f"Error: unexpected {type(e).__name__}: {e}\n"
            "This is a bug in flowledger; run again with FLOWLEDGER_DEBUG=1 to see where.",
            err=True,
        )
        sys.exit(1)

