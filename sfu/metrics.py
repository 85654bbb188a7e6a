"""Media-plane metrics.

The per-packet path only bumps plain integer attributes on one process-wide object; a Prometheus
collector reads them at scrape time. The packet and byte counters live in `MediaStats.traffic`, a
`_native.Traffic` (C members) when the extension is built, so the native path counts without a
Python call; the Python code adds to the same fields. A prometheus_client Counter.inc() takes a lock and costs more
than a header rewrite, and per-room labels would explode cardinality, so neither is used per packet.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# (name, help, label, {label value: value}): per-layer and per-reason views of the node
LabelledGauge = tuple[str, str, str, dict[str, float]]

try:
    from sfu._native import Traffic, gso_state, pace_state
except ImportError:  # not built: the same fields in Python
    gso_state = pace_state = None

    class Traffic:  # type: ignore[no-redef]
        """The packet and byte counters (twin of `_native.Traffic`)."""

        __slots__ = ("packets_in", "bytes_in", "packets_out", "bytes_out", "latency_sample", "latency_every")

        def __init__(self) -> None:
            self.packets_in = self.bytes_in = self.packets_out = self.bytes_out = self.latency_sample = 0
            self.latency_every = 1


LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


def _traffic_field(name: str) -> property:
    """A MediaStats attribute that is `self.traffic.<name>`."""
    return property(lambda self: getattr(self.traffic, name),
                    lambda self, value: setattr(self.traffic, name, value))


class MediaStats:
    """Process-wide media counters (one SFU process = one node)."""

    # observe one ingress packet in 32: the histogram is a sample, not a census (30+ samples a second
    # per 1,000 packets/s); a Histogram.observe costs ~1.2 us (lock + bucket search), which sampling
    # one in four added as ~0.3 us to every packet's ingress (~2.7 us in all on the native path)
    LATENCY_SAMPLE = 32

    def __init__(self) -> None:
        self.traffic = Traffic()  # one object for the process's life: native code keeps a reference
        self.traffic.latency_every = self.LATENCY_SAMPLE
        self.reset()
        self.latency = Histogram(
            "basement_forward_latency_seconds",
            "Time from a packet leaving SRTP decryption to its last forwarded copy being sent",
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        # read at scrape time; set by the node that owns this process (`register_gauges`)
        self.gauges: Callable[[], dict[str, float]] = dict
        self.labelled_gauges: Callable[[], list[LabelledGauge]] = list
        # the open media sockets (sfu.media_socket transports; weak: the set never keeps one alive)
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()

    def register_gauges(self, gauges: Callable[[], dict[str, float]],
                        labelled_gauges: Callable[[], list[LabelledGauge]] = list) -> None:
        """Where the collector reads the node's current state (rooms, participants, layers) from.

        One SFU process is one node, so there is one source: a later registration replaces the
        earlier one (a test that builds several nodes gets the last one's).
        """
        self.gauges = gauges
        self.labelled_gauges = labelled_gauges

    # the traffic counters under their names (per packet, code adds to `traffic`'s fields directly)
    packets_in = _traffic_field("packets_in")
    bytes_in = _traffic_field("bytes_in")
    packets_out = _traffic_field("packets_out")
    bytes_out = _traffic_field("bytes_out")

    def reset(self) -> None:
        t = self.traffic
        t.packets_in = t.bytes_in = t.packets_out = t.bytes_out = t.latency_sample = 0
        self.rtx_unwrapped = 0
        # received from publishers but not a layer's media (never in basement_layer_bitrate_bps)
        self.rtx_repair_packets = 0  # RTX retransmissions of packets we were missing (forwarded)
        self.rtx_repair_bytes = 0
        self.rtx_copy_packets = 0  # RTX copies of packets we already had: bandwidth probes (dropped)
        self.rtx_copy_bytes = 0
        self.padding_packets = 0  # padding-only probes, on the media or the RTX SSRC (dropped)
        self.padding_bytes = 0
        self.nacks_in = 0  # NACKs from subscribers
        self.nacks_out = 0  # NACKs we sent to publishers
        self.plis_in = 0
        self.plis_out = 0
        self.retransmissions = 0
        self.nack_misses = 0
        # NACKed numbers answered with padding: a recycled m-line's previous track's, or superseded
        self.nack_padding = 0
        self.rtcp_out = 0
        # rooms spanning nodes (sfu.relay): packets relayed to other nodes, and NACKed ones resent
        self.relayed_packets_out = 0
        self.relayed_bytes_out = 0
        self.relay_resent = 0
        self.layer_switches = 0
        # bandwidth probes (sfu.prober): padding sent to subscribers to test their downlink
        self.probes = 0
        self.probe_packets = 0
        self.probe_bytes = 0
        # transport-wide feedback sent to publishers (sfu.transport_arrivals): their own estimators
        # set their encoders' rates from it
        self.transport_feedback_out = 0
        # playout delays set or changed for subscribers whose links lose packets (sfu.playout_delay)
        self.playout_delay_changes = 0
        # video packets that waited for a subscriber's pacer (sfu.pacing), on the Python path (the
        # native Egresses count theirs in C: `_native.pace_state`), and of them those a bound let go
        self.paced = 0
        self.pace_forced = 0
        self.consent_expired = 0  # ICE connections closed because no consent check was answered in 30 s
        # participants who left, by reason (node.LEAVE_REASONS), and transports that ended without
        # our closing them, by (target, cause): each a fixed set
        self.left: dict[str, int] = {}
        self.transports_ended: dict[tuple[str, str], int] = {}
        self.rtx_suppressed_interval = 0  # NACKed again within the subscriber's RTT
        self.rtx_suppressed_budget = 0  # over the retransmission byte budget
        # too old to help, or its loss run is (downtrack.RTX_MAX_AGE_S), or superseded by a key frame
        self.rtx_suppressed_stale = 0
        self.dropped: dict[str, int] = {}
        # datagrams, reads and receive errors of the media sockets already closed
        self.socket_totals = [0, 0, 0]
        self.task_errors: dict[str, int] = {}  # periodic task name (a fixed set) -> failed rounds
        self._task_error_logged: dict[str, float] = {}

    def socket_counts(self) -> tuple[int, int, int]:
        """(datagrams read, reads, receive errors) of every media socket, closed ones included."""
        datagrams, reads, errors = self.socket_totals
        for t in list(self.sockets):
            datagrams, reads, errors = datagrams + t.reader.received, reads + t.reader.calls, errors + t.reader.errors
        return datagrams, reads, errors

    def socket_closed(self, transport: Any) -> None:
        """Fold a closing media socket's counters into the totals (in one step: the sums never go back)."""
        if transport in self.sockets:
            r = transport.reader
            self.socket_totals = [self.socket_totals[0] + r.received, self.socket_totals[1] + r.calls,
                                  self.socket_totals[2] + r.errors]
            self.sockets.discard(transport)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def transport_ended(self, target: str, cause: str) -> None:
        self.transports_ended[(target, cause)] = self.transports_ended.get((target, cause), 0) + 1

    def participant_left(self, reason: str) -> None:
        self.left[reason] = self.left.get(reason, 0) + 1

    TASK_ERROR_LOG_INTERVAL = 60.0  # s; a loop failing every round logs once per this, not every round

    def task_error(self, task: str, log: logging.Logger, now: float | None = None) -> None:
        """Count a failed round of a periodic task; log its traceback at most once per interval.

        Call from an `except` block: the loop goes on, the failure stays visible in the metrics.
        """
        self.task_errors[task] = self.task_errors.get(task, 0) + 1
        now = time.monotonic() if now is None else now
        last = self._task_error_logged.get(task)
        if last is None or now - last >= self.TASK_ERROR_LOG_INTERVAL:
            self._task_error_logged[task] = now
            log.exception("%s failed (%d failed rounds so far; logged at most every %.0f s)", task,
                          self.task_errors[task], self.TASK_ERROR_LOG_INTERVAL)

    def observe_latency(self, arrival: float) -> None:
        """Time one forwarded packet in LATENCY_SAMPLE (IngressCore counts the same way in C)."""
        t = self.traffic
        t.latency_sample += 1
        if t.latency_sample >= t.latency_every:
            t.latency_sample = 0
            self.observe_latency_now(arrival)

    def observe_latency_now(self, arrival: float) -> None:
        self.latency.observe(max(0.0, _loop_time() - arrival))


def _loop_time() -> float:
    # PeerTransport stamps arrival with loop.time(), which is time.monotonic() on asyncio and uvloop
    return time.monotonic()


STATS = MediaStats()


class MediaCollector:
    """Exposes STATS (and the node's gauges) as basement_* metrics."""

    def __init__(self, stats: MediaStats, const_labels: dict[str, str] | None = None) -> None:
        self.stats = stats
        self.labels = const_labels or {}

    def collect(self) -> Iterable:
        s = self.stats
        names = list(self.labels)
        values = list(self.labels.values())

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            m = CounterMetricFamily(name, doc, labels=names)
            m.add_metric(values, value)
            return m

        yield counter("basement_packets_in", "RTP packets received from publishers", s.packets_in)
        yield counter("basement_bytes_in", "RTP bytes received from publishers", s.bytes_in)
        yield counter("basement_packets_out", "RTP packets forwarded to subscribers", s.packets_out)
        yield counter("basement_bytes_out", "RTP bytes forwarded to subscribers", s.bytes_out)
        yield counter("basement_nacks_received", "NACK packets received from subscribers", s.nacks_in)
        yield counter("basement_nacks_sent", "NACK packets sent to publishers", s.nacks_out)
        yield counter("basement_plis_received", "PLI/FIR packets received from subscribers", s.plis_in)
        yield counter("basement_plis_sent", "PLI packets sent to publishers", s.plis_out)
        yield counter("basement_retransmissions", "packets resent from the cache for NACKs", s.retransmissions)
        yield counter("basement_nack_cache_misses", "NACKed packets no longer cached", s.nack_misses)
        yield counter("basement_nack_padding_answers", "NACKed packets answered with padding (nothing worth "
                      "resending; the subscriber must not wait): a recycled m-line's previous track's, or "
                      "sent before the key frame the current layer began with", s.nack_padding)
        yield counter("basement_rtx_unwrapped", "RTX packets from publishers unwrapped", s.rtx_unwrapped)
        yield counter("basement_layer_switches", "simulcast layer switches", s.layer_switches)
        yield counter("basement_bandwidth_probes", "bandwidth probes started (padding that tests a subscriber's "
                      "downlink before a layer goes up)", s.probes)
        yield counter("basement_probe_bytes", "padding bytes sent to subscribers by bandwidth probes", s.probe_bytes)
        yield counter("basement_transport_feedback_out", "transport-wide congestion control feedback packets "
                      "sent to publishers", s.transport_feedback_out)
        yield counter("basement_playout_delay_changes", "playout delays set or changed for subscribers whose links "
                      "lose packets (their video is held for its retransmissions)", s.playout_delay_changes)
        paced, forced, _ = pace_state() if pace_state is not None else (0, 0, 0)
        yield counter("basement_paced_packets", "video packets that waited for a subscriber's pacer (a burst "
                      "above pacing_factor x its downlink estimate)", s.paced + paced)
        yield counter("basement_pace_forced_packets", "of those, the ones that went before the pacer allowed: "
                      "they had waited 0.5 s, or 512 were waiting", s.pace_forced + forced)
        yield counter("basement_relayed_packets_out", "RTP packets relayed to the other nodes (workers) of rooms "
                      "that span them", s.relayed_packets_out)
        yield counter("basement_relayed_bytes_out", "RTP bytes relayed to the other nodes (workers) of rooms "
                      "that span them", s.relayed_bytes_out)
        yield counter("basement_relay_resent", "relayed packets sent again for another node's NACKs",
                      s.relay_resent)
        yield counter("basement_ice_consent_expired", "ICE connections closed because consent to send expired "
                      "(RFC 7675: no consent check answered for 30 s)", s.consent_expired)
        left = CounterMetricFamily("basement_participants_left", "participants who left the node, by reason "
                                   "(left: said so; disconnected: signalling connection lost; removed: by the "
                                   "server, e.g. tokens left the wallet; node_lost; server_shutdown)",
                                   labels=[*names, "reason"])
        for reason, n in sorted(s.left.items()):
            left.add_metric([*values, reason], n)
        yield left
        ended = CounterMetricFamily("basement_transports_ended", "publish and subscribe connections that ended "
                                    "while their participant stayed, by target and cause (consent_expired: "
                                    "RFC 7675 consent; failed: ICE or DTLS failed; closed: the client closed it)",
                                    labels=[*names, "target", "cause"])
        for (target, cause), n in sorted(s.transports_ended.items()):
            ended.add_metric([*values, target, cause], n)
        yield ended
        datagrams, reads, read_errors = s.socket_counts()
        yield counter("basement_datagrams_received", "UDP datagrams read from the media sockets (native data "
                      "path: STUN, DTLS, SRTP and SRTCP alike)", datagrams)
        yield counter("basement_socket_reads", "wake-ups that read a media socket (datagrams per wake-up = "
                      "datagrams_received / socket_reads)", reads)
        yield counter("basement_socket_read_errors", "receive errors on the media sockets (queued ICMP errors)",
                      read_errors)
        if gso_state is not None:
            _, refused, sends, segmented = gso_state()
            yield counter("basement_udp_gso_sends", "segmented UDP sends (UDP_SEGMENT) of two or more datagrams "
                          "to one subscriber (native data path)", sends)
            yield counter("basement_udp_gso_datagrams", "datagrams that left in segmented sends", segmented)
            yield counter("basement_udp_gso_refused", "subscriber transports whose kernel or device refused a "
                          "segmented send (they send plain datagrams from then on)", refused)
        for unit, counts in (("packets", (s.rtx_repair_packets, s.rtx_copy_packets, s.padding_packets)),
                             ("bytes", (s.rtx_repair_bytes, s.rtx_copy_bytes, s.padding_bytes))):
            nonmedia = CounterMetricFamily(
                f"basement_nonmedia_{unit}_received",
                f"RTP {unit} from publishers that are not a layer's media, by kind (rtx_repair: a "
                "retransmission of a packet we were missing; rtx_copy: an RTX copy of a packet we had, "
                "i.e. a bandwidth probe; padding: a padding-only probe)", labels=[*names, "kind"])
            for kind, count in zip(("rtx_repair", "rtx_copy", "padding"), counts):
                nonmedia.add_metric([*values, kind], count)
            yield nonmedia
        suppressed = CounterMetricFamily("basement_retransmissions_suppressed",
                                         "NACKed packets not resent, by reason (interval: again within the "
                                         "subscriber's RTT; budget: over the retransmission byte budget; stale: "
                                         "forwarded over max(1 s, 3 RTT) ago, or in a loss run that began so, "
                                         "or before the key frame the current layer began with)",
                                         labels=[*names, "reason"])
        suppressed.add_metric([*values, "interval"], s.rtx_suppressed_interval)
        suppressed.add_metric([*values, "budget"], s.rtx_suppressed_budget)
        suppressed.add_metric([*values, "stale"], s.rtx_suppressed_stale)
        yield suppressed
        errors = CounterMetricFamily("basement_task_errors", "failed rounds of periodic media tasks, by task",
                                     labels=[*names, "task"])
        for task, n in sorted(s.task_errors.items()):
            errors.add_metric([*values, task], n)
        yield errors
        drops = CounterMetricFamily(
            "basement_packets_dropped", "packets dropped, by reason", labels=[*names, "reason"]
        )
        for reason, n in sorted(s.dropped.items()):
            drops.add_metric([*values, reason], n)
        yield drops
        for name, value in s.gauges().items():
            g = GaugeMetricFamily(f"basement_{name}", f"current number of {name}", labels=names)
            g.add_metric(values, value)
            yield g
        for name, doc, label, series in s.labelled_gauges():
            g = GaugeMetricFamily(f"basement_{name}", doc, labels=[*names, label])
            for key, value in sorted(series.items()):
                g.add_metric([*values, key], value)
            yield g
        for metric in s.latency.collect():
            for sample in metric.samples:
                sample.labels.update(self.labels)
            yield metric


def media_registry(stats: MediaStats = STATS, const_labels: dict[str, str] | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(MediaCollector(stats, const_labels))
    return registry
