"""Allocation: how one subscriber's downlink estimate is shared among the video it receives.

Each round the LayerSelector gives every video DownTrack a `Grant`: its priority, what it needs (the
rate of the best layer its subscriber asked for) and its share of the estimate. The shares come from
`share_budget`, water-filling by priority: a shared screen is what everyone looks at, then the
active speaker, then what the subscriber pinned, then the other cameras; within a priority the
smaller demands (small tiles ask for small layers) are served in full first. The same round's
grants explain a subscriber's layers on request (`explain`, the protocol's `allocation`).

Deterministic: the same estimate, requests and layer rates give the same shares.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sfu.downtrack import DownTrack

# the priorities, served in this order (their index is the `share_budget` tier)
PRIORITIES = ("screen", "speaker", "pinned", "other")
SCREEN, SPEAKER, PINNED, OTHER = range(len(PRIORITIES))


@dataclass(frozen=True)
class Grant:
    """One video DownTrack's part of its subscriber's estimate in one allocation round."""

    priority: int  # index into PRIORITIES
    need: float  # bits/s: the rate of the best layer it may have (its subscriber's request)
    share: float | None  # bits/s of the estimate it may use; None: all of it (its only video)


class Allocation:
    """One round's grants: each video DownTrack's (weakly held, so an ended one goes with its
    DownTrack), and per subscriber the DownTracks it covers, in the order they were judged."""

    __slots__ = ("grants", "by_subscriber")

    def __init__(self) -> None:
        self.grants: weakref.WeakKeyDictionary[DownTrack, Grant] = weakref.WeakKeyDictionary()
        self.by_subscriber: dict[str, list[DownTrack]] = {}

    def share(self, dt: DownTrack) -> float | None:
        """`dt`'s share of its subscriber's estimate; None when it has the whole estimate."""
        grant = self.grants.get(dt)
        return None if grant is None else grant.share

    def demands(self) -> dict[str, list[tuple[DownTrack, float]]]:
        """subscriber id -> [(its video DownTrack, what that needs)]."""
        return {sub: [(dt, self.grants[dt].need) for dt in dts if dt in self.grants]
                for sub, dts in self.by_subscriber.items()}


def share_budget(budget: float, demands: Sequence[float], first: Sequence[bool] = (),
                 floors: Sequence[float] = (), tiers: Sequence[int] = ()) -> list[float]:
    """Split `budget` over `demands` (bits/s each) by water-filling: every demand gets an equal
    share, and what a smaller demand leaves over goes to the larger ones. Never more than a demand;
    all of the budget when the demands add up to more. The shares come back in the demands' order.
    Demands are served by tier, lowest first (`tiers`; without them, those marked in `first` are
    tier 0 and the rest tier 1): each tier from what the tiers before it left, less the `floors`
    of the tiers after it (each camera's lowest layer), which no earlier tier takes.

    Why: a subscriber's estimate is for its whole downlink. Given in full to each of its video
    tracks, a meeting subscriber receiving five cameras was allowed five times its link. A shared
    screen is what everyone is looking at, then the active speaker, then what the subscriber pinned:
    other cameras give way to them, as in LiveKit, down to their lowest layer, so none of them can
    pause everyone's cameras (tiers: PRIORITIES)."""
    n = len(demands)
    tier = [tiers[i] if i < len(tiers) else 0 if i < len(first) and first[i] else 1 for i in range(n)]
    floor = [min(max(demands[i], 0.0), floors[i] if i < len(floors) else 0.0) for i in range(n)]
    shares = [0.0] * n
    left = max(budget, 0.0)
    for t in sorted(set(tier)):
        order = sorted((i for i in range(n) if tier[i] == t), key=lambda i: demands[i])
        reserved = sum(floor[i] for i in range(n) if tier[i] > t)
        pool = max(left - reserved, 0.0)
        for k, i in enumerate(order):
            shares[i] = min(max(demands[i], 0.0), pool / (len(order) - k))
            pool -= shares[i]
            left -= shares[i]
    return shares


def kbps(bps: float | None) -> str:
    """A rate for people: "1.3 Mbit/s", "640 kbit/s"."""
    if bps is None:
        return "unknown"
    return f"{bps / 1e6:.1f} Mbit/s" if bps >= 1e6 else f"{bps / 1e3:.0f} kbit/s"


def why(*, requested: str | None, layer: str | None, above: tuple[str, float] | None, usable: float | None,
        estimate: float | None, estimator: str | None, reason: str, pause_reason: str, thinned: int | None,
        priority: str, shared: bool) -> str:
    """One sentence on why a DownTrack gets the layer it gets (`explain`).

    `requested`: the rid of the best layer the subscriber's request allows (None: off); `layer`:
    the rid aimed at (None: paused or off); `above`: the next layer up within the request and what
    it needs; `usable`: the rate this track may use (its share, or the whole estimate); `thinned`:
    the highest VP8 temporal layer forwarded when not all are (None: all)."""
    of = (f"its share ({priority}) of your downlink estimate, {kbps(usable)} of {kbps(estimate)}"
          if shared else f"your downlink estimate, {kbps(estimate)}")
    source = f" ({estimator})" if estimator else ""
    if requested is None:
        return "off: you asked for no video on this track"
    if layer is None:
        if pause_reason == "bandwidth":
            return f"paused: even the lowest layer does not fit {of}{source}, and your reports show loss"
        return f"paused: {pause_reason or reason}"
    if estimate is None:
        text = f"{layer}: the best you asked for (no downlink estimate yet)"
    elif layer == requested:
        text = f"{layer}: the best you asked for, and it fits {of}{source}"
    elif above is not None:
        text = f"{layer}: {above[0]} needs {kbps(above[1])}, more than {of}{source}"
    else:
        text = f"{layer}: the layer above is not arriving now"
    if thinned is not None:
        kept = "base temporal layer only" if thinned == 0 else f"temporal layers 0-{thinned} only"
        text += f"; {kept} (a lower frame rate), since even this layer does not fit"
    return text
