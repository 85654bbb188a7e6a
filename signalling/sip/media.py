"""The SIP leg's media: RTP in and out (RFC 3550), G.711 through PyAV (PCMU, PCMA), a jitter buffer
with concealment towards the room, and the mix of the room towards the phone.

Audio inside the gateway is 48 kHz mono s16 in 20 ms frames (960 samples), what aiortc's Opus
encoder takes and its decoder gives (as stereo, averaged here). The leg's side is 8 kHz.
"""

from __future__ import annotations

import asyncio
import fractions
import struct
import time
from collections import deque

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RATE = 48_000
FRAME = 960  # 20 ms at 48 kHz
LEG_RATE = 8_000
LEG_FRAME = 160  # 20 ms at 8 kHz
PTIME_S = 0.02
AV_CODEC = {"PCMU": "pcm_mulaw", "PCMA": "pcm_alaw"}
MAX_WAITING = 64  # packets the jitter buffer holds out of order (about 1.3 s)
TARGET_DEPTH = 3  # packets buffered before playing out (60 ms): what a loopback or LAN needs
GIVE_UP_S = 0.08  # a missing packet this long behind its successor is concealed, not waited for
MAX_CONCEALED = 3  # frames concealed per gap; a longer one is skipped (silence, not held in the buffer)
MAX_QUEUED = 10 * 3  # frames of samples the buffer holds at most (600 ms), the oldest dropped past it
MAX_QUEUED_S = 0.2  # per room track: more than this waiting to be mixed is dropped (the oldest)


class RtpError(ValueError):
    pass


def parse_rtp(data: bytes) -> tuple[int, int, int, int, bytes]:
    """(payload type, sequence number, timestamp, SSRC, payload) of an RTP packet (RFC 3550 §5.1)."""
    if len(data) < 12:
        raise RtpError("shorter than an RTP header")
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    if b0 >> 6 != 2:
        raise RtpError("not RTP version 2")
    pos = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if len(data) < pos + 4:
            raise RtpError("truncated header extension")
        pos += 4 + 4 * struct.unpack_from("!H", data, pos + 2)[0]
    end = len(data)
    if b0 & 0x20:
        if end == 0 or data[-1] == 0 or data[-1] > end - pos:
            raise RtpError("bad padding")
        end -= data[-1]
    if pos > end:
        raise RtpError("header longer than the packet")
    return b1 & 0x7F, seq, ts, ssrc, data[pos:end]


def build_rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def audio_frame(samples: np.ndarray, rate: int, pts: int | None = None) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.int16), format="s16", layout="mono")
    frame.sample_rate = rate
    if pts is not None:
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, rate)
    return frame


def mono(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame as 48 kHz-or-whatever mono int16 samples (channels averaged)."""
    a = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_packed and channels > 1:
        a = a.reshape(-1, channels).T
    a = a.reshape(channels, -1).astype(np.int32)
    return (a.sum(axis=0) // channels).astype(np.int16)


class LegDecoder:
    """Leg payloads (20 ms or any ptime) -> 8 kHz samples. A payload the codec refuses is counted
    and yields nothing (the jitter buffer conceals it); the codec is made anew after it, since
    FFmpeg leaves a context that failed (or was flushed) refusing everything after."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self.failed = 0
        self.ctx = self._context()

    def _context(self) -> av.CodecContext:
        ctx = av.CodecContext.create(AV_CODEC[self.codec], "r")
        ctx.format = "s16"
        ctx.layout = "mono"
        ctx.sample_rate = LEG_RATE
        return ctx

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:  # (an empty packet would flush the decoder: callers drop them first)
            return np.zeros(0, np.int16)
        try:
            out = [mono(f) for f in self.ctx.decode(av.Packet(payload))]
        except av.error.FFmpegError:
            self.failed += 1
            self.ctx = self._context()
            return np.zeros(0, np.int16)
        return np.concatenate(out) if out else np.zeros(0, np.int16)


class LegEncoder:
    """48 kHz mono frames -> leg payloads of 20 ms."""

    def __init__(self, codec: str) -> None:
        self.ctx = av.CodecContext.create(AV_CODEC[codec], "w")
        self.ctx.format = "s16"
        self.ctx.layout = "mono"
        self.ctx.sample_rate = LEG_RATE
        self.ctx.time_base = fractions.Fraction(1, LEG_RATE)
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=LEG_RATE, frame_size=LEG_FRAME)

    def encode(self, frame: av.AudioFrame) -> list[bytes]:
        return [bytes(p) for f in self.resampler.resample(frame) for p in self.ctx.encode(f)]


class JitterBuffer:
    """The caller's packets in sequence order, as 8 kHz samples: a gap is waited for while its
    successors are younger than GIVE_UP_S, then concealed (the last 20 ms again, halved each time,
    at most MAX_CONCEALED frames: a longer gap is silence the buffer does not hold) so that the room
    hears a steady stream. Bounded: at most MAX_WAITING packets held out of order, at most
    MAX_QUEUED frames of samples (the oldest dropped: a sender faster than real time, or a clock
    that drifts, costs audio, not memory and latency). A new SSRC, or a sequence number that jumps
    by more than MAX_WAITING (a PBX's transfer, a phone restarting its stream), starts it afresh
    (RFC 3550 A.1)."""

    def __init__(self, decoder: LegDecoder) -> None:
        self.decoder = decoder
        self.waiting: dict[int, tuple[bytes, float]] = {}  # extended seq -> (payload, arrival)
        self.next: int | None = None
        self.samples: deque[np.ndarray] = deque()
        self.queued = 0
        self.last = np.zeros(LEG_FRAME, np.int16)
        self.concealed = self.late = self.dropped = self.received = self.resets = self.overflow = 0
        self.started = False
        self.ssrc: int | None = None
        self._highest: int | None = None

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            return seq
        base = self._highest & ~0xFFFF
        cands = (base - 0x10000 + seq, base + seq, base + 0x10000 + seq)
        return min(cands, key=lambda c: abs(c - self._highest))

    def push(self, seq: int, payload: bytes, now: float, ssrc: int = 0) -> None:
        self.received += 1
        ext = self._extend(seq)
        if self.ssrc != ssrc or (self._highest is not None and abs(ext - self._highest) > MAX_WAITING):
            if self.ssrc is not None:
                self.resets += 1
            self.ssrc, self.waiting, self.next, self._highest = ssrc, {}, None, None
            ext = seq
        self._highest = ext if self._highest is None else max(self._highest, ext)
        if self.next is not None and ext < self.next:
            self.late += 1
            return
        if len(self.waiting) >= MAX_WAITING:
            self.dropped += 1
            return
        self.waiting.setdefault(ext, (payload, now))
        if self.next is None:
            self.next = ext
        self._release(now)

    def _release(self, now: float) -> None:
        while self.waiting and self.next is not None:
            if self.next in self.waiting:
                payload, _ = self.waiting.pop(self.next)
                self._append(self.decoder.decode(payload))
                self.next += 1
                continue
            oldest_after = min(self.waiting)
            if now - self.waiting[oldest_after][1] < GIVE_UP_S:
                return
            # the gap is not coming: conceal (a little of) it and go on after it
            for _ in range(min(oldest_after - self.next, MAX_CONCEALED)):
                self.concealed += 1
                self._append((self.last * 0.5).astype(np.int16))
            self.next = oldest_after

    def _append(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        self.last = samples[-LEG_FRAME:] if len(samples) >= LEG_FRAME else self.last
        self.samples.append(samples)
        self.queued += len(samples)
        while self.queued > MAX_QUEUED * LEG_FRAME:
            self.overflow += 1
            self.queued -= len(self.samples.popleft())

    def pop(self, now: float) -> np.ndarray:
        """The next 20 ms (LEG_FRAME samples), silence while nothing is buffered (before the first
        packets, or after the caller stopped sending: comfort-noise packets bring none)."""
        self._release(now)
        if not self.started:
            if self.queued < TARGET_DEPTH * LEG_FRAME:
                return np.zeros(LEG_FRAME, np.int16)
            self.started = True
        out = np.zeros(LEG_FRAME, np.int16)
        filled = 0
        while filled < LEG_FRAME and self.samples:
            chunk = self.samples[0]
            take = min(LEG_FRAME - filled, len(chunk))
            out[filled:filled + take] = chunk[:take]
            filled += take
            if take == len(chunk):
                self.samples.popleft()
            else:
                self.samples[0] = chunk[take:]
            self.queued -= take
        if filled < LEG_FRAME:
            self.started = False  # ran dry: build the depth up again
        return out


class CallerTrack(MediaStreamTrack):
    """What the caller says, published into the room: 20 ms frames at 48 kHz, paced by the clock
    (aiortc's sender asks as fast as it is answered), from the jitter buffer."""

    kind = "audio"

    def __init__(self, buffer: JitterBuffer) -> None:
        super().__init__()
        self.buffer = buffer
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE, frame_size=FRAME)
        self._start: float | None = None
        self._pts = 0
        self._ready: deque[av.AudioFrame] = deque()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._pts / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        while not self._ready:
            leg = audio_frame(self.buffer.pop(time.monotonic()), LEG_RATE)
            self._ready.extend(self.resampler.resample(leg))
        frame = self._ready.popleft()
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += frame.samples
        return frame


class Mixer:
    """The room's audio towards the phone: each remote track read as it comes, and every 20 ms the
    sum of what each has queued (clipped), encoded for the leg."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[np.ndarray]] = {}
        self.tasks: dict[str, asyncio.Task] = {}

    def add(self, track_id: str, track: MediaStreamTrack) -> None:
        if track_id in self.tasks:
            return
        queue: deque[np.ndarray] = deque()
        self.queues[track_id] = queue
        self.tasks[track_id] = asyncio.ensure_future(self._read(track_id, track, queue))

    async def _read(self, track_id: str, track: MediaStreamTrack, queue: deque[np.ndarray]) -> None:
        limit = int(MAX_QUEUED_S * RATE)
        try:
            while True:
                frame = await track.recv()
                samples = mono(frame)
                if frame.sample_rate != RATE:
                    continue  # (aiortc's Opus decoder gives 48 kHz)
                queue.append(samples)
                while sum(len(q) for q in queue) > limit:
                    queue.popleft()
        except MediaStreamError:
            pass
        finally:
            self.queues.pop(track_id, None)
            self.tasks.pop(track_id, None)

    def mix(self) -> np.ndarray:
        total = np.zeros(FRAME, np.int32)
        for queue in list(self.queues.values()):
            filled = 0
            while filled < FRAME and queue:
                chunk = queue[0]
                take = min(FRAME - filled, len(chunk))
                total[filled:filled + take] += chunk[:take]
                filled += take
                if take == len(chunk):
                    queue.popleft()
                else:
                    queue[0] = chunk[take:]
        return np.clip(total, -32768, 32767).astype(np.int16)

    def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
