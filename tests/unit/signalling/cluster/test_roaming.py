"""Roaming (signalling/cluster/roaming.py) takes hostile input from the bus and the store without
crashing or handing anything over: a malformed handover request or resume record is refused."""

from __future__ import annotations

import pytest

from signalling.cluster.bus import MemoryBus, MemoryHub
from signalling.cluster.placement import Placer
from signalling.cluster.registry import Registry
from signalling.cluster.remote import RemoteNode
from signalling.cluster.roaming import Roaming, digest, record_key
from signalling.cluster.store import MemoryStore
from signalling.protocol.messages import ProtocolError
from signalling.protocol.rooms import RoomManager


@pytest.fixture
def roaming():
    store = MemoryStore()
    bus = MemoryBus(MemoryHub(), "replica:r1")
    remote = RemoteNode("r1", bus, Placer(store, Registry(store)), lambda pid, msg: None)
    r = Roaming("r1", bus, store, remote, Registry(store, "replica"))
    RoomManager(remote, resume_grace_s=20.0, roaming=r)
    return r


@pytest.mark.parametrize("body, code", [
    (None, "unknown_op"), ([], "unknown_op"), ({"op": "leave"}, "unknown_op"),
    ({"op": "handover"}, "bad_request"), ({"op": "handover", "pid": 1, "digest": "s", "n": 0}, "bad_request"),
    ({"op": "handover", "pid": "PA_x", "digest": "s", "n": "0"}, "bad_request"),
    ({"op": "handover", "pid": "PA_x", "secret": "s", "n": 0}, "bad_request"),  # a secret never travels
    ({"op": "handover", "pid": "PA_x", "digest": "s", "n": 0}, "resume_failed"),  # nobody of ours
])
async def test_a_malformed_or_unknown_handover_is_refused(roaming, body, code):
    with pytest.raises(ProtocolError) as e:
        await roaming.handle(body)
    assert e.value.code == code
    assert roaming.stats["handed_over"] == 0


GOOD = {"replica": "r2", "node": "n1", "room": "r", "name": "bob", "identity": "guest-1", "pub": True,
        "sub": True, "digests": [digest("secret")]}


@pytest.mark.parametrize("record", [
    None, "text", [], {**GOOD, "digests": "abc"}, {**GOOD, "digests": [1]}, {**GOOD, "pub": "yes"},
    {**GOOD, "node": None}, {k: v for k, v in GOOD.items() if k != "room"},
    {**GOOD, "digests": [digest("other")]},  # well-formed, but not this token
    {**GOOD, "replica": "r1"},  # names this replica, which no longer holds it
])
async def test_a_record_that_is_malformed_or_does_not_match_refuses_the_resume(roaming, record):
    if record is not None:
        await roaming.store.set(record_key("PA_x"), record)
    with pytest.raises(ProtocolError) as e:
        await roaming.resume("PA_x", "secret", 0)
    assert e.value.code == "resume_failed"
    assert roaming.rooms.participants == {} and roaming.remote.placements == {}
