"""SIP over TCP's framing (signalling.sip.stream.Framer): whole messages out of whatever pieces a
connection delivers, keep-alive pings kept apart, and what cannot be framed stops the connection."""

from __future__ import annotations

import pytest

from signalling.sip.message import MAX_MESSAGE, parse
from signalling.sip.stream import Framer, FramingError
from tests.unit.signalling.sip.test_message import SIPP_INVITE
from tests.unit.signalling.sip.test_service import request


def test_messages_are_framed_by_content_length_whatever_the_pieces():
    stream = SIPP_INVITE + b"\r\n\r\n" + request("BYE") + SIPP_INVITE
    for size in (1, 7, 100, len(stream)):
        f = Framer()
        out: list[bytes] = []
        for i in range(0, len(stream), size):
            out += f.feed(stream[i:i + size])
        assert out == [SIPP_INVITE, b"\r\n\r\n", request("BYE"), SIPP_INVITE], size
        assert not f.buf and not f.broken
        assert [parse(m, stream=True).cseq_method for m in (out[0], out[2])] == ["INVITE", "BYE"]


def test_a_message_without_one_content_length_is_handed_on_and_the_stream_stops():
    for head in (request("OPTIONS").replace(b"Content-Length: 0\r\n", b""),
                 request("OPTIONS").replace(b"Content-Length: 0\r\n", b"Content-Length: 0\r\nl: 5\r\n")):
        f = Framer()
        (out,) = f.feed(head + b"more bytes that cannot be framed")
        assert f.broken and out.endswith(b"\r\n\r\n")
        with pytest.raises(ValueError, match="Content-Length"):
            parse(out, stream=True)  # what the service answers 400 with


def test_what_is_too_large_is_a_framing_error():
    with pytest.raises(FramingError, match="no end of headers"):
        Framer().feed(b"OPTIONS sip:x SIP/2.0\r\nX: " + b"a" * MAX_MESSAGE)
    with pytest.raises(FramingError, match="at most"):
        Framer().feed(request("OPTIONS").replace(b"Content-Length: 0", b"Content-Length: 999999"))
