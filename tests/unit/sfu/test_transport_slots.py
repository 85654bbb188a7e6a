"""PeerTransport.add_slot: a send-only m-line carries none of aiortc's receive machinery."""

from __future__ import annotations

from aiortc import rtcrtpreceiver
from aiortc.rate import RemoteBitrateEstimator

from sfu.transport import PeerTransport


async def test_a_slot_gets_no_receive_estimator_and_aiortc_keeps_its_own():
    transport = PeerTransport(on_rtp=None, on_rtcp=None)
    try:
        slots = [transport.add_slot("video", "video/VP8"), transport.add_slot("audio", "audio/opus")]
        # aiortc would build a RemoteBitrateEstimator (~1,000 objects) per video receiver, on every
        # subscription of every join; the slot's receiver never runs, so it has none
        for slot in slots:
            assert slot.transceiver.receiver._RTCRtpReceiver__remote_bitrate_estimator is None
        # everyone else's aiortc (clients, the load generator) still gets one
        assert rtcrtpreceiver.RemoteBitrateEstimator is RemoteBitrateEstimator
        receiver = rtcrtpreceiver.RTCRtpReceiver("video", slots[0].transceiver.receiver.transport)
        assert isinstance(receiver._RTCRtpReceiver__remote_bitrate_estimator, RemoteBitrateEstimator)
    finally:
        await transport.close()
