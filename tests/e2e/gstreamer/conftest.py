"""The GStreamer tier runs on both data paths, like tests/integration: every server a test starts
forwards to (and from) webrtcbin natively in one run and in Python in the other."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def data_path(each_data_path: str) -> str:
    return each_data_path
