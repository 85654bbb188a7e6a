"""Publisher offers as Chromium and Firefox write them: what check_offer takes from them, what it
refuses (with the exact message), and the simulcast lines our answer adds."""

from __future__ import annotations

import pytest

from sfu import rtp, sdp

FP = "a=fingerprint:sha-256 " + ":".join(f"{b:02X}" for b in range(32))


def lines(*ls: str) -> str:
    return "\r\n".join(ls) + "\r\n"


def chromium(video_tail: list[str], mids: str = "0 1") -> str:
    """Chromium 120-ish: per-media ICE/DTLS, extmap ids 1-11, rid lines after the ssrc/fmtp block."""
    session = ["v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", f"a=group:BUNDLE {mids}",
               "a=extmap-allow-mixed", "a=msid-semantic: WMS stream"]
    transport = ["c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0", "a=ice-ufrag:Fz9q",
                 "a=ice-pwd:ZGF0YWRhdGFkYXRhZGF0YWRh", "a=ice-options:trickle", FP, "a=setup:actpass"]
    audio = ["m=audio 9 UDP/TLS/RTP/SAVPF 111", *transport, "a=mid:0",
             "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
             "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
             "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid", "a=sendonly", "a=msid:stream audio-track",
             "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1",
             "a=ssrc:1001 cname:abc", "a=ssrc:1001 msid:stream audio-track"]
    video = ["m=video 9 UDP/TLS/RTP/SAVPF 96 97", *transport, "a=mid:1",
             "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
             "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
             "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
             "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
             "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
             "a=sendonly", "a=msid:stream video-track", "a=rtcp-mux", "a=rtcp-rsize",
             "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 transport-cc", "a=rtcp-fb:96 ccm fir",
             "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96", *video_tail]
    return lines(*session, *audio, *video)


CHROMIUM_SIMULCAST = chromium(["a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f"])
CHROMIUM_SINGLE = chromium(["a=ssrc-group:FID 2001 2002", "a=ssrc:2001 cname:abc",
                            "a=ssrc:2001 msid:stream video-track", "a=ssrc:2002 cname:abc",
                            "a=ssrc:2002 msid:stream video-track"])
CHROMIUM_SIM_GROUP = chromium(["a=ssrc-group:FID 1 4", "a=ssrc-group:SIM 1 2 3", "a=ssrc:1 cname:x",
                               "a=ssrc:2 cname:x", "a=ssrc:3 cname:x", "a=ssrc:4 cname:x"])

FF_CNAME = "{a1b2c3d4-e5f6-4711-8899-aabbccddeeff}"

# Firefox 128-ish: session-level fingerprint, attributes in alphabetical order (so a=rid comes before
# a=rtpmap and a=simulcast after it), direction-qualified extmaps, several RTX codecs (apt), a=rid
# with restrictions, and a=ssrc + FID lines for every layer even with rids.
FIREFOX_SIMULCAST = lines(
    "v=0", "o=mozilla...THIS_IS_SDPARTA-128.0 7001446744273617003 0 IN IP4 0.0.0.0", "s=-", "t=0 0", FP,
    "a=group:BUNDLE 0 1", "a=ice-options:trickle", "a=msid-semantic:WMS *",
    "m=audio 9 UDP/TLS/RTP/SAVPF 109 101", "c=IN IP4 0.0.0.0", "a=sendonly",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level",
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1", "a=fmtp:101 0-15",
    "a=ice-pwd:9a0d5f5d6e8a1ad6b49b7a3c4d1c2e0f", "a=ice-ufrag:5a7c2b1e", "a=mid:0",
    "a=msid:{0d6fbd0c-5b1f-4a5e-8e7b-6f2c3d4e5f60} {c2d1e0f3-1111-2222-3333-444455556666}",
    "a=rtcp-mux", "a=rtpmap:109 opus/48000/2", "a=rtpmap:101 telephone-event/8000", "a=setup:actpass",
    f"a=ssrc:3001 cname:{FF_CNAME}",
    "m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125", "c=IN IP4 0.0.0.0", "a=sendonly",
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:5 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    "a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:8/sendonly urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:9/sendonly urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=fmtp:120 max-fs=12288;max-fr=60", "a=fmtp:124 apt=120", "a=fmtp:121 max-fs=12288;max-fr=60",
    "a=fmtp:125 apt=121", "a=ice-pwd:9a0d5f5d6e8a1ad6b49b7a3c4d1c2e0f", "a=ice-ufrag:5a7c2b1e", "a=mid:1",
    "a=msid:{0d6fbd0c-5b1f-4a5e-8e7b-6f2c3d4e5f60} {d3e2f1a0-7777-8888-9999-000011112222}",
    "a=rid:q send pt=120;max-width=320;max-height=180", "a=rid:h send", "a=rid:f\tsend",
    "a=rtcp-fb:120 nack", "a=rtcp-fb:120 nack pli", "a=rtcp-fb:120 ccm fir", "a=rtcp-fb:120 goog-remb",
    "a=rtcp-fb:120 transport-cc", "a=rtcp-mux", "a=rtcp-rsize",
    "a=rtpmap:120 VP8/90000", "a=rtpmap:124 rtx/90000", "a=rtpmap:121 VP9/90000", "a=rtpmap:125 rtx/90000",
    "a=setup:actpass", "a=simulcast:send q;h;f",
    *[f"a=ssrc:{s} cname:{FF_CNAME}" for s in range(4001, 4007)],
    "a=ssrc-group:FID 4001 4004", "a=ssrc-group:FID 4002 4005", "a=ssrc-group:FID 4003 4006",
)

CHROMIUM_VIDEO_EXT = {2: rtp.URI_ABS_SEND_TIME, 3: rtp.URI_TWCC, 4: rtp.URI_MID, 10: rtp.URI_RID, 11: rtp.URI_RRID}


def test_chromium_simulcast_offer():
    info = sdp.check_offer(CHROMIUM_SIMULCAST)
    audio, video = info.media
    assert (audio.mid, audio.kind, audio.direction, audio.rids, audio.ssrcs) == \
        ("0", "audio", "sendonly", [], [(1001, "media")])
    assert audio.extmap == {1: rtp.URI_AUDIO_LEVEL, 2: rtp.URI_ABS_SEND_TIME, 4: rtp.URI_MID}
    # simulcast SSRCs are learnt from the RID extensions, never guessed from a=ssrc order
    assert (video.mid, video.kind, video.rids, video.ssrcs) == ("1", "video", ["q", "h", "f"], [])
    assert video.extmap == CHROMIUM_VIDEO_EXT
    assert list(info.by_mid()) == ["0", "1"]


def test_chromium_single_layer_offer_with_rtx():
    video = sdp.check_offer(CHROMIUM_SINGLE).media[1]
    assert (video.rids, video.ssrcs) == ([], [(2001, "media"), (2002, "rtx")])


def test_chromium_sim_group_offer_learns_ssrcs_from_packets():
    video = sdp.check_offer(CHROMIUM_SIM_GROUP).media[1]
    assert (video.rids, video.ssrcs) == ([], [])


def test_firefox_simulcast_offer():
    audio, video = sdp.check_offer(FIREFOX_SIMULCAST).media
    assert (audio.mid, audio.ssrcs, audio.rids) == ("0", [(3001, "media")], [])
    assert audio.extmap == {1: rtp.URI_AUDIO_LEVEL, 2: "urn:ietf:params:rtp-hdrext:csrc-audio-level", 3: rtp.URI_MID}
    assert (video.mid, video.direction, video.rids, video.ssrcs) == ("1", "sendonly", ["q", "h", "f"], [])
    assert video.extmap == {3: rtp.URI_MID, 4: rtp.URI_ABS_SEND_TIME, 5: "urn:ietf:params:rtp-hdrext:toffset",
                            6: "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay", 7: rtp.URI_TWCC,
                            8: rtp.URI_RID, 9: rtp.URI_RRID}


def test_rid_order_is_the_publishers():
    offer = CHROMIUM_SIMULCAST.replace("a=rid:q send\r\na=rid:h send\r\na=rid:f send",
                                       "a=rid:f send\r\na=rid:q send\r\na=rid:h send")
    assert sdp.check_offer(offer).media[1].rids == ["f", "q", "h"]


def test_recv_rids_are_not_layers():
    offer = CHROMIUM_SIMULCAST.replace("a=rid:f send", "a=rid:f recv")
    assert sdp.check_offer(offer).media[1].rids == ["q", "h"]


def test_limits_are_parameters():
    assert sdp.check_offer(CHROMIUM_SIMULCAST, max_layers=3).media[1].rids == ["q", "h", "f"]
    with pytest.raises(sdp.SdpError) as e:
        sdp.check_offer(CHROMIUM_SIMULCAST, max_layers=2)
    assert str(e.value) == "m=video (mid 1) announces more than 2 simulcast layers (a=rid ... send)"
    with pytest.raises(sdp.SdpError) as e:
        sdp.check_offer(FIREFOX_SIMULCAST, max_ssrcs=5)
    assert str(e.value) == "m=video (mid 1) announces more than 5 SSRCs (a=ssrc)"


@pytest.mark.parametrize("offer, message", [
    ("", "sdp must be a non-empty string"),
    ("   ", "sdp must be a non-empty string"),
    (None, "sdp must be a non-empty string"),
    ("o=- 1 1 IN IP4 0.0.0.0\r\n", "sdp must start with v=0"),
    ("v=0\r\n" + "a=x\r\n" * 20000, f"sdp is larger than {sdp.MAX_SDP_BYTES} bytes"),
    (lines("v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"), "sdp has no audio, video or application media section"),
    (CHROMIUM_SIMULCAST.replace("BUNDLE 0 1", "BUNDLE 0 1 2") + lines(
        "m=text 9 UDP/TLS/RTP/SAVPF 98", "a=mid:2", FP, "a=ice-ufrag:abcd", "a=ice-pwd:ZGF0YWRhdGFkYXRhZGF0YWRh"),
     "sdp has an m=text section; only audio, video and application (data channels)"),
    (CHROMIUM_SIMULCAST.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0"),
     "m=video (mid 1) is not in the BUNDLE group; Basement requires BUNDLE"),
    (CHROMIUM_SIMULCAST.replace("a=mid:1", "a=mid:1 2"), None),
    (CHROMIUM_SIMULCAST.replace("a=mid:1", "a=mid:" + "x" * 17).replace("BUNDLE 0 1", "BUNDLE 0 " + "x" * 17),
     "m=video has an invalid a=mid 'xxxxxxxxxxxxxxxxx': 1-16 token characters (RFC 5888)"),
    (CHROMIUM_SIMULCAST.replace(FP + "\r\n", ""), "m=audio (mid 0) has no DTLS fingerprint"),
    (CHROMIUM_SIMULCAST.replace("a=ice-pwd:ZGF0YWRhdGFkYXRhZGF0YWRh\r\n", ""),
     "m=audio (mid 0) has no ICE credentials"),
    (CHROMIUM_SIMULCAST.replace("a=sendonly\r\na=msid:stream video", "a=recvonly\r\na=msid:stream video"),
     "m=video (mid 1) must be sendonly on the publish connection"),
    (CHROMIUM_SIMULCAST.replace("a=rid:h send", "a=rid:h.1 send"),
     "m=video (mid 1) has an invalid rid 'h.1': 1-16 letters, digits, '-' or '_' (RFC 8851)"),
    (CHROMIUM_SIMULCAST.replace("a=rid:h send", "a=rid:q send"), "m=video (mid 1) repeats a=rid:q"),
    (CHROMIUM_SIMULCAST.replace("a=simulcast", "a=rid:x send\r\na=simulcast"),
     "m=video (mid 1) announces more than 3 simulcast layers (a=rid ... send)"),
])
def test_refusals_name_the_problem(offer, message):
    if message is None:  # a=mid with a space: aiortc keeps "1 2", which is not a token
        message = "m=video has an invalid a=mid '1 2': 1-16 token characters (RFC 5888)"
        offer = offer.replace("BUNDLE 0 1", "BUNDLE 0 1 2")
    with pytest.raises(sdp.SdpError) as e:
        sdp.check_offer(offer)
    assert str(e.value) == message


def test_too_many_media_sections_are_refused():
    video = CHROMIUM_SIMULCAST.split("m=video")[1]
    extra = "".join("m=video" + video.replace("a=mid:1", f"a=mid:{m}") for m in (2, 3, 4))
    offer = CHROMIUM_SIMULCAST.replace("BUNDLE 0 1", "BUNDLE 0 1 2 3 4") + extra
    with pytest.raises(sdp.SdpError) as e:
        sdp.check_offer(offer)
    assert str(e.value) == "sdp has 5 audio and video sections; at most 4 are allowed"


def data_section(mid: str = "2", port: str = "a=sctp-port:5000",
                 profile: str = "UDP/DTLS/SCTP webrtc-datachannel") -> str:
    return lines(f"m=application 9 {profile}", "c=IN IP4 0.0.0.0", f"a=mid:{mid}", FP, "a=setup:actpass",
                 "a=ice-ufrag:abcd", "a=ice-pwd:ZGF0YWRhdGFkYXRhZGF0YWRh", port, "a=max-message-size:262144")


def test_data_channels_beside_media_and_on_their_own():
    info = sdp.check_offer(CHROMIUM_SIMULCAST.replace("BUNDLE 0 1", "BUNDLE 0 1 2") + data_section())
    assert ([m.mid for m in info.media], info.data_mid) == (["0", "1"], "2")
    alone = lines("v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0") + data_section("0")
    info = sdp.check_offer(alone)
    assert (info.media, info.data_mid) == ([], "0")
    # four media sections and data: what the web client offers while sharing a screen with its audio
    video = CHROMIUM_SIMULCAST.split("m=video")[1]
    extra = "".join("m=video" + video.replace("a=mid:1", f"a=mid:{m}") for m in (2, 3))
    info = sdp.check_offer(CHROMIUM_SIMULCAST.replace("BUNDLE 0 1", "BUNDLE 0 1 2 3 4") + extra + data_section("4"))
    assert (len(info.media), info.data_mid) == (4, "4")


@pytest.mark.parametrize("section, message", [
    (data_section(port="a=sctp-port:70000"), "m=application is not SCTP data channels"),
    (data_section(port="a=sctpmap:5000 webrtc-datachannel 1024"), "m=application is not SCTP data channels"),
    (data_section(profile="UDP/TLS/RTP/SAVPF 96"), "m=application is not SCTP data channels"),
    (data_section(profile="DTLS/SCTP x"), "m=application is not SCTP data channels"),
    (data_section() + data_section("3"), "sdp has 2 m=application sections; data channels need one"),
    (data_section().replace(FP + "\r\n", ""), "m=application (mid 2) has no DTLS fingerprint"),
    (data_section("9"), "m=application (mid 9) is not in the BUNDLE group; Basement requires BUNDLE"),
])
def test_bad_data_sections_are_refused(section, message):
    offer = CHROMIUM_SIMULCAST.replace("BUNDLE 0 1", "BUNDLE 0 1 2 3") + section
    with pytest.raises(sdp.SdpError) as e:
        sdp.check_offer(offer)
    assert str(e.value).startswith(message), str(e.value)


def test_the_legacy_data_section_is_accepted():
    legacy = data_section(profile="DTLS/SCTP 5000", port="a=sctpmap:5000 webrtc-datachannel 1024")
    assert sdp.check_offer(CHROMIUM_SIMULCAST.replace("BUNDLE 0 1", "BUNDLE 0 1 2") + legacy).data_mid == "2"


# --- the answer ---------------------------------------------------------------------------------------

ANSWER = lines("v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
               "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=recvonly", "a=rtpmap:111 opus/48000/2",
               "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:1", "a=recvonly",
               "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
               "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "a=rtpmap:96 VP8/90000")


def test_the_answer_accepts_simulcast_right_after_the_mid():
    out = sdp.add_simulcast_recv(ANSWER, {"0": [], "1": ["q", "h", "f"]})
    assert out == ANSWER.replace("a=mid:1\r\n", "a=mid:1\r\na=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\n"
                                                "a=simulcast:recv q;h;f\r\n")


def test_the_answer_keeps_the_publishers_rid_order():
    out = sdp.add_simulcast_recv(ANSWER, {"1": ["0", "1", "2"]})
    assert "a=mid:1\r\na=rid:0 recv\r\na=rid:1 recv\r\na=rid:2 recv\r\na=simulcast:recv 0;1;2\r\n" in out


def test_one_rid_is_not_simulcast():
    assert sdp.add_simulcast_recv(ANSWER, {"1": ["q"]}) == ANSWER
    assert sdp.add_simulcast_recv(ANSWER, {}) == ANSWER


def test_an_offer_and_its_simulcast_answer_round_trip():
    info = sdp.check_offer(FIREFOX_SIMULCAST)
    out = sdp.add_simulcast_recv(ANSWER, {m.mid: m.rids for m in info.media})
    assert out.count("a=simulcast:recv q;h;f") == 1
    assert out.split("\r\n").index("a=simulcast:recv q;h;f") == out.split("\r\n").index("a=mid:1") + 4
