"""schemathesis against the API's own OpenAPI document, over a live server on loopback:
no 500, and no response that breaks its own schema."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.store import open_log

schema = schemathesis.openapi.from_dict(create_app(None).openapi())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("schema") / "api.db")
    log = open_log(path)
    with open("examples/welcome-series.jsonl", "rb") as f:
        ledger.append_input(log, f)
    _, secret = keys.create_key(log.backend, "schemathesis", "admin")
    log.close()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(path), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", secret
    server.should_exit = True
    thread.join(timeout=10)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(case, live):
    base_url, secret = live
    case.call_and_validate(
        base_url=base_url,
        headers={"X-API-Key": secret},
        checks=[not_a_server_error, response_schema_conformance],
    )
