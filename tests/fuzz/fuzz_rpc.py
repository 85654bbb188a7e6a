"""Fuzz `POST /rpc`, the embedded chain's JSON-RPC endpoint: signalling/chain/rpc.py on a real
in-process chain (eth-tester + py-evm, Basement's contracts deployed).

Input: the request body as the HTTP layer hands it over (bytes). `DevChainRpc.handle` runs it with
generous client limits (the limits are unit-tested; here they would refuse most inputs) and a gas
cap of 100,000, so an input that loops costs milliseconds rather than the timeout.
Contract: `handle` never raises; the status is 200, 204 or 429 (never a 500); a body is strict JSON
(no NaN or Infinity), and every answer is a JSON-RPC 2.0 response object with an acceptable id and
exactly one of `result` or `error` (an integer code and a string message); a batch answers with an
array of at most as many answers as it had calls.
"""

from __future__ import annotations

import asyncio
import json
import math

from _harness import Finding, instrumented, main

with instrumented():
    from signalling.access.throttle import RateLimiter
    from signalling.chain.evm import EmbeddedChain
    from signalling.chain.rpc import MAX_BATCH, DevChainRpc

LOOP = asyncio.new_event_loop()
CHAIN = EmbeddedChain()
LOOP.run_until_complete(CHAIN.start())
RPC = DevChainRpc(CHAIN, gas_cap=100_000, rate_per_s=1e9, cpu_share=1.0)
RPC.client_transactions = RateLimiter(1e12, burst=10**9)  # every raw transaction gets parsed


def _strict(text: str) -> object:
    def refuse(name: str) -> object:
        raise Finding(f"answer carries {name}, which is not JSON")

    return json.loads(text, parse_constant=refuse)


def _check_answer(answer: object) -> None:
    if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0" or "id" not in answer:
        raise Finding(f"not a JSON-RPC 2.0 response object: {str(answer)[:200]}")
    ident = answer["id"]
    if not (ident is None or isinstance(ident, str) or (
            isinstance(ident, int | float) and not isinstance(ident, bool) and math.isfinite(ident))):
        raise Finding(f"answer id {ident!r} is not a string, a finite number or null")
    if ("result" in answer) == ("error" in answer):
        raise Finding("an answer needs exactly one of result and error")
    if "error" in answer:
        err = answer["error"]
        if not (isinstance(err, dict) and isinstance(err.get("code"), int) and isinstance(err.get("message"), str)):
            raise Finding(f"malformed error object: {str(err)[:200]}")


def test_one(data: bytes) -> None:
    status, body, _retry = LOOP.run_until_complete(RPC.handle(data, "fuzz"))
    if status not in (200, 204, 429):
        raise Finding(f"HTTP status {status}")
    if body is None:
        if status != 204:
            raise Finding(f"no body with status {status}")
        return
    out = _strict(body.decode("utf-8"))
    if isinstance(out, list):
        if not 1 <= len(out) <= MAX_BATCH:
            raise Finding(f"a batch answered with {len(out)} answers")
        for answer in out:
            _check_answer(answer)
    else:
        _check_answer(out)


if __name__ == "__main__":
    main(test_one)
