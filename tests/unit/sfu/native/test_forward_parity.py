"""The C forwarder against its Python twin, in lockstep: the same packets and the same decisions must
give the same bytes on the wire and the same state, whatever the packets look like.

Every other test in tests/unit/sfu runs on both data paths with hand-written expectations; these
drive both with long random scenarios (seeded: a failure names its seed) that mix layer switches,
pauses, publisher restarts, temporal thinning, padding probes, NACKs, malformed extension blocks and
wrapping numbers, and compare after every step.
"""

from __future__ import annotations

import random

import pytest

from sfu import datapath, rtp
from sfu.downtrack import DownTrack
from tests.support import packets as P
from tests.support.parsers import disagreement
from tests.unit.sfu import rig

STATE = ("seq_off", "ts_off", "pid_off", "tl0_off", "switch_seq", "epoch", "started", "last_seq", "last_ts",
         "last_pid", "last_tl0", "last_sent_at", "packets", "octets", "bytes_sent", "temporal_drops", "max_tid",
         "_rtx_window_at", "retransmissions", "rtx_seq", "max_sid", "target_sid", "spatial_drops")


@pytest.fixture(autouse=True, params=["both"])
def data_path(request: pytest.FixtureRequest) -> str:
    """Overrides the per-path parametrisation of tests/unit/sfu: these tests use both classes at once."""
    return request.param


def _state(dt: DownTrack) -> dict:
    out = {name: getattr(dt, name) for name in STATE}
    out["current"] = dt.current.rid if dt.current else None
    out["target"] = dt.target.rid if dt.target else None
    return out


def _extensions(r: random.Random) -> bytes:
    kind = r.random()
    if kind < 0.15:
        return b""
    if kind < 0.25:
        return P.two_byte_ext([(2, b"\x01\x02\x03"), (4, b"0"), (200, b"xyz")])
    elements: list = []
    for xid in r.sample([2, 3, 4, 10, 11, 6, 14], r.randint(0, 5)):
        if xid == 2:
            elements.append((2, bytes(r.randrange(256) for _ in range(3))))
        elif xid == 4:
            elements.append((4, r.choice([b"0", b"1", b"01"])))
        else:
            elements.append((xid, bytes(r.randrange(256) for _ in range(r.randint(1, 4)))))
        if r.random() < 0.2:
            elements.append(b"\x00")
    body = P._elements(elements, False)
    if r.random() < 0.1:  # an element whose length runs past the block
        body += bytes([(3 << 4) | 0x0F, 1, 2])
    if r.random() < 0.05:  # id 15: stop parsing
        body += b"\xf0\x00"
    return P.ext_block(P.ONE_BYTE_PROFILE, body)


def _scenario(seed: int, steps: int = 1500) -> None:
    r = random.Random(seed)
    datapath.configure("native")  # its layers' rings are C PacketRings, which the Python DownTrack uses too
    _, rec, _ = rig.publish("VP8", rids=["q", "h", "f"])
    nat, nat_wire = rig.subscribe(rec)
    datapath.configure("python")
    py, py_wire = rig.subscribe(rec)
    assert type(nat) is datapath.NativeDownTrack and type(py) is DownTrack
    layers = list(rec.layers.values())
    seqs = {layer.rid: r.randrange(65536) for layer in layers}
    pids = {layer.rid: r.randrange(0x8000) for layer in layers}
    tl0s = {layer.rid: r.randrange(256) for layer in layers}
    ts = {layer.rid: r.randrange(1 << 32) for layer in layers}
    now = 1000.0
    for step in range(steps):
        now += r.choice([0.0, 0.001, 0.02, 0.5])
        event = r.random()
        if event < 0.06:
            layer = r.choice(layers + [None])
            for dt in (py, nat):
                dt.set_target(layer, "test")
        elif event < 0.08:
            tid = r.choice([None, 0, 1])
            py.max_tid = nat.max_tid = tid
        elif event < 0.09:
            layer = r.choice(layers)
            layer.epoch += 1
            seqs[layer.rid] = r.randrange(65536)
        elif event < 0.10:
            for dt in (py, nat):
                dt.interrupt()
        elif event < 0.13:
            lost = [(py.last_seq - r.randrange(40)) & 0xFFFF for _ in range(r.randint(1, 5))]
            for dt in (py, nat):
                dt.on_nack(list(lost), now)
        elif event < 0.15:
            layer = r.choice(layers)
            seqs[layer.rid] = (seqs[layer.rid] + 1) & 0xFFFF
            for dt in (py, nat):
                dt.skip(seqs[layer.rid], layer)
        else:
            layer = r.choice(layers)
            rid = layer.rid
            if r.random() < 0.9:
                seqs[rid] = (seqs[rid] + 1) & 0xFFFF
            else:  # reordered or repeated
                seqs[rid] = (seqs[rid] - r.randrange(3)) & 0xFFFF
            key = r.random() < 0.07
            if r.random() < 0.3:
                pids[rid] = (pids[rid] + 1) & (0x7FFF if pids[rid] > 127 else 0x7F)
                tl0s[rid] = (tl0s[rid] + 1) & 0xFF
                ts[rid] = (ts[rid] + 3000) & 0xFFFFFFFF
            short_pid = pids[rid] <= 127 and r.random() < 0.3
            payload = P.vp8_payload(keyframe=key, picture_id=pids[rid] & (0x7F if short_pid else 0x7FFF),
                                    tl0picidx=tl0s[rid], tid=r.randrange(3), layer_sync=False)
            data = P.rtp(96, seqs[rid], ts[rid], 0xA000 + layers.index(layer), payload, marker=r.random() < 0.3,
                         csrcs=[0x1234] * r.randint(0, 2) if r.random() < 0.1 else (),
                         ext=_extensions(r), padding=r.choice([0, 0, 0, 1, 4]))
            view = rtp.parse(data)
            vp8 = rtp.vp8_descriptor(memoryview(data)[view.payload_start:view.payload_end])
            for dt in (py, nat):
                dt.forward(data, view, layer, vp8.keyframe, vp8, now)
        assert nat_wire.rtp == py_wire.rtp, f"seed {seed} step {step}: different packets on the wire"
        assert _state(nat) == _state(py), f"seed {seed} step {step}: different state"
    assert len(py_wire.rtp) > 50  # the scenario forwarded something (it can fail: a bad generator)


@pytest.mark.parametrize("seed", range(12))
def test_native_and_python_forward_the_same_bytes_with_the_same_state(seed: int) -> None:
    try:
        _scenario(seed)
    finally:
        datapath.configure("python")


def _svc_scenario(seed: int, steps: int = 1500) -> None:
    """VP9 SVC (one stream, spatial layers 0-2, temporal 0-2): spatial and temporal caps changing at
    random, key pictures now and then, NACKs, loss and reordering."""
    r = random.Random(seed)
    datapath.configure("native")
    _, rec, _ = rig.publish("VP9", ssrcs=[(0xB000, "media")])
    nat, nat_wire = rig.subscribe(rec)
    datapath.configure("python")
    py, py_wire = rig.subscribe(rec)
    layer = rec.layers[""]
    for dt in (py, nat):
        dt.set_target(layer, "test")
    seq, pid, tl0, ts, now = r.randrange(65536), r.randrange(0x8000), r.randrange(256), r.randrange(1 << 32), 1000.0
    for step in range(steps):
        now += r.choice([0.0, 0.001, 0.02])
        event = r.random()
        if event < 0.04:
            sid = r.choice([0, 1, 2, 7])
            for dt in (py, nat):
                dt.set_spatial(sid, "test")
        elif event < 0.06:
            py.max_tid = nat.max_tid = r.choice([None, 0, 1])
        elif event < 0.09:
            lost = [(py.last_seq - r.randrange(40)) & 0xFFFF for _ in range(r.randint(1, 5))]
            for dt in (py, nat):
                dt.on_nack(list(lost), now)
        else:
            key = r.random() < 0.05
            pid = (pid + 1) & 0x7FFF
            tl0 = (tl0 + 1) & 0xFF
            ts = (ts + 3000) & 0xFFFFFFFF
            tid = 0 if key else r.randrange(3)
            for sid in range(3):
                if r.random() < 0.05:
                    continue  # lost on the way in
                seq = (seq + (1 if r.random() < 0.95 else r.randint(2, 3))) & 0xFFFF
                desc = P.vp9_descriptor(picture_id=pid, predicted=not key, tid=tid, sid=sid,
                                        inter_layer=key and sid > 0, tl0picidx=tl0, begin=True, end=True,
                                        sizes=((320, 180), (640, 360), (1280, 720)) if key and sid == 0 else ())
                data = P.rtp(98, seq, ts, 0xB000, desc + bytes(r.randint(1, 30)), marker=sid == 2,
                             ext=_extensions(r))
                view = rtp.parse(data)
                pic = rtp.vp9_descriptor(memoryview(data)[view.payload_start:view.payload_end])
                for dt in (py, nat):
                    dt.forward(data, view, layer, pic.keyframe, pic, now)
        assert nat_wire.rtp == py_wire.rtp, f"seed {seed} step {step}: different packets on the wire"
        assert _state(nat) == _state(py), f"seed {seed} step {step}: different state"
    assert py.spatial_drops > 0 and len(py_wire.rtp) > 200  # the scenario filtered and forwarded


@pytest.mark.parametrize("seed", range(6))
def test_native_and_python_forward_vp9_svc_alike(seed: int) -> None:
    try:
        _svc_scenario(seed)
    finally:
        datapath.configure("python")


@pytest.mark.parametrize("seed", range(3))
def test_the_nack_ring_keeps_packets_whose_size_changes_from_slot_to_slot(seed: int) -> None:
    """The C PacketRing sizes each slot to the largest packet it has held (128-byte steps): packets of
    widely varying sizes over several laps of the ring must be kept and resent byte for byte."""
    r = random.Random(seed)
    try:
        datapath.configure("native")
        _, rec, _ = rig.publish("VP8")
        nat, nat_wire = rig.subscribe(rec)
        datapath.configure("python")
        py, py_wire = rig.subscribe(rec)
        layer = next(iter(rec.layers.values()))
        for dt in (py, nat):
            dt.set_target(layer, "test")
        now = 1000.0
        seq = r.randrange(65536)
        for i in range(3 * 1024):
            seq = (seq + 1) & 0xFFFF
            now += 0.001
            size = r.choice([20, 100, 127, 128, 129, 600, 1100, 1300])
            payload = P.vp8_payload(keyframe=i == 0, picture_id=i & 0x7FFF, tl0picidx=0, tid=0, layer_sync=False,
                                    body=bytes([i & 0xFF]) * size)
            data = P.rtp(96, seq, i * 3000, 0xA000, payload, ext=_extensions(r))
            view = rtp.parse(data)
            vp8 = rtp.vp8_descriptor(memoryview(data)[view.payload_start:view.payload_end])
            for dt in (py, nat):
                dt.forward(data, view, layer, vp8.keyframe, vp8, now)
            if i % 97 == 0:
                lost = [(py.last_seq - r.randrange(1100)) & 0xFFFF for _ in range(4)]
                for dt in (py, nat):
                    dt.on_nack(list(lost), now)
            assert nat_wire.rtp == py_wire.rtp, f"seed {seed} packet {i}: different packets on the wire"
        assert py.retransmissions > 0 and len(py_wire.rtp) > 3 * 1024
    finally:
        datapath.configure("python")


def test_the_c_parsers_agree_with_sfu_rtp_on_random_and_mutated_packets() -> None:
    """parse, vp8_descriptor, vp9_descriptor and extension: the same attributes, or the same RtpError
    reason."""
    r = random.Random(7)
    vp9 = (P.vp9_descriptor(picture_id=300, tid=1, tl0picidx=4, sizes=((640, 360), (1280, 720)),
                            group=((0, False, (4,)), (1, True, (1, 2)))),
           P.vp9_descriptor(picture_id=301, predicted=True, tid=2, sid=1, references=(1, 2)))
    seeds = [P.rtp(96, 1, 2, 3, payload + bytes(20), ext=_extensions(r), padding=p)
             for payload in (b"\x90\xe0\x80\x01\x05\x20", *vp9) for p in (0, 4) for _ in range(10)]
    checked: set = set()
    for _ in range(20000):
        data = bytearray(r.choice(seeds))
        for _ in range(r.randint(0, 4)):
            op = r.random()
            if op < 0.5 and data:
                data[r.randrange(len(data))] = r.randrange(256)
            elif op < 0.75:
                del data[r.randrange(len(data) + 1):]
            else:
                data += bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
        data = bytes(data)
        assert disagreement(data) is None, (disagreement(data), data.hex())
        try:
            view = rtp.parse(data)
            checked.add(view.ext_start > 0)
            rtp.vp9_descriptor(data[view.payload_start : view.payload_end])
        except rtp.RtpError as e:
            checked.add(e.reason)
    # the mutations reach every defect sfu.rtp names, and packets with and without extensions
    assert checked >= {True, False, "truncated_header", "bad_version", "truncated_extension",
                       "bad_extension_length", "bad_padding", "vp9_truncated_descriptor"}, checked
