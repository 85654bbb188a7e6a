"""The Firefox tier runs on both data paths, like tests/e2e/browser: every server a test starts
forwards natively in one run and in Python in the other. Its pages are windows of one shared Firefox
ESR process, driven over WebDriver BiDi (tests/support/firefox.py)."""

from __future__ import annotations

import pytest

from tests.support.firefox import firefox, firefox_process  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def data_path(each_data_path: str) -> str:
    return each_data_path
