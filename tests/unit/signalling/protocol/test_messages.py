"""What the protocol accepts for publishing several sources: an offer's `sources`, `unpublish`."""

from __future__ import annotations

import json

import pytest

from sfu import api
from signalling.protocol.messages import ENCRYPTIONS, SOURCES, ProtocolError, parse


def test_the_protocol_spells_the_sources_the_media_plane_has():
    assert SOURCES == api.SOURCES == tuple(api.SOURCE_KINDS)
    assert ENCRYPTIONS == api.ENCRYPTIONS


def _offer(**extra) -> str:
    return json.dumps({"type": "offer", "target": "publisher", "sdp": "v=0", **extra})


def test_an_offer_names_the_source_of_each_m_line():
    msg = parse(_offer(sources={"0": "microphone", "1": "camera", "2": "screen", "3": "screen_audio"}))
    assert msg["sources"]["2"] == "screen"
    assert "sources" not in parse(_offer())  # optional: unnamed m-lines are the camera and the microphone


@pytest.mark.parametrize("sources, why", [
    ({"1": "window"}, "an unknown source"),
    ({"1": 7}, "a source that is not a string"),
    ({"": "camera"}, "an empty mid"),
    ({"x" * 17: "camera"}, "a mid longer than RFC 5888 tokens we accept"),
    ({str(i): "camera" for i in range(5)}, "more entries than an offer may have m-lines"),
    (["camera"], "a list"),
])
def test_malformed_sources_are_refused(sources, why):
    with pytest.raises(ProtocolError) as e:
        parse(_offer(sources=sources))
    assert e.value.code == "bad_field", why


def test_an_offer_declares_its_encryption_or_none():
    assert parse(_offer(encryption="sframe"))["encryption"] == "sframe"
    assert "encryption" not in parse(_offer())  # (none)
    for bad in ("aes", 1, True, ["sframe"]):
        with pytest.raises(ProtocolError) as e:
            parse(_offer(encryption=bad))
        assert e.value.code == "bad_field", bad


def test_unpublish_names_a_track():
    assert parse(json.dumps({"type": "unpublish", "track": "TR_x_2", "id": 4}))["track"] == "TR_x_2"
    with pytest.raises(ProtocolError) as e:
        parse(json.dumps({"type": "unpublish"}))
    assert e.value.code == "missing_field"


def test_peer_to_peer_signalling_is_an_object_for_a_participant_and_bounded():
    ok = parse(json.dumps({"type": "p2p_signal", "to": "PA_x", "data": {"sdp": {"type": "offer", "sdp": "v=0"}}}))
    assert ok["data"]["sdp"]["type"] == "offer"
    for bad, code in (({"type": "p2p_signal", "to": "PA_x", "data": "text"}, "bad_field"),
                      ({"type": "p2p_signal", "to": "x" * 65, "data": {}}, "bad_field"),
                      ({"type": "p2p_signal", "data": {}}, "missing_field"),
                      ({"type": "p2p_signal", "to": "PA_x", "data": {"junk": "x" * 70_000}}, "too_large"),
                      ({"type": "join", "room": "r", "p2p": "yes"}, "bad_field")):
        with pytest.raises(ProtocolError) as e:
            parse(json.dumps(bad))
        assert e.value.code == code, bad


def test_a_subscription_may_pin_its_track_and_anyone_may_ask_why_they_get_their_layers():
    assert parse(json.dumps({"type": "subscription", "track": "TR_x_1", "pinned": True}))["pinned"] is True
    assert "pinned" not in parse(json.dumps({"type": "subscription", "track": "TR_x_1"}))  # (unchanged)
    for pinned in ("yes", 1, {}):
        with pytest.raises(ProtocolError) as e:
            parse(json.dumps({"type": "subscription", "track": "TR_x_1", "pinned": pinned}))
        assert (e.value.code, str(e.value)) == ("bad_field", "subscription: field 'pinned' must be bool"), pinned
    assert parse(json.dumps({"type": "allocation", "id": 3}))["type"] == "allocation"
