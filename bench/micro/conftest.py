"""Fixtures for the micro-benchmarks: real sfu objects wired to a fake transport, no network."""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from pylibsrtp import Policy, Session

from sfu import datapath, rtp
from sfu.ingress import ingress_class
from sfu.track import PublishedTrack
from sfu.transport import RecvSlot, SendSlot
from sfu.transport_seq import TransportSequence

MID_IN, AST_IN, TCC_IN = 9, 2, 3  # the publisher's extension ids (Chrome's numbering)
MID_OUT, AST_OUT = 4, 3  # what a subscriber m-line negotiated
PACKET_SIZE = 1200
BATCH_SUBSCRIBERS = 100  # subscribers of the track in the LayerSelector benchmark


def srtp_pair() -> tuple[Session, Session]:
    key = os.urandom(30)
    tx = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    tx.allow_repeat_tx = True  # a benchmark protects the same sequence numbers again and again
    rx = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    return Session(tx), Session(rx)


class FakeTransport:
    """Stands in for PeerTransport: `send_rtp` optionally SRTP-protects, never touches a socket."""

    def __init__(self, protect: bool = False) -> None:
        self.sent = 0
        self.closed = False
        self._srtp = srtp_pair()[0] if protect else None

    def send_rtp(self, data: bytes) -> bool:
        if self._srtp is not None:
            self._srtp.protect(data)
        self.sent += 1
        return True

    def send_rtcp(self, packets: Any) -> bool:
        b"".join(bytes(p) for p in packets)
        return True


class UdpTransport:
    """A subscriber transport's send side for real: SRTP (AES_CM_128_HMAC_SHA1_80) and a UDP datagram
    to a sink socket on 127.0.0.1 — on the Python path pylibsrtp + `socket.sendto` (what PeerTransport
    does), on the native path an `sfu._native.Egress` (what PeerTransport does with datapath native)."""

    def __init__(self, path: str, sink: socket.socket) -> None:
        self.closed = False
        self.sent = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        self.addr = sink.getsockname()
        key = os.urandom(30)
        self.sequence = TransportSequence()
        self.egress = None
        if path == "native":
            self.egress = datapath._native.Egress(self.sock.fileno(), self.addr, 1, key)
        else:
            policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                            srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
            policy.allow_repeat_tx = True
            self._protect = Session(policy).protect

    def transport_cc(self, *ssrcs: int) -> None:
        """Stamp transport-wide sequence numbers on these SSRCs' packets, as a subscriber transport
        does once its client negotiated transport-cc (sfu.transport_seq)."""
        self.sequence.xid = 4
        self.sequence.ssrcs.update(ssrcs)
        if self.egress is not None:
            self.egress.set_transport_seq(4, 0)
            for ssrc in ssrcs:
                self.egress.stamp_ssrc(ssrc)

    def send_rtp(self, data: bytes) -> bool:
        if self.egress is not None:
            return self.egress.send_rtp(data)
        if self.sequence.xid:
            data = self.sequence.stamp(data, time.monotonic())
        try:
            self.sock.sendto(self._protect(data), self.addr)
        except BlockingIOError:
            return False
        self.sent += 1
        return True

    def send_rtcp(self, packets: Any) -> bool:
        return True

    def close(self) -> None:
        if self.egress is not None:
            self.egress.close()
        self.sock.close()


def sink_socket() -> socket.socket:
    """Where the benchmark's datagrams go: a socket nobody reads (the kernel drops what overflows)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def vp8_packet(seq: int, ts: int, picture_id: int, start: bool, keyframe: bool, size: int = PACKET_SIZE,
               tcc: int | None = None) -> bytes:
    """`tcc`: a transport-wide sequence number to carry (under TCC_IN) as Chromium's packets do."""
    ext_body = bytes([(MID_IN << 4) | 0]) + b"1" + bytes([(AST_IN << 4) | 2]) + b"\x12\x34\x56"
    if tcc is not None:
        ext_body += bytes([(TCC_IN << 4) | 1]) + (tcc & 0xFFFF).to_bytes(2, "big")
    ext_body += bytes(-len(ext_body) % 4)
    ext = struct.pack("!HH", 0xBEDE, len(ext_body) // 4) + ext_body
    desc = struct.pack("!BBHB", 0x90 if start else 0x80, 0xC0, 0x8000 | picture_id, picture_id & 0xFF)
    vp8 = bytes([0x00 if keyframe else 0x01]) + b"\x00\x00\x9d\x01\x2a" + b"\x80\x02\x68\x01"
    header = rtp.HEADER.pack(0x90, 96 | 0x80, seq & 0xFFFF, ts & 0xFFFFFFFF, 0x11111111)
    body = header + ext + desc + vp8
    return body + bytes(size - len(body))


class Rig:
    """A published VP8 track with K subscribers, built from the real Ingress/PublishedTrack/DownTrack."""

    def __init__(self, fanout: int, protect: bool = False, path: str = "python", udp: bool = False,
                 udp_gso: bool = True, transport_cc: bool = False, uplink_cc: bool = False) -> None:
        """`transport_cc`: every subscriber transport stamps transport-wide numbers; `uplink_cc`: the
        publisher's packets carry them and the Ingress notes their arrival (instead of feeding REMB)."""
        datapath.configure(path, udp_gso=udp_gso)  # the Ingress's fan-out, the DownTracks' class, GSO
        self.sink = sink_socket() if udp else None
        codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
        self.ingress = ingress_class()("PA_bench")  # NativeIngress on the native path
        self.ingress.slots["1"] = RecvSlot(mid="1", kind="video", codecs={96: codec},
                                           ext_ids={MID_IN: rtp.URI_MID, AST_IN: rtp.URI_ABS_SEND_TIME}, rtcp_ssrc=7)
        self.ingress.extensions["1"] = {rtp.URI_MID: MID_IN, rtp.URI_ABS_SEND_TIME: AST_IN}
        self.rec = PublishedTrack("TR_bench_1", "PA_bench", "video", "1", codec, self.ingress)
        self.ingress.tracks["1"] = self.rec
        self.layer = self.rec.layer("")
        self.ingress._bind(self.rec, self.layer, 0x11111111, False)  # as an a=ssrc line would
        self.uplink_cc = uplink_cc
        if uplink_cc:
            self.ingress.tcc_id, self.ingress.arrivals = TCC_IN, datapath.transport_arrivals()
        self.transports = []
        for i in range(fanout):
            t = UdpTransport(path, self.sink) if self.sink is not None else FakeTransport(protect)
            if transport_cc:
                assert isinstance(t, UdpTransport), "transport-wide numbers are stamped by a UDP transport"
                t.transport_cc(0x2000 + i, 0x3000 + i)
            slot = SendSlot(transceiver=None, kind="video", ssrc=0x2000 + i, rtx_ssrc=0x3000 + i, mid="1", pt=98,
                            ext_ids={rtp.URI_MID: MID_OUT, rtp.URI_ABS_SEND_TIME: AST_OUT}, active=True)
            dt = datapath.downtrack_class()(self.rec, f"PA_sub{i}", t, slot)
            dt.set_target(self.layer)
            self.rec.downtracks.append(dt)
            self.transports.append(t)
        self.seq = 1000
        self.pid = 100
        # the first packet is a keyframe: every DownTrack starts forwarding on it
        self.ingress.on_rtp(vp8_packet(self.seq, 0, self.pid, True, True), 0.0)

    def close(self) -> None:
        for t in self.transports:
            if isinstance(t, UdpTransport):
                t.close()
        if self.sink is not None:
            self.sink.close()
        datapath.configure("python")

    def batch(self, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            self.seq += 1
            self.pid = (self.pid + 1) & 0x7FFF
            out.append(vp8_packet(self.seq, self.seq * 3000, self.pid, True, False,
                                  tcc=self.seq if self.uplink_cc else None))
        return out


@pytest.fixture
def rig_factory():
    rigs: list[Rig] = []

    def make(*args: Any, **kw: Any) -> Rig:
        rigs.append(Rig(*args, **kw))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()
