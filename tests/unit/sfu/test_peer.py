"""Peer's `layer_changed`: the subscriber hears when what it receives differs from what it was told."""

from __future__ import annotations

import asyncio
import types

from sfu.peer import Peer


def _peer() -> tuple[Peer, list[dict]]:
    sent: list[dict] = []
    return Peer("PA_s", "s", types.SimpleNamespace(observe_audio=None), emit=sent.append), sent


def test_a_switch_is_reported_and_a_first_layer_is_not():
    peer, sent = _peer()
    dt = types.SimpleNamespace(track=types.SimpleNamespace(id="TR_v"), target_reason="requested")
    peer._layer_changed(dt, None, "f")  # a subscription's first layer: the offer said which track
    peer._layer_changed(dt, "f", "q")
    peer._layer_changed(dt, "q", "q")
    assert sent == [{"type": "layer_changed", "track": "TR_v", "layer": "q", "reason": "requested"}]


def test_a_first_layer_other_than_the_one_a_subscription_reply_named_is_reported():
    """A `subscription` reply names the target ("f", the only layer arriving then); the target moved
    to q before any f was forwarded, so the first layer forwarded is q: the subscriber must hear it
    (a Firefox test waited 30 s for a layer_changed that never came)."""
    peer, sent = _peer()
    dt = types.SimpleNamespace(track=types.SimpleNamespace(id="TR_v"), target_reason="requested")
    peer.told_layer("TR_v", "f")
    peer._layer_changed(dt, None, "q")
    assert sent == [{"type": "layer_changed", "track": "TR_v", "layer": "q", "reason": "requested"}]
    peer.told_layer("TR_v", "q")
    peer._layer_changed(dt, None, "q")  # (a resume on the layer it was told: nothing new)
    assert len(sent) == 1


class _SlowOffers:
    """A subscribe transport whose offers take until the test lets them finish (aiortc's createOffer
    and setLocalDescription yield to the loop)."""

    ended = False

    def __init__(self) -> None:
        self.signaling_state = "stable"
        self.offers: list[asyncio.Future[str]] = []

    async def create_offer(self) -> str:
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.offers.append(done)
        sdp = await done
        self.signaling_state = "have-local-offer"
        return sdp

    async def accept_answer(self, sdp: str) -> None:
        self.signaling_state = "stable"

    def reactivate(self, slot: object) -> None:
        pass


def _downtrack(track_id: str, mid: str) -> types.SimpleNamespace:
    track = types.SimpleNamespace(id=track_id, participant_id="PA_p", info=lambda: {"track": track_id})
    return types.SimpleNamespace(track=track, slot=types.SimpleNamespace(transceiver=types.SimpleNamespace(mid=mid)))


async def test_a_change_while_the_offer_is_being_made_gets_an_offer_of_its_own():
    """A track subscribed while the subscribe offer is being made is not in that offer: it must get
    the next one (the flake of test_workers: a second track arriving during the await was never
    offered, because the offer cleared the 'dirty' mark its subscription had set)."""
    peer, sent = _peer()
    peer.room.name_of = lambda pid: pid
    transport = peer.subscriber = _SlowOffers()  # type: ignore[assignment]
    peer.downtracks["TR_a"] = _downtrack("TR_a", "0")
    peer.request_negotiation()
    await asyncio.sleep(0)
    assert len(transport.offers) == 1
    # (what subscribe() does for a second track, here on a recycled m-line: its mid is known)
    peer.downtracks["TR_b"] = _downtrack("TR_b", "1")
    peer.request_negotiation()
    transport.offers[0].set_result("v=0 first")
    await asyncio.sleep(0)
    assert [m["sdp"] for m in sent] == ["v=0 first"]
    assert list(sent[0]["tracks"]) == ["0"], "the offer names a track its SDP was made without"
    await peer.subscriber_answer("v=0 answer")
    await asyncio.sleep(0)
    assert len(transport.offers) == 2, "the change made during the first offer was never offered"
    transport.offers[1].set_result("v=0 second")
    await asyncio.sleep(0)
    assert [m["sdp"] for m in sent] == ["v=0 first", "v=0 second"]
    assert sorted(sent[1]["tracks"]) == ["0", "1"]
    await peer.subscriber_answer("v=0 answer")
    await asyncio.sleep(0)
    assert len(transport.offers) == 2  # nothing changed since: no third offer
