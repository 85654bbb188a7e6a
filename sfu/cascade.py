"""Cascade: one node's part of rooms that span several media nodes.

A room whose participants are on several nodes (the media workers of one host) has a Router on
each. Each Router holds its own participants (Peers) and, as `remote` and `relayed`, the others'
participants and their tracks, so the room looks whole to everyone in it: presence, tracks,
mutes, and media.

What happens locally (a join, a leave, a track published, unpublished or muted) goes out through
`announce(room, event, to)` to the room's other nodes (`to`: one of them, or None: all); the
control plane carries it (signalling.run.roomlink) and hands the other nodes' events to
`apply`. Media goes directly: each node relays each of its publishers' tracks to every other node
of the room (sfu.relay), where a relayed-in Ingress feeds the local subscribers' DownTracks.

Dynacast spans too: a node's layer selector judges relayed tracks as it judges local ones, and
what it would tell the publisher goes to the publisher's node instead (`needs`), where it joins the
union the publisher hears.

Events are maps of plain values (they cross processes) and are checked here, where they enter:
a bad one is refused with a RelayError naming what is wrong, and nothing changes.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sfu.api import ENCRYPTIONS, ParticipantInfo
from sfu.data import MAX_RECIPIENTS
from sfu.ingress import Ingress, ingress_class
from sfu.relay import (
    Address,
    RelayError,
    RelayPort,
    RelaySink,
    RelayUplink,
    check_layers,
    describe,
    layer_ssrcs,
    relayed_slot,
)

if TYPE_CHECKING:
    from sfu.downtrack import DownTrack
    from sfu.router import Router
    from sfu.track import PublishedTrack

log = logging.getLogger("basement.cascade")

# announce(room, event, to): an event for the room's other nodes (to: one node id; None: every one)
Announce = Callable[[str, dict[str, Any], "str | None"], None]

MAX_REMOTE_PARTICIPANTS = 10_000  # per room and node: what a room link may make one node hold
MAX_RELAYED_TRACKS = 4_000


@dataclass
class _Member:
    """Another node holding part of a room: its relay address and what came from it."""

    address: Address
    participants: set[str] = field(default_factory=set)
    tracks: set[str] = field(default_factory=set)  # relayed in from it
    sinks: set[str] = field(default_factory=set)  # this node's tracks of the room relayed to it


@dataclass
class _Relayed:
    rec: PublishedTrack[DownTrack]
    origin: str
    ingress: Ingress


class Cascade:
    def __init__(self, port: RelayPort, announce: Announce, routers: Callable[[str], Router | None],
                 on_closed: Callable[[str, list[str]], None] | None = None) -> None:
        self.port = port
        self.announce = announce
        # the room closed here: the nodes it was linked with, which must hear so (a `bye`)
        self.on_closed = on_closed
        self._router = routers  # the node's Router of a room, if it has one
        self.members: dict[str, dict[str, _Member]] = {}  # room -> node id -> member
        self.relayed: dict[str, _Relayed] = {}  # track id -> a track received over a relay
        self.ingresses: dict[str, Ingress] = {}  # remote participant -> the Ingress of its relayed tracks
        self.sinks: dict[tuple[str, str], RelaySink] = {}  # (track id, node id) -> the relay out

    def hosts(self, room: str) -> bool:
        """This node holds part of `room` (has its Router)."""
        return self._router(room) is not None

    # --- the room's other nodes ---------------------------------------------------------------------
    def member(self, room: str, origin: str, address: Address, key: bytes | None = None) -> list[dict[str, Any]]:
        """`origin` holds part of `room` too, its relay at `address` (`key`: its SRTP key, between
        nodes): this node relays its tracks there from now on. Returns the events that tell it this
        node's part of the room (empty when it was known already at that address)."""
        members = self.members.setdefault(room, {})
        known = members.get(origin)
        if known is not None and known.address == address:
            return []
        if known is not None:
            # the same node id at a new address: a new life of it (a worker restarted before its
            # death was noticed here). What the old one had is gone; it hears the room anew.
            self.member_gone(room, origin, "node_lost")
            members = self.members.setdefault(room, {})
        try:
            self.port.allow(address, key)
        except RelayError:
            if not members:
                del self.members[room]
            raise
        members[origin] = _Member(address)
        router = self._router(room)
        if router is None:
            return []
        events: list[dict[str, Any]] = [{"type": "joined", "participant": p.public()} for p in router.peers.values()]
        for peer in router.peers.values():
            for rec in peer.tracks:
                self._relay_out(room, rec, origin, members[origin])
                events.append({"type": "published", "track": describe(rec, peer.name)})
        return events

    def member_gone(self, room: str, origin: str, reason: str = "node_lost") -> None:
        """`origin` no longer holds part of `room` (it left it, or died): its participants leave and
        its tracks are unpublished here; nothing is relayed to it any more."""
        m = self.members.get(room, {}).pop(origin, None)
        if m is None:
            return
        if not self.members[room]:
            del self.members[room]
        self.port.disallow(m.address)
        for track_id in list(m.sinks):
            self._end_sink((track_id, origin))
        router = self._router(room)
        for track_id in list(m.tracks):
            self._unrelay(router, track_id)
        for pid in list(m.participants):
            if router is not None:
                router.remote_left(pid, reason)
            self._drop_ingress(pid)

    def room_closed(self, room: str) -> None:
        """This node's last participant of `room` left: everything relayed in or out of it ends,
        and the nodes it was linked with are told (`on_closed`)."""
        members = self.members.pop(room, {})
        for origin, m in members.items():
            for track_id in list(m.sinks):
                self._end_sink((track_id, origin))
            for track_id in list(m.tracks):
                self._unrelay(None, track_id)
            for pid in list(m.participants):
                self._drop_ingress(pid)
            self.port.disallow(m.address)
        if members and self.on_closed is not None:
            self.on_closed(room, list(members))

    # --- what other nodes tell -------------------------------------------------------------------------
    def apply(self, room: str, origin: str, event: Any) -> None:
        """An event from `origin`'s part of `room`. RelayError when it is not a valid one."""
        m = self.members.get(room, {}).get(origin)
        if m is None:
            raise RelayError(f"node {origin!r} is not linked to room {room!r} here")
        router = self._router(room)
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise RelayError("an event is a map with a type")
        kind = event["type"]
        if router is None:
            return  # (the room closed here meanwhile)
        if kind == "joined":
            info = _participant(event.get("participant"))
            if info["id"] in router.peers or info["id"] in router.remote:
                return
            if len(router.remote) >= MAX_REMOTE_PARTICIPANTS:
                raise RelayError("too many remote participants in this room")
            m.participants.add(info["id"])
            router.remote_joined(info)
        elif kind == "left":
            pid, reason = event.get("participant"), event.get("reason")
            if not isinstance(pid, str) or pid not in m.participants:
                return
            # its tracks end with it, whether or not their `unpublished` came (a one-way event)
            for track_id in [t for t in m.tracks if t in self.relayed and self.relayed[t].rec.participant_id == pid]:
                self._unrelay(router, track_id)
            m.participants.discard(pid)
            router.remote_left(pid, reason[:200] if isinstance(reason, str) else "left")
            self._drop_ingress(pid)
        elif kind == "published":
            self._relay_in(router, origin, m, event.get("track"))
        elif kind in ("unpublished", "muted", "layers", "needs") and not isinstance(event.get("track"), str):
            raise RelayError(f"{kind}: track must be a string")
        elif kind == "unpublished":
            if event["track"] in m.tracks:
                self._unrelay(router, event["track"])
        elif kind == "muted":
            entry = self.relayed.get(event["track"])
            if entry is not None and entry.origin == origin and isinstance(event.get("muted"), bool):
                router.relayed_muted(entry.rec, event["muted"])
        elif kind == "layers":
            entry = self.relayed.get(event["track"])
            if entry is not None and entry.origin == origin:
                layers = check_layers(event.get("layers"))
                self._check_free(entry.ingress, layers)
                self._bind(entry, layers)
        elif kind == "data":
            label, msg = event.get("label"), event.get("msg")
            if label not in ("reliable", "lossy") or not isinstance(msg, dict) or not _data_message(msg) \
                    or msg["from"] not in m.participants:
                raise RelayError("data: a label and a data message from a participant of that node")
            router.data.deliver_relayed(str(label), msg)
        elif kind == "needs":
            sink = self.sinks.get((event["track"], origin))
            active, spatial = event.get("active"), event.get("spatial")
            if sink is None:
                return
            if not isinstance(active, list) or len(active) > 8 or not all(isinstance(r, str) for r in active):
                raise RelayError("needs: active is a list of rids")
            sink.needed = set(active)
            sink.spatial = spatial if isinstance(spatial, int) and 0 <= spatial <= 8 else None
        else:
            raise RelayError(f"unknown room event {kind!r}"[:100])

    # --- what happens here ------------------------------------------------------------------------
    def local_joined(self, room: str, info: ParticipantInfo) -> None:
        if self.members.get(room):
            self.announce(room, {"type": "joined", "participant": dict(info)}, None)

    def local_left(self, room: str, participant_id: str, reason: str) -> None:
        if self.members.get(room):
            self.announce(room, {"type": "left", "participant": participant_id, "reason": reason}, None)

    def local_published(self, room: str, rec: PublishedTrack[DownTrack], name: str) -> None:
        members = self.members.get(room)
        if not members:
            return
        for origin, m in members.items():
            self._relay_out(room, rec, origin, m)
        self.announce(room, {"type": "published", "track": describe(rec, name)}, None)

    def local_unpublished(self, room: str, track_id: str) -> None:
        for origin, m in self.members.get(room, {}).items():
            if track_id in m.sinks:
                self._end_sink((track_id, origin))
        if self.members.get(room):
            self.announce(room, {"type": "unpublished", "track": track_id}, None)

    def local_muted(self, room: str, track_id: str, muted: bool) -> None:
        if self.members.get(room):
            self.announce(room, {"type": "muted", "track": track_id, "muted": muted}, None)

    def local_data(self, room: str, label: str, msg: dict[str, Any]) -> None:
        """A data message sent here with recipients on other nodes (sfu.data: paid for here)."""
        if self.members.get(room):
            self.announce(room, {"type": "data", "label": label, "msg": msg}, None)

    def needs(self, room: str, track_id: str, msg: dict[str, Any]) -> None:
        """This node's layer selector's dynacast for a relayed track: to the publisher's node."""
        entry = self.relayed.get(track_id)
        if entry is not None:
            self.announce(room, {"type": "needs", "track": track_id, "active": list(msg.get("active") or []),
                                 "spatial": msg.get("spatial")}, entry.origin)

    # --- relays ------------------------------------------------------------------------------------
    def _relay_out(self, room: str, rec: PublishedTrack[DownTrack], origin: str, m: _Member) -> None:
        key = (rec.id, origin)
        if key in self.sinks:
            return

        def layers_changed(sink: RelaySink, room: str = room, origin: str = origin) -> None:
            self.announce(room, {"type": "layers", "track": sink.rec.id, "layers": layer_ssrcs(sink.rec)}, origin)

        sink = RelaySink(rec, self.port, m.address, layers_changed)
        self.sinks[key] = sink
        m.sinks.add(rec.id)
        rec.relays.append(sink)
        rec.ingress.relaying(rec)  # type: ignore[attr-defined]

    def _end_sink(self, key: tuple[str, str]) -> None:
        sink = self.sinks.pop(key, None)
        for members in self.members.values():
            m = members.get(key[1])
            if m is not None:
                m.sinks.discard(key[0])
        if sink is None:
            return
        sink.close()
        rec = sink.rec
        if sink in rec.relays:
            rec.relays.remove(sink)
        if not rec.relays:
            rec.ingress.relaying(rec)  # type: ignore[attr-defined]

    def _relay_in(self, router: Router, origin: str, m: _Member, desc: Any) -> None:
        if not isinstance(desc, dict):
            raise RelayError("published: track must be a description")
        slot, info, rids = relayed_slot(desc, random.getrandbits(32))
        track_id, pid = info["track"], info["participant"]
        if track_id in self.relayed or any(track_id == r.id for r in router.tracks):
            return
        if pid not in m.participants:
            raise RelayError(f"published: {pid!r} is not a participant of that node")
        if len(self.relayed) >= MAX_RELAYED_TRACKS:
            raise RelayError("too many relayed tracks on this node")
        if not any(not c.mimeType.lower().endswith("/rtx") for c in slot.codecs.values()):
            raise RelayError("published: no media codec (only RTX)")
        ingress = self.ingresses.get(pid)
        if ingress is not None and slot.mid in ingress.tracks:
            raise RelayError(f"published: mid {slot.mid!r} of that participant is relayed here already")
        layers = check_layers(desc.get("layers"))
        self._check_free(ingress, layers)
        # (nothing above changed anything: a refused description leaves no trace)
        if ingress is None:
            ingress = self.ingresses[pid] = ingress_class()(pid, on_audio_level=router.observe_audio)
        (rec,) = ingress.configure(RelayUplink(self.port, m.address), [slot], {}, {slot.mid: track_id},
                                   {slot.mid: rids if len(rids) > 1 else []})
        source = info.get("source")
        if isinstance(source, str):
            rec.source = source
        if info.get("encryption") in ENCRYPTIONS:
            rec.encryption = info["encryption"]
        rec.muted = info.get("muted") is True
        entry = self.relayed[track_id] = _Relayed(rec, origin, ingress)
        m.tracks.add(track_id)
        self._bind(entry, layers)
        name = info.get("name")
        router.add_relayed(rec, name if isinstance(name, str) else "")

    def _check_free(self, ingress: Ingress | None, layers: list[tuple[str, int | None, int | None]]) -> None:
        """RelayError if an SSRC of `layers` is relayed here for another participant."""
        for _, ssrc, rtx in layers:
            for value in (ssrc, rtx):
                if value is not None and self.port.ingresses.get(value, ingress) is not ingress:
                    raise RelayError(f"SSRC {value} is relayed here for another participant already")

    def _bind(self, entry: _Relayed, layers: list[tuple[str, int | None, int | None]]) -> None:
        rec, ingress = entry.rec, entry.ingress
        for rid, ssrc, rtx in layers:
            layer = rec.layers.get(rid) or (next(iter(rec.layers.values())) if len(rec.layers) == 1 else None)
            if layer is None:
                continue
            for value, is_rtx in ((ssrc, False), (rtx, True)):
                old = layer.rtx_ssrc if is_rtx else layer.ssrc
                if value is None or value == old:
                    continue
                if ingress.bind(rec, layer, value, is_rtx) is not None:
                    if old is not None:
                        self.port.ingresses.pop(old, None)
                    self.port.ingresses[value] = ingress
                    if not is_rtx:
                        # the packets may have come before this (they do not wait for the bus): the
                        # ones of an unknown SSRC were dropped, so the first key frame may be gone
                        rec.request_keyframe(layer.rid, "relay bound")

    def _unrelay(self, router: Router | None, track_id: str) -> None:
        entry = self.relayed.pop(track_id, None)
        if entry is None:
            return
        for members in self.members.values():
            if entry.origin in members:
                members[entry.origin].tracks.discard(track_id)
        rec = entry.rec
        for layer in rec.layers.values():
            for ssrc in (layer.ssrc, layer.rtx_ssrc):
                if ssrc is not None and self.port.ingresses.get(ssrc) is entry.ingress:
                    del self.port.ingresses[ssrc]
        entry.ingress.remove(rec.mid)
        if router is not None:
            router.remove_relayed(rec)
        if not entry.ingress.tracks:
            self._drop_ingress(rec.participant_id)

    def _drop_ingress(self, participant_id: str) -> None:
        ingress = self.ingresses.get(participant_id)
        if ingress is not None and not ingress.tracks:
            del self.ingresses[participant_id]
            ingress.close()
            if ingress.transport is not None:
                ingress.transport.closed = True



def _participant(value: Any) -> ParticipantInfo:
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) and len(value[k]) <= 256
                                              for k in ("id", "name", "identity")):
        raise RelayError("participant: {id, name, identity} strings")
    return {"id": value["id"], "name": value["name"], "identity": value["identity"]}


MAX_DATA_TEXT = 256 * 1024  # characters of a relayed message's `data` (data_max_message_bytes at most)


def _data_message(msg: Any) -> bool:
    """A data message as sfu.data.DataRelay makes them (what a relayed one must look like)."""
    if not isinstance(msg, dict) or msg.get("type") != "data" or not isinstance(msg.get("seq"), int):
        return False
    if not all(isinstance(msg.get(k), str) for k in ("from", "name", "identity", "topic", "data")):
        return False
    to = msg.get("to")
    recipients = to is None or (isinstance(to, list) and len(to) <= MAX_RECIPIENTS
                                and all(isinstance(p, str) for p in to))
    return len(msg["data"]) <= MAX_DATA_TEXT and isinstance(msg.get("at"), int) and len(msg) <= 10 and recipients
