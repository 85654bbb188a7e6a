"""Peer: one participant on the media plane — a publish transport in, a subscribe transport out.

The publish transport answers the client's offer (sendonly audio + video). The subscribe transport
is offered by the SFU (as LiveKit and mediasoup do): one sendonly m-line per remote track, reused
(set inactive, then recycled for the next track of the same kind) when tracks come and go, because
m-lines can never be removed from an SDP session (RFC 3264). Renegotiation is serialised: while an
offer is out, further changes only mark the subscribe transport dirty and are sent when the answer
comes back.

A Peer knows its room only through the `Room` Protocol below (the Router satisfies it): the calls
it makes when a track appears, a subscription starts or subscriber feedback arrives.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import rtp as artp
from aiortc.sdp import candidate_from_sdp

from sfu import datapath, twcc
from sfu import sdp as sdpmod
from sfu.api import ENCRYPTIONS, SOURCE_KINDS, SOURCES, MediaError, ParticipantInfo
from sfu.bucket import TokenBucket
from sfu.data import DataEndpoint
from sfu.downtrack import Continuity, DownTrack
from sfu.ingress import Ingress, ingress_class
from sfu.metrics import STATS
from sfu.rtp import URI_RID, URI_RRID
from sfu.track import Layer, PublishedTrack
from sfu.transport import CandidateRefused, IceConfig, PeerTransport, RecvSlot, Remb, SendSlot

log = logging.getLogger("basement.peer")

Emit = Callable[[dict[str, Any]], None]
# (publisher, its tracks that just ended): the node unpublishes them in the room
TracksLost = Callable[["Peer", list[PublishedTrack[DownTrack]]], None]

__all__ = ["Emit", "Peer", "Room", "TracksLost", "check_sources"]

# Unpublishing a track and publishing it again (a screen share stopped and started) renegotiates
# every subscriber of the room. The WebSocket rate limit alone would let one participant cause ten
# such rounds a second in every other participant's browser: unpublishing is limited on its own.
UNPUBLISH_BURST = 10
UNPUBLISH_PER_S = 0.5


class Room(Protocol):
    """The room a Peer is in, as the Peer sees it (`sfu.router.Router`)."""

    name: str  # the room's name

    # per audio packet with a level (RFC 6464): a plain callable, handed to the Ingress as it is,
    # so the packet path makes no extra hop through the room
    observe_audio: Callable[[str, int, float], None]

    def add_track(self, publisher: Peer, rec: PublishedTrack[DownTrack]) -> None:
        """`publisher` published `rec`: the others subscribe, everyone hears about it."""
        ...

    def initial_layer(self, rec: PublishedTrack[DownTrack], dt: DownTrack) -> Layer | None:
        """The layer a new subscription starts on, before any feedback."""
        ...

    def on_estimate(self, subscriber: Peer, bitrate: int, downtracks: list[DownTrack], scope: tuple[int, ...]) -> None:
        """The subscriber's downlink estimate (its REMB, or ours from transport-wide feedback) for
        `downtracks` (those it names; none: all)."""
        ...

    def name_of(self, participant_id: str) -> str: ...


class Peer:
    def __init__(self, participant_id: str, name: str, room: Room, emit: Emit,
                 can_publish: bool = True, can_subscribe: bool = True, identity: str = "",
                 ice: IceConfig | None = None, rtx_budget: float | None = None) -> None:
        self.id = participant_id
        self.ice = ice
        self.rtx_budget = rtx_budget
        self.name = name
        self.identity = identity
        self.room = room
        self.emit = emit
        self.can_publish = can_publish
        self.can_subscribe = can_subscribe
        self.p2p = False  # may send its media peer to peer (sfu.pairing): the room allows it, the client can
        self.publisher: PeerTransport | None = None
        self.ingress: Ingress | None = None
        self.subscriber: PeerTransport | None = None
        self.downtracks: dict[str, DownTrack] = {}  # track id -> DownTrack
        # what ended DownTracks sent, for the session summary: counters only, because a kept
        # DownTrack would keep its packet cache and the departed publisher's whole ingress alive
        self.ended_bytes = 0
        self.ended_packets = 0
        self.slots_by_ssrc: dict[int, SendSlot] = {}
        # inactive m-lines to recycle, with the numbering their last DownTrack left off at
        self.free_slots: list[tuple[SendSlot, Continuity | None]] = []
        self._negotiating = False
        self._dirty = False
        self._offer_task: asyncio.Future[None] | None = None
        self._offer: dict[str, Any] | None = None  # the last subscribe offer sent (resend_offer)
        self._offer_lock = asyncio.Lock()
        self._unpublished: set[str] = set()  # mids of the publish connection whose track was unpublished
        self._unpublishes = TokenBucket(UNPUBLISH_PER_S, UNPUBLISH_BURST, time.monotonic)
        # track id -> the layer this subscriber was last told it gets (subscription reply, layer_changed)
        self._told_layer: dict[str, str] = {}
        # set by the node: called when a failed publish connection took this peer's tracks with it
        self.on_tracks_lost: TracksLost | None = None
        self._lost_tasks: set[asyncio.Future[None]] = set()
        self._subscriber_reported = False
        # data channels on the publish connection (chat, app data): the room relays what it sends
        self.data = DataEndpoint(participant_id, name, identity, receives=can_subscribe)
        self.closed = False

    def public(self) -> ParticipantInfo:
        return {"id": self.id, "name": self.name, "identity": self.identity}

    @property
    def tracks(self) -> list[PublishedTrack[DownTrack]]:
        return list(self.ingress.tracks.values()) if self.ingress else []

    # --- publishing ---------------------------------------------------------------------------
    async def publish(self, offer_sdp: Any, sources: dict[str, str] | None = None, encryption: str = "none") -> str:
        """Apply a publish offer; the tracks it creates carry `sources` (mid -> source) and
        `encryption` (ENCRYPTIONS: what their frames are encrypted with end to end)."""
        if encryption not in ENCRYPTIONS:
            raise MediaError("invalid_encryption", f"encryption must be one of {', '.join(ENCRYPTIONS)}")
        info = sdpmod.check_offer(offer_sdp)
        if info.media and not self.can_publish:
            # data channels need no media grant (an offer with only m=application is answered)
            raise MediaError("forbidden", "this participant may not publish media (grant has can_publish=false); "
                                          "an offer with only data channels is allowed")
        async with self._offer_lock:
            sources = check_sources(info, sources, {rec.mid: (rec.id, rec.source) for rec in self.tracks})
            if self.publisher is not None and self.publisher.ended:
                # it ended and the news is still on its way: this offer starts over on a new one
                dead = self.publisher
                self._drop_publisher(dead, dead.connection_state)
                await dead.close()
            ingress, publisher = self.ingress, self.publisher
            if ingress is None or publisher is None:  # (the first offer, or one after a failure, creates both)
                ingress = self.ingress = ingress_class()(self.id, self.room.observe_audio)
                publisher = self.publisher = PeerTransport(on_rtp=ingress.on_rtp, on_rtcp=ingress.on_rtcp,
                                                           ice=self.ice)
                publisher.on_state(functools.partial(self._publisher_state, publisher))
                publisher.on_datachannel(self.data.attach)
            try:
                answer, slots = await self._answer(publisher, offer_sdp, info)
            except sdpmod.SdpError:
                raise
            except Exception as e:  # aiortc rejects some SDP only when applying it
                raise MediaError("invalid_sdp", f"offer could not be applied: {type(e).__name__}: {e}") from None
            # an unpublished m-line comes back only when the offer names its source again: a stopped
            # screen share's m-line stays negotiated (browsers keep stopped senders), and re-offering
            # the camera alone must not publish it, silent
            slots = [sl for sl in slots if sl.mid not in self._unpublished or sl.mid in sources]
            ssrc_hints = {m.mid: m.ssrcs for m in info.media}
            rids = {m.mid: m.rids for m in info.media}
            track_ids = {s.mid: f"TR_{self.id}_{s.mid}" for s in slots}
            created = ingress.configure(publisher, slots, ssrc_hints, track_ids, rids)
            for rec in created:
                rec.source = sources.get(rec.mid, rec.source)
                rec.encryption = encryption
                self._unpublished.discard(rec.mid)
        for rec in created:
            self.room.add_track(self, rec)
        return answer

    async def unpublish(self, track_id: str) -> PublishedTrack[DownTrack]:
        """Stop taking one track's media: its SSRCs are no longer routed (the caller tells the room).

        Its m-line stays negotiated, as a stopped sender's does in a browser: an offer that sends on
        it again later publishes a new track under the same id (a re-share)."""
        async with self._offer_lock:  # not in the middle of applying an offer that configures it
            rec = next((r for r in self.tracks if r.id == track_id), None)
            if rec is None or self.ingress is None:
                raise MediaError("unknown_track", f"no track {track_id[:64]!r} published by this participant")
            if not self._unpublishes.take():
                raise MediaError("rate_limited", f"more than {UNPUBLISH_BURST} unpublishes at once or one every "
                                                 f"{1 / UNPUBLISH_PER_S:g} s: each renegotiates the whole room; "
                                                 "the track was not unpublished")
            self.ingress.remove(rec.mid)
            self._unpublished.add(rec.mid)  # (a mid of this connection's offers: at most sdp.MAX_MEDIA)
        return rec

    @staticmethod
    async def _answer(publisher: PeerTransport, offer_sdp: str,
                      info: sdpmod.OfferInfo) -> tuple[str, list[RecvSlot]]:
        pc = publisher.pc
        await publisher.apply_offer(offer_sdp)
        by_mid = info.by_mid()
        for t in pc.getTransceivers():
            m = by_mid.get(t.mid) if t.mid is not None else None
            if m is not None and len(m.rids) > 1:
                PeerTransport.accept_extension(m.extmap, t, {URI_RID, URI_RRID})
        # the remote description is set; PeerTransport finishes the answer with the hooks in place
        answer, slots = await publisher.accept_applied_offer()
        answer = sdpmod.add_simulcast_recv(answer, {m.mid: m.rids for m in info.media})
        return answer, slots

    def _publisher_state(self, transport: PeerTransport, state: str) -> None:
        if state not in ("failed", "closed") or self.closed or transport is not self.publisher:
            return  # (a transport we closed ourselves, or one already replaced, is no news)
        log.info("publish connection of %s is %s: unpublishing its tracks", self.id, state)
        STATS.transport_ended("publisher", transport.end_cause)
        task = asyncio.ensure_future(self._publisher_lost(transport, state))
        self._lost_tasks.add(task)
        task.add_done_callback(self._lost_tasks.discard)

    async def _publisher_lost(self, transport: PeerTransport, state: str) -> None:
        """The publish connection failed (ICE, DTLS, consent expired) or the client closed it.

        aiortc cannot restart ICE, so its tracks can never carry media again: unpublish them (the
        node tells the room and recycles the subscribers' m-lines), tell the client, and forget the
        connection, so that its next `offer` starts a new one.
        """
        async with self._offer_lock:  # not in the middle of applying an offer on it
            self._drop_publisher(transport, state)
        await transport.close()

    def _drop_publisher(self, transport: PeerTransport, state: str) -> None:
        if self.closed or transport is not self.publisher:
            return  # left meanwhile, or already dropped
        lost = self.tracks
        ingress = self.ingress
        self.publisher = self.ingress = None
        self._unpublished.clear()  # the next connection numbers its m-lines afresh
        if ingress is not None:
            ingress.close()
        track_ids = [rec.id for rec in lost]
        self.emit({"type": "transport_failed", "target": "publisher", "state": state, "tracks": track_ids,
                   "message": f"the publish connection is {state}; its tracks were unpublished: "
                              "send a new offer to publish again"})
        if lost and self.on_tracks_lost is not None:
            self.on_tracks_lost(self, lost)

    def set_muted(self, track_id: str, muted: bool) -> PublishedTrack[DownTrack]:
        for rec in self.tracks:
            if rec.id == track_id:
                rec.set_muted(muted)
                return rec
        raise MediaError("unknown_track", f"no track {track_id!r} published by this participant")

    # --- subscribing --------------------------------------------------------------------------
    def _ensure_subscriber(self) -> PeerTransport:
        if self.subscriber is None:
            subscriber = self.subscriber = PeerTransport(on_rtp=None, on_rtcp=self._subscriber_rtcp, ice=self.ice)
            subscriber.on_state(self._subscriber_state)
        return self.subscriber

    def _subscriber_state(self, state: str) -> None:
        """The subscribe connection failed or the client closed it: it is never offered again (aiortc
        cannot restart ICE), and the client hears of it once; rejoining gets it a new one."""
        if state not in ("failed", "closed") or self.closed or self._subscriber_reported:
            return
        self._subscriber_reported = True
        log.info("subscribe connection of %s is %s", self.id, state)
        if self.subscriber is not None:
            STATS.transport_ended("subscriber", self.subscriber.end_cause)
        # nothing sent on it arrives any more: stop forwarding to it and free each DownTrack's NACK
        # cache now, not when the participant leaves (what was sent still counts in media_totals)
        for track_id in list(self.downtracks):
            dt = self.downtracks.pop(track_id)
            dt.set_target(None, "transport_failed")
            self._end(dt)
        self.free_slots.clear()
        self.emit({"type": "transport_failed", "target": "subscriber", "state": state, "tracks": [],
                   "message": f"the subscribe connection is {state}; no media reaches you until you rejoin"})

    def subscribe(self, rec: PublishedTrack[DownTrack]) -> DownTrack | None:
        if not self.can_subscribe or rec.id in self.downtracks or self.closed:
            return None
        if self.subscriber is not None and self.subscriber.ended:
            return None  # the subscribe connection failed or was closed: nothing more goes on it
        transport = self._ensure_subscriber()
        previous = None
        slot = None
        for i, (free, old_dt) in enumerate(self.free_slots):
            if free.kind == rec.kind and _same_codec(free, rec):
                slot, previous = free, old_dt
                del self.free_slots[i]
                break
        if slot is None:
            mime = f"{rec.kind}/{rec.codec.name}" if rec.codec is not None else None
            slot = transport.add_slot(rec.kind, mime)
            slot.codec_name = rec.codec_name
        transport.set_slot_direction(slot, "sendonly")
        slot.set_msid(rec.participant_id, rec.id)
        dt = datapath.downtrack_class()(rec, self.id, transport, slot, self.rtx_budget)
        dt.on_layer_change = self._layer_changed
        if previous is not None:
            dt.inherit(previous)
        slot.on_active = dt.slot_ready
        self.slots_by_ssrc[slot.ssrc] = slot
        slot.downtrack = dt
        self.downtracks[rec.id] = dt
        dt.set_target(self.room.initial_layer(rec, dt))
        rec.downtracks.append(dt)
        self.request_negotiation()
        return dt

    def _layer_changed(self, dt: DownTrack, old: str | None, new: str | None) -> None:
        """The layer forwarded on `dt` is now `new`: tell the subscriber when it differs from what it
        was last told (a switch, or a first layer other than the one a `subscription` reply named)."""
        told = self._told_layer.get(dt.track.id)
        if new is None:
            return
        self._told_layer[dt.track.id] = new
        if (old is not None and old != new) or (old is None and told is not None and told != new):
            self.emit({"type": "layer_changed", "track": dt.track.id, "layer": new,
                       "reason": dt.target_reason})

    def told_layer(self, track_id: str, rid: str | None) -> None:
        """A `subscription` reply named `rid` as the layer this subscriber gets on `track_id`."""
        if rid is None:
            self._told_layer.pop(track_id, None)
        else:
            self._told_layer[track_id] = rid

    def unsubscribe(self, track_id: str) -> None:
        self._told_layer.pop(track_id, None)
        dt = self.downtracks.pop(track_id, None)
        if dt is None:
            return
        dt.set_target(None, "unpublished")
        self._end(dt)
        if self.subscriber is not None and not self.closed:
            self.subscriber.set_slot_direction(dt.slot, "inactive")
            dt.slot.active = False
            self.free_slots.append((dt.slot, dt.continuity()))
            self.request_negotiation()

    def _end(self, dt: DownTrack) -> None:
        """Detach an ended DownTrack from everything that outlives it (receiver, m-line)."""
        if dt in dt.track.downtracks:
            dt.track.downtracks.remove(dt)
        if dt.slot.downtrack is dt:
            dt.slot.downtrack = None
            dt.slot.on_active = None
        self.ended_bytes += dt.bytes_sent
        self.ended_packets += dt.packets
        dt.release()

    def media_totals(self) -> tuple[int, int]:
        """(bytes, packets) sent to this participant since it joined, ended tracks included."""
        live = self.downtracks.values()
        return (self.ended_bytes + sum(dt.bytes_sent for dt in live),
                self.ended_packets + sum(dt.packets for dt in live))

    def request_negotiation(self) -> None:
        if self._negotiating:
            self._dirty = True
            return
        if self.closed or self.subscriber is None or self.subscriber.ended:
            return  # nothing to negotiate on; an ended connection raises InvalidStateError
        self._negotiating = True
        self._offer_task = asyncio.ensure_future(self._send_offer())

    async def _send_offer(self) -> None:
        transport = self.subscriber
        if self.closed or transport is None or transport.ended:
            self._negotiating = False
            return
        # what changes while the offer is made (a track subscribed during the await) is not in it:
        # it marks the transport dirty again, and goes in the next offer once this one is answered
        self._dirty = False
        offered = dict(self.downtracks)
        try:
            sdp = await transport.create_offer()
        except Exception:
            self._negotiating = False
            if self.closed or transport.ended:  # it ended while the offer was made: nothing to send
                log.debug("subscribe offer for %s abandoned: the connection ended", self.id, exc_info=True)
            else:
                log.exception("creating the subscribe offer for %s failed", self.id)
            return
        if self.closed or transport.ended:
            self._negotiating = False
            return
        tracks = {}
        for track_id, dt in offered.items():
            mid = dt.slot.transceiver.mid
            if mid is not None and self.downtracks.get(track_id) is dt:
                tracks[mid] = {**dt.track.info(), "name": self.room.name_of(dt.track.participant_id)}
        self._offer = {"type": "offer", "target": "subscriber", "sdp": sdp, "tracks": tracks}
        self.emit(self._offer)

    def resend_offer(self) -> bool:
        """Send the subscribe offer that waits for an answer again (True), if one does."""
        transport = self.subscriber
        if (self._offer is None or transport is None or transport.ended
                or transport.signaling_state != "have-local-offer"):
            return False
        self.emit(dict(self._offer))
        return True

    async def subscriber_answer(self, sdp: Any) -> None:
        if self.subscriber is None or self.subscriber.signaling_state != "have-local-offer":
            raise MediaError("unexpected_answer", "no subscriber offer is waiting for an answer")
        if not isinstance(sdp, str) or not sdp.strip():
            raise MediaError("invalid_sdp", "sdp must be a non-empty string")
        try:
            await self.subscriber.accept_answer(sdp)
        except Exception as e:
            raise MediaError("invalid_sdp", f"answer could not be applied: {type(e).__name__}: {e}") from None
        self._negotiating = False
        for dt in self.downtracks.values():
            self.subscriber.reactivate(dt.slot)
        if self._dirty:
            self.request_negotiation()

    def _subscriber_rtcp(self, packets: list[Any]) -> None:
        """Feedback from the subscriber (already validated by PeerTransport), routed to the DownTrack
        it concerns. An m-line between tracks has no DownTrack: its feedback is ignored."""
        for p in packets:
            if isinstance(p, artp.RtcpRtpfbPacket):
                slot = self.slots_by_ssrc.get(p.media_ssrc)
                if slot is not None and slot.downtrack is not None and p.fmt == artp.RTCP_RTPFB_NACK:
                    now = time.monotonic()
                    slot.downtrack.on_nack(p.lost, now)
                    if self.subscriber is not None:
                        self.subscriber.playout_delay.on_nack(now)
            elif isinstance(p, artp.RtcpPsfbPacket):
                if p.fmt == artp.RTCP_PSFB_PLI:
                    targets = [p.media_ssrc]
                elif p.fmt == artp.RTCP_PSFB_FIR:
                    # RFC 5104 4.3.1: the header's media SSRC is 0; each 8-byte FCI entry names a target
                    targets = [int.from_bytes(p.fci[i:i + 4], "big") for i in range(0, len(p.fci) - 7, 8)]
                else:
                    continue
                for ssrc in targets:
                    slot = self.slots_by_ssrc.get(ssrc)
                    if slot is not None and slot.downtrack is not None:
                        slot.downtrack.on_pli()
            elif isinstance(p, twcc.Feedback):
                transport = self.subscriber
                if transport is not None:
                    estimate = transport.on_transport_feedback(p, time.monotonic())
                    if estimate is not None:
                        self.room.on_estimate(self, int(estimate), [], ())
            elif isinstance(p, Remb):
                if self.subscriber is not None and self.subscriber.estimator is not None:
                    continue  # our own estimate, from transport-wide feedback, is the better one
                # the estimate covers the media the REMB names (RFC draft-alvestrand-rmcat-remb);
                # naming none of ours, it is taken for the whole downlink
                named = [s.downtrack for s in map(self.slots_by_ssrc.get, p.ssrcs)
                         if s is not None and s.downtrack is not None]
                self.room.on_estimate(self, p.bitrate, named, tuple(sorted(set(p.ssrcs))))
            elif isinstance(p, (artp.RtcpRrPacket, artp.RtcpSrPacket)):
                for block in p.reports:
                    slot = self.slots_by_ssrc.get(block.ssrc)
                    if slot is not None and slot.downtrack is not None:
                        slot.downtrack.on_report(block)
                        if slot.kind == "video" and self.subscriber is not None:
                            self.subscriber.playout_delay.on_rtt(slot.downtrack.rtt, time.monotonic())

    # --- ICE ----------------------------------------------------------------------------------
    def restart_ice(self, target: str) -> None:
        """The client's subscribe connection lost its path (its network changed): the next subscribe
        offer carries new ICE credentials, and is sent now. The tracks, m-lines and DTLS stay."""
        if target != "subscriber":
            raise MediaError("bad_target", "restart_ice: only the subscriber connection restarts this way; "
                                           "restart the publisher connection with a new offer (restartIce())")
        transport = self.subscriber
        if transport is None or transport.ended:
            raise MediaError("no_connection", "restart_ice: there is no subscribe connection to restart; rejoin")
        transport.want_ice_restart = True
        self.request_negotiation()

    async def add_candidate(self, target: str, candidate: Any) -> None:
        transport = self.publisher if target == "publisher" else self.subscriber
        if transport is None:
            raise MediaError("unexpected_candidate", f"no {target} connection exists: none was offered yet, "
                             "or it ended (transport_failed)")
        if candidate is None:
            return  # end of candidates
        if not isinstance(candidate, dict) or not isinstance(candidate.get("candidate"), str):
            raise MediaError("invalid_candidate", "candidate must be an object with a 'candidate' string")
        line = candidate["candidate"]
        if line.startswith("candidate:"):
            line = line[10:]
        if not line:
            return
        problem = _candidate_problem(line)
        try:
            c = None if problem else candidate_from_sdp(line)
        except Exception as e:  # aiortc raises ValueError/IndexError/AssertionError, often without a message
            problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if c is None:
            raise MediaError("invalid_candidate", f"candidate could not be parsed ({problem}); expected RFC 8839 "
                             "'candidate:<foundation> <component> <transport> <priority> <address> <port> "
                             "typ <type> ...'")
        c.sdpMid = candidate.get("sdpMid")
        c.sdpMLineIndex = candidate.get("sdpMLineIndex")
        if c.sdpMid is None and c.sdpMLineIndex is None:
            c.sdpMLineIndex = 0
        try:
            await transport.add_ice_candidate(c)
        except CandidateRefused as e:
            raise MediaError(e.code, str(e)) from None
        except Exception as e:
            raise MediaError("invalid_candidate", f"candidate rejected: {e}") from None

    # --- lifecycle ----------------------------------------------------------------------------
    async def close(self) -> None:
        """Close both connections; returns once nothing of this peer runs any more."""
        if self.closed:
            return
        self.closed = True
        # an offer being made or a failed publish connection being wound up: both end at once now
        # (they check `closed`), so wait for them rather than leave them running on closed connections
        pending = [t for t in (self._offer_task, *self._lost_tasks) if t is not None and not t.done()]
        for track_id in list(self.downtracks):
            self._end(self.downtracks.pop(track_id))
        self.free_slots.clear()
        self.data.close()
        if self.ingress is not None:
            self.ingress.close()
        for t in (self.publisher, self.subscriber):
            if t is not None:
                await t.close()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def decoded_nothing(self) -> bool:
        return all(t.receivers_decoded_nothing() for t in (self.publisher, self.subscriber) if t is not None)


def check_sources(info: sdpmod.OfferInfo, sources: Any, live: dict[str, tuple[str, str]]) -> dict[str, str]:
    """An offer's `sources` (mid -> what its track carries), checked against the offer and against
    what is published already (`live`: mid -> (track id, source)); raises `invalid_sources`."""
    sources = sources or {}
    if not isinstance(sources, dict):
        raise MediaError("invalid_sources", "sources must map mids to sources")
    kinds = {m.mid: m.kind for m in info.media}
    for mid, source in sources.items():
        if not isinstance(mid, str) or not isinstance(source, str) or source not in SOURCE_KINDS:
            raise MediaError("invalid_sources", f"unknown source {str(source)[:32]!r}; one of {', '.join(SOURCES)}")
        if mid not in kinds:
            raise MediaError("invalid_sources", f"sources names mid {mid[:16]!r}, which the offer has no "
                                                f"audio or video m-line for")
        if kinds[mid] != SOURCE_KINDS[source]:
            raise MediaError("invalid_sources", f"mid {mid!r} is {kinds[mid]}; {source} is {SOURCE_KINDS[source]}")
    for mid, (track_id, source) in live.items():
        if mid in sources and sources[mid] != source:
            raise MediaError("invalid_sources", f"track {track_id} is published as {source}: unpublish "
                                                f"it before sending {sources[mid]} on mid {mid}")
    # screens are served first from every subscriber's estimate: one of each per participant
    after = {**{mid: src for mid, src in sources.items() if mid not in live},
             **{mid: src for mid, (_, src) in live.items()}}
    for shared in ("screen", "screen_audio"):
        if sum(src == shared for src in after.values()) > 1:
            raise MediaError("invalid_sources", f"at most one {shared} track per participant")
    return sources


def _same_codec(slot: SendSlot, rec: PublishedTrack[DownTrack]) -> bool:
    return slot.codec_name == rec.codec_name


def _candidate_problem(line: str) -> str:
    """What is wrong with an a=candidate value (RFC 8839 §5.1), before aiortc's parser, which asserts."""
    f = line.split()
    if len(f) < 8:
        return f"{len(f)} fields, at least 8 are needed"
    if not 1 <= _number(f[1]) <= 256:
        return f"component {f[1][:16]!r} is not 1-256"
    if f[2].lower() not in ("udp", "tcp"):
        return f"transport {f[2][:16]!r} is not udp or tcp"
    if not 0 <= _number(f[3]) < 2**32:
        return f"priority {f[3][:16]!r} is not a 32-bit number"
    if not 0 <= _number(f[5]) <= 65535:
        return f"port {f[5][:16]!r} is not 0-65535"
    if f[6] != "typ":
        return f"'typ' expected after the port, not {f[6][:16]!r}"
    return ""


def _number(text: str) -> int:
    """An ASCII decimal of at most 10 digits, or -1."""
    return int(text) if len(text) <= 10 and text.isascii() and text.isdigit() else -1
