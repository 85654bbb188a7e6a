"""Router: one room on the media plane — who publishes what, and who receives it.

It is the `sfu.peer.Room` its Peers call back into, and it owns the room's LayerSelector,
ActiveSpeaker, DataRelay (data channel messages) and Presence (who joined and left); Peers never
reach those directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sfu.api import MediaError, ParticipantInfo
from sfu.data import DataRelay
from sfu.layers import LayerSelector
from sfu.pairing import Pairing
from sfu.peer import Peer
from sfu.presence import BATCH_ABOVE as PRESENCE_BATCH_ABOVE
from sfu.presence import INTERVAL as PRESENCE_INTERVAL
from sfu.presence import Presence
from sfu.speaker import ActiveSpeaker

if TYPE_CHECKING:
    from sfu.downtrack import DownTrack
    from sfu.track import Layer, PublishedTrack

log = logging.getLogger("basement.router")


class Router:
    def __init__(self, room: str, broadcast: Callable[[dict[str, Any]], None], speaker_interval: float = 0.5,
                 presence_batch_above: int = PRESENCE_BATCH_ABOVE, presence_interval: float = PRESENCE_INTERVAL):
        self.name = room
        self._send = broadcast  # event to every peer of the room
        self.peers: dict[str, Peer] = {}
        self.presence = Presence(broadcast, lambda: len(self.peers), presence_batch_above, presence_interval)
        self.selector = LayerSelector(self._notify)
        self.selector.start(lambda: self.tracks)
        self.speaker = ActiveSpeaker(self._speaker_changed, interval=speaker_interval)
        self.speaker.start()
        # sfu.peer.Room: the speaker's own method, so an audio packet makes no hop through the Router
        self.observe_audio: Callable[[str, int, float], None] = self.speaker.observe
        self.data = DataRelay()
        self.pairing = Pairing()

    def _notify(self, participant_id: str, msg: dict[str, Any]) -> None:
        peer = self.peers.get(participant_id)
        if peer is not None:
            peer.emit(msg)

    def name_of(self, participant_id: str) -> str:
        peer = self.peers.get(participant_id)
        return peer.name if peer else ""

    @property
    def tracks(self) -> list[PublishedTrack[DownTrack]]:
        return [rec for peer in self.peers.values() for rec in peer.tracks]

    def participants(self, exclude: str | None = None) -> list[ParticipantInfo]:
        return [p.public() for p in self.peers.values() if p.id != exclude]

    def broadcast(self, msg: dict[str, Any]) -> None:
        """An event to every peer of the room, after any presence still waiting (sfu.presence)."""
        self.presence.flush()
        self._send(msg)

    def add_peer(self, peer: Peer) -> None:
        self.presence.joined(peer.public())
        self.peers[peer.id] = peer
        self.data.add(peer.data)
        for rec in self.tracks:
            if rec.participant_id != peer.id:
                peer.subscribe(rec)
        self._pair()

    def _pair(self) -> None:
        """Pair or unpair the room for peer-to-peer media (sfu.pairing), after presence went out."""
        if self.pairing.pair is None and len(self.peers) != 2:
            return  # (no list of a large room's peers on each of its joins and leaves)
        messages = self.pairing.update(list(self.peers.values()))
        if messages:
            self.presence.flush()
        for pid, msg in messages:
            self._notify(pid, msg)

    def relay(self, sender: str, to: str, data: dict[str, Any]) -> None:
        """A paired peer's signalling for its direct connection, to the other of the pair."""
        if not self.pairing.paired(sender, to):
            raise MediaError("not_paired", f"{to!r} is not your peer-to-peer partner in this room (any more)")
        self._notify(to, {"type": "p2p_signal", "from": sender, "data": data})

    # --- sfu.peer.Room: what Peers call ---------------------------------------------------------
    def add_track(self, publisher: Peer, rec: PublishedTrack[DownTrack]) -> None:
        """A new published track: everyone else subscribes, everyone hears about it."""
        for peer in self.peers.values():
            if peer.id != publisher.id:
                peer.subscribe(rec)
        self.broadcast({"type": "track_published", "track": {**rec.info(), "name": publisher.name}})

    def initial_layer(self, rec: PublishedTrack[DownTrack], dt: DownTrack) -> Layer | None:
        return self.selector.initial_layer(rec, dt)

    def on_remb(self, subscriber: Peer, bitrate: int, downtracks: list[DownTrack], scope: tuple[int, ...]) -> None:
        # a REMB naming none of the DownTracks is taken for the subscriber's whole downlink
        self.selector.on_remb(subscriber.id, downtracks or subscriber.downtracks.values(), bitrate, scope)

    # --------------------------------------------------------------------------------------------
    async def remove_peer(self, peer: Peer, reason: str = "left") -> None:
        self.peers.pop(peer.id, None)
        self.data.remove(peer.data)
        track_ids = [rec.id for rec in peer.tracks]
        for rec in peer.tracks:
            for other in self.peers.values():
                other.unsubscribe(rec.id)
            self.broadcast({"type": "track_unpublished", "track": rec.id, "participant": peer.id})
        self.presence.left(peer.id, reason)
        self._pair()
        await peer.close()
        # after close: until then its audio still arrives and would re-add it to the speaker state
        self.speaker.forget(peer.id)
        self.selector.forget(peer.id, track_ids)

    def close(self) -> None:
        self.presence.close()
        self.speaker.stop()
        self.selector.stop()

    def _speaker_changed(self, participant: str | None) -> None:
        self.broadcast({"type": "active_speaker", "participant": participant})
