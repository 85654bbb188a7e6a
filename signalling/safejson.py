"""The one loader for JSON that arrives from outside: size- and depth-limited, never crashing.

Why not plain `json.loads`: py_ecc (imported by eth-account) raises the interpreter's recursion
limit to 100,000, so the C JSON decoder overflows the C stack (SIGSEGV, the whole process) on a
few hundred thousand `[` long before Python would raise `RecursionError`. Nesting is therefore
measured *before* decoding. Every other way `json.loads` can fail on hostile input (invalid UTF-8,
integer literals over Python's 4,300-digit limit, lone surrogates) becomes the same `JsonError`
with a message precise enough to answer the sender with.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFAULT_MAX_DEPTH = 32

# Everything but brackets outside strings is deleted (strings are removed whole, so brackets inside
# them do not nest). An unterminated string runs to the end: the optional closing quote means the
# pattern never fails and backtracks, which would make `"\\"\\"\\"…` quadratic.
_NOT_BRACKETS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[^\[\]{}"]+', re.S)


# a \uD800-\uDFFF escape: JSON lets it decode to a lone surrogate, a str that cannot be encoded
# again (UTF-8 for a signature, a log line, a socket) and fails far from here
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JsonError(ValueError):
    """The input is not acceptable JSON; `str(e)` says why, safe to send back."""


def loads(raw: str | bytes | bytearray, *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode untrusted JSON of at most `max_bytes` bytes nested at most `max_depth` deep."""
    if isinstance(raw, str):
        size = len(raw)  # a char is at least one byte; checked before encoding a huge string
        if size > max_bytes:
            raise JsonError(f"larger than {max_bytes} bytes")
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonError("contains a lone surrogate, which is not valid UTF-8") from None
    else:
        data = bytes(raw)
    if len(data) > max_bytes:
        raise JsonError(f"larger than {max_bytes} bytes")
    # cheap C-speed count first: only input with more brackets than the limit needs the check
    if data.count(b"[") + data.count(b"{") > max_depth:
        problem = structure_problem(data, max_depth)
        if problem:
            raise JsonError(problem)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JsonError(f"not valid UTF-8 at byte {e.start}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise JsonError(f"{e.msg} at char {e.pos}") from None
    except RecursionError:  # unreachable with a sane max_depth; kept so nothing escapes
        raise JsonError(f"nested deeper than {max_depth} levels") from None
    except ValueError as e:  # e.g. an integer literal longer than sys.get_int_max_str_digits()
        raise JsonError(str(e).split(";")[0]) from None
    if _SURROGATE_ESCAPE.search(data) and not _encodable(value):  # escaped pairs (emoji) are fine
        raise JsonError("contains a lone surrogate escape (\\ud800-\\udfff), which is not valid Unicode")
    return value


def _encodable(value: Any) -> bool:
    """Every string in `value` (keys included) encodes to UTF-8; bounded by the depth check."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    return True


def structure_problem(data: bytes, max_depth: int) -> str | None:
    """Why `data`'s bracket structure is unsafe to decode (too deep, or unbalanced), else None.

    Each pass deletes every innermost `[]`/`{}` pair, so well-nested brackets of depth D vanish in
    exactly D passes; all work is done by C string methods (a per-character Python loop would let
    one 256 KiB message cost ~70 ms).
    """
    brackets = _NOT_BRACKETS.sub(b"", data)
    if re.search(rb"[\[{]{%d}" % (max_depth + 1), brackets):  # the common attack, found in one scan
        return f"nested deeper than {max_depth} levels"
    for _ in range(max_depth):
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter:
            return None
        if len(shorter) == len(brackets):
            return "brackets do not balance"
        brackets = shorter
    return f"nested deeper than {max_depth} levels"
