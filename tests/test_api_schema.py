"""schemathesis against the API's own OpenAPI document, over a live server on loopback:
no 500, and no response that breaks its own schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.store import open_log
from tests.conftest import live_server

schema = schemathesis.openapi.from_dict(create_app(None).openapi())


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("schema") / "api.db")
    log = open_log(path)
    with open("examples/welcome-series.jsonl", "rb") as f:
        ledger.append_input(log, f)
    _, secret = keys.create_key(log.backend, "schemathesis", "admin")
    log.close()
    with live_server(create_app(path)) as base_url:
        yield base_url, secret


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(case, live):
    base_url, secret = live
    case.call_and_validate(
        base_url=base_url,
        headers={"X-API-Key": secret},
        checks=[not_a_server_error, response_schema_conformance],
    )
