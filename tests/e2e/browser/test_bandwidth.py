"""A Chromium subscriber behind a narrow link gets the simulcast layer that fits, from the SFU's own
send-side estimate (transport-wide feedback, sfu.estimator, probes from sfu.prober), and follows the
link as it widens and narrows (issue #15's rate-limit acceptance).

The subscriber runs in a network namespace of the test's own (tests/support/netns.py); the SFU's
side of the veth pair is rate-limited with a token bucket (`Link.limit`), so everything the SFU sends
it crosses that bottleneck, as on an access link. The publisher is a Chromium on loopback with three
VP8 layers; Chromium's fake camera gives about q 240x135 ~100 kbit/s, h 480x270 ~300 kbit/s and
f 960x540 ~650 kbit/s here, so behind 600 kbit/s h is the layer that fits and behind 300 kbit/s q.

Samples every 0.25 s: the page's decoded width and frame count (a freeze is a second without a new
frame), and the layer the SFU forwards. What the run looked like is printed on failure.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.netns import SERVER_IP, Link
from tests.support.servers import native_only

pytestmark = pytest.mark.timeout(180)

H_WIDTH, F_WIDTH = 480, 960
SAMPLE_S = 0.25


class Watch:
    """The subscriber page and the SFU side of its video, sampled over time."""

    def __init__(self, server, page) -> None:
        self.server, self.page = server, page
        # (t, width, frames, SFU's layer, estimate, (probes, acked, loss, trendline state))
        self.samples: list[tuple] = []
        self.started = time.monotonic()

    async def sample(self) -> tuple:
        stats = await self.page.evaluate("window.basement.stats()")
        video = next((s for s in stats["inbound"] if s.get("kind") == "video"), {})
        dts = [dt for p in self.server.node.peers.values() for dt in p.downtracks.values() if dt.is_video]
        dt = dts[0] if dts else None
        transport = dt.transport if dt else None
        est = transport.estimator if transport else None
        row = (round(time.monotonic() - self.started, 2), video.get("frameWidth") or 0,
               video.get("framesDecoded") or 0, dt.current.rid if dt and dt.current else None,
               dt.estimate_bps if dt else 0,
               est and (transport.prober.probes, round(est.acked_bps()), round(est.loss, 2), est.state))
        self.samples.append(row)
        return row

    async def until(self, check, seconds: float) -> float | None:
        """Sample until `check(row)` holds (its time) or `seconds` pass (None)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            row = await self.sample()
            if check(row):
                return row[0]
            await asyncio.sleep(SAMPLE_S)
        return None

    async def run(self, seconds: float) -> None:
        await self.until(lambda row: False, seconds)

    def freezes(self, since: float, until: float) -> list[tuple[float, float]]:
        """Stretches of a second or more between `since` and `until` in which no frame was decoded."""
        rows = [r for r in self.samples if since <= r[0] <= until]
        out, last_new = [], rows[0][0] if rows else since
        for prev, row in zip(rows, rows[1:]):
            if row[2] > prev[2]:
                if row[0] - last_new >= 1.0 + SAMPLE_S:  # (a sample's resolution)
                    out.append((last_new, row[0]))
                last_new = row[0]
        return out

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self.samples)


@native_only
async def test_behind_a_narrow_link_the_layer_that_fits_then_up_when_it_widens_down_when_it_narrows(
        make_server, browser):
    link = Link().start()
    try:
        server = await make_server(host=SERVER_IP, ice_addresses=[SERVER_IP, "127.0.0.1"])
        publisher = await browser(server, "bw", "chromium", audio="0")
        video = (await publisher.wait_for("window.basement.published.video && window.basement.published"))["video"]
        link.limit(600_000)
        page = await browser(server, "bw", "watcher", audio="0", camera="0", prefix=link.command())
        await page.wait_for("window.basement.participant")
        await page.evaluate(f"window.basement.send({{type: 'subscription', track: '{video}', layer: 'high'}})")
        watch = Watch(server, page)

        # 600 kbit/s: h, within 5 s of the first frame, and no freeze
        first = await watch.until(lambda r: r[2] > 0, 20)
        assert first is not None, f"no frame decoded behind 600 kbit/s\n{watch}"
        await watch.run(12)
        narrow_end = watch.samples[-1][0]
        on_h = [r for r in watch.samples if first + 5 <= r[0] <= narrow_end]
        assert on_h and all(r[1] == H_WIDTH for r in on_h), f"not settled on h from {first + 5} s\n{watch}"
        assert not watch.freezes(first, narrow_end), f"froze: {watch.freezes(first, narrow_end)}\n{watch}"

        # 5 Mbit/s: f within 10 s
        link.limit(5_000_000)
        widened = watch.samples[-1][0]
        up = await watch.until(lambda r: r[1] == F_WIDTH, 10)
        assert up is not None, f"not on f within 10 s of the link widening at {widened} s\n{watch}"
        await watch.run(2)

        # 300 kbit/s: the SFU switches down within 2 s (the first packet of a lower layer's key frame
        # forwarded), and the page decodes below f within 4 s: the key frame crosses a bottleneck
        # whose queue is still full of f, and what it loses there is NACKed and resent
        link.limit(300_000)
        narrowed = watch.samples[-1][0]
        switched = await watch.until(lambda r: r[3] not in (None, "f"), 2)
        assert switched is not None, f"the SFU still forwards f 2 s after the link narrowed at {narrowed} s\n{watch}"
        decoded = await watch.until(lambda r: 0 < r[1] < F_WIDTH, 4 - (switched - narrowed))
        assert decoded is not None, f"the page decodes f 4 s after the link narrowed at {narrowed} s\n{watch}"
        print(f"first frame {first} s, f {up - widened:.2f} s after widening, down {switched - narrowed:.2f} s "
              f"(SFU) / {decoded - narrowed:.2f} s (decoded) after narrowing")
        # the estimate it all came from is the SFU's own: transport-wide feedback reached the estimator
        peer = next(p for p in server.node.peers.values() if p.downtracks)
        assert peer.subscriber.estimator is not None and peer.subscriber.prober.probes >= 1
    finally:
        link.stop()
