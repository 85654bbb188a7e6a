"""Pairing: a room of exactly two participants whose media goes peer to peer (issue 18).

When a room holds exactly two peers and both may go direct (the room allows it and their clients
said they can: `join` with `p2p`), they are paired: each hears `{"type": "p2p", "state": "on",
"peer": <the other>, "offerer": bool}` and the two connect to each other, with the SFU relaying
only their signalling (`p2p_signal`). Their connections to the SFU stay up and stand by, so when a
third joins both hear `{"type": "p2p", "state": "off", "reason": "joined"}` and send through the
SFU again at once, before they drop the direct connection (make-before-break). When the room is
down to two again they are paired again; a pair whose other half left hears `reason: "left"`.

Sans-IO: `update` takes the room's peers in join order and returns the messages to send.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Pairable(Protocol):
    id: str
    p2p: bool  # the room allows it and the client can


class Pairing:
    def __init__(self) -> None:
        self.pair: tuple[str, str] | None = None  # (offerer, answerer) while paired

    def paired(self, a: str, b: str) -> bool:
        return self.pair is not None and {a, b} == set(self.pair)

    def update(self, peers: Sequence[Pairable]) -> list[tuple[str, dict[str, Any]]]:
        """(participant id, message) to send after the room's membership changed."""
        out: list[tuple[str, dict[str, Any]]] = []
        ids = [p.id for p in peers]
        if self.pair is not None:
            if len(peers) == 2 and set(ids) == set(self.pair) and all(p.p2p for p in peers):
                return out  # the same two: nothing changes
            reason = "joined" if len(peers) > 2 else "left"
            out += [(pid, {"type": "p2p", "state": "off", "reason": reason}) for pid in self.pair if pid in ids]
            self.pair = None
        if len(peers) == 2 and all(p.p2p for p in peers):
            # the one that was there first offers (it has been publishing longest; any fixed rule
            # that both ends agree on avoids two offers crossing)
            offerer, answerer = ids
            self.pair = (offerer, answerer)
            out += [(offerer, {"type": "p2p", "state": "on", "peer": answerer, "offerer": True}),
                    (answerer, {"type": "p2p", "state": "on", "peer": offerer, "offerer": False})]
        return out
