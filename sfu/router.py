"""Router: one room on the media plane — who publishes what, and who receives it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sfu.layers import LayerSelector
from sfu.peer import Peer
from sfu.receiver import Receiver
from sfu.speaker import ActiveSpeaker

log = logging.getLogger("basement.router")


class Router:
    def __init__(self, room: str, broadcast: Callable[[dict[str, Any]], None], speaker_interval: float = 0.5):
        self.room = room
        self.broadcast = broadcast  # event to every peer of the room
        self.peers: dict[str, Peer] = {}
        self.selector = LayerSelector(self._notify)
        self.selector.start(lambda: self.tracks)
        self.speaker = ActiveSpeaker(self._speaker_changed, interval=speaker_interval)
        self.speaker.start()

    def _notify(self, participant_id: str, msg: dict[str, Any]) -> None:
        peer = self.peers.get(participant_id)
        if peer is not None:
            peer.emit(msg)

    def name_of(self, participant_id: str) -> str:
        peer = self.peers.get(participant_id)
        return peer.name if peer else ""

    @property
    def tracks(self) -> list[Receiver]:
        return [rec for peer in self.peers.values() for rec in peer.tracks]

    def participants(self, exclude: str | None = None) -> list[dict[str, Any]]:
        return [p.public() for p in self.peers.values() if p.id != exclude]

    def add_peer(self, peer: Peer) -> None:
        self.broadcast({"type": "participant_joined", "participant": peer.public()})
        self.peers[peer.id] = peer
        for rec in self.tracks:
            if rec.participant_id != peer.id:
                peer.subscribe(rec)

    def add_track(self, publisher: Peer, rec: Receiver) -> None:
        """A new published track: everyone else subscribes, everyone hears about it."""
        for peer in self.peers.values():
            if peer.id != publisher.id:
                peer.subscribe(rec)
        self.broadcast({"type": "track_published", "track": {**rec.info(), "name": publisher.name}})

    async def remove_peer(self, peer: Peer, reason: str = "left") -> None:
        self.peers.pop(peer.id, None)
        track_ids = [rec.id for rec in peer.tracks]
        for rec in peer.tracks:
            for other in self.peers.values():
                other.unsubscribe(rec.id)
            self.broadcast({"type": "track_unpublished", "track": rec.id, "participant": peer.id})
        self.broadcast({"type": "participant_left", "participant": peer.id, "reason": reason})
        await peer.close()
        # after close: until then its audio still arrives and would re-add it to the speaker state
        self.speaker.forget(peer.id)
        self.selector.forget(peer.id, track_ids)

    def close(self) -> None:
        self.speaker.stop()
        self.selector.stop()

    def _speaker_changed(self, participant: str | None) -> None:
        self.broadcast({"type": "active_speaker", "participant": participant})
