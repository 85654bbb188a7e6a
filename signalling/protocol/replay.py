"""Replay: the messages written to one participant, numbered, kept so a resumed socket loses none.

Every message the server writes to a joined participant carries `n` (1, 2, 3, ...). A client whose
WebSocket drops comes back with `resume` and the last `n` it read; what it missed is written again
from here, in order, before anything new. Messages still queued when the socket dropped were never
numbered, so they simply follow on the new socket.

The ring is bounded (messages and bytes): a client acknowledges with the `n` in its `ping`s, which
frees what it has read; a client that never pings keeps at most the bounds, and one that comes back
after more than that was written is told to join again (`since` returns None).
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from sfu.api import Broadcast

MAX_MESSAGES = 1024
MAX_BYTES = 1024 * 1024


def encode(msg: dict[str, Any]) -> str:
    """JSON text of a message; a room event (`Broadcast`) is encoded once for all its recipients."""
    if isinstance(msg, Broadcast):
        if msg.encoded is None:
            msg.encoded = json.dumps(msg)
        return msg.encoded
    return json.dumps(msg)


class Replay:
    def __init__(self, max_messages: int = MAX_MESSAGES, max_bytes: int = MAX_BYTES) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.n = 0  # the number of the last message written
        self._held: deque[tuple[int, str]] = deque()
        self._bytes = 0

    def frame(self, msg: dict[str, Any]) -> str:
        """Number `msg`, keep it, and return the text to write."""
        if "n" in msg:  # a message of our own making: a programming error, never the client's input
            raise ValueError(f"a {msg.get('type')!r} message has a field 'n' of its own")
        self.n += 1
        body = encode(msg)
        # spliced in before the closing brace, so a shared room event stays encoded once
        text = f'{body[:-1]},"n":{self.n}}}'
        self._held.append((self.n, text))
        self._bytes += len(text)
        while len(self._held) > self.max_messages or (self._bytes > self.max_bytes and len(self._held) > 1):
            self._bytes -= len(self._held.popleft()[1])
        return text

    def ack(self, n: int) -> None:
        """The client has read every message up to `n`: forget them."""
        while self._held and self._held[0][0] <= n:
            self._bytes -= len(self._held.popleft()[1])

    def since(self, n: int) -> list[str] | None:
        """The texts written after message `n`, or None when some of them are no longer held (or `n`
        was never written)."""
        held = self.export(n)
        return None if held is None else [text for _, text in held]

    def export(self, n: int) -> list[tuple[int, str]] | None:
        """(number, text) of the messages after `n`, as `since` (to carry on on another replica:
        `restore`)."""
        if n < 0 or n > self.n:
            return None
        oldest = self._held[0][0] if self._held else self.n + 1
        if n + 1 < oldest:
            return None
        return [(seq, text) for seq, text in self._held if seq > n]

    def restore(self, n: int, held: list[tuple[int, str]]) -> None:
        """Carry on from another replica's ring: `n` was the last number written there, `held` what
        it still held (consecutive numbers ending at `n`)."""
        self.n = n
        self._held = deque(held)
        self._bytes = sum(len(text) for _, text in held)
        while len(self._held) > self.max_messages or (self._bytes > self.max_bytes and len(self._held) > 1):
            self._bytes -= len(self._held.popleft()[1])

    @property
    def held(self) -> int:
        return len(self._held)
