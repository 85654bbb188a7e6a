"""RTP/RTCP on raw bytes: validation, header views, extension maps, codec payload peeks.

Everything here works on the decrypted datagram as bytes and allocates as little as it can: this is
half of the per-packet hot path (the rest is `Ingress.on_rtp` in `sfu/ingress.py` and
`DownTrack.forward` in `sfu/downtrack.py`). RTCP is rare (about one packet per
fifty RTP packets), so RTCP building and parsing reuse aiortc's classes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, seq, ts, ssrc
U16 = struct.Struct("!H")
U32 = struct.Struct("!I")

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


class RtpError(ValueError):
    """A datagram is not a usable RTP packet; `reason` is a short label used for drop counters."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class RtpView:
    """Where things are in one RTP packet. Offsets index the original bytes."""

    marker: bool
    pt: int
    seq: int
    ts: int
    ssrc: int
    ext_start: int  # first byte of the extension *elements* (after the 4-byte ext header), or 0
    ext_end: int  # end of the extension block (== payload start when padding-free)
    one_byte: bool
    payload_start: int
    payload_end: int  # excludes RTP padding


def parse(data: bytes) -> RtpView:
    """Validate an RTP packet and locate its parts. Raises RtpError naming the defect."""
    n = len(data)
    if n < 12:
        raise RtpError("truncated_header")
    b0, b1, seq, ts, ssrc = HEADER.unpack_from(data, 0)
    if b0 >> 6 != 2:
        raise RtpError("bad_version")
    pos = 12 + 4 * (b0 & 0x0F)
    ext_start = ext_end = 0
    one_byte = False
    if b0 & 0x10:
        if pos + 4 > n:
            raise RtpError("truncated_extension")
        profile, words = struct.unpack_from("!HH", data, pos)
        ext_start = pos + 4
        ext_end = ext_start + 4 * words
        if ext_end > n:
            raise RtpError("bad_extension_length")
        one_byte = profile == 0xBEDE
        pos = ext_end
    if pos > n:
        raise RtpError("truncated_header")
    end = n
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or end - pad < pos:
            raise RtpError("bad_padding")
        end -= pad
    return RtpView(bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, ext_start, ext_end, one_byte, pos, end)


def _elements(data: bytes, view: RtpView) -> Iterator[tuple[int, int, int]]:
    """(id, value start, value end) of each header extension element in order (RFC 8285 one- and
    two-byte forms); RtpError when an element overruns the block."""
    i, end = view.ext_start, view.ext_end
    if not i:
        return
    if view.one_byte:
        while i < end:
            b = data[i]
            if b == 0:  # padding between elements
                i += 1
                continue
            xid, xlen = b >> 4, (b & 0x0F) + 1
            if xid == 15:
                return
            if i + 1 + xlen > end:
                raise RtpError("bad_extension_length")
            yield xid, i + 1, i + 1 + xlen
            i += 1 + xlen
    else:
        while i + 1 < end:
            xid = data[i]
            if xid == 0:
                i += 1
                continue
            xlen = data[i + 1]
            if i + 2 + xlen > end:
                raise RtpError("bad_extension_length")
            yield xid, i + 2, i + 2 + xlen
            i += 2 + xlen


def extensions(data: bytes, view: RtpView) -> dict[int, bytes]:
    """The header extensions of a packet, id -> value (the last element of an id wins)."""
    return {xid: data[start:end] for xid, start, end in _elements(data, view)}


def extension(data: bytes, view: RtpView, xid: int) -> bytes | None:
    """The value of header extension `xid` (its first element), None when absent. Walks only as far
    as it must: an element overrunning the block before `xid` is found raises RtpError."""
    for eid, start, end in _elements(data, view):
        if eid == xid:
            return data[start:end]
    return None


def abs_send_time_now(now_s: float) -> bytes:
    """abs-send-time value (6.18 fixed-point seconds, 24 bits) for `now_s`."""
    return (int(now_s * 262144) & 0xFFFFFF).to_bytes(3, "big")


def audio_level(value: bytes) -> tuple[bool, int]:
    """RFC 6464: (voice activity flag, level in -dBov, 0 loudest .. 127 silent)."""
    b = value[0]
    return bool(b & 0x80), b & 0x7F


# --- VP8 (RFC 7741) ------------------------------------------------------------------------------


@dataclass(slots=True)
class Vp8Descriptor:
    start: bool  # S bit with partition index 0: first packet of a frame
    keyframe: bool
    picture_id: int  # -1 when absent
    picture_id_pos: int  # offset of the PictureID field in the payload, 0 when absent
    picture_id_bits: int  # 7 or 15
    tl0picidx: int  # -1 when absent
    tl0picidx_pos: int
    tid: int  # temporal layer id, 0 when absent
    layer_sync: bool
    size: int  # descriptor length in bytes
    # what a Vp9Descriptor adds, as VP8 has it: one spatial layer, whose frames end at the marker
    sid: ClassVar[int] = 0
    end: ClassVar[bool] = False


def _picture_id(payload: bytes | memoryview, pos: int, truncated: str) -> tuple[int, int]:
    """The 7- or 15-bit picture id at `pos` (M bit first), as VP8 and VP9 descriptors carry it:
    (picture id, bits); 7 bits take one byte, 15 two."""
    if pos >= len(payload):
        raise RtpError(truncated)
    if payload[pos] & 0x80:
        if pos + 1 >= len(payload):
            raise RtpError(truncated)
        return ((payload[pos] & 0x7F) << 8) | payload[pos + 1], 15
    return payload[pos] & 0x7F, 7


def vp8_descriptor(payload: bytes | memoryview) -> Vp8Descriptor:
    n = len(payload)
    if n < 1:
        raise RtpError("vp8_empty_payload")
    b0 = payload[0]
    pos = 1
    picture_id = -1
    pid_pos = 0
    pid_bits = 0
    tl0 = -1
    tl0_pos = 0
    tid = 0
    sync = False
    if b0 & 0x80:
        if n < 2:
            raise RtpError("vp8_truncated_descriptor")
        x = payload[1]
        pos = 2
        if x & 0x80:
            pid_pos = pos
            picture_id, pid_bits = _picture_id(payload, pos, "vp8_truncated_descriptor")
            pos += 2 if pid_bits == 15 else 1
        if x & 0x40:
            if pos >= n:
                raise RtpError("vp8_truncated_descriptor")
            tl0_pos = pos
            tl0 = payload[pos]
            pos += 1
        if x & 0x30:
            if pos >= n:
                raise RtpError("vp8_truncated_descriptor")
            if x & 0x20:
                tid = payload[pos] >> 6
                sync = bool(payload[pos] & 0x20)
            pos += 1
    start = bool(b0 & 0x10) and (b0 & 0x07) == 0
    keyframe = start and pos < n and (payload[pos] & 0x01) == 0
    return Vp8Descriptor(start, keyframe, picture_id, pid_pos, pid_bits, tl0, tl0_pos, tid, sync, pos)


# --- VP9 (RFC 9628) ------------------------------------------------------------------------------


@dataclass(slots=True)
class Vp9Descriptor:
    """A VP9 payload descriptor. The fields it shares with Vp8Descriptor mean the same (where the
    picture numbering sits, for a DownTrack to rewrite it), so a DownTrack handles either."""

    start: bool  # B bit of the picture's first layer frame: first packet of a picture
    keyframe: bool  # ... and not inter-picture predicted (P = 0): a key picture starts here
    picture_id: int  # -1 when absent
    picture_id_pos: int  # offset of the PICTURE ID field in the payload, 0 when absent
    picture_id_bits: int  # 7 or 15
    tl0picidx: int  # -1 when absent (flexible mode, or no layer indices)
    tl0picidx_pos: int
    tid: int  # temporal layer id, 0 when absent
    layer_sync: bool  # U bit: a switching-up point
    size: int  # descriptor length in bytes
    sid: int  # spatial layer id, 0 when absent
    end: bool  # E bit: last packet of this layer frame
    flexible: bool  # F bit
    inter_layer: bool  # D bit: this layer frame depends on the spatial layer below
    width: int  # the highest spatial layer's size, from a scalability structure that has sizes; else 0
    height: int
    ss_pos: int  # offset of the scalability structure in the payload, 0 when absent (vp9_spatial_sizes)


VP9_MAX_REFERENCES = 3  # P_DIFF fields a flexible-mode layer frame may carry (RFC 9628 §4.2)


def vp9_descriptor(payload: bytes | memoryview) -> Vp9Descriptor:
    n = len(payload)
    if n < 1:
        raise RtpError("vp9_empty_payload")
    b0 = payload[0]
    pos = 1
    picture_id = -1
    pid_pos = pid_bits = 0
    tl0 = -1
    tl0_pos = tid = sid = 0
    sync = inter_layer = False
    width = height = ss_pos = 0
    flexible = bool(b0 & 0x10)
    if b0 & 0x80:  # I: PICTURE ID
        pid_pos = pos
        picture_id, pid_bits = _picture_id(payload, pos, "vp9_truncated_descriptor")
        pos += 2 if pid_bits == 15 else 1
    if b0 & 0x20:  # L: layer indices, and TL0PICIDX in non-flexible mode
        if pos >= n:
            raise RtpError("vp9_truncated_descriptor")
        x = payload[pos]
        tid, sync, sid, inter_layer = x >> 5, bool(x & 0x10), (x >> 1) & 0x07, bool(x & 0x01)
        pos += 1
        if not flexible:
            if pos >= n:
                raise RtpError("vp9_truncated_descriptor")
            tl0_pos = pos
            tl0 = payload[pos]
            pos += 1
    if flexible and b0 & 0x40:  # F and P: reference indices, each with N = another follows
        for count in range(VP9_MAX_REFERENCES + 1):
            if count == VP9_MAX_REFERENCES:
                raise RtpError("vp9_too_many_references")
            if pos >= n:
                raise RtpError("vp9_truncated_descriptor")
            more = payload[pos] & 0x01
            pos += 1
            if not more:
                break
    if b0 & 0x02:  # V: scalability structure
        if pos >= n:
            raise RtpError("vp9_truncated_descriptor")
        ss_pos = pos
        ss = payload[pos]
        layers = (ss >> 5) + 1
        pos += 1
        if ss & 0x10:  # Y: a size per spatial layer
            if pos + 4 * layers > n:
                raise RtpError("vp9_truncated_descriptor")
            last = pos + 4 * (layers - 1)
            width = (payload[last] << 8) | payload[last + 1]
            height = (payload[last + 2] << 8) | payload[last + 3]
            pos += 4 * layers
        if ss & 0x08:  # G: the picture group's description
            if pos >= n:
                raise RtpError("vp9_truncated_descriptor")
            pictures = payload[pos]
            pos += 1
            for _ in range(pictures):
                if pos >= n:
                    raise RtpError("vp9_truncated_descriptor")
                pos += 1 + ((payload[pos] >> 2) & 0x03)  # TID|U|R, then R P_DIFFs
                if pos > n:
                    raise RtpError("vp9_truncated_descriptor")
    start = bool(b0 & 0x08) and sid == 0
    keyframe = start and not b0 & 0x40
    return Vp9Descriptor(start, keyframe, picture_id, pid_pos, pid_bits, tl0, tl0_pos, tid, sync, pos, sid,
                         bool(b0 & 0x04), flexible, inter_layer, width, height, ss_pos)


def vp9_spatial_sizes(payload: bytes | memoryview, desc: Vp9Descriptor) -> tuple[tuple[int, int], ...]:
    """Each spatial layer's (width, height), lowest first, from the scalability structure of a
    descriptor `vp9_descriptor` read (it checked the bounds); () when it has no sizes."""
    if not desc.ss_pos or not payload[desc.ss_pos] & 0x10:
        return ()
    at = desc.ss_pos + 1
    return tuple(((payload[i] << 8) | payload[i + 1], (payload[i + 2] << 8) | payload[i + 3])
                 for i in range(at, at + 4 * ((payload[desc.ss_pos] >> 5) + 1), 4))


# --- AV1 (AV1 RTP specification) ----------------------------------------------------------------


@dataclass(slots=True)
class Av1Picture:
    """An AV1 packet as a DownTrack reads it (sfu.dependency_descriptor.picture): its layers come
    from the dependency descriptor header extension, not the payload, and nothing in the payload
    numbers pictures, so there is nothing to renumber."""

    start: bool  # the first packet of the picture's spatial layer 0 frame
    keyframe: bool
    tid: int
    sid: int
    end: bool  # end_of_frame: the last packet of this layer frame
    picture_id: ClassVar[int] = -1
    picture_id_pos: ClassVar[int] = 0
    picture_id_bits: ClassVar[int] = 0
    tl0picidx: ClassVar[int] = -1
    tl0picidx_pos: ClassVar[int] = 0
    layer_sync: ClassVar[bool] = False
    size: ClassVar[int] = 0


Picture = Vp8Descriptor | Vp9Descriptor | Av1Picture  # what a DownTrack reads of a packet's picture

# Which payload descriptor numbers a codec's pictures (DownTrack.picture_codec; the C twin's values).
# AV1's layers are in a header extension, read with the stream's state (sfu.dependency_descriptor):
# the ingress hands each packet's Av1Picture to the DownTracks, and `picture_descriptor` has none.
PICTURE_NONE, PICTURE_VP8, PICTURE_VP9, PICTURE_AV1 = 0, 1, 2, 3
PICTURE_CODECS = {"VP8": PICTURE_VP8, "VP9": PICTURE_VP9, "AV1": PICTURE_AV1}
SVC_CODECS = (PICTURE_VP9, PICTURE_AV1)  # codecs whose spatial layers a DownTrack can cap


def picture_descriptor(codec: int, payload: bytes | memoryview) -> Vp8Descriptor | Vp9Descriptor:
    """The payload descriptor of a PICTURE_VP8 or PICTURE_VP9 packet (RtpError for AV1: none)."""
    if codec == PICTURE_AV1:
        raise RtpError("av1_no_payload_descriptor")
    return vp9_descriptor(payload) if codec == PICTURE_VP9 else vp8_descriptor(payload)


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demux: RTCP packet types 192..223 sit where RTP puts marker+PT."""
    return len(data) >= 2 and 192 <= data[1] <= 223
