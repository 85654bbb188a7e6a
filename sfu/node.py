"""SfuNode: the media plane of one process — its rooms (Routers) and participants (Peers).

Signalling drives it through these few async methods (the `sfu.api.MediaNode` Protocol); in the
all-in-one server they are called directly, in a cluster a bus adapter calls them from messages.
Events for a participant leave through `deliver(participant_id, message)`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from sfu.api import (
    AllocationState,
    Broadcast,
    Deliver,
    Joined,
    MediaError,
    MediaNode,
    NamedTrackInfo,
    SubscriptionState,
    TrackInfo,
)
from sfu.metrics import STATS, LabelledGauge, MediaStats
from sfu.peer import Peer
from sfu.presence import BATCH_ABOVE as PRESENCE_BATCH_ABOVE
from sfu.presence import INTERVAL as PRESENCE_INTERVAL
from sfu.router import Router
from sfu.transport import IceConfig

if TYPE_CHECKING:
    from sfu.cascade import Cascade
    from sfu.downtrack import DownTrack
    from sfu.track import PublishedTrack

# why participants leave, as `basement_participants_left` counts them; any other reason is a removal
LEAVE_REASONS = frozenset({"left", "disconnected", "node_lost", "server_shutdown"})

log = logging.getLogger("basement.node")

__all__ = ["Deliver", "SfuNode"]


class SfuNode:
    def __init__(self, deliver: Deliver, speaker_interval: float = 0.5,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None, ice: IceConfig | None = None,
                 rtx_budget: float | None = None, stats: MediaStats = STATS,
                 presence_batch_above: int = PRESENCE_BATCH_ABOVE,
                 presence_interval: float = PRESENCE_INTERVAL) -> None:
        self.deliver = deliver
        self.ice = ice
        self.rtx_budget = rtx_budget  # None: the process default (sfu.downtrack.configure_retransmission)
        # room-level facts for the control plane (session summaries): track_published, media
        self.on_event = on_event
        self.speaker_interval = speaker_interval
        self.presence = (presence_batch_above, presence_interval)  # sfu.presence: large rooms batch it
        self.rooms: dict[str, Router] = {}
        self.peers: dict[str, Peer] = {}
        # rooms spanning this node and others (sfu.cascade), when a control plane links them
        self.cascade: Cascade | None = None
        stats.register_gauges(self.gauges, self.labelled_gauges)

    def _router(self, room: str) -> Router:
        router = self.rooms.get(room)
        if router is None:
            def broadcast(msg: dict[str, Any], room: str = room) -> None:
                r = self.rooms.get(room)
                shared = Broadcast(msg)  # one object to every peer: encoded once (sfu.api.Broadcast)
                for pid in list(r.peers) if r else []:
                    self.deliver(pid, shared)

            router = self.rooms[room] = Router(room, broadcast, self.speaker_interval, *self.presence,
                                               cascade=self.cascade)
        return router

    def open_room(self, room: str) -> Router:
        """The room's Router, made now if this node has none (before its first participant joins,
        when the control plane links it with the room's other nodes first: sfu.cascade)."""
        return self._router(room)

    def close_if_empty(self, room: str) -> None:
        """Close the room here if nobody of it is left on this node."""
        router = self.rooms.get(room)
        if router is not None and not router.peers:
            router.close()
            self.rooms.pop(room, None)
            if self.cascade is not None:
                self.cascade.room_closed(room)

    def _router_of(self, peer: Peer) -> Router:
        # a Peer knows its room only as a `sfu.peer.Room`; the node holds the Router itself
        return self.rooms[peer.room.name]

    def _peer(self, participant_id: str) -> Peer:
        peer = self.peers.get(participant_id)
        if peer is None:
            raise MediaError("not_joined", "this participant has not joined a room on this node")
        return peer

    async def join(self, room: str, participant_id: str, name: str, can_publish: bool = True,
                   can_subscribe: bool = True, identity: str = "", max_participants: int = 0,
                   p2p: bool = False) -> Joined:
        """Add a participant; returns who is already in the room and what they publish."""
        if participant_id in self.peers:
            raise MediaError("already_joined", "this participant has already joined")
        router = self._router(room)
        if max_participants and router.size >= max_participants:
            raise MediaError("room_full", f"room {room!r} has reached {max_participants} participants")
        peer = Peer(participant_id, name, router, lambda msg: self.deliver(participant_id, msg),
                    can_publish, can_subscribe, identity, ice=self.ice, rtx_budget=self.rtx_budget)
        peer.on_tracks_lost = self._tracks_lost
        peer.p2p = p2p
        self.peers[participant_id] = peer
        existing: list[NamedTrackInfo] = [{**rec.info(), "name": router.name_of(rec.participant_id)}
                                          for rec in router.tracks]
        participants = router.participants()
        router.add_peer(peer)
        return {"participants": participants, "tracks": existing}

    async def publish(self, participant_id: str, sdp: Any, sources: dict[str, str] | None = None,
                      encryption: str = "none") -> str:
        peer = self._peer(participant_id)
        before = {rec.id for rec in peer.tracks}
        answer = await peer.publish(sdp, sources, encryption)
        if self.on_event is not None:
            for rec in peer.tracks:
                if rec.id not in before:
                    self.on_event(peer.room.name, {"type": "track_published", "identity": peer.identity,
                                                     "track": rec.id, "kind": rec.kind})
        return answer

    async def unpublish(self, participant_id: str, track_id: str) -> None:
        peer = self._peer(participant_id)
        rec = await peer.unpublish(track_id)
        self._tracks_lost(peer, [rec], forget_speaker=False)  # (it may still be talking)

    async def answer(self, participant_id: str, sdp: Any) -> None:
        await self._peer(participant_id).subscriber_answer(sdp)

    async def candidate(self, participant_id: str, target: str, candidate: Any) -> None:
        await self._peer(participant_id).add_candidate(target, candidate)

    async def restart_ice(self, participant_id: str, target: str) -> None:
        self._peer(participant_id).restart_ice(target)

    async def p2p_signal(self, participant_id: str, to: str, data: dict[str, Any]) -> None:
        peer = self._peer(participant_id)
        self._router_of(peer).relay(participant_id, to, data)

    async def resync(self, participant_id: str) -> Joined:
        """The room as a participant should now see it (others and their tracks), for a client whose
        signalling lost messages it cannot get again (its signalling replica died). A subscribe offer
        still waiting for its answer is sent again: the first, or the answer, may be what was lost."""
        peer = self._peer(participant_id)
        router = self._router_of(peer)
        tracks: list[NamedTrackInfo] = [{**rec.info(), "name": router.name_of(rec.participant_id)}
                                        for rec in router.tracks if rec.participant_id != participant_id]
        state: Joined = {"participants": router.participants(exclude=participant_id), "tracks": tracks}
        peer.resend_offer()
        return state

    async def mute(self, participant_id: str, track_id: str, muted: bool) -> TrackInfo:
        peer = self._peer(participant_id)
        rec = peer.set_muted(track_id, muted)
        self._router_of(peer).track_muted(peer.id, rec, muted)
        return rec.info()

    async def subscription(self, participant_id: str, track_id: str, layer: str | None,
                           width: int | None, height: int | None, pinned: bool | None = None) -> SubscriptionState:
        """A subscriber's wish for one track: a layer name, its rendered size, or off; and whether
        it is pinned (served before the other cameras from the subscriber's downlink; None: as it was)."""
        peer = self._peer(participant_id)
        dt = peer.downtracks.get(track_id)
        if dt is None:
            raise MediaError("unknown_track", f"not subscribed to track {track_id!r}")
        dt.request_layer, dt.request_width, dt.request_height = layer, width, height
        if pinned is not None:
            dt.pinned = pinned
        if dt.kind == "video":
            # apply now rather than at the next periodic evaluation: a user clicked something
            self._router_of(peer).selector.evaluate_one(dt.track, dt)
        elif layer == "off":
            dt.set_target(None, "off")
        elif dt.paused:
            dt.set_target(next(iter(dt.track.layers.values()), None), "subscriber request")
        target = dt.target
        # what the reply names; the layer actually forwarded may still change (it waits for a key
        # frame of the target): then the subscriber hears `layer_changed`
        peer.told_layer(track_id, target.rid if target else None)
        return {"layer": target.rid if target else None, "paused": target is None, "pinned": dt.pinned}

    async def allocation(self, participant_id: str) -> AllocationState:
        peer = self._peer(participant_id)
        explained = self._router_of(peer).selector.explain(peer.id, peer.downtracks.values(), time.monotonic())
        return cast(AllocationState, explained)

    def _tracks_lost(self, peer: Peer, lost: list[PublishedTrack[DownTrack]], forget_speaker: bool = True) -> None:
        """A publisher's connection failed, or it unpublished them: unpublish its tracks as a leave
        would, but it stays.

        Subscribers' DownTracks end and their m-lines turn inactive (recycled for the next track),
        everyone gets `track_unpublished`, and the room forgets the tracks' dynacast state (a new
        offer from the same client reuses the track ids) and the publisher as active speaker.
        """
        if self.peers.get(peer.id) is not peer:
            return  # it left meanwhile: the leave unpublished everything
        router = self._router_of(peer)
        for rec in lost:
            router.track_ended(peer.id, rec)
        router.selector.forget(peer.id, [rec.id for rec in lost])
        if forget_speaker:
            router.speaker.forget(peer.id)

    async def leave(self, participant_id: str, reason: str = "left") -> None:
        peer = self.peers.pop(participant_id, None)
        if peer is None:
            return
        # a removal's reason is free text for the participant ("no longer qualifies for this room: ..."):
        # the metric's label keeps to a fixed set
        STATS.participant_left(reason if reason in LEAVE_REASONS else "removed")
        router = self._router_of(peer)
        await router.remove_peer(peer, reason)
        if self.on_event is not None:
            sent_bytes, sent_packets = peer.media_totals()
            self.on_event(router.name, {"type": "media", "identity": peer.identity, "bytes": sent_bytes,
                                        "packets": sent_packets, "messages": peer.data.messages})
        self.close_if_empty(router.name)

    async def close(self) -> None:
        for pid in list(self.peers):
            await self.leave(pid, "server_shutdown")

    def labelled_gauges(self) -> list[LabelledGauge]:
        """Node-wide sums by simulcast layer and by pause reason (never by room: cardinality)."""
        now = time.monotonic()
        ingress: defaultdict[str, float] = defaultdict(float)
        forwarding: defaultdict[str, float] = defaultdict(float)
        paused: defaultdict[str, float] = defaultdict(float)
        waiting: defaultdict[str, float] = defaultdict(float)
        for peer in self.peers.values():
            for rec in peer.tracks:
                if rec.kind == "video":
                    for layer in rec.layers.values():
                        # a layer that stopped keeps its last bitrate: count it as 0
                        ingress[layer.rid or "single"] += layer.bitrate if layer.arriving(now) else 0.0
            for dt in peer.downtracks.values():
                if dt.is_video and dt.paused:
                    paused[dt.pause_reason or "other"] += 1
                elif dt.is_video and dt.current is not None:
                    forwarding[dt.current.rid or "single"] += 1
                if dt.waiting_for_keyframe and dt.target is not None:
                    waiting[dt.target.rid or "single"] += 1
        return [
            ("layer_bitrate_bps", "video bitrate received from publishers, by simulcast layer", "layer", ingress),
            ("downtracks_forwarding", "video downtracks forwarding, by simulcast layer", "layer", forwarding),
            ("downtracks_paused", "video downtracks paused, by reason", "reason", paused),
            ("downtracks_waiting", "video downtracks waiting for a key frame of the layer they start or "
             "switch to (nothing is sent to a starting one meanwhile), by that layer", "layer", waiting),
        ]

    def gauges(self) -> dict[str, float]:
        return {
            "rooms": len(self.rooms),
            "participants": len(self.peers),
            "tracks": sum(len(p.tracks) for p in self.peers.values()),
            # rooms spanning nodes: tracks relayed out (per destination) and in (sfu.cascade)
            "relays_out": len(self.cascade.sinks) if self.cascade else 0,
            "relays_in": len(self.cascade.relayed) if self.cascade else 0,
        }


if TYPE_CHECKING:
    def _is_a_media_node(node: SfuNode) -> MediaNode:
        # mypy checks here that SfuNode satisfies the contract the control plane relies on
        return node
