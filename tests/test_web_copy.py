"""The run page on an analyst's copy made by `rebuild --into`: the views' record, with where its
history is, as GET /v1/runs/{id} answers there (it was the store-trouble page)."""

from __future__ import annotations

import os

from click.testing import CliRunner
from fastapi.testclient import TestClient

from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.store import open_log
from tests.test_web import sign_in

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "welcome-series.jsonl")


def test_the_run_page_on_a_copy_shows_the_run_and_names_the_store_with_its_history(tmp_path):
    runner = CliRunner()
    source, into = str(tmp_path / "source.db"), str(tmp_path / "copy.db")
    assert runner.invoke(cli, ["--store", source, "append", EXAMPLE]).exit_code == 0
    assert runner.invoke(cli, ["--store", source, "rebuild", "--into", into]).exit_code == 0
    log = open_log(into)
    _, secret = keys.create_key(log.backend, "analyst", "admin")
    log.close()
    with TestClient(create_app(into)) as client:
        sign_in(client, secret)
        r = client.get("/runs/run-0007")
        assert r.status_code == 200, r.text
        assert "Run run-0007" in r.text and "msg-" in r.text
        assert "analyst's copy" in r.text and source in r.text
        # No buttons for commands the copy refuses.
        assert 'id="retry"' not in r.text and 'id="cancel"' not in r.text
        assert client.get("/runs/nope").status_code == 404
    with TestClient(create_app(source)) as client:
        sign_in(client, open_key(source))
        r = client.get("/runs/run-0007")
        assert r.status_code == 200 and "analyst's copy" not in r.text and "<h2>History</h2>" in r.text


def open_key(store):
    log = open_log(store)
    try:
        return keys.create_key(log.backend, "admin", "admin")[1]
    finally:
        log.close()
