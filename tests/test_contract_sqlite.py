"""The store and view contract on a SQLite file."""

from __future__ import annotations

import pytest

from tests.contract import RebuildIntoContract, StoreContract


class TestSQLiteStore(StoreContract, RebuildIntoContract):
    @pytest.fixture
    def store_url(self, tmp_path):
        return f"sqlite:///{tmp_path}/contract.db"
