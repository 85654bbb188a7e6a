"""Added forwarding latency, timed by the kernel on the wire: when a probe leaves the publisher, and
when each of its copies leaves the SFU.

The probe latency the subscribers report (`latency_ms_*`) runs from the publisher building a packet
to a subscriber decrypting it, both in the generator's busy Python loop, so at load it mostly times
the generator. This times what the SFU adds and nothing else:

* a child process holds an `AF_PACKET` socket on `lo` with a classic BPF filter that passes only
  *outgoing* IPv4 UDP datagrams whose payload starts like an RTP packet with the padding bit set
  (the probes: `bench.loadgen.media` puts them in RTP padding; SRTP leaves the header in the
  clear), and `SO_TIMESTAMPNS`: the kernel stamps each one as it is transmitted, inside the sending
  process's `sendmmsg`/`sendto`, so neither loop's scheduling moves the stamps;
* a segmented send (UDP GSO, Basement's `udp_gso`) crosses `lo` as one large datagram holding
  several RTP packets, so the filter also passes every UDP datagram longer than any single one, whole,
  and the socket asks for each frame's `virtio_net_hdr` (`PACKET_VNET_HDR`): its `gso_size` says
  where each packet starts, and every probe among them gets the send's one stamp;
* a datagram from a publisher's port is an input; every other is a copy leaving the SFU. A copy is
  matched to its input by RTP sequence number: an SFU rewrites SSRC and sequence numbers but keeps
  one offset per subscriber stream while it forwards one layer, so the offset (and which publisher
  stream it comes from) is the one most of that stream's copies agree on (`added_latency`). The
  publishers choose probes at random (one packet in k), so the probes of two streams in lockstep
  (every publisher's 50 pps of audio) do not line up and cannot be mistaken for each other.

added latency = copy's wire time − input's wire time: the loopback delivery to the SFU, the time
the datagram waits in the SFU's socket queue, the SFU's work, and the copies sent before it in the
same fan-out. Needs `CAP_NET_RAW` in the network namespace (the bench's `unshare -n` gives it).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import ctypes
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RECORD = struct.Struct("<qHHIH")  # wire time ns (CLOCK_REALTIME), source port, destination port, SSRC, sequence
SNAPLEN = 64  # Ethernet (14) + IPv4 (20, no options from our stack) + UDP (8) + RTP fixed header (12)
SEGMENTED = 1600  # a UDP length above any one datagram the SFUs send: a segmented (GSO) send, kept whole
VNET = struct.Struct("<BBHHHH")  # virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
FRAME_MAX = VNET.size + 65536
# A copy is matched to an input sent at most this long before it: an SFU that stalls (a collection,
# a starved core) adds that much latency, which is to be measured, not dropped.
WINDOW_NS = 2_000_000_000
MIN_AGREEMENT = 0.5  # share of a copy stream's voters that must agree on one (input stream, offset)
# A runner-up with more than this share of the best offset's votes makes the stream ambiguous. With
# probes chosen at random (one in k), a wrong offset gets about 1/k of the votes; on a regular
# lattice (or with every packet a probe) several fit alike.
NEAR_TIE = 0.75
VOTERS = 100  # copies of a stream, evenly spread, that vote on its offset: enough, and bounded work at large N

_ETH_P_ALL = 0x0003
_SO_ATTACH_FILTER = 26
_SO_TIMESTAMPNS = 35
_SO_RCVBUFFORCE = 33
_SOL_PACKET = 263
_PACKET_STATISTICS = 6
_PACKET_VNET_HDR = 15
_PACKET_OUTGOING = 4
_GSO_UDP_L4 = 5  # virtio_net_hdr.gso_type of a UDP_SEGMENT send


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def bpf_program() -> bytes:
    """Outgoing IPv4, UDP, not a fragment, and either longer than SEGMENTED (a segmented send: all of
    it) or with a first payload byte 0b101xxxxx (RTP version 2, padding: its first SNAPLEN bytes)."""
    ld_w, ld_h, ld_b, ldx_msh, ld_h_ind, ld_b_ind = 0x20, 0x28, 0x30, 0xB1, 0x48, 0x50
    jeq, jgt, jset, and_k, ret = 0x15, 0x25, 0x45, 0x54, 0x06
    skf_ad_pkttype = -0x1000 + 4
    # index: instruction (jumps count from the next instruction; 15 is "drop")
    return b"".join([
        _insn(ld_w, 0, 0, skf_ad_pkttype),       # 0
        _insn(jeq, 0, 13, _PACKET_OUTGOING),     # 1: loopback also shows each datagram as received
        _insn(ld_h, 0, 0, 12),                   # 2: EtherType
        _insn(jeq, 0, 11, 0x0800),               # 3
        _insn(ld_b, 0, 0, 23),                   # 4: IP protocol
        _insn(jeq, 0, 9, 17),                    # 5
        _insn(ld_h, 0, 0, 20),                   # 6: fragment offset
        _insn(jset, 7, 0, 0x1FFF),               # 7
        _insn(ldx_msh, 0, 0, 14),                # 8: X = IP header length
        _insn(ld_h_ind, 0, 0, 18),               # 9: UDP length
        _insn(jgt, 5, 0, SEGMENTED),             # 10: a segmented send: 16
        _insn(ld_b_ind, 0, 0, 22),               # 11: first UDP payload byte
        _insn(and_k, 0, 0, 0xE0),                # 12
        _insn(jeq, 0, 1, 0xA0),                  # 13
        _insn(ret, 0, 0, SNAPLEN),               # 14: accept the headers
        _insn(ret, 0, 0, 0),                     # 15: drop
        _insn(ret, 0, 0, 0xFFFF),                # 16: accept all of it
    ])


def open_capture(interface: str = "lo") -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    prog = ctypes.create_string_buffer(bpf_program())
    fprog = struct.pack("HL", len(prog.raw) // 8, ctypes.addressof(prog))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    sock.setsockopt(_SOL_PACKET, _PACKET_VNET_HDR, 1)  # every frame then starts with a virtio_net_hdr
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 64 << 20)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.bind((interface, 0))
    sock.settimeout(0.1)
    return sock


def parse_frame(frame: bytes | memoryview,
                ancillary: list[tuple[int, int, bytes]]) -> list[tuple[int, int, int, int, int]]:
    """(wire ns, source port, destination port, SSRC, sequence) of each probe in one captured frame
    (a virtio_net_hdr, then the Ethernet frame): one for a datagram, any number for a segmented
    send, whose packets are `gso_size` bytes apart and share its stamp."""
    wire_ns = None
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            sec, ns = struct.unpack_from("qq", data)
            wire_ns = sec * 1_000_000_000 + ns
    if wire_ns is None or len(frame) < VNET.size + 14 + 20:
        return []
    _, gso_type, _, gso_size, _, _ = VNET.unpack_from(frame)
    ip = VNET.size + 14
    udp = ip + (frame[ip] & 0x0F) * 4
    if len(frame) < udp + 8:
        return []
    sport, dport = struct.unpack_from("!HH", frame, udp)
    step = gso_size if gso_type == _GSO_UDP_L4 and gso_size else len(frame)
    out = []
    for rtp in range(udp + 8, len(frame), step):
        if len(frame) < rtp + 12:
            break
        if frame[rtp] & 0xE0 != 0xA0 or 192 <= frame[rtp + 1] <= 223:
            continue  # not a probe (no padding), or RTCP (RFC 5761)
        seq, = struct.unpack_from("!H", frame, rtp + 2)
        ssrc, = struct.unpack_from("!I", frame, rtp + 8)
        out.append((wire_ns, sport, dport, ssrc, seq))
    return out


def _capture_main(out_path: str) -> None:
    """The child: capture until SIGTERM, write the records, print the kernel's counts as JSON."""
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    sock = open_capture()
    records = bytearray()
    buf = bytearray(FRAME_MAX)  # one buffer for every frame: a segmented send is up to 64 KiB
    view = memoryview(buf)
    print("ready", flush=True)
    while not stop:
        try:
            n, anc, _, _ = sock.recvmsg_into([buf], 64)
        except TimeoutError:
            continue
        except InterruptedError:
            continue
        for rec in parse_frame(view[:n], anc):
            records += RECORD.pack(*rec)
    packets, drops = struct.unpack("II", sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8))
    with open(out_path, "wb") as f:
        f.write(records)
    print(json.dumps({"records": len(records) // RECORD.size, "kernel_drops": drops}), flush=True)


class WireTap:
    """The capture child, on the generator's CPUs (it must not take time from the SFU's core)."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._path = ""

    async def start(self) -> None:
        fd, self._path = tempfile.mkstemp(prefix="basement-wire-", suffix=".bin")
        os.close(fd)
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadgen.wire", "--out", self._path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 20)
        if line.strip() != b"ready":
            err = await self._proc.stderr.read() if self._proc.stderr else b""
            raise RuntimeError(f"wire capture did not start (needs CAP_NET_RAW): {err.decode()[-400:]}")

    def kill(self) -> None:
        """Idempotent: the child gone and its file removed, whatever state the run ended in."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        if self._path and os.path.exists(self._path):
            os.unlink(self._path)

    async def stop(self) -> tuple[list[tuple[int, int, int, int, int]], int]:
        """The records and the number the kernel dropped (a full capture buffer)."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        try:
            if proc.returncode != 0:
                raise RuntimeError(f"wire capture failed: {err.decode()[-400:]}")
            stats = json.loads(out.decode().strip().splitlines()[-1])
            raw = await asyncio.to_thread(Path(self._path).read_bytes)
        finally:
            os.unlink(self._path)
        return list(RECORD.iter_unpack(raw)), stats["kernel_drops"]


def added_latency(records: Iterable[tuple[int, int, int, int, int]], input_ports: set[int]) -> dict[str, Any]:
    """Match every copy to the input it was forwarded from; the added latency of each, in µs.

    The inputs must be a sparse, irregular subset of each stream's sequence numbers (the probes, one
    packet in k at random): if every packet were captured, offsets 0, ±1, ±2 … would fit nearly as
    well as the true one, and such a stream is reported unmatched.

    Returns `samples_us` (one per matched copy), `copies` (all copies seen), `unmatched` and
    `inputs`. A copy stream whose packets do not mostly agree on one (input stream, sequence
    offset) — a retransmission stream, or an SFU that reorders the sequence space — is left
    unmatched rather than guessed.
    """
    inputs: dict[int, dict[int, int]] = defaultdict(dict)  # input SSRC -> seq -> first wire time
    input_times: list[tuple[int, int, int]] = []  # (wire ns, SSRC, seq), in capture order
    copies: dict[tuple[int, int, int], dict[int, int]] = defaultdict(dict)  # (sport, dport, SSRC) -> seq -> time
    for t, sport, dport, ssrc, seq in records:
        if sport in input_ports:
            if seq not in inputs[ssrc]:
                inputs[ssrc][seq] = t
                input_times.append((t, ssrc, seq))
        else:
            copies[(sport, dport, ssrc)].setdefault(seq, t)  # a retransmitted copy keeps the first time
    input_times.sort()
    stamps = [t for t, _, _ in input_times]
    samples: list[int] = []
    first: dict[tuple[int, int], int] = {}  # input (SSRC, seq) -> its earliest copy's latency
    unmatched = 0
    total = 0
    for stream in copies.values():
        total += len(stream)
        votes: Counter[tuple[int, int]] = Counter()
        voters = list(stream.items())
        voters = voters[:: max(1, len(voters) // VOTERS)]
        for seq, t in voters:
            lo = bisect.bisect_left(stamps, t - WINDOW_NS)
            hi = bisect.bisect_right(stamps, t)
            for _, in_ssrc, in_seq in input_times[lo:hi]:
                votes[(in_ssrc, (seq - in_seq) & 0xFFFF)] += 1
        if not votes:
            unmatched += len(stream)
            continue
        best = votes.most_common(2)
        (in_ssrc, offset), agreed = best[0]
        if agreed < MIN_AGREEMENT * len(voters) or (len(best) > 1 and best[1][1] > NEAR_TIE * agreed):
            unmatched += len(stream)  # no offset most copies agree on, or two that nearly tie
            continue
        sent = inputs[in_ssrc]
        for seq, t in stream.items():
            in_seq = (seq - offset) & 0xFFFF
            t_in = sent.get(in_seq)
            if t_in is None or not 0 <= t - t_in <= WINDOW_NS:
                unmatched += 1
            else:
                us = (t - t_in) // 1000
                samples.append(us)
                key = (in_ssrc, in_seq)
                if us < first.get(key, WINDOW_NS):
                    first[key] = us
    return {"samples_us": samples, "first_copy_us": list(first.values()), "copies": total, "unmatched": unmatched,
            "inputs": sum(len(v) for v in inputs.values())}


def summary(result: dict[str, Any], kernel_drops: int) -> dict[str, Any]:
    """The figures a run reports: percentiles in µs, and how much was matched."""
    samples = sorted(result["samples_us"])
    first = sorted(result["first_copy_us"])

    def pct(values: list[int], q: float) -> float | None:
        return float(values[min(len(values) - 1, int(round(q * (len(values) - 1))))]) if values else None

    return {"added_latency_us_p50": pct(samples, 0.5), "added_latency_us_p99": pct(samples, 0.99),
            "added_latency_us_max": float(samples[-1]) if samples else None,
            # the first copy of each input: without the wait for the copies sent before it in a fan-out
            "added_latency_first_copy_us_p50": pct(first, 0.5), "added_latency_first_copy_us_p99": pct(first, 0.99),
            "added_latency_samples": len(samples), "added_latency_unmatched": result["unmatched"],
            "added_latency_inputs": result["inputs"], "capture_kernel_drops": kernel_drops}


def _reflect_main(fd: int, sink_port: int) -> None:
    """The floor's forwarder: the least any SFU can do, one blocking receive and one send per datagram."""
    inbound = socket.socket(fileno=fd)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = ("127.0.0.1", sink_port)
    while (data := inbound.recv(2048)) != b"stop":
        out.sendto(data, sink)


async def measure_floor(sfu_cpus: set[int] | None, packets: int = 400, interval: float = 0.005) -> dict[str, Any]:
    """The latency floor: what the kernel and the machine add to one forwarded datagram, timed like an SFU.

    A reflector process on the SFU's CPU gets an RTP-like probe every `interval` s and sends it on.
    On a VM, waking an idle vCPU for each datagram is an interrupt the hypervisor delivers: tens to
    hundreds of µs that no SFU on that core can avoid.
    """
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    inbound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tap = WireTap()
    proc = None
    try:
        for sock in (sink, inbound, sender):
            sock.bind(("127.0.0.1", 0))
        sender.setblocking(False)
        sender_port = sender.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadgen.wire", "--reflect", str(inbound.fileno()),
            "--sink-port", str(sink.getsockname()[1]), pass_fds=[inbound.fileno()],
            preexec_fn=(lambda: os.sched_setaffinity(0, sfu_cpus)) if sfu_cpus else None)
        await tap.start()
        dest = inbound.getsockname()
        # random sequence numbers: consecutive ones would make every offset fit (see added_latency)
        for i, seq in enumerate(random.sample(range(65536), packets)):
            sender.sendto(struct.pack("!BBHII", 0xA0, 96, seq, i * 3000, 0x0B5E) + bytes(1000), dest)
            await asyncio.sleep(interval)
        sender.sendto(b"stop", dest)
        await asyncio.wait_for(proc.wait(), 10)
        records, drops = await tap.stop()
    finally:
        tap.kill()
        if proc is not None and proc.returncode is None:
            proc.kill()
        for sock in (sink, inbound, sender):
            sock.close()
    result = summary(added_latency(records, {sender_port}), drops)
    return {"packets": packets, "interval_ms": interval * 1000, **result}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out")
    p.add_argument("--reflect", type=int, help="(the latency floor's reflector) the inbound socket's descriptor")
    p.add_argument("--sink-port", type=int)
    args = p.parse_args()
    if args.reflect is not None:
        _reflect_main(args.reflect, args.sink_port)
    else:
        _capture_main(args.out)


if __name__ == "__main__":
    main()
