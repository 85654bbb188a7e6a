"""LayerSelector: which simulcast layer (and VP8 temporal layer) each DownTrack forwards.

The policy is a pure function of plain inputs (`decide`), so its hysteresis and pause rules are
unit-tested without a network; `LayerSelector` feeds it from live state every `interval` seconds
and applies the result (targets, events, dynacast).

Inputs per DownTrack: the subscriber's requested maximum (a layer name or the rendered size), the
subscriber's downlink estimate (REMB) and loss (RR), and the layers currently arriving with their
bitrates. Rules:
* never above what was requested;
* down fast: loss > 10 %, or the estimate far below the current layer, moves down at once; a mild
  shortfall must show in two evaluations in a row (layer rates wobble with keyframes);
* up slowly: the next layer must fit with 25 % headroom for `UP_STREAK` evaluations in a row, and
  the switch itself waits for that layer's keyframe (the DownTrack asks for one);
* receive-side estimates (REMB) rarely exceed what they receive by much, so a step up is a probe:
  for `PROBE_WINDOW_S` only loss or an estimate below the previous layer's rate undoes it, then it
  must fit; a failed probe backs off exponentially;
* a subscriber raising its request goes straight to the requested layer (as a probe) unless its
  link is struggling now, so an explicit "high" takes effect within a keyframe;
* an estimate never goes below what the subscriber demonstrably receives: while its receiver reports
  show no loss and its highest sequence number keeps up with what we send, the estimate is at least
  the rate it receives (`delivered_floor`). Receive-side estimators can be far off (aiortc's, in a
  busy client, reports a few kbit/s on an idle loopback); loss cannot. So only loss, or an estimate
  below what is sent once the reports stop vouching for it, moves a subscriber down;
* when even the lowest layer does not fit, thin it to its base temporal layer; pause video (audio is
  never paused) only when the subscriber's receiver reports show loss too, and resume when the
  lowest layer fits again with headroom or on a backoff timer; the client is told why;
* a subscriber's estimate is one budget for all the video it receives (REMB covers the whole
  downlink): it is shared among its video DownTracks by water-filling over what each asks for
  (`share_budget`), so each one's policy sees its share, not the whole link.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sfu.allocation import OTHER, PINNED, PRIORITIES, SCREEN, SPEAKER, Allocation, Grant, share_budget, why
from sfu.metrics import STATS
from sfu.track import SPATIAL

if TYPE_CHECKING:
    from sfu.downtrack import DownTrack
    from sfu.track import Layer, PublishedTrack

log = logging.getLogger("basement.layers")

LAYER_NAMES = {"low": 0, "medium": 1, "high": 2}
UP_HEADROOM = 1.25
DOWN_TOLERANCE = 1.15  # estimators wobble around the rate they receive: only a clear shortfall moves down
PROBE_HEADROOM = 1.1  # estimate above the current layer by this much: the link is not the limit
PROBE_WINDOW_S = 3.0  # after a step up, time the estimator gets to ramp before the layer must fit
SEVERE_SHORTFALL = 0.7  # estimate below this share of the current layer's rate: down without waiting
BACKOFF_MIN_S = 2.0
BACKOFF_MAX_S = 30.0
HIGH_LOSS = 0.10
# Bandwidth probes (`LayerSelector._probe`, sfu.prober)
PROBE_S = 0.5  # how long a probe's padding runs: long enough for the trendline's 20 groups
PROBE_SETTLE_S = 0.5  # after it, the feedback of its last packets is in
PROBE_SUCCESS = 0.8  # the estimate reached this share of the probe's goal: the link carries it
# ... and grew by this much since the probe began: an estimate that was near the goal already and
# stayed there is a plateau (a link carrying 80-99 % of the next layer), not a success; without this,
# such a subscriber was probed back to back, ~30 % of its link in padding (bench.bandwidth fairness)
PROBE_GAIN = 1.1
PROBE_GROWTH = 3.0  # a probe tests up to this many times the estimate (libwebrtc's first probes: 3x, 6x)
PROBE_BACKOFF_MIN_S = 2.0
# a failed probe costs the subscriber a little loss; backing off further than this would leave a
# link that has widened unused for too long (issue #15: the top layer within 10 s of a rise)
PROBE_BACKOFF_MAX_S = 5.0
# Loss at or below this in the subscriber's recent receiver reports: it receives what it is sent. Its
# estimate may still move it down, but only loss above this stops its video (see _thin_or_pause).
LOSS_FREE = 0.02
UP_STREAK = 3
UP_STREAK_SEND_SIDE = 2  # a send-side estimate above the next layer was shown by a probe, not guessed
MIN_LAYER_BPS = 30_000  # a layer that just started has no measured rate yet: assume this much
# a simulcast layer never measured (switched off before it arrived): its rate guessed from its size,
# about what browsers' encoders give a camera (960x540 ~1.3 Mbit/s, 480x270 ~330 kbit/s)
BITS_PER_PIXEL_S = 2.5
PEAK_DECAY = 0.9  # per evaluation (0.5 s): a layer's held peak rate (a key frame's) fades by ~20 % a second
# The subscriber's highest sequence number must advance over at least this share of the packets we
# sent for its reports to vouch for the rate (the rest is timing: a report is a snapshot taken a path
# and a processing delay behind us). A queue building on the way shows as a smaller share before it
# overflows into loss.
DELIVERED_SHARE = 0.8
DELIVERY_STALE_S = 5.0  # a delivery measurement older than this vouches for nothing


@dataclass(frozen=True)
class LayerInfo:
    index: int
    bitrate: float  # bits/s measured over the last second (0 = unknown yet)
    width: int = 0
    height: int = 0


@dataclass
class SelectorState:
    """What the policy remembers per DownTrack between evaluations."""

    current: int | None = None  # index being forwarded (None = nothing / paused)
    up_streak: int = 0
    paused_for_bandwidth: bool = False
    last_up_at: float = -1e9
    backoff_s: float = 0.0
    retry_at: float = 0.0
    probed_from: int = -1
    probing: bool = False  # stepped up, not yet confirmed by the estimate
    down_streak: int = 0
    requested: int | None = None  # the request at the previous evaluation
    forwarded_sid: int | None = None  # SVC: the spatial layer forwarded at the previous evaluation
    max_tid: int | None = None  # the temporal cap decided at the previous evaluation (None = all)


@dataclass(frozen=True)
class Decision:
    target: int | None  # layer index to forward, None = pause
    reason: str  # "requested", "bandwidth", "loss", "recovered", "off", "unavailable"
    max_tid: int | None = None  # VP8 temporal layers above this are dropped (None = all)


# The share of a VP8 L1T3 layer's rate up to its temporal layer 0, 1 (libwebrtc's allocation: 40 %,
# 60 %, at 7.5 and 15 of 30 fps). A lowest layer that does not fit is thinned in these steps: 15 fps
# where only the base was forwarded before, and smaller steps back up. A send-side estimate grows to
# at most 1.5 x what is acknowledged plus 10 kbit/s (sfu.estimator): the first step (x 1.5) it can
# earn from what it carries, the second (x 1.67) takes a small probe (LayerSelector._next_step). From
# the base straight to the whole layer (x 2.5) took a probe for the layer above, which beside a TCP
# download mostly failed (tests/e2e/browser/test_fairness.py).
TEMPORAL_SHARES = (0.4, 0.6)


def requested_index(layers: Sequence[LayerInfo | Layer], layer: str | None, width: int | None,
                    height: int | None) -> int | None:
    """The highest layer index a subscriber asks for (None = off).

    An explicit name wins; a rendered size picks the smallest layer that covers it (layers whose
    size is not known yet count as covering, so a subscriber starts on a real layer and adjusts).
    """
    if layer == "off":
        return None
    if not layers:
        return None
    ordered = sorted(layers, key=lambda x: x.index)
    if layer in LAYER_NAMES:
        want = LAYER_NAMES[layer]
        fitting = [x.index for x in ordered if x.index <= want]
        return fitting[-1] if fitting else ordered[0].index
    if width is not None and height is not None:
        if width == 0 and height == 0:
            return None  # not rendered at all
        for x in ordered:
            if not x.width or (x.width >= width and x.height >= height):
                return x.index
        return ordered[-1].index
    return ordered[-1].index


def _rate(layer: LayerInfo | Layer) -> float:
    return max(layer.bitrate, MIN_LAYER_BPS)


def decide(state: SelectorState, available: list[LayerInfo], requested: int | None,
           estimate_bps: float | None, reported_loss: float | None, now: float = 0.0,
           send_side: bool = False, lowest_index: int | None = None,
           average: list[LayerInfo] | None = None) -> Decision:
    """One evaluation of the policy for one DownTrack. Updates `state` (streaks, backoff) only.

    The layer is `_decide`'s; on the lowest layer arriving, the temporal layers forwarded are
    `temporal_cap`'s (the most of them that fit), and kept while a mild shortfall is looked at
    again: a thinned track is never un-thinned for one evaluation. `average`: the layers at their
    rates now, where `available` holds their recent peaks (a send-side subscriber's): dropping
    temporal layers needs no key frame, so it is judged on what a layer sends on average."""
    lowest = _lowest(available, requested)
    rate = 0.0 if lowest is None else _rate(next((x for x in average or () if x.index == lowest.index), lowest))
    decision = _decide(state, available, requested, estimate_bps, reported_loss, now, send_side, lowest_index,
                       rate * TEMPORAL_SHARES[0])
    if (decision.target is not None and lowest is not None
            and decision.target == lowest.index and estimate_bps is not None):
        held = state.max_tid if state.current == lowest.index else None
        cap = temporal_cap(rate, estimate_bps, held)
        # (-1: not even the base fits, and yet the layer is sent: a retry after a pause, or a
        # subscriber without loss enough to pause; the base is the least it can be)
        decision = Decision(decision.target, decision.reason, 0 if cap == -1 else cap)
    state.max_tid = decision.max_tid
    return decision


def _lowest(available: list[LayerInfo], requested: int | None) -> LayerInfo | None:
    """The lowest layer at or below the request, or (none arriving there) the lowest arriving."""
    allowed = [x for x in available if requested is None or x.index <= requested]
    return min(allowed or available, default=None, key=lambda x: x.index)


def temporal_cap(rate: float, estimate_bps: float, held: int | None) -> int | None:
    """The most temporal layers of a lowest layer sending `rate` that fit `estimate_bps`: None (all),
    1 or 0 (TEMPORAL_SHARES); -1 when not even the base fits. What is forwarded now (`held`) stays
    while it fits with DOWN_TOLERANCE; more is taken only when it fits outright, so an estimate
    wobbling around a step does not flap the frame rate."""
    best = -1
    for rank, share in enumerate((*TEMPORAL_SHARES, 1.0)):  # rank: temporal layers 0, 0-1, all
        holding = rank <= (2 if held is None else held)
        if rate * share <= estimate_bps * (DOWN_TOLERANCE if holding else 1.0):
            best = rank
    return -1 if best == -1 else (0, 1, None)[best]


def _decide(state: SelectorState, available: list[LayerInfo], requested: int | None,
            estimate_bps: float | None, reported_loss: float | None, now: float,
            send_side: bool, lowest_index: int | None, base_rate: float) -> Decision:
    """The layer (see `decide`).

    `reported_loss` is the subscriber's recent loss from its receiver reports, None when unknown.
    `send_side`: the estimate is the SFU's own, from transport-wide feedback (sfu.estimator). Then
    a layer goes up only when it fits: the padding probes (sfu.prober, `LayerSelector._probe`) are
    what show a link can carry more, so no step up is a probe. `lowest_index`: the track's lowest
    layer, arriving or not: when a lower layer than any arriving exists, a send-side subscriber
    whose layer no longer fits is thinned while dynacast brings that layer back (`_wanted`), not
    paused. `base_rate`: what the lowest layer's base temporal layer sends on average, against
    which a pause is judged.

    A pause needs loss (`congested`): above LOSS_FREE for a receive-side estimate, which may be
    anything (aiortc's), above HIGH_LOSS for a send-side one, which has the loss in it already. A
    link shared with a TCP download loses a few percent at each of its window's peaks, the download's
    doing; the base temporal layer of the lowest layer (~40 kbit/s) is not what overflows it, and
    pausing it for that froze a subscriber for 2 s (tests/e2e/browser/test_fairness.py). A link
    too narrow for even that loses most of it."""
    congested = reported_loss is not None and reported_loss > (HIGH_LOSS if send_side else LOSS_FREE)
    # A send-side estimate has the subscriber's loss in it already (sfu.estimator's loss-based
    # limit), and a probe's own loss (padding that overran the link on purpose) must not move a
    # layer down by itself: only the estimate moves it.
    loss = 0.0 if send_side else reported_loss or 0.0
    raised = requested is not None and state.requested is not None and requested > state.requested
    if requested != state.requested:
        # a new request is new intent: earlier failed probes say nothing about it
        state.backoff_s, state.retry_at = 0.0, 0.0
    state.requested = requested
    if requested is None:
        state.up_streak = state.down_streak = 0
        state.paused_for_bandwidth = state.probing = False
        return Decision(None, "off")
    candidates = sorted((x for x in available if x.index <= requested), key=lambda x: x.index)
    if not candidates:
        # nothing at or below the request is arriving: take the lowest layer there is
        candidates = sorted(available, key=lambda x: x.index)[:1]
        if not candidates:
            return Decision(state.current, "unavailable")
    by_index = {x.index: x for x in candidates}
    if estimate_bps is None:
        # no downlink estimate yet: give what was asked for
        state.up_streak = 0
        return Decision(candidates[-1].index, "requested")

    def fits(x: LayerInfo) -> bool:
        return _rate(x) <= estimate_bps * DOWN_TOLERANCE

    lowest = candidates[0]
    current = state.current if state.current in by_index else None
    if state.paused_for_bandwidth:
        if estimate_bps >= _rate(lowest) * UP_HEADROOM and loss <= HIGH_LOSS:
            state.up_streak += 1
            if state.up_streak >= UP_STREAK:
                state.up_streak = 0
                state.paused_for_bandwidth = False
                return Decision(lowest.index, "recovered")
        else:
            state.up_streak = 0
            if now >= state.retry_at and loss <= HIGH_LOSS:
                # With nothing flowing, a receive-side estimator has nothing to measure and never
                # rises: try the lowest layer's base temporal layer again (backing off if it fails).
                state.paused_for_bandwidth = False
                state.probing, state.last_up_at, state.probed_from = True, now, -1
                return Decision(lowest.index, "recovered", max_tid=0)
        return Decision(None, "bandwidth")

    if current is None:
        # (re)starting: the best layer that fits now, without waiting for a streak
        state.probing = False
        fitting = [x for x in candidates if fits(x)]
        if not fitting:
            return _thin_or_pause(state, lowest, estimate_bps, now, congested, base_rate)
        return Decision(fitting[-1].index, "requested")

    cur = by_index[current]
    # A retry of the base temporal layer after a pause (`probed_from` -1) holds when the base fits:
    # it never aimed at the whole layer. It used to be judged against the whole layer at the next
    # evaluation, on an estimate that could not have moved (nothing flowed while paused), so it
    # failed at once and backed off twice (here and for the pause): 2 + 8 s of pause after a TCP
    # download's slow start (tests/e2e/browser/test_fairness.py).
    retry = state.probing and state.probed_from == -1
    if state.probing and (fits(cur) or (retry and base_rate <= estimate_bps * DOWN_TOLERANCE)):
        state.probing = False  # the estimate caught up: the step up held
        state.backoff_s = 0.0
        retry = False
    in_probe = state.probing and now - state.last_up_at < PROBE_WINDOW_S
    if in_probe and retry:
        # our estimator needs a while of the retry's own traffic to say; a REMB is judged at once
        short = severe = not send_side and base_rate > estimate_bps * DOWN_TOLERANCE
    elif in_probe:
        # give the estimator time to ramp; only real trouble (it fell below what worked before) ends it
        floor = by_index.get(state.probed_from, lowest)
        short = _rate(floor) > estimate_bps * DOWN_TOLERANCE
        severe = short
    else:
        short = not fits(cur)
        severe = _rate(cur) * SEVERE_SHORTFALL > estimate_bps
    state.down_streak = state.down_streak + 1 if short else 0

    # down fast
    if loss > HIGH_LOSS or severe or state.down_streak >= 2:
        state.up_streak = state.down_streak = 0
        if state.probing and not retry:  # (a retry that failed backs off with the pause it ends in)
            _back_off(state, now)  # the last step up did not hold: wait longer before trying again
        state.probing = state.probing and not retry
        lower = [x for x in candidates if x.index < current and (fits(x) or loss > HIGH_LOSS)]
        if lower:
            return Decision(lower[-1].index, "loss" if loss > HIGH_LOSS else "bandwidth")
        if not fits(lowest):
            if send_side and lowest_index is not None and lowest_index < lowest.index:
                return Decision(lowest.index, "bandwidth", max_tid=0)  # until the lower layer arrives
            return _thin_or_pause(state, lowest, estimate_bps, now, congested, base_rate)
        return Decision(lowest.index, "bandwidth")
    if short:
        return Decision(current, "requested")  # one mild shortfall: look again next time

    higher = [x for x in candidates if x.index > current]
    if raised and higher and loss <= HIGH_LOSS / 2:
        if not send_side:
            # the subscriber asked for more and its link is fine now: go there at once, as a probe
            return _step_up(state, current, candidates[-1].index, now, "requested")
        affordable = [x for x in higher if fits(x)]
        if affordable:  # as far up as the estimate allows, at once
            state.up_streak = 0
            return Decision(affordable[-1].index, "requested")

    # up slowly. Receive-side estimators (REMB) rarely report much above what they receive, so
    # "the next layer fits the estimate" may never become true on an idle link: an estimate with
    # headroom over the current layer also justifies trying the next one (probing by switching),
    # with exponential backoff when the try fails.
    if higher and not in_probe and loss <= HIGH_LOSS / 2 and (
        _rate(higher[0]) * UP_HEADROOM <= estimate_bps
        or (not send_side and estimate_bps >= _rate(cur) * PROBE_HEADROOM and now >= state.retry_at)
    ):
        state.up_streak += 1
        if state.up_streak >= (UP_STREAK_SEND_SIDE if send_side else UP_STREAK):
            decision = _step_up(state, current, higher[0].index, now, "recovered")
            state.probing = state.probing and not send_side  # (it fits: not a try)
            return decision
    else:
        state.up_streak = 0
    return Decision(current, "requested")


def _send_side(dt: DownTrack) -> bool:
    """Whether `dt`'s estimate is the SFU's own, from transport-wide feedback."""
    return getattr(dt.transport, "estimator", None) is not None


@dataclass
class ProbeState:
    """What `LayerSelector._probe` remembers per subscriber."""

    goal: float = 0.0  # the total rate the running (or just ended) probe tests; 0: none pending
    from_bps: float = 0.0  # the estimate when it began
    backoff_s: float = 0.0
    retry_at: float = 0.0


def judge_probe(state: ProbeState, estimate: float, now: float) -> bool:
    """Whether the probe that just ended showed the link carries more: the estimate reached most of
    its goal (PROBE_SUCCESS) and grew while it ran (PROBE_GAIN). Then the next may go at once;
    otherwise the next waits (PROBE_BACKOFF_MIN_S, doubling up to PROBE_BACKOFF_MAX_S)."""
    success = estimate >= state.goal * PROBE_SUCCESS and estimate >= state.from_bps * PROBE_GAIN
    if success:
        state.backoff_s, state.retry_at = 0.0, now
    else:
        state.backoff_s = min(max(state.backoff_s * 2, PROBE_BACKOFF_MIN_S), PROBE_BACKOFF_MAX_S)
        state.retry_at = now + state.backoff_s
    state.goal = 0.0
    return success


def _step_up(state: SelectorState, current: int, target: int, now: float, reason: str) -> Decision:
    state.up_streak = 0
    state.last_up_at = now
    state.probed_from = current
    state.probing = True
    return Decision(target, reason)


def _thin_or_pause(state: SelectorState, lowest: LayerInfo, estimate_bps: float, now: float,
                   congested: bool, base_rate: float) -> Decision:
    """The lowest layer does not fit: its base temporal layer alone may; otherwise pause, if the
    subscriber's receiver reports show loss.

    An estimate alone never stops video: a receive-side estimator in a CPU-starved client (aiortc's)
    reports a few kbit/s on an idle link, and believing it stops video that arrives intact. Without
    loss (or before any report) the track stays on the lowest layer's base temporal layer; real
    congestion shows as loss, and loss pauses."""
    if not congested or base_rate <= estimate_bps * DOWN_TOLERANCE:
        return Decision(lowest.index, "bandwidth", max_tid=0)
    state.paused_for_bandwidth = True
    _back_off(state, now)
    return Decision(None, "bandwidth")


def _back_off(state: SelectorState, now: float) -> None:
    state.probing = False
    state.backoff_s = min(max(state.backoff_s * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)
    state.retry_at = now + state.backoff_s


def delivered_floor(delivered_bps: float, delivered_share: float, delivered_age: float | None,
                    reported_loss: float | None, current_bps: float) -> float:
    """The rate a subscriber demonstrably receives, which its downlink estimate is not allowed to
    undercut; 0 when its receiver reports do not show that.

    Evidence, from the reports (`DownTrack.delivered_*`): recent ones show no loss (`reported_loss`
    is the worst of the last couple of seconds, so one lossy report withdraws the floor for that
    long: the hysteresis), and the highest sequence number advanced over nearly all we sent. The
    floor never exceeds the current layer's rate (`current_bps`): it keeps a subscriber where it
    is, it never moves one up; probing up remains the estimate's job.

    Why: mediasoup and LiveKit trust their bandwidth estimate, but theirs is the sender-side one
    (transport-cc) that they compute themselves; with only a receive-side REMB, the estimate is the
    client's, and aiortc's reports 6-33 kbit/s on an idle loopback while every packet arrives.
    Believing it paused and resumed video every 2-3 s (issue 14). Real congestion still shows, as
    loss or as a subscriber falling behind, and then the estimate applies in full.
    """
    if (delivered_age is None or delivered_age > DELIVERY_STALE_S or reported_loss is None
            or reported_loss > LOSS_FREE or delivered_share < DELIVERED_SHARE):
        return 0.0
    return min(delivered_bps, current_bps)


def pick(layers: list[Layer], max_index: int | None) -> Layer | None:
    if max_index is None:
        return None
    fitting = [x for x in layers if x.index <= max_index]
    return max(fitting, key=lambda x: x.index) if fitting else min(layers, key=lambda x: x.index, default=None)


def spatial_layers(rec: PublishedTrack[DownTrack]) -> list[LayerInfo] | None:
    """A VP9 SVC stream's spatial layers as the selector's choices, each with its size and the rate of
    it and the layers below it (what a subscriber capped there receives); None for any other track.
    A spatial layer is chosen like a simulcast layer (request, estimate, hysteresis), and forwarded
    by capping the DownTrack's spatial id (`DownTrack.set_spatial`)."""
    if len(rec.layers) != 1:
        return None
    stream = next(iter(rec.layers.values()))
    sizes = stream.spatial_sizes
    if len(sizes) < 2:
        return None
    rates = stream.spatial_bitrates
    out, total = [], 0.0
    for sid, (width, height) in enumerate(sizes):
        total += rates[sid]
        out.append(LayerInfo(sid, total, width, height))
    return out


class _TrackView:
    """What every DownTrack of one track is judged against in one evaluation, worked out once: its
    layers, the SVC spatial layers (None unless SVC), the simulcast layers arriving, and each
    distinct request's index (subscribers mostly ask alike). Nothing an evaluation does to a
    DownTrack changes these."""

    __slots__ = ("spatial", "layers", "available", "available_peak", "_requested")

    def __init__(self, rec: PublishedTrack[DownTrack], now: float,
                 peaks: dict[tuple[str, str], float] | None = None) -> None:
        self.spatial = spatial_layers(rec)
        self.layers = list(rec.layers.values())
        self.available = [] if self.spatial is not None else [
            LayerInfo(x.index, x.bitrate, x.width, x.height) for x in self.layers if x.arriving(now)]
        # the same at their recent peak rates (LayerSelector._update_peaks): what a send-side
        # estimate is judged against
        self.available_peak = self.available if not rec.simulcast else [
            LayerInfo(x.index, _layer_need(x, (peaks or {}).get((rec.id, x.rid))), x.width, x.height)
            for x in self.layers if x.arriving(now)]
        self._requested: dict[tuple[str | None, int | None, int | None], int | None] = {}

    @property
    def single_layer(self) -> bool:
        """Neither simulcast nor SVC (`LayerSelector.estimate` trusts a low estimate less there)."""
        return len(self.layers) <= 1 and self.spatial is None

    def requested(self, dt: DownTrack) -> int | None:
        """`requested_index` of `dt`'s request over the spatial layers (SVC) or the layers."""
        key = (dt.request_layer, dt.request_width, dt.request_height)
        try:
            return self._requested[key]
        except KeyError:
            choices = self.spatial if self.spatial is not None else self.layers
            want = self._requested[key] = requested_index(choices, *key)
            return want


def _layer_need(layer: Layer, peak: float | None) -> float:
    """What a simulcast layer needs once it runs: its recent peak rate, and at least half of what its
    size suggests (BITS_PER_PIXEL_S). A layer switched on again, or just started, sends little in its
    first seconds while its encoder ramps up; judged by that, a top layer would seem to fit a link
    it will soon overrun, and the subscriber would go up only to come down."""
    guess = layer.width * layer.height * BITS_PER_PIXEL_S
    return max(layer.bitrate, peak or 0.0, guess if not peak and not layer.bitrate else guess / 2,
               MIN_LAYER_BPS)


def _best_requested(rec: PublishedTrack[DownTrack], dt: DownTrack) -> Layer | None:
    """The best layer `rec` announced at or below what `dt`'s subscriber asked for (None: off)."""
    if not rec.layers:
        return None
    layers = list(rec.layers.values())
    return pick(layers, requested_index(layers, dt.request_layer, dt.request_width, dt.request_height))


class LayerSelector:
    """Applies `decide` to every video DownTrack of a room, and tells publishers which layers are needed."""

    def __init__(self, notify: Callable[[str, dict[str, Any]], None] | None = None, interval: float = 0.5) -> None:
        self.notify = notify  # (participant id, message)
        self.interval = interval
        self.estimates: dict[str, int] = {}  # subscriber id -> its last downlink estimate (bps)
        self._dynacast: dict[str, tuple[str, ...]] = {}  # track id -> rids last announced active
        # SVC track id -> its spatial layers' sizes with the most layers seen (the latest such): what
        # the publisher encodes with every layer on, judged against while dynacast has some off
        self._svc_sizes: dict[str, tuple[tuple[int, int], ...]] = {}
        self._task: asyncio.Task | None = None
        self.tracks: Callable[[], list[PublishedTrack[DownTrack]]] = list
        # the policy's memory per DownTrack (`decide` updates it). Held here, not on the DownTrack,
        # so the forwarding side knows nothing of the policy; weak keys, so an ended DownTrack's
        # state goes with it whichever way it ended (unsubscribe, leave, recycled m-line)
        self._states: weakref.WeakKeyDictionary[DownTrack, SelectorState] = weakref.WeakKeyDictionary()
        # the last round's sharing of each subscriber's estimate among its video DownTracks
        # (`_allocate`); a DownTrack without a share there has the whole estimate
        self.allocation = Allocation()
        self._probes: dict[str, ProbeState] = {}  # subscriber id -> its probes' memory (`_probe`)
        # (track id, rid) -> the simulcast layer's rate held at its recent peak (`_update_peaks`)
        self._peaks: dict[tuple[str, str], float] = {}
        # the room's active speaker (sfu.speaker, set by the Router): its camera is served right after
        # screen shares from each subscriber's budget
        self.speaker: str | None = None

    def start(self, tracks: Callable[[], list[PublishedTrack[DownTrack]]]) -> None:
        self.tracks = tracks
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def forget(self, participant_id: str, track_ids: list[str]) -> None:
        """A participant left: drop what was kept about it as a subscriber and as a publisher."""
        self.estimates.pop(participant_id, None)
        self._probes.pop(participant_id, None)
        for track_id in track_ids:
            for key in [k for k in self._peaks if k[0] == track_id]:
                del self._peaks[key]
            self._dynacast.pop(track_id, None)
            self._svc_sizes.pop(track_id, None)

    def initial_layer(self, rec: PublishedTrack[DownTrack], dt: DownTrack) -> Layer | None:
        """The best layer at or below what the subscriber asked for; for a subscriber with a
        send-side estimate already (from its other tracks), the best of those that fits it."""
        best = _best_requested(rec, dt)
        estimate = self.estimates.get(dt.subscriber_id)
        if best is None or not estimate or not _send_side(dt):
            return best
        layers = sorted(rec.layers.values(), key=lambda x: x.index)
        fitting = [x for x in layers if x.index <= best.index and self._demand(rec, x) <= estimate]
        return fitting[-1] if fitting else layers[0]

    def on_estimate(self, subscriber_id: str, downtracks: Iterable[DownTrack], bitrate: int,
                scope: tuple[int, ...] = ()) -> None:
        """A subscriber's downlink estimate (transport-wide, or its REMB) for `downtracks`; those
        given one with the same `scope` (the SSRCs a REMB named) share it (`_allocate`)."""
        before = self.estimates.get(subscriber_id)
        self.estimates[subscriber_id] = bitrate
        downtracks = list(downtracks)
        for dt in downtracks:
            dt.on_estimate(bitrate, scope)
        if before is None or bitrate < before * SEVERE_SHORTFALL:
            # A send-side estimate that starts (low: sfu.estimator START_BPS, while the first layers
            # were given before any) or falls sharply (a link that narrowed) is acted on now, not at
            # the next round: each half second on a layer the link cannot carry is more loss queued
            self._evaluate_now([dt for dt in downtracks if dt.is_video and _send_side(dt)])

    def state(self, dt: DownTrack) -> SelectorState:
        """What the policy remembers about `dt` (created on first use)."""
        state = self._states.get(dt)
        if state is None:
            state = self._states[dt] = SelectorState()
        return state

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.evaluate(time.monotonic())
            except Exception:  # a policy bug must not stop future evaluations
                STATS.task_error("layer_selection", log)

    def _allocate(self, views: dict[str, _TrackView] | None = None, now: float | None = None) -> None:
        """Share each estimate among the video DownTracks it covers (`share_budget`): one subscriber's
        DownTracks given an estimate of the same scope (`DownTrack.estimate_scope`). A DownTrack's
        demand is the rate of the best layer it may have: the highest announced one at or below its
        request (dynacast may have switched it off; the share is what can bring it back). Its
        priority: a screen share, the active speaker's camera, a camera its subscriber pinned, or
        another (sfu.allocation.PRIORITIES), each leaving the later ones their lowest layers."""
        # (subscriber, estimate scope) -> [(DownTrack, demand, its priority, its lowest layer's rate)]
        wants: dict[tuple[str, tuple[int, ...]], list[tuple[DownTrack, float, int, float]]] = {}
        for rec in self.tracks():
            if rec.kind != "video":
                continue
            view = views[rec.id] if views is not None else _TrackView(rec, time.monotonic() if now is None else now)
            spatial = view.spatial
            choices: Sequence[LayerInfo | Layer] = spatial or view.layers
            lowest = _rate(min(choices, key=lambda x: x.index)) if choices else 0.0
            for dt in rec.downtracks:
                if not dt.estimate_bps:
                    continue
                want_index = view.requested(dt)
                top = pick(view.layers, want_index) if spatial is None else (
                    None if want_index is None else spatial[want_index])
                if top is not None:
                    want = (dt, self._demand(rec, top), self._priority(rec, dt), lowest)
                    wants.setdefault((dt.subscriber_id, dt.estimate_scope), []).append(want)
        allocation = Allocation()
        for (subscriber, _), tracks in wants.items():
            allocation.by_subscriber.setdefault(subscriber, []).extend(w[0] for w in tracks)
            if len(tracks) == 1:
                dt, need, priority, _ = tracks[0]
                allocation.grants[dt] = Grant(priority, need, None)
                continue
            budget = float(tracks[0][0].estimate_bps)
            split = share_budget(budget, [w[1] for w in tracks], floors=[w[3] for w in tracks],
                                 tiers=[w[2] for w in tracks])
            for (dt, need, priority, _), share in zip(tracks, split, strict=True):
                allocation.grants[dt] = Grant(priority, need, share)
        self.allocation = allocation

    def _priority(self, rec: PublishedTrack[DownTrack], dt: DownTrack) -> int:
        """Where `dt` is served from its subscriber's downlink (sfu.allocation.PRIORITIES): a screen
        share, the active speaker's camera, a camera its subscriber pinned, or another."""
        if rec.source == "screen":
            return SCREEN
        if rec.participant_id == self.speaker:
            return SPEAKER
        return PINNED if dt.pinned else OTHER

    def evaluate(self, now: float) -> None:
        tracks = [rec for rec in self.tracks() if rec.kind == "video"]
        self._update_peaks(tracks)
        views = {rec.id: _TrackView(rec, now, self._peaks) for rec in tracks}
        self._allocate(views)
        self._probe(now)
        for rec in tracks:
            view = views[rec.id]
            for dt in list(rec.downtracks):
                self._evaluate_downtrack(rec, dt, now, view)
                if dt.waiting_for_keyframe and dt.target is not None:  # (waiting implies a target)
                    # the PLI may have been lost or throttled, and Chromium sends no periodic
                    # keyframes: ask again
                    rec.request_keyframe(dt.target.rid, "keyframe still missing")
            self._update_dynacast(rec, now)

    def _demand(self, rec: PublishedTrack[DownTrack], layer: LayerInfo | Layer) -> float:
        """The rate `layer` needs (`_layer_need`): for a simulcast layer, its recent peak
        (`_update_peaks`) or a guess from its size. Its rate now would be nothing for a layer
        switched off, and little for one ramping up after being switched on: a subscriber asking
        for it would seem to ask for nothing. (Any other track's layer: its rate as measured.)"""
        if isinstance(layer, LayerInfo) or not rec.simulcast:
            return _rate(layer)
        return _layer_need(layer, self._peaks.get((rec.id, layer.rid)))

    def _update_peaks(self, tracks: list[PublishedTrack[DownTrack]]) -> None:
        """Hold each simulcast layer's rate at its recent peak, decaying by PEAK_DECAY per
        evaluation: a send-side estimate is judged against what a layer needs once it runs, not
        what it sends in its first second after dynacast switched it back on."""
        peaks = self._peaks
        for rec in tracks:
            if not rec.simulcast:
                continue
            for layer in rec.layers.values():
                key = (rec.id, layer.rid)
                peaks[key] = max(layer.bitrate, peaks.get(key, 0.0) * PEAK_DECAY)

    def _probe(self, now: float) -> None:
        """Probe the downlink of each subscriber with a send-side estimate below what its video needs
        one layer up (sfu.prober): padding up to that with headroom (at most PROBE_GROWTH times the
        estimate), for PROBE_S. A probe that did not lift the estimate to most of its goal, or did
        not lift it at all, backs off (PROBE_BACKOFF_MIN_S doubling to PROBE_BACKOFF_MAX_S); one that
        did lets the next go at once, so a wide link is found in a few steps."""
        for subscriber, wants in self.allocation.demands().items():
            dt = wants[0][0]
            transport = dt.transport
            estimator = getattr(transport, "estimator", None)
            prober = getattr(transport, "prober", None)
            if estimator is None or prober is None or not dt.estimate_bps:
                continue
            state = self._probes.get(subscriber)
            if state is None:
                state = self._probes[subscriber] = ProbeState()
            estimate = float(dt.estimate_bps)
            if state.goal and not prober.running and now - prober.ended_at >= PROBE_SETTLE_S:
                judge_probe(state, estimate, now)  # the last probe's result is in
            demand = sum(self._next_step(w[0], w[1]) for w in wants) * UP_HEADROOM
            if (state.goal or prober.running or now < state.retry_at or estimate >= demand
                    or any((w[0].recent_loss(now) or 0.0) > HIGH_LOSS for w in wants)):
                continue  # (a link losing a few percent at random may still be wide: it is probed)
            goal = min(demand, PROBE_GROWTH * estimate)
            padding = goal - estimator.acked_bps()
            carrier = next((w[0] for w in wants if w[0].current is not None and w[0].slot is not None
                            and w[0].slot.rtx_pt), None)
            if carrier is not None and padding > 0 and prober.start(carrier, padding, PROBE_S):
                state.goal, state.from_bps = goal, estimate
                STATS.probes += 1

    def _next_step(self, dt: DownTrack, top: float) -> float:
        """The rate `dt` needs one simulcast layer above its current one (within its request; `top`,
        its request's, for other tracks): what a probe for it has to show the link carries.

        A DownTrack thinned to some of its layer's temporal layers (`temporal_cap`) steps up by its
        next temporal step first (x 1.5 or x 1.67 of what it receives, on the layer's average rate as
        `temporal_cap` judges it), a ladder of small probes. Probing for the layer above from there
        asked the link for 3 x the estimate at once, which beside a TCP download mostly failed:
        a subscriber stayed at 7.5 fps and ~40 kbit/s for 10 s (tests/e2e/browser/test_fairness.py)."""
        rec = dt.track
        if dt.current is not None and dt.max_tid is not None:
            return _rate(dt.current) * (TEMPORAL_SHARES[1] if dt.max_tid == 0 else 1.0)
        if not rec.simulcast or dt.current is None:
            return top
        layers = sorted(rec.layers.values(), key=lambda x: x.index)
        want = requested_index(layers, dt.request_layer, dt.request_width, dt.request_height)
        above = [x for x in layers if want is not None and dt.current.index < x.index <= want]
        return self._demand(rec, above[0] if above else dt.current)

    def _evaluate_now(self, downtracks: list[DownTrack]) -> None:
        """One subscriber's `downtracks` judged now, with one allocation for all of them."""
        if not downtracks:
            return
        now = time.monotonic()
        self._allocate(now=now)
        for dt in downtracks:
            rec = dt.track
            self._evaluate_downtrack(rec, dt, now, _TrackView(rec, now, self._peaks))
            self._update_dynacast(rec, now)

    def evaluate_one(self, rec: PublishedTrack[DownTrack], dt: DownTrack) -> None:
        now = time.monotonic()
        self._allocate(now=now)  # a changed request changes the subscriber's demands
        self._evaluate_downtrack(rec, dt, now, _TrackView(rec, now, self._peaks))
        self._update_dynacast(rec, time.monotonic())

    @staticmethod
    def estimate(dt: DownTrack, now: float, share: float | None = None,
                 single_layer: bool | None = None) -> float | None:
        """The subscriber's downlink estimate as the policy uses it for `dt`: its transport-wide
        estimate or REMB (None before the first), or `share` of it when the subscriber receives more
        than one video track, for a track without simulcast raised to what its receiver reports show
        it receiving without loss (`delivered_floor`).

        Only without simulcast: there a low estimate can only cost frames (thinning) or the picture
        (a pause), so it takes more than the client's word — loss, or the subscriber falling behind.
        With simulcast a low estimate moves the subscriber to a lower layer at full frame rate, a
        cheap step that is undone as the estimate recovers, and a squeezed downlink must be able to
        cause it before it shows as loss (delay-based estimators exist to act before loss).
        `single_layer`: whether `dt`'s track is neither (worked out when not given)."""
        if not dt.estimate_bps:
            return None
        estimate = float(dt.estimate_bps) if share is None else share
        if dt.current is None or dt.delivered_at is None:
            return estimate
        if single_layer is None:
            single_layer = len(dt.track.layers) <= 1 and spatial_layers(dt.track) is None
        if not single_layer:
            return estimate
        floor = delivered_floor(dt.delivered_bps, dt.delivered_share, now - dt.delivered_at,
                                dt.recent_loss(now), _rate(dt.current))
        return max(estimate, floor)

    def explain(self, subscriber_id: str, downtracks: Iterable[DownTrack], now: float) -> dict[str, Any]:
        """Why each of a subscriber's video DownTracks gets the layer it gets (the protocol's
        `allocation` reply): its estimate, the pacing rate and playout delay of its transport, and per
        track its priority, what its request needs, its
        share of the estimate, the layer aimed at and forwarded, and a sentence (`sfu.allocation.why`).
        From the last allocation round and the DownTracks' state; nothing is recomputed."""
        video = [dt for dt in downtracks if dt.is_video]
        estimate = self.estimates.get(subscriber_id)
        send_side = any(_send_side(dt) for dt in video)
        tracks = [self._explain_one(dt, estimate, send_side, now) for dt in video]
        transport = video[0].transport if video else None  # (one subscribe transport carries them all)
        return {"estimate": estimate, "estimator": None if estimate is None else
                "transport-cc" if send_side else "remb",
                "pacing_bps": round(transport.pacing.bps) if transport is not None else 0,
                "playout_delay_ms": transport.playout_delay.min_ms if transport is not None else None,
                "tracks": tracks}

    def _explain_one(self, dt: DownTrack, estimate: int | None, send_side: bool, now: float) -> dict[str, Any]:
        rec = dt.track
        spatial = spatial_layers(rec)
        choices: list[LayerInfo] | list[Layer] = spatial if spatial is not None else sorted(
            rec.layers.values(), key=lambda x: x.index)

        def name(x: LayerInfo | Layer | None) -> str | None:
            return None if x is None else x.rid if not isinstance(x, LayerInfo) else f"S{x.index}"

        want = requested_index(choices, dt.request_layer, dt.request_width, dt.request_height)
        requested = pick(choices, want) if choices else None  # type: ignore[arg-type]
        aimed: LayerInfo | Layer | None
        forwarded: LayerInfo | Layer | None
        if spatial is not None:
            aimed = None if dt.target is None else spatial[min(dt.target_sid, len(spatial) - 1)]
            forwarded = None if dt.current is None else spatial[min(dt.max_sid, len(spatial) - 1)]
        else:
            aimed, forwarded = dt.target, dt.current
        above = None
        if aimed is not None and requested is not None:
            higher = [x for x in choices if aimed.index < x.index <= requested.index]
            if higher:
                above = (name(higher[0]) or "", self._demand(rec, higher[0]))
        grant = self.allocation.grants.get(dt)
        priority = PRIORITIES[grant.priority if grant is not None else self._priority(rec, dt)]
        shared = grant is not None and grant.share is not None
        usable = self.estimate(dt, now, self.allocation.share(dt))
        thinned = dt.max_tid if aimed is not None else None
        return {
            "track": rec.id, "participant": rec.participant_id, "source": rec.source, "priority": priority,
            "pinned": dt.pinned, "requested": None if want is None else name(requested),
            "layer": name(aimed), "forwarding": name(forwarded), "temporal": dt.max_tid, "paused": dt.paused,
            "need_bps": None if grant is None else round(grant.need),
            "share_bps": None if usable is None else round(usable), "reason": dt.target_reason,
            "why": why(requested=None if want is None else name(requested), layer=name(aimed), above=above,
                       usable=usable, estimate=None if estimate is None else float(estimate),
                       estimator=None if estimate is None else "transport-cc" if send_side else "remb",
                       reason=dt.target_reason, pause_reason=dt.pause_reason, thinned=thinned,
                       priority=priority, shared=shared),
        }

    def _evaluate_downtrack(self, rec: PublishedTrack[DownTrack], dt: DownTrack, now: float,
                            view: _TrackView) -> None:
        if view.spatial is not None:
            self._evaluate_spatial(rec, dt, view, now)
            return
        layers = view.layers
        send_side = _send_side(dt)
        available = view.available_peak if send_side else view.available
        requested = view.requested(dt)
        estimate = self.estimate(dt, now, self.allocation.share(dt), view.single_layer)
        state = self.state(dt)
        state.current = dt.current.index if dt.current is not None else (
            dt.target.index if dt.target is not None else None)
        decision = decide(state, available, requested, estimate, dt.recent_loss(now), now, send_side,
                          min((x.index for x in layers), default=None), view.available)
        target = None if decision.target is None else next((x for x in layers if x.index == decision.target), None)
        dt.max_tid = decision.max_tid
        was_paused = dt.paused
        if target is not dt.target or (target is None) != was_paused:
            dt.set_target(target, decision.reason)
            if (target is None) != was_paused and self.notify is not None:
                self.notify(dt.subscriber_id, {"type": "paused", "track": rec.id, "paused": target is None,
                                               "reason": decision.reason})

    def _evaluate_spatial(self, rec: PublishedTrack[DownTrack], dt: DownTrack, view: _TrackView,
                          now: float) -> None:
        """`decide` over an SVC stream's spatial layers: the DownTrack forwards the stream, capped at
        the spatial layer decided (down at the next picture, up at a key picture)."""
        spatial = view.spatial
        assert spatial is not None
        stream = view.layers[0]
        available = spatial if stream.arriving(now) else []
        requested = view.requested(dt)
        state = self.state(dt)
        state.current = None if dt.target is None else min(dt.target_sid, spatial[-1].index)
        decision = decide(state, available, requested, self.estimate(dt, now, self.allocation.share(dt), False),
                          dt.recent_loss(now), now, _send_side(dt))
        dt.max_tid = decision.max_tid
        was_paused = dt.paused
        if decision.target is None:
            if dt.target is not None or not was_paused:
                dt.set_target(None, decision.reason)
        else:
            if dt.target is not stream or was_paused:
                dt.set_target(stream, decision.reason)
            dt.set_spatial(decision.target, decision.reason)
        if (decision.target is None) != was_paused and self.notify is not None:
            self.notify(dt.subscriber_id, {"type": "paused", "track": rec.id, "paused": decision.target is None,
                                           "reason": decision.reason})
        self._tell_spatial(rec, dt, state, spatial[-1].index)

    def _tell_spatial(self, rec: PublishedTrack[DownTrack], dt: DownTrack, state: SelectorState, top: int) -> None:
        """`layer_changed` with `spatial` when the spatial layer forwarded to `dt` has changed since the
        last evaluation (the DownTrack switches at a picture, so this reports what it did)."""
        current = dt.current
        sid = min(dt.max_sid, top)
        if current is None or sid == state.forwarded_sid:
            return
        before, state.forwarded_sid = state.forwarded_sid, sid
        if before is not None and self.notify is not None:
            self.notify(dt.subscriber_id, {"type": "layer_changed", "track": rec.id, "layer": current.rid,
                                           "spatial": sid, "reason": dt.target_reason})

    def _wanted(self, rec: PublishedTrack[DownTrack], dt: DownTrack, now: float) -> Layer | None:
        """The layer this subscriber should get, judged over every layer the publisher announced.

        Layers that dynacast switched off are not arriving, so the selector cannot pick them; this
        is what asks for them back.
        """
        layers = sorted(rec.layers.values(), key=lambda x: x.index)
        requested = requested_index(layers, dt.request_layer, dt.request_width, dt.request_height)
        if requested is None or not layers:
            return None
        fitting = [x for x in layers if x.index <= requested]
        estimate = self.estimate(dt, now, self.allocation.share(dt))
        if estimate and dt.current is not None:
            cur = _rate(dt.current)
            if cur > estimate * DOWN_TOLERANCE:
                # the current layer no longer fits: ask for the best one that does, even if it is
                # switched off now (the selector can only move down to layers that are arriving;
                # a layer switched off is judged by what it needed when it ran)
                fitting_now = [x for x in fitting if self._demand(rec, x) <= estimate * DOWN_TOLERANCE]
                return fitting_now[-1] if fitting_now else layers[0]
            # keep the layer above the current one warm when the selector may probe it, and beyond
            # it only a layer the selector would step up to (what it needs, with the headroom of a
            # step up): wanting a layer it never takes, by its rate now, left the one between
            # switched off and the subscriber below both (tests/unit/sfu/test_send_side.py)
            reach = dt.current.index + (1 if estimate >= cur * PROBE_HEADROOM else 0)
            affordable = [x for x in fitting
                          if x.index <= reach or self._demand(rec, x) * UP_HEADROOM <= estimate]
            return affordable[-1] if affordable else layers[0]
        return fitting[-1] if fitting else layers[0]

    def _update_dynacast(self, rec: PublishedTrack[DownTrack], now: float) -> None:
        """Tell the publisher which simulcast layers anyone needs; unneeded ones stop being encoded."""
        if self.notify is None:
            return
        if not rec.simulcast:
            self._update_spatial_dynacast(rec)
            return
        needed = set()
        for dt in rec.downtracks:
            for layer in (dt.target, dt.current, self._wanted(rec, dt, now)):
                if layer is not None:
                    needed.add(layer.rid)
            if (dt.paused and dt.pause_reason == "bandwidth") or _send_side(dt):
                # keep the lowest layer coming so the subscriber can resume
                needed.add(min(rec.layers.values(), key=lambda x: x.index).rid)
            if _send_side(dt) and dt.current is not None:
                # and, for a send-side estimate, the layer below the current one: a link that
                # narrows is then followed one step down at once, rather than to the bottom or after
                # the seconds a browser takes to start encoding a layer again
                below = [x for x in rec.layers.values() if x.index < dt.current.index]
                if below:
                    needed.add(max(below, key=lambda x: x.index).rid)
        for relay in rec.relays:
            # another node's subscribers (sfu.cascade): what its selector said, or all until it has
            needed |= set(rec.layers) if relay.needed is None else relay.needed & set(rec.layers)
        active = tuple(sorted(needed, key=lambda rid: rec.layers[rid].index))
        if self._dynacast.get(rec.id) != active:
            self._dynacast[rec.id] = active
            self.notify(rec.participant_id, {"type": "dynacast", "track": rec.id, "active": list(active)})

    def _update_spatial_dynacast(self, rec: PublishedTrack[DownTrack]) -> None:
        """Tell an SVC publisher how many spatial layers anyone needs (`spatial`: the lowest that many;
        SPATIAL, all it can, when someone wants the top one seen; 0 and no active encoding when nobody
        subscribes): the top ones nobody asked for stop being encoded. Requests are judged against
        the most spatial layers the stream has had, so asking for a layer dynacast has switched off
        asks for it back."""
        if len(rec.layers) != 1 or self.notify is None:
            return
        stream = next(iter(rec.layers.values()))
        full = self._svc_sizes.get(rec.id, ())
        if stream.spatial_sizes and len(stream.spatial_sizes) >= len(full):
            # (as many layers as ever: their sizes now, which the encoder may have changed)
            full = self._svc_sizes[rec.id] = stream.spatial_sizes
        if len(full) < 2:
            return  # not SVC (or its first key picture is still to come)
        infos = [LayerInfo(sid, 0.0, width, height) for sid, (width, height) in enumerate(full)]
        wanted = [requested_index(infos, dt.request_layer, dt.request_width, dt.request_height)
                  for dt in rec.downtracks]
        spatial = max((w + 1 for w in wanted if w is not None), default=0)
        for relay in rec.relays:  # another node's subscribers: what it said, or all until it has
            spatial = max(spatial, SPATIAL if relay.spatial is None else relay.spatial)
        if spatial == len(full):
            # the top layer seen: all the publisher can encode, which may be more (an encoder that was
            # ramping up when its key picture came, or one dynacast asked for fewer before we saw all)
            spatial = SPATIAL
        announced = (stream.rid, str(spatial)) if spatial else ()
        if self._dynacast.get(rec.id) != announced:
            self._dynacast[rec.id] = announced
            self.notify(rec.participant_id, {"type": "dynacast", "track": rec.id,
                                             "active": [stream.rid] if spatial else [], "spatial": spatial})
