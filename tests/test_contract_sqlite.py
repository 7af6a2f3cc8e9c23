"""The store and view contract on a SQLite file."""

from __future__ import annotations

import pytest

from tests.contract import ProviderContract, RebuildIntoContract, StoreContract


class TestSQLiteStore(StoreContract, RebuildIntoContract, ProviderContract):
    @pytest.fixture
    def store_url(self, tmp_path):
        return f"sqlite:///{tmp_path}/contract.db"
