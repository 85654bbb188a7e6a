"""An EIP-1193 wallet injected into a Chromium page (`window.ethereum`), answered from the test.

Its requests reach the test through a CDP binding (`Runtime.addBinding` -> `Runtime.bindingCalled`)
and are answered with `Runtime.evaluate`. `personal_sign` signs with a real key (eth_account), and
the server verifies that signature like any other.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import aiohttp
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from tests.support.browser import Browser

BINDING = "__basementInjectedWallet"

# The page side of the test wallet: every request goes to the test through the binding and waits
# for window.__testWallet.reply(id, ok, value).
WALLET_JS = """
(() => {
  const pending = new Map();
  let next = 1;
  window.__testWallet = {
    reply(id, ok, value) {
      const p = pending.get(id);
      if (!p) return;
      pending.delete(id);
      if (ok) p.resolve(value);
      else p.reject(Object.assign(new Error(value.message), { code: value.code }));
    },
  };
  window.ethereum = {
    isBasementInjectedWallet: true,
    request({ method, params }) {
      const id = next++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        window.__BINDING__(JSON.stringify({ id, method, params: params || [] }));
      });
    },
  };
})();
""".replace("__BINDING__", BINDING)


class WalletRefusal(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class InjectedWallet:
    """An EIP-1193 wallet in the page, served from here over a second DevTools connection.

    It reports its account in lowercase (as MetaMask does), so the page must checksum it.
    """

    def __init__(self, page: Browser, account: LocalAccount, chain_id: int) -> None:
        self.page = page
        self.account = account
        self.chain_id = chain_id
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._ids = iter(range(1, 1 << 30))
        self._pending: dict[int, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()

    async def install(self) -> None:
        """Bind and inject; the wallet exists in every document loaded afterwards."""
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(await self.page.page_websocket_url(), max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())
        await self._send("Runtime.enable", {})
        await self._send("Runtime.addBinding", {"name": BINDING})
        await self.page.add_init_script(WALLET_JS)

    async def close(self) -> None:
        for t in [self._reader, *self._tasks]:
            if t is not None:
                t.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()

    async def _send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        cid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        await self._ws.send_str(json.dumps({"id": cid, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, 20)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def _read(self) -> None:
        async for m in self._ws:
            if m.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = json.loads(m.data)
            fut = self._pending.pop(msg["id"], None) if "id" in msg else None
            if fut is not None and not fut.done():
                fut.set_result(msg)
            elif msg.get("method") == "Runtime.bindingCalled" and msg["params"]["name"] == BINDING:
                task = asyncio.ensure_future(self._serve(json.loads(msg["params"]["payload"])))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _serve(self, request: dict[str, Any]) -> None:
        self.requests.append(request)
        try:
            value = self.answer(request["method"], request["params"])
            ok, value = True, (await value) if inspect.isawaitable(value) else value
        except WalletRefusal as e:
            ok, value = False, {"code": e.code, "message": str(e)}
        except Exception as e:  # noqa: BLE001 - a test bug: make the page fail visibly, record it
            self.errors.append(repr(e))
            ok, value = False, {"code": -32603, "message": f"test wallet failed: {e!r}"}
        expr = f"window.__testWallet.reply({request['id']}, {json.dumps(ok)}, {json.dumps(value)})"
        await self._send("Runtime.evaluate", {"expression": expr})

    def answer(self, method: str, params: list[Any]) -> Any:
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [self.account.address.lower()]
        if method == "eth_chainId":
            return hex(self.chain_id)
        if method == "wallet_switchEthereumChain":
            raise WalletRefusal(4902, f"unrecognized chain id {params[0]['chainId']}")
        if method == "personal_sign":
            data, address = params
            if address.lower() != self.account.address.lower():
                raise WalletRefusal(4100, f"personal_sign for an account this wallet does not hold: {address}")
            signed = self.account.sign_message(encode_defunct(primitive=bytes.fromhex(data.removeprefix("0x"))))
            return "0x" + signed.signature.hex().removeprefix("0x")
        raise WalletRefusal(4200, f"unsupported method {method}")

    def methods(self) -> list[str]:
        return [r["method"] for r in self.requests]
