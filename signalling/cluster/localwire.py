"""The wire between a parent process and its media workers: length-prefixed msgpack frames on a
socket pair the parent made (no listening socket, no path: nobody else can connect).

A frame is a 4-byte big-endian length and one msgpack array whose first item names it:

    worker -> parent                              parent -> worker
    ["send", seq, [[channel, data], ...]]        ["sent", seq, [listeners reached, ...]]
    ["listen", seq, channel]                     ["res", seq, true, nil]
    ["unlisten", seq, channel]                   ["res", seq, true, nil]
    ["store", seq, op, [args...]]                ["res", seq, ok, value or error message]
                                                 ["msg", channel, data]
                                                 ["config", {...}]   (the first frame, once)

`data` is a bus envelope exactly as on Redis (signalling.cluster.bus), so the receiving Bus checks it
as it checks one from Redis. A frame is refused before it is parsed when its length is over
MAX_FRAME_BYTES, and msgpack bounds everything inside it.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgpack

from signalling.cluster.bus import MAX_MESSAGE_BYTES

# One bus envelope (≤ 1 MiB) always fits; a batch of small ones shares a frame up to BATCH_BYTES.
MAX_FRAME_BYTES = 4 * MAX_MESSAGE_BYTES
BATCH_BYTES = 2 * MAX_MESSAGE_BYTES
_LEN = struct.Struct(">I")
# arrays and maps in one frame: a batch holds up to 256 envelopes, a store reply a node's records
MAX_ITEMS = 100_000


class WireError(ValueError):
    """A frame that is not one this wire carries; `str(e)` says why."""


def frame(*items: Any) -> bytes:
    body = msgpack.packb(list(items), use_bin_type=True)
    return _LEN.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> list[Any]:
    """The next frame, as a non-empty list whose first item is a string; raises
    asyncio.IncompleteReadError at the end of the stream and WireError for anything malformed."""
    (n,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    if n > MAX_FRAME_BYTES:
        raise WireError(f"frame of {n} bytes is over {MAX_FRAME_BYTES}")
    body = await reader.readexactly(n)
    try:
        # counts bounded too: msgpack caps them at the input's length, but an empty array or map
        # still costs a Python object each (~65 bytes for every byte of such a frame)
        items = msgpack.unpackb(body, raw=False, max_array_len=MAX_ITEMS, max_map_len=MAX_ITEMS)
    except Exception as e:  # FormatError, StackError, ExtraData, UnicodeDecodeError, ...
        raise WireError(f"undecodable msgpack ({type(e).__name__})") from None
    if not isinstance(items, list) or not items or not isinstance(items[0], str):
        raise WireError("a frame must be an array starting with its kind")
    return items
