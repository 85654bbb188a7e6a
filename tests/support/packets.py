"""Byte builders for media-plane tests: RTP, header extensions, VP8/H.264 payloads, RTCP.

One place that writes packets by hand from the RFCs, independently of `sfu.rtp` and aiortc, so a
test compares what the code produces with what the RFC says the bytes are. Everything returns
`bytes`; nothing here parses. Used by tests/unit/sfu and meant to be the one copy other tests and
benchmarks switch to.

References: RTP RFC 3550 5.1, header extensions RFC 8285, RTX RFC 4588, VP8 RFC 7741 + RFC 6386
9.1, H.264 RFC 6184, RTCP RFC 3550 6.4, feedback RFC 4585 6.2.1/6.3.1, FIR RFC 5104 4.3.1,
REMB draft-alvestrand-rmcat-remb-03.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

# --- RTP (RFC 3550 5.1) ---------------------------------------------------------------------------

ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000  # 0x100 + 4-bit appbits (RFC 8285 4.3)

Element = tuple[int, bytes] | bytes  # (id, value), or raw bytes (e.g. b"\x00" padding between elements)


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes = b"", *, marker: bool = False,
        csrcs: Sequence[int] = (), ext: bytes = b"", padding: int = 0, version: int = 2) -> bytes:
    """One RTP packet. `ext` is a whole extension block (from `one_byte_ext`/`two_byte_ext`), with
    its 4-byte profile/length header; `padding` is the number of padding bytes (the last one holds
    the count, RFC 3550 5.1)."""
    b0 = (version << 6) | (0x20 if padding else 0) | (0x10 if ext else 0) | len(csrcs)
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrcs)
    out += ext + payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return out


def _elements(elements: Iterable[Element], two_byte: bool) -> bytes:
    body = b""
    for e in elements:
        if isinstance(e, bytes):
            body += e
            continue
        xid, value = e
        if two_byte:
            body += bytes([xid, len(value)]) + value
        else:
            assert 1 <= len(value) <= 16 and 1 <= xid <= 14, (xid, value)
            body += bytes([(xid << 4) | (len(value) - 1)]) + value
    return body


def ext_block(profile: int, body: bytes) -> bytes:
    """An extension block: profile, length in 32-bit words, body zero-padded to a word boundary."""
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", profile, len(body) // 4) + body


def one_byte_ext(elements: Iterable[Element]) -> bytes:
    """RFC 8285 4.2: ID (4 bits) | L = length - 1 (4 bits) | data; raw bytes are inserted as is."""
    return ext_block(ONE_BYTE_PROFILE, _elements(elements, False))


def two_byte_ext(elements: Iterable[Element], appbits: int = 0) -> bytes:
    """RFC 8285 4.3: ID (8 bits) | length (8 bits) | data."""
    return ext_block(TWO_BYTE_PROFILE | appbits, _elements(elements, True))


def rtx(original: bytes, rtx_pt: int, rtx_seq: int, rtx_ssrc: int, header_len: int = 12) -> bytes:
    """RFC 4588 4: the original header (here `header_len` bytes: fixed + CSRCs + extensions) with the
    RTX PT/seq/SSRC, then the original sequence number, then the original payload."""
    osn = original[2:4]
    head = bytearray(original[:header_len])
    head[0] &= 0xDF
    head[1] = (head[1] & 0x80) | rtx_pt
    head[2:4] = struct.pack("!H", rtx_seq & 0xFFFF)
    head[8:12] = struct.pack("!I", rtx_ssrc)
    return bytes(head) + osn + original[header_len:]


def abs_send_time(seconds: float) -> bytes:
    """abs-send-time: 6.18 fixed point seconds, 24 bits."""
    return (int(seconds * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")


# --- VP8 (RFC 7741 4.2, RFC 6386 9.1) -------------------------------------------------------------


def vp8_descriptor(*, start: bool = True, pid: int = 0, non_ref: bool = False, picture_id: int | None = None,
                   picture_id_bits: int = 15, tl0picidx: int | None = None, tid: int | None = None,
                   layer_sync: bool = False, keyidx: int | None = None) -> bytes:
    """The VP8 payload descriptor. X is set when any of I/L/T/K is present."""
    has_i, has_l, has_t, has_k = picture_id is not None, tl0picidx is not None, tid is not None, keyidx is not None
    x = has_i or has_l or has_t or has_k
    b0 = (0x80 if x else 0) | (0x20 if non_ref else 0) | (0x10 if start else 0) | (pid & 0x07)
    out = bytes([b0])
    if not x:
        return out
    out += bytes([(0x80 if has_i else 0) | (0x40 if has_l else 0) | (0x20 if has_t else 0) | (0x10 if has_k else 0)])
    if has_i:
        assert picture_id is not None
        if picture_id_bits == 15:
            out += bytes([0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF])
        else:
            out += bytes([picture_id & 0x7F])
    if has_l:
        out += bytes([tl0picidx])
    if has_t or has_k:
        out += bytes([((tid or 0) << 6) | (0x20 if layer_sync else 0) | ((keyidx or 0) & 0x1F)])
    return out


def vp9_descriptor(*, picture_id: int | None = None, picture_id_bits: int = 15, predicted: bool = False,
                   begin: bool = True, end: bool = True, tid: int | None = None, switch_up: bool = False,
                   sid: int = 0, inter_layer: bool = False, tl0picidx: int | None = None,
                   references: tuple[int, ...] = (), sizes: tuple[tuple[int, int], ...] = (),
                   group: tuple[tuple[int, bool, tuple[int, ...]], ...] | None = None, layers: int = 1) -> bytes:
    """The VP9 payload descriptor (RFC 9628 §4.2). Layer indices are present when `tid` is given;
    flexible mode when `references` are (P_DIFFs of a predicted layer frame); a scalability
    structure when `sizes` or `group` are: `layers` spatial layers, a size each, and the picture
    group as (tid, switch_up, p_diffs) per picture."""
    flexible = bool(references)
    has_ss = bool(sizes) or group is not None
    b0 = ((0x80 if picture_id is not None else 0) | (0x40 if predicted else 0) | (0x20 if tid is not None else 0)
          | (0x10 if flexible else 0) | (0x08 if begin else 0) | (0x04 if end else 0) | (0x02 if has_ss else 0))
    out = bytes([b0])
    if picture_id is not None:
        out += (bytes([0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF]) if picture_id_bits == 15
                else bytes([picture_id & 0x7F]))
    if tid is not None:
        out += bytes([(tid << 5) | (0x10 if switch_up else 0) | (sid << 1) | (1 if inter_layer else 0)])
        if not flexible:
            out += bytes([tl0picidx or 0])
    for i, diff in enumerate(references):
        out += bytes([(diff << 1) | (1 if i + 1 < len(references) else 0)])
    if has_ss:
        n = max(layers, len(sizes))
        out += bytes([((n - 1) << 5) | (0x10 if sizes else 0) | (0x08 if group is not None else 0)])
        for w, h in sizes:
            out += struct.pack(">HH", w, h)
        if group is not None:
            out += bytes([len(group)])
            for g_tid, g_up, diffs in group:
                out += bytes([(g_tid << 5) | (0x10 if g_up else 0) | (len(diffs) << 2)]) + bytes(diffs)
    return out


def vp8_keyframe_header(width: int, height: int, hscale: int = 0, vscale: int = 0, first_part: int = 0) -> bytes:
    """RFC 6386 9.1: 3-byte frame tag (P = 0: key frame, version 0, show_frame 1, first partition size),
    start code 9d 01 2a, then 2 bytes each of (scale << 14 | width) and (scale << 14 | height), LE."""
    tag = (first_part << 5) | 0x10  # key_frame = 0 (bit 0), version 0, show_frame = 1 (bit 4)
    return (tag.to_bytes(3, "little") + b"\x9d\x01\x2a"
            + struct.pack("<HH", (hscale << 14) | width, (vscale << 14) | height))


def vp8_interframe_header(first_part: int = 0) -> bytes:
    """RFC 6386 9.1: frame tag with P = 1 (inter frame), show_frame 1."""
    return ((first_part << 5) | 0x11).to_bytes(3, "little")


def vp8_payload(*, keyframe: bool = False, width: int = 640, height: int = 360, body: bytes = b"\xaa" * 8,
                **descriptor) -> bytes:
    """Descriptor + the start of a VP8 frame (key frame header with dimensions, or an inter frame tag)."""
    header = vp8_keyframe_header(width, height) if keyframe else vp8_interframe_header()
    return vp8_descriptor(**descriptor) + header + body


# --- H.264 (RFC 6184 5.6-5.8) ---------------------------------------------------------------------

# A 640x360 Constrained Baseline SPS/PPS as libwebrtc's OpenH264 encoder emits them, and IDR / non-IDR
# slice starts. Byte 0 is the NAL header: F(1) NRI(2) type(5).
SPS = bytes.fromhex("6742c01e8c8d40501e900f08846a")
PPS = bytes.fromhex("68ce3c80")
IDR = bytes.fromhex("658884") + b"\x11" * 13
NON_IDR = bytes.fromhex("419a24") + b"\x22" * 13
SEI = bytes.fromhex("0605") + b"\x33" * 6


def nal(nal_type: int, nri: int = 3, body: bytes = b"\x00" * 6) -> bytes:
    return bytes([(nri << 5) | nal_type]) + body


def stap_a(*nals: bytes, nri: int = 3) -> bytes:
    """Type 24: STAP-A header, then (16-bit size, NAL unit) for each."""
    return bytes([(nri << 5) | 24]) + b"".join(struct.pack("!H", len(n)) + n for n in nals)


def fu_a(nal_unit: bytes, start: bool, end: bool, body: bytes | None = None) -> bytes:
    """Type 28: FU indicator (the NAL's F/NRI, type 28), FU header S|E|R|type, fragment."""
    indicator = (nal_unit[0] & 0xE0) | 28
    header = (0x80 if start else 0) | (0x40 if end else 0) | (nal_unit[0] & 0x1F)
    return bytes([indicator, header]) + (nal_unit[1:] if body is None else body)


# --- RTCP (RFC 3550 6.4, RFC 4585, RFC 5104) ------------------------------------------------------

SR, RR, SDES, BYE, RTPFB, PSFB = 200, 201, 202, 203, 205, 206
FMT_NACK, FMT_PLI, FMT_FIR, FMT_APP = 1, 1, 4, 15


def rtcp_header(pt: int, count: int, body_len: int) -> bytes:
    """V=2, P=0, count/FMT, PT, length = 32-bit words - 1 (the 4-byte header included)."""
    assert body_len % 4 == 0
    return struct.pack("!BBH", 0x80 | count, pt, body_len // 4)


def report_block(ssrc: int, fraction_lost: int, packets_lost: int, highest_seq: int, jitter: int,
                 lsr: int = 0, dlsr: int = 0) -> bytes:
    """RFC 3550 6.4.1: 24 bytes; cumulative loss is a signed 24-bit number."""
    return (struct.pack("!IB", ssrc, fraction_lost) + (packets_lost & 0xFFFFFF).to_bytes(3, "big")
            + struct.pack("!IIII", highest_seq, jitter, lsr, dlsr))


def rtcp_sr(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int, blocks: Sequence[bytes] = ()) -> bytes:
    body = struct.pack("!IQIII", ssrc, ntp, rtp_ts, packets, octets) + b"".join(blocks)
    return rtcp_header(SR, len(blocks), len(body)) + body


def rtcp_rr(ssrc: int, blocks: Sequence[bytes] = ()) -> bytes:
    body = struct.pack("!I", ssrc) + b"".join(blocks)
    return rtcp_header(RR, len(blocks), len(body)) + body


def rtcp_sdes_cname(ssrc: int, cname: bytes, terminator: int = 2) -> bytes:
    """One chunk: SSRC, CNAME item (type 1), `terminator` null octets (RFC 3550 6.5 needs >= 1),
    zero-padded to a word. aiortc writes two null octets before padding."""
    chunk = struct.pack("!IBB", ssrc, 1, len(cname)) + cname + bytes(terminator)
    chunk += bytes(-len(chunk) % 4)
    return rtcp_header(SDES, 1, len(chunk)) + chunk


def nack_fci(lost: Iterable[int]) -> list[tuple[int, int]]:
    """RFC 4585 6.2.1 generic NACK: (PID, BLP) pairs; BLP bit i means PID + i + 1 is lost too.
    Packs in the order given, starting a new pair when a number is not within PID+1..PID+16
    (numbers compared modulo 2^16, so a pair may straddle the wrap)."""
    pairs: list[tuple[int, int]] = []
    for seq in lost:
        if pairs:
            pid, blp = pairs[-1]
            d = (seq - pid - 1) & 0xFFFF
            if d < 16:
                pairs[-1] = (pid, blp | (1 << d))
                continue
        pairs.append((seq & 0xFFFF, 0))
    return pairs


def rtcp_nack(sender: int, media: int, pairs: Sequence[tuple[int, int]]) -> bytes:
    body = struct.pack("!II", sender, media) + b"".join(struct.pack("!HH", p, b) for p, b in pairs)
    return rtcp_header(RTPFB, FMT_NACK, len(body)) + body


def rtcp_pli(sender: int, media: int) -> bytes:
    body = struct.pack("!II", sender, media)
    return rtcp_header(PSFB, FMT_PLI, len(body)) + body


def rtcp_fir(sender: int, target: int, seq_nr: int) -> bytes:
    """RFC 5104 4.3.1: the common header's media SSRC SHALL be 0; the target is in the FCI."""
    body = struct.pack("!II", sender, 0) + struct.pack("!IB3x", target, seq_nr)
    return rtcp_header(PSFB, FMT_FIR, len(body)) + body


def remb_fci(bitrate: int, ssrcs: Sequence[int]) -> bytes:
    """'REMB', SSRC count, 6-bit exponent and 18-bit mantissa (bitrate = mantissa << exponent)."""
    exp = 0
    while bitrate >> exp > 0x3FFFF:
        exp += 1
    mantissa = bitrate >> exp
    return (b"REMB" + bytes([len(ssrcs), (exp << 2) | (mantissa >> 16)]) + struct.pack("!H", mantissa & 0xFFFF)
            + b"".join(struct.pack("!I", s) for s in ssrcs))


def rtcp_remb(sender: int, bitrate: int, ssrcs: Sequence[int]) -> bytes:
    body = struct.pack("!II", sender, 0) + remb_fci(bitrate, ssrcs)
    return rtcp_header(PSFB, FMT_APP, len(body)) + body
