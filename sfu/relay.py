"""Relay: a published Track carried from the node that receives it to another node of its room.

A room may span several media nodes (the media workers of one host, `sfu.cascade`). Each node
relays its own publishers' tracks to every other node of the room, one stream per (track,
destination): the packets exactly as the publisher sent them (its SSRCs, sequence numbers and
timestamps, every layer that arrives, padding included so the destination sees no gaps), in plain
RTP over the nodes' `RelayPort`s. The relays of one host never leave loopback.

At the destination the stream enters an ordinary `sfu.ingress.Ingress`, configured from the
source's description of the track (`describe` / `RelayedTrack`), so its DownTracks, layer selector
and speaker detection work as for a local publisher. What a receiving endpoint owes its sender
flows back the same way: PLIs (a key frame for a layer) and NACKs, answered from the source
layer's PacketRing (as RTX when the publisher negotiated it). The publisher's sender reports are
passed on, so lip sync holds on every node.

A RelayPort takes packets only from the relay addresses of nodes its room links announced
(`allow`); anything else, and anything malformed, is a counted drop. Between the workers of one
host relays are plain RTP on loopback; between nodes (`secure`) they are SRTP (AES-CM-128 /
HMAC-SHA1-80): each port protects what it sends with a master key of its own, which the linked
nodes learn over the bus with its relay address, and unprotects what a linked node sends with
that node's key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import rtp as artp
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from sfu import rtp
from sfu.metrics import STATS
from sfu.transport import RecvSlot

if TYPE_CHECKING:
    from sfu.downtrack import DownTrack
    from sfu.ingress import Ingress
    from sfu.track import Layer, PublishedTrack

log = logging.getLogger("basement.relay")

Address = tuple[str, int]

RTX_WINDOW = 1024  # packets per layer a relay can resend (the PacketRing's size)
KEY_BYTES = 30  # SRTP master key + salt (AES-CM-128)
MAX_DESCRIBED_CODECS = 16
MAX_DESCRIBED_EXTENSIONS = 16


class RelayError(ValueError):
    """A track description from another node that cannot be used (the message says why)."""


# --- descriptions ----------------------------------------------------------------------------------
def describe(rec: PublishedTrack[DownTrack], name: str) -> dict[str, Any]:
    """What another node needs to receive `rec` over a relay: its public info, its m-line's codecs
    and header extensions (the packets keep the publisher's ids), and its layers' SSRCs."""
    slot = rec.ingress.slots[rec.mid]  # type: ignore[attr-defined]
    return {"info": {**rec.info(), "name": name}, "mid": rec.mid,
            "codecs": [_codec_out(c) for c in slot.codecs.values()],
            "ext": [[xid, uri] for xid, uri in slot.ext_ids.items()],
            "layers": layer_ssrcs(rec)}


def layer_ssrcs(rec: PublishedTrack[DownTrack]) -> list[list[Any]]:
    return [[layer.rid, layer.ssrc, layer.rtx_ssrc] for layer in rec.layers.values()]


def _codec_out(c: RTCRtpCodecParameters) -> dict[str, Any]:
    return {"mime": c.mimeType, "clock": c.clockRate, "channels": c.channels, "pt": c.payloadType,
            "params": {str(k): v for k, v in c.parameters.items()},
            "fb": [[f.type, f.parameter] for f in c.rtcpFeedback]}


def _codec_in(d: Any) -> RTCRtpCodecParameters:
    if not isinstance(d, dict):
        raise RelayError("a codec must be a map")
    mime, clock, pt, params, fb = d.get("mime"), d.get("clock"), d.get("pt"), d.get("params") or {}, d.get("fb") or []
    if not isinstance(mime, str) or "/" not in mime or len(mime) > 64:
        raise RelayError("codec mime: not a type/subtype")
    if not isinstance(clock, int) or not 1 <= clock <= 1_000_000 or not isinstance(pt, int) or not 0 <= pt <= 127:
        raise RelayError("codec clock rate or payload type out of range")
    channels = d.get("channels")
    if channels is not None and (not isinstance(channels, int) or not 1 <= channels <= 8):
        raise RelayError("codec channels out of range")
    if not isinstance(params, dict) or len(params) > 16 or not all(
            isinstance(k, str) and isinstance(v, str | int) for k, v in params.items()):
        raise RelayError("codec parameters: a map of at most 16 strings or integers")
    if not isinstance(fb, list) or len(fb) > 16 or not all(
            isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) and isinstance(f[1], str | None) for f in fb):
        raise RelayError("codec feedback: at most 16 [type, parameter] pairs")
    return RTCRtpCodecParameters(mimeType=mime, clockRate=clock, channels=channels, payloadType=pt,
                                 rtcpFeedback=[RTCRtcpFeedback(type=t, parameter=p) for t, p in fb],
                                 parameters=dict(params))


def check_layers(layers: Any) -> list[tuple[str, int | None, int | None]]:
    """[(rid, ssrc, rtx_ssrc)] of a description, or RelayError."""
    if not isinstance(layers, list) or not 1 <= len(layers) <= 8:
        raise RelayError("layers: 1 to 8 of them")
    out = []
    for entry in layers:
        if not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[0], str) or len(entry[0]) > 16:
            raise RelayError("a layer is [rid, ssrc, rtx_ssrc]")
        for ssrc in entry[1:]:
            if ssrc is not None and (not isinstance(ssrc, int) or not 0 <= ssrc < 2**32):
                raise RelayError("a layer's SSRC is a 32-bit integer or null")
        out.append((entry[0], entry[1], entry[2]))
    return out


# --- the node's socket ---------------------------------------------------------------------------
class RelayPort(asyncio.DatagramProtocol):
    """One UDP socket per node for every relay in and out.

    In: RTP of relayed tracks (routed by SSRC to the Ingress that receives it), the publishers'
    sender reports passed on, and, for the tracks this node relays out, the destinations' PLIs and
    NACKs (routed by the media SSRC and the sender's address to the RelaySink). Only the relay
    addresses of linked nodes are heard (`allow`)."""

    def __init__(self, secure: bool = False) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.address: Address | None = None
        self.allowed: dict[Address, int] = {}  # address -> rooms linking it
        # SRTP between nodes: our key for what we send, and each linked node's for what it sends.
        # Repeated packets are allowed out (a NACKed packet resent as it was, without RTX) and a
        # wide replay window in (a relay passes on repairs that come up to a ring's length late)
        self.secure = secure
        self.key: bytes | None = os.urandom(KEY_BYTES) if secure else None
        self._out: Session | None = Session(_policy(self.key, Policy.SSRC_ANY_OUTBOUND)) if self.key else None
        self._in: dict[Address, tuple[bytes, Session]] = {}
        self.ingresses: dict[int, Ingress] = {}  # SSRC of a relayed-in layer -> its Ingress
        self.sinks: dict[tuple[Address, int], tuple[RelaySink, Layer]] = {}  # (destination, media SSRC)
        self.dropped: dict[str, int] = {}

    async def open(self, host: str = "127.0.0.1", port: int = 0) -> Address:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self.transport = transport
        sock = transport.get_extra_info("sockname")
        self.address = (sock[0], sock[1])
        return self.address

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def allow(self, addr: Address, key: bytes | None = None) -> None:
        """Hear `addr` (once more: one count per room linking it); `key`: its SRTP key (secure)."""
        if self.secure:
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise RelayError(f"a relay between nodes needs the other node's {KEY_BYTES}-byte SRTP key")
            held = self._in.get(addr)
            if held is None or held[0] != key:  # (a new life of that node has a new key)
                self._in[addr] = (key, Session(_policy(key, Policy.SSRC_ANY_INBOUND)))
        self.allowed[addr] = self.allowed.get(addr, 0) + 1

    def disallow(self, addr: Address) -> None:
        n = self.allowed.get(addr, 0) - 1
        if n > 0:
            self.allowed[addr] = n
        else:
            self.allowed.pop(addr, None)
            self._in.pop(addr, None)

    def send(self, data: bytes, addr: Address) -> None:
        if self.transport is None:
            return
        if self._out is not None:
            try:
                data = self._out.protect_rtcp(data) if 192 <= data[1] <= 223 else self._out.protect(data)
            except SrtpError:
                self._drop("relay_srtp_out")
                return
        self.transport.sendto(data, addr)

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        STATS.drop(reason)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        peer = (addr[0], addr[1])
        if peer not in self.allowed:
            self._drop("relay_stranger")
            return
        if len(data) < 8 or data[0] >> 6 != 2:
            self._drop("relay_malformed")
            return
        if self.secure:
            try:
                session = self._in[peer][1]
                data = session.unprotect_rtcp(data) if 192 <= data[1] <= 223 else session.unprotect(data)
            except (SrtpError, KeyError):
                self._drop("relay_srtp")
                return
        try:
            if 192 <= data[1] <= 223:  # RTCP (RFC 5761)
                self._rtcp(data, peer)
                return
            if len(data) < 12:
                self._drop("relay_malformed")
                return
            ingress = self.ingresses.get(int.from_bytes(data[8:12], "big"))
            if ingress is None:
                self._drop("relay_unknown_ssrc")
                return
            ingress.on_rtp(data, time.monotonic())
        except Exception:  # our bug, not the sender's: counted and logged, the socket goes on
            log.exception("relayed packet from %s", peer)
            self._drop("internal_error")

    def _rtcp(self, data: bytes, peer: Address) -> None:
        try:
            packets = artp.RtcpPacket.parse(data)
        except ValueError:
            self._drop("relay_malformed")
            return
        for p in packets:
            if isinstance(p, artp.RtcpSrPacket):
                ingress = self.ingresses.get(p.ssrc)
                if ingress is not None:
                    ingress.on_rtcp([p])
            elif isinstance(p, artp.RtcpPsfbPacket) and p.fmt == artp.RTCP_PSFB_PLI:
                entry = self.sinks.get((peer, p.media_ssrc))
                if entry is not None:
                    entry[0].rec.request_keyframe(entry[1].rid, "relay")
            elif isinstance(p, artp.RtcpRtpfbPacket) and p.fmt == artp.RTCP_RTPFB_NACK:
                entry = self.sinks.get((peer, p.media_ssrc))
                if entry is not None:
                    entry[0].resend(entry[1], p.lost[:RTX_WINDOW])

    def error_received(self, exc: Exception) -> None:
        log.debug("relay socket: %s", exc)


def _policy(key: bytes, ssrc_type: int) -> Policy:
    policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    policy.allow_repeat_tx = True
    policy.window_size = RTX_WINDOW
    return policy


# --- the source side ------------------------------------------------------------------------------
class RelaySink:
    """One published track relayed to one destination node: every packet of its layers, unchanged.

    A Subscription of the track like a DownTrack, but called from the Ingress apart from the
    DownTracks (`PublishedTrack.relays`). `needed`: the layers the destination's subscribers need,
    as its layer selector last said (dynacast takes the union); None until it has said."""

    def __init__(self, rec: PublishedTrack[DownTrack], port: RelayPort, destination: Address,
                 on_layers: Callable[[RelaySink], None]) -> None:
        self.rec = rec
        self.port = port
        self.destination = destination
        self.on_layers = on_layers  # the layers' SSRCs changed: the destination must hear of it
        self.needed: set[str] | None = None
        self.spatial: int | None = None  # SVC: the spatial layers the destination needs
        self._ssrcs: dict[str, tuple[int | None, int | None]] = {}
        self._serials: dict[str, list[int]] = {}  # rid -> the PacketRing serial of each seq slot
        self._rtx_seq: dict[int, int] = {}  # RTX SSRC -> its last sequence number (RFC 4588: one space each)

    def forward(self, data: bytes, seq: int, layer: Layer) -> None:
        if self._ssrcs.get(layer.rid) != (layer.ssrc, layer.rtx_ssrc):
            self._layers_changed()
        serials = self._serials.get(layer.rid)
        if serials is None:
            serials = self._serials[layer.rid] = [0] * RTX_WINDOW
        serials[seq % RTX_WINDOW] = layer.ring.store(seq, data)
        self.port.send(data, self.destination)
        STATS.relayed_packets_out += 1
        STATS.relayed_bytes_out += len(data)

    def _layers_changed(self) -> None:
        port = self.port
        for ssrc, _ in self._ssrcs.values():
            if ssrc is not None:
                port.sinks.pop((self.destination, ssrc), None)
        self._ssrcs = {layer.rid: (layer.ssrc, layer.rtx_ssrc) for layer in self.rec.layers.values()}
        for layer in self.rec.layers.values():
            if layer.ssrc is not None:
                port.sinks[(self.destination, layer.ssrc)] = (self, layer)
        self.on_layers(self)

    def on_publisher_sr(self, layer: Layer, ntp: int, rtp_ts: int) -> None:
        if layer.ssrc is None:
            return
        sr = artp.RtcpSrPacket(ssrc=layer.ssrc, sender_info=artp.RtcpSenderInfo(
            ntp_timestamp=ntp, rtp_timestamp=rtp_ts, packet_count=layer.packets & 0xFFFFFFFF,
            octet_count=layer.bytes & 0xFFFFFFFF))
        self.port.send(bytes(sr), self.destination)

    def resend(self, layer: Layer, seqs: list[int]) -> None:
        """The destination misses these: from the layer's PacketRing, as RTX when the publisher has it."""
        serials = self._serials.get(layer.rid)
        if serials is None:
            return
        for seq in seqs:
            data = layer.ring.get(seq, serials[seq % RTX_WINDOW])
            if data is None:
                continue
            rtx_pt = self._rtx_pt(data[1] & 0x7F)
            if rtx_pt is not None and layer.rtx_ssrc is not None:
                data = self._as_rtx(data, rtx_pt, layer.rtx_ssrc)
                if data is None:
                    continue
            self.port.send(data, self.destination)
            STATS.relay_resent += 1

    def _rtx_pt(self, media_pt: int) -> int | None:
        """The publisher's RTX payload type for packets of `media_pt`, if it negotiated one."""
        slot = self.rec.ingress.slots.get(self.rec.mid)  # type: ignore[attr-defined]
        for pt, codec in (slot.codecs.items() if slot is not None else ()):
            if codec.mimeType.lower().endswith("/rtx") and codec.parameters.get("apt") == media_pt:
                return pt
        return None

    def _as_rtx(self, data: bytes, rtx_pt: int, rtx_ssrc: int) -> bytes | None:
        try:
            view = rtp.parse(data)
        except rtp.RtpError:
            return None
        seq = self._rtx_seq[rtx_ssrc] = (self._rtx_seq.get(rtx_ssrc, random.getrandbits(16)) + 1) & 0xFFFF
        out = bytearray(data[: view.payload_start])
        out[0] &= 0xDF  # no padding on the copy
        rtp.HEADER.pack_into(out, 0, out[0], (data[1] & 0x80) | rtx_pt, seq, view.ts, rtx_ssrc)
        out += view.seq.to_bytes(2, "big")
        out += data[view.payload_start: view.payload_end]
        return bytes(out)

    def close(self) -> None:
        for ssrc, _ in self._ssrcs.values():
            if ssrc is not None and self.port.sinks.get((self.destination, ssrc), (None,))[0] is self:
                del self.port.sinks[(self.destination, ssrc)]


# --- the destination side -------------------------------------------------------------------------
class RelayUplink:
    """What a relayed-in Ingress sends its feedback through (in place of a publish transport): the
    node's RelayPort, to the source node's relay address."""

    def __init__(self, port: RelayPort, source: Address) -> None:
        self.port = port
        self.source = source
        self.closed = False

    def send_rtcp(self, packets: list[Any]) -> bool:
        if self.closed:
            return False
        self.port.send(b"".join(bytes(p) for p in packets), self.source)
        return True


def relayed_slot(desc: dict[str, Any], rtcp_ssrc: int) -> tuple[RecvSlot, dict[str, Any], list[str]]:
    """The RecvSlot a described track is received on, its checked info, and its rids; RelayError
    when the description is not one."""
    info, mid, codecs, ext = desc.get("info"), desc.get("mid"), desc.get("codecs"), desc.get("ext")
    if not isinstance(info, dict) or not isinstance(info.get("track"), str) or not isinstance(
            info.get("participant"), str) or info.get("kind") not in ("audio", "video"):
        raise RelayError("info: track, participant and kind (audio or video) are required")
    if not isinstance(mid, str) or not 1 <= len(mid) <= 32:
        raise RelayError("mid: a string of 1 to 32 characters")
    if not isinstance(codecs, list) or not 1 <= len(codecs) <= MAX_DESCRIBED_CODECS:
        raise RelayError(f"codecs: 1 to {MAX_DESCRIBED_CODECS} of them")
    if not isinstance(ext, list) or len(ext) > MAX_DESCRIBED_EXTENSIONS or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], int) and 1 <= e[0] <= 255
            and isinstance(e[1], str) and len(e[1]) <= 256 for e in ext):
        raise RelayError("ext: [id, uri] pairs")
    parsed = [_codec_in(c) for c in codecs]
    rids = [rid for rid, _, _ in check_layers(desc.get("layers"))]
    slot = RecvSlot(mid=mid, kind=info["kind"], codecs={c.payloadType or 0: c for c in parsed},
                    ext_ids={xid: uri for xid, uri in ext}, rtcp_ssrc=rtcp_ssrc)
    return slot, info, rids
