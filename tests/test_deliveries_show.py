"""`flowledger deliveries show MESSAGE_ID`: the CLI's twin of GET /v1/deliveries/{id}."""

from __future__ import annotations

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.store import open_log
from tests.conftest import ev, triggered


def events():
    return [
        triggered("r1", recipient={"collection": "accounts", "id": "acct-7"}),
        ev("message.queued", message_id="m1", channel="email", recipient={"collection": "accounts", "id": "acct-7"}, run_id="r1", provider="sendgrid"),
        ev("message.bounced", message_id="m1", reason="550 mailbox\nunavailable"),
    ]


@pytest.fixture
def runner(store_path):
    """A CLI runner over a store holding :func:`events`."""
    runner = CliRunner()
    assert runner.invoke(cli, ["--store", store_path, "append", "-"], input=b"\n".join(orjson.dumps(e) for e in events())).exit_code == 0
    return runner


def test_deliveries_show_prints_every_field_and_its_json_is_the_apis(store_path, runner):
    shown = runner.invoke(cli, ["--store", store_path, "deliveries", "show", "m1"])
    assert shown.exit_code == 0, shown.output
    lines = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert lines["message_id"] == "m1" and lines["run_id"] == "r1" and lines["status"] == "bounced"
    # The recipient as the listings show it, and an error's line break kept on its line.
    assert lines["recipient"] == "accounts/acct-7" and lines["error"] == "550 mailbox\\nunavailable"
    as_json = runner.invoke(cli, ["--store", store_path, "deliveries", "show", "m1", "--json"])
    log = open_log(store_path)
    _, secret = keys.create_key(log.backend, "reader", "read")
    log.close()
    with TestClient(create_app(store_path)) as client:
        api = client.get("/v1/deliveries/m1", headers={"X-API-Key": secret}).json()
    assert orjson.loads(as_json.stdout) == api


def test_deliveries_show_of_an_unknown_message_is_an_error(store_path, runner):
    result = runner.invoke(cli, ["--store", store_path, "deliveries", "show", "nope"])
    assert result.exit_code == 1 and "no message 'nope'" in result.stderr and result.stdout == ""
