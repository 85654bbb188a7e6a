"""Track and Layer: what a publisher publishes, as the rest of the media plane sees it.

A published Track (class `PublishedTrack`, to be renamed PublishedTrack) is audio or video from one
participant with one Layer per simulcast encoding (one Layer without simulcast). `sfu.ingress.Ingress`
fills them from packets; DownTracks, the LayerSelector and the Router read them.

This module sits below all of those: it imports neither the ingress nor the DownTrack. What it needs
from them is stated here as Protocols (`TrackSource`, `Subscription`), which they satisfy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from sfu import packet_ring, reception
from sfu.api import TrackInfo

if TYPE_CHECKING:
    from sfu import rtp
    from sfu.dependency_descriptor import DependencyStructure

# the PLI debug line keeps the logger it always had (log filters in deployments name it)
log = logging.getLogger("basement.track")

RID_ORDER = {"q": 0, "l": 0, "low": 0, "h": 1, "m": 1, "mid": 1, "f": 2, "hi": 2, "high": 2}
STALE_S = 1.5  # a layer with no packet for this long is not arriving (dynacast, publisher CPU)
PLI_MIN_INTERVAL = 0.3  # s; per layer: a burst of subscriber PLIs becomes one request to the publisher


class Layer:
    """One encoding of a track (a simulcast layer; the only one without simulcast)."""

    def __init__(self, rid: str, clock_rate: int) -> None:
        self.rid = rid
        self.index = RID_ORDER.get(rid, 0)
        self.ssrc: int | None = None
        self.rtx_ssrc: int | None = None
        self.rx = reception.new(clock_rate)  # Python or native (sfu.datapath)
        # the packets as received, for every subscriber's NACKs (sfu.packet_ring; Python or native)
        self.ring = _ring_kind()
        self.nack_at = -1.0  # arrival time of the last immediate NACK
        # bumped when the media stream starts over (new SSRC, or the sender restarted its sequence
        # numbers): numbering derived from the old stream no longer continues
        self.epoch = 0
        self.packets = 0
        self.bytes = 0
        self.keyframes = 0
        self.last_keyframe_at = 0.0
        self.width = 0
        self.height = 0
        self.sps = b""  # H.264: the SPS the size was last read from, and when (sfu.h264)
        self.sps_at = float("-inf")
        self.last_sr: tuple[int, int, float] | None = None  # (ntp, rtp_ts, arrival)
        self.last_packet_at = 0.0
        # bitrate over a sliding second, for the layer selector and metrics
        self._window_start = 0.0
        self._window_bytes = 0
        self.bitrate = 0.0
        # VP9 SVC: the same by spatial id (everything is spatial layer 0 otherwise), and each spatial
        # layer's size from the key pictures' scalability structure (() without SVC)
        self._window_spatial = [0] * SPATIAL
        self._spatial_bitrates = [0.0] * SPATIAL
        self.spatial_sizes: tuple[tuple[int, int], ...] = ()
        # AV1: the latest template dependency structure (sfu.dependency_descriptor), None until one came
        self.dd_structure: DependencyStructure | None = None

    def arriving(self, now: float) -> bool:
        return self.ssrc is not None and now - self.last_packet_at < STALE_S

    @property
    def spatial_bitrates(self) -> tuple[float, ...]:
        """Bits/s by VP9 spatial id (8 of them; without SVC all of it is in the first)."""
        return tuple(self._spatial_bitrates)

    def account(self, nbytes: int, now: float, sid: int = 0) -> None:
        self.packets += 1
        self.bytes += nbytes
        self.last_packet_at = now
        self._window_bytes += nbytes
        self._window_spatial[sid] += nbytes
        if now - self._window_start >= 1.0:
            if self._window_start:
                span = now - self._window_start
                self.bitrate = _smoothed(self.bitrate, self._window_bytes, span)
                rates, window = self._spatial_bitrates, self._window_spatial
                for i in range(SPATIAL):
                    if window[i] or rates[i]:
                        rates[i] = _smoothed(rates[i], window[i], span)
            self._window_start = now
            self._window_bytes = 0
            self._window_spatial = [0] * SPATIAL


SPATIAL = 8  # VP9 spatial ids are 3 bits


def _smoothed(rate: float, window_bytes: int, span: float) -> float:
    # a keyframe doubles a one-second window, which must not read as the layer's rate (the selector
    # would move subscribers down for nothing)
    sample = window_bytes * 8 / span
    return sample if not rate else 0.6 * rate + 0.4 * sample


_layer_kind: Callable[[str, int], Layer] = Layer
_ring_kind: Callable[[], Any] = packet_ring.PacketRing


def configure(kind: Callable[[str, int], Layer], ring: Callable[[], Any] = packet_ring.PacketRing) -> None:
    """The classes new Layers and their packet rings are made of: Layer and PacketRing, or the native
    data path's (sfu.datapath)."""
    global _layer_kind, _ring_kind
    _layer_kind = kind
    _ring_kind = ring


class TrackSource(Protocol):
    """What a Track needs from the ingress that feeds it (`sfu.ingress.Ingress`)."""

    # mid -> {extension URI -> the publisher's id}, as negotiated on the publish transport
    extensions: dict[str, dict[str, int]]

    def send_pli(self, mid: str, media_ssrc: int) -> None: ...


class Subscription(Protocol):
    """What a Track's fan-out calls on each of its subscriptions (`sfu.downtrack.DownTrack`)."""

    def forward(self, data: bytes, view: rtp.RtpView, layer: Layer, keyframe: bool,
                picture: rtp.Picture | None, now: float) -> None: ...

    def skip(self, seq: int, layer: Layer) -> None: ...

    def on_publisher_sr(self, layer: Layer, ntp: int, rtp_ts: int) -> None: ...

    def interrupt(self) -> None: ...


# The type of a Track's DownTracks. Generic so that this module need not import downtrack (which
# imports this one): everything above both uses `PublishedTrack[DownTrack]`.
S = TypeVar("S", bound=Subscription)


class PublishedTrack(Generic[S]):
    """A published Track: audio or video from one participant, with one or more Layers."""

    def __init__(self, track_id: str, participant_id: str, kind: str, mid: str, codec: Any,
                 ingress: TrackSource) -> None:
        self.id = track_id
        self.participant_id = participant_id
        self.kind = kind
        self.mid = mid
        self.codec = codec  # RTCRtpCodecParameters of the media (non-RTX) codec
        self.codec_name: str = codec.name.upper() if codec is not None else ""
        self.clock_rate: int = codec.clockRate if codec is not None else 90000
        self.ingress = ingress
        self.layers: dict[str, Layer] = {}
        self.downtracks: list[S] = []
        self.muted = False
        self.simulcast = False
        self.source = "camera" if kind == "video" else "microphone"  # sfu.api.SOURCES
        self.encryption = "none"  # sfu.api.ENCRYPTIONS: as the publisher declared it
        self._last_pli: dict[str, float] = {}
        self.ssrcs_used = 0  # SSRCs ever bound to this m-line (IngressLimits.max_ssrcs_per_track)
        # sfu.relay.RelaySink: this track relayed to the other nodes of its room (sfu.cascade). Fed by
        # the Ingress apart from the DownTracks: every packet as it came, not one layer rewritten
        self.relays: list[Any] = []

    @property
    def extensions(self) -> dict[str, int]:
        """Header-extension URI -> the publisher's id on this track's m-line (empty if none).

        Read where extensions are resolved once (a DownTrack's id map), never per packet.
        """
        return self.ingress.extensions.get(self.mid, {})

    def layer(self, rid: str) -> Layer:
        layer = self.layers.get(rid)
        if layer is None:
            layer = self.layers[rid] = _layer_kind(rid, self.clock_rate)
        return layer

    def request_keyframe(self, rid: str | None = None, reason: str = "") -> bool:
        """PLI the publisher for one layer (all layers when rid is None), at most every 300 ms."""
        now = time.monotonic()
        sent = False
        for layer in self.layers.values():
            if rid is not None and layer.rid != rid:
                continue
            if layer.ssrc is None or now - self._last_pli.get(layer.rid, 0.0) < PLI_MIN_INTERVAL:
                continue
            self._last_pli[layer.rid] = now
            self.ingress.send_pli(self.mid, layer.ssrc)
            sent = True
        if sent:
            log.debug("PLI %s (%s)", self.id, reason)
        return sent

    def set_muted(self, muted: bool) -> None:
        """Muted: every subscriber's stream is cut where it stands; unmuted: a key frame is asked for,
        which each subscriber needs to start again."""
        self.muted = muted
        if muted:
            for dt in self.downtracks:
                dt.interrupt()
        else:
            self.request_keyframe(None, "unmute")

    def info(self) -> TrackInfo:
        return {
            "track": self.id,
            "participant": self.participant_id,
            "kind": self.kind,
            "source": self.source,
            "codec": self.codec_name,
            "muted": self.muted,
            "simulcast": self.simulcast,
            "layers": sorted(self.layers),
            "encryption": self.encryption,
        }
