"""Child process for the outbox durability tests (so they can SIGKILL it at any instant).

usage: python -m tests.support.sessionfix.outbox_worker put SPEC
           put summaries forever; print each id once put returns
       python -m tests.support.sessionfix.outbox_worker claim SPEC N
           claim N entries, print their ids, never ack, sleep
"""

from __future__ import annotations

import asyncio
import random
import sys

from signalling.sessions.outbox import open_outbox
from signalling.sessions.summary import hex32
from tests.support.sessionfix import synthetic_summary


async def main(mode: str, spec: str, n: int) -> None:
    kw = {"consumer": "doomed"} if spec.startswith("redis://") else {}
    outbox = open_outbox(spec, **kw)
    rng = random.Random()
    if mode == "put":
        while True:
            s = synthetic_summary(rng)
            await outbox.put(s)
            print(hex32(s.session_id), flush=True)
    else:
        entries = await outbox.claim(n, wait_s=5)
        for e in entries:
            print(hex32(e.summary.session_id), flush=True)
        print("CLAIMED", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0))
