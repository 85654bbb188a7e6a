"""Micro-benchmark of the receive side (`make bench`): a batch of BATCH SRTP datagrams (1200 bytes,
AEAD_AES_128_GCM) queued on a loopback socket, read, unprotected and handed to a handler, inside a
running uvloop. Divide the time per call by BATCH for µs per datagram.

* `uvloop`: the event loop's UDP transport (one `recvfrom`, bytes and address tuple and a Python
  call per datagram), classified and unprotected by the native SrtpSession in Python, as
  `sfu.native_receive` does on sockets that are not ours;
* `media_socket`: `_native.MediaSocket` (recvmmsg, unprotect in C) on a socket of ours, as the
  native data path's ICE sockets are read;
* `media_socket_py`: its pure-Python twin, for scale.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from bench.micro.conftest import PACKET_SIZE, vp8_packet
from sfu import _native  # type: ignore[attr-defined]
from sfu.media_socket import PyMediaSocket

BATCH = 256
ROUNDS = 20
GCM128 = 7
KEY = bytes(range(28))


@pytest.mark.parametrize("reader", ["uvloop", "media_socket", "media_socket_py"])
def test_receive_per_datagram(benchmark, reader):
    loop = uvloop.new_event_loop()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = _native.SrtpSession(GCM128, KEY, False)
    rx = _native.SrtpSession(GCM128, KEY, True)
    seq = iter(range(1 << 30))
    state = {"left": 0, "done": None}

    def handler(plain: bytes) -> None:
        state["left"] -= 1
        if state["left"] == 0:
            state["done"].set_result(None)

    if reader == "uvloop":
        unprotect = rx.unprotect

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                if data and 127 < data[0] < 192:
                    handler(unprotect(data))

        transport, _ = loop.run_until_complete(loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0)))
        sock = transport.get_extra_info("socket")
        address = transport.get_extra_info("sockname")
        closer = transport.close
    else:
        own = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        own.bind(("127.0.0.1", 0))
        own.setblocking(False)
        sock, address = own, own.getsockname()
        kind = _native.MediaSocket if reader == "media_socket" else PyMediaSocket
        r = kind(own.fileno(), lambda data, addr: None)
        r.attach(rx, handler, handler, print)
        loop.add_reader(own.fileno(), r.drain)

        def closer() -> None:
            loop.remove_reader(own.fileno())
            r.close()
            own.close()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def setup():
        packets = [tx.protect(vp8_packet(next(seq) & 0xFFFF, 0, 0, False, False, PACKET_SIZE)) for _ in range(BATCH)]
        for p in packets:
            sender.sendto(p, address)
        state["left"] = BATCH
        state["done"] = loop.create_future()
        return (), {}

    def run():
        loop.run_until_complete(state["done"])

    benchmark.extra_info.update(batch=BATCH, reader=reader)
    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    assert state["left"] == 0  # every datagram was unprotected and delivered
    sender.close()
    closer()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
