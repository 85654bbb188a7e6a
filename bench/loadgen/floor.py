"""The send floor: what the kernel charges the SFU's core for one forwarded datagram on this machine.

On loopback the sender's core pays for both halves of a datagram: the UDP send and the receive side
(routing, the receiver's socket queue, waking the receiving process on the other core, which in a
VM is an interrupt across vCPUs). No SFU can forward a packet for less. The floor is measured in the
same run, with the same pinning and the same kind of receivers as the real load:

* a child process on the SFU's CPU holds one UDP socket per receiver (as Basement and Janus do,
  one per subscriber transport) and, at the scenario's packet rate, SRTP-protects (AEAD_AES_128_GCM)
  and sends one packet to every receiver through `sfu._native.Egress`, the native path's own send
  (one `sendmmsg` per socket), so only the unavoidable work is counted;
* the receivers are N UDP sockets on this (the generator's) event loop that only count, like the
  light subscribers' socket tap.

`cpu_us_per_packet` of a target minus this floor is what that SFU adds on top of the kernel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

from bench.loadgen import targets

PACKET_BYTES = 1000  # between the audio (~100 B) and video (~1,150 B) packets of the scenarios


class _Count(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0
        self.size = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        self.size = len(data)


async def measure(receivers: int, pps: float, duration: float) -> dict[str, Any]:
    """Send `pps` packets/s to each of `receivers` sockets for `duration` s from a child on the SFU's CPU."""
    loop = asyncio.get_running_loop()
    endpoints = [await loop.create_datagram_endpoint(_Count, local_addr=("127.0.0.1", 0))
                 for _ in range(receivers)]
    try:
        ports = [t.get_extra_info("sockname")[1] for t, _ in endpoints]
        cpus = targets.SFU_CPUS
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadgen.floor", "--pps", str(pps), "--duration", str(duration),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        out, _ = await proc.communicate(json.dumps(ports).encode())
        if proc.returncode != 0:
            raise RuntimeError(f"send-floor child exited with code {proc.returncode}")
        child = json.loads(out)
        await asyncio.sleep(0.2)  # the last datagrams in flight
        received = sum(p.received for _, p in endpoints)
        size = endpoints[0][1].size
    finally:
        for t, _ in endpoints:
            t.close()
    sent = child["sent"]
    return {
        "receivers": receivers,
        "pps_per_receiver": pps,
        "packet_bytes": PACKET_BYTES,
        "datagram_bytes": size,  # as received: the packet plus the SRTP tag
        "sent": sent,
        "received": received,
        "cpu_s": child["cpu_s"],
        "us_per_packet": child["cpu_s"] * 1e6 / sent if sent else None,
        "send": child["send"],
    }


def _child(pps: float, duration: float) -> None:
    """The sender (runs on the SFU's CPU): ports on stdin, a JSON result on stdout."""
    from aiortc.rtcdtlstransport import SRTP_PROFILES

    ports = json.load(sys.stdin)
    try:
        from sfu import _native  # type: ignore[attr-defined]
    except ImportError:
        _native = None
    profile = next(p for p in SRTP_PROFILES if p.openssl_profile == b"SRTP_AEAD_AES_128_GCM")
    key = os.urandom(profile.key_length + profile.salt_length)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in ports]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    if _native is not None:
        egresses = [_native.Egress(s.fileno(), ("127.0.0.1", p), profile.libsrtp_profile, key)
                    for s, p in zip(socks, ports)]
        sends = [e.send_rtp for e in egresses]
        how = "sfu._native.Egress (AEAD_AES_128_GCM + sendmmsg)"
    else:  # not built: plain datagrams, said so in the result
        sends = [(lambda data, s=s, a=("127.0.0.1", p): s.sendto(data, a)) for s, p in zip(socks, ports)]
        how = "socket.sendto without SRTP (sfu._native not built)"
    # one packet per receiver, its own SSRC; only the sequence number changes per tick, so the loop
    # below is two byte stores and the send: the floor must not include work an SFU would not do
    packets = []
    for i in range(len(ports)):
        pkt = bytearray(PACKET_BYTES)
        pkt[0], pkt[1] = 0x80, 96
        pkt[8:12] = (0x10000 + i).to_bytes(4, "big")
        packets.append(pkt)
    pairs = list(zip(sends, packets))
    interval = 1 / pps
    sent = 0
    seq = 0
    c0 = time.process_time()
    start = time.monotonic()
    tick = start
    while tick - start < duration:
        seq = (seq + 1) & 0xFFFF
        hi, lo = seq >> 8, seq & 0xFF
        for send, pkt in pairs:
            pkt[2] = hi
            pkt[3] = lo
            send(pkt)
        sent += len(pairs)
        tick += interval
        pause = tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    cpu = time.process_time() - c0
    json.dump({"sent": sent, "cpu_s": cpu, "send": how}, sys.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description="send-floor child (started by basement bench)")
    ap.add_argument("--pps", type=float, required=True)
    ap.add_argument("--duration", type=float, required=True)
    args = ap.parse_args()
    _child(args.pps, args.duration)


if __name__ == "__main__":
    main()
