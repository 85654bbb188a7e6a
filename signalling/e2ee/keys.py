"""Where a client's SFrame keys come from (docs/e2ee.md "Keys"): a `KeyProvider` gives the key to
encrypt with now and the Keyring to decrypt with, and turns the room's e2ee messages into the ones
to send. Two providers:

- `PassphraseKeys`: every sender's key derived from one passphrase and the room. Not identity-bound.
- `WalletKeys`: each sender's key random, sent wrapped to each recipient whose wallet-signed
  announcement (signalling.e2ee.announce) checked out; a new key whenever someone leaves, and on a
  timer. A key the server or another member slips in is refused.

Both are sans-IO: messages in, messages out (`Outgoing`: topic, text, recipients or None for the
room), and a clock passed in. The client carries the messages as data messages (topic `e2ee/…`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from signalling.e2ee import announce
from signalling.e2ee.sframe import Keyring, SendKey

ANNOUNCE_TOPIC = "e2ee/announce"
KEY_TOPIC = "e2ee/key"
PBKDF2_ITERATIONS = 200_000
ANNOUNCEMENT_LIFETIME_S = 12 * 3600
REKEY_EVERY_S = 600.0  # WalletKeys: a new key at least this often
SWITCH_AFTER_S = 1.0  # a new key is sent first and used this long after, so receivers have it


@dataclass(frozen=True)
class Outgoing:
    topic: str
    text: str
    to: list[str] | None = None  # None: the whole room


def sender_prefix(participant_id: str) -> int:
    """24 bits of a hash of a participant id: the high part of each of its KIDs."""
    return int.from_bytes(hashlib.sha256(participant_id.encode()).digest()[:3], "big")


def kid_of(participant_id: str, epoch: int = 0) -> int:
    """A participant's KID in key epoch `epoch`: its prefix, then the epoch's low 8 bits. A receiver
    takes a key only under a KID of its sender's prefix, so no one can send under another's KID."""
    return sender_prefix(participant_id) << 8 | (epoch & 0xFF)


class KeyProvider(Protocol):
    identity_bound: bool
    keyring: Keyring

    def start(self, room: str, participant_id: str, now: float) -> list[Outgoing]:
        """Joined `room` as `participant_id`: what to send the room first."""
        ...

    def send_key(self) -> SendKey:
        """The key to encrypt the next frame with."""
        ...

    def sender_seen(self, participant_id: str) -> None:
        """A track of `participant_id` arrives: get ready to decrypt it."""
        ...

    def on_message(self, msg: dict[str, Any], now: float) -> list[Outgoing]:
        """A data message of an e2ee topic, as the server relayed it (`from`, `identity`, `data`)."""
        ...

    def on_left(self, participant_id: str, now: float) -> list[Outgoing]: ...

    def tick(self, now: float) -> list[Outgoing]:
        """Timers: a pending key to switch to, a periodic rekey."""
        ...


class PassphraseKeys:
    """Every sender's key derived from one passphrase and the room: for rooms without wallets. NOT
    identity-bound: whoever knows the passphrase (a member who left, too) can read the room's media
    and could send as anyone in it."""

    identity_bound = False

    def __init__(self, passphrase: str) -> None:
        if len(passphrase) < 8:
            raise ValueError("a passphrase has at least 8 characters")
        self._passphrase = passphrase.encode()
        self._secret = b""
        self.room = ""
        self.keyring = Keyring()
        self._send: SendKey | None = None

    def start(self, room: str, participant_id: str, now: float) -> list[Outgoing]:
        kdf = PBKDF2HMAC(hashes.SHA256(), 32, b"basement e2ee passphrase v1 " + room.encode(), PBKDF2_ITERATIONS)
        self._secret, self.room = kdf.derive(self._passphrase), room
        self._send = SendKey(kid_of(participant_id), self.base_key(participant_id))
        return []

    def base_key(self, participant_id: str) -> bytes:
        """The sender key of `participant_id` in this room."""
        assert self._secret, "start() first"
        return HKDFExpand(hashes.SHA256(), 16, b"basement e2ee sender " + participant_id.encode()).derive(self._secret)

    def send_key(self) -> SendKey:
        assert self._send is not None, "start() first"
        return self._send

    def sender_seen(self, participant_id: str) -> None:
        if kid_of(participant_id) not in self.keyring.keys:
            self.keyring.add(kid_of(participant_id), self.base_key(participant_id))

    def on_message(self, msg: dict[str, Any], now: float) -> list[Outgoing]:
        return []

    def on_left(self, participant_id: str, now: float) -> list[Outgoing]:
        return []

    def tick(self, now: float) -> list[Outgoing]:
        return []


class WalletKeys:
    """Identity-bound keys: see the module's docstring and docs/e2ee.md "Wallet keys".

    `sign(text)`: the wallet's EIP-191 signature of `text` (hex); `verified`: participant id -> the
    address its announcement was signed by; `refused`: (participant id, why) of what was refused."""

    identity_bound = True

    def __init__(self, sign: Callable[[str], str], rekey_every_s: float = REKEY_EVERY_S,
                 switch_after_s: float = SWITCH_AFTER_S) -> None:
        self.sign = sign
        self.rekey_every_s = rekey_every_s
        self.switch_after_s = switch_after_s
        self.keyring = Keyring()
        self.verified: dict[str, str] = {}
        self.refused: list[tuple[str, str]] = []
        self._peers: dict[str, announce.Announcement] = {}
        self._private = X25519PrivateKey.generate()
        self._announcement: Outgoing | None = None
        self.room = self.me = ""
        self.epoch = 0
        self._base = b""
        self._send: SendKey | None = None
        self._pending: tuple[SendKey, bytes, float] | None = None  # (key, base key, when to use it)
        self._keyed_at = 0.0

    # --- this participant ------------------------------------------------------------------------
    def start(self, room: str, participant_id: str, now: float) -> list[Outgoing]:
        self.room, self.me = room, participant_id
        public = self._private.public_key().public_bytes_raw()
        text = announce.Announcement(room, participant_id, public, int(now) + ANNOUNCEMENT_LIFETIME_S).text()
        self._announcement = Outgoing(ANNOUNCE_TOPIC, json.dumps({"v": 1, "text": text, "signature": self.sign(text)}))
        self._base = os.urandom(16)
        self._send = SendKey(kid_of(participant_id, 0), self._base)
        self._keyed_at = now
        return [self._announcement]

    def send_key(self) -> SendKey:
        assert self._send is not None, "start() first"
        return self._send

    def sender_seen(self, participant_id: str) -> None:
        pass  # keys come from their senders, wrapped

    def _rekey(self, now: float) -> list[Outgoing]:
        """A new key for the participants verified now; used once they have had time to get it."""
        self.epoch += 1
        base = os.urandom(16)
        self._pending = (SendKey(kid_of(self.me, self.epoch), base), base, now + self.switch_after_s)
        self._keyed_at = now
        return [self._key_message(list(self._peers), kid_of(self.me, self.epoch), base)] if self._peers else []

    def _key_message(self, recipients: list[str], kid: int, base: bytes) -> Outgoing:
        keys = {pid: base64.b64encode(announce.wrap(self._private, self._peers[pid].public_key, self.room, self.me,
                                                    pid, kid, base)).decode() for pid in recipients}
        return Outgoing(KEY_TOPIC, json.dumps({"v": 1, "kid": kid, "keys": keys}),
                        recipients if len(recipients) == 1 else None)

    def on_left(self, participant_id: str, now: float) -> list[Outgoing]:
        """Someone left: what is sent from now on must be beyond the keys it had."""
        self._peers.pop(participant_id, None)
        self.verified.pop(participant_id, None)
        for kid in [k for k in self.keyring.keys if k >> 8 == sender_prefix(participant_id)]:
            self.keyring.remove(kid)
        return self._rekey(now) if self._send is not None else []

    def tick(self, now: float) -> list[Outgoing]:
        if self._pending is not None and now >= self._pending[2]:
            self._send, self._base, _ = self._pending
            self._pending = None
        if self._send is not None and self._pending is None and now - self._keyed_at >= self.rekey_every_s:
            return self._rekey(now)
        return []

    # --- the others ------------------------------------------------------------------------------
    def on_message(self, msg: dict[str, Any], now: float) -> list[Outgoing]:
        sender, identity, topic = str(msg.get("from", "")), str(msg.get("identity", "")), msg.get("topic")
        try:
            body = json.loads(msg.get("data") or "")
            if not isinstance(body, dict) or body.get("v") != 1:
                raise announce.AnnouncementError("an e2ee message is a JSON object with v: 1")
            if topic == ANNOUNCE_TOPIC:
                return self._announced(sender, identity, body, now)
            if topic == KEY_TOPIC:
                self._keyed(sender, body)
        except (announce.AnnouncementError, ValueError, TypeError) as e:
            self.refused.append((sender, str(e)))
        return []

    def _announced(self, sender: str, identity: str, body: dict[str, Any], now: float) -> list[Outgoing]:
        a = announce.verify(body.get("text"), body.get("signature"), self.room, sender, identity, now)  # type: ignore[arg-type]
        known = self._peers.get(sender)
        self._peers[sender] = a
        self.verified[sender] = a.address
        out: list[Outgoing] = []
        if not body.get("reply") and self._announcement is not None:
            # a newcomer announcing itself to the room: it needs this participant's announcement too
            mine = json.loads(self._announcement.text)
            out.append(Outgoing(ANNOUNCE_TOPIC, json.dumps({**mine, "reply": True}), [sender]))
        if known is None or known.public_key != a.public_key:
            out.append(self._key_message([sender], self.send_key().kid, self._base))
            if self._pending is not None:
                out.append(self._key_message([sender], self._pending[0].kid, self._pending[1]))
        return out

    def _keyed(self, sender: str, body: dict[str, Any]) -> None:
        peer = self._peers.get(sender)
        if peer is None:
            raise announce.AnnouncementError("a key from a participant whose announcement was not verified")
        kid, keys = body.get("kid"), body.get("keys")
        if not isinstance(kid, int) or kid >> 8 != sender_prefix(sender):
            raise announce.AnnouncementError("a key under a KID that is not the sender's")
        if not isinstance(keys, dict) or not isinstance(keys.get(self.me), str):
            return  # (a rekey for the others: nothing here for this participant)
        wrapped = base64.b64decode(keys[self.me], validate=True)
        self.keyring.add(kid, announce.unwrap(self._private, peer.public_key, self.room, sender, self.me, kid, wrapped))
