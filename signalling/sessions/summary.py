"""Session summaries: the canonical document, its CID, the participants' Merkle tree.

A finished session has two forms:

* the **document**: canonical JSON (see `canonical_json`) with everything that happened — who joined
  and left when, which tracks were published, media counters per participant. It lives off-chain in
  the CID store; its CIDv1 (raw, sha2-256) is what the chain stores.
* the **Summary**: the fixed-size fields `SessionLog.recordSession` takes, all derivable from the
  document, so anyone holding the document can check the on-chain record (`check_document`).

Merkle tree (participants and batches), compatible with OpenZeppelin `MerkleProof.verify`:
  leaf(address) = keccak256(abi.encodePacked(address))  (the 20 address bytes)
  node(a, b)    = keccak256(min(a, b) ++ max(a, b))        (sorted pair, so proofs carry no sides)
Leaves are deduplicated and sorted ascending by their hash; each level pairs neighbours left to right
and an odd last node is promoted unchanged. One leaf: root = leaf, proof = []. No leaves: root = 0x00…0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import is_address, keccak, to_checksum_address

from signalling import safejson
from signalling.sessions.cidstore import cid_of

DOC_VERSION = 1
ZERO32 = b"\x00" * 32


# ---------------------------------------------------------------- canonical JSON

def canonical_json(obj: Any) -> bytes:
    """UTF-8 JSON with sorted keys, no whitespace, non-ASCII kept literal.

    Floats are refused: their text form is not stable across languages, and integers are all a
    summary needs (seconds, milliseconds, byte counts). Without floats the output is also valid
    DAG-JSON, so the document could be re-imported under the dag-json codec unchanged.
    """
    _reject_floats(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _reject_floats(obj: Any) -> None:
    if isinstance(obj, float):
        raise TypeError(f"canonical JSON has no floats (got {obj!r}); use integers")
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"canonical JSON keys must be strings (got {k!r})")
            _reject_floats(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _reject_floats(v)


# ---------------------------------------------------------------- ids

def room_id(room: str) -> bytes:
    """bytes32 room id = keccak256(utf8(room name))."""
    return keccak(text=room)


def new_session_id(room: str, started_at: int, nonce: bytes | None = None) -> bytes:
    """keccak256(utf8(room) ++ uint64be(started_at) ++ 16 random bytes): unique even for same-second starts."""
    nonce = os.urandom(16) if nonce is None else nonce
    return keccak(room.encode("utf-8") + int(started_at).to_bytes(8, "big") + nonce)


def hex32(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def from_hex32(s: str) -> bytes:
    raw = bytes.fromhex(s[2:] if s.startswith(("0x", "0X")) else s)
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}: {s!r}")
    return raw


# ---------------------------------------------------------------- Merkle

def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a <= b else keccak(b + a)


def address_leaf(address: str) -> bytes:
    """keccak256(abi.encodePacked(address)); raises ValueError for anything that isn't an address."""
    return keccak(bytes.fromhex(to_checksum_address(address)[2:]))


def _levels(leaves: Iterable[bytes]) -> list[list[bytes]]:
    level = sorted(set(leaves))
    levels = [level]
    while len(level) > 1:
        nxt = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
        level = nxt
    return levels


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    levels = _levels(leaves)
    return levels[-1][0] if levels[0] else ZERO32


def merkle_proof(leaves: Iterable[bytes], leaf: bytes) -> list[bytes]:
    """Sibling hashes from `leaf` up to the root; KeyError if the leaf is not in the tree."""
    levels = _levels(leaves)
    try:
        idx = levels[0].index(leaf)
    except ValueError:
        raise KeyError("leaf is not in the tree") from None
    proof = []
    for level in levels[:-1]:
        sib = idx ^ 1
        if sib < len(level):
            proof.append(level[sib])
        idx //= 2
    return proof


def verify_proof(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """Same computation as OpenZeppelin MerkleProof.verify."""
    h = leaf
    for p in proof:
        h = hash_pair(h, p)
    return h == root


def participants_root(addresses: Iterable[str]) -> bytes:
    return merkle_root(address_leaf(a) for a in addresses)


def participant_proof(addresses: Iterable[str], address: str) -> list[bytes]:
    return merkle_proof([address_leaf(a) for a in addresses], address_leaf(address))


# ---------------------------------------------------------------- the Summary

@dataclass(frozen=True)
class Summary:
    """The on-chain fields of one session, plus the canonical document they were derived from."""

    session_id: bytes
    room_id: bytes
    started_at: int
    ended_at: int
    peak_participants: int
    participant_count: int
    participants_root: bytes
    media_bytes: int
    media_packets: int
    cid: str
    document: bytes

    def contract_args(self) -> tuple:
        """Arguments of SessionLog.recordSession, in order."""
        return (self.session_id, self.room_id, self.started_at, self.ended_at, self.peak_participants,
                self.participant_count, self.participants_root, self.media_bytes, self.media_packets,
                self.cid)

    def leaf(self) -> bytes:
        """Batch leaf: keccak256(abi.encode(<recordSession fields with cid as keccak256(bytes(cid))>))."""
        return summary_leaf(self.fields())

    def fields(self) -> dict[str, Any]:
        """The on-chain fields as JSON-friendly values (hex for bytes32)."""
        return {
            "sessionId": hex32(self.session_id), "roomId": hex32(self.room_id),
            "startedAt": self.started_at, "endedAt": self.ended_at,
            "peakParticipants": self.peak_participants, "participantCount": self.participant_count,
            "participantsRoot": hex32(self.participants_root), "mediaBytes": self.media_bytes,
            "mediaPackets": self.media_packets, "cid": self.cid,
        }

    def to_json(self) -> str:
        """Serialised form kept in the outbox (fields + the document text)."""
        return json.dumps({"fields": self.fields(), "document": self.document.decode("utf-8")},
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Summary:
        data = json.loads(text)
        return from_document(data["document"].encode("utf-8"))


def summary_leaf(f: dict[str, Any]) -> bytes:
    return keccak(abi_encode(
        ["bytes32", "bytes32", "uint64", "uint64", "uint32", "uint32", "bytes32", "uint64", "uint64",
         "bytes32"],
        [from_hex32(f["sessionId"]), from_hex32(f["roomId"]), f["startedAt"], f["endedAt"],
         f["peakParticipants"], f["participantCount"], from_hex32(f["participantsRoot"]),
         f["mediaBytes"], f["mediaPackets"], keccak(f["cid"].encode("utf-8"))],
    ))


def norm_identity(identity: str) -> str:
    """Addresses are checksummed; anything else (guest ids in open rooms) is kept verbatim."""
    return to_checksum_address(identity) if is_address(identity) else identity


def split_identities(identities: Iterable[str]) -> tuple[list[str], list[str]]:
    """(sorted distinct addresses, sorted distinct guest ids)."""
    ids = {norm_identity(i) for i in identities}
    return sorted(i for i in ids if is_address(i)), sorted(i for i in ids if not is_address(i))


def build_document(
    *, session_id: bytes, room: str, started_at: int, ended_at: int,
    events: Sequence[dict[str, Any]], tracks: Sequence[dict[str, Any]],
    media: dict[str, dict[str, int]], messages: dict[str, int] | None = None, end_reason: str = "",
) -> dict[str, Any]:
    """Assemble the document dict.

    `participants` = addresses with a join event (checksummed, sorted; these form participantsRoot);
    `guests` = other identities that joined (guest ids of open rooms; counted, not in the tree).

    events: {"atMs": int, "type": "joined"|"left", "identity": address}, in the order they happened.
    tracks: {"atMs": int, "identity": address, "trackId": str, "kind": str}.
    media:  {address: {"bytes": int, "packets": int}}.
    messages: {address: data channel messages sent} (counts only: a summary holds no content).
    end_reason: why the session ended when it was not the room emptying ("node_lost": the media node
    hosting it died, and the session was closed from its journal); the key is absent otherwise.
    """
    norm_events = [{**e, "identity": norm_identity(e["identity"])} for e in events]
    participants, guests = split_identities(e["identity"] for e in norm_events if e["type"] == "joined")
    per = {norm_identity(a): {"bytes": int(v["bytes"]), "packets": int(v["packets"])}
           for a, v in media.items()}
    return {
        "version": DOC_VERSION,
        "sessionId": hex32(session_id),
        "room": room,
        "roomId": hex32(room_id(room)),
        "startedAt": int(started_at),
        "endedAt": int(ended_at),
        "participants": participants,
        "guests": guests,
        "participantsRoot": hex32(participants_root(participants)),
        "peakParticipants": peak_from_events(norm_events),
        "events": norm_events,
        "tracks": [{**t, "identity": norm_identity(t["identity"])} for t in tracks],
        "media": {
            "bytes": sum(v["bytes"] for v in per.values()),
            "packets": sum(v["packets"] for v in per.values()),
            "perParticipant": per,
        },
        "messages": {
            "count": sum(int(n) for n in (messages or {}).values()),
            "perParticipant": {norm_identity(a): int(n) for a, n in (messages or {}).items()},
        },
        **({"endReason": end_reason} if end_reason else {}),
    }


def peak_from_events(events: Iterable[dict[str, Any]]) -> int:
    present: set[str] = set()
    peak = 0
    for e in events:
        if e["type"] == "joined":
            present.add(e["identity"])
        elif e["type"] == "left":
            present.discard(e["identity"])
        peak = max(peak, len(present))
    return peak


def from_document(document: bytes) -> Summary:
    """Derive the Summary from canonical document bytes (the inverse of what the tracker does)."""
    doc = json.loads(document)
    return Summary(
        session_id=from_hex32(doc["sessionId"]),
        room_id=from_hex32(doc["roomId"]),
        started_at=doc["startedAt"],
        ended_at=doc["endedAt"],
        peak_participants=doc["peakParticipants"],
        participant_count=len(doc["participants"]) + len(doc.get("guests", [])),
        participants_root=from_hex32(doc["participantsRoot"]),
        media_bytes=doc["media"]["bytes"],
        media_packets=doc["media"]["packets"],
        cid=cid_of(document),
        document=document,
    )


def make_summary(doc: dict[str, Any]) -> Summary:
    return from_document(canonical_json(doc))


MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # a document comes from a store anyone may write to


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def document_shape_problem(doc: Any) -> str | None:
    """The first way `doc` is not shaped like a summary document (types of every field that the
    checks below read), or None. A fetched document is untrusted: without this a list of mixed
    types or a wrong-typed field would raise inside the checks instead of being reported."""
    if not isinstance(doc, dict):
        return f"expected an object, got {type(doc).__name__}"
    for key in ("sessionId", "room", "roomId", "participantsRoot"):
        if not isinstance(doc.get(key), str):
            return f"{key} must be a string"
    for key in ("startedAt", "endedAt", "peakParticipants"):
        if not _is_int(doc.get(key)):
            return f"{key} must be an integer"
    for key in ("participants", "guests"):
        value = doc.get(key, [])
        if not isinstance(value, list):
            return f"{key} must be a list"
        for i, item in enumerate(value):
            if not isinstance(item, str):
                return f"{key}[{i}] must be a string, got {type(item).__name__}"
    for i, a in enumerate(doc["participants"]):
        if not is_address(a):
            return f"participants[{i}] {a[:50]!r} is not an address"
    events = doc.get("events")
    if not isinstance(events, list):
        return "events must be a list"
    for i, e in enumerate(events):
        if not isinstance(e, dict) or not isinstance(e.get("type"), str) or not isinstance(e.get("identity"), str):
            return f"events[{i}] must be an object with string 'type' and 'identity'"
    media = doc.get("media")
    if not isinstance(media, dict) or not isinstance(media.get("perParticipant"), dict):
        return "media must be an object with a 'perParticipant' object"
    for who, v in media["perParticipant"].items():
        if not isinstance(v, dict) or not _is_int(v.get("bytes")) or not _is_int(v.get("packets")):
            return f"media.perParticipant[{who[:50]!r}] must have integer 'bytes' and 'packets'"
    messages = doc.get("messages", {"count": 0, "perParticipant": {}})  # (documents before data channels)
    if not isinstance(messages, dict) or not _is_int(messages.get("count")) \
            or not isinstance(messages.get("perParticipant"), dict) \
            or not all(_is_int(n) for n in messages["perParticipant"].values()):
        return "messages must be an object with an integer 'count' and integer 'perParticipant' counts"
    return None


def check_document(document: bytes, onchain: dict[str, Any]) -> list[str]:
    """Every reason the document does not back the on-chain record; empty list = consistent.

    `onchain` holds the record's fields as in `Summary.fields()` (cid included). Nothing in the
    document is trusted: derived values (room id, Merkle root, counts, peak, totals) are recomputed.
    """
    problems: list[str] = []
    actual_cid = cid_of(document)
    if actual_cid != onchain["cid"]:
        problems.append(f"document does not match its CID: on-chain cid {onchain['cid']}, "
                        f"stored bytes hash to {actual_cid}")
    try:
        doc = safejson.loads(document, max_bytes=MAX_DOCUMENT_BYTES)
    except safejson.JsonError as e:
        problems.append(f"document is malformed: not JSON: {e}")
        return problems
    shape = document_shape_problem(doc)
    if shape:
        problems.append(f"document is malformed: {shape}")
        return problems
    try:
        if canonical_json(doc) != document:
            problems.append("document is not canonical JSON (sorted keys, no whitespace)")
        participants = [to_checksum_address(a) for a in doc["participants"]]
        guests = list(doc.get("guests", []))
        per = doc["media"]["perParticipant"]
        derived = {
            "sessionId": doc["sessionId"].lower(),
            "roomId": hex32(room_id(doc["room"])),
            "startedAt": doc["startedAt"],
            "endedAt": doc["endedAt"],
            "peakParticipants": peak_from_events(doc["events"]),
            "participantCount": len(set(participants)) + len(set(guests)),
            "participantsRoot": hex32(participants_root(participants)),
            "mediaBytes": sum(int(v["bytes"]) for v in per.values()),
            "mediaPackets": sum(int(v["packets"]) for v in per.values()),
        }
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        problems.append(f"document is malformed: {type(e).__name__}: {e}")
        return problems
    # The document's own copies must agree with what it implies, or a reader could be misled.
    for key, own in (("roomId", doc.get("roomId")), ("participantsRoot", doc.get("participantsRoot")),
                     ("peakParticipants", doc.get("peakParticipants")),
                     ("mediaBytes", doc["media"].get("bytes")),
                     ("mediaPackets", doc["media"].get("packets"))):
        if isinstance(own, str):
            own = own.lower()
        if own != derived[key]:
            problems.append(f"document field {key} says {own!r} but its contents give {derived[key]!r}")
    messages = doc.get("messages")
    if messages is not None and messages["count"] != sum(messages["perParticipant"].values()):
        problems.append(f"document field messages.count says {messages['count']!r} but its perParticipant "
                        f"counts add up to {sum(messages['perParticipant'].values())!r}")
    joined = split_identities(e["identity"] for e in doc["events"] if e["type"] == "joined")
    if joined != (sorted(set(participants)), sorted(set(guests))):
        problems.append("participants/guests lists differ from the identities that joined")
    for key, value in derived.items():
        chain_value = onchain[key]
        if isinstance(chain_value, str):
            chain_value = chain_value.lower()
        if chain_value != value:
            problems.append(f"{key}: on-chain {chain_value!r}, recomputed from the document {value!r}")
    return problems
