"""SIP messages: what real clients send parses, what breaks the grammar is refused with the reason
and the status to answer, and what we send parses back to what we meant."""

from __future__ import annotations

import pytest

from signalling.sip.message import (
    MAX_BODY,
    MAX_HEADERS,
    Request,
    Response,
    SipError,
    is_keepalive,
    parse,
    parse_name_addr,
    parse_uri,
    response,
)

SDP = b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
      b"m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

# what sipp's uac scenario sends (its [fields] filled in)
SIPP_INVITE = (
    "INVITE sip:standup@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-1-0\r\n"
    "From: sipp <sip:sipp@127.0.0.1:5061>;tag=1234SIPpTag001\r\n"
    "To: standup <sip:standup@127.0.0.1:5060>\r\n"
    "Call-ID: 1-1234@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: sip:sipp@127.0.0.1:5061\r\n"
    "Max-Forwards: 70\r\n"
    "Subject: Performance Test\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n"
    "\r\n").encode() + SDP


def test_a_sipp_invite_parses():
    m = parse(SIPP_INVITE)
    assert isinstance(m, Request)
    assert (m.method, m.uri.user, m.uri.host, m.uri.port) == ("INVITE", "standup", "127.0.0.1", 5060)
    assert m.from_.display == "sipp" and m.from_.tag == "1234SIPpTag001" and m.to.tag is None
    assert (m.call_id, m.cseq, m.cseq_method, m.max_forwards) == ("1-1234@127.0.0.1", 1, "INVITE", 70)
    assert [(v.transport, v.host, v.port, v.branch) for v in m.vias] == [("UDP", "127.0.0.1", 5061, "z9hG4bK-1234-1-0")]
    assert m.body == SDP and m.headers.get("content-type") == "application/sdp"


def test_compact_forms_folding_leading_crlf_and_several_vias():
    raw = (b"\r\n\r\nOPTIONS sip:127.0.0.1 SIP/2.0\r\n"
           b"v: SIP/2.0/TCP [::1]:5070;branch=z9hG4bKa;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb\r\n"
           b"f: \"Ann \\\"the\\\" Caller\" <sip:ann%40x@example.com>;tag=a1\r\n"
           b"t: <sip:127.0.0.1>\r\ni: abc\r\nCSeq: 7\r\n  OPTIONS\r\nmax-forwards: 0\r\nl: 0\r\n\r\n")
    m = parse(raw, stream=True)
    assert m.method == "OPTIONS" and m.cseq == 7 and m.max_forwards == 0
    assert [(v.transport, v.host, v.port, v.params) for v in m.vias] == [
        ("TCP", "[::1]", 5070, {"branch": "z9hG4bKa", "rport": None}),
        ("UDP", "10.0.0.1", None, {"branch": "z9hG4bKb"})]
    assert m.from_.display == 'Ann "the" Caller' and m.from_.uri.user == "ann@x"
    assert m.call_id == "abc" and m.headers.get("Content-Length") == "0"


def test_a_udp_body_longer_than_content_length_is_cut_a_stream_one_is_refused():
    raw = SIPP_INVITE + b"trailing"
    assert parse(raw).body == SDP
    with pytest.raises(SipError, match="Content-Length"):
        parse(raw, stream=True)


@pytest.mark.parametrize("mutate, reason, status", [
    (lambda m: m.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia", 1), "unsupported version", 505),
    (lambda m: m.replace(b"INVITE sip:", b"INVITE tel:", 1), "only sip: and sips:", 416),
    (lambda m: m.replace(b"Call-ID: 1-1234@127.0.0.1\r\n", b""), "missing Call-ID", 400),
    (lambda m: m.replace(b"Max-Forwards: 70", b"Max-Forwards: 300"), "Max-Forwards", 400),
    (lambda m: m.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), "does not match", 400),
    (lambda m: m.replace(b"CSeq: 1 INVITE", b"CSeq: 99999999999 INVITE"), "CSeq", 400),
    (lambda m: m.replace(b"Content-Length: ", b"Content-Length: 9"), "Content-Length", 400),
    (lambda m: m.replace(b"Content-Length: ", b"Content-Length: -"), "not a number", 400),
    (lambda m: m.replace(b"From: sipp <", b"From: sipp <<"), "From", 400),
    (lambda m: m.replace(b"To: standup <sip:standup@127.0.0.1:5060>", b'To: "unterminated <sip:a@b>'),
     "unterminated", 400),
    (lambda m: m.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/UDP/X"), "sent-protocol", 400),
    (lambda m: m.replace(b"127.0.0.1:5061;branch", b"127.0.0.1:99999;branch"), "out of range", 400),
    (lambda m: m.replace(b"Subject: Performance Test", b"Subject Performance Test"), "malformed header line", 400),
    (lambda m: m.replace(b"Subject: Performance", b"Subject: Perf\nor"), "bare CR, LF", 400),
    (lambda m: m.replace(b"Subject: Performance", "Subject: \xff".encode("latin-1")), "not UTF-8", 400),
    (lambda m: m.replace(b"\r\n\r\n", b"\r\n"), "no empty line", 400),
    (lambda m: m.replace(b"Call-ID:", b"Call-ID: x\r\nCall-ID:"), "more than one Call-ID", 400),
    (lambda m: m.replace(b"Subject:", b"".join(b"X-%d: y\r\n" % i for i in range(MAX_HEADERS)) + b"Subject:"),
     "more than", 400),
    (lambda m: m.replace(b"Content-Length: %d" % len(SDP), b"Content-Length: %d" % (MAX_BODY + 1)), "at most", 413),
])
def test_malformed_requests_are_refused_with_the_reason_and_the_status(mutate, reason, status):
    with pytest.raises(SipError, match=reason) as e:
        parse(mutate(SIPP_INVITE))
    assert e.value.status == status


def test_limits_and_keepalives():
    with pytest.raises(SipError) as e:
        parse(b"x" * 70_000)
    assert e.value.status == 513
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n") and not is_keepalive(SIPP_INVITE)


def test_what_we_send_parses_back():
    req = parse(SIPP_INVITE)
    assert isinstance(req, Request)
    trying = response(req, 100, "Trying")
    ok = response(req, 200, "OK", to_tag="b4s3m3nt", headers=[("Contact", "<sip:standup@127.0.0.1:5060>"),
                                                               ("Content-Type", "application/sdp")], body=SDP)
    for sent, tag in ((trying, None), (ok, "b4s3m3nt")):
        back = parse(sent.to_bytes(), stream=True)
        assert isinstance(back, Response) and (back.status, back.reason) == (sent.status, sent.reason)
        assert back.to.tag == tag and back.from_.tag == "1234SIPpTag001" and back.call_id == req.call_id
        assert [v.branch for v in back.vias] == ["z9hG4bK-1234-1-0"] and back.cseq_method == "INVITE"
    assert parse(ok.to_bytes()).body == SDP
    assert parse(req.to_bytes()).to_bytes() == req.to_bytes()  # (a request we relay or build: stable)


def test_uris_and_name_addrs():
    u = parse_uri("sip:room%20one@Example.COM:5080;transport=tcp;lr")
    assert (u.user, u.host, u.port, u.params) == ("room one", "example.com", 5080, {"transport": "tcp", "lr": None})
    assert str(parse_uri(str(u))) == str(u)
    assert parse_uri("sips:[2001:db8::1]").host == "[2001:db8::1]"
    for bad in ("sip:", "sip:@host", "sip:a@", "sip:a@ho st", "sip:a@host;=x", "sip:a@host:0"):
        with pytest.raises(SipError):
            parse_uri(bad)
    n = parse_name_addr("Bob Smith <sip:bob@h>;tag=x;foo", "From")
    assert (n.display, n.tag, n.params["foo"]) == ("Bob Smith", "x", None)
    n = parse_name_addr("sip:carol@h;tag=9", "To")  # addr-spec: the parameters are the header's
    assert n.tag == "9" and n.uri.params == {}


def test_what_proxies_and_trunks_send_parses():
    raw = SIPP_INVITE.replace(b"branch=z9hG4bK-1234-1-0", b"branch=z9hG4bK-1234-1-0;received=2001:db8::1;rport=5061")
    raw = raw.replace(b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=1234SIPpTag001",
                      b"From: <tel:+14155550100;phone-context=example.com>;tag=t1")
    m = parse(raw)
    assert m.vias[0].params["received"] == "2001:db8::1" and m.vias[0].params["rport"] == "5061"
    assert (m.from_.uri.scheme, m.from_.uri.user, m.from_.tag) == ("tel", "+14155550100", "t1")
    assert str(m.from_.uri) == "tel:+14155550100;phone-context=example.com"
    with pytest.raises(SipError) as e:  # (the Request-URI stays sip: or sips:)
        parse(raw.replace(b"INVITE sip:standup@127.0.0.1:5060", b"INVITE tel:+14155550100", 1))
    assert e.value.status == 416
