"""Fuzz the ingress path: `Ingress.on_rtp` on a configured publish transport, with subscribers.

Input: one configuration byte, then up to 64 length-prefixed RTP datagrams (see `_harness.frames`).
The configuration byte picks the codec (VP8, H.264, Opus), simulcast (rids q/h/f, learnt from
MID/RID/repaired-RID extensions as with Chromium) or a single layer, and whether the offer had
a=ssrc lines (media + RTX), and (its top bit) the data path: the native one parses, keeps reception
statistics and estimates bandwidth in C (sfu/native: parse.c, reception.c, remb.c) and forwards
with NativeDownTrack. The Ingress is set up through `Ingress.configure`, as `Peer.publish`
does after negotiation, and each track has one subscriber DownTrack (fake transport, no sockets).

Contract (sfu/ingress.py, docs/architecture.md):
  * `on_rtp` never raises: bad input is a counted drop;
  * state stays bounded by what was signalled: a simulcast track has only the offered rids as
    layers, a single-layer track one layer, and at most a media and an RTX SSRC per layer;
  * the feedback a publisher is owed (`_reports`: RR, REMB) can always be built and serialised
    (the RTCP loop swallows the error, so a failure here silently ends all upstream feedback).
"""

from __future__ import annotations

import asyncio
import random

from _harness import FakeTransport, Finding, cheap_remb_estimator, frames, instrumented, main

with instrumented():
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from sfu import datapath, rtp
    from sfu.downtrack import DownTrack
    from sfu.ingress import Ingress, ingress_class
    from sfu.transport import RecvSlot, SendSlot

LOOP = asyncio.new_event_loop()
cheap_remb_estimator()

# Chromium's numbering of the publisher's extension ids
AUDIO_EXT = {1: rtp.URI_AUDIO_LEVEL, 2: rtp.URI_ABS_SEND_TIME, 4: rtp.URI_MID}
VIDEO_EXT = {2: rtp.URI_ABS_SEND_TIME, 3: rtp.URI_TWCC, 4: rtp.URI_MID, 10: rtp.URI_RID, 11: rtp.URI_RRID}
SIMULCAST_RIDS = ["q", "h", "f"]
MEDIA_SSRC, RTX_SSRC = 0x11111111, 0x22222222


def _codecs(kind: int) -> tuple[str, dict[int, RTCRtpCodecParameters]]:
    if kind == 2:
        return "audio", {111: RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2,
                                                    payloadType=111)}
    name, pt = ("H264", 102) if kind == 1 else ("VP8", 96)
    return "video", {
        pt: RTCRtpCodecParameters(mimeType=f"video/{name}", clockRate=90000, payloadType=pt),
        pt + 1: RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=pt + 1,
                                      parameters={"apt": pt}),
    }


def build(config: int) -> tuple[Ingress, list[DownTrack]]:
    datapath.configure("native" if config & 0x80 and datapath.available() else "python")
    random.seed(0)  # DownTrack draws its initial numbering at random: keep runs reproducible
    kind, codecs = _codecs(config & 3 if config & 3 != 3 else 0)
    simulcast = kind == "video" and bool(config & 4)
    hints = [] if simulcast or not config & 8 else [(MEDIA_SSRC, "media")]
    if hints and kind == "video":
        hints.append((RTX_SSRC, "rtx"))
    ext = AUDIO_EXT if kind == "audio" else VIDEO_EXT
    slot = RecvSlot(mid="0", kind=kind, codecs=codecs, ext_ids=dict(ext), rtcp_ssrc=7)
    levels: list[int] = []

    def on_level(participant: str, level: int, arrival: float) -> None:
        if not 0 <= level <= 127:
            raise Finding(f"audio level {level} outside RFC 6464's 0..127")
        levels.append(level)

    ingress = ingress_class()("PA_pub", on_level)  # NativeIngress on the native path
    transport = FakeTransport()

    async def configure() -> list:
        # configure() starts the RTCP loop task, so it needs a running loop; the harness drives
        # `_reports()` itself, so the task is cancelled and allowed to finish at once
        created = ingress.configure(transport, [slot], {"0": hints}, {"0": "TR_pub_0"},
                                    {"0": SIMULCAST_RIDS if simulcast else []})
        ingress.close()
        await asyncio.sleep(0)
        return created

    created = LOOP.run_until_complete(configure())
    downtracks = []
    for rec in created:
        media_pt = next(pt for pt, c in codecs.items() if not c.mimeType.endswith("/rtx"))
        out = SendSlot(transceiver=None, kind=rec.kind, ssrc=0x2000, rtx_ssrc=0x3000, mid="1", pt=media_pt,
                       rtx_pt=media_pt + 1 if kind == "video" else 0,
                       ext_ids={rtp.URI_MID: 9, rtp.URI_ABS_SEND_TIME: 3, rtp.URI_AUDIO_LEVEL: 1}, active=True,
                       codec_name=rec.codec_name)
        dt = datapath.downtrack_class()(rec, "PA_sub", FakeTransport(), out)
        layers = list(rec.layers.values())
        dt.set_target(layers[(config >> 4) % len(layers)])
        rec.downtracks.append(dt)
        downtracks.append(dt)
    return ingress, downtracks


def test_one(data: bytes) -> None:
    if not data:
        return
    ingress, downtracks = build(data[0])
    arrival = 100.0
    for packet in frames(data[1:]):
        arrival += 0.005
        ingress.on_rtp(packet, arrival)
    for rec in ingress.tracks.values():
        allowed = set(SIMULCAST_RIDS) if rec.simulcast else {""}
        extra = set(rec.layers) - allowed
        if extra:
            raise Finding(f"unsignalled layers created: {sorted(extra)[:5]} ({len(extra)} in all)")
    n_layers = sum(len(r.layers) for r in ingress.tracks.values())
    if len(ingress.by_ssrc) > 2 * n_layers:
        raise Finding(f"{len(ingress.by_ssrc)} SSRCs learnt for {n_layers} layers")
    ingress.transport.send_rtcp(ingress._reports())


if __name__ == "__main__":
    main(test_one)
