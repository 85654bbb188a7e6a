"""What every harness shares: atheris setup, which packages get coverage instrumentation, the
definition of a finding, and sans-IO stand-ins for the pieces that would touch a socket.

A harness calls `main(test_one)`. `test_one(data)` feeds one input to the code under test, catches
the exceptions the code's contract allows (its documented error type) and lets anything else
escape: atheris reports an escaping exception as a crash and writes the input as a reproducer.
Contract violations that are not exceptions (state growing past a limit, a round trip that does
not round-trip) raise `Finding`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import atheris

# Our code is what we want coverage feedback from; the third-party parsers we sit on (aiortc's RTCP
# and SDP parsers) are added per harness, function by function, where their branches matter.
OUR_PACKAGES = ("sfu", "signalling")


class Finding(AssertionError):  # noqa: N818 - the name is what the report shows
    """A contract violation that is not an exception of the code under test."""


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Import the code under test inside this block so atheris can trace its branches."""
    with atheris.instrument_imports(include=list(OUR_PACKAGES)):
        yield


def instrument_functions(*funcs: Any) -> None:
    """Trace a few third-party parsers we sit on (instrumenting their whole package costs 5-10x)."""
    for f in funcs:
        atheris.instrument_func(getattr(f, "__func__", f))


def cheap_remb_estimator() -> None:
    """Share one aiortc RemoteBitrateEstimator between all Python-path Ingresses of this process.

    Its constructor allocates a thousand objects, which made building a fresh Ingress per input
    cost more than the input itself. The estimator's state then carries over between inputs (it
    only affects the REMB value); everything of ours is still fresh per input.
    """
    from aiortc.rate import RemoteBitrateEstimator

    from sfu import datapath

    shared = RemoteBitrateEstimator()
    native = datapath.remb_estimator  # the C one is cheap to make: each input gets a fresh one
    datapath.remb_estimator = lambda: shared if datapath.current() == "python" else native()


def main(test_one: Callable[[bytes], None]) -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


def frames(data: bytes, max_frames: int = 64) -> list[bytes]:
    """Split one input into datagrams: each is a 2-byte big-endian length and that many bytes.

    Length-prefixed framing (rather than a FuzzedDataProvider) keeps the committed seeds readable and
    lets the mutator change one packet without shifting the others.
    """
    out = []
    i = 0
    while i + 2 <= len(data) and len(out) < max_frames:
        n = (data[i] << 8) | data[i + 1]
        out.append(data[i + 2 : i + 2 + n])
        i += 2 + n
    return out


def frame(*packets: bytes) -> bytes:
    return b"".join(len(p).to_bytes(2, "big") + p for p in packets)


class FakeTransport:
    """Stands in for PeerTransport on the send side: serialises what would go out, sends nothing.

    `bytes(p)` on every RTCP packet is what the real `send_rtcp` does first, so a packet that cannot
    be serialised fails here exactly as it would in the server.
    """

    def __init__(self) -> None:
        self.closed = False
        self.rtp_sent = 0
        self.rtcp_sent = 0

    def send_rtp(self, data: bytes) -> bool:
        if not isinstance(data, bytes | bytearray) or len(data) < 12:
            raise Finding(f"send_rtp got a non-packet: {type(data).__name__} of {len(data)} bytes")
        self.rtp_sent += 1
        return True

    def send_rtcp(self, packets: Any) -> bool:
        b"".join(bytes(p) for p in packets)
        self.rtcp_sent += 1
        return True
