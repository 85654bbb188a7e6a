"""TURN credentials for participants, by the TURN REST API (draft-uberti-behave-turn-rest-00).

The TURN server (coturn with `use-auth-secret` and `static-auth-secret`) and Basement share one
secret; nothing else is shared and no user database exists. Each participant gets its own short
lived credentials in `joined.ice_servers`:

    username   = "<unix expiry>:<participant id>"
    credential = base64(HMAC-SHA1(secret, username))

The TURN server recomputes the credential from the username, and refuses it once the expiry has
passed (for new allocations and for refreshes of existing ones). The username travels in clear in
STUN over `turn:`, so it names the participant (a random id, which Basement's logs map to its
identity), never the wallet address itself; the TURN server's logs still tell one participant's
relayed traffic from another's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any


class TurnCredentials:
    def __init__(self, urls: list[str], secret: str, ttl_s: int) -> None:
        self.urls = list(urls)
        self.secret = secret.encode()
        self.ttl_s = ttl_s

    def ice_servers(self, participant_id: str, now: float | None = None) -> list[dict[str, Any]]:
        """What a participant's RTCPeerConnection gets as `iceServers` (WebRTC's RTCIceServer)."""
        if not self.urls:
            return []
        stun = [u for u in self.urls if u.startswith("stun")]
        turn = [u for u in self.urls if u.startswith("turn")]
        servers: list[dict[str, Any]] = [{"urls": stun}] if stun else []
        if turn:
            expiry = int(now if now is not None else time.time()) + self.ttl_s
            # ':' separates the expiry; a participant id never contains one (and cannot move it)
            username = f"{expiry}:{participant_id.replace(':', '_')}"
            credential = base64.b64encode(hmac.new(self.secret, username.encode(), hashlib.sha1).digest()).decode()
            servers.append({"urls": turn, "username": username, "credential": credential})
        return servers
