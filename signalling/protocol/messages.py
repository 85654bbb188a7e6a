"""The client protocol: JSON messages over one WebSocket (documented in docs/protocol.md).

Every inbound message is checked here before anything acts on it; a bad one yields a
`ProtocolError` whose code and message go back to the client as an `error` message.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from signalling import safejson

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024
# A direct connection's SDP with all its candidates is a few KiB; the partner's socket must not be
# filled at 20 × 256 KiB per second by a partner that sends large junk
MAX_P2P_SIGNAL_BYTES = 64 * 1024
MAX_DEPTH = 16  # the deepest real message (a trickle candidate object) nests 2 levels
# The one definition of a room name (access/gating.py uses it too). Always `fullmatch`: with `match` and
# `$`, "demo\n" passed as a second, distinct room ("demo-gated\n" an ungated twin of a gated one).
ROOM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_NAME_CHARS = 64
# Unicode categories a display name may not contain: controls (C0, DEL, C1), format characters
# (bidi overrides and isolates that make a name render as someone else's, invisible characters),
# surrogates, private use and unassigned code points, line and paragraph separators.
_BAD_NAME_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# ...except the zero-width (non-)joiner: emoji sequences and Indic/Persian spelling need them, and
# they cannot reorder text.
_NAME_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, ref: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref  # the client's message id, echoed back when it gave one

    def to_message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.ref is not None:
            msg["id"] = self.ref
        return msg


_STR, _BOOL, _OBJ, _ANY = str, bool, dict, object
# What a published track carries: sfu.api.SOURCES, spelled out here because signalling.access
# reads this module and must not import the media plane (a test holds the two equal).
SOURCES = ("camera", "microphone", "screen", "screen_audio")
MAX_SOURCES = 4  # one per m-line, and an offer has at most 4 (sfu.sdp.MAX_MEDIA)
ENCRYPTIONS = ("none", "sframe")  # sfu.api.ENCRYPTIONS, likewise

# type -> {field: (python type, required)}
SCHEMAS: dict[str, dict[str, tuple[type, bool]]] = {
    "join": {"room": (_STR, True), "name": (_STR, False), "grant": (_STR, False), "p2p": (_BOOL, False)},
    "p2p_signal": {"to": (_STR, True), "data": (_OBJ, True)},
    "offer": {"target": (_STR, True), "sdp": (_STR, True), "sources": (_OBJ, False), "encryption": (_STR, False)},
    "answer": {"target": (_STR, True), "sdp": (_STR, True)},
    "trickle": {"target": (_STR, True), "candidate": (_ANY, True)},
    "restart_ice": {"target": (_STR, True)},
    "mute": {"track": (_STR, True), "muted": (_BOOL, True)},
    "unpublish": {"track": (_STR, True)},
    "subscription": {"track": (_STR, True), "layer": (_STR, False), "width": (int, False), "height": (int, False),
                     "pinned": (_BOOL, False)},
    "allocation": {},
    "leave": {},
    "ping": {"n": (int, False)},
    "resume": {"token": (_STR, True), "n": (int, True)},
}
TARGETS = {"offer": ("publisher",), "answer": ("subscriber",), "trickle": ("publisher", "subscriber"),
           "restart_ice": ("subscriber",)}


def parse(raw: str | bytes) -> dict[str, Any]:
    """Decode and validate one client message; anything wrong is a `ProtocolError`, nothing else."""
    if not isinstance(raw, str):
        raise ProtocolError("bad_message", "binary frames are not part of the protocol; send JSON text")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"message is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        # never json.loads: py_ecc's raised recursion limit lets deep nesting crash the process
        msg = safejson.loads(raw, max_bytes=MAX_MESSAGE_BYTES, max_depth=MAX_DEPTH)
    except safejson.JsonError as e:
        if str(e).startswith("larger than"):  # fewer chars than the limit, more UTF-8 bytes
            raise ProtocolError("too_large", f"message is {e}") from None
        raise ProtocolError("bad_json", f"message is not valid JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", f"message must be a JSON object, not {type(msg).__name__}")
    ref = msg.get("id")
    if ref is not None and not isinstance(ref, (str, int)) or isinstance(ref, bool):
        raise ProtocolError("bad_message", "'id' must be a string or an integer")
    mtype = msg.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError("bad_message", "message has no 'type' string", ref)
    schema = SCHEMAS.get(mtype)
    if schema is None:
        known = ", ".join(sorted(SCHEMAS))
        raise ProtocolError("unknown_type", f"unknown message type {mtype[:64]!r}; known: {known}", ref)
    for name, (tp, required) in schema.items():
        if name not in msg or msg[name] is None:
            if required and not (name == "candidate" and name in msg):
                raise ProtocolError("missing_field", f"{mtype}: field {name!r} is required", ref)
            continue
        value = msg[name]
        if tp is not object and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
            raise ProtocolError("bad_field", f"{mtype}: field {name!r} must be {tp.__name__}", ref)
    if mtype in TARGETS and msg["target"] not in TARGETS[mtype]:
        raise ProtocolError("bad_field", f"{mtype}: target must be one of {', '.join(TARGETS[mtype])}", ref)
    if mtype == "join":
        if not valid_room(msg["room"]):
            raise ProtocolError("bad_field", "join: room must be 1-64 letters, digits, '_', '.', '-'", ref)
        problem = name_problem(msg.get("name") or "")
        if problem:
            raise ProtocolError("bad_field", f"join: name {problem}", ref)
    if mtype == "offer" and msg.get("sources") is not None:
        sources = msg["sources"]
        if len(sources) > MAX_SOURCES or not all(
                isinstance(mid, str) and 0 < len(mid) <= 16 and source in SOURCES for mid, source in sources.items()):
            raise ProtocolError("bad_field", f"offer: sources must map at most {MAX_SOURCES} mids (1-16 characters) "
                                             f"to one of {', '.join(SOURCES)}", ref)
    if mtype == "offer" and msg.get("encryption") not in (None, *ENCRYPTIONS):
        raise ProtocolError("bad_field", f"offer: encryption must be one of {', '.join(ENCRYPTIONS)}", ref)
    if mtype in ("ping", "resume") and msg.get("n") is not None and not 0 <= msg["n"] < 2**53:
        raise ProtocolError("bad_field", f"{mtype}: n must be the number of a message the server sent (0 or more)", ref)
    if mtype == "resume" and len(msg["token"]) > 128:
        raise ProtocolError("bad_field", "resume: token is longer than any the server hands out", ref)
    if mtype == "p2p_signal" and len(msg["to"]) > 64:
        raise ProtocolError("bad_field", "p2p_signal: to must be a participant id", ref)
    if mtype == "p2p_signal" and len(raw) > MAX_P2P_SIGNAL_BYTES:
        raise ProtocolError("too_large", f"p2p_signal: larger than {MAX_P2P_SIGNAL_BYTES} bytes; "
                                         "an SDP with its candidates needs a few KiB", ref)
    if mtype == "subscription":
        layer = msg.get("layer")
        if layer is not None and layer not in ("low", "medium", "high", "off"):
            raise ProtocolError("bad_field", "subscription: layer must be low, medium, high or off", ref)
        for dim in ("width", "height"):
            if dim in msg and msg[dim] is not None and not 0 <= msg[dim] <= 16384:
                raise ProtocolError("bad_field", f"subscription: {dim} must be between 0 and 16384", ref)
    return msg


def valid_room(room: str) -> bool:
    """Whether `room` is a room name (the whole string: a trailing newline is not allowed)."""
    return isinstance(room, str) and ROOM_RE.fullmatch(room) is not None


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a display name (for an error message), or None if it can."""
    if len(name) > MAX_NAME_CHARS:
        return f"must be at most {MAX_NAME_CHARS} characters"
    for i, c in enumerate(name):
        if unicodedata.category(c) in _BAD_NAME_CATEGORIES and c not in _NAME_ALLOWED_FORMAT:
            return (f"contains U+{ord(c):04X} ({unicodedata.category(c)}) at position {i}; "
                    "control, format (e.g. bidi override) and unassigned characters are not allowed")
    return None
