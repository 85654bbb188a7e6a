"""Fuzz what reaches a media port before any DTLS: the single-port demultiplexer and aioice's STUN.

Input: up to 16 datagrams (`frames`), each prefixed with one byte choosing which of 4 source
addresses sent it.
Path under test, as a shared port (`sfu.udp_mux.UdpMux.deliver`) and a port of its own both deliver:
  * the mux matches each datagram to one of two transports (by address, or by a STUN Binding request
    naming the transport's ufrag and signed with its password) or drops it (`mux_unmatched`);
  * the transport's aioice `StunProtocol.datagram_received` parses it (through `sfu.transport`'s
    `_parse_stun`, which makes every malformed STUN a ValueError) and dispatches it: request, response
    to a transaction of its own, or non-STUN data to its connection.
Contract: nothing escapes; an address is learnt only for a Binding request whose MESSAGE-INTEGRITY
verifies with that transport's password (two of the three transports share a ufrag), or an address
the transport itself sent to; no transport learns more than MAX_ADDRESSES; an address belongs to one
transport.
"""

from __future__ import annotations

import hashlib
import hmac
import types

from _harness import Finding, frames, instrument_functions, instrumented, main
from aioice import ice, stun

with instrumented():
    from sfu import transport, udp_mux

instrument_functions(stun.parse_message, stun.Message.check_message_integrity, ice.StunProtocol.datagram_received)
transport.configure_ice(["127.0.0.1"])  # installs the hooks, _parse_stun among them

ADDRESSES = [("192.0.2.1", 5000), ("192.0.2.1", 5001), ("2001:db8::1", 6000), ("198.51.100.7", 7000)]
# (ufrag, password) per transport; the third shares the first's ufrag, as two of a busy node's may
CREDENTIALS = {"a": ("ufa", "pwa-0123456789abcdefghij"), "b": ("ufb", "pwb-0123456789abcdefghij"),
               "c": ("ufa", "pwc-0123456789abcdefghij")}


class Receiver:
    """aioice's Connection as StunProtocol sees it: what it would act on, recorded."""

    def __init__(self, name: str) -> None:
        self.local_username, self.local_password = CREDENTIALS[name]
        self._nominated: dict[int, object] = {}
        self.requests = self.data = 0

    def request_received(self, message: stun.Message, addr: tuple, protocol: object) -> None:
        self.requests += 1

    def data_received(self, data: bytes, component: int) -> None:
        self.data += 1


class Sent:
    def sendto(self, data: bytes, addr: tuple) -> None:
        pass


def _signed_by(data: bytes, password: str) -> bool:
    """An independent check that `data` is a Binding request signed with `password` (RFC 8489 14.5)."""
    try:
        msg = transport._ORIGINAL_PARSE_STUN(data)
    except Exception:
        return False
    if msg.message_method != stun.Method.BINDING or msg.message_class != stun.Class.REQUEST:
        return False
    if msg._integrity_data is None:
        return False
    # over the message up to MESSAGE-INTEGRITY, with the header's length ending just after it
    head = msg._integrity_data
    signed = head[:2] + (len(head) - 20 + 24).to_bytes(2, "big") + head[4:]
    expected = hmac.new(password.encode(), signed, hashlib.sha1).digest()
    return hmac.compare_digest(expected, msg.attributes["MESSAGE-INTEGRITY"])


def build() -> tuple[udp_mux.UdpMux, dict[str, udp_mux.MuxEndpoint]]:
    mux = udp_mux.UdpMux.__new__(udp_mux.UdpMux)  # no socket, no loop: deliver() is the boundary
    mux.sock, mux.sockname, mux.port, mux.host = Sent(), ("127.0.0.1", 9), 9, "127.0.0.1"
    mux.loop = types.SimpleNamespace(call_soon=lambda *a: None, is_closed=lambda: True)
    mux.reader_type, mux.closed, mux.unmatched = None, False, 0
    mux._by_ufrag, mux._by_addr = {}, {}
    eps = {}
    for name in CREDENTIALS:
        protocol = ice.StunProtocol(Receiver(name))
        protocol.local_candidate = types.SimpleNamespace(component=1)
        eps[name] = mux.endpoint(protocol)
    return mux, eps


def test_one(data: bytes) -> None:
    mux, eps = build()
    for i, d in enumerate(frames(data, 16)):
        if not d:
            continue
        addr = ADDRESSES[d[0] % len(ADDRESSES)]
        body = d[1:]
        if d[0] & 0x80:  # the transport sends first (its own check): that address is learnt
            u = list(eps)[i % len(eps)]
            eps[u].sendto(body or b"\x00", addr)
            continue
        known = {u: set(ep.addresses) for u, ep in eps.items()}
        mux.deliver(body, addr)
        for u, ep in eps.items():
            new = ep.addresses - known[u]
            if new and not (new == {addr} and _signed_by(body, CREDENTIALS[u][1])):
                raise Finding(f"{u} learnt {new} from an unsigned or foreign datagram")
    owners: dict[tuple, str] = {}
    for u, ep in eps.items():
        if len(ep.addresses) > udp_mux.MAX_ADDRESSES:
            raise Finding(f"{u} has {len(ep.addresses)} addresses")
        for a in ep.addresses:
            if a in owners:
                raise Finding(f"{a} belongs to {owners[a]} and {u}")
            owners[a] = u
    for u in eps:
        eps[u].close()
    if mux._by_addr or mux._by_ufrag:
        raise Finding("closed transports left entries behind")


if __name__ == "__main__":
    main(test_one)
