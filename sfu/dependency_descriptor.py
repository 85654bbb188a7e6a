"""The AV1 RTP dependency descriptor (DD) header extension: what the SFU reads of it.

AV1 has no payload descriptor to number pictures or name layers: a frame's spatial and temporal
layer come from the DD (AV1 RTP specification, appendix A). Every packet's DD has the mandatory
fields (start and end of frame, a template id, a frame number); a key frame's also carries the
template dependency structure, which maps template ids to layers and gives each spatial layer's
size. The structure stays valid until the next one, so a Layer keeps the latest (`Layer.dd_structure`)
and each packet's template is looked up there.

The SFU reads the DD and forwards it as it came: frame numbers and dependencies are the publisher's,
and a subscriber given only some layers still finds every frame's references among the frames it
gets (lower layers never reference upper ones), which is all a libwebrtc receiver needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.rtp import Av1Picture, RtpError

URI_DD = "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"

MAX_TEMPLATES = 64  # template ids are 6 bits (the specification requires TemplateCnt <= 64)
MAX_SPATIAL = 8  # spatial ids the SFU tracks per Layer (sfu.track.SPATIAL)
MAX_TEMPORAL = 8  # AV1's temporal ids are 3 bits (and a DownTrack's picture's, in C, 0..7)


@dataclass(frozen=True, slots=True)
class DependencyStructure:
    """A template dependency structure: which layer each template's frames are in, and sizes."""

    template_id_offset: int
    decode_targets: int  # DtCnt
    chains: int  # chain_cnt
    template_sid: tuple[int, ...]  # by template index
    template_tid: tuple[int, ...]
    resolutions: tuple[tuple[int, int], ...]  # (width, height) by spatial id, () when absent

    @property
    def spatial_layers(self) -> int:
        return max(self.template_sid) + 1


@dataclass(slots=True)
class DependencyDescriptor:
    start: bool  # start_of_frame: the first packet of a (layer) frame
    end: bool  # end_of_frame
    template_id: int
    frame_number: int
    structure: DependencyStructure | None  # the structure this descriptor carries, if any
    active_targets: int  # bitmask of active decode targets, -1 when the descriptor does not say
    sid: int  # the frame's spatial and temporal id (from its template)
    tid: int


class _Bits:
    """Big-endian bit reader over the value (f(n) and ns(n) of the specification)."""

    __slots__ = ("value", "pos", "total")

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.total = 8 * len(data)
        self.pos = 0

    def f(self, n: int) -> int:
        if self.pos + n > self.total:
            raise RtpError("dd_truncated")
        self.pos += n
        return (self.value >> (self.total - self.pos)) & ((1 << n) - 1)

    def ns(self, n: int) -> int:
        w = n.bit_length()
        m = (1 << w) - n
        v = self.f(w - 1)
        if v < m:
            return v
        return (v << 1) - m + self.f(1)


def parse(value: bytes, known: DependencyStructure | None) -> DependencyDescriptor:
    """Read a DD. `known`: the latest structure of this stream, used unless the DD carries one.
    Raises RtpError (dd_truncated, dd_no_structure, dd_bad_template, dd_too_many_templates,
    dd_too_many_layers)."""
    if len(value) < 3:
        raise RtpError("dd_truncated")
    b0 = value[0]
    start, end, template_id = bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x3F
    frame_number = (value[1] << 8) | value[2]
    structure = None
    active = -1
    custom_dtis = custom_fdiffs = custom_chains = 0
    bits = None
    if len(value) > 3:
        bits = _Bits(value)
        bits.pos = 24
        has_structure, has_active = bits.f(1), bits.f(1)
        custom_dtis, custom_fdiffs, custom_chains = bits.f(1), bits.f(1), bits.f(1)
        if has_structure:
            structure = _structure(bits)
            known = structure
            active = (1 << structure.decode_targets) - 1
        if has_active:
            if known is None:
                raise RtpError("dd_no_structure")
            active = bits.f(known.decode_targets)
    if known is None:
        raise RtpError("dd_no_structure")
    index = (template_id + MAX_TEMPLATES - known.template_id_offset) % MAX_TEMPLATES
    if index >= len(known.template_sid):
        raise RtpError("dd_bad_template")
    if bits is not None:  # the frame's own dependencies, read only to check they are all there
        if custom_dtis:
            bits.f(2 * known.decode_targets)
        if custom_fdiffs:
            while size := bits.f(2):
                bits.f(4 * size)
        if custom_chains:
            bits.f(8 * known.chains)
    return DependencyDescriptor(start, end, template_id, frame_number, structure, active,
                                known.template_sid[index], known.template_tid[index])


def _structure(bits: _Bits) -> DependencyStructure:
    offset = bits.f(6)
    targets = bits.f(5) + 1
    sids: list[int] = []
    tids: list[int] = []
    sid = tid = 0
    while True:  # template_layers
        if len(sids) == MAX_TEMPLATES:
            raise RtpError("dd_too_many_templates")
        sids.append(sid)
        tids.append(tid)
        idc = bits.f(2)
        if idc == 3:
            break
        if idc == 1:
            tid += 1
            if tid >= MAX_TEMPORAL:
                raise RtpError("dd_too_many_layers")
        elif idc == 2:
            tid = 0
            sid += 1
            if sid >= MAX_SPATIAL:
                raise RtpError("dd_too_many_layers")
    count = len(sids)
    bits.f(2 * targets * count)  # template_dtis
    for _ in range(count):  # template_fdiffs: each a flag, and 4 bits per difference
        while bits.f(1):
            bits.f(4)
    chains = bits.ns(targets + 1)
    if chains:
        for _ in range(targets):
            bits.ns(chains)  # decode_target_protected_by
        bits.f(4 * chains * count)  # template_chain_fdiff
    resolutions: tuple[tuple[int, int], ...] = ()
    if bits.f(1):  # render_resolutions, one per spatial layer
        resolutions = tuple((bits.f(16) + 1, bits.f(16) + 1) for _ in range(sid + 1))
    return DependencyStructure(offset, targets, chains, tuple(sids), tuple(tids), resolutions)


def picture(dd: DependencyDescriptor, payload: bytes | memoryview) -> Av1Picture:
    """What a DownTrack reads of an AV1 packet, from its DD and its aggregation header: a picture
    starts with the first packet of its spatial layer 0 frame, and a key picture is one that starts
    a coded video sequence there (the aggregation header's N bit)."""
    start = dd.start and dd.sid == 0
    keyframe = start and len(payload) > 0 and bool(payload[0] & 0x08)
    return Av1Picture(start, keyframe, dd.tid, dd.sid, dd.end)


def single_layer_picture(payload: bytes | memoryview) -> Av1Picture:
    """An AV1 packet without a DD, as one layer: the aggregation header says whether its first OBU
    element starts here (Z = 0), whether its last ends here (Y = 0) and whether a coded video
    sequence, a key frame, starts (N)."""
    if not payload:
        raise RtpError("av1_empty_payload")
    b = payload[0]
    start = not b & 0x80
    return Av1Picture(start, start and bool(b & 0x08), 0, 0, not b & 0x40)
