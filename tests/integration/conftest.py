"""The integration tier runs on both data paths: every server a test starts forwards with the native
extension in one run and with the pure-Python twin in the other (sfu.datapath)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sfu import datapath
from tests.support import servers


@pytest.fixture(autouse=True, params=datapath.NAMES)
def data_path(request: pytest.FixtureRequest) -> Iterator[str]:
    before = servers.DATAPATH["default"]
    servers.DATAPATH["default"] = request.param
    yield request.param
    servers.DATAPATH["default"] = before
