"""Fuzz gate definitions: signalling/access/gating.py `RoomConfig.from_json` / `Gate.from_json`.

Input: a room config as JSON text, the body of `PUT /admin/rooms/<name>` (and what a replica reads
back from Redis), e.g. {"gate": {"any": [{"standard": "erc721", ...}]}, "max_participants": 50}.
It is decoded with the untrusted-JSON loader first; only documents that loader accepts reach gating.
Contract: `from_json` raises only `GateError` (its message becomes the 400 answer); an accepted gate
round-trips through `to_json`/`from_json` unchanged, describes itself, and every condition encodes
its on-chain call (evaluation must never fail on a gate that validation let through).
"""

from __future__ import annotations

from _harness import Finding, instrumented, main

with instrumented():
    from signalling import safejson
    from signalling.access.gating import Gate, GateError, RoomConfig, _leaf_calldata

HOLDER = "0x00000000000000000000000000000000000000A1"


def test_one(data: bytes) -> None:
    try:
        obj = safejson.loads(data, max_bytes=64 * 1024)
    except safejson.JsonError:
        return
    try:
        cfg = RoomConfig.from_json("fuzz-room", obj, chain_ids=[31337, 1])
    except GateError as e:
        str(e)
        return
    if cfg.gate is None:
        return
    again = Gate.from_json(cfg.gate.to_json())
    if again != cfg.gate:
        raise Finding(f"gate does not round-trip: {cfg.gate.to_json()} -> {again.to_json()}")
    for cond in cfg.gate.conditions():
        cond.describe()
        _leaf_calldata(cond, HOLDER)


if __name__ == "__main__":
    main(test_one)
