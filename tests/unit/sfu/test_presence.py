"""sfu.presence: immediate in small rooms; in large ones, at most one message per interval."""

from __future__ import annotations

from typing import Any

import pytest

from sfu.presence import Presence


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Any]] = []

    def __call__(self) -> float:
        return self.now

    def call_later(self, delay: float, fn: Any) -> Any:
        timer = Timer(self.now + delay, fn)
        self.timers.append((self.now + delay, timer))
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for at, t in self.timers if at <= self.now and not t.cancelled]
        self.timers = [(at, t) for at, t in self.timers if at > self.now and not t.cancelled]
        for t in due:
            t.fn()


class Timer:
    def __init__(self, at: float, fn: Any) -> None:
        self.at, self.fn, self.cancelled = at, fn, False

    def cancel(self) -> None:
        self.cancelled = True


def info(pid: str) -> Any:
    return {"id": pid, "name": pid.lower(), "identity": f"guest-{pid}"}


@pytest.fixture
def room() -> Any:
    class Room:
        size = 0
        sent: list[dict[str, Any]] = []

    r = Room()
    r.sent = []
    r.clock = Clock()
    r.presence = Presence(r.sent.append, lambda: r.size, batch_above=3, interval=1.0, clock=r.clock,
                          call_later=r.clock.call_later)
    return r


def test_a_small_room_announces_every_change_at_once(room: Any) -> None:
    for pid in "ABC":
        room.presence.joined(info(pid))
        room.size += 1
    room.presence.left("B", "left")
    assert [m["type"] for m in room.sent] == ["participant_joined"] * 3 + ["participant_left"]
    assert room.sent[3] == {"type": "participant_left", "participant": "B", "reason": "left"}
    assert room.clock.timers == []


def test_a_large_room_sends_the_first_change_at_once_and_batches_the_rest_for_one_interval(room: Any) -> None:
    room.size = 10
    room.presence.joined(info("A"))  # quiet before: at once
    room.presence.joined(info("B"))
    room.presence.joined(info("C"))
    room.presence.left("X", "timeout")
    assert [m["type"] for m in room.sent] == ["participant_joined"]
    assert room.presence.waiting == 3
    room.clock.advance(0.99)
    assert len(room.sent) == 1  # not before the interval is over
    room.clock.advance(0.02)
    assert room.sent[1] == {"type": "presence", "joined": [info("B"), info("C")],
                            "left": [{"participant": "X", "reason": "timeout"}]}
    assert room.presence.waiting == 0
    # a change right after a batch waits for the next interval, then goes alone in a batch
    room.presence.joined(info("D"))
    assert len(room.sent) == 2
    room.clock.advance(1.0)
    assert room.sent[2]["joined"] == [info("D")]
    # after a quiet interval: at once again
    room.clock.advance(5.0)
    room.presence.left("D", "left")
    assert room.sent[3] == {"type": "participant_left", "participant": "D", "reason": "left"}


def test_a_join_and_a_leave_inside_one_wait_cancel_out(room: Any) -> None:
    room.size = 10
    room.presence.joined(info("A"))
    room.presence.joined(info("B"))
    room.presence.left("B", "left")
    room.presence.left("A", "left")  # A was announced: its leave must be told
    room.clock.advance(1.0)
    assert room.sent[1] == {"type": "presence", "joined": [], "left": [{"participant": "A", "reason": "left"}]}


def test_flush_sends_what_waits_before_another_event(room: Any) -> None:
    room.size = 10
    room.presence.joined(info("A"))
    room.presence.joined(info("B"))
    room.presence.flush()
    assert room.sent[-1]["type"] == "presence" and room.sent[-1]["joined"] == [info("B")]
    assert all(t.cancelled for _, t in room.clock.timers) or room.clock.timers == []
    room.presence.flush()  # nothing waits: nothing sent
    assert len(room.sent) == 2
    room.clock.advance(2.0)
    assert len(room.sent) == 2  # the cancelled timer sent nothing


def test_a_room_that_shrinks_sends_what_waits_first_then_the_change(room: Any) -> None:
    room.size = 10
    room.presence.joined(info("A"))
    room.presence.joined(info("B"))
    room.size = 2
    room.presence.left("A", "left")
    assert [m["type"] for m in room.sent] == ["participant_joined", "presence", "participant_left"]


def test_zero_never_batches(room: Any) -> None:
    room.presence.batch_above = 0
    room.size = 10_000
    for pid in "ABC":
        room.presence.joined(info(pid))
    assert [m["type"] for m in room.sent] == ["participant_joined"] * 3


def test_close_drops_what_waits_and_its_timer(room: Any) -> None:
    room.size = 10
    room.presence.joined(info("A"))
    room.presence.joined(info("B"))
    room.presence.close()
    room.clock.advance(2.0)
    assert len(room.sent) == 1 and room.presence.waiting == 0
