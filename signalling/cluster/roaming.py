"""Roaming: a participant resumed through another signalling replica than the one it joined through.

Behind a Service a reconnecting client lands on any replica, and the one it came through may have
died (that is often why it reconnects). The participant itself lives on its media node, which
outlives the replica; what the replica held was the socket, the resume token and the numbered
messages written to the client (`Replay`).

- Every replica writes, for each participant it serves, a record `resume:<pid>` in the store: where
  it is (replica, node, room), who it is (name, identity, permissions) and SHA-256 digests of the
  resume secrets it accepts. The secrets themselves never leave the replica that issued them (nor
  does the token a client presents: replicas pass on its digest).
- A replica asked to resume a participant it does not have reads the record, checks the token
  against the digests, asks the node to `adopt` the participant (its events come here from now on),
  and then asks the replica of the record to `handover`: that one gives up the participant without
  a leave and returns the messages after the client's `n`, those still queued and how many client
  messages it read. Nothing is lost, nothing arrives twice, as with a resume on the same replica.
- When that replica is dead (or does not answer within `HANDOVER_TIMEOUT_S`), what it held is gone.
  The resume still keeps the participant (no leave or join for the room, its media never stopped),
  and `resumed` says so: `received` is null (the client cannot know which of its messages were read)
  and `resync` carries the room as it is now (participants and tracks). A subscribe offer still
  waiting for its answer is sent again by the node.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from signalling.cluster.bus import Bus, RemoteError
from signalling.cluster.registry import Registry
from signalling.cluster.remote import Placement, RemoteNode, replica_channel
from signalling.cluster.store import Store
from signalling.protocol.edge import EDGE_STATS
from signalling.protocol.messages import ProtocolError
from signalling.protocol.rooms import Participant, RoomManager

log = logging.getLogger("basement.cluster.roaming")

RECORD_TTL_S = 24 * 3600.0  # a backstop: records go when their participant leaves
HANDOVER_TIMEOUT_S = 3.0


def record_key(participant_id: str) -> str:
    return f"resume:{participant_id}"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _failed(message: str) -> ProtocolError:
    return ProtocolError("resume_failed", message)


def _unknown() -> ProtocolError:
    EDGE_STATS.resume["unknown_token"] += 1
    return _failed("unknown, used or expired resume token: join again")


class Roaming:
    def __init__(self, replica_id: str, bus: Bus, store: Store, remote: RemoteNode, replicas: Registry) -> None:
        self.id = replica_id
        self.bus = bus
        self.store = store
        self.remote = remote
        self.replicas = replicas
        self.rooms: RoomManager | None = None  # set by RoomManager(roaming=...)
        self.stats = {"handed_over": 0, "taken_over": 0, "resynced": 0}

    async def start(self) -> None:
        await self.bus.serve(self.bus.inbox, self.handle)

    # --- the record ----------------------------------------------------------------------------
    async def issued(self, p: Participant) -> None:
        """`p` has a new resume secret (joined or resumed here): say where it is and what it accepts."""
        placement = self.remote.placements.get(p.id)
        if placement is None:
            return
        record = {"replica": self.id, "node": placement.node, "room": p.room, "name": p.name,
                  "identity": p.identity, "pub": p.can_publish, "sub": p.can_subscribe,
                  "digests": [digest(s) for s in (p.resume_secret, p.previous_secret) if s]}
        await self.store.set(record_key(p.id), record, ttl=RECORD_TTL_S)

    async def left(self, participant_id: str) -> None:
        await self.store.delete(record_key(participant_id))

    # --- the replica the client came back to ------------------------------------------------------
    async def resume(self, participant_id: str, secret: str, n: int) -> tuple[Participant, dict[str, Any], list[str]]:
        assert self.rooms is not None
        record: Any = await self.store.get(record_key(participant_id))
        if not _sane(record) or not any(hmac.compare_digest(digest(secret), d) for d in record["digests"]):
            raise _unknown()
        owner = record["replica"]
        if owner == self.id:  # ours, and no longer here: it left
            raise _unknown()
        p = self.rooms.adopted(participant_id, record["room"], record["name"], record["identity"],
                               record["pub"], record["sub"])
        self.remote.placements[participant_id] = Placement(record["room"], record["node"])
        try:
            state = await self.remote.adopt(participant_id)
        except Exception as e:
            self._drop(p)
            EDGE_STATS.resume["unknown_token"] += 1
            raise _failed(f"this participant is no longer in its room ({getattr(e, 'message', e)}): join again") \
                from None
        handed: Any = None
        if owner in await self.replicas.live():
            try:
                handed = await self.bus.request(replica_channel(owner), {
                    "op": "handover", "pid": participant_id, "digest": digest(secret), "n": n}, HANDOVER_TIMEOUT_S)
            except RemoteError as e:
                if e.code == "resume_failed":  # the owner said no (and ended the participant)
                    self._drop(p)
                    raise _failed(e.message) from None
                log.warning("replica %s did not hand %s over (%s): resuming from the node's state",
                            owner, participant_id, e.code)
        if isinstance(handed, dict) and _sane_handover(handed, n):
            assert p.replay is not None
            p.replay.restore(handed["n"], [(seq, text) for seq, text in handed["held"]])
            p.received = handed["received"]
            p.queue.prepend(handed["queued"])
            self.stats["taken_over"] += 1
            log.info("%s resumed here; replica %s handed it over", participant_id, owner)
            resumed, replay = await self.rooms.resumed(p), [text for _, text in handed["held"]]
            return p, resumed, replay
        assert p.replay is not None
        p.replay.restore(n, [])  # numbering carries on after what the client read
        self.stats["resynced"] += 1
        log.info("%s resumed here; its replica %s is gone: resyncing from node %s",
                 participant_id, owner, record["node"])
        resumed = await self.rooms.resumed(p)
        resumed.update(received=None, resync={"participants": state["participants"], "tracks": state["tracks"]})
        return p, resumed, []

    def _drop(self, p: Participant) -> None:
        """Undo an adoption that did not happen (no leave: the participant is not ours to end)."""
        assert self.rooms is not None
        self.rooms.participants.pop(p.id, None)
        self.remote.placements.pop(p.id, None)
        p.close()

    # --- the replica the client left --------------------------------------------------------------
    async def handle(self, body: Any) -> Any:
        if not isinstance(body, dict) or body.get("op") != "handover":
            raise ProtocolError("unknown_op", "a replica answers only {op: handover}")
        pid, presented, n = body.get("pid"), body.get("digest"), body.get("n")
        if not isinstance(pid, str) or not isinstance(presented, str) or not isinstance(n, int):
            raise ProtocolError("bad_request", "handover: pid and digest must be strings, n an integer")
        assert self.rooms is not None
        handed = await self.rooms.hand_over(pid, lambda known: hmac.compare_digest(digest(known), presented), n)
        self.remote.placements.pop(pid, None)  # not ours any more; the node already sends its events there
        self.stats["handed_over"] += 1
        return handed


def _sane(record: Any) -> bool:
    return (isinstance(record, dict) and all(isinstance(record.get(k), str) for k in ("replica", "node", "room",
                                                                                      "name", "identity"))
            and isinstance(record.get("pub"), bool) and isinstance(record.get("sub"), bool)
            and isinstance(record.get("digests"), list) and all(isinstance(d, str) for d in record["digests"]))


def _sane_handover(handed: dict[str, Any], n: int) -> bool:
    held, queued = handed.get("held"), handed.get("queued")
    if not (isinstance(handed.get("n"), int) and isinstance(handed.get("received"), int)
            and isinstance(held, list) and isinstance(queued, list)):
        return False
    if not all(isinstance(h, list | tuple) and len(h) == 2 and isinstance(h[0], int) and isinstance(h[1], str)
               for h in held):
        return False
    # consecutive numbers from n + 1 to the last one written
    return [h[0] for h in held] == list(range(n + 1, handed["n"] + 1)) and all(isinstance(m, dict) for m in queued)

