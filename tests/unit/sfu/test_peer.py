"""Peer's `layer_changed`: the subscriber hears when what it receives differs from what it was told."""

from __future__ import annotations

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
