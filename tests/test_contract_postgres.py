"""The store and view contract on PostgreSQL (FLOWLEDGER_TEST_POSTGRES, default the local
server's `test` database); each test gets a schema of its own. Skipped, saying why, where no
server is reachable.
"""

from __future__ import annotations

import pytest

from tests.conftest import POSTGRES_UNREACHABLE
from tests.contract import ProviderContract, RebuildIntoContract, StoreContract

pytestmark = pytest.mark.skipif(POSTGRES_UNREACHABLE is not None, reason=POSTGRES_UNREACHABLE or "")


class TestPostgresStore(StoreContract, RebuildIntoContract, ProviderContract):
    @pytest.fixture
    def store_url(self, postgres_url):
        return postgres_url
