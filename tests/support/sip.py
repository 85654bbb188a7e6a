"""SIP in tests: sipp (Debian's sip-tester) placing calls, a G.711 tone it plays from a pcap file,
an RTP recorder for what the gateway sends the phone, and the tone's frequency found again.

The G.711 μ-law here is written from ITU-T G.711's formulas, independently of the gateway (PyAV's
codec): a test of the gateway's audio does not share its encoder.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
from pathlib import Path

import numpy as np

SIPP = shutil.which("sipp")  # make test installs it (system-deps); never skipped
BIAS, CLIP = 0x84, 32635


def ulaw_encode(samples: np.ndarray) -> bytes:
    x = samples.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), CLIP) + BIAS
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    mag = (((mantissa << 3) + BIAS) << exponent) - BIAS
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def tone(freq: float, seconds: float, rate: int = 8000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 32767 * amplitude).astype(np.int16)


def dominant(samples: np.ndarray, rate: int) -> float:
    """The frequency with the most energy (Hz), over a Hann window."""
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate / len(samples))


def write_pcap(path: Path, payloads: list[bytes], pt: int = 0, ptime_ms: int = 20) -> None:
    """RTP packets (one payload each, 20 ms apart) as a libpcap file sipp plays (Ethernet, IPv4,
    UDP): sipp sends their RTP at their timestamps from its media port to the port the answer names."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, payload in enumerate(payloads):
        rtp = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | pt, 1000 + i, 160 * i, 0x5157A11) + payload
        udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
        usec = i * ptime_ms * 1000
        out.append(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def dial_scenario(pcap: Path, hold_ms: int, display: str = "Phone Caller") -> str:
    """A sipp UAC: INVITE sip:[service]@… offering PCMU with its media at [rtp_port] (-key), ACK,
    the pcap played, `hold_ms` of call, BYE."""
    who = f'"{display}" <sip:caller@[local_ip]:[local_port]>;tag=[call_number]'
    head = ("Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
            f"From: {who}\n")
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="dial a room, play a tone, hang up">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{head}To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:caller@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [rtp_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20

]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{head}To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{head}To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" crlf="true"/>
</scenario>
"""


async def run_sipp(cwd: Path, scenario: str, target: str, service: str, sip_port: int, media_port: int,
                   keys: dict[str, str], transport: str = "udp", timeout: float = 60.0) -> tuple[int, str]:
    """One call of `scenario` to `target` (host:port) over `transport` (udp, tcp); (sipp's exit code,
    its error log and screen)."""
    assert SIPP, "sipp (Debian sip-tester) is missing: make test installs it"
    sf = cwd / "scenario.xml"
    sf.write_text(scenario)
    args = [SIPP, target, "-sf", str(sf), "-s", service, "-m", "1", "-i", "127.0.0.1", "-p", str(sip_port),
            "-mp", str(media_port), "-t", {"udp": "u1", "tcp": "t1"}[transport], "-nostdin", "-trace_err",
            "-trace_screen", "-timeout", f"{int(timeout)}s"]
    for k, v in keys.items():
        args += ["-key", k, v]
    proc = await asyncio.create_subprocess_exec(*args, cwd=cwd, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout + 10)
    return proc.returncode or 0, err.decode(errors="replace")[-2000:] + _logs(cwd)


def _logs(cwd: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(cwd.glob("scenario_*_*.log")))


class Recorder(asyncio.DatagramProtocol):
    """What arrives at the phone's RTP port: (payload type, sequence number, payload) in order."""

    def __init__(self) -> None:
        self.packets: list[tuple[int, int, bytes]] = []
        self.sources: set[tuple[str, int]] = set()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        if len(data) >= 12:
            self.sources.add(addr)
            self.packets.append((data[1] & 0x7F, struct.unpack_from("!H", data, 2)[0], data[12:]))
