"""End-to-end encryption with aiortc clients (docs/e2ee.md): a room that requires it refuses
unencrypted tracks and one that is off refuses encrypted ones; with passphrase keys, encrypted VP8
and Opus decode for a subscriber with the key, and for one without it nothing decodes, and what the
SFU forwarded is SFrame ciphertext under the publisher's key; with wallet keys, members signed in
with their wallets decode each other, an announcement another wallet signed is refused by all, and
after someone leaves the media is under a key it never had."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from eth_account import Account

from signalling.access.gating import RoomConfig
from signalling.e2ee.frames import clear_bytes
from signalling.e2ee.keys import PassphraseKeys, WalletKeys, kid_of
from signalling.e2ee.sframe import Keyring, SFrameError, parse_header
from signalling.protocol.client import Client, ServerError
from tests.support.e2ee import record_video, signer
from tests.support.media import CounterVideo, Sink, Tone
from tests.support.servers import native_only
from tests.support.signin import wallet_grant

# the subject is the clients' encryption: the SFU forwards these payloads as it forwards any (every
# forwarding test runs on both data paths), so one run, on the native path
pytestmark = native_only

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
async def clients():
    made: list[Client] = []

    async def make(url: str, room: str, name: str, grant: str | None = None, **kw) -> Client:
        c = Client(url, **kw)
        made.append(c)
        await c.connect()
        await c.join(room, name, grant)
        return c

    yield make
    for c in made:
        await c.close()


async def test_encrypted_media_decodes_with_the_key_and_not_without(make_server, clients):
    server = await make_server()
    await server.control.registry.put(RoomConfig("secret", e2ee="required"))
    await server.control.registry.put(RoomConfig("plain", e2ee="off"))

    # a required room: an unencrypted publish is refused, and says why
    plain = await clients(server.url, "secret", "plain")
    with pytest.raises(ServerError) as e:
        await plain.publish(video=CounterVideo(160, 120))
    assert e.value.code == "e2ee_required", e.value
    # (a data channel carries no media: it needs no encryption)

    pub = await clients(server.url, "secret", "pub", e2ee=PassphraseKeys(PASSPHRASE))
    sub = await clients(server.url, "secret", "sub", e2ee=PassphraseKeys(PASSPHRASE))
    eve = await clients(server.url, "secret", "eve")  # in the room, without the passphrase
    wrong = await clients(server.url, "secret", "wrong", e2ee=PassphraseKeys("not the passphrase"))
    forwarded = record_video(eve)
    await pub.publish(video=CounterVideo(160, 120), audio=Tone())
    pid = pub.participant["id"]

    sinks = {}
    for c in (sub, eve, wrong):
        for kind in ("video", "audio"):
            info, track = await c.wait_track(kind=kind, participant=pid, timeout=20)
            assert info["encryption"] == "sframe", info
            sinks[(c, kind)] = Sink(track, read_counters=kind == "video")
    # with the key: the publisher's frames, whole and in order, at its size
    await sinks[(sub, "video")].wait_frames(30, timeout=20)
    await sinks[(sub, "audio")].wait_frames(50, timeout=20)
    video = sinks[(sub, "video")]
    assert video.sizes == {(160, 120)}
    assert sorted(video.counters) == video.counters and len(set(video.counters)) >= 25, video.counters
    assert sum(sub.undecryptable.values()) == 0
    # without it: nothing decodes (a wrong key: nothing decrypts, so nothing reaches the decoder)
    await asyncio.sleep(1.0)
    assert sinks[(wrong, "video")].frames == 0 and sinks[(wrong, "audio")].frames == 0
    assert wrong.undecryptable[pub.published["video"]] >= 30
    # without any key the ciphertext reaches the decoder, which fails on it or conceals it into
    # noise: never the picture, whose counters would read as a run (c, c + 1, c + 2)
    seen = sinks[(eve, "video")].counters
    assert not [c for c in seen if c + 1 in seen and c + 2 in seen], seen

    # what the SFU forwarded: VP8's first bytes in the clear, then SFrame under the publisher's key
    assert len(forwarded) >= 20
    ring = Keyring()
    keys = PassphraseKeys(PASSPHRASE)
    keys.start("secret", "PA_anyone", 0.0)
    ring.add(kid_of(pid), keys.base_key(pid))
    key_frames = 0
    for frame in forwarded:
        n = clear_bytes("video/vp8", frame)
        key_frames += n == 10
        assert parse_header(frame[n:])[0] == kid_of(pid)
        ring.decrypt(frame[n:], frame[:n])  # raises unless it is exactly that
        with pytest.raises(SFrameError):
            ring.decrypt(frame[n:], b"")  # (the clear bytes are authenticated)
    assert key_frames >= 1
    counters = [parse_header(f[clear_bytes("video/vp8", f):])[1] for f in forwarded]
    assert len(set(counters)) == len(counters)  # each frame its own counter, so its own nonce

    # a room that is off: an encrypted publish is refused
    other = await clients(server.url, "plain", "pub2", e2ee=PassphraseKeys(PASSPHRASE))
    with pytest.raises(ServerError) as e:
        await other.publish(video=CounterVideo(160, 120))
    assert e.value.code == "e2ee_off", e.value


async def test_wallet_keys_decode_for_members_refuse_an_impostor_and_lock_out_a_leaver(make_server, clients):
    server = await make_server()
    await server.control.registry.put(RoomConfig("vault", e2ee="required"))
    ann, ben, cy, mal, other = (Account.create() for _ in range(5))
    async with aiohttp.ClientSession() as http:
        grants = {acct.address: await wallet_grant(http, server.url, "vault", acct) for acct in (ann, ben, cy, mal)}
    a = await clients(server.url, "vault", "ann", grants[ann.address], e2ee=WalletKeys(signer(ann)))
    b = await clients(server.url, "vault", "ben", grants[ben.address], e2ee=WalletKeys(signer(ben)))
    c = await clients(server.url, "vault", "cy", grants[cy.address], e2ee=WalletKeys(signer(cy)))
    # mal is signed in with her wallet, and announces a key signed by another one
    m = await clients(server.url, "vault", "mal", grants[mal.address], e2ee=WalletKeys(signer(other)))
    forwarded = record_video(b)
    await a.publish(video=CounterVideo(160, 120))
    await m.publish(video=CounterVideo(176, 144))
    for x in (b, c):
        await x.publish(data=True)
    ids = {x: x.participant["id"] for x in (a, b, c, m)}
    for x in (a, b, c):
        await x.wait_for(lambda x=x: len(x.e2ee.verified) == 2 and x.e2ee.refused, timeout=20)
        assert x.e2ee.verified == {ids[y]: acct.address for y, acct in ((a, ann), (b, ben), (c, cy)) if y is not x}
        assert x.e2ee.refused[0] == (ids[m], f"the announcement is signed by {other.address}, not by the "
                                              f"participant's wallet {mal.address}")
    sinks = {}
    for x in (b, c):
        for publisher in (a, m):
            _, track = await x.wait_track(kind="video", participant=ids[publisher], timeout=20)
            sinks[(x, publisher)] = Sink(track, read_counters=True)
    for x in (b, c):
        await sinks[(x, a)].wait_frames(20, timeout=20)
        assert sinks[(x, a)].sizes == {(160, 120)}
    assert sinks[(b, m)].frames == 0 and sinks[(c, m)].frames == 0  # the impostor's media: not a frame

    # cy leaves: ann's next frames are under a key cy never had
    kept = Keyring()
    kept.keys = dict(c.e2ee.keyring.keys)
    # (frames before ben had ann's key, at the start, did not decrypt: from now on none may fail)
    lost = b.undecryptable[a.published["video"]]
    await c.leave()
    new_kid = kid_of(ids[a], 1)
    await b.wait_for(lambda: any(_kid(f) == new_kid for f in forwarded), timeout=20)
    before = sinks[(b, a)].frames
    await sinks[(b, a)].wait_frames(before + 20, timeout=20)  # and ben decodes on, without a gap
    fresh = [f for f in forwarded if _kid(f) == new_kid]
    assert fresh and not any(_opens(kept, f) for f in fresh), "who left can still decrypt"
    assert _opens(kept, next(f for f in forwarded if _kid(f) == kid_of(ids[a], 0)))  # (what it had, it had)
    assert b.undecryptable[a.published["video"]] == lost, b.undecryptable  # the new key came before its frames
    assert b.undecryptable[m.published["video"]] >= 30  # (the impostor's, all of them)


def _kid(frame: bytes) -> int:
    return parse_header(frame[clear_bytes("video/vp8", frame):])[0]


def _opens(ring: Keyring, frame: bytes) -> bool:
    n = clear_bytes("video/vp8", frame)
    try:
        ring.decrypt(frame[n:], frame[:n])
    except SFrameError:
        return False
    return True
