"""The one loader for untrusted JSON: what it refuses, and that it refuses it cheaply and precisely."""

from __future__ import annotations

import json

import pytest

from signalling import safejson
from signalling.safejson import JsonError


def loads(raw, **kw):
    return safejson.loads(raw, max_bytes=kw.pop("max_bytes", 300_000), **kw)


@pytest.mark.parametrize("raw", [
    '{"type": "join", "room": "demo", "name": "[{x}]"}',  # brackets inside strings do not nest
    '{"a": "\\"[[[[", "b": [1, [2, [3]]]}',
    '{"a": "\\ud83d\\ude00"}',  # an escaped surrogate pair is one emoji
    '["\\\\ud800"]',  # an escaped backslash: the text "\ud800", not a surrogate
    "[" * 32 + "]" * 32,
    '"just a string"',
])
def test_valid_json_decodes_as_json_does(raw):
    assert loads(raw) == json.loads(raw)
    assert loads(raw.encode()) == json.loads(raw)


@pytest.mark.parametrize("raw, reason", [
    ("[" * 200_000, "nested deeper than 32 levels"),  # the frame that used to SIGSEGV the server
    ("[" * 100_000 + "]" * 100_000, "nested deeper than 32 levels"),
    ("[[]" * 50_000 + "]" * 50_000, "nested deeper than 32 levels"),  # deep, but no long run of '['
    ("[" * 33 + "]" * 33, "nested deeper than 32 levels"),
    ("][" * 100_000, "brackets do not balance"),
    ("[1, 2" + "[]" * 40, "brackets do not balance"),
    ("1" * 5000, "4300 digits"),
    (b'{"a": "\xff"}', "not valid UTF-8 at byte 7"),
    ('{"a": "\ud800"}', "lone surrogate"),
    ('{"a": "\\udc80"}', "lone surrogate escape"),
    ('{"\\ud800": 1}', "lone surrogate escape"),
    ("{not json", "Expecting property name enclosed in double quotes at char 1"),
    ('"\\"' * 100_000, "Extra data"),  # unterminated-string scanning stays linear
])
def test_bad_input_is_one_precise_json_error(raw, reason):
    with pytest.raises(JsonError) as e:
        loads(raw)
    assert reason in str(e.value)


def test_size_is_checked_before_anything_else():
    with pytest.raises(JsonError, match="larger than 10 bytes"):
        safejson.loads("[" * 11, max_bytes=10)
    with pytest.raises(JsonError, match="larger than 10 bytes"):
        safejson.loads("é" * 6, max_bytes=10)  # 12 UTF-8 bytes in 6 characters


def test_the_depth_limit_is_the_callers():
    assert loads("[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(JsonError, match="nested deeper than 2 levels"):
        loads("[[[1]]]" + " " * 10, max_depth=2)
