"""Relays between the nodes of a room that spans them (sfu.relay, sfu.cascade), without sockets: a
source node's Ingress feeds a RelaySink, whose datagrams are handed to the destination node's
RelayPort as they would arrive; the destination's Cascade is driven by the events the source's
announces. Both data paths (conftest)."""

from __future__ import annotations

from typing import Any

import pytest
from aiortc import rtp as artp

from sfu.cascade import Cascade
from sfu.data import DataRelay
from sfu.metrics import STATS
from sfu.relay import RelayError, RelayPort, RelaySink, describe
from sfu.track import PublishedTrack
from tests.unit.sfu.test_hardening_ingress import MEDIA_SSRC, RTX_SSRC, dropped_since, make_ingress, packet

SOURCE, DESTINATION = ("127.0.0.1", 40001), ("127.0.0.1", 40002)


class Datagrams:
    """Stands in for a RelayPort's socket: keeps what is sent, by address."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        pass


def port(address: tuple[str, int]) -> tuple[RelayPort, Datagrams]:
    p, wire = RelayPort(), Datagrams()
    p.transport, p.address = wire, address  # type: ignore[assignment]
    return p, wire


class Room:
    """The part of sfu.router.Router a Cascade calls, recording what it is told."""

    name = "r"

    def __init__(self) -> None:
        self.peers: dict[str, Any] = {}
        self.remote: dict[str, Any] = {}
        self.relayed: dict[str, PublishedTrack] = {}
        self.events: list[tuple[str, Any]] = []
        self.observe_audio = lambda *a: None
        self.data = DataRelay()

    @property
    def tracks(self) -> list[PublishedTrack]:
        return list(self.relayed.values())

    def remote_joined(self, info: Any) -> None:
        self.remote[info["id"]] = info
        self.events.append(("joined", info["id"]))

    def remote_left(self, pid: str, reason: str) -> None:
        self.remote.pop(pid, None)
        self.events.append(("left", (pid, reason)))

    def add_relayed(self, rec: PublishedTrack, name: str) -> None:
        self.relayed[rec.id] = rec
        self.events.append(("published", rec.id))

    def remove_relayed(self, rec: PublishedTrack) -> None:
        self.relayed.pop(rec.id, None)
        self.events.append(("unpublished", rec.id))

    def relayed_muted(self, rec: PublishedTrack, muted: bool) -> None:
        rec.muted = muted
        self.events.append(("muted", muted))


PUB = {"id": "PA_pub", "name": "pub", "identity": "0xabc"}
CHAT = {"type": "data", "seq": 1, "from": "PA_pub", "name": "pub", "identity": "0xabc", "topic": "chat",
        "data": "hi", "at": 1}


async def linked() -> tuple[Any, PublishedTrack, RelayPort, Datagrams, Cascade, Room, RelayPort]:
    """A source Ingress with one video track (media + RTX SSRCs known), and a destination node that
    was told the publisher joined and published it."""
    ingress, _ = await make_ingress()
    rec = ingress.tracks["0"]
    rec.encryption = "sframe"  # (as its publisher declared: the relay carries what it said)
    src_port, src_wire = port(SOURCE)
    dst_port, _ = port(DESTINATION)
    room = Room()
    announced: list[Any] = []
    cascade = Cascade(dst_port, lambda r, e, to: announced.append((e, to)), lambda name: room)
    cascade.member("r", "A", SOURCE)
    cascade.apply("r", "A", {"type": "joined", "participant": PUB})
    cascade.apply("r", "A", {"type": "published", "track": describe(rec, "pub")})
    return ingress, rec, src_port, src_wire, cascade, room, dst_port


async def test_a_relayed_track_arrives_as_sent_and_feeds_the_destinations_subscribers():
    ingress, rec, src_port, src_wire, cascade, room, dst_port = await linked()
    assert room.events == [("joined", "PA_pub"), ("published", rec.id)]
    relayed = room.relayed[rec.id]
    assert (relayed.participant_id, relayed.kind, relayed.codec_name) == ("PA_pub", "video", "VP8")
    assert relayed.info()["encryption"] == "sframe"
    layer = next(iter(relayed.layers.values()))
    assert (layer.ssrc, layer.rtx_ssrc) == (MEDIA_SSRC, RTX_SSRC)  # from the description

    layers: list[RelaySink] = []
    sink = RelaySink(rec, src_port, DESTINATION, layers.append)
    rec.relays.append(sink)
    ingress.relaying(rec)
    sent = [packet(MEDIA_SSRC, seq, ts=seq * 3000) for seq in range(100, 105)]
    for data in sent:
        ingress.on_rtp(data, 1.0)
    assert [d for d, a in src_wire.sent] == sent and {a for _, a in src_wire.sent} == {DESTINATION}
    assert layers == [sink]  # its SSRCs announced once, with the first packet
    # at the destination the same packets enter the relayed-in Ingress: the layer counts them
    for data, _ in src_wire.sent:
        dst_port.datagram_received(data, SOURCE)
    assert layer.packets == 5 and layer.rx.extended_max % 65536 == 104


async def test_feedback_flows_back_plis_become_keyframe_requests_nacks_rtx_from_the_ring():
    ingress, rec, src_port, src_wire, cascade, room, dst_port = await linked()
    sink = RelaySink(rec, src_port, DESTINATION, lambda s: None)
    rec.relays.append(sink)
    ingress.relaying(rec)
    for seq in range(200, 204):
        ingress.on_rtp(packet(MEDIA_SSRC, seq, ts=seq), 1.0)
    src_wire.sent.clear()
    # a NACK from the destination for 201: resent as RTX (the publisher negotiated it), OSN first
    nack = artp.RtcpRtpfbPacket(fmt=artp.RTCP_RTPFB_NACK, ssrc=9, media_ssrc=MEDIA_SSRC, lost=[201, 999])
    src_port.allow(DESTINATION)
    src_port.datagram_received(bytes(nack), DESTINATION)
    ((data, addr),) = src_wire.sent
    original = packet(MEDIA_SSRC, 201, ts=201)
    assert addr == DESTINATION and data[1] & 0x7F == 97 and int.from_bytes(data[8:12], "big") == RTX_SSRC
    assert data[12:14] == (201).to_bytes(2, "big") and data[14:] == original[12:]
    # a PLI asks the publisher for a key frame of that layer
    plis = STATS.plis_out
    src_port.datagram_received(bytes(artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_PLI, ssrc=9, media_ssrc=MEDIA_SSRC)),
                               DESTINATION)
    assert STATS.plis_out == plis + 1


async def test_only_linked_nodes_are_heard_and_malformed_datagrams_are_counted_drops():
    _, _, _, _, cascade, room, dst_port = await linked()
    before = dict(STATS.dropped)
    dst_port.datagram_received(packet(MEDIA_SSRC, 1), ("127.0.0.1", 1))  # a stranger
    dst_port.datagram_received(b"\x80", SOURCE)
    dst_port.datagram_received(b"\x00" * 40, SOURCE)  # not RTP version 2
    dst_port.datagram_received(b"\x80\xc8" + b"\xff" * 10, SOURCE)  # RTCP that does not parse
    dst_port.datagram_received(packet(0xDEAD, 1), SOURCE)  # an SSRC nothing here receives
    assert dropped_since(before) == {"relay_stranger": 1, "relay_malformed": 3, "relay_unknown_ssrc": 1}


@pytest.mark.parametrize("event, error", [
    ("not a map", "a map with a type"),
    ({"type": "hug"}, "unknown room event"),
    ({"type": "joined", "participant": {"id": 1}}, "participant"),
    ({"type": "published", "track": {"info": {"track": "T", "participant": "PA_x", "kind": "video"}, "mid": "0",
                                     "codecs": [{"mime": "video/VP8", "clock": 90000, "pt": 96}], "ext": [],
                                     "layers": [["", 1, None]]}}, "not a participant of that node"),
    ({"type": "published", "track": {"info": {"track": "T"}}}, "info"),
    ({"type": "layers", "track": "TR_pub_0", "layers": [["", 2**40, None]]}, "32-bit"),
    ({"type": "needs", "track": "TR_pub_0", "active": "q"}, None),  # (not a track relayed from here: ignored)
    ({"type": "data", "label": "reliable", "msg": {**CHAT, "from": "PA_x"}}, "data:"),
    ({"type": "data", "label": "shout", "msg": CHAT}, "data:"),
    ({"type": "data", "label": "reliable", "msg": {**CHAT, "to": "PA_y"}}, "data:"),
])
async def test_bad_room_events_are_refused_and_change_nothing(event, error):
    _, rec, _, _, cascade, room, _ = await linked()
    before = (dict(room.remote), dict(room.relayed), len(room.events), len(room.data.history))
    if error is None:
        cascade.apply("r", "A", event)
    else:
        with pytest.raises(RelayError, match=error):
            cascade.apply("r", "A", event)
    assert (dict(room.remote), dict(room.relayed), len(room.events), len(room.data.history)) == before
    with pytest.raises(RelayError, match="not linked"):
        cascade.apply("r", "B", {"type": "joined", "participant": PUB})


async def test_a_node_gone_takes_its_participants_and_tracks_with_it():
    _, rec, _, _, cascade, room, dst_port = await linked()
    cascade.member_gone("r", "A")
    assert room.events[-2:] == [("unpublished", rec.id), ("left", ("PA_pub", "node_lost"))]
    assert not cascade.relayed and not cascade.ingresses and not dst_port.ingresses and not dst_port.allowed


async def test_dynacast_is_the_union_of_local_subscribers_and_other_nodes_needs():
    from sfu.layers import LayerSelector

    ingress, _ = await make_ingress(simulcast=True)
    rec = ingress.tracks["0"]
    told: list[Any] = []
    selector = LayerSelector(lambda pid, msg: told.append(msg["active"]))
    src_port, _ = port(SOURCE)
    a, b = RelaySink(rec, src_port, DESTINATION, lambda s: None), RelaySink(rec, src_port, SOURCE, lambda s: None)
    rec.relays[:] = [a, b]
    selector._update_dynacast(rec, 1.0)
    assert told[-1] == ["q", "h", "f"]  # a node that has not said what it needs gets everything
    a.needed, b.needed = {"q"}, {"f"}
    selector._update_dynacast(rec, 1.0)
    assert told[-1] == ["q", "f"]
    a.needed = set()
    selector._update_dynacast(rec, 1.0)
    assert told[-1] == ["f"]


async def test_a_chat_message_from_another_node_joins_this_nodes_history():
    _, _, _, _, cascade, room, _ = await linked()
    cascade.apply("r", "A", {"type": "data", "label": "reliable", "msg": CHAT})
    assert list(room.data.history) == [CHAT]


class Paired:
    def __init__(self, pid: str) -> None:
        self.id, self.p2p, self.told = pid, True, []

    def emit(self, msg: dict) -> None:
        self.told.append(msg)


async def test_a_pair_goes_back_through_the_sfu_when_someone_joins_on_another_node():
    from sfu.router import Router

    router = Router("r", lambda msg: None)
    try:
        a, b = Paired("PA_a"), Paired("PA_b")
        router.peers = {"PA_a": a, "PA_b": b}  # type: ignore[dict-item]
        router._pair()
        assert [m["state"] for m in a.told + b.told] == ["on", "on"]
        router.remote_joined({"id": "PA_c", "name": "c", "identity": ""})
        assert [(m["state"], m["reason"]) for m in (a.told[-1], b.told[-1])] == [("off", "joined")] * 2
        # and one here with one elsewhere never pair
        del router.peers["PA_b"]
        router._pair()
        router.remote_left("PA_c", "left")
        router.remote_joined({"id": "PA_d", "name": "d", "identity": ""})
        assert [m["state"] for m in a.told] == ["on", "off"]
    finally:
        router.close()


class Publisher:
    """A local participant with published tracks, as a Cascade reads one from its Router."""

    def __init__(self, pid: str, tracks: list) -> None:
        self.id, self.name, self.tracks = pid, pid, tracks

    def public(self) -> dict:
        return {"id": self.id, "name": self.name, "identity": ""}


async def test_a_node_leaving_one_room_keeps_getting_the_tracks_of_another_room_they_share():
    rooms = {}
    for name in ("R1", "R2"):
        ingress, _ = await make_ingress()
        rooms[name] = Room()
        rooms[name].name = name
        rooms[name].peers = {"PA_" + name: Publisher("PA_" + name, [ingress.tracks["0"]])}
        ingress.tracks["0"].id = "TR_" + name
    src_port, _ = port(SOURCE)
    byes: list = []
    cascade = Cascade(src_port, lambda r, e, to: None, rooms.get, lambda room, members: byes.append((room, members)))
    for name in rooms:
        events = cascade.member(name, "B", DESTINATION)
        assert [e["type"] for e in events] == ["joined", "published"]
    assert sorted(cascade.sinks) == [("TR_R1", "B"), ("TR_R2", "B")]
    cascade.member_gone("R1", "B", "left")
    assert sorted(cascade.sinks) == [("TR_R2", "B")]
    assert [s.destination for s in rooms["R2"].peers["PA_R2"].tracks[0].relays] == [DESTINATION]
    cascade.room_closed("R2")
    assert not cascade.sinks and byes == [("R2", ["B"])] and not src_port.allowed


async def test_the_same_node_at_a_new_address_is_a_new_life_whose_old_part_is_gone():
    _, rec, _, _, cascade, room, dst_port = await linked()
    assert cascade.member("r", "A", SOURCE) == []  # known, same address: nothing to tell
    cascade.member("r", "A", ("127.0.0.1", 40009))
    assert room.events[-2:] == [("unpublished", rec.id), ("left", ("PA_pub", "node_lost"))]
    assert set(dst_port.allowed) == {("127.0.0.1", 40009)} and not dst_port.ingresses


async def test_a_participant_that_leaves_takes_its_relayed_tracks_even_without_their_unpublish():
    _, rec, _, _, cascade, room, dst_port = await linked()
    cascade.apply("r", "A", {"type": "left", "participant": "PA_pub", "reason": "left"})
    assert room.events[-2:] == [("unpublished", rec.id), ("left", ("PA_pub", "left"))]
    assert not cascade.relayed and not cascade.ingresses and not dst_port.ingresses


@pytest.mark.parametrize("change", ["rtx only", "same mid", "taken ssrc", "unhashable"])
async def test_a_refused_description_leaves_no_trace(change):
    _, rec, _, _, cascade, room, dst_port = await linked()
    cascade.apply("r", "A", {"type": "joined", "participant": {"id": "PA_two", "name": "two", "identity": ""}})
    desc = describe(rec, "two")
    desc["info"] = {**desc["info"], "track": "TR_two", "participant": "PA_two"}
    desc["layers"] = [["", 0x7777, None]]
    event: dict = {"type": "published", "track": desc}
    if change == "rtx only":
        desc["codecs"] = [c for c in desc["codecs"] if c["mime"].endswith("rtx")]
    elif change == "same mid":
        cascade.apply("r", "A", {"type": "published", "track": {**desc, "info": {**desc["info"], "track": "TR_3"},
                                                                "layers": [["", 0x8888, None]]}})
    elif change == "taken ssrc":
        desc["layers"] = [["", MEDIA_SSRC, None]]  # PA_pub's
    else:
        event = {"type": "muted", "track": ["TR_pub_0"], "muted": True}
    before = (sorted(cascade.relayed), sorted(cascade.ingresses), sorted(dst_port.ingresses), len(room.events))
    with pytest.raises(RelayError):
        cascade.apply("r", "A", event)
    assert (sorted(cascade.relayed), sorted(cascade.ingresses), sorted(dst_port.ingresses), len(room.events)) == before


async def test_between_nodes_relays_are_srtp_each_node_sending_with_its_own_key():
    a, b = RelayPort(secure=True), RelayPort(secure=True)
    wire = Datagrams()
    a.transport, a.address = wire, SOURCE  # type: ignore[assignment]
    b.ingresses[MEDIA_SSRC] = ingress = (await make_ingress())[0]
    with pytest.raises(RelayError, match="SRTP key"):
        b.allow(SOURCE)  # a node between nodes is heard only with its key
    b.allow(SOURCE, a.key)
    plain = packet(MEDIA_SSRC, 7)
    a.send(plain, DESTINATION)
    ((sent, _),) = wire.sent
    assert sent != plain and sent[:12] == plain[:12] and len(sent) == len(plain) + 10  # encrypted, tagged
    layer = ingress.tracks["0"].layers[""]
    b.datagram_received(sent, SOURCE)
    assert layer.packets == 1
    # what another key protected, or a replayed datagram, is dropped
    before = dict(STATS.dropped)
    c = RelayPort(secure=True)
    c.transport = Datagrams()  # type: ignore[assignment]
    c.send(packet(MEDIA_SSRC, 8), DESTINATION)
    b.datagram_received(c.transport.sent[0][0], SOURCE)  # type: ignore[attr-defined]
    b.datagram_received(sent, SOURCE)
    assert dropped_since(before) == {"relay_srtp": 2} and layer.packets == 1


async def test_the_publishers_sender_reports_reach_the_other_node_for_lip_sync():
    ingress, rec, src_port, src_wire, cascade, room, dst_port = await linked()
    sink = RelaySink(rec, src_port, DESTINATION, lambda s: None)
    rec.relays.append(sink)
    ingress.relaying(rec)
    ingress.on_rtp(packet(MEDIA_SSRC, 1, ts=90000), 1.0)
    sr = artp.RtcpSrPacket(ssrc=MEDIA_SSRC, sender_info=artp.RtcpSenderInfo(
        ntp_timestamp=0x11223344_55667788, rtp_timestamp=123456, packet_count=1, octet_count=32))
    ingress.on_rtcp([sr])
    relayed = room.relayed[rec.id]
    reports: list = []

    class Subscriber:  # what a DownTrack of the relayed track hears of the publisher's reports
        def on_publisher_sr(self, layer, ntp, rtp_ts):
            reports.append((ntp, rtp_ts))

    relayed.downtracks.append(Subscriber())  # type: ignore[arg-type]
    (report,) = [data for data, _ in src_wire.sent if 192 <= data[1] <= 223]  # (the SR, not the media)
    dst_port.datagram_received(report, SOURCE)
    layer = next(iter(relayed.layers.values()))
    assert layer.last_sr is not None and layer.last_sr[:2] == (0x11223344_55667788, 123456)
    assert reports == [(0x11223344_55667788, 123456)]
