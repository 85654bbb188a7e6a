"""H.264 in RTP: key frames, and the picture size a simulcast layer is encoded at (its SPS).

The layer selector fits a subscriber's rendered size to the smallest layer that covers it, and a
layer whose size is unknown counts as covering. VP8 says its size in every keyframe header; H.264
says it only in the SPS (ITU-T H.264 7.3.2.1.1), which Chromium and GStreamer send with every IDR
picture (in a STAP-A, RFC 6184). Without it every H.264 layer looked like it covered any size, so a
subscriber that asked by size got the lowest one.

Read from untrusted bytes: every field is bounds-checked, and anything malformed, truncated or out
of range gives None (the size stays unknown), never an exception. A publisher decides which of its
packets are key frames, so the ingress parses an SPS only when it differs from the layer's last
one, and at most every SPS_INTERVAL_S (a 256-byte SPS of scaling lists costs ~0.1 ms).
"""

from __future__ import annotations

from collections.abc import Iterator

NAL_IDR = 5
NAL_SPS = 7
NAL_STAP_A = 24
NAL_FU_A = 28

MAX_SPS_BYTES = 256  # real ones are 10-40 bytes; more is not an SPS we need to read
SPS_INTERVAL_S = 0.5  # per layer: a changed SPS is read at most this often
MAX_MBS = 1024  # 16,384 pixels a side, far beyond any level's limit
# profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices (7.3.2.1.1)
_HIGH_PROFILES = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))


class _Malformed(Exception):
    pass


class _Bits:
    """Big-endian bit reader over an RBSP (emulation prevention bytes already removed): the whole
    RBSP as one integer, so a field costs a shift and a mask, not a loop over its bits."""

    __slots__ = ("value", "left")

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.left = len(data) * 8  # bits not read yet (the low bits of value)

    def u(self, n: int) -> int:
        if n > self.left:
            raise _Malformed
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        rest = self.value & ((1 << self.left) - 1)
        zeros = self.left - rest.bit_length()  # leading zero bits before the next 1
        if rest == 0 or zeros > 31:
            raise _Malformed
        self.left -= zeros + 1
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes | memoryview) -> bytes:
    """The NAL unit's payload after its header, with emulation prevention (00 00 03) undone."""
    out = bytearray()
    zeros = 0
    for b in bytes(nal[1:MAX_SPS_BYTES]):
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            delta = bits.se()
            if not -128 <= delta <= 127:
                raise _Malformed
            next_scale = (last + delta + 256) % 256
        last = next_scale or last


def sps_dimensions(nal: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) in pixels of one SPS NAL unit (header byte included), or None."""
    if len(nal) < 4 or nal[0] & 0x1F != NAL_SPS:
        return None
    bits = _Bits(_rbsp(nal))
    try:
        profile_idc = bits.u(8)
        bits.u(16)  # constraint flags, level_idc
        if bits.ue() > 31:  # seq_parameter_set_id
            return None
        chroma_format_idc = 1
        separate_colour_plane = 0
        if profile_idc in _HIGH_PROFILES:
            chroma_format_idc = bits.ue()
            if chroma_format_idc > 3:
                return None
            if chroma_format_idc == 3:
                separate_colour_plane = bits.u(1)
            if bits.ue() > 6 or bits.ue() > 6:  # bit_depth_luma / chroma_minus8
                return None
            bits.u(1)  # qpprime_y_zero_transform_bypass_flag
            if bits.u(1):  # seq_scaling_matrix_present_flag
                for i in range(12 if chroma_format_idc == 3 else 8):
                    if bits.u(1):
                        _skip_scaling_list(bits, 16 if i < 6 else 64)
        if bits.ue() > 12:  # log2_max_frame_num_minus4
            return None
        poc_type = bits.ue()
        if poc_type == 0:
            if bits.ue() > 12:  # log2_max_pic_order_cnt_lsb_minus4
                return None
        elif poc_type == 1:
            bits.u(1)  # delta_pic_order_always_zero_flag
            bits.se()  # offset_for_non_ref_pic
            bits.se()  # offset_for_top_to_bottom_field
            cycle = bits.ue()
            if cycle > 255:
                return None
            for _ in range(cycle):
                bits.se()
        elif poc_type != 2:
            return None
        bits.ue()  # max_num_ref_frames
        bits.u(1)  # gaps_in_frame_num_value_allowed_flag
        width_mbs = bits.ue() + 1
        height_units = bits.ue() + 1
        frame_mbs_only = bits.u(1)
        if not frame_mbs_only:
            bits.u(1)  # mb_adaptive_frame_field_flag
        bits.u(1)  # direct_8x8_inference_flag
        crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.u(1) else (0, 0, 0, 0)
    except _Malformed:
        return None
    height_mbs = height_units * (2 - frame_mbs_only)
    if width_mbs > MAX_MBS or height_mbs > MAX_MBS:
        return None
    # crop units (7.4.2.1.1, Table 6-1): whole chroma samples, and field pairs when interlaced
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    sub_width, sub_height = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}[chroma_array_type]
    unit_x, unit_y = sub_width, sub_height * (2 - frame_mbs_only)
    width = width_mbs * 16 - unit_x * (crop[0] + crop[1])
    height = height_mbs * 16 - unit_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        return None
    return width, height


def stap_a_units(payload: bytes | memoryview) -> Iterator[tuple[int, int]]:
    """(offset, size) of each NAL unit a STAP-A payload aggregates (RFC 6184 5.7.1), in order, up
    to a unit of size 0. The offset is always inside the payload; the last unit may be cut short
    (its size is what the packet claims): each caller decides whether it needs the whole unit."""
    i, n = 1, len(payload)
    while i + 2 < n:
        size = (payload[i] << 8) | payload[i + 1]
        if size == 0:
            return
        yield i + 2, size
        i += 2 + size


def is_keyframe(payload: bytes | memoryview) -> bool:
    """True when the packet starts an IDR picture or carries an SPS (RFC 6184 single NAL unit,
    STAP-A, FU-A); only NAL headers are read."""
    # (on the Python ingress's per-packet path: literal NAL types, 5 IDR, 7 SPS, 24 STAP-A, 28 FU-A,
    # cost a third less than the module's names; a STAP-A is rare, one per key frame)
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == 28:  # FU-A, most packets of a video: key only as the start fragment of an IDR slice
        return len(payload) > 1 and payload[1] & 0x9F == 0x85
    if nal_type == 5 or nal_type == 7:
        return True
    if nal_type == 24:
        return any(payload[at] & 0x1F in (5, 7) for at, _ in stap_a_units(payload))
    return False


def keyframe_sps(payload: bytes | memoryview) -> bytes | None:
    """The SPS NAL unit an RTP payload carries (RFC 6184: a single SPS NAL unit, an SPS in a
    STAP-A, or the first fragment of an FU-A SPS), at most MAX_SPS_BYTES of it, or None. Cheap: it
    finds the bytes; `sps_dimensions` reads them."""
    if not payload:
        return None
    nal_type = payload[0] & 0x1F
    if nal_type == NAL_SPS:
        return bytes(payload[:MAX_SPS_BYTES])
    if nal_type == NAL_STAP_A:
        for at, size in stap_a_units(payload):
            if at + size > len(payload):
                return None  # cut short: no size can be read from it
            if payload[at] & 0x1F == NAL_SPS:
                return bytes(payload[at : at + min(size, MAX_SPS_BYTES)])
        return None
    if nal_type == NAL_FU_A and len(payload) > 2 and payload[1] & 0x80 and payload[1] & 0x1F == NAL_SPS:
        # the first fragment: the NAL header is rebuilt from the FU indicator and header
        return bytes(((payload[0] & 0xE0) | NAL_SPS,)) + bytes(payload[2:MAX_SPS_BYTES + 1])
    return None


def keyframe_dimensions(payload: bytes | memoryview) -> tuple[int, int] | None:
    """The size in the SPS an RTP payload carries (see `keyframe_sps`), or None."""
    sps = keyframe_sps(payload)
    return sps_dimensions(sps) if sps is not None else None
