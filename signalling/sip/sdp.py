"""The SIP leg's SDP (RFC 4566, offer/answer RFC 3264): plain RTP (RTP/AVP) audio, as SIP phones and
PBXs offer it. What an offer says is read strictly (one audio m-line taken, its address and port,
its codecs); the answer names the one codec chosen, and telephone-event (RFC 4733) when offered.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from signalling.sip.message import SipError

# What the gateway speaks on the SIP leg, in the order it prefers them (name -> static payload type,
# clock rate). RFC 3551: PCMU 0, PCMA 8.
CODECS = {"PCMU": (0, 8000), "PCMA": (8, 8000)}
MAX_SDP = 8192
ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


@dataclass
class AudioOffer:
    """An offer's audio m-line: where to send (`host`, `port`), payload types by codec name
    (upper case) and clock rate, and telephone-event's payload type if offered."""

    host: str
    port: int
    payload_types: dict[int, tuple[str, int]] = field(default_factory=dict)
    telephone_event: int | None = None
    direction: str = "sendrecv"
    # every m-line of the offer, in order ((media, proto, first format)), and which is the audio taken:
    # the answer has as many, the others refused with port 0 (RFC 3264 §6)
    lines: list[tuple[str, str, str]] = field(default_factory=list)
    audio_index: int = 0

    def choose(self) -> tuple[str, int] | None:
        """The codec both sides speak, ours preferred in our order: (name, payload type)."""
        for name, (_, clock) in CODECS.items():
            for pt, (n, c) in self.payload_types.items():
                if n == name and c == clock:
                    return name, pt
        return None


def parse_offer(body: bytes) -> AudioOffer:
    if len(body) > MAX_SDP:
        raise SipError(f"SDP of {len(body)} bytes: at most {MAX_SDP}", 488)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("SDP is not UTF-8", 488) from None
    lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln]
    if not lines or lines[0] != "v=0":
        raise SipError("SDP: the first line must be v=0", 488)
    session_host: str | None = None
    media: list[list[str]] = []
    for ln in lines:
        if len(ln) < 2 or ln[1] != "=":
            raise SipError(f"SDP: malformed line {ln[:40]!r}", 488)
        if ln.startswith("m="):
            media.append([ln])
        elif media:
            media[-1].append(ln)
        elif ln.startswith("c="):
            session_host = _connection(ln)
    audio = [i for i, m in enumerate(media) if m[0].startswith("m=audio ")]
    if not audio:
        raise SipError("SDP: no audio m-line", 488)
    lines_seen = []
    for m_ in media:
        f = m_[0][2:].split()
        if len(f) < 4:
            raise SipError(f"SDP: malformed {m_[0][:60]!r}", 488)
        lines_seen.append((f[0], f[2], f[3]))
    m = media[audio[0]]
    parts = m[0][2:].split()
    if len(parts) < 4 or not parts[1].isdigit() or parts[2] != "RTP/AVP":
        raise SipError(f"SDP: {m[0][:60]!r}: only plain RTP/AVP audio (no SRTP yet)", 488)
    port = int(parts[1])
    if port > 65535:
        raise SipError(f"SDP: port {port} out of range", 488)
    pts = []
    for p in parts[3:]:
        if not p.isdigit() or int(p) > 127:
            raise SipError(f"SDP: payload type {p[:10]!r} is not 0-127", 488)
        pts.append(int(p))
    host = session_host
    offer = AudioOffer("", port, lines=lines_seen, audio_index=audio[0])
    names: dict[int, tuple[str, int]] = {pt: _static(pt) for pt in pts if _static(pt)[0]}
    for ln in m[1:]:
        if ln.startswith("c="):
            host = _connection(ln)
        elif ln.startswith("a=rtpmap:"):
            pt_text, _, spec = ln[len("a=rtpmap:"):].partition(" ")
            name, _, rest = spec.partition("/")
            clock = rest.partition("/")[0]
            if not pt_text.isdigit() or not name or not clock.isdigit():
                raise SipError(f"SDP: malformed {ln[:60]!r}", 488)
            if int(pt_text) in pts:
                names[int(pt_text)] = (name.upper(), int(clock))
        elif ln[2:] in ("sendrecv", "sendonly", "recvonly", "inactive"):
            offer.direction = ln[2:]
    if host is None:
        raise SipError("SDP: no connection address (c=)", 488)
    offer.host = host
    for pt, (name, clock) in names.items():
        if name == "TELEPHONE-EVENT" and clock == 8000:
            offer.telephone_event = pt
        else:
            offer.payload_types[pt] = (name, clock)
    return offer


def _static(pt: int) -> tuple[str, int]:
    return next(((n, c) for n, (p, c) in CODECS.items() if p == pt), ("", 0))


def _connection(line: str) -> str:
    parts = line[2:].split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SipError(f"SDP: malformed {line[:60]!r}", 488)
    try:
        addr = ipaddress.ip_address(parts[2].split("/")[0])
    except ValueError:
        raise SipError(f"SDP: {parts[2][:40]!r} is not an IP address (names are not resolved)", 488) from None
    return str(addr)


def answer(offer: AudioOffer, codec: tuple[str, int], host: str, port: int, session: int | None = None,
           version: int = 1) -> bytes:
    """Our answer: the one codec chosen (and telephone-event), at our RTP address. A re-INVITE's
    answer keeps the call's `session` id with the next `version` (RFC 4566 o=)."""
    name, pt = codec
    clock = CODECS[name][1]
    ip = "IP6" if ":" in host else "IP4"
    session = secrets.randbelow(2**31) if session is None else session
    fmts = [str(pt)] + ([str(offer.telephone_event)] if offer.telephone_event is not None else [])
    lines = ["v=0", f"o=basement {session} {version} IN {ip} {host}", "s=Basement", f"c=IN {ip} {host}", "t=0 0"]
    for i, (media, proto, first) in enumerate(offer.lines or [("audio", "RTP/AVP", str(pt))]):
        if i != offer.audio_index:
            lines.append(f"m={media} 0 {proto} {first}")  # (video, a second audio …: refused)
            continue
        lines += [f"m=audio {port} RTP/AVP {' '.join(fmts)}", f"a=rtpmap:{pt} {name}/{clock}"]
        if offer.telephone_event is not None:
            lines += [f"a=rtpmap:{offer.telephone_event} telephone-event/8000",
                      f"a=fmtp:{offer.telephone_event} 0-16"]
        lines += ["a=ptime:20", f"a={ANSWER_DIRECTION[offer.direction]}"]
    return ("\r\n".join(lines) + "\r\n").encode()
