"""A cancellation key scoped to a tenant: `cancel --key K --tenant T` and POST
/v1/cancellations with `tenant` cancel only that tenant's unfinished runs with the key (a
key such as an order number may be another tenant's too); without it, every tenant's, as
before. On both backends (the store contract, tests/contract.py, runs the library call on each)."""

from __future__ import annotations

import orjson
import pytest

from tests.contract import tenant_keyed_runs as _runs
from tests.test_api import api, h  # noqa: F401 (a fixture)
from tests.test_cli import run  # noqa: F401 (a fixture)


def test_cancel_key_tenant_on_the_command_line(run):
    run("append", input="\n".join(orjson.dumps(e).decode() for e in _runs()))
    result = run("cancel", "--key", "order-7", "--tenant", "globex", "--reason", "refunded")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Cancelled 1 run(s) with cancellation_key 'order-7' of tenant 'globex': b1\n"
    shown = orjson.loads(run("cancel", "--key", "order-7", "--tenant", "acme", "--json").stdout)
    assert shown == {"cancellation_key": "order-7", "tenant": "acme", "cancelled": ["a1", "a2"]}
    none = run("cancel", "--key", "order-7", "--tenant", "acme")
    assert none.stdout == "Cancelled 0 run(s) with cancellation_key 'order-7' of tenant 'acme'.\n"
    assert orjson.loads(run("cancel", "--key", "order-7", "--json").stdout) == {"cancellation_key": "order-7", "cancelled": ["n1"]}


@pytest.mark.parametrize(
    "args, says",
    [
        (["r1", "--tenant", "acme"], "--tenant goes with --key"),
        (["--key", "order-7", "--tenant", "  "], "--tenant"),
        (["--key", "order-7", "--tenant", ""], "--tenant"),
        (["--key", "order-7", "--tenant", "a\tb"], "--tenant"),
        (["--key", "order-7", "--tenant", "t" * 256], "--tenant"),
    ],
)
def test_a_tenant_without_a_key_or_no_tenants_id_is_refused_and_cancels_nothing(run, args, says):
    run("append", input="\n".join(orjson.dumps(e).decode() for e in _runs()))
    result = run("cancel", *args)
    assert result.exit_code == 2 and says in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    statuses = orjson.loads(run("runs", "list", "--json", "--status", "cancelled").stdout)["entries"]
    assert statuses == []


def test_cancellations_with_a_tenant_through_the_api(api):
    assert api.post("/v1/events", json=_runs(), headers=h(api, "write")).status_code == 200
    r = api.post("/v1/cancellations", json={"key": "order-7", "tenant": "acme"}, headers=h(api, "admin"))
    assert (r.status_code, r.json()) == (200, {"cancellation_key": "order-7", "tenant": "acme", "cancelled": ["a1", "a2"]})
    for bad in ("", "  ", "a\nb", "t" * 256, 7):
        r = api.post("/v1/cancellations", json={"key": "order-7", "tenant": bad}, headers=h(api, "admin"))
        assert r.status_code == 422 and "tenant" in str(r.json()), (bad, r.json())
    r = api.post("/v1/cancellations", json={"key": "order-7"}, headers=h(api, "admin"))
    assert r.json() == {"cancellation_key": "order-7", "cancelled": ["b1", "n1"]}
