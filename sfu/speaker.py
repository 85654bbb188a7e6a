"""Active speaker detection from RFC 6464 audio levels.

Each participant's loudness (127 - level in -dBov) is smoothed; every interval the loudest
participant above a floor becomes the candidate, and is announced only after staying the candidate
for `hold` consecutive intervals, so a cough does not steal the highlight (debounce).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sfu.metrics import STATS

log = logging.getLogger("basement.speaker")


class ActiveSpeaker:
    FLOOR = 40.0  # loudness below this (quieter than -87 dBov) is silence
    SMOOTHING = 0.3

    def __init__(self, on_change: Callable[[str | None], None], interval: float = 0.5, hold: int = 2) -> None:
        self.on_change = on_change
        self.interval = interval
        self.hold = hold
        self.loudness: dict[str, float] = {}
        self.last_heard: dict[str, float] = {}
        self.current: str | None = None
        self._candidate: str | None = None
        self._streak = 0
        self._task: asyncio.Task | None = None

    def observe(self, participant: str, level: int, now: float) -> None:
        loud = 127.0 - level
        prev = self.loudness.get(participant, 0.0)
        self.loudness[participant] = prev + self.SMOOTHING * (loud - prev)
        self.last_heard[participant] = now

    def forget(self, participant: str) -> None:
        self.loudness.pop(participant, None)
        self.last_heard.pop(participant, None)
        if self.current == participant:
            self.current = None
            self.on_change(None)

    def evaluate(self, now: float) -> str | None:
        """One decision step; returns the announced speaker (None when nobody is speaking)."""
        best, best_loud = None, self.FLOOR
        for p, loud in self.loudness.items():
            if now - self.last_heard.get(p, 0.0) > 1.0:
                continue  # stale: the stream stopped
            if loud > best_loud:
                best, best_loud = p, loud
        if best == self._candidate:
            self._streak += 1
        else:
            self._candidate, self._streak = best, 1
        if self._streak >= self.hold and best != self.current:
            self.current = best
            self.on_change(best)
        return self.current

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.evaluate(loop.time())
            except Exception:  # e.g. a failing broadcast: this round is lost, detection goes on
                STATS.task_error("active_speaker", log, loop.time())
