"""Synthetic media for the load generator: pre-encoded VP8 layers, Opus-like audio, RTP packetizing.

VP8 is encoded ONCE with PyAV/libvpx and cached on disk; at run time the generator only builds RTP
headers around stored payloads, so a publisher costs a few µs per packet and never runs an encoder.

Sampled packets carry a *probe* in RTP padding (RFC 3550 §5.1): the send time (monotonic ns, same
host clock as the subscribers) and a CRC32 of the codec payload. Padding is not codec data, so the
VP8 bitstream stays valid, and an SFU that forwards without decoding passes it through untouched.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import time
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
FPS = 30
MAX_PAYLOAD = 1150  # leaves room for header, extensions, probe and SRTP tag under a 1200-byte MTU

# (rid, width, height, kbps): the LiveKit-style three-layer simulcast ladder
LAYERS = (("q", 320, 180, 150), ("h", 640, 360, 500), ("f", 1280, 720, 1500))

PROBE_MAGIC = b"BSMT"
PROBE = struct.Struct("!4sQII")  # magic, send time ns, crc32(codec payload), publisher packet counter
PROBE_LEN = PROBE.size + 1  # + the RTP padding count byte
HEADER = struct.Struct("!BBHII")
VP8_DESC = struct.Struct("!BBHB")  # X|S, I|L, M|PictureID(15), TL0PICIDX


@dataclass(slots=True)
class EncodedLayer:
    rid: str
    width: int
    height: int
    kbps: int
    frames: list[list[bytes]]  # per frame: the VP8 partitions split into RTP-sized chunks
    keyframes: list[int] = field(default_factory=list)  # frame indexes that are keyframes

    @property
    def packets_per_loop(self) -> int:
        return sum(len(f) for f in self.frames)


def cache_dir() -> Path:
    base = os.environ.get("BASEMENT_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "basement-bench"
    )
    p = Path(base)
    p.mkdir(parents=True, exist_ok=True)
    return p


def _pattern(width: int, height: int, i: int):
    """A moving gradient with a sliding box: enough detail that libvpx spends its bitrate."""
    import numpy as np

    y = np.arange(height, dtype=np.uint16)[:, None]
    x = np.arange(width, dtype=np.uint16)[None, :]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = ((x + 3 * i) & 0xFF).astype(np.uint8)
    img[..., 1] = ((y + 2 * i) & 0xFF).astype(np.uint8)
    img[..., 2] = (((x ^ y) + 5 * i) & 0xFF).astype(np.uint8)
    bw, bh = width // 6, height // 6
    bx = (i * 7) % max(1, width - bw)
    by = (i * 3) % max(1, height - bh)
    img[by : by + bh, bx : bx + bw] = 255 - img[by : by + bh, bx : bx + bw]
    rng = np.random.default_rng(i)
    noise = rng.integers(0, 6, size=(height, width, 1), dtype=np.uint8)
    return img + noise


def encode_layer(width: int, height: int, kbps: int, seconds: float, keyint_s: float) -> tuple[list[bytes], list[int]]:
    import av

    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.framerate = Fraction(FPS, 1)
    ctx.time_base = Fraction(1, FPS)
    ctx.bit_rate = kbps * 1000
    ctx.gop_size = int(keyint_s * FPS)
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1",
                   "kf-max-dist": str(int(keyint_s * FPS)), "kf-min-dist": str(int(keyint_s * FPS))}
    frames: list[bytes] = []
    keys: list[int] = []
    n = int(seconds * FPS)
    for i in range(n):
        vf = av.VideoFrame.from_ndarray(_pattern(width, height, i), format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        if i % int(keyint_s * FPS) == 0:
            vf.pict_type = av.video.frame.PictureType.I
        for pkt in ctx.encode(vf):
            if pkt.is_keyframe:
                keys.append(len(frames))
            frames.append(bytes(pkt))
    for pkt in ctx.encode(None):
        if pkt.is_keyframe:
            keys.append(len(frames))
        frames.append(bytes(pkt))
    return frames, keys


def _chunks(frame: bytes) -> list[bytes]:
    # equal-sized fragments, as libwebrtc does, so no tiny tail packets
    n = max(1, -(-len(frame) // MAX_PAYLOAD))
    size = -(-len(frame) // n)
    return [frame[i : i + size] for i in range(0, len(frame), size)]


def load_layers(seconds: float = 6.0, keyint_s: float = 3.0, rids: tuple[str, ...] = ("q", "h", "f"),
                progress=None) -> dict[str, EncodedLayer]:
    """The encoded layers, from the disk cache when present (encoding 720p takes a while)."""
    out: dict[str, EncodedLayer] = {}
    for rid, w, h, kbps in LAYERS:
        if rid not in rids:
            continue
        key = hashlib.sha256(f"v3:{w}x{h}@{kbps}:{seconds}:{keyint_s}".encode()).hexdigest()[:16]
        path = cache_dir() / f"vp8-{rid}-{key}.pickle"
        if path.exists():
            with path.open("rb") as f:
                frames, keys = pickle.load(f)
        else:
            if progress:
                progress(f"encoding VP8 {w}x{h} @ {kbps} kbps (once; cached in {path.parent})")
            frames, keys = encode_layer(w, h, kbps, seconds, keyint_s)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            with tmp.open("wb") as f:
                pickle.dump((frames, keys), f)
            tmp.replace(path)
        out[rid] = EncodedLayer(rid, w, h, kbps, [_chunks(f) for f in frames], keys or [0])
    return out


def audio_payloads(count: int = 50, size: int = 60) -> list[bytes]:
    """Opus-like frames (TOC byte of a 20 ms CELT frame, then noise): ~24 kbps at 50 pps."""
    rng = zlib.crc32(b"seed")
    out = []
    for i in range(count):
        body = hashlib.sha256(f"{rng}:{i}".encode()).digest() * (size // 32 + 1)
        out.append(bytes([0x78]) + body[: size - 1])
    return out


# --- RTP building -------------------------------------------------------------------------------


def one_byte_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    """RFC 8285 one-byte header extension block (profile 0xBEDE), padded to 32 bits."""
    if not elements:
        return b""
    body = b"".join(bytes([(xid << 4) | (len(v) - 1)]) + v for xid, v in elements)
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def abs_send_time(now_ns: int) -> bytes:
    return (((now_ns << 18) // 1_000_000_000) & 0xFFFFFF).to_bytes(3, "big")


def build_rtp(pt: int, seq: int, ts: int, ssrc: int, marker: bool, ext: bytes, payload: bytes,
              probe_counter: int | None = None, crc_from: int = 0) -> bytes:
    """One RTP packet; with `probe_counter` set, a probe rides in the padding."""
    b0 = 0x80 | (0x10 if ext else 0)
    if probe_counter is None:
        return HEADER.pack(b0, (0x80 if marker else 0) | pt, seq, ts, ssrc) + ext + payload
    crc = zlib.crc32(payload[crc_from:])
    probe = PROBE.pack(PROBE_MAGIC, time.monotonic_ns(), crc, probe_counter & 0xFFFFFFFF) + bytes([PROBE_LEN])
    return HEADER.pack(b0 | 0x20, (0x80 if marker else 0) | pt, seq, ts, ssrc) + ext + payload + probe


def vp8_descriptor(start: bool, picture_id: int, tl0: int) -> bytes:
    return VP8_DESC.pack(0x90 if start else 0x80, 0xC0, 0x8000 | (picture_id & 0x7FFF), tl0 & 0xFF)


def read_probe(data: bytes) -> tuple[int, int, int] | None:
    """(send_ns, crc, counter) when the packet's padding is a probe."""
    if not data[0] & 0x20 or len(data) < 12 + PROBE_LEN or data[-1] != PROBE_LEN:
        return None
    magic, sent, crc, counter = PROBE.unpack_from(data, len(data) - PROBE_LEN)
    if magic != PROBE_MAGIC:
        return None
    return sent, crc, counter
