"""Write the seed corpora: valid inputs for every harness, under tests/fuzz/corpus/<harness>/.

Run `.venv/bin/python tests/fuzz/make_corpus.py` after changing a harness's input format; the output
is deterministic and committed, so a fuzzing run starts from real-looking traffic instead of having
to rediscover RTP, SDP or SIWE syntax byte by byte.
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import msgpack
from aiortc import rtp as artp

from sfu import twcc
from signalling.access.grants import SIGNIN_TOKEN_PURPOSE, _Signer

if __package__ in (None, ""):  # run as a script: make the repository importable for tests.support
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support import packets as P  # noqa: E402
from tests.support.packets import one_byte_ext, two_byte_ext  # noqa: E402

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

# must match fuzz_ingress.py / fuzz_rtcp.py / fuzz_siwe.py
EXT_LEVEL, EXT_AST, EXT_TWCC, EXT_MID, EXT_RID, EXT_RRID = 1, 2, 3, 4, 10, 11
MEDIA_SSRC, RTX_SSRC = 0x11111111, 0x22222222
SIM_SSRCS = {"q": 0xA0000001, "h": 0xA0000002, "f": 0xA0000003}
SIM_RTX = {"q": 0xB0000001, "h": 0xB0000002, "f": 0xB0000003}
SUB_SSRC = 0x2000
NOW = 1_760_000_000
SECRET = b"fuzz-secret-fuzz-secret-fuzz-sec"
ADDRESS = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
NFT = "0xa16E02E87b7454126E5E10d957A927A7F5B5d2be"


def frame(*packets: bytes) -> bytes:
    return b"".join(len(p).to_bytes(2, "big") + p for p in packets)


# --- RTP ------------------------------------------------------------------------------------------


def rtp_packet(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, ext: bytes = b"", marker: bool = False,
               padding: int = 0) -> bytes:
    return P.rtp(pt, seq, ts, ssrc, payload, ext=ext, marker=marker, padding=padding)


def vp8_payload(picture_id: int, keyframe: bool, start: bool = True, tid: int = 0, tl0: int = 0) -> bytes:
    desc = bytes([0x90 if start else 0x80, 0xE0, 0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF, tl0 & 0xFF,
                  (tid << 6) | 0x20])
    if keyframe:  # frame tag, start code, 640x360
        frame_data = b"\x50\x42\x00\x9d\x01\x2a\x80\x02\x68\x01" + bytes(range(40))
    else:
        frame_data = b"\x31\x05\x00" + bytes(range(30))
    return desc + frame_data


def vp9_payload(picture_id: int, keyframe: bool, tid: int = 0, tl0: int = 0) -> bytes:
    """Chromium's non-flexible mode: a key picture carries the scalability structure (size, group)."""
    ss = {"sizes": ((640, 360),), "group": ((0, False, (4,)), (2, True, (1,)), (1, True, (2,)))} if keyframe else {}
    return P.vp9_descriptor(picture_id=picture_id, predicted=not keyframe, tid=tid, switch_up=tid > 0,
                            tl0picidx=tl0, **ss) + bytes(range(30))


SPS = b"\x67\x42\xc0\x1f\xda\x02\x80\xbf\xe5\x84\x00\x00\x03\x00\x04\x00\x00\x03\x00\xf0\x3c\x60\xc9\x20"
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88\x84\x00\x33\xff" + bytes(range(20))


def h264_stap_a() -> bytes:
    return b"\x18" + b"".join(len(n).to_bytes(2, "big") + n for n in (SPS, PPS, IDR))


def h264_fu_a(start: bool, end: bool) -> bytes:
    return bytes([0x7C, (0x80 if start else 0) | (0x40 if end else 0) | 0x05]) + bytes(range(60))


def opus_payload() -> bytes:
    return b"\x78" + bytes(range(60))


def ast(t: float) -> bytes:
    return (int(t * 262144) & 0xFFFFFF).to_bytes(3, "big")


# Chromium 156's key frame dependency descriptor (svc=L3T3_KEY)
AV1_KEY_DD = bytes.fromhex("c00001c0081485214eaaaaa8000600004000100002aa80a8000600004000100002a000a800060000400016d5"
                           "49241b5524906d54923157e001974ca864330e222396eca8655304224390eca8775300ef008601df010d03bf"
                           "021b1f80")


def rtp_seeds() -> dict[str, bytes]:
    mid = (EXT_MID, b"0")
    return {
        "vp8-keyframe-mid-ast": rtp_packet(96, 1000, 90000, MEDIA_SSRC, vp8_payload(100, True),
                                           one_byte_ext([mid, (EXT_AST, ast(1.0))]), marker=True),
        "vp8-delta-tid1": rtp_packet(96, 1001, 93000, MEDIA_SSRC, vp8_payload(101, False, tid=1, tl0=5)),
        "vp8-simulcast-rid-h": rtp_packet(96, 5000, 1000, SIM_SSRCS["h"], vp8_payload(7, True),
                                          one_byte_ext([mid, (EXT_RID, b"h"), (EXT_AST, ast(2.0))])),
        "rtx-rrid": rtp_packet(97, 1, 1000, SIM_RTX["h"], b"\x13\x88" + vp8_payload(7, False),
                               one_byte_ext([mid, (EXT_RRID, b"h")])),
        "rtx-padding-probe": rtp_packet(97, 2, 1000, RTX_SSRC, b"", padding=224),
        "two-byte-ext": rtp_packet(96, 7, 7, MEDIA_SSRC, vp8_payload(3, False),
                                   two_byte_ext([(EXT_MID, b"0"), (EXT_RID, b"f"), (200, b"x" * 20)])),
        "vp9-keyframe-ss": rtp_packet(98, 20, 90000, MEDIA_SSRC, vp9_payload(300, True), one_byte_ext([mid]),
                                      marker=True),
        "vp9-flexible-refs": rtp_packet(98, 21, 93000, MEDIA_SSRC,
                                        P.vp9_descriptor(picture_id=301, predicted=True, tid=1, sid=1,
                                                         inter_layer=True, references=(1, 2)) + bytes(10)),
        "av1-key-dependency-structure": rtp_packet(45, 30, 90000, MEDIA_SSRC, b"\x18" + bytes(12),
                                                   two_byte_ext([(EXT_MID, b"0"), (13, AV1_KEY_DD)])),
        "av1-custom-dependencies": rtp_packet(45, 31, 93000, MEDIA_SSRC, b"\x10" + bytes(12),
                                              one_byte_ext([mid, (13, bytes.fromhex("c300031a20100800"))])),
        "h264-stap-a": rtp_packet(102, 10, 90000, MEDIA_SSRC, h264_stap_a(), one_byte_ext([mid])),
        "h264-fu-a-start": rtp_packet(102, 11, 90000, MEDIA_SSRC, h264_fu_a(True, False)),
        "h264-single-idr": rtp_packet(102, 12, 90000, MEDIA_SSRC, IDR, marker=True),
        "opus-level": rtp_packet(111, 300, 48000, MEDIA_SSRC, opus_payload(),
                                 one_byte_ext([(EXT_LEVEL, b"\x9e"), mid])),
        "csrc": struct.pack("!BBHII", 0x82, 96, 1, 1, MEDIA_SSRC) + b"\x00\x00\x00\x01\x00\x00\x00\x02"
        + vp8_payload(1, False),
    }


def ingress_seeds() -> dict[str, bytes]:
    mid = (EXT_MID, b"0")
    out = {}
    # Chromium simulcast: no a=ssrc, MID+RID on the first packets of each SSRC, RTX with repaired-RID
    pkts = []
    for k, rid in enumerate("qhf"):
        pkts.append(rtp_packet(96, 100 * k, 0, SIM_SSRCS[rid], vp8_payload(k, True),
                               one_byte_ext([mid, (EXT_RID, rid.encode()), (EXT_AST, ast(1 + k / 100))])))
    for i in range(1, 4):
        for k, rid in enumerate("qhf"):
            pkts.append(rtp_packet(96, 100 * k + i, 3000 * i, SIM_SSRCS[rid], vp8_payload(k * 10 + i, False, tid=i & 1),
                                   one_byte_ext([(EXT_AST, ast(1 + i / 30))])))
    pkts.append(rtp_packet(97, 1, 3000, SIM_RTX["f"], (201).to_bytes(2, "big") + vp8_payload(21, False),
                           one_byte_ext([mid, (EXT_RRID, b"f")])))
    pkts.append(rtp_packet(97, 2, 3000, SIM_RTX["f"], b"", padding=200))
    out["vp8-simulcast-chromium"] = b"\x04" + frame(*pkts)
    # single layer with a=ssrc hints (media + RTX), a loss and its retransmission
    pkts = [rtp_packet(96, 500 + i, 3000 * i, MEDIA_SSRC, vp8_payload(i, i == 0), one_byte_ext([(EXT_AST, ast(i))]))
            for i in (0, 1, 3, 4)]
    pkts.append(rtp_packet(97, 9, 6000, RTX_SSRC, (502).to_bytes(2, "big") + vp8_payload(2, False)))
    out["vp8-ssrc-hints-rtx"] = b"\x08" + frame(*pkts)
    # single layer, no hints: learnt from the MID extension
    out["vp8-learn-mid"] = b"\x00" + frame(*[
        rtp_packet(96, 60000 + i, 3000 * i, MEDIA_SSRC, vp8_payload(i, i == 0), one_byte_ext([mid])) for i in range(4)])
    out["h264-stap-fu"] = b"\x09" + frame(
        rtp_packet(102, 1, 0, MEDIA_SSRC, h264_stap_a()),
        rtp_packet(102, 2, 0, MEDIA_SSRC, h264_fu_a(True, False)),
        rtp_packet(102, 3, 0, MEDIA_SSRC, h264_fu_a(False, True), marker=True),
        rtp_packet(103, 1, 0, RTX_SSRC, b"\x00\x02" + h264_fu_a(True, False)),
    )
    out["h264-learn-pt"] = b"\x01" + frame(*[rtp_packet(102, i, 3000 * i, MEDIA_SSRC, IDR if i == 0 else b"\x41" * 40)
                                            for i in range(3)])
    out["opus-audio-level"] = b"\x0a" + frame(*[
        rtp_packet(111, 40 + i, 960 * i, MEDIA_SSRC, opus_payload(), one_byte_ext([(EXT_LEVEL, b"\x9e"), mid]))
        for i in range(5)])
    out["opus-learn"] = b"\x02" + frame(*[
        rtp_packet(111, i, 960 * i, MEDIA_SSRC, opus_payload(), one_byte_ext([mid, (EXT_LEVEL, b"\x7f")]))
        for i in range(3)])
    # the same on the native data path (the configuration byte's top bit)
    out.update({f"{name}-native": bytes([data[0] | 0x80]) + data[1:] for name, data in list(out.items())})
    return out


# --- RTCP -----------------------------------------------------------------------------------------


def rtcp_seeds() -> dict[str, bytes]:
    sr = artp.RtcpSrPacket(ssrc=MEDIA_SSRC, sender_info=artp.RtcpSenderInfo(
        ntp_timestamp=0xE8000000_80000000, rtp_timestamp=123456, packet_count=100, octet_count=120000))
    sdes = artp.RtcpSdesPacket(chunks=[artp.RtcpSourceInfo(ssrc=MEDIA_SSRC, items=[(1, b"cname-publisher")])])
    block = artp.RtcpReceiverInfo(ssrc=SUB_SSRC, fraction_lost=12, packets_lost=3, highest_sequence=70000,
                                  jitter=30, lsr=0x00008000, dlsr=6553)
    rr = artp.RtcpRrPacket(ssrc=0x9999, reports=[block])
    nack = artp.RtcpRtpfbPacket(fmt=artp.RTCP_RTPFB_NACK, ssrc=0x9999, media_ssrc=SUB_SSRC, lost=[100, 101, 105, 117])
    pli = artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_PLI, ssrc=0x9999, media_ssrc=SUB_SSRC)
    fir = artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_FIR, ssrc=0x9999, media_ssrc=SUB_SSRC,
                              fci=struct.pack("!IB3x", SUB_SSRC, 1))
    remb = artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_APP, ssrc=0x9999, media_ssrc=0,
                               fci=artp.pack_remb_fci(1_500_000, [SUB_SSRC, 0x2001]))
    bye = artp.RtcpByePacket(sources=[0x9999])
    sr_with_block = artp.RtcpSrPacket(ssrc=MEDIA_SSRC, sender_info=sr.sender_info, reports=[block])
    return {
        "sr": bytes(sr),
        "sr-sdes": bytes(sr) + bytes(sdes),
        "sr-with-report": bytes(sr_with_block),
        "rr": bytes(rr),
        "nack": bytes(nack),
        "pli": bytes(pli),
        "fir": bytes(fir),
        "remb": bytes(remb),
        "bye": bytes(bye),
        "compound-rr-remb-nack": bytes(rr) + bytes(remb) + bytes(nack),
        "compound-rr-sdes-pli": bytes(rr) + bytes(sdes) + bytes(pli),
        # transport-wide feedback for the harness's history (numbers 65,520 on, across the wrap):
        # run and vector chunks, a loss, a large delta; and one padded as libwebrtc pads, with an RR
        "twcc": twcc.build(0x9999, SUB_SSRC, 65520, 64_000, 3,
                           [k * 5000 for k in range(20)] + [None, 130_000, 90_000] + [None] * 10 + [200_000]),
        "compound-rr-twcc-padded": bytes(rr) + _padded(twcc.build(0x9999, SUB_SSRC, 65530, 0, 4,
                                                                  [1000, None, 3000, 4000])),
    }


def _padded(feedback: bytes) -> bytes:
    """A feedback re-padded with RTCP padding (P set), as libwebrtc sends one whose length is not whole
    words."""
    body = feedback[4:].rstrip(b"\x00")
    pad = 4 - len(body) % 4 if len(body) % 4 else 4
    body += bytes(pad - 1) + bytes((pad,))
    return struct.pack("!BBH", 0xA0 | twcc.FMT_TWCC, twcc.RTPFB, len(body) // 4) + body


# --- SDP ------------------------------------------------------------------------------------------

FINGERPRINT = "a=fingerprint:sha-256 " + ":".join(f"{b:02X}" for b in range(32))


def _session(mids: str) -> list[str]:
    return ["v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", f"a=group:BUNDLE {mids}",
            "a=extmap-allow-mixed", "a=msid-semantic: WMS stream"]


def _transport(mid: str, setup: str = "actpass") -> list[str]:
    return ["c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0", "a=ice-ufrag:Fz9q", "a=ice-pwd:ZGF0YWRhdGFkYXRhZGF0YWRh",
            "a=ice-options:trickle", FINGERPRINT, f"a=setup:{setup}", f"a=mid:{mid}"]


def _audio(mid: str) -> list[str]:
    return ["m=audio 9 UDP/TLS/RTP/SAVPF 111", *_transport(mid),
            f"a=extmap:{EXT_LEVEL} urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            f"a=extmap:{EXT_AST} http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            f"a=extmap:{EXT_MID} urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=sendonly", "a=msid:stream audio-track", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2",
            "a=rtcp-fb:111 transport-cc", "a=fmtp:111 minptime=10;useinbandfec=1"]


def _video_head(mid: str, codecs: str = "96 97") -> list[str]:
    return [f"m=video 9 UDP/TLS/RTP/SAVPF {codecs}", *_transport(mid),
            f"a=extmap:{EXT_AST} http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            f"a=extmap:{EXT_TWCC} http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
            f"a=extmap:{EXT_MID} urn:ietf:params:rtp-hdrext:sdes:mid",
            f"a=extmap:{EXT_RID} urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            f"a=extmap:{EXT_RRID} urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
            "a=sendonly", "a=msid:stream video-track", "a=rtcp-mux", "a=rtcp-rsize"]


VP8 = ["a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 transport-cc", "a=rtcp-fb:96 ccm fir",
       "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96"]
H264 = ["a=rtpmap:102 H264/90000", "a=rtcp-fb:102 nack", "a=rtcp-fb:102 nack pli",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102"]


def sdp_seeds() -> dict[str, bytes]:
    chromium_simulcast = [*_session("0 1"), *_audio("0"), "a=ssrc:1001 cname:abc", *_video_head("1"), *VP8,
                          "a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f"]
    chromium_single = [*_session("0 1"), *_audio("0"), "a=ssrc:1001 cname:abc", *_video_head("1"), *VP8,
                       "a=ssrc-group:FID 2001 2002", "a=ssrc:2001 cname:abc", "a=ssrc:2001 msid:stream video-track",
                       "a=ssrc:2002 cname:abc", "a=ssrc:2002 msid:stream video-track"]
    # Firefox: rids 0/1/2 (its own naming), direction-qualified extmaps, ssrc lines for every layer
    firefox = [*_session("0 1"), *_audio("0"), "a=ssrc:3001 cname:{ff}",
               *[x.replace(f"a=extmap:{EXT_MID} ", f"a=extmap:{EXT_MID}/sendonly ") for x in _video_head("1")], *VP8,
               "a=rid:0 send", "a=rid:1 send", "a=rid:2 send", "a=simulcast:send 0;1;2",
               "a=ssrc:4001 cname:{ff}", "a=ssrc:4002 cname:{ff}", "a=ssrc:4003 cname:{ff}"]
    chromium_sim_group = [*_session("0"), *_video_head("0"), *VP8, "a=ssrc-group:SIM 1 2 3",
                          "a=ssrc-group:FID 1 4", "a=ssrc:1 cname:x", "a=ssrc:2 cname:x", "a=ssrc:3 cname:x",
                          "a=ssrc:4 cname:x"]
    h264 = [*_session("0 1"), *_audio("0"), *_video_head("1", "102 103"), *H264, "a=ssrc-group:FID 5 6",
            "a=ssrc:5 cname:y", "a=ssrc:6 cname:y"]
    audio_only = [*_session("0"), *_audio("0"), "a=ssrc:7 cname:z"]
    return {name: ("\r\n".join(lines) + "\r\n").encode() for name, lines in {
        "chromium-simulcast": chromium_simulcast, "chromium-single-fid": chromium_single,
        "firefox-simulcast": firefox, "chromium-sim-group": chromium_sim_group, "h264": h264,
        "audio-only": audio_only}.items()}


# --- signalling -------------------------------------------------------------------------------------


def protocol_seeds() -> dict[str, bytes]:
    offer = sdp_seeds()["chromium-simulcast"].decode()
    msgs = {
        "join": {"type": "join", "room": "demo", "name": "Ada", "id": 1},
        "join-grant": {"type": "join", "room": "demo-gated", "name": "Bob", "grant": "eyJhIjoxfQ.c2ln", "id": "j1"},
        "offer": {"type": "offer", "target": "publisher", "sdp": offer, "id": 2},
        "answer": {"type": "answer", "target": "subscriber", "sdp": offer.replace("sendonly", "recvonly")},
        "trickle": {"type": "trickle", "target": "publisher",
                    "candidate": {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
                                  "sdpMid": "0", "sdpMLineIndex": 0}},
        "trickle-end": {"type": "trickle", "target": "subscriber", "candidate": None},
        "offer-sources": {"type": "offer", "target": "publisher", "sdp": "v=0", "id": 3,
                          "sources": {"0": "microphone", "1": "camera", "2": "screen", "3": "screen_audio"}},
        "mute": {"type": "mute", "track": "TR_PA_x_1", "muted": True},
        "unpublish": {"type": "unpublish", "track": "TR_PA_x_2", "id": 8},
        "subscription": {"type": "subscription", "track": "TR_PA_x_1", "layer": "medium", "width": 640,
                         "height": 360},
        "subscription-pinned": {"type": "subscription", "track": "TR_PA_x_1", "pinned": True, "id": 9},
        "allocation": {"type": "allocation", "id": 10},
        "leave": {"type": "leave"},
        "ping": {"type": "ping", "id": 7},
    }
    out = {name: b"\x00" + json.dumps(m).encode() for name, m in msgs.items()}
    out["binary-frame"] = b"\x01" + json.dumps(msgs["ping"]).encode()
    return out


def siwe_text(**extra: str) -> str:
    lines = [f"{extra.pop('scheme', '')}127.0.0.1:8080 wants you to sign in with your Ethereum account:", ADDRESS, "",
             "Sign in to Basement", "", "URI: http://127.0.0.1:8080", "Version: 1", "Chain ID: 31337",
             "Nonce: 3f1c9a0be2d44c7f8a6b5e4d3c2b1a09", "Issued At: 2025-10-09T08:50:00.000Z"]
    for k in ("Expiration Time", "Not Before", "Request ID"):
        if k in extra:
            lines.append(f"{k}: {extra[k]}")
    if "Resources" in extra:
        lines += ["Resources:", *[f"- {r}" for r in extra["Resources"].split()]]
    return "\n".join(lines)


def siwe_seeds() -> dict[str, bytes]:
    grant = {"typ": "grant", "room": "fuzz-room", "id": ADDRESS, "pub": True, "sub": True, "iat": NOW - 10,
             "exp": NOW + 290, "jti": "AAAAAAAAAAAAAAAA"}
    signin = {"typ": SIGNIN_TOKEN_PURPOSE, "addr": ADDRESS, "iat": NOW - 10, "exp": NOW + 3600}
    body = json.dumps(grant, sort_keys=True, separators=(",", ":")).encode()
    return {
        "siwe-minimal": b"\x00" + siwe_text().encode(),
        "siwe-expiry": b"\x00" + siwe_text(**{"Expiration Time": "2025-10-09T09:00:00.000Z"}).encode(),
        "siwe-all-fields": b"\x00" + siwe_text(**{
            "scheme": "http://", "Expiration Time": "2025-10-09T09:00:00Z", "Not Before": "2025-10-09T08:40:00+00:00",
            "Request ID": "req-42", "Resources": "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq "
            "https://example.com/terms"}).encode(),
        "grant-token": b"\x01" + _Signer(SECRET, "grant").sign(grant).encode(),
        "signin-token": b"\x01" + _Signer(SECRET, SIGNIN_TOKEN_PURPOSE).sign(signin).encode(),
        "grant-body": b"\x02" + body,
        "signin-body": b"\x02" + json.dumps(signin, sort_keys=True, separators=(",", ":")).encode(),
    }


def gating_seeds() -> dict[str, object]:
    erc20 = {"standard": "erc20", "chainId": 31337, "contract": NFT, "minBalance": "10.5", "label": "Basement Token"}
    erc721 = {"standard": "erc721", "chainId": 31337, "contract": NFT, "label": "Basement Pass"}
    erc721_id = {"standard": "erc721", "chainId": "31337", "contract": NFT, "tokenId": "7"}
    erc1155 = {"standard": "erc1155", "chainId": 1, "contract": NFT, "tokenId": 3, "minAmount": "2"}
    return {
        "erc20": {"gate": erc20},
        "erc721": {"gate": erc721, "max_participants": 50},
        "erc721-token-id": {"gate": erc721_id},
        "erc1155": {"gate": erc1155},
        "any-all": {"gate": {"any": [erc721, {"all": [erc20, erc1155]}]}, "max_participants": 10000},
        "open": {"gate": None, "max_participants": 4},
        "empty": {},
    }


def bus_seeds() -> dict[str, bytes]:
    def pack(obj: object) -> bytes:
        return msgpack.packb(obj, use_bin_type=True)

    return {
        "event-msg": b"\x01" + pack({"k": "msg", "b": {"type": "participant_joined", "room": "demo",
                                                       "participant": {"id": "PA_x", "name": "Ada", "identity": ""}}}),
        "request": b"\x02" + pack({"k": "req", "r": "5f1e2d3c4b5a6978", "to": "inbox:replica-1",
                                   "b": {"op": "join", "room": "demo", "participant": "PA_x", "name": "Ada",
                                         "can_publish": True, "can_subscribe": True}}),
        "reply-ok": b"\x00" + pack({"k": "rep", "r": "r1", "ok": True, "b": {"sdp": "v=0\r\n", "bin": b"\x00\x01"}}),
        "reply-error": b"\x00" + pack({"k": "rep", "r": "r1", "ok": False, "code": "forbidden", "message": "no"}),
        "reply-unknown-rid": b"\x00" + pack({"k": "rep", "r": "0000", "ok": True, "b": None}),
        "msg-nobody": b"\x03" + pack({"k": "msg", "b": [1, 2.5, "x", None]}),
    }


def relay_seeds() -> dict[str, bytes]:
    """fuzz_relay.py: a control byte (low bit: data path), then frames, each a selector byte (0: a
    datagram to the destination's RelayPort, 1: to the source's, 2: a room link event as msgpack)
    and its body. The SSRCs are the harness's (VIDEO_SSRCS, AUDIO_SSRC)."""
    def ev(obj: object) -> bytes:
        return b"\x02" + msgpack.packb(obj, use_bin_type=True)

    q, q_rtx, f = 0x1001, 0x2001, 0x1003
    media = [b"\x00" + rtp_packet(96, seq, seq * 3000, q, vp8_payload(seq, seq == 1)) for seq in range(1, 4)]
    rtx = b"\x00" + rtp_packet(97, 1, 3000, q_rtx, b"\x00\x02" + vp8_payload(2, False))
    audio = b"\x00" + rtp_packet(111, 7, 960, 0x3001, b"\xf8\xff\xfe", ext=one_byte_ext([(1, b"\x90")]))
    sr = b"\x00" + bytes(artp.RtcpSrPacket(ssrc=f, sender_info=artp.RtcpSenderInfo(
        ntp_timestamp=1 << 40, rtp_timestamp=9000, packet_count=3, octet_count=300)))
    nack = b"\x01" + bytes(artp.RtcpRtpfbPacket(fmt=artp.RTCP_RTPFB_NACK, ssrc=9, media_ssrc=q, lost=[1, 2, 40000]))
    pli = b"\x01" + bytes(artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_PLI, ssrc=9, media_ssrc=f))
    chat = {"type": "data", "seq": 1, "from": "PA_pub", "name": "pub", "identity": "0xabc", "topic": "chat",
            "data": "hi", "at": 1}
    desc = {"info": {"track": "TR_x", "participant": "PA_two", "kind": "video", "source": "screen", "codec": "VP8",
                     "muted": False, "simulcast": False, "layers": [""], "name": "two"},
            "mid": "5", "codecs": [{"mime": "video/VP8", "clock": 90000, "channels": None, "pt": 96, "params": {},
                                    "fb": [["nack", None], ["nack", "pli"]]}],
            "ext": [[4, "urn:ietf:params:rtp-hdrext:sdes:mid"]], "layers": [["", 0x4001, None]]}
    return {
        "media": b"\x01" + frame(*media, audio, sr),
        "media-python": b"\x00" + frame(*media, rtx),
        "feedback": b"\x01" + frame(*media, nack, pli),
        "events": b"\x01" + frame(
            ev({"type": "joined", "participant": {"id": "PA_two", "name": "two", "identity": ""}}),
            ev({"type": "published", "track": desc}),
            b"\x00" + rtp_packet(96, 1, 0, 0x4001, vp8_payload(1, True)),
            ev({"type": "layers", "track": "TR_v", "layers": [["q", 0x5001, 0x5002], ["h", None, None]]}),
            ev({"type": "muted", "track": "TR_a", "muted": True}),
            ev({"type": "needs", "track": "TR_v", "active": ["q"], "spatial": None}),
            ev({"type": "data", "label": "reliable", "msg": chat}),
            ev({"type": "unpublished", "track": "TR_x"}),
            ev({"type": "left", "participant": "PA_two", "reason": "left"})),
        "hello-bye": b"\x00" + frame(
            ev({"type": "hello", "addr": ["127.0.0.1", 40001], "events": []}),
            ev({"type": "state", "addr": ["127.0.0.1", 40001], "events": [{"type": "unpublished", "track": "TR_v"}]}),
            ev({"type": "bye"}), *media),
    }


def safejson_seeds() -> dict[str, bytes]:
    docs = {
        "object": b'{"type": "join", "room": "demo", "n": [1, 2.5, -3e10, true, false, null]}',
        "nested": b'{"gate": {"any": [{"all": [{"standard": "erc20"}, {"x": [[[]]]}]}]}}',
        "brackets-in-strings": b'["[[[{{{", "\\"]]]", {"k\\\\": "}"}]',
        "unicode": '{"name": "Zoë 🎥", "esc": "\\u00e9\\ud83c\\udfa5"}'.encode(),
        "scalar": b"12345678901234567890",
        "empty-containers": b"[{}, [], {\"a\": {}}]",
    }
    out = {}
    for name, doc in docs.items():
        out[f"{name}-bytes"] = bytes([31]) + doc  # max_depth 32, bytes
        out[f"{name}-str-depth4"] = bytes([0x80 | 3]) + doc  # max_depth 4, str
    return out


def native_seeds() -> dict[str, bytes]:
    """fuzz_native.py: a control byte, then datagrams — plain RTP for the forwarders and SRTP/SRTCP
    protected with the harness's keys (so the unprotect paths get past authentication too)."""
    from sfu import _native

    keys = {1: bytes(range(30)), 7: bytes(range(28)), 8: bytes(range(44))}
    ext = one_byte_ext([(EXT_AST, b"\x01\x02\x03"), (EXT_MID, b"0"), (EXT_LEVEL, b"\x85")])
    video = [rtp_packet(96, 65530 + i, 3000 * i, MEDIA_SSRC, vp8_payload(100 + i, keyframe=i == 0, tid=i % 3, tl0=i),
                        ext=ext, marker=i % 2 == 1) for i in range(10)]
    vp9 = [rtp_packet(98, 65530 + i, 3000 * i, MEDIA_SSRC, vp9_payload(0x7FFD + i, keyframe=i == 0, tid=i % 3, tl0=i),
                      ext=ext, marker=True) for i in range(10)]
    audio = [rtp_packet(111, 100 + i, 960 * i, MEDIA_SSRC, opus_payload(), ext=ext) for i in range(6)]
    rr = bytes(artp.RtcpRrPacket(ssrc=SUB_SSRC, reports=[]))
    seeds = {
        "vp8-keyframe-run": b"\x00" + frame(*video),
        "vp8-thinned-restart": bytes([4 | 16 | 32]) + frame(*video),
        "vp8-other-layer": bytes([2 | 8]) + frame(*video),
        "vp9-keyframe-run": b"\x00" + frame(*vp9),
        "vp9-thinned-restart": bytes([4 | 16 | 32]) + frame(*vp9),
        "audio": b"\x01" + frame(*audio),
        "two-byte-ext": b"\x00" + frame(rtp_packet(96, 1, 1, MEDIA_SSRC, vp8_payload(1, True),
                                                     ext=two_byte_ext([(2, b"abc"), (40, b"x")]))),
    }
    for profile, key in keys.items():
        out = _native.SrtpSession(profile, key, False)
        # control bits 5-6 pick the MediaSocket's receive profile (fuzz_native: sorted profiles 1, 2, 7, 8)
        control = [1, 2, 7, 8].index(profile) << 5
        seeds[f"srtp-profile-{profile}"] = bytes([control]) + frame(*(out.protect(p) for p in video[:4]),
                                                                    out.protect_rtcp(rr))
    return seeds


def _data_chunk(tsn: int, stream: int, seq: int, ppid: int, payload: bytes, flags: int = 0x03) -> bytes:
    """One SCTP DATA chunk (RFC 9260 3.3.1; flags 0x03: a whole message, ordered)."""
    length = 16 + len(payload)
    return struct.pack("!BBHLHHL", 0, flags, length, tsn, stream, seq, ppid) + payload + bytes(-length % 4)


def _dcep_open(label: str, channel_type: int = 0, reliability: int = 0) -> bytes:
    return struct.pack("!BBHLHH", 3, channel_type, 0, reliability, len(label), 0) + label.encode()


def data_seeds() -> dict[str, bytes]:
    """fuzz_data.py: SCTP packets (chunks only; the harness adds the header) from TSN 1000 on."""
    first = 1000  # must match fuzz_data.FIRST_TSN
    chat = json.dumps({"type": "data", "topic": "chat", "data": "hello", "id": 1}).encode()
    direct = json.dumps({"type": "data", "data": "psst", "to": ["PA_other"]}).encode()
    open_reliable = _data_chunk(first, 0, 0, 50, _dcep_open("reliable"))
    open_lossy = _data_chunk(first + 1, 2, 0, 50, _dcep_open("lossy", 0x81, 0))
    half = len(chat) // 2
    return {
        "open_and_chat": frame(open_reliable, _data_chunk(first + 1, 0, 1, 51, chat)),
        "two_channels": frame(open_reliable, open_lossy, _data_chunk(first + 2, 2, 0, 51, direct, flags=0x07)),
        "fragments": frame(open_reliable, _data_chunk(first + 1, 0, 1, 51, chat[:half], flags=0x02),
                           _data_chunk(first + 2, 0, 1, 51, chat[half:], flags=0x01)),
        "out_of_order": frame(open_reliable, _data_chunk(first + 2, 0, 2, 51, chat),
                              _data_chunk(first + 1, 0, 1, 51, chat)),
        "binary_and_bad_json": frame(open_reliable, _data_chunk(first + 1, 0, 1, 53, b"\x00\x01"),
                                     _data_chunk(first + 2, 0, 2, 51, b"{not json")),
        "wrong_label": frame(_data_chunk(first, 4, 0, 50, _dcep_open("video"))),
        "forward_tsn": frame(open_reliable, struct.pack("!BBHLHH", 192, 0, 12, first + 5, 0, 3)),
        "sack": frame(struct.pack("!BBHLLHH", 3, 0, 16, 0, 65536, 0, 0)),
    }


def rpc_seeds() -> dict[str, bytes]:
    """JSON-RPC bodies a wallet sends to /rpc (fuzz_rpc.py); the raw transaction is signed by a fixed
    key on eth-tester's chain id (it holds no ether: the chain refuses it after parsing and recovery)."""
    from eth_account import Account
    from eth_utils import keccak

    chain_id = 131277322940537
    acct = Account.from_key(keccak(text="basement fuzz rpc"))
    raw = acct.sign_transaction({"to": acct.address, "value": 1, "gas": 21_000, "maxFeePerGas": 10**10,
                                 "maxPriorityFeePerGas": 10**9, "nonce": 0, "chainId": chain_id})

    def req(method: str, params: list, ident: object = 1) -> dict:
        return {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}

    addr = acct.address
    one = {
        "chain_id": req("eth_chainId", []),
        "block": req("eth_getBlockByNumber", ["latest", True]),
        "balance": req("eth_getBalance", [addr, "latest"]),
        "call": req("eth_call", [{"to": addr, "data": "0x70a08231" + "00" * 32}, "latest"]),
        "estimate": req("eth_estimateGas", [{"from": addr, "to": addr, "value": "0x1"}]),
        "loop": req("eth_call", [{"data": "0x5b600056", "gas": "0xffffffff"}, "latest"]),
        "fee_history": req("eth_feeHistory", ["0x4", "latest", [25, 75]]),
        "raw": req("eth_sendRawTransaction", ["0x" + bytes(raw.raw_transaction).hex()]),
        "receipt": req("eth_getTransactionReceipt", ["0x" + "11" * 32]),
        "refused": req("eth_sendTransaction", [{"from": addr}], "x"),
    }
    seeds = {k: json.dumps(v).encode() for k, v in one.items()}
    seeds["batch"] = json.dumps([one["chain_id"], {"jsonrpc": "2.0", "method": "eth_blockNumber"},
                                 one["call"]]).encode()
    return seeds


def stun_seeds() -> dict[str, bytes]:
    """fuzz_stun.py: framed datagrams, each led by a byte choosing the source address (bit 7: the
    transport sends it)."""
    from aioice import stun

    def req(ufrag: str, password: bytes | None, **attrs: object) -> bytes:
        m = stun.Message(stun.Method.BINDING, stun.Class.REQUEST,
                         attributes={"USERNAME": f"{ufrag}:peer", "PRIORITY": 1853824767, **attrs})
        if password is not None:
            m.add_message_integrity(password)
        m.add_fingerprint()
        return bytes(m)

    pwa, pwb = b"pwa-0123456789abcdefghij", b"pwb-0123456789abcdefghij"
    response = bytes(stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=b"\x01" * 12,
                                  attributes={"XOR-MAPPED-ADDRESS": ("192.0.2.1", 5000)}))
    short_priority = req("ufa", None)
    short_priority = short_priority[:2] + (len(short_priority) - 20 + 8).to_bytes(2, "big") + \
        short_priority[4:] + b"\x00\x24\x00\x02\x00\x01\x00\x00"
    return {
        "signed-a-then-dtls": frame(b"\x00" + req("ufa", pwa, **{"USE-CANDIDATE": None}),
                                    b"\x00\x16\xfe\xfd" + bytes(40)),
        "signed-b-two-addresses": frame(b"\x01" + req("ufb", pwb), b"\x02" + req("ufb", pwb), b"\x02\x80" + bytes(30)),
        "unsigned-and-forged": frame(b"\x00" + req("ufa", None), b"\x01" + req("ufa", pwb),
                                     b"\x03" + req("nobody", pwa)),
        "send-first-then-response": frame(b"\x83" + req("peer", None), b"\x03" + response),
        "malformed-attribute": frame(b"\x00" + short_priority),
        "garbage": frame(b"\x00", b"\x01\x00\x01\x00\x00", b"\x02" + bytes(19), b"\x03\x80\x60" + bytes(20)),
    }


def sip_seeds() -> dict[str, bytes]:
    """SIP messages as sipp, baresip and JsSIP send them; byte 0: 0 UDP, 1 a stream transport."""
    sdp = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           b"m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n")

    def msg(start: str, extra: str = "", body: bytes = b"", method: str = "INVITE", compact: bool = False) -> bytes:
        h = ("v: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\nf: \"Ann\" <sip:ann@127.0.0.1>;tag=a\r\n"
             "t: <sip:room@127.0.0.1>\r\ni: c1@127.0.0.1\r\n" if compact else
             "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\nFrom: sipp <sip:sipp@127.0.0.1:5061>;tag=1\r\n"
             "To: <sip:standup@127.0.0.1:5060>\r\nCall-ID: 1-1@127.0.0.1\r\n")
        return (f"{start}\r\n{h}CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    return {
        "invite-udp": b"\x00" + msg("INVITE sip:standup@127.0.0.1:5060 SIP/2.0",
                                     "Content-Type: application/sdp\r\nContact: <sip:sipp@127.0.0.1:5061>\r\n", sdp),
        "invite-compact-tcp": b"\x01" + msg("INVITE sip:room@127.0.0.1;transport=tcp SIP/2.0",
                                            "c: application/sdp\r\nm: <sip:ann@127.0.0.1:5070;transport=tcp>\r\n",
                                            sdp, compact=True),
        "options": b"\x00" + msg("OPTIONS sip:127.0.0.1 SIP/2.0", method="OPTIONS"),
        "bye": b"\x01" + msg("BYE sip:room@127.0.0.1 SIP/2.0", method="BYE"),
        "info-dtmf": b"\x00" + msg("INFO sip:room@127.0.0.1 SIP/2.0", "Content-Type: application/dtmf-relay\r\n",
                                    b"Signal=5\r\nDuration=160\r\n", method="INFO"),
        "register-auth": b"\x01" + msg("REGISTER sip:127.0.0.1 SIP/2.0",
                                        'Authorization: Digest username="ann", realm="basement", nonce="abc", '
                                        'uri="sip:127.0.0.1", response="0123456789abcdef0123456789abcdef"\r\n'
                                        "Expires: 600\r\n", method="REGISTER"),
        "response-180": b"\x00" + msg("SIP/2.0 180 Ringing", "Contact: <sip:ann@127.0.0.1>\r\n"),
        "folded-ipv6": b"\x00" + (b"OPTIONS sips:[::1]:5061 SIP/2.0\r\nVia: SIP/2.0/TLS [::1]:5062;branch=z9hG4bKx,\r\n"
                                   b" SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKy\r\nFrom: <sip:a@b>;tag=1\r\nTo: sip:c@d\r\n"
                                   b"Call-ID: x\r\nCSeq: 2\r\n\tOPTIONS\r\nMax-Forwards: 0\r\n\r\n"),
    }


def main() -> None:
    sets: dict[str, dict[str, bytes]] = {
        "rtp": rtp_seeds(),
        "ingress": ingress_seeds(),
        "rtcp": rtcp_seeds(),
        "sdp": sdp_seeds(),
        "protocol": protocol_seeds(),
        "siwe": siwe_seeds(),
        "gating": {k: json.dumps(v).encode() for k, v in gating_seeds().items()},
        "bus": bus_seeds(),
        "safejson": safejson_seeds(),
        "native": native_seeds(),
        "data": data_seeds(),
        "rpc": rpc_seeds(),
        "stun": stun_seeds(),
        "relay": relay_seeds(),
        "sip": sip_seeds(),
    }
    for harness, seeds in sets.items():
        d = CORPUS / harness
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for name, data in seeds.items():
            (d / name).write_bytes(data)
        print(f"{harness}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
