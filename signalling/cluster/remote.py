"""RemoteNode: what a signalling replica's RoomManager talks to instead of an in-process SfuNode.

Same method set as `sfu.node.SfuNode`; each call becomes a request on the bus to the room's node
(placing the room on the first join). Node events arrive on this replica's channel and go to
`deliver(participant_id, message)`, as SfuNode's would. Remote errors come back as MediaError with
the node's code, so the WebSocket layer reports them exactly as in the all-in-one server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sfu.api import AllocationState, Joined, MediaError, SubscriptionState, TrackInfo
from signalling.cluster.bus import Bus, RemoteError
from signalling.cluster.placement import NoNodeError, Placer

log = logging.getLogger("basement.cluster.remote")

Deliver = Callable[[str, dict[str, Any]], None]

# A node answering these did not admit the participant, so placing the room again is safe.
REPLACE_CODES = ("room_moved", "node_draining", "unreachable")


def replica_channel(replica_id: str) -> str:
    return f"replica:{replica_id}"


def node_channel(node_id: str) -> str:
    return f"node:{node_id}"


@dataclass
class Placement:
    """Where one participant of this replica is: its room and the media node hosting it."""

    room: str
    node: str


class RemoteNode:
    def __init__(self, replica_id: str, bus: Bus, placer: Placer, deliver: Deliver,
                 timeout: float = 10.0, span_above: int = 0) -> None:
        self.replica_id = replica_id
        # a room's participants past this many on its home node go to other nodes of its group
        # (Placer.node_for_participant; 0: rooms never span nodes)
        self.span_above = span_above
        self.bus = bus
        self.placer = placer
        self.deliver = deliver
        self.timeout = timeout
        self.placements: dict[str, Placement] = {}  # participants of this replica -> where they are

    async def start(self) -> None:
        await self.bus.subscribe(self.bus.inbox, self._on_event)

    def _on_event(self, body: Any) -> None:
        if (not isinstance(body, dict) or body.get("op") != "deliver" or not isinstance(body.get("pid"), str)
                or not isinstance(body.get("msg"), dict)):
            self.bus.reject(self.bus.inbox, "not a {op: deliver, pid, msg} event")
            return
        self.deliver(body["pid"], body["msg"])

    async def _call(self, node_id: str, op: str, args: dict[str, Any], timeout: float | None = None) -> Any:
        body = {"op": op, "args": args, "replica": self.replica_id}
        try:
            return await self.bus.request(node_channel(node_id), body, timeout or self.timeout)
        except RemoteError as e:
            raise MediaError(e.code, e.message) from None

    def _placed(self, room: str) -> dict[str, int] | None:
        """This replica's participants of `room` by node (joins in flight included), for placing a
        room that may span nodes; a scan of this replica's participants, once per join."""
        if self.span_above <= 0:
            return None
        counts: dict[str, int] = {}
        for s in self.placements.values():
            if s.room == room:
                counts[s.node] = counts.get(s.node, 0) + 1
        return counts

    def _node_of(self, participant_id: str) -> str:
        s = self.placements.get(participant_id)
        if s is None:
            raise MediaError("not_joined", "this participant has not joined a room")
        return s.node

    # --- the SfuNode method set -----------------------------------------------------------------
    async def join(self, room: str, participant_id: str, name: str, can_publish: bool = True,
                   can_subscribe: bool = True, identity: str = "", max_participants: int = 0,
                   p2p: bool = False) -> Joined:
        args = {"room": room, "pid": participant_id, "name": name, "can_publish": can_publish,
                "can_subscribe": can_subscribe, "identity": identity, "max_participants": max_participants,
                "p2p": p2p}
        avoid: str | None = None
        last: MediaError | None = None
        for _ in range(3):
            try:
                node_id, args["span"] = await self.placer.node_for_participant(room, avoid, self.span_above,
                                                                               self._placed(room))
            except NoNodeError as e:
                raise MediaError(e.code, e.message) from None
            # known before the reply, so a node dying mid-join still finds this participant
            self.placements[participant_id] = Placement(room, node_id)
            try:
                return await self._call(node_id, "join", args)
            except MediaError as e:
                self.placements.pop(participant_id, None)
                if e.code == "timeout":
                    # the node may have admitted the participant after all: don't leave a ghost there
                    self.bus.publish(node_channel(node_id), {"op": "leave", "args": {"pid": participant_id,
                                     "reason": "join_timeout"}, "replica": self.replica_id})
                if e.code not in REPLACE_CODES:
                    raise
                log.info("node %s refused room %s (%s); placing again", node_id, room, e.code)
                avoid, last = node_id, e
        assert last is not None
        raise last

    async def publish(self, participant_id: str, sdp: Any, sources: dict[str, str] | None = None,
                      encryption: str = "none") -> str:
        return await self._call(self._node_of(participant_id), "publish",
                                {"pid": participant_id, "sdp": sdp, "sources": sources, "encryption": encryption})

    async def unpublish(self, participant_id: str, track_id: str) -> None:
        await self._call(self._node_of(participant_id), "unpublish", {"pid": participant_id, "track": track_id})

    async def answer(self, participant_id: str, sdp: Any) -> None:
        await self._call(self._node_of(participant_id), "answer", {"pid": participant_id, "sdp": sdp})

    async def p2p_signal(self, participant_id: str, to: str, data: dict[str, Any]) -> None:
        await self._call(self._node_of(participant_id), "p2p_signal", {"pid": participant_id, "to": to, "data": data})

    async def restart_ice(self, participant_id: str, target: str) -> None:
        await self._call(self._node_of(participant_id), "restart_ice", {"pid": participant_id, "target": target})

    async def candidate(self, participant_id: str, target: str, candidate: Any) -> None:
        await self._call(self._node_of(participant_id), "candidate",
                         {"pid": participant_id, "target": target, "candidate": candidate})

    async def mute(self, participant_id: str, track_id: str, muted: bool) -> TrackInfo:
        return await self._call(self._node_of(participant_id), "mute",
                                {"pid": participant_id, "track": track_id, "muted": muted})

    async def subscription(self, participant_id: str, track_id: str, layer: str | None,
                           width: int | None, height: int | None, pinned: bool | None = None) -> SubscriptionState:
        return await self._call(self._node_of(participant_id), "subscription",
                                {"pid": participant_id, "track": track_id, "layer": layer,
                                 "width": width, "height": height, "pinned": pinned})

    async def allocation(self, participant_id: str) -> AllocationState:
        return await self._call(self._node_of(participant_id), "allocation", {"pid": participant_id})

    async def leave(self, participant_id: str, reason: str = "left") -> None:
        s = self.placements.pop(participant_id, None)
        if s is None:
            return
        try:
            await self._call(s.node, "leave", {"pid": participant_id, "reason": reason}, timeout=5.0)
        except MediaError as e:
            # the node is gone or forgot the participant; either way nobody is left to tell
            log.info("leave of %s on %s: %s", participant_id, s.node, e)

    async def adopt(self, participant_id: str) -> Joined:
        """Have the node send `participant_id`'s events to this replica (it resumed here; its
        placement is set by the caller). Returns the room as the participant should see it."""
        return await self._call(self._node_of(participant_id), "adopt", {"pid": participant_id})

    async def close(self) -> None:
        for pid in list(self.placements):
            await self.leave(pid, "disconnected")

    def gauges(self) -> dict[str, float]:
        return {"participants": len(self.placements), "rooms": len({s.room for s in self.placements.values()})}

    # --- cluster ------------------------------------------------------------------------------------
    def lost(self, live_nodes: set[str]) -> list[str]:
        """Forget (without telling the dead node) participants whose node is no longer alive."""
        gone = [pid for pid, s in self.placements.items() if s.node not in live_nodes]
        for pid in gone:
            del self.placements[pid]
        return gone
