"""The WebSocket writer (signalling/protocol/app.py `Connection.writer`): what leaves, in order, and
a room event (`sfu.api.Broadcast`) encoded once for all its recipients."""

from __future__ import annotations

import json

from sfu.api import Broadcast
from signalling.protocol import app


async def test_the_writer_sends_a_broadcasts_text_it_encoded_once(monkeypatch):
    class Ws:
        closed = False

        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send_str(self, text: str) -> None:
            self.sent.append(text)

        async def close(self, **kw) -> None:
            self.closed = True

    encodings = []
    real = json.dumps
    monkeypatch.setattr(app.json, "dumps", lambda obj, **kw: encodings.append(obj) or real(obj, **kw))
    event = Broadcast({"type": "participant_left", "participant": "PA_x", "reason": "left"})
    conns = [app.Connection(Ws(), rooms=None) for _ in range(3)]  # type: ignore[arg-type]
    for c in conns:
        c.out.put(event)
        c.out.put({"type": "pong"})
        c.out.end()
        await c.writer()
    assert [c.ws.sent for c in conns] == [[real(event), '{"type": "pong"}']] * 3
    assert encodings.count(event) == 1


async def test_messages_handed_over_from_another_replica_go_first_and_are_never_merged():
    from signalling.protocol.rooms import SendQueue

    q = SendQueue()
    q.put({"type": "track_muted", "track": "t", "muted": True})
    q.prepend([{"type": "participant_joined", "participant": {"id": "x"}},
               {"type": "track_muted", "track": "t", "muted": False}])
    # a newer state event is not merged across them
    q.put({"type": "track_muted", "track": "t", "muted": None})
    got = [await q.get() for _ in range(q.qsize())]
    assert [m.get("muted") for m in got] == [None, False, True, None]
    q.put({"type": "pong"})
    q.end()
    assert q.drain() == [{"type": "pong"}] and q.qsize() == 0
