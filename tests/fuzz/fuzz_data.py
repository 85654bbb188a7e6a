"""Fuzz data channels as the SFU receives them: aiortc's SCTP behind our guard, then our relay.

Input: SCTP packets, length-prefixed (`_harness.frames`), each the chunks of one packet; the harness
adds the common header with the association's verification tag and the CRC32c, so the fuzzer spends
its time on chunks (a wrong tag or checksum is a silent drop it would learn nothing from).
Path under test, as `PeerTransport.accept_applied_offer` wires it: `sfu.transport.guard_sctp` around
`RTCSctpTransport._handle_data` (an established association, the SFU as DTLS server) → DCEP opens a
channel → `sfu.data.DataEndpoint.attach` → its messages → `DataEndpoint.receive` →
`DataRelay.relay` to a second participant, whose channel is a stand-in recording what it is sent.
Contract: nothing escapes the guard; after every packet the association is either aborted or holds
no more than the guard's limits (streams, chunks out of order, bytes past the window, duplicates);
our handlers never fail (`internal_error` stays 0); everything sent to the other participant is a
JSON object of a documented type, and a relayed message names the sender it came from.
"""

from __future__ import annotations

import asyncio
import json
import struct

from _harness import Finding, frames, instrument_functions, instrumented, main
from aiortc import rtcsctptransport as sctpmod

with instrumented():
    from sfu import transport
    from sfu.data import DataEndpoint, DataRelay
    from sfu.metrics import STATS

instrument_functions(sctpmod.parse_packet, sctpmod.RTCSctpTransport._receive_chunk,
                     sctpmod.RTCSctpTransport._receive_data_chunk, sctpmod.RTCSctpTransport._data_channel_receive,
                     sctpmod.RTCSctpTransport._receive_forward_tsn_chunk, sctpmod.InboundStream.add_chunk,
                     sctpmod.InboundStream.pop_messages, sctpmod.RTCSctpTransport._receive_reconfig_param)

LOCAL_TAG = 0x1234ABCD
FIRST_TSN = 1000  # must match make_corpus.py data_seeds()
TYPES = {"data", "data_lost", "error"}

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)


class FakeDtls:
    """The DTLS transport an association runs over: the SFU is the server; what it sends is kept."""

    state = "connected"
    _role = "server"

    def __init__(self) -> None:
        self.sent = 0
        self._data_receiver = None

    def _register_data_receiver(self, receiver: object) -> None:
        self._data_receiver = receiver

    def _unregister_data_receiver(self, receiver: object) -> None:
        self._data_receiver = None

    async def _send_data(self, data: bytes) -> None:
        self.sent += 1


class Recorder:
    """The other participant's channel."""

    label = "reliable"
    readyState = "open"
    bufferedAmount = 0

    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, text: str) -> None:
        self.messages.append(text)

    def close(self) -> None:
        pass

    def on(self, event: str, handler: object = None) -> object:
        return handler if handler is not None else (lambda f: f)


def packet(chunks: bytes) -> bytes:
    header = struct.pack("!HHL", 5000, 5000, LOCAL_TAG)
    checksum = sctpmod.crc32c(header + b"\x00\x00\x00\x00" + chunks)
    return header + struct.pack("<L", checksum) + chunks


def association() -> tuple[sctpmod.RTCSctpTransport, Recorder]:
    sctp = sctpmod.RTCSctpTransport(FakeDtls())  # type: ignore[arg-type]
    sctp._local_verification_tag = LOCAL_TAG
    sctp._remote_verification_tag = 0x55667788
    sctp._remote_port = 5000
    sctp._last_received_tsn = FIRST_TSN - 1
    sctp._inbound_streams_count = sctp._outbound_streams_count = 1024
    sctp._association_state = sctpmod.RTCSctpTransport.State.ESTABLISHED
    relay = DataRelay()
    sender, other = DataEndpoint("PA_sender", "sender", "guest-1"), DataEndpoint("PA_other", "other", "guest-2")
    relay.add(sender)
    relay.add(other)
    recorder = Recorder()
    other.channels["reliable"] = recorder
    sctp.on("datachannel", sender.attach)
    transport.guard_sctp(sctp)
    return sctp, recorder


def check_bounds(sctp: sctpmod.RTCSctpTransport) -> None:
    if sctp._association_state == sctpmod.RTCSctpTransport.State.CLOSED:
        return
    if len(sctp._inbound_streams) > transport.SCTP_MAX_STREAMS:
        raise Finding(f"{len(sctp._inbound_streams)} inbound streams kept")
    if sctp._advertised_rwnd < -transport.SCTP_MAX_OVERRUN:
        raise Finding(f"receive window at {sctp._advertised_rwnd}")
    if len(sctp._sack_misordered) > transport.SCTP_MAX_HELD_CHUNKS:
        raise Finding(f"{len(sctp._sack_misordered)} TSNs out of order kept")
    if len(sctp._sack_duplicates) > transport.SCTP_MAX_DUPLICATES:
        raise Finding(f"{len(sctp._sack_duplicates)} duplicate TSNs kept")


def test_one(data: bytes) -> None:
    internal = STATS.dropped.get("internal_error", 0)
    sctp, recorder = association()
    try:
        for chunks in frames(data, max_frames=32):
            try:
                loop.run_until_complete(sctp._handle_data(packet(chunks)))
            except Exception as e:
                raise Finding(f"{type(e).__name__} escaped the SCTP guard: {e}") from e
            check_bounds(sctp)
        loop.run_until_complete(asyncio.sleep(0))  # the flushes the channels scheduled
    finally:
        for cancel in (sctp._t1_cancel, sctp._t2_cancel, sctp._t3_cancel, sctp._reconfig_timer_cancel):
            cancel()
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
    if STATS.dropped.get("internal_error", 0) != internal:
        raise Finding("a data message made our handler fail (internal_error)")
    for text in recorder.messages:
        msg = json.loads(text)
        if not isinstance(msg, dict) or msg.get("type") not in TYPES:
            raise Finding(f"the other participant was sent {text[:80]!r}")
        if msg["type"] == "data" and (msg.get("from") != "PA_sender" or not isinstance(msg.get("data"), str)):
            raise Finding(f"a relayed message misnames its sender or payload: {text[:80]!r}")


if __name__ == "__main__":
    main(test_one)
