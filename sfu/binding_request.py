"""binding_request: the ICE ufrag a STUN Binding request names, for demultiplexing by ICE username.

Single-port UDP (`sfu.udp_mux`) and ICE-TCP (`sfu.ice_tcp`) receive packets that belong to no
transport yet; a packet is claimed by the transport whose local ufrag its USERNAME names
("ours:theirs", RFC 8445 §7.2.2), and only once its MESSAGE-INTEGRITY verifies with that
transport's password (the caller checks, with `msg.check_message_integrity`): ufrags are short and
collide, passwords do not.
"""

from __future__ import annotations

import struct

from aioice import stun


def binding_request(data: bytes) -> tuple[str, stun.Message] | None:
    """(the local ufrag it names, the message) for a well-formed Binding request with a USERNAME;
    None for anything else (not STUN by its first byte, RFC 7983; malformed; another method or class)."""
    if len(data) < 20 or data[0] > 1:  # RFC 7983: STUN starts with 0 or 1 (and a request with 0)
        return None
    try:
        msg = stun.parse_message(data)
    except (ValueError, struct.error):  # (struct.error: aioice trusts attribute lengths)
        return None
    if msg.message_method != stun.Method.BINDING or msg.message_class != stun.Class.REQUEST:
        return None
    username = msg.attributes.get("USERNAME")
    if not isinstance(username, str):
        return None
    return username.split(":", 1)[0], msg
