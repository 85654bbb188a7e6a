"""SfuNode's room events: one object per event for the whole room, encoded once by the writer."""

from __future__ import annotations

import json

from sfu.api import Broadcast
from sfu.node import SfuNode


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

