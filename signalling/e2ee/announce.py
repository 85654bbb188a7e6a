"""Key announcements and wrapped keys: how a participant's SFrame key is bound to its wallet.

Each participant makes an ephemeral X25519 key pair and signs, with its wallet (EIP-191
`personal_sign`), an announcement naming the room, its participant id, the X25519 public key and an
expiry. Every other client checks that the address the signature recovers is the participant's
signed-in identity, and only then takes keys from it. A sender's SFrame base key goes to each
recipient wrapped: AES-GCM under a key derived (HKDF) from X25519 between the sender's and the
recipient's announced keys, bound to the room, both participant ids and the KID. The server relays
all of it and can read none of it; a key it (or anyone but the wallet's holder) slips in is refused.

Everything here is pure: texts and bytes in, checked values or AnnouncementError out.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account import Account
from eth_account.messages import encode_defunct

MAX_TEXT = 1024  # an announcement's text; what a client will even look at
MAX_LIFETIME_S = 24 * 3600  # an expiry further out than this is refused (a key is for one session)
HEADER = "Basement end-to-end encryption key"
_TEXT = re.compile(
    re.escape(HEADER) + r"\n"
    r"Room: (?P<room>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})\n"
    r"Participant: (?P<participant>[A-Za-z0-9_-]{1,64})\n"
    r"Key: (?P<key>[0-9a-f]{64})\n"
    r"Expires: (?P<expires>[0-9]{1,12})"
)


class AnnouncementError(ValueError):
    """An announcement or a wrapped key that is refused; the message says why (for the UI)."""


@dataclass(frozen=True)
class Announcement:
    room: str
    participant: str
    public_key: bytes  # X25519, 32 bytes
    expires_at: int  # unix seconds
    address: str = ""  # the wallet that signed it (checksummed), once verified

    def text(self) -> str:
        return (f"{HEADER}\nRoom: {self.room}\nParticipant: {self.participant}\nKey: {self.public_key.hex()}\n"
                f"Expires: {self.expires_at}")


def parse(text: str) -> Announcement:
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise AnnouncementError("an announcement is a text of at most 1 KiB")
    m = _TEXT.fullmatch(text)
    if m is None:
        raise AnnouncementError("not a key announcement (header, Room, Participant, Key, Expires lines)")
    return Announcement(m["room"], m["participant"], bytes.fromhex(m["key"]), int(m["expires"]))


def verify(text: str, signature: str, room: str, participant: str, identity: str, now: float) -> Announcement:
    """The announcement `participant` sent in `room`, if its wallet signed it: the address the
    signature recovers must be `identity` (the participant's signed-in address, as the server
    stamps it on the message). AnnouncementError naming what is wrong otherwise."""
    a = parse(text)
    if a.room != room:
        raise AnnouncementError(f"the announcement is for room {a.room!r}, not this one")
    if a.participant != participant:
        raise AnnouncementError("the announcement names another participant than the one who sent it")
    if not now < a.expires_at <= now + MAX_LIFETIME_S:
        raise AnnouncementError("the announcement has expired" if a.expires_at <= now
                                else "the announcement's expiry is too far ahead")
    if not identity.startswith("0x"):
        raise AnnouncementError(f"{identity} has no wallet: its keys cannot be bound to an identity")
    try:
        signer = Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception:
        raise AnnouncementError("the announcement's signature is not a valid EIP-191 signature") from None
    if signer.lower() != identity.lower():
        raise AnnouncementError(f"the announcement is signed by {signer}, not by the participant's wallet {identity}")
    return Announcement(a.room, a.participant, a.public_key, a.expires_at, signer)


# --- wrapped keys ------------------------------------------------------------------------------------
def _kek(mine: X25519PrivateKey, theirs: bytes, room: str, sender: str, recipient: str) -> bytes:
    shared = mine.exchange(X25519PublicKey.from_public_bytes(theirs))
    info = f"basement e2ee wrap v1\n{room}\n{sender}\n{recipient}".encode()
    return HKDF(hashes.SHA256(), 16, None, info).derive(shared)


def wrap(mine: X25519PrivateKey, theirs: bytes, room: str, sender: str, recipient: str, kid: int,
         base_key: bytes) -> bytes:
    """`base_key` (with its KID) for `recipient` only: nonce + AES-GCM(key, aad = KID)."""
    nonce = os.urandom(12)
    return nonce + AESGCM(_kek(mine, theirs, room, sender, recipient)).encrypt(nonce, base_key, kid.to_bytes(8, "big"))


def unwrap(mine: X25519PrivateKey, theirs: bytes, room: str, sender: str, recipient: str, kid: int,
           wrapped: bytes) -> bytes:
    if not 12 + 16 + 16 <= len(wrapped) <= 12 + 64 + 16:
        raise AnnouncementError("a wrapped key is 44 to 92 bytes")
    try:
        return AESGCM(_kek(mine, theirs, room, sender, recipient)).decrypt(wrapped[:12], wrapped[12:],
                                                                           kid.to_bytes(8, "big"))
    except InvalidTag:
        raise AnnouncementError("the wrapped key does not open with the sender's announced key") from None
