"""Summary, canonical JSON, CID, Merkle tree, CID stores and SessionTracker grace behaviour."""

from __future__ import annotations

import asyncio
import json

import pytest
from eth_utils import keccak, to_checksum_address

from signalling.sessions.cidstore import CidError, DirCidStore, cid_of
from signalling.sessions.outbox import SqliteOutbox
from signalling.sessions.summary import (
    ZERO32,
    address_leaf,
    build_document,
    canonical_json,
    check_document,
    hash_pair,
    make_summary,
    merkle_proof,
    merkle_root,
    participant_proof,
    participants_root,
    room_id,
    verify_proof,
)
from signalling.sessions.tracker import SessionTracker

ADDRS = [to_checksum_address(f"0x{i:040x}") for i in range(1, 12)]


def test_cid_known_vector():
    assert cid_of(b"hello world\n") == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"


def test_canonical_json_sorted_compact_utf8():
    assert canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]}) == '{"a":[1,{"c":null,"d":"é"}],"b":1}'.encode()


def test_canonical_json_rejects_floats():
    with pytest.raises(TypeError):
        canonical_json({"a": 1.5})


def test_merkle_single_leaf():
    leaf = address_leaf(ADDRS[0])
    assert merkle_root([leaf]) == leaf
    assert merkle_proof([leaf], leaf) == []
    assert verify_proof([], leaf, leaf)


def test_merkle_empty_root_is_zero():
    assert merkle_root([]) == ZERO32


def test_merkle_three_leaves_by_hand():
    a, b, c = sorted(address_leaf(x) for x in ADDRS[:3])
    expected = hash_pair(hash_pair(a, b), c)  # odd last node is promoted
    assert participants_root(ADDRS[:3]) == expected
    assert participant_proof(ADDRS[:3], [x for x in ADDRS[:3] if address_leaf(x) == c][0]) == [hash_pair(a, b)]


def test_leaf_is_keccak_of_packed_address():
    assert address_leaf(ADDRS[0].lower()) == keccak(bytes.fromhex(ADDRS[0][2:]))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 11])
def test_merkle_every_proof_verifies(n):
    root = participants_root(ADDRS[:n])
    for a in ADDRS[:n]:
        assert verify_proof(participant_proof(ADDRS[:n], a), root, address_leaf(a))
    # a non-member cannot borrow a member's proof
    assert not verify_proof(participant_proof(ADDRS[:n], ADDRS[0]), root, address_leaf(ADDRS[-1])) or n == 11


def test_merkle_order_and_duplicates_do_not_matter():
    assert participants_root(ADDRS[:5]) == participants_root(list(reversed(ADDRS[:5])) + ADDRS[:2])


def test_proof_for_non_member_raises():
    with pytest.raises(KeyError):
        participant_proof(ADDRS[:3], ADDRS[5])


def _doc():
    return build_document(
        session_id=b"\x01" * 32, room="lobby", started_at=100, ended_at=160,
        events=[{"atMs": 100_000, "type": "joined", "identity": ADDRS[0].lower()},
                {"atMs": 101_000, "type": "joined", "identity": ADDRS[1]},
                {"atMs": 150_000, "type": "left", "identity": ADDRS[0]},
                {"atMs": 155_000, "type": "joined", "identity": ADDRS[2]},
                {"atMs": 160_000, "type": "left", "identity": ADDRS[1]},
                {"atMs": 160_000, "type": "left", "identity": ADDRS[2]}],
        tracks=[{"atMs": 101_500, "identity": ADDRS[1], "trackId": "t1", "kind": "video"}],
        media={ADDRS[1]: {"bytes": 1000, "packets": 10}, ADDRS[2]: {"bytes": 5, "packets": 1}},
    )


def test_summary_fields_derive_from_document():
    s = make_summary(_doc())
    assert s.room_id == room_id("lobby")
    assert (s.peak_participants, s.participant_count, s.media_bytes, s.media_packets) == (2, 3, 1005, 11)
    assert s.participants_root == participants_root(ADDRS[:3])
    assert s.cid == cid_of(s.document)
    assert check_document(s.document, s.fields()) == []


def test_check_document_reports_tampering():
    s = make_summary(_doc())
    doc = json.loads(s.document)
    doc["media"]["perParticipant"][ADDRS[1]]["bytes"] = 1
    tampered = canonical_json(doc)
    problems = check_document(tampered, s.fields())
    assert any("does not match its CID" in p for p in problems)
    assert any("mediaBytes" in p for p in problems)


def test_message_counts_are_recorded_and_checked_without_content():
    doc = build_document(session_id=b"\x02" * 32, room="lobby", started_at=100, ended_at=160,
                         events=[{"atMs": 100_000, "type": "joined", "identity": ADDRS[0]}], tracks=[], media={},
                         messages={ADDRS[0].lower(): 3, "guest-1a2b": 2})
    assert doc["messages"] == {"count": 5, "perParticipant": {ADDRS[0]: 3, "guest-1a2b": 2}}
    s = make_summary(doc)
    assert check_document(s.document, s.fields()) == []
    doc["messages"]["count"] = 4
    forged = canonical_json(doc)
    assert any("messages.count says 4" in p for p in check_document(forged, {**s.fields(), "cid": cid_of(forged)}))
    doc["messages"] = {"count": 1, "perParticipant": {ADDRS[0]: "1"}}
    problems = check_document(canonical_json(doc), s.fields())
    assert problems[-1] == ("document is malformed: messages must be an object with an integer 'count' and "
                            "integer 'perParticipant' counts")
    # a document from before data channels has none, and verifies as it did
    old = json.loads(make_summary(_doc()).document)
    del old["messages"]
    before = make_summary(old)
    assert check_document(before.document, before.fields()) == []


async def test_dir_store_roundtrip_and_idempotent(tmp_path):
    store = DirCidStore(tmp_path)
    cid = await store.put(b"hello world\n")
    assert cid == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    assert await store.put(b"hello world\n") == cid
    assert await store.get(cid) == b"hello world\n"
    with pytest.raises(KeyError):
        await store.get(cid_of(b"other"))
    with pytest.raises(CidError):
        await store.get("not-a-cid")


async def _entries(outbox):
    return [e.summary for e in await outbox.claim(100)]


async def test_tracker_rejoin_within_grace_continues_session(tmp_path):
    ob = SqliteOutbox(tmp_path / "o.db")
    tr = SessionTracker(ob, grace_s=0.3)
    sid = tr.participant_joined("r", ADDRS[0], at=1000.0)
    tr.participant_left("r", ADDRS[0], at=1001.0)
    await asyncio.sleep(0.1)
    assert tr.participant_joined("r", ADDRS[1], at=1001.1) == sid
    await asyncio.sleep(0.4)  # past the first grace timer: it must have been cancelled
    assert await _entries(ob) == []
    tr.participant_left("r", ADDRS[1], at=1005.0)
    await asyncio.sleep(0.5)
    await tr.drain()
    [s] = await _entries(ob)
    assert s.session_id == sid and s.participant_count == 2 and s.peak_participants == 1
    assert (s.started_at, s.ended_at) == (1000, 1005)
    assert tr.session_id("r") is None
    await ob.close()


async def test_tracker_join_after_grace_starts_new_session(tmp_path):
    ob = SqliteOutbox(tmp_path / "o.db")
    tr = SessionTracker(ob, grace_s=0.05)
    sid1 = tr.participant_joined("r", ADDRS[0], at=1.0)
    tr.track_published("r", ADDRS[0], "cam", "video", at=1.5)
    tr.add_media("r", ADDRS[0], 1200, 3)
    tr.participant_left("r", ADDRS[0], at=2.0)
    await asyncio.sleep(0.2)
    await tr.drain()
    sid2 = tr.participant_joined("r", ADDRS[0], at=3.0)
    assert sid2 != sid1
    [s] = await _entries(ob)
    assert s.session_id == sid1 and s.media_bytes == 1200 and s.media_packets == 3
    doc = json.loads(s.document)
    assert doc["tracks"] == [{"atMs": 1500, "identity": ADDRS[0], "kind": "video", "trackId": "cam"}]
    await tr.close_all(at=4.0)
    assert {x.session_id for x in await _entries(ob)} == {sid1, sid2}
    await ob.close()


async def test_tracker_retries_failed_put_until_durable(tmp_path):
    class Flaky(SqliteOutbox):
        fails = 2

        async def put(self, summary):
            if self.fails:
                self.fails -= 1
                raise OSError("disk full")
            await super().put(summary)

    ob = Flaky(tmp_path / "o.db")
    closed = []
    tr = SessionTracker(ob, grace_s=0.01, on_closed=closed.append)
    tr.participant_joined("r", ADDRS[0], at=1.0)
    tr.participant_left("r", ADDRS[0], at=2.0)
    await asyncio.sleep(0.05)
    assert closed == []  # not acknowledged while the put keeps failing
    await tr.drain()
    assert len(closed) == 1 and ob.fails == 0
    assert len(await _entries(ob)) == 1
    await ob.close()


async def test_tracker_counts_guests_but_keeps_them_out_of_the_tree(tmp_path):
    ob = SqliteOutbox(tmp_path / "o.db")
    tr = SessionTracker(ob, grace_s=0.01)
    tr.participant_joined("open", "guest-1a2b", at=1.0)
    tr.participant_joined("open", ADDRS[3].lower(), at=2.0)
    tr.add_media("open", "guest-1a2b", 10, 1)
    tr.participant_left("open", "guest-1a2b", at=3.0)
    tr.participant_left("open", ADDRS[3], at=4.0)
    await asyncio.sleep(0.05)
    await tr.drain()
    [s] = await _entries(ob)
    doc = json.loads(s.document)
    assert doc["participants"] == [ADDRS[3]] and doc["guests"] == ["guest-1a2b"]
    assert s.participant_count == 2 and s.participants_root == address_leaf(ADDRS[3])
    assert check_document(s.document, s.fields()) == []
    await ob.close()


async def test_a_track_published_again_is_one_track_of_the_session(tmp_path):
    """A screen shared, stopped and shared again keeps its track id: the summary lists it once, so
    a participant cycling unpublish/publish cannot grow the session's document."""
    ob = SqliteOutbox(tmp_path / "o.db")
    tr = SessionTracker(ob, grace_s=0.05)
    tr.participant_joined("r", ADDRS[0], at=1000.0)
    for i in range(50):
        tr.track_published("r", ADDRS[0], "TR_PA_a_1", "video", at=1000.0 + i)
    tr.track_published("r", ADDRS[0], "TR_PA_a_0", "audio", at=1001.0)
    tr.participant_left("r", ADDRS[0], at=1060.0)
    await asyncio.sleep(0.2)
    await tr.drain()
    [s] = await _entries(ob)
    assert [t["trackId"] for t in json.loads(s.document)["tracks"]] == ["TR_PA_a_1", "TR_PA_a_0"]
    await ob.close()
