"""Fuzz what another node of a spanning room can send (sfu.relay, sfu.cascade, signalling.run.roomlink).

Input: a control byte, then frames (`_harness.frames`). The control byte's low bit picks the data
path. Each frame's first byte picks where it goes: a datagram to the destination node's RelayPort
from the linked source node (RTP of relayed tracks, sender reports, or feedback), one to the source
node's RelayPort from the destination (PLI/NACK for the tracks it relays out), or a room link
message (msgpack) from the source node, as `RoomLink.receive` gets it off the bus.
The state: two linked nodes of one room in one process, sans IO (the RelayPorts' sockets record);
the source relays a publisher's simulcast video and audio to the destination.
Contract: `RelayPort.datagram_received` never raises and never counts `internal_error`; a room link
message changes state or is refused (RelayError, counted), nothing else; what a node holds stays
within the cascade's limits (remote participants, relayed tracks) and never names an SSRC twice.
"""

from __future__ import annotations

import asyncio

import msgpack
from _harness import Finding, frames, instrumented, main

with instrumented():
    from sfu import datapath
    from sfu.cascade import MAX_RELAYED_TRACKS, MAX_REMOTE_PARTICIPANTS, Cascade
    from sfu.data import DataRelay
    from sfu.ingress import ingress_class
    from sfu.metrics import STATS
    from sfu.relay import RelayPort, RelaySink, describe
    from sfu.transport import RecvSlot
    from signalling.run.roomlink import RoomLink

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)

SOURCE, DESTINATION = ("127.0.0.1", 40001), ("127.0.0.1", 40002)
PUB = {"id": "PA_pub", "name": "pub", "identity": "0xabc"}
# must match make_corpus.py relay_seeds()
VIDEO_SSRCS = {"q": (0x1001, 0x2001), "h": (0x1002, 0x2002), "f": (0x1003, 0x2003)}
AUDIO_SSRC = 0x3001


class Datagrams:
    """A RelayPort's socket, or the publisher's transport: counts what would be sent."""

    closed = False

    def __init__(self) -> None:
        self.sent = 0

    def send_rtcp(self, packets: list) -> bool:
        self.sent += len(b"".join(bytes(p) for p in packets)) > 0
        return True

    def sendto(self, data: bytes, addr: object) -> None:
        assert isinstance(data, bytes) and len(data) < 65536
        self.sent += 1

    def close(self) -> None:
        pass


class Room:
    """The part of a Router the Cascade calls."""

    name = "r"

    def __init__(self) -> None:
        self.peers: dict = {}
        self.remote: dict = {}
        self.relayed: dict = {}
        self.observe_audio = lambda *a: None
        self.data = DataRelay()

    @property
    def tracks(self) -> list:
        return list(self.relayed.values())

    def remote_joined(self, info: dict) -> None:
        self.remote[info["id"]] = info

    def remote_left(self, pid: str, reason: str) -> None:
        self.remote.pop(pid, None)

    def add_relayed(self, rec, name: str) -> None:
        self.relayed[rec.id] = rec

    def remove_relayed(self, rec) -> None:
        self.relayed.pop(rec.id, None)

    def relayed_muted(self, rec, muted: bool) -> None:
        rec.muted = muted


class Bus:
    def publish(self, channel: str, body: object) -> None:
        msgpack.packb(body, use_bin_type=True)  # what crosses must be encodable


def _port(address):
    p = RelayPort()
    p.transport, p.address = Datagrams(), address
    return p


def source_tracks():
    """The source node's publisher: simulcast VP8 (q/h/f, media + RTX SSRCs known) and Opus."""
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from sfu import rtp

    ingress = ingress_class()("PA_pub", lambda *a: None)
    video = RecvSlot(mid="0", kind="video", codecs={
        96: RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
        97: RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96})},
        ext_ids={4: rtp.URI_MID, 10: rtp.URI_RID, 2: rtp.URI_ABS_SEND_TIME}, rtcp_ssrc=7)
    audio = RecvSlot(mid="1", kind="audio", codecs={
        111: RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)},
        ext_ids={1: rtp.URI_AUDIO_LEVEL}, rtcp_ssrc=8)
    recs = ingress.configure(Datagrams(), [video, audio], {"1": [(AUDIO_SSRC, "media")]},
                             {"0": "TR_v", "1": "TR_a"}, {"0": ["q", "h", "f"]})
    ingress.close()
    for rid, (ssrc, rtx) in VIDEO_SSRCS.items():
        ingress.bind(recs[0], recs[0].layers[rid], ssrc, False)
        ingress.bind(recs[0], recs[0].layers[rid], rtx, True)
    return ingress, recs


async def run(data: bytes) -> None:
    datapath.configure("native" if data[0] & 1 else "python")
    ingress, recs = source_tracks()
    src_port, dst_port = _port(SOURCE), _port(DESTINATION)
    room = Room()
    cascade = Cascade(dst_port, lambda r, e, to: None, lambda name: room if name == "r" else None)
    link = RoomLink("B", "serve", Bus(), None, cascade)  # type: ignore[arg-type]
    cascade.member("r", "A", SOURCE)
    cascade.apply("r", "A", {"type": "joined", "participant": PUB})
    for rec in recs:
        cascade.apply("r", "A", {"type": "published", "track": describe(rec, "pub")})
        sink = RelaySink(rec, src_port, DESTINATION, lambda s: None)
        rec.relays.append(sink)
        src_port.sinks.update({(DESTINATION, layer.ssrc): (sink, layer) for layer in rec.layers.values()})
    src_port.allow(DESTINATION)
    internal = STATS.dropped.get("internal_error", 0)
    for frame in frames(data[1:]):
        if not frame:
            continue
        kind, body = frame[0] % 3, frame[1:]
        if kind == 0:
            dst_port.datagram_received(body, SOURCE)
        elif kind == 1:
            src_port.datagram_received(body, DESTINATION)
        else:
            try:
                event = msgpack.unpackb(body, raw=False, strict_map_key=False)
            except Exception:  # not msgpack: the bus refuses it before it reaches a node
                continue
            link.receive({"room": "r", "origin": "A", "event": event})
        if STATS.dropped.get("internal_error", 0) != internal:
            raise Finding("a relayed datagram raised inside the SFU (internal_error)")
        if len(room.remote) > MAX_REMOTE_PARTICIPANTS or len(cascade.relayed) > MAX_RELAYED_TRACKS:
            raise Finding("a node holds more of the other's room than the limits allow")
        owners = [ing for ing in dst_port.ingresses.values()]
        if len(owners) > 8 * (len(cascade.relayed) + 1):
            raise Finding(f"{len(owners)} SSRCs routed for {len(cascade.relayed)} relayed tracks")
    for ing in list(cascade.ingresses.values()):
        ing.close()
    await asyncio.sleep(0)


def test_one(data: bytes) -> None:
    if data:
        loop.run_until_complete(run(data))


if __name__ == "__main__":
    main(test_one)
