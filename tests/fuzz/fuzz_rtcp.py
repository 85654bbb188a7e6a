"""Fuzz RTCP as the SFU handles it: aiortc's parser behind our boundary, then our handlers.

Input: one (compound) RTCP datagram, decrypted.
Path under test, both directions, exactly as `PeerTransport._hook` wires them:
  * subscribe transport: `PeerTransport._rtcp_in` (transport-wide feedback split out and parsed by
    `sfu.twcc`, the rest by aiortc `RtcpPacket.parse`) → `Peer._subscriber_rtcp` → `DownTrack.on_nack /
    on_pli / on_report`, `PeerTransport.on_transport_feedback` (the send history, the estimator),
    `LayerSelector.on_estimate`, `PlayoutDelay.on_nack / on_rtt`, then one selector round (probes);
  * publish transport: `PeerTransport._rtcp_in` → `Ingress.on_rtcp` (sender reports → SR translation).
Contract: malformed RTCP is a counted drop (`rtcp_dropped`) or ignored; nothing escapes `_rtcp_in`
(the aiortc hook catches what does, but counts it as an internal error and drops the whole compound
packet, so an escape is a bug); every RTCP packet the handlers send in reply can be serialised.
The subscriber has one VP8 DownTrack (SSRC 0x2000, RTX 0x3000) with a few packets in its NACK cache.
"""

from __future__ import annotations

import random
import types

from _harness import FakeTransport, cheap_remb_estimator, instrument_functions, instrumented, main
from aiortc import rtp as artp

with instrumented():
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from sfu import rtp
    from sfu.downtrack import DownTrack
    from sfu.ingress import Ingress
    from sfu.layers import LayerSelector
    from sfu.pacing import Pacing
    from sfu.peer import Peer
    from sfu.playout_delay import PlayoutDelay
    from sfu.track import PublishedTrack
    from sfu.transport import PeerTransport, RecvSlot, SendSlot
    from sfu.transport_seq import TransportSequence

instrument_functions(artp.RtcpPacket.parse, artp.RtcpSrPacket.parse, artp.RtcpRrPacket.parse,
                     artp.RtcpRtpfbPacket.parse, artp.RtcpPsfbPacket.parse, artp.RtcpSdesPacket.parse,
                     artp.RtcpByePacket.parse, artp.RtcpReceiverInfo.parse, artp.RtcpSenderInfo.parse,
                     artp.unpack_remb_fci)
cheap_remb_estimator()

MEDIA_SSRC = 0x11111111
SUB_SSRC, SUB_RTX_SSRC = 0x2000, 0x3000


def _vp8(seq: int, keyframe: bool) -> bytes:
    desc = bytes([0x90, 0x80, 0x80 | (seq >> 8) & 0x7F, seq & 0xFF])
    body = bytes([0x00 if keyframe else 0x01]) + b"\x00\x00\x9d\x01\x2a\x80\x02\x68\x01"
    return rtp.HEADER.pack(0x80, 96, seq, seq * 3000, MEDIA_SSRC) + desc + body + bytes(40)


def _transport(on_rtcp) -> PeerTransport:
    # The real class, without __init__: that would build an RTCPeerConnection, which the receive
    # boundary under test does not use.
    t = PeerTransport.__new__(PeerTransport)
    t.on_rtcp = on_rtcp
    t.rtcp_dropped = 0
    return t


class _Prober:
    """sfu.prober.Prober's interface without its task (the probe's sending is not under test)."""

    running = False
    ended_at = 0.0
    probes = 0

    def start(self, downtrack, padding_bps: float, seconds: float) -> bool:
        assert padding_bps > 0 and seconds > 0
        self.probes += 1
        return True


def build() -> tuple[PeerTransport, PeerTransport, LayerSelector]:
    random.seed(0)  # DownTrack draws its initial numbering at random: keep runs reproducible
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    ingress = Ingress("PA_pub")
    ingress.transport = FakeTransport()
    ingress.slots["0"] = RecvSlot(mid="0", kind="video", codecs={96: codec}, ext_ids={}, rtcp_ssrc=7)
    ingress.extensions["0"] = {}
    rec = PublishedTrack("TR_pub_0", "PA_pub", "video", "0", codec, ingress)
    ingress.tracks["0"] = rec
    layer = rec.layer("")
    layer.ssrc = MEDIA_SSRC
    ingress.by_ssrc[MEDIA_SSRC] = (rec, layer, False)

    # a stand-in Room (sfu.peer.Room): Peer calls only `on_estimate` on the RTCP path
    selector = LayerSelector()
    router = types.SimpleNamespace(on_estimate=lambda sub, bps, dts, scope: selector.on_estimate(
        sub.id, dts or sub.downtracks.values(), bps, scope))  # as sfu.router.Router.on_estimate
    peer = Peer("PA_sub", "sub", router, emit=lambda msg: None)
    slot = SendSlot(transceiver=None, kind="video", ssrc=SUB_SSRC, rtx_ssrc=SUB_RTX_SSRC, cname="fuzz", mid="1",
                    pt=96, rtx_pt=97, ext_ids={}, active=True, codec_name="VP8")
    dt = DownTrack(rec, peer.id, FakeTransport(), slot)
    dt.set_target(layer)
    rec.downtracks.append(dt)
    slot.downtrack = dt
    peer.downtracks[rec.id] = dt
    peer.slots_by_ssrc[SUB_SSRC] = slot
    for seq in range(100, 108):
        ingress.on_rtp(_vp8(seq, seq == 100), 1.0 + seq / 1000)
    # the subscribe transport numbered what it sent (transport-wide, id 4): 40 packets from number
    # 65,520 on (across the wrap), so feedback finds a history, an estimator and a prober
    subscribe = _transport(peer._subscriber_rtcp)
    subscribe.sequence = TransportSequence()
    subscribe.sequence.xid, subscribe.sequence.next, subscribe.sequence.ssrcs = 4, 65520, {SUB_SSRC}
    for k in range(40):
        subscribe.sequence.stamp(rtp.HEADER.pack(0x80, 96, k, 0, SUB_SSRC) + bytes(1000), 1.0 + k * 0.005)
    subscribe.estimator, subscribe._feedback_last, subscribe.egress = None, None, None
    subscribe.prober = _Prober()
    # NACKs and receiver reports feed its playout delay (negotiated on the video m-line)
    subscribe.playout_delay = PlayoutDelay()
    subscribe.playout_delay.negotiated(6, SUB_SSRC)
    # feedback's estimates set its pacing rate (the Python path's pacer: no egress)
    subscribe.pacing = Pacing()
    subscribe.pacing.negotiated(SUB_SSRC)
    peer.subscriber = subscribe
    selector.tracks = lambda: [rec]
    return subscribe, _transport(ingress.on_rtcp), selector


def test_one(data: bytes) -> None:
    subscribe, publish, selector = build()
    subscribe._rtcp_in(data)
    publish._rtcp_in(data)
    selector.evaluate(2.0)  # what an estimate from the feedback (and a probe) does to the policy


if __name__ == "__main__":
    main(test_one)
