"""Synthetic publishers and light subscribers: real ICE/DTLS/SRTP through `PeerTransport`, no codecs.

A publisher builds RTP around pre-encoded payloads (`bench.loadgen.media`) and hands it to
`PeerTransport.send_rtp`; a subscriber answers the SFU's offer with `accept_applied_offer`, so
decrypted packets reach `on_rtp` as bytes and are only counted and spot-checked, never decoded.
Both speak enough RTCP to look like a browser to the SFU: PLI at start, NACK on gaps, RR and REMB.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import rtp as artp

from bench.loadgen import media
from sfu import rtp as srtp_view
from sfu import transport
from sfu.transport import PeerTransport

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
URI_RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
URI_AST = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ID_HEADER_PACKETS = 60  # like libwebrtc: MID/RID only until the receiver has surely latched the SSRC
HISTORY = 1024  # packets kept per stream to answer NACKs
# SRTP authentication tag appended to each RTP packet, by DTLS-SRTP profile
SRTP_TAG_LEN = {"SRTP_AES128_CM_SHA1_80": 10, "SRTP_AES128_CM_SHA1_32": 4, "SRTP_AEAD_AES_128_GCM": 16,
                "SRTP_AEAD_AES_256_GCM": 16}


def sdp_sections(sdp: str) -> list[str]:
    return re.split(r"\r?\n(?=m=)", sdp)


def extmap_ids(section: str) -> dict[str, int]:
    return {uri: int(i) for i, uri in re.findall(r"^a=extmap:(\d+)(?:/\w+)? (\S+)", section, re.MULTILINE)}


def munge_simulcast(sdp: str, rids: tuple[str, ...], rid_id: int = 10, rrid_id: int = 11) -> str:
    """Turn aiortc's single-encoding video offer into a Chrome-style simulcast offer."""
    out = []
    for i, section in enumerate(sdp_sections(sdp)):
        if i > 0 and section.startswith("m=video"):
            lines = [ln for ln in section.split("\r\n") if not ln.startswith(("a=ssrc:", "a=ssrc-group:"))]
            extra = [f"a=extmap:{rid_id} {URI_RID}", f"a=extmap:{rrid_id} {URI_RRID}"]
            extra += [f"a=rid:{r} send" for r in rids] + ["a=simulcast:send " + ";".join(rids)]
            tail = lines[-1] == ""
            lines = [ln for ln in lines if ln != ""] + extra + ([""] if tail else [])
            section = "\r\n".join(lines)
        out.append(section)
    return "\r\n".join(out)


@dataclass
class OutStream:
    """One RTP stream a publisher sends (an audio track, or one video layer)."""

    kind: str
    ssrc: int
    pt: int
    rid: str = ""
    seq: int = field(default_factory=lambda: random.randint(0, 0x7FFF))
    ts: int = field(default_factory=lambda: random.randint(0, 0x7FFFFFFF))
    picture_id: int = field(default_factory=lambda: random.randint(0, 0x7FFF))
    tl0: int = field(default_factory=lambda: random.randint(0, 0xFF))
    frame: int = 0
    sent: int = 0
    bytes: int = 0
    history: list[bytes | None] = field(default_factory=lambda: [None] * HISTORY)


class SyntheticPublisher:
    """Publishes Opus-like audio (50 pps) and/or VP8 video (1 or 3 layers) from pre-encoded data."""

    def __init__(self, name: str, layers: dict[str, media.EncodedLayer], audio: bool = True, video: bool = True,
                 simulcast: bool = False, probe_every: int = 8, pacing: float = 0.0) -> None:
        self.name = name
        self.layers = layers
        self.want_audio = audio
        self.want_video = video
        self.simulcast = simulcast and video and len(layers) > 1
        self.probe_every = probe_every
        # 0: a frame's packets leave at once. Else a libwebrtc-style pacer: packets spaced at `pacing`
        # times the video bitrate (libwebrtc's pacing factor is 2.5)
        self.pacing = pacing
        self.transport = PeerTransport(on_rtp=None, on_rtcp=self._on_rtcp)
        self.audio_slot: Any = None
        self.video_slot: Any = None
        self.streams: list[OutStream] = []
        self.by_ssrc: dict[int, OutStream] = {}
        self.ext: dict[str, dict[str, int]] = {}  # kind -> uri -> id
        self.plis = 0
        self.nacks = 0
        self.retransmitted = 0
        self._jump_to_key = False
        self._last_key_jump = 0.0
        self._tasks: list[asyncio.Task] = []
        self._probe = 0
        self._probe_rng = random.Random()
        self._audio = media.audio_payloads()

    async def offer(self) -> str:
        if self.want_audio:
            self.audio_slot = self.transport.add_slot("audio", "audio/opus")
        if self.want_video:
            self.video_slot = self.transport.add_slot("video", "video/VP8")
        sdp = await self.transport.create_offer()
        for section in sdp_sections(sdp)[1:]:
            kind = section[2:7]
            self.ext[kind] = extmap_ids(section)
        if self.simulcast:
            sdp = munge_simulcast(sdp, tuple(self.layers))
            self.ext["video"][URI_RID] = 10
            self.ext["video"][URI_RRID] = 11
        return sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.transport.accept_answer(answer_sdp)

    async def wait_connected(self, timeout: float = 20.0) -> None:
        slots = [s for s in (self.audio_slot, self.video_slot) if s is not None]
        deadline = time.monotonic() + timeout
        while not all(s.active for s in slots):
            if time.monotonic() > deadline:
                raise TimeoutError(f"publisher {self.name}: transport did not come up")
            await asyncio.sleep(0.02)

    def start(self) -> None:
        if self.audio_slot is not None:
            s = OutStream("audio", self.audio_slot.ssrc, self.audio_slot.pt)
            self.streams.append(s)
            self._tasks.append(asyncio.ensure_future(self._run_audio(s)))
        if self.video_slot is not None:
            vstreams = []
            if self.simulcast:
                for rid in self.layers:
                    vstreams.append(OutStream("video", random.randint(1, 0xFFFFFFFF), self.video_slot.pt, rid))
            else:
                rid = next(iter(self.layers))
                vstreams.append(OutStream("video", self.video_slot.ssrc, self.video_slot.pt, rid))
            self.streams += vstreams
            self._tasks.append(asyncio.ensure_future(self._run_video(vstreams)))
        self.by_ssrc = {s.ssrc: s for s in self.streams}

    @property
    def packets_sent(self) -> int:
        return sum(s.sent for s in self.streams)

    def send_ports(self) -> set[int]:
        """The local UDP ports this publisher's media leaves from (every ICE candidate's socket)."""
        dtls = self.transport._dtls
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        ports = set()
        for protocol in getattr(connection, "_protocols", []):
            transport = getattr(protocol, "transport", None)
            if transport is not None and (name := transport.get_extra_info("sockname")):
                ports.add(name[1])
        return ports

    def _send(self, s: OutStream, packet: bytes) -> None:
        s.history[s.seq & (HISTORY - 1)] = packet
        if self.transport.send_rtp(packet):
            s.sent += 1
            s.bytes += len(packet)
        s.seq = (s.seq + 1) & 0xFFFF

    def _probe_next(self) -> int | None:
        self._probe += 1
        # one packet in `probe_every` at random, not every k-th: publishers in lockstep (50 pps of audio
        # each) would otherwise probe the same sequence lattice, and bench.loadgen.wire could not tell
        # whose input a copy is
        return self._probe if self._probe_rng.random() * self.probe_every < 1 else None

    async def _run_audio(self, s: OutStream) -> None:
        ids = self.ext.get("audio", {})
        mid_id, level_id = ids.get(URI_MID), ids.get(URI_LEVEL)
        mid = self.audio_slot.mid.encode() or b"0"
        loop = asyncio.get_running_loop()
        t = loop.time()
        i = 0
        while True:
            elements = []
            if mid_id and s.sent < ID_HEADER_PACKETS:
                elements.append((mid_id, mid))
            if level_id:
                elements.append((level_id, bytes([0x80 | 30])))  # voice, -30 dBov: an active speaker
            payload = self._audio[i % len(self._audio)]
            pkt = media.build_rtp(s.pt, s.seq, s.ts, s.ssrc, i == 0, media.one_byte_extensions(elements), payload,
                                  self._probe_next())
            self._send(s, pkt)
            s.ts = (s.ts + 960) & 0xFFFFFFFF
            i += 1
            t += 0.02
            delay = t - loop.time()
            if delay < -0.2:  # far behind (a stalled loop): re-anchor rather than burst
                t = loop.time()
            await asyncio.sleep(max(0.0, delay))

    async def _run_video(self, streams: list[OutStream]) -> None:
        ids = self.ext.get("video", {})
        mid_id, rid_id, ast_id = ids.get(URI_MID), ids.get(URI_RID), ids.get(URI_AST)
        mid = self.video_slot.mid.encode() or b"1"
        nframes = len(next(iter(self.layers.values())).frames)
        keys = next(iter(self.layers.values())).keyframes
        loop = asyncio.get_running_loop()
        t = loop.time()
        frame = 0
        pace_bps = self.pacing * 1000 * sum(self.layers[s.rid].kbps for s in streams)
        while True:
            if self._jump_to_key:
                self._jump_to_key = False
                # every layer was encoded with keyframes at the same indexes: jump all of them at once
                frame = next((k for k in keys if k >= frame), keys[0]) % nframes
            now_ns = time.monotonic_ns()
            for s in streams:
                layer = self.layers[s.rid]
                chunks = layer.frames[frame]
                last = len(chunks) - 1
                for j, chunk in enumerate(chunks):
                    elements = []
                    if s.sent < ID_HEADER_PACKETS:
                        if mid_id:
                            elements.append((mid_id, mid))
                        if self.simulcast and rid_id:
                            elements.append((rid_id, s.rid.encode()))
                    if ast_id:
                        elements.append((ast_id, media.abs_send_time(now_ns)))
                    payload = media.vp8_descriptor(j == 0, s.picture_id, s.tl0) + chunk
                    pkt = media.build_rtp(s.pt, s.seq, s.ts, s.ssrc, j == last, media.one_byte_extensions(elements),
                                          payload, self._probe_next(), 5)
                    self._send(s, pkt)
                    if pace_bps:
                        await asyncio.sleep(len(pkt) * 8 / pace_bps)
                s.picture_id = (s.picture_id + 1) & 0x7FFF
                s.tl0 = (s.tl0 + 1) & 0xFF
                s.ts = (s.ts + media.VIDEO_CLOCK // media.FPS) & 0xFFFFFFFF
            frame = (frame + 1) % nframes
            t += 1 / media.FPS
            delay = t - loop.time()
            if delay < -0.2:
                t = loop.time()
            await asyncio.sleep(max(0.0, delay))

    def _on_rtcp(self, packets: list[Any]) -> None:
        for p in packets:
            if isinstance(p, artp.RtcpPsfbPacket) and p.fmt in (artp.RTCP_PSFB_PLI, artp.RTCP_PSFB_FIR):
                self.plis += 1
                now = time.monotonic()
                if now - self._last_key_jump > 0.5:  # a real encoder also rate-limits keyframes
                    self._last_key_jump = now
                    self._jump_to_key = True
            elif isinstance(p, artp.RtcpRtpfbPacket) and p.fmt == artp.RTCP_RTPFB_NACK:
                self.nacks += 1
                s = self.by_ssrc.get(p.media_ssrc)
                if s is None:
                    continue
                for seq in p.lost:
                    pkt = s.history[seq & (HISTORY - 1)]
                    if pkt is not None and int.from_bytes(pkt[2:4], "big") == seq:
                        if self.transport.send_rtp(pkt):
                            self.retransmitted += 1

    def stop_sending(self) -> None:
        for t in self._tasks:
            t.cancel()

    async def close(self) -> None:
        self.stop_sending()
        await self.transport.close()


def kinds_by_pt(slot: transport.RecvSlot) -> dict[int, str]:
    """An m-line's payload types by what arrives with them: its kind, or `rtx` for retransmissions."""
    return {pt: "rtx" if codec.mimeType.lower().endswith("/rtx") else slot.kind for pt, codec in slot.codecs.items()}


@dataclass
class InStream:
    """What a subscriber saw of one incoming SSRC."""

    ssrc: int
    kind: str
    base: int = -1  # first extended seq
    max_ext: int = -1
    received: int = 0
    bytes: int = 0
    duplicates_or_late: int = 0
    gaps: int = 0
    first_at: float = 0.0
    probes: int = 0
    crc_errors: int = 0
    # for RR fraction-lost
    rr_expected: int = 0
    rr_received: int = 0

    @property
    def expected(self) -> int:
        return 0 if self.base < 0 else self.max_ext - self.base + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)


def configure_native_receive() -> bool:
    """The generator's peers read their ICE sockets natively (`sfu._native.MediaSocket`, SRTP
    unprotected in C) and light subscribers count what arrives there (`MediaSocket.follow`): what
    lets one core receive what the SFU forwards at full speed (issue #13: the generator must not
    be what saturates). False, and the Python receive path, when the extension is not built."""
    try:
        from sfu import _native
    except ImportError:
        return False
    transport.configure_receive(_native.SrtpSession, _native.SrtpError, _native.MediaSocket)
    return True


class LightSubscriber:
    """Answers the SFU's offers, counts and checks what arrives, and sends browser-like RTCP."""

    def __init__(self, name: str, on_first_packet: Callable[[LightSubscriber], None] | None = None,
                 rtcp_interval: float = 1.0, remb_bps: int = 20_000_000) -> None:
        self.name = name
        self.transport = PeerTransport(on_rtp=self._on_rtp, on_rtcp=None)
        self.streams: dict[int, InStream] = {}
        self.kind_by_pt: dict[int, str] = {}
        self.rtcp_ssrc = random.randint(1, 0xFFFFFFFF)
        self.latencies_us: list[int] = []
        self.collect_latency = True
        self.first_packet_at = 0.0
        self.created_at = time.monotonic()
        self.on_first_packet = on_first_packet
        self.remb_bps = remb_bps
        self.rtcp_interval = rtcp_interval
        self.nacks_sent = 0
        self.plis_sent = 0
        self.offers = 0
        self.signalling_closed = ""  # why its signalling connection ended, once it has
        self._rtcp_task: asyncio.Task | None = None
        self._missing: dict[int, set[int]] = {}
        self._tapped = False
        self._tag_len = 0
        # our ICE socket's native reader (sfu._native.MediaSocket, when the generator reads natively):
        # it counts the streams it follows, and what Python had counted of each before is kept here
        self._reader: Any = None
        self._followed: dict[int, tuple[int, int, int, int]] = {}  # ssrc -> (received, bytes, gaps, late)

        @self.transport.pc.on("iceconnectionstatechange")
        def _ice_state() -> None:
            if self.transport.pc.iceConnectionState in ("checking", "completed"):
                self._install_tap()

    async def answer(self, offer_sdp: str) -> str:
        self.offers += 1
        await self.transport.apply_offer(offer_sdp)
        answer, slots = await self.transport.accept_applied_offer()
        for slot in slots:
            self.kind_by_pt.update(kinds_by_pt(slot))
            if slot.rtcp_ssrc:
                self.rtcp_ssrc = slot.rtcp_ssrc
        if self._rtcp_task is None:
            self._rtcp_task = asyncio.ensure_future(self._rtcp_loop())
        return answer

    # --- the per-packet path: keep it small, the generator must stay cheaper than the SFU it loads ---
    #
    # SRTP keeps the RTP header in the clear, so counting, sequence tracking and NACK bookkeeping
    # happen without decrypting. Only probe packets (the P bit: their padding holds the probe) are
    # decrypted, so their CRC and latency are still checked on the real plaintext.
    #
    # When the pair's socket is ours (`configure_native_receive`: a `_native.MediaSocket`), the first
    # packet of each stream arrives here decrypted (`_on_rtp`: it makes the stream, asks for a key
    # frame, marks the first packet) and from then on the reader counts the stream in C
    # (`MediaSocket.follow`), handing up only its probes: no Python per packet. `_sync` brings the
    # reader's counts into `streams`. Otherwise `_tap` wraps aioice's protocol and counts in Python.
    # Before either (no pair yet) nothing is SRTP, so nothing is missed.
    def _install_tap(self) -> None:
        if self._tapped:
            return
        try:
            pair = self.transport.pc.getTransceivers()[0].receiver.transport.transport._connection._nominated.get(1)
        except (IndexError, AttributeError):
            return
        if pair is None or pair.protocol is None:
            return
        protocol = pair.protocol
        reader = getattr(getattr(protocol, "transport", None), "reader", None)
        if reader is not None and hasattr(reader, "follow"):
            self._reader = reader
            self._tapped = True
            return
        deliver = protocol.datagram_received
        count = self._count
        loop_time = asyncio.get_running_loop().time

        def tap(data: bytes, addr: Any) -> None:
            if len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223:
                count(data, loop_time())
                if not data[0] & 0x20:
                    return  # counted; only probes are decrypted
            deliver(data, addr)

        protocol.datagram_received = tap
        self._tapped = True

    def _count(self, data: bytes, arrival: float) -> None:
        """One SRTP packet, from its clear header: count, track sequence, note gaps for NACKs."""
        if not self._tag_len:
            self._tag_len = SRTP_TAG_LEN.get(self.transport.srtp_profile or "", 0)
        self._track(data, len(data) - self._tag_len, arrival)

    def _on_rtp(self, data: bytes, arrival: float) -> None:
        """A decrypted packet: a probe once the tap or the reader counts (it saw this packet already),
        else all."""
        if self._reader is not None:
            ssrc = int.from_bytes(data[8:12], "big")
            if ssrc not in self._followed:
                self._track(data, len(data), arrival)
                self._follow(ssrc)
        elif not self._tapped:
            self._track(data, len(data), arrival)
        if data[0] & 0x20 and data[-1] == media.PROBE_LEN:
            s = self.streams.get(int.from_bytes(data[8:12], "big"))
            if s is not None:
                self._check_probe(s, data)

    def _follow(self, ssrc: int) -> None:
        """Let the native reader count this stream from now on (False: it follows 16 already, and
        this one stays counted here, decrypted)."""
        s = self.streams[ssrc]
        if not self._tag_len:
            self._tag_len = SRTP_TAG_LEN.get(self.transport.srtp_profile or "", 0)
        if self._reader.follow(ssrc, s.max_ext, self._tag_len):
            self._followed[ssrc] = (s.received, s.bytes, s.gaps, s.duplicates_or_late)

    def _sync(self) -> None:
        """The native reader's counts of the streams it follows, into `streams` and `_missing`."""
        reader = self._reader
        for ssrc, (received, nbytes, gaps, late) in self._followed.items():
            counts = reader.followed(ssrc)
            if counts is None:
                continue
            s = self.streams[ssrc]
            s.max_ext, n, b, g, d = counts
            s.received, s.bytes, s.gaps, s.duplicates_or_late = received + n, nbytes + b, gaps + g, late + d
            missing = reader.take_missing(ssrc)
            if missing:
                self._missing.setdefault(ssrc, set()).update(missing)

    def _track(self, data: bytes, nbytes: int, arrival: float) -> None:
        seq = (data[2] << 8) | data[3]
        ssrc = int.from_bytes(data[8:12], "big")
        s = self.streams.get(ssrc)
        if s is None:
            s = self._new_stream(ssrc, data[1] & 0x7F, arrival)
        s.received += 1
        s.bytes += nbytes
        if s.base < 0:
            s.base = s.max_ext = seq
        else:
            last = s.max_ext & 0xFFFF
            delta = (seq - last) & 0xFFFF
            if 0 < delta < 0x8000:
                if delta > 1:
                    s.gaps += 1
                    if delta < 64 and s.kind != "rtx":  # (an RTX stream's numbers are not NACKed)
                        miss = self._missing.setdefault(ssrc, set())
                        miss.update((last + k) & 0xFFFF for k in range(1, delta))
                s.max_ext += delta
            else:
                s.duplicates_or_late += 1
                miss = self._missing.get(ssrc)
                if miss:
                    miss.discard(seq)

    def _new_stream(self, ssrc: int, pt: int, arrival: float) -> InStream:
        kind = self.kind_by_pt.get(pt, "video")
        s = self.streams[ssrc] = InStream(ssrc, kind, first_at=arrival)
        if kind == "video":
            self.send_pli(ssrc)
        if not self.first_packet_at:
            self.first_packet_at = time.monotonic()
            if self.on_first_packet is not None:
                self.on_first_packet(self)
        return s

    def _check_probe(self, s: InStream, data: bytes) -> None:
        probe = media.read_probe(data)
        if probe is None:
            return
        sent_ns, crc, _ = probe
        now = time.monotonic_ns()
        s.probes += 1
        view = srtp_view.parse(data)
        start = view.payload_start
        if s.kind == "video":
            start += srtp_view.vp8_descriptor(memoryview(data)[view.payload_start : view.payload_end]).size
        if zlib.crc32(data[start : view.payload_end]) != crc:
            s.crc_errors += 1
        if self.collect_latency:
            self.latencies_us.append((now - sent_ns) // 1000)

    def send_pli(self, media_ssrc: int) -> None:
        if self.transport.send_rtcp(
            [artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_PLI, ssrc=self.rtcp_ssrc, media_ssrc=media_ssrc)]
        ):
            self.plis_sent += 1

    async def _rtcp_loop(self) -> None:
        while True:
            await asyncio.sleep(self.rtcp_interval * random.uniform(0.5, 1.5))  # RFC 3550 jitter
            if self.transport.closed:
                return
            try:
                self._send_feedback()
            except Exception:  # feedback is best effort; a broken packet must not stop counting
                pass

    def _send_feedback(self) -> None:
        if self._followed:
            self._sync()
        packets: list[Any] = []
        blocks = []
        for s in self.streams.values():
            expected = s.expected - s.rr_expected
            received = s.received - s.rr_received
            s.rr_expected, s.rr_received = s.expected, s.received
            lost = max(0, expected - received)
            fraction = min(255, (lost << 8) // expected) if expected > 0 else 0
            blocks.append(artp.RtcpReceiverInfo(ssrc=s.ssrc, fraction_lost=fraction, packets_lost=s.lost,
                                                highest_sequence=s.max_ext & 0xFFFFFFFF, jitter=0, lsr=0, dlsr=0))
        for i in range(0, len(blocks), 31):
            packets.append(artp.RtcpRrPacket(ssrc=self.rtcp_ssrc, reports=blocks[i : i + 31]))
        video = [s.ssrc for s in self.streams.values() if s.kind == "video"]
        if video:
            packets.append(artp.RtcpPsfbPacket(fmt=artp.RTCP_PSFB_APP, ssrc=self.rtcp_ssrc, media_ssrc=0,
                                               fci=artp.pack_remb_fci(self.remb_bps, video)))
        for ssrc, miss in self._missing.items():
            if miss:
                packets.append(artp.RtcpRtpfbPacket(fmt=artp.RTCP_RTPFB_NACK, ssrc=self.rtcp_ssrc, media_ssrc=ssrc,
                                                    lost=sorted(miss)[:64]))
                self.nacks_sent += 1
                miss.clear()  # a browser retries a few times; once is enough to exercise the SFU's cache
        if packets:
            self.transport.send_rtcp(packets)

    def totals(self) -> dict[str, int]:
        if self._followed:
            self._sync()
        out = {"received": 0, "bytes": 0, "expected": 0, "probes": 0, "crc_errors": 0, "gaps": 0, "late": 0,
               "native": 0}
        for ssrc in self._followed:  # of `received`, the packets the native reader counted
            counts = self._reader.followed(ssrc)
            out["native"] += counts[1] if counts else 0
        for s in self.streams.values():
            out["received"] += s.received
            out["bytes"] += s.bytes
            out["expected"] += s.expected
            out["probes"] += s.probes
            out["crc_errors"] += s.crc_errors
            out["gaps"] += s.gaps
            out["late"] += s.duplicates_or_late
        return out

    def stream_counts(self) -> dict[int, int]:
        """Packets received so far, per incoming media SSRC. Not RTX streams: they carry repairs only,
        and are quiet whenever nothing is lost (a stream that stopped is a stall; they did not)."""
        if self._followed:
            self._sync()
        return {ssrc: s.received for ssrc, s in self.streams.items() if s.kind != "rtx"}

    async def close(self) -> None:
        if self._rtcp_task is not None:
            self._rtcp_task.cancel()
        await self.transport.close()
