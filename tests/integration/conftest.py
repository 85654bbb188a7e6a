"""The integration tier runs on both data paths: every server a test starts forwards with the native
extension in one run and with the pure-Python twin in the other (`tests.support.servers.each_data_path`)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def data_path(each_data_path: str) -> str:
    return each_data_path
