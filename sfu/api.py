"""The media plane's contract with the control plane: what a room manager may ask of a media node.

`MediaNode` is satisfied by the in-process `sfu.node.SfuNode` and by the cluster's `RemoteNode`,
which sends the same calls over the bus; the room manager and the WebSocket layer depend on this
Protocol only. Refusals are `MediaError`s with a stable `code`, so a client sees the same error
whether its room is in this process or on another node.

This module imports nothing from the rest of `sfu`: both planes may depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypedDict

# node -> control plane: an event for one participant (protocol message, docs/protocol.md)
Deliver = Callable[[str, dict[str, Any]], None]


class Broadcast(dict[str, Any]):
    """An event every participant of a room gets unchanged, as one object: whoever serialises it
    may keep the text on it (`encoded`) and send the same text to every recipient. Never modified
    once delivered."""

    encoded: str | None = None


class MediaError(Exception):
    """A request the media plane refuses; `code` is a stable machine-readable label."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SdpError(ValueError):
    """An SDP that cannot be used; the message names the m-line and what is wrong (`invalid_sdp`)."""


class ParticipantInfo(TypedDict):
    """A participant as the other participants see it."""

    id: str
    name: str
    identity: str


SOURCES = ("camera", "microphone", "screen", "screen_audio")
SOURCE_KINDS = {"camera": "video", "microphone": "audio", "screen": "video", "screen_audio": "audio"}
# what a track's frames are encrypted with end to end, as its publisher declares (the SFU cannot tell:
# an SFrame-encrypted VP8 frame keeps its payload header in the clear): "sframe" is RFC 9605
ENCRYPTIONS = ("none", "sframe")


class TrackInfo(TypedDict):
    """A published track as subscribers see it (`track_published`, `mute` result)."""

    track: str
    participant: str
    kind: str
    source: str  # camera, microphone, screen or screen_audio (SOURCES)
    codec: str
    muted: bool
    simulcast: bool
    layers: list[str]
    encryption: str  # none or sframe (ENCRYPTIONS): subscribers decrypt what is sframe before decoding


class NamedTrackInfo(TrackInfo):
    """A published track with its publisher's display name (join result, subscribe offers)."""

    name: str


class Joined(TypedDict):
    """What a joining participant learns: who is already in the room and what they publish."""

    participants: list[ParticipantInfo]
    tracks: list[NamedTrackInfo]


class SubscriptionState(TypedDict):
    """The outcome of a `subscription` request: the layer aimed at (None when paused)."""

    layer: str | None
    paused: bool
    pinned: bool


class TrackAllocation(TypedDict):
    """Why a subscriber gets the layer it gets on one video track (`MediaNode.allocation`)."""

    track: str
    participant: str
    source: str
    priority: str  # sfu.allocation.PRIORITIES
    pinned: bool
    requested: str | None  # the best layer the request allows (rid, or "S<n>" for SVC); None: off
    layer: str | None  # the layer aimed at; None: paused or off
    forwarding: str | None  # the layer forwarded now (it follows `layer` at a key frame)
    temporal: int | None  # VP8 temporal layers above this are dropped; None: all forwarded
    paused: bool
    need_bps: int | None  # what the requested layer needs
    share_bps: int | None  # the rate this track may use: its share of the estimate
    reason: str  # the reason of the last change of `layer`
    why: str  # one sentence for people


class AllocationState(TypedDict):
    """A subscriber's downlink estimate and how its video shares it (`MediaNode.allocation`)."""

    estimate: int | None  # bits/s; None before the first
    estimator: str | None  # "transport-cc" (the SFU's own) or "remb" (the subscriber's)
    pacing_bps: int  # the rate its video is paced at (sfu.pacing); 0: not paced
    playout_delay_ms: int | None  # the minimum playout delay stamped on its video (sfu.playout_delay)
    tracks: list[TrackAllocation]


class MediaNode(Protocol):
    """The calls a room manager makes on a media node. Participant ids are unique per node.

    `sdp` and `candidate` are the client's values as received: the node validates them and raises
    `MediaError("invalid_sdp" | "invalid_candidate", ...)`.
    """

    async def join(self, room: str, participant_id: str, name: str, can_publish: bool = True,
                   can_subscribe: bool = True, identity: str = "", max_participants: int = 0,
                   p2p: bool = False) -> Joined:
        """`p2p`: the participant may send its media peer to peer while the room holds only it and
        one other that may too (sfu.pairing)."""
        ...

    async def p2p_signal(self, participant_id: str, to: str, data: dict[str, Any]) -> None:
        """Relay signalling for a paired participant's direct connection to its partner
        (`MediaError("not_paired")` when `to` is not that)."""
        ...

    async def publish(self, participant_id: str, sdp: Any, sources: dict[str, str] | None = None,
                      encryption: str = "none") -> str:
        """Apply the participant's publish offer; returns the SDP answer. `sources`: mid -> what the
        m-line's track carries (SOURCES; unnamed ones are the camera and the microphone);
        `encryption`: what the tracks it creates are encrypted with end to end (ENCRYPTIONS)."""
        ...

    async def unpublish(self, participant_id: str, track_id: str) -> None:
        """Stop forwarding one of the participant's tracks; the room hears `track_unpublished`. Its
        m-line stays negotiated: a later offer that sends on it again publishes it anew."""
        ...

    async def answer(self, participant_id: str, sdp: Any) -> None:
        """The participant's answer to the node's subscribe offer."""
        ...

    async def candidate(self, participant_id: str, target: str, candidate: Any) -> None:
        """A trickled ICE candidate for the "publisher" or "subscriber" connection (None: end)."""
        ...

    async def restart_ice(self, participant_id: str, target: str) -> None:
        """Restart ICE on the participant's "subscriber" connection: a new offer with new ICE
        credentials follows (the publisher connection restarts with the client's own offer)."""
        ...

    async def mute(self, participant_id: str, track_id: str, muted: bool) -> TrackInfo: ...

    async def subscription(self, participant_id: str, track_id: str, layer: str | None,
                           width: int | None, height: int | None, pinned: bool | None = None) -> SubscriptionState:
        """`pinned`: None leaves it as it was."""
        ...

    async def allocation(self, participant_id: str) -> AllocationState:
        """Why the participant receives the layers it receives (as of the last selector round)."""
        ...

    async def leave(self, participant_id: str, reason: str = "left") -> None: ...

    async def close(self) -> None: ...

    def gauges(self) -> dict[str, float]:
        """Current counts (participants, rooms, ...) for this node's metrics."""
        ...
