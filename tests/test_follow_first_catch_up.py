"""`project --follow`'s first catch-up: a store error there is said at once, as the follow
loop says every later one (it was swallowed, and a follower started behind a long import
said nothing until a second lock timeout had passed)."""

from __future__ import annotations

import logging

from click.testing import CliRunner

from flowledger import ledger
from flowledger.cli import cli
from flowledger.errors import StoreError
from flowledger.store import open_log


def test_a_store_error_in_the_first_catch_up_is_logged_and_the_follower_goes_on(store_path, monkeypatch, caplog):
    """The first catch-up's store error is a warning naming the error; the follow loop still runs, exit 0."""
    open_log(store_path).close()
    followed = []

    def busy(*args, **kwargs):
        raise StoreError("the store is busy: another process held a lock this one needs")

    monkeypatch.setattr(ledger, "catch_up", busy)
    monkeypatch.setattr(ledger, "follow", lambda log, **kw: followed.append(kw["interval"]))
    with caplog.at_level(logging.WARNING, logger="flowledger"):
        result = CliRunner().invoke(cli, ["--store", store_path, "project", "--follow", "--interval", "0.2"])
    assert result.exit_code == 0, result.output
    assert followed == [0.2]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("could not catch up" in m and "another process held a lock" in m for m in warned), warned
    assert '"applied"' not in result.output  # nothing was applied, so nothing is claimed
