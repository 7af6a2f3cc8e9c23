"""API keys: a key's name must make a valid actor for the retries and cancels made with it."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from flowledger import ledger
from flowledger.api import keys
from flowledger.cli import cli
from tests.conftest import triggered
from tests.histories import jsonl


@pytest.mark.parametrize("name", ["x" * 251, "ops\tteam", "ops\nteam", "nul\x00", "del\x7f"])
def test_a_name_that_would_make_an_invalid_actor_is_refused(log, name):
    with pytest.raises(keys.KeyCommandError):
        keys.create_key(log.backend, name, "admin")
    assert keys.list_keys(log.backend) == []


def test_the_longest_name_allowed_still_makes_a_valid_actor(log):
    key, _ = keys.create_key(log.backend, "  " + "x" * keys.NAME_LIMIT + "  ", "admin")
    assert key.name == "x" * keys.NAME_LIMIT
    ledger.append_input(log, jsonl([triggered("r1"), triggered("r2")]))
    # What the API and the web page record as the actor of a cancel made with the key.
    for prefix, run_id in (("api:", "r1"), ("web:", "r2")):
        assert ledger.cancel_run(log, run_id, actor=prefix + key.name)["status"] == "cancelled"


def test_keys_create_shows_the_refusal_and_stores_nothing(store_path):
    runner = CliRunner()
    for name in ("x" * 300, "ops\tteam", "  "):
        result = runner.invoke(cli, ["--store", store_path, "keys", "create", "--name", name, "--scope", "admin"])
        # A usage error naming the option, and no store made on the way.
        assert result.exit_code == 2 and result.stdout == ""
        assert "Invalid value for '--name': a key" in result.stderr
        assert not os.path.exists(store_path)
    assert runner.invoke(cli, ["--store", store_path, "keys", "create", "--name", "ops", "--scope", "read"]).exit_code == 0
    listed = runner.invoke(cli, ["--store", store_path, "keys", "list", "--json"])
    assert listed.exit_code == 0 and listed.stdout.count('"name"') == 1
