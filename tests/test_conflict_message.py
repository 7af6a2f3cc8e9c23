"""An id conflict's message names the fields that differ (never their values), so a sender
can tell a changed payload from a reused id."""

from __future__ import annotations

import pytest

from flowledger import ledger
from flowledger.errors import InvalidInput
from tests.conftest import ev, triggered
from tests.test_append import jsonl


def refused(log, *events):
    with pytest.raises(InvalidInput) as info:
        ledger.append_input(log, jsonl(*events))
    (problem,) = info.value.problems
    return problem.message


def test_a_conflict_with_a_stored_event_names_the_fields_that_differ_not_their_values(log):
    t = triggered("r1", data={"plan": "pro"})
    ledger.append_input(log, jsonl(t))
    message = refused(log, {**t, "workflow": "other-flow", "data": {"plan": "secret-free"}})
    assert "it differs in data, workflow" in message
    assert "other-flow" not in message and "secret-free" not in message


def test_a_field_only_one_body_has_is_named(log):
    t = triggered("r1")
    ledger.append_input(log, jsonl(t))
    assert "it differs in tenant)" in refused(log, {**t, "tenant": "acme"})


def test_a_conflict_within_one_batch_names_the_fields_too(log):
    t = triggered("r1")
    assert "it differs in workflow)" in refused(log, t, {**t, "workflow": "other"})


def test_an_id_stored_for_another_run_says_so(log):
    t = triggered("r1")
    ledger.append_input(log, jsonl(t))
    message = refused(log, {**t, "run_id": "r2"})
    assert "already stored with a different body (for another run or message)" in message


def test_many_differing_fields_are_cut_to_five(log):
    t = triggered("r1")
    ledger.append_input(log, jsonl(t))
    changed = {
        **t, "occurred_at": "2026-11-02T00:00:00Z", "workflow": "w2", "recipient": "user-2", "tenant": "acme",
        "max_retries": 3, "data": {"a": 1},
    }
    message = refused(log, changed)
    assert "it differs in data, max_retries, occurred_at, recipient, tenant, …)" in message
