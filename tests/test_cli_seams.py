"""The merge review's findings 3, 5, 6 and 7 at their edges (a recipient's length on each
surface, a misplaced option before a subcommand and its arguments, an empty page past a
cursor), and two small ones: `append --format` on a terminal, and an empty --store."""

from __future__ import annotations

import html
import re
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from flowledger import ledger, queries
from flowledger.api import keys
from flowledger.cli import cli
from flowledger.domain.vocabulary import MAX_ID_LENGTH
from flowledger.store import open_log
from tests.conftest import ev, triggered
from tests.view_versions_kit import append_to
from tests.test_new_user_fixes import _run_on_a_terminal
from tests.test_web import sign_in, site  # noqa: F401  # site: the fixture

LONGEST = 2 * MAX_ID_LENGTH + 1
"""The longest recipient a listing shows: a collection and an id at their longest, and "/"."""


def _invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), env=env)


_append = append_to


# 3. A recipient no listing can show.

EDGE_RECIPIENTS = {
    "both longest, each with a slash": {"collection": "c/" + "x" * (MAX_ID_LENGTH - 2), "id": "i/" + "y" * (MAX_ID_LENGTH - 2)},
    "a one-character collection, the longest id of slashes": {"collection": "a", "id": "/" * MAX_ID_LENGTH},
    "the longest collection of slashes, a one-character id": {"collection": "/" * MAX_ID_LENGTH, "id": "b"},
}


def test_a_contact_is_found_wherever_its_collection_and_id_are_at_their_edges(store_path):
    # The contact's text is cut only where both sides could be ids: never short of one that can.
    runs = [triggered(f"r{k}", recipient=r) for k, r in enumerate(EDGE_RECIPIENTS.values())]
    _append(store_path, runs)
    log = open_log(store_path)
    try:
        ledger.catch_up(log)
        for k, r in enumerate(EDGE_RECIPIENTS.values()):
            contact = f"{r['collection']}/{r['id']}"
            page = ledger.query(log, queries.list_runs_by_contact, queries.RunFilters(), contact)
            assert [e["id"] for e in page["entries"]] == [f"r{k}"], contact[:20]
    finally:
        log.close()


@pytest.mark.parametrize("command", [["runs", "list"], ["deliveries", "list"]], ids=" ".join)
def test_a_recipient_longer_than_a_listing_shows_is_a_bad_parameter(store_path, command):
    _append(store_path, [triggered("r1")])
    longest = _invoke("--store", store_path, *command, "--recipient", "a" * LONGEST)
    assert longest.exit_code == 0, longest.output
    result = _invoke("--store", store_path, *command, "--recipient", "a" * (LONGEST + 1))
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--recipient'" in result.stderr and f"at most {LONGEST} characters" in result.stderr, result.stderr


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/deliveries"])
def test_the_api_refuses_a_recipient_longer_than_a_listing_shows(store_path, path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from flowledger.api.app import create_app

    _append(store_path, [triggered("r1")])
    log = open_log(store_path)
    try:
        headers = {"X-API-Key": keys.create_key(log.backend, "reader", "read")[1]}
    finally:
        log.close()
    with TestClient(create_app(store_path)) as api:
        assert api.get(path, params={"recipient": "a" * LONGEST}, headers=headers).status_code == 200
        answer = api.get(path, params={"recipient": "a" * (LONGEST + 1)}, headers=headers)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["recipient"], answer.text


@pytest.mark.parametrize("path", ["/runs", "/deliveries"])
def test_a_page_says_a_recipient_is_longer_than_a_listing_shows(site, path):  # noqa: F811
    client, secrets = site
    sign_in(client, secrets["read"])
    page = client.get(path, params={"recipient": "a" * (LONGEST + 1)})
    assert page.status_code == 200, page.text
    alert = re.search(r'<p class="error" role="alert">([^<]*)</p>', page.text)
    assert alert and f"at most {LONGEST} characters" in html.unescape(alert.group(1)), page.text[-2000:]


# 5. An actor given on the command line is still named as the option.


def test_a_bad_actor_option_is_named_as_the_option(store_path):
    result = _invoke("--store", store_path, "cancel", "r1", "--actor", "ops\x01")
    assert result.exit_code == 2 and "Invalid value for '--actor'" in result.stderr, result.output


# 6. A group option given after a command: the line to type instead.


@pytest.mark.parametrize(
    "args, expected",
    [
        (["runs", "list", "--status", "failed", "--store=my runs.db", "--json"], "flowledger --store 'my runs.db' runs list --status failed --json"),
        (["runs", "--store", "x.db", "show", "run 1"], "flowledger --store x.db runs show 'run 1'"),
        (["runs", "list", "--store"], "flowledger --store STORE runs list"),
    ],
)
def test_a_misplaced_group_option_is_shown_before_the_rest_of_the_line(args, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert f"put it before the command ({expected})" in result.stderr, result.stderr


# 7. An empty page past a cursor.


def test_a_newer_page_emptied_since_says_no_more_runs(store_path):
    _append(store_path, [triggered("r1"), triggered("r2")])
    listing = ("--store", store_path, "runs", "list", "--status", "pending", "--page-size", "1", "--json")
    first = orjson.loads(_invoke(*listing).output)
    second = orjson.loads(_invoke(*listing, "--after", first["page_info"]["after"]).output)
    assert [e["id"] for e in second["entries"]] == ["r1"] and second["page_info"]["before"], second
    # The newer page's one run leaves the filter; r1 still matches it.
    _append(store_path, [ev("run.started", run_id="r2")])
    result = _invoke("--store", store_path, "runs", "list", "--status", "pending", "--before", second["page_info"]["before"])
    assert result.exit_code == 0, result.output
    assert "(no more runs)" in result.output and "no runs match" not in result.output, result.output


def test_a_page_of_messages_past_the_end_says_no_more_messages(store_path):
    queued = [ev("message.queued", message_id=m, channel="sms", recipient="u") for m in ("m1", "m2")]
    _append(store_path, [*queued, *(ev("message.sent", message_id=m) for m in ("m1", "m2"))])
    listing = ("--store", store_path, "deliveries", "list", "--status", "sent")
    first = orjson.loads(_invoke(*listing, "--page-size", "1", "--json").output)
    assert [e["message_id"] for e in first["entries"]] == ["m2"] and first["page_info"]["after"], first
    _append(store_path, [ev("message.delivered", message_id="m1", occurred_at="2026-11-01T09:05:00Z")])
    result = _invoke(*listing, "--after", first["page_info"]["after"])
    assert result.exit_code == 0, result.output
    assert "(no more messages)" in result.output and "no messages match" not in result.output, result.output
    # A first page with nothing to show still says nothing matches.
    none = _invoke("--store", store_path, "deliveries", "list", "--status", "bounced")
    assert "(no messages match)" in none.output, none.output


# The small ones.


def test_append_of_a_providers_format_on_a_terminal_does_not_ask_for_flowledgers_lines(tmp_path):
    _, err = _run_on_a_terminal(["--store", "s.db", "append", "--format", "sendgrid"], str(tmp_path))
    first = err.splitlines()[0]
    assert "standard input" in first and "Ctrl-D" in first and "sendgrid" in first, err
    assert "one JSON object a line" not in first, err


def test_an_empty_store_option_is_a_bad_parameter(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _invoke("--store", "", "counts")
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--store'" in result.stderr and "FLOWLEDGER_STORE" in result.stderr, result.stderr
    # An empty variable counts as unset, as click reads every one: the default store.
    unset = _invoke("counts", env={"FLOWLEDGER_STORE": ""})
    assert unset.exit_code == 1 and "no store at ./flowledger.db" in unset.stderr, unset.output
    assert not (tmp_path / "flowledger.db").exists()


def test_the_web_recipient_inputs_stop_at_the_longest_recipient(site):  # noqa: F811
    """The browser stops the typing where the server would refuse the value."""
    client, secrets = site
    sign_in(client, secrets["read"])
    for path in ("/runs", "/deliveries"):
        page = client.get(path)
        assert page.status_code == 200, page.text
        field = re.search(r'<input[^>]*name="recipient"[^>]*>', page.text)
        assert field and f'maxlength="{LONGEST}"' in field.group(0), path
