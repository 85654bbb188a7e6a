"""ICE consent freshness (sfu.consent) on two real aioice connections over loopback, with the
intervals scaled down: a check retransmits and consent lasts EXPIRY_S after the last answered check,
where aioice's own check (one request, no retransmission, six failures and the connection is closed)
kills a connection whose peer answers late."""

from __future__ import annotations

import asyncio
from typing import Any

import aioice
import pytest

from sfu import consent
from sfu import transport as tr
from sfu.metrics import STATS
from tests.support.ice_pair import ice_pair

RTO = 0.02  # STUN's first retransmission timeout, scaled down from 0.5 s with the intervals


async def _connected() -> tuple[Any, Any]:
    a, b = await ice_pair()
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)  # a hang guard only
    return a, b


def _answers_only_retransmissions(peer: Any) -> list[int]:
    """From now on `peer` ignores the first transmission of every check it gets (as a peer whose
    loop lags past the first timeout would); returns the list of checks it answered."""
    seen: set[bytes] = set()
    answered: list[int] = []
    original = peer.request_received

    def late(message: Any, addr: Any, protocol: Any) -> None:
        if message.transaction_id not in seen:
            seen.add(message.transaction_id)
            return
        answered.append(1)
        original(message, addr, protocol)

    peer.request_received = late
    return answered


@pytest.fixture
def scaled(monkeypatch: pytest.MonkeyPatch) -> None:
    tr._install()
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", RTO)
    monkeypatch.setattr(consent, "INTERVAL_S", 0.05)
    monkeypatch.setattr(consent, "EXPIRY_S", 0.6)
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.05)  # (aioice's own, for the contrast)


async def test_a_peer_that_answers_only_retransmitted_checks_keeps_its_consent(scaled: None) -> None:
    a, b = await _connected()
    try:
        answered = _answers_only_retransmissions(b)
        await asyncio.sleep(1.5)  # 2.5 expiries, ~25 checks
        assert len(answered) >= 10  # the checks went on and were answered after a retransmission
        assert not a._closed and a._query_consent_task is not None
        await a.send(b"still connected")
        assert await asyncio.wait_for(b.recv(), 5) == b"still connected"
    finally:
        await a.close()
        await b.close()


async def test_aioice_alone_closes_that_same_connection(scaled: None) -> None:
    """The contrast, and why sfu.consent exists: aioice's check sends once and gives up."""
    a, b = await _connected()
    a._query_consent_task.cancel()
    a._query_consent_task = asyncio.ensure_future(tr._ORIGINAL_QUERY_CONSENT(a))
    try:
        _answers_only_retransmissions(b)
        await asyncio.wait_for(_closed(a), 30)  # a hang guard only
        assert not getattr(a, "_basement_consent_expired", False)
    finally:
        await a.close()
        await b.close()


async def _closed(connection: Any) -> None:
    while not isinstance(await connection.get_event(), aioice.ConnectionClosed):
        pass


async def test_consent_expires_when_no_check_is_answered_for_expiry_s(scaled: None) -> None:
    a, b = await _connected()
    before = STATS.consent_expired
    loop = asyncio.get_running_loop()
    answering = True
    last_answer = loop.time()
    original = b.request_received

    def until_gone(message: Any, addr: Any, protocol: Any) -> None:
        nonlocal last_answer
        if answering:
            last_answer = loop.time()
            original(message, addr, protocol)

    b.request_received = until_gone
    try:
        await asyncio.sleep(0.3)  # a few checks answered
        answering = False  # the peer is gone
        await asyncio.wait_for(_closed(a), 30)  # a hang guard only
        # not before consent lasts after the last answered check
        assert loop.time() - last_answer >= consent.EXPIRY_S
        assert a._basement_consent_expired and STATS.consent_expired == before + 1
        assert a._query_consent_task is None
    finally:
        await a.close()
        await b.close()
