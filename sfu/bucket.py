"""TokenBucket: a rate with bursts, for the media plane's per-participant limits (data channel
messages and bytes, unpublishing). The control plane has its own (signalling/protocol/edge.py):
the planes share nothing but sfu.api."""

from __future__ import annotations

from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second, at most `burst` at once; `take(n)` spends n if it can."""

    __slots__ = ("rate", "burst", "clock", "tokens", "last")  # (one per participant: keep it small)

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.last = clock()

    def take(self, n: float = 1.0) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True

    def refund(self, n: float) -> None:
        """Give back what `take` spent on something that did not happen after all."""
        self.tokens = min(self.burst, self.tokens + n)
