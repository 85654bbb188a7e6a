"""The test tiers: shared fixtures come from tests/support as plugins, and every test is marked by the
directory it lives in, so `-m` selects a tier (`make test-fast` is `pytest tests/unit`)."""

from __future__ import annotations

from pathlib import Path

import pytest

# Plugins rather than `import *`: fixtures are found by name wherever a test lives, and a test module
# imports only the helpers it calls.
pytest_plugins = [
    "tests.support.servers",
    "tests.support.chainfix",
    "tests.support.sessionfix",
    "tests.support.clusterfix",
    "tests.support.workersfix",
    "tests.support.memcluster",
    "tests.support.browser",
    "tests.support.ipfsnode",
    "tests.support.pinningservice",
]

HERE = Path(__file__).resolve().parent

# Directory (relative to tests/) -> marker. The most specific prefix wins.
TIERS = {
    ("unit",): "unit",
    ("integration",): "integration",
    ("e2e", "browser"): "browser",
    ("e2e", "firefox"): "firefox",
    ("e2e", "gstreamer"): "gstreamer",
    ("e2e", "cluster"): "cluster",
    ("e2e", "chain"): "chain",
    ("e2e", "bench"): "bench",
    ("fuzz",): "fuzz",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            parts = Path(item.fspath).resolve().relative_to(HERE).parts
        except ValueError:
            continue
        for prefix, marker in sorted(TIERS.items(), key=lambda kv: -len(kv[0])):
            if parts[:len(prefix)] == prefix:
                item.add_marker(getattr(pytest.mark, marker))
                break
