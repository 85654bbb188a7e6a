"""sfu._native.SrtpSession: bit-exact with pylibsrtp (libsrtp 2, what aiortc runs), RFC 3711 / RFC 7714
test vectors, and refusal of everything that is not a genuine, fresh packet.

The RFC 7714 vectors (sections 16-17) give session keys, so they go through
SrtpSession.from_session_keys; RFC 3711 B.2 and B.3 go through the key derivation (_srtp_kdf, whose
AES-CM PRF with label 0 is the B.2 keystream generator).

Every test runs on each implementation of AES the CPU can run (`aes`): OpenSSL's EVP, and aes_gcm.c
on AES-NI / PCLMULQDQ with and without its 256-bit VAES / VPCLMULQDQ path (the default is the best
the CPU has); test_aes_implementations_agree compares each with EVP."""

from __future__ import annotations

import hashlib
import hmac
import random
import struct
from collections.abc import Iterator

import pytest
from pylibsrtp import Error as LibsrtpError
from pylibsrtp import Policy, Session
from sfu._native import SrtpError, SrtpSession, _srtp_kdf

from sfu import _native

CM80, CM32, GCM128, GCM256 = 1, 2, 7, 8
KEY_LEN = {CM80: 30, CM32: 30, GCM128: 28, GCM256: 44}  # master key + master salt
RTP_TAG = {CM80: 10, CM32: 4, GCM128: 16, GCM256: 16}
RTCP_TRAILER = {CM80: 14, CM32: 14, GCM128: 20, GCM256: 20}  # E+index and tag
PROFILES = sorted(KEY_LEN)


@pytest.fixture(autouse=True)
def data_path() -> Iterator[None]:
    """SRTP is the same on both data paths: override tests/unit/sfu's parametrised fixture."""
    yield


_DEFAULT_AES = _native.aes()
AES_IMPLEMENTATIONS = [name for name in ("aes-ni-256", "aes-ni", "openssl") if _native.set_aes(name) == name]
_native.set_aes(_DEFAULT_AES)


@pytest.fixture(autouse=True, params=AES_IMPLEMENTATIONS)
def aes(request: pytest.FixtureRequest) -> Iterator[str]:
    """Sessions made in the test use this AES; the default (the best the CPU has) comes back."""
    before = _native.aes()
    assert _native.set_aes(request.param) == request.param
    yield request.param
    _native.set_aes(before)


def test_the_default_is_the_best_the_cpu_has() -> None:
    assert _native.set_aes("auto") == AES_IMPLEMENTATIONS[0]


def key_for(profile: int, seed: int = 1) -> bytes:
    return random.Random(seed * 100 + profile).randbytes(KEY_LEN[profile])


def libsrtp(profile: int, key: bytes, *, inbound: bool) -> Session:
    """A pylibsrtp session configured as aiortc's RTCDtlsTransport configures its two."""
    policy = Policy(
        key=key,
        ssrc_type=Policy.SSRC_ANY_INBOUND if inbound else Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=profile,
    )
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


# ---- packet builders -------------------------------------------------------------------------------


def rtp(
    seq: int,
    ssrc: int,
    payload: bytes = b"",
    *,
    pt: int = 96,
    ts: int = 0,
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    ext: tuple[str, list[tuple[int, bytes]]] | None = None,
    padding: int = 0,
) -> bytes:
    """An RTP packet; ext = ("one" | "two", [(id, data)]) is an RFC 8285 header extension."""
    b0 = 0x80 | len(csrcs) | (0x10 if ext else 0) | (0x20 if padding else 0)
    out = struct.pack("!BBHII", b0, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrcs)
    if ext:
        kind, elements = ext
        if kind == "one":
            body = b"".join(bytes([(i << 4) | (len(d) - 1)]) + d for i, d in elements)
            profile = 0xBEDE
        else:
            body = b"".join(bytes([i, len(d)]) + d for i, d in elements)
            profile = 0x1000
        body += bytes(-len(body) % 4)
        out += struct.pack("!HH", profile, len(body) // 4) + body
    out += payload
    if padding:
        out += bytes(padding - 1) + bytes([padding])
    return out


def sr(ssrc: int, n_reports: int = 1) -> bytes:
    body = struct.pack("!IIIII", 0x83AA7E80, 0x12345678, 0xDEADBEEF, 1000, 200000)
    body += b"".join(struct.pack("!IIIIII", 0x1000 + i, 0x01000005, 0x00010203, 7, 0, 0) for i in range(n_reports))
    return struct.pack("!BBHI", 0x80 | n_reports, 200, (len(body) + 4) // 4, ssrc) + body


def rr(ssrc: int, media: int) -> bytes:
    return struct.pack("!BBHI", 0x81, 201, 7, ssrc) + struct.pack("!IIIIII", media, 0x02000010, 0x10, 3, 0, 0)


def sdes(ssrc: int, cname: bytes) -> bytes:
    item = bytes([1, len(cname)]) + cname + b"\x00"
    item += bytes(-(len(item) + 4) % 4)
    return struct.pack("!BBHI", 0x81, 202, (len(item) + 4) // 4, ssrc) + item


def nack(ssrc: int, media: int, pid: int, blp: int) -> bytes:
    return struct.pack("!BBHIIHH", 0x81, 205, 3, ssrc, media, pid, blp)


def pli(ssrc: int, media: int) -> bytes:
    return struct.pack("!BBHII", 0x81, 206, 2, ssrc, media)


# ---- bit-exact with pylibsrtp ----------------------------------------------------------------------

# (packet, delivered to the receivers, receivers must refuse it as a replay)
Step = tuple[bytes, bool, bool]


def rtp_scenario() -> list[Step]:
    rng = random.Random(7)
    steps: list[Step] = []

    def send(seq: int, ssrc: int, *, deliver: bool = True, **kw: object) -> None:
        size = rng.choice([0, 1, 17, 160, 1100])
        steps.append((rtp(seq, ssrc, rng.randbytes(size), ts=seq * 3000, **kw), deliver, False))  # type: ignore[arg-type]

    a, b, c, d = 0x11223344, 0xCAFEBABE, 0x00000001, 0xFFFFFFFF

    def sent(seq: int, ssrc: int) -> bytes:
        return next(p for p, _, _ in steps if p[2:4] == seq.to_bytes(2, "big") and p[8:12] == ssrc.to_bytes(4, "big"))

    # A: runs over the wrap, with CSRCs, both extension forms, padding; 65531 is lost on the way and
    # 65528 is held back
    for seq in range(65525, 65536):
        kw: dict[str, object] = {}
        if seq % 3 == 0:
            kw["csrcs"] = (1, 2, 3)[: seq % 4 or 1]
        if seq % 4 == 1:
            kw["ext"] = ("one", [(1, b"\x30"), (3, b"\x01\x02\x03")])
        if seq % 4 == 2:
            kw["ext"] = ("two", [(5, b""), (200, bytes(20))])
        if seq % 5 == 0:
            kw["padding"] = 4
        if seq != 65528:
            send(seq, a, deliver=seq != 65531, marker=seq % 2 == 0, **kw)
    for seq in range(0, 6):  # ROC 1
        send(seq, a, ext=("one", [(2, b"\x00\x01\x02")]) if seq % 2 else None)
    # B interleaved: starts mid-range, jumps, reorders
    for seq in (30000, 30001, 30005, 30003, 30002, 31000, 30999):
        send(seq, b, pt=111)
    # A after the wrap: the held-back 65528, sent for the first time (ROC-1 on both sides), a
    # retransmission of the lost 65531 (delivered now), and of 65530 and 2, which the receivers have
    send(65528, a, csrcs=(7,))
    steps.append((sent(65531, a), True, False))
    steps.append((sent(65530, a), True, True))
    steps.append((sent(2, a), True, True))
    for seq in range(6, 40):
        send(seq, a, csrcs=(seq,) if seq % 7 == 0 else ())
    # C: starts at 100 then a far jump (libsrtp guesses ROC 0 while the index is <= 2^15), back, wrap
    for seq in (100, 101, 65500, 102, 65535, 0, 1):
        send(seq, c)
    # D: a long run so the index passes 2^16 twice
    for seq in list(range(65000, 65536, 97)) + list(range(0, 65536, 4099)) + list(range(0, 200, 50)):
        send(seq, d)
    return steps


@pytest.mark.parametrize("profile", PROFILES)
def test_pylibsrtp_supports_the_profile(profile: int) -> None:
    """aiortc offers these profiles to pylibsrtp: this build of it must have them all."""
    key = key_for(profile)
    ours, theirs = SrtpSession(profile, key, False), libsrtp(profile, key, inbound=False)
    packet = rtp(1, 0x1234, b"x" * 50)
    assert len(theirs.protect(packet)) - len(packet) == RTP_TAG[profile]
    assert len(ours.protect(packet)) - len(packet) == RTP_TAG[profile]
    assert len(theirs.protect_rtcp(sr(0x1234))) - len(sr(0x1234)) == RTCP_TRAILER[profile]
    assert ours.profile == profile and not ours.inbound


@pytest.mark.parametrize("profile", PROFILES)
def test_rtp_bit_exact_with_pylibsrtp(profile: int) -> None:
    key = key_for(profile)
    tx_ours, tx_lib = SrtpSession(profile, key, False), libsrtp(profile, key, inbound=False)
    rx_ours, rx_lib = SrtpSession(profile, key, True), libsrtp(profile, key, inbound=True)
    rx_ours2 = SrtpSession(profile, key, True)  # receives our output (rx_ours receives libsrtp's)
    steps = rtp_scenario()
    replays = 0
    for i, (packet, deliver, replay) in enumerate(steps):
        ours = tx_ours.protect(packet)
        assert ours == tx_lib.protect(packet), f"step {i}"
        if not deliver:
            continue
        if replay:
            replays += 1
            with pytest.raises(LibsrtpError):
                rx_lib.unprotect(ours)
            with pytest.raises(SrtpError, match="replayed"):
                rx_ours.unprotect(ours)
            continue
        assert rx_lib.unprotect(ours) == packet, f"step {i}: pylibsrtp unprotects our protect"
        assert rx_ours.unprotect(ours) == packet, f"step {i}: we unprotect pylibsrtp's protect"
        assert rx_ours2.unprotect(ours) == packet
    assert replays == 2
    assert tx_ours.ssrc_count == rx_ours.ssrc_count == 4


@pytest.mark.parametrize("profile", PROFILES)
def test_sender_resend_after_wrap_uses_the_old_roc(profile: int) -> None:
    """A NACK resend of a pre-wrap packet gets the same index, hence the same bytes, as the original."""
    tx = SrtpSession(profile, key_for(profile), False)
    first = {seq: tx.protect(rtp(seq, 42, b"media")) for seq in (65534, 65535, 0, 1)}
    assert tx.protect(rtp(65534, 42, b"media")) == first[65534]
    assert tx.protect(rtp(1, 42, b"media")) == first[1]


@pytest.mark.parametrize("profile", PROFILES)
def test_sender_refuses_an_index_older_than_the_window(profile: int) -> None:
    key = key_for(profile)
    tx_ours, tx_lib = SrtpSession(profile, key, False), libsrtp(profile, key, inbound=False)
    for seq in (5000, 6023, 6024):
        assert tx_ours.protect(rtp(seq, 9)) == tx_lib.protect(rtp(seq, 9))
    assert tx_ours.protect(rtp(5001, 9)) == tx_lib.protect(rtp(5001, 9))  # 1023 behind: allowed
    with pytest.raises(LibsrtpError):
        tx_lib.protect(rtp(5000, 9))
    with pytest.raises(SrtpError, match="replayed"):
        tx_ours.protect(rtp(5000, 9))  # 1024 behind


def rtcp_scenario() -> list[bytes]:
    x, y, z = 0x11111111, 0x22222222, 0xFFFFFFFE
    return [
        sr(x) + sdes(x, b"alice"),
        rr(y, x) + sdes(y, b"bob") + nack(y, x, 100, 0b101),
        sr(x, 3),
        rr(z, x) + pli(z, x),
        rr(y, x),
        sr(x, 0) + sdes(x, b"a" * 40),
        nack(z, y, 65535, 0xFFFF),
        struct.pack("!BBHI", 0x80, 201, 1, y),  # RR with no blocks: header only
        rr(y, 0x33) + pli(y, 0x33) + nack(y, 0x33, 1, 0),
    ]


@pytest.mark.parametrize("profile", PROFILES)
def test_rtcp_bit_exact_with_pylibsrtp(profile: int) -> None:
    key = key_for(profile, seed=2)
    tx_ours, tx_lib = SrtpSession(profile, key, False), libsrtp(profile, key, inbound=False)
    rx_ours, rx_lib = SrtpSession(profile, key, True), libsrtp(profile, key, inbound=True)
    protected = []
    for i, packet in enumerate(rtcp_scenario() * 3):
        ours = tx_ours.protect_rtcp(packet)
        assert ours == tx_lib.protect_rtcp(packet), f"packet {i}"
        assert len(ours) == len(packet) + RTCP_TRAILER[profile]
        protected.append((packet, ours))
    # the receivers take them out of order; each once, then every one again is a replay
    order = list(range(len(protected)))
    random.Random(3).shuffle(order)
    for i in order:
        packet, ours = protected[i]
        assert rx_lib.unprotect_rtcp(ours) == packet
        assert rx_ours.unprotect_rtcp(ours) == packet
    for _, ours in protected[:5]:
        with pytest.raises(SrtpError, match="replayed"):
            rx_ours.unprotect_rtcp(ours)


@pytest.mark.parametrize("profile", PROFILES)
def test_rtcp_index_counts_per_ssrc_from_one(profile: int) -> None:
    tx = SrtpSession(profile, key_for(profile), False)
    trailer = (lambda p: p[-4:]) if profile in (GCM128, GCM256) else (lambda p: p[-14:-10])
    assert [trailer(tx.protect_rtcp(sr(1))) for _ in range(3)] == [
        b"\x80\x00\x00\x01",
        b"\x80\x00\x00\x02",
        b"\x80\x00\x00\x03",
    ]
    assert trailer(tx.protect_rtcp(sr(2))) == b"\x80\x00\x00\x01"


@pytest.mark.parametrize("profile", PROFILES)
def test_rtp_and_rtcp_of_an_ssrc_share_one_stream(profile: int) -> None:
    key = key_for(profile)
    tx_ours, tx_lib = SrtpSession(profile, key, False), libsrtp(profile, key, inbound=False)
    for packet in (sr(5), rtp(1, 5, b"a"), rr(5, 6), rtp(2, 5, b"b"), rtp(3, 6)):
        protect = "protect_rtcp" if packet[1] in (200, 201) else "protect"
        assert getattr(tx_ours, protect)(packet) == getattr(tx_lib, protect)(packet)
    assert tx_ours.ssrc_count == 2


def test_buffer_protocol_inputs() -> None:
    tx, rx = SrtpSession(CM80, key_for(CM80), False), SrtpSession(CM80, key_for(CM80), True)
    packet = rtp(10, 77, b"payload")
    out = tx.protect(bytearray(packet))
    assert isinstance(out, bytes)
    assert rx.unprotect(memoryview(out)) == packet
    with pytest.raises(TypeError):
        tx.protect("not bytes")  # type: ignore[arg-type]


# ---- RFC test vectors ------------------------------------------------------------------------------


def test_rfc3711_b3_key_derivation() -> None:
    key, salt = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE4139"), bytes.fromhex("0EC675AD498AFEEBB6960B3AABE6")
    assert _srtp_kdf(key, salt, 0, 16) == bytes.fromhex("C61E7A93744F39EE10734AFE3FF7A087")
    assert _srtp_kdf(key, salt, 2, 14) == bytes.fromhex("30CBBC08863D8C85D49DB34A9AE1")
    assert _srtp_kdf(key, salt, 1, 20) == bytes.fromhex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    assert _srtp_kdf(key, salt, 1, 94) == bytes.fromhex(
        "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE E049646C43D9327AD175578EF7227098"
        "6371C10C9A369AC2F94A8C5FBCDDDC25 6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2"
    )


B2_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
B2_SALT = bytes.fromhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD")
B2_HEAD = bytes.fromhex(
    "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB 41E95B3BB0A2E8DD477901E4FCA894C0"
)
B2_TAIL = bytes.fromhex(
    "EC8CDF7398607CB0F2D21675EA9EA1E4 362B7C3C6773516318A077D7FC5073AE 6A2CC3787889374FBEB4C81B17BA6C44"
)


def test_rfc3711_b2_aes_cm_keystream() -> None:
    """B.2: SSRC 0 and index 0, so the IV is the salt * 2^16, which is the KDF's IV at label 0."""
    stream = _srtp_kdf(B2_KEY, B2_SALT, 0, 1044512)
    assert stream[:48] == B2_HEAD
    assert stream[-48:] == B2_TAIL


def test_rfc3711_b2_through_protect() -> None:
    """The same keystream encrypts the payload of an RTP packet of SSRC 0, sequence number 0, ROC 0."""
    for profile in (CM80, CM32):
        session_keys = B2_KEY + B2_SALT + bytes(20)
        tx = SrtpSession.from_session_keys(profile, session_keys, session_keys)
        out = tx.protect(rtp(0, 0, bytes(48), pt=0))
        assert out[12:60] == B2_HEAD
        assert len(out) == 60 + RTP_TAG[profile]


RFC7714_KEY128 = bytes(range(16))
RFC7714_KEY256 = bytes(range(32))
RFC7714_SALT = b"Quid pro quo"
RFC7714_RTP = bytes.fromhex("8040f17b8041f8d35501a0b2") + b"Gallia est omnis divisa in partes tres"
RFC7714_RTCP = bytes.fromhex(
    "81c8000d4d617273 4e5450314e545032 525450200000042a 0000e9304c756e61 deadbeefdeadbeefdeadbeefdeadbeef deadbeef"
)
RFC7714_SRTP = {
    GCM128: bytes.fromhex(
        "8040f17b8041f8d35501a0b2 f24de3a3fb34de6cacba861c9d7e4bca be633bd50d294e6f42a5f47a51c7d19b 36de3adf8833"
        "899d7f27beb16a9152cf765ee4390cce"
    ),
    GCM256: bytes.fromhex(
        "8040f17b8041f8d35501a0b2 32b1de78a822fe12ef9f78fa332e33aa b18012389a58e2f3b50b2a0276ffae0f 1ba63799b87b"
        "7aa3db36dfffd6b0f9bb7878d7a76c13"
    ),
}
RFC7714_SRTCP = {  # 17.1, 17.2: E = 1, index 0x5d4
    GCM128: bytes.fromhex(
        "81c8000d4d617273 63e94885dcdab67ca727d7662f6b7e99 7ff5c0f76c06f32dc676a5f1730d6fda 4ce09b4686303ded0bb9275b"
        "c84aa45896cf4d2fc5abf87245d9eade 800005d4"
    ),
    GCM256: bytes.fromhex(
        "81c8000d4d617273 d50ae4d1f5ce5d304ba297e47d470c28 2c3ece5dbffe0a50a2eaa5c1110555be 8415f658c61de0476f1b6fad"
        "1d1eb30c4446839f57ff6f6cb26ac3be 800005d4"
    ),
}
RFC7714_SRTCP_TAG_ONLY = {  # 17.3, 17.4: E = 0, the packet authenticated but not encrypted
    GCM128: RFC7714_RTCP + bytes.fromhex("841dd9683dd78ec92ae58790125f62b3 000005d4"),
    GCM256: RFC7714_RTCP + bytes.fromhex("91db4afbfeee5a978fab4393ed2615fe 000005d4"),
}


def rfc7714_session(profile: int) -> SrtpSession:
    keys = (RFC7714_KEY128 if profile == GCM128 else RFC7714_KEY256) + RFC7714_SALT
    return SrtpSession.from_session_keys(profile, keys, keys)


@pytest.mark.parametrize("profile", [GCM128, GCM256])
def test_rfc7714_srtp_vectors(profile: int) -> None:
    assert rfc7714_session(profile).protect(RFC7714_RTP) == RFC7714_SRTP[profile]
    rx = rfc7714_session(profile)
    assert rx.unprotect(RFC7714_SRTP[profile]) == RFC7714_RTP
    tampered = bytearray(RFC7714_SRTP[profile])
    tampered[-1] ^= 1
    with pytest.raises(SrtpError, match="authentication failed"):
        rfc7714_session(profile).unprotect(bytes(tampered))


@pytest.mark.parametrize("profile", [GCM128, GCM256])
def test_rfc7714_srtcp_vectors(profile: int) -> None:
    tx = rfc7714_session(profile)
    for _ in range(0x5D4 - 1):  # the first index is 1: the 0x5d4th packet has the RFC's index
        tx.protect_rtcp(RFC7714_RTCP)
    assert tx.protect_rtcp(RFC7714_RTCP) == RFC7714_SRTCP[profile]
    assert rfc7714_session(profile).unprotect_rtcp(RFC7714_SRTCP[profile]) == RFC7714_RTCP
    rx = rfc7714_session(profile)
    assert rx.unprotect_rtcp(RFC7714_SRTCP_TAG_ONLY[profile]) == RFC7714_RTCP
    with pytest.raises(SrtpError, match="replayed"):
        rx.unprotect_rtcp(RFC7714_SRTCP_TAG_ONLY[profile])
    tampered = bytearray(RFC7714_SRTCP_TAG_ONLY[profile])
    tampered[12] ^= 1
    with pytest.raises(SrtpError, match="authentication failed"):
        rfc7714_session(profile).unprotect_rtcp(bytes(tampered))


def test_against_independent_references() -> None:
    """HMAC-SHA1 placement (RTP: over the packet and the ROC; SRTCP: over the packet and E+index) and
    the GCM IV and AAD, checked with Python's hmac and the cryptography package from the session keys
    _srtp_kdf derives; and SRTCP with the E bit clear (authenticated, not encrypted) is accepted."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = key_for(CM80)
    master, salt = key[:16], key[16:]
    tx, rx = SrtpSession(CM80, key, False), SrtpSession(CM80, key, True)
    rtp_auth, rtcp_auth = _srtp_kdf(master, salt, 1, 20), _srtp_kdf(master, salt, 4, 20)
    for seq, roc in ((65535, 0), (0, 1), (1, 1)):
        out = tx.protect(rtp(seq, 0xABCD, b"payload" * 9))
        assert out[-10:] == hmac.new(rtp_auth, out[:-10] + struct.pack("!I", roc), hashlib.sha1).digest()[:10]
    packet = sr(0xABCD) + sdes(0xABCD, b"cname")
    unencrypted = packet + struct.pack("!I", 77)  # E = 0, index 77
    unencrypted += hmac.new(rtcp_auth, unencrypted, hashlib.sha1).digest()[:10]
    assert rx.unprotect_rtcp(unencrypted) == packet
    with pytest.raises(SrtpError, match="replayed"):
        rx.unprotect_rtcp(unencrypted)

    key = key_for(GCM128)
    master, salt = key[:16], key[16:]
    tx = SrtpSession(GCM128, key, False)
    rtp_key, rtp_salt = _srtp_kdf(master, salt, 0, 16), _srtp_kdf(master, salt, 2, 12)
    for seq, roc in ((65535, 0), (0, 1), (7, 1)):
        packet = rtp(seq, 0xABCD, b"payload" * 9, csrcs=(1, 2), ext=("one", [(1, b"z")]))
        header = packet[: 12 + 8 + 8]
        iv = bytes(a ^ b for a, b in zip(rtp_salt, struct.pack("!HIIH", 0, 0xABCD, roc, seq)))
        assert tx.protect(packet) == header + AESGCM(rtp_key).encrypt(iv, packet[len(header) :], header)


@pytest.mark.parametrize("profile", PROFILES)
def test_aes_implementations_agree(profile: int, aes: str) -> None:
    """Sessions on aes_gcm.c and on EVP give the same bytes for headers and payloads of every length
    around the 16-byte block (the GCM additional data, the CTR tail) and around the 128- and 256-byte
    runs of the wide path, up to the longest packet there is, and each one reads the other's output."""
    key = key_for(profile, seed=7)
    _native.set_aes("openssl")
    evp_tx, evp_rx = SrtpSession(profile, key, False), SrtpSession(profile, key, True)
    _native.set_aes(aes)
    tx, rx = SrtpSession(profile, key, False), SrtpSession(profile, key, True)
    rng = random.Random(profile)
    seq = 0
    for csrcs in range(0, 4):
        for ext_words in (0, 1, 2, 3, 4):
            for size in [*range(0, 40), *range(110, 150), *range(240, 280), *range(376, 400), 1000, 1183, 4000,
                         9000, 65_400]:  # (the last: near the longest packet a session takes, 64 KiB)
                seq += 1
                ext = ("one", [(1, rng.randbytes(ext_words * 4 - 1))]) if ext_words else None
                packet = rtp(seq, 0x51, rng.randbytes(size), csrcs=tuple(range(csrcs)), ext=ext)
                ours, theirs = tx.protect(packet), evp_tx.protect(packet)
                assert ours == theirs, (csrcs, ext_words, size)
                assert evp_rx.unprotect(ours) == packet and rx.unprotect(theirs) == packet
        report = sr(0x51, n_reports=csrcs) + sdes(0x51, rng.randbytes(csrcs * 7 + 1))
        ours, theirs = tx.protect_rtcp(report), evp_tx.protect_rtcp(report)
        assert ours == theirs
        assert evp_rx.unprotect_rtcp(ours) == report and rx.unprotect_rtcp(theirs) == report


def test_gcm_against_the_cryptography_package(aes: str) -> None:
    """AES-128 and AES-256 GCM, random headers and payloads, against an independent implementation."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    rng = random.Random(3)
    for profile, key_len in ((GCM128, 16), (GCM256, 32)):
        key = key_for(profile, seed=5)
        master, salt = key[:key_len], key[key_len:]
        tx = SrtpSession(profile, key, False)
        rtp_key, rtp_salt = _srtp_kdf(master, salt, 0, key_len), _srtp_kdf(master, salt, 2, 12)
        for seq in range(1, 200):
            ext = ("one", [(1, rng.randbytes(rng.randrange(1, 17)))]) if rng.random() < 0.7 else None
            header = rtp(seq, 0xABCD, csrcs=tuple(range(rng.randrange(3))), ext=ext)
            packet = header + rng.randbytes(rng.randrange(0, 1500))
            iv = bytes(a ^ b for a, b in zip(rtp_salt, struct.pack("!HIIH", 0, 0xABCD, 0, seq)))
            assert tx.protect(packet) == header + AESGCM(rtp_key).encrypt(iv, packet[len(header) :], header)


# ---- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_tampered_packets_fail_and_change_nothing(profile: int) -> None:
    key = key_for(profile)
    tx, rx = SrtpSession(profile, key, False), SrtpSession(profile, key, True)
    packets = [tx.protect(rtp(seq, 5, bytes(range(40)), csrcs=(9,))) for seq in range(65534, 65536)]
    packets += [tx.protect(rtp(seq, 5, bytes(range(40)))) for seq in range(0, 3)]
    assert rx.unprotect(packets[0]) == rtp(65534, 5, bytes(range(40)), csrcs=(9,))
    # every byte of the next packet (header, CSRC, payload, tag) is covered: none can be flipped
    for position in range(len(packets[1])):
        tampered = bytearray(packets[1])
        tampered[position] ^= 0x04
        with pytest.raises(SrtpError):
            rx.unprotect(bytes(tampered))
        if position >= 12:  # past the fixed header the packet still parses: it is the tag that fails
            with pytest.raises(SrtpError, match="SRTP authentication failed"):
                rx.unprotect(bytes(tampered))
    # a tampered packet from after the wrap moved neither the ROC nor the replay window
    tampered = bytearray(packets[3])
    tampered[-1] ^= 0x80
    with pytest.raises(SrtpError, match="authentication failed"):
        rx.unprotect(bytes(tampered))
    for packet in packets[1:]:
        rx.unprotect(packet)
    # RTCP likewise
    srtcp = [tx.protect_rtcp(sr(5)) for _ in range(2)]
    for position in (0, 4, 8, len(srtcp[0]) - 1, len(srtcp[0]) - RTCP_TRAILER[profile]):
        tampered = bytearray(srtcp[0])
        tampered[position] ^= 0x01
        with pytest.raises(SrtpError):
            rx.unprotect_rtcp(bytes(tampered))
    assert rx.unprotect_rtcp(srtcp[0]) == sr(5)
    assert rx.unprotect_rtcp(srtcp[1]) == sr(5)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_new_ssrc_that_fails_leaves_no_stream(profile: int) -> None:
    key = key_for(profile)
    rx = SrtpSession(profile, key, True)
    forged = rtp(1, 1234, bytes(50)) + bytes(RTP_TAG[profile])
    for _ in range(300):
        with pytest.raises(SrtpError, match="authentication failed"):
            rx.unprotect(forged)
    assert rx.ssrc_count == 0
    assert rx.unprotect(SrtpSession(profile, key, False).protect(rtp(1, 1234, bytes(50)))) == rtp(1, 1234, bytes(50))
    assert rx.ssrc_count == 1


@pytest.mark.parametrize("profile", PROFILES)
def test_replays_are_refused(profile: int) -> None:
    key = key_for(profile)
    tx, rx = SrtpSession(profile, key, False), SrtpSession(profile, key, True)
    protected = {seq: tx.protect(rtp(seq, 8, b"p%d" % seq)) for seq in range(0, 1200)}
    rx.unprotect(protected[1100])
    rx.unprotect(protected[100])  # 1000 behind, inside the window
    with pytest.raises(SrtpError, match="replayed"):
        rx.unprotect(protected[1100])
    with pytest.raises(SrtpError, match="replayed"):
        rx.unprotect(protected[100])
    with pytest.raises(SrtpError, match="replayed"):
        rx.unprotect(protected[76])  # 1024 behind: outside the window
    rx.unprotect(protected[77])  # 1023 behind
    for seq in range(1101, 1200):
        rx.unprotect(protected[seq])
    with pytest.raises(SrtpError, match="replayed"):
        rx.unprotect(protected[1150])
    rx.unprotect(protected[1000])


@pytest.mark.parametrize("profile", [CM32, GCM128])
def test_replay_window_matches_a_model(profile: int) -> None:
    """Random deliveries (jumps of every size, reordering, duplicates, sequence number wraps) against a
    set-based model of a 1024-packet window: a packet is accepted exactly when it is newer than the
    highest, or at most 1023 behind it and unseen."""
    rng = random.Random(11)
    key = key_for(profile)
    tx, rx = SrtpSession(profile, key, False), SrtpSession(profile, key, True)
    count = 150000
    protected = [tx.protect(rtp(index & 0xFFFF, 4, b"x")) for index in range(count)]
    forward = [1] * 60 + [2, 3, 7, 63, 64, 65, 129, 1023, 1024, 1500]
    backward = [0, 1, 2, 5, 63, 64, 65, 127, 128, 500, 1000, 1022, 1023, 1024, 1025, 3000]
    highest, seen, refused = -1, set(), 0
    while highest < count - 1600:
        if highest < 0 or rng.random() < 0.5:
            index = highest + rng.choice(forward)
        else:
            index = max(highest - rng.choice(backward), 0)
        if index > highest or (highest - index < 1024 and index not in seen):
            assert rx.unprotect(protected[index]) == rtp(index & 0xFFFF, 4, b"x"), index
            seen.add(index)
            highest = max(highest, index)
        else:
            refused += 1
            with pytest.raises(SrtpError, match="replayed"):
                rx.unprotect(protected[index])
    assert refused > 1000 and len(seen) > 3000, (refused, len(seen))


@pytest.mark.parametrize("profile", PROFILES)
def test_truncated_packets_are_refused(profile: int) -> None:
    key = key_for(profile)
    tx, rx = SrtpSession(profile, key, False), SrtpSession(profile, key, True)
    srtp = tx.protect(rtp(1, 3, bytes(30), csrcs=(1, 2), ext=("one", [(1, b"ab")])))
    srtcp = tx.protect_rtcp(sr(3) + sdes(3, b"x"))
    for length in range(0, 41):
        with pytest.raises(SrtpError):
            rx.unprotect(srtp[:length])
        with pytest.raises(SrtpError):
            rx.unprotect_rtcp(srtcp[:length])
        with pytest.raises(SrtpError):
            rx.unprotect(bytes(length))
        with pytest.raises(SrtpError):
            rx.unprotect_rtcp(bytes(length))
    for length in range(41, len(srtp)):
        with pytest.raises(SrtpError):
            rx.unprotect(srtp[:length])
    for length in range(0, 12):
        with pytest.raises(SrtpError, match="too short"):
            tx.protect(bytes([0x80]) + bytes(max(length - 1, 0)))
    for length in range(0, 8):
        with pytest.raises(SrtpError, match="too short"):
            tx.protect_rtcp(bytes([0x80]) + bytes(max(length - 1, 0)))
    assert rx.ssrc_count == 0


@pytest.mark.parametrize("profile", PROFILES)
def test_headers_longer_than_the_packet_are_refused(profile: int) -> None:
    tx = SrtpSession(profile, key_for(profile), False)
    for bad in (
        bytes([0x8F]) + bytes(11) + bytes(59),  # 15 CSRCs need 60 bytes
        bytes([0x90]) + bytes(11),  # X set, no extension header
        bytes([0x90]) + bytes(11) + b"\xbe\xde\x00\x02" + bytes(7),  # extension of 8 bytes, 7 there
        bytes([0x40]) + bytes(40),  # version 1
    ):
        with pytest.raises(SrtpError, match="malformed"):
            tx.protect(bad)
    with pytest.raises(SrtpError, match="malformed"):
        tx.protect_rtcp(bytes([0x40]) + bytes(20))
    # a header that exactly fills the packet (no payload) is fine
    tx.protect(bytes([0x90]) + bytes(11) + b"\xbe\xde\x00\x01" + bytes(4))


@pytest.mark.parametrize("profile", PROFILES)
def test_random_garbage_never_crashes(profile: int) -> None:
    rng = random.Random(profile)
    key = key_for(profile)
    tx, rx = SrtpSession(profile, key, False), SrtpSession(profile, key, True)
    genuine = tx.protect(rtp(1, 1, bytes(100), ext=("two", [(1, b"abc")])))
    for _ in range(3000):
        length = rng.choice([rng.randrange(0, 64), rng.randrange(0, 1500)])
        data = bytearray(rng.randbytes(length))
        if data and rng.random() < 0.7:
            data[0] = 0x80 | (data[0] & 0x3F)
        if rng.random() < 0.3:  # mutate a genuine packet
            data = bytearray(genuine[: rng.randrange(len(genuine) + 1)])
            for _ in range(rng.randrange(1, 4)):
                if data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
            if bytes(data) == genuine:
                continue
        for method in (rx.unprotect, rx.unprotect_rtcp):
            with pytest.raises(SrtpError):
                method(bytes(data))
        for method in (tx.protect, tx.protect_rtcp):
            try:
                method(bytes(data))
            except SrtpError:
                pass


def test_too_many_ssrcs() -> None:
    tx = SrtpSession(GCM128, key_for(GCM128), False)
    for ssrc in range(256):
        tx.protect(rtp(1, ssrc * 7919))
    with pytest.raises(ValueError, match="too many SSRCs") as info:
        tx.protect(rtp(1, 0xABCDEF))
    assert isinstance(info.value, SrtpError)
    with pytest.raises(SrtpError, match="too many SSRCs"):
        tx.protect_rtcp(sr(0xABCDEF))
    tx.protect(rtp(2, 255 * 7919))  # known SSRCs go on
    tx.protect_rtcp(sr(0))
    assert tx.ssrc_count == 256


@pytest.mark.parametrize("profile", PROFILES)
def test_bad_keys_and_profiles(profile: int) -> None:
    want = KEY_LEN[profile]
    for length in (0, want - 1, want + 1, 64):
        with pytest.raises(ValueError, match=f"needs a {want}-byte key") as info:
            SrtpSession(profile, bytes(length), False)
        assert not isinstance(info.value, SrtpError)
    with pytest.raises(ValueError, match="session keys are"):
        SrtpSession.from_session_keys(profile, bytes(want + 5), bytes(want + 5))


def test_unknown_profile_and_argument_types() -> None:
    for profile in (0, 3, 5, 6, 9, -1):
        with pytest.raises(ValueError, match="unknown SRTP profile"):
            SrtpSession(profile, bytes(30), False)
    with pytest.raises(TypeError):
        SrtpSession(1, "key", False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="master key must be 16 or 32"):
        _srtp_kdf(bytes(20), bytes(14), 0, 16)
