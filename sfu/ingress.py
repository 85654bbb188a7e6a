"""Ingress: a publisher's packets become Tracks and Layers, and the publisher gets its feedback.

`Ingress` owns one publish transport. It learns SSRC -> (track, layer) from the SDP's a=ssrc lines
when there are any and from the MID/RID/repaired-RID header extensions otherwise (Chromium puts
them only on the first packets of each SSRC and its simulcast offers have no a=ssrc lines), unwraps
RTX (only retransmissions of packets it is missing go on; RTX copies of packets it has are probes),
drops padding, and produces what a receiving endpoint owes its sender: RR, NACK, REMB. A layer's
media rate counts the media SSRC's packets with a payload only.
Each packet then goes to the DownTracks of its Track (`sfu.track.PublishedTrack`).

What a publisher's packets can make us hold is fixed by its offer: the layers are the offer's rids
(at most `max_simulcast_layers`), each with one media and one RTX SSRC, and an m-line may use at
most `max_ssrcs_per_track` SSRCs over its life. Everything else is a counted drop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc import rtp as artp

from sfu import datapath, dependency_descriptor, h264, reception, rtp, sdp, transport_arrivals
from sfu.metrics import STATS
from sfu.reception import GAP, JUMP, LATE, RESTART
from sfu.track import Layer, PublishedTrack
from sfu.transport import RecvSlot

if TYPE_CHECKING:
    from sfu.downtrack import DownTrack

try:
    from sfu._native import CODEC_AV1, CODEC_H264, CODEC_OTHER, CODEC_VP8, CODEC_VP9, IngressCore
except ImportError:  # not built: only the Python path is available (sfu.datapath says so)
    IngressCore = None

__all__ = ["Ingress", "IngressLimits", "configure_ingress", "ingress_class"]

log = logging.getLogger("basement.ingress")

@dataclass(frozen=True)
class IngressLimits:
    """What one publisher may make the SFU hold (settings max_simulcast_layers, max_ssrcs_per_track)."""

    max_simulcast_layers: int = sdp.MAX_SIMULCAST_LAYERS  # a=rid send lines per m-line; what browsers send
    max_ssrcs_per_track: int = sdp.MAX_SSRCS_PER_TRACK  # media + RTX SSRCs one m-line may ever use


_limits = IngressLimits()


def configure_ingress(limits: IngressLimits) -> None:
    """Process-wide limits for new Ingresses and for the offers `sdp.check_offer` accepts."""
    global _limits
    _limits = limits
    sdp.configure_offer_limits(limits.max_simulcast_layers, limits.max_ssrcs_per_track)


NACK_MIN_INTERVAL = 0.02  # a gap NACKs at once, but a stream of gaps at most this often (the rest: next round)


class Ingress:
    """The SFU side of one publisher's transport."""

    RTCP_INTERVAL = 1.0

    def __init__(self, participant_id: str, on_audio_level: Callable[[str, int, float], None] | None = None,
                 limits: IngressLimits | None = None):
        self.participant_id = participant_id
        self.limits = limits or _limits
        self.transport: Any = None
        self.slots: dict[str, RecvSlot] = {}  # mid -> slot
        self.tracks: dict[str, PublishedTrack[DownTrack]] = {}  # mid -> PublishedTrack
        # ssrc -> (receiver, layer, is_rtx); at most one media and one RTX SSRC per layer
        self.by_ssrc: dict[int, tuple[PublishedTrack[DownTrack], Layer, bool]] = {}
        self.on_audio_level = on_audio_level
        self.remb = datapath.remb_estimator()  # aiortc's, or the same in C on the native path
        self.remb_bps = 0
        # transport-wide congestion control, when the publisher's offer has it: each number's arrival
        # (sfu.transport_arrivals), reported every FEEDBACK_INTERVAL_S; once numbers arrive, no REMB
        # is estimated or sent
        self.arrivals: transport_arrivals.Arrivals | None = None
        self.tcc_id = 0
        self._feedback_count = 0
        self._feedback_task: asyncio.Task | None = None
        self._rtcp_task: asyncio.Task | None = None
        self.dropped: dict[str, int] = {}
        # mid -> {extension URI -> id}, resolved once per m-line (read by Tracks as `PublishedTrack.extensions`)
        self.extensions: dict[str, dict[str, int]] = {}
        self._ssrcs_used: dict[str, int] = {}  # mid -> SSRCs its unpublished tracks used (one per m-line)
        # every DownTrack of a track gets each packet in one call (sfu.datapath: Python loop or C)
        self.fanout = datapath.fanout()
        # sfu.rtp's parsers, or their C twins on the native data path (same attributes, same errors)
        self.parse, self.vp8_descriptor, self.vp9_descriptor, self.extension = datapath.parsers()

    # --- setup --------------------------------------------------------------------------------
    def configure(self, transport: Any, slots: list[RecvSlot], ssrc_hints: dict[str, list[tuple[int, str]]],
                  track_ids: dict[str, str], simulcast_rids: dict[str, list[str]]) -> list[PublishedTrack[DownTrack]]:
        """Register the negotiated m-lines. `ssrc_hints`: mid -> [(ssrc, role)] from a=ssrc lines.

        The rids are the only layers a track will ever have (checked by `sfu.sdp.check_offer`).
        """
        self.transport = transport
        created: list[PublishedTrack[DownTrack]] = []
        for slot in slots:
            if slot.mid in self.tracks:
                continue
            media_codec = next((c for c in slot.codecs.values() if not _is_rtx(c)), None)
            if media_codec is None:
                continue
            self.slots[slot.mid] = slot
            rec: PublishedTrack[DownTrack] = PublishedTrack(track_ids[slot.mid], self.participant_id, slot.kind,
                                                            slot.mid, media_codec, self)
            rids = (simulcast_rids.get(slot.mid) or [])[: self.limits.max_simulcast_layers]
            rec.simulcast = len(rids) > 1
            rec.ssrcs_used = self._ssrcs_used.get(slot.mid, 0)
            for rid in rids or [""]:
                rec.layer(rid)
            self.tracks[slot.mid] = rec
            self.extensions[slot.mid] = {uri: xid for xid, uri in slot.ext_ids.items()}
            tcc_id = self.extensions[slot.mid].get(rtp.URI_TWCC)
            if tcc_id and self.arrivals is None:
                # one sequence per transport: the id of the first m-line that has it (a BUNDLE
                # offer gives every m-line the same one)
                self.tcc_id, self.arrivals = tcc_id, datapath.transport_arrivals()
            if len(rec.layers) == 1:
                layer = next(iter(rec.layers.values()))
                for ssrc, role in ssrc_hints.get(slot.mid, []):
                    # the first media and the first RTX SSRC; a=ssrc lines cannot add state beyond that
                    if (layer.rtx_ssrc if role == "rtx" else layer.ssrc) is None and ssrc not in self.by_ssrc:
                        self._bind(rec, layer, ssrc, role == "rtx")
            created.append(rec)
        if self._rtcp_task is None:
            self._rtcp_task = asyncio.ensure_future(self._rtcp_loop())
        if self.arrivals is not None and self._feedback_task is None:
            self._feedback_task = asyncio.ensure_future(self._feedback_loop())
        return created

    @staticmethod
    def _h264_size(payload: memoryview, layer: Layer, arrival: float) -> None:
        """The layer's size from its key frame's SPS: read only when the SPS changed, and at most
        every SPS_INTERVAL_S (the publisher decides what is a key frame)."""
        sps = h264.keyframe_sps(payload)
        if sps is None or sps == layer.sps or arrival - layer.sps_at < h264.SPS_INTERVAL_S:
            return
        layer.sps, layer.sps_at = sps, arrival
        size = h264.sps_dimensions(sps)
        if size is not None:
            layer.width, layer.height = size

    def remove(self, mid: str) -> PublishedTrack[DownTrack] | None:
        """Forget the track of `mid` (unpublished): its SSRCs are no longer routed, and what still
        arrives on them is a counted drop. The m-line stays negotiated, so a later offer that sends
        on it again publishes a new track in its place (`configure`)."""
        rec = self.tracks.pop(mid, None)
        if rec is not None:
            for ssrc in [ssrc for ssrc, (r, _, _) in self.by_ssrc.items() if r is rec]:
                self._forget(ssrc)
            # the SSRC budget is the m-line's for its whole life: unpublishing and publishing
            # again must not renew it
            self._ssrcs_used[mid] = rec.ssrcs_used
        return rec

    def _forget(self, ssrc: int) -> None:
        self.by_ssrc.pop(ssrc, None)

    def close(self) -> None:
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
        if self._feedback_task is not None:
            self._feedback_task.cancel()

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        STATS.drop(reason)

    def _padding(self, nbytes: int) -> None:
        """A padding-only packet (on the media SSRC, or an RTX packet with nothing to repair): not
        forwarded, and counted apart from the layer's media rate."""
        self._drop("padding")
        STATS.padding_packets += 1
        STATS.padding_bytes += nbytes

    # --- per packet ---------------------------------------------------------------------------
    def on_rtp(self, data: bytes, arrival: float) -> None:
        """One decrypted RTP packet from the publisher. Never raises: bad input is a counted drop."""
        # one try around the whole path (free in 3.11 when nothing is raised): every parser below
        # (header, extensions while learning, RTX, VP8/H.264 peeks) reports defects as RtpError
        counted = 0  # the media bytes this packet adds to its layer's rate, once its spatial layer is known
        try:
            view = self.parse(data)
            traffic = STATS.traffic
            traffic.packets_in += 1
            traffic.bytes_in += len(data)
            numbered = False
            if self.arrivals is not None and view.ext_start:
                # every packet on the transport, RTX and padding probes too: the publisher's
                # estimator counts them all
                number = self.extension(data, view, self.tcc_id)
                if number is not None and len(number) == 2:
                    self.arrivals.add(number[0] << 8 | number[1], arrival)
                    numbered = True
            entry = self.by_ssrc.get(view.ssrc)
            if entry is None:
                entry = self._learn(data, view)
                if entry is None:
                    return  # _learn counted the drop
            rec, layer, is_rtx = entry
            rx = layer.rx
            # Only the media SSRC's packets with a payload are the layer's media rate (what the
            # LayerSelector compares with each subscriber's estimate). RTX and padding are counted
            # apart: Firefox probes its lowest layer with ~1 Mbit/s of RTX copies on a 150 kbit/s
            # layer, which read as the layer's rate paused the subscribers it should have fitted.
            if is_rtx:
                nbytes = len(data)
                unwrapped = self._unwrap_rtx(data, view, rec, layer)
                if unwrapped is None:
                    return
                data, view = unwrapped
                if not rx.repair(view.seq):
                    # a copy of a packet we already have (a probe): forwarding it would send every
                    # subscriber a duplicate, so it stops here
                    STATS.rtx_copy_packets += 1
                    STATS.rtx_copy_bytes += nbytes
                    return
                STATS.rtx_repair_packets += 1
                STATS.rtx_repair_bytes += nbytes
                seen = LATE
            else:
                seen = rx.update(view.seq, view.ts, arrival)
                if seen:
                    if seen == JUMP:
                        self._drop("seq_jump")
                        return
                    if seen == RESTART:
                        layer.epoch += 1
                    elif seen == GAP and arrival - layer.nack_at >= NACK_MIN_INTERVAL:
                        layer.nack_at = arrival
                        self.send_nack(rec.mid, view.ssrc, rx.missing())
                if view.payload_start >= view.payload_end:
                    # a padding-only probe (Chromium probes on the media SSRC this way): received, so
                    # no loss to NACK upstream (hence after rx.update); not forwarded, so every
                    # DownTrack renumbers it away, or its subscriber NACKs a packet that never comes
                    # (aiortc's jitter buffer then holds video back until 512 packets have passed:
                    # ~24 s on a low layer)
                    self._padding(len(data))
                    for dt in rec.downtracks:
                        dt.skip(view.seq, layer)
                    if not rec.muted:  # (the other node skips it for its own DownTracks)
                        for relay in rec.relays:
                            relay.forward(data, view.seq, layer)
                    return
                counted = view.payload_end  # header + payload, without RTP padding

            keyframe = False
            picture = None
            if rec.kind == "video":
                payload = memoryview(data)[view.payload_start : view.payload_end]
                # A late key frame packet (a retransmission, or Chromium's RTX probes, which resend recent
                # packets) must not start a run: the packets after it were already passed over, so the
                # subscriber would get a gap it NACKs forever. Only fresh key frames switch layers.
                if rec.codec_name == "VP8":
                    picture = self.vp8_descriptor(payload)
                    keyframe = picture.keyframe and seen != LATE
                    if keyframe:
                        _vp8_dimensions(payload, picture.size, layer)
                elif rec.codec_name == "VP9":
                    picture = self.vp9_descriptor(payload)
                    keyframe = picture.keyframe and seen != LATE
                    if keyframe and picture.width:  # (the scalability structure of a key picture)
                        layer.width, layer.height = picture.width, picture.height
                        sizes = rtp.vp9_spatial_sizes(payload, picture)
                        layer.spatial_sizes = sizes if len(sizes) > 1 else ()  # SVC: its spatial layers
                    if counted:
                        layer.account(counted, arrival, picture.sid)
                        counted = 0
                elif rec.codec_name == "AV1":
                    picture = self._av1_picture(data, view, payload, layer, rec.mid)
                    keyframe = picture.keyframe and seen != LATE
                    if counted:
                        layer.account(counted, arrival, picture.sid)
                        counted = 0
                elif rec.codec_name == "H264":
                    keyframe = seen != LATE and h264.is_keyframe(payload)
                    if keyframe:
                        self._h264_size(payload, layer, arrival)
                if keyframe:
                    layer.keyframes += 1
                    layer.last_keyframe_at = arrival
                ast_id = self.extensions[rec.mid].get(rtp.URI_ABS_SEND_TIME)
                if ast_id and view.ext_start and not numbered:  # (numbered: the publisher estimates)
                    value = self.extension(data, view, ast_id)
                    if value is not None and len(value) == 3:
                        self._remb_add(arrival, value, len(data), view.ssrc)
            elif self.on_audio_level is not None and view.ext_start:
                level_id = self.extensions[rec.mid].get(rtp.URI_AUDIO_LEVEL)
                if level_id:
                    value = self.extension(data, view, level_id)
                    if value:
                        self.on_audio_level(self.participant_id, rtp.audio_level(value)[1], arrival)
            if counted:
                layer.account(counted, arrival)
        except rtp.RtpError as e:
            if counted:  # (a media packet with a bad payload descriptor still took the uplink)
                layer.account(counted, arrival)
            self._drop(e.reason)
            return

        if rec.muted:
            return
        self.fanout(rec.downtracks, data, view, layer, keyframe, picture, arrival)
        if rec.relays:
            for relay in rec.relays:
                relay.forward(data, view.seq, layer)
        STATS.observe_latency(arrival)

    def _av1_picture(self, data: bytes, view: rtp.RtpView, payload: memoryview, layer: Layer,
                     mid: str) -> rtp.Av1Picture:
        """An AV1 packet's layers, from its dependency descriptor and the latest structure of its
        Layer; a DD with a structure replaces that one (and gives the spatial layers' sizes).
        RtpError when the DD does not parse (the packet is dropped and counted). Without a DD (a
        sender that does not write it, or did not negotiate it) the stream is one layer, whose
        key frames the aggregation header marks."""
        xid = self.extensions[mid].get(dependency_descriptor.URI_DD)
        value = self.extension(data, view, xid) if xid and view.ext_start else None
        if value is None:
            return dependency_descriptor.single_layer_picture(payload)
        dd = dependency_descriptor.parse(value, layer.dd_structure)
        structure = dd.structure
        if structure is not None and structure != layer.dd_structure:
            layer.dd_structure = structure
            sizes = structure.resolutions
            if sizes:
                layer.width, layer.height = sizes[-1]
            layer.spatial_sizes = sizes if len(sizes) > 1 else ()  # SVC: its spatial layers
        return dependency_descriptor.picture(dd, payload)

    def _learn(self, data: bytes, view: rtp.RtpView) -> tuple[PublishedTrack[DownTrack], Layer, bool] | None:
        """First packet of an unknown SSRC: place it by its MID / RID / repaired-RID, or count a drop.

        Only layers signalled in the offer exist; an SSRC can only take a layer's media or RTX role,
        so the state an SSRC can create is bounded by the offer, whatever the packets claim.
        """
        rec = None
        if view.ext_start:
            exts = rtp.extensions(data, view)
            for mid, ids in self.extensions.items():
                mid_id = ids.get(rtp.URI_MID)
                if mid_id is not None and exts.get(mid_id) == mid.encode():
                    rec = self.tracks.get(mid)
                    if rec is None:  # its track was unpublished: the sender still runs, unheard
                        self._drop("unpublished")
                        return None
                    break
        if rec is None:
            return self._learn_without_extensions(view)
        ids = self.extensions[rec.mid]
        rid_id, rrid_id = ids.get(rtp.URI_RID), ids.get(rtp.URI_RRID)
        if rrid_id is not None and rrid_id in exts:
            layer = rec.layers.get(exts[rrid_id].decode(errors="replace"))
            is_rtx = True
        elif rid_id is not None and rid_id in exts:
            layer = rec.layers.get(exts[rid_id].decode(errors="replace"))
            is_rtx = False
        else:
            codec = self.slots[rec.mid].codecs.get(view.pt)
            if codec is None:
                self._drop("unknown_ssrc")
                return None
            layer = next(iter(rec.layers.values()))
            is_rtx = _is_rtx(codec)
            if not is_rtx and layer.ssrc is not None:
                self._drop("unknown_ssrc")  # media without a RID cannot replace a known SSRC
                return None
        if layer is None:
            self._drop("unknown_rid")
            return None
        return self._bind(rec, layer, view.ssrc, is_rtx)

    def _learn_without_extensions(self, view: rtp.RtpView) -> tuple[PublishedTrack[DownTrack], Layer, bool] | None:
        # Last resort, as aiortc's router does: a payload type only one m-line uses.
        matches = [r for mid, r in self.tracks.items() if view.pt in self.slots[mid].codecs]
        if len(matches) != 1 or len(matches[0].layers) != 1:
            self._drop("unknown_ssrc")
            return None
        rec = matches[0]
        layer = next(iter(rec.layers.values()))
        is_rtx = _is_rtx(self.slots[rec.mid].codecs[view.pt])
        if (layer.rtx_ssrc if is_rtx else layer.ssrc) is not None:
            self._drop("unknown_ssrc")
            return None
        return self._bind(rec, layer, view.ssrc, is_rtx)

    def bind(self, rec: PublishedTrack[DownTrack], layer: Layer, ssrc: int,
             is_rtx: bool) -> tuple[PublishedTrack[DownTrack], Layer, bool] | None:
        """An SSRC said out of band (a relayed track's description, sfu.cascade) rather than learnt
        from the packets: as `_bind`, under the same limits."""
        return self._bind(rec, layer, ssrc, is_rtx)

    def relaying(self, rec: PublishedTrack[DownTrack]) -> None:
        """`rec.relays` became empty or not: nothing to do here (every packet reaches them)."""

    def _bind(self, rec: PublishedTrack[DownTrack], layer: Layer, ssrc: int,
              is_rtx: bool) -> tuple[PublishedTrack[DownTrack], Layer, bool] | None:
        """Give `ssrc` the layer's media or RTX role; a previous holder of that role is forgotten."""
        if rec.ssrcs_used >= self.limits.max_ssrcs_per_track:
            self._drop("ssrc_limit")
            return None
        rec.ssrcs_used += 1
        old = layer.rtx_ssrc if is_rtx else layer.ssrc
        if old is not None:
            # the publisher moved the layer to a new SSRC (the newest announcement wins, as in
            # pion): one SSRC per role, so by_ssrc cannot grow with fresh SSRCs
            self.by_ssrc.pop(old, None)
        if is_rtx:
            layer.rtx_ssrc = ssrc
        else:
            layer.ssrc = ssrc
            if old is not None:  # a new stream: its numbering and reports start over
                layer.rx = reception.new(rec.clock_rate)
                layer.last_sr = None
                layer.epoch += 1
        entry = (rec, layer, is_rtx)
        self.by_ssrc[ssrc] = entry
        return entry

    def _unwrap_rtx(self, data: bytes, view: rtp.RtpView, rec: PublishedTrack[DownTrack],
                    layer: Layer) -> tuple[bytes, rtp.RtpView] | None:
        # RFC 4588: payload starts with the original sequence number; empty rest = padding/probe
        if view.payload_end - view.payload_start <= 2:
            self._padding(len(data))
            return None
        if layer.ssrc is None:
            self._drop("rtx_before_media")
            return None
        codec = self.slots[rec.mid].codecs.get(view.pt)
        apt = codec.parameters.get("apt") if codec is not None else None
        if not isinstance(apt, int) or not 0 <= apt <= 127:
            self._drop("rtx_unknown_apt")
            return None
        osn = rtp.U16.unpack_from(data, view.payload_start)[0]
        # rebuild without the OSN and without RTX padding (the original had none we can know of)
        out = bytearray(data[: view.payload_start])
        out[0] &= 0xDF  # clear P
        out += data[view.payload_start + 2 : view.payload_end]
        rtp.HEADER.pack_into(out, 0, out[0], (data[1] & 0x80) | apt, osn, view.ts, layer.ssrc)
        STATS.rtx_unwrapped += 1
        out_b = bytes(out)
        return out_b, self.parse(out_b)

    # --- feedback to the publisher ------------------------------------------------------------
    def _remb_add(self, arrival: float, ast: bytes, size: int, ssrc: int) -> None:
        abs_send_time = int.from_bytes(ast, "big")
        result = self.remb.add(int(arrival * 1000), abs_send_time, size, ssrc)
        if result is not None:
            self.remb_bps = result[0]

    UPLINK_CEILING_BPS = 4_000_000
    UPLINK_LOSS_LIMIT = 0.02

    def uplink_remb(self, loss: float) -> float:
        """The bitrate we allow the publisher.

        A receive-side estimate (aiortc's, from abs-send-time) rarely exceeds ~1.5x what arrives, so
        used as a cap it starves simulcast: Chromium keeps its top layer at a fraction of its target
        and suspends it when another layer is re-enabled. While nothing is lost we therefore allow
        every layer its full rate (up to a ceiling) and let the publisher's own congestion control
        work; with loss the estimate applies. TWCC feedback is the real fix (docs/performance.md).
        """
        if loss > self.UPLINK_LOSS_LIMIT:
            return self.remb_bps
        return max(self.remb_bps, self.UPLINK_CEILING_BPS)

    def send_pli(self, mid: str, media_ssrc: int) -> None:
        slot = self.slots.get(mid)
        if slot is None or self.transport is None:
            return
        self.transport.send_rtcp(
            [artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_PLI, ssrc=slot.rtcp_ssrc, media_ssrc=media_ssrc)]
        )
        STATS.plis_out += 1

    def send_nack(self, mid: str, media_ssrc: int, missing: list[int]) -> None:
        slot = self.slots.get(mid)
        if slot is None or self.transport is None:
            return
        self.transport.send_rtcp(
            [
                artp.RtcpRtpfbPacket(
                    fmt=artp.RTCP_RTPFB_NACK, ssrc=slot.rtcp_ssrc, media_ssrc=media_ssrc, lost=missing
                )
            ]
        )
        STATS.nacks_out += 1

    def on_rtcp(self, packets: list[Any]) -> None:
        """RTCP from the publisher: sender reports feed lip-sync translation and RTT."""
        now = time.monotonic()
        for p in packets:
            if isinstance(p, artp.RtcpSrPacket):
                entry = self.by_ssrc.get(p.ssrc)
                if entry is None:
                    continue
                rec, layer, _ = entry
                layer.last_sr = (p.sender_info.ntp_timestamp, p.sender_info.rtp_timestamp, now)
                for dt in rec.downtracks:
                    dt.on_publisher_sr(layer, p.sender_info.ntp_timestamp, p.sender_info.rtp_timestamp)
                for relay in rec.relays:
                    relay.on_publisher_sr(layer, p.sender_info.ntp_timestamp, p.sender_info.rtp_timestamp)

    def _reports(self) -> list[Any]:
        now = time.monotonic()
        packets: list[Any] = []
        worst_video_loss = 0  # fraction lost in the last interval, 0..255
        for mid, rec in self.tracks.items():
            blocks = []
            for layer in rec.layers.values():
                rx = layer.rx
                if layer.ssrc is None or not rx.started:
                    continue
                lsr = dlsr = 0
                if layer.last_sr is not None:
                    ntp, _, at = layer.last_sr
                    lsr = (ntp >> 16) & 0xFFFFFFFF
                    dlsr = min(int((now - at) * 65536), 0xFFFFFFFF)
                lost = rx.interval_loss()  # starts the next interval
                if rec.kind == "video":
                    worst_video_loss = max(worst_video_loss, lost)
                blocks.append(
                    artp.RtcpReceiverInfo(
                        ssrc=layer.ssrc,
                        fraction_lost=lost,
                        packets_lost=rx.packets_lost,
                        highest_sequence=rx.extended_max,
                        jitter=rx.jitter,
                        lsr=lsr,
                        dlsr=dlsr,
                    )
                )
            if blocks:
                packets.append(artp.RtcpRrPacket(ssrc=self.slots[mid].rtcp_ssrc, reports=blocks))
        video_ssrcs = [
            layer.ssrc
            for rec in self.tracks.values()
            if rec.kind == "video"
            for layer in rec.layers.values()
            if layer.ssrc is not None
        ]
        # with transport-wide feedback the publisher estimates its uplink itself (`_feedback_loop`);
        # one that negotiated it but numbers nothing (aiortc's sender) still gets REMB
        remb = self.uplink_remb(worst_video_loss / 256) if not self.numbering() else 0
        if remb and video_ssrcs:
            sender = next(iter(self.slots.values())).rtcp_ssrc
            packets.append(
                artp.RtcpPsfbPacket(
                    fmt=artp.RTCP_PSFB_APP,
                    ssrc=sender,
                    media_ssrc=0,
                    fci=artp.pack_remb_fci(int(remb), video_ssrcs),
                )
            )
        return packets

    def rtcp_round(self) -> None:
        """One round of upstream feedback: RR + REMB, then NACKs for what is still missing."""
        if self.transport is None or self.transport.closed:
            return
        packets = self._reports()
        if packets:
            self.transport.send_rtcp(packets)
            STATS.rtcp_out += 1
        now = time.monotonic()
        for rec in self.tracks.values():
            for layer in rec.layers.values():
                # a layer that stopped keeps its last gaps: NACKing them every second would be noise
                if layer.ssrc is not None and layer.rx.missing_bits and layer.arriving(now):
                    self.send_nack(rec.mid, layer.ssrc, layer.rx.missing())

    def numbering(self) -> bool:
        """Whether the publisher numbers its packets transport-wide (then it gets feedback, no REMB)."""
        return self.arrivals is not None and self.arrivals.high >= 0

    def send_transport_feedback(self) -> int:
        """Report to the publisher which transport-wide numbers arrived since the last report, and
        when; returns the number of feedback packets sent."""
        if self.arrivals is None or self.transport is None or self.transport.closed or not self.slots:
            return 0
        media = next((layer.ssrc for rec in self.tracks.values() for layer in rec.layers.values()
                      if layer.ssrc is not None), 0)
        packets, self._feedback_count = transport_arrivals.feedback(
            self.arrivals, next(iter(self.slots.values())).rtcp_ssrc, media, self._feedback_count)
        for packet in packets:  # one datagram each: together they could exceed a path's MTU
            self.transport.send_rtcp([packet])
        STATS.transport_feedback_out += len(packets)
        return len(packets)

    async def _feedback_loop(self) -> None:
        started = time.monotonic()
        while True:
            idle = not self.numbering() and time.monotonic() - started > transport_arrivals.FEEDBACK_IDLE_AFTER_S
            await asyncio.sleep(transport_arrivals.FEEDBACK_IDLE_S if idle else transport_arrivals.FEEDBACK_INTERVAL_S)
            try:
                self.send_transport_feedback()
            except Exception:  # a bug must not stop the feedback: the publisher's rate depends on it
                STATS.task_error("transport_feedback", log)

    async def _rtcp_loop(self) -> None:
        while True:
            await asyncio.sleep(self.RTCP_INTERVAL)
            try:
                self.rtcp_round()
            except Exception:  # a bad report must never stop future ones
                log.exception("RTCP report failed")


if IngressCore is not None:
    _CODECS = {"VP8": CODEC_VP8, "H264": CODEC_H264, "VP9": CODEC_VP9, "AV1": CODEC_AV1}

    class NativeIngress(IngressCore, Ingress):
        """Ingress whose common case, the next packet of a known media SSRC, is C (`sfu/native/ingress.c`,
        `IngressCore.on_rtp`); everything else (learning, RTX, padding, gaps, late packets, key frames,
        H.264, malformed input) goes to `Ingress.on_rtp`, called as `_slow_on_rtp`. Its SSRC table
        follows `by_ssrc` through `_bind`, the one place that changes it."""

        _slow_on_rtp = Ingress.on_rtp

        def __init__(self, participant_id: str, on_audio_level: Callable[[str, int, float], None] | None = None,
                     limits: IngressLimits | None = None):
            super().__init__(participant_id, on_audio_level, limits)
            self._stats = STATS
            self._traffic = STATS.traffic

        def _forget(self, ssrc: int) -> None:
            super()._forget(ssrc)
            self._unroute(ssrc)

        def _bind(self, rec: PublishedTrack[DownTrack], layer: Layer, ssrc: int,
                  is_rtx: bool) -> tuple[PublishedTrack[DownTrack], Layer, bool] | None:
            old = layer.rtx_ssrc if is_rtx else layer.ssrc
            entry = super()._bind(rec, layer, ssrc, is_rtx)
            if entry is not None:
                if old is not None:
                    self._unroute(old)
                if not is_rtx and not rec.relays:
                    self._route_layer(rec, layer)
            return entry

        def _route_layer(self, rec: PublishedTrack[DownTrack], layer: Layer) -> None:
            ids = self.extensions.get(rec.mid, {})
            self._route(layer.ssrc, rec, layer, rec.kind == "video", _CODECS.get(rec.codec_name, CODEC_OTHER),
                        ids.get(rtp.URI_ABS_SEND_TIME) or 0, ids.get(rtp.URI_AUDIO_LEVEL) or 0)

        def relaying(self, rec: PublishedTrack[DownTrack]) -> None:
            """A relayed track's packets take the Python path, which feeds `rec.relays` (the C one
            feeds DownTracks only); back to C when its last relay ends. A relay costs its source
            one Python hop per packet, not one per subscriber."""
            for layer in rec.layers.values():
                if layer.ssrc is not None and self.by_ssrc.get(layer.ssrc, (None,))[0] is rec:
                    if rec.relays:
                        self._unroute(layer.ssrc)
                    else:
                        self._route_layer(rec, layer)


def ingress_class() -> type[Ingress]:
    """The Ingress of the configured data path: NativeIngress on `native`, Ingress on `python`."""
    return NativeIngress if datapath.current() == "native" else Ingress


def _is_rtx(codec: Any) -> bool:
    return codec.mimeType.lower().endswith("/rtx")


def _vp8_dimensions(payload: memoryview, desc_size: int, layer: Layer) -> None:
    # VP8 keyframe header (RFC 6386 9.1): 3-byte tag, start code 9d 01 2a, then 14-bit w/h
    p = desc_size
    if len(payload) >= p + 10 and payload[p + 3] == 0x9D and payload[p + 4] == 0x01 and payload[p + 5] == 0x2A:
        layer.width = (payload[p + 6] | (payload[p + 7] << 8)) & 0x3FFF
        layer.height = (payload[p + 8] | (payload[p + 9] << 8)) & 0x3FFF
