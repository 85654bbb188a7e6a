"""ICE consent freshness (RFC 7675) that rides out a busy event loop.

aioice 0.13 checks consent every 4-6 s with a single STUN request (no retransmission, 0.5 s to be
answered) and closes the connection after six failed checks in a row. So an event loop that lags
more than half a second at each check, on either end, kills a healthy connection: the SFU's during
a burst of joins into a large room, or a busy client's (the bench's generator logged 271 such
expiries while 2,277 subscribers joined; docs/performance.md).

RFC 7675 §5.1 has consent expire 30 s after the last *successful* check, each check being an
ordinary STUN transaction with retransmissions. `query_consent` is that loop; `sfu.transport`
installs it in place of aioice's `Connection.query_consent` (it reads aioice's `_nominated`,
`build_request` and `_query_consent_task`, listed in docs/architecture.md, "aiortc hooks").
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import aioice.stun

from sfu.metrics import STATS

log = logging.getLogger("basement.transport")

INTERVAL_S = 5.0  # between checks, randomized by 0.8-1.2 (RFC 7675 §5.1)
EXPIRY_S = 30.0  # consent lasts this long after the last answered check (RFC 7675 §5.1)
# a check's transmissions are 0, 0.5, 1.5 and 3.5 s after it starts (STUN's RTO doubling from 0.5 s);
# it fails at 7.5 s. A peer that answers any of them within the expiry keeps its consent.
RETRANSMISSIONS = 3


async def query_consent(connection: Any) -> None:
    """Check consent on each of `connection`'s nominated pairs until it expires, then close it
    (marking it `_basement_consent_expired`, counted in `basement_ice_consent_expired`)."""
    assert connection.remote_password is not None  # (connect() starts this once it has it)
    loop = asyncio.get_running_loop()
    key = connection.remote_password.encode("utf8")
    answered = loop.time()
    while True:
        await asyncio.sleep(INTERVAL_S * (0.8 + 0.4 * random.random()))
        deadline = answered + EXPIRY_S
        try:
            async with asyncio.timeout_at(deadline):  # a check in flight ends when consent does
                for pair in list(connection._nominated.values()):
                    await pair.protocol.request(connection.build_request(pair, nominate=False),
                                                pair.remote_addr, integrity_key=key,
                                                retransmissions=RETRANSMISSIONS)
            answered = loop.time()
        except (aioice.stun.TransactionError, TimeoutError):
            if loop.time() < deadline:
                continue  # unanswered (or refused) this time; consent still holds
            log.info("ICE consent expired: no check answered in %.0f s; closing the connection", EXPIRY_S)
            STATS.consent_expired += 1
            connection._basement_consent_expired = True
            connection._query_consent_task = None  # (close() would cancel the task running it)
            await connection.close()
            return
