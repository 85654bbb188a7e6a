"""NativeReceive: the receive half of the native data path.

Once a transport's DTLS handshake is done, its SRTP and SRTCP no longer go the way aiortc takes
them: aioice parses every datagram as STUN first (an exception per media packet), queues it, wakes
the DTLS task, which unprotects with pylibsrtp and awaits the handler. Here, the datagram is
classified by its first byte where it enters the ICE connection (RFC 7983: 128-191 is RTP/RTCP),
unprotected with the native `SrtpSession` keyed from the same DTLS exporter, and handed to the
transport's handlers synchronously. STUN and DTLS (and anything else) still take aioice's and
aiortc's path, so ICE consent, DTLS alerts and close work as before.

Where the connection's socket is one of ours (`sfu.media_socket`), the classification and unprotect
happen in its reader as each datagram is read (`MediaSocket.attach`); sockets that are not (a TURN
relay's, tests' stand-ins) are hooked at the protocol instead.

Only the native data path installs this; the pure-Python path keeps aiortc's receive path, which
stays its twin (the same handlers see the same packets, the tests run on both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sfu.metrics import STATS


class NativeReceive:
    """RTP/RTCP of one ICE connection: unprotected natively and delivered without a queue hop."""

    def __init__(self, connection: Any, session: Any, error_type: type[Exception],
                 on_rtp: Callable[[bytes], None], on_rtcp: Callable[[bytes], None]) -> None:
        self.session = session
        self._unprotected = 0
        self._refused = 0  # failed authentication, replayed, or over the session's SSRC limit
        self._error = error_type
        self._on_rtp = on_rtp
        self._on_rtcp = on_rtcp
        self._connection = connection
        self._original = connection.data_received
        # aioice's Connection.data_received(data, component) is where every non-STUN datagram of the
        # connection arrives (from whichever local candidate's socket); replaced on the instance
        connection.data_received = self._data_received
        self._protocols: list[tuple[Any, Any]] = []
        self._readers: list[Any] = []
        for protocol in getattr(connection, "_protocols", ()):
            reader = getattr(getattr(protocol, "transport", None), "reader", None)
            if reader is not None:  # our socket: its reader unprotects as it reads
                reader.attach(session, on_rtp, on_rtcp, STATS.drop)
                self._readers.append(reader)
            elif getattr(protocol, "receiver", None) is connection and "datagram_received" not in vars(protocol):
                # skip aioice's STUN parse attempt for media: classify by the first byte first
                self._protocols.append((protocol, protocol.datagram_received))
                protocol.datagram_received = self._datagram_received(protocol.datagram_received)

    @property
    def unprotected(self) -> int:
        return self._unprotected + sum(r.unprotected for r in self._readers)

    @property
    def refused(self) -> int:
        return self._refused + sum(r.refused for r in self._readers)

    def _datagram_received(self, original: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        deliver = self._deliver

        def datagram_received(data: bytes, addr: Any) -> None:
            if data and 127 < data[0] < 192:
                deliver(data)
            else:
                original(data, addr)

        return datagram_received

    def _data_received(self, data: bytes, component: int) -> None:
        if data and 127 < data[0] < 192:
            self._deliver(data)
        else:
            self._original(data, component)

    def _deliver(self, data: bytes) -> None:
        # RFC 5761: RTCP packet types 192-223 in the second byte (aiortc's is_rtcp: 192-208)
        rtcp = len(data) >= 2 and 191 < data[1] < 209
        try:
            plain = self.session.unprotect_rtcp(data) if rtcp else self.session.unprotect(data)
        except self._error:
            self._refused += 1
            STATS.drop("srtp_refused")
            return
        except ValueError:  # too short or not RTP at all
            self._refused += 1
            STATS.drop("srtp_refused")
            return
        self._unprotected += 1
        if rtcp:
            self._on_rtcp(plain)
        else:
            self._on_rtp(plain)

    def close(self) -> None:
        """Give the connection back to aioice's own receive path."""
        if vars(self._connection).get("data_received") == self._data_received:
            del self._connection.data_received
        for protocol, _ in self._protocols:
            vars(protocol).pop("datagram_received", None)
        self._protocols.clear()
        for reader in self._readers:
            reader.detach()
