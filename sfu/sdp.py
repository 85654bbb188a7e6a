"""SDP checks and the munging aiortc lacks (simulcast a=rid / a=simulcast, SSRC hints).

aiortc parses SDP leniently and raises assorted exceptions on garbage; everything here turns bad
input into `SdpError` with a message a client developer can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiortc.sdp import SessionDescription

from sfu.api import SdpError  # noqa: F401  (raised here; part of the media plane's contract)


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
    media: list[MediaInfo]  # the audio and video m-lines
    data_mid: str | None = None  # the data channels' m-line (m=application), if offered

    def by_mid(self) -> dict[str, MediaInfo]:
        return {m.mid: m for m in self.media}


MAX_SDP_BYTES = 64 * 1024
MAX_MEDIA = 4  # audio and video m-lines; one m=application for data channels may come on top
MAX_SIMULCAST_LAYERS = 3  # default of the max_simulcast_layers setting: what browsers send
MAX_SSRCS_PER_TRACK = 12  # default of the max_ssrcs_per_track setting: 3 layers x (media + RTX), twice over
# RFC 8851 rid-id = 1*(alpha-numeric / "-" / "_"); at most 16 bytes, what a one-byte header
# extension element (RFC 8285) can carry
RID_RE = re.compile(r"[A-Za-z0-9_-]{1,16}")
# RFC 5888 identification-tag = token (RFC 4566 token-char); at most 16 bytes, as for rids (the MID
# header extension carries it). It ends up in track ids that every participant receives.
MID_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]{1,16}")
_offer_limits = (MAX_SIMULCAST_LAYERS, MAX_SSRCS_PER_TRACK)


def configure_offer_limits(max_layers: int, max_ssrcs: int) -> None:
    """Process-wide caps for `check_offer` (sfu.ingress.configure_ingress sets them from settings)."""
    global _offer_limits
    _offer_limits = (max_layers, max_ssrcs)


def check_offer(sdp: object, max_layers: int | None = None, max_ssrcs: int | None = None) -> OfferInfo:
    """Validate a publisher's offer; return what the SFU needs from it.

    `max_layers`: simulcast layers (a=rid send lines) per m-line; `max_ssrcs`: distinct a=ssrc per
    m-line; None = the configured process-wide value.
    """
    max_layers = _offer_limits[0] if max_layers is None else max_layers
    max_ssrcs = _offer_limits[1] if max_ssrcs is None else max_ssrcs
    if not isinstance(sdp, str) or not sdp.strip():
        raise SdpError("sdp must be a non-empty string")
    if len(sdp) > MAX_SDP_BYTES or len(sdp.encode(errors="replace")) > MAX_SDP_BYTES:
        raise SdpError(f"sdp is larger than {MAX_SDP_BYTES} bytes")
    if not sdp.lstrip().startswith("v=0"):
        raise SdpError("sdp must start with v=0")
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as e:  # aiortc raises ValueError/IndexError/KeyError/TypeError on garbage
        raise SdpError(f"sdp could not be parsed: {type(e).__name__}: {e}") from None
    media = [m for m in desc.media if m.kind in ("audio", "video")]
    data = [m for m in desc.media if m.kind == "application"]
    if len(media) + len(data) != len(desc.media):
        other = next(m.kind for m in desc.media if m not in media and m not in data)
        raise SdpError(f"sdp has an m={str(other)[:16]} section; only audio, video and application (data channels)")
    if not media and not data:
        raise SdpError("sdp has no audio, video or application media section")
    if len(media) > MAX_MEDIA:
        raise SdpError(f"sdp has {len(media)} audio and video sections; at most {MAX_MEDIA} are allowed")
    if len(data) > 1:
        raise SdpError(f"sdp has {len(data)} m=application sections; data channels need one")
    if data and not 0 < _sctp_port(data[0]) < 65536:
        raise SdpError("m=application is not SCTP data channels: expected 'UDP/DTLS/SCTP webrtc-datachannel' "
                       "with an a=sctp-port of 1-65535 (RFC 8841)")
    bundled = set()
    for g in desc.group:
        if g.semantic == "BUNDLE":
            bundled.update(g.items)
    infos = []
    for m in media + data:
        if m.rtp.muxId is None or m.rtp.muxId == "":
            raise SdpError(f"m={m.kind} section has no a=mid")
        if not MID_RE.fullmatch(m.rtp.muxId):
            raise SdpError(f"m={m.kind} has an invalid a=mid {m.rtp.muxId[:20]!r}: 1-16 token characters (RFC 5888)")
        if len(desc.media) > 1 and m.rtp.muxId not in bundled:
            raise SdpError(f"m={m.kind} (mid {m.rtp.muxId}) is not in the BUNDLE group; Basement requires BUNDLE")
        if m.dtls is None or not m.dtls.fingerprints:
            raise SdpError(f"m={m.kind} (mid {m.rtp.muxId}) has no DTLS fingerprint")
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise SdpError(f"m={m.kind} (mid {m.rtp.muxId}) has no ICE credentials")
        if m.kind == "application":
            continue
        if m.direction not in ("sendonly", "sendrecv"):
            raise SdpError(f"m={m.kind} (mid {m.rtp.muxId}) must be sendonly on the publish connection")
        if not m.rtp.codecs:
            raise SdpError(f"m={m.kind} (mid {m.rtp.muxId}) offers no codecs")
        infos.append(MediaInfo(mid=m.rtp.muxId, kind=m.kind, direction=m.direction))
    _scan_lines(sdp, {i.mid: i for i in infos}, max_layers, max_ssrcs)
    return OfferInfo(infos, data[0].rtp.muxId if data else None)


def _sctp_port(m: object) -> int:
    """The SCTP port an m=application offers (RFC 8841 a=sctp-port, or the legacy DTLS/SCTP format), or -1."""
    profile = getattr(m, "profile", "")
    if profile == "DTLS/SCTP":  # draft-ietf-mmusic-sctp-sdp-05: the port is the format
        fmt = getattr(m, "fmt", [])
        return int(fmt[0]) if fmt and isinstance(fmt[0], str) and fmt[0].isdigit() and len(fmt[0]) <= 5 else -1
    port = getattr(m, "sctp_port", None)
    return port if profile.endswith("DTLS/SCTP") and isinstance(port, int) else -1


def _scan_lines(sdp: str, by_mid: dict[str, MediaInfo], max_layers: int, max_ssrcs: int) -> None:
    """Pick up what aiortc's parser drops: a=rid, a=simulcast, and a=ssrc roles per section."""
    for section in re.split(r"\r?\n(?=m=)", sdp)[1:]:
        mid_m = re.search(r"^a=mid:(\S+)", section, re.MULTILINE)
        if not mid_m or mid_m.group(1) not in by_mid:
            continue
        info = by_mid[mid_m.group(1)]
        info.rids = _send_rids(section, info, max_layers)
        info.extmap = {int(i): uri for i, uri in re.findall(r"^a=extmap:(\d+)(?:/\w+)? (\S+)", section, re.MULTILINE)}
        rtx = set()
        for group in re.findall(r"^a=ssrc-group:FID (\d+) (\d+)", section, re.MULTILINE):
            rtx.add(int(group[1]))
        seen: list[int] = []
        for s in re.findall(r"^a=ssrc:(\d+) ", section, re.MULTILINE):
            if int(s) not in seen:
                seen.append(int(s))
                if len(seen) > max_ssrcs:
                    raise SdpError(f"m={info.kind} (mid {info.mid}) announces more than {max_ssrcs} SSRCs (a=ssrc)")
        if info.rids or re.search(r"^a=ssrc-group:SIM", section, re.MULTILINE):
            continue  # simulcast SSRCs are learnt from RID extensions, not guessed from order
        info.ssrcs = [(s, "rtx" if s in rtx else "media") for s in seen]


def _send_rids(section: str, info: MediaInfo, max_layers: int) -> list[str]:
    """The a=rid ... send lines of one m-line: each becomes a layer every participant hears of."""
    rids: list[str] = []
    for rid in re.findall(r"^a=rid:(\S*)[ \t]+send\b", section, re.MULTILINE):
        where = f"m={info.kind} (mid {info.mid})"
        if not RID_RE.fullmatch(rid):
            raise SdpError(f"{where} has an invalid rid {rid[:20]!r}: 1-16 letters, digits, '-' or '_' (RFC 8851)")
        if rid in rids:
            raise SdpError(f"{where} repeats a=rid:{rid}")
        rids.append(rid)
        if len(rids) > max_layers:
            raise SdpError(f"{where} announces more than {max_layers} simulcast layers (a=rid ... send)")
    return rids


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


ALLOW_MIXED = "a=extmap-allow-mixed"  # RFC 8285 §6: one- and two-byte header extensions in one stream


def allows_mixed(sdp: str) -> bool:
    """Whether a description allows the two-byte header extension form (session level)."""
    session = sdp.split("\r\nm=", 1)[0]
    return any(line.strip() == ALLOW_MIXED for line in session.splitlines())


def allow_mixed(sdp: str) -> str:
    """`sdp` with a=extmap-allow-mixed at session level (aiortc neither writes nor reads it), after
    the t= line: an AV1 key frame's dependency descriptor (its structure, over the one-byte form's
    16 bytes) can only be sent, and forwarded, in the two-byte form."""
    if allows_mixed(sdp):
        return sdp
    lines = sdp.split("\r\n")
    at = next((i for i, line in enumerate(lines) if line.startswith("t=")), None)
    if at is None:
        return sdp
    lines.insert(at + 1, ALLOW_MIXED)
    return "\r\n".join(lines)
