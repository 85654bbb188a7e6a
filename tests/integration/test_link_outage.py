"""A participant's network goes dark for 3 s and comes back: the call carries on by itself.

The subscriber is an aiortc bot in a network namespace of the test's own, reached over a veth pair
(tests/support/netns.py); for 3 s that link loses every packet both ways — media, ICE consent
checks and the signalling TCP connection alike — and then works again.
"""

from __future__ import annotations

import asyncio
import time

from signalling.protocol.client import Client
from tests.support.aiortc_bot import Bot
from tests.support.media import CounterVideo, Sink, Tone
from tests.support.netns import CLIENT_IP, SERVER_IP, Link

OUTAGE_S = 3.0
RECOVERY_S = 3.0  # issue 18: media resumes within 3 s of the link coming back


async def _frames(bot: Bot, track: str) -> int:
    return (await bot.status())["sinks"].get(track, {}).get("frames", 0)


async def test_media_resumes_within_3_s_of_a_3_s_outage(make_server):
    link = Link().start()
    alice = bob = None
    try:
        # the server listens and gathers on the link's address; loopback too, for alice in this namespace
        server = await make_server(host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"])
        url = f"http://{SERVER_IP}:{server.port}"
        alice = Client(url)
        await alice.connect()
        await alice.join("dark", "alice")
        await alice.publish(audio=Tone(), video=CounterVideo())
        bob = await Bot.start(url, "dark", "bob", 320, 240, prefix=link.command(), ice=CLIENT_IP)
        video = alice.published["video"]
        _, bob_video = await alice.wait_track(kind="video", participant=bob.participant["id"], timeout=30)
        from_bob = Sink(bob_video)
        deadline = time.monotonic() + 30
        while await _frames(bob, video) < 30:
            assert time.monotonic() < deadline, "bob never decoded alice's video"
            await asyncio.sleep(0.2)
        await from_bob.wait_frames(30)

        await link.outage(OUTAGE_S)
        back = time.monotonic()
        # recovered: both directions decode steadily again, i.e. at least 4 new frames (of the 7.5
        # sent) in each of 3 consecutive quarter seconds; frames left in a jitter buffer that come
        # out at once at the link's return are not a recovery
        samples: list[tuple[float, int, int]] = [(back, await _frames(bob, video), from_bob.frames)]
        while True:
            await asyncio.sleep(0.25)
            samples.append((time.monotonic(), await _frames(bob, video), from_bob.frames))
            last = samples[-4:]
            if len(last) == 4 and all(b[1] - a[1] >= 4 and b[2] - a[2] >= 4 for a, b in zip(last, last[1:])):
                break
            assert samples[-1][0] - back < RECOVERY_S + 0.75, (
                f"no steady video within {RECOVERY_S} s of the link's return: (s, frames decoded by bob of "
                f"alice, by alice of bob) {[(round(t - back, 2), a, b) for t, a, b in samples]}")
        recovered = last[0][0] - back  # when the steady run began
        print(f"media steady {recovered:.2f} s after the link came back")
        assert recovered < RECOVERY_S, samples
        await asyncio.sleep(0.5)
        status = await bob.status()  # (sizes: those decoded since the previous status)
        # the same call: nobody left, the server still holds both, sizes as sent
        assert status["left"] == [] and not [m for m in alice.messages if m.get("type") == "participant_left"]
        assert set(server.node.peers) == {alice.participant["id"], bob.participant["id"]}
        assert status["sinks"][video]["sizes"] == [[320, 240]]
    finally:
        if bob is not None:
            await bob.stop()
        if alice is not None:
            await alice.close()
        link.stop()
