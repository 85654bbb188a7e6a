"""End-to-end encryption in tests: the server's relay of e2ee messages played between key providers
(`Room`), a wallet's signer, and the frames a Python client receives as the SFU forwarded them."""

from __future__ import annotations

from typing import Any

from eth_account.messages import encode_defunct

from signalling.e2ee.keys import Outgoing
from signalling.protocol.client import Client

NOW = 1_800_000_000.0


def signer(account):
    """The EIP-191 personal_sign of `account`, as a wallet answers it."""
    return lambda text: "0x" + account.sign_message(encode_defunct(text=text)).signature.hex()


class Room:
    """Relays e2ee messages between key providers (Python ones, or proxies of JavaScript ones with
    the same methods) as the server relays data messages: each stamped with its sender's
    participant id and signed-in identity, to the room or to the participants named."""

    def __init__(self) -> None:
        self.members: dict[str, tuple[Any, str]] = {}  # participant id -> (provider, identity)
        self.now = NOW

    def join(self, pid: str, keys: Any, identity: str) -> Any:
        self.members[pid] = (keys, identity)
        self.deliver(pid, keys.start("room", pid, self.now))
        return keys

    def leave(self, pid: str) -> None:
        del self.members[pid]
        for other, (keys, _) in list(self.members.items()):
            self.deliver(other, keys.on_left(pid, self.now))

    def deliver(self, sender: str, out: list[Outgoing], identity: str | None = None) -> None:
        """`out` from `sender`; `identity`: stamp this one instead of the sender's (a lying server)."""
        queue = [(sender, o, identity) for o in out]
        while queue:
            frm, o, ident = queue.pop(0)
            stamped = ident or self.members[frm][1]
            for pid, (keys, _) in list(self.members.items()):
                if pid != frm and (o.to is None or pid in o.to):
                    msg = {"type": "data", "from": frm, "identity": stamped, "topic": o.topic, "data": o.text}
                    queue.extend((pid, reply, None) for reply in keys.on_message(msg, self.now))

    def tick(self, seconds: float) -> None:
        self.now += seconds
        for pid, (keys, _) in list(self.members.items()):
            self.deliver(pid, keys.tick(self.now))


def record_video(client: Client) -> list[bytes]:
    """The video frames `client` puts together from what the SFU forwarded, kept as they came
    (before any decryption or decoding): for looking at the bytes. Set before its first offer."""
    seen: list[bytes] = []

    def applied(pc) -> None:
        for t in pc.getTransceivers():
            if t.kind == "video" and not getattr(t.receiver, "recorded", False):
                t.receiver.recorded = True
                attr = "_RTCRtpReceiver__decoder_queue"
                setattr(t.receiver, attr, _Recording(getattr(t.receiver, attr), seen))

    client.on_offer_applied = applied
    return seen


class _Recording:
    """A receiver's decoder queue that keeps what the jitter buffer completes, then passes it on."""

    def __init__(self, inner, seen: list[bytes]) -> None:
        self.inner, self.seen = inner, seen

    def put(self, item, *args, **kwargs):
        if item is not None:
            self.seen.append(bytes(item[1].data))
        self.inner.put(item, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)
