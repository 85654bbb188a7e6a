"""SFrame (RFC 9605) against the RFC's own test vectors (Appendix C), and what a receiver refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signalling.e2ee.sframe import SUITES, DerivedKey, Keyring, SendKey, SFrameError, encode_header, parse_header

VECTORS = json.loads((Path(__file__).parent / "rfc9605_vectors.json").read_text())


def test_every_header_vector_encodes_and_parses():
    assert len(VECTORS["header"]) == 289
    for v in VECTORS["header"]:
        encoded = bytes.fromhex(v["encoded"])
        assert encode_header(v["kid"], v["ctr"]) == encoded, v
        assert parse_header(encoded + b"payload") == (v["kid"], v["ctr"], len(encoded)), v


@pytest.mark.parametrize("v", VECTORS["aes_ctr_hmac"], ids=lambda v: SUITES[v["cipher_suite"]].name)
def test_the_aes_ctr_hmac_construction_matches_appendix_c2(v):
    suite = SUITES[v["cipher_suite"]]
    key = DerivedKey(suite, 0, bytes.fromhex(v["key"]), b"\0" * 12)
    nonce, aad, pt, ct = (bytes.fromhex(v[k]) for k in ("nonce", "aad", "pt", "ct"))
    assert key.seal(nonce, aad, pt) == ct
    assert key.open(nonce, aad, ct) == pt


@pytest.mark.parametrize("v", VECTORS["sframe"], ids=lambda v: SUITES[v["cipher_suite"]].name)
def test_each_suite_derives_encrypts_and_decrypts_as_appendix_c3(v):
    suite = SUITES[v["cipher_suite"]]
    base_key, metadata, pt, ct = (bytes.fromhex(v[k]) for k in ("base_key", "metadata", "pt", "ct"))
    key = DerivedKey.derive(suite, v["kid"], base_key)
    assert (key.key.hex(), key.salt.hex()) == (v["sframe_key"], v["sframe_salt"])
    assert key.nonce(v["ctr"]).hex() == v["nonce"]
    sender = SendKey(v["kid"], base_key, suite)
    sender.ctr = v["ctr"]
    assert sender.encrypt(pt, metadata) == ct
    assert sender.ctr == v["ctr"] + 1  # the next frame never reuses the nonce
    ring = Keyring(suite)
    ring.add(v["kid"], base_key)
    assert ring.decrypt(ct, metadata) == (v["kid"], pt)


def test_a_receiver_refuses_what_does_not_authenticate_or_has_no_key():
    sender = SendKey(7, bytes(range(16)))
    ct = sender.encrypt(b"a VP8 frame", b"\x90\x01")
    ring = Keyring()
    with pytest.raises(SFrameError, match="no key with KID 7"):
        ring.decrypt(ct, b"\x90\x01")
    ring.add(7, bytes(range(16)))
    assert ring.decrypt(ct, b"\x90\x01") == (7, b"a VP8 frame")
    with pytest.raises(SFrameError, match="does not authenticate"):
        ring.decrypt(ct, b"\x90\x00")  # the clear metadata was changed on the way
    flipped = ct[:-1] + bytes([ct[-1] ^ 1])
    with pytest.raises(SFrameError, match="does not authenticate"):
        ring.decrypt(flipped, b"\x90\x01")
    other = Keyring()
    other.add(7, bytes(range(1, 17)))  # the same KID under another key: a departed member's
    with pytest.raises(SFrameError, match="does not authenticate"):
        other.decrypt(ct, b"\x90\x01")
    for bad in (b"", b"\x88", b"\xf8\x01", ct[:3]):
        with pytest.raises(SFrameError):
            ring.decrypt(bad)


def test_a_keyring_holds_a_bounded_number_of_keys():
    ring = Keyring(max_keys=3)
    for kid in range(5):
        ring.add(kid, bytes(16))
    assert sorted(ring.keys) == [2, 3, 4]
