"""A publisher Ingress and subscriber DownTracks wired to recording transports: no sockets, no loop.

The Ingress is set up through `Ingress.configure`, as `Peer.publish` does after negotiation; the
transports keep every RTP packet and every RTCP compound as the bytes that would be protected and
sent. DownTracks start from a known numbering through `DownTrack.inherit` (the recycled-m-line
hand-over), so expected output bytes can be written out exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from sfu import datapath, rtp
from sfu.downtrack import DownTrack
from sfu.ingress import ingress_class
from sfu.pacing import Pacing
from sfu.playout_delay import PlayoutDelay
from sfu.transport import RecvSlot, SendSlot

# Chromium's numbering of a publisher's extension ids, without transport-wide CC (the publisher then
# gets REMB, as aiortc's do); TCC_EXT: with it (Chromium's and Firefox's offers: transport feedback)
AUDIO_EXT = {1: rtp.URI_AUDIO_LEVEL, 2: rtp.URI_ABS_SEND_TIME, 4: rtp.URI_MID}
VIDEO_EXT = {2: rtp.URI_ABS_SEND_TIME, 4: rtp.URI_MID, 10: rtp.URI_RID, 11: rtp.URI_RRID}
TCC_ID = 3
TCC_EXT = {**VIDEO_EXT, TCC_ID: rtp.URI_TWCC}
# the subscriber's m-line numbers them differently
OUT_EXT = {rtp.URI_AUDIO_LEVEL: 3, rtp.URI_ABS_SEND_TIME: 5, rtp.URI_MID: 9}

RTCP_SSRC = 0x0000FEED  # the SFU's SSRC as the sender of feedback on the publish m-line
OUT_SSRC, OUT_RTX_SSRC = 0x5EB5C001, 0x5EB5C002
OUT_PT = {"VP8": 96, "H264": 102, "VP9": 98, "AV1": 100, "opus": 111}
OUT_RTX_PT = {"VP8": 97, "H264": 103, "VP9": 99, "AV1": 101}
CNAME = "sub-cname"

# (last_seq, last_ts, last_sent_at, last_pid, last_tl0, rtx_seq, started): the first packet out is
# seq 1000 with timestamp 5000; PictureID/TL0PICIDX pass through until the first switch
START = (999, 5000, 0.0, 100, 7, 300, False)


class Wire:
    """Stands in for PeerTransport: records the bytes `send_rtp`/`send_rtcp` would protect and send."""

    def __init__(self) -> None:
        self.closed = False
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.pacing = Pacing()
        self.playout_delay = PlayoutDelay()

    def send_rtp(self, data: bytes) -> bool:
        assert isinstance(data, bytes)
        self.rtp.append(data)
        return True

    def send_rtcp(self, packets: Any) -> bool:
        self.rtcp.append(b"".join(bytes(p) for p in packets))  # what PeerTransport.send_rtcp does first
        return True


def codecs(name: str) -> dict[int, RTCRtpCodecParameters]:
    if name == "opus":
        return {111: RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)}
    pt = {"VP8": 96, "VP9": 98, "AV1": 45}.get(name, 102)  # (Chromium offers AV1 at 45)
    return {
        pt: RTCRtpCodecParameters(mimeType=f"video/{name}", clockRate=90000, payloadType=pt),
        pt + 1: RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=pt + 1,
                                      parameters={"apt": pt}),
    }


def publish(codec: str = "VP8", rids: list[str] | None = None, ssrcs: list[tuple[int, str]] | None = None,
            on_audio_level: Any = None, ext: dict[int, str] | None = None):
    """A configured Ingress with one m-line (mid "0"). Returns (ingress, receiver, publisher wire)."""
    kind = "audio" if codec == "opus" else "video"
    slot = RecvSlot(mid="0", kind=kind, codecs=codecs(codec),
                    ext_ids=dict(ext if ext is not None else AUDIO_EXT if kind == "audio" else VIDEO_EXT),
                    rtcp_ssrc=RTCP_SSRC)
    ingress = ingress_class()("PA_pub", on_audio_level)  # the configured data path's
    wire = Wire()

    async def configure() -> list:
        # configure() starts the RTCP loop; tests drive rounds themselves, so it is cancelled at once
        created = ingress.configure(wire, [slot], {"0": ssrcs or []}, {"0": "TR_pub_0"}, {"0": rids or []})
        ingress.close()
        await asyncio.sleep(0)
        return created

    (rec,) = asyncio.run(configure())
    return ingress, rec, wire


def subscribe(rec: Any, *, mid: str = "1", rtx: bool = True, active: bool = True, start: tuple = START,
              rtx_budget: float = 10.0, ext_ids: dict[str, int] | None = None) -> tuple[DownTrack, Wire]:
    """A DownTrack of `rec` on a subscriber m-line, numbering continued from `start`, no target yet."""
    name = rec.codec_name if rec.kind == "video" else "opus"
    slot = SendSlot(transceiver=None, kind=rec.kind, ssrc=OUT_SSRC, rtx_ssrc=OUT_RTX_SSRC, cname=CNAME, mid=mid,
                    pt=OUT_PT[name], rtx_pt=OUT_RTX_PT.get(name, 0) if rtx else 0,
                    ext_ids=dict(OUT_EXT if ext_ids is None else ext_ids), active=active, codec_name=rec.codec_name)
    wire = Wire()
    dt = datapath.downtrack_class()(rec, "PA_sub", wire, slot, rtx_budget=rtx_budget)
    dt.inherit(start)
    slot.downtrack = dt
    rec.downtracks.append(dt)
    return dt, wire
