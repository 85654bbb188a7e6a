"""SFrame (RFC 9605): authenticated encryption of one media frame under a key the SFU never holds.

An SFrame ciphertext is a header (the key id KID and the counter CTR, RFC 9605 §4.3), the frame
encrypted, and a tag. The header and the caller's `metadata` (the bytes of the frame the SFU must
still read: a VP8 payload header, say) are authenticated, not encrypted. Keys are derived from a
`base_key` labelled with its KID (§4.4.2); a `SendKey` owns its counter, so a (key, nonce) pair is
never used twice, and a `Keyring` decrypts with whatever KID a ciphertext names.

All five suites of RFC 9605 are here; checked against the RFC's test vectors (Appendix C).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12  # AEAD.Nn of every suite
MAX_VALUE = 2**64 - 1  # KID and CTR are at most 8 bytes in the header


class SFrameError(ValueError):
    """A ciphertext that is not one (truncated, unknown KID, failed authentication), or a bad key."""


@dataclass(frozen=True)
class Suite:
    """A cipher suite (RFC 9605 §4.5): `ctr` suites are AES-CTR + truncated HMAC (§4.5.1)."""

    id: int
    name: str
    hash: str  # HKDF's and HMAC's: "sha256" | "sha512"
    key_bytes: int  # AEAD.Nk (for CTR suites Nka + Nh: the cipher's key, then HMAC's)
    tag_bytes: int  # AEAD.Nt
    ctr: bool

    @property
    def cipher_key_bytes(self) -> int:
        """Nka: the AES key's share of a CTR suite's key."""
        return 16 if self.ctr else self.key_bytes


SUITES = {s.id: s for s in (
    Suite(1, "AES_128_CTR_HMAC_SHA256_80", "sha256", 48, 10, True),
    Suite(2, "AES_128_CTR_HMAC_SHA256_64", "sha256", 48, 8, True),
    Suite(3, "AES_128_CTR_HMAC_SHA256_32", "sha256", 48, 4, True),
    Suite(4, "AES_128_GCM_SHA256_128", "sha256", 16, 16, False),
    Suite(5, "AES_256_GCM_SHA512_128", "sha512", 32, 16, False),
)}
DEFAULT_SUITE = SUITES[4]  # what WebCrypto does in one call, and what the web client uses


# --- the header (§4.3) ------------------------------------------------------------------------------
def encode_header(kid: int, ctr: int) -> bytes:
    """The SFrame header of (KID, CTR): values below 8 in the config byte, others in as few bytes
    as they need (big-endian), KID first."""
    if not (0 <= kid <= MAX_VALUE and 0 <= ctr <= MAX_VALUE):
        raise SFrameError("KID and CTR are integers from 0 to 2^64 - 1")
    config, tail = 0, b""
    if kid < 8:
        config |= kid << 4
    else:
        k = kid.to_bytes((kid.bit_length() + 7) // 8, "big")
        config |= 0x80 | (len(k) - 1) << 4
        tail += k
    if ctr < 8:
        config |= ctr
    else:
        c = ctr.to_bytes((ctr.bit_length() + 7) // 8, "big")
        config |= 0x08 | (len(c) - 1)
        tail += c
    return bytes([config]) + tail


def parse_header(data: bytes) -> tuple[int, int, int]:
    """(KID, CTR, header length) of a ciphertext; SFrameError if it is too short for its header."""
    if not data:
        raise SFrameError("an SFrame ciphertext has at least a config byte")
    config = data[0]
    at = 1
    values = []
    for extended, field in ((config & 0x80, (config >> 4) & 0x07), (config & 0x08, config & 0x07)):
        if not extended:
            values.append(field)
            continue
        n = field + 1
        if len(data) < at + n:
            raise SFrameError(f"the SFrame header says {n} more bytes; the ciphertext ends first")
        values.append(int.from_bytes(data[at:at + n], "big"))
        at += n
    return values[0], values[1], at


# --- keys (§4.4.2) ----------------------------------------------------------------------------------
_HASHES = {"sha256": hashes.SHA256, "sha512": hashes.SHA512}


def _hkdf(digest: str, base_key: bytes, info: bytes, length: int) -> bytes:
    # HKDF-Extract with an empty salt (RFC 5869: a hash length of zeros, the same HMAC key), then Expand
    return HKDF(_HASHES[digest](), length, None, info).derive(base_key)


@dataclass(frozen=True)
class DerivedKey:
    """sframe_key and sframe_salt of one (suite, KID, base_key)."""

    suite: Suite
    kid: int
    key: bytes
    salt: bytes

    @classmethod
    def derive(cls, suite: Suite, kid: int, base_key: bytes) -> DerivedKey:
        if not 0 <= kid <= MAX_VALUE:
            raise SFrameError("a KID is an integer from 0 to 2^64 - 1")
        if len(base_key) < 16:
            raise SFrameError("a base key has at least 16 bytes")
        suffix = kid.to_bytes(8, "big") + suite.id.to_bytes(2, "big")
        return cls(suite, kid, _hkdf(suite.hash, base_key, b"SFrame 1.0 Secret key " + suffix, suite.key_bytes),
                   _hkdf(suite.hash, base_key, b"SFrame 1.0 Secret salt " + suffix, NONCE_BYTES))

    def nonce(self, ctr: int) -> bytes:
        return (int.from_bytes(self.salt, "big") ^ ctr).to_bytes(NONCE_BYTES, "big")

    def seal(self, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """AEAD.Encrypt: the ciphertext with its tag."""
        s = self.suite
        if not s.ctr:
            return AESGCM(self.key).encrypt(nonce, plaintext, aad)
        ct = _aes_ctr(self.key[:s.cipher_key_bytes], nonce, plaintext)
        return ct + self._tag(nonce, aad, ct)

    def open(self, nonce: bytes, aad: bytes, sealed: bytes) -> bytes:
        """AEAD.Decrypt; SFrameError when it does not authenticate."""
        s = self.suite
        if len(sealed) < s.tag_bytes:
            raise SFrameError("an SFrame ciphertext shorter than its tag")
        if not s.ctr:
            try:
                return AESGCM(self.key).decrypt(nonce, sealed, aad)
            except InvalidTag:
                raise SFrameError("the SFrame ciphertext does not authenticate") from None
        ct, tag = sealed[:-s.tag_bytes], sealed[-s.tag_bytes:]
        if not hmac.compare_digest(tag, self._tag(nonce, aad, ct)):
            raise SFrameError("the SFrame ciphertext does not authenticate")
        return _aes_ctr(self.key[:s.cipher_key_bytes], nonce, ct)

    def _tag(self, nonce: bytes, aad: bytes, ct: bytes) -> bytes:
        s = self.suite
        lengths = len(aad).to_bytes(8, "big") + len(ct).to_bytes(8, "big") + s.tag_bytes.to_bytes(8, "big")
        return hmac.new(self.key[s.cipher_key_bytes:], lengths + nonce + aad + ct, s.hash).digest()[:s.tag_bytes]


def _aes_ctr(key: bytes, nonce: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce + b"\0\0\0\0")).encryptor()
    return encryptor.update(data) + encryptor.finalize()


# --- sending and receiving (§4.4.3, §4.4.4) ---------------------------------------------------------
class SendKey:
    """One sender's key: encrypts with the next counter each time (RFC 9605: a key is used by one
    sender only, and for encryption or decryption, never both)."""

    def __init__(self, kid: int, base_key: bytes, suite: Suite = DEFAULT_SUITE) -> None:
        self.derived = DerivedKey.derive(suite, kid, base_key)
        self.ctr = 0

    @property
    def kid(self) -> int:
        return self.derived.kid

    def encrypt(self, plaintext: bytes, metadata: bytes = b"") -> bytes:
        if self.ctr > MAX_VALUE:
            raise SFrameError("this key's counter is spent: rekey")
        header = encode_header(self.derived.kid, self.ctr)
        sealed = self.derived.seal(self.derived.nonce(self.ctr), header + metadata, plaintext)
        self.ctr += 1
        return header + sealed


MAX_KEYS = 64  # receive keys a Keyring holds: each participant's current and previous, in a big room


class Keyring:
    """Receive keys by KID. `decrypt` returns (KID, plaintext) or raises SFrameError."""

    def __init__(self, suite: Suite = DEFAULT_SUITE, max_keys: int = MAX_KEYS) -> None:
        self.suite = suite
        self.max_keys = max_keys
        self.keys: dict[int, DerivedKey] = {}

    def add(self, kid: int, base_key: bytes) -> None:
        """A key to decrypt with; the oldest goes when there would be more than `max_keys`."""
        self.keys.pop(kid, None)
        self.keys[kid] = DerivedKey.derive(self.suite, kid, base_key)
        while len(self.keys) > self.max_keys:
            del self.keys[next(iter(self.keys))]

    def remove(self, kid: int) -> None:
        self.keys.pop(kid, None)

    def decrypt(self, ciphertext: bytes, metadata: bytes = b"") -> tuple[int, bytes]:
        kid, ctr, n = parse_header(ciphertext)
        key = self.keys.get(kid)
        if key is None:
            raise SFrameError(f"no key with KID {kid}")
        return kid, key.open(key.nonce(ctr), ciphertext[:n] + metadata, ciphertext[n:])


__all__ = ["DEFAULT_SUITE", "SUITES", "DerivedKey", "Keyring", "SFrameError", "SendKey", "Suite",
           "encode_header", "parse_header"]
