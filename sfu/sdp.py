"""SDP checks and the munging aiortc lacks (simulcast a=rid / a=simulcast, SSRC hints).

aiortc parses SDP leniently and raises assorted exceptions on garbage; everything here turns bad
input into `SdpError` with a message a client developer can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiortc.sdp import SessionDescription


class SdpError(ValueError):
    pass


@dataclass
class MediaInfo:
    mid: str
    kind: str
    direction: str
    rids: list[str] = field(default_factory=list)  # send rids, in the publisher's order
    ssrcs: list[tuple[int, str]] = field(default_factory=list)  # (ssrc, "media" | "rtx")
    extmap: dict[int, str] = field(default_factory=dict)


@dataclass
class OfferInfo:
    media: list[MediaInfo]

    def by_mid(self) -> dict[str, MediaInfo]:
        return {m.mid: m for m in self.media}


MAX_SDP_BYTES = 64 * 1024
MAX_MEDIA = 4


def check_offer(sdp: object) -> OfferInfo:
    """Validate a publisher's offer; return what the SFU needs from it."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise SdpError("sdp must be a non-empty string")
    if len(sdp) > MAX_SDP_BYTES:
        raise SdpError(f"sdp is larger than {MAX_SDP_BYTES} bytes")
    if not sdp.lstrip().startswith("v=0"):
        raise SdpError("sdp must start with v=0")
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as e:  # aiortc raises ValueError/IndexError/KeyError/TypeError on garbage
        raise SdpError(f"sdp could not be parsed: {type(e).__name__}: {e}") from None
    media = [m for m in desc.media if m.kind in ("audio", "video")]
    if not media:
        raise SdpError("sdp has no audio or video media section")
    if len(desc.media) > MAX_MEDIA:
        raise SdpError(f"sdp has {len(desc.media)} media sections; at most {MAX_MEDIA} are allowed")
    bundled = set()
    for g in desc.group:
        if g.semantic == "BUNDLE":
            bundled.update(g.items)
    infos = []
    for m in media:
        if m.rtp.muxId is None or m.rtp.muxId == "":
            raise SdpError(f"m={m.kind} section has no a=mid")
        if len(media) > 1 and m.rtp.muxId not in bundled:
            raise SdpError(f"m={m.kind} (mid {m.rtp.muxId}) is not in the BUNDLE group; Basement requires BUNDLE")
        if m.dtls is None or not m.dtls.fingerprints:
            raise SdpError(f"m={m.kind} (mid {m.rtp.muxId}) has no DTLS fingerprint")
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise SdpError(f"m={m.kind} (mid {m.rtp.muxId}) has no ICE credentials")
        if m.direction not in ("sendonly", "sendrecv"):
            raise SdpError(f"m={m.kind} (mid {m.rtp.muxId}) must be sendonly on the publish connection")
        if not m.rtp.codecs:
            raise SdpError(f"m={m.kind} (mid {m.rtp.muxId}) offers no codecs")
        infos.append(MediaInfo(mid=m.rtp.muxId, kind=m.kind, direction=m.direction))
    _scan_lines(sdp, {i.mid: i for i in infos})
    return OfferInfo(infos)


def _scan_lines(sdp: str, by_mid: dict[str, MediaInfo]) -> None:
    """Pick up what aiortc's parser drops: a=rid, a=simulcast, and a=ssrc roles per section."""
    for section in re.split(r"\r?\n(?=m=)", sdp)[1:]:
        mid_m = re.search(r"^a=mid:(\S+)", section, re.MULTILINE)
        if not mid_m or mid_m.group(1) not in by_mid:
            continue
        info = by_mid[mid_m.group(1)]
        info.rids = re.findall(r"^a=rid:(\S+) send", section, re.MULTILINE)
        info.extmap = {int(i): uri for i, uri in re.findall(r"^a=extmap:(\d+)(?:/\w+)? (\S+)", section, re.MULTILINE)}
        rtx = set()
        for group in re.findall(r"^a=ssrc-group:FID (\d+) (\d+)", section, re.MULTILINE):
            rtx.add(int(group[1]))
        seen = []
        for s in re.findall(r"^a=ssrc:(\d+) ", section, re.MULTILINE):
            if int(s) not in seen:
                seen.append(int(s))
        if info.rids or re.search(r"^a=ssrc-group:SIM", section, re.MULTILINE):
            continue  # simulcast SSRCs are learnt from RID extensions, not guessed from order
        info.ssrcs = [(s, "rtx" if s in rtx else "media") for s in seen]


def add_simulcast_recv(answer: str, rids_by_mid: dict[str, list[str]]) -> str:
    """Accept the publisher's simulcast in our answer: a=rid:<x> recv and a=simulcast:recv."""
    out = []
    mid = None
    for line in answer.split("\r\n"):
        if line.startswith("m="):
            mid = None
        out.append(line)
        if line.startswith("a=mid:"):
            mid = line[6:]
            rids = rids_by_mid.get(mid)
            if rids and len(rids) > 1:
                out.extend(f"a=rid:{r} recv" for r in rids)
                out.append("a=simulcast:recv " + ";".join(rids))
    return "\r\n".join(out)
