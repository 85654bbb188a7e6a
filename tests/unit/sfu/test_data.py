"""sfu/data.py without a network: DataEndpoint and DataRelay driven with stand-in channels.

The stand-in has what the relay uses of aiortc's RTCDataChannel (label, readyState, bufferedAmount,
send, close, pyee's on); `bufferedAmount` grows with what is sent until the test "acknowledges" it,
which is how a slow or stalled receiver looks from the SFU.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from sfu.data import LOSSY_BUFFERED_BYTES, DataEndpoint, DataLimits, DataRelay
from sfu.metrics import STATS


class Channel:
    def __init__(self, label: str = "reliable") -> None:
        self.label = label
        self.readyState = "open"
        self.bufferedAmount = 0
        self.sent: list[dict[str, Any]] = []
        self.handlers: dict[str, Any] = {}
        self.closed = False

    def on(self, event: str, handler: Any = None) -> Any:
        def register(f: Any) -> Any:
            self.handlers[event] = f
            return f
        return register(handler) if handler is not None else register

    def send(self, text: str) -> None:
        self.bufferedAmount += len(text.encode())
        self.sent.append(json.loads(text))

    def close(self) -> None:
        self.closed = True
        self.readyState = "closed"
        if "close" in self.handlers:
            self.handlers["close"]()

    def message(self, text: Any) -> None:  # what the client sends
        self.handlers["message"](text)

    def acknowledge(self) -> None:
        self.bufferedAmount = 0

    def data(self) -> list[str]:
        return [m["data"] for m in self.sent if m["type"] == "data"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def room(*names: str, limits: DataLimits | None = None, clock: Clock | None = None, budget_clock: bool = False):
    """`budget_clock`: the room's delivery budget refills by `clock` too (else by the real one)."""
    clock = clock or Clock()
    relay = DataRelay(limits or DataLimits(), clock=clock, monotonic=clock if budget_clock else time.monotonic)
    out = []
    for name in names:
        ep = DataEndpoint(f"PA_{name}", name, f"guest-{name}", limits or DataLimits(), clock=clock)
        relay.add(ep)
        ch = Channel()
        ep.attach(ch)
        out.append((ep, ch))
    return relay, out


def send(ch: Channel, data: str, **fields: Any) -> None:
    ch.message(json.dumps({"type": "data", "data": data, **fields}))


def test_relayed_to_everyone_else_once_encoded_with_the_senders_identity():
    relay, [(a, ach), (b, bch), (c, cch)] = room("a", "b", "c")
    send(ach, "hi", topic="chat")
    assert ach.sent == []
    assert bch.sent == cch.sent
    (msg,) = bch.sent
    assert {k: msg[k] for k in ("type", "seq", "from", "name", "identity", "topic", "data", "at")} == {
        "type": "data", "seq": 1, "from": "PA_a", "name": "a", "identity": "guest-a", "topic": "chat",
        "data": "hi", "at": 100000}
    assert a.messages == 1 and b.messages == 0


def test_named_recipients_deduplicated_and_never_the_sender():
    relay, [(a, ach), (b, bch), (c, cch)] = room("a", "b", "c")
    send(ach, "x", to=["PA_b", "PA_b", "PA_a", "PA_gone"])
    assert bch.data() == ["x"] and cch.sent == [] and ach.sent == []
    assert bch.sent[0]["to"] == ["PA_b", "PA_a", "PA_gone"]


def test_a_stalled_receiver_loses_reliable_messages_counted_and_is_told_once_it_drains():
    limits = DataLimits(max_buffered_bytes=2000)
    relay, [(a, ach), (b, bch), (c, cch)] = room("a", "b", "c", limits=limits)
    before = STATS.dropped.get("data_overflow", 0)
    for i in range(40):
        send(ach, f"m{i:02}" + "." * 100)
        cch.acknowledge()  # c keeps up, b never acknowledges
    assert len(cch.data()) == 40
    kept = len(bch.data())
    assert 0 < kept < 40 and b.lost == 40 - kept
    assert STATS.dropped["data_overflow"] - before == 40 - kept
    bch.acknowledge()
    send(ach, "after")
    assert bch.sent[-2] == {"type": "data_lost", "count": 40 - kept}
    assert bch.data()[-1] == "after" and b.lost == 0


def test_lossy_messages_are_dropped_early_and_not_reported_as_lost():
    relay, [(a, ach), (b, bch)] = room("a", "b")
    lossy_a, lossy_b = Channel("lossy"), Channel("lossy")
    a.attach(lossy_a)
    b.attach(lossy_b)
    lossy_b.bufferedAmount = LOSSY_BUFFERED_BYTES
    lossy_a.message(json.dumps({"type": "data", "data": "cursor"}))
    assert lossy_b.sent == [] and b.lost == 0
    lossy_b.acknowledge()
    lossy_a.message(json.dumps({"type": "data", "data": "cursor2"}))
    assert lossy_b.data() == ["cursor2"] and bch.sent == []


def test_a_lossy_message_to_someone_without_a_lossy_channel_goes_on_its_reliable_one():
    relay, [(a, ach), (b, bch)] = room("a", "b")
    lossy_a = Channel("lossy")
    a.attach(lossy_a)
    lossy_a.message(json.dumps({"type": "data", "data": "cursor"}))
    assert bch.data() == ["cursor"]


def test_only_one_channel_per_label_and_only_the_two_labels():
    relay, [(a, ach)] = room("a")
    second, other = Channel("reliable"), Channel("video")
    a.attach(second)
    a.attach(other)
    assert second.closed and other.closed and a.channels == {"reliable": ach}
    ach.close()
    assert a.channels == {}
    again = Channel("reliable")
    a.attach(again)
    assert a.channels == {"reliable": again}


def test_history_is_the_last_chat_messages_to_the_whole_room_replayed_first():
    relay, [(a, ach), (b, bch)] = room("a", "b", limits=DataLimits(history=3))
    for i in range(5):
        send(ach, f"c{i}", topic="chat")
    send(ach, "direct", topic="chat", to=["PA_b"])
    send(ach, "state", topic="cursor")
    late = DataEndpoint("PA_late", "late", "guest-late", clock=Clock())
    relay.add(late)
    ch = Channel()
    late.attach(ch)
    assert [(m["data"], m["history"]) for m in ch.sent] == [("c2", True), ("c3", True), ("c4", True)]
    send(ach, "live", topic="chat")
    assert ch.sent[-1]["data"] == "live" and "history" not in ch.sent[-1]


def test_a_participant_without_can_subscribe_sends_but_receives_nothing():
    relay, [(a, ach), (b, bch)] = room("a", "b")
    send(ach, "early", topic="chat")
    mute = DataEndpoint("PA_pub", "pub", "guest-pub", clock=Clock(), receives=False)
    relay.add(mute)
    ch = Channel()
    mute.attach(ch)
    assert ch.sent == []  # no history either
    send(ach, "all", topic="chat")
    send(bch, "named", to=["PA_pub", "PA_a"])
    assert ch.sent == [] and ach.data() == ["named"]
    send(ch, "from the publisher", topic="chat")
    assert ach.data()[-1] == bch.data()[-1] == "from the publisher" and mute.messages == 1


def test_no_history_when_it_is_off():
    relay, [(a, ach)] = room("a", limits=DataLimits(history=0))
    send(ach, "c", topic="chat")
    assert list(relay.history) == []


def test_rate_limits_refill_with_time():
    clock = Clock()
    relay, [(a, ach), (b, bch)] = room("a", "b", limits=DataLimits(rate=10, burst=5), clock=clock)
    for i in range(8):
        send(ach, str(i), id=i)
    assert bch.data() == ["0", "1", "2", "3", "4"]
    assert [(e["code"], e["id"]) for e in ach.sent] == [("rate_limited", 5), ("rate_limited", 6), ("rate_limited", 7)]
    clock.now += 0.2  # two more at 10 per second
    for i in range(8, 11):
        send(ach, str(i))
    assert bch.data()[5:] == ["8", "9"]


def test_byte_rate_limit():
    clock = Clock()
    limits = DataLimits(max_message_bytes=1000, byte_rate=1000, byte_burst=2000)
    relay, [(a, ach), (b, bch)] = room("a", "b", limits=limits, clock=clock)
    for _ in range(3):
        send(ach, "x" * 900)
    assert len(bch.data()) == 2
    assert ach.sent[-1]["code"] == "rate_limited" and "bytes per second" in ach.sent[-1]["message"]


@pytest.mark.parametrize("raw, code, why", [
    (b"\x01\x02", "invalid_message", "binary messages are not relayed"),
    ("x" * 20000, "message_too_large", "message of 20000 bytes; at most 16384"),
    ("[" * 5000, "invalid_message", "not JSON"),
    ('{"type": "data", "data": "x", "topic": "' + "t" * 65 + '"}', "invalid_message", "topic must be"),
    ('{"type": "data", "data": "x", "to": [' + ",".join(['"p"'] * 65) + "]}", "invalid_message", "to must be"),
    ('{"type": "data", "data": "x", "id": true}', "invalid_message", "id must be"),
    ('{"type": "data", "data": "x", "id": "' + "i" * 65 + '"}', "invalid_message", "id must be"),
    ('{"type": "data", "data": "\\udc00"}', "invalid_message", "lone surrogate"),
    ('{"type": "data"}', "invalid_message", "data must be a string"),
])
def test_refusals_say_why_and_relay_nothing(raw, code, why):
    relay, [(a, ach), (b, bch)] = room("a", "b")
    ach.message(raw)
    (err,) = ach.sent
    assert err["type"] == "error" and err["code"] == code and why in err["message"], err
    assert bch.sent == [] and a.messages == 0


def test_errors_to_a_flooding_sender_do_not_pile_up():
    relay, [(a, ach)] = room("a", limits=DataLimits(rate=1, burst=1))
    for _ in range(10_000):
        ach.message("not json")
    assert ach.bufferedAmount <= LOSSY_BUFFERED_BYTES


def test_an_endpoint_that_left_receives_nothing():
    relay, [(a, ach), (b, bch)] = room("a", "b")
    relay.remove(b)
    send(ach, "x")
    assert bch.sent == [] and b.relay is None


def test_a_room_has_one_delivery_budget_and_one_sender_gets_a_quarter_of_it():
    clock = Clock()
    limits = DataLimits(room_rate=40, room_burst=80)  # a sender: 10 per second, bursts of 20
    relay, eps = room(*"abcde", limits=limits, clock=clock, budget_clock=True)
    (a, ach), (e, ech) = eps[0], eps[4]
    for i in range(6):  # 4 recipients each: 5 fill a's share of 20
        send(ach, f"m{i}", id=i)
    assert eps[1][1].data() == [f"m{i}" for i in range(5)] and a.messages == 5
    (err,) = ach.sent
    assert (err["code"], err["id"]) == ("rate_limited", 5)
    assert "over your share of the room's data budget" in err["message"]
    for _, ch in eps[1:4]:  # three more senders use the rest of the room's 80
        for _ in range(5):
            send(ch, "x")
        assert not [m for m in ch.sent if m["type"] == "error"]
    send(ech, "late", id="e1")
    assert ech.sent[-1]["code"] == "rate_limited" and "the room is over its data budget" in ech.sent[-1]["message"]
    assert e.messages == 0
    clock.now += 0.15  # 6 of the room's tokens back; e's share was refunded
    send(ech, "late", id="e2")
    assert eps[0][1].data()[-1] == "late" and e.messages == 1


def test_a_delivery_of_a_large_message_costs_its_size():
    clock = Clock()
    limits = DataLimits(room_rate=4 * 30, room_burst=4 * 30)  # a sender's share: 30 at once
    relay, [(a, ach), (b, bch)] = room("a", "b", limits=limits, clock=clock)
    send(ach, "y" * 2_500)  # ~2,600 bytes as relayed: 3 deliveries
    for _ in range(27):  # 27 small ones: 30 in all
        send(ach, "z")
    assert len(bch.data()) == 28 and not ach.sent
    send(ach, "z")
    assert len(bch.data()) == 28 and ach.sent[-1]["code"] == "rate_limited"


def test_the_history_is_replayed_at_most_every_few_seconds():
    clock = Clock()
    relay, [(a, ach), (b, bch)] = room("a", "b", clock=clock)
    send(ach, "hello", topic="chat")
    got = []
    for _ in range(3):  # reopening the channel in a loop: a burst of two replays, then none
        bch.close()
        bch = Channel()
        b.attach(bch)
        got.append([m["data"] for m in bch.sent])
    assert got == [["hello"], ["hello"], []]
    clock.now += 5
    bch.close()
    bch = Channel()
    b.attach(bch)
    assert [m["data"] for m in bch.sent] == ["hello"]


def test_recipients_on_other_nodes_of_a_spanning_room_are_paid_for_by_the_sender_here():
    """A room spanning nodes (sfu.cascade): a message goes to the other nodes once, and its sender
    pays for each recipient there as for one here, so being alone on a node is no way around the
    budget; a message relayed from another node reaches the participants here and the history."""
    clock = Clock()
    limits = DataLimits(room_rate=40, room_burst=80)  # a sender: bursts of 20 deliveries
    relay, [(a, ach), (b, bch)] = room("a", "b", limits=limits, clock=clock, budget_clock=True)
    forwarded: list[tuple[str, dict]] = []
    remote = {"PA_x": 1, "PA_y": 1, "PA_z": 1}
    relay.remote_recipients = lambda to: sum(1 for p in to if p in remote) if to else len(remote)
    relay.forward = lambda label, msg: forwarded.append((label, msg))
    send(ach, "to all", topic="chat")  # 1 here + 3 elsewhere
    assert bch.data() == ["to all"] and [(lbl, m["data"]) for lbl, m in forwarded] == [("reliable", "to all")]
    send(ach, "to b", to=["PA_b"])  # nobody elsewhere: not forwarded
    assert len(forwarded) == 1 and bch.data() == ["to all", "to b"]
    for i in range(5):  # 4 deliveries each: 20 is a's share of the burst, counting those elsewhere
        send(ach, f"m{i}", id=i)
    assert [m["code"] for m in ach.sent if m["type"] == "error"] == ["rate_limited"] * 2
    # from another node: delivered here (not to its sender, were it here) and kept in the history
    relay.deliver_relayed("reliable", {**forwarded[0][1], "from": "PA_x", "data": "from x", "seq": 9})
    assert ach.data()[-1] == "from x" and bch.data()[-1] == "from x"
    assert [m["data"] for m in relay.history] == ["to all", "from x"]
