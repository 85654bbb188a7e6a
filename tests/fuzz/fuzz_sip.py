"""Fuzz SIP messages: signalling/sip/message.py, as the SIP service's transports hand it datagrams
and framed stream messages.

Input: first byte's bit 0 picks the transport (0: UDP, 1: a stream: TCP, TLS, WebSocket), the rest
is the message.
Contract: `parse` raises only `SipError`, whose status is a 4xx or 5xx; what parses serialises
(`to_bytes`) to a message that parses to the same serialisation (what we build from a parsed message
is stable), and a request's answer (`response`, with a To tag, naming a source in its top Via)
serialises to a response that parses.
"""

from __future__ import annotations

from _harness import Finding, instrumented, main

with instrumented():
    from signalling.sip.message import Request, SipError, parse, response


def test_one(data: bytes) -> None:
    if not data:
        return
    stream, raw = bool(data[0] & 1), data[1:]
    try:
        msg = parse(raw, stream=stream)
    except SipError as e:
        if not 400 <= e.status < 600:
            raise Finding(f"SipError with status {e.status}") from None
        return
    out = msg.to_bytes()
    try:
        again = parse(out, stream=True)
    except SipError as e:
        raise Finding(f"what a parsed message serialises to does not parse: {e.reason}") from None
    if again.to_bytes() != out:
        raise Finding("a parsed message's serialisation is not stable")
    if isinstance(msg, Request):
        answer = response(msg, 486, "Busy Here", to_tag="fuzz", source=("2001:db8::7", 40000)).to_bytes()
        try:
            parse(answer, stream=True)
        except SipError as e:
            raise Finding(f"the answer to a parsed request does not parse: {e.reason}") from None


if __name__ == "__main__":
    main(test_one)
