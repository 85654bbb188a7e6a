"""NativeIngress (C `IngressCore.on_rtp` for the common case) against the Python Ingress, in lockstep.

Two publishers are built alike, one per data path, each with two subscribers, and get the same
seeded packets: simulcast VP8 learnt from MID/RID, its RTX (repairs and probes), loss, reordering,
duplicates, padding probes, key frames, abs-send-time, malformed packets, jumps and restarts, an
SSRC change, mutes; Opus with audio levels, malformed and absent; H.264. After every packet both
must have counted, dropped, NACKed, estimated, reported and forwarded the same things.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from sfu import _native, datapath, track
from sfu.metrics import STATS
from tests.support import packets as P
from tests.unit.sfu import rig

LAYER_FIELDS = ("ssrc", "rtx_ssrc", "epoch", "packets", "bytes", "keyframes", "last_keyframe_at", "width", "height",
                "bitrate", "last_packet_at", "nack_at")
RX_FIELDS = ("base_seq", "max_seq", "cycles", "received", "restarts", "missing_bits", "_jitter_q4", "_last_ts")
STATS_FIELDS = ("packets_in", "bytes_in", "packets_out", "bytes_out", "rtx_unwrapped", "rtx_repair_packets",
                "rtx_copy_packets", "padding_packets", "padding_bytes", "nacks_out")
SSRCS = {"q": 0xA001, "h": 0xA002, "f": 0xA003}
RTX_SSRCS = {"q": 0xB001, "h": 0xB002, "f": 0xB003}


@pytest.fixture(autouse=True, params=["both"])
def data_path(request: pytest.FixtureRequest) -> str:
    """Overrides the per-path parametrisation of tests/unit/sfu: these tests use both paths at once."""
    return request.param


class Side:
    def __init__(self, path: str, codec: str, rids: list[str], ssrcs: list[tuple[int, str]],
                 ext: dict[int, str] | None = None) -> None:
        self.path = path
        datapath.configure(path)
        self.levels: list[tuple] = []
        self.ingress, self.rec, self.wire = rig.publish(codec, rids=rids, ssrcs=ssrcs, ext=ext,
                                                        on_audio_level=lambda *a: self.levels.append(a))
        layers = list(self.rec.layers.values())
        self.subs = []
        for target in (layers[0], layers[-1]):
            dt, wire = rig.subscribe(self.rec)
            dt.set_target(target)
            self.subs.append(wire)

    def on_rtp(self, data: bytes, arrival: float) -> dict[str, int]:
        datapath.configure(self.path)  # what `reception.new` makes when a layer starts over
        before = {f: getattr(STATS, f) for f in STATS_FIELDS}
        self.ingress.on_rtp(data, arrival)
        return {f: getattr(STATS, f) - before[f] for f in STATS_FIELDS}

    def state(self) -> tuple:
        arrivals = self.ingress.arrivals
        layers = {rid: tuple(getattr(layer, f) for f in LAYER_FIELDS) + tuple(getattr(layer.rx, f) for f in RX_FIELDS)
                  for rid, layer in self.rec.layers.items()}
        return (layers, dict(self.ingress.dropped), self.ingress.remb_bps, list(self.levels),
                {ssrc: (layer.rid, rtx) for ssrc, (_, layer, rtx) in self.ingress.by_ssrc.items()},
                list(self.wire.rtcp), [list(w.rtp) for w in self.subs], self.rec.muted,
                arrivals and (arrivals.base, arrivals.high, arrivals.late))


def _video(r: random.Random, n: int, rids: list[str], move: bool = True, tcc: bool = False) -> Any:
    """(packet, arrival) or ("mute", bool) steps of a simulcast VP8 publisher; with `tcc`, its packets
    carry transport-wide numbers (now and then none, a malformed one, or one out of order)."""
    now = 100.0
    number = r.randrange(65536)
    st = {rid: {"ssrc": SSRCS[rid], "seq": r.randrange(65536), "ts": r.randrange(1 << 32), "pid": 0, "sent": 0,
                "rtx_seq": r.randrange(65536), "rtx_sent": 0, "history": []} for rid in rids}
    dims = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}

    def ext(s: dict, rid: str, rtx: bool = False) -> bytes:
        elements: list = []
        if (s["rtx_sent"] if rtx else s["sent"]) < 3:
            elements += [(4, b"0"), (11 if rtx else 10, rid.encode())]
        if r.random() < 0.9:
            elements.append((2, P.abs_send_time(now + r.uniform(-0.002, 0))))
        if tcc:
            nonlocal number
            number = (number + (1 if r.random() < 0.9 else r.choice([-5, 0, 3, 2000]))) & 0xFFFF
            if r.random() < 0.95:
                elements.append((rig.TCC_ID, number.to_bytes(2, "big") if r.random() < 0.98 else b"\x01\x02\x03"))
        return P.one_byte_ext(elements) if elements else b""

    def media(s: dict, rid: str, keyframe: bool) -> bytes:
        s["pid"] = (s["pid"] + 1) & 0x7FFF
        w, h = dims[rid]
        payload = P.vp8_payload(keyframe=keyframe, width=w, height=h, picture_id=s["pid"], tl0picidx=0, tid=0,
                                body=bytes([r.randrange(256)]) * r.randrange(1, 60))
        packet = P.rtp(96, s["seq"], s["ts"], s["ssrc"], payload, ext=ext(s, rid), marker=r.random() < 0.3)
        s["sent"] += 1
        s["history"] = (s["history"] + [packet])[-20:]
        return packet

    for i in range(n):
        now += r.uniform(0, 0.01)
        rid = r.choice(rids)
        s = st[rid]
        op = r.random()
        if i < 3 * len(rids):  # every layer starts with a key frame
            rid = rids[i % len(rids)]
            s = st[rid]
            s["seq"] = (s["seq"] + 1) & 0xFFFF
            yield media(s, rid, True), now
        elif op < 0.70:  # the next packet, sometimes of a new frame, now and then a key frame
            s["seq"] = (s["seq"] + 1) & 0xFFFF
            if r.random() < 0.3:
                s["ts"] = (s["ts"] + 3000) & 0xFFFFFFFF
            yield media(s, rid, r.random() < 0.03), now
        elif op < 0.78:  # loss
            s["seq"] = (s["seq"] + r.randrange(2, 6)) & 0xFFFF
            yield media(s, rid, False), now
        elif op < 0.83 and s["history"]:  # late: reordered or duplicated
            yield r.choice(s["history"]), now
        elif op < 0.88 and s["history"]:  # RTX: a repair or a probe
            original = r.choice(s["history"])
            s["rtx_seq"] = (s["rtx_seq"] + 1) & 0xFFFF
            # RFC 4588: the original sequence number, then the original payload
            yield P.rtp(97, s["rtx_seq"], int.from_bytes(original[4:8], "big"), RTX_SSRCS[rid],
                        original[2:4] + original[12 + _ext_len(original):], ext=ext(s, rid, rtx=True)), now
            s["rtx_sent"] += 1
        elif op < 0.91:  # a padding-only probe on the media SSRC
            s["seq"] = (s["seq"] + 1) & 0xFFFF
            yield P.rtp(96, s["seq"], s["ts"], s["ssrc"], b"", padding=r.choice([1, 100, 200])), now
        elif op < 0.94:  # malformed: a truncated VP8 descriptor, an extension element overrunning its block
            s["seq"] = (s["seq"] + 1) & 0xFFFF
            if r.random() < 0.5:
                yield P.rtp(96, s["seq"], s["ts"], s["ssrc"], b"\x90\x80"), now
            else:
                yield P.rtp(96, s["seq"], s["ts"], s["ssrc"], b"\x10x",
                            ext=P.ext_block(P.ONE_BYTE_PROFILE, b"\x4f\x30")), now
        elif op < 0.95:  # a jump, and sometimes the restart that continues it
            s["seq"] = (s["seq"] + r.randrange(3000, 60000)) & 0xFFFF
            yield media(s, rid, False), now
            if r.random() < 0.5:
                s["seq"] = (s["seq"] + 1) & 0xFFFF
                yield media(s, rid, r.random() < 0.5), now
        elif op < 0.96 and move and not s.get("moved"):  # the layer moves to a new SSRC (announced by MID/RID)
            s["moved"] = True  # once: max_ssrcs_per_track would refuse a stream of new SSRCs
            s["ssrc"] = r.randrange(1, 1 << 32)
            s["sent"] = 0
            s["seq"] = r.randrange(65536)
            yield media(s, rid, True), now
        elif op < 0.97:
            yield "mute", r.random() < 0.5
        else:  # late key frame: a retransmitted one must not start a run
            s["seq"] = (s["seq"] + 1) & 0xFFFF
            yield media(s, rid, True), now


def _ext_len(packet: bytes) -> int:
    if not packet[0] & 0x10:
        return 0
    return 4 + 4 * int.from_bytes(packet[14:16], "big")


def _audio(r: random.Random, n: int) -> Any:
    now, seq, ts = 50.0, r.randrange(65536), r.randrange(1 << 32)
    for _ in range(n):
        now += 0.02
        op = r.random()
        seq = (seq + (1 if op < 0.9 else r.randrange(2, 4))) & 0xFFFF
        ts = (ts + 960) & 0xFFFFFFFF
        kind = r.random()
        if kind < 0.7:
            ext = P.one_byte_ext([(1, bytes([r.randrange(256)])), (2, P.abs_send_time(now))])
        elif kind < 0.8:
            ext = P.one_byte_ext([(2, P.abs_send_time(now))])  # no level element
        elif kind < 0.85:
            ext = P.ext_block(P.ONE_BYTE_PROFILE, b"\x2f\x30")  # overruns before the level element
        else:
            ext = b""
        if r.random() < 0.02:
            yield "mute", r.random() < 0.5
        yield P.rtp(111, seq, ts, 0xC001, bytes(r.randrange(1, 80)), ext=ext), now


def _h264(r: random.Random, n: int) -> Any:
    now, seq, ts = 10.0, r.randrange(65536), 0
    for i in range(n):
        now += 0.005
        seq = (seq + 1) & 0xFFFF
        if r.random() < 0.3:
            ts += 3000
        unit = P.IDR if i == 0 or r.random() < 0.05 else P.NON_IDR
        yield P.rtp(102, seq, ts, 0xD001, unit, ext=P.one_byte_ext([(2, P.abs_send_time(now))])), now


def _run(sides: tuple[Side, Side], steps: Any) -> int:
    count = 0
    for step in steps:
        if step[0] == "mute":
            for side in sides:
                side.rec.muted = step[1]
            continue
        data, arrival = step
        deltas = [side.on_rtp(data, arrival) for side in sides]
        if count % 37 == 0:  # the feedback built from what each noted (compared in state: the RTCP sent)
            for side in sides:
                side.ingress.send_transport_feedback()
        assert deltas[0] == deltas[1], f"packet {count}: counters differ"
        assert sides[0].state() == sides[1].state(), f"packet {count}: state differs"
        count += 1
    return count


@pytest.mark.parametrize("seed", range(6))
def test_simulcast_vp8_in_lockstep(seed: int) -> None:
    rids = ["q", "h", "f"]
    sides = (Side("python", "VP8", rids, []), Side("native", "VP8", rids, []))
    n = _run(sides, _video(random.Random(seed), 1500, rids))
    native = sides[1].ingress
    assert native.fast_packets + native.slow_packets == n
    assert native.fast_packets > n // 2  # the common case is the C path's
    assert sum(len(w.rtp) for w in sides[1].subs) > 200  # and it forwarded


@pytest.mark.parametrize("seed", range(3))
def test_simulcast_vp8_with_transport_wide_numbers_in_lockstep(seed: int) -> None:
    rids = ["q", "h", "f"]
    sides = tuple(Side(path, "VP8", rids, [], ext=rig.TCC_EXT) for path in ("python", "native"))
    n = _run(sides, _video(random.Random(300 + seed), 1500, rids, tcc=True))
    native = sides[1].ingress
    assert native.fast_packets > n // 2 and native.arrivals.high > 0
    assert sum(1 for c in sides[1].wire.rtcp if c[1] == 205) > 20  # transport feedback (RTPFB), as the twin's


@pytest.mark.parametrize("seed", range(3))
def test_vp8_without_simulcast_learnt_from_ssrc_lines_in_lockstep(seed: int) -> None:
    sides = tuple(Side(path, "VP8", [], [(0xA001, "media"), (0xB001, "rtx")]) for path in ("python", "native"))
    n = _run(sides, _video(random.Random(100 + seed), 800, ["q"], move=False))
    assert sides[1].ingress.fast_packets > n // 2


@pytest.mark.parametrize("seed", range(3))
def test_opus_with_audio_levels_in_lockstep(seed: int) -> None:
    sides = tuple(Side(path, "opus", [], [(0xC001, "media")]) for path in ("python", "native"))
    n = _run(sides, _audio(random.Random(200 + seed), 600))
    assert sides[1].ingress.fast_packets > n // 2
    assert len(sides[1].levels) > n // 2  # the levels reached the callback from the C path too


def test_h264_goes_to_the_python_method_and_behaves_alike() -> None:
    sides = tuple(Side(path, "H264", [], [(0xD001, "media")]) for path in ("python", "native"))
    n = _run(sides, _h264(random.Random(7), 300))
    assert (sides[1].ingress.fast_packets, sides[1].ingress.slow_packets) == (0, n)


def test_the_c_path_follows_the_ssrc_table() -> None:
    datapath.configure("native")
    ingress, rec, _ = rig.publish("VP8", rids=["q", "h"])
    assert ingress.routes == 0
    for ssrc, rid in ((0xA001, b"q"), (0xA002, b"h")):
        ingress.on_rtp(P.rtp(96, 1, 0, ssrc, P.vp8_payload(keyframe=True), ext=P.one_byte_ext([(4, b"0"), (10, rid)])),
                       1.0)
    assert ingress.routes == 2  # learnt: routed
    ingress.on_rtp(P.rtp(96, 1, 0, 0xA009, P.vp8_payload(keyframe=True), ext=P.one_byte_ext([(4, b"0"), (10, b"q")])),
                   1.1)
    assert ingress.routes == 2 and 0xA001 not in ingress.by_ssrc  # q moved to a new SSRC: the old is gone
    fast = ingress.fast_packets
    ingress.on_rtp(P.rtp(96, 2, 0, 0xA009, P.vp8_payload()), 1.2)
    ingress.on_rtp(P.rtp(96, 2, 0, 0xA001, P.vp8_payload()), 1.3)  # the old SSRC: unknown now
    assert ingress.fast_packets == fast + 1 and ingress.dropped == {"unknown_ssrc": 1}


def test_a_layer_without_the_c_accounting_is_left_to_the_python_method() -> None:
    datapath.configure("native")
    ingress, rec, _ = rig.publish("VP8", rids=["q"])
    python_layer = track.Layer("q", 90000)  # its rx is native, its rate accounting is not
    assert ingress._route(0xA001, rec, python_layer, True, _native.CODEC_VP8, 0, 0) is False
    assert ingress._route(0xA001, rec, rec.layer("q"), True, _native.CODEC_VP8, 0, 0) is True
    assert ingress.routes == 1
