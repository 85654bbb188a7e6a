"""DownTrack: one subscriber's view of one published Track.

`forward()` is the per-packet hot path (with `sfu.rtp` and `PeerTransport.send_rtp`): choose whether
this packet goes out, rewrite SSRC / payload type / sequence number / timestamp / header-extension
ids / VP8 PictureID+TL0PICIDX in one copy of the packet, protect and send. It is deliberately a flat
function over plain attributes so it can move to native code unchanged in shape.

NACKs: the packet as received is kept once, in its Layer's `PacketRing`; per packet sent a DownTrack
keeps only where that is and the offsets it applied (`cache`), and rebuilds the packet it sent when a
NACK asks for it (`_cached`).

Continuity: output sequence numbers and timestamps never jump. Whenever the forwarded stream
restarts (first packet, layer switch, resume after mute or pause) the offsets are recomputed so the
first new packet follows the last one sent, and a video restart waits for a keyframe.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import rtp as artp

from sfu import rtp
from sfu.metrics import STATS

if TYPE_CHECKING:
    from sfu.track import Layer, PublishedTrack
    from sfu.transport import PeerTransport, SendSlot

log = logging.getLogger("basement.downtrack")

# How far behind the newest packet a run's start (`switch_seq`) may fall before it is moved up to
# SWITCH_TRAIL behind: far more than any reordering or repair (a layer's ring holds 1,024 packets),
# far less than the 32,768 where 16-bit comparison turns around.
SWITCH_TRAIL_MOVE = 0x4000
SWITCH_TRAIL = 0x2000
SID_ALL = 7  # a cap on VP9 spatial ids (3 bits) that forwards every layer
CACHE_SIZE = 1024  # packets sent that a NACK can ask for (each rebuilt from its Layer's PacketRing)
CACHE_MASK = CACHE_SIZE - 1

# NACK answers are bounded so one small NACK cannot make the SFU a traffic amplifier (issue #11):
# a packet is resent at most once per subscriber RTT (a repeat sooner cannot mean the resend was
# lost), and resent bytes per window stay within a fraction of what the subscriber was forwarded.
LOSS_HOLD_S = 2.0  # a reported loss counts for this long (receivers report about once a second)
REPORT_STALE_S = 5.0  # no receiver report for this long: the subscriber's loss is unknown
# What a subscriber demonstrably receives is measured between receiver reports at least this far
# apart: a report's highest sequence number lags what we sent by the path and the subscriber's own
# processing delay, which evens out over a longer span (aiortc reports every 0.5-1.5 s).
DELIVERY_WINDOW_S = 2.0
RTX_MIN_INTERVAL = 0.02  # s; floor on the per-packet resend interval (a LAN RTT can read as ~0)
RTX_UNKNOWN_RTT = 0.1  # s; until the subscriber's RR gives an RTT (libwebrtc's default too)
RTX_WINDOW = 1.0  # s; the budget window
RTX_BUDGET = 0.5  # default resent bytes per forwarded byte; `configure_retransmission` sets it
# A packet forwarded longer ago than this (or 3 RTTs, if longer) is stale: not resent, as
# libwebrtc's sender keeps max(1 s, 3 x RTT) of history (mediasoup 1-2 s). And a run of consecutive
# lost packets is repaired whole or not at all: when its first packet is stale or no longer cached,
# the frames it spans cannot be completed, so its fresh tail is not resent either. After a 3 s
# outage an aiortc subscriber NACKs everything it missed; resending the last second of it (the
# part still fresh) left its jitter buffer holding incomplete stale frames, and its video came back
# only after a second key frame request, > 3 s after the link instead of 1.0 s
# (tests/integration/test_link_outage.py). The subscriber's key frame request repairs such a loss.
RTX_MAX_AGE_S = 1.0


def configure_retransmission(budget: float) -> None:
    """Process-wide default retransmission budget (fraction of forwarded bytes) for new DownTracks."""
    global RTX_BUDGET
    RTX_BUDGET = budget


# (last_seq, last_ts, last_sent_at, last_pid, last_tl0, rtx_seq, started)
Continuity = tuple[int, int, float, int, int, int, bool]
# One packet sent, as a NACK needs it: (our seq, the source packet's PacketRing, its serial there,
# its seq there, ts_off, pid_off, tl0_off, when it was forwarded, whether we set its marker: the
# subscriber's picture ended there)
Sent = tuple[int, Any, int, int, int, int, int, float, bool]


def _newer16(a: int, b: int) -> bool:
    return a != b and ((a - b) & 0xFFFF) < 0x8000


class DownTrack:
    """The pure-Python data path; `sfu.datapath.NativeDownTrack` is its C twin (same tests, same bytes)."""

    cache: list[Sent | None]  # by our seq

    def __init__(self, track: PublishedTrack[DownTrack], subscriber_id: str, transport: PeerTransport,
                 slot: SendSlot, rtx_budget: float | None = None) -> None:
        self.track = track
        self.subscriber_id = subscriber_id
        self.transport = transport
        self.slot = slot
        self.kind = track.kind
        self.is_video = track.kind == "video"
        # which payload descriptor numbers the pictures (VP8, VP9): rewritten on switches
        self.picture_codec = rtp.PICTURE_CODECS.get(track.codec_name.upper(), rtp.PICTURE_NONE)
        self.clock_rate = track.clock_rate

        # layer state: `current` is being forwarded; `target` is where we want to be
        self.current: Layer | None = None
        self.target: Layer | None = None
        self.paused = False  # subscriber or policy turned this track off
        self.last_layer: Layer | None = None  # the layer of the previous run, kept across pauses
        self.pause_reason = ""
        self.target_reason = ""
        # what the subscriber asked for (protocol `subscription`), read by the LayerSelector
        self.request_layer: str | None = None
        self.request_width: int | None = None
        self.request_height: int | None = None
        # pinned by its subscriber: served from its estimate after screens and the active speaker
        # (sfu.allocation.PRIORITIES)
        self.pinned = False
        self.max_tid: int | None = None  # VP8 temporal layers above this are not forwarded
        self.temporal_drops = 0
        # VP9 SVC: spatial layers above `max_sid` are not forwarded; `target_sid` is where the
        # selector wants it, applied at the next picture (down) or key picture (up). SID_ALL: all.
        self.max_sid = SID_ALL
        self.target_sid = SID_ALL
        self.spatial_drops = 0

        # rewrite state
        self.seq_off = 0
        self.ts_off = 0
        self.pid_off = 0
        self.tl0_off = 0
        self.switch_seq = 0  # ingress seq of the first packet of the current run
        # our seq of the first packet of the current run (a key frame's: `_begin_run`); None before one
        self.run_first_seq: int | None = None
        self.epoch = 0  # the epoch of the layer the offsets were anchored on (Layer.epoch)
        self.started = False
        self.last_seq = random.randint(0, 0x7FFF)
        self.last_ts = random.randint(0, 0xFFFFFFFF)
        self.last_pid = random.randint(0, 0x7FFF)
        self.last_tl0 = random.randint(0, 0xFF)
        self.last_sent_at = 0.0
        self.rtx_seq = random.randint(0, 0xFFFF)

        self._clear_cache()  # what was sent, for NACKs: a list here, a C array in the native twin
        self.packets = 0
        self.octets = 0
        self.bytes_sent = 0
        self.retransmissions = 0
        self.rtx_suppressed = 0
        # retransmission limits: when each cached packet was last resent (by cache index, with its
        # seq so a recycled index does not inherit the time), and the byte budget's window
        self.rtx_budget = RTX_BUDGET if rtx_budget is None else rtx_budget
        self._resent: list[tuple[int, float] | None] = [None] * CACHE_SIZE
        self._rtx_window_at: float | None = None  # set by the first forwarded packet
        self._rtx_window_base = 0  # bytes_sent when the window began
        self._rtx_allowance = 0.0  # budget carried from the previous window's forwarding
        self._rtx_spent = 0
        self.keyframe_waits = 0
        # (last seq, last timestamp) the previous track on this recycled m-line sent (`inherit`)
        self._handover: tuple[int, int] | None = None

        # feedback from the subscriber
        self.estimate_bps = 0
        # the subscriber's downlink estimate: the SFU's own from transport-wide feedback (sfu.estimator)
        # or, for a client without it, its REMB. The scope is the SSRCs the REMB that set it names:
        # DownTracks of one subscriber with the same scope share that estimate (one REMB for the whole
        # downlink, as browsers send; aiortc sends one per m-line, each naming its own SSRC). A
        # transport-wide estimate covers the whole downlink: scope ()
        self.estimate_scope: tuple[int, ...] = ()
        self.fraction_lost = 0.0
        self.report_at: float | None = None  # when the subscriber's last receiver report arrived
        self._loss_peak = 0.0
        self._loss_peak_at = 0.0
        self.rtt = 0.0
        self._sr_sent: dict[int, float] = {}
        # what the subscriber's receiver reports show arriving, over the last DELIVERY_WINDOW_S or more:
        # the rate we sent (bits/s), the share of those packets its highest sequence number advanced
        # over, and when that was measured (read by the LayerSelector, see `sfu.layers`)
        self.delivered_bps = 0.0
        self.delivered_share = 0.0
        self.delivered_at: float | None = None
        self._delivery_mark: tuple[float, int, int, int] | None = None  # (at, our last_seq, bytes_sent, their highest)

        # set by the owner (Peer): callback(downtrack, old_rid, new_rid)
        self.on_layer_change: Callable[[DownTrack, str | None, str], None] | None = None
        self._ext_map: dict[int, int] = {}
        self._mid_in = -1
        self._ast_in = -1
        self._mid_out = b""
        self._resolve_extensions()

    # --- configuration ------------------------------------------------------------------------
    def _resolve_extensions(self) -> None:
        """Map the publisher's extension ids to the ids negotiated on our m-line, by URI."""
        ids_in = self.track.extensions
        ids_out = self.slot.ext_ids or {}
        self._ext_map = {}
        for uri, xid in ids_in.items():
            # rewritten in place in the one-byte form only, where ids are 1..14 on both sides
            if uri in ids_out and uri not in (rtp.URI_RID, rtp.URI_RRID) and 1 <= ids_out[uri] <= 14:
                self._ext_map[xid] = ids_out[uri]
        self._mid_in = ids_in.get(rtp.URI_MID, -1)
        self._ast_in = ids_in.get(rtp.URI_ABS_SEND_TIME, -1)
        self._mid_out = self.slot.mid.encode()

    def slot_ready(self) -> None:
        """The m-line is negotiated and its transport is up: start (with a keyframe for video)."""
        self._resolve_extensions()
        if self.target is not None and self.is_video:
            self.track.request_keyframe(self.target.rid, "subscriber started")

    def set_target(self, layer: Layer | None, reason: str = "") -> None:
        """Aim for `layer` (None pauses). Switching to a video layer waits for its keyframe."""
        self.target_reason = reason
        if layer is None:
            self.target = self.current = None
            self.paused = True
            self.pause_reason = reason
            return
        was_paused = self.paused
        self.paused = False
        self.pause_reason = ""
        if layer is self.target and not was_paused:
            return
        self.target = layer
        if self.waiting_for_keyframe:
            self.keyframe_waits += 1
            self.track.request_keyframe(layer.rid, reason or "layer switch")

    def set_spatial(self, sid: int, reason: str = "") -> None:
        """VP9 or AV1 SVC: forward spatial layers up to `sid` (SID_ALL: all). Down takes effect at the next
        picture; up waits for a key picture, which it asks for."""
        sid = max(0, min(SID_ALL, sid))
        if sid == self.target_sid or self.picture_codec not in rtp.SVC_CODECS:
            return
        self.target_sid = sid
        self.target_reason = reason
        if sid > self.max_sid and self.target is not None and self.is_video:
            self.keyframe_waits += 1
            self.track.request_keyframe(self.target.rid, reason or "spatial layer up")

    @property
    def waiting_for_keyframe(self) -> bool:
        """A video switch (or start) is pending until a keyframe of the target layer arrives."""
        return (self.target is not None and (self.target is not self.current or self.target_sid > self.max_sid)
                and self.is_video and self.slot.active)

    def continuity(self) -> Continuity:
        """The numbering a recycled m-line must continue from (kept instead of the whole DownTrack)."""
        return (self.last_seq, self.last_ts, self.last_sent_at, self.last_pid, self.last_tl0, self.rtx_seq,
                self.started)

    def inherit(self, previous: Continuity) -> None:
        """Take over a recycled m-line: keep its numbering so the subscriber sees no jump."""
        (self.last_seq, self.last_ts, self.last_sent_at, self.last_pid, self.last_tl0, self.rtx_seq,
         self.started) = previous
        if self.started:
            self._handover = (self.last_seq, self.last_ts)

    def release(self) -> None:
        """Unsubscribed: drop what was sent (and the references to the layers' rings) now rather than
        whenever the last reference goes; a late NACK finds nothing cached."""
        self._clear_cache()
        self._resent = [None] * CACHE_SIZE

    def _cached(self, seq: int) -> bytes | None:
        """The packet sent with this (output) seq, rewritten and unprotected, if it can still be made
        again: its source packet is still in its layer's ring."""
        entry = self.cache[seq & CACHE_MASK]
        if entry is None or entry[0] != seq:
            return None
        data = entry[1].get(entry[3], entry[2])
        return None if data is None else self._rebuild(entry, data)

    def _rebuild(self, entry: Sent, data: bytes) -> bytes:
        """The packet `entry` describes, byte for byte as it was sent (its abs-send-time too), from
        `data`, its source packet."""
        out_seq, _ring, _serial, _in_seq, ts_off, pid_off, tl0_off, sent_at, end = entry
        view = rtp.parse(data)  # it parsed when it was forwarded
        picture = None
        if self.picture_codec:
            try:
                payload = memoryview(data)[view.payload_start : view.payload_end]
                picture = rtp.picture_descriptor(self.picture_codec, payload)
            except rtp.RtpError:
                pass
        # (the marker as it was sent, whatever spatial layer is forwarded now, and for AV1, whose
        # layers the dependency descriptor gives and the rebuild does not read)
        return self._rewrite(data, view, picture, out_seq, (view.ts + ts_off) & 0xFFFFFFFF, pid_off, tl0_off, sent_at,
                             end)

    def _clear_cache(self) -> None:
        self.cache = [None] * CACHE_SIZE

    def interrupt(self) -> None:
        """The source stopped (publisher mute): resume later with continuous numbering."""
        self.current = None

    # --- the hot path -------------------------------------------------------------------------
    def forward(self, data: bytes, view: rtp.RtpView, layer: Layer, keyframe: bool,
                picture: rtp.Picture | None, now: float) -> None:
        slot = self.slot
        if not slot.active:
            return
        if layer is not self.current:
            if layer is not self.target or (self.is_video and not keyframe):
                return
            self._restart(view, picture, now, layer)
        elif layer.epoch != self.epoch:
            # the publisher's stream started over (new SSRC, or restarted numbering): re-anchor so the
            # subscriber's numbering continues instead of jumping to wherever the new stream starts
            self._anchor(view, picture, now, layer)
        elif not _newer16(view.seq, self.switch_seq) and view.seq != self.switch_seq:
            return  # from before the current run began: its numbering belongs to another layer
        elif (view.seq - self.switch_seq) & 0xFFFF >= SWITCH_TRAIL_MOVE:
            # the run's start trails the stream: 16-bit numbers compare only within half the space,
            # so a start left behind would, 32,768 packets into the run, make every later packet
            # look older than it and stop the track for the next 32,768 (minutes of video or audio)
            self.switch_seq = (view.seq - SWITCH_TRAIL) & 0xFFFF
        if picture is not None and self.max_tid is not None and picture.tid > self.max_tid and not keyframe:
            # thinning the frame rate: renumber so the subscriber sees no gap it would NACK
            self._renumber_away(view.seq)
            self.temporal_drops += 1
            return
        end = False
        if picture is not None and (self.max_sid < SID_ALL or self.target_sid < SID_ALL):
            if picture.start and self.target_sid != self.max_sid and (keyframe or self.target_sid < self.max_sid):
                # down at any picture (lower layers never reference upper ones); up only at a key
                # picture, the one where an upper layer's frame starts from the layer below it
                self.max_sid = self.target_sid
            if picture.sid > self.max_sid:
                self._renumber_away(view.seq)
                self.spatial_drops += 1
                return
            end = picture.end and picture.sid == self.max_sid  # the subscriber's picture ends here

        out_seq = (view.seq + self.seq_off) & 0xFFFF
        out_ts = (view.ts + self.ts_off) & 0xFFFFFFFF
        out = self._rewrite(data, view, picture, out_seq, out_ts, self.pid_off, self.tl0_off, now, end)
        ring = layer.ring
        self.cache[out_seq & CACHE_MASK] = (out_seq, ring, ring.store(view.seq, data), view.seq, self.ts_off,
                                            self.pid_off, self.tl0_off, now, end)
        if _newer16(out_seq, self.last_seq) or not self.started:
            self.last_seq = out_seq
            self.last_ts = out_ts
            self.last_sent_at = now
            if picture is not None and picture.picture_id >= 0:
                self.last_pid = (picture.picture_id + self.pid_off) & 0x7FFF
                if picture.tl0picidx >= 0:
                    self.last_tl0 = (picture.tl0picidx + self.tl0_off) & 0xFF
        self.started = True
        if self.transport.send_rtp(out):
            self.packets += 1
            self.octets += view.payload_end - view.payload_start
            self.bytes_sent += len(out)
            traffic = STATS.traffic
            traffic.packets_out += 1
            traffic.bytes_out += len(out)

    def _rewrite(self, data: bytes, view: rtp.RtpView, picture: rtp.Picture | None, out_seq: int, out_ts: int,
                 pid_off: int, tl0_off: int, now: float, end: bool = False) -> bytes:
        """`data` as this subscriber gets it: our PT, SSRC and numbering, our extension ids (abs-send-time
        = `now`), VP8/VP9 picture id and TL0PICIDX moved by the offsets; `end`: the marker bit set (the
        last packet of the highest spatial layer forwarded ends the subscriber's picture)."""
        slot = self.slot
        buf = bytearray(data)
        rtp.HEADER.pack_into(buf, 0, buf[0], (0x80 if end else buf[1] & 0x80) | slot.pt, out_seq, out_ts, slot.ssrc)
        if view.ext_start:
            if view.one_byte:
                self._rewrite_extensions(buf, view.ext_start, view.ext_end, now)
            elif (rtp.U16.unpack_from(buf, view.ext_start - 4)[0] & 0xFFF0) == 0x1000:
                self._rewrite_two_byte(buf, view.ext_start, view.ext_end, now)
            else:  # a profile of no RFC: emptied (the block stays, its elements are gone)
                buf[view.ext_start : view.ext_end] = bytes(view.ext_end - view.ext_start)
        if picture is not None and (pid_off or tl0_off):
            p = view.payload_start
            if picture.picture_id >= 0:
                if picture.picture_id_bits == 15:
                    pid = (picture.picture_id + pid_off) & 0x7FFF
                    buf[p + picture.picture_id_pos] = 0x80 | (pid >> 8)
                    buf[p + picture.picture_id_pos + 1] = pid & 0xFF
                else:
                    pid = (picture.picture_id + pid_off) & 0x7F
                    buf[p + picture.picture_id_pos] = pid
            if picture.tl0picidx >= 0:
                buf[p + picture.tl0picidx_pos] = (picture.tl0picidx + tl0_off) & 0xFF
        return bytes(buf)

    def skip(self, seq: int, layer: Layer) -> None:
        """A packet of `layer` that is not forwarded to anyone (a padding-only probe): renumber it away."""
        if layer is self.current and self.slot.active:
            self._renumber_away(seq)

    def _renumber_away(self, seq: int) -> None:
        """`seq` (input numbering) is dropped on purpose: if it is the next one due, later packets move
        down by one, so the subscriber sees no gap it would NACK."""
        if seq == ((self.last_seq - self.seq_off + 1) & 0xFFFF):
            self.seq_off = (self.seq_off - 1) & 0xFFFF

    def _rewrite_extensions(self, buf: bytearray, i: int, end: int, now: float) -> None:
        id_map = self._ext_map
        while i < end:
            b = buf[i]
            if b == 0:
                i += 1
                continue
            xid, xlen = b >> 4, (b & 0x0F) + 1
            if xid == 15:
                break
            if i + 1 + xlen > end:  # runs past the block: not an element; blank the rest of the block
                buf[i:end] = bytes(end - i)
                break
            new = id_map.get(xid)
            if new is None or (xid == self._mid_in and xlen != len(self._mid_out)):
                buf[i : i + 1 + xlen] = bytes(1 + xlen)  # RFC 8285 allows padding bytes between elements
            else:
                buf[i] = (new << 4) | (b & 0x0F)
                if xid == self._mid_in:
                    buf[i + 1 : i + 1 + xlen] = self._mid_out
                elif xid == self._ast_in and xlen == 3:
                    # our own send time: the subscriber's estimator must see the SFU->subscriber path
                    buf[i + 1 : i + 4] = rtp.abs_send_time_now(now)
            i += 1 + xlen

    def _rewrite_two_byte(self, buf: bytearray, i: int, end: int, now: float) -> None:
        """`_rewrite_extensions` in the two-byte form (RFC 8285 §4.3: an id byte, a length byte, the
        value; zero bytes pad). A key frame's AV1 dependency descriptor, with its structure, is longer
        than the one-byte form's 16 bytes: Chromium sends that packet in this form."""
        id_map = self._ext_map
        while i < end:
            xid = buf[i]
            if xid == 0:
                i += 1
                continue
            if i + 2 > end or i + 2 + buf[i + 1] > end:  # not an element: blank the rest of the block
                buf[i:end] = bytes(end - i)
                break
            xlen = buf[i + 1]
            new = id_map.get(xid)
            if new is None or (xid == self._mid_in and xlen != len(self._mid_out)):
                buf[i : i + 2 + xlen] = bytes(2 + xlen)
            else:
                buf[i] = new
                if xid == self._mid_in:
                    buf[i + 2 : i + 2 + xlen] = self._mid_out
                elif xid == self._ast_in and xlen == 3:
                    buf[i + 2 : i + 5] = rtp.abs_send_time_now(now)
            i += 2 + xlen

    def _restart(self, view: rtp.RtpView, picture: rtp.Picture | None, now: float, layer: Layer) -> None:
        """Begin a new run on `layer` (the target) at a start, layer switch or resume: continue
        numbering from what was sent."""
        self._anchor(view, picture, now, layer)
        self._begin_run(layer)

    def _begin_run(self, layer: Layer) -> None:
        """`layer` is now forwarded (the native path calls this too, after anchoring in C)."""
        self.current = layer
        # The run starts at a key frame: nothing sent before it is needed to decode what follows, so
        # NACKs for it are answered with empty packets, not resent (`on_nack`). Behind a link that
        # just narrowed, resending the old layer's lost packets took the bandwidth the new layer's
        # key frame needed; left unanswered, aiortc's jitter buffer would wait for them.
        # (the first run has nothing before it: what a NACK asks for there was never ours)
        self.run_first_seq = (self.last_seq + 1) & 0xFFFF if self.started else None
        # compared with the previous run's layer, so a resume on another layer is a switch too
        before, self.last_layer = self.last_layer, layer
        if before is not layer:
            if before is not None:
                STATS.layer_switches += 1
            if self.on_layer_change is not None:
                self.on_layer_change(self, before.rid if before else None, layer.rid)

    def _anchor(self, view: rtp.RtpView, picture: rtp.Picture | None, now: float, layer: Layer) -> None:
        """Offsets that make `view` follow the last packet sent, in sequence, time and PictureID."""
        self.epoch = layer.epoch
        self.seq_off = (self.last_seq + 1 - view.seq) & 0xFFFF
        if self.started:
            gap = max(1, int((now - self.last_sent_at) * self.clock_rate))
            self.ts_off = (self.last_ts + gap - view.ts) & 0xFFFFFFFF
        else:
            self.ts_off = (self.last_ts - view.ts) & 0xFFFFFFFF
        if picture is not None and picture.picture_id >= 0 and self.started:
            mod = 0x7FFF if picture.picture_id_bits == 15 else 0x7F
            self.pid_off = (self.last_pid + 1 - picture.picture_id) & mod
            self.tl0_off = ((self.last_tl0 + 1 - picture.tl0picidx) & 0xFF) if picture.tl0picidx >= 0 else 0
        else:
            self.pid_off = self.tl0_off = 0
        self.switch_seq = view.seq
        if self._rtx_window_at is None:
            self._rtx_window_at = now  # the retransmission budget counts from the first packet

    # --- feedback from the subscriber ---------------------------------------------------------
    def on_nack(self, lost: list[int], now: float) -> None:
        """Resend what the subscriber lost, within the per-packet interval and the byte budget."""
        STATS.nacks_in += 1
        if self._handover is not None:
            lost = self._answer_handover(lost)
            if not lost:
                return
        first = self.run_first_seq
        if first is not None:
            # before the current run's key frame (see _begin_run): not resent, whatever its age, but
            # answered with an empty packet, so a receiver waiting for the number stops waiting
            fresh: list[int] = []
            superseded: list[int] = []
            for seq in lost:
                (superseded if 0 < ((first - seq) & 0xFFFF) <= CACHE_SIZE else fresh).append(seq)
            if superseded:
                self._answer_superseded(superseded, first)
                self.rtx_suppressed += len(superseded)
                STATS.rtx_suppressed_stale += len(superseded)
                lost = fresh
            if not lost:
                return
        interval = max(self.rtt, RTX_MIN_INTERVAL) if self.rtt else RTX_UNKNOWN_RTT
        oldest = now - max(RTX_MAX_AGE_S, 3 * self.rtt)
        sent, misses, by_interval, by_budget, by_stale, spent = self._resend(
            lost, now, interval, self._rtx_left(now), self.slot.rtx_pt, self.slot.rtx_ssrc, oldest)
        self.retransmissions += sent
        self.rtx_suppressed += by_interval + by_budget + by_stale
        self._rtx_spent += spent
        STATS.retransmissions += sent
        STATS.nack_misses += misses
        STATS.rtx_suppressed_interval += by_interval
        STATS.rtx_suppressed_budget += by_budget
        STATS.rtx_suppressed_stale += by_stale

    def _answer_superseded(self, lost: list[int], first: int) -> None:
        """Answer NACKs for numbers before the current run's first packet (`first`) with empty
        packets: each stretch of consecutive numbers at the timestamp of the packet sent right after
        it, the one the receiver has. A receiver that groups packets into frames by timestamp
        (aiortc) then adds nothing to that packet's frame. At any other timestamp (the run's first
        packet's, as before) an empty stretch between older frames was a frame of its own, and an
        empty frame makes aiortc's decoder drain and fail ("End of file") from then on, key frames
        and all: a subscriber decoded nothing for 30 s after its publisher's ICE restart
        (tests/e2e/browser/test_ice_restart_browser.py, once in CI). A stretch whose following
        packets have all left their layer's ring is not answered."""
        missing = set(lost)
        order = sorted(missing, key=lambda seq: (first - seq) & 0xFFFF)  # nearest the run's start first
        i = 0
        while i < len(order):
            top = (first - order[i]) & 0xFFFF  # distance below `first`
            j = i + 1
            while j < len(order) and (first - order[j]) & 0xFFFF == top + j - i:
                j += 1
            ts = None
            for k in range(top - 1, -1, -1):  # the packets above it, nearest first, up to `first`
                packet = None if (first - k) & 0xFFFF in missing else self._cached((first - k) & 0xFFFF)
                if packet is not None:
                    ts = rtp.HEADER.unpack_from(packet)[3]
                    break
            if ts is not None:
                self._answer_empty(order[i:j][::-1], ts)
            i = j

    def _answer_empty(self, lost: list[int], ts: int) -> None:
        """Answer NACKs for numbers there is nothing worth resending for with empty packets carrying
        timestamp `ts` (see `_answer_handover` for why, and why as RTX when negotiated)."""
        slot = self.slot
        for seq in lost:
            seq &= 0xFFFF
            if slot.rtx_pt:
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
                packet = rtp.HEADER.pack(0x80, slot.rtx_pt & 0x7F, self.rtx_seq, ts, slot.rtx_ssrc)
                packet += rtp.U16.pack(seq)
            else:
                packet = rtp.HEADER.pack(0xA0, slot.pt & 0x7F, seq, ts, slot.ssrc) + b"\x00\x00\x00\x04"
            self.transport.send_rtp(packet)
            STATS.nack_padding += 1

    def _answer_handover(self, lost: list[int]) -> list[int]:
        """Answer NACKs for the previous track's last packets on this recycled m-line with empty packets;
        return the rest.

        A subscriber can miss the tail of the previous track: aiortc drops packets for an m-line it
        has already made inactive, and they may still sit in its socket when it applies that offer.
        When this track continues the numbering, it NACKs them, but they were never ours to cache:
        unanswered, aiortc's video jitter buffer holds every later frame until 512 packets have
        passed (~17 s at 30 packets/s: the six-participant test's flake). An empty packet with that
        number is the honest answer ("nothing to decode here"); libwebrtc treats empty packets as
        padding. It carries the timestamp of this track's first packet, so a receiver that groups
        packets into frames by timestamp (aiortc) adds nothing to that frame rather than making an
        empty frame of its own (an empty frame makes its decoder drain and fail from then on). It
        goes as RTX (just the original sequence number) when RTX is negotiated: the subscriber's
        SRTP has already seen that number on the media SSRC (it decrypted the packet, then dropped
        it), so a second one there is a replay.
        """
        handover = self._handover
        if handover is None:
            return lost
        last_seq, ts = handover
        if self.packets > CACHE_SIZE:  # long since handed over: numbers behind us are our own
            self._handover = None
            return lost
        first = self._cached((last_seq + 1) & 0xFFFF)
        if first is not None:
            ts = rtp.HEADER.unpack_from(first)[3]
        mine = [seq & 0xFFFF for seq in lost if ((last_seq - seq) & 0xFFFF) < CACHE_SIZE]  # at or before its last
        self._answer_empty(mine, ts)
        return [seq & 0xFFFF for seq in lost if ((last_seq - seq) & 0xFFFF) >= CACHE_SIZE]

    def _resend(self, lost: list[int], now: float, interval: float, left: float, rtx_pt: int,
                rtx_ssrc: int, oldest: float) -> tuple[int, int, int, int, int, int]:
        """The per-packet part of a NACK answer (the native twin: DownTrackCore._resend). Returns
        (resent, not cached, suppressed by the interval, by the budget, stale — forwarded before
        `oldest`, or in a run of consecutive losses whose first packet is — and bytes resent).

        A run of consecutive losses is resent whole or not at all. Its start must be fresh (above);
        and all of it must fit in what is `left` of the budget, judged when the run starts on the
        sources' sizes (+ 2 bytes of RTX each): half a run repaired leaves its other half missing,
        which a receiver that assembles frames in order (aiortc's jitter buffer) waits for until it
        overflows, a second or more of frozen video, since it asks for a packet once (an outage's
        last second, NACKed at once, halved by the budget, froze a subscriber for 2.5 s)."""
        sent = misses = by_interval = by_budget = by_stale = spent = 0
        resent = self._resent
        previous = -1
        repairable = affordable = True
        for i, seq in enumerate(lost):
            # aiortc expands a NACK's bitmask as pid + n + 1 without wrapping: 65535's "next" is 65536
            seq &= 0xFFFF
            idx = seq & CACHE_MASK
            entry = self.cache[idx]
            source = None if entry is None or entry[0] != seq else entry[1].get(entry[3], entry[2])
            if source is None:
                entry = None  # (none, a newer packet in the slot, or its source has left the layer's ring)
            if seq != (previous + 1) & 0xFFFF or previous < 0:  # the first of a run of losses
                repairable = entry is not None and entry[7] >= oldest
                affordable = not repairable or self._run_cost(lost, i, now, interval, oldest) <= left
            previous = seq
            if entry is None or source is None:
                misses += 1
                continue
            if not repairable or entry[7] < oldest:
                by_stale += 1
                continue
            last = resent[idx]
            if last is not None and last[0] == seq and now - last[1] < interval:
                by_interval += 1
                continue
            if not affordable:
                by_budget += 1
                continue
            packet = self._rebuild(entry, source)
            if rtx_pt:
                packet = self._rtx(packet)
            if self.transport.send_rtp(packet):
                resent[idx] = (seq, now)
                left -= len(packet)
                spent += len(packet)
                sent += 1
        return sent, misses, by_interval, by_budget, by_stale, spent

    def _run_cost(self, lost: list[int], start: int, now: float, interval: float, oldest: float) -> int:
        """Bytes that resending the run of consecutive losses starting at lost[start] would take:
        each packet still cached, fresh and not just resent, at its source's size + 2."""
        cost = 0
        first = lost[start] & 0xFFFF
        for k in range(start, len(lost)):
            seq = lost[k] & 0xFFFF
            if seq != (first + k - start) & 0xFFFF:
                break
            entry = self.cache[seq & CACHE_MASK]
            if entry is None or entry[0] != seq:
                continue
            source = entry[1].get(entry[3], entry[2])
            last = self._resent[seq & CACHE_MASK]
            just_resent = last is not None and last[0] == seq and now - last[1] < interval
            if source is None or entry[7] < oldest or just_resent:
                continue
            cost += len(source) + 2
        return cost

    def _rtx_left(self, now: float) -> float:
        """Bytes that may still be resent in this window: `rtx_budget` times what was forwarded in
        the previous window (as an average over it) plus so far in this one."""
        if self._rtx_window_at is None:
            self._rtx_window_at = now
        elapsed = now - self._rtx_window_at
        if elapsed >= RTX_WINDOW:
            forwarded = self.bytes_sent - self._rtx_window_base
            self._rtx_allowance = self.rtx_budget * forwarded * RTX_WINDOW / elapsed
            self._rtx_window_at = now
            self._rtx_window_base = self.bytes_sent
            self._rtx_spent = 0
        return self._rtx_allowance + self.rtx_budget * (self.bytes_sent - self._rtx_window_base) - self._rtx_spent

    def _rtx(self, packet: bytes) -> bytes:
        """RFC 4588 retransmission: the RTX stream's own seq, the original seq in front of the payload."""
        view = rtp.parse(packet)
        self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        out = bytearray(packet[: view.payload_start])
        out[0] &= 0xDF
        rtp.HEADER.pack_into(out, 0, out[0], (packet[1] & 0x80) | self.slot.rtx_pt, self.rtx_seq, view.ts,
                             self.slot.rtx_ssrc)
        out += rtp.U16.pack(view.seq)
        out += packet[view.payload_start : view.payload_end]
        return bytes(out)

    def on_pli(self) -> None:
        STATS.plis_in += 1
        layer = self.current or self.target
        if layer is not None:
            self.track.request_keyframe(layer.rid, "subscriber PLI")

    def on_estimate(self, bitrate: int, scope: tuple[int, ...] = ()) -> None:
        self.estimate_bps = bitrate
        self.estimate_scope = scope

    def on_report(self, block: Any, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.fraction_lost = block.fraction_lost / 256.0
        self.report_at = now
        # the worst loss of the last LOSS_HOLD_S: one clean report amid lossy ones is not a clean link
        if self.fraction_lost >= self._loss_peak or now - self._loss_peak_at > LOSS_HOLD_S:
            self._loss_peak, self._loss_peak_at = self.fraction_lost, now
        sent_at = self._sr_sent.get(block.lsr)
        if block.lsr and sent_at is not None:
            self.rtt = max(0.0, time.monotonic() - sent_at - block.dlsr / 65536.0)
        self._measure_delivery(block.highest_sequence & 0xFFFF, now)

    def _measure_delivery(self, highest: int, now: float) -> None:
        """Compare how far the subscriber's highest received sequence number moved with how far ours
        did, since a report at least DELIVERY_WINDOW_S ago. A receiver report alone cannot show a
        stall: with nothing arriving, nothing is expected and nothing counts as lost."""
        mark = self._delivery_mark
        if mark is None or not self.started:
            self._delivery_mark = (now, self.last_seq, self.bytes_sent, highest)
            return
        at, our_seq, our_bytes, their_seq = mark
        elapsed = now - at
        if elapsed < DELIVERY_WINDOW_S:
            return
        sent = (self.last_seq - our_seq) & 0xFFFF
        advanced = (highest - their_seq) & 0xFFFF
        if advanced >= 0x8000:
            advanced = 0  # went backwards (a reordered report, or a numbering we did not send)
        self.delivered_share = min(1.0, advanced / sent) if sent else 0.0
        self.delivered_bps = (self.bytes_sent - our_bytes) * 8 / elapsed
        self.delivered_at = now
        self._delivery_mark = (now, self.last_seq, self.bytes_sent, highest)

    def recent_loss(self, now: float) -> float | None:
        """Loss the subscriber reported lately (the worst of the last LOSS_HOLD_S), or None when no
        receiver report arrived within REPORT_STALE_S: then nothing is known about its link."""
        if self.report_at is None or now - self.report_at > REPORT_STALE_S:
            return None
        if now - self._loss_peak_at <= LOSS_HOLD_S:
            return max(self.fraction_lost, self._loss_peak)
        return self.fraction_lost

    def on_publisher_sr(self, layer: Layer, ntp: int, rtp_ts: int) -> None:
        """Translate the publisher's sender report into our timeline (lip sync for the subscriber)."""
        if layer is not self.current or not self.started or not self.slot.active:
            return
        sr = artp.RtcpSrPacket(
            ssrc=self.slot.ssrc,
            sender_info=artp.RtcpSenderInfo(
                ntp_timestamp=ntp,
                rtp_timestamp=(rtp_ts + self.ts_off) & 0xFFFFFFFF,
                packet_count=self.packets & 0xFFFFFFFF,
                octet_count=self.octets & 0xFFFFFFFF,
            ),
        )
        sdes = artp.RtcpSdesPacket(
            chunks=[artp.RtcpSourceInfo(ssrc=self.slot.ssrc, items=[(1, self.slot.cname.encode())])]
        )
        if self.transport.send_rtcp([sr, sdes]):
            key = (ntp >> 16) & 0xFFFFFFFF
            self._sr_sent[key] = time.monotonic()
            if len(self._sr_sent) > 16:
                self._sr_sent.pop(next(iter(self._sr_sent)))

    def stats(self) -> dict[str, Any]:
        return {
            "track": self.track.id,
            "layer": self.current.rid if self.current else None,
            "target": self.target.rid if self.target else None,
            "paused": self.paused,
            "packets": self.packets,
            "retransmissions": self.retransmissions,
            "retransmissions_suppressed": self.rtx_suppressed,
            "estimate_bps": self.estimate_bps,
            "fraction_lost": self.fraction_lost,
        }
