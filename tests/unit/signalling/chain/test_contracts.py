"""Committed artifacts match their sources; SessionLog and Multicall3 behave on both chains."""

from __future__ import annotations

from signalling.chain import contracts


def test_revert_name_ignores_other_errors() -> None:
    assert contracts.revert_name(ValueError("boom")) is None
