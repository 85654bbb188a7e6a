"""The SIP service's answers, sans socket: every request gets the answer RFC 3261 gives it, a
retransmission the same one again, and nothing about a message makes it raise or keep state without
bound. (A real call, with sipp: tests/e2e/sip/test_sipp.py.)"""

from __future__ import annotations

import asyncio
import re

import pytest

from signalling.sip import service as svc
from signalling.sip.message import Response, parse
from signalling.sip.service import SipService
from tests.unit.signalling.sip.test_message import SDP, SIPP_INVITE

PHONE = ("127.0.0.1", 5061)


class Wire:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def answers(self) -> list[Response]:
        out = [parse(d) for d, _ in self.sent]
        assert all(isinstance(r, Response) for r in out)
        return out  # type: ignore[return-value]


def service(rooms: set[str] = frozenset(), rate: float = 20.0) -> tuple[SipService, Wire]:
    async def room_open(room: str) -> bool:
        return room in rooms

    s = SipService("http://127.0.0.1:1", "127.0.0.1", 5060, room_open, max_calls=2, requests_per_s=rate)
    wire = Wire()
    s.transport = wire  # type: ignore[assignment]
    return s, wire


def request(method: str, branch: str = "z9hG4bK-1", user: str = "standup", extra: bytes = b"", body: bytes = b"",
            to_tag: str = "") -> bytes:
    head = (f"{method} sip:{user}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n"
            f"From: \"Phone\" <sip:phone@127.0.0.1:5061>;tag=p1\r\nTo: <sip:{user}@127.0.0.1:5060>"
            f"{';tag=' + to_tag if to_tag else ''}\r\nCall-ID: call-1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n")
    return head.encode() + extra + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_options_is_answered_and_a_retransmission_gets_the_same_answer():
    s, wire = service()
    s._datagram(request("OPTIONS"), PHONE, 1.0)
    s._datagram(request("OPTIONS"), PHONE, 1.2)
    (a, b) = wire.answers()
    assert a.status == 200 and "INVITE" in (a.headers.get("Allow") or "")
    assert wire.sent[0][0] == wire.sent[1][0] and wire.sent[0][1] == PHONE


@pytest.mark.parametrize("raw, status, warning", [
    (request("OPTIONS").replace(b"Max-Forwards: 70", b"Max-Forwards: many"), 400, "Max-Forwards"),
    (request("OPTIONS").replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia", 1), 505, "unsupported version"),
    (request("OPTIONS").replace(b"OPTIONS sip:", b"OPTIONS tel:", 1), 416, "only sip: and sips:"),
    (request("INVITE", extra=b"Content-Type: application/sdp\r\n", body=SDP).replace(b"Content-Length: ",
                                                                                  b"Content-Length: 9"),
     400, "Content-Length"),
])
def test_a_malformed_request_gets_its_status_and_why(raw, status, warning):
    s, wire = service()
    s._datagram(raw, PHONE, 1.0)
    (answer,) = wire.answers()
    assert answer.status == status and warning in (answer.headers.get("Warning") or ""), answer.to_bytes()
    assert answer.call_id == "call-1" and answer.vias[0].branch == "z9hG4bK-1"
    assert s.stats["drop:malformed"] == 1


def test_what_cannot_be_addressed_is_a_counted_drop():
    s, wire = service()
    for junk in (b"\x00\xff" * 50, b"INVITE\r\n\r\n", SIPP_INVITE.replace(b"Call-ID", b"Call-Id-Not")[:-5],
                 b"SIP/2.0 200 OK\r\n\r\n"):
        s._datagram(junk, PHONE, 1.0)
    assert wire.sent == [] and s.stats["drop:malformed"] == 4


@pytest.mark.parametrize("raw, status, why", [
    (request("INVITE", user="no room", extra=b"Content-Type: application/sdp\r\n", body=SDP), 400,
     "malformed request line"),
    (request("INVITE", user="bad!name", extra=b"Content-Type: application/sdp\r\n", body=SDP), 404, "no room"),
    (request("INVITE"), 488, "SDP offer"),
    (request("INVITE", extra=b"Content-Type: application/sdp\r\n",
             body=SDP.replace(b"RTP/AVP 0", b"RTP/AVP 18").replace(b"a=rtpmap:0 PCMU/8000", b"a=rtpmap:18 G729/8000")),
     488, "PCMU or PCMA"),
    (request("INVITE", extra=b"Content-Type: application/sdp\r\n", body=SDP.replace(b"RTP/AVP", b"RTP/SAVP")),
     488, "RTP/AVP"),
    (request("REGISTER"), 405, None),
    (request("BYE"), 481, None),
    (request("INFO"), 405, None),
])
def test_requests_it_cannot_take_get_4xx(raw, status, why):
    s, wire = service()
    s._datagram(raw, PHONE, 1.0)
    # (read as text: an answer repeats the request's From and To, which may be what was malformed)
    answer = wire.sent[-1][0].decode()
    assert answer.startswith(f"SIP/2.0 {status} "), answer
    if why:
        assert re.search(r"^Warning: 399 basement \".*" + re.escape(why), answer, re.M), answer
    assert "\r\nCall-ID: call-1\r\n" in answer and s.dialogs == {}


async def test_an_invite_to_a_room_nobody_is_in_is_tried_then_404():
    s, wire = service(rooms={"other"})
    s._datagram(request("INVITE", extra=b"Content-Type: application/sdp\r\n", body=SDP), PHONE, 1.0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert [a.status for a in wire.answers()] == [100, 404]
    assert "nobody is in room 'standup'" in (wire.answers()[1].headers.get("Warning") or "")
    # its retransmission: the final answer again, no second attempt
    s._datagram(request("INVITE", extra=b"Content-Type: application/sdp\r\n", body=SDP), PHONE, 1.5)
    assert [a.status for a in wire.answers()] == [100, 404, 404]


def test_a_flood_from_one_address_is_answered_503_then_dropped():
    s, wire = service(rate=10.0)
    for i in range(100):  # in the same instant
        s._datagram(request("OPTIONS", branch=f"z9hG4bK-{i}"), PHONE, 5.0)
    statuses = [a.status for a in wire.answers()]
    assert statuses[:20] == [200] * 20  # the burst: twice the rate
    assert set(statuses[20:]) == {503} and len(statuses) == 40  # then 503 until twice that, then nothing
    assert s.stats["drop:rate"] == 60
    assert all(a.headers.get("Retry-After") == "1" for a in wire.answers()[20:])
    # another address is not affected, and the flooder gets its rate back with time
    s._datagram(request("OPTIONS", branch="z9hG4bK-other"), ("127.0.0.2", 5061), 5.0)
    s._datagram(request("OPTIONS", branch="z9hG4bK-later"), PHONE, 20.0)
    assert [a.status for a in wire.answers()[-2:]] == [200, 200]


def test_state_is_bounded(monkeypatch):
    monkeypatch.setattr(svc, "MAX_TRANSACTIONS", 10)
    monkeypatch.setattr(svc, "MAX_ADDRESSES", 5)
    s, wire = service(rate=1000.0)
    for i in range(30):
        s._datagram(request("OPTIONS", branch=f"z9hG4bK-{i}"), (f"127.0.0.{i + 1}", 5061), 1.0)
    assert len(s.transactions) == 10 and len(s.buckets) == 5
    assert [a.status for a in wire.answers()][-1] == 503
    # transactions expire after 64 x T1, and room is made again
    s._datagram(request("OPTIONS", branch="z9hG4bK-late"), PHONE, 1.0 + svc.TIMER_H + 1)
    assert wire.answers()[-1].status == 200


def test_a_second_invite_of_a_call_id_in_use_is_a_merged_request(monkeypatch):
    s, wire = service(rooms={"standup"})
    invite = request("INVITE", extra=b"Content-Type: application/sdp\r\n", body=SDP)
    s.transactions[("z9hG4bK-1", "127.0.0.1:5061", "INVITE")] = svc._Transaction(
        b"SIP/2.0 100 Trying\r\n", 99.0, request=parse(invite))  # (being set up)
    s._datagram(invite.replace(b"branch=z9hG4bK-1", b"branch=z9hG4bK-2"), PHONE, 1.0)
    (answer,) = wire.answers()
    assert answer.status == 482 and "is in use" in (answer.headers.get("Warning") or "")


async def test_a_failure_answer_is_retransmitted_until_its_ack(monkeypatch):
    monkeypatch.setattr(svc, "T1", 0.01)
    s, wire = service(rooms=set())
    invite = request("INVITE", extra=b"Content-Type: application/sdp\r\n", body=SDP)
    s._datagram(invite, PHONE, 1.0)
    for _ in range(30):
        await asyncio.sleep(0.01)
        if len([a for a in wire.answers() if a.status == 404]) >= 3:
            break
    assert [a.status for a in wire.answers()][:2] == [100, 404]
    assert len([a for a in wire.answers() if a.status == 404]) >= 3  # Timer G
    tag = wire.answers()[1].to.tag
    s._datagram(request("ACK", to_tag=tag), PHONE, 1.1)  # the ACK of a failure: the INVITE's branch
    await asyncio.sleep(0.05)
    sent = len(wire.sent)
    await asyncio.sleep(0.1)
    assert len(wire.sent) == sent and s.stats["drop:ack_unmatched"] == 0


async def test_cancel_ends_the_invite_487_built_from_the_invite():
    s, wire = service(rooms={"standup"})
    never = asyncio.Event()

    async def slow(room: str) -> bool:
        await never.wait()
        return True

    s.room_open = slow
    two_vias = request("INVITE", extra=b"Content-Type: application/sdp\r\n", body=SDP).replace(
        b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\n",
        b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-up\r\n")
    s._datagram(two_vias, PHONE, 1.0)
    await asyncio.sleep(0)
    s._datagram(request("CANCEL"), PHONE, 1.1)  # (a CANCEL carries only the top Via, §9.1)
    await asyncio.sleep(0)
    statuses = [(a.status, a.cseq_method) for a in wire.answers()]
    assert statuses == [(100, "INVITE"), (200, "CANCEL"), (487, "INVITE")], statuses
    assert [v.branch for v in wire.answers()[2].vias] == ["z9hG4bK-1", "z9hG4bK-up"]  # the INVITE's Vias
    never.set()
    for t in list(s.tasks):
        t.cancel()


def test_answers_name_the_source_in_the_top_via():
    s, wire = service()
    s._datagram(request("OPTIONS").replace(b"branch=z9hG4bK-1", b"branch=z9hG4bK-1;rport"), ("127.0.0.7", 40000), 1.0)
    (answer,) = wire.answers()
    assert answer.vias[0].params == {"branch": "z9hG4bK-1", "rport": "40000", "received": "127.0.0.7"}


async def test_a_call_ended_from_the_room_sends_the_phone_a_bye_until_answered(monkeypatch):
    monkeypatch.setattr(svc, "T1", 0.01)
    s, wire = service()
    invite = parse(request("INVITE", extra=b"Contact: <sip:phone@127.0.0.1:5062;transport=udp>\r\n"
                                          b"Record-Route: <sip:proxy.example;lr>\r\nContent-Type: application/sdp\r\n",
                           body=SDP))

    class FakeCall:
        room = "standup"

    call = FakeCall()
    d = svc._Dialog(call, invite, "ours", b"", svc.Peer(PHONE, lambda data: wire.sendto(data, PHONE)))
    s.dialogs["call-1"] = d
    s._ended(call, "no RTP from the phone")
    await asyncio.sleep(0.05)
    byes = [parse(data) for data, _ in wire.sent]
    assert len(byes) >= 2 and all(isinstance(b, svc.Request) and b.method == "BYE" for b in byes)
    bye = byes[0]
    assert str(bye.uri) == "sip:phone@127.0.0.1:5062;transport=udp" and bye.cseq_method == "BYE"
    assert bye.from_.tag == "ours" and bye.to.tag == "p1" and bye.call_id == "call-1"
    assert bye.headers.all("Route") == ["<sip:proxy.example;lr>"] and s.dialogs == {}
    # the phone answers: no more retransmissions
    answer = (f"SIP/2.0 200 OK\r\nVia: {bye.headers.get('Via')}\r\nFrom: {bye.headers.get('From')}\r\n"
              f"To: {bye.headers.get('To')}\r\nCall-ID: call-1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n").encode()
    s._datagram(answer, PHONE, 2.0)
    await asyncio.sleep(0.01)
    sent = len(wire.sent)
    await asyncio.sleep(0.1)
    assert len(wire.sent) == sent and s.byes == {}


def test_requests_without_an_rfc_3261_branch_are_told_apart_by_call_id_and_cseq():
    s, wire = service()
    old = request("OPTIONS").replace(b";branch=z9hG4bK-1", b"")
    s._datagram(old, PHONE, 1.0)
    s._datagram(old.replace(b"CSeq: 1 OPTIONS", b"CSeq: 2 OPTIONS"), PHONE, 1.1)  # a new request
    s._datagram(old.replace(b"CSeq: 1 OPTIONS", b"CSeq: 2 OPTIONS"), PHONE, 1.2)  # its retransmission
    assert [a.cseq for a in wire.answers()] == [1, 2, 2] and s.stats["answer:200"] == 2
