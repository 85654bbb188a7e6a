"""Data channels through the SFU: chat and app messages a participant sends to its room.

A client opens data channels on its publish connection (labels `reliable` and `lossy`,
docs/protocol.md "Data channels"); each is both ways. What arrives on one is checked, rate-limited,
stamped with the sender's verified identity and relayed to the other participants' channels of the
same label. Sans-IO as far as aiortc allows: a channel is anything with `label`, `readyState`,
`bufferedAmount`, `send(str)`, `close()` and pyee's `on(event, handler)`, so the unit tests drive
this with stand-ins and the integration tests with aiortc's and browsers' channels.

`DataEndpoint` is one participant's side (its channels, its rate limits, what it sent and lost);
`DataRelay` is one room's (who is in it, the running message number, the chat history).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sfu.bucket import TokenBucket
from sfu.metrics import STATS

log = logging.getLogger("basement.data")

LABELS = ("reliable", "lossy")
CHAT_TOPIC = "chat"  # the topic whose room-wide reliable messages a late joiner is replayed
MAX_TOPIC_BYTES = 64
MAX_RECIPIENTS = 64
MAX_ID_CHARS = 64
# a lossy message is dropped as soon as this much waits on the recipient's channel: a state update
# that cannot leave now is stale by the time it could
LOSSY_BUFFERED_BYTES = 64 * 1024
DELIVERY_BYTES = 1200  # what one delivery of the room budget covers (about an SCTP chunk)
SENDER_SHARE = 4  # one sender may use 1/SENDER_SHARE of its room's delivery budget
REPLAY_EVERY_S = 5.0  # the chat history is replayed to one participant at most this often (bursts of 2)

__all__ = ["CHAT_TOPIC", "LABELS", "DataEndpoint", "DataLimits", "DataRelay", "configure_data"]


@dataclass(frozen=True)
class DataLimits:
    """Per-participant limits on data messages (settings `data_*`, docs/configuration.md)."""

    max_message_bytes: int = 16 * 1024  # one message as sent, UTF-8
    rate: float = 50.0  # messages per second, sustained
    burst: float = 150.0  # messages at once
    byte_rate: float = 1024 * 1024  # bytes per second, sustained
    byte_burst: float = 4 * 1024 * 1024
    max_buffered_bytes: int = 1024 * 1024  # waiting on one recipient's channel before it loses messages
    history: int = 50  # chat messages a room keeps for late joiners
    # deliveries per second in one room, everyone's together; a delivery is one message to one
    # recipient, and one of n bytes counts as ceil(n / DELIVERY_BYTES) (the SCTP chunks it becomes:
    # each is Python work). N senders at full rate would cost N x rate x (N - 1). One sender may use
    # at most a quarter of it, so two cannot starve the room.
    room_rate: float = 5000.0
    room_burst: float = 10000.0


_limits = DataLimits()


def configure_data(limits: DataLimits) -> None:
    """Process-wide: the limits every DataEndpoint and DataRelay made afterwards uses."""
    global _limits
    _limits = limits


def _encode(msg: dict[str, Any]) -> str:
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"))


class DataEndpoint:
    """One participant's data channels: what it sends is checked here, what the room sends it leaves here."""

    def __init__(self, participant_id: str, name: str, identity: str, limits: DataLimits | None = None,
                 clock: Callable[[], float] = time.monotonic, receives: bool = True) -> None:
        self.id, self.name, self.identity = participant_id, name, identity
        # False for a grant without `can_subscribe`: what the room says is not for it (it may still send)
        self.receives = receives
        self.limits = limits or _limits
        self.clock = clock
        self.channels: dict[str, Any] = {}  # label -> open channel
        self.relay: DataRelay | None = None
        self.messages = 0  # relayed from this participant (the session summary counts them)
        self.lost = 0  # reliable messages to it dropped since it was last told (`data_lost`)
        self._count = TokenBucket(self.limits.rate, self.limits.burst, clock)
        self._bytes = TokenBucket(self.limits.byte_rate, self.limits.byte_burst, clock)
        self.deliveries = TokenBucket(self.limits.room_rate / SENDER_SHARE, self.limits.room_burst / SENDER_SHARE,
                                      clock)  # its share of the room's budget
        self.replays = TokenBucket(1 / REPLAY_EVERY_S, 2, clock)
        self.closed = False

    # --- channels -------------------------------------------------------------------------------
    def attach(self, channel: Any) -> None:
        """A channel the client opened on its publish connection."""
        label = channel.label
        if self.closed or label not in LABELS or label in self.channels:
            STATS.drop("data_channel_refused")
            # (debug: a client can open channels in a loop; the counter and the SCTP guard bound it)
            log.debug("closing data channel %r of %s: the labels are %s, one each", str(label)[:32], self.id,
                      " and ".join(LABELS))
            channel.close()
            return
        self.channels[label] = channel

        @channel.on("message")
        def _message(message: Any) -> None:
            try:
                self.receive(channel, message)
            except Exception:  # aiortc's SCTP receive loop must never see our exception
                STATS.drop("internal_error")
                log.exception("data message from %s dropped after an internal error", self.id)

        @channel.on("close")
        def _closed() -> None:
            if self.channels.get(label) is channel:
                del self.channels[label]

        if label == "reliable" and self.relay is not None:
            self.relay.replay(self)

    def close(self) -> None:
        self.closed = True
        self.channels.clear()

    # --- from the participant -------------------------------------------------------------------
    def receive(self, channel: Any, message: Any) -> None:
        """One message the participant sent on `channel`: relayed, or refused with an error on it."""
        if isinstance(message, bytes):
            self._refuse(channel, "invalid_message", "binary messages are not relayed: send text, a JSON object "
                                                     "with type 'data' (docs/protocol.md)")
            return
        size = len(message.encode("utf-8", "surrogatepass"))  # (aiortc decoded it strictly: no surrogates)
        if size > self.limits.max_message_bytes:
            self._refuse(channel, "message_too_large",
                         f"message of {size} bytes; at most {self.limits.max_message_bytes} are relayed")
            return
        limited = ""
        if not self._count.take():
            limited = f"over {self.limits.rate:g} messages per second (bursts of {self.limits.burst:g}): not relayed"
        elif not self._bytes.take(size):
            limited = (f"over {self.limits.byte_rate:g} bytes per second (bursts of {self.limits.byte_burst:g}): "
                       "not relayed")
        try:
            msg = json.loads(message)
        except (ValueError, RecursionError) as e:
            problem = limited or f"not JSON: {str(e)[:80]}"
            self._refuse(channel, "rate_limited" if limited else "invalid_message", problem)
            return
        problem, ref = _problem(msg)
        if limited or problem:  # (parsed all the same, so that the error can name the message's id)
            self._refuse(channel, "rate_limited" if limited else "invalid_message", limited or problem, ref)
            return
        if self.relay is None:
            return  # leaving: the room is gone already (not relayed, not counted)
        over = self.relay.relay(self, channel.label, msg.get("topic", ""), msg["data"], msg.get("to") or [])
        if over:
            self._refuse(channel, "rate_limited", f"{over}: not relayed", ref)
            return
        self.messages += 1

    def _refuse(self, channel: Any, code: str, message: str, ref: Any = None) -> None:
        STATS.drop("data_refused")
        reply: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if ref is not None:
            reply["id"] = ref
        text = _encode(reply)
        # an error is lossy: a client flooding us does not get its flood's worth of errors queued
        self._send(channel, text, len(text.encode()), LOSSY_BUFFERED_BYTES)

    # --- to the participant ---------------------------------------------------------------------
    def deliver(self, label: str, text: str, size: int) -> None:
        """A message of the room (encoded once for every recipient) on this participant's channel
        of `label`, or its reliable one. Dropped, and counted, when too much waits there already."""
        channel = self.channels.get(label) or self.channels.get("reliable")
        if channel is None:
            return  # no channel open (yet): not a loss, it never could receive it
        if label == "lossy" or channel.label == "lossy":
            if not self._send(channel, text, size, LOSSY_BUFFERED_BYTES):
                STATS.drop("data_overflow")
            return
        notice = _encode({"type": "data_lost", "count": self.lost}) if self.lost else ""
        if channel.bufferedAmount + len(notice) + size > self.limits.max_buffered_bytes:
            self.lost += 1
            STATS.drop("data_overflow")
            return
        if notice and self._send(channel, notice, len(notice), self.limits.max_buffered_bytes):
            self.lost = 0
        if not self._send(channel, text, size, self.limits.max_buffered_bytes):
            self.lost += 1
            STATS.drop("data_overflow")

    def _send(self, channel: Any, text: str, size: int, limit: int) -> bool:
        if channel.readyState != "open" or channel.bufferedAmount + size > limit:
            return False
        try:
            channel.send(text)
        except Exception:  # closed meanwhile, or larger than the peer's a=max-message-size
            log.debug("data message to %s not sent", self.id, exc_info=True)
            return False
        return True


def _utf8_len(text: str) -> int:
    """Bytes of `text` as UTF-8, or -1 when it cannot be sent (a lone surrogate, from a JSON escape)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return -1


def _problem(msg: Any) -> tuple[str, Any]:
    """(what is wrong with a client's data message, its id if usable), or ("", id)."""
    if not isinstance(msg, dict):
        return "a data message is a JSON object", None
    ref = msg.get("id")
    if ref is not None and not (
            (isinstance(ref, str) and 0 <= _utf8_len(ref) <= MAX_ID_CHARS)
            or (isinstance(ref, int) and not isinstance(ref, bool) and abs(ref) < 2**53)):
        return f"id must be a string of at most {MAX_ID_CHARS} characters or an integer", None
    if msg.get("type") != "data":
        return "type must be 'data'", ref
    if not isinstance(msg.get("data"), str) or _utf8_len(msg["data"]) < 0:
        return "data must be a string (of Unicode text: no lone surrogate)", ref
    topic = msg.get("topic", "")
    if not isinstance(topic, str) or not 0 <= _utf8_len(topic) <= MAX_TOPIC_BYTES:
        return f"topic must be a string of at most {MAX_TOPIC_BYTES} bytes", ref
    to = msg.get("to")
    if to is not None and (not isinstance(to, list) or len(to) > MAX_RECIPIENTS
                           or not all(isinstance(p, str) and 0 <= _utf8_len(p) <= MAX_ID_CHARS for p in to)):
        return f"to must be a list of at most {MAX_RECIPIENTS} participant ids", ref
    return "", ref


class DataRelay:
    """One room's data messages: relayed to its participants' endpoints, the chat history kept."""

    def __init__(self, limits: DataLimits | None = None, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or _limits
        self.clock = clock
        self.endpoints: dict[str, DataEndpoint] = {}
        self.seq = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=max(0, self.limits.history))
        self._budget = TokenBucket(self.limits.room_rate, self.limits.room_burst, monotonic)
        # a room spanning nodes (sfu.cascade): how many of `to` (all: []) are on other nodes, and
        # where a message for them goes; the sender pays for them here, as for local recipients
        self.remote_recipients: Callable[[list[str]], int] = lambda to: 0
        self.forward: Callable[[str, dict[str, Any]], None] | None = None

    def add(self, endpoint: DataEndpoint) -> None:
        endpoint.relay = self
        self.endpoints[endpoint.id] = endpoint

    def remove(self, endpoint: DataEndpoint) -> None:
        if self.endpoints.get(endpoint.id) is endpoint:
            del self.endpoints[endpoint.id]
        endpoint.relay = None

    def relay(self, sender: DataEndpoint, label: str, topic: str, data: str, to: list[str]) -> str:
        """Relay one message; "" when sent, else why nothing was (over a delivery budget)."""
        if to:
            to = list(dict.fromkeys(to))
            targets = [self.endpoints[p] for p in to if p in self.endpoints and p != sender.id]
        else:
            targets = [e for e in self.endpoints.values() if e is not sender]
        targets = [e for e in targets if e.receives]
        out: dict[str, Any] = {"type": "data", "seq": self.seq + 1, "from": sender.id, "name": sender.name,
                               "identity": sender.identity, "topic": topic, "data": data,
                               "at": int(self.clock() * 1000)}
        if to:
            out["to"] = to
        text = _encode(out)
        size = len(text.encode("utf-8"))
        remote = self.remote_recipients(to) if self.forward is not None else 0
        cost = (len(targets) + remote) * -(-size // DELIVERY_BYTES)
        if cost:
            if not sender.deliveries.take(cost):
                STATS.drop("data_room_budget")
                return (f"over your share of the room's data budget ({self.limits.room_rate / SENDER_SHARE:g} "
                        f"deliveries per second; a delivery is a message of up to {DELIVERY_BYTES} bytes to one "
                        "recipient)")
            if not self._budget.take(cost):
                sender.deliveries.refund(cost)
                STATS.drop("data_room_budget")
                return (f"the room is over its data budget ({self.limits.room_rate:g} deliveries per second, "
                        "shared by everyone)")
        self.seq += 1
        for endpoint in targets:
            endpoint.deliver(label, text, size)
        if label == "reliable" and topic == CHAT_TOPIC and not to:
            self.history.append(out)
        if remote and self.forward is not None:
            self.forward(label, out)
        return ""

    def deliver_relayed(self, label: str, msg: dict[str, Any]) -> None:
        """A message a participant on another node of the room sent (it paid for it there): to the
        recipients here, and into the chat history, as a local one would go."""
        to = msg.get("to") or []
        targets = [self.endpoints[p] for p in to if p in self.endpoints] if to else list(self.endpoints.values())
        text = _encode(msg)
        size = len(text.encode("utf-8"))
        for endpoint in targets:
            if endpoint.receives and endpoint.id != msg.get("from"):
                endpoint.deliver(label, text, size)
        if label == "reliable" and msg.get("topic") == CHAT_TOPIC and not to:
            self.history.append(msg)

    def replay(self, endpoint: DataEndpoint) -> None:
        """The chat history, to a participant whose reliable channel just opened: at most every
        REPLAY_EVERY_S per participant, and paid from the room's budget like any delivery (a client
        reopening its channel in a loop must not turn 50 messages of 16 KiB into a stream)."""
        if not endpoint.receives:
            return
        texts = [_encode({**msg, "history": True}) for msg in self.history]
        sizes = [len(t.encode("utf-8")) for t in texts]
        cost = sum(-(-n // DELIVERY_BYTES) for n in sizes)
        if cost and (not endpoint.replays.take() or not self._budget.take(cost)):
            STATS.drop("data_history_refused")
            return
        for text, size in zip(texts, sizes):
            endpoint.deliver("reliable", text, size)
