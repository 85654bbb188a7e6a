"""One aiortc participant in a process of its own, as people run aiortc bots.

Run as `python -m tests.support.aiortc_bot URL ROOM NAME`: it joins ROOM, publishes a Tone and a
CounterVideo, decodes every remote video it is sent, and answers commands on stdin with one JSON
line each on stdout:

* `status` -> {"index": frames its video has produced, "sinks": {track id: {"participant",
  "frames", "sizes" seen since the previous status}}, "paused": the `paused` events it got,
  "subscriber_sdp": its subscriber answer}
* `quit` -> closes and exits.

Why a process each: four aiortc clients and the server in one interpreter share one GIL and one
event loop, which then runs near a whole core; any other load stalls it long enough for the
kernel to drop datagrams at full socket buffers (CI: RcvbufErrors, 5-23 % receiver-reported loss,
224 of 300 frames decoded). That is the test harness failing, not the SFU.

`Bot` is the parent side.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


async def _serve(url: str, room: str, name: str, width: int, height: int) -> None:
    from sfu import transport
    from signalling.protocol.client import Client
    from tests.support.media import CounterVideo, Sink, Tone

    # aioice leaves loopback out; the tests have nothing else, unless the bot runs at the far end of
    # an emulated link (tests/support/netns.py), which names its address
    transport.configure_ice([os.environ.get("BASEMENT_BOT_ICE", "127.0.0.1")])

    client = Client(url)
    sinks: dict[str, tuple[dict[str, Any], Sink, list[int]]] = {}  # track -> (info, sink, [timeline mark])

    def on_track(info: dict[str, Any], track: Any) -> None:
        if info["kind"] == "video":
            sinks[info["track"]] = (info, Sink(track), [0])

    client.on_track = on_track
    video = CounterVideo(width, height)
    await client.connect()
    await client.join(room, name)
    await client.publish(audio=Tone(), video=video)

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    emit({"participant": client.participant, "published": client.published})
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "status":
            report = {}
            for tid, (info, sink, mark) in sinks.items():
                sizes = sorted({(w, h) for _, w, h in sink.timeline[mark[0]:]})
                mark[0] = len(sink.timeline)
                report[tid] = {"participant": info["participant"], "frames": sink.frames, "sizes": sizes}
            sub = client.subscriber
            emit({"index": video.index, "sinks": report, "resumes": client.resumes,
                  "left": [m for m in client.messages if m.get("type") == "participant_left"],
                  "paused": [m for m in client.messages if m.get("type") == "paused" and m.get("paused")],
                  "subscriber_sdp": sub.localDescription.sdp if sub and sub.localDescription else ""})
        else:  # "quit", or the parent went away (EOF)
            break
    for _, sink, _ in sinks.values():
        sink.stop()
    await client.close()


class Bot:
    """The parent's handle on one bot process."""

    def __init__(self, proc: asyncio.subprocess.Process, hello: dict[str, Any]) -> None:
        self.proc = proc
        self.participant: dict[str, Any] = hello["participant"]
        self.published: dict[str, str] = hello["published"]

    @classmethod
    async def start(cls, url: str, room: str, name: str, width: int, height: int,
                    timeout: float = 30.0, prefix: list[str] | None = None, ice: str = "127.0.0.1") -> Bot:
        """`prefix`: a command the bot runs under (e.g. `netns.Link.command()`), `ice` the address it
        gathers candidates on."""
        proc = await asyncio.create_subprocess_exec(
            *(prefix or []), sys.executable, "-m", "tests.support.aiortc_bot", url, room, name, str(width),
            str(height), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
            env={**os.environ, "BASEMENT_BOT_ICE": ice,
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"bot {name} exited before joining (code {await proc.wait()})")
            return cls(proc, json.loads(line))
        except BaseException:
            proc.kill()
            await proc.wait()
            raise

    async def status(self, timeout: float = 10.0) -> dict[str, Any]:
        self.proc.stdin.write(b"status\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"bot {self.participant['name']} exited (code {await self.proc.wait()})")
        return json.loads(line)

    async def stop(self, timeout: float = 10.0) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.stdin.write(b"quit\n")
                await self.proc.stdin.drain()
                await asyncio.wait_for(self.proc.wait(), timeout)
            except (TimeoutError, ConnectionError):
                self.proc.kill()
                await self.proc.wait()


if __name__ == "__main__":
    url, room, name, w, h = sys.argv[1:6]
    asyncio.run(_serve(url, room, name, int(w), int(h)))
