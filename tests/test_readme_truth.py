"""README against the code: every environment variable, option, route, event field, module
and benchmark script it names is real, and what the code has that a user meets is named."""

from __future__ import annotations

import os
import re
import shlex

import click
import orjson
import pytest
from click.testing import CliRunner

from flowledger.cli import cli
from tests.test_cli import _commands

ROOT = os.path.join(os.path.dirname(__file__), "..")
README = open(os.path.join(ROOT, "README.md")).read()
_FENCED = re.compile(r"```[a-z]*\n(.*?)\n```", re.S)
_SPAN = re.compile(r"`([^`\n]+)`")


def section(title: str, text: str = README, level: str = "## ") -> str:
    """The text of one section, up to the next heading of its level."""
    return text.split(f"\n{level}{title}", 1)[1].split(f"\n{level}", 1)[0]


def _sources(*folders: str) -> dict[str, str]:
    found = {}
    for folder in folders:
        for here, _, names in os.walk(os.path.join(ROOT, folder)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(here, name)
                    found[os.path.relpath(path, ROOT)] = open(path).read()
    return found


# Environment variables


def _variables_read() -> set[str]:
    """Every FLOWLEDGER_* variable the code reads: click's envvars, environ look-ups, and the
    webhook secrets the API builds the names of."""
    from flowledger.api.app import PROVIDER_SECRETS

    read = {f"FLOWLEDGER_{p.upper()}_{n.upper()}" for p, names in PROVIDER_SECRETS.items() for n in names}
    for _, command in _commands(cli):
        read.update(p.envvar for p in command.params if isinstance(p.envvar, str))
    read.update(p.envvar for p in cli.params if isinstance(p.envvar, str))
    code = "\n".join([*_sources("flowledger").values(), open(os.path.join(ROOT, "tests", "conftest.py")).read()])
    read.update(re.findall(r"""(?:\.get\(|environ\[|getenv\()\s*["'](FLOWLEDGER_[A-Z0-9_]+)["']""", code))
    # A name kept in a constant, then read through it.
    for name, value in re.findall(r"""^(\w+) = ["'](FLOWLEDGER_[A-Z0-9_]+)["']""", code, re.M):
        if re.search(rf"environ(?:\.get\(|\[)\s*{name}\b", code):
            read.add(value)
    return read


INTERNAL_VARIABLES = {"FLOWLEDGER_REBUILD_STORE", "FLOWLEDGER_REBUILD_SOURCE"}
"""How a rebuild hands its store to its helper process: no user sets them."""


def test_every_environment_variable_the_readme_names_is_read_by_the_code():
    named = set(re.findall(r"FLOWLEDGER_[A-Z0-9_]*[A-Z0-9]", README))
    assert named - _variables_read() == set()


def test_every_environment_variable_the_code_reads_is_in_the_readme():
    read = _variables_read()
    assert INTERNAL_VARIABLES <= read, "an internal variable is no longer read: drop it from the list"
    assert {v for v in read - INTERNAL_VARIABLES if v not in README} == set()


# Commands and options


COMMANDS = dict(_commands(cli))


def _options(command: click.Command) -> dict[str, click.Parameter]:
    """A command's long options (--help and --no-… ones too), each with its parameter."""
    ctx = click.Context(command)
    return {o: p for p in command.get_params(ctx) for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}


GROUP_OPTIONS = _options(cli)
ANY_OPTION = set(GROUP_OPTIONS).union(*(_options(c) for c in COMMANDS.values()))


def _command_lines() -> list[str]:
    """Every `flowledger …` README shows: in shell blocks (one command of a pipeline or list
    each) and in inline code (usage lines, with their brackets)."""
    lines = []
    for block in _FENCED.findall(README):
        for line in block.splitlines():
            for part in re.split(r" \| |; |&&| &|\$\(|\)| +#", line):
                part = part.strip()
                if part.startswith("flowledger "):
                    lines.append(part)
    for span in _SPAN.findall(_FENCED.sub("", README)):
        if span.startswith("flowledger "):
            lines.append(span.replace("[", " ").replace("]", " "))
    return lines


def _check_command_line(line: str) -> list[str]:
    """What is wrong with one command line: an unknown command, option or choice."""
    words = shlex.split(line)[1:]
    problems = []
    while words and words[0] in GROUP_OPTIONS:
        option = GROUP_OPTIONS[words.pop(0)]
        if not option.is_flag and words:
            words.pop(0)
    group: click.Command = cli
    path: list[str] = []
    while isinstance(group, click.Group) and words and not words[0].startswith("-"):
        name = words.pop(0)
        if name == "…":
            group = None  # any command: its options are checked against all of them
            break
        if name not in group.commands:
            return [f"{line}: no command {' '.join([*path, name])!r}"]
        path.append(name)
        group = group.commands[name]
    options = ANY_OPTION if group is None or isinstance(group, click.Group) else set(_options(group)) | set(GROUP_OPTIONS)
    params = {} if group is None or isinstance(group, click.Group) else _options(group)
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        name = word.split("=", 1)[0]
        if name not in options:
            problems.append(f"{line}: no option {name}")
            continue
        param = params.get(name)
        value = words[i + 1] if i + 1 < len(words) else ""
        if param is not None and isinstance(param.type, click.Choice) and "|" in value:
            unknown = [v for v in value.split("|") if v not in param.type.choices]
            if unknown:
                problems.append(f"{line}: {name} has no choice {', '.join(unknown)}")
    return problems


def test_every_command_line_the_readme_shows_names_real_commands_and_options():
    lines = _command_lines()
    assert len(lines) > 50  # the parse found them
    problems = [p for line in lines for p in _check_command_line(line)]
    assert problems == []


def _benchmark_options() -> set[str]:
    """The options the benchmark scripts take."""
    code = "\n".join(_sources("benchmarks").values())
    return set(re.findall(r"""add_argument\(\s*["'](--[\w-]+)["']""", code))


def test_every_option_the_readme_names_exists():
    benchmarks = section("Benchmarks")
    elsewhere = README.replace(benchmarks, "")
    flag = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
    assert set(flag.findall(elsewhere)) - ANY_OPTION - {"--help"} == set()
    # The benchmarks section names the scripts' options, and now and then flowledger's.
    assert set(flag.findall(benchmarks)) - _benchmark_options() - ANY_OPTION == set()


def test_each_command_entry_names_only_that_commands_options():
    commands = section("Commands")
    entries = re.findall(r"\n### (.*?)\n(.*?)(?=\n### |\Z)", commands, re.S)
    assert len(entries) >= 14
    problems = []
    for heading, body in entries:
        named = [tuple(w for w in shlex.split(s.replace("[", " ").replace("]", " "))[1:] if re.fullmatch(r"[a-z]+(?:-[a-z]+)*", w))
                 for s in _SPAN.findall(heading)]
        own = set(GROUP_OPTIONS) | {"--help"}
        for words in named:
            path = next(p for n in range(len(words), 0, -1) if (p := words[:n]) in COMMANDS)
            own |= set(_options(COMMANDS[path]))
        prose = " ".join(s for s in _SPAN.findall(_FENCED.sub("", body)) if not s.startswith("flowledger "))
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", prose):
            if option not in own:
                problems.append(f"{heading}: {option}")
    assert problems == []


def test_every_command_has_an_entry_under_commands():
    headings = "\n".join(re.findall(r"\n### (.*)", section("Commands")))
    missing = [" ".join(p) for p in COMMANDS if f"`flowledger {' '.join(p)}" not in headings]
    assert missing == []


# The HTTP API


def _readme_routes() -> set[tuple[str, str]]:
    """(method, path) of every route README's HTTP API and webhook sections list, with each
    path parameter as {}."""
    routes = set()
    for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s]*)`", section("The HTTP API")):
        if not path.startswith(("/v1/", "/healthz", "/openapi.json")):
            path = "/v1" + path  # "The endpoints (under `/v1`)"
        routes.add((method, re.sub(r"\{[^}]*\}", "{}", path)))
    webhooks = section("Provider webhooks")
    for row in re.findall(r"^\|[^|]+\| `https://[^`]*?HOST(/v1/webhooks/\w+)[^`]*`([^|]*)\|", webhooks, re.M):
        path, note = row
        routes.add(("POST", path))
        if "GET" in note:
            routes.add(("GET", path))
    return routes


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from flowledger.api import keys
    from flowledger.api.app import create_app
    from flowledger.store import open_log

    store = str(tmp_path_factory.mktemp("api") / "api.db")
    log = open_log(store)
    secrets = {scope: keys.create_key(log.backend, scope, scope)[1] for scope in keys.SCOPES}
    log.close()
    app = create_app(store, provider_secrets={})
    with TestClient(app) as client:
        client.keys = secrets  # type: ignore[attr-defined]
        yield app, client


def _app_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every API route the app serves, a webhook route once per provider."""
    from fastapi.routing import APIRoute

    from flowledger.providers import ADAPTERS

    routes = set()
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.path.startswith(("/v1/", "/healthz", "/openapi.json")):
            continue  # the web pages: README's "The web page" section
        for method in route.methods:
            if route.path == "/v1/webhooks/{provider}":
                routes.update((method, f"/v1/webhooks/{p}") for p in ADAPTERS)
            else:
                routes.add((method, re.sub(r"\{[^}]*\}", "{}", route.path)))
    return routes


def test_the_routes_the_readme_lists_are_the_routes_the_app_serves(app_client):
    app, _ = app_client
    listed = _readme_routes()
    assert len(listed) > 20  # the parse found them
    served = _app_routes(app)
    assert listed - served == set(), "README lists routes the app does not serve"
    assert served - listed == set(), "the app serves routes README does not list"


def _scope(method: str, path: str) -> str | None:
    """The scope README says a route needs: read (GET), write (also POST /v1/events), admin
    (also retry and cancel); None for the routes without a key."""
    if path in ("/healthz",) or path.startswith("/v1/webhooks/"):
        return None
    if method == "GET":
        return "read"
    return "write" if path == "/v1/events" else "admin"


_BODIES = {"/v1/events": [], "/v1/cancellations": {"key": "k"}}


def test_every_route_needs_the_key_and_scope_the_readme_says(app_client):
    _, client = app_client
    below = {"read": None, "write": "read", "admin": "write"}
    checked = 0
    for method, path in sorted(_readme_routes()):
        scope = _scope(method, path)
        url = path.replace("{}", "x")
        send = lambda headers: client.request(method, url, headers=headers, json=_BODIES.get(path))  # noqa: E731
        if scope is None:
            continue
        checked += 1
        assert send({}).status_code == 401, (method, path)
        if below[scope]:
            assert send({"X-API-Key": client.keys[below[scope]]}).status_code == 403, (method, path)
        assert send({"X-API-Key": client.keys[scope]}).status_code not in (401, 403), (method, path)
        if method == "GET":
            head = client.head(url, headers={"X-API-Key": client.keys[scope]})
            assert head.status_code == send({"X-API-Key": client.keys[scope]}).status_code and head.content == b""
    assert checked > 15
    health = client.get("/healthz")
    assert health.status_code == 200 and set(health.json()) == {"status", "position", "behind"}
    # The webhooks are checked with the providers' secrets, never with an API key.
    for provider in ("sendgrid", "mailgun", "postmark", "twilio", "whatsapp"):
        assert "X-API-Key" not in client.post(f"/v1/webhooks/{provider}", content=b"{}").text
    text = " ".join(section("The HTTP API").split())
    assert "Every endpoint but `/healthz` and the provider webhooks" in text
    assert "`GET /openapi.json` (a read key)" in text


def test_the_batch_limits_the_readme_gives_are_the_apps():
    from flowledger.api.app import MAX_BATCH_BYTES, MAX_BATCH_EVENTS
    from flowledger.ingest import DEFAULT_MAX_EVENT_BYTES

    assert (MAX_BATCH_EVENTS, MAX_BATCH_BYTES, DEFAULT_MAX_EVENT_BYTES) == (10_000, 10 * 2**20, 2**20)
    assert "at most 10,000 events or 10 MiB" in README and "1 MiB by default" in README


def test_the_readme_names_every_status_each_provider_reports():
    import importlib

    webhooks = section("Provider webhooks")
    for provider, label in (("sendgrid", "SendGrid"), ("mailgun", "Mailgun"), ("postmark", "Postmark"),
                            ("twilio", "Twilio"), ("whatsapp", "WhatsApp")):
        bullet = re.search(rf"^- {label}: (.*?)(?=^- |\n\n)", webhooks, re.S | re.M).group(1)
        kinds = importlib.import_module(f"flowledger.providers.{provider}")._KINDS
        assert [k for k in kinds if not re.search(rf"(?<![\w`]){k}(?![\w`])", bullet)] == [], provider


# The event vocabulary

def _model_fields(kind: str) -> tuple[set[str], set[str]]:
    """A type's own (required, optional) fields: without id, type, occurred_at and the
    run_id or message_id every run or message event carries."""
    from flowledger.domain.vocabulary import EVENT_TYPES

    model = EVENT_TYPES[kind]
    common = {"id", "type", "occurred_at", "run_id" if kind.startswith(("run.", "step.")) else "message_id"}
    return set(model.__required_keys__) - common, set(model.__optional_keys__) - common


def _without_parentheses(text: str) -> str:
    """The text with every parenthesised part (nested ones too) left out."""
    while True:
        shorter = re.sub(r"\([^()]*\)", "", text)
        if shorter == text:
            return text
        text = shorter


def _readme_fields(kind: str, vocabulary: str) -> tuple[set[str], set[str]]:
    """(required, optional) fields README's paragraph on the type names: those after the
    word "optional" (or "may carry") are optional; "as step.started" inherits its fields."""
    match = re.search(rf"^`{re.escape(kind)}`(?: \([^)]*\))?:(.*?)(?:\n\n|\Z)", vocabulary, re.S | re.M)
    assert match, f"README has no paragraph on {kind}"
    text = _without_parentheses(match.group(1))
    required, optional = set(), set()
    if "as step.started" in text:
        required, optional = _readme_fields("step.started", vocabulary)
    head, *tail = re.split(r"\b(?:optional|may carry)\b", text, maxsplit=1)
    required |= set(re.findall(r"`(\w+)`", head))
    optional |= set(re.findall(r"`(\w+)`", "".join(tail)))
    return required, optional


def test_every_event_type_has_the_fields_the_readme_says():
    from flowledger.domain.vocabulary import EVENT_TYPES, MessageEvent

    vocabulary = section("The event vocabulary")
    message_extras = set(MessageEvent.__optional_keys__)
    # The paragraphs on what any message event may carry name these once for all types.
    assert message_extras == {"cost", "provider", "provider_message_id", "raw"}
    for name in message_extras:
        assert f"`{name}`" in vocabulary
    problems = []
    for kind in sorted(EVENT_TYPES):
        required, optional = _model_fields(kind)
        said_required, said_optional = _readme_fields(kind, vocabulary)
        if kind.startswith("message."):
            optional -= message_extras | {"machine", "temporary"}
            said_optional -= message_extras
        if said_required != required:
            problems.append(f"{kind}: README requires {sorted(said_required)}, the model {sorted(required)}")
        if said_optional != optional:
            problems.append(f"{kind}: README's optional {sorted(said_optional)}, the model's {sorted(optional)}")
    assert problems == []
    machine = {k for k, m in EVENT_TYPES.items() if "machine" in m.__optional_keys__}
    temporary = {k for k, m in EVENT_TYPES.items() if "temporary" in m.__optional_keys__}
    assert (machine, temporary) == ({"message.opened", "message.clicked"}, {"message.failed", "message.bounced"})
    assert "`machine: true` on `message.opened` / `message.clicked`" in vocabulary
    assert "`temporary: true` on `message.failed` /\n`message.bounced`" in vocabulary


def _listed(text: str, after: str) -> set[str]:
    """The words README lists after a phrase: `a, b, c or d`."""
    match = re.search(re.escape(after) + r"([\w ,]+?)[;)]", " ".join(text.split()))
    assert match, after
    return set(re.split(r", | or ", match.group(1).strip()))


def test_the_readme_lists_every_allowed_value():
    from typing import get_args

    from flowledger.domain import vocabulary as v

    text = section("The event vocabulary")
    assert _listed(text, "`channel` (") == set(get_args(v.Channel))
    assert _listed(text, "(`source`: ") == set(get_args(v.TriggerSource))
    assert _listed(text, "`by` (") == set(get_args(v.CancelledBy))
    trigger = re.search(r"`trigger` \((.*?)\)", text, re.S).group(1)
    assert set(re.findall(r"`(\w+)`", trigger.split("optional", 1)[1])) == set(v.Trigger.__optional_keys__)
    assert set(v.Trigger.__required_keys__) == {"source"}


def test_the_limits_the_readme_gives_are_the_vocabularys():
    from flowledger.domain.vocabulary import EventInvalid, MAX_NESTING, validate_event

    text = " ".join(section("The event vocabulary").split())
    for said in ("1 to 255 characters, not only spaces, with no control characters", "765 bytes in UTF-8", "1 to 10,000 characters", "a `url` at most 8,192",
                 "at most 64;", "`attempt` counts from 1", "`max_retries` is 0 to 1000", f"nested up to {MAX_NESTING} levels"):
        assert said in text, said
    run = {"id": "e", "type": "run.triggered", "occurred_at": "2026-11-01T09:00:00Z", "run_id": "r", "workflow": "w", "recipient": "u"}
    step = {"id": "e", "type": "step.failed", "occurred_at": "2026-11-01T09:00:00Z", "run_id": "r", "step": "s", "step_type": "a" * 64, "attempt": 1}
    click_ = {"id": "e", "type": "message.clicked", "occurred_at": "2026-11-01T09:00:00Z", "message_id": "m"}
    good = [{**run, "run_id": "r" * 255, "max_retries": 1000}, {**step, "error": "x" * 10_000}, {**click_, "url": "u" * 8192},
            {**run, "max_retries": 0}]
    bad = [{**run, "run_id": "r" * 256}, {**run, "run_id": "a\tb"}, {**run, "run_id": "  "}, {**run, "workflow": "\U0001f600" * 192}, {**run, "max_retries": 1001}, {**step, "error": "x" * 10_001},
           {**step, "error": "e", "step_type": "a" * 65}, {**step, "error": "e", "step_type": "Send"}, {**step, "error": "e", "attempt": 0},
           {**click_, "url": "u" * 8193}, {**run, "data": [1]}, {**click_, "url": "u", "raw": [1]}]
    for event in good:
        validate_event(event)
    for event in bad:
        with pytest.raises(EventInvalid):
            validate_event(event)


_STATUSES = ("not triggered", "pending", "running", "paused", "completed", "failed", "cancelled")


def _rules(kind: str) -> dict[str, str]:
    """Each status the rules let ``kind`` happen in, and the status it then moves the run to."""
    from flowledger.domain.run import Run
    from flowledger.errors import FactRefused

    event = {"id": "e", "type": kind, "run_id": "r", "step": "s", "attempt": 1}
    moves = {}
    for status in _STATUSES:
        run = Run("r", status=status, attempts={} if kind == "step.started" else {"s#1": False})
        try:
            run.check(event)
        except FactRefused:
            continue
        run.apply(event)
        moves[status] = run.status
    return moves


def test_the_lifecycle_table_is_the_rules():
    from flowledger.domain.run import Run
    from flowledger.errors import FactRefused

    rows = re.findall(r"^\| (`[^|]+) \| ([^|]+) \| ([^|]+) \|$", section("Run events", level="### "), re.M)
    assert len(rows) == 11
    seen = set()
    for kinds, allowed, moves_to in rows:
        for kind in re.findall(r"`([\w.]+)`", kinds):
            seen.add(kind)
            said = {"not triggered"} if "not yet triggered" in allowed else {s for s in _STATUSES[1:] if s in allowed}
            rules = _rules(kind)
            assert set(rules) == said, kind
            if "(unchanged)" in moves_to:
                assert all(rules[s] == s for s in said), kind
            elif "→" in moves_to:
                pairs = dict(re.findall(r"(\w+) (?:→|stays) (\w+)", moves_to))
                assert rules == pairs, kind
            else:
                assert set(rules.values()) == {moves_to.strip()}, kind
            if "retry_count < max_retries" in allowed:
                with pytest.raises(FactRefused):
                    Run("r", status=next(iter(said)), retry_count=3, max_retries=3).check({"id": "e", "type": kind, "run_id": "r"})
    from flowledger.domain.event_types import RUN_EVENT_TYPES

    assert seen == set(RUN_EVENT_TYPES)


def test_the_redacted_keys_the_readme_lists_are_the_default_ones():
    from flowledger.domain.redaction import DEFAULT_SECRET_KEYS, SECRET_KEY_ENDINGS

    text = section("Secrets", section("The event vocabulary"), level="### ")
    for key in (*DEFAULT_SECRET_KEYS, *SECRET_KEY_ENDINGS):
        assert re.search(rf"(?<![\w`]){key}(?![\w`])", text), key


# How it is built, and the benchmarks


def test_every_module_is_named_where_the_readme_says_how_it_is_built():
    built = section("How it is built")
    bullets = re.split(r"\n- ", built)
    missing = []
    for path in _sources("flowledger"):
        folder, name = os.path.split(path)
        if name == "__init__.py" and path != os.path.join("flowledger", "store", "__init__.py"):
            continue
        if f"`{path}`" in built or any(f"`{folder}/`" in b and f"`{name}`" in b for b in bullets):
            continue
        missing.append(path)
    assert missing == []
    for path in re.findall(r"`((?:flowledger|benchmarks)/[\w/.]*(?:\.py|/))`", README):
        assert os.path.exists(os.path.join(ROOT, path)), path
    assert os.path.isdir(os.path.join(ROOT, "flowledger", "web", "templates"))


def test_every_benchmark_script_is_named_in_the_benchmarks_section():
    benchmarks = section("Benchmarks")
    assert [p for p in _sources("benchmarks") if f"`{p}" not in benchmarks] == []


# The walkthrough, where test_walkthrough does not go


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("walk")
    store = str(folder / "walkthrough.db")
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, ["--store", store, *args])

    assert invoke("append", os.path.join(ROOT, "examples", "welcome-series.jsonl")).exit_code == 0
    return invoke, folder


def _output_after(command: str) -> str:
    """The output block README shows right after the block holding ``command``."""
    blocks = re.findall(r"```\n(.*?)\n```", README, re.S)
    i = next(i for i, b in enumerate(blocks) if command in b.splitlines())
    return blocks[i + 1]


def test_skip_invalid_prints_and_writes_what_the_readme_says(walked):
    invoke, folder = walked
    rejected = folder / "rejected.jsonl"
    result = invoke("append", os.path.join(ROOT, "examples", "malformed.jsonl"), "--skip-invalid", str(rejected))
    assert result.exit_code == 0
    assert result.stdout.strip() == _output_after("flowledger append examples/malformed.jsonl --skip-invalid rejected.jsonl")
    lines = [orjson.loads(line) for line in rejected.read_text().splitlines()]
    assert len(lines) == 6 and all(set(line) == {"line", "errors", "input"} for line in lines)


def test_rebuild_prints_the_shape_the_readme_says(walked):
    invoke, _ = walked
    printed = orjson.loads(invoke("rebuild").stdout)
    assert '`{"views": [...], "events": n,\n"seconds": s, "events_per_second": r}`' in README
    assert list(printed) == ["views", "events", "seconds", "events_per_second"]


def test_a_command_that_only_reads_makes_no_store(tmp_path):
    store = tmp_path / "new.db"
    for command in (("counts",), ("runs", "list"), ("project",), ("rebuild",), ("keys", "list"), ("retry", "r")):
        result = CliRunner().invoke(cli, ["--store", str(store), *command])
        assert result.exit_code == 1 and "no store at" in result.stderr, command
        assert not store.exists(), command
    assert "`append`, `keys create` or `serve` opens it" in " ".join(README.split())
