"""Shared fixtures: a fresh SQLite store file per test, and event builders."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from flowledger.store import open_log

_ids = itertools.count(1)


def ev(type_: str, **fields: Any) -> dict[str, Any]:
    """An event of a type with a fresh id and a fixed time, plus the fields given."""
    event = {"id": f"t-{next(_ids)}", "type": type_, "occurred_at": "2026-11-01T09:00:00Z"}
    event.update(fields)
    return event


def triggered(run_id: str, **fields: Any) -> dict[str, Any]:
    """A run.triggered event for run_id."""
    fields.setdefault("workflow", "welcome")
    fields.setdefault("recipient", "user-1")
    return ev("run.triggered", run_id=run_id, **fields)


def step(type_: str, run_id: str, name: str = "email-1", attempt: int = 1, **fields: Any) -> dict[str, Any]:
    """A step event."""
    if type_ == "step.failed":
        fields.setdefault("error", "boom")
    return ev(type_, run_id=run_id, step=name, step_type="send_email", attempt=attempt, **fields)


@pytest.fixture
def store_path(tmp_path):
    """The path of a store file that does not exist yet."""
    return str(tmp_path / "flowledger.db")


@pytest.fixture
def log(store_path):
    """An open event log on a fresh SQLite file."""
    log = open_log(store_path)
    yield log
    log.close()
