"""The web client's e2ee keys (signalling/web/static/e2ee_keys.js, secp256k1.js; on node's WebCrypto,
the API browsers have) in one room with the Python client's (signalling/e2ee/keys.py): they verify
each other's wallet-signed announcements, refuse the same forgeries with the same words, decrypt
each other's frames, and lock out who left. The server's relay is played as in test_wallet_keys."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from signalling.e2ee.keys import Outgoing, PassphraseKeys, WalletKeys
from signalling.e2ee.sframe import SFrameError
from tests.support.e2ee import NOW, Room, signer

HERE = Path(__file__).parent


class Node:
    """The node process hosting the JavaScript participants."""

    def __init__(self, signers: dict[str, Any]) -> None:
        node = shutil.which("node")
        assert node, "node is installed by `make test` (make node-deps)"
        self.proc = subprocess.Popen([node, str(HERE / "e2ee_node.mjs")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.signers = signers  # participant name -> sign(text), for its wallet
        self.ids = 0
        self.signing: str | None = None

    def call(self, op: str, **args: Any) -> Any:
        self.ids += 1
        self._send({"id": self.ids, "op": op, **args})
        while True:
            line = self.proc.stdout.readline()
            assert line, "node exited"
            reply = json.loads(line)
            if "sign" in reply:  # the participant asks its wallet
                signature = self.signers[args["name"]](reply["text"])
                self._send({"op": "signed", "req": reply["sign"], "signature": signature})
                continue
            assert reply.get("id") == self.ids and "error" not in reply, reply
            return reply["result"]

    def _send(self, obj: dict[str, Any]) -> None:
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class Js:
    """A JavaScript participant, with the Python provider's methods."""

    def __init__(self, node: Node, name: str, passphrase: str | None = None) -> None:
        self.node, self.name = node, name
        node.call("new", name=name, passphrase=passphrase)

    def _out(self, result: list[dict[str, Any]]) -> list[Outgoing]:
        return [Outgoing(o["topic"], o["text"], o["to"]) for o in result or []]

    def start(self, room: str, pid: str, now: float) -> list[Outgoing]:
        return self._out(self.node.call("start", name=self.name, room=room, pid=pid, now=now))

    def on_message(self, msg: dict[str, Any], now: float) -> list[Outgoing]:
        return self._out(self.node.call("message", name=self.name, msg=msg, now=now))

    def on_left(self, pid: str, now: float) -> list[Outgoing]:
        return self._out(self.node.call("left", name=self.name, pid=pid, now=now))

    def tick(self, now: float) -> list[Outgoing]:
        return self._out(self.node.call("tick", name=self.name, now=now))

    def encrypt(self) -> bytes:
        return bytes.fromhex(self.node.call("encrypt", name=self.name))

    def decrypt(self, ct: bytes) -> str:
        return self.node.call("decrypt", name=self.name, ct=ct.hex())

    def state(self) -> dict[str, Any]:
        return self.node.call("state", name=self.name)


def py_encrypt(keys) -> bytes:
    return keys.send_key().encrypt(b"a frame", b"clear")


def py_decrypt(keys, ct: bytes) -> str:
    try:
        return keys.keyring.decrypt(ct, b"clear")[1].decode()
    except SFrameError as e:
        return f"SFrameError: {e}"


@pytest.fixture
def wallets():
    return [Account.create() for _ in range(4)]


@pytest.fixture
def node(wallets):
    n = Node({f"js{i}": signer(w) for i, w in enumerate(wallets)})
    yield n
    n.close()


def test_browser_and_python_clients_share_wallet_keys_refuse_forgeries_alike_and_lock_out_a_leaver(wallets, node):
    room = Room()
    a = WalletKeys(signer(wallets[0]))
    b = Js(node, "js1")
    c = WalletKeys(signer(wallets[2]))
    for pid, keys, w in (("PA_a", a, wallets[0]), ("PA_b", b, wallets[1]), ("PA_c", c, wallets[2])):
        room.join(pid, keys, w.address)
    assert b.state()["verified"] == {"PA_a": wallets[0].address, "PA_c": wallets[2].address}
    assert b.state()["refused"] == []
    assert a.verified["PA_b"] == c.verified["PA_b"] == wallets[1].address
    # frames both ways
    assert py_decrypt(a, b.encrypt()) == py_decrypt(c, b.encrypt()) == "a frame"
    assert b.decrypt(py_encrypt(a)) == b.decrypt(py_encrypt(c)) == "a frame"

    # a forged announcement (signed by another wallet than the sender's): refused, in the same words
    forger = WalletKeys(signer(wallets[2]))
    forged = forger.start("room", "PA_m", room.now)
    room.members["PA_m"] = (forger, wallets[3].address)
    room.deliver("PA_m", forged)
    why = f"the announcement is signed by {wallets[2].address}, not by the participant's wallet {wallets[3].address}"
    assert ["PA_m", why] in b.state()["refused"]
    assert ("PA_m", why) in a.refused
    del room.members["PA_m"]

    # c leaves: b's and a's next frames are under keys c never had
    kept = c.keyring
    room.leave("PA_c")
    room.tick(1.5)
    assert b.state()["kid"] & 0xFF == 1
    new_b, new_a = b.encrypt(), py_encrypt(a)
    assert py_decrypt(a, new_b) == "a frame" and b.decrypt(new_a) == "a frame"
    for ct in (new_b, new_a):
        with pytest.raises(SFrameError):
            kept.decrypt(ct, b"clear")


def test_passphrase_keys_are_the_same_in_the_browser(node):
    py = PassphraseKeys("correct horse battery staple")
    py.start("room", "PA_py", NOW)
    js = Js(node, "jsp", passphrase="correct horse battery staple")
    js.start("room", "PA_js", NOW)
    node.call("seen", name="jsp", pid="PA_py")
    py.sender_seen("PA_js")
    assert js.decrypt(py_encrypt(py)) == "a frame" and py_decrypt(py, js.encrypt()) == "a frame"


def test_signature_recovery_matches_eth_account(node, wallets):
    for i, w in enumerate(wallets):
        text = f"message {i}: ünïcode, and a newline\nhere"
        sig = signer(w)(text)
        assert node.call("recover", text=text, signature=sig) == w.address
        assert node.call("recover", text=text + ".", signature=sig) != w.address
    assert node.call("recover", text="x", signature="0x" + "00" * 65).startswith("SignatureError")
