"""Replay: numbered messages kept for a resume, bounded, freed by acknowledgements."""

from __future__ import annotations

import json

import pytest

from sfu.api import Broadcast
from signalling.protocol.replay import Replay


def test_every_message_is_numbered_in_order_and_stays_json():
    r = Replay()
    texts = [r.frame({"type": "pong"}), r.frame({"type": "paused", "track": "t", "paused": True})]
    assert [json.loads(t) for t in texts] == [{"type": "pong", "n": 1},
                                              {"type": "paused", "track": "t", "paused": True, "n": 2}]


def test_a_room_event_is_encoded_once_for_every_recipient():
    event = Broadcast({"type": "participant_left", "participant": "PA_x", "reason": "left"})
    a, b = Replay(), Replay()
    b.frame({"type": "pong"})
    first = a.frame(event)
    encoded = event.encoded
    second = b.frame(event)
    assert event.encoded is encoded  # not encoded again
    assert json.loads(first)["n"] == 1 and json.loads(second)["n"] == 2


def test_since_gives_what_follows_and_refuses_what_it_cannot_continue_from():
    r = Replay()
    texts = [r.frame({"type": "pong", "i": i}) for i in range(5)]
    assert r.since(5) == []
    assert r.since(3) == texts[3:]
    assert r.since(0) == texts
    assert r.since(6) is None  # never written
    assert r.since(-1) is None
    r.ack(2)
    assert r.since(2) == texts[2:]
    assert r.since(1) is None  # freed: the client said it had read it
    r.ack(99)
    assert r.held == 0 and r.since(5) == []


def test_bounded_by_messages_and_bytes():
    r = Replay(max_messages=3, max_bytes=10_000)
    for i in range(10):
        r.frame({"type": "pong", "i": i})
    assert r.held == 3 and r.since(7) is not None and r.since(6) is None
    r = Replay(max_messages=100, max_bytes=200)
    for _ in range(10):
        r.frame({"type": "offer", "sdp": "x" * 60})
    assert 1 <= r.held <= 2
    big = Replay(max_bytes=10)
    big.frame({"type": "offer", "sdp": "x" * 100})
    assert big.held == 1  # one message over the bound is still kept (the newest is always held)


def test_a_message_with_its_own_n_is_a_programming_error():
    with pytest.raises(ValueError, match="'n'"):
        Replay().frame({"type": "pong", "n": 3})


def test_a_ring_carried_to_another_replica_continues_its_numbers_and_keeps_what_it_held():
    a = Replay()
    texts = [a.frame({"type": "pong", "i": i}) for i in range(5)]
    held = a.export(2)
    assert held == [(3, texts[2]), (4, texts[3]), (5, texts[4])]
    assert a.export(6) is None and a.export(-1) is None
    b = Replay()
    b.restore(a.n, held)
    assert b.since(2) == texts[2:] and b.since(4) == texts[4:] and b.since(1) is None
    assert json.loads(b.frame({"type": "pong"}))["n"] == 6
    # restored within the same bounds as its own
    small = Replay(max_messages=2)
    small.restore(a.n, held)
    assert small.held == 2 and small.since(3) == texts[3:]
