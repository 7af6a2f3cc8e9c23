"""The HTTP API reviewed as an integrator would: every CLI read command and its endpoint give
the same answer for the same store and filters; every error is a problem document naming
what was wrong; every /v1 route checks its key first."""

from __future__ import annotations

import io
import os

import orjson
import pytest
from click.testing import CliRunner
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from flowledger import ledger
from flowledger.api import keys
from flowledger.api import app as app_module
from flowledger.api.app import create_app
from flowledger.cli import cli
from flowledger.store import open_log
from flowledger.store.inbox import open_inbox
from flowledger.store.log import utc_now
from tests.conftest import server_connection, triggered
from tests.test_api import api, failed_run, h  # noqa: F401  # the fixture, reused

EXAMPLE = "examples/welcome-series.jsonl"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """A store of the example data, a provider export with events waiting for their
    message, and a webhook inbox with one waiting webhook and one dead letter; the CLI and
    the API over it."""
    path = str(tmp_path_factory.mktemp("review") / "example.db")
    log = open_log(path)
    with open(EXAMPLE, "rb") as f:
        ledger.append_input(log, f)
    secrets = {scope: keys.create_key(log.backend, scope + " key", scope)[1] for scope in keys.SCOPES}
    log.close()
    runner = CliRunner()

    def cli_json(*args):
        result = runner.invoke(cli, ["--store", path, *args, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return orjson.loads(result.output)

    assert runner.invoke(cli, ["--store", path, "append", "--format", "sendgrid", "tests/fixtures/sendgrid-events.json"]).exit_code == 0
    with TestClient(create_app(path)) as client:
        # After the server's start-up, which drains the inbox: these stay as they are.
        log = open_log(path)
        inbox = open_inbox(log.backend)
        at = utc_now()
        inbox.put([({"id": "dead-1", "type": "message.delivered"}, "pm-1")], at)
        (dead,) = inbox.oldest(1)
        inbox.set_aside(dead.seq, "invalid under this version's vocabulary", at)
        inbox.put([({"id": "waiting-1", "type": "message.delivered"}, "pm-2")], at)
        inbox.close()
        log.close()
        client.keys = secrets  # type: ignore[attr-defined]
        yield cli_json, client


def _get(client, path, **params):
    r = client.get(path, params=params, headers={"X-API-Key": client.keys["read"]})
    assert r.status_code == 200, r.text
    return r.json()


PAIRS = [
    (["runs", "list"], "/v1/runs", {}),
    (["runs", "list", "--status", "failed", "--status", "cancelled", "--page-size", "4"], "/v1/runs", {"status": ["failed", "cancelled"], "page_size": 4}),
    (["runs", "list", "--workflow", "win-back", "--has-errors"], "/v1/runs", {"workflow": "win-back", "has_errors": "true"}),
    (["runs", "list", "--tenant", "acme", "--recipient", "acct-0007"], "/v1/runs", {"tenant": "acme", "recipient": "acct-0007"}),
    (["runs", "list", "--starting-at", "2026-11-02T00:00:00+02:00", "--ending-at", "2026-11-02T12:00:00Z"], "/v1/runs", {"starting_at": "2026-11-02T00:00:00+02:00", "ending_at": "2026-11-02T12:00:00Z"}),
    (["runs", "show", "run-0001"], "/v1/runs/run-0001", {}),
    (["replay", "run-0001"], "/v1/runs/run-0001/history", {}),
    (["deliveries", "list"], "/v1/deliveries", {}),
    (["deliveries", "list", "--channel", "email", "--status", "bounced", "--status", "failed"], "/v1/deliveries", {"channel": "email", "status": ["bounced", "failed"]}),
    (["deliveries", "list", "--run", "run-0001"], "/v1/deliveries", {"run_id": "run-0001"}),
    (["workflows", "show", "welcome-series"], "/v1/workflows/welcome-series", {}),
    (["stats", "welcome-series"], "/v1/workflows/welcome-series/stats", {}),
    (["counts"], "/v1/counts", {}),
    (["counts", "--include-rehearsals"], "/v1/counts", {"include_rehearsals": "true"}),
    (["inbox"], "/v1/inbox", {}),
    (["inbox", "--limit", "1"], "/v1/inbox", {"limit": 1}),
]

# The CLI prints these lists bare; the API, as every listing of its, in "entries".
LISTS = [
    (["workflows", "list"], "/v1/workflows", {}),
    (["workflows", "list", "--match", "W", "--page-size", "2"], "/v1/workflows", {"match": "W", "page_size": 2}),
    (["workflows", "list", "--after", "password-reset"], "/v1/workflows", {"after": "password-reset"}),
    (["unmatched"], "/v1/unmatched", {}),
    (["unmatched", "--limit", "2"], "/v1/unmatched", {"limit": 2}),
]


@pytest.mark.parametrize("args, path, params", PAIRS, ids=[" ".join(p[0]) for p in PAIRS])
def test_every_cli_read_command_and_its_endpoint_answer_alike(example, args, path, params):
    cli_json, client = example
    from_cli, from_api = cli_json(*args), _get(client, path, **params)
    if args[:2] == ["runs", "show"]:
        # The API adds the run's own events, as README says (the replay has its messages'
        # facts too); the rest is the same.
        replayed = [h["event"] for h in cli_json("replay", args[2])["events"]]
        assert [e["id"] for e in from_api.pop("events")] == [e["id"] for e in replayed if not e["type"].startswith("message.")]
    assert from_api == from_cli


def test_the_example_data_gives_the_pairs_something_to_compare(example):
    cli_json, _ = example
    assert len(cli_json("runs", "list", "--status", "failed", "--status", "cancelled", "--page-size", "4")["entries"]) == 4
    assert cli_json("runs", "list", "--workflow", "win-back", "--has-errors")["entries"]
    assert cli_json("runs", "list", "--tenant", "acme", "--recipient", "acct-0007")["entries"]
    assert cli_json("deliveries", "list", "--channel", "email", "--status", "bounced", "--status", "failed")["entries"]
    inbox = cli_json("inbox")
    assert inbox["waiting"] == 1 and [d["reason"] for d in inbox["dead_letters"]] == ["invalid under this version's vocabulary"]
    assert len(cli_json("unmatched")) == 3


@pytest.mark.parametrize("args, path, params", LISTS, ids=[" ".join(p[0]) for p in LISTS])
def test_a_list_the_cli_prints_bare_is_the_api_entries(example, args, path, params):
    cli_json, client = example
    from_api, from_cli = _get(client, path, **params), cli_json(*args)
    if path == "/v1/workflows":
        # The API's page also says where the next one starts: after its last key, if any follow.
        paged = "--page-size" in args
        assert from_api.pop("next") == (from_cli[-1]["key"] if paged else None)
    assert from_api == {"entries": from_cli}


def test_time_bounds_are_inclusive_and_offsets_are_the_same_instant_on_both(example):
    cli_json, client = example
    run = cli_json("runs", "list", "--page-size", "1")["entries"][0]
    at = run["created_at"]
    for bounds in ({"starting_at": at}, {"ending_at": at}, {"starting_at": at, "ending_at": at}):
        api_page = _get(client, "/v1/runs", **bounds)
        cli_page = cli_json("runs", "list", *[a for k, v in bounds.items() for a in ("--" + k.replace("_", "-"), v)])
        assert api_page == cli_page and run["id"] in [e["id"] for e in api_page["entries"]]
    # The same instant, written with an offset, selects the same run.
    shifted = at.replace("Z", "+00:00")
    assert [e["id"] for e in _get(client, "/v1/runs", starting_at=shifted, ending_at=shifted)["entries"]] == [run["id"]]


@pytest.mark.parametrize("path, cli_args", [("/v1/runs", ["runs", "list"]), ("/v1/deliveries", ["deliveries", "list"])])
def test_paging_forward_and_back_gives_the_same_pages_and_cursors(example, path, cli_args):
    cli_json, client = example
    cursor: dict[str, str] = {}
    pages = []
    for _ in range(3):
        api_page = _get(client, path, page_size=7, **cursor)
        flags = [a for k, v in cursor.items() for a in (f"--{k}", v)]
        assert api_page == cli_json(*cli_args, "--page-size", "7", *flags)
        pages.append(api_page)
        cursor = {"after": api_page["page_info"]["after"]}
    back = _get(client, path, page_size=7, before=pages[-1]["page_info"]["before"])
    assert back == pages[-2] == cli_json(*cli_args, "--page-size", "7", "--before", pages[-1]["page_info"]["before"])


def test_a_status_in_capitals_is_refused_by_both(example):
    cli_json, client = example
    r = client.get("/v1/runs", params={"status": "FAILED"}, headers=h(client, "read"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "status.0"
    assert CliRunner().invoke(cli, ["runs", "list", "--status", "FAILED"]).exit_code == 2


# Errors


def _problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and "Traceback" not in r.text
    return body


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/deliveries", "/v1/workflows", "/v1/counts", "/v1/runs/r1", "/v1/inbox"])
def test_an_unknown_query_parameter_is_a_422_naming_it_not_a_silently_unfiltered_answer(api, path):
    api.post("/v1/events", json=failed_run("r1"), headers=h(api, "write"))
    body = _problem(api.get(path, params={"stauts": "failed"}, headers=h(api, "read")), 422)
    (error,) = body["errors"]
    assert error["field"] == "stauts" and "unknown query parameter" in error["message"]


def test_the_unknown_parameter_message_lists_the_ones_there_are(api):
    body = _problem(api.get("/v1/deliveries", params={"run": "r1"}, headers=h(api, "read")), 422)
    assert "run_id" in body["errors"][0]["message"] and "channel" in body["errors"][0]["message"]


def test_a_filter_given_twice_is_a_422_but_status_may_repeat(api):
    api.post("/v1/events", json=failed_run("r1") + [triggered("r2", workflow="other")], headers=h(api, "write"))
    r = api.get("/v1/runs?workflow=welcome&workflow=other", headers=h(api, "read"))
    (error,) = _problem(r, 422)["errors"]
    assert error["field"] == "workflow" and "once" in error["message"]
    r = api.get("/v1/runs?page_size=1&page_size=2", headers=h(api, "read"))
    assert _problem(r, 422)["errors"][0]["field"] == "page_size"
    r = api.get("/v1/runs?status=failed&status=pending", headers=h(api, "read"))
    assert r.status_code == 200 and {e["id"] for e in r.json()["entries"]} == {"r1", "r2"}


@pytest.mark.parametrize("param", ["after", "before"])
def test_a_tampered_cursor_is_a_422_naming_its_parameter(api, param):
    for cursor in ("zzz", "c2VxOi0x", "é", "c2VxOjk5OTk5OTk5OTk5OTk5OTk5OTk5"):
        body = _problem(api.get("/v1/runs", params={param: cursor}, headers=h(api, "read")), 422)
        (error,) = body["errors"]
        assert error["field"] == param and "not a cursor from a previous page" in error["message"]


def test_a_timestamp_that_is_not_one_is_a_422_naming_its_parameter(api):
    body = _problem(api.get("/v1/runs", params={"ending_at": "2026-11-01T00:00:00"}, headers=h(api, "read")), 422)
    assert body["errors"] == [{"field": "ending_at", "message": "expected an RFC 3339 timestamp with an offset, like 2026-11-01T00:00:00Z"}]


def _postgres_url():
    import uuid

    from tests.conftest import POSTGRES, _reachable

    why = _reachable()
    if why:
        pytest.skip(why)
    return f"{POSTGRES}?schema=api_review_{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_api(request, store_path):
    url = store_path if request.param == "sqlite" else _postgres_url()
    log = open_log(url, create=True)
    secrets = {scope: keys.create_key(log.backend, scope + " key", scope)[1] for scope in keys.SCOPES}
    log.close()
    try:
        with TestClient(create_app(url)) as client:
            client.keys = secrets  # type: ignore[attr-defined]
            client.post("/v1/events", json=failed_run("r1"), headers=h(client, "write"))
            yield client
    finally:
        if request.param == "postgresql":
            conn = server_connection(url)
            conn.execute(f'DROP SCHEMA IF EXISTS "{url.rsplit("=", 1)[1]}" CASCADE')
            conn.commit()
            conn.close()


@pytest.mark.parametrize(
    "method, path, field",
    [
        ("get", "/v1/runs?workflow=a%00b", "workflow"),
        ("get", "/v1/deliveries?recipient=a%00", "recipient"),
        ("get", "/v1/runs/r%001", "run_id"),
        ("get", "/v1/runs/r%001/history", "run_id"),
        ("get", "/v1/deliveries/m%00", "message_id"),
        ("get", "/v1/workflows/w%00/stats", "key"),
        ("post", "/v1/runs/r%001/retry", "run_id"),
    ],
)
def test_a_nul_character_in_an_id_or_filter_is_a_422_on_either_backend_not_a_500(any_api, method, path, field):
    # PostgreSQL's text cannot hold NUL: the store failed, a 500 for the caller's input.
    body = _problem(getattr(any_api, method)(path, headers=h(any_api, "admin")), 422)
    assert body["errors"][0]["field"] == field and "NUL" in body["errors"][0]["message"]


@pytest.mark.parametrize("body, field", [({"key": "order\x007"}, "key"), ({"key": "order-7", "reason": "a\x00b"}, "reason")])
def test_a_nul_character_in_a_command_body_is_a_422_on_either_backend(any_api, body, field):
    r = any_api.post("/v1/cancellations", json=body, headers=h(any_api, "admin"))
    assert _problem(r, 422)["errors"][0]["field"] == field
    r = any_api.post("/v1/runs/r1/retry", json={"reason": "a\x00b"}, headers=h(any_api, "admin"))
    assert _problem(r, 422)["errors"][0]["field"] == "reason"
    assert any_api.get("/v1/runs/r1", headers=h(any_api, "read")).json()["status"] == "failed"


@pytest.mark.parametrize("path", ["/v1/cancellations", "/v1/runs/r1/retry", "/v1/runs/r1/cancel"])
def test_a_command_body_is_read_only_after_its_key_is_checked(api, path):
    # Else anyone could make the server read a body of any size, and learn it was invalid.
    for headers in ({}, h(api, "read"), h(api, "write")):
        r = api.post(path, content=b"{not json", headers={**headers, "content-type": "application/json"})
        assert r.status_code in (401, 403), (headers, r.text)


@pytest.mark.parametrize("path", ["/v1/cancellations", "/v1/runs/r1/retry", "/v1/runs/r1/cancel"])
def test_a_command_body_over_its_limit_is_a_413_naming_the_limit(api, path):
    api.post("/v1/events", json=failed_run("r1"), headers=h(api, "write"))
    limit = app_module.MAX_COMMAND_BYTES
    big = orjson.dumps({"key": "order-7", "reason": "x" * (limit + 1)})
    body = _problem(api.post(path, content=big, headers={**h(api, "admin"), "content-type": "application/json"}), 413)
    assert f"{limit:,}" in body["detail"]
    assert api.get("/v1/runs/r1", headers=h(api, "read")).json()["status"] == "failed"


def test_command_bodies_that_are_not_json_or_not_an_object_name_the_body(api):
    api.post("/v1/events", json=failed_run("r1"), headers=h(api, "write"))
    admin = {**h(api, "admin"), "content-type": "application/json"}
    body = _problem(api.post("/v1/runs/r1/retry", content=b"{nope", headers=admin), 422)
    assert body["errors"][0]["field"] == "body" and "not valid JSON" in body["errors"][0]["message"]
    body = _problem(api.post("/v1/cancellations", content=b"[]", headers=admin), 422)
    assert body["errors"][0]["field"] == "body" and "JSON object" in body["errors"][0]["message"]
    body = _problem(api.post("/v1/cancellations", json={}, headers=h(api, "admin")), 422)
    assert body["errors"] == [{"field": "key", "message": "Field required"}]
    body = _problem(api.post("/v1/cancellations", json={"key": "k", "reasn": "typo"}, headers=h(api, "admin")), 422)
    assert body["errors"][0]["field"] == "reasn"
    # An empty body, or none, is no reason: retry and cancel take it.
    assert api.post("/v1/runs/r1/retry", headers=h(api, "admin")).json()["status"] == "pending"
    assert api.post("/v1/runs/r1/cancel", content=b"", headers=admin).json()["status"] == "cancelled"


def test_a_command_body_with_a_reason_still_records_it(api):
    api.post("/v1/events", json=failed_run("r1"), headers=h(api, "write"))
    assert api.post("/v1/runs/r1/retry", json={"reason": "provider back"}, headers=h(api, "admin")).status_code == 200
    last = api.get("/v1/runs/r1/history", headers=h(api, "read")).json()["events"][-1]
    assert last["event"]["reason"] == "provider back" and last["status"] == "pending"


def test_a_404_and_a_405_name_the_path_and_the_method(api):
    body = _problem(api.get("/v1/nothing", headers=h(api, "read")), 404)
    assert "/v1/nothing" in body["detail"]
    body = _problem(api.delete("/v1/runs", headers=h(api, "read")), 405)
    assert "DELETE" in body["detail"] and "GET" in body["detail"]


# Keys


def _v1_routes(app):
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path.startswith("/v1/") and not route.path.startswith("/v1/webhooks"):
            for method in sorted(route.methods):
                yield method, route.path.replace("{run_id:path}", "r1").replace("{message_id:path}", "m1").replace("{key:path}", "welcome")


def test_every_v1_route_needs_a_key_and_the_scope_readme_gives(api):
    needs = {"GET": "read", "POST": "admin"}
    checked = 0
    for method, path in _v1_routes(api.app):
        need = "write" if path == "/v1/events" else needs[method]
        assert api.request(method, path).status_code == 401, (method, path)
        assert api.request(method, path, headers={"X-API-Key": "fl_live_unknown"}).status_code == 401, (method, path)
        below = keys.SCOPES[keys.SCOPES.index(need) - 1] if need != "read" else None
        if below:
            assert api.request(method, path, headers=h(api, below)).status_code == 403, (method, path)
        checked += 1
    assert checked >= 14


def test_a_key_in_the_url_is_refused_saying_where_it_belongs(api):
    for name in ("api_key", "X-API-Key", "key"):
        body = _problem(api.get("/v1/runs", params={name: api.keys["read"]}), 401)
        assert "X-API-Key header" in body["detail"] and "URL" in body["detail"]
    # With the header too, the query's key is still an unknown parameter, not used.
    body = _problem(api.get("/v1/runs", params={"api_key": api.keys["read"]}, headers=h(api, "read")), 422)
    assert body["errors"][0]["field"] == "api_key"


# The inbox over HTTP


def test_the_inbox_endpoint_needs_a_read_key_and_is_in_the_openapi_document(api):
    assert _problem(api.get("/v1/inbox"), 401)
    assert api.get("/v1/inbox", headers=h(api, "read")).json() == {"waiting": 0, "dead_letters": []}
    assert _problem(api.get("/v1/inbox", params={"limit": 0}, headers=h(api, "read")), 422)["errors"][0]["field"] == "limit"
    doc = api.get("/openapi.json", headers=h(api, "read")).json()
    assert "/v1/inbox" in doc["paths"] and "/v1/unmatched" in doc["paths"]
    assert doc["paths"]["/v1/inbox"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/InboxReport"}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files by /proc (Linux)")
@pytest.mark.parametrize("failing", [2, 3, 4])
def test_a_server_that_fails_to_start_keeps_no_store_open(store_path, monkeypatch, failing):
    # The stores its start-up had opened (the server's own, its inbox's, the follower's)
    # stayed open for as long as the error was kept: on PostgreSQL, pools and their threads.
    from flowledger.errors import StoreError

    log = open_log(store_path)
    ledger.append_input(log, io.BytesIO(orjson.dumps(triggered("r1"))))
    log.close()
    opens = []

    def open_or_fail(*args, **kwargs):
        opens.append(1)
        if len(opens) == failing:  # the start-up's, the follower's, the webhooks' store
            raise StoreError("made to fail")
        return open_log(*args, **kwargs)

    monkeypatch.setattr(app_module, "open_log", open_or_fail)
    with pytest.raises(StoreError, match="made to fail") as failed:
        with TestClient(create_app(store_path, follow=True)):
            pass
    mine = os.path.realpath(store_path)  # the store, its -wal, -shm and .inbox files
    assert [f for f in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{f}").startswith(mine)] == []
    # Counted while the error is still held (as a caller logging it holds it).
    assert str(failed.value) == "made to fail"
