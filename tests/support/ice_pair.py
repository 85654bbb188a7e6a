"""Two aioice agents on loopback that know each other's candidates and credentials, as an offer and
an answer would have told them: for tests of the ICE hooks (sfu.transport, sfu.consent)."""

from __future__ import annotations

from typing import Any

import aioice


async def ice_pair() -> tuple[Any, Any]:
    """The controlling and the controlled agent, gathered, not yet connected."""
    a, b = aioice.Connection(ice_controlling=True), aioice.Connection(ice_controlling=False)
    for c in (a, b):
        await c.gather_candidates()
    for this, other in ((a, b), (b, a)):
        for candidate in other.local_candidates:
            await this.add_remote_candidate(candidate)
        await this.add_remote_candidate(None)
        this.remote_username, this.remote_password = other.local_username, other.local_password
    return a, b
