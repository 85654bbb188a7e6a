"""An emulated bottleneck for sans-IO congestion-control tests: a drop-tail queue drained at a rate
(what `tc tbf` does on a veth link), then a fixed propagation delay, optionally random loss.

`Bottleneck.send(t, size)` returns when the packet arrives (seconds) or None when it was dropped.
Deterministic given its seed.
"""

from __future__ import annotations

import random


class Bottleneck:
    def __init__(self, rate_bps: float, queue_bytes: int = 30_000, delay_s: float = 0.02, loss: float = 0.0,
                 seed: int = 1) -> None:
        self.rate_bps = rate_bps
        self.queue_bytes = queue_bytes
        self.delay_s = delay_s
        self.loss = loss
        self.free_at = 0.0  # when the link has sent everything queued
        self.random = random.Random(seed)

    def send(self, t: float, size: int) -> float | None:
        backlog = max(self.free_at - t, 0.0) * self.rate_bps / 8
        if backlog + size > self.queue_bytes:
            return None
        if self.loss and self.random.random() < self.loss:
            return None
        self.free_at = max(self.free_at, t) + size * 8 / self.rate_bps
        return self.free_at + self.delay_s
