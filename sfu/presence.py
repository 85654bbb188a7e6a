"""Presence: telling a room's participants who joined and who left, at a bounded cost in large rooms.

Announcing every join to everyone costs a room of N one message per participant per join: N joins
are N² messages, each a WebSocket send on the server and a parse on every client. In a 300-viewer
livestream that was 29 % of the server's CPU per join (docs/performance.md). LiveKit batches the
updates of participants who do not publish for the same reason.

So a room of more than `batch_above` participants announces presence at most once per `interval`:
a join or leave after a quiet interval still goes out at once as `participant_joined` /
`participant_left`; those that follow within the interval wait and go out together as one
`presence` message (docs/protocol.md). A join and a leave of the same participant inside one wait
cancel out. Smaller rooms announce every change at once, as before.

Any other room event flushes what is waiting first (`Router.broadcast`), so a client never hears of
a participant's track before it hears of the participant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sfu.api import ParticipantInfo

BATCH_ABOVE = 20  # participants: larger rooms batch presence (settings: presence_batch_above)
INTERVAL = 1.0  # seconds between presence messages in a large room (settings: presence_interval_ms)


class Presence:
    def __init__(self, send: Callable[[dict[str, Any]], None], size: Callable[[], int],
                 batch_above: int = BATCH_ABOVE, interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic,
                 call_later: Callable[[float, Callable[[], None]], Any] | None = None) -> None:
        self._send = send  # to every participant of the room
        self._size = size  # participants in the room now
        self.batch_above = batch_above  # 0: never batch
        self.interval = interval
        self._clock = clock
        self._call_later = call_later
        self._joined: dict[str, ParticipantInfo] = {}  # waiting, by participant id, in join order
        self._left: dict[str, str] = {}  # waiting: participant id -> reason
        self._last = float("-inf")  # when the last presence message went out
        self._timer: Any = None

    @property
    def waiting(self) -> int:
        return len(self._joined) + len(self._left)

    def joined(self, info: ParticipantInfo) -> None:
        if self._now_or_later():
            self._send({"type": "participant_joined", "participant": info})
        else:
            self._joined[info["id"]] = info

    def left(self, participant_id: str, reason: str) -> None:
        if self._joined.pop(participant_id, None) is not None:
            return  # nobody was told it came
        if self._now_or_later():
            self._send({"type": "participant_left", "participant": participant_id, "reason": reason})
        else:
            self._left[participant_id] = reason

    def flush(self) -> None:
        """Send what is waiting now, as one `presence` message."""
        self._cancel()
        if not self.waiting:
            return
        joined, left = list(self._joined.values()), self._left
        self._joined, self._left = {}, {}
        self._last = self._clock()
        self._send({"type": "presence", "joined": joined,
                    "left": [{"participant": pid, "reason": reason} for pid, reason in left.items()]})

    def close(self) -> None:
        self._cancel()
        self._joined.clear()
        self._left.clear()

    def _now_or_later(self) -> bool:
        """True: send this change now. False: it waits (a flush is scheduled)."""
        now = self._clock()
        if not self.batch_above or self._size() <= self.batch_above:
            self.flush()  # the room shrank with changes waiting: they go first
            self._last = now
            return True
        if not self.waiting and now - self._last >= self.interval:
            self._last = now
            return True
        if self._timer is None:
            schedule = self._call_later or asyncio.get_running_loop().call_later
            self._timer = schedule(max(0.0, self._last + self.interval - now), self._fire)
        return False

    def _fire(self) -> None:
        self._timer = None
        self.flush()

    def _cancel(self) -> None:
        if self._timer is not None:
            cancel = getattr(self._timer, "cancel", None)
            if cancel is not None:
                cancel()
            self._timer = None
