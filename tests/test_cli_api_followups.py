"""Follow-ups of the CLI and the HTTP API: --recipient / recipient take what the tables
show (collection/id too), as the web pages do; a bad --reason, --actor or --key of retry
and cancel is a bad parameter naming it; a run id longer than any id is one too."""

from __future__ import annotations

import re

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from flowledger import ledger, queries
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.domain.vocabulary import MAX_ID_LENGTH
from flowledger.projections.projector import Projector
from flowledger.store import open_log
from tests.conftest import POSTGRES_UNREACHABLE, ev, triggered
from tests.histories import jsonl


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, store_path):
    """A store URL on either backend."""
    if request.param == "postgres":
        if POSTGRES_UNREACHABLE:
            pytest.skip(POSTGRES_UNREACHABLE)
        return request.getfixturevalue("postgres_url")
    return store_path


def invoker(store: str):
    """Run the CLI on ``store`` as a user would (stdout and stderr apart)."""
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(cli, ["--store", store, *args], env=env, catch_exceptions=False)

    return invoke


# 1. --recipient and recipient take what the tables show.

CONTACTS = {"collection": "contacts", "id": "c-1"}
LEADS = {"id": "c-1", "collection": "leads"}  # either order of keys: the event's own


def recipients_store(store: str) -> None:
    """A run and a message to contacts/c-1, the same to leads/c-1, and a run for the plain
    id "contacts/c-1" (ids may hold "/": the web pages match it by the shown form too)."""
    log = open_log(store)
    try:
        ledger.append_input(log, jsonl([
            triggered("r-contacts", recipient=CONTACTS),
            triggered("r-leads", recipient=LEADS),
            triggered("r-slash", recipient="contacts/c-1"),
            triggered("r-other", recipient="c-2"),
            ev("message.queued", message_id="m-contacts", channel="email", recipient=CONTACTS, run_id="r-contacts", step="s"),
            ev("message.queued", message_id="m-leads", channel="email", recipient=LEADS, run_id="r-leads", step="s"),
        ]))
    finally:
        log.close()


EXPECTED_RUNS = {
    "contacts/c-1": ["r-contacts", "r-slash"],
    "leads/c-1": ["r-leads"],
    "c-1": ["r-contacts", "r-leads"],
    "contacts/c-2": [],
    "contacts/": [],
}
EXPECTED_MESSAGES = {"contacts/c-1": ["m-contacts"], "leads/c-1": ["m-leads"], "c-1": ["m-contacts", "m-leads"], "contacts/": []}


def test_cli_recipient_takes_collection_and_id_as_the_table_shows_it(store):
    recipients_store(store)
    run = invoker(store)

    def listed(command, recipient):
        # One a page: the cursors page through a recipient's entries too.
        ids, after = [], []
        while True:
            result = run(command, "list", "--recipient", recipient, "--page-size", "1", "--json", *after)
            assert result.exit_code == 0, result.output
            page = orjson.loads(result.stdout)
            ids += [e["id" if command == "runs" else "message_id"] for e in page["entries"]]
            if not page["page_info"]["after"]:
                return sorted(ids)
            after = ["--after", page["page_info"]["after"]]

    for recipient, expected in EXPECTED_RUNS.items():
        assert listed("runs", recipient) == expected, recipient
    for recipient, expected in EXPECTED_MESSAGES.items():
        assert listed("deliveries", recipient) == expected, recipient
    # What the table prints in its recipient column, typed back, finds that run.
    table = run("runs", "list", "--recipient", "leads/c-1").stdout
    assert re.search(r"^r-leads\s+welcome\s+leads/c-1\s", table, re.M), table
    # With another filter too.
    assert run("runs", "list", "--recipient", "contacts/c-1", "--workflow", "nope", "--json").stdout.count('"id"') == 0


def reader_key(path):
    """A new read-scoped API key's secret for the store at ``path``."""
    log = open_log(path)
    try:
        return keys.create_key(log.backend, "reader", "read")[1]
    finally:
        log.close()


def test_api_recipient_takes_collection_and_id_as_the_table_shows_it(store):
    recipients_store(store)
    secret = reader_key(store)
    with TestClient(create_app(store)) as api:
        def listed(path, recipient, field):
            r = api.get(path, params={"recipient": recipient}, headers={"X-API-Key": secret})
            assert r.status_code == 200, r.text
            return sorted(e[field] for e in r.json()["entries"])

        for recipient, expected in EXPECTED_RUNS.items():
            assert listed("/v1/runs", recipient, "id") == expected, recipient
        for recipient, expected in EXPECTED_MESSAGES.items():
            assert listed("/v1/deliveries", recipient, "message_id") == expected, recipient


def _plan(c, table: str, where: list[str], params: list) -> str:
    """SQLite's plan of a listing's page (as queries._page asks for it)."""
    c.execute(f'EXPLAIN QUERY PLAN SELECT seq FROM "{table}" WHERE {" AND ".join(where)} ORDER BY seq DESC LIMIT ?', [*params, 51])
    return " | ".join(row[3] for row in c.fetchall())


@pytest.mark.parametrize("contact", ["c-1", "contacts/c-1", "a/b/c"])
@pytest.mark.parametrize(
    "filters",
    [queries.RunFilters(), queries.RunFilters(workflow="w"), queries.RunFilters(statuses=("failed", "running"))],
    ids=["alone", "workflow", "statuses"],
)
def test_the_recipient_listings_use_an_index(log, contact, filters):
    Projector(log.backend).ensure_tables()
    with log.backend.transaction(write=False) as c:
        plans = {
            "runs": _plan(c, "runs", *queries._contact_sought(filters, contact).conditions()),  # noqa: SLF001  # the real conditions
            "deliveries": _plan(c, "deliveries", *queries._contact_conditions(contact)),  # noqa: SLF001
        }
    for table, plan in plans.items():
        assert "INDEX" in plan and f"SCAN {table}" not in plan.replace(f"SCAN {table} USING", ""), plan


# 2. A bad option of retry or cancel is a bad parameter naming it, and nothing is stored.


def operable_store(store: str) -> None:
    """A failed run r1 (to retry) and a pending run r2 with cancellation_key k2 (to cancel)."""
    log = open_log(store)
    try:
        ledger.append_input(log, jsonl([
            triggered("r1"),
            ev("run.failed", run_id="r1", error="gave up"),
            triggered("r2", trigger={"source": "api", "cancellation_key": "k2"}),
        ]))
    finally:
        log.close()


def head(store: str) -> int:
    log = open_log(store)
    try:
        return ledger.head(log)
    finally:
        log.close()


COMMANDS = {"retry": ["retry", "r1"], "cancel": ["cancel", "r2"], "cancel --key": ["cancel", "--key", "k2"]}
BAD_OPTIONS = [
    ("--reason", "x" * 10_001, "at most 10000 characters"),
    ("--actor", "a" * (MAX_ID_LENGTH + 1), f"at most {MAX_ID_LENGTH} characters"),
    ("--actor", "ops\tdesk", "no control characters"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=str)
@pytest.mark.parametrize("option, value, why", BAD_OPTIONS, ids=["long-reason", "long-actor", "control-actor"])
def test_a_bad_option_of_retry_and_cancel_is_a_bad_parameter_naming_it(store_path, command, option, value, why):
    operable_store(store_path)
    before = head(store_path)
    result = invoker(store_path)(*COMMANDS[command], option, value)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.stderr and why in result.stderr, result.stderr
    assert '"reason"' not in result.stderr and '"actor"' not in result.stderr  # the option, not the body field
    assert head(store_path) == before


@pytest.mark.parametrize("key, why", [("k" * (MAX_ID_LENGTH + 1), f"at most {MAX_ID_LENGTH} characters"), ("k\n2", "no control characters")])
def test_a_bad_cancellation_key_is_a_bad_parameter_naming_key(store_path, key, why):
    operable_store(store_path)
    before = head(store_path)
    result = invoker(store_path)("cancel", "--key", key)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--key'" in result.stderr and why in result.stderr, result.stderr
    assert head(store_path) == before


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_a_bad_flowledger_actor_is_a_bad_parameter_naming_actor_and_the_variable(store_path, command):
    operable_store(store_path)
    before = head(store_path)
    result = invoker(store_path)(*COMMANDS[command], env={"FLOWLEDGER_ACTOR": "a" * (MAX_ID_LENGTH + 1)})
    assert result.exit_code == 2, result.output
    # As any option's bad value from its variable is named (cli._Option).
    assert "Invalid value for the environment variable FLOWLEDGER_ACTOR" in result.stderr, result.stderr
    assert head(store_path) == before


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_options_at_their_limits_are_recorded(store_path, command):
    operable_store(store_path)
    result = invoker(store_path)(*COMMANDS[command], "--reason", "x" * 10_000, "--actor", "a" * MAX_ID_LENGTH)
    assert result.exit_code == 0, result.output
    log = open_log(store_path)
    try:
        last = log.run_events("r1" if command == "retry" else "r2")[-1].body
    finally:
        log.close()
    assert (len(last["reason"]), len(last["actor"])) == (10_000, MAX_ID_LENGTH)


# 3. A run id longer than any id is a bad parameter, as the API's 422.

RUN_ID_COMMANDS = [["replay"], ["runs", "show"], ["retry"], ["cancel"]]


@pytest.mark.parametrize("command", RUN_ID_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("run_id", ["r" * (MAX_ID_LENGTH + 1), ""], ids=["too-long", "empty"])
def test_a_run_id_no_run_can_have_is_a_bad_parameter(store_path, command, run_id):
    operable_store(store_path)
    before = head(store_path)
    result = invoker(store_path)(*command, run_id)
    assert result.exit_code == 2, result.output
    assert "RUN_ID" in result.stderr, result.stderr
    assert f"expected a run id of 1 to {MAX_ID_LENGTH} characters, got {len(run_id)} characters" in result.stderr
    assert head(store_path) == before


@pytest.mark.parametrize("command", RUN_ID_COMMANDS, ids=" ".join)
def test_a_run_id_of_the_longest_length_is_still_looked_for(store_path, command):
    operable_store(store_path)
    result = invoker(store_path)(*command, "r" * MAX_ID_LENGTH)
    assert result.exit_code == 1 and "no run" in result.stderr, result.output


def test_the_api_refuses_the_run_id_the_cli_refuses(store_path):
    secret = reader_key(store_path)
    with TestClient(create_app(store_path)) as api:
        headers = {"X-API-Key": secret}
        assert api.get("/v1/runs/" + "r" * (MAX_ID_LENGTH + 1), headers=headers).status_code == 422
        assert api.get("/v1/runs/" + "r" * MAX_ID_LENGTH, headers=headers).status_code == 404
