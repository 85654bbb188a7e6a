"""The C parsers (`sfu._native`: parse, vp8_descriptor, vp9_descriptor, extension) against sfu.rtp's on one datagram:
the same attributes, or the same RtpError reason. Used by the parity unit test and fuzz_native."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sfu import _native, rtp

VIEW = ("marker", "pt", "seq", "ts", "ssrc", "ext_start", "ext_end", "one_byte", "payload_start", "payload_end")
VP8 = ("start", "keyframe", "picture_id", "picture_id_pos", "picture_id_bits", "tl0picidx", "tl0picidx_pos", "tid",
       "layer_sync", "size")
VP9 = (*VP8, "sid", "end", "flexible", "inter_layer", "width", "height", "ss_pos")
EXTENSION_IDS = (*range(16), 64, 255)  # every one-byte id (and 0/15, which are never elements), some two-byte


def _outcome(fn: Callable[..., Any], *args: Any, fields: tuple[str, ...] = ()) -> Any:
    try:
        out = fn(*args)
    except rtp.RtpError as e:
        return ("RtpError", e.reason)
    if fields:
        return tuple(getattr(out, f) for f in fields)
    return out


def disagreement(data: bytes) -> str | None:
    """None when both sides see `data` the same way; otherwise what differs."""
    py, c = _outcome(rtp.parse, data, fields=VIEW), _outcome(_native.parse, data, fields=VIEW)
    if py != c:
        return f"parse: sfu.rtp {py}, C {c}"
    if py[0] == "RtpError":
        return None
    v, cv = rtp.parse(data), _native.parse(data)
    payload = data[v.payload_start : v.payload_end]
    py, c = _outcome(rtp.vp8_descriptor, payload, fields=VP8), _outcome(_native.vp8_descriptor, payload, fields=VP8)
    if py != c:
        return f"vp8_descriptor: sfu.rtp {py}, C {c}"
    py, c = _outcome(rtp.vp9_descriptor, payload, fields=VP9), _outcome(_native.vp9_descriptor, payload, fields=VP9)
    if py != c:
        return f"vp9_descriptor: sfu.rtp {py}, C {c}"
    for xid in EXTENSION_IDS:
        py, c = _outcome(rtp.extension, data, v, xid), _outcome(_native.extension, data, cv, xid)
        if py != c:
            return f"extension {xid}: sfu.rtp {py!r}, C {c!r}"
    return None
