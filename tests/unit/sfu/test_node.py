"""SfuNode's room events (one object per event for the whole room, encoded once by the writer) and
its count of leaves by reason."""

from __future__ import annotations

import json
from types import SimpleNamespace

from sfu.api import Broadcast
from sfu.metrics import STATS, media_registry
from sfu.node import SfuNode
from tests.support import packets as P
from tests.unit.sfu import rig


async def test_a_room_event_is_one_broadcast_object_for_every_participant():
    got: list[tuple[str, dict]] = []
    node = SfuNode(lambda pid, msg: got.append((pid, msg)))
    try:
        for pid in ("PA_a", "PA_b", "PA_c"):
            await node.join("room", pid, pid[-1])
        joined = [(pid, m) for pid, m in got if m["type"] == "participant_joined"
                  and m["participant"]["id"] == "PA_c"]
        assert [pid for pid, _ in joined] == ["PA_a", "PA_b"]
        first, second = (m for _, m in joined)
        assert first is second and isinstance(first, Broadcast) and first.encoded is None
        assert json.loads(json.dumps(first)) == {"type": "participant_joined",
                                                  "participant": {"id": "PA_c", "name": "c", "identity": ""}}
    finally:
        await node.close()



async def test_leaves_are_counted_by_reason_and_a_removal_text_is_not_a_label():
    node = SfuNode(lambda pid, msg: None)
    registry = media_registry(STATS)

    def left(reason: str) -> float:
        return registry.get_sample_value("basement_participants_left_total", {"reason": reason}) or 0.0

    before = {r: left(r) for r in ("left", "disconnected", "removed", "server_shutdown")}
    try:
        for pid in ("PA_a", "PA_b", "PA_c", "PA_d"):
            await node.join("room", pid, pid[-1])
        await node.leave("PA_a", "left")
        await node.leave("PA_b", "disconnected")
        await node.leave("PA_c", "no longer qualifies for this room: balance 0 < 1")
        await node.leave("PA_c", "left")  # already gone: not counted again
    finally:
        await node.close()  # PA_d
    assert {r: left(r) - before[r] for r in before} == {"left": 1, "disconnected": 1, "removed": 1,
                                                       "server_shutdown": 1}
    assert all("qualifies" not in str(s.labels) for m in registry.collect() for s in m.samples)


def test_video_downtracks_waiting_for_a_key_frame_are_a_gauge_by_layer():
    """A subscriber that starts, or switches layer, gets nothing new until that layer's key frame: the
    node says how many wait (the bench tells a stall from a wait with it)."""
    ingress, rec, pub = rig.publish("VP8", ssrcs=[(0x1111, "media")])
    waiting, _ = rig.subscribe(rec)
    waiting.set_target(rec.layers[""])
    idle, _ = rig.subscribe(rec)  # no target yet: not waiting for anything
    node = SfuNode(lambda pid, msg: None)
    node.peers = {"PA_sub": SimpleNamespace(tracks=[], downtracks={"a": waiting, "b": idle})}
    gauges = {name: series for name, _, _, series in node.labelled_gauges()}
    assert gauges["downtracks_waiting"] == {"single": 1}
    ingress.on_rtp(P.rtp(96, 1, 0, 0x1111, P.vp8_payload(keyframe=True, picture_id=1, tl0picidx=0, tid=0,
                                                        layer_sync=False)), 1.0)
    gauges = {name: series for name, _, _, series in node.labelled_gauges()}
    assert gauges["downtracks_waiting"] == {} and gauges["downtracks_forwarding"] == {"single": 1}
