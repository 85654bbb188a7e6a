"""Fuzz signalling/safejson.py, the one loader for untrusted JSON.

Input: first byte = max_depth (1..40) and whether the rest is passed as bytes or as str
(surrogateescape-decoded, so lone surrogates reach the str path); the rest is the document.
Contract: only `JsonError` escapes, for any input; an accepted document is nested at most
max_depth deep and decodes to exactly what `json.loads` gives for the same text (the pre-check
may refuse, never change, a document).
"""

from __future__ import annotations

import json
import math

from _harness import Finding, instrumented, main

with instrumented():
    from signalling import safejson

MAX_BYTES = 4096


def depth(value: object) -> int:
    # iterative: a loader bug that lets deep nesting through must not crash the harness instead
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            deepest = max(deepest, d)
            stack.extend((x, d + 1) for x in v)
    return deepest


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_one(data: bytes) -> None:
    if not data:
        return
    max_depth = data[0] % 40 + 1
    body = data[1:]
    raw: str | bytes = body.decode("utf-8", "surrogateescape") if data[0] & 0x80 else body
    try:
        value = safejson.loads(raw, max_bytes=MAX_BYTES, max_depth=max_depth)
    except safejson.JsonError as e:
        str(e)
        return
    d = depth(value)
    if d > max_depth:
        raise Finding(f"accepted a document nested {d} deep with max_depth={max_depth}")
    text = raw if isinstance(raw, str) else raw.decode("utf-8")
    if not same(value, json.loads(text)):
        raise Finding("decoded differently from json.loads")


if __name__ == "__main__":
    main(test_one)
