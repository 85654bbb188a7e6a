"""Gates: strict JSON, evaluation on both chains via one Multicall3 call, cache, re-check, fail-closed."""

from __future__ import annotations

import json

import pytest

from signalling.access.gating import (
    Gate,
    GateError,
    MemoryRoomRegistry,
    RoomConfig,
)

ADDR = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.mark.parametrize(("obj", "reason"), [
    ({"standard": "erc721", "chainId": 1, "contract": ADDR.lower()}, "bad checksum"),
    ({"standard": "erc721", "chainId": 1, "contract": "0x1234"}, "is not an address"),
    ({"standard": "erc777", "chainId": 1, "contract": ADDR}, "unknown standard 'erc777'"),
    ({"standard": "erc20", "chainId": 1, "contract": ADDR, "minBalance": "0"}, "minBalance: must be positive"),
    ({"standard": "erc20", "chainId": 1, "contract": ADDR, "minBalance": 5.5}, "is not a decimal string"),
    ({"standard": "erc20", "chainId": 1, "contract": ADDR, "minBalance": "-1"}, "is not a decimal string"),
    ({"standard": "erc1155", "chainId": 1, "contract": ADDR, "tokenId": "1", "minAmount": 0},
     "minAmount: must be positive"),
    ({"standard": "erc1155", "chainId": 1, "contract": ADDR}, "needs tokenId"),
    ({"standard": "erc721", "chainId": 0, "contract": ADDR}, "chainId: must be positive"),
    ({"standard": "erc721", "chainId": 1, "contract": ADDR, "extra": 1}, "unknown field(s) extra"),
    ({"all": []}, "must be a non-empty list"),
    ({"any": {"standard": "erc721"}}, "must be a non-empty list"),
    ({"all": [{"standard": "erc721", "chainId": 1, "contract": ADDR}], "standard": "erc721"},
     "must have no other fields"),
    ({"all": [[{"standard": "erc721", "chainId": 1, "contract": ADDR}]]}, "gate.all[0]: expected an object"),
    ({"nope": 1}, "expected 'all', 'any' or a condition"),
    ({"all": [{"any": [{"all": [{"any": [{"all": [{"standard": "erc721", "chainId": 1, "contract": ADDR}]}]}]}]}]},
     "nested deeper than"),
])
def test_gate_json_is_strict(obj: dict, reason: str) -> None:
    with pytest.raises(GateError) as info:
        Gate.from_json(obj)
    assert reason in str(info.value)


def test_gate_json_roundtrip() -> None:
    obj = {"any": [
        {"standard": "erc20", "chainId": 1, "contract": ADDR, "minBalance": "2.50"},
        {"all": [{"standard": "erc721", "chainId": 1, "contract": ADDR, "tokenId": 7},
                 {"standard": "erc1155", "chainId": 1, "contract": ADDR, "tokenId": "3"}]},
    ]}
    gate = Gate.from_json(obj)
    again = Gate.from_json(json.loads(json.dumps(gate.to_json())))
    assert again == gate
    assert gate.to_json()["any"][0]["minBalance"] == "2.5"
    assert gate.to_json()["any"][1]["all"][0]["tokenId"] == "7"
    assert gate.to_json()["any"][1]["all"][1]["minAmount"] == "1"


async def test_memory_registry() -> None:
    reg = MemoryRoomRegistry()
    cfg = RoomConfig.from_json("vip", {"gate": {"standard": "erc721", "chainId": 1, "contract": ADDR},
                                       "max_participants": 8})
    await reg.put(cfg)
    await reg.put(RoomConfig.from_json("a-room", {}))
    assert [r.name for r in await reg.list()] == ["a-room", "vip"]
    assert (await reg.get("vip")) == cfg and (await reg.get("a-room")).gate is None
    assert await reg.delete("vip") and not await reg.delete("vip")
    with pytest.raises(GateError, match="room name"):
        RoomConfig.from_json("../etc", {})
    with pytest.raises(GateError, match="max_participants"):
        RoomConfig.from_json("x", {"max_participants": 0})
    with pytest.raises(GateError, match="chain 1 is not served here"):
        RoomConfig.from_json("x", {"gate": {"standard": "erc721", "chainId": 1, "contract": ADDR}}, chain_ids=[5])


def test_a_room_s_end_to_end_encryption_is_required_optional_or_off():
    for mode in ("required", "optional", "off"):
        cfg = RoomConfig.from_json("e", {"e2ee": mode})
        assert cfg.e2ee == mode
        assert RoomConfig.from_json("e", {k: v for k, v in cfg.to_json().items() if k != "name"}) == cfg
    assert RoomConfig.from_json("e", {}).e2ee is None and "e2ee" not in RoomConfig.from_json("e", {}).to_json()
    for bad in ("on", True, "REQUIRED"):
        with pytest.raises(GateError, match="e2ee: must be 'required', 'optional', 'off' or null"):
            RoomConfig.from_json("e", {"e2ee": bad})
