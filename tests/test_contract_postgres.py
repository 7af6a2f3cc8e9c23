"""The store and view contract on PostgreSQL (FLOWLEDGER_TEST_POSTGRES, default the local
server's `test` database); each test gets a schema of its own. Skipped, saying why, where no
server is reachable.
"""

from __future__ import annotations

import os
import uuid

import pytest

from tests.contract import StoreContract

POSTGRES = os.environ.get("FLOWLEDGER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _reachable() -> str | None:
    try:
        import psycopg

        from flowledger.store.postgres import parse_url

        s = parse_url(POSTGRES)
        psycopg.connect(dbname=s["dbname"], host=s["host"], port=s["port"], user=s["user"], password=s["password"], connect_timeout=3).close()
    except Exception as e:  # noqa: BLE001  # any failure means: no server to test against
        return f"no PostgreSQL at {POSTGRES}: {e}"
    return None


_WHY = _reachable()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")


@pytest.fixture
def postgres_url():
    import psycopg

    from flowledger.store.postgres import parse_url

    schema = "fl_test_" + uuid.uuid4().hex[:10]
    yield f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}schema={schema}"
    s = parse_url(POSTGRES)
    with psycopg.connect(dbname=s["dbname"], host=s["host"], port=s["port"], user=s["user"], password=s["password"], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store_url(self, postgres_url):
        return postgres_url
