"""A short loopback load test of `flowledger serve`: several client processes posting
webhook batches; every acknowledged event is stored exactly once."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from load import run  # noqa: E402

from tests.conftest import POSTGRES_UNREACHABLE  # noqa: E402


def check(figures):
    assert figures["errors"] == 0
    assert figures["requests"] > 0
    assert figures["all_acknowledged_stored"] and figures["stored_once"]
    assert figures["stored"] == figures["unique_acknowledged"]
    assert figures["acknowledged"] > figures["unique_acknowledged"]  # resent webhooks were acked again


def test_sqlite():
    check(run(clients=3, seconds=3, max_requests=60))


@pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")
def test_postgresql(postgres_url):
    check(run(clients=3, seconds=3, store=postgres_url, max_requests=60))


def test_signed_sendgrid_batches():
    check(run(clients=3, seconds=3, max_requests=40, sendgrid=True))
