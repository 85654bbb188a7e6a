"""The test tiers: shared fixtures come from tests/support as plugins, and every test is marked by the
directory it lives in, so `-m` selects a tier (`make test-fast` is `pytest tests/unit`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# A pytest-xdist worker (gw0, gw1, …) picks ports for its children from its own slice of the range
# (signalling/ports.py), so that two workers never hand out the same one.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["BASEMENT_PORT_SLICE"] = f"{int(worker.removeprefix('gw'))}/{os.environ['PYTEST_XDIST_WORKER_COUNT']}"

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
    ("e2e", "sip"): "sip",
    ("fuzz",): "fuzz",
}

# What may share the machine (marker `shared`): tests that measure no rate and no frame count against
# a clock, only outcomes (who got in, what was written once, what a parser refused). `make test` runs
# these two at a time (pytest-xdist, one file per worker) and then the rest, which measure media
# against real time (frames decoded per second, a link's share, a recovery in seconds), one at a
# time on an otherwise idle machine. A directory or a file, relative to tests/.
SHARED = {
    ("unit",), ("fuzz",), ("e2e", "chain"), ("e2e", "cluster"),
    *(("integration", f"test_{name}.py") for name in (
        "admin", "hardening_access", "local_wire", "outbox", "pairing", "peer_close", "room_info",
        "span_sessions", "summary", "turn_client")),
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
        if any(parts[:len(prefix)] == prefix for prefix in SHARED):
            item.add_marker(pytest.mark.shared)
    # the long files first, so that the two workers of the shared phase finish together (xdist
    # hands files out in this order); a stable sort: within a file, nothing moves
    items.sort(key=lambda item: next((i for i, p in enumerate(FIRST) if item.nodeid.startswith(p)), len(FIRST)))


FIRST = ("tests/fuzz/", "tests/e2e/cluster/", "tests/e2e/chain/")
