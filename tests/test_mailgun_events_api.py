"""`append --format mailgun` reads pages saved from Mailgun's Events API (`GET /v3/<domain>/events`:
an object whose `items` are the events, beside `paging`), as it reads webhook bodies and
arrays of events."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner

from flowledger.cli import cli
from flowledger.providers.ingest import export_items
from tests.test_providers import fixture

NOW = 1_800_000_000.0


def _event(name: str) -> dict:
    return orjson.loads(fixture(name))["event-data"]


def _page(*names: str) -> dict:
    return {
        "items": [_event(n) for n in names],
        "paging": {"next": "https://api.mailgun.net/v3/sandbox.mailgun.org/events/W3siY...", "previous": "https://api.mailgun.net/v3/sandbox.mailgun.org/events/Lkawm..."},
    }


def test_a_page_of_the_events_api_is_its_items():
    """A saved page gives its items, in order, and nothing of `paging`."""
    page = _page("mailgun-delivered.json", "mailgun-clicked.json")
    assert export_items("mailgun", orjson.dumps(page), NOW) == page["items"]


def test_pages_saved_one_a_line_or_in_an_array_give_every_page_s_items():
    """Several pages, as JSON Lines or as one array of pages: every item of each, in order."""
    first, second = _page("mailgun-delivered.json"), _page("mailgun-clicked.json", "mailgun-failed-bounce.json")
    expected = first["items"] + second["items"]
    lines = orjson.dumps(first) + b"\n" + orjson.dumps(second) + b"\n"
    assert export_items("mailgun", lines, NOW) == expected
    assert export_items("mailgun", orjson.dumps([first, second]), NOW) == expected


def test_the_last_page_with_no_items_adds_nothing():
    """The API's last page is `{"items": [], "paging": ...}`: no event, no error."""
    assert export_items("mailgun", orjson.dumps({"items": [], "paging": {}}), NOW) == []


@pytest.mark.parametrize("items", ["not a list", 5, None])
def test_items_that_are_not_a_list_are_refused_by_name(items):
    """`items` holding anything but a list of events is refused, naming the field."""
    with pytest.raises(ValueError, match='field "items": expected a list of events'):
        export_items("mailgun", orjson.dumps({"items": items, "paging": {}}), NOW)


def test_an_events_api_page_appended_stores_its_events_matched_to_their_messages(store_path, tmp_path):
    """Through the command: the page's delivery goes to the message its user variable names."""
    page = tmp_path / "events-page-1.json"
    page.write_bytes(orjson.dumps(_page("mailgun-delivered.json", "mailgun-failed-bounce.json")))
    result = CliRunner().invoke(cli, ["--store", store_path, "append", "--format", "mailgun", str(page)])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["appended"] == 2
    again = CliRunner().invoke(cli, ["--store", store_path, "append", "--format", "mailgun", str(page)])
    assert orjson.loads(again.stdout)["duplicates"] == 2
