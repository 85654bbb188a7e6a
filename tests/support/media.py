"""Test media: video with a frame counter burnt into the picture, a tone, and frame consumers."""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import numpy as np
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

BITS = 12


class CounterVideo(VideoStreamTrack):
    """A moving picture whose top strip encodes the frame index in black/white blocks."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.w, self.h = width, height
        self.block = width // BITS
        self.index = 0
        yy, xx = np.mgrid[0:height, 0:width]
        self._base = ((xx + yy) % 256).astype(np.int32)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        img = np.empty((self.h, self.w, 3), dtype=np.uint8)
        img[..., 0] = (self._base + 3 * self.index) % 256
        img[..., 1] = 128
        img[..., 2] = (self._base // 2) % 256
        for b in range(BITS):
            img[0 : self.block, b * self.block : (b + 1) * self.block] = 255 if (self.index >> b) & 1 else 0
        frame = VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.index += 1
        return frame


def read_counter(frame: VideoFrame) -> int:
    img = frame.to_ndarray(format="rgb24")
    w = img.shape[1]
    block = w // BITS
    value = 0
    for b in range(BITS):
        cell = img[block // 4 : block - block // 4, b * block + block // 4 : (b + 1) * block - block // 4]
        if cell.mean() > 128:
            value |= 1 << b
    return value


class Tone(AudioStreamTrack):
    """A 440 Hz tone loud enough to count as speech for the audio-level extension."""

    def __init__(self, amplitude: float = 0.5) -> None:
        super().__init__()
        self.amplitude = amplitude
        self.samples = 0

    async def recv(self) -> AudioFrame:
        frame = await super().recv()  # silence with correct timing
        n, rate = frame.samples, frame.sample_rate
        t = (np.arange(n) + self.samples) / rate
        self.samples += n
        data = (np.sin(2 * math.pi * 440 * t) * 32767 * self.amplitude).astype(np.int16).reshape(1, -1)
        out = AudioFrame.from_ndarray(data, format="s16", layout="mono")
        out.pts, out.sample_rate, out.time_base = frame.pts, rate, fractions.Fraction(1, rate)
        return out


class Sink:
    """Consumes a received track, recording what arrives."""

    def __init__(self, track: MediaStreamTrack, read_counters: bool = False) -> None:
        self.track = track
        self.frames = 0
        self.sizes: set[tuple[int, int]] = set()
        self.counters: list[int] = []
        self.read_counters = read_counters
        self.last_at = 0.0
        self.timeline: list[tuple[float, int, int]] = []  # (arrival, width, height) of video frames
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                frame = await self.track.recv()
            except Exception:
                return
            self.frames += 1
            self.last_at = time.monotonic()
            if isinstance(frame, VideoFrame):
                self.sizes.add((frame.width, frame.height))
                self.timeline.append((self.last_at, frame.width, frame.height))
                if self.read_counters:
                    self.counters.append(read_counter(frame))

    async def wait_frames(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.frames < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.frames} frames of {n} arrived")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self.task.cancel()


async def decoded_sizes(track: MediaStreamTrack, n: int, timeout: float = 30.0) -> set[tuple[int, int]]:
    """Decode `n` frames of a received video track; the frame sizes seen (each must be non-empty)."""
    sink = Sink(track)
    try:
        await sink.wait_frames(n, timeout=timeout)
    finally:
        sink.stop()
    assert sink.sizes and all(w > 0 and h > 0 for w, h in sink.sizes), sink.sizes
    return sink.sizes
