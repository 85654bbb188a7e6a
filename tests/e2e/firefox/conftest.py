"""The Firefox tier runs on both data paths, like tests/e2e/browser: every server a test starts
forwards natively in one run and in Python in the other. Its pages are windows of one shared Firefox
ESR process, driven over WebDriver BiDi (tests/support/firefox.py)."""

from __future__ import annotations

import pytest

from sfu.layers import LayerSelector
from tests.support.firefox import firefox, firefox_process  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def data_path(each_data_path: str) -> str:
    return each_data_path


@pytest.fixture(autouse=True)
def subscribers_estimates_out_of_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """These cases are about browsers understanding each other (decoding the size and rate asked
    for, the server reading each layer's media rate), not about bandwidth estimation: the server
    ignores the subscribers' REMB here, as the Chromium simulcast tests silence aiortc's. A browser's
    receive-side estimate swings in a CPU-starved test box, and the selector, which has no backoff
    after a downgrade yet (issue 15), then moves a subscriber between layers within seconds."""
    monkeypatch.setattr(LayerSelector, "on_estimate", lambda self, subscriber_id, downtracks, bitrate, scope=(): None)
