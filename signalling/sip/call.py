"""One SIP call into a room: a room participant whose microphone is the caller and whose ears are
the phone (the media gateway of docs/sip.md).

The participant is an ordinary client of the signalling server (`signalling.protocol.client`): it
publishes the caller's audio (G.711 from the phone, through a jitter buffer, Opus into the room, with
the audio-level extension aiortc adds, so active speaker and the session summary count the caller),
and it subscribes to the room's audio, which it mixes (the caller's own voice is not in it: nobody
receives their own track) and sends to the phone as G.711 every 20 ms. Video in the room is turned
off for it. The phone's RTP is taken from the address its SDP names only.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiortc.mediastreams import MediaStreamTrack

from signalling.protocol.client import Client, ServerError
from signalling.sip.media import (
    PTIME_S,
    CallerTrack,
    JitterBuffer,
    LegDecoder,
    LegEncoder,
    Mixer,
    RtpError,
    audio_frame,
    build_rtp,
    parse_rtp,
)
from signalling.sip.media import RATE as ROOM_RATE
from signalling.sip.sdp import CODECS, AudioOffer, answer

log = logging.getLogger("basement.sip")

RTP_TIMEOUT_S = 60.0  # a phone that sends nothing for this long is gone (it would send comfort noise)


class CallError(Exception):
    """The call cannot go into the room: `status` and `reason` are the SIP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


# a refused join (the server's error code) -> the SIP answer
_JOIN_ERRORS = {"unauthorized": (403, "Forbidden"), "room_full": (486, "Busy Here"), "bad_field": (404, "Not Found"),
                "rate_limited": (503, "Service Unavailable")}


class _Leg(asyncio.DatagramProtocol):
    def __init__(self, call: Call) -> None:
        self.call = call

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.call.on_rtp(data, addr)


class Call:
    def __init__(self, server_url: str, room: str, name: str, offer: AudioOffer, media_host: str,
                 ssl: Any = True, on_end: Callable[[Call, str], None] | None = None) -> None:
        codec = offer.choose()
        if codec is None:
            raise CallError(488, "Not Acceptable Here")
        self.codec, self.pt = codec
        self.room, self.name, self.offer = room, name, offer
        self.media_host = media_host
        self.client = Client(server_url, ssl=ssl, resume=True)
        self.buffer = JitterBuffer(LegDecoder(self.codec))
        self.track = CallerTrack(self.buffer)
        self.mixer = Mixer()
        self.encoder = LegEncoder(self.codec)
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self._sender: asyncio.Task | None = None
        self.on_end = on_end
        self.ended = False
        self.end_reason = ""
        self.last_rtp = time.monotonic()
        self.session, self.version = secrets.randbelow(2**31), 1  # our SDP's o= id and version
        self.dropped = 0  # datagrams not taken: another source, not RTP, another payload type
        self.dtmf = 0  # telephone-event packets (RFC 4733): PIN entry and *6 come with #19's next part

    async def start(self) -> bytes:
        """Open the RTP port, join the room and publish the caller; the SDP answer. CallError when
        the room refuses."""
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: _Leg(self),
                                                                local_addr=(self.media_host, 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        try:
            self.client.on_track = self._on_track
            await self.client.connect()
            await self.client.join(self.room, self.name)
            await self.client.publish(audio=self.track)
        except ServerError as e:
            await self.stop("refused")
            status, reason = _JOIN_ERRORS.get(e.code, (480, "Temporarily Unavailable"))
            raise CallError(status, reason) from e
        except (OSError, TimeoutError, aiohttp.ClientError) as e:  # (a 429 from the WebSocket's limits too)
            await self.stop("unreachable")
            raise CallError(503, "Service Unavailable") from e
        except BaseException:
            await self.stop("failed")
            raise
        self._sender = asyncio.ensure_future(self._send_loop())
        log.info("SIP call %s joined %s as %r (%s)", self.client.participant and self.client.participant["id"],
                 self.room, self.name, self.codec)
        return answer(self.offer, (self.codec, self.pt), self.media_host, self.port, self.session)

    def reoffer(self, offer: AudioOffer) -> bytes:
        """A re-INVITE's offer (a new address or port, hold, a session refresh): the call goes on
        with the codec it has, to where the offer says; the answer. CallError when the offer no
        longer has the codec."""
        if (self.codec, self.pt) not in [(n, pt) for pt, (n, _) in offer.payload_types.items()]:
            raise CallError(488, "Not Acceptable Here")
        self.offer = offer
        self.version += 1
        return answer(offer, (self.codec, self.pt), self.media_host, self.port, self.session, self.version)

    def _on_track(self, info: dict[str, Any], track: MediaStreamTrack) -> None:
        if info.get("kind") == "audio":
            self.mixer.add(info["track"], track)
        else:  # a phone has no screen: the SFU sends it none of the room's video
            asyncio.ensure_future(self.client.subscription(info["track"], layer="off"))

    def on_rtp(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr[0] != self.offer.host:
            self.dropped += 1
            return
        try:
            pt, seq, _, ssrc, payload = parse_rtp(data)
        except RtpError:
            self.dropped += 1
            return
        self.last_rtp = time.monotonic()
        if pt == self.pt and payload:
            self.buffer.push(seq, payload, self.last_rtp, ssrc)
        elif pt == self.offer.telephone_event:
            self.dtmf += 1
        else:
            self.dropped += 1  # (comfort noise, PT 13, among them: silence is what the buffer plays)

    async def _send_loop(self) -> None:
        """Every 20 ms, on a schedule that does not drift: the room's mix, encoded, to the phone."""
        start, n = time.monotonic(), 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, start + n * PTIME_S - time.monotonic()))
            if n % 50 == 0:  # once a second: is the call still there on both sides?
                why = self._gone(time.monotonic())
                if why is not None:
                    asyncio.ensure_future(self.stop(why))
                    return
            frame = audio_frame(self.mixer.mix(), ROOM_RATE, (n - 1) * int(ROOM_RATE * PTIME_S))
            # (where to, and whether: read each time, a re-INVITE may have moved the phone or held it)
            send = self.offer.direction in ("sendrecv", "recvonly") and self.offer.port != 0
            for payload in self.encoder.encode(frame):
                if send and self.transport is not None:
                    self.transport.sendto(build_rtp(self.pt, self.seq, self.ts, self.ssrc, payload),
                                          (self.offer.host, self.offer.port))
                self.seq = (self.seq + 1) & 0xFFFF
                self.ts = (self.ts + CODECS[self.codec][1] * 20 // 1000) & 0xFFFFFFFF

    def _gone(self, now: float) -> str | None:
        """Why the call should end though nobody hung up: the phone silent for RTP_TIMEOUT_S (no
        RTP, not even comfort noise: it is gone without a BYE), or the room let the participant go
        (removed, or its connection lost for good)."""
        if now - self.last_rtp > RTP_TIMEOUT_S and self.offer.direction in ("sendrecv", "sendonly"):
            return "no RTP from the phone"
        if self.client._ended or self.client.resume_error is not None or (
                self.client.ws is not None and self.client.ws.closed and self.client._resuming is None):
            return "removed from the room"
        return None

    async def stop(self, reason: str = "hung up") -> None:
        """Leave the room and close the RTP port; `on_end` is told unless the phone hung up."""
        if self.ended:
            return
        self.ended = True
        self.end_reason = reason
        if self._sender is not None and self._sender is not asyncio.current_task():
            self._sender.cancel()
        self.mixer.close()
        self.track.stop()
        try:
            await self.client.leave()
        finally:
            await self.client.close()
            if self.transport is not None:
                self.transport.close()
            if self.on_end is not None:
                self.on_end(self, reason)
