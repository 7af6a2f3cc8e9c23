"""The benchmark's workload: both id shapes describe the same events, and a store takes it."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from workload import workload  # noqa: E402


def _ids(event: dict) -> tuple:
    return tuple(event.get(k) for k in ("id", "run_id", "message_id", "provider_message_id"))


def test_uuid_and_sequential_ids_describe_the_same_workload():
    uuid, sequential = list(workload(3000, ids="uuid")), list(workload(3000, ids="sequential"))
    assert len(uuid) == len(sequential)
    strip = lambda e: {k: v for k, v in e.items() if k not in ("id", "run_id", "message_id", "provider_message_id")}  # noqa: E731
    assert [strip(e) for e in uuid] == [strip(e) for e in sequential]
    # One id of one shape is one id of the other: resent webhooks stay resends, streams stay streams.
    pairs = {(a, b) for u, s in zip(uuid, sequential) for a, b in zip(_ids(u), _ids(s))}
    assert len({a for a, _ in pairs}) == len({b for _, b in pairs}) == len(pairs)
    assert sequential[0]["id"].startswith("run-") and len(uuid[0]["id"]) == 36


def test_unknown_id_shape_is_refused():
    with pytest.raises(ValueError, match="ids must be one of"):
        next(workload(10, ids="ksuid"))
