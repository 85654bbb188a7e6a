"""Pairing (sfu/pairing.py): which two participants go peer to peer, and what each is told."""

from __future__ import annotations

from dataclasses import dataclass

from sfu.pairing import Pairing


@dataclass
class P:
    id: str
    p2p: bool = True


def test_two_that_can_are_paired_the_first_offers_and_a_third_unpairs_them():
    pairing = Pairing()
    a, b, c = P("a"), P("b"), P("c")
    assert pairing.update([a]) == []
    assert pairing.update([a, b]) == [
        ("a", {"type": "p2p", "state": "on", "peer": "b", "offerer": True}),
        ("b", {"type": "p2p", "state": "on", "peer": "a", "offerer": False})]
    assert pairing.paired("a", "b") and pairing.paired("b", "a") and not pairing.paired("a", "c")
    assert pairing.update([a, b]) == []  # nothing changed: nothing said
    assert pairing.update([a, b, c]) == [("a", {"type": "p2p", "state": "off", "reason": "joined"}),
                                         ("b", {"type": "p2p", "state": "off", "reason": "joined"})]
    assert not pairing.paired("a", "b")
    # c leaves: a and b again (a, first in the room, offers again)
    assert [pid for pid, _ in pairing.update([a, b])] == ["a", "b"]
    # b leaves: a is told its partner left
    assert pairing.update([a]) == [("a", {"type": "p2p", "state": "off", "reason": "left"})]
    # a new second participant pairs with a at once
    assert pairing.update([a, c])[0] == ("a", {"type": "p2p", "state": "on", "peer": "c", "offerer": True})


def test_one_that_cannot_keeps_both_on_the_sfu():
    pairing = Pairing()
    assert pairing.update([P("a"), P("b", p2p=False)]) == []
    assert pairing.update([P("a", p2p=False), P("b")]) == []
    assert pairing.pair is None
