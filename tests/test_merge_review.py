"""Problems found reviewing the day's merge, each reproduced first."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings, strategies as st

from flowledger import ledger
from flowledger.api import keys
from flowledger.api.app import create_app
from flowledger.domain.redaction import REDACTED, Redactor
from flowledger.store import open_log
from flowledger.store.log import same_but_redacted
from tests.conftest import ev, triggered
from tests.histories import jsonl


@pytest.mark.parametrize("endpoint", ["/v1/runs/r1/retry", "/v1/runs/r1/cancel", "/v1/cancellations"])
def test_an_api_operators_reason_is_redacted_with_the_servers_own_keys(tmp_path, monkeypatch, endpoint):
    # serve --redact-key gives create_app its redactor: retry and cancel over the API used
    # only FLOWLEDGER_REDACT_KEYS, so a reason naming such a key was stored in clear.
    monkeypatch.delenv("FLOWLEDGER_REDACT_KEYS", raising=False)
    store = str(tmp_path / "s.db")
    log = open_log(store)
    secret = keys.create_key(log.backend, "ops", "admin")[1]
    events = [triggered("r1", trigger={"source": "api", "cancellation_key": "k1"})]
    if endpoint.endswith("retry"):
        events += [ev("run.started", run_id="r1"), ev("run.failed", run_id="r1", error="x")]
    ledger.append_input(log, jsonl(events))
    log.close()
    body = {"reason": "ssn=123-45-6789 leaked"}
    if endpoint == "/v1/cancellations":
        body["key"] = "k1"
    with TestClient(create_app(store, redactor=Redactor.from_environment(["ssn"]))) as api:
        r = api.post(endpoint, json=body, headers={"X-API-Key": secret})
        assert r.status_code == 200, r.text
    log = open_log(store)
    try:
        assert log.run_events("r1")[-1].body["reason"] == f"ssn={REDACTED} leaked"
    finally:
        log.close()


def _regex_masked_match(pattern: str, text: str) -> bool:
    """The matching as first written (a regex of .* between the parts): the reference."""
    if REDACTED not in pattern:
        return False
    parts = pattern.split(REDACTED)
    return re.fullmatch(".*".join(re.escape(p) for p in parts), text, re.DOTALL) is not None


def test_a_resend_against_many_masks_is_matched_in_linear_time():
    # A regex of k ".*" backtracks through about len(text)**k splits before it fails: three
    # masks and 2,000 characters took seconds, a dozen never ends, all under the write lock.
    stored = {"error": (REDACTED + "a") * 40}
    sent = {"error": "a" * 5_000 + "b"}
    assert not same_but_redacted(stored, sent)
    assert not same_but_redacted(sent, stored)
    assert same_but_redacted(stored, {"error": "xa" * 40})


_pieces = st.lists(st.sampled_from(["a", "b", "ab", REDACTED, "[", "]", ""]), max_size=8).map("".join)


def _regex_masks_meet(a: str, b: str) -> bool:
    """Whether some text fullmatches both as regexes, the masks as .*: where their fixed
    starts disagree (or their ends) none can; else a text holding the longer start, every
    fixed middle of both and the longer end is tried."""
    if REDACTED not in a or REDACTED not in b:
        return False
    a_parts, b_parts = a.split(REDACTED), b.split(REDACTED)
    start = max(a_parts[0], b_parts[0], key=len)
    end = max(a_parts[-1], b_parts[-1], key=len)
    if not (start.startswith(a_parts[0]) and start.startswith(b_parts[0])):
        return False
    if not (end.endswith(a_parts[-1]) and end.endswith(b_parts[-1])):
        return False
    witness = start + "".join(a_parts[1:-1] + b_parts[1:-1]) + end
    return _regex_masked_match(a, witness) and _regex_masked_match(b, witness)


@settings(max_examples=400, deadline=None)
@given(stored=_pieces, sent=_pieces)
def test_masked_strings_match_as_the_regex_matched(stored, sent):
    # A resend matches where one side's masks cover the other's text, or where one text
    # could be both (each side masked by its own rules).
    expected = (
        stored == sent
        or _regex_masked_match(stored, sent)
        or _regex_masked_match(sent, stored)
        or _regex_masks_meet(stored, sent)
    )
    assert same_but_redacted(stored, sent) is expected


@pytest.mark.parametrize("query", ["sslmode=", "schema=flows&sslmode=", "sslmode=%20", "target_session_attrs"])
def test_a_blank_libpq_setting_in_the_url_is_refused_as_readme_says(query):
    # Passed on as "", which libpq reads as unset: ?sslmode= (a template's empty variable)
    # connected with the default, in plain text where the server allows it.
    from flowledger.errors import StoreURLError
    from flowledger.store.postgres import parse_url

    name = query.rsplit("&", 1)[-1].split("=")[0]
    with pytest.raises(StoreURLError, match=f"{name} no value"):
        parse_url("postgresql://me:s3cret@db.example/flows?" + query)


def test_a_key_of_too_small_a_scope_is_told_which_it_needs_in_good_english(store_path):
    from fastapi.testclient import TestClient

    from flowledger.api import keys as api_keys
    from flowledger.api.app import create_app
    from flowledger.store import open_log

    log = open_log(store_path)
    _, secret = api_keys.create_key(log.backend, "w", "write")
    log.close()
    with TestClient(create_app(store_path)) as client:
        r = client.post("/v1/runs/r1/retry", headers={"X-API-Key": secret})
        assert r.status_code == 403 and "needs an admin key" in r.json()["detail"]
