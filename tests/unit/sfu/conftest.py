"""Every media-plane unit test runs on both data paths (sfu.datapath): the pure-Python DownTrack and
its C twin must turn the same packets into the same bytes and the same state."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sfu import datapath


@pytest.fixture(autouse=True, params=datapath.NAMES)
def data_path(request: pytest.FixtureRequest) -> Iterator[str]:
    before = datapath.current()
    datapath.configure(request.param)
    yield request.param
    datapath.configure(before)
