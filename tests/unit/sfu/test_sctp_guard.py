"""sfu.transport.guard_sctp: what a peer's SCTP packets may make aiortc do, on a real RTCSctpTransport.

The association is aiortc's own, established, over a stand-in DTLS transport that keeps what it is
asked to send; packets are built here byte by byte (RFC 9260), with the right verification tag and
CRC32c, as a hostile client would send them inside its DTLS. Each abuse must end the association
(an ABORT chunk goes out, the data channels close) and nothing else: no exception, no hang.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from aiortc import rtcsctptransport as sctpmod

from sfu import transport
from sfu.metrics import STATS

TAG = 0x0BADCAFE
TSN = 5000
ESTABLISHED, CLOSED = sctpmod.RTCSctpTransport.State.ESTABLISHED, sctpmod.RTCSctpTransport.State.CLOSED


class Dtls:
    state = "connected"
    _role = "server"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self._data_receiver = None

    def _register_data_receiver(self, receiver: object) -> None:
        self._data_receiver = receiver

    def _unregister_data_receiver(self, receiver: object) -> None:
        self._data_receiver = None

    async def _send_data(self, data: bytes) -> None:
        self.sent.append(data)

    def chunk_types(self) -> list[int]:
        return [c.type for d in self.sent for c in sctpmod.parse_packet(d)[3]]


def association() -> tuple[sctpmod.RTCSctpTransport, Dtls, list]:
    dtls = Dtls()
    sctp = sctpmod.RTCSctpTransport(dtls)  # type: ignore[arg-type]
    sctp._local_verification_tag = TAG
    sctp._remote_port = 5000
    sctp._last_received_tsn = TSN - 1
    sctp._association_state = ESTABLISHED
    channels: list = []
    sctp.on("datachannel", channels.append)
    transport.guard_sctp(sctp)
    return sctp, dtls, channels


def packet(*chunks: bytes) -> bytes:
    body = b"".join(chunks)
    header = struct.pack("!HHL", 5000, 5000, TAG)
    return header + struct.pack("<L", sctpmod.crc32c(header + bytes(4) + body)) + body


def data(tsn: int, payload: bytes, stream: int = 0, seq: int = 0, ppid: int = 51, flags: int = 0x03) -> bytes:
    length = 16 + len(payload)
    return struct.pack("!BBHLHHL", 0, flags, length, tsn, stream, seq, ppid) + payload + bytes(-length % 4)


def dcep_open(label: str) -> bytes:
    return struct.pack("!BBHLHH", 3, 0, 0, 0, len(label), 0) + label.encode()


async def feed(sctp: sctpmod.RTCSctpTransport, *packets: bytes) -> None:
    for p in packets:
        # the wait_for makes a hang a failure rather than a stuck test run
        await asyncio.wait_for(sctp._handle_data(p), 5)
        if sctp._association_state == CLOSED:
            return


def aborted(sctp: sctpmod.RTCSctpTransport, dtls: Dtls) -> bool:
    return sctp._association_state == CLOSED and 6 in dtls.chunk_types()  # 6: ABORT


async def test_a_well_behaved_peer_opens_a_channel_and_sends():
    sctp, dtls, channels = association()
    got: list = []
    await feed(sctp, packet(data(TSN, dcep_open("reliable"), ppid=50)))
    channels[0].on("message", got.append)
    await feed(sctp, packet(*(data(TSN + i, b"hello %d" % i, seq=i) for i in range(1, 20))))
    assert got == [f"hello {i}" for i in range(1, 20)]
    assert sctp._association_state == ESTABLISHED and 6 not in dtls.chunk_types()


async def test_a_zero_length_parameter_would_spin_aiortc_forever():
    sctp, dtls, _ = association()
    before = STATS.dropped.get("sctp_refused", 0)
    # HEARTBEAT (4) whose one parameter says length 0: aiortc's decode_params never moves on
    await feed(sctp, packet(struct.pack("!BBHHH", 4, 0, 8, 1, 0)))
    assert aborted(sctp, dtls) and STATS.dropped["sctp_refused"] == before + 1
    sctp2, dtls2, _ = association()
    init = struct.pack("!BBHLLHHL", 1, 0, 24, 1, 65536, 10, 10, 1) + struct.pack("!HH", 0x8008, 0)
    await feed(sctp2, packet(init))
    assert aborted(sctp2, dtls2)
    assert transport.sctp_packet_problem(packet(init)).endswith("has a parameter of length 0 (at least 4)")


async def test_a_short_data_chunk_does_not_take_the_dtls_loop_down():
    sctp, dtls, _ = association()
    # a DATA chunk of 8 bytes: aiortc's parser raises struct.error, which its ValueError catch misses
    await feed(sctp, packet(struct.pack("!BBHL", 0, 3, 8, TSN)))
    assert aborted(sctp, dtls)


async def test_a_repeated_channel_open_is_not_an_assertion_in_the_receive_loop():
    sctp, dtls, channels = association()
    await feed(sctp, packet(data(TSN, dcep_open("reliable"), ppid=50)),
               packet(data(TSN + 1, dcep_open("reliable"), ppid=50, seq=1)))
    assert len(channels) == 1 and aborted(sctp, dtls)


async def test_data_past_the_receive_window_ends_the_association():
    sctp, dtls, _ = association()
    window = sctp._advertised_rwnd
    # fragments of one message that never ends: aiortc keeps them all, whatever its window says
    fragment = bytes(1100)
    packets = [packet(data(TSN + i, fragment, flags=0x02 if i == 0 else 0x00)) for i in range(window // 1100 + 80)]
    await feed(sctp, *packets)
    assert aborted(sctp, dtls)
    assert sctp._advertised_rwnd >= -transport.SCTP_MAX_OVERRUN - 2000


async def test_chunks_held_out_of_order_are_bounded():
    sctp, dtls, _ = association()
    # TSN + 1 never comes: every later chunk is held, and aiortc sorts the set on every one
    await feed(sctp, *(packet(*(data(TSN + 1 + i * 8 + k, b"x") for k in range(8))) for i in range(600)))
    assert aborted(sctp, dtls) and len(sctp._sack_misordered) <= transport.SCTP_MAX_HELD_CHUNKS + 8


async def test_data_on_many_streams_ends_the_association():
    sctp, dtls, _ = association()
    streams = range(transport.SCTP_MAX_STREAMS + 1)
    await feed(sctp, *(packet(data(TSN + s, b"x", stream=s, flags=0x07)) for s in streams))
    assert aborted(sctp, dtls)


async def test_duplicates_are_reported_up_to_a_limit_without_ending_anything():
    sctp, dtls, _ = association()
    await feed(sctp, packet(data(TSN, b"x", flags=0x07)))
    await feed(sctp, *(packet(data(TSN, b"x", flags=0x07)) for _ in range(500)))
    assert sctp._association_state == ESTABLISHED
    assert len(sctp._sack_duplicates) <= transport.SCTP_MAX_DUPLICATES


@pytest.mark.parametrize("chunk", [b"", b"\x00\x00\x00\x02", struct.pack("!BBH", 1, 0, 3000)])
async def test_malformed_packets_are_ignored_as_aiortc_does(chunk):
    sctp, dtls, _ = association()
    await feed(sctp, packet(chunk))
    assert sctp._association_state == ESTABLISHED


async def test_a_sack_whose_gaps_span_most_of_the_tsn_space_is_refused():
    # aiortc walks every TSN of every gap block, even with nothing in flight: 368 blocks of
    # (1, 65535) fit one packet and held the event loop for seconds
    sctp, dtls, _ = association()
    sack = struct.pack("!BBHLLHH", 3, 0, 16 + 4 * 4, sctp._last_sacked_tsn, 65536, 4, 0)
    sack += b"".join(struct.pack("!HH", 1, 65535) for _ in range(4))
    assert transport.sctp_packet_problem(packet(sack)) == "a SACK whose gap blocks span more than 4096 TSNs"
    await feed(sctp, packet(sack))
    assert aborted(sctp, dtls)
    # an ordinary SACK with a few gaps is handled as aiortc does
    sctp2, dtls2, _ = association()
    sack = struct.pack("!BBHLLHH", 3, 0, 24, sctp2._last_sacked_tsn, 65536, 2, 0) + struct.pack("!HHHH", 2, 3, 5, 9)
    await feed(sctp2, packet(sack))
    assert sctp2._association_state == ESTABLISHED


async def test_data_chunks_without_user_data_end_the_association():
    # RFC 9260 6.2 says ABORT; aiortc kept them, and they do not lower the window that bounds the rest
    sctp, dtls, _ = association()
    empty = struct.pack("!BBHLHHL", 0, 0, 16, TSN, 0, 0, 51)
    await feed(sctp, packet(empty))
    assert aborted(sctp, dtls)


async def test_channels_the_peer_leaves_half_closed_are_bounded():
    sctp, dtls, _ = association()
    for stream in range(transport.SCTP_MAX_STREAMS + 1):  # as if opened, refused, and never reset back
        sctp._data_channels[1000 + stream] = object()
    await feed(sctp, packet(data(TSN, b"x", flags=0x07)))
    assert aborted(sctp, dtls)


async def test_mark_received_is_aiortcs_without_the_sort():
    """The replacement gives aiortc's state for any order of TSNs: duplicates, gaps, holes filled."""
    import random

    rng = random.Random(7)
    for _ in range(200):
        ours, theirs = association()[0], sctpmod.RTCSctpTransport(Dtls())  # type: ignore[arg-type]
        for s in (ours, theirs):
            s._last_received_tsn = 1000  # (not across the 32-bit wrap: aiortc's sort gets that wrong)
        tsns = [1000 + rng.randint(-3, 40) for _ in range(rng.randint(1, 60))]
        for tsn in tsns:
            assert ours._mark_received(tsn) == theirs._mark_received(tsn), tsns
            assert ours._last_received_tsn == theirs._last_received_tsn, tsns
            assert ours._sack_misordered == theirs._sack_misordered, tsns
            assert ours._sack_duplicates == theirs._sack_duplicates, tsns
