"""SendSideEstimator: a subscriber's downlink bandwidth, estimated by the SFU from transport-wide feedback.

This is Google Congestion Control's sender side (draft-ietf-rmcat-gcc-02, as libwebrtc, LiveKit and
mediasoup run it), fed with what `sfu.twcc` parses: for each packet sent, when it left and when (or
whether) it arrived.

* **Delay-based:** packets sent within 5 ms form a group; the change of one-way delay between groups
  (arrival spacing minus send spacing) is accumulated and smoothed, and the slope of its last 20
  points (the trendline) says whether a queue is building on the path. Above an adaptive threshold
  for more than 10 ms the path is over-used; below its negative, under-used.
* **Rate control (AIMD):** over-use sets the estimate to 0.85 of the rate the subscriber received
  (acknowledged), again at most once per REDUCE_INTERVAL_S while it lasts (libwebrtc's
  `TimeToReduceFurther`) unless what arrives fell below half the estimate; while the path is
  normal the estimate grows, by 8 % a second far from the last over-use's rate, additively (about a
  packet per response time) near it. It never grows beyond 1.5
  times what was acknowledged plus 10 kbit/s: an estimate must be earned by traffic.
* **Loss-based:** above 10 % loss the estimate drops by half the loss (at most every 300 ms, and not
  below 0.85 of what still arrives), below 2 % the loss limit lifts by 8 % a second.
* **Start:** 300 kbit/s until half a second of arrivals is in, as libwebrtc starts; a subscriber
  then starts low and is probed up (sfu.prober) rather than starting high on a link that may be
  narrow.
* **What is demonstrably received is a floor** while the path is normal and loss-free: a subscriber
  receiving X without a queue building and without loss has at least X (the robustness rule of issue
  #15: an estimate must not contradict delivery). A higher layer tried as a probe is therefore
  confirmed by the feedback itself.

Sans-IO: times are seconds from the caller's clock (sending) and µs from the receiver's clock
(arrival, only differences used); the unit tests drive it with an emulated bottleneck.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

START_BPS = 300_000  # before anything is measured, as libwebrtc starts; probes take it up from there
BURST_S = 0.005  # packets sent within this of a group's first belong to it
TRENDLINE_WINDOW = 20
TRENDLINE_SMOOTHING = 0.9
TRENDLINE_GAIN = 4.0
OVERUSE_TIME_MS = 10.0
THRESHOLD_INITIAL = 12.5
THRESHOLD_UP = 0.0087  # k_u: how fast the threshold follows a larger trend
THRESHOLD_DOWN = 0.039  # k_d: and a smaller one
DECREASE = 0.85  # beta: an over-use sets the estimate to this share of the acknowledged rate
INCREASE_PER_S = 1.08  # multiplicative increase, far from the link's known capacity
RESPONSE_S = 0.2  # assumed round trip plus feedback interval, for the additive increase
ACKED_WINDOW_S = 0.5
OVERUSE_WINDOW_S = 0.2
LOSS_HIGH = 0.10
LOSS_LOW = 0.02
LOSS_MIN_PACKETS = 20
# A further over-use decrease waits this long: the last one must have had time to show. An SFU cuts
# its rate at once (a layer down), and what is acknowledged falls with it while the queue it left
# behind still reads as over-use: each decrease at the next feedback compounded, 260 -> 55 kbit/s in
# 0.6 s beside a TCP download (tests/e2e/browser/test_fairness.py). libwebrtc waits a round trip,
# clamped to 10-200 ms; the queue behind a congested access link is most of that round trip.
REDUCE_INTERVAL_S = 0.2
LOSS_DECREASE_INTERVAL_S = 0.3  # libwebrtc: a loss-based decrease at most once per 300 ms (plus the RTT)


class _Trendline:
    """The delay-gradient detector: `update` returns "overusing", "underusing" or "normal"."""

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque(maxlen=TRENDLINE_WINDOW)
        self.accumulated = 0.0
        self.smoothed = 0.0
        self.deltas = 0
        self.first_arrival_ms: float | None = None
        self.threshold = THRESHOLD_INITIAL
        self.last_threshold_ms: float | None = None
        self.time_over_ms = -1.0
        self.overuse_count = 0
        self.prev_trend = 0.0
        self.state = "normal"

    def update(self, delay_delta_ms: float, send_delta_ms: float, arrival_ms: float) -> str:
        self.deltas = min(self.deltas + 1, 1000)
        self.accumulated += delay_delta_ms
        self.smoothed = TRENDLINE_SMOOTHING * self.smoothed + (1 - TRENDLINE_SMOOTHING) * self.accumulated
        if self.first_arrival_ms is None:
            self.first_arrival_ms = arrival_ms
        self.points.append((arrival_ms - self.first_arrival_ms, self.smoothed))
        if len(self.points) == TRENDLINE_WINDOW:
            slope = _slope(self.points)
            if slope is not None:
                self._detect(min(self.deltas, 60) * slope * TRENDLINE_GAIN, send_delta_ms, arrival_ms)
        return self.state

    def _detect(self, trend: float, send_delta_ms: float, now_ms: float) -> None:
        if trend > self.threshold:
            self.time_over_ms = send_delta_ms / 2 if self.time_over_ms < 0 else self.time_over_ms + send_delta_ms
            self.overuse_count += 1
            if self.time_over_ms > OVERUSE_TIME_MS and self.overuse_count > 1 and trend >= self.prev_trend:
                self.time_over_ms, self.overuse_count = 0.0, 0
                self.state = "overusing"
        elif trend < -self.threshold:
            self.time_over_ms, self.overuse_count = -1.0, 0
            self.state = "underusing"
        else:
            self.time_over_ms, self.overuse_count = -1.0, 0
            self.state = "normal"
        self.prev_trend = trend
        self._adapt(trend, now_ms)

    def _adapt(self, trend: float, now_ms: float) -> None:
        # the threshold follows the trend, slowly up and faster down, so that a path whose delay
        # varies anyway (Wi-Fi) is not read as congested, and a steady one stays sensitive
        if self.last_threshold_ms is None:
            self.last_threshold_ms = now_ms
        if abs(trend) > self.threshold + 15:  # a spike (a route change, a stall): not the path's nature
            self.last_threshold_ms = now_ms
            return
        k = THRESHOLD_DOWN if abs(trend) < self.threshold else THRESHOLD_UP
        elapsed = min(now_ms - self.last_threshold_ms, 100.0)
        self.threshold = min(max(self.threshold + k * (abs(trend) - self.threshold) * elapsed, 6.0), 600.0)
        self.last_threshold_ms = now_ms


def _slope(points: Iterable[tuple[float, float]]) -> float | None:
    pts = list(points)
    n = len(pts)
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    den = sum((p[0] - mx) ** 2 for p in pts)
    if den == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den


class SendSideEstimator:
    """One subscriber transport's downlink estimate. Feed it `on_packets` with every feedback's
    packets; read `estimate_bps` (`start_bps` until a whole window of arrivals says more)."""

    def __init__(self, start_bps: float = START_BPS, min_bps: float = 30_000, max_bps: float = 50_000_000) -> None:
        self.min_bps, self.max_bps = min_bps, max_bps
        self.delay_bps: float | None = start_bps
        self.loss_bps: float | None = None  # None: loss does not limit
        self.trendline = _Trendline()
        self.state = "normal"
        self.rate_state = "increase"  # AIMD: "increase", "hold" or "decrease"
        self.capacity_bps: float | None = None  # the acknowledged rate at the last over-use (smoothed)
        self._acked: deque[tuple[float, int]] = deque()  # (arrival s, bytes)
        self._acked_bytes = 0
        self._first_arrival: float | None = None
        self._group: list[float] | None = None  # [first send, last send, last arrival ms, size]
        self._prev_group: list[float] | None = None
        self._last_update: float | None = None
        self._last_decrease = -1e9
        self._loss_sent = self._loss_lost = 0
        self._last_loss_update: float | None = None
        self._last_loss_decrease = -1e9
        self.loss = 0.0  # the loss fraction of the last complete loss interval
        self.overuses = 0

    @property
    def estimate_bps(self) -> float | None:
        if self.delay_bps is None:
            return None
        estimate = self.delay_bps if self.loss_bps is None else min(self.delay_bps, self.loss_bps)
        return min(max(estimate, self.min_bps), self.max_bps)

    def acked_bps(self, window: float = ACKED_WINDOW_S) -> float:
        """What the subscriber received over the last `window` seconds of arrivals (at most
        ACKED_WINDOW_S), in bits/s."""
        if window >= ACKED_WINDOW_S:
            return self._acked_bytes * 8 / ACKED_WINDOW_S
        if not self._acked:
            return 0.0
        since = self._acked[-1][0] - window
        return sum(size for at, size in self._acked if at > since) * 8 / window

    def on_packets(self, now: float, packets: Iterable[tuple[float, int, int | None]]) -> None:
        """One feedback's packets, in sending order: (send time s, bytes, arrival µs or None for lost)."""
        sent = lost = 0
        for send_s, size, arrival_us in packets:
            sent += 1
            if arrival_us is None:
                lost += 1
                continue
            arrival = arrival_us / 1e6
            self._ack(arrival, size)
            self._group_packet(send_s, arrival * 1000, size)
        self._loss_sent += sent
        self._loss_lost += lost
        self._update(now)

    def _ack(self, arrival: float, size: int) -> None:
        if self._first_arrival is None:
            self._first_arrival = arrival
        acked = self._acked
        acked.append((arrival, size))
        self._acked_bytes += size
        while acked and acked[0][0] < arrival - ACKED_WINDOW_S:
            self._acked_bytes -= acked.popleft()[1]

    def _group_packet(self, send_s: float, arrival_ms: float, size: int) -> None:
        group = self._group
        if group is not None and send_s - group[0] <= BURST_S:
            group[1] = max(group[1], send_s)
            group[2] = max(group[2], arrival_ms)
            group[3] += size
            return
        if group is not None:
            prev = self._prev_group
            if prev is not None:
                send_delta_ms = (group[1] - prev[1]) * 1000
                arrival_delta_ms = group[2] - prev[2]
                if arrival_delta_ms >= 0 and send_delta_ms >= 0:  # (reordered groups say nothing)
                    self.state = self.trendline.update(arrival_delta_ms - send_delta_ms, send_delta_ms, group[2])
                    if self.state == "overusing":
                        self.overuses += 1
            self._prev_group = group
        self._group = [send_s, send_s, arrival_ms, size]

    def _update(self, now: float) -> None:
        acked = self.acked_bps()
        if self._first_arrival is None or self._acked[-1][0] - self._first_arrival < ACKED_WINDOW_S:
            return  # not a whole window of arrivals yet: too early to say anything
        elapsed = 0.0 if self._last_update is None else min(max(now - self._last_update, 0.0), 1.0)
        self._last_update = now
        self._rate_control(acked, elapsed, now)
        self._loss_control(now)

    def _rate_control(self, acked: float, elapsed: float, now: float) -> None:
        current = float(self.delay_bps or 0.0)
        if self.state == "overusing":
            # A queue is building: what arrives now arrives at the bottleneck's rate. The last
            # OVERUSE_WINDOW_S says that better than the whole window, which still holds what was
            # sent before the rise that caused it (a probe's first half, say)
            acked = max(acked, self.acked_bps(OVERUSE_WINDOW_S))
            if (DECREASE * acked < current
                    and (now - self._last_decrease >= REDUCE_INTERVAL_S or acked < 0.5 * current)):
                current = DECREASE * acked
                self._last_decrease = now
                self.capacity_bps = acked if self.capacity_bps is None else 0.95 * self.capacity_bps + 0.05 * acked
            self.rate_state = "hold"
        elif self.state == "underusing":
            self.rate_state = "hold"  # queues are draining: wait for them before asking for more
        else:
            if self.rate_state == "hold":
                self.rate_state = "increase"
            elif self.rate_state == "increase":
                if self.capacity_bps is not None and acked > self.capacity_bps * 1.5:
                    self.capacity_bps = None  # the link is not what it was at the last over-use
                if self.capacity_bps is not None and current > self.capacity_bps * 0.8:
                    # near the rate that over-used before: about one packet more per response time
                    current += max(1000.0, 1200 * 8 / RESPONSE_S * elapsed)
                else:
                    current += max(1000.0, current * (INCREASE_PER_S ** elapsed - 1))
                # (a ceiling on growth, not a cut: an estimate above it stays until the path says otherwise)
                current = min(current, max(1.5 * acked + 10_000, float(self.delay_bps or 0.0)))
            if self.loss < LOSS_LOW:
                current = max(current, acked)  # what arrives without a queue or loss: at least that
        self.delay_bps = min(max(current, self.min_bps), self.max_bps)

    def _loss_control(self, now: float) -> None:
        if self._loss_sent < LOSS_MIN_PACKETS:
            return
        elapsed = 0.0 if self._last_loss_update is None else min(now - self._last_loss_update, 1.0)
        self._last_loss_update = now
        self.loss = self._loss_lost / self._loss_sent
        self._loss_sent = self._loss_lost = 0
        base = self.estimate_bps or 0.0
        if self.loss > LOSS_HIGH:
            if now - self._last_loss_decrease >= LOSS_DECREASE_INTERVAL_S:
                # never below most of what still arrives: a sender that does not slow down (a
                # layer being switched away from) keeps losing, and each decrease would compound
                self._last_loss_decrease = now
                self.loss_bps = max(base * (1 - 0.5 * self.loss), DECREASE * self.acked_bps())
        elif self.loss < LOSS_LOW and self.loss_bps is not None:
            self.loss_bps *= INCREASE_PER_S ** max(elapsed, 0.0)
            if self.delay_bps is not None and self.loss_bps >= self.delay_bps:
                self.loss_bps = None
        if self.loss_bps is not None and not math.isfinite(self.loss_bps):
            self.loss_bps = None
