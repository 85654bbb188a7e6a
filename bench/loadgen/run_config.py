"""What a bench run is asked to do: the scenarios and a run's settings. Kept apart from the load
generator (`scenario`), which imports aiortc, so that `basement` can list the bench's arguments
without it."""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS = {
    # name: (default publishers, audio, video, simulcast wanted, publishers also subscribe)
    "audio": (10, True, False, False, False),
    "meeting": (0, True, True, True, True),
    "livestream": (1, True, True, False, False),
}


@dataclass
class RunConfig:
    scenario: str = "livestream"
    subscribers: int = 20
    publishers: int | None = None
    duration: float = 20.0
    warmup: float = 2.0
    simulcast: bool | None = None  # None: the scenario's default where the target supports it
    probe_every: int = 8
    pacing: float = 0.0  # 0: each video frame leaves in one burst; 2.5: paced like libwebrtc
    join_concurrency: int = 4
    setup_timeout: float = 60.0
    wire_latency: bool = False  # time what the SFU adds on the wire (bench.loadgen.wire); needs CAP_NET_RAW
    rooms: int = 1  # copies of the scenario, each in a room of its own (N subscribers each)
