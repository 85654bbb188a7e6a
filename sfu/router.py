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
    from sfu.cascade import Cascade
    from sfu.downtrack import DownTrack
    from sfu.track import Layer, PublishedTrack

log = logging.getLogger("basement.router")


class _Elsewhere:
    """A participant on another node of a room that spans nodes, as sfu.pairing counts it."""

    p2p = False

    def __init__(self, participant_id: str) -> None:
        self.id = participant_id


class Router:
    def __init__(self, room: str, broadcast: Callable[[dict[str, Any]], None], speaker_interval: float = 0.5,
                 presence_batch_above: int = PRESENCE_BATCH_ABOVE, presence_interval: float = PRESENCE_INTERVAL,
                 cascade: Cascade | None = None):
        self.name = room
        self._send = broadcast  # event to every peer of the room
        self.peers: dict[str, Peer] = {}
        # a room spanning nodes (sfu.cascade): the other nodes' participants, and their tracks as
        # relayed here; the cascade hears what happens here
        self.cascade = cascade
        self.remote: dict[str, ParticipantInfo] = {}
        self.relayed: dict[str, PublishedTrack[DownTrack]] = {}
        self.presence = Presence(broadcast, lambda: len(self.peers), presence_batch_above, presence_interval)
        self.selector = LayerSelector(self._notify)
        self.selector.start(lambda: self.tracks)
        self.speaker = ActiveSpeaker(self._speaker_changed, interval=speaker_interval)
        self.speaker.start()
        # sfu.peer.Room: the speaker's own method, so an audio packet makes no hop through the Router
        self.observe_audio: Callable[[str, int, float], None] = self.speaker.observe
        self.data = DataRelay()
        if cascade is not None:
            self.data.remote_recipients = self._remote_recipients
            self.data.forward = lambda label, msg: cascade.local_data(room, label, msg)
        self.pairing = Pairing()

    def _notify(self, participant_id: str, msg: dict[str, Any]) -> None:
        peer = self.peers.get(participant_id)
        if peer is not None:
            peer.emit(msg)
        elif msg.get("type") == "dynacast" and self.cascade is not None and msg.get("track") in self.relayed:
            # the publisher is on another node: what this node's subscribers need goes there
            self.cascade.needs(self.name, msg["track"], msg)

    def _remote_recipients(self, to: list[str]) -> int:
        return sum(1 for p in to if p in self.remote) if to else len(self.remote)

    def name_of(self, participant_id: str) -> str:
        peer = self.peers.get(participant_id)
        if peer is not None:
            return peer.name
        remote = self.remote.get(participant_id)
        return remote["name"] if remote else ""

    @property
    def tracks(self) -> list[PublishedTrack[DownTrack]]:
        local = [rec for peer in self.peers.values() for rec in peer.tracks]
        return [*local, *self.relayed.values()] if self.relayed else local

    @property
    def size(self) -> int:
        """Participants in the room, on this node and on the others it spans."""
        return len(self.peers) + len(self.remote)

    def participants(self, exclude: str | None = None) -> list[ParticipantInfo]:
        local = [p.public() for p in self.peers.values() if p.id != exclude]
        return [*local, *self.remote.values()] if self.remote else local

    def broadcast(self, msg: dict[str, Any]) -> None:
        """An event to every peer of the room, after any presence still waiting (sfu.presence)."""
        self.presence.flush()
        self._send(msg)

    def add_peer(self, peer: Peer) -> None:
        self.presence.joined(peer.public())
        if self.cascade is not None:
            self.cascade.local_joined(self.name, peer.public())
        self.peers[peer.id] = peer
        self.data.add(peer.data)
        for rec in self.tracks:
            if rec.participant_id != peer.id:
                peer.subscribe(rec)
        self._pair()

    def _pair(self) -> None:
        """Pair or unpair the room for peer-to-peer media (sfu.pairing), after presence went out."""
        if self.pairing.pair is None and self.size != 2:
            return  # (no list of a large room's peers on each of its joins and leaves)
        peers: list[Any] = list(self.peers.values())
        # participants on other nodes count, but cannot pair: a room spanning nodes never goes direct
        peers += [_Elsewhere(pid) for pid in self.remote]
        messages = self.pairing.update(peers)
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
        if self.cascade is not None:
            self.cascade.local_published(self.name, rec, publisher.name)

    def initial_layer(self, rec: PublishedTrack[DownTrack], dt: DownTrack) -> Layer | None:
        return self.selector.initial_layer(rec, dt)

    def on_estimate(self, subscriber: Peer, bitrate: int, downtracks: list[DownTrack], scope: tuple[int, ...]) -> None:
        # an estimate naming none of the DownTracks (transport-wide, or a REMB naming none of ours) is
        # for the subscriber's whole downlink
        self.selector.on_estimate(subscriber.id, downtracks or subscriber.downtracks.values(), bitrate, scope)

    # --------------------------------------------------------------------------------------------
    async def remove_peer(self, peer: Peer, reason: str = "left") -> None:
        self.peers.pop(peer.id, None)
        self.data.remove(peer.data)
        track_ids = [rec.id for rec in peer.tracks]
        for rec in peer.tracks:
            self.track_ended(peer.id, rec)
        self.presence.left(peer.id, reason)
        if self.cascade is not None:
            self.cascade.local_left(self.name, peer.id, reason)
        self._pair()
        await peer.close()
        # after close: until then its audio still arrives and would re-add it to the speaker state
        self.speaker.forget(peer.id)
        self.selector.forget(peer.id, track_ids)

    def track_ended(self, publisher_id: str, rec: PublishedTrack[DownTrack]) -> None:
        """A local publisher's track is gone (it left, unpublished, or its connection failed): its
        subscribers here unsubscribe, everyone hears it, and so do the room's other nodes."""
        for other in list(self.peers.values()):
            if other.id != publisher_id:
                other.unsubscribe(rec.id)
        self.broadcast({"type": "track_unpublished", "track": rec.id, "participant": publisher_id})
        if self.cascade is not None:
            self.cascade.local_unpublished(self.name, rec.id)

    def track_muted(self, publisher_id: str, rec: PublishedTrack[DownTrack], muted: bool) -> None:
        self.broadcast({"type": "track_muted", "track": rec.id, "participant": publisher_id, "muted": muted})
        if self.cascade is not None:
            self.cascade.local_muted(self.name, rec.id, muted)

    # --- the room's other nodes (sfu.cascade) -----------------------------------------------------
    def remote_joined(self, info: ParticipantInfo) -> None:
        self.remote[info["id"]] = info
        self.presence.joined(info)
        self._pair()

    def remote_left(self, participant_id: str, reason: str) -> None:
        if self.remote.pop(participant_id, None) is not None:
            self.presence.left(participant_id, reason)
            self.speaker.forget(participant_id)
            self._pair()

    def add_relayed(self, rec: PublishedTrack[DownTrack], name: str) -> None:
        """A track published on another node, received here over a relay: subscribed as a local one."""
        self.relayed[rec.id] = rec
        for peer in self.peers.values():
            peer.subscribe(rec)
        self.broadcast({"type": "track_published", "track": {**rec.info(), "name": name}})

    def remove_relayed(self, rec: PublishedTrack[DownTrack]) -> None:
        if self.relayed.pop(rec.id, None) is None:
            return
        for peer in list(self.peers.values()):
            peer.unsubscribe(rec.id)
        self.broadcast({"type": "track_unpublished", "track": rec.id, "participant": rec.participant_id})
        self.selector.forget(rec.participant_id, [rec.id])

    def relayed_muted(self, rec: PublishedTrack[DownTrack], muted: bool) -> None:
        rec.set_muted(muted)
        self.broadcast({"type": "track_muted", "track": rec.id, "participant": rec.participant_id, "muted": muted})

    def close(self) -> None:
        self.presence.close()
        self.speaker.stop()
        self.selector.stop()

    def _speaker_changed(self, participant: str | None) -> None:
        self.selector.speaker = participant  # (the next round shares budgets with it first)
        self.broadcast({"type": "active_speaker", "participant": participant})
