"""The SIP service on UDP and TCP (RFC 3261; TCP's framing: signalling.sip.stream): dial-in to
rooms. `INVITE sip:<room>@host` from a phone joins the room as a participant named by the From
display name (signalling.sip.call), `BYE` leaves it.

Server transactions (§17.2): a retransmitted request gets the response it got before, a 200 OK to
an INVITE is retransmitted (T1 doubling to T2) until its ACK comes, for at most 64 x T1. Every
request is answered: a malformed one 400 with the reason in a Warning header (or, when not even
its Via, From, To, Call-ID and CSeq can be read, a counted drop), a room nobody is in and nobody
configured 404, an offer without G.711 488, one call too many 486, an address sending faster than
its rate 503 with Retry-After (and past twice that, a counted drop), any other method 405. State is bounded:
transactions, dialogs and per-address rates each have a ceiling.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from signalling.access.gating import GateError, validate_room_name
from signalling.sip.call import Call, CallError
from signalling.sip.message import (
    COMPACT,
    NameAddr,
    Request,
    Response,
    SipError,
    is_keepalive,
    parse,
    parse_name_addr,
    response,
    split_values,
)
from signalling.sip.sdp import parse_offer
from signalling.sip.stream import StreamListener

log = logging.getLogger("basement.sip")

T1 = 0.5
T2 = 4.0
TIMER_H = 64 * T1  # how long a 200 OK waits for its ACK; how long a transaction is remembered
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"
MAX_TRANSACTIONS = 4096
MAX_ADDRESSES = 4096  # per-address rate state kept (the least recently seen forgotten)
_ESSENTIAL = ("via", "from", "to", "call-id", "cseq")


@dataclass(frozen=True)
class Peer:
    """Where a request came from and how to answer it: a UDP address, or a stream connection
    (signalling.sip.stream), whose answers go back on it."""

    addr: tuple[str, int]
    send: Callable[[bytes], None]
    stream: bool = False


@dataclass
class _Transaction:
    answer: bytes | None  # the last response sent (None: the request is being worked on)
    expires: float
    task: asyncio.Task | None = None  # an INVITE's call being set up
    final: bool = False
    request: Request | None = None  # an INVITE's (its 487 is built from it, not from the CANCEL)
    acked: asyncio.Event | None = None  # an INVITE's non-2xx final: set by its ACK (Timer G stops)


@dataclass
class _Dialog:
    call: Call
    invite: Request
    to_tag: str
    ok: bytes
    peer: Peer
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens, self.at = tokens, at


class SipService(asyncio.DatagramProtocol):
    def __init__(self, server_url: str, host: str, port: int, room_open: Callable[[str], Awaitable[bool]],
                 max_calls: int = 50, requests_per_s: float = 20.0, ssl: Any = True) -> None:
        self.server_url, self.host, self.port = server_url, host, port
        self.room_open = room_open
        self.max_calls, self.rate = max_calls, requests_per_s
        self.ssl = ssl
        self.transport: asyncio.DatagramTransport | None = None
        self.tcp: StreamListener | None = None
        self.transactions: OrderedDict[tuple[str, str, str], _Transaction] = OrderedDict()
        self.dialogs: dict[str, _Dialog] = {}  # Call-ID -> the call
        self.byes: dict[str, asyncio.Event] = {}  # Call-ID -> set when the BYE we sent is answered
        self.tasks: set[asyncio.Task] = set()  # BYEs being sent, calls being stopped
        self.buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.stats: Counter[str] = Counter()  # requests by method, answers by status, drops by reason
        self.now = 0.0  # the clock of the datagram being handled

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))
        self.port = self.transport.get_extra_info("sockname")[1]
        self.tcp = StreamListener(self)
        await self.tcp.start(self.host, self.port)
        log.info("SIP on udp and tcp %s:%d", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self.tcp is not None:
            await self.tcp.stop()
        for d in list(self.dialogs.values()):
            await d.call.stop("server stopping")  # (each phone is sent a BYE)
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=2 * T1)
        for task in list(self.tasks):
            task.cancel()
        for t in self.transactions.values():
            if t.task is not None:
                t.task.cancel()
        if self.transport is not None:
            self.transport.close()

    # --- datagrams in -----------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self._datagram(data, addr, time.monotonic())

    def _datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        transport = self.transport
        self.handle(data, Peer(addr, lambda d: transport.sendto(d, addr) if transport is not None else None), now)

    def handle(self, data: bytes, peer: Peer, now: float) -> None:
        """One message from `peer` (a datagram, or one framed from a stream connection)."""
        try:
            self._handle(data, peer, now)
        except Exception:  # noqa: BLE001 - one message must never stop the service
            self.stats["drop:internal_error"] += 1
            log.exception("SIP: a message from %s failed", peer.addr[0])

    def _handle(self, data: bytes, peer: Peer, now: float) -> None:
        self.now = now
        if is_keepalive(data):
            if peer.stream:
                peer.send(b"\r\n")  # RFC 5626 §3.5.1: a double CRLF ping gets a CRLF pong
            return
        pace = self._pace(peer.addr[0], now)
        if pace == "drop":
            return
        try:
            msg = parse(data, stream=peer.stream)
        except SipError as e:
            self.stats["drop:malformed"] += 1
            answer = _refusal(data, e.status, e.reason)
            if answer is not None:
                peer.send(answer)
            return
        if isinstance(msg, Response):
            bye = self.byes.get(msg.call_id)
            if bye is not None and msg.cseq_method == "BYE" and msg.status >= 200:
                bye.set()  # our BYE was answered: no more retransmissions
            else:
                self.stats["drop:response"] += 1
            return
        self.stats[f"request:{msg.method}"] += 1
        if pace == "busy":
            if msg.method != "ACK":
                self._answer(msg, peer, None, 503, "Service Unavailable", [("Retry-After", "1")],
                             warning=f"more than {self.rate:g} requests a second from {peer.addr[0]}")
            return
        top = msg.vias[0]
        branch = top.branch or ""
        if not branch.startswith("z9hG4bK"):
            # an RFC 2543 client's branch (or none) does not name a transaction: its Call-ID and
            # CSeq number do (§17.2.3)
            branch = f"{branch}|{msg.call_id}|{msg.cseq}"
        key = (branch, f"{top.host}:{top.port}", "INVITE" if msg.method in ("ACK", "CANCEL") else msg.method)
        if msg.method not in ("ACK", "CANCEL"):
            known = self.transactions.get(key)
            if known is not None:  # a retransmission: the same answer again (or, while working on it, none)
                if known.answer is not None:
                    peer.send(known.answer)
                return
        self._purge(now)
        if msg.method == "ACK":
            self._ack(msg, key)
        elif len(self.transactions) >= MAX_TRANSACTIONS:
            self._answer(msg, peer, None, 503, "Service Unavailable", [("Retry-After", "5")])
        elif msg.method == "CANCEL":
            self._cancel(msg, key, peer)
        elif msg.max_forwards == 0 and msg.method != "OPTIONS":
            self._answer(msg, peer, key, 483, "Too Many Hops")
        elif msg.method == "OPTIONS":
            self._answer(msg, peer, key, 200, "OK", [("Allow", ALLOW), ("Accept", "application/sdp")])
        elif msg.method == "INVITE":
            self._invite(msg, peer, key, now)
        elif msg.method == "BYE":
            self._bye(msg, peer, key)
        else:
            self._answer(msg, peer, key, 405, "Method Not Allowed", [("Allow", ALLOW)])

    def _pace(self, ip: str, now: float) -> str:
        """The address's token bucket (its rate, a burst of twice it): "ok"; "busy" past it (the
        request is answered 503 with Retry-After); "drop" past twice it (counted, not answered:
        answering a flood would make us its amplifier)."""
        b = self.buckets.get(ip)
        if b is None:
            b = self.buckets[ip] = _Bucket(2 * self.rate, now)
            if len(self.buckets) > MAX_ADDRESSES:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(ip)
            b.tokens = min(2 * self.rate, b.tokens + (now - b.at) * self.rate)
            b.at = now
        if b.tokens <= -2 * self.rate:
            self.stats["drop:rate"] += 1
            return "drop"
        b.tokens -= 1
        return "ok" if b.tokens >= 0 else "busy"

    # --- methods ------------------------------------------------------------------------------
    def _invite(self, msg: Request, peer: Peer, key: tuple[str, str, str], now: float) -> None:
        if msg.to.tag is not None:  # a re-INVITE (a new address, hold, a session refresh)
            d = self.dialogs.get(msg.call_id)
            if d is None or d.to_tag != msg.to.tag:
                self._answer(msg, peer, key, 481, "Call/Transaction Does Not Exist")
                return
            try:
                sdp = d.call.reoffer(parse_offer(msg.body)) if msg.body else d.ok.partition(b"\r\n\r\n")[2]
            except (SipError, CallError) as e:
                self._answer(msg, peer, key, e.status, "Not Acceptable Here", warning=str(e), to_tag=d.to_tag)
                return
            self._answer(msg, peer, key, 200, "OK", [("Contact", self._contact(d.call.room, peer)),
                                                      ("Content-Type", "application/sdp")], body=sdp, to_tag=d.to_tag)
            return
        if msg.call_id in self.dialogs or any(t.request is not None and t.request.call_id == msg.call_id
                                              and not t.final for t in self.transactions.values()):
            # §8.2.2.2: another INVITE of a call we have (or are setting up), not its retransmission
            self._answer(msg, peer, key, 482, "Loop Detected", warning=f"Call-ID {msg.call_id} is in use")
            return
        room = msg.uri.user if msg.uri is not None else None
        try:
            validate_room_name(room or "")
        except GateError:
            self._answer(msg, peer, key, 404, "Not Found", warning=f"no room {room!r}: dial sip:<room>@{self.host}")
            return
        ctype = (msg.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not msg.body or ctype != "application/sdp":
            self._answer(msg, peer, key, 488, "Not Acceptable Here", warning="an INVITE needs an SDP offer "
                         "(offerless INVITEs are not supported)")
            return
        try:
            offer = parse_offer(msg.body)
        except SipError as e:
            self._answer(msg, peer, key, e.status, "Not Acceptable Here", warning=e.reason)
            return
        if offer.choose() is None:
            self._answer(msg, peer, key, 488, "Not Acceptable Here", warning="no codec in common: PCMU or PCMA")
            return
        calls = len(self.dialogs) + sum(1 for t in self.transactions.values() if t.task is not None and not t.final)
        if calls >= self.max_calls:
            self._answer(msg, peer, key, 486, "Busy Here", warning=f"{self.max_calls} calls at once")
            return
        trying = response(msg, 100, "Trying", source=peer.addr).to_bytes()
        txn = self.transactions[key] = _Transaction(trying, now + TIMER_H, request=msg)
        peer.send(trying)
        name = msg.from_.display or (msg.from_.uri.user or "phone")
        txn.task = asyncio.ensure_future(self._connect(msg, peer, key, txn, room or "", name[:64], offer))

    async def _connect(self, msg: Request, peer: Peer, key: tuple[str, str, str], txn: _Transaction,
                       room: str, name: str, offer: Any) -> None:
        to_tag = secrets.token_hex(8)
        try:
            if not await self.room_open(room):
                self._final(txn, msg, peer, 404, "Not Found", warning=f"nobody is in room {room!r}")
                return
            call = Call(self.server_url, room, name, offer, self.host, ssl=self.ssl, on_end=self._ended)
            sdp = await call.start()  # (a failure stops the call: nothing of it is left)
        except CallError as e:
            self._final(txn, msg, peer, e.status, e.reason, warning=str(e.__cause__ or e))
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the phone gets its answer whatever failed here
            log.exception("SIP: setting up call %s failed", msg.call_id)
            self._final(txn, msg, peer, 500, "Server Internal Error", warning=type(e).__name__)
            return
        # §12.1.1: the 2xx carries the Record-Route it came with, so the ACK and BYE take the same way
        routes = [("Record-Route", v) for v in msg.headers.all("Record-Route")]
        ok = response(msg, 200, "OK", to_tag=to_tag, headers=[*routes, ("Contact", self._contact(room, peer)),
                                                              ("Allow", ALLOW), ("Content-Type", "application/sdp")],
                      body=sdp, source=peer.addr).to_bytes()
        d = _Dialog(call, msg, to_tag, ok, peer)
        self.dialogs[msg.call_id] = d
        txn.answer, txn.final = ok, True
        self.stats["answer:200"] += 1
        peer.send(ok)
        d.task = asyncio.ensure_future(self._until_acked(d))

    async def _until_acked(self, d: _Dialog) -> None:
        """§13.3.1.4: the 200 OK again at T1, 2 T1 … up to T2, until the ACK; none in 64 T1: hang up."""
        interval, waited = T1, 0.0
        while waited < TIMER_H:
            try:
                await asyncio.wait_for(d.acked.wait(), interval)
                return
            except TimeoutError:
                waited += interval
                interval = min(2 * interval, T2)
                d.peer.send(d.ok)
        log.info("SIP: no ACK for call %s in %.0f s: hanging up", d.invite.call_id, TIMER_H)
        await d.call.stop("no ACK")  # (-> _ended: the dialog goes, and the phone gets a BYE)

    def _ack(self, msg: Request, key: tuple[str, str, str]) -> None:
        d = self.dialogs.get(msg.call_id)
        txn = self.transactions.get(key)
        if d is not None and msg.to.tag == d.to_tag:
            d.acked.set()
        elif txn is not None and txn.acked is not None:
            txn.acked.set()  # the ACK of a failure answer (same branch as its INVITE, §17.1.1.3)
        else:
            self.stats["drop:ack_unmatched"] += 1

    def _bye(self, msg: Request, peer: Peer, key: tuple[str, str, str]) -> None:
        d = self.dialogs.get(msg.call_id)
        if d is None or msg.to.tag != d.to_tag and msg.from_.tag != d.to_tag:
            self._answer(msg, peer, key, 481, "Call/Transaction Does Not Exist")
            return
        self.dialogs.pop(msg.call_id, None)
        d.acked.set()
        self._answer(msg, peer, key, 200, "OK")
        self._spawn(d.call.stop("hung up"))

    def _cancel(self, msg: Request, key: tuple[str, str, str], peer: Peer) -> None:
        txn = self.transactions.get(key)
        cancel_key = (key[0], key[1], "CANCEL")
        if txn is None:
            self._answer(msg, peer, cancel_key, 481, "Call/Transaction Does Not Exist")
            return
        self._answer(msg, peer, cancel_key, 200, "OK")
        if not txn.final and txn.task is not None and txn.request is not None:  # §9.2: the INVITE ends 487
            txn.task.cancel()
            self._final(txn, txn.request, peer, 487, "Request Terminated")

    def _ended(self, call: Call, reason: str) -> None:
        """A call ended: unless the phone hung up, the phone is told (a BYE)."""
        for cid, d in list(self.dialogs.items()):
            if d.call is call:
                del self.dialogs[cid]
                d.acked.set()
                if reason != "hung up":
                    log.info("SIP call %s ended: %s; sending BYE", cid, reason)
                    self._spawn(self._send_bye(d))

    async def _send_bye(self, d: _Dialog) -> None:
        """Our BYE in the call's dialog (§15.1.1), retransmitted at T1 doubling until answered, four
        times at most: the call is over here whatever the phone answers."""
        inv = d.invite
        contact = inv.headers.get("Contact")
        target = str(inv.from_.uri)
        if contact:
            try:
                target = str(parse_name_addr(split_values(contact)[0], "Contact").uri)
            except SipError:
                pass
        host = f"[{self.host}]" if ":" in self.host else self.host
        to = inv.headers.get("From") or ""
        ours = NameAddr(inv.to.display, inv.to.uri, {**inv.to.params, "tag": d.to_tag})
        lines = [f"BYE {target} SIP/2.0",
                 f"Via: SIP/2.0/{'TCP' if d.peer.stream else 'UDP'} {host}:{self.port};branch=z9hG4bK"
                 f"{secrets.token_hex(8)};rport",
                 *(f"Route: {v}" for v in inv.headers.all("Record-Route")),
                 "Max-Forwards: 70", f"From: {ours}", f"To: {to}", f"Call-ID: {inv.call_id}", "CSeq: 1 BYE",
                 "Content-Length: 0"]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        answered = self.byes[inv.call_id] = asyncio.Event()
        try:
            interval = T1
            for _ in range(4):
                d.peer.send(data)
                try:
                    await asyncio.wait_for(answered.wait(), interval)
                    return
                except TimeoutError:
                    interval = min(2 * interval, T2)
        finally:
            if self.byes.get(inv.call_id) is answered:
                del self.byes[inv.call_id]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- answers ------------------------------------------------------------------------------
    def _contact(self, room: str, peer: Peer) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"<sip:{room}@{host}:{self.port}{';transport=tcp' if peer.stream else ''}>"

    def _answer(self, msg: Request, peer: Peer, key: tuple[str, str, str] | None, status: int, reason: str,
                headers: list[tuple[str, str]] | None = None, body: bytes = b"", warning: str | None = None,
                to_tag: str | None = None) -> None:
        extra = list(headers or [])
        if warning:
            extra.append(("Warning", _warning(warning)))
        tag = to_tag if to_tag is not None else (secrets.token_hex(8) if status >= 200 else None)
        data = response(msg, status, reason, to_tag=tag, headers=extra, body=body, source=peer.addr).to_bytes()
        if key is not None:
            self.transactions[key] = _Transaction(data, self.now + TIMER_H, final=status >= 200)
        self.stats[f"answer:{status}"] += 1
        peer.send(data)

    def _final(self, txn: _Transaction, msg: Request, peer: Peer, status: int, reason: str,
               warning: str | None = None) -> None:
        """An INVITE's failure answer; over UDP again at T1 doubling to T2 until its ACK (Timer G,
        §17.2.1: after a 100 Trying the phone no longer retransmits, so a lost answer would leave it
        waiting)."""
        extra = [("Warning", _warning(warning))] if warning else []
        data = response(msg, status, reason, to_tag=secrets.token_hex(8), headers=extra, source=peer.addr).to_bytes()
        txn.answer, txn.final = data, True
        self.stats[f"answer:{status}"] += 1
        peer.send(data)
        if not peer.stream:
            txn.acked = asyncio.Event()
            self._spawn(self._until_failure_acked(txn, data, peer))

    async def _until_failure_acked(self, txn: _Transaction, data: bytes, peer: Peer) -> None:
        interval, waited = T1, 0.0
        while waited < TIMER_H and txn.acked is not None and not txn.acked.is_set():
            try:
                await asyncio.wait_for(txn.acked.wait(), interval)
            except TimeoutError:
                waited += interval
                interval = min(2 * interval, T2)
                peer.send(data)

    def _purge(self, now: float) -> None:
        """Forget the transactions past their time, oldest first (one whose call is still being set
        up stays, and does not hold back those behind it)."""
        for key, txn in list(self.transactions.items()):
            if txn.expires > now:
                return
            if txn.task is None or txn.task.done():
                del self.transactions[key]


def _warning(text: str) -> str:
    """A Warning header's value (§20.43): code 399 (miscellaneous), our agent, the text quoted."""
    clean = re.sub(r'[^\x20-\x7e]|["\\]', "?", text)[:200]
    return f'399 basement "{clean}"'


def _refusal(data: bytes, status: int, reason: str) -> bytes | None:
    """400 (or the status the parser named) to a request that did not parse, when its Via, From,
    To, Call-ID and CSeq lines can still be read to address the answer; else None (a counted drop)."""
    if data[:4] == b"SIP/":
        return None  # a response: never answered
    try:
        head = data.partition(b"\r\n\r\n")[0].decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = head.split("\r\n")
    if len(lines) < 2 or " " not in lines[0]:
        return None
    kept: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        low = name.strip().lower()
        low = COMPACT.get(low, low).lower() if len(low) == 1 else low
        if colon and low in _ESSENTIAL and value.strip() and len(line) < 1024:
            kept.setdefault(low, []).append(f"{name.strip()}: {value.strip()}")
    if any(h not in kept for h in _ESSENTIAL) or any("\r" in v or "\n" in v for vs in kept.values() for v in vs):
        return None
    phrase = {400: "Bad Request", 413: "Request Entity Too Large", 416: "Unsupported URI Scheme",
              505: "Version Not Supported", 513: "Message Too Large"}.get(status, "Bad Request")
    out = [f"SIP/2.0 {status} {phrase}", *(v for h in _ESSENTIAL for v in kept[h]),
           f"Warning: {_warning(reason)}", "Content-Length: 0"]
    return ("\r\n".join(out) + "\r\n\r\n").encode()
