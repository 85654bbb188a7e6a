"""Fuzz the native data path (`sfu._native`) against its Python twin, and its SRTP receive side.

Input: one control byte, then up to 32 length-prefixed datagrams (see `_harness.frames`). Each
datagram is
  * parsed by the C parsers and by `sfu.rtp` (header, VP8 and VP9 descriptors, each header extension): both
    must agree exactly, down to the RtpError reason;
  * forwarded, when it is valid RTP, by a Python DownTrack and a NativeDownTrack in lockstep (the
    control byte picks the layer decisions: target, temporal thinning, publisher restart): both
    must send the same bytes and keep the same state;
  * unprotected as SRTP and SRTCP, and protected, by `SrtpSession`s of one profile (the next one for
    each datagram), one on OpenSSL's EVP and one on each AES the CPU has (aes_gcm.c on AES-NI, with
    and without its 256-bit path): they may refuse, never crash, and must give the same bytes or the
    same refusal;
  * sent over loopback UDP to a `MediaSocket` (recvmmsg, unprotect on arrival) and to its twin
    `PyMediaSocket`, each attached to a receive session unless the control byte's top bit is set,
    and counting the first datagrams' SSRCs (`follow`, the bench's light subscribers) when bit 1 is:
    both must deliver the same datagrams to the same callbacks, in order, with the same counters;
  * fed to a Python Ingress and a NativeIngress (C `IngressCore.on_rtp` for the common case), set up
    alike for the first datagram's SSRC, each with a subscriber (and, when bit 1 is set, noting
    transport-wide numbers under id 3 and reporting them every 16 packets): both must count, drop,
    NACK, estimate, report audio levels, send feedback and forward the same things, packet by packet;
  * turned into times, rates and sizes for the pacer's twins (sfu.pacer, pacer.c): the same decisions;
    and sent through an Egress that paces them (held, let go by `pace()`, dropped by a close): every
    datagram counted once, nothing left waiting;
  * grouped, by their lengths, into the runs an Egress flush sends segmented (UDP_SEGMENT) by
    `_native.gso_runs` and its twin `sfu.gso.runs`: both must split them the same way;
  * fed, when it is valid RTP, to aiortc's RemoteBitrateEstimator and the C RembEstimator (arrival
    step, abs-send-time and SSRC taken from its header): both must return the same estimate; and to
    sfu.reception.Reception and the C ReceptionCore (with RTX repairs when the control byte says so):
    the same results and fields;

Run under the ASan/UBSan build (`make native-asan`) a memory error in the C code aborts the process;
atheris's coverage feedback sees the Python side only (the image has gcc, not clang's libFuzzer
instrumentation), so the seeds (make_corpus.py) start from real packets.

Contract: no exception but SrtpError from SRTP, identical output and state on both data paths.
"""

from __future__ import annotations

import random
import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.support, from a script in tests/fuzz

from _harness import FakeTransport, Finding, frames, instrumented, main

with instrumented():
    from aiortc.rate import RemoteBitrateEstimator
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from sfu import _native, datapath, gso, pacer, reception, rtp, transport_seq
    from sfu.downtrack import DownTrack
    from sfu.ingress import Ingress, NativeIngress
    from sfu.media_socket import PyMediaSocket
    from sfu.metrics import STATS
    from sfu.track import PublishedTrack
    from sfu.transport import RecvSlot, SendSlot
    from tests.support.parsers import disagreement

KEYS = {1: bytes(range(30)), 2: bytes(range(30)), 7: bytes(range(28)), 8: bytes(range(44))}


def _session_pairs(inbound: bool) -> dict[int, list[Any]]:
    """Per profile, sessions keyed alike on EVP and on each AES the CPU has (EVP first)."""
    default, sessions = _native.aes(), {}
    for profile, key in KEYS.items():
        sessions[profile] = []
        for name in ("openssl", "aes-ni", "aes-ni-256"):
            if _native.set_aes(name) == name:
                sessions[profile].append(_native.SrtpSession(profile, key, inbound))
    _native.set_aes(default)
    return sessions


RECEIVE, SEND = _session_pairs(True), _session_pairs(False)
PROFILES = sorted(KEYS)


def _srtp_outcome(call: Any, packet: bytes) -> Any:
    try:
        return call(packet)
    except _native.SrtpError as e:
        return ("refused", str(e))


def _check_srtp(packet: bytes, profile: int) -> None:
    for sessions, methods in ((RECEIVE, ("unprotect", "unprotect_rtcp")), (SEND, ("protect", "protect_rtcp"))):
        evp, *fast = sessions[profile]
        for method in methods:
            expected = _srtp_outcome(getattr(evp, method), packet)
            if any(_srtp_outcome(getattr(s, method), packet) != expected for s in fast):
                raise Finding(f"SrtpSession.{method} on AES-NI and on EVP disagree (profile {profile})")

STATE = ("seq_off", "ts_off", "pid_off", "tl0_off", "switch_seq", "epoch", "started", "last_seq", "last_ts",
         "last_pid", "last_tl0", "packets", "octets", "bytes_sent", "temporal_drops", "max_sid",
         "target_sid", "spatial_drops")
OUT_EXT = {rtp.URI_MID: 9, rtp.URI_ABS_SEND_TIME: 5, rtp.URI_AUDIO_LEVEL: 3}
IN_EXT = {rtp.URI_ABS_SEND_TIME: 2, rtp.URI_MID: 4, rtp.URI_AUDIO_LEVEL: 1}


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


SENDER = _udp()
RECEIVERS = {kind: _udp() for kind in (_native.MediaSocket, PyMediaSocket)}
READ_COUNTERS = ("received", "unprotected", "refused", "other", "dropped", "errors")


def _check_media_sockets(control: int, packets: list[bytes]) -> None:
    """The same datagrams through the C reader and its twin: the same deliveries and counters."""
    profile = sorted(KEYS)[(control >> 5) & 3]
    results = []
    for kind, sock in RECEIVERS.items():
        events: list[tuple] = []
        reader = kind(sock.fileno(), lambda d, a, events=events: events.append(("other", d)))
        if not control & 128:
            reader.attach(_native.SrtpSession(profile, KEYS[profile], True),
                          lambda d, events=events: events.append(("rtp", d)),
                          lambda d, events=events: events.append(("rtcp", d)),
                          lambda r, events=events: events.append(("drop", r)))
        followed = []
        if control & 2:  # the bench's counting (MediaSocket.follow) of the SSRCs of the first datagrams
            for packet in packets[:3]:
                if len(packet) >= 12:
                    ssrc = int.from_bytes(packet[8:12], "big")
                    followed.append(ssrc)
                    reader.follow(ssrc, packet[2] << 8 | packet[3], (control >> 2) & 15)
        for packet in packets:
            SENDER.sendto(packet, sock.getsockname())
        read = reader.drain()
        counts = [(reader.followed(ssrc), reader.take_missing(ssrc)) for ssrc in followed]
        results.append((read, events, [getattr(reader, n) for n in READ_COUNTERS + ("counted",)], counts))
        reader.close()
    if results[0] != results[1]:
        raise Finding("MediaSocket and PyMediaSocket delivered differently")
    if results[0][0] != len(packets):
        raise Finding(f"MediaSocket read {results[0][0]} of {len(packets)} datagrams")


class Wire(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.packets: list[bytes] = []

    def send_rtp(self, data: bytes) -> bool:
        self.packets.append(bytes(data))
        return True


def _pair(codec_name: str) -> tuple[PublishedTrack, list, list]:
    """A track of `codec_name` (VP8, VP9 or opus) with a Python and a native DownTrack."""
    vp8 = codec_name != "opus"  # (video)
    codec = RTCRtpCodecParameters(mimeType=f"video/{codec_name}" if vp8 else "audio/opus",
                                  clockRate=90000 if vp8 else 48000, payloadType=96 if vp8 else 111)
    ingress = Ingress("PA_pub")
    ingress.extensions["0"] = dict(IN_EXT)
    rec = PublishedTrack("TR_pub_0", "PA_pub", "video" if vp8 else "audio", "0", codec, ingress)
    before = datapath.current()
    datapath.configure("native")  # C PacketRings in the layers, which both DownTracks keep packets in
    try:
        rec.layer("q")
        rec.layer("h")
    finally:
        datapath.configure(before)
    dts, wires = [], []
    for cls in (DownTrack, datapath.NativeDownTrack):
        wire = Wire()
        slot = SendSlot(transceiver=None, kind=rec.kind, ssrc=0x5EB5C001, rtx_ssrc=0x5EB5C002, mid="1",
                        pt=100 if vp8 else 109, ext_ids=dict(OUT_EXT), active=True)
        dt = cls(rec, "PA_sub", wire, slot)
        dt.inherit((999, 5000, 0.0, 100, 7, 300, False))
        dts.append(dt)
        wires.append(wire)
    return rec, dts, wires


def _check_parsers(data: bytes) -> rtp.RtpView | None:
    problem = disagreement(data)
    if problem is not None:
        raise Finding(f"C and sfu.rtp disagree: {problem}")
    try:
        return rtp.parse(data)
    except rtp.RtpError:
        return None


class RecordingWire(Wire):
    """Records what goes out, RTCP serialised as the real transport would."""

    def send_rtcp(self, packets: Any) -> bool:
        self.packets.append(b"".join(bytes(p) for p in packets))
        return True


INGRESS_STATS = ("packets_in", "bytes_in", "packets_out", "bytes_out", "rtx_unwrapped", "rtx_repair_packets",
                 "rtx_copy_packets", "padding_packets", "nacks_out")
LAYER = ("ssrc", "rtx_ssrc", "epoch", "packets", "bytes", "keyframes", "last_keyframe_at", "width", "height",
         "bitrate", "last_packet_at", "nack_at")


class IngressSide:
    """A publisher's Ingress of one data path with one m-line (VP8 + RTX, or Opus) and one subscriber."""

    def __init__(self, path: str, vp8: bool, ssrc: int, tcc: bool = False) -> None:
        self.path = path
        datapath.configure(path)
        self.levels: list[tuple] = []
        cls = NativeIngress if path == "native" else Ingress
        self.ingress = cls("PA_pub", lambda *a: self.levels.append(a))
        kind = "video" if vp8 else "audio"
        codec = RTCRtpCodecParameters(mimeType="video/VP8" if vp8 else "audio/opus",
                                      clockRate=90000 if vp8 else 48000, payloadType=96 if vp8 else 111)
        codecs = {codec.payloadType: codec}
        if vp8:
            codecs[97] = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97,
                                               parameters={"apt": 96})
        self.ingress.slots["0"] = RecvSlot(mid="0", kind=kind, codecs=codecs,
                                           ext_ids={v: k for k, v in IN_EXT.items()}, rtcp_ssrc=7)
        self.ingress.extensions["0"] = dict(IN_EXT)
        self.ingress.transport = self.feedback = RecordingWire()
        if tcc:  # transport-wide numbers under id 3: noted (C or twin), reported by send_transport_feedback
            self.ingress.tcc_id, self.ingress.arrivals = 3, datapath.transport_arrivals()
        self.rec = PublishedTrack("TR_pub_0", "PA_pub", kind, "0", codec, self.ingress)
        self.ingress.tracks["0"] = self.rec
        self.layer = self.rec.layer("")
        self.ingress._bind(self.rec, self.layer, ssrc, False)
        self.wire = RecordingWire()
        slot = SendSlot(transceiver=None, kind=kind, ssrc=0x5EB5C001, rtx_ssrc=0x5EB5C002, mid="1",
                        pt=100 if vp8 else 109, ext_ids=dict(OUT_EXT), active=True)
        dt = datapath.downtrack_class()(self.rec, "PA_sub", self.wire, slot)
        dt.inherit((999, 5000, 0.0, 100, 7, 300, False))
        dt.set_target(self.layer)
        self.rec.downtracks.append(dt)

    def on_rtp(self, data: bytes, arrival: float) -> dict[str, int]:
        datapath.configure(self.path)
        before = [getattr(STATS, f) for f in INGRESS_STATS]
        self.ingress.on_rtp(data, arrival)
        return [getattr(STATS, f) - b for f, b in zip(INGRESS_STATS, before, strict=True)]

    def state(self) -> tuple:
        rx = self.layer.rx
        arrivals = self.ingress.arrivals
        return (tuple(getattr(self.layer, f) for f in LAYER), _rx_state(rx), dict(self.ingress.dropped),
                self.ingress.remb_bps, list(self.levels), sorted(self.ingress.by_ssrc),
                list(self.feedback.packets), list(self.wire.packets), self.rec.muted,
                arrivals and (arrivals.base, arrivals.high, arrivals.late))


def _check_ingress(control: int, packets: list[bytes]) -> None:
    """The same packets through the Python Ingress and NativeIngress: the same effects, packet by packet."""
    first = next((p for p in packets if len(p) >= 12), None)
    if first is None:
        return
    vp8 = not control & 1
    ssrc = int.from_bytes(first[8:12], "big")
    before = datapath.current()
    sides = [IngressSide(path, vp8, ssrc, tcc=bool(control & 2)) for path in ("python", "native")]
    now = 100.0
    try:
        for i, packet in enumerate(packets):
            now += (packet[3] & 0x3F) / 1000 if len(packet) > 3 else 0.001
            if control & 8 and i == len(packets) // 2:
                for side in sides:
                    side.rec.muted = True
            if sides[0].on_rtp(packet, now) != sides[1].on_rtp(packet, now):
                raise Finding("the Python and native Ingress counted differently")
            if i % 16 == 15:
                for side in sides:
                    side.ingress.send_transport_feedback()
            if sides[0].state() != sides[1].state():
                raise Finding("the Python and native Ingress disagree")
    finally:
        datapath.configure(before)


def _check_gso_runs(packets: list[bytes]) -> None:
    """An Egress flush's grouping (C) and its twin sfu.gso agree, at the datagrams' lengths and at
    lengths scaled up to cross a run's byte bound."""
    for scale in (1, 37):
        lengths = [len(p) * scale for p in packets]
        if gso.runs(lengths) != _native.gso_runs(lengths):
            raise Finding(f"the GSO run rules disagree on {lengths}")


PACED_SINK = _udp()


def _check_pacing(control: int, packets: list[bytes]) -> None:
    """The pacer's twins (sfu.pacer, pacer.c) take the same decisions on times, rates and sizes read
    from the input; an Egress that paces the datagrams (they wait, go, wait past a close) accounts
    for every one: sent, failed, or still waiting, never lost or kept after the close."""
    twins = (pacer.Pacer(), _native.Pacer())
    now = 0.0
    for p in packets:
        b = p[:6].ljust(6, b"\0")
        now += b[0] / 256 * (0.6 if b[1] & 128 else 0.01)
        op = b[1] % 8
        if op == 0:
            bps = float(int.from_bytes(b[2:5], "big") * (b[5] % 8))
            for t in twins:
                t.set_rate(bps, now)
        elif op < 5:
            size = max(len(p), 1)
            if len({t.push(now, size) for t in twins}) != 1:
                raise Finding("the pacer's twins disagree on a push")
        elif len({t.pop(now) for t in twins}) != 1:
            raise Finding("the pacer's twins disagree on a pop")
        if len({(t.rate, t.tokens, t.last, t.waiting, t.held, t.forced) for t in twins}) != 1:
            raise Finding("the pacer's twins disagree on their state")
    profile = PROFILES[control % len(PROFILES)]
    egress = _native.Egress(SENDER.fileno(), PACED_SINK.getsockname(), profile, KEYS[profile])
    calls = 0
    for i, p in enumerate(packets):
        if len(p) >= 12 and i < 3:
            egress.pace_ssrc(int.from_bytes(p[8:12], "big"))
        if i % 5 == 0:
            egress.set_pacing(float((p[0] if p else 0) * 4000))
        egress.send_rtp(p)
        calls += 1
        if control & 8 and i % 4 == 3:
            _native.pace()
    waiting = egress.waiting
    egress.close()
    _native.pace()
    if egress.sent + egress.failures != calls or egress.waiting or _native.pace_state()[2]:
        raise Finding(f"a pacing Egress lost count: {calls} given, {egress.sent} sent, {egress.failures} failed, "
                      f"{waiting} waiting at the close")
    try:
        while PACED_SINK.recv(65536):
            pass
    except BlockingIOError:
        pass


def _check_transport_seq(packet: bytes, control: int) -> None:
    """Header extension stamping (C, in the Egress: transport-wide numbers and the playout delay) and
    its twin sfu.transport_seq write the same bytes into any packet, and what they write is a
    packet whose element reads back."""
    xid, seq = 1 + control % 14, (control * 257) & 0xFFFF
    value = bytes((control + k) & 0xFF for k in range(1 + control % 16))
    for name, ours, theirs, wanted in (
            ("transport-wide", transport_seq.stamp(packet, xid, seq), _native.transport_seq_stamp(packet, xid, seq),
             seq.to_bytes(2, "big")),
            (f"a {len(value)}-byte element's", transport_seq.stamp_element(packet, xid, value),
             _native.ext_stamp(packet, xid, value), value)):
        if ours != theirs:
            raise Finding(f"{name} stamping differs: python {ours!r}, native {theirs!r}")
        if ours is None:
            continue
        try:
            view = rtp.parse(ours)
        except rtp.RtpError:
            if len(packet) >= 12:
                try:
                    rtp.parse(packet)
                except rtp.RtpError:
                    continue  # (it did not parse before either: stamping cannot mend it)
                raise Finding(f"a packet with {name} stamping no longer parses") from None
            continue
        if rtp.extension(ours, view, xid) != wanted:
            raise Finding(f"{name} stamped element does not read back")


def _rx_state(rx) -> tuple:
    return (rx.base_seq, rx.max_seq, rx.cycles, rx.received, rx.restarts, rx.missing_bits, rx._jitter_q4,
            rx._transit, rx.missing())


def test_one(data: bytes) -> None:
    if not data:
        return
    control, packets = data[0], frames(data[1:], 32)
    random.seed(control)  # DownTrack draws its initial numbering at random
    # the codec: audio by the control byte; video is VP9 when the first datagram's payload type is 98
    codec_name = "opus" if control & 1 else "VP9" if packets and len(packets[0]) > 1 and packets[0][1] & 0x7F == 98 \
        else "VP8"
    vp8 = codec_name != "opus"  # (video)
    rec, dts, wires = _pair(codec_name)
    layers = list(rec.layers.values())
    target = layers[(control >> 1) & 1]
    for dt in dts:
        dt.set_target(target)
        dt.max_tid = None if not control & 4 else 0
        if codec_name == "VP9":  # an SVC subscriber's spatial cap (bits 5-6, shared with the socket profile)
            dt.set_spatial((control >> 5) & 3)
    now = 100.0
    estimators = (RemoteBitrateEstimator(), _native.RembEstimator())
    receptions = (reception.Reception(90000), datapath.NativeReception(90000))
    arrival_ms = 0
    _check_media_sockets(control, packets)
    _check_ingress(control, packets)
    _check_gso_runs(packets)
    _check_pacing(control, packets)
    for i, packet in enumerate(packets):
        _check_srtp(packet, PROFILES[(control + i) % len(PROFILES)])
        _check_transport_seq(packet, control + i)
        view = _check_parsers(packet)
        if view is None:
            continue
        arrival_ms += view.seq & 0x3F
        remb = (arrival_ms, view.ts & 0xFFFFFF, len(packet), view.ssrc)
        if estimators[0].add(*remb) != estimators[1].add(*remb):
            raise Finding("aiortc's and the C REMB estimator disagree")
        seen = [rx.update(view.seq, view.ts, now) for rx in receptions]
        if control & 64:
            seen += [rx.repair((view.seq - (view.ts & 0x1FF)) & 0xFFFF) for rx in receptions]
        if seen[0::2] != seen[1::2] or _rx_state(receptions[0]) != _rx_state(receptions[1]):
            raise Finding("the Python and C Reception disagree")
        layer = layers[(control >> 3) & 1] if i % 3 else target
        if control & 16 and i == len(packets) // 2:
            layer.epoch += 1
        if codec_name == "VP9" and i == len(packets) // 3:  # a spatial switch mid-stream, down or up
            for dt in dts:
                dt.set_spatial(view.ts & 3)
        desc = None
        keyframe = False
        if vp8:
            try:
                desc = rtp.picture_descriptor(rtp.PICTURE_CODECS[codec_name],
                                              memoryview(packet)[view.payload_start:view.payload_end])
            except rtp.RtpError:
                continue  # the Ingress drops it before any DownTrack sees it
            keyframe = desc.keyframe
        now += 0.01
        for dt in dts:
            dt.forward(packet, view, layer, keyframe, desc, now)
        if wires[0].packets != wires[1].packets:
            raise Finding("the data paths sent different bytes")
        if [getattr(dts[0], n) for n in STATE] != [getattr(dts[1], n) for n in STATE]:
            raise Finding("the data paths keep different state")
        if control & 32 and wires[0].packets:
            # the last two, and one older (up to a lap of the ring back: rebuilt, or gone)
            lost = [dts[0].last_seq, (dts[0].last_seq - 1) & 0xFFFF, (dts[0].last_seq - view.seq % 1100) & 0xFFFF]
            for dt in dts:
                dt.on_nack(list(lost), now)
            if wires[0].packets != wires[1].packets:
                raise Finding("the data paths resent different bytes")


if __name__ == "__main__":
    main(test_one)
