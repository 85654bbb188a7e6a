"""Issue #11, the signalling edge: hostile frames, floods, sockets that never read, foreign origins.

Every test talks to a real server (in this process, or `basement serve` as a child process where
the finding was a crash) over real sockets; rate limits run on a frozen clock so counts are exact.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from signalling.access import gating
from signalling.protocol import messages as protocol
from signalling.protocol.messages import ProtocolError


def test_cli_lowers_the_recursion_limit_py_ecc_raised():
    code = ("import sys, py_ecc; assert sys.getrecursionlimit() >= 100000\n"
            "from signalling import cli; cli.cap_recursion_limit(); print(sys.getrecursionlimit())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout) == 1024 * 12


# --- 2. parser and validation -------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "code", "words"), [
    ('{"type": "ping", "id": ' + "1" * 4301 + "}", "bad_json", "4300"),
    (bytearray(b'{"type": "ping"}\xff'), "bad_message", "binary"),
    ('{"type": "ping", "id": "\ud800"}', "bad_json", "surrogate"),
    ("[" * 17 + "]" * 17, "bad_json", f"nested deeper than {protocol.MAX_DEPTH} levels"),
    ('{"type": "ping"}]', "bad_json", "Extra data at char 16"),
    ("é" * (protocol.MAX_MESSAGE_BYTES // 2 + 1), "too_large", "larger than"),
])
def test_parse_turns_every_bad_input_into_a_protocol_error(raw, code, words):
    with pytest.raises(ProtocolError) as e:
        protocol.parse(raw)
    assert e.value.code == code and words in e.value.message, e.value.message


@pytest.mark.parametrize("name", ["a\x85b", "del\x7f", "\u202eevil", "iso\u2066late", "zero\u200bwidth",
                                  "line\u2028sep", "tab\there", "x" * 65])
def test_join_refuses_names_with_control_format_or_bidi_characters(name):
    with pytest.raises(ProtocolError) as e:
        protocol.parse(json.dumps({"type": "join", "room": "demo", "name": name}))
    assert e.value.code == "bad_field" and "join: name" in e.value.message


def test_join_accepts_ordinary_unicode_names():
    for name in ("Zoë", "李雷", "👩\u200d👩\u200d👧 family", "Ana María"):
        assert protocol.parse(json.dumps({"type": "join", "room": "demo", "name": name}))["name"] == name


@pytest.mark.parametrize("room", ["demo\n", "demo-gated\n", "\ndemo", "de mo", "-demo", "x" * 65])
def test_room_names_match_whole_strings_in_protocol_and_gating(room):
    with pytest.raises(ProtocolError) as e:
        protocol.parse(json.dumps({"type": "join", "room": room}))
    assert e.value.code == "bad_field"
    with pytest.raises(gating.GateError):
        gating.validate_room_name(room)


def test_gating_and_protocol_share_one_room_name_definition():
    assert gating._ROOM_NAME is protocol.ROOM_RE
