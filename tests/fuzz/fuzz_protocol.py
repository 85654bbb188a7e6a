"""Fuzz signalling/protocol/messages.py `parse`: one client message as it arrives on the WebSocket.

Input: the frame's bytes. The first byte chooses how they reach `parse`: as a binary frame (bytes),
or as a text frame (str; aiohttp decodes text frames as strict UTF-8, anything else is modelled
with surrogateescape, since a JSON string can also carry lone surrogates as \\u escapes).
Contract: `parse` raises only `ProtocolError` (anything else becomes an `internal` error); what it
accepts is a dict whose `type` is known and whose fields have the schema's types; a `join` room is
exactly the room syntax (no trailing newline, which would make `demo\\n` a second, ungated `demo`)
and a `join` name has no control characters (C0, DEL, C1) and no bidi overrides/isolates.
"""

from __future__ import annotations

import re
import unicodedata

from _harness import Finding, instrumented, main

with instrumented():
    from signalling.protocol import messages as protocol

ROOM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
BIDI = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A))


def test_one(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    raw: str | bytes = body if data[0] & 1 else body.decode("utf-8", "surrogateescape")
    try:
        msg = protocol.parse(raw)
    except protocol.ProtocolError as e:
        if not isinstance(e.code, str) or not isinstance(e.message, str):
            raise Finding("ProtocolError without a string code and message") from None
        e.to_message()
        return
    if not isinstance(msg, dict) or msg.get("type") not in protocol.SCHEMAS:
        raise Finding(f"accepted a message without a known type: {str(msg)[:80]}")
    for name, (tp, required) in protocol.SCHEMAS[msg["type"]].items():
        value = msg.get(name)
        if value is None:
            if required and name != "candidate":
                raise Finding(f"accepted {msg['type']} without {name!r}")
            continue
        if tp is not object and not isinstance(value, tp):
            raise Finding(f"accepted {msg['type']}.{name} of type {type(value).__name__}")
    if msg["type"] == "join":
        if not ROOM.fullmatch(msg["room"]):
            raise Finding(f"accepted room {msg['room']!r}")
        name = msg.get("name") or ""
        bad = [c for c in name if unicodedata.category(c) == "Cc" or ord(c) in BIDI]
        if bad:
            raise Finding(f"accepted a name with control/bidi character U+{ord(bad[0]):04X}")


if __name__ == "__main__":
    main(test_one)
