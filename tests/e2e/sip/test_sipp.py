"""Dial-in with sipp (issue #19), over UDP and over TCP: a call to sip:<room>@… joins the room as a
participant named by the From display name. The phone's 1 kHz tone (PCMU, played by sipp from a
pcap) is decoded from Opus by an aiortc participant in the room; that participant's 440 Hz tone
reaches the phone (recorded at the RTP port the phone's SDP names). BYE leaves the room.
Everything on 127.0.0.1."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from signalling.ports import free_port
from signalling.protocol.client import Client
from tests.support.media import Tone
from tests.support.sip import Recorder, dial_scenario, dominant, run_sipp, tone, ulaw_decode, ulaw_encode, write_pcap

# the subject is the SIP gateway, a room participant like any other: the servers' default data path
pytestmark = pytest.mark.timeout(120)

ROOM = "standup"
TONE_S = 4.0
HOLD_MS = 5000


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_dials_a_room_both_ways_hear_each_other_and_bye_leaves(make_server, tmp_path, transport):
    server = await make_server(sip_port=free_port())
    listener = Client(server.url)
    heard: list[np.ndarray] = []
    got_track = asyncio.Event()

    def on_track(info, track) -> None:
        if info["kind"] == "audio":
            got_track.set()
            asyncio.ensure_future(_record(track, heard))

    listener.on_track = on_track
    loop = asyncio.get_running_loop()
    phone_port = free_port()
    recorder = Recorder()
    rtp, _ = await loop.create_datagram_endpoint(lambda: recorder, local_addr=("127.0.0.1", phone_port))
    try:
        await listener.connect()
        await listener.join(ROOM, "listener")
        await listener.publish(audio=Tone())
        pcap = tmp_path / "tone.pcap"
        samples = tone(1000, TONE_S)
        write_pcap(pcap, [ulaw_encode(samples[i:i + 160]) for i in range(0, len(samples), 160)])
        call = asyncio.ensure_future(run_sipp(tmp_path, dial_scenario(pcap, HOLD_MS), f"127.0.0.1:{server.sip.port}",
                                              ROOM, free_port(), free_port(), {"rtp_port": str(phone_port)},
                                              transport))
        joined = await listener.wait_message("participant_joined", timeout=20)
        assert joined["participant"]["name"] == "Phone Caller", joined
        await asyncio.wait_for(got_track.wait(), 20)
        code, log = await call
        assert code == 0, f"sipp failed ({code}):\n{log}"

        # the room heard the phone: 1 kHz, in what the listener decoded while the tone played
        audio = np.concatenate(heard) if heard else np.zeros(0, np.int16)
        loud = _loudest_second(audio, 48000)
        assert loud is not None, f"the listener decoded {len(audio)} samples of the caller, none loud"
        assert abs(dominant(loud, 48000) - 1000) <= 20, dominant(loud, 48000)

        # the phone heard the room: 440 Hz, PCMU (payload type 0) at 20 ms a packet, from the gateway
        assert recorder.packets, "nothing reached the phone's RTP port"
        assert {pt for pt, _, _ in recorder.packets} == {0}
        pcm = ulaw_decode(b"".join(p for _, _, p in recorder.packets))
        phone_loud = _loudest_second(pcm, 8000)
        assert phone_loud is not None, f"the phone got {len(pcm)} samples, none loud"
        assert abs(dominant(phone_loud, 8000) - 440) <= 10, dominant(phone_loud, 8000)
        assert len(recorder.packets) >= (HOLD_MS / 1000 - 1) * 50  # 50 packets a second for the call
        print(f"room heard {dominant(loud, 48000):.0f} Hz ({len(audio) / 48000:.1f} s decoded); phone heard "
              f"{dominant(phone_loud, 8000):.0f} Hz ({len(recorder.packets)} packets from {recorder.sources}); "
              f"SIP stats {dict(server.sip.stats)}")

        # BYE: the caller left the room; nothing of the call stays at the SIP service
        await listener.wait_message("participant_left", timeout=10)
        assert [p.name for p in server.rooms.in_room(ROOM)] == ["listener"]
        assert server.sip.dialogs == {}
        assert server.sip.stats["request:INVITE"] == 1 and server.sip.stats["answer:200"] >= 2  # (INVITE, BYE)
        assert not any(k.startswith("drop:") for k in server.sip.stats), server.sip.stats
    finally:
        rtp.close()
        await listener.close()


async def _record(track, heard: list[np.ndarray]) -> None:
    from signalling.sip.media import mono

    try:
        while True:
            heard.append(mono(await track.recv()))
    except Exception:  # noqa: BLE001 - the track ended
        return


def _loudest_second(samples: np.ndarray, rate: int) -> np.ndarray | None:
    """The loudest whole second of `samples` (by RMS), if any is louder than quiet noise."""
    best, best_rms = None, 300.0
    for start in range(0, len(samples) - rate + 1, rate // 4):
        chunk = samples[start:start + rate]
        rms = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2)))
        if rms > best_rms:
            best, best_rms = chunk, rms
    return best
