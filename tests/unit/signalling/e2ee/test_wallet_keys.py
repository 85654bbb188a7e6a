"""WalletKeys (identity-bound SFrame keys) as a room of clients runs them, the server's relay played
by `Room`: announcements signed by each wallet, keys wrapped for each recipient, a new key when
someone leaves; and what is refused — an announcement another wallet signed, a key from someone
unverified, a key under another sender's KID, an expired or misdirected announcement."""

from __future__ import annotations

import json

import pytest
from eth_account import Account

from signalling.e2ee import announce
from signalling.e2ee.keys import ANNOUNCE_TOPIC, KEY_TOPIC, Outgoing, WalletKeys, kid_of
from signalling.e2ee.sframe import Keyring, SFrameError
from tests.support.e2ee import NOW, Room, signer


def frame_from(keys: WalletKeys) -> bytes:
    return keys.send_key().encrypt(b"a frame", b"clear")


def opens(ring: Keyring, ct: bytes) -> bool:
    try:
        ring.decrypt(ct, b"clear")
    except SFrameError:
        return False
    return True


@pytest.fixture
def wallets():
    return [Account.create() for _ in range(4)]


def test_each_gets_the_others_keys_from_their_wallets_and_a_leaver_is_locked_out(wallets):
    room = Room()
    a = room.join("PA_a", WalletKeys(signer(wallets[0])), wallets[0].address)
    b = room.join("PA_b", WalletKeys(signer(wallets[1])), wallets[1].address)
    c = room.join("PA_c", WalletKeys(signer(wallets[2])), wallets[2].address)
    for keys, others in ((a, ("PA_b", "PA_c")), (b, ("PA_a", "PA_c")), (c, ("PA_a", "PA_b"))):
        assert keys.refused == []
        assert keys.verified == {p: room.members[p][1] for p in others}
    for sender in (a, b, c):
        ct = frame_from(sender)
        for receiver in (a, b, c):
            if receiver is not sender:
                assert receiver.keyring.decrypt(ct, b"clear")[1] == b"a frame"

    old_ring = c.keyring  # what c has when it leaves
    room.leave("PA_c")
    assert a.send_key().kid == kid_of("PA_a", 0)  # the new key goes out first, and is used a moment later
    room.tick(0.5)
    assert a.send_key().kid == kid_of("PA_a", 0)
    room.tick(0.6)
    assert a.send_key().kid == kid_of("PA_a", 1) and b.send_key().kid == kid_of("PA_b", 1)
    ct = frame_from(a)
    assert b.keyring.decrypt(ct, b"clear")[1] == b"a frame"
    assert not opens(old_ring, ct), "the one who left can still decrypt"
    assert not opens(old_ring, frame_from(b))


def test_a_newcomer_gets_the_current_keys_and_a_timer_rekeys(wallets):
    room = Room()
    a = room.join("PA_a", WalletKeys(signer(wallets[0])), wallets[0].address)
    room.tick(700)  # past REKEY_EVERY_S: a new key, then in use
    room.tick(2)
    assert a.send_key().kid == kid_of("PA_a", 1)
    b = room.join("PA_b", WalletKeys(signer(wallets[1])), wallets[1].address)
    assert opens(b.keyring, frame_from(a)) and opens(a.keyring, frame_from(b))


def test_an_announcement_signed_by_another_wallet_is_refused_and_its_keys_too(wallets):
    room = Room()
    a = room.join("PA_a", WalletKeys(signer(wallets[0])), wallets[0].address)
    # mallory is signed in as wallets[3] but announces a key signed by wallets[2]
    mallory = WalletKeys(signer(wallets[2]))
    room.members["PA_m"] = (mallory, wallets[3].address)
    room.deliver("PA_m", mallory.start("room", "PA_m", room.now))
    why = f"signed by {wallets[2].address}, not by the participant's wallet {wallets[3].address}"
    assert [(p, r) for p, r in a.refused] == [("PA_m", f"the announcement is {why}")]
    assert "PA_m" not in a.verified
    # what the server could do: stamp a forged announcement with a's own id and identity
    forged = WalletKeys(signer(wallets[2]))
    out = forged.start("room", "PA_a", room.now)
    b = room.join("PA_b", WalletKeys(signer(wallets[1])), wallets[1].address)
    room.deliver("PA_a", out, identity=wallets[0].address)
    assert b.refused[-1][1].startswith(f"the announcement is signed by {wallets[2].address}")
    assert b.verified["PA_a"] == wallets[0].address  # a's real key stands
    assert opens(b.keyring, frame_from(a))
    # a key message from someone never verified is refused
    room.deliver("PA_m", [Outgoing(KEY_TOPIC, json.dumps({"v": 1, "kid": kid_of("PA_m"), "keys": {}}))])
    assert a.refused[-1] == ("PA_m", "a key from a participant whose announcement was not verified")


def test_a_member_cannot_send_a_key_under_another_senders_kid(wallets):
    room = Room()
    a = room.join("PA_a", WalletKeys(signer(wallets[0])), wallets[0].address)
    b = room.join("PA_b", WalletKeys(signer(wallets[1])), wallets[1].address)
    squat = json.dumps({"v": 1, "kid": kid_of("PA_a", 7), "keys": {}})
    room.deliver("PA_b", [Outgoing(KEY_TOPIC, squat)])
    assert a.refused[-1] == ("PA_b", "a key under a KID that is not the sender's")
    assert b.refused == []


@pytest.mark.parametrize("change, why", [
    ({"room": "other"}, "the announcement is for room 'other', not this one"),
    ({"participant": "PA_x"}, "the announcement names another participant than the one who sent it"),
    ({"expires_at": int(NOW) - 1}, "the announcement has expired"),
    ({"expires_at": int(NOW) + 2 * 86400}, "the announcement's expiry is too far ahead"),
])
def test_a_misdirected_or_stale_announcement_is_refused(wallets, change, why):
    fields = {"room": "room", "participant": "PA_b", "public_key": bytes(32), "expires_at": int(NOW) + 60, **change}
    text = announce.Announcement(**fields).text()
    with pytest.raises(announce.AnnouncementError) as e:
        announce.verify(text, signer(wallets[1])(text), "room", "PA_b", wallets[1].address, NOW)
    assert str(e.value) == why


def test_malformed_e2ee_messages_are_refused_with_a_reason(wallets):
    room = Room()
    a = room.join("PA_a", WalletKeys(signer(wallets[0])), wallets[0].address)
    for data in ("not json", "[]", json.dumps({"v": 2}), json.dumps({"v": 1, "text": "x" * 2000, "signature": ""}),
                 json.dumps({"v": 1, "text": "Basement end-to-end encryption key\nRoom: room", "signature": "0x"})):
        before = len(a.refused)
        a.on_message({"from": "PA_z", "identity": wallets[3].address, "topic": ANNOUNCE_TOPIC, "data": data}, NOW)
        assert len(a.refused) == before + 1, data
    assert a.verified == {}
