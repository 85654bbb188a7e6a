"""ChainWriter against real chains (embedded eth-tester and anvil) and a real redis-server."""

from __future__ import annotations

from eth_account import Account

from signalling.sessions.writer import (
    WriterKey,
)


def test_writer_key_repr_redacted():
    k = Account.create()
    wk = WriterKey(k.key.hex())
    assert k.key.hex().removeprefix("0x") not in repr(wk) and "redacted" in repr(wk)
