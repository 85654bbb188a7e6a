"""SFrame on aiortc's encoded frames: how the Python client publishes and receives end-to-end
encrypted media (docs/e2ee.md).

A frame is encrypted after the encoder and before the packetizer, and decrypted after the jitter
buffer has put it together and before the decoder, as a browser's RTCRtpScriptTransform does. What
the SFU must still read stays in the clear and is authenticated as SFrame metadata: a VP8 frame's
first bytes (RFC 6386 §9.1: the frame tag with the key-frame bit, and on a key frame the start
code and the picture's size); nothing of an Opus frame. The SFU forwards the rest without seeing it.

aiortc has no transform API, so the seams are two of its internals, one per direction:
`RTCRtpSender._next_encoded_frame` (wrapped per sender) and the receiver's decoder queue (wrapped
per receiver). Only VP8 and Opus are supported here; a track in another codec is refused.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor

from signalling.e2ee.sframe import Keyring, SendKey, SFrameError

log = logging.getLogger("basement.e2ee")

VP8_CLEAR_KEY_FRAME = 10  # frame tag (3), start code (3), width and height (4)
VP8_CLEAR_DELTA_FRAME = 3  # the frame tag


class E2eeError(Exception):
    """End-to-end encryption cannot be done as asked (a codec it does not support, no key)."""


def clear_bytes(mime: str, frame: bytes) -> int:
    """How many leading bytes of `frame` stay in the clear for the SFU."""
    if mime.lower() == "video/vp8" and frame:
        # RFC 6386 §9.1: bit 0 of the frame tag is 0 on a key frame
        return min(len(frame), VP8_CLEAR_DELTA_FRAME if frame[0] & 1 else VP8_CLEAR_KEY_FRAME)
    return 0


def encrypt_frame(key: SendKey, mime: str, frame: bytes) -> bytes:
    n = clear_bytes(mime, frame)
    return frame[:n] + key.encrypt(frame[n:], frame[:n])


def decrypt_frame(ring: Keyring, mime: str, data: bytes) -> tuple[int, bytes]:
    """(KID, the frame) of an encrypted frame; SFrameError if it is not one this ring can open."""
    n = clear_bytes(mime, data)
    kid, plaintext = ring.decrypt(data[n:], data[:n])
    return kid, data[:n] + plaintext


# --- aiortc's seams -------------------------------------------------------------------------------
def encrypt_sender(sender: RTCRtpSender, current_key: Callable[[], SendKey]) -> None:
    """Encrypt every frame `sender` sends, from the next one on, with the key `current_key()` gives
    then (a rekey takes effect at the next frame)."""
    original = sender._next_encoded_frame

    async def next_encoded_frame(codec: Any) -> Any:
        encoded = await original(codec)
        if encoded is None:
            return None
        key = current_key()
        mime = codec.mimeType.lower()
        if mime == "audio/opus":
            encoded.payloads = [encrypt_frame(key, mime, bytes(p)) for p in encoded.payloads]
        elif mime == "video/vp8":
            # put the frame together again (aiortc packetizes in its encoder), encrypt it, and cut
            # it up as aiortc would, with the same picture id
            first, _ = VpxPayloadDescriptor.parse(encoded.payloads[0])
            frame = b"".join(VpxPayloadDescriptor.parse(p)[1] for p in encoded.payloads)
            encoded.payloads = Vp8Encoder._packetize(encrypt_frame(key, mime, frame), first.picture_id)
        else:
            raise E2eeError(f"end-to-end encryption of {codec.mimeType} is not supported here (only VP8 and Opus)")
        return encoded

    sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign]


class _DecryptingQueue:
    """Stands for a receiver's decoder queue: what the jitter buffer completes is decrypted before
    the decoder thread (which holds the real queue) gets it. A frame that does not decrypt is
    dropped and counted, never decoded."""

    def __init__(self, inner: queue.Queue, ring: Keyring, on_drop: Callable[[str], None]) -> None:
        self.inner = inner
        self.ring = ring
        self.on_drop = on_drop

    def put(self, item: Any, *args: Any, **kwargs: Any) -> None:
        if item is not None:
            codec, encoded = item
            try:
                _, encoded.data = decrypt_frame(self.ring, codec.mimeType, encoded.data)
            except SFrameError as e:
                self.on_drop(str(e))
                return
        self.inner.put(item, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def decrypt_receiver(receiver: RTCRtpReceiver, ring: Keyring, on_drop: Callable[[str], None]) -> None:
    """Decrypt every frame `receiver` completes before it is decoded. Once per receiver: a later
    call (the next subscribe offer names the track again) changes nothing, whatever has wrapped
    the queue since."""
    if getattr(receiver, "_basement_decrypting", False):
        return
    attr = "_RTCRtpReceiver__decoder_queue"
    setattr(receiver, attr, _DecryptingQueue(getattr(receiver, attr), ring, on_drop))
    receiver._basement_decrypting = True  # type: ignore[attr-defined]
